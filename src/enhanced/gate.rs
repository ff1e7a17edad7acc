//! The admission gate: what one lock request needs, and whether it may go to Atlantis now.

use std::time::Duration;

use tokio::time::Instant;

use super::Enhanced;
use super::needs::Needed;
use super::notices::WaiterNote;
use super::reply::QueuedReply;
use crate::classify::{Acquire, LockKey, PullRef};
use crate::engine::{AcquireOutcome, AcquireRequest, EngineError, QueueOutcome};
use crate::telemetry::BreakerState;
use crate::telemetry::{FailReason, ReleaseReason};
use crate::upstream::replay::StoredRequest;
use crate::vocab::LegacyReason;

/// How long a release waits at most for a hand-off on its way to Atlantis: the release is a
/// webhook or an API call whose sender gives up after about 10 s.
pub const HANDOFF_REACH: Duration = Duration::from_secs(5);

/// What to do with an `Acquire` on the enhanced path.
#[derive(Debug)]
pub enum Decision {
    /// Forward to Atlantis now; for `/api/*` calls, `release_after` names the pull whose engine
    /// locks end with the call (Atlantis deletes that pull's locks when the call finishes).
    Forward {
        /// Pull to release in the engine after Atlantis answered.
        release_after: Option<PullRef>,
        /// The grant that admitted it; released again if Atlantis refuses the request (§10.4).
        grant: Option<Admitted>,
    },
    /// Queued: answer the webhook `202` with this body (DESIGN.md §4) and do not forward.
    Queued(QueuedReply),
    /// Not gated (could not tell which locks, or nothing locks): forward on the legacy path.
    Legacy(LegacyReason),
}

/// A grant the gate made for a request it forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The pull that holds the grant.
    pub pull: PullRef,
    /// The locks the grant took (not those the pull held before).
    pub taken: Vec<LockKey>,
    /// Every lock of the grant (a re-plan re-takes the ones it held).
    pub locks: Vec<LockKey>,
    /// Its fencing token.
    pub fencing_token: u64,
}

impl Admitted {
    fn of(pull: &PullRef, locks: &[LockKey], g: &crate::engine::Grant) -> Self {
        Self {
            pull: pull.clone(),
            locks: locks.to_vec(),
            taken: g.taken.clone(),
            fencing_token: g.fencing_token,
        }
    }
}

