//! The alert rules end to end, on a manual clock and against a real HTTP
//! receiver standing in for Slack: each rule fires exactly when its
//! threshold is crossed (and not one event below), pages the right webhook
//! once, reminds after the repeat interval (not before), and sends one
//! resolved notice; a restart between firing and resolving changes none of
//! that; `database_unhealthy` is recorded when the database is back; a
//! tenant admin sees its own tenant's alerts only.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use overseer_actors::ManualClock;
use serde_json::{Value, json};

use crate::audit::raw_sql;
use crate::domain::{As, admin_token, media_buy, tenant_with_principal};
use crate::helpers::{
    Backend, TcpProxy, TestApp, TestDatabase, on_both_backends, spawn_app_on,
    spawn_app_on_with_clock,
};
use crate::receiver::{Received, Receiver};

on_both_backends!(
    auth_failures_above_ten_page_the_tenants_audit_webhook,
    auth_failures_without_a_tenant_page_the_service_audit_webhook,
    the_error_rate_fires_above_five_percent_of_at_least_twenty_operations,
    media_buy_failures_fire_at_five,
    approvals_pending_over_a_day_page_the_hitl_webhook,
    a_run_longer_than_five_minutes_pages_as_agent_slow,
    an_agent_under_ninety_five_percent_success_pages_as_a_warning,
    a_restart_between_firing_and_resolving_neither_repages_nor_loses_the_resolved_notice,
    the_database_alert_is_recorded_and_announced_when_the_database_is_back,
    a_tenant_admin_sees_only_its_own_tenants_alerts,
    a_restarted_alert_actor_neither_repages_nor_forgets,
);

const REPEAT: Duration = Duration::from_secs(4 * 3_600);

/// The service-wide webhooks' paths.
const SERVICE_GENERAL: &str = "/services/system/general/SG";
const SERVICE_AUDIT: &str = "/services/system/audit/SA";
const SERVICE_HITL: &str = "/services/system/hitl/SH";

/// An application on a manual clock with no timers, a receiver for every
/// webhook, and tenant `acme` (admin, principal) whose webhooks are
/// `/acme/{general,audit,hitl}`. Setup's own audit rows are an hour old by
/// the time a test starts, out of every window.
struct Fixture<'a> {
    app: &'a TestApp,
    clock: ManualClock,
    receiver: Receiver,
}

fn vars(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("SKIP_CRON", "true".into()),
        ("AUDIT_REQUESTS", "false".into()),
        ("AUDIT_TOKEN_VALIDATIONS", "false".into()),
        ("SLACK_POLL_INTERVAL", "20ms".into()),
        ("SLACK_RATE_PER_SECOND", "100".into()),
        ("SLACK_BURST", "50".into()),
        ("SLACK_WEBHOOK_URL", receiver.url(SERVICE_GENERAL)),
        ("SLACK_AUDIT_WEBHOOK_URL", receiver.url(SERVICE_AUDIT)),
        ("SLACK_HITL_WEBHOOK_URL", receiver.url(SERVICE_HITL)),
    ]
}

fn as_pairs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Starts an application on `db` reading `clock`.
async fn start(db: TestDatabase, url: &str, clock: &ManualClock, receiver: &Receiver) -> TestApp {
    let vars = vars(receiver);
    spawn_app_on_with_clock(db, url, &as_pairs(&vars), clock.clone()).await
}

async fn set_hooks(admin: &As<'_>, receiver: &Receiver, tenant: &str) {
    admin
        .expect(
            200,
            admin
                .patch(
                    "/api/v1/tenant/settings",
                    &json!({
                        "slack_webhook_url": receiver.url(&format!("/{tenant}/general")),
                        "slack_audit_webhook_url": receiver.url(&format!("/{tenant}/audit")),
                        "hitl_webhook_url": receiver.url(&format!("/{tenant}/hitl")),
                        "approval_threshold": 50_000,
                    }),
                )
                .await,
        )
        .await;
}

