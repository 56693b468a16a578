use std::fmt;

use chrono::{DateTime, Utc};
use rand::RngExt;
use serde::Serialize;

use super::InvalidField;

/// A tenant's id: 1 to 64 characters of lowercase ASCII letters, digits, `-`
/// and `_`, starting with a letter or digit (it appears in URLs and logs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "acme")]
pub struct TenantId(String);

impl TenantId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        match value.chars().next() {
            None => Err(InvalidField::new(field, "must not be empty")),
            _ if value.len() > Self::MAX_CHARS => Err(InvalidField::new(
                field,
                format!("must be at most {} characters", Self::MAX_CHARS),
            )),
            Some(first) if !(first.is_ascii_lowercase() || first.is_ascii_digit()) => Err(
                InvalidField::new(field, "must start with a lowercase letter or a digit"),
            ),
            _ if !value.chars().all(valid_char) => Err(InvalidField::new(
                field,
                "may contain only lowercase letters, digits, '-' and '_'",
            )),
            _ => Ok(Self(value.to_owned())),
        }
    }

    /// A fresh id, `tenant_` and 12 random hex digits.
    pub fn generate() -> Self {
        Self(format!(
            "tenant_{}",
            hex::encode(rand::rng().random::<[u8; 6]>())
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidField;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse("id", &value)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's display name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "Acme Media")]
pub struct TenantName(String);

impl TenantName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        let value = value.trim();
        if value.is_empty() {
            Err(InvalidField::new(field, "must not be empty"))
        } else if value.chars().count() > Self::MAX_CHARS {
            Err(InvalidField::new(
                field,
                format!("must be at most {} characters", Self::MAX_CHARS),
            ))
        } else if value.chars().any(char::is_control) {
            Err(InvalidField::new(
                field,
                "must not contain control characters",
            ))
        } else {
            Ok(Self(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantName {
    type Error = InvalidField;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse("name", &value)
    }
}

/// A tenant to create.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: TenantName,
}

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Tenant {
    #[sqlx(try_from = "String")]
    pub id: TenantId,
    #[sqlx(try_from = "String")]
    pub name: TenantName,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_url_safe_slugs() {
        for ok in ["acme", "acme-media_2", "0day", "tenant_0a1b2c3d4e5f"] {
            assert_eq!(TenantId::parse("id", ok).unwrap().as_str(), ok);
        }
        let too_long = "a".repeat(65);
        for bad in [
            "",
            "Acme",
            "-acme",
            "acme media",
            "acme/../x",
            "ac'me",
            too_long.as_str(),
            "ünï",
        ] {
            assert_eq!(
                TenantId::parse("id", bad).unwrap_err().field,
                "id",
                "{bad:?}"
            );
        }
        let generated = TenantId::generate();
        assert_eq!(TenantId::parse("id", generated.as_str()), Ok(generated));
    }

    #[test]
    fn tenant_names_are_trimmed_and_bounded() {
        assert_eq!(
            TenantName::parse("name", "  Acme Media ").unwrap().as_str(),
            "Acme Media"
        );
        assert_eq!(
            TenantName::parse("name", &"é".repeat(200))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            200
        );
        for bad in ["", "   ", "line\nbreak", &"x".repeat(201)] {
            assert!(TenantName::parse("name", bad).is_err(), "{bad:?}");
        }
    }
}
