//! Every fuzz target of `fuzz/` run inside `cargo test` for a bounded time: the seeds, then
//! random mutations of them (byte flips, inserts, deletes, splices of YAML/JSON tokens). Far
//! weaker than libFuzzer's coverage-guided search (`scripts/fuzz.sh`), but it builds with the
//! tests and fails CI on any panic a known shape of input reaches.

use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../../fuzz/targets.rs"]
mod targets;

/// Per-target budget; every target together stays under 15 s.
const BUDGET: Duration = Duration::from_secs(2);

/// Fragments spliced in by the mutator: what the parsers branch on.
const TOKENS: &[&[u8]] = &[
    b"[",
    b"{",
    b"]",
    b"}",
    b"\"",
    b"'",
    b"\n",
    b": ",
    b"- ",
    b"#",
    b"!",
    b"*",
    b"**/",
    b"../",
    b"./",
    b"%2F",
    b"%25",
    b"\\",
    b"\x00",
    b"\xff",
    b"atlantis plan ",
    b" -d ",
    b" -p ",
    b" -- ",
    b"&a ",
    b"*a",
    b"!!str ",
    b"~",
    b"1e999",
    b"-9223372036854775809",
    b"\\u0000",
];

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(4) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => input
                .splice(at..at, TOKENS[rng.below(TOKENS.len())].iter().copied())
                .for_each(drop),
            2 if at < input.len() => {
                let end = (at + 1 + rng.below(8)).min(input.len());
                input.drain(at..end);
            }
            _ => {
                // Repeat a slice: deep nesting and long runs.
                let end = (at + 1 + rng.below(4)).min(input.len());
                let piece = input[at.min(end)..end].to_vec();
                for _ in 0..rng.below(64) {
                    input.splice(at..at, piece.iter().copied()).for_each(drop);
                }
            }
        }
    }
    input.truncate(64 * 1024);
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.push(Vec::new());
    out
}

fn run(target: &str, f: fn(&[u8])) {
    let pool = seeds(target);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    let started = Instant::now();
    let mut runs = 0u64;
    for s in &pool {
        f(s);
    }
    while started.elapsed() < BUDGET {
        let mut input = pool[rng.below(pool.len())].clone();
        mutate(&mut rng, &mut input);
        let one = Instant::now();
        f(&input);
        assert!(
            one.elapsed() < Duration::from_secs(1),
            "{target}: one input took {:?}: {:?}",
            one.elapsed(),
            String::from_utf8_lossy(&input)
        );
        runs += 1;
    }
    eprintln!("{target}: {runs} mutated inputs in {BUDGET:?}");
    assert!(runs > 0);
}

#[test]
fn classify() {
    run("classify", targets::classify);
}

#[test]
fn comment() {
    run("comment", targets::comment);
}

#[test]
fn lock_id() {
    run("lock_id", targets::lock_id);
}

#[test]
fn atlantis_yaml() {
    run("atlantis_yaml", targets::atlantis_yaml);
}

#[test]
fn when_modified() {
    run("when_modified", targets::when_modified);
}

#[test]
fn stored_request() {
    run("stored_request", targets::stored_request);
}
