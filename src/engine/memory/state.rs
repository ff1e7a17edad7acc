//! The memory engine's state machine for one repository; pure (time is passed in).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::classify::{Priority, PullRef};
use crate::engine::deadlock::{WaitGraphInput, WaitNode};
use crate::engine::settings::EngineSettings;
use crate::engine::types::{
    Blocker, DeadlockRecord, Dispatch, DispatchReason, EngineError, Grant, Preempted,
    QueuePosition, WaiterId, from_unix_ms, lock_key,
};

/// Most deadlock records kept per repository.
const DEADLOCK_HISTORY: usize = 100;

/// A held lock.
#[derive(Clone, Debug)]
pub struct Holder {
    pub pull: i64,
    pub user: String,
    pub priority: Priority,
    pub acquired_ms: i64,
    pub expires_ms: i64,
    pub token: u64,
}

/// A queued waiter.
#[derive(Clone, Debug)]
pub struct Waiter {
    pub seq: u64,
    pub pull: i64,
    pub user: String,
    pub priority: Priority,
    pub fields: Vec<String>,
    pub payload: Vec<u8>,
    pub enqueued_ms: i64,
    pub deadline_ms: i64,
    pub hold_ms: i64,
    pub score: f64,
}

/// A dispatch owned under a lease until confirmed.
#[derive(Clone, Debug)]
pub struct Pending {
    pub dispatch: Dispatch,
    pub lease_until_ms: i64,
}

/// What an acquire attempt found.
pub enum Check {
    /// Grantable; these fields must first be taken from expired holders.
    Free(Vec<(String, i64)>),
    /// Blocked by these locks.
    Blocked(Vec<Blocker>),
}

/// One repository's locks, queues and pending dispatches.
#[derive(Debug, Default)]
pub struct RepoState {
    pub repo: String,
    pub holders: BTreeMap<String, Holder>,
    /// Field → waiter seqs in grant order.
    pub queues: BTreeMap<String, Vec<u64>>,
    pub waiters: HashMap<u64, Waiter>,
    pub pending: BTreeMap<u64, Pending>,
    pub deadlocks: VecDeque<DeadlockRecord>,
    fence: u64,
    seq: u64,
}

impl RepoState {
    /// An empty repository.
    pub fn new(repo: &str) -> Self {
        Self {
            repo: repo.to_owned(),
            ..Self::default()
        }
    }

    fn pull_ref(&self, number: i64) -> PullRef {
        PullRef {
            repo: self.repo.clone(),
            number,
        }
    }

    /// Whether `pull` could take `fields` right now (newcomers queue behind existing waiters).
    pub fn check(&self, fields: &[String], pull: i64, now: i64) -> Check {
        let mut blocked = Vec::new();
        let mut preempt = Vec::new();
        for f in fields {
            let holder = self.holders.get(f);
            if holder.is_some_and(|h| h.pull == pull) {
                continue;
            }
            let queued = self.queues.get(f).is_some_and(|q| !q.is_empty());
            match holder {
                Some(h) if h.expires_ms > now || queued => blocked.push(Blocker {
                    key: lock_key(&self.repo, f),
                    held_by: Some(self.pull_ref(h.pull)),
                }),
                Some(h) => preempt.push((f.clone(), h.pull)),
                None if queued => blocked.push(Blocker {
                    key: lock_key(&self.repo, f),
                    held_by: None,
                }),
                None => {}
            }
        }
        if blocked.is_empty() {
            Check::Free(preempt)
        } else {
            Check::Blocked(blocked)
        }
    }

    /// Takes `fields` for `pull` (after preempting expired holders); returns the grant.
    #[allow(clippy::too_many_arguments)]
    pub fn take(
        &mut self,
        fields: &[String],
        pull: i64,
        user: &str,
        priority: Priority,
        hold_ms: i64,
        preempt: &[(String, i64)],
        now: i64,
    ) -> Grant {
        self.fence += 1;
        let token = self.fence;
        let expires_ms = now + hold_ms;
        let preempted = preempt
            .iter()
            .map(|(f, p)| Preempted {
                key: lock_key(&self.repo, f),
                pull: self.pull_ref(*p),
            })
            .collect();
        for f in fields {
            self.holders.insert(
                f.clone(),
                Holder {
                    pull,
                    user: user.to_owned(),
                    priority,
                    acquired_ms: now,
                    expires_ms,
                    token,
                },
            );
        }
        Grant {
            fencing_token: token,
            expires_at: from_unix_ms(expires_ms),
            preempted,
        }
    }

