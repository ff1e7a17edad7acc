//! Spans through a real OpenTelemetry layer into an in-memory exporter: parents from headers,
//! injection toward Atlantis, replay links, and the transport filter.

use std::sync::{Arc, Mutex};

use http::HeaderMap;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        async { Ok(()) }
    }
}

/// Runs `f` with an OpenTelemetry layer (as [`init`] builds it) installed on this thread only.
fn traced(f: impl FnOnce()) -> Vec<SpanData> {
    let collect = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(collect.clone())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("test"))
        .with_filter(otel_filter());
    let subscriber = Registry::default().with(layer);
    tracing::subscriber::with_default(subscriber, f);
    let _ = provider.force_flush();
    collect.0.lock().unwrap().clone()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name} in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn an_incoming_traceparent_parents_the_server_span_and_ours_goes_upstream() {
    let mut outgoing = HeaderMap::new();
    let spans = traced(|| {
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", CALLER.parse().unwrap());
        let server = tracing::info_span!("server");
        set_parent_from_headers(&server, &incoming);
        let _s = server.enter();
        let upstream = tracing::info_span!("upstream");
        inject_headers(&upstream, &mut outgoing);
    });
    let server = named(&spans, "server");
    let upstream = named(&spans, "upstream");
    assert_eq!(
        server.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(upstream.parent_span_id, server.span_context.span_id());
    let sent = outgoing["traceparent"].to_str().unwrap();
    assert_eq!(
        sent,
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            upstream.span_context.span_id()
        ),
        "Atlantis must see the upstream span as its parent"
    );
}

#[test]
fn a_replay_is_a_new_trace_linked_to_the_original_request() {
    let mut stored = None;
    let spans = traced(|| {
        let original = tracing::info_span!("server");
        stored = traceparent_of(&original);
        drop(original);
        let _r = replay_span(stored.as_deref()).entered();
    });
    let original = named(&spans, "server");
    let replay = named(&spans, "replay queued request");
    let stored = stored.expect("a recorded span has a traceparent");
    assert!(stored.contains(&original.span_context.span_id().to_string()));
    assert_ne!(
        replay.span_context.trace_id(),
        original.span_context.trace_id(),
        "a replay starts its own trace"
    );
    let links = &replay.links.links;
    assert_eq!(links.len(), 1);
    assert_eq!(
        links[0].span_context.span_id(),
        original.span_context.span_id()
    );
    assert_eq!(
        links[0].span_context.trace_id(),
        original.span_context.trace_id()
    );
}

#[test]
fn transport_spans_are_not_exported() {
    let spans = traced(|| {
        let _a = tracing::info_span!(target: "h2", "h2 frame").entered();
        let _b = tracing::info_span!(target: "tonic::transport", "grpc").entered();
        let _c = tracing::debug_span!("chatty").entered();
        let _d = tracing::info_span!("ours").entered();
    });
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["ours"]);
}

#[test]
fn step_spans_carry_the_recorded_lock_attributes_under_the_server_span() {
    let spans = traced(|| {
        let server = spans::server(&http::Method::POST, "events", "/events");
        let _s = server.enter();
        server.record(spans::attr::REPO, "acme/infra");
        server.record(spans::attr::PULL, 42);
        let engine = spans::engine("acquire");
        engine.record(spans::attr::DECISION, "queued");
        engine.record(spans::attr::QUEUE_POSITION, 2);
        engine.record(spans::attr::LOCK_KEYS, "acme/infra/modules/vpc/default/vpc");
        drop(engine);
    });
    let server = named(&spans, "POST events");
    let engine = named(&spans, "engine acquire");
    assert_eq!(engine.parent_span_id, server.span_context.span_id());
    let attr = |s: &SpanData, k: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
            .unwrap_or_else(|| panic!("{} has no {k}: {:?}", s.name, s.attributes))
    };
    assert_eq!(attr(server, "alp.repo"), "acme/infra");
    assert_eq!(attr(server, "alp.pull"), "42");
    assert_eq!(attr(server, "http.route"), "events");
    assert_eq!(attr(engine, "alp.operation"), "acquire");
    assert_eq!(attr(engine, "alp.decision"), "queued");
    assert_eq!(attr(engine, "alp.queue_position"), "2");
    assert_eq!(
        attr(engine, "alp.lock_keys"),
        "acme/infra/modules/vpc/default/vpc"
    );
}
