//! The webhook sender's ports, implemented by the service: the outbox (the
//! store) and HTTP through the outbound guard (`crate::outbound::GuardedClient`):
//! names are resolved by a resolver that refuses non-public addresses, and
//! the connection goes to the addresses it checked (no second lookup, so no
//! DNS rebinding); address literals and the scheme are checked before the
//! request; redirects are not followed.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use overseer_actors::webhook::{
    Answer, Attempt, Settlement, WebhookAuth, WebhookJob, WebhookStore, WebhookTransport,
};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::push_config::loggable_url;
use crate::outbound::GuardedClient;
use crate::ssrf::SsrfPolicy;
use crate::store::Store;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

impl WebhookStore for Store {
    fn due(&self, now: DateTime<Utc>, limit: u32) -> BoxFuture<Vec<WebhookJob>> {
        let store = self.clone();
        Box::pin(async move {
            let rows = store
                .webhooks_due(now, limit)
                .await
                .map_err(|e| e.short_reason())?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let token = r
                        .authentication_token
                        .filter(|t| !t.is_empty())
                        .map(SecretString::from);
                    let auth = match (r.authentication_type.as_str(), token) {
                        ("bearer", Some(t)) => WebhookAuth::Bearer(t),
                        ("hmac-sha256", Some(t)) => WebhookAuth::HmacSha256(t),
                        ("bearer", None) => WebhookAuth::Missing("bearer"),
                        ("hmac-sha256", None) => WebhookAuth::Missing("hmac-sha256"),
                        ("none", _) => WebhookAuth::None,
                        _ => WebhookAuth::Missing("known"),
                    };
                    WebhookJob {
                        id: r.id,
                        tenant_id: r.tenant_id,
                        config_id: r.config_id,
                        media_buy_id: r.media_buy_id,
                        task_type: r.task_type,
                        endpoint: loggable_url(&r.url),
                        url: SecretString::from(r.url),
                        auth,
                        body: r.payload,
                        attempts: u32::try_from(r.attempts).unwrap_or(0),
                    }
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
                .webhooks_claim(&ids, now, until)
                .await
                .map_err(|e| e.short_reason())
        })
    }

    fn settle(
        &self,
        job: WebhookJob,
        attempt: Attempt,
        settlement: Settlement,
        now: DateTime<Utc>,
    ) -> BoxFuture<()> {
        let store = self.clone();
        Box::pin(async move {
            let (status, next) = match settlement {
                Settlement::Delivered => ("delivered", None),
                Settlement::Retry { at } => ("pending", Some(at)),
                Settlement::Failed | Settlement::AuthBlocked => ("failed", None),
            };
            store
                .webhook_settle(
                    job.id,
                    &job.config_id,
                    i64::from(attempt.number),
                    attempt.status_code.map(i32::from),
                    i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX),
                    attempt.error.as_deref(),
                    status,
                    next,
                    settlement == Settlement::AuthBlocked,
                    now,
                )
                .await
                .map_err(|e| e.short_reason())
        })
    }

    fn defer(&self, id: i64, at: DateTime<Utc>) -> BoxFuture<()> {
        let store = self.clone();
        Box::pin(async move {
            store
                .webhook_defer(id, at)
                .await
                .map_err(|e| e.short_reason())
        })
    }

    fn depth(&self) -> BoxFuture<u64> {
        let store = self.clone();
        Box::pin(async move {
            store
                .webhook_depth()
                .await
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(|e| e.short_reason())
        })
    }
}

/// `WEBHOOK_DOCKER_LOCALHOST_REWRITE`: a buyer's `localhost` (or
/// `127.0.0.1`) means the Docker host, `host.docker.internal`. Only when
/// the operator turns it on; the rewritten URL still passes the SSRF guard.
pub fn docker_rewrite(url: &mut url::Url) -> bool {
    if matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")) {
        return url.set_host(Some("host.docker.internal")).is_ok();
    }
    false
}

/// Posts to buyers' webhooks (push configs and reporting webhooks) through
/// the outbound guard.
#[derive(Clone)]
pub struct HttpWebhookTransport {
    client: GuardedClient,
    docker_rewrite: bool,
}

impl HttpWebhookTransport {
    pub fn new(
        policy: SsrfPolicy,
        timeout: Duration,
        docker_rewrite: bool,
    ) -> Result<Self, String> {
        Ok(Self {
            client: GuardedClient::new(policy, timeout)?,
            docker_rewrite,
        })
    }
}

impl WebhookTransport for HttpWebhookTransport {
    fn post(
        &self,
        url: &SecretString,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> BoxFuture<Answer> {
        let client = self.client.clone();
        let url = url.expose_secret().to_owned();
        let rewrite = self.docker_rewrite;
        Box::pin(async move {
            let mut parsed = url::Url::parse(&url).map_err(|_| "not a URL".to_owned())?;
            if rewrite {
                docker_rewrite(&mut parsed);
            }
            let mut request = client.post(parsed)?.body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send().await.map_err(crate::outbound::reason)?;
            let retry_after = crate::outbound::retry_after(response.headers());
            Ok(Answer {
                status: response.status().as_u16(),
                retry_after,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_hosts_are_rewritten_for_docker() {
        let rewritten = |u: &str| {
            let mut url = url::Url::parse(u).expect("a URL");
            docker_rewrite(&mut url);
            url.to_string()
        };
        assert_eq!(
            rewritten("http://localhost:8080/hook?a=1"),
            "http://host.docker.internal:8080/hook?a=1"
        );
        assert_eq!(
            rewritten("http://127.0.0.1/x"),
            "http://host.docker.internal/x"
        );
        assert_eq!(
            rewritten("https://buyer.example/x"),
            "https://buyer.example/x"
        );
    }
}
