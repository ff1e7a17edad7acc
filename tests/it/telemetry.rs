//! Observability end to end: spans reach an in-process OTLP collector with the right tree and
//! attributes, `traceparent` reaches Atlantis, `/metrics` is valid Prometheus text, and the
//! dashboard and alert rules only query metrics the proxy exports.

use atlantis_lock_proxy::telemetry::metrics::labels::{
    HttpRoute, RequestOutcome, ResolveOutcome, StatusClass, UpstreamOutcome,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use atlantis_lock_proxy::classify::Priority;
use atlantis_lock_proxy::config::{LogFormat, TelemetryConfig};
use atlantis_lock_proxy::telemetry::{self, FailReason, Metrics, ReleaseReason, TelemetryGuard};
use atlantis_lock_proxy::vocab::EnginePath;
use http::Method;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use crate::support::fake_atlantis::FakeAtlantis;
use crate::support::http::{get, send};
use crate::support::proxy::spawn_proxy;

/// One received span, ids in hex.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attrs: HashMap<String, String>,
    links: Vec<(String, String)>,
}

/// An OTLP/gRPC collector that keeps every span it receives.
#[derive(Default, Clone)]
struct Receiver(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource = rs
                .resource
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                got.push(Got {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent: hex::encode(&span.parent_span_id),
                    attrs: attrs(&span.attributes),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id)))
                        .collect(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// The process-wide collector and telemetry: installed once, on a runtime that outlives every
/// test's own runtime (the exporter's gRPC channel lives there).
struct Collector {
    spans: Receiver,
    guard: TelemetryGuard,
    _runtime: tokio::runtime::Runtime,
}

fn collector() -> &'static Collector {
    static C: OnceLock<Collector> = OnceLock::new();
    C.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let spans = Receiver::default();
            let guard = runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let service = TraceServiceServer::new(spans.clone());
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
                );
                telemetry::init(&TelemetryConfig {
                    log_format: LogFormat::Text,
                    log_level: "warn".into(),
                    otlp_endpoint: Some(format!("http://{addr}")),
                    otlp_protocol: "grpc".into(),
                    sampling_ratio: 1.0,
                    service_name: "alp-telemetry-test".into(),
                })
            });
            assert!(guard.traces_enabled());
            Collector {
                spans,
                guard,
                _runtime: runtime,
            }
        })
        .join()
        .unwrap()
    })
}

