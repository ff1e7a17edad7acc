//! The Prometheus registry served at the admin listener's `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets (seconds) for calls to Atlantis: webhooks answer in milliseconds,
/// `/api/plan` can run for minutes.
const UPSTREAM_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// Labels of one handled request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Coarse Atlantis route (`events`, `api_plan`, `locks`, …).
    pub route: &'static str,
    /// `legacy` or `enhanced` (or `shadow`).
    pub engine: &'static str,
    /// Status class (`2xx`…) or what the proxy did (`queued`, `rejected`).
    pub outcome: &'static str,
}

/// Labels of one upstream call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `2xx`…`5xx`, or `error` / `timeout` when Atlantis gave no answer.
    pub status_class: &'static str,
}

/// Every metric the proxy exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by route, engine path and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to Atlantis's response head, by status class.
    pub upstream_duration: Family<UpstreamLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "atlantis_lock_proxy_requests",
            "Requests handled by the main listener, by route, engine path and outcome",
            requests.clone(),
        );
        let upstream_duration = Family::<UpstreamLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(UPSTREAM_BUCKETS)
        });
        registry.register(
            "atlantis_lock_proxy_upstream_duration_seconds",
            "Time until Atlantis sent its response head, by status class",
            upstream_duration.clone(),
        );
        Self {
            registry,
            requests,
            upstream_duration,
        }
    }

    /// Registers more metrics (engine, shadow…) before the registry is shared.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counts one request.
    pub fn request(&self, route: &'static str, engine: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                engine,
                outcome,
            })
            .inc();
    }

    /// Records one upstream call.
    pub fn upstream(&self, status_class: &'static str, took: Duration) {
        self.upstream_duration
            .get_or_create(&UpstreamLabels { status_class })
            .observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `2xx`-style class of a status code.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
