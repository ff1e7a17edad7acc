//! The words of the request path's decisions: which path a request took and why the enhanced
//! path handed one to Atlantis undecided. Their `as_str()` values are span attributes and metric
//! labels that dashboards and alert rules match on, so they never change.

/// Which path a repository's lock traffic takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnginePath {
    /// Atlantis decides alone, as without the proxy.
    Legacy,
    /// The enhanced engine gates the request (queue, replay).
    Enhanced,
}

impl EnginePath {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EnginePath::Legacy => "legacy",
            EnginePath::Enhanced => "enhanced",
        }
    }
}

/// Why a request stayed unresolved: the resolver could not tell which locks it takes.
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
}

/// Why an enhanced-routed lock request went to Atlantis without the engine's grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegacyReason {
    /// The circuit breaker is open: the backend is known to be down.
    BreakerOpen,
    /// After an outage the engine waits for a reconciler pass before it grants again.
    EngineResyncing,
    /// Another replica is out of step and may be forwarding past the engine.
    ReplicaOutOfStep,
    /// The request takes no lock (its projects lock nothing under their mode).
    NoLocks,
    /// The request was handed to Atlantis earlier (an engine timeout): it is not queued again.
    Forgotten,
    /// The pull holds the lock in the engine only through a grant still on its way, and
    /// Atlantis lists the lock for another pull: Atlantis answers "locked" itself.
    HeldInAtlantis,
    /// The resolver could not tell which locks the request takes.
    Unresolved(UnresolvedKind),
}

impl LegacyReason {
    /// Every reason, for exporting and tests.
    pub const ALL: [LegacyReason; 13] = [
        LegacyReason::BreakerOpen,
        LegacyReason::EngineResyncing,
        LegacyReason::ReplicaOutOfStep,
        LegacyReason::NoLocks,
        LegacyReason::Forgotten,
        LegacyReason::HeldInAtlantis,
        LegacyReason::Unresolved(UnresolvedKind::Budget),
        LegacyReason::Unresolved(UnresolvedKind::ApiTimeout),
        LegacyReason::Unresolved(UnresolvedKind::RateLimited),
        LegacyReason::Unresolved(UnresolvedKind::ApiError),
        LegacyReason::Unresolved(UnresolvedKind::NoClient),
        LegacyReason::Unresolved(UnresolvedKind::BadRepoConfig),
        LegacyReason::Unresolved(UnresolvedKind::Unmappable),
    ];

    /// The `decision` span attribute (an unresolved request names its kind).
    pub fn as_str(self) -> &'static str {
        match self {
            LegacyReason::BreakerOpen => "breaker_open",
            LegacyReason::EngineResyncing => "engine_resyncing",
            LegacyReason::ReplicaOutOfStep => "replica_out_of_step",
            LegacyReason::NoLocks => "no_locks",
            LegacyReason::Forgotten => "forgotten",
            LegacyReason::HeldInAtlantis => "held_in_atlantis",
            LegacyReason::Unresolved(kind) => kind.as_str(),
        }
    }
}

impl From<UnresolvedKind> for LegacyReason {
    fn from(kind: UnresolvedKind) -> Self {
        LegacyReason::Unresolved(kind)
    }
}

/// How the two decisions relate; the label of the shadow metrics and of `/admin/shadow/diffs`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// Both decided the same.
    Match,
    /// Expected: Atlantis refused, the engine would have queued behind the same holder.
    LegacyDeniedEnhancedWouldQueue,
    /// Atlantis granted, the engine would have queued (it knows a holder Atlantis does not).
    LegacyGrantedEnhancedWouldQueue,
    /// Atlantis refused, the engine would have granted (Atlantis holds a lock the engine does not know).
    LegacyDeniedEnhancedWouldGrant,
    /// Both refused, naming different holders.
    HolderMismatch,
    /// One released, the other had nothing to release.
    ReleaseMismatch,
    /// The outcomes are of different operations (an acquire against a release): a bug upstream.
    OperationMismatch,
    /// Legacy's outcome could not be read: counted, not judged.
    Inconclusive,
}

impl DiffKind {
    /// Every kind, in a fixed order (index = `self as usize`).
    pub const ALL: [DiffKind; 8] = [
        DiffKind::Match,
        DiffKind::LegacyDeniedEnhancedWouldQueue,
        DiffKind::LegacyGrantedEnhancedWouldQueue,
        DiffKind::LegacyDeniedEnhancedWouldGrant,
        DiffKind::HolderMismatch,
        DiffKind::ReleaseMismatch,
        DiffKind::OperationMismatch,
        DiffKind::Inconclusive,
    ];

    /// The metric label / JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Match => "match",
            DiffKind::LegacyDeniedEnhancedWouldQueue => "legacy_denied_enhanced_would_queue",
            DiffKind::LegacyGrantedEnhancedWouldQueue => "legacy_granted_enhanced_would_queue",
            DiffKind::LegacyDeniedEnhancedWouldGrant => "legacy_denied_enhanced_would_grant",
            DiffKind::HolderMismatch => "holder_mismatch",
            DiffKind::ReleaseMismatch => "release_mismatch",
            DiffKind::OperationMismatch => "operation_mismatch",
            DiffKind::Inconclusive => "inconclusive",
        }
    }

    /// True for a disagreement nobody planned for (what `mismatched` counts and alerts watch).
    pub fn is_mismatch(self) -> bool {
        !matches!(
            self,
            DiffKind::Match | DiffKind::LegacyDeniedEnhancedWouldQueue | DiffKind::Inconclusive
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_ones_dashboards_match() {
        let labels: Vec<&str> = LegacyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "breaker_open",
                "engine_resyncing",
                "replica_out_of_step",
                "no_locks",
                "forgotten",
                "held_in_atlantis",
                "budget",
                "api_timeout",
                "rate_limited",
                "api_error",
                "no_client",
                "bad_repo_config",
                "unmappable",
            ]
        );
        assert_eq!(EnginePath::Legacy.as_str(), "legacy");
        assert_eq!(EnginePath::Enhanced.as_str(), "enhanced");
    }

    #[test]
    fn every_unresolved_kind_is_a_legacy_reason() {
        for kind in UnresolvedKind::ALL {
            let reason = LegacyReason::from(kind);
            assert!(LegacyReason::ALL.contains(&reason), "{kind:?}");
            assert_eq!(reason.as_str(), kind.as_str());
        }
    }
}
