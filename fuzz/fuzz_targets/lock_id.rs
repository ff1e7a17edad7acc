//! `DELETE /locks?id=...`: Atlantis's two decodings and the lock key's parse.
#![no_main]

use atlantis_lock_proxy::classify::{ClassifyConfig, LockKey, Operation, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    // A key that parses prints back to what it parsed from (what a release relies on).
    if let Ok(k) = LockKey::parse(q) {
        let again = LockKey::parse(&k.to_string()).expect("a printed key parses");
        assert_eq!(again, k);
    }
    let Ok(req) = http::Request::delete(format!("/locks?{q}")).body(()) else {
        return;
    };
    let (parts, ()) = req.into_parts();
    if let Ok(Operation::ReleaseKey { key }) = classify(&parts, b"", &ClassifyConfig::default()) {
        assert!(key.to_string().matches('/').count() >= 4, "{key}");
    }
});
