//! Every VCS and event kind, with payloads shaped like the real ones.

use http::StatusCode;
use serde_json::json;

use crate::classify::signature::tests::sign_sha256;
use crate::classify::testutil::*;
use crate::classify::{
    Acquire, ClassifyConfig, ClassifyError, CommandKind, LockKey, LockMode, LockSet, LockTarget,
    Operation, PassthroughReason as R, PullRef, ReleaseCause, RepoLockModes, Secret, Vcs,
};

const GH: &[(&str, &str)] = &[
    ("x-github-event", "issue_comment"),
    ("content-type", "application/json"),
];
const GH_PR: &[(&str, &str)] = &[
    ("x-github-event", "pull_request"),
    ("content-type", "application/json"),
];

fn cfg() -> ClassifyConfig {
    ClassifyConfig {
        vcs_bot_users: vec!["atlantis-bot".into()],
        ..ClassifyConfig::default()
    }
}

fn acquire(op: Result<Operation, ClassifyError>) -> Acquire {
    match op {
        Ok(Operation::Acquire(a)) => a,
        other => panic!("expected Acquire, got {other:?}"),
    }
}

fn pass(op: Result<Operation, ClassifyError>) -> R {
    match op {
        Ok(Operation::Passthrough { reason }) => reason,
        other => panic!("expected Passthrough, got {other:?}"),
    }
}

fn release(op: Result<Operation, ClassifyError>) -> (PullRef, ReleaseCause) {
    match op {
        Ok(Operation::ReleasePull { pull, cause }) => (pull, cause),
        other => panic!("expected ReleasePull, got {other:?}"),
    }
}

fn changed() -> LockSet {
    LockSet::Unresolved {
        targets: vec![LockTarget::ChangedProjects],
    }
}

#[test]
fn github_plan_comment_acquires_for_the_pull() {
    let a = acquire(hook(
        GH,
        &github_comment("atlantis plan", "created"),
        &cfg(),
    ));
    assert_eq!(
        a.pull,
        PullRef {
            repo: "acme/infra".into(),
            number: 7
        }
    );
    assert_eq!(
        (a.user.as_str(), a.command, a.vcs),
        ("alice", CommandKind::Plan, Vcs::Github)
    );
    assert_eq!(a.locks, changed());
    assert_eq!(a.labels, ["priority:high"]);
    assert_eq!(
        a.meta.url.as_deref(),
        Some("https://github.com/acme/infra/pull/7")
    );
    assert_eq!(a.meta.author.as_deref(), Some("bob"));
}

#[test]
fn github_comment_flags_pick_the_lock_targets() {
    let a = acquire(hook(
        GH,
        &github_comment("@atlantis-bot plan -d infra/vpc -w staging", "created"),
        &cfg(),
    ));
    assert_eq!(
        a.locks,
        LockSet::Resolved(vec![LockKey::new("acme/infra", "infra/vpc", "staging", "")])
    );
    let a = acquire(hook(
        GH,
        &github_comment("run plan -w prod", "created"),
        &cfg(),
    ));
    assert_eq!(
        a.locks,
        LockSet::Resolved(vec![LockKey::new("acme/infra", ".", "prod", "")])
    );
    let a = acquire(hook(
        GH,
        &github_comment("atlantis plan -p vpc", "created"),
        &cfg(),
    ));
    assert_eq!(
        a.locks,
        LockSet::Unresolved {
            targets: vec![LockTarget::Project { name: "vpc".into() }]
        }
    );
    let a = acquire(hook(
        GH,
        &github_comment("atlantis plan -d 'modules/*'", "created"),
        &cfg(),
    ));
    assert_eq!(
        a.locks,
        LockSet::Unresolved {
            targets: vec![LockTarget::DirGlob {
                pattern: "modules/*".into(),
                workspace: None
            }]
        }
    );
    let all = ClassifyConfig {
        allow_commands: crate::classify::CommentCommandName::ALL.to_vec(),
        ..cfg()
    };
    let a = acquire(hook(
        GH,
        &github_comment("atlantis import -d x aws_s3.b id", "created"),
        &all,
    ));
    assert_eq!(a.command, CommandKind::Import);
    let a = acquire(hook(
        GH,
        &github_comment("atlantis state rm aws_s3.b", "created"),
        &all,
    ));
    assert_eq!(a.command, CommandKind::StateRm);
    let a = acquire(hook(
        GH,
        &github_comment("atlantis approve_policies", "created"),
        &cfg(),
    ));
    assert_eq!(a.command, CommandKind::ApprovePolicies);
}

