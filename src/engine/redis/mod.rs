//! The Redis engine: state in Redis (standalone or Cluster), one Lua script per operation.
//!
//! Every key of a repository shares the hash tag `{owner/repo}` (see `lua/prelude.lua` for the
//! layout), so each script touches one slot. Scripts read the server clock (`TIME`), so replicas
//! never disagree about expiry. A global set `<prefix>repos` lists repositories with state so the
//! maintenance pass can visit them (it is never pruned: a replica may have cached a repository as
//! registered, and an unlisted repository would never see its queue timeouts).
//!
//! - Fencing tokens come from one counter per repository (`INCR` in the grant), the only scope a
//!   single-slot script can reach on a Cluster; locks never leave their repository.
//! - Grants, timeouts, removals and expiries are written as dispatch records leased to the replica
//!   whose script produced them; `maintain` re-leases expired ones to whoever runs it.
//! - Deadlock detection reads a snapshot and fails the victim with a script that only acts if the
//!   victim is still queued, so a cycle broken concurrently by a release costs at most one
//!   needless victim, never a lost waiter (the victim is dispatched, not dropped).

pub(crate) mod conn;
mod reply;
mod scripts;

use std::collections::HashSet;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use redis::{Script, Value};
use tokio::sync::mpsc;

use self::conn::{Backend, op_deadline, safe_to_retry};
use self::reply::{
    Snapshot, array, at, bad, bytes, decode_dispatch, decode_preempted, int, opt_int, text,
};
use self::scripts::Scripts;
use super::deadlock::{find_victim, remove_waiter};
use super::events::{self, TARGET};
use super::types::{lock_field, lock_key};
use super::{
    AcquireOutcome, AcquireRequest, Admission, Blocker, DeadlockRecord, Dispatch, DispatchReceiver,
    EngineError, EngineResult, EngineSettings, EngineStats, Enqueued, Grant, LockEngine, LockInfo,
    Preempted, QueueInfo, QueueOutcome, QueuePosition, RedisSettings, ReleaseOutcome,
    ReleaseSummary, WaiterId, from_unix_ms, rank,
};
use crate::vocab::{LockKey, PullRef};

/// The Redis-backed [`LockEngine`].
#[derive(Debug)]
pub struct RedisEngine {
    settings: EngineSettings,
    redis: RedisSettings,
    stats: EngineStats,
    backend: Backend,
    scripts: Scripts,
    known_repos: Mutex<HashSet<String>>,
    tx: mpsc::Sender<Dispatch>,
    rx: Mutex<Option<DispatchReceiver>>,
}

/// Decoded acquire script reply.
enum AcquireReply {
    Granted(Grant),
    Held(Vec<Blocker>),
    Full(String),
    Queued(Enqueued),
    Forgotten,
}

