//! Agent runs (the reference system's `agent_audit_log`): one execution of an
//! AI agent or of one of the service's timer actors, started as `running`
//! and finished once as `succeeded`, `failed` or `canceled`.
//!
//! What the API accepts: an agent name of 1 to 64 ASCII letters, digits,
//! `_`, `-`, `.` or `:` (it is a metrics label: a short charset keeps it
//! printable and bounded); an objective of at most 512 characters; a plan and
//! artifacts that are JSON objects or arrays of at most 64 KiB, redacted like
//! audit details (secret-named keys become `"[REDACTED]"`); an error cut to
//! 2,048 characters (characters, not bytes).

use chrono::{DateTime, Utc};
use overseer_actors::audit::Redactor;
use overseer_actors::audit::redact::{redact_secrets, strip_nul};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::InvalidField;
use super::text::client_id;

pub const MAX_AGENT_CHARS: usize = 64;
pub const MAX_OBJECTIVE_CHARS: usize = 512;
pub const MAX_ERROR_CHARS: usize = 2_048;
/// A plan or artifacts document, as compact JSON after redaction.
pub const MAX_JSON_BYTES: usize = 65_536;
pub const MAX_EMAIL_CHARS: usize = 254;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentRunStatus {
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl AgentRunStatus {
    pub const ALL: [AgentRunStatus; 4] = [
        AgentRunStatus::Running,
        AgentRunStatus::Succeeded,
        AgentRunStatus::Failed,
        AgentRunStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentRunStatus::Running => "running",
            AgentRunStatus::Succeeded => "succeeded",
            AgentRunStatus::Failed => "failed",
            AgentRunStatus::Canceled => "canceled",
        }
    }

    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| {
                InvalidField::new(field, "must be running, succeeded, failed or canceled")
            })
    }
}

impl TryFrom<String> for AgentRunStatus {
    type Error = InvalidField;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse("status", &value)
    }
}

impl From<overseer_actors::agent_run::RunStatus> for AgentRunStatus {
    fn from(status: overseer_actors::agent_run::RunStatus) -> Self {
        use overseer_actors::agent_run::RunStatus;
        match status {
            RunStatus::Succeeded => AgentRunStatus::Succeeded,
            RunStatus::Failed => AgentRunStatus::Failed,
            RunStatus::Canceled => AgentRunStatus::Canceled,
        }
    }
}

/// How a run may end (`POST /api/v1/agent-runs/{run_id}/finish`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FinishStatus {
    Succeeded,
    Failed,
    Canceled,
}

impl From<FinishStatus> for overseer_actors::agent_run::RunStatus {
    fn from(status: FinishStatus) -> Self {
        use overseer_actors::agent_run::RunStatus;
        match status {
            FinishStatus::Succeeded => RunStatus::Succeeded,
            FinishStatus::Failed => RunStatus::Failed,
            FinishStatus::Canceled => RunStatus::Canceled,
        }
    }
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AgentRun {
    pub id: i64,
    pub run_id: String,
    pub agent: String,
    pub objective: String,
    #[sqlx(try_from = "String")]
    pub status: AgentRunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Given at finish, or computed from `started_at`.
    pub duration_ms: Option<i64>,
    /// A JSON object or array, redacted.
    #[sqlx(json(nullable))]
    pub plan: Option<Value>,
    /// A JSON object or array, redacted.
    #[sqlx(json(nullable))]
    pub artifacts: Option<Value>,
    /// At most 2,048 characters.
    pub error: Option<String>,
    pub user_email: Option<String>,
    pub dry_run: bool,
    pub created_at: DateTime<Utc>,
}

/// `POST /api/v1/agent-runs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartAgentRun {
    /// 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `:`; a UUID is
    /// generated when absent.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub run_id: Option<String>,
    /// 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    pub agent: String,
    #[schema(min_length = 1, max_length = 512)]
    pub objective: String,
    /// A JSON object or array of at most 64 KiB; secret-named keys are redacted.
    pub plan: Option<Value>,
    #[schema(max_length = 254)]
    pub user_email: Option<String>,
    /// Default `true`.
    #[serde(default = "default_dry_run")]
    #[schema(default = true)]
    pub dry_run: bool,
}

fn default_dry_run() -> bool {
    true
}

