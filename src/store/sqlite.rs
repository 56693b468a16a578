//! SQLite backend: one file, WAL mode, foreign keys on, a busy timeout equal to
//! the query timeout.
//!
//! A statement SQLite is already running cannot be interrupted from outside its
//! worker thread through sqlx; the query timeout reports it to the caller, and
//! lock waits end at the busy timeout.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use overseer_actors::audit::event::format_timestamp;
use overseer_actors::audit::idempotency::{self, Plan};
use overseer_actors::audit::{Appended, AuditEvent, CommittedEvent, Offer};
use secrecy::ExposeSecret;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::StoreError;
use super::audit::{self, ChainHead, Prepared};
use crate::store::DatabaseConfig;

/// The columns of an [`AuditRow`] (SQLite stores every one as the row wants it).
macro_rules! sqlite_audit_columns {
    () => {
        "id, log_id, tenant_id, seq, operation, principal_id, principal_name, adapter_id, \
         success, details, error, ip_address, security_violation, created_at, prev_hash, hash, \
         ingested_by"
    };
}

const AUDIT_CHAIN: &str = concat!(
    "SELECT ",
    sqlite_audit_columns!(),
    " FROM audit_logs WHERE COALESCE(tenant_id, '') = $1 AND seq > $2 ORDER BY seq LIMIT $3"
);

/// The start of the filtered audit query (`audit::push_audit_filters!`).
const AUDIT_SELECT: &str = concat!(
    "SELECT ",
    sqlite_audit_columns!(),
    " FROM audit_logs WHERE TRUE"
);

/// Turns a bound timestamp text into the `created_at` column's type.
const TIMESTAMP_CAST: &str = "";

type Db = sqlx::Sqlite;

/// Rows per INSERT statement: 16 parameters each, well under SQLite's limit
/// of 32,766 parameters per statement.
const INSERT_CHUNK: usize = 1_000;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    query_timeout: Duration,
    /// The database file, or `None` for an in-memory database.
    file: Option<PathBuf>,
    /// Always true: SQLite statements are per connection, nothing to pool around.
    persistent: bool,
}

impl SqliteStore {
    pub fn open(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(config.url.expose_secret())
            .map_err(|_| StoreError::Unavailable("invalid SQLite URL".into()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a process crash; only an OS crash
            // or power loss can lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(config.query_timeout);
        let file = Some(options.get_filename())
            .filter(|p| !p.as_os_str().is_empty() && *p != Path::new(":memory:"))
            .map(Path::to_path_buf);
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            query_timeout: config.query_timeout,
            file,
            persistent: true,
        })
    }

