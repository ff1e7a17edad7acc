//! GitLab, Bitbucket Cloud and Server, Azure DevOps and Gitea.

use http::StatusCode;
use serde_json::json;

use super::*;
use crate::classify::signature::tests::sign_sha256;
use crate::classify::testutil::*;
use crate::classify::{
    ClassifyConfig, CommandKind, LockKey, LockSet, PassthroughReason as R, PullRef, ReleaseCause,
    Secret, Vcs,
};

const GL_MR: &[(&str, &str)] = &[("x-gitlab-event", "Merge Request Hook")];
const GL_NOTE: &[(&str, &str)] = &[("x-gitlab-event", "Note Hook")];

#[test]
fn gitlab_merge_request_events() {
    let a = acquire(hook(GL_MR, &gitlab_mr("open", None, false), &cfg()));
    assert_eq!(a.pull, PullRef::new(Vcs::Gitlab, "group/sub/infra", 12));
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
            // Atlantis repeats the token here; the proxy does not (issue 14 item 14).
            "header X-Gitlab-Token did not match expected secret\n".into()
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
        PullRef::new(Vcs::AzureDevops, "contoso/platform/infra", 21)
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

/// Issue 15, divergence 5: GitLab drafts come from `work_in_progress` only; GitLab's newer
/// `draft` field alone does not stop an autoplan (Atlantis does not read it).
#[test]
fn gitlab_drafts_are_read_from_work_in_progress_only() {
    let mut v = gitlab_mr("open", None, false);
    v["object_attributes"]["draft"] = json!(true);
    acquire(hook(GL_MR, &v, &cfg()));
    let mut v = gitlab_mr("open", None, true);
    v["object_attributes"]["draft"] = json!(false);
    assert_eq!(pass(hook(GL_MR, &v, &cfg())), R::DraftPull);
}

/// Issue 15, divergence 5: Go's `url.Parse` takes a raw space in a web URL's path (and decodes
/// `%20`), so the owner Atlantis derives keeps it; a space in the host fails the parse.
#[test]
fn azure_web_urls_parse_like_go() {
    let h = [("request-id", "abc"), ("content-type", "application/json")];
    for url in [
        "https://dev.azure.com/My Org/platform/_git/infra",
        "https://dev.azure.com/My%20Org/platform/_git/infra",
    ] {
        let mut v = azure_comment("atlantis plan -d net", false);
        v["resource"]["pullRequest"]["repository"]["webUrl"] = json!(url);
        let a = acquire(hook(&h, &v, &cfg()));
        assert_eq!(a.pull.repo, "my org/platform/infra", "{url}");
    }
    let mut v = azure_comment("atlantis plan -d net", false);
    v["resource"]["pullRequest"]["repository"]["webUrl"] =
        json!("https://dev azure.com/o/p/_git/r");
    assert_eq!(pass(hook(&h, &v, &cfg())), R::MissingField);
}

/// Issue 15, divergence 2: a fork's PR event (head repo of another owner) locks nothing without
/// `--allow-fork-prs`, on every VCS whose payload says so.
#[test]
fn fork_pulls_are_refused_from_the_payload() {
    let mut v = gitlab_mr("open", None, false);
    v["object_attributes"]["source"] = json!({"path_with_namespace": "someone/infra",
        "git_http_url": "https://gitlab.com/someone/infra.git"});
    assert_eq!(pass(hook(GL_MR, &v, &cfg())), R::ForkPull);
    let allowed = ClassifyConfig {
        allow_fork_prs: true,
        ..cfg()
    };
    acquire(hook(GL_MR, &v, &allowed));
    let mut g = gitea_pull("open", false);
    g["pull_request"]["head"]["repo"] = json!({"full_name": "eve/infra",
        "clone_url": "https://gitea.example/eve/infra.git"});
    assert_eq!(
        pass(hook(
            &[
                ("x-gitea-event", "pull_request"),
                ("x-gitea-event-type", "pull_request")
            ],
            &g,
            &cfg()
        )),
        R::ForkPull
    );
}
