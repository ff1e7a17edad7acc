//! `POST /events`: detect the VCS by header in Atlantis's order, check authenticity, parse the
//! event, and turn comments and PR state changes into operations.

mod azure;
mod bitbucket;
mod gitea;
mod github;
mod gitlab;
#[cfg(test)]
mod tests;

use http::HeaderMap;

use super::ClassifyError;
use super::comment::{self, CommentParse, Grammar};
use super::config::{ClassifyConfig, CommentCommandName};
use super::operation::{
    Acquire, CommandKind, LockSet, LockTarget, Operation, PassthroughReason as R, PullMeta,
    ReleaseCause, Vcs,
};
use crate::vocab::{LockKey, PullRef};

/// A header's value when present and non-empty (Go's `Header.Get(h) != ""`).
pub(super) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// Which VCS sent a webhook, by header, in Atlantis's order (`events_controller.go` `Post`).
fn detect(headers: &HeaderMap) -> Option<Vcs> {
    // Gitea also sends X-GitHub-Event, so it is checked first, as Atlantis does.
    if header(headers, "x-gitea-event").is_some() {
        Some(Vcs::Gitea)
    } else if header(headers, "x-github-event").is_some() {
        Some(Vcs::Github)
    } else if header(headers, "x-gitlab-event").is_some() {
        Some(Vcs::Gitlab)
    } else if header(headers, "x-event-key").is_some() {
        if header(headers, "x-request-uuid").is_some() {
            Some(Vcs::BitbucketCloud)
        } else if header(headers, "x-request-id").is_some() {
            Some(Vcs::BitbucketServer)
        } else {
            None
        }
    } else if header(headers, "request-id").is_some()
        || header(headers, "x-vss-activityid").is_some()
    {
        Some(Vcs::AzureDevops)
    } else {
        None
    }
}

/// Classifies a webhook (`events_controller.go` `Post`).
///
/// Only VCSs the proxy gates are read at all ([`ClassifyConfig::gates_webhooks_of`]); for them
/// the signature is checked before any byte of the body is parsed.
pub fn classify(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    let Some(vcs) = detect(headers) else {
        return Ok(Operation::passthrough(R::UnknownVcs));
    };
    if !cfg.gates_webhooks_of(vcs) {
        return Ok(Operation::passthrough(R::UngatedVcs));
    }
    match vcs {
        Vcs::Gitea => gitea::classify(headers, body, cfg),
        Vcs::Github => github::classify(headers, body, cfg),
        Vcs::Gitlab => gitlab::classify(headers, body, cfg),
        Vcs::BitbucketCloud => bitbucket::classify_cloud(headers, body, cfg),
        Vcs::BitbucketServer => bitbucket::classify_server(headers, body, cfg),
        Vcs::AzureDevops => azure::classify(headers, body, cfg),
    }
}

/// Parses a JSON body into a typed, borrowing payload that keeps only the fields classification
/// reads (unknown fields are skipped, never built into a tree), or says why Atlantis would not
/// act on it.
fn parse_typed<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, Box<Operation>> {
    serde_json::from_slice(body).map_err(|_| Box::new(Operation::passthrough(R::Unparseable)))
}

/// A comment on a pull, as every VCS parser reduces it.
struct CommentEvent {
    vcs: Vcs,
    repo: String,
    pull: i64,
    user: String,
    comment: String,
    labels: Vec<String>,
    meta: PullMeta,
    /// The payload says the pull is no longer open.
    pull_closed: bool,
    /// The base repo's VCS host, from the payload (clone URL), for the allowlist.
    host: Option<String>,
}

/// What a PR event means to Atlantis (`models.PullRequestEventType`), plus why it is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PullAction {
    Opened,
    Updated,
    Closed,
    Other,
    Draft,
}

/// A PR state change, as every VCS parser reduces it.
struct PullEvent {
    vcs: Vcs,
    repo: String,
    pull: i64,
    user: String,
    action: PullAction,
    labels: Vec<String>,
    meta: PullMeta,
    /// The base repo's VCS host, from the payload.
    host: Option<String>,
}

