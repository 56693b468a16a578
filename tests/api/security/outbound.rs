//! Issue 21, item 2: SSRF through the URLs the service calls. An attacker
//! with a tenant admin's token points a Slack webhook (general, audit or
//! HITL) at an inside address; a buyer points its media buy's
//! `reporting_webhook` there; or a URL gets into the database some other
//! way (written behind the API's back, stored while an allowlist let it
//! through, a name that resolves elsewhere today). Every class of inside
//! address is refused at registration (a 422 naming the field) and again
//! at send time, and a real local listener receives nothing.

use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use overseer::domain::{TenantId, WebhookUrl};
use overseer::store::{Effects, Store};
use overseer_actors::notify::{Notification, NotificationEvent};
use serde_json::{Value, json};

use crate::audit::raw_sql;
use crate::domain::{As, admin_token, media_buy, tenant_with_principal};
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with};
use crate::receiver::Receiver;

on_both_backends!(
    every_inside_address_is_refused_at_registration_for_each_slack_url_and_the_reporting_webhook,
    stored_inside_urls_are_refused_when_sending_and_no_request_reaches_a_local_listener,
    production_sends_over_https_only_whatever_was_stored,
);

const SLACK_FIELDS: [&str; 3] = [
    "slack_webhook_url",
    "slack_audit_webhook_url",
    "hitl_webhook_url",
];

/// What a refused send records (`crate::outbound::Refused`).
const REFUSED: &str = "refused by the outbound guard";

/// One origin (`scheme://host[:port]`) per class of inside address. The
/// loopback ones carry `port`, a live local listener's: a request the
/// guard let through would be received there.
fn inside_origins(scheme: &str, port: u16) -> Vec<(&'static str, String)> {
    let near = |host: &str| format!("{scheme}://{host}:{port}");
    let far = |host: &str| format!("{scheme}://{host}");
    vec![
        ("private 10/8", far("10.1.2.3")),
        ("private 172.16/12", far("172.16.0.1")),
        ("private 172.16/12, its top", far("172.31.255.254")),
        ("private 192.168/16", far("192.168.1.1")),
        ("loopback", near("127.0.0.1")),
        ("loopback 127/8", near("127.9.8.7")),
        ("loopback, as one decimal number", near("2130706433")),
        ("loopback, short form", near("127.1")),
        ("IPv6 loopback", near("[::1]")),
        ("link-local", far("169.254.1.1")),
        ("cloud metadata address", far("169.254.169.254")),
        ("cloud metadata name", far("metadata.google.internal")),
        (
            "cloud metadata name (EC2)",
            far("instance-data.ec2.internal"),
        ),
        ("CGNAT 100.64/10", far("100.64.0.1")),
        ("CGNAT 100.64/10, its top", far("100.127.255.254")),
        ("IPv6 unique local fc00::/7", far("[fc00::1]")),
        ("IPv6 unique local fd00::/8", far("[fd12:3456::1]")),
        ("IPv6 link-local", far("[fe80::1]")),
        ("IPv4-mapped loopback", near("[::ffff:127.0.0.1]")),
        ("IPv4-mapped private", far("[::ffff:10.1.2.3]")),
        ("IPv4-mapped metadata", far("[::ffff:169.254.169.254]")),
        ("IPv4-compatible loopback", near("[::127.0.0.1]")),
        ("IPv4-compatible private", far("[::192.168.1.1]")),
        ("a name resolving to loopback", near("localhost")),
        (
            "a name resolving to loopback, spelt oddly",
            near("LocalHost."),
        ),
    ]
}

fn port_of(receiver: &Receiver) -> u16 {
    receiver.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A 422 in the project's error shape, naming `field`, saying why.
async fn expect_refused(response: reqwest::Response, field: &str, class: &str) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 422, "{class} for {field}: {body}");
    assert_eq!(body["error"]["code"], "invalid_field", "{class}: {body}");
    assert_eq!(body["error"]["field"], field, "{class}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("refused: "), "{class}: {body}");
}

