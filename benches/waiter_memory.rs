//! Bytes of memory and of Redis per queued waiter (issue 14, item 6), for a typical GitHub
//! comment webhook (16 KB body, GitHub's headers) and for a body at the default lock-route limit
//! (`server.max-lock-body-size`, 25 MiB).
//!
//! The stored form is the request as it would be forwarded (JSON, body and header values in
//! base64, so about 4/3 of the body). The memory engine's cost is the RSS growth while N waiters
//! queue; Redis's is `used_memory` growth (`INFO memory`) and `MEMORY USAGE` of one waiter record.
//!
//! Run: `cargo bench --bench waiter_memory` (starts its own `redis-server`).

#[path = "../tests/it/support/redis.rs"]
mod support_redis;

use atlantis_lock_proxy::classify::{LockKey, Priority, PullRef, Vcs};
use atlantis_lock_proxy::engine::redis::layout::Layout;
use atlantis_lock_proxy::engine::{
    AcquireRequest, EngineSettings, LockEngine, MemoryEngine, RedisEngine, RedisSettings,
};
use atlantis_lock_proxy::upstream::replay::StoredRequest;
use bytes::Bytes;

use support_redis::RedisServer;

const PREFIX: &str = "mem:";

fn request(pull: i64) -> AcquireRequest {
    AcquireRequest {
        locks: vec![LockKey::new("acme/infra", "net", "default", "")],
        pull: PullRef::new(Vcs::Github, "acme/infra", pull),
        user: "bench".into(),
        priority: Priority::Normal,
        hold_timeout: None,
        request_id: None,
    }
}

/// The stored form of a GitHub-style webhook with a body of `size` bytes.
fn stored(size: usize) -> Vec<u8> {
    let mut body =
        String::from(r#"{"action":"created","comment":{"body":"atlantis plan"},"pad":""#);
    while body.len() + 2 < size {
        body.push_str("abcdefghijklmnopqrstuvwxyz0123456789");
    }
    body.truncate(size - 2);
    body.push_str("\"}");
    let mut req = http::Request::post("/events");
    for (k, v) in [
        ("host", "atlantis.example.com:4141"),
        ("user-agent", "GitHub-Hookshot/a1b2c3d"),
        ("content-type", "application/json"),
        ("x-github-event", "issue_comment"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-github-hook-id", "123456789"),
        ("x-github-hook-installation-target-id", "79929171"),
        ("x-github-hook-installation-target-type", "repository"),
        (
            "x-hub-signature",
            "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6",
        ),
        (
            "x-hub-signature-256",
            "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c",
        ),
        ("x-forwarded-for", "140.82.115.3"),
        ("x-forwarded-proto", "https"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ] {
        req = req.header(k, v);
    }
    let (parts, ()) = req.body(()).expect("request").into_parts();
    StoredRequest::capture(&parts, &Bytes::from(body.into_bytes())).encode()
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn settings() -> EngineSettings {
    EngineSettings {
        enable_events: false,
        enable_deadlock_detection: false,
        max_queue_size: 100_000,
        max_waiters_per_repo: 100_000,
        max_waiters_total: 100_000,
        max_queued_bytes_per_repo: u64::MAX,
        max_queued_bytes_total: u64::MAX,
        ..EngineSettings::default()
    }
}

async fn fill(e: &dyn LockEngine, payload: &[u8], n: i64) {
    e.acquire(request(0)).await.expect("hold");
    for pull in 1..=n {
        e.acquire_or_enqueue(request(pull), payload.to_vec())
            .await
            .expect("enqueue");
    }
}

async fn measure(name: &str, body: usize, n: i64, server: &RedisServer) {
    let payload = stored(body);
    let memory = MemoryEngine::new(settings());
    let before = rss();
    fill(&memory, &payload, n).await;
    let after = rss();
    let per_rss = after.saturating_sub(before) / n as u64;
    drop(memory);

    let prefix = format!("{PREFIX}{name}:");
    let redis = RedisEngine::connect(
        settings(),
        RedisSettings {
            addr: server.addr.clone(),
            key_prefix: prefix.clone(),
            ..RedisSettings::default()
        },
    )
    .await
    .expect("connect");
    let before = server.used_memory();
    fill(&redis, &payload, n).await;
    let after = server.used_memory();
    let record = format!("{}w:000000000001", Layout::new(&prefix).base("acme/infra"));
    let usage = server
        .command(&["MEMORY", "USAGE", &record])
        .expect("MEMORY USAGE");
    println!(
        "{name}: body {body} B, stored request {} B; memory engine {per_rss} B of RSS per waiter \
         ({n} waiters); Redis {} B of used_memory per waiter, MEMORY USAGE of one record {usage} B",
        payload.len(),
        after.saturating_sub(before) / n as u64,
    );
    server.command(&["FLUSHALL"]).expect("flush");
}

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        measure("typical", 16 * 1024, 10_000, &server).await;
        measure("max-size", 25 * 1024 * 1024, 6, &server).await;
    });
}
