//! The Redis engine: state in Redis (standalone or Cluster), one Lua script per operation.
//!
//! Every key of a repository shares one hash tag, a digest of its name (see `layout.rs`, and
//! `lua/prelude.lua` for the keys), so each script touches one slot. Scripts read the server clock
//! (`TIME`), so replicas never disagree about expiry. A global set `<prefix>repos` lists the
//! repositories with state so the maintenance pass can visit them. A repository left with nothing
//! is taken off it (so junk names cost no work once idle): the maintenance script prunes it and
//! reports so, the pass removes it from the index and then checks it is still idle, putting it
//! back otherwise; a script that gives an idle repository state again says so (`fresh`) and the
//! caller lists it again after the script. Whatever order those steps interleave in, a repository
//! with state ends up listed.
//!
//! One repository's failure (a script error, bad data) is logged and skipped by the passes over
//! every repository (listings, maintenance, deadlock checks) and is not a backend failure for the
//! breaker; only a backend that does not answer fails them.
//!
//! - Fencing tokens come from one counter per repository (`INCR` in the grant), the only scope a
//!   single-slot script can reach on a Cluster; locks never leave their repository.
//! - Grants, timeouts, removals and expiries are written as dispatch records leased to the replica
//!   whose script produced them; `maintain` re-leases expired ones to whoever runs it.
//! - Deadlock detection reads a snapshot and fails the victim with a script that only acts if the
//!   victim is still queued, so a cycle broken concurrently by a release costs at most one
//!   needless victim, never a lost waiter (the victim is dispatched, not dropped).

pub(crate) mod conn;
pub mod layout;
mod reply;
mod scripts;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;
use redis::{Script, Value};
use tokio::sync::mpsc;

use self::conn::{Backend, failure, op_deadline, safe_to_retry};
use self::layout::{LAYOUT_VERSION, Layout};
use self::reply::{
    Snapshot, array, at, bad, bytes, decode_dispatch, decode_preempted, int, opt_int, stored_pull,
    text,
};
use self::scripts::Scripts;
use super::deadlock::{find_victim, remove_waiter};
use super::events::{self, TARGET};
use super::types::{HandBack, lock_field, lock_key};
use super::{
    AcquireOutcome, AcquireRequest, Admission, Blocker, DeadlockRecord, Dispatch, DispatchReceiver,
    EngineError, EngineResult, EngineSettings, EngineStats, Enqueued, Grant, LockEngine, LockInfo,
    PeerState, Preempted, QueueCap, QueueInfo, QueueOutcome, QueuePosition, RedisSettings,
    ReleaseOutcome, ReleaseSummary, WaiterId, from_unix_ms, rank,
};
use crate::throttle::LogThrottle;
use crate::vocab::{LockKey, PullId, PullRef};

/// The Redis-backed [`LockEngine`].
#[derive(Debug)]
pub struct RedisEngine {
    settings: EngineSettings,
    redis: RedisSettings,
    stats: EngineStats,
    backend: Backend,
    scripts: Scripts,
    layout: Layout,
    /// The keyspace uses digest hash tags (moved from the old layout if needed).
    migrated: AtomicBool,
    /// Stored requests and bytes of all repositories at the last maintenance pass, plus this
    /// replica's enqueues since: the total caps' reference on a Cluster.
    usage_seen: Mutex<(u64, u64)>,
    /// Failures of single repositories in passes over all of them, logged once per interval.
    repo_failures: Mutex<LogThrottle>,
    tx: mpsc::Sender<Dispatch>,
    rx: Mutex<Option<DispatchReceiver>>,
}

/// Decoded acquire script reply.
enum AcquireReply {
    Granted(Grant),
    Held(Vec<Blocker>),
    Full(String),
    Capped(QueueCap),
    Queued(Enqueued),
    Forgotten,
}