    /// The pool, for tests and benchmarks that need to look under the store.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(super) fn query_timeout(&self) -> Duration {
        self.query_timeout
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        if let Some(folder) = self.file.as_deref().and_then(Path::parent)
            && !folder.as_os_str().is_empty()
        {
            std::fs::create_dir_all(folder).map_err(|e| {
                StoreError::Unavailable(format!("cannot create the database folder: {}", e.kind()))
            })?;
        }
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::from_migrate(e, self.query_timeout))
    }

    /// Opens a write transaction: `BEGIN IMMEDIATE` takes the write lock at
    /// once (waiting up to the busy timeout), so a transaction that reads and
    /// then writes never fails to upgrade its lock.
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// `Store::append_audit_after` on SQLite: the events are prepared at
    /// once, then `BEGIN IMMEDIATE` (the trail's lock) once the batch before
    /// has committed (`None` if it did not). A SQLite file has one writer:
    /// begun any earlier, the transaction would only wait for that commit in
    /// SQLite's busy handler, which sleeps in steps of up to 100 ms.
    pub(super) async fn append_audit_after(
        &self,
        events: &[AuditEvent],
        offer: &Offer,
        turn: &mut overseer_actors::audit::Turn,
    ) -> Result<Option<Appended>, sqlx::Error> {
        let prepared = audit::prepared(events);
        if !turn.previous_committed().await {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        turn.locked();
        let appended = self
            .append_prepared(&mut tx, events, prepared, offer)
            .await?;
        tx.commit().await?;
        Ok(Some(appended))
    }

    /// Appends `events` inside the caller's write transaction (opened with
    /// `begin_write`): the same-transaction path for state changes. Every
    /// `log_id` is looked up; these events' ids were minted here, so a
    /// conflict would be a bug, recorded at the wall clock's time.
    pub(super) async fn append_audit_in(
        &self,
        conn: &mut SqliteConnection,
        events: &[AuditEvent],
    ) -> Result<Vec<CommittedEvent>, sqlx::Error> {
        let offer = Offer::answered(events, chrono::Utc::now());
        Ok(self
            .append_offered_in(conn, events, &offer)
            .await?
            .committed)
    }

    /// Appends `events` inside the caller's write transaction as `offer`
    /// says: the spool's replay path.
    pub(super) async fn append_offered_in(
        &self,
        conn: &mut SqliteConnection,
        events: &[AuditEvent],
        offer: &Offer,
    ) -> Result<Appended, sqlx::Error> {
        self.append_prepared(conn, events, audit::prepared(events), offer)
            .await
    }

    /// [`Self::append_offered_in`] for events prepared before the write
    /// lock was taken, looking up only the `log_id`s of `offer.maybe_stored`
    /// (a repeat of another makes the unique index refuse the batch).
    async fn append_prepared(
        &self,
        conn: &mut SqliteConnection,
        events: &[AuditEvent],
        prepared: Vec<Prepared<'_>>,
        offer: &Offer,
    ) -> Result<Appended, sqlx::Error> {
        if events.is_empty() {
            return Ok(Appended::default());
        }
        let plan = self.plan(conn, events, offer).await?;
        let fresh = audit::fresh(prepared, &plan);
        if fresh.is_empty() {
            return Ok(Appended {
                committed: Vec::new(),
                conflicts: plan.conflicts,
            });
        }
        let chains = audit::chains(&fresh);
        let heads: Vec<ChainHead> = sqlx::query_as(
            "SELECT c.value AS chain, \
                 (SELECT seq FROM audit_logs WHERE COALESCE(tenant_id, '') = c.value \
                     ORDER BY seq DESC LIMIT 1) AS seq, \
                 (SELECT hash FROM audit_logs WHERE COALESCE(tenant_id, '') = c.value \
                     ORDER BY seq DESC LIMIT 1) AS hash \
             FROM json_each($1) AS c",
        )
        .bind(serde_json::to_string(&chains).unwrap_or_default())
        .fetch_all(&mut *conn)
        .await?;
        let chained = audit::assign(fresh, heads);

        let mut ids = Vec::with_capacity(chained.len());
        for chunk in chained.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit_logs (log_id, tenant_id, seq, operation, principal_id, \
                 principal_name, adapter_id, success, details, error, ip_address, \
                 security_violation, created_at, prev_hash, hash, ingest_digest, ingested_by) ",
            );
            qb.push_values(chunk, |mut row, c| {
                let e = c.event;
                row.push_bind(e.log_id.to_string())
                    .push_bind(e.tenant_id.clone())
                    .push_bind(c.seq)
                    .push_bind(e.operation.clone())
                    .push_bind(e.principal_id.clone())
                    .push_bind(e.principal_name.clone())
                    .push_bind(e.adapter_id.clone())
                    .push_bind(e.success)
                    .push_bind(e.details.to_string())
                    .push_bind(e.error.clone())
                    .push_bind(e.ip_address.clone())
                    .push_bind(e.security_violation)
                    .push_bind(format_timestamp(e.created_at))
                    .push_bind(c.prev_hash.clone())
                    .push_bind(c.hash.clone())
                    .push_bind(e.ingest_digest.clone())
                    .push_bind(e.ingested_by.clone());
            });
            qb.push(" RETURNING id, log_id");
            let rows: Vec<(i64, String)> = qb.build_query_as().fetch_all(&mut *conn).await?;
            for (id, log_id) in rows {
                ids.push((id, parse_log_id(&log_id)?));
            }
        }
        Ok(Appended {
            committed: audit::committed(chained, ids),
            conflicts: plan.conflicts,
        })
    }

    /// Looks up the `log_id`s of `offer.maybe_stored` and decides what of
    /// `events` to insert (see `idempotency::plan`).
    async fn plan(
        &self,
        conn: &mut SqliteConnection,
        events: &[AuditEvent],
        offer: &Offer,
    ) -> Result<Plan, sqlx::Error> {
        let stored = if offer.maybe_stored.is_empty() {
            Vec::new()
        } else {
            let rows: Vec<audit::ClaimRow> = sqlx::query_as(
                "SELECT log_id, tenant_id, ingest_digest FROM audit_logs \
                 WHERE log_id IN (SELECT value FROM json_each($1))",
            )
            .bind(serde_json::to_string(&offer.maybe_stored).unwrap_or_default())
            .fetch_all(&mut *conn)
            .await?;
            audit::into_claims(rows)?
        };
        Ok(idempotency::plan(events, offer, &stored))
    }

    /// `Store::audit_logs_plan` on SQLite: `EXPLAIN QUERY PLAN`, one line
    /// per step.
    pub(super) async fn audit_logs_plan(
        &self,
        query: &super::AuditQuery,
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("EXPLAIN QUERY PLAN {AUDIT_SELECT}"));
        audit::push_audit_filters!(qb, query, TIMESTAMP_CAST);
        let steps: Vec<(i64, i64, i64, String)> = qb.build_query_as().fetch_all(&self.pool).await?;
        Ok(steps.into_iter().map(|(_, _, _, detail)| detail).collect())
    }

    super::shared_queries!();
    super::domain::domain_queries!();
    super::slack::slack_queries!();
    super::scheduler::scheduler_queries!();
    super::push::push_queries!();
    super::webhooks::webhook_queries!();
    super::reports::report_queries!();
    super::activity::activity_queries!();
    super::alerts::alert_queries!();
    super::agent_runs::agent_run_queries!();
    super::sessions::session_queries!();
    super::tokens::token_queries!();

    /// One SQLite file has one writer at a time (`BEGIN IMMEDIATE`), and the
    /// cycle's statements only move rows still in the state they match: no
    /// lock needed.
    async fn scheduler_lock(&self) -> Result<Option<()>, sqlx::Error> {
        Ok(Some(()))
    }

    async fn scheduler_unlock(&self, (): ()) {}
}

/// A `log_id` as SQLite stores it (hyphenated text).
fn parse_log_id(text: &str) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(text)
        .map_err(|e| sqlx::Error::Decode(format!("audit_logs log_id {text:?}: {e}").into()))
}
