//! What every outgoing webhook client shares (Slack and buyers): the
//! outbound guard ([`GuardedClient`]), one TLS provider for the process, no
//! redirects, bounded time, a `User-Agent` naming Overseer, `Retry-After`
//! read as seconds, and error reasons that never carry the URL.

use std::sync::Arc;
use std::time::Duration;

use crate::ssrf::{Refusal, SsrfPolicy};

/// Makes ring the process's TLS provider (the one sqlx already uses), once.
pub fn install_tls_provider() {
    // `Err` means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client builder that never follows redirects and gives up after
/// `timeout` (connection included).
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("Overseer/", env!("CARGO_PKG_VERSION")))
}

/// Builds `builder`, with a URL-free reason when it cannot.
pub fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    builder
        .build()
        .map_err(|e| format!("could not build the HTTP client: {}", e.without_url()))
}

/// A refusal by the guard, as a request error's cause (it shows in the
/// reason a sender records: `refused by the outbound guard: ...`).
#[derive(Debug, thiserror::Error)]
#[error("refused by the outbound guard: {0}")]
pub struct Refused(pub Refusal);

/// Resolves names for a [`GuardedClient`]: through the guard, answering
/// only addresses it checked. reqwest connects to exactly these (it never
/// looks the name up again), so the address checked is the address called:
/// a name whose record changes between the check and the connection (DNS
/// rebinding) cannot lead inside.
struct PinnedResolver {
    policy: SsrfPolicy,
}

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // reqwest sets the port of the URL on the answers.
            let addrs = policy.resolve(&host, 0).await.map_err(Refused)?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The one way out for every URL the service calls on someone's behalf
/// (Slack webhooks, buyers' webhooks): each request is checked by the
/// guard before it leaves (scheme, address literals, metadata names) and
/// its host name is resolved by [`PinnedResolver`]. Proxies from the
/// environment (`HTTPS_PROXY`, ...) are ignored: a proxy would resolve the
/// name itself, past the guard.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    policy: SsrfPolicy,
}

impl GuardedClient {
    /// A guarded client that never follows redirects and gives up after
    /// `timeout`.
    pub fn new(policy: SsrfPolicy, timeout: Duration) -> Result<Self, String> {
        let client = build(client_builder(timeout).no_proxy().dns_resolver(Arc::new(
            PinnedResolver {
                policy: policy.clone(),
            },
        )))?;
        Ok(Self { client, policy })
    }

    /// A POST to `url`, or why the guard refuses it (no request is made).
    pub fn post(&self, url: url::Url) -> Result<reqwest::RequestBuilder, String> {
        self.policy
            .check_target(&url)
            .map_err(|r| Refused(r).to_string())?;
        Ok(self.client.post(url))
    }
}

/// `Retry-After` in seconds (HTTP dates are not used by Slack or buyers),
/// capped at a day.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// Why a request failed: its kind and the chain of causes (addresses and
/// refusals), never the URL.
pub fn reason(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let err = err.without_url();
    let mut reason = kind.to_owned();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().expect("a value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "1e9".parse().expect("a value"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(86_400)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().expect("a value"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
