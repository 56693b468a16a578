//! The media-buy status cycle: set-based transitions in SQL, each committed
//! with its audit row and its notices in one transaction, the same SQL on
//! both backends (generated into each by [`scheduler_queries`]).
//!
//! One cycle is three `UPDATE … RETURNING` statements in one transaction; if
//! that transaction fails (a row the database refuses), the cycle falls back
//! to one transaction per due media buy, so one bad row never stops the
//! others. On PostgreSQL the cycle runs under a session advisory lock: with
//! several replicas, one runs it and the others report `locked_out`. The
//! Each move also queues the buyer's status-change webhook (one per active
//! push-notification config of the buy's principal) in the same
//! transaction. The statements are idempotent on their own (a row leaves the state they
//! match), so a second cycle right after changes nothing.

use chrono::{DateTime, Utc};
use overseer_actors::audit::{AuditEvent, CommittedEvent};
use overseer_actors::notify::{Notification, NotificationEvent};

/// One automatic transition.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rule {
    pub from: &'static str,
    pub to: &'static str,
    pub reason: &'static str,
    /// On `media_buys`, with `$1` the cycle's time.
    pub condition: &'static str,
}

/// A `pending_activation` buy whose flight is running and whose assigned
/// creatives are all approved (none assigned counts as approved): due to go
/// live, if its budget allows.
macro_rules! activation_due {
    () => {
        "status = 'pending_activation' AND flight_start <= $1 AND flight_end >= $1 \
             AND NOT EXISTS (SELECT 1 FROM creative_assignments ca JOIN creatives c \
                 ON c.tenant_id = ca.tenant_id AND c.principal_id = ca.principal_id \
                 AND c.id = ca.creative_id \
                 WHERE ca.media_buy_id = media_buys.id AND c.status <> 'approved')"
    };
}

/// Activation refuses a budget above the approved one: the rule of
/// [`check_activation`](crate::domain::media_buy::check_activation), in SQL so
/// that the set-based move stays one atomic statement. (The database refuses
/// such an `active` row anyway; this keeps the batch from failing on it.)
macro_rules! within_approved_budget {
    () => {
        "approved_budget_micros IS NOT NULL AND budget_micros <= approved_budget_micros"
    };
}

/// Due buys that `within_approved_budget!` holds back: reported each cycle
/// with [`check_activation`](crate::domain::media_buy::check_activation)'s
/// reason.
pub(super) const ACTIVATION_REFUSED: &str = concat!(
    activation_due!(),
    " AND NOT (",
    within_approved_budget!(),
    ")"
);

/// In order: a buy whose flight ended before it could start is `failed` (it
/// never ran: it must not count as a delivered campaign); a buy whose flight
/// has started goes live when every assigned creative is approved (none
/// assigned counts as approved) and its budget is within its approved
/// budget; a live buy whose flight ended is `completed`. `paused`,
/// `pending_approval` and the final states are never touched.
pub(super) const RULES: [Rule; 3] = [
    Rule {
        from: "pending_activation",
        to: "failed",
        reason: "the flight ended before the media buy could start",
        condition: "status = 'pending_activation' AND flight_end < $1",
    },
    Rule {
        from: "pending_activation",
        to: "active",
        reason: "the flight started and every assigned creative is approved",
        condition: concat!(activation_due!(), " AND ", within_approved_budget!()),
    },
    Rule {
        from: "active",
        to: "completed",
        reason: "the flight ended",
        condition: "status = 'active' AND flight_end < $1",
    },
];

/// Only the buys of active tenants move.
pub(super) const ACTIVE_TENANT: &str = "tenant_id IN (SELECT id FROM tenants WHERE is_active)";

/// A buy that moved.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Moved {
    pub id: String,
    pub tenant_id: String,
    pub principal_id: String,
    pub order_name: String,
}

/// What one cycle did.
#[derive(Debug, Clone, Default)]
pub struct StatusCycle {
    /// Another replica holds the scheduler lock; nothing was done.
    pub locked_out: bool,
    /// `(from, to, count)` for each rule that moved at least one buy.
    pub transitions: Vec<(String, String, u64)>,
    /// `(media_buy_id, reason)` of rows that could not be moved.
    pub errors: Vec<(String, String)>,
    /// The audit rows committed with the transitions.
    pub committed: Vec<CommittedEvent>,
}

