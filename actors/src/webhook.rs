//! Buyers' webhooks: the sender that drains the webhook outbox.
//!
//! Each row is one request (an AdCP envelope, built and frozen when it was
//! queued) to one push-notification config. Every poll the sender claims the
//! due rows with a lease, posts each with its config's authentication, and
//! records the attempt:
//!
//! - `bearer`: `Authorization: Bearer <token>`;
//! - `hmac-sha256`: `X-AdCP-Timestamp: <unix seconds>` and
//!   `X-AdCP-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." +
//!   body)>`, over exactly the bytes sent;
//! - `none`: nothing (registration refuses it in production).
//!
//! 2xx is `delivered`. 408, 429 (after `Retry-After`), 5xx, timeouts and
//! connection errors are retried with exponential backoff and jitter up to
//! the attempt budget, then `failed`. 401 / 403 fail the row and mark the
//! config `auth_blocked` (until the buyer registers new credentials); any
//! other 4xx fails it at once. A failed row stays visible, and can be queued
//! again. Every attempt is recorded (`webhook_deliveries`) and audited
//! (`webhook_delivered`, or `webhook_failed` saying whether it will be
//! retried). A config that asks for a token it does not have, or `none` in
//! production, is never sent to.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::Clock;
use crate::audit::{AuditEvent, Auditor, Source};
use crate::slack::pacer::backoff;
use crate::supervisor::{ActorHandle, Child, RestartPolicy, Supervisor};

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

/// How the receiver is authenticated.
#[derive(Clone)]
pub enum WebhookAuth {
    Bearer(SecretString),
    HmacSha256(SecretString),
    None,
    /// The config asks for a token or secret it does not have: such a
    /// request is never sent (never unsigned where a signature was asked).
    Missing(&'static str),
}

impl std::fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WebhookAuth::Bearer(_) => "bearer",
            WebhookAuth::HmacSha256(_) => "hmac-sha256",
            WebhookAuth::None => "none",
            WebhookAuth::Missing(kind) => kind,
        })
    }
}

/// A due outbox row, with what sending it needs.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    pub id: i64,
    pub tenant_id: String,
    pub config_id: String,
    pub media_buy_id: String,
    pub task_type: String,
    /// The URL (may carry secrets in its query).
    pub url: SecretString,
    /// `scheme://host/path`, for logs and the trail.
    pub endpoint: String,
    pub auth: WebhookAuth,
    /// The exact bytes to send.
    pub body: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// What became of a row after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Delivered,
    Retry {
        at: DateTime<Utc>,
    },
    Failed,
    /// Failed, and the config is `auth_blocked`.
    AuthBlocked,
}

/// The port onto the webhook outbox.
pub trait WebhookStore: Send + Sync + 'static {
    /// Pending rows due at `now` and not leased, oldest first.
    fn due(&self, now: DateTime<Utc>, limit: u32) -> BoxFuture<Vec<WebhookJob>>;
    /// Leases those of `ids` still pending and unleased until `until`.
    fn claim(&self, ids: Vec<i64>, now: DateTime<Utc>, until: DateTime<Utc>)
    -> BoxFuture<Vec<i64>>;
    /// Records the attempt and the row's new state (and the config's, for
    /// [`Settlement::AuthBlocked`]), releasing the lease.
    fn settle(
        &self,
        job: WebhookJob,
        attempt: Attempt,
        settlement: Settlement,
        now: DateTime<Utc>,
    ) -> BoxFuture<()>;
    /// Requests waiting, due or not.
    fn depth(&self) -> BoxFuture<u64>;
    /// Puts a claimed row back, due at `at`, with no attempt recorded (its
    /// endpoint's breaker is open).
    fn defer(&self, id: i64, at: DateTime<Utc>) -> BoxFuture<()>;
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
}

/// The port onto HTTP: posts `body` with `headers` to `url`, connecting only
/// to addresses the SSRF guard allows, following no redirect. `Err` is a
/// transport failure or a refusal, with a reason free of the URL.
pub trait WebhookTransport: Send + Sync + 'static {
    fn post(
        &self,
        url: &SecretString,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> BoxFuture<Answer>;
}

