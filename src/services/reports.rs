//! Delivery reports to buyers' reporting webhooks.
//!
//! A cycle (every `DELIVERY_WEBHOOK_INTERVAL`, or on demand) looks at every
//! active buy with a reporting webhook, and every buy completed in the last
//! seven days:
//!
//! - an active buy is due the report of its **last complete period** — the
//!   previous UTC hour (`hourly`) or day (`daily`), clipped to the flight —
//!   once its flight has begun; the duplicate key (config, buy, period) makes
//!   a second cycle, a second replica or a racing manual trigger queue
//!   nothing more for that period;
//! - a completed buy is due one `final` report over its whole flight, with no
//!   `next_expected_at`;
//! - `force` (tenant admin, audited) queues a report now, bypassing the key.
//!
//! Figures come from `media_buy_delivery` (one row per package and day):
//! a daily report sums the days of its period; an hourly report carries the
//! current day's cumulative figures (delivery is recorded per day, not per
//! hour); the final report sums the flight. The sums are checked
//! ([`DeliveryTotals::of`]) before anything is queued: figures that do not
//! fit in 64 bits (rows stored before the spend cap) queue no report, and the
//! cycle reports the buy, rather than send the buyer a wrapped number. Each
//! report takes the buy's next
//! sequence number in the transaction that queues it; the envelope (with its
//! `timestamp` and `idempotency_key`) is frozen there, so every retry sends the
//! same bytes.

use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::domain::media_buy::{
    DeliveryRow, DeliveryTotals, Package, ReportingWebhook, WebhookAuth,
};
use crate::store::reports::{NewReport, ReportCandidate};
use crate::store::{Effects, Store, StoreError};
use secrecy::ExposeSecret;

/// What a cycle did.
#[derive(Debug, Clone, Default)]
pub struct ReportCycle {
    pub scheduled: u64,
    pub finals: u64,
    /// Reports a cycle found queued already (their period's key is taken).
    pub duplicates: u64,
    /// `(media_buy_id, reason)`.
    pub errors: Vec<(String, String)>,
    /// Sequence numbers queued, by buy (for the manual trigger's answer).
    pub queued: Vec<(String, i64)>,
    /// The audit rows committed with the reports (a forced report's).
    pub committed: Vec<overseer_actors::audit::CommittedEvent>,
}

/// Final reports are sent for buys completed this recently.
const FINAL_WINDOW_DAYS: i64 = 7;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The AdCP status a buyer understands.
fn adcp_status(status: &str) -> &str {
    match status {
        "pending_activation" | "pending_approval" => "pending_start",
        other => other,
    }
}

/// The report due: its type, its period and when the next one is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period {
    /// `scheduled` or `final`.
    kind: &'static str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// `None` for the final report.
    next: Option<DateTime<Utc>>,
}

/// The report due at `now`, or `None` when nothing is due yet (an active buy
/// whose flight has not completed a period). `force` reports the period so
/// far if none is complete.
fn period_of(
    buy: &ReportCandidate,
    frequency: &str,
    now: DateTime<Utc>,
    force: bool,
) -> Option<Period> {
    if buy.status == "completed" {
        return Some(Period {
            kind: "final",
            start: buy.flight_start,
            end: buy.flight_end.min(now),
            next: None,
        });
    }
    let step = if frequency == "hourly" {
        Duration::hours(1)
    } else {
        Duration::days(1)
    };
    let end = now.duration_trunc(step).ok()?;
    if end <= buy.flight_start {
        return force.then_some(Period {
            kind: "scheduled",
            start: buy.flight_start,
            end: now,
            next: Some(end + step),
        });
    }
    Some(Period {
        kind: "scheduled",
        start: (end - step).max(buy.flight_start),
        end,
        next: Some(end + step),
    })
}

/// The figures of one report: totals and, per package, its totals.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    totals: DeliveryTotals,
    by_package: Vec<(Package, DeliveryTotals)>,
}

/// The figures of the report of `kind` over `(start, end)`: checked sums of
/// the rows it counts, or why they cannot be counted.
fn figures(
    kind: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    packages: &[Package],
    delivery: &[DeliveryRow],
    frequency: &str,
) -> Result<Figures, String> {
    let (from_day, to_day) = (start.date_naive(), end.date_naive());
    let counted = |row: &&DeliveryRow| match row.day.parse::<chrono::NaiveDate>() {
        Ok(day) if kind == "final" => day >= from_day && day <= to_day,
        Ok(day) if frequency == "hourly" => day == from_day,
        Ok(day) => day >= from_day && day < to_day,
        Err(_) => false,
    };
    let rows: Vec<&DeliveryRow> = delivery.iter().filter(counted).collect();
    let overflow = |e: crate::domain::media_buy::TotalsOverflow| e.to_string();
    let totals = DeliveryTotals::of(rows.iter().copied()).map_err(overflow)?;
    let by_package = packages
        .iter()
        .map(|p| {
            let of_package = rows
                .iter()
                .copied()
                .filter(|r| r.package_id == p.package_id);
            Ok((p.clone(), DeliveryTotals::of(of_package).map_err(overflow)?))
        })
        .collect::<Result<_, String>>()?;
    Ok(Figures { totals, by_package })
}

