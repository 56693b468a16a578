//! The live activity stream under load (issue 8, "Performance"), measured
//! side by side in one run against two servers, each a process of its own:
//!
//! - `overseer`: the real service (`target/release/overseer`, the binary cargo
//!   builds for this bench), on a throwaway SQLite database (or PostgreSQL
//!   with `--postgres`), events published through `POST /api/v1/audit/events`
//!   and received on `GET /api/activity-stream?tenant_id=bench` as the super
//!   admin;
//! - `bare`: the floor, this same binary re-run as a bare actix-web SSE
//!   broadcast server (a tokio `broadcast` channel and nothing else): `POST
//!   /publish` takes the same JSON array and sends one frame per event,
//!   `GET /stream` forwards the channel.
//!
//! One load tool drives both: it opens N concurrent SSE streams (raw
//! HTTP/1.1 over tokio `TcpStream`, chunked decoding by hand, all on one
//! current-thread runtime), then publishes events at a fixed rate from a
//! thread of its own (reqwest, keep-alive). Each event carries
//! `details.bench_mark = [seq, t]`, where `t` is the moment (µs on the
//! process's monotonic clock) just before its ingest request was handed to
//! the HTTP client; a receiver finds it by a plain substring search, without
//! parsing the JSON. Reported per target: publish→receive latency
//! percentiles, delivered/expected frames (and duplicates, out-of-order
//! frames, resyncs), server RSS (`/proc/<pid>/status` `VmRSS` before and
//! after opening the streams, and after the load; per stream = delta / N)
//! and the CPU each process used while publishing.
//!
//! ```sh
//! cargo bench --bench sse_fanout                       # the issue's scenarios, both targets
//! cargo bench --bench sse_fanout -- --scenarios 5000x100,10000x10 --duration 30 --targets bare,overseer
//! ```
//!
//! Options: `--scenarios NxR[,NxR...]` (N streams × R events/s), `--duration
//! S` (publishing, per scenario and target), `--targets bare,overseer` (run
//! in this order), `--batch B` (events per ingest request; default R/100,
//! at least 1, so one request every 10 ms at 100 events/s), `--workers W`
//! (HTTP workers of both servers, default 2), `--postgres`. The markdown
//! table goes to stdout, progress to stderr. The open-file limit is raised
//! to its hard limit with `prlimit` when the soft one is too low for N
//! streams (the servers inherit it).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark binary: it reports on stdout/stderr and stops at the first failure"
)]

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::{Bytes, BytesMut};
use common::BenchDatabase;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, broadcast};

const ADMIN_TOKEN: &str = "bench-super-admin-token-0123456789abcdef";
const TENANT: &str = "bench";
const MARK: &str = "\"bench_mark\":[";
/// Streams being opened at once (connect + response head).
const CONNECTING: usize = 256;
/// How long frames may still arrive once publishing has stopped.
const DRAIN: Duration = Duration::from_secs(10);
/// Both servers' per-client buffer, in frames (Overseer's default
/// `SSE_CLIENT_BUFFER`).
const CLIENT_BUFFER: usize = 1_024;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    origin().elapsed().as_micros() as u64
}

// ---------------------------------------------------------------------------
// Options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Bare,
    Overseer,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Bare => "bare",
            Target::Overseer => "overseer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scenario {
    streams: usize,
    rate: u32,
}

#[derive(Debug)]
struct Options {
    scenarios: Vec<Scenario>,
    duration: Duration,
    targets: Vec<Target>,
    batch: Option<u32>,
    workers: usize,
    postgres: bool,
}

fn options(args: &[String]) -> Options {
    let mut o = Options {
        scenarios: vec![
            Scenario {
                streams: 5_000,
                rate: 100,
            },
            Scenario {
                streams: 10_000,
                rate: 10,
            },
        ],
        duration: Duration::from_secs(30),
        targets: vec![Target::Bare, Target::Overseer],
        batch: None,
        workers: 2,
        postgres: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            // Passed by `cargo bench` itself.
            "--bench" => {}
            "--scenarios" => {
                o.scenarios = value()
                    .split(',')
                    .map(|s| {
                        let (n, r) = s.split_once('x').expect("--scenarios NxR[,NxR]");
                        Scenario {
                            streams: n.parse().unwrap(),
                            rate: r.parse().unwrap(),
                        }
                    })
                    .collect();
            }
            "--duration" => o.duration = Duration::from_secs_f64(value().parse().unwrap()),
            "--targets" => {
                o.targets = value()
                    .split(',')
                    .map(|t| match t {
                        "bare" => Target::Bare,
                        "overseer" => Target::Overseer,
                        other => panic!("unknown target {other}: bare or overseer"),
                    })
                    .collect();
            }
            "--batch" => o.batch = Some(value().parse().unwrap()),
            "--workers" => o.workers = value().parse().unwrap(),
            "--postgres" => o.postgres = true,
            other => panic!("unknown option {other}"),
        }
    }
    o
}

