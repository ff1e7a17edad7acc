//! The per-IP limit behind an Ingress: `X-Forwarded-For` counts only from trusted peers.

use crate::enhanced::{REPO, SECRET, Setup, base_yaml};
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::http::{Reply, send};
use crate::support::proxy::spawn_proxy;
use crate::support::webhooks::github_comment;

async fn start(server_extra: &str) -> Setup {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "{}server:\n  rate-limit:\n    per-ip: 1/h burst 1\n{server_extra}",
        base_yaml(None, "", "")
    );
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    Setup {
        fake,
        proxy,
        _redis: None,
    }
}

/// A signed `atlantis plan` from pull `pull`, as forwarded by a load balancer for `client`.
async fn plan_from(s: &Setup, pull: i64, client: &str) -> Reply {
    let hook = github_comment(
        SECRET,
        REPO,
        pull,
        "alice",
        &format!("atlantis plan -d d{pull}"),
    );
    let mut headers = hook.header_refs();
    headers.push(("x-forwarded-for", client));
    send(
        http::Method::POST,
        &s.proxy.url("/events"),
        &headers,
        hook.body.clone(),
    )
    .await
}

#[tokio::test]
async fn behind_a_trusted_ingress_each_client_has_its_own_bucket() {
    let s = start("  trusted-proxies: [127.0.0.0/8]\n").await;
    assert_eq!(plan_from(&s, 1, "203.0.113.1").await.status, 200);
    assert_eq!(
        plan_from(&s, 2, "203.0.113.2").await.status,
        200,
        "another client"
    );
    let third = plan_from(&s, 3, "203.0.113.1").await;
    assert_eq!(third.status, 429, "the first client again");
    // A spoofed entry left of the Ingress's own does not give a fresh bucket.
    assert_eq!(
        plan_from(&s, 4, "198.51.100.7, 203.0.113.2").await.status,
        429
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_bucket_by_header() {
    let s = start("").await;
    assert_eq!(plan_from(&s, 1, "203.0.113.1").await.status, 200);
    assert_eq!(plan_from(&s, 2, "203.0.113.2").await.status, 429);
    s.proxy.stop().await;
}