impl StatusCycle {
    pub(super) fn add(&mut self, rule: &Rule, n: usize) {
        if n == 0 {
            return;
        }
        match self
            .transitions
            .iter_mut()
            .find(|(from, to, _)| from == rule.from && to == rule.to)
        {
            Some((_, _, count)) => *count += n as u64,
            None => self
                .transitions
                .push((rule.from.to_owned(), rule.to.to_owned(), n as u64)),
        }
    }
}

/// The audit row and the notice of each move.
pub(super) fn effects_of(
    moved: &[(Rule, Moved)],
    now: DateTime<Utc>,
) -> (Vec<AuditEvent>, Vec<Notification>) {
    let mut audit = Vec::with_capacity(moved.len());
    let mut notes = Vec::with_capacity(moved.len());
    for (rule, buy) in moved {
        audit.push(
            AuditEvent::new("media_buy_status_changed", now)
                .with_tenant(buy.tenant_id.clone())
                .with_principal("system", Some("System".to_owned()))
                .with_details(serde_json::json!({
                    "media_buy_id": buy.id,
                    "from": rule.from,
                    "to": rule.to,
                    "reason": rule.reason,
                })),
        );
        let (media_buy_id, principal_id, order_name, reason) = (
            buy.id.clone(),
            buy.principal_id.clone(),
            buy.order_name.clone(),
            rule.reason.to_owned(),
        );
        let event = match rule.to {
            "active" => NotificationEvent::MediaBuyActivated {
                media_buy_id,
                principal_id,
                order_name,
                reason,
            },
            "completed" => NotificationEvent::MediaBuyCompleted {
                media_buy_id,
                principal_id,
                order_name,
                reason,
            },
            _ => NotificationEvent::MediaBuyFailed {
                media_buy_id,
                principal_id,
                order_name,
                error: reason,
            },
        };
        notes.push(Notification::new(Some(buy.tenant_id.clone()), event, now));
    }
    (audit, notes)
}

/// The buyer's status-change webhooks of each move: one per active
/// push-notification config of the buy's principal.
pub(super) fn webhooks_of(
    moved: &[(Rule, Moved)],
    configs: &[(String, String)],
    now: DateTime<Utc>,
) -> Vec<super::webhooks::NewWebhook> {
    moved
        .iter()
        .flat_map(|(rule, buy)| {
            configs
                .iter()
                .filter(move |(_, principal)| *principal == buy.principal_id)
                .map(move |(config, _)| {
                    super::webhooks::status_change(&buy.tenant_id, config, &buy.id, rule.to, now)
                })
        })
        .collect()
}

