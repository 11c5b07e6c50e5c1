//! The bearer token, wrapped so that it cannot be printed by accident.
//!
//! A 1Password SCIM bridge token is all-powerful: it can create, suspend and delete every user
//! of the account. We only ever read with it, but a leaked token is a leaked account, so the
//! type that carries it has no `Display`, a `Debug` that prints a placeholder, and the only way
//! to see the value is the explicitly named [`BearerToken::expose`].

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

#[derive(Clone)]
pub struct BearerToken(SecretString);

/// Why a token could not be read from where the operator pointed us.
#[derive(Debug, thiserror::Error)]
pub enum TokenSourceError {
    #[error("cannot read the token file {path}: {reason}; check the path and its permissions")]
    File { path: String, reason: String },
    #[error(
        "the environment variable {name} is not set or not valid UTF-8; export the token in it"
    )]
    Env { name: String },
    #[error("the token is empty; paste the bearer token from the bridge's setup")]
    Empty,
    #[error(
        "the token contains characters an HTTP header cannot carry; copy it again without line breaks"
    )]
    Malformed,
}

impl BearerToken {
    /// Wraps a token, trimming the whitespace and line breaks that copying from a file adds.
    pub fn new(raw: impl Into<String>) -> Result<Self, TokenSourceError> {
        let raw: String = raw.into();
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(TokenSourceError::Empty);
        }
        // Only visible ASCII is valid in an HTTP header value; refusing early gives a clear
        // error instead of an opaque "invalid header value" from the HTTP stack.
        if !trimmed.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(TokenSourceError::Malformed);
        }
        Ok(Self(SecretString::from(trimmed.to_owned())))
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, TokenSourceError> {
        let raw = std::fs::read_to_string(path).map_err(|e| TokenSourceError::File {
            path: path.display().to_string(),
            reason: e.kind().to_string(),
        })?;
        Self::new(raw)
    }

    pub fn from_env(name: &str) -> Result<Self, TokenSourceError> {
        let raw = std::env::var(name).map_err(|_| TokenSourceError::Env {
            name: name.to_owned(),
        })?;
        Self::new(raw)
    }

    /// The token itself. Call sites are few and greppable: the HTTP header and the
    /// encryption at rest.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let t = BearerToken::new("  eyJhbGciOiJFUzI1NiJ9.secret-part\n").unwrap();
        let shown = format!("{t:?} {:?}", Some(&t));
        assert!(!shown.contains("secret-part"), "{shown}");
        assert_eq!(t.expose(), "eyJhbGciOiJFUzI1NiJ9.secret-part");
    }

    #[test]
    fn rejects_empty_and_unprintable_tokens() {
        assert!(matches!(
            BearerToken::new(" \n"),
            Err(TokenSourceError::Empty)
        ));
        assert!(matches!(
            BearerToken::new("abc def"),
            Err(TokenSourceError::Malformed)
        ));
        assert!(matches!(
            BearerToken::new("abc\u{e9}"),
            Err(TokenSourceError::Malformed)
        ));
    }
}
