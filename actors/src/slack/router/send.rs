//! Sending: queueing failure notices, and one group's claim, paced posts
//! (one digest or each message in turn) and recorded outcomes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::actor::{Group, SendReport};
use super::handle::Shared;
use super::ports::{Outcome, PendingRow, Verdict, classify};
use crate::notify::Notification;
use crate::slack::blocks;
use crate::slack::pacer::backoff;
use crate::slack::route::route;

/// Queues the failure notices whose tenant (or, without a tenant, the
/// service) has an audit webhook: the others would only be skipped.
pub(super) async fn queue_notices(shared: &Shared, notices: Vec<Notification>) {
    let mut tenants: Vec<String> = notices.iter().filter_map(|n| n.tenant_id.clone()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let hooks = if tenants.is_empty() {
        HashMap::new()
    } else {
        match shared.store.webhooks(tenants).await {
            Ok(hooks) => hooks,
            Err(reason) => {
                tracing::warn!(%reason, notices = notices.len(), "slack: could not queue failure notices");
                return;
            }
        }
    };
    let wanted: Vec<Notification> = notices
        .into_iter()
        .filter(|n| {
            let channel = route(&n.event).channel;
            match &n.tenant_id {
                Some(tenant) => hooks.get(tenant).is_some_and(|w| w.get(channel).is_some()),
                None => shared.config.defaults.get(channel).is_some(),
            }
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    let n = wanted.len();
    if let Err(reason) = shared.outbox.enqueue_all(wanted).await {
        tracing::warn!(%reason, notices = n, "slack: could not queue failure notices");
    }
}

/// Claims a group's rows, posts (one digest, or each message in turn) and
/// records the outcomes.
pub(super) async fn send_group(shared: Arc<Shared>, group: Group, digest: bool) -> SendReport {
    let config = &shared.config;
    let Group {
        target,
        channel,
        tenant_id,
        items,
    } = group;
    let mut report = SendReport {
        key: target.key().to_owned(),
        channel,
        tenant_id,
        target: target.clone(),
        delivered: 0,
        block_until: None,
        rate_limited: false,
        permanent: None,
        last_error: None,
    };
    let now = shared.clock.now();
    let lease = chrono::Duration::from_std(config.lease).unwrap_or(chrono::Duration::MAX);
    let ids: Vec<i64> = items.iter().map(|(row, _)| row.id).collect();
    let claimed: HashSet<i64> = match shared.store.claim(ids, now, now + lease).await {
        Ok(claimed) => claimed.into_iter().collect(),
        Err(reason) => {
            tracing::warn!(%reason, "slack: could not claim notifications");
            report.last_error = Some(reason);
            return report;
        }
    };
    let items: Vec<_> = items
        .into_iter()
        .filter(|(row, _)| claimed.contains(&row.id))
        .collect();
    if items.is_empty() {
        return report;
    }

    let mut outcomes = Vec::with_capacity(items.len());
    let admin = config.admin_ui_url.as_deref();
    let batches: Vec<(serde_json::Value, Vec<&PendingRow>)> = if digest {
        let notifications: Vec<Notification> = items.iter().map(|(_, n)| n.clone()).collect();
        vec![(
            blocks::render_digest(&notifications, now, admin),
            items.iter().map(|(row, _)| row).collect(),
        )]
    } else {
        items
            .iter()
            .map(|(row, n)| (blocks::render(n, admin), vec![row]))
            .collect()
    };

    let mut stop: Option<Outcome> = None;
    for (message, rows) in batches {
        if let Some(outcome) = &stop {
            outcomes.extend(rows.iter().map(|row| (row.id, outcome.clone())));
            continue;
        }
        let body = serde_json::to_vec(&message).unwrap_or_default();
        let sent_at = shared.clock.now();
        let started = std::time::Instant::now();
        let answer = shared.transport.post(target.url(), body).await;
        let elapsed = started.elapsed();
        metrics::histogram!("slack_post_duration_seconds").record(elapsed.as_secs_f64());
        // Waits count from when the answer came: the clock when the request
        // went out plus how long it took (read this way, a manual clock
        // moved by a test after the receiver answered cannot shift them).
        let at = sent_at + chrono::Duration::from_std(elapsed).unwrap_or_default();
        let verdict = classify(&answer, config.default_retry_after);
        let result = match &verdict {
            Verdict::Delivered => "sent",
            Verdict::RateLimited(_) => "rate_limited",
            Verdict::Transient(_) => "retried",
            Verdict::Permanent { .. } => "failed",
        };
        metrics::counter!("slack_notifications_total", "channel" => channel.as_str(), "result" => result)
            .increment(rows.len() as u64);
        match verdict {
            Verdict::Delivered => {
                report.delivered += rows.len();
                outcomes.extend(rows.iter().map(|row| (row.id, Outcome::Sent)));
            }
            Verdict::RateLimited(wait) => {
                let until = at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                tracing::warn!(webhook = %target.masked(), %channel, retry_after_s = wait.as_secs_f64(), "slack: rate limited (429)");
                report.rate_limited = true;
                report.block_until = Some(until);
                let outcome = Outcome::Deferred {
                    at: until,
                    error: "rate limited (429)".to_owned(),
                };
                outcomes.extend(rows.iter().map(|row| (row.id, outcome.clone())));
                stop = Some(outcome);
            }
            Verdict::Transient(error) => {
                // The attempt this was: the largest of the batch's rows.
                let attempt = rows.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
                tracing::warn!(webhook = %target.masked(), %channel, attempt, %error, "slack: post failed; will retry");
                report.last_error = Some(error.clone());
                if attempt >= config.max_attempts {
                    let error = format!("gave up after {attempt} attempts: {error}");
                    outcomes.extend(rows.iter().map(|row| {
                        (
                            row.id,
                            Outcome::Failed {
                                error: error.clone(),
                            },
                        )
                    }));
                } else {
                    let wait = backoff(
                        attempt,
                        config.retry_base,
                        config.retry_cap,
                        rand::random::<f64>(),
                    );
                    let until =
                        at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                    report.block_until = Some(until);
                    outcomes.extend(rows.iter().map(|row| {
                        (
                            row.id,
                            Outcome::Retry {
                                at: until,
                                error: error.clone(),
                            },
                        )
                    }));
                    stop = Some(Outcome::Deferred {
                        at: until,
                        error: "waiting for an earlier message".to_owned(),
                    });
                }
            }
            Verdict::Permanent { status, reason } => {
                report.last_error = Some(reason.clone());
                outcomes.extend(rows.iter().map(|row| {
                    (
                        row.id,
                        Outcome::Failed {
                            error: reason.clone(),
                        },
                    )
                }));
                report.permanent = Some((status, reason));
            }
        }
    }

    if let Err(reason) = shared.store.finish(outcomes, shared.clock.now()).await {
        // The lease runs out and the rows are tried again: a duplicate at
        // worst, never a loss.
        tracing::warn!(%reason, "slack: could not record delivery outcomes");
        report.last_error = Some(reason);
    }
    report
}
