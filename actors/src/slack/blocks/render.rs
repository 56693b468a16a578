//! Blocks, fitting a message under the size limit, and the single-notification message.

use serde_json::{Value, json};

use super::events::{Description, describe};
use super::text::{escape_within, one_line, path_segment, serialized_len, truncate, utc};
use super::{
    BUTTON_TEXT, EMPTY_VALUE, FALLBACK_FREE_TEXT_CHARS, MAX_BLOCKS, MAX_FALLBACK_CHARS,
    MAX_FIELD_CHARS, MAX_FIELDS, MAX_HEADER_CHARS, MAX_MESSAGE_CHARS, MAX_SECTION_CHARS,
    MAX_URL_CHARS,
};
use crate::notify::Notification;
use crate::slack::route::route;

// ---------------------------------------------------------------------------
// Blocks

pub(super) fn header_block(text: &str) -> Value {
    json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(text, MAX_HEADER_CHARS), "emoji": true},
    })
}

pub(super) fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

pub(super) fn text_section(text: String) -> Value {
    json!({"type": "section", "text": mrkdwn(text)})
}

pub(super) fn context_block(text: String) -> Value {
    json!({"type": "context", "elements": [mrkdwn(text)]})
}

pub(super) fn button_block(url: &str) -> Value {
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
pub(super) fn fallback(head: &str, summary: &str, max: usize) -> String {
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
pub(super) fn message(text: String, mut blocks: Vec<Value>) -> Value {
    blocks.truncate(MAX_BLOCKS);
    json!({"text": text, "blocks": blocks})
}

// ---------------------------------------------------------------------------
// Fitting a message under the size limit

/// How many characters the variable parts of a message may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Budget {
    /// The fallback `text`.
    pub(super) fallback: usize,
    /// Each field (or each line of a digest's lists).
    pub(super) field: usize,
    /// The details section (a digest's summary section); 0 leaves it out.
    pub(super) details: usize,
    /// Whether the button is shown.
    pub(super) button: bool,
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
pub(super) fn fit(fields: usize, build: impl Fn(Budget) -> Value) -> Value {
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
pub(super) struct Field {
    label: &'static str,
    value: String,
}

impl Field {
    pub(super) fn new(label: &'static str, value: impl Into<String>) -> Self {
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
pub(super) enum Details {
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
pub(super) enum Page<'a> {
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
pub(super) fn button_url(
    base: Option<&str>,
    tenant: Option<&str>,
    page: Page<'_>,
) -> Option<String> {
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

/// Everything a single-notification message shows, before cutting to size.
#[derive(Debug)]
pub(super) struct Message {
    /// `<emoji> <title>` (trusted).
    header: String,
    /// One-line raw summary for the fallback text.
    summary: String,
    pub(super) fields: Vec<Field>,
    details: Option<Details>,
    /// Time and reference (trusted).
    context: String,
    button: Option<String>,
}

impl Message {
    pub(super) fn new(n: &Notification, admin_ui_url: Option<&str>) -> Self {
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

    pub(super) fn build(&self, budget: Budget) -> Value {
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
