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

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn split_changes_at_runtime_and_rejects_bad_values() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(
        &fake.url(),
        "admin:\n  listen: 127.0.0.1:0\n  token: t\nenhanced-locking:\n  traffic-split: 25\n  monitor-only: true\n",
    )
    .await;
    let auth = bearer("t");
    let h = [("authorization", auth.as_str())];
    let got = send(Method::GET, &proxy.admin_url("/admin/split"), &h, "")
        .await
        .json();
    assert_eq!(got["traffic_split"], 25);
    assert_eq!(got["monitor_only"], true);
    assert_eq!(got["enabled"], true);
    assert_eq!(got["backend"], "memory");
    assert!(got["updated_at"].as_str().unwrap().ends_with('Z'));

    let put = send(
        Method::PUT,
        &proxy.admin_url("/admin/split"),
        &h,
        r#"{"traffic_split": 60}"#,
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["traffic_split"], 60);
    assert_eq!(
        put.json()["monitor_only"],
        true,
        "an omitted field keeps its value"
    );

    for bad in [
        r#"{"traffic_split": 101}"#,
        r#"{"traffic_split": -1}"#,
        r#"{"traffic_split": "ten"}"#,
        r#"{"split": 5}"#,
        "not json",
    ] {
        let r = send(Method::PUT, &proxy.admin_url("/admin/split"), &h, bad).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].as_str().unwrap().len() > 5);
    }
    let unauth = send(
        Method::PUT,
        &proxy.admin_url("/admin/split"),
        &[],
        r#"{"traffic_split": 0}"#,
    )
    .await;
    assert_eq!(unauth.status, 401);

    let rb = send(Method::POST, &proxy.admin_url("/admin/rollback"), &h, "")
        .await
        .json();
    assert_eq!(
        (rb["traffic_split"].as_u64(), rb["monitor_only"].as_bool()),
        (Some(0), Some(false))
    );
    let got = send(Method::GET, &proxy.admin_url("/admin/split"), &h, "")
        .await
        .json();
    assert_eq!(got["traffic_split"], 0);
    proxy.stop().await;
}

#[tokio::test]
async fn the_cli_drives_a_running_proxy() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(
        &fake.url(),
        "admin:\n  listen: 127.0.0.1:0\n  token: cli-token\n",
    )
    .await;
    let url = proxy.admin_url("");
    let bin = env!("CARGO_BIN_EXE_atlantis-lock-proxy");
    let run = |args: Vec<&str>| {
        let url = url.clone();
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        async move {
            tokio::process::Command::new(bin)
                .args(&args)
                .env("ALP_ADMIN_URL", &url)
                .env("ALP_ADMIN_TOKEN", "cli-token")
                .output()
                .await
                .unwrap()
        }
    };
    let out = run(vec!["split", "set", "30"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("traffic split: 30% enhanced"));
    let out = run(vec!["shadow", "on", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["traffic_split"].as_u64(), v["monitor_only"].as_bool()),
        (Some(30), Some(true))
    );
    let out = run(vec!["rollback"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("traffic split: 0% enhanced"));
    let out = tokio::process::Command::new(bin)
        .args(["status"])
        .env("ALP_ADMIN_URL", &url)
        .env("ALP_ADMIN_TOKEN", "wrong")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    proxy.stop().await;
}