impl RedisEngine {
    /// Connects to Redis and loads nothing yet (scripts load on first use).
    pub async fn connect(settings: EngineSettings, redis: RedisSettings) -> EngineResult<Self> {
        let backend = Backend::connect(&redis).await?;
        let (tx, rx) = mpsc::channel(super::DISPATCH_BUFFER);
        let engine = Self {
            settings,
            layout: Layout::new(&redis.key_prefix),
            redis,
            stats: EngineStats::default(),
            backend,
            scripts: Scripts::new(),
            migrated: AtomicBool::new(false),
            usage_seen: Mutex::new((0, 0)),
            repo_failures: Mutex::new(LogThrottle::default()),
            tx,
            rx: Mutex::new(Some(rx)),
        };
        // Best effort: a Redis that is down now is migrated before the first operation instead.
        if let Err(e) = engine.ensure_layout().await {
            tracing::warn!(target: TARGET, error = %e, "redis key layout not checked yet (retried before the first operation)");
        }
        Ok(engine)
    }

    /// A pull as the scripts store and compare it (`PullId::encode`).
    fn stored(&self, pull: PullId) -> String {
        pull.encode(self.settings.unmarked_vcs)
    }

    /// A stored pull of `repo`, `None` when the script gave none (empty text).
    fn pull_of(&self, repo: &str, stored: &str) -> EngineResult<Option<PullRef>> {
        if stored.is_empty() {
            return Ok(None);
        }
        stored_pull(repo, stored, self.settings.unmarked_vcs).map(Some)
    }

    /// The key base of a repository: `<prefix>{<digest>}:`.
    fn base(&self, repo: &str) -> String {
        self.layout.base(repo)
    }

    fn repos_key(&self) -> String {
        self.layout.repos()
    }

