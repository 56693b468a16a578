//! The store itself, on both backends.

use std::time::{Duration, Instant};

use chrono::Utc;
use overseer::domain::{NewTenant, TenantId, TenantName};
use overseer::store::{Store, StoreError};
use sqlx::{Connection, Executor};

use crate::helpers::{Backend, TestDatabase, config_from, on_both_backends};

on_both_backends!(
    tenants_round_trip_through_the_store,
    a_duplicate_tenant_is_a_conflict,
    migrations_are_idempotent_and_the_schema_reports_current,
    a_query_past_the_timeout_is_cancelled_and_reported,
    ended_sessions_are_remembered_until_they_would_have_expired,
    tenant_tokens_are_listed_revoked_and_rotated_within_their_tenant,
    a_batch_looks_up_only_the_log_ids_that_may_be_stored,
    the_trails_queries_read_an_index_newest_first,
);

async fn migrated_store(db: &TestDatabase, vars: &[(&str, &str)]) -> Store {
    let mut all = vec![("DATABASE_URL", db.url.as_str())];
    all.extend_from_slice(vars);
    let store = Store::open(&config_from(&all).database).unwrap();
    store.migrate().await.unwrap();
    store
}

fn new_tenant(id: &str) -> NewTenant {
    NewTenant {
        id: TenantId::parse("id", id).unwrap(),
        name: TenantName::parse("name", &format!("Tenant {id}")).unwrap(),
    }
}

async fn tenants_round_trip_through_the_store(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = migrated_store(&db, &[]).await;
    let now = overseer_actors::Clock::now(&overseer_actors::SystemClock);

    let (created, _) = store
        .insert_tenant(&new_tenant("acme"), now, &[])
        .await
        .unwrap();
    assert_eq!(created.created_at, now, "microsecond timestamps round-trip");
    assert_eq!(created.updated_at, now);
    assert!(created.is_active);

    let fetched = store.tenant(&created.id).await.unwrap();
    assert_eq!(fetched.as_ref(), Some(&created));
    assert_eq!(
        store
            .tenant(&TenantId::parse("id", "nobody").unwrap())
            .await
            .unwrap(),
        None
    );

    for id in ["c", "b"] {
        store
            .insert_tenant(&new_tenant(id), Utc::now(), &[])
            .await
            .unwrap();
    }
    let ids = |tenants: Vec<overseer::domain::Tenant>| {
        tenants
            .into_iter()
            .map(|t| t.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.list_tenants(None, 10).await.unwrap()),
        ["acme", "b", "c"]
    );
    assert_eq!(
        ids(store.list_tenants(None, 2).await.unwrap()),
        ["acme", "b"]
    );
    let after = TenantId::parse("id", "acme").unwrap();
    assert_eq!(
        ids(store.list_tenants(Some(&after), 10).await.unwrap()),
        ["b", "c"]
    );
}

async fn a_duplicate_tenant_is_a_conflict(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = migrated_store(&db, &[]).await;
    store
        .insert_tenant(&new_tenant("acme"), Utc::now(), &[])
        .await
        .unwrap();

    let err = store
        .insert_tenant(&new_tenant("acme"), Utc::now(), &[])
        .await
        .unwrap_err();

    assert!(
        matches!(&err, StoreError::Conflict(name) if name == "tenants_pkey" || name == "tenants.id"),
        "{err:?}"
    );
}

async fn migrations_are_idempotent_and_the_schema_reports_current(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = Store::open(&config_from(&[("DATABASE_URL", db.url.as_str())]).database).unwrap();

    assert!(
        !store.schema_is_current().await.unwrap(),
        "a fresh database has no schema"
    );
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.schema_is_current().await.unwrap());
}

