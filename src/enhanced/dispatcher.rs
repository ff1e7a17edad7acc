//! The dispatcher: every grant, timeout, deadlock victim and removal the engine hands this replica
//! is replayed to Atlantis byte-for-byte, then confirmed so no replica replays it again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Enhanced;
use crate::classify::LockKey;
use crate::engine::{Dispatch, DispatchReason, DispatchReceiver};
use crate::telemetry::{self, FailReason};
use crate::upstream::atlantis_api::{self, LockListError};
use crate::upstream::replay::{ReplayOutcome, StoredRequest, replay};

/// Replays handled at once; more wait (their leases keep them owned meanwhile).
const CONCURRENT_REPLAYS: usize = 16;

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

    /// Handles one dispatch; unconfirmed failures come back after the lease.
    async fn dispatch(&self, d: Dispatch) {
        let stored = match StoredRequest::decode(&d.payload) {
            Ok(s) => s,
            Err(e) => {
                // Nothing can ever replay it: confirm so it stops coming back, and say so loudly.
                tracing::error!(waiter = %d.id, error = %e, "queued request unreadable; dropped");
                self.metrics.replay("unreadable");
                let _ = self.engine.confirm(&d).await;
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
        self.replay_dispatch(d, stored).instrument(span).await;
    }

    async fn replay_dispatch(&self, d: Dispatch, mut stored: StoredRequest) {
        let waited = d.enqueued_at.elapsed().unwrap_or_default();
        match d.reason {
            DispatchReason::Granted => {
                for p in &d.preempted {
                    // A timed-out holder lost its lock: Atlantis must let the waiter in too.
                    match atlantis_api::delete_lock(
                        &self.upstream,
                        &p.key.to_string(),
                        Duration::from_secs(10),
                    )
                    .await
                    {
                        Ok(_) => {
                            tracing::info!(key = %p.key, holder = %p.pull, "preempted a timed-out lock")
                        }
                        Err(e) => {
                            tracing::warn!(key = %p.key, error = %e, "could not delete the preempted lock in Atlantis")
                        }
                    }
                }
                self.wait_until_atlantis_agrees(&d).await;
                self.metrics.queue_left(waited, Ok(()));
            }
            reason => {
                let why = match reason {
                    DispatchReason::TimedOut => FailReason::QueueTimeout,
                    DispatchReason::DeadlockVictim => FailReason::Deadlock,
                    _ => FailReason::Cancelled,
                };
                self.metrics.queue_left(waited, Err(why));
                tracing::info!(
                    waiter = %d.id,
                    pull = %d.pull,
                    reason = reason.as_str(),
                    "handing the queued request to Atlantis (it will answer for itself)"
                );
            }
        }
        // The replay continues this new trace; the stored headers carry the original's.
        let mut headers = http::HeaderMap::new();
        telemetry::inject_headers(&tracing::Span::current(), &mut headers);
        for (name, value) in &headers {
            if let Ok(v) = value.to_str() {
                stored.set_header(name.as_str(), v);
            }
        }
        match replay(&self.upstream, &stored, &self.settings.retry).await {
            ReplayOutcome::Delivered { status } => {
                tracing::Span::current().record("http.response.status_code", status.as_u16());
                tracing::info!(waiter = %d.id, pull = %d.pull, reason = d.reason.as_str(), %status, "replayed to Atlantis");
                self.metrics.replay(d.reason.as_str());
                if let Err(e) = self.engine.confirm(&d).await {
                    tracing::warn!(waiter = %d.id, error = %e, "confirm failed; the dispatch may be replayed again");
                }
                self.notice_dispatch(&d, &stored).await;
            }
            ReplayOutcome::Failed(why) => {
                tracing::Span::current().record("otel.status_code", "ERROR");
                tracing::warn!(waiter = %d.id, error = %why, "replay failed; it stays queued and will be offered again");
                self.metrics.replay("failed");
            }
        }
    }

    /// Atlantis processes some releases asynchronously (an `unlock` comment): before replaying a
    /// grant, wait (bounded by `replay-wait`) until Atlantis no longer lists any of its locks as
    /// held by another pull, so the replayed command is not refused as "locked".
    async fn wait_until_atlantis_agrees(&self, d: &Dispatch) {
        let deadline = Instant::now() + self.settings.replay_wait;
        let mut delay = Duration::from_millis(50);
        loop {
            match atlantis_api::list_locks(&self.upstream, Duration::from_secs(5)).await {
                Ok(locks) => {
                    let blocked = locks.iter().any(|l| {
                        l.pull() != Some(d.pull.number)
                            && LockKey::parse_with_repo(&l.name, &l.project_repo)
                                .is_ok_and(|k| d.locks.contains(&k))
                    });
                    if !blocked {
                        return;
                    }
                }
                // Atlantis before v0.34 cannot tell us: replay at once.
                Err(LockListError::Unsupported) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read Atlantis's locks before a replay")
                }
            }
            if Instant::now() + delay > deadline {
                tracing::warn!(waiter = %d.id, "Atlantis still lists the lock as held; replaying anyway");
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}
