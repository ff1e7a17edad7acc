//! The memory engine's state machine for one repository; pure (time is passed in).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::engine::deadlock::{WaitGraphInput, WaitNode};
use crate::engine::settings::EngineSettings;
use crate::engine::types::{
    Admission, Blocker, DeadlockRecord, Dispatch, DispatchReason, EngineError, Grant, HandBack,
    Preempted, QueueCap, QueuePosition, WaiterId, from_unix_ms, lock_field, lock_key,
};
use crate::vocab::{Priority, PullId, PullRef};

/// Most deadlock records kept per repository.
const DEADLOCK_HISTORY: usize = 100;

/// A held lock.
#[derive(Clone, Debug)]
pub struct Holder {
    pub pull: PullId,
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
    pub pull: PullId,
    pub user: String,
    pub priority: Priority,
    pub fields: Vec<String>,
    pub payload: Vec<u8>,
    pub enqueued_ms: i64,
    pub deadline_ms: i64,
    pub hold_ms: i64,
    pub score: f64,
    pub request_id: Option<String>,
}

/// A dispatch owned under a lease until confirmed.
#[derive(Clone, Debug)]
pub struct Pending {
    pub dispatch: Dispatch,
    pub lease_until_ms: i64,
    /// When it was last admitted as a hand-off (unix ms): it may be on its way to Atlantis.
    pub handed_off_ms: Option<i64>,
}

/// What an acquire attempt found.
pub enum Check {
    /// Grantable; these fields must first be taken from expired holders.
    Free(Vec<(String, PullId)>),
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
    /// Field → dispatches whose replay holds the lock in flight (one pull's, by construction).
    pub in_flight: BTreeMap<String, BTreeSet<u64>>,
    /// Waiters that left the queue and are being dispatched (payload in the dispatch), kept so a
    /// revoked grant can queue again in its old place.
    pub parked: HashMap<u64, Waiter>,
    /// Request identity → waiter or dispatch seq.
    pub requests: HashMap<String, u64>,
    /// Forgotten request identities → until when (unix ms) they stay refused.
    pub forgotten: HashMap<String, i64>,
    /// Stored requests (queued or being dispatched) and their bytes.
    pub usage: (u64, u64),
    /// Waiter seq → bytes of its stored request, until the request is let go.
    metered: HashMap<u64, u64>,
    /// Pulls whose release is on its way to Atlantis → until when (unix ms) hand-offs that
    /// count on their locks are held back.
    pub releasing: HashMap<PullId, i64>,
    /// Pruned from the engine: whoever still holds this state looks the repository up again.
    pub retired: bool,
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

    fn pull_ref(&self, pull: PullId) -> PullRef {
        pull.in_repo(&self.repo)
    }

    /// Whether `pull` could take `fields` right now (newcomers queue behind existing waiters).
    pub fn check(&self, fields: &[String], pull: PullId, now: i64) -> Check {
        let mut blocked = Vec::new();
        let mut preempt = Vec::new();
        for f in fields {
            let holder = self.holders.get(f);
            // Another pull's grant or hand-off of this lock is in flight: Atlantis may be giving
            // it to that pull right now, even if its holder here is this pull.
            if let Some(other) = self.in_flight_other(f, pull) {
                blocked.push(Blocker {
                    key: lock_key(&self.repo, f),
                    held_by: Some(self.pull_ref(other)),
                });
                continue;
            }
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
        pull: PullId,
        user: &str,
        priority: Priority,
        hold_ms: i64,
        preempt: &[(String, PullId)],
        now: i64,
    ) -> Grant {
        self.fence += 1;
        let token = self.fence;
        let expires_ms = now + hold_ms;
        let taken = fields
            .iter()
            .filter(|f| self.holders.get(*f).is_none_or(|h| h.pull != pull))
            .map(|f| lock_key(&self.repo, f))
            .collect();
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
            taken,
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
        pull: PullId,
        user: &str,
        priority: Priority,
        payload: Vec<u8>,
        hold_ms: i64,
        request_id: Option<String>,
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
        let bytes = payload.len() as u64;
        self.check_caps(s, bytes)?;
        self.seq += 1;
        let seq = self.seq;
        self.metered.insert(seq, bytes);
        self.usage = (self.usage.0 + 1, self.usage.1 + bytes);
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
            request_id,
        };
        if let Some(rid) = &waiter.request_id {
            self.requests.insert(rid.clone(), seq);
        }
        let positions = self.insert_waiter(waiter);
        Ok((self.waiter_id(seq), positions))
    }

