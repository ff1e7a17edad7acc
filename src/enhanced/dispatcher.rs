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
use crate::classify::{LockKey, PullRef};
use crate::engine::{Admission, Blocker, Dispatch, DispatchReason, DispatchReceiver, Preempted};
use crate::telemetry::{self, FailReason};
use crate::upstream::atlantis_api::{self, AtlantisLock, LockListError};
use crate::upstream::replay::{ReplayOutcome, StoredRequest, replay};

/// Replays handled at once; more wait (their leases keep them owned meanwhile).
const CONCURRENT_REPLAYS: usize = 16;

/// Marks a request the engine admitted (its fencing token) on its way to Atlantis, so Atlantis's
/// logs and the tests can tell admitted requests from hand-offs. Not covered by any signature.
pub const ADMITTED_HEADER: &str = "x-lock-proxy-admitted";

/// Marks a hand-off (a request Atlantis is expected to refuse), with the reason it left the queue.
pub const HANDOFF_HEADER: &str = "x-lock-proxy-handoff";

/// What Atlantis's lock table says about a dispatch's locks.
enum AtlantisView {
    /// The condition the dispatch needs holds (or Atlantis cannot list its locks).
    Agrees,
    /// Atlantis already lists every lock as held by the dispatch's pull: a re-offered grant that
    /// already landed.
    AlreadyHeld,
    /// Still not agreeing after `replay-wait`; the holders Atlantis lists for other pulls.
    Disagrees(Vec<(LockKey, PullRef, String)>),
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

    /// Handles one dispatch; what is neither sent nor settled comes back after the lease.
    async fn dispatch(&self, d: Dispatch) {
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
        match admission {
            Admission::Done => {}
            Admission::Dropped => {
                tracing::info!(waiter = %d.id, pull = %d.pull, "grant cancelled: its pull released its locks meanwhile");
                self.metrics.replay("dropped");
                self.notice_dispatch(&d, &stored, DispatchReason::Dropped)
                    .await;
            }
            Admission::Requeued => {
                tracing::info!(waiter = %d.id, pull = %d.pull, "grant taken back: another pull holds the lock in Atlantis; queued again");
                self.metrics.replay("requeued");
            }
            Admission::Grant {
                fencing_token,
                preempted,
            } => self.send_grant(d, stored, fencing_token, preempted).await,
            Admission::HandOff {
                blocked,
                taken,
                fencing_token,
            } => {
                self.send_handoff(d, stored, blocked, taken, fencing_token)
                    .await
            }
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
                !d.locks.iter().any(|k| {
                    locks
                        .iter()
                        .any(|(lk, p, _)| lk == k && p.number != d.pull.number)
                })
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
                self.metrics.replay("handed_back");
                if let Err(e) = self.engine.hand_back(&d, Some(token), holders).await {
                    tracing::warn!(waiter = %d.id, error = %e, "hand-back failed; the dispatch is offered again later");
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
        if self.send(&d, &mut stored, Some(token)).await {
            self.metrics.queue_left(waited, Ok(()));
            self.notice_dispatch(&d, &stored, DispatchReason::Granted)
                .await;
        }
    }

    async fn send_handoff(
        &self,
        d: Dispatch,
        mut stored: StoredRequest,
        blocked: Vec<Blocker>,
        taken: Vec<LockKey>,
        token: Option<u64>,
    ) {
        // Atlantis must refuse every blocked lock (another pull holds it there too) and must
        // not list a taken one for another pull.
        let view = self
            .atlantis_view(&d, |locks, d| {
                let refused = blocked.iter().all(|b| {
                    locks
                        .iter()
                        .any(|(k, p, _)| *k == b.key && p.number != d.pull.number)
                });
                let free = !taken.iter().any(|t| {
                    locks
                        .iter()
                        .any(|(k, p, _)| k == t && p.number != d.pull.number)
                });
                refused && free
            })
            .await;
        match view {
            AtlantisView::Agrees | AtlantisView::AlreadyHeld => {}
            AtlantisView::Disagrees(_) | AtlantisView::Unreadable => {
                // Not sent: the reconciler brings the engine in step, and the next offer is
                // admitted against the repaired state (often as a grant).
                tracing::info!(waiter = %d.id, pull = %d.pull, "Atlantis does not hold the blocking locks as the engine does: hand-off deferred");
                self.metrics.replay("deferred");
                if !taken.is_empty() {
                    let _ = self.engine.hand_back(&d, token, Vec::new()).await;
                }
                return;
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
        if self.send(&d, &mut stored, token).await {
            self.metrics.queue_left(waited, Err(why));
            self.notice_dispatch(&d, &stored, d.reason).await;
        }
    }

    /// Sends the stored request (continuing a new trace linked to the original) and confirms it
    /// once Atlantis answered. False when it was not delivered (it is offered again later).
    async fn send(&self, d: &Dispatch, stored: &mut StoredRequest, token: Option<u64>) -> bool {
        let mut headers = http::HeaderMap::new();
        telemetry::inject_headers(&tracing::Span::current(), &mut headers);
        for (name, value) in &headers {
            if let Ok(v) = value.to_str() {
                stored.set_header(name.as_str(), v);
            }
        }
        match replay(&self.upstream, stored, &self.settings.retry).await {
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
                }
                self.confirm(d).await;
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
        agrees: impl Fn(&[(LockKey, PullRef, String)], &Dispatch) -> bool,
    ) -> AtlantisView {
        let deadline = Instant::now() + self.settings.replay_wait;
        let mut delay = Duration::from_millis(50);
        let mut last = None;
        loop {
            match atlantis_api::list_locks(&self.upstream, Duration::from_secs(5)).await {
                Ok(locks) => {
                    let locks = parse_locks(&locks);
                    let ours = d.locks.iter().all(|k| {
                        locks
                            .iter()
                            .any(|(lk, p, _)| lk == k && p.number == d.pull.number)
                    });
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
                            .filter(|(k, p, _)| d.locks.contains(k) && p.number != d.pull.number)
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

/// Atlantis's locks as (key, holder, user); unreadable entries skipped.
pub(super) fn parse_locks(locks: &[AtlantisLock]) -> Vec<(LockKey, PullRef, String)> {
    locks
        .iter()
        .filter_map(|l| {
            let number = l.pull()?;
            let key = if l.project_repo.is_empty() {
                LockKey::parse(&l.name).ok()?
            } else {
                LockKey::parse_with_repo(&l.name, &l.project_repo).ok()?
            };
            let pull = PullRef {
                repo: key.repo.clone(),
                number,
            };
            Some((key, pull, l.user.clone()))
        })
        .collect()
}
