//! resolve: find the project locks of an `Acquire` that names no project (DESIGN.md §2 step 2).
//!
//! A bare `atlantis plan`/`apply` comment or an autoplan runs on the projects Atlantis derives
//! from the pull's changed files and the repo's `atlantis.yaml`. The [`Resolver`] works that out
//! the same way (see [`mapping`] for which of Atlantis's rules are matched and which are not):
//!
//! 1. project definitions come from the proxy's own [`ProjectTable`] when the repo is listed there,
//!    else from `atlantis.yaml` at the pull's head commit (VCS API);
//! 2. changed files come from the VCS API (GitHub pull files, GitLab MR diffs), paginated;
//! 3. [`mapping::map_projects`] applies Atlantis's rules; `repo_locks.mode` then decides which
//!    projects lock for this command.
//!
//! Everything fetched is cached per (VCS, repo, pull, head commit) in a bounded LRU. Any API
//! failure, rate limit, or running past `timeout` yields [`Resolution::Unresolved`]: the caller
//! forwards the request on the legacy path, exactly as Atlantis would behave without the proxy.

mod atlantis_yaml;
pub mod cache;
pub mod config;
pub mod mapping;
mod pattern;
mod pull_url;
pub mod server_repos;
mod stats;
pub mod yaml_guard;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

pub use atlantis_yaml::parse_atlantis_yaml;
pub use config::{
    AutoDiscoverMode, InvalidProjectConfig, LockSettings, ProjectTable, RawAutoDiscover,
    RawAutoplan, RawProject, RawRepo, RawRepoLocks, RepoConfig,
};
pub use mapping::{CommandKind, Filters};
pub use pattern::{PatternError, PatternList};
pub use server_repos::{RepoHosts, ServerLocks, ServerRepoConfig};
pub use stats::{ResolveStats, StatsSnapshot, UnresolvedKind};

use crate::vcs::{
    ChangedFile, GiteaClient, GithubClient, GitlabClient, PullInfo, Vcs, VcsClient, VcsError,
};
use crate::vocab::{LockKey, LockMode, Priority};
use mapping::{DirIndex, MapInput, MapOutcome, Selected, ServerDefaults};

/// Atlantis's default `--autoplan-file-list` (cmd/server.go, v0.47.1).
pub const DEFAULT_AUTOPLAN_FILE_LIST: &str = "**/*.tf,**/*.tf.json,**/*.tfvars,**/*.tfvars.json,**/*.tofu,**/*.tofu.json,**/terragrunt.hcl,**/.terraform.lock.hcl";

/// What the resolver needs besides the project table.
#[derive(Clone, Debug)]
pub struct ResolverSettings {
    /// `resolve-timeout`: the whole budget of one resolution, API calls included.
    pub timeout: Duration,
    /// Entries of the per-commit cache.
    pub cache_size: usize,
    /// GitHub client, when GitHub is configured.
    pub github: Option<Arc<GithubClient>>,
    /// GitLab client, when GitLab is configured.
    pub gitlab: Option<Arc<GitlabClient>>,
    /// Gitea client (`gitea-token`): it only tells whether a pull comes from a fork.
    pub gitea: Option<Arc<GiteaClient>>,
    /// Repo config file name (Atlantis's `repo_config_file`, default `atlantis.yaml`).
    pub repo_config_file: String,
    /// Atlantis's `--autodiscover-mode`.
    pub autodiscover_mode: AutoDiscoverMode,
    /// Atlantis's `--autoplan-file-list`, compiled.
    pub autoplan_file_list: PatternList,
    /// Lock mode when neither project nor repo sets one (Atlantis: `on_plan`).
    pub default_lock_mode: LockMode,
    /// Most directory listings fetched for one resolution (modules/ parents, deleted dirs).
    pub max_dir_listings: usize,
    /// Atlantis's server-side repo config (`repo_locks` per repo ID, `allowed_overrides`).
    pub server_repos: Arc<ServerRepoConfig>,
    /// Hosts of Atlantis's repo IDs.
    pub hosts: RepoHosts,
    /// Atlantis's `--allow-fork-prs`: without it a comment on a fork pull locks nothing.
    pub allow_fork_prs: bool,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            cache_size: 1024,
            github: None,
            gitlab: None,
            gitea: None,
            repo_config_file: "atlantis.yaml".to_string(),
            autodiscover_mode: AutoDiscoverMode::Auto,
            autoplan_file_list: PatternList::new(DEFAULT_AUTOPLAN_FILE_LIST.split(','))
                .expect("Atlantis's default autoplan file list compiles"),
            default_lock_mode: LockMode::OnPlan,
            max_dir_listings: 16,
            server_repos: Arc::default(),
            hosts: RepoHosts::default(),
            allow_fork_prs: false,
        }
    }
}

