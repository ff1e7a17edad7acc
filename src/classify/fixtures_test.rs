//! Runs the webhook parsers over the real payloads in `shared/fixtures` (Atlantis's and
//! octokit's), found through `ALP_FIXTURES_DIR`; skips when it is unset, since a clone of the
//! project alone does not carry them. Run:
//! `ALP_FIXTURES_DIR=/work/shared/fixtures cargo test --lib classify::fixtures_test`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::testutil::run;
use super::{ClassifyConfig, CommandKind, Operation, PassthroughReason as R};

fn dir() -> Option<PathBuf> {
    let d = PathBuf::from(std::env::var_os("ALP_FIXTURES_DIR")?);
    d.is_dir().then_some(d)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// What a fixture should classify as: an acquire for `repo`, a release, or a passthrough.
#[derive(Debug, PartialEq)]
enum Want {
    Acquire(&'static str),
    Release,
    Pass(R),
}

/// A fixture file, the headers its VCS sends with it, and what it should classify as.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Want);

fn outcome(op: &Operation) -> String {
    match op {
        Operation::Acquire(a) => format!("acquire {} {}", a.pull.repo, a.command),
        Operation::ReleasePull { pull, .. } => format!("release {pull}"),
        Operation::Passthrough { reason } => format!("pass {reason}"),
        other => format!("{other:?}"),
    }
}

fn check(name: &str, headers: &[(&str, &str)], body: &[u8], want: &Want) {
    let cfg = ClassifyConfig::accepting_unsigned();
    let op = run("POST", "/events", headers, body, &cfg)
        .unwrap_or_else(|e| panic!("{name}: unexpected error {e}"));
    let ok = match (&op, want) {
        (Operation::Acquire(a), Want::Acquire(repo)) => a.pull.repo == *repo,
        (Operation::ReleasePull { .. }, Want::Release) => true,
        (Operation::Passthrough { reason }, Want::Pass(r)) => reason == r,
        _ => false,
    };
    assert!(ok, "{name}: want {want:?}, got {}", outcome(&op));
}

#[test]
fn atlantis_fixtures_classify_as_atlantis_handles_them() {
    let Some(root) = dir() else {
        eprintln!("ALP_FIXTURES_DIR not set: skipping the shared-fixtures test");
        return;
    };
    let a = root.join("atlantis");
    let gh = |e: &'static str| [("x-github-event", e), ("content-type", "application/json")];
    let comment = String::from_utf8_lossy(&read(&a.join("githubIssueCommentEvent.json")))
        .replace("###comment body###", "atlantis plan");
    check(
        "gh comment",
        &gh("issue_comment"),
        comment.as_bytes(),
        &Want::Acquire("runatlantis/atlantis-tests"),
    );
    check(
        "gh opened",
        &gh("pull_request"),
        &read(&a.join("githubPullRequestOpenedEvent.json")),
        &Want::Acquire("runatlantis/atlantis-tests"),
    );
    check(
        "gh closed",
        &gh("pull_request"),
        &read(&a.join("githubPullRequestClosedEvent.json")),
        &Want::Release,
    );

    let mr = [("x-gitlab-event", "Merge Request Hook")];
    let note = [("x-gitlab-event", "Note Hook")];
    let gitlab: &[Case<'_>] = &[
        (
            "gitlab-merge-request-event.json",
            &mr,
            Want::Acquire("lkysow/atlantis-example"),
        ),
        (
            "gitlab-merge-request-event-subgroup.json",
            &mr,
            Want::Acquire("lkysow-test/subgroup/sub-subgroup/atlantis-example"),
        ),
        (
            "gitlab-merge-request-event-mark-as-ready.json",
            &mr,
            Want::Acquire("sheather/test"),
        ),
        (
            "gitlab-merge-request-event-update-new-commit.json",
            &mr,
            Want::Acquire("quan.hoang/atlantis-example"),
        ),
        (
            "gitlab-merge-request-event-update-assignee.json",
            &mr,
            Want::Pass(R::IgnoredPullAction),
        ),
        (
            "gitlab-merge-request-event-update-description.json",
            &mr,
            Want::Pass(R::IgnoredPullAction),
        ),
        (
            "gitlab-merge-request-event-update-labels.json",
            &mr,
            Want::Pass(R::IgnoredPullAction),
        ),
        (
            "gitlab-merge-request-event-update-milestone.json",
            &mr,
            Want::Pass(R::IgnoredPullAction),
        ),
        (
            "gitlab-merge-request-event-update-mixed.json",
            &mr,
            Want::Pass(R::IgnoredPullAction),
        ),
        (
            "gitlab-merge-request-event-update-reviewer.json",
            &mr,
            Want::Pass(R::IgnoredPullAction),
        ),
        (
            "gitlab-merge-request-event-update-target-branch.json",
            &mr,
            Want::Pass(R::IgnoredPullAction),
        ),
        (
            "gitlab-merge-request-event-update-title.json",
            &mr,
            Want::Pass(R::IgnoredPullAction),
        ),
        (
            "gitlab-merge-request-comment-event-subgroup.json",
            &note,
            Want::Acquire("lkysow-test/subgroup/sub-subgroup/atlantis-example"),
        ),
        (
            "gitlab-merge-request-comment-event.json",
            &note,
            Want::Pass(R::NotACommand),
        ),
        (
            "gitlabMergeCommentEvent_notAllowlisted.json",
            &note,
            Want::Acquire("gitlabhq/gitlab-test"),
        ),
        (
            "gitlabMergeCommentEvent_shouldIgnore.json",
            &note,
            Want::Pass(R::NotACommand),
        ),
    ];
    for (file, h, want) in gitlab {
        check(file, h, &read(&a.join(file)), want);
    }

    let cloud = |k: &'static str| [("x-event-key", k), ("x-request-uuid", "f")];
    let server = |k: &'static str| [("x-event-key", k), ("x-request-id", "f")];
    let bb: &[Case<'_>] = &[
        (
            "bitbucket-cloud-comment-event.json",
            &cloud("pullrequest:comment_created"),
            Want::Pass(R::NotACommand),
        ),
        (
            "bitbucket-cloud-pull-event-created.json",
            &cloud("pullrequest:created"),
            Want::Acquire("lkysow/atlantis-example"),
        ),
        (
            "bitbucket-cloud-pull-event-updated.json",
            &cloud("pullrequest:updated"),
            Want::Acquire("lkysow/atlantis-example"),
        ),
        (
            "bitbucket-cloud-pull-event-fulfilled.json",
            &cloud("pullrequest:fulfilled"),
            Want::Release,
        ),
        (
            "bitbucket-cloud-pull-event-rejected.json",
            &cloud("pullrequest:rejected"),
            Want::Release,
        ),
        (
            "bitbucket-server-comment-event.json",
            &server("pr:comment:added"),
            Want::Acquire("atlantis/atlantis-example"),
        ),
        (
            "bitbucket-server-pull-event-created.json",
            &server("pr:opened"),
            Want::Acquire("atlantis/atlantis-example"),
        ),
        (
            "bitbucket-server-pull-event-declined.json",
            &server("pr:declined"),
            Want::Release,
        ),
        (
            "bitbucket-server-pull-event-merged.json",
            &server("pr:merged"),
            Want::Release,
        ),
        (
            "bb-server-pull-deleted-event.json",
            &server("pr:deleted"),
            Want::Release,
        ),
    ];
    for (file, h, want) in bb {
        check(file, h, &read(&a.join(file)), want);
    }
}

#[test]
fn octokit_fixtures_classify_by_action() {
    let Some(root) = dir() else {
        eprintln!("ALP_FIXTURES_DIR not set: skipping the shared-fixtures test");
        return;
    };
    let mut seen = 0;
    for event in ["issue_comment", "pull_request"] {
        let Ok(entries) = std::fs::read_dir(root.join("octokit-webhooks").join(event)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let body = read(&path);
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let action = v["action"].as_str().unwrap_or("");
            let draft = v["pull_request"]["draft"].as_bool().unwrap_or(false);
            let want = match (event, action) {
                // octokit's comments are on plain issues, which Atlantis ignores
                ("issue_comment", "created") => Want::Pass(R::NotOnPull),
                ("issue_comment", _) => Want::Pass(R::CommentNotCreated),
                (_, "opened" | "ready_for_review" | "synchronize") if draft => {
                    Want::Pass(R::DraftPull)
                }
                (_, "opened" | "ready_for_review" | "synchronize") => {
                    Want::Acquire("Codertocat/Hello-World")
                }
                (_, "closed") => Want::Release,
                _ => Want::Pass(R::IgnoredPullAction),
            };
            let want = match want {
                Want::Acquire(_) => {
                    let repo = v["repository"]["full_name"].as_str().unwrap_or("");
                    let cfg = ClassifyConfig::accepting_unsigned();
                    let h = [
                        ("x-github-event", event),
                        ("content-type", "application/json"),
                    ];
                    let op = run("POST", "/events", &h, &body, &cfg).ok();
                    match op {
                        Some(Operation::Acquire(a)) => {
                            assert_eq!(
                                (a.pull.repo.as_str(), a.command),
                                (repo, CommandKind::Autoplan),
                                "{}",
                                path.display()
                            );
                            seen += 1;
                            continue;
                        }
                        other => panic!("{}: want acquire, got {other:?}", path.display()),
                    }
                }
                w => w,
            };
            let name = path.display().to_string();
            check(
                &name,
                &[
                    ("x-github-event", event),
                    ("content-type", "application/json"),
                ],
                &body,
                &want,
            );
            seen += 1;
        }
    }
    assert!(
        seen > 0,
        "no octokit fixtures found under {}",
        root.display()
    );
}
