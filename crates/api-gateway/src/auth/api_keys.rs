//! API keys: `erc8004_` followed by 32 random bytes (base64url), shown once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every key starts with this, so a leaked key is recognisable (secret scanners) and the
/// extractor can tell keys from login tokens.
pub const KEY_PREFIX: &str = "erc8004_";
/// Characters of a key kept in clear to show in lists.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 6;

/// A new key: (the key, shown once; its visible prefix; its digest, stored).
pub fn new_key() -> (String, String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let prefix = key.chars().take(SHOWN_CHARS).collect();
    let digest = digest(&key);
    (key, prefix, digest)
}

/// What is stored of a key, and looked up when it is presented.
pub fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}
