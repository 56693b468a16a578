//! The Slack router end to end, against a real HTTP receiver standing in for
//! Slack: routing, Block Kit limits, pacing, 429 / 5xx / 4xx handling,
//! digests, and a SIGKILL with notifications queued. Where timing matters the
//! application reads a [`ManualClock`] and the test moves it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use overseer::store::Store;
use overseer_actors::ManualClock;
use overseer_actors::notify::{Notification, NotificationEvent};
use overseer_actors::slack::{Channel, route};
use serde_json::{Value, json};

use crate::domain::{As, media_buy, tenant_with_principal};
use crate::helpers::{
    Backend, ServiceProcess, TestApp, TestDatabase, on_both_backends, spawn_app_with,
    spawn_app_with_clock,
};
use crate::receiver::{Received, Receiver, Reply};

on_both_backends!(
    every_event_reaches_its_channel_and_no_other_within_slack_limits,
    one_message_per_second_per_webhook_after_a_burst,
    a_429_waits_for_retry_after_and_the_message_is_delivered_once,
    server_errors_back_off_and_a_dead_webhook_is_marked_failing,
    a_storm_becomes_a_few_digests_that_account_for_every_event,
    queued_notifications_survive_a_sigkill_and_urls_stay_out_of_the_logs,
);

/// Fast polling; everything else at its default unless a test says so.
const POLL: (&str, &str) = ("SLACK_POLL_INTERVAL", "20ms");

/// A tenant's three webhooks on `receiver`, each path ending in a secret.
struct Hooks {
    general: String,
    audit: String,
    hitl: String,
}

impl Hooks {
    fn new(tenant: &str) -> Self {
        let secret = uuid::Uuid::new_v4().simple().to_string();
        Self {
            general: format!("/services/{tenant}/general/G{secret}"),
            audit: format!("/services/{tenant}/audit/A{secret}"),
            hitl: format!("/services/{tenant}/hitl/H{secret}"),
        }
    }

    fn path(&self, channel: Channel) -> &str {
        match channel {
            Channel::General => &self.general,
            Channel::Audit => &self.audit,
            Channel::Hitl => &self.hitl,
        }
    }

    /// The secret parts, which must never show in logs or responses.
    fn secrets(&self) -> Vec<String> {
        [&self.general, &self.audit, &self.hitl]
            .iter()
            .map(|p| p.rsplit('/').next().unwrap().to_owned())
            .collect()
    }
}

async fn set_hooks(admin: &As<'_>, receiver: &Receiver, hooks: &Hooks) {
    admin
        .expect(
            200,
            admin
                .patch(
                    "/api/v1/tenant/settings",
                    &json!({
                        "slack_webhook_url": receiver.url(&hooks.general),
                        "slack_audit_webhook_url": receiver.url(&hooks.audit),
                        "hitl_webhook_url": receiver.url(&hooks.hitl),
                        "approval_threshold": 50_000,
                    }),
                )
                .await,
        )
        .await;
}

