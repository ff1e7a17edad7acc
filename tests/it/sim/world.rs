//! The simulated world: a model Atlantis, one or more proxy replicas, maybe a Redis, and the
//! pulls that act on them; every action is recorded in a trace.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::time::{Duration, Instant};

use http::Method;

use crate::enhanced::{REPO, SECRET};
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::http::{Reply, try_send};
use crate::support::ports::free_ports;
use crate::support::proxy::{RunningProxy, spawn_proxy};
use crate::support::redis::RedisServer;
use crate::support::webhooks::{Webhook, github_comment, github_pull};

/// xorshift64*: small, fast and the same on every machine for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One proxy replica: in-process (memory engine) or a real process (Redis), so a crash is real.
pub enum Replica {
    InProcess(RunningProxy),
    Process {
        child: tokio::process::Child,
        port: u16,
        admin_port: u16,
    },
}

impl Replica {
    fn base(&self) -> String {
        match self {
            Replica::InProcess(p) => format!("http://{}", p.addr),
            Replica::Process { port, .. } => format!("http://127.0.0.1:{port}"),
        }
    }

    fn admin(&self) -> String {
        match self {
            Replica::InProcess(p) => format!("http://{}", p.admin),
            Replica::Process { admin_port, .. } => format!("http://127.0.0.1:{admin_port}"),
        }
    }
}

/// What happened to the requests sent.
#[derive(Default, Debug, Clone)]
pub struct Tally {
    pub sent: usize,
    pub forwarded: usize,
    pub queued: usize,
    pub unanswered: usize,
    pub errors: usize,
    /// Queued commands that reached Atlantis after their pull's close (set by `finish`).
    pub replayed_after_close: Vec<String>,
}

/// A request answered `202 queued`, with when it was queued.
pub struct Queued {
    pub hook: Webhook,
    pub pull: i64,
    pub at: Instant,
}

/// Test settings: short timers so queue timeouts, hold timeouts and reconciler passes happen
/// within a run.
pub fn yaml(redis: Option<&RedisServer>, queue_timeout: &str) -> String {
    let redis = redis
        .map(|r| {
            format!(
                "  redis:\n    addr: {}\n    read-timeout: 300ms\n    write-timeout: 300ms\n    \
                 dial-timeout: 300ms\n    max-retries: 0\n",
                r.addr
            )
        })
        .unwrap_or_default();
    format!(
        "atlantis:\n  webhook-secrets:\n    github: {SECRET}\n  lock-sync-interval: 300ms\n  \
         lock-sync-grace: 1s\nenhanced-locking:\n  traffic-split: 100\n  timeout-check-interval: 50ms\n  \
         replay-wait: 2s\n  retry-base-delay: 20ms\n  dispatch-lease: 1500ms\n  queue-timeout: {queue_timeout}\n  \
         deadlock-check-interval: 300ms\n  circuit-breaker:\n    failure-threshold: 3\n    timeout: 10s\n{redis}"
    )
}

/// The world of one run.
pub struct World {
    pub seed: u64,
    pub fake: FakeAtlantis,
    pub replicas: Vec<Replica>,
    pub redis: Option<RedisServer>,
    pub trace: Vec<String>,
    pub tally: Tally,
    pub queued: Vec<Queued>,
    /// Last time each pull released (unlock or close): its earlier waiters may be dropped.
    pub released_at: HashMap<i64, Instant>,
    /// When the proxy answered each pull's close (it has mirrored the close by then).
    pub closed_at: HashMap<i64, Instant>,
    pub open: Vec<i64>,
    /// When Redis was paused or down (start, end).
    pub outages: Vec<(Instant, Instant)>,
    /// `finish` reports queued commands replayed after their close instead of failing.
    pub report_only: bool,
    next_pull: i64,
    yaml: String,
    start: Instant,
}