/// The host of a clone or web URL, as Go's `url.Parse(...).Hostname()` gives it.
pub(super) fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        hostport.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// A URL's authority host (with port) and its decoded path, as Go's `url.Parse` gives them: raw
/// spaces are allowed in the path (not in the host), `%XX` is decoded, a bad escape fails.
pub(super) fn go_url(url: &str) -> Option<(String, String)> {
    if url.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.contains([' ', '"', '<', '>', '\\', '^', '`', '{', '|', '}']) {
        return None;
    }
    let path = rest[end..].split(['?', '#']).next().unwrap_or("");
    let path = query_unescape(path, false).ok()?;
    Some((host.to_owned(), path))
}

/// Whether two repo full names have different owners (`SplitRepoFullName`: the owner is all
/// before the last `/`).
pub(super) fn other_owner(base: &str, head: &str) -> bool {
    let owner = |n: &str| n.rsplit_once('/').map_or("", |(o, _)| o).to_owned();
    owner(base) != owner(head)
}

/// `handleCommentEvent` + `RunCommentCommand`: what a comment does to locks.
fn comment_operation(ev: CommentEvent, cfg: &ClassifyConfig) -> Operation {
    let bots = cfg.bot_users_for(ev.vcs);
    let g = Grammar {
        executable_name: &cfg.executable_name,
        bot_users: &bots,
        allow_commands: &cfg.allow_commands,
        blocked_extra_args: &cfg.blocked_extra_args,
    };
    let cmd = match comment::parse(&ev.comment, ev.vcs, &g) {
        CommentParse::Ignore => return Operation::passthrough(R::NotACommand),
        CommentParse::Response(_) => return Operation::passthrough(R::CommentRejected),
        CommentParse::Command(c) => c,
    };
    // Atlantis's order: the allowlist, then (when the command runs) forks, closed pulls and the
    // server-side branch filter.
    if !cfg.allowlisted(ev.vcs, ev.host.as_deref(), &ev.repo) {
        return Operation::passthrough(R::NotAllowlisted);
    }
    if cfg.refuses_fork(ev.meta.fork) {
        return Operation::passthrough(R::ForkPull);
    }
    if !cfg.branch_allowed(ev.vcs, &ev.repo, ev.meta.base_branch.as_deref()) {
        return Operation::passthrough(R::BranchNotMatched);
    }
    let pull = PullRef::new(ev.vcs, ev.repo, ev.pull);
    let command = match cmd.name {
        CommentCommandName::Unlock => {
            // The label is known when the payload carries the pull's labels; otherwise the
            // engine still waits for Atlantis's lock table before it releases anything.
            if cfg
                .disable_unlock_label
                .as_ref()
                .is_some_and(|l| ev.labels.contains(l))
            {
                return Operation::passthrough(R::UnlockLabel);
            }
            return Operation::ReleasePull {
                pull,
                cause: ReleaseCause::UnlockComment,
            };
        }
        CommentCommandName::Version | CommentCommandName::Cancel => {
            return Operation::passthrough(R::CommandTakesNoLock);
        }
        CommentCommandName::Plan => CommandKind::Plan,
        CommentCommandName::Apply => CommandKind::Apply,
        CommentCommandName::ApprovePolicies => CommandKind::ApprovePolicies,
        CommentCommandName::Import => CommandKind::Import,
        CommentCommandName::State => CommandKind::StateRm,
    };
    if ev.pull_closed {
        return Operation::passthrough(R::PullClosed);
    }
    let specific = !cmd.project.is_empty() || !cmd.dir.is_empty() || !cmd.workspace.is_empty();
    if command == CommandKind::Apply && cfg.disable_apply_all && !specific {
        return Operation::passthrough(R::ApplyAllDisabled);
    }
    let vcs = ev.vcs;
    let repo = pull.repo.as_str();
    let (locks, takes_lock) = if !cmd.project.is_empty() {
        let targets = vec![LockTarget::Project {
            name: cmd.project.clone(),
        }];
        (
            LockSet::Unresolved { targets },
            cfg.may_lock(vcs, repo, Some(&cmd.project), None, command),
        )
    } else if cmd.dir_is_glob() {
        let targets = vec![LockTarget::DirGlob {
            pattern: cmd.dir.clone(),
            workspace: Some(cmd.workspace.clone()).filter(|w| !w.is_empty()),
        }];
        (
            LockSet::Unresolved { targets },
            cfg.may_lock_any(vcs, repo, command),
        )
    } else if !cmd.dir.is_empty() || !cmd.workspace.is_empty() {
        let dir = if cmd.dir.is_empty() { "." } else { &cmd.dir };
        let ws = if cmd.workspace.is_empty() {
            "default"
        } else {
            &cmd.workspace
        };
        // The unnamed key, as Atlantis builds it without an atlantis.yaml; the gate puts in the
        // name (and the mode) of a project the repo's config declares there.
        let key = LockKey::new(repo, dir, ws, "");
        (
            LockSet::Resolved(vec![key]),
            cfg.may_lock(vcs, repo, None, Some(dir), command),
        )
    } else {
        let targets = vec![LockTarget::ChangedProjects];
        (
            LockSet::Unresolved { targets },
            cfg.may_lock_any(vcs, repo, command),
        )
    };
    if !takes_lock {
        return Operation::passthrough(R::LockModeExempt);
    }
    Operation::Acquire(Acquire {
        locks,
        pull,
        user: ev.user,
        command,
        vcs: ev.vcs,
        labels: ev.labels,
        meta: ev.meta,
    })
}

