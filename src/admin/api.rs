//! The admin API's bodies, one `Serialize + Deserialize` struct per answer: the handlers build
//! them, the CLI client and the tests read them, so all three agree on every field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::route::shadow::{EnhancedDecision, LegacyOutcome};
use crate::vocab::{DiffKind, Priority};

/// `{"error": "..."}`: every failed admin call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

/// `GET|PUT /admin/split`, `POST /admin/rollback`: the routing state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitView {
    /// Percent of repositories on the enhanced path.
    pub traffic_split: u8,
    /// Shadow mode: legacy decides, the engine only compares.
    pub monitor_only: bool,
    /// `false` sends everything legacy.
    pub enabled: bool,
    /// The circuit breaker: `closed`, `open` or `half_open`.
    pub breaker: String,
    /// `redis` or `memory`.
    pub backend: String,
    /// When the state last changed (RFC 3339).
    pub updated_at: String,
}

/// Body of `PUT /admin/split`: either field may be omitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitUpdate {
    /// 0..=100 (wider on the wire, so an out-of-range value gets a clear 400).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_split: Option<i64>,
    /// Shadow mode on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor_only: Option<bool>,
}

/// `GET /admin/locks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockList {
    /// By key.
    pub locks: Vec<LockView>,
}

/// One engine lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockView {
    /// Atlantis's lock key `{repo}/{path}/{workspace}/{project}`.
    pub key: String,
    /// Repository.
    pub repo: String,
    /// Directory.
    pub path: String,
    /// Workspace.
    pub workspace: String,
    /// Project name (empty for unnamed projects).
    pub project: String,
    /// Holding pull.
    pub pull: i64,
    /// Its VCS.
    pub vcs: String,
    /// Who took it.
    pub user: String,
    /// `critical`, `high`, `normal`, `low`.
    pub priority: String,
    /// RFC 3339.
    pub acquired_at: String,
    /// When the hold becomes preemptible (RFC 3339).
    pub expires_at: String,
    /// The grant's fencing token.
    pub fencing_token: u64,
}

/// `GET /admin/queues`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueList {
    /// By key.
    pub queues: Vec<QueueView>,
}

/// The waiters of one lock, in grant order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueView {
    /// The lock key.
    pub key: String,
    /// Position 1 first.
    pub waiters: Vec<WaiterView>,
}

/// One queued request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiterView {
    /// For `DELETE /admin/queues/{id}`.
    pub id: String,
    /// Its pull.
    pub pull: i64,
    /// Its VCS.
    pub vcs: String,
    /// Who commented.
    pub user: String,
    /// The priority it waits with.
    pub priority: String,
    /// RFC 3339.
    pub enqueued_at: String,
    /// 1 = granted next.
    pub position: u64,
}

/// `DELETE /admin/locks/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// The key.
    pub released: String,
    /// Whether the engine held it.
    pub engine: bool,
    /// Whether Atlantis held it.
    pub atlantis: bool,
}

/// `DELETE /admin/queues/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// The waiter.
    pub removed: String,
}

/// `GET /admin/deadlocks`, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlockList {
    /// The deadlocks broken.
    pub deadlocks: Vec<DeadlockView>,
}

/// One deadlock the engine broke.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlockView {
    /// RFC 3339.
    pub detected_at: String,
    /// Repository.
    pub repo: String,
    /// Pull numbers around the cycle.
    pub cycle: Vec<i64>,
    /// The waiter failed to break it.
    pub victim: String,
    /// Its pull.
    pub victim_pull: i64,
    /// Its priority.
    pub victim_priority: Priority,
}

/// `GET /admin/shadow/diffs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowDiffs {
    /// Comparisons so far.
    pub compared: u64,
    /// Unexpected disagreements so far.
    pub mismatched: u64,
    /// Evaluations dropped because the shadow was saturated.
    pub dropped: u64,
    /// Comparisons by kind (kinds seen so far only).
    pub by_kind: BTreeMap<String, u64>,
    /// Recent comparisons that did not simply match, newest first.
    pub recent: Vec<DiffView>,
}

/// One comparison that did not simply match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffView {
    /// RFC 3339.
    pub at: String,
    /// Its kind.
    pub kind: DiffKind,
    /// `acquire` or `release`.
    pub operation: String,
    /// Repository.
    pub repo: String,
    /// Pull, when the operation names one.
    pub pull: Option<i64>,
    /// The lock keys involved.
    pub locks: Vec<String>,
    /// What Atlantis did.
    pub legacy: LegacyOutcome,
    /// What the engine would have done.
    pub enhanced: EnhancedDecision,
    /// The request's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `GET /admin/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// The proxy's version.
    pub version: String,
    /// Atlantis's address.
    pub upstream: String,
    /// `redis` or `memory`.
    pub backend: String,
    /// The global apply lock as last seen through the proxy.
    pub global_apply_locked: bool,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// VCSs whose unsigned webhooks are gated (anyone reaching the port can move their locks).
    pub unsigned_webhooks_gated: Vec<String>,
}

/// `GET /readyz` (200 or 503).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
    /// Each check: `ok` or what is wrong.
    pub checks: BTreeMap<String, String>,
    /// The circuit breaker (informational).
    pub breaker: String,
}
