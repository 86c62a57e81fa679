use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("expected 0x followed by {expected} hex digits")]
    Length { expected: usize },
    #[error("expected 0x-prefixed hex")]
    Format,
}

fn decode_prefixed(s: &str) -> Result<Vec<u8>, HexError> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).ok_or(HexError::Format)?;
    alloy_primitives::hex::decode(digits).map_err(|_| HexError::Format)
}

fn encode_prefixed(bytes: &[u8]) -> String {
    format!("0x{}", alloy_primitives::hex::encode(bytes))
}

macro_rules! fixed_hex {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl $name {
            pub fn as_slice(&self) -> &[u8] {
                self.0.as_slice()
            }
        }

        impl FromStr for $name {
            type Err = HexError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let bytes = decode_prefixed(s).map_err(|_| HexError::Length { expected: $len * 2 })?;
                if bytes.len() != $len {
                    return Err(HexError::Length { expected: $len * 2 });
                }
                Ok(Self(<$inner>::from_slice(&bytes)))
            }
        }

        /// Lower-case 0x hex, the only form the project writes.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&encode_prefixed(self.0.as_slice()))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl From<$inner> for $name {
            fn from(inner: $inner) -> Self {
                Self(inner)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fixed_hex!(
    /// A 20-byte EVM address. Compared and written in lower case.
    Address,
    alloy_primitives::Address,
    20
);

fixed_hex!(
    /// A 32-byte hash (transaction, block, feedback, request...).
    Hash32,
    alloy_primitives::B256,
    32
);

/// Arbitrary bytes written as 0x hex (metadata values).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct HexBytes(pub Vec<u8>);

impl FromStr for HexBytes {
    type Err = HexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_prefixed(s).map(Self)
    }
}

impl fmt::Display for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_prefixed(&self.0))
    }
}

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_any_case_and_print_lower_case() {
        let a: Address = "0x8004A818BFB912233c491871b3d84c89A494BD9e".parse().unwrap();
        assert_eq!(a.to_string(), "0x8004a818bfb912233c491871b3d84c89a494bd9e");
        assert_eq!(a, "0x8004a818bfb912233c491871b3d84c89a494bd9e".parse().unwrap());
        assert_eq!("0x1234".parse::<Address>(), Err(HexError::Length { expected: 40 }));
        assert!("8004a818bfb912233c491871b3d84c89a494bd9e".parse::<Address>().is_err());
    }

    #[test]
    fn bytes_round_trip() {
        let b: HexBytes = "0xDEADbeef".parse().unwrap();
        assert_eq!(b.0, vec![0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"0xdeadbeef\"");
        assert_eq!("0x".parse::<HexBytes>().unwrap(), HexBytes::default());
    }
}
