//! Atlantis's server-side repo config (`--repo-config` repos.yaml, `--repo-config-json`), as far as
//! it decides locks: `repos:` entries matched by `id` (exact, or `/regex/`) against the repo ID
//! `{vcs host}/{owner}/{repo}`, with `repo_locks`, the deprecated `repo_locking`,
//! `allowed_overrides` and `repo_config_file`. Workflows, hooks and policies are ignored.
//!
//! Merging follows `core/config/valid/global_cfg.go` (v0.47.1): every matching entry is applied in
//! file order after Atlantis's built-in `.*` entry, so the last one that sets a key wins
//! (`getMatchingCfg`); `repo_locking: false` then forces `disabled`. A repo's `atlantis.yaml`
//! may override the mode only when `repo_locks` (or `repo_locking`) is in `allowed_overrides`
//! (`MergeProjectCfg`): the repo-level value is ignored otherwise, and a project that sets it makes
//! Atlantis refuse the whole config (`ValidateRepoCfg`).

use serde::Deserialize;

use crate::vocab::{LockMode, Vcs};

/// The hosts Atlantis puts in front of a repo's full name to make its repo ID (the clone URL's
/// host): from `--gh-hostname`, `--gitlab-hostname`, `--bitbucket-base-url`, `--gitea-base-url`.
#[derive(Clone, Debug)]
pub struct RepoHosts {
    /// GitHub (`github.com` or the Enterprise host).
    pub github: String,
    /// GitLab (host only, no base path).
    pub gitlab: String,
    /// Bitbucket Server's host (Cloud is always `bitbucket.org`).
    pub bitbucket_server: String,
    /// Gitea's host.
    pub gitea: String,
}

impl Default for RepoHosts {
    fn default() -> Self {
        Self {
            github: "github.com".into(),
            gitlab: "gitlab.com".into(),
            bitbucket_server: "bitbucket.org".into(),
            gitea: "gitea.com".into(),
        }
    }
}

impl RepoHosts {
    /// The host of `vcs`'s repo IDs.
    pub fn host(&self, vcs: Vcs) -> &str {
        match vcs {
            Vcs::Github => &self.github,
            Vcs::Gitlab => &self.gitlab,
            Vcs::BitbucketCloud => "bitbucket.org",
            Vcs::BitbucketServer => &self.bitbucket_server,
            Vcs::AzureDevops => "dev.azure.com",
            Vcs::Gitea => &self.gitea,
        }
    }

    /// Atlantis's repo ID: `{host}/{full name}`.
    pub fn repo_id(&self, vcs: Vcs, full_name: &str) -> String {
        format!("{}/{full_name}", self.host(vcs))
    }
}

/// `repos.yaml` as written (only the lock-relevant keys; others are ignored).
#[derive(Debug, Default, Deserialize)]
struct RawGlobal {
    #[serde(default)]
    repos: Vec<RawServerRepo>,
}

#[derive(Debug, Default, Deserialize)]
struct RawServerRepo {
    id: Option<String>,
    branch: Option<String>,
    repo_config_file: Option<String>,
    allowed_overrides: Option<Vec<String>>,
    repo_locking: Option<bool>,
    repo_locks: Option<RawLocks>,
}

#[derive(Debug, Default, Deserialize)]
struct RawLocks {
    mode: Option<LockMode>,
}

/// How a repo ID is matched.
#[derive(Clone, Debug)]
enum RepoMatch {
    Exact(String),
    Regex(regex::Regex),
}

/// One validated `repos:` entry.
#[derive(Clone, Debug)]
struct ServerRepo {
    id: RepoMatch,
    branch: Option<regex::Regex>,
    repo_config_file: Option<String>,
    allowed_overrides: Option<Vec<String>>,
    repo_locking: Option<bool>,
    repo_locks: Option<LockMode>,
}

impl ServerRepo {
    fn matches(&self, repo_id: &str) -> bool {
        match &self.id {
            RepoMatch::Exact(id) => id == repo_id,
            RepoMatch::Regex(r) => r.is_match(repo_id),
        }
    }
}

/// What the server-side config decides for one repo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLocks {
    /// The server's `repo_locks.mode` for the repo (Atlantis's default `on_plan`).
    pub mode: LockMode,
    /// The repo's `atlantis.yaml` may set `repo_locks`.
    pub repo_locks_overridable: bool,
    /// The repo's `atlantis.yaml` may set the deprecated `repo_locking`.
    pub repo_locking_overridable: bool,
    /// `allowed_overrides` of the last matching entry, in order (Atlantis applies them in order).
    pub allowed_overrides: Vec<String>,
    /// The repo config file name (`repo_config_file`, default `atlantis.yaml`).
    pub repo_config_file: Option<String>,
    /// The proxy was given Atlantis's server-side repo config. Without it the proxy cannot know
    /// what Atlantis allows, so a repo's `atlantis.yaml` modes are taken as written.
    pub given: bool,
}

/// The validated server-side repo config; empty means Atlantis's built-in defaults.
#[derive(Clone, Debug, Default)]
pub struct ServerRepoConfig {
    repos: Vec<ServerRepo>,
    /// `--disable-repo-locking`: nothing ever locks.
    pub locking_disabled: bool,
    /// Parsed from Atlantis's repos.yaml (not the built-in default).
    given: bool,
}

