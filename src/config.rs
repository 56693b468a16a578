//! One typed configuration, read from environment variables.
//!
//! Every knob has a documented default (the table in docs/configuration.md is
//! the same list, checked by the test in `config/documented.rs`); an empty
//! variable means "use the default"; an invalid value stops start-up with one
//! line naming the variable. Secrets are held in
//! [`SecretString`] and never printed: [`Config::log_effective`] logs the
//! effective configuration with them masked.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use overseer_actors::supervisor::{RestartPolicy, RestartType};
use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

pub use crate::store::{Backend, DatabaseConfig};

/// The default database: a SQLite file under `./data/`, created with its folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/overseer.db";

/// Minimum length of `ADMIN_TOKEN` in production.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    /// What this deployment allows of client-given URLs and credentials.
    pub fn input_policy(self) -> crate::domain::InputPolicy {
        match self {
            Environment::Development => crate::domain::InputPolicy::DEVELOPMENT,
            Environment::Production => crate::domain::InputPolicy::PRODUCTION,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// A configuration value that could not be used. The message is one line and
/// names the variable; a secret's value is never part of it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    /// `SKIP_CRON=true`: no scheduler starts.
    pub skip_cron: bool,
    /// `AGENT_AUDIT_ENABLED` (true): agent runs are stored and audited;
    /// `false` stores and audits none (the API still answers, `202` with
    /// `recorded: false`, and the metrics still count).
    pub agent_audit_enabled: bool,
    pub admin_token: AdminToken,
    pub supervision: SupervisionConfig,
    pub audit: AuditSettings,
    pub security: SecuritySettings,
    pub mock_adapter: MockAdapterSettings,
    pub slack: SlackSettings,
    /// `MEDIA_BUY_STATUS_CHECK_INTERVAL` (60 s; empty = default): how often
    /// the status scheduler runs (unless `SKIP_CRON`).
    pub status_check_interval: Duration,
    /// `DELIVERY_WEBHOOK_INTERVAL` (3600 s; empty = default): how often the
    /// delivery-report cycle runs (unless `SKIP_CRON`).
    pub delivery_interval: Duration,
    /// `DELIVERY_SPEND_MAX_BUDGET_MULTIPLE` (2; 1 to 9, decimals allowed;
    /// empty = default): a delivery post after which a buy's total spend
    /// would exceed this many times its budget is refused (422). The ceiling
    /// of 9 keeps every sum of a buy's spend inside 64 bits (the domain's
    /// type, parsed here).
    pub delivery_spend_max_multiple: crate::domain::SpendMultiple,
    /// The outbound guard (`crate::ssrf`) for every URL the service calls
    /// (Slack and buyers' webhooks): `WEBHOOK_ALLOWED_CIDRS`,
    /// `WEBHOOK_ALLOWED_HOSTS` (comma-separated) are what may be reached
    /// despite its rules; `https` only in production.
    pub ssrf: crate::ssrf::SsrfPolicy,
    /// `WEBHOOK_MAX_ATTEMPTS` (6), `WEBHOOK_RETRY_BASE` (2 s),
    /// `WEBHOOK_DEFAULT_RETRY_AFTER` (30 s), `WEBHOOK_POLL_INTERVAL` (250 ms),
    /// `WEBHOOK_LEASE` (60 s: how long a claimed request stays claimed if
    /// its sender dies): the buyers' webhook sender.
    pub webhook: overseer_actors::webhook::WebhookConfig,
    /// `WEBHOOK_TIMEOUT` (10 s): one request to a buyer, connection included.
    pub webhook_timeout: Duration,
    /// `WEBHOOK_DOCKER_LOCALHOST_REWRITE` (false): send buyers' `localhost`
    /// URLs to `host.docker.internal`.
    pub webhook_docker_rewrite: bool,
    /// `ALERT_*`: the alert rules' interval, thresholds and windows (no timer
    /// with `SKIP_CRON`).
    pub alerts: overseer_actors::alerts::AlertConfig,
    pub sse: SseSettings,
}

/// The live activity stream (`crate::services::activity`).
#[derive(Debug, Clone)]
pub struct SseSettings {
    /// `SSE_CLIENT_BUFFER` (1,024 events): how many events a client may
    /// have waiting before it is sent `resync` and dropped (a client with
    /// nothing waiting always takes the next committed batch whole);
    /// `SSE_MAX_BUFFERED_BYTES` (4 MiB): likewise in bytes, each waiting
    /// batch counted whole since that is what it keeps in memory (about
    /// eight batches of 500 ordinary events, so a reader that keeps up is
    /// never dropped by it; 50 slow streams of a tenant hold at most
    /// 200 MiB, and streams behind on the same events share them);
    /// `SSE_MAX_STREAMS_PER_TENANT` (50) and `SSE_MAX_STREAMS` (10,000):
    /// open streams allowed.
    pub hub: overseer_actors::activity::SseConfig,
    /// `SSE_HEARTBEAT_INTERVAL` (15 s): a comment on an idle stream, which
    /// also finds dead peers.
    pub heartbeat: Duration,
    /// `SSE_BACKFILL` (50): events a new connection without `Last-Event-ID`
    /// receives first.
    pub backfill: u32,
    /// `SSE_MAX_REPLAY` (10,000): beyond this many events to replay, a
    /// resuming client gets `resync` and the newest `SSE_BACKFILL` instead.
    pub max_replay: u32,
    /// `SSE_RETRY_MS` (3,000): the reconnection delay the stream asks for.
    pub retry_ms: u64,
    /// `SESSION_SECRET` (at least 32 characters): the key of the dashboard's
    /// session cookies. Unset, the key is derived from `ADMIN_TOKEN`, so
    /// replicas sharing that token accept each other's sessions and a new
    /// admin token ends every session.
    pub session_secret: Option<SecretString>,
    /// `SESSION_TTL` (12 h): how long a dashboard sign-in lasts.
    pub session_ttl: Duration,
}

/// The Slack router (see `overseer_actors::slack::router`).
#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// `SLACK_WEBHOOK_URL`, `SLACK_AUDIT_WEBHOOK_URL`, `SLACK_HITL_WEBHOOK_URL`
    /// (service-wide, for events with no tenant); `ADMIN_UI_URL` (buttons);
    /// `SLACK_DIGEST_THRESHOLD` (10); `SLACK_RATE_PER_SECOND` (1) and
    /// `SLACK_BURST` (3) per webhook; `SLACK_MAX_ATTEMPTS` (8);
    /// `SLACK_RETRY_BASE` (2 s); `SLACK_DEFAULT_RETRY_AFTER` (30 s);
    /// `SLACK_POLL_INTERVAL` (250 ms); `SLACK_LEASE` (60 s: how long a
    /// claimed message stays claimed if its sender dies).
    pub router: overseer_actors::slack::SlackConfig,
    /// `SLACK_TIMEOUT` (10 s): one POST to Slack, connection included.
    pub timeout: Duration,
}

