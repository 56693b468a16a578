//! The store: one type over PostgreSQL and SQLite, chosen by the URL scheme.
//!
//! Each backend module holds its own SQL (they diverge where the databases do:
//! bulk inserts, locking, types); queries are runtime `sqlx::query_as` with
//! `FromRow`. Every call through [`Store`] runs under the configured query
//! timeout and returns a classified [`StoreError`]: callers see "unavailable",
//! "timed out" or "conflict", never a raw driver error with a URL in it.

/// The methods both backends implement with the same SQL, generated into each
/// backend's `impl` block (each has `pool`, `persistent` and a `MIGRATOR`).
macro_rules! shared_queries {
    () => {
        pub(super) async fn schema_is_current(&self) -> Result<bool, sqlx::Error> {
            let applied = sqlx::query_scalar(super::sql::APPLIED_MIGRATIONS)
                .persistent(self.persistent)
                .fetch_all(&self.pool)
                .await;
            Ok(super::all_applied(
                &MIGRATOR,
                &super::applied_or_none(applied)?,
            ))
        }

        pub(super) async fn ping(&self) -> Result<(), sqlx::Error> {
            sqlx::query(super::sql::PING)
                .persistent(self.persistent)
                .execute(&self.pool)
                .await
                .map(drop)
        }

        pub(super) fn pool_stats(&self) -> super::PoolStats {
            super::PoolStats {
                size: self.pool.size(),
                idle: self.pool.num_idle(),
                max: self.pool.options().get_max_connections(),
            }
        }

        pub(super) async fn close(&self) {
            self.pool.close().await;
        }

        /// Creates a tenant and commits `audit` with it, in one transaction.
        pub(super) async fn insert_tenant(
            &self,
            tenant: &crate::domain::NewTenant,
            now: chrono::DateTime<chrono::Utc>,
            audit: &[overseer_actors::audit::AuditEvent],
        ) -> Result<
            (
                crate::domain::Tenant,
                Vec<overseer_actors::audit::CommittedEvent>,
            ),
            sqlx::Error,
        > {
            let mut tx = self.begin_write().await?;
            let created = sqlx::query_as(super::sql::INSERT_TENANT)
                .persistent(self.persistent)
                .bind(tenant.id.as_str())
                .bind(tenant.name.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            let audit = super::audit::redacted(audit);
            let committed = self.append_audit_in(&mut tx, &audit).await?;
            tx.commit().await?;
            Ok((created, committed))
        }

        /// Runs a select of whole audit rows (`AUDIT_SELECT` and what
        /// follows it) and reads them as committed events.
        async fn audit_events(
            &self,
            mut qb: sqlx::QueryBuilder<Db>,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let rows: Vec<super::audit::AuditRow> = qb
                .build_query_as()
                .persistent(self.persistent)
                .fetch_all(&self.pool)
                .await?;
            super::audit::into_events(rows)
        }

        pub(super) async fn audit_chain(
            &self,
            chain: &str,
            after_seq: i64,
            limit: u32,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let rows: Vec<super::audit::AuditRow> = sqlx::query_as(AUDIT_CHAIN)
                .persistent(self.persistent)
                .bind(chain)
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            super::audit::into_events(rows)
        }

        pub(super) async fn audit_logs(
            &self,
            query: &super::AuditQuery,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let mut qb = sqlx::QueryBuilder::<Db>::new(AUDIT_SELECT);
            super::audit::push_audit_filters!(qb, query, TIMESTAMP_CAST);
            self.audit_events(qb).await
        }

        /// Appends `events` to their chains in one transaction.
        pub(super) async fn append_audit(
            &self,
            events: &[overseer_actors::audit::AuditEvent],
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let committed = self.append_audit_in(&mut tx, events).await?;
            tx.commit().await?;
            Ok(committed)
        }

        /// Appends `events` as `offer` says, in one transaction.
        pub(super) async fn append_audit_offered(
            &self,
            events: &[overseer_actors::audit::AuditEvent],
            offer: &overseer_actors::audit::Offer,
        ) -> Result<overseer_actors::audit::Appended, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let appended = self.append_offered_in(&mut tx, events, offer).await?;
            tx.commit().await?;
            Ok(appended)
        }

        pub(super) async fn insert_api_token(
            &self,
            token: &crate::domain::NewApiToken,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(super::sql::INSERT_API_TOKEN)
                .persistent(self.persistent)
                .bind(&token.id)
                .bind(token.tenant_id.as_str())
                .bind(token.kind.as_str())
                .bind(&token.token_hash)
                .bind(token.created_at)
                .bind(token.expires_at)
                .execute(&self.pool)
                .await
                .map(drop)
        }

        pub(super) async fn api_token(
            &self,
            token_hash: &str,
        ) -> Result<Option<crate::domain::ApiToken>, sqlx::Error> {
            sqlx::query_as(super::sql::SELECT_API_TOKEN)
                .persistent(self.persistent)
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
        }

        pub(super) async fn tenant(
            &self,
            id: &crate::domain::TenantId,
        ) -> Result<Option<crate::domain::Tenant>, sqlx::Error> {
            sqlx::query_as(super::sql::SELECT_TENANT)
                .persistent(self.persistent)
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
        }

        pub(super) async fn list_tenants(
            &self,
            after: Option<&crate::domain::TenantId>,
            limit: u32,
        ) -> Result<Vec<crate::domain::Tenant>, sqlx::Error> {
            sqlx::query_as(super::sql::LIST_TENANTS)
                .persistent(self.persistent)
                .bind(after.map(crate::domain::TenantId::as_str))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
        }
    };
}
use shared_queries;

