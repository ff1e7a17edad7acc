//! Bitbucket Cloud and Server webhooks (`handleBitbucket{Cloud,Server}Post` and their parsers).

use http::HeaderMap;
use serde_json::Value;

use super::super::json::{at, int_at, owned, str_at, str_or_empty};
use super::super::signature::verify_prefixed_hmac;
use super::{
    CommentEvent, PullAction, PullEvent, comment_operation, header, parse_json, pull_operation,
};
use crate::classify::ClassifyError;
use crate::classify::config::ClassifyConfig;
use crate::classify::operation::{Operation, PassthroughReason as R, PullMeta, Vcs};

fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
    vcs: Vcs,
) -> Result<(), ClassifyError> {
    let Some(secret) = crate::classify::config::configured(cfg.webhook_secrets.bitbucket.as_ref())
    else {
        return Ok(());
    };
    let sig = header(headers, "x-hub-signature").unwrap_or("");
    verify_prefixed_hmac(body, sig, secret).map_err(|e| ClassifyError::BadSignature {
        vcs,
        message: format!("request did not pass validation: {e}"),
    })
}

/// Every path must hold a non-empty string (the parsers' `validate:"required"`).
fn required(v: &Value, paths: &[&[&str]]) -> bool {
    paths.iter().all(|p| str_at(v, p).is_some())
}

