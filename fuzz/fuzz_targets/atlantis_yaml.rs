//! A pull's `atlantis.yaml` (untrusted: any pull request writes it), bounded then parsed.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::atlantis_yaml(data));
