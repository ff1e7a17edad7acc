//! The Prometheus registry served at the admin listener's `/metrics`.
//!
//! Two families live here: the migration guide's `atlantis_enhanced_locking_*` metrics
//! ([`locking`], named and bucketed as the guide lists them so its dashboards and alert rules work
//! unchanged) and the proxy's own `atlantis_lock_proxy_*` metrics ([`proxy`]). Every event is one
//! typed call on [`Metrics`]; label values are `&'static str` or enums so cardinality stays bounded.

mod exposition;
pub mod labels;
pub mod locking;
pub mod proxy;
mod tasks;

use prometheus_client::registry::Registry;

pub use exposition::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
pub use locking::{BreakerState, FailReason, ReleaseReason};
pub use proxy::{RequestLabels, UpstreamLabels};

/// Every metric the proxy exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by route, engine path and outcome.
    pub requests: prometheus_client::metrics::family::Family<
        RequestLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    /// Time to Atlantis's response head, by status class.
    pub upstream_duration: prometheus_client::metrics::family::Family<
        UpstreamLabels,
        prometheus_client::metrics::histogram::Histogram,
    >,
    locking: locking::Locking,
    own: proxy::Own,
    tasks: tasks::Tasks,
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
        let (requests, upstream_duration) = proxy::register_http(&mut registry);
        let own = proxy::Own::register(&mut registry);
        let locking = locking::Locking::register(&mut registry);
        let tasks = tasks::Tasks::register(&mut registry);
        Self {
            registry,
            requests,
            upstream_duration,
            locking,
            own,
            tasks,
        }
    }

    /// Registers more metrics before the registry is shared.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The Prometheus text exposition format (0.0.4), which every scraper and `promtool` reads.
    pub fn encode(&self) -> String {
        exposition::prometheus_text(&self.encode_openmetrics())
    }

    /// The OpenMetrics 1.0 exposition, for scrapers that ask for it.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition a scraper asked for with its `Accept` header, and its content type.
    pub fn encode_for(&self, accept: Option<&str>) -> (&'static str, String) {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            (OPENMETRICS_CONTENT_TYPE, self.encode_openmetrics())
        } else {
            (PROMETHEUS_CONTENT_TYPE, self.encode())
        }
    }
}

#[cfg(test)]
mod tests;
