//! GitHub webhooks (`handleGithubPost`, `ParseGithubIssueCommentEvent`, `ParseGithubPullEvent`).

use http::HeaderMap;
use serde_json::Value;

use super::super::json::{
    bool_at, clone_url_matches, int_at, names_at, owned, str_at, str_or_empty,
};
use super::super::signature::verify_prefixed_hmac;
use super::{
    CommentEvent, PullAction, PullEvent, comment_operation, form_value, header, parse_json,
    pull_operation,
};
use crate::classify::ClassifyError;
use crate::classify::config::ClassifyConfig;
use crate::classify::operation::{Operation, PassthroughReason as R, PullMeta, Vcs};

/// Extracts the JSON payload and checks the signature like `GithubRequestValidator.Validate`.
fn payload(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Result<Vec<u8>, Operation>, ClassifyError> {
    let content_type = header(headers, "content-type").unwrap_or("");
    let unparseable = || Ok(Err(Operation::passthrough(R::Unparseable)));
    let Some(secret) = cfg
        .webhook_secrets
        .github
        .as_ref()
        .filter(|s| !s.is_empty())
    else {
        // Without a secret Atlantis matches the content type exactly.
        return match content_type {
            "application/json" => Ok(Ok(body.to_vec())),
            "application/x-www-form-urlencoded" => match form_value(body, "payload") {
                Ok(Some(p)) if !p.is_empty() => Ok(Ok(p.into_bytes())),
                _ => unparseable(),
            },
            _ => unparseable(),
        };
    };
    // go-github's ValidatePayload: media type parsed, then the signature over the raw body.
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = match media.as_str() {
        "application/json" => body.to_vec(),
        "application/x-www-form-urlencoded" => match form_value(body, "payload") {
            Ok(p) => p.unwrap_or_default().into_bytes(),
            Err(()) => return unparseable(),
        },
        _ => return unparseable(),
    };
    let signature = header(headers, "x-hub-signature-256")
        .or_else(|| header(headers, "x-hub-signature"))
        .unwrap_or("");
    verify_prefixed_hmac(body, signature, secret).map_err(|message| {
        ClassifyError::BadSignature {
            vcs: Vcs::Github,
            message,
        }
    })?;
    Ok(Ok(json))
}

pub fn classify(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    let json = match payload(headers, body, cfg)? {
        Ok(j) => j,
        Err(op) => return Ok(op),
    };
    let event = header(headers, "x-github-event").unwrap_or("");
    let v = match parse_json(&json) {
        Ok(v) => v,
        Err(op) => return Ok(*op),
    };
    Ok(match event {
        "issue_comment" => comment(&v, cfg),
        "pull_request" => pull(&v, cfg),
        _ => Operation::passthrough(R::IgnoredEvent),
    })
}

fn repo_ok(v: &Value, path: &[&str]) -> Option<String> {
    let full = str_or_empty(v, &[path, &["full_name"]].concat());
    let clone = str_or_empty(v, &[path, &["clone_url"]].concat());
    clone_url_matches(full, clone, false).then(|| full.to_owned())
}

fn comment(v: &Value, cfg: &ClassifyConfig) -> Operation {
    if str_or_empty(v, &["action"]) != "created" {
        return Operation::passthrough(R::CommentNotCreated);
    }
    let (Some(repo), Some(user)) = (
        repo_ok(v, &["repository"]),
        owned(v, &["comment", "user", "login"]),
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let pull = int_at(v, &["issue", "number"]);
    if pull == 0 {
        return Operation::passthrough(R::MissingField);
    }
    // Atlantis would fetch the pull and fail for a plain issue; nothing locks.
    if v.pointer("/issue/pull_request").is_none_or(Value::is_null) {
        return Operation::passthrough(R::NotOnPull);
    }
    let meta = PullMeta {
        url: owned(v, &["issue", "pull_request", "html_url"])
            .or_else(|| owned(v, &["issue", "html_url"])),
        author: owned(v, &["issue", "user", "login"]),
        ..PullMeta::default()
    };
    comment_operation(
        CommentEvent {
            vcs: Vcs::Github,
            repo,
            pull,
            user,
            comment: str_or_empty(v, &["comment", "body"]).to_owned(),
            labels: names_at(v, &["issue", "labels"], "name"),
            meta,
            pull_closed: str_or_empty(v, &["issue", "state"]) == "closed",
        },
        cfg,
    )
}

fn pull(v: &Value, cfg: &ClassifyConfig) -> Operation {
    let pr = &["pull_request"];
    let field = |p: &[&str]| str_at(v, &[pr as &[&str], p].concat()).map(str::to_owned);
    let (Some(sha), Some(url), Some(head), Some(base), Some(author)) = (
        field(&["head", "sha"]),
        field(&["html_url"]),
        field(&["head", "ref"]),
        field(&["base", "ref"]),
        field(&["user", "login"]),
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let number = int_at(v, &["pull_request", "number"]);
    let base_repo = repo_ok(v, &["pull_request", "base", "repo"]);
    let head_repo = repo_ok(v, &["pull_request", "head", "repo"]);
    let sender = owned(v, &["sender", "login"]);
    let (Some(repo), Some(_), Some(user), true) = (base_repo, head_repo, sender, number != 0)
    else {
        return Operation::passthrough(R::MissingField);
    };
    let action = str_or_empty(v, &["action"]);
    let draft =
        bool_at(v, &["pull_request", "draft"]) && action != "closed" && !cfg.allow_draft_prs;
    let action = match action {
        "opened" | "ready_for_review" if draft => PullAction::Draft,
        "synchronize" if draft => PullAction::Draft,
        "opened" | "ready_for_review" => PullAction::Opened,
        "synchronize" => PullAction::Updated,
        "closed" => PullAction::Closed,
        _ => PullAction::Other,
    };
    pull_operation(
        PullEvent {
            vcs: Vcs::Github,
            repo,
            pull: number,
            user,
            action,
            labels: names_at(v, &["pull_request", "labels"], "name"),
            meta: PullMeta {
                head_sha: Some(sha),
                url: Some(url),
                base_branch: Some(base),
                head_branch: Some(head),
                author: Some(author),
                api_ref: None,
            },
        },
        cfg,
    )
}