macro_rules! scheduler_queries {
    () => {
        /// Applies every rule in `tx` (to `only` that buy if given).
        async fn status_moves(
            &self,
            tx: &mut sqlx::Transaction<'_, Db>,
            now: chrono::DateTime<chrono::Utc>,
            only: Option<&str>,
        ) -> Result<Vec<(super::scheduler::Rule, super::scheduler::Moved)>, sqlx::Error> {
            let mut moved = Vec::new();
            for rule in super::scheduler::RULES {
                let sql = format!(
                    "UPDATE media_buys SET status = '{}', updated_at = $1 WHERE {} AND {}{} \
                     RETURNING id, tenant_id, principal_id, order_name",
                    rule.to,
                    rule.condition,
                    super::scheduler::ACTIVE_TENANT,
                    if only.is_some() { " AND id = $2" } else { "" },
                );
                let mut query = sqlx::query_as::<_, super::scheduler::Moved>(sqlx::AssertSqlSafe(sql))
                    .persistent(self.persistent)
                    .bind(now);
                if let Some(id) = only {
                    query = query.bind(id.to_owned());
                }
                let rows = query.fetch_all(&mut **tx).await?;
                moved.extend(rows.into_iter().map(|row| (rule, row)));
            }
            Ok(moved)
        }

        /// Moves `only` (or every due buy) in one transaction with its
        /// audit rows and notices.
        async fn status_step(
            &self,
            now: chrono::DateTime<chrono::Utc>,
            only: Option<&str>,
            cycle: &mut super::scheduler::StatusCycle,
        ) -> Result<(), sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let moved = self.status_moves(&mut tx, now, only).await?;
            let mut principals: Vec<String> =
                moved.iter().map(|(_, m)| m.principal_id.clone()).collect();
            principals.sort_unstable();
            principals.dedup();
            let configs = self.active_push_configs_in(&mut tx, &principals).await?;
            let hooks = super::scheduler::webhooks_of(&moved, &configs, now);
            self.queue_webhooks_in(&mut tx, &hooks).await?;
            let (audit, notes) = super::scheduler::effects_of(&moved, now);
            let committed = self
                .commit_with(tx, super::domain::Effects::with(&audit, &notes))
                .await?;
            for rule in super::scheduler::RULES {
                let n = moved
                    .iter()
                    .filter(|(r, _)| r.from == rule.from && r.to == rule.to)
                    .count();
                cycle.add(&rule, n);
            }
            cycle.committed.extend(committed);
            Ok(())
        }

        /// Buys due to go live that activation refuses (their budget is
        /// above the approved one), each with the domain's reason.
        async fn activation_refusals(
            &self,
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<(String, String)>, sqlx::Error> {
            let sql = format!(
                "SELECT id, budget_micros, approved_budget_micros FROM media_buys WHERE {} AND {} \
                 ORDER BY id",
                super::scheduler::ACTIVATION_REFUSED,
                super::scheduler::ACTIVE_TENANT,
            );
            let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows
                .into_iter()
                .filter_map(|(id, budget, approved)| {
                    crate::domain::media_buy::check_activation(
                        crate::domain::Amount::from_micros(budget),
                        approved.map(crate::domain::Amount::from_micros),
                    )
                    .err()
                    .map(|refused| (id, format!("not activated: {}", refused.0)))
                })
                .collect())
        }

        /// One status cycle at `now`.
        pub(super) async fn run_status_cycle(
            &self,
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<super::scheduler::StatusCycle, sqlx::Error> {
            let mut cycle = super::scheduler::StatusCycle::default();
            let Some(lock) = self.scheduler_lock().await? else {
                cycle.locked_out = true;
                return Ok(cycle);
            };
            let outcome = match self.activation_refusals(now).await {
                Ok(refused) => {
                    for (id, reason) in &refused {
                        tracing::warn!(media_buy_id = %id, %reason, "status cycle: activation refused");
                    }
                    cycle.errors.extend(refused);
                    self.status_cycle_locked(now, &mut cycle).await
                }
                Err(err) => Err(err),
            };
            self.scheduler_unlock(lock).await;
            outcome.map(|()| cycle)
        }

        async fn status_cycle_locked(
            &self,
            now: chrono::DateTime<chrono::Utc>,
            cycle: &mut super::scheduler::StatusCycle,
        ) -> Result<(), sqlx::Error> {
            let batch = match self.status_step(now, None, cycle).await {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            tracing::warn!(error = %batch, "status cycle: the batch was refused; moving each due media buy on its own");
            let conditions: Vec<String> = super::scheduler::RULES
                .iter()
                .map(|r| format!("({})", r.condition))
                .collect();
            let sql = format!(
                "SELECT id FROM media_buys WHERE ({}) AND {} ORDER BY id",
                conditions.join(" OR "),
                super::scheduler::ACTIVE_TENANT,
            );
            let due: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
            for id in due {
                if let Err(err) = self.status_step(now, Some(&id), cycle).await {
                    let reason = super::StoreError::from_sqlx(err, self.query_timeout).short_reason();
                    tracing::warn!(media_buy_id = %id, %reason, "status cycle: could not move a media buy");
                    cycle.errors.push((id, reason));
                }
            }
            Ok(())
        }
    };
}

pub(super) use scheduler_queries;
