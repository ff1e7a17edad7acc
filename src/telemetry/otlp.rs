//! Trace export: which endpoint, protocol, sampler and service name (config file, overridden by
//! the standard `OTEL_*` variables), and the tracer provider with its batch OTLP exporter.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::config::TelemetryConfig;

/// How long one export may take before the batch exporter gives up on it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why traces could not be turned on.
#[derive(Debug, thiserror::Error)]
pub enum TraceInitError {
    /// The gRPC exporter's channel lives on a Tokio runtime, and there was none.
    #[error("the OTLP gRPC exporter must be built inside a Tokio runtime")]
    NoRuntime,
    /// The exporter rejected its configuration.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    HttpProtobuf,
}

/// Head sampling, as `OTEL_TRACES_SAMPLER` names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerChoice {
    /// Sample everything.
    AlwaysOn,
    /// Sample nothing.
    AlwaysOff,
    /// Sample this share of new traces.
    Ratio(f64),
    /// Follow an incoming parent's decision; new traces use the inner choice.
    ParentBased(RootSampler),
}

/// The sampler of root spans under [`SamplerChoice::ParentBased`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    /// Sample every new trace.
    AlwaysOn,
    /// Sample no new trace.
    AlwaysOff,
    /// Sample this share of new traces.
    Ratio(f64),
}

/// Everything needed to export traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// Collector endpoint; traces are off when `None`.
    pub endpoint: Option<String>,
    /// Transport.
    pub protocol: Protocol,
    /// Head sampler.
    pub sampler: SamplerChoice,
    /// `service.name` resource attribute.
    pub service_name: String,
}

impl TraceSettings {
    /// Settings from `telemetry:`; the standard `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG` win when set, as `ALP_*` variables win over the file.
    pub fn resolve(cfg: &TelemetryConfig, env: impl Fn(&str) -> Option<String>) -> Self {
        let env = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT").or_else(|| cfg.otlp_endpoint.clone());
        let protocol = match env("OTEL_EXPORTER_OTLP_PROTOCOL")
            .as_deref()
            .unwrap_or(&cfg.otlp_protocol)
        {
            "http/protobuf" => Protocol::HttpProtobuf,
            _ => Protocol::Grpc,
        };
        let service_name = env("OTEL_SERVICE_NAME").unwrap_or_else(|| cfg.service_name.clone());
        let arg = env("OTEL_TRACES_SAMPLER_ARG").and_then(|a| a.parse::<f64>().ok());
        let ratio = arg.unwrap_or(cfg.sampling_ratio).clamp(0.0, 1.0);
        let parent_ratio = if ratio >= 1.0 {
            RootSampler::AlwaysOn
        } else {
            RootSampler::Ratio(ratio)
        };
        let sampler = match env("OTEL_TRACES_SAMPLER").as_deref() {
            Some("always_on") => SamplerChoice::AlwaysOn,
            Some("always_off") => SamplerChoice::AlwaysOff,
            Some("traceidratio") => SamplerChoice::Ratio(ratio),
            Some("parentbased_always_on") => SamplerChoice::ParentBased(RootSampler::AlwaysOn),
            Some("parentbased_always_off") => SamplerChoice::ParentBased(RootSampler::AlwaysOff),
            // `parentbased_traceidratio`, unknown names and no variable: the config's ratio under
            // the parent's decision, so a sampled caller's trace is never cut in the middle.
            _ => SamplerChoice::ParentBased(parent_ratio),
        };
        Self {
            endpoint,
            protocol,
            sampler,
            service_name,
        }
    }

    /// The SDK sampler.
    pub fn sdk_sampler(&self) -> Sampler {
        let root = |r: RootSampler| match r {
            RootSampler::AlwaysOn => Sampler::AlwaysOn,
            RootSampler::AlwaysOff => Sampler::AlwaysOff,
            RootSampler::Ratio(x) => Sampler::TraceIdRatioBased(x),
        };
        match self.sampler {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::Ratio(x) => Sampler::TraceIdRatioBased(x),
            SamplerChoice::ParentBased(r) => Sampler::ParentBased(Box::new(root(r))),
        }
    }

    /// The URL the HTTP exporter posts to: a bare collector address gets `/v1/traces`.
    pub fn http_traces_url(endpoint: &str) -> String {
        let trimmed = endpoint.trim_end_matches('/');
        let has_path = trimmed
            .split_once("://")
            .map(|(_, rest)| rest.contains('/'))
            .unwrap_or(false);
        if has_path {
            trimmed.to_string()
        } else {
            format!("{trimmed}/v1/traces")
        }
    }
}

