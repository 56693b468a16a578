//! Issue 21, "Dashboard headers": every dashboard response can be neither
//! framed nor sniffed and runs no inline script; the session cookie cannot be
//! read by script, sent cross-site, or sent in the clear in production; and
//! a page on another site (or another origin of the same site) can neither
//! sign a victim in as the attacker nor sign the victim out. Forwarded
//! host/proto headers count only from a trusted proxy.

use reqwest::header::HeaderMap;

use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with};

on_both_backends!(
    every_dashboard_response_carries_the_security_headers,
    the_session_cookie_is_http_only_strict_and_secure_in_production,
    cross_site_sign_ins_and_sign_outs_are_refused,
    behind_a_trusted_proxy_its_forwarded_host_and_proto_are_the_origin,
);

fn no_redirects() -> reqwest::Client {
    overseer::adapters::slack::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn assert_security_headers(what: &str, headers: &HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = header("content-security-policy");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    assert!(
        directives.contains(&"frame-ancestors 'none'"),
        "{what}: {csp}"
    );
    assert!(directives.contains(&"script-src 'self'"), "{what}: {csp}");
    assert!(directives.contains(&"default-src 'self'"), "{what}: {csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert!(
        ["no-referrer", "same-origin", "strict-origin"]
            .contains(&header("referrer-policy").as_str()),
        "{what}"
    );
    assert_eq!(header("x-frame-options"), "DENY", "{what}");
}

/// `POST /admin/session` with `token` and extra headers; the response.
async fn sign_in(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = no_redirects()
        .post(app.url("/admin/session"))
        .form(&[("token", token)]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The cookie pair (`name=value`) and the raw `Set-Cookie` of a sign-in
/// that succeeded.
fn session_cookie(response: &reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin");
    let raw = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    (raw.split(';').next().unwrap().to_owned(), raw)
}

async fn whoami(app: &TestApp, cookie: &str) -> u16 {
    no_redirects()
        .get(app.url("/admin/session"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn every_dashboard_response_carries_the_security_headers(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let client = no_redirects();

    // Pages and assets, and what is not one.
    for (path, status) in [
        ("/admin", 200),
        ("/admin/", 200),
        ("/admin/assets/app.js", 200),
        ("/admin/assets/app.css", 200),
        ("/admin/assets/other.js", 404),
        ("/admin/session", 401),
        ("/admin/activity/stream", 401),
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_security_headers(path, response.headers());
    }
    // Sign-in's redirects (good and bad), a refused cross-site post, and
    // sign-out.
    let good = sign_in(&app, &app.admin_token, &[]).await;
    assert_security_headers("sign-in", good.headers());
    let (cookie, _) = session_cookie(&good);
    let bad = sign_in(&app, "ovs_made_up", &[]).await;
    assert_eq!(bad.headers()["location"], "/admin?error=invalid");
    assert_security_headers("refused sign-in", bad.headers());
    let cross = sign_in(&app, &app.admin_token, &[("origin", "http://evil.example")]).await;
    assert_eq!(cross.status(), 403);
    assert_security_headers("cross-site sign-in", cross.headers());
    let whoami = client
        .get(app.url("/admin/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    assert_security_headers("whoami", whoami.headers());
    let out = client
        .post(app.url("/admin/session/end"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_security_headers("sign-out", out.headers());

    // The page runs no inline script: scripts come from files, no handler
    // attributes, no javascript: URLs (the CSP would block them anyway; this
    // keeps the page working under it).
    let page = client
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .to_ascii_lowercase();
    for (i, _) in page.match_indices("<script") {
        let tag = &page[i..i + page[i..].find('>').unwrap()];
        assert!(
            tag.contains(" src=\"/admin/assets/"),
            "inline script: {tag}"
        );
        assert!(page[i..].starts_with(&format!("{tag}></script>")), "{tag}");
    }
    assert!(!page.contains("javascript:"));
    let handler = handler_attribute(&page);
    assert!(handler.is_none(), "inline handler: {handler:?}");
}

/// An `on...=` attribute inside a tag, if the page has one.
fn handler_attribute(page: &str) -> Option<String> {
    page.split('<').skip(1).find_map(|tag| {
        let tag = tag.split('>').next().unwrap_or("");
        tag.split_whitespace()
            .skip(1)
            .find(|attr| attr.starts_with("on") && attr.contains('='))
            .map(str::to_owned)
    })
}

async fn the_session_cookie_is_http_only_strict_and_secure_in_production(backend: Backend) {
    // Production over plain http (TLS ends at a proxy that says nothing):
    // Secure all the same, whatever a client claims.
    let app = spawn_app_with(backend, &[("ENVIRONMENT", "production")]).await;
    for headers in [vec![], vec![("x-forwarded-proto", "http")]] {
        let (_, raw) = session_cookie(&sign_in(&app, &app.admin_token, &headers).await);
        let attributes: Vec<String> = raw
            .split(';')
            .skip(1)
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        for expected in ["httponly", "samesite=strict", "secure", "path=/"] {
            assert!(
                attributes.iter().any(|a| a == expected),
                "{expected}: {raw}"
            );
        }
    }

    // Development over plain http: not Secure (the browser would drop it),
    // and a client's `X-Forwarded-Proto` does not decide that.
    let dev = spawn_app_with(backend, &[]).await;
    let (_, raw) =
        session_cookie(&sign_in(&dev, &dev.admin_token, &[("x-forwarded-proto", "https")]).await);
    let lower = raw.to_ascii_lowercase();
    assert!(
        lower.contains("httponly") && lower.contains("samesite=strict"),
        "{raw}"
    );
    assert!(!lower.contains("secure"), "{raw}");
}

async fn cross_site_sign_ins_and_sign_outs_are_refused(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let victim_token = app.admin_token.clone();
    let own_origin = app.address.clone(); // http://127.0.0.1:<port>

    // Login CSRF: a page elsewhere posts the attacker's token so the victim
    // works in the attacker's session. Every browser form of it is refused,
    // and no cookie is set.
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        // A sibling subdomain: same site, another origin.
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        // A client's forwarded host does not make its origin ours.
        vec![
            ("origin", "http://evil.example"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "http"),
        ],
        vec![
            ("origin", "https://evil.example"),
            ("forwarded", "host=evil.example;proto=https"),
        ],
        // Sec-Fetch-Site decides when present, whatever Origin says.
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", own_origin.as_str()),
        ],
    ] {
        let response = sign_in(&app, &victim_token, &headers).await;
        assert_eq!(response.status(), 403, "{headers:?}");
        assert!(
            response.headers().get("set-cookie").is_none(),
            "{headers:?}"
        );
    }

    // Our own page's posts, and non-browser clients, sign in.
    let mut cookies = Vec::new();
    for headers in [
        vec![
            ("sec-fetch-site", "same-origin"),
            ("origin", own_origin.as_str()),
        ],
        vec![("origin", own_origin.as_str())],
        vec![],
    ] {
        let (cookie, _) = session_cookie(&sign_in(&app, &victim_token, &headers).await);
        assert_eq!(whoami(&app, &cookie).await, 200);
        cookies.push(cookie);
    }

    // Logout CSRF: the session survives a cross-site post, even one that
    // carries its cookie (a sibling subdomain's would).
    let cookie = &cookies[0];
    for headers in [
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "http://evil.example")],
    ] {
        let mut request = no_redirects()
            .post(app.url("/admin/session/end"))
            .header("cookie", cookie);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{headers:?}");
        assert!(response.headers().get("set-cookie").is_none());
        assert_eq!(whoami(&app, cookie).await, 200, "still signed in");
    }
    // From our own page, sign-out works.
    let out = no_redirects()
        .post(app.url("/admin/session/end"))
        .header("cookie", cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(whoami(&app, cookie).await, 401, "signed out");
}

async fn behind_a_trusted_proxy_its_forwarded_host_and_proto_are_the_origin(backend: Backend) {
    // The test client (127.0.0.1) is the proxy; the browser was at
    // https://dash.example.
    let app = spawn_app_with(backend, &[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let proxied = [
        ("x-forwarded-host", "dash.example"),
        ("x-forwarded-proto", "https"),
    ];
    let with = |origin: &'static str| {
        let mut headers = proxied.to_vec();
        headers.push(("origin", origin));
        headers
    };
    let response = sign_in(&app, &app.admin_token, &with("https://dash.example")).await;
    let (_, raw) = session_cookie(&response);
    assert!(
        raw.to_ascii_lowercase().contains("secure"),
        "https at the proxy: Secure ({raw})"
    );
    for origin in ["http://dash.example", "https://evil.example"] {
        let response = sign_in(&app, &app.admin_token, &with(origin)).await;
        assert_eq!(response.status(), 403, "{origin}");
    }
    let inner = app.address.clone();
    let mut headers = proxied.to_vec();
    headers.push(("origin", inner.as_str()));
    assert_eq!(
        sign_in(&app, &app.admin_token, &headers).await.status(),
        403,
        "the proxy's view of the host is the one that counts"
    );

    // The same headers from a peer that is not the proxy (127.0.0.2) count
    // for nothing: its origin is not https://dash.example, and its cookie is
    // not made Secure by its say-so.
    let stranger = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let send = |origin: &str| {
        let mut request = stranger
            .post(app.url("/admin/session"))
            .form(&[("token", app.admin_token.as_str())])
            .header("origin", origin);
        for (name, value) in proxied {
            request = request.header(name, value);
        }
        request.send()
    };
    assert_eq!(send("https://dash.example").await.unwrap().status(), 403);
    let response = send(&inner).await.unwrap();
    let (_, raw) = session_cookie(&response);
    assert!(!raw.to_ascii_lowercase().contains("secure"), "{raw}");
}