impl ResolverSettings {
    /// Sets Atlantis's `--autoplan-file-list` (comma-separated patterns, as Atlantis takes it).
    pub fn set_autoplan_file_list(&mut self, list: &str) -> Result<(), PatternError> {
        self.autoplan_file_list = PatternList::new(list.split(','))?;
        Ok(())
    }
}

/// One request to resolve: which pull, which command, which flags.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolveRequest {
    /// Provider the repo lives on.
    pub vcs: Vcs,
    /// Full repository name (`owner/repo`, `group/sub/repo`).
    pub repo: String,
    /// Pull / merge request number.
    pub pull: i64,
    /// Head commit, when the webhook carries it (autoplan, GitLab notes); fetched otherwise.
    pub head_sha: Option<String>,
    /// Base branch, when known (only needed for `branch:` project filters).
    pub base_branch: Option<String>,
    /// The command.
    pub command: CommandKind,
    /// `-d`/`-w`/`-p` flags of the comment, if any.
    pub filters: Filters,
}

/// A project lock the command will take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedProject {
    /// Atlantis's lock key.
    pub key: LockKey,
    /// `repo_locks.priority`, if configured.
    pub priority: Option<Priority>,
    /// `repo_locks.timeout`, if configured.
    pub timeout: Option<Duration>,
    /// The effective `repo_locks.mode`.
    pub mode: LockMode,
}

/// What the resolver decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The command takes these locks (at least one).
    Locks(Vec<ResolvedProject>),
    /// Resolved, but nothing locks: no project is affected, or none locks under its mode.
    NoLocks,
    /// Could not decide; forward on the legacy path.
    Unresolved {
        /// Counter label.
        kind: UnresolvedKind,
        /// Human-readable reason for logs (no secrets).
        reason: String,
    },
}

/// Resolves unresolved `Acquire`s into lock keys; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Resolver {
    settings: ResolverSettings,
    server: ServerDefaults,
    table: ProjectTable,
    cache: Mutex<cache::Lru<CacheKey, Arc<View>>>,
    stats: ResolveStats,
    /// Bounds the `atlantis.yaml` parses running at once.
    parsers: Arc<tokio::sync::Semaphore>,
}

type CacheKey = (Vcs, String, i64, String);

/// A parsed `atlantis.yaml`: `None` when the commit has none.
type ParsedConfig = Result<Option<Arc<RepoConfig>>, InvalidProjectConfig>;

/// `atlantis.yaml` files parsed at once, on blocking threads (the machine may have two cores).
pub const PARSE_PERMITS: usize = 2;

/// What we know about one pull at one head commit; filled lazily, shared by concurrent callers.
#[derive(Debug, Default)]
struct View {
    pull: OnceCell<PullInfo>,
    files: OnceCell<Arc<Vec<ChangedFile>>>,
    repo_cfg: OnceCell<ParsedConfig>,
    dirs: Mutex<DirIndex>,
}

/// What the fork lookup found.
enum Lookup {
    /// Not asked (forks allowed, the payload said, or no client for the VCS).
    NotAsked,
    /// A fork: Atlantis refuses it.
    Fork,
    /// Not a fork; the pull as read.
    Pull(PullInfo),
}

struct Unresolved {
    kind: UnresolvedKind,
    reason: String,
}

impl From<VcsError> for Unresolved {
    fn from(e: VcsError) -> Self {
        let kind = match &e {
            VcsError::Timeout => UnresolvedKind::ApiTimeout,
            VcsError::RateLimited { .. } => UnresolvedKind::RateLimited,
            _ => UnresolvedKind::ApiError,
        };
        Self {
            kind,
            reason: e.to_string(),
        }
    }
}

fn unresolved(kind: UnresolvedKind, reason: impl Into<String>) -> Unresolved {
    Unresolved {
        kind,
        reason: reason.into(),
    }
}

