//! Gitea webhooks (`handleGiteaPost`, `ParseGiteaPullRequestEvent`, `ParseGiteaIssueCommentEvent`).

use std::borrow::Cow;

use http::HeaderMap;
use serde::Deserialize;

use super::super::json::clone_url_matches;
use super::super::signature::verify_gitea;
use super::{
    CommentEvent, PullAction, PullEvent, comment_operation, header, other_owner, parse_typed,
    pull_operation, url_host,
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
    // Typed payloads: only the fields read below are kept; unknown ones are skipped.
    Ok(match header(headers, "x-gitea-event-type").unwrap_or("") {
        "pull_request_comment" => match parse_typed::<CommentPayload>(body) {
            Ok(e) => comment(e, cfg),
            Err(op) => *op,
        },
        "pull_request" | "pull_request_sync" => match parse_typed::<PullPayload>(body) {
            Ok(e) => pull(e, cfg),
            Err(op) => *op,
        },
        _ => Operation::passthrough(R::IgnoredEvent),
    })
}

type Text<'a> = Option<Cow<'a, str>>;

fn s<'b>(t: &'b Text<'_>) -> &'b str {
    t.as_deref().unwrap_or("")
}

fn owned(t: &Text<'_>) -> Option<String> {
    t.as_deref().filter(|v| !v.is_empty()).map(str::to_owned)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Repo<'a> {
    #[serde(borrow)]
    full_name: Text<'a>,
    #[serde(borrow)]
    clone_url: Text<'a>,
}

impl Repo<'_> {
    fn checked(r: Option<&Repo<'_>>) -> Option<String> {
        let r = r?;
        let full = s(&r.full_name);
        clone_url_matches(full, s(&r.clone_url), false).then(|| full.to_owned())
    }

    fn host(r: Option<&Repo<'_>>) -> Option<String> {
        url_host(s(&r?.clone_url))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct User<'a> {
    #[serde(borrow)]
    login: Text<'a>,
}

fn login<'b>(u: &'b Option<User<'_>>) -> &'b str {
    u.as_ref().map_or("", |u| s(&u.login))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Label<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

fn names(labels: &Option<Vec<Label<'_>>>) -> Vec<String> {
    labels
        .iter()
        .flatten()
        .filter_map(|l| l.name.as_deref().map(str::to_owned))
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Branch<'a> {
    #[serde(borrow)]
    repo: Option<Repo<'a>>,
    #[serde(borrow)]
    sha: Text<'a>,
    #[serde(borrow)]
    r#ref: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PullRequest<'a> {
    #[serde(borrow)]
    base: Option<Branch<'a>>,
    #[serde(borrow)]
    head: Option<Branch<'a>>,
    #[serde(borrow)]
    state: Text<'a>,
    merged: Option<bool>,
    #[serde(borrow)]
    user: Option<User<'a>>,
    number: Option<i64>,
    #[serde(borrow)]
    labels: Option<Vec<Label<'a>>>,
    #[serde(borrow)]
    html_url: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PullPayload<'a> {
    #[serde(borrow)]
    pull_request: Option<PullRequest<'a>>,
}

/// Gitea's PR event type: any event on an open pull autoplans; only a *merged* close releases.
fn pull(e: PullPayload<'_>, cfg: &ClassifyConfig) -> Operation {
    let pr = e.pull_request.unwrap_or_default();
    let host = Repo::host(pr.base.as_ref().and_then(|b| b.repo.as_ref()));
    let (Some(repo), Some(head_repo), Some(head)) = (
        Repo::checked(pr.base.as_ref().and_then(|b| b.repo.as_ref())),
        Repo::checked(pr.head.as_ref().and_then(|h| h.repo.as_ref())),
        pr.head.as_ref(),
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let action = if s(&pr.state) == "open" {
        PullAction::Opened
    } else if pr.merged == Some(true) {
        PullAction::Closed
    } else {
        PullAction::Other
    };
    let user = login(&pr.user).to_owned();
    pull_operation(
        PullEvent {
            vcs: Vcs::Gitea,
            host,
            pull: pr.number.unwrap_or(0),
            user: user.clone(),
            action,
            labels: names(&pr.labels),
            meta: PullMeta {
                head_sha: owned(&head.sha),
                url: owned(&pr.html_url),
                base_branch: pr.base.as_ref().and_then(|b| owned(&b.r#ref)),
                head_branch: owned(&head.r#ref),
                author: Some(user).filter(|u| !u.is_empty()),
                api_ref: None,
                fork: Some(other_owner(&repo, &head_repo)),
            },
            repo,
        },
        cfg,
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Issue<'a> {
    number: Option<i64>,
    #[serde(borrow)]
    labels: Option<Vec<Label<'a>>>,
    #[serde(borrow)]
    html_url: Text<'a>,
    #[serde(borrow)]
    user: Option<User<'a>>,
    #[serde(borrow)]
    state: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Comment<'a> {
    #[serde(borrow)]
    user: Option<User<'a>>,
    #[serde(borrow)]
    body: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CommentPayload<'a> {
    #[serde(borrow)]
    repository: Option<Repo<'a>>,
    #[serde(borrow)]
    issue: Option<Issue<'a>>,
    #[serde(borrow)]
    comment: Option<Comment<'a>>,
}

fn comment(e: CommentPayload<'_>, cfg: &ClassifyConfig) -> Operation {
    let host = Repo::host(e.repository.as_ref());
    let Some(repo) = Repo::checked(e.repository.as_ref()) else {
        return Operation::passthrough(R::MissingField);
    };
    let issue = e.issue.unwrap_or_default();
    let comment = e.comment.unwrap_or_default();
    // Atlantis ignores this parser's errors and runs on; a pull number of 0 cannot lock.
    let pull = issue.number.unwrap_or(0);
    if pull == 0 {
        return Operation::passthrough(R::MissingField);
    }
    let author = login(&issue.user);
    comment_operation(
        CommentEvent {
            vcs: Vcs::Gitea,
            repo,
            pull,
            user: login(&comment.user).to_owned(),
            comment: s(&comment.body).to_owned(),
            labels: names(&issue.labels),
            meta: PullMeta {
                url: owned(&issue.html_url),
                author: Some(author.to_owned()).filter(|a| !a.is_empty()),
                ..PullMeta::default()
            },
            pull_closed: s(&issue.state) == "closed",
            host,
        },
        cfg,
    )
}
