//! Request builders and payloads shaped like the real ones (ATLANTIS.md §3), for unit tests.

use serde_json::{Value, json};

use super::{ClassifyConfig, ClassifyError, Operation, classify};

/// Classifies a request built from method, uri, headers and body.
pub fn run(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, ()) = b.body(()).expect("valid test request").into_parts();
    classify(&parts, body, cfg)
}

/// A webhook POST to `/events`.
pub fn hook(
    headers: &[(&str, &str)],
    body: &Value,
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    run("POST", "/events", headers, body.to_string().as_bytes(), cfg)
}

/// GitHub `issue_comment` on pull #7 of `acme/infra`.
pub fn github_comment(body: &str, action: &str) -> Value {
    json!({
        "action": action,
        "issue": {
            "number": 7, "state": "open", "title": "Add VPC",
            "html_url": "https://github.com/acme/infra/pull/7",
            "user": {"login": "bob"},
            "labels": [{"id": 1, "name": "priority:high", "color": "ff0000"}],
            "pull_request": {"url": "https://api.github.com/repos/acme/infra/pulls/7",
                             "html_url": "https://github.com/acme/infra/pull/7"}
        },
        "comment": {"id": 99, "body": body, "user": {"login": "alice", "type": "User"}},
        "repository": {"full_name": "acme/infra", "name": "infra",
                       "clone_url": "https://github.com/acme/infra.git",
                       "owner": {"login": "acme"}},
        "sender": {"login": "alice"}
    })
}

/// GitHub `pull_request` event for pull #7 of `acme/infra`.
pub fn github_pull(action: &str, draft: bool) -> Value {
    let repo = json!({"full_name": "acme/infra", "clone_url": "https://github.com/acme/infra.git"});
    json!({
        "action": action,
        "number": 7,
        "pull_request": {
            "number": 7, "state": if action == "closed" { "closed" } else { "open" },
            "draft": draft, "merged": false,
            "html_url": "https://github.com/acme/infra/pull/7",
            "user": {"login": "bob"},
            "labels": [{"name": "priority:critical"}],
            "head": {"ref": "feature", "sha": "abc123", "repo": repo.clone()},
            "base": {"ref": "main", "sha": "def456", "repo": repo}
        },
        "repository": {"full_name": "acme/infra"},
        "sender": {"login": "bob"}
    })
}

/// GitLab `Merge Request Hook` on `group/sub/infra` !12.
pub fn gitlab_mr(action: &str, oldrev: Option<&str>, wip: bool) -> Value {
    let project = json!({"path_with_namespace": "group/sub/infra",
                         "git_http_url": "https://gitlab.com/group/sub/infra.git"});
    json!({
        "object_kind": "merge_request", "event_type": "merge_request",
        "user": {"username": "carol"},
        "project": project.clone(),
        "object_attributes": {
            "iid": 12, "action": action, "state": "opened", "oldrev": oldrev,
            "work_in_progress": wip, "draft": wip,
            "url": "https://gitlab.com/group/sub/infra/-/merge_requests/12",
            "source_branch": "feature", "target_branch": "main",
            "last_commit": {"id": "c0ffee"},
            "source": project, "target": {"path_with_namespace": "group/sub/infra"}
        },
        "labels": [{"title": "priority:low"}],
        "changes": {}
    })
}

/// GitLab `Note Hook` on a merge request of `group/sub/infra`.
pub fn gitlab_note(note: &str, noteable: &str) -> Value {
    let project = json!({"path_with_namespace": "group/sub/infra",
                         "git_http_url": "https://gitlab.com/group/sub/infra.git"});
    json!({
        "object_kind": "note",
        "user": {"username": "dave"},
        "project": project.clone(),
        "object_attributes": {"id": 5, "note": note, "noteable_type": noteable},
        "merge_request": {"iid": 12, "state": "opened", "source_branch": "feature",
                          "target_branch": "main", "last_commit": {"id": "c0ffee"},
                          "url": "https://gitlab.com/group/sub/infra/-/merge_requests/12",
                          "labels": [{"title": "urgent"}],
                          "source": project}
    })
}