pub mod activity;
pub mod agent_runs;
pub mod alerts;
pub mod audit;
pub mod domain;
mod options;
pub mod pg;
pub mod push;
pub mod reports;
pub mod scheduler;
pub mod sessions;
pub mod slack;
pub mod sqlite;
pub mod webhooks;

pub use options::{Backend, DatabaseConfig};

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::error::ErrorKind;
use sqlx::sqlite::SqliteError;

use crate::domain::creative::{Creative, CreativeStatus, NewCreative};
use crate::domain::media_buy::{DeliveryRow, MediaBuy, MediaBuyStatus, NewMediaBuy, Package};
use crate::domain::principal::Principal;
use crate::domain::workflow::{Decision, WorkflowTask};
use crate::domain::{
    ApiToken, NewApiToken, NewTenant, Tenant, TenantId, TenantName, TenantSettings,
};
use overseer_actors::audit::{AuditEvent, CommittedEvent};
use overseer_actors::mock_adapter::ActiveBuy;
use overseer_actors::notify::Notification;

pub use activity::ActivityQuery;
pub use audit::{AuditPosition, AuditQuery};
pub use domain::{
    Decided, DeliveryWrite, Effects, IdempotencyRecord, NewWorkflow, OutboxRow, Owner, Parts,
};

pub use pg::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, Clone)]
pub enum Store {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

/// Connection-pool figures for `/health`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PoolStats {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or opened. The reason is short and never
    /// holds the URL, user or password.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query ran longer than `DATABASE_QUERY_TIMEOUT` and was cancelled.
    #[error("database query timed out after {0:?}")]
    QueryTimeout(Duration),
    /// A unique constraint refused the write; the name is the constraint's.
    #[error("conflict on {0}")]
    Conflict(String),
    /// A migration could not be applied for a reason other than connectivity.
    #[error("could not migrate the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// Classifies a driver error. The one place where database errors become
    /// domain errors.
    pub(crate) fn from_sqlx(err: sqlx::Error, query_timeout: Duration) -> Self {
        match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(short_reason(&err)),
            sqlx::Error::Database(db) if db.try_downcast_ref::<SqliteError>().is_some() => {
                classify_sqlite(err, query_timeout)
            }
            sqlx::Error::Database(_) => classify_postgres(err, query_timeout),
            _ => StoreError::Database(err),
        }
    }

    /// Classifies a migration error: a connection problem is `Unavailable`
    /// like any other, the rest stays a migration failure.
    pub(crate) fn from_migrate(err: sqlx::migrate::MigrateError, query_timeout: Duration) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(e) => Self::from_sqlx(e, query_timeout),
            other => StoreError::Migrate(other),
        }
    }

    /// A reason fit for `/health` and logs: no URL, user, password or path.
    pub fn short_reason(&self) -> String {
        match self {
            StoreError::Unavailable(reason) => reason.clone(),
            StoreError::QueryTimeout(after) => format!("timed out after {after:?}"),
            StoreError::Conflict(name) => format!("conflict on {name}"),
            StoreError::Migrate(sqlx::migrate::MigrateError::ExecuteMigration(err, version)) => {
                format!("migration {version} failed: {}", short_reason(err))
            }
            // The other variants name migration versions only.
            StoreError::Migrate(err) => format!("migrations failed: {err}"),
            StoreError::Database(err) => short_reason(err),
        }
    }
}

