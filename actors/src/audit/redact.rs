//! Redaction, applied to every event before anything stores it (database,
//! spool, files), so no sink can leak what the others hide.
//!
//! A secret is recognised two ways (docs/security.md, "Redaction"):
//!
//! - **by its key**: a key whose name means "secret" has its value replaced,
//!   whatever the value (an object under `credentials` is hidden whole).
//!   Names are compared as words, whatever their case and separators:
//!   `clientSecret`, `client-secret`, `CLIENT_SECRET` and `clientsecret` are
//!   one name. Booleans and `null` under such a key stay (`"has_password":
//!   true` tells nothing secret).
//! - **by its shape**: every string (values at any depth, keys, `error`, the
//!   name fields) is scanned for bearer and basic credentials, Overseer's own
//!   tokens (`ovs_…`) and Slack's (`xoxb-…`), Slack webhook URLs, JWTs, AWS
//!   access key ids, PEM private keys, passwords in URL userinfo, and
//!   secret-named query parameters or quoted JSON pairs (`token=…`,
//!   `"password":"…"` inside a sentence). Only the secret part is replaced,
//!   so the sentence stays legible: `auth failed with Bearer [REDACTED]`.
//!
//! Cost: every key of every event is checked on the ingest path, so key
//! names are compared without allocating, and a string is handed to a
//! regular expression only when an Aho-Corasick scan for the rules' literal
//! triggers (`bearer`, `://`, `=`, `eyJ`, `ovs_`, …) finds one; most strings
//! have none and cost one pass over their bytes.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::{Captures, Regex};
use serde_json::Value;