impl Resolver {
    /// Builds a resolver from its settings and the proxy's project table.
    pub fn new(settings: ResolverSettings, table: ProjectTable) -> Self {
        let server = ServerDefaults {
            autodiscover: settings.autodiscover_mode,
            autoplan_file_list: settings.autoplan_file_list.clone(),
            lock_mode: settings.default_lock_mode,
        };
        Self {
            cache: Mutex::new(cache::Lru::new(settings.cache_size)),
            settings,
            server,
            table,
            stats: ResolveStats::default(),
            parsers: Arc::new(tokio::sync::Semaphore::new(PARSE_PERMITS)),
        }
    }

    /// Outcome counters.
    pub fn stats(&self) -> &ResolveStats {
        &self.stats
    }

    /// Decides the locks of `req` within the configured budget; never fails, never blocks longer.
    pub async fn resolve(&self, req: &ResolveRequest) -> Resolution {
        let outcome = match tokio::time::timeout(self.settings.timeout, self.run(req)).await {
            Ok(r) => r,
            Err(_) => Err(unresolved(
                UnresolvedKind::Budget,
                format!("resolution took longer than {:?}", self.settings.timeout),
            )),
        };
        match outcome {
            Err(u) => {
                self.stats.unresolved(u.kind);
                tracing::info!(repo = %req.repo, pull = req.pull, kind = u.kind.as_str(), reason = %u.reason,
                    "could not resolve the projects of a command; leaving it to Atlantis");
                Resolution::Unresolved {
                    kind: u.kind,
                    reason: u.reason,
                }
            }
            Ok(selected) => {
                let locks: Vec<ResolvedProject> = selected
                    .into_iter()
                    .filter_map(|s| {
                        let mode = s.locks.mode.unwrap_or(self.settings.default_lock_mode);
                        crate::vocab::command_locks(mode, req.command).then_some(ResolvedProject {
                            key: s.key,
                            priority: s.locks.priority,
                            timeout: s.locks.timeout,
                            mode,
                        })
                    })
                    .collect();
                tracing::debug!(repo = %req.repo, pull = req.pull, locks = locks.len(), "resolved");
                if locks.is_empty() {
                    self.stats.no_locks();
                    Resolution::NoLocks
                } else {
                    self.stats.locks();
                    Resolution::Locks(locks)
                }
            }
        }
    }

    fn client(&self, vcs: Vcs) -> Result<VcsClient, Unresolved> {
        let c = match vcs {
            Vcs::Github => self.settings.github.clone().map(VcsClient::Github),
            Vcs::Gitlab => self.settings.gitlab.clone().map(VcsClient::Gitlab),
            _ => None,
        };
        c.ok_or_else(|| {
            unresolved(
                UnresolvedKind::NoClient,
                format!("no {} API client configured", vcs.as_str()),
            )
        })
    }

    fn view(&self, req: &ResolveRequest, sha: &str) -> Arc<View> {
        let key = (req.vcs, req.repo.clone(), req.pull, sha.to_string());
        let Ok(mut cache) = self.cache.lock() else {
            return Arc::new(View::default());
        };
        if let Some(v) = cache.get(&key) {
            self.stats.cache(true);
            return v;
        }
        self.stats.cache(false);
        let v = Arc::new(View::default());
        cache.insert(key, v.clone());
        v
    }

    /// For a comment on a VCS the resolver cannot read repositories of (Gitea): `Some(NoLocks)`
    /// when Atlantis refuses the pull as a fork, `Some(Unresolved)` when the pull API did not
    /// answer within the budget (legacy path, counted), `None` when the command goes on.
    pub async fn fork_check(&self, vcs: Vcs, repo: &str, pull: i64) -> Option<Resolution> {
        let outcome = match tokio::time::timeout(
            self.settings.timeout,
            self.fork_lookup(vcs, repo, pull, true),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(unresolved(
                UnresolvedKind::Budget,
                format!(
                    "the fork lookup took longer than {:?}",
                    self.settings.timeout
                ),
            )),
        };
        match outcome {
            Ok(Lookup::Fork) => {
                self.stats.no_locks();
                Some(Resolution::NoLocks)
            }
            Ok(_) => None,
            Err(u) => {
                self.stats.unresolved(u.kind);
                tracing::info!(%repo, pull, kind = u.kind.as_str(), reason = %u.reason,
                    "could not tell whether the pull is a fork; leaving it to Atlantis");
                Some(Resolution::Unresolved {
                    kind: u.kind,
                    reason: u.reason,
                })
            }
        }
    }

