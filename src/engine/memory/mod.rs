//! The in-memory engine: the embedded default when no Redis is configured (one replica only).
//!
//! Each repository's state has its own mutex; the map of repositories is locked only to find or
//! add one (and to prune idle ones), never across a repository's work, so one repository with
//! ten thousand waiters does not slow a plan in another. The totals of stored requests and bytes
//! (for `max-waiters-total`, `max-queued-bytes-total`) are atomics: an enqueue reserves its place
//! in them before it stores anything, so concurrent repositories cannot overshoot.

mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::state::{Check, Pending, RepoState};
use super::deadlock::{find_victim, remove_waiter};
use super::events::{self, TARGET};
use super::types::{HandBack, lock_field, lock_key, unix_ms};
use super::{
    AcquireOutcome, AcquireRequest, Admission, DeadlockRecord, Dispatch, DispatchReason,
    DispatchReceiver, EngineError, EngineResult, EngineSettings, EngineStats, Enqueued, Grant,
    LockEngine, LockInfo, QueueCap, QueueInfo, QueueOutcome, ReleaseOutcome, ReleaseSummary,
    WaiterId, WaiterInfo, from_unix_ms,
};
use crate::vocab::{LockKey, PullId, PullRef};

/// How long a forgotten request stays refused (a VCS redelivers within minutes).
pub const FORGET_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// Milliseconds on a clock that `tokio::time::pause()` controls, anchored at the wall clock.
#[derive(Debug)]
struct Clock {
    base_unix_ms: i64,
    base: Instant,
}

impl Clock {
    fn now_ms(&self) -> i64 {
        self.base_unix_ms + self.base.elapsed().as_millis() as i64
    }
}

/// One repository's state, locked on its own.
type Shared = Arc<Mutex<RepoState>>;

/// Stored requests and their bytes across repositories.
#[derive(Debug, Default)]
struct Usage {
    waiters: AtomicU64,
    bytes: AtomicU64,
}

/// A place reserved in the totals for one request about to be stored; given back on drop (the
/// stored request is then counted through its repository's usage).
struct Reservation<'a> {
    usage: &'a Usage,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.usage.waiters.fetch_sub(1, Ordering::AcqRel);
        self.usage.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The in-memory [`LockEngine`].
#[derive(Debug)]
pub struct MemoryEngine {
    settings: EngineSettings,
    stats: EngineStats,
    clock: Clock,
    repos: Mutex<HashMap<String, Shared>>,
    usage: Usage,
    tx: mpsc::Sender<Dispatch>,
    rx: Mutex<Option<DispatchReceiver>>,
}