/// The security monitor's windows and the client-address rule.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// `SECURITY_*` windows and thresholds (defaults in `SecurityConfig`).
    pub monitor: overseer_actors::security::SecurityConfig,
    /// `TRUSTED_PROXIES` (comma-separated CIDRs; none by default): peers
    /// whose `X-Forwarded-For` is read, from the right, to find the client
    /// address (`crate::domain::TrustedProxies`). With none, the header is
    /// ignored: a client could otherwise pick its own address.
    pub trusted_proxies: crate::domain::TrustedProxies,
}

/// `MOCK_ADAPTER`: simulated delivery for active media buys (demos).
#[derive(Debug, Clone)]
pub struct MockAdapterSettings {
    pub enabled: bool,
    /// `MOCK_ADAPTER_INTERVAL`: how often delivery is simulated.
    pub interval: Duration,
}

/// The audit write path (see `overseer_actors::audit`).
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// `AUDIT_BATCH_SIZE` (500): a batch is flushed when this many events wait.
    pub batch_size: usize,
    /// `AUDIT_FLUSH_INTERVAL_MS` (20): or when the oldest has waited this long.
    pub flush_interval: Duration,
    /// `AUDIT_FLUSH_PIPELINE` (2 on PostgreSQL, 1 on SQLite): batches in
    /// flight at once; the next one's transaction is under way while the
    /// previous one commits (1: one batch at a time).
    pub pipeline: usize,
    /// `AUDIT_QUEUE_CAPACITY` (50,000): events waiting beyond which ingestion
    /// answers 503 with `Retry-After`.
    pub queue_capacity: usize,
    /// `AUDIT_MAX_VALUE_CHARS` (1,000): longer strings in `details` are cut.
    pub max_value_chars: usize,
    /// `AUDIT_MAX_BODY_BYTES` (16 MiB): request body limit of the ingest route
    /// (up to 1,000 events of up to 64 KiB of details each).
    pub max_body_bytes: usize,
    /// `AUDIT_SPOOL_DIR` (`data/spool`): batches the database could not take.
    pub spool_dir: PathBuf,
    /// `LOG_RETENTION_DAYS` (30): rotated sink files older than this are removed.
    pub retention_days: u32,
    /// `AUDIT_LOG_FILE`, `AUDIT_ERROR_LOG_FILE`, `AUDIT_STRUCTURED_LOG_FILE`,
    /// `AUDIT_SECURITY_LOG_FILE` (all true): which file sinks are written.
    pub audit_log: bool,
    pub error_log: bool,
    pub structured_log: bool,
    pub security_log: bool,
    /// `AUDIT_REQUESTS` (true): the middleware records every `/api/v1` request.
    pub record_requests: bool,
    /// `AUDIT_TOKEN_VALIDATIONS` (true): every successful token validation is
    /// recorded (`token_validated`). Refusals are recorded regardless.
    pub record_token_validations: bool,
}

#[derive(Debug, Clone)]
pub struct SupervisionConfig {
    /// `SUPERVISOR_MAX_RESTARTS` (5) in `SUPERVISOR_RESTART_WINDOW` (30 s), then
    /// the actor is marked down; backoff from `SUPERVISOR_BACKOFF_INITIAL`
    /// (100 ms) doubling to `SUPERVISOR_BACKOFF_MAX` (30 s).
    pub policy: RestartPolicy,
    /// `ENABLE_FAULT_INJECTION=true`: `POST /admin/debug/faults` exists.
    pub fault_injection: bool,
    /// `DATABASE_WATCH_INTERVAL` (10 s): how often the database watch probes.
    pub database_watch_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `BIND_ADDR`, default `0.0.0.0:8080`. Port 0 picks a free port (tests).
    pub bind_addr: SocketAddr,
    /// `HTTP_WORKERS`, default: the number of CPUs.
    pub workers: usize,
    /// `MAX_BODY_BYTES`, default 1 MiB: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `SHUTDOWN_TIMEOUT`, default 8 s: how long in-flight requests may take to
    /// finish after SIGTERM before they are cut, so the process exits within 10 s.
    pub shutdown_timeout: Duration,
    /// `HEALTH_CHECK_TIMEOUT`, default 2 s: the database check in `/health`.
    pub health_check_timeout: Duration,
    /// `METRICS_TOKEN`: when set, `GET /metrics` needs `Authorization:
    /// Bearer <it>` (401 otherwise), on whichever listener serves it.
    pub metrics_token: Option<SecretString>,
    /// `METRICS_BIND_ADDR`: when set, `/metrics` is served on a listener of
    /// its own at this address (an internal interface, `127.0.0.1:9090`)
    /// and no longer on `BIND_ADDR` (404 there). Without `METRICS_TOKEN` it
    /// is open on that listener: the address is the protection.
    pub metrics_bind_addr: Option<SocketAddr>,
    /// `METRICS_PUBLIC`, default `false`: in production, with neither
    /// `METRICS_TOKEN` nor `METRICS_BIND_ADDR`, `/metrics` answers 401 to
    /// everyone unless this is `true` (open to anyone, with a start-up
    /// warning). No effect in development, where `/metrics` is open unless
    /// `METRICS_TOKEN` is set.
    pub metrics_public: bool,
    /// `HEALTH_DETAILS_TOKEN`: a bearer token (a secret) for monitors that
    /// may read `/health`'s details (tenant ids, webhook hosts, error
    /// texts); the super admin's token may too. Anonymous callers get the
    /// verdict and each component's state only.
    pub health_details_token: Option<SecretString>,
    /// `HTTP_WRITE_TIMEOUT`, default 30 s: a connection whose client accepts
    /// none of the bytes sent to it for this long is closed
    /// (`TCP_USER_TIMEOUT`, Linux; see `http::connection`). Twice the
    /// activity stream's heartbeat: a reading client's kernel acknowledges
    /// within milliseconds, so this is a client that has stopped reading or
    /// gone away, and its stream's slot and buffers are released.
    pub write_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `LOG_FORMAT`: `json` (default) or `pretty`.
    pub format: LogFormat,
    /// `RUST_LOG` if set (tracing directives), else `LOG_LEVEL` (default `info`).
    pub filter: String,
    /// `LOG_DIR`, default `logs/`: where the audit file sinks write.
    pub dir: PathBuf,
    /// Traces and logs also exported over OTLP/HTTP; `None` keeps them on
    /// stdout only.
    pub otlp: Option<OtlpConfig>,
}

