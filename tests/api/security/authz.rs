//! Every route with every kind of caller (issue 22, item 1), generated: the
//! routes come from the running service's OpenAPI document, the expected
//! outcome from `overseer::http::authz::ROUTES`, so a route added later is
//! tried without a line here, and a handler whose extractor admits a kind
//! its row does not (or refuses one it admits) fails the walk.
//!
//! Nine callers: none, the super admin, acme's admin, ingest and adapter
//! tokens, two of acme's principals (A owns the objects the paths name),
//! and globex's admin and principal. What each may get:
//! - no credentials: 401 (anyone's routes excepted);
//! - a kind the route's rule does not admit: 403;
//! - an admitted kind that does not own the object the path names (another
//!   principal, another tenant): 404, as a missing object;
//! - otherwise anything but 401, 403 and 5xx (a 4xx about the input, or a
//!   409 because an earlier caller changed the object, is fine), and for an
//!   owned object not the outsider's 404.

use overseer::http::authz::{Kind, ROUTES, Tenancy, Who, rule_of};
use reqwest::Method;
use serde_json::{Value, json};

use crate::domain::{As, admin_token, media_buy, principal, tenant_with_principal};
use crate::helpers::{Backend, on_both_backends, spawn_app_with};

on_both_backends!(every_route_answers_every_kind_of_caller_as_the_table_says);

/// A caller of the walk.
struct Probe<'a> {
    name: &'static str,
    /// `None`: no credentials.
    kind: Option<Kind>,
    /// Acme, and (for a principal) principal A: owns the path's objects.
    owner: bool,
    client: Option<As<'a>>,
}

/// The objects the paths name, made in set-up, all acme's (and principal
/// A's where a principal owns them).
struct Objects {
    media_buy: String,
    creative: String,
    workflow: String,
    push_config: String,
    principal: String,
    run: String,
    /// A spare ingest token of acme's, for the token routes to revoke and rotate.
    token: String,
}

impl Objects {
    /// `path` with its parameters filled in.
    fn fill(&self, path: &str) -> String {
        let id = if path.starts_with("/api/v1/media-buys/") {
            &self.media_buy
        } else if path.starts_with("/api/v1/creatives/") {
            &self.creative
        } else if path.starts_with("/api/v1/workflows/") {
            &self.workflow
        } else {
            &self.push_config
        };
        path.replace("{id}", id)
            .replace("{principal_id}", &self.principal)
            .replace("{tenant_id}", "acme")
            .replace("{run_id}", &self.run)
            .replace("{token_id}", &self.token)
            // No failed webhook request to retry: the owner's answer is a
            // 404 about the request, not the buy (checked below).
            .replace("{webhook_id}", "999999")
    }
}

/// A minimal valid body for the routes that read one.
fn body(method: &str, path: &str) -> Option<Value> {
    let body = match (method, path) {
        ("POST", "/api/v1/tenants") => json!({"id": "newco", "name": "Newco"}),
        ("PATCH", "/api/v1/tenants/{tenant_id}") => json!({"name": "Acme Inc"}),
        ("PATCH", "/api/v1/tenant/settings") => json!({"approval_threshold": 1000}),
        ("POST", "/api/v1/principals") => json!({"name": "Probe"}),
        ("POST", "/api/v1/media-buys") => media_buy(100.0, &[]),
        ("PATCH", "/api/v1/media-buys/{id}") => json!({"order_name": "Renamed"}),
        ("POST", "/api/v1/media-buys/{id}/delivery") => json!({"rows": [
            {"package_id": "pkg-a", "date": "2027-03-02", "impressions": 10, "clicks": 1, "spend": 1}
        ]}),
        ("POST", "/api/v1/creatives") => json!({"creatives": [
            {"creative_id": "cr-probe", "name": "Banner", "format": "display_300x250", "url": "https://cdn.example/a.png"}
        ]}),
        ("POST", "/api/v1/push-notification-configs") => {
            json!({"url": "http://127.0.0.1:9/hook", "authentication_type": "none"})
        }
        ("POST", "/api/v1/audit/events") => json!({"operation": "authz_probe", "success": true}),
        ("POST", "/api/v1/agent-runs") => json!({"agent": "planner", "objective": "probe"}),
        ("POST", "/api/v1/agent-runs/{run_id}/finish") => json!({"status": "succeeded"}),
        ("POST", _) | ("PATCH", _) => json!({}),
        _ => return None,
    };
    Some(body)
}

