//! The engine's requests, outcomes, dispatches and errors.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::vocab::{LockKey, Priority, PullRef};

/// A request to take a set of locks for one pull, all or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcquireRequest {
    /// The locks wanted; all belong to the pull's repository.
    pub locks: Vec<LockKey>,
    /// The pull that will hold them.
    pub pull: PullRef,
    /// Who asked (for listings and events).
    pub user: String,
    /// Queue priority.
    pub priority: Priority,
    /// Hold timeout asked for (e.g. `repo_locks.timeout`); capped at `max-timeout`.
    pub hold_timeout: Option<Duration>,
    /// The request's identity (the VCS delivery id, else a body hash): enqueueing the same
    /// request twice keeps one waiter, and a request [`forgotten`](super::LockEngine::forget)
    /// is never queued.
    pub request_id: Option<String>,
}

/// Identifies a queued waiter (and the dispatch made from it): repository plus a per-repo sequence.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId {
    /// Repository whose keyspace holds the waiter.
    pub repo: String,
    /// Per-repository sequence number (grows with enqueue order).
    pub seq: u64,
}

impl fmt::Display for WaiterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.seq)
    }
}

impl std::str::FromStr for WaiterId {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EngineError::BadWaiterId(s.to_owned());
        let (repo, seq) = s.rsplit_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        if repo.is_empty() {
            return Err(bad());
        }
        Ok(WaiterId {
            repo: repo.to_owned(),
            seq,
        })
    }
}

/// A lock that was taken away from a holder whose hold timeout had passed.
///
/// The proxy must also delete Atlantis's lock for it (`DELETE /locks?id=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preempted {
    /// The lock.
    pub key: LockKey,
    /// The pull that held it.
    pub pull: PullRef,
}

/// A successful grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Strictly increasing per repository; the same token covers every lock of the grant.
    pub fencing_token: u64,
    /// The locks this grant took (the others of the request the pull held already).
    pub taken: Vec<LockKey>,
    /// When the locks become preemptible.
    pub expires_at: SystemTime,
    /// Locks taken from expired holders to make this grant.
    pub preempted: Vec<Preempted>,
}

/// One lock that blocked an acquire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// The contended lock.
    pub key: LockKey,
    /// Its holder; `None` when it is free but other waiters are queued for it.
    pub held_by: Option<PullRef>,
}

/// Result of [`LockEngine::acquire`](super::LockEngine::acquire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcquireOutcome {
    /// Every lock is now held by the pull.
    Granted(Grant),
    /// Nothing was taken; these locks are held or have waiters ahead.
    Held {
        /// The locks that blocked the request.
        by: Vec<Blocker>,
    },
}

/// Where a new waiter stands on one of its locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePosition {
    /// The lock.
    pub key: LockKey,
    /// 1 = next to be granted.
    pub position: u64,
    /// The lock's current holder, if any.
    pub held_by: Option<PullRef>,
}

/// A waiter that was queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// Its id (for removal, listings and the 202 body).
    pub waiter_id: WaiterId,
    /// Its place on each of its locks.
    pub positions: Vec<QueuePosition>,
}

/// Result of [`LockEngine::acquire_or_enqueue`](super::LockEngine::acquire_or_enqueue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Granted at once: forward the request now.
    Granted(Grant),
    /// Queued: answer 202; the request comes back later as a [`Dispatch`].
    Queued(Enqueued),
    /// The request was forgotten (handed to Atlantis on the legacy path earlier): not queued.
    Forgotten,
}

/// Why a waiter (or an expiry notice) is handed to the dispatcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DispatchReason {
    /// Its locks are now held for it: replay the request.
    Granted,
    /// `queue-timeout` passed: forward the request so Atlantis answers "locked by #N".
    TimedOut,
    /// Chosen to break a deadlock: forward so the user sees Atlantis's answer.
    DeadlockVictim,
    /// Removed by an operator, or because its repository left the enhanced path: hand it to
    /// Atlantis under the hand-off rule (DESIGN.md §10.2).
    Removed,
    /// Its pull was closed or unlocked: drop it (never replayed) and tell the pull so.
    Dropped,
    /// Automatic cleanup released expired locks; no request to replay, delete Atlantis's locks.
    Expired,
}

