//! Slack Block Kit messages for notifications, within Slack's limits.
//!
//! [`render`] turns one [`Notification`] into a message: a header
//! (`<emoji> <title>` from the routing table), a section of short facts, a
//! details section for free text (errors in a code block), a context line
//! (time and reference) and, when the admin UI's address is known, a button
//! to the right page. [`render_digest`] turns a burst of notifications for one
//! webhook into a single summary message instead of a flood.
//!
//! # Limits, and why they are enforced here
//!
//! Slack rejects a whole message (`invalid_blocks`, HTTP 400) when any part is
//! over its limit; a rejected notification is a lost one, and retrying it only
//! fails again. The text in these messages comes from users and upstream
//! systems (order names, error messages, alert summaries) and can be any
//! length, so every piece is cut to size when the message is built:
//!
//! * at most [`MAX_BLOCKS`] blocks;
//! * a header's plain text at most 150 characters;
//! * a section's text at most [`MAX_SECTION_CHARS`] characters, a section
//!   field at most 2,000 and at most 10 fields per section;
//! * a button URL at most 3,000 characters (the button is left out otherwise);
//! * the fallback `text` at most 3,000 characters and never empty (it is what
//!   push notifications and screen readers show);
//! * the whole serialised message under [`MAX_MESSAGE_CHARS`] (measured in
//!   UTF-8 bytes, which are never fewer than characters), well inside Slack's
//!   hard limit of 12,000 characters of text. When a message is too big, the
//!   details section shrinks first, then the fallback text, then the fields,
//!   then the details go entirely and finally the button, until it fits.
//!
//! Cuts count characters, never bytes, so they never split a UTF-8 sequence,
//! and they end with "…" so a reader can see something was cut.
//!
//! # Escaping
//!
//! Slack's `mrkdwn` reads `<…>` as links and mentions (`<!channel>` pings a
//! whole channel) and `&` as the start of an entity. Every user-supplied
//! string goes through [`escape`] before it lands in `mrkdwn` text, and cuts
//! of escaped text never split an entity such as `&lt;`. Identifiers in button
//! URLs are percent-encoded.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::route::route;
use crate::notify::{HIGH_VALUE_THRESHOLD, Notification, NotificationEvent};

/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's limit on the text of a section block.
pub const MAX_SECTION_CHARS: usize = 3_000;
/// Whole serialized message stays under this (Slack's hard limit is 12,000 chars of text).
pub const MAX_MESSAGE_CHARS: usize = 10_000;

/// Slack's limit on fields in one section.
const MAX_FIELDS: usize = 10;
/// Slack's limit on the text of one section field.
const MAX_FIELD_CHARS: usize = 2_000;
/// Slack's limit on a header block's text.
const MAX_HEADER_CHARS: usize = 150;
/// Our cap on the fallback `text` (notifications show only its start anyway).
const MAX_FALLBACK_CHARS: usize = 3_000;
/// Slack's limit on a button's URL.
const MAX_URL_CHARS: usize = 3_000;
/// How much of an event's free text the one-line fallback quotes.
const FALLBACK_FREE_TEXT_CHARS: usize = 200;
/// How many of the most recent items a digest lists.
const DIGEST_RECENT_ITEMS: usize = 10;
/// Longest line in a digest's lists (ten of them fit a section).
const DIGEST_LINE_CHARS: usize = 280;
/// How many violation types a digest names before "+N more".
const DIGEST_VIOLATION_TYPES: usize = 5;
/// Longest violation type a digest quotes.
const DIGEST_VIOLATION_TYPE_CHARS: usize = 60;
/// The button's label.
const BUTTON_TEXT: &str = "Open in Overseer";
/// Marks a cut.
const ELLIPSIS: char = '…';
/// Shown for an empty value (Slack rejects empty text).
const EMPTY_VALUE: &str = "—";

/// The message for one notification. `admin_ui_url` is the admin dashboard base
/// (e.g. "https://ops.example.com/admin", no trailing slash assumed either way); None = no button.
pub fn render(n: &Notification, admin_ui_url: Option<&str>) -> Value {
    let message = Message::new(n, admin_ui_url);
    fit(message.fields.len(), |budget| message.build(budget))
}

/// One digest message standing for `items` (all for the same webhook), sent
/// at `now` instead of a flood. `items` are in outbox order (oldest first).
///
/// The header reads `:package: Digest: N events` and the fallback text starts
/// with `N events in the last <window>` (N always followed by "events", so it
/// can be parsed back).
pub fn render_digest(
    items: &[Notification],
    now: DateTime<Utc>,
    admin_ui_url: Option<&str>,
) -> Value {
    let digest = Digest::new(items, now, admin_ui_url);
    fit(digest.recent.len(), |budget| digest.build(budget))
}

/// "$10,000.01" for USD, "€1,234.50" EUR, "£" GBP, otherwise "1,234.50 CHF"; always 2 decimals, thousands separators, negative sign before the symbol.
///
/// The currency code is matched case-insensitively; an empty code gives the
/// bare number. Amounts that round to zero have no sign. Non-finite amounts
/// are shown as they are ("NaN USD").
pub fn format_amount(amount: f64, currency: &str) -> String {
    let code = currency.trim();
    if !amount.is_finite() {
        return if code.is_empty() {
            amount.to_string()
        } else {
            format!("{amount} {code}")
        };
    }
    let fixed = format!("{:.2}", amount.abs());
    let (int, frac) = fixed.split_once('.').unwrap_or((fixed.as_str(), "00"));
    let number = format!("{}.{frac}", group_thousands(int));
    let is_zero = fixed.bytes().all(|b| matches!(b, b'0' | b'.'));
    let sign = if amount < 0.0 && !is_zero { "-" } else { "" };
    match code.to_ascii_uppercase().as_str() {
        "USD" => format!("{sign}${number}"),
        "EUR" => format!("{sign}€{number}"),
        "GBP" => format!("{sign}£{number}"),
        "" => format!("{sign}{number}"),
        _ => format!("{sign}{number} {code}"),
    }
}

