//! Vocabulary: human-friendly units (and "did you mean" for misspelt names): durations (`30s`, `5m`, `14d`) and byte sizes
//! (`1MiB`, `450MiB`, `5MB`). Pure parsers, fed by the YAML loader, read by everything that
//! turns config into runtime values. The duration syntax is Prometheus's, so a `for: 5m`
//! in a rule and an `interval: 5m` here mean the same thing.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration written as one or more `<number><unit>` parts: `500ms`, `30s`, `1h30m`, `14d`.
/// Units: `ms`, `s`, `m`, `h`, `d` (24 h), `w` (7 d) — as in Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// What went wrong reading a unit value; the loader adds file, line and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UnitError(String);

impl HumanDuration {
    /// Parses `30s`, `1h30m`, `14d`; rejects empty input, bare numbers and unknown units.
    pub(crate) fn parse(text: &str) -> Result<Self, UnitError> {
        let expected = || {
            UnitError(format!(
                "`{text}` is not a duration; expected a number with a unit, like 500ms, 30s, 5m, 1h30m, 14d"
            ))
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(expected());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(expected());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| expected())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit_ms: u64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 604_800_000,
                _ => return Err(expected()),
            };
            rest = &rest[unit_len..];
            let part = number.checked_mul(unit_ms).ok_or_else(expected)?;
            total = total.checked_add(Duration::from_millis(part)).ok_or_else(expected)?;
        }
        Ok(Self(total))
    }
}

impl fmt::Display for HumanDuration {
    /// Prints the shortest exact form: `90s` → `1m30s`, `14d` stays `14d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A size in bytes written as `1MiB`, `450MiB`, `512KiB`, `5MB`, `1GB` or a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses binary (`KiB`, `MiB`, `GiB`) and decimal (`kB`, `MB`, `GB`) units, or bare bytes.
    pub(crate) fn parse(text: &str) -> Result<Self, UnitError> {
        let expected = || {
            UnitError(format!(
                "`{text}` is not a size; expected a number of bytes or a number with a unit, like 512KiB, 1MiB, 450MiB, 5MB"
            ))
        };
        let trimmed = text.trim();
        let digits = trimmed.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        if digits == 0 {
            return Err(expected());
        }
        let number: f64 = trimmed[..digits].parse().map_err(|_| expected())?;
        let factor: u64 = match trimmed[digits..].trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(expected()),
        };
        let bytes = number * factor as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(expected());
        }
        Ok(Self(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    /// Prints in the largest binary unit that divides the value exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// Formats a byte count for people: `5.0 MiB`, `312.2 KiB`, `17 B`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (c, strsim::jaro_winkler(word, c)))
        .filter(|(c, score)| *score >= 0.8 || strsim::levenshtein(word, c) <= 2)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// An instant for people, to the minute: `2026-12-05 04:30 UTC` (empty when out of range).
pub(crate) fn utc_minute(ms: i64) -> String {
    utc(ms, "%Y-%m-%d %H:%M UTC")
}

/// An instant for people, to the second: `2026-12-05 04:30:12 UTC` (empty when out of range).
pub(crate) fn utc_second(ms: i64) -> String {
    utc(ms, "%Y-%m-%d %H:%M:%S UTC")
}

fn utc(ms: i64, format: &str) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime(format).to_string()).unwrap_or_default()
}

/// An instant for programs (RFC 3339, UTC); Go's zero time when out of range, as
/// Alertmanager writes "no end".
pub(crate) fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_else(|_| "0001-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_prometheus() {
        let cases: &[(&str, Option<u64>, &str)] = &[
            ("30s", Some(30_000), "plain seconds"),
            ("500ms", Some(500), "milliseconds are not minutes"),
            ("5m", Some(300_000), "minutes"),
            ("1h30m", Some(5_400_000), "compound parts add up"),
            ("14d", Some(1_209_600_000), "days are 24 h"),
            ("2w", Some(1_209_600_000), "weeks are 7 d"),
            (" 10s ", Some(10_000), "surrounding blanks are fine"),
            ("10", None, "a bare number is ambiguous"),
            ("", None, "empty"),
            ("5 minutes", None, "words are not units"),
            ("s", None, "a unit needs a number"),
            ("1y", None, "years are not uniform"),
            ("99999999999999999999d", None, "overflow is an error, not a wrap"),
        ];
        for (text, want, why) in cases {
            let got = HumanDuration::parse(text).ok().map(|d| d.0.as_millis() as u64);
            assert_eq!(got, *want, "{text:?}: {why}");
        }
    }

    #[test]
    fn durations_print_in_shortest_exact_form() {
        for (ms, want) in [(90_000, "1m30s"), (1_209_600_000, "14d"), (1_500, "1s500ms"), (0, "0s")] {
            assert_eq!(HumanDuration(Duration::from_millis(ms)).to_string(), want);
        }
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        let cases: &[(&str, Option<u64>, &str)] = &[
            ("1MiB", Some(1 << 20), "binary mebibyte"),
            ("450MiB", Some(450 << 20), "runbook threshold"),
            ("5MB", Some(5_000_000), "decimal megabyte"),
            ("1.5KiB", Some(1536), "fractions round to bytes"),
            ("1024", Some(1024), "bare bytes"),
            ("10 GiB", Some(10 << 30), "a blank before the unit"),
            ("1mb", None, "unit case matters: mb is millibits"),
            ("MiB", None, "a unit needs a number"),
        ];
        for (text, want, why) in cases {
            assert_eq!(ByteSize::parse(text).ok().map(|s| s.0), *want, "{text:?}: {why}");
        }
        assert_eq!(ByteSize(32 << 20).to_string(), "32MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn suggestions_catch_typos_but_not_unrelated_words() {
        let keys = ["url", "method", "headers", "bearer_token", "expect"];
        let cases = [
            ("methd", Some("method"), "one letter dropped"),
            ("header", Some("headers"), "singular for plural"),
            ("expcet", Some("expect"), "swapped letters"),
            ("bearer", Some("bearer_token"), "a prefix"),
            ("zzzz", None, "nothing alike"),
        ];
        for (word, want, why) in cases {
            assert_eq!(closest(word, keys), want, "{word}: {why}");
        }
    }

    #[test]
    fn instants_print_one_way_for_people_and_one_for_programs() {
        let ms = 1_764_909_012_345; // 2025-12-05T04:30:12.345Z
        assert_eq!(utc_minute(ms), "2025-12-05 04:30 UTC");
        assert_eq!(utc_second(ms), "2025-12-05 04:30:12 UTC");
        assert_eq!(rfc3339(ms), "2025-12-05T04:30:12.345Z");
        assert_eq!(utc_minute(i64::MAX), "", "out of range: nothing, not a panic");
        assert_eq!(rfc3339(i64::MIN), "0001-01-01T00:00:00Z");
    }
}
