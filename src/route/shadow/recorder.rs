//! Counting and keeping shadow comparisons, and running shadow evaluations without ever
//! delaying the primary response.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::Semaphore;

use super::{DiffKind, EnhancedDecision, LegacyOutcome, ShadowOp, compare};
use crate::telemetry::Metrics;

/// How many recent diffs `/admin/shadow/diffs` keeps.
pub const RECENT_DIFFS: usize = 100;

/// One comparison that did not simply match, as `/admin/shadow/diffs` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShadowDiff {
    /// When it was compared (RFC 3339).
    pub at: String,
    /// Its kind.
    pub kind: DiffKind,
    /// `acquire` or `release`.
    pub operation: &'static str,
    /// Repository.
    pub repo: String,
    /// Pull number, when the operation names one.
    pub pull: Option<i64>,
    /// The Atlantis lock keys involved.
    pub locks: Vec<String>,
    /// What Atlantis did.
    pub legacy: LegacyOutcome,
    /// What the engine would have done.
    pub enhanced: EnhancedDecision,
    /// Trace of the request, to find it in the tracing backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Counts every comparison by kind and keeps the most recent non-matching ones.
pub struct ShadowRecorder {
    by_kind: [AtomicU64; DiffKind::ALL.len()],
    dropped: AtomicU64,
    recent: Mutex<VecDeque<ShadowDiff>>,
    keep: usize,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for ShadowRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowRecorder")
            .field("compared", &self.compared())
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl ShadowRecorder {
    /// Keeps the last `keep` diffs; counts also go to `metrics`.
    pub fn new(keep: usize, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            by_kind: Default::default(),
            dropped: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::with_capacity(keep.min(1024))),
            keep,
            metrics,
        }
    }

    /// Compares and records one operation; returns the kind (to put on the trace).
    pub fn record(
        &self,
        op: &ShadowOp,
        legacy: LegacyOutcome,
        enhanced: EnhancedDecision,
        trace_id: Option<String>,
    ) -> DiffKind {
        let kind = compare(legacy, enhanced);
        self.by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.shadow_compared(kind);
        }
        if kind != DiffKind::Match && self.keep > 0 {
            let (repo, pull, locks) = match op {
                ShadowOp::Acquire(req) => (
                    req.pull.repo.clone(),
                    Some(req.pull.number),
                    req.locks.iter().map(ToString::to_string).collect(),
                ),
                ShadowOp::ReleasePull { pull } => (pull.repo.clone(), Some(pull.number), vec![]),
                ShadowOp::ReleaseKey { key } => (key.repo.clone(), None, vec![key.to_string()]),
            };
            let diff = ShadowDiff {
                at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                kind,
                operation: op.name(),
                repo,
                pull,
                locks,
                legacy,
                enhanced,
                trace_id,
            };
            if kind.is_mismatch() {
                tracing::info!(kind = kind.as_str(), repo = %diff.repo, pull = ?diff.pull, "shadow mismatch");
            }
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() == self.keep {
                recent.pop_front();
            }
            recent.push_back(diff);
        }
        kind
    }

    /// Counts one evaluation dropped because the shadow was saturated.
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.shadow_dropped();
        }
    }

    /// Comparisons of `kind` so far.
    pub fn count(&self, kind: DiffKind) -> u64 {
        self.by_kind[kind as usize].load(Ordering::Relaxed)
    }

    /// Comparisons so far.
    pub fn compared(&self) -> u64 {
        self.by_kind.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Unexpected disagreements so far (see [`DiffKind::is_mismatch`]).
    pub fn mismatched(&self) -> u64 {
        DiffKind::ALL
            .iter()
            .filter(|k| k.is_mismatch())
            .map(|k| self.count(*k))
            .sum()
    }

    /// Recent diffs, newest first.
    pub fn recent(&self) -> Vec<ShadowDiff> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().cloned().collect()
    }

    /// Evaluations dropped so far.
    pub fn dropped_count(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Runs shadow evaluations as spawned tasks, at most `capacity` at once; beyond that they are
/// dropped and counted, so the primary request never waits for the shadow.
#[derive(Clone, Debug)]
pub struct ShadowSpawner {
    permits: Arc<Semaphore>,
    recorder: Arc<ShadowRecorder>,
}

impl ShadowSpawner {
    /// Bounded by `capacity` (`event-buffer-size`) evaluations in flight.
    pub fn new(capacity: usize, recorder: Arc<ShadowRecorder>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(capacity.max(1))),
            recorder,
        }
    }

    /// Spawns `work` if there is room; otherwise drops it, counts it and returns false. Never waits.
    pub fn spawn<F>(&self, work: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    work.await;
                    drop(permit);
                });
                true
            }
            Err(_) => {
                self.recorder.dropped();
                false
            }
        }
    }

    /// The recorder the evaluations report to.
    pub fn recorder(&self) -> &Arc<ShadowRecorder> {
        &self.recorder
    }
}