/// OTLP/HTTP export (protobuf), on when `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `LOGFIRE_TOKEN` is set and off otherwise.
///
/// - `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL; `/v1/traces` and
///   `/v1/logs` are appended, as the OpenTelemetry specification says.
///   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`
///   override one signal's full URL, but do not turn export on by themselves.
/// - `LOGFIRE_TOKEN`: a Pydantic Logfire write token, sent as the
///   `Authorization` header; without an endpoint it points the export at
///   Logfire (the region a token names, `pylf_v1_eu_…` or `pylf_v1_us_…`, else
///   `logfire-api.pydantic.dev`).
/// - `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,…`) adds headers; it is read by
///   the exporter and never logged.
/// - `OTEL_SERVICE_NAME`, default `overseer`: the resource's `service.name`.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub traces_endpoint: url::Url,
    pub logs_endpoint: url::Url,
    pub token: Option<SecretString>,
    pub service_name: String,
}

impl OtlpConfig {
    /// The collector's origin, for the effective-configuration line (no path,
    /// no credentials).
    pub fn display_endpoint(&self) -> String {
        self.traces_endpoint.origin().ascii_serialization()
    }
}

/// The bootstrap super-admin token (`ADMIN_TOKEN`).
#[derive(Debug, Clone)]
pub struct AdminToken {
    pub token: SecretString,
    /// True when none was configured and one was generated for this run
    /// (development only); `main` prints it once.
    pub generated: bool,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads the configuration through `lookup`, so tests need not touch the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);

        let environment = env.parse_with("ENVIRONMENT", Environment::Development, |v| {
            match v.to_ascii_lowercase().as_str() {
                "development" | "dev" => Ok(Environment::Development),
                "production" | "prod" => Ok(Environment::Production),
                _ => Err("expected `development` or `production`".into()),
            }
        })?;

        let http = HttpConfig {
            bind_addr: env.parse_with(
                "BIND_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 8080)),
                |v| {
                    v.parse()
                        .map_err(|_| "expected an IP address and port, such as 0.0.0.0:8080".into())
                },
            )?,
            workers: env.positive_int(
                "HTTP_WORKERS",
                std::thread::available_parallelism().map_or(2, usize::from),
            )?,
            max_body_bytes: env.positive_int("MAX_BODY_BYTES", 1024 * 1024)?,
            shutdown_timeout: env.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(8))?,
            health_check_timeout: env.duration("HEALTH_CHECK_TIMEOUT", Duration::from_secs(2))?,
            metrics_token: env.get("METRICS_TOKEN")?.map(SecretString::from),
            metrics_bind_addr: env.parse_with("METRICS_BIND_ADDR", None, |v| {
                v.parse()
                    .map(Some)
                    .map_err(|_| "expected an IP address and port, such as 127.0.0.1:9090".into())
            })?,
            metrics_public: env.bool("METRICS_PUBLIC", false)?,
            health_details_token: env.get("HEALTH_DETAILS_TOKEN")?.map(SecretString::from),
            write_timeout: env.duration("HTTP_WRITE_TIMEOUT", Duration::from_secs(30))?,
        };

        let database = database_config(&env)?;

        let log = LogConfig {
            format: env.parse_with("LOG_FORMAT", LogFormat::Json, |v| {
                match v.to_ascii_lowercase().as_str() {
                    "json" => Ok(LogFormat::Json),
                    "pretty" | "text" => Ok(LogFormat::Pretty),
                    _ => Err("expected `json` or `pretty`".into()),
                }
            })?,
            filter: log_filter(&env)?,
            dir: env.parse_with("LOG_DIR", PathBuf::from("logs"), |v| Ok(PathBuf::from(v)))?,
            otlp: otlp_config(&env)?,
        };

        let admin_token = admin_token(&env, environment)?;
        let supervision = supervision_config(&env)?;
        let audit = audit_settings(&env, database.backend)?;
        let security = security_settings(&env)?;
        let mock_adapter = MockAdapterSettings {
            enabled: env.bool("MOCK_ADAPTER", false)?,
            interval: env.duration("MOCK_ADAPTER_INTERVAL", Duration::from_secs(60))?,
        };

        Ok(Config {
            environment,
            http,
            database,
            log,
            skip_cron: env.bool("SKIP_CRON", false)?,
            agent_audit_enabled: env.bool("AGENT_AUDIT_ENABLED", true)?,
            admin_token,
            supervision,
            audit,
            security,
            mock_adapter,
            slack: slack_settings(&env, environment)?,
            status_check_interval: env
                .duration("MEDIA_BUY_STATUS_CHECK_INTERVAL", Duration::from_secs(60))?,
            delivery_interval: env
                .duration("DELIVERY_WEBHOOK_INTERVAL", Duration::from_secs(3_600))?,
            delivery_spend_max_multiple: env.parse_with(
                "DELIVERY_SPEND_MAX_BUDGET_MULTIPLE",
                crate::domain::SpendMultiple::DEFAULT,
                crate::domain::SpendMultiple::parse,
            )?,
            webhook: {
                let d = overseer_actors::webhook::WebhookConfig::default();
                overseer_actors::webhook::WebhookConfig {
                    poll_interval: env.duration("WEBHOOK_POLL_INTERVAL", d.poll_interval)?,
                    max_attempts: env.positive_int("WEBHOOK_MAX_ATTEMPTS", d.max_attempts)?,
                    retry_base: env.duration("WEBHOOK_RETRY_BASE", d.retry_base)?,
                    default_retry_after: env
                        .duration("WEBHOOK_DEFAULT_RETRY_AFTER", d.default_retry_after)?,
                    lease: env.duration("WEBHOOK_LEASE", d.lease)?,
                    batch: env.positive_int("WEBHOOK_BATCH", d.batch)?,
                    allow_unauthenticated: environment != Environment::Production,
                    breaker_threshold: env
                        .positive_int("WEBHOOK_BREAKER_THRESHOLD", d.breaker_threshold)?,
                    breaker_cooldown: env
                        .duration("WEBHOOK_BREAKER_COOLDOWN", d.breaker_cooldown)?,
                    ..d
                }
            },
            webhook_timeout: env.duration("WEBHOOK_TIMEOUT", Duration::from_secs(10))?,
            sse: SseSettings {
                hub: overseer_actors::activity::SseConfig {
                    client_buffer: env.positive_int("SSE_CLIENT_BUFFER", 1_024)?,
                    max_buffered_bytes: env
                        .positive_int("SSE_MAX_BUFFERED_BYTES", 4 * 1024 * 1024)?,
                    max_per_tenant: env.positive_int("SSE_MAX_STREAMS_PER_TENANT", 50)?,
                    max_total: env.positive_int("SSE_MAX_STREAMS", 10_000)?,
                },
                heartbeat: env.duration("SSE_HEARTBEAT_INTERVAL", Duration::from_secs(15))?,
                backfill: env.positive_int("SSE_BACKFILL", 50)?,
                max_replay: env.positive_int("SSE_MAX_REPLAY", 10_000)?,
                retry_ms: env.positive_int("SSE_RETRY_MS", 3_000)?,
                session_secret: env.parse_with("SESSION_SECRET", None, |v| {
                    if v.chars().count() < 32 {
                        Err("must be at least 32 characters".into())
                    } else {
                        Ok(Some(SecretString::from(v.to_owned())))
                    }
                })?,
                session_ttl: env.duration("SESSION_TTL", Duration::from_secs(12 * 3_600))?,
            },
            webhook_docker_rewrite: env.bool("WEBHOOK_DOCKER_LOCALHOST_REWRITE", false)?,
            alerts: alert_config(&env, env.bool("SKIP_CRON", false)?)?,
            ssrf: crate::ssrf::SsrfPolicy {
                allowed_cidrs: env.parse_with(
                    "WEBHOOK_ALLOWED_CIDRS",
                    Vec::new(),
                    crate::ssrf::SsrfPolicy::parse_cidrs,
                )?,
                allowed_hosts: env
                    .get("WEBHOOK_ALLOWED_HOSTS")?
                    .map(|v| {
                        v.split(',')
                            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                            .filter(|h| !h.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                https_only: environment == Environment::Production,
            },
        })
    }

    /// Logs the effective configuration once, secrets masked.
    pub fn log_effective(&self) {
        tracing::info!(
            environment = ?self.environment,
            bind_addr = %self.http.bind_addr,
            http_workers = self.http.workers,
            max_body_bytes = self.http.max_body_bytes,
            shutdown_timeout_ms = self.http.shutdown_timeout.as_millis() as u64,
            health_check_timeout_ms = self.http.health_check_timeout.as_millis() as u64,
            http_write_timeout_ms = self.http.write_timeout.as_millis() as u64,
            metrics_token = if self.http.metrics_token.is_some() { "****" } else { "unset" },
            metrics_bind_addr = %self.http.metrics_bind_addr.map_or_else(|| "unset".to_owned(), |a| a.to_string()),
            metrics_public = self.http.metrics_public,
            health_details_token = if self.http.health_details_token.is_some() { "****" } else { "unset" },
            database_url = %self.database.display_url(),
            database_backend = self.database.backend.as_str(),
            database_connect_timeout_ms = self.database.connect_timeout.as_millis() as u64,
            database_query_timeout_ms = self.database.query_timeout.as_millis() as u64,
            database_max_connections = self.database.max_connections,
            use_pgbouncer = self.database.use_pgbouncer,
            auto_migrate = self.database.auto_migrate,
            skip_cron = self.skip_cron,
            log_format = ?self.log.format,
            log_filter = %self.log.filter,
            log_dir = %self.log.dir.display(),
            otlp_export = %self.log.otlp.as_ref().map_or_else(|| "off".to_owned(), OtlpConfig::display_endpoint),
            admin_token = if self.admin_token.generated { "generated" } else { "****" },
            supervisor_max_restarts = self.supervision.policy.max_restarts,
            supervisor_restart_window_ms = self.supervision.policy.within.as_millis() as u64,
            supervisor_backoff_initial_ms = self.supervision.policy.backoff_initial.as_millis() as u64,
            supervisor_backoff_max_ms = self.supervision.policy.backoff_max.as_millis() as u64,
            fault_injection = self.supervision.fault_injection,
            database_watch_interval_ms = self.supervision.database_watch_interval.as_millis() as u64,
            audit_batch_size = self.audit.batch_size,
            audit_flush_interval_ms = self.audit.flush_interval.as_millis() as u64,
            audit_flush_pipeline = self.audit.pipeline,
            audit_queue_capacity = self.audit.queue_capacity,
            audit_max_value_chars = self.audit.max_value_chars,
            audit_max_body_bytes = self.audit.max_body_bytes,
            audit_spool_dir = %self.audit.spool_dir.display(),
            audit_requests = self.audit.record_requests,
            audit_token_validations = self.audit.record_token_validations,
            agent_audit_enabled = self.agent_audit_enabled,
            log_retention_days = self.audit.retention_days,
            security = ?self.security,
            mock_adapter = self.mock_adapter.enabled,
            mock_adapter_interval_ms = self.mock_adapter.interval.as_millis() as u64,
            slack = ?self.slack,
            status_check_interval_ms = self.status_check_interval.as_millis() as u64,
            delivery_interval_ms = self.delivery_interval.as_millis() as u64,
            delivery_spend_max_budget_multiple = %self.delivery_spend_max_multiple,
            webhook_ssrf = ?self.ssrf,
            webhook = ?self.webhook,
            webhook_timeout_ms = self.webhook_timeout.as_millis() as u64,
            webhook_docker_rewrite = self.webhook_docker_rewrite,
            alerts = ?self.alerts,
            "effective configuration"
        );
    }
}

fn database_config(env: &Env<'_>) -> Result<DatabaseConfig, ConfigError> {
    const VAR: &str = "DATABASE_URL";
    let url = env
        .get(VAR)?
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    // The reason never repeats the URL: it may hold a password.
    let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        PgConnectOptions::from_str(&url)
            .map_err(|_| ConfigError::new(VAR, "not a valid PostgreSQL URL"))?;
        Backend::Postgres
    } else if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(&url)
            .map_err(|_| ConfigError::new(VAR, "not a valid SQLite URL"))?;
        Backend::Sqlite
    } else {
        return Err(ConfigError::new(
            VAR,
            "expected a URL starting with postgres://, postgresql:// or sqlite:",
        ));
    };
    Ok(DatabaseConfig {
        url: SecretString::from(url),
        backend,
        connect_timeout: env.duration("DATABASE_CONNECT_TIMEOUT", Duration::from_secs(10))?,
        query_timeout: env.duration("DATABASE_QUERY_TIMEOUT", Duration::from_secs(30))?,
        max_connections: env.positive_int("DATABASE_MAX_CONNECTIONS", 10)?,
        use_pgbouncer: env.bool("USE_PGBOUNCER", false)?,
        auto_migrate: env.bool("AUTO_MIGRATE", true)?,
    })
}