/// `sha256=<lowercase hex of HMAC-SHA256(secret, "<timestamp>." + body)>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The authentication headers of one request sent at `timestamp`.
pub fn auth_headers(
    auth: &WebhookAuth,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    match auth {
        WebhookAuth::Bearer(token) => {
            vec![("authorization", format!("Bearer {}", token.expose_secret()))]
        }
        WebhookAuth::HmacSha256(secret) => vec![
            ("x-adcp-timestamp", timestamp.to_string()),
            (
                "x-adcp-signature",
                signature(secret.expose_secret().as_bytes(), timestamp, body),
            ),
        ],
        WebhookAuth::None | WebhookAuth::Missing(_) => Vec::new(),
    }
}

/// The sender's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub poll_interval: Duration,
    /// `WEBHOOK_MAX_ATTEMPTS` (6).
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Wait after a 429 without `Retry-After`.
    pub default_retry_after: Duration,
    pub lease: Duration,
    /// Rows read per poll (`WEBHOOK_BATCH`); a full batch is followed by
    /// another poll at once.
    pub batch: u32,
    /// Consecutive failures that open an endpoint's circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker leaves the endpoint alone.
    pub breaker_cooldown: Duration,
    /// Whether `none` configs may be sent to (not in production).
    pub allow_unauthenticated: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            max_attempts: 6,
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(600),
            default_retry_after: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            batch: 200,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(60),
            allow_unauthenticated: true,
        }
    }
}

/// What to do after an answer, given the attempt number.
pub fn decide(
    answer: &Result<Answer, String>,
    attempt: u32,
    config: &WebhookConfig,
    now: DateTime<Utc>,
    jitter: f64,
) -> Settlement {
    let retry_in = |wait: Duration| Settlement::Retry {
        at: now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
    };
    let transient =
        |wait: Option<Duration>| {
            if attempt >= config.max_attempts {
                Settlement::Failed
            } else {
                retry_in(wait.unwrap_or_else(|| {
                    backoff(attempt, config.retry_base, config.retry_cap, jitter)
                }))
            }
        };
    match answer {
        Ok(a) if (200..300).contains(&a.status) => Settlement::Delivered,
        Ok(a) if a.status == 401 || a.status == 403 => Settlement::AuthBlocked,
        Ok(a) if a.status == 429 => {
            transient(Some(a.retry_after.unwrap_or(config.default_retry_after)))
        }
        Ok(a) if a.status == 408 || a.status >= 500 => transient(None),
        Ok(_) => Settlement::Failed,
        Err(_) => transient(None),
    }
}

/// A per-endpoint circuit breaker: after `threshold` consecutive failures
/// (timeouts, connection errors, 408, 429, 5xx) the endpoint is left alone
/// for `cooldown`; then one request probes it (half-open): success closes
/// the breaker, failure opens it again. Answers of other kinds (2xx, 4xx)
/// show the endpoint is up and reset the count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    open_until: Option<DateTime<Utc>>,
    probing: bool,
}

/// What the breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Send,
    /// Open (or a probe is out): try again at this time.
    Wait(DateTime<Utc>),
}

impl Breaker {
    pub fn gate(&mut self, now: DateTime<Utc>) -> Gate {
        match self.open_until {
            Some(until) if now < until => Gate::Wait(until),
            Some(_) if self.probing => Gate::Wait(now + chrono::Duration::seconds(1)),
            Some(_) => {
                self.probing = true;
                Gate::Send
            }
            None => Gate::Send,
        }
    }

    /// Books an attempt's outcome (`failed`: it counts against the endpoint).
    pub fn record(&mut self, failed: bool, now: DateTime<Utc>, threshold: u32, cooldown: Duration) {
        self.probing = false;
        if !failed {
            *self = Breaker::default();
            return;
        }
        self.failures += 1;
        if self.open_until.is_some() || self.failures >= threshold {
            self.open_until =
                Some(now + chrono::Duration::from_std(cooldown).unwrap_or(chrono::Duration::MAX));
        }
    }
}

struct Shared {
    config: WebhookConfig,
    store: Arc<dyn WebhookStore>,
    transport: Arc<dyn WebhookTransport>,
    auditor: Auditor,
    clock: Arc<dyn Clock>,
    /// When `webhook_outbox_depth` was last read.
    depth_read: std::sync::Mutex<Option<Instant>>,
    /// Circuit breakers by endpoint (`scheme://host/path`).
    breakers: std::sync::Mutex<std::collections::HashMap<String, Breaker>>,
}

