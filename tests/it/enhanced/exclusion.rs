//! Mutual exclusion with Atlantis (DESIGN.md §10), one test per mechanism that used to break it:
//! each sequence once let a request the proxy admitted meet a lock Atlantis gave another pull.
//! The fake Atlantis counts such requests (`conflicts()`); every test ends with none, and with
//! the engine and Atlantis naming the same holder.

use std::time::Duration;

use super::{Backend, REPO, SECRET, Setup, base_yaml, key};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::proxy::spawn_proxy;
use crate::support::redis::RedisServer;

/// The engine and Atlantis agree on `dir`'s holder within a few seconds.
async fn agree(s: &Setup, dir: &str, pull: Option<i64>) {
    let k = key(dir, "default");
    let mut last = (None, None);
    for _ in 0..200 {
        let l = crate::support::http::get(&s.proxy.admin_url("/admin/locks")).await;
        if l.status != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let engine = l.json()["locks"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["key"] == k.as_str()).cloned())
            .and_then(|l| l["pull"].as_i64());
        let pair = (engine, s.atlantis_holder(dir, "default"));
        if pair == (pull, pull) {
            return;
        }
        last = pair;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "engine and Atlantis should both say {pull:?} holds {dir}, say (engine, Atlantis) = {last:?}"
    );
}

fn no_conflicts(s: &Setup) {
    let c = s.fake.conflicts();
    assert!(
        c.is_empty(),
        "admitted requests met another pull's lock: {c:?}"
    );
}

async fn handoffs_never_take_a_lock_granted_elsewhere(backend: Backend) {
    let s = Setup::start(backend, "").await;
    let (_, r) = s.plan(1, "net", "default").await;
    assert_eq!(r.status, 200);
    agree(&s, "net", Some(1)).await;
    let (w2a, r) = s.plan(2, "net", "default").await;
    assert_eq!(r.status, 202);
    let (w2b, r) = s.plan(2, "net", "default").await;
    assert_eq!(r.status, 202);
    let (w3, r) = s.plan(3, "net", "default").await;
    assert_eq!(r.status, 202);

    // Pull 1 closes: pull 2's first waiter is granted, and its second one with it (re-entrant).
    assert_eq!(s.close(1).await.status, 200);
    assert!(s.wait_arrival(&w2a).await && s.wait_arrival(&w2b).await);
    agree(&s, "net", Some(2)).await;
    assert_eq!(s.queue(&key("net", "default")).await, vec![3]);

    // Pull 2 unlocks: #3 gets the lock, in the engine and in Atlantis; nothing of #2 comes back.
    assert_eq!(s.unlock(2).await.status, 200);
    assert!(s.wait_arrival(&w3).await);
    agree(&s, "net", Some(3)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.arrivals(&w2a).len() + s.arrivals(&w2b).len(), 2);
    agree(&s, "net", Some(3)).await;
    no_conflicts(&s);
}

on_both_backends!(handoffs_never_take_a_lock_granted_elsewhere);

#[tokio::test]
async fn a_grant_in_flight_is_not_sent_after_its_pull_unlocked() {
    // Atlantis lists its locks slowly, so a grant waits a while before it may be sent.
    let s = Setup::start(Backend::Redis, "").await;
    s.plan(1, "net", "default").await;
    agree(&s, "net", Some(1)).await;
    let (w2, _) = s.plan(2, "net", "default").await;
    let (w3, _) = s.plan(3, "net", "default").await;
    s.fake.set_api_locks_delay(Duration::from_millis(400));
    // Pull 1 unlocks; #2 is granted but its replay waits on the slow listing; meanwhile pull 2
    // unlocks too. #2's stale grant must not be sent, and #3 then gets the lock.
    s.unlock(1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    s.unlock(2).await;
    assert!(s.wait_arrival(&w3).await);
    s.fake.set_api_locks_delay(Duration::ZERO);
    agree(&s, "net", Some(3)).await;
    assert!(
        s.arrivals(&w2).is_empty(),
        "the grant of #2 was stale when #2 unlocked: never sent"
    );
    no_conflicts(&s);
}

#[tokio::test]
async fn after_an_outage_the_engine_adopts_atlantis_holder() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let mut redis = RedisServer::start_with(&["--appendonly", "yes"]);
    let yaml = base_yaml(
        Some(&redis),
        "  redis:\n    addr: ADDR\n    read-timeout: 300ms\n    write-timeout: 300ms\n    dial-timeout: 300ms\n  \
         circuit-breaker:\n    failure-threshold: 2\n    timeout: 20s\n",
        "  lock-sync-interval: 500ms\n  lock-sync-grace: 2s\n",
    )
    .replace(&format!("  redis:\n    addr: {}\n", redis.addr), "")
    .replace("ADDR", &redis.addr);
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    let s = Setup {
        fake,
        proxy,
        _redis: None,
    };
    s.plan(1, "net", "default").await;
    agree(&s, "net", Some(1)).await;

    redis.stop();
    // Pull 1 closes during the outage (Atlantis releases; the engine cannot), pull 2 plans on
    // the legacy path and takes the lock in Atlantis.
    assert_eq!(s.close(1).await.status, 200);
    let (_, r) = s.plan(2, "net", "default").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.wait_atlantis_holder("net", "default", 2).await);

    redis.restart();
    let start = std::time::Instant::now();
    // The engine is repaired toward Atlantis; nobody queues behind closed pull #1.
    agree(&s, "net", Some(2)).await;
    let repaired = start.elapsed();
    let (_, r) = s.plan(2, "net", "default").await;
    assert_eq!(
        r.status,
        200,
        "pull 2's own re-plan is not queued: {}",
        r.text()
    );
    let (_, r) = s.plan(3, "net", "default").await;
    assert_eq!(r.status, 202, "{}", r.text());
    let body = r.json();
    assert_eq!(body["locks"][0]["held_by_pull"], 2, "{body}");
    // Recovery follows Redis, not the breaker's 20 s timeout.
    assert!(repaired < Duration::from_secs(10), "{repaired:?}");
    no_conflicts(&s);
}