async fn every_inside_address_is_refused_at_registration_for_each_slack_url_and_the_reporting_webhook(
    backend: Backend,
) {
    let receiver = Receiver::start();
    // Production, and an allowlist naming one other loopback address: only
    // what it names passes, the same variable for every kind of URL.
    let app = spawn_app_with(
        backend,
        &[
            ("ENVIRONMENT", "production"),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.2/32"),
        ],
    )
    .await;
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    for (class, origin) in inside_origins("https", port_of(&receiver)) {
        for field in SLACK_FIELDS {
            let url = format!("{origin}/services/T0/B0/{field}");
            let response = admin
                .patch("/api/v1/tenant/settings", &json!({field: url}))
                .await;
            expect_refused(response, field, class).await;
        }
        // All three at once, beside a valid change: nothing of it is saved.
        let all: serde_json::Map<String, Value> = SLACK_FIELDS
            .iter()
            .map(|f| ((*f).to_owned(), json!(format!("{origin}/{f}"))))
            .chain([("timezone".to_owned(), json!("Europe/Paris"))])
            .collect();
        let response = admin.patch("/api/v1/tenant/settings", &json!(all)).await;
        expect_refused(response, "slack_webhook_url", class).await;

        let mut body = media_buy(1_000.0, &[]);
        body["reporting_webhook"]["url"] = json!(format!("{origin}/reports"));
        let response = buyer.post("/api/v1/media-buys", &body).await;
        expect_refused(response, "reporting_webhook.url", class).await;
    }
    let settings = admin
        .expect(200, admin.get("/api/v1/tenant/settings").await)
        .await;
    for field in SLACK_FIELDS {
        assert_eq!(settings[field], Value::Null, "{field} was saved");
    }
    assert_eq!(
        settings["timezone"], "UTC",
        "a refused change saved nothing"
    );
    let buys = buyer
        .expect(200, buyer.get("/api/v1/media-buys").await)
        .await;
    assert_eq!(buys["items"], json!([]), "no buy was created");

    // What the allowlist names passes, for each kind of URL alike.
    let allowed = "https://127.0.0.2:9";
    let all: serde_json::Map<String, Value> = SLACK_FIELDS
        .iter()
        .map(|f| ((*f).to_owned(), json!(format!("{allowed}/{f}"))))
        .collect();
    admin
        .expect(
            200,
            admin.patch("/api/v1/tenant/settings", &json!(all)).await,
        )
        .await;
    let mut body = media_buy(1_000.0, &[]);
    body["reporting_webhook"]["url"] = json!(format!("{allowed}/reports"));
    buyer
        .expect(201, buyer.post("/api/v1/media-buys", &body).await)
        .await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.all().is_empty(), "the local listener was reached");
}

/// Writes a tenant's three Slack URLs through the store, as a migration, a
/// restore or an allowlist since shortened would leave them: the API's
/// registration check never saw them.
async fn store_slack_urls(store: &Store, tenant: &str, origin: &str) {
    let id = TenantId::parse("tenant_id", tenant).unwrap();
    let mut settings = store.tenant_settings(&id).await.unwrap().unwrap();
    let url = |channel: &str| Some(WebhookUrl::stored(format!("{origin}/{tenant}/{channel}")));
    settings.slack_webhook_url = url("general");
    settings.slack_audit_webhook_url = url("audit");
    settings.hitl_webhook_url = url("hitl");
    store
        .save_settings(&id, &settings, Effects::default())
        .await
        .unwrap();
}

/// Queues one alert for `tenant`'s (or the service's) `channel` webhook;
/// answers the notification's id.
async fn notify(store: &Store, tenant: Option<&str>, channel: &str) -> String {
    let n = Notification::new(
        tenant.map(str::to_owned),
        NotificationEvent::AlertFiring {
            rule: "outbound_guard_test".into(),
            severity: "critical".into(),
            channel: channel.into(),
            summary: "a test alert".into(),
            value: 1.0,
            threshold: 0.0,
            reminder: false,
        },
        Utc::now().trunc_subsecs(6),
    );
    store.enqueue_notification(&n).await.unwrap();
    n.id.to_string()
}

