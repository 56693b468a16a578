//! Tenant settings: the three Slack webhooks, the approval threshold and the
//! time zone.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::InputPolicy;
use super::{Amount, InvalidField};

/// A webhook URL (Slack or a buyer's): absolute `https` (plain `http` only in
/// development), with a host and no user info. Held as a secret: a Slack
/// webhook URL is a credential, so it is shown only masked ([`Self::masked`]).
/// Whether its host may be reached at all is the outbound guard's call
/// (`crate::ssrf`), made at registration and again at every send.
#[derive(Clone)]
pub struct WebhookUrl(SecretString);

impl WebhookUrl {
    pub const MAX_CHARS: usize = 2_048;

    pub fn parse(
        field: &'static str,
        value: &str,
        policy: InputPolicy,
    ) -> Result<Self, InvalidField> {
        parse_url(field, value, policy).map(|url| Self(SecretString::from(url.to_string())))
    }

    /// A URL read back from the store, trusted as written.
    pub fn stored(value: String) -> Self {
        Self(SecretString::from(value))
    }

    /// The URL as the Slack router holds it: secret, with its masked form.
    pub fn target(&self) -> overseer_actors::slack::WebhookTarget {
        overseer_actors::slack::WebhookTarget::new(self.0.clone(), self.masked())
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Scheme, host and first path segment in the clear; the middle segments
    /// cut to their first character; the last one and any query hidden:
    /// `https://hooks.slack.com/services/T…/B…/****`.
    pub fn masked(&self) -> String {
        let Ok(url) = url::Url::parse(self.expose()) else {
            return "****".to_owned();
        };
        let mut masked = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        if let Some(port) = url.port() {
            masked.push_str(&format!(":{port}"));
        }
        let segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let last = segments.len().saturating_sub(1);
        for (i, segment) in segments.iter().enumerate() {
            masked.push('/');
            if i == last {
                masked.push_str("****");
            } else if i == 0 {
                masked.push_str(segment);
            } else {
                masked.extend(segment.chars().next());
                masked.push('…');
            }
        }
        if segments.is_empty() {
            masked.push_str("/****");
        }
        masked
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookUrl({})", self.masked())
    }
}

/// The rules every outbound URL's text follows, wherever it is registered
/// (Slack settings, push configs, reporting webhooks): at most
/// [`WebhookUrl::MAX_CHARS`], absolute, `https` (plain `http` in development
/// only), a host, no user info.
pub fn parse_url(
    field: &'static str,
    value: &str,
    policy: InputPolicy,
) -> Result<url::Url, InvalidField> {
    if value.len() > WebhookUrl::MAX_CHARS {
        return Err(InvalidField::new(field, "must be at most 2048 characters"));
    }
    let url =
        url::Url::parse(value).map_err(|_| InvalidField::new(field, "must be an absolute URL"))?;
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => policy.plain_http,
        _ => false,
    };
    if !scheme_ok {
        let allowed = if policy.plain_http {
            "http or https"
        } else {
            "https"
        };
        return Err(InvalidField::new(field, format!("must use {allowed}")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(InvalidField::new(field, "must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidField::new(field, "must not carry credentials"));
    }
    Ok(url)
}

/// An IANA time zone name (`Europe/Paris`, `UTC`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "Europe/Paris")]
pub struct Timezone(String);

impl Timezone {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        value
            .parse::<chrono_tz::Tz>()
            .map(|tz| Self(tz.name().to_owned()))
            .map_err(|_| InvalidField::new(field, "must be an IANA time zone such as Europe/Paris"))
    }

    pub fn utc() -> Self {
        Self("UTC".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant's settings as stored.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub slack_webhook_url: Option<WebhookUrl>,
    pub slack_audit_webhook_url: Option<WebhookUrl>,
    pub hitl_webhook_url: Option<WebhookUrl>,
    /// Budgets strictly above this need a human's approval; `None`: never.
    pub approval_threshold: Option<Amount>,
    pub timezone: Timezone,
    pub updated_at: DateTime<Utc>,
}

/// A change to the settings: `None` leaves a key alone, `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct SettingsChange {
    pub slack_webhook_url: Option<Option<WebhookUrl>>,
    pub slack_audit_webhook_url: Option<Option<WebhookUrl>>,
    pub hitl_webhook_url: Option<Option<WebhookUrl>>,
    pub approval_threshold: Option<Option<Amount>>,
    pub timezone: Option<Timezone>,
}

impl SettingsChange {
    /// The webhook URLs this change sets, with their fields: each must pass
    /// the outbound guard before the change is saved.
    pub fn new_urls(&self) -> Vec<(&'static str, &WebhookUrl)> {
        [
            ("slack_webhook_url", &self.slack_webhook_url),
            ("slack_audit_webhook_url", &self.slack_audit_webhook_url),
            ("hitl_webhook_url", &self.hitl_webhook_url),
        ]
        .into_iter()
        .filter_map(|(field, v)| v.as_ref().and_then(Option::as_ref).map(|url| (field, url)))
        .collect()
    }

    /// The keys this change touches, for the audit trail (never the values).
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.slack_webhook_url.is_some() {
            keys.push("slack_webhook_url");
        }
        if self.slack_audit_webhook_url.is_some() {
            keys.push("slack_audit_webhook_url");
        }
        if self.hitl_webhook_url.is_some() {
            keys.push("hitl_webhook_url");
        }
        if self.approval_threshold.is_some() {
            keys.push("approval_threshold");
        }
        if self.timezone.is_some() {
            keys.push("timezone");
        }
        keys
    }

    /// The settings after this change.
    pub fn apply(self, mut settings: TenantSettings) -> TenantSettings {
        if let Some(v) = self.slack_webhook_url {
            settings.slack_webhook_url = v;
        }
        if let Some(v) = self.slack_audit_webhook_url {
            settings.slack_audit_webhook_url = v;
        }
        if let Some(v) = self.hitl_webhook_url {
            settings.hitl_webhook_url = v;
        }
        if let Some(v) = self.approval_threshold {
            settings.approval_threshold = v;
        }
        if let Some(v) = self.timezone {
            settings.timezone = v;
        }
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_urls_are_masked_down_to_their_first_segment() {
        let url = WebhookUrl::parse(
            "u",
            "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
            InputPolicy::PRODUCTION,
        )
        .unwrap();
        assert_eq!(url.masked(), "https://hooks.slack.com/services/T…/B…/****");
        assert!(!format!("{url:?}").contains("SECRET"));
        let bare = WebhookUrl::parse(
            "u",
            "http://127.0.0.1:9/x?k=secret",
            InputPolicy::DEVELOPMENT,
        )
        .unwrap();
        assert_eq!(bare.masked(), "http://127.0.0.1:9/****");
    }

    #[test]
    fn webhook_urls_must_be_absolute_https_in_production() {
        for bad in [
            "hooks.slack.com/x",
            "ftp://h/x",
            "http://h/x",
            "https://u:p@h/x",
            "",
        ] {
            assert!(
                WebhookUrl::parse("u", bad, InputPolicy::PRODUCTION).is_err(),
                "{bad}"
            );
        }
        assert!(WebhookUrl::parse("u", "http://h/x", InputPolicy::DEVELOPMENT).is_ok());
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(
            Timezone::parse("tz", "Europe/Paris").unwrap().as_str(),
            "Europe/Paris"
        );
        assert!(Timezone::parse("tz", "Mars/Olympus").is_err());
    }
}
