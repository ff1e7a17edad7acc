//! Queue and replay: the product's main promise.

use std::time::Duration;

use http::Method;

use super::{Backend, REPO, SECRET, Setup, key};
use crate::support::eventually;
use crate::support::fake_atlantis::locked_text;
use crate::support::http::send;

async fn contended_plan_is_queued_then_replayed_byte_for_byte(backend: Backend) {
    let s = Setup::start(backend, "").await;
    let (_, r1) = s.plan(1, "net", "prod").await;
    assert_eq!(r1.status, 200, "{}", r1.text());
    assert_eq!(
        r1.text(),
        "Processing...\n",
        "a free lock is forwarded to Atlantis"
    );
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);

    let (hook2, r2) = s.plan(2, "net", "prod").await;
    assert_eq!(r2.status, 202, "{}", r2.text());
    assert_eq!(r2.headers["x-lock-proxy"], "queued");
    let body = r2.json();
    assert_eq!(body["status"], "queued");
    assert_eq!(body["priority"], "normal");
    assert_eq!(body["locks"][0]["key"], key("net", "prod"));
    assert_eq!(body["locks"][0]["position"], 1);
    assert_eq!(body["locks"][0]["held_by_pull"], 1);
    assert!(body["waiter_id"].as_str().is_some_and(|w| !w.is_empty()));
    assert!(
        s.arrivals(&hook2).is_empty(),
        "a queued webhook is not forwarded while it waits"
    );
    assert_eq!(s.queue(&key("net", "prod")).await, vec![2]);

    let closed = s.close(1).await;
    assert_eq!(
        closed.status,
        200,
        "the close is forwarded: {}",
        closed.text()
    );
    assert!(
        s.wait_arrival(&hook2).await,
        "PR 2's plan must be replayed after PR 1 closed"
    );
    let replayed = &s.arrivals(&hook2)[0];
    assert_eq!(
        replayed.signature_ok,
        Some(true),
        "Atlantis's HMAC check passes on the replay"
    );
    for (k, v) in &hook2.headers {
        assert_eq!(
            replayed.headers[k.as_str()],
            v.as_str(),
            "header {k} replayed unchanged"
        );
    }
    assert!(
        s.wait_atlantis_holder("net", "prod", 2).await,
        "PR 2 now holds the lock in Atlantis"
    );
    assert_eq!(s.engine_holder(&key("net", "prod")).await, Some(2));
    assert!(s.queue(&key("net", "prod")).await.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.arrivals(&hook2).len(), 1, "replayed exactly once");
    assert!(
        s.fake
            .comments()
            .iter()
            .all(|c| !c.body.contains("Plan Failed")),
        "nobody saw a lock failure"
    );
    s.proxy.stop().await;
}

on_both_backends!(contended_plan_is_queued_then_replayed_byte_for_byte);

async fn unlock_comment_hands_the_lock_to_the_next_waiter(backend: Backend) {
    let s = Setup::start(backend, "").await;
    s.plan(1, "app", "default").await;
    assert!(s.wait_atlantis_holder("app", "default", 1).await);
    let (hook2, r2) = s.plan(2, "app", "default").await;
    assert_eq!(r2.status, 202);
    // Atlantis processes `unlock` asynchronously: the replay must wait until its lock is gone.
    assert_eq!(s.unlock(1).await.status, 200);
    assert!(s.wait_arrival(&hook2).await);
    assert!(s.wait_atlantis_holder("app", "default", 2).await);
    assert!(
        s.fake
            .comments()
            .iter()
            .all(|c| !c.body.contains("Plan Failed")),
        "{:?}",
        s.fake.comments()
    );
    s.proxy.stop().await;
}

on_both_backends!(unlock_comment_hands_the_lock_to_the_next_waiter);