impl RedisEngine {
    /// Connects to Redis and loads nothing yet (scripts load on first use).
    pub async fn connect(settings: EngineSettings, redis: RedisSettings) -> EngineResult<Self> {
        let backend = Backend::connect(&redis).await?;
        let (tx, rx) = mpsc::channel(super::DISPATCH_BUFFER);
        Ok(Self {
            settings,
            redis,
            stats: EngineStats::default(),
            backend,
            scripts: Scripts::new(),
            known_repos: Mutex::new(HashSet::new()),
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    /// The key base of a repository: `<prefix>{<repo>}:`.
    fn base(&self, repo: &str) -> String {
        format!("{}{{{repo}}}:", self.redis.key_prefix)
    }

    fn repos_key(&self) -> String {
        format!("{}repos", self.redis.key_prefix)
    }

    /// Runs a script for one repository with the standard leading arguments.
    async fn run(&self, script: &Script, repo: &str, args: Vec<Vec<u8>>) -> EngineResult<Value> {
        let base = self.base(repo);
        let mut inv = script.prepare_invoke();
        inv.key(format!("{base}h"))
            .arg(base)
            .arg(&self.settings.instance_id)
            .arg(self.settings.dispatch_lease.as_millis() as u64);
        for a in args {
            inv.arg(a);
        }
        let mut attempt = 0;
        loop {
            let res =
                tokio::time::timeout(op_deadline(&self.redis), self.backend.invoke(&inv)).await;
            match res {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if safe_to_retry(&e) && attempt < self.redis.max_retries => {
                    attempt += 1;
                }
                Ok(Err(e)) => {
                    EngineStats::bump(&self.stats.errors);
                    return Err(EngineError::BackendUnavailable(e.to_string()));
                }
                Err(_) => {
                    EngineStats::bump(&self.stats.errors);
                    return Err(EngineError::BackendTimeout);
                }
            }
        }
    }

    async fn query(&self, cmd: &redis::Cmd) -> EngineResult<Value> {
        match tokio::time::timeout(op_deadline(&self.redis), self.backend.query(cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                EngineStats::bump(&self.stats.errors);
                Err(EngineError::BackendUnavailable(e.to_string()))
            }
            Err(_) => {
                EngineStats::bump(&self.stats.errors);
                Err(EngineError::BackendTimeout)
            }
        }
    }

    /// Adds the repository to the global index once per process (idempotent in Redis).
    async fn register(&self, repo: &str) -> EngineResult<()> {
        let known = self
            .known_repos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(repo);
        if !known {
            self.query(redis::cmd("SADD").arg(self.repos_key()).arg(repo))
                .await?;
            self.known_repos
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(repo.to_owned());
        }
        Ok(())
    }

    async fn repos(&self) -> EngineResult<Vec<String>> {
        let v = self
            .query(redis::cmd("SMEMBERS").arg(self.repos_key()))
            .await?;
        let mut repos = array(&v)?.iter().map(text).collect::<Result<Vec<_>, _>>()?;
        repos.sort();
        Ok(repos)
    }

    async fn acquire_script(
        &self,
        mode: &str,
        req: &AcquireRequest,
        payload: Vec<u8>,
    ) -> EngineResult<AcquireReply> {
        req.validate()?;
        self.register(&req.pull.repo).await?;
        EngineStats::bump(&self.stats.acquisitions);
        let s = &self.settings;
        let hold = s.hold_timeout(req.priority, req.hold_timeout).as_millis() as u64;
        let mut args: Vec<Vec<u8>> = vec![
            mode.into(),
            req.pull.number.to_string().into(),
            req.user.clone().into(),
            rank(req.priority).to_string().into(),
            s.order_rank(req.priority).to_string().into(),
            hold.to_string().into(),
            (s.queue_timeout.as_millis() as u64).to_string().into(),
            s.max_queue_size.to_string().into(),
            format!("{:e}", s.aging_per_ms()).into(),
            payload,
            req.request_id.clone().unwrap_or_default().into_bytes(),
        ];
        args.extend(req.fields().into_iter().map(String::into_bytes));
        let v = self
            .run(&self.scripts.acquire, &req.pull.repo, args)
            .await?;
        let items = array(&v)?;
        let repo = req.pull.repo.as_str();
        let pull = |t: String| -> EngineResult<Option<PullRef>> {
            if t.is_empty() {
                return Ok(None);
            }
            Ok(Some(PullRef {
                repo: repo.to_owned(),
                number: t.parse().map_err(|_| bad("pull number"))?,
            }))
        };
        match int(at(items, 0)?)? {
            1 => {
                self.deliver(repo, at(items, 4)?)?;
                let mut preempted = Vec::new();
                for pair in array(at(items, 3)?)?.chunks(2) {
                    let [f, p] = pair else {
                        return Err(bad("preempted pair"));
                    };
                    preempted.push(Preempted {
                        key: lock_key(repo, &text(f)?),
                        pull: pull(text(p)?)?.ok_or_else(|| bad("preempted pull"))?,
                    });
                }
                let taken = match items.get(5) {
                    Some(v) => array(v)?
                        .iter()
                        .map(|f| text(f).map(|f| lock_key(repo, &f)))
                        .collect::<Result<_, _>>()?,
                    None => req.locks.clone(),
                };
                Ok(AcquireReply::Granted(Grant {
                    fencing_token: int(at(items, 1)?)? as u64,
                    taken,
                    expires_at: from_unix_ms(int(at(items, 2)?)?),
                    preempted,
                }))
            }
            0 => {
                let mut by = Vec::new();
                for pair in items[1..].chunks(2) {
                    let [f, p] = pair else {
                        return Err(bad("blocker pair"));
                    };
                    by.push(Blocker {
                        key: lock_key(repo, &text(f)?),
                        held_by: pull(text(p)?)?,
                    });
                }
                Ok(AcquireReply::Held(by))
            }
            2 => Ok(AcquireReply::Full(
                lock_key(repo, &text(at(items, 1)?)?).to_string(),
            )),
            3 => {
                let seq = int(at(items, 1)?)? as u64;
                let mut positions = Vec::new();
                for p in array(at(items, 2)?)? {
                    let p = array(p)?;
                    positions.push(QueuePosition {
                        key: lock_key(repo, &text(at(p, 0)?)?),
                        position: int(at(p, 1)?)? as u64,
                        held_by: pull(text(at(p, 2)?)?)?,
                    });
                }
                self.deliver(repo, at(items, 3)?)?;
                Ok(AcquireReply::Queued(Enqueued {
                    waiter_id: WaiterId {
                        repo: repo.to_owned(),
                        seq,
                    },
                    positions,
                }))
            }
            4 => Ok(AcquireReply::Forgotten),
            _ => Err(bad("acquire status")),
        }
    }

    /// Runs the repair script in `mode` and delivers the dispatches it made (reply `{n, ds}`).
    async fn repair(&self, repo: &str, mode: &str, args: Vec<Vec<u8>>) -> EngineResult<i64> {
        let mut all: Vec<Vec<u8>> = vec![mode.into()];
        all.extend(args);
        let v = self.run(&self.scripts.repair, repo, all).await?;
        let items = array(&v)?;
        if let Some(ds) = items.get(1) {
            self.deliver(repo, ds)?;
        }
        int(at(items, 0)?)
    }

    /// Decodes dispatch records and sends them to this replica's dispatcher.
    fn deliver(&self, repo: &str, records: &Value) -> EngineResult<()> {
        for r in array(records)? {
            let d = decode_dispatch(repo, array(r)?)?;
            events::count_dispatch(&self.stats, &d);
            events::dispatched(self.settings.enable_events, &d);
            // A full or dropped receiver leaves the dispatch leased; it is re-offered later.
            let _ = self.tx.try_send(d);
        }
        Ok(())
    }

    /// Sends dispatches whose lease ran out again, without counting them a second time.
    fn reoffer(&self, repo: &str, records: &Value) -> EngineResult<()> {
        for r in array(records)? {
            let d = decode_dispatch(repo, array(r)?)?;
            if self.settings.enable_events {
                tracing::info!(target: TARGET, event = "reoffer", waiter = %d.id, reason = d.reason.as_str(), "dispatch re-offered after its lease ran out");
            }
            let _ = self.tx.try_send(d);
        }
        Ok(())
    }

    async fn after_enqueue(&self, req: &AcquireRequest, q: &Enqueued) -> EngineResult<()> {
        EngineStats::bump(&self.stats.acquisitions_blocked);
        EngineStats::bump(&self.stats.enqueued);
        if self.settings.enable_events {
            tracing::info!(target: TARGET, event = "enqueue", waiter = %q.waiter_id, pull = %req.pull, priority = %req.priority, "waiter queued");
        }
        if self.settings.enable_deadlock_detection {
            self.break_deadlocks(&req.pull.repo).await?;
        }
        Ok(())
    }

    async fn snapshot(&self, repo: &str) -> EngineResult<Snapshot> {
        let v = self.run(&self.scripts.snapshot, repo, Vec::new()).await?;
        Snapshot::decode(repo, &v)
    }

    async fn break_deadlocks(&self, repo: &str) -> EngineResult<Vec<DeadlockRecord>> {
        let snap = self.snapshot(repo).await?;
        let mut graph = snap.wait_graph();
        let mut found = Vec::new();
        while let Some(v) = find_victim(&graph) {
            remove_waiter(&mut graph, v.waiter.seq);
            let id = WaiterId {
                repo: repo.to_owned(),
                seq: v.waiter.seq,
            };
            let record = DeadlockRecord {
                detected_at_ms: snap.now,
                repo: repo.to_owned(),
                cycle: v.cycle,
                victim: id.to_string(),
                victim_pull: v.waiter.pull,
                victim_priority: v.waiter.priority,
            };
            let json = serde_json::to_vec(&record).map_err(|e| bad(&e.to_string()))?;
            // The snapshot may be stale; the script only fails the victim if it is still queued.
            if self.remove(&id, "deadlock", json).await? {
                if self.settings.enable_events {
                    tracing::warn!(target: TARGET, event = "deadlock", repo, cycle = ?record.cycle, victim = %record.victim, "deadlock detected");
                }
                found.push(record);
            }
        }
        Ok(found)
    }

    async fn remove(&self, id: &WaiterId, reason: &str, record: Vec<u8>) -> EngineResult<bool> {
        let args = vec![
            format!("{:012}", id.seq).into_bytes(),
            reason.into(),
            record,
        ];
        let v = self.run(&self.scripts.remove, &id.repo, args).await?;
        let items = array(&v)?;
        let removed = int(at(items, 0)?)? == 1;
        self.deliver(&id.repo, at(items, 1)?)?;
        Ok(removed)
    }

    async fn release_script(&self, repo: &str, args: Vec<Vec<u8>>) -> EngineResult<ReleaseReply> {
        let v = self.run(&self.scripts.release, repo, args).await?;
        let items = array(&v)?;
        let fields =
            |i| -> EngineResult<Vec<String>> { array(at(items, i)?)?.iter().map(text).collect() };
        let reply = ReleaseReply {
            status: int(at(items, 0)?)?,
            holder: opt_int(at(items, 1)?)?,
            released: fields(2)?,
            removed: fields(3)?,
        };
        self.deliver(repo, at(items, 4)?)?;
        EngineStats::add(&self.stats.releases, reply.released.len() as u64);
        if self.settings.enable_events && !reply.released.is_empty() {
            tracing::info!(target: TARGET, event = "release", repo, pull = reply.holder, locks = reply.released.len(), "locks released");
        }
        Ok(reply)
    }
}

struct ReleaseReply {
    status: i64,
    holder: Option<i64>,
    released: Vec<String>,
    removed: Vec<String>,
}

impl LockEngine for RedisEngine {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    fn stats(&self) -> &EngineStats {
        &self.stats
    }

    fn ping(&self) -> BoxFuture<'_, EngineResult<()>> {
        Box::pin(async move {
            self.query(&redis::cmd("PING")).await?;
            Ok(())
        })
    }

    fn acquire(&self, req: AcquireRequest) -> BoxFuture<'_, EngineResult<AcquireOutcome>> {
        Box::pin(async move {
            match self.acquire_script("0", &req, Vec::new()).await? {
                AcquireReply::Granted(g) => {
                    events::granted(self.settings.enable_events, &self.stats, &req, &g);
                    Ok(AcquireOutcome::Granted(g))
                }
                AcquireReply::Held(by) => {
                    EngineStats::bump(&self.stats.acquisitions_blocked);
                    Ok(AcquireOutcome::Held { by })
                }
                _ => Err(bad("acquire queued")),
            }
        })
    }

    fn acquire_or_enqueue(
        &self,
        req: AcquireRequest,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, EngineResult<QueueOutcome>> {
        Box::pin(async move {
            match self.acquire_script("1", &req, payload).await? {
                AcquireReply::Granted(g) => {
                    events::granted(self.settings.enable_events, &self.stats, &req, &g);
                    Ok(QueueOutcome::Granted(g))
                }
                AcquireReply::Queued(q) => {
                    self.after_enqueue(&req, &q).await?;
                    Ok(QueueOutcome::Queued(q))
                }
                AcquireReply::Full(key) => {
                    EngineStats::bump(&self.stats.queue_rejected);
                    Err(EngineError::QueueFull {
                        key,
                        max: self.settings.max_queue_size,
                    })
                }
                AcquireReply::Forgotten => Ok(QueueOutcome::Forgotten),
                AcquireReply::Held(_) => Err(bad("acquire-or-enqueue held")),
            }
        })
    }

    fn enqueue(
        &self,
        req: AcquireRequest,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, EngineResult<Enqueued>> {
        Box::pin(async move {
            match self.acquire_script("2", &req, payload).await? {
                AcquireReply::Queued(q) => {
                    self.after_enqueue(&req, &q).await?;
                    Ok(q)
                }
                AcquireReply::Full(key) => {
                    EngineStats::bump(&self.stats.queue_rejected);
                    Err(EngineError::QueueFull {
                        key,
                        max: self.settings.max_queue_size,
                    })
                }
                _ => Err(bad("enqueue did not queue")),
            }
        })
    }

    fn release(
        &self,
        key: LockKey,
        by: Option<PullRef>,
    ) -> BoxFuture<'_, EngineResult<ReleaseOutcome>> {
        Box::pin(async move {
            let by = by.map(|p| p.number.to_string()).unwrap_or_default();
            let args = vec![
                b"key".to_vec(),
                lock_field(&key).into_bytes(),
                by.into_bytes(),
            ];
            let r = self.release_script(&key.repo, args).await?;
            Ok(match (r.status, r.holder) {
                (1, _) => ReleaseOutcome::Released,
                (-1, Some(n)) => ReleaseOutcome::HeldByOther(PullRef {
                    repo: key.repo.clone(),
                    number: n,
                }),
                _ => ReleaseOutcome::NotHeld,
            })
        })
    }

    fn release_pull(&self, pull: PullRef) -> BoxFuture<'_, EngineResult<ReleaseSummary>> {
        Box::pin(async move {
            let args = vec![b"pull".to_vec(), pull.number.to_string().into_bytes()];
            let r = self.release_script(&pull.repo, args).await?;
            let mut released: Vec<LockKey> =
                r.released.iter().map(|f| lock_key(&pull.repo, f)).collect();
            released.sort();
            Ok(ReleaseSummary {
                released,
                removed_waiters: r
                    .removed
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .map(|seq| WaiterId {
                        repo: pull.repo.clone(),
                        seq,
                    })
                    .collect(),
            })
        })
    }

    fn remove_waiter(&self, id: WaiterId) -> BoxFuture<'_, EngineResult<bool>> {
        Box::pin(async move { self.remove(&id, "removed", Vec::new()).await })
    }