/// PostgreSQL errors, by SQLSTATE.
fn classify_postgres(err: sqlx::Error, query_timeout: Duration) -> StoreError {
    let Some(db) = err.as_database_error() else {
        return StoreError::Database(err);
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    if db.kind() == ErrorKind::UniqueViolation {
        return StoreError::Conflict(db.constraint().unwrap_or("unique").to_owned());
    }
    match code.as_str() {
        // The server cancelled the statement (statement_timeout).
        "57014" => StoreError::QueryTimeout(query_timeout),
        // undefined_table: the schema is not there (yet).
        "42P01" => StoreError::Unavailable("schema not ready".into()),
        code if is_connection_sqlstate(code) => StoreError::Unavailable(short_reason(&err)),
        _ => StoreError::Database(err),
    }
}

/// SQLite errors, by result code (the primary code is the low byte of an
/// extended one).
fn classify_sqlite(err: sqlx::Error, query_timeout: Duration) -> StoreError {
    let Some(db) = err.as_database_error() else {
        return StoreError::Database(err);
    };
    if db.kind() == ErrorKind::UniqueViolation {
        // SQLite names the columns, not a constraint: "UNIQUE constraint
        // failed: tenants.id".
        let name = db.message().strip_prefix("UNIQUE constraint failed: ");
        return StoreError::Conflict(name.unwrap_or("unique").to_owned());
    }
    let primary = db
        .code()
        .and_then(|c| c.parse::<i32>().ok())
        .map(|c| c & 0xff);
    match primary {
        // SQLITE_BUSY, SQLITE_LOCKED: waited `busy_timeout` (= the query
        // timeout) for a lock.
        Some(5 | 6) => StoreError::QueryTimeout(query_timeout),
        // IOERR, CORRUPT, FULL, CANTOPEN, NOTADB: the file is not usable.
        Some(10 | 11 | 13 | 14 | 26) => StoreError::Unavailable(short_reason(&err)),
        _ if db.message().starts_with("no such table") => {
            StoreError::Unavailable("schema not ready".into())
        }
        _ => StoreError::Database(err),
    }
}

/// SQLSTATE classes that mean "cannot talk to the database": 08 connection
/// exception, 28 invalid authorization, 3D invalid catalog (no such database),
/// 57P0x server shutting down / cannot connect now, 53 insufficient resources.
fn is_connection_sqlstate(code: &str) -> bool {
    ["08", "28", "3D", "53", "57P"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// A short description of a driver error that holds no credentials. PostgreSQL
/// server messages can name the user ("password authentication failed for user
/// ..."), so only their SQLSTATE is kept.
fn short_reason(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            std::io::ErrorKind::ConnectionAborted => "connection aborted".into(),
            std::io::ErrorKind::UnexpectedEof => "connection closed by the server".into(),
            std::io::ErrorKind::TimedOut => "connection timed out".into(),
            kind => format!("i/o error: {kind}"),
        },
        sqlx::Error::Tls(_) => "TLS error".into(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".into(),
        sqlx::Error::PoolClosed => "connection pool closed".into(),
        sqlx::Error::WorkerCrashed => "database worker crashed".into(),
        sqlx::Error::Protocol(_) => "protocol error".into(),
        sqlx::Error::Database(db) => match db.code() {
            // SQLite's messages name no credentials ("unable to open database file").
            Some(_) if db.try_downcast_ref::<SqliteError>().is_some() => {
                format!("SQLite: {}", db.message())
            }
            Some(code) => format!("database error (SQLSTATE {code})"),
            None => "database error".into(),
        },
        _ => "database error".into(),
    }
}

/// Runs one store operation under the query timeout and classifies its error.
/// A timeout is reported here (logged at WARN with the operation's name); on
/// PostgreSQL the server also cancels the statement itself (statement_timeout).
async fn timed<T>(
    operation: &'static str,
    timeout: Duration,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    let outcome = match tokio::time::timeout(timeout, work).await {
        Ok(result) => result.map_err(|e| StoreError::from_sqlx(e, timeout)),
        Err(_) => Err(StoreError::QueryTimeout(timeout)),
    };
    if let Err(StoreError::QueryTimeout(after)) = &outcome {
        tracing::warn!(
            operation,
            timeout_ms = after.as_millis() as u64,
            "database query timed out and was cancelled"
        );
    }
    outcome
}

/// Calls the same method on whichever backend this is, under the query timeout.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Postgres(s) => timed(stringify!($method), s.query_timeout(), s.$method($($arg),*)).await,
            Store::Sqlite(s) => timed(stringify!($method), s.query_timeout(), s.$method($($arg),*)).await,
        }
    };
}

// Declared after `dispatch!`, whose facade methods it uses.
pub mod tokens;

impl Store {
    /// Builds the store for `config`. No I/O happens here: connections are
    /// opened lazily, so the service starts (and reports the database as down in
    /// `/health`) even when the database cannot be reached yet.
    pub fn open(config: &DatabaseConfig) -> Result<Self, StoreError> {
        Ok(match config.backend {
            Backend::Postgres => Store::Postgres(PgStore::open(config)?),
            Backend::Sqlite => Store::Sqlite(SqliteStore::open(config)?),
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Postgres(_) => Backend::Postgres,
            Store::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Makes the database usable: creates the SQLite folder, then applies the
    /// embedded migrations. Safe to call again; on PostgreSQL concurrent
    /// replicas serialise on sqlx's migration lock.
    #[tracing::instrument(skip_all, fields(backend = self.backend().as_str()))]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.migrate().await,
            Store::Sqlite(s) => s.migrate().await,
        }
    }

    /// True when every embedded migration has been applied (for
    /// `AUTO_MIGRATE=false`, where someone else migrates).
    pub async fn schema_is_current(&self) -> Result<bool, StoreError> {
        dispatch!(self.schema_is_current())
    }

    /// One round trip (`SELECT 1`), returning how long it took.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        dispatch!(self.ping())?;
        Ok(started.elapsed())
    }

    pub fn pool_stats(&self) -> PoolStats {
        match self {
            Store::Postgres(s) => s.pool_stats(),
            Store::Sqlite(s) => s.pool_stats(),
        }
    }

    /// Closes every connection; waits for the ones in use to be returned.
    pub async fn close(&self) {
        match self {
            Store::Postgres(s) => s.close().await,
            Store::Sqlite(s) => s.close().await,
        }
    }

    /// Creates a tenant; `audit` is committed in the same transaction.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant.id))]
    pub async fn insert_tenant(
        &self,
        tenant: &NewTenant,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<(Tenant, Vec<CommittedEvent>), StoreError> {
        dispatch!(self.insert_tenant(tenant, now, audit))
    }

    /// Appends a batch of audit events to their chains in one transaction;
    /// an event the same as the one stored under its `log_id` is skipped,
    /// a different one is recorded as a `log_id_conflict` row instead (see
    /// `overseer_actors::audit::idempotency`). Returns what was stored, in
    /// `id` order.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub async fn append_audit(
        &self,
        events: &[AuditEvent],
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        dispatch!(self.append_audit(events))
    }

