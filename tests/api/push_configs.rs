//! Push-notification configs: registration rules, write-only tokens, the
//! SSRF guard at registration, ownership.

use serde_json::{Value, json};

use crate::audit::stored;
use crate::domain::{As, principal, tenant_with_principal};
use crate::helpers::{Backend, on_both_backends, spawn_app_with};

on_both_backends!(
    a_principal_registers_lists_and_deletes_its_configs_and_never_sees_a_token,
    urls_that_lead_inside_are_refused_at_registration,
    production_refuses_none_and_plain_http,
);

const PATH: &str = "/api/v1/push-notification-configs";
const SECRET: &str = "hmac-secret-of-at-least-32-characters-SECRET";

fn config(url: &str, auth: &str, token: Option<&str>) -> Value {
    let mut body = json!({"url": url, "authentication_type": auth});
    if let Some(token) = token {
        body["authentication_token"] = json!(token);
    }
    body
}

async fn refused_field(caller: &As<'_>, body: &Value) -> String {
    let response = caller.post(PATH, body).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 422, "{body}: {text}");
    assert!(!text.contains(SECRET), "the secret in an error");
    let error: Value = serde_json::from_str(&text).unwrap();
    error["error"]["field"].as_str().unwrap().to_owned()
}

async fn a_principal_registers_lists_and_deletes_its_configs_and_never_sees_a_token(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32")]).await;
    let (admin, buyer, buyer_id) = tenant_with_principal(&app, "acme").await;
    let url = "http://127.0.0.1:9/hooks/delivery?sig=QUERYSECRET";
    let created = buyer
        .expect(
            201,
            buyer
                .post(PATH, &config(url, "hmac-sha256", Some(SECRET)))
                .await,
        )
        .await;
    assert_eq!(created["authentication_type"], "hmac-sha256");
    assert_eq!(created["authentication_token_set"], true);
    assert_eq!(created["status"], "active");
    assert_eq!(created["principal_id"], buyer_id.as_str());
    let id = created["id"].as_str().unwrap().to_owned();
    buyer
        .expect(
            201,
            buyer
                .post(PATH, &config("http://127.0.0.1:9/b", "bearer", Some("tok")))
                .await,
        )
        .await;

    let listed = buyer.get(PATH).await.text().await.unwrap();
    assert!(
        !listed.contains(SECRET) && !listed.contains("\"tok\""),
        "{listed}"
    );
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert_eq!(listed["items"][0]["id"], id.as_str());

    // The trail names the config with scheme, host and path only.
    let rows = stored(&app.store, &["create_push_notification_config"]).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].event.details["url"],
        "http://127.0.0.1:9/hooks/delivery"
    );
    assert!(!rows[0].event.details.to_string().contains("QUERYSECRET"));

    // Another principal of the same tenant neither sees nor deletes it.
    let (other, _) = principal(&admin, "Buyer Two").await;
    let theirs: Value = other.expect(200, other.get(PATH).await).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0);
    let response = other
        .send(reqwest::Method::DELETE, &format!("{PATH}/{id}"), None)
        .await;
    assert_eq!(response.status(), 404);
    // Admin tokens are not buyers.
    assert_eq!(admin.get(PATH).await.status(), 403);

    let response = buyer
        .send(reqwest::Method::DELETE, &format!("{PATH}/{id}"), None)
        .await;
    assert_eq!(response.status(), 204);
    let listed: Value = buyer.expect(200, buyer.get(PATH).await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        stored(&app.store, &["delete_push_notification_config"])
            .await
            .len(),
        1
    );

    // Registration rules.
    let short = "s".repeat(31);
    assert_eq!(
        refused_field(
            &buyer,
            &config("http://127.0.0.1:9/", "hmac-sha256", Some(&short))
        )
        .await,
        "authentication_token"
    );
    assert_eq!(
        refused_field(&buyer, &config("http://127.0.0.1:9/", "bearer", None)).await,
        "authentication_token"
    );
    assert_eq!(
        refused_field(
            &buyer,
            &config("http://127.0.0.1:9/", "basic", Some(SECRET))
        )
        .await,
        "authentication_type"
    );
    assert_eq!(
        refused_field(
            &buyer,
            &config("http://u:p@127.0.0.1:9/", "bearer", Some(SECRET))
        )
        .await,
        "url"
    );
    // The allowlist names 127.0.0.1 only.
    assert_eq!(
        refused_field(
            &buyer,
            &config("http://127.0.0.2:9/", "bearer", Some(SECRET))
        )
        .await,
        "url"
    );
}

async fn urls_that_lead_inside_are_refused_at_registration(backend: Backend) {
    let app = spawn_app_with(backend, &[("WEBHOOK_ALLOWED_CIDRS", "")]).await;
    let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://172.16.3.4/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
        "http://192.0.2.1/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:a9fe:a9fe]/hook",
        "http://[64:ff9b::7f00:1]/hook",
        "http://[2002:7f00:1::]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
    ] {
        let response = buyer.post(PATH, &config(url, "bearer", Some("tok"))).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "url", "{url}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("refused"),
            "{url}: {body}"
        );
    }
    let listed: Value = buyer.expect(200, buyer.get(PATH).await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
}

async fn production_refuses_none_and_plain_http(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("ENVIRONMENT", "production"),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
        ],
    )
    .await;
    let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
    assert_eq!(
        refused_field(&buyer, &config("https://127.0.0.1:9/", "none", None)).await,
        "authentication_type"
    );
    assert_eq!(
        refused_field(
            &buyer,
            &config("http://127.0.0.1:9/", "bearer", Some(SECRET))
        )
        .await,
        "url"
    );
    buyer
        .expect(
            201,
            buyer
                .post(
                    PATH,
                    &config("https://127.0.0.1:9/", "bearer", Some(SECRET)),
                )
                .await,
        )
        .await;
}
