//! Media buys: what a buyer agent books, with packages, flight dates, an
//! optional reporting webhook, and a lifecycle status.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::InputPolicy;
use super::text::{bounded, client_id, generate_id};
use super::time;
use super::{Amount, Currency, InvalidField, TenantId, WebhookUrl};

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
    /// 1 to 100 packages; the budget of the buy is their sum, at most 1e12.
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
    pub fn parse(self, policy: InputPolicy) -> Result<NewMediaBuy, InvalidField> {
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
            // The documented maximum bounds the buy, not only each package
            // (nine packages of 1e12 were once a 9e12 budget).
            budget = budget
                .checked_add(package_budget)
                .filter(|total| *total <= Amount::MAX)
                .ok_or_else(|| {
                    at(InvalidField::new(
                        "packages.budget",
                        "the packages' budgets total more than 1e12",
                    ))
                })?;
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
            .map(|w| w.parse(policy))
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
    fn parse(self, policy: InputPolicy) -> Result<ReportingWebhook, InvalidField> {
        let url = WebhookUrl::parse("reporting_webhook.url", &self.url, policy)?;
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

    /// The buy after this change, with the approval its terms now need
    /// ([`approval_after_change`] against the tenant's `threshold`), or why
    /// the change is not allowed in its status (a conflict).
    ///
    /// A change that needs a human puts the buy in `pending_approval`
    /// whatever it was doing (a running buy stops delivering until the new
    /// terms are approved); a paused buy stays paused and resumes into
    /// `pending_approval`. A change that no longer needs one (the budget back
    /// under the threshold, or within what was approved) takes a waiting buy
    /// back to `pending_activation`.
    pub fn apply(
        &self,
        mut buy: MediaBuy,
        threshold: Option<Amount>,
        now: DateTime<Utc>,
    ) -> Result<ChangedBuy, ChangeRefused> {
        if buy.status.is_final() {
            return Err(ChangeRefused(format!(
                "a {} media buy cannot be changed",
                buy.status.as_str()
            )));
        }
        let waited = buy.awaits_approval();
        let before = (
            buy.budget,
            buy.flight_start,
            buy.flight_end,
            buy.approved_budget,
        );
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
        let approval = approval_after_change(
            Terms {
                budget: before.0,
                flight: (before.1, before.2),
                approved: before.3,
                awaiting: waited,
            },
            buy.budget,
            (start, end),
            threshold,
        );
        match approval {
            Approval::StillPending => {}
            Approval::Granted(budget) => {
                buy.approved_budget = Some(budget);
                buy.leave_approval();
            }
            Approval::Required { .. } => {
                if (start, end) != (before.1, before.2) {
                    // What was approved was for other dates.
                    buy.approved_budget = None;
                }
                buy.enter_approval();
            }
        }
        // Whatever the path, a buy is live only at an approved budget.
        if buy.status == MediaBuyStatus::Active {
            check_activation(buy.budget, buy.approved_budget)
                .map_err(|refused| ChangeRefused(refused.0))?;
        }
        buy.updated_at = now;
        Ok(ChangedBuy {
            supersedes_pending: match approval {
                Approval::StillPending => false,
                Approval::Granted(_) => waited,
                Approval::Required { .. } => true,
            },
            buy,
            approval,
        })
    }
}

/// A media buy after a change, and what its terms now need.
#[derive(Debug, Clone)]
pub struct ChangedBuy {
    pub buy: MediaBuy,
    pub approval: Approval,
    /// A pending approval task of the buy no longer shows its terms: it is
    /// superseded (and replaced when `approval` is `Required`).
    pub supersedes_pending: bool,
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
    /// The largest budget approved for the buy's current flight: by a human
    /// (a workflow task showing that amount), or by being at most the
    /// approval threshold when it was set. `None` until a first approval.
    /// The buy is live only at a budget at most this ([`check_activation`]).
    #[sqlx(rename = "approved_budget_micros")]
    pub approved_budget: Option<Amount>,
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
    /// The budget approved for this flight (by an admin, or by being at
    /// most the approval threshold when set); `null` before any approval.
    /// The buy runs only while `budget` is at most this.
    #[schema(value_type = Option<f64>)]
    pub approved_budget: Option<Amount>,
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
    /// Waiting for a human: `pending_approval`, or paused from it.
    pub fn awaits_approval(&self) -> bool {
        match self.status {
            MediaBuyStatus::PendingApproval => true,
            MediaBuyStatus::Paused => {
                self.paused_from.as_deref() == Some(MediaBuyStatus::PendingApproval.as_str())
            }
            _ => false,
        }
    }

    /// Stops the buy until a human decides; a paused buy stays paused and
    /// will resume into `pending_approval`.
    fn enter_approval(&mut self) {
        match self.status {
            MediaBuyStatus::Paused => {
                self.paused_from = Some(MediaBuyStatus::PendingApproval.as_str().to_owned());
            }
            MediaBuyStatus::PendingApproval => {}
            _ => {
                self.status = MediaBuyStatus::PendingApproval;
                self.paused_from = None;
            }
        }
    }

    /// No human is needed any more: a waiting buy goes (or, paused, will
    /// resume) to `pending_activation`, where the scheduler starts it.
    fn leave_approval(&mut self) {
        if self.status == MediaBuyStatus::PendingApproval {
            self.status = MediaBuyStatus::PendingActivation;
        } else if self.awaits_approval() {
            self.paused_from = Some(MediaBuyStatus::PendingActivation.as_str().to_owned());
        }
    }

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
            approved_budget: self.approved_budget,
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

/// A buy's delivery totals: checked sums, never wrapped, saturated or short
/// of a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryTotals {
    pub impressions: i64,
    pub clicks: i64,
    pub spend: Amount,
}

/// A sum of delivery figures that does not fit in 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the delivery totals are larger than this service can count")]
pub struct TotalsOverflow;

impl DeliveryTotals {
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a DeliveryRow>) -> Result<Self, TotalsOverflow> {
        rows.into_iter().try_fold(Self::default(), |t, r| {
            Ok(Self {
                impressions: t
                    .impressions
                    .checked_add(r.impressions)
                    .ok_or(TotalsOverflow)?,
                clicks: t.clicks.checked_add(r.clicks).ok_or(TotalsOverflow)?,
                spend: t.spend.checked_add(r.spend).ok_or(TotalsOverflow)?,
            })
        })
    }
}

