//! The `mock` ad-server adapter: simulates plausible delivery for active
//! media buys, so delivery reports have data in a demo (`MOCK_ADAPTER=true`).
//!
//! Each tick it writes, for every package of every active buy, the delivery
//! of *today so far*: the package's daily budget (budget spread evenly over
//! the flight's days) times the fraction of the day gone, times a pace
//! between 0.85 and 1.15 that is fixed per package and day (so a re-run
//! writes the same figures, and days differ). Impressions follow from spend
//! and the package's rate (CPM-like models; an eCPM of 10 otherwise), clicks
//! at 0.1–0.3 % of impressions. Writes are upserts of cumulative daily rows:
//! idempotent, and a restart changes nothing.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, NaiveDate, Utc};

use crate::Clock;
use crate::supervisor::Child;

/// A package of an active buy, as the simulation needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimPackage {
    pub package_id: String,
    pub budget_micros: i64,
    pub pricing_model: String,
    pub rate_micros: i64,
}

/// An active media buy.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveBuy {
    pub media_buy_id: String,
    pub flight_start: DateTime<Utc>,
    pub flight_end: DateTime<Utc>,
    pub packages: Vec<SimPackage>,
}

/// One simulated row: a package's delivery on a day, cumulative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRow {
    pub package_id: String,
    pub day: NaiveDate,
    pub impressions: i64,
    pub clicks: i64,
    pub spend_micros: i64,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

/// The port: reads active buys, writes their simulated delivery.
pub trait DeliveryStore: Send + Sync + 'static {
    fn active_buys(&self) -> BoxFuture<Vec<ActiveBuy>>;
    fn record(&self, media_buy_id: String, rows: Vec<SimRow>) -> BoxFuture<()>;
}

/// Today's delivery so far for `buy`, at `now`. Nothing outside the flight.
pub fn simulate(buy: &ActiveBuy, now: DateTime<Utc>) -> Vec<SimRow> {
    if now < buy.flight_start || now >= buy.flight_end {
        return Vec::new();
    }
    let flight_days =
        ((buy.flight_end - buy.flight_start).num_seconds() as f64 / 86_400.0).max(1.0);
    let day = now.date_naive();
    let day_start = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now);
    let gone = ((now - day_start).num_seconds() as f64 / 86_400.0).clamp(0.0, 1.0);
    buy.packages
        .iter()
        .map(|p| {
            let mut h = DefaultHasher::new();
            (&buy.media_buy_id, &p.package_id, day).hash(&mut h);
            let seed = h.finish();
            let pace = 0.85 + (seed % 1_000) as f64 / 1_000.0 * 0.30;
            let ctr = 0.001 + ((seed / 1_000) % 1_000) as f64 / 1_000.0 * 0.002;
            let spend = p.budget_micros as f64 / flight_days * gone * pace;
            let cpm_micros = match p.pricing_model.as_str() {
                "cpm" | "vcpm" if p.rate_micros > 0 => p.rate_micros as f64,
                _ => 10_000_000.0,
            };
            let impressions = (spend / cpm_micros * 1_000.0).floor();
            SimRow {
                package_id: p.package_id.clone(),
                day,
                impressions: impressions as i64,
                clicks: (impressions * ctr).floor() as i64,
                spend_micros: spend.floor() as i64,
            }
        })
        .collect()
}

/// What one tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOutcome {
    /// Rows written for this many buys.
    Simulated {
        buys: usize,
        rows: usize,
    },
    Failed,
}

/// One tick's work: plain async, testable without actix.
pub async fn run_once(store: &dyn DeliveryStore, now: DateTime<Utc>) -> SimOutcome {
    let buys = match store.active_buys().await {
        Ok(buys) => buys,
        Err(reason) => {
            tracing::warn!(%reason, "mock adapter: could not read active media buys");
            return SimOutcome::Failed;
        }
    };
    let (mut n, mut rows) = (0, 0);
    for buy in buys {
        let simulated = simulate(&buy, now);
        if simulated.is_empty() {
            continue;
        }
        let count = simulated.len();
        match store.record(buy.media_buy_id.clone(), simulated).await {
            Ok(()) => {
                n += 1;
                rows += count;
            }
            // One bad buy never stops the others.
            Err(reason) => {
                tracing::warn!(media_buy_id = %buy.media_buy_id, %reason, "mock adapter: could not record delivery")
            }
        }
    }
    SimOutcome::Simulated { buys: n, rows }
}