/// Builds the tracer provider with a batch exporter toward `endpoint`.
pub fn provider(
    settings: &TraceSettings,
    endpoint: &str,
) -> Result<SdkTracerProvider, TraceInitError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| TraceInitError::NoRuntime)?;
    let exporter = match settings.protocol {
        Protocol::Grpc => {
            // The tonic channel spawns its connection task on the current runtime; the batch
            // processor's own thread then hands it spans.
            let _entered = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .build()?
        }
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(TraceSettings::http_traces_url(endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(OnRuntime {
                runtime,
                inner: Arc::new(
                    opentelemetry_http::hyper::HyperClient::with_default_connector(
                        EXPORT_TIMEOUT,
                        None,
                    ),
                ),
            })
            .build()?,
    };
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(settings.sdk_sampler())
        .with_resource(resource)
        .build())
}

/// The hyper client needs a Tokio runtime, but the batch processor exports from its own thread:
/// each request is spawned onto the runtime that was current when telemetry started.
struct OnRuntime {
    runtime: tokio::runtime::Handle,
    inner: Arc<opentelemetry_http::hyper::HyperClient>,
}

impl fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnRuntime(HyperClient)")
    }
}

impl HttpClient for OnRuntime {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let inner = self.inner.clone();
        let task = self
            .runtime
            .spawn(async move { inner.send_bytes(request).await });
        Box::pin(async move { task.await.map_err(|e| Box::new(e) as HttpError)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;
    use std::collections::HashMap;

    fn cfg() -> TelemetryConfig {
        TelemetryConfig {
            log_format: LogFormat::Text,
            log_level: "info".into(),
            otlp_endpoint: Some("http://collector:4317".into()),
            otlp_protocol: "grpc".into(),
            sampling_ratio: 0.25,
            service_name: "from-file".into(),
        }
    }

    fn resolve(env: &[(&str, &str)]) -> TraceSettings {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TraceSettings::resolve(&cfg(), |k| env.get(k).cloned())
    }

    #[test]
    fn the_file_configures_traces_when_no_otel_variable_is_set() {
        let s = resolve(&[]);
        assert_eq!(s.endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(s.protocol, Protocol::Grpc);
        assert_eq!(s.service_name, "from-file");
        assert_eq!(
            s.sampler,
            SamplerChoice::ParentBased(RootSampler::Ratio(0.25))
        );
    }

    #[test]
    fn standard_otel_variables_win_over_the_file() {
        let s = resolve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ]);
        assert_eq!(s.endpoint.as_deref(), Some("http://other:4318"));
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.service_name, "from-env");
        assert_eq!(s.sampler, SamplerChoice::Ratio(0.5));
        let off = resolve(&[("OTEL_TRACES_SAMPLER", "always_off")]);
        assert_eq!(off.sampler, SamplerChoice::AlwaysOff);
    }

    #[test]
    fn a_full_ratio_samples_every_new_trace() {
        let s = resolve(&[("OTEL_TRACES_SAMPLER_ARG", "1")]);
        assert_eq!(s.sampler, SamplerChoice::ParentBased(RootSampler::AlwaysOn));
    }

    #[test]
    fn a_bare_http_collector_address_gets_the_traces_path() {
        assert_eq!(
            TraceSettings::http_traces_url("http://c:4318/"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            TraceSettings::http_traces_url("http://c:4318/custom/traces"),
            "http://c:4318/custom/traces"
        );
    }

    #[test]
    fn exporting_needs_a_runtime() {
        let s = resolve(&[]);
        assert!(matches!(
            provider(&s, "http://127.0.0.1:4317"),
            Err(TraceInitError::NoRuntime)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_protobuf_export_runs_from_the_batch_thread() {
        use opentelemetry::trace::{Tracer as _, TracerProvider as _};
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message as _;
        use std::sync::Mutex;

        let got: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| async move {
                let req = ExportTraceServiceRequest::decode(body).expect("protobuf body");
                sink.lock().unwrap().push(req);
                ""
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let settings = TraceSettings {
            endpoint: Some(url.clone()),
            protocol: Protocol::HttpProtobuf,
            sampler: SamplerChoice::AlwaysOn,
            service_name: "http-export-test".into(),
        };
        let provider = provider(&settings, &url).unwrap();
        provider.tracer("test").in_span("over-http", |_| {});
        // The batch processor exports from its own thread; the flush blocks until it is done.
        let p = provider.clone();
        tokio::task::spawn_blocking(move || p.force_flush())
            .await
            .unwrap()
            .unwrap();
        let got = got.lock().unwrap().clone();
        let rs = &got.first().expect("one export").resource_spans[0];
        let service = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name");
        assert!(format!("{service:?}").contains("http-export-test"));
        assert_eq!(rs.scope_spans[0].spans[0].name, "over-http");
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .unwrap()
            .unwrap();
    }
}
