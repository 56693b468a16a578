//! Text helpers: escaping, cutting to size, amounts, numbers and times.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ELLIPSIS;

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
pub(super) fn entity(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}

/// [`escape`]s `text` and cuts the result to at most `max` characters without
/// splitting an entity, ending with "…" when cut.
pub(super) fn escape_within(text: &str, max: usize) -> String {
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
pub(super) fn one_line(text: &str) -> String {
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
pub(super) fn number(value: f64) -> String {
    value.to_string()
}

/// "1 creative", "2 creatives".
pub(super) fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// "2026-11-24 12:00:00 UTC".
pub(super) fn utc(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// "45 seconds", "1 minute", "3 hours", "2 days" (rounded down; negative
/// spans, from clock skew, read as zero).
pub(super) fn humanize(span: chrono::Duration) -> String {
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
pub(super) fn path_segment(text: &str) -> String {
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
pub(super) fn serialized_len(message: &Value) -> usize {
    serde_json::to_string(message).map_or(usize::MAX, |s| s.len())
}
