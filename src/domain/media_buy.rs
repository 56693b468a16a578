//! Media buys: what a buyer agent books, with packages, flight dates, an
//! optional reporting webhook, and a lifecycle status.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::text::{bounded, client_id, generate_id};
use super::time;
use super::{Amount, Currency, InvalidField, TenantId, WebhookUrl};
use crate::config::Environment;

/// Where a media buy is in its life. `paused` remembers the status it left
/// (see [`MediaBuy::paused_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaBuyStatus {
    PendingApproval,
    PendingActivation,
    Active,
    Paused,
    Completed,
    Rejected,
    Failed,
}

impl MediaBuyStatus {
    pub const ALL: [MediaBuyStatus; 7] = [
        Self::PendingApproval,
        Self::PendingActivation,
        Self::Active,
        Self::Paused,
        Self::Completed,
        Self::Rejected,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::PendingActivation => "pending_activation",
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }

    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| InvalidField::new(field, "is not a media buy status"))
    }

    /// Ended for good: nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Rejected | Self::Failed)
    }
}

impl TryFrom<String> for MediaBuyStatus {
    type Error = InvalidField;

    fn try_from(value: String) -> Result<Self, InvalidField> {
        Self::parse("status", &value)
    }
}

/// How a package is priced.
pub const PRICING_MODELS: [&str; 7] = ["cpm", "vcpm", "cpc", "cpcv", "cpv", "cpp", "flat_rate"];
/// `PRICING_MODELS` in the OpenAPI document.
fn pricing_model_schema() -> utoipa::openapi::Object {
    string_enum(&PRICING_MODELS)
}

fn frequency_schema() -> utoipa::openapi::Object {
    string_enum(&["hourly", "daily"])
}

fn auth_type_schema() -> utoipa::openapi::Object {
    string_enum(&["none", "bearer", "hmac-sha256"])
}

fn string_enum(values: &[&'static str]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

/// Most packages in one media buy.
pub const MAX_PACKAGES: usize = 100;
/// Most creatives assigned in one request.
pub const MAX_CREATIVES: usize = 1_000;

/// One package of a media buy.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Package {
    pub package_id: String,
    pub budget: Amount,
    pub pricing_model: String,
    pub rate: Amount,
}

/// How the buyer's reporting webhook authenticates our requests.
#[derive(Clone)]
pub enum WebhookAuth {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// `X-Signature: sha256=<hex HMAC of the body>`; the key is at least 32 bytes.
    HmacSha256(SecretString),
}

impl WebhookAuth {
    pub fn kind(&self) -> &'static str {
        match self {
            WebhookAuth::None => "none",
            WebhookAuth::Bearer(_) => "bearer",
            WebhookAuth::HmacSha256(_) => "hmac-sha256",
        }
    }
}

impl std::fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookAuth({})", self.kind())
    }
}

/// Where and how often delivery reports go.
#[derive(Debug, Clone)]
pub struct ReportingWebhook {
    pub url: WebhookUrl,
    /// `hourly` or `daily`.
    pub frequency: String,
    pub auth: WebhookAuth,
}

/// The stored form (JSON text). Holds the credentials: never serialised into
/// an API response, a log or an audit row.
#[derive(Serialize, Deserialize)]
struct StoredWebhook {
    url: String,
    frequency: String,
    auth_type: String,
    #[serde(default)]
    credentials: Option<String>,
}

impl ReportingWebhook {
    pub fn to_stored(&self) -> String {
        let credentials = match &self.auth {
            WebhookAuth::None => None,
            WebhookAuth::Bearer(s) | WebhookAuth::HmacSha256(s) => {
                Some(s.expose_secret().to_owned())
            }
        };
        serde_json::to_string(&StoredWebhook {
            url: self.url.expose().to_owned(),
            frequency: self.frequency.clone(),
            auth_type: self.auth.kind().to_owned(),
            credentials,
        })
        .unwrap_or_default()
    }

    pub fn from_stored(text: &str) -> Option<Self> {
        let stored: StoredWebhook = serde_json::from_str(text).ok()?;
        let secret = || SecretString::from(stored.credentials.clone().unwrap_or_default());
        let auth = match stored.auth_type.as_str() {
            "bearer" => WebhookAuth::Bearer(secret()),
            "hmac-sha256" => WebhookAuth::HmacSha256(secret()),
            _ => WebhookAuth::None,
        };
        Some(Self {
            url: WebhookUrl::stored(stored.url),
            frequency: stored.frequency,
            auth,
        })
    }

