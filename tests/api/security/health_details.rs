//! Anonymous `/health` (issue 22, item 7): a load balancer, an orchestrator
//! or a stranger sees the verdict and each component's state, never which
//! tenant's webhook is failing, where it points or what it answered. The
//! super admin's token and `HEALTH_DETAILS_TOKEN` read the details.

use std::time::{Duration, Instant};

use chrono::Utc;
use overseer_actors::notify::{Notification, NotificationEvent};
use serde_json::{Value, json};

use crate::domain::{As, admin_token};
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with};
use crate::receiver::{Receiver, Reply};

on_both_backends!(
    anonymous_health_names_no_tenant_while_its_webhook_is_failing,
    the_details_need_the_super_admin_or_the_details_token,
);

/// `HEALTH_DETAILS_TOKEN` of these tests.
const DETAILS_TOKEN: &str = "monitor-5f0c2a9d8e7b4c1aa3d6e9f2b5c8a1d4";
/// A tenant id found nowhere else in a health report.
const TENANT: &str = "initech";
/// What the dead webhook answers: an error text that must stay private.
const SLACK_ANSWER: &str = "no_service_for_initech_workspace";

/// The application with `initech`'s Slack webhook marked failing (a real
/// receiver answering 404, a permanent error), and the receiver.
async fn with_a_failing_tenant_webhook(backend: Backend) -> (TestApp, Receiver) {
    let receiver = Receiver::start();
    let app = spawn_app_with(
        backend,
        &[
            ("SLACK_POLL_INTERVAL", "20ms"),
            ("HEALTH_DETAILS_TOKEN", DETAILS_TOKEN),
        ],
    )
    .await;
    let root = As::admin(&app);
    root.expect(
        201,
        root.post("/api/v1/tenants", &json!({"id": TENANT, "name": "Initech"}))
            .await,
    )
    .await;
    let hook = format!(
        "/services/{TENANT}/general/G{}",
        uuid::Uuid::new_v4().simple()
    );
    receiver.set_default(&hook, Reply::status(404, SLACK_ANSWER));
    let admin = admin_token(&app, TENANT).await;
    admin
        .expect(
            200,
            admin
                .patch(
                    "/api/v1/tenant/settings",
                    &json!({"slack_webhook_url": receiver.url(&hook)}),
                )
                .await,
        )
        .await;
    let note = Notification::new(
        Some(TENANT.to_owned()),
        NotificationEvent::MediaBuyCreated {
            media_buy_id: "mb_1".into(),
            principal_id: "p_1".into(),
            order_name: "Order 1".into(),
            budget: 1_000.0,
            currency: "USD".into(),
            status: "pending_activation".into(),
        },
        Utc::now(),
    );
    app.store.enqueue_notification(&note).await.unwrap();
    receiver.wait_for(&hook, 1, Duration::from_secs(10)).await;

    // The router marks it failing once the answer is in.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, details) = app.health_details().await;
        if details["components"]["slack"]["failing"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            break;
        }
        assert!(Instant::now() < deadline, "never marked failing: {details}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (app, receiver)
}

async fn health_with(app: &TestApp, token: Option<&str>) -> (u16, String) {
    let mut request = app.client.get(app.url("/health"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn anonymous_health_names_no_tenant_while_its_webhook_is_failing(backend: Backend) {
    let (app, receiver) = with_a_failing_tenant_webhook(backend).await;
    let host = receiver.url("/");
    let host = host
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();

    for path in ["/health", "/health/ready"] {
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let text = response.text().await.unwrap();
        for private in [
            TENANT,
            host.as_str(),
            "127.0.0.1",
            SLACK_ANSWER,
            "no_service",
        ] {
            assert!(!text.contains(private), "{path} shows {private:?}: {text}");
        }
        // Still a report a monitor can act on: the verdict, and the Slack
        // component saying one webhook is failing.
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["status"], "healthy", "{body}");
        assert_eq!(body["components"]["database"]["status"], "connected");
        let slack = &body["components"]["slack"];
        assert_eq!(slack["failing_webhooks"], 1, "{body}");
        assert!(slack.get("failing").is_none(), "{body}");
        assert!(body["components"]["actors"]["slack_router"]["status"].is_string());
    }
}

async fn the_details_need_the_super_admin_or_the_details_token(backend: Backend) {
    let (app, _receiver) = with_a_failing_tenant_webhook(backend).await;

    for token in [DETAILS_TOKEN, app.admin_token.as_str()] {
        let (status, text) = health_with(&app, Some(token)).await;
        assert_eq!(status, 200, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        let failing = &body["components"]["slack"]["failing"];
        assert_eq!(failing.as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(failing[0]["tenant_id"], TENANT);
        assert_eq!(failing[0]["channel"], "general");
        assert_eq!(failing[0]["status"], 404);
        assert!(
            failing[0]["reason"]
                .as_str()
                .unwrap()
                .contains(SLACK_ANSWER),
            "{body}"
        );
        assert!(
            failing[0]["webhook"]
                .as_str()
                .unwrap()
                .contains("127.0.0.1"),
            "{body}"
        );
        assert!(failing[0]["webhook"].as_str().unwrap().ends_with("/****"));
    }

    // A wrong token is refused like any wrong token; a tenant's token is
    // not the super admin's. Neither gets a word of the details.
    let tenant_admin = admin_token(&app, TENANT).await;
    for (token, expected) in [
        ("monitor-wrong-0000000000000000000000000000", 401),
        (DETAILS_TOKEN.trim_end_matches('4'), 401),
        (tenant_admin.token.as_str(), 403),
    ] {
        let (status, text) = health_with(&app, Some(token)).await;
        assert_eq!(status, expected, "{text}");
        assert!(!text.contains(SLACK_ANSWER), "{text}");
        assert!(!text.contains("127.0.0.1"), "{text}");
    }
}
