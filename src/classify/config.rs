//! What classification must know about the Atlantis behind the proxy (its flags and repo config).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::allowlist::RepoAllowlist;
use crate::config::PerVcsUser;
use crate::resolve::{RepoHosts, ServerRepoConfig};
use crate::vocab::{CommandKind, LockMode, Vcs};
pub(crate) use crate::vocab::{CommentCommandName, command_locks};

pub use crate::config::{Secret, WebhookSecrets};

/// The secret when set and non-empty: Atlantis skips validation for an empty secret.
pub(crate) fn configured(s: Option<&Secret>) -> Option<&Secret> {
    s.filter(|s| !s.expose().is_empty())
}

/// Lock modes per repository, project and dir (`repo_locks.mode`), default `on_plan`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockModeTable {
    /// Mode for repos not in the table (Atlantis's server-side default).
    pub default: LockMode,
    /// Per-repo overrides keyed by full repo name.
    pub repos: HashMap<String, RepoLockModes>,
}

/// One repository's lock modes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoLockModes {
    /// Mode for the repo's projects without their own.
    pub default: Option<LockMode>,
    /// Per project name.
    pub projects: HashMap<String, LockMode>,
    /// Per repo-relative dir (cleaned, `.` for the root), for unnamed projects.
    pub dirs: HashMap<String, LockMode>,
}

impl LockModeTable {
    /// The `repo_locks.mode` settings of the proxy's project table.
    pub fn from_projects(table: &crate::resolve::ProjectTable) -> Self {
        let repos = table
            .iter()
            .map(|(name, repo)| {
                let mut modes = RepoLockModes {
                    default: repo.locks.mode,
                    ..RepoLockModes::default()
                };
                for p in &repo.projects {
                    let Some(mode) = p.locks.mode.or(repo.locks.mode) else {
                        continue;
                    };
                    match &p.name {
                        Some(n) => {
                            modes.projects.insert(n.clone(), mode);
                        }
                        None => {
                            modes.dirs.insert(p.dir.clone(), mode);
                        }
                    }
                }
                (name.to_string(), modes)
            })
            .collect();
        Self {
            default: LockMode::default(),
            repos,
        }
    }

    /// The mode of one project, found by name first, then by dir.
    pub fn mode_for(&self, repo: &str, project: Option<&str>, dir: Option<&str>) -> LockMode {
        let Some(r) = self.repos.get(repo) else {
            return self.default;
        };
        project
            .and_then(|p| r.projects.get(p))
            .or_else(|| dir.and_then(|d| r.dirs.get(d)))
            .copied()
            .or(r.default)
            .unwrap_or(self.default)
    }

    /// Whether `command` could lock any project of `repo`; used when targets are unresolved
    /// (the resolver then applies [`LockModeTable::mode_for`] per project).
    pub fn any_locks(&self, repo: &str, command: CommandKind) -> bool {
        let Some(r) = self.repos.get(repo) else {
            return command_locks(self.default, command);
        };
        std::iter::once(r.default.unwrap_or(self.default))
            .chain(r.projects.values().copied())
            .chain(r.dirs.values().copied())
            .any(|m| command_locks(m, command))
    }

    /// Repositories the table knows, to split ambiguous lock keys.
    pub fn known_repos(&self) -> impl Iterator<Item = &str> {
        self.repos.keys().map(String::as_str)
    }
}

