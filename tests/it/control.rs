//! Operator controls across replicas: the split is stored in Redis, followed by every replica
//! within a second and kept across restarts; the admin API's own rate limit and diagnostics.

use std::time::Duration;

use http::Method;
use serde_json::Value;
use tokio::time::Instant;

use crate::support::fake_atlantis::FakeAtlantis;
use crate::support::http::{get, send};
use crate::support::proxy::{RunningProxy, spawn_proxy};
use crate::support::redis::{RedisCluster, RedisServer};

const AUTH: [(&str, &str); 1] = [("authorization", "Bearer t")];

fn yaml(redis: &RedisServer, split: u8) -> String {
    format!(
        "admin:\n  listen: 127.0.0.1:0\n  token: t\nenhanced-locking:\n  traffic-split: {split}\n  redis:\n    addr: {}\n    key-prefix: \"ctl-test:\"\n",
        redis.addr
    )
}

async fn split_of(p: &RunningProxy) -> Value {
    let r = send(Method::GET, &p.admin_url("/admin/split"), &AUTH, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Polls replica `p` until its split reads `want`; returns how long that took.
async fn followed(p: &RunningProxy, want: u64, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if split_of(p).await["traffic_split"] == want {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn a_split_change_reaches_every_replica_within_a_second_and_survives_restarts() {
    let redis = RedisServer::start();
    let fake = FakeAtlantis::start().await;
    let a = spawn_proxy(&fake.url(), &yaml(&redis, 10)).await;
    let b = spawn_proxy(&fake.url(), &yaml(&redis, 10)).await;
    assert_eq!(split_of(&a).await["traffic_split"], 10);
    assert_eq!(split_of(&b).await["backend"], "redis");
    // Both followers listen for announcements (the re-read is only the safety net).
    let subscribed = async {
        for _ in 0..100 {
            let n = redis
                .command(&["PUBSUB", "NUMSUB", "ctl-test:control:split"])
                .unwrap();
            if n.lines().last() == Some("2") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    assert!(subscribed.await, "both replicas subscribe to split changes");

    let put = send(
        Method::PUT,
        &a.admin_url("/admin/split"),
        &AUTH,
        r#"{"traffic_split": 60}"#,
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let took = followed(&b, 60, Duration::from_secs(3))
        .await
        .expect("replica B never followed the change");
    eprintln!("replica B followed the split change in {took:?}");
    assert!(took < Duration::from_secs(1), "B followed after {took:?}");

    // A restarted replica starts from the stored state, not from its config's 10.
    b.stop().await;
    let c = spawn_proxy(&fake.url(), &yaml(&redis, 10)).await;
    assert_eq!(split_of(&c).await["traffic_split"], 60);

    // Rollback on any replica reaches the others.
    let rb = send(Method::POST, &c.admin_url("/admin/rollback"), &AUTH, "").await;
    assert_eq!(rb.status, 200);
    let took = followed(&a, 0, Duration::from_secs(3))
        .await
        .expect("replica A never followed the rollback");
    assert!(took < Duration::from_secs(1), "A followed after {took:?}");
    a.stop().await;
    c.stop().await;

    // The state lives in the backend under the engine's key prefix.
    let stored = redis.command(&["GET", "ctl-test:control:split"]).unwrap();
    assert!(stored.contains("\"traffic_split\":0"), "{stored}");
}

#[tokio::test]
async fn a_replica_that_missed_the_announcement_catches_up_by_re_reading() {
    let redis = RedisServer::start();
    let fake = FakeAtlantis::start().await;
    let a = spawn_proxy(&fake.url(), &yaml(&redis, 20)).await;
    // Someone writes the key without announcing it (a lost PUBLISH).
    let state = r#"{"traffic_split":45,"monitor_only":true,"enabled":true,"updated_at":"2026-01-01T00:00:00Z"}"#;
    redis
        .command(&["SET", "ctl-test:control:split", state])
        .unwrap();
    let took = followed(&a, 45, Duration::from_secs(3))
        .await
        .expect("the periodic re-read never picked the change up");
    assert!(took < Duration::from_secs(1), "re-read after {took:?}");
    assert_eq!(split_of(&a).await["monitor_only"], true);
    a.stop().await;
}

#[tokio::test]
async fn the_admin_api_answers_429_with_retry_after_over_its_limit() {
    let fake = FakeAtlantis::start().await;
    let p = spawn_proxy(
        &fake.url(),
        "admin:\n  listen: 127.0.0.1:0\n  token: t\n  rate-limit: 3/m\n",
    )
    .await;
    for _ in 0..3 {
        let r = send(Method::GET, &p.admin_url("/admin/split"), &AUTH, "").await;
        assert_eq!(r.status, 200);
    }
    let r = send(Method::GET, &p.admin_url("/admin/split"), &AUTH, "").await;
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "one token every 20 s: {retry}");
    assert!(r.json()["error"].as_str().unwrap().contains("rate limit"));
    // Token guessing is throttled too, and probes stay open for load balancers.
    let r = send(Method::GET, &p.admin_url("/admin/split"), &[], "").await;
    assert_eq!(r.status, 429);
    assert_eq!(get(&p.admin_url("/healthz")).await.status, 200);
    assert_eq!(get(&p.admin_url("/readyz")).await.status, 200);
    p.stop().await;
}

#[tokio::test]
async fn diagnostics_show_the_breaker_shadow_diffs_and_deadlocks() {
    let fake = FakeAtlantis::start().await;
    let p = spawn_proxy(&fake.url(), "admin:\n  listen: 127.0.0.1:0\n  token: t\n").await;
    let ready = get(&p.admin_url("/readyz")).await;
    assert_eq!(ready.json()["breaker"], "closed");
    assert_eq!(ready.json()["checks"]["engine"], "ok");
    assert_eq!(split_of(&p).await["breaker"], "closed");

    let diffs = send(Method::GET, &p.admin_url("/admin/shadow/diffs"), &AUTH, "").await;
    assert_eq!(diffs.status, 200);
    let d = diffs.json();
    assert_eq!(
        (d["compared"].as_u64(), d["mismatched"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(d["recent"].as_array().unwrap().is_empty());

    let dl = send(Method::GET, &p.admin_url("/admin/deadlocks"), &AUTH, "").await;
    assert_eq!(dl.status, 200);
    assert!(dl.json()["deadlocks"].as_array().unwrap().is_empty());
    assert_eq!(
        get(&p.admin_url("/admin/shadow/diffs")).await.status,
        401,
        "behind the token"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_rollback_during_a_redis_outage_holds_and_is_stored_when_redis_returns() {
    let redis = RedisServer::start();
    let port = redis.port;
    let fake = FakeAtlantis::start().await;
    let cfg = yaml(&redis, 40);
    let a = spawn_proxy(&fake.url(), &cfg).await;
    assert_eq!(split_of(&a).await["traffic_split"], 40);

    drop(redis);
    let started = Instant::now();
    let rb = send(Method::POST, &a.admin_url("/admin/rollback"), &AUTH, "").await;
    assert_eq!(rb.status, 200, "{}", rb.text());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "rollback answered after {:?}",
        started.elapsed()
    );
    assert_eq!(
        split_of(&a).await["traffic_split"],
        0,
        "applied here at once"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        split_of(&a).await["traffic_split"],
        0,
        "not reverted meanwhile"
    );

    // Redis comes back empty on the same port: the pending rollback is written, not lost.
    let redis = tokio::task::spawn_blocking(move || RedisServer::start_on(port))
        .await
        .unwrap();
    let mut stored = String::new();
    for _ in 0..150 {
        stored = redis
            .command(&["GET", "ctl-test:control:split"])
            .unwrap_or_default();
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stored.contains("\"traffic_split\":0"), "stored: {stored:?}");
    // A replica started now follows the stored rollback, not its config's 40.
    let b = spawn_proxy(&fake.url(), &cfg).await;
    assert_eq!(split_of(&b).await["traffic_split"], 0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_redis_engine_serves_again_after_a_redis_restart() {
    use atlantis_lock_proxy::engine::{EngineSettings, LockEngine, RedisEngine, RedisSettings};
    let redis = RedisServer::start();
    let port = redis.port;
    let engine = RedisEngine::connect(
        EngineSettings::default(),
        RedisSettings {
            addr: redis.addr.clone(),
            ..RedisSettings::default()
        },
    )
    .await
    .unwrap();
    engine.ping().await.unwrap();
    drop(redis);
    assert!(engine.ping().await.is_err());
    let _redis = tokio::task::spawn_blocking(move || RedisServer::start_on(port))
        .await
        .unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if engine.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "engine never recovered after a Redis restart");
}

#[tokio::test]
async fn on_a_redis_cluster_replicas_follow_by_re_reading() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let nodes = cluster
        .addrs()
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = format!(
        "admin:\n  listen: 127.0.0.1:0\n  token: t\nenhanced-locking:\n  traffic-split: 5\n  redis:\n    cluster-mode: true\n    cluster-nodes: [{nodes}]\n    key-prefix: \"ctl-cluster:\"\n"
    );
    let fake = FakeAtlantis::start().await;
    let a = spawn_proxy(&fake.url(), &cfg).await;
    let b = spawn_proxy(&fake.url(), &cfg).await;
    // B has started following (its first re-read is done), so what follows measures the re-read.
    assert_eq!(split_of(&b).await["traffic_split"], 5);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let put = send(
        Method::PUT,
        &a.admin_url("/admin/split"),
        &AUTH,
        r#"{"traffic_split": 70, "monitor_only": true}"#,
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let took = followed(&b, 70, Duration::from_secs(3))
        .await
        .expect("replica B never followed on the cluster");
    eprintln!("replica B followed the split change in {took:?}");
    assert!(took < Duration::from_secs(1), "B followed after {took:?}");
    assert_eq!(split_of(&b).await["monitor_only"], true);
    a.stop().await;
    b.stop().await;
}