    /// Whether one more stored request of `bytes` fits the repository's caps.
    pub fn check_caps(&self, s: &EngineSettings, bytes: u64) -> Result<(), EngineError> {
        let capped = |cap| EngineError::QueueCapped {
            cap,
            max: s.cap(cap),
        };
        if self.usage.0 + 1 > s.max_waiters_per_repo {
            return Err(capped(QueueCap::RepoWaiters));
        }
        if self.usage.1 + bytes > s.max_queued_bytes_per_repo {
            return Err(capped(QueueCap::RepoBytes));
        }
        Ok(())
    }

    /// Puts a waiter into the queue of each of its locks, at its score; returns its places.
    fn insert_waiter(&mut self, waiter: Waiter) -> Vec<QueuePosition> {
        let seq = waiter.seq;
        let fields = waiter.fields.clone();
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
        positions
    }

    /// The places of a queued waiter (for a repeated request).
    pub fn positions_of(&self, seq: u64) -> Vec<QueuePosition> {
        let Some(w) = self.waiters.get(&seq) else {
            return Vec::new();
        };
        w.fields
            .iter()
            .map(|f| QueuePosition {
                key: lock_key(&self.repo, f),
                position: self
                    .queues
                    .get(f)
                    .and_then(|q| q.iter().position(|s| *s == seq))
                    .map_or(0, |i| i as u64 + 1),
                held_by: self.holders.get(f).map(|h| self.pull_ref(h.pull)),
            })
            .collect()
    }

    /// A pull other than `pull` with a dispatch of `field` in flight, if any.
    pub fn in_flight_other(&self, field: &str, pull: PullId) -> Option<PullId> {
        self.in_flight
            .get(field)?
            .iter()
            .filter_map(|s| self.pending.get(s).map(|p| p.dispatch.pull.id()))
            .find(|p| *p != pull)
    }

    /// Whether `pull` has a dispatch of `field` in flight.
    pub fn in_flight_of(&self, field: &str, pull: PullId) -> bool {
        self.in_flight.get(field).is_some_and(|seqs| {
            seqs.iter().any(|s| {
                self.pending
                    .get(s)
                    .is_some_and(|p| p.dispatch.pull.id() == pull)
            })
        })
    }

    /// Marks `fields` as in flight for dispatch `seq`.
    pub fn set_in_flight(&mut self, seq: u64, fields: &[String]) {
        for f in fields {
            self.in_flight.entry(f.clone()).or_default().insert(seq);
        }
    }

    /// Ends the in-flight state of dispatch `seq`; returns the fields it held in flight.
    pub fn clear_in_flight(&mut self, seq: u64) -> Vec<String> {
        let mut cleared = Vec::new();
        self.in_flight.retain(|f, seqs| {
            if seqs.remove(&seq) {
                cleared.push(f.clone());
            }
            !seqs.is_empty()
        });
        cleared
    }

    /// Forgets a dispatch (confirmed, cancelled or dropped) and its request identity; returns
    /// the fields whose queues may now move.
    pub fn finish(&mut self, seq: u64) -> Vec<String> {
        self.unmeter(seq);
        let mut touched = self.clear_in_flight(seq);
        if let Some(p) = self.pending.remove(&seq) {
            touched.extend(
                p.dispatch
                    .locks
                    .iter()
                    .map(crate::engine::types::lock_field),
            );
        }
        if let Some(w) = self.parked.remove(&seq)
            && let Some(rid) = w.request_id
        {
            self.requests.remove(&rid);
        }
        touched
    }

