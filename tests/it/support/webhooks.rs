//! Webhook payloads shaped like each VCS sends them (GitHub, Bitbucket, GitLab, Azure DevOps, Gitea),
//! signed or authenticated as each does.

use hmac::{KeyInit, Mac};
use serde_json::json;

/// A webhook ready to send: headers and exact body bytes.
#[derive(Clone)]
pub struct Webhook {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Webhook {
    /// POSTs the webhook to `url` with its exact headers and bytes.
    pub async fn send_to(&self, url: &str) -> super::http::Reply {
        super::http::send(
            http::Method::POST,
            url,
            &self.header_refs(),
            self.body.clone(),
        )
        .await
    }

    pub fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// `sha256=` HMAC of the body, as `X-Hub-Signature-256`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A fresh delivery id, as GitHub gives every event (a redelivery resends the same `Webhook`).
fn delivery_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:08x}-{n:04x}-4000-8000-{:012x}", std::process::id(), n)
}

fn github(event: &str, secret: &str, body: Vec<u8>) -> Webhook {
    Webhook {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-github-event".into(), event.into()),
            ("x-github-delivery".into(), delivery_id()),
            ("user-agent".into(), "GitHub-Hookshot/abc123".into()),
            ("x-hub-signature-256".into(), sign(secret, &body)),
        ],
        body,
    }
}

/// `issue_comment` / `created` on a pull request.
pub fn github_comment(secret: &str, repo: &str, pull: i64, user: &str, comment: &str) -> Webhook {
    github_comment_labeled(secret, repo, pull, user, comment, &[])
}

/// `issue_comment` / `created` on a pull request that carries `labels`.
pub fn github_comment_labeled(
    secret: &str,
    repo: &str,
    pull: i64,
    user: &str,
    comment: &str,
    labels: &[&str],
) -> Webhook {
    let labels: Vec<serde_json::Value> = labels.iter().map(|l| json!({"name": l})).collect();
    let (owner, name) = repo.split_once('/').unwrap();
    let body = json!({
        "action": "created",
        "issue": {
            "number": pull,
            "title": "change",
            "user": {"login": user},
            "labels": labels,
            "state": "open",
            "pull_request": {"url": format!("https://api.github.com/repos/{repo}/pulls/{pull}")}
        },
        "comment": {"id": 1000 + pull, "body": comment, "user": {"login": user}},
        "repository": {
            "full_name": repo, "name": name, "owner": {"login": owner},
            "clone_url": format!("https://github.com/{repo}.git"), "html_url": format!("https://github.com/{repo}")
        },
        "sender": {"login": user}
    });
    github(
        "issue_comment",
        secret,
        serde_json::to_vec_pretty(&body).unwrap(),
    )
}

/// `pull_request` with the given action (`opened`, `closed`, …).
pub fn github_pull(secret: &str, repo: &str, pull: i64, user: &str, action: &str) -> Webhook {
    let (owner, name) = repo.split_once('/').unwrap();
    let repo_json = json!({
        "full_name": repo, "name": name, "owner": {"login": owner},
        "clone_url": format!("https://github.com/{repo}.git"), "html_url": format!("https://github.com/{repo}")
    });
    let body = json!({
        "action": action,
        "number": pull,
        "pull_request": {
            "number": pull, "state": if action == "closed" { "closed" } else { "open" },
            "merged": false, "draft": false,
            "html_url": format!("https://github.com/{repo}/pull/{pull}"),
            "user": {"login": user}, "labels": [],
            "head": {"sha": format!("{:040x}", pull), "ref": "feature", "repo": repo_json.clone()},
            "base": {"ref": "main", "repo": repo_json.clone()}
        },
        "repository": repo_json,
        "sender": {"login": user}
    });
    github("pull_request", secret, serde_json::to_vec(&body).unwrap())
}

