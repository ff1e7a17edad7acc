//! An `Upgrade` header outside Atlantis's websocket route changes nothing.

use std::time::Duration;

use super::raw;
use crate::enhanced::{Backend, REPO, Setup};
use crate::support::webhooks::github_comment;

#[tokio::test]
async fn an_upgrade_header_does_not_bypass_the_signature_check() {
    let s = Setup::start(Backend::Memory, "").await;
    let forged = github_comment("wrong-secret", REPO, 1, "mallory", "atlantis unlock");
    let mut head = format!(
        "POST /events HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n",
        forged.body.len()
    );
    for (k, v) in &forged.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("connection: Upgrade\r\nupgrade: websocket\r\n\r\n");
    let resp = raw::request(s.proxy.addr, &head, &forged.body, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-lock-proxy-error: bad-signature"),
        "{resp}"
    );
    assert!(
        s.fake.received_at("/events").is_empty(),
        "never reached Atlantis"
    );
    s.proxy.stop().await;
}
