//! The digest of a bearer token: what the store keeps and compares, never
//! the token itself.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 digest of a token. Equality is constant-time (`==` is
/// [`TokenHash::matches`]), so no comparison of digests can leak how many
/// leading bytes agree.
#[derive(Clone)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn of_secret(token: &SecretString) -> Self {
        Self::of(token.expose_secret())
    }

    /// The digest as 64 hex digits, as stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A digest given as 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// Compares digests in constant time (`subtle`, whose `ct_eq` is kept
    /// free of data-dependent branches against the optimiser, which a
    /// hand-written fold is not).
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other)
    }
}

impl Eq for TokenHash {}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_match_only_the_same_token() {
        assert!(TokenHash::of("secret").matches(&TokenHash::of("secret")));
        assert!(!TokenHash::of("secret").matches(&TokenHash::of("secreT")));
        assert!(TokenHash::of("secret") == TokenHash::of("secret"));
        assert!(TokenHash::of("secret") != TokenHash::of("secreT"));
        assert_eq!(format!("{:?}", TokenHash::of("secret")), "TokenHash(****)");
    }
}
