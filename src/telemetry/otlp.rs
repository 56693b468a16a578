//! OTLP/HTTP export of traces and logs, beside stdout, when configured
//! ([`OtlpConfig`]).
//!
//! - **Traces**: every span (the request span of `tracing-actix-web` among
//!   them, named `GET /route`) becomes an OpenTelemetry span.
//! - **Logs**: every event the log filter lets through becomes a log record,
//!   its fields as attributes.
//! - Both go through the SDK's batch processors (their own threads) to our
//!   [`ExportClient`]: the process's reqwest client on a small private
//!   runtime, so exporting never runs on, or waits for, the service's
//!   workers. A collector that is down costs retries on that thread, never a
//!   request.
//! - The HTTP plumbing that carries the export (hyper, reqwest, h2, rustls and
//!   OpenTelemetry's own diagnostics) is kept out of the export, or every
//!   export would log its own sending. Those events still reach stdout.
//! - [`Exporters::shutdown`] flushes what is buffered; `main` calls it after
//!   the server stops, so the last lines ("stopped") are exported too.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use secrecy::ExposeSecret;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::registry::LookupSpan;

use crate::config::OtlpConfig;
use crate::telemetry::TelemetryError;

/// How long one export request may take (connection included).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Exporters::shutdown`] waits for the last exports (both
/// providers at once), so that an unreachable collector delays the exit by
/// at most this.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of a collector's answer we read (answers are a few bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The installed providers and the runtime their exports run on.
pub struct Exporters {
    tracer: SdkTracerProvider,
    logger: SdkLoggerProvider,
    runtime: ExportRuntime,
}

impl Exporters {
    /// Builds both exporters and the layers that feed them.
    pub fn build<S>(
        config: &OtlpConfig,
    ) -> Result<(Self, impl Layer<S> + Send + Sync + 'static), TelemetryError>
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let runtime = ExportRuntime::start()?;
        let client = ExportClient::new(runtime.handle.clone())?;
        let mut headers = HashMap::new();
        if let Some(token) = &config.token {
            headers.insert("Authorization".to_owned(), token.expose_secret().to_owned());
        }
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();

        let spans = http_export(
            opentelemetry_otlp::SpanExporter::builder().with_http(),
            &config.traces_endpoint,
            &client,
            &headers,
        )
        .build()
        .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        let logs = http_export(
            opentelemetry_otlp::LogExporter::builder().with_http(),
            &config.logs_endpoint,
            &client,
            &headers,
        )
        .build()
        .map_err(|e| TelemetryError::Otlp(e.to_string()))?;

        let tracer = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource.clone())
            .build();
        let logger = SdkLoggerProvider::builder()
            .with_batch_exporter(logs)
            .with_resource(resource)
            .build();

        let layers = tracing_opentelemetry::layer()
            .with_tracer(tracer.tracer("overseer"))
            .and_then(
                opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(&logger),
            )
            .with_filter(FilterFn::new(exported));
        Ok((
            Self {
                tracer,
                logger,
                runtime,
            },
            layers,
        ))
    }

    /// Exports what is still buffered and stops the exporters. Blocks for at
    /// most [`SHUTDOWN_TIMEOUT`] (a collector that does not answer is given
    /// up on); call it once, after the server has stopped.
    pub fn shutdown(self) {
        let Self {
            tracer,
            logger,
            runtime,
        } = self;
        std::thread::scope(|scope| {
            let spans = scope.spawn(|| tracer.shutdown_with_timeout(SHUTDOWN_TIMEOUT));
            let logs = logger.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
            // Reported on stdout only: the export is what failed.
            for (signal, result) in [("traces", spans.join()), ("logs", Ok(logs))] {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(signal, error = %err, "OTLP export: shutdown incomplete");
                    }
                    Err(_) => tracing::warn!(signal, "OTLP export: shutdown panicked"),
                }
            }
        });
        runtime.stop();
    }
}

/// One signal's exporter: protobuf over HTTP to `endpoint`, through `client`.
fn http_export<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    endpoint: &url::Url,
    client: &ExportClient,
    headers: &HashMap<String, String>,
) -> B {
    builder
        .with_http_client(client.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.as_str())
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(headers.clone())
}

/// Whether an event or span is exported: not the export's own plumbing
/// (OpenTelemetry's crates log under `opentelemetry`, `opentelemetry_sdk`
/// and `opentelemetry-otlp`).
fn exported(metadata: &Metadata<'_>) -> bool {
    const PLUMBING: &[&str] = &["hyper", "hyper_util", "reqwest", "h2", "rustls", "tower"];
    let target = metadata.target();
    let root = target.split("::").next().unwrap_or(target);
    !(PLUMBING.contains(&root) || root.starts_with("opentelemetry"))
}

/// A current-thread tokio runtime on its own thread (`otlp-export`), for the
/// export requests.
struct ExportRuntime {
    handle: tokio::runtime::Handle,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl ExportRuntime {
    fn start() -> Result<Self, TelemetryError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TelemetryError::Otlp(format!("export runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                // Ends when `stop` fires or is dropped.
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| TelemetryError::Otlp(format!("export thread: {e}")))?;
        Ok(Self { handle, stop })
    }

    fn stop(self) {
        let _ = self.stop.send(());
    }
}

/// The OTLP exporters' HTTP client: our reqwest client (ring TLS, no
/// redirects, bounded time), each request run on the export runtime. The
/// SDK's batch threads wait on it with a plain executor, which is why the
/// request itself cannot run on their thread.
#[derive(Debug, Clone)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn new(runtime: tokio::runtime::Handle) -> Result<Self, TelemetryError> {
        let client = crate::outbound::build(crate::outbound::client_builder(EXPORT_TIMEOUT))
            .map_err(TelemetryError::Otlp)?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request).map_err(crate::outbound::reason)?;
        let client = self.client.clone();
        let exchange = self.runtime.spawn(async move {
            let mut response = client
                .execute(request)
                .await
                .map_err(crate::outbound::reason)?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = std::mem::take(response.headers_mut());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(crate::outbound::reason)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err("the collector's answer is too large".to_owned());
                }
                body.extend_from_slice(&chunk);
            }
            answer
                .body(Bytes::from(body))
                .map_err(|e| format!("the collector's answer: {e}"))
        });
        Ok(exchange.await??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exports_own_plumbing_is_not_exported() {
        use tracing::Level;
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;

        struct Site;
        impl tracing::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let meta = |target: &'static str| {
            Metadata::new(
                "event",
                target,
                Level::INFO,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&SITE)),
                Kind::EVENT,
            )
        };
        for target in [
            "hyper_util::client::legacy::connect::http",
            "reqwest::connect",
            "h2::codec",
            "opentelemetry-otlp",
            "opentelemetry_sdk",
        ] {
            assert!(!exported(&meta(target)), "{target}");
        }
        for target in [
            "overseer::config",
            "overseer_actors::audit",
            "actix_server::builder",
        ] {
            assert!(exported(&meta(target)), "{target}");
        }
    }
}
