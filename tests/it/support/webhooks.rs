//! Webhook payloads shaped like GitHub's, signed like GitHub signs them.

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
