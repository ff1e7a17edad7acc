//! Memory engine behaviour on a paused clock: hours of timeouts in no wall time.

use std::sync::Arc;
use std::time::Duration;

use super::MemoryEngine;
use crate::engine::{
    AcquireOutcome, AcquireRequest, DispatchReason, EngineSettings, LockEngine, QueueOutcome,
    spawn_background,
};
use crate::vocab::{LockKey, Priority, PullRef};

fn req(pull: i64, dir: &str) -> AcquireRequest {
    AcquireRequest {
        locks: vec![LockKey::new("o/r", dir, "default", "")],
        pull: PullRef::new(crate::vocab::Vcs::Github, "o/r", pull),
        user: "u".into(),
        priority: Priority::Normal,
        hold_timeout: None,
        request_id: None,
    }
}

#[tokio::test(start_paused = true)]
async fn background_times_out_waiters_and_preempts_expired_holders() {
    let settings = EngineSettings {
        queue_timeout: Duration::from_secs(600),
        default_timeout: Duration::from_secs(900),
        enable_events: false,
        ..EngineSettings::default()
    };
    let engine = Arc::new(MemoryEngine::new(settings));
    let mut rx = engine.take_dispatches().expect("dispatches");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bg = spawn_background(engine.clone(), async move {
        let _ = stopped.await;
    });

    assert!(matches!(
        engine.acquire(req(1, "a")).await.expect("acquire"),
        AcquireOutcome::Granted(_)
    ));
    let queued = engine
        .acquire_or_enqueue(req(2, "a"), b"plan".to_vec())
        .await
        .expect("enqueue");
    assert!(matches!(queued, QueueOutcome::Queued(_)));

    // Ten minutes later the waiter is handed back with its request for Atlantis to answer.
    tokio::time::sleep(Duration::from_secs(601)).await;
    let d = rx.recv().await.expect("dispatch");
    assert_eq!(d.reason, DispatchReason::TimedOut);
    assert_eq!(d.payload, b"plan");
    engine.confirm(&d).await.expect("confirm");

    // After the 15-minute hold timeout, the next waiter preempts pull 1.
    engine
        .acquire_or_enqueue(req(3, "a"), b"plan 3".to_vec())
        .await
        .expect("enqueue");
    tokio::time::sleep(Duration::from_secs(400)).await;
    let d = rx.recv().await.expect("dispatch");
    assert_eq!((d.reason, d.pull.number), (DispatchReason::Granted, 3));
    assert_eq!(d.preempted.len(), 1);
    assert_eq!(d.preempted[0].pull.number, 1);

    let _ = stop.send(());
    bg.await.expect("background stops");
}

#[tokio::test(start_paused = true)]
async fn queue_depth_is_reported_by_priority() {
    let engine = MemoryEngine::new(EngineSettings {
        enable_events: false,
        ..EngineSettings::default()
    });
    engine.acquire(req(1, "a")).await.expect("acquire");
    let mut high = req(2, "a");
    high.priority = Priority::High;
    engine
        .acquire_or_enqueue(high, Vec::new())
        .await
        .expect("enqueue");
    engine.maintain(false).await.expect("maintain");
    assert_eq!(engine.stats().queue_depth(Priority::High), 1);
    assert_eq!(engine.stats().queue_depth(Priority::Low), 0);
}

#[tokio::test]
async fn without_redis_the_engine_is_the_memory_one() {
    let engine = crate::engine::build_engine(EngineSettings::default(), None)
        .await
        .expect("build");
    assert_eq!(engine.backend_name(), "memory");
    assert!(engine.ping().await.is_ok());
}

/// Collects formatted log output.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn state_changes_are_logged_as_events_when_enabled() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let engine = MemoryEngine::new(EngineSettings::default());
    let mut rx = engine.take_dispatches().expect("dispatches");
    engine.acquire(req(1, "a")).await.expect("acquire");
    engine
        .acquire_or_enqueue(req(2, "a"), Vec::new())
        .await
        .expect("enqueue");
    engine
        .release(req(1, "a").locks[0].clone(), None)
        .await
        .expect("release");
    rx.recv().await.expect("grant");
    let text = String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf8");
    for event in ["acquire", "enqueue", "release", "grant"] {
        assert!(
            text.contains(&format!("event=\"{event}\"")),
            "no {event} event in:\n{text}"
        );
    }
}

/// Issue 14, item 8: a repository left with no locks and no waiters leaves no entry behind,
/// while one that still holds a lock keeps its own.
#[tokio::test]
async fn a_repository_with_nothing_left_leaves_no_state() {
    let engine = MemoryEngine::new(EngineSettings {
        enable_events: false,
        ..EngineSettings::default()
    });
    let mut rx = engine.take_dispatches().expect("dispatches");
    let mut other = req(9, "a");
    other.locks = vec![LockKey::new("o/busy", "a", "default", "")];
    other.pull = PullRef::new(crate::vocab::Vcs::Github, "o/busy", 9);
    engine.acquire(other).await.expect("acquire");

    // A holder, a waiter granted after it, then nothing.
    engine.acquire(req(1, "a")).await.expect("acquire");
    let mut waiter = req(2, "a");
    waiter.request_id = Some("delivery-2".into());
    engine
        .acquire_or_enqueue(waiter, b"plan".to_vec())
        .await
        .expect("enqueue");
    engine
        .release(req(1, "a").locks[0].clone(), None)
        .await
        .expect("release");
    let d = rx.recv().await.expect("grant");
    assert_eq!((d.reason, d.pull.number), (DispatchReason::Granted, 2));
    engine.confirm(&d).await.expect("confirm");
    engine
        .release_pull(req(2, "a").pull)
        .await
        .expect("release pull");
    engine.maintain(false).await.expect("maintain");

    let repos: Vec<String> = engine
        .repos
        .lock()
        .expect("repos")
        .keys()
        .cloned()
        .collect();
    assert_eq!(repos, vec!["o/busy".to_string()]);
    assert_eq!(
        engine
            .usage
            .waiters
            .load(std::sync::atomic::Ordering::Acquire),
        0
    );
    assert_eq!(
        engine
            .usage
            .bytes
            .load(std::sync::atomic::Ordering::Acquire),
        0
    );
}
