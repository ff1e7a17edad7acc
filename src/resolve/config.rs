//! Project definitions: the proxy's own per-repo table (strict serde structs, `deny_unknown_fields`)
//! and their validation into [`RepoConfig`], which a repo's `atlantis.yaml` (see `atlantis_yaml.rs`,
//! lenient) also turns into.
//!
//! Field names and defaults follow Atlantis's `server/core/config/raw/project.go`,
//! `raw/autoplan.go`, `raw/autodiscover.go` and `raw/repo_locks.go`, plus the migration guide's
//! `repo_locks.{priority,timeout}` extension.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::pattern::{PatternCache, PatternList, clean_path, compile_glob};
use crate::vocab::{LockMode, Priority};

/// Atlantis's default `when_modified` (`raw.DefaultAutoPlanWhenModified`).
pub fn default_when_modified() -> Vec<String> {
    [
        "*.tf*",
        "*.tofu",
        "*.tofu.json",
        "terragrunt.hcl",
        ".terraform.lock.hcl",
    ]
    .iter()
    .map(|p| format!("**/{p}"))
    .collect()
}

/// One entry of the proxy's `repos:` table, as written in the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepo {
    /// Full repository name, `owner/repo` (GitLab: `group/sub/repo`).
    pub name: String,
    /// Projects of this repo; when present the repo's `atlantis.yaml` is not read.
    #[serde(default)]
    pub projects: Vec<RawProject>,
    /// Repo-wide lock defaults (a project's own `repo_locks` wins).
    #[serde(default)]
    pub repo_locks: Option<RawRepoLocks>,
    /// Autodiscovery for dirs not covered by `projects`.
    #[serde(default)]
    pub autodiscover: Option<RawAutoDiscover>,
}

/// A project, in atlantis.yaml v3 shape (snake_case).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    /// Project name (part of the lock key).
    pub name: Option<String>,
    /// Repo-relative directory (required).
    pub dir: Option<String>,
    /// Terraform workspace, `default` when absent.
    pub workspace: Option<String>,
    /// Shorthand for `autoplan.when_modified` (proxy table only).
    pub when_modified: Option<Vec<String>>,
    /// Autoplan settings.
    pub autoplan: Option<RawAutoplan>,
    /// `/regex/` on the pull's base branch; the project exists only for matching branches.
    pub branch: Option<String>,
    /// Lock settings.
    pub repo_locks: Option<RawRepoLocks>,
    /// Deprecated Atlantis switch: `false` means `repo_locks.mode: disabled`.
    pub repo_locking: Option<bool>,
}

/// `autoplan:` of a project.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoplan {
    /// Patterns relative to the project dir.
    pub when_modified: Option<Vec<String>>,
    /// `false` keeps the project out of autoplan (a bare `atlantis plan` still plans it).
    pub enabled: Option<bool>,
}

/// `repo_locks:` of a project or a repo.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepoLocks {
    /// `on_plan` (default), `on_apply` or `disabled`.
    pub mode: Option<LockMode>,
    /// Queue priority.
    pub priority: Option<Priority>,
    /// Hold timeout, humantime (`45m`).
    pub timeout: Option<String>,
}

/// `autodiscover:` of a repo.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoDiscover {
    /// `auto` (default), `enabled` or `disabled`.
    pub mode: Option<AutoDiscoverMode>,
    /// doublestar globs of dirs never discovered.
    #[serde(default)]
    pub ignore_paths: Vec<String>,
}

/// When directories holding Terraform files become projects on their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoDiscoverMode {
    /// Only when no project is configured (Atlantis's default).
    #[default]
    Auto,
    /// Always, for dirs not configured.
    Enabled,
    /// Never.
    Disabled,
}

/// A config value that failed validation, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct InvalidProjectConfig {
    /// Dotted path of the bad key, e.g. `repos[0].projects[2].repo_locks.timeout`.
    pub at: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> InvalidProjectConfig {
    InvalidProjectConfig {
        at: at.into(),
        problem: problem.into(),
    }
}

