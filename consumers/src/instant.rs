//! UTC instants as RFC 3339 text, written and read without `core::fmt`.
//!
//! Every live record carries instants (a call has up to four, every record
//! its commit's), and the gateway reads each record's commit instant back.
//! chrono's own serde writes through `Display` one character at a time and
//! reads with its general parser; together that was about 7 % of the hub's
//! CPU in `lad-bench ingest` (issue #14). The text written is chrono's, byte
//! for byte (`to_rfc3339_opts(SecondsFormat::AutoSi, true)`), and only the
//! form the hub itself writes (`YYYY-MM-DDTHH:MM:SS[.digits]Z`) is read
//! here: anything else goes to chrono, so what is accepted, and every error
//! message, stays chrono's.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike, Utc};
use serde::{de, Deserializer, Serializer};
use std::fmt;

/// Longest text [`write`] produces: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

/// `at` as chrono serializes it, in `buf`; `None` for a year outside
/// 0-9999, which chrono writes signed (see [`serialize`]).
fn write<'b>(at: &DateTime<Utc>, buf: &'b mut [u8; MAX_LEN]) -> Option<&'b str> {
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut sec = at.second();
    let mut nano = at.nanosecond();
    if nano >= 1_000_000_000 {
        // A leap second: chrono stores it as second 59 with the nanosecond
        // past one second, and writes it as second 60.
        sec += 1;
        nano -= 1_000_000_000;
    }
    let (fraction, width) = if nano == 0 {
        (0, 0)
    } else if nano.is_multiple_of(1_000_000) {
        (nano / 1_000_000, 3)
    } else if nano.is_multiple_of(1_000) {
        (nano / 1_000, 6)
    } else {
        (nano, 9)
    };
    *buf = *b"0000-00-00T00:00:00.000000000Z";
    let fields = [
        (0, 4, year as u32),
        (5, 2, at.month()),
        (8, 2, at.day()),
        (11, 2, at.hour()),
        (14, 2, at.minute()),
        (17, 2, sec),
        (20, width, fraction),
    ];
    for (start, width, mut value) in fields {
        for digit in buf[start..start + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    let len = if width == 0 { 19 } else { 20 + width };
    buf[len] = b'Z';
    Some(std::str::from_utf8(&buf[..=len]).expect("ASCII digits and separators"))
}

fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    match write(at, &mut [0; MAX_LEN]) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    }
}

/// `text` read as an instant if it is exactly the form [`write`] produces
/// for years 0-9999 (any number of fraction digits up to nine); `None` for
/// anything else, including text chrono would accept: the caller then asks
/// chrono (strict or relaxed, as it needs), which also gives the error.
/// Both of chrono's readings agree with this one on the text it reads.
pub fn parse_plain(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let punctuation = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if punctuation.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let nano = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            num(20..19 + 1 + digits.len())? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let sec = num(17..19)?;
    if sec > 59 {
        return None; // a leap second: chrono's rules
    }
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = date.and_hms_nano_opt(num(11..13)?, num(14..16)?, sec, nano)?;
    Some(time.and_utc())
}

/// `text` read as chrono's serde does (RFC 3339, relaxed), in UTC.
fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_plain(text) {
        Some(at) => Ok(at),
        None => text
            .parse::<DateTime<FixedOffset>>()
            .map(|at| at.with_timezone(&Utc)),
    }
}

struct Visitor;

impl de::Visitor<'_> for Visitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 formatted date and time string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<DateTime<Utc>, E> {
        parse(text).map_err(E::custom)
    }
}

/// `#[serde(with = "crate::instant::rfc3339")]` for a `DateTime<Utc>`:
/// the text chrono's serde gives and takes, faster.
pub mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        super::serialize(at, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(Visitor)
    }
}

/// [`rfc3339`] for an `Option<DateTime<Utc>>` (`None` is `null`). A field
/// that may be absent when read also needs `#[serde(default)]`.
pub mod rfc3339_opt {
    use super::*;

    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        struct Opt;

