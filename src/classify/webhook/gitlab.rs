//! GitLab webhooks (`GitlabRequestParserValidator`, `ParseGitlabMergeRequestEvent`,
//! `ParseGitlabMergeRequestCommentEvent`).

use std::borrow::Cow;

use http::HeaderMap;
use serde::Deserialize;

use super::super::json::clone_url_matches;
use super::super::signature::verify_gitlab_token;
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
    // The token is checked before anything is parsed.
    if let Some(secret) = crate::classify::config::configured(cfg.webhook_secrets.gitlab.as_ref()) {
        let token = header(headers, "x-gitlab-token").unwrap_or("");
        verify_gitlab_token(token, secret).map_err(|message| ClassifyError::BadSignature {
            vcs: Vcs::Gitlab,
            message,
        })?;
    }
    // Typed payloads (go-gitlab's structs): only the fields read below are kept, and unknown
    // ones are skipped without building a tree.
    Ok(match header(headers, "x-gitlab-event").unwrap_or("") {
        "Merge Request Hook" => match parse_typed::<MergeRequestEvent>(body) {
            Ok(e) => merge_request(e, cfg),
            Err(op) => *op,
        },
        "Note Hook" => match parse_typed::<NoteEvent>(body) {
            Ok(e) => match e
                .object_attributes
                .as_ref()
                .map_or("", |a| s(&a.noteable_type))
            {
                "MergeRequest" => note(e, cfg),
                "Commit" => Operation::passthrough(R::NotOnPull),
                _ => Operation::passthrough(R::IgnoredEvent),
            },
            Err(op) => *op,
        },
        _ => Operation::passthrough(R::IgnoredEvent),
    })
}

type Text<'a> = Option<Cow<'a, str>>;

/// `object_attributes` when the payload has none (Go's zero value).
const NO_MR_ATTRS: MergeRequestAttributes<'static> = MergeRequestAttributes {
    action: None,
    iid: None,
    work_in_progress: None,
    oldrev: None,
    url: None,
    target_branch: None,
    source_branch: None,
    last_commit: None,
    source: None,
};

/// A string field, empty when absent (Go's zero value).
fn s<'b>(t: &'b Text<'_>) -> &'b str {
    t.as_deref().unwrap_or("")
}

/// An owned copy of a non-empty string field.
fn owned(t: &Text<'_>) -> Option<String> {
    t.as_deref().filter(|v| !v.is_empty()).map(str::to_owned)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Project<'a> {
    #[serde(borrow)]
    path_with_namespace: Text<'a>,
    #[serde(borrow)]
    git_http_url: Text<'a>,
}

impl Project<'_> {
    /// `models.NewRepo` for GitLab: name and clone URL must agree; with `--gitlab-hostname` the
    /// clone URL's host must be that host and its path that base path + `/{name}.git`, exactly.
    fn checked(p: &Option<Project<'_>>, cfg: &ClassifyConfig) -> Option<String> {
        let p = p.as_ref()?;
        let full = s(&p.path_with_namespace);
        let url = s(&p.git_http_url);
        let ok = match &cfg.gitlab_hostname {
            None => clone_url_matches(full, url, true),
            Some((host, base)) => {
                let url = if url.ends_with(".git") {
                    url.to_owned()
                } else {
                    format!("{url}.git")
                };
                !full.is_empty()
                    && super::go_url(&url).is_some_and(|(h, path)| {
                        h.eq_ignore_ascii_case(host) && path == format!("{base}/{full}.git")
                    })
            }
        };
        ok.then(|| full.to_owned())
    }

    fn host(p: &Option<Project<'_>>) -> Option<String> {
        url_host(s(&p.as_ref()?.git_http_url))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct User<'a> {
    #[serde(borrow)]
    username: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Label<'a> {
    #[serde(borrow)]
    title: Text<'a>,
}

fn titles(labels: &Option<Vec<Label<'_>>>) -> Vec<String> {
    labels
        .iter()
        .flatten()
        .filter_map(|l| l.title.as_deref().map(str::to_owned))
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Commit<'a> {
    #[serde(borrow)]
    id: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MergeRequestAttributes<'a> {
    #[serde(borrow)]
    action: Text<'a>,
    iid: Option<i64>,
    work_in_progress: Option<bool>,
    #[serde(borrow)]
    oldrev: Text<'a>,
    #[serde(borrow)]
    url: Text<'a>,
    #[serde(borrow)]
    target_branch: Text<'a>,
    #[serde(borrow)]
    source_branch: Text<'a>,
    #[serde(borrow)]
    last_commit: Option<Commit<'a>>,
    #[serde(borrow)]
    source: Option<Project<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TitleChange<'a> {
    #[serde(borrow)]
    previous: Text<'a>,
    #[serde(borrow)]
    current: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Changes<'a> {
    #[serde(borrow)]
    title: Option<TitleChange<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MergeRequestEvent<'a> {
    #[serde(borrow)]
    project: Option<Project<'a>>,
    #[serde(borrow)]
    object_attributes: Option<MergeRequestAttributes<'a>>,
    #[serde(borrow)]
    user: Option<User<'a>>,
    #[serde(borrow)]
    labels: Option<Vec<Label<'a>>>,
    #[serde(borrow)]
    changes: Option<Changes<'a>>,
}

