//! Logging: structured JSON lines on stdout by default, pretty text if asked,
//! and traces and logs over OTLP/HTTP when configured (see [`otlp`]).
//!
//! Level conventions (from the reference system): DEBUG detailed tracing, INFO
//! operations, WARN non-critical problems, ERROR failures. A system-level
//! failure (the seed's CRITICAL) is logged at ERROR with the field
//! `critical = true`, e.g. `tracing::error!(critical = true, "...")`, so log
//! pipelines can page on it.

use std::io;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};

mod otlp;

/// Installs the global subscriber writing to `writer`, plus the OTLP export
/// when `config.otlp` is set. Call once, at start-up; keep what it returns
/// and call [`Telemetry::shutdown`] when the service has stopped.
///
/// JSON lines carry `timestamp`, `level`, `target`, the event's fields
/// (`message` among them) at the top level, and the current span's fields under
/// `span` (the request span carries `request_id`, `http.method`, `http.route`...).
pub fn init<W>(config: &LogConfig, writer: W) -> Result<Telemetry, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let stdout: Box<dyn Layer<Registry> + Send + Sync> = match config.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .pretty()
            .with_writer(writer)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry()
        .with(stdout)
        .with(EnvFilter::try_new(&config.filter)?);
    let exporters = match &config.otlp {
        None => {
            subscriber
                .try_init()
                .map_err(|e| TelemetryError::Install(e.into()))?;
            None
        }
        Some(otlp) => {
            let (exporters, layers) = otlp::Exporters::build(otlp)?;
            subscriber
                .with(layers)
                .try_init()
                .map_err(|e| TelemetryError::Install(e.into()))?;
            Some(exporters)
        }
    };
    install_panic_hook();
    Ok(Telemetry { exporters })
}

/// What [`init`] installed that needs stopping: the OTLP exporters, if any.
#[must_use = "call `shutdown` once the service has stopped, or buffered telemetry is lost"]
pub struct Telemetry {
    exporters: Option<otlp::Exporters>,
}

impl Telemetry {
    /// Flushes and stops the OTLP export (a no-op without one).
    pub fn shutdown(self) {
        if let Some(exporters) = self.exporters {
            exporters.shutdown();
        }
    }
}

/// For tests: logs go nowhere unless `TEST_LOG` is set, then to stdout (pretty).
/// Safe to call from every test; only the first call installs anything.
pub fn init_for_tests() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let config = LogConfig {
                format: LogFormat::Pretty,
                filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()),
                dir: "logs".into(),
                otlp: None,
            };
            // No exporter in tests: nothing to shut down.
            let _ = init(&config, io::stdout);
        }
    });
}

/// Panics become one structured ERROR event (with location and the panicking
/// thread) instead of a bare stderr dump. Unwinding is unchanged: supervision
/// relies on it to turn an actor panic into a restart.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = overseer_actors::supervisor::panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            panic.message = %message,
            panic.location = %location,
            thread = thread.name().unwrap_or("<unnamed>"),
            "panic"
        );
    }));
}

/// The process-wide Prometheus recorder behind the `metrics` facade, installed
/// on first use. Every application in the process (tests build several)
/// renders the same registry.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = prometheus_builder().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then this
            // handle renders an empty registry, which /metrics makes visible.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::error!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// `agent_run_latency_ms`'s buckets (milliseconds), as the seed names them.
pub const AGENT_RUN_LATENCY_BUCKETS_MS: &[f64] = &[
    50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0,
];

/// The exporter's configuration: histograms with explicit buckets where a
/// metric has them (the others are rendered as summaries).
fn prometheus_builder() -> PrometheusBuilder {
    let builder = PrometheusBuilder::new();
    let agent_runs = metrics_exporter_prometheus::Matcher::Full("agent_run_latency_ms".into());
    let http = metrics_exporter_prometheus::Matcher::Full("http_request_duration_seconds".into());
    match builder
        .set_buckets_for_metric(agent_runs, AGENT_RUN_LATENCY_BUCKETS_MS)
        .and_then(|b| b.set_buckets_for_metric(http, crate::http::metrics::HTTP_DURATION_BUCKETS))
    {
        Ok(builder) => builder,
        // Only for an empty bucket list, which the constant is not.
        Err(err) => {
            tracing::error!(error = %err, "agent_run_latency_ms buckets refused");
            PrometheusBuilder::new()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("OTLP export: {0}")]
    Otlp(String),
    #[error("could not install the log subscriber: {0}")]
    Install(Box<dyn std::error::Error + Send + Sync>),
}
