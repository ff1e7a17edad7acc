//! Only authenticated traffic of VCSs the proxy gates reaches the engine.

use http::Method;
use serde_json::json;

use crate::enhanced::{Backend, REPO, Setup, key};
use crate::support::http::{get, send};

/// An unsigned GitLab webhook naming `REPO` (the same name as the GitHub repository).
async fn gitlab(s: &Setup, event: &str, body: serde_json::Value) -> crate::support::http::Reply {
    send(
        Method::POST,
        &s.proxy.url("/events"),
        &[
            ("content-type", "application/json"),
            ("x-gitlab-event", event),
        ],
        body.to_string(),
    )
    .await
}

fn project() -> serde_json::Value {
    json!({"path_with_namespace": REPO, "git_http_url": format!("https://gitlab.com/{REPO}.git")})
}

fn mr_close(iid: i64) -> serde_json::Value {
    json!({"object_kind": "merge_request", "user": {"username": "mallory"}, "project": project(),
        "object_attributes": {"iid": iid, "action": "close", "source": project(),
            "target_branch": "main", "source_branch": "x", "last_commit": {"id": "abc"}}})
}

fn note_plan(iid: i64, dir: &str) -> serde_json::Value {
    json!({"object_kind": "note", "user": {"username": "mallory"}, "project": project(),
        "object_attributes": {"noteable_type": "MergeRequest", "note": format!("atlantis plan -d {dir}")},
        "merge_request": {"iid": iid, "state": "opened", "source": project(),
            "labels": [{"title": "atlantis/priority:critical"}]}})
}

#[tokio::test]
async fn unsigned_webhooks_of_a_vcs_without_a_secret_never_move_a_lock() {
    // Only the GitHub secret is configured (the usual deployment).
    let s = Setup::start(Backend::Memory, "").await;
    let (_, reply) = s.plan(1, "net", "default").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(s.engine_holder(&key("net", "default")).await, Some(1));

    // An unsigned GitLab close naming MR 1 is forwarded, and pull 1 keeps its lock.
    let reply = gitlab(&s, "Merge Request Hook", mr_close(1)).await;
    assert!(!reply.headers.contains_key("x-lock-proxy"), "{reply:?}");
    assert_eq!(
        s.fake.received_at("/events").len(),
        2,
        "forwarded to Atlantis"
    );
    assert_eq!(s.engine_holder(&key("net", "default")).await, Some(1));

    // An unsigned GitLab `atlantis plan` takes no lock and is not queued.
    let reply = gitlab(&s, "Note Hook", note_plan(2, "dns")).await;
    assert_ne!(reply.status, 202);
    assert!(!reply.headers.contains_key("x-lock-proxy"), "{reply:?}");
    assert_eq!(s.engine_holder(&key("dns", "default")).await, None);
    let reply = gitlab(&s, "Note Hook", note_plan(2, "net")).await;
    assert_ne!(reply.status, 202, "never queued behind pull 1");

    let status = get(&s.proxy.admin_url("/admin/status")).await.json();
    assert_eq!(status["unsigned_webhooks_gated"], json!([]));
    s.proxy.stop().await;
}

#[tokio::test]
async fn an_explicit_allowance_gates_unsigned_webhooks_and_says_so() {
    let s = Setup::start_with(Backend::Memory, "", "  allow-unsigned-webhooks: [gitlab]\n").await;
    let status = get(&s.proxy.admin_url("/admin/status")).await.json();
    assert_eq!(status["unsigned_webhooks_gated"], json!(["gitlab"]));
    let reply = gitlab(&s, "Note Hook", note_plan(2, "dns")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(s.engine_holder(&key("dns", "default")).await, Some(2));
    s.proxy.stop().await;
}

async fn api_plan(s: &Setup, token: &str, pull: i64) -> crate::support::http::Reply {
    let body = format!(
        r#"{{"Repository":"{REPO}","Ref":"main","Type":"Github","PR":{pull},"Paths":[{{"Directory":"net","Workspace":"default"}}]}}"#
    );
    let url = s.proxy.url("/api/plan");
    let headers = [
        ("x-atlantis-token", token),
        ("content-type", "application/json"),
    ];
    let call = send(Method::POST, &url, &headers, body);
    // Never held open: the answer comes at once although pull 1 holds the lock.
    tokio::time::timeout(std::time::Duration::from_secs(3), call)
        .await
        .expect("an ungated API call is answered at once")
}

#[tokio::test]
async fn api_calls_are_gated_only_with_the_api_secret_and_the_right_token() {
    // The proxy does not know Atlantis's API secret: every call is Atlantis's to answer.
    let fake = crate::support::fake_atlantis::FakeAtlantis::start_with(
        crate::support::fake_atlantis::FakeOptions {
            github_secret: Some(crate::enhanced::SECRET.into()),
            api_secret: Some("api".into()),
            ..Default::default()
        },
    )
    .await;
    let yaml = crate::enhanced::base_yaml(None, "", "");
    let proxy = crate::support::proxy::spawn_proxy(&fake.url(), &yaml).await;
    let s = Setup {
        fake,
        proxy,
        _redis: None,
    };
    let (_, reply) = s.plan(1, "net", "default").await;
    assert_eq!(reply.status, 200);
    let reply = api_plan(&s, "guess", 2).await;
    assert_eq!(reply.status, 401, "Atlantis refuses it: {}", reply.text());
    assert!(!reply.headers.contains_key("x-lock-proxy-error"));
    assert_eq!(s.engine_holder(&key("net", "default")).await, Some(1));
    assert!(s.queue(&key("net", "default")).await.is_empty());
    s.proxy.stop().await;

    // With the secret, a wrong token still passes through at once.
    let yaml = crate::enhanced::base_yaml(None, "", "  api-secret: api\n");
    let proxy = crate::support::proxy::spawn_proxy(&s.fake.url(), &yaml).await;
    let s = Setup { proxy, ..s };
    // The new replica adopted #1's lock from Atlantis at start: #1 plans again.
    let (_, reply) = s.plan(1, "net", "default").await;
    assert_eq!(reply.status, 200);
    let reply = api_plan(&s, "guess", 2).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(s.queue(&key("net", "default")).await.is_empty());
    s.proxy.stop().await;
}
