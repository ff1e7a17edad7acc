//! The reconciler: every `lock-sync-interval`, read Atlantis's lock table and repair the engine
//! toward it (DESIGN.md §10.1: Atlantis is the truth, the engine may lag, never lead):
//!
//! - a lock Atlantis holds that the engine does not know is adopted (taken before the migration,
//!   on the legacy path, or during an engine outage), even when waiters queue for it;
//! - a lock the engine gives to another pull than Atlantis's holder is given to Atlantis's holder
//!   once the disagreement outlived `lock-sync-grace`;
//! - a lock the engine holds that Atlantis released (a failed plan releases its own lock) is
//!   released after the same grace, and its waiters served.
//!
//! Locks whose grant is being replayed are the dispatcher's (it checks Atlantis itself). After an
//! engine outage the next pass first retries the releases the engine missed, then repairs without
//! waiting for the grace, and only then lets the gate queue again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Enhanced;
use crate::classify::{LockKey, PullId, PullRef};
use crate::engine::{EngineError, ReleaseOutcome};
use crate::telemetry::ReleaseReason;
use crate::upstream::atlantis_api::{self, LockListError};

/// How often the reconciler looks again while the engine is out of step.
const RESYNC_PERIOD: Duration = Duration::from_millis(200);

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Locks taken over from Atlantis that the engine did not know.
    pub adopted: usize,
    /// Engine locks released because Atlantis no longer holds them.
    pub released: usize,
    /// Engine locks given to Atlantis's holder (they were held by another pull in the engine).
    pub repaired: usize,
    /// Disagreements seen but still within the grace period.
    pub conflicts: usize,
}

/// Memory between passes: when each disagreement was first seen.
#[derive(Default)]
pub struct Reconciler {
    /// Per engine lock (key and fencing token): a newer grant of the key starts afresh.
    missing_since: HashMap<(LockKey, u64), Instant>,
    conflict_since: HashMap<(LockKey, PullId, PullId), Instant>,
}

