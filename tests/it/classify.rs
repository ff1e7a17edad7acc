//! Classification on the real request path: bad signatures stop at the proxy, anything the
//! proxy cannot read still reaches Atlantis unchanged.

use http::Method;

use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::http::send;
use crate::support::proxy::spawn_proxy;
use crate::support::webhooks::github_comment;

const SECRET: &str = "right-secret";

async fn setup() -> (FakeAtlantis, crate::support::proxy::RunningProxy) {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let proxy = spawn_proxy(
        &fake.url(),
        &format!("atlantis:\n  webhook-secrets:\n    github: {SECRET}\n"),
    )
    .await;
    (fake, proxy)
}

#[tokio::test]
async fn a_webhook_signed_with_the_wrong_secret_is_refused_like_atlantis_and_never_forwarded() {
    let (fake, proxy) = setup().await;
    let hook = github_comment(
        "wrong-secret",
        "acme/infra",
        3,
        "mallory",
        "atlantis unlock",
    );
    let reply = hook.send_to(&proxy.url("/events")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.headers["x-lock-proxy-error"], "bad-signature");
    assert!(reply.text().contains("signature"), "{}", reply.text());
    assert!(
        fake.received_at("/events").is_empty(),
        "a forged webhook must not reach Atlantis"
    );

    let good = github_comment(SECRET, "acme/infra", 3, "alice", "atlantis unlock");
    let reply = good.send_to(&proxy.url("/events")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(fake.received_at("/events").len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn an_unparseable_body_is_forwarded_unchanged() {
    let (fake, proxy) = setup().await;
    let garbage = b"{\"action\": \"created\", \"comment\": \x00\xff not json".to_vec();
    let reply = send(
        Method::POST,
        &proxy.url("/api/plan"),
        &[
            ("content-type", "application/json"),
            ("x-atlantis-token", "t"),
        ],
        garbage.clone(),
    )
    .await;
    // Atlantis answers for itself (the fake has no API secret: the API is disabled).
    assert_eq!(reply.status, 400);
    assert!(!reply.headers.contains_key("x-lock-proxy-error"));
    let got = fake.received_at("/api/plan");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_ref(), garbage.as_slice());
    proxy.stop().await;
}
