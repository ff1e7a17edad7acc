//! `tracing` events for engine state changes, gated by `enable-events`.

use super::types::{Dispatch, DispatchReason};

/// Target of every engine event, so operators can filter them (`RUST_LOG=alp::engine=info`).
pub const TARGET: &str = "alp::engine";

/// Emits the event for a dispatch leaving the engine.
pub fn dispatched(enabled: bool, d: &Dispatch) {
    if !enabled {
        return;
    }
    let reason = d.reason.as_str();
    let pull = d.pull.number;
    let repo = d.pull.repo.as_str();
    let waiter = d.id.to_string();
    match d.reason {
        DispatchReason::Granted => {
            tracing::info!(target: TARGET, event = "grant", %waiter, repo, pull, token = d.fencing_token, "waiter granted")
        }
        DispatchReason::TimedOut => {
            tracing::info!(target: TARGET, event = "queue_timeout", %waiter, repo, pull, "waiter timed out")
        }
        DispatchReason::DeadlockVictim => {
            tracing::warn!(target: TARGET, event = "deadlock_victim", %waiter, repo, pull, "waiter failed to break a deadlock")
        }
        DispatchReason::Removed => {
            tracing::info!(target: TARGET, event = "waiter_removed", %waiter, repo, pull, "waiter removed")
        }
        DispatchReason::Dropped => {
            tracing::info!(target: TARGET, event = "waiter_dropped", %waiter, repo, pull, "waiter dropped: its pull released its locks")
        }
        DispatchReason::Expired => {
            tracing::info!(target: TARGET, event = "expire", repo, pull, locks = d.locks.len(), reason, "expired locks cleaned up")
        }
    }
    for p in &d.preempted {
        tracing::info!(target: TARGET, event = "expire", key = %p.key, pull = p.pull.number, "expired lock preempted");
    }
}

use super::stats::EngineStats;

/// Counts a dispatch by its reason.
pub fn count_dispatch(stats: &EngineStats, d: &Dispatch) {
    let counter = match d.reason {
        DispatchReason::Granted => &stats.granted_from_queue,
        DispatchReason::TimedOut => &stats.queue_timeouts,
        DispatchReason::DeadlockVictim => &stats.deadlocks,
        DispatchReason::Removed | DispatchReason::Dropped => &stats.waiters_removed,
        DispatchReason::Expired => &stats.expired,
    };
    EngineStats::bump(counter);
    if d.reason == DispatchReason::Expired {
        EngineStats::add(&stats.releases, d.locks.len() as u64);
    } else {
        EngineStats::add(&stats.expired, d.preempted.len() as u64);
        EngineStats::add(&stats.releases, d.preempted.len() as u64);
    }
}

/// Counts and announces a grant made directly to a caller.
pub fn granted(enabled: bool, stats: &EngineStats, req: &super::AcquireRequest, g: &super::Grant) {
    EngineStats::bump(&stats.acquisitions_granted);
    EngineStats::add(&stats.expired, g.preempted.len() as u64);
    EngineStats::add(&stats.releases, g.preempted.len() as u64);
    if !enabled {
        return;
    }
    tracing::info!(target: TARGET, event = "acquire", pull = %req.pull, locks = req.locks.len(), token = g.fencing_token, "locks granted");
    for p in &g.preempted {
        tracing::info!(target: TARGET, event = "expire", key = %p.key, pull = p.pull.number, "expired lock preempted");
    }
}
