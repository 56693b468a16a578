//! The service's actors, each started under the supervisor, and the ports the
//! actors crate asks the service to implement.
//!
//! Adding an actor is one `supervisor.spawn(name, policy, factory)` line in
//! [`start`]; its status then shows in `/health` and its restarts in the logs
//! and `/metrics` without further work.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use overseer_actors::Clock;
use overseer_actors::audit::{AuditConfig, Auditor, Redactor, SinkConfig};
use overseer_actors::db_watch::{DatabaseProbe, DatabaseWatch};
use overseer_actors::mock_adapter::{ActiveBuy, DeliveryStore, MockAdapter, SimRow};
use overseer_actors::notify::{Notification, NotificationOutbox};
use overseer_actors::scheduler::{
    CycleOutcome, RowError, StatusCycle, StatusScheduler, TransitionCount,
};
use overseer_actors::security::SecurityMonitor;
use overseer_actors::slack::SlackRouter;
use overseer_actors::supervisor::Supervisor;

pub use crate::services::Actors;

use crate::config::Config;
use crate::domain::Amount;
use crate::domain::media_buy::DeliveryRow;
use crate::store::Effects;
use crate::store::Store;

impl DatabaseProbe for Store {
    fn ping(&self) -> Pin<Box<dyn Future<Output = Result<Duration, String>> + Send + 'static>> {
        let store = self.clone();
        Box::pin(async move { store.ping().await.map_err(|e| e.short_reason()) })
    }
}

impl NotificationOutbox for Store {
    fn enqueue(
        &self,
        notification: Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        let store = self.clone();
        Box::pin(async move {
            store
                .enqueue_notification(&notification)
                .await
                .map_err(|e| e.short_reason())
        })
    }

    fn enqueue_all(
        &self,
        notifications: Vec<Notification>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        let store = self.clone();
        Box::pin(async move {
            store
                .enqueue_notifications(&notifications)
                .await
                .map_err(|e| e.short_reason())
        })
    }
}

impl DeliveryStore for Store {
    fn active_buys(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<ActiveBuy>, String>> + Send + 'static>> {
        let store = self.clone();
        Box::pin(async move { store.active_buys().await.map_err(|e| e.short_reason()) })
    }

    /// Simulated delivery is not audited: it is no one's operation, and a
    /// row per buy per tick would drown the trail.
    fn record(
        &self,
        media_buy_id: String,
        rows: Vec<SimRow>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        let store = self.clone();
        Box::pin(async move {
            let rows: Vec<DeliveryRow> = rows
                .into_iter()
                .map(|r| DeliveryRow {
                    package_id: r.package_id,
                    day: r.day.format("%Y-%m-%d").to_string(),
                    impressions: r.impressions,
                    clicks: r.clicks,
                    spend: Amount::from_micros(r.spend_micros),
                })
                .collect();
            // Simulated spend is at most 1.15 times the budget; the ceiling
            // multiple keeps the bound that no sum of it can overflow.
            match store
                .upsert_delivery(
                    &media_buy_id,
                    &rows,
                    crate::domain::SpendMultiple::CEILING,
                    chrono::Utc::now(),
                    Effects::default(),
                )
                .await
                .map_err(|e| e.short_reason())?
            {
                crate::store::DeliveryWrite::Stored(_) => Ok(()),
                crate::store::DeliveryWrite::SpendAboveCap { .. } => {
                    Err("simulated spend above the cap".to_owned())
                }
            }
        })
    }
}

/// The status cycle as the scheduler calls it: the store's set-based cycle,
/// whose committed audit rows then go to the sinks and the activity stream.
struct StoreStatusCycle {
    store: Store,
    auditor: Auditor,
}