    /// What API responses show: the URL masked, the auth type, no credentials.
    pub fn view(&self) -> ReportingWebhookView {
        ReportingWebhookView {
            url: self.url.masked(),
            frequency: self.frequency.clone(),
            authentication: AuthView {
                kind: self.auth.kind(),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportingWebhookView {
    /// Masked: the secret part of the URL is never shown.
    pub url: String,
    pub frequency: String,
    pub authentication: AuthView,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuthView {
    /// `none`, `bearer` or `hmac-sha256`; the credentials are never shown.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
}

// ---------------------------------------------------------------- requests

/// `POST /api/v1/media-buys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMediaBuy {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub buyer_ref: String,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub order_name: String,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub advertiser_name: String,
    #[schema(value_type = Currency)]
    pub currency: String,
    pub flight_start: DateTime<Utc>,
    /// After `flight_start`.
    pub flight_end: DateTime<Utc>,
    /// 1 to 100 packages; the budget of the buy is their sum.
    #[schema(min_items = 1, max_items = 100)]
    pub packages: Vec<PackageInput>,
    /// Creatives of this principal, at most 1,000.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub creative_ids: Vec<String>,
    #[serde(default)]
    pub reporting_webhook: Option<ReportingWebhookInput>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageInput {
    /// Default: `pkg_1`, `pkg_2`, ... by position.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub package_id: Option<String>,
    /// Above 0, at most 1e12, at most 6 decimals (a JSON number or a
    /// decimal string).
    #[schema(value_type = f64, exclusive_minimum = 0, maximum = 1_000_000_000_000_f64)]
    pub budget: Value,
    #[schema(schema_with = pricing_model_schema)]
    pub pricing_model: String,
    /// 0 to 1e12, at most 6 decimals (a JSON number or a decimal string).
    #[schema(value_type = f64, minimum = 0, maximum = 1_000_000_000_000_f64)]
    pub rate: Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportingWebhookInput {
    /// https (plain http in development only), without credentials.
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
    #[schema(schema_with = frequency_schema)]
    pub frequency: String,
    #[serde(default)]
    pub authentication: Option<AuthInput>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthInput {
    #[serde(rename = "type")]
    #[schema(schema_with = auth_type_schema)]
    pub kind: String,
    /// A bearer token (at most 4,096 bytes) or an HMAC key (32 to 4,096
    /// bytes); required unless `type` is `none`.
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub credentials: Option<String>,
}

/// A media buy to create, parsed.
#[derive(Debug, Clone)]
pub struct NewMediaBuy {
    pub id: String,
    pub buyer_ref: String,
    pub order_name: String,
    pub advertiser_name: String,
    pub currency: Currency,
    pub budget: Amount,
    pub flight_start: DateTime<Utc>,
    pub flight_end: DateTime<Utc>,
    pub packages: Vec<Package>,
    pub creative_ids: Vec<String>,
    pub reporting_webhook: Option<ReportingWebhook>,
}

pub const MAX_NAME_CHARS: usize = 200;
const MIN_HMAC_KEY_BYTES: usize = 32;

impl CreateMediaBuy {
    pub fn parse(self, environment: Environment) -> Result<NewMediaBuy, InvalidField> {
        let buyer_ref = bounded("buyer_ref", &self.buyer_ref, MAX_NAME_CHARS)?;
        let order_name = bounded("order_name", &self.order_name, MAX_NAME_CHARS)?;
        let advertiser_name = bounded("advertiser_name", &self.advertiser_name, MAX_NAME_CHARS)?;
        let currency = Currency::parse("currency", &self.currency)?;
        let flight_start = time::timestamp("flight_start", self.flight_start)?;
        let flight_end = time::timestamp("flight_end", self.flight_end)?;
        check_flight(flight_start, flight_end)?;
        if self.packages.is_empty() {
            return Err(InvalidField::new(
                "packages",
                "at least one package is required",
            ));
        }
        if self.packages.len() > MAX_PACKAGES {
            return Err(InvalidField::new(
                "packages",
                format!("at most {MAX_PACKAGES} packages"),
            ));
        }
        let mut packages: Vec<Package> = Vec::with_capacity(self.packages.len());
        let mut budget = Amount::ZERO;
        for (i, p) in self.packages.into_iter().enumerate() {
            let field = |name: &'static str| -> &'static str {
                // Field paths name the package; the index is in the message.
                name
            };
            let at = |e: InvalidField| {
                InvalidField::new(e.field, format!("packages[{i}]: {}", e.message))
            };
            let package_id = match p.package_id {
                Some(id) => client_id(field("packages.package_id"), &id).map_err(at)?,
                None => format!("pkg_{}", i + 1),
            };
            if packages.iter().any(|q| q.package_id == package_id) {
                return Err(at(InvalidField::new(
                    "packages.package_id",
                    "is used twice",
                )));
            }
            let package_budget =
                Amount::parse_positive(field("packages.budget"), &p.budget).map_err(at)?;
            if !PRICING_MODELS.contains(&p.pricing_model.as_str()) {
                return Err(at(InvalidField::new(
                    "packages.pricing_model",
                    format!("must be one of {}", PRICING_MODELS.join(", ")),
                )));
            }
            let rate = Amount::parse(field("packages.rate"), &p.rate).map_err(at)?;
            budget = budget
                .checked_add(package_budget)
                .ok_or_else(|| at(InvalidField::new("packages.budget", "total is too large")))?;
            packages.push(Package {
                package_id,
                budget: package_budget,
                pricing_model: p.pricing_model,
                rate,
            });
        }
        let creative_ids = parse_creative_ids(&self.creative_ids)?;
        let reporting_webhook = self
            .reporting_webhook
            .map(|w| w.parse(environment))
            .transpose()?;
        Ok(NewMediaBuy {
            id: generate_id("mb"),
            buyer_ref,
            order_name,
            advertiser_name,
            currency,
            budget,
            flight_start,
            flight_end,
            packages,
            creative_ids,
            reporting_webhook,
        })
    }
}

/// The flight must end after it starts.
pub fn check_flight(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), InvalidField> {
    if end <= start {
        Err(InvalidField::new(
            "flight_end",
            "must be after flight_start",
        ))
    } else {
        Ok(())
    }
}

pub fn parse_creative_ids(ids: &[String]) -> Result<Vec<String>, InvalidField> {
    if ids.len() > MAX_CREATIVES {
        return Err(InvalidField::new(
            "creative_ids",
            format!("at most {MAX_CREATIVES} creatives"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        let id = client_id("creative_ids", id)?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

impl ReportingWebhookInput {
    fn parse(self, environment: Environment) -> Result<ReportingWebhook, InvalidField> {
        let url = WebhookUrl::parse("reporting_webhook.url", &self.url, environment)?;
        if !matches!(self.frequency.as_str(), "hourly" | "daily") {
            return Err(InvalidField::new(
                "reporting_webhook.frequency",
                "must be hourly or daily",
            ));
        }
        let auth = match self.authentication {
            None => WebhookAuth::None,
            Some(auth) => {
                let credentials = auth.credentials.filter(|c| !c.is_empty());
                match (auth.kind.as_str(), credentials) {
                    ("none", _) => WebhookAuth::None,
                    ("bearer", Some(token)) if token.len() <= 4_096 => {
                        WebhookAuth::Bearer(SecretString::from(token))
                    }
                    ("hmac-sha256", Some(key))
                        if (MIN_HMAC_KEY_BYTES..=4_096).contains(&key.len()) =>
                    {
                        WebhookAuth::HmacSha256(SecretString::from(key))
                    }
                    ("bearer", _) => {
                        return Err(InvalidField::new(
                            "reporting_webhook.authentication.credentials",
                            "a bearer token (at most 4096 bytes) is required",
                        ));
                    }
                    ("hmac-sha256", _) => {
                        return Err(InvalidField::new(
                            "reporting_webhook.authentication.credentials",
                            "an HMAC key of 32 to 4096 bytes is required",
                        ));
                    }
                    _ => {
                        return Err(InvalidField::new(
                            "reporting_webhook.authentication.type",
                            "must be bearer, hmac-sha256 or none",
                        ));
                    }
                }
            }
        };
        Ok(ReportingWebhook {
            url,
            frequency: self.frequency,
            auth,
        })
    }
}

/// `PATCH /api/v1/media-buys/{id}`: every key optional.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMediaBuy {
    /// `true` pauses, `false` resumes.
    #[serde(default)]
    pub paused: Option<bool>,
    /// Above 0, at most 1e12, at most 6 decimals (a JSON number or a
    /// decimal string).
    #[serde(default)]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 1_000_000_000_000_f64)]
    pub budget: Option<Value>,
    #[serde(default)]
    pub flight_start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub flight_end: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub order_name: Option<String>,
}

/// A parsed change.
#[derive(Debug, Default, Clone)]
pub struct MediaBuyChange {
    pub paused: Option<bool>,
    pub budget: Option<Amount>,
    pub flight_start: Option<DateTime<Utc>>,
    pub flight_end: Option<DateTime<Utc>>,
    pub order_name: Option<String>,
}

impl UpdateMediaBuy {
    pub fn parse(self) -> Result<MediaBuyChange, InvalidField> {
        Ok(MediaBuyChange {
            paused: self.paused,
            budget: self
                .budget
                .as_ref()
                .map(|b| Amount::parse_positive("budget", b))
                .transpose()?,
            flight_start: self
                .flight_start
                .map(|at| time::timestamp("flight_start", at))
                .transpose()?,
            flight_end: self
                .flight_end
                .map(|at| time::timestamp("flight_end", at))
                .transpose()?,
            order_name: self
                .order_name
                .as_deref()
                .map(|n| bounded("order_name", n, MAX_NAME_CHARS))
                .transpose()?,
        })
    }
}

impl MediaBuyChange {
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.paused.is_some() {
            keys.push("paused");
        }
        if self.budget.is_some() {
            keys.push("budget");
        }
        if self.flight_start.is_some() {
            keys.push("flight_start");
        }
        if self.flight_end.is_some() {
            keys.push("flight_end");
        }
        if self.order_name.is_some() {
            keys.push("order_name");
        }
        keys
    }

    /// The buy after this change, or why the change is not allowed in its
    /// status (a conflict).
    pub fn apply(&self, mut buy: MediaBuy, now: DateTime<Utc>) -> Result<MediaBuy, ChangeRefused> {
        if buy.status.is_final() {
            return Err(ChangeRefused(format!(
                "a {} media buy cannot be changed",
                buy.status.as_str()
            )));
        }
        match (self.paused, buy.status) {
            (Some(true), MediaBuyStatus::PendingActivation | MediaBuyStatus::Active) => {
                buy.paused_from = Some(buy.status.as_str().to_owned());
                buy.status = MediaBuyStatus::Paused;
            }
            (Some(true), MediaBuyStatus::PendingApproval) => {
                return Err(ChangeRefused(
                    "a media buy waiting for approval cannot be paused".into(),
                ));
            }
            (Some(false), MediaBuyStatus::Paused) => {
                buy.status = buy
                    .paused_from
                    .take()
                    .and_then(|s| MediaBuyStatus::parse("paused_from", &s).ok())
                    .unwrap_or(MediaBuyStatus::PendingActivation);
            }
            _ => {}
        }
        if let Some(budget) = self.budget {
            buy.budget = budget;
        }
        let start = self.flight_start.unwrap_or(buy.flight_start);
        let end = self.flight_end.unwrap_or(buy.flight_end);
        check_flight(start, end).map_err(|e| ChangeRefused(e.to_string()))?;
        buy.flight_start = start;
        buy.flight_end = end;
        if let Some(name) = &self.order_name {
            buy.order_name = name.clone();
        }
        buy.updated_at = now;
        Ok(buy)
    }
}

/// A change the buy's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRefused(pub String);

// ---------------------------------------------------------------- stored

/// A media buy as stored (without its packages and creatives).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MediaBuy {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub tenant_id: TenantId,
    pub principal_id: String,
    pub buyer_ref: String,
    pub order_name: String,
    pub advertiser_name: String,
    #[sqlx(try_from = "String")]
    pub currency: Currency,
    #[sqlx(rename = "budget_micros", try_from = "i64")]
    pub budget: Amount,
    pub flight_start: DateTime<Utc>,
    pub flight_end: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub status: MediaBuyStatus,
    /// The lifecycle status a paused buy returns to (`MediaBuyStatus` text).
    pub paused_from: Option<String>,
    pub reporting_webhook: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<i64> for Amount {
    fn from(micros: i64) -> Self {
        Amount::from_micros(micros)
    }
}

/// The media buy as API responses show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MediaBuyView {
    pub media_buy_id: String,
    pub tenant_id: TenantId,
    pub principal_id: String,
    pub buyer_ref: String,
    pub order_name: String,
    pub advertiser_name: String,
    pub currency: Currency,
    pub budget: Amount,
    pub flight_start: DateTime<Utc>,
    pub flight_end: DateTime<Utc>,
    pub status: MediaBuyStatus,
    pub packages: Vec<Package>,
    pub creative_ids: Vec<String>,
    pub reporting_webhook: Option<ReportingWebhookView>,
    /// The approval workflow, in the response that created the buy.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub workflow_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl MediaBuy {
    pub fn view(&self, packages: Vec<Package>, creative_ids: Vec<String>) -> MediaBuyView {
        MediaBuyView {
            media_buy_id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            principal_id: self.principal_id.clone(),
            buyer_ref: self.buyer_ref.clone(),
            order_name: self.order_name.clone(),
            advertiser_name: self.advertiser_name.clone(),
            currency: self.currency.clone(),
            budget: self.budget,
            flight_start: self.flight_start,
            flight_end: self.flight_end,
            status: self.status,
            packages,
            creative_ids,
            reporting_webhook: self
                .reporting_webhook
                .as_deref()
                .and_then(ReportingWebhook::from_stored)
                .map(|w| w.view()),
            workflow_id: None,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Delivery of one package on one day.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub package_id: String,
    /// ISO date, `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub day: String,
    pub impressions: i64,
    pub clicks: i64,
    #[sqlx(rename = "spend_micros", try_from = "i64")]
    pub spend: Amount,
}
