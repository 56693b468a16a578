//! The admin dashboard at `/admin`: one page of plain HTML, CSS and
//! JavaScript embedded in the binary (no build step, no CDN), its sign-in and
//! sign-out, and the session cookie that lets the page read the API.
//!
//! Signing in exchanges an admin token (the super admin's, or a tenant
//! admin's) for a session cookie: encrypted and authenticated (actix-web's
//! private cookie jar, AES-256-GCM), `HttpOnly`, `SameSite=Strict`, `Secure`
//! in production and whenever the page is served over https. It holds the token's digest and an
//! expiry (`SESSION_TTL`) and a random session id, never the token; every
//! request re-checks the token behind it, so revoking the token ends the
//! session. Signing out ends it on the server too: its id is recorded
//! (`ended_sessions`, shared by every replica) and a copy of the cookie kept
//! from before is refused from then on. The session authenticates `GET`
//! requests only (the activity stream, audit search, alerts): anything that
//! changes state still needs the bearer token.
//!
//! Every response under these routes carries the same security headers
//! ([`security_headers`]): a Content-Security-Policy that allows nothing but
//! this origin (no inline script, no framing), `X-Content-Type-Options:
//! nosniff`, `Referrer-Policy: same-origin` and `X-Frame-Options: DENY`.
//! The two POSTs (sign-in, sign-out) refuse cross-site requests
//! ([`refuse_cross_site`]).

use std::time::Duration;

use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::TokenHash;
use crate::domain::TokenKind;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::{Caller, authenticate};
use crate::http::authz::Reader;
use overseer_actors::audit::{AuditEvent, Source};

/// The session cookie's name.
pub const COOKIE: &str = "overseer_session";

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// Nothing but this origin: no inline script, no third party, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
     object-src 'none'";

/// The headers of every dashboard response: the page, its assets, the
/// session's JSON and redirects, the stream, and errors alike (a header
/// missing from a 403 or a redirect is a header an attacker can frame or
/// sniff). `X-Frame-Options` repeats `frame-ancestors` for browsers that
/// predate it.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
}

