//! Azure DevOps webhooks (`handleAzureDevopsPost`, `ParseAzureDevopsPullEvent`,
//! `ParseAzureDevopsRepo`).

use std::borrow::Cow;

use http::HeaderMap;
use serde::Deserialize;

use super::super::signature::verify_basic_auth;
use super::{
    CommentEvent, PullAction, PullEvent, comment_operation, header, parse_typed, pull_operation,
};
use crate::classify::ClassifyError;
use crate::classify::config::ClassifyConfig;
use crate::classify::operation::{Operation, PassthroughReason as R, PullMeta, Vcs};

/// Azure DevOps sends this repo URL for its "test" webhook; Atlantis ignores it.
const TEST_REPO_URL: &str = "https://fabrikam.visualstudio.com/DefaultCollection/_apis/git/repositories/4bc14d40-c903-45e2-872e-0462c7748079";

/// Texts of PR "updated" events that are only votes or reviewer changes.
const IGNORED_UPDATES: [&str; 6] = [
    "changed the reviewer list",
    "approved pull request",
    "has approved and left suggestions",
    "is waiting for the author",
    "rejected pull request",
    "voted on pull request",
];

pub fn classify(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    // The content type is checked (exactly) before the credentials.
    let ct = header(headers, "content-type").unwrap_or("");
    if ct != "application/json" && ct != "application/json; charset=utf-8" {
        return Ok(Operation::passthrough(R::Unparseable));
    }
    if let Some((user, pass)) = cfg
        .webhook_secrets
        .azuredevops
        .as_ref()
        .filter(|(u, p)| !u.is_empty() && !p.expose().is_empty())
    {
        verify_basic_auth(header(headers, "authorization"), user, pass).map_err(|message| {
            ClassifyError::BadSignature {
                vcs: Vcs::AzureDevops,
                message,
            }
        })?;
    }
    // Typed payloads: the event type first, then only the fields that event needs.
    let event = match parse_typed::<Envelope>(body) {
        Ok(e) => e,
        Err(op) => return Ok(*op),
    };
    Ok(match s(&event.event_type) {
        "ms.vss-code.git-pullrequest-comment-event" => match parse_typed::<CommentPayload>(body) {
            Ok(p) => comment(p, cfg),
            Err(op) => *op,
        },
        "git.pullrequest.created" | "git.pullrequest.updated" | "git.pullrequest.merged" => {
            let text = event.message.as_ref().map_or("", |m| s(&m.text));
            if IGNORED_UPDATES.iter().any(|u| text.contains(u)) {
                return Ok(Operation::passthrough(R::IgnoredPullAction));
            }
            match parse_typed::<PullPayload>(body) {
                Ok(p) => pull(p, s(&event.event_type), cfg),
                Err(op) => *op,
            }
        }
        "git.push" | "workitem.commented" | "workitem.updated" => {
            Operation::passthrough(R::IgnoredEvent)
        }
        _ => Operation::passthrough(R::Unparseable),
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
struct Message<'a> {
    #[serde(borrow)]
    text: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    event_type: Text<'a>,
    #[serde(borrow)]
    message: Option<Message<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Repository<'a> {
    #[serde(borrow)]
    url: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    project: Option<Named<'a>>,
    #[serde(borrow)]
    parent_repository: Option<Named<'a>>,
    #[serde(borrow)]
    web_url: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Identity<'a> {
    #[serde(borrow)]
    unique_name: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CommitRef<'a> {
    #[serde(borrow)]
    commit_id: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PullRequest<'a> {
    #[serde(borrow)]
    repository: Option<Repository<'a>>,
    pull_request_id: Option<i64>,
    #[serde(borrow)]
    created_by: Option<Identity<'a>>,
    #[serde(borrow)]
    labels: Option<Vec<Named<'a>>>,
    #[serde(borrow)]
    status: Text<'a>,
    #[serde(borrow)]
    last_merge_source_commit: Option<CommitRef<'a>>,
    #[serde(borrow)]
    url: Text<'a>,
    #[serde(borrow)]
    target_ref_name: Text<'a>,
    #[serde(borrow)]
    source_ref_name: Text<'a>,
}

impl PullRequest<'_> {
    fn creator(&self) -> Option<String> {
        self.created_by.as_ref().and_then(|c| owned(&c.unique_name))
    }

    fn labels(&self) -> Vec<String> {
        self.labels
            .iter()
            .flatten()
            .filter_map(|l| l.name.as_deref().map(str::to_owned))
            .collect()
    }

    fn closed(&self) -> bool {
        self.status.as_deref().is_some_and(|st| st != "active")
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Comment<'a> {
    is_deleted: Option<bool>,
    #[serde(borrow)]
    content: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CommentResource<'a> {
    #[serde(borrow)]
    comment: Option<Comment<'a>>,
    #[serde(borrow)]
    pull_request: Option<PullRequest<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CommentPayload<'a> {
    #[serde(borrow)]
    resource: Option<CommentResource<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PullPayload<'a> {
    #[serde(borrow)]
    resource: Option<PullRequest<'a>>,
}

/// `ParseAzureDevopsRepo`: `owner/project/repo`, the owner from the parent repo or the web URL.
fn repo_name(repo: &Repository<'_>) -> Option<String> {
    let project = repo.project.as_ref().map_or("", |p| s(&p.name));
    let name = s(&repo.name);
    let parent = repo
        .parent_repository
        .as_ref()
        .and_then(|p| p.name.as_deref());
    // Go's `url.Parse`: a raw space in the path is accepted and `%XX` decoded.
    let (host, path) = web_url(repo)?;
    let owner = match parent {
        Some(parent) => parent.to_owned(),
        None => {
            let owner = if host.contains("visualstudio.com") {
                host.split('.').next().unwrap_or("")
            } else {
                // Atlantis indexes the path's first segment; without one it would fail.
                path.split('/').nth(1)?
            };
            owner.to_lowercase()
        }
    };
    Some(format!("{owner}/{project}/{name}"))
}

/// The web URL's host and decoded path (Go's `url.Parse` of an empty URL gives empty parts).
fn web_url(repo: &Repository<'_>) -> Option<(String, String)> {
    let url = s(&repo.web_url);
    if url.is_empty() {
        return Some((String::new(), String::new()));
    }
    super::go_url(url)
}

/// The VCS host of the repo (`dev.azure.com` when the web URL has none).
fn host(repo: Option<&Repository<'_>>) -> Option<String> {
    let (host, _) = web_url(repo?)?;
    let host = host.split(':').next().unwrap_or("").to_owned();
    Some(if host.is_empty() {
        "dev.azure.com".into()
    } else {
        host
    })
}

fn is_test_repo(repo: Option<&Repository<'_>>) -> bool {
    repo.is_some_and(|r| s(&r.url) == TEST_REPO_URL)
}

fn meta(pr: &PullRequest<'_>) -> PullMeta {
    let strip = |s: Option<String>| s.map(|b| b.replacen("refs/heads/", "", 1));
    PullMeta {
        head_sha: pr
            .last_merge_source_commit
            .as_ref()
            .and_then(|c| owned(&c.commit_id)),
        url: owned(&pr.url),
        base_branch: strip(owned(&pr.target_ref_name)),
        head_branch: strip(owned(&pr.source_ref_name)),
        author: pr.creator(),
        api_ref: None,
        // Atlantis builds the head repo from the pull's own repository: never a fork.
        fork: Some(false),
    }
}

fn comment(p: CommentPayload<'_>, cfg: &ClassifyConfig) -> Operation {
    let r = p.resource.unwrap_or_default();
    let Some(c) = r.comment else {
        return Operation::passthrough(R::IgnoredEvent);
    };
    if c.is_deleted == Some(true) {
        return Operation::passthrough(R::CommentNotCreated);
    }
    let Some(pr) = r.pull_request else {
        return Operation::passthrough(R::NotOnPull);
    };
    if is_test_repo(pr.repository.as_ref()) {
        return Operation::passthrough(R::IgnoredEvent);
    }
    let Some(repo) = pr.repository.as_ref().and_then(repo_name) else {
        return Operation::passthrough(R::MissingField);
    };
    comment_operation(
        CommentEvent {
            vcs: Vcs::AzureDevops,
            repo,
            pull: pr.pull_request_id.unwrap_or(0),
            // Atlantis records the pull's creator as the user of an Azure DevOps comment.
            user: pr.creator().unwrap_or_default(),
            comment: sanitize_strict(s(&c.content)),
            labels: pr.labels(),
            meta: meta(&pr),
            pull_closed: pr.closed(),
            host: host(pr.repository.as_ref()),
        },
        cfg,
    )
}

fn pull(p: PullPayload<'_>, event_type: &str, cfg: &ClassifyConfig) -> Operation {
    let Some(pr) = p.resource else {
        return Operation::passthrough(R::MissingField);
    };
    if is_test_repo(pr.repository.as_ref()) {
        return Operation::passthrough(R::IgnoredEvent);
    }
    let m = meta(&pr);
    let number = pr.pull_request_id.unwrap_or(0);
    let repo = pr.repository.as_ref().and_then(repo_name);
    let (Some(repo), Some(_), Some(_), Some(_), Some(_), Some(user), true) = (
        repo,
        m.head_sha.as_ref(),
        m.url.as_ref(),
        m.head_branch.as_ref(),
        m.base_branch.as_ref(),
        m.author.clone(),
        number != 0,
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let action = match event_type {
        "git.pullrequest.created" => PullAction::Opened,
        "git.pullrequest.updated" if pr.closed() => PullAction::Closed,
        "git.pullrequest.updated" => PullAction::Updated,
        _ => PullAction::Other,
    };
    pull_operation(
        PullEvent {
            vcs: Vcs::AzureDevops,
            host: host(pr.repository.as_ref()),
            repo,
            pull: number,
            user,
            action,
            labels: pr.labels(),
            meta: m,
        },
        cfg,
    )
}

/// What bluemonday's `StrictPolicy` leaves of a comment: tags dropped, text HTML-escaped
/// (so quotes become `&#34;`, as Atlantis then sees them).
fn sanitize_strict(s: &str) -> String {
    let mut text = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let is_tag = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'));
        match (is_tag, after.find('>')) {
            (true, Some(end)) => rest = &after[end + 1..],
            _ => {
                text.push('<');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    let text = unescape_basic(&text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The entities a comment realistically holds (the tokenizer decodes them before re-escaping).
fn unescape_basic(s: &str) -> String {
    [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#34;", "\""),
        ("&#39;", "'"),
        ("&apos;", "'"),
        ("&nbsp;", "\u{a0}"),
        ("&amp;", "&"),
    ]
    .iter()
    .fold(s.to_owned(), |acc, (from, to)| acc.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_sanitizing_matches_bluemonday_for_comments() {
        assert_eq!(sanitize_strict("<p>atlantis plan</p>"), "atlantis plan");
        assert_eq!(
            sanitize_strict("atlantis plan -d \"a b\""),
            "atlantis plan -d &#34;a b&#34;"
        );
        assert_eq!(sanitize_strict("a < b"), "a &lt; b");
    }

    #[test]
    fn repo_names_follow_atlantis() {
        let name = |j: &str| repo_name(&serde_json::from_str::<Repository>(j).unwrap());
        assert_eq!(
            name(r#"{"name": "repo", "project": {"name": "proj"}, "webUrl": "https://dev.azure.com/MyOrg/proj/_git/repo"}"#)
                .as_deref(),
            Some("myorg/proj/repo")
        );
        assert_eq!(
            name(r#"{"name": "repo", "project": {"name": "proj"}, "webUrl": "https://myorg.visualstudio.com/proj/_git/repo"}"#)
                .as_deref(),
            Some("myorg/proj/repo")
        );
        assert_eq!(
            name(r#"{"name": "repo", "project": {"name": "proj"}}"#),
            None
        );
    }
}
