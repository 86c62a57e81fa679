//! Secrets at rest: what an action keeps write-only (signing secrets, bot tokens, credential
//! headers) is sealed with XChaCha20-Poly1305 before it reaches PostgreSQL.
//!
//! A [`Keyring`] holds the current key (`SECRETS_KEY`), which seals, and any number of older
//! ones (`SECRETS_OLD_KEYS`), which only open. Every key has an id, stored beside what it
//! sealed, so a key can be rotated: configure the new key as current and the old one as old,
//! then re-seal every row under the new key (the gateway's `reseal-secrets` command), then
//! drop the old key. A sealed value is bound to the row it belongs to (its action id is the
//! associated data): copied onto another row it does not open.
//!
//! The key format is `<id>:<64 hex digits>`, the id 1 to 32 letters, digits, `_` or `-`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::config::{Env, Problems};

/// The first byte of every sealed value: the layout that follows (nonce, then ciphertext).
const LAYOUT: u8 = 1;
const NONCE_BYTES: usize = 24;
/// What a sealed value is bound to besides its row.
const PURPOSE: &[u8] = b"trigger_actions.secrets/";

/// A value sealed under the key `key_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed").field("key_id", &self.key_id).field("bytes", &self.bytes.len()).finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    #[error("no SECRETS_KEY is configured: secrets can be neither sealed nor opened")]
    NoKey,
    #[error("the secrets are sealed under key {0:?}, which is neither SECRETS_KEY nor among SECRETS_OLD_KEYS")]
    UnknownKey(String),
    #[error("the sealed secrets under key {0:?} do not open: damaged, or sealed for another row")]
    Damaged(String),
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The keys that seal and open secrets. Cheap to clone. The default holds no key: it seals
/// and opens nothing, and says so.
#[derive(Clone, Default)]
pub struct Keyring {
    current: Option<Arc<Key>>,
    by_id: Arc<HashMap<String, Arc<Key>>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.by_id.keys().collect();
        ids.sort();
        f.debug_struct("Keyring").field("current", &self.current.as_ref().map(|k| &k.id)).field("ids", &ids).finish()
    }
}

impl Keyring {
    /// A keyring from `<id>:<hex>` specs: `current` seals, every one opens. The error names
    /// what is wrong without repeating any key material.
    pub fn new(current: &str, old: &[&str]) -> Result<Self, String> {
        let current = Arc::new(parse_key(current)?);
        let mut by_id = HashMap::from([(current.id.clone(), current.clone())]);
        for spec in old {
            let key = parse_key(spec)?;
            if by_id.contains_key(&key.id) {
                return Err(format!("key id {:?} appears twice", key.id));
            }
            by_id.insert(key.id.clone(), Arc::new(key));
        }
        Ok(Self { current: Some(current), by_id: Arc::new(by_id) })
    }

    /// `SECRETS_KEY` (required) and `SECRETS_OLD_KEYS` (comma-separated, optional).
    pub fn from_env(env: &Env, problems: &mut Problems) -> Self {
        let Some(current) = env.get("SECRETS_KEY") else {
            problems.push(
                "SECRETS_KEY",
                "is required (<id>:<64 hex digits>, the key that seals stored secrets; `make run` generates one)",
            );
            return Self::default();
        };
        let old: Vec<&str> =
            env.get("SECRETS_OLD_KEYS").unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        match Self::new(current, &old) {
            Ok(keyring) => keyring,
            Err(problem) => {
                problems.push("SECRETS_KEY", problem);
                Self::default()
            }
        }
    }

    /// The id of the key that seals, if any.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_deref().map(|k| k.id.as_str())
    }

    /// Seals `plain` for the row `row` under the current key.
    pub fn seal(&self, row: uuid::Uuid, plain: &[u8]) -> Result<Sealed, SecretsError> {
        let key = self.current.as_ref().ok_or(SecretsError::NoKey)?;
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated(row, &key.id);
        let ciphertext = key
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad: &aad })
            .map_err(|_| SecretsError::Damaged(key.id.clone()))?;
        let mut bytes = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
        bytes.push(LAYOUT);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed { key_id: key.id.clone(), bytes })
    }

    /// Opens what `seal` sealed for the row `row`.
    pub fn open(&self, row: uuid::Uuid, sealed: &Sealed) -> Result<Vec<u8>, SecretsError> {
        if self.current.is_none() {
            return Err(SecretsError::NoKey);
        }
        let key = self.by_id.get(&sealed.key_id).ok_or_else(|| SecretsError::UnknownKey(sealed.key_id.clone()))?;
        let damaged = || SecretsError::Damaged(sealed.key_id.clone());
        let (layout, rest) = sealed.bytes.split_first().ok_or_else(damaged)?;
        if *layout != LAYOUT || rest.len() < NONCE_BYTES {
            return Err(damaged());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| damaged())?;
        let aad = associated(row, &key.id);
        key.cipher.decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad }).map_err(|_| damaged())
    }

    /// Seals a JSON value (an action's secrets).
    pub fn seal_json(&self, row: uuid::Uuid, plain: &serde_json::Value) -> Result<Sealed, SecretsError> {
        self.seal(row, plain.to_string().as_bytes())
    }

    /// Opens a JSON value sealed by [`Keyring::seal_json`].
    pub fn open_json(&self, row: uuid::Uuid, sealed: &Sealed) -> Result<serde_json::Value, SecretsError> {
        let bytes = self.open(row, sealed)?;
        serde_json::from_slice(&bytes).map_err(|_| SecretsError::Damaged(sealed.key_id.clone()))
    }
}