impl MemoryEngine {
    /// A new, empty engine.
    pub fn new(settings: EngineSettings) -> Self {
        let (tx, rx) = mpsc::channel(super::DISPATCH_BUFFER);
        Self {
            settings,
            stats: EngineStats::default(),
            clock: Clock {
                base_unix_ms: unix_ms(SystemTime::now()),
                base: Instant::now(),
            },
            repos: Mutex::new(HashMap::new()),
            usage: Usage::default(),
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Runs `f` on one repository's state under its own lock (created when `create`; `None`
    /// when it has none). The map of repositories is locked only to find the entry.
    fn with_repo<T>(
        &self,
        name: &str,
        create: bool,
        f: impl FnOnce(&mut RepoState, i64) -> T,
    ) -> Option<T> {
        loop {
            let shared = {
                // A poisoned lock means a panic mid-update; the state machine keeps no
                // half-written invariants across awaits, so continuing is the most useful.
                let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
                match repos.get(name) {
                    Some(s) => s.clone(),
                    None if create => repos
                        .entry(name.to_owned())
                        .or_insert_with(|| Arc::new(Mutex::new(RepoState::new(name))))
                        .clone(),
                    None => return None,
                }
            };
            let mut repo = shared.lock().unwrap_or_else(|e| e.into_inner());
            // Pruned between finding it and locking it: look it up again.
            if repo.retired {
                continue;
            }
            let before = repo.usage;
            let out = f(&mut repo, self.clock.now_ms());
            self.account(before, repo.usage);
            return Some(out);
        }
    }

    /// Runs `f` on every repository in turn, each under its own lock.
    fn each_repo(&self, mut f: impl FnMut(&mut RepoState, i64)) {
        let all: Vec<Shared> = self
            .repos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for shared in all {
            let mut repo = shared.lock().unwrap_or_else(|e| e.into_inner());
            if repo.retired {
                continue;
            }
            let before = repo.usage;
            f(&mut repo, self.clock.now_ms());
            self.account(before, repo.usage);
        }
    }

    /// Applies a repository's change of stored requests and bytes to the totals.
    fn account(&self, before: (u64, u64), after: (u64, u64)) {
        let u = &self.usage;
        u.waiters.fetch_add(after.0, Ordering::AcqRel);
        u.waiters.fetch_sub(before.0, Ordering::AcqRel);
        u.bytes.fetch_add(after.1, Ordering::AcqRel);
        u.bytes.fetch_sub(before.1, Ordering::AcqRel);
    }

    /// Reserves one request of `bytes` in the totals, or says which total cap it would pass.
    fn reserve(&self, bytes: u64) -> Result<Reservation<'_>, EngineError> {
        let s = &self.settings;
        let u = &self.usage;
        let capped = |cap| EngineError::QueueCapped {
            cap,
            max: s.cap(cap),
        };
        if u.waiters.fetch_add(1, Ordering::AcqRel) + 1 > s.max_waiters_total {
            u.waiters.fetch_sub(1, Ordering::AcqRel);
            return Err(capped(QueueCap::TotalWaiters));
        }
        if u.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > s.max_queued_bytes_total {
            u.bytes.fetch_sub(bytes, Ordering::AcqRel);
            u.waiters.fetch_sub(1, Ordering::AcqRel);
            return Err(capped(QueueCap::TotalBytes));
        }
        Ok(Reservation { usage: u, bytes })
    }

    /// Drops repositories left with nothing (a repository busy right now is left for later).
    fn prune(&self) {
        let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
        repos.retain(|_, shared| match shared.try_lock() {
            Ok(mut r) if r.is_idle() => {
                r.retired = true;
                false
            }
            _ => true,
        });
    }

    /// Leases and sends dispatches to this replica's dispatcher.
    fn deliver(&self, repo: &mut RepoState, dispatches: Vec<Dispatch>, now: i64) {
        let lease = now + self.settings.dispatch_lease.as_millis() as i64;
        for d in dispatches {
            events::count_dispatch(&self.stats, &d);
            events::dispatched(self.settings.enable_events, &d);
            repo.pending.insert(
                d.id.seq,
                Pending {
                    dispatch: d.clone(),
                    lease_until_ms: lease,
                    handed_off_ms: None,
                },
            );
            if let Some(rid) = repo
                .parked
                .get(&d.id.seq)
                .and_then(|w| w.request_id.clone())
            {
                repo.requests.insert(rid, d.id.seq);
            }
            // A full or dropped receiver leaves the dispatch leased; it is re-offered later.
            let _ = self.tx.try_send(d);
        }
    }

    fn hold_ms(&self, req: &AcquireRequest) -> i64 {
        self.settings
            .hold_timeout(req.priority, req.hold_timeout)
            .as_millis() as i64
    }

    /// Breaks every deadlock in one repository.
    fn break_deadlocks(&self, repo: &mut RepoState, now: i64) -> Vec<DeadlockRecord> {
        let mut found = Vec::new();
        let mut graph = repo.wait_graph(now);
        while let Some(v) = find_victim(&graph) {
            remove_waiter(&mut graph, v.waiter.seq);
            let record = DeadlockRecord {
                detected_at_ms: now,
                repo: repo.repo.clone(),
                cycle: v.cycle.iter().map(|p| p.number).collect(),
                victim: WaiterId {
                    repo: repo.repo.clone(),
                    seq: v.waiter.seq,
                }
                .to_string(),
                victim_pull: v.waiter.pull.number,
                victim_priority: v.waiter.priority,
            };
            if self.settings.enable_events {
                tracing::warn!(target: TARGET, event = "deadlock", repo = %record.repo, cycle = ?record.cycle, victim = %record.victim, "deadlock detected");
            }
            repo.record_deadlock(record.clone());
            let out = repo.remove(v.waiter.seq, DispatchReason::DeadlockVictim, now);
            self.deliver(repo, out, now);
            found.push(record);
        }
        found
    }

    fn queue(
        &self,
        req: AcquireRequest,
        payload: Vec<u8>,
        try_grant: bool,
    ) -> EngineResult<QueueOutcome> {
        req.validate()?;
        let fields = req.fields();
        let hold_ms = self.hold_ms(&req);
        EngineStats::bump(&self.stats.acquisitions);
        let mut reserved = None;
        let out = self.with_repo(&req.pull.repo.clone(), true, |repo, now| {
            if let Some(rid) = &req.request_id {
                if repo.is_forgotten(rid, now) {
                    return Ok(QueueOutcome::Forgotten);
                }
                // The same request again (a redelivery): it keeps its one waiter.
                if let Some(seq) = repo.request_seq(rid) {
                    return Ok(QueueOutcome::Queued(Enqueued {
                        waiter_id: WaiterId {
                            repo: req.pull.repo.clone(),
                            seq,
                        },
                        positions: repo.positions_of(seq),
                    }));
                }
            }
            let held_before: Vec<String> = fields
                .iter()
                .filter(|f| repo.holders.get(*f).is_some_and(|h| h.pull == req.pull.id()))
                .cloned()
                .collect();
            if try_grant && let Check::Free(preempt) = repo.check(&fields, req.pull.id(), now) {
                let grant = repo.take(
                    &fields,
                    req.pull.id(),
                    &req.user,
                    req.priority,
                    hold_ms,
                    &preempt,
                    now,
                );
                events::granted(self.settings.enable_events, &self.stats, &req, &grant);
                return Ok(QueueOutcome::Granted(grant));
            }
            // The totals first, atomically across repositories; the repository's caps below.
            match repo
                .check_caps(&self.settings, payload.len() as u64)
                .and_then(|()| self.reserve(payload.len() as u64))
            {
                Ok(r) => reserved = Some(r),
                Err(e) => {
                    EngineStats::bump(&self.stats.acquisitions_blocked);
                    EngineStats::bump(&self.stats.queue_rejected);
                    return Err(e);
                }
            }
            let queued = repo.enqueue(
                &self.settings,
                fields.clone(),
                req.pull.id(),
                &req.user,
                req.priority,
                payload,
                hold_ms,
                req.request_id.clone(),
                now,
            );
            let (waiter_id, positions) = match queued {
                Ok(q) => q,
                Err(e) => {
                    EngineStats::bump(&self.stats.acquisitions_blocked);
                    EngineStats::bump(&self.stats.queue_rejected);
                    return Err(e);
                }
            };
            let mut out = repo.grant_pass(&fields, now);
            // A newcomer may outrank the waiters that kept a free lock reserved; when that grants
            // it at once, answer as a grant instead of dispatching the caller's own request.
            let own = out.iter().position(|d| d.id == waiter_id);
            if let (true, Some(i)) = (try_grant, own) {
                let d = out.remove(i);
                repo.finish(d.id.seq);
                let grant = Grant {
                    fencing_token: d.fencing_token.unwrap_or_default(),
                    taken: fields
                        .iter()
                        .filter(|f| !held_before.contains(f))
                        .map(|f| lock_key(&req.pull.repo, f))
                        .collect(),
                    expires_at: from_unix_ms(now + hold_ms),
                    preempted: d.preempted,
                };
                self.deliver(repo, out, now);
                events::granted(self.settings.enable_events, &self.stats, &req, &grant);
                return Ok(QueueOutcome::Granted(grant));
            }
            EngineStats::bump(&self.stats.acquisitions_blocked);
            EngineStats::bump(&self.stats.enqueued);
            if self.settings.enable_events {
                tracing::info!(target: TARGET, event = "enqueue", waiter = %waiter_id, pull = %req.pull, priority = %req.priority, "waiter queued");
            }
            self.deliver(repo, out, now);
            if self.settings.enable_deadlock_detection {
                self.break_deadlocks(repo, now);
            }
            Ok(QueueOutcome::Queued(Enqueued {
                waiter_id,
                positions,
            }))
        });
        drop(reserved);
        out.unwrap_or(Err(EngineError::Protocol("repository vanished".into())))
    }

    fn released(&self, n: usize, pull: &PullRef) {
        EngineStats::add(&self.stats.releases, n as u64);
        if self.settings.enable_events && n > 0 {
            tracing::info!(target: TARGET, event = "release", %pull, locks = n, "locks released");
        }
    }

    fn maintain_now(&self, cleanup: bool) {
        let mut depth = [0i64; 4];
        self.each_repo(|repo, now| {
            {
                let timed_out: Vec<u64> = repo
                    .waiters
                    .values()
                    .filter(|w| w.deadline_ms <= now)
                    .map(|w| w.seq)
                    .collect();
                for seq in timed_out {
                    let out = repo.remove(seq, DispatchReason::TimedOut, now);
                    self.deliver(repo, out, now);
                }
                let expired: Vec<(String, PullId)> = repo
                    .holders
                    .iter()
                    .filter(|(_, h)| h.expires_ms <= now)
                    .map(|(f, h)| (f.clone(), h.pull))
                    .collect();
                let mut waited: Vec<String> = Vec::new();
                let mut by_pull: HashMap<PullId, Vec<String>> = HashMap::new();
                for (f, pull) in expired {
                    if repo.queues.contains_key(&f) {
                        waited.push(f);
                    } else if cleanup {
                        repo.holders.remove(&f);
                        by_pull.entry(pull).or_default().push(f);
                    }
                }
                let out = repo.grant_pass(&waited, now);
                self.deliver(repo, out, now);
                for (pull, fields) in by_pull {
                    let notice = self.expiry_notice(repo, pull, fields, now);
                    self.deliver(repo, vec![notice], now);
                }
                let lease = now + self.settings.dispatch_lease.as_millis() as i64;
                for p in repo.pending.values_mut() {
                    if p.lease_until_ms <= now {
                        p.lease_until_ms = lease;
                        p.dispatch.attempt += 1;
                        if self.settings.enable_events {
                            tracing::info!(target: TARGET, event = "reoffer", waiter = %p.dispatch.id, reason = p.dispatch.reason.as_str(), "dispatch re-offered after its lease ran out");
                        }
                        let _ = self.tx.try_send(p.dispatch.clone());
                    }
                }
                for w in repo.waiters.values() {
                    depth[usize::from(super::rank(w.priority))] += 1;
                }
                repo.forgotten.retain(|_, until| *until > now);
            }
        });
        // A repository with nothing left leaves no state behind.
        self.prune();
        self.stats.set_queue_depth(depth);
    }

    fn expiry_notice(
        &self,
        repo: &mut RepoState,
        pull: PullId,
        fields: Vec<String>,
        now: i64,
    ) -> Dispatch {
        let id = repo.next_notice_id();
        let pull = pull.in_repo(&repo.repo);
        let locks: Vec<LockKey> = fields.iter().map(|f| lock_key(&repo.repo, f)).collect();
        Dispatch {
            id,
            reason: DispatchReason::Expired,
            pull: pull.clone(),
            user: String::new(),
            priority: Default::default(),
            preempted: locks
                .iter()
                .map(|k| super::Preempted {
                    key: k.clone(),
                    pull: pull.clone(),
                })
                .collect(),
            locks,
            payload: Vec::new(),
            fencing_token: None,
            enqueued_at: from_unix_ms(now),
            attempt: 0,
        }
    }
}

impl LockEngine for MemoryEngine {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    fn stats(&self) -> &EngineStats {
        &self.stats
    }