/// The supervised actor: [`run_once`] every `interval`.
pub struct MockAdapter {
    child: Child,
    store: Arc<dyn DeliveryStore>,
    clock: Arc<dyn Clock>,
    interval: Duration,
}

impl MockAdapter {
    pub fn new(
        child: Child,
        store: Arc<dyn DeliveryStore>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Self {
        Self {
            child,
            store,
            clock,
            interval,
        }
    }

    fn tick(&self) -> impl ActorFuture<Self, Output = SimOutcome> + 'static {
        let store = self.store.clone();
        let now = self.clock.now();
        async move { run_once(store.as_ref(), now).await }.into_actor(self)
    }
}

impl Actor for MockAdapter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, ctx| {
            if act.child.trip(ctx) {
                return;
            }
            ctx.wait(act.tick().map(|_, _, _| ()));
        });
    }
}

/// Runs one simulation now; answers what it did.
#[derive(Debug, Message)]
#[rtype(result = "SimOutcome")]
pub struct SimulateNow;

impl Handler<SimulateNow> for MockAdapter {
    type Result = ResponseActFuture<Self, SimOutcome>;

    fn handle(&mut self, _: SimulateNow, ctx: &mut Context<Self>) -> Self::Result {
        if self.child.trip(ctx) {
            return Box::pin(fut::ready(SimOutcome::Failed));
        }
        Box::pin(self.tick())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn buy() -> ActiveBuy {
        ActiveBuy {
            media_buy_id: "mb_1".into(),
            flight_start: Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap(),
            flight_end: Utc.with_ymd_and_hms(2027, 3, 11, 0, 0, 0).unwrap(),
            packages: vec![
                SimPackage {
                    package_id: "a".into(),
                    budget_micros: 10_000_000_000,
                    pricing_model: "cpm".into(),
                    rate_micros: 5_000_000,
                },
                SimPackage {
                    package_id: "b".into(),
                    budget_micros: 1_000_000_000,
                    pricing_model: "flat_rate".into(),
                    rate_micros: 0,
                },
            ],
        }
    }

    #[test]
    fn pacing_follows_the_daily_budget_and_the_hour() {
        let noon = Utc.with_ymd_and_hms(2027, 3, 5, 12, 0, 0).unwrap();
        let rows = simulate(&buy(), noon);
        assert_eq!(rows.len(), 2);
        // 10,000 over 10 days, half a day gone: 500 at pace 0.85..1.15.
        let spend = rows[0].spend_micros as f64 / 1e6;
        assert!((425.0..=575.0).contains(&spend), "{spend}");
        // CPM 5: 1,000 impressions per 5 spent.
        let expected = spend / 5.0 * 1_000.0;
        assert!((rows[0].impressions as f64 - expected).abs() <= 1.0);
        assert!(rows[0].clicks > 0 && rows[0].clicks < rows[0].impressions / 100);
        // The same instant gives the same figures; later in the day, more.
        assert_eq!(simulate(&buy(), noon), rows);
        let evening = simulate(&buy(), noon + chrono::Duration::hours(6));
        assert!(evening[0].spend_micros > rows[0].spend_micros);
    }

    #[test]
    fn nothing_is_delivered_outside_the_flight() {
        let before = Utc.with_ymd_and_hms(2027, 2, 28, 12, 0, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2027, 3, 11, 0, 0, 0).unwrap();
        assert!(simulate(&buy(), before).is_empty());
        assert!(simulate(&buy(), after).is_empty());
    }
}