pub fn classify_cloud(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    check_signature(headers, body, cfg, Vcs::BitbucketCloud)?;
    let event = header(headers, "x-event-key").unwrap_or("");
    let action = match event {
        "pullrequest:created" => PullAction::Opened,
        // Atlantis skips an update whose head SHA it saw last (an in-memory cache); a repeat
        // acquire by the same pull is re-entrant, so this proxy does not keep that cache.
        "pullrequest:updated" => PullAction::Updated,
        "pullrequest:fulfilled" | "pullrequest:rejected" => PullAction::Closed,
        "pullrequest:comment_created" => PullAction::Other,
        _ => return Ok(Operation::passthrough(R::IgnoredEvent)),
    };
    let v = match parse_json(body) {
        Ok(v) => v,
        Err(op) => return Ok(*op),
    };
    let pr =
        |p: &[&'static str]| -> Vec<&'static str> { [&["pullrequest"] as &[&str], p].concat() };
    let ok = required(
        &v,
        &[
            &["actor", "account_id"],
            &["repository", "full_name"],
            &["repository", "links", "html", "href"],
            &pr(&["source", "repository", "full_name"]),
            &pr(&["source", "repository", "links", "html", "href"]),
            &pr(&["source", "commit", "hash"]),
            &pr(&["source", "branch", "name"]),
            &pr(&["destination", "branch", "name"]),
            &pr(&["links", "html", "href"]),
            &pr(&["state"]),
        ],
    ) && int_at(&v, &pr(&["id"])) != 0;
    let state = str_or_empty(&v, &pr(&["state"]));
    if !ok || !matches!(state, "OPEN" | "MERGED" | "SUPERSEDED" | "DECLINED") {
        return Ok(Operation::passthrough(R::MissingField));
    }
    let repo = str_or_empty(&v, &["repository", "full_name"]).to_owned();
    let user = str_or_empty(&v, &["actor", "account_id"]).to_owned();
    let pull = int_at(&v, &pr(&["id"]));
    let meta = PullMeta {
        head_sha: owned(&v, &pr(&["source", "commit", "hash"])),
        url: owned(&v, &pr(&["links", "html", "href"])),
        base_branch: owned(&v, &pr(&["destination", "branch", "name"])),
        head_branch: owned(&v, &pr(&["source", "branch", "name"])),
        author: Some(user.clone()),
        api_ref: None,
    };
    if event == "pullrequest:comment_created" {
        let Some(comment) = at(&v, &["comment", "content", "raw"]).and_then(Value::as_str) else {
            return Ok(Operation::passthrough(R::MissingField));
        };
        let ev = CommentEvent {
            vcs: Vcs::BitbucketCloud,
            repo,
            pull,
            user,
            comment: comment.to_owned(),
            labels: Vec::new(),
            meta,
            pull_closed: state != "OPEN",
        };
        return Ok(comment_operation(ev, cfg));
    }
    let ev = PullEvent {
        vcs: Vcs::BitbucketCloud,
        repo,
        pull,
        user,
        action,
        labels: Vec::new(),
        meta,
    };
    Ok(pull_operation(ev, cfg))
}

pub fn classify_server(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    let event = header(headers, "x-event-key").unwrap_or("");
    // Bitbucket Server sends its ping unsigned; Atlantis answers it before any check.
    if event == "diagnostics:ping" {
        return Ok(Operation::passthrough(R::IgnoredEvent));
    }
    check_signature(headers, body, cfg, Vcs::BitbucketServer)?;
    let action = match event {
        "pr:opened" | "pr:from_ref_updated" => PullAction::Opened,
        "pr:merged" | "pr:declined" | "pr:deleted" => PullAction::Closed,
        "pr:comment:added" => PullAction::Other,
        _ => return Ok(Operation::passthrough(R::IgnoredEvent)),
    };
    let v = match parse_json(body) {
        Ok(v) => v,
        Err(op) => return Ok(*op),
    };
    let pr =
        |p: &[&'static str]| -> Vec<&'static str> { [&["pullRequest"] as &[&str], p].concat() };
    let side = |s: &'static str, p: &[&'static str]| pr(&[&[s] as &[&str], p].concat());
    let mut paths = vec![vec!["actor", "name"], pr(&["state"])];
    for s in ["fromRef", "toRef"] {
        for p in [
            &["repository", "slug"] as &[&str],
            &["repository", "project", "name"],
            &["repository", "project", "key"],
            &["displayId"],
            &["latestCommit"],
        ] {
            paths.push(side(s, p));
        }
    }
    let refs: Vec<&[&str]> = paths.iter().map(Vec::as_slice).collect();
    let state = str_or_empty(&v, &pr(&["state"]));
    let ok = required(&v, &refs)
        && int_at(&v, &pr(&["id"])) != 0
        && at(&v, &pr(&["version"])).is_some_and(Value::is_number)
        && matches!(state, "OPEN" | "MERGED" | "DECLINED");
    if !ok {
        return Ok(Operation::passthrough(R::MissingField));
    }
    // Atlantis names a Bitbucket Server repo by project *name* and slug.
    let repo = format!(
        "{}/{}",
        str_or_empty(&v, &side("toRef", &["repository", "project", "name"])),
        str_or_empty(&v, &side("toRef", &["repository", "slug"]))
    );
    let user = str_or_empty(&v, &["actor", "name"]).to_owned();
    let pull = int_at(&v, &pr(&["id"]));
    let meta = PullMeta {
        head_sha: owned(&v, &side("fromRef", &["latestCommit"])),
        url: None,
        base_branch: owned(&v, &side("toRef", &["displayId"])),
        head_branch: owned(&v, &side("fromRef", &["displayId"])),
        author: Some(user.clone()),
        api_ref: None,
    };
    if event == "pr:comment:added" {
        let Some(comment) = at(&v, &["comment", "text"]).and_then(Value::as_str) else {
            return Ok(Operation::passthrough(R::MissingField));
        };
        let ev = CommentEvent {
            vcs: Vcs::BitbucketServer,
            repo,
            pull,
            user,
            comment: comment.to_owned(),
            labels: Vec::new(),
            meta,
            pull_closed: state != "OPEN",
        };
        return Ok(comment_operation(ev, cfg));
    }
    let ev = PullEvent {
        vcs: Vcs::BitbucketServer,
        repo,
        pull,
        user,
        action,
        labels: Vec::new(),
        meta,
    };
    Ok(pull_operation(ev, cfg))
}
