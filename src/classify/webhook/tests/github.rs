//! GitHub comments, pull events, form payloads, signatures and VCS detection.

use http::StatusCode;
use serde_json::json;

use super::*;
use crate::classify::signature::tests::sign_sha256;
use crate::classify::testutil::*;
use crate::classify::{
    ClassifyConfig, CommandKind, LockKey, LockMode, LockSet, LockTarget, PassthroughReason as R,
    PullRef, ReleaseCause, RepoLockModes, Secret, Vcs,
};

#[test]
fn github_plan_comment_acquires_for_the_pull() {
    let a = acquire(hook(
        GH,
        &github_comment("atlantis plan", "created"),
        &cfg(),
    ));
    assert_eq!(a.pull, PullRef::new(Vcs::Github, "acme/infra", 7));
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
    let strict = ClassifyConfig::accepting_unsigned();
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
