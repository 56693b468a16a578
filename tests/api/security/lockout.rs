//! Issue 21, item 3: made-up tokens must not lock operators out, and a
//! forged `X-Forwarded-For` must neither block a victim nor free the
//! attacker.
//!
//! The attacker and the victims are real, distinct peers: clients bound to
//! 127.0.0.2, 127.0.0.3, ... (all loopback on Linux) talking to the service
//! on 127.0.0.1. With `TRUSTED_PROXIES=127.0.0.1/32` the test's own
//! 127.0.0.1 client plays the proxy, which appends the client's address as
//! the right-most hop.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::audit::{create_tenant, stored, wait_for_rows};
use crate::domain::admin_token;
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with};

on_both_backends!(
    fifty_bad_tokens_from_one_address_lock_out_no_valid_token,
    behind_a_trusted_proxy_a_forged_forwarded_for_neither_blocks_a_victim_nor_frees_the_attacker,
    without_trusted_proxies_the_forwarded_for_header_is_ignored,
);

const PROXY: &str = "127.0.0.1";

/// A client whose connections come from `source`.
fn peer(source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().unwrap();
    reqwest::Client::builder()
        .local_address(source)
        .build()
        .unwrap()
}

/// `GET path` with `token`, and `X-Forwarded-For` if given: the status and
/// `Retry-After`.
async fn call(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    token: &str,
    forwarded_for: Option<&str>,
) -> (u16, Option<u64>) {
    let mut request = client.get(app.url(path)).bearer_auth(token);
    if let Some(hops) = forwarded_for {
        request = request.header("X-Forwarded-For", hops);
    }
    let response = request.send().await.unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (response.status().as_u16(), retry_after)
}

/// 50 made-up tokens: the first five are 401 and start the cool-down, the
/// rest are 429 with a `Retry-After`.
fn assert_throttled(answers: &[(u16, Option<u64>)]) {
    assert_eq!(answers.len(), 50);
    assert!(
        answers[..5].iter().all(|a| *a == (401, None)),
        "{answers:?}"
    );
    assert!(
        answers[5..]
            .iter()
            .all(|(status, retry)| *status == 429 && retry.is_some_and(|s| s >= 1)),
        "{answers:?}"
    );
}