/// The running sender.
#[derive(Clone)]
pub struct WebhookSender {
    actor: ActorHandle<WebhookSenderActor>,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender").finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// Starts `webhook_sender` under `supervisor`.
    pub fn start(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        config: WebhookConfig,
        store: Arc<dyn WebhookStore>,
        transport: Arc<dyn WebhookTransport>,
        auditor: Auditor,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let shared = Arc::new(Shared {
            config,
            store,
            transport,
            auditor,
            clock,
            depth_read: std::sync::Mutex::new(None),
            breakers: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let actor = supervisor.spawn("webhook_sender", policy, move |child| WebhookSenderActor {
            child: child.clone(),
            shared: shared.clone(),
        });
        Self { actor }
    }

    pub fn name(&self) -> &'static str {
        self.actor.name()
    }
}

/// The supervised actor: one poll at a time.
pub struct WebhookSenderActor {
    child: Child,
    shared: Arc<Shared>,
}

impl Actor for WebhookSenderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.shared.config.poll_interval, |act, ctx| act.poll(ctx));
    }
}

/// Poll again now (the last poll found a full batch).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct PollAgain;

impl Handler<PollAgain> for WebhookSenderActor {
    type Result = ();

    fn handle(&mut self, _: PollAgain, ctx: &mut Context<Self>) {
        self.poll(ctx);
    }
}

impl WebhookSenderActor {
    /// One poll at a time (`wait`); a full batch means more may be due, so
    /// the next poll follows at once instead of at the next tick.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.child.trip(ctx) {
            return;
        }
        let batch = self.shared.config.batch as usize;
        let poll = poll(self.shared.clone());
        ctx.wait(poll.into_actor(self).map(move |taken, _, ctx| {
            if taken >= batch {
                ctx.notify(PollAgain);
            }
        }));
    }
}

/// Claims the due rows and sends them; answers how many it read.
async fn poll(shared: Arc<Shared>) -> usize {
    let read_depth = {
        let mut last = shared
            .depth_read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if due {
            *last = Some(Instant::now());
        }
        due
    };
    if read_depth {
        match shared.store.depth().await {
            Ok(depth) => metrics::gauge!("webhook_outbox_depth").set(depth as f64),
            Err(reason) => tracing::warn!(%reason, "webhooks: could not read the outbox depth"),
        }
    }
    let now = shared.clock.now();
    let jobs = match shared.store.due(now, shared.config.batch).await {
        Ok(jobs) if jobs.is_empty() => return 0,
        Ok(jobs) => jobs,
        Err(reason) => {
            tracing::warn!(%reason, "webhooks: could not read the outbox");
            return 0;
        }
    };
    let lease = chrono::Duration::from_std(shared.config.lease).unwrap_or(chrono::Duration::MAX);
    let read = jobs.len();
    let ids = jobs.iter().map(|j| j.id).collect();
    let claimed = match shared.store.claim(ids, now, now + lease).await {
        Ok(claimed) => claimed,
        Err(reason) => {
            tracing::warn!(%reason, "webhooks: could not claim deliveries");
            return 0;
        }
    };
    // Endpoints concurrently (one slow receiver does not hold up the
    // others); each endpoint's requests in order, through its breaker.
    let mut by_endpoint: Vec<(String, Vec<WebhookJob>)> = Vec::new();
    for job in jobs.into_iter().filter(|j| claimed.contains(&j.id)) {
        match by_endpoint.iter_mut().find(|(e, _)| *e == job.endpoint) {
            Some((_, queue)) => queue.push(job),
            None => by_endpoint.push((job.endpoint.clone(), vec![job])),
        }
    }
    let mut sends = tokio::task::JoinSet::new();
    for (endpoint, queue) in by_endpoint {
        sends.spawn(send_in_order(shared.clone(), endpoint, queue));
    }
    while sends.join_next().await.is_some() {}
    read
}

/// One endpoint's requests, one after another, while its breaker allows.
async fn send_in_order(shared: Arc<Shared>, endpoint: String, queue: Vec<WebhookJob>) {
    for job in queue {
        let now = shared.clock.now();
        let gate = shared
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(endpoint.clone())
            .or_default()
            .gate(now);
        match gate {
            Gate::Send => send(shared.clone(), job).await,
            Gate::Wait(at) => {
                metrics::counter!("webhook_deliveries_total", "result" => "breaker_open")
                    .increment(1);
                if let Err(reason) = shared.store.defer(job.id, at).await {
                    tracing::warn!(outbox_id = job.id, %reason, "webhooks: could not defer a request");
                }
            }
        }
    }
}

