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
mod tests {
    use super::*;
    use serde_json::json;

    fn redacted(mut value: Value) -> Value {
        Redactor {
            max_value_chars: 10,
        }
        .redact(&mut value);
        value
    }

    fn scrubbed(text: &str) -> String {
        scrub(text).into_owned()
    }

    #[test]
    fn secret_keys_are_redacted_at_any_depth() {
        let out = redacted(json!({
            "password": "hunter2", "api_key": "k", "Authorization": "Bearer x",
            "nested": {"client_secret": "s", "access_token": "t", "X-Api-Key": "k",
                       "list": [{"db_password": "p", "cookie": "c"}]},
            "keyword": "kept", "monkey": "kept", "name": "kept"
        }));
        assert_eq!(
            out,
            json!({
                "password": REDACTED, "api_key": REDACTED, "Authorization": REDACTED,
                "nested": {"client_secret": REDACTED, "access_token": REDACTED, "X-Api-Key": REDACTED,
                           "list": [{"db_password": REDACTED, "cookie": REDACTED}]},
                "keyword": "kept", "monkey": "kept", "name": "kept"
            })
        );
    }

    #[test]
    fn camel_kebab_and_upper_case_names_are_the_same_name() {
        for key in [
            "clientSecret",
            "accessToken",
            "privateKey",
            "refreshToken",
            "CLIENT_SECRET",
            "client-secret",
            "clientsecret",
            "ClientSecret",
            "apiKey",
            "APIKey",
            "API_KEY",
            "x-api-key",
            "apikey",
            "passwd",
            "pwd",
            "userPassword",
            "jwt",
            "idJwt",
            "session",
            "userSession",
            "signature",
            "X-Hub-Signature",
            "authorization",
            "Proxy-Authorization",
            "cookie",
            "Set-Cookie",
            "credentials",
            "awsSecretAccessKey",
            "sig",
            "basic_auth",
            "sshKey",
            "key",
            "secrets",
        ] {
            assert!(is_secret_key(key), "{key:?} is a secret name");
        }
    }

    /// The keys the service writes into `details` itself (every
    /// `with_details`/`json!` in src/ and actors/src), and the usual
    /// harmless neighbours of secret names, stay legible.
    #[test]
    fn the_services_own_keys_and_harmless_neighbours_stay() {
        for key in [
            // The service's own.
            "token_kind",
            "token_id",
            "authentication_type",
            "media_buy_id",
            "principal_id",
            "tenant_id",
            "webhook",
            "webhook_id",
            "url",
            "endpoint",
            "changed",
            "change",
            "scope",
            "role",
            "rule",
            "route",
            "method",
            "status_code",
            "reason",
            "user_email",
            "last_event_id",
            "config_id",
            "creative_ids",
            // Harmless neighbours.
            "session_id",
            "sessionId",
            "signature_valid",
            "signatureValid",
            "public_key",
            "publicKey",
            "idempotency_key",
            "keyword",
            "monkey",
            "oauth",
            "auth_type",
            "max_tokens",
            "input_tokens",
            "token_count",
            "password_length",
            "secretary",
            "private_key_id",
            "cookie_consent",
        ] {
            assert!(!is_secret_key(key), "{key:?} is not a secret name");
        }
    }