/// Why a pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Atlantis's lock table could not be read.
    #[error(transparent)]
    Atlantis(#[from] LockListError),
    /// The engine did not answer.
    #[error("the lock engine: {0}")]
    Engine(#[from] EngineError),
}

impl Enhanced {
    /// Runs the reconciler until `stop`; stops by itself (saying so once) against an Atlantis
    /// without `GET /api/locks`.
    pub fn spawn_reconciler(self: &Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut state = Reconciler::default();
            let mut failing = false;
            // A pass every `lock-sync-interval`, and every RESYNC_PERIOD while the engine is
            // out of step (checked each period, so an outage is repaired without waiting for
            // the interval).
            let mut next = tokio::time::Instant::now();
            let mut first = true;
            loop {
                if !first {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(RESYNC_PERIOD.min(this.settings.lock_sync_interval)) => {}
                    }
                }
                first = false;
                if this.synced() && tokio::time::Instant::now() < next {
                    continue;
                }
                next = tokio::time::Instant::now() + this.settings.lock_sync_interval;
                let repairing = !this.synced();
                if repairing && !this.retry_releases().await {
                    continue;
                }
                // What went to Atlantis past the engine must have landed before the repair
                // pass reads Atlantis's lock table.
                if repairing && (this.bypass_pending() || this.legacy_settling()) {
                    continue;
                }
                match this.reconcile_with(&mut state, repairing).await {
                    Ok(report) => {
                        if failing {
                            tracing::info!("reading Atlantis's locks works again");
                        }
                        failing = false;
                        // Traffic that went past the engine during the pass is not in what
                        // it read: repaired on the next one.
                        if repairing && !this.bypass_pending() && !this.legacy_settling() {
                            this.engine_synced();
                        }
                        if report != SyncReport::default() {
                            tracing::info!(?report, "reconciled the engine with Atlantis");
                        }
                    }
                    Err(SyncError::Atlantis(LockListError::Unsupported)) => {
                        tracing::warn!(
                            "Atlantis has no GET /api/locks (older than v0.34): the reconciler is off; \
                             locks taken outside the proxy stay invisible to the engine"
                        );
                        this.engine_synced();
                        break;
                    }
                    Err(e) => {
                        // An engine this replica cannot reach may miss what happens meanwhile
                        // (legacy-path locks, releases): repaired before anyone queues again.
                        if matches!(e, SyncError::Engine(_)) {
                            this.engine_lost_sync();
                        }
                        if failing {
                            continue;
                        }
                        failing = true;
                        tracing::warn!(error = %e, "cannot reconcile the engine with Atlantis; will keep trying");
                    }
                }
            }
        })
    }

    /// One reconciliation pass with the normal grace.
    pub async fn reconcile(&self, state: &mut Reconciler) -> Result<SyncReport, SyncError> {
        self.reconcile_with(state, false).await
    }

    /// One pass; `now` repairs disagreements at once (after an engine outage).
    async fn reconcile_with(
        &self,
        state: &mut Reconciler,
        now_: bool,
    ) -> Result<SyncReport, SyncError> {
        let atlantis = atlantis_api::list_locks(&self.upstream, Duration::from_secs(10)).await?;
        let engine = self.engine.list_locks().await?;
        let grace = if now_ {
            Duration::ZERO
        } else {
            self.settings.lock_sync_grace
        };
        let now = Instant::now();
        let mut report = SyncReport::default();
        let held: HashMap<&LockKey, (&PullRef, u64, bool)> = engine
            .iter()
            .map(|l| (&l.key, (&l.pull, l.fencing_token, l.dispatching)))
            .collect();
        let mut in_atlantis = HashSet::new();
        let mut conflicts = HashSet::new();
        let unmarked = self.engine.settings().unmarked_vcs;
        for (key, listed, user) in self.parse_locks(&atlantis) {
            in_atlantis.insert(key.clone());
            match held.get(&key) {
                // The same pull (by number alone when Atlantis's URL does not name the VCS).
                Some((holder, _, _)) if listed.is(holder) => {}
                // A grant being replayed: the dispatcher checks Atlantis before it sends.
                Some((_, _, true)) => {}
                Some((holder, token, false)) => {
                    let pull = listed.pull(unmarked);
                    let id = (key.clone(), holder.id(), pull.id());
                    let since = *state.conflict_since.entry(id.clone()).or_insert(now);
                    conflicts.insert(id);
                    if now.duration_since(since) < grace {
                        report.conflicts += 1;
                        continue;
                    }
                    let expect = Some((holder.id(), *token));
                    match self
                        .engine
                        .adopt(key.clone(), pull.clone(), user, expect)
                        .await
                    {
                        Ok(true) => {
                            report.repaired += 1;
                            tracing::warn!(%key, engine_holder = %holder, atlantis_holder = %pull, "engine and Atlantis disagreed on a lock holder: Atlantis's holder adopted");
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(%key, error = %e, "could not repair a lock"),
                    }
                }
                None => match self
                    .engine
                    .adopt(key.clone(), listed.pull(unmarked), user, None)
                    .await
                {
                    Ok(true) => report.adopted += 1,
                    // Taken meanwhile: the next pass compares again.
                    Ok(false) => {}
                    Err(e) => tracing::warn!(%key, error = %e, "could not adopt an Atlantis lock"),
                },
            }
        }
        state.conflict_since.retain(|id, _| conflicts.contains(id));
        state.missing_since.retain(|(k, token), _| {
            held.get(k)
                .is_some_and(|(_, t, dispatching)| !dispatching && t == token)
                && !in_atlantis.contains(k)
        });
        // The repair after an outage releases vanished locks at once, except grants of the
        // last moments (one that landed late, or another replica's still on its way).
        let settle = self.settle_window().min(super::LEGACY_SETTLE);
        for l in &engine {
            // A grant of the last settle window may still be on its way through Atlantis
            // (another replica's, or one that landed late after an engine timeout).
            let fresh = now_ && l.acquired_at.elapsed().unwrap_or_default() < settle;
            if in_atlantis.contains(&l.key)
                || l.dispatching
                || fresh
                || self.is_unsettled(&l.key, &l.pull)
            {
                continue;
            }
            let id = (l.key.clone(), l.fencing_token);
            let since = *state.missing_since.entry(id.clone()).or_insert(now);
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
                    state.missing_since.remove(&id);
                    tracing::info!(key = %l.key, pull = %l.pull, "Atlantis no longer holds this lock: released in the engine");
                }
                Ok(_) => {
                    state.missing_since.remove(&id);
                }
                Err(e) => {
                    tracing::warn!(key = %l.key, error = %e, "could not release a vanished lock")
                }
            }
        }
        Ok(report)
    }
}
