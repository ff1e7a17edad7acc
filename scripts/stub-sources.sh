#!/bin/sh
# Writes a placeholder source file for every target Cargo.toml declares, so the image build can
# compile the dependencies alone (one cached layer) before the real sources are copied in.
#
# Cargo refuses a manifest whose targets' files are missing, even when building only the binary:
# every [[bench]], [[test]], [[example]] and [[bin]] needs its file (by `path`, else by the
# conventional location for its `name`). The lib gets an empty file, the rest `fn main() {}`.
# Used by the Dockerfile and by scripts/check-dockerfile-build.sh; POSIX sh + awk only, because
# it runs inside the Rust build image.
set -eu

manifest="${1:-Cargo.toml}"
[ -f "$manifest" ] || { echo "stub-sources: no $manifest here" >&2; exit 1; }

targets=$(awk '
  function value(line) {
    sub(/^[^=]*=[ \t]*"/, "", line)
    sub(/".*$/, "", line)
    return line
  }
  function flush(  p) {
    if (kind == "") return
    p = path
    if (p == "") {
      if (kind == "lib") p = "src/lib.rs"
      else if (kind == "bin") p = (name == "" ? "src/main.rs" : "src/bin/" name ".rs")
      else if (kind == "test") p = "tests/" name ".rs"
      else if (kind == "bench") p = "benches/" name ".rs"
      else if (kind == "example") p = "examples/" name ".rs"
    }
    print kind " " p
    kind = ""
  }
  /^[ \t]*\[/ {
    flush()
    name = ""; path = ""
    if ($0 ~ /^[ \t]*\[lib\]/) kind = "lib"
    else if ($0 ~ /^[ \t]*\[\[(bin|test|bench|example)\]\]/) {
      kind = $0
      sub(/^[ \t]*\[\[/, "", kind)
      sub(/\]\].*$/, "", kind)
    }
    next
  }
  kind != "" && /^[ \t]*name[ \t]*=/ { name = value($0) }
  kind != "" && /^[ \t]*path[ \t]*=/ { path = value($0) }
  END { flush() }
' "$manifest")

# The package has both a library and a binary at the conventional places.
targets="$targets
lib src/lib.rs
bin src/main.rs"

echo "$targets" | while read -r kind path; do
  [ -n "$path" ] || continue
  mkdir -p "$(dirname "$path")"
  if [ "$kind" = lib ]; then
    : >"$path"
  else
    echo 'fn main() {}' >"$path"
  fi
done