use super::event::AuditEvent;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Whole key names, normalised (ASCII lowercase, `-`, `_`, `.` and spaces
/// dropped), whose values are secrets.
const SECRET_NAMES: &[&str] = &[
    "bearer",
    "pass",
    "otp",
    "totp",
    "authcode",
    "authorizationcode",
];

/// Endings of the normalised name that make a key secret wherever its words
/// break: `client_secret`, `clientSecret`, `x-access-token`, `DB_PASSWORD`,
/// `set-cookie`, `privateKey`, `apikey`. Plurals only where a list of
/// secrets is meant: `max_tokens` and `input_tokens` count tokens of a
/// language model and stay legible.
const SECRET_ENDINGS: &[&str] = &[
    "secret",
    "secrets",
    "token",
    "password",
    "passwords",
    "passwd",
    "pwd",
    "passphrase",
    "cookie",
    "cookies",
    "credential",
    "credentials",
    "apikey",
    "apikeys",
    "privatekey",
    "privkey",
    "secretkey",
    "accesskey",
    "signingkey",
    "encryptionkey",
    "masterkey",
    "sessionkey",
    "authkey",
    "jwt",
    "signature",
    "authorization",
];

/// Words that make a key secret as its last word only, after a word break
/// (`api_key`, `sshKey`, `X-Sig`, `basic_auth`, `user_session`, or the word
/// alone), so that `monkey`, `keyword`, `oauth` and `session_id` stay.
const SECRET_LAST_WORDS: &[&str] = &["key", "keys", "sig", "auth", "session"];

/// Normalised names that end in a secret word and hold nothing secret.
const NOT_SECRET: &[&str] = &["publickey", "publickeys", "idempotencykey"];

/// Redacts `details` in place: secret-looking keys at any depth have their
/// value replaced by `"[REDACTED]"`, secret-shaped text in any string is
/// replaced, strings longer than `max_value_chars` are cut with a marker
/// saying how much was cut, budgets given as decimal strings become JSON
/// numbers, and `-0.0` becomes `0` (databases do not keep the sign of zero,
/// and the hash must survive the round trip).
#[derive(Debug, Clone, Copy)]
pub struct Redactor {
    pub max_value_chars: usize,
}

impl Redactor {
    /// Secrets only: nothing is cut. For rows that were never cut before
    /// (state changes' own rows) and for redacting again what was redacted
    /// once (the activity stream): it changes nothing the second time.
    pub const SECRETS_ONLY: Redactor = Redactor {
        max_value_chars: usize::MAX,
    };

    pub fn redact(&self, details: &mut Value) {
        match details {
            Value::Object(map) => {
                // PostgreSQL refuses NUL in JSON text; keys lose theirs too,
                // and a key can hold a secret as well as a value can.
                let renamed: Vec<(String, String)> = map
                    .keys()
                    .filter(|k| k.contains('\0') || SCANNER.hits(k) != 0)
                    .filter_map(|k| {
                        let mut new = k.replace('\0', "");
                        redact_secrets(&mut new);
                        (new != *k).then(|| (k.clone(), new))
                    })
                    .collect();
                for (old, new) in renamed {
                    if let Some(value) = map.remove(&old) {
                        map.insert(new, value);
                    }
                }
                for (key, value) in map.iter_mut() {
                    if is_secret_key(key) {
                        if !matches!(value, Value::Bool(_) | Value::Null) {
                            *value = Value::String(REDACTED.to_owned());
                        }
                    } else if is_budget_key(key)
                        && let Some(number) = value.as_str().and_then(decimal_number)
                    {
                        *value = number;
                    } else {
                        self.redact(value);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.redact(item)),
            Value::String(text) => self.redact_text(text),
            Value::Number(n) if n.as_f64() == Some(0.0) && n.is_f64() => {
                *details = Value::from(0);
            }
            _ => {}
        }
    }

    /// A free-text value: NUL removed, secrets replaced, then cut (so that a
    /// cut never leaves half a secret the scan no longer recognises).
    pub fn redact_text(&self, text: &mut String) {
        strip_nul(text);
        redact_secrets(text);
        self.truncate(text);
    }

    /// Every field of `event` that a client or the service may fill with
    /// text: `details` as [`Self::redact`] does, `error` as
    /// [`Self::redact_text`] does, and the name fields (`operation`,
    /// `principal_id`, `principal_name`, `adapter_id`) scanned for secret
    /// shapes. `tenant_id` (parsed as an identifier, and the chain the event
    /// belongs to) and `ip_address` only lose NUL.
    pub fn redact_event(&self, event: &mut AuditEvent) {
        self.redact(&mut event.details);
        for text in [&mut event.tenant_id, &mut event.ip_address]
            .into_iter()
            .flatten()
        {
            strip_nul(text);
        }
        for text in [
            Some(&mut event.operation),
            event.principal_id.as_mut(),
            event.principal_name.as_mut(),
            event.adapter_id.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            strip_nul(text);
            redact_secrets(text);
        }
        if let Some(error) = event.error.as_mut() {
            self.redact_text(error);
        }
    }

    /// Cuts `text` to `max_value_chars` characters plus a marker.
    pub fn truncate(&self, text: &mut String) {
        if let Some((cut_at, _)) = text.char_indices().nth(self.max_value_chars) {
            let removed = text[cut_at..].chars().count();
            text.truncate(cut_at);
            text.push_str(&format!("…[truncated {removed} chars]"));
        }
    }
}

/// Removes NUL characters, which PostgreSQL text cannot hold.
pub fn strip_nul(text: &mut String) {
    if text.contains('\0') {
        text.retain(|c| c != '\0');
    }
}

/// Replaces the secret-shaped parts of `text`; true if it changed.
pub fn redact_secrets(text: &mut String) -> bool {
    let hits = SCANNER.hits(text);
    if hits == 0 {
        return false;
    }
    let mut changed = false;
    for (i, rule) in SCANNER.rules.iter().enumerate() {
        if hits & (1 << i) == 0 {
            continue;
        }
        if let Cow::Owned(out) = rule
            .regex
            .replace_all(text, |caps: &Captures<'_>| rule.kind.replace(caps))
            && out != *text
        {
            *text = out;
            changed = true;
        }
    }
    changed
}

/// `text` with its secret-shaped parts replaced; borrowed when there are none.
pub fn scrub(text: &str) -> Cow<'_, str> {
    if SCANNER.hits(text) == 0 {
        return Cow::Borrowed(text);
    }
    let mut owned = text.to_owned();
    redact_secrets(&mut owned);
    Cow::Owned(owned)
}

/// Every string of `value` (keys aside) with its secret-shaped parts
/// replaced: for documents whose keys are the service's own (a Slack
/// notification), where only the text can carry a secret.
pub fn scrub_strings(value: &mut Value) {
    match value {
        Value::String(text) => {
            redact_secrets(text);
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_strings),
        Value::Object(map) => map.values_mut().for_each(scrub_strings),
        _ => {}
    }
}

/// Whether a value under `key` is a secret. Names are compared as the words
/// they are made of, whatever the case and the separators (`-`, `_`, `.`,
/// space, or camelCase), without allocating: every key of every event is
/// checked on the request path.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.as_bytes();
    let Some(last) = normal_rev(key).next() else {
        return false;
    };
    let secret = SECRET_NAMES.iter().any(|name| normal_is(key, name))
        || SECRET_ENDINGS
            .iter()
            .any(|ending| ending.as_bytes().last() == Some(&last) && normal_ends_with(key, ending))
        || SECRET_LAST_WORDS.iter().any(|word| last_word_is(key, word));
    secret && !NOT_SECRET.iter().any(|name| normal_is(key, name))
}

fn is_separator(b: u8) -> bool {
    matches!(b, b'-' | b'_' | b'.' | b' ')
}

/// The key's normalised name, read from its end: ASCII lowercase, no
/// separators (`X-Api_Key` reads `yekipax`).
fn normal_rev(key: &[u8]) -> impl Iterator<Item = u8> + '_ {
    key.iter()
        .rev()
        .filter(|&&b| !is_separator(b))
        .map(u8::to_ascii_lowercase)
}

fn normal_ends_with(key: &[u8], ending: &str) -> bool {
    let mut rest = normal_rev(key);
    ending.bytes().rev().all(|b| rest.next() == Some(b))
}

fn normal_is(key: &[u8], name: &str) -> bool {
    let mut rest = normal_rev(key);
    name.bytes().rev().all(|b| rest.next() == Some(b)) && rest.next().is_none()
}

/// `key`'s last word is `word` (lowercase): the key ends with it (trailing
/// separators aside), case-insensitively, a word starts there (at the key's
/// start, after a separator, or at a camelCase hump: `sshKey`, `APIKey`) and
/// none starts inside it (`sshKeY` ends in the word `y`).
fn last_word_is(key: &[u8], word: &str) -> bool {
    let end = key
        .iter()
        .rposition(|&b| !is_separator(b))
        .map_or(0, |i| i + 1);
    let key = &key[..end];
    let Some(start) = key.len().checked_sub(word.len()) else {
        return false;
    };
    key[start..].eq_ignore_ascii_case(word.as_bytes())
        && (start == 0 || is_separator(key[start - 1]) || hump_at(key, start))
        && !(start + 1..key.len()).any(|i| hump_at(key, i))
}

/// A camelCase word starts at `i` (> 0): an upper-case letter after a
/// lower-case one or a digit (`sshKey`), or the last capital of an acronym
/// followed by a lower-case letter (`APIKey`).
fn hump_at(key: &[u8], i: usize) -> bool {
    let (before, c) = (key[i - 1], key[i]);
    c.is_ascii_uppercase()
        && (before.is_ascii_lowercase()
            || before.is_ascii_digit()
            || (before.is_ascii_uppercase() && key.get(i + 1).is_some_and(u8::is_ascii_lowercase)))
}

fn is_budget_key(key: &str) -> bool {
    let key = key.as_bytes();
    key.eq_ignore_ascii_case(b"budget")
        || (key.len() >= 7 && key[key.len() - 7..].eq_ignore_ascii_case(b"_budget"))
}

/// `"5000.00"` → `5000.0`; anything that is not a plain decimal stays text.
fn decimal_number(text: &str) -> Option<Value> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !plain {
        return None;
    }
    if frac.is_empty()
        && let Ok(n) = text.parse::<i64>()
    {
        return Some(Value::from(n));
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

// ---------------------------------------------------------------------------
// Secret shapes in text

/// One secret shape: what to keep of a match, and what replaces the rest.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `-----BEGIN … PRIVATE KEY-----` to its END line (or the text's end):
    /// the two lines stay, the body goes.
    PrivateKey,
    /// `"name": "value"` inside text (a JSON body quoted in an error) with a
    /// secret name.
    JsonPair,
    /// `name=value` (a query or form parameter, a cookie) with a secret name.
    Param,
    /// `scheme://user:password@host`: the user stays.
    Userinfo,
    /// `https://hooks.slack.com/services/…`: the path after `services/` goes.
    SlackHook,
    /// `Bearer …` / `Basic …` followed by credential material (not a plain
    /// word: `Bearer token missing` stays as it is).
    AuthScheme,
    /// Three base64url segments, the first starting `eyJ` (`{"`).
    Jwt,
    /// Overseer's tokens (`ovs_` + hex) and Slack's (`xoxb-`, `xoxp-`, …):
    /// the prefix stays, so a reader knows which kind leaked.
    PrefixedToken,
    /// AWS access key ids: `AKIA` or `ASIA` and 16 upper-case letters or
    /// digits.
    AwsKey,
}

/// The shapes in the order they are applied, their literal triggers (found
/// case-insensitively) and their expressions. The order matters where
/// shapes overlap: a private key's body goes before anything inside it is
/// looked at; a pair or parameter is judged by its name before its value
/// is scanned for a token.
const SHAPES: &[(Shape, &[&str], &str)] = &[
    (
        Shape::PrivateKey,
        &["-----begin"],
        r"(?s)(?P<begin>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----).*?(?P<end>-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
    ),
    (
        Shape::JsonPair,
        &["\""],
        r#""(?P<name>[^"\\]{1,100})"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\]|\\.)*)""#,
    ),
    (
        Shape::Param,
        &["="],
        r#"(?P<name>[A-Za-z][A-Za-z0-9_.\-]*)=(?P<value>[^&\s#"'<>?=,;]+)"#,
    ),
    (
        Shape::Userinfo,
        &["://"],
        r#"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@"'<>]*):[^\s/?#"'<>]*@"#,
    ),
    (
        Shape::SlackHook,
        &["hooks.slack"],
        r"(?P<head>(?i:hooks\.slack(?:-gov)?\.com)/(?:services|workflows|triggers)/)[A-Za-z0-9_\-/]{8,}",
    ),
    (
        Shape::AuthScheme,
        &["bearer", "basic"],
        r"(?i)(?-u:\b)(?P<scheme>bearer|basic)(?P<space>\s+)(?P<credential>[A-Za-z0-9\-._~+/]+=*)",
    ),
    (
        Shape::Jwt,
        &["eyj"],
        r"eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*",
    ),
    (
        Shape::PrefixedToken,
        &["ovs_", "xox"],
        r"(?P<prefix>ovs_|xox[a-z]-)[A-Za-z0-9_\-]{8,}",
    ),
    (
        Shape::AwsKey,
        &["akia", "asia"],
        r"(?-u:\b)(?P<prefix>AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
    ),
];

impl Shape {
    fn replace(self, caps: &Captures<'_>) -> String {
        let group = |name: &str| caps.name(name).map_or("", |m| m.as_str());
        match self {
            Shape::PrivateKey => format!("{}{REDACTED}{}", group("begin"), group("end")),
            Shape::JsonPair if is_secret_key(group("name")) => {
                format!("\"{}\"{}\"{REDACTED}\"", group("name"), group("sep"))
            }
            Shape::Param if is_secret_key(group("name")) => {
                format!("{}={REDACTED}", group("name"))
            }
            Shape::JsonPair | Shape::Param => caps[0].to_owned(),
            Shape::Userinfo => format!("{}:{REDACTED}@", group("head")),
            Shape::SlackHook => format!("{}{REDACTED}", group("head")),
            Shape::AuthScheme if plain_word(group("credential")) => caps[0].to_owned(),
            Shape::AuthScheme => format!("{}{}{REDACTED}", group("scheme"), group("space")),
            Shape::Jwt => REDACTED.to_owned(),
            Shape::PrefixedToken | Shape::AwsKey => format!("{}{REDACTED}", group("prefix")),
        }
    }
}

/// A word of prose rather than credential material: letters only, all
/// lower-case or capitalised, shorter than any token worth the name
/// (`token`, `Authentication`; not `abc123`, `XyZ` or 24 letters).
fn plain_word(text: &str) -> bool {
    let mut bytes = text.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    first_ok && text.len() < 24 && bytes.all(|b| b.is_ascii_lowercase())
}

struct Rule {
    kind: Shape,
    regex: Regex,
}

/// The shapes compiled once, and one Aho-Corasick automaton over all their
/// triggers, which says which shapes a text may hold.
struct Scanner {
    triggers: AhoCorasick,
    /// The rule (index into `rules`) of each trigger.
    rule_of: Vec<u32>,
    rules: Vec<Rule>,
}

static SCANNER: LazyLock<Scanner> = LazyLock::new(Scanner::new);

impl Scanner {
    fn new() -> Self {
        let mut patterns = Vec::new();
        let mut rule_of = Vec::new();
        let mut rules = Vec::new();
        for (i, (kind, triggers, expression)) in SHAPES.iter().enumerate() {
            for trigger in *triggers {
                patterns.push(*trigger);
                rule_of.push(i as u32);
            }
            rules.push(Rule {
                kind: *kind,
                // The expressions are constants, checked by the tests.
                regex: Regex::new(expression).expect("a valid secret shape"),
            });
        }
        let triggers = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            // A dozen short patterns: a full DFA is small and the fastest.
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .expect("valid triggers");
        Self {
            triggers,
            rule_of,
            rules,
        }
    }

    /// One bit per rule whose trigger occurs in `text`.
    fn hits(&self, text: &str) -> u32 {
        // Most text holds no trigger: one search says so, and only text
        // that does pays for the walk over every occurrence.
        if !self.triggers.is_match(text) {
            return 0;
        }
        let all = (1u32 << self.rules.len()) - 1;
        let mut hits = 0;
        for found in self.triggers.find_overlapping_iter(text) {
            hits |= 1 << self.rule_of[found.pattern().as_usize()];
            if hits == all {
                break;
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests;
