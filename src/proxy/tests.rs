//! The stack without sockets: the real layers, wired from a configuration with the memory
//! engine, over a `service_fn` stand-in for Atlantis that counts what reaches it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

use super::facts::{Buffered, Verdict};
use super::forward::Forward;
use super::*;
use crate::classify::Operation;
use crate::classify::testutil::{github_comment, signed_github};
use crate::route::Route;
use crate::upstream::full;
use crate::vocab::{EnginePath, LegacyReason};

const SECRET: &str = "s3cret";
const API_SECRET: &str = "api-t0ken";

/// Atlantis's stand-in: answers 200 and counts the requests that reached it.
#[derive(Clone, Default)]
struct Atlantis {
    calls: Arc<AtomicUsize>,
}

impl Atlantis {
    fn service(&self) -> BoxCloneService<Request<ProxyBody>, Response<ProxyBody>, Failure> {
        let calls = self.calls.clone();
        BoxCloneService::new(service_fn(move |req: Request<ProxyBody>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                // What Atlantis received is what the client sent.
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| Failure::from(ProxyError::BodyUnreadable(e.to_string())))?;
                let mut resp = Response::new(full(body.to_bytes()));
                resp.headers_mut()
                    .insert("x-from", http::HeaderValue::from_static("atlantis"));
                Ok(resp)
            }
        }))
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The wired request path (memory engine, all traffic enhanced) with `extra` lines under
/// `enhanced-locking:`.
async fn wired(extra: &str) -> (Arc<ProxyState>, Arc<crate::admin::AdminState>) {
    let yaml = format!(
        "upstream: {{url: 'http://127.0.0.1:9'}}\n\
         atlantis:\n  webhook-secrets:\n    github: {SECRET}\n  api-secret: {API_SECRET}\n  \
         lock-sync-interval: 1h\n\
         enhanced-locking:\n  traffic-split: 100\n{extra}"
    );
    let config = crate::config::Config::from_yaml(&yaml).expect("test config");
    let w = crate::app::wire(&config).await.expect("wired");
    w.proxy.enhanced.assume_synced();
    (w.proxy, w.admin)
}

fn stack_over(
    state: &ProxyState,
    atlantis: &Atlantis,
) -> BoxCloneService<Request<Full<Bytes>>, Response<ProxyBody>, std::convert::Infallible> {
    let forward = Forward::new(
        state.upstream.clone(),
        state.metrics.clone(),
        state.server.max_body_size,
    );
    compose(state, forward, atlantis.service())
}

/// A signed GitHub comment webhook from pull `pull` of acme/infra.
fn comment(pull: i64, text: &str) -> Request<Full<Bytes>> {
    comment_signed_with(pull, text, SECRET)
}

fn comment_signed_with(pull: i64, text: &str, secret: &str) -> Request<Full<Bytes>> {
    let mut v = github_comment(text, "created");
    v["issue"]["number"] = json!(pull);
    let delivery = format!("delivery-{pull}-{}", text.len());
    signed_github(
        "issue_comment",
        &delivery,
        secret,
        v.to_string().into_bytes(),
    )
}