// ---------------------------------------------------------------------------
// The floor: a bare actix-web SSE broadcast server (`--bare-server PORT W`).

struct Bare {
    tx: broadcast::Sender<Bytes>,
    next_id: AtomicI64,
}

fn bare_server(port: u16, workers: usize) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let (tx, _) = broadcast::channel(CLIENT_BUFFER);
        let state = web::Data::new(Bare {
            tx,
            next_id: AtomicI64::new(1),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/publish", web::post().to(bare_publish))
                .route("/stream", web::get().to(bare_stream))
        })
        .workers(workers)
        .backlog(4_096)
        .max_connections(100_000)
        .bind(("127.0.0.1", port))?
        .run();
        println!("ready");
        server.await
    })
}

/// One frame per event, sent as it is encoded.
async fn bare_publish(state: web::Data<Bare>, body: web::Bytes) -> HttpResponse {
    let Ok(events) = serde_json::from_slice::<Vec<serde_json::Value>>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let n = events.len();
    for event in events {
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        let data = serde_json::json!({
            "id": id,
            "log_id": uuid::Uuid::new_v4(),
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "event": event,
        });
        let frame = format!("id: {id}\nevent: activity\ndata: {data}\n\n");
        // No receiver yet is not an error.
        let _ = state.tx.send(Bytes::from(frame));
    }
    HttpResponse::Accepted().json(serde_json::json!({ "accepted": n }))
}

async fn bare_stream(state: web::Data<Bare>) -> HttpResponse {
    let rx = state.tx.subscribe();
    let head = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(Bytes::from_static(b"retry: 3000\n\n"))
    });
    let frames = futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Ok(frame) => Some((Ok(frame), Some(rx))),
            // Fell behind: say so and end, as Overseer does.
            Err(broadcast::error::RecvError::Lagged(_)) => Some((
                Ok(Bytes::from_static(
                    b"event: resync\ndata: {\"reason\":\"slow_client\"}\n\n",
                )),
                None,
            )),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(futures_util::StreamExt::chain(head, frames))
}

// ---------------------------------------------------------------------------
// Servers under test, each a child process.

