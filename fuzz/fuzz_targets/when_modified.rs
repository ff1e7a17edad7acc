//! `when_modified` patterns joined to a project dir and matched, like Atlantis. Input lines: the
//! dir, then patterns up to an empty line, then file paths to match.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::when_modified(data));
