//! `/api/*`, `DELETE /locks`, global apply lock and list routes.

use serde_json::json;

use crate::classify::testutil::run;
use crate::classify::{
    ClassifyConfig, CommandKind, GlobalApplyAction, LockKey, LockMode, LockSet, LockTarget,
    Operation, PassthroughReason as R, RepoLockModes, Secret, Vcs,
};

fn api(path: &str, body: serde_json::Value, cfg: &ClassifyConfig) -> Operation {
    let h = [
        ("x-atlantis-token", "tok"),
        ("content-type", "application/json"),
    ];
    run("POST", path, &h, body.to_string().as_bytes(), cfg).expect("api calls never error")
}

/// Gated API calls need the proxy to know Atlantis's API secret.
fn api_cfg() -> ClassifyConfig {
    ClassifyConfig {
        api_secret: Some(Secret::new("tok")),
        ..ClassifyConfig::accepting_unsigned()
    }
}

#[test]
fn api_calls_are_not_gated_without_the_api_secret_or_with_a_wrong_token() {
    let body = json!({"Repository": "o/r", "Ref": "main", "Type": "Github", "Paths": [{"Directory": "."}]});
    let no_secret = ClassifyConfig::accepting_unsigned();
    assert_eq!(
        reason(api("/api/plan", body.clone(), &no_secret)),
        R::ApiNotGated
    );
    assert_eq!(
        reason(api("/api/apply", body.clone(), &no_secret)),
        R::ApiNotGated
    );
    let h = [
        ("x-atlantis-token", "tok2"),
        ("content-type", "application/json"),
    ];
    let wrong = run(
        "POST",
        "/api/plan",
        &h,
        body.to_string().as_bytes(),
        &api_cfg(),
    )
    .unwrap();
    assert_eq!(reason(wrong), R::ApiRejected);
    assert!(matches!(
        api("/api/plan", body, &api_cfg()),
        Operation::Acquire(_)
    ));
}

fn reason(op: Operation) -> R {
    match op {
        Operation::Passthrough { reason } => reason,
        other => panic!("expected passthrough, got {other:?}"),
    }
}

#[test]
fn api_plan_with_paths_names_its_keys() {
    let body = json!({"Repository": "acme/infra", "Ref": "main", "Type": "Github", "PR": 2,
        "Paths": [{"Directory": "./net/", "Workspace": "prod"}, {"directory": "", "workspace": ""}]});
    let Operation::Acquire(a) = api("/api/plan", body, &api_cfg()) else {
        panic!("expected acquire");
    };
    assert_eq!(a.command, CommandKind::ApiPlan);
    assert!(a.command.is_api());
    assert_eq!(
        (a.pull.repo.as_str(), a.pull.number, a.vcs),
        ("acme/infra", 2, Vcs::Github)
    );
    assert_eq!(
        a.locks,
        LockSet::Resolved(vec![
            LockKey::new("acme/infra", "net", "prod", ""),
            LockKey::new("acme/infra", ".", "default", ""),
        ])
    );
    assert_eq!(a.meta.api_ref.as_deref(), Some("main"));
}

#[test]
fn api_keys_match_case_insensitively_and_projects_stay_unresolved() {
    let body = json!({"repository": "g/s/r", "REF": "feat", "type": "Gitlab",
        "projects": ["vpc"], "paths": [{"DIRECTORY": "a", "project_name": "named"}]});
    let Operation::Acquire(a) = api("/api/apply", body, &api_cfg()) else {
        panic!("expected acquire");
    };
    assert_eq!(a.command, CommandKind::ApiApply);
    assert_eq!(
        a.locks,
        LockSet::Unresolved {
            targets: vec![
                LockTarget::Project { name: "vpc".into() },
                LockTarget::Project {
                    name: "named".into()
                }
            ]
        }
    );
    // no PR: a fresh synthetic negative pull each call
    assert!(a.pull.number < 0);
}

#[test]
fn api_calls_atlantis_refuses_pass_through() {
    let c = api_cfg();
    let ok = json!({"Repository": "o/r", "Ref": "main", "Type": "Github", "Projects": ["p"]});
    for bad in [
        json!({"Ref": "main", "Type": "Github", "Projects": ["p"]}),
        json!({"Repository": "o/r", "Type": "Github", "Projects": ["p"]}),
        json!({"Repository": "o/r", "Ref": "main", "Type": "github", "Projects": ["p"]}),
        json!({"Repository": "o/r", "Ref": "main", "Type": "Github", "PR": "2"}),
        json!({"Repository": "o/r", "Ref": "main", "Type": "Github", "Paths": [{"Directory": ".", "Workspace": "../x"}]}),
        json!([1, 2]),
    ] {
        assert_eq!(
            reason(api("/api/plan", bad.clone(), &c)),
            R::ApiRejected,
            "{bad}"
        );
    }
    let none = json!({"Repository": "o/r", "Ref": "main", "Type": "Github"});
    assert_eq!(reason(api("/api/plan", none, &c)), R::CommandTakesNoLock);
    let with_secret = ClassifyConfig {
        api_secret: Some(Secret::new("other")),
        ..c.clone()
    };
    assert_eq!(
        reason(api("/api/plan", ok.clone(), &with_secret)),
        R::ApiRejected
    );
    let right = ClassifyConfig {
        api_secret: Some(Secret::new("tok")),
        ..c
    };
    assert!(matches!(
        api("/api/plan", ok, &right),
        Operation::Acquire(_)
    ));
}

