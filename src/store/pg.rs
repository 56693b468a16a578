//! PostgreSQL backend.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use overseer_actors::audit::idempotency::{self, Plan};
use overseer_actors::audit::{Appended, AuditEvent, CommittedEvent, Offer};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::StoreError;
use super::audit::{self, ChainHead, Prepared};
use crate::store::DatabaseConfig;

/// The `audit_logs` columns of a batch that do not depend on its place in
/// the chains, as the `UNNEST` insert binds them.
struct Columns {
    log_id: Vec<Uuid>,
    tenant_id: Vec<Option<String>>,
    operation: Vec<String>,
    principal_id: Vec<Option<String>>,
    principal_name: Vec<Option<String>>,
    adapter_id: Vec<Option<String>>,
    success: Vec<bool>,
    details: Vec<String>,
    error: Vec<Option<String>>,
    ip_address: Vec<Option<String>>,
    security_violation: Vec<bool>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    ingest_digest: Vec<Option<String>>,
    ingested_by: Vec<Option<String>>,
}

impl Columns {
    fn of(events: &[Prepared<'_>]) -> Self {
        let column =
            |f: fn(&AuditEvent) -> Option<String>| events.iter().map(|p| f(p.event)).collect();
        Self {
            log_id: events.iter().map(|p| p.event.log_id).collect(),
            tenant_id: column(|e| e.tenant_id.clone()),
            operation: events.iter().map(|p| p.event.operation.clone()).collect(),
            principal_id: column(|e| e.principal_id.clone()),
            principal_name: column(|e| e.principal_name.clone()),
            adapter_id: column(|e| e.adapter_id.clone()),
            success: events.iter().map(|p| p.event.success).collect(),
            details: events.iter().map(|p| p.event.details.to_string()).collect(),
            error: column(|e| e.error.clone()),
            ip_address: column(|e| e.ip_address.clone()),
            security_violation: events.iter().map(|p| p.event.security_violation).collect(),
            created_at: events.iter().map(|p| p.event.created_at).collect(),
            ingest_digest: column(|e| e.ingest_digest.clone()),
            ingested_by: column(|e| e.ingested_by.clone()),
        }
    }
}

/// The columns of an [`AuditRow`], as text where the backends differ.
macro_rules! pg_audit_columns {
    () => {
        "id, log_id::text AS log_id, tenant_id, seq, operation, principal_id, principal_name, \
         adapter_id, success, details::text AS details, error, ip_address, security_violation, \
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at, \
         prev_hash, hash, ingested_by"
    };
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// For the dedicated migration connection.
    options: Arc<PgConnectOptions>,
    connect_timeout: Duration,
    query_timeout: Duration,
    /// False under `USE_PGBOUNCER`: statements are sent unnamed, because a named
    /// prepared statement lives on one server connection and PgBouncer's
    /// transaction pooling hands out a different one per transaction.
    persistent: bool,
}

impl PgStore {
    pub fn open(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(config.url.expose_secret())
            .map_err(|_| StoreError::Unavailable("invalid PostgreSQL URL".into()))?
            .application_name("overseer");
        if config.use_pgbouncer {
            // PgBouncer refuses unknown startup parameters, so the server-side
            // statement_timeout is left to the role or pgbouncer.ini; the
            // client-side timeout in `Store` still applies.
            options = options.statement_cache_capacity(0);
        } else {
            // The server cancels a statement that runs past the query timeout,
            // so a slow query stops costing the database anything.
            let millis = config.query_timeout.as_millis().max(1).to_string();
            options = options.options([("statement_timeout", millis.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(options.clone());
        Ok(Self {
            pool,
            options: Arc::new(options),
            connect_timeout: config.connect_timeout,
            query_timeout: config.query_timeout,
            persistent: !config.use_pgbouncer,
        })
    }

    /// The pool, for tests and benchmarks that need to look under the store.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) fn query_timeout(&self) -> Duration {
        self.query_timeout
    }

    /// Migrates over a dedicated connection, closed afterwards, so nothing the
    /// migrator prepares stays on a pooled connection (see `persistent`).
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let classify = |e| StoreError::from_sqlx(e, self.query_timeout);
        let mut conn = tokio::time::timeout(
            self.connect_timeout,
            PgConnection::connect_with(&self.options),
        )
        .await
        .map_err(|_| StoreError::Unavailable("connection timed out".into()))?
        .map_err(classify)?;
        let migrated = MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| StoreError::from_migrate(e, self.query_timeout));
        let _ = conn.close().await;
        migrated
    }

    /// Opens a transaction for a write that appends to the audit trail.
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Appends `events` inside the caller's transaction: the same-transaction path
    /// for state changes. Takes the audit lock, which is held until the caller
    /// commits. Every `log_id` is looked up; these events' ids were minted
    /// here, so a conflict would be a bug, recorded at the wall clock's time.
    pub(super) async fn append_audit_in(
        &self,
        conn: &mut PgConnection,
        events: &[AuditEvent],
    ) -> Result<Vec<CommittedEvent>, sqlx::Error> {
        let offer = Offer::answered(events, chrono::Utc::now());
        Ok(self
            .append_offered_in(conn, events, &offer)
            .await?
            .committed)
    }

    /// Appends `events` inside the caller's transaction as `offer` says: the
    /// spool's replay path. Takes the audit lock, which is held until the
    /// caller commits.
    pub(super) async fn append_offered_in(
        &self,
        conn: &mut PgConnection,
        events: &[AuditEvent],
        offer: &Offer,
    ) -> Result<Appended, sqlx::Error> {
        if events.is_empty() {
            return Ok(Appended::default());
        }
        self.lock_audit(conn).await?;
        let plan = self.plan(conn, events, offer).await?;
        let fresh = audit::fresh(audit::prepared(events), &plan);
        if fresh.is_empty() {
            return Ok(plan_only(plan));
        }
        let columns = Columns::of(&fresh);
        let chained = self.chain(conn, fresh).await?;
        let ids = self.insert_chained(conn, &columns, &chained).await?;
        Ok(Appended {
            committed: audit::committed(chained, ids),
            conflicts: plan.conflicts,
        })
    }

    /// Takes the trail's lock for the rest of the transaction.
    async fn lock_audit(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .persistent(self.persistent)
            .bind(AUDIT_LOCK_KEY)
            .execute(&mut *conn)
            .await
            .map(drop)
    }

    /// `Store::append_audit_after` on PostgreSQL. What does not depend on
    /// the chain's head happens before the lock is taken, while the batch
    /// before may still hold it: the lookup of `maybe_stored`, the plan
    /// (what is a retry, what conflicts) and the columns. Under the lock
    /// remain the heads, the hashes and the insert; the committed events
    /// are built after the commit. An event stored by someone else between
    /// the lookup and the insert (a retry racing its original, or two
    /// submissions racing for one `log_id`), or a repeat of an event not in
    /// `maybe_stored`, makes the unique index refuse the batch, which the
    /// AuditActor then spools and replays with the lookup under the lock:
    /// the loser is then skipped (the same event) or recorded (another).
    pub(super) async fn append_audit_after(
        &self,
        events: &[AuditEvent],
        offer: &Offer,
        turn: &mut overseer_actors::audit::Turn,
    ) -> Result<Option<Appended>, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        let plan = self.plan(&mut tx, events, offer).await?;
        let fresh = audit::fresh(audit::prepared(events), &plan);
        let columns = Columns::of(&fresh);
        turn.previous_locked().await;
        self.lock_audit(&mut tx).await?;
        turn.locked();
        let chained = self.chain(&mut tx, fresh).await?;
        let ids = if chained.is_empty() {
            Vec::new()
        } else {
            self.insert_chained(&mut tx, &columns, &chained).await?
        };
        if !turn.previous_committed().await {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(Appended {
            committed: audit::committed(chained, ids),
            conflicts: plan.conflicts,
        }))
    }