/// The alert rules (`ALERT_*`); see `overseer_actors::alerts::AlertConfig`.
fn alert_config(
    env: &Env<'_>,
    skip_cron: bool,
) -> Result<overseer_actors::alerts::AlertConfig, ConfigError> {
    let d = overseer_actors::alerts::AlertConfig::default();
    let percent = |var: &'static str, default: f64| {
        env.parse_with(var, default, |v| match v.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
            _ => Err("expected a percentage above 0 and at most 100".into()),
        })
    };
    let interval = env.duration("ALERT_EVAL_INTERVAL", Duration::from_secs(30))?;
    Ok(overseer_actors::alerts::AlertConfig {
        interval: (!skip_cron).then_some(interval),
        repeat_interval: env.duration("ALERT_REPEAT_INTERVAL", d.repeat_interval)?,
        pending_for: env.parse_with("ALERT_PENDING_FOR", d.pending_for, |v| {
            if v == "0" {
                Ok(Duration::ZERO)
            } else {
                parse_duration(v)
            }
        })?,
        error_rate_percent: percent("ALERT_ERROR_RATE_PERCENT", d.error_rate_percent)?,
        error_rate_min_operations: env.positive_int(
            "ALERT_ERROR_RATE_MIN_OPERATIONS",
            d.error_rate_min_operations,
        )?,
        operations_window: env.duration("ALERT_ERROR_RATE_WINDOW", d.operations_window)?,
        media_buy_failures: env.positive_int("ALERT_MEDIA_BUY_FAILURES", d.media_buy_failures)?,
        auth_failures: env.positive_int("ALERT_AUTH_FAILURES", d.auth_failures)?,
        auth_window: env.duration("ALERT_AUTH_FAILURE_WINDOW", d.auth_window)?,
        approval_max_age: env.duration("ALERT_APPROVAL_MAX_AGE", d.approval_max_age)?,
        database_failures: env.positive_int("ALERT_DATABASE_FAILURES", d.database_failures)?,
        agent_slow_after: env.duration("ALERT_AGENT_SLOW_AFTER", d.agent_slow_after)?,
        agent_slow_window: env.duration("ALERT_AGENT_SLOW_WINDOW", d.agent_slow_window)?,
        agent_success_percent: percent("ALERT_AGENT_SUCCESS_PERCENT", d.agent_success_percent)?,
        agent_min_runs: env.positive_int("ALERT_AGENT_MIN_RUNS", d.agent_min_runs)?,
        agent_window: env.duration("ALERT_AGENT_WINDOW", d.agent_window)?,
    })
}