#[test]
fn github_comments_that_take_no_lock_pass_through() {
    let c = cfg();
    let run = |body: &str, action: &str| pass(hook(GH, &github_comment(body, action), &c));
    assert_eq!(run("atlantis plan", "edited"), R::CommentNotCreated);
    assert_eq!(run("atlantis plan", "deleted"), R::CommentNotCreated);
    assert_eq!(run("looks good to me", "created"), R::NotACommand);
    assert_eq!(run("atlantis plan\nplease", "created"), R::NotACommand);
    assert_eq!(run("atlantis plan -e", "created"), R::CommentRejected);
    assert_eq!(run("atlantis help", "created"), R::CommentRejected);
    assert_eq!(run("atlantis version", "created"), R::CommandTakesNoLock);
    assert_eq!(run("atlantis cancel", "created"), R::CommandTakesNoLock);
    // apply does not lock under the default on_plan mode
    assert_eq!(run("atlantis apply", "created"), R::LockModeExempt);
    // import is not in Atlantis's default --allow-commands
    let strict = ClassifyConfig::default();
    assert_eq!(
        pass(hook(
            GH,
            &github_comment("atlantis import a b", "created"),
            &strict
        )),
        R::CommentRejected
    );
}

#[test]
fn github_comment_on_plain_issue_or_closed_pull() {
    let mut v = github_comment("atlantis plan", "created");
    v["issue"].as_object_mut().map(|o| o.remove("pull_request"));
    assert_eq!(pass(hook(GH, &v, &cfg())), R::NotOnPull);
    let mut v = github_comment("atlantis plan", "created");
    v["issue"]["state"] = json!("closed");
    assert_eq!(pass(hook(GH, &v, &cfg())), R::PullClosed);
    // only unlock runs on a closed pull
    let mut v = github_comment("atlantis unlock", "created");
    v["issue"]["state"] = json!("closed");
    let (pull, cause) = release(hook(GH, &v, &cfg()));
    assert_eq!((pull.number, cause), (7, ReleaseCause::UnlockComment));
}

#[test]
fn lock_modes_decide_which_commands_lock() {
    let mut c = cfg();
    let mut r = RepoLockModes {
        default: Some(LockMode::OnApply),
        ..Default::default()
    };
    r.dirs.insert("legacy".into(), LockMode::Disabled);
    c.lock_modes.repos.insert("acme/infra".into(), r);
    assert_eq!(
        acquire(hook(GH, &github_comment("atlantis apply", "created"), &c)).command,
        CommandKind::Apply
    );
    assert_eq!(
        pass(hook(
            GH,
            &github_comment("atlantis plan -d infra", "created"),
            &c
        )),
        R::LockModeExempt
    );
    assert_eq!(
        pass(hook(
            GH,
            &github_comment("atlantis import -d legacy a b", "created"),
            &c
        )),
        R::CommentRejected
    );
    c.allow_commands
        .push(crate::classify::CommentCommandName::Import);
    assert_eq!(
        pass(hook(
            GH,
            &github_comment("atlantis import -d legacy a b", "created"),
            &c
        )),
        R::LockModeExempt
    );
    assert_eq!(
        pass(hook(GH_PR, &github_pull("opened", false), &c)),
        R::LockModeExempt
    );
}

#[test]
fn github_pull_events() {
    let a = acquire(hook(GH_PR, &github_pull("opened", false), &cfg()));
    assert_eq!(
        (a.command, a.user.as_str(), a.pull.number),
        (CommandKind::Autoplan, "bob", 7)
    );
    assert_eq!(a.locks, changed());
    assert_eq!(a.labels, ["priority:critical"]);
    assert_eq!(a.meta.head_sha.as_deref(), Some("abc123"));
    assert_eq!(a.meta.base_branch.as_deref(), Some("main"));
    for action in ["synchronize", "ready_for_review"] {
        assert_eq!(
            acquire(hook(GH_PR, &github_pull(action, false), &cfg())).command,
            CommandKind::Autoplan
        );
    }
    let (pull, cause) = release(hook(GH_PR, &github_pull("closed", false), &cfg()));
    assert_eq!(
        (pull.repo.as_str(), cause),
        ("acme/infra", ReleaseCause::PullClosed)
    );
    for action in ["labeled", "reopened", "edited", "assigned"] {
        assert_eq!(
            pass(hook(GH_PR, &github_pull(action, false), &cfg())),
            R::IgnoredPullAction,
            "{action}"
        );
    }
}

