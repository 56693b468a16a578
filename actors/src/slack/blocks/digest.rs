//! Digest: one summary message standing for a burst of notifications.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::events::describe;
use super::render::{
    Budget, Page, button_block, button_url, context_block, fallback, header_block, message,
    text_section,
};
use super::text::{escape_within, humanize, one_line, plural, truncate, utc};
use super::{
    DIGEST_LINE_CHARS, DIGEST_RECENT_ITEMS, DIGEST_VIOLATION_TYPE_CHARS, DIGEST_VIOLATION_TYPES,
    MAX_SECTION_CHARS,
};
use crate::notify::{Notification, NotificationEvent};

// ---------------------------------------------------------------------------
// Digest

/// How a digest counts a kind: singular and plural.
fn kind_words(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "media_buy_created" => ("media buy created", "media buys created"),
        "approval_required" => ("approval required", "approvals required"),
        "creative_pending_review" => ("creative review request", "creative review requests"),
        "configuration_changed" => ("configuration change", "configuration changes"),
        "security_violation" => ("security violation", "security violations"),
        "high_value_transaction" => ("high-value transaction", "high-value transactions"),
        "media_buy_activated" => ("campaign activated", "campaigns activated"),
        "media_buy_completed" => ("campaign completed", "campaigns completed"),
        "media_buy_failed" => ("media buy failed", "media buys failed"),
        "media_buy_updated" => ("media buy updated", "media buys updated"),
        "creative_reviewed" => ("creative reviewed", "creatives reviewed"),
        "workflow_approved" => ("approval granted", "approvals granted"),
        "workflow_rejected" => ("approval rejected", "approvals rejected"),
        "operation_failed" => ("operation failed", "operations failed"),
        "alert_firing" => ("alert firing", "alerts firing"),
        "alert_resolved" => ("alert resolved", "alerts resolved"),
        "webhook_failing" => ("webhook failure", "webhook failures"),
        _ => ("event", "events"),
    }
}

/// Adds one to `key`'s count, keeping first-seen order.
fn tally<'a>(counts: &mut Vec<(&'a str, usize)>, key: &'a str) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, count)) => *count += 1,
        None => counts.push((key, 1)),
    }
}

/// Counts by kind, largest first (ties in first-seen order), in words, raw:
/// "30 security violations (token_rejected ×30 from 1 subject)".
fn summary_parts(items: &[Notification]) -> Vec<String> {
    let mut kinds = Vec::new();
    let mut violations = Vec::new();
    let mut subjects = BTreeSet::new();
    for n in items {
        tally(&mut kinds, n.event.kind());
        if let NotificationEvent::SecurityViolation {
            violation_type,
            subject,
            ..
        } = &n.event
        {
            tally(&mut violations, violation_type.as_str());
            subjects.insert(subject.as_str());
        }
    }
    kinds.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
    violations.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
    kinds
        .into_iter()
        .map(|(kind, count)| {
            let (one, many) = kind_words(kind);
            let mut part = plural(count as u64, one, many);
            if kind == "security_violation" {
                let mut types: Vec<String> = violations
                    .iter()
                    .take(DIGEST_VIOLATION_TYPES)
                    .map(|(t, c)| format!("{} ×{c}", truncate(t, DIGEST_VIOLATION_TYPE_CHARS)))
                    .collect();
                if violations.len() > DIGEST_VIOLATION_TYPES {
                    types.push(format!(
                        "+{} more",
                        violations.len() - DIGEST_VIOLATION_TYPES
                    ));
                }
                let from = plural(subjects.len() as u64, "subject", "subjects");
                part.push_str(&format!(" ({} from {from})", types.join(", ")));
            }
            part
        })
        .collect()
}

/// One line of a digest list: a trusted prefix and raw text.
#[derive(Debug)]
pub(super) struct Line {
    prefix: String,
    raw: String,
}

/// `title` then one "• " line per item, each within `per_line` characters,
/// the whole within `max`; lines that no longer fit become "• …and N more".
/// `None` when not even the first line fits.
fn bullet_section(title: &str, lines: &[Line], per_line: usize, max: usize) -> Option<String> {
    /// Room kept for "\n• …and N more".
    const MORE: usize = 24;
    let max = max.min(MAX_SECTION_CHARS);
    let mut text = title.to_owned();
    let mut len = text.chars().count();
    for (i, line) in lines.iter().enumerate() {
        let head = format!("\n• {}", line.prefix);
        let room = per_line.saturating_sub(head.chars().count()).max(1);
        let entry = head + &escape_within(&one_line(&line.raw), room);
        let entry_len = entry.chars().count();
        let reserve = if i + 1 < lines.len() { MORE } else { 0 };
        if len + entry_len + reserve > max {
            if i == 0 {
                return None;
            }
            text.push_str(&format!("\n• …and {} more", lines.len() - i));
            break;
        }
        text.push_str(&entry);
        len += entry_len;
    }
    Some(text)
}

/// Everything a digest shows, before cutting to size.
#[derive(Debug)]
pub(super) struct Digest {
    header: String,
    /// "N events in the last <window>" (trusted).
    head: String,
    /// Counts by kind (raw).
    parts: Vec<Line>,
    /// The most recent items, newest first (raw).
    pub(super) recent: Vec<Line>,
    context: String,
    button: Option<String>,
}

impl Digest {
    pub(super) fn new(
        items: &[Notification],
        now: DateTime<Utc>,
        admin_ui_url: Option<&str>,
    ) -> Self {
        let count = items.len();
        let oldest = items.iter().map(|n| n.created_at).min().unwrap_or(now);
        let head = format!("{count} events in the last {}", humanize(now - oldest));
        let parts = summary_parts(items)
            .into_iter()
            .map(|raw| Line {
                prefix: String::new(),
                raw,
            })
            .collect();
        let recent = items
            .iter()
            .rev()
            .take(DIGEST_RECENT_ITEMS)
            .map(|n| Line {
                prefix: format!("`{}` ", n.event.kind()),
                raw: describe(&n.event).fact,
            })
            .collect();
        let context = match (items.first(), items.last()) {
            (Some(first), Some(last)) => format!(
                "{} – {} · refs {} … {}",
                utc(first.created_at),
                utc(last.created_at),
                first.id,
                last.id
            ),
            _ => format!("{} · no events", utc(now)),
        };
        let tenant = items.first().and_then(|n| n.tenant_id.as_deref());
        let shared = tenant.filter(|t| items.iter().all(|n| n.tenant_id.as_deref() == Some(t)));
        Self {
            header: format!(":package: Digest: {count} events"),
            head,
            parts,
            recent,
            context,
            button: button_url(admin_ui_url, shared, Page::Activity),
        }
    }

    pub(super) fn build(&self, budget: Budget) -> Value {
        let per_line = budget.field.min(DIGEST_LINE_CHARS);
        let mut blocks = vec![header_block(&self.header)];
        let title = format!("*{}*", self.head);
        if let Some(text) = bullet_section(&title, &self.parts, per_line, budget.details) {
            blocks.push(text_section(text));
        }
        if let Some(text) =
            bullet_section("*Most recent:*", &self.recent, per_line, MAX_SECTION_CHARS)
        {
            blocks.push(text_section(text));
        }
        blocks.push(context_block(self.context.clone()));
        if let Some(url) = self.button.as_deref().filter(|_| budget.button) {
            blocks.push(button_block(url));
        }
        let summary = self
            .parts
            .iter()
            .map(|p| p.raw.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        message(fallback(&self.head, &summary, budget.fallback), blocks)
    }
}
