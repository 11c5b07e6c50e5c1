//! Bearer tokens at rest: AES-256-GCM under a key from `OPSYNC_TOKEN_KEY`.
//!
//! Each ciphertext is stored with its nonce (random, 96 bits, never reused under one key in
//! practice: 2^-32 collision odds only after 2^32 encryptions) and the id of the key that
//! sealed it, so keys can be rotated: a new current key encrypts, older keys listed in
//! `OPSYNC_TOKEN_KEY_PREVIOUS` still decrypt. The integration id is the associated data, so a
//! ciphertext copied onto another integration's row does not decrypt.

use crate::secret::BearerToken;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "OPSYNC_TOKEN_KEY is not set; generate one with `openssl rand -base64 32` and keep it in a secret store"
    )]
    Missing,
    #[error(
        "a token key is not base64 of exactly 32 bytes; generate one with `openssl rand -base64 32`"
    )]
    Malformed,
    #[error(
        "the stored token was sealed with key {key_id}, which is not configured; set it as OPSYNC_TOKEN_KEY or in OPSYNC_TOKEN_KEY_PREVIOUS"
    )]
    UnknownKey { key_id: String },
    #[error(
        "the stored token does not decrypt with key {key_id}; it was altered or belongs to another integration, so set the token again with `opsync integration update-token`"
    )]
    Corrupt { key_id: String },
}

/// A sealed token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

struct TokenKey {
    id: String,
    cipher: Aes256Gcm,
}

impl TokenKey {
    fn from_base64(s: &str) -> Result<Self, KeyError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| KeyError::Malformed)?;
        if raw.len() != 32 {
            return Err(KeyError::Malformed);
        }
        // The key id is a fingerprint: stable, needs no extra configuration, reveals nothing.
        let digest = Sha256::digest([b"opsync-token-key-id:".as_slice(), &raw].concat());
        let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let cipher = Aes256Gcm::new_from_slice(&raw).map_err(|_| KeyError::Malformed)?;
        Ok(Self { id, cipher })
    }
}

/// The current key and the previous ones still accepted for decryption.
pub struct Keyring {
    current: TokenKey,
    previous: Vec<TokenKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// `current`: base64 of 32 bytes; `previous`: the same, comma-separated.
    pub fn new(current: &str, previous: Option<&str>) -> Result<Self, KeyError> {
        if current.trim().is_empty() {
            return Err(KeyError::Missing);
        }
        let previous = previous
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(TokenKey::from_base64)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            current: TokenKey::from_base64(current)?,
            previous,
        })
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    pub fn seal(&self, token: &BearerToken, integration_id: uuid::Uuid) -> Sealed {
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: token.expose().as_bytes(),
                    aad: integration_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short token cannot fail");
        Sealed {
            key_id: self.current.id.clone(),
            nonce: nonce_bytes.to_vec(),
            ciphertext,
        }
    }

    pub fn open(
        &self,
        sealed: &Sealed,
        integration_id: uuid::Uuid,
    ) -> Result<BearerToken, KeyError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| KeyError::UnknownKey {
                key_id: sealed.key_id.clone(),
            })?;
        let corrupt = || KeyError::Corrupt {
            key_id: sealed.key_id.clone(),
        };
        let nonce_bytes: [u8; 12] = sealed.nonce.as_slice().try_into().map_err(|_| corrupt())?;
        let plain = key
            .cipher
            .decrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: integration_id.as_bytes(),
                },
            )
            .map_err(|_| corrupt())?;
        let text = String::from_utf8(plain).map_err(|_| corrupt())?;
        BearerToken::new(text).map_err(|_| corrupt())
    }
}

/// A fresh random key, base64: what `opsync keygen` prints.
pub fn generate_key() -> String {
    let raw: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn seal_and_open_with_rotation() {
        let k1 = generate_key();
        let k2 = generate_key();
        let id = Uuid::new_v4();
        let token = BearerToken::new("eyJ.secret.token").unwrap();
        let ring1 = Keyring::new(&k1, None).unwrap();
        let sealed = ring1.seal(&token, id);
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            ring1.open(&sealed, id).unwrap().expose(),
            "eyJ.secret.token"
        );
        // Rotated: k2 current, k1 previous: old ciphertexts still open.
        let ring2 = Keyring::new(&k2, Some(&k1)).unwrap();
        assert_eq!(
            ring2.open(&sealed, id).unwrap().expose(),
            "eyJ.secret.token"
        );
        assert_ne!(ring2.seal(&token, id).key_id, sealed.key_id);
        // Without k1 it cannot.
        let ring3 = Keyring::new(&k2, None).unwrap();
        assert!(matches!(
            ring3.open(&sealed, id),
            Err(KeyError::UnknownKey { .. })
        ));
        // Another integration's row: the associated data does not match.
        assert!(matches!(
            ring1.open(&sealed, Uuid::new_v4()),
            Err(KeyError::Corrupt { .. })
        ));
        // Two seals of one token differ (random nonce).
        assert_ne!(ring1.seal(&token, id).ciphertext, sealed.ciphertext);
    }

    #[test]
    fn bad_keys() {
        assert_eq!(Keyring::new("", None).unwrap_err(), KeyError::Missing);
        assert_eq!(
            Keyring::new("c2hvcnQ=", None).unwrap_err(),
            KeyError::Malformed
        );
        assert_eq!(Keyring::new("!!!", None).unwrap_err(), KeyError::Malformed);
        let k = generate_key();
        assert!(format!("{:?}", Keyring::new(&k, None).unwrap()).len() < 80);
    }
}
