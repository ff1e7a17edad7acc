//! Outcome counters of the resolver, read by the metrics layer.

use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::vocab::UnresolvedKind;

/// Atomic counters by outcome; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct ResolveStats {
    locks: AtomicU64,
    no_locks: AtomicU64,
    from_table: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    unresolved: [AtomicU64; 7],
}

/// A point-in-time copy of [`ResolveStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Resolutions that produced at least one lock.
    pub locks: u64,
    /// Resolutions with projects but nothing to lock under their mode (or no project at all).
    pub no_locks: u64,
    /// Resolutions answered from the proxy's table without any VCS API call.
    pub from_table: u64,
    /// Lookups served from the per-commit cache.
    pub cache_hits: u64,
    /// Lookups that had to call the VCS API.
    pub cache_misses: u64,
    /// Unresolved requests by kind, in [`UnresolvedKind::ALL`] order.
    pub unresolved: [u64; 7],
}

impl StatsSnapshot {
    /// Unresolved count of one kind.
    pub fn unresolved(&self, kind: UnresolvedKind) -> u64 {
        self.unresolved[kind as usize]
    }

    /// All unresolved requests.
    pub fn unresolved_total(&self) -> u64 {
        self.unresolved.iter().sum()
    }
}

impl ResolveStats {
    pub(crate) fn locks(&self) {
        self.locks.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn no_locks(&self) {
        self.no_locks.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn answered_by_table(&self) {
        self.from_table.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn cache(&self, hit: bool) {
        let c = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn unresolved(&self, kind: UnresolvedKind) {
        self.unresolved[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            locks: r(&self.locks),
            no_locks: r(&self.no_locks),
            from_table: r(&self.from_table),
            cache_hits: r(&self.cache_hits),
            cache_misses: r(&self.cache_misses),
            unresolved: std::array::from_fn(|i| r(&self.unresolved[i])),
        }
    }
}
