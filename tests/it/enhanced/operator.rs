//! The operator's controls on the request path: rollback, shadow mode, the circuit breaker.

use std::time::{Duration, Instant};

use http::Method;

use super::{Backend, REPO, SECRET, Setup, base_yaml, key};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeLock, FakeOptions, locked_text};
use crate::support::http::{get, send};
use crate::support::proxy::spawn_proxy;
use crate::support::redis::RedisServer;

#[tokio::test]
async fn rollback_sends_the_very_next_request_legacy_and_hands_waiters_to_atlantis() {
    let s = Setup::start(Backend::Memory, "").await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (waiting, r) = s.plan(2, "net", "prod").await;
    assert_eq!(r.status, 202);

    let rb = send(Method::POST, &s.proxy.admin_url("/admin/rollback"), &[], "").await;
    assert_eq!(rb.status, 200, "{}", rb.text());
    // The next request takes the legacy path: Atlantis answers it, and says "locked".
    let (_, r3) = s.plan(3, "net", "prod").await;
    assert_eq!(r3.status, 200, "{}", r3.text());
    assert_eq!(r3.text(), "Processing...\n");
    assert!(
        eventually(Duration::from_secs(5), || s
            .fake
            .comments()
            .iter()
            .any(|c| c.pull == 3 && c.body == locked_text(1)))
        .await
    );
    // The repository left the enhanced path, so its waiter goes to Atlantis now (legacy behaviour).
    assert!(s.wait_arrival(&waiting).await);
    assert!(s.queue(&key("net", "prod")).await.is_empty());
    let m = get(&s.proxy.admin_url("/metrics")).await.text();
    assert!(
        m.contains("atlantis_lock_proxy_traffic_split_percent 0"),
        "{m}"
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn shadow_mode_diffs_decisions_and_reports_a_seeded_divergence() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let yaml = base_yaml(None, "  monitor-only: true\n", "")
        .replace("traffic-split: 100", "traffic-split: 0");
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    let s = Setup {
        fake,
        proxy,
        _redis: None,
    };
    // Mixed traffic: plans, a contended plan, a release, a plan after it.
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (_, r) = s.plan(2, "net", "prod").await;
    assert_eq!(r.status, 200, "shadow mode never queues: legacy decides");
    s.plan(3, "app", "prod").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    s.close(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.plan(2, "net", "prod").await;
    let diffs = |s: &Setup| {
        let s = s.proxy.admin_url("/admin/shadow/diffs");
        async move { get(&s).await.json() }
    };
    let mut d = serde_json::Value::Null;
    for _ in 0..40 {
        d = diffs(&s).await;
        if d["compared"].as_u64() >= Some(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d["compared"].as_u64() >= Some(5), "{d}");
    assert_eq!(d["mismatched"], 0, "no unexpected mismatches: {d}");
    assert_eq!(
        d["by_kind"]["legacy_denied_enhanced_would_queue"], 1,
        "the expected difference: {d}"
    );

    // Seeded divergence: Atlantis holds a lock the engine cannot know (taken behind its back).
    s.fake.insert_lock(FakeLock {
        repo: REPO.into(),
        path: "dark".into(),
        workspace: "default".into(),
        project: String::new(),
        pull: 9,
        user: "mallory".into(),
        url: FakeLock::github_url(REPO, 9),
    });
    s.plan(4, "dark", "default").await;
    let mut found = false;
    for _ in 0..40 {
        d = diffs(&s).await;
        if d["mismatched"] == 1 {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "{d}");
    assert_eq!(d["by_kind"]["legacy_denied_enhanced_would_grant"], 1, "{d}");
    let recent = d["recent"].as_array().unwrap();
    assert!(
        recent
            .iter()
            .any(|r| r["kind"] == "legacy_denied_enhanced_would_grant" && r["pull"] == 4),
        "{d}"
    );
    s.proxy.stop().await;
}

/// Shadow mode compares `/api/plan` with Atlantis's answer (its lock table no longer shows the
/// call's locks once it answered) and `DELETE /locks` with its status.
#[tokio::test]
async fn shadow_mode_compares_api_calls_by_their_answer_and_lock_deletes_by_status() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        api_secret: Some("api".into()),
        ..Default::default()
    })
    .await;
    let yaml = base_yaml(None, "  monitor-only: true\n", "  api-secret: api\n")
        .replace("traffic-split: 100", "traffic-split: 0");
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    let s = Setup {
        fake,
        proxy,
        _redis: None,
    };
    let api_plan = |pull: i64, dir: &'static str| {
        let url = s.proxy.url("/api/plan");
        async move {
            let body = format!(
                r#"{{"Repository":"{REPO}","Ref":"main","Type":"Github","PR":{pull},"Paths":[{{"Directory":"{dir}","Workspace":"prod"}}]}}"#
            );
            send(
                Method::POST,
                &url,
                &[
                    ("x-atlantis-token", "api"),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    let diffs = || {
        let url = s.proxy.admin_url("/admin/shadow/diffs");
        async move { get(&url).await.json() }
    };
    let compared = |n: u64| async move {
        let mut d = serde_json::Value::Null;
        for _ in 0..50 {
            d = diffs().await;
            if d["compared"].as_u64() >= Some(n) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d
    };
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let d = compared(1).await;
    assert_eq!(d["compared"], 1, "{d}");
    // Atlantis refuses the call (500, "locked by ... pull #1"): the engine would have queued it.
    let r = api_plan(2, "net").await;
    assert_eq!(r.status, 500, "{}", r.text());
    // Atlantis runs the call and releases its locks before answering; the engine agrees.
    let r = api_plan(3, "app").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = compared(3).await;
    assert_eq!(d["compared"], 3, "{d}");
    assert_eq!(d["by_kind"]["legacy_denied_enhanced_would_queue"], 1, "{d}");
    assert_eq!(d["mismatched"], 0, "{d}");
    // The shadow engine ended pull 3's call too: another call on the same project agrees again.
    let r = api_plan(4, "app").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // DELETE /locks: Atlantis deleted pull 1's lock (200), and the engine would release it.
    let r = send(
        Method::DELETE,
        &s.proxy.url(&format!(
            "/locks?id={}",
            key("net", "prod").replace('/', "%2F")
        )),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = compared(5).await;
    assert_eq!(d["compared"], 5, "{d}");
    assert_eq!(d["mismatched"], 0, "{d}");
    assert_eq!(d["by_kind"]["match"], 4, "{d}");
    s.proxy.stop().await;
}

#[tokio::test]
async fn redis_down_opens_the_breaker_and_everything_still_reaches_atlantis() {
    if std::env::var_os("ALP_SIM_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_test_writer()
            .try_init();
    }
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let extra = format!(
        "  enable-circuit-breaker: true\n  circuit-breaker:\n    failure-threshold: 2\n    success-threshold: 1\n    timeout: 500ms\n  redis:\n    addr: {}\n    read-timeout: 300ms\n    dial-timeout: 300ms\n",
        redis.addr
    );
    let yaml = base_yaml(None, &extra, "");
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    let s = Setup {
        fake,
        proxy,
        _redis: None,
    };
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (waiting, r) = s.plan(2, "net", "prod").await;
    assert_eq!(r.status, 202);

    redis.stop();
    // Every request still gets Atlantis's own answer, through the legacy path.
    let start = Instant::now();
    for (pull, dir) in [(3, "a"), (4, "b"), (5, "c"), (6, "d")] {
        let (hook, r) = s.plan(pull, dir, "default").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "Processing...\n");
        assert_eq!(s.arrivals(&hook).len(), 1);
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "no request waits long on a dead backend"
    );
    let split = get(&s.proxy.admin_url("/admin/split")).await.json();
    assert_eq!(split["breaker"], "open", "{split}");
    assert!(
        s.arrivals(&waiting).is_empty(),
        "the queued request is still queued, not lost"
    );

    redis.restart();
    let mut closed = false;
    for _ in 0..50 {
        if get(&s.proxy.admin_url("/admin/split")).await.json()["breaker"] == "closed" {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(closed, "the breaker closes once Redis is back");
    s.close(1).await;
    assert!(
        s.wait_arrival(&waiting).await,
        "the waiter queued before the outage is served"
    );
    assert!(s.wait_atlantis_holder("net", "prod", 2).await);
    s.proxy.stop().await;
}

#[tokio::test]
async fn the_global_apply_lock_passes_through_and_its_state_is_recorded() {
    let s = Setup::start(Backend::Memory, "").await;
    let status = || async { get(&s.proxy.admin_url("/admin/status")).await.json() };
    assert_eq!(status().await["global_apply_locked"], false);
    let r = send(Method::POST, &s.proxy.url("/apply/lock"), &[], "").await;
    assert_eq!(r.status, 200, "Atlantis answers: {}", r.text());
    assert!(r.text().starts_with("Apply Lock is acquired on"));
    assert_eq!(status().await["global_apply_locked"], true);
    // Atlantis's own 500 for a second lock passes through and changes nothing.
    let again = send(Method::POST, &s.proxy.url("/apply/lock"), &[], "").await;
    assert_eq!(again.status, 500);
    assert!(!again.headers.contains_key("x-lock-proxy-error"));
    assert_eq!(status().await["global_apply_locked"], true);
    let r = send(Method::DELETE, &s.proxy.url("/apply/unlock"), &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Deleted apply lock\n");
    assert_eq!(status().await["global_apply_locked"], false);
    s.proxy.stop().await;
}
