//! Changed files + project config → the projects a command runs on (pure, no I/O).
//!
//! Compared against Atlantis v0.47.1 (`server/events/project_finder.go`,
//! `server/events/project_command_builder.go`, `server/core/config/valid/repo_cfg.go`):
//!
//! Matched:
//! - explicit projects: `DetermineProjectsViaConfig` — a project is modified when a changed file
//!   (or one of its parent dirs) matches its `when_modified` joined to its dir, exclusions
//!   included; default patterns from `raw.DefaultAutoPlanWhenModified`; a project matched only by
//!   deleted files is kept only if its dir still exists at the head commit (the checkout's
//!   `os.Stat`, asked of the VCS API here);
//! - `branch: /regex/` keeps a project only for matching base branches (`parseRawRepoCfg`);
//! - autoplan drops projects with `autoplan.enabled: false` (`BuildAutoplanCommands`);
//! - autodiscovery on/off: `autoDiscoverModeEnabled` + `RepoCfg.AutoDiscoverEnabled` (`auto` =
//!   only when no project is configured); discovered dirs already configured are skipped, and
//!   `autodiscover.ignore_paths` (doublestar) are honoured (`getMergedProjectCfgs`);
//! - autodiscovery itself (`DetermineProjects`, `getProjectDirFromFs`): files containing
//!   `terraform.tfstate`/`tflint.hcl` are ignored, the rest filtered by `--autoplan-file-list`;
//!   the project is the file's dir, one level up for an `env/` dir; under a `modules/` dir it is the
//!   dir before `modules/` if that dir holds a `*.tf`/`*.tf.json`/`*.tofu`/`*.tofu.json`/
//!   `terragrunt.hcl`, else nothing (the listing comes from the VCS API); dirs that no longer
//!   exist are dropped (`removeNonExistingDirs`); workspace `default`;
//! - targeted commands (`-p`, `-d`, `-w`): `FindProjectsByName` (exact name only),
//!   `FindProjectsByDirWorkspace`, `ValidateWorkspaceAllowed` (unconfigured workspace of a
//!   configured dir = error = unresolved), `-d` globs against configured dirs, ignored dirs skip.
//!
//! Not matched (the request is left unresolved, i.e. goes down the legacy path, unless noted):
//! - `dir:` globs in projects need the checkout (`expandProjectGlobs`): unresolved;
//! - `--autodetect-module-files` (`FindModuleProjects`, downstream projects of a changed module):
//!   not supported, treated as off (Atlantis's default);
//! - Terraform Cloud workspaces read from HCL (`DetermineWorkspaceFromHCL`): discovered projects
//!   always use `default`;
//! - regex project names (`-p 'a.*'` with `--enable-regexp-cmd`): exact names only;
//! - bare `apply`/`approve_policies` run on the pull's pending plans
//!   (`buildAllProjectCommandsByPlan`); we use the modified projects instead, which differs when
//!   someone planned an unmodified dir with `-d`;
//! - `--include-git-untracked-files`, `--restrict-file-list` and server-side (`repos.yaml`)
//!   overrides of `autodiscover`/`repo_locks`: not read; repo-level `repo_locks` also applies to
//!   discovered projects here (Atlantis applies it to configured ones only).

use std::collections::{BTreeMap, HashMap};

use super::config::{LockSettings, ProjectSpec, RepoConfig};
use super::pattern::{PatternList, clean_path};
use super::server_repos::ServerLocks;
use crate::vcs::{ChangedFile, DirEntry};
use crate::vocab::{LockKey, LockMode};

pub use crate::vocab::CommandKind;

/// Flags of a targeted comment: `-d` (may be a glob), `-w`, `-p`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Filters {
    /// `-d/--dir`, as Atlantis cleaned it.
    pub dir: Option<String>,
    /// `-w/--workspace`.
    pub workspace: Option<String>,
    /// `-p/--project`.
    pub project: Option<String>,
}

impl Filters {
    /// True when any flag targets specific projects (`IsForSpecificProject`).
    pub fn is_targeted(&self) -> bool {
        self.dir.is_some() || self.workspace.is_some() || self.project.is_some()
    }
}

/// Server-wide defaults (Atlantis flags the proxy cannot read from the repo).
#[derive(Clone, Debug)]
pub struct ServerDefaults {
    /// `--autodiscover-mode`.
    pub autodiscover: super::config::AutoDiscoverMode,
    /// `--autoplan-file-list`, compiled.
    pub autoplan_file_list: PatternList,
    /// Lock mode when neither project nor repo says (`on_plan` in Atlantis).
    pub lock_mode: LockMode,
}

