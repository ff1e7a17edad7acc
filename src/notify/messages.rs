//! Every text the notifier posts, in one place: Markdown in the style of Atlantis's own comments
//! (bold headline, projects as ``dir: `x` workspace: `y` ``, pulls as the VCS links them).
//!
//! Change wording here; the golden tests below show each message exactly as a user sees it.

use std::fmt::Write as _;
use std::time::Duration;

use super::{NotifyEvent, QueuedLock, RemoveReason};
use crate::vcs::Vcs;

/// The hidden marker that lets a restarted proxy find its comment again.
pub fn marker(waiter_id: &str) -> String {
    // `>` and `<` could close the HTML comment early and show the marker; ids never hold them.
    let safe: String = waiter_id
        .chars()
        .map(|c| if matches!(c, '<' | '>') { '_' } else { c })
        .collect();
    format!("<!-- atlantis-lock-proxy:waiter={safe} -->")
}

/// The full comment body for an event, marker included.
pub(crate) fn render(ev: &NotifyEvent, exe: &str) -> String {
    let mut out = match ev {
        NotifyEvent::Queued {
            target,
            user,
            priority,
            command,
            locks,
        }
        | NotifyEvent::Moved {
            target,
            user,
            priority,
            command,
            locks,
        } => {
            let mut s = format!(
                "**{} Queued**: this pull request waits for a lock held by another pull request.\n\n",
                headline(command)
            );
            for l in locks {
                let _ = writeln!(s, "- {}: {}", project(l), place(target.vcs, l));
            }
            let _ = write!(
                s,
                "\nPriority: **{priority}**, requested by {user}.\n\n\
                 `{exe} {command}` will run automatically as soon as the lock is released; \
                 there is no need to comment again.\n\n\
                 To leave the queue, comment `{exe} unlock` or close this pull request.\n"
            );
            s
        }
        NotifyEvent::TimedOut {
            target,
            command,
            waited,
            locks,
        } => {
            let mut s = format!(
                "**{} Queue Timed Out**: the lock was not released within {}.\n\n",
                headline(command),
                human(*waited)
            );
            for l in locks {
                let _ = writeln!(s, "- {}{}", project(l), holder(target.vcs, l));
            }
            s.push('\n');
            s.push_str(&handed_over(exe, command));
            s
        }
        NotifyEvent::DeadlockVictim {
            target,
            command,
            cycle,
        } => {
            let pulls: Vec<String> = cycle.iter().map(|n| link(target.vcs, *n)).collect();
            format!(
                "**{} Removed From Queue**: deadlock between pull requests {}.\n\n\
                 Each of them waits for a lock another one holds, so none could ever run. \
                 This command was picked to break the cycle.\n\n{}",
                headline(command),
                and_list(&pulls),
                handed_over(exe, command)
            )
        }
        NotifyEvent::Removed {
            command, reason, ..
        } => {
            let why = match reason {
                RemoveReason::Operator => "an operator removed this command from the queue",
                RemoveReason::LeftQueue => {
                    "this pull request left the queue (unlocked, closed or merged)"
                }
            };
            format!(
                "**{} Removed From Queue**: {why}; it will not run.\n\n\
                 Comment `{exe} {command}` here to run it again.\n",
                headline(command)
            )
        }
        NotifyEvent::Granted { command, .. } => format!(
            "**{} Lock Granted**: the lock is free and `{exe} {command}` is running now. \
             Atlantis will comment with its result.\n",
            headline(command)
        ),
    };
    out.push('\n');
    out.push_str(&marker(&ev.target().waiter_id));
    out
}

fn handed_over(exe: &str, command: &str) -> String {
    format!(
        "The command has been handed to Atlantis, which will answer that the project is locked. \
         Once the lock is released, comment `{exe} {command}` here to run it again.\n"
    )
}

