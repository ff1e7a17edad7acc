//! A pull's `atlantis.yaml` (untrusted: any pull request writes it), bounded then parsed.
#![no_main]

use atlantis_lock_proxy::resolve::parse_atlantis_yaml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_atlantis_yaml(data);
});
