//! The Slack router's ports, implemented by the service: the outbox (the
//! store) and HTTP through the outbound guard (`crate::outbound::GuardedClient`:
//! pinned resolution, no redirects, bounded time, URL-free errors).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use overseer_actors::slack::{Outcome, PendingRow, Response, SlackStore, SlackTransport, Webhooks};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::WebhookUrl;
use crate::outbound::GuardedClient;
use crate::ssrf::SsrfPolicy;
use crate::store::Store;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

impl SlackStore for Store {
    fn pending(&self, now: DateTime<Utc>, limit: u32) -> BoxFuture<Vec<PendingRow>> {
        let store = self.clone();
        Box::pin(async move {
            let rows = store
                .slack_pending(now, limit)
                .await
                .map_err(|e| e.short_reason())?;
            Ok(rows
                .into_iter()
                .map(|r| PendingRow {
                    id: r.id,
                    notification_id: r.notification_id,
                    tenant_id: r.tenant_id,
                    payload: r.payload,
                    created_at: r.created_at,
                    attempts: u32::try_from(r.attempts).unwrap_or(0),
                })
                .collect())
        })
    }

    fn webhooks(&self, tenant_ids: Vec<String>) -> BoxFuture<HashMap<String, Webhooks>> {
        let store = self.clone();
        Box::pin(async move {
            let rows = store
                .slack_webhooks(&tenant_ids)
                .await
                .map_err(|e| e.short_reason())?;
            let target = |url: Option<String>| url.map(|u| WebhookUrl::stored(u).target());
            Ok(rows
                .into_iter()
                .map(|(id, general, audit, hitl)| {
                    let hooks = Webhooks {
                        general: target(general),
                        audit: target(audit),
                        hitl: target(hitl),
                    };
                    (id, hooks)
                })
                .collect())
        })
    }

    fn claim(
        &self,
        ids: Vec<i64>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> BoxFuture<Vec<i64>> {
        let store = self.clone();
        Box::pin(async move {
            store
                .slack_claim(&ids, now, until)
                .await
                .map_err(|e| e.short_reason())
        })
    }

    fn finish(&self, outcomes: Vec<(i64, Outcome)>, now: DateTime<Utc>) -> BoxFuture<()> {
        let store = self.clone();
        Box::pin(async move {
            store
                .slack_finish(&outcomes, now)
                .await
                .map_err(|e| e.short_reason())
        })
    }

    fn depth(&self) -> BoxFuture<u64> {
        let store = self.clone();
        Box::pin(async move {
            store
                .slack_depth()
                .await
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(|e| e.short_reason())
        })
    }
}

/// Posts JSON to Slack webhooks (tenants' and the service's own) through the
/// outbound guard: a URL stored before the rules (or the allowlist)
/// changed, or written behind the API's back, is checked again here, and a
/// refusal is a failed attempt that sent nothing.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: GuardedClient,
}

pub use crate::outbound::install_tls_provider;

impl HttpTransport {
    /// A guarded client that never follows redirects and gives up after
    /// `timeout`.
    pub fn new(policy: SsrfPolicy, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            client: GuardedClient::new(policy, timeout)?,
        })
    }
}

impl SlackTransport for HttpTransport {
    fn post(&self, url: &SecretString, body: Vec<u8>) -> BoxFuture<Response> {
        let request = url::Url::parse(url.expose_secret())
            .map_err(|_| "not a URL".to_owned())
            .and_then(|url| self.client.post(url))
            .map(|request| {
                request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
            });
        Box::pin(async move {
            let response = request?.send().await.map_err(crate::outbound::reason)?;
            let status = response.status().as_u16();
            let retry_after = crate::outbound::retry_after(response.headers());
            // Slack's error code is a short word; read little of any body.
            let body = match response.text().await {
                Ok(text) => text.chars().take(200).collect(),
                Err(_) => String::new(),
            };
            Ok(Response {
                status,
                retry_after,
                body,
            })
        })
    }
}
