//! The breaker as a [`LockEngine`] decorator: every engine call goes through it and reports the
//! backend's health. Calls that would admit new work (`acquire`, `acquire_or_enqueue`,
//! `enqueue`) are refused while it is open ([`EngineError::CircuitOpen`]: the request takes the
//! legacy path at once instead of waiting on a sick backend). Everything else — releases,
//! confirms, hand-backs, maintenance, listings, pings — is never refused, only observed: that
//! work keeps the engine in step with Atlantis, and refusing it would only leave more to repair.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{BreakerError, CircuitBreaker};
use crate::engine::{
    AcquireOutcome, AcquireRequest, Admission, DeadlockRecord, Dispatch, DispatchReceiver,
    EngineError, EngineResult, EngineSettings, EngineStats, Enqueued, HandBack, LockEngine,
    LockInfo, PeerState, QueueInfo, QueueOutcome, ReleaseOutcome, ReleaseSummary, WaiterId,
};
use crate::vocab::{LockKey, PullId, PullRef};

/// An engine whose every call reports to (and whose admitting calls are gated by) a breaker.
pub struct Guarded {
    engine: Arc<dyn LockEngine>,
    breaker: Arc<CircuitBreaker>,
}

impl Guarded {
    /// Wraps `engine` in `breaker`.
    pub fn new(engine: Arc<dyn LockEngine>, breaker: Arc<CircuitBreaker>) -> Self {
        Self { engine, breaker }
    }

    /// Refused while the breaker is open.
    fn gated<'a, T: Send + 'a>(
        &'a self,
        call: BoxFuture<'a, EngineResult<T>>,
    ) -> BoxFuture<'a, EngineResult<T>> {
        Box::pin(async move {
            self.breaker.call(call).await.map_err(|e| match e {
                BreakerError::Open => EngineError::CircuitOpen,
                BreakerError::Inner(e) => e,
            })
        })
    }

    /// Never refused; the outcome counts toward the breaker's state.
    fn observed<'a, T: Send + 'a>(
        &'a self,
        call: BoxFuture<'a, EngineResult<T>>,
    ) -> BoxFuture<'a, EngineResult<T>> {
        Box::pin(self.breaker.observe(call))
    }
}

impl LockEngine for Guarded {
    fn backend_name(&self) -> &'static str {
        self.engine.backend_name()
    }

    fn settings(&self) -> &EngineSettings {
        self.engine.settings()
    }

    fn stats(&self) -> &EngineStats {
        self.engine.stats()
    }

    fn ping(&self) -> BoxFuture<'_, EngineResult<()>> {
        self.observed(self.engine.ping())
    }

    fn acquire(&self, req: AcquireRequest) -> BoxFuture<'_, EngineResult<AcquireOutcome>> {
        self.gated(self.engine.acquire(req))
    }

    fn acquire_or_enqueue(
        &self,
        req: AcquireRequest,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, EngineResult<QueueOutcome>> {
        self.gated(self.engine.acquire_or_enqueue(req, payload))
    }

    fn enqueue(
        &self,
        req: AcquireRequest,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, EngineResult<Enqueued>> {
        self.gated(self.engine.enqueue(req, payload))
    }

    fn release(
        &self,
        key: LockKey,
        by: Option<PullRef>,
    ) -> BoxFuture<'_, EngineResult<ReleaseOutcome>> {
        self.observed(self.engine.release(key, by))
    }

    fn release_pull(&self, pull: PullRef) -> BoxFuture<'_, EngineResult<ReleaseSummary>> {
        self.observed(self.engine.release_pull(pull))
    }

    fn release_pull_keeping(
        &self,
        pull: PullRef,
        keep: Vec<(LockKey, u64)>,
    ) -> BoxFuture<'_, EngineResult<ReleaseSummary>> {
        self.observed(self.engine.release_pull_keeping(pull, keep))
    }

    fn remove_waiter(&self, id: WaiterId) -> BoxFuture<'_, EngineResult<bool>> {
        self.observed(self.engine.remove_waiter(id))
    }

    fn drop_waiter(&self, id: WaiterId) -> BoxFuture<'_, EngineResult<bool>> {
        self.observed(self.engine.drop_waiter(id))
    }

    fn list_locks(&self) -> BoxFuture<'_, EngineResult<Vec<LockInfo>>> {
        self.observed(self.engine.list_locks())
    }

    fn list_queues(&self) -> BoxFuture<'_, EngineResult<Vec<QueueInfo>>> {
        self.observed(self.engine.list_queues())
    }

    fn deadlocks(&self) -> BoxFuture<'_, EngineResult<Vec<DeadlockRecord>>> {
        self.observed(self.engine.deadlocks())
    }

    fn take_dispatches(&self) -> Option<DispatchReceiver> {
        self.engine.take_dispatches()
    }

    fn confirm(&self, dispatch: &Dispatch) -> BoxFuture<'_, EngineResult<()>> {
        self.observed(self.engine.confirm(dispatch))
    }

    fn admit(&self, dispatch: &Dispatch) -> BoxFuture<'_, EngineResult<Admission>> {
        self.observed(self.engine.admit(dispatch))
    }

    fn hand_back(
        &self,
        dispatch: &Dispatch,
        token: Option<u64>,
        atlantis: Vec<(LockKey, PullRef, String)>,
    ) -> BoxFuture<'_, EngineResult<HandBack>> {
        self.observed(self.engine.hand_back(dispatch, token, atlantis))
    }

    fn defer(
        &self,
        dispatch: &Dispatch,
        token: Option<u64>,
        retry_in: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<bool>> {
        self.observed(self.engine.defer(dispatch, token, retry_in))
    }

    fn release_grant(
        &self,
        pull: PullRef,
        locks: Vec<LockKey>,
        token: u64,
    ) -> BoxFuture<'_, EngineResult<usize>> {
        self.observed(self.engine.release_grant(pull, locks, token))
    }

    fn fence_release(
        &self,
        pull: PullRef,
        hold: std::time::Duration,
        settle: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<std::time::Duration>> {
        self.observed(self.engine.fence_release(pull, hold, settle))
    }

    fn lift_fence(&self, pull: PullRef) -> BoxFuture<'_, EngineResult<()>> {
        self.observed(self.engine.lift_fence(pull))
    }

    fn adopt(
        &self,
        key: LockKey,
        holder: PullRef,
        user: String,
        expect: Option<(PullId, u64)>,
    ) -> BoxFuture<'_, EngineResult<bool>> {
        self.observed(self.engine.adopt(key, holder, user, expect))
    }

    fn forget(&self, repo: String, request_id: String) -> BoxFuture<'_, EngineResult<bool>> {
        self.observed(self.engine.forget(repo, request_id))
    }

    fn maintain(&self, cleanup: bool) -> BoxFuture<'_, EngineResult<()>> {
        self.observed(self.engine.maintain(cleanup))
    }

    fn check_deadlocks(&self) -> BoxFuture<'_, EngineResult<Vec<DeadlockRecord>>> {
        self.observed(self.engine.check_deadlocks())
    }

    fn shared(&self) -> bool {
        self.engine.shared()
    }

    fn heartbeat(
        &self,
        in_step: bool,
        forget: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<Vec<PeerState>>> {
        self.observed(self.engine.heartbeat(in_step, forget))
    }

    fn leave(&self) -> BoxFuture<'_, EngineResult<()>> {
        self.observed(self.engine.leave())
    }
}
