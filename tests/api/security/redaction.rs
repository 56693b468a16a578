//! Secrets sent to the trail (issue 21, item 4). A client, careless or
//! hostile, ingests events with credentials in random places: secret key
//! names in every spelling (camelCase, kebab, UPPER), at random depths, in
//! arrays within objects; secret-shaped text inside `error`, inside the name
//! fields and inside sentences anywhere in `details`, a Slack hook among
//! them; and principals named with a secret, whose rows are committed with
//! the state change. None of the secret material may come out of any sink: the database
//! rows (read through the store and through the export), the four files
//! under logs/, the live activity stream, what Slack receives, and the
//! service's own output.
//!
//! The events are generated from a seed, printed with any failure; set
//! `REDACTION_SEED` to replay one.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use overseer::store::Store;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, BinaryClient, ServiceProcess, TestDatabase, config_from, http_client, on_both_backends,
};
use crate::receiver::Receiver;
use crate::sse;

on_both_backends!(secrets_in_random_places_reach_no_sink);

const EVENTS: usize = 200;
const PER_REQUEST: usize = 20;
/// Operations the Slack router reports when they fail.
const OPERATIONS: &[&str] = &[
    "sync_creatives",
    "create_media_buy",
    "update_media_buy",
    "oauth_exchange",
    "get_products",
];

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const WORDS: &[&str] = &[
    "request", "failed", "while", "calling", "upstream", "with", "retry", "after", "the",
    "adapter", "said", "using", "config", "from", "step", "sync", "of", "order",
];
/// Secret key names as clients spell them.
const SECRET_KEYS: &[&str] = &[
    "clientSecret",
    "accessToken",
    "privateKey",
    "refreshToken",
    "client-secret",
    "CLIENT_SECRET",
    "ACCESS-TOKEN",
    "apiKey",
    "x-api-key",
    "API_KEY",
    "apikey",
    "password",
    "Passwd",
    "pwd",
    "Authorization",
    "cookie",
    "Set-Cookie",
    "jwt",
    "session",
    "signature",
    "X-Hub-Signature",
    "credentials",
    "privatekey",
    "clientsecret",
    "accesstoken",
    "refreshtoken",
    "idToken",
    "secret",
];
const PLAIN_KEYS: &[&str] = &[
    "note", "context", "request", "items", "meta", "step", "payload", "upstream", "headers",
    "attempt", "trace",
];

/// Generates events with secrets and keeps their material: the part of
/// each secret that must not come out anywhere.
struct Secrets {
    rng: StdRng,
    material: Vec<String>,
}