/// A writer holds a lock the store's query needs; the query is cut at
/// `DATABASE_QUERY_TIMEOUT` and reported as a timeout. On PostgreSQL the server
/// itself cancels it (statement_timeout): nothing keeps waiting afterwards.
async fn a_query_past_the_timeout_is_cancelled_and_reported(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = migrated_store(&db, &[("DATABASE_QUERY_TIMEOUT", "300ms")]).await;

    let started = Instant::now();
    let err = match backend {
        Backend::Sqlite => {
            let mut blocker = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            blocker.execute("BEGIN IMMEDIATE").await.unwrap();
            blocker
                .execute("INSERT INTO tenants (id, name) VALUES ('held', 'Held')")
                .await
                .unwrap();
            let err = store
                .insert_tenant(&new_tenant("waiting"), Utc::now(), &[])
                .await
                .unwrap_err();
            blocker.execute("ROLLBACK").await.unwrap();
            err
        }
        Backend::Postgres => {
            let mut blocker = sqlx::PgConnection::connect(&db.url).await.unwrap();
            blocker.execute("BEGIN").await.unwrap();
            blocker
                .execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            let err = store.list_tenants(None, 10).await.unwrap_err();
            // The server cancelled the statement: no session of the store is
            // still waiting on the lock.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'overseer' AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut blocker)
            .await
            .unwrap();
            assert_eq!(
                waiting, 0,
                "the timed-out statement still waits on the server"
            );
            blocker.execute("ROLLBACK").await.unwrap();
            err
        }
    };

    assert!(matches!(err, StoreError::QueryTimeout(_)), "{err:?}");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    // The store works again once the lock is gone.
    store
        .insert_tenant(&new_tenant("after"), Utc::now(), &[])
        .await
        .unwrap();
}

mod postgres {
    use super::*;

    /// `USE_PGBOUNCER=true`: statements are sent unnamed, so none is left prepared
    /// on a server connection (PgBouncer's transaction pooling would hand that
    /// connection to someone else). Without it, sqlx caches named statements.
    #[actix_web::test]
    async fn pgbouncer_mode_leaves_no_prepared_statement_on_the_server() {
        async fn prepared_after_queries(use_pgbouncer: &str) -> i64 {
            let db = TestDatabase::new(Backend::Postgres).await;
            let store = migrated_store(
                &db,
                &[
                    ("USE_PGBOUNCER", use_pgbouncer),
                    ("DATABASE_MAX_CONNECTIONS", "1"),
                ],
            )
            .await;
            store
                .insert_tenant(&new_tenant("acme"), Utc::now(), &[])
                .await
                .unwrap();
            store.list_tenants(None, 10).await.unwrap();
            store.ping().await.unwrap();
            let Store::Postgres(pg) = &store else {
                unreachable!("a PostgreSQL store")
            };
            sqlx::query_scalar("SELECT count(*) FROM pg_prepared_statements")
                .persistent(false)
                .fetch_one(pg.pool())
                .await
                .unwrap()
        }

        assert_eq!(prepared_after_queries("true").await, 0);
        assert!(
            prepared_after_queries("false").await > 0,
            "the control case caches statements"
        );
    }
}

/// Sign-out's record: an ended session is known as ended (twice is once);
/// a later sign-out forgets those whose cookies have expired since.
async fn ended_sessions_are_remembered_until_they_would_have_expired(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = migrated_store(&db, &[]).await;

    store.end_session("first", 1_000, 500).await.unwrap();
    store.end_session("first", 1_000, 500).await.unwrap();
    assert!(store.session_ended("first").await.unwrap());
    assert!(!store.session_ended("second").await.unwrap());

    // At 1,000 the first would have expired: the next sign-out forgets it.
    store.end_session("second", 2_000, 1_000).await.unwrap();
    assert!(store.session_ended("second").await.unwrap());
    assert!(
        !store.session_ended("first").await.unwrap(),
        "expired by then: forgotten"
    );
    store.close().await;
}