impl Enhanced {
    /// Decides an `Acquire`: grant and forward, queue (webhooks), or wait then forward (`/api/*`).
    pub async fn acquire(
        &self,
        acq: &Acquire,
        stored: &StoredRequest,
        request_id: Option<String>,
    ) -> Result<Decision, EngineError> {
        // After an engine outage the engine may hold stale locks: nobody is queued behind them
        // until a reconciler pass has repaired what happened meanwhile. The breaker still hears
        // how the backend is doing.
        // Another replica out of step may be forwarding lock traffic past the engine: nothing
        // is granted from the engine until it is back (see `peers`).
        if !self.may_grant() {
            // The engine does not answer (the breaker knows it is down, or a ping says so):
            // nothing to wait for.
            if !self.synced() {
                let down = if self.breaker.state() == BreakerState::Open {
                    Some(LegacyReason::BreakerOpen)
                } else {
                    self.engine
                        .ping()
                        .await
                        .err()
                        .map(|_| LegacyReason::EngineResyncing)
                };
                if let Some(reason) = down {
                    self.before_bypass().await;
                    return Ok(Decision::Legacy(reason));
                }
            }
            // The engine answers: wait for the repair (this replica's or the others').
            if !self.wait_may_grant(super::peers::STEP_WAIT).await {
                let reason = if self.synced() {
                    LegacyReason::ReplicaOutOfStep
                } else {
                    LegacyReason::EngineResyncing
                };
                self.before_bypass().await;
                return Ok(Decision::Legacy(reason));
            }
        }
        let gated = match self.needs.needed(acq).await {
            Needed::Locks(g) => g,
            Needed::Nothing => return Ok(Decision::Legacy(LegacyReason::NoLocks)),
            Needed::Unresolved(kind) => return Ok(Decision::Legacy(kind.into())),
        };
        let req = AcquireRequest {
            locks: gated.locks.clone(),
            pull: acq.pull.clone(),
            user: acq.user.clone(),
            priority: gated.priority,
            hold_timeout: gated.hold_timeout,
            request_id: request_id.clone(),
        };
        if acq.command.is_api() {
            return self.wait_for_api(req).await;
        }
        let start = Instant::now();
        let outcome = match self.engine.acquire_or_enqueue(req, stored.encode()).await {
            Ok(o) => o,
            // The backend is known to be down: don't wait on it, take the legacy path.
            Err(EngineError::CircuitOpen) => {
                self.before_bypass().await;
                return Ok(Decision::Legacy(LegacyReason::BreakerOpen));
            }
            Err(e) => {
                self.engine_failed("acquire_or_enqueue", &e);
                if matches!(
                    e,
                    EngineError::BackendTimeout | EngineError::BackendUnavailable(_)
                ) {
                    // The script may still run when Redis answers again: the request goes to
                    // Atlantis now, so its late waiter must never be replayed (§10.5).
                    self.forget_later(&acq.pull.repo, request_id);
                    self.before_bypass().await;
                }
                return Err(e);
            }
        };
        self.metrics.engine_op("acquire_or_enqueue", true);
        match outcome {
            QueueOutcome::Forgotten => Ok(Decision::Legacy(LegacyReason::Forgotten)),
            QueueOutcome::Granted(g) => {
                if let Some(legacy) = self.outlasted(&acq.pull, &gated.locks, &g).await {
                    return Ok(legacy);
                }
                // A re-plan of locks the pull already holds in the engine: that hold may be a
                // grant still on its way (made while the engine was being repaired after an
                // outage) for a lock Atlantis has since given to another pull. Atlantis decides.
                let held_before: Vec<&LockKey> = gated
                    .locks
                    .iter()
                    .filter(|k| !g.taken.contains(k))
                    .collect();
                if !held_before.is_empty()
                    && let Some((key, other)) = self.held_elsewhere(&acq.pull, &held_before).await
                {
                    let admitted = Admitted::of(&acq.pull, &gated.locks, &g);
                    self.release_refused(&admitted).await;
                    tracing::warn!(%key, pull = %acq.pull, atlantis_holder = other, "the pull's engine hold is not Atlantis's: the request goes to Atlantis unadmitted");
                    return Ok(Decision::Legacy(LegacyReason::HeldInAtlantis));
                }
                self.metrics.lock_acquired(start.elapsed(), Ok(()));
                // Locks taken from timed-out holders must go in Atlantis before it sees the plan.
                self.delete_in_atlantis(&g.preempted).await;
                Ok(Decision::Forward {
                    release_after: None,
                    grant: Some(Admitted::of(&acq.pull, &gated.locks, &g)),
                })
            }
            QueueOutcome::Queued(q) => {
                self.metrics.lock_queued(start.elapsed());
                tracing::info!(
                    waiter = %q.waiter_id,
                    pull = %acq.pull,
                    priority = %gated.priority,
                    "queued behind a held lock"
                );
                let note = WaiterNote::new(
                    acq.vcs,
                    acq.command.as_typed(),
                    &acq.user,
                    gated.priority,
                    &acq.pull,
                );
                self.notice_queued(note, &q);
                Ok(Decision::Queued(QueuedReply::new(&q, gated.priority)))
            }
        }
    }

