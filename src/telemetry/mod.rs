//! telemetry: logs (`tracing`), metrics (Prometheus) and, later, traces (OpenTelemetry).

pub mod metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

pub use metrics::Metrics;

use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global log subscriber: `RUST_LOG` wins over `telemetry.log-level`.
///
/// Safe to call more than once (tests): later calls keep the first subscriber.
pub fn init_logging(cfg: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    let _ = match cfg.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
