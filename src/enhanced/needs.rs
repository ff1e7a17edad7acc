//! Which locks one request takes: the command's own keys, the proxy's project table, and the
//! VCS API (the repo's `atlantis.yaml`, the pull's changed files), with the priority and hold
//! timeout they are taken with. Shared by the gate and the shadow runner.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::LabelPattern;
use crate::classify::{Acquire, LockKey, LockSet, LockTarget, Priority};
use crate::resolve::{Filters, ProjectTable, Resolution, ResolveRequest, Resolver, UnresolvedKind};
use crate::telemetry::metrics::labels::ResolveOutcome;
use crate::telemetry::{Metrics, spans};

/// The locks a request needs, with the priority and hold timeout they are taken with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gated {
    /// Atlantis lock keys.
    pub locks: Vec<LockKey>,
    /// Queue priority.
    pub priority: Priority,
    /// Hold timeout from the project's `repo_locks.timeout`.
    pub hold_timeout: Option<Duration>,
}

pub(crate) enum Needed {
    Locks(Gated),
    Nothing,
    Unresolved(UnresolvedKind),
}

/// Finds the locks of a request.
pub struct Needs {
    resolver: Arc<Resolver>,
    table: ProjectTable,
    labels: LabelPattern,
    metrics: Arc<Metrics>,
}

impl Needs {
    /// Resolves with `resolver` and the project `table`; a PR label matching `labels` sets the
    /// priority when the project does not; outcomes are counted in `metrics`.
    pub fn new(
        resolver: Arc<Resolver>,
        table: ProjectTable,
        labels: LabelPattern,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            resolver,
            table,
            labels,
            metrics,
        }
    }

    /// The locks an `Acquire` needs (shadow mode evaluates them without gating).
    pub async fn gated(&self, acq: &Acquire) -> Option<Gated> {
        match self.needed(acq).await {
            Needed::Locks(g) => Some(g),
            Needed::Nothing | Needed::Unresolved(_) => None,
        }
    }

    /// Which locks the request takes, per the command, the project table and the VCS API.
    pub(crate) async fn needed(&self, acq: &Acquire) -> Needed {
        let label_priority = self.labels.priority(&acq.labels);
        let mut projects = Vec::new();
        let mut keys = Vec::new();
        match &acq.locks {
            // `-d/-w` and `/api` Paths: the repo's config (the proxy's table or its atlantis.yaml)
            // names the project there and sets its mode (`FindProjectsByDirWorkspace`); only
            // when the proxy has no way to read it do the unnamed keys stand.
            LockSet::Resolved(given) => {
                // Without a client to read the repo, the fork rule is still asked where it
                // can be (a Gitea comment: its pull API), once per request.
                if acq.meta.fork.is_none()
                    && given.iter().any(|k| self.table.get(&k.repo).is_none())
                    && !self.resolver.has_client(acq.vcs)
                {
                    match self
                        .resolver
                        .fork_check(acq.vcs, &acq.pull.repo, acq.pull.number)
                        .instrument(spans::resolve(&acq.pull.repo, acq.pull.number))
                        .await
                    {
                        None => {}
                        Some(Resolution::Unresolved { kind, reason }) => {
                            tracing::info!(%reason, pull = %acq.pull, "fork unknown: legacy path");
                            self.metrics.resolve(ResolveOutcome::Unresolved(kind));
                            return Needed::Unresolved(kind);
                        }
                        Some(_) => {
                            self.metrics.resolve(ResolveOutcome::NoLocks);
                            return Needed::Nothing;
                        }
                    }
                }
                for key in given {
                    if self.table.get(&key.repo).is_none() && !self.resolver.has_client(acq.vcs) {
                        keys.push(key.clone());
                        continue;
                    }
                    let filters = Filters {
                        dir: Some(key.path.clone()),
                        workspace: Some(key.workspace.clone()),
                        project: None,
                    };
                    match self.resolve(acq, filters).await {
                        Resolution::Locks(found) => projects.extend(found),
                        Resolution::NoLocks => {}
                        Resolution::Unresolved { kind, reason } => {
                            tracing::info!(%reason, pull = %acq.pull, "project config unread: legacy path");
                            self.metrics.resolve(ResolveOutcome::Unresolved(kind));
                            return Needed::Unresolved(kind);
                        }
                    }
                }
            }
            LockSet::Unresolved { targets } => {
                for target in targets {
                    let filters = match target {
                        LockTarget::Key(k) => {
                            keys.push(k.clone());
                            continue;
                        }
                        LockTarget::ChangedProjects => Filters::default(),
                        LockTarget::Project { name } => Filters {
                            project: Some(name.clone()),
                            ..Filters::default()
                        },
                        LockTarget::DirGlob { pattern, workspace } => Filters {
                            dir: Some(pattern.clone()),
                            workspace: workspace.clone(),
                            project: None,
                        },
                    };
                    match self.resolve(acq, filters).await {
                        Resolution::Locks(found) => projects.extend(found),
                        Resolution::NoLocks => {}
                        Resolution::Unresolved { kind, reason } => {
                            tracing::info!(%reason, pull = %acq.pull, "projects unresolved: legacy path");
                            self.metrics.resolve(ResolveOutcome::Unresolved(kind));
                            return Needed::Unresolved(kind);
                        }
                    }
                }
            }
        }
        let project_priority = projects.iter().filter_map(|p| p.priority).max();
        let hold_timeout = projects.iter().filter_map(|p| p.timeout).max();
        keys.extend(projects.into_iter().map(|p| p.key));
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            self.metrics.resolve(ResolveOutcome::NoLocks);
            return Needed::Nothing;
        }
        self.metrics.resolve(ResolveOutcome::Resolved);
        Needed::Locks(Gated {
            locks: keys,
            priority: project_priority.or(label_priority).unwrap_or_default(),
            hold_timeout,
        })
    }

    /// Asks the resolver for the projects of `acq` that match `filters`.
    async fn resolve(&self, acq: &Acquire, filters: Filters) -> Resolution {
        let req = ResolveRequest {
            vcs: acq.vcs,
            repo: acq.pull.repo.clone(),
            pull: acq.pull.number,
            head_sha: acq.meta.head_sha.clone(),
            base_branch: acq.meta.base_branch.clone(),
            command: acq.command,
            filters,
        };
        self.resolver
            .resolve(&req)
            .instrument(spans::resolve(&acq.pull.repo, acq.pull.number))
            .await
    }
}
