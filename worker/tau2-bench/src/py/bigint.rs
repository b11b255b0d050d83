//! Just enough arbitrary-precision integer arithmetic for `calculate`:
//! Python evaluates integer literals and `+ - * // **` exactly, and only the
//! final `float()` (or a mixed operation) rounds.

use std::cmp::Ordering;

/// An integer as sign and magnitude (base 2^32 limbs, least significant
/// first, no high zero limbs; zero is non-negative and empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BigInt {
    negative: bool,
    mag: Vec<u32>,
}

/// A result too large to compute here (Python would need minutes).
#[derive(Debug)]
pub(super) struct TooLarge;

/// Bits beyond which `**` gives up (Python's float() fails far earlier).
const MAX_BITS: u64 = 1 << 17;

impl BigInt {
    #[cfg(test)]
    fn zero() -> Self {
        Self {
            negative: false,
            mag: Vec::new(),
        }
    }

    pub(super) fn from_u64(v: u64) -> Self {
        let mut mag = vec![v as u32, (v >> 32) as u32];
        trim(&mut mag);
        Self {
            negative: false,
            mag,
        }
    }

    /// A literal of ASCII digits.
    pub(super) fn parse(digits: &str) -> Self {
        let mut mag = Vec::new();
        for chunk in digits.as_bytes().chunks(9) {
            let mut value = 0u32;
            for b in chunk {
                value = value * 10 + u32::from(b - b'0');
            }
            mul_small_add(&mut mag, 10u32.pow(chunk.len() as u32), value);
        }
        trim(&mut mag);
        Self {
            negative: false,
            mag,
        }
    }

    pub(super) fn is_zero(&self) -> bool {
        self.mag.is_empty()
    }

    pub(super) fn is_negative(&self) -> bool {
        self.negative
    }

    pub(super) fn bits(&self) -> u64 {
        bit_len(&self.mag)
    }

    fn with_sign(mut mag: Vec<u32>, negative: bool) -> Self {
        trim(&mut mag);
        let negative = negative && !mag.is_empty();
        Self { negative, mag }
    }

    pub(super) fn neg(&self) -> Self {
        Self::with_sign(self.mag.clone(), !self.negative)
    }

    pub(super) fn add(&self, other: &Self) -> Self {
        if self.negative == other.negative {
            return Self::with_sign(add_mag(&self.mag, &other.mag), self.negative);
        }
        match cmp_mag(&self.mag, &other.mag) {
            Ordering::Less => Self::with_sign(sub_mag(&other.mag, &self.mag), other.negative),
            _ => Self::with_sign(sub_mag(&self.mag, &other.mag), self.negative),
        }
    }

    pub(super) fn sub(&self, other: &Self) -> Self {
        self.add(&other.neg())
    }

    pub(super) fn mul(&self, other: &Self) -> Self {
        Self::with_sign(
            mul_mag(&self.mag, &other.mag),
            self.negative != other.negative,
        )
    }

    /// Floor division (`//`); `None` for a zero divisor.
    pub(super) fn div_floor(&self, other: &Self) -> Option<Self> {
        if other.is_zero() {
            return None;
        }
        let (q, r) = divmod_mag(&self.mag, &other.mag);
        let negative = self.negative != other.negative;
        let q = Self::with_sign(q, negative);
        Some(if negative && !r.is_empty() {
            q.sub(&Self::from_u64(1))
        } else {
            q
        })
    }

    /// `self ** exp` for a non-negative exponent.
    pub(super) fn pow(&self, exp: &Self) -> Result<Self, TooLarge> {
        let base_bits = bit_len(&self.mag);
        if base_bits <= 1 {
            // 0, 1 and -1 stay small for any exponent.
            let odd = exp.mag.first().is_some_and(|l| l & 1 == 1);
            return Ok(if exp.is_zero() {
                Self::from_u64(1)
            } else {
                Self::with_sign(self.mag.clone(), self.negative && odd)
            });
        }
        let e = exp
            .to_u64()
            .filter(|e| e.saturating_mul(base_bits) <= MAX_BITS);
        let mut e = e.ok_or(TooLarge)?;
        let mut result = Self::from_u64(1);
        let mut square = self.clone();
        while e > 0 {
            if e & 1 == 1 {
                result = result.mul(&square);
            }
            e >>= 1;
            if e > 0 {
                square = square.mul(&square);
            }
        }
        Ok(result)
    }

    fn to_u64(&self) -> Option<u64> {
        self.abs_u64().filter(|_| !self.negative)
    }

    /// The value as an `i64`, if it fits.
    pub(super) fn to_i64(&self) -> Option<i64> {
        let m = i64::try_from(self.abs_u64()?).ok()?;
        Some(if self.negative { -m } else { m })
    }