/// Batches in flight at once by default. PostgreSQL overlaps one batch's
/// statements with the commit of the one before. A SQLite file has one
/// writer, so a second batch only waits for the first: measured alternately,
/// one at a time was as fast or faster there in 6 runs of 7
/// (docs/benchmarks.md, runs 44–65).
fn default_pipeline(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    }
}

fn audit_settings(env: &Env<'_>, backend: Backend) -> Result<AuditSettings, ConfigError> {
    let batch_size = env.positive_int("AUDIT_BATCH_SIZE", 500)?;
    let queue_capacity = env.positive_int("AUDIT_QUEUE_CAPACITY", 50_000)?;
    if queue_capacity < batch_size {
        return Err(ConfigError::new(
            "AUDIT_QUEUE_CAPACITY",
            "must be at least AUDIT_BATCH_SIZE",
        ));
    }
    Ok(AuditSettings {
        batch_size,
        flush_interval: Duration::from_millis(env.positive_int("AUDIT_FLUSH_INTERVAL_MS", 20)?),
        pipeline: env.positive_int("AUDIT_FLUSH_PIPELINE", default_pipeline(backend))?,
        queue_capacity,
        max_value_chars: env.positive_int("AUDIT_MAX_VALUE_CHARS", 1_000)?,
        max_body_bytes: env.positive_int("AUDIT_MAX_BODY_BYTES", 16 * 1024 * 1024)?,
        spool_dir: env.parse_with("AUDIT_SPOOL_DIR", PathBuf::from("data/spool"), |v| {
            Ok(PathBuf::from(v))
        })?,
        retention_days: env.positive_int("LOG_RETENTION_DAYS", 30)?,
        audit_log: env.bool("AUDIT_LOG_FILE", true)?,
        error_log: env.bool("AUDIT_ERROR_LOG_FILE", true)?,
        structured_log: env.bool("AUDIT_STRUCTURED_LOG_FILE", true)?,
        security_log: env.bool("AUDIT_SECURITY_LOG_FILE", true)?,
        record_requests: env.bool("AUDIT_REQUESTS", true)?,
        record_token_validations: env.bool("AUDIT_TOKEN_VALIDATIONS", true)?,
    })
}

fn supervision_config(env: &Env<'_>) -> Result<SupervisionConfig, ConfigError> {
    let defaults = RestartPolicy::default();
    let policy = RestartPolicy {
        restart: RestartType::Permanent,
        max_restarts: env.positive_int("SUPERVISOR_MAX_RESTARTS", defaults.max_restarts)?,
        within: env.duration("SUPERVISOR_RESTART_WINDOW", defaults.within)?,
        backoff_initial: env.duration("SUPERVISOR_BACKOFF_INITIAL", defaults.backoff_initial)?,
        backoff_max: env.duration("SUPERVISOR_BACKOFF_MAX", defaults.backoff_max)?,
    };
    if policy.backoff_initial > policy.backoff_max {
        return Err(ConfigError::new(
            "SUPERVISOR_BACKOFF_INITIAL",
            "must not be longer than SUPERVISOR_BACKOFF_MAX",
        ));
    }
    Ok(SupervisionConfig {
        policy,
        fault_injection: env.bool("ENABLE_FAULT_INJECTION", false)?,
        database_watch_interval: env
            .duration("DATABASE_WATCH_INTERVAL", Duration::from_secs(10))?,
    })
}

fn otlp_config(env: &Env<'_>) -> Result<Option<OtlpConfig>, ConfigError> {
    let token = env.get("LOGFIRE_TOKEN")?.map(SecretString::from);
    let base = match (env.get("OTEL_EXPORTER_OTLP_ENDPOINT")?, &token) {
        (Some(base), _) => base,
        (None, Some(token)) => logfire_endpoint(token.expose_secret()).to_owned(),
        (None, None) => return Ok(None),
    };
    let url = |var: &'static str, value: &str| {
        url::Url::parse(value)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ConfigError::new(var, "expected an absolute http(s) URL"))
    };
    // Validated once here, so a typo stops start-up instead of every export.
    url("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
    let signal = |var: &'static str, path: &str| match env.get(var)? {
        Some(full) => url(var, &full),
        None => url(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("{}/{path}", base.trim_end_matches('/')),
        ),
    };
    Ok(Some(OtlpConfig {
        traces_endpoint: signal("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "v1/traces")?,
        logs_endpoint: signal("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "v1/logs")?,
        token,
        service_name: env
            .get("OTEL_SERVICE_NAME")?
            .unwrap_or_else(|| "overseer".to_owned()),
    }))
}

/// Logfire's OTLP base URL for a write token: its region when the token
/// names one (`pylf_v1_<region>_…`), else the original US endpoint.
fn logfire_endpoint(token: &str) -> &'static str {
    match token.split('_').nth(2) {
        Some("eu") if token.starts_with("pylf_") => "https://logfire-eu.pydantic.dev",
        Some("us") if token.starts_with("pylf_") => "https://logfire-us.pydantic.dev",
        _ => "https://logfire-api.pydantic.dev",
    }
}

