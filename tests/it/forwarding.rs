//! The transparent path: what reaches Atlantis is what the client sent.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use tokio_tungstenite::tungstenite::Message;

use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::http::{get, send};
use crate::support::proxy::spawn_proxy;
use crate::support::webhooks::{github_comment, sign};

const SECRET: &str = "webhook-secret";

#[tokio::test]
async fn a_signed_github_comment_arrives_with_identical_bytes_and_headers() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    let hook = github_comment(
        SECRET,
        "acme/infra",
        7,
        "alice",
        "atlantis plan -d net -w prod",
    );
    let reply = send(
        Method::POST,
        &proxy.url("/events"),
        &hook.header_refs(),
        hook.body.clone(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Processing...\n");
    let got = fake.received_at("/events");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, Bytes::from(hook.body.clone()));
    assert_eq!(
        got[0].signature_ok,
        Some(true),
        "Atlantis's HMAC check must pass"
    );
    for (k, v) in &hook.headers {
        assert_eq!(
            got[0].headers.get(k.as_str()).unwrap(),
            v.as_str(),
            "header {k}"
        );
    }
    assert_eq!(got[0].headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got[0].headers["x-forwarded-proto"], "http");
    assert!(got[0].headers.contains_key("x-forwarded-host"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_five_mib_body_streams_through_intact() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    let body: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = send(Method::PUT, &proxy.url("/static/blob"), &[], body.clone()).await;
    assert_eq!(reply.status, 404, "Atlantis's own 404 comes back");
    assert_eq!(reply.text(), "404 page not found\n");
    let got = fake.received_at("/static/blob");
    assert_eq!(got[0].body.len(), body.len());
    assert!(got[0].body == body, "body bytes differ");
    proxy.stop().await;
}

#[tokio::test]
async fn double_encoded_queries_arrive_unchanged() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    let path = "/lock?id=acme%252Finfra%252F.%252Fdefault%252F&x=a+b%2B";
    let reply = get(&proxy.url(path)).await;
    assert_eq!(reply.status, 404);
    assert_eq!(fake.received_at("/lock")[0].uri, path);
    proxy.stop().await;
}

#[tokio::test]
async fn websocket_log_streams_pass_through_both_ways() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    let url = format!("ws://{}/jobs/job-42/ws", proxy.addr);
    let (mut ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade through the proxy");
    assert_eq!(resp.status(), 101);
    let first = ws.next().await.unwrap().unwrap();
    assert_eq!(first, Message::Text("job job-42 log start".into()));
    for i in 0..3 {
        ws.send(Message::Text(format!("line {i}").into()))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Text(format!("line {i}").into())
        );
    }
    ws.send(Message::Binary(vec![0u8, 1, 2, 255].into()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Binary(vec![0u8, 1, 2, 255].into())
    );
    ws.close(None).await.unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn atlantis_down_is_a_marked_502() {
    // A port that was just free: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = spawn_proxy(&format!("http://{dead}"), "").await;
    let reply = get(&proxy.url("/api/locks")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.headers["x-lock-proxy-error"], "upstream-unavailable");
    assert!(
        reply.text().starts_with("atlantis-lock-proxy:"),
        "{}",
        reply.text()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn slow_atlantis_is_a_marked_504_within_the_timeout() {
    let fake = FakeAtlantis::start().await;
    fake.set_delay(Duration::from_secs(5));
    let proxy = spawn_proxy(
        &fake.url(),
        "upstream:\n  url: {upstream}\n  timeout: 300ms\n",
    )
    .await;
    let start = std::time::Instant::now();
    let reply = get(&proxy.url("/api/locks")).await;
    let took = start.elapsed();
    assert_eq!(reply.status, 504);
    assert_eq!(reply.headers["x-lock-proxy-error"], "upstream-timeout");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(
        &fake.url(),
        "server:\n  max-body-size: 64KiB\n  max-lock-body-size: 64KiB\n",
    )
    .await;
    let hook = vec![b'x'; 100 * 1024];
    let sig = sign(SECRET, &hook);
    let headers = [
        ("x-github-event", "issue_comment"),
        ("x-hub-signature-256", sig.as_str()),
    ];
    let reply = send(Method::POST, &proxy.url("/events"), &headers, hook.clone()).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.headers["x-lock-proxy-error"], "body-too-large");
    let reply = send(Method::PUT, &proxy.url("/static/x"), &[], hook).await;
    assert_eq!(reply.status, 413);
    assert!(
        fake.received_at("/events").is_empty() && fake.received_at("/static/x").is_empty(),
        "nothing over the limit reaches Atlantis"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn keep_alive_connections_serve_many_requests() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    for _ in 0..20 {
        assert_eq!(get(&proxy.url("/healthz")).await.status, 200);
    }
    assert_eq!(fake.received_at("/healthz").len(), 20);
    proxy.stop().await;
}

#[tokio::test]
async fn graceful_stop_finishes_the_request_in_flight() {
    let fake = FakeAtlantis::start().await;
    fake.set_delay(Duration::from_millis(500));
    let proxy = spawn_proxy(&fake.url(), "").await;
    let url = proxy.url("/api/locks");
    let inflight = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.stop().await;
    let reply = inflight.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["Locks"], serde_json::Value::Null);
}