/// A `pull_request` event whose head repository belongs to `head_owner` (a fork when it is not
/// the base repository's owner).
pub fn github_fork_pull(
    secret: &str,
    repo: &str,
    pull: i64,
    user: &str,
    action: &str,
    head_owner: &str,
) -> Webhook {
    let mut hook = github_pull(secret, repo, pull, user, action);
    let mut body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
    let name = repo.split_once('/').unwrap().1;
    let head = format!("{head_owner}/{name}");
    body["pull_request"]["head"]["repo"] = json!({
        "full_name": head, "name": name, "owner": {"login": head_owner},
        "clone_url": format!("https://github.com/{head}.git"),
    });
    hook.body = serde_json::to_vec(&body).unwrap();
    let sig = sign(secret, &hook.body);
    for (k, v) in &mut hook.headers {
        if k == "x-hub-signature-256" {
            *v = sig.clone();
        }
    }
    hook
}

/// A Bitbucket webhook (`cloud` picks Cloud's `X-Request-UUID`, else Server's `X-Request-ID`),
/// signed with `X-Hub-Signature: sha256=...`.
pub fn bitbucket(secret: &str, cloud: bool, event: &str, body: &serde_json::Value) -> Webhook {
    let body = serde_json::to_vec(body).unwrap();
    let id_header = if cloud {
        "x-request-uuid"
    } else {
        "x-request-id"
    };
    Webhook {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-event-key".into(), event.into()),
            (id_header.into(), delivery_id()),
            ("x-hub-signature".into(), sign(secret, &body)),
        ],
        body,
    }
}

/// A GitLab webhook carrying `X-Gitlab-Token: token`.
fn gitlab(token: &str, event: &str, body: &serde_json::Value) -> Webhook {
    Webhook {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-gitlab-event".into(), event.into()),
            ("x-gitlab-token".into(), token.into()),
        ],
        body: serde_json::to_vec(body).unwrap(),
    }
}

fn gitlab_project(repo: &str) -> serde_json::Value {
    json!({"path_with_namespace": repo, "git_http_url": format!("https://gitlab.com/{repo}.git")})
}

/// A `Note Hook` on merge request `iid` of `repo`.
pub fn gitlab_note(token: &str, repo: &str, iid: i64, note: &str) -> Webhook {
    let project = gitlab_project(repo);
    let body = json!({"object_kind": "note", "user": {"username": format!("dev{iid}")},
        "project": project,
        "object_attributes": {"noteable_type": "MergeRequest", "note": note,
            "url": format!("https://gitlab.com/{repo}/-/merge_requests/{iid}#note_1")},
        "merge_request": {"iid": iid, "state": "opened", "source": project,
            "url": format!("https://gitlab.com/{repo}/-/merge_requests/{iid}")}});
    gitlab(token, "Note Hook", &body)
}

/// A `Merge Request Hook` with `action` (`open`, `close`, `merge`, …) on merge request `iid`.
pub fn gitlab_mr(token: &str, repo: &str, iid: i64, action: &str) -> Webhook {
    let project = gitlab_project(repo);
    let body = json!({"object_kind": "merge_request", "user": {"username": format!("dev{iid}")},
        "project": project,
        "object_attributes": {"iid": iid, "action": action, "source": project,
            "url": format!("https://gitlab.com/{repo}/-/merge_requests/{iid}"),
            "target_branch": "main", "source_branch": "x", "last_commit": {"id": "abc"}}});
    gitlab(token, "Merge Request Hook", &body)
}

/// An `open` `Merge Request Hook` whose draft state is given by both of GitLab's fields:
/// `work_in_progress` (what Atlantis reads) and the newer `draft`.
pub fn gitlab_mr_opened(
    token: &str,
    repo: &str,
    iid: i64,
    work_in_progress: bool,
    draft: bool,
) -> Webhook {
    let project = gitlab_project(repo);
    let body = json!({"object_kind": "merge_request", "user": {"username": format!("dev{iid}")},
        "project": project,
        "object_attributes": {"iid": iid, "action": "open", "source": project,
            "work_in_progress": work_in_progress, "draft": draft,
            "url": format!("https://gitlab.com/{repo}/-/merge_requests/{iid}"),
            "target_branch": "main", "source_branch": format!("mr{iid}"),
            "last_commit": {"id": format!("{iid:040x}")}}});
    gitlab(token, "Merge Request Hook", &body)
}