/// Everything classification needs; built once from the proxy's validated config.
#[derive(Clone, Debug)]
pub struct ClassifyConfig {
    /// `--executable-name` (default `atlantis`).
    pub executable_name: String,
    /// VCS bot users (`--gh-user`, `--gitlab-user`, ...): `@user` invokes Atlantis.
    pub vcs_bot_users: Vec<String>,
    /// Webhook secrets as Atlantis has them.
    pub webhook_secrets: WebhookSecrets,
    /// VCSs gated without a secret (`atlantis.allow-unsigned-webhooks`); empty by default, so an
    /// unsigned VCS's webhooks pass through with no effect on the engine.
    pub allow_unsigned_webhooks: Vec<Vcs>,
    /// `--api-secret`: when set, `/api/*` calls with another token are not lock traffic.
    pub api_secret: Option<Secret>,
    /// `--allow-draft-prs`.
    pub allow_draft_prs: bool,
    /// `--disable-autoplan`.
    pub disable_autoplan: bool,
    /// `--disable-autoplan-label`.
    pub disable_autoplan_label: Option<String>,
    /// `--allow-commands`.
    pub allow_commands: Vec<CommentCommandName>,
    /// `--blocked-extra-args` (default `-chdir`, `--chdir`, `-plugin-dir`, `--plugin-dir`).
    pub blocked_extra_args: Vec<String>,
    /// `repo_locks.mode` per repo/project/dir.
    pub lock_modes: LockModeTable,
    /// `--allow-fork-prs`.
    pub allow_fork_prs: bool,
    /// `--repo-allowlist` (None: every repository).
    pub repo_allowlist: Option<RepoAllowlist>,
    /// `--disable-apply-all`.
    pub disable_apply_all: bool,
    /// `--disable-unlock-label`.
    pub disable_unlock_label: Option<String>,
    /// `--gitlab-hostname` as host and base path; GitLab clone URLs must match it exactly.
    pub gitlab_hostname: Option<(String, String)>,
    /// Atlantis's bot user per VCS (`--gh-user`, ...); `vcs_bot_users` applies to all VCSs.
    pub bot_user: PerVcsUser,
    /// Hosts of Atlantis's repo IDs.
    pub hosts: RepoHosts,
    /// The server-side repo config (`repo_locks` per repo ID, `--disable-repo-locking`).
    pub server_repos: Arc<ServerRepoConfig>,
    /// Bitbucket Cloud head commits last seen per pull (Atlantis's `lastBitbucketSha`).
    pub bitbucket_shas: Arc<ShaCache>,
}

/// Atlantis's in-memory LRU (300 pulls) of the last Bitbucket Cloud head commit per pull URL: a
/// `pullrequest:updated` with the same commit is not an autoplan.
#[derive(Debug, Default)]
pub struct ShaCache {
    entries: Mutex<std::collections::VecDeque<(String, String)>>,
}

impl ShaCache {
    const CAPACITY: usize = 300;

    /// Records `sha` for `pull`; returns the commit seen before.
    pub fn replace(&self, pull: &str, sha: &str) -> Option<String> {
        let mut e = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = e
            .iter()
            .position(|(p, _)| p == pull)
            .and_then(|i| e.remove(i));
        e.push_back((pull.to_owned(), sha.to_owned()));
        if e.len() > Self::CAPACITY {
            e.pop_front();
        }
        before.map(|(_, s)| s)
    }

    /// The commit last seen for `pull`.
    pub fn get(&self, pull: &str) -> Option<String> {
        let e = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        e.iter().find(|(p, _)| p == pull).map(|(_, s)| s.clone())
    }
}

impl ClassifyConfig {
    /// Builds the classifier's view of Atlantis from the proxy's `atlantis:` section.
    pub fn from_config(a: &crate::config::AtlantisConfig, lock_modes: LockModeTable) -> Self {
        let d = Self::default();
        let mut server_repos = a.server_repos.clone();
        server_repos.locking_disabled = a.disable_repo_locking;
        Self {
            allow_fork_prs: a.allow_fork_prs,
            repo_allowlist: a.repo_allowlist.as_deref().map(RepoAllowlist::new),
            disable_apply_all: a.disable_apply_all,
            disable_unlock_label: a.disable_unlock_label.clone(),
            gitlab_hostname: crate::config::split_gitlab_hostname(&a.gitlab_hostname),
            bot_user: a.bot_user.clone(),
            hosts: a.hosts.clone(),
            server_repos: Arc::new(server_repos),
            bitbucket_shas: Arc::default(),
            executable_name: a.executable_name.clone(),
            vcs_bot_users: a.vcs_bot_users.clone(),
            webhook_secrets: a.webhook_secrets.clone(),
            allow_unsigned_webhooks: a.allow_unsigned_webhooks.clone(),
            api_secret: a.api_secret.clone(),
            allow_draft_prs: a.allow_draft_prs,
            disable_autoplan: a.disable_autoplan,
            disable_autoplan_label: a.disable_autoplan_label.clone(),
            allow_commands: a.allow_commands.clone().unwrap_or(d.allow_commands),
            blocked_extra_args: d.blocked_extra_args,
            lock_modes,
        }
    }
}

