//! Atlantis's comment grammar (`atlantis plan -d ... -- extra args`), as comments reach it.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::comment(data));