fn merge_request(e: MergeRequestEvent<'_>, cfg: &ClassifyConfig) -> Operation {
    let oa = e.object_attributes.as_ref().unwrap_or(&NO_MR_ATTRS);
    let user = e.user.as_ref().and_then(|u| u.username.as_ref());
    let (Some(repo), Some(head_repo)) = (
        Project::checked(&e.project, cfg),
        Project::checked(&oa.source, cfg),
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let action = s(&oa.action);
    // Atlantis reads drafts from `work_in_progress` only (not GitLab's newer `draft`).
    let draft = oa.work_in_progress == Some(true);
    let action = if draft && action != "close" && !cfg.allow_draft_prs {
        match action {
            "open" | "update" => PullAction::Draft,
            _ => PullAction::Other,
        }
    } else {
        match action {
            "open" => PullAction::Opened,
            "update" => update_kind(oa, e.changes.as_ref()),
            "merge" | "close" => PullAction::Closed,
            _ => PullAction::Other,
        }
    };
    pull_operation(
        PullEvent {
            vcs: Vcs::Gitlab,
            host: Project::host(&e.project),
            pull: oa.iid.unwrap_or(0),
            user: user.map(|u| u.to_string()).unwrap_or_default(),
            action,
            labels: titles(&e.labels),
            meta: PullMeta {
                head_sha: oa.last_commit.as_ref().and_then(|c| owned(&c.id)),
                url: owned(&oa.url),
                base_branch: owned(&oa.target_branch),
                head_branch: owned(&oa.source_branch),
                author: user.filter(|u| !u.is_empty()).map(|u| u.to_string()),
                api_ref: None,
                fork: Some(other_owner(&repo, &head_repo)),
            },
            repo,
        },
        cfg,
    )
}

/// `ParseGitlabMergeRequestUpdateEvent`: only a new commit or leaving draft re-plans.
fn update_kind(oa: &MergeRequestAttributes<'_>, changes: Option<&Changes<'_>>) -> PullAction {
    let new_commit = !s(&oa.oldrev).is_empty();
    let title = changes.and_then(|c| c.title.as_ref());
    let prev = title.map_or("", |t| s(&t.previous));
    let cur = title.map_or("", |t| s(&t.current));
    if new_commit || (prev.starts_with("Draft:") && !cur.starts_with("Draft:")) {
        PullAction::Updated
    } else {
        PullAction::Other
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NoteAttributes<'a> {
    #[serde(borrow)]
    noteable_type: Text<'a>,
    #[serde(borrow)]
    note: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NoteMergeRequest<'a> {
    iid: Option<i64>,
    #[serde(borrow)]
    state: Text<'a>,
    #[serde(borrow)]
    url: Text<'a>,
    #[serde(borrow)]
    target_branch: Text<'a>,
    #[serde(borrow)]
    source_branch: Text<'a>,
    #[serde(borrow)]
    last_commit: Option<Commit<'a>>,
    #[serde(borrow)]
    source: Option<Project<'a>>,
    #[serde(borrow)]
    labels: Option<Vec<Label<'a>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NoteEvent<'a> {
    #[serde(borrow)]
    project: Option<Project<'a>>,
    #[serde(borrow)]
    object_attributes: Option<NoteAttributes<'a>>,
    #[serde(borrow)]
    merge_request: Option<NoteMergeRequest<'a>>,
    #[serde(borrow)]
    user: Option<User<'a>>,
    #[serde(borrow)]
    labels: Option<Vec<Label<'a>>>,
}

fn note(e: NoteEvent<'_>, cfg: &ClassifyConfig) -> Operation {
    let mr = e.merge_request.unwrap_or_default();
    let (Some(repo), Some(head_repo)) = (
        Project::checked(&e.project, cfg),
        Project::checked(&mr.source, cfg),
    ) else {
        return Operation::passthrough(R::MissingField);
    };
    let mut labels = titles(&mr.labels);
    if labels.is_empty() {
        labels = titles(&e.labels);
    }
    comment_operation(
        CommentEvent {
            vcs: Vcs::Gitlab,
            host: Project::host(&e.project),
            pull: mr.iid.unwrap_or(0),
            user: e.user.as_ref().map_or("", |u| s(&u.username)).to_owned(),
            comment: e
                .object_attributes
                .as_ref()
                .map_or("", |a| s(&a.note))
                .to_owned(),
            labels,
            meta: PullMeta {
                head_sha: mr.last_commit.as_ref().and_then(|c| owned(&c.id)),
                url: owned(&mr.url),
                base_branch: owned(&mr.target_branch),
                head_branch: owned(&mr.source_branch),
                author: None,
                api_ref: None,
                fork: Some(other_owner(&repo, &head_repo)),
            },
            pull_closed: owned(&mr.state).is_some_and(|st| st != "opened"),
            repo,
        },
        cfg,
    )
}
