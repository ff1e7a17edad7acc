//! Memory caps on stored requests (issue 14, item 6), on every backend: besides `max-queue-size`
//! per lock, waiters and stored bytes are capped per repository and in total; a stored request
//! counts until it is let go (replayed and confirmed, forgotten), and caps bind queueing only.

use atlantis_lock_proxy::classify::Priority::Normal;
use atlantis_lock_proxy::classify::{LockKey, PullRef, Vcs};
use atlantis_lock_proxy::engine::{
    AcquireOutcome, AcquireRequest, EngineError, LockEngine, QueueCap, QueueOutcome,
};

use super::ctx::{Ctx, REPO, next, pull, req};

const OTHER: &str = "acme/other";

fn other(n: i64, dir: &str) -> AcquireRequest {
    AcquireRequest {
        locks: vec![LockKey::new(OTHER, dir, "default", "")],
        pull: PullRef::new(Vcs::Github, OTHER, n),
        user: format!("user{n}"),
        priority: Normal,
        hold_timeout: None,
        request_id: None,
    }
}

async fn outcome(
    e: &dyn LockEngine,
    r: AcquireRequest,
    bytes: usize,
) -> Result<&'static str, EngineError> {
    Ok(match e.acquire_or_enqueue(r, vec![b'x'; bytes]).await? {
        QueueOutcome::Granted(_) => "granted",
        QueueOutcome::Queued(_) => "queued",
        QueueOutcome::Forgotten => "forgotten",
    })
}

fn capped(r: Result<&'static str, EngineError>) -> Option<QueueCap> {
    match r {
        Err(EngineError::QueueCapped { cap, .. }) => Some(cap),
        other => panic!("expected a cap, got {other:?}"),
    }
}

pub async fn memory_caps(mut ctx: Ctx) {
    let s = ctx.settings();
    s.max_waiters_per_repo = 2;
    s.max_queued_bytes_per_repo = 1_000;
    s.max_waiters_total = 3;
    s.max_queued_bytes_total = 1_000;
    let e = ctx.engine().await;
    let mut rx = e.take_dispatches().expect("dispatches");
    assert_eq!(
        outcome(&*e, req(1, Normal, &["k"]), 10).await.unwrap(),
        "granted"
    );
    assert_eq!(
        outcome(&*e, req(2, Normal, &["k"]), 10).await.unwrap(),
        "queued"
    );
    assert_eq!(
        outcome(&*e, req(3, Normal, &["k"]), 10).await.unwrap(),
        "queued"
    );
    assert_eq!(
        capped(outcome(&*e, req(4, Normal, &["k"]), 10).await),
        Some(QueueCap::RepoWaiters),
        "a third waiter of one repository"
    );
    // The cap binds queueing only: a free lock is still granted.
    assert_eq!(
        outcome(&*e, req(9, Normal, &["free"]), 10).await.unwrap(),
        "granted"
    );

    assert_eq!(outcome(&*e, other(1, "k"), 10).await.unwrap(), "granted");
    assert_eq!(
        capped(outcome(&*e, other(2, "k"), 1_001).await),
        Some(QueueCap::RepoBytes),
        "a request larger than the repository's byte cap"
    );
    assert_eq!(
        capped(outcome(&*e, other(2, "k"), 990).await),
        Some(QueueCap::TotalBytes),
        "20 + 990 bytes stored in total"
    );
    assert_eq!(outcome(&*e, other(2, "k"), 10).await.unwrap(), "queued");
    assert_eq!(
        capped(outcome(&*e, other(3, "k"), 10).await),
        Some(QueueCap::TotalWaiters),
        "a fourth waiter in total"
    );
    assert!(matches!(
        e.enqueue(other(3, "k"), vec![b'x'; 10]).await,
        Err(EngineError::QueueCapped {
            cap: QueueCap::TotalWaiters,
            max: 3
        })
    ));
    let queued: usize = e
        .list_queues()
        .await
        .unwrap()
        .iter()
        .map(|q| q.waiters.len())
        .sum();
    assert_eq!(queued, 3, "nothing refused was stored");

    // Pull 2 is granted and its replay confirmed: its stored request is let go.
    e.release_pull(pull(1)).await.expect("release");
    let d = next(&mut rx).await;
    assert_eq!(d.pull, pull(2));
    e.confirm(&d).await.expect("confirm");
    e.maintain(false).await.expect("maintain");
    assert_eq!(outcome(&*e, other(3, "k"), 10).await.unwrap(), "queued");
    e.maintain(false).await.expect("maintain");
    assert_eq!(
        capped(outcome(&*e, req(5, Normal, &["k"]), 10).await),
        Some(QueueCap::TotalWaiters)
    );
    let granted = e.acquire(req(2, Normal, &["k"])).await.expect("re-entrant");
    assert!(matches!(granted, AcquireOutcome::Granted(_)), "{granted:?}");
    assert_eq!(REPO, "acme/infra");
}
