//! One repository's 10,000 waiters must not slow a plan in another repository (issue 14, item 8).
//!
//! The memory engine keeps a mutex per repository; the map of repositories is locked only to
//! find one. This bench measures a plan in repository B (acquire + release, the gate's two engine
//! calls) alone, then again while another thread keeps repository A busy with its O(n) work over
//! 10,000 waiters (maintenance passes, queue listings for `/admin/queues`, enqueues and removals).
//! Both runs happen in this process, one after the other, and the ratio of B's latencies is the
//! figure (a global lock held across A's work would make it the length of A's pass, ~ms).
//!
//! Run: `cargo bench --bench repo_isolation` (`ALP_BENCH_OPS` = plans measured per run).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atlantis_lock_proxy::classify::{LockKey, Priority, PullRef, Vcs};
use atlantis_lock_proxy::engine::{AcquireRequest, EngineSettings, LockEngine, MemoryEngine};

const WAITERS: i64 = 10_000;

fn request(repo: &str, pull: i64, dir: &str) -> AcquireRequest {
    AcquireRequest {
        locks: vec![LockKey::new(repo, dir, "default", "")],
        pull: PullRef::new(Vcs::Github, repo, pull),
        user: "bench".into(),
        priority: Priority::Normal,
        hold_timeout: None,
        request_id: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

async fn plans(e: &dyn LockEngine, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = request("bench/b", 1 + (i % 7) as i64, "app");
        let pull = r.pull.clone();
        let start = Instant::now();
        e.acquire(r).await.expect("acquire");
        e.release_pull(pull).await.expect("release");
        out.push(start.elapsed());
    }
    out.sort();
    out
}

fn main() {
    let ops: usize = std::env::var("ALP_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let settings = EngineSettings {
        enable_events: false,
        enable_deadlock_detection: false,
        max_queue_size: 20_000,
        max_waiters_per_repo: 20_000,
        max_waiters_total: 20_000,
        ..EngineSettings::default()
    };
    let engine: Arc<dyn LockEngine> = Arc::new(MemoryEngine::new(settings));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        engine
            .acquire(request("bench/a", 0, "net"))
            .await
            .expect("hold");
        for pull in 1..=WAITERS {
            engine
                .acquire_or_enqueue(request("bench/a", pull, "net"), vec![b'x'; 64])
                .await
                .expect("enqueue");
        }
    });
    let baseline = rt.block_on(plans(&*engine, ops));

    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (engine, stop) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut passes = 0u64;
                let mut longest = Duration::ZERO;
                let mut pull = WAITERS;
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    engine.maintain(false).await.expect("maintain");
                    let queues = engine.list_queues().await.expect("queues");
                    assert_eq!(queues[0].waiters.len() as i64, WAITERS);
                    pull += 1;
                    let q = engine
                        .enqueue(request("bench/a", pull, "net"), vec![b'x'; 64])
                        .await
                        .expect("enqueue");
                    engine.remove_waiter(q.waiter_id).await.expect("remove");
                    longest = longest.max(start.elapsed());
                    passes += 1;
                }
                (passes, longest)
            })
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let loaded = rt.block_on(plans(&*engine, ops));
    stop.store(true, Ordering::Relaxed);
    let (passes, longest) = busy.join().expect("busy thread");

    println!(
        "repository B: {ops} plans (acquire + release) per run; repository A: {WAITERS} waiters"
    );
    println!(
        "repository A's work meanwhile: {passes} rounds (maintain + list_queues + enqueue + remove), longest {longest:?}"
    );
    for (name, p) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        let (b, l) = (percentile(&baseline, p), percentile(&loaded, p));
        println!(
            "{name}: alone {b:?}, beside A's work {l:?}, ratio {:.2}",
            l.as_secs_f64() / b.as_secs_f64()
        );
    }
}
