//! GitHub webhooks (`handleGithubPost`, `ParseGithubIssueCommentEvent`, `ParseGithubPullEvent`).

use std::borrow::Cow;

use http::HeaderMap;
use serde::Deserialize;

use super::super::json::clone_url_matches;
use super::super::signature::verify_prefixed_hmac;
use super::{
    CommentEvent, PullAction, PullEvent, comment_operation, form_value, header, other_owner,
    pull_operation, url_host,
};
use crate::classify::ClassifyError;
use crate::classify::config::ClassifyConfig;
use crate::classify::operation::{Operation, PassthroughReason as R, PullMeta, Vcs};

/// Extracts the JSON payload and checks the signature like `GithubRequestValidator.Validate`.
fn payload<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    cfg: &ClassifyConfig,
) -> Result<Result<Cow<'a, [u8]>, Operation>, ClassifyError> {
    let content_type = header(headers, "content-type").unwrap_or("");
    let unparseable = || Ok(Err(Operation::passthrough(R::Unparseable)));
    let Some(secret) = crate::classify::config::configured(cfg.webhook_secrets.github.as_ref())
    else {
        // Without a secret Atlantis matches the content type exactly.
        return match content_type {
            "application/json" => Ok(Ok(Cow::Borrowed(body))),
            "application/x-www-form-urlencoded" => match form_value(body, "payload") {
                Ok(Some(p)) if !p.is_empty() => Ok(Ok(Cow::Owned(p.into_bytes()))),
                _ => unparseable(),
            },
            _ => unparseable(),
        };
    };
    // The signature over the raw body comes first: nothing of an unauthenticated body is parsed.
    let signature = header(headers, "x-hub-signature-256")
        .or_else(|| header(headers, "x-hub-signature"))
        .unwrap_or("");
    verify_prefixed_hmac(body, signature, secret).map_err(|message| {
        ClassifyError::BadSignature {
            vcs: Vcs::Github,
            message,
        }
    })?;
    // go-github's ValidatePayload: the media type decides how the payload is carried.
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = match media.as_str() {
        "application/json" => Cow::Borrowed(body),
        "application/x-www-form-urlencoded" => match form_value(body, "payload") {
            Ok(p) => Cow::Owned(p.unwrap_or_default().into_bytes()),
            Err(()) => return unparseable(),
        },
        _ => return unparseable(),
    };
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
    // Typed payloads (like go-github's): unknown fields are skipped without allocating, and a
    // field of the wrong type fails the parse, as it does for Atlantis.
    let parsed = match header(headers, "x-github-event").unwrap_or("") {
        "issue_comment" => serde_json::from_slice(&json).map(|e| comment(e, cfg)),
        "pull_request" => serde_json::from_slice(&json).map(|e| pull(e, cfg)),
        _ => return Ok(Operation::passthrough(R::IgnoredEvent)),
    };
    Ok(parsed.unwrap_or_else(|_| Operation::passthrough(R::Unparseable)))
}

/// A string field, borrowed from the body unless it holds escapes.
type Text<'a> = Option<Cow<'a, str>>;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Repo<'a> {
    #[serde(borrow)]
    full_name: Text<'a>,
    #[serde(borrow)]
    clone_url: Text<'a>,
}

impl Repo<'_> {
    /// `ParseGithubRepo` → `models.NewRepo`: the clone URL must name the same repo.
    fn checked(r: Option<Repo<'_>>) -> Option<String> {
        let r = r?;
        let full = r.full_name.as_deref().unwrap_or("");
        clone_url_matches(full, r.clone_url.as_deref().unwrap_or(""), false)
            .then(|| full.to_owned())
    }

    /// The clone URL's host (Atlantis's `VCSHost.Hostname`).
    fn host(r: Option<&Repo<'_>>) -> Option<String> {
        url_host(r?.clone_url.as_deref()?)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct User<'a> {
    #[serde(borrow)]
    login: Text<'a>,
}

fn login(u: Option<User<'_>>) -> Option<String> {
    u.and_then(|u| u.login)
        .filter(|l| !l.is_empty())
        .map(Cow::into_owned)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Label<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

fn label_names(labels: Option<Vec<Option<Label<'_>>>>) -> Vec<String> {
    labels
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| l?.name.map(Cow::into_owned))
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IssuePull<'a> {
    #[serde(borrow)]
    html_url: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Issue<'a> {
    number: Option<i64>,
    #[serde(borrow)]
    state: Text<'a>,
    #[serde(borrow)]
    html_url: Text<'a>,
    #[serde(borrow)]
    user: Option<User<'a>>,
    #[serde(borrow)]
    labels: Option<Vec<Option<Label<'a>>>>,
    #[serde(borrow)]
    pull_request: Option<IssuePull<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Comment<'a> {
    #[serde(borrow)]
    body: Text<'a>,
    #[serde(borrow)]
    user: Option<User<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IssueCommentEvent<'a> {
    #[serde(borrow)]
    action: Text<'a>,
    #[serde(borrow)]
    issue: Option<Issue<'a>>,
    #[serde(borrow)]
    comment: Option<Comment<'a>>,
    #[serde(borrow)]
    repository: Option<Repo<'a>>,
}

