//! Bounded, printable text: names, references, ids chosen by clients.

use super::InvalidField;

/// Trims `value` and checks it is 1 to `max_chars` characters with no control
/// characters.
pub fn bounded(field: &'static str, value: &str, max_chars: usize) -> Result<String, InvalidField> {
    let value = value.trim();
    if value.is_empty() {
        Err(InvalidField::new(field, "must not be empty"))
    } else if value.chars().count() > max_chars {
        Err(InvalidField::new(
            field,
            format!("must be at most {max_chars} characters"),
        ))
    } else if value.chars().any(char::is_control) {
        Err(InvalidField::new(
            field,
            "must not contain control characters",
        ))
    } else {
        Ok(value.to_owned())
    }
}

/// An id chosen by a client (a creative id, a package id): 1 to 128 of
/// ASCII letters, digits, `-`, `_`, `.` and `:` — it appears in URLs.
pub fn client_id(field: &'static str, value: &str) -> Result<String, InvalidField> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if value.is_empty() || value.len() > 128 || !value.chars().all(valid) {
        Err(InvalidField::new(
            field,
            "must be 1 to 128 ASCII letters, digits, '-', '_', '.' or ':'",
        ))
    } else {
        Ok(value.to_owned())
    }
}

/// A server-made id: `prefix` and 16 random hex digits.
pub fn generate_id(prefix: &str) -> String {
    use rand::RngExt;
    format!("{prefix}_{}", hex::encode(rand::rng().random::<[u8; 8]>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_bounded_and_printable() {
        assert_eq!(bounded("n", "  a b ", 3).unwrap(), "a b");
        for bad in ["", "  ", "abcd", "a\u{0}"] {
            assert!(bounded("n", bad, 3).is_err(), "{bad:?}");
        }
        assert!(client_id("id", "cr-1_a.b:c").is_ok());
        for bad in ["", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(client_id("id", bad).is_err(), "{bad:?}");
        }
    }
}
