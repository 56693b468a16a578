//! PostgreSQL backend.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::StoreError;
use crate::config::DatabaseConfig;

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

    super::shared_queries!();
}
