//! Creatives: the ads a buyer syncs, reviewed by the tenant's admin.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::text::{bounded, client_id};
use super::{InvalidField, TenantId};

/// Most creatives in one sync request.
pub const MAX_SYNC: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreativeStatus {
    PendingReview,
    Approved,
    Rejected,
}

impl CreativeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingReview => "pending_review",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }
}

impl TryFrom<String> for CreativeStatus {
    type Error = InvalidField;

    fn try_from(value: String) -> Result<Self, InvalidField> {
        match value.as_str() {
            "pending_review" => Ok(Self::PendingReview),
            "approved" => Ok(Self::Approved),
            "rejected" => Ok(Self::Rejected),
            _ => Err(InvalidField::new("status", "is not a creative status")),
        }
    }
}

/// `POST /api/v1/creatives`: `{"creatives": [...]}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncCreatives {
    /// 1 to 500 creatives, each id once.
    #[schema(min_items = 1, max_items = 500)]
    pub creatives: Vec<CreativeInput>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreativeInput {
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub creative_id: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(min_length = 1, max_length = 100)]
    pub format: String,
    /// An http(s) URL.
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
}

/// A creative to upsert, parsed.
#[derive(Debug, Clone)]
pub struct NewCreative {
    pub id: String,
    pub name: String,
    pub format: String,
    pub url: String,
}

impl SyncCreatives {
    pub fn parse(self) -> Result<Vec<NewCreative>, InvalidField> {
        if self.creatives.is_empty() {
            return Err(InvalidField::new(
                "creatives",
                "at least one creative is required",
            ));
        }
        if self.creatives.len() > MAX_SYNC {
            return Err(InvalidField::new(
                "creatives",
                format!("at most {MAX_SYNC} creatives per request"),
            ));
        }
        let mut out: Vec<NewCreative> = Vec::with_capacity(self.creatives.len());
        for c in self.creatives {
            let id = client_id("creatives.creative_id", &c.creative_id)?;
            if out.iter().any(|o| o.id == id) {
                return Err(InvalidField::new("creatives.creative_id", "is used twice"));
            }
            let url = url::Url::parse(&c.url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && c.url.len() <= 2_048)
                .ok_or_else(|| InvalidField::new("creatives.url", "must be an http(s) URL"))?;
            out.push(NewCreative {
                id,
                name: bounded("creatives.name", &c.name, 200)?,
                format: bounded("creatives.format", &c.format, 100)?,
                url: url.to_string(),
            });
        }
        Ok(out)
    }
}

/// `POST /api/v1/creatives/{id}/approve|reject`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: Option<String>,
}

impl ReviewInput {
    pub fn parse(self) -> Result<Option<String>, InvalidField> {
        self.reason
            .as_deref()
            .map(|r| bounded("reason", r, 2_000))
            .transpose()
    }
}

/// A creative as stored and shown.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Creative {
    #[sqlx(rename = "id")]
    pub creative_id: String,
    #[sqlx(try_from = "String")]
    pub tenant_id: TenantId,
    pub principal_id: String,
    pub name: String,
    pub format: String,
    pub url: String,
    #[sqlx(try_from = "String")]
    pub status: CreativeStatus,
    pub review_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