impl ClassifyConfig {
    /// Defaults, with every VCS gated although none has a secret: for tests, benches and
    /// examples (in production, only `atlantis.allow-unsigned-webhooks` does this).
    pub fn accepting_unsigned() -> Self {
        Self {
            allow_unsigned_webhooks: Vcs::ALL.to_vec(),
            ..Self::default()
        }
    }

    /// Whether `vcs`'s webhook secret is configured (so its signature is checked).
    pub fn has_webhook_secret(&self, vcs: Vcs) -> bool {
        let s = &self.webhook_secrets;
        match vcs {
            Vcs::Github => configured(s.github.as_ref()).is_some(),
            Vcs::Gitlab => configured(s.gitlab.as_ref()).is_some(),
            Vcs::BitbucketCloud | Vcs::BitbucketServer => {
                configured(s.bitbucket.as_ref()).is_some()
            }
            Vcs::Gitea => configured(s.gitea.as_ref()).is_some(),
            Vcs::AzureDevops => s
                .azuredevops
                .as_ref()
                .is_some_and(|(u, p)| !u.is_empty() && !p.is_empty()),
        }
    }

    /// Whether the proxy gates `vcs`'s webhooks: only with a secret, or when explicitly allowed
    /// unsigned. Anything else is forwarded untouched and never reaches the engine.
    pub fn gates_webhooks_of(&self, vcs: Vcs) -> bool {
        self.has_webhook_secret(vcs) || self.allow_unsigned_webhooks.contains(&vcs)
    }

    /// VCSs gated without a secret, for the start-up warning and `/admin/status`.
    pub fn unsigned_gated(&self) -> Vec<Vcs> {
        Vcs::ALL
            .into_iter()
            .filter(|v| self.allow_unsigned_webhooks.contains(v) && !self.has_webhook_secret(*v))
            .collect()
    }
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        Self {
            executable_name: "atlantis".to_owned(),
            vcs_bot_users: Vec::new(),
            webhook_secrets: WebhookSecrets::default(),
            allow_unsigned_webhooks: Vec::new(),
            api_secret: None,
            allow_draft_prs: false,
            disable_autoplan: false,
            disable_autoplan_label: None,
            allow_commands: CommentCommandName::DEFAULT_ALLOWED.to_vec(),
            blocked_extra_args: ["-chdir", "--chdir", "-plugin-dir", "--plugin-dir"]
                .map(String::from)
                .to_vec(),
            lock_modes: LockModeTable::default(),
            allow_fork_prs: false,
            repo_allowlist: None,
            disable_apply_all: false,
            disable_unlock_label: None,
            gitlab_hostname: Some(("gitlab.com".into(), String::new())),
            bot_user: PerVcsUser::default(),
            hosts: RepoHosts::default(),
            server_repos: Arc::default(),
            bitbucket_shas: Arc::default(),
        }
    }
}

impl ClassifyConfig {
    /// Whether Atlantis's repo allowlist lets `host`/`repo` run commands (`host` from the
    /// payload's clone URL, else the VCS's configured host).
    pub fn allowlisted(&self, vcs: Vcs, host: Option<&str>, repo: &str) -> bool {
        self.repo_allowlist
            .as_ref()
            .is_none_or(|a| a.allows(host.unwrap_or(self.hosts.host(vcs)), repo))
    }

    /// Whether Atlantis runs commands on this pull at all: a fork (head owner ≠ base owner) is
    /// refused unless `--allow-fork-prs`; `None` (the payload does not say) is decided later.
    pub fn refuses_fork(&self, fork: Option<bool>) -> bool {
        fork == Some(true) && !self.allow_fork_prs
    }

    /// The server-side `repos:` branch filter (commands on other base branches are ignored).
    pub fn branch_allowed(&self, vcs: Vcs, repo: &str, base: Option<&str>) -> bool {
        base.is_none_or(|b| {
            self.server_repos
                .branch_matches(&self.hosts.repo_id(vcs, repo), b)
        })
    }

    /// The bot users that may invoke Atlantis on `vcs` as `@user`.
    pub fn bot_users_for(&self, vcs: Vcs) -> Vec<String> {
        if !self.vcs_bot_users.is_empty() {
            return self.vcs_bot_users.clone();
        }
        self.bot_user
            .for_vcs(vcs)
            .map(str::to_owned)
            .into_iter()
            .collect()
    }