/// An Azure DevOps webhook carrying HTTP Basic auth `user:password` and a fresh `Request-Id`.
fn azure(auth: (&str, &str), body: &serde_json::Value) -> Webhook {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", auth.0, auth.1));
    Webhook {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("request-id".into(), delivery_id()),
            ("authorization".into(), format!("Basic {basic}")),
        ],
        body: serde_json::to_vec(body).unwrap(),
    }
}

/// Pull request `id` of `repo` (`org/project/name`) with `status` (`active`, `completed`, …).
fn azure_pr(repo: &str, id: i64, status: &str) -> serde_json::Value {
    let mut parts = repo.splitn(3, '/');
    let (org, project, name) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    json!({
        "repository": {"id": "r1", "name": name,
                       "url": format!("https://dev.azure.com/{org}/_apis/git/repositories/r1"),
                       "webUrl": format!("https://dev.azure.com/{org}/{project}/_git/{name}"),
                       "project": {"id": "p1", "name": project}},
        "pullRequestId": id, "status": status,
        "createdBy": {"displayName": format!("Dev {id}"), "uniqueName": format!("dev{id}@example.com")},
        "sourceRefName": format!("refs/heads/pr{id}"), "targetRefName": "refs/heads/main",
        "lastMergeSourceCommit": {"commitId": format!("{id:040x}")},
        "url": format!("https://dev.azure.com/{org}/_apis/git/repositories/r1/pullRequests/{id}"),
    })
}

/// `ms.vss-code.git-pullrequest-comment-event`: `comment` posted on pull request `id`.
pub fn azure_comment(auth: (&str, &str), repo: &str, id: i64, comment: &str) -> Webhook {
    let body = json!({"eventType": "ms.vss-code.git-pullrequest-comment-event",
        "message": {"text": format!("Dev {id} has commented on a pull request")},
        "resource": {"comment": {"id": 2, "content": comment, "isDeleted": false,
                                 "author": {"uniqueName": format!("dev{id}@example.com")}},
                     "pullRequest": azure_pr(repo, id, "active")},
        "resourceVersion": "2.0"});
    azure(auth, &body)
}

/// A pull request event (`git.pullrequest.created`, `.updated`, `.merged`) of pull request `id`
/// whose status is `status`.
pub fn azure_pull(
    auth: (&str, &str),
    repo: &str,
    id: i64,
    event_type: &str,
    status: &str,
) -> Webhook {
    let text = match (event_type, status) {
        ("git.pullrequest.merged", _) => format!("Dev {id} merged pull request {id}"),
        (_, "completed") => format!("Dev {id} completed pull request {id}"),
        _ => format!("Dev {id} updated pull request {id}"),
    };
    let body = json!({"eventType": event_type, "message": {"text": text},
        "resource": azure_pr(repo, id, status), "resourceVersion": "1.0"});
    azure(auth, &body)
}

/// Gitea's `issue_comment` on a pull (`X-Gitea-Event-Type: pull_request_comment`), signed with
/// the hex HMAC-SHA256 Gitea sends as `X-Gitea-Signature`; `server` is the Gitea root URL.
pub fn gitea_comment(
    secret: &str,
    server: &str,
    repo: &str,
    pull: i64,
    user: &str,
    comment: &str,
) -> Webhook {
    let server = server.trim_end_matches('/');
    let body = serde_json::to_vec(&json!({
        "action": "created",
        "issue": {
            "id": 9000 + pull, "number": pull, "state": "open",
            "html_url": format!("{server}/{repo}/pulls/{pull}"),
            "user": {"login": "author", "username": "author"},
            "labels": [],
            "pull_request": {"merged": false},
        },
        "comment": {
            "id": 7000 + pull, "body": comment,
            "user": {"login": user, "username": user},
        },
        "repository": {
            "full_name": repo,
            "clone_url": format!("{server}/{repo}.git"),
            "owner": {"login": repo.split('/').next().unwrap_or("")},
        },
        "sender": {"login": user, "username": user},
        "is_pull": true,
    }))
    .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    Webhook {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-gitea-event".into(), "issue_comment".into()),
            ("x-gitea-event-type".into(), "pull_request_comment".into()),
            ("x-gitea-delivery".into(), delivery_id()),
            (
                "x-gitea-signature".into(),
                hex::encode(mac.finalize().into_bytes()),
            ),
        ],
        body,
    }
}
