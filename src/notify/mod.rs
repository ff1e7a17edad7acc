//! notify: tells the user on the pull request what happened to their queued command.
//!
//! Atlantis always answers on the pull request; a queued command only gets a `202` in the
//! webhook delivery log, which nobody reads. The [`Notifier`] posts one comment per queued
//! command and **edits it in place** as its queue position changes, then as it times out, is
//! picked as a deadlock victim, is removed by an operator or (optionally) is granted.
//!
//! - [`Notifier::notify`] never blocks and never fails: events go onto a bounded queue served by
//!   a few worker tasks (events of one waiter always land on the same worker, so they stay in
//!   order); a full queue drops the event and counts it.
//! - Each comment ends with a hidden marker (`<!-- atlantis-lock-proxy:waiter=<id> -->`). The
//!   comment id is remembered in a small bounded map; on a miss (a restart, an evicted entry) the
//!   pull's comments are listed and searched for the marker before a new comment is posted.
//! - A timeout, deadlock or removal **edits the same comment** into the explanation, so each
//!   queued command leaves exactly one proxy comment on the pull; Atlantis's own "locked" answer
//!   that follows is the new comment that notifies the user.
//! - GitHub (issue comments) and GitLab (merge request notes) are covered. Bitbucket Cloud and
//!   Server, Azure DevOps and Gitea are not yet: their events are counted as `unsupported` and
//!   logged once.
//! - VCS errors and rate limits are retried by the VCS client with backoff; outcomes are counted
//!   in `atlantis_lock_proxy_notifications_total{vcs,outcome}` and [`Notifier::stats`].

mod messages;
mod worker;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::classify::{LockKey, Priority, PullRef};
use crate::engine::{QueuePosition, WaiterId};
use crate::telemetry::Metrics;
use crate::vcs::{
    ApiConfig, GithubAppAuth, GithubClient, GitlabClient, Secret, Vcs, VcsClient, VcsError,
};

pub use messages::{link, marker};

/// Which queued command (waiter) on which pull an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The engine's waiter id (`WaiterId`'s `Display`, e.g. `org/repo:17`): one comment per id.
    pub waiter_id: String,
    /// Where the pull lives.
    pub vcs: Vcs,
    /// Full repository name (`owner/repo`, `group/sub/repo`).
    pub repo: String,
    /// Pull / merge request number.
    pub pull: i64,
}

impl Target {
    /// The target of an engine waiter on a pull.
    pub fn new(waiter: &WaiterId, vcs: Vcs, pull: &PullRef) -> Self {
        Self {
            waiter_id: waiter.to_string(),
            vcs,
            repo: pull.repo.clone(),
            pull: pull.number,
        }
    }
}

/// Where a waiter stands on one of its locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedLock {
    /// The project lock (rendered as Atlantis does: project, dir, workspace).
    pub key: LockKey,
    /// 1 = next to be granted (the same number `/admin/queues` shows).
    pub position: u64,
    /// The pull holding the lock now, if any.
    pub held_by_pull: Option<i64>,
}

impl From<&QueuePosition> for QueuedLock {
    fn from(p: &QueuePosition) -> Self {
        Self {
            key: p.key.clone(),
            position: p.position,
            held_by_pull: p.held_by.as_ref().map(|h| h.number),
        }
    }
}

/// Something that happened to a queued command that the pull's author should hear about.
///
/// `command` is the command as typed after the executable name (`plan`, `apply -p web`,
/// `state rm ADDR`); an autoplan is `plan`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyEvent {
    /// The command was queued: posts the comment.
    Queued {
        /// Which waiter and pull.
        target: Target,
        /// Who commented.
        user: String,
        /// The waiter's priority.
        priority: Priority,
        /// The command.
        command: String,
        /// Its place on each contended lock.
        locks: Vec<QueuedLock>,
    },
    /// Its positions changed: edits the same comment.
    Moved {
        /// Which waiter and pull.
        target: Target,
        /// Who commented.
        user: String,
        /// The waiter's priority.
        priority: Priority,
        /// The command.
        command: String,
        /// The new positions.
        locks: Vec<QueuedLock>,
    },
    /// The queue timeout passed: the request goes to Atlantis, which will answer "locked".
    TimedOut {
        /// Which waiter and pull.
        target: Target,
        /// The command.
        command: String,
        /// How long it waited.
        waited: Duration,
        /// The locks it was waiting for.
        locks: Vec<QueuedLock>,
    },
    /// Picked to break a deadlock: the request goes to Atlantis, which will answer "locked".
    DeadlockVictim {
        /// Which waiter and pull.
        target: Target,
        /// The command.
        command: String,
        /// The pulls in the cycle.
        cycle: Vec<i64>,
    },
    /// It left the queue without running (an operator, `atlantis unlock`, the pull closed).
    Removed {
        /// Which waiter and pull.
        target: Target,
        /// The command.
        command: String,
        /// Who or what removed it.
        reason: RemoveReason,
    },
    /// It was granted and is being replayed; posted only when `notify_on_grant` is set.
    Granted {
        /// Which waiter and pull.
        target: Target,
        /// The command.
        command: String,
    },
}

