//! Azure DevOps webhooks (`handleAzureDevopsPost`, `ParseAzureDevopsPullEvent`,
//! `ParseAzureDevopsRepo`).

use http::HeaderMap;
use serde_json::Value;

use super::super::json::{at, bool_at, int_at, names_at, owned, str_or_empty};
use super::super::signature::verify_basic_auth;
use super::{
    CommentEvent, PullAction, PullEvent, comment_operation, header, parse_json, pull_operation,
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
    let v = match parse_json(body) {
        Ok(v) => v,
        Err(op) => return Ok(*op),
    };
    Ok(match str_or_empty(&v, &["eventType"]) {
        "ms.vss-code.git-pullrequest-comment-event" => comment(&v, cfg),
        "git.pullrequest.created" | "git.pullrequest.updated" | "git.pullrequest.merged" => {
            pull(&v, cfg)
        }
        "git.push" | "workitem.commented" | "workitem.updated" => {
            Operation::passthrough(R::IgnoredEvent)
        }
        _ => Operation::passthrough(R::Unparseable),
    })
}

/// `ParseAzureDevopsRepo`: `owner/project/repo`, the owner from the parent repo or the web URL.
fn repo_name(repo: &Value) -> Option<String> {
    let project = str_or_empty(repo, &["project", "name"]);
    let name = str_or_empty(repo, &["name"]);
    let owner = match at(repo, &["parentRepository", "name"]).and_then(Value::as_str) {
        Some(parent) => parent.to_owned(),
        None => {
            let uri: http::Uri = str_or_empty(repo, &["webUrl"]).parse().ok()?;
            let host = uri.host().unwrap_or("");
            let owner = if host.contains("visualstudio.com") {
                host.split('.').next().unwrap_or("")
            } else {
                // Atlantis indexes the path's first segment; without one it would fail.
                uri.path().split('/').nth(1)?
            };
            owner.to_lowercase()
        }
    };
    Some(format!("{owner}/{project}/{name}"))
}

fn is_test_repo(repo: Option<&Value>) -> bool {
    repo.is_some_and(|r| str_or_empty(r, &["url"]) == TEST_REPO_URL)
}

fn meta(pr: &Value) -> PullMeta {
    let strip = |s: Option<String>| s.map(|b| b.replacen("refs/heads/", "", 1));
    PullMeta {
        head_sha: owned(pr, &["lastMergeSourceCommit", "commitId"]),
        url: owned(pr, &["url"]),
        base_branch: strip(owned(pr, &["targetRefName"])),
        head_branch: strip(owned(pr, &["sourceRefName"])),
        author: owned(pr, &["createdBy", "uniqueName"]),
        api_ref: None,
    }
}

fn comment(v: &Value, cfg: &ClassifyConfig) -> Operation {
    let Some(c) = at(v, &["resource", "comment"]).filter(|c| !c.is_null()) else {
        return Operation::passthrough(R::IgnoredEvent);
    };
    if bool_at(c, &["isDeleted"]) {
        return Operation::passthrough(R::CommentNotCreated);
    }
    let content = str_or_empty(c, &["content"]);
    let Some(pr) = at(v, &["resource", "pullRequest"]).filter(|p| !p.is_null()) else {
        return Operation::passthrough(R::NotOnPull);
    };
    let repo_v = pr.get("repository");
    if is_test_repo(repo_v) {
        return Operation::passthrough(R::IgnoredEvent);
    }
    let Some(repo) = repo_v.and_then(repo_name) else {
        return Operation::passthrough(R::MissingField);
    };
    comment_operation(
        CommentEvent {
            vcs: Vcs::AzureDevops,
            repo,
            pull: int_at(pr, &["pullRequestId"]),
            // Atlantis records the pull's creator as the user of an Azure DevOps comment.
            user: str_or_empty(pr, &["createdBy", "uniqueName"]).to_owned(),
            comment: sanitize_strict(content),
            labels: names_at(pr, &["labels"], "name"),
            meta: meta(pr),
            pull_closed: at(pr, &["status"])
                .and_then(Value::as_str)
                .is_some_and(|s| s != "active"),
        },
        cfg,
    )
}

fn pull(v: &Value, cfg: &ClassifyConfig) -> Operation {
    let text = str_or_empty(v, &["message", "text"]);
    if IGNORED_UPDATES.iter().any(|s| text.contains(s)) {
        return Operation::passthrough(R::IgnoredPullAction);
    }
    let Some(pr) = at(v, &["resource"]).filter(|p| p.is_object()) else {
        return Operation::passthrough(R::MissingField);
    };
    if is_test_repo(pr.get("repository")) {
        return Operation::passthrough(R::IgnoredEvent);
    }
    let m = meta(pr);
    let number = int_at(pr, &["pullRequestId"]);
    let repo = pr.get("repository").and_then(repo_name);
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
    let closed = at(pr, &["status"])
        .and_then(Value::as_str)
        .is_some_and(|s| s != "active");
    let action = match str_or_empty(v, &["eventType"]) {
        "git.pullrequest.created" => PullAction::Opened,
        "git.pullrequest.updated" if closed => PullAction::Closed,
        "git.pullrequest.updated" => PullAction::Updated,
        _ => PullAction::Other,
    };
    pull_operation(
        PullEvent {
            vcs: Vcs::AzureDevops,
            repo,
            pull: number,
            user,
            action,
            labels: names_at(pr, &["labels"], "name"),
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
        let r = serde_json::json!({"name": "repo", "project": {"name": "proj"},
            "webUrl": "https://dev.azure.com/MyOrg/proj/_git/repo"});
        assert_eq!(repo_name(&r).as_deref(), Some("myorg/proj/repo"));
        let r = serde_json::json!({"name": "repo", "project": {"name": "proj"},
            "webUrl": "https://myorg.visualstudio.com/proj/_git/repo"});
        assert_eq!(repo_name(&r).as_deref(), Some("myorg/proj/repo"));
        let r = serde_json::json!({"name": "repo", "project": {"name": "proj"}});
        assert_eq!(repo_name(&r), None);
    }
}
