//! Shadow diffing (DESIGN.md §5): legacy decides, the engine evaluates the same operation in the
//! shadow keyspace, and the two **decisions** are compared.
//!
//! Legacy's outcome comes from Atlantis's response where it gives one (`/api/plan`, `DELETE
//! /locks`) and, for webhooks (decided asynchronously), from `GET /api/locks` read shortly after
//! ([`observe_legacy`]). Expected differences are their own kinds, not noise: "legacy denied,
//! enhanced would queue" is what the product is for.

mod recorder;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use recorder::{RECENT_DIFFS, ShadowDiff, ShadowRecorder, ShadowSpawner};

use crate::classify::{LockKey, PullRef};
use crate::engine::{
    AcquireOutcome, AcquireRequest, EngineResult, LockEngine, QueueOutcome, ReleaseOutcome,
    ReleaseSummary,
};
use crate::upstream::Upstream;
use crate::upstream::atlantis_api::{AtlantisLock, list_locks};
pub use crate::vocab::DiffKind;

/// What Atlantis (legacy) did with one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "pull", rename_all = "snake_case")]
pub enum LegacyOutcome {
    /// It took the locks.
    Granted,
    /// It refused: another pull (number) holds a lock.
    DeniedHeldBy(i64),
    /// It released locks the pull held.
    Released,
    /// Nothing to do (release of a lock nobody held).
    NoOp,
    /// Could not tell (Atlantis unreachable, or it had not acted yet when read).
    Unknown,
}

/// What the engine would have done with the same operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", content = "pull", rename_all = "snake_case")]
pub enum EnhancedDecision {
    /// It would grant.
    Granted,
    /// It would queue; behind the holder's pull number when a lock is held (`None` when the lock
    /// is free but other waiters are ahead).
    WouldQueueBehind(Option<i64>),
    /// It released locks the pull held.
    Released,
    /// It held nothing to release.
    NoOp,
}

impl EnhancedDecision {
    /// From a non-queueing acquire (the shadow engine uses `acquire`).
    pub fn from_acquire(outcome: &AcquireOutcome) -> Self {
        match outcome {
            AcquireOutcome::Granted(_) => Self::Granted,
            AcquireOutcome::Held { by } => {
                Self::WouldQueueBehind(by.iter().find_map(|b| b.held_by.as_ref().map(|p| p.number)))
            }
        }
    }

    /// From an acquire-or-enqueue.
    pub fn from_queue(outcome: &QueueOutcome) -> Self {
        match outcome {
            QueueOutcome::Granted(_) => Self::Granted,
            QueueOutcome::Queued(q) => Self::WouldQueueBehind(
                q.positions
                    .iter()
                    .find_map(|p| p.held_by.as_ref().map(|h| h.number)),
            ),
            QueueOutcome::Forgotten => Self::NoOp,
        }
    }

    /// From a whole-pull release.
    pub fn from_release_pull(summary: &ReleaseSummary) -> Self {
        if summary.released.is_empty() {
            Self::NoOp
        } else {
            Self::Released
        }
    }

    /// From a single-key release.
    pub fn from_release(outcome: &ReleaseOutcome) -> Self {
        match outcome {
            ReleaseOutcome::Released => Self::Released,
            ReleaseOutcome::NotHeld | ReleaseOutcome::HeldByOther(_) => Self::NoOp,
        }
    }
}

/// Compares legacy's outcome with the engine's decision for the same operation.
pub fn compare(legacy: LegacyOutcome, enhanced: EnhancedDecision) -> DiffKind {
    use EnhancedDecision as E;
    use LegacyOutcome as L;
    match (legacy, enhanced) {
        (L::Unknown, _) => DiffKind::Inconclusive,
        (L::Granted, E::Granted) | (L::Released, E::Released) | (L::NoOp, E::NoOp) => {
            DiffKind::Match
        }
        (L::DeniedHeldBy(n), E::WouldQueueBehind(m)) => match m {
            Some(m) if m != n => DiffKind::HolderMismatch,
            _ => DiffKind::LegacyDeniedEnhancedWouldQueue,
        },
        (L::Granted, E::WouldQueueBehind(_)) => DiffKind::LegacyGrantedEnhancedWouldQueue,
        (L::DeniedHeldBy(_), E::Granted) => DiffKind::LegacyDeniedEnhancedWouldGrant,
        (L::Released, E::NoOp) | (L::NoOp, E::Released) => DiffKind::ReleaseMismatch,
        _ => DiffKind::OperationMismatch,
    }
}

/// The lock operation being shadowed, as far as deriving legacy's outcome needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShadowOp {
    /// A pull takes these locks (plan, autoplan).
    Acquire(AcquireRequest),
    /// A pull releases everything (closed, merged, `atlantis unlock`).
    ReleasePull {
        /// The pull.
        pull: PullRef,
    },
    /// One lock released by key (`DELETE /locks?id=`).
    ReleaseKey {
        /// The lock.
        key: LockKey,
    },
}

impl ShadowOp {
    /// `acquire` or `release`, for diffs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            ShadowOp::Acquire(_) => "acquire",
            ShadowOp::ReleasePull { .. } | ShadowOp::ReleaseKey { .. } => "release",
        }
    }
}