    fn drop_waiter(&self, id: WaiterId) -> BoxFuture<'_, EngineResult<bool>> {
        Box::pin(async move { self.remove(&id, "dropped", Vec::new()).await })
    }

    fn list_locks(&self) -> BoxFuture<'_, EngineResult<Vec<LockInfo>>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for repo in self.repos().await? {
                all.extend(self.snapshot(&repo).await?.locks);
            }
            all.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(all)
        })
    }

    fn list_queues(&self) -> BoxFuture<'_, EngineResult<Vec<QueueInfo>>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for repo in self.repos().await? {
                for (field, waiters) in self.snapshot(&repo).await?.queues {
                    all.push(QueueInfo {
                        key: lock_key(&repo, &field),
                        waiters,
                    });
                }
            }
            all.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(all)
        })
    }

    fn deadlocks(&self) -> BoxFuture<'_, EngineResult<Vec<DeadlockRecord>>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for repo in self.repos().await? {
                let key = format!("{}k", self.base(&repo));
                let v = self
                    .query(redis::cmd("LRANGE").arg(key).arg(0).arg(-1))
                    .await?;
                for item in array(&v)? {
                    let record: DeadlockRecord =
                        serde_json::from_slice(&bytes(item)?).map_err(|e| bad(&e.to_string()))?;
                    all.push(record);
                }
            }
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
            let args = vec![format!("{:012}", id.seq).into_bytes()];
            let v = self.run(&self.scripts.confirm, &id.repo, args).await?;
            if let Some(ds) = array(&v)?.get(1) {
                self.deliver(&id.repo, ds)?;
            }
            Ok(())
        })
    }

    fn admit(&self, dispatch: &Dispatch) -> BoxFuture<'_, EngineResult<Admission>> {
        let id = dispatch.id.clone();
        Box::pin(async move {
            let repo = id.repo.as_str();
            let args = vec![format!("{:012}", id.seq).into_bytes()];
            let v = self.run(&self.scripts.admit, repo, args).await?;
            let items = array(&v)?;
            let pull = |t: String| -> EngineResult<Option<PullRef>> {
                if t.is_empty() {
                    return Ok(None);
                }
                Ok(Some(PullRef {
                    repo: repo.to_owned(),
                    number: t.parse().map_err(|_| bad("pull number"))?,
                }))
            };
            Ok(match text(at(items, 0)?)?.as_str() {
                "done" => Admission::Done,
                "busy" => Admission::Busy,
                "grant" => Admission::Grant {
                    fencing_token: int(at(items, 1)?)? as u64,
                    preempted: decode_preempted(repo, &text(at(items, 2)?)?)?,
                },
                "dropped" => {
                    self.deliver(repo, at(items, 1)?)?;
                    Admission::Dropped
                }
                "requeued" => {
                    self.deliver(repo, at(items, 1)?)?;
                    Admission::Requeued
                }
                "handoff" => {
                    let mut blocked = Vec::new();
                    for pair in array(at(items, 1)?)?.chunks(2) {
                        let [f, p] = pair else {
                            return Err(bad("blocker pair"));
                        };
                        blocked.push(Blocker {
                            key: lock_key(repo, &text(f)?),
                            held_by: pull(text(p)?)?,
                        });
                    }
                    let taken = array(at(items, 2)?)?
                        .iter()
                        .map(|f| text(f).map(|f| lock_key(repo, &f)))
                        .collect::<Result<_, _>>()?;
                    Admission::HandOff {
                        blocked,
                        taken,
                        fencing_token: opt_int(at(items, 3)?)?.map(|t| t as u64),
                    }
                }
                _ => return Err(bad("admit status")),
            })
        })
    }

    fn hand_back(
        &self,
        dispatch: &Dispatch,
        token: Option<u64>,
        atlantis: Vec<(LockKey, PullRef, String)>,
    ) -> BoxFuture<'_, EngineResult<bool>> {
        let id = dispatch.id.clone();
        let hold = self.settings.default_timeout.as_millis() as u64;
        Box::pin(async move {
            let mut args = vec![
                format!("{:012}", id.seq).into_bytes(),
                token
                    .map(|t| t.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
                hold.to_string().into_bytes(),
            ];
            for (k, p, u) in atlantis.into_iter().filter(|(k, _, _)| k.repo == id.repo) {
                args.push(lock_field(&k).into_bytes());
                args.push(p.number.to_string().into_bytes());
                args.push(u.into_bytes());
            }
            Ok(self.repair(&id.repo, "back", args).await? == 1)
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
            let args = vec![
                format!("{:012}", id.seq).into_bytes(),
                token
                    .map(|t| t.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
                (retry_in.as_millis() as u64).to_string().into_bytes(),
            ];
            Ok(self.repair(&id.repo, "defer", args).await? == 1)
        })
    }

    fn release_grant(
        &self,
        pull: PullRef,
        locks: Vec<LockKey>,
        token: u64,
    ) -> BoxFuture<'_, EngineResult<usize>> {
        Box::pin(async move {
            let mut args = vec![
                pull.number.to_string().into_bytes(),
                token.to_string().into_bytes(),
            ];
            args.extend(locks.iter().map(|k| lock_field(k).into_bytes()));
            let n = self.repair(&pull.repo, "grant", args).await?.max(0) as usize;
            EngineStats::add(&self.stats.releases, n as u64);
            Ok(n)
        })
    }

    fn adopt(
        &self,
        key: LockKey,
        holder: PullRef,
        user: String,
        expect: Option<(i64, u64)>,
    ) -> BoxFuture<'_, EngineResult<bool>> {
        let hold = self.settings.default_timeout.as_millis() as u64;
        Box::pin(async move {
            self.register(&key.repo).await?;
            let (ep, et) = expect
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .unwrap_or_default();
            let args = vec![
                lock_field(&key).into_bytes(),
                holder.number.to_string().into_bytes(),
                user.into_bytes(),
                hold.to_string().into_bytes(),
                ep.into_bytes(),
                et.into_bytes(),
            ];
            Ok(self.repair(&key.repo, "adopt", args).await? == 1)
        })
    }

    fn forget(&self, repo: String, request_id: String) -> BoxFuture<'_, EngineResult<bool>> {
        let keep = crate::engine::memory::FORGET_FOR.as_millis() as u64;
        Box::pin(async move {
            let args = vec![request_id.into_bytes(), keep.to_string().into_bytes()];
            Ok(self.repair(&repo, "forget", args).await? == 1)
        })
    }

    fn maintain(&self, cleanup: bool) -> BoxFuture<'_, EngineResult<()>> {
        Box::pin(async move {
            let mut depth = [0i64; 4];
            for repo in self.repos().await? {
                let arg = if cleanup { "1" } else { "0" };
                let v = self
                    .run(&self.scripts.maintain, &repo, vec![arg.into()])
                    .await?;
                let items = array(&v)?;
                for (slot, d) in depth.iter_mut().zip(array(at(items, 0)?)?) {
                    *slot += int(d)?;
                }
                self.deliver(&repo, at(items, 1)?)?;
                self.reoffer(&repo, at(items, 2)?)?;
            }
            self.stats.set_queue_depth(depth);
            Ok(())
        })
    }

    fn check_deadlocks(&self) -> BoxFuture<'_, EngineResult<Vec<DeadlockRecord>>> {
        Box::pin(async move {
            let mut found = Vec::new();
            for repo in self.repos().await? {
                found.extend(self.break_deadlocks(&repo).await?);
            }
            Ok(found)
        })
    }
}