impl DispatchReason {
    /// Stable lowercase name (stored in Redis, used in events).
    pub fn as_str(self) -> &'static str {
        match self {
            DispatchReason::Granted => "granted",
            DispatchReason::TimedOut => "timeout",
            DispatchReason::DeadlockVictim => "deadlock",
            DispatchReason::Removed => "removed",
            DispatchReason::Dropped => "dropped",
            DispatchReason::Expired => "expired",
        }
    }

    /// Parses [`DispatchReason::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "granted" => DispatchReason::Granted,
            "timeout" => DispatchReason::TimedOut,
            "deadlock" => DispatchReason::DeadlockVictim,
            "removed" => DispatchReason::Removed,
            "dropped" => DispatchReason::Dropped,
            "expired" => DispatchReason::Expired,
            _ => return None,
        })
    }
}

/// Work for the proxy's dispatcher; confirm it with [`LockEngine::confirm`](super::LockEngine::confirm)
/// once handled, or another replica re-offers it after `dispatch_lease`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// The waiter (or notice) id.
    pub id: WaiterId,
    /// What happened.
    pub reason: DispatchReason,
    /// The waiter's pull (for `Expired`: the pull that lost the locks).
    pub pull: PullRef,
    /// Who asked.
    pub user: String,
    /// The waiter's priority.
    pub priority: Priority,
    /// The waiter's locks (for `Expired`: the released locks).
    pub locks: Vec<LockKey>,
    /// The original request bytes as given to `enqueue` (empty for `Expired`).
    pub payload: Vec<u8>,
    /// Set for `Granted`.
    pub fencing_token: Option<u64>,
    /// Locks taken from expired holders; delete them in Atlantis.
    pub preempted: Vec<Preempted>,
    /// When the waiter was queued.
    pub enqueued_at: SystemTime,
    /// How often the dispatch was offered before (0 the first time); a re-offered grant may
    /// already have reached Atlantis.
    pub attempt: u32,
}

/// What became of a grant handed back (see [`LockEngine::hand_back`](super::LockEngine::hand_back)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandBack {
    /// The waiter queues again in its old place.
    Requeued,
    /// Its pull was closed or unlocked meanwhile: the dispatch is finished, not queued again
    /// (tell the pull).
    Dropped,
    /// The dispatch is gone (confirmed or cancelled elsewhere).
    Gone,
}

/// What the dispatcher may do with a dispatch right before it sends anything to Atlantis,
/// decided atomically by [`LockEngine::admit`](super::LockEngine::admit) (DESIGN.md §10.2–3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Already confirmed or cancelled (by this or another replica): send nothing.
    Done,
    /// Send it as a grant: the pull holds every lock of the dispatch under this token.
    Grant {
        /// The grant's fencing token.
        fencing_token: u64,
        /// Locks taken from expired holders for it (delete them in Atlantis first).
        preempted: Vec<Preempted>,
    },
    /// Hand it to Atlantis, which will refuse `blocked` (held by other pulls in the engine); the
    /// dispatch's free locks were taken for its pull (`taken`, under `fencing_token`), since
    /// Atlantis will take them too.
    HandOff {
        /// Locks held by other pulls.
        blocked: Vec<Blocker>,
        /// Locks now held for the dispatch's pull.
        taken: Vec<LockKey>,
        /// The token of `taken`, when any were taken.
        fencing_token: Option<u64>,
    },
    /// The grant is gone because its pull released its locks meanwhile: the dispatch was
    /// cancelled; tell the pull, replay nothing.
    Dropped,
    /// Another pull holds one of its locks now (a repair adopted Atlantis's holder): the waiter
    /// is queued again, in its old place.
    Requeued,
    /// A hand-off that must wait: one of its locks is free, but another pull's hand-off is in
    /// flight for it (Atlantis might give it to that pull). Nothing changed; admit again later.
    Busy,
}

/// Another replica sharing the engine, as its lease shows it (see [`crate::engine::LockEngine::heartbeat`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerState {
    /// Its `instance-id`.
    pub id: String,
    /// Whether it last said it is in step with Atlantis (it forwards nothing past the engine).
    pub in_step: bool,
    /// Since its last refresh, on the backend's clock.
    pub age: std::time::Duration,
}