/// The envelope of one report.
fn envelope(
    buy: &ReportCandidate,
    sequence: i64,
    kind: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    next_expected_at: Option<DateTime<Utc>>,
    figures: &Figures,
    now: DateTime<Utc>,
) -> (String, String) {
    let ctr = |t: &DeliveryTotals| {
        if t.impressions > 0 {
            t.clicks as f64 / t.impressions as f64
        } else {
            0.0
        }
    };
    let by_package: Vec<Value> = figures
        .by_package
        .iter()
        .map(|(p, t)| {
            json!({
                "package_id": p.package_id,
                "impressions": t.impressions,
                "spend": t.spend.as_f64(),
                "clicks": t.clicks,
                "pricing_model": p.pricing_model,
                "rate": p.rate.as_f64(),
                "currency": buy.currency,
            })
        })
        .collect();
    let totals = &figures.totals;
    let idempotency_key = format!("delivery.{}.{sequence}", buy.id);
    let mut result = json!({
        "notification_type": kind,
        "sequence_number": sequence,
        "reporting_period": {"start": rfc3339(start), "end": rfc3339(end)},
        "currency": buy.currency,
        "media_buy_deliveries": [{
            "media_buy_id": buy.id,
            "status": adcp_status(&buy.status),
            "totals": {
                "impressions": totals.impressions,
                "spend": totals.spend.as_f64(),
                "clicks": totals.clicks,
                "ctr": ctr(totals),
            },
            "by_package": by_package,
        }],
    });
    if let Some(next) = next_expected_at {
        result["next_expected_at"] = json!(rfc3339(next));
    }
    let payload = json!({
        "idempotency_key": idempotency_key,
        "operation_id": format!("delivery.{}", buy.id),
        "task_id": buy.id,
        "task_type": "media_buy_delivery",
        "protocol": "media-buy",
        "status": "completed",
        "timestamp": rfc3339(now),
        "result": result,
    });
    (idempotency_key, payload.to_string())
}

/// Runs one report cycle at `now` (for `only` that buy if given).
pub async fn run_cycle(
    store: &Store,
    now: DateTime<Utc>,
    only: Option<&str>,
    force: bool,
    effects: Effects<'_>,
) -> Result<ReportCycle, StoreError> {
    let candidates = store
        .report_candidates(now - Duration::days(FINAL_WINDOW_DAYS), only)
        .await?;
    let mut cycle = ReportCycle::default();
    for buy in &candidates {
        if let Err(reason) = report_one(store, buy, now, force, effects, &mut cycle).await {
            tracing::warn!(media_buy_id = %buy.id, %reason, "delivery report could not be queued");
            cycle.errors.push((buy.id.clone(), reason));
        }
    }
    Ok(cycle)
}

