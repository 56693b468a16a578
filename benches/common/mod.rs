//! What the benchmark harnesses share: a throwaway database per run.

// Each harness uses part of this module.
#![allow(dead_code, reason = "shared by harnesses that each use a part")]

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The PostgreSQL server's admin URL (`TEST_DATABASE_URL`, as the tests).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh PostgreSQL database (dropped WITH (FORCE) at the end, or after a
/// panic), or a SQLite file in a temporary folder.
pub struct BenchDatabase {
    pub url: String,
    _folder: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl BenchDatabase {
    /// A SQLite file in a folder of its own.
    pub fn sqlite() -> Self {
        let folder = tempfile::tempdir().unwrap();
        Self {
            url: format!("sqlite://{}/bench.db", folder.path().display()),
            _folder: Some(folder),
            pg: None,
        }
    }

    /// A new PostgreSQL database. `BENCH_PG_SOCKET_DIR` (e.g.
    /// /var/run/postgresql): reach it over its Unix socket instead of TCP.
    pub async fn postgres() -> Self {
        let admin = postgres_admin_url();
        let name = format!("overseer_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin}: {e}"));
        conn.execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await
            .unwrap();
        let _ = conn.close().await;
        // The admin URL with the database swapped; its parameters
        // (`?sslmode=...`) are kept.
        let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        if let Ok(dir) = std::env::var("BENCH_PG_SOCKET_DIR")
            && !dir.is_empty()
        {
            url.query_pairs_mut().append_pair("host", &dir);
        }
        let url = url.to_string();
        eprintln!("database {name}");
        Self {
            url,
            _folder: None,
            pg: Some((admin, name)),
        }
    }

    /// The PostgreSQL database's name ("" for SQLite).
    pub fn name(&self) -> &str {
        self.pg.as_ref().map_or("", |(_, name)| name)
    }

    pub async fn drop_now(mut self) {
        if let Some((admin, name)) = self.pg.take() {
            let mut conn = PgConnection::connect(&admin).await.unwrap();
            conn.execute(AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .await
            .unwrap();
            let _ = conn.close().await;
        }
    }
}

impl Drop for BenchDatabase {
    /// After a panic: drop the database from a thread with a runtime of its
    /// own (the System may be gone).
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(AssertSqlSafe(format!(
                            r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}