/// One held lock, for `/admin/locks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// The lock.
    pub key: LockKey,
    /// Holder.
    pub pull: PullRef,
    /// Who took it.
    pub user: String,
    /// Priority it was taken with.
    pub priority: Priority,
    /// When it was granted.
    pub acquired_at: SystemTime,
    /// When it becomes preemptible.
    pub expires_at: SystemTime,
    /// Fencing token of the grant.
    pub fencing_token: u64,
    /// The holder's grant of this lock is being replayed (not confirmed yet): the lock is not
    /// granted again, nor repaired, until that replay is confirmed or cancelled.
    pub dispatching: bool,
}

/// One queued waiter as listed under a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaiterInfo {
    /// Its id.
    pub id: WaiterId,
    /// Its pull.
    pub pull: PullRef,
    /// Who asked.
    pub user: String,
    /// Its priority.
    pub priority: Priority,
    /// When it was queued.
    pub enqueued_at: SystemTime,
    /// 1 = granted next on this lock.
    pub position: u64,
}

/// The waiters of one lock in grant order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueInfo {
    /// The lock.
    pub key: LockKey,
    /// Position 1 first.
    pub waiters: Vec<WaiterInfo>,
}

/// One detected deadlock and how it was broken.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadlockRecord {
    /// Unix milliseconds of the detection.
    pub detected_at_ms: i64,
    /// The repository (a cycle never leaves one repository).
    pub repo: String,
    /// Pull numbers around the cycle.
    pub cycle: Vec<i64>,
    /// The failed waiter.
    pub victim: String,
    /// Its pull number.
    pub victim_pull: i64,
    /// Its priority.
    pub victim_priority: Priority,
}

/// What `release_pull` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseSummary {
    /// Locks released.
    pub released: Vec<LockKey>,
    /// The pull's queued waiters, now dispatched as `Removed`.
    pub removed_waiters: Vec<WaiterId>,
}

/// Result of releasing one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// It was held and is now released.
    Released,
    /// Nobody held it.
    NotHeld,
    /// Another pull holds it (not released).
    HeldByOther(PullRef),
}

/// A cap on what queued requests may store, besides `max-queue-size` per lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueCap {
    /// `max-waiters-per-repo`.
    RepoWaiters,
    /// `max-queued-bytes-per-repo`.
    RepoBytes,
    /// `max-waiters-total`.
    TotalWaiters,
    /// `max-queued-bytes-total`.
    TotalBytes,
}

impl QueueCap {
    /// Every refusal reason of the `queue_refused` metric: `queue_full` (`max-queue-size`) and
    /// each cap.
    pub const ALL_REASONS: [&'static str; 5] = [
        "queue_full",
        "repo_waiters",
        "repo_bytes",
        "total_waiters",
        "total_bytes",
    ];

    /// The metric reason (and the Redis scripts' name) of the cap.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueCap::RepoWaiters => "repo_waiters",
            QueueCap::RepoBytes => "repo_bytes",
            QueueCap::TotalWaiters => "total_waiters",
            QueueCap::TotalBytes => "total_bytes",
        }
    }

    /// Parses [`QueueCap::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "repo_waiters" => QueueCap::RepoWaiters,
            "repo_bytes" => QueueCap::RepoBytes,
            "total_waiters" => QueueCap::TotalWaiters,
            "total_bytes" => QueueCap::TotalBytes,
            _ => return None,
        })
    }
}

impl fmt::Display for QueueCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueueCap::RepoWaiters => "max-waiters-per-repo",
            QueueCap::RepoBytes => "max-queued-bytes-per-repo",
            QueueCap::TotalWaiters => "max-waiters-total",
            QueueCap::TotalBytes => "max-queued-bytes-total",
        })
    }
}

impl EngineError {
    /// The `queue_refused` reason when the error is a refused queue place.
    pub fn queue_refusal(&self) -> Option<&'static str> {
        match self {
            EngineError::QueueFull { .. } => Some("queue_full"),
            EngineError::QueueCapped { cap, .. } => Some(cap.as_str()),
            _ => None,
        }
    }
}