/// Waits until no outbox row is pending.
async fn drained(store: &Store, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let depth = store.slack_depth().await.unwrap();
        if depth == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{depth} notifications still pending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(store: &Store, n: &Notification) -> (String, i32, Option<String>) {
    store
        .outbox_status(&n.id.to_string())
        .await
        .unwrap()
        .expect("an outbox row")
}

async fn enqueue(store: &Store, tenant: Option<&str>, event: NotificationEvent) -> Notification {
    let n = Notification::new(
        tenant.map(str::to_owned),
        event,
        Utc::now().trunc_subsecs(6),
    );
    store.enqueue_notification(&n).await.unwrap();
    n
}

fn failed_operation(error: String) -> NotificationEvent {
    NotificationEvent::OperationFailed {
        operation: "sync_creatives".into(),
        principal_id: Some("p_1".into()),
        error,
    }
}

/// Slack's limits, checked on what actually arrived.
fn assert_within_slack_limits(message: &Received) {
    let body = message.json();
    let text = body["text"].as_str().unwrap_or_default();
    assert!(!text.is_empty(), "no fallback text: {body}");
    let blocks = body["blocks"].as_array().expect("blocks");
    assert!(blocks.len() <= 50, "{} blocks", blocks.len());
    for block in blocks {
        if block["type"] == "section" {
            if let Some(text) = block["text"]["text"].as_str() {
                assert!(text.chars().count() <= 3_000, "a section of {}", text.len());
            }
            for field in block["fields"].as_array().into_iter().flatten() {
                assert!(field["text"].as_str().unwrap().chars().count() <= 2_000);
            }
        }
    }
    let chars = String::from_utf8(message.raw.clone())
        .unwrap()
        .chars()
        .count();
    assert!(chars < 12_000, "a message of {chars} characters");
}

/// Waits for at least `n` messages on `path` whose header contains `needle`.
async fn with_header(receiver: &Receiver, path: &str, needle: &str, n: usize) -> Vec<Received> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got: Vec<Received> = receiver
            .received(path)
            .into_iter()
            .filter(|m| header(m).contains(needle))
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} on {path}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header(message: &Received) -> String {
    message.json()["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn every_event_reaches_its_channel_and_no_other_within_slack_limits(backend: Backend) {
    let receiver = Receiver::start();
    let default_general = "/services/system/general/SYSTEMSECRET";
    let app = spawn_app_with(
        backend,
        &[
            POLL,
            ("SLACK_RATE_PER_SECOND", "200"),
            ("SLACK_BURST", "50"),
            ("SLACK_DIGEST_THRESHOLD", "1000"),
            ("ADMIN_UI_URL", "https://ops.example.com/admin"),
            ("SLACK_WEBHOOK_URL", &receiver.url(default_general)),
        ],
    )
    .await;
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    // What was queued before the webhooks existed had nowhere to go.
    drained(&app.store, Duration::from_secs(10)).await;
    let before = app.store.outbox(0, 10_000).await.unwrap().len();
    let hooks = Hooks::new("acme");
    set_hooks(&admin, &receiver, &hooks).await;

    // The API's own events: exactly 10,000 is not high-value, 10,000.01 is;
    // 60,000 needs approval (human-in-the-loop) and is high-value too.
    let mut buys = Vec::new();
    for budget in [10_000.0, 10_000.01, 60_000.0] {
        let buy = buyer
            .expect(
                201,
                buyer
                    .post("/api/v1/media-buys", &media_buy(budget, &[]))
                    .await,
            )
            .await;
        buys.push(buy["media_buy_id"].as_str().unwrap().to_owned());
        if let Some(workflow) = buy["workflow_id"].as_str() {
            // A human approves it (general).
            admin
                .expect(
                    200,
                    admin
                        .post(&format!("/api/v1/workflows/{workflow}/approve"), &json!({}))
                        .await,
                )
                .await;
        }
    }
    // A reviewer rejects a creative, a buyer changes a buy (audit), and
    // another service reports a failed operation (audit, after its row
    // is committed).
    buyer
        .expect(
            200,
            buyer
                .post(
                    "/api/v1/creatives",
                    &json!({"creatives": [{"creative_id": "cr-1", "name": "Banner",
                        "format": "display_300x250", "url": "https://cdn.example/a.png"}]}),
                )
                .await,
        )
        .await;
    admin
        .expect(
            200,
            admin
                .post(
                    "/api/v1/creatives/cr-1/reject",
                    &json!({"reason": "brand safety"}),
                )
                .await,
        )
        .await;
    buyer
        .expect(
            200,
            buyer
                .patch(
                    &format!("/api/v1/media-buys/{}", buys[0]),
                    &json!({"paused": true}),
                )
                .await,
        )
        .await;
    // A failure of a tenant with no audit webhook is not even queued (it is
    // reported first: when acme's notice is there, this one was handled).
    let root = As::admin(&app);
    root.expect(
        201,
        root.post("/api/v1/tenants", &json!({"id": "quiet", "name": "Quiet"}))
            .await,
    )
    .await;
    let reported = app
        .post_json_as_admin(
            "/api/v1/audit/events",
            &json!({"tenant_id": "quiet", "operation": "sync_inventory", "success": false}),
        )
        .await;
    assert_eq!(reported.status(), 202);
    let reported = app
        .post_json_as_admin(
            "/api/v1/audit/events",
            &json!({"tenant_id": "acme", "operation": "sync_inventory", "success": false,
                    "error": "upstream timed out"}),
        )
        .await;
    assert_eq!(reported.status(), 202);
    // One of every other kind, straight into the outbox, one with a
    // 20,000-character error.
    for event in one_of_each() {
        enqueue(&app.store, Some("acme"), event).await;
    }
    enqueue(
        &app.store,
        Some("acme"),
        failed_operation("x".repeat(20_000)),
    )
    .await;
    // A system event goes to the service-wide webhook; a tenant with no
    // webhooks gets nothing, and nothing fails.
    let system = enqueue(
        &app.store,
        None,
        NotificationEvent::AlertResolved {
            rule: "database_unhealthy".into(),
            severity: "critical".into(),
            channel: "general".into(),
            summary: "the database answers again".into(),
        },
    )
    .await;
    let quiet = enqueue(
        &app.store,
        Some("quiet"),
        NotificationEvent::ConfigurationChanged {
            target: "settings".into(),
            changed: vec!["timezone".into()],
            actor: "admin".into(),
            privilege: false,
        },
    )
    .await;
    // The failure notice is queued once its row is committed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !kinds_after(&app.store, before)
        .await
        .contains("operation_failed")
    {
        assert!(std::time::Instant::now() < deadline, "no failure notice");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drained(&app.store, Duration::from_secs(20)).await;
    let kinds = kinds_after(&app.store, before).await;
    for kind in [
        "media_buy_created",
        "approval_required",
        "high_value_transaction",
        "workflow_approved",
        "creative_pending_review",
        "creative_reviewed",
        "media_buy_updated",
        "operation_failed",
        "configuration_changed",
    ] {
        assert!(kinds.contains(kind), "no {kind} from the API: {kinds:?}");
    }

    // Every outbox row of acme arrived once, on the channel the table names.
    let rows = app.store.outbox(0, 10_000).await.unwrap();
    let mut expected: HashMap<String, &str> = HashMap::new();
    for row in rows[before..]
        .iter()
        .filter(|r| r.tenant_id.as_deref() == Some("acme"))
    {
        let event: NotificationEvent = serde_json::from_str(&row.payload).unwrap();
        expected.insert(
            row.notification_id.clone(),
            hooks.path(route(&event).channel),
        );
    }
    assert!(
        expected.len() >= one_of_each().len() + 5,
        "{}",
        expected.len()
    );
    let received: Vec<Received> = receiver
        .all()
        .into_iter()
        .filter(|r| r.path != default_general)
        .collect();
    let mut seen = HashSet::new();
    for message in &received {
        assert_within_slack_limits(message);
        let reference = message.reference().expect("a ref in the context line");
        assert!(
            seen.insert(reference.clone()),
            "{reference} delivered twice"
        );
        assert_eq!(
            expected.get(&reference).copied(),
            Some(message.path.as_str()),
            "{reference} arrived on the wrong webhook"
        );
        assert_eq!(message.headers["content-type"], "application/json");
    }
    assert_eq!(seen.len(), expected.len(), "every notification arrived");

    // Approvals reach the human in the loop; one high-value alert, for 10,000.01.
    let hitl = receiver.received(&hooks.hitl);
    assert!(hitl.iter().any(|m| header(m).contains("Approval required")));
    let high_value: Vec<Value> = receiver
        .received(&hooks.audit)
        .iter()
        .filter(|m| header(m).contains("High-value"))
        .map(Received::json)
        .collect();
    // The sample event (mb_1), the API's 10,000.01 and its 60,000.
    assert_eq!(high_value.len(), 3, "{high_value:?}");
    let about = |id: &str| {
        high_value
            .iter()
            .filter(|m| m.to_string().contains(id))
            .count()
    };
    assert_eq!(about(&buys[0]), 0, "exactly 10,000 is not high-value");
    assert_eq!(about(&buys[1]), 1);
    assert_eq!(about(&buys[2]), 1);
    assert!(
        high_value
            .iter()
            .any(|m| m.to_string().contains("$10,000.01"))
    );
    // Buttons lead to the dashboard.
    assert!(received.iter().all(|m| {
        m.json()
            .to_string()
            .contains("https://ops.example.com/admin/")
    }));

    let system_messages = receiver.received(default_general);
    assert_eq!(system_messages.len(), 1);
    assert_eq!(system_messages[0].reference(), Some(system.id.to_string()));
    assert_eq!(status_of(&app.store, &quiet).await.0, "skipped");
    let rows = app.store.outbox(0, 10_000).await.unwrap();
    let quiet_rows: Vec<&str> = rows
        .iter()
        .filter(|r| r.tenant_id.as_deref() == Some("quiet"))
        .map(|r| r.kind.as_str())
        .collect();
    assert!(quiet_rows.contains(&"configuration_changed"));
    assert!(!quiet_rows.contains(&"operation_failed"), "{quiet_rows:?}");
}

/// Kinds of the outbox rows after the first `before`.
async fn kinds_after(store: &Store, before: usize) -> HashSet<String> {
    store.outbox(0, 10_000).await.unwrap()[before..]
        .iter()
        .map(|r| r.kind.clone())
        .collect()
}

/// A fresh app on a manual clock, and a tenant "acme" with its webhooks.
async fn on_a_manual_clock(
    backend: Backend,
    vars: &[(&str, &str)],
) -> (TestApp, ManualClock, Receiver, Hooks) {
    let clock = ManualClock::new(Utc::now());
    let receiver = Receiver::start();
    let mut all = vec![POLL];
    all.extend_from_slice(vars);
    let app = spawn_app_with_clock(backend, &all, clock.clone()).await;
    let hooks = Hooks::new("acme");
    {
        let root = As::admin(&app);
        root.expect(
            201,
            root.post("/api/v1/tenants", &json!({"id": "acme", "name": "Acme"}))
                .await,
        )
        .await;
        let admin = crate::domain::admin_token(&app, "acme").await;
        // Only the general webhook at first: the settings change itself is
        // an audit-channel event with nowhere to go, so it is skipped.
        admin
            .expect(
                200,
                admin
                    .patch(
                        "/api/v1/tenant/settings",
                        &json!({"slack_webhook_url": receiver.url(&hooks.general)}),
                    )
                    .await,
            )
            .await;
    }
    drained(&app.store, Duration::from_secs(10)).await;
    assert!(receiver.all().is_empty());
    (app, clock, receiver, hooks)
}

fn created(i: usize) -> NotificationEvent {
    NotificationEvent::MediaBuyCreated {
        media_buy_id: format!("mb_{i}"),
        principal_id: "p_1".into(),
        order_name: format!("Order {i}"),
        budget: 1_000.0,
        currency: "USD".into(),
        status: "pending_activation".into(),
    }
}

const QUIET: Duration = Duration::from_millis(300);

async fn one_message_per_second_per_webhook_after_a_burst(backend: Backend) {
    let (app, clock, receiver, hooks) = on_a_manual_clock(backend, &[]).await;
    for i in 0..10 {
        enqueue(&app.store, Some("acme"), created(i)).await;
    }
    // The burst of 3, then nothing until a second has passed.
    receiver
        .wait_for(&hooks.general, 3, Duration::from_secs(5))
        .await;
    receiver.still(&hooks.general, 3, QUIET).await;
    clock.advance(Duration::from_millis(900));
    receiver.still(&hooks.general, 3, QUIET).await;
    clock.advance(Duration::from_millis(100));
    receiver
        .wait_for(&hooks.general, 4, Duration::from_secs(5))
        .await;
    receiver.still(&hooks.general, 4, QUIET).await;

    // Another tenant's webhook is paced on its own: its burst goes now.
    let other = Hooks::new("globex");
    let root = As::admin(&app);
    root.expect(
        201,
        root.post(
            "/api/v1/tenants",
            &json!({"id": "globex", "name": "Globex"}),
        )
        .await,
    )
    .await;
    let admin = crate::domain::admin_token(&app, "globex").await;
    admin
        .expect(
            200,
            admin
                .patch(
                    "/api/v1/tenant/settings",
                    &json!({"slack_webhook_url": receiver.url(&other.general)}),
                )
                .await,
        )
        .await;
    for i in 0..3 {
        enqueue(&app.store, Some("globex"), created(100 + i)).await;
    }
    receiver
        .wait_for(&other.general, 3, Duration::from_secs(5))
        .await;
    receiver.still(&hooks.general, 4, QUIET).await;

    // One a second for the rest, in order, each once.
    for expected in 5..=10 {
        clock.advance(Duration::from_secs(1));
        receiver
            .wait_for(&hooks.general, expected, Duration::from_secs(5))
            .await;
        receiver
            .still(&hooks.general, expected, Duration::from_millis(100))
            .await;
    }
    let orders: Vec<String> = receiver
        .received(&hooks.general)
        .iter()
        .map(|m| m.json()["text"].as_str().unwrap().to_owned())
        .collect();
    for (i, text) in orders.iter().enumerate() {
        assert!(text.contains(&format!("Order {i}")), "{i}: {text}");
    }
    drained(&app.store, Duration::from_secs(5)).await;
}

async fn a_429_waits_for_retry_after_and_the_message_is_delivered_once(backend: Backend) {
    let (app, clock, receiver, hooks) = on_a_manual_clock(backend, &[]).await;
    receiver.script(&hooks.general, [Reply::too_many("3")]);
    let n = enqueue(&app.store, Some("acme"), created(1)).await;
    receiver
        .wait_for(&hooks.general, 1, Duration::from_secs(5))
        .await;
    clock.advance(Duration::from_millis(2_900));
    receiver.still(&hooks.general, 1, QUIET).await;
    assert_eq!(status_of(&app.store, &n).await.0, "pending");

    // The wait counts from the answer (the request's own milliseconds
    // included): at 3.3 s it has passed.
    clock.advance(Duration::from_millis(400));
    let got = receiver
        .wait_for(&hooks.general, 2, Duration::from_secs(5))
        .await;
    assert_eq!(got[1].raw, got[0].raw, "the same message again");
    assert_eq!(got[1].answered, 200);
    drained(&app.store, Duration::from_secs(5)).await;
    clock.advance(Duration::from_secs(60));
    receiver.still(&hooks.general, 2, QUIET).await;
    let (status, attempts, _) = status_of(&app.store, &n).await;
    assert_eq!(
        (status.as_str(), attempts),
        ("sent", 1),
        "a 429 uses no attempt"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for metric in [
        "slack_rate_limited_total",
        "slack_queue_depth",
        "slack_notifications_total{channel=\"general\",result=\"sent\"}",
        "slack_notifications_total{channel=\"general\",result=\"rate_limited\"}",
    ] {
        assert!(metrics.contains(metric), "no {metric} in {metrics}");
    }
}

async fn server_errors_back_off_and_a_dead_webhook_is_marked_failing(backend: Backend) {
    let (app, clock, receiver, hooks) = on_a_manual_clock(backend, &[]).await;

    // 500, 500, 200: backoff of 2 s then 4 s (±20 %), delivered once.
    receiver.script(
        &hooks.general,
        [Reply::status(500, "oops"), Reply::status(500, "oops")],
    );
    let n = enqueue(&app.store, Some("acme"), created(1)).await;
    receiver
        .wait_for(&hooks.general, 1, Duration::from_secs(5))
        .await;
    clock.advance(Duration::from_millis(1_500));
    receiver.still(&hooks.general, 1, QUIET).await;
    clock.advance(Duration::from_millis(1_400));
    receiver
        .wait_for(&hooks.general, 2, Duration::from_secs(5))
        .await;
    clock.advance(Duration::from_millis(3_000));
    receiver.still(&hooks.general, 2, QUIET).await;
    clock.advance(Duration::from_millis(2_500));
    let got = receiver
        .wait_for(&hooks.general, 3, Duration::from_secs(5))
        .await;
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    drained(&app.store, Duration::from_secs(5)).await;
    assert_eq!(status_of(&app.store, &n).await.0, "sent");
    assert_eq!(status_of(&app.store, &n).await.1, 3);

    // The audit webhook is configured now, and the general one answers
    // 404 no_service: no retry, the webhook is failing, and the audit
    // channel is told.
    let admin = crate::domain::admin_token(&app, "acme").await;
    admin
        .expect(
            200,
            admin
                .patch(
                    "/api/v1/tenant/settings",
                    &json!({"slack_audit_webhook_url": receiver.url(&hooks.audit)}),
                )
                .await,
        )
        .await;
    receiver.set_default(&hooks.general, Reply::status(404, "no_service"));
    let dead = enqueue(&app.store, Some("acme"), created(2)).await;
    receiver
        .wait_for(&hooks.general, 4, Duration::from_secs(5))
        .await;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(60));
    }
    receiver.still(&hooks.general, 4, QUIET).await;
    let (status, attempts, error) = status_of(&app.store, &dead).await;
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(error.unwrap().contains("no_service"));

    let (_, health) = app.health_details().await;
    let failing = &health["components"]["slack"]["failing"];
    assert_eq!(failing.as_array().unwrap().len(), 1, "{health}");
    assert_eq!(failing[0]["channel"], "general");
    assert_eq!(failing[0]["status"], 404);
    assert_eq!(failing[0]["tenant_id"], "acme");
    assert!(failing[0]["webhook"].as_str().unwrap().ends_with("/****"));
    for secret in hooks.secrets() {
        assert!(
            !health.to_string().contains(&secret),
            "a webhook URL in /health"
        );
    }
    let audited = crate::audit::wait_for_rows(&app.store, &["slack_webhook_failing"], 1).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].event.tenant_id.as_deref(), Some("acme"));
    let notices = with_header(&receiver, &hooks.audit, "Webhook failing", 1).await;
    assert!(notices[0].json().to_string().contains("no_service"));
    assert!(!notices[0].json().to_string().contains(&hooks.secrets()[0]));

    // A second failure does not announce it again.
    enqueue(&app.store, Some("acme"), created(3)).await;
    clock.advance(Duration::from_secs(5));
    receiver
        .wait_for(&hooks.general, 5, Duration::from_secs(5))
        .await;
    drained(&app.store, Duration::from_secs(5)).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        with_header(&receiver, &hooks.audit, "Webhook failing", 1)
            .await
            .len(),
        1
    );
}