async fn report_one(
    store: &Store,
    buy: &ReportCandidate,
    now: DateTime<Utc>,
    force: bool,
    effects: Effects<'_>,
    cycle: &mut ReportCycle,
) -> Result<(), String> {
    let webhook = ReportingWebhook::from_stored(&buy.reporting_webhook)
        .ok_or_else(|| "unreadable reporting webhook".to_owned())?;
    let Some(Period {
        kind,
        start,
        end,
        next,
    }) = period_of(buy, &webhook.frequency, now, force)
    else {
        return Ok(());
    };
    let config_id = format!("rw-{}", buy.id);
    let (authentication_type, authentication_token) = match &webhook.auth {
        WebhookAuth::None => ("none", None),
        WebhookAuth::Bearer(t) => ("bearer", Some(t.expose_secret().to_owned())),
        WebhookAuth::HmacSha256(t) => ("hmac-sha256", Some(t.expose_secret().to_owned())),
    };
    let dedup_key = (!force).then(|| {
        if kind == "final" {
            format!("{config_id}:final")
        } else {
            format!("{config_id}:{}:{}", rfc3339(start), rfc3339(end))
        }
    });
    let report = NewReport {
        buy,
        config_id,
        url: webhook.url.expose().to_owned(),
        authentication_type,
        authentication_token,
        notification_type: kind,
        dedup_key,
        now,
    };
    let parts = store
        .media_buys_parts(std::slice::from_ref(&buy.id))
        .await
        .map_err(|e| e.short_reason())?;
    let packages = parts.get(&buy.id).map(|p| p.0.clone()).unwrap_or_default();
    let delivery = store
        .delivery(&buy.id)
        .await
        .map_err(|e| e.short_reason())?;
    // Counted before anything is queued: figures that cannot be counted
    // queue nothing (the cycle reports the buy).
    let figures = figures(kind, (start, end), &packages, &delivery, &webhook.frequency)
        .map_err(|reason| format!("delivery figures: {reason}"))?;
    let build = |sequence: i64| envelope(buy, sequence, kind, (start, end), next, &figures, now);
    // A concurrent writer may take the same sequence number (or period):
    // the unique keys refuse the second, which tries again.
    let mut last = String::new();
    for _ in 0..3 {
        match store.queue_report(&report, &build, effects).await {
            Ok(Some((sequence, committed))) => {
                cycle.committed.extend(committed);
                match kind {
                    "final" => cycle.finals += 1,
                    _ => cycle.scheduled += 1,
                }
                cycle.queued.push((buy.id.clone(), sequence));
                return Ok(());
            }
            Ok(None) => {
                cycle.duplicates += 1;
                return Ok(());
            }
            Err(err) => last = err.short_reason(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn buy(status: &str) -> ReportCandidate {
        ReportCandidate {
            id: "mb_1".into(),
            tenant_id: "acme".into(),
            principal_id: "p".into(),
            status: status.into(),
            currency: "USD".into(),
            flight_start: Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap(),
            flight_end: Utc.with_ymd_and_hms(2027, 3, 31, 0, 0, 0).unwrap(),
            reporting_webhook: String::new(),
        }
    }

    #[test]
    fn figures_that_cannot_be_counted_queue_no_report() {
        use crate::domain::Amount;
        let package = |id: &str| Package {
            package_id: id.into(),
            budget: Amount::MAX,
            pricing_model: "cpm".into(),
            rate: Amount::ZERO,
        };
        let row = |package: &str, day: u32| DeliveryRow {
            package_id: package.into(),
            day: format!("2027-03-{day:02}"),
            impressions: 1_000,
            clicks: 1,
            spend: Amount::MAX,
        };
        let flight = (
            Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2027, 3, 31, 0, 0, 0).unwrap(),
        );
        let packages = [package("a"), package("b")];
        // Nine rows of 1e12 are counted exactly, in total and per package.
        let nine: Vec<DeliveryRow> = (1..=9)
            .map(|d| row(if d % 2 == 0 { "b" } else { "a" }, d))
            .collect();
        let counted = figures("final", flight, &packages, &nine, "daily").unwrap();
        assert_eq!(
            Some(counted.totals.spend),
            Amount::checked_sum([Amount::MAX; 9])
        );
        assert_eq!(counted.by_package[0].1.impressions, 5_000);
        assert_eq!(counted.by_package[1].1.impressions, 4_000);
        // The tenth does not fit: an error, never a wrapped figure.
        let ten: Vec<DeliveryRow> = (1..=10).map(|d| row("a", d)).collect();
        assert!(figures("final", flight, &packages, &ten, "daily").is_err());
        // A daily report counts only its day, which fits.
        let day = (
            Utc.with_ymd_and_hms(2027, 3, 4, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2027, 3, 5, 0, 0, 0).unwrap(),
        );
        let one = figures("scheduled", day, &packages, &ten, "daily").unwrap();
        assert_eq!(one.totals.spend, Amount::MAX);
    }

    #[test]
    fn periods_are_the_last_complete_hour_or_day_within_the_flight() {
        let t = |d, h, m| Utc.with_ymd_and_hms(2027, 3, d, h, m, 0).unwrap();
        let active = buy("active");
        let scheduled = |start, end, next| {
            Some(Period {
                kind: "scheduled",
                start,
                end,
                next: Some(next),
            })
        };
        assert_eq!(
            period_of(&active, "daily", t(5, 10, 30), false),
            scheduled(t(4, 0, 0), t(5, 0, 0), t(6, 0, 0))
        );
        assert_eq!(
            period_of(&active, "hourly", t(5, 10, 30), false),
            scheduled(t(5, 9, 0), t(5, 10, 0), t(5, 11, 0))
        );
        // On the first day no day is complete yet (unless forced).
        assert_eq!(period_of(&active, "daily", t(1, 10, 0), false), None);
        assert!(period_of(&active, "daily", t(1, 10, 0), true).is_some());
        let done = buy("completed");
        assert_eq!(
            period_of(&done, "daily", t(31, 12, 0), false),
            Some(Period {
                kind: "final",
                start: t(1, 0, 0),
                end: t(31, 0, 0),
                next: None
            })
        );
    }
}
