//! What one request means for locks: the closed [`Operation`] enum every later step matches on.

use std::fmt;

pub(crate) use crate::vocab::{CommandKind, Vcs};
use crate::vocab::{LockKey, PullRef};

/// The lock meaning of one request (DESIGN.md §2 step 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Takes project locks for a pull (comment command, autoplan, `/api/plan|apply`).
    Acquire(Acquire),
    /// Releases every lock of a pull (PR closed/merged, `atlantis unlock`).
    ReleasePull {
        /// The pull whose locks go.
        pull: PullRef,
        /// What asked for the release.
        cause: ReleaseCause,
    },
    /// Releases one lock by key (`DELETE /locks?id=`).
    ReleaseKey {
        /// The key, decoded as Atlantis decodes it.
        key: LockKey,
    },
    /// Creates or deletes the global apply lock (`POST /apply/lock`, `DELETE /apply/unlock`).
    GlobalApply(GlobalApplyAction),
    /// `GET /api/locks`.
    ListLocks,
    /// Not lock traffic, or nothing Atlantis would act on: forward untouched.
    Passthrough {
        /// Why the request is not lock traffic.
        reason: PassthroughReason,
    },
}

impl Operation {
    /// Shorthand for a passthrough.
    pub fn passthrough(reason: PassthroughReason) -> Self {
        Operation::Passthrough { reason }
    }

    /// The repository this operation concerns, used for the sticky traffic split.
    pub fn repo(&self) -> Option<&str> {
        match self {
            Operation::Acquire(a) => Some(&a.pull.repo),
            Operation::ReleasePull { pull, .. } => Some(&pull.repo),
            Operation::ReleaseKey { key } => Some(&key.repo),
            _ => None,
        }
    }

    /// A short, stable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Acquire(_) => "acquire",
            Operation::ReleasePull { .. } => "release_pull",
            Operation::ReleaseKey { .. } => "release_key",
            Operation::GlobalApply(GlobalApplyAction::Lock) => "global_apply_lock",
            Operation::GlobalApply(GlobalApplyAction::Unlock) => "global_apply_unlock",
            Operation::ListLocks => "list_locks",
            Operation::Passthrough { .. } => "passthrough",
        }
    }
}

/// A request that takes project locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquire {
    /// The locks, explicit or still to be resolved against the repo's projects.
    pub locks: LockSet,
    /// The pull the locks are taken for (synthetic negative number for `/api/*` without `PR`).
    pub pull: PullRef,
    /// Who ran the command (commenter; PR event sender/author as Atlantis records it).
    pub user: String,
    /// Which command takes the locks.
    pub command: CommandKind,
    /// Which VCS the request came from.
    pub vcs: Vcs,
    /// PR labels found in the payload (priority hints); empty when the payload has none.
    pub labels: Vec<String>,
    /// What the resolver needs from the payload to find the pull's projects.
    pub meta: PullMeta,
}

/// The locks an [`Acquire`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockSet {
    /// Keys named by the command: `-d/-w` (unnamed project, as Atlantis builds it without an
    /// `atlantis.yaml`) or `/api/*` `Paths`. If the repo config declares a *named* project at
    /// that dir and workspace, the resolver must put the name in (the key includes it).
    Resolved(Vec<LockKey>),
    /// Targets only the repo's config and the pull's changed files can turn into keys.
    Unresolved {
        /// What the command asked for.
        targets: Vec<LockTarget>,
    },
}

/// One thing a command targets that is not yet a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockTarget {
    /// Every project the pull modifies (bare `plan`/`apply`, autoplan).
    ChangedProjects,
    /// A project named in `atlantis.yaml` (`-p name`, `/api/*` `Projects`).
    Project {
        /// The project name.
        name: String,
    },
    /// Every project whose dir matches a glob (`-d 'modules/*'`).
    DirGlob {
        /// The pattern as Atlantis keeps it (leading `./` and `/` trimmed).
        pattern: String,
        /// `-w`, when given.
        workspace: Option<String>,
    },
    /// An explicit key beside unresolved targets (an `/api/*` call mixing `Paths` and
    /// `Projects`); same meaning as a key in [`LockSet::Resolved`].
    Key(LockKey),
}

/// Pull details from the payload that the resolver and the lock record can use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullMeta {
    /// Head commit SHA (absent from GitHub/Gitea comment events and Azure comment events).
    pub head_sha: Option<String>,
    /// Web URL of the pull.
    pub url: Option<String>,
    /// Base (target) branch.
    pub base_branch: Option<String>,
    /// Head (source) branch.
    pub head_branch: Option<String>,
    /// Author of the pull, when the payload carries it.
    pub author: Option<String>,
    /// `Ref` of an `/api/*` call.
    pub api_ref: Option<String>,
    /// Whether the head repository's owner differs from the base's; `None` when the payload does
    /// not say (GitHub and Gitea comments: the resolver asks the pull API).
    pub fork: Option<bool>,
}

