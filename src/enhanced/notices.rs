//! What the enhanced path tells the pull request (through [`crate::notify`]): queued, moved up,
//! handed to Atlantis. Notifications are fire-and-forget; nothing here can fail a request.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::Enhanced;
use crate::classify::{LockKey, Priority, PullRef, Vcs};
use crate::engine::{Dispatch, DispatchReason, Enqueued, WaiterId};
use crate::notify::{NotifyEvent, QueuedLock, RemoveReason, Target};
use crate::upstream::replay::StoredRequest;

/// Waiters remembered for "moved up" edits; past this many the memory starts over (a waiter
/// forgotten this way only misses position edits, never its final notice).
const REMEMBERED_WAITERS: usize = 10_000;

/// What a notice about one waiter needs beyond the engine's view.
#[derive(Clone, Debug)]
pub struct WaiterNote {
    vcs: Vcs,
    command: String,
    user: String,
    priority: Priority,
    pull: PullRef,
}

/// Waiter notes, and waiters an operator removed (their notice says so).
#[derive(Default)]
pub struct Notes {
    waiters: Mutex<HashMap<WaiterId, WaiterNote>>,
    removed_by_operator: Mutex<HashSet<WaiterId>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Enhanced {
    /// A request was queued: one comment on its pull, naming holder and position.
    pub(super) fn notice_queued(&self, note: WaiterNote, q: &Enqueued) {
        let Some(n) = &self.notifier else { return };
        {
            let mut w = locked(&self.notes.waiters);
            if w.len() >= REMEMBERED_WAITERS {
                w.clear();
            }
            w.insert(q.waiter_id.clone(), note.clone());
        }
        n.notify(NotifyEvent::Queued {
            target: Target::new(&q.waiter_id, note.vcs, &note.pull),
            user: note.user,
            priority: note.priority,
            command: note.command,
            locks: q.positions.iter().map(Into::into).collect(),
        });
    }

    /// Marks a waiter as removed by an operator, so its notice says so.
    pub fn note_operator_removal(&self, id: &WaiterId) {
        let mut r = locked(&self.notes.removed_by_operator);
        if r.len() >= REMEMBERED_WAITERS {
            r.clear();
        }
        r.insert(id.clone());
    }

    /// Takes back [`Self::note_operator_removal`] for a waiter that was not removed.
    pub fn unnote_operator_removal(&self, id: &WaiterId) {
        locked(&self.notes.removed_by_operator).remove(id);
    }

    /// A waiter left the queue (granted, timed out, deadlock victim, removed): edit its comment,
    /// then move the others up.
    pub(super) async fn notice_dispatch(
        &self,
        d: &Dispatch,
        stored: &StoredRequest,
        outcome: DispatchReason,
    ) {
        let Some(n) = &self.notifier else { return };
        let known = locked(&self.notes.waiters).remove(&d.id);
        let vcs = stored
            .vcs
            .as_deref()
            .and_then(Vcs::from_name)
            .or(known.as_ref().map(|k| k.vcs));
        let Some(vcs) = vcs else { return };
        let command = stored
            .command
            .clone()
            .or(known.map(|k| k.command))
            .unwrap_or_else(|| "plan".into());
        let target = Target::new(&d.id, vcs, &d.pull);
        let event = match outcome {
            DispatchReason::Granted => NotifyEvent::Granted { target, command },
            DispatchReason::Dropped => NotifyEvent::Removed {
                target,
                command,
                reason: RemoveReason::LeftQueue,
            },
            DispatchReason::TimedOut | DispatchReason::Expired => {
                let holders = self.engine.list_locks().await.unwrap_or_default();
                NotifyEvent::TimedOut {
                    target,
                    command,
                    waited: d.enqueued_at.elapsed().unwrap_or_default(),
                    locks: d
                        .locks
                        .iter()
                        .map(|k| QueuedLock {
                            key: k.clone(),
                            position: 1,
                            held_by_pull: holders
                                .iter()
                                .find(|l| &l.key == k && l.pull != d.pull)
                                .map(|l| l.pull.number),
                        })
                        .collect(),
                }
            }
            DispatchReason::DeadlockVictim => NotifyEvent::DeadlockVictim {
                target,
                command,
                cycle: self.deadlock_cycle(d).await,
            },
            DispatchReason::Removed => {
                let by_operator = locked(&self.notes.removed_by_operator).remove(&d.id);
                NotifyEvent::Removed {
                    target,
                    command,
                    reason: if by_operator {
                        RemoveReason::Operator
                    } else {
                        RemoveReason::LeftQueue
                    },
                }
            }
        };
        n.notify(event);
        self.notice_moved(&d.locks).await;
    }

    /// Everyone still waiting on `keys` may have moved up: edit their comments.
    async fn notice_moved(&self, keys: &[LockKey]) {
        let Some(n) = &self.notifier else { return };
        let (Ok(queues), Ok(locks)) = (
            self.engine.list_queues().await,
            self.engine.list_locks().await,
        ) else {
            return;
        };
        let holders: HashMap<&LockKey, i64> =
            locks.iter().map(|l| (&l.key, l.pull.number)).collect();
        let mut moved: HashMap<WaiterId, Vec<QueuedLock>> = HashMap::new();
        for q in queues.iter().filter(|q| keys.contains(&q.key)) {
            for w in &q.waiters {
                moved.entry(w.id.clone()).or_default().push(QueuedLock {
                    key: q.key.clone(),
                    position: w.position,
                    held_by_pull: holders.get(&q.key).copied(),
                });
            }
        }
        let notes = locked(&self.notes.waiters).clone();
        for (id, locks) in moved {
            let Some(note) = notes.get(&id) else { continue };
            n.notify(NotifyEvent::Moved {
                target: Target::new(&id, note.vcs, &note.pull),
                user: note.user.clone(),
                priority: note.priority,
                command: note.command.clone(),
                locks,
            });
        }
    }

    async fn deadlock_cycle(&self, d: &Dispatch) -> Vec<i64> {
        self.engine
            .deadlocks()
            .await
            .ok()
            .and_then(|recs| {
                recs.into_iter()
                    .find(|r| r.repo == d.pull.repo && r.victim_pull == d.pull.number)
            })
            .map(|r| r.cycle)
            .unwrap_or_else(|| vec![d.pull.number])
    }
}

impl WaiterNote {
    /// The note for a request about to be queued.
    pub fn new(vcs: Vcs, command: &str, user: &str, priority: Priority, pull: &PullRef) -> Self {
        Self {
            vcs,
            command: command.to_string(),
            user: user.to_string(),
            priority,
            pull: pull.clone(),
        }
    }
}