/// Flushes the exporter until spans of `trace_id` named `names` all arrived.
async fn spans_of(trace_id: &str, names: &[&str]) -> Vec<Got> {
    let c = collector();
    let found = |c: &Collector| -> Vec<Got> {
        let got = c.spans.0.lock().unwrap();
        got.iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    };
    for _ in 0..50 {
        tokio::task::spawn_blocking(|| collector().guard.force_flush())
            .await
            .unwrap();
        let spans = found(c);
        if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "spans {names:?} of trace {trace_id} never arrived; got {:?}",
        found(c)
    );
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

const SERVER: i32 = 2; // SpanKind::Server
const CLIENT: i32 = 3; // SpanKind::Client

#[tokio::test]
async fn a_request_is_one_server_span_with_the_upstream_call_as_its_child() {
    collector();
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    let (trace_id, caller_span) = (random_hex(16), random_hex(8));
    let caller = format!("00-{trace_id}-{caller_span}-01");
    let reply = send(
        Method::GET,
        &proxy.url("/api/locks"),
        &[("traceparent", caller.as_str())],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let spans = spans_of(&trace_id, &["GET api_locks", "GET atlantis"]).await;
    let server = spans.iter().find(|s| s.name == "GET api_locks").unwrap();
    let upstream = spans.iter().find(|s| s.name == "GET atlantis").unwrap();
    assert_eq!(server.service, "alp-telemetry-test");
    assert_eq!(server.kind, SERVER);
    assert_eq!(
        server.parent, caller_span,
        "the caller's traceparent is honoured"
    );
    assert_eq!(server.attrs["http.request.method"], "GET");
    assert_eq!(server.attrs["http.route"], "api_locks");
    assert_eq!(server.attrs["url.path"], "/api/locks");
    assert_eq!(server.attrs["http.response.status_code"], "200");
    assert_eq!(upstream.kind, CLIENT);
    assert_eq!(
        upstream.parent, server.span_id,
        "the upstream call is the server span's child"
    );
    assert_eq!(upstream.attrs["http.response.status_code"], "200");

    // Atlantis continues the trace under the upstream span.
    let at_atlantis = fake.received_at("/api/locks");
    let sent = at_atlantis
        .iter()
        .filter_map(|r| r.headers.get("traceparent")?.to_str().ok())
        .find(|tp| tp.contains(&trace_id))
        .expect("traceparent reached Atlantis");
    assert_eq!(sent, format!("00-{trace_id}-{}-01", upstream.span_id));

    // The transport libraries (h2, hyper, tonic, tower) never show up in the export.
    let all = collector().spans.0.lock().unwrap().clone();
    for s in &all {
        let ns = s
            .attrs
            .get("code.namespace")
            .map(String::as_str)
            .unwrap_or("");
        assert!(
            !["h2", "hyper", "tonic", "tower"]
                .iter()
                .any(|t| ns.starts_with(t)),
            "transport span exported: {s:?}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_replay_starts_a_new_trace_linked_to_the_original_request() {
    collector();
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    let trace_id = random_hex(16);
    let caller = format!("00-{trace_id}-{}-01", random_hex(8));
    send(
        Method::GET,
        &proxy.url("/api/locks"),
        &[("traceparent", caller.as_str())],
        "",
    )
    .await;
    let original = spans_of(&trace_id, &["GET api_locks"]).await;
    let original = original.iter().find(|s| s.name == "GET api_locks").unwrap();
    // What the enhanced path stores with a waiter: the original request's traceparent.
    let stored = format!("00-{}-{}-01", original.trace_id, original.span_id);

    let replay_trace = {
        let span = telemetry::replay_span(Some(&stored));
        let tp = telemetry::traceparent_of(&span).expect("the replay span is recorded");
        drop(span);
        tp.split('-').nth(1).unwrap().to_string()
    };
    assert_ne!(replay_trace, trace_id);
    let replay = spans_of(&replay_trace, &["replay queued request"]).await;
    assert_eq!(replay[0].parent, "", "a replay is a root span");
    assert_eq!(
        replay[0].links,
        [(original.trace_id.clone(), original.span_id.clone())]
    );
    proxy.stop().await;
}

/// The value of one series in a Prometheus text scrape, written as exposed
/// (`name{label="v",...}` in registration order of the labels), or `None` when absent.
/// For scenario tests: `sample(&scrape, "atlantis_enhanced_locking_queue_depth{priority=\"high\"}")`.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A registry where every family has samples (families with labels appear on first use).
fn populated() -> Metrics {
    let m = Metrics::new();
    m.lock_acquired(Duration::from_millis(3), Ok(()));
    m.lock_acquired(Duration::from_millis(3), Err(FailReason::QueueFull));
    m.lock_queued(Duration::from_millis(1));
    m.queue_left(Duration::from_secs(30), Ok(()));
    m.lock_released(Duration::from_secs(600), ReleaseReason::PullClosed);
    m.set_queue_depth(Priority::Critical, 1);
    m.engine_op("acquire", false);
    m.engine_retry("acquire");
    m.deadlock();
    m.set_split(50, true);
    m.shadow_compared(atlantis_lock_proxy::vocab::DiffKind::LegacyDeniedEnhancedWouldGrant);
    m.shadow_dropped();
    m.replay("forwarded");
    m.resolve(ResolveOutcome::Resolved);
    m.legacy_fallback();
    m.request(
        HttpRoute::Events,
        EnginePath::Enhanced,
        RequestOutcome::Status(StatusClass::Success),
    );
    m.upstream(
        UpstreamOutcome::Status(StatusClass::Success),
        Duration::from_millis(4),
    );
    m
}

/// Metric names in PromQL text: every identifier with one of the proxy's prefixes.
fn queried_metrics(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| {
            t.starts_with("atlantis_enhanced_locking_") || t.starts_with("atlantis_lock_proxy_")
        })
        .map(str::to_string)
        .collect()
}

/// Series names the exposition can produce: counters as `_total`, histograms with their parts.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        names.insert(name.to_string());
        if kind == "histogram" {
            for part in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{part}"));
            }
        }
    }
    names
}

