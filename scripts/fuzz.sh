#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time; fails on a crash, a panic or a timeout.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 5; CI uses the default)
# Cold, the instrumented release build of the whole crate took 21 min wall (11 min CPU) on 2
# shared cores; warm, a run is the time given plus a few seconds per target.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`, installed here when missing) and a C++
# compiler for libFuzzer. RUSTC_BOOTSTRAP=1 lets the stable toolchain take -Z flags.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v c++ >/dev/null 2>&1 || { echo "scripts/fuzz.sh: needs a C++ compiler (apt-get install g++)" >&2; exit 1; }
secs="${1:-5}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
target_dir="${CARGO_TARGET_DIR:-../target}/fuzz"
export CARGO_TARGET_DIR="$target_dir"
# No sanitizer: the crate forbids unsafe code; libFuzzer still catches panics, timeouts, OOM.
cargo fuzz build -s none
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t"
  echo "-- fuzz $t (${secs}s)"
  log="$(mktemp)"
  # -timeout: one input taking over 2 s is a finding (the quadratic YAML case took 2.7 s).
  if ! cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=2 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $t failed: the input is in fuzz/artifacts/$t" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$log" | tr '\n' ' '
  echo
  rm -f "$log"
done
echo "fuzz: all targets ran ${secs}s without a finding"