async fn waiters_are_served_by_priority(backend: Backend) {
    let s = Setup::start(backend, "").await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let mut hooks = Vec::new();
    for (pull, level) in [(2, "low"), (3, "normal"), (4, "high"), (5, "critical")] {
        let label = format!("atlantis/priority:{level}");
        let (hook, r) = s.plan_labeled(pull, "net", "prod", &[label.as_str()]).await;
        assert_eq!(r.status, 202);
        assert_eq!(r.json()["priority"], level);
        hooks.push((pull, hook));
    }
    assert_eq!(
        s.queue(&key("net", "prod")).await,
        vec![5, 4, 3, 2],
        "grant order: critical first"
    );
    let mut holder = 1;
    for expected in [5, 4, 3, 2] {
        s.close(holder).await;
        let hook = &hooks.iter().find(|(p, _)| *p == expected).unwrap().1;
        assert!(
            s.wait_arrival(hook).await,
            "pull {expected} should be replayed next"
        );
        for (other, h) in &hooks {
            if *other != expected && s.queue(&key("net", "prod")).await.contains(other) {
                assert!(
                    s.arrivals(h).is_empty(),
                    "pull {other} replayed before {expected}"
                );
            }
        }
        assert!(s.wait_atlantis_holder("net", "prod", expected).await);
        holder = expected;
    }
    s.proxy.stop().await;
}

on_both_backends!(waiters_are_served_by_priority);

#[tokio::test]
async fn a_low_priority_waiter_is_not_starved_by_a_stream_of_higher_ones() {
    // Aging: with queue-timeout 8s and boost 8, a waiter climbs one level per second.
    let s = Setup::start(
        Backend::Memory,
        "  queue-timeout: 8s\n  priority-boost-factor: 8.0\n",
    )
    .await;
    s.plan(100, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 100).await);
    let (low, r) = s
        .plan_labeled(1, "net", "prod", &["atlantis/priority:low"])
        .await;
    assert_eq!(r.status, 202);
    let mut holder = 100;
    let mut served_before_low = 0;
    for pull in 2..=7 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (_, r) = s
            .plan_labeled(pull, "net", "prod", &["atlantis/priority:normal"])
            .await;
        assert_eq!(r.status, 202);
        s.close(holder).await;
        let next = eventually(Duration::from_secs(5), || {
            s.atlantis_holder("net", "prod")
                .is_some_and(|h| h != holder)
        })
        .await;
        assert!(next, "someone must get the lock after {holder} closed");
        holder = s.atlantis_holder("net", "prod").unwrap();
        if holder == 1 {
            break;
        }
        served_before_low += 1;
    }
    assert_eq!(
        holder, 1,
        "the low waiter must be served while normal ones keep arriving"
    );
    assert!(!s.arrivals(&low).is_empty());
    assert!(
        served_before_low >= 1,
        "a fresh low waiter does not jump the queue at once"
    );
    s.proxy.stop().await;
}

async fn queue_timeout_hands_the_request_to_atlantis(backend: Backend) {
    let s = Setup::start(backend, "  queue-timeout: 1s\n").await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (hook2, r2) = s.plan(2, "net", "prod").await;
    assert_eq!(r2.status, 202);
    assert!(
        s.wait_arrival(&hook2).await,
        "after queue-timeout the request goes to Atlantis anyway"
    );
    let locked = eventually(Duration::from_secs(5), || {
        s.fake
            .comments()
            .iter()
            .any(|c| c.pull == 2 && c.body == locked_text(1))
    })
    .await;
    assert!(
        locked,
        "Atlantis answers PR 2 with its usual 'locked by #1': {:?}",
        s.fake.comments()
    );
    assert!(s.queue(&key("net", "prod")).await.is_empty());
    assert_eq!(s.atlantis_holder("net", "prod"), Some(1));
    s.proxy.stop().await;
}

on_both_backends!(queue_timeout_hands_the_request_to_atlantis);