fn associated(row: uuid::Uuid, key_id: &str) -> Vec<u8> {
    [PURPOSE, row.as_bytes(), b"/", key_id.as_bytes()].concat()
}

fn parse_key(spec: &str) -> Result<Key, String> {
    let Some((id, hex)) = spec.trim().split_once(':') else {
        return Err("expected <id>:<64 hex digits>".to_owned());
    };
    let valid_id =
        !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_id {
        return Err("a key id is 1 to 32 letters, digits, _ or -".to_owned());
    }
    let digits = hex.as_bytes();
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!("key {id:?}: the key is 64 hex digits (32 random bytes)"));
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).map_err(|_| format!("key {id:?}: not hex"))?;
        *byte = u8::from_str_radix(text, 16).map_err(|_| format!("key {id:?}: not hex"))?;
    }
    let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| format!("key {id:?}: not 32 bytes"))?;
    Ok(Key { id: id.to_owned(), cipher })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "b:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn sealed_values_open_for_their_row_only_and_hide_the_plain_text() {
        let ring = Keyring::new(A, &[]).expect("a valid key");
        let (row, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let sealed = ring.seal(row, b"Bearer hunter2").expect("seal");
        assert_eq!(sealed.key_id, "a");
        assert!(!sealed.bytes.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(ring.open(row, &sealed).expect("open"), b"Bearer hunter2");
        assert_eq!(ring.open(other, &sealed), Err(SecretsError::Damaged("a".into())));
        let mut flipped = sealed.clone();
        if let Some(last) = flipped.bytes.last_mut() {
            *last ^= 1;
        }
        assert_eq!(ring.open(row, &flipped), Err(SecretsError::Damaged("a".into())));
        let truncated = Sealed { key_id: "a".into(), bytes: vec![LAYOUT, 1, 2] };
        assert_eq!(ring.open(row, &truncated), Err(SecretsError::Damaged("a".into())));
        // Two seals of one value differ (a fresh nonce each time).
        assert_ne!(ring.seal(row, b"x").expect("seal").bytes, ring.seal(row, b"x").expect("seal").bytes);
    }

    #[test]
    fn a_rotated_keyring_opens_the_old_key_and_seals_under_the_new() {
        let old = Keyring::new(A, &[]).expect("a valid key");
        let row = uuid::Uuid::new_v4();
        let sealed = old.seal(row, b"s").expect("seal");
        let rotated = Keyring::new(B, &[A]).expect("a valid key");
        assert_eq!(rotated.open(row, &sealed).expect("open"), b"s");
        assert_eq!(rotated.seal(row, b"s").expect("seal").key_id, "b");
        let forgotten = Keyring::new(B, &[]).expect("a valid key");
        assert_eq!(forgotten.open(row, &sealed), Err(SecretsError::UnknownKey("a".into())));
        assert_eq!(Keyring::default().seal(row, b"s"), Err(SecretsError::NoKey));
    }

    #[test]
    fn bad_keys_are_named_without_their_material() {
        for (spec, expected) in [
            ("nocolon", "expected <id>:<64 hex digits>"),
            ("a:1234", "64 hex digits"),
            ("bad id!:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "key id"),
            (":000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "key id"),
            ("a:zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "64 hex digits"),
        ] {
            let error = Keyring::new(spec, &[]).map(|_| ()).expect_err(spec);
            assert!(error.contains(expected), "{spec}: {error}");
            assert!(!error.contains("0102030405"), "{error}");
        }
        assert!(Keyring::new(A, &[A]).map(|_| ()).expect_err("twice").contains("twice"));
        let env = Env::from_pairs([("SECRETS_KEY", "a:00")]);
        let mut problems = Problems::default();
        let ring = Keyring::from_env(&env, &mut problems);
        assert!(ring.current_id().is_none());
        let message = problems.finish(()).expect_err("a bad key").to_string();
        assert!(message.contains("SECRETS_KEY"), "{message}");
    }
}
