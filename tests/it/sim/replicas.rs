//! Two replicas on one Redis, one of them out of step: the deterministic cases the outage
//! simulation found (replica leases, `src/enhanced/peers.rs`).

use std::time::Duration;

use super::world::World;
use crate::support::redis::RedisServer;

async fn world() -> World {
    let server = RedisServer::start_with(&["--appendonly", "yes"]);
    World::new(1, Some(server), 2, "700ms").await
}

/// During a Redis pause r1's enqueue times out and its plan goes to Atlantis past the engine;
/// r0's plan of another pull for the same lock, answered by Redis once it resumes, must not be
/// granted from the engine (which does not know r1's lock): it waits for r1's repair and queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_past_the_engine_holds_back_the_others_grants() {
    let mut w = world().await;
    assert_eq!(w.plan(0, 1, "db").await, 200);
    w.pause_redis(700);
    assert_eq!(w.plan(1, 3, "app").await, 200, "r1 took the legacy path");
    let status = w.plan(0, 2, "app").await;
    w.check_no_conflict();
    assert_eq!(status, 202, "r0 queued #2 behind #3's lock");
    w.finish(Duration::from_secs(20)).await;
}

/// A replica killed (`kill -9`) leaves a lease that lapses: the other holds its grants until the
/// lease is forgotten (`FORGET`, shorter than a request's wait), repairs from Atlantis and grants
/// again; nothing is lost and no plan takes the legacy path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replica_only_delays_the_other() {
    let mut w = world().await;
    assert_eq!(w.plan(0, 1, "db").await, 200);
    w.crash_replica(1).await;
    let start = std::time::Instant::now();
    assert_eq!(w.plan(0, 2, "app").await, 200);
    assert_eq!(
        w.plan(1, 2, "db").await,
        202,
        "queued behind #1, not legacy"
    );
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    w.check_no_conflict();
    w.finish(Duration::from_secs(20)).await;
}