// ---------------------------------------------------------------- approval
//
// The one rule for budgets and humans. A buy is live only at a budget that a
// human approved, or that was at most the tenant's approval threshold when it
// was set. Every write path asks these functions; the store and the status
// scheduler only carry out (and, in SQL, re-check) their answer.

/// What a buy's budget and flight need after they are set or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// Nothing about the terms changed while a human decides: the pending
    /// task stands.
    StillPending,
    /// The terms stand approved at this budget: it is at most the threshold,
    /// or at most what a human approved for this flight.
    Granted(Amount),
    /// A human must approve this budget (above `threshold`) before the buy
    /// runs: a new workflow task shows it.
    Required { threshold: Amount },
}

/// A buy's terms before a change: what [`approval_after_change`] decides from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub budget: Amount,
    pub flight: (DateTime<Utc>, DateTime<Utc>),
    /// [`MediaBuy::approved_budget`].
    pub approved: Option<Amount>,
    /// [`MediaBuy::awaits_approval`].
    pub awaiting: bool,
}

/// The approval a new buy of `budget` needs.
pub fn approval_of_new(budget: Amount, threshold: Option<Amount>) -> Approval {
    decide(budget, None, threshold)
}

/// The approval a buy with terms `before` needs once its budget is `budget`
/// and its flight `flight`:
///
/// - while a task is pending and neither changes, it stands;
/// - at most the threshold, granted: approved as set;
/// - above it, granted only within what a human approved for the same
///   flight (a lower budget, or the same); a raise past that, or any new
///   flight, needs a human again. Every raise, in every status, comes here.
pub fn approval_after_change(
    before: Terms,
    budget: Amount,
    flight: (DateTime<Utc>, DateTime<Utc>),
    threshold: Option<Amount>,
) -> Approval {
    let flight_changed = flight != before.flight;
    if before.awaiting && budget == before.budget && !flight_changed {
        return Approval::StillPending;
    }
    let in_force = if flight_changed {
        None
    } else {
        before.approved
    };
    decide(budget, in_force, threshold)
}

fn decide(budget: Amount, in_force: Option<Amount>, threshold: Option<Amount>) -> Approval {
    match threshold {
        Some(threshold) if budget > threshold => match in_force {
            Some(approved) if budget <= approved => Approval::Granted(budget),
            _ => Approval::Required { threshold },
        },
        _ => Approval::Granted(budget),
    }
}

/// Why a buy may not go (or stay) live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationRefused(pub String);

