//! Redaction, applied to every event before anything stores it (database,
//! spool, files), so no sink can leak what the others hide.

use serde_json::Value;

/// What replaces the value of a secret-looking key.
pub const REDACTED: &str = "[REDACTED]";

/// Keys whose values are secrets, compared case-insensitively with `-` read
/// as `_`.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "key",
    "api_key",
    "apikey",
    "credential",
    "credentials",
    "authorization",
    "auth",
    "bearer",
    "cookie",
    "set_cookie",
];

/// Suffixes that make a key secret (`client_secret`, `access_token`,
/// `x-api-key`, `db_password`, `session_cookie`).
const SECRET_SUFFIXES: &[&str] = &["_secret", "_token", "_key", "_password", "_cookie"];

/// Redacts `details` in place: secret-looking keys at any depth become
/// `"[REDACTED]"`, strings longer than `max_value_chars` are cut with a marker
/// saying how much was cut, budgets given as decimal strings become JSON
/// numbers, and `-0.0` becomes `0` (databases do not keep the sign of zero,
/// and the hash must survive the round trip).
#[derive(Debug, Clone, Copy)]
pub struct Redactor {
    pub max_value_chars: usize,
}

impl Redactor {
    pub fn redact(&self, details: &mut Value) {
        match details {
            Value::Object(map) => {
                // PostgreSQL refuses NUL in JSON text; keys lose theirs too.
                let nul_keys: Vec<String> =
                    map.keys().filter(|k| k.contains('\0')).cloned().collect();
                for key in nul_keys {
                    if let Some(value) = map.remove(&key) {
                        map.insert(key.replace('\0', ""), value);
                    }
                }
                for (key, value) in map.iter_mut() {
                    if is_secret_key(key) {
                        *value = Value::String(REDACTED.to_owned());
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
            Value::String(text) => {
                strip_nul(text);
                self.truncate(text);
            }
            Value::Number(n) if n.as_f64() == Some(0.0) && n.is_f64() => {
                *details = Value::from(0);
            }
            _ => {}
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

pub fn is_secret_key(key: &str) -> bool {
    let key = key.as_bytes();
    SECRET_KEYS.iter().any(|name| same_name(key, name))
        || SECRET_SUFFIXES.iter().any(|suffix| {
            key.len() >= suffix.len() && same_name(&key[key.len() - suffix.len()..], suffix)
        })
}

/// `key` is `name` (lowercase ASCII, `_` for `-`) compared case-insensitively
/// with `-` read as `_`, without allocating: every event's every key is
/// checked on the request path.
fn same_name(key: &[u8], name: &str) -> bool {
    let normal = |b: u8| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_lowercase()
        }
    };
    key.len() == name.len() && key.iter().zip(name.bytes()).all(|(&k, n)| normal(k) == n)
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
    fn key_names_are_compared_as_lowercase_with_underscores() {
        let secret = |key: &str| {
            let key = key.to_ascii_lowercase().replace('-', "_");
            SECRET_KEYS.contains(&key.as_str()) || SECRET_SUFFIXES.iter().any(|s| key.ends_with(s))
        };
        let budget = |key: &str| {
            let key = key.to_ascii_lowercase();
            key == "budget" || key.ends_with("_budget")
        };
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
            "budget",
            "BUDGET",
            "total_Budget",
            "total-budget",
            "budgets",
            "é_budget",
            "_budget",
            "xbudget",
        ];
        for key in keys {
            assert_eq!(is_secret_key(key), secret(key), "{key:?}");
            assert_eq!(is_budget_key(key), budget(key), "{key:?}");
        }
    }

    #[test]
    fn a_secret_key_hides_a_whole_object() {
        assert_eq!(
            redacted(json!({"credentials": {"user": "u", "pass": "p"}})),
            json!({"credentials": REDACTED})
        );
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
}