#[test]
fn api_lock_modes() {
    let mut c = api_cfg();
    let r = RepoLockModes {
        default: Some(LockMode::OnApply),
        ..Default::default()
    };
    c.lock_modes.repos.insert("o/r".into(), r);
    let body = json!({"Repository": "o/r", "Ref": "main", "Type": "Github", "Projects": ["p"]});
    assert_eq!(
        reason(api("/api/plan", body.clone(), &c)),
        R::LockModeExempt
    );
    assert!(matches!(api("/api/apply", body, &c), Operation::Acquire(_)));
}

fn delete(query: &str, cfg: &ClassifyConfig) -> Operation {
    run("DELETE", &format!("/locks{query}"), &[], b"", cfg).expect("never errors")
}

#[test]
fn delete_lock_accepts_raw_single_and_double_encoded_ids() {
    let c = api_cfg();
    let want = Operation::ReleaseKey {
        key: LockKey::new("owner/repo", ".", "default", ""),
    };
    for q in [
        "?id=owner/repo/./default/",
        "?id=owner%2Frepo%2F.%2Fdefault%2F",
        "?id=owner%252Frepo%252F.%252Fdefault%252F",
        "?x=1&id=owner%252Frepo%252F.%252Fdefault%252F",
    ] {
        assert_eq!(delete(q, &c), want, "{q}");
    }
    // a raw '+' is a space to Atlantis's router; a literal '+' must come as %2B
    let Operation::ReleaseKey { key } = delete("?id=o/r/./default/a+b", &c) else {
        panic!()
    };
    assert_eq!(key.project, "a b");
    let Operation::ReleaseKey { key } = delete("?id=o/r/./default/a%2Bb", &c) else {
        panic!()
    };
    assert_eq!(key.project, "a+b");
    let Operation::ReleaseKey { key } =
        delete("?id=o%2Fr%2Fdir%2520with%2520space%2Fdefault%2Fp", &c)
    else {
        panic!()
    };
    assert_eq!(key, LockKey::new("o/r", "dir with space", "default", "p"));
}

#[test]
fn delete_lock_ids_atlantis_cannot_use_pass_through() {
    let c = api_cfg();
    for q in [
        "",
        "?id=",
        "?other=1",
        "?id=%zz",
        "?id=owner%25zzrepo/./default/",
        "?id=owner/repo/./default",
    ] {
        assert_eq!(reason(delete(q, &c)), R::BadLockId, "{q}");
    }
}

#[test]
fn delete_lock_uses_known_repos_for_subgroups() {
    let mut c = api_cfg();
    c.lock_modes
        .repos
        .insert("group/sub/repo".into(), RepoLockModes::default());
    let Operation::ReleaseKey { key } =
        delete("?id=group%2Fsub%2Frepo%2Fmod%2Fvpc%2Fdefault%2F", &c)
    else {
        panic!()
    };
    assert_eq!(
        key,
        LockKey::new("group/sub/repo", "mod/vpc", "default", "")
    );
}

#[test]
fn other_lock_routes() {
    let c = api_cfg();
    assert_eq!(
        run("GET", "/api/locks", &[], b"", &c),
        Ok(Operation::ListLocks)
    );
    assert_eq!(
        run("POST", "/apply/lock", &[], b"", &c),
        Ok(Operation::GlobalApply(GlobalApplyAction::Lock))
    );
    assert_eq!(
        run("DELETE", "/apply/unlock", &[], b"", &c),
        Ok(Operation::GlobalApply(GlobalApplyAction::Unlock))
    );
    for (m, p) in [
        ("GET", "/"),
        ("GET", "/jobs/1/ws"),
        ("POST", "/api/locks"),
        ("GET", "/locks"),
        ("GET", "/apply/lock"),
    ] {
        assert_eq!(
            reason(run(m, p, &[], b"", &c).expect("ok")),
            R::NotLockRoute,
            "{m} {p}"
        );
    }
}