#[test]
fn github_drafts_and_autoplan_switches() {
    assert_eq!(
        pass(hook(GH_PR, &github_pull("opened", true), &cfg())),
        R::DraftPull
    );
    // a draft's close still releases
    release(hook(GH_PR, &github_pull("closed", true), &cfg()));
    let c = ClassifyConfig {
        allow_draft_prs: true,
        ..cfg()
    };
    acquire(hook(GH_PR, &github_pull("opened", true), &c));
    let c = ClassifyConfig {
        disable_autoplan: true,
        ..cfg()
    };
    assert_eq!(
        pass(hook(GH_PR, &github_pull("opened", false), &c)),
        R::AutoplanDisabled
    );
    let c = ClassifyConfig {
        disable_autoplan_label: Some("priority:critical".into()),
        ..cfg()
    };
    assert_eq!(
        pass(hook(GH_PR, &github_pull("opened", false), &c)),
        R::AutoplanDisabled
    );
}

#[test]
fn github_form_encoded_payload_reads_like_json() {
    let v = github_comment("atlantis plan -d \"a b\"", "created");
    let form = format!(
        "payload={}",
        percent_encoding::utf8_percent_encode(&v.to_string(), percent_encoding::NON_ALPHANUMERIC)
    );
    let h = [
        ("x-github-event", "issue_comment"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let a = acquire(run("POST", "/events", &h, form.as_bytes(), &cfg()));
    assert_eq!(
        a.locks,
        LockSet::Resolved(vec![LockKey::new("acme/infra", "a b", "default", "")])
    );
}

#[test]
fn github_signatures() {
    let c = ClassifyConfig {
        webhook_secrets: crate::classify::WebhookSecrets {
            github: Some(Secret::new("gh-secret")),
            ..Default::default()
        },
        ..cfg()
    };
    let body = github_comment("atlantis plan", "created").to_string();
    let good = format!("sha256={}", sign_sha256("gh-secret", body.as_bytes()));
    let mut h = GH.to_vec();
    h.push(("x-hub-signature-256", &good));
    acquire(run("POST", "/events", &h, body.as_bytes(), &c));
    let bad = format!("sha256={}", sign_sha256("wrong", body.as_bytes()));
    let mut h = GH.to_vec();
    h.push(("x-hub-signature-256", &bad));
    let err = run("POST", "/events", &h, body.as_bytes(), &c).unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert_eq!(err.body(), "payload signature check failed\n");
    let err = run("POST", "/events", GH, body.as_bytes(), &c).unwrap_err();
    assert_eq!(err.body(), "missing signature\n");
    // the content type may carry a charset once a secret is set
    let mut h = vec![
        ("x-github-event", "issue_comment"),
        ("content-type", "application/json; charset=utf-8"),
    ];
    h.push(("x-hub-signature-256", &good));
    acquire(run("POST", "/events", &h, body.as_bytes(), &c));
}

#[test]
fn detection_order_and_unknown_requests() {
    // Gitea also sends X-GitHub-Event; it must be read as Gitea.
    let h = [
        ("x-gitea-event", "pull_request"),
        ("x-github-event", "pull_request"),
        ("x-gitea-event-type", "pull_request"),
    ];
    assert_eq!(
        acquire(hook(&h, &gitea_pull("open", false), &cfg())).vcs,
        Vcs::Gitea
    );
    assert_eq!(pass(hook(&[], &json!({}), &cfg())), R::UnknownVcs);
    assert_eq!(
        pass(run("POST", "/events", GH, b"{not json", &cfg())),
        R::Unparseable
    );
    assert_eq!(
        pass(run(
            "POST",
            "/events",
            &[("x-github-event", "issue_comment")],
            b"{}",
            &cfg()
        )),
        R::Unparseable
    );
    assert_eq!(
        pass(hook(
            &[
                ("x-github-event", "push"),
                ("content-type", "application/json")
            ],
            &json!({}),
            &cfg()
        )),
        R::IgnoredEvent
    );
    assert_eq!(
        pass(run("GET", "/events", GH, b"", &cfg())),
        R::NotLockRoute
    );
}

const GL_MR: &[(&str, &str)] = &[("x-gitlab-event", "Merge Request Hook")];
const GL_NOTE: &[(&str, &str)] = &[("x-gitlab-event", "Note Hook")];

#[test]
fn gitlab_merge_request_events() {
    let a = acquire(hook(GL_MR, &gitlab_mr("open", None, false), &cfg()));
    assert_eq!(
        a.pull,
        PullRef {
            repo: "group/sub/infra".into(),
            number: 12
        }
    );
    assert_eq!(
        (a.command, a.vcs, a.labels.clone()),
        (
            CommandKind::Autoplan,
            Vcs::Gitlab,
            vec!["priority:low".to_string()]
        )
    );
    assert_eq!(a.meta.head_sha.as_deref(), Some("c0ffee"));
    acquire(hook(
        GL_MR,
        &gitlab_mr("update", Some("0ld"), false),
        &cfg(),
    ));
    assert_eq!(
        pass(hook(GL_MR, &gitlab_mr("update", None, false), &cfg())),
        R::IgnoredPullAction
    );
    let mut v = gitlab_mr("update", None, false);
    v["changes"] = json!({"title": {"previous": "Draft: x", "current": "x"}});
    acquire(hook(GL_MR, &v, &cfg()));
    for action in ["merge", "close"] {
        release(hook(GL_MR, &gitlab_mr(action, None, false), &cfg()));
    }
    assert_eq!(
        pass(hook(GL_MR, &gitlab_mr("open", None, true), &cfg())),
        R::DraftPull
    );
    release(hook(GL_MR, &gitlab_mr("close", None, true), &cfg()));
    assert_eq!(
        pass(hook(GL_MR, &gitlab_mr("approved", None, false), &cfg())),
        R::IgnoredPullAction
    );
}

#[test]
fn gitlab_notes_and_token() {
    let a = acquire(hook(
        GL_NOTE,
        &gitlab_note("atlantis plan -d vpc", "MergeRequest"),
        &cfg(),
    ));
    assert_eq!(
        a.locks,
        LockSet::Resolved(vec![LockKey::new("group/sub/infra", "vpc", "default", "")])
    );
    assert_eq!(
        (a.user.as_str(), a.labels.clone()),
        ("dave", vec!["urgent".to_string()])
    );
    assert_eq!(
        pass(hook(
            GL_NOTE,
            &gitlab_note("atlantis plan", "Commit"),
            &cfg()
        )),
        R::NotOnPull
    );
    let (pull, cause) = release(hook(
        GL_NOTE,
        &gitlab_note("atlantis unlock", "MergeRequest"),
        &cfg(),
    ));
    assert_eq!((pull.number, cause), (12, ReleaseCause::UnlockComment));
    let c = ClassifyConfig {
        webhook_secrets: crate::classify::WebhookSecrets {
            gitlab: Some(Secret::new("tok")),
            ..Default::default()
        },
        ..cfg()
    };
    let h = [("x-gitlab-event", "Note Hook"), ("x-gitlab-token", "nope")];
    let err = hook(&h, &gitlab_note("atlantis plan", "MergeRequest"), &c).unwrap_err();
    assert_eq!(
        (err.status(), err.body()),
        (
            StatusCode::BAD_REQUEST,
            "header X-Gitlab-Token=nope did not match expected secret\n".into()
        )
    );
    let h = [("x-gitlab-event", "Note Hook"), ("x-gitlab-token", "tok")];
    acquire(hook(&h, &gitlab_note("atlantis plan", "MergeRequest"), &c));
}

#[test]
fn bitbucket_cloud_events() {
    let h = |k: &'static str| [("x-event-key", k), ("x-request-uuid", "u-1")];
    let a = acquire(hook(
        &h("pullrequest:comment_created"),
        &bitbucket_cloud("OPEN", Some("atlantis plan")),
        &cfg(),
    ));
    assert_eq!(
        (a.pull.repo.as_str(), a.pull.number, a.user.as_str(), a.vcs),
        ("team/infra", 3, "557058:eve", Vcs::BitbucketCloud)
    );
    assert_eq!(a.meta.head_sha.as_deref(), Some("b1b1"));
    for k in ["pullrequest:created", "pullrequest:updated"] {
        assert_eq!(
            acquire(hook(&h(k), &bitbucket_cloud("OPEN", None), &cfg())).command,
            CommandKind::Autoplan
        );
    }
    for (k, state) in [
        ("pullrequest:fulfilled", "MERGED"),
        ("pullrequest:rejected", "DECLINED"),
    ] {
        release(hook(&h(k), &bitbucket_cloud(state, None), &cfg()));
    }
    assert_eq!(
        pass(hook(
            &h("pullrequest:approved"),
            &bitbucket_cloud("OPEN", None),
            &cfg()
        )),
        R::IgnoredEvent
    );
    let mut v = bitbucket_cloud("OPEN", None);
    v["pullrequest"]["source"]["commit"] = json!(null);
    assert_eq!(
        pass(hook(&h("pullrequest:created"), &v, &cfg())),
        R::MissingField
    );
    let c = ClassifyConfig {
        webhook_secrets: crate::classify::WebhookSecrets {
            bitbucket: Some(Secret::new("bb")),
            ..Default::default()
        },
        ..cfg()
    };
    let body = bitbucket_cloud("OPEN", None).to_string();
    let sig = format!("sha256={}", sign_sha256("bb", body.as_bytes()));
    let mut hs = h("pullrequest:created").to_vec();
    hs.push(("x-hub-signature", &sig));
    acquire(run("POST", "/events", &hs, body.as_bytes(), &c));
    let err = run(
        "POST",
        "/events",
        &h("pullrequest:created"),
        body.as_bytes(),
        &c,
    )
    .unwrap_err();
    assert_eq!(
        err.body(),
        "request did not pass validation: missing signature\n"
    );
}

#[test]
fn bitbucket_server_events() {
    let h = |k: &'static str| [("x-event-key", k), ("x-request-id", "r-1")];
    let a = acquire(hook(
        &h("pr:comment:added"),
        &bitbucket_server("OPEN", Some("atlantis plan -p net")),
        &cfg(),
    ));
    assert_eq!(
        (a.pull.repo.as_str(), a.pull.number, a.user.as_str()),
        ("Infra Team/infra", 4, "frank")
    );
    assert_eq!(a.vcs, Vcs::BitbucketServer);
    for k in ["pr:opened", "pr:from_ref_updated"] {
        acquire(hook(&h(k), &bitbucket_server("OPEN", None), &cfg()));
    }
    for (k, s) in [
        ("pr:merged", "MERGED"),
        ("pr:declined", "DECLINED"),
        ("pr:deleted", "DECLINED"),
    ] {
        release(hook(&h(k), &bitbucket_server(s, None), &cfg()));
    }
    // the ping is answered before any signature check
    let c = ClassifyConfig {
        webhook_secrets: crate::classify::WebhookSecrets {
            bitbucket: Some(Secret::new("bb")),
            ..Default::default()
        },
        ..cfg()
    };
    assert_eq!(
        pass(hook(&h("diagnostics:ping"), &json!({}), &c)),
        R::IgnoredEvent
    );
    assert!(hook(&h("pr:opened"), &bitbucket_server("OPEN", None), &c).is_err());
}

#[test]
fn azure_devops_events() {
    let h = [("request-id", "abc"), ("content-type", "application/json")];
    let a = acquire(hook(&h, &azure_comment("atlantis plan", false), &cfg()));
    assert_eq!(
        a.pull,
        PullRef {
            repo: "contoso/platform/infra".into(),
            number: 21
        }
    );
    // Atlantis records the pull's creator for Azure DevOps comments
    assert_eq!(
        (a.user.as_str(), a.vcs),
        ("grace@contoso.com", Vcs::AzureDevops)
    );
    assert_eq!(a.meta.base_branch.as_deref(), Some("main"));
    assert_eq!(
        pass(hook(&h, &azure_comment("atlantis plan", true), &cfg())),
        R::CommentNotCreated
    );
    assert_eq!(
        acquire(hook(
            &h,
            &azure_pull("git.pullrequest.created", "active", "created"),
            &cfg()
        ))
        .command,
        CommandKind::Autoplan
    );
    acquire(hook(
        &h,
        &azure_pull("git.pullrequest.updated", "active", "pushed"),
        &cfg(),
    ));
    release(hook(
        &h,
        &azure_pull("git.pullrequest.updated", "completed", "completed"),
        &cfg(),
    ));
    assert_eq!(
        pass(hook(
            &h,
            &azure_pull(
                "git.pullrequest.updated",
                "active",
                "Bob voted on pull request"
            ),
            &cfg()
        )),
        R::IgnoredPullAction
    );
    assert_eq!(
        pass(hook(
            &h,
            &azure_pull("git.pullrequest.merged", "completed", "merged"),
            &cfg()
        )),
        R::IgnoredPullAction
    );
    let h2 = [("x-vss-activityid", "abc"), ("content-type", "text/plain")];
    assert_eq!(
        pass(hook(&h2, &azure_comment("atlantis plan", false), &cfg())),
        R::Unparseable
    );
    let c = ClassifyConfig {
        webhook_secrets: crate::classify::WebhookSecrets {
            azuredevops: Some(("u".into(), Secret::new("p"))),
            ..Default::default()
        },
        ..cfg()
    };
    let err = hook(&h, &azure_comment("atlantis plan", false), &c).unwrap_err();
    assert_eq!(
        (err.status(), err.body()),
        (
            StatusCode::UNAUTHORIZED,
            "ValidatePayload authentication failed\n".into()
        )
    );
    let auth = "Basic dTpw"; // u:p
    let h3 = [
        ("request-id", "abc"),
        ("content-type", "application/json"),
        ("authorization", auth),
    ];
    acquire(hook(&h3, &azure_comment("atlantis plan", false), &c));
}

#[test]
fn gitea_events() {
    let h = |t: &'static str| [("x-gitea-event", t), ("x-gitea-event-type", t)];
    let a = acquire(hook(&h("pull_request"), &gitea_pull("open", false), &cfg()));
    assert_eq!(
        (a.pull.repo.as_str(), a.pull.number, a.command),
        ("ops/infra", 5, CommandKind::Autoplan)
    );
    assert_eq!(a.labels, ["priority:normal"]);
    acquire(hook(
        &h("pull_request_sync"),
        &gitea_pull("open", false),
        &cfg(),
    ));
    release(hook(
        &h("pull_request"),
        &gitea_pull("closed", true),
        &cfg(),
    ));
    // Gitea: an unmerged close does not release (as Atlantis)
    assert_eq!(
        pass(hook(
            &h("pull_request"),
            &gitea_pull("closed", false),
            &cfg()
        )),
        R::IgnoredPullAction
    );
    let a = acquire(hook(
        &h("pull_request_comment"),
        &gitea_comment("atlantis plan -w dev"),
        &cfg(),
    ));
    assert_eq!(
        (a.user.as_str(), a.locks.clone()),
        (
            "judy",
            LockSet::Resolved(vec![LockKey::new("ops/infra", ".", "dev", "")])
        )
    );
    assert_eq!(
        pass(hook(
            &h("issue_comment"),
            &gitea_comment("atlantis plan"),
            &cfg()
        )),
        R::IgnoredEvent
    );
    let c = ClassifyConfig {
        webhook_secrets: crate::classify::WebhookSecrets {
            gitea: Some(Secret::new("gt")),
            ..Default::default()
        },
        ..cfg()
    };
    let body = gitea_comment("atlantis plan").to_string();
    let sig = sign_sha256("gt", body.as_bytes());
    let mut hs = h("pull_request_comment").to_vec();
    hs.push(("x-gitea-signature", &sig));
    acquire(run("POST", "/events", &hs, body.as_bytes(), &c));
    let err = run(
        "POST",
        "/events",
        &h("pull_request_comment"),
        body.as_bytes(),
        &c,
    )
    .unwrap_err();
    assert_eq!(
        err.body(),
        "request did not pass validation: invalid signature\n"
    );
}
