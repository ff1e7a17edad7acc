//! The gate, the dispatcher and the reconciler together, under paused time, against a model
//! Atlantis in this process: it answers webhooks at once and acts on them a little later (as
//! Atlantis does), keeps a real lock table, refuses a plan whose lock another pull holds, and
//! lists its locks on `GET /api/locks`. No socket, no sleep in real time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::upstream::{AtlantisFn, ProxyBody, Upstream, full};

mod sim;

const SECRET: &str = "s3cret";
const REPO: &str = "acme/infra";

/// What the model Atlantis holds and saw.
#[derive(Default)]
struct Table {
    /// Lock key → (pull, user).
    locks: BTreeMap<String, (i64, String)>,
    /// Every webhook command it received: (pull, comment).
    received: Vec<(i64, String)>,
    /// Plans it refused because another pull held the lock: (pull, holder, was a hand-off).
    refused: Vec<(i64, i64, bool)>,
    /// Closed pulls.
    closed: std::collections::BTreeSet<i64>,
    /// Commands that arrived for a pull after its close: (pull, comment, delivery id).
    after_close: Vec<(i64, String, String)>,
    /// Deliveries received, by delivery id (a replay resends the original's id).
    deliveries: BTreeMap<String, usize>,
}

#[derive(Clone, Default)]
struct Model {
    table: Arc<Mutex<Table>>,
    /// How long after answering a webhook it acts on it (a function of how many it has seen,
    /// so a seeded run can vary it); 30 ms when unset.
    lag: Option<Arc<dyn Fn(usize) -> Duration + Send + Sync>>,
    /// How long `GET /api/locks` takes (a busy Atlantis lists slowly).
    list_delay: Duration,
}

impl Model {
    /// Acts on a webhook this long after answering it, unless `lag` says otherwise.
    const LAG: Duration = Duration::from_millis(30);

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap()
    }

    fn holder(&self, key: &str) -> Option<i64> {
        self.table().locks.get(key).map(|(p, _)| *p)
    }

    fn received_from(&self, pull: i64) -> usize {
        self.table()
            .received
            .iter()
            .filter(|(p, _)| *p == pull)
            .count()
    }

    fn atlantis(&self) -> AtlantisFn {
        let model = self.clone();
        Arc::new(move |req: Request<ProxyBody>| {
            let model = model.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await?.to_bytes();
                if parts.uri.path() == "/api/locks" && !model.list_delay.is_zero() {
                    tokio::time::sleep(model.list_delay).await;
                }
                Ok(model.answer(&parts.method, &parts.uri, &parts.headers, &body))
            })
        })
    }

    fn answer(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Response<ProxyBody> {
        match (method, uri.path()) {
            (&Method::GET, "/api/locks") => {
                let locks: Vec<Value> = self
                    .table()
                    .locks
                    .iter()
                    .map(|(key, (pull, user))| {
                        let parts: Vec<&str> = key.splitn(5, '/').collect();
                        json!({
                            "Name": key, "ProjectName": "", "ProjectRepo": REPO,
                            "ProjectRepoPath": parts.get(2).copied().unwrap_or("."),
                            "PullID": pull.to_string(),
                            "PullURL": format!("https://github.com/{REPO}/pull/{pull}"),
                            "User": user, "Workspace": parts.get(3).copied().unwrap_or("default"),
                        })
                    })
                    .collect();
                reply(StatusCode::OK, json!({ "Locks": locks }).to_string())
            }
            (&Method::POST, "/events") => {
                let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let handoff = headers.contains_key(super::HANDOFF_HEADER);
                let delivery = headers
                    .get("x-github-delivery")
                    .and_then(|d| d.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if let Some(d) = headers
                    .get("x-github-delivery")
                    .and_then(|d| d.to_str().ok())
                {
                    *self.table().deliveries.entry(d.to_string()).or_default() += 1;
                }
                if v["action"] == "closed" {
                    // Atlantis cleans a closed pull up before it answers.
                    let pull = v["number"].as_i64().unwrap_or(0);
                    let mut t = self.table();
                    t.closed.insert(pull);
                    t.locks.retain(|_, (p, _)| *p != pull);
                    return reply(StatusCode::OK, "Pull request cleaned successfully\n".into());
                }
                let pull = v["issue"]["number"].as_i64().unwrap_or(0);
                let text = v["comment"]["body"].as_str().unwrap_or("").to_string();
                let user = v["comment"]["user"]["login"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let seen = {
                    let mut t = self.table();
                    t.received.push((pull, text.clone()));
                    if t.closed.contains(&pull) {
                        t.after_close.push((pull, text.clone(), delivery.clone()));
                    }
                    t.received.len()
                };
                let lag = self.lag.as_ref().map_or(Self::LAG, |f| f(seen));
                let model = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(lag).await;
                    model.act(pull, &user, &text, handoff);
                });
                reply(StatusCode::OK, "Processing...\n".into())
            }
            (&Method::DELETE, "/locks") => {
                let id = uri
                    .query()
                    .and_then(|q| q.strip_prefix("id="))
                    .unwrap_or("");
                let key = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                match self.table().locks.remove(key.as_ref()) {
                    Some(_) => reply(StatusCode::OK, "Deleted lock id \"\"\n".into()),
                    None => reply(StatusCode::NOT_FOUND, "no lock\n".into()),
                }
            }
            _ => reply(StatusCode::OK, "ok\n".into()),
        }
    }

    /// Carries a command out, as Atlantis's command runner does after answering.
    fn act(&self, pull: i64, user: &str, text: &str, handoff: bool) {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut t = self.table();
        if t.closed.contains(&pull) {
            // "Atlantis commands can't be run on closed pull requests".
            return;
        }
        match words.get(1).copied() {
            Some("plan") => {
                let flag = |f: &str| {
                    words
                        .iter()
                        .position(|w| *w == f)
                        .and_then(|i| words.get(i + 1).copied())
                };
                let key = format!(
                    "{REPO}/{}/{}/",
                    flag("-d").unwrap_or("."),
                    flag("-w").unwrap_or("default")
                );
                match t.locks.get(&key) {
                    Some((holder, _)) if *holder != pull => {
                        let holder = *holder;
                        t.refused.push((pull, holder, handoff));
                    }
                    _ => {
                        t.locks.insert(key, (pull, user.to_string()));
                    }
                }
            }
            Some("unlock") => t.locks.retain(|_, (p, _)| *p != pull),
            _ => {}
        }
    }
}