/// Every attempt is audited: `webhook_delivered`, or `webhook_failed` with
/// whether it will be retried.
fn audit_attempt(
    shared: &Shared,
    job: &WebhookJob,
    attempt: u32,
    status_code: Option<u16>,
    error: Option<&str>,
    settlement: &Settlement,
    now: DateTime<Utc>,
) {
    let delivered = *settlement == Settlement::Delivered;
    let mut event = AuditEvent::new(
        if delivered {
            "webhook_delivered"
        } else {
            "webhook_failed"
        },
        now,
    )
    .with_tenant(job.tenant_id.clone())
    .with_principal("system", Some("System".to_owned()))
    .with_details(serde_json::json!({
        "config_id": job.config_id,
        "media_buy_id": job.media_buy_id,
        "task_type": job.task_type,
        "endpoint": job.endpoint,
        "attempt": attempt,
        "status_code": status_code,
        "will_retry": matches!(settlement, Settlement::Retry { .. }),
        "auth_blocked": *settlement == Settlement::AuthBlocked,
    }));
    if !delivered {
        event = event.failed(error.unwrap_or("failed").to_owned());
    }
    shared.auditor.record(Source::Internal, event);
}

/// One attempt at one row.
async fn send(shared: Arc<Shared>, job: WebhookJob) {
    let attempt_number = job.attempts + 1;
    let refusal = match &job.auth {
        WebhookAuth::Missing(kind) => Some(format!("the config has no {kind} credentials")),
        WebhookAuth::None if !shared.config.allow_unauthenticated => {
            Some("authentication none is not allowed in production".to_owned())
        }
        _ => None,
    };
    if let Some(error) = refusal {
        tracing::warn!(endpoint = %job.endpoint, %error, "webhook not sent");
        metrics::counter!("webhook_deliveries_total", "result" => "refused").increment(1);
        let now = shared.clock.now();
        audit_attempt(
            &shared,
            &job,
            attempt_number,
            None,
            Some(&error),
            &Settlement::Failed,
            now,
        );
        let attempt = Attempt {
            number: attempt_number,
            status_code: None,
            duration_ms: 0,
            error: Some(error),
        };
        if let Err(reason) = shared
            .store
            .settle(job, attempt, Settlement::Failed, now)
            .await
        {
            tracing::warn!(%reason, "webhooks: could not record a refusal");
        }
        return;
    }
    let sent_at = shared.clock.now();
    let body = job.body.clone().into_bytes();
    let mut headers = auth_headers(&job.auth, sent_at.timestamp(), &body);
    headers.push(("content-type", "application/json".to_owned()));
    let started = Instant::now();
    let answer = shared.transport.post(&job.url, headers, body).await;
    let elapsed = started.elapsed();
    metrics::histogram!("webhook_delivery_duration_seconds").record(elapsed.as_secs_f64());
    // Waits count from the answer: the clock when the request went out plus
    // how long it took (a manual clock moved after the receiver answered
    // cannot shift them).
    let answered_at = sent_at + chrono::Duration::from_std(elapsed).unwrap_or_default();
    let settlement = decide(
        &answer,
        attempt_number,
        &shared.config,
        answered_at,
        rand::random(),
    );
    let now = shared.clock.now();
    let endpoint_failed = match &answer {
        Ok(a) => a.status == 408 || a.status == 429 || a.status >= 500,
        Err(_) => true,
    };
    {
        let mut breakers = shared
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let breaker = breakers.entry(job.endpoint.clone()).or_default();
        let was_open = breaker.open_until.is_some();
        breaker.record(
            endpoint_failed,
            answered_at,
            shared.config.breaker_threshold,
            shared.config.breaker_cooldown,
        );
        if breaker.open_until.is_some() && !was_open {
            tracing::warn!(endpoint = %job.endpoint, "webhook endpoint failing: circuit breaker open");
        }
    }
    let attempt = Attempt {
        number: attempt_number,
        status_code: answer.as_ref().ok().map(|a| a.status),
        duration_ms: elapsed.as_millis() as u64,
        error: match &answer {
            Ok(a) if (200..300).contains(&a.status) => None,
            Ok(a) => Some(format!("HTTP {}", a.status)),
            Err(reason) => Some(reason.clone()),
        },
    };
    let result = match &settlement {
        Settlement::Delivered => "delivered",
        Settlement::Retry { .. } => "retried",
        Settlement::Failed => "failed",
        Settlement::AuthBlocked => "auth_blocked",
    };
    metrics::counter!("webhook_deliveries_total", "result" => result).increment(1);
    match &settlement {
        Settlement::Retry { at } => tracing::info!(
            endpoint = %job.endpoint, attempt = attempt_number, error = ?attempt.error,
            retry_at = %at, "webhook attempt failed; will retry"
        ),
        Settlement::Failed | Settlement::AuthBlocked => tracing::warn!(
            endpoint = %job.endpoint, attempt = attempt_number, error = ?attempt.error,
            result, "webhook failed"
        ),
        Settlement::Delivered => {}
    }
    audit_attempt(
        &shared,
        &job,
        attempt_number,
        attempt.status_code,
        attempt.error.as_deref(),
        &settlement,
        now,
    );
    let id = job.id;
    if let Err(reason) = shared.store.settle(job, attempt, settlement, now).await {
        // The lease runs out and the row is sent again: a duplicate the
        // receiver recognises by its idempotency_key, never a loss.
        tracing::warn!(outbox_id = id, %reason, "webhooks: could not record an attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_over_the_timestamp_a_dot_and_the_exact_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature(b"key", 1_700_000_000, br#"{"a":1}"#),
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
        let headers = auth_headers(
            &WebhookAuth::HmacSha256(SecretString::from("key")),
            1_700_000_000,
            br#"{"a":1}"#,
        );
        assert_eq!(headers[0], ("x-adcp-timestamp", "1700000000".to_owned()));
        assert!(headers[1].1.starts_with("sha256=a438e3"));
        let bearer = auth_headers(&WebhookAuth::Bearer(SecretString::from("t")), 0, b"");
        assert_eq!(bearer, [("authorization", "Bearer t".to_owned())]);
        assert!(auth_headers(&WebhookAuth::None, 0, b"").is_empty());
    }

    #[test]
    fn the_breaker_opens_after_five_failures_and_probes_after_the_cooldown() {
        let t0 = Utc::now();
        let cooldown = Duration::from_secs(60);
        let mut b = Breaker::default();
        for _ in 0..4 {
            assert_eq!(b.gate(t0), Gate::Send);
            b.record(true, t0, 5, cooldown);
        }
        assert_eq!(b.gate(t0), Gate::Send);
        b.record(true, t0, 5, cooldown);
        let reopen = t0 + chrono::Duration::seconds(60);
        assert_eq!(
            b.gate(t0 + chrono::Duration::seconds(59)),
            Gate::Wait(reopen)
        );
        // Half-open: one probe; the others wait for it.
        assert_eq!(b.gate(reopen), Gate::Send);
        assert!(matches!(b.gate(reopen), Gate::Wait(_)));
        b.record(true, reopen, 5, cooldown);
        assert!(
            matches!(b.gate(reopen), Gate::Wait(_)),
            "a failed probe opens it again"
        );
        let later = reopen + chrono::Duration::seconds(60);
        assert_eq!(b.gate(later), Gate::Send);
        b.record(false, later, 5, cooldown);
        assert_eq!(b, Breaker::default(), "a success closes it");
    }

    #[test]
    fn answers_decide_retries_failures_and_blocks() {
        let config = WebhookConfig::default();
        let now = Utc::now();
        let ok = |status| {
            Ok(Answer {
                status,
                retry_after: None,
            })
        };
        assert_eq!(
            decide(&ok(200), 1, &config, now, 0.5),
            Settlement::Delivered
        );
        assert_eq!(
            decide(&ok(401), 1, &config, now, 0.5),
            Settlement::AuthBlocked
        );
        assert_eq!(
            decide(&ok(403), 1, &config, now, 0.5),
            Settlement::AuthBlocked
        );
        assert_eq!(decide(&ok(400), 1, &config, now, 0.5), Settlement::Failed);
        assert_eq!(decide(&ok(404), 1, &config, now, 0.5), Settlement::Failed);
        assert_eq!(
            decide(&ok(503), 1, &config, now, 0.5),
            Settlement::Retry {
                at: now + chrono::Duration::seconds(2)
            }
        );
        assert_eq!(
            decide(&Err("timed out".into()), 2, &config, now, 0.5),
            Settlement::Retry {
                at: now + chrono::Duration::seconds(4)
            }
        );
        let limited = Ok(Answer {
            status: 429,
            retry_after: Some(Duration::from_secs(2)),
        });
        assert_eq!(
            decide(&limited, 1, &config, now, 0.5),
            Settlement::Retry {
                at: now + chrono::Duration::seconds(2)
            }
        );
        assert_eq!(decide(&ok(503), 6, &config, now, 0.5), Settlement::Failed);
    }
}