fn comment(e: IssueCommentEvent<'_>, cfg: &ClassifyConfig) -> Operation {
    if e.action.as_deref() != Some("created") {
        return Operation::passthrough(R::CommentNotCreated);
    }
    let comment = e.comment.unwrap_or_default();
    let issue = e.issue.unwrap_or_default();
    let host = Repo::host(e.repository.as_ref());
    let (Some(repo), Some(user)) = (Repo::checked(e.repository), login(comment.user)) else {
        return Operation::passthrough(R::MissingField);
    };
    let pull = issue.number.unwrap_or(0);
    if pull == 0 {
        return Operation::passthrough(R::MissingField);
    }
    // Atlantis would fetch the pull and fail for a plain issue; nothing locks.
    let Some(link) = issue.pull_request else {
        return Operation::passthrough(R::NotOnPull);
    };
    let meta = PullMeta {
        url: link.html_url.or(issue.html_url).map(Cow::into_owned),
        author: login(issue.user),
        ..PullMeta::default()
    };
    comment_operation(
        CommentEvent {
            vcs: Vcs::Github,
            repo,
            pull,
            user,
            comment: comment.body.map(Cow::into_owned).unwrap_or_default(),
            labels: label_names(issue.labels),
            meta,
            pull_closed: issue.state.as_deref() == Some("closed"),
            host,
        },
        cfg,
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Branch<'a> {
    #[serde(borrow)]
    r#ref: Text<'a>,
    #[serde(borrow)]
    sha: Text<'a>,
    #[serde(borrow)]
    repo: Option<Repo<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PullRequest<'a> {
    number: Option<i64>,
    draft: Option<bool>,
    #[serde(borrow)]
    html_url: Text<'a>,
    #[serde(borrow)]
    user: Option<User<'a>>,
    #[serde(borrow)]
    labels: Option<Vec<Option<Label<'a>>>>,
    #[serde(borrow)]
    head: Option<Branch<'a>>,
    #[serde(borrow)]
    base: Option<Branch<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PullRequestEvent<'a> {
    #[serde(borrow)]
    action: Text<'a>,
    #[serde(borrow)]
    pull_request: Option<PullRequest<'a>>,
    #[serde(borrow)]
    sender: Option<User<'a>>,
}

fn non_empty(s: Text<'_>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(Cow::into_owned)
}

fn pull(e: PullRequestEvent<'_>, cfg: &ClassifyConfig) -> Operation {
    let Some(pr) = e.pull_request else {
        return Operation::passthrough(R::MissingField);
    };
    let head = pr.head.unwrap_or_default();
    let base = pr.base.unwrap_or_default();
    // ParseGithubPull's required fields, then the sender.
    let (Some(sha), Some(url), Some(head_ref), Some(base_ref), Some(author)) = (
        non_empty(head.sha),
        non_empty(pr.html_url),
        non_empty(head.r#ref),
        non_empty(base.r#ref),
        login(pr.user),
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let number = pr.number.unwrap_or(0);
    let host = Repo::host(base.repo.as_ref());
    let (Some(repo), Some(head_repo), Some(user), true) = (
        Repo::checked(base.repo),
        Repo::checked(head.repo),
        login(e.sender),
        number != 0,
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let action = e.action.as_deref().unwrap_or("");
    let draft = pr.draft == Some(true) && action != "closed" && !cfg.allow_draft_prs;
    let action = match action {
        "opened" | "ready_for_review" | "synchronize" if draft => PullAction::Draft,
        "opened" | "ready_for_review" => PullAction::Opened,
        "synchronize" => PullAction::Updated,
        "closed" => PullAction::Closed,
        _ => PullAction::Other,
    };
    pull_operation(
        PullEvent {
            vcs: Vcs::Github,
            pull: number,
            user,
            action,
            labels: label_names(pr.labels),
            meta: PullMeta {
                head_sha: Some(sha),
                url: Some(url),
                base_branch: Some(base_ref),
                head_branch: Some(head_ref),
                author: Some(author),
                api_ref: None,
                fork: Some(other_owner(&repo, &head_repo)),
            },
            repo,
            host,
        },
        cfg,
    )
}