    /// [`Self::append_audit`] as `offer` says: the `log_id`s of
    /// `offer.maybe_stored` looked up, conflicts refused or recorded per
    /// submission, at `offer.now`.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub async fn append_audit_offered(
        &self,
        events: &[AuditEvent],
        offer: &overseer_actors::audit::Offer,
    ) -> Result<overseer_actors::audit::Appended, StoreError> {
        dispatch!(self.append_audit_offered(events, offer))
    }

    /// [`Self::append_audit_offered`] for a batch that may follow another
    /// one still in flight (see
    /// `overseer_actors::audit::AuditStore::append_after`): `None` if it was
    /// rolled back because that one did not commit. Only the `log_id`s of
    /// `offer.maybe_stored` are looked up; a repeat among the others makes
    /// the unique index refuse the batch.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub async fn append_audit_after(
        &self,
        events: &[AuditEvent],
        offer: &overseer_actors::audit::Offer,
        turn: &mut overseer_actors::audit::Turn,
    ) -> Result<Option<overseer_actors::audit::Appended>, StoreError> {
        dispatch!(self.append_audit_after(events, offer, turn))
    }

    /// Up to `limit` rows of one chain (`""` = the system chain) after
    /// `after_seq`, in `seq` order.
    #[tracing::instrument(skip_all)]
    pub async fn audit_chain(
        &self,
        chain: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        dispatch!(self.audit_chain(chain, after_seq, limit))
    }

    /// Audit rows matching `query`, newest first.
    #[tracing::instrument(skip_all)]
    pub async fn audit_logs(&self, query: &AuditQuery) -> Result<Vec<CommittedEvent>, StoreError> {
        dispatch!(self.audit_logs(query))
    }

    /// The plan the database chooses for [`Store::audit_logs`] with `query`
    /// (PostgreSQL's `EXPLAIN`, SQLite's `EXPLAIN QUERY PLAN`), one line per
    /// row: what shows that the trail's queries read an index newest first
    /// instead of sorting what they match.
    pub async fn audit_logs_plan(&self, query: &AuditQuery) -> Result<Vec<String>, StoreError> {
        dispatch!(self.audit_logs_plan(query))
    }

    /// Matching audit events after the cursor `after`, oldest first.
    pub async fn activity_after(
        &self,
        after: i64,
        query: &ActivityQuery,
        limit: u32,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        dispatch!(self.activity_after(after, query, limit))
    }

    /// The newest `limit` matching audit events up to `upto`, newest first.
    pub async fn activity_latest(
        &self,
        upto: i64,
        query: &ActivityQuery,
        limit: u32,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        dispatch!(self.activity_latest(upto, query, limit))
    }

    /// How many matching audit events follow `after`, counting to `cap` at most.
    pub async fn activity_count_after(
        &self,
        after: i64,
        query: &ActivityQuery,
        cap: u32,
    ) -> Result<i64, StoreError> {
        dispatch!(self.activity_count_after(after, query, cap))
    }

    /// The newest audit id, 0 for an empty trail.
    pub async fn max_audit_id(&self) -> Result<i64, StoreError> {
        dispatch!(self.max_audit_id())
    }

    /// Audit events with ids in `from..=to`, oldest first.
    pub async fn audit_range(&self, from: i64, to: i64) -> Result<Vec<CommittedEvent>, StoreError> {
        dispatch!(self.audit_range(from, to))
    }

    /// A listener for the audit channel (PostgreSQL; `None` on SQLite, whose
    /// one instance hears of commits in-process), connected but not yet
    /// listening. It holds one of the pool's connections for as long as it
    /// lives.
    pub async fn audit_listener(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match self {
            Store::Postgres(s) => s.audit_listener().await.map(Some),
            Store::Sqlite(_) => Ok(None),
        }
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %token.tenant_id))]
    pub async fn insert_api_token(&self, token: &NewApiToken) -> Result<(), StoreError> {
        dispatch!(self.insert_api_token(token))
    }

    /// The token with this SHA-256 hash (hex), with its tenant's state.
    #[tracing::instrument(skip_all)]
    pub async fn api_token(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        dispatch!(self.api_token(token_hash))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        dispatch!(self.tenant(id))
    }

    /// Tenants ordered by id, `limit` of them after `after` (keyset pagination).
    #[tracing::instrument(skip_all)]
    pub async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError> {
        dispatch!(self.list_tenants(after, limit))
    }
}

/// Creatives as synced, and the audit rows committed with them.
pub type SyncedCreatives = (Vec<Creative>, Vec<CommittedEvent>);

/// The domain's tables (see [`domain`]): each write commits its [`Effects`]
/// (audit rows, outbox rows) in its own transaction.
impl Store {
    /// Puts one notification into the outbox.
    #[tracing::instrument(skip_all, fields(kind = n.event.kind()))]
    pub async fn enqueue_notification(&self, n: &Notification) -> Result<(), StoreError> {
        dispatch!(self.enqueue_notifications(std::slice::from_ref(n)))
    }

    /// Puts notifications into the outbox, in one transaction.
    #[tracing::instrument(skip_all, fields(n = notifications.len()))]
    pub async fn enqueue_notifications(
        &self,
        notifications: &[Notification],
    ) -> Result<(), StoreError> {
        dispatch!(self.enqueue_notifications(notifications))
    }

    /// Outbox rows after `after_id`, oldest first.
    #[tracing::instrument(skip_all)]
    pub async fn outbox(&self, after_id: i64, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        dispatch!(self.outbox(after_id, limit))
    }

    /// Stores a push-notification config with its effects; `None` when the
    /// principal has `max` already.
    pub async fn insert_push_config(
        &self,
        config: &crate::domain::push_config::PushConfig,
        max: usize,
        effects: Effects<'_>,
    ) -> Result<Option<Vec<CommittedEvent>>, StoreError> {
        dispatch!(self.insert_push_config(config, max, effects))
    }

    pub async fn push_configs(
        &self,
        principal_id: &str,
    ) -> Result<Vec<crate::domain::push_config::PushConfig>, StoreError> {
        dispatch!(self.push_configs(principal_id))
    }

