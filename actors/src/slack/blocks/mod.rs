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

mod digest;
mod events;
mod render;
#[cfg(test)]
mod tests;
mod text;

use chrono::{DateTime, Utc};
use serde_json::Value;

use self::digest::Digest;
use self::render::{Message, fit};
pub use self::text::{escape, format_amount, truncate};
use crate::notify::Notification;

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