/// What the engine would decide for `op`, evaluated for real in `engine` — the shadow engine,
/// whose keyspace is separate (`RedisSettings::shadow`), so its state follows legacy's traffic
/// without touching real locks. An acquire never queues there: "would queue" is the answer.
pub async fn evaluate(engine: &dyn LockEngine, op: &ShadowOp) -> EngineResult<EnhancedDecision> {
    Ok(match op {
        ShadowOp::Acquire(req) => {
            EnhancedDecision::from_acquire(&engine.acquire(req.clone()).await?)
        }
        ShadowOp::ReleasePull { pull } => {
            EnhancedDecision::from_release_pull(&engine.release_pull(pull.clone()).await?)
        }
        ShadowOp::ReleaseKey { key } => {
            EnhancedDecision::from_release(&engine.release(key.clone(), None).await?)
        }
    })
}

/// Whether Atlantis's listed lock is this key (full v0.40 name, or its parts when the name is
/// in the older three-part form).
fn is_key(l: &AtlantisLock, k: &LockKey) -> bool {
    l.name == k.to_string()
        || (l.project_repo == k.repo
            && l.project_repo_path == k.path
            && l.workspace == k.workspace
            && l.project_name == k.project)
}

/// Derives legacy's outcome from Atlantis's lock table (`GET /api/locks`) read after it handled
/// the operation. `before` is the table read before it, when the caller has one: only then can a
/// release be told apart from a no-op.
///
/// An acquire whose locks Atlantis does not hold at all yet is `Unknown` (the asynchronous plan
/// had not started, or failed and released its own lock), never a guess.
pub fn legacy_outcome_from_locks(
    op: &ShadowOp,
    before: Option<&[AtlantisLock]>,
    after: &[AtlantisLock],
) -> LegacyOutcome {
    let holder = |k: &LockKey, table: &[AtlantisLock]| {
        table
            .iter()
            .find(|l| is_key(l, k))
            .map(|l| l.pull().unwrap_or(i64::MIN))
    };
    match op {
        ShadowOp::Acquire(req) => {
            let pull = &req.pull;
            let mut all_ours = !req.locks.is_empty();
            for k in &req.locks {
                match holder(k, after) {
                    Some(n) if n != pull.number => return LegacyOutcome::DeniedHeldBy(n),
                    Some(_) => {}
                    None => all_ours = false,
                }
            }
            if all_ours {
                LegacyOutcome::Granted
            } else {
                LegacyOutcome::Unknown
            }
        }
        ShadowOp::ReleasePull { pull } => {
            let held = |t: &[AtlantisLock]| {
                t.iter()
                    .any(|l| l.project_repo == pull.repo && l.pull() == Some(pull.number))
            };
            match before {
                _ if held(after) => LegacyOutcome::Unknown,
                Some(b) if held(b) => LegacyOutcome::Released,
                Some(_) => LegacyOutcome::NoOp,
                None => LegacyOutcome::Released,
            }
        }
        ShadowOp::ReleaseKey { key } => {
            match (before.map(|b| holder(key, b)), holder(key, after)) {
                (_, Some(_)) => LegacyOutcome::Unknown,
                (Some(None), None) => LegacyOutcome::NoOp,
                _ => LegacyOutcome::Released,
            }
        }
    }
}

/// Legacy's outcome of an `/api/plan` or `/api/apply` from its status and body: Atlantis answers
/// 500 with the lock text ("locked by an unapplied plan from pull #12") when another pull holds it.
pub fn legacy_outcome_from_api(status: http::StatusCode, body: &[u8]) -> LegacyOutcome {
    let text = String::from_utf8_lossy(body);
    if let Some(n) = locked_by(&text) {
        LegacyOutcome::DeniedHeldBy(n)
    } else if status.is_success() {
        LegacyOutcome::Granted
    } else {
        LegacyOutcome::Unknown
    }
}

/// The holder's pull number in Atlantis's lock text (`pull #12`, GitLab/Azure `pull !12`).
pub fn locked_by(text: &str) -> Option<i64> {
    const MARK: &str = "currently locked by an unapplied plan from pull ";
    let rest = &text[text.find(MARK)? + MARK.len()..];
    let digits: String = rest
        .trim_start_matches(['#', '!'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Legacy's outcome of `DELETE /locks?id=` from its status: 200 deleted, 404 no such lock.
pub fn legacy_outcome_from_delete(status: http::StatusCode) -> LegacyOutcome {
    match status {
        s if s.is_success() => LegacyOutcome::Released,
        http::StatusCode::NOT_FOUND => LegacyOutcome::NoOp,
        _ => LegacyOutcome::Unknown,
    }
}

/// Waits `delay` (Atlantis handles webhooks asynchronously), reads `GET /api/locks` and derives
/// legacy's outcome; any failure to read is `Unknown`.
pub async fn observe_legacy(
    upstream: &Upstream,
    op: &ShadowOp,
    before: Option<&[AtlantisLock]>,
    delay: Duration,
    timeout: Duration,
) -> LegacyOutcome {
    tokio::time::sleep(delay).await;
    match list_locks(upstream, timeout).await {
        Ok(after) => legacy_outcome_from_locks(op, before, &after),
        Err(e) => {
            tracing::debug!(error = %e, "shadow: cannot read Atlantis's locks");
            LegacyOutcome::Unknown
        }
    }
}

#[cfg(test)]
mod tests;