        impl<'de> de::Visitor<'de> for Opt {
            type Value = Option<DateTime<Utc>>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null or an RFC 3339 formatted date and time string")
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_str(Visitor).map(Some)
            }
        }

        d.deserialize_option(Opt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDateTime, SecondsFormat, TimeZone};
    use serde::{Deserialize, Serialize};

    fn chrono_text(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// Instants spread over the years 0-9999 with every kind of fraction.
    fn instants() -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 315_537_897_600) as i64 - 62_167_219_200; // 0000-01-01 ..= 9999-12-31
            let nano = match i % 5 {
                0 => 0,
                1 => (x >> 20) as u32 % 1000 * 1_000_000,
                2 => (x >> 20) as u32 % 1_000_000 * 1000,
                3 => (x >> 20) as u32 % 1_000_000_000,
                _ => 1,
            };
            out.push(DateTime::from_timestamp(secs, nano).expect("in range"));
        }
        out.push(Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap());
        out.push(Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap());
        out
    }

    #[test]
    fn writes_what_chrono_writes() {
        for at in instants() {
            assert_eq!(
                write(&at, &mut [0; MAX_LEN]),
                Some(&*chrono_text(&at)),
                "{at:?}"
            );
        }
    }

    #[test]
    fn leap_seconds_and_signed_years_as_chrono_does() {
        let leap = NaiveDateTime::parse_from_str("2016-12-31 23:59:59.5", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap()
            .with_nanosecond(1_500_000_000)
            .unwrap()
            .and_utc();
        assert_eq!(write(&leap, &mut [0; MAX_LEN]), Some(&*chrono_text(&leap)));
        assert_eq!(chrono_text(&leap), "2016-12-31T23:59:60.500Z");
        let early = Utc.with_ymd_and_hms(-1, 6, 1, 12, 0, 0).unwrap();
        let late = DateTime::from_timestamp(253_402_300_800, 123_456_789).unwrap();
        for at in [early, late] {
            assert_eq!(write(&at, &mut [0; MAX_LEN]), None);
            let row = serde_json::to_string(&Row {
                at,
                maybe: Some(at),
            })
            .unwrap();
            assert_eq!(
                row,
                serde_json::to_string(&ChronoRow {
                    at,
                    maybe: Some(at)
                })
                .unwrap()
            );
            assert_eq!(serde_json::from_str::<Row>(&row).unwrap().at, at);
        }
    }

    #[test]
    fn reads_back_what_it_writes_without_chrono() {
        for at in instants() {
            let text = chrono_text(&at);
            assert_eq!(parse_plain(&text), Some(at), "{text}");
            // The envelope's strict reading agrees wherever this one reads.
            let strict = DateTime::parse_from_rfc3339(&text).unwrap();
            assert_eq!(strict.with_timezone(&Utc), at, "{text}");
        }
        // Fractions of any length up to nine digits.
        assert_eq!(
            parse_plain("2026-11-25T10:00:00.5Z"),
            Some(
                Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
                    + chrono::Duration::milliseconds(500)
            )
        );
        assert_eq!(
            parse_plain("2026-11-25T10:00:00.12345678Z").map(|t| t.nanosecond()),
            Some(123_456_780)
        );
    }

    #[test]
    fn leaves_every_other_form_to_chrono() {
        for text in [
            "2026-11-25T10:00:00+00:00",
            "2026-11-25T10:00:00z",
            "2026-11-25t10:00:00Z",
            "2026-11-25 10:00:00Z",
            "2026-11-25T10:00:60Z",
            "2026-11-25T10:00:00.Z",
            "2026-11-25T10:00:00.1234567891Z",
            "2026-02-30T10:00:00Z",
            "2026-11-25T24:00:00Z",
            "+2026-11-25T10:00:00Z",
            "2026-11-25T10:00Z",
            "2026-1x-25T10:00:00Z",
            "",
        ] {
            assert_eq!(parse_plain(text), None, "{text}");
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        #[serde(with = "rfc3339")]
        at: DateTime<Utc>,
        #[serde(default, with = "rfc3339_opt")]
        maybe: Option<DateTime<Utc>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ChronoRow {
        at: DateTime<Utc>,
        #[serde(default)]
        maybe: Option<DateTime<Utc>>,
    }

    #[test]
    fn serde_gives_and_takes_what_chronos_serde_does() {
        for (i, at) in instants().into_iter().enumerate().step_by(97) {
            let maybe = (i % 2 == 0).then_some(at);
            let fast = serde_json::to_string(&Row { at, maybe }).unwrap();
            assert_eq!(
                fast,
                serde_json::to_string(&ChronoRow { at, maybe }).unwrap()
            );
            assert_eq!(
                serde_json::from_str::<Row>(&fast).unwrap(),
                Row { at, maybe }
            );
        }
        // What only chrono reads, and chrono's errors, stay as they were.
        for text in [
            r#"{"at":"2026-11-25T11:00:00+01:00","maybe":null}"#,
            r#"{"at":"2026-11-25 10:00:00Z"}"#,
            r#"{"at":"2016-12-31T23:59:60.5Z","maybe":"2026-11-25T10:00:00.25-02:00"}"#,
        ] {
            let fast: Row = serde_json::from_str(text).unwrap();
            let slow: ChronoRow = serde_json::from_str(text).unwrap();
            assert_eq!((fast.at, fast.maybe), (slow.at, slow.maybe), "{text}");
        }
        for text in [
            r#"{"at":"yesterday"}"#,
            r#"{"at":"2026-02-30T10:00:00Z"}"#,
            r#"{"at":12}"#,
            r#"{"at":"2026-11-25T10:00:00Z","maybe":"soon"}"#,
        ] {
            let fast = serde_json::from_str::<Row>(text).unwrap_err().to_string();
            let slow = serde_json::from_str::<ChronoRow>(text)
                .unwrap_err()
                .to_string();
            assert_eq!(fast, slow, "{text}");
        }
    }
}