/// Escapes Slack mrkdwn control characters in user-supplied text: & -> &amp;, < -> &lt;, > -> &gt;
/// (so "<!channel>" or "<http://evil|click>" from an order name cannot ping or link).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match entity(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    out
}

/// Cuts `text` to at most `max` characters (chars, not bytes), ending with "…" when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    match text.char_indices().nth(max - 1) {
        // More than `max` characters: keep `max - 1` of them and the ellipsis.
        Some((cut, _)) if text[cut..].chars().nth(1).is_some() => {
            let mut out = text[..cut].to_owned();
            out.push(ELLIPSIS);
            out
        }
        _ => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Text helpers

/// The entity `c` is escaped to, if it needs one.
fn entity(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}

/// [`escape`]s `text` and cuts the result to at most `max` characters without
/// splitting an entity, ending with "…" when cut.
fn escape_within(text: &str, max: usize) -> String {
    let escaped = escape(text);
    if escaped.chars().count() <= max {
        return escaped;
    }
    if max == 0 {
        return String::new();
    }
    let room = max - 1;
    let mut out = String::new();
    let mut len = 0;
    for c in text.chars() {
        let piece = entity(c);
        let piece_len = piece.map_or(1, str::len);
        if len + piece_len > room {
            break;
        }
        match piece {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
        len += piece_len;
    }
    out.push(ELLIPSIS);
    out
}

/// `text` on one line: runs of whitespace (newlines included) become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "1234567" -> "1,234,567" (ASCII digits in).
fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A metric value or threshold: shortest form ("7.5", "5").
fn number(value: f64) -> String {
    value.to_string()
}

/// "1 creative", "2 creatives".
fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// "2026-11-24 12:00:00 UTC".
fn utc(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// "45 seconds", "1 minute", "3 hours", "2 days" (rounded down; negative
/// spans, from clock skew, read as zero).
fn humanize(span: chrono::Duration) -> String {
    let secs = span.num_seconds().max(0).unsigned_abs();
    let (count, unit) = match secs {
        0..60 => (secs, "second"),
        60..3_600 => (secs / 60, "minute"),
        3_600..86_400 => (secs / 3_600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved
/// characters).
fn path_segment(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

/// Size of the serialised message in UTF-8 bytes (never fewer than its
/// characters).
fn serialized_len(message: &Value) -> usize {
    serde_json::to_string(message).map_or(usize::MAX, |s| s.len())
}

// ---------------------------------------------------------------------------
// Blocks

fn header_block(text: &str) -> Value {
    json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(text, MAX_HEADER_CHARS), "emoji": true},
    })
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

fn text_section(text: String) -> Value {
    json!({"type": "section", "text": mrkdwn(text)})
}

fn context_block(text: String) -> Value {
    json!({"type": "context", "elements": [mrkdwn(text)]})
}

fn button_block(url: &str) -> Value {
    json!({
        "type": "actions",
        "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": BUTTON_TEXT},
            "url": url,
        }],
    })
}

/// The fallback `text`: trusted `head`, then ": " and the escaped `summary`
/// (if any), within `max` characters. Never empty as long as `head` is not.
fn fallback(head: &str, summary: &str, max: usize) -> String {
    let max = max.clamp(1, MAX_FALLBACK_CHARS);
    let mut text = truncate(head, max);
    let used = text.chars().count() + 2;
    if !summary.is_empty() && used < max {
        text.push_str(": ");
        text.push_str(&escape_within(summary, max - used));
    }
    text
}

/// The message object; `blocks` capped at [`MAX_BLOCKS`].
fn message(text: String, mut blocks: Vec<Value>) -> Value {
    blocks.truncate(MAX_BLOCKS);
    json!({"text": text, "blocks": blocks})
}

// ---------------------------------------------------------------------------
// Fitting a message under the size limit

/// How many characters the variable parts of a message may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    /// The fallback `text`.
    fallback: usize,
    /// Each field (or each line of a digest's lists).
    field: usize,
    /// The details section (a digest's summary section); 0 leaves it out.
    details: usize,
    /// Whether the button is shown.
    button: bool,
}

/// A shrinkable part of a [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Fallback,
    Field,
    Details,
}

impl Budget {
    const FULL: Budget = Budget {
        fallback: MAX_FALLBACK_CHARS,
        field: MAX_FIELD_CHARS,
        details: MAX_SECTION_CHARS,
        button: true,
    };

    /// Shrink order: each part down to the floor, in turn; then the button.
    const STEPS: [(Part, usize); 6] = [
        (Part::Details, 600),
        (Part::Fallback, 300),
        (Part::Field, 160),
        (Part::Details, 0),
        (Part::Fallback, 80),
        (Part::Field, 24),
    ];

    fn part(&mut self, part: Part) -> &mut usize {
        match part {
            Part::Fallback => &mut self.fallback,
            Part::Field => &mut self.field,
            Part::Details => &mut self.details,
        }
    }

    /// Takes about `over` characters off, `fields` being how many parts share
    /// the field budget. False when nothing is left to take.
    fn shrink(&mut self, over: usize, fields: usize) -> bool {
        let before = *self;
        let mut over = over;
        for (part, floor) in Self::STEPS {
            if over == 0 {
                break;
            }
            let weight = if part == Part::Field {
                fields.max(1)
            } else {
                1
            };
            let budget = self.part(part);
            let cut = over.div_ceil(weight).min(budget.saturating_sub(floor));
            *budget -= cut;
            over = over.saturating_sub(cut * weight);
        }
        if over > 0 {
            self.button = false;
        }
        *self != before
    }
}

/// Builds with the full budget, then with smaller ones until the serialised
/// message is under [`MAX_MESSAGE_CHARS`] (or nothing is left to shrink).
fn fit(fields: usize, build: impl Fn(Budget) -> Value) -> Value {
    let mut budget = Budget::FULL;
    loop {
        let message = build(budget);
        let size = serialized_len(&message);
        if size < MAX_MESSAGE_CHARS || !budget.shrink(size - (MAX_MESSAGE_CHARS - 1), fields) {
            return message;
        }
    }
}

// ---------------------------------------------------------------------------
// One notification

