use std::fmt;
use std::str::FromStr;

use alloy_primitives::U256;
use bigdecimal::BigDecimal;
use bigdecimal::num_bigint::{BigInt, Sign};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Decimal;

/// An EVM chain id (EIP-155).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(pub u64);

impl ChainId {
    /// As stored in PostgreSQL (`BIGINT`); ids above `i64::MAX` are refused at the boundary.
    pub fn as_i64(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The store's sequence number of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub i64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An ERC-8004 agent id: the ERC-721 token id, a uint256. Written as a decimal string
/// everywhere outside Rust, since JSON numbers cannot hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(U256);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an agent id must be a decimal integer from 0 to 2^256-1")]
pub struct AgentIdError;

impl AgentId {
    pub const fn new(value: U256) -> Self {
        Self(value)
    }

    pub fn as_u256(&self) -> U256 {
        self.0
    }

    /// The id as an exact decimal, for numeric comparisons.
    pub fn to_decimal(&self) -> Decimal {
        let digits = BigInt::from_bytes_be(Sign::Plus, &self.0.to_be_bytes::<32>());
        Decimal::from_big_decimal(BigDecimal::from(digits))
    }
}

impl From<u64> for AgentId {
    fn from(value: u64) -> Self {
        Self(U256::from(value))
    }
}

impl FromStr for AgentId {
    type Err = AgentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AgentIdError);
        }
        U256::from_str_radix(s, 10).map(Self).map_err(|_| AgentIdError)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // U256's Display is decimal.
        self.0.fmt(f)
    }
}

impl Serialize for AgentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Raw::Number(n) => Ok(Self::from(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_cover_uint256() {
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        let id: AgentId = max.parse().unwrap();
        assert_eq!(id.to_string(), max);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{max}\""));
        assert!(
            "115792089237316195423570985008687907853269984665640564039457584007913129639936"
                .parse::<AgentId>()
                .is_err()
        );
        for bad in ["", "-1", "0x10", "1.0", " 1"] {
            assert!(bad.parse::<AgentId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn agent_ids_deserialize_from_strings_and_small_numbers() {
        let a: AgentId = serde_json::from_str("\"42\"").unwrap();
        let b: AgentId = serde_json::from_str("42").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<AgentId>("-42").is_err());
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            pub fn new_random() -> Self {
                Self(uuid::Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A user account.
    UserId
);
uuid_id!(
    /// A trigger.
    TriggerId
);
uuid_id!(
    /// One action of a trigger.
    ActionId
);
uuid_id!(
    /// One job: the delivery of one action for one firing. Derived, never random: see
    /// [`JobId::derive`].
    JobId
);

/// The namespace of job ids (a fixed random UUID).
const JOB_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x8004_6a0b_5e1d_4c3f_9a27_d1b0_c0ff_ee42);

impl JobId {
    /// The job of firing `action` of `trigger` for `event`: the same inputs always give the
    /// same id, so a firing decided twice cannot become two jobs.
    pub fn derive(event: EventId, trigger: TriggerId, action: ActionId) -> Self {
        let name = format!("{}:{}:{}", event.0, trigger.0, action.0);
        Self(uuid::Uuid::new_v5(&JOB_NAMESPACE, name.as_bytes()))
    }
}
