//! Secrets at rest (issue 14, item 13): a queued GitLab webhook is stored in Redis without its
//! `X-Gitlab-Token`, and its replay carries the token again, so Atlantis accepts it.

use std::time::Duration;

use base64::Engine as _;
use http::Method;
use serde_json::json;

use super::{SECRET, base_yaml};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::http::{Reply, send};
use crate::support::proxy::spawn_proxy;
use crate::support::redis::RedisServer;

const GL_SECRET: &str = "gl-webhook-s3cret-7f2a";
const GL_REPO: &str = "acme/gl-infra";

fn project() -> serde_json::Value {
    json!({"path_with_namespace": GL_REPO, "git_http_url": format!("https://gitlab.com/{GL_REPO}.git")})
}

fn note_plan(iid: i64, dir: &str) -> String {
    json!({"object_kind": "note", "user": {"username": format!("dev{iid}")}, "project": project(),
        "object_attributes": {"noteable_type": "MergeRequest", "note": format!("atlantis plan -d {dir}")},
        "merge_request": {"iid": iid, "state": "opened", "source": project()}})
    .to_string()
}

fn mr_close(iid: i64) -> String {
    json!({"object_kind": "merge_request", "user": {"username": format!("dev{iid}")}, "project": project(),
        "object_attributes": {"iid": iid, "action": "close", "source": project(),
            "target_branch": "main", "source_branch": "x", "last_commit": {"id": "abc"}}})
    .to_string()
}

async fn gitlab(url: &str, event: &str, body: &str) -> Reply {
    send(
        Method::POST,
        url,
        &[
            ("content-type", "application/json"),
            ("x-gitlab-event", event),
            ("x-gitlab-token", GL_SECRET),
        ],
        body.to_owned(),
    )
    .await
}

/// Everything the proxy's keys hold, read with plain Redis commands.
fn dump(redis: &RedisServer) -> String {
    let mut all = String::new();
    let keys = redis.command(&["KEYS", "*"]).expect("KEYS");
    for k in keys.lines().filter(|k| !k.is_empty()) {
        let kind = redis.command(&["TYPE", k]).expect("TYPE");
        let v = match kind.as_str() {
            "hash" => redis.command(&["HGETALL", k]),
            "string" => redis.command(&["GET", k]),
            "zset" => redis.command(&["ZRANGE", k, "0", "-1"]),
            "set" => redis.command(&["SMEMBERS", k]),
            "list" => redis.command(&["LRANGE", k, "0", "-1"]),
            _ => Ok(String::new()),
        }
        .expect("read key");
        all.push_str(&format!("{k} {v}\n"));
    }
    all
}

#[tokio::test]
async fn a_queued_gitlab_webhook_keeps_no_token_in_redis_and_its_replay_carries_it() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        gitlab_secret: Some(GL_SECRET.into()),
        ..Default::default()
    })
    .await;
    let redis = RedisServer::start();
    let yaml = base_yaml(Some(&redis), "", "").replace(
        &format!("    github: {SECRET}\n"),
        &format!("    github: {SECRET}\n    gitlab: {GL_SECRET}\n"),
    );
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    let events = proxy.url("/events");
    let holder = |fake: &FakeAtlantis| {
        fake.locks()
            .get(&format!("{GL_REPO}/net/default/"))
            .map(|l| l.pull)
    };

    let r1 = gitlab(&events, "Note Hook", &note_plan(1, "net")).await;
    assert_eq!(r1.status, 200, "{}", r1.text());
    assert!(eventually(Duration::from_secs(10), || holder(&fake) == Some(1)).await);
    let plan2 = note_plan(2, "net");
    let r2 = gitlab(&events, "Note Hook", &plan2).await;
    assert_eq!(r2.status, 202, "MR 2 queues behind MR 1: {}", r2.text());

    let stored = dump(&redis);
    assert!(
        stored.contains("x-gitlab-event"),
        "the queued request is in Redis: {stored}"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(GL_SECRET);
    assert!(
        !stored.contains(GL_SECRET) && !stored.contains(&b64),
        "the GitLab webhook secret is stored in Redis: {stored}"
    );
    assert!(
        stored.contains("atlantis.webhook-secrets.gitlab"),
        "the stored request names the secret it needs: {stored}"
    );

    let closed = gitlab(&events, "Merge Request Hook", &mr_close(1)).await;
    assert_eq!(closed.status, 200, "{}", closed.text());
    let replayed = || {
        fake.received_at("/events")
            .into_iter()
            .filter(|r| r.body.as_ref() == plan2.as_bytes())
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(10), || replayed().len() == 1).await,
        "MR 2's plan is replayed after MR 1 closed"
    );
    let replay = &replayed()[0];
    assert_eq!(replay.headers["x-gitlab-token"], GL_SECRET);
    assert!(
        eventually(Duration::from_secs(10), || holder(&fake) == Some(2)).await,
        "Atlantis accepted the replay's token and MR 2 holds the lock"
    );
    proxy.stop().await;
}