impl StatusCycle for StoreStatusCycle {
    fn run(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Pin<Box<dyn Future<Output = Result<CycleOutcome, String>> + Send + 'static>> {
        let (store, auditor) = (self.store.clone(), self.auditor.clone());
        Box::pin(async move {
            let cycle = store
                .run_status_cycle(now)
                .await
                .map_err(|e| e.short_reason())?;
            auditor.committed(cycle.committed);
            Ok(CycleOutcome {
                locked_out: cycle.locked_out,
                transitions: cycle
                    .transitions
                    .into_iter()
                    .map(|(from, to, count)| TransitionCount { from, to, count })
                    .collect(),
                errors: cycle
                    .errors
                    .into_iter()
                    .map(|(media_buy_id, reason)| RowError {
                        media_buy_id,
                        reason,
                    })
                    .collect(),
            })
        })
    }
}

/// The delivery-report cycle as the scheduler calls it. Its "transitions"
/// are the reports queued: `report → scheduled` and `report → final`.
struct StoreReportCycle {
    store: Store,
}

impl StatusCycle for StoreReportCycle {
    fn run(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Pin<Box<dyn Future<Output = Result<CycleOutcome, String>> + Send + 'static>> {
        let store = self.store.clone();
        Box::pin(async move {
            let cycle =
                crate::services::reports::run_cycle(&store, now, None, false, Effects::default())
                    .await
                    .map_err(|e| e.short_reason())?;
            let count = |to: &str, count: u64| TransitionCount {
                from: "report".into(),
                to: to.into(),
                count,
            };
            Ok(CycleOutcome {
                locked_out: false,
                transitions: [
                    count("scheduled", cycle.scheduled),
                    count("final", cycle.finals),
                ]
                .into_iter()
                .filter(|t| t.count > 0)
                .collect(),
                errors: cycle
                    .errors
                    .into_iter()
                    .map(|(media_buy_id, reason)| RowError {
                        media_buy_id,
                        reason,
                    })
                    .collect(),
            })
        })
    }
}

/// The alert rules' port: the store's counts and `alerts` table.
struct StoreAlerts {
    store: Store,
}