fn log_filter(env: &Env<'_>) -> Result<String, ConfigError> {
    if let Some(directives) = env.get("RUST_LOG")? {
        tracing_subscriber::EnvFilter::try_new(&directives)
            .map_err(|e| ConfigError::new("RUST_LOG", e.to_string()))?;
        return Ok(directives);
    }
    env.parse_with("LOG_LEVEL", "info".to_owned(), |v| {
        let level = v.to_ascii_lowercase();
        match level.as_str() {
            "trace" | "debug" | "info" | "warn" | "error" => Ok(level),
            _ => Err("expected one of trace, debug, info, warn, error".into()),
        }
    })
}

fn admin_token(env: &Env<'_>, environment: Environment) -> Result<AdminToken, ConfigError> {
    const VAR: &str = "ADMIN_TOKEN";
    match (env.get(VAR)?, environment) {
        (Some(token), Environment::Production) if token.chars().count() < MIN_ADMIN_TOKEN_CHARS => {
            Err(ConfigError::new(
                VAR,
                format!("must be at least {MIN_ADMIN_TOKEN_CHARS} characters in production"),
            ))
        }
        (Some(token), _) => Ok(AdminToken {
            token: SecretString::from(token),
            generated: false,
        }),
        (None, Environment::Production) => Err(ConfigError::new(
            VAR,
            format!("required in production (at least {MIN_ADMIN_TOKEN_CHARS} characters)"),
        )),
        (None, Environment::Development) => Ok(AdminToken {
            token: SecretString::from(hex::encode(rand::rng().random::<[u8; 32]>())),
            generated: true,
        }),
    }
}

fn security_settings(env: &Env<'_>) -> Result<SecuritySettings, ConfigError> {
    let d = overseer_actors::security::SecurityConfig::default();
    Ok(SecuritySettings {
        monitor: overseer_actors::security::SecurityConfig {
            failed_auth_threshold: env
                .positive_int("SECURITY_FAILED_AUTH_THRESHOLD", d.failed_auth_threshold)?,
            failed_auth_window: env
                .duration("SECURITY_FAILED_AUTH_WINDOW", d.failed_auth_window)?,
            block_duration: env.duration("SECURITY_BLOCK_DURATION", d.block_duration)?,
            request_limit: env.positive_int("SECURITY_REQUEST_LIMIT", d.request_limit)?,
            request_window: env.duration("SECURITY_REQUEST_WINDOW", d.request_window)?,
            notify_cooldown: env.duration("SECURITY_NOTIFY_COOLDOWN", d.notify_cooldown)?,
            max_tracked: d.max_tracked,
        },
        trusted_proxies: trusted_proxies(env)?,
    })
}

/// `TRUSTED_PROXIES`. The variable it replaces, `TRUST_FORWARDED_FOR`,
/// trusted the left-most, client-written hop of every request; left set to
/// `true` it would now quietly do nothing (every client seen as the proxy),
/// so start-up stops and says what to set instead. `false` meant what no
/// `TRUSTED_PROXIES` means, and is accepted.
fn trusted_proxies(env: &Env<'_>) -> Result<crate::domain::TrustedProxies, ConfigError> {
    if env.bool("TRUST_FORWARDED_FOR", false)? {
        return Err(ConfigError::new(
            "TRUST_FORWARDED_FOR",
            "no longer read: list your reverse proxies' addresses in TRUSTED_PROXIES \
             (comma-separated CIDRs, such as 10.0.0.0/8) and remove TRUST_FORWARDED_FOR",
        ));
    }
    env.parse_with(
        "TRUSTED_PROXIES",
        crate::domain::TrustedProxies::default(),
        crate::domain::TrustedProxies::parse,
    )
}

fn slack_settings(env: &Env<'_>, environment: Environment) -> Result<SlackSettings, ConfigError> {
    use overseer_actors::slack::{SlackConfig, WebhookTarget, pacer::Pace};
    // Not `parse_with`: its errors quote the value, and these are secrets.
    let webhook = |var: &'static str| -> Result<Option<WebhookTarget>, ConfigError> {
        env.get(var)?
            .map(|v| {
                crate::domain::WebhookUrl::parse(var, &v, environment.input_policy())
                    .map(|url| url.target())
                    .map_err(|e| ConfigError::new(var, e.message))
            })
            .transpose()
    };
    let d = SlackConfig::default();
    let rate = env.parse_with("SLACK_RATE_PER_SECOND", d.pace.per_second, |v| {
        v.parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r > 0.0)
            .ok_or_else(|| "expected a positive number".to_owned())
    })?;
    let admin_ui_url = env.parse_with("ADMIN_UI_URL", None, |v| {
        url::Url::parse(v)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .map(|_| Some(v.trim_end_matches('/').to_owned()))
            .ok_or_else(|| "expected an absolute http(s) URL".to_owned())
    })?;
    Ok(SlackSettings {
        router: SlackConfig {
            poll_interval: env.duration("SLACK_POLL_INTERVAL", d.poll_interval)?,
            pace: Pace {
                per_second: rate,
                burst: env.positive_int("SLACK_BURST", d.pace.burst)?,
            },
            digest_threshold: env.positive_int("SLACK_DIGEST_THRESHOLD", d.digest_threshold)?,
            max_digest: d.max_digest,
            max_attempts: env.positive_int("SLACK_MAX_ATTEMPTS", d.max_attempts)?,
            retry_base: env.duration("SLACK_RETRY_BASE", d.retry_base)?,
            retry_cap: d.retry_cap,
            default_retry_after: env
                .duration("SLACK_DEFAULT_RETRY_AFTER", d.default_retry_after)?,
            lease: env.duration("SLACK_LEASE", d.lease)?,
            admin_ui_url,
            defaults: overseer_actors::slack::Webhooks {
                general: webhook("SLACK_WEBHOOK_URL")?,
                audit: webhook("SLACK_AUDIT_WEBHOOK_URL")?,
                hitl: webhook("SLACK_HITL_WEBHOOK_URL")?,
            },
        },
        timeout: env.duration("SLACK_TIMEOUT", Duration::from_secs(10))?,
    })
}