/// `Plan`, `Apply`, `Import`, `State rm`, `Approve Policies`, as Atlantis titles its comments.
fn headline(command: &str) -> &'static str {
    let verb = command.split_whitespace().next().unwrap_or_default();
    match verb {
        "plan" | "autoplan" => "Plan",
        "apply" => "Apply",
        "import" => "Import",
        "state" => "State rm",
        "approve_policies" => "Approve Policies",
        _ => "Command",
    }
}

/// ``project: `app` dir: `apps/app` workspace: `default` `` (project only when named).
fn project(l: &QueuedLock) -> String {
    let mut s = String::new();
    if !l.key.project.is_empty() {
        let _ = write!(s, "project: `{}` ", l.key.project);
    }
    let _ = write!(s, "dir: `{}` workspace: `{}`", l.key.path, l.key.workspace);
    s
}

fn place(vcs: Vcs, l: &QueuedLock) -> String {
    match l.held_by_pull {
        Some(n) => format!(
            "locked by {}, position **{}** in the queue",
            link(vcs, n),
            l.position
        ),
        None => format!(
            "behind other queued commands, position **{}** in the queue",
            l.position
        ),
    }
}

fn holder(vcs: Vcs, l: &QueuedLock) -> String {
    l.held_by_pull
        .map(|n| format!(": locked by {}", link(vcs, n)))
        .unwrap_or_default()
}

/// A pull reference as the VCS auto-links it: `!12` for GitLab and Azure DevOps, else `#12`.
pub fn link(vcs: Vcs, pull: i64) -> String {
    match vcs {
        Vcs::Gitlab | Vcs::AzureDevops => format!("!{pull}"),
        _ => format!("#{pull}"),
    }
}

fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Whole seconds, as `1h 5m 3s`.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{LockKey, Priority};
    use crate::notify::Target;

    fn target(vcs: Vcs) -> Target {
        Target {
            waiter_id: "acme/infra:7".into(),
            vcs,
            repo: "acme/infra".into(),
            pull: 31,
        }
    }

    fn lock(path: &str, project: &str, position: u64, held_by: Option<i64>) -> QueuedLock {
        QueuedLock {
            key: LockKey {
                repo: "acme/infra".into(),
                path: path.into(),
                workspace: "default".into(),
                project: project.into(),
            },
            position,
            held_by_pull: held_by,
        }
    }

    #[test]
    fn queued_on_github() {
        let ev = NotifyEvent::Queued {
            target: target(Vcs::Github),
            user: "alice".into(),
            priority: Priority::High,
            command: "plan".into(),
            locks: vec![
                lock("modules/vpc", "", 1, Some(12)),
                lock("apps/web", "web", 2, None),
            ],
        };
        assert_eq!(
            render(&ev, "atlantis"),
            "**Plan Queued**: this pull request waits for a lock held by another pull request.\n\
             \n\
             - dir: `modules/vpc` workspace: `default`: locked by #12, position **1** in the queue\n\
             - project: `web` dir: `apps/web` workspace: `default`: behind other queued commands, position **2** in the queue\n\
             \n\
             Priority: **high**, requested by alice.\n\
             \n\
             `atlantis plan` will run automatically as soon as the lock is released; there is no need to comment again.\n\
             \n\
             To leave the queue, comment `atlantis unlock` or close this pull request.\n\
             \n\
             <!-- atlantis-lock-proxy:waiter=acme/infra:7 -->"
        );
    }

    #[test]
    fn moved_on_gitlab_uses_merge_request_links_and_the_executable_name() {
        let ev = NotifyEvent::Moved {
            target: target(Vcs::Gitlab),
            user: "bob".into(),
            priority: Priority::Normal,
            command: "apply -p web".into(),
            locks: vec![lock("apps/web", "web", 1, Some(12))],
        };
        assert_eq!(
            render(&ev, "tf"),
            "**Apply Queued**: this pull request waits for a lock held by another pull request.\n\
             \n\
             - project: `web` dir: `apps/web` workspace: `default`: locked by !12, position **1** in the queue\n\
             \n\
             Priority: **normal**, requested by bob.\n\
             \n\
             `tf apply -p web` will run automatically as soon as the lock is released; there is no need to comment again.\n\
             \n\
             To leave the queue, comment `tf unlock` or close this pull request.\n\
             \n\
             <!-- atlantis-lock-proxy:waiter=acme/infra:7 -->"
        );
    }

    #[test]
    fn timed_out() {
        let ev = NotifyEvent::TimedOut {
            target: target(Vcs::Github),
            command: "plan".into(),
            waited: Duration::from_millis(1_800_400),
            locks: vec![lock("modules/vpc", "", 1, Some(12))],
        };
        assert_eq!(
            render(&ev, "atlantis"),
            "**Plan Queue Timed Out**: the lock was not released within 30m.\n\
             \n\
             - dir: `modules/vpc` workspace: `default`: locked by #12\n\
             \n\
             The command has been handed to Atlantis, which will answer that the project is locked. \
             Once the lock is released, comment `atlantis plan` here to run it again.\n\
             \n\
             <!-- atlantis-lock-proxy:waiter=acme/infra:7 -->"
        );
    }

    #[test]
    fn deadlock_victim() {
        let ev = NotifyEvent::DeadlockVictim {
            target: target(Vcs::Gitlab),
            command: "plan".into(),
            cycle: vec![3, 7, 31],
        };
        assert_eq!(
            render(&ev, "atlantis"),
            "**Plan Removed From Queue**: deadlock between pull requests !3, !7 and !31.\n\
             \n\
             Each of them waits for a lock another one holds, so none could ever run. \
             This command was picked to break the cycle.\n\
             \n\
             The command has been handed to Atlantis, which will answer that the project is locked. \
             Once the lock is released, comment `atlantis plan` here to run it again.\n\
             \n\
             <!-- atlantis-lock-proxy:waiter=acme/infra:7 -->"
        );
    }

    #[test]
    fn removed_by_an_operator() {
        let ev = NotifyEvent::Removed {
            target: target(Vcs::Github),
            command: "state rm aws_instance.a".into(),
            reason: RemoveReason::Operator,
        };
        assert_eq!(
            render(&ev, "atlantis"),
            "**State rm Removed From Queue**: an operator removed this command from the queue; \
             it will not run.\n\
             \n\
             Comment `atlantis state rm aws_instance.a` here to run it again.\n\
             \n\
             <!-- atlantis-lock-proxy:waiter=acme/infra:7 -->"
        );
    }

    #[test]
    fn left_the_queue() {
        let ev = NotifyEvent::Removed {
            target: target(Vcs::Gitlab),
            command: "plan".into(),
            reason: RemoveReason::LeftQueue,
        };
        assert_eq!(
            render(&ev, "atlantis"),
            "**Plan Removed From Queue**: this pull request left the queue (unlocked, closed or \
             merged); it will not run.\n\
             \n\
             Comment `atlantis plan` here to run it again.\n\
             \n\
             <!-- atlantis-lock-proxy:waiter=acme/infra:7 -->"
        );
    }

    #[test]
    fn granted() {
        let ev = NotifyEvent::Granted {
            target: target(Vcs::Github),
            command: "import ADDR ID".into(),
        };
        assert_eq!(
            render(&ev, "atlantis"),
            "**Import Lock Granted**: the lock is free and `atlantis import ADDR ID` is running now. \
             Atlantis will comment with its result.\n\
             \n\
             <!-- atlantis-lock-proxy:waiter=acme/infra:7 -->"
        );
    }

    #[test]
    fn the_marker_cannot_close_the_html_comment() {
        assert_eq!(
            marker("a-->b<c"),
            "<!-- atlantis-lock-proxy:waiter=a--_b_c -->"
        );
        assert_eq!(and_list(&["#1".into(), "#2".into()]), "#1 and #2");
    }
}
