//! A queued request read back from Redis (another replica, or an old version, wrote it).
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::stored_request(data));