/// Validated lock settings; `None` means "inherit".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LockSettings {
    /// When the project locks.
    pub mode: Option<LockMode>,
    /// Queue priority.
    pub priority: Option<Priority>,
    /// Hold timeout.
    pub timeout: Option<Duration>,
}

/// A validated project.
#[derive(Clone, Debug)]
pub struct ProjectSpec {
    /// Name, if any.
    pub name: Option<String>,
    /// Cleaned repo-relative dir (`.` for the root); may be a glob when `name` is unset.
    pub dir: String,
    /// Workspace.
    pub workspace: String,
    /// `when_modified` joined to `dir`.
    pub patterns: PatternList,
    /// Autoplan switch.
    pub autoplan_enabled: bool,
    /// Base-branch filter.
    pub branch: Option<regex::Regex>,
    /// Lock settings of the project itself.
    pub locks: LockSettings,
    /// `repo_locks.mode` as Atlantis reads the project's own `repo_locks` (present without a mode:
    /// `on_plan`); `None` when the project has no `repo_locks`.
    pub repo_locks_mode: Option<LockMode>,
    /// The deprecated `repo_locking` switch, when set.
    pub repo_locking: Option<bool>,
}

impl ProjectSpec {
    /// True when `dir` is a glob that Atlantis expands against the checkout.
    pub fn dir_is_glob(&self) -> bool {
        self.dir.contains(['*', '?', '['])
    }
}

/// A validated autodiscover block.
#[derive(Clone, Debug, Default)]
pub struct AutoDiscover {
    /// Mode.
    pub mode: AutoDiscoverMode,
    /// Ignored dirs.
    pub ignore_paths: Vec<globset::GlobMatcher>,
}

impl AutoDiscover {
    /// `valid.AutoDiscover.IsPathIgnored`.
    pub fn is_ignored(&self, dir: &str) -> bool {
        self.ignore_paths.iter().any(|g| g.is_match(dir))
    }
}

/// Everything the mapping needs to know about one repo's projects.
#[derive(Clone, Debug, Default)]
pub struct RepoConfig {
    /// Explicit projects, in file order.
    pub projects: Vec<ProjectSpec>,
    /// Repo-level autodiscover, if set.
    pub autodiscover: Option<AutoDiscover>,
    /// Repo-level lock defaults.
    pub locks: LockSettings,
    /// The repo-level `repo_locks.mode` as Atlantis reads it (present without a mode: `on_plan`).
    pub repo_locks_mode: Option<LockMode>,
}

/// The proxy's per-repo project table, validated.
#[derive(Clone, Debug, Default)]
pub struct ProjectTable {
    repos: HashMap<String, RepoConfig>,
}

impl ProjectTable {
    /// Validates the raw `repos:` list; errors name the bad key (`repos[1].projects[0].dir`).
    pub fn from_raw(raw: &[RawRepo]) -> Result<Self, InvalidProjectConfig> {
        let mut repos = HashMap::new();
        for (i, r) in raw.iter().enumerate() {
            let at = format!("repos[{i}]");
            let name = r.name.trim();
            if name.is_empty() || !name.contains('/') || name.starts_with('/') {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("{:?} is not a full repository name like owner/repo", r.name),
                ));
            }
            let cfg = validate_repo(
                &at,
                &r.projects,
                r.repo_locks.as_ref(),
                r.autodiscover.as_ref(),
            )?;
            if repos.insert(name.to_string(), cfg).is_some() {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("repository {name:?} is listed twice"),
                ));
            }
        }
        Ok(Self { repos })
    }

    /// Every configured repo and its projects.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RepoConfig)> {
        self.repos.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The table's entry for a repo, if it has one.
    pub fn get(&self, repo: &str) -> Option<&RepoConfig> {
        self.repos.get(repo)
    }

    /// Number of repos in the table.
    pub fn len(&self) -> usize {
        self.repos.len()
    }

    /// True when no repo is configured.
    pub fn is_empty(&self) -> bool {
        self.repos.is_empty()
    }
}

impl<'de> Deserialize<'de> for ProjectTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<RawRepo>::deserialize(d)?;
        Self::from_raw(&raw).map_err(serde::de::Error::custom)
    }
}