/// The addresses of the `operation` rows, once `n` of them name `ip` (10 s
/// at most: the rows go through the audit batcher).
async fn addresses_of(app: &TestApp, operation: &str, ip: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let addresses: Vec<String> = stored(&app.store, &[operation])
            .await
            .into_iter()
            .map(|row| row.event.ip_address.unwrap_or_default())
            .collect();
        if addresses.iter().filter(|a| *a == ip).count() >= n || Instant::now() > deadline {
            return addresses;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The addresses of the `repeated_failed_auth` violations recorded so far.
async fn blocked_addresses(app: &TestApp) -> Vec<String> {
    stored(&app.store, &["security_violation"])
        .await
        .into_iter()
        .filter(|row| row.event.details["type"] == "repeated_failed_auth")
        .filter_map(|row| row.event.ip_address)
        .collect()
}

async fn fifty_bad_tokens_from_one_address_lock_out_no_valid_token(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    create_tenant(&app, "acme").await;
    let tenant_admin = admin_token(&app, "acme").await.token;
    let attacker = peer("127.0.0.2");

    let mut answers = Vec::new();
    for i in 0..50 {
        answers.push(
            call(
                &app,
                &attacker,
                "/api/v1/tenants",
                &format!("ovs_made_up_{i}"),
                None,
            )
            .await,
        );
    }
    assert_throttled(&answers);

    // The same address, valid tokens: served.
    let super_admin = app.admin_token.clone();
    assert_eq!(
        call(&app, &attacker, "/api/v1/tenants", &super_admin, None).await,
        (200, None),
        "the super admin is not locked out"
    );
    assert_eq!(
        call(&app, &attacker, "/api/v1/principals", &tenant_admin, None).await,
        (200, None),
        "a tenant admin is not locked out"
    );
    // The dashboard's sign-in, the same: a session, not `?error=blocked`.
    let no_redirects = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = no_redirects
        .post(app.url("/admin/session"))
        .form(&[("token", tenant_admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.headers()["location"], "/admin");
    assert!(signed_in.headers().contains_key("set-cookie"));

    // Serving them did not lift the cool-down for bad tokens.
    let (status, retry) = call(
        &app,
        &attacker,
        "/api/v1/tenants",
        "ovs_made_up_again",
        None,
    )
    .await;
    assert_eq!((status, retry.is_some()), (429, true));

    // One violation, naming the address; the valid calls audited as such.
    assert_eq!(
        wait_for_rows(&app.store, &["security_violation"], 1).await[0]
            .event
            .ip_address
            .as_deref(),
        Some("127.0.0.2")
    );
    // The three valid calls were audited as such (the set-up's came from
    // 127.0.0.1); the five 401s were too, the 429s were counted instead.
    let validated = addresses_of(&app, "token_validated", "127.0.0.2", 3).await;
    assert_eq!(
        validated.iter().filter(|ip| *ip == "127.0.0.2").count(),
        3,
        "{validated:?}"
    );
    assert_eq!(
        addresses_of(&app, "token_rejected", "127.0.0.2", 5).await,
        ["127.0.0.2"; 5]
    );
}

async fn behind_a_trusted_proxy_a_forged_forwarded_for_neither_blocks_a_victim_nor_frees_the_attacker(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    create_tenant(&app, "acme").await;
    let tenant_admin = admin_token(&app, "acme").await.token;
    let proxy = peer(PROXY);
    let attacker = "203.0.113.66";
    let victim = "198.51.100.1";

    // The attacker writes the victim's address, then a new address each
    // time, as the left-most hop; the proxy appends the attacker's own.
    let mut answers = Vec::new();
    for i in 0..50 {
        let forged = if i % 2 == 0 {
            victim.to_owned()
        } else {
            format!("192.0.2.{i}")
        };
        let hops = format!("{forged}, {attacker}");
        answers.push(call(&app, &proxy, "/api/v1/tenants", "ovs_made_up", Some(&hops)).await);
    }
    assert_throttled(&answers);
    // A fresh forged address does not free it either.
    let (status, _) = call(
        &app,
        &proxy,
        "/api/v1/tenants",
        "ovs_made_up",
        Some(&format!("192.0.2.250, {attacker}")),
    )
    .await;
    assert_eq!(status, 429, "changing the left-most hop does not escape");

    // The victim was never blocked: its own bad token is an ordinary 401,
    // its valid token a 200.
    assert_eq!(
        call(&app, &proxy, "/api/v1/tenants", "ovs_typo", Some(victim)).await,
        (401, None)
    );
    assert_eq!(
        call(
            &app,
            &proxy,
            "/api/v1/principals",
            &tenant_admin,
            Some(victim)
        )
        .await,
        (200, None)
    );
    // The attacker's own valid tokens are served too.
    assert_eq!(
        call(
            &app,
            &proxy,
            "/api/v1/tenants",
            &app.admin_token,
            Some(attacker)
        )
        .await,
        (200, None)
    );

    // The block, and the trail, name the attacker: never the victim, never
    // the proxy.
    wait_for_rows(&app.store, &["security_violation"], 1).await;
    assert_eq!(blocked_addresses(&app).await, [attacker]);
    addresses_of(&app, "token_rejected", attacker, 5).await;
    let mut rejected = addresses_of(&app, "token_rejected", victim, 1).await;
    rejected.sort();
    assert_eq!(
        rejected,
        [victim, attacker, attacker, attacker, attacker, attacker]
    );
}

async fn without_trusted_proxies_the_forwarded_for_header_is_ignored(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    create_tenant(&app, "acme").await;
    let tenant_admin = admin_token(&app, "acme").await.token;
    let (attacker, victim) = ("127.0.0.2", "127.0.0.3");
    let attacker_client = peer(attacker);

    // The attacker names the victim, then someone new each time.
    let mut answers = Vec::new();
    for i in 0..50 {
        let forged = if i % 2 == 0 {
            victim.to_owned()
        } else {
            format!("127.0.0.{}", 100 + i)
        };
        answers.push(
            call(
                &app,
                &attacker_client,
                "/api/v1/tenants",
                "ovs_made_up",
                Some(&forged),
            )
            .await,
        );
    }
    assert_throttled(&answers);

    // The victim, connecting from its own address, was not blocked.
    let victim_client = peer(victim);
    assert_eq!(
        call(&app, &victim_client, "/api/v1/tenants", "ovs_typo", None).await,
        (401, None)
    );
    assert_eq!(
        call(
            &app,
            &victim_client,
            "/api/v1/principals",
            &tenant_admin,
            None
        )
        .await,
        (200, None)
    );
    // The attacker's valid token is served; its bad ones stay throttled.
    assert_eq!(
        call(
            &app,
            &attacker_client,
            "/api/v1/tenants",
            &app.admin_token,
            Some(victim)
        )
        .await,
        (200, None)
    );
    let (status, _) = call(
        &app,
        &attacker_client,
        "/api/v1/tenants",
        "ovs_made_up",
        Some("127.0.0.250"),
    )
    .await;
    assert_eq!(status, 429);

    // The block and the trail name the peers, never a header's value.
    wait_for_rows(&app.store, &["security_violation"], 1).await;
    assert_eq!(blocked_addresses(&app).await, [attacker]);
    addresses_of(&app, "token_rejected", attacker, 5).await;
    let mut rejected = addresses_of(&app, "token_rejected", victim, 1).await;
    rejected.sort();
    assert_eq!(
        rejected,
        [attacker, attacker, attacker, attacker, attacker, victim]
    );
}
