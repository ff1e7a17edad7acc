//! engine: the lock engine (DESIGN.md §3).
//!
//! One [`LockEngine`] trait, two backends: [`MemoryEngine`] (embedded default, one replica) and
//! [`RedisEngine`] (standalone or Cluster, any number of replicas). Both implement the same
//! semantics and pass the same conformance suite (`tests/it/engine/`):
//!
//! - acquire is all-or-nothing and re-entrant for the same pull; a lock with waiters queued is not
//!   free for a newcomer;
//! - waiters queue per lock, best first (priority, aged by `priority-boost-factor`, FIFO within a
//!   level) and a waiter is granted only when it is at the head of **every** queue it is in and all
//!   its locks are free, so a multi-lock waiter cannot be starved by smaller requests;
//! - every grant gets a fencing token, strictly increasing per repository (a lock never leaves its
//!   repository, so tokens are monotonic per lock);
//! - grants, queue timeouts, deadlock victims and removals are handed to the dispatcher as
//!   [`Dispatch`]es; each is owned by one replica under a lease and re-offered when not confirmed.
//!
//! Time: the memory engine reads `tokio::time::Instant` (so `tokio::time::pause()` drives it); the
//! Redis engine reads the server's `TIME` inside its scripts so every replica shares one clock.

mod background;
mod deadlock;
mod events;
pub mod memory;
pub mod redis;
mod settings;
mod stats;
mod types;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

pub use background::spawn_background;
pub use deadlock::{WaitGraphInput, WaitNode, find_victim};
pub use memory::MemoryEngine;
pub use redis::RedisEngine;
pub use settings::{EngineSettings, RedisSettings, SHADOW_KEY_PREFIX, priority_of, rank};
pub use stats::EngineStats;
pub use types::{
    AcquireOutcome, AcquireRequest, Admission, Blocker, DeadlockRecord, Dispatch, DispatchReason,
    EngineError, Enqueued, Grant, HandBack, LockInfo, PeerState, Preempted, QueueCap, QueueInfo,
    QueueOutcome, QueuePosition, ReleaseOutcome, ReleaseSummary, WaiterId, WaiterInfo,
    from_unix_ms, unix_ms,
};

use std::sync::Arc;

use crate::vocab::{LockKey, PullId, PullRef};

/// Builds the configured engine: Redis when `redis` is given, otherwise the in-memory default.
pub async fn build_engine(
    settings: EngineSettings,
    redis: Option<RedisSettings>,
) -> EngineResult<Arc<dyn LockEngine>> {
    Ok(match redis {
        Some(r) => Arc::new(RedisEngine::connect(settings, r).await?),
        None => Arc::new(MemoryEngine::new(settings)),
    })
}

/// Receives the dispatches this replica owns (take it once with [`LockEngine::take_dispatches`]).
///
/// Delivery is at least once: a dispatch not confirmed within `dispatch_lease` is offered again
/// (possibly to another replica), so handlers should tolerate a repeat of the same id.
pub type DispatchReceiver = mpsc::Receiver<Dispatch>;

/// Dispatches buffered per replica; when full, further ones wait for their lease to run out.
pub const DISPATCH_BUFFER: usize = 1024;

/// Result type of engine operations.
pub type EngineResult<T> = Result<T, EngineError>;

