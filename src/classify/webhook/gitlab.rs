//! GitLab webhooks (`GitlabRequestParserValidator`, `ParseGitlabMergeRequestEvent`,
//! `ParseGitlabMergeRequestCommentEvent`).

use http::HeaderMap;
use serde_json::Value;

use super::super::json::{bool_at, clone_url_matches, int_at, names_at, owned, str_or_empty};
use super::super::signature::verify_gitlab_token;
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
    // The token is checked before anything is parsed.
    if let Some(secret) = crate::classify::config::configured(cfg.webhook_secrets.gitlab.as_ref()) {
        let token = header(headers, "x-gitlab-token").unwrap_or("");
        verify_gitlab_token(token, secret).map_err(|message| ClassifyError::BadSignature {
            vcs: Vcs::Gitlab,
            message,
        })?;
    }
    let kind = header(headers, "x-gitlab-event").unwrap_or("");
    if kind != "Merge Request Hook" && kind != "Note Hook" {
        return Ok(Operation::passthrough(R::IgnoredEvent));
    }
    let v = match parse_json(body) {
        Ok(v) => v,
        Err(op) => return Ok(*op),
    };
    Ok(match kind {
        "Merge Request Hook" => merge_request(&v, cfg),
        _ => match str_or_empty(&v, &["object_attributes", "noteable_type"]) {
            "MergeRequest" => note(&v, cfg),
            "Commit" => Operation::passthrough(R::NotOnPull),
            _ => Operation::passthrough(R::IgnoredEvent),
        },
    })
}

/// `models.NewRepo` for GitLab: name and clone URL must agree (GitLab may have a base path).
fn repo(v: &Value, path: &[&str]) -> Option<String> {
    let full = str_or_empty(v, &[path, &["path_with_namespace"]].concat());
    let clone = str_or_empty(v, &[path, &["git_http_url"]].concat());
    clone_url_matches(full, clone, true).then(|| full.to_owned())
}

fn merge_request(v: &Value, cfg: &ClassifyConfig) -> Operation {
    let (Some(repo), Some(_)) = (
        repo(v, &["project"]),
        repo(v, &["object_attributes", "source"]),
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let oa = |k: &str| str_or_empty(v, &["object_attributes", k]);
    let action = oa("action");
    let draft = bool_at(v, &["object_attributes", "work_in_progress"])
        || bool_at(v, &["object_attributes", "draft"]);
    let action = if draft && action != "close" && !cfg.allow_draft_prs {
        match action {
            "open" | "update" => PullAction::Draft,
            _ => PullAction::Other,
        }
    } else {
        match action {
            "open" => PullAction::Opened,
            "update" => update_kind(v),
            "merge" | "close" => PullAction::Closed,
            _ => PullAction::Other,
        }
    };
    pull_operation(
        PullEvent {
            vcs: Vcs::Gitlab,
            repo,
            pull: int_at(v, &["object_attributes", "iid"]),
            user: str_or_empty(v, &["user", "username"]).to_owned(),
            action,
            labels: names_at(v, &["labels"], "title"),
            meta: PullMeta {
                head_sha: owned(v, &["object_attributes", "last_commit", "id"]),
                url: owned(v, &["object_attributes", "url"]),
                base_branch: owned(v, &["object_attributes", "target_branch"]),
                head_branch: owned(v, &["object_attributes", "source_branch"]),
                author: owned(v, &["user", "username"]),
                api_ref: None,
            },
        },
        cfg,
    )
}

/// `ParseGitlabMergeRequestUpdateEvent`: only a new commit or leaving draft re-plans.
fn update_kind(v: &Value) -> PullAction {
    let new_commit = !str_or_empty(v, &["object_attributes", "oldrev"]).is_empty();
    let prev = str_or_empty(v, &["changes", "title", "previous"]);
    let cur = str_or_empty(v, &["changes", "title", "current"]);
    if new_commit || (prev.starts_with("Draft:") && !cur.starts_with("Draft:")) {
        PullAction::Updated
    } else {
        PullAction::Other
    }
}

fn note(v: &Value, cfg: &ClassifyConfig) -> Operation {
    let (Some(repo), Some(_)) = (repo(v, &["project"]), repo(v, &["merge_request", "source"]))
    else {
        return Operation::passthrough(R::MissingField);
    };
    let mr = |k: &[&str]| owned(v, &[&["merge_request"] as &[&str], k].concat());
    let mut labels = names_at(v, &["merge_request", "labels"], "title");
    if labels.is_empty() {
        labels = names_at(v, &["labels"], "title");
    }
    comment_operation(
        CommentEvent {
            vcs: Vcs::Gitlab,
            repo,
            pull: int_at(v, &["merge_request", "iid"]),
            user: str_or_empty(v, &["user", "username"]).to_owned(),
            comment: str_or_empty(v, &["object_attributes", "note"]).to_owned(),
            labels,
            meta: PullMeta {
                head_sha: mr(&["last_commit", "id"]),
                url: mr(&["url"]),
                base_branch: mr(&["target_branch"]),
                head_branch: mr(&["source_branch"]),
                author: None,
                api_ref: None,
            },
            pull_closed: mr(&["state"]).is_some_and(|s| s != "opened"),
        },
        cfg,
    )
}
