//! RSA keys for GitHub App tests, made at test time with `openssl` (no private key is committed):
//! PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`), the form GitHub hands out, and its public half.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A private key (PEM) and its public key (SPKI PEM).
pub struct AppKey {
    pub private_pem: String,
    pub public_pem: String,
}

impl AppKey {
    /// The same key as PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub fn pkcs8_pem(&self) -> String {
        openssl(&["pkcs8", "-topk8", "-nocrypt"], Some(&self.private_pem))
    }
}

fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed to make test keys (Debian package `openssl`)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn generate() -> AppKey {
    let private_pem = openssl(&["genrsa", "-traditional", "2048"], None);
    assert!(private_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let public_pem = openssl(&["rsa", "-pubout"], Some(&private_pem));
    AppKey {
        private_pem,
        public_pem,
    }
}

/// The app's key (one per test run).
pub fn app_key() -> &'static AppKey {
    static KEY: OnceLock<AppKey> = OnceLock::new();
    KEY.get_or_init(generate)
}

/// Another valid key, not the app's.
pub fn other_key() -> &'static AppKey {
    static KEY: OnceLock<AppKey> = OnceLock::new();
    KEY.get_or_init(generate)
}