async fn token(root: &As<'_>, tenant: &str, kind: &str) -> String {
    let created = root
        .expect(
            201,
            root.post(
                &format!("/api/v1/tenants/{tenant}/{kind}-tokens"),
                &json!({}),
            )
            .await,
        )
        .await;
    created["token"].as_str().unwrap().to_owned()
}

async fn every_route_answers_every_kind_of_caller_as_the_table_says(backend: Backend) {
    // Every anonymous call is a failed authentication of 127.0.0.1: the
    // threshold is raised so the walk sees each route's own 401, not the
    // address's cool-down (tested in `security::anonymous`).
    let app = spawn_app_with(
        backend,
        &[
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
            ("SECURITY_FAILED_AUTH_THRESHOLD", "100000"),
        ],
    )
    .await;
    let root = As::admin(&app);
    let (admin, buyer_a, _) = tenant_with_principal(&app, "acme").await;
    let (buyer_b, _) = principal(&admin, "Buyer Two").await;
    let (_, victim) = principal(&admin, "Buyer Three").await;
    let ingest = As::token(&app, &token(&root, "acme", "ingest").await);
    let adapter = As::token(&app, &token(&root, "acme", "adapter").await);
    let (_, other_buyer, _) = tenant_with_principal(&app, "globex").await;
    let other_admin = admin_token(&app, "globex").await;
    let objects = set_up(&root, &admin, &buyer_a, victim).await;

    let probes = [
        probe("none", None, false, None),
        probe("super admin", Some(Kind::SuperAdmin), true, Some(root)),
        probe("ingest", Some(Kind::Ingest), true, Some(ingest)),
        probe("adapter", Some(Kind::Adapter), true, Some(adapter)),
        probe("principal B", Some(Kind::Principal), false, Some(buyer_b)),
        probe(
            "globex admin",
            Some(Kind::TenantAdmin),
            false,
            Some(other_admin),
        ),
        probe(
            "globex principal",
            Some(Kind::Principal),
            false,
            Some(other_buyer),
        ),
        // The owners last: what they change (a revoked token, a deleted
        // config, a decided workflow) is not what the others are asked.
        probe("acme admin", Some(Kind::TenantAdmin), true, Some(admin)),
        probe("principal A", Some(Kind::Principal), true, Some(buyer_a)),
    ];

    let document: Value = app
        .get("/api/openapi.json")
        .await
        .json()
        .await
        .expect("the document");
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("operations").keys() {
            let method = method.to_ascii_uppercase();
            let rule = rule_of(&method, path)
                .unwrap_or_else(|| panic!("{method} {path} is not in authz::ROUTES"));
            assert!(rule.documented, "{method} {path} is marked undocumented");
            operations.push((method, path.clone(), *rule));
        }
    }
    for rule in ROUTES.iter().filter(|r| r.documented) {
        assert!(
            operations
                .iter()
                .any(|(m, p, _)| m == rule.method && p == rule.path),
            "{} {} is in authz::ROUTES but not in the OpenAPI document",
            rule.method,
            rule.path
        );
    }
    assert!(operations.len() >= 40, "{} operations", operations.len());

    let mut failures = Vec::new();
    let mut calls = 0;
    for (method, path, rule) in &operations {
        let url = objects.fill(path);
        let body = body(method, path);
        for probe in &probes {
            let expected = expect(rule.who, rule.tenancy, probe);
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = app.client.request(method.clone(), app.url(&url));
            if let Some(client) = &probe.client {
                request = request.bearer_auth(&client.token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            calls += 1;
            let status = response.status().as_u16();
            // An activity stream's body never ends: only its status is read.
            let text = if status == 200 && path.contains("activity-stream") {
                String::new()
            } else {
                response.text().await.unwrap_or_default()
            };
            if let Err(why) = expected.check(status, &text, path) {
                failures.push(format!(
                    "{method} {url} as {}: {status} ({why}): {}",
                    probe.name,
                    text.chars().take(200).collect::<String>()
                ));
            }
        }
    }
    assert_eq!(calls, operations.len() * probes.len());
    assert!(
        failures.is_empty(),
        "{} of {calls} calls broke the table:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn probe<'a>(
    name: &'static str,
    kind: Option<Kind>,
    owner: bool,
    client: Option<As<'a>>,
) -> Probe<'a> {
    Probe {
        name,
        kind,
        owner,
        client,
    }
}

/// What the table says `probe` gets.
#[derive(Debug)]
enum Expected {
    Unauthorized,
    Forbidden,
    /// Someone else's object: as a missing one.
    NotFound,
    /// Through the door: anything but 401, 403 and 5xx; for an owned
    /// object, not the outsider's 404.
    Admitted {
        owns_object: bool,
    },
}

fn expect(who: Who, tenancy: Tenancy, probe: &Probe<'_>) -> Expected {
    let kinds = match who {
        Who::Anyone => return Expected::Admitted { owns_object: false },
        Who::AnonymousOr(_) if probe.kind.is_none() => {
            return Expected::Admitted { owns_object: false };
        }
        Who::AnonymousOr(kinds) | Who::Only(kinds) => kinds,
    };
    let Some(kind) = probe.kind else {
        return Expected::Unauthorized;
    };
    if !kinds.contains(&kind) {
        return Expected::Forbidden;
    }
    match tenancy {
        Tenancy::OwnObject if !probe.owner => Expected::NotFound,
        Tenancy::OwnObject => Expected::Admitted { owns_object: true },
        _ => Expected::Admitted { owns_object: false },
    }
}

impl Expected {
    fn check(&self, status: u16, body: &str, path: &str) -> Result<(), &'static str> {
        if status >= 500 {
            return Err("a 5xx");
        }
        match self {
            Expected::Unauthorized if status == 401 => Ok(()),
            Expected::Unauthorized => Err("expected 401"),
            Expected::Forbidden if status == 403 => Ok(()),
            Expected::Forbidden => Err("expected 403"),
            Expected::NotFound if status == 404 => Ok(()),
            Expected::NotFound => Err("expected 404 (someone else's object)"),
            Expected::Admitted { .. } if status == 401 || status == 403 => {
                Err("expected to be admitted")
            }
            Expected::Admitted { owns_object: true } if status == 404 => {
                // The only object the set-up cannot make is a failed
                // webhook request: its 404 names the request, not the buy.
                if path.ends_with("/retry") && body.contains("no such webhook request") {
                    Ok(())
                } else {
                    Err("the owner was told its object does not exist")
                }
            }
            Expected::Admitted { .. } => Ok(()),
        }
    }
}

