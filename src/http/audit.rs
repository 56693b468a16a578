//! `/api/v1/audit`: ingest events from other services, query and export the
//! trail, verify a chain; and the tenant ingest tokens that other services
//! use to write.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures_util::stream;
use overseer_actors::audit::{AuditError, CommittedEvent};
use serde::{Deserialize, Serialize};

use crate::adapters::audit::{Verification, verify_chain};
use crate::domain::TenantId;
use crate::domain::audit::{IngestError, IngestEvent, MAX_EVENTS_PER_REQUEST};
use crate::error::{ApiError, ErrorBody};
use crate::http::authz::{Ingester, Reader};
use crate::http::{AppState, BodyLimit, Json, OneOrMany};
use crate::store::{AuditPosition, AuditQuery, Store};

/// Marks a request whose operation was audited by its handler (in the same
/// transaction as its change), so the request middleware does not record it
/// a second time.
#[derive(Debug, Clone, Copy)]
pub struct AuditedByHandler;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(ingest, list, verify))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig, ingest_body_limit: usize) {
    cfg.service(
        web::resource("/audit/events")
            .app_data(web::PayloadConfig::new(ingest_body_limit))
            .app_data(BodyLimit(ingest_body_limit))
            .route(web::post().to(ingest)),
    )
    .service(web::resource("/audit/logs").route(web::get().to(list)))
    .service(web::resource("/audit/verify").route(web::get().to(verify)));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Accepted {
    accepted: usize,
    /// The events' ids, in the order sent.
    log_ids: Vec<uuid::Uuid>,
}

// The body of `POST /api/v1/audit/events` in the OpenAPI document; the
// handler reads it as `OneOrMany`, which names the event at fault.
/// One event, or an array of 1 to 1,000.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(
    dead_code,
    reason = "describes OneOrMany<IngestEvent> in the OpenAPI document"
)]
enum IngestBody {
    One(IngestEvent),
    /// 1 to 1,000 events.
    Many(Vec<IngestEvent>),
}

