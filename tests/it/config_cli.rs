//! The binary's configuration handling: each class of mistake names its key and exits non-zero
//! before binding anything.

use std::io::Write;
use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atlantis-lock-proxy"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

fn with_file(yaml: &str, args: &[&str]) -> Output {
    let mut f = tempfile();
    f.1.write_all(yaml.as_bytes()).unwrap();
    let path = f.0.to_str().unwrap().to_string();
    let mut all = vec!["--config", path.as_str()];
    all.extend_from_slice(args);
    let out = run(&all, &[]);
    let _ = std::fs::remove_file(&f.0);
    out
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!(
        "alp-config-{}-{}.yaml",
        std::process::id(),
        rand_suffix()
    ));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn assert_rejected(out: &Output, key: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains(&format!("`{key}`")),
        "message must name `{key}`: {err}"
    );
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/atlantis-lock-proxy.example.yaml"
    );
    let out = run(
        &["--config", example, "check-config"],
        &[
            ("ALP_ADMIN_TOKEN", "x"),
            ("REDIS_PASSWORD", "p"),
            ("GITHUB_WEBHOOK_SECRET", "s"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
}

#[test]
fn unknown_key_is_named() {
    let out = with_file("enhanced-locking:\n  trafic-split: 10\n", &["check-config"]);
    assert_rejected(&out, "enhanced-locking.trafic-split");
    assert!(String::from_utf8_lossy(&out.stderr).contains("trafic-split"));
}

#[test]
fn bad_duration_is_named() {
    let out = with_file(
        "enhanced-locking:\n  queue-timeout: ten minutes\n",
        &["check-config"],
    );
    assert_rejected(&out, "enhanced-locking.queue-timeout");
}

#[test]
fn bad_url_is_named() {
    let out = run(&["--upstream", "atlantis:4141", "check-config"], &[]);
    assert_rejected(&out, "upstream.url");
}

#[test]
fn port_clash_fails_before_binding() {
    // `serve` (the default) fails at validation, so it exits instead of listening.
    let out = run(
        &[
            "--listen",
            "0.0.0.0:7777",
            "--admin-listen",
            "127.0.0.1:7777",
        ],
        &[],
    );
    assert_rejected(&out, "admin.listen");
}

#[test]
fn public_admin_without_token_is_refused() {
    let out = run(&["--admin-listen", "0.0.0.0:9464", "check-config"], &[]);
    assert_rejected(&out, "admin.token");
}

#[test]
fn environment_overrides_are_validated_too() {
    let out = run(
        &["check-config"],
        &[("ALP_ENHANCED_LOCKING__TRAFFIC_SPLIT", "150")],
    );
    assert_rejected(&out, "enhanced-locking.traffic-split");
    let out = run(&["check-config"], &[("ALP_TRAFFIC_SPLIT", "25")]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("traffic-split 25%"));
}

#[test]
fn a_bad_github_app_key_is_named_and_never_printed() {
    let garbled = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecretsecretsecret\n-----END RSA PRIVATE KEY-----\n";
    let out = run(
        &["check-config"],
        &[
            ("ATLANTIS_GH_APP_ID", "4242"),
            ("ATLANTIS_GH_APP_KEY", garbled),
        ],
    );
    assert_rejected(&out, "environment ATLANTIS_GH_APP_KEY");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("`gh-app-key`"), "{all}");
    assert!(!all.contains("secretsecret"), "{all}");
}

#[test]
fn check_config_says_the_github_app_is_used() {
    let key = crate::support::app_key::app_key();
    let out = run(
        &["check-config"],
        &[
            ("ATLANTIS_GH_APP_ID", "4242"),
            ("ATLANTIS_GH_APP_KEY", &key.private_pem),
            ("ATLANTIS_GH_APP_INSTALLATION_ID", "77"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "announced on pulls of GitHub (as GitHub App 4242 from environment ATLANTIS_GH_APP_ID"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "authenticate as GitHub App 4242 with an installation token (installation 77)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("gh-app-key"), "{stdout}");
    let body_line = key.private_pem.lines().nth(1).unwrap();
    assert!(!stdout.contains(body_line), "{stdout}");
}
