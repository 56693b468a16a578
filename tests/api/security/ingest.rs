//! Forging the trail through its ingest route (issue 22, item 1): a
//! principal, an adapter and a tenant admin each post a super admin's
//! approval dated 2020; none is stored. An ingest token may write, but not
//! as the super admin, nor outside [now − 24 h, now + 5 min]; every ingested
//! row names the token that wrote it (`ingested_by`), in the chain.

use chrono::{DateTime, SecondsFormat, TimeDelta, TimeZone, Utc};
use overseer_actors::ManualClock;
use serde_json::{Value, json};

use crate::audit::{raw_sql, stored, verify};
use crate::domain::{As, tenant_with_principal};
use crate::helpers::{Backend, on_both_backends, spawn_app, spawn_app_with_clock};

on_both_backends!(
    only_the_super_admin_and_ingest_tokens_write_the_trail,
    an_ingest_token_cannot_write_as_the_super_admin,
    a_client_set_time_is_accepted_from_a_day_back_to_five_minutes_ahead,
    the_writer_of_an_ingested_row_is_in_its_chain,
);

const EVENTS: &str = "/api/v1/audit/events";

fn forged() -> Value {
    json!({"operation": "workflow_approved", "principal_id": "super_admin",
           "principal_name": "Super admin", "created_at": "2020-01-01T00:00:00Z",
           "success": true})
}

/// Creates an acme token of `kind`; returns (token, token id).
async fn token(root: &As<'_>, kind: &str) -> (String, String) {
    let created = root
        .expect(
            201,
            root.post(&format!("/api/v1/tenants/acme/{kind}-tokens"), &json!({}))
                .await,
        )
        .await;
    (
        created["token"].as_str().unwrap().to_owned(),
        created["token_id"].as_str().unwrap().to_owned(),
    )
}

async fn only_the_super_admin_and_ingest_tokens_write_the_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    let root = As::admin(&app);
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    let adapter = As::token(&app, &token(&root, "adapter").await.0);
    let (ingest_token, ingest_id) = token(&root, "ingest").await;
    let ingest = As::token(&app, &ingest_token);

    for (who, forger) in [
        ("principal", &buyer),
        ("adapter", &adapter),
        ("admin", &admin),
    ] {
        let response = forger.post(EVENTS, &forged()).await;
        assert_eq!(response.status().as_u16(), 403, "{who}");
        let mut honest = forged();
        honest["principal_id"] = json!("someone");
        honest["principal_name"] = json!("Someone");
        honest["created_at"] = json!(Utc::now());
        let response = forger.post(EVENTS, &json!([honest])).await;
        assert_eq!(response.status().as_u16(), 403, "{who}, an honest event");
    }
    assert!(
        stored(&app.store, &["workflow_approved"]).await.is_empty(),
        "a forged row in the trail"
    );

    // The writers that may: each row names its token.
    ingest
        .expect(
            202,
            ingest
                .post(
                    EVENTS,
                    &json!({"operation": "order_synced", "success": true}),
                )
                .await,
        )
        .await;
    root.expect(
        202,
        root.post(
            EVENTS,
            &json!({"tenant_id": "acme", "operation": "order_synced", "success": true}),
        )
        .await,
    )
    .await;
    let rows = stored(&app.store, &["order_synced"]).await;
    let mut writers: Vec<_> = rows
        .iter()
        .map(|r| r.event.ingested_by.clone().unwrap_or_default())
        .collect();
    writers.sort();
    let mut expected = vec![ingest_id.clone(), "super_admin".to_owned()];
    expected.sort();
    assert_eq!(writers, expected);

    // Served by the trail's query and its CSV export.
    let logs = root
        .expect(
            200,
            root.get("/api/v1/audit/logs?tenant_id=acme&operation=order_synced")
                .await,
        )
        .await;
    let served: Vec<&str> = logs["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["ingested_by"].as_str())
        .collect();
    assert!(served.contains(&ingest_id.as_str()), "{logs}");
    let csv = root
        .request(
            reqwest::Method::GET,
            "/api/v1/audit/logs?tenant_id=acme&operation=order_synced&format=csv",
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.lines().next().unwrap().ends_with(",ingested_by"),
        "{csv}"
    );
    assert!(csv.contains(&ingest_id), "{csv}");
    assert!(
        !csv.contains(&ingest_token),
        "the token itself in the export"
    );
    assert_eq!(verify(&app, "acme").await["ok"], true);
}