    /// Stops counting the stored request of waiter `seq` (it is let go).
    fn unmeter(&mut self, seq: u64) {
        if let Some(bytes) = self.metered.remove(&seq) {
            self.usage = (
                self.usage.0.saturating_sub(1),
                self.usage.1.saturating_sub(bytes),
            );
        }
    }

    /// Puts a parked (dispatched) waiter back into its queues, in its old place.
    pub fn requeue(&mut self, seq: u64) -> bool {
        self.clear_in_flight(seq);
        let Some(p) = self.pending.remove(&seq) else {
            return false;
        };
        let Some(mut w) = self.parked.remove(&seq) else {
            return false;
        };
        w.payload = p.dispatch.payload;
        self.insert_waiter(w);
        true
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
    pub fn dispatch_of(
        &mut self,
        mut w: Waiter,
        reason: DispatchReason,
        grant: Option<Grant>,
    ) -> Dispatch {
        let payload = std::mem::take(&mut w.payload);
        let parked = w.clone();
        let w = Waiter { payload, ..w };
        self.parked.insert(w.seq, parked);
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
            attempt: 0,
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
            // A grant can unblock the next head too: the same pull's extra waiter (re-entrant).
            while let Some(d) = self.grant_head(f, now) {
                out.push(d);
            }
        }
        out
    }