/// The key and lifetime of dashboard sessions.
#[derive(Clone)]
pub struct Sessions {
    key: Key,
    ttl: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// From `SESSION_SECRET`, or derived from the admin token.
    pub fn new(config: &crate::config::Config) -> Self {
        let master: [u8; 32] = match &config.sse.session_secret {
            Some(secret) => Sha256::digest(secret.expose_secret().as_bytes()).into(),
            None => {
                let mut hasher = Sha256::new();
                hasher.update(b"overseer dashboard sessions\0");
                hasher.update(config.admin_token.token.expose_secret().as_bytes());
                hasher.finalize().into()
            }
        };
        Self {
            key: Key::derive_from(&master),
            ttl: config.sse.session_ttl,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Session {
    /// The token's digest, hex.
    h: String,
    /// Expiry, Unix seconds.
    exp: i64,
    /// The session's id: random, recorded when it is signed out.
    sid: String,
}

/// An open, unexpired session, read from its cookie.
pub struct OpenSession {
    /// The digest of the token behind it.
    token: TokenHash,
    id: String,
    expires_at: i64,
}

impl OpenSession {
    /// The token behind the session, unless it has been signed out.
    pub async fn token(self, state: &AppState) -> Result<TokenHash, ApiError> {
        if state.store.session_ended(&self.id).await? {
            return Err(ApiError::Unauthorized);
        }
        Ok(self.token)
    }

    /// Whether the session would still be accepted now: unexpired, not
    /// signed out, and its token still valid (without a new audit row: see
    /// [`crate::http::auth::still_valid`]). An open activity stream asks at each
    /// heartbeat.
    pub async fn still_open(&self, state: &AppState) -> Result<bool, ApiError> {
        if self.expires_at <= state.clock.now().timestamp()
            || state.store.session_ended(&self.id).await?
        {
            return Ok(false);
        }
        crate::http::auth::still_valid(state, &self.token).await
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    let resource = |path| web::resource(path).wrap(security_headers());
    cfg.service(resource("/admin").route(web::get().to(index)))
        .service(resource("/admin/").route(web::get().to(index)))
        .service(
            resource("/admin/session")
                .route(web::get().to(whoami))
                .route(web::post().to(sign_in)),
        )
        .service(resource("/admin/session/end").route(web::post().to(sign_out)))
        .service(resource("/admin/assets/{file}").route(web::get().to(asset)))
        .service(
            resource("/admin/activity/stream")
                .route(web::get().to(crate::http::activity::api_stream)),
        );
}

/// The request's session, if its cookie is valid and unexpired (whether it
/// was signed out is [`OpenSession::token`]'s question). A cookie from
/// before sessions had ids is refused: its holder signs in again.
pub fn open_session(req: &HttpRequest, state: &AppState) -> Option<OpenSession> {
    let cookie = req.cookie(COOKIE)?;
    let mut jar = CookieJar::new();
    jar.add_original(cookie);
    let opened = jar.private(&state.sessions.key).get(COOKIE)?;
    let session: Session = serde_json::from_str(opened.value()).ok()?;
    if session.exp <= state.clock.now().timestamp() {
        return None;
    }
    Some(OpenSession {
        token: TokenHash::from_hex(&session.h)?,
        id: session.sid,
        expires_at: session.exp,
    })
}

fn page(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .body(body)
}

async fn index() -> HttpResponse {
    page(INDEX, "text/html; charset=utf-8")
}

async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    match file.as_str() {
        "app.js" => Ok(page(SCRIPT, "text/javascript; charset=utf-8")),
        "app.css" => Ok(page(STYLE, "text/css; charset=utf-8")),
        _ => Err(ApiError::NotFound("no such asset".into())),
    }
}

#[derive(Serialize)]
struct WhoAmI {
    /// `super_admin` or `tenant_admin`.
    role: &'static str,
    tenant_id: Option<String>,
}

/// `GET /admin/session`: who the session is, or 401.
async fn whoami(Reader { caller }: Reader) -> Result<HttpResponse, ApiError> {
    let (role, tenant_id) = admin_role(&caller)?;
    Ok(HttpResponse::Ok().json(WhoAmI { role, tenant_id }))
}

fn admin_role(caller: &Caller) -> Result<(&'static str, Option<String>), ApiError> {
    match caller {
        Caller::SuperAdmin => Ok(("super_admin", None)),
        Caller::Tenant {
            tenant_id,
            kind: TokenKind::Admin,
            ..
        } => Ok(("tenant_admin", Some(tenant_id.as_str().to_owned()))),
        Caller::Tenant { .. } => Err(ApiError::Forbidden(
            "the dashboard is for the super admin and tenant admins".into(),
        )),
    }
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// A POST from another site, or another origin of the same site (a sibling
/// subdomain gets `SameSite=Strict` cookies too), is refused: signing a
/// victim in as the attacker (login CSRF) or out. The rule is Go's
/// `net/http.CrossOriginProtection` (hand-written: actix-web has no such
/// middleware, and it is these few lines):
/// - `Sec-Fetch-Site` (which a page cannot set) decides when present:
///   `same-origin`, or `none` (the user's own navigation), passes;
/// - otherwise `Origin`, when present, must be this service's origin;
/// - a request with neither is not from a browser (every browser since 2020
///   sends one of them on a POST), so no one's cookies ride on it.
///
/// This service's origin is the `Host` the request was sent to, over http
/// (the listener has no TLS), except that a trusted proxy's
/// `X-Forwarded-Host` and `X-Forwarded-Proto` say where the browser really
/// was. Those, like `Forwarded`, are never read from anyone else (actix-web's
/// `connection_info` would read them from any client).
fn refuse_cross_site(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let refused = || ApiError::Forbidden("cross-site request refused".into());
    if let Some(site) = req.headers().get("sec-fetch-site") {
        return match site.to_str() {
            Ok("same-origin" | "none") => Ok(()),
            _ => Err(refused()),
        };
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let host = proxy_header(req, state, "x-forwarded-host")
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .ok_or_else(refused)?;
    let expected = format!("{}://{host}", scheme(req, state));
    match origin.to_str() {
        Ok(origin) if origin.eq_ignore_ascii_case(&expected) => Ok(()),
        _ => Err(refused()),
    }
}

/// An `X-Forwarded-*` header, only from a peer in `TRUSTED_PROXIES`.
fn proxy_header<'a>(req: &'a HttpRequest, state: &AppState, name: &str) -> Option<&'a str> {
    let peer = req.peer_addr()?.ip();
    let value = req.headers().get(name).and_then(|v| v.to_str().ok());
    state.trusted_proxies.forwarded(peer, value)
}

/// The scheme the browser used: a trusted proxy's `X-Forwarded-Proto`, or
/// this connection's.
fn scheme(req: &HttpRequest, state: &AppState) -> String {
    match proxy_header(req, state, "x-forwarded-proto") {
        Some(proto) => proto.to_ascii_lowercase(),
        None if req.app_config().secure() => "https".into(),
        None => "http".into(),
    }
}

/// `POST /admin/session` (form `token=`): signs in and goes back to `/admin`
/// with the cookie set; a refused token goes back with `?error=`.
async fn sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<SignIn>,
) -> Result<HttpResponse, ApiError> {
    refuse_cross_site(&req, &state)?;
    let token = form.token.trim();
    let redirect = |to: &str| {
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to.to_owned()))
            .finish()
    };
    if token.is_empty() {
        return Ok(redirect("/admin?error=missing"));
    }
    let hash = TokenHash::of(token);
    let caller = match authenticate(&state, &req, hash.clone()).await {
        Ok(caller) => caller,
        Err(ApiError::TooManyRequests { .. }) => return Ok(redirect("/admin?error=blocked")),
        Err(ApiError::Unauthorized) => return Ok(redirect("/admin?error=invalid")),
        Err(other) => return Err(other),
    };
    let Ok((role, tenant)) = admin_role(&caller) else {
        return Ok(redirect("/admin?error=not_admin"));
    };
    let now = state.clock.now();
    let ttl = chrono::Duration::from_std(state.sessions.ttl).unwrap_or(chrono::Duration::hours(12));
    let expires: DateTime<Utc> = now + ttl;
    let session = Session {
        h: hash.to_hex(),
        exp: expires.timestamp(),
        sid: uuid::Uuid::new_v4().simple().to_string(),
    };
    let mut jar = CookieJar::new();
    let value = serde_json::to_string(&session).map_err(|e| ApiError::Internal(Box::new(e)))?;
    jar.private_mut(&state.sessions.key)
        .add(cookie(&state, &req, value, state.sessions.ttl));
    let sealed = jar
        .delta()
        .next()
        .cloned()
        .ok_or_else(|| ApiError::Internal("session cookie not sealed".into()))?;
    record(
        &state,
        &req,
        &caller,
        "admin_session_started",
        role,
        tenant.as_deref(),
    );
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin"))
        .cookie(sealed)
        .finish())
}

