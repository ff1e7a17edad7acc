//! route: which path one repository's lock traffic takes (DESIGN.md §2 step 3).
//!
//! The runtime state (split, shadow, master switch) is read lock-free on every request from an
//! `ArcSwap`; the admin API and the backend's change feed replace it whole.
//!
//! - [`store`]: the state persisted in the backend and followed by every replica;
//! - [`breaker`]: the circuit breaker that sends enhanced traffic down the legacy path while the
//!   engine backend is sick;
//! - [`shadow`]: legacy-vs-engine decision diffing in shadow mode.

pub mod breaker;
pub mod shadow;
mod split;
pub mod store;

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use breaker::{BackendFailure, BreakerError, BreakerSettings, CircuitBreaker, Guarded};
pub use split::{EnginePath, SplitRule, bucket};
pub use store::{ControlError, ControlStore};

/// The operator-controlled routing state, as `/admin/split` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitState {
    /// Percentage of repositories on the enhanced path.
    pub traffic_split: u8,
    /// Shadow mode: legacy decides, the engine only evaluates.
    pub monitor_only: bool,
    /// Master switch (`enhanced-locking.enabled`).
    pub enabled: bool,
    /// When this state was set (RFC 3339).
    pub updated_at: String,
}

impl SplitState {
    /// A state stamped now.
    pub fn new(traffic_split: u8, monitor_only: bool, enabled: bool) -> Self {
        Self {
            traffic_split,
            monitor_only,
            enabled,
            updated_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

/// Where one request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The path that decides.
    pub path: EnginePath,
    /// Whether the engine also evaluates it in the shadow keyspace.
    pub shadow: bool,
}

/// The split rule plus the live state.
pub struct Router {
    rule: SplitRule,
    state: ArcSwap<SplitState>,
    // Wakes whoever must act on a change (e.g. forward an enhanced repo's waiters to Atlantis
    // when it moves back to legacy); requests read `state`, never this.
    changes: watch::Sender<Arc<SplitState>>,
}

impl Router {
    /// A router starting from `initial`.
    pub fn new(rule: SplitRule, initial: SplitState) -> Self {
        let initial = Arc::new(initial);
        Self {
            rule,
            state: ArcSwap::new(initial.clone()),
            changes: watch::Sender::new(initial),
        }
    }

    /// The current state (cheap: an `Arc` clone).
    pub fn state(&self) -> Arc<SplitState> {
        self.state.load_full()
    }

    /// Replaces the state; the very next request sees it.
    pub fn set(&self, state: SplitState) {
        let state = Arc::new(state);
        self.state.store(state.clone());
        self.changes.send_replace(state);
    }

    /// Every state change from now on (the receiver starts at the current state).
    pub fn changes(&self) -> watch::Receiver<Arc<SplitState>> {
        self.changes.subscribe()
    }

    /// Routes one repository's request.
    pub fn route(&self, repo: &str) -> Route {
        self.route_under(repo, &self.state.load())
    }

    /// Where `repo` would go under `st`: compare two states to find repositories that moved.
    pub fn route_under(&self, repo: &str, st: &SplitState) -> Route {
        if !st.enabled {
            return Route {
                path: EnginePath::Legacy,
                shadow: false,
            };
        }
        if st.monitor_only {
            return Route {
                path: EnginePath::Legacy,
                shadow: true,
            };
        }
        Route {
            path: self.rule.path_for(repo, st.traffic_split),
            shadow: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_and_master_switch_keep_everything_legacy() {
        let r = Router::new(SplitRule::default(), SplitState::new(100, false, true));
        assert_eq!(r.route("acme/infra").path, EnginePath::Enhanced);
        r.set(SplitState::new(100, true, true));
        assert_eq!(
            r.route("acme/infra"),
            Route {
                path: EnginePath::Legacy,
                shadow: true
            }
        );
        r.set(SplitState::new(100, false, false));
        assert_eq!(r.route("acme/infra").path, EnginePath::Legacy);
    }

    #[test]
    fn watchers_see_a_rollback_and_can_tell_which_repos_moved_back() {
        let r = Router::new(SplitRule::default(), SplitState::new(100, false, true));
        let mut rx = r.changes();
        let before = rx.borrow_and_update().clone();
        r.set(SplitState::new(0, false, true));
        assert!(rx.has_changed().unwrap());
        let after = rx.borrow_and_update().clone();
        assert_eq!(
            r.route_under("acme/infra", &before).path,
            EnginePath::Enhanced
        );
        assert_eq!(r.route_under("acme/infra", &after).path, EnginePath::Legacy);
    }
}
