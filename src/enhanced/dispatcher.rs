//! The dispatcher: every grant, timeout, deadlock victim and removal the engine hands this replica
//! reaches Atlantis only under DESIGN.md §10: admitted by the engine right before it is sent, and
//! only when Atlantis's own lock table agrees; then it is confirmed so no replica sends it again.
//!
//! ```text
//! dispatch ─► dropped (pull released)? ─► confirm, tell the pull, send nothing
//!          ─► engine.admit ─┬─ grant    ─► Atlantis lists no other holder? ─► admit again ─► send ─► confirm
//!                           │                └─ still another holder after replay-wait ─► hand back (queue again)
//!                           ├─ hand-off ─► Atlantis lists every blocked lock held by another pull? ─► send ─► confirm
//!                           └─ done / dropped / requeued ─► nothing to send
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Enhanced;
use super::holders::Listed;
use crate::classify::LockKey;
use crate::engine::{
    Admission, Blocker, Dispatch, DispatchReason, DispatchReceiver, HandBack, Preempted,
};
use crate::telemetry::{self, FailReason};
use crate::upstream::atlantis_api::{self, LockListError};
use crate::upstream::replay::{ReplayOutcome, StoredRequest, replay};

/// Replays handled at once; more wait (their leases keep them owned meanwhile).
const CONCURRENT_REPLAYS: usize = 16;

/// How soon a hand-off that was not sent is offered again.
const DEFER_RETRY: Duration = Duration::from_millis(250);

/// Marks a request the engine admitted (its fencing token) on its way to Atlantis, so Atlantis's
/// logs and the tests can tell admitted requests from hand-offs. Not covered by any signature.
pub const ADMITTED_HEADER: &str = "x-lock-proxy-admitted";

/// Marks a hand-off (a request Atlantis is expected to refuse), with the reason it left the queue.
pub const HANDOFF_HEADER: &str = "x-lock-proxy-handoff";

/// What a dispatch must still be, in the engine, when its bytes leave.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect<'a> {
    /// The grant under this token.
    Grant(u64),
    /// A hand-off blocked by exactly these.
    HandOff(&'a [Blocker]),
}

/// What Atlantis's lock table says about a dispatch's locks.
enum AtlantisView {
    /// The condition the dispatch needs holds (or Atlantis cannot list its locks).
    Agrees,
    /// Atlantis already lists every lock as held by the dispatch's pull: a re-offered grant that
    /// already landed.
    AlreadyHeld,
    /// Still not agreeing after `replay-wait`; the holders Atlantis lists for other pulls.
    Disagrees(Vec<(LockKey, Listed, String)>),
    /// Atlantis's lock table could not be read.
    Unreadable,
}

