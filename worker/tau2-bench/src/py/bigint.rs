//! Python's `int` for `calculate`: integer literals and `+ - * // **` are
//! exact (num-bigint), and conversions to float round correctly as CPython
//! does (`float(i)` and `i / j`, subnormals included).

use num_bigint::{BigInt as Big, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};

/// An arbitrary-precision integer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BigInt(Big);

/// A result too large to compute here (Python would need minutes).
#[derive(Debug)]
pub(super) struct TooLarge;

/// Bits beyond which `**` gives up (Python's float() fails far earlier).
const MAX_BITS: u64 = 1 << 17;

impl BigInt {
    #[cfg(test)]
    fn zero() -> Self {
        Self(Big::zero())
    }

    /// A literal of ASCII digits.
    pub(super) fn parse(digits: &str) -> Self {
        Self(Big::parse_bytes(digits.as_bytes(), 10).unwrap_or_default())
    }

    pub(super) fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub(super) fn is_negative(&self) -> bool {
        self.0.is_negative()
    }

    pub(super) fn bits(&self) -> u64 {
        self.0.bits()
    }

    pub(super) fn neg(&self) -> Self {
        Self(-&self.0)
    }

    pub(super) fn add(&self, other: &Self) -> Self {
        Self(&self.0 + &other.0)
    }

    pub(super) fn sub(&self, other: &Self) -> Self {
        Self(&self.0 - &other.0)
    }

    pub(super) fn mul(&self, other: &Self) -> Self {
        Self(&self.0 * &other.0)
    }

    /// Floor division (`//`); `None` for a zero divisor.
    pub(super) fn div_floor(&self, other: &Self) -> Option<Self> {
        (!other.is_zero()).then(|| Self(self.0.div_floor(&other.0)))
    }

    /// `self ** exp` for a non-negative exponent.
    pub(super) fn pow(&self, exp: &Self) -> Result<Self, TooLarge> {
        if self.0.bits() <= 1 {
            // 0, 1 and -1 stay small for any exponent.
            return Ok(if exp.is_zero() {
                Self(Big::one())
            } else if exp.0.is_odd() {
                self.clone()
            } else {
                Self(self.0.abs())
            });
        }
        let e = exp
            .0
            .to_u32()
            .filter(|e| u64::from(*e).saturating_mul(self.0.bits()) <= MAX_BITS)
            .ok_or(TooLarge)?;
        Ok(Self(num_traits::pow::Pow::pow(&self.0, e)))
    }

    /// The value as an `i64`, if it fits.
    pub(super) fn to_i64(&self) -> Option<i64> {
        self.0.to_i64()
    }

    /// `float(self)`, correctly rounded; `None` when it overflows.
    pub(super) fn to_f64(&self) -> Option<f64> {
        let f = round_to_f64(self.0.magnitude(), false, 0)?;
        Some(if self.is_negative() { -f } else { f })
    }

    /// `self / other` (true division), correctly rounded like CPython.
    /// `Err(true)`: division by zero; `Err(false)`: the result overflows.
    pub(super) fn true_div(&self, other: &Self) -> Result<f64, bool> {
        if other.is_zero() {
            return Err(true);
        }
        let negative = (self.0.sign() == Sign::Minus) != (other.0.sign() == Sign::Minus);
        let sign = if negative { -1.0 } else { 1.0 };
        const EXACT: u64 = 53;
        let (a, b) = (self.0.magnitude(), other.0.magnitude());
        let (a_bits, b_bits) = (a.bits(), b.bits());
        if a_bits <= EXACT && b_bits <= EXACT {
            let a = a.to_u64().unwrap_or(0) as f64;
            let b = b.to_u64().unwrap_or(1) as f64;
            return Ok(sign * (a / b));
        }
        if self.is_zero() {
            return Ok(sign * 0.0);
        }
        // Scale so that the quotient has at least 55 significant bits.
        let shift = 56 + b_bits as i64 - a_bits as i64;
        let (num, den) = if shift >= 0 {
            (a << shift as u64, b.clone())
        } else {
            (a.clone(), b << shift.unsigned_abs())
        };
        let (q, r) = num.div_rem(&den);
        round_to_f64(&q, !r.is_zero(), -shift)
            .map(|f| sign * f)
            .ok_or(false)
    }
}

impl std::fmt::Display for BigInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// `m * 2^exp2` rounded to the nearest double, ties to even, where
/// `sticky` says that `m` was truncated (non-zero bits below it); `None`
/// when it overflows. Subnormals round once, at their own precision.
fn round_to_f64(m: &num_bigint::BigUint, sticky: bool, exp2: i64) -> Option<f64> {
    let n = m.bits() as i64;
    if n == 0 {
        return Some(0.0);
    }
    let top = n - 1 + exp2;
    if top > 1023 {
        return None;
    }
    let precision = if top >= -1022 { 53 } else { top + 1075 };
    let drop = n - precision;
    let mantissa = if drop <= 0 {
        m.to_u64().unwrap_or(0) << (-drop) as u32
    } else {
        let drop = drop as u64;
        let kept = (m >> drop).to_u64().unwrap_or(0);
        let half = m.bit(drop - 1);
        let below_half = sticky || m.trailing_zeros().is_some_and(|z| z < drop - 1);
        let round_up = half && (below_half || kept & 1 == 1);
        kept + u64::from(round_up)
    };
    let value = ldexp(mantissa as f64, exp2 + drop);
    value.is_finite().then_some(value)
}

fn ldexp(mut x: f64, mut k: i64) -> f64 {
    let step = |e: i64| f64::from_bits(((e + 1023) as u64) << 52);
    while k > 1000 {
        x *= step(1000);
        k -= 1000;
    }
    while k < -1000 {
        x *= step(-1000);
        k += 1000;
    }
    x * step(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(s: &str) -> BigInt {
        match s.strip_prefix('-') {
            Some(d) => BigInt::parse(d).neg(),
            None => BigInt::parse(s),
        }
    }

    #[test]
    fn arithmetic_is_exact() {
        let a = big("123456789012345678901234567890");
        let b = big("987654321098765432109876543210");
        assert_eq!(
            a.mul(&b).to_string(),
            "121932631137021795226185032733622923332237463801111263526900"
        );
        assert_eq!(a.sub(&b).to_string(), "-864197532086419753208641975320");
        assert_eq!(b.div_floor(&a).map(|q| q.to_string()), Some("8".into()));
        assert_eq!(
            big("-7").div_floor(&big("2")).map(|q| q.to_string()),
            Some("-4".into())
        );
        assert_eq!(
            big("2").pow(&big("100")).map(|p| p.to_string()).ok(),
            Some("1267650600228229401496703205376".into())
        );
    }

    #[test]
    fn conversions_round_like_python() {
        assert_eq!(big("9007199254740993").to_f64(), Some(9007199254740992.0));
        assert_eq!(big("999999999999999999999").to_f64(), Some(1e21));
        let two_1024 = big("2").pow(&big("1024")).ok().unwrap_or_else(BigInt::zero);
        assert_eq!(two_1024.to_f64(), None);
        assert_eq!(
            big("12345678901234567890123").true_div(&big("7")),
            Ok(1.763668414462081e21)
        );
        assert_eq!(big("1").true_div(&big("0")), Err(true));
        assert_eq!(
            big("3").true_div(&big("2").pow(&big("1100")).ok().unwrap_or_else(BigInt::zero)),
            Ok(0.0)
        );
    }
}
