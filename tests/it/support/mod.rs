//! Shared test support: the fake Atlantis, the proxy under test, webhook builders, an HTTP client.
#![allow(dead_code)] // Each helper is used by some test modules, not all.

pub mod app_key;
pub mod fake_atlantis;
pub mod fake_vcs;
pub mod http;
pub mod ports;
pub mod proxy;
pub mod redis;
pub mod webhooks;

use std::time::Duration;

/// Polls `cond` until it is true or `timeout` passes; returns whether it became true.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
