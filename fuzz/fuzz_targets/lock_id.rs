//! `DELETE /locks?id=...`: Atlantis's two decodings and the lock key's parse.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::lock_id(data));