fn exprs_in(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs_in(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs_in(v, out)),
        _ => {}
    }
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_dashboard_queries_only_metrics_the_proxy_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("config/grafana/atlantis-lock-proxy.json"))
            .expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    exprs_in(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "only {} queries", exprs.len());
    let exported = exported_names(&populated().encode());
    let mut queried = BTreeSet::new();
    for e in &exprs {
        queried.extend(queried_metrics(e));
    }
    let unknown: Vec<_> = queried.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "dashboard queries unknown metrics: {unknown:?}"
    );
    // The guide's panels are all there, plus split and shadow.
    for m in [
        "atlantis_enhanced_locking_backend_health",
        "atlantis_enhanced_locking_acquisition_duration_seconds_bucket",
        "atlantis_enhanced_locking_queue_depth",
        "atlantis_enhanced_locking_redis_memory_used_bytes",
        "atlantis_enhanced_locking_deadlocks_detected_total",
        "atlantis_lock_proxy_traffic_split_percent",
        "atlantis_lock_proxy_shadow_mismatches_total",
    ] {
        assert!(queried.contains(m), "no panel queries {m}");
    }
}

#[test]
fn the_alert_rules_query_only_metrics_the_proxy_exports() {
    let rules: serde_json::Value =
        serde_norway::from_str(&repo_file("config/prometheus/alerts.yml"))
            .expect("alerts.yml is valid YAML");
    let exported = exported_names(&populated().encode());
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr");
            let unknown: Vec<_> = queried_metrics(expr)
                .into_iter()
                .filter(|m| !exported.contains(m))
                .collect();
            assert!(unknown.is_empty(), "{rule}: unknown metrics {unknown:?}");
            alerts.insert(rule["alert"].as_str().expect("alert name").to_string());
        }
    }
    for name in [
        "EnhancedLockingSystemDown",
        "HighLockFailureRate",
        "ExtremelyHighLatency",
        "MassiveQueueBacklog",
        "ModeratePerformanceDegradation",
        "HighQueueDepth",
        "FrequentDeadlocks",
        "CircuitBreakerActive",
        "HighResourceUsage",
    ] {
        assert!(alerts.contains(name), "the guide's alert {name} is missing");
    }
}