    /// Queues a waiter; `QueueFull` when any of its queues is at the limit.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &mut self,
        s: &EngineSettings,
        fields: Vec<String>,
        pull: i64,
        user: &str,
        priority: Priority,
        payload: Vec<u8>,
        hold_ms: i64,
        now: i64,
    ) -> Result<(WaiterId, Vec<QueuePosition>), EngineError> {
        for f in &fields {
            if self.queues.get(f).map_or(0, Vec::len) >= s.max_queue_size {
                return Err(EngineError::QueueFull {
                    key: lock_key(&self.repo, f).to_string(),
                    max: s.max_queue_size,
                });
            }
        }
        self.seq += 1;
        let seq = self.seq;
        let waiter = Waiter {
            seq,
            pull,
            user: user.to_owned(),
            priority,
            fields: fields.clone(),
            payload,
            enqueued_ms: now,
            deadline_ms: now + s.queue_timeout.as_millis() as i64,
            hold_ms,
            score: s.queue_score(priority, now),
        };
        let mut positions = Vec::new();
        for f in &fields {
            let queue = self.queues.entry(f.clone()).or_default();
            let at = queue
                .iter()
                .position(|other| {
                    let o = &self.waiters[other];
                    (o.score, o.seq) > (waiter.score, waiter.seq)
                })
                .unwrap_or(queue.len());
            queue.insert(at, seq);
            positions.push(QueuePosition {
                key: lock_key(&self.repo, f),
                position: at as u64 + 1,
                held_by: self.holders.get(f).map(|h| self.pull_ref(h.pull)),
            });
        }
        self.waiters.insert(seq, waiter);
        Ok((self.waiter_id(seq), positions))
    }

    fn waiter_id(&self, seq: u64) -> WaiterId {
        WaiterId {
            repo: self.repo.clone(),
            seq,
        }
    }

    /// Takes a waiter out of every queue it is in.
    pub fn unqueue(&mut self, seq: u64) -> Option<Waiter> {
        let w = self.waiters.remove(&seq)?;
        for f in &w.fields {
            if let Some(q) = self.queues.get_mut(f) {
                q.retain(|s| *s != seq);
                if q.is_empty() {
                    self.queues.remove(f);
                }
            }
        }
        Some(w)
    }

    /// Builds the dispatch for a waiter that leaves the queue.
    pub fn dispatch_of(&self, w: Waiter, reason: DispatchReason, grant: Option<Grant>) -> Dispatch {
        Dispatch {
            id: self.waiter_id(w.seq),
            reason,
            pull: self.pull_ref(w.pull),
            user: w.user,
            priority: w.priority,
            locks: w.fields.iter().map(|f| lock_key(&self.repo, f)).collect(),
            payload: w.payload,
            fencing_token: grant.as_ref().map(|g| g.fencing_token),
            preempted: grant.map(|g| g.preempted).unwrap_or_default(),
            enqueued_at: from_unix_ms(w.enqueued_ms),
        }
    }

    /// Grants every waiter whose locks are all free (or its pull's) and that heads the queue of
    /// every lock its pull does not hold, starting from the queues of `touched`.
    pub fn grant_pass(&mut self, touched: &[String], now: i64) -> Vec<Dispatch> {
        let mut out = Vec::new();
        // Byte order, as the Redis scripts use, so both backends hand out tokens alike.
        let mut touched = touched.to_vec();
        touched.sort();
        touched.dedup();
        for f in &touched {
            let Some(&head) = self.queues.get(f).and_then(|q| q.first()) else {
                continue;
            };
            let Some(w) = self.waiters.get(&head) else {
                continue;
            };
            // A lock the pull already holds is not contended, whoever queues for it.
            let at_head_everywhere = w.fields.iter().all(|g| {
                self.holders.get(g).is_some_and(|h| h.pull == w.pull)
                    || self.queues.get(g).and_then(|q| q.first()) == Some(&head)
            });
            if !at_head_everywhere {
                continue;
            }
            let mut preempt = Vec::new();
            let mut free = true;
            for g in &w.fields {
                match self.holders.get(g) {
                    Some(h) if h.pull == w.pull => {}
                    Some(h) if h.expires_ms <= now => preempt.push((g.clone(), h.pull)),
                    Some(_) => free = false,
                    None => {}
                }
            }
            if !free {
                continue;
            }
            let Some(w) = self.unqueue(head) else {
                continue;
            };
            let grant = self.take(
                &w.fields, w.pull, &w.user, w.priority, w.hold_ms, &preempt, now,
            );
            out.push(self.dispatch_of(w, DispatchReason::Granted, Some(grant)));
        }
        out
    }

    /// Removes a queued waiter with `reason` and grants what its leaving unblocks.
    pub fn remove(&mut self, seq: u64, reason: DispatchReason, now: i64) -> Vec<Dispatch> {
        let Some(w) = self.unqueue(seq) else {
            return Vec::new();
        };
        let fields = w.fields.clone();
        let mut out = vec![self.dispatch_of(w, reason, None)];
        out.extend(self.grant_pass(&fields, now));
        out
    }

    /// Releases one lock and grants its waiters.
    pub fn release(&mut self, field: &str, now: i64) -> Vec<Dispatch> {
        self.holders.remove(field);
        self.grant_pass(&[field.to_owned()], now)
    }

    /// The repository as the deadlock detector sees it.
    pub fn wait_graph(&self, now: i64) -> WaitGraphInput {
        WaitGraphInput {
            holders: self
                .holders
                .iter()
                .filter(|(_, h)| h.expires_ms > now)
                .map(|(f, h)| (f.clone(), h.pull))
                .collect(),
            queues: self
                .queues
                .iter()
                .map(|(f, q)| {
                    let nodes = q
                        .iter()
                        .filter_map(|s| self.waiters.get(s))
                        .map(|w| WaitNode {
                            seq: w.seq,
                            pull: w.pull,
                            priority: w.priority,
                        })
                        .collect();
                    (f.clone(), nodes)
                })
                .collect(),
        }
    }

    /// Keeps a deadlock record (bounded history).
    pub fn record_deadlock(&mut self, record: DeadlockRecord) {
        self.deadlocks.push_front(record);
        self.deadlocks.truncate(DEADLOCK_HISTORY);
    }
}

impl RepoState {
    /// A fresh id for a dispatch that has no waiter (expiry notices share the waiter sequence).
    pub fn next_notice_id(&mut self) -> WaiterId {
        self.seq += 1;
        self.waiter_id(self.seq)
    }
}
