//! `Application::build`: binds the listener, opens the store, prepares the
//! schema and assembles the HTTP server. Tests build the same application
//! in-process on port 0.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::rt::task::JoinHandle;
use actix_web::{App, HttpServer, web};
use overseer_actors::{Clock, SystemClock};
use tokio::sync::watch;
use tracing_actix_web::TracingLogger;

use crate::config::Config;
use crate::domain::TokenHash;
use crate::http::{self, AppState};
use crate::services::health::{Health, SchemaStatus};
use crate::store::{Store, StoreError};
use crate::{supervision, telemetry};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("could not open the store: {0}")]
    Store(#[from] StoreError),
    #[error("could not start the actors (audit spool, log directory or HTTP client): {0}")]
    AuditFiles(#[source] std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    /// The `/metrics` listener of `METRICS_BIND_ADDR`, and its port.
    metrics_server: Option<(Server, u16)>,
    store: Store,
    auditor: overseer_actors::audit::Auditor,
    sse: overseer_actors::activity::SseHub,
    supervisor: overseer_actors::supervisor::Supervisor,
    schema_task: Option<JoinHandle<()>>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds the application reading time from `clock` (tests move it by hand).
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // The recorder first: actors record metrics as they start.
        let metrics = telemetry::metrics_handle();
        let store = Store::open(&config.database)?;

        // The schema is prepared before the first request when the database
        // answers; when it does not, the service starts anyway, reports itself
        // unhealthy and keeps trying in the background.
        let (schema_tx, schema_rx) =
            watch::channel(SchemaStatus::Pending("not attempted yet".into()));
        let schema_task = match prepare_schema(&store, config.database.auto_migrate).await {
            Ok(()) => {
                schema_tx.send_replace(SchemaStatus::Current);
                None
            }
            Err(reason) => {
                tracing::error!(
                    database = %config.database.display_url(),
                    %reason,
                    "database not ready at start-up; serving anyway and retrying in the background"
                );
                schema_tx.send_replace(SchemaStatus::Pending(reason));
                Some(actix_web::rt::spawn(retry_schema(
                    store.clone(),
                    config.database.auto_migrate,
                    schema_tx,
                )))
            }
        };

        let addr = config.http.bind_addr;
        let listener =
            TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;

        let (metrics_access, metrics_warning) = http::metrics::MetricsAccess::from_config(&config);
        if let Some(warning) = metrics_warning {
            tracing::warn!("{warning}");
        }

        let actors =
            supervision::start(&config, &store, clock.clone()).map_err(StartupError::AuditFiles)?;
        let auditor = actors.auditor.clone();
        let sse = actors.sse.clone();
        let supervisor = actors.supervisor.clone();
        let state = web::Data::new(AppState {
            store: store.clone(),
            clock,
            health: Health::new(
                store.clone(),
                schema_rx,
                &actors,
                config.http.health_check_timeout,
            ),
            admin_token_hash: TokenHash::of_secret(&config.admin_token.token),
            actors,
            metrics,
            audit_requests: config.audit.record_requests,
            audit_token_validations: config.audit.record_token_validations,
            environment: config.environment,
            trusted_proxies: config.security.trusted_proxies.clone(),
            ssrf: config.ssrf.clone(),
            sse: config.sse.clone(),
            sessions: http::dashboard::Sessions::new(&config),
            metrics_access,
            health_details_token: config
                .http
                .health_details_token
                .as_ref()
                .map(TokenHash::of_secret),
            delivery_spend_max_multiple: config.delivery_spend_max_multiple,
        });
        let max_body_bytes = config.http.max_body_bytes;
        let fault_injection = config.supervision.fault_injection;
        let ingest_body_limit = config.audit.max_body_bytes;
        let separate_metrics = config.http.metrics_bind_addr.is_some();
        let metrics_server = match config.http.metrics_bind_addr {
            Some(addr) => Some(metrics_server(addr, state.clone())?),
            None => None,
        };
        if fault_injection {
            tracing::warn!("fault injection is enabled: POST /admin/debug/faults");
        }
        let server = HttpServer::new(move || {
            App::new()
                // Closest to the handlers: each reads the caller a handler
                // authenticated and the answer it gave.
                .wrap(from_fn(http::access::report_cross_tenant))
                .wrap(from_fn(http::admin::audit_admin_requests))
                .wrap(http::json_errors())
                .wrap(from_fn(http::request_id_header))
                .wrap(from_fn(http::metrics::record_request))
                .wrap(TracingLogger::default())
                .app_data(state.clone())
                .configure(|cfg| http::extractor_config(cfg, max_body_bytes))
                .configure(|cfg| {
                    http::routes(cfg, fault_injection, ingest_body_limit, !separate_metrics)
                })
                .default_service(web::to(http::not_found))
        })
        .workers(config.http.workers)
        // Before `listen`: the callback is captured when a listener is added.
        .on_connect(http::connection::on_connect(config.http.write_timeout))
        .shutdown_timeout(config.http.shutdown_timeout.as_secs().max(1))
        // Signals are handled in `run_until_stopped`, which also stops the
        // rest of the application after the server.
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();

        tracing::info!(address = %local, port = local.port(), "listening");
        Ok(Self {
            port: local.port(),
            server,
            metrics_server,
            store,
            auditor,
            sse,
            supervisor,
            schema_task,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `/metrics` listener, when `METRICS_BIND_ADDR` gives
    /// it one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: stop
    /// accepting, let in-flight requests finish (up to `SHUTDOWN_TIMEOUT`),
    /// drain the audit queue, stop the actors, close the database
    /// connections. All of it before the runtime ends: a pooled connection
    /// still checked out when its runtime is gone has nowhere to go back to
    /// (sqlx panics handing it back).
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = &'static str> + 'static,
    {
        let Application {
            server,
            metrics_server,
            store,
            auditor,
            sse,
            supervisor,
            schema_task,
            ..
        } = self;
        let handle = server.handle();
        let metrics_server = metrics_server.map(|(server, _)| server);
        let metrics_handle = metrics_server.as_ref().map(Server::handle);
        let trigger = actix_web::rt::spawn(async move {
            let signal = shutdown.await;
            tracing::info!(signal, "shutdown requested; draining in-flight requests");
            // Activity streams never finish by themselves: end them now, or
            // the graceful stop would wait its whole timeout on them.
            sse.close_all();
            if let Some(metrics) = metrics_handle {
                metrics.stop(true).await;
            }
            handle.stop(true).await;
        });

        let served = match metrics_server {
            Some(metrics) => {
                let (served, metrics_served) = futures_util::future::join(server, metrics).await;
                if let Err(err) = metrics_served {
                    tracing::error!(error = %err, "the /metrics listener failed");
                }
                served
            }
            None => server.await,
        };

        trigger.abort();
        if let Some(task) = schema_task {
            task.abort();
        }
        // The last requests' audit events: committed, or spooled for the
        // next start.
        auditor.shutdown(AUDIT_DRAIN).await;
        // Their work in flight is dropped here, on this runtime: the
        // connections it held go back to the pool, which then closes them.
        supervisor.shutdown().await;
        if tokio::time::timeout(POOL_CLOSE, store.close())
            .await
            .is_err()
        {
            // A task outside the actors (a last audit append, an agent run's
            // record) still holds a connection; it is closed when returned.
            tracing::warn!(
                within_ms = POOL_CLOSE.as_millis() as u64,
                "database connections still in use at shutdown"
            );
        }
        tracing::info!("stopped");
        served
    }
}

/// The listener of `METRICS_BIND_ADDR`: `/metrics` and nothing else (404),
/// one worker, sharing the application's state.
fn metrics_server(
    addr: std::net::SocketAddr,
    state: web::Data<AppState>,
) -> Result<(Server, u16), StartupError> {
    let listener = TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?
        .port();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(http::json_errors())
            .app_data(state.clone())
            .configure(http::metrics::routes)
            .default_service(web::to(http::not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(|source| StartupError::Bind { addr, source })?
    .run();
    tracing::info!(address = %addr, port, "serving /metrics on its own listener");
    Ok((server, port))
}

/// How long shutdown waits for the audit queue to drain before spooling it.
const AUDIT_DRAIN: Duration = Duration::from_secs(1);

/// How long shutdown waits for checked-out database connections to come back.
const POOL_CLOSE: Duration = Duration::from_secs(5);

/// Makes the schema current: migrates, or with `AUTO_MIGRATE=false` checks that
/// someone else has. The error is a short reason fit for `/health`.
async fn prepare_schema(store: &Store, auto_migrate: bool) -> Result<(), String> {
    if auto_migrate {
        store.migrate().await.map_err(|e| e.short_reason())
    } else {
        match store.schema_is_current().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("migrations not applied (AUTO_MIGRATE=false)".into()),
            Err(e) => Err(e.short_reason()),
        }
    }
}

/// Retries [`prepare_schema`] with capped exponential backoff until it succeeds.
async fn retry_schema(store: Store, auto_migrate: bool, status: watch::Sender<SchemaStatus>) {
    let mut backoff = Duration::from_millis(250);
    for attempt in 2u64.. {
        actix_web::rt::time::sleep(backoff).await;
        match prepare_schema(&store, auto_migrate).await {
            Ok(()) => {
                tracing::info!(attempt, "database reachable and schema current");
                status.send_replace(SchemaStatus::Current);
                return;
            }
            Err(reason) => {
                tracing::warn!(attempt, %reason, retry_in_ms = backoff.as_millis() as u64, "database still not ready");
                status.send_replace(SchemaStatus::Pending(reason));
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Resolves on SIGTERM or SIGINT, naming it.
async fn shutdown_signal() -> &'static str {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
                "SIGTERM"
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        name = interrupt => name,
        name = terminate => name,
    }
}
