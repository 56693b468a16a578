//! Workflow tasks: decisions a human must take (today: approving a media buy
//! whose budget is above the tenant's threshold, at the amount the task
//! shows).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::text::bounded;
use super::{Amount, InvalidField, TenantId};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkflowTask {
    #[sqlx(rename = "id")]
    pub workflow_id: String,
    #[sqlx(try_from = "String")]
    pub tenant_id: TenantId,
    pub media_buy_id: String,
    /// `media_buy_approval`.
    pub kind: String,
    /// `pending`, `approved`, `rejected`, or `superseded` (the buy's budget
    /// or flight changed while it was pending: a newer task, if any, shows
    /// the new terms; a superseded task can no longer be decided).
    pub status: String,
    /// The budget this task approves: approving it approves exactly this
    /// amount, and only while the buy's budget is still this amount.
    #[sqlx(rename = "budget_micros", try_from = "i64")]
    pub budget: Amount,
    pub reason: String,
    pub comment: Option<String>,
    pub decided_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/workflows/{id}/approve|reject`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2000)]
    pub comment: Option<String>,
}

impl DecisionInput {
    pub fn parse(self) -> Result<Option<String>, InvalidField> {
        self.comment
            .as_deref()
            .map(|c| bounded("comment", c, 2_000))
            .transpose()
    }
}

/// What a decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn task_status(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Reject => "rejected",
        }
    }
}

/// The statuses a task can be in, for the list filter.
pub const WORKFLOW_STATUSES: [&str; 4] = ["pending", "approved", "rejected", "superseded"];