fn reply(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp
}

/// A signed GitHub comment webhook.
fn comment(pull: i64, text: &str) -> Request<Full<Bytes>> {
    comment_delivered(pull, text, &format!("d-{pull}-{}", text.len()))
}

/// A signed GitHub comment webhook with the given delivery id.
fn comment_delivered(pull: i64, text: &str, delivery: &str) -> Request<Full<Bytes>> {
    let body = json!({
        "action": "created",
        "issue": {"number": pull, "state": "open", "user": {"login": "bob"},
                  "pull_request": {"url": format!("https://api.github.com/repos/{REPO}/pulls/{pull}")}},
        "comment": {"id": 1000 + pull, "body": text, "user": {"login": format!("user{pull}")}},
        "repository": {"full_name": REPO, "name": "infra", "owner": {"login": "acme"},
                       "clone_url": format!("https://github.com/{REPO}.git")},
        "sender": {"login": format!("user{pull}")}
    })
    .to_string();
    signed("issue_comment", delivery, body)
}

/// A signed GitHub `pull_request` `closed` webhook.
fn closed(pull: i64, delivery: &str) -> Request<Full<Bytes>> {
    let repo = json!({"full_name": REPO, "name": "infra", "owner": {"login": "acme"},
                      "clone_url": format!("https://github.com/{REPO}.git")});
    let body = json!({
        "action": "closed", "number": pull,
        "pull_request": {"number": pull, "state": "closed", "merged": false, "draft": false,
                         "html_url": format!("https://github.com/{REPO}/pull/{pull}"),
                         "user": {"login": "bob"}, "labels": [],
                         "head": {"sha": format!("{pull:040x}"), "ref": "f", "repo": repo.clone()},
                         "base": {"ref": "main", "repo": repo.clone()}},
        "repository": repo, "sender": {"login": "bob"}
    })
    .to_string();
    signed("pull_request", delivery, body)
}

fn signed(event: &str, delivery: &str, body: String) -> Request<Full<Bytes>> {
    crate::classify::testutil::signed_github(event, delivery, SECRET, body.into_bytes())
}

/// The proxy against the model, with its dispatcher and reconciler running.
struct Harness {
    model: Model,
    state: Arc<crate::proxy::ProxyState>,
    stop: CancellationToken,
}