/// Writes scrapes for `.ci/run` to validate with `promtool check metrics`.
#[tokio::test]
async fn metrics_scrape_is_prometheus_text_and_saved_for_promtool() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    send(Method::GET, &proxy.url("/api/locks"), &[], "").await;
    let scrape = get(&proxy.admin_url("/metrics")).await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = scrape.text();
    assert_eq!(
        sample(
            &text,
            "atlantis_lock_proxy_requests_total{route=\"api_locks\",engine=\"legacy\",outcome=\"2xx\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "atlantis_lock_proxy_upstream_duration_seconds_count{status_class=\"2xx\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "atlantis_enhanced_locking_queue_depth{priority=\"critical\"}"
        ),
        Some(0.0)
    );
    assert!(text.contains("# TYPE atlantis_enhanced_locking_queue_depth gauge"));

    let m = populated();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("promtool");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("scrape.prom"), &text).unwrap();
    std::fs::write(dir.join("populated.prom"), m.encode()).unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn a_scraper_asking_for_openmetrics_gets_it() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    let scrape = send(
        Method::GET,
        &proxy.admin_url("/metrics"),
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
        "",
    )
    .await;
    assert!(
        scrape.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(scrape.text().ends_with("# EOF\n"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_queued_then_replayed_request_is_traced_end_to_end() {
    use crate::enhanced::{REPO, SECRET, base_yaml};
    use crate::support::fake_atlantis::FakeOptions;
    use crate::support::webhooks::{github_comment, github_pull};

    collector();
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let proxy = spawn_proxy(&fake.url(), &base_yaml(None, "", "")).await;
    let events = proxy.url("/events");
    github_comment(SECRET, REPO, 1, "alice", "atlantis plan -d net")
        .send_to(&events)
        .await;
    let held =
        crate::support::eventually(Duration::from_secs(5), || !fake.locks().is_empty()).await;
    assert!(held);

    // PR 2 arrives with the VCS's trace context and is queued.
    let trace_id = random_hex(16);
    let caller = format!("00-{trace_id}-{}-01", random_hex(8));
    let mut hook = github_comment(SECRET, REPO, 2, "bob", "atlantis plan -d net");
    hook.headers.push(("traceparent".into(), caller.clone()));
    assert_eq!(hook.send_to(&events).await.status, 202);
    let queued = spans_of(&trace_id, &["POST events", "classify", "engine acquire"]).await;
    let server = queued.iter().find(|s| s.name == "POST events").unwrap();
    assert_eq!(server.attrs["alp.decision"], "queued");
    assert_eq!(server.attrs["alp.engine_path"], "enhanced");
    assert_eq!(server.attrs["alp.repo"], REPO);
    assert_eq!(server.attrs["alp.pull"], "2");
    assert_eq!(server.attrs["alp.queue_position"], "1");
    assert!(server.attrs.contains_key("alp.waiter_id"));
    for child in ["classify", "engine acquire"] {
        let c = queued.iter().find(|s| s.name == child).unwrap();
        assert_eq!(
            c.parent, server.span_id,
            "{child} is a child of the request span"
        );
    }
    assert!(
        queued
            .iter()
            .all(|s| s.name != "GET atlantis" && s.name != "POST atlantis"),
        "a queued request never reaches Atlantis"
    );

    // PR 1 closes: the replay is a new trace linked to the queued request's span.
    github_pull(SECRET, REPO, 1, "alice", "closed")
        .send_to(&events)
        .await;
    let replayed = crate::support::eventually(Duration::from_secs(10), || {
        fake.received_at("/events")
            .iter()
            .any(|r| r.body.as_ref() == hook.body.as_slice())
    })
    .await;
    assert!(replayed);
    let mut replay = None;
    for _ in 0..50 {
        tokio::task::spawn_blocking(|| collector().guard.force_flush())
            .await
            .unwrap();
        replay = collector()
            .spans
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|s| {
                s.name == "replay queued request"
                    && s.links
                        .contains(&(trace_id.clone(), server.span_id.clone()))
            })
            .cloned();
        if replay.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replay = replay.expect("the replay span links to the queued request");
    assert_ne!(replay.trace_id, trace_id);
    assert_eq!(replay.parent, "");
    assert_eq!(replay.attrs["alp.pull"], "2");
    let arrived = fake.received_at("/events");
    let tp = arrived
        .iter()
        .filter(|r| r.body.as_ref() == hook.body.as_slice())
        .filter_map(|r| r.headers.get("traceparent")?.to_str().ok())
        .next()
        .unwrap();
    assert!(
        tp.contains(&replay.trace_id),
        "Atlantis continues the replay's trace: {tp}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_follow_a_scripted_lock_scenario() {
    use crate::enhanced::{Backend, Setup};

    let s = Setup::start(Backend::Memory, "  deadlock-check-interval: 200ms\n").await;
    let scrape = || async { get(&s.proxy.admin_url("/metrics")).await.text() };
    let m = |name: &str| format!("atlantis_enhanced_locking_{name}");

    // One grant, then two waiters (high, low) behind it.
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    s.plan_labeled(2, "net", "prod", &["atlantis/priority:high"])
        .await;
    s.plan_labeled(3, "net", "prod", &["atlantis/priority:low"])
        .await;
    let mut text = String::new();
    for _ in 0..40 {
        text = scrape().await;
        if sample(&text, &m("queue_depth{priority=\"high\"}")) == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sample(&text, &m("queue_depth{priority=\"high\"}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &m("queue_depth{priority=\"low\"}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, &m("queue_depth{priority=\"normal\"}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, &m("acquisitions_total")),
        Some(1.0),
        "queued ones count when they leave"
    );
    assert_eq!(sample(&text, &m("acquisitions_success_total")), Some(1.0));
    assert_eq!(
        sample(&text, &m("acquisition_duration_seconds_count")),
        Some(3.0)
    );

    // PR 1 closes: its lock is released, PR 2 (high) leaves the queue granted.
    s.close(1).await;
    assert!(s.wait_atlantis_holder("net", "prod", 2).await);
    for _ in 0..40 {
        text = scrape().await;
        if sample(&text, &m("queue_depth{priority=\"high\"}")) == Some(0.0)
            && sample(&text, &m("acquisitions_total")) == Some(2.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sample(&text, &m("releases_total{reason=\"pull_closed\"}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, &m("acquisitions_total")), Some(2.0));
    assert_eq!(
        sample(&text, &m("queue_depth{priority=\"high\"}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, &m("queue_depth{priority=\"low\"}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, &m("queue_wait_duration_seconds_count")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "atlantis_lock_proxy_replays_total{outcome=\"granted\"}"
        ),
        Some(1.0)
    );

    // A deadlock between PR 2 (holds net) and PR 4 (holds app).
    assert_eq!(sample(&text, &m("deadlocks_detected_total")), Some(0.0));
    s.plan(4, "app", "prod").await;
    assert!(s.wait_atlantis_holder("app", "prod", 4).await);
    s.plan(2, "app", "prod").await;
    s.plan(4, "net", "prod").await;
    let mut found = false;
    for _ in 0..40 {
        text = scrape().await;
        if sample(&text, &m("deadlocks_detected_total")) == Some(1.0) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "{text}");
    s.proxy.stop().await;
}