    /// Asks the pull API whether a comment's pull is a fork (GitHub, Gitea), as Atlantis does
    /// when the payload does not say and `--allow-fork-prs` is off.
    async fn fork_lookup(
        &self,
        vcs: Vcs,
        repo: &str,
        pull: i64,
        comment: bool,
    ) -> Result<Lookup, Unresolved> {
        if self.settings.allow_fork_prs || !comment {
            return Ok(Lookup::NotAsked);
        }
        let p = match (vcs, &self.settings.github, &self.settings.gitea) {
            (Vcs::Github, Some(_), _) => self.client(vcs)?.pull(repo, pull).await?,
            (Vcs::Gitea, _, Some(g)) => g.pull(repo, pull).await?,
            _ => return Ok(Lookup::NotAsked),
        };
        if p.fork == Some(true) {
            tracing::info!(%repo, pull,
                "a fork pull without --allow-fork-prs: Atlantis refuses its commands, nothing locks");
            return Ok(Lookup::Fork);
        }
        // Only a GitHub pull is reused (its head commit and base branch): no other Gitea call.
        Ok(if vcs == Vcs::Github {
            Lookup::Pull(p)
        } else {
            Lookup::NotAsked
        })
    }

    /// Whether an API client for `vcs` is configured (so a repo's `atlantis.yaml` can be read).
    pub fn has_client(&self, vcs: Vcs) -> bool {
        self.client(vcs).is_ok()
    }

    async fn run(&self, req: &ResolveRequest) -> Result<Vec<Selected>, Unresolved> {
        let table = self.table.get(&req.repo);
        let server = self
            .settings
            .server_repos
            .locks_for(&self.settings.hosts.repo_id(req.vcs, &req.repo));
        // The proxy's table states the repo's config itself: its modes stand as written.
        let table_server = ServerLocks {
            given: false,
            ..server.clone()
        };
        // A GitHub or Gitea comment does not say whether the pull comes from a fork: Atlantis
        // fetches the pull and refuses forks without --allow-fork-prs, so the resolver asks the
        // same API.
        let fetched = match self
            .fork_lookup(req.vcs, &req.repo, req.pull, req.head_sha.is_none())
            .await?
        {
            Lookup::Fork => return Ok(Vec::new()),
            Lookup::Pull(p) => Some(p),
            Lookup::NotAsked => None,
        };
        let has_branch_filter = |c: &RepoConfig| c.projects.iter().any(|p| p.branch.is_some());
        if let Some(cfg) = table {
            // Targeted flags name the projects: the table alone answers.
            let base = req
                .base_branch
                .clone()
                .or_else(|| fetched.as_ref().map(|p| p.base_branch.clone()));
            if req.filters.is_targeted() && (base.is_some() || !has_branch_filter(cfg)) {
                self.stats.answered_by_table();
                return self.map(
                    req,
                    Some(cfg),
                    &[],
                    base.as_deref(),
                    &DirIndex::new(),
                    &table_server,
                );
            }
        }
        let client = self.client(req.vcs)?;
        let mut base = req.base_branch.clone();
        let sha = match (&req.head_sha, fetched) {
            (Some(s), _) => s.clone(),
            (None, Some(p)) => {
                base = base.or(Some(p.base_branch));
                p.head_sha
            }
            (None, None) => {
                // A comment webhook carries no head commit; it moves, so this is never cached.
                let p = client.pull(&req.repo, req.pull).await?;
                base = base.or(Some(p.base_branch));
                p.head_sha
            }
        };
        let view = self.view(req, &sha);
        let yaml_cfg = match table {
            Some(_) => None,
            None => {
                let file = server
                    .repo_config_file
                    .as_ref()
                    .unwrap_or(&self.settings.repo_config_file);
                let parsed = view
                    .repo_cfg
                    .get_or_try_init(|| async {
                        let bytes = client.file(&req.repo, file, &sha).await?;
                        Ok::<_, VcsError>(match bytes {
                            None => Ok(None),
                            Some(b) => self.parse_repo_config(b, view.clone()).await,
                        })
                    })
                    .await?;
                match parsed {
                    Ok(c) => c.clone(),
                    Err(e) => return Err(unresolved(UnresolvedKind::BadRepoConfig, e.to_string())),
                }
            }
        };
        let cfg = table.or(yaml_cfg.as_deref());
        let server_locks = if table.is_some() {
            &table_server
        } else {
            &server
        };
        if base.is_none() && cfg.is_some_and(has_branch_filter) {
            let p = view
                .pull
                .get_or_try_init(|| client.pull(&req.repo, req.pull))
                .await?;
            base = Some(p.base_branch.clone());
        }
        let files = if req.filters.is_targeted() {
            Arc::new(Vec::new())
        } else {
            view.files
                .get_or_try_init(|| async {
                    client
                        .changed_files(&req.repo, req.pull)
                        .await
                        .map(Arc::new)
                })
                .await?
                .clone()
        };
        // Each round may ask for directory listings (modules/ parents, deleted dirs); the second
        // round has them all, a third is a safety net.
        for _ in 0..3 {
            let dirs = view.dirs.lock().map(|d| d.clone()).unwrap_or_default();
            match self.map_once(req, cfg, &files, base.as_deref(), &dirs, server_locks) {
                MapOutcome::Projects(p) => return Ok(p),
                MapOutcome::Unresolvable(r) => {
                    return Err(unresolved(UnresolvedKind::Unmappable, r));
                }
                MapOutcome::NeedDirs(need) => {
                    if need.len() > self.settings.max_dir_listings {
                        return Err(unresolved(
                            UnresolvedKind::Unmappable,
                            format!("{} directory listings needed", need.len()),
                        ));
                    }
                    let listings = futures_util::future::try_join_all(
                        need.iter().map(|d| client.list_dir(&req.repo, d, &sha)),
                    )
                    .await?;
                    if let Ok(mut idx) = view.dirs.lock() {
                        idx.extend(need.into_iter().zip(listings));
                    }
                }
            }
        }
        Err(unresolved(
            UnresolvedKind::Unmappable,
            "directory listings did not settle",
        ))
    }

