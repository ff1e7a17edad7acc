//! Issue 14 ("Hardened edges"), the parser, config, secret and log items, against the real
//! binary: what a client on the network or an operator at the command line would notice.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::Method;

use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::http::{get, send};
use crate::support::ports::{free_port, free_ports};
use crate::support::webhooks::github_comment;

const BIN: &str = env!("CARGO_BIN_EXE_atlantis-lock-proxy");
const SECRET: &str = "hook-secret";

fn temp(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "alp-hardening-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The binary serving a config file; stderr (the logs) goes to a file read by [`Binary::logs`].
struct Binary {
    child: std::process::Child,
    port: u16,
    admin_port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Binary {
    async fn start(upstream: &str, yaml: &str, env: &[(&str, &str)]) -> Binary {
        let [port, admin_port] = free_ports::<2>();
        let config = temp("config.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nupstream:\n  url: {upstream}\n\
                 admin:\n  listen: 127.0.0.1:{admin_port}\n{yaml}"
            ),
        )
        .unwrap();
        let log = temp("stderr.log");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let up = eventually(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        let b = Binary {
            child,
            port,
            admin_port,
            config,
            log,
        };
        assert!(up, "the binary did not start: {}", b.logs());
        // Lock traffic once it is ready (briefly: some tests start it where it never is).
        let _ = crate::support::http::wait_ready(b.admin_port, Duration::from_secs(2)).await;
        b
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `check-config` on a file, with extra environment.
fn check_config(yaml: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let path = temp("check.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(&path).arg("check-config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_file(&path);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Item 12: periods of zero and durations that overflow a clock are refused at start.
#[test]
fn durations_out_of_range_are_refused_naming_the_key() {
    for (yaml, key) in [
        (
            "enhanced-locking:\n  timeout-check-interval: 0s\n",
            "enhanced-locking.timeout-check-interval",
        ),
        (
            "enhanced-locking:\n  cleanup-interval: 100000000y\n",
            "enhanced-locking.cleanup-interval",
        ),
        (
            "enhanced-locking:\n  deadlock-check-interval: 100000000y\n",
            "enhanced-locking.deadlock-check-interval",
        ),
        (
            "atlantis:\n  lock-sync-interval: 0s\n",
            "atlantis.lock-sync-interval",
        ),
        (
            "enhanced-locking:\n  queue-timeout: 100000000y\n",
            "enhanced-locking.queue-timeout",
        ),
    ] {
        let (code, text) = check_config(yaml, &[]);
        assert_eq!(code, Some(2), "{yaml}: {text}");
        assert!(text.contains(&format!("`{key}`")), "{yaml}: {text}");
        assert!(!text.contains("panicked"), "{text}");
    }
}

/// Items 14 and 15 at the command line: secrets are never printed, and the environment's text is
/// taken as it is.
#[test]
fn config_errors_never_print_secrets() {
    let cases = [
        ("admin:\n  token: 98765432101\n", "admin.token"),
        (
            "enhanced-locking:\n  redis:\n    password: 1234e5\n",
            "enhanced-locking.redis.password",
        ),
        (
            "upstream:\n  url: http://atlantis:hunter2pw@127.0.0.1:4142\n",
            "upstream.url",
        ),
    ];
    for (yaml, key) in cases {
        let (code, text) = check_config(yaml, &[]);
        assert_eq!(code, Some(2), "{yaml}: {text}");
        assert!(text.contains(&format!("`{key}`")), "{text}");
        for leak in ["98765432101", "1234e5", "123400000", "hunter2pw"] {
            assert!(!text.contains(leak), "{yaml}: {text}");
        }
    }
    let (code, text) = check_config(
        "",
        &[
            ("ALP_REDIS_PASSWORD", "20240101"),
            ("ALP_ADMIN_TOKEN", "1234e5"),
            ("ALP_API_SECRET", "true"),
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    // A Redis URL that does not parse stops the serving binary, and its password is not shown.
    let path = temp("redis-url.yaml");
    let [port, admin] = free_ports::<2>();
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:{port}\nadmin:\n  listen: 127.0.0.1:{admin}\n\
             enhanced-locking:\n  redis:\n    addr: \"redis://:hunter2pw@[::1\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("redis://***@"), "{err}");
    assert!(!err.contains("hunter2pw"), "{err}");
}

/// Items 14 and 15 on the network: the token compare, the scheme, the echo.
#[tokio::test]
async fn the_admin_token_is_a_raw_string_matched_without_echo() {
    let fake = FakeAtlantis::start().await;
    // YAML would read 1234e5 as a float; from the environment it is the token as written.
    let b = Binary::start(&fake.url(), "", &[("ALP_ADMIN_TOKEN", "1234e5")]).await;
    let status = b.admin_url("/admin/status");
    for auth in ["Bearer 1234e5", "bearer 1234e5", "BEARER 1234e5"] {
        let r = send(Method::GET, &status, &[("authorization", auth)], "").await;
        assert_eq!(r.status, 200, "{auth}: {}", r.text());
    }
    let wrong = "Bearer wrong-token-3f9a7c";
    for auth in [wrong, "Bearer 123400000", "Bearer 1234e", "Basic 1234e5"] {
        let r = send(Method::GET, &status, &[("authorization", auth)], "").await;
        assert_eq!(r.status, 401, "{auth}");
        assert!(!r.text().contains("3f9a7c"), "{}", r.text());
    }
    assert!(!b.logs().contains("3f9a7c"), "{}", b.logs());
    assert!(!b.logs().contains("1234e5"), "{}", b.logs());
}

/// Item 16: a name from a comment cannot forge log lines or send terminal escapes. The dir of
/// `atlantis plan -d` ends up in the lock key, which the reconciler logs when Atlantis drops it.
#[tokio::test]
async fn request_fields_are_escaped_in_text_logs() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "atlantis:\n  webhook-secrets:\n    github: {SECRET}\n  lock-sync-interval: 300ms\n  \
         lock-sync-grace: 0s\nenhanced-locking:\n  traffic-split: 100\n  replay-wait: 1s\n\
         telemetry:\n  log-format: text\n  log-level: info\n"
    );
    // The lock is dropped below as soon as it appears; under load that can be before the proxy
    // has seen it in Atlantis, and the reconciler spares an unseen direct grant for up to
    // replay-wait (30 s by default).
    let b = Binary::start(&fake.url(), &yaml, &[]).await;
    let dir = "evil\u{1b}]0;pwned\u{7}\u{202e}";
    let r = github_comment(
        SECRET,
        "acme/infra",
        1,
        "mallory",
        &format!("atlantis plan -d {dir}"),
    )
    .send_to(&b.url("/events"))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(eventually(Duration::from_secs(5), || fake.locks().len() == 1).await);
    let key = fake.locks().keys().next().unwrap().clone();
    assert!(key.contains('\u{1b}'), "{key:?}");
    fake.drop_lock(&key);
    let logged = eventually(Duration::from_secs(10), || {
        b.logs().contains("no longer holds")
    })
    .await;
    let logs = b.logs();
    assert!(logged, "{logs}");
    assert!(
        !logs.contains('\u{1b}') && !logs.contains('\u{7}') && !logs.contains('\u{202e}'),
        "{logs:?}"
    );
    assert!(logs.contains(r"evil\u{1b}]0;pwned\u{7}\u{202e}"), "{logs}");
    // Item 18: /metrics stays open, so it must carry no user input: no label holds the
    // repository, the dir, the user or the key after all of the above.
    let scrape = get(&b.admin_url("/metrics")).await;
    assert_eq!(scrape.status, 200);
    let text = scrape.text();
    assert!(text.contains("atlantis_enhanced_locking"), "{text}");
    for user_input in ["acme", "infra", "evil", "pwned", "mallory"] {
        assert!(
            !text.contains(user_input),
            "{user_input} in /metrics:\n{text}"
        );
    }
}

/// Item 17: a malformed chunked body on a streamed route is the client's fault.
#[tokio::test]
async fn a_malformed_chunked_body_is_a_400_not_an_upstream_error() {
    let fake = FakeAtlantis::start().await;
    let b = Binary::start(&fake.url(), "", &[]).await;
    let port = b.port;
    let head = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"POST /api/locks/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(b"zz-not-a-chunk-size\r\n\r\n").unwrap();
        let mut buf = vec![0; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.contains("x-lock-proxy-error: body-unreadable"),
        "{head}"
    );
    let metrics = get(&b.admin_url("/metrics")).await.text();
    assert!(
        !metrics.lines().any(|l| l
            .starts_with("atlantis_lock_proxy_upstream_duration_seconds_count")
            && l.contains("status_class=\"error\"")),
        "{metrics}"
    );
}

/// Log floods: with Redis unreachable, maintenance fails every tick (every second by default);
/// it is logged once per minute with a count, not once per tick.
#[tokio::test]
async fn an_unreachable_backend_is_logged_once_not_every_tick() {
    let fake = FakeAtlantis::start().await;
    let dead = free_port();
    let yaml = format!(
        "enhanced-locking:\n  backend: redis\n  timeout-check-interval: 200ms\n  redis:\n    \
         addr: 127.0.0.1:{dead}\n    dial-timeout: 100ms\n    read-timeout: 100ms\n"
    );
    let b = Binary::start(&fake.url(), &yaml, &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logs = b.logs();
    let lines = logs.matches("lock engine maintenance failed").count();
    assert_eq!(lines, 1, "{logs}");
}
