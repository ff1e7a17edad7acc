//! Gitea webhooks (`handleGiteaPost`, `ParseGiteaPullRequestEvent`, `ParseGiteaIssueCommentEvent`).

use http::HeaderMap;
use serde_json::Value;

use super::super::json::{bool_at, clone_url_matches, int_at, names_at, owned, str_or_empty};
use super::super::signature::verify_gitea;
use super::{
    CommentEvent, PullAction, PullEvent, comment_operation, header, parse_json, pull_operation,
};
use crate::classify::ClassifyError;
use crate::classify::config::ClassifyConfig;
use crate::classify::operation::{Operation, PassthroughReason as R, PullMeta, Vcs};

pub fn classify(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    if let Some(secret) = crate::classify::config::configured(cfg.webhook_secrets.gitea.as_ref()) {
        let sig = header(headers, "x-gitea-signature").unwrap_or("");
        verify_gitea(body, sig, secret).map_err(|e| ClassifyError::BadSignature {
            vcs: Vcs::Gitea,
            message: format!("request did not pass validation: {e}"),
        })?;
    }
    let kind = header(headers, "x-gitea-event-type").unwrap_or("");
    if !matches!(
        kind,
        "pull_request_comment" | "pull_request" | "pull_request_sync"
    ) {
        return Ok(Operation::passthrough(R::IgnoredEvent));
    }
    let v = match parse_json(body) {
        Ok(v) => v,
        Err(op) => return Ok(*op),
    };
    Ok(match kind {
        "pull_request_comment" => comment(&v, cfg),
        _ => pull(&v, cfg),
    })
}

fn repo(v: &Value, path: &[&str]) -> Option<String> {
    let full = str_or_empty(v, &[path, &["full_name"]].concat());
    let clone = str_or_empty(v, &[path, &["clone_url"]].concat());
    clone_url_matches(full, clone, false).then(|| full.to_owned())
}

/// Gitea's PR event type: any event on an open pull autoplans; only a *merged* close releases.
fn pull(v: &Value, cfg: &ClassifyConfig) -> Operation {
    let pr =
        |p: &[&'static str]| -> Vec<&'static str> { [&["pull_request"] as &[&str], p].concat() };
    let (Some(repo), Some(_), true) = (
        repo(v, &pr(&["base", "repo"])),
        repo(v, &pr(&["head", "repo"])),
        v.pointer("/pull_request/head")
            .is_some_and(Value::is_object),
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let action = if str_or_empty(v, &pr(&["state"])) == "open" {
        PullAction::Opened
    } else if bool_at(v, &pr(&["merged"])) {
        PullAction::Closed
    } else {
        PullAction::Other
    };
    let user = str_or_empty(v, &pr(&["user", "login"])).to_owned();
    pull_operation(
        PullEvent {
            vcs: Vcs::Gitea,
            repo,
            pull: int_at(v, &pr(&["number"])),
            user: user.clone(),
            action,
            labels: names_at(v, &pr(&["labels"]), "name"),
            meta: PullMeta {
                head_sha: owned(v, &pr(&["head", "sha"])),
                url: owned(v, &pr(&["html_url"])),
                base_branch: owned(v, &pr(&["base", "ref"])),
                head_branch: owned(v, &pr(&["head", "ref"])),
                author: Some(user).filter(|u| !u.is_empty()),
                api_ref: None,
            },
        },
        cfg,
    )
}

fn comment(v: &Value, cfg: &ClassifyConfig) -> Operation {
    let Some(repo) = repo(v, &["repository"]) else {
        return Operation::passthrough(R::MissingField);
    };
    // Atlantis ignores this parser's errors and runs on; a pull number of 0 cannot lock.
    let pull = int_at(v, &["issue", "number"]);
    if pull == 0 {
        return Operation::passthrough(R::MissingField);
    }
    comment_operation(
        CommentEvent {
            vcs: Vcs::Gitea,
            repo,
            pull,
            user: str_or_empty(v, &["comment", "user", "login"]).to_owned(),
            comment: str_or_empty(v, &["comment", "body"]).to_owned(),
            labels: names_at(v, &["issue", "labels"], "name"),
            meta: PullMeta {
                url: owned(v, &["issue", "html_url"]),
                author: owned(v, &["issue", "user", "login"]),
                ..PullMeta::default()
            },
            pull_closed: str_or_empty(v, &["issue", "state"]) == "closed",
        },
        cfg,
    )
}
