//! What the store is opened with: the backend and the connection settings
//! (built by `config` from `DATABASE_*`; the store depends on no config type).

use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`. Holds credentials on PostgreSQL: use [`Self::display_url`].
    pub url: SecretString,
    pub backend: Backend,
    /// `DATABASE_CONNECT_TIMEOUT`, default 10 s.
    pub connect_timeout: Duration,
    /// `DATABASE_QUERY_TIMEOUT`, default 30 s.
    pub query_timeout: Duration,
    /// `DATABASE_MAX_CONNECTIONS`, default 10.
    pub max_connections: u32,
    /// `USE_PGBOUNCER=true`: unnamed statements only and no statement cache, so
    /// PgBouncer transaction pooling works.
    pub use_pgbouncer: bool,
    /// `AUTO_MIGRATE`, default true: apply embedded migrations at start-up.
    pub auto_migrate: bool,
}

impl DatabaseConfig {
    /// The URL with user and password removed, safe for logs.
    pub fn display_url(&self) -> String {
        let url = self.url.expose_secret();
        match self.backend {
            Backend::Sqlite => url.to_owned(),
            Backend::Postgres => match PgConnectOptions::from_str(url) {
                Ok(opts) => format!(
                    "postgres://****@{}:{}/{}",
                    opts.get_host(),
                    opts.get_port(),
                    opts.get_database().unwrap_or_default()
                ),
                Err(_) => "postgres://****".to_owned(),
            },
        }
    }
}
