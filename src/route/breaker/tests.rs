use super::*;

fn breaker(failures: u32, successes: u32) -> CircuitBreaker {
    CircuitBreaker::new(
        BreakerSettings {
            enabled: true,
            failure_threshold: failures,
            success_threshold: successes,
            open_for: Duration::from_secs(30),
        },
        None,
    )
}

async fn fail(b: &CircuitBreaker) -> Result<(), BreakerError<EngineError>> {
    b.call(async { Err::<(), _>(EngineError::BackendTimeout) })
        .await
}

async fn succeed(b: &CircuitBreaker) -> Result<(), BreakerError<EngineError>> {
    b.call(async { Ok::<(), EngineError>(()) }).await
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_failures_and_refuses_calls() {
    let b = breaker(3, 2);
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    succeed(&b).await.unwrap();
    // The streak was broken: two more failures are not enough.
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    assert_eq!(b.state_name(), "closed");
    fail(&b).await.unwrap_err();
    assert_eq!(b.state_name(), "open");
    let mut called = false;
    let r = b
        .call(async {
            called = true;
            Ok::<(), EngineError>(())
        })
        .await;
    assert!(matches!(r, Err(BreakerError::Open)));
    assert!(!called, "an open breaker must not call the backend");
}

#[tokio::test(start_paused = true)]
async fn half_open_after_the_timeout_then_closes_after_enough_successes() {
    let b = breaker(1, 2);
    fail(&b).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(b.allow().is_none(), "still open before the timeout");
    tokio::time::advance(Duration::from_secs(1)).await;
    succeed(&b).await.unwrap();
    assert_eq!(b.state_name(), "half-open");
    succeed(&b).await.unwrap();
    assert_eq!(b.state_name(), "closed");
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_a_full_timeout() {
    let b = breaker(1, 1);
    fail(&b).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(30)).await;
    fail(&b).await.unwrap_err();
    assert_eq!(b.state_name(), "open");
    tokio::time::advance(Duration::from_secs(20)).await;
    assert!(b.allow().is_none());
    tokio::time::advance(Duration::from_secs(10)).await;
    succeed(&b).await.unwrap();
    assert_eq!(b.state_name(), "closed");
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_only_a_few_probes_through_at_once() {
    let b = breaker(1, 2);
    fail(&b).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(30)).await;
    let p1 = b.allow().expect("first probe");
    let p2 = b.allow().expect("second probe");
    assert!(b.allow().is_none(), "no more than success-threshold probes");
    drop(p2); // a cancelled probe frees its slot
    let p3 = b.allow().expect("slot freed");
    p1.record(true);
    p3.record(true);
    assert_eq!(b.state_name(), "closed");
}

#[tokio::test(start_paused = true)]
async fn timeouts_count_and_refusals_do_not() {
    let b = breaker(2, 1);
    let full = || async {
        Err::<(), _>(EngineError::QueueFull {
            key: "k".into(),
            max: 1,
        })
    };
    for _ in 0..5 {
        assert!(matches!(b.call(full()).await, Err(BreakerError::Inner(_))));
    }
    assert_eq!(
        b.state_name(),
        "closed",
        "a full queue is not a sick backend"
    );
    for _ in 0..2 {
        let r = b
            .call(async { Err::<(), _>(EngineError::BackendTimeout) })
            .await;
        assert!(matches!(
            r,
            Err(BreakerError::Inner(EngineError::BackendTimeout))
        ));
    }
    assert_eq!(b.state_name(), "open");
}

#[tokio::test(start_paused = true)]
async fn a_late_failure_from_before_the_reopen_is_ignored() {
    let b = breaker(1, 1);
    let stale = b.allow().unwrap();
    fail(&b).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(30)).await;
    succeed(&b).await.unwrap();
    assert_eq!(b.state_name(), "closed");
    stale.record(false);
    assert_eq!(b.state_name(), "closed", "a stale result must not reopen");
}

#[tokio::test(start_paused = true)]
async fn the_prober_closes_the_breaker_without_any_traffic() {
    let b = Arc::new(breaker(1, 3));
    fail(&b).await.unwrap_err();
    let engine: Arc<dyn LockEngine> =
        Arc::new(crate::engine::MemoryEngine::new(Default::default()));
    let stop = CancellationToken::new();
    let prober = b.spawn_prober(engine, stop.clone());
    // The backend answers: probes start at once, not after the 30 s timeout, and three
    // successes 250 ms apart close the breaker well within 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        b.state_name(),
        "closed",
        "recovery follows the backend, not the clock"
    );
    stop.cancel();
    prober.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn disabled_never_opens_and_the_gauge_follows_the_state() {
    let off = CircuitBreaker::new(
        BreakerSettings {
            enabled: false,
            failure_threshold: 1,
            success_threshold: 1,
            open_for: Duration::from_secs(1),
        },
        None,
    );
    for _ in 0..10 {
        fail(&off).await.unwrap_err();
    }
    assert_eq!(off.state_name(), "closed");

    let m = Arc::new(Metrics::new());
    let b = CircuitBreaker::new(
        BreakerSettings {
            enabled: true,
            failure_threshold: 1,
            success_threshold: 1,
            open_for: Duration::from_secs(1),
        },
        Some(m.clone()),
    );
    fail(&b).await.unwrap_err();
    let text = m.encode();
    assert!(
        text.lines().any(|l| {
            l.starts_with("atlantis_enhanced_locking_circuit_breaker_state ")
                && l.split_whitespace()
                    .last()
                    .and_then(|v| v.parse::<f64>().ok())
                    == Some(1.0)
        }),
        "{text}"
    );
}

#[tokio::test]
async fn the_guarded_engine_refuses_new_work_while_open_and_keeps_releasing() {
    use crate::engine::{AcquireOutcome, AcquireRequest, EngineSettings, MemoryEngine};
    use crate::vocab::{LockKey, Priority, PullRef, Vcs};
    let b = Arc::new(breaker(1, 1));
    let engine = Guarded::new(
        Arc::new(MemoryEngine::new(EngineSettings::default())),
        b.clone(),
    );
    let key: LockKey = "acme/infra/net/default/".parse().unwrap();
    let pull = PullRef::new(Vcs::Github, "acme/infra", 1);
    let req = |pull: &PullRef| AcquireRequest {
        locks: vec![key.clone()],
        pull: pull.clone(),
        user: "alice".into(),
        priority: Priority::Normal,
        hold_timeout: None,
        request_id: None,
    };
    assert!(matches!(
        engine.acquire(req(&pull)).await,
        Ok(AcquireOutcome::Granted(_))
    ));
    // One backend failure opens it (threshold 1).
    fail(&b).await.unwrap_err();
    assert_eq!(b.state_name(), "open");
    let other = PullRef::new(Vcs::Github, "acme/infra", 2);
    assert!(matches!(
        engine.acquire(req(&other)).await,
        Err(EngineError::CircuitOpen)
    ));
    assert!(matches!(
        engine.acquire_or_enqueue(req(&other), Vec::new()).await,
        Err(EngineError::CircuitOpen)
    ));
    // Reads and releases still reach the backend: the engine follows Atlantis meanwhile.
    assert_eq!(engine.list_locks().await.unwrap().len(), 1);
    let released = engine.release_pull(pull).await.unwrap();
    assert_eq!(released.released.len(), 1, "{released:?}");
    assert!(engine.list_locks().await.unwrap().is_empty());
    assert_eq!(
        b.state_name(),
        "open",
        "successes while open do not close it"
    );
}
