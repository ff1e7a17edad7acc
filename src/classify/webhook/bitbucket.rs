//! Bitbucket Cloud and Server webhooks (`handleBitbucket{Cloud,Server}Post` and their parsers).

use std::borrow::Cow;

use http::HeaderMap;
use serde::Deserialize;

use super::super::signature::verify_prefixed_hmac;
use super::{
    CommentEvent, PullAction, PullEvent, comment_operation, header, other_owner, parse_typed,
    pull_operation, url_host,
};
use crate::classify::ClassifyError;
use crate::classify::config::ClassifyConfig;
use crate::classify::operation::{Operation, PassthroughReason as R, PullMeta, Vcs};

type Text<'a> = Option<Cow<'a, str>>;

fn s<'b>(t: &'b Text<'_>) -> &'b str {
    t.as_deref().unwrap_or("")
}

/// A non-empty string (the parsers' `validate:"required"`).
fn req<'b>(t: Option<&'b Text<'_>>) -> Option<&'b str> {
    t.and_then(|t| t.as_deref()).filter(|v| !v.is_empty())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Href<'a> {
    #[serde(borrow)]
    href: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Links<'a> {
    #[serde(borrow)]
    html: Option<Href<'a>>,
}

fn html<'b>(l: &'b Option<Links<'_>>) -> Option<&'b Text<'b>> {
    l.as_ref()?.html.as_ref().map(|h| &h.href)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CloudRepo<'a> {
    #[serde(borrow)]
    full_name: Text<'a>,
    #[serde(borrow)]
    links: Option<Links<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Commit<'a> {
    #[serde(borrow)]
    hash: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CloudSide<'a> {
    #[serde(borrow)]
    repository: Option<CloudRepo<'a>>,
    #[serde(borrow)]
    commit: Option<Commit<'a>>,
    #[serde(borrow)]
    branch: Option<Named<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CloudPull<'a> {
    id: Option<i64>,
    #[serde(borrow)]
    state: Text<'a>,
    #[serde(borrow)]
    source: Option<CloudSide<'a>>,
    #[serde(borrow)]
    destination: Option<CloudSide<'a>>,
    #[serde(borrow)]
    links: Option<Links<'a>>,
    /// Only its presence matters (`validate:"required"` on a slice: not null).
    participants: Option<serde::de::IgnoredAny>,
    #[serde(borrow)]
    author: Option<Author<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Author<'a> {
    #[serde(borrow)]
    uuid: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Account<'a> {
    #[serde(borrow)]
    account_id: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CloudContent<'a> {
    #[serde(borrow)]
    raw: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CloudComment<'a> {
    #[serde(borrow)]
    content: Option<CloudContent<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CloudEvent<'a> {
    #[serde(borrow)]
    actor: Option<Account<'a>>,
    #[serde(borrow)]
    repository: Option<CloudRepo<'a>>,
    #[serde(borrow)]
    pullrequest: Option<CloudPull<'a>>,
    #[serde(borrow)]
    comment: Option<CloudComment<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Project<'a> {
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    key: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServerRepo<'a> {
    #[serde(borrow)]
    slug: Text<'a>,
    #[serde(borrow)]
    project: Option<Project<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ServerRef<'a> {
    #[serde(borrow)]
    repository: Option<ServerRepo<'a>>,
    #[serde(borrow)]
    display_id: Text<'a>,
    #[serde(borrow)]
    latest_commit: Text<'a>,
}

impl ServerRef<'_> {
    /// Every field Atlantis requires of a side, non-empty.
    fn complete(&self) -> bool {
        let repo = self.repository.as_ref();
        let project = repo.and_then(|r| r.project.as_ref());
        req(repo.map(|r| &r.slug)).is_some()
            && req(project.map(|p| &p.name)).is_some()
            && req(project.map(|p| &p.key)).is_some()
            && req(Some(&self.display_id)).is_some()
            && req(Some(&self.latest_commit)).is_some()
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ServerPull<'a> {
    id: Option<i64>,
    version: Option<serde_json::Number>,
    #[serde(borrow)]
    state: Text<'a>,
    #[serde(borrow)]
    from_ref: Option<ServerRef<'a>>,
    #[serde(borrow)]
    to_ref: Option<ServerRef<'a>>,
    /// Only its presence matters (`validate:"required"`: not null).
    reviewers: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServerComment<'a> {
    #[serde(borrow)]
    text: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ServerEvent<'a> {
    #[serde(borrow)]
    actor: Option<Named<'a>>,
    #[serde(borrow)]
    pull_request: Option<ServerPull<'a>>,
    #[serde(borrow)]
    comment: Option<ServerComment<'a>>,
}

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