    /// Runs a script for one repository with the standard leading arguments.
    async fn run(&self, script: &Script, repo: &str, args: Vec<Vec<u8>>) -> EngineResult<Value> {
        self.ensure_layout().await?;
        let base = self.base(repo);
        let mut inv = script.prepare_invoke();
        inv.key(format!("{base}h"));
        // On one server the scripts keep the global usage too; a Cluster script cannot reach it.
        if !self.redis.cluster_mode {
            inv.key(self.layout.usage());
        }
        inv.arg(base)
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
                    return Err(failure(&e));
                }
                Err(_) => {
                    EngineStats::bump(&self.stats.errors);
                    return Err(EngineError::BackendTimeout);
                }
            }
        }
    }

    /// Runs `members.lua`: `state` is "1" (in step), "0" (out of step) or "" (leaving).
    async fn members(&self, state: &str, forget: std::time::Duration) -> EngineResult<Value> {
        let mut inv = self.scripts.members.prepare_invoke();
        inv.key(self.layout.members())
            .arg(&self.settings.instance_id)
            .arg(state)
            .arg(forget.as_millis() as u64);
        self.bounded(self.backend.invoke(&inv)).await
    }

    async fn query(&self, cmd: &redis::Cmd) -> EngineResult<Value> {
        self.bounded(self.backend.query(cmd)).await
    }

    /// One backend call under the operation deadline; failures are counted.
    async fn bounded(
        &self,
        call: impl std::future::Future<Output = Result<Value, redis::RedisError>>,
    ) -> EngineResult<Value> {
        match tokio::time::timeout(op_deadline(&self.redis), call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                EngineStats::bump(&self.stats.errors);
                Err(failure(&e))
            }
            Err(_) => {
                EngineStats::bump(&self.stats.errors);
                Err(EngineError::BackendTimeout)
            }
        }
    }

    /// Lists the repository in the global index, after a script gave it state while it had
    /// none (`fresh`); idempotent.
    async fn register(&self, repo: &str) -> EngineResult<()> {
        self.query(redis::cmd("SADD").arg(self.repos_key()).arg(repo))
            .await?;
        Ok(())
    }

    /// Takes a pruned repository off the index, then puts it back if a writer gave it state in
    /// between (see the module doc).
    async fn unregister(&self, repo: &str) -> EngineResult<()> {
        self.query(redis::cmd("SREM").arg(self.repos_key()).arg(repo))
            .await?;
        let v = self.run(&self.scripts.idle, repo, Vec::new()).await?;
        if int(at(array(&v)?, 0)?)? == 0 {
            self.register(repo).await?;
        }
        Ok(())
    }

    /// A failure of one repository in a pass over all of them: the pass goes on unless the
    /// backend itself failed.
    fn skip_repo(&self, repo: &str, op: &str, e: EngineError) -> EngineResult<()> {
        if matches!(
            e,
            EngineError::BackendUnavailable(_) | EngineError::BackendTimeout
        ) {
            return Err(e);
        }
        let unlogged = self
            .repo_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failure();
        if let Some(repeated) = unlogged {
            tracing::warn!(target: TARGET, repo, operation = op, error = %e, repeated, "one repository failed; the others go on");
        }
        Ok(())
    }

    /// Moves keys written under the raw-name hash tag to digest tags, once per keyspace and
    /// under a lock, before any script runs (see `layout.rs`).
    async fn ensure_layout(&self) -> EngineResult<()> {
        if self.migrated.load(Ordering::Acquire) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.settings.dispatch_lease;
        loop {
            let v = self
                .query(redis::cmd("GET").arg(self.layout.version()))
                .await?;
            if text(&v)? == LAYOUT_VERSION {
                self.migrated.store(true, Ordering::Release);
                return Ok(());
            }
            let locked = self
                .query(
                    redis::cmd("SET")
                        .arg(self.layout.migration_lock())
                        .arg(&self.settings.instance_id)
                        .arg("NX")
                        .arg("PX")
                        .arg(60_000),
                )
                .await?;
            if locked != Value::Nil {
                let moved = self.migrate_all().await;
                let _ = self
                    .query(redis::cmd("DEL").arg(self.layout.migration_lock()))
                    .await;
                let moved = moved?;
                self.query(
                    redis::cmd("SET")
                        .arg(self.layout.version())
                        .arg(LAYOUT_VERSION),
                )
                .await?;
                if moved > 0 {
                    tracing::info!(target: TARGET, keys = moved, "moved engine keys to digest hash tags");
                }
                self.migrated.store(true, Ordering::Release);
                return Ok(());
            }
            // Another replica is moving the keys: wait for it.
            if tokio::time::Instant::now() > deadline {
                return Err(EngineError::BackendUnavailable(
                    "another replica is still moving engine keys to the new layout".into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Moves every listed repository's old keys; returns how many keys moved.
    async fn migrate_all(&self) -> EngineResult<usize> {
        let mut moved = 0;
        for repo in self.repos().await? {
            moved += self.migrate_repo(&repo).await?;
        }
        Ok(moved)
    }

    async fn migrate_repo(&self, repo: &str) -> EngineResult<usize> {
        let old = self.layout.legacy_base(repo);
        let new = self.base(repo);
        if old == new {
            return Ok(0);
        }
        let mut inv = self.scripts.migrate.prepare_invoke();
        inv.key(format!("{old}h")).arg(&old).arg("export");
        let v = match self.backend.invoke(&inv).await {
            Ok(v) => v,
            // A name whose old tag was empty never had working keys on a Cluster.
            Err(e) => return self.skip_repo(repo, "migrate", failure(&e)).map(|()| 0),
        };
        let items = array(&v)?;
        let mut done = Vec::new();
        for t in items.chunks(3) {
            let [suffix, ttl, dump] = t else {
                return Err(bad("migrate triple"));
            };
            let suffix = bytes(suffix)?;
            let ttl = int(ttl)?;
            if ttl == -2 {
                continue;
            }
            let mut key = new.clone().into_bytes();
            key.extend_from_slice(&suffix);
            let restored = self
                .backend
                .query(
                    redis::cmd("RESTORE")
                        .arg(key)
                        .arg(ttl.max(0))
                        .arg(bytes(dump)?),
                )
                .await;
            match restored {
                Ok(_) => {}
                // The new layout has this key already (written since): it wins.
                Err(e) if e.code() == Some("BUSYKEY") => {}
                Err(e) => return Err(failure(&e)),
            }
            done.push(suffix);
        }
        if !done.is_empty() {
            let mut inv = self.scripts.migrate.prepare_invoke();
            inv.key(format!("{old}h")).arg(&old).arg("drop");
            for s in &done {
                inv.arg(s.as_slice());
            }
            self.backend.invoke(&inv).await.map_err(|e| failure(&e))?;
        }
        Ok(done.len())
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
        EngineStats::bump(&self.stats.acquisitions);
        let s = &self.settings;
        let hold = s.hold_timeout(req.priority, req.hold_timeout).as_millis() as u64;
        let mut args: Vec<Vec<u8>> = vec![
            mode.into(),
            self.stored(req.pull.id()).into(),
            req.user.clone().into(),
            rank(req.priority).to_string().into(),
            s.order_rank(req.priority).to_string().into(),
            hold.to_string().into(),
            (s.queue_timeout.as_millis() as u64).to_string().into(),
            s.max_queue_size.to_string().into(),
            format!("{:e}", s.aging_per_ms()).into(),
        ];
        let size = payload.len() as u64;
        args.push(payload);
        args.push(req.request_id.clone().unwrap_or_default().into_bytes());
        let (seen_n, seen_b) = *self.usage_seen.lock().unwrap_or_else(|e| e.into_inner());
        for n in [
            s.max_waiters_per_repo,
            s.max_queued_bytes_per_repo,
            s.max_waiters_total,
            s.max_queued_bytes_total,
            seen_n,
            seen_b,
        ] {
            args.push(n.to_string().into_bytes());
        }
        args.extend(req.fields().into_iter().map(String::into_bytes));
        let v = self
            .run(&self.scripts.acquire, &req.pull.repo, args)
            .await?;
        let items = array(&v)?;
        let repo = req.pull.repo.as_str();
        let pull = |t: String| self.pull_of(repo, &t);
        let status = int(at(items, 0)?)?;
        // The script gave an idle (unlisted) repository state: list it again.
        let fresh_at = match status {
            1 => Some(6),
            3 => Some(4),
            _ => None,
        };
        if let Some(i) = fresh_at
            && items.get(i).map(int).transpose()? == Some(1)
        {
            self.register(repo).await?;
        }
        if status == 3 {
            let mut seen = self.usage_seen.lock().unwrap_or_else(|e| e.into_inner());
            *seen = (seen.0 + 1, seen.1 + size);
        }
        match status {
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
            5 => {
                let cap = QueueCap::parse(&text(at(items, 1)?)?).ok_or_else(|| bad("cap"))?;
                Ok(AcquireReply::Capped(cap))
            }
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
            let d = decode_dispatch(repo, array(r)?, self.settings.unmarked_vcs)?;
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
            let d = decode_dispatch(repo, array(r)?, self.settings.unmarked_vcs)?;
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

    /// One repository's maintenance; returns its stored requests and bytes (prunes it when
    /// it has nothing left).
    async fn maintain_repo(
        &self,
        repo: &str,
        cleanup: bool,
        depth: &mut [i64; 4],
    ) -> EngineResult<(u64, u64)> {
        let arg = if cleanup { "1" } else { "0" };
        let v = self
            .run(&self.scripts.maintain, repo, vec![arg.into()])
            .await?;
        let items = array(&v)?;
        for (slot, d) in depth.iter_mut().zip(array(at(items, 0)?)?) {
            *slot += int(d)?;
        }
        self.deliver(repo, at(items, 1)?)?;
        self.reoffer(repo, at(items, 2)?)?;
        let usage = array(at(items, 3)?)?;
        let (n, b) = (int(at(usage, 0)?)?.max(0), int(at(usage, 1)?)?.max(0));
        if int(at(items, 4)?)? == 1 {
            self.unregister(repo).await?;
        }
        Ok((n as u64, b as u64))
    }

    async fn snapshot(&self, repo: &str) -> EngineResult<Snapshot> {
        let v = self.run(&self.scripts.snapshot, repo, Vec::new()).await?;
        Snapshot::decode(repo, &v, self.settings.unmarked_vcs)
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
                cycle: v.cycle.iter().map(|p| p.number).collect(),
                victim: id.to_string(),
                victim_pull: v.waiter.pull.number,
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
            holder: self.pull_of(repo, &text(at(items, 1)?)?)?,
            released: fields(2)?,
            removed: fields(3)?,
        };
        self.deliver(repo, at(items, 4)?)?;
        EngineStats::add(&self.stats.releases, reply.released.len() as u64);
        if self.settings.enable_events && !reply.released.is_empty() {
            tracing::info!(target: TARGET, event = "release", repo, pull = reply.holder.as_ref().map(|p| p.number), locks = reply.released.len(), "locks released");
        }
        Ok(reply)
    }
}

impl RedisEngine {
    /// The error of a refused queue place, counted like a full queue.
    fn capped(&self, cap: QueueCap) -> EngineError {
        EngineStats::bump(&self.stats.queue_rejected);
        EngineError::QueueCapped {
            cap,
            max: self.settings.cap(cap),
        }
    }
}

struct ReleaseReply {
    status: i64,
    holder: Option<PullRef>,
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
                AcquireReply::Capped(cap) => Err(self.capped(cap)),
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
                AcquireReply::Capped(cap) => Err(self.capped(cap)),
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
            let by = by.map(|p| self.stored(p.id())).unwrap_or_default();
            let args = vec![
                b"key".to_vec(),
                lock_field(&key).into_bytes(),
                by.into_bytes(),
            ];
            let r = self.release_script(&key.repo, args).await?;
            Ok(match (r.status, r.holder) {
                (1, _) => ReleaseOutcome::Released,
                (-1, Some(holder)) => ReleaseOutcome::HeldByOther(holder),
                _ => ReleaseOutcome::NotHeld,
            })
        })
    }

    fn release_pull_keeping(
        &self,
        pull: PullRef,
        keep: Vec<(LockKey, u64)>,
    ) -> BoxFuture<'_, EngineResult<ReleaseSummary>> {
        Box::pin(async move {
            let mut args = vec![b"pull".to_vec(), self.stored(pull.id()).into_bytes()];
            for (key, token) in &keep {
                args.push(lock_field(key).into_bytes());
                args.push(token.to_string().into_bytes());
            }
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
                match self.snapshot(&repo).await {
                    Ok(snap) => all.extend(snap.locks),
                    Err(e) => self.skip_repo(&repo, "list_locks", e)?,
                }
            }
            all.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(all)
        })
    }

    fn list_queues(&self) -> BoxFuture<'_, EngineResult<Vec<QueueInfo>>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for repo in self.repos().await? {
                let snap = match self.snapshot(&repo).await {
                    Ok(snap) => snap,
                    Err(e) => {
                        self.skip_repo(&repo, "list_queues", e)?;
                        continue;
                    }
                };
                for (field, waiters) in snap.queues {
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
                    match serde_json::from_slice::<DeadlockRecord>(&bytes(item)?) {
                        Ok(record) => all.push(record),
                        Err(e) => self.skip_repo(&repo, "deadlocks", bad(&e.to_string()))?,
                    }
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
            let pull = |t: String| self.pull_of(repo, &t);
            Ok(match text(at(items, 0)?)?.as_str() {
                "done" => Admission::Done,
                "busy" => Admission::Busy,
                "grant" => Admission::Grant {
                    fencing_token: int(at(items, 1)?)? as u64,
                    preempted: decode_preempted(
                        repo,
                        &text(at(items, 2)?)?,
                        self.settings.unmarked_vcs,
                    )?,
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
    ) -> BoxFuture<'_, EngineResult<HandBack>> {
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
                args.push(self.stored(p.id()).into_bytes());
                args.push(u.into_bytes());
            }
            Ok(match self.repair(&id.repo, "back", args).await? {
                1 => HandBack::Requeued,
                2 => HandBack::Dropped,
                _ => HandBack::Gone,
            })
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
                self.stored(pull.id()).into_bytes(),
                token.to_string().into_bytes(),
            ];
            args.extend(locks.iter().map(|k| lock_field(k).into_bytes()));
            let n = self.repair(&pull.repo, "grant", args).await?.max(0) as usize;
            EngineStats::add(&self.stats.releases, n as u64);
            Ok(n)
        })
    }

    fn fence_release(
        &self,
        pull: PullRef,
        hold: std::time::Duration,
        settle: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<std::time::Duration>> {
        Box::pin(async move {
            let args = vec![
                self.stored(pull.id()).into_bytes(),
                (hold.as_millis().max(1) as u64).to_string().into_bytes(),
                (settle.as_millis() as u64).to_string().into_bytes(),
            ];
            let wait = self.repair(&pull.repo, "fence", args).await?.max(0) as u64;
            Ok(std::time::Duration::from_millis(wait))
        })
    }

    fn lift_fence(&self, pull: PullRef) -> BoxFuture<'_, EngineResult<()>> {
        Box::pin(async move {
            let args = vec![self.stored(pull.id()).into_bytes()];
            self.repair(&pull.repo, "lift", args).await?;
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
        let hold = self.settings.default_timeout.as_millis() as u64;
        Box::pin(async move {
            let (ep, et) = expect
                .map(|(p, t)| (self.stored(p), t.to_string()))
                .unwrap_or_default();
            let args = vec![
                lock_field(&key).into_bytes(),
                self.stored(holder.id()).into_bytes(),
                user.into_bytes(),
                hold.to_string().into_bytes(),
                ep.into_bytes(),
                et.into_bytes(),
            ];
            let mut all: Vec<Vec<u8>> = vec![b"adopt".to_vec()];
            all.extend(args);
            let v = self.run(&self.scripts.repair, &key.repo, all).await?;
            let items = array(&v)?;
            if items.get(2).map(int).transpose()? == Some(1) {
                self.register(&key.repo).await?;
            }
            Ok(int(at(items, 0)?)? == 1)
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
            let mut usage = (0u64, 0u64);
            for repo in self.repos().await? {
                match self.maintain_repo(&repo, cleanup, &mut depth).await {
                    Ok((n, b)) => usage = (usage.0 + n, usage.1 + b),
                    Err(e) => self.skip_repo(&repo, "maintain", e)?,
                }
            }
            self.stats.set_queue_depth(depth);
            *self.usage_seen.lock().unwrap_or_else(|e| e.into_inner()) = usage;
            Ok(())
        })
    }

    fn check_deadlocks(&self) -> BoxFuture<'_, EngineResult<Vec<DeadlockRecord>>> {
        Box::pin(async move {
            let mut found = Vec::new();
            for repo in self.repos().await? {
                match self.break_deadlocks(&repo).await {
                    Ok(f) => found.extend(f),
                    Err(e) => self.skip_repo(&repo, "check_deadlocks", e)?,
                }
            }
            Ok(found)
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn heartbeat(
        &self,
        in_step: bool,
        forget: std::time::Duration,
    ) -> BoxFuture<'_, EngineResult<Vec<PeerState>>> {
        Box::pin(async move {
            let v = self
                .members(if in_step { "1" } else { "0" }, forget)
                .await?;
            let items = array(&v)?;
            let mut peers = Vec::new();
            for t in items.get(1..).unwrap_or_default().chunks(3) {
                let [id, state, age] = t else {
                    return Err(bad("member triple"));
                };
                peers.push(PeerState {
                    id: text(id)?,
                    in_step: text(state)? == "u",
                    age: std::time::Duration::from_millis(int(age)?.max(0) as u64),
                });
            }
            Ok(peers)
        })
    }

    fn leave(&self) -> BoxFuture<'_, EngineResult<()>> {
        Box::pin(async move {
            self.members("", std::time::Duration::ZERO).await?;
            Ok(())
        })
    }
}