async fn tenant_tokens_are_listed_revoked_and_rotated_within_their_tenant(backend: Backend) {
    use overseer::domain::{NewApiToken, TokenKind};
    use overseer::store::Effects;
    use overseer::store::tokens::Rotated;
    use overseer_actors::audit::AuditEvent;

    let db = TestDatabase::new(backend).await;
    let store = migrated_store(&db, &[]).await;
    // Whole milliseconds: PostgreSQL keeps microseconds, not nanoseconds.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
    let acme = new_tenant("acme");
    let globex = new_tenant("globex");
    store.insert_tenant(&acme, now, &[]).await.unwrap();
    store.insert_tenant(&globex, now, &[]).await.unwrap();
    let mut ids = Vec::new();
    let mut hashes = Vec::new();
    for kind in [TokenKind::Admin, TokenKind::Ingest, TokenKind::Adapter] {
        let (_, token) = NewApiToken::generate(acme.id.clone(), kind, now, None);
        store.insert_api_token(&token).await.unwrap();
        ids.push(token.id);
        hashes.push(token.token_hash);
    }
    let (_, theirs) = NewApiToken::generate(globex.id.clone(), TokenKind::Ingest, now, None);
    store.insert_api_token(&theirs).await.unwrap();

    // Listed by id, in pages, only acme's.
    let mut sorted = ids.clone();
    sorted.sort();
    let first = store.tenant_tokens(&acme.id, None, 2).await.unwrap();
    let rest = store
        .tenant_tokens(&acme.id, Some(&first[1].token_id), 2)
        .await
        .unwrap();
    let listed: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|t| t.token_id.clone())
        .collect();
    assert_eq!(listed, sorted);
    assert!(
        store
            .tenant_token(&acme.id, &theirs.id)
            .await
            .unwrap()
            .is_none()
    );

    // Revoked once, with its audit row in the same transaction. (Each
    // change gets an event of its own: a `log_id` is stored once.)
    let audit = [AuditEvent::new("revoke_tenant_token", now).with_tenant("acme")];
    let (revoked, committed) = store
        .revoke_tenant_token(&acme.id, &ids[0], now, Effects::audit(&audit))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(committed.len(), 1);
    assert!(revoked.revoked_at.is_some());
    // What authentication reads: revoked.
    let read = store.api_token(&hashes[0]).await.unwrap().unwrap();
    assert!(read.revoked_at.is_some());
    let again = store
        .revoke_tenant_token(&acme.id, &ids[0], now, Effects::audit(&audit))
        .await
        .unwrap();
    assert!(again.is_none(), "revoked already: nothing written");
    // Another tenant's token is not touched through acme.
    assert!(
        store
            .revoke_tenant_token(&acme.id, &theirs.id, now, Effects::audit(&audit))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .tenant_token(&globex.id, &theirs.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    // Rotated: the old one revoked and the new one stored, together.
    let audit = [AuditEvent::new("rotate_tenant_token", now).with_tenant("acme")];
    let (_, new) = NewApiToken::generate(acme.id.clone(), TokenKind::Ingest, now, None);
    let rotated = store
        .rotate_tenant_token(&acme.id, &ids[1], &new, Effects::audit(&audit))
        .await
        .unwrap();
    assert!(
        matches!(rotated, Rotated::Done(ref rows) if rows.len() == 1),
        "{rotated:?}"
    );
    assert!(
        store
            .tenant_token(&acme.id, &ids[1])
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert_eq!(
        store.tenant_token(&acme.id, &new.id).await.unwrap(),
        Some(new.listed())
    );
    assert!(store.api_token(&new.token_hash).await.unwrap().is_some());
    let (_, newer) = NewApiToken::generate(acme.id.clone(), TokenKind::Ingest, now, None);
    for (id, expected) in [(&ids[1], "revoked"), (&theirs.id, "missing")] {
        let outcome = store
            .rotate_tenant_token(&acme.id, id, &newer, Effects::audit(&audit))
            .await
            .unwrap();
        match (outcome, expected) {
            (Rotated::AlreadyRevoked, "revoked") | (Rotated::NotFound, "missing") => {}
            (other, _) => panic!("{id}: {other:?}"),
        }
    }
    assert!(
        store
            .tenant_token(&acme.id, &newer.id)
            .await
            .unwrap()
            .is_none()
    );
    store.close().await;
}

/// `append_audit_after` looks up only the `log_id`s it is told may be stored:
/// a stored event among them is skipped and the rest of the batch stored; a
/// stored event it was not told of makes the unique index refuse the whole
/// batch, so nothing is stored twice either way.
async fn a_batch_looks_up_only_the_log_ids_that_may_be_stored(backend: Backend) {
    use overseer_actors::audit::{AuditEvent, Offer, Turn};

    let db = TestDatabase::new(backend).await;
    let store = migrated_store(&db, &[]).await;
    let now = Utc::now();
    let offer = |maybe_stored: Vec<uuid::Uuid>| Offer {
        maybe_stored,
        shares: Vec::new(),
        now,
    };
    let event = |i: i64| {
        AuditEvent::new("looked_up", now + chrono::Duration::microseconds(i))
            .with_tenant("acme")
            .with_details(serde_json::json!({"i": i}))
    };
    let first = event(0);
    store
        .append_audit(std::slice::from_ref(&first))
        .await
        .unwrap();

    // Told of: skipped, and the new event follows it in the chain.
    let second = event(1);
    let stored = store
        .append_audit_after(
            &[first.clone(), second.clone()],
            &offer(vec![first.log_id]),
            &mut Turn::default(),
        )
        .await
        .unwrap()
        .expect("no batch before it")
        .committed;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].event.log_id, second.log_id);
    assert_eq!(stored[0].seq, 2);

    // Not told of: the unique index refuses the batch, the new event with it.
    let third = event(2);
    let refused = store
        .append_audit_after(
            &[third.clone(), first.clone()],
            &offer(Vec::new()),
            &mut Turn::default(),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // Nothing to look up, nothing repeated: stored.
    let stored = store
        .append_audit_after(
            std::slice::from_ref(&third),
            &offer(Vec::new()),
            &mut Turn::default(),
        )
        .await
        .unwrap()
        .expect("no batch before it")
        .committed;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].seq, 3);

    let rows = store
        .audit_chain("acme", 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.event.log_id)
        .collect::<Vec<_>>();
    assert_eq!(rows, vec![first.log_id, second.log_id, third.log_id]);
    let verdict = overseer::adapters::audit::verify_chain(&store, Some("acme"))
        .await
        .unwrap();
    assert!(verdict.ok && verdict.checked == 3, "{verdict:?}");
    store.close().await;
}