impl Secrets {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            material: Vec::new(),
        }
    }

    fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(*alphabet.choose(&mut self.rng).unwrap()))
            .collect()
    }

    /// Credential material: 16 to 40 letters and digits, one digit at least.
    fn material(&mut self) -> String {
        let n = self.rng.random_range(16..40);
        let mut m = self.chars(ALNUM, n);
        let at = self.rng.random_range(0..n);
        let digit = self.rng.random_range(0..10u8).to_string();
        m.replace_range(at..at + 1, &digit);
        m
    }

    fn keep(&mut self, material: String) -> String {
        self.material.push(material.clone());
        material
    }

    /// A secret in one of the shapes the scan must recognise; `short`
    /// leaves out the long ones (the name fields hold 200 characters).
    fn shaped(&mut self, short: bool) -> String {
        let kinds = if short { 9 } else { 10 };
        match self.rng.random_range(0..kinds) {
            0 => {
                let scheme = *["Bearer", "bearer", "BEARER"]
                    .choose(&mut self.rng)
                    .unwrap();
                let m = self.material();
                format!("{scheme} {}", self.keep(m))
            }
            1 => {
                let m = self.chars(HEX, 64);
                format!("ovs_{}", self.keep(m))
            }
            2 => {
                let team = self.chars(UPPER_ALNUM, 9);
                let bot = self.chars(UPPER_ALNUM, 9);
                let m = self.chars(ALNUM, 24);
                format!(
                    "https://hooks.slack.com/services/T{team}/B{bot}/{}",
                    self.keep(m)
                )
            }
            3 => {
                let n = self.rng.random_range(10..30);
                let header = self.chars(BASE64URL, n);
                let claims = self.chars(BASE64URL, n);
                let signature = self.chars(BASE64URL, 43);
                format!("eyJ{header}.eyJ{claims}.{}", self.keep(signature))
            }
            4 => {
                let prefix = *["AKIA", "ASIA"].choose(&mut self.rng).unwrap();
                let m = self.chars(UPPER_ALNUM, 16);
                format!("{prefix}{}", self.keep(m))
            }
            5 => {
                let m = self.material();
                format!("postgres://app:{}@db.example:5432/app", self.keep(m))
            }
            6 => {
                let name = *[
                    "token",
                    "key",
                    "secret",
                    "password",
                    "api_key",
                    "access_token",
                    "sig",
                    "client_secret",
                ]
                .choose(&mut self.rng)
                .unwrap();
                let m = self.material();
                format!("https://api.example/cb?state=1&{name}={}&x=2", self.keep(m))
            }
            7 => {
                let m = self.chars(BASE64, 24);
                format!("Basic {}", self.keep(m))
            }
            8 => {
                let m = self.material();
                format!(r#"{{"client_secret": "{}"}}"#, self.keep(m))
            }
            _ => {
                let lines: Vec<String> = (0..self.rng.random_range(2..6))
                    .map(|_| self.chars(BASE64, 64))
                    .collect();
                for line in &lines {
                    self.material.push(line.clone());
                }
                format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
                    lines.join("\n")
                )
            }
        }
    }

    fn words(&mut self, at_most: usize) -> String {
        let n = self.rng.random_range(1..=at_most);
        (0..n)
            .map(|_| *WORDS.choose(&mut self.rng).unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A secret inside a sentence.
    fn sentence(&mut self, short: bool) -> String {
        let words = if short { 2 } else { 5 };
        let before = self.words(words);
        let secret = self.shaped(short);
        let after = self.words(words);
        format!("{before} {secret} {after}")
    }

    /// A value of `details`, at `depth`.
    fn value(&mut self, depth: usize) -> Value {
        let kinds = if depth >= 4 { 4 } else { 7 };
        match self.rng.random_range(0..kinds) {
            0 => Value::String(self.words(4)),
            1 => Value::String(self.sentence(false)),
            2 => {
                // Under a secret name, shapeless material too.
                let key = *SECRET_KEYS.choose(&mut self.rng).unwrap();
                let m = self.material();
                json!({ key: self.keep(m) })
            }
            3 => Value::from(self.rng.random::<i32>()),
            4 => Value::Array(
                (0..self.rng.random_range(0..4))
                    .map(|_| self.value(depth + 1))
                    .collect(),
            ),
            5 => {
                let mut map = serde_json::Map::new();
                for _ in 0..self.rng.random_range(1..4) {
                    let key = *PLAIN_KEYS.choose(&mut self.rng).unwrap();
                    map.insert(key.to_owned(), self.value(depth + 1));
                }
                Value::Object(map)
            }
            _ => {
                let key = *SECRET_KEYS.choose(&mut self.rng).unwrap();
                json!({ key: self.value(depth + 1) })
            }
        }
    }

    /// One event as a client sends it.
    fn event(&mut self) -> Value {
        let success = self.rng.random_bool(0.3);
        let mut details = serde_json::Map::new();
        for _ in 0..self.rng.random_range(1..5) {
            let key = if self.rng.random_bool(0.5) {
                *SECRET_KEYS.choose(&mut self.rng).unwrap()
            } else {
                *PLAIN_KEYS.choose(&mut self.rng).unwrap()
            };
            details.insert(key.to_owned(), self.value(0));
        }
        let mut event = json!({
            "operation": *OPERATIONS.choose(&mut self.rng).unwrap(),
            "success": success,
            "security_violation": self.rng.random_bool(0.2),
            "details": details,
        });
        if !success || self.rng.random_bool(0.3) {
            event["error"] = Value::String(self.sentence(false));
        }
        if self.rng.random_bool(0.7) {
            event["principal_name"] = Value::String(self.sentence(true));
        }
        if self.rng.random_bool(0.3) {
            event["principal_id"] = Value::String(self.shaped(true));
        }
        if self.rng.random_bool(0.3) {
            event["adapter_id"] = Value::String(self.sentence(true));
        }
        event
    }

    /// The issue's own example: the four camelCase names, and a bearer
    /// Overseer token in `error`.
    fn the_reported_event(&mut self) -> Value {
        let [a, b, c, d, token] = [(); 5].map(|_| self.material());
        let token = format!("ovs_{token}");
        let event = json!({
            "operation": "oauth_exchange",
            "success": false,
            "details": {"clientSecret": a, "accessToken": b, "privateKey": c, "refreshToken": d},
            "error": format!("auth failed with Bearer {token}"),
        });
        for m in [a, b, c, d, token] {
            self.material.push(m);
        }
        event
    }
}

/// The first piece of secret material `text` contains, with some context.
fn leak(text: &str, material: &[String]) -> Option<String> {
    material.iter().find_map(|m| {
        let at = text.find(m.as_str())?;
        let start = text.floor_char_boundary(at.saturating_sub(80));
        let end = text.ceil_char_boundary((at + m.len() + 40).min(text.len()));
        Some(format!("{m:?} in …{}…", &text[start..end]))
    })
}

async fn secrets_in_random_places_reach_no_sink(backend: Backend) {
    let seed: u64 = std::env::var("REDACTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let receiver = Receiver::start();
    let audit_hook = format!("/services/acme/audit/A{}", uuid::Uuid::new_v4().simple());
    let db = TestDatabase::new(backend).await;
    let workdir = tempfile::tempdir().unwrap();
    let logs = workdir.path().join("logs");
    let token = "a-test-admin-token-of-at-least-32-characters";
    let vars = [
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_TOKEN", token),
        ("LOG_DIR", logs.to_str().unwrap()),
        // Our own code at its most talkative.
        ("RUST_LOG", "info,overseer=debug,overseer_actors=debug"),
        ("SLACK_POLL_INTERVAL", "20ms"),
        ("SLACK_RATE_PER_SECOND", "200"),
        ("SLACK_BURST", "50"),
        // The receiver standing in for Slack listens on loopback, which the
        // outbound guard refuses unless allowed.
        ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
    ];
    let mut service = ServiceProcess::start(workdir.path(), &vars);
    let base = service.base_url().await;
    let api = BinaryClient::new(&base);
    api.post(
        "/api/v1/tenants",
        token,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    let admin = api
        .post("/api/v1/tenants/acme/admin-tokens", token, json!({}))
        .await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    let ingest = api
        .post("/api/v1/tenants/acme/ingest-tokens", token, json!({}))
        .await;
    let ingest = ingest["token"].as_str().unwrap().to_owned();
    api.send(
        reqwest::Method::PATCH,
        "/api/v1/tenant/settings",
        &admin,
        json!({"slack_audit_webhook_url": receiver.url(&audit_hook)}),
    )
    .await;
    let mut stream = sse::open(
        &format!("{base}/api/activity-stream?tenant_id=acme"),
        Some(token),
        None,
    )
    .await
    .unwrap();

    // The attack: 200 events with secrets in random places.
    let mut secrets = Secrets::new(seed);
    // And state changes, whose audit rows are committed with the change
    // rather than through the batcher: principals named with a secret.
    for _ in 0..3 {
        let name = secrets.sentence(true);
        api.post("/api/v1/principals", &admin, json!({ "name": name }))
            .await;
    }
    let mut events = vec![secrets.the_reported_event()];
    events.extend((1..EVENTS).map(|_| secrets.event()));
    let mut log_ids: HashSet<String> = HashSet::new();
    for chunk in events.chunks(PER_REQUEST) {
        let accepted = api
            .post(
                "/api/v1/audit/events",
                &ingest,
                Value::Array(chunk.to_vec()),
            )
            .await;
        assert_eq!(accepted["accepted"], chunk.len(), "seed {seed}: {accepted}");
        log_ids.extend(
            accepted["log_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_owned()),
        );
    }
    let material = secrets.material;
    let check = |sink: &str, text: &str| {
        if let Some(leak) = leak(text, &material) {
            panic!(
                "seed {seed} (REDACTION_SEED={seed} replays it): a secret reached {sink}: {leak}"
            );
        }
    };

    // The live activity stream: every event, none of the secrets.
    let mut frames = Vec::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < EVENTS && Instant::now() < deadline {
        match stream.next_event(Duration::from_secs(5)).await {
            Some(sse::Item::Event { data, .. }) => {
                let value: Value = serde_json::from_str(&data).unwrap();
                if value["log_id"]
                    .as_str()
                    .is_some_and(|id| log_ids.contains(id))
                {
                    seen += 1;
                }
                frames.push(data);
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(seen, EVENTS, "seed {seed}: events on the stream");
    check("the activity stream", &frames.join("\n"));

    // The database, read through the store.
    let store = Store::open(&config_from(&[("DATABASE_URL", db.url.as_str())]).database).unwrap();
    let rows = store.audit_chain("acme", 0, 10_000).await.unwrap();
    let rows: Vec<String> = rows
        .iter()
        .map(|row| serde_json::to_string(row).unwrap())
        .collect();
    let stored = rows
        .iter()
        .filter(|row| log_ids.iter().any(|id| row.contains(id.as_str())))
        .count();
    assert_eq!(stored, EVENTS, "seed {seed}: rows stored");
    assert_eq!(
        rows.iter()
            .filter(|row| row.contains("create_principal"))
            .count(),
        3,
        "seed {seed}: the principals' rows"
    );
    let rows = rows.join("\n");
    assert!(
        rows.contains("[REDACTED]"),
        "seed {seed}: nothing redacted?"
    );
    check("the database", &rows);
    assert!(
        rows.contains("auth failed with Bearer [REDACTED]"),
        "seed {seed}: the sentence stays legible"
    );

    // The database, read through the API's export, as JSON lines and CSV.
    for format in ["jsonl", "csv"] {
        let export = http_client()
            .get(format!(
                "{base}/api/v1/audit/logs?tenant_id=acme&format={format}"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(export.status(), 200);
        let export = export.text().await.unwrap();
        assert!(
            log_ids.iter().all(|id| export.contains(id.as_str())),
            "seed {seed}: the {format} export holds every event"
        );
        check(&format!("the {format} export"), &export);
    }

    // Slack: the failures' notices went out, redacted.
    let within = Instant::now() + Duration::from_secs(30);
    while store.slack_depth().await.unwrap() > 0 || receiver.received(&audit_hook).is_empty() {
        assert!(Instant::now() < within, "seed {seed}: Slack never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slack: Vec<String> = receiver
        .received(&audit_hook)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect();
    let slack = slack.join("\n");
    assert!(slack.contains("[REDACTED]"), "seed {seed}: {slack}");
    check("Slack", &slack);

    // The four files, once every event is in them.
    let files = [
        "audit.log",
        "error.log",
        "structured.jsonl",
        "security.jsonl",
    ];
    let within = Instant::now() + Duration::from_secs(30);
    let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    while !log_ids
        .iter()
        .all(|id| read("structured.jsonl").contains(id.as_str()))
    {
        assert!(Instant::now() < within, "seed {seed}: the files lag");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.stop(Duration::from_secs(20)).await;
    for file in files {
        let text = read(file);
        assert!(!text.is_empty(), "seed {seed}: {file} is empty");
        check(&format!("logs/{file}"), &text);
    }
    check("files left under logs/", &every_file_under(&logs));

    // And the service's own output.
    let output = service.all_output();
    assert!(output.contains("listening"), "seed {seed}: no output");
    check("the service's output", &output);
}

/// The text of every file under `dir` (rotated ones too).
fn every_file_under(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}
