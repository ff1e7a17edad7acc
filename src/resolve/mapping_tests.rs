use super::*;
use crate::resolve::config::AutoDiscoverMode;
use crate::resolve::parse_atlantis_yaml;
use crate::vocab::Priority;

fn server() -> ServerDefaults {
    ServerDefaults {
        autodiscover: AutoDiscoverMode::Auto,
        autoplan_file_list: PatternList::new(crate::resolve::DEFAULT_AUTOPLAN_FILE_LIST.split(','))
            .unwrap(),
        lock_mode: LockMode::OnPlan,
    }
}

fn files(paths: &[&str]) -> Vec<ChangedFile> {
    paths.iter().map(|p| ChangedFile::modified(*p)).collect()
}

fn run(
    cfg: Option<&RepoConfig>,
    files: &[ChangedFile],
    command: CommandKind,
    filters: &Filters,
    dirs: &DirIndex,
) -> MapOutcome {
    let server = server();
    map_projects(&MapInput {
        repo: "acme/infra",
        config: cfg,
        files,
        command,
        filters,
        base_branch: Some("main"),
        server: &server,
        dirs,
        server_locks: None,
    })
}

fn keys(out: MapOutcome) -> Vec<String> {
    match out {
        MapOutcome::Projects(p) => p.into_iter().map(|s| s.key.to_string()).collect(),
        other => panic!("expected projects, got {other:?}"),
    }
}

fn bare(cfg: Option<&RepoConfig>, paths: &[&str]) -> Vec<String> {
    keys(run(
        cfg,
        &files(paths),
        CommandKind::Plan,
        &Filters::default(),
        &DirIndex::new(),
    ))
}

const THREE: &[u8] = br#"
version: 3
projects:
  - name: network
    dir: network
  - name: database
    dir: database
    workspace: prod
    repo_locks: {priority: critical}
  - name: apps
    dir: apps
    autoplan: {when_modified: ["*.tf", "../modules/**/*.tf"], enabled: false}
"#;

#[test]
fn one_of_three_projects_touched() {
    let cfg = parse_atlantis_yaml(THREE).unwrap();
    assert_eq!(
        bare(Some(&cfg), &["database/main.tf", "README.md"]),
        vec!["acme/infra/database/prod/database"]
    );
}

#[test]
fn custom_when_modified_reaches_outside_the_project_dir() {
    let cfg = parse_atlantis_yaml(THREE).unwrap();
    assert_eq!(
        bare(Some(&cfg), &["modules/vpc/main.tf"]),
        vec!["acme/infra/apps/default/apps"]
    );
    // ... but not for files the custom list leaves out (apps/sub is not `*.tf` in apps).
    assert!(bare(Some(&cfg), &["apps/sub/x.tf"]).is_empty());
}

#[test]
fn autoplan_skips_disabled_projects_but_plan_does_not() {
    let cfg = parse_atlantis_yaml(THREE).unwrap();
    let changed = files(&["apps/main.tf"]);
    let f = Filters::default();
    let dirs = DirIndex::new();
    assert!(keys(run(Some(&cfg), &changed, CommandKind::Autoplan, &f, &dirs)).is_empty());
    assert_eq!(
        keys(run(Some(&cfg), &changed, CommandKind::Plan, &f, &dirs)),
        vec!["acme/infra/apps/default/apps"]
    );
}

#[test]
fn lock_settings_merge_project_over_repo_over_server() {
    let cfg = parse_atlantis_yaml(
        b"version: 3\nrepo_locks: {mode: on_apply, timeout: 1h}\nprojects:\n  - dir: a\n    repo_locks: {priority: high}\n",
    )
    .unwrap();
    let MapOutcome::Projects(p) = run(
        Some(&cfg),
        &files(&["a/main.tf"]),
        CommandKind::Plan,
        &Filters::default(),
        &DirIndex::new(),
    ) else {
        panic!()
    };
    assert_eq!(p[0].locks.mode, Some(LockMode::OnApply));
    assert_eq!(p[0].locks.priority, Some(Priority::High));
    assert_eq!(
        p[0].locks.timeout,
        Some(std::time::Duration::from_secs(3600))
    );
}

#[test]
fn autodiscovery_without_atlantis_yaml() {
    assert_eq!(
        bare(
            None,
            &[
                "a/main.tf",
                "b/c/vars.tfvars",
                "docs/x.md",
                "main.tf",
                "a/other.tf"
            ]
        ),
        vec![
            "acme/infra/a/default/",
            "acme/infra/b/c/default/",
            "acme/infra/./default/"
        ]
    );
}

#[test]
fn autodiscovery_env_dirs_and_ignored_files() {
    assert_eq!(
        bare(None, &["proj/env/dev.tfvars"]),
        vec!["acme/infra/proj/default/"]
    );
    assert!(bare(None, &["proj/terraform.tfstate", "proj/.tflint.hcl"]).is_empty());
    // Not in --autoplan-file-list.
    assert!(bare(None, &["proj/script.sh", "proj/terragrunt.yaml"]).is_empty());
}