    /// The magnitude as a `u64`, if it fits.
    fn abs_u64(&self) -> Option<u64> {
        (self.mag.len() <= 2).then(|| low_u64(&self.mag))
    }

    /// `float(self)`, correctly rounded; `None` when it overflows.
    pub(super) fn to_f64(&self) -> Option<f64> {
        let f = round_to_f64(&self.mag, false, 0)?;
        Some(if self.negative { -f } else { f })
    }

    /// `self / other` (true division), correctly rounded like CPython.
    /// `Err(true)`: division by zero; `Err(false)`: the result overflows.
    pub(super) fn true_div(&self, other: &Self) -> Result<f64, bool> {
        if other.is_zero() {
            return Err(true);
        }
        let negative = self.negative != other.negative;
        let sign = if negative { -1.0 } else { 1.0 };
        const EXACT: u64 = 53;
        let (a_bits, b_bits) = (bit_len(&self.mag), bit_len(&other.mag));
        if a_bits <= EXACT && b_bits <= EXACT {
            let a = self.abs_u64().unwrap_or(0) as f64;
            let b = other.abs_u64().unwrap_or(1) as f64;
            return Ok(sign * (a / b));
        }
        if self.is_zero() {
            return Ok(sign * 0.0);
        }
        // Scale so that the quotient has at least 55 significant bits.
        let shift = 56 + b_bits as i64 - a_bits as i64;
        let (num, den) = if shift >= 0 {
            (shl_mag(&self.mag, shift as u64), other.mag.clone())
        } else {
            (self.mag.clone(), shl_mag(&other.mag, shift.unsigned_abs()))
        };
        let (q, r) = divmod_mag(&num, &den);
        round_to_f64(&q, !r.is_empty(), -shift)
            .map(|f| sign * f)
            .ok_or(false)
    }
}

impl std::fmt::Display for BigInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chunks = Vec::new();
        let mut mag = self.mag.clone();
        while !mag.is_empty() {
            chunks.push(div_small(&mut mag, 1_000_000_000));
        }
        if self.negative {
            f.write_str("-")?;
        }
        match chunks.split_last() {
            None => f.write_str("0"),
            Some((first, rest)) => {
                write!(f, "{first}")?;
                rest.iter().rev().try_for_each(|c| write!(f, "{c:09}"))
            }
        }
    }
}

fn trim(mag: &mut Vec<u32>) {
    while mag.last() == Some(&0) {
        mag.pop();
    }
}

fn bit_len(mag: &[u32]) -> u64 {
    mag.last().map_or(0, |top| {
        mag.len() as u64 * 32 - u64::from(top.leading_zeros())
    })
}

fn bit(mag: &[u32], i: u64) -> bool {
    mag.get((i / 32) as usize)
        .is_some_and(|limb| limb >> (i % 32) & 1 == 1)
}

fn cmp_mag(a: &[u32], b: &[u32]) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.iter().rev().cmp(b.iter().rev()))
}

fn add_mag(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0u64;
    for i in 0..a.len().max(b.len()) {
        let sum = u64::from(*a.get(i).unwrap_or(&0)) + u64::from(*b.get(i).unwrap_or(&0)) + carry;
        out.push(sum as u32);
        carry = sum >> 32;
    }
    out.push(carry as u32);
    trim(&mut out);
    out
}

/// `a - b` for `a >= b`.
fn sub_mag(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len());
    let mut borrow = 0i64;
    for (i, &limb) in a.iter().enumerate() {
        let mut diff = i64::from(limb) - i64::from(*b.get(i).unwrap_or(&0)) - borrow;
        borrow = i64::from(diff < 0);
        if diff < 0 {
            diff += 1 << 32;
        }
        out.push(diff as u32);
    }
    trim(&mut out);
    out
}

fn mul_mag(a: &[u32], b: &[u32]) -> Vec<u32> {
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0u32; a.len() + b.len()];
    for (i, &x) in a.iter().enumerate() {
        let mut carry = 0u64;
        for (j, &y) in b.iter().enumerate() {
            let t = u64::from(x) * u64::from(y) + u64::from(out[i + j]) + carry;
            out[i + j] = t as u32;
            carry = t >> 32;
        }
        out[i + b.len()] = carry as u32;
    }
    trim(&mut out);
    out
}

fn mul_small_add(mag: &mut Vec<u32>, factor: u32, add: u32) {
    let mut carry = u64::from(add);
    for limb in mag.iter_mut() {
        let t = u64::from(*limb) * u64::from(factor) + carry;
        *limb = t as u32;
        carry = t >> 32;
    }
    if carry > 0 {
        mag.push(carry as u32);
    }
}

/// Divides in place by a small divisor, returning the remainder.
fn div_small(mag: &mut Vec<u32>, divisor: u32) -> u32 {
    let mut rem = 0u64;
    for limb in mag.iter_mut().rev() {
        let cur = (rem << 32) | u64::from(*limb);
        *limb = (cur / u64::from(divisor)) as u32;
        rem = cur % u64::from(divisor);
    }
    trim(mag);
    rem as u32
}

