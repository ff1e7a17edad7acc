//! The admin listener: probes, metrics, token.

use http::Method;

use crate::support::fake_atlantis::FakeAtlantis;
use crate::support::http::{get, send};
use crate::support::proxy::spawn_proxy;

#[tokio::test]
async fn healthz_is_up_and_readyz_follows_atlantis() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    assert_eq!(get(&proxy.admin_url("/healthz")).await.status, 200);
    let ready = get(&proxy.admin_url("/readyz")).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["checks"]["atlantis"], "ok");
    proxy.stop().await;

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = spawn_proxy(&format!("http://{dead}"), "").await;
    let ready = get(&proxy.admin_url("/readyz")).await;
    assert_eq!(ready.status, 503);
    assert_ne!(ready.json()["checks"]["atlantis"], "ok");
    proxy.stop().await;
}

#[tokio::test]
async fn admin_routes_need_the_bearer_token() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(
        &fake.url(),
        "admin:\n  listen: 127.0.0.1:0\n  token: t0ken\n",
    )
    .await;
    for path in ["/admin/status", "/admin/split", "/admin/anything"] {
        let r = get(&proxy.admin_url(path)).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["error"], "missing or invalid bearer token");
        let r = send(
            Method::GET,
            &proxy.admin_url(path),
            &[("authorization", "Bearer wrong")],
            "",
        )
        .await;
        assert_eq!(r.status, 401, "{path}");
    }
    let r = send(
        Method::GET,
        &proxy.admin_url("/admin/status"),
        &[("authorization", "Bearer t0ken")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["backend"], "memory");
    // Probes stay open for load balancers and kubelets.
    assert_eq!(get(&proxy.admin_url("/healthz")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_and_upstream_latency_by_status_class() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    for _ in 0..3 {
        get(&proxy.url("/api/locks")).await;
    }
    get(&proxy.url("/nope")).await;
    let text = get(&proxy.admin_url("/metrics")).await.text();
    assert!(
        text.contains(r#"atlantis_lock_proxy_requests_total{route="api_locks",engine="legacy",outcome="2xx"} 3"#),
        "{text}"
    );
    assert!(text.contains(
        r#"atlantis_lock_proxy_requests_total{route="other",engine="legacy",outcome="4xx"} 1"#
    ));
    assert!(
        text.contains(
            r#"atlantis_lock_proxy_upstream_duration_seconds_count{status_class="2xx"} 3"#
        ),
        "{text}"
    );
    proxy.stop().await;
}