/// `POST /api/v1/agent-runs/{run_id}/finish`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishAgentRun {
    pub status: FinishStatus,
    /// A JSON object or array of at most 64 KiB; secret-named keys are redacted.
    pub artifacts: Option<Value>,
    /// Cut to 2,048 characters.
    pub error: Option<String>,
    /// Computed from `started_at` when absent.
    #[schema(minimum = 0)]
    pub duration_ms: Option<u64>,
}

/// A checked start, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAgentRun {
    pub run_id: String,
    pub agent: String,
    pub objective: String,
    pub plan: Option<Value>,
    pub user_email: Option<String>,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
}

/// A checked end, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRunEnd {
    pub status: AgentRunStatus,
    pub artifacts: Option<Value>,
    pub error: Option<String>,
    /// `None`: computed from `started_at` at `finished_at`.
    pub duration_ms: Option<i64>,
    pub finished_at: DateTime<Utc>,
}

impl StartAgentRun {
    pub fn parse(
        self,
        redactor: &Redactor,
        now: DateTime<Utc>,
    ) -> Result<NewAgentRun, InvalidField> {
        let run_id = match self.run_id {
            Some(id) => run_id(&id)?,
            None => uuid::Uuid::new_v4().to_string(),
        };
        Ok(NewAgentRun {
            run_id,
            agent: agent_name("agent", &self.agent)?,
            objective: objective(&self.objective)?,
            plan: self
                .plan
                .map(|p| json_document("plan", p, redactor))
                .transpose()?,
            user_email: self.user_email.as_deref().map(user_email).transpose()?,
            dry_run: self.dry_run,
            started_at: super::time::timestamp("started_at", now)?,
        })
    }
}

impl FinishAgentRun {
    pub fn parse(
        self,
        redactor: &Redactor,
        now: DateTime<Utc>,
    ) -> Result<AgentRunEnd, InvalidField> {
        let duration_ms = self
            .duration_ms
            .map(|ms| {
                i64::try_from(ms).map_err(|_| InvalidField::new("duration_ms", "is too large"))
            })
            .transpose()?;
        Ok(AgentRunEnd {
            status: overseer_actors::agent_run::RunStatus::from(self.status).into(),
            artifacts: self
                .artifacts
                .map(|a| json_document("artifacts", a, redactor))
                .transpose()?,
            error: self.error.map(truncate_error),
            duration_ms,
            finished_at: super::time::timestamp("finished_at", now)?,
        })
    }
}

/// A run id: it appears in URLs.
pub fn run_id(value: &str) -> Result<String, InvalidField> {
    client_id("run_id", value)
}

/// An agent name: 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:`.
pub fn agent_name(field: &'static str, value: &str) -> Result<String, InvalidField> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if value.is_empty() || value.len() > MAX_AGENT_CHARS || !value.chars().all(valid) {
        Err(InvalidField::new(
            field,
            format!("must be 1 to {MAX_AGENT_CHARS} ASCII letters, digits, '_', '-', '.' or ':'"),
        ))
    } else {
        Ok(value.to_owned())
    }
}

/// Up to 512 characters, not blank; line breaks and tabs allowed, other
/// control characters not.
pub fn objective(value: &str) -> Result<String, InvalidField> {
    let value = value.trim();
    if value.is_empty() {
        Err(InvalidField::new("objective", "must not be empty"))
    } else if value.chars().count() > MAX_OBJECTIVE_CHARS {
        Err(InvalidField::new(
            "objective",
            format!("must be at most {MAX_OBJECTIVE_CHARS} characters"),
        ))
    } else if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        Err(InvalidField::new(
            "objective",
            "must not contain control characters other than line breaks and tabs",
        ))
    } else {
        Ok(value.to_owned())
    }
}

/// A plausible address: `local@domain`, at most 254 characters, no spaces
/// or control characters. (Deliverability is not ours to check.)
pub fn user_email(value: &str) -> Result<String, InvalidField> {
    let value = value.trim();
    let plausible = value
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && value.chars().count() <= MAX_EMAIL_CHARS;
    if plausible {
        Ok(value.to_owned())
    } else {
        Err(InvalidField::new(
            "user_email",
            format!("must be an email address of at most {MAX_EMAIL_CHARS} characters"),
        ))
    }
}