/// One fact: a label and its raw (unescaped) value.
#[derive(Debug)]
struct Field {
    label: &'static str,
    value: String,
}

impl Field {
    fn new(label: &'static str, value: impl Into<String>) -> Self {
        Self {
            label,
            value: value.into(),
        }
    }

    /// `*Label:*\nvalue`, within `max` (and Slack's field limit) characters.
    fn render(&self, max: usize) -> Value {
        let head = format!("*{}:*\n", self.label);
        let room = max
            .min(MAX_FIELD_CHARS)
            .saturating_sub(head.chars().count())
            .max(1);
        let value = if self.value.trim().is_empty() {
            EMPTY_VALUE.to_owned()
        } else {
            escape_within(&self.value, room)
        };
        mrkdwn(head + &value)
    }
}

/// An event's free text, raw.
#[derive(Debug)]
enum Details {
    /// An error: shown in a code block.
    Error(String),
    /// A reason, comment, summary or list, under a label.
    Labelled(&'static str, String),
}

impl Details {
    fn raw(&self) -> &str {
        match self {
            Details::Error(text) | Details::Labelled(_, text) => text,
        }
    }

    /// The section text within `max` (and Slack's section limit) characters;
    /// `None` when empty or when there is no room for anything useful.
    fn render(&self, max: usize) -> Option<String> {
        const MIN_CONTENT: usize = 8;
        if self.raw().trim().is_empty() {
            return None;
        }
        let (head, tail) = match self {
            Details::Error(_) => ("```".to_owned(), "```"),
            Details::Labelled(label, _) => (format!("*{label}:*\n"), ""),
        };
        let room = max
            .min(MAX_SECTION_CHARS)
            .checked_sub(head.chars().count() + tail.chars().count())
            .filter(|room| *room >= MIN_CONTENT)?;
        Some(head + &escape_within(self.raw(), room) + tail)
    }
}

/// Where a message's button leads, relative to the admin UI.
#[derive(Debug, Clone, Copy)]
enum Page<'a> {
    MediaBuy(&'a str),
    Workflow(&'a str),
    Creatives,
    Settings,
    Security,
    Alerts,
    Activity,
}

/// The button's URL: `{base}/tenants/{tenant}/…`, or `{base}/activity`,
/// `/alerts` or `/security` for system events. `None` without a usable
/// (http or https) base, or when the URL would be over Slack's limit.
fn button_url(base: Option<&str>, tenant: Option<&str>, page: Page<'_>) -> Option<String> {
    let base = base?.trim().trim_end_matches('/');
    let scheme = base.get(..8).unwrap_or(base).to_ascii_lowercase();
    if !(scheme.starts_with("https://") || scheme.starts_with("http://")) {
        return None;
    }
    let path = match tenant.filter(|t| !t.is_empty()) {
        None => match page {
            Page::Security => "/security".to_owned(),
            Page::Alerts => "/alerts".to_owned(),
            _ => "/activity".to_owned(),
        },
        Some(tenant) => {
            let rest = match page {
                Page::MediaBuy(id) if !id.is_empty() => format!("media-buys/{}", path_segment(id)),
                Page::Workflow(id) if !id.is_empty() => format!("workflows/{}", path_segment(id)),
                Page::Creatives => "creatives".to_owned(),
                Page::Settings => "settings".to_owned(),
                Page::Security => "security".to_owned(),
                Page::Alerts => "alerts".to_owned(),
                Page::MediaBuy(_) | Page::Workflow(_) | Page::Activity => "activity".to_owned(),
            };
            format!("/tenants/{}/{rest}", path_segment(tenant))
        }
    };
    let url = format!("{base}{path}");
    (url.chars().count() <= MAX_URL_CHARS).then_some(url)
}

/// What a message says about one event, independent of tenant and time.
#[derive(Debug)]
struct Description<'a> {
    /// The kind's facts (raw values).
    fields: Vec<Field>,
    /// Free text, if the kind has any.
    details: Option<Details>,
    /// A short, one-line, raw statement of what happened.
    fact: String,
    /// Where the button leads.
    page: Page<'a>,
}

/// The per-kind facts of `event`.
fn describe(event: &NotificationEvent) -> Description<'_> {
    use NotificationEvent as E;
    let joined = |list: &[String]| list.join(", ");
    match event {
        E::MediaBuyCreated {
            media_buy_id,
            principal_id,
            order_name,
            budget,
            currency,
            status,
        } => {
            let amount = format_amount(*budget, currency);
            Description {
                fact: format!("{order_name} ({media_buy_id}), {amount}, {status}"),
                fields: vec![
                    Field::new("Media buy", media_buy_id),
                    Field::new("Order", order_name),
                    Field::new("Principal", principal_id),
                    Field::new("Budget", amount),
                    Field::new("Status", status),
                ],
                details: None,
                page: Page::MediaBuy(media_buy_id),
            }
        }
        E::ApprovalRequired {
            media_buy_id,
            workflow_id,
            principal_id,
            order_name,
            budget,
            currency,
            threshold,
        } => {
            let amount = format_amount(*budget, currency);
            let threshold = format_amount(*threshold, currency);
            Description {
                fact: format!(
                    "{order_name} ({media_buy_id}): {amount} is above the {threshold} approval threshold"
                ),
                fields: vec![
                    Field::new("Media buy", media_buy_id),
                    Field::new("Workflow", workflow_id),
                    Field::new("Order", order_name),
                    Field::new("Principal", principal_id),
                    Field::new("Budget", amount),
                    Field::new("Threshold", threshold),
                ],
                details: None,
                page: Page::Workflow(workflow_id),
            }
        }
        E::CreativePendingReview {
            principal_id,
            creative_ids,
        } => {
            let count = creative_ids.len() as u64;
            Description {
                fact: format!(
                    "{} from {principal_id}",
                    plural(count, "creative", "creatives")
                ),
                fields: vec![
                    Field::new("Principal", principal_id),
                    Field::new("Creatives", count.to_string()),
                ],
                details: Some(Details::Labelled("Creative ids", joined(creative_ids))),
                page: Page::Creatives,
            }
        }
        E::ConfigurationChanged {
            target,
            changed,
            actor,
            privilege: _,
        } => Description {
            fact: format!("{target} ({}) by {actor}", joined(changed)),
            fields: vec![
                Field::new("Target", target),
                Field::new("Changed", joined(changed)),
                Field::new("Actor", actor),
            ],
            details: None,
            page: Page::Settings,
        },
        E::SecurityViolation {
            violation_type,
            severity: _,
            subject,
            reason,
            resource_id,
            count,
        } => {
            let mut fields = vec![
                Field::new("Violation", violation_type),
                Field::new("Subject", subject),
                Field::new("Count", count.to_string()),
            ];
            if let Some(resource) = resource_id {
                fields.push(Field::new("Resource", resource));
            }
            let times = if *count > 1 {
                format!(" ×{count}")
            } else {
                String::new()
            };
            Description {
                fact: format!("{violation_type} from {subject}{times}"),
                fields,
                details: Some(Details::Labelled("Reason", reason.clone())),
                page: Page::Security,
            }
        }
        E::HighValueTransaction {
            media_buy_id,
            principal_id,
            budget,
            currency,
        } => {
            let amount = format_amount(*budget, currency);
            let threshold = format_amount(HIGH_VALUE_THRESHOLD, currency);
            Description {
                fact: format!("{media_buy_id}: {amount} by {principal_id}"),
                fields: vec![
                    Field::new("Media buy", media_buy_id),
                    Field::new("Principal", principal_id),
                    Field::new("Budget", amount),
                    Field::new("Threshold", format!("above {threshold}")),
                ],
                details: None,
                page: Page::MediaBuy(media_buy_id),
            }
        }
        E::MediaBuyActivated {
            media_buy_id,
            principal_id,
            order_name,
            reason,
        }
        | E::MediaBuyCompleted {
            media_buy_id,
            principal_id,
            order_name,
            reason,
        } => Description {
            fact: format!("{order_name} ({media_buy_id})"),
            fields: vec![
                Field::new("Media buy", media_buy_id),
                Field::new("Order", order_name),
                Field::new("Principal", principal_id),
            ],
            details: Some(Details::Labelled("Reason", reason.clone())),
            page: Page::MediaBuy(media_buy_id),
        },
        E::MediaBuyFailed {
            media_buy_id,
            principal_id,
            order_name,
            error,
        } => Description {
            fact: format!("{order_name} ({media_buy_id})"),
            fields: vec![
                Field::new("Media buy", media_buy_id),
                Field::new("Order", order_name),
                Field::new("Principal", principal_id),
            ],
            details: Some(Details::Error(error.clone())),
            page: Page::MediaBuy(media_buy_id),
        },
        E::MediaBuyUpdated {
            media_buy_id,
            principal_id,
            changed,
            actor,
        } => Description {
            fact: format!("{media_buy_id} ({}) by {actor}", joined(changed)),
            fields: vec![
                Field::new("Media buy", media_buy_id),
                Field::new("Principal", principal_id),
                Field::new("Changed", joined(changed)),
                Field::new("Actor", actor),
            ],
            details: None,
            page: Page::MediaBuy(media_buy_id),
        },
        E::CreativeReviewed {
            creative_id,
            principal_id,
            decision,
            actor,
            reason,
        } => Description {
            fact: format!("{creative_id} {decision} by {actor}"),
            fields: vec![
                Field::new("Creative", creative_id),
                Field::new("Principal", principal_id),
                Field::new("Decision", decision),
                Field::new("Reviewer", actor),
            ],
            details: reason
                .as_ref()
                .map(|reason| Details::Labelled("Reason", reason.clone())),
            page: Page::Creatives,
        },
        E::WorkflowApproved {
            workflow_id,
            media_buy_id,
            decided_by,
            comment,
        }
        | E::WorkflowRejected {
            workflow_id,
            media_buy_id,
            decided_by,
            comment,
        } => {
            let verb = if matches!(event, E::WorkflowApproved { .. }) {
                "approved"
            } else {
                "rejected"
            };
            Description {
                fact: format!("{media_buy_id} {verb} by {decided_by}"),
                fields: vec![
                    Field::new("Workflow", workflow_id),
                    Field::new("Media buy", media_buy_id),
                    Field::new("Decided by", decided_by),
                ],
                details: comment
                    .as_ref()
                    .map(|comment| Details::Labelled("Comment", comment.clone())),
                page: Page::Workflow(workflow_id),
            }
        }
        E::OperationFailed {
            operation,
            principal_id,
            error,
        } => {
            let mut fields = vec![Field::new("Operation", operation)];
            let mut fact = operation.clone();
            if let Some(principal) = principal_id {
                fields.push(Field::new("Principal", principal));
                fact = format!("{operation} for {principal}");
            }
            Description {
                fact,
                fields,
                details: Some(Details::Error(error.clone())),
                page: Page::Activity,
            }
        }
        E::AlertFiring {
            rule,
            severity: _,
            channel,
            summary,
            value,
            threshold,
            reminder,
        } => Description {
            fact: format!(
                "{}{rule} at {} (threshold {})",
                if *reminder { "still firing: " } else { "" },
                number(*value),
                number(*threshold)
            ),
            fields: {
                let mut fields = vec![
                    Field::new("Rule", rule),
                    Field::new("Value", number(*value)),
                    Field::new("Threshold", number(*threshold)),
                    Field::new("Channel", channel),
                ];
                if *reminder {
                    fields.push(Field::new("Reminder", "still firing"));
                }
                fields
            },
            details: Some(Details::Labelled("Summary", summary.clone())),
            page: Page::Alerts,
        },
        E::AlertResolved {
            rule,
            severity: _,
            channel,
            summary,
        } => Description {
            fact: rule.clone(),
            fields: vec![Field::new("Rule", rule), Field::new("Channel", channel)],
            details: Some(Details::Labelled("Summary", summary.clone())),
            page: Page::Alerts,
        },
        E::WebhookFailing {
            target,
            endpoint,
            reason,
            status,
        } => {
            let mut fields = vec![
                Field::new("Target", target),
                Field::new("Endpoint", endpoint),
            ];
            let mut fact = target.clone();
            if let Some(status) = status {
                fields.push(Field::new("Status", status.to_string()));
                fact = format!("{target} (HTTP {status})");
            }
            Description {
                fact,
                fields,
                details: Some(Details::Labelled("Reason", reason.clone())),
                page: Page::Settings,
            }
        }
    }
}