/// `handlePullRequestEvent` + `RunAutoplanCommand`: what a PR event does to locks.
fn pull_operation(ev: PullEvent, cfg: &ClassifyConfig) -> Operation {
    // A repository outside the allowlist gets 403 for every PR event, a close included (Atlantis
    // cleans nothing up).
    if !cfg.allowlisted(ev.vcs, ev.host.as_deref(), &ev.repo) {
        return Operation::passthrough(R::NotAllowlisted);
    }
    let opens = matches!(ev.action, PullAction::Opened | PullAction::Updated);
    if opens && cfg.refuses_fork(ev.meta.fork) {
        return Operation::passthrough(R::ForkPull);
    }
    if opens && !cfg.branch_allowed(ev.vcs, &ev.repo, ev.meta.base_branch.as_deref()) {
        return Operation::passthrough(R::BranchNotMatched);
    }
    let pull = PullRef::new(ev.vcs, ev.repo, ev.pull);
    match ev.action {
        PullAction::Closed => Operation::ReleasePull {
            pull,
            cause: ReleaseCause::PullClosed,
        },
        PullAction::Other => Operation::passthrough(R::IgnoredPullAction),
        PullAction::Draft => Operation::passthrough(R::DraftPull),
        PullAction::Opened | PullAction::Updated => {
            let label_off = cfg
                .disable_autoplan_label
                .as_ref()
                .is_some_and(|l| ev.labels.contains(l));
            if cfg.disable_autoplan || label_off {
                return Operation::passthrough(R::AutoplanDisabled);
            }
            if !cfg.may_lock_any(ev.vcs, &pull.repo, CommandKind::Autoplan) {
                return Operation::passthrough(R::LockModeExempt);
            }
            Operation::Acquire(Acquire {
                locks: LockSet::Unresolved {
                    targets: vec![LockTarget::ChangedProjects],
                },
                pull,
                user: ev.user,
                command: CommandKind::Autoplan,
                vcs: ev.vcs,
                labels: ev.labels,
                meta: ev.meta,
            })
        }
    }
}

/// Go's `url.ParseQuery(...).Get(key)`: `&`-separated, `+` is a space, bad escapes and `;`
/// are errors.
fn form_value(body: &[u8], key: &str) -> Result<Option<String>, ()> {
    let s = std::str::from_utf8(body).map_err(|_| ())?;
    let mut found = None;
    for pair in s.split('&') {
        if pair.is_empty() {
            continue;
        }
        if pair.contains(';') {
            return Err(());
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = query_unescape(k, true)?;
        let v = query_unescape(v, true)?;
        if found.is_none() && k == key {
            found = Some(v);
        }
    }
    Ok(found)
}

/// Go's `url.QueryUnescape` (`plus_is_space`) / `url.PathUnescape`: strict `%XX` decoding.
pub(super) fn query_unescape(s: &str, plus_is_space: bool) -> Result<String, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(())?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(());
                }
                let hex = std::str::from_utf8(hex).map_err(|_| ())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ())
}
