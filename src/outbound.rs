//! What every outgoing webhook client shares (Slack and buyers): one TLS
//! provider for the process, no redirects, bounded time, a `User-Agent`
//! naming Overseer, `Retry-After` read as seconds, and error reasons that
//! never carry the URL.

use std::time::Duration;

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