    /// Looks up the `log_id`s of `offer.maybe_stored` and decides what of
    /// `events` to insert (see `idempotency::plan`).
    async fn plan(
        &self,
        conn: &mut PgConnection,
        events: &[AuditEvent],
        offer: &Offer,
    ) -> Result<Plan, sqlx::Error> {
        let stored = if offer.maybe_stored.is_empty() {
            Vec::new()
        } else {
            let rows: Vec<audit::ClaimRow> = sqlx::query_as(
                "SELECT log_id::text AS log_id, tenant_id, ingest_digest FROM audit_logs \
                 WHERE log_id = ANY($1)",
            )
            .persistent(self.persistent)
            .bind(&offer.maybe_stored)
            .fetch_all(&mut *conn)
            .await?;
            audit::into_claims(rows)?
        };
        Ok(idempotency::plan(events, offer, &stored))
    }

    /// Places `fresh` in its chains, after their heads (lock held).
    async fn chain<'a>(
        &self,
        conn: &mut PgConnection,
        fresh: Vec<Prepared<'a>>,
    ) -> Result<Vec<audit::Chained<'a>>, sqlx::Error> {
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let heads: Vec<ChainHead> = sqlx::query_as(
            "SELECT c.chain, h.seq, h.hash FROM UNNEST($1::text[]) AS c(chain) \
             LEFT JOIN LATERAL (SELECT seq, hash FROM audit_logs \
                 WHERE COALESCE(tenant_id, '') = c.chain ORDER BY seq DESC LIMIT 1) h ON TRUE",
        )
        .persistent(self.persistent)
        .bind(audit::chains(&fresh))
        .fetch_all(&mut *conn)
        .await?;
        Ok(audit::assign(fresh, heads))
    }

    /// Inserts `chained` (whose events `columns` holds, in the same order);
    /// returns each row's `(id, log_id)`.
    async fn insert_chained(
        &self,
        conn: &mut PgConnection,
        columns: &Columns,
        chained: &[audit::Chained<'_>],
    ) -> Result<Vec<(i64, Uuid)>, sqlx::Error> {
        sqlx::query_as(
            "INSERT INTO audit_logs (log_id, tenant_id, seq, operation, principal_id, principal_name, \
                 adapter_id, success, details, error, ip_address, security_violation, created_at, \
                 prev_hash, hash, ingest_digest, ingested_by) \
             SELECT log_id, tenant_id, seq, operation, principal_id, principal_name, adapter_id, \
                 success, details::jsonb, error, ip_address, security_violation, created_at, \
                 prev_hash, hash, ingest_digest, ingested_by \
             FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::bool[], $9::text[], $10::text[], $11::text[], $12::bool[], \
                 $13::timestamptz[], $14::text[], $15::text[], $16::text[], $17::text[]) \
                 AS t(log_id, tenant_id, seq, operation, principal_id, principal_name, adapter_id, \
                      success, details, error, ip_address, security_violation, created_at, \
                      prev_hash, hash, ingest_digest, ingested_by) \
             RETURNING id, log_id",
        )
        .persistent(self.persistent)
        .bind(&columns.log_id)
        .bind(&columns.tenant_id)
        .bind(chained.iter().map(|c| c.seq).collect::<Vec<_>>())
        .bind(&columns.operation)
        .bind(&columns.principal_id)
        .bind(&columns.principal_name)
        .bind(&columns.adapter_id)
        .bind(&columns.success)
        .bind(&columns.details)
        .bind(&columns.error)
        .bind(&columns.ip_address)
        .bind(&columns.security_violation)
        .bind(&columns.created_at)
        .bind(chained.iter().map(|c| c.prev_hash.as_str()).collect::<Vec<_>>())
        .bind(chained.iter().map(|c| c.hash.as_str()).collect::<Vec<_>>())
        .bind(&columns.ingest_digest)
        .bind(&columns.ingested_by)
        .fetch_all(&mut *conn)
        .await
    }

    /// `Store::audit_logs_plan` on PostgreSQL: `EXPLAIN`, one line per row.
    pub(super) async fn audit_logs_plan(
        &self,
        query: &super::AuditQuery,
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut qb = QueryBuilder::<Postgres>::new(format!("EXPLAIN {AUDIT_SELECT}"));
        audit::push_audit_filters!(qb, query, TIMESTAMP_CAST);
        qb.build_query_scalar().fetch_all(&self.pool).await
    }

    super::shared_queries!();
    super::domain::domain_queries!();
    super::slack::slack_queries!();
    super::scheduler::scheduler_queries!();
    super::push::push_queries!();
    super::webhooks::webhook_queries!();
    super::reports::report_queries!();
    super::activity::activity_queries!();
    super::agent_runs::agent_run_queries!();
    super::sessions::session_queries!();
    super::tokens::token_queries!();

    /// A listener on a connection of the pool's, not yet listening (see
    /// [`Store::audit_listener`]). PgBouncer in transaction mode cannot carry
    /// LISTEN; the listener needs a direct connection.
    pub(super) async fn audit_listener(&self) -> Result<sqlx::postgres::PgListener, StoreError> {
        sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx(e, self.query_timeout))
    }
    super::alerts::alert_queries!();

    /// The status scheduler's session lock, on a connection of its own held
    /// for the cycle; `None` when another session (replica) holds it.
    async fn scheduler_lock(&self) -> Result<Option<SchedulerLock>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .persistent(self.persistent)
            .bind(SCHEDULER_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then(|| SchedulerLock(Some(conn))))
    }

    /// Releases the lock and returns the connection to the pool; a
    /// connection that cannot say so is closed (which releases it too).
    async fn scheduler_unlock(&self, mut lock: SchedulerLock) {
        let Some(mut conn) = lock.0.take() else {
            return;
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .persistent(self.persistent)
            .bind(SCHEDULER_LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            drop(conn.detach());
        }
    }
}