    /// Whether `command` may lock the project (by name or dir) under the merged `repo_locks`:
    /// the proxy's table, else the server-side config; when the repo's `atlantis.yaml` may
    /// override the mode, any mode may apply (the resolver decides per project).
    pub fn may_lock(
        &self,
        vcs: Vcs,
        repo: &str,
        project: Option<&str>,
        dir: Option<&str>,
        command: CommandKind,
    ) -> bool {
        if self.server_repos.locking_disabled {
            return false;
        }
        let server = self.server_repos.locks_for(&self.hosts.repo_id(vcs, repo));
        if let Some(r) = self.lock_modes.repos.get(repo) {
            let mode = project
                .and_then(|p| r.projects.get(p))
                .or_else(|| dir.and_then(|d| r.dirs.get(d)))
                .copied()
                .or(r.default)
                .unwrap_or(server.mode);
            return command_locks(mode, command);
        }
        if server.given && (server.repo_locks_overridable || server.repo_locking_overridable) {
            return [LockMode::OnPlan, LockMode::OnApply]
                .into_iter()
                .any(|m| command_locks(m, command));
        }
        command_locks(server.mode, command)
    }

    /// Whether `command` could lock any project of `repo` (targets still unresolved).
    pub fn may_lock_any(&self, vcs: Vcs, repo: &str, command: CommandKind) -> bool {
        if self.server_repos.locking_disabled {
            return false;
        }
        let Some(r) = self.lock_modes.repos.get(repo) else {
            return self.may_lock(vcs, repo, None, None, command);
        };
        let server = self
            .server_repos
            .locks_for(&self.hosts.repo_id(vcs, repo))
            .mode;
        std::iter::once(r.default.unwrap_or(server))
            .chain(r.projects.values().copied())
            .chain(r.dirs.values().copied())
            .any(|m| command_locks(m, command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        let cfg = ClassifyConfig {
            api_secret: Some(s),
            ..ClassifyConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn only_vcss_with_a_secret_or_an_explicit_allowance_are_gated() {
        let mut cfg = ClassifyConfig::default();
        assert!(Vcs::ALL.iter().all(|v| !cfg.gates_webhooks_of(*v)));
        cfg.webhook_secrets.github = Some(Secret::new("s"));
        cfg.webhook_secrets.gitea = Some(Secret::new(""));
        cfg.allow_unsigned_webhooks = vec![Vcs::Gitlab, Vcs::Github];
        assert!(cfg.gates_webhooks_of(Vcs::Github));
        assert!(cfg.gates_webhooks_of(Vcs::Gitlab));
        assert!(
            !cfg.gates_webhooks_of(Vcs::Gitea),
            "an empty secret is no secret"
        );
        assert!(!cfg.gates_webhooks_of(Vcs::BitbucketCloud));
        assert_eq!(cfg.unsigned_gated(), [Vcs::Gitlab]);
    }

    #[test]
    fn lock_rules_follow_the_mode() {
        use CommandKind::*;
        assert!(command_locks(LockMode::OnPlan, Plan));
        assert!(!command_locks(LockMode::OnPlan, Apply));
        assert!(command_locks(LockMode::OnApply, Apply));
        assert!(!command_locks(LockMode::OnApply, Autoplan));
        assert!(command_locks(LockMode::OnApply, Import));
        assert!(!command_locks(LockMode::Disabled, StateRm));
        assert!(command_locks(LockMode::OnApply, ApiApply));
        assert!(!command_locks(LockMode::OnApply, ApiPlan));
    }

    #[test]
    fn mode_lookup_prefers_project_then_dir_then_repo() {
        let mut t = LockModeTable::default();
        let mut r = RepoLockModes {
            default: Some(LockMode::OnApply),
            ..Default::default()
        };
        r.projects.insert("p".into(), LockMode::Disabled);
        r.dirs.insert("d".into(), LockMode::OnPlan);
        t.repos.insert("o/r".into(), r);
        assert_eq!(t.mode_for("o/r", Some("p"), Some("d")), LockMode::Disabled);
        assert_eq!(t.mode_for("o/r", None, Some("d")), LockMode::OnPlan);
        assert_eq!(t.mode_for("o/r", None, Some("x")), LockMode::OnApply);
        assert_eq!(t.mode_for("other/r", None, None), LockMode::OnPlan);
        assert!(t.any_locks("o/r", CommandKind::Plan));
        assert!(t.any_locks("o/r", CommandKind::Apply));
    }
}
