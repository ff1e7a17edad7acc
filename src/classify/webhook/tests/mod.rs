//! Every VCS and event kind, with payloads shaped like the real ones.

mod github;
mod others;

use crate::classify::{
    Acquire, ClassifyConfig, ClassifyError, LockSet, LockTarget, Operation, PassthroughReason as R,
    PullRef, ReleaseCause,
};

pub(super) const GH: &[(&str, &str)] = &[
    ("x-github-event", "issue_comment"),
    ("content-type", "application/json"),
];
pub(super) const GH_PR: &[(&str, &str)] = &[
    ("x-github-event", "pull_request"),
    ("content-type", "application/json"),
];

pub(super) fn cfg() -> ClassifyConfig {
    ClassifyConfig {
        vcs_bot_users: vec!["atlantis-bot".into()],
        ..ClassifyConfig::accepting_unsigned()
    }
}

pub(super) fn acquire(op: Result<Operation, ClassifyError>) -> Acquire {
    match op {
        Ok(Operation::Acquire(a)) => a,
        other => panic!("expected Acquire, got {other:?}"),
    }
}

pub(super) fn pass(op: Result<Operation, ClassifyError>) -> R {
    match op {
        Ok(Operation::Passthrough { reason }) => reason,
        other => panic!("expected Passthrough, got {other:?}"),
    }
}

pub(super) fn release(op: Result<Operation, ClassifyError>) -> (PullRef, ReleaseCause) {
    match op {
        Ok(Operation::ReleasePull { pull, cause }) => (pull, cause),
        other => panic!("expected ReleasePull, got {other:?}"),
    }
}

pub(super) fn changed() -> LockSet {
    LockSet::Unresolved {
        targets: vec![LockTarget::ChangedProjects],
    }
}