    /// The allocation-free comparison, held to the rule written plainly:
    /// split into words at separators and camelCase humps, lowercase, join.
    fn reference_is_secret_key(key: &str) -> bool {
        let chars: Vec<char> = key.chars().collect();
        let mut words: Vec<String> = Vec::new();
        let mut word = String::new();
        for (i, &c) in chars.iter().enumerate() {
            if c.is_ascii() && is_separator(c as u8) {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                continue;
            }
            let before = i.checked_sub(1).map(|j| chars[j]);
            let after = chars.get(i + 1).copied();
            let hump = c.is_ascii_uppercase()
                && before.is_some_and(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || (b.is_ascii_uppercase() && after.is_some_and(|a| a.is_ascii_lowercase()))
                });
            if hump && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.push(c.to_ascii_lowercase());
        }
        if !word.is_empty() {
            words.push(word);
        }
        let normal: String = words.concat();
        let secret = SECRET_NAMES.contains(&normal.as_str())
            || SECRET_ENDINGS.iter().any(|e| normal.ends_with(e))
            || words
                .last()
                .is_some_and(|w| SECRET_LAST_WORDS.contains(&w.as_str()));
        secret && !NOT_SECRET.contains(&normal.as_str())
    }

    #[test]
    fn key_names_are_compared_as_words_without_allocating() {
        let keys = [
            "",
            "-",
            "_key",
            "key_",
            "KEY",
            "keys",
            "Token",
            "tokén",
            "é_token",
            "API-KEY",
            "x-api-key",
            "my_Secret",
            "set-cookie",
            "Set_Cookie",
            "session-COOKIE",
            "Bearer",
            "bearer_",
            "ß_password",
            "sshKEY",
            "sshKeY",
            "APIKeY",
            "SSHKey",
            "ssh2Key",
            "a.b.sig",
            "MonKey",
            "turkey",
            "public-key",
            "PUBLIC_KEYS",
        ];
        for key in keys {
            assert_eq!(is_secret_key(key), reference_is_secret_key(key), "{key:?}");
        }
    }

    #[test]
    fn budget_keys_are_compared_as_lowercase() {
        let budget = |key: &str| {
            let key = key.to_ascii_lowercase();
            key == "budget" || key.ends_with("_budget")
        };
        for key in [
            "budget",
            "BUDGET",
            "total_Budget",
            "total-budget",
            "budgets",
            "é_budget",
            "_budget",
            "xbudget",
        ] {
            assert_eq!(is_budget_key(key), budget(key), "{key:?}");
        }
    }

    #[test]
    fn a_secret_key_hides_a_whole_object_and_keeps_a_flag() {
        assert_eq!(
            redacted(json!({"credentials": {"user": "u", "pass": "p"}})),
            json!({"credentials": REDACTED})
        );
        assert_eq!(
            redacted(json!({"has_password": true, "token": null, "pin_token": 1234})),
            json!({"has_password": true, "token": null, "pin_token": REDACTED})
        );
    }

    #[test]
    fn secret_shapes_in_text_lose_their_secret_part_only() {
        let cases = [
            (
                "auth failed with Bearer ovs_0123456789abcdef0123456789abcdef",
                "auth failed with Bearer [REDACTED]",
            ),
            (
                "Authorization: basic dXNlcjpwYXNz",
                "Authorization: basic [REDACTED]",
            ),
            ("Bearer token missing", "Bearer token missing"),
            ("Basic authentication failed", "Basic authentication failed"),
            (
                "token ovs_9f86d081884c7d659a2feaa0c55ad015 leaked",
                "token ovs_[REDACTED] leaked",
            ),
            (
                "posting to https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX failed",
                "posting to https://hooks.slack.com/services/[REDACTED] failed",
            ),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl here",
                "jwt [REDACTED] here",
            ),
            ("key AKIAIOSFODNN7EXAMPLE used", "key AKIA[REDACTED] used"),
            (
                "db postgres://app:s3cr%40t@db.internal:5432/x down",
                "db postgres://app:[REDACTED]@db.internal:5432/x down",
            ),
            (
                "GET /cb?code=1&access_token=abc.def&state=ok",
                "GET /cb?code=1&access_token=[REDACTED]&state=ok",
            ),
            ("sig=deadbeef; path=/", "sig=[REDACTED]; path=/"),
            (
                r#"upstream said {"client_secret": "abc", "user": "bob"}"#,
                r#"upstream said {"client_secret": "[REDACTED]", "user": "bob"}"#,
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY----- ok",
                "-----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY----- ok",
            ),
            (
                "cut -----BEGIN PRIVATE KEY-----\nMIIEow",
                "cut -----BEGIN PRIVATE KEY-----[REDACTED]",
            ),
            (
                "slack xoxb-123456-abcdefgh said no",
                "slack xoxb-[REDACTED] said no",
            ),
            // Nothing secret: untouched.
            ("a=1&b=two, monkey=banana", "a=1&b=two, monkey=banana"),
            (
                "https://example.com/path?q=1",
                "https://example.com/path?q=1",
            ),
            (
                "webhook https://hooks.slack.com/services/T…/B…/****",
                "webhook https://hooks.slack.com/services/T…/B…/****",
            ),
            ("trip to Asia", "trip to Asia"),
        ];
        for (text, expected) in cases {
            assert_eq!(scrubbed(text), expected, "{text:?}");
        }
    }

    #[test]
    fn a_second_pass_changes_nothing() {
        for text in [
            "Bearer abc123def456 and token=xyz and ovs_0123456789abcdef",
            "https://u:p@h/x?password=1 https://hooks.slack.com/services/T1/B2/abcdefghij",
        ] {
            let once = scrubbed(text);
            assert_ne!(once, text);
            assert_eq!(scrubbed(&once), once);
        }
    }

    #[test]
    fn events_are_redacted_in_every_text_field() {
        let mut event = AuditEvent::new("login", chrono::Utc::now());
        event.principal_name = Some("svc Bearer abcdef0123456789".into());
        event.principal_id = Some("ovs_0123456789abcdef".into());
        event.adapter_id = Some("gam AKIAIOSFODNN7EXAMPLE".into());
        event.error = Some("failed: password=hunter2\0".into());
        event.details = json!({"accessToken": "t", "note": "see eyJa1.eyJb2.c3"});
        Redactor {
            max_value_chars: 1_000,
        }
        .redact_event(&mut event);
        assert_eq!(
            event.principal_name.as_deref(),
            Some("svc Bearer [REDACTED]")
        );
        assert_eq!(event.principal_id.as_deref(), Some("ovs_[REDACTED]"));
        assert_eq!(event.adapter_id.as_deref(), Some("gam AKIA[REDACTED]"));
        assert_eq!(event.error.as_deref(), Some("failed: password=[REDACTED]"));
        assert_eq!(
            event.details,
            json!({"accessToken": REDACTED, "note": "see [REDACTED]"})
        );
    }

    #[test]
    fn a_key_holding_a_secret_is_renamed() {
        assert_eq!(
            redacted(json!({"Bearer abcdef0123456789": 1})),
            json!({"Bearer [REDACTED]": 1})
        );
    }

    #[test]
    fn secrets_go_before_the_cut() {
        // Cut first, the token would keep 4 characters the scan no longer
        // recognises.
        let mut text = "x ovs_0123456789abcdef0123".to_owned();
        Redactor { max_value_chars: 8 }.redact_text(&mut text);
        assert_eq!(text, "x ovs_[R…[truncated 8 chars]");
    }

    #[test]
    fn long_strings_are_truncated_with_a_marker() {
        assert_eq!(
            redacted(json!({"note": "ééééééééééxyz"})),
            json!({"note": "éééééééééé…[truncated 3 chars]"})
        );
        assert_eq!(redacted(json!({"note": "short"})), json!({"note": "short"}));
    }

    #[test]
    fn decimal_budgets_become_numbers() {
        assert_eq!(
            redacted(
                json!({"budget": "5000.50", "total_budget": "12000", "daily_budget": "n/a", "note": "5000.50"})
            ),
            json!({"budget": 5000.5, "total_budget": 12000, "daily_budget": "n/a", "note": "5000.50"})
        );
    }

    #[test]
    fn nul_characters_are_removed() {
        assert_eq!(redacted(json!({"a\0b": "c\0d"})), json!({"ab": "cd"}));
    }

    #[test]
    fn negative_zero_loses_its_sign() {
        assert_eq!(redacted(json!({"x": -0.0})).to_string(), r#"{"x":0}"#);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Credential material: letters and digits with at least one digit
        /// (so not a word of prose), 13 to 41 characters.
        const MATERIAL: &str = "[A-Za-z0-9]{4,20}[0-9][A-Za-z0-9]{8,20}";

        /// A secret as it would be written, and the part of it that must
        /// not survive redaction.
        fn secret() -> impl Strategy<Value = (String, String)> {
            prop_oneof![
                (
                    prop::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic"]),
                    MATERIAL
                )
                    .prop_map(|(scheme, m)| (format!("{scheme} {m}"), m)),
                "[0-9a-f]{64}".prop_map(|m| (format!("ovs_{m}"), m)),
                ("[A-Z0-9]{9}", "[A-Z0-9]{9}", "[A-Za-z0-9]{24}").prop_map(|(t, b, m)| (
                    format!("https://hooks.slack.com/services/T{t}/B{b}/{m}"),
                    m
                )),
                (
                    "[A-Za-z0-9_-]{10,30}",
                    "[A-Za-z0-9_-]{10,30}",
                    "[A-Za-z0-9_-]{20,43}"
                )
                    .prop_map(|(h, p, sig)| (format!("eyJ{h}.eyJ{p}.{sig}"), sig)),
                (prop::sample::select(vec!["AKIA", "ASIA"]), "[A-Z0-9]{16}")
                    .prop_map(|(prefix, m)| (format!("{prefix}{m}"), m)),
                prop::collection::vec("[A-Za-z0-9+/]{64}", 1..4).prop_map(|lines| (
                    format!(
                        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
                        lines.join("\n")
                    ),
                    lines[0].clone()
                )),
                MATERIAL.prop_map(|m| (format!("postgres://app:{m}@db.example:5432/app"), m)),
                (
                    prop::sample::select(vec![
                        "token",
                        "key",
                        "secret",
                        "password",
                        "api_key",
                        "access_token",
                        "sig",
                        "client_secret",
                        "X-Amz-Signature",
                    ]),
                    MATERIAL
                )
                    .prop_map(|(name, m)| (
                        format!("https://api.example/cb?state=1&{name}={m}&x=2"),
                        m
                    )),
            ]
        }

        /// A secret key name, in any of the spellings clients use.
        fn secret_key() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                "clientSecret",
                "accessToken",
                "privateKey",
                "refreshToken",
                "client_secret",
                "CLIENT-SECRET",
                "password",
                "Passwd",
                "pwd",
                "api-key",
                "X_API_KEY",
                "apiKey",
                "Authorization",
                "cookie",
                "set-cookie",
                "jwt",
                "session",
                "signature",
                "credentials",
                "secret",
                "token",
                "idToken",
                "x-auth-token",
            ])
            .prop_map(str::to_owned)
        }

        fn words() -> impl Strategy<Value = String> {
            "[a-z]{3,10}( [a-z]{3,10}){0,3}"
        }

        /// A document with secrets in random places, and their material.
        fn document() -> impl Strategy<Value = (Value, Vec<String>)> {
            let leaf = prop_oneof![
                words().prop_map(|w| (Value::String(w), vec![])),
                any::<i64>().prop_map(|n| (Value::from(n), vec![])),
                secret().prop_map(|(s, m)| (Value::String(s), vec![m])),
                (words(), secret(), words())
                    .prop_map(|(a, (s, m), b)| (Value::String(format!("{a} {s} {b}")), vec![m])),
                // Under a secret name, any value goes, shapeless or not.
                (secret_key(), "[a-z]{6}[0-9]{3}[a-z]{6}")
                    .prop_map(|(k, m)| (json!({ k: m.clone() }), vec![m])),
            ];
            leaf.prop_recursive(5, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(|items| {
                        let (values, secrets): (Vec<Value>, Vec<Vec<String>>) =
                            items.into_iter().unzip();
                        (Value::Array(values), secrets.concat())
                    }),
                    prop::collection::vec(("[a-z]{1,8}(_[a-z]{1,8})?", inner.clone()), 0..5)
                        .prop_map(|entries| {
                            let mut map = serde_json::Map::new();
                            let mut secrets = Vec::new();
                            for (key, (value, found)) in entries {
                                map.insert(key, value);
                                secrets.extend(found);
                            }
                            // A repeated key keeps only its last value; a
                            // secret that went with an earlier one is gone
                            // anyway.
                            (Value::Object(map), secrets)
                        }),
                    (secret_key(), inner)
                        .prop_map(|(k, (value, found))| (json!({ k: value }), found)),
                ]
            })
        }

        fn leaked<'a>(text: &str, secrets: &'a [String]) -> Option<&'a String> {
            secrets.iter().find(|m| text.contains(m.as_str()))
        }

        proptest! {
            #[test]
            fn no_secret_survives_anywhere_in_details((mut doc, secrets) in document()) {
                Redactor::SECRETS_ONLY.redact(&mut doc);
                let text = doc.to_string();
                prop_assert!(leaked(&text, &secrets).is_none(), "{:?} in {}", leaked(&text, &secrets), text);
                // And a second pass changes nothing.
                let mut again = doc.clone();
                Redactor::SECRETS_ONLY.redact(&mut again);
                prop_assert_eq!(again, doc);
            }

            #[test]
            fn a_sentence_keeps_its_words_and_loses_its_secret(
                before in words(), (secret, material) in secret(), after in words()
            ) {
                let text = format!("{before} {secret} {after}");
                let out = scrubbed(&text);
                prop_assert!(!out.contains(&material), "{}", out);
                prop_assert!(out.contains(REDACTED), "{}", out);
                prop_assert!(out.starts_with(&format!("{before} ")), "{}", out);
                prop_assert!(out.ends_with(&format!(" {after}")), "{}", out);
            }

            #[test]
            fn every_text_field_of_an_event_is_redacted(
                (s1, m1) in secret(), (s2, m2) in secret(), (s3, m3) in secret(),
                (doc, mut secrets) in document(), note in words()
            ) {
                let mut event = AuditEvent::new("op", chrono::Utc::now());
                event.error = Some(format!("{note}: {s1}"));
                event.principal_name = Some(format!("{note} {s2}"));
                event.adapter_id = Some(s3);
                event.details = doc;
                Redactor { max_value_chars: 10_000 }.redact_event(&mut event);
                secrets.extend([m1, m2, m3]);
                let text = serde_json::to_string(&event).unwrap_or_default();
                prop_assert!(leaked(&text, &secrets).is_none(), "{}", text);
            }

            #[test]
            fn key_names_match_the_plain_rule(
                parts in prop::collection::vec(prop::sample::select(vec![
                    "api", "Api", "API", "key", "Key", "KEY", "keys", "token", "Token", "secret",
                    "Secret", "public", "Public", "session", "Id", "id", "sig", "Sig", "auth",
                    "o", "x", "S", "é", "2", "_", "-", ".", " ", "pass", "word", "Word",
                    "idempotency", "cookie", "kind", "s",
                ]), 0..6),
                random in "[a-zA-Z0-9_. -]{0,10}",
            ) {
                let key = parts.concat();
                prop_assert_eq!(is_secret_key(&key), reference_is_secret_key(&key), "{:?}", key);
                prop_assert_eq!(is_secret_key(&random), reference_is_secret_key(&random), "{:?}", random);
            }
        }
    }
}