    pub async fn push_config(
        &self,
        id: &str,
    ) -> Result<Option<crate::domain::push_config::PushConfig>, StoreError> {
        dispatch!(self.push_config(id))
    }

    pub async fn delete_push_config(
        &self,
        id: &str,
        principal_id: &str,
        effects: Effects<'_>,
    ) -> Result<Option<Vec<CommittedEvent>>, StoreError> {
        dispatch!(self.delete_push_config(id, principal_id, effects))
    }

    /// Pending webhook requests due at `now` and not leased, with their
    /// configs, oldest first.
    pub async fn webhooks_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<webhooks::DueWebhook>, StoreError> {
        dispatch!(self.webhooks_due(now, limit))
    }

    pub async fn webhooks_claim(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        dispatch!(self.webhooks_claim(ids, now, until))
    }

    /// Records one attempt at a webhook request and its new state.
    #[allow(clippy::too_many_arguments)]
    pub async fn webhook_settle(
        &self,
        id: i64,
        config_id: &str,
        attempt: i64,
        status_code: Option<i32>,
        duration_ms: i64,
        error: Option<&str>,
        status: &str,
        next_attempt_at: Option<DateTime<Utc>>,
        auth_blocked: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self.webhook_settle(
            id,
            config_id,
            attempt,
            status_code,
            duration_ms,
            error,
            status,
            next_attempt_at,
            auth_blocked,
            now
        ))
    }

    /// Re-queues a failed webhook request of `media_buy_id`; `None` if
    /// there is no such failed request.
    pub async fn requeue_webhook(
        &self,
        id: i64,
        media_buy_id: &str,
        effects: Effects<'_>,
    ) -> Result<Option<Vec<CommittedEvent>>, StoreError> {
        dispatch!(self.requeue_webhook(id, media_buy_id, effects))
    }

    /// Puts a claimed webhook request back, due at `at`, with no attempt.
    pub async fn webhook_defer(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        dispatch!(self.webhook_defer(id, at))
    }

    /// Webhook requests waiting to be sent.
    pub async fn webhook_depth(&self) -> Result<i64, StoreError> {
        dispatch!(self.webhook_depth())
    }

    /// A media buy's webhook requests, oldest first.
    pub async fn webhook_rows(
        &self,
        media_buy_id: &str,
    ) -> Result<Vec<webhooks::WebhookRow>, StoreError> {
        dispatch!(self.webhook_rows(media_buy_id))
    }

    /// Buys with a reporting webhook that may be due a report (see [`reports`]).
    pub async fn report_candidates(
        &self,
        completed_since: DateTime<Utc>,
        only: Option<&str>,
    ) -> Result<Vec<reports::ReportCandidate>, StoreError> {
        dispatch!(self.report_candidates(completed_since, only))
    }

    /// Queues a delivery report unless it is a duplicate; its sequence number.
    pub async fn queue_report(
        &self,
        report: &reports::NewReport<'_>,
        build: &(dyn Fn(i64) -> (String, String) + Send + Sync),
        effects: Effects<'_>,
    ) -> Result<Option<(i64, Vec<CommittedEvent>)>, StoreError> {
        dispatch!(self.queue_report(report, build, effects))
    }

    /// `(sequence number, notification type, payload)` of a buy's reports.
    pub async fn reports_of(
        &self,
        media_buy_id: &str,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        dispatch!(self.reports_of(media_buy_id))
    }

    /// One media-buy status cycle at `now` (see [`scheduler`]).
    #[tracing::instrument(skip_all)]
    ///
    /// Not bounded by the query timeout as a whole (a cycle that falls back
    /// to one transaction per buy may take longer than one query may); on
    /// PostgreSQL each statement still is (`statement_timeout`).
    pub async fn run_status_cycle(
        &self,
        now: DateTime<Utc>,
    ) -> Result<scheduler::StatusCycle, StoreError> {
        match self {
            Store::Postgres(s) => s
                .run_status_cycle(now)
                .await
                .map_err(|e| StoreError::from_sqlx(e, s.query_timeout())),
            Store::Sqlite(s) => s
                .run_status_cycle(now)
                .await
                .map_err(|e| StoreError::from_sqlx(e, s.query_timeout())),
        }
    }

    /// Pending outbox rows due at `now` and not leased, oldest first.
    pub async fn slack_pending(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<slack::PendingRow>, StoreError> {
        dispatch!(self.slack_pending(now, limit))
    }

    /// `(tenant id, general, audit, hitl)` webhook URLs of these tenants.
    #[allow(clippy::type_complexity)]
    pub async fn slack_webhooks(
        &self,
        tenant_ids: &[String],
    ) -> Result<Vec<(String, Option<String>, Option<String>, Option<String>)>, StoreError> {
        dispatch!(self.slack_webhooks(tenant_ids))
    }

    /// Leases the still pending, unleased rows of `ids` until `until`.
    pub async fn slack_claim(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        dispatch!(self.slack_claim(ids, now, until))
    }

    /// Records the router's outcomes (one transaction) and releases leases.
    pub async fn slack_finish(
        &self,
        outcomes: &[(i64, overseer_actors::slack::Outcome)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self.slack_finish(outcomes, now))
    }

    /// Pending outbox rows, due or not.
    pub async fn slack_depth(&self) -> Result<i64, StoreError> {
        dispatch!(self.slack_depth())
    }

    /// `(status, attempts, last_error)` of a notification's outbox row.
    pub async fn outbox_status(
        &self,
        notification_id: &str,
    ) -> Result<Option<(String, i32, Option<String>)>, StoreError> {
        dispatch!(self.outbox_status(notification_id))
    }

    /// Renames and/or (de)activates a tenant; `None` if there is no such tenant.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn update_tenant(
        &self,
        id: &TenantId,
        name: Option<&TenantName>,
        is_active: Option<bool>,
        now: DateTime<Utc>,
        effects: Effects<'_>,
    ) -> Result<Option<(Tenant, Vec<CommittedEvent>)>, StoreError> {
        dispatch!(self.update_tenant(id, name, is_active, now, effects))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn tenant_settings(
        &self,
        id: &TenantId,
    ) -> Result<Option<TenantSettings>, StoreError> {
        dispatch!(self.tenant_settings(id))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn save_settings(
        &self,
        id: &TenantId,
        settings: &TenantSettings,
        effects: Effects<'_>,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        dispatch!(self.save_settings(id, settings, effects))
    }

    /// Stores a tenant token, with its audit row.
    #[tracing::instrument(skip_all, fields(tenant_id = %token.tenant_id))]
    pub async fn insert_api_token_with(
        &self,
        token: &NewApiToken,
        effects: Effects<'_>,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        dispatch!(self.insert_api_token_with(token, effects))
    }

    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn insert_principal(
        &self,
        tenant: &TenantId,
        id: &str,
        name: &str,
        token_hash: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        effects: Effects<'_>,
    ) -> Result<(Principal, Vec<CommittedEvent>), StoreError> {
        dispatch!(self.insert_principal(tenant, id, name, token_hash, expires_at, now, effects))
    }

    /// A tenant's principals by id, `limit` of them after `after`.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn principals(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Principal>, StoreError> {
        dispatch!(self.principals(tenant, after, limit))
    }

    /// A principal by id, in whichever tenant.
    #[tracing::instrument(skip_all)]
    pub async fn principal(&self, id: &str) -> Result<Option<Principal>, StoreError> {
        dispatch!(self.principal(id))
    }

    /// Rotates (`Some(new hash)`) or revokes (`None`) a principal's token.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn update_principal_token(
        &self,
        tenant: &TenantId,
        id: &str,
        token_hash: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        effects: Effects<'_>,
    ) -> Result<Option<(Principal, Vec<CommittedEvent>)>, StoreError> {
        dispatch!(self.update_principal_token(tenant, id, token_hash, expires_at, now, effects))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn idempotency_record(
        &self,
        tenant: &TenantId,
        principal_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        dispatch!(self.idempotency_record(tenant, principal_id, key))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn owned_creatives(
        &self,
        tenant: &TenantId,
        principal_id: &str,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self.owned_creatives(tenant, principal_id, ids))
    }

    /// Creates a media buy, with its packages, creative assignments, approved
    /// budget (`None` while a human must approve it), optional workflow task
    /// and idempotency record `(key, hash, status, response)`.
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant, media_buy_id = %buy.id))]
    pub async fn insert_media_buy(
        &self,
        tenant: &TenantId,
        principal_id: &str,
        buy: &NewMediaBuy,
        status: MediaBuyStatus,
        approved_budget: Option<crate::domain::Amount>,
        workflow: Option<NewWorkflow<'_>>,
        idempotency: Option<(&str, &str, i32, &str)>,
        now: DateTime<Utc>,
        effects: Effects<'_>,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        dispatch!(self.insert_media_buy(
            tenant,
            principal_id,
            buy,
            status,
            approved_budget,
            workflow,
            idempotency,
            now,
            effects
        ))
    }

    /// A media buy by id, in whichever tenant.
    #[tracing::instrument(skip_all)]
    pub async fn media_buy(&self, id: &str) -> Result<Option<MediaBuy>, StoreError> {
        dispatch!(self.media_buy(id))
    }

    /// A buy's packages and assigned creative ids.
    #[tracing::instrument(skip_all)]
    pub async fn media_buy_parts(
        &self,
        id: &str,
    ) -> Result<(Vec<Package>, Vec<String>), StoreError> {
        let ids = [id.to_owned()];
        Ok(self
            .media_buys_parts(&ids)
            .await?
            .remove(id)
            .unwrap_or_default())
    }

    /// The packages and creative ids of each of `ids` (a page of buys), in
    /// two queries.
    #[tracing::instrument(skip_all, fields(buys = ids.len()))]
    pub async fn media_buys_parts(&self, ids: &[String]) -> Result<Parts, StoreError> {
        dispatch!(self.media_buy_parts(ids))
    }

    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn media_buys(
        &self,
        tenant: &TenantId,
        principal_id: Option<&str>,
        status: Option<&str>,
        buyer_ref: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MediaBuy>, StoreError> {
        dispatch!(self.media_buys(tenant, principal_id, status, buyer_ref, after, limit))
    }

    /// The ids of a buy's pending approval tasks (at most one).
    #[tracing::instrument(skip_all)]
    pub async fn pending_workflows(&self, media_buy_id: &str) -> Result<Vec<String>, StoreError> {
        dispatch!(self.pending_workflows(media_buy_id))
    }

    /// Saves a changed buy unless it changed since `seen`, marking the
    /// `superseded` tasks and opening a new approval task with it if given;
    /// `None` (nothing written) when the buy or one of those tasks changed
    /// meanwhile.
    #[tracing::instrument(skip_all, fields(media_buy_id = %buy.id))]
    pub async fn save_media_buy(
        &self,
        buy: &MediaBuy,
        seen: DateTime<Utc>,
        superseded: &[String],
        workflow: Option<NewWorkflow<'_>>,
        effects: Effects<'_>,
    ) -> Result<Option<Vec<CommittedEvent>>, StoreError> {
        dispatch!(self.save_media_buy(buy, seen, superseded, workflow, effects))
    }

    /// Upserts delivery rows unless the buy's total spend would exceed
    /// `multiple` times its budget (checked sums; nothing is stored then).
    #[tracing::instrument(skip_all, fields(media_buy_id))]
    pub async fn upsert_delivery(
        &self,
        media_buy_id: &str,
        rows: &[DeliveryRow],
        multiple: crate::domain::SpendMultiple,
        now: DateTime<Utc>,
        effects: Effects<'_>,
    ) -> Result<DeliveryWrite, StoreError> {
        dispatch!(self.upsert_delivery(media_buy_id, rows, multiple, now, effects))
    }

    /// Every active media buy with its packages.
    #[tracing::instrument(skip_all)]
    pub async fn active_buys(&self) -> Result<Vec<ActiveBuy>, StoreError> {
        dispatch!(self.active_buys())
    }

    #[tracing::instrument(skip_all)]
    pub async fn delivery(&self, media_buy_id: &str) -> Result<Vec<DeliveryRow>, StoreError> {
        dispatch!(self.delivery(media_buy_id))
    }

    /// Upserts a principal's creatives (back to `pending_review`). A
    /// creative id is unique per principal, not per tenant.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn sync_creatives(
        &self,
        tenant: &TenantId,
        principal_id: &str,
        creatives: &[NewCreative],
        now: DateTime<Utc>,
        effects: Effects<'_>,
    ) -> Result<SyncedCreatives, StoreError> {
        dispatch!(self.sync_creatives(tenant, principal_id, creatives, now, effects))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn creatives(
        &self,
        tenant: &TenantId,
        principal_id: Option<&str>,
        status: Option<&str>,
        // The last id of the previous page, and its principal for a
        // tenant-wide listing (where ids repeat).
        after: Option<(&str, Option<&str>)>,
        limit: u32,
    ) -> Result<Vec<Creative>, StoreError> {
        dispatch!(self.creatives(tenant, principal_id, status, after, limit))
    }

    /// Who holds a creative with this id, in every tenant.
    #[tracing::instrument(skip_all)]
    pub async fn creative_owners(&self, id: &str) -> Result<Vec<Owner>, StoreError> {
        dispatch!(self.creative_owners(id))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn review_creative(
        &self,
        tenant: &TenantId,
        // The principal whose creative it is, and the creative's id.
        creative: (&str, &str),
        status: CreativeStatus,
        reason: Option<&str>,
        now: DateTime<Utc>,
        effects: Effects<'_>,
    ) -> Result<Option<(Creative, Vec<CommittedEvent>)>, StoreError> {
        dispatch!(self.review_creative(tenant, creative, status, reason, now, effects))
    }

    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn workflows(
        &self,
        tenant: &TenantId,
        status: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WorkflowTask>, StoreError> {
        dispatch!(self.workflows(tenant, status, after, limit))
    }

    /// A workflow task by id, in whichever tenant.
    #[tracing::instrument(skip_all)]
    pub async fn workflow(&self, id: &str) -> Result<Option<WorkflowTask>, StoreError> {
        dispatch!(self.workflow(id))
    }

    /// Decides a pending task and moves its media buy on (see [`Decided`]).
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn decide_workflow(
        &self,
        tenant: &TenantId,
        id: &str,
        decision: Decision,
        comment: Option<&str>,
        by: &str,
        now: DateTime<Utc>,
        effects: Effects<'_>,
    ) -> Result<Decided, StoreError> {
        dispatch!(self.decide_workflow(tenant, id, decision, comment, by, now, effects))
    }
}

/// The alert rules' counts and the `alerts` table (see [`alerts`]).
impl Store {
    /// What every rule counts at `w`; each reading fails on its own.
    #[tracing::instrument(skip_all)]
    pub async fn alert_readings(
        &self,
        w: &overseer_actors::alerts::Windows,
    ) -> overseer_actors::alerts::Readings {
        use overseer_actors::alerts::Tally;
        let reason = |e: StoreError| e.short_reason();
        let count = |rows: Vec<(String, i64)>| {
            rows.into_iter()
                .map(|(key, n)| Tally::new(key, n.max(0) as u64, n.max(0) as u64))
                .collect::<Vec<_>>()
        };
        let of = |rows: Vec<(String, i64, i64)>| {
            rows.into_iter()
                .map(|(key, n, total)| Tally::new(key, n.max(0) as u64, total.max(0) as u64))
                .collect::<Vec<_>>()
        };
        let (since, now) = (w.operations_since, w.now);
        overseer_actors::alerts::Readings {
            operations: Some(
                dispatch!(self.alert_operations(since, now))
                    .map(of)
                    .map_err(reason),
            ),
            media_buy_failures: Some(
                dispatch!(self.alert_media_buy_failures(since, now))
                    .map(count)
                    .map_err(reason),
            ),
            auth_failures: Some(
                dispatch!(self.alert_auth_failures(w.auth_since, now))
                    .map(count)
                    .map_err(reason),
            ),
            pending_approvals: Some(
                dispatch!(self.alert_pending_approvals(w.approvals_before))
                    .map(count)
                    .map_err(reason),
            ),
            slow_runs: Some(
                dispatch!(self.alert_slow_runs(
                    w.slow_started_before,
                    w.slow_finished_since,
                    now,
                    w.slow_ms
                ))
                .map(|rows| alerts::slow_runs(rows, now))
                .map_err(reason),
            ),
            agent_runs: Some(
                dispatch!(self.alert_agent_runs(w.agent_since, now))
                    .map(of)
                    .map_err(reason),
            ),
        }
    }

    /// Unresolved alerts (of `tenant` only, if given), oldest first.
    pub async fn current_alerts(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<overseer_actors::alerts::Alert>, StoreError> {
        dispatch!(self.current_alerts(tenant))
    }

    /// The `limit` most recently resolved alerts (of `tenant` only, if given).
    pub async fn resolved_alerts(
        &self,
        tenant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<overseer_actors::alerts::Alert>, StoreError> {
        dispatch!(self.resolved_alerts(tenant, limit))
    }

    /// Applies an alert change with its audit rows and notices in one
    /// transaction; `None` when the alert changed meanwhile.
    #[tracing::instrument(skip_all)]
    pub async fn apply_alert(
        &self,
        change: &overseer_actors::alerts::AlertChange,
        effects: Effects<'_>,
    ) -> Result<Option<Vec<CommittedEvent>>, StoreError> {
        dispatch!(self.apply_alert(change, effects))
    }
}

/// Dashboard sessions ended by sign-out (see [`sessions`]).
impl Store {
    /// Records a dashboard session ended before its expiry (`expires_at`,
    /// Unix seconds), and forgets those expired by `now`.
    #[tracing::instrument(skip_all)]
    pub async fn end_session(&self, id: &str, expires_at: i64, now: i64) -> Result<(), StoreError> {
        dispatch!(self.end_session(id, expires_at, now))
    }

    /// Whether a dashboard session has been ended (signed out).
    #[tracing::instrument(skip_all)]
    pub async fn session_ended(&self, id: &str) -> Result<bool, StoreError> {
        dispatch!(self.session_ended(id))
    }
}

/// Agent runs (see [`agent_runs`]), service-wide (no tenant).
impl Store {
    /// Stores a run as `running`; a taken `run_id` stores nothing and
    /// answers the stored run.
    #[tracing::instrument(skip_all, fields(agent = %run.agent))]
    pub async fn start_agent_run(
        &self,
        run: &crate::domain::agent_run::NewAgentRun,
    ) -> Result<agent_runs::Started, StoreError> {
        dispatch!(self.start_agent_run(run))
    }

    /// Finishes a running run, once.
    #[tracing::instrument(skip_all)]
    pub async fn finish_agent_run(
        &self,
        run_id: &str,
        end: &crate::domain::agent_run::AgentRunEnd,
    ) -> Result<agent_runs::Finished, StoreError> {
        dispatch!(self.finish_agent_run(run_id, end))
    }

    #[tracing::instrument(skip_all)]
    pub async fn agent_run(
        &self,
        run_id: &str,
    ) -> Result<Option<crate::domain::agent_run::AgentRun>, StoreError> {
        dispatch!(self.agent_run(run_id))
    }

    /// Runs, most recently started first, filtered by agent and status,
    /// `limit` of them after the run whose `id` is `after`.
    #[tracing::instrument(skip_all)]
    pub async fn agent_runs(
        &self,
        agent: Option<&str>,
        status: Option<crate::domain::agent_run::AgentRunStatus>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<crate::domain::agent_run::AgentRun>, StoreError> {
        let status = status.map(crate::domain::agent_run::AgentRunStatus::as_str);
        dispatch!(self.agent_runs(agent, status, after, limit))
    }
}

/// SQL both backends share, word for word.
mod sql {
    pub const PING: &str = "SELECT 1";
    pub const INSERT_TENANT: &str = "INSERT INTO tenants (id, name, is_active, created_at, updated_at) \
         VALUES ($1, $2, TRUE, $3, $3) \
         RETURNING id, name, is_active, created_at, updated_at";
    pub const SELECT_TENANT: &str =
        "SELECT id, name, is_active, created_at, updated_at FROM tenants WHERE id = $1";
    pub const LIST_TENANTS: &str = "SELECT id, name, is_active, created_at, updated_at FROM tenants \
         WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2";
    pub const INSERT_API_TOKEN: &str = "INSERT INTO api_tokens \
         (id, tenant_id, kind, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
    /// Tenant tokens and principals' tokens, found by hash in one query.
    pub const SELECT_API_TOKEN: &str = "SELECT t.id, t.tenant_id, t.kind, t.expires_at, t.revoked_at, \
         n.is_active AS tenant_active FROM api_tokens t JOIN tenants n ON n.id = t.tenant_id \
         WHERE t.token_hash = $1 \
         UNION ALL \
         SELECT p.id, p.tenant_id, 'principal', p.expires_at, p.revoked_at, n.is_active \
         FROM principals p JOIN tenants n ON n.id = p.tenant_id WHERE p.token_hash = $1";
    pub const APPLIED_MIGRATIONS: &str =
        "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
}

/// True when every migration of `migrator` is among `applied`.
fn all_applied(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> bool {
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| applied.contains(&m.version))
}

/// A missing `_sqlx_migrations` table means "nothing applied yet", not an error.
fn applied_or_none(result: Result<Vec<i64>, sqlx::Error>) -> Result<Vec<i64>, sqlx::Error> {
    match result {
        Err(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("42P01") || db.message().contains("no such table") =>
        {
            Ok(Vec::new())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_operation_is_cut_at_the_query_timeout() {
        let started = Instant::now();
        let outcome: Result<(), _> = timed("slow", Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
        assert!(matches!(outcome, Err(StoreError::QueryTimeout(_))));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn connection_failures_are_classified_without_details() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = StoreError::from_sqlx(sqlx::Error::Io(refused), Duration::from_secs(1));
        assert!(matches!(&err, StoreError::Unavailable(r) if r == "connection refused"));
    }
}
