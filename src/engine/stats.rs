//! Counters of engine activity; the observability layer exports them as Prometheus metrics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::vocab::Priority;

use super::settings::rank;

/// Atomic counters plus the current queue depth by priority.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Acquire attempts (direct or acquire-or-enqueue).
    pub acquisitions: AtomicU64,
    /// Acquire attempts granted at once.
    pub acquisitions_granted: AtomicU64,
    /// Acquire attempts that found a lock held (then queued or refused).
    pub acquisitions_blocked: AtomicU64,
    /// Locks released (by holder, force, pull release, cleanup or preemption).
    pub releases: AtomicU64,
    /// Waiters queued.
    pub enqueued: AtomicU64,
    /// Enqueues refused because a queue was full.
    pub queue_rejected: AtomicU64,
    /// Waiters granted from a queue.
    pub granted_from_queue: AtomicU64,
    /// Waiters that reached `queue-timeout`.
    pub queue_timeouts: AtomicU64,
    /// Waiters removed (operator or pull release).
    pub waiters_removed: AtomicU64,
    /// Locks preempted or cleaned up after their hold timeout.
    pub expired: AtomicU64,
    /// Deadlocks detected (and broken).
    pub deadlocks: AtomicU64,
    /// Backend errors.
    pub errors: AtomicU64,
    /// Waiters queued, by priority level (low 0 … critical 3), as of the last maintenance pass.
    queue_depth: [AtomicI64; 4],
}

impl EngineStats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Current queue depth of one priority.
    pub fn queue_depth(&self, priority: Priority) -> i64 {
        self.queue_depth[usize::from(rank(priority))].load(Ordering::Relaxed)
    }

    /// Replaces the queue depth gauges (low … critical).
    pub fn set_queue_depth(&self, depth: [i64; 4]) {
        for (gauge, value) in self.queue_depth.iter().zip(depth) {
            gauge.store(value, Ordering::Relaxed);
        }
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