pub fn classify_cloud(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    check_signature(headers, body, cfg, Vcs::BitbucketCloud)?;
    let event = header(headers, "x-event-key").unwrap_or("");
    let action = match event {
        "pullrequest:created" => PullAction::Opened,
        "pullrequest:updated" => PullAction::Updated,
        "pullrequest:fulfilled" | "pullrequest:rejected" => PullAction::Closed,
        "pullrequest:comment_created" => PullAction::Other,
        _ => return Ok(Operation::passthrough(R::IgnoredEvent)),
    };
    let e = match parse_typed::<CloudEvent>(body) {
        Ok(e) => e,
        Err(op) => return Ok(*op),
    };
    let pr = e.pullrequest.unwrap_or_default();
    // `validator.Struct(event)`: these must be present (Atlantis answers 400 otherwise).
    let dst_present = pr.destination.as_ref().is_some_and(|d| {
        let r = d.repository.as_ref();
        r.and_then(|r| r.full_name.as_ref()).is_some()
            && r.and_then(|r| html(&r.links))
                .and_then(|h| h.as_ref())
                .is_some()
            && d.commit.as_ref().and_then(|c| c.hash.as_ref()).is_some()
    });
    let author_present = pr.author.as_ref().is_some_and(|a| a.uuid.is_some());
    if !dst_present || !author_present || pr.participants.is_none() {
        return Ok(Operation::passthrough(R::MissingField));
    }
    let src = pr.source.unwrap_or_default();
    let dst = pr.destination.unwrap_or_default();
    let src_repo = src.repository.unwrap_or_default();
    let repo_v = e.repository.unwrap_or_default();
    let host = html(&repo_v.links)
        .and_then(|h| h.as_deref())
        .and_then(url_host);
    let fork = other_owner(s(&repo_v.full_name), s(&src_repo.full_name));
    let fields = (
        req(e.actor.as_ref().map(|a| &a.account_id)),
        req(Some(&repo_v.full_name)),
        req(html(&repo_v.links)),
        req(Some(&src_repo.full_name)),
        req(html(&src_repo.links)),
        req(src.commit.as_ref().map(|c| &c.hash)),
        req(src.branch.as_ref().map(|b| &b.name)),
        req(dst.branch.as_ref().map(|b| &b.name)),
        req(html(&pr.links)),
        req(Some(&pr.state)),
    );
    let (
        Some(user),
        Some(repo),
        Some(_),
        Some(_),
        Some(_),
        Some(sha),
        Some(head),
        Some(base),
        Some(url),
        Some(state),
    ) = fields
    else {
        return Ok(Operation::passthrough(R::MissingField));
    };
    let pull = pr.id.unwrap_or(0);
    if pull == 0 || !matches!(state, "OPEN" | "MERGED" | "SUPERSEDED" | "DECLINED") {
        return Ok(Operation::passthrough(R::MissingField));
    }
    let (repo, user) = (repo.to_owned(), user.to_owned());
    let meta = PullMeta {
        head_sha: Some(sha.to_owned()),
        url: Some(url.to_owned()),
        base_branch: Some(base.to_owned()),
        head_branch: Some(head.to_owned()),
        author: Some(user.clone()),
        api_ref: None,
        fork: Some(fork),
    };
    // `GetBitbucketCloudPullEventType`: Atlantis keeps the last head commit per pull URL.
    let action = match action {
        PullAction::Opened => {
            cfg.bitbucket_shas.replace(url, sha);
            PullAction::Opened
        }
        PullAction::Updated => {
            if cfg.bitbucket_shas.get(url).as_deref() == Some(sha) {
                return Ok(Operation::passthrough(R::SameCommit));
            }
            cfg.bitbucket_shas.replace(url, sha);
            PullAction::Updated
        }
        other => other,
    };
    if event == "pullrequest:comment_created" {
        let raw = e.comment.and_then(|c| c.content).and_then(|c| c.raw);
        let Some(comment) = raw else {
            return Ok(Operation::passthrough(R::MissingField));
        };
        let ev = CommentEvent {
            vcs: Vcs::BitbucketCloud,
            repo,
            pull,
            user,
            comment: comment.into_owned(),
            labels: Vec::new(),
            meta,
            pull_closed: state != "OPEN",
            host,
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
        host,
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
    let e = match parse_typed::<ServerEvent>(body) {
        Ok(e) => e,
        Err(op) => return Ok(*op),
    };
    let pr = e.pull_request.unwrap_or_default();
    let (from, to) = (
        pr.from_ref.unwrap_or_default(),
        pr.to_ref.unwrap_or_default(),
    );
    let state = s(&pr.state);
    let user = req(e.actor.as_ref().map(|a| &a.name));
    let ok = user.is_some()
        && from.complete()
        && to.complete()
        && pr.id.unwrap_or(0) != 0
        && pr.version.is_some()
        && pr.reviewers.is_some()
        && matches!(state, "OPEN" | "MERGED" | "DECLINED");
    let (Some(user), true) = (user, ok) else {
        return Ok(Operation::passthrough(R::MissingField));
    };
    let project = |r: &ServerRef<'_>| {
        r.repository
            .as_ref()
            .and_then(|r| r.project.as_ref())
            .map_or(String::new(), |p| s(&p.name).to_owned())
    };
    let slug = |r: &ServerRef<'_>| r.repository.as_ref().map_or("", |r| s(&r.slug)).to_owned();
    // Atlantis names a Bitbucket Server repo by project *name* and slug.
    let repo = format!("{}/{}", project(&to), slug(&to));
    let head_repo = format!("{}/{}", project(&from), slug(&from));
    let user = user.to_owned();
    let pull = pr.id.unwrap_or(0);
    let meta = PullMeta {
        head_sha: Some(s(&from.latest_commit).to_owned()),
        url: None,
        base_branch: Some(s(&to.display_id).to_owned()),
        head_branch: Some(s(&from.display_id).to_owned()),
        author: Some(user.clone()),
        api_ref: None,
        fork: Some(other_owner(&repo, &head_repo)),
    };
    if event == "pr:comment:added" {
        let Some(comment) = e.comment.and_then(|c| c.text) else {
            return Ok(Operation::passthrough(R::MissingField));
        };
        let ev = CommentEvent {
            vcs: Vcs::BitbucketServer,
            repo,
            pull,
            user,
            comment: comment.into_owned(),
            labels: Vec::new(),
            meta,
            pull_closed: state != "OPEN",
            host: None,
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
        host: None,
    };
    Ok(pull_operation(ev, cfg))
}