#[test]
fn autodiscovery_modules_need_the_parent_listing() {
    let changed = files(&["proj/modules/vpc/main.tf", "modules/shared/x.tf"]);
    let f = Filters::default();
    let out = run(None, &changed, CommandKind::Plan, &f, &DirIndex::new());
    assert_eq!(out, MapOutcome::NeedDirs(vec![".".into(), "proj".into()]));

    let mut dirs = DirIndex::new();
    let entry = |n: &str, d: bool| DirEntry {
        name: n.into(),
        is_dir: d,
    };
    // proj has a main.tf: the module's parent is the project; the root has none: nothing.
    dirs.insert(
        "proj".into(),
        Some(vec![entry("main.tf", false), entry("modules", true)]),
    );
    dirs.insert(
        ".".into(),
        Some(vec![entry("README.md", false), entry("proj", true)]),
    );
    assert_eq!(
        keys(run(None, &changed, CommandKind::Plan, &f, &dirs)),
        vec!["acme/infra/proj/default/"]
    );
}

#[test]
fn autodiscovery_drops_deleted_dirs() {
    let changed = vec![
        ChangedFile::removed("gone/main.tf"),
        ChangedFile::removed("kept/old.tf"),
    ];
    let f = Filters::default();
    let out = run(None, &changed, CommandKind::Plan, &f, &DirIndex::new());
    assert_eq!(
        out,
        MapOutcome::NeedDirs(vec!["gone".into(), "kept".into()])
    );
    let mut dirs = DirIndex::new();
    dirs.insert("gone".into(), None);
    dirs.insert(
        "kept".into(),
        Some(vec![DirEntry {
            name: "main.tf".into(),
            is_dir: false,
        }]),
    );
    assert_eq!(
        keys(run(None, &changed, CommandKind::Plan, &f, &dirs)),
        vec!["acme/infra/kept/default/"]
    );
}

#[test]
fn autodiscover_modes_and_ignore_paths() {
    // auto + configured projects: no discovery.
    let cfg = parse_atlantis_yaml(b"version: 3\nprojects: [{dir: a}]\n").unwrap();
    assert_eq!(
        bare(Some(&cfg), &["a/x.tf", "b/x.tf"]),
        vec!["acme/infra/a/default/"]
    );
    // enabled: discovery too, but not for configured dirs or ignored paths.
    let cfg = parse_atlantis_yaml(
        b"version: 3\nautodiscover: {mode: enabled, ignore_paths: ['legacy/**']}\nprojects: [{dir: a, workspace: w}]\n",
    )
    .unwrap();
    assert_eq!(
        bare(Some(&cfg), &["a/x.tf", "b/x.tf", "legacy/old/x.tf"]),
        vec!["acme/infra/a/w/", "acme/infra/b/default/"]
    );
    // disabled with no projects: nothing at all.
    let cfg = parse_atlantis_yaml(b"version: 3\nautodiscover: {mode: disabled}\n").unwrap();
    assert!(bare(Some(&cfg), &["b/x.tf"]).is_empty());
}

#[test]
fn branch_filter_uses_the_base_branch() {
    let cfg = parse_atlantis_yaml(
        b"version: 3\nprojects:\n  - {dir: a, branch: /^main$/}\n  - {dir: b, branch: /^release/}\n",
    )
    .unwrap();
    assert_eq!(
        bare(Some(&cfg), &["a/x.tf", "b/x.tf"]),
        vec!["acme/infra/a/default/"]
    );
}

#[test]
fn dir_globs_in_config_are_unresolvable() {
    let cfg = parse_atlantis_yaml(b"version: 3\nprojects: [{dir: 'envs/*'}]\n").unwrap();
    let out = run(
        Some(&cfg),
        &files(&["envs/a/x.tf"]),
        CommandKind::Plan,
        &Filters::default(),
        &DirIndex::new(),
    );
    assert!(matches!(out, MapOutcome::Unresolvable(_)), "{out:?}");
}

#[test]
fn targeted_commands() {
    let cfg = parse_atlantis_yaml(THREE).unwrap();
    let t = |dir: Option<&str>, ws: Option<&str>, p: Option<&str>| {
        let f = Filters {
            dir: dir.map(String::from),
            workspace: ws.map(String::from),
            project: p.map(String::from),
        };
        run(Some(&cfg), &[], CommandKind::Plan, &f, &DirIndex::new())
    };
    assert_eq!(
        keys(t(None, None, Some("network"))),
        vec!["acme/infra/network/default/network"]
    );
    assert!(matches!(
        t(None, None, Some("nope")),
        MapOutcome::Unresolvable(_)
    ));
    assert_eq!(
        keys(t(Some("database"), Some("prod"), None)),
        vec!["acme/infra/database/prod/database"]
    );
    // A configured dir with another workspace: Atlantis refuses, so do we.
    assert!(matches!(
        t(Some("database"), None, None),
        MapOutcome::Unresolvable(_)
    ));
    // An unconfigured dir is an unnamed project; -w alone means the root dir.
    assert_eq!(
        keys(t(Some("./other/"), None, None)),
        vec!["acme/infra/other/default/"]
    );
    assert_eq!(
        keys(t(None, Some("staging"), None)),
        vec!["acme/infra/./staging/"]
    );
    // A -d glob picks configured dirs.
    assert_eq!(
        keys(t(Some("*work"), None, None)),
        vec!["acme/infra/network/default/network"]
    );
}

#[test]
fn commands_lock_by_mode() {
    use crate::vocab::command_locks as locks;
    use CommandKind::*;
    assert!(locks(LockMode::OnPlan, Plan) && !locks(LockMode::OnApply, Plan));
    assert!(locks(LockMode::OnApply, Apply) && !locks(LockMode::OnPlan, Apply));
    assert!(locks(LockMode::OnApply, Import) && !locks(LockMode::Disabled, StateRm));
}