/// The trail's indexes are ascending (rows arrive newest last, so inserts land
/// at each index's right edge); the operator's queries, newest first, must
/// still read them in order, backward, instead of sorting what they match.
async fn the_trails_queries_read_an_index_newest_first(backend: Backend) {
    use overseer::store::{AuditPosition, AuditQuery};
    use overseer_actors::audit::AuditEvent;

    let db = TestDatabase::new(backend).await;
    let store = migrated_store(&db, &[]).await;
    let start = Utc::now() - chrono::Duration::days(2);
    let operations = ["get_tenant", "token_validated", "create_media_buy"];
    for chunk in 0..40_i64 {
        let events: Vec<AuditEvent> = (0..500_i64)
            .map(|i| {
                let n = chunk * 500 + i;
                let mut event = AuditEvent::new(
                    operations[(n % 3) as usize],
                    start + chrono::Duration::seconds(n * 8),
                );
                event.tenant_id = Some(format!("t{}", n % 4));
                event.principal_id = Some(format!("p{}", n % 7));
                event.success = n % 5 != 0;
                event
            })
            .collect();
        store.append_audit(&events).await.unwrap();
    }
    if backend == Backend::Postgres {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        conn.execute("ANALYZE audit_logs").await.unwrap();
    }

    let tenant = |q: AuditQuery| AuditQuery {
        tenant_id: Some("t1".into()),
        limit: 50,
        ..q
    };
    let queries = [
        ("a tenant's trail", tenant(AuditQuery::default())),
        (
            "one operation",
            tenant(AuditQuery {
                operations: vec!["token_validated".into()],
                ..AuditQuery::default()
            }),
        ),
        (
            "one principal",
            tenant(AuditQuery {
                principal_id: Some("p3".into()),
                ..AuditQuery::default()
            }),
        ),
        (
            "failures",
            tenant(AuditQuery {
                success: Some(false),
                ..AuditQuery::default()
            }),
        ),
        (
            "the last 24 h, past a cursor",
            tenant(AuditQuery {
                since: Some(Utc::now() - chrono::Duration::hours(24)),
                before: Some(AuditPosition {
                    created_at: Utc::now() - chrono::Duration::hours(1),
                    id: 15_000,
                }),
                ..AuditQuery::default()
            }),
        ),
        (
            "every tenant (the super admin)",
            AuditQuery {
                limit: 50,
                ..AuditQuery::default()
            },
        ),
    ];
    for (what, query) in queries {
        let plan = store.audit_logs_plan(&query).await.unwrap();
        let text = plan.join("\n");
        match backend {
            Backend::Postgres => {
                assert!(
                    plan.iter().any(
                        |line| line.contains("Index Scan Backward using audit_logs_")
                            || line.contains("Index Only Scan Backward using audit_logs_")
                    ),
                    "{what}: no index read newest first:\n{text}"
                );
                // An incremental sort orders only the rows of one timestamp.
                assert!(
                    !plan.iter().any(|line| line
                        .trim_start()
                        .trim_start_matches("->")
                        .trim_start()
                        .starts_with("Sort  (")),
                    "{what}: sorts what it matches:\n{text}"
                );
            }
            Backend::Sqlite => {
                assert!(
                    plan.iter().any(|line| line.contains("INDEX audit_logs_")),
                    "{what}: no index:\n{text}"
                );
                assert!(
                    !text.contains("TEMP B-TREE"),
                    "{what}: sorts what it matches:\n{text}"
                );
            }
        }
    }
    store.close().await;
}