    /// Grants the head of `field`'s queue if it heads every queue of a lock its pull does not
    /// hold, and all its locks are free (or its pull's, or expired) and not in flight for
    /// another pull.
    fn grant_head(&mut self, field: &str, now: i64) -> Option<Dispatch> {
        let head = *self.queues.get(field)?.first()?;
        let w = self.waiters.get(&head)?;
        // A lock the pull already holds is not contended, whoever queues for it.
        let at_head_everywhere = w.fields.iter().all(|g| {
            self.holders.get(g).is_some_and(|h| h.pull == w.pull)
                || self.queues.get(g).and_then(|q| q.first()) == Some(&head)
        });
        if !at_head_everywhere {
            return None;
        }
        let mut preempt = Vec::new();
        for g in &w.fields {
            if self.in_flight_other(g, w.pull).is_some() {
                return None;
            }
            match self.holders.get(g) {
                Some(h) if h.pull == w.pull => {}
                Some(h) if h.expires_ms <= now => preempt.push((g.clone(), h.pull)),
                Some(_) => return None,
                None => {}
            }
        }
        let w = self.unqueue(head)?;
        let grant = self.take(
            &w.fields, w.pull, &w.user, w.priority, w.hold_ms, &preempt, now,
        );
        let fields = w.fields.clone();
        let d = self.dispatch_of(w, DispatchReason::Granted, Some(grant));
        self.set_in_flight(head, &fields);
        Some(d)
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

impl RepoState {
    /// Decides what the dispatcher may send for dispatch `seq` (see [`Admission`]); changes the
    /// state accordingly (a hand-off takes the free locks, a stale grant is cancelled or queued
    /// again). Returns the admission and any dispatches it unblocked.
    pub fn admit(&mut self, seq: u64, now: i64) -> (Admission, Vec<Dispatch>) {
        let Some(p) = self.pending.get(&seq) else {
            return (Admission::Done, Vec::new());
        };
        let d = p.dispatch.clone();
        let fields: Vec<String> = d.locks.iter().map(lock_field).collect();
        if d.reason == DispatchReason::Granted {
            let token = d.fencing_token.unwrap_or_default();
            let current = fields.iter().all(|f| {
                self.holders
                    .get(f)
                    .is_some_and(|h| h.pull == d.pull.id() && h.token == token)
            });
            if current {
                return (
                    Admission::Grant {
                        fencing_token: token,
                        preempted: d.preempted,
                    },
                    Vec::new(),
                );
            }
            let taken_by_other = fields
                .iter()
                .any(|f| self.holders.get(f).is_some_and(|h| h.pull != d.pull.id()));
            // What is left of the stale grant goes; the lock is not granted to this pull.
            self.drop_grant(&fields, d.pull.id(), token);
            if taken_by_other {
                self.requeue(seq);
                let out = self.grant_pass(&fields, now);
                return (Admission::Requeued, out);
            }
            let touched = self.finish(seq);
            let out = self.grant_pass(&touched, now);
            return (Admission::Dropped, out);
        }
        if d.reason == DispatchReason::Dropped {
            let touched = self.finish(seq);
            let out = self.grant_pass(&touched, now);
            return (Admission::Dropped, out);
        }
        if !matches!(
            d.reason,
            DispatchReason::TimedOut | DispatchReason::DeadlockVictim | DispatchReason::Removed
        ) {
            return (Admission::Done, Vec::new());
        }
        // A hand-off: Atlantis will refuse the locks other pulls hold, and take the free ones.
        // A lock is blocked by its holder (live, or with a grant in flight); a free lock that
        // another pull's hand-off is in flight for is neither blocked nor free: wait.
        let mut blocked = Vec::new();
        let mut free = Vec::new();
        for f in &fields {
            let holder = self.holders.get(f);
            let marked = self.in_flight_other(f, d.pull.id()).is_some();
            match holder {
                Some(h) if h.pull == d.pull.id() => {}
                Some(h) if h.expires_ms > now || self.in_flight_of(f, h.pull) => {
                    // Its holder's release is on its way to Atlantis, which might carry it out
                    // first and then give the lock to this hand-off: wait for the release.
                    if self
                        .releasing
                        .get(&h.pull)
                        .is_some_and(|until| *until > now)
                    {
                        return (Admission::Busy, Vec::new());
                    }
                    blocked.push(Blocker {
                        key: lock_key(&self.repo, f),
                        held_by: Some(self.pull_ref(h.pull)),
                    })
                }
                _ if marked => return (Admission::Busy, Vec::new()),
                _ => free.push(f.clone()),
            }
        }
        let (user, priority) = (d.user.clone(), d.priority);
        let hold_ms = self.parked.get(&seq).map_or(0, |w| w.hold_ms);
        let mut token = None;
        let mut taken = Vec::new();
        let mut preempted = Vec::new();
        if !free.is_empty() {
            let preempt: Vec<(String, PullId)> = free
                .iter()
                .filter_map(|f| self.holders.get(f).map(|h| (f.clone(), h.pull)))
                .collect();
            let g = self.take(&free, d.pull.id(), &user, priority, hold_ms, &preempt, now);
            self.set_in_flight(seq, &free);
            token = Some(g.fencing_token);
            taken = g.taken;
            preempted = g.preempted;
        }
        if blocked.is_empty() {
            // Nothing is held by anyone else: it is a proper grant now.
            let token = match token {
                Some(t) => t,
                None => {
                    // Every lock was the pull's already: a grant under a fresh token.
                    self.fence += 1;
                    for f in &fields {
                        if let Some(h) = self.holders.get_mut(f) {
                            h.token = self.fence;
                        }
                    }
                    self.set_in_flight(seq, &fields);
                    self.fence
                }
            };
            if let Some(p) = self.pending.get_mut(&seq) {
                p.dispatch.reason = DispatchReason::Granted;
                p.dispatch.fencing_token = Some(token);
                p.dispatch.preempted = preempted.clone();
            }
            return (
                Admission::Grant {
                    fencing_token: token,
                    preempted,
                },
                Vec::new(),
            );
        }
        // Until Atlantis has carried out the hand-off, the blocked locks are not granted to
        // anyone else even if their holders release: Atlantis might give them to this pull.
        let blocked_fields: Vec<String> = blocked.iter().map(|b| lock_field(&b.key)).collect();
        self.set_in_flight(seq, &blocked_fields);
        if let Some(p) = self.pending.get_mut(&seq) {
            p.handed_off_ms = Some(now);
        }
        (
            Admission::HandOff {
                blocked,
                taken,
                fencing_token: token,
            },
            Vec::new(),
        )
    }

    /// Hands a grant back: the waiter of dispatch `seq` queues again in its old place, its
    /// locks held under the dispatch's token are released, and each lock Atlantis lists for
    /// another pull is adopted for that pull; a dispatch dropped because its pull was released
    /// meanwhile is finished instead.
    pub fn hand_back(
        &mut self,
        seq: u64,
        token: Option<u64>,
        atlantis: &[(String, PullId, String)],
        hold_ms: i64,
        now: i64,
    ) -> (HandBack, Vec<Dispatch>) {
        let Some(p) = self.pending.get(&seq) else {
            return (HandBack::Gone, Vec::new());
        };
        let pull = p.dispatch.pull.id();
        let dropped = p.dispatch.reason == DispatchReason::Dropped;
        let fields: Vec<String> = p.dispatch.locks.iter().map(lock_field).collect();
        if let Some(t) = token {
            self.drop_grant(&fields, pull, t);
        }
        if dropped {
            // Its pull was closed or unlocked meanwhile: the waiter is not queued again.
            let mut touched = self.finish(seq);
            touched.extend(fields);
            return (HandBack::Dropped, self.grant_pass(&touched, now));
        }
        let requeued = self.requeue(seq);
        // Atlantis's holder replaces this pull's (whichever of its grants held it); a lock another
        // pull holds or has in flight is the reconciler's to repair.
        for (f, holder, user) in atlantis {
            let ours_or_free = self.holders.get(f).is_none_or(|h| h.pull == pull);
            if *holder != pull && ours_or_free && self.in_flight_other(f, pull).is_none() {
                self.holders.remove(f);
                self.take(
                    std::slice::from_ref(f),
                    *holder,
                    user,
                    Priority::Normal,
                    hold_ms,
                    &[],
                    now,
                );
            }
        }
        let out = self.grant_pass(&fields, now);
        let back = if requeued {
            HandBack::Requeued
        } else {
            HandBack::Gone
        };
        (back, out)
    }

    /// Puts off the hand-off of dispatch `seq` (see `LockEngine::defer`).
    pub fn defer(
        &mut self,
        seq: u64,
        token: Option<u64>,
        retry_ms: i64,
        now: i64,
    ) -> (bool, Vec<Dispatch>) {
        let Some(p) = self.pending.get_mut(&seq) else {
            return (false, Vec::new());
        };
        p.lease_until_ms = p.lease_until_ms.min(now + retry_ms);
        let pull = p.dispatch.pull.id();
        let fields: Vec<String> = p.dispatch.locks.iter().map(lock_field).collect();
        if let Some(t) = token {
            self.drop_grant(&fields, pull, t);
        }
        self.clear_in_flight(seq);
        let out = self.grant_pass(&fields, now);
        (true, out)
    }

    /// Drops the locks of `fields` that `pull` holds under `token` (one grant, not a newer one of
    /// the same pull); returns those dropped. Waiters are not served.
    fn drop_grant(&mut self, fields: &[String], pull: PullId, token: u64) -> Vec<String> {
        let mut dropped = Vec::new();
        for f in fields {
            if self
                .holders
                .get(f)
                .is_some_and(|h| h.pull == pull && h.token == token)
            {
                self.holders.remove(f);
                dropped.push(f.clone());
            }
        }
        dropped
    }

    /// Releases the locks of `fields` that `pull` holds under `token` (a grant Atlantis refused).
    pub fn release_grant(
        &mut self,
        fields: &[String],
        pull: PullId,
        token: u64,
        now: i64,
    ) -> (usize, Vec<Dispatch>) {
        let released = self.drop_grant(fields, pull, token);
        let out = self.grant_pass(&released, now);
        (released.len(), out)
    }

    /// Holds back, until `until_ms`, every hand-off that counts on `pull` holding a lock (its
    /// release is on its way to Atlantis); returns how long (ms) the hand-offs already admitted
    /// may still be on their way to Atlantis (`settle_ms` after each was admitted).
    pub fn fence_release(&mut self, pull: PullId, until_ms: i64, settle_ms: i64, now: i64) -> i64 {
        self.releasing.retain(|_, until| *until > now);
        self.releasing.insert(pull, until_ms);
        let mut wait = 0;
        for (f, h) in &self.holders {
            if h.pull != pull {
                continue;
            }
            for s in self.in_flight.get(f).into_iter().flatten() {
                if let Some(p) = self.pending.get(s)
                    && p.dispatch.pull.id() != pull
                    && let Some(at) = p.handed_off_ms
                {
                    wait = wait.max(at + settle_ms - now);
                }
            }
        }
        wait
    }

    /// Lets hand-offs that count on `pull`'s locks go again.
    pub fn lift_fence(&mut self, pull: PullId) {
        self.releasing.remove(&pull);
    }

    /// Makes `pull` the holder of `field` (Atlantis's holder), if the lock is as `expect` says
    /// (`None`: free; `Some((pull, token))`: that grant) and no grant of it is in flight.
    pub fn adopt(
        &mut self,
        field: &str,
        pull: PullId,
        user: &str,
        hold_ms: i64,
        expect: Option<(PullId, u64)>,
        now: i64,
    ) -> bool {
        let current = self.holders.get(field).map(|h| (h.pull, h.token));
        // A grant being replayed is the dispatcher's to settle; a hand-off in flight is not.
        if let Some((holder, _)) = current
            && self.in_flight_of(field, holder)
        {
            return false;
        }
        if current != expect || current.is_some_and(|(p, _)| p == pull) {
            return false;
        }
        self.take(
            &[field.to_owned()],
            pull,
            user,
            Priority::Normal,
            hold_ms,
            &[],
            now,
        );
        true
    }

    /// Refuses request `rid` from now until `until_ms`: a queued waiter of it leaves silently, a
    /// grant of it not yet replayed is cancelled. True when something was removed.
    pub fn forget(&mut self, rid: &str, until_ms: i64, now: i64) -> (bool, Vec<Dispatch>) {
        self.forgotten.retain(|_, until| *until > now);
        self.forgotten.insert(rid.to_owned(), until_ms);
        let Some(seq) = self.requests.remove(rid) else {
            return (false, Vec::new());
        };
        if let Some(w) = self.unqueue(seq) {
            self.unmeter(seq);
            let out = self.grant_pass(&w.fields, now);
            return (true, out);
        }
        if let Some(p) = self.pending.get(&seq).cloned() {
            let fields: Vec<String> = p.dispatch.locks.iter().map(lock_field).collect();
            if let Some(t) = p.dispatch.fencing_token {
                for f in &fields {
                    if self
                        .holders
                        .get(f)
                        .is_some_and(|h| h.pull == p.dispatch.pull.id() && h.token == t)
                    {
                        self.holders.remove(f);
                    }
                }
            }
            let touched = self.finish(seq);
            let out = self.grant_pass(&touched, now);
            return (true, out);
        }
        (false, Vec::new())
    }

    /// Whether request `rid` was forgotten (and may not queue).
    pub fn is_forgotten(&self, rid: &str, now: i64) -> bool {
        self.forgotten.get(rid).is_some_and(|until| *until > now)
    }

    /// The queued (or dispatched) waiter of request `rid`, if any.
    pub fn request_seq(&self, rid: &str) -> Option<u64> {
        let seq = *self.requests.get(rid)?;
        (self.waiters.contains_key(&seq) || self.pending.contains_key(&seq)).then_some(seq)
    }

    /// Whether the repository holds nothing at all (so it can be pruned).
    pub fn is_idle(&self) -> bool {
        self.holders.is_empty()
            && self.waiters.is_empty()
            && self.pending.is_empty()
            && self.in_flight.is_empty()
            && self.forgotten.is_empty()
            && self.deadlocks.is_empty()
    }
}
