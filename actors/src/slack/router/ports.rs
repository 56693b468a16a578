//! What the router talks to: the webhook targets, the outbox store port,
//! the transport port and how an answer from Slack is classified.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::slack::route::Channel;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

/// A webhook URL (a secret) with its masked form for logs and `/health`.
#[derive(Clone)]
pub struct WebhookTarget {
    url: SecretString,
    masked: String,
    key: String,
}

impl WebhookTarget {
    /// `masked` must already hide the secret part of `url`.
    pub fn new(url: SecretString, masked: String) -> Self {
        let key = hex::encode(Sha256::digest(url.expose_secret().as_bytes()));
        Self { url, masked, key }
    }

    pub fn masked(&self) -> &str {
        &self.masked
    }

    pub fn url(&self) -> &SecretString {
        &self.url
    }

    /// Identifies the webhook without holding its URL in the clear.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked)
    }
}

/// A tenant's (or the service's default) three webhooks.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    pub general: Option<WebhookTarget>,
    pub audit: Option<WebhookTarget>,
    pub hitl: Option<WebhookTarget>,
}

impl Webhooks {
    pub fn get(&self, channel: Channel) -> Option<&WebhookTarget> {
        match channel {
            Channel::General => self.general.as_ref(),
            Channel::Audit => self.audit.as_ref(),
            Channel::Hitl => self.hitl.as_ref(),
        }
    }
}

/// A due outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRow {
    pub id: i64,
    pub notification_id: String,
    pub tenant_id: Option<String>,
    /// The serialised [`NotificationEvent`](crate::notify::NotificationEvent).
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// Attempts so far (429s not counted).
    pub attempts: u32,
}

/// What became of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Failed for now; one more attempt counted; try again at `at`.
    Retry { at: DateTime<Utc>, error: String },
    /// Not attempted, or rate limited: try again at `at`, attempts unchanged.
    Deferred { at: DateTime<Utc>, error: String },
    /// Given up (permanent error or attempts exhausted).
    Failed { error: String },
    /// Nothing to send it to (no webhook configured).
    Skipped { reason: String },
}

/// The port onto the outbox table.
pub trait SlackStore: Send + Sync + 'static {
    /// Pending rows due at `now` and not leased, oldest first.
    fn pending(&self, now: DateTime<Utc>, limit: u32) -> BoxFuture<Vec<PendingRow>>;
    /// The webhooks of these tenants (missing tenants are absent).
    fn webhooks(&self, tenant_ids: Vec<String>) -> BoxFuture<HashMap<String, Webhooks>>;
    /// Leases those of `ids` still pending and unleased until `until`;
    /// answers the ids it leased.
    fn claim(&self, ids: Vec<i64>, now: DateTime<Utc>, until: DateTime<Utc>)
    -> BoxFuture<Vec<i64>>;
    /// Records outcomes and releases the leases.
    fn finish(&self, outcomes: Vec<(i64, Outcome)>, now: DateTime<Utc>) -> BoxFuture<()>;
    /// Pending rows, due or not.
    fn depth(&self) -> BoxFuture<u64>;
}

/// What a webhook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The start of the body (Slack puts its error code there).
    pub body: String,
}

/// The port onto HTTP: posts JSON, no redirects, bounded time. `Err` is a
/// transport failure (timeout, connection) with a reason free of the URL.
pub trait SlackTransport: Send + Sync + 'static {
    fn post(&self, url: &SecretString, body: Vec<u8>) -> BoxFuture<Response>;
}

/// How an answer is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    RateLimited(Duration),
    Transient(String),
    Permanent { status: u16, reason: String },
}

/// 2xx delivered; 429 rate limited; 408, 5xx and transport errors transient;
/// every other status permanent.
pub fn classify(answer: &Result<Response, String>, default_retry_after: Duration) -> Verdict {
    match answer {
        Err(reason) => Verdict::Transient(reason.clone()),
        Ok(r) if (200..300).contains(&r.status) => Verdict::Delivered,
        Ok(r) if r.status == 429 => {
            Verdict::RateLimited(r.retry_after.unwrap_or(default_retry_after))
        }
        Ok(r) if r.status == 408 || r.status >= 500 => {
            Verdict::Transient(format!("HTTP {}{}", r.status, slack_error(&r.body)))
        }
        Ok(r) => Verdict::Permanent {
            status: r.status,
            reason: format!("HTTP {}{}", r.status, slack_error(&r.body)),
        },
    }
}

/// Slack's error code from a body (`no_service`, `invalid_payload`, …) as
/// `": code"`, or nothing. Only `[a-z0-9_]`, at most 64 characters: a body
/// is never echoed whole into logs.
pub(super) fn slack_error(body: &str) -> String {
    let code: String = body
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .take(64)
        .collect();
    if code.is_empty() {
        String::new()
    } else {
        format!(": {code}")
    }
}
