//! Text from outside (a chain log, a written event) that the store can always hold.
//!
//! PostgreSQL refuses the NUL character in `TEXT` and `JSONB`, and a chain can emit any
//! bytes for a `string`. [`Text`] is made at the boundary where such text enters: invalid
//! UTF-8 is decoded lossily and NUL becomes U+FFFD, so a value that reached a `Text` can
//! never fail a transaction later. Whoever needs the bytes as emitted keeps them beside it
//! ([`Text::from_bytes`] says when they differ).

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string without NUL characters. Read from the store as it is: the store cannot hold NUL.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct Text(String);

impl Text {
    /// `bytes` as text, and whether that text is exactly the bytes (`false` when invalid
    /// UTF-8 or NUL had to be replaced).
    pub fn from_bytes(bytes: &[u8]) -> (Self, bool) {
        match std::str::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => (Self(text.to_owned()), true),
            Ok(text) => (Self(without_nul(text)), false),
            Err(_) => (Self(without_nul(&String::from_utf8_lossy(bytes))), false),
        }
    }

    /// `text` with every NUL replaced.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        if text.contains('\0') { Self(without_nul(&text)) } else { Self(text) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<Text> for String {
    fn from(text: Text) -> Self {
        text.0
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Reading never fails on content: a NUL that arrives in JSON is replaced as well.
impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_kept_as_it_is() {
        let (text, exact) = Text::from_bytes("uptime ✓".as_bytes());
        assert_eq!(text, "uptime ✓");
        assert!(exact);
    }

    #[test]
    fn nul_becomes_the_replacement_character() {
        let (text, exact) = Text::from_bytes(b"a\0b\0");
        assert_eq!(text, "a\u{FFFD}b\u{FFFD}");
        assert!(!exact);
        assert_eq!(Text::new("\0"), "\u{FFFD}");
        let read: Text = serde_json::from_str("\"x\\u0000y\"").unwrap();
        assert_eq!(read, "x\u{FFFD}y");
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        let (text, exact) = Text::from_bytes(&[b'o', b'k', 0xff, 0xfe, 0x00, b'!']);
        assert_eq!(text, "ok\u{FFFD}\u{FFFD}\u{FFFD}!");
        assert!(!exact);
        assert!(!text.contains('\0'));
    }
}