    /// Parses a pull's `atlantis.yaml` on a blocking thread, at most [`PARSE_PERMITS`] at once.
    ///
    /// The file is bounded before parsing (see [`yaml_guard`]); the caller's budget still applies
    /// to the wait, and a parse that outlives it stores its result in the commit's view, so the
    /// next webhook for the same commit does not parse again.
    async fn parse_repo_config(&self, bytes: Vec<u8>, view: Arc<View>) -> ParsedConfig {
        let Ok(permit) = self.parsers.clone().acquire_owned().await else {
            return Err(InvalidProjectConfig {
                at: "atlantis.yaml".into(),
                problem: "the parser is shut down".into(),
            });
        };
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let parsed = parse_atlantis_yaml(&bytes).map(|c| Some(Arc::new(c)));
            // Already set when the caller is still waiting: then it stores the same value.
            let _ = view.repo_cfg.set(parsed.clone());
            parsed
        });
        task.await.unwrap_or_else(|e| {
            Err(InvalidProjectConfig {
                at: "atlantis.yaml".into(),
                problem: format!("parsing did not finish: {e}"),
            })
        })
    }

    fn map(
        &self,
        req: &ResolveRequest,
        cfg: Option<&RepoConfig>,
        files: &[ChangedFile],
        base: Option<&str>,
        dirs: &DirIndex,
        server_locks: &ServerLocks,
    ) -> Result<Vec<Selected>, Unresolved> {
        match self.map_once(req, cfg, files, base, dirs, server_locks) {
            MapOutcome::Projects(p) => Ok(p),
            MapOutcome::Unresolvable(r) => Err(unresolved(UnresolvedKind::Unmappable, r)),
            MapOutcome::NeedDirs(d) => Err(unresolved(
                UnresolvedKind::Unmappable,
                format!("needs listings of {d:?}"),
            )),
        }
    }

    fn map_once(
        &self,
        req: &ResolveRequest,
        cfg: Option<&RepoConfig>,
        files: &[ChangedFile],
        base: Option<&str>,
        dirs: &DirIndex,
        server_locks: &ServerLocks,
    ) -> MapOutcome {
        mapping::map_projects(&MapInput {
            repo: &req.repo,
            config: cfg,
            files,
            command: req.command,
            filters: &req.filters,
            base_branch: base,
            server: &self.server,
            dirs,
            server_locks: Some(server_locks),
        })
    }
}
