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
use super::yaml_guard;
use crate::vocab::{LockMode, Priority};

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
///
/// The file is untrusted (any pull request writes it): it is bounded first (see [`yaml_guard`]),
/// and so are its `when_modified` and `ignore_paths` patterns, before anything is compiled.
pub fn parse_atlantis_yaml(bytes: &[u8]) -> Result<RepoConfig, InvalidProjectConfig> {
    yaml_guard::prescan(bytes).map_err(|e| invalid("atlantis.yaml", e.to_string()))?;
    let doc: AtlantisYaml =
        serde_norway::from_slice(bytes).map_err(|e| invalid("atlantis.yaml", e.to_string()))?;
    check_pattern_counts(&doc)?;
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

/// Caps the patterns of an untrusted file: per project, per file, and per pattern length.
fn check_pattern_counts(doc: &AtlantisYaml) -> Result<(), InvalidProjectConfig> {
    use yaml_guard::{MAX_PATTERN_BYTES, MAX_PATTERNS_PER_FILE, MAX_PATTERNS_PER_PROJECT};
    let check_list = |at: String, list: &[String]| {
        if list.len() > MAX_PATTERNS_PER_PROJECT {
            return Err(invalid(
                &at,
                format!(
                    "has {} patterns; the proxy reads at most {MAX_PATTERNS_PER_PROJECT}",
                    list.len()
                ),
            ));
        }
        if list.iter().any(|p| p.len() > MAX_PATTERN_BYTES) {
            return Err(invalid(
                &at,
                format!("has a pattern longer than {MAX_PATTERN_BYTES} bytes"),
            ));
        }
        Ok(list.len())
    };
    let mut total = 0usize;
    for (i, p) in doc.projects.iter().enumerate() {
        if let Some(wm) = p.autoplan.as_ref().and_then(|a| a.when_modified.as_deref()) {
            total += check_list(
                format!("atlantis.yaml.projects[{i}].autoplan.when_modified"),
                wm,
            )?;
        }
    }
    if let Some(a) = &doc.autodiscover {
        total += check_list(
            "atlantis.yaml.autodiscover.ignore_paths".into(),
            &a.ignore_paths,
        )?;
    }
    if total > MAX_PATTERNS_PER_FILE {
        return Err(invalid(
            "atlantis.yaml",
            format!("has {total} patterns; the proxy reads at most {MAX_PATTERNS_PER_FILE}"),
        ));
    }
    Ok(())
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

    #[test]
    fn the_bracket_bomb_is_refused_fast() {
        let mut bomb = b"version: 3\nprojects: ".to_vec();
        bomb.extend(std::iter::repeat_n(b'[', 16 * 1024));
        let started = std::time::Instant::now();
        let e = parse_atlantis_yaml(&bomb).unwrap_err();
        assert!(e.problem.contains("nests flow collections"), "{e}");
        // Parsing it took 2.7 s; the scan takes microseconds (a wide margin for slow CI).
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
    }

    #[test]
    fn pattern_lists_are_capped() {
        let list: Vec<String> = (0..=yaml_guard::MAX_PATTERNS_PER_PROJECT)
            .map(|i| format!("\"m{i}/*.tf\""))
            .collect();
        let yaml = format!(
            "version: 3\nprojects:\n  - dir: a\n    autoplan:\n      when_modified: [{}]\n",
            list.join(", ")
        );
        let e = parse_atlantis_yaml(yaml.as_bytes()).unwrap_err();
        assert_eq!(e.at, "atlantis.yaml.projects[0].autoplan.when_modified");
        let long = "x".repeat(yaml_guard::MAX_PATTERN_BYTES + 1);
        let yaml = format!(
            "version: 3\nprojects:\n  - dir: a\n    autoplan: {{when_modified: [{long}]}}\n"
        );
        assert!(parse_atlantis_yaml(yaml.as_bytes()).is_err());
        let per = yaml_guard::MAX_PATTERNS_PER_PROJECT;
        let projects = yaml_guard::MAX_PATTERNS_PER_FILE / per + 1;
        let mut yaml = String::from("version: 3\nprojects:\n");
        for p in 0..projects {
            let wm: Vec<String> = (0..per).map(|i| format!("p{p}/m{i}")).collect();
            yaml.push_str(&format!(
                "  - dir: d{p}\n    autoplan: {{when_modified: [{}]}}\n",
                wm.join(", ")
            ));
        }
        let e = parse_atlantis_yaml(yaml.as_bytes()).unwrap_err();
        assert_eq!(e.at, "atlantis.yaml");
    }
}