/// Environment lookups with the shared rules: empty means unset, and every
/// error names its variable.
struct Env<'a>(&'a dyn Fn(&str) -> Option<OsString>);

impl Env<'_> {
    fn get(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        match (self.0)(var) {
            None => Ok(None),
            Some(raw) => {
                let value = raw
                    .into_string()
                    .map_err(|_| ConfigError::new(var, "not valid UTF-8"))?;
                let value = value.trim();
                Ok((!value.is_empty()).then(|| value.to_owned()))
            }
        }
    }

    fn parse_with<T>(
        &self,
        var: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(var)? {
            None => Ok(default),
            Some(value) => parse(&value)
                .map_err(|reason| ConfigError::new(var, format!("{value:?}: {reason}"))),
        }
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.parse_with(var, default, |v| match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        })
    }

    fn positive_int<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + From<u8>,
    {
        self.parse_with(var, default, |v| match v.parse::<T>() {
            Ok(n) if n >= T::from(1) => Ok(n),
            _ => Err("expected a positive whole number".into()),
        })
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        self.parse_with(var, default, parse_duration)
    }
}

/// A positive duration: a number of seconds (`30`, `0.5`) or a number with a
/// unit (`500ms`, `30s`, `2m`, `1h`).
fn parse_duration(value: &str) -> Result<Duration, String> {
    const HELP: &str = "expected a positive duration such as 30, 30s, 500ms, 2m or 1h";
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.trim().parse().map_err(|_| HELP.to_owned())?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1_000.0,
        "m" => number * 60.0,
        "h" => number * 3_600.0,
        _ => return Err(HELP.into()),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(HELP.into());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| HELP.to_owned())
}