/// `POST /api/v1/audit/events` (the super admin or an ingest token, see
/// [`Ingester`]; each row records the writing token as `ingested_by`): one
/// event or an array of up to 1,000. 202 once
/// every event is durable (committed, or fsync'd to the spool); nothing of a
/// request with an invalid event is stored. A retry of the same events with
/// the same `log_id`s is a 202 and stores nothing twice; an event whose
/// `log_id` is already used by a different one (another tenant's, or other
/// content) is a 409 naming it, and nothing of the request is stored. The
/// check is made in the transaction that would store the events, before the
/// answer; events the spool acknowledges while the database is away are
/// checked when replayed, and a conflict then leaves a `log_id_conflict` row
/// (docs/security.md).
#[utoipa::path(
    post,
    path = "/api/v1/audit/events",
    tag = "audit",
    operation_id = "ingest_audit_events",
    request_body = IngestBody,
    responses(
        (status = 202, description = "Every event is durable", body = Accepted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin nor an ingest token", body = ErrorBody),
        (status = 409, description = "An event's `log_id` is already used by a different event \
(`field` names it, e.g. `[3].log_id`); nothing of the request is stored", body = ErrorBody),
        (status = 413, description = "The body, or an event's `details`, is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "An event is invalid (`field` names it, e.g. `[3].operation`): among others, \
an ingest token naming the super admin (`principal_id: \"super_admin\"`, `principal_name: \"Super admin\"`), or a \
`created_at` outside [now - 24 h, now + 5 min]", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable, or the audit queue is full", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(events))]
async fn ingest(
    who: Ingester,
    state: web::Data<AppState>,
    Json(body): Json<OneOrMany<IngestEvent>>,
) -> Result<HttpResponse, ApiError> {
    let n = body.items.len();
    tracing::Span::current().record("events", n);
    if n == 0 || n > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::InvalidField {
            field: "events".into(),
            message: format!("send 1 to {MAX_EVENTS_PER_REQUEST} events"),
        });
    }
    let now = state.clock.now();
    let prefix = |i: usize| {
        if body.array {
            format!("[{i}].")
        } else {
            String::new()
        }
    };
    let events = body
        .items
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let mut ingested = event.parse(&prefix(i), who.tenant(), now)?;
            ingested.event.ingested_by = Some(who.token_id().to_owned());
            Ok(ingested)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            IngestError::Invalid { field, message } => ApiError::InvalidField { field, message },
            IngestError::DetailsTooLarge { field } => ApiError::DetailsTooLarge { field },
        })?;
    let log_ids = events.iter().map(|e| e.event.log_id).collect();
    state
        .actors
        .auditor
        .record_ingested(events)
        .await
        .map_err(|e| match e {
            AuditError::QueueFull => ApiError::AuditQueueFull,
            AuditError::NotDurable(_) => ApiError::AuditUnavailable,
            AuditError::LogIdConflict { index } => ApiError::LogIdConflict {
                field: format!("{}log_id", prefix(index)),
            },
        })?;
    Ok(HttpResponse::Accepted().json(Accepted {
        accepted: n,
        log_ids,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct VerifyParams {
    /// The tenant whose chain to walk. A tenant admin: absent or its own.
    /// Absent for the super admin: the system chain.
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    tenant_id: Option<String>,
}

// `crate::adapters::audit::Verification` as the OpenAPI document describes it.
/// The outcome of re-walking a hash chain.
#[derive(utoipa::ToSchema)]
#[schema(as = Verification)]
#[allow(
    dead_code,
    reason = "describes Verification's JSON in the OpenAPI document"
)]
struct VerificationDoc {
    ok: bool,
    /// Records found intact before the first break (all of them when `ok`).
    checked: u64,
    /// The first record that does not hold; absent when `ok`.
    #[schema(value_type = i64, required = false)]
    broken_seq: Option<i64>,
    /// Why it does not hold; absent when `ok`.
    #[schema(value_type = String, required = false)]
    reason: Option<String>,
}

/// `GET /api/v1/audit/verify?tenant_id=...`: re-walks the chain (without
/// `tenant_id`: the system chain, super admin only).
#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "audit",
    operation_id = "verify_audit_chain",
    params(VerifyParams),
    responses(
        (status = 200, description = "Whether the chain holds", body = VerificationDoc),
        (status = 400, description = "A malformed query string", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin, nor a tenant admin reading its own tenant", body = ErrorBody),
        (status = 422, description = "`tenant_id` is not a tenant id", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn verify(
    who: Reader,
    state: web::Data<AppState>,
    params: web::Query<VerifyParams>,
) -> Result<web::Json<Verification>, ApiError> {
    // Tenant ids are slugs: anything else has no chain (and text holding NUL
    // must not reach PostgreSQL).
    if let Some(id) = params.tenant_id.as_deref() {
        TenantId::parse("tenant_id", id)?;
    }
    let tenant = who.tenant(params.tenant_id.as_deref())?;
    Ok(web::Json(
        verify_chain(&state.store, tenant.as_deref()).await?,
    ))
}

/// The form of `GET /api/v1/audit/logs`: one JSON page, or every matching
/// row streamed as JSON lines or CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = ExportFormat, rename_all = "lowercase")]
enum Format {
    Json,
    Jsonl,
    Csv,
}

/// Rows per page of an export.
const EXPORT_PAGE: u32 = 1_000;

/// `GET /api/v1/audit/logs`: newest first, filtered, keyset-paginated; with
/// `format=jsonl` or `format=csv`, every matching row streamed page by page.
#[utoipa::path(
    get,
    path = "/api/v1/audit/logs",
    tag = "audit",
    operation_id = "query_audit_logs",
    params(
        ("tenant_id" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,63}$",
            description = "The super admin: any tenant (absent: every chain); a tenant admin: \
absent or its own"),
        ("operation" = Option<Vec<String>>, Query, style = Form, explode,
            description = "Only these operations: repeat the parameter, or separate names with commas"),
        ("principal_id" = Option<String>, Query, description = "Only this principal's events"),
        ("success" = Option<bool>, Query, description = "Only successes, or only failures"),
        ("security_violation" = Option<bool>, Query, description = "Only (or no) security violations"),
        ("since" = Option<DateTime<Utc>>, Query, description = "RFC 3339; `created_at >= since`"),
        ("until" = Option<DateTime<Utc>>, Query, description = "RFC 3339; `created_at < until`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500,
            description = "Page size, 1 to 500 (default 50); `format=json` only"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("format" = inline(Option<Format>), Query, description = "`json` (default): one page; \
`jsonl` or `csv`: every matching row, streamed"),
    ),
    responses(
        (status = 200, description = "Newest first", content(
            (Page = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin, nor a tenant admin reading its own tenant", body = ErrorBody),
        (status = 422, description = "A parameter is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn list(
    who: Reader,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (mut query, requested_tenant, format) = parse_params(req.query_string())?;
    query.tenant_id = who.tenant(requested_tenant.as_deref())?;
    match format {
        Format::Json => {
            let limit = query.limit;
            query.limit = limit + 1;
            let mut items = state.store.audit_logs(&query).await?;
            let next_cursor = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(cursor_of)
            } else {
                None
            };
            Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
        }
        Format::Jsonl | Format::Csv => {
            query.limit = EXPORT_PAGE;
            let content_type = if format == Format::Csv {
                "text/csv; charset=utf-8"
            } else {
                "application/x-ndjson"
            };
            Ok(HttpResponse::Ok()
                .content_type(content_type)
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .streaming(export(state.store.clone(), query, format)))
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditLogPage)]
struct Page {
    #[schema(value_type = Vec<AuditLogEntry>)]
    items: Vec<CommittedEvent>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

// `CommittedEvent`, serialised, as the OpenAPI document describes it.
/// One audit record: its place in its tenant's hash chain, and the event.
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes CommittedEvent's JSON in the OpenAPI document"
)]
pub(crate) struct AuditLogEntry {
    id: i64,
    /// Position in the tenant's chain (the system chain without a tenant).
    seq: i64,
    prev_hash: String,
    hash: String,
    log_id: uuid::Uuid,
    /// `null` for a system event.
    #[schema(required = true)]
    tenant_id: Option<String>,
    operation: String,
    #[schema(required = true)]
    principal_id: Option<String>,
    #[schema(required = true)]
    principal_name: Option<String>,
    #[schema(required = true)]
    adapter_id: Option<String>,
    success: bool,
    /// Always an object; secrets redacted.
    #[schema(value_type = Object)]
    details: serde_json::Value,
    #[schema(required = true)]
    error: Option<String>,
    #[schema(required = true)]
    ip_address: Option<String>,
    security_violation: bool,
    created_at: DateTime<Utc>,
    /// For an ingested event: the id of the token that wrote it (an ingest
    /// token's, or `super_admin`). Absent for the service's own events.
    #[schema(required = false)]
    ingested_by: Option<String>,
}

/// The export as a stream of chunks, one page of rows each: memory stays at
/// one page whatever the size of the export.
fn export(
    store: Store,
    query: AuditQuery,
    format: Format,
) -> impl futures_util::Stream<Item = Result<web::Bytes, ApiError>> {
    struct State {
        store: Store,
        query: AuditQuery,
        first: bool,
        done: bool,
    }
    let start = State {
        store,
        query,
        first: true,
        done: false,
    };
    stream::try_unfold(start, move |mut st| async move {
        if st.done {
            return Ok(None);
        }
        let rows = st.store.audit_logs(&st.query).await.inspect_err(|e| {
            tracing::error!(error = %e.short_reason(), "audit export cut short");
        })?;
        st.done = rows.len() < st.query.limit as usize;
        st.query.before = rows.last().map(position_of);
        let chunk = match format {
            Format::Csv => csv_chunk(&rows, st.first)?,
            _ => jsonl_chunk(&rows)?,
        };
        st.first = false;
        Ok(Some((web::Bytes::from(chunk), st)))
    })
}

fn jsonl_chunk(rows: &[CommittedEvent]) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(rows.len() * 512);
    for row in rows {
        serde_json::to_writer(&mut out, row).map_err(|e| ApiError::Internal(Box::new(e)))?;
        out.push(b'\n');
    }
    Ok(out)
}

const CSV_HEADER: [&str; 17] = [
    "id",
    "log_id",
    "tenant_id",
    "seq",
    "created_at",
    "operation",
    "principal_id",
    "principal_name",
    "adapter_id",
    "success",
    "error",
    "ip_address",
    "security_violation",
    "details",
    "prev_hash",
    "hash",
    "ingested_by",
];

/// One page of the CSV export. Every cell goes through [`spreadsheet_safe`]:
/// this CSV is what an operator opens in a spreadsheet, and its cells carry
/// what callers sent (`principal_name`, `error`, ...).
fn csv_chunk(rows: &[CommittedEvent], header: bool) -> Result<Vec<u8>, ApiError> {
    let internal = |e: csv::Error| ApiError::Internal(Box::new(e));
    let mut out = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 512));
    if header {
        out.write_record(CSV_HEADER).map_err(internal)?;
    }
    for row in rows {
        let e = &row.event;
        let (id, log_id, seq) = (
            row.id.to_string(),
            e.log_id.to_string(),
            row.seq.to_string(),
        );
        let created_at = overseer_actors::audit::event::format_timestamp(e.created_at);
        let details = e.details.to_string();
        let cells = [
            id.as_str(),
            &log_id,
            e.tenant_id.as_deref().unwrap_or(""),
            &seq,
            &created_at,
            &e.operation,
            e.principal_id.as_deref().unwrap_or(""),
            e.principal_name.as_deref().unwrap_or(""),
            e.adapter_id.as_deref().unwrap_or(""),
            if e.success { "true" } else { "false" },
            e.error.as_deref().unwrap_or(""),
            e.ip_address.as_deref().unwrap_or(""),
            if e.security_violation {
                "true"
            } else {
                "false"
            },
            &details,
            &row.prev_hash,
            &row.hash,
            e.ingested_by.as_deref().unwrap_or(""),
        ]
        .map(spreadsheet_safe);
        out.write_record(cells.iter().map(|c| c.as_bytes()))
            .map_err(internal)?;
    }
    out.into_inner()
        .map_err(|e| ApiError::Internal(Box::new(e.into_error())))
}

/// A cell a spreadsheet shows as text. A cell beginning with `=`, `+`, `-`,
/// `@`, a tab (0x09) or a carriage return (0x0D) is read by Excel, LibreOffice
/// and Google Sheets as a formula (`=HYPERLINK(...)` exfiltrates, `=cmd|...`
/// runs commands), so it is prefixed with a single quote `'`, as OWASP's
/// CSV Injection guidance advises; the csv writer then quotes and escapes
/// the cell as RFC 4180 says. The cost is that a value which merely looks
/// like a formula (`-5`, `+33 1 23 45 67 89`) also gains the `'`: the
/// export is for people reading a spreadsheet, and the JSONL export keeps
/// every value exactly as stored. Hand-written: six characters and a
/// prefix do not need a crate (none of the well-kept CSV crates does it).
fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn position_of(row: &CommittedEvent) -> AuditPosition {
    AuditPosition {
        created_at: row.event.created_at,
        id: row.id,
    }
}

/// An opaque cursor: the position of the last row of the page.
fn cursor_of(row: &CommittedEvent) -> String {
    let p = position_of(row);
    URL_SAFE_NO_PAD.encode(format!("{}:{}", p.created_at.timestamp_micros(), p.id))
}

fn parse_cursor(cursor: &str) -> Option<AuditPosition> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (micros, id) = text.split_once(':')?;
    let created_at = DateTime::<Utc>::from_timestamp_micros(micros.parse().ok()?)?;
    Some(AuditPosition {
        created_at: crate::domain::time::timestamp("cursor", created_at).ok()?,
        id: id.parse().ok()?,
    })
}

/// The query string of `GET /api/v1/audit/logs`. `operation` may repeat or
/// list several names separated by commas; an unknown parameter is an error
/// (a typo would otherwise silently widen the result).
fn parse_params(qs: &str) -> Result<(AuditQuery, Option<String>, Format), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(qs)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let invalid = |field: &str, message: &str| ApiError::InvalidField {
        field: field.to_owned(),
        message: message.to_owned(),
    };
    let boolean = |field: &str, v: &str| match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(field, "expected true or false")),
    };
    let time = |field: &'static str, v: &str| {
        let at = DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                invalid(
                    field,
                    "expected an RFC 3339 time such as 2026-11-24T00:00:00Z",
                )
            })?;
        crate::domain::time::timestamp(field, at).map_err(ApiError::from)
    };
    let mut query = AuditQuery {
        limit: 50,
        ..AuditQuery::default()
    };
    // Stored events hold no NUL (redaction strips it), and PostgreSQL
    // refuses text holding one: such a filter is refused, not sent.
    let text = |field: &str, v: String| {
        if v.contains('\0') {
            Err(invalid(field, "must not contain NUL characters"))
        } else {
            Ok(v)
        }
    };
    let mut tenant = None;
    let mut format = Format::Json;
    for (key, value) in pairs {
        match key.as_str() {
            "tenant_id" => {
                TenantId::parse("tenant_id", &value)?;
                tenant = Some(value);
            }
            "operation" => query.operations.extend(
                text("operation", value)?
                    .split(',')
                    .map(str::trim)
                    .filter(|op| !op.is_empty())
                    .map(str::to_owned),
            ),
            "principal_id" => query.principal_id = Some(text("principal_id", value)?),
            "success" => query.success = Some(boolean("success", &value)?),
            "security_violation" => {
                query.security_violation = Some(boolean("security_violation", &value)?);
            }
            "since" => query.since = Some(time("since", &value)?),
            "until" => query.until = Some(time("until", &value)?),
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| invalid("limit", "expected a whole number from 1 to 500"))?;
            }
            "cursor" => {
                query.before = Some(
                    parse_cursor(&value)
                        .ok_or_else(|| invalid("cursor", "not a cursor this API gave out"))?,
                );
            }
            "format" => {
                format = match value.as_str() {
                    "json" => Format::Json,
                    "jsonl" => Format::Jsonl,
                    "csv" => Format::Csv,
                    _ => return Err(invalid("format", "expected json, jsonl or csv")),
                };
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{other}`"
                )));
            }
        }
    }
    Ok((query, tenant, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_795_000_000_123_456).unwrap();
        let row = CommittedEvent {
            id: 42,
            seq: 1,
            prev_hash: String::new(),
            hash: String::new(),
            event: overseer_actors::audit::AuditEvent::new("x", at),
        };
        assert_eq!(parse_cursor(&cursor_of(&row)), Some(position_of(&row)));
        assert_eq!(parse_cursor("not-a-cursor"), None);
    }

    #[test]
    fn a_record_with_float_details_hashes_the_same_after_a_round_trip_through_json() {
        // The request middleware records durations such as 1.8151680000000001
        // ms. Read back from either database, they must parse to the same f64
        // (serde_json's `float_roundtrip`), or verification reports the
        // record as altered.
        use overseer_actors::audit::{GENESIS_HASH, chain_hash};
        let at = DateTime::<Utc>::from_timestamp_micros(1_795_000_000_123_456).unwrap();
        for ms in [
            1.815_168_000_000_000_1_f64,
            0.971_067_999_999_999_9,
            1.0 / 3.0,
            1e-7,
        ] {
            let written = overseer_actors::audit::AuditEvent::new("api_request", at)
                .with_details(serde_json::json!({"duration_ms": ms}));
            let mut read = written.clone();
            read.details = serde_json::from_str(&written.details.to_string()).unwrap();
            assert_eq!(
                chain_hash(GENESIS_HASH, 1, &read),
                chain_hash(GENESIS_HASH, 1, &written),
                "{ms}"
            );
        }
    }

    #[test]
    fn operations_repeat_or_list_and_unknown_parameters_are_refused() {
        let (q, tenant, format) =
            parse_params("operation=a&operation=b,c&tenant_id=acme&format=csv&success=false")
                .unwrap();
        assert_eq!(q.operations, vec!["a", "b", "c"]);
        assert_eq!(tenant.as_deref(), Some("acme"));
        assert_eq!(format, Format::Csv);
        assert_eq!(q.success, Some(false));
        assert!(matches!(
            parse_params("tenant=acme"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_params("limit=501"),
            Err(ApiError::InvalidField { .. })
        ));
    }

    #[test]
    fn filters_that_cannot_match_are_refused_before_the_database() {
        for (qs, field) in [
            ("tenant_id=%00", "tenant_id"),
            ("tenant_id=Acme", "tenant_id"),
            ("principal_id=a%00b", "principal_id"),
            ("operation=x,%00", "operation"),
        ] {
            match parse_params(qs) {
                Err(ApiError::InvalidField { field: f, .. }) => assert_eq!(f, field, "{qs}"),
                other => panic!("{qs}: {other:?}"),
            }
        }
    }
}