async fn an_ingest_token_cannot_write_as_the_super_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    let root = As::admin(&app);
    tenant_with_principal(&app, "acme").await;
    let ingest = As::token(&app, &token(&root, "ingest").await.0);

    for (event, field) in [
        (
            json!({"operation": "x", "success": true, "principal_id": "super_admin"}),
            "[1].principal_id",
        ),
        (
            json!({"operation": "x", "success": true, "principal_name": " SUPER ADMIN "}),
            "[1].principal_name",
        ),
    ] {
        let batch = json!([{"operation": "x", "success": true}, event]);
        let body = ingest.expect(422, ingest.post(EVENTS, &batch).await).await;
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    assert!(
        stored(&app.store, &["x"]).await.is_empty(),
        "nothing of the request"
    );
    // The super admin names itself as it likes.
    root.expect(
        202,
        root.post(
            EVENTS,
            &json!({"tenant_id": "acme", "operation": "x", "success": true,
                    "principal_id": "super_admin", "principal_name": "Super admin"}),
        )
        .await,
    )
    .await;
}

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn a_client_set_time_is_accepted_from_a_day_back_to_five_minutes_ahead(backend: Backend) {
    let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
    let clock = ManualClock::new(now);
    let app = spawn_app_with_clock(backend, &[("SKIP_CRON", "true")], clock).await;
    let root = As::admin(&app);
    tenant_with_principal(&app, "acme").await;
    let ingest = As::token(&app, &token(&root, "ingest").await.0);
    let micro = TimeDelta::microseconds(1);
    let oldest = now - TimeDelta::hours(24);
    let newest = now + TimeDelta::minutes(5);

    for at in [oldest, newest, now] {
        let event = json!({"operation": "timed", "success": true, "created_at": text(at)});
        ingest.expect(202, ingest.post(EVENTS, &event).await).await;
    }
    for at in [
        oldest - micro,
        newest + micro,
        Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap(),
    ] {
        let event = json!([{"operation": "late", "success": true, "created_at": text(at)}]);
        let body = ingest.expect(422, ingest.post(EVENTS, &event).await).await;
        assert_eq!(body["error"]["field"], "[0].created_at", "{at}: {body}");
        // The super admin is held to the same window.
        let response = root
            .post(EVENTS, &json!({"tenant_id": "acme", "operation": "late", "success": true, "created_at": text(at)}))
            .await;
        assert_eq!(response.status().as_u16(), 422, "{at}");
    }
    let mut times: Vec<_> = stored(&app.store, &["timed"])
        .await
        .into_iter()
        .map(|r| r.event.created_at)
        .collect();
    times.sort();
    assert_eq!(times, vec![oldest, now, newest]);
    assert!(stored(&app.store, &["late"]).await.is_empty());
}

async fn the_writer_of_an_ingested_row_is_in_its_chain(backend: Backend) {
    let app = spawn_app(backend).await;
    let root = As::admin(&app);
    // The service's own rows (no writer) come first, as in a chain
    // begun before the column existed.
    tenant_with_principal(&app, "acme").await;
    let ingest = As::token(&app, &token(&root, "ingest").await.0);
    ingest
        .expect(
            202,
            ingest
                .post(
                    EVENTS,
                    &json!({"operation": "order_synced", "success": true}),
                )
                .await,
        )
        .await;
    let chain: Vec<_> = stored(&app.store, &[])
        .await
        .into_iter()
        .filter(|r| r.event.tenant_id.as_deref() == Some("acme"))
        .collect();
    assert!(chain.iter().any(|r| r.event.ingested_by.is_none()));
    assert!(chain.iter().any(|r| r.event.ingested_by.is_some()));
    assert_eq!(verify(&app, "acme").await["ok"], true);

    // Rewriting who wrote a row breaks the chain at that row.
    let rewrite = match backend {
        Backend::Postgres => {
            "SET session_replication_role = replica; \
             UPDATE audit_logs SET ingested_by = 'super_admin' WHERE operation = 'order_synced'; \
             SET session_replication_role = origin"
        }
        Backend::Sqlite => {
            "DROP TRIGGER audit_logs_no_update; \
             UPDATE audit_logs SET ingested_by = 'super_admin' WHERE operation = 'order_synced'"
        }
    };
    raw_sql(&app, backend, rewrite).await.unwrap();
    let verdict = verify(&app, "acme").await;
    assert_eq!(verdict["ok"], false, "{verdict}");
    let row = &stored(&app.store, &["order_synced"]).await[0];
    assert_eq!(verdict["broken_seq"], row.seq, "{verdict}");
}