/// What asked for a whole pull's locks to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleaseCause {
    /// PR closed, merged, declined or deleted.
    PullClosed,
    /// `atlantis unlock` comment.
    UnlockComment,
}

/// The global apply lock action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlobalApplyAction {
    /// `POST /apply/lock`.
    Lock,
    /// `DELETE /apply/unlock`.
    Unlock,
}

/// Why a request is passed through untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PassthroughReason {
    /// A route that never touches locks.
    NotLockRoute,
    /// `POST /events` without any VCS header Atlantis recognises.
    UnknownVcs,
    /// A webhook of a VCS without a webhook secret (and not in `allow-unsigned-webhooks`):
    /// anyone could have sent it, so it never moves a lock in the engine.
    UngatedVcs,
    /// A webhook event type Atlantis ignores.
    IgnoredEvent,
    /// A PR event that is neither open/update nor close (labels, assignees, ...).
    IgnoredPullAction,
    /// Comment edited or deleted (GitHub `action != created`, Azure deleted comment).
    CommentNotCreated,
    /// Comment on a plain issue or a commit, not a pull.
    NotOnPull,
    /// Comment that is not an Atlantis command (Atlantis ignores it).
    NotACommand,
    /// Command Atlantis answers with an error, help or usage text (it replies itself).
    CommentRejected,
    /// Command that never takes locks (`version`, `cancel`).
    CommandTakesNoLock,
    /// Command that does not lock under the repo's `repo_locks.mode`.
    LockModeExempt,
    /// Draft PR event and draft PRs are not allowed (`--allow-draft-prs` off).
    DraftPull,
    /// Command on a closed pull (Atlantis refuses everything but `unlock`).
    PullClosed,
    /// Autoplan disabled by config or by label.
    AutoplanDisabled,
    /// Body or content type Atlantis could not parse; it answers with an error.
    Unparseable,
    /// Payload misses a field Atlantis requires; it answers with an error.
    MissingField,
    /// `/api/*` call while the proxy does not know Atlantis's `--api-secret`: it cannot tell a
    /// caller Atlantis accepts from one it refuses, so it gates none.
    ApiNotGated,
    /// `/api/*` call Atlantis would refuse (bad token, bad body, bad workspace, unknown `Type`).
    ApiRejected,
    /// Lock id Atlantis cannot decode or split.
    BadLockId,
    /// Repository outside Atlantis's `--repo-allowlist` (Atlantis answers 403, runs nothing).
    NotAllowlisted,
    /// Command or autoplan on a fork pull without `--allow-fork-prs` (Atlantis refuses it).
    ForkPull,
    /// Base branch outside the server-side repo config's `branch` (Atlantis ignores it).
    BranchNotMatched,
    /// `unlock` on a pull with `--disable-unlock-label` (Atlantis deletes nothing).
    UnlockLabel,
    /// Bare `apply` under `--disable-apply-all` (Atlantis refuses it).
    ApplyAllDisabled,
    /// Bitbucket Cloud update whose head commit Atlantis saw last for the pull.
    SameCommit,
    /// Drift detection or remediation of every project: only a checkout can tell which.
    DriftAllProjects,
}

impl PassthroughReason {
    /// Snake-case name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            PassthroughReason::NotLockRoute => "not_lock_route",
            PassthroughReason::UnknownVcs => "unknown_vcs",
            PassthroughReason::UngatedVcs => "ungated_vcs",
            PassthroughReason::IgnoredEvent => "ignored_event",
            PassthroughReason::IgnoredPullAction => "ignored_pull_action",
            PassthroughReason::CommentNotCreated => "comment_not_created",
            PassthroughReason::NotOnPull => "not_on_pull",
            PassthroughReason::NotACommand => "not_a_command",
            PassthroughReason::CommentRejected => "comment_rejected",
            PassthroughReason::CommandTakesNoLock => "command_takes_no_lock",
            PassthroughReason::LockModeExempt => "lock_mode_exempt",
            PassthroughReason::DraftPull => "draft_pull",
            PassthroughReason::PullClosed => "pull_closed",
            PassthroughReason::AutoplanDisabled => "autoplan_disabled",
            PassthroughReason::Unparseable => "unparseable",
            PassthroughReason::MissingField => "missing_field",
            PassthroughReason::ApiNotGated => "api_not_gated",
            PassthroughReason::ApiRejected => "api_rejected",
            PassthroughReason::BadLockId => "bad_lock_id",
            PassthroughReason::NotAllowlisted => "not_allowlisted",
            PassthroughReason::ForkPull => "fork_pull",
            PassthroughReason::BranchNotMatched => "branch_not_matched",
            PassthroughReason::UnlockLabel => "unlock_label",
            PassthroughReason::ApplyAllDisabled => "apply_all_disabled",
            PassthroughReason::SameCommit => "same_commit",
            PassthroughReason::DriftAllProjects => "drift_all_projects",
        }
    }
}

impl fmt::Display for PassthroughReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