/// Bitbucket Cloud pull-request payload (plus a comment when `comment` is set).
pub fn bitbucket_cloud(state: &str, comment: Option<&str>) -> Value {
    let repo = json!({"full_name": "team/infra",
                      "links": {"html": {"href": "https://bitbucket.org/team/infra"}}});
    let mut v = json!({
        "actor": {"account_id": "557058:eve", "nickname": "eve"},
        "repository": repo.clone(),
        "pullrequest": {
            "id": 3, "state": state, "title": "t",
            "source": {"repository": repo.clone(), "commit": {"hash": "b1b1"}, "branch": {"name": "feature"}},
            "destination": {"repository": repo, "commit": {"hash": "d2d2"}, "branch": {"name": "main"}},
            "participants": [],
            "links": {"html": {"href": "https://bitbucket.org/team/infra/pull-requests/3"}},
            "author": {"uuid": "{u}"}
        }
    });
    if let Some(c) = comment {
        v["comment"] = json!({"content": {"raw": c}});
    }
    v
}

/// Bitbucket Server pull-request payload (plus a comment when `comment` is set).
pub fn bitbucket_server(state: &str, comment: Option<&str>) -> Value {
    let r = |project: &str| json!({"slug": "infra", "project": {"key": "INF", "name": project}});
    let mut v = json!({
        "eventKey": "pr:opened",
        "actor": {"name": "frank"},
        "pullRequest": {
            "id": 4, "version": 0, "state": state, "reviewers": [],
            "fromRef": {"displayId": "feature", "latestCommit": "f00d", "repository": r("Infra Team")},
            "toRef": {"displayId": "main", "latestCommit": "beef", "repository": r("Infra Team")}
        }
    });
    if let Some(c) = comment {
        v["comment"] = json!({"text": c});
    }
    v
}

fn azure_pr(status: &str) -> Value {
    json!({
        "repository": {"id": "r1", "name": "infra",
                       "url": "https://dev.azure.com/Contoso/_apis/git/repositories/r1",
                       "webUrl": "https://dev.azure.com/Contoso/platform/_git/infra",
                       "project": {"id": "p1", "name": "platform"}},
        "pullRequestId": 21, "status": status,
        "createdBy": {"displayName": "Grace", "uniqueName": "grace@contoso.com"},
        "sourceRefName": "refs/heads/feature", "targetRefName": "refs/heads/main",
        "lastMergeSourceCommit": {"commitId": "a2a2"},
        "url": "https://dev.azure.com/Contoso/_apis/git/repositories/r1/pullRequests/21",
        "labels": [{"name": "priority:high"}]
    })
}

/// Azure DevOps pull-request event (`git.pullrequest.*`).
pub fn azure_pull(event_type: &str, status: &str, text: &str) -> Value {
    json!({"eventType": event_type, "message": {"text": text}, "resource": azure_pr(status),
           "resourceVersion": "1.0"})
}

/// Azure DevOps pull-request comment event.
pub fn azure_comment(content: &str, deleted: bool) -> Value {
    json!({"eventType": "ms.vss-code.git-pullrequest-comment-event",
           "message": {"text": "Grace commented"},
           "resource": {"comment": {"id": 2, "content": content, "isDeleted": deleted,
                                    "author": {"uniqueName": "heidi@contoso.com"}},
                        "pullRequest": azure_pr("active")},
           "resourceVersion": "2.0"})
}

/// Gitea pull-request event.
pub fn gitea_pull(state: &str, merged: bool) -> Value {
    let repo =
        json!({"full_name": "ops/infra", "clone_url": "https://gitea.example/ops/infra.git"});
    json!({"action": "opened", "number": 5,
           "pull_request": {"number": 5, "state": state, "merged": merged,
                            "html_url": "https://gitea.example/ops/infra/pulls/5",
                            "user": {"login": "ivan"}, "labels": [{"name": "priority:normal"}],
                            "head": {"ref": "feature", "sha": "e5e5", "repo": repo.clone()},
                            "base": {"ref": "main", "sha": "0000", "repo": repo}}})
}

/// Gitea pull-request comment event.
pub fn gitea_comment(body: &str) -> Value {
    json!({"action": "created",
           "comment": {"id": 8, "body": body, "user": {"login": "judy"}},
           "issue": {"number": 5, "state": "open", "labels": [],
                     "html_url": "https://gitea.example/ops/infra/pulls/5",
                     "user": {"login": "ivan"}},
           "repository": {"full_name": "ops/infra", "clone_url": "https://gitea.example/ops/infra.git"}})
}

/// A GitHub webhook POST to `/events` of `event`, signed with `secret` as GitHub signs it.
pub fn signed_github(
    event: &str,
    delivery: &str,
    secret: &str,
    body: Vec<u8>,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("any key length");
    mac.update(&body);
    http::Request::post("/events")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("valid test request")
}
