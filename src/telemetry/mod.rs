//! telemetry: logs (`tracing`), traces (OpenTelemetry over OTLP) and metrics (Prometheus).
//!
//! [`init`] installs one global `tracing` subscriber with two layers: the log formatter (text or
//! JSON, filtered by `RUST_LOG` / `telemetry.log-level`) and, when an OTLP endpoint is configured,
//! the OpenTelemetry layer that turns spans into exported traces. The transport libraries' own
//! spans (h2, hyper, tonic, tower) never reach the exporter: they would bury a request's tree, and
//! the exporter's own gRPC calls would trace themselves.

mod escape;
pub mod metrics;
mod otlp;
pub mod propagation;
pub mod spans;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use metrics::{BreakerState, FailReason, Metrics, ReleaseReason};
pub use otlp::{Protocol, RootSampler, SamplerChoice, TraceInitError, TraceSettings};
pub use propagation::{
    inject_headers, link_to_traceparent, parse_traceparent, replay_span, set_parent_from_headers,
    traceparent_of,
};

use crate::config::{LogFormat, TelemetryConfig};

/// Crates whose spans are transport plumbing, not the request's story.
const TRANSPORT_TARGETS: [&str; 8] = [
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "tower_http",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
];

/// Keeps the trace exporter alive; dropping it (or [`TelemetryGuard::shutdown`]) flushes the
/// spans still in the batch. Drop it outside async code, while the Tokio runtime that was current
/// at [`init`] still runs: the flush blocks, and the gRPC exporter's channel lives on that runtime.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn traces_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now (blocking), e.g. before a test inspects the collector.
    pub fn force_flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }

    /// Flushes the remaining spans and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            // The subscriber may still print this; the exporter itself is gone.
            eprintln!("atlantis-lock-proxy: flushing traces at shutdown failed: {e}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs logging and, when configured, trace export; reads the `OTEL_*` variables.
///
/// Call it inside the Tokio runtime that will serve (the exporters run on it). The global
/// subscriber and tracer provider are process-wide: a second call keeps the first subscriber and
/// exports nothing of its own (tests install telemetry once).
pub fn init(cfg: &TelemetryConfig) -> TelemetryGuard {
    let settings = TraceSettings::resolve(cfg, |k| std::env::var(k).ok());
    let (provider, trace_error) = match settings.endpoint.as_deref() {
        None => (None, None),
        Some(endpoint) => match otlp::provider(&settings, endpoint) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        },
    };
    let otel_layer = provider.as_ref().map(|p| {
        let tracer = p.tracer("atlantis-lock-proxy");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(otel_filter())
    });
    let installed = Registry::default()
        .with(fmt_layer(cfg))
        .with(otel_layer)
        .try_init()
        .is_ok();
    // A second call (tests) could not install its layer: its provider would export nothing.
    let provider = provider.filter(|_| installed);
    if let Some(p) = &provider {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        opentelemetry::global::set_tracer_provider(p.clone());
    }
    match (&settings.endpoint, trace_error) {
        (Some(ep), None) if installed => tracing::info!(
            endpoint = %ep,
            protocol = ?settings.protocol,
            service = %settings.service_name,
            sampler = ?settings.sampler,
            "exporting traces over OTLP"
        ),
        (Some(_), Some(e)) => tracing::error!(error = %e, "traces are off"),
        (Some(_), None) => {
            tracing::warn!("telemetry was already initialised; keeping the first exporter")
        }
        (None, _) => {}
    }
    TelemetryGuard { provider }
}

/// Installs logging only (no trace export), e.g. for CLI subcommands.
pub fn init_logging(cfg: &TelemetryConfig) {
    let _ = Registry::default().with(fmt_layer(cfg)).try_init();
}

fn fmt_layer(cfg: &TelemetryConfig) -> Box<dyn Layer<Registry> + Send + Sync> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector would keep the escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_span_events(FmtSpan::NONE)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => layer.json().with_filter(filter).boxed(),
        // Request-derived field values are escaped (no forged lines, no terminal control).
        LogFormat::Text => layer
            .fmt_fields(escape::EscapedFields)
            .with_filter(filter)
            .boxed(),
    }
}

/// The exporter sees the proxy's spans at `info` and above, never the transport's.
fn otel_filter() -> Targets {
    TRANSPORT_TARGETS
        .iter()
        .fold(Targets::new().with_default(LevelFilter::INFO), |t, name| {
            t.with_target(*name, LevelFilter::OFF)
        })
}

#[cfg(test)]
mod tests;
