//! The reconciler: every `lock-sync-interval`, read Atlantis's lock table and bring the engine in
//! step — adopt locks it does not know (taken before the migration or on the legacy path), release
//! locks Atlantis no longer has (a failed plan releases its own lock) after a grace period.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Enhanced;
use crate::classify::{LockKey, Priority, PullRef};
use crate::engine::{AcquireOutcome, AcquireRequest, ReleaseOutcome};
use crate::telemetry::ReleaseReason;
use crate::upstream::atlantis_api::{self, AtlantisLock, LockListError};

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Locks taken over from Atlantis.
    pub adopted: usize,
    /// Engine locks released because Atlantis no longer holds them.
    pub released: usize,
    /// Atlantis locks held in the engine by another pull (should not happen; logged).
    pub conflicts: usize,
}

/// Memory between passes: when each engine lock was first seen missing from Atlantis.
#[derive(Default)]
pub struct Reconciler {
    missing_since: HashMap<LockKey, Instant>,
}

impl Enhanced {
    /// Runs the reconciler until `stop`; stops by itself (saying so once) against an Atlantis
    /// without `GET /api/locks`.
    pub fn spawn_reconciler(self: &Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.settings.lock_sync_interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut state = Reconciler::default();
            let mut failing = false;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match this.reconcile(&mut state).await {
                    Ok(report) => {
                        failing = false;
                        if report != SyncReport::default() {
                            tracing::info!(?report, "reconciled the engine with Atlantis");
                        }
                    }
                    Err(LockListError::Unsupported) => {
                        tracing::warn!(
                            "Atlantis has no GET /api/locks (older than v0.34): the reconciler is off; \
                             locks taken outside the proxy stay invisible to the engine"
                        );
                        break;
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot read Atlantis's locks; will keep trying");
                    }
                    Err(_) => {}
                }
            }
        })
    }

    /// One reconciliation pass.
    pub async fn reconcile(&self, state: &mut Reconciler) -> Result<SyncReport, LockListError> {
        let atlantis = atlantis_api::list_locks(&self.upstream, Duration::from_secs(10)).await?;
        let engine = self
            .engine
            .list_locks()
            .await
            .map_err(|e| LockListError::Unexpected {
                status: http::StatusCode::SERVICE_UNAVAILABLE,
                body: e.to_string(),
            })?;
        let mut report = SyncReport::default();
        let held: HashMap<&LockKey, &PullRef> = engine.iter().map(|l| (&l.key, &l.pull)).collect();
        let mut in_atlantis = HashSet::new();
        for lock in &atlantis {
            let Some((key, pull)) = parse(lock) else {
                tracing::debug!(name = %lock.name, "unreadable Atlantis lock skipped");
                continue;
            };
            in_atlantis.insert(key.clone());
            match held.get(&key) {
                Some(holder) if holder.number == pull.number => {}
                Some(holder) => {
                    report.conflicts += 1;
                    tracing::warn!(%key, engine_holder = %holder, atlantis_holder = %pull, "engine and Atlantis disagree on a lock holder");
                }
                None => {
                    let req = AcquireRequest {
                        locks: vec![key.clone()],
                        pull,
                        user: lock.user.clone(),
                        priority: Priority::Normal,
                        hold_timeout: None,
                    };
                    match self.engine.acquire(req).await {
                        Ok(AcquireOutcome::Granted(_)) => report.adopted += 1,
                        // Someone queued for it meanwhile: the next pass sees the holder.
                        Ok(AcquireOutcome::Held { .. }) => {}
                        Err(e) => {
                            tracing::warn!(%key, error = %e, "could not adopt an Atlantis lock")
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        state
            .missing_since
            .retain(|k, _| held.contains_key(k) && !in_atlantis.contains(k));
        for l in &engine {
            if in_atlantis.contains(&l.key) {
                continue;
            }
            let since = *state.missing_since.entry(l.key.clone()).or_insert(now);
            if now.duration_since(since) < self.settings.lock_sync_grace {
                continue;
            }
            match self
                .engine
                .release(l.key.clone(), Some(l.pull.clone()))
                .await
            {
                Ok(ReleaseOutcome::Released) => {
                    report.released += 1;
                    let held = l.acquired_at.elapsed().unwrap_or_default();
                    self.metrics.lock_released(held, ReleaseReason::Reconciled);
                    state.missing_since.remove(&l.key);
                    tracing::info!(key = %l.key, pull = %l.pull, "Atlantis no longer holds this lock: released in the engine");
                }
                Ok(_) => {
                    state.missing_since.remove(&l.key);
                }
                Err(e) => {
                    tracing::warn!(key = %l.key, error = %e, "could not release a vanished lock")
                }
            }
        }
        Ok(report)
    }
}

/// An Atlantis lock as an engine key and pull; 3-part keys from before v0.40 included.
fn parse(lock: &AtlantisLock) -> Option<(LockKey, PullRef)> {
    let number = lock.pull()?;
    let key = if lock.project_repo.is_empty() {
        LockKey::parse(&lock.name).ok()?
    } else {
        LockKey::parse_with_repo(&lock.name, &lock.project_repo).ok()?
    };
    let pull = PullRef {
        repo: key.repo.clone(),
        number,
    };
    Some((key, pull))
}