#[cfg(test)]
mod documented;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert_eq!(c.http.bind_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.http.max_body_bytes, 1024 * 1024);
        assert_eq!(c.database.backend, Backend::Sqlite);
        assert_eq!(c.database.url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(c.database.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.database.query_timeout, Duration::from_secs(30));
        assert_eq!(c.database.max_connections, 10);
        assert!(!c.database.use_pgbouncer);
        assert!(c.database.auto_migrate);
        assert!(!c.skip_cron);
        assert!(c.agent_audit_enabled);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.filter, "info");
        assert_eq!(c.log.dir, PathBuf::from("logs"));
        assert!(c.admin_token.generated);
        assert_eq!(c.admin_token.token.expose_secret().len(), 64);
        assert_eq!(c.supervision.policy, RestartPolicy::default());
        assert!(!c.supervision.fault_injection);
        assert_eq!(
            c.supervision.database_watch_interval,
            Duration::from_secs(10)
        );
        assert_eq!(
            c.delivery_spend_max_multiple,
            crate::domain::SpendMultiple::DEFAULT
        );
    }

    #[test]
    fn the_delivery_spend_multiple_is_a_number_from_1_to_9() {
        let c = config(&[("DELIVERY_SPEND_MAX_BUDGET_MULTIPLE", "1.5")]).unwrap();
        assert_eq!(c.delivery_spend_max_multiple.to_string(), "1.5");
        let c = config(&[("DELIVERY_SPEND_MAX_BUDGET_MULTIPLE", "")]).unwrap();
        assert_eq!(
            c.delivery_spend_max_multiple,
            crate::domain::SpendMultiple::DEFAULT
        );
        for bad in ["0.5", "10", "1e3", "-1", "two"] {
            let err = config(&[("DELIVERY_SPEND_MAX_BUDGET_MULTIPLE", bad)]).unwrap_err();
            assert_eq!(err.var, "DELIVERY_SPEND_MAX_BUDGET_MULTIPLE", "{bad}");
        }
    }

    #[test]
    fn the_supervision_policy_is_configurable() {
        let c = config(&[
            ("SUPERVISOR_MAX_RESTARTS", "3"),
            ("SUPERVISOR_RESTART_WINDOW", "10s"),
            ("SUPERVISOR_BACKOFF_INITIAL", "20ms"),
            ("SUPERVISOR_BACKOFF_MAX", "1s"),
            ("ENABLE_FAULT_INJECTION", "true"),
        ])
        .unwrap();
        assert_eq!(c.supervision.policy.max_restarts, 3);
        assert_eq!(c.supervision.policy.within, Duration::from_secs(10));
        assert_eq!(
            c.supervision.policy.backoff_initial,
            Duration::from_millis(20)
        );
        assert_eq!(c.supervision.policy.backoff_max, Duration::from_secs(1));
        assert!(c.supervision.fault_injection);
        let err = config(&[("SUPERVISOR_BACKOFF_INITIAL", "2m")]).unwrap_err();
        assert_eq!(err.var, "SUPERVISOR_BACKOFF_INITIAL");
    }

    #[test]
    fn an_empty_variable_means_the_default() {
        let c = config(&[
            ("BIND_ADDR", ""),
            ("DATABASE_QUERY_TIMEOUT", "  "),
            ("SKIP_CRON", ""),
        ])
        .unwrap();
        assert_eq!(c.http.bind_addr.port(), 8080);
        assert_eq!(c.database.query_timeout, Duration::from_secs(30));
        assert!(!c.skip_cron);
    }

    #[test]
    fn values_are_parsed() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:p@db.internal:6432/overseer"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_QUERY_TIMEOUT", "500ms"),
            ("DATABASE_CONNECT_TIMEOUT", "2"),
            ("DATABASE_MAX_CONNECTIONS", "3"),
            ("USE_PGBOUNCER", "TRUE"),
            ("SKIP_CRON", "1"),
            ("LOG_FORMAT", "pretty"),
            ("LOG_LEVEL", "DEBUG"),
            ("ENVIRONMENT", "production"),
            ("ADMIN_TOKEN", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap();
        assert_eq!(c.database.backend, Backend::Postgres);
        assert_eq!(
            c.database.display_url(),
            "postgres://****@db.internal:6432/overseer"
        );
        assert_eq!(c.http.bind_addr.port(), 0);
        assert_eq!(c.database.query_timeout, Duration::from_millis(500));
        assert_eq!(c.database.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.database.max_connections, 3);
        assert!(c.database.use_pgbouncer && c.skip_cron);
        assert_eq!(c.log.format, LogFormat::Pretty);
        assert_eq!(c.log.filter, "debug");
        assert_eq!(c.environment, Environment::Production);
        assert!(!c.admin_token.generated);
    }

    #[test]
    fn the_flush_pipeline_defaults_by_backend_and_can_be_set() {
        let sqlite = config(&[]).unwrap();
        assert_eq!(sqlite.audit.pipeline, 1);
        let pg = config(&[("DATABASE_URL", "postgres://u@localhost/o")]).unwrap();
        assert_eq!(pg.audit.pipeline, 2);
        let set = config(&[("AUDIT_FLUSH_PIPELINE", "3")]).unwrap();
        assert_eq!(set.audit.pipeline, 3);
        assert!(config(&[("AUDIT_FLUSH_PIPELINE", "0")]).is_err());
    }

    #[test]
    fn rust_log_takes_precedence_over_log_level() {
        let c = config(&[
            ("RUST_LOG", "overseer=debug,sqlx=warn"),
            ("LOG_LEVEL", "error"),
        ])
        .unwrap();
        assert_eq!(c.log.filter, "overseer=debug,sqlx=warn");
    }

    #[test]
    fn each_invalid_value_is_refused_naming_its_variable() {
        for (var, value) in [
            ("BIND_ADDR", "nonsense"),
            ("DATABASE_QUERY_TIMEOUT", "-1"),
            ("DATABASE_QUERY_TIMEOUT", "0"),
            ("DATABASE_CONNECT_TIMEOUT", "soon"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("USE_PGBOUNCER", "maybe"),
            ("SKIP_CRON", "2"),
            ("ENVIRONMENT", "staging"),
            ("LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "loud"),
            ("MAX_BODY_BYTES", "-5"),
            ("HTTP_WORKERS", "many"),
            ("DATABASE_URL", "mysql://localhost/db"),
            ("AUTO_MIGRATE", "perhaps"),
            ("SUPERVISOR_MAX_RESTARTS", "0"),
            ("SUPERVISOR_BACKOFF_MAX", "-3s"),
            ("ENABLE_FAULT_INJECTION", "sometimes"),
            ("DATABASE_WATCH_INTERVAL", "never"),
            ("AGENT_AUDIT_ENABLED", "sometimes"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TRUST_FORWARDED_FOR", "perhaps"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}");
            let line = err.to_string();
            assert!(line.contains(var) && !line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn trusted_proxies_replace_trust_forwarded_for() {
        let c = config(&[]).unwrap();
        assert!(c.security.trusted_proxies.is_empty(), "none by default");
        let c = config(&[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]).unwrap();
        assert!(
            c.security
                .trusted_proxies
                .contains("10.1.2.3".parse().unwrap())
        );
        let err = config(&[("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")]).unwrap_err();
        assert!(err.to_string().contains("proxy.internal"), "{err}");
        // The old switch, still on, stops start-up and says what replaces it.
        for on in ["true", "1", "yes"] {
            let err = config(&[("TRUST_FORWARDED_FOR", on)]).unwrap_err();
            assert_eq!(err.var, "TRUST_FORWARDED_FOR");
            assert!(err.to_string().contains("TRUSTED_PROXIES"), "{err}");
        }
        // Off, it meant what no TRUSTED_PROXIES means.
        let c = config(&[("TRUST_FORWARDED_FOR", "false")]).unwrap();
        assert!(c.security.trusted_proxies.is_empty());
    }

    #[test]
    fn production_requires_a_long_admin_token() {
        let err = config(&[("ENVIRONMENT", "production")]).unwrap_err();
        assert_eq!(err.var, "ADMIN_TOKEN");
        let err = config(&[("ENVIRONMENT", "production"), ("ADMIN_TOKEN", "short")]).unwrap_err();
        assert_eq!(err.var, "ADMIN_TOKEN");
        assert!(
            !err.to_string().contains("short"),
            "the token must not be echoed"
        );
    }

    #[test]
    fn a_database_url_error_never_echoes_the_url() {
        let err =
            config(&[("DATABASE_URL", "postgres://user:hunter2@host:notaport/db")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn otlp_export_is_off_unless_an_endpoint_or_a_logfire_token_is_set() {
        assert!(config(&[]).unwrap().log.otlp.is_none());
        // A signal's own endpoint alone does not turn export on.
        let c = config(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/x")]).unwrap();
        assert!(c.log.otlp.is_none());

        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        let otlp = c.log.otlp.unwrap();
        assert_eq!(
            otlp.traces_endpoint.as_str(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(otlp.logs_endpoint.as_str(), "http://collector:4318/v1/logs");
        assert!(otlp.token.is_none());
        assert_eq!(otlp.service_name, "overseer");

        let c = config(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://user:pw@collector/otlp",
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "https://logs.example/ingest",
            ),
            ("OTEL_SERVICE_NAME", "overseer-eu"),
        ])
        .unwrap();
        let otlp = c.log.otlp.unwrap();
        assert_eq!(otlp.traces_endpoint.path(), "/otlp/v1/traces");
        assert_eq!(otlp.logs_endpoint.as_str(), "https://logs.example/ingest");
        assert_eq!(otlp.service_name, "overseer-eu");
        assert_eq!(otlp.display_endpoint(), "https://collector");
    }

    #[test]
    fn a_logfire_token_points_the_export_at_its_region() {
        for (token, host) in [
            ("pylf_v1_eu_abcdef", "logfire-eu.pydantic.dev"),
            ("pylf_v1_us_abcdef", "logfire-us.pydantic.dev"),
            ("an-older-token", "logfire-api.pydantic.dev"),
        ] {
            let otlp = config(&[("LOGFIRE_TOKEN", token)])
                .unwrap()
                .log
                .otlp
                .unwrap();
            assert_eq!(otlp.traces_endpoint.host_str(), Some(host), "{token}");
            assert_eq!(otlp.logs_endpoint.path(), "/v1/logs");
            assert_eq!(otlp.token.unwrap().expose_secret(), token);
            assert!(!format!("{:?}", config(&[("LOGFIRE_TOKEN", token)])).contains(token));
        }
        // An explicit endpoint wins; the token is still the credential.
        let otlp = config(&[
            ("LOGFIRE_TOKEN", "pylf_v1_eu_abcdef"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ])
        .unwrap()
        .log
        .otlp
        .unwrap();
        assert_eq!(
            otlp.traces_endpoint.as_str(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert!(otlp.token.is_some());
    }

    #[test]
    fn a_bad_otlp_endpoint_stops_start_up_naming_the_variable() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector"),
        ] {
            assert_eq!(config(&[(var, value)]).unwrap_err().var, var);
        }
        let err = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "not a url"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT");
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1_500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3_600));
        for bad in ["-1", "0", "NaN", "inf", "1d", "s", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