/// Everything a single-notification message shows, before cutting to size.
#[derive(Debug)]
struct Message {
    /// `<emoji> <title>` (trusted).
    header: String,
    /// One-line raw summary for the fallback text.
    summary: String,
    fields: Vec<Field>,
    details: Option<Details>,
    /// Time and reference (trusted).
    context: String,
    button: Option<String>,
}

impl Message {
    fn new(n: &Notification, admin_ui_url: Option<&str>) -> Self {
        let route = route(&n.event);
        let Description {
            mut fields,
            details,
            fact,
            page,
        } = describe(&n.event);
        let mut summary = one_line(&fact);
        if let Some(free) = details.as_ref().map(|d| one_line(d.raw()))
            && !free.is_empty()
        {
            summary.push_str(": ");
            summary.push_str(&truncate(&free, FALLBACK_FREE_TEXT_CHARS));
        }
        if let Some(tenant) = &n.tenant_id {
            fields.push(Field::new("Tenant", tenant));
        }
        fields.push(Field::new("Severity", route.severity.as_str()));
        fields.truncate(MAX_FIELDS);
        Self {
            header: format!("{} {}", route.emoji, route.title),
            summary,
            fields,
            details,
            context: format!("{} · ref {}", utc(n.created_at), n.id),
            button: button_url(admin_ui_url, n.tenant_id.as_deref(), page),
        }
    }

