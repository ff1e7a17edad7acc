//! Real `redis-server` processes for tests: one standalone server or a 6-node Redis Cluster on
//! free loopback ports, each in its own temporary directory.
//!
//! Every server runs under a small `sh` guard that kills it when our end of its stdin pipe
//! closes, so servers die with the test process even when held in a `static` that never drops.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);
static SHARED_SERVER: OnceLock<RedisServer> = OnceLock::new();
static SHARED_CLUSTER: OnceLock<RedisCluster> = OnceLock::new();

/// One standalone server for the whole test binary (tests keep apart with distinct key prefixes).
/// Synchronous: from async tests call it through `tokio::task::spawn_blocking` the first time.
pub fn shared_server() -> &'static RedisServer {
    SHARED_SERVER.get_or_init(RedisServer::start)
}

/// One 6-node cluster for the whole test binary (started on first use, ~1-2 s).
pub fn shared_cluster() -> &'static RedisCluster {
    SHARED_CLUSTER.get_or_init(RedisCluster::start)
}

/// One `redis-server` child; killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct RedisServer {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The port.
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Child,
    guard: Option<ChildStdin>,
}

impl RedisServer {
    /// Starts a standalone server and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_retrying(false, extra)
    }

    /// Starts a standalone server on a given port (to bring one back after stopping it).
    pub fn start_on(port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let server = Self::spawn(port, &[]);
            if server.wait_ready() {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a cluster-enabled node (not yet part of any cluster).
    pub fn start_cluster_node() -> Self {
        // Cluster nodes also listen on port + 10000 (the bus), so both must be free.
        Self::start_retrying(
            true,
            &["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"],
        )
    }

    /// A free port can be taken by someone else before redis-server binds it; then another
    /// server answers on it, which `is_ours` detects, and we try a new port.
    fn start_retrying(cluster_bus: bool, extra: &[&str]) -> Self {
        for _ in 0..5 {
            let server = Self::spawn(free_port(cluster_bus), extra);
            if server.wait_ready() {
                return server;
            }
        }
        panic!("redis-server did not start on a free loopback port");
    }

    fn spawn(port: u16, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "alp-redis-{}-{}-{port}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let (child, guard) = Self::launch(port, &dir, extra);
        Self {
            addr: format!("127.0.0.1:{port}"),
            port,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child,
            guard,
        }
    }

    /// Stops the server and starts a fresh one (empty: nothing is persisted) on the same port,
    /// as a crash and restart of Redis would look to clients.
    /// Stops the server but keeps its data directory, so [`RedisServer::restart`] brings the
    /// same data back (with persistence on: `--appendonly yes`).
    pub fn stop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            let _ = g.write_all(b"keep\n");
        }
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        drop(self.guard.take());
        let _ = self.child.wait();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let (child, guard) = Self::launch(self.port, &self.dir, &extra);
        self.child = child;
        self.guard = guard;
        assert!(
            self.wait_ready(),
            "redis-server did not restart on {}",
            self.addr
        );
    }

    fn launch(port: u16, dir: &std::path::Path, extra: &[&str]) -> (Child, Option<ChildStdin>) {
        std::fs::create_dir_all(dir).expect("create redis temp dir");
        let port_s = port.to_string();
        let dir_s = dir.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec![
            "--port",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir_s,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new("sh")
            .arg("-c")
            // $1 is the data directory: removed after the server stops, even for servers held
            // in a `static` (no Drop) whose guard sees EOF when the test process exits.
            .arg(r#"d=$1; shift; redis-server "$@" & c=$!; read x; kill $c; wait $c; [ "$x" = keep ] || rm -rf "$d""#)
            .arg("redis-guard")
            .arg(dir)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redis-server (is it installed at /usr/bin?)");
        let guard = child.stdin.take();
        (child, guard)
    }

    /// Waits until our server (not some other process on the port) answers.
    fn wait_ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.command(&["PING"]).is_ok_and(|r| r.contains("PONG")) {
                return self.is_ours();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn is_ours(&self) -> bool {
        let dir = self.command(&["CONFIG", "GET", "dir"]).unwrap_or_default();
        let ours = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        dir.lines().any(|l| std::path::Path::new(l) == ours)
    }

    /// Runs one command over a raw RESP connection and returns the reply as text.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        resp_command(&self.addr, args)
    }

    /// `used_memory` from `INFO memory`.
    pub fn used_memory(&self) -> u64 {
        let info = self.command(&["INFO", "memory"]).expect("INFO memory");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory in INFO")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Closing the guard's stdin makes it kill redis-server and exit.
        drop(self.guard.take());
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 6-node Redis Cluster (3 masters, 3 replicas) on loopback.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes; their `addr`s are the seed list.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six `--cluster-enabled yes` servers, joins them with `redis-cli --cluster create`
    /// and waits until every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..6).map(|_| RedisServer::start_cluster_node()).collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(&n.addr);
        }
        let out = cmd
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in &nodes {
            loop {
                let info = n.command(&["CLUSTER", "INFO"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster did not converge");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { nodes }
    }

    /// Seed addresses for a cluster client.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }
}

/// A loopback port nobody listens on (and, for cluster nodes, whose bus port is free too).
fn free_port(with_bus: bool) -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port pair found");
}

/// Sends one command in RESP and renders the reply as text (arrays joined by newlines).
pub fn resp_command(addr: &str, args: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes())?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader)
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1.min(line.len()));
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(std::io::Error::other(rest.to_owned())),
        "$" => {
            let n: i64 = rest.parse().unwrap_or(-1);
            if n < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().unwrap_or(0);
            let mut parts = Vec::new();
            for _ in 0..n.max(0) {
                parts.push(read_reply(r)?);
            }
            Ok(parts.join("\n"))
        }
        _ => Err(std::io::Error::other(format!("bad RESP line {line:?}"))),
    }
}
