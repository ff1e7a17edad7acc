//! The whole `classify()`: every VCS's webhooks, `/api/plan|apply` bodies and `DELETE /locks`.
//! The first byte picks the route and the headers a VCS sends; the rest is the body (or query).
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::classify(data));