/// Acme's objects: a buy of principal A above the approval threshold (so a
/// workflow waits), a creative, a push config, another principal whose
/// token the walk revokes and rotates, and an agent run.
async fn set_up(root: &As<'_>, admin: &As<'_>, buyer: &As<'_>, victim: String) -> Objects {
    admin
        .expect(
            200,
            admin
                .patch(
                    "/api/v1/tenant/settings",
                    &json!({"approval_threshold": 1000}),
                )
                .await,
        )
        .await;
    let buy = buyer
        .expect(
            201,
            buyer
                .post("/api/v1/media-buys", &media_buy(5000.0, &[]))
                .await,
        )
        .await;
    let synced = buyer
        .expect(
            200,
            buyer
                .post(
                    "/api/v1/creatives",
                    // Not the walk's `cr-probe`: another tenant's principal
                    // syncs that one, and it is then theirs to review.
                    &json!({"creatives": [{"creative_id": "cr-owned", "name": "Banner",
                        "format": "display_300x250", "url": "https://cdn.example/a.png"}]}),
                )
                .await,
        )
        .await;
    let config = buyer
        .expect(
            201,
            buyer
                .post(
                    "/api/v1/push-notification-configs",
                    &body("POST", "/api/v1/push-notification-configs").unwrap(),
                )
                .await,
        )
        .await;
    let run = root
        .expect(
            201,
            root.post(
                "/api/v1/agent-runs",
                &body("POST", "/api/v1/agent-runs").unwrap(),
            )
            .await,
        )
        .await;
    let spare = root
        .expect(
            201,
            root.post("/api/v1/tenants/acme/ingest-tokens", &json!({}))
                .await,
        )
        .await;
    Objects {
        media_buy: buy["media_buy_id"].as_str().unwrap().to_owned(),
        creative: synced["creatives"][0]["creative_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        workflow: buy["workflow_id"].as_str().unwrap().to_owned(),
        push_config: config["id"].as_str().unwrap().to_owned(),
        principal: victim,
        run: run["run_id"].as_str().unwrap().to_owned(),
        token: spare["token_id"].as_str().unwrap().to_owned(),
    }
}