impl Fixture<'_> {
    fn now(&self) -> DateTime<Utc> {
        use overseer_actors::Clock;
        self.clock.now()
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// `POST /admin/alerts/run`; returns `(rule, scope, kind)` of its notices.
    async fn run(&self) -> Vec<(String, String, String)> {
        run(self.app).await
    }

    /// Ingests `n` events of `operation` (`tenant`: `None` for none) at now.
    async fn ingest(&self, tenant: Option<&str>, operation: &str, success: bool, n: usize) {
        let at = self.now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let events: Vec<Value> = (0..n)
            .map(|_| {
                let mut e = json!({"operation": operation, "success": success, "created_at": at});
                if let Some(t) = tenant {
                    e["tenant_id"] = json!(t);
                }
                e
            })
            .collect();
        let response = self
            .app
            .post_json_as_admin("/api/v1/audit/events", &json!(events))
            .await;
        assert_eq!(response.status().as_u16(), 202);
    }

    /// Waits until `path` has `n` alert messages, then makes sure no more
    /// come and no other webhook got any.
    async fn expect_alerts(&self, path: &str, n: usize) -> Vec<String> {
        expect_alerts(&self.receiver, path, n).await
    }
}

fn alert_messages(receiver: &Receiver, path: &str) -> Vec<(String, Received)> {
    receiver
        .received(path)
        .into_iter()
        .filter_map(|m| {
            let body = m.json();
            let header = body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let kind = if header.contains("Alert resolved") {
                "resolved"
            } else if header.contains("Alert firing") && body.to_string().contains("still firing") {
                "reminder"
            } else if header.contains("Alert firing") {
                "fired"
            } else {
                return None;
            };
            Some((kind.to_owned(), m))
        })
        .collect()
}

async fn expect_alerts(receiver: &Receiver, path: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alert_messages(receiver, path).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{path}: {} of {n} alert messages",
            alert_messages(receiver, path).len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = alert_messages(receiver, path);
    assert_eq!(got.len(), n, "{path}: more alert messages than expected");
    let elsewhere: Vec<String> = receiver
        .all()
        .into_iter()
        .map(|m| m.path)
        .filter(|p| p != path)
        .filter(|p| !alert_messages(receiver, p).is_empty())
        .collect();
    assert!(
        elsewhere.is_empty(),
        "alert messages elsewhere: {elsewhere:?}"
    );
    got.into_iter().map(|(kind, _)| kind).collect()
}