/// Engine failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A lock queue is at `max-queue-size`.
    #[error("the queue for lock {key} is full ({max} waiters)")]
    QueueFull {
        /// The full lock.
        key: String,
        /// The configured limit.
        max: usize,
    },
    /// Queueing would pass a memory cap (`max-waiters-per-repo`, `max-queued-bytes-total`, …).
    #[error("queue refused: {cap} cap of {max} reached")]
    QueueCapped {
        /// Which cap.
        cap: QueueCap,
        /// Its configured value.
        max: u64,
    },
    /// The backend refused one repository's operation (a script error, a cross-slot key): the
    /// backend itself is healthy and other repositories are unaffected.
    #[error("the lock backend refused the operation: {0}")]
    Refused(String),
    /// The request named no locks.
    #[error("no locks requested")]
    NoLocks,
    /// A request's locks span more than one repository (or not the pull's).
    #[error("locks must all belong to the pull's repository {0}")]
    CrossRepo(String),
    /// A waiter id that does not parse.
    #[error("malformed waiter id {0:?}")]
    BadWaiterId(String),
    /// The backend could not be reached or answered with an error.
    #[error("lock backend unavailable: {0}")]
    BackendUnavailable(String),
    /// The backend did not answer within the configured timeout.
    #[error("lock backend timed out")]
    BackendTimeout,
    /// The backend answered something the engine did not expect.
    #[error("unexpected reply from the lock backend: {0}")]
    Protocol(String),
    /// The circuit breaker is open: the call was not made (the request takes the legacy path).
    #[error("circuit breaker open: engine backend skipped")]
    CircuitOpen,
}

impl AcquireRequest {
    /// Checks the request is non-empty and confined to the pull's repository.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.locks.is_empty() {
            return Err(EngineError::NoLocks);
        }
        if self.locks.iter().any(|k| k.repo != self.pull.repo) {
            return Err(EngineError::CrossRepo(self.pull.repo.clone()));
        }
        Ok(())
    }
}

impl AcquireRequest {
    /// The per-repository names of the requested locks, each once, in request order.
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(self.locks.len());
        for f in self.locks.iter().map(lock_field) {
            if !out.contains(&f) {
                out.push(f);
            }
        }
        out
    }
}

/// Unix milliseconds of a system time (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The system time of unix milliseconds.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Separates the parts of a lock inside one repository's keyspace (never in a path or name).
const FIELD_SEP: char = '\u{1f}';

/// The per-repository name of a lock: `path␟workspace␟project`.
pub fn lock_field(key: &LockKey) -> String {
    format!(
        "{}{FIELD_SEP}{}{FIELD_SEP}{}",
        key.path, key.workspace, key.project
    )
}

/// The lock named `field` inside `repo` (inverse of [`lock_field`]).
pub fn lock_key(repo: &str, field: &str) -> LockKey {
    let mut parts = field.splitn(3, FIELD_SEP);
    let path = parts.next().unwrap_or_default();
    let workspace = parts.next().unwrap_or_default();
    let project = parts.next().unwrap_or_default();
    LockKey::new(repo, path, workspace, project)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_fields_round_trip_and_repeat_locks_count_once() {
        let a = LockKey::new("o/r", "modules/net", "prod", "net/core");
        let req = AcquireRequest {
            locks: vec![
                a.clone(),
                a.clone(),
                LockKey::new("o/r", ".", "default", ""),
            ],
            pull: PullRef::new(crate::vocab::Vcs::Github, "o/r", 3),
            user: "u".into(),
            priority: Priority::Normal,
            hold_timeout: None,
            request_id: None,
        };
        let fields = req.fields();
        assert_eq!(fields.len(), 2);
        assert_eq!(lock_key("o/r", &fields[0]), a);
        assert_eq!(lock_key("o/r", &fields[1]).to_string(), "o/r/./default/");
    }

    #[test]
    fn waiter_ids_parse_back() {
        let id = WaiterId {
            repo: "group/sub/repo".into(),
            seq: 42,
        };
        assert_eq!(id.to_string().parse::<WaiterId>().expect("parse"), id);
        assert!("no-seq".parse::<WaiterId>().is_err());
    }
}