impl Harness {
    async fn start(model: Model) -> Self {
        Self::start_with(model, "").await
    }

    /// With `extra` lines under `enhanced-locking:`.
    async fn start_with(model: Model, extra: &str) -> Self {
        let config = crate::config::Config::from_yaml(&format!(
            "upstream: {{url: 'http://atlantis.invalid:4141'}}\n\
             atlantis:\n  webhook-secrets:\n    github: {SECRET}\n  lock-sync-interval: 1s\n  \
             lock-sync-grace: 2s\n\
             enhanced-locking:\n  traffic-split: 100\n  replay-wait: 10s\n  \
             timeout-check-interval: 100ms\n{extra}"
        ))
        .unwrap();
        let upstream = Upstream::in_process(&config.upstream, model.atlantis());
        let wired = crate::app::wire_to(&config, upstream).await.unwrap();
        let state = wired.proxy;
        let stop = CancellationToken::new();
        let e = state.enhanced.clone();
        if let Some(rx) = e.engine.take_dispatches() {
            e.spawn_dispatcher(rx, stop.clone());
        }
        e.spawn_reconciler(stop.clone());
        crate::engine::spawn_background(e.engine.clone(), stop.clone().cancelled_owned());
        // The first reconciler pass: until then lock traffic takes the legacy path.
        while !e.started() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Harness { model, state, stop }
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Response<ProxyBody> {
        crate::proxy::stack(&self.state).oneshot(req).await.unwrap()
    }

    /// Waits (in paused time) until `done`, at most `max`.
    async fn until(&self, max: Duration, done: impl Fn(&Model) -> bool) -> bool {
        let end = tokio::time::Instant::now() + max;
        while tokio::time::Instant::now() < end {
            if done(&self.model) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done(&self.model)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

const NET: &str = "acme/infra/net/default/";

#[tokio::test(start_paused = true)]
async fn a_queued_plan_runs_once_after_the_holder_unlocks() {
    let h = Harness::start(Model::default()).await;
    assert_eq!(
        h.send(comment(1, "atlantis plan -d net")).await.status(),
        200
    );
    assert!(
        h.until(Duration::from_secs(1), |m| m.holder(NET) == Some(1))
            .await
    );
    let queued = h.send(comment(2, "atlantis plan -d net")).await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    assert_eq!(
        h.model.received_from(2),
        0,
        "a queued plan is not forwarded"
    );
    let start = tokio::time::Instant::now();
    assert_eq!(h.send(comment(1, "atlantis unlock")).await.status(), 200);
    assert!(
        h.until(Duration::from_secs(15), |m| m.holder(NET) == Some(2))
            .await,
        "pull 2 holds net in Atlantis"
    );
    let took = start.elapsed();
    // Settle, then nothing more arrives: the replay went out once, and nobody met a lock.
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(h.model.received_from(2), 1, "replayed exactly once");
    assert!(
        h.model.table().refused.is_empty(),
        "{:?}",
        h.model.table().refused
    );
    let engine = h.state.enhanced.engine.list_locks().await.unwrap();
    assert_eq!(engine.len(), 1);
    assert_eq!(engine[0].pull.number, 2, "engine and Atlantis agree");
    // The release's fence and the lock-table wait are the cost: seconds, not replay-wait.
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn the_reconciler_adopts_a_lock_taken_behind_its_back_and_serves_the_queue_when_it_goes() {
    let model = Model::default();
    // Atlantis already holds net for pull 9 (taken before the migration, or on the legacy path).
    model
        .table()
        .locks
        .insert(NET.to_string(), (9, "mallory".into()));
    let h = Harness::start(model).await;
    let engine = h.state.enhanced.engine.list_locks().await.unwrap();
    assert_eq!(engine.len(), 1, "adopted on the first pass");
    assert_eq!(engine[0].pull.number, 9);
    // So a plan from pull 3 queues instead of meeting Atlantis's lock.
    let queued = h.send(comment(3, "atlantis plan -d net")).await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    // The lock goes in Atlantis without the proxy seeing it (deleted in Atlantis's UI).
    h.model.table().locks.remove(NET);
    assert!(
        h.until(Duration::from_secs(30), |m| m.holder(NET) == Some(3))
            .await,
        "after lock-sync-grace the engine lets go and pull 3 is replayed"
    );
    assert_eq!(h.model.received_from(3), 1);
    assert!(h.model.table().refused.is_empty());
}