impl ServerRepoConfig {
    /// Parses repos.yaml (or the JSON of `--repo-config-json`); errors say what is wrong where.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self {
                given: true,
                ..Self::default()
            });
        }
        let raw: RawGlobal = serde_norway::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!(
                "not a valid repo config at line {}, column {}",
                l.line(),
                l.column()
            ),
            None => format!("not a valid repo config: {e}"),
        })?;
        let mut repos = Vec::new();
        for (i, r) in raw.repos.into_iter().enumerate() {
            let at = format!("repos[{i}]");
            let id =
                r.id.filter(|s| !s.is_empty())
                    .ok_or(format!("{at}.id: is required"))?;
            let id = match slashed(&id) {
                Some(re) => RepoMatch::Regex(
                    regex::Regex::new(re).map_err(|e| format!("{at}.id: bad regex: {e}"))?,
                ),
                None => RepoMatch::Exact(id),
            };
            let branch = match r.branch.as_deref().filter(|b| !b.is_empty()) {
                None => None,
                Some(b) => {
                    let re = slashed(b).ok_or(format!("{at}.branch: must be a /regex/"))?;
                    Some(
                        regex::Regex::new(re)
                            .map_err(|e| format!("{at}.branch: bad regex: {e}"))?,
                    )
                }
            };
            repos.push(ServerRepo {
                id,
                branch,
                repo_config_file: r.repo_config_file.filter(|f| !f.is_empty()),
                allowed_overrides: r.allowed_overrides,
                repo_locking: r.repo_locking,
                repo_locks: r.repo_locks.and_then(|l| l.mode),
            });
        }
        Ok(Self {
            repos,
            locking_disabled: false,
            given: true,
        })
    }

    /// True when no `repos:` entry is configured.
    pub fn is_empty(&self) -> bool {
        self.repos.is_empty()
    }

    /// Whether this came from Atlantis's own repos.yaml.
    pub fn given(&self) -> bool {
        self.given
    }

    /// `getMatchingCfg` for the lock keys of `repo_id`.
    pub fn locks_for(&self, repo_id: &str) -> ServerLocks {
        let mut mode = LockMode::OnPlan;
        let mut locking = true;
        let mut overrides: &[String] = &[];
        let mut file = None;
        for r in self.repos.iter().filter(|r| r.matches(repo_id)) {
            if let Some(m) = r.repo_locks {
                mode = m;
            }
            if let Some(l) = r.repo_locking {
                locking = l;
            }
            if let Some(o) = &r.allowed_overrides {
                overrides = o;
            }
            if let Some(f) = &r.repo_config_file {
                file = Some(f.clone());
            }
        }
        if !locking || self.locking_disabled {
            mode = LockMode::Disabled;
        }
        let allowed = |k: &str| !self.locking_disabled && overrides.iter().any(|o| o == k);
        ServerLocks {
            mode,
            repo_locks_overridable: allowed("repo_locks"),
            repo_locking_overridable: allowed("repo_locking"),
            allowed_overrides: if self.locking_disabled {
                Vec::new()
            } else {
                overrides.to_vec()
            },
            repo_config_file: file,
            given: self.given || self.locking_disabled,
        }
    }

    /// `validateCtxAndComment`'s `MatchingRepo(...).BranchMatches(base)`: the last matching entry's
    /// `branch` regex (none: every branch). Atlantis ignores commands on other base branches.
    pub fn branch_matches(&self, repo_id: &str, base_branch: &str) -> bool {
        self.repos
            .iter()
            .rev()
            .find(|r| r.matches(repo_id))
            .and_then(|r| r.branch.as_ref())
            .is_none_or(|re| re.is_match(base_branch))
    }
}

/// The inside of `/regex/`.
fn slashed(s: &str) -> Option<&str> {
    (s.len() >= 2 && s.starts_with('/') && s.ends_with('/')).then(|| &s[1..s.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_entries_merge_in_order_like_get_matching_cfg() {
        let c = ServerRepoConfig::parse(
            r#"
repos:
  - id: /.*/
    repo_locks: {mode: on_apply}
    workflow: custom
  - id: github.com/acme/infra
    allowed_overrides: [repo_locks, workflow]
  - id: /github.com/acme/legacy.*/
    repo_locking: false
    branch: /main/
workflows: {custom: {plan: {steps: [init, plan]}}}
"#,
        )
        .unwrap();
        let infra = c.locks_for("github.com/acme/infra");
        assert_eq!(infra.mode, LockMode::OnApply);
        assert!(infra.repo_locks_overridable && !infra.repo_locking_overridable);
        let legacy = c.locks_for("github.com/acme/legacy-net");
        assert_eq!(legacy.mode, LockMode::Disabled);
        assert!(!legacy.repo_locks_overridable);
        assert!(!c.branch_matches("github.com/acme/legacy-net", "dev"));
        assert!(c.branch_matches("github.com/acme/legacy-net", "main"));
        assert!(c.branch_matches("github.com/acme/infra", "dev"));
        assert_eq!(
            ServerRepoConfig::default().locks_for("x/y/z").mode,
            LockMode::OnPlan
        );
        assert!(ServerRepoConfig::parse("repos:\n  - repo_locks: {mode: on_plan}\n").is_err());
        assert!(ServerRepoConfig::parse("repos:\n  - id: /(/\n").is_err());
    }

    #[test]
    fn repo_ids_use_the_vcs_host() {
        let h = RepoHosts::default();
        assert_eq!(h.repo_id(Vcs::Github, "o/r"), "github.com/o/r");
        assert_eq!(
            h.repo_id(Vcs::AzureDevops, "org/p/r"),
            "dev.azure.com/org/p/r"
        );
    }
}