/// Whether a buy may be `active` at `budget`: only at most its approved
/// budget. The status scheduler's activation carries the same guard in SQL
/// (`budget_micros <= approved_budget_micros`), and the database refuses an
/// `active` row above it.
pub fn check_activation(budget: Amount, approved: Option<Amount>) -> Result<(), ActivationRefused> {
    match approved {
        Some(approved) if budget <= approved => Ok(()),
        Some(approved) => Err(ActivationRefused(format!(
            "the budget {budget} is above the approved budget {approved}"
        ))),
        None => Err(ActivationRefused(format!(
            "no budget is approved (the budget is {budget})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn units(n: i64) -> Amount {
        Amount::from_micros(n * 1_000_000)
    }

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, d, 0, 0, 0).unwrap()
    }

    const FLIGHT: (u32, u32) = (1, 31);

    fn buy(status: MediaBuyStatus, budget: i64, approved: Option<i64>) -> MediaBuy {
        MediaBuy {
            id: "mb_1".into(),
            tenant_id: TenantId::parse("t", "acme").unwrap(),
            principal_id: "p".into(),
            buyer_ref: "r".into(),
            order_name: "o".into(),
            advertiser_name: "a".into(),
            currency: Currency::parse("c", "USD").unwrap(),
            budget: units(budget),
            flight_start: day(FLIGHT.0),
            flight_end: day(FLIGHT.1),
            status,
            paused_from: None,
            approved_budget: approved.map(units),
            reporting_webhook: None,
            created_at: day(1),
            updated_at: day(1),
        }
    }

    fn change(budget: Option<i64>, paused: Option<bool>) -> MediaBuyChange {
        MediaBuyChange {
            budget: budget.map(units),
            paused,
            ..MediaBuyChange::default()
        }
    }

    const THRESHOLD: Option<Amount> = Some(Amount::from_micros(1_000_000_000));

    #[test]
    fn new_buys_above_the_threshold_need_a_human() {
        assert_eq!(
            approval_of_new(units(1_000), THRESHOLD),
            Approval::Granted(units(1_000))
        );
        assert_eq!(
            approval_of_new(units(1_001), THRESHOLD),
            Approval::Required {
                threshold: units(1_000)
            }
        );
        assert_eq!(
            approval_of_new(Amount::MAX, None),
            Approval::Granted(Amount::MAX)
        );
    }

    #[test]
    fn a_paused_raise_waits_for_a_human_and_resumes_into_approval() {
        let paused = change(Some(1_000_000_000), Some(true))
            .apply(
                buy(MediaBuyStatus::PendingActivation, 100, Some(100)),
                THRESHOLD,
                day(2),
            )
            .unwrap();
        assert!(matches!(paused.approval, Approval::Required { .. }));
        assert_eq!(paused.buy.status, MediaBuyStatus::Paused);
        assert!(paused.buy.awaits_approval());
        assert_eq!(paused.buy.approved_budget, Some(units(100)));
        let resumed = change(None, Some(false))
            .apply(paused.buy, THRESHOLD, day(3))
            .unwrap();
        assert_eq!(resumed.approval, Approval::StillPending);
        assert!(!resumed.supersedes_pending, "the task stands");
        assert_eq!(resumed.buy.status, MediaBuyStatus::PendingApproval);
    }

    #[test]
    fn a_raise_while_waiting_replaces_the_task() {
        let waiting = buy(MediaBuyStatus::PendingApproval, 5_000, None);
        let raised = change(Some(1_000_000_000), None)
            .apply(waiting.clone(), THRESHOLD, day(2))
            .unwrap();
        assert!(matches!(raised.approval, Approval::Required { .. }));
        assert!(raised.supersedes_pending);
        assert_eq!(raised.buy.status, MediaBuyStatus::PendingApproval);
        // A rename while waiting leaves the task alone.
        let renamed = MediaBuyChange {
            order_name: Some("n".into()),
            ..MediaBuyChange::default()
        }
        .apply(waiting.clone(), THRESHOLD, day(2))
        .unwrap();
        assert_eq!(renamed.approval, Approval::StillPending);
        assert!(!renamed.supersedes_pending);
        // Back under the threshold: no human, the task is withdrawn.
        let lowered = change(Some(900), None)
            .apply(waiting, THRESHOLD, day(2))
            .unwrap();
        assert_eq!(lowered.approval, Approval::Granted(units(900)));
        assert!(lowered.supersedes_pending);
        assert_eq!(lowered.buy.status, MediaBuyStatus::PendingActivation);
        assert_eq!(lowered.buy.approved_budget, Some(units(900)));
    }

    #[test]
    fn running_buys_go_back_to_a_human_for_a_raise_or_a_new_flight() {
        let running = buy(MediaBuyStatus::Active, 5_000, Some(5_000));
        let raised = change(Some(5_001), None)
            .apply(running.clone(), THRESHOLD, day(2))
            .unwrap();
        assert!(matches!(raised.approval, Approval::Required { .. }));
        assert_eq!(raised.buy.status, MediaBuyStatus::PendingApproval);
        // The earlier approval still stands for a return to 5,000 (same flight).
        assert_eq!(raised.buy.approved_budget, Some(units(5_000)));
        let back = change(Some(5_000), None)
            .apply(raised.buy, THRESHOLD, day(2))
            .unwrap();
        assert_eq!(back.approval, Approval::Granted(units(5_000)));
        assert_eq!(back.buy.status, MediaBuyStatus::PendingActivation);

        let moved = MediaBuyChange {
            flight_end: Some(day(30)),
            ..MediaBuyChange::default()
        }
        .apply(running.clone(), THRESHOLD, day(2))
        .unwrap();
        assert!(matches!(moved.approval, Approval::Required { .. }));
        assert_eq!(moved.buy.status, MediaBuyStatus::PendingApproval);
        assert_eq!(moved.buy.approved_budget, None, "approved for other dates");

        // Lowering is approved, and lowers the approval with it: raising back
        // is a new decision.
        let lowered = change(Some(3_000), None)
            .apply(running, THRESHOLD, day(2))
            .unwrap();
        assert_eq!(lowered.buy.status, MediaBuyStatus::Active);
        assert_eq!(lowered.buy.approved_budget, Some(units(3_000)));
        let again = change(Some(5_000), None)
            .apply(lowered.buy, THRESHOLD, day(2))
            .unwrap();
        assert!(matches!(again.approval, Approval::Required { .. }));

        // Under the threshold, a running buy changes freely.
        let small = buy(MediaBuyStatus::Active, 500, Some(500));
        let raised = change(Some(1_000), None)
            .apply(small, THRESHOLD, day(2))
            .unwrap();
        assert_eq!(raised.buy.status, MediaBuyStatus::Active);
        assert_eq!(raised.buy.approved_budget, Some(units(1_000)));
    }

    #[test]
    fn a_paused_running_buy_raised_stays_paused_and_waits() {
        let mut paused = buy(MediaBuyStatus::Paused, 5_000, Some(5_000));
        paused.paused_from = Some("active".into());
        let raised = change(Some(9_000), None)
            .apply(paused, THRESHOLD, day(2))
            .unwrap();
        assert_eq!(raised.buy.status, MediaBuyStatus::Paused);
        assert!(raised.buy.awaits_approval());
        let resumed = change(None, Some(false))
            .apply(raised.buy, THRESHOLD, day(3))
            .unwrap();
        assert_eq!(resumed.buy.status, MediaBuyStatus::PendingApproval);
    }

    #[test]
    fn nothing_resumes_into_active_above_the_approved_budget() {
        // A row written behind the rule's back: active's budget above approved.
        let mut paused = buy(MediaBuyStatus::Paused, 5_000, Some(100));
        paused.paused_from = Some("active".into());
        let resumed = change(None, Some(false))
            .apply(paused, THRESHOLD, day(2))
            .unwrap();
        assert!(matches!(resumed.approval, Approval::Required { .. }));
        assert_eq!(resumed.buy.status, MediaBuyStatus::PendingApproval);
    }

    #[test]
    fn activation_needs_an_approved_budget_at_least_the_budget() {
        assert!(check_activation(units(5), Some(units(5))).is_ok());
        assert!(check_activation(units(5), Some(units(6))).is_ok());
        let above = check_activation(units(6), Some(units(5))).unwrap_err();
        assert!(above.0.contains("above the approved budget 5"), "{above:?}");
        assert!(check_activation(units(1), None).is_err());
    }

    #[test]
    fn delivery_totals_are_checked_sums() {
        let row = |spend: Amount| DeliveryRow {
            package_id: "p".into(),
            day: "2027-03-01".into(),
            impressions: 10,
            clicks: 1,
            spend,
        };
        let nine: Vec<DeliveryRow> = (0..9).map(|_| row(Amount::MAX)).collect();
        let totals = DeliveryTotals::of(&nine).unwrap();
        assert_eq!(totals.impressions, 90);
        assert_eq!(Some(totals.spend), Amount::checked_sum([Amount::MAX; 9]));
        let ten: Vec<DeliveryRow> = (0..10).map(|_| row(Amount::MAX)).collect();
        assert_eq!(DeliveryTotals::of(&ten), Err(TotalsOverflow));
    }
}