    fn ping(&self) -> BoxFuture<'_, EngineResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn acquire(&self, req: AcquireRequest) -> BoxFuture<'_, EngineResult<AcquireOutcome>> {
        Box::pin(async move {
            req.validate()?;
            EngineStats::bump(&self.stats.acquisitions);
            let fields = req.fields();
            let hold_ms = self.hold_ms(&req);
            let repo_name = req.pull.repo.clone();
            self.with_repo(&repo_name, true, |repo, now| {
                match repo.check(&fields, req.pull.id(), now) {
                    Check::Free(preempt) => {
                        let g = repo.take(
                            &fields,
                            req.pull.id(),
                            &req.user,
                            req.priority,
                            hold_ms,
                            &preempt,
                            now,
                        );
                        events::granted(self.settings.enable_events, &self.stats, &req, &g);
                        Ok(AcquireOutcome::Granted(g))
                    }
                    Check::Blocked(by) => {
                        EngineStats::bump(&self.stats.acquisitions_blocked);
                        Ok(AcquireOutcome::Held { by })
                    }
                }
            })
            .unwrap_or(Err(EngineError::Protocol("repository vanished".into())))
        })
    }

    fn acquire_or_enqueue(
        &self,
        req: AcquireRequest,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, EngineResult<QueueOutcome>> {
        Box::pin(async move { self.queue(req, payload, true) })
    }

    fn enqueue(
        &self,
        req: AcquireRequest,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, EngineResult<Enqueued>> {
        Box::pin(async move {
            match self.queue(req, payload, false)? {
                QueueOutcome::Queued(q) => Ok(q),
                QueueOutcome::Granted(_) | QueueOutcome::Forgotten => {
                    Err(super::EngineError::Protocol("enqueue did not queue".into()))
                }
            }
        })
    }

    fn release(
        &self,
        key: LockKey,
        by: Option<PullRef>,
    ) -> BoxFuture<'_, EngineResult<ReleaseOutcome>> {
        Box::pin(async move {
            let field = lock_field(&key);
            self.with_repo(&key.repo, false, |repo, now| {
                let Some(holder) = repo.holders.get(&field) else {
                    return Ok(ReleaseOutcome::NotHeld);
                };
                let holder = holder.pull.in_repo(&key.repo);
                if by.as_ref().is_some_and(|p| *p != holder) {
                    return Ok(ReleaseOutcome::HeldByOther(holder));
                }
                let out = repo.release(&field, now);
                self.released(1, &holder);
                self.deliver(repo, out, now);
                Ok(ReleaseOutcome::Released)
            })
            .unwrap_or(Ok(ReleaseOutcome::NotHeld))
        })
    }

    fn release_pull_keeping(
        &self,
        pull: PullRef,
        keep: Vec<(LockKey, u64)>,
    ) -> BoxFuture<'_, EngineResult<ReleaseSummary>> {
        Box::pin(async move {
            let keep: Vec<(String, u64)> = keep.iter().map(|(k, t)| (lock_field(k), *t)).collect();
            self.with_repo(&pull.repo, false, |repo, now| {
                let mut summary = ReleaseSummary::default();
                let fields: Vec<String> = repo
                    .holders
                    .iter()
                    .filter(|(f, h)| {
                        h.pull == pull.id() && !keep.iter().any(|(k, t)| k == *f && *t == h.token)
                    })
                    .map(|(f, _)| f.clone())
                    .collect();
                let mut touched = fields.clone();
                let mut out = Vec::new();
                for f in &fields {
                    repo.holders.remove(f);
                    summary.released.push(lock_key(&pull.repo, f));
                }
                let mine: Vec<u64> = repo
                    .waiters
                    .values()
                    .filter(|w| w.pull == pull.id())
                    .map(|w| w.seq)
                    .collect();
                for seq in mine {
                    if let Some(w) = repo.unqueue(seq) {
                        touched.extend(w.fields.iter().cloned());
                        let d = repo.dispatch_of(w, DispatchReason::Dropped, None);
                        summary.removed_waiters.push(d.id.clone());
                        out.push(d);
                    }
                }
                // Grants and hand-offs of the pull not sent yet are dropped too: it is closed or
                // unlocked (a kept lock stays held until the caller releases it).
                for p in repo.pending.values_mut() {
                    if p.dispatch.pull.id() == pull.id()
                        && matches!(
                            p.dispatch.reason,
                            DispatchReason::Granted
                                | DispatchReason::TimedOut
                                | DispatchReason::DeadlockVictim
                                | DispatchReason::Removed
                        )
                    {
                        p.dispatch.reason = DispatchReason::Dropped;
                    }
                }
                out.extend(repo.grant_pass(&touched, now));
                self.released(fields.len(), &pull);
                self.deliver(repo, out, now);
                Ok(summary)
            })
            .unwrap_or(Ok(ReleaseSummary::default()))
        })
    }