impl overseer_actors::alerts::AlertStore for StoreAlerts {
    fn read(
        &self,
        windows: overseer_actors::alerts::Windows,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<overseer_actors::alerts::Readings, String>> + Send + 'static,
        >,
    > {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.alert_readings(&windows).await) })
    }

    fn current(
        &self,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Vec<overseer_actors::alerts::Alert>, String>>
                + Send
                + 'static,
        >,
    > {
        let store = self.store.clone();
        Box::pin(async move {
            store
                .current_alerts(None)
                .await
                .map_err(|e| e.short_reason())
        })
    }

    fn apply(
        &self,
        change: overseer_actors::alerts::AlertChange,
        audit: Vec<overseer_actors::audit::AuditEvent>,
        notifications: Vec<Notification>,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Option<Vec<overseer_actors::audit::CommittedEvent>>, String>>
                + Send
                + 'static,
        >,
    > {
        let store = self.store.clone();
        Box::pin(async move {
            store
                .apply_alert(&change, Effects::with(&audit, &notifications))
                .await
                .map_err(|e| e.short_reason())
        })
    }
}

/// Starts every actor of the service on the current actix arbiter. Fails only
/// if the audit spool or log directory cannot be opened.
pub fn start(config: &Config, store: &Store, clock: Arc<dyn Clock>) -> std::io::Result<Actors> {
    let supervisor = Supervisor::new(clock.clone());
    let policy = config.supervision.policy.clone();

    let probe: Arc<dyn DatabaseProbe> = Arc::new(store.clone());
    let interval = config.supervision.database_watch_interval;
    let database_watch = supervisor.spawn("database_watch", policy.clone(), move |child| {
        DatabaseWatch::new(child.clone(), probe.clone(), interval)
    });

    let audit = &config.audit;
    let auditor = Auditor::start(
        &supervisor,
        policy.clone(),
        AuditConfig {
            batch_size: audit.batch_size,
            flush_interval: audit.flush_interval,
            pipeline: audit.pipeline,
            queue_capacity: audit.queue_capacity,
            redactor: Redactor {
                max_value_chars: audit.max_value_chars,
            },
            spool_dir: audit.spool_dir.clone(),
            sinks: SinkConfig {
                dir: config.log.dir.clone(),
                retention_days: audit.retention_days,
                audit_log: audit.audit_log,
                error_log: audit.error_log,
                structured: audit.structured_log,
                security: audit.security_log,
            },
        },
        Arc::new(store.clone()),
        clock.clone(),
    )?;

    // Agent runs: the API's recording path, and the recorder the timer
    // actors (and the alert evaluator) record their cycles through.
    let agent_runs = crate::services::agent_runs::AgentRuns::new(
        store.clone(),
        auditor.clone(),
        clock.clone(),
        config.agent_audit_enabled,
        Redactor {
            max_value_chars: audit.max_value_chars,
        },
    );

    let mock_adapter = config.mock_adapter.enabled.then(|| {
        let store: Arc<dyn DeliveryStore> = Arc::new(store.clone());
        let clock = clock.clone();
        let interval = config.mock_adapter.interval;
        supervisor.spawn("mock_adapter", policy.clone(), move |child| {
            MockAdapter::new(child.clone(), store.clone(), clock.clone(), interval)
        })
    });

    let security = SecurityMonitor::start(
        &supervisor,
        policy.clone(),
        config.security.monitor.clone(),
        auditor.clone(),
        Arc::new(store.clone()),
        clock.clone(),
    );

    if config.skip_cron {
        tracing::info!("SKIP_CRON=true: the schedulers run no timer (cycles on demand only)");
    }
    let status_scheduler = StatusScheduler::start_recorded(
        &supervisor,
        policy.clone(),
        "status",
        (!config.skip_cron).then_some(config.status_check_interval),
        Arc::new(StoreStatusCycle {
            store: store.clone(),
            auditor: auditor.clone(),
        }),
        clock.clone(),
        agent_runs.recorder(),
    );

    let delivery_scheduler = StatusScheduler::start_recorded(
        &supervisor,
        policy.clone(),
        "delivery",
        (!config.skip_cron).then_some(config.delivery_interval),
        Arc::new(StoreReportCycle {
            store: store.clone(),
        }),
        clock.clone(),
        agent_runs.recorder(),
    );

    let webhook_sender = overseer_actors::webhook::WebhookSender::start(
        &supervisor,
        policy.clone(),
        config.webhook.clone(),
        Arc::new(store.clone()),
        Arc::new(
            crate::adapters::webhooks::HttpWebhookTransport::new(
                config.ssrf.clone(),
                config.webhook_timeout,
                config.webhook_docker_rewrite,
            )
            .map_err(std::io::Error::other)?,
        ),
        auditor.clone(),
        clock.clone(),
    );

    let alerts = overseer_actors::alerts::Alerts::start(
        &supervisor,
        policy.clone(),
        config.alerts.clone(),
        overseer_actors::alerts::AlertPorts {
            store: Arc::new(StoreAlerts {
                store: store.clone(),
            }),
            probe: Arc::new(store.clone()),
            recorder: agent_runs.recorder(),
        },
        auditor.clone(),
        clock.clone(),
    );

    let transport =
        crate::adapters::slack::HttpTransport::new(config.ssrf.clone(), config.slack.timeout)
            .map_err(std::io::Error::other)?;
    let sse = overseer_actors::activity::SseHub::start(
        &supervisor,
        policy.clone(),
        config.sse.hub.clone(),
        crate::services::activity::feed(store, &auditor),
    );

    let slack = SlackRouter::start(
        &supervisor,
        policy,
        config.slack.router.clone(),
        Arc::new(store.clone()),
        Arc::new(transport),
        Arc::new(store.clone()),
        auditor.clone(),
        clock,
    );

    Ok(Actors {
        supervisor,
        database_watch,
        auditor,
        security,
        mock_adapter,
        slack,
        status_scheduler,
        delivery_scheduler,
        webhook_sender,
        sse,
        alerts,
        agent_runs,
    })
}
