//! A queued request read back from Redis (another replica, or an old version, wrote it).
#![no_main]

use atlantis_lock_proxy::upstream::replay::StoredRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(stored) = StoredRequest::decode(data) else {
        return;
    };
    let _ = stored.body();
    let _ = stored.to_request();
});