    fn build(&self, budget: Budget) -> Value {
        let mut blocks = vec![header_block(&self.header)];
        let fields: Vec<Value> = self.fields.iter().map(|f| f.render(budget.field)).collect();
        blocks.push(json!({"type": "section", "fields": fields}));
        if let Some(text) = self.details.as_ref().and_then(|d| d.render(budget.details)) {
            blocks.push(text_section(text));
        }
        blocks.push(context_block(self.context.clone()));
        if let Some(url) = self.button.as_deref().filter(|_| budget.button) {
            blocks.push(button_block(url));
        }
        message(
            fallback(&self.header, &self.summary, budget.fallback),
            blocks,
        )
    }
}

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
struct Line {
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
struct Digest {
    header: String,
    /// "N events in the last <window>" (trusted).
    head: String,
    /// Counts by kind (raw).
    parts: Vec<Line>,
    /// The most recent items, newest first (raw).
    recent: Vec<Line>,
    context: String,
    button: Option<String>,
}

impl Digest {
    fn new(items: &[Notification], now: DateTime<Utc>, admin_ui_url: Option<&str>) -> Self {
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

    fn build(&self, budget: Budget) -> Value {
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

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::notify::tests::one_of_each;

    const BASE: &str = "https://ops.example.com/admin";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("a valid time")
    }

    /// `len` characters of text that tries every trick: mentions, links,
    /// entities, quotes and backslashes (JSON escapes), newlines, multi-byte
    /// characters.
    fn nasty(len: usize) -> String {
        const SEED: &str =
            "<!channel> & <http://evil|click> \"quoted\" back\\slash\nnew line\ttab ü 🚀 ";
        SEED.chars().cycle().take(len).collect()
    }

    /// `event` with every free-text field (error, reason, summary, comment,
    /// creative ids) set to `text`; `None` for kinds without free text.
    fn with_free_text(event: &NotificationEvent, text: &str) -> Option<NotificationEvent> {
        use NotificationEvent as E;
        let mut event = event.clone();
        let t = || text.to_owned();
        match &mut event {
            E::CreativePendingReview { creative_ids, .. } => *creative_ids = vec![t(), t(), t()],
            E::SecurityViolation { reason, .. }
            | E::MediaBuyActivated { reason, .. }
            | E::MediaBuyCompleted { reason, .. }
            | E::WebhookFailing { reason, .. } => *reason = t(),
            E::CreativeReviewed { reason, .. } => *reason = Some(t()),
            E::MediaBuyFailed { error, .. } | E::OperationFailed { error, .. } => *error = t(),
            E::WorkflowApproved { comment, .. } | E::WorkflowRejected { comment, .. } => {
                *comment = Some(t());
            }
            E::AlertFiring { summary, .. } | E::AlertResolved { summary, .. } => *summary = t(),
            E::MediaBuyCreated { .. }
            | E::ApprovalRequired { .. }
            | E::ConfigurationChanged { .. }
            | E::HighValueTransaction { .. }
            | E::MediaBuyUpdated { .. } => return None,
        }
        Some(event)
    }

    /// `event` with every string in it (ids and names too, lists' items)
    /// set to `text`.
    fn with_every_string(event: &NotificationEvent, text: &str) -> NotificationEvent {
        fn stretch(value: &mut Value, text: &str) {
            match value {
                Value::String(s) => *s = text.to_owned(),
                Value::Array(items) => items.iter_mut().for_each(|v| stretch(v, text)),
                _ => {}
            }
        }
        let mut value = serde_json::to_value(event).expect("serialise event");
        if let Value::Object(map) = &mut value {
            for (key, field) in map.iter_mut() {
                if key != "kind" {
                    stretch(field, text);
                }
            }
        }
        serde_json::from_value(value).expect("deserialise event")
    }

    fn notification(tenant: Option<&str>, event: NotificationEvent) -> Notification {
        Notification::new(tenant.map(str::to_owned), event, now())
    }

    fn text_of(value: &Value) -> &str {
        value["text"].as_str().expect("a text")
    }

    fn blocks(message: &Value) -> &Vec<Value> {
        message["blocks"].as_array().expect("blocks")
    }

    fn blocks_of_type<'a>(message: &'a Value, kind: &str) -> Vec<&'a Value> {
        blocks(message)
            .iter()
            .filter(|b| b["type"] == kind)
            .collect()
    }

