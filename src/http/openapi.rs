//! `GET /api/openapi.json`: the OpenAPI document, generated from the code.
//!
//! Each resource module describes its own routes (`#[utoipa::path]` on the
//! handlers, a `Doc` listing them); this module merges them, adds the bearer
//! security scheme, and serves the result without authentication.

use std::sync::LazyLock;

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi as Document};
use utoipa::{Modify, OpenApi};

use crate::http::alerts;
use crate::http::{
    activity, admin, agent_runs, audit, creatives, health, media_buys, principals, push_configs,
    settings, tenant_tokens, tenants, webhooks, workflows,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/openapi.json").route(web::get().to(serve)));
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Overseer",
        description = "Operations backbone of an ad-sales agent platform: tenants, principals, \
media buys, creatives, workflows and the audit trail. Every list is paginated (`limit`, \
`cursor`, `next_cursor`); every error is `{\"error\": {\"code\", \"message\", \"field\"?}}`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "The super admin's tenants and their tokens"),
        (name = "settings", description = "A tenant admin's settings"),
        (name = "principals", description = "A tenant's buyer agents"),
        (name = "media-buys", description = "Media buys, their approval and delivery"),
        (name = "creatives", description = "Creatives and their review"),
        (name = "workflows", description = "Human-in-the-loop decisions"),
        (name = "audit", description = "The audit trail: ingest, query, verify"),
        (name = "health", description = "Liveness and readiness"),
        (name = "operations", description = "Operator actions (super admin)"),
        (name = "activity", description = "The live activity stream (Server-Sent Events)"),
        (name = "alerts", description = "Alert rules' current and recent alerts"),
    )
)]
struct ApiDoc;

/// The `bearer` scheme every `/api/v1` operation requires: the super admin
/// token, a tenant admin or ingest token, or a principal's token.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>`: the super admin token (ADMIN_TOKEN), \
                         a tenant admin or ingest token, or a principal's token.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    for part in [
        tenants::Doc::openapi(),
        tenant_tokens::Doc::openapi(),
        settings::Doc::openapi(),
        principals::Doc::openapi(),
        media_buys::Doc::openapi(),
        creatives::Doc::openapi(),
        workflows::Doc::openapi(),
        audit::Doc::openapi(),
        health::Doc::openapi(),
        admin::Doc::openapi(),
        push_configs::Doc::openapi(),
        webhooks::Doc::openapi(),
        activity::Doc::openapi(),
        alerts::Doc::openapi(),
        agent_runs::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    doc
}

/// Built once: it never changes while the process runs.
static DOCUMENT: LazyLock<Document> = LazyLock::new(document);

