//! A repo's `atlantis.yaml`, read leniently: only the keys that decide projects and locks.
//!
//! Atlantis validates the rest of the file (workflows, policies, ...) and reports problems on the
//! pull itself; the proxy must not reject what Atlantis accepts, so unknown keys are ignored here
//! (unlike the proxy's own table, which is strict).

use serde::Deserialize;

use super::config::AutoDiscoverMode;
use super::config::{
    InvalidProjectConfig, RawAutoDiscover, RawAutoplan, RawProject, RawRepoLocks, RepoConfig,
    validate_repo,
};
use crate::classify::{LockMode, Priority};

fn invalid(at: &str, problem: impl Into<String>) -> InvalidProjectConfig {
    InvalidProjectConfig {
        at: at.to_string(),
        problem: problem.into(),
    }
}

/// A repo's `atlantis.yaml`: only the keys that decide projects and locks; others are ignored
/// (workflows, policies, ...), because Atlantis validates those and we must not reject what it
/// accepts.
#[derive(Debug, Deserialize)]
struct AtlantisYaml {
    version: Option<i64>,
    #[serde(default)]
    projects: Vec<LenientProject>,
    #[serde(default)]
    autodiscover: Option<LenientAutoDiscover>,
    #[serde(default)]
    repo_locks: Option<LenientRepoLocks>,
}

#[derive(Debug, Deserialize)]
struct LenientProject {
    name: Option<String>,
    dir: Option<String>,
    workspace: Option<String>,
    autoplan: Option<LenientAutoplan>,
    branch: Option<String>,
    repo_locks: Option<LenientRepoLocks>,
    repo_locking: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct LenientAutoplan {
    when_modified: Option<Vec<String>>,
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct LenientRepoLocks {
    mode: Option<LockMode>,
    priority: Option<Priority>,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LenientAutoDiscover {
    mode: Option<AutoDiscoverMode>,
    #[serde(default)]
    ignore_paths: Vec<String>,
}

impl From<LenientRepoLocks> for RawRepoLocks {
    fn from(l: LenientRepoLocks) -> Self {
        Self {
            mode: l.mode,
            priority: l.priority,
            timeout: l.timeout,
        }
    }
}

/// Parses and validates a repo's `atlantis.yaml` (version 2 or 3, as Atlantis requires).
pub fn parse_atlantis_yaml(bytes: &[u8]) -> Result<RepoConfig, InvalidProjectConfig> {
    let doc: AtlantisYaml =
        serde_norway::from_slice(bytes).map_err(|e| invalid("atlantis.yaml", e.to_string()))?;
    match doc.version {
        Some(2 | 3) => {}
        Some(v) => {
            return Err(invalid(
                "atlantis.yaml.version",
                format!("{v} is not 2 or 3"),
            ));
        }
        None => return Err(invalid("atlantis.yaml.version", "is required")),
    }
    let projects: Vec<RawProject> = doc
        .projects
        .into_iter()
        .map(|p| RawProject {
            name: p.name,
            dir: p.dir,
            workspace: p.workspace,
            when_modified: None,
            autoplan: p.autoplan.map(|a| RawAutoplan {
                when_modified: a.when_modified,
                enabled: a.enabled,
            }),
            branch: p.branch,
            repo_locks: p.repo_locks.map(Into::into),
            repo_locking: p.repo_locking,
        })
        .collect();
    let locks = doc.repo_locks.map(RawRepoLocks::from);
    let autodiscover = doc.autodiscover.map(|a| RawAutoDiscover {
        mode: a.mode,
        ignore_paths: a.ignore_paths,
    });
    validate_repo(
        "atlantis.yaml",
        &projects,
        locks.as_ref(),
        autodiscover.as_ref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::config::AutoDiscoverMode;

    #[test]
    fn atlantis_yaml_ignores_keys_it_does_not_need() {
        let cfg = parse_atlantis_yaml(
            br#"
version: 3
automerge: true
workflows: {custom: {plan: {steps: [init, plan]}}}
repo_locks: {mode: on_apply}
autodiscover: {mode: enabled, ignore_paths: ["legacy/**"]}
projects:
  - name: db
    dir: database
    workflow: custom
    execution_order_group: 1
    repo_locks: {mode: on_plan, priority: critical, resource_isolation: strict}
  - dir: apps
    repo_locking: false
"#,
        )
        .unwrap();
        assert_eq!(cfg.locks.mode, Some(LockMode::OnApply));
        assert_eq!(cfg.projects[0].locks.priority, Some(Priority::Critical));
        assert_eq!(cfg.projects[1].locks.mode, Some(LockMode::Disabled));
        let ad = cfg.autodiscover.unwrap();
        assert_eq!(ad.mode, AutoDiscoverMode::Enabled);
        assert!(ad.is_ignored("legacy/old"));
    }

    #[test]
    fn atlantis_yaml_needs_a_version() {
        let e = parse_atlantis_yaml(b"projects: [{dir: .}]\n").unwrap_err();
        assert_eq!(e.at, "atlantis.yaml.version");
        assert!(
            parse_atlantis_yaml(b"version: 3\nprojects: [{dir: ., workspace: ../x}]\n").is_err()
        );
    }
}