async fn run(app: &TestApp) -> Vec<(String, String, String)> {
    let response = app
        .client
        .post(app.url("/admin/alerts/run"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    report["notified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["rule"].as_str().unwrap().to_owned(),
                n["scope"].as_str().unwrap().to_owned(),
                n["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn notice(rule: &str, scope: &str, kind: &str) -> (String, String, String) {
    (rule.to_owned(), scope.to_owned(), kind.to_owned())
}

/// How a rule's condition is made to hold and to clear.
#[derive(Clone, Copy)]
enum Case {
    /// `n` auth failures in `tenant` (or with none).
    Auth(Option<&'static str>),
    /// 20 successes and 2 failures in acme.
    ErrorRate,
    /// 5 failed `create_media_buy` in acme.
    MediaBuyFailures,
    /// A run of `slow-agent` running for more than 5 min.
    SlowRun,
    /// 10 failed runs of `flaky-agent`.
    FailingRuns,
}

impl Case {
    async fn hold(self, f: &Fixture<'_>) {
        match self {
            Case::Auth(tenant) => f.ingest(tenant, "token_rejected", false, 11).await,
            Case::ErrorRate => {
                f.ingest(Some("acme"), "sync_creatives", true, 20).await;
                f.ingest(Some("acme"), "sync_creatives", false, 2).await;
            }
            Case::MediaBuyFailures => f.ingest(Some("acme"), "create_media_buy", false, 5).await,
            Case::SlowRun => {
                // Idempotent: the run keeps running.
                let started = f.now() - chrono::Duration::minutes(6);
                let _ = insert_run(f, "slow-1", "slow-agent", "running", started, None).await;
            }
            Case::FailingRuns => {
                for i in 0..10 {
                    let id = format!("flaky-{}-{i}", f.now().timestamp());
                    insert_run(f, &id, "flaky-agent", "failed", f.now(), Some(f.now()))
                        .await
                        .unwrap();
                }
            }
        }
    }

    /// Lets time pass (and finishes what runs) until the condition is gone.
    async fn clear(self, f: &Fixture<'_>) {
        match self {
            Case::Auth(_) => f.advance(Duration::from_secs(5 * 60)),
            Case::ErrorRate | Case::MediaBuyFailures => f.advance(Duration::from_secs(15 * 60)),
            Case::SlowRun => {
                let at = ts(f.now());
                sql(
                    f,
                    &format!(
                        "UPDATE agent_runs SET status = 'succeeded', finished_at = '{at}', \
                         duration_ms = 240000 WHERE run_id = 'slow-1'"
                    ),
                )
                .await;
            }
            Case::FailingRuns => f.advance(Duration::from_secs(3_600)),
        }
    }

    fn rule(self) -> &'static str {
        match self {
            Case::Auth(_) => "auth_failure_spike",
            Case::ErrorRate => "high_error_rate",
            Case::MediaBuyFailures => "media_buy_failures",
            Case::SlowRun => "agent_slow",
            Case::FailingRuns => "agent_success_rate",
        }
    }

    fn scope(self) -> &'static str {
        match self {
            Case::Auth(None) => "",
            Case::Auth(Some(t)) => t,
            Case::ErrorRate | Case::MediaBuyFailures => "acme",
            Case::SlowRun => "agent:slow-agent",
            Case::FailingRuns => "agent:flaky-agent",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Case::Auth(None) => SERVICE_AUDIT,
            Case::Auth(Some(_)) => "/acme/audit",
            Case::ErrorRate | Case::MediaBuyFailures => "/acme/general",
            Case::SlowRun | Case::FailingRuns => SERVICE_GENERAL,
        }
    }
}

/// An RFC 3339 time as sqlx writes it on both backends.
fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

async fn sql(f: &Fixture<'_>, statement: &str) {
    let backend = match f.app.store {
        overseer::store::Store::Postgres(_) => Backend::Postgres,
        overseer::store::Store::Sqlite(_) => Backend::Sqlite,
    };
    raw_sql(f.app, backend, statement).await.unwrap();
}

async fn insert_run(
    f: &Fixture<'_>,
    run_id: &str,
    agent: &str,
    status: &str,
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
) -> Result<(), String> {
    let backend = match f.app.store {
        overseer::store::Store::Postgres(_) => Backend::Postgres,
        overseer::store::Store::Sqlite(_) => Backend::Sqlite,
    };
    let (finished_at, duration) = match finished {
        Some(end) => (
            format!("'{}'", ts(end)),
            (end - started).num_milliseconds().to_string(),
        ),
        None => ("NULL".to_owned(), "NULL".to_owned()),
    };
    raw_sql(
        f.app,
        backend,
        &format!(
            "INSERT INTO agent_runs (run_id, agent, objective, status, started_at, finished_at, \
             duration_ms, created_at) VALUES ('{run_id}', '{agent}', 'test', '{status}', \
             '{}', {finished_at}, {duration}, '{}')",
            ts(started),
            ts(started)
        ),
    )
    .await
}

/// A fresh database and application, tenant acme with its webhooks, and
/// the clock an hour on.
async fn setup(backend: Backend, receiver: &Receiver) -> (TestApp, ManualClock, String) {
    let clock = ManualClock::new(Utc::now().trunc_subsecs(0));
    let db = TestDatabase::new(backend).await;
    let url = db.url.clone();
    let app = start(db, &url, &clock, receiver).await;
    {
        let (admin, _, _) = tenant_with_principal(&app, "acme").await;
        set_hooks(&admin, receiver, "acme").await;
    }
    clock.advance(Duration::from_secs(3_600));
    (app, clock, url)
}

/// Fires (already crossed by the caller), does not page twice, reminds at
/// the repeat interval and not a second before, resolves once.
async fn lifecycle(f: &Fixture<'_>, case: Case) {
    let (rule, scope, path) = (case.rule(), case.scope(), case.path());
    assert_eq!(f.run().await, [notice(rule, scope, "fired")]);
    assert_eq!(f.expect_alerts(path, 1).await, ["fired"]);
    assert!(
        f.run().await.is_empty(),
        "a firing alert does not page again"
    );

    let alerts = f.app.get_json_as_admin("/api/v1/alerts").await;
    let current = &alerts["current"][0];
    assert_eq!(
        (&current["rule"], &current["scope"], &current["state"]),
        (&json!(rule), &json!(scope), &json!("firing")),
        "{alerts}"
    );
    assert!(current["value"].as_f64().unwrap() > 0.0 || rule == "pending_approvals");

    f.advance(REPEAT - Duration::from_secs(1));
    case.hold(f).await;
    assert!(f.run().await.is_empty(), "no reminder before the interval");
    f.advance(Duration::from_secs(1));
    assert_eq!(f.run().await, [notice(rule, scope, "reminder")]);
    assert_eq!(f.expect_alerts(path, 2).await, ["fired", "reminder"]);

    case.clear(f).await;
    assert_eq!(f.run().await, [notice(rule, scope, "resolved")]);
    assert!(f.run().await.is_empty());
    assert_eq!(
        f.expect_alerts(path, 3).await,
        ["fired", "reminder", "resolved"]
    );
    let alerts = f.app.get_json_as_admin("/api/v1/alerts").await;
    assert_eq!(alerts["current"], json!([]), "{alerts}");
    assert_eq!(alerts["resolved"][0]["rule"], rule);
    assert_eq!(alerts["resolved"][0]["notifications"], 3);
}

async fn auth_failures_above_ten_page_the_tenants_audit_webhook(backend: Backend) {
    let receiver = Receiver::start();
    let (app, clock, _) = setup(backend, &receiver).await;
    let f = Fixture {
        app: &app,
        clock,
        receiver,
    };
    f.ingest(Some("acme"), "token_rejected", false, 4).await;
    f.ingest(Some("acme"), "token_expired", false, 3).await;
    f.ingest(Some("acme"), "sso_login_failed", false, 3).await;
    assert!(f.run().await.is_empty(), "10 is not more than 10");
    f.ingest(Some("acme"), "token_expired", false, 1).await;
    lifecycle(&f, Case::Auth(Some("acme"))).await;

    // The transitions are in the tenant's trail.
    let trail = f
        .app
        .get_json_as_admin("/api/v1/audit/logs?tenant_id=acme&operation=alert_fired,alert_resolved")
        .await;
    let ops: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["alert_resolved", "alert_fired"], "{trail}");
}

async fn auth_failures_without_a_tenant_page_the_service_audit_webhook(backend: Backend) {
    let receiver = Receiver::start();
    let (app, clock, _) = setup(backend, &receiver).await;
    let f = Fixture {
        app: &app,
        clock,
        receiver,
    };
    // Failures of acme's do not add up with tenant-less ones.
    f.ingest(Some("acme"), "token_rejected", false, 5).await;
    f.ingest(None, "token_rejected", false, 10).await;
    assert!(f.run().await.is_empty());
    f.ingest(None, "sso_login_failed", false, 1).await;
    lifecycle(&f, Case::Auth(None)).await;
}

async fn the_error_rate_fires_above_five_percent_of_at_least_twenty_operations(backend: Backend) {
    let receiver = Receiver::start();
    let (app, clock, _) = setup(backend, &receiver).await;
    let f = Fixture {
        app: &app,
        clock,
        receiver,
    };
    // 1 of 19 failed (5.3%), but 19 operations never fire.
    f.ingest(Some("acme"), "sync_creatives", true, 18).await;
    f.ingest(Some("acme"), "sync_creatives", false, 1).await;
    assert!(f.run().await.is_empty(), "19 operations");
    // 1 of 20: exactly 5%, not more.
    f.ingest(Some("acme"), "get_media_buys", true, 1).await;
    assert!(f.run().await.is_empty(), "5% is not above 5%");
    // Auth failures are not operations here: they have their own rule.
    f.ingest(Some("acme"), "token_rejected", false, 5).await;
    assert!(f.run().await.is_empty());
    // 2 of 21.
    f.ingest(Some("acme"), "update_media_buy", false, 1).await;
    lifecycle(&f, Case::ErrorRate).await;
}

async fn media_buy_failures_fire_at_five(backend: Backend) {
    let receiver = Receiver::start();
    let (app, clock, _) = setup(backend, &receiver).await;
    let f = Fixture {
        app: &app,
        clock,
        receiver,
    };
    f.ingest(Some("acme"), "create_media_buy", false, 4).await;
    f.ingest(Some("acme"), "create_media_buy", true, 10).await;
    assert!(f.run().await.is_empty(), "4 failures");
    f.ingest(Some("acme"), "create_media_buy", false, 1).await;
    lifecycle(&f, Case::MediaBuyFailures).await;
}

async fn approvals_pending_over_a_day_page_the_hitl_webhook(backend: Backend) {
    let receiver = Receiver::start();
    let clock = ManualClock::new(Utc::now().trunc_subsecs(0));
    let db = TestDatabase::new(backend).await;
    let url = db.url.clone();
    let app = start(db, &url, &clock, &receiver).await;
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    set_hooks(&admin, &receiver, "acme").await;
    let f = Fixture {
        app: &app,
        clock,
        receiver,
    };
    buyer
        .expect(
            201,
            buyer
                .post("/api/v1/media-buys", &media_buy(100_000.0, &[]))
                .await,
        )
        .await;
    let tasks = admin
        .expect(200, admin.get("/api/v1/workflows?status=pending").await)
        .await;
    let task = tasks["items"][0]["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();

    f.advance(Duration::from_secs(24 * 3_600));
    assert!(f.run().await.is_empty(), "pending exactly 24 h is not more");
    f.advance(Duration::from_secs(1));
    let (rule, path) = ("pending_approvals", "/acme/hitl");
    assert_eq!(f.run().await, [notice(rule, "acme", "fired")]);
    assert_eq!(f.expect_alerts(path, 1).await, ["fired"]);
    assert!(f.run().await.is_empty());
    f.advance(REPEAT - Duration::from_secs(1));
    assert!(f.run().await.is_empty());
    f.advance(Duration::from_secs(1));
    assert_eq!(f.run().await, [notice(rule, "acme", "reminder")]);
    assert_eq!(f.expect_alerts(path, 2).await, ["fired", "reminder"]);

    admin
        .expect(
            200,
            admin
                .post(&format!("/api/v1/workflows/{task}/approve"), &json!({}))
                .await,
        )
        .await;
    assert_eq!(f.run().await, [notice(rule, "acme", "resolved")]);
    assert!(f.run().await.is_empty());
    assert_eq!(
        f.expect_alerts(path, 3).await,
        ["fired", "reminder", "resolved"]
    );
}

async fn a_run_longer_than_five_minutes_pages_as_agent_slow(backend: Backend) {
    let receiver = Receiver::start();
    let (app, clock, _) = setup(backend, &receiver).await;
    let f = Fixture {
        app: &app,
        clock,
        receiver,
    };
    // Finished runs of exactly 5 min, and one running for exactly 5 min.
    let five = chrono::Duration::minutes(5);
    insert_run(
        &f,
        "done-1",
        "slow-agent",
        "succeeded",
        f.now() - five,
        Some(f.now()),
    )
    .await
    .unwrap();
    insert_run(&f, "slow-1", "slow-agent", "running", f.now() - five, None)
        .await
        .unwrap();
    assert!(f.run().await.is_empty(), "5 min is not longer than 5 min");
    f.advance(Duration::from_secs(1));
    lifecycle(&f, Case::SlowRun).await;
}

async fn an_agent_under_ninety_five_percent_success_pages_as_a_warning(backend: Backend) {
    let receiver = Receiver::start();
    let (app, clock, _) = setup(backend, &receiver).await;
    let f = Fixture {
        app: &app,
        clock,
        receiver,
    };
    let now = f.now();
    for i in 0..19 {
        insert_run(
            &f,
            &format!("ok-{i}"),
            "flaky-agent",
            "succeeded",
            now,
            Some(now),
        )
        .await
        .unwrap();
    }
    insert_run(&f, "bad-0", "flaky-agent", "failed", now, Some(now))
        .await
        .unwrap();
    // Nine finished runs, all failed: too few to judge.
    for i in 0..9 {
        insert_run(
            &f,
            &format!("few-{i}"),
            "few-agent",
            "failed",
            now,
            Some(now),
        )
        .await
        .unwrap();
    }
    assert!(f.run().await.is_empty(), "95% is not under 95%");
    insert_run(&f, "bad-1", "flaky-agent", "canceled", now, Some(now))
        .await
        .unwrap();
    lifecycle(&f, Case::FailingRuns).await;
    let alerts = f.app.get_json_as_admin("/api/v1/alerts").await;
    assert_eq!(alerts["resolved"][0]["severity"], "warning");
}

async fn a_restart_between_firing_and_resolving_neither_repages_nor_loses_the_resolved_notice(
    backend: Backend,
) {
    let receiver = Receiver::start();
    let (app, clock, url) = setup(backend, &receiver).await;
    let f = Fixture {
        app: &app,
        clock: clock.clone(),
        receiver: receiver.clone(),
    };
    Case::Auth(Some("acme")).hold(&f).await;
    assert_eq!(
        f.run().await,
        [notice("auth_failure_spike", "acme", "fired")]
    );
    assert_eq!(f.expect_alerts("/acme/audit", 1).await, ["fired"]);

    // Another process on the same database: its actor starts with nothing
    // in memory.
    let vars = vars(&receiver);
    let restarted = app
        .replica_with_clock(&url, &as_pairs(&vars), clock.clone())
        .await;
    let g = Fixture {
        app: &restarted,
        clock,
        receiver,
    };
    g.advance(Duration::from_secs(60));
    Case::Auth(Some("acme")).hold(&g).await;
    assert!(g.run().await.is_empty(), "no early re-page after a restart");
    g.advance(REPEAT - Duration::from_secs(61));
    Case::Auth(Some("acme")).hold(&g).await;
    assert!(g.run().await.is_empty());
    g.advance(Duration::from_secs(1));
    assert_eq!(
        g.run().await,
        [notice("auth_failure_spike", "acme", "reminder")]
    );
    // The first process sees the reminder as done.
    assert!(f.run().await.is_empty());
    g.advance(Duration::from_secs(5 * 60));
    assert_eq!(
        g.run().await,
        [notice("auth_failure_spike", "acme", "resolved")]
    );
    assert!(f.run().await.is_empty(), "resolved once");
    assert_eq!(
        g.expect_alerts("/acme/audit", 3).await,
        ["fired", "reminder", "resolved"]
    );
}

async fn the_database_alert_is_recorded_and_announced_when_the_database_is_back(backend: Backend) {
    let receiver = Receiver::start();
    let db = TestDatabase::new(backend).await;
    let mut vars = vars(&receiver);
    vars.push(("DATABASE_CONNECT_TIMEOUT", "1s".into()));
    // The database is unreachable: a cut proxy (PostgreSQL), a file where
    // the SQLite folder should be.
    let parent = tempfile::tempdir().unwrap();
    let blocker = parent.path().join("blocked");
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = match backend {
        Backend::Postgres => {
            proxy.cut();
            db.url_through(&proxy)
        }
        Backend::Sqlite => {
            std::fs::write(&blocker, b"not a folder").unwrap();
            format!("sqlite://{}/overseer.db", blocker.display())
        }
    };
    let app = spawn_app_on(db, &url, &as_pairs(&vars)).await;

    assert!(run(&app).await.is_empty(), "one failed check is not two");
    let (_, health) = app.health().await;
    assert_eq!(health["components"]["alerts"]["firing"], 0, "{health}");
    assert!(run(&app).await.is_empty(), "nothing can be queued yet");
    let (_, health) = app.health_details().await;
    assert_eq!(health["components"]["alerts"]["firing"], 1, "{health}");
    assert!(
        health["components"]["alerts"]["last_error"]
            .as_str()
            .unwrap()
            .contains("database"),
        "{health}"
    );

    match backend {
        Backend::Postgres => proxy.restore(),
        Backend::Sqlite => std::fs::remove_file(&blocker).unwrap(),
    }
    app.wait_for_health(200, Duration::from_secs(15)).await;
    assert_eq!(
        run(&app).await,
        [
            notice("database_unhealthy", "", "fired"),
            notice("database_unhealthy", "", "resolved")
        ]
    );
    assert!(run(&app).await.is_empty());
    assert_eq!(
        expect_alerts(&receiver, SERVICE_AUDIT, 2).await,
        ["fired", "resolved"]
    );
    let fired = &alert_messages(&receiver, SERVICE_AUDIT)[0].1;
    assert!(fired.json().to_string().contains("waited for the database"));
    let alerts = app.get_json_as_admin("/api/v1/alerts").await;
    let episode = &alerts["resolved"][0];
    assert_eq!(episode["rule"], "database_unhealthy");
    assert_eq!(episode["severity"], "critical");
    assert_eq!(episode["tenant_id"], Value::Null);
    let (_, health) = app.health().await;
    assert_eq!(health["components"]["alerts"]["firing"], 0, "{health}");
}

async fn a_tenant_admin_sees_only_its_own_tenants_alerts(backend: Backend) {
    let receiver = Receiver::start();
    let (app, clock, _) = setup(backend, &receiver).await;
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
    let acme = admin_token(&app, "acme").await;
    let f = Fixture {
        app: &app,
        clock,
        receiver,
    };
    f.ingest(Some("acme"), "token_rejected", false, 11).await;
    f.ingest(Some("globex"), "token_rejected", false, 11).await;
    f.ingest(None, "token_rejected", false, 11).await;
    assert_eq!(f.run().await.len(), 3);

    let mine = acme.expect(200, acme.get("/api/v1/alerts").await).await;
    let scopes: Vec<&str> = mine["current"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["acme"], "{mine}");
    acme.expect(403, acme.get("/api/v1/alerts?tenant_id=globex").await)
        .await;
    let all = app.get_json_as_admin("/api/v1/alerts").await;
    assert_eq!(all["current"].as_array().unwrap().len(), 3, "{all}");
    let globex = app
        .get_json_as_admin("/api/v1/alerts?tenant_id=globex")
        .await;
    assert_eq!(globex["current"][0]["scope"], "globex");
    assert_eq!(globex["current"].as_array().unwrap().len(), 1);
}

async fn a_restarted_alert_actor_neither_repages_nor_forgets(backend: Backend) {
    let receiver = Receiver::start();
    let clock = ManualClock::new(Utc::now().trunc_subsecs(0));
    let db = TestDatabase::new(backend).await;
    let url = db.url.clone();
    let mut vars = vars(&receiver);
    vars.push(("ENABLE_FAULT_INJECTION", "true".into()));
    let app = spawn_app_on_with_clock(db, &url, &as_pairs(&vars), clock.clone()).await;
    {
        let (admin, _, _) = tenant_with_principal(&app, "acme").await;
        set_hooks(&admin, &receiver, "acme").await;
    }
    clock.advance(Duration::from_secs(3_600));
    let f = Fixture {
        app: &app,
        clock,
        receiver,
    };
    Case::Auth(Some("acme")).hold(&f).await;
    assert_eq!(
        f.run().await,
        [notice("auth_failure_spike", "acme", "fired")]
    );

    // The actor panics on its next message and is restarted fresh.
    let armed = app
        .post_json_as_admin(
            "/admin/debug/faults",
            &json!({"actor": "alerts", "kind": "panic", "times": 1}),
        )
        .await;
    assert_eq!(armed.status().as_u16(), 202);
    let failed = app
        .client
        .post(app.url("/admin/alerts/run"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status().as_u16(), 503);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = app.health().await;
        if health["components"]["actors"]["alerts"]["status"] == "running"
            && health["components"]["actors"]["alerts"]["restarts"] == 1
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(f.run().await.is_empty(), "no page again after the restart");
    f.advance(Duration::from_secs(5 * 60));
    assert_eq!(
        f.run().await,
        [notice("auth_failure_spike", "acme", "resolved")]
    );
    assert_eq!(
        f.expect_alerts("/acme/audit", 2).await,
        ["fired", "resolved"]
    );
}