fn shl_mag(a: &[u32], shift: u64) -> Vec<u32> {
    let (limbs, bits) = ((shift / 32) as usize, (shift % 32) as u32);
    let mut out = vec![0u32; limbs];
    let mut carry = 0u32;
    for &limb in a {
        if bits == 0 {
            out.push(limb);
        } else {
            out.push((limb << bits) | carry);
            carry = limb >> (32 - bits);
        }
    }
    out.push(carry);
    trim(&mut out);
    out
}

/// Quotient and remainder of magnitudes (Knuth's algorithm D).
fn divmod_mag(a: &[u32], b: &[u32]) -> (Vec<u32>, Vec<u32>) {
    if cmp_mag(a, b) == Ordering::Less {
        return (Vec::new(), a.to_vec());
    }
    let [.., _, top] = b else {
        let mut q = a.to_vec();
        let mut r = vec![div_small(&mut q, b.first().copied().unwrap_or(1))];
        trim(&mut r);
        return (q, r);
    };
    // Normalize so the divisor's top limb has its high bit set.
    let shift = u64::from(top.leading_zeros());
    let b = shl_mag(b, shift);
    let mut a = shl_mag(a, shift);
    let n = b.len();
    a.resize(a.len().max(n) + 1, 0);
    let (b_top, b_second) = (u64::from(b[n - 1]), u64::from(b[n - 2]));
    let mut q = vec![0u32; a.len() - n];
    for j in (0..q.len()).rev() {
        let num = (u64::from(a[j + n]) << 32) | u64::from(a[j + n - 1]);
        let mut qhat = num / b_top;
        let mut rhat = num % b_top;
        while qhat >= 1 << 32 || qhat * b_second > ((rhat << 32) | u64::from(a[j + n - 2])) {
            qhat -= 1;
            rhat += b_top;
            if rhat >= 1 << 32 {
                break;
            }
        }
        // a[j..=j+n] -= qhat * b
        let mut borrow = 0i64;
        let mut carry = 0u64;
        for i in 0..n {
            let product = qhat * u64::from(b[i]) + carry;
            carry = product >> 32;
            let t = i64::from(a[i + j]) - borrow - (product & 0xffff_ffff) as i64;
            a[i + j] = t as u32;
            borrow = i64::from(t < 0);
        }
        let t = i64::from(a[j + n]) - borrow - carry as i64;
        a[j + n] = t as u32;
        if t < 0 {
            // qhat was one too large: add the divisor back.
            qhat -= 1;
            let mut carry = 0u64;
            for i in 0..n {
                let sum = u64::from(a[i + j]) + u64::from(b[i]) + carry;
                a[i + j] = sum as u32;
                carry = sum >> 32;
            }
            a[j + n] = a[j + n].wrapping_add(carry as u32);
        }
        q[j] = qhat as u32;
    }
    trim(&mut q);
    a.truncate(n);
    trim(&mut a);
    (q, shr_mag(&a, shift))
}

fn shr_mag(a: &[u32], shift: u64) -> Vec<u32> {
    if shift == 0 {
        return a.to_vec();
    }
    let shift = shift as u32;
    let mut out: Vec<u32> = (0..a.len())
        .map(|i| (a[i] >> shift) | a.get(i + 1).map_or(0, |next| next << (32 - shift)))
        .collect();
    trim(&mut out);
    out
}

/// `m * 2^exp2` (plus a little more when `sticky`) rounded half-to-even to
/// the nearest double, subnormals included; `None` when it overflows.
fn round_to_f64(m: &[u32], sticky: bool, exp2: i64) -> Option<f64> {
    let n = bit_len(m) as i64;
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
        low_u64(m) << (-drop) as u32
    } else {
        let kept = shr_u64(m, drop as u64);
        let half = bit(m, drop as u64 - 1);
        let below_half = (0..drop as u64 - 1).any(|i| bit(m, i)) || sticky;
        let round_up = half && (below_half || kept & 1 == 1);
        kept + u64::from(round_up)
    };
    let value = ldexp(mantissa as f64, exp2 + drop);
    value.is_finite().then_some(value)
}

/// The low 64 bits of the magnitude.
fn low_u64(m: &[u32]) -> u64 {
    u64::from(*m.first().unwrap_or(&0)) | (u64::from(*m.get(1).unwrap_or(&0)) << 32)
}

/// Bits `shift..shift+64` of the magnitude.
fn shr_u64(m: &[u32], shift: u64) -> u64 {
    (0..64).fold(0u64, |acc, i| acc | (u64::from(bit(m, shift + i)) << i))
}

/// `x * 2^k`, exact while the result is representable.
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