#[tokio::test]
async fn a_request_forwarded_after_an_engine_timeout_is_never_replayed() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let redis = RedisServer::start();
    let yaml = base_yaml(
        None,
        &format!(
            "  redis:\n    addr: {}\n    read-timeout: 300ms\n    write-timeout: 300ms\n    max-retries: 0\n",
            redis.addr
        ),
        "",
    );
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    let s = Setup {
        fake,
        proxy,
        _redis: Some(redis),
    };
    s.plan(1, "net", "default").await;
    agree(&s, "net", Some(1)).await;
    // Redis stalls for 2 s: pull 2's enqueue times out and its plan goes to Atlantis, which
    // refuses it; the enqueue still lands when Redis resumes.
    let redis = s._redis.as_ref().unwrap();
    redis.command(&["CLIENT", "PAUSE", "2000", "ALL"]).unwrap();
    let (w2, r) = s.plan(2, "net", "default").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.wait_arrival(&w2).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // When pull 1 closes, the late waiter is not replayed: the user was already told "locked".
    assert_eq!(s.close(1).await.status, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s.arrivals(&w2).len(), 1, "the plan reached Atlantis once");
    assert!(s.queue(&key("net", "default")).await.is_empty());
    agree(&s, "net", None).await;
    no_conflicts(&s);
}

async fn a_closed_pull_is_dropped_from_the_queue(backend: Backend) {
    let s = Setup::start(backend, "").await;
    s.plan(1, "net", "default").await;
    agree(&s, "net", Some(1)).await;
    let (w2, _) = s.plan(2, "net", "default").await;
    let (w3, _) = s.plan(3, "net", "default").await;
    assert_eq!(s.close(2).await.status, 200);
    assert!(
        eventually(Duration::from_secs(5), || s
            .fake
            .received_at("/events")
            .len()
            >= 2)
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.queue(&key("net", "default")).await, vec![3]);
    assert_eq!(s.close(1).await.status, 200);
    assert!(s.wait_arrival(&w3).await);
    agree(&s, "net", Some(3)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.arrivals(&w2).is_empty(),
        "a closed pull's plan is not replayed"
    );
    assert_eq!(s.fake.closed_pull_runs(), 0);
    no_conflicts(&s);
}

on_both_backends!(a_closed_pull_is_dropped_from_the_queue);

async fn an_expired_hold_is_deleted_in_atlantis_before_a_direct_grant(backend: Backend) {
    let s = Setup::start(backend, "  default-timeout: 1s\n  max-timeout: 2s\n").await;
    s.plan(1, "net", "default").await;
    agree(&s, "net", Some(1)).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Nobody waited: pull 2 arrives after the hold timeout and is granted directly.
    let (w2, r) = s.plan(2, "net", "default").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.wait_arrival(&w2).await);
    let deletes = s.fake.received_at("/locks");
    assert_eq!(deletes.len(), 1, "Atlantis's lock of #1 is deleted first");
    assert_eq!(
        deletes[0].uri,
        format!("/locks?id={}", key("net", "default").replace('/', "%2F"))
    );
    agree(&s, "net", Some(2)).await;
    no_conflicts(&s);
    let _ = REPO;
}

on_both_backends!(an_expired_hold_is_deleted_in_atlantis_before_a_direct_grant);

/// A timed-out waiter is handed to Atlantis while pull 1 holds its lock, and pull 1 closes right
/// after: Atlantis acts on the hand-off 300 ms after answering it but on the close at once, so a
/// close forwarded straight away would free the lock first and let the hand-off take it (pull 2
/// was told its plan timed out, and it ran anyway). The close waits for the hand-off to reach
/// Atlantis, which refuses it.
async fn a_release_waits_for_a_hand_off_on_its_way(backend: Backend) {
    let s = Setup::start(backend, "  queue-timeout: 1s\n").await;
    let (_, r) = s.plan(1, "net", "default").await;
    assert_eq!(r.status, 200);
    agree(&s, "net", Some(1)).await;
    s.fake
        .set_processing(Duration::from_millis(300), Duration::ZERO, 1);
    let (w2, r) = s.plan(2, "net", "default").await;
    assert_eq!(r.status, 202);
    // Pull 2's waiter times out and is handed to Atlantis; pull 1 closes as it arrives.
    assert!(s.wait_arrival(&w2).await);
    let sent = std::time::Instant::now();
    assert_eq!(s.close(1).await.status, 200);
    let closed_after = sent.elapsed();
    assert!(
        eventually(Duration::from_secs(5), || s
            .fake
            .comments()
            .iter()
            .any(|c| c.pull == 2 && c.body.contains("currently locked")))
        .await,
        "Atlantis refused the hand-off: {:?}",
        s.fake.comments()
    );
    assert!(
        closed_after >= Duration::from_millis(300),
        "the close waited for the hand-off ({closed_after:?})"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.atlantis_holder("net", "default"),
        None,
        "nobody holds net"
    );
    agree(&s, "net", None).await;
    no_conflicts(&s);
}

on_both_backends!(a_release_waits_for_a_hand_off_on_its_way);