async fn text(resp: Response<ProxyBody>) -> String {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn a_granted_plan_reaches_atlantis_once_with_its_body() {
    let (state, _) = wired("").await;
    let atlantis = Atlantis::default();
    let req = comment(1, "atlantis plan -d net");
    let sent = req.body().clone().collect().await.unwrap().to_bytes();
    let resp = stack_over(&state, &atlantis).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-from"], "atlantis");
    let facts = resp.extensions();
    assert_eq!(facts.get::<Verdict>(), Some(&Verdict::Granted { pull: 1 }));
    assert_eq!(facts.get::<EnginePath>(), Some(&EnginePath::Enhanced));
    assert_eq!(text(resp).await.as_bytes(), &sent[..]);
    assert_eq!(atlantis.calls(), 1);
}

#[tokio::test]
async fn a_queued_plan_never_reaches_atlantis() {
    let (state, _) = wired("").await;
    let atlantis = Atlantis::default();
    let svc = stack_over(&state, &atlantis);
    let first = svc
        .clone()
        .oneshot(comment(1, "atlantis plan -d net"))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = svc
        .oneshot(comment(2, "atlantis plan -d net"))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    assert_eq!(second.headers()[PROXY_HEADER], "queued");
    assert!(matches!(
        second.extensions().get::<Verdict>(),
        Some(Verdict::Queued {
            pull: 2,
            position: Some(1),
            ..
        })
    ));
    let body: serde_json::Value = serde_json::from_str(&text(second).await).unwrap();
    assert_eq!(body["status"], "queued");
    assert_eq!(body["locks"][0]["held_by_pull"], 1);
    assert_eq!(
        atlantis.calls(),
        1,
        "only the holder's plan reached Atlantis"
    );
}

#[tokio::test]
async fn an_open_breaker_sends_the_plan_the_legacy_way() {
    let (state, admin) = wired("  circuit-breaker:\n    failure-threshold: 1\n").await;
    while let Some(p) = admin.breaker.allow() {
        p.record(false);
    }
    let atlantis = Atlantis::default();
    let resp = stack_over(&state, &atlantis)
        .oneshot(comment(1, "atlantis plan -d net"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.extensions().get::<Verdict>(),
        Some(&Verdict::Legacy {
            pull: 1,
            reason: LegacyReason::BreakerOpen
        })
    );
    assert_eq!(
        resp.extensions().get::<EnginePath>(),
        Some(&EnginePath::Legacy)
    );
    assert_eq!(atlantis.calls(), 1);
}

#[tokio::test]
async fn a_full_queue_sends_the_plan_the_legacy_way() {
    let (state, _) = wired("  max-queue-size: 1\n").await;
    let atlantis = Atlantis::default();
    let svc = stack_over(&state, &atlantis);
    for pull in 1..=2 {
        svc.clone()
            .oneshot(comment(pull, "atlantis plan -d net"))
            .await
            .unwrap();
    }
    assert_eq!(atlantis.calls(), 1);
    let third = svc
        .oneshot(comment(3, "atlantis plan -d net"))
        .await
        .unwrap();
    assert_eq!(
        third.status(),
        StatusCode::OK,
        "Atlantis answers it (and says locked)"
    );
    assert_eq!(
        third.extensions().get::<Verdict>(),
        Some(&Verdict::EngineError { pull: 3 })
    );
    assert_eq!(
        third.extensions().get::<EnginePath>(),
        Some(&EnginePath::Legacy)
    );
    assert_eq!(atlantis.calls(), 2);
}

#[tokio::test]
async fn a_bad_signature_is_answered_by_the_rescue_like_atlantis() {
    let (state, _) = wired("").await;
    let atlantis = Atlantis::default();
    let resp = stack_over(&state, &atlantis)
        .oneshot(comment_signed_with(1, "atlantis plan", "wrong"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[ERROR_HEADER], "bad-signature");
    assert_eq!(
        atlantis.calls(),
        0,
        "a forged webhook never reaches Atlantis"
    );
}

#[tokio::test]
async fn a_client_over_its_limit_gets_a_429_with_retry_after() {
    let yaml_extra = "";
    let (state, _) = wired(yaml_extra).await;
    let limits = Arc::new(ratelimit::RateLimits::new(
        Some(crate::config::RateSpec {
            per: std::time::Duration::from_secs(3600),
            count: 1,
            burst: 1,
        }),
        None,
        None,
    ));
    let state = ProxyState {
        upstream: state.upstream.clone(),
        server: state.server.clone(),
        classify: state.classify.clone(),
        metrics: state.metrics.clone(),
        router: state.router.clone(),
        enhanced: state.enhanced.clone(),
        shadow: state.shadow.clone(),
        limits,
        body_budget: state.body_budget.clone(),
    };
    let atlantis = Atlantis::default();
    let svc = stack_over(&state, &atlantis);
    let ok = svc
        .clone()
        .oneshot(comment(1, "atlantis unlock"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let refused = svc.oneshot(comment(1, "atlantis unlock")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[ERROR_HEADER], "rate-limited");
    assert!(
        refused.headers()[http::header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(text(refused).await.contains("this client"));
    assert_eq!(atlantis.calls(), 1);
}

#[tokio::test]
async fn other_routes_stream_through_unclassified() {
    let (state, _) = wired("").await;
    let atlantis = Atlantis::default();
    let req = Request::get("/api/locks")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = stack_over(&state, &atlantis).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.extensions()
            .get::<crate::proxy::facts::Classified>()
            .is_none()
    );
    assert_eq!(atlantis.calls(), 1);
}

#[tokio::test]
async fn a_lock_body_over_its_limit_is_refused_before_it_is_read() {
    let (state, _) = wired("").await;
    let atlantis = Atlantis::default();
    let limit = state.server.max_lock_body_size;
    let req = Request::post("/events")
        .header("content-length", (limit + 1).to_string())
        .body(Full::new(Bytes::from(vec![b' '; limit + 1])))
        .unwrap();
    let resp = stack_over(&state, &atlantis).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()[ERROR_HEADER], "body-too-large");
    assert_eq!(atlantis.calls(), 0);
}

#[tokio::test]
async fn the_gate_alone_passes_legacy_routes_and_queues_contended_ones() {
    let (state, _) = wired("").await;
    let atlantis = Atlantis::default();
    let gate = gate::GateLayer::new(state.enhanced.clone(), state.metrics.clone())
        .layer(atlantis.service());
    let classified = |pull: i64, path: EnginePath| {
        let req = comment(pull, "atlantis plan -d net");
        let (mut parts, body) = req.into_parts();
        let bytes = futures_util::FutureExt::now_or_never(body.collect())
            .expect("full body")
            .expect("bytes")
            .to_bytes();
        let op = crate::classify::classify(&parts, &bytes, &state.classify).expect("classified");
        assert!(matches!(op, Operation::Acquire(_)));
        parts.extensions.insert(op);
        parts.extensions.insert(Buffered(bytes.clone()));
        parts.extensions.insert(Route {
            path,
            shadow: false,
        });
        Request::from_parts(parts, full(bytes))
    };
    let legacy = gate
        .clone()
        .oneshot(classified(9, EnginePath::Legacy))
        .await
        .unwrap();
    assert!(
        legacy.extensions().get::<Verdict>().is_none(),
        "legacy is not gated"
    );
    let held = gate
        .clone()
        .oneshot(classified(1, EnginePath::Enhanced))
        .await
        .unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let queued = gate
        .oneshot(classified(2, EnginePath::Enhanced))
        .await
        .unwrap();
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    assert_eq!(atlantis.calls(), 2);
}

#[tokio::test]
async fn the_rescue_keeps_the_facts_of_a_failure() {
    let failing = service_fn(|_req: Request<ProxyBody>| async {
        let mut f = Failure::from(ProxyError::EngineUnavailable("down".into()));
        f.facts.insert(EnginePath::Enhanced);
        Err::<Response<ProxyBody>, _>(f)
    });
    let resp = rescue::RescueLayer
        .layer(failing)
        .oneshot(Request::new(full(Bytes::new())))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[ERROR_HEADER], "engine-unavailable");
    assert_eq!(
        resp.extensions().get::<EnginePath>(),
        Some(&EnginePath::Enhanced)
    );
    assert_eq!(
        resp.extensions().get::<error::Rescued>(),
        Some(&error::Rescued(
            crate::telemetry::metrics::labels::ProxyErrorKind::EngineUnavailable
        ))
    );
}

/// `POST /api/plan` for pull `pull` of acme/infra, dir `net`, workspace `prod`.
fn api_plan(pull: i64) -> Request<Full<Bytes>> {
    let body = json!({
        "Repository": "acme/infra", "Ref": "main", "Type": "Github", "PR": pull,
        "Paths": [{"Directory": "net", "Workspace": "prod"}]
    });
    Request::post("/api/plan")
        .header("content-type", "application/json")
        .header("x-atlantis-token", API_SECRET)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request")
}

#[tokio::test(start_paused = true)]
async fn an_api_plan_waits_for_a_held_lock_and_runs_once_it_frees() {
    let (state, _) = wired("  queue-timeout: 10m\n  api-poll-interval: 100ms\n").await;
    let atlantis = Atlantis::default();
    let svc = stack_over(&state, &atlantis);
    let held = svc
        .clone()
        .oneshot(comment(1, "atlantis plan -d net -w prod"))
        .await
        .unwrap();
    assert_eq!(
        held.extensions().get::<Verdict>(),
        Some(&Verdict::Granted { pull: 1 })
    );
    let start = tokio::time::Instant::now();
    let waiting = tokio::spawn(svc.oneshot(api_plan(2)));
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    assert!(
        !waiting.is_finished(),
        "the call waits while the lock is held"
    );
    assert_eq!(atlantis.calls(), 1);
    let holder = crate::vocab::PullRef::new(crate::vocab::Vcs::Github, "acme/infra", 1);
    state
        .enhanced
        .release_pull(&holder, crate::telemetry::ReleaseReason::Unlock)
        .await;
    let resp = waiting.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.extensions().get::<Verdict>(),
        Some(&Verdict::Granted { pull: 2 })
    );
    assert_eq!(atlantis.calls(), 2);
    // Polls back off to at most 5 s: the call runs within one poll of the release.
    assert!(
        start.elapsed() <= std::time::Duration::from_secs(66),
        "{:?}",
        start.elapsed()
    );
    // Atlantis ends an /api call by deleting the pull's locks; so does the engine.
    let locks = state.enhanced.engine.list_locks().await.unwrap();
    assert!(locks.is_empty(), "{locks:?}");
}

#[tokio::test(start_paused = true)]
async fn an_api_plan_past_the_queue_timeout_goes_to_atlantis_without_a_grant() {
    let (state, _) = wired("  queue-timeout: 2m\n").await;
    let atlantis = Atlantis::default();
    let svc = stack_over(&state, &atlantis);
    svc.clone()
        .oneshot(comment(1, "atlantis plan -d net -w prod"))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let resp = svc.oneshot(api_plan(2)).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(115)
            && waited <= std::time::Duration::from_secs(120),
        "{waited:?}"
    );
    // Atlantis answers it (with "locked by #1"); the engine still says #1.
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(atlantis.calls(), 2);
    let locks = state.enhanced.engine.list_locks().await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].pull.number, 1);
}