pub(super) fn validate_repo(
    at: &str,
    projects: &[RawProject],
    locks: Option<&RawRepoLocks>,
    autodiscover: Option<&RawAutoDiscover>,
) -> Result<RepoConfig, InvalidProjectConfig> {
    let mut cache = PatternCache::default();
    let projects = projects
        .iter()
        .enumerate()
        .map(|(i, p)| validate_project(&format!("{at}.projects[{i}]"), p, &mut cache))
        .collect::<Result<Vec<_>, _>>()?;
    let repo_locks = locks;
    let locks = match locks {
        Some(l) => validate_locks(&format!("{at}.repo_locks"), l)?,
        None => LockSettings::default(),
    };
    let autodiscover = match autodiscover {
        None => None,
        Some(a) => {
            let mut ignore = Vec::new();
            for (i, p) in a.ignore_paths.iter().enumerate() {
                let key = format!("{at}.autodiscover.ignore_paths[{i}]");
                if p.starts_with('/') {
                    return Err(invalid(key, "pattern must not begin with a slash '/'"));
                }
                ignore.push(compile_glob(p).map_err(|e| invalid(key, e.to_string()))?);
            }
            Some(AutoDiscover {
                mode: a.mode.unwrap_or_default(),
                ignore_paths: ignore,
            })
        }
    };
    Ok(RepoConfig {
        projects,
        autodiscover,
        repo_locks_mode: repo_locks.map(|l| l.mode.unwrap_or_default()),
        locks,
    })
}

fn validate_project(
    at: &str,
    p: &RawProject,
    cache: &mut PatternCache,
) -> Result<ProjectSpec, InvalidProjectConfig> {
    let dir = p
        .dir
        .as_deref()
        .ok_or_else(|| invalid(format!("{at}.dir"), "is required"))?;
    if dir.contains("..") {
        return Err(invalid(format!("{at}.dir"), "cannot contain '..'"));
    }
    let is_glob = dir.contains(['*', '?', '[']);
    // Atlantis does not clean a glob dir beyond its leading "./" (cleaning mangles globs).
    let dir = if is_glob {
        dir.trim_start_matches("./").to_string()
    } else {
        clean_path(dir)
    };
    if let Some(name) = &p.name {
        if name.is_empty() {
            return Err(invalid(format!("{at}.name"), "if set cannot be empty"));
        }
        if name.contains(['*', '?', '[']) {
            return Err(invalid(
                format!("{at}.name"),
                "cannot contain glob characters",
            ));
        }
        if is_glob {
            return Err(invalid(
                format!("{at}.name"),
                "cannot be used with a glob 'dir' (it expands to several projects)",
            ));
        }
    }
    let workspace = match p.workspace.as_deref() {
        None | Some("") => "default".to_string(),
        Some(w) => {
            validate_workspace(w).map_err(|m| invalid(format!("{at}.workspace"), m))?;
            w.to_string()
        }
    };
    let autoplan = p.autoplan.clone().unwrap_or_default();
    let when_modified = match (&p.when_modified, &autoplan.when_modified) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                format!("{at}.when_modified"),
                "set either when_modified or autoplan.when_modified, not both",
            ));
        }
        (Some(w), None) | (None, Some(w)) => w.clone(),
        (None, None) => default_when_modified(),
    };
    let patterns = PatternList::for_project_cached(&dir, &when_modified, cache)
        .map_err(|e| invalid(format!("{at}.autoplan.when_modified"), e.to_string()))?;
    let branch = match &p.branch {
        None => None,
        Some(b) => {
            let inner = b
                .strip_prefix('/')
                .and_then(|s| s.strip_suffix('/'))
                .filter(|_| b.len() >= 2)
                .ok_or_else(|| {
                    invalid(format!("{at}.branch"), "regex must begin and end with '/'")
                })?;
            Some(
                regex::Regex::new(inner)
                    .map_err(|e| invalid(format!("{at}.branch"), e.to_string()))?,
            )
        }
    };
    let mut locks = match &p.repo_locks {
        Some(l) => validate_locks(&format!("{at}.repo_locks"), l)?,
        None => LockSettings::default(),
    };
    // The deprecated switch only matters when repo_locks.mode does not say otherwise.
    if locks.mode.is_none() && p.repo_locking == Some(false) {
        locks.mode = Some(LockMode::Disabled);
    }
    Ok(ProjectSpec {
        name: p.name.clone(),
        dir,
        workspace,
        patterns,
        autoplan_enabled: autoplan.enabled.unwrap_or(true),
        branch,
        locks,
        repo_locks_mode: p.repo_locks.as_ref().map(|l| l.mode.unwrap_or_default()),
        repo_locking: p.repo_locking,
    })
}