    fn button(message: &Value) -> Option<&str> {
        blocks_of_type(message, "actions")
            .first()
            .and_then(|b| b["elements"][0]["url"].as_str())
    }

    /// Asserts every Slack limit this module promises.
    fn assert_within_limits(message: &Value, what: &str) {
        let fallback = text_of(message);
        assert!(!fallback.trim().is_empty(), "{what}: empty fallback");
        assert!(
            fallback.chars().count() <= 3_000,
            "{what}: fallback too long"
        );
        let blocks = blocks(message);
        assert!(
            !blocks.is_empty() && blocks.len() <= MAX_BLOCKS,
            "{what}: block count"
        );
        assert_eq!(blocks[0]["type"], "header", "{what}: header first");
        for block in blocks {
            match block["type"].as_str().expect("block type") {
                "header" => {
                    let text = text_of(&block["text"]);
                    assert!(
                        !text.is_empty() && text.chars().count() <= 150,
                        "{what}: header"
                    );
                }
                "section" => {
                    if let Some(text) = block.get("text") {
                        let text = text_of(text);
                        assert!(!text.is_empty(), "{what}: empty section");
                        assert!(
                            text.chars().count() <= MAX_SECTION_CHARS,
                            "{what}: section of {} chars",
                            text.chars().count()
                        );
                    }
                    if let Some(fields) = block.get("fields") {
                        let fields = fields.as_array().expect("fields");
                        assert!(
                            !fields.is_empty() && fields.len() <= 10,
                            "{what}: field count"
                        );
                        for field in fields {
                            let text = text_of(field);
                            assert!(!text.is_empty(), "{what}: empty field");
                            assert!(text.chars().count() <= 2_000, "{what}: field too long");
                        }
                    }
                }
                "context" => {
                    let elements = block["elements"].as_array().expect("elements");
                    assert!(elements.iter().all(|e| !text_of(e).is_empty()), "{what}");
                }
                "actions" => {
                    let url = block["elements"][0]["url"].as_str().expect("button url");
                    assert!(url.starts_with("https://") && url.chars().count() <= 3_000);
                    assert_eq!(block["elements"][0]["text"]["text"], BUTTON_TEXT);
                }
                other => panic!("{what}: unexpected block {other}"),
            }
        }
        let json = serde_json::to_string(message).expect("serialise message");
        assert!(
            json.chars().count() < MAX_MESSAGE_CHARS,
            "{what}: {} chars serialised",
            json.chars().count()
        );
        // Escaping: no mention or link markup survives anywhere.
        assert!(
            !json.contains('<') && !json.contains('>'),
            "{what}: unescaped <>"
        );
    }

    #[test]
    fn every_kind_renders_within_slack_limits() {
        for event in one_of_each() {
            for tenant in [Some("t_acme"), None] {
                for admin in [Some(BASE), None] {
                    let n = notification(tenant, event.clone());
                    let message = render(&n, admin);
                    let what = format!("{} tenant={tenant:?} admin={admin:?}", event.kind());
                    assert_within_limits(&message, &what);
                    let route = route(&event);
                    let header = text_of(&blocks(&message)[0]["text"]);
                    assert_eq!(header, format!("{} {}", route.emoji, route.title));
                    assert!(
                        text_of(&message).starts_with(&format!("{header}: ")),
                        "{what}"
                    );
                    assert_eq!(button(&message).is_some(), admin.is_some(), "{what}");
                    let fields = blocks(&message)[1]["fields"].to_string();
                    assert!(fields.contains("*Severity:*"), "{what}");
                    assert_eq!(
                        fields.contains("*Tenant:*\\nt_acme"),
                        tenant.is_some(),
                        "{what}"
                    );
                }
            }
        }
    }

    #[test]
    fn huge_free_text_still_makes_a_valid_message() {
        let long = nasty(20_000);
        let mut stretched = 0;
        for event in one_of_each() {
            let Some(event) = with_free_text(&event, &long) else {
                continue;
            };
            stretched += 1;
            for tenant in [Some("t_acme"), None] {
                let message = render(&notification(tenant, event.clone()), Some(BASE));
                let what = format!("{} with 20,000 chars of free text", event.kind());
                assert_within_limits(&message, &what);
                // The details are there, cut, and still say something.
                let details = blocks_of_type(&message, "section")
                    .into_iter()
                    .filter_map(|b| b.get("text"))
                    .map(text_of)
                    .next()
                    .expect("a details section");
                assert!(details.contains(ELLIPSIS), "{what}: not cut");
                assert!(details.chars().count() > 500, "{what}: cut too much");
                assert!(button(&message).is_some(), "{what}: lost its button");
            }
        }
        assert_eq!(stretched, 12, "kinds with free text");
    }

    #[test]
    fn huge_everything_still_makes_a_valid_message() {
        let long = nasty(20_000);
        for event in one_of_each() {
            let event = with_every_string(&event, &long);
            for tenant in [Some(long.as_str()), Some("t_acme"), None] {
                let message = render(&notification(tenant, event.clone()), Some(BASE));
                assert_within_limits(
                    &message,
                    &format!("{} with every string huge", event.kind()),
                );
            }
        }
    }

    #[test]
    fn errors_go_in_code_blocks_and_reasons_under_a_label() {
        let events = one_of_each();
        let find = |kind: &str| {
            let event = events.iter().find(|e| e.kind() == kind).expect("sample");
            render(&notification(Some("t_acme"), event.clone()), None)
        };
        let failed = find("media_buy_failed");
        assert_eq!(
            blocks(&failed)[2]["text"]["text"],
            "```the ad server refused the order```"
        );
        assert_eq!(
            text_of(&failed),
            ":x: Media buy failed: Spring launch (mb_1): the ad server refused the order"
        );
        let violation = find("security_violation");
        assert_eq!(
            blocks(&violation)[2]["text"]["text"],
            "*Reason:*\n5 failed authentications in 5 minutes"
        );
        // No free text, no details section.
        let created = find("media_buy_created");
        assert_eq!(blocks_of_type(&created, "section").len(), 1);
        let approved = find("workflow_approved");
        assert_eq!(blocks_of_type(&approved, "section").len(), 1);
    }