impl World {
    pub async fn new(
        seed: u64,
        redis: Option<RedisServer>,
        replicas: usize,
        queue_timeout: &str,
    ) -> Self {
        let fake = FakeAtlantis::start_with(FakeOptions {
            github_secret: Some(SECRET.into()),
            ..Default::default()
        })
        .await;
        // Atlantis acts 2–30 ms after it answered a webhook, in an order the seed decides.
        fake.set_processing(Duration::from_millis(2), Duration::from_millis(28), seed);
        // ...and a plan takes its lock up to 10 ms after checking that its pull is open.
        fake.set_lock_gap(Duration::from_millis(10));
        let yaml = yaml(redis.as_ref(), queue_timeout);
        let mut w = World {
            seed,
            fake,
            replicas: Vec::new(),
            redis,
            trace: Vec::new(),
            tally: Tally::default(),
            queued: Vec::new(),
            released_at: HashMap::new(),
            closed_at: HashMap::new(),
            open: Vec::new(),
            outages: Vec::new(),
            report_only: false,
            next_pull: 1,
            yaml,
            start: Instant::now(),
        };
        for _ in 0..replicas {
            let r = w.start_replica().await;
            w.replicas.push(r);
        }
        w
    }

    async fn start_replica(&self) -> Replica {
        if self.redis.is_none() {
            return Replica::InProcess(spawn_proxy(&self.fake.url(), &self.yaml).await);
        }
        let [port, admin_port] = free_ports::<2>();
        let text = format!(
            "listen: 127.0.0.1:{port}\nupstream:\n  url: {}\nadmin:\n  listen: 127.0.0.1:{admin_port}\n{}",
            self.fake.url(),
            self.yaml
        );
        let path = std::env::temp_dir().join(format!(
            "alp-sim-{}-{}-{port}.yaml",
            std::process::id(),
            self.seed
        ));
        std::fs::write(&path, text).expect("write config");
        // ALP_SIM_LOG=1: each replica logs to $TMPDIR/alp-sim-<seed>-<port>.log.
        let (filter, stderr) = if std::env::var_os("ALP_SIM_LOG").is_some() {
            let log = std::env::temp_dir().join(format!("alp-sim-{}-{port}.log", self.seed));
            let file = std::fs::File::create(&log).expect("replica log");
            ("info", Stdio::from(file))
        } else {
            ("error", Stdio::null())
        };
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_atlantis-lock-proxy"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start the proxy binary");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the proxy binary did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_file(&path);
        // Traffic once the replica is ready (it has read Atlantis's lock table), as behind a
        // load balancer.
        let ready = format!("http://127.0.0.1:{admin_port}/readyz");
        while Instant::now() < deadline {
            let r = try_send(Method::GET, &ready, &[], Vec::new(), Duration::from_secs(2)).await;
            if r.is_ok_and(|r| r.status == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Replica::Process {
            child,
            port,
            admin_port,
        }
    }

    pub fn note(&mut self, what: String) {
        let ms = self.start.elapsed().as_millis();
        self.trace.push(format!("{ms:>6} ms  {what}"));
    }

    /// A pull to act with: an open one, or a new one.
    pub fn pick_pull(&mut self, rng: &mut Rng, max_open: usize) -> i64 {
        if self.open.is_empty() || (self.open.len() < max_open && rng.chance(30)) {
            let p = self.next_pull;
            self.next_pull += 1;
            self.open.push(p);
            return p;
        }
        self.open[rng.below(self.open.len() as u64) as usize]
    }

    async fn send(&mut self, replica: usize, hook: &Webhook) -> Option<Reply> {
        let url = format!("{}/events", self.replicas[replica].base());
        self.tally.sent += 1;
        match try_send(
            Method::POST,
            &url,
            &hook.header_refs(),
            hook.body.clone(),
            Duration::from_secs(20),
        )
        .await
        {
            Ok(r) => {
                if r.status == 202 {
                    self.tally.queued += 1;
                } else if r.status.is_success() {
                    self.tally.forwarded += 1;
                } else {
                    self.tally.errors += 1;
                }
                Some(r)
            }
            Err(e) => {
                self.tally.unanswered += 1;
                self.note(format!("   no answer: {e}"));
                None
            }
        }
    }

    /// A plan comment through `replica`; its answer's status (0: none).
    pub async fn plan(&mut self, replica: usize, pull: i64, dir: &str) -> u16 {
        let hook = github_comment(
            SECRET,
            REPO,
            pull,
            &format!("user{pull}"),
            &format!("atlantis plan -d {dir}"),
        );
        let reply = self.send(replica, &hook).await;
        let status = reply.as_ref().map(|r| r.status.as_u16()).unwrap_or(0);
        self.note(format!("r{replica} plan  #{pull} -d {dir} -> {status}"));
        if status == 202 {
            self.queued.push(Queued {
                hook,
                pull,
                at: Instant::now(),
            });
        }
        status
    }

    pub async fn unlock(&mut self, replica: usize, pull: i64) {
        let hook = github_comment(
            SECRET,
            REPO,
            pull,
            &format!("user{pull}"),
            "atlantis unlock",
        );
        let reply = self.send(replica, &hook).await;
        self.released_at.insert(pull, Instant::now());
        let status = reply.as_ref().map(|r| r.status.as_u16()).unwrap_or(0);
        self.note(format!("r{replica} unlock #{pull} -> {status}"));
    }

    pub async fn close(&mut self, replica: usize, pull: i64) {
        let hook = github_pull(SECRET, REPO, pull, &format!("user{pull}"), "closed");
        let reply = self.send(replica, &hook).await;
        self.released_at.insert(pull, Instant::now());
        if reply.as_ref().is_some_and(|r| r.status.is_success()) {
            self.closed_at.insert(pull, Instant::now());
        }
        self.open.retain(|p| *p != pull);
        let status = reply.as_ref().map(|r| r.status.as_u16()).unwrap_or(0);
        self.note(format!("r{replica} close #{pull} -> {status}"));
    }

    /// Redis stops answering for `ms` (commands wait, then run).
    pub fn pause_redis(&mut self, ms: u64) {
        if let Some(r) = &self.redis {
            let _ = r.command(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"]);
            let now = Instant::now();
            self.outages.push((now, now + Duration::from_millis(ms)));
            self.note(format!("redis paused {ms} ms"));
        }
    }

    /// Redis is killed and restarted (its AOF keeps the state).
    pub async fn restart_redis(&mut self, down: Duration) {
        if let Some(r) = &mut self.redis {
            let down_at = Instant::now();
            r.stop();
            self.note(format!("redis down for {} ms", down.as_millis()));
            tokio::time::sleep(down).await;
            if let Some(r) = &mut self.redis {
                r.restart();
            }
            self.outages.push((down_at, Instant::now()));
            self.note("redis back".into());
        }
    }

    /// Replica `i` is killed (`kill -9`) and a new one takes its place.
    pub async fn crash_replica(&mut self, i: usize) {
        if let Replica::Process { child, .. } = &mut self.replicas[i] {
            let _ = child.kill().await;
            self.note(format!("replica r{i} killed"));
            let r = self.start_replica().await;
            self.replicas[i] = r;
            self.note(format!("replica r{i} replaced"));
        }
    }

    /// Fails the run with its trace when an admitted request met another pull's lock.
    pub fn check_no_conflict(&self) {
        let conflicts = self.fake.conflicts();
        if !conflicts.is_empty() {
            self.fail(&format!(
                "admitted requests met another pull's lock: {conflicts:?}"
            ));
        }
    }

    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "seed {} failed: {why}\nreplay: ALP_SIM_SEED={} cargo test --test it sim::\ntrace:\n{}",
            self.seed,
            self.seed,
            self.trace.join("\n")
        );
    }