/// The connection holding the scheduler's session lock. Dropped without
/// [`PgStore::scheduler_unlock`] (the cycle was cancelled or panicked), it
/// closes the connection, which ends the session and so releases the lock,
/// instead of going back to the pool still holding it.
struct SchedulerLock(Option<sqlx::pool::PoolConnection<Postgres>>);

impl Drop for SchedulerLock {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

const AUDIT_CHAIN: &str = concat!(
    "SELECT ",
    pg_audit_columns!(),
    " FROM audit_logs WHERE COALESCE(tenant_id, '') = $1 AND seq > $2 ORDER BY seq LIMIT $3"
);

/// The start of the filtered audit query (`audit::push_audit_filters!`).
const AUDIT_SELECT: &str = concat!(
    "SELECT ",
    pg_audit_columns!(),
    " FROM audit_logs WHERE TRUE"
);

/// Turns a bound timestamp text into the `created_at` column's type.
const TIMESTAMP_CAST: &str = "::timestamptz";

type Db = sqlx::Postgres;

/// An append that inserted nothing: its conflicts, if any.
fn plan_only(plan: Plan) -> Appended {
    Appended {
        committed: Vec::new(),
        conflicts: plan.conflicts,
    }
}

/// The advisory lock every audit append takes ("overseer" in ASCII).
const AUDIT_LOCK_KEY: i64 = 0x6f76_6572_7365_6572;

/// `pg_try_advisory_lock` key of the status scheduler.
const SCHEDULER_LOCK_KEY: i64 = 0x6f76_7374_6174_7573;