    /// `/api/plan|apply` hold the HTTP request instead of queueing: retry the all-or-nothing
    /// acquire until granted or `queue-timeout`, then forward either way so the caller gets
    /// Atlantis's real answer. Polling (not a durable waiter) keeps the held request on the
    /// replica that owns its connection.
    async fn wait_for_api(&self, req: AcquireRequest) -> Result<Decision, EngineError> {
        let start = Instant::now();
        let deadline = start + self.settings.queue_timeout;
        let pull = req.pull.clone();
        let mut delay = self.settings.api_poll;
        loop {
            let outcome = match self.engine.acquire(req.clone()).await {
                Ok(o) => o,
                Err(EngineError::CircuitOpen) => {
                    self.before_bypass().await;
                    return Ok(Decision::Legacy(LegacyReason::BreakerOpen));
                }
                Err(e) => {
                    self.engine_failed("acquire", &e);
                    if matches!(
                        e,
                        EngineError::BackendTimeout | EngineError::BackendUnavailable(_)
                    ) {
                        self.before_bypass().await;
                    }
                    return Err(e);
                }
            };
            match outcome {
                AcquireOutcome::Granted(g) => {
                    if let Some(legacy) = self.outlasted(&pull, &req.locks, &g).await {
                        return Ok(legacy);
                    }
                    self.metrics.lock_acquired(start.elapsed(), Ok(()));
                    self.delete_in_atlantis(&g.preempted).await;
                    return Ok(Decision::Forward {
                        grant: Some(Admitted::of(&pull, &req.locks, &g)),
                        release_after: Some(pull),
                    });
                }
                AcquireOutcome::Held { .. } if Instant::now() + delay > deadline => {
                    self.metrics
                        .lock_acquired(start.elapsed(), Err(FailReason::QueueTimeout));
                    // Another pull holds the lock in the engine; Atlantis refuses the call.
                    return Ok(Decision::Forward {
                        release_after: None,
                        grant: None,
                    });
                }
                AcquireOutcome::Held { .. } => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// A grant the engine made while this replica's view of the others ran out (the call
    /// stalled, say through a Redis pause): another replica may have forwarded lock traffic past
    /// the engine meanwhile, so the grant is given back and the request takes the legacy path.
    async fn outlasted(
        &self,
        pull: &PullRef,
        locks: &[LockKey],
        g: &crate::engine::Grant,
    ) -> Option<Decision> {
        if self.may_grant() || g.taken.is_empty() {
            return None;
        }
        tracing::warn!(%pull, "granted after this replica's view of the others ran out: given back, legacy path");
        self.release_refused(&Admitted::of(pull, locks, g)).await;
        self.before_bypass().await;
        Some(Decision::Legacy(LegacyReason::ReplicaOutOfStep))
    }

    fn engine_failed(&self, op: &'static str, e: &EngineError) {
        self.metrics.engine_op(op, false);
        if let EngineError::QueueFull { .. } = e {
            self.metrics
                .lock_acquired(Duration::ZERO, Err(FailReason::QueueFull));
        }
        tracing::warn!(error = %e, operation = op, "engine call failed");
    }

    /// After Atlantis accepted a release, mirror it in the engine; grants follow through the
    /// dispatcher.
    pub async fn release_pull(&self, pull: &PullRef, reason: ReleaseReason) {
        self.release_pull_keeping(pull, reason, Vec::new()).await;
    }

    /// `release_pull`, except the locks of `keep` the pull holds under those tokens; false when
    /// the engine failed (the release is journaled for the reconciler).
    async fn release_pull_keeping(
        &self,
        pull: &PullRef,
        reason: ReleaseReason,
        keep: Vec<(LockKey, u64)>,
    ) -> bool {
        let kept = keep.len();
        match self.engine.release_pull_keeping(pull.clone(), keep).await {
            Ok(summary) => {
                self.metrics.engine_op("release_pull", true);
                self.metrics.locks_released(summary.released.len(), reason);
                if !summary.released.is_empty() || !summary.removed_waiters.is_empty() || kept > 0 {
                    tracing::info!(
                        %pull,
                        released = summary.released.len(),
                        removed_waiters = summary.removed_waiters.len(),
                        kept,
                        "pull released"
                    );
                }
                true
            }
            Err(e) => {
                self.engine_failed("release_pull", &e);
                self.release_later(super::PendingRelease::Pull(pull.clone(), reason));
                false
            }
        }
    }

    /// Right before a release of `pull` is forwarded to Atlantis: hand-offs that count on its
    /// locks are held back (every replica's, through the engine) until [`Enhanced::lift_fence`],
    /// and the release waits for those already on their way to reach Atlantis first (up to
    /// [`HANDOFF_REACH`]). Otherwise Atlantis, which acts on requests out of order, could carry
    /// out the release and then give the lock to a hand-off it was meant to refuse (§10.2).
    pub async fn fence_release(&self, pull: &PullRef) {
        let reach = self.settle_window().min(HANDOFF_REACH);
        // Longer than this wait plus the release's own answer; lifted as soon as the release is
        // carried out. Short, because a replica that dies meanwhile leaves it to run out, and
        // until then the hand-offs that count on the pull wait.
        let hold = reach * 2 + Duration::from_secs(3);
        match self.engine.fence_release(pull.clone(), hold, reach).await {
            Ok(wait) if !wait.is_zero() => {
                tracing::info!(%pull, wait_ms = wait.min(reach).as_millis() as u64, "a hand-off that counts on the pull's locks is on its way to Atlantis: the release waits for it");
                tokio::time::sleep(wait.min(reach)).await;
            }
            Ok(_) => {}
            Err(e) => self.engine_failed("fence_release", &e),
        }
    }

    /// Ends [`Enhanced::fence_release`]: Atlantis carried the release out, or refused it.
    pub async fn lift_fence(&self, pull: &PullRef) {
        if let Err(e) = self.engine.lift_fence(pull.clone()).await {
            // It runs out by itself.
            tracing::debug!(%pull, error = %e, "cannot lift a release fence");
        }
    }

    /// [`Enhanced::fence_release`] for the holder of `key` (a `DELETE /locks?id=`), if the engine
    /// has one; that holder, to lift the fence after.
    pub async fn fence_key(&self, key: &LockKey) -> Option<PullRef> {
        let holder = match self.engine.list_locks().await {
            Ok(locks) => locks.into_iter().find(|l| l.key == *key)?.pull,
            Err(e) => {
                self.engine_failed("list_locks", &e);
                return None;
            }
        };
        self.fence_release(&holder).await;
        Some(holder)
    }

    /// A close Atlantis carried out (it deleted the pull's locks before answering). Atlantis
    /// checks that a pull is open when a command starts and takes the lock later, so a grant of
    /// the pull sent shortly before the close may still take its lock after it: the locks of
    /// such grants (settle window) stay held until Atlantis is seen not to list them for the
    /// pull; what it does list stays, as Atlantis keeps it. Everything else goes now.
    pub async fn release_closed_pull(self: &std::sync::Arc<Self>, pull: &PullRef) {
        let window = self.settle_window();
        let locks = match self.engine.list_locks().await {
            Ok(locks) => locks,
            Err(e) => {
                self.engine_failed("list_locks", &e);
                return self.release_pull(pull, ReleaseReason::PullClosed).await;
            }
        };
        let sent_recently = self.sent_within(pull, window);
        let landing: Vec<(LockKey, u64)> = locks
            .into_iter()
            .filter(|l| {
                l.pull == *pull
                    && (sent_recently
                        || l.acquired_at.elapsed().unwrap_or_default() < window
                        || self.is_unsettled(&l.key, pull))
            })
            .map(|l| (l.key, l.fencing_token))
            .collect();
        if !self
            .release_pull_keeping(pull, ReleaseReason::PullClosed, landing.clone())
            .await
            || landing.is_empty()
        {
            return;
        }
        let this = self.clone();
        let pull = pull.clone();
        tokio::spawn(async move {
            this.release_landed(&pull, landing, window).await;
        });
    }

    /// After `window`, releases each of `landing` Atlantis does not list for the closed `pull`
    /// (a lock it lists stays held: Atlantis keeps it until someone unlocks it).
    async fn release_landed(&self, pull: &PullRef, landing: Vec<(LockKey, u64)>, window: Duration) {
        tokio::time::sleep(window).await;
        let listed =
            match crate::upstream::atlantis_api::list_locks(&self.upstream, Duration::from_secs(5))
                .await
            {
                Ok(locks) => self.parse_locks(&locks),
                Err(crate::upstream::atlantis_api::LockListError::Unsupported) => Vec::new(),
                // Unreadable: the reconciler releases what Atlantis does not list.
                Err(_) => return,
            };
        let mut released = 0;
        for (key, token) in landing {
            if listed.iter().any(|(k, p, _)| *k == key && p.is(pull)) {
                tracing::warn!(%pull, %key, "a command of the closed pull took its lock after the close: Atlantis keeps it, and so does the engine");
                continue;
            }
            match self
                .engine
                .release_grant(pull.clone(), vec![key.clone()], token)
                .await
            {
                Ok(n) => released += n,
                Err(e) => {
                    self.engine_failed("release_grant", &e);
                    self.release_later(super::PendingRelease::Grant(pull.clone(), key, token));
                }
            }
        }
        self.metrics
            .locks_released(released, ReleaseReason::PullClosed);
    }

    /// Mirrors `DELETE /locks?id=` (or an operator's force-release) in the engine.
    pub async fn release_key(&self, key: &LockKey, reason: ReleaseReason) -> bool {
        match self.engine.release(key.clone(), None).await {
            Ok(outcome) => {
                self.metrics.engine_op("release", true);
                let released = matches!(outcome, crate::engine::ReleaseOutcome::Released);
                if released {
                    self.metrics.locks_released(1, reason);
                }
                released
            }
            Err(e) => {
                self.engine_failed("release", &e);
                self.release_later(super::PendingRelease::Key(key.clone(), reason));
                false
            }
        }
    }

    /// Releases a grant whose request Atlantis refused or never answered (§10.4).
    pub async fn release_refused(&self, grant: &Admitted) {
        if grant.taken.is_empty() {
            return;
        }
        match self
            .engine
            .release_grant(grant.pull.clone(), grant.taken.clone(), grant.fencing_token)
            .await
        {
            Ok(n) if n > 0 => {
                tracing::info!(pull = %grant.pull, locks = n, "Atlantis refused the request: its grant is released again");
                self.metrics.locks_released(n, ReleaseReason::Unlock);
            }
            Ok(_) => {}
            Err(e) => self.engine_failed("release_grant", &e),
        }
    }

    /// A lock of `keys` that Atlantis lists for another pull than `pull`, with that pull's number;
    /// `None` when it lists none of them so, or cannot be read (then the engine's word stands).
    async fn held_elsewhere(&self, pull: &PullRef, keys: &[&LockKey]) -> Option<(LockKey, i64)> {
        let locks =
            crate::upstream::atlantis_api::list_locks(&self.upstream, Duration::from_secs(5))
                .await
                .ok()?;
        self.parse_locks(&locks)
            .into_iter()
            .find(|(k, holder, _)| keys.contains(&k) && !holder.is(pull))
            .map(|(k, holder, _)| (k, holder.number))
    }

    /// `DELETE /locks?id=` for each lock taken from a timed-out holder.
    async fn delete_in_atlantis(&self, preempted: &[crate::engine::Preempted]) {
        for p in preempted {
            match crate::upstream::atlantis_api::delete_lock(
                &self.upstream,
                &p.key.to_string(),
                Duration::from_secs(10),
            )
            .await
            {
                Ok(_) => {
                    tracing::info!(key = %p.key, holder = %p.pull, "preempted a timed-out lock in Atlantis")
                }
                Err(e) => {
                    tracing::warn!(key = %p.key, error = %e, "could not delete the preempted lock in Atlantis")
                }
            }
        }
    }
}

impl Enhanced {
    /// An `unlock` comment Atlantis accepted: Atlantis acts after answering and may still refuse
    /// (a fork, the unlock label, an error), so the engine releases the pull once Atlantis's lock
    /// table no longer lists its locks (bounded by `replay-wait`; the reconciler covers the rest).
    /// Lifts the pull's release fence when done.
    pub async fn release_pull_when_unlocked(self: &std::sync::Arc<Self>, pull: PullRef) {
        // What the unlock covers is what the pull had when Atlantis accepted it (read before the
        // webhook is answered): locks granted later (a plan right after the unlock) keep their
        // newer fencing token and stay, and waiters queued later stay queued.
        let (Ok(locks), Ok(queues)) = (
            self.engine.list_locks().await,
            self.engine.list_queues().await,
        ) else {
            // The engine is down: the reconciler repairs it from Atlantis afterwards.
            self.engine_lost_sync();
            self.lift_fence(&pull).await;
            return;
        };
        let mine: Vec<crate::engine::LockInfo> =
            locks.into_iter().filter(|l| l.pull == pull).collect();
        let held: Vec<(LockKey, u64)> = mine
            .iter()
            .map(|l| (l.key.clone(), l.fencing_token))
            .collect();
        // Grants of the last settle window, by any replica: their request may still be on its
        // way through Atlantis, which answers before it acts.
        let window = self.settle_window();
        let recent: Vec<(LockKey, std::time::SystemTime)> = mine
            .iter()
            .filter(|l| l.acquired_at.elapsed().unwrap_or_default() < window)
            .map(|l| (l.key.clone(), l.acquired_at))
            .collect();
        let mut waiters: Vec<crate::engine::WaiterId> = queues
            .iter()
            .flat_map(|q| q.waiters.iter())
            .filter(|w| w.pull == pull)
            .map(|w| w.id.clone())
            .collect();
        waiters.sort();
        waiters.dedup();
        // The pull's grants not sent yet wait until the unlock is carried out (then they are
        // stale and cancelled) or refused.
        self.set_unlocking(&pull, true);
        let this = self.clone();
        tokio::spawn(async move {
            this.release_when_unlocked(&pull, held, recent, waiters)
                .await;
            // Atlantis carried the unlock out (or refused it): hand-offs may go again.
            this.lift_fence(&pull).await;
            this.set_unlocking(&pull, false);
        });
    }

    async fn release_when_unlocked(
        &self,
        pull: &PullRef,
        held: Vec<(LockKey, u64)>,
        recent: Vec<(LockKey, std::time::SystemTime)>,
        waiters: Vec<crate::engine::WaiterId>,
    ) {
        if !held.is_empty() && !self.wait_unlocked(pull, &held, recent).await {
            tracing::warn!(%pull, "Atlantis still lists the pull's locks after its unlock: the engine keeps them too");
            return;
        }
        let mut released = 0;
        for (key, token) in &held {
            match self
                .engine
                .release_grant(pull.clone(), vec![key.clone()], *token)
                .await
            {
                Ok(n) => released += n,
                Err(e) => {
                    self.engine_failed("release_grant", &e);
                    self.release_later(super::PendingRelease::Grant(
                        pull.clone(),
                        key.clone(),
                        *token,
                    ));
                }
            }
        }
        self.metrics.engine_op("release_pull", true);
        self.metrics.locks_released(released, ReleaseReason::Unlock);
        for id in waiters {
            // The user unlocked: the pull's queued commands leave the queue, unreplayed.
            let _ = self.engine.drop_waiter(id).await;
        }
        if released > 0 {
            tracing::info!(%pull, released, "pull unlocked");
        }
    }

    /// Polls Atlantis (bounded by `replay-wait`) until none of `held` is listed for `pull`,
    /// after every direct grant among them was carried out by Atlantis.
    async fn wait_unlocked(
        &self,
        pull: &PullRef,
        held: &[(LockKey, u64)],
        mut recent: Vec<(LockKey, std::time::SystemTime)>,
    ) -> bool {
        let deadline = Instant::now() + self.settings.replay_wait;
        while held.iter().any(|(k, _)| self.is_unsettled(k, pull)) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A grant another replica forwarded moments ago is judged once Atlantis listed it for
        // the pull (it landed; the unlock may come after it) or its settle window passed.
        let window = self.settle_window();
        while !recent.is_empty() && Instant::now() < deadline {
            if let Ok(locks) =
                crate::upstream::atlantis_api::list_locks(&self.upstream, Duration::from_secs(5))
                    .await
            {
                let locks = self.parse_locks(&locks);
                recent.retain(|(k, at)| {
                    !locks.iter().any(|(lk, p, _)| lk == k && p.is(pull))
                        && at.elapsed().unwrap_or_default() < window
                });
            } else {
                recent.retain(|(_, at)| at.elapsed().unwrap_or_default() < window);
            }
            if !recent.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut delay = Duration::from_millis(20);
        loop {
            match crate::upstream::atlantis_api::list_locks(&self.upstream, Duration::from_secs(5))
                .await
            {
                Ok(locks) => {
                    let listed = self
                        .parse_locks(&locks)
                        .iter()
                        .any(|(k, p, _)| p.is(pull) && held.iter().any(|(h, _)| h == k));
                    if !listed {
                        return true;
                    }
                }
                Err(crate::upstream::atlantis_api::LockListError::Unsupported) => return true,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read Atlantis's locks after an unlock")
                }
            }
            if Instant::now() + delay > deadline {
                return false;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}