async fn a_storm_becomes_a_few_digests_that_account_for_every_event(backend: Backend) {
    let (app, clock, receiver, hooks) = on_a_manual_clock(backend, &[]).await;
    let mut ids = HashSet::new();
    for i in 0..200 {
        let event = if i % 4 == 0 {
            created(i)
        } else {
            NotificationEvent::AlertFiring {
                rule: "high_error_rate".into(),
                severity: "high".into(),
                channel: "general".into(),
                summary: format!("error rate {i}"),
                value: 7.5,
                threshold: 5.0,
                reminder: false,
            }
        };
        ids.insert(
            enqueue(&app.store, Some("acme"), event)
                .await
                .id
                .to_string(),
        );
    }
    // A second at a time until all is sent: leftovers that arrived after a
    // digest go one a second (at most the threshold of them).
    for _ in 0..40 {
        if app.store.slack_depth().await.unwrap() == 0 {
            break;
        }
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    drained(&app.store, Duration::from_secs(10)).await;

    let posts = receiver.received(&hooks.general);
    assert!(posts.len() <= 20, "{} posts for 200 events", posts.len());
    assert!(
        posts.iter().any(|p| header(p).contains("Digest: ")),
        "no digest among {} posts",
        posts.len()
    );
    let mut accounted = 0;
    for post in &posts {
        assert_within_slack_limits(post);
        let header = header(post);
        if let Some(rest) = header.split("Digest: ").nth(1) {
            let n: usize = rest.split(' ').next().unwrap().parse().unwrap();
            let text = post.json()["text"].as_str().unwrap().to_owned();
            assert!(text.starts_with(&format!("{n} events")), "{text}");
            accounted += n;
        } else {
            assert!(ids.contains(&post.reference().unwrap()));
            accounted += 1;
        }
    }
    assert_eq!(accounted, 200, "every event is in some message");
    let rows = app.store.outbox(0, 10_000).await.unwrap();
    let sent = rows
        .iter()
        .filter(|r| ids.contains(&r.notification_id))
        .count();
    assert_eq!(sent, 200);
    for id in &ids {
        let (status, _, _) = app.store.outbox_status(id).await.unwrap().unwrap();
        assert_eq!(status, "sent");
    }
}

async fn queued_notifications_survive_a_sigkill_and_urls_stay_out_of_the_logs(backend: Backend) {
    let receiver = Receiver::start();
    let hooks = Hooks::new("acme");
    // Slack is down at first: every post gets 503.
    receiver.set_default(&hooks.audit, Reply::status(503, "down"));
    let db = TestDatabase::new(backend).await;
    let workdir = tempfile::tempdir().unwrap();
    let token = "a-test-admin-token-of-at-least-32-characters";
    let vars = [
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_TOKEN", token),
        ("SLACK_POLL_INTERVAL", "50ms"),
        ("SLACK_RETRY_BASE", "200ms"),
        ("SLACK_RATE_PER_SECOND", "50"),
        ("SLACK_BURST", "20"),
        ("SLACK_DIGEST_THRESHOLD", "100"),
        // A send cut off by the kill holds its lease this long.
        ("SLACK_LEASE", "1s"),
        // The receiver is on 127.0.0.1, behind the outbound guard.
        ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
    ];
    let mut service = ServiceProcess::start(workdir.path(), &vars);
    let base = service.base_url().await;
    let api = crate::helpers::BinaryClient::new(&base);
    api.post(
        "/api/v1/tenants",
        token,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    let admin = api
        .post("/api/v1/tenants/acme/admin-tokens", token, json!({}))
        .await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    let settings = api
        .send(
            reqwest::Method::PATCH,
            "/api/v1/tenant/settings",
            &admin,
            json!({"slack_audit_webhook_url": receiver.url(&hooks.audit)}),
        )
        .await
        .to_string();
    // Five principals: five configuration changes for the audit webhook.
    for i in 0..5 {
        api.post(
            "/api/v1/principals",
            &admin,
            json!({"name": format!("Buyer {i}")}),
        )
        .await;
    }
    // The first message is tried again and again (the ones after it wait
    // their turn, in order); kill the service in the middle of that.
    receiver
        .wait_for(&hooks.audit, 3, Duration::from_secs(10))
        .await;
    service.send_sigkill();
    service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("killed");
    let before: HashSet<String> = receiver
        .received(&hooks.audit)
        .iter()
        .filter_map(Received::reference)
        .collect();
    assert!(!before.is_empty());

    // Slack is back; the service restarts on the same database.
    receiver.set_default(&hooks.audit, Reply::ok());
    let mut restarted = ServiceProcess::start(workdir.path(), &vars);
    restarted.base_url().await;
    let config = crate::helpers::config_from(&[("DATABASE_URL", db.url.as_str())]);
    let store = Store::open(&config.database).unwrap();
    drained(&store, Duration::from_secs(20)).await;

    // Every notification tried before the kill was delivered after it, and
    // no receiver acknowledged one twice.
    let acknowledged: Vec<String> = receiver
        .received(&hooks.audit)
        .iter()
        .filter(|r| r.answered == 200)
        .filter_map(Received::reference)
        .collect();
    let distinct: HashSet<String> = acknowledged.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "acknowledged twice: {acknowledged:?}"
    );
    assert!(
        before.is_subset(&distinct),
        "{before:?} not all in {distinct:?}"
    );
    assert!(
        distinct.len() >= 6,
        "the settings change and five principals: {distinct:?}"
    );
    // And the outbox agrees: what was acknowledged is `sent`, the rest had
    // no webhook when it was queued (`skipped`).
    for row in store.outbox(0, 1_000).await.unwrap() {
        let (status, _, _) = store
            .outbox_status(&row.notification_id)
            .await
            .unwrap()
            .unwrap();
        let expected = if distinct.contains(&row.notification_id) {
            "sent"
        } else {
            "skipped"
        };
        assert_eq!(status, expected, "{} ({})", row.notification_id, row.kind);
    }

    // No log line and no response carries the webhook's secret part.
    let secret = &hooks.secrets()[1];
    assert!(!settings.contains(secret.as_str()), "{settings}");
    for output in [service.all_output(), restarted.all_output()] {
        assert!(output.contains("slack"), "the router logged nothing");
        assert!(
            !output.contains(secret.as_str()),
            "a webhook URL in the logs"
        );
    }
}

/// One event of every routed kind.
fn one_of_each() -> Vec<NotificationEvent> {
    let kinds: Vec<&str> = overseer_actors::slack::route::ROUTES
        .iter()
        .map(|r| r.kind)
        .collect();
    let s = |v: &str| v.to_owned();
    let events = vec![
        created(0),
        NotificationEvent::ApprovalRequired {
            media_buy_id: s("mb_1"),
            workflow_id: s("wf_1"),
            principal_id: s("p_1"),
            order_name: s("Spring"),
            budget: 50_000.0,
            currency: s("USD"),
            threshold: 25_000.0,
        },
        NotificationEvent::MediaBuyActivated {
            media_buy_id: s("mb_1"),
            principal_id: s("p_1"),
            order_name: s("Spring"),
            reason: s("flight started"),
        },
        NotificationEvent::MediaBuyCompleted {
            media_buy_id: s("mb_1"),
            principal_id: s("p_1"),
            order_name: s("Spring"),
            reason: s("flight ended"),
        },
        NotificationEvent::MediaBuyFailed {
            media_buy_id: s("mb_1"),
            principal_id: s("p_1"),
            order_name: s("Spring"),
            error: s("refused"),
        },
        NotificationEvent::MediaBuyUpdated {
            media_buy_id: s("mb_1"),
            principal_id: s("p_1"),
            changed: vec![s("budget")],
            actor: s("p_1"),
        },
        NotificationEvent::CreativePendingReview {
            principal_id: s("p_1"),
            creative_ids: vec![s("cr_1")],
        },
        NotificationEvent::CreativeReviewed {
            creative_id: s("cr_1"),
            principal_id: s("p_1"),
            decision: s("approved"),
            actor: s("admin"),
            reason: None,
        },
        NotificationEvent::WorkflowApproved {
            workflow_id: s("wf_1"),
            media_buy_id: s("mb_1"),
            decided_by: s("admin"),
            comment: None,
        },
        NotificationEvent::WorkflowRejected {
            workflow_id: s("wf_1"),
            media_buy_id: s("mb_1"),
            decided_by: s("admin"),
            comment: Some(s("no")),
        },
        NotificationEvent::ConfigurationChanged {
            target: s("principal"),
            changed: vec![s("token")],
            actor: s("admin"),
            privilege: false,
        },
        failed_operation(s("timeout")),
        NotificationEvent::HighValueTransaction {
            media_buy_id: s("mb_1"),
            principal_id: s("p_1"),
            budget: 10_000.01,
            currency: s("USD"),
        },
        NotificationEvent::SecurityViolation {
            violation_type: s("failed_auth_threshold"),
            severity: s("high"),
            subject: s("203.0.113.9"),
            reason: s("5 failures"),
            resource_id: None,
            count: 5,
        },
        NotificationEvent::AlertFiring {
            rule: s("approvals_pending"),
            severity: s("warning"),
            channel: s("hitl"),
            summary: s("2 approvals pending > 24 h"),
            value: 2.0,
            threshold: 0.0,
            reminder: false,
        },
        NotificationEvent::AlertResolved {
            rule: s("high_error_rate"),
            severity: s("high"),
            channel: s("general"),
            summary: s("back to normal"),
        },
        NotificationEvent::WebhookFailing {
            target: s("buyer"),
            endpoint: s("https://buyer.example/****"),
            reason: s("HTTP 410"),
            status: Some(410),
        },
    ];
    let covered: HashSet<&str> = events.iter().map(NotificationEvent::kind).collect();
    for kind in kinds {
        assert!(covered.contains(kind), "no sample of {kind}");
    }
    events
}
