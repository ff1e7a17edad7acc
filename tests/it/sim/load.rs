//! Load with faults: two replicas on one Redis, `ALP_LOAD_OPS` operations (default 2,000, about a
//! minute, in `cargo test`; 10,000 by hand) over 40 pulls and 15 locks, paced at up to 80
//! operations a second (each waits for its answer, and a close or unlock that waits for a
//! hand-off on its way slows the pace to about 37 a second), a Redis kill and restart and a
//! replica kill with waiters queued. Prints the figures; fails on any conflict,
//! lost or unanswered request.

use std::time::{Duration, Instant};

use super::world::{Rng, World};
use crate::support::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_faults_keeps_mutual_exclusion() {
    let ops: u64 = std::env::var("ALP_LOAD_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed = 7;
    let mut rng = Rng::new(seed);
    let redis = RedisServer::start_with(&["--appendonly", "yes"]);
    let mut w = World::new(seed, Some(redis), 2, "3s").await;
    // Figures first; the closed-pull replays are asserted after they are printed.
    w.report_only = true;
    let dirs: Vec<String> = (0..15).map(|i| format!("p{i:02}")).collect();
    let period = Duration::from_micros(1_000_000 / 80);
    let start = Instant::now();
    let (kill_redis_at, kill_replica_at) = (ops / 3, 2 * ops / 3);
    let mut recovery = None;
    for i in 0..ops {
        let tick = start + period * i as u32;
        tokio::time::sleep_until(tick.into()).await;
        if i == kill_redis_at {
            w.restart_redis(Duration::from_secs(3)).await;
            let back = Instant::now();
            let admin = match &w.replicas[0] {
                super::world::Replica::Process { admin_port, .. } => {
                    format!("http://127.0.0.1:{admin_port}/admin/split")
                }
                super::world::Replica::InProcess(p) => p.admin_url("/admin/split"),
            };
            // Recovery: the breaker closes again once Redis answers.
            loop {
                let r = crate::support::http::try_send(
                    http::Method::GET,
                    &admin,
                    &[],
                    Vec::new(),
                    Duration::from_secs(2),
                )
                .await;
                if r.is_ok_and(|r| r.json()["breaker"] == "closed")
                    || back.elapsed() > Duration::from_secs(30)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            recovery = Some(back.elapsed());
        }
        if i == kill_replica_at {
            w.crash_replica(1).await;
        }
        let r = rng.below(2) as usize;
        let pull = w.pick_pull(&mut rng, 40);
        match rng.below(100) {
            0..=69 => {
                let dir = dirs[rng.below(dirs.len() as u64) as usize].clone();
                w.plan(r, pull, &dir).await;
            }
            70..=84 => w.unlock(r, pull).await,
            _ => w.close(r, pull).await,
        }
        if i % 100 == 0 {
            w.check_no_conflict();
        }
    }
    let elapsed = start.elapsed();
    let duplicates = w.fake.duplicate_runs();
    let (tally, settled) = w.finish(Duration::from_secs(60)).await;
    eprintln!(
        "load with faults: {ops} operations in {elapsed:?} ({:.0}/s); conflicts 0, lost 0, \
         unanswered {}, duplicated replays {duplicates}; forwarded {}, queued {}; \
         breaker closed {:?} after Redis came back; settled {settled:?} after the last close; \
         queued commands that reached Atlantis after their pull's close: {:?}",
        ops as f64 / elapsed.as_secs_f64(),
        tally.unanswered,
        tally.forwarded,
        tally.queued,
        recovery,
        tally.replayed_after_close,
    );
    // Duplicates are reported, not failed: a replay whose replica died between sending and
    // confirming may run again (README, Guarantees: what remains at least once).
    assert!(
        tally.replayed_after_close.is_empty(),
        "queued commands replayed after their pull's close: {:?}",
        tally.replayed_after_close
    );
}
