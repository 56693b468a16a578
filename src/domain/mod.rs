//! Domain types: parsed once at the edge, trusted everywhere after.

pub mod agent_run;
mod api_token;
pub mod audit;
pub mod creative;
pub mod media_buy;
mod money;
mod policy;
pub mod principal;
pub mod push_config;
mod settings;
mod tenant;
pub mod text;
pub mod time;
mod token_hash;
mod trusted_proxies;
pub mod workflow;

pub use api_token::{ApiToken, NewApiToken, TenantToken, TokenKind};
pub use money::{Amount, Currency, SpendMultiple};
pub use policy::InputPolicy;
pub use settings::{SettingsChange, TenantSettings, Timezone, WebhookUrl};
pub use tenant::{NewTenant, Tenant, TenantId, TenantName};
pub use token_hash::TokenHash;
pub use trusted_proxies::TrustedProxies;

/// Why an input could not become a domain value. `field` names the JSON field
/// (or query parameter) so the API error can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

impl InvalidField {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