/// Why a queued command left the queue without running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveReason {
    /// An operator removed it (`/admin`).
    Operator,
    /// The pull's author left the queue: `atlantis unlock`, or the pull was closed or merged.
    LeftQueue,
}

impl NotifyEvent {
    /// The waiter and pull this event is about.
    pub fn target(&self) -> &Target {
        match self {
            NotifyEvent::Queued { target, .. }
            | NotifyEvent::Moved { target, .. }
            | NotifyEvent::TimedOut { target, .. }
            | NotifyEvent::DeadlockVictim { target, .. }
            | NotifyEvent::Removed { target, .. }
            | NotifyEvent::Granted { target, .. } => target,
        }
    }

    /// True when no later event for this waiter is expected (its comment id can be forgotten).
    fn is_final(&self) -> bool {
        !matches!(self, NotifyEvent::Queued { .. } | NotifyEvent::Moved { .. })
    }
}

/// How the notifier is set up.
#[derive(Clone, Debug)]
pub struct NotifierSettings {
    /// GitHub API access; `None` when neither a GitHub token nor a GitHub App is configured.
    pub github: Option<ApiConfig>,
    /// When set, GitHub calls carry this GitHub App's installation token (`github`'s token is
    /// ignored).
    pub github_app: Option<Arc<GithubAppAuth>>,
    /// GitLab API access; `None` when no GitLab token is configured.
    pub gitlab: Option<ApiConfig>,
    /// Also comment when a queued command is granted (off: Atlantis's own comment follows at once).
    pub notify_on_grant: bool,
    /// Atlantis's `--executable-name`, used in the commands the comments suggest.
    pub executable_name: String,
    /// Events waiting to be sent, in total; more are dropped (and counted).
    pub queue_capacity: usize,
    /// Worker tasks sending comments concurrently (one waiter's events always use the same one).
    pub workers: usize,
    /// Comment ids remembered per worker before the oldest is forgotten.
    pub cache_capacity: usize,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            github: None,
            github_app: None,
            gitlab: None,
            notify_on_grant: false,
            executable_name: "atlantis".into(),
            queue_capacity: 1024,
            workers: 4,
            cache_capacity: 1024,
        }
    }
}

impl NotifierSettings {
    /// From `atlantis.vcs-tokens.*` and `atlantis.executable-name`; a VCS without a token (or,
    /// for GitHub, without the GitHub App token source `github_app`) is off.
    pub fn from_config(
        cfg: &crate::config::Config,
        github_app: Option<Arc<GithubAppAuth>>,
    ) -> Self {
        let t = &cfg.atlantis.vcs_tokens;
        let url = |u: &Option<http::Uri>, default: &str| {
            u.as_ref()
                .map_or_else(|| default.to_string(), |u| u.to_string())
        };
        let token = |s: &Option<Secret>| s.clone().filter(|s| !s.is_empty());
        let github_url = url(&t.github_api_url, "https://api.github.com");
        let (github, github_app) = match (token(&t.github), github_app) {
            (Some(tok), _) => (
                Some(ApiConfig {
                    token_file: t.github_token_file.clone(),
                    ..Self::api_config(github_url, tok)
                }),
                None,
            ),
            (None, Some(app)) => (Some(Self::patient(github_url, None)), Some(app)),
            (None, None) => (None, None),
        };
        Self {
            github,
            github_app,
            gitlab: token(&t.gitlab).map(|tok| {
                Self::api_config(url(&t.gitlab_api_url, "https://gitlab.com/api/v4"), tok)
            }),
            executable_name: cfg.atlantis.executable_name.clone(),
            notify_on_grant: cfg.atlantis.notify_on_grant,
            ..Self::default()
        }
    }

    /// Client settings for background comments: more patient than the webhook path's defaults,
    /// since nobody waits on them.
    pub fn api_config(base_url: impl Into<String>, token: Secret) -> ApiConfig {
        Self::patient(base_url, Some(token))
    }

    fn patient(base_url: impl Into<String>, token: Option<Secret>) -> ApiConfig {
        let mut c = ApiConfig::new(base_url, token);
        c.request_timeout = Duration::from_secs(10);
        c.max_retries = 4;
        c.backoff = Duration::from_millis(500);
        c.max_retry_wait = Duration::from_secs(60);
        c
    }
}

/// Why the notifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A VCS client could not be built from its settings.
    #[error("cannot build the {vcs} client for notifications: {source}")]
    Client {
        /// Which VCS.
        vcs: &'static str,
        /// What was wrong.
        source: VcsError,
    },
}

/// Counts of what the notifier did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NotifyStats {
    /// Events accepted and not yet finished (queued or being sent).
    pub pending: u64,
    /// Comments posted.
    pub created: u64,
    /// Comments edited in place.
    pub edited: u64,
    /// Events that failed after the client's retries.
    pub failed: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Events for a VCS the notifier cannot comment on (unsupported, or no token configured).
    pub unsupported: u64,
    /// Grant events skipped because `notify_on_grant` is off.
    pub skipped: u64,
    /// Times a worker waited for the VCS's rate limit before trying an event again.
    pub rate_limited: u64,
}

