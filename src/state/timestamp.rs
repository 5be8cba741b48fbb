//! Reading the timestamps of a state file. A large stage's state holds thousands of them,
//! and chrono's RFC 3339 parser (a general format interpreter) was a tenth of the decode.
//! ferry writes every timestamp in one form, `2024-05-01T12:00:00Z` with an optional
//! fraction of 1 to 9 digits; that form is read directly here. Anything else goes to chrono,
//! exactly as `DateTime<Utc>`'s own `Deserialize` would, so what is accepted, what it means
//! and every error message are chrono's.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::de::{self, Deserialize, Deserializer};

/// `deserialize_with` for a `DateTime<Utc>` field: the same as its `Deserialize`, faster.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(TimestampVisitor)
}

/// `deserialize_with` for an `Option<DateTime<Utc>>` field (`null` is `None`), through
/// serde's own `Option` so it treats `null` and missing values as that does.
pub fn deserialize_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(Option::<Timestamp>::deserialize(d)?.map(|t| t.0))
}

/// A `DateTime<Utc>` read by [`deserialize`]; only for [`deserialize_option`].
struct Timestamp(DateTime<Utc>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d).map(Timestamp)
    }
}

/// chrono's `DateTimeVisitor`, with the fast path in front.
struct TimestampVisitor;

impl de::Visitor<'_> for TimestampVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        // chrono's words, so a wrong type is reported as before.
        formatter.write_str("an RFC 3339 formatted date and time string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        match parse_utc(value) {
            Some(time) => Ok(time),
            None => value.parse::<DateTime<FixedOffset>>().map(|t| t.with_timezone(&Utc)).map_err(E::custom),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, a valid date and time (no leap second), or `None`
/// for anything else, which chrono then reads or refuses.
fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let nanos = match &b[19..] {
        b"Z" => 0,
        [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
            digits(20..20 + fraction.len())? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    if second > 59 {
        return None; // a leap second: chrono's rules
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    Some(date.and_hms_nano_opt(hour, minute, second, nanos)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What chrono's own `Deserialize` makes of a JSON value, as a result or an error text.
    fn by_chrono(json: &str) -> Result<DateTime<Utc>, String> {
        serde_json::from_str::<DateTime<Utc>>(json).map_err(|e| e.to_string())
    }

    fn by_us(json: &str) -> Result<DateTime<Utc>, String> {
        deserialize(&mut serde_json::Deserializer::from_str(json)).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_what_chrono_reads_and_refuses_what_it_refuses() {
        let cases = [
            r#""2024-05-01T12:00:00Z""#,
            r#""2024-05-01T12:00:00.5Z""#,
            r#""2024-05-01T12:00:00.123Z""#,
            r#""2024-05-01T12:00:00.123456Z""#,
            r#""2024-05-01T12:00:00.123456789Z""#,
            r#""2024-05-01T12:00:00.1234567891Z""#,
            r#""2024-05-01T12:00:00.Z""#,
            r#""0000-01-01T00:00:00Z""#,
            r#""9999-12-31T23:59:59Z""#,
            r#""2024-02-29T00:00:00Z""#,
            r#""2023-02-29T00:00:00Z""#,
            r#""2024-13-01T00:00:00Z""#,
            r#""2024-00-01T00:00:00Z""#,
            r#""2024-04-31T00:00:00Z""#,
            r#""2024-05-01T24:00:00Z""#,
            r#""2024-05-01T23:60:00Z""#,
            r#""2016-12-31T23:59:60Z""#,
            r#""2016-12-31T23:59:60.5Z""#,
            r#""2024-05-01t12:00:00z""#,
            r#""2024-05-01 12:00:00Z""#,
            r#""2024-05-01T12:00:00+02:00""#,
            r#""2024-05-01T12:00:00-00:00""#,
            r#""+2024-05-01T12:00:00Z""#,
            r#""2024-05-01T12:00:00""#,
            r#""2024-5-01T12:00:00Z""#,
            r#""2024-05-01T12:00:0aZ""#,
            r#""2024-05-01T12:00:00ZZ""#,
            r#""2024-05-01T12:00:00Z ""#,
            r#""2024-05-01T12:00:00\u005a""#,
            r#""""#,
            r#""now""#,
            "12",
            "null",
            "[]",
        ];
        for json in cases {
            assert_eq!(by_us(json), by_chrono(json), "{json}");
        }
    }

    #[test]
    fn the_fast_path_takes_the_form_ferry_writes() {
        let now = Utc::now();
        let written = serde_json::to_string(&now).unwrap();
        assert_eq!(parse_utc(written.trim_matches('"')), Some(now), "{written}");
        assert_eq!(by_us(&written), Ok(now));
        assert!(parse_utc("2024-05-01T12:00:00.123Z").is_some());
    }

    #[test]
    fn options_read_null_as_none() {
        let read =
            |json: &str| deserialize_option(&mut serde_json::Deserializer::from_str(json)).map_err(|e| e.to_string());
        let chrono = |json: &str| serde_json::from_str::<Option<DateTime<Utc>>>(json).map_err(|e| e.to_string());
        for json in ["null", r#""2024-05-01T12:00:00Z""#, r#""x""#, "1"] {
            assert_eq!(read(json), chrono(json), "{json}");
        }
    }
}
