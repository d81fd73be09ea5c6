//! Kubernetes resource quantities (`100m`, `0.5`, `64Mi`, `1G`, `1e3`) as integers.

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity \"{text}\" is not valid: {why} (examples: 250m, 2, 64Mi, 1G)")]
pub struct QuantityError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// The value of a quantity, multiplied by 1000 and rounded up (so CPU `100m` is 100 and memory
/// `1Ki` is 1_024_000). Use [`millis`] for CPU and [`units`] for memory and counts.
fn parse_milli(text: &str) -> Result<i128, QuantityError> {
    let err = |why| QuantityError { text: text.to_string(), why };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    if number.is_empty() || number.matches('.').count() > 1 || number == "." {
        return Err(err("expected a number"));
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if !int_part.bytes().all(|b| b.is_ascii_digit()) || !frac_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("expected a number"));
    }
    if int_part.len() + frac_part.len() > 30 {
        return Err(err("too many digits"));
    }
    // value = digits / 10^frac_len, scaled by the suffix; kept as a rational num/den.
    let digits: i128 = format!("{int_part}{frac_part}").parse().map_err(|_| err("expected a number"))?;
    let mut num = digits * 1000;
    let mut den: i128 = 10i128.pow(frac_part.len() as u32);
    let (mul, div): (i128, i128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        s if s.starts_with('e') || s.starts_with('E') => {
            let exp: i32 = s[1..].parse().map_err(|_| err("bad exponent"))?;
            if !(-18..=18).contains(&exp) {
                return Err(err("exponent out of range"));
            }
            if exp >= 0 {
                (10i128.pow(exp as u32), 1)
            } else {
                (1, 10i128.pow((-exp) as u32))
            }
        }
        _ => return Err(err("unknown suffix")),
    };
    num = num.checked_mul(mul).ok_or_else(|| err("too large"))?;
    den = den.checked_mul(div).ok_or_else(|| err("too large"))?;
    // Rounds up without `num + den - 1`, which overflows when both are near i128::MAX.
    let value = num / den + i128::from(num % den != 0);
    if value > i64::MAX as i128 {
        return Err(err("too large"));
    }
    Ok(if negative { -value } else { value })
}

/// CPU-style value in thousandths, rounded up: `100m` → 100, `2` → 2000, `0.5` → 500.
pub fn millis(text: &str) -> Result<i64, QuantityError> {
    parse_milli(text).map(|v| v as i64)
}

/// Memory- or count-style value in whole units, rounded up: `64Mi` → 67108864, `1k` → 1000.
pub fn units(text: &str) -> Result<i64, QuantityError> {
    parse_milli(text).map(|v| ((v + 999).div_euclid(1000)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_forms() {
        assert_eq!(millis("100m").unwrap(), 100);
        assert_eq!(millis("2").unwrap(), 2000);
        assert_eq!(millis("0.5").unwrap(), 500);
        assert_eq!(millis("1.0001").unwrap(), 1001);
        assert_eq!(units("64Mi").unwrap(), 64 << 20);
        assert_eq!(units("1G").unwrap(), 1_000_000_000);
        assert_eq!(units("1e3").unwrap(), 1000);
        assert_eq!(units("128974848").unwrap(), 128974848);
        assert_eq!(units("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(units("1m").unwrap(), 1);
        // 30 significant digits scaled to just under i128::MAX must round up without overflow.
        assert_eq!(millis(".170141183460469231731687303715M").unwrap(), 170_141_184);
    }

    #[test]
    fn bad_quantities_say_why() {
        for bad in ["", "abc", "1.2.3", "5Q", "1e99", "99999999999999999999999999999999"] {
            assert!(millis(bad).is_err(), "{bad}");
        }
        assert!(units("12Xi").unwrap_err().to_string().contains("unknown suffix"));
    }
}