/// `POST /admin/session/end`: signs out (the session is recorded as ended,
/// the cookie removed) and goes back to `/admin`. If the database cannot
/// record it, the answer is that error and the cookie stays: the session
/// would otherwise live on in any copy of it.
async fn sign_out(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    refuse_cross_site(&req, &state)?;
    if let Some(session) = open_session(&req, &state) {
        let now = state.clock.now().timestamp();
        state
            .store
            .end_session(&session.id, session.expires_at, now)
            .await?;
        if let Ok(caller) = authenticate(&state, &req, session.token).await
            && let Ok((role, tenant)) = admin_role(&caller)
        {
            record(
                &state,
                &req,
                &caller,
                "admin_session_ended",
                role,
                tenant.as_deref(),
            );
        }
    }
    let mut gone = cookie(&state, &req, String::new(), Duration::ZERO);
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin"))
        .cookie(gone)
        .finish())
}

/// The session cookie. `Secure` in production whatever the request says (a
/// production dashboard is served over https, and a cookie that never
/// travels in the clear is worth a sign-in that fails on a misconfigured
/// plain-http deployment), and elsewhere when the browser used https.
fn cookie(state: &AppState, req: &HttpRequest, value: String, ttl: Duration) -> Cookie<'static> {
    let secure = state.environment == crate::config::Environment::Production
        || scheme(req, state) == "https";
    Cookie::build(COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        ))
        .finish()
}

fn record(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    operation: &str,
    role: &str,
    tenant: Option<&str>,
) {
    let mut event = AuditEvent::new(operation, state.clock.now())
        .with_principal(
            caller.principal_id(),
            Some(caller.display_name().to_owned()),
        )
        .with_details(serde_json::json!({ "role": role }));
    event.tenant_id = tenant.map(str::to_owned);
    event.ip_address = crate::http::auth::client_ip(req);
    // This is the request's row: the `/admin` audit middleware adds none.
    actix_web::HttpMessage::extensions_mut(req).insert(crate::http::audit::AuditedByHandler);
    state.actors.auditor.record(Source::Internal, event);
}