/// `GET /api/openapi.json`, without authentication.
async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(&*DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// That the document has every route and no other is
    /// `authz::tests::the_table_covers_every_documented_operation`'s check,
    /// against the one route table.
    #[test]
    fn the_document_serialises_and_every_schema_it_names_exists() {
        let json = serde_json::to_value(document()).expect("the document serialises");
        // Every schema a `$ref` names exists.
        let text = json.to_string();
        let schemas = json["components"]["schemas"].as_object().expect("schemas");
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }

    /// Some schemas describe types the document cannot derive from (the
    /// audit record, the chain verdict, the health report live outside this
    /// module): each must still match what those types serialise to.
    #[test]
    fn hand_written_schemas_match_what_the_types_serialise() {
        use chrono::Utc;
        use overseer_actors::audit::{AuditEvent, AuditStatus, CommittedEvent};
        use overseer_actors::supervisor::{ChildState, ChildStatus};

        let doc = serde_json::to_value(document()).expect("the document serialises");
        let now = Utc::now();
        let record = CommittedEvent {
            id: 7,
            seq: 3,
            prev_hash: "0".repeat(64),
            hash: "1".repeat(64),
            event: AuditEvent::new("create_media_buy", now).with_tenant("acme"),
        };
        describes(&doc, "AuditLogEntry", &serde_json::json!(record));
        for verdict in [
            crate::adapters::audit::Verification {
                ok: true,
                checked: 3,
                broken_seq: None,
                reason: None,
            },
            crate::adapters::audit::Verification {
                ok: false,
                checked: 2,
                broken_seq: Some(3),
                reason: Some("hash mismatch".into()),
            },
        ] {
            describes(&doc, "Verification", &serde_json::json!(verdict));
        }
        let error: serde_json::Value = serde_json::from_str(&crate::error::error_body(
            "invalid_field",
            "m",
            Some("name"),
        ))
        .expect("JSON");
        describes(&doc, "ErrorBody", &error);
        let report = crate::services::health::HealthReport {
            status: crate::services::health::Verdict::Degraded,
            database: crate::services::health::CONNECTED,
            error: None,
            version: "0.1.0",
            uptime_seconds: 5,
            components: crate::services::health::Components {
                database: crate::services::health::DatabaseHealth {
                    status: crate::services::health::CONNECTED,
                    backend: "sqlite",
                    latency_ms: Some(0.5),
                    schema: "current",
                    pool: crate::store::PoolStats {
                        size: 1,
                        idle: 1,
                        max: 10,
                    },
                    error: None,
                },
                actors: [(
                    "audit",
                    ChildStatus {
                        status: ChildState::Down,
                        restarts: 3,
                        last_restart_at: Some(now),
                        last_error: Some("panicked".into()),
                    },
                )]
                .into(),
                audit: AuditStatus::default(),
                slack: overseer_actors::slack::SlackStatus {
                    queue_depth: 2,
                    last_sent_at: Some(now),
                    last_error: Some("HTTP 404: no_service".into()),
                    failing: vec![overseer_actors::slack::FailingWebhook {
                        tenant_id: Some("acme".into()),
                        channel: overseer_actors::slack::Channel::General,
                        webhook: "https://hooks.slack.com/services/T…/B…/****".into(),
                        status: 404,
                        reason: "HTTP 404: no_service".into(),
                        since: now,
                    }],
                }
                .into(),
                schedulers: crate::services::health::Schedulers {
                    status: overseer_actors::scheduler::SchedulerStatus {
                        enabled: true,
                        last_run_at: Some(now),
                        last_duration_ms: Some(12),
                        transitions: 3,
                        errors: 0,
                        last_error: None,
                        next_run_at: Some(now),
                    },
                    delivery: overseer_actors::scheduler::SchedulerStatus::default(),
                },
                sse: crate::services::health::SseHealth { connections: 2 },
                alerts: overseer_actors::alerts::AlertsStatus {
                    enabled: true,
                    firing: 1,
                    pending: 0,
                    last_evaluation_at: Some(now),
                    last_error: Some("database check failed".into()),
                },
            },
        };
        describes(&doc, "HealthReport", &serde_json::json!(report));
    }

    /// Checks `value` against the schema called `name`: every key it has is
    /// a property, every required property is there, recursively (a light
    /// check of the shape, not a JSON Schema validator).
    fn describes(doc: &serde_json::Value, name: &str, value: &serde_json::Value) {
        let schema = &doc["components"]["schemas"][name];
        assert!(schema.is_object(), "no schema {name}");
        check(doc, schema, value, name);
    }

    fn check(
        doc: &serde_json::Value,
        schema: &serde_json::Value,
        value: &serde_json::Value,
        at: &str,
    ) {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.trim_start_matches("#/components/schemas/");
            return check(doc, &doc["components"]["schemas"][name], value, at);
        }
        if let Some(one_of) = schema["oneOf"].as_array() {
            // `null` or the schema: check against the non-null one.
            if value.is_null() {
                return;
            }
            if let Some(inner) = one_of.iter().find(|s| s["type"] != "null") {
                return check(doc, inner, value, at);
            }
        }
        let Some(object) = value.as_object() else {
            return;
        };
        if let Some(properties) = schema["properties"].as_object() {
            for key in object.keys() {
                assert!(
                    properties.contains_key(key),
                    "{at}: `{key}` is not in the schema"
                );
            }
            for key in schema["required"].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap_or_default();
                assert!(
                    object.contains_key(key),
                    "{at}: required `{key}` is missing"
                );
            }
            for (key, field) in object {
                check(doc, &properties[key], field, &format!("{at}.{key}"));
            }
        } else if schema["additionalProperties"].is_object() {
            for (key, field) in object {
                check(
                    doc,
                    &schema["additionalProperties"],
                    field,
                    &format!("{at}.{key}"),
                );
            }
        }
    }
}