impl Enhanced {
    /// Runs the dispatcher until `stop`.
    pub fn spawn_dispatcher(
        self: &Arc<Self>,
        mut dispatches: DispatchReceiver,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(CONCURRENT_REPLAYS));
            loop {
                let d = tokio::select! {
                    () = stop.cancelled() => break,
                    d = dispatches.recv() => match d {
                        Some(d) => d,
                        None => break,
                    },
                };
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let this = this.clone();
                tokio::spawn(async move {
                    this.dispatch(d).await;
                    drop(permit);
                });
            }
        })
    }

    /// Handles one dispatch once at a time on this replica: a re-offer of a dispatch still being
    /// handled here is skipped.
    async fn dispatch(&self, d: Dispatch) {
        if !self.begin_handling(&d.id) {
            return;
        }
        self.handle(d.clone()).await;
        self.end_handling(&d.id);
    }

    /// Handles one dispatch; what is neither sent nor settled comes back after the lease.
    async fn handle(&self, d: Dispatch) {
        match d.reason {
            DispatchReason::Dropped => return self.drop_dispatch(&d).await,
            DispatchReason::Expired => return self.expire(&d).await,
            _ => {}
        }
        let stored = match StoredRequest::decode(&d.payload) {
            Ok(s) => s,
            Err(e) => {
                // Nothing can ever replay it: confirm so it stops coming back, and say so loudly.
                tracing::error!(waiter = %d.id, error = %e, "queued request unreadable; dropped");
                self.metrics.replay("unreadable");
                self.confirm(&d).await;
                return;
            }
        };
        let span = telemetry::replay_span(stored.traceparent.as_deref());
        span.record("alp.repo", d.pull.repo.as_str());
        span.record("alp.pull", d.pull.number);
        span.record("alp.waiter_id", d.id.to_string().as_str());
        span.record("alp.priority", d.priority.as_str());
        let keys: Vec<String> = d.locks.iter().map(ToString::to_string).collect();
        span.record("alp.lock_keys", keys.join(",").as_str());
        self.admit_and_send(d, stored).instrument(span).await;
    }

    async fn admit_and_send(&self, d: Dispatch, stored: StoredRequest) {
        let admission = match self.engine.admit(&d).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(waiter = %d.id, error = %e, "cannot admit a dispatch; it is offered again later");
                return;
            }
        };
        // A hand-off re-checked right before it leaves may have become a grant or another
        // hand-off: that is handled in turn (a few times; then it is offered again later).
        let mut admission = admission;
        let mut token = None;
        for _ in 0..4 {
            admission = match admission {
                Admission::Done => return,
                Admission::Dropped => {
                    tracing::info!(waiter = %d.id, pull = %d.pull, "grant cancelled: its pull released its locks meanwhile");
                    self.metrics.replay("dropped");
                    self.notice_dispatch(&d, &stored, DispatchReason::Dropped)
                        .await;
                    return;
                }
                Admission::Requeued => {
                    tracing::info!(waiter = %d.id, pull = %d.pull, "grant taken back: another pull holds the lock in Atlantis; queued again");
                    self.metrics.replay("requeued");
                    return;
                }
                Admission::Busy => match self.admit_when_not_busy(&d).await {
                    Some(next) => next,
                    None => break,
                },
                Admission::Grant {
                    fencing_token,
                    preempted,
                } => {
                    return self.send_grant(d, stored, fencing_token, preempted).await;
                }
                Admission::HandOff {
                    blocked,
                    taken,
                    fencing_token,
                } => {
                    token = fencing_token.or(token);
                    match self
                        .send_handoff(&d, stored.clone(), blocked, taken, token)
                        .await
                    {
                        Some(next) => next,
                        None => return,
                    }
                }
            };
        }
        self.defer(&d, token).await;
    }

    /// Admits a hand-off again while another pull's hand-off is in flight for one of its free
    /// locks (bounded by `replay-wait`); `None` when it is still waiting then.
    async fn admit_when_not_busy(&self, d: &Dispatch) -> Option<Admission> {
        let until = Instant::now() + self.settings.replay_wait;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match self.engine.admit(d).await {
                Ok(Admission::Busy) => {}
                Ok(next) => return Some(next),
                Err(e) => {
                    tracing::warn!(waiter = %d.id, error = %e, "cannot admit a dispatch; it is offered again later");
                    return Some(Admission::Done);
                }
            }
        }
        tracing::info!(waiter = %d.id, "another hand-off is still in flight for a free lock: offered again later");
        None
    }

    /// A hand-off not sent: it stops holding locks in flight and is offered again shortly.
    async fn defer(&self, d: &Dispatch, token: Option<u64>) {
        self.metrics.replay("deferred");
        if let Err(e) = self.engine.defer(d, token, DEFER_RETRY).await {
            tracing::warn!(waiter = %d.id, error = %e, "cannot put a hand-off off; it is offered again after its lease");
        }
    }

    async fn send_grant(
        &self,
        d: Dispatch,
        mut stored: StoredRequest,
        token: u64,
        preempted: Vec<Preempted>,
    ) {
        self.delete_preempted(preempted.iter()).await;
        // Atlantis processes some releases asynchronously (an `unlock` comment): wait until it
        // no longer lists any of the locks as held by another pull.
        let view = self
            .atlantis_view(&d, |locks, d| {
                !d.locks
                    .iter()
                    .any(|k| locks.iter().any(|(lk, p, _)| lk == k && !p.is(&d.pull)))
            })
            .await;
        match view {
            AtlantisView::Agrees => {}
            AtlantisView::AlreadyHeld => {
                tracing::info!(waiter = %d.id, pull = %d.pull, "re-offered grant already reached Atlantis: not sent again");
                self.metrics.replay("already_delivered");
                self.confirm(&d).await;
                return;
            }
            AtlantisView::Disagrees(holders) => {
                // Atlantis is the truth: its holder keeps the lock, this waiter queues behind it.
                tracing::warn!(waiter = %d.id, pull = %d.pull, "Atlantis still lists the lock held by another pull: grant handed back, waiter queued again");
                let holders = self.engine_holders(holders);
                match self.engine.hand_back(&d, Some(token), holders).await {
                    Ok(HandBack::Requeued) => self.metrics.replay("handed_back"),
                    // Its pull was closed or unlocked meanwhile: dropped, not queued again.
                    Ok(HandBack::Dropped) => {
                        self.metrics.replay("dropped");
                        self.notice_dispatch(&d, &stored, DispatchReason::Dropped)
                            .await;
                    }
                    Ok(HandBack::Gone) => {}
                    Err(e) => {
                        tracing::warn!(waiter = %d.id, error = %e, "hand-back failed; the dispatch is offered again later");
                    }
                }
                return;
            }
            AtlantisView::Unreadable => {
                tracing::warn!(waiter = %d.id, "cannot read Atlantis's locks before a replay; it is offered again later");
                return;
            }
        }
        // An `unlock` of the pull being carried out makes this grant stale: wait for it.
        let until = Instant::now() + self.settings.replay_wait;
        while self.is_unlocking(&d.pull) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The grant must still be this one when the bytes leave (§10.2): same holder, same token.
        match self.engine.admit(&d).await {
            Ok(Admission::Grant {
                fencing_token: t, ..
            }) if t == token => {}
            Ok(other) => {
                tracing::info!(waiter = %d.id, admission = ?other, "grant changed while waiting for Atlantis: not sent");
                if other == Admission::Dropped {
                    self.metrics.replay("dropped");
                    self.notice_dispatch(&d, &stored, DispatchReason::Dropped)
                        .await;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(waiter = %d.id, error = %e, "cannot re-check a grant; it is offered again later");
                return;
            }
        }
        stored.set_header(ADMITTED_HEADER, &token.to_string());
        let waited = d.enqueued_at.elapsed().unwrap_or_default();
        if self
            .send(&d, &mut stored, Some(token), Expect::Grant(token))
            .await
        {
            self.metrics.queue_left(waited, Ok(()));
            self.notice_dispatch(&d, &stored, DispatchReason::Granted)
                .await;
        }
    }

    /// Sends a hand-off if Atlantis will refuse it; the admission it turned into when it changed
    /// right before leaving, to be handled in turn.
    async fn send_handoff(
        &self,
        d: &Dispatch,
        mut stored: StoredRequest,
        blocked: Vec<Blocker>,
        taken: Vec<LockKey>,
        token: Option<u64>,
    ) -> Option<Admission> {
        // Neither this pull nor a holder of a blocked lock may be releasing: an unlock Atlantis
        // carries out before this hand-off would let Atlantis give the lock to this pull.
        let until = Instant::now() + self.settings.replay_wait;
        while Instant::now() < until
            && (self.is_unlocking(&d.pull)
                || blocked
                    .iter()
                    .filter_map(|b| b.held_by.as_ref())
                    .any(|h| self.is_unlocking(h)))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Still a hand-off right before it leaves (its pull may have closed meanwhile).
        match self.engine.admit(d).await {
            Ok(Admission::HandOff { blocked: now, .. }) if now == blocked => {}
            Ok(next @ (Admission::HandOff { .. } | Admission::Grant { .. } | Admission::Busy)) => {
                // The locks changed hands meanwhile: handled as what it is now.
                tracing::info!(waiter = %d.id, admission = ?next, "hand-off changed while waiting for Atlantis");
                return Some(next);
            }
            Ok(Admission::Dropped) => {
                self.metrics.replay("dropped");
                self.notice_dispatch(d, &stored, DispatchReason::Dropped)
                    .await;
                return None;
            }
            Ok(other) => {
                tracing::info!(waiter = %d.id, admission = ?other, "hand-off changed while waiting for Atlantis: not sent");
                return None;
            }
            Err(e) => {
                tracing::warn!(waiter = %d.id, error = %e, "cannot re-check a hand-off; it is offered again later");
                return None;
            }
        }
        // Checked after the engine (whose blocked locks are in flight for this hand-off now, so
        // nobody else is granted them): Atlantis must refuse every blocked lock (another pull
        // holds it there too, not only in the engine: a grant still on its way does not count)
        // and must not list a taken one for another pull.
        let view = self
            .atlantis_view(d, |locks, d| {
                // Atlantis refuses only another pull number (a merge request with the holder's
                // number would be let in).
                let refused = blocked.iter().all(|b| {
                    locks
                        .iter()
                        .any(|(k, p, _)| *k == b.key && p.refuses(&d.pull))
                });
                let free = !taken
                    .iter()
                    .any(|t| locks.iter().any(|(k, p, _)| k == t && !p.is(&d.pull)));
                refused && free
            })
            .await;
        match view {
            AtlantisView::Agrees | AtlantisView::AlreadyHeld => {}
            AtlantisView::Disagrees(_) | AtlantisView::Unreadable => {
                // Not sent: the reconciler brings the engine in step, and the next offer is
                // admitted against the repaired state (often as a grant).
                tracing::info!(waiter = %d.id, pull = %d.pull, "Atlantis does not hold the blocking locks as the engine does: hand-off deferred");
                self.defer(d, token).await;
                return None;
            }
        }
        let why = match d.reason {
            DispatchReason::TimedOut => FailReason::QueueTimeout,
            DispatchReason::DeadlockVictim => FailReason::Deadlock,
            _ => FailReason::Cancelled,
        };
        tracing::info!(
            waiter = %d.id,
            pull = %d.pull,
            reason = d.reason.as_str(),
            "handing the queued request to Atlantis: another pull holds its lock there too"
        );
        stored.set_header(HANDOFF_HEADER, d.reason.as_str());
        if let Some(t) = token {
            stored.set_header(ADMITTED_HEADER, &t.to_string());
        }
        let waited = d.enqueued_at.elapsed().unwrap_or_default();
        if self
            .send_unconfirmed(d, &mut stored, token, Expect::HandOff(&blocked))
            .await
        {
            // Atlantis answered before acting: the blocked locks stay in flight while it may
            // still be carrying the hand-off out, then the dispatch is confirmed.
            let settle = self
                .settings
                .replay_wait
                .min(self.engine.settings().dispatch_lease / 2);
            tokio::time::sleep(settle).await;
            // A holder that released meanwhile let Atlantis give the lock to this pull after
            // all: the engine follows (§10.1), before the confirm takes the locks out of flight
            // (so nobody else is granted them in between).
            if let Ok(locks) =
                atlantis_api::list_locks(&self.upstream, Duration::from_secs(5)).await
            {
                for (key, holder, user) in self.parse_locks(&locks) {
                    if holder.is(&d.pull) && blocked.iter().any(|b| b.key == key) {
                        match self
                            .engine
                            .adopt(key.clone(), d.pull.clone(), user, None)
                            .await
                        {
                            Ok(true) => {
                                tracing::info!(%key, pull = %d.pull, "the hand-off took the lock in Atlantis: adopted")
                            }
                            Ok(false) => {}
                            Err(e) => tracing::warn!(%key, error = %e, "could not adopt a lock"),
                        }
                    }
                }
            }
            self.confirm(d).await;
            self.metrics.queue_left(waited, Err(why));
            self.notice_dispatch(d, &stored, d.reason).await;
        }
        None
    }

    /// Sends the stored request (continuing a new trace linked to the original) and confirms it
    /// once Atlantis answered. False when it was not delivered (it is offered again later).
    async fn send(
        &self,
        d: &Dispatch,
        stored: &mut StoredRequest,
        token: Option<u64>,
        expect: Expect<'_>,
    ) -> bool {
        let sent = self.send_unconfirmed(d, stored, token, expect).await;
        if sent {
            self.confirm(d).await;
        }
        sent
    }

    /// Sends the stored request; the caller confirms it.
    async fn send_unconfirmed(
        &self,
        d: &Dispatch,
        stored: &mut StoredRequest,
        token: Option<u64>,
        expect: Expect<'_>,
    ) -> bool {
        let mut headers = http::HeaderMap::new();
        telemetry::inject_headers(&tracing::Span::current(), &mut headers);
        for (name, value) in &headers {
            if let Ok(v) = value.to_str() {
                stored.set_header(name.as_str(), v);
            }
        }
        // While this replica forwards lock traffic past the engine (it failed and is not
        // repaired yet), Atlantis may be taking locks the engine does not know: wait for the
        // repair, else leave it for the next offer.
        // The same while another replica sharing the engine is out of step (see `peers`).
        if !self.may_grant() {
            let ok = self.wait_may_grant(self.settings.replay_wait).await;
            // What Atlantis was checked against before may have changed meanwhile: a grant is
            // sent only if Atlantis still lists none of its locks for another pull; anything
            // else is offered again later and checked from the start.
            let clear = ok
                && matches!(expect, Expect::Grant(_))
                && match atlantis_api::list_locks(&self.upstream, Duration::from_secs(5)).await {
                    Ok(locks) => !self
                        .parse_locks(&locks)
                        .iter()
                        .any(|(k, p, _)| d.locks.contains(k) && !p.is(&d.pull)),
                    Err(_) => false,
                };
            if !clear {
                tracing::info!(waiter = %d.id, "the engine was being repaired from Atlantis: not sent now");
                return false;
            }
        }
        // Nothing of a pull whose release is on its way leaves; a release waits for this.
        let Some(sending) = self.begin_sending(&d.pull) else {
            tracing::info!(waiter = %d.id, pull = %d.pull, "its pull is releasing: not sent now");
            return false;
        };
        // The last check, under the guard (a release of the pull arriving now waits for this
        // send; one that came first has cancelled the dispatch in the engine).
        match self.engine.admit(d).await {
            Ok(Admission::Grant {
                fencing_token: t, ..
            }) if expect == Expect::Grant(t) => {}
            Ok(Admission::HandOff { blocked, .. }) if expect == Expect::HandOff(&blocked) => {}
            Ok(Admission::Dropped) => {
                drop(sending);
                tracing::info!(waiter = %d.id, pull = %d.pull, "its pull released its locks: not sent");
                self.metrics.replay("dropped");
                self.notice_dispatch(d, stored, DispatchReason::Dropped)
                    .await;
                return false;
            }
            other => {
                tracing::info!(waiter = %d.id, admission = ?other, "changed right before sending: not sent now");
                return false;
            }
        }
        // The admission may have stalled past this replica's view of the others.
        if !self.may_grant() {
            tracing::info!(waiter = %d.id, "a replica may be out of step: not sent now");
            return false;
        }
        let outcome = replay(&self.upstream, stored, &self.settings.retry).await;
        drop(sending);
        match outcome {
            ReplayOutcome::Delivered { status } => {
                tracing::Span::current().record("http.response.status_code", status.as_u16());
                tracing::info!(waiter = %d.id, pull = %d.pull, reason = d.reason.as_str(), %status, "replayed to Atlantis");
                self.metrics.replay(d.reason.as_str());
                if !status.is_success()
                    && let Some(token) = token
                {
                    // Atlantis refused the request: the grant must not outlive it (§10.4).
                    let _ = self
                        .engine
                        .release_grant(d.pull.clone(), d.locks.clone(), token)
                        .await;
                } else if token.is_some() {
                    // Atlantis answers webhooks before it acts: the grant stays in flight (so
                    // nobody else is granted the lock) until Atlantis lists the lock for the pull.
                    self.wait_until_taken(d).await;
                }
                true
            }
            ReplayOutcome::Failed(why) => {
                tracing::Span::current().record("otel.status_code", "ERROR");
                tracing::warn!(waiter = %d.id, error = %why, "replay failed; it stays queued and will be offered again");
                self.metrics.replay("failed");
                false
            }
        }
    }

    /// Waits (bounded by `replay-wait`) until Atlantis lists the dispatch's locks as held by its
    /// pull, or has none of them for another pull and stopped changing (a plan that failed).
    async fn wait_until_taken(&self, d: &Dispatch) {
        let deadline = Instant::now() + self.settings.replay_wait;
        let mut delay = Duration::from_millis(20);
        while Instant::now() + delay <= deadline {
            tokio::time::sleep(delay).await;
            match atlantis_api::list_locks(&self.upstream, Duration::from_secs(5)).await {
                Ok(locks) => {
                    let locks = self.parse_locks(&locks);
                    let taken = d
                        .locks
                        .iter()
                        .any(|k| locks.iter().any(|(lk, p, _)| lk == k && p.is(&d.pull)));
                    if taken {
                        return;
                    }
                }
                Err(LockListError::Unsupported) => return,
                Err(_) => {}
            }
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// Confirms a dispatch, retrying a little: a lost confirm means a later re-offer, which the
    /// Atlantis check then recognises as delivered.
    async fn confirm(&self, d: &Dispatch) {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=5 {
            match self.engine.confirm(d).await {
                Ok(()) => return,
                Err(e) if attempt == 5 => {
                    tracing::warn!(waiter = %d.id, error = %e, "confirm failed; the dispatch may be offered again");
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    /// A waiter whose pull closed or unlocked: nothing is replayed; the pull is told.
    async fn drop_dispatch(&self, d: &Dispatch) {
        tracing::info!(waiter = %d.id, pull = %d.pull, "queued request dropped: its pull released its locks");
        self.metrics.replay("dropped");
        self.metrics.queue_left(
            d.enqueued_at.elapsed().unwrap_or_default(),
            Err(FailReason::Cancelled),
        );
        let stored = StoredRequest::decode(&d.payload).ok();
        self.confirm(d).await;
        if let Some(stored) = stored {
            self.notice_dispatch(d, &stored, DispatchReason::Dropped)
                .await;
        }
    }

    /// Automatic cleanup released expired locks: delete them in Atlantis too.
    async fn expire(&self, d: &Dispatch) {
        self.delete_preempted(d.preempted.iter()).await;
        self.metrics.replay("expired");
        self.confirm(d).await;
    }

    /// A timed-out holder lost its lock: Atlantis must let the new holder in too.
    async fn delete_preempted(&self, preempted: impl Iterator<Item = &Preempted>) {
        for p in preempted {
            match atlantis_api::delete_lock(
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

    /// Polls Atlantis's lock table (bounded by `replay-wait`) until `agrees` holds for the
    /// dispatch's view of it.
    async fn atlantis_view(
        &self,
        d: &Dispatch,
        agrees: impl Fn(&[(LockKey, Listed, String)], &Dispatch) -> bool,
    ) -> AtlantisView {
        let deadline = Instant::now() + self.settings.replay_wait;
        let mut delay = Duration::from_millis(50);
        let mut last = None;
        loop {
            match atlantis_api::list_locks(&self.upstream, Duration::from_secs(5)).await {
                Ok(locks) => {
                    let locks = self.parse_locks(&locks);
                    let ours = d
                        .locks
                        .iter()
                        .all(|k| locks.iter().any(|(lk, p, _)| lk == k && p.is(&d.pull)));
                    if d.attempt > 0 && d.reason == DispatchReason::Granted && ours {
                        return AtlantisView::AlreadyHeld;
                    }
                    if agrees(&locks, d) {
                        return AtlantisView::Agrees;
                    }
                    last = Some(locks);
                }
                // Atlantis before v0.34 cannot tell us: send at once, as before.
                Err(LockListError::Unsupported) => return AtlantisView::Agrees,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read Atlantis's locks before a replay")
                }
            }
            if Instant::now() + delay > deadline {
                return match last {
                    Some(locks) => AtlantisView::Disagrees(
                        locks
                            .into_iter()
                            .filter(|(k, p, _)| d.locks.contains(k) && !p.is(&d.pull))
                            .collect(),
                    ),
                    None => AtlantisView::Unreadable,
                };
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}
