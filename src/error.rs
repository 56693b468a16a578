//! The one API error type. Every error response is JSON:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}` (`field` only
//! when one input is to blame), with a stable machine-readable `code`.
//! Internal errors keep their cause chain in the log and answer an opaque 500.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::InvalidField;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("method {0} is not allowed on this resource")]
    MethodNotAllowed(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type: expected application/json")]
    UnsupportedMediaType,
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    InvalidField { field: String, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("too many failed authentications from this address; retry later")]
    TooManyRequests { retry_after_secs: u64 },
    /// An activity stream over the per-tenant or total limit.
    #[error("{0}")]
    TooManyStreams(String),
    #[error("{0}")]
    Conflict(String),
    /// An ingested event's `log_id` is already used by a different event
    /// (another tenant's, or other content); `field` names it.
    #[error("this log_id is already used by a different event; nothing of the request was stored")]
    LogIdConflict { field: String },
    #[error("the database is unavailable, try again later")]
    DatabaseUnavailable,
    #[error("the database did not answer in time, try again later")]
    DatabaseTimeout,
    #[error("details are larger than the limit of 65536 bytes")]
    DetailsTooLarge { field: String },
    #[error("the audit queue is full, try again shortly")]
    AuditQueueFull,
    #[error("the events could not be made durable, try again later")]
    AuditUnavailable,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `not_found`, `invalid_field`,
    /// `unauthorized`, `conflict`, `database_unavailable`, ...
    #[schema(example = "invalid_field")]
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
    /// The JSON path or query parameter to blame, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub field: Option<String>,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::TooManyStreams(_) => "too_many_streams",
            ApiError::Conflict(_) => "conflict",
            ApiError::LogIdConflict { .. } => "log_id_conflict",
            ApiError::DatabaseUnavailable => "database_unavailable",
            ApiError::DatabaseTimeout => "database_timeout",
            ApiError::DetailsTooLarge { .. } => "details_too_large",
            ApiError::AuditQueueFull => "audit_queue_full",
            ApiError::AuditUnavailable => "audit_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

/// The JSON body of an error response with this status, code and message.
pub fn error_body(code: &str, message: impl Into<String>, field: Option<&str>) -> String {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.into(),
            field: field.map(str::to_owned),
        },
    };
    serde_json::to_string(&body).unwrap_or_else(|_| {
        r#"{"error":{"code":"internal_error","message":"internal error"}}"#.to_owned()
    })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } | ApiError::DetailsTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MalformedJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } | ApiError::TooManyStreams(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Conflict(_) | ApiError::LogIdConflict { .. } => StatusCode::CONFLICT,
            ApiError::DatabaseUnavailable
            | ApiError::DatabaseTimeout
            | ApiError::AuditQueueFull
            | ApiError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = %error_chain(cause.as_ref()), "internal error");
        }
        let field = match self {
            ApiError::InvalidField { field, .. }
            | ApiError::DetailsTooLarge { field }
            | ApiError::LogIdConflict { field } => Some(field.as_str()),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(mime_json());
        match self {
            ApiError::Unauthorized => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::DatabaseUnavailable
            | ApiError::DatabaseTimeout
            | ApiError::AuditUnavailable => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            ApiError::AuditQueueFull | ApiError::TooManyStreams(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, *retry_after_secs));
            }
            _ => {}
        }
        response.body(error_body(self.code(), self.to_string(), field))
    }
}

fn mime_json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// `error: cause: cause's cause`, for the log.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<InvalidField> for ApiError {
    fn from(err: InvalidField) -> Self {
        ApiError::InvalidField {
            field: err.field.to_owned(),
            message: err.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ApiError::DatabaseUnavailable,
            StoreError::QueryTimeout(_) => ApiError::DatabaseTimeout,
            StoreError::Conflict(constraint) => ApiError::Conflict(conflict_message(&constraint)),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

/// Named database constraints become domain messages here, in one place.
fn conflict_message(constraint: &str) -> String {
    match constraint {
        "tenants_pkey" | "tenants.id" => "a tenant with this id already exists".to_owned(),
        "api_tokens_tenant_id_fkey" => "no such tenant".to_owned(),
        _ => "the request conflicts with existing data".to_owned(),
    }
}