    fn remove_waiter(&self, id: WaiterId) -> BoxFuture<'_, EngineResult<bool>> {
        Box::pin(async move {
            let removed = self.with_repo(&id.repo, false, |repo, now| {
                let out = repo.remove(id.seq, DispatchReason::Removed, now);
                let removed = !out.is_empty();
                self.deliver(repo, out, now);
                removed
            });
            Ok(removed.unwrap_or(false))
        })
    }

    fn drop_waiter(&self, id: WaiterId) -> BoxFuture<'_, EngineResult<bool>> {
        Box::pin(async move {
            let removed = self.with_repo(&id.repo, false, |repo, now| {
                let out = repo.remove(id.seq, DispatchReason::Dropped, now);
                let removed = !out.is_empty();
                self.deliver(repo, out, now);
                removed
            });
            Ok(removed.unwrap_or(false))
        })
    }

    fn list_locks(&self) -> BoxFuture<'_, EngineResult<Vec<LockInfo>>> {
        Box::pin(async move {
            let mut locks: Vec<LockInfo> = Vec::new();
            self.each_repo(|r, _| {
                locks.extend(r.holders.iter().map(|(f, h)| LockInfo {
                    key: lock_key(&r.repo, f),
                    pull: h.pull.in_repo(&r.repo),
                    user: h.user.clone(),
                    priority: h.priority,
                    acquired_at: from_unix_ms(h.acquired_ms),
                    expires_at: from_unix_ms(h.expires_ms),
                    fencing_token: h.token,
                    dispatching: r.in_flight_of(f, h.pull),
                }));
            });
            locks.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(locks)
        })
    }

    fn list_queues(&self) -> BoxFuture<'_, EngineResult<Vec<QueueInfo>>> {
        Box::pin(async move {
            let mut queues: Vec<QueueInfo> = Vec::new();
            self.each_repo(|r, _| {
                queues.extend(r.queues.iter().map(|(f, q)| {
                    QueueInfo {
                        key: lock_key(&r.repo, f),
                        waiters: q
                            .iter()
                            .filter_map(|s| r.waiters.get(s))
                            .enumerate()
                            .map(|(i, w)| WaiterInfo {
                                id: WaiterId {
                                    repo: r.repo.clone(),
                                    seq: w.seq,
                                },
                                pull: w.pull.in_repo(&r.repo),
                                user: w.user.clone(),
                                priority: w.priority,
                                enqueued_at: from_unix_ms(w.enqueued_ms),
                                position: i as u64 + 1,
                            })
                            .collect(),
                    }
                }));
            });
            queues.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(queues)
        })
    }

    fn deadlocks(&self) -> BoxFuture<'_, EngineResult<Vec<DeadlockRecord>>> {
        Box::pin(async move {
            let mut all: Vec<DeadlockRecord> = Vec::new();
            self.each_repo(|r, _| all.extend(r.deadlocks.iter().cloned()));
            all.sort_by_key(|r| std::cmp::Reverse(r.detected_at_ms));
            Ok(all)
        })
    }

    fn take_dispatches(&self) -> Option<DispatchReceiver> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn confirm(&self, dispatch: &Dispatch) -> BoxFuture<'_, EngineResult<()>> {
        let id = dispatch.id.clone();
        Box::pin(async move {
            self.with_repo(&id.repo, false, |repo, now| {
                let touched = repo.finish(id.seq);
                let out = repo.grant_pass(&touched, now);
                self.deliver(repo, out, now);
            });
            Ok(())
        })
    }

    fn maintain(&self, cleanup: bool) -> BoxFuture<'_, EngineResult<()>> {
        Box::pin(async move {
            self.maintain_now(cleanup);
            Ok(())
        })
    }

    fn admit(&self, dispatch: &Dispatch) -> BoxFuture<'_, EngineResult<Admission>> {
        let id = dispatch.id.clone();
        Box::pin(async move {
            Ok(self
                .with_repo(&id.repo, false, |repo, now| {
                    let (admission, out) = repo.admit(id.seq, now);
                    self.deliver(repo, out, now);
                    admission
                })
                .unwrap_or(Admission::Done))
        })
    }

    fn hand_back(
        &self,
        dispatch: &Dispatch,
        token: Option<u64>,
        atlantis: Vec<(LockKey, PullRef, String)>,
    ) -> BoxFuture<'_, EngineResult<HandBack>> {
        let id = dispatch.id.clone();
        let hold_ms = self.settings.default_timeout.as_millis() as i64;
        Box::pin(async move {
            let atlantis: Vec<(String, PullId, String)> = atlantis
                .iter()
                .filter(|(k, _, _)| k.repo == id.repo)
                .map(|(k, p, u)| (lock_field(k), p.id(), u.clone()))
                .collect();
            Ok(self
                .with_repo(&id.repo, false, |repo, now| {
                    let (back, out) = repo.hand_back(id.seq, token, &atlantis, hold_ms, now);
                    self.deliver(repo, out, now);
                    back
                })
                .unwrap_or(HandBack::Gone))
        })
    }

    fn defer(
        &self,
        dispatch: &Dispatch,
        token: Option<u64>,
        retry_in: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<bool>> {
        let id = dispatch.id.clone();
        Box::pin(async move {
            Ok(self
                .with_repo(&id.repo, false, |repo, now| {
                    let (found, out) = repo.defer(id.seq, token, retry_in.as_millis() as i64, now);
                    self.deliver(repo, out, now);
                    found
                })
                .unwrap_or(false))
        })
    }

    fn release_grant(
        &self,
        pull: PullRef,
        locks: Vec<LockKey>,
        token: u64,
    ) -> BoxFuture<'_, EngineResult<usize>> {
        Box::pin(async move {
            let fields: Vec<String> = locks.iter().map(lock_field).collect();
            Ok(self
                .with_repo(&pull.repo, false, |repo, now| {
                    let (n, out) = repo.release_grant(&fields, pull.id(), token, now);
                    self.released(n, &pull);
                    self.deliver(repo, out, now);
                    n
                })
                .unwrap_or(0))
        })
    }

    fn fence_release(
        &self,
        pull: PullRef,
        hold: std::time::Duration,
        settle: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<std::time::Duration>> {
        Box::pin(async move {
            let wait = self
                .with_repo(&pull.repo, false, |repo, now| {
                    repo.fence_release(
                        pull.id(),
                        now + hold.as_millis() as i64,
                        settle.as_millis() as i64,
                        now,
                    )
                })
                .unwrap_or(0);
            Ok(std::time::Duration::from_millis(wait.max(0) as u64))
        })
    }

    fn lift_fence(&self, pull: PullRef) -> BoxFuture<'_, EngineResult<()>> {
        Box::pin(async move {
            self.with_repo(&pull.repo, false, |repo, _| repo.lift_fence(pull.id()));
            Ok(())
        })
    }

    fn adopt(
        &self,
        key: LockKey,
        holder: PullRef,
        user: String,
        expect: Option<(PullId, u64)>,
    ) -> BoxFuture<'_, EngineResult<bool>> {
        let hold_ms = self.settings.default_timeout.as_millis() as i64;
        Box::pin(async move {
            let field = lock_field(&key);
            Ok(self
                .with_repo(&key.repo, true, |repo, now| {
                    repo.adopt(&field, holder.id(), &user, hold_ms, expect, now)
                })
                .unwrap_or(false))
        })
    }

    fn forget(&self, repo: String, request_id: String) -> BoxFuture<'_, EngineResult<bool>> {
        let keep_ms = FORGET_FOR.as_millis() as i64;
        Box::pin(async move {
            Ok(self
                .with_repo(&repo, true, |r, now| {
                    let (removed, out) = r.forget(&request_id, now + keep_ms, now);
                    self.deliver(r, out, now);
                    removed
                })
                .unwrap_or(false))
        })
    }

    fn check_deadlocks(&self) -> BoxFuture<'_, EngineResult<Vec<DeadlockRecord>>> {
        Box::pin(async move {
            let mut found = Vec::new();
            self.each_repo(|r, now| found.extend(self.break_deadlocks(r, now)));
            Ok(found)
        })
    }
}

#[cfg(test)]
mod tests;