/// A plan or artifacts: a JSON object or array, redacted like audit details,
/// at most [`MAX_JSON_BYTES`] as compact JSON.
pub fn json_document(
    field: &'static str,
    mut value: Value,
    redactor: &Redactor,
) -> Result<Value, InvalidField> {
    if !(value.is_object() || value.is_array()) {
        return Err(InvalidField::new(field, "must be a JSON object or array"));
    }
    redactor.redact(&mut value);
    if serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len()) > MAX_JSON_BYTES {
        return Err(InvalidField::new(
            field,
            format!("must be at most {MAX_JSON_BYTES} bytes of JSON"),
        ));
    }
    Ok(value)
}

/// The error text as stored: without NUL (PostgreSQL text cannot hold it),
/// its secret-shaped parts redacted (before the cut, which could leave half
/// a secret the scan no longer recognises), cut to [`MAX_ERROR_CHARS`] characters on a character boundary.
pub fn truncate_error(mut error: String) -> String {
    strip_nul(&mut error);
    redact_secrets(&mut error);
    if let Some((cut_at, _)) = error.char_indices().nth(MAX_ERROR_CHARS) {
        error.truncate(cut_at);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REDACTOR: Redactor = Redactor {
        max_value_chars: 1_000,
    };

    fn start(body: Value) -> Result<NewAgentRun, InvalidField> {
        let input: StartAgentRun = serde_json::from_value(body).unwrap();
        input.parse(&REDACTOR, Utc::now())
    }

    #[test]
    fn a_start_is_checked_field_by_field() {
        let run = start(json!({"agent": "planner", "objective": " plan the week "})).unwrap();
        assert_eq!(run.agent, "planner");
        assert_eq!(run.objective, "plan the week");
        assert!(run.dry_run, "dry_run defaults to true");
        assert!(
            uuid::Uuid::parse_str(&run.run_id).is_ok(),
            "a UUID is generated"
        );

        for (body, field) in [
            (json!({"agent": "", "objective": "o"}), "agent"),
            (json!({"agent": "has space", "objective": "o"}), "agent"),
            (json!({"agent": "x".repeat(65), "objective": "o"}), "agent"),
            (json!({"agent": "é", "objective": "o"}), "agent"),
            (json!({"agent": "a", "objective": "  "}), "objective"),
            (
                json!({"agent": "a", "objective": "x".repeat(513)}),
                "objective",
            ),
            (json!({"agent": "a", "objective": "a\u{0}b"}), "objective"),
            (
                json!({"agent": "a", "objective": "o", "run_id": "a/b"}),
                "run_id",
            ),
            (
                json!({"agent": "a", "objective": "o", "plan": "steps"}),
                "plan",
            ),
            (json!({"agent": "a", "objective": "o", "plan": 5}), "plan"),
            (
                json!({"agent": "a", "objective": "o", "user_email": "nobody"}),
                "user_email",
            ),
        ] {
            assert_eq!(start(body.clone()).unwrap_err().field, field, "{body}");
        }
        // Exactly 512 characters (multi-byte) is fine.
        assert!(start(json!({"agent": "a", "objective": "é".repeat(512)})).is_ok());
    }

    #[test]
    fn plans_are_redacted_and_bounded() {
        let run = start(json!({
            "agent": "a", "objective": "o",
            "plan": {"steps": [1, 2], "api_key": "k", "nested": {"password": "p"}}
        }))
        .unwrap();
        assert_eq!(
            run.plan.unwrap(),
            json!({"steps": [1, 2], "api_key": "[REDACTED]", "nested": {"password": "[REDACTED]"}})
        );
        let big: Vec<String> = (0..100).map(|_| "x".repeat(900)).collect();
        let err = start(json!({"agent": "a", "objective": "o", "plan": big})).unwrap_err();
        assert_eq!(err.field, "plan");
    }

    #[test]
    fn errors_are_cut_at_2048_characters_without_splitting_one() {
        assert_eq!(truncate_error("x".repeat(3_000)).chars().count(), 2_048);
        let cut = truncate_error("日本".repeat(2_000));
        assert_eq!(cut.chars().count(), 2_048);
        assert!(cut.starts_with("日本日本"));
        assert_eq!(truncate_error("short\0".into()), "short");
        assert_eq!(truncate_error("é".repeat(2_048)).chars().count(), 2_048);
    }
}