#[derive(Default)]
struct Counters {
    pending: AtomicU64,
    created: AtomicU64,
    edited: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    unsupported: AtomicU64,
    skipped: AtomicU64,
    rate_limited: AtomicU64,
}

/// What the workers share with the handle.
struct Shared {
    github: Option<VcsClient>,
    gitlab: Option<VcsClient>,
    executable_name: String,
    metrics: Option<Arc<Metrics>>,
    counters: Counters,
    /// VCSs already logged as not covered, so the log says it once.
    warned: Mutex<HashSet<Vcs>>,
}

impl Shared {
    fn client(&self, vcs: Vcs) -> Option<&VcsClient> {
        match vcs {
            Vcs::Github => self.github.as_ref(),
            Vcs::Gitlab => self.gitlab.as_ref(),
            _ => None,
        }
    }

    fn count(&self, vcs: Vcs, outcome: &'static str) {
        if let Some(m) = &self.metrics {
            m.notification(vcs.as_str(), outcome);
        }
    }
}

/// Posts and edits pull-request comments about queued commands, in the background.
///
/// Build it inside the Tokio runtime (it spawns its workers); dropping it lets the workers
/// finish what is queued and stop.
pub struct Notifier {
    senders: Vec<mpsc::Sender<NotifyEvent>>,
    shared: Arc<Shared>,
    notify_on_grant: bool,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("workers", &self.senders.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Builds the clients and starts the workers.
    pub fn new(
        settings: NotifierSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, NotifyError> {
        let app = settings.github_app;
        let github = settings
            .github
            .map(|cfg| match app {
                Some(app) => GithubClient::with_app(cfg, app),
                None => GithubClient::new(cfg),
            })
            .transpose()
            .map_err(|source| NotifyError::Client {
                vcs: "github",
                source,
            })?
            .map(|c| VcsClient::Github(Arc::new(c)));
        let gitlab = settings
            .gitlab
            .map(GitlabClient::new)
            .transpose()
            .map_err(|source| NotifyError::Client {
                vcs: "gitlab",
                source,
            })?
            .map(|c| VcsClient::Gitlab(Arc::new(c)));
        let shared = Arc::new(Shared {
            github,
            gitlab,
            executable_name: settings.executable_name,
            metrics,
            counters: Counters::default(),
            warned: Mutex::new(HashSet::new()),
        });
        let workers = settings.workers.max(1);
        let per_worker = (settings.queue_capacity / workers).max(1);
        let senders = (0..workers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(per_worker);
                tokio::spawn(worker::run(rx, shared.clone(), settings.cache_capacity));
                tx
            })
            .collect();
        Ok(Self {
            senders,
            shared,
            notify_on_grant: settings.notify_on_grant,
        })
    }

    /// Hands an event to the background workers; returns at once and never fails the caller.
    pub fn notify(&self, event: NotifyEvent) {
        let c = &self.shared.counters;
        let vcs = event.target().vcs;
        if matches!(event, NotifyEvent::Granted { .. }) && !self.notify_on_grant {
            c.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.shared.client(vcs).is_none() {
            c.unsupported.fetch_add(1, Ordering::Relaxed);
            let configurable = matches!(vcs, Vcs::Github | Vcs::Gitlab);
            self.shared.count(
                vcs,
                if configurable {
                    "unconfigured"
                } else {
                    "unsupported"
                },
            );
            let first = self
                .shared
                .warned
                .lock()
                .map(|mut w| w.insert(vcs))
                .unwrap_or(false);
            if first {
                if configurable {
                    tracing::warn!(
                        vcs = vcs.as_str(),
                        "no API token for this VCS: queued commands are not announced on its pull requests"
                    );
                } else {
                    tracing::warn!(
                        vcs = vcs.as_str(),
                        "the notifier does not comment on this VCS yet: queued commands are not announced on its pull requests"
                    );
                }
            }
            return;
        }
        let shard = self.shard(&event.target().waiter_id);
        c.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.senders[shard].try_send(event) {
            c.pending.fetch_sub(1, Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.count(vcs, "dropped");
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "worker stopped",
            };
            tracing::warn!(vcs = vcs.as_str(), why, "pull-request notification dropped");
        }
    }

    /// What the notifier has done so far.
    pub fn stats(&self) -> NotifyStats {
        let c = &self.shared.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NotifyStats {
            pending: r(&c.pending),
            created: r(&c.created),
            edited: r(&c.edited),
            failed: r(&c.failed),
            dropped: r(&c.dropped),
            unsupported: r(&c.unsupported),
            skipped: r(&c.skipped),
            rate_limited: r(&c.rate_limited),
        }
    }

    /// Waits until every accepted event has been handled, or `limit` passes; true when idle.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.shared.counters.pending.load(Ordering::Relaxed) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn shard(&self, waiter_id: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        waiter_id.hash(&mut h);
        (h.finish() % self.senders.len() as u64) as usize
    }
}
