//! SQLite backend: one file, WAL mode, foreign keys on, a busy timeout equal to
//! the query timeout.
//!
//! A statement SQLite is already running cannot be interrupted from outside its
//! worker thread through sqlx; the query timeout reports it to the caller, and
//! lock waits end at the busy timeout.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;
use crate::config::DatabaseConfig;

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

    super::shared_queries!();
}
