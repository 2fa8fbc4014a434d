//! Duration strings: an integer followed by a unit, e.g. `"150ms"` or `"2s"`.

use std::time::Duration;

/// Accepted units with their length in microseconds, longest spelling first
/// where one is a suffix of another ("ms" before "s").
const UNITS: &[(&str, u64)] = &[
    ("us", 1),
    ("ms", 1_000),
    ("s", 1_000_000),
    ("m", 60_000_000),
    ("h", 3_600_000_000),
];

/// Why a duration string was rejected. Each message says what was wrong, then
/// what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Only digits: `"2"`.
    #[error("\"{0}\" has no unit, expected a duration with a unit, e.g. \"2s\" or \"150ms\"")]
    NoUnit(String),
    /// No leading digits, or something that is not a number: `"fast"`, `"1.5s"`.
    #[error("\"{0}\" is not a duration, expected a duration with a unit, e.g. \"2s\" or \"150ms\"")]
    NotADuration(String),
    /// Digits followed by something that is not a unit: `"2sec"`.
    #[error("\"{0}\" has an unknown unit \"{1}\", expected one of us, ms, s, m, h")]
    UnknownUnit(String, String),
    /// Does not fit in 64 bits of microseconds.
    #[error("\"{0}\" is too long, expected at most about 500000 years")]
    TooLarge(String),
}

/// Parses `"<integer><unit>"` with unit `us`, `ms`, `s`, `m` or `h`.
///
/// No spaces, signs, fractions or compound forms (`"1m30s"`) are accepted:
/// one spelling per value keeps configs greppable.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(DurationError::NotADuration(text.to_owned()));
    }
    if unit.is_empty() {
        return Err(DurationError::NoUnit(text.to_owned()));
    }
    let Some(&(_, micros_per_unit)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        if unit.starts_with(|c: char| c == '.' || c == ',' || c.is_whitespace()) {
            return Err(DurationError::NotADuration(text.to_owned()));
        }
        return Err(DurationError::UnknownUnit(text.to_owned(), unit.to_owned()));
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| DurationError::TooLarge(text.to_owned()))?;
    let micros = count
        .checked_mul(micros_per_unit)
        .ok_or_else(|| DurationError::TooLarge(text.to_owned()))?;
    Ok(Duration::from_micros(micros))
}

/// Formats a duration in the largest unit that represents it exactly, in
/// the syntax [`parse_duration`] reads back (`"2s"`, `"150ms"`).
pub fn format_duration(d: Duration) -> String {
    let micros = d.as_micros();
    for (unit, per) in UNITS.iter().rev() {
        let per = u128::from(*per);
        if micros > 0 && micros.is_multiple_of(per) {
            return format!("{}{unit}", micros / per);
        }
    }
    format!("{micros}us")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit() {
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn formats_in_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_micros(7)), "7us");
        assert_eq!(format_duration(Duration::ZERO), "0us");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn rejects_with_reason() {
        assert_eq!(parse_duration("2"), Err(DurationError::NoUnit("2".into())));
        assert_eq!(
            parse_duration(""),
            Err(DurationError::NotADuration(String::new()))
        );
        assert_eq!(
            parse_duration("s"),
            Err(DurationError::NotADuration("s".into()))
        );
        assert_eq!(
            parse_duration("1.5s"),
            Err(DurationError::NotADuration("1.5s".into()))
        );
        assert_eq!(
            parse_duration("2 s"),
            Err(DurationError::NotADuration("2 s".into()))
        );
        assert_eq!(
            parse_duration("2sec"),
            Err(DurationError::UnknownUnit("2sec".into(), "sec".into()))
        );
        assert_eq!(
            parse_duration("-2s"),
            Err(DurationError::NotADuration("-2s".into()))
        );
        assert_eq!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::TooLarge("99999999999999999999h".into()))
        );
        assert_eq!(
            parse_duration("9999999999999h"),
            Err(DurationError::TooLarge("9999999999999h".into()))
        );
        assert_eq!(
            parse_duration("2").map_err(|e| e.to_string()),
            Err(
                "\"2\" has no unit, expected a duration with a unit, e.g. \"2s\" or \"150ms\""
                    .to_owned()
            )
        );
    }
}