    async fn engine_state(&self) -> Option<(BTreeMap<String, i64>, usize)> {
        let admin = self.replicas.first()?.admin();
        let get = |path: &'static str| {
            let url = format!("{admin}{path}");
            async move {
                try_send(Method::GET, &url, &[], Vec::new(), Duration::from_secs(5))
                    .await
                    .ok()
                    .filter(|r| r.status == 200)
                    .map(|r| r.json())
            }
        };
        let locks = get("/admin/locks").await?;
        let queues = get("/admin/queues").await?;
        let held = locks["locks"]
            .as_array()?
            .iter()
            .filter_map(|l| Some((l["key"].as_str()?.to_owned(), l["pull"].as_i64()?)))
            .collect();
        let waiting = queues["queues"]
            .as_array()?
            .iter()
            .map(|q| q["waiters"].as_array().map_or(0, Vec::len))
            .sum();
        Some((held, waiting))
    }

    fn atlantis_state(&self) -> BTreeMap<String, i64> {
        self.fake
            .locks()
            .into_iter()
            .map(|(k, l)| (k, l.pull))
            .collect()
    }

    /// Waits until the engine and Atlantis agree on every holder and nothing is queued.
    pub async fn settle(&self, within: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < within {
            if let Some((engine, waiting)) = self.engine_state().await {
                let atlantis = self.atlantis_state();
                if engine == atlantis && waiting == 0 {
                    return Ok(start.elapsed());
                }
                last = format!("engine {engine:?}, Atlantis {atlantis:?}, {waiting} waiting");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last)
    }

    /// Queued requests that reached Atlantis after the proxy had answered their pull's close
    /// (a replay racing the close itself is the user's own race, as without the proxy). A close
    /// answered while Redis was unreachable (or within a second after: its engine call timed
    /// out) is exempt: the replica that took it mirrors it on its next reconciler pass, and
    /// another replica may replay the pull's queued command before that (README, Guarantees).
    pub fn replayed_after_close(&self) -> Vec<String> {
        let received = self.fake.received_at("/events");
        self.queued
            .iter()
            .filter_map(|q| Some((q, *self.closed_at.get(&q.pull)?)))
            .filter(|(_, closed)| {
                !self.outages.iter().any(|(from, to)| {
                    *closed + Duration::from_secs(1) >= *from
                        && *closed <= *to + Duration::from_secs(1)
                })
            })
            .filter_map(|(q, closed)| {
                let r = received
                    .iter()
                    .find(|r| r.body.as_ref() == q.hook.body.as_slice() && r.at > closed)?;
                Some(format!(
                    "#{} queued at {} ms, received {} ms after its close",
                    q.pull,
                    q.at.duration_since(self.start).as_millis(),
                    r.at.duration_since(closed).as_millis()
                ))
            })
            .collect()
    }

    /// Queued requests of pulls that never released after queueing and never reached Atlantis.
    pub fn lost(&self) -> Vec<i64> {
        let arrived: std::collections::HashSet<Vec<u8>> = self
            .fake
            .received_at("/events")
            .into_iter()
            .map(|r| r.body.to_vec())
            .collect();
        self.queued
            .iter()
            .filter(|q| {
                let released = self.released_at.get(&q.pull).is_some_and(|t| *t >= q.at);
                !released && !arrived.contains(&q.hook.body)
            })
            .map(|q| q.pull)
            .collect()
    }

    /// Closes every open pull, waits for everything to settle, and checks the end state.
    pub async fn finish(mut self, within: Duration) -> (Tally, Duration) {
        self.check_no_conflict();
        // First every queued request of a still-open pull is served (granted or handed off).
        let drained = Instant::now();
        let mut lost = self.lost();
        while !lost.is_empty() && drained.elapsed() < within {
            tokio::time::sleep(Duration::from_millis(100)).await;
            lost = self.lost();
        }
        if !lost.is_empty() {
            let engine = self.engine_state().await;
            let admin = self.replicas[0].admin();
            let queues = try_send(
                Method::GET,
                &format!("{admin}/admin/queues"),
                &[],
                Vec::new(),
                Duration::from_secs(5),
            )
            .await
            .map(|r| r.text())
            .unwrap_or_default();
            self.fail(&format!(
                "queued requests never served, of pulls {lost:?}; engine {engine:?}, queues {queues}, Atlantis {:?}",
                self.atlantis_state()
            ));
        }
        let open = self.open.clone();
        for p in open {
            self.close(0, p).await;
        }
        let settled = match self.settle(within).await {
            Ok(d) => d,
            Err(state) => self.fail(&format!("engine and Atlantis never agreed: {state}")),
        };
        self.check_no_conflict();
        let replayed_closed = self.replayed_after_close();
        if !replayed_closed.is_empty() && !self.report_only {
            self.fail(&format!(
                "{} queued commands replayed on closed pulls: {replayed_closed:?}",
                replayed_closed.len()
            ));
        }
        self.tally.replayed_after_close = replayed_closed;
        if self.tally.unanswered > 0 || self.tally.errors > 0 {
            self.fail(&format!("requests not answered 200/202: {:?}", self.tally));
        }
        let tally = self.tally.clone();
        for r in self.replicas.drain(..) {
            match r {
                Replica::InProcess(p) => p.stop().await,
                Replica::Process { mut child, .. } => {
                    let _ = child.kill().await;
                }
            }
        }
        (tally, settled)
    }
}
