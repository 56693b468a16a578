//! Test helpers: a fresh database per test on each backend, the real
//! application built in-process on port 0, a TCP proxy that can cut the
//! database off, and a runner for the real binary.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use overseer::Application;
use overseer::config::Config;
use overseer::store::Store;
use overseer::telemetry;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::teardown;
pub use crate::teardown::run_test;

/// Where the PostgreSQL tests create their databases. `.ci/run` makes sure a
/// server answers here; a test fails (never skips) when none does.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares each named `async fn(Backend)` as two tests, `<name>::sqlite` and
/// `<name>::postgres`, each followed by the teardown of the applications it
/// started (see [`run_test`]).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[actix_web::test]
                async fn sqlite() {
                    $crate::helpers::run_test(super::$name($crate::helpers::Backend::Sqlite)).await
                }

                #[actix_web::test]
                async fn postgres() {
                    $crate::helpers::run_test(super::$name($crate::helpers::Backend::Postgres))
                        .await
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;

/// A database of its own for one test: a SQLite file in a temporary folder, or
/// a PostgreSQL database with a random name, dropped when the test ends.
pub struct TestDatabase {
    pub url: String,
    _folder: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let folder = tempfile::tempdir().expect("temporary folder");
                Self {
                    url: format!("sqlite://{}/overseer.db", folder.path().display()),
                    _folder: Some(folder),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("overseer_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is not reachable at {admin} ({e}); start it (see README) \
                         or set TEST_DATABASE_URL"
                    )
                });
                conn.execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                    .await
                    .expect("create the test database");
                // The admin URL with the database swapped; its parameters
                // (`?sslmode=...`) are kept.
                let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                let url = url.to_string();
                Self {
                    url,
                    _folder: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// The same database, reached through `proxy` (PostgreSQL only).
    pub fn url_through(&self, proxy: &TcpProxy) -> String {
        let (_, rest) = self
            .url
            .split_once('@')
            .expect("a PostgreSQL URL with a user");
        let (_, database) = rest.split_once('/').expect("a database name");
        format!("postgres://postgres@127.0.0.1:{}/{database}", proxy.port)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop is synchronous and the test's runtime may be gone: use a thread
        // with a runtime of its own.
        let admin = postgres_admin_url();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
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

/// A [`Config`] built through the real parser from environment-style pairs.
pub fn config_from(vars: &[(&str, &str)]) -> Config {
    let vars: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    Config::from_lookup(|name| vars.get(name).cloned()).expect("valid test configuration")
}

pub struct TestApp {
    pub address: String,
    /// `http://127.0.0.1:<port>` of the `/metrics` listener, when
    /// `METRICS_BIND_ADDR` gives it one.
    pub metrics_address: Option<String>,
    pub admin_token: String,
    pub client: reqwest::Client,
    /// The application's database, reached through a store of its own.
    pub store: Store,
    /// `logs/` (the audit file sinks) and `spool/` of this app.
    pub files: tempfile::TempDir,
}

/// The application on a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// The application on a fresh database, with extra configuration variables.
pub async fn spawn_app_with(backend: Backend, vars: &[(&str, &str)]) -> TestApp {
    let db = TestDatabase::new(backend).await;
    let url = db.url.clone();
    spawn_app_on(db, &url, vars).await
}

/// The application on `database_url` (which may lead to `db` through a proxy,
/// or nowhere at all).
pub async fn spawn_app_on(db: TestDatabase, database_url: &str, vars: &[(&str, &str)]) -> TestApp {
    spawn_app_inner(Some(db), database_url, vars, None).await
}

/// The application on `db` (at `database_url`), reading time from `clock`.
pub async fn spawn_app_on_with_clock(
    db: TestDatabase,
    database_url: &str,
    vars: &[(&str, &str)],
    clock: overseer_actors::ManualClock,
) -> TestApp {
    spawn_app_inner(Some(db), database_url, vars, Some(clock)).await
}

/// The application on a fresh database, reading time from `clock`.
pub async fn spawn_app_with_clock(
    backend: Backend,
    vars: &[(&str, &str)],
    clock: overseer_actors::ManualClock,
) -> TestApp {
    let db = TestDatabase::new(backend).await;
    let url = db.url.clone();
    spawn_app_inner(Some(db), &url, vars, Some(clock)).await
}

async fn spawn_app_inner(
    db: Option<TestDatabase>,
    database_url: &str,
    vars: &[(&str, &str)],
    clock: Option<overseer_actors::ManualClock>,
) -> TestApp {
    telemetry::init_for_tests();
    let admin_token = format!("test-admin-{}", uuid::Uuid::new_v4().simple());
    // Audit files and spool of this app alone.
    let files = tempfile::tempdir().expect("temporary folder");
    let log_dir = files.path().join("logs").display().to_string();
    let spool_dir = files.path().join("spool").display().to_string();
    let mut all = vec![
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", database_url),
        ("ADMIN_TOKEN", admin_token.as_str()),
        ("HTTP_WORKERS", "1"),
        ("DATABASE_MAX_CONNECTIONS", "4"),
        ("LOG_DIR", log_dir.as_str()),
        ("AUDIT_SPOOL_DIR", spool_dir.as_str()),
        // The test receivers (Slack, buyers) listen on 127.0.0.1, which the
        // outbound guard refuses unless an operator allows it: these tests
        // are that operator. A test of the guard itself clears it
        // (`WEBHOOK_ALLOWED_CIDRS=""`, later pairs win).
        ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
    ];
    all.extend_from_slice(vars);
    let config = config_from(&all);
    let store = Store::open(&config.database).expect("store");

    let app = match clock {
        Some(clock) => Application::build_with_clock(config, std::sync::Arc::new(clock)).await,
        None => Application::build(config).await,
    }
    .expect("application builds");
    let port = app.port();
    let metrics_port = app.metrics_port();
    // Stopped, and its database dropped, at the end of the test.
    let (stop, end_of_test) = teardown::stop_signal();
    let served = actix_web::rt::spawn(app.run_until(end_of_test));
    teardown::started(stop, served, store.clone(), db);

    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        metrics_address: metrics_port.map(|port| format!("http://127.0.0.1:{port}")),
        admin_token,
        client: {
            overseer::adapters::slack::install_tls_provider();
            reqwest::Client::builder()
        }
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client"),
        store,
        files,
    }
}

impl TestApp {
    /// A second instance of the service (a replica) on the same database,
    /// with its own admin token, files and spool.
    pub async fn replica(&self, database_url: &str, vars: &[(&str, &str)]) -> TestApp {
        spawn_app_inner(None, database_url, vars, None).await
    }

    /// A replica reading time from `clock`.
    pub async fn replica_with_clock(
        &self,
        database_url: &str,
        vars: &[(&str, &str)],
        clock: overseer_actors::ManualClock,
    ) -> TestApp {
        spawn_app_inner(None, database_url, vars, Some(clock)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn get_as_admin(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("request")
    }

    /// `GET` as the super admin, answering with the JSON body.
    pub async fn get_json_as_admin(&self, path: &str) -> serde_json::Value {
        self.get_as_admin(path)
            .await
            .json()
            .await
            .expect("a JSON body")
    }

    pub async fn post_json_as_admin(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST` with a raw body and content type, as the super admin.
    pub async fn post_raw_as_admin(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.admin_token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn health(&self) -> (u16, serde_json::Value) {
        let response = self.get("/health").await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON health body"))
    }

    /// `/health` as the super admin sees it: with the details (tenant ids,
    /// failing webhooks, error texts) that anonymous callers do not get.
    pub async fn health_details(&self) -> (u16, serde_json::Value) {
        let response = self.get_as_admin("/health").await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON health body"))
    }

    /// Polls `/health` until it answers `status` or `within` passes.
    pub async fn wait_for_health(&self, status: u16, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let (got, body) = self.health().await;
            if got == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/health stayed {got} ({body}), expected {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Asserts a JSON error response: its status and `error.code`; returns the body.
pub async fn assert_json_error(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "status of {}",
        response.url()
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?}"
    );
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// A TCP proxy in front of a server, which a test can cut (every connection
/// closed, new ones accepted and closed at once) and restore.
pub struct TcpProxy {
    pub port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept_loop: AbortHandle,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listens");
        let port = listener.local_addr().expect("address").port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept_loop = {
            let cut = cut.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(std::sync::atomic::Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().expect("lock").push(task.abort_handle());
                }
            })
            .abort_handle()
        };
        Self {
            port,
            cut,
            connections,
            accept_loop,
        }
    }

    /// The database "goes away": open connections die, new ones are refused.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept_loop.abort();
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// The real `overseer` binary, run as a child process in its own working
/// folder with a clean environment.
pub struct ServiceProcess {
    child: tokio::process::Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl ServiceProcess {
    pub fn start(workdir: &Path, vars: &[(&str, &str)]) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_overseer"));
        command
            .current_dir(workdir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the overseer binary starts");
        let (stdout, out_reader) = collect_lines(child.stdout.take().expect("stdout"));
        let (stderr, err_reader) = collect_lines(child.stderr.take().expect("stderr"));
        Self {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// The binary on `database_url` with `admin_token`, on a free port, plus
    /// `more` settings; returns once it listens, with its base URL.
    pub async fn serve(
        workdir: &Path,
        database_url: &str,
        admin_token: &str,
        more: &[(&str, &str)],
    ) -> (Self, String) {
        let mut vars = vec![
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", database_url),
            ("ADMIN_TOKEN", admin_token),
        ];
        vars.extend_from_slice(more);
        let mut service = Self::start(workdir, &vars);
        let port = service.wait_for_port(Duration::from_secs(20)).await;
        (service, format!("http://127.0.0.1:{port}"))
    }

    /// Waits for the "listening" log line and returns its port.
    pub async fn wait_for_port(&mut self, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            let port = self.stdout.lock().expect("lock").iter().find_map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).ok()?;
                (value["message"] == "listening").then(|| value["port"].as_u64())?
            });
            if let Some(port) = port {
                return u16::try_from(port).expect("a port");
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "overseer exited with {status} before listening: {:?}",
                    self.stderr
                );
            }
            assert!(
                Instant::now() < deadline,
                "no `listening` line: {:?}",
                self.stdout
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn send_sigkill(&self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits until the service listens; returns its base URL.
    pub async fn base_url(&mut self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.wait_for_port(Duration::from_secs(30)).await
        )
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn send_sigterm(&self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit and its output to be read to the end;
    /// `None` if it is still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .ok()?
            .expect("wait");
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        Some(status)
    }

    /// SIGTERM, then asserts a successful exit within `within`.
    pub async fn stop(&mut self, within: Duration) {
        self.send_sigterm();
        let status = self
            .wait_exit(within)
            .await
            .unwrap_or_else(|| panic!("still running {within:?} after SIGTERM"));
        assert!(status.success(), "exit status {status}");
    }

    pub fn all_output(&self) -> String {
        let mut text = self.stdout.lock().expect("lock").join("\n");
        text.push('\n');
        text.push_str(&self.stderr.lock().expect("lock").join("\n"));
        text
    }
}

/// Reads `stream` line by line into a shared list until EOF.
fn collect_lines(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().expect("lock").push(line);
        }
    });
    (lines, reader)
}

/// A plain HTTP client (reqwest needs the process's TLS provider first).
pub fn http_client() -> reqwest::Client {
    overseer::adapters::slack::install_tls_provider();
    reqwest::Client::new()
}

/// Calls to a running binary: JSON in, a 2xx expected, JSON out.
pub struct BinaryClient {
    base: String,
    client: reqwest::Client,
}

impl BinaryClient {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: http_client(),
        }
    }

    /// `GET path`, unauthenticated, whatever the answer.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the service answers")
    }

    pub async fn post(
        &self,
        path: &str,
        bearer: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        self.send(reqwest::Method::POST, path, bearer, body).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .expect("the service answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }
}
