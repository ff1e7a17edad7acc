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
}

fn grammar(cfg: &ClassifyConfig) -> Grammar<'_> {
    Grammar {
        executable_name: &cfg.executable_name,
        bot_users: &cfg.vcs_bot_users,
        allow_commands: &cfg.allow_commands,
        blocked_extra_args: &cfg.blocked_extra_args,
    }
}

/// `handleCommentEvent` + `RunCommentCommand`: what a comment does to locks.
fn comment_operation(ev: CommentEvent, cfg: &ClassifyConfig) -> Operation {
    let cmd = match comment::parse(&ev.comment, ev.vcs, &grammar(cfg)) {
        CommentParse::Ignore => return Operation::passthrough(R::NotACommand),
        CommentParse::Response(_) => return Operation::passthrough(R::CommentRejected),
        CommentParse::Command(c) => c,
    };
    let pull = PullRef {
        repo: ev.repo,
        number: ev.pull,
    };
    let command = match cmd.name {
        CommentCommandName::Unlock => {
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
    let modes = &cfg.lock_modes;
    let repo = pull.repo.as_str();
    let (locks, takes_lock) = if !cmd.project.is_empty() {
        let mode = modes.mode_for(repo, Some(&cmd.project), None);
        let targets = vec![LockTarget::Project {
            name: cmd.project.clone(),
        }];
        (
            LockSet::Unresolved { targets },
            super::config::command_locks(mode, command),
        )
    } else if cmd.dir_is_glob() {
        let targets = vec![LockTarget::DirGlob {
            pattern: cmd.dir.clone(),
            workspace: Some(cmd.workspace.clone()).filter(|w| !w.is_empty()),
        }];
        (
            LockSet::Unresolved { targets },
            modes.any_locks(repo, command),
        )
    } else if !cmd.dir.is_empty() || !cmd.workspace.is_empty() {
        let dir = if cmd.dir.is_empty() { "." } else { &cmd.dir };
        let ws = if cmd.workspace.is_empty() {
            "default"
        } else {
            &cmd.workspace
        };
        let mode = modes.mode_for(repo, None, Some(dir));
        let key = LockKey::new(repo, dir, ws, "");
        (
            LockSet::Resolved(vec![key]),
            super::config::command_locks(mode, command),
        )
    } else {
        let targets = vec![LockTarget::ChangedProjects];
        (
            LockSet::Unresolved { targets },
            modes.any_locks(repo, command),
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
    let pull = PullRef {
        repo: ev.repo,
        number: ev.pull,
    };
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
            if !cfg.lock_modes.any_locks(&pull.repo, CommandKind::Autoplan) {
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