    #[test]
    fn facts_are_fields_and_the_context_has_time_and_reference() {
        let event = one_of_each()
            .into_iter()
            .find(|e| e.kind() == "approval_required")
            .expect("sample");
        let n = notification(Some("t_acme"), event);
        let message = render(&n, None);
        let fields: Vec<&str> = blocks(&message)[1]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(text_of)
            .collect();
        for expected in [
            "*Media buy:*\nmb_1",
            "*Workflow:*\nwf_1",
            "*Order:*\nSpring launch",
            "*Principal:*\np_1",
            "*Budget:*\n$50,000.00",
            "*Threshold:*\n$25,000.00",
            "*Tenant:*\nt_acme",
            "*Severity:*\nwarning",
        ] {
            assert!(
                fields.contains(&expected),
                "missing {expected:?} in {fields:?}"
            );
        }
        let context = blocks_of_type(&message, "context")[0]["elements"][0]["text"]
            .as_str()
            .expect("context text");
        assert_eq!(context, format!("2026-11-24 12:00:00 UTC · ref {}", n.id));
    }

    #[test]
    fn user_text_is_escaped_in_mrkdwn() {
        let event = NotificationEvent::MediaBuyFailed {
            media_buy_id: "mb_<1>".into(),
            principal_id: "p_1".into(),
            order_name: "<!channel> & <http://x|y>".into(),
            error: "<!here> broke".into(),
        };
        let message = render(&notification(Some("t_acme"), event), Some(BASE));
        let json = message.to_string();
        assert!(json.contains("&lt;!channel&gt; &amp; &lt;http://x|y&gt;"));
        assert!(json.contains("```&lt;!here&gt; broke```"));
        assert!(!json.contains('<'));
        // Ids in the button URL are percent-encoded instead.
        assert_eq!(
            button(&message),
            Some(&*format!("{BASE}/tenants/t_acme/media-buys/mb_%3C1%3E"))
        );
    }

    #[test]
    fn buttons_lead_to_the_right_page() {
        let events = one_of_each();
        let url = |kind: &str, tenant: Option<&str>, base: &str| {
            let event = events.iter().find(|e| e.kind() == kind).expect("sample");
            let message = render(&notification(tenant, event.clone()), Some(base));
            button(&message).map(str::to_owned)
        };
        let acme = Some("t_acme");
        let expect = |path: &str| Some(format!("{BASE}{path}"));
        assert_eq!(
            url("media_buy_created", acme, BASE),
            expect("/tenants/t_acme/media-buys/mb_1")
        );
        assert_eq!(
            url("high_value_transaction", acme, BASE),
            expect("/tenants/t_acme/media-buys/mb_1")
        );
        assert_eq!(
            url("approval_required", acme, BASE),
            expect("/tenants/t_acme/workflows/wf_1")
        );
        assert_eq!(
            url("workflow_rejected", acme, BASE),
            expect("/tenants/t_acme/workflows/wf_1")
        );
        assert_eq!(
            url("creative_reviewed", acme, BASE),
            expect("/tenants/t_acme/creatives")
        );
        assert_eq!(
            url("configuration_changed", acme, BASE),
            expect("/tenants/t_acme/settings")
        );
        assert_eq!(
            url("webhook_failing", acme, BASE),
            expect("/tenants/t_acme/settings")
        );
        assert_eq!(
            url("security_violation", acme, BASE),
            expect("/tenants/t_acme/security")
        );
        assert_eq!(
            url("alert_firing", acme, BASE),
            expect("/tenants/t_acme/alerts")
        );
        assert_eq!(
            url("operation_failed", acme, BASE),
            expect("/tenants/t_acme/activity")
        );
        // A trailing slash on the base is not doubled.
        assert_eq!(
            url("media_buy_failed", acme, &format!("{BASE}/")),
            expect("/tenants/t_acme/media-buys/mb_1")
        );
        // System events: no tenant part.
        assert_eq!(url("security_violation", None, BASE), expect("/security"));
        assert_eq!(url("alert_resolved", None, BASE), expect("/alerts"));
        assert_eq!(url("webhook_failing", None, BASE), expect("/activity"));
        assert_eq!(url("media_buy_created", None, BASE), expect("/activity"));
        // Not a web address: no button rather than a rejected message.
        assert_eq!(url("media_buy_created", acme, "ops.example.com"), None);
        // Too long for Slack: no button.
        let long_tenant = "t".repeat(3_000);
        assert_eq!(url("media_buy_created", Some(&long_tenant), BASE), None);
    }

    #[test]
    fn amounts_are_formatted_per_currency() {
        assert_eq!(format_amount(10_000.01, "USD"), "$10,000.01");
        assert_eq!(format_amount(1_234.5, "CHF"), "1,234.50 CHF");
        assert_eq!(format_amount(0.0, "EUR"), "€0.00");
        assert_eq!(format_amount(1_234.5, "EUR"), "€1,234.50");
        assert_eq!(format_amount(999.999, "GBP"), "£1,000.00");
        assert_eq!(format_amount(1_234_567.891, "usd"), "$1,234,567.89");
        assert_eq!(format_amount(-1_234.5, "USD"), "-$1,234.50");
        assert_eq!(format_amount(-1_234.5, "CHF"), "-1,234.50 CHF");
        assert_eq!(format_amount(-0.001, "USD"), "$0.00");
        assert_eq!(format_amount(12.0, ""), "12.00");
        assert_eq!(format_amount(100.0, "JPY"), "100.00 JPY");
    }