/// Directory listings at the head commit: `None` = the dir does not exist.
pub type DirIndex = HashMap<String, Option<Vec<DirEntry>>>;

/// What one mapping pass decided.
#[derive(Debug, PartialEq)]
pub enum MapOutcome {
    /// The projects the command runs on (possibly none), lock settings merged.
    Projects(Vec<Selected>),
    /// Listings of these dirs are needed; fetch them, add to the index, map again.
    NeedDirs(Vec<String>),
    /// Cannot be decided without a checkout; the reason is for logs and counters.
    Unresolvable(String),
}

/// One project the command runs on.
#[derive(Clone, Debug, PartialEq)]
pub struct Selected {
    /// Atlantis's lock key.
    pub key: LockKey,
    /// Effective lock settings (project over repo over server default; mode always set).
    pub locks: LockSettings,
}

/// Inputs of one mapping pass.
pub struct MapInput<'a> {
    /// Full repository name.
    pub repo: &'a str,
    /// Project config (table or atlantis.yaml); `None` when the repo has no atlantis.yaml.
    pub config: Option<&'a RepoConfig>,
    /// Files changed by the pull (ignored for targeted commands).
    pub files: &'a [ChangedFile],
    /// The command.
    pub command: CommandKind,
    /// Targeting flags.
    pub filters: &'a Filters,
    /// Base branch, needed only when a project has `branch:`.
    pub base_branch: Option<&'a str>,
    /// Server defaults.
    pub server: &'a ServerDefaults,
    /// Known directory listings.
    pub dirs: &'a DirIndex,
    /// The server-side repo config's decision for this repo, when `config` is the repo's own
    /// `atlantis.yaml` (`None` for the proxy's table, whose modes stand as written).
    pub server_locks: Option<&'a ServerLocks>,
}

/// Filename fragments Atlantis never autoplans on (`ignoredFilenameFragments`).
const IGNORED_FRAGMENTS: [&str; 3] = [
    "terraform.tfstate",
    "terraform.tfstate.backup",
    "tflint.hcl",
];

/// Decides the projects for one command.
pub fn map_projects(input: &MapInput<'_>) -> MapOutcome {
    let empty = RepoConfig::default();
    let cfg = input.config.unwrap_or(&empty);
    if let Some(p) = cfg.projects.iter().find(|p| p.dir_is_glob()) {
        return MapOutcome::Unresolvable(format!(
            "project dir glob {:?} needs a checkout to expand",
            p.dir
        ));
    }
    if let Some(s) = input.server_locks.filter(|s| s.given) {
        let allowed = |k: &str| s.allowed_overrides.iter().any(|o| o == k);
        // `ValidateRepoCfg`: a project setting a key the server does not allow fails the config.
        for p in &cfg.projects {
            for (set, key) in [
                (p.repo_locks_mode.is_some(), "repo_locks"),
                (p.repo_locking.is_some(), "repo_locking"),
            ] {
                if set && !allowed(key) {
                    return MapOutcome::Unresolvable(format!(
                        "atlantis.yaml sets '{key}' but the server-side repo config does not allow it \
                         (allowed_overrides): Atlantis refuses the config"
                    ));
                }
            }
        }
    }
    let mut projects = Vec::new();
    for p in &cfg.projects {
        match (&p.branch, input.base_branch) {
            (None, _) => projects.push(p),
            (Some(re), Some(base)) if re.is_match(base) => projects.push(p),
            (Some(_), Some(_)) => {}
            (Some(_), None) => {
                return MapOutcome::Unresolvable(
                    "base branch unknown for a `branch:` filter".into(),
                );
            }
        }
    }
    let mapper = Mapper {
        input,
        cfg,
        projects,
    };
    if input.filters.is_targeted() {
        mapper.targeted()
    } else {
        mapper.modified()
    }
}

struct Mapper<'a> {
    input: &'a MapInput<'a>,
    cfg: &'a RepoConfig,
    /// Configured projects left after the branch filter.
    projects: Vec<&'a ProjectSpec>,
}