/// Waits until every notification in `ids` is settled; answers `(status,
/// last_error)` of each.
async fn settled_slack(store: &Store, ids: &[(String, String)]) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut out = Vec::new();
        for (label, id) in ids {
            let (status, _, error) = store.outbox_status(id).await.unwrap().unwrap();
            out.push((label.clone(), status, error.unwrap_or_default()));
        }
        if out.iter().all(|(_, status, _)| status != "pending") {
            return out;
        }
        assert!(Instant::now() < deadline, "still pending: {out:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A buy whose stored reporting webhook is `url`, live, with a report
/// forced now; answers its id.
async fn report_to(
    app: &TestApp,
    backend: Backend,
    admin: &As<'_>,
    buyer: &As<'_>,
    url: &str,
) -> String {
    let created = buyer
        .expect(
            201,
            buyer
                .post("/api/v1/media-buys", &media_buy(1_000.0, &[]))
                .await,
        )
        .await;
    let id = created["media_buy_id"].as_str().unwrap().to_owned();
    let stored = json!({
        "url": url,
        "frequency": "daily",
        "auth_type": "hmac-sha256",
        "credentials": "K".repeat(40),
    });
    raw_sql(
        app,
        backend,
        &format!(
            "UPDATE media_buys SET status = 'active', reporting_webhook = '{stored}' \
             WHERE id = '{id}'"
        ),
    )
    .await
    .unwrap();
    let queued = admin
        .expect(
            200,
            admin
                .post(
                    &format!("/api/v1/media-buys/{id}/delivery/report?force=true"),
                    &json!({}),
                )
                .await,
        )
        .await;
    assert_eq!(queued["queued"], true, "{queued}");
    id
}

/// Waits until the buy's webhook requests are settled; answers `(status,
/// last_error)` of the first.
async fn settled_report(store: &Store, media_buy_id: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = store.webhook_rows(media_buy_id).await.unwrap();
        if let Some(row) = rows.first()
            && row.status != "pending"
        {
            return (
                row.status.clone(),
                row.last_error.clone().unwrap_or_default(),
            );
        }
        assert!(Instant::now() < deadline, "still pending: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send-time settings shared by the two tests below: one attempt each, a
/// short timeout (a request the guard let through to a far address would
/// otherwise hang for its full length), fast polling, no timers.
const SENDING: [(&str, &str); 7] = [
    ("SKIP_CRON", "true"),
    ("SLACK_POLL_INTERVAL", "20ms"),
    ("SLACK_MAX_ATTEMPTS", "1"),
    ("SLACK_TIMEOUT", "2s"),
    ("WEBHOOK_POLL_INTERVAL", "20ms"),
    ("WEBHOOK_MAX_ATTEMPTS", "1"),
    ("WEBHOOK_TIMEOUT", "2s"),
];

async fn stored_inside_urls_are_refused_when_sending_and_no_request_reaches_a_local_listener(
    backend: Backend,
) {
    let receiver = Receiver::start();
    let port = port_of(&receiver);
    // Development (plain http allowed, so a loopback URL that got through
    // would reach the listener), and no allowlist: the one the URLs may
    // have been stored under no longer applies. The service's own audit
    // webhook is configured at the listener too.
    let system_audit = receiver.url("/system/audit");
    let mut vars = SENDING.to_vec();
    vars.extend([
        ("WEBHOOK_ALLOWED_CIDRS", ""),
        ("SLACK_AUDIT_WEBHOOK_URL", system_audit.as_str()),
    ]);
    let app = spawn_app_with(backend, &vars).await;
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    let root = As::admin(&app);

    let origins = inside_origins("http", port);
    let mut notifications = Vec::new();
    for (i, (class, origin)) in origins.iter().enumerate() {
        let tenant = format!("t{i}");
        root.expect(
            201,
            root.post("/api/v1/tenants", &json!({"id": tenant, "name": tenant}))
                .await,
        )
        .await;
        store_slack_urls(&app.store, &tenant, origin).await;
        for channel in ["general", "audit", "hitl"] {
            let id = notify(&app.store, Some(&tenant), channel).await;
            notifications.push((format!("{class} ({channel})"), id));
        }
    }
    let id = notify(&app.store, None, "audit").await;
    notifications.push(("the service's own audit webhook".to_owned(), id));

    let mut reports = Vec::new();
    for (class, origin) in &origins {
        let id = report_to(&app, backend, &admin, &buyer, &format!("{origin}/report")).await;
        reports.push((class, id));
    }

    for (label, status, error) in settled_slack(&app.store, &notifications).await {
        assert_eq!(status, "failed", "{label}: {error}");
        assert!(error.contains(REFUSED), "{label}: {error}");
        assert!(
            !error.contains(&port.to_string()),
            "{label}: a URL in {error}"
        );
    }
    for (class, id) in &reports {
        let (status, error) = settled_report(&app.store, id).await;
        assert_eq!(status, "failed", "reporting_webhook, {class}: {error}");
        assert!(
            error.contains(REFUSED),
            "reporting_webhook, {class}: {error}"
        );
    }
    // Nothing reached the listener, then or a moment later (no retry either).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.all().is_empty(),
        "the local listener was reached: {:?}",
        receiver
            .all()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    // The tenant's admin still reads its settings, masked as ever.
    let admin_t0 = admin_token(&app, "t0").await;
    let settings = admin_t0
        .expect(200, admin_t0.get("/api/v1/tenant/settings").await)
        .await;
    assert!(
        settings["slack_webhook_url"]
            .as_str()
            .unwrap()
            .ends_with("/****")
    );
}

async fn production_sends_over_https_only_whatever_was_stored(backend: Backend) {
    let receiver = Receiver::start();
    // The listener's address is allowed: only the scheme is wrong.
    let mut vars = SENDING.to_vec();
    vars.extend([
        ("ENVIRONMENT", "production"),
        ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
    ]);
    let app = spawn_app_with(backend, &vars).await;
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    store_slack_urls(&app.store, "acme", &receiver.base).await;
    let mut notifications = Vec::new();
    for channel in ["general", "audit", "hitl"] {
        let id = notify(&app.store, Some("acme"), channel).await;
        notifications.push((channel.to_owned(), id));
    }
    let report = report_to(&app, backend, &admin, &buyer, &receiver.url("/report")).await;

    for (label, status, error) in settled_slack(&app.store, &notifications).await {
        assert_eq!(status, "failed", "{label}: {error}");
        assert!(
            error.contains(REFUSED) && error.contains("https only"),
            "{label}: {error}"
        );
    }
    let (status, error) = settled_report(&app.store, &report).await;
    assert_eq!(status, "failed", "{error}");
    assert!(
        error.contains(REFUSED) && error.contains("https only"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.all().is_empty(), "sent over plain http");
}