    #[test]
    fn escape_neutralises_mentions_and_links() {
        assert_eq!(
            escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        assert_eq!(escape("plain *bold* text"), "plain *bold* text");
        // Cutting escaped text never leaves half an entity.
        assert_eq!(escape_within("a<b", 4), "a…");
        assert_eq!(escape_within("a<b", 5), "a…");
        assert_eq!(escape_within("a<b", 6), "a&lt;b");
        assert_eq!(escape_within("a<bc", 6), "a&lt;…");
    }

    #[test]
    fn truncate_counts_chars_not_bytes() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("🚀🚀🚀", 2), "🚀…");
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(truncate("abc", 1), "…");
        assert_eq!(truncate("", 3), "");
    }

    #[test]
    fn windows_read_as_words() {
        assert_eq!(humanize(Duration::seconds(45)), "45 seconds");
        assert_eq!(humanize(Duration::seconds(1)), "1 second");
        assert_eq!(humanize(Duration::seconds(150)), "2 minutes");
        assert_eq!(humanize(Duration::seconds(60)), "1 minute");
        assert_eq!(humanize(Duration::hours(3)), "3 hours");
        assert_eq!(humanize(Duration::days(2)), "2 days");
        assert_eq!(humanize(Duration::seconds(-5)), "0 seconds");
    }

    /// `events` as notifications for `tenant`, spread evenly over `span`
    /// ending at `now()`, oldest first.
    fn spread(
        events: Vec<NotificationEvent>,
        tenant: Option<&str>,
        span: Duration,
    ) -> Vec<Notification> {
        let count = i32::try_from(events.len()).expect("a small test");
        let step = span / count.max(1);
        events
            .into_iter()
            .zip(0..)
            .map(|(event, i)| {
                let mut n = notification(tenant, event);
                n.created_at = now() - span + step * i;
                n
            })
            .collect()
    }

    #[test]
    fn a_digest_of_200_mixed_items_fits() {
        let events: Vec<_> = one_of_each().into_iter().cycle().take(200).collect();
        let items = spread(events, Some("t_acme"), Duration::minutes(2));
        let message = render_digest(&items, now(), Some(BASE));
        assert_within_limits(&message, "digest of 200");
        let header = text_of(&blocks(&message)[0]["text"]);
        assert_eq!(header, ":package: Digest: 200 events");
        assert!(text_of(&message).starts_with("200 events in the last 2 minutes: "));
        assert_eq!(
            button(&message),
            Some(&*format!("{BASE}/tenants/t_acme/activity"))
        );
        let context = blocks_of_type(&message, "context")[0]["elements"][0]["text"]
            .as_str()
            .expect("context text");
        assert_eq!(
            context,
            format!(
                "2026-11-24 11:58:00 UTC – 2026-11-24 11:59:59 UTC · refs {} … {}",
                items[0].id, items[199].id
            )
        );
        // The recent list shows the ten newest, newest first.
        let recent = blocks(&message)[2]["text"]["text"]
            .as_str()
            .expect("recent");
        assert!(recent.starts_with("*Most recent:*\n• `"), "{recent}");
        assert_eq!(recent.matches("\n• ").count(), 10);
        assert!(recent.contains(&format!("`{}`", items[199].event.kind())));
    }

    #[test]
    fn a_digest_counts_by_kind_largest_first() {
        let violation = |subject: &str| NotificationEvent::SecurityViolation {
            violation_type: "token_rejected".into(),
            severity: "high".into(),
            subject: subject.into(),
            reason: "unknown token".into(),
            resource_id: None,
            count: 1,
        };
        let samples = one_of_each();
        let created = samples[0].clone();
        let approval = samples[1].clone();
        let mut events = vec![approval.clone(), approval];
        events.extend(std::iter::repeat_n(created, 5));
        events.extend(std::iter::repeat_n(violation("203.0.113.9"), 30));
        let items = spread(events, Some("t_acme"), Duration::seconds(45));
        let message = render_digest(&items, now(), None);
        assert_within_limits(&message, "digest");
        assert_eq!(
            text_of(&message),
            "37 events in the last 45 seconds: 30 security violations \
             (token_rejected ×30 from 1 subject), 5 media buys created, 2 approvals required"
        );
        assert_eq!(button(&message), None);
        let summary = blocks(&message)[1]["text"]["text"]
            .as_str()
            .expect("summary");
        assert_eq!(
            summary,
            "*37 events in the last 45 seconds*\n• 30 security violations \
             (token_rejected ×30 from 1 subject)\n• 5 media buys created\n• 2 approvals required"
        );

        // Several types and subjects.
        let mut items = spread(
            vec![violation("a"), violation("b"), violation("c")],
            None,
            Duration::hours(3),
        );
        if let NotificationEvent::SecurityViolation { violation_type, .. } = &mut items[2].event {
            *violation_type = "failed_auth_threshold".into();
        }
        let message = render_digest(&items, now(), Some(BASE));
        assert_eq!(
            text_of(&message),
            "3 events in the last 3 hours: 3 security violations \
             (token_rejected ×2, failed_auth_threshold ×1 from 3 subjects)"
        );
        assert_eq!(button(&message), Some(&*format!("{BASE}/activity")));
    }

    #[test]
    fn a_digest_of_mixed_tenants_links_to_the_activity_page() {
        let mut items = spread(one_of_each(), Some("t_acme"), Duration::minutes(1));
        items[3].tenant_id = Some("t_other".into());
        let message = render_digest(&items, now(), Some(&format!("{BASE}/")));
        assert_eq!(button(&message), Some(&*format!("{BASE}/activity")));
    }

    #[test]
    fn a_digest_of_huge_items_fits() {
        let long = nasty(20_000);
        let events: Vec<_> = one_of_each()
            .iter()
            .map(|e| with_every_string(e, &long))
            .cycle()
            .take(200)
            .collect();
        let items = spread(events, Some(&long), Duration::minutes(5));
        let message = render_digest(&items, now(), Some(BASE));
        assert_within_limits(&message, "digest of huge items");
        assert_eq!(
            text_of(&blocks(&message)[0]["text"]),
            ":package: Digest: 200 events"
        );
        assert!(text_of(&message).starts_with("200 events in the last 5 minutes: "));
    }

    #[test]
    fn an_empty_digest_is_still_a_valid_message() {
        let message = render_digest(&[], now(), Some(BASE));
        assert_within_limits(&message, "empty digest");
        assert_eq!(text_of(&message), "0 events in the last 0 seconds");
    }
}