struct Server {
    target: Target,
    child: Child,
    addr: SocketAddr,
    _folder: tempfile::TempDir,
    _db: Option<BenchDatabase>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn publish_path(&self) -> &'static str {
        match self.target {
            Target::Bare => "/publish",
            Target::Overseer => "/api/v1/audit/events",
        }
    }

    fn stream_path(&self) -> String {
        match self.target {
            Target::Bare => "/stream".into(),
            Target::Overseer => format!("/api/activity-stream?tenant_id={TENANT}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_server(
    target: Target,
    opts: &Options,
    streams: usize,
    http: &reqwest::Client,
) -> Server {
    let folder = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(folder.path().join("server.log")).unwrap();
    let mut db = None;
    let child = match target {
        Target::Bare => Command::new(std::env::current_exe().unwrap())
            .args([
                "--bare-server",
                &port.to_string(),
                &opts.workers.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
        Target::Overseer => {
            let database = if opts.postgres {
                BenchDatabase::postgres().await
            } else {
                BenchDatabase::sqlite()
            };
            let child = Command::new(env!("CARGO_BIN_EXE_overseer"))
                .current_dir(folder.path())
                .env("BIND_ADDR", format!("127.0.0.1:{port}"))
                .env("DATABASE_URL", &database.url)
                .env("ADMIN_TOKEN", ADMIN_TOKEN)
                .env("ENVIRONMENT", "development")
                .env("HTTP_WORKERS", opts.workers.to_string())
                .env("LOG_LEVEL", "warn")
                .env_remove("RUST_LOG")
                .env("LOG_DIR", folder.path().join("logs"))
                .env("AUDIT_SPOOL_DIR", folder.path().join("spool"))
                .env("SSE_MAX_STREAMS", streams.max(10_000).to_string())
                .env("SSE_MAX_STREAMS_PER_TENANT", streams.max(50).to_string())
                .env("SSE_CLIENT_BUFFER", CLIENT_BUFFER.to_string())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            db = Some(database);
            child
        }
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let ready_path = match target {
        Target::Bare => "/stream-ready-probe",
        Target::Overseer => "/health",
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The bare server answers 404 on the probe: any answer means it listens.
        let answer = http.get(format!("http://{addr}{ready_path}")).send().await;
        match answer {
            Ok(r) if target == Target::Bare || r.status().is_success() => break,
            _ if Instant::now() > deadline => panic!(
                "{} did not start; see {}",
                target.name(),
                folder.path().join("server.log").display()
            ),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let server = Server {
        target,
        child,
        addr,
        _folder: folder,
        _db: db,
    };
    if target == Target::Overseer {
        let r = http
            .post(format!("http://{addr}/api/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "id": TENANT, "name": "Bench" }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "creating the tenant: {}",
            r.status()
        );
    }
    server
}

// ---------------------------------------------------------------------------
// /proc

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a whole process, in clock ticks (100 Hz here).
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Raises the soft open-file limit to the hard one when `needed` is more
/// than the soft limit allows (no unsafe code here: `prlimit(1)` on this
/// process). Returns (soft, hard) afterwards.
fn raise_nofile(needed: u64) -> (u64, u64) {
    let read = || {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_owned();
        let nums: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (nums[0], nums[1])
    };
    let (soft, hard) = read();
    if soft < needed {
        let status = Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={hard}:{hard}"),
            ])
            .status();
        eprintln!("open-file limit {soft} < {needed}: prlimit to {hard} -> {status:?}");
    }
    let (soft, hard) = read();
    assert!(
        soft >= needed,
        "open-file limit {soft} (hard {hard}) is below the {needed} needed: raise it with `ulimit -n`"
    );
    (soft, hard)
}

// ---------------------------------------------------------------------------
// Latency histogram: ~0.8% buckets (7 bits of mantissa), atomics so that the
// receivers need no lock.

const SUB: u32 = 7;
const BUCKETS: usize = (64 - SUB as usize + 1) << SUB;

struct Histogram(Vec<AtomicU64>);

impl Histogram {
    fn new() -> Self {
        Self((0..BUCKETS).map(|_| AtomicU64::new(0)).collect())
    }

    fn index(v: u64) -> usize {
        if v < (1 << SUB) {
            v as usize
        } else {
            let e = 63 - v.leading_zeros();
            let m = (v >> (e - SUB)) & ((1 << SUB) - 1);
            (((e - SUB + 1) as usize) << SUB) + m as usize
        }
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < (1 << SUB) {
            i as u64
        } else {
            let e = (i >> SUB) as u32 + SUB - 1;
            let m = (i & ((1 << SUB) - 1)) as u64;
            let lo = ((1 << SUB) | m) << (e - SUB);
            lo + (1u64 << (e - SUB)) / 2
        }
    }

    fn record(&self, v: u64) {
        self.0[Self::index(v)].fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Nearest-rank percentile, µs.
    fn percentile(&self, p: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.0.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return Self::value(i);
            }
        }
        0
    }

    fn max(&self) -> u64 {
        self.0
            .iter()
            .rposition(|c| c.load(Ordering::Relaxed) > 0)
            .map_or(0, Self::value)
    }
}

// ---------------------------------------------------------------------------
// The receivers

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    failed: AtomicU64,
    ended: AtomicU64,
    resyncs: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    out_of_order: AtomicU64,
    bytes: AtomicU64,
    frames_bytes: AtomicU64,
}

struct Shared {
    hist: Histogram,
    counters: Counters,
    stop: AtomicBool,
}

/// Opens one stream and reads it until the server ends it or `stop`.
async fn receiver(
    addr: SocketAddr,
    request: Arc<[u8]>,
    shared: Arc<Shared>,
    connecting: Arc<Semaphore>,
) {
    let permit = connecting.acquire().await.unwrap();
    let c = &shared.counters;
    let Ok(mut sock) = TcpStream::connect(addr).await else {
        c.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = sock.set_nodelay(true);
    if sock.write_all(&request).await.is_err() {
        c.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // The response head.
    let mut raw = BytesMut::with_capacity(4096);
    let body_start = loop {
        match sock.read_buf(&mut raw).await {
            Ok(0) | Err(_) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
        }
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..body_start]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") || !head.contains("transfer-encoding: chunked") {
        eprintln!("stream refused: {}", head.lines().next().unwrap_or(""));
        c.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    drop(permit);
    c.connected.fetch_add(1, Ordering::Relaxed);
    let _ = raw.split_to(body_start);

    let mut dechunk = Dechunk::default();
    let mut data: Vec<u8> = Vec::with_capacity(4096);
    let mut last_id: u64 = 0;
    let mut resynced = false;
    loop {
        if !raw.is_empty() {
            c.bytes.fetch_add(raw.len() as u64, Ordering::Relaxed);
            if !dechunk.feed(&raw, &mut data) {
                break;
            }
            raw.clear();
            let now = now_us();
            // Whole frames only; the rest waits for the next read.
            if let Some(end) = rfind(&data, b"\n\n") {
                let frames = &data[..end + 2];
                resynced |= scan(frames, now, &shared, &mut last_id);
                data.drain(..end + 2);
            }
        }
        if resynced || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if raw.capacity() < 4096 {
            raw.reserve(16 * 1024);
        }
        match sock.read_buf(&mut raw).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if resynced {
        c.resyncs.fetch_add(1, Ordering::Relaxed);
    }
    if !shared.stop.load(Ordering::Relaxed) {
        c.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records every marked frame in `frames` and checks that the SSE ids only
/// grow (each stream must be in commit order, without duplicates); true if
/// the server sent `resync`.
fn scan(frames: &[u8], now: u64, shared: &Shared, last_id: &mut u64) -> bool {
    // The frames are ASCII JSON; a bad byte would only hide a mark.
    let text = std::str::from_utf8(frames).unwrap_or("");
    let bytes = text.as_bytes();
    let c = &shared.counters;
    let mut n = 0;
    for (at, _) in text.match_indices(MARK) {
        let rest = &bytes[at + MARK.len()..];
        let (_seq, used) = number(rest);
        let (t, _) = number(&rest[used + 1..]);
        shared.hist.record(now.saturating_sub(t));
        n += 1;
    }
    for (at, _) in text.match_indices("id: ") {
        if at > 0 && bytes[at - 1] != b'\n' {
            continue;
        }
        let (id, _) = number(&bytes[at + 4..]);
        if id == *last_id {
            c.duplicates.fetch_add(1, Ordering::Relaxed);
        } else if id < *last_id {
            c.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        *last_id = id;
    }
    c.delivered.fetch_add(n, Ordering::Relaxed);
    c.frames_bytes
        .fetch_add(frames.len() as u64, Ordering::Relaxed);
    text.contains("event: resync\n")
}

fn number(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v * 10 + u64::from(b[i] - b'0');
        i += 1;
    }
    (v, i)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// `Transfer-Encoding: chunked`, decoded incrementally.
#[derive(Default)]
struct Dechunk {
    /// Bytes of the current chunk still to come.
    left: usize,
    /// A chunk-size line (or the CRLF after a chunk) split across reads.
    line: Vec<u8>,
    /// The CRLF that ends the current chunk is still to be skipped.
    crlf: bool,
}

impl Dechunk {
    /// Appends the payload in `input` to `out`; false at the last chunk.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> bool {
        while !input.is_empty() {
            if self.left > 0 {
                let n = self.left.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.left -= n;
                input = &input[n..];
                if self.left == 0 {
                    self.crlf = true;
                }
                continue;
            }
            // A line: the CRLF after a chunk, or a chunk size.
            let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                self.line.extend_from_slice(input);
                return true;
            };
            self.line.extend_from_slice(&input[..nl]);
            input = &input[nl + 1..];
            if self.crlf {
                self.crlf = false;
                self.line.clear();
                continue;
            }
            let size_text = std::str::from_utf8(&self.line).unwrap_or("").trim();
            let size_text = size_text.split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16).unwrap_or(0);
            self.line.clear();
            if size == 0 {
                return false;
            }
            self.left = size;
        }
        true
    }
}

// ---------------------------------------------------------------------------
// The publisher: its own thread and runtime, so that a busy receiver thread
// does not delay the sends (the stamp is taken just before each request).

struct Published {
    requests: u64,
    events: u64,
    failed: u64,
    /// How late requests left compared with the schedule, µs (p99, max).
    late_p99_us: u64,
    late_max_us: u64,
}

fn publish(
    addr: SocketAddr,
    path: &'static str,
    rate: u32,
    batch: u32,
    duration: Duration,
) -> Published {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let url = format!("http://{addr}{path}");
        let period = Duration::from_secs_f64(f64::from(batch) / f64::from(rate));
        let requests = (duration.as_secs_f64() / period.as_secs_f64()).round() as u64;
        let failed = Arc::new(AtomicU64::new(0));
        let mut late = Vec::with_capacity(requests as usize);
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(requests as usize);
        for i in 0..requests {
            let due = start + period.mul_f64(i as f64);
            tokio::time::sleep_until(due).await;
            late.push(due.elapsed().as_micros() as u64);
            let mut body = String::with_capacity(200 * batch as usize);
            body.push('[');
            let t = now_us();
            for k in 0..u64::from(batch) {
                if k > 0 {
                    body.push(',');
                }
                let seq = i * u64::from(batch) + k;
                write!(
                    body,
                    r#"{{"tenant_id":"{TENANT}","operation":"media_buy_update","success":true,"principal_id":"bench-agent","details":{{"bench_mark":[{seq},{t}],"status":"active"}}}}"#
                )
                .unwrap();
            }
            body.push(']');
            let request = http
                .post(&url)
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send();
            let failed = failed.clone();
            tasks.push(tokio::spawn(async move {
                match request.await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        eprintln!("publish: {}", r.status());
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("publish: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        late.sort_unstable();
        let failed = failed.load(Ordering::Relaxed);
        Published {
            requests,
            events: (requests - failed) * u64::from(batch),
            failed,
            late_p99_us: late[(late.len() * 99).div_ceil(100).saturating_sub(1)],
            late_max_us: late.last().copied().unwrap_or(0),
        }
    })
}

// ---------------------------------------------------------------------------
// One measurement

struct Outcome {
    target: Target,
    scenario: Scenario,
    batch: u32,
    connected: u64,
    failed_streams: u64,
    open_time: Duration,
    published: Published,
    expected: u64,
    delivered: u64,
    duplicates: u64,
    out_of_order: u64,
    resyncs: u64,
    ended: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    drain: Duration,
    rss_before: u64,
    rss_open: u64,
    rss_after: u64,
    hwm: u64,
    server_cpu: f64,
    client_cpu: f64,
    bytes_per_frame: f64,
    load: String,
}

async fn measure(target: Target, scenario: Scenario, opts: &Options) -> Outcome {
    let http = reqwest::Client::new();
    let load = loadavg();
    let server = start_server(target, opts, scenario.streams, &http).await;
    let pid = server.pid();
    let batch = opts.batch.unwrap_or((scenario.rate / 100).max(1));
    // Warm the write path once (unmarked), then let the server settle.
    let warm = http
        .post(format!("http://{}{}", server.addr, server.publish_path()))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(format!(
            r#"[{{"tenant_id":"{TENANT}","operation":"warm_up","success":true}}]"#
        ))
        .send()
        .await
        .unwrap();
    assert!(warm.status().is_success(), "warm-up: {}", warm.status());
    drop(http);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = status_kib(pid, "VmRSS:");

    eprintln!(
        "{} {}x{}: opening {} streams",
        target.name(),
        scenario.streams,
        scenario.rate,
        scenario.streams
    );
    let shared = Arc::new(Shared {
        hist: Histogram::new(),
        counters: Counters::default(),
        stop: AtomicBool::new(false),
    });
    let request: Arc<[u8]> = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nAccept: text/event-stream\r\n\r\n",
        server.stream_path(),
        server.addr
    )
    .into_bytes()
    .into();
    let connecting = Arc::new(Semaphore::new(CONNECTING));
    let opened = Instant::now();
    let mut receivers = Vec::with_capacity(scenario.streams);
    for _ in 0..scenario.streams {
        receivers.push(tokio::spawn(receiver(
            server.addr,
            request.clone(),
            shared.clone(),
            connecting.clone(),
        )));
    }
    let c = &shared.counters;
    loop {
        let done = c.connected.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
        if done >= scenario.streams as u64 {
            break;
        }
        assert!(
            opened.elapsed() < Duration::from_secs(120),
            "only {done} of {} streams opened in 120 s",
            scenario.streams
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_time = opened.elapsed();
    let connected = c.connected.load(Ordering::Relaxed);
    let failed_streams = c.failed.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = status_kib(pid, "VmRSS:");
    // Backfill and `retry:` do not count.
    c.bytes.store(0, Ordering::Relaxed);
    c.frames_bytes.store(0, Ordering::Relaxed);
    eprintln!(
        "{} {}x{}: {connected} open in {:.1} s ({failed_streams} failed); publishing for {:?}",
        target.name(),
        scenario.streams,
        scenario.rate,
        open_time.as_secs_f64(),
        opts.duration
    );

    let (server_cpu0, client_cpu0) = (cpu_ticks(pid), cpu_ticks(std::process::id()));
    let t0 = Instant::now();
    let (addr, path, rate, duration) = (
        server.addr,
        server.publish_path(),
        scenario.rate,
        opts.duration,
    );
    let publisher = std::thread::spawn(move || publish(addr, path, rate, batch, duration));
    while !publisher.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published = publisher.join().unwrap();
    let expected = published.events * connected;
    let drained = Instant::now();
    while c.delivered.load(Ordering::Relaxed) < expected && drained.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = drained.elapsed();
    let wall = t0.elapsed().as_secs_f64();
    let server_cpu = (cpu_ticks(pid) - server_cpu0) as f64 / 100.0 / wall;
    let client_cpu = (cpu_ticks(std::process::id()) - client_cpu0) as f64 / 100.0 / wall;
    let rss_after = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");

    shared.stop.store(true, Ordering::Relaxed);
    drop(server);
    for r in receivers {
        let _ = r.await;
    }
    let delivered = c.delivered.load(Ordering::Relaxed);
    let h = &shared.hist;
    Outcome {
        target,
        scenario,
        batch,
        connected,
        failed_streams,
        open_time,
        expected,
        delivered,
        duplicates: c.duplicates.load(Ordering::Relaxed),
        out_of_order: c.out_of_order.load(Ordering::Relaxed),
        resyncs: c.resyncs.load(Ordering::Relaxed),
        ended: c.ended.load(Ordering::Relaxed),
        p50: h.percentile(50.0),
        p90: h.percentile(90.0),
        p99: h.percentile(99.0),
        p999: h.percentile(99.9),
        max: h.max(),
        drain,
        rss_before,
        rss_open,
        rss_after,
        hwm,
        server_cpu,
        client_cpu,
        bytes_per_frame: c.frames_bytes.load(Ordering::Relaxed) as f64 / delivered.max(1) as f64,
        published,
        load,
    }
}

// ---------------------------------------------------------------------------
// Report

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn kib_per_stream(delta: u64, n: u64) -> String {
    format!("{:.1} KiB", delta as f64 / n.max(1) as f64)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn report(outcomes: &[Outcome], opts: &Options) {
    println!(
        "\n| scenario | target | streams open | events | delivered / expected | p50 | p90 | p99 | p99.9 | max | drain | RSS before | RSS streams open | per stream (open) | RSS after load | per stream (after load) | server CPU | client CPU |"
    );
    println!(
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for o in outcomes {
        let n = o.connected;
        println!(
            "| {} × {}/s | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {:.2} s | {:.1} MiB | {:.1} MiB | {} | {:.1} MiB | {} | {:.2} cores | {:.2} cores |",
            thousands(o.scenario.streams as u64),
            o.scenario.rate,
            o.target.name(),
            thousands(n),
            thousands(o.published.events),
            thousands(o.delivered),
            thousands(o.expected),
            ms(o.p50),
            ms(o.p90),
            ms(o.p99),
            ms(o.p999),
            ms(o.max),
            o.drain.as_secs_f64(),
            o.rss_before as f64 / 1024.0,
            o.rss_open as f64 / 1024.0,
            kib_per_stream(o.rss_open.saturating_sub(o.rss_before), n),
            o.rss_after as f64 / 1024.0,
            kib_per_stream(o.rss_after.saturating_sub(o.rss_before), n),
            o.server_cpu,
            o.client_cpu,
        );
    }
    println!();
    println!(
        "| scenario | target | batch | requests (failed) | send late p99 / max | streams failed / ended early / resync | duplicate / decreasing SSE ids | bytes per frame | open time | peak RSS (VmHWM) | load avg before |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for o in outcomes {
        println!(
            "| {} × {}/s | {} | {} | {} ({}) | {} / {} | {} / {} / {} | {} / {} | {:.0} | {:.1} s | {:.1} MiB | {} |",
            thousands(o.scenario.streams as u64),
            o.scenario.rate,
            o.target.name(),
            o.batch,
            thousands(o.published.requests),
            o.published.failed,
            ms(o.published.late_p99_us),
            ms(o.published.late_max_us),
            o.failed_streams,
            o.ended,
            o.resyncs,
            o.duplicates,
            o.out_of_order,
            o.bytes_per_frame,
            o.open_time.as_secs_f64(),
            o.hwm as f64 / 1024.0,
            o.load,
        );
    }
    println!("\nGoals (issue 8):");
    for o in outcomes.iter().filter(|o| o.target == Target::Overseer) {
        let all = o.delivered == o.expected && o.resyncs == 0 && o.failed_streams == 0;
        let per_stream = |o: &Outcome, rss: u64| {
            rss.saturating_sub(o.rss_before) as f64 / o.connected.max(1) as f64
        };
        let open = per_stream(o, o.rss_open);
        let load = per_stream(o, o.rss_after);
        // The goal is read on the streams-open figure, the measurement the
        // issue's own floor figure (≈ 12 KiB for the bare server) matches;
        // after a burst both servers hold write buffers a late reader left,
        // so that figure is shown beside the bare server's.
        let bare_load = outcomes
            .iter()
            .find(|b| b.target == Target::Bare && b.scenario == o.scenario)
            .map_or_else(
                || "no bare run".to_owned(),
                |b| format!("bare {:.1} KiB", per_stream(b, b.rss_after)),
            );
        println!(
            "- {} × {}/s: every frame delivered: {} ({} / {}); RSS per open stream {:.1} KiB ≤ 20 KiB: {}; after the load {:.1} KiB ({bare_load})",
            thousands(o.scenario.streams as u64),
            o.scenario.rate,
            if all { "met" } else { "MISSED" },
            thousands(o.delivered),
            thousands(o.expected),
            open,
            if open <= 20.0 { "met" } else { "MISSED" },
            load,
        );
        if let Some(bare) = outcomes.iter().find(|b| {
            b.target == Target::Bare
                && b.scenario.streams == o.scenario.streams
                && b.scenario.rate == o.scenario.rate
        }) {
            let ratio = o.p99 as f64 / bare.p99.max(1) as f64;
            let verdict = match (o.scenario.rate >= 100, ratio <= 1.5) {
                (false, _) => "the 1.5× goal is for 5,000 × 100/s",
                (true, true) => "≤ 1.5×: met",
                (true, false) => "≤ 1.5×: MISSED",
            };
            println!(
                "  p99 {} vs bare {}: {ratio:.2}× ({verdict})",
                ms(o.p99),
                ms(bare.p99),
            );
        }
        if o.scenario.streams >= 10_000 && o.scenario.rate <= 10 {
            println!(
                "  p99 {} ≤ 250 ms: {}",
                ms(o.p99),
                if o.p99 <= 250_000 { "met" } else { "MISSED" }
            );
        }
    }
    println!(
        "\nPublishing {:?} per scenario and target; {} HTTP workers per server; latency from just before each ingest request was handed to the client's HTTP stack to when the receiver read the frame.",
        opts.duration, opts.workers
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bare-server") {
        let port = args[1].parse().unwrap();
        let workers = args[2].parse().unwrap();
        bare_server(port, workers).unwrap();
        return;
    }
    let opts = options(&args);
    // reqwest is built with `rustls-no-provider`: the one the service uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let most = opts.scenarios.iter().map(|s| s.streams).max().unwrap_or(0) as u64;
    let (soft, hard) = raise_nofile(most + 1_000);
    eprintln!(
        "open-file limit {soft} (hard {hard}); load average {}",
        loadavg()
    );
    let _ = origin();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    runtime.block_on(async {
        for scenario in &opts.scenarios {
            for &target in &opts.targets {
                let o = measure(target, *scenario, &opts).await;
                eprintln!(
                    "{} {}x{}: delivered {}/{}, p50 {} p99 {}, RSS {} -> {} -> {} KiB",
                    target.name(),
                    scenario.streams,
                    scenario.rate,
                    o.delivered,
                    o.expected,
                    ms(o.p50),
                    ms(o.p99),
                    o.rss_before,
                    o.rss_open,
                    o.rss_after
                );
                outcomes.push(o);
                // Let TIME_WAIT and the machine settle.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });
    report(&outcomes, &opts);
}
