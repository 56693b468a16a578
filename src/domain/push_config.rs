//! Push-notification configs: where a buyer (principal) wants its delivery
//! reports and status changes posted, and how we authenticate to it.
//!
//! The authentication token is write-only: stored, used to sign or
//! authorise, never returned. `hmac-sha256` needs a secret of at least 32
//! characters; `none` is refused in production; production also requires
//! https (the URL rules are every webhook URL's, `super::settings::parse_url`).
//! Whether the host may be reached at all is the outbound guard's call
//! (`crate::ssrf`), made by the handler after this parse and again at every
//! send.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::InputPolicy;
use super::InvalidField;

/// A principal has at most this many configs.
pub const MAX_PER_PRINCIPAL: usize = 20;

/// Shortest HMAC secret accepted.
pub const MIN_HMAC_SECRET_CHARS: usize = 32;

/// How we authenticate to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AuthType {
    /// `Authorization: Bearer <token>`.
    #[serde(rename = "bearer")]
    Bearer,
    /// `X-AdCP-Signature: sha256=<HMAC-SHA256(secret, "<timestamp>." + body)>`.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// Nothing (not in production).
    #[serde(rename = "none")]
    None,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::HmacSha256 => "hmac-sha256",
            Self::None => "none",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Bearer, Self::HmacSha256, Self::None]
            .into_iter()
            .find(|t| t.as_str() == value)
    }
}

/// `POST /api/v1/push-notification-configs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePushConfig {
    /// Where to post: absolute https URL (http only outside production).
    pub url: String,
    /// `bearer`, `hmac-sha256` or `none`.
    pub authentication_type: String,
    /// The bearer token or HMAC secret (at least 32 characters). Write-only.
    #[schema(value_type = String)]
    pub authentication_token: Option<String>,
}

/// A checked config, ready to store.
#[derive(Debug, Clone)]
pub struct NewPushConfig {
    pub url: url::Url,
    pub auth: AuthType,
    pub token: Option<SecretString>,
}

impl CreatePushConfig {
    pub fn parse(self, policy: InputPolicy) -> Result<NewPushConfig, InvalidField> {
        let url = super::settings::parse_url("url", &self.url, policy)?;
        let auth = AuthType::parse(&self.authentication_type).ok_or_else(|| {
            InvalidField::new("authentication_type", "must be bearer, hmac-sha256 or none")
        })?;
        let token = self.authentication_token.filter(|t| !t.is_empty());
        match (auth, &token) {
            (AuthType::None, Some(_)) => {
                return Err(InvalidField::new(
                    "authentication_token",
                    "must be absent when authentication_type is none",
                ));
            }
            (AuthType::None, None) if !policy.unauthenticated_push => {
                return Err(InvalidField::new(
                    "authentication_type",
                    "none is not allowed in production",
                ));
            }
            (AuthType::Bearer | AuthType::HmacSha256, None) => {
                return Err(InvalidField::new(
                    "authentication_token",
                    "is required for bearer and hmac-sha256",
                ));
            }
            (AuthType::HmacSha256, Some(t)) if t.chars().count() < MIN_HMAC_SECRET_CHARS => {
                return Err(InvalidField::new(
                    "authentication_token",
                    format!("an HMAC secret must be at least {MIN_HMAC_SECRET_CHARS} characters"),
                ));
            }
            (_, Some(t)) if t.chars().count() > 4_096 || t.chars().any(char::is_control) => {
                return Err(InvalidField::new(
                    "authentication_token",
                    "must be at most 4096 printable characters",
                ));
            }
            _ => {}
        }
        Ok(NewPushConfig {
            url,
            auth,
            token: token.map(SecretString::from),
        })
    }
}

/// `scheme://host[:port]/path`: a webhook URL as logs and the trail show it
/// (no user info, query or fragment, where tokens tend to hide).
pub fn loggable_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.path()
            )
        }
        Err(_) => "****".to_owned(),
    }
}

/// A stored config. The token stays inside.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PushConfig {
    pub id: String,
    pub tenant_id: String,
    pub principal_id: String,
    pub url: String,
    pub authentication_type: String,
    pub authentication_token: Option<String>,
    /// `active`, or `auth_blocked` after the receiver answered 401/403.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PushConfig {
    pub fn token(&self) -> Option<SecretString> {
        self.authentication_token.clone().map(SecretString::from)
    }
}

/// A config as the API shows it: the token only as "set".
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PushConfigView {
    pub id: String,
    pub principal_id: String,
    pub url: String,
    pub authentication_type: String,
    /// Whether a token or secret is stored (it is never shown).
    pub authentication_token_set: bool,
    /// `active`, or `auth_blocked` (the receiver refused our credentials;
    /// register the config again with new ones).
    pub status: String,
    pub created_at: DateTime<Utc>,
}

impl From<&PushConfig> for PushConfigView {
    fn from(c: &PushConfig) -> Self {
        Self {
            id: c.id.clone(),
            principal_id: c.principal_id.clone(),
            url: c.url.clone(),
            authentication_type: c.authentication_type.clone(),
            authentication_token_set: c.authentication_token.is_some(),
            status: c.status.clone(),
            created_at: c.created_at,
        }
    }
}

/// The secret as stored (the database is trusted with it, as with the
/// reporting webhook's credentials).
pub fn stored_token(token: &Option<SecretString>) -> Option<String> {
    token.as_ref().map(|t| t.expose_secret().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(url: &str, auth: &str, token: Option<&str>) -> CreatePushConfig {
        CreatePushConfig {
            url: url.into(),
            authentication_type: auth.into(),
            authentication_token: token.map(str::to_owned),
        }
    }

    fn field(r: Result<NewPushConfig, InvalidField>) -> &'static str {
        r.expect_err("refused").field
    }

    #[test]
    fn the_rules_of_registration() {
        let dev = InputPolicy::DEVELOPMENT;
        let prod = InputPolicy::PRODUCTION;
        let secret = "s".repeat(32);
        assert!(
            input("https://buyer.example/hook", "hmac-sha256", Some(&secret))
                .parse(prod)
                .is_ok()
        );
        assert_eq!(
            field(
                input(
                    "https://buyer.example/hook",
                    "hmac-sha256",
                    Some(&"s".repeat(31))
                )
                .parse(dev)
            ),
            "authentication_token"
        );
        assert_eq!(
            field(input("https://b.example/", "bearer", None).parse(dev)),
            "authentication_token"
        );
        assert!(input("http://b.example/", "none", None).parse(dev).is_ok());
        assert_eq!(
            field(input("https://b.example/", "none", None).parse(prod)),
            "authentication_type"
        );
        assert_eq!(
            field(input("http://b.example/", "bearer", Some("t")).parse(prod)),
            "url"
        );
        assert_eq!(
            field(input("ftp://b.example/", "bearer", Some("t")).parse(dev)),
            "url"
        );
        assert_eq!(
            field(input("https://u:p@b.example/", "bearer", Some("t")).parse(dev)),
            "url"
        );
        assert_eq!(
            field(input("https://b.example/", "basic", Some("t")).parse(dev)),
            "authentication_type"
        );
        assert_eq!(
            field(input("https://b.example/", "none", Some("t")).parse(dev)),
            "authentication_token"
        );
    }

    #[test]
    fn logs_show_scheme_host_and_path_only() {
        assert_eq!(
            loggable_url("https://user:pw@buyer.example:8443/hooks/x?token=SECRET#f"),
            "https://buyer.example:8443/hooks/x"
        );
        assert_eq!(loggable_url("not a url"), "****");
    }
}