fn validate_locks(at: &str, l: &RawRepoLocks) -> Result<LockSettings, InvalidProjectConfig> {
    let timeout = match &l.timeout {
        None => None,
        Some(t) => {
            let d = humantime::parse_duration(t.trim()).map_err(|e| {
                invalid(
                    format!("{at}.timeout"),
                    format!("{t:?} is not a duration like 45m or 2h: {e}"),
                )
            })?;
            if d.is_zero() {
                return Err(invalid(
                    format!("{at}.timeout"),
                    "must be greater than zero",
                ));
            }
            Some(d)
        }
    };
    Ok(LockSettings {
        mode: l.mode,
        priority: l.priority,
        timeout,
    })
}

/// Atlantis's `valid.ValidateWorkspaceName`.
fn validate_workspace(w: &str) -> Result<(), String> {
    if w.contains(['/', '\\', '$']) || w.contains("..") || w == "." || w.starts_with(['-', '~']) {
        return Err(format!("{w:?} is not a valid workspace name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> Result<ProjectTable, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Top {
            repos: ProjectTable,
        }
        serde_norway::from_str::<Top>(yaml)
            .map(|t| t.repos)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn table_parses_the_documented_shape() {
        let t = table(
            r#"
repos:
  - name: acme/infra
    projects:
      - name: network
        dir: ./network/
        workspace: prod
        when_modified: ["*.tf", "../modules/**"]
        repo_locks: {mode: on_apply, priority: high, timeout: "45m"}
      - dir: apps
        autoplan: {when_modified: ["**/*.tf"], enabled: false}
"#,
        )
        .unwrap();
        let repo = t.get("acme/infra").unwrap();
        let p = &repo.projects[0];
        assert_eq!(p.dir, "network");
        assert_eq!(p.workspace, "prod");
        assert_eq!(p.locks.mode, Some(LockMode::OnApply));
        assert_eq!(p.locks.priority, Some(Priority::High));
        assert_eq!(p.locks.timeout, Some(Duration::from_secs(45 * 60)));
        assert!(p.patterns.matches_or_parent_matches("modules/vpc/x.tf"));
        assert!(!repo.projects[1].autoplan_enabled);
        assert_eq!(repo.projects[1].workspace, "default");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = table(
            "repos:\n  - name: a/b\n    projects:\n      - dir: x\n        wen_modified: []\n",
        )
        .unwrap_err();
        assert!(e.contains("wen_modified"), "{e}");
        let e = table("repos:\n  - name: a/b\n    projects:\n      - dir: x\n        repo_locks: {timeout: 45x}\n")
            .unwrap_err();
        assert!(e.contains("repos[0].projects[0].repo_locks.timeout"), "{e}");
        let e = table("repos:\n  - name: a/b\n    projects:\n      - dir: x\n        repo_locks: {priority: urgent}\n")
            .unwrap_err();
        assert!(e.contains("urgent"), "{e}");
        let e = table("repos:\n  - name: a/b\n    projects:\n      - name: n\n").unwrap_err();
        assert!(e.contains("repos[0].projects[0].dir: is required"), "{e}");
        let e = table("repos:\n  - name: nope\n").unwrap_err();
        assert!(e.contains("repos[0].name"), "{e}");
        let e = table("repos:\n  - name: a/b\n  - name: a/b\n").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
    }
}