async fn a_deadlock_is_broken_by_failing_the_lower_priority_pull(backend: Backend) {
    let s = Setup::start(backend, "  deadlock-check-interval: 300ms\n").await;
    // A (high) holds x, B (low) holds y; then each asks for the other's.
    s.plan_labeled(10, "x", "default", &["atlantis/priority:high"])
        .await;
    s.plan_labeled(20, "y", "default", &["atlantis/priority:low"])
        .await;
    assert!(s.wait_atlantis_holder("x", "default", 10).await);
    assert!(s.wait_atlantis_holder("y", "default", 20).await);
    let (a_wants_y, r) = s
        .plan_labeled(10, "y", "default", &["atlantis/priority:high"])
        .await;
    assert_eq!(r.status, 202);
    let start = std::time::Instant::now();
    let (b_wants_x, r) = s
        .plan_labeled(20, "x", "default", &["atlantis/priority:low"])
        .await;
    // Found on enqueue or by the periodic check; either way the victim is B, the lower priority.
    assert!(r.status == 202 || r.status == 200, "{}", r.text());
    assert!(
        s.wait_arrival(&b_wants_x).await,
        "the victim's request goes to Atlantis"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "broken within the check interval"
    );
    assert!(
        s.arrivals(&a_wants_y).is_empty(),
        "the higher-priority pull keeps waiting"
    );
    let d = s.admin("/admin/deadlocks").await;
    let rec = &d["deadlocks"][0];
    assert_eq!(rec["victim_pull"], 20, "{d}");
    assert_eq!(rec["victim_priority"], "low", "{d}");
    let mut cycle: Vec<i64> = rec["cycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    cycle.sort_unstable();
    cycle.dedup();
    assert_eq!(cycle, vec![10, 20], "{d}");
    assert!(s.queue(&key("y", "default")).await == vec![10]);
    assert!(
        eventually(Duration::from_secs(5), || s
            .fake
            .comments()
            .iter()
            .any(|c| c.pull == 20 && c.body == locked_text(10)))
        .await,
        "B hears Atlantis's usual 'locked by #10'"
    );
    s.proxy.stop().await;
}

on_both_backends!(a_deadlock_is_broken_by_failing_the_lower_priority_pull);

#[tokio::test]
async fn api_plan_waits_for_a_held_lock_then_gets_atlantis_answer() {
    let fake = crate::support::fake_atlantis::FakeAtlantis::start_with(
        crate::support::fake_atlantis::FakeOptions {
            github_secret: Some(SECRET.into()),
            api_secret: Some("api".into()),
            ..Default::default()
        },
    )
    .await;
    let yaml = super::base_yaml(None, "  queue-timeout: 20s\n", "  api-secret: api\n");
    let proxy = crate::support::proxy::spawn_proxy(&fake.url(), &yaml).await;
    let s = Setup {
        fake,
        proxy,
        _redis: None,
    };
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let url = s.proxy.url("/api/plan");
    let body = format!(
        r#"{{"Repository":"{REPO}","Ref":"main","Type":"Github","PR":2,"Paths":[{{"Directory":"net","Workspace":"prod"}}]}}"#
    );
    let call = tokio::spawn(async move {
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
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !call.is_finished(),
        "the API call waits while the lock is held"
    );
    assert!(s.fake.received_at("/api/plan").is_empty());
    s.close(1).await;
    let reply = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200, "Atlantis's own result: {}", reply.text());
    assert_eq!(reply.json()["ProjectResults"][0]["Failure"], "");
    // Atlantis releases the pull's locks when the call ends; so does the engine.
    assert!(
        eventually(Duration::from_secs(3), || s
            .atlantis_holder("net", "prod")
            .is_none())
        .await
    );
    assert_eq!(s.engine_holder(&key("net", "prod")).await, None);
    s.proxy.stop().await;
}

#[tokio::test]
async fn a_lock_past_its_hold_timeout_is_preempted_for_a_waiter() {
    let s = Setup::start(
        Backend::Redis,
        "  default-timeout: 1s\n  max-timeout: 2s\n  queue-timeout: 30s\n",
    )
    .await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (hook2, r) = s.plan(2, "net", "prod").await;
    assert_eq!(r.status, 202);
    // PR 1 never releases; after its hold timeout the lock goes to PR 2, in Atlantis too.
    assert!(s.wait_arrival(&hook2).await);
    let deletes = s.fake.received_at("/locks");
    assert_eq!(
        deletes.len(),
        1,
        "Atlantis's own lock is deleted for the waiter"
    );
    assert_eq!(deletes[0].uri, "/locks?id=acme%2Finfra%2Fnet%2Fprod%2F");
    assert!(s.wait_atlantis_holder("net", "prod", 2).await);
    assert_eq!(s.engine_holder(&key("net", "prod")).await, Some(2));
    s.proxy.stop().await;
}

#[tokio::test]
async fn operators_release_locks_and_remove_waiters() {
    let s = Setup::start(Backend::Memory, "").await;
    s.plan(1, "net", "prod").await;
    s.plan(1, "app", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    assert!(s.wait_atlantis_holder("app", "prod", 1).await);
    let (hook2, _) = s.plan(2, "net", "prod").await;
    let (hook3, _) = s.plan(3, "app", "prod").await;
    let locks = s.admin("/admin/locks").await;
    let net = locks["locks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == key("net", "prod"))
        .unwrap()
        .clone();
    assert_eq!(
        (
            net["repo"].as_str(),
            net["path"].as_str(),
            net["workspace"].as_str()
        ),
        (Some(REPO), Some("net"), Some("prod"))
    );
    assert_eq!(net["pull"], 1);
    assert!(net["fencing_token"].as_u64().is_some() && net["expires_at"].as_str().is_some());

    // Force-release: engine and Atlantis; the waiter is served.
    let enc = "acme%2Finfra%2Fnet%2Fprod%2F";
    let r = send(
        Method::DELETE,
        &s.proxy.admin_url(&format!("/admin/locks/{enc}")),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.wait_arrival(&hook2).await);
    assert!(s.wait_atlantis_holder("net", "prod", 2).await);
    let r = send(
        Method::DELETE,
        &s.proxy
            .admin_url("/admin/locks/acme%2Finfra%2Fnope%2Fdefault%2F"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 404);

    // Removing a waiter hands its request to Atlantis, like a timeout.
    let q = s.admin("/admin/queues").await;
    let id = q["queues"][0]["waiters"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(q["queues"][0]["waiters"][0]["pull"], 3);
    let r = send(
        Method::DELETE,
        &s.proxy
            .admin_url(&format!("/admin/queues/{}", id.replace('/', "%2F"))),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.wait_arrival(&hook3).await);
    assert!(
        eventually(Duration::from_secs(5), || s
            .fake
            .comments()
            .iter()
            .any(|c| c.pull == 3 && c.body == locked_text(1)))
        .await
    );
    let r = send(
        Method::DELETE,
        &s.proxy
            .admin_url(&format!("/admin/queues/{}", id.replace('/', "%2F"))),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
    s.proxy.stop().await;
}

/// Over a memory cap, a contended plan takes the legacy path (Atlantis answers "locked") and is
/// counted with its reason (issue 14, item 6).
#[tokio::test]
async fn over_a_memory_cap_a_plan_goes_to_atlantis_and_is_counted() {
    let s = Setup::start(Backend::Memory, "  max-waiters-per-repo: 1\n").await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (_, r2) = s.plan(2, "net", "prod").await;
    assert_eq!(r2.status, 202, "the first waiter queues");
    let (hook3, r3) = s.plan(3, "net", "prod").await;
    assert_ne!(r3.status, 202, "the second waiter is over the cap");
    assert!(!r3.headers.contains_key("x-lock-proxy"), "{r3:?}");
    assert_eq!(
        s.arrivals(&hook3).len(),
        1,
        "forwarded to Atlantis unchanged"
    );
    let metrics = crate::support::http::get(&s.proxy.admin_url("/metrics"))
        .await
        .text();
    assert!(
        metrics.contains("atlantis_lock_proxy_queue_refused_total{reason=\"repo_waiters\"} 1"),
        "{metrics}"
    );
    assert_eq!(s.queue(&key("net", "prod")).await, vec![2]);
    s.proxy.stop().await;
}
