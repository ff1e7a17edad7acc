//! W3C trace context across the proxy: an incoming `traceparent` becomes the server span's parent,
//! the upstream call carries ours to Atlantis, and a replayed request links to the original one.

use std::collections::HashMap;

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header that carries the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Makes the caller's trace context in `headers` (if any, and valid) the parent of `span`.
///
/// Call it right after creating the span, before any child exists; without a caller context the
/// span stays a root. Does nothing when traces are off.
pub fn set_parent_from_headers(span: &Span, headers: &HeaderMap) {
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to parent.
        let _ = span.set_parent(cx);
    }
}

/// Writes `span`'s trace context (`traceparent`, `tracestate`) into outgoing `headers`,
/// replacing the caller's. Does nothing when traces are off; an unsampled span's context is still
/// written, so Atlantis continues the caller's sampling decision.
pub fn inject_headers(span: &Span, headers: &mut HeaderMap) {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// The `traceparent` of `span`, to store with a queued request so its replay can link back.
/// `None` when traces are off.
pub fn traceparent_of(span: &Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Parses a stored `traceparent` into the span context it names.
pub fn parse_traceparent(traceparent: &str) -> Option<SpanContext> {
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Adds a span link from `span` to the span named by a stored `traceparent`. Returns whether a
/// link was added (the string parsed and traces are on).
///
/// For a replayed request: create a new root span (`tracing::info_span!(parent: None, ...)`), call
/// this with the original request's `traceparent`, then run the replay inside it. The replay is a
/// new trace (it happens minutes later, on behalf of the original) that points back to its cause.
pub fn link_to_traceparent(span: &Span, traceparent: &str) -> bool {
    match parse_traceparent(traceparent) {
        Some(sc) if !span.is_disabled() => {
            span.add_link(sc);
            true
        }
        _ => false,
    }
}

/// A new root span for replaying a queued request, linked to the original request's
/// span when its `traceparent` was stored.
pub fn replay_span(original_traceparent: Option<&str>) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "replay",
        otel.name = "replay queued request",
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        alp.repo = tracing::field::Empty,
        alp.pull = tracing::field::Empty,
        alp.lock_keys = tracing::field::Empty,
        alp.waiter_id = tracing::field::Empty,
        alp.priority = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(tp) = original_traceparent {
        link_to_traceparent(&span, tp);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_stored_traceparent_parses_back_to_its_span() {
        let sc = parse_traceparent(TP).expect("valid traceparent");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled());
        assert!(sc.is_remote());
    }

    #[test]
    fn garbage_is_not_a_traceparent() {
        assert!(parse_traceparent("").is_none());
        assert!(parse_traceparent("00-zz-00f067aa0ba902b7-01").is_none());
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
    }

    #[test]
    fn without_an_otel_layer_nothing_is_linked_or_injected() {
        // No subscriber on this thread: the helpers must be harmless no-ops. (Whether the span
        // itself counts as enabled depends on tracing's process-wide callsite cache, which
        // another test's subscriber may have set: only what reaches the wire is asserted.)
        let none = tracing::subscriber::NoSubscriber::default();
        tracing::subscriber::with_default(none, || {
            let span = replay_span(Some(TP));
            assert_eq!(traceparent_of(&span), None);
            let mut headers = HeaderMap::new();
            inject_headers(&span, &mut headers);
            assert!(headers.is_empty());
        });
    }
}