/// The lock engine, used by the proxy as `Arc<dyn LockEngine>`.
pub trait LockEngine: Send + Sync + 'static {
    /// `"redis"` or `"memory"`.
    fn backend_name(&self) -> &'static str;

    /// The settings the engine runs with.
    fn settings(&self) -> &EngineSettings;

    /// Activity counters and queue depth.
    fn stats(&self) -> &EngineStats;

    /// Readiness: the backend answers.
    fn ping(&self) -> BoxFuture<'_, EngineResult<()>>;

    /// Takes every lock of `req` or none; never queues. Also used by the reconciler to adopt a
    /// lock Atlantis already holds.
    fn acquire(&self, req: AcquireRequest) -> BoxFuture<'_, EngineResult<AcquireOutcome>>;

    /// Grants at once when possible, otherwise queues a waiter carrying `payload` (the proxy's
    /// serialized original request) — atomically, so no release can slip in between.
    fn acquire_or_enqueue(
        &self,
        req: AcquireRequest,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, EngineResult<QueueOutcome>>;

    /// Queues a waiter unconditionally; if it can be granted at once it is dispatched.
    fn enqueue(
        &self,
        req: AcquireRequest,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, EngineResult<Enqueued>>;

    /// Releases one lock: only by its holder when `by` is set, forced when `None`.
    fn release(
        &self,
        key: LockKey,
        by: Option<PullRef>,
    ) -> BoxFuture<'_, EngineResult<ReleaseOutcome>>;

    /// Releases every lock of a pull and removes its queued waiters (dispatched as `Dropped`).
    fn release_pull(&self, pull: PullRef) -> BoxFuture<'_, EngineResult<ReleaseSummary>> {
        self.release_pull_keeping(pull, Vec::new())
    }

    /// `release_pull`, except the locks of `keep` the pull still holds under the given fencing
    /// token (grants whose request may still be on its way through Atlantis).
    fn release_pull_keeping(
        &self,
        pull: PullRef,
        keep: Vec<(LockKey, u64)>,
    ) -> BoxFuture<'_, EngineResult<ReleaseSummary>>;

    /// Removes a queued waiter (dispatched as `Removed`); false when it is not queued.
    fn remove_waiter(&self, id: WaiterId) -> BoxFuture<'_, EngineResult<bool>>;

    /// Drops a queued waiter whose pull left the queue (dispatched as `Dropped`: never
    /// replayed); false when it is not queued.
    fn drop_waiter(&self, id: WaiterId) -> BoxFuture<'_, EngineResult<bool>>;

    /// Every held lock.
    fn list_locks(&self) -> BoxFuture<'_, EngineResult<Vec<LockInfo>>>;

    /// Every non-empty queue, waiters in grant order.
    fn list_queues(&self) -> BoxFuture<'_, EngineResult<Vec<QueueInfo>>>;

    /// Recent deadlock detections, newest first.
    fn deadlocks(&self) -> BoxFuture<'_, EngineResult<Vec<DeadlockRecord>>>;

    /// The stream of dispatches this replica owns; `None` after the first call.
    fn take_dispatches(&self) -> Option<DispatchReceiver>;

    /// Marks a dispatch as handled so it is never re-offered; a grant's locks stop being in
    /// flight, so the next waiters may be granted.
    fn confirm(&self, dispatch: &Dispatch) -> BoxFuture<'_, EngineResult<()>>;

    /// Right before the dispatcher sends anything for `dispatch`: is it still current, and as
    /// what may it reach Atlantis? Atomic; see [`Admission`] (DESIGN.md §10.2–3).
    fn admit(&self, dispatch: &Dispatch) -> BoxFuture<'_, EngineResult<Admission>>;

    /// Hands an admitted dispatch back when Atlantis holds its locks for other pulls: the locks
    /// it holds under `token` are released, `atlantis` holders (key, pull, user) are adopted where
    /// free, and the waiter queues again in its old place, unless its pull was released
    /// meanwhile (then the dispatch is finished instead).
    fn hand_back(
        &self,
        dispatch: &Dispatch,
        token: Option<u64>,
        atlantis: Vec<(LockKey, PullRef, String)>,
    ) -> BoxFuture<'_, EngineResult<HandBack>>;

    /// Puts off a hand-off that was not sent: the locks it took under `token` are released, its
    /// locks stop being in flight (nobody waits on a hand-off that will not reach Atlantis), and
    /// it is offered again after `retry_in`. Unlike [`LockEngine::hand_back`] the waiter is not
    /// queued again (a removed or timed-out waiter stays out of the queue). False when gone.
    fn defer(
        &self,
        dispatch: &Dispatch,
        token: Option<u64>,
        retry_in: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<bool>>;

    /// Releases the locks of `locks` that `pull` holds under `token` (a grant whose request
    /// Atlantis refused); returns how many.
    fn release_grant(
        &self,
        pull: PullRef,
        locks: Vec<LockKey>,
        token: u64,
    ) -> BoxFuture<'_, EngineResult<usize>>;

    /// Right before a release of `pull` (close, `unlock`, `DELETE /locks`) is forwarded to
    /// Atlantis: until `hold` has passed or [`LockEngine::lift_fence`], every hand-off that
    /// counts on `pull` holding a lock is held back (its admit answers [`Admission::Busy`]), as
    /// Atlantis might carry out the release first and then give the lock to the hand-off. Returns
    /// how long hand-offs admitted before may still be on their way to Atlantis (`settle` after
    /// each was admitted): the release waits that long before it is forwarded.
    fn fence_release(
        &self,
        pull: PullRef,
        hold: std::time::Duration,
        settle: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<std::time::Duration>>;

    /// Ends [`LockEngine::fence_release`] once Atlantis carried the release out (or refused it).
    fn lift_fence(&self, pull: PullRef) -> BoxFuture<'_, EngineResult<()>>;

    /// Repairs a lock toward Atlantis: makes `holder` its holder, only if the engine's holder is
    /// still `expect` (`None`: free; `Some((pull, token))`) and no grant of it is in flight.
    /// Waiters are not served (the lock stays held). True when adopted.
    fn adopt(
        &self,
        key: LockKey,
        holder: PullRef,
        user: String,
        expect: Option<(PullId, u64)>,
    ) -> BoxFuture<'_, EngineResult<bool>>;

    /// Refuses `request_id` from now on (for an hour): its queued waiter leaves silently and a
    /// grant of it not yet replayed is cancelled. Used when the request went to Atlantis on the
    /// legacy path after an engine timeout, so a late enqueue never replays it.
    fn forget(&self, repo: String, request_id: String) -> BoxFuture<'_, EngineResult<bool>>;

    /// One maintenance pass: queue timeouts, preemption of expired locks that have waiters,
    /// re-offer of dispatches whose lease ran out, and (when `cleanup`) release of expired locks.
    fn maintain(&self, cleanup: bool) -> BoxFuture<'_, EngineResult<()>>;

    /// Looks for deadlocks everywhere and breaks them; returns what was found.
    fn check_deadlocks(&self) -> BoxFuture<'_, EngineResult<Vec<DeadlockRecord>>>;

    /// Whether other replicas may share this engine (Redis); false for the in-memory one.
    fn shared(&self) -> bool {
        false
    }

    /// Refreshes this replica's lease (saying whether it is in step with Atlantis) and returns
    /// the other replicas sharing the engine, forgetting those not heard of for `forget`.
    /// An engine that is not [`LockEngine::shared`] has no other replica: none.
    fn heartbeat(
        &self,
        in_step: bool,
        forget: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<Vec<PeerState>>> {
        let _ = (in_step, forget);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Takes this replica's lease away (a clean stop), so the others need not wait for it.
    fn leave(&self) -> BoxFuture<'_, EngineResult<()>> {
        Box::pin(async { Ok(()) })
    }
}
