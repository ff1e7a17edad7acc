//! Outcome counters of the resolver, read by the metrics layer.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request stayed unresolved (one counter each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnresolvedKind {
    /// The whole resolution exceeded `resolve-timeout`.
    Budget,
    /// A VCS API call timed out on every attempt.
    ApiTimeout,
    /// The VCS API's rate limit is exhausted.
    RateLimited,
    /// The VCS API answered an error or garbage, or could not be reached.
    ApiError,
    /// No client is configured for the request's VCS (or the provider is not supported).
    NoClient,
    /// The repo's `atlantis.yaml` is invalid (Atlantis will report it on the pull).
    BadRepoConfig,
    /// The project layout needs a checkout to decide (globbed dirs, unknown names, ...).
    Unmappable,
}

impl UnresolvedKind {
    /// Every kind, for exporting.
    pub const ALL: [UnresolvedKind; 7] = [
        UnresolvedKind::Budget,
        UnresolvedKind::ApiTimeout,
        UnresolvedKind::RateLimited,
        UnresolvedKind::ApiError,
        UnresolvedKind::NoClient,
        UnresolvedKind::BadRepoConfig,
        UnresolvedKind::Unmappable,
    ];

    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            UnresolvedKind::Budget => "budget",
            UnresolvedKind::ApiTimeout => "api_timeout",
            UnresolvedKind::RateLimited => "rate_limited",
            UnresolvedKind::ApiError => "api_error",
            UnresolvedKind::NoClient => "no_client",
            UnresolvedKind::BadRepoConfig => "bad_repo_config",
            UnresolvedKind::Unmappable => "unmappable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

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
        self.unresolved[kind.index()]
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
        self.unresolved[kind.index()].fetch_add(1, Ordering::Relaxed);
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
