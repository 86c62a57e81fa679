use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use bigdecimal::num_bigint::BigInt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Digits accepted on each side of the point. Feedback values are at most 39 digits with up
/// to 18 decimals and agent ids 78 digits; the bound keeps hostile input from costing memory.
const MAX_INTEGER_DIGITS: usize = 80;
const MAX_FRACTION_DIGITS: usize = 40;

/// An exact decimal number. Comparisons are exact over the whole range the registries can
/// emit (int128 with up to 18 decimals, uint256), so `99.77 == 99.770` and no float rounding
/// ever decides a trigger.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decimal(BigDecimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a decimal number such as 42, -3.2 or 99.77 (at most {MAX_INTEGER_DIGITS} digits before the point and {MAX_FRACTION_DIGITS} after)"
)]
pub struct DecimalError;

impl Decimal {
    /// `raw / 10^decimals`, the way ERC-8004 encodes feedback values.
    pub fn from_scaled(raw: i128, decimals: u8) -> Self {
        Self(BigDecimal::new(BigInt::from(raw), i64::from(decimals)))
    }

    pub fn as_big_decimal(&self) -> &BigDecimal {
        &self.0
    }

    pub fn from_big_decimal(value: BigDecimal) -> Self {
        Self(value)
    }

    /// Digits kept after the point by divisions and products (EMA, averages). Results are
    /// rounded half-to-even at this scale, the same way on every run.
    pub const ARITHMETIC_SCALE: i64 = 30;

    /// `numerator / denominator`, rounded to [`Decimal::ARITHMETIC_SCALE`]; `None` for a zero
    /// denominator.
    pub fn ratio(numerator: i64, denominator: i64) -> Self {
        Self::from(numerator).div(&Self::from(denominator)).unwrap_or_else(|| Self::from(0))
    }

    pub fn add(&self, other: &Self) -> Self {
        Self(&self.0 + &other.0)
    }

    pub fn sub(&self, other: &Self) -> Self {
        Self(&self.0 - &other.0)
    }

    /// The product, rounded to [`Decimal::ARITHMETIC_SCALE`].
    pub fn mul(&self, other: &Self) -> Self {
        Self(&self.0 * &other.0).rounded()
    }

    /// The quotient, rounded to [`Decimal::ARITHMETIC_SCALE`]; `None` when `other` is zero.
    pub fn div(&self, other: &Self) -> Option<Self> {
        if bigdecimal::Zero::is_zero(&other.0) {
            return None;
        }
        Some(Self(&self.0 / &other.0).rounded())
    }

    fn rounded(self) -> Self {
        if self.0.fractional_digit_count() > Self::ARITHMETIC_SCALE {
            Self(self.0.with_scale_round(Self::ARITHMETIC_SCALE, bigdecimal::RoundingMode::HalfEven))
        } else {
            self
        }
    }

    /// Compares with another decimal (same as `Ord`, spelled out for readers of conditions).
    pub fn compare(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl From<i64> for Decimal {
    fn from(value: i64) -> Self {
        Self(BigDecimal::from(value))
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unsigned = s.strip_prefix('-').unwrap_or(s);
        let (int, frac) = match unsigned.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (unsigned, None),
        };
        let digits_ok =
            |part: &str, max: usize| !part.is_empty() && part.len() <= max && part.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok(int, MAX_INTEGER_DIGITS) || frac.is_some_and(|f| !digits_ok(f, MAX_FRACTION_DIGITS)) {
            return Err(DecimalError);
        }
        BigDecimal::from_str(s).map(Self).map_err(|_| DecimalError)
    }
}

/// The shortest exact form: no exponent, no trailing zeros after the point.
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let normalized = self.0.normalized();
        let text = if normalized.fractional_digit_count() < 0 {
            normalized.with_scale(0).to_string()
        } else {
            normalized.to_string()
        };
        f.write_str(&text)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Accepts a decimal string or a JSON number written without an exponent.
impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_json::Number),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Number(number) => number.to_string(),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn equal_values_with_different_scales_are_equal() {
        assert_eq!(d("99.77"), d("99.770"));
        assert_eq!(Decimal::from_scaled(9977, 2), d("99.77"));
        assert_eq!(Decimal::from_scaled(-32, 1), d("-3.2"));
        assert!(d("-3.2") < d("-3.19"));
    }

    #[test]
    fn comparisons_are_exact_at_the_edges_of_int128() {
        let max = Decimal::from_scaled(i128::MAX, 18);
        let just_below = Decimal::from_scaled(i128::MAX - 1, 18);
        assert!(just_below < max);
        assert_eq!(max.to_string(), "170141183460469231731.687303715884105727");
        assert_eq!(Decimal::from_scaled(i128::MIN, 0).to_string(), i128::MIN.to_string());
    }

    #[test]
    fn display_is_plain_and_normalized() {
        assert_eq!(Decimal::from_scaled(1000, 2).to_string(), "10");
        assert_eq!(Decimal::from_scaled(1050, 2).to_string(), "10.5");
        assert_eq!(Decimal::from_scaled(0, 18).to_string(), "0");
        assert_eq!(d("100000000000000000000").to_string(), "100000000000000000000");
    }

    #[test]
    fn rejects_what_is_not_a_plain_decimal() {
        for bad in ["", "-", "1e5", "1.", ".5", "+1", "NaN", "1,5", " 1", &"9".repeat(81)] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deserializes_from_strings_and_numbers() {
        let a: Decimal = serde_json::from_str("\"95\"").unwrap();
        let b: Decimal = serde_json::from_str("95").unwrap();
        let c: Decimal = serde_json::from_str("95.0").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(serde_json::from_str::<Decimal>("1e400").is_err());
    }
}
