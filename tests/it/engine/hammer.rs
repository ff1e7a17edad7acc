//! Concurrency check: 8 tasks on each of 2 engine instances share one Redis and hammer 20 locks.
//!
//! A checker proves no two holders ever overlapped on a lock (a grant while the lock is marked
//! held, or a fencing token that does not increase, fails the test) and that every waiter was
//! either granted or timed out. The queue timeout is short on purpose so both outcomes (and their
//! race inside the scripts) happen. Duration: `ALP_ENGINE_HAMMER_SECS` (default 10).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlantis_lock_proxy::classify::Priority;
use atlantis_lock_proxy::engine::{
    Dispatch, DispatchReason, LockEngine, QueueOutcome, spawn_background,
};
use tokio::sync::oneshot;

use super::ctx::{Backend, Ctx, key, pull};

const KEYS: usize = 20;
const TASKS_PER_ENGINE: usize = 8;

fn duration() -> Duration {
    let secs = std::env::var("ALP_ENGINE_HAMMER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    Duration::from_secs_f64(secs)
}

#[derive(Default)]
struct Checker {
    /// Lock → (holder pull, token) while held.
    held: Mutex<HashMap<usize, (i64, u64)>>,
    last_token: Mutex<HashMap<usize, u64>>,
    violations: Mutex<Vec<String>>,
    grants: AtomicU64,
    queued: AtomicU64,
    granted_from_queue: AtomicU64,
    timed_out: AtomicU64,
}

impl Checker {
    fn on_grant(&self, locks: &[usize], pull: i64, token: u64) {
        self.grants.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock().expect("held");
        let mut last = self.last_token.lock().expect("last");
        for k in locks {
            if let Some((other, t)) = held.get(k) {
                self.violations.lock().expect("v").push(format!(
                    "lock {k} granted to pull {pull} (token {token}) while pull {other} holds it (token {t})"
                ));
            }
            let prev = last.get(k).copied().unwrap_or(0);
            if token <= prev {
                self.violations
                    .lock()
                    .expect("v")
                    .push(format!("lock {k}: token {token} after {prev}"));
            }
            last.insert(*k, token);
            held.insert(*k, (pull, token));
        }
    }

    fn on_release(&self, locks: &[usize]) {
        let mut held = self.held.lock().expect("held");
        for k in locks {
            held.remove(k);
        }
    }
}

type Router = Arc<Mutex<HashMap<Vec<u8>, oneshot::Sender<Dispatch>>>>;

/// Routes every dispatch an engine receives to the task whose request it carries.
fn route(engine: Arc<dyn LockEngine>, router: Router) {
    let mut rx = engine.take_dispatches().expect("dispatches");
    tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            engine.confirm(&d).await.expect("confirm");
            if let Some(tx) = router.lock().expect("router").remove(&d.payload) {
                let _ = tx.send(d);
            }
        }
    });
}

async fn worker(engine: Arc<dyn LockEngine>, task: usize, checker: Arc<Checker>, router: Router) {
    let deadline = tokio::time::Instant::now() + duration();
    let mut iteration = 0i64;
    while tokio::time::Instant::now() < deadline {
        iteration += 1;
        let number = task as i64 * 1_000_000 + iteration;
        let a = rand::random_range(0..KEYS);
        let b = rand::random_range(0..KEYS);
        let priority = Priority::ALL[rand::random_range(0..4)];
        let locks = if a == b { vec![a] } else { vec![a, b] };
        let payload = format!("task {task} pull {number}").into_bytes();
        let (tx, rx) = oneshot::channel();
        router.lock().expect("router").insert(payload.clone(), tx);
        let request = atlantis_lock_proxy::engine::AcquireRequest {
            locks: locks.iter().map(|k| key(&format!("k{k}"))).collect(),
            pull: pull(number),
            user: format!("task{task}"),
            priority,
            hold_timeout: None,
            request_id: None,
        };
        let token = match engine
            .acquire_or_enqueue(request, payload.clone())
            .await
            .expect("acquire_or_enqueue")
        {
            QueueOutcome::Granted(g) => {
                router.lock().expect("router").remove(&payload);
                Some(g.fencing_token)
            }
            QueueOutcome::Forgotten => unreachable!("no request id is given"),
            QueueOutcome::Queued(_) => {
                checker.queued.fetch_add(1, Ordering::Relaxed);
                let d = tokio::time::timeout(Duration::from_secs(15), rx)
                    .await
                    .expect("every waiter is granted or times out")
                    .expect("router alive");
                match d.reason {
                    DispatchReason::Granted => {
                        checker.granted_from_queue.fetch_add(1, Ordering::Relaxed);
                        d.fencing_token
                    }
                    DispatchReason::TimedOut => {
                        checker.timed_out.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    other => panic!("unexpected dispatch {other:?}"),
                }
            }
        };
        if let Some(token) = token {
            checker.on_grant(&locks, number, token);
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..8u64))).await;
            // Mark free before releasing: a grant to another pull can only follow the release.
            checker.on_release(&locks);
            engine.release_pull(pull(number)).await.expect("release");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_overlap_and_every_waiter_is_served() {
    hammer(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_cluster_never_overlap() {
    hammer(Backend::Cluster).await;
}

async fn hammer(backend: Backend) {
    let mut ctx = Ctx::new(backend).await;
    let s = ctx.settings();
    s.queue_timeout = Duration::from_millis(40);
    s.timeout_check_interval = Duration::from_millis(20);
    s.dispatch_lease = Duration::from_secs(30);
    s.enable_deadlock_detection = false; // all-or-nothing requests cannot deadlock
    let engines = [
        ctx.engine_as("hammer-a").await,
        ctx.engine_as("hammer-b").await,
    ];
    let checker = Arc::new(Checker::default());
    let router: Router = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();
    for e in &engines {
        route(e.clone(), router.clone());
        let mut stop = stop_rx.clone();
        background.push(spawn_background(e.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    let mut tasks = Vec::new();
    for (i, e) in engines.iter().enumerate() {
        for t in 0..TASKS_PER_ENGINE {
            let task = i * TASKS_PER_ENGINE + t + 1;
            tasks.push(tokio::spawn(worker(
                e.clone(),
                task,
                checker.clone(),
                router.clone(),
            )));
        }
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let _ = stop_tx.send(true);
    for b in background {
        b.await.expect("background");
    }
    let violations = checker.violations.lock().expect("v").clone();
    assert!(violations.is_empty(), "overlaps: {violations:#?}");
    let queued = checker.queued.load(Ordering::Relaxed);
    let served = checker.granted_from_queue.load(Ordering::Relaxed)
        + checker.timed_out.load(Ordering::Relaxed);
    assert_eq!(queued, served, "every waiter granted or timed out");
    let grants = checker.grants.load(Ordering::Relaxed);
    assert!(grants > 100, "the hammer made progress ({grants} grants)");
    assert!(
        queued > 10,
        "the hammer produced contention ({queued} waiters)"
    );
    eprintln!(
        "hammer ({backend:?}): {grants} grants, {queued} queued, {} granted from queue, {} timed out",
        checker.granted_from_queue.load(Ordering::Relaxed),
        checker.timed_out.load(Ordering::Relaxed)
    );
    assert!(engines[0].list_locks().await.expect("locks").is_empty());
    assert!(engines[0].list_queues().await.expect("queues").is_empty());
}