impl Mapper<'_> {
    fn autodiscover_enabled(&self) -> bool {
        use super::config::AutoDiscoverMode::*;
        let mode = self
            .cfg
            .autodiscover
            .as_ref()
            .map_or(self.input.server.autodiscover, |a| a.mode);
        match mode {
            Auto => self.projects.is_empty(),
            Enabled => true,
            Disabled => false,
        }
    }

    fn is_ignored_dir(&self, dir: &str) -> bool {
        self.cfg
            .autodiscover
            .as_ref()
            .is_some_and(|a| a.is_ignored(dir))
    }

    fn select_configured(&self, p: &ProjectSpec) -> Selected {
        let mut s = self.selected(
            &p.dir,
            &p.workspace,
            p.name.as_deref().unwrap_or(""),
            &p.locks,
        );
        if let Some(server) = self.input.server_locks.filter(|s| s.given) {
            s.locks.mode = Some(self.merged_mode(server, p));
        }
        s
    }

    /// `MergeProjectCfg`: the server's mode, then each allowed override in its listed order.
    fn merged_mode(&self, server: &ServerLocks, p: &ProjectSpec) -> LockMode {
        let mut mode = server.mode;
        for key in &server.allowed_overrides {
            match key.as_str() {
                "repo_locking" => match p.repo_locking {
                    Some(true) if mode == LockMode::Disabled => mode = LockMode::OnPlan,
                    Some(false) => mode = LockMode::Disabled,
                    _ => {}
                },
                "repo_locks" => {
                    if let Some(m) = self.cfg.repo_locks_mode {
                        mode = m;
                    }
                    if let Some(m) = p.repo_locks_mode {
                        mode = m;
                    }
                }
                _ => {}
            }
        }
        mode
    }

    fn selected(&self, dir: &str, ws: &str, name: &str, own: &LockSettings) -> Selected {
        let repo = &self.cfg.locks;
        // A project the config does not declare gets the server's settings only
        // (`DefaultProjCfg`) when Atlantis's repos.yaml is known.
        let server_mode = self.input.server_locks.map(|s| s.mode);
        let mode = match self.input.server_locks.filter(|s| s.given) {
            Some(s) => s.mode,
            None => own
                .mode
                .or(repo.mode)
                .or(server_mode)
                .unwrap_or(self.input.server.lock_mode),
        };
        Selected {
            key: LockKey::new(self.input.repo, dir, ws, name),
            locks: LockSettings {
                mode: Some(mode),
                priority: own.priority.or(repo.priority),
                timeout: own.timeout.or(repo.timeout),
            },
        }
    }

    /// `-p` / `-d` / `-w`: the named projects, no changed files involved.
    fn targeted(&self) -> MapOutcome {
        let f = self.input.filters;
        let ws = f.workspace.as_deref().unwrap_or("default");
        if let Some(name) = &f.project {
            let found: Vec<Selected> = self
                .projects
                .iter()
                .filter(|p| p.name.as_deref() == Some(name.as_str()))
                .filter(|p| f.dir.as_deref().is_none_or(|d| clean_path(d) == p.dir))
                .filter(|p| f.workspace.as_deref().is_none_or(|w| w == p.workspace))
                .map(|p| self.select_configured(p))
                .collect();
            if found.is_empty() {
                return MapOutcome::Unresolvable(format!("no configured project named {name:?}"));
            }
            return MapOutcome::Projects(found);
        }
        let dir = f.dir.as_deref().unwrap_or(".");
        if dir.contains(['*', '?', '[']) {
            let Ok(glob) = super::pattern::compile_glob(dir) else {
                return MapOutcome::Unresolvable(format!("bad -d glob {dir:?}"));
            };
            let found: Vec<Selected> = self
                .projects
                .iter()
                .filter(|p| glob.is_match(&p.dir) && p.workspace == ws)
                .map(|p| self.select_configured(p))
                .collect();
            if found.is_empty() {
                return MapOutcome::Unresolvable(format!(
                    "-d glob {dir:?} matches no configured project; expanding it needs a checkout"
                ));
            }
            return MapOutcome::Projects(found);
        }
        let dir = clean_path(dir);
        let at_dir: Vec<&&ProjectSpec> = self.projects.iter().filter(|p| p.dir == dir).collect();
        let exact: Vec<Selected> = at_dir
            .iter()
            .filter(|p| p.workspace == ws)
            .map(|p| self.select_configured(p))
            .collect();
        if !exact.is_empty() {
            return MapOutcome::Projects(exact);
        }
        if !at_dir.is_empty() {
            return MapOutcome::Unresolvable(format!(
                "workspace {ws:?} is not configured for dir {dir:?} (Atlantis refuses it)"
            ));
        }
        if self.autodiscover_enabled() && self.is_ignored_dir(&dir) {
            return MapOutcome::Projects(Vec::new());
        }
        MapOutcome::Projects(vec![self.selected(&dir, ws, "", &LockSettings::default())])
    }

    /// Bare command: configured projects whose `when_modified` matches, then autodiscovery.
    fn modified(&self) -> MapOutcome {
        let files = self.input.files;
        let mut need = Vec::new();
        let mut out = Vec::new();
        for p in &self.projects {
            if self.input.command == CommandKind::Autoplan && !p.autoplan_enabled {
                continue;
            }
            let hits: Vec<&ChangedFile> = files
                .iter()
                .filter(|f| p.patterns.matches_or_parent_matches(&f.path))
                .collect();
            if hits.is_empty() {
                continue;
            }
            if hits.iter().all(|f| f.removed) {
                match self.input.dirs.get(&p.dir) {
                    None => {
                        need.push(p.dir.clone());
                        continue;
                    }
                    Some(None) => continue,
                    Some(Some(_)) => {}
                }
            }
            out.push(self.select_configured(p));
        }
        if self.autodiscover_enabled() {
            match self.discover() {
                Discovered::Dirs(dirs) => {
                    let configured: Vec<&str> =
                        self.projects.iter().map(|p| p.dir.as_str()).collect();
                    for d in dirs {
                        if !configured.contains(&d.as_str()) && !self.is_ignored_dir(&d) {
                            out.push(self.selected(&d, "default", "", &LockSettings::default()));
                        }
                    }
                }
                Discovered::Need(dirs) => need.extend(dirs),
            }
        }
        if !need.is_empty() {
            need.sort();
            need.dedup();
            return MapOutcome::NeedDirs(need);
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|s| seen.insert(s.key.clone()));
        MapOutcome::Projects(out)
    }

    /// `DetermineProjects`: the dirs holding changed Terraform files, in first-seen order.
    fn discover(&self) -> Discovered {
        let dirs = self.input.dirs;
        let mut found: BTreeMap<String, (usize, bool)> = BTreeMap::new();
        let mut need = Vec::new();
        for (order, f) in self.input.files.iter().enumerate() {
            if IGNORED_FRAGMENTS.iter().any(|frag| f.path.contains(frag))
                || !self
                    .input
                    .server
                    .autoplan_file_list
                    .matches_or_parent_matches(&f.path)
            {
                continue;
            }
            let dir = parent(&f.path);
            let project_dir = if base(&dir) == "env" {
                parent(&dir)
            } else if format!("/{dir}/").contains("/modules/") {
                let with_slash = format!("{dir}/");
                let modules_parent = clean_path(with_slash.split("modules/").next().unwrap_or(""));
                match dirs.get(&modules_parent) {
                    None => {
                        need.push(modules_parent);
                        continue;
                    }
                    Some(Some(entries)) if entries.iter().any(is_project_indicator) => {
                        modules_parent
                    }
                    Some(_) => continue,
                }
            } else {
                dir
            };
            let entry = found.entry(project_dir).or_insert((order, true));
            entry.1 &= f.removed;
        }
        // A dir whose every change is a deletion may be gone entirely (`removeNonExistingDirs`).
        let mut ordered: Vec<(usize, String)> = Vec::new();
        for (dir, (order, all_removed)) in found {
            if all_removed {
                match dirs.get(&dir) {
                    None => {
                        need.push(dir);
                        continue;
                    }
                    Some(None) => continue,
                    Some(Some(_)) => {}
                }
            }
            ordered.push((order, dir));
        }
        if !need.is_empty() {
            return Discovered::Need(need);
        }
        ordered.sort();
        Discovered::Dirs(ordered.into_iter().map(|(_, d)| d).collect())
    }
}

enum Discovered {
    Dirs(Vec<String>),
    Need(Vec<String>),
}

/// `raw.IsProjectIndicatorFile`.
fn is_project_indicator(e: &DirEntry) -> bool {
    !e.is_dir
        && (e.name.ends_with(".tf")
            || e.name.ends_with(".tf.json")
            || e.name.ends_with(".tofu")
            || e.name.ends_with(".tofu.json")
            || e.name == "terragrunt.hcl")
}

/// `path.Dir` for repo-relative paths (`.` at the root).
fn parent(p: &str) -> String {
    match p.rsplit_once('/') {
        Some((d, _)) => clean_path(d),
        None => ".".to_string(),
    }
}

/// `path.Base`.
fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
