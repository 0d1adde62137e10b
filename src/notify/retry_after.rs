//! A server's "try again later", read defensively: the HTTP `Retry-After` header (seconds or
//! an HTTP date) and Matrix's `retry_after_ms`. Any number a peer sends is checked — huge ones
//! are capped at [`MAX_RETRY_AFTER`], negative or malformed ones are ignored (the dispatcher's
//! own backoff applies) — so a hostile or broken server can neither overflow the due time into
//! the past (a retry every second) nor park a page for years. `dispatch` turns the hint into
//! a due time with the clock.

use std::time::Duration;

/// The longest wait a server can ask for: 15 minutes. Longer requests are treated as this, so
/// a critical page is retried (and its fallback reached) within a quarter of an hour even when
/// a rate limiter asks for days; a well-meant limit (seconds to minutes) is honoured in full.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// When a server asked to be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryAfter {
    /// After this long; never more than [`MAX_RETRY_AFTER`].
    Delay(Duration),
    /// At this time (an HTTP date); resolved against the clock when the retry is planned.
    At(jiff::Timestamp),
}

impl RetryAfter {
    /// A `Retry-After` header value: `delay-seconds` (digits only; too many digits for a
    /// number is "a very long time", capped) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`,
    /// and the other RFC 2822 forms). Anything else — a sign, a fraction, words — is `None`.
    pub(crate) fn from_header(value: &str) -> Option<Self> {
        let value = value.trim();
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
            return Some(Self::delay(Duration::from_secs(seconds.min(MAX_RETRY_AFTER.as_secs()))));
        }
        jiff::fmt::rfc2822::DateTimeParser::new().relaxed_weekday(true).parse_timestamp(value).ok().map(Self::At)
    }

    /// Matrix's `retry_after_ms` (a JSON number of milliseconds): non-negative integers, and
    /// finite non-negative floats some servers send; capped. Negative, `NaN` or non-numbers
    /// are `None`.
    pub(crate) fn from_matrix_ms(value: &serde_json::Value) -> Option<Self> {
        let cap = MAX_RETRY_AFTER.as_millis() as u64;
        let ms = match value.as_u64() {
            Some(ms) => ms.min(cap),
            None => {
                let f = value.as_f64().filter(|f| f.is_finite() && *f >= 0.0)?;
                // `as` saturates at u64::MAX; the cap then applies.
                (f.ceil() as u64).min(cap)
            }
        };
        Some(Self::delay(Duration::from_millis(ms)))
    }

    fn delay(d: Duration) -> Self {
        Self::Delay(d.min(MAX_RETRY_AFTER))
    }

    /// How long to wait from `now_ms` (Unix ms), in ms: 0 for a date in the past, never more
    /// than [`MAX_RETRY_AFTER`], whatever the arithmetic meets.
    pub(crate) fn wait_ms(&self, now_ms: i64) -> i64 {
        let cap = MAX_RETRY_AFTER.as_millis() as i64;
        match self {
            Self::Delay(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX).clamp(0, cap),
            Self::At(at) => at.as_millisecond().saturating_sub(now_ms).clamp(0, cap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CAP_MS: i64 = 15 * 60 * 1000;
    /// 2015-10-21T07:28:00Z, the date in RFC 9110's example.
    const DATE_MS: i64 = 1_445_412_480_000;

    #[test]
    fn header_values_at_the_limits() {
        let s = |n: u64| Some(RetryAfter::Delay(Duration::from_secs(n)));
        let cases: &[(&str, Option<RetryAfter>, &str)] = &[
            ("120", s(120), "plain seconds"),
            (" 7 ", s(7), "surrounding blanks are allowed"),
            ("0", s(0), "zero: now"),
            ("900", s(900), "exactly the cap"),
            ("901", s(900), "one over the cap is capped"),
            ("18446744073709551615", s(900), "u64::MAX seconds is capped, not overflowed"),
            ("9223372036854775807", s(900), "i64::MAX seconds is capped"),
            ("99999999999999999999999999", s(900), "more digits than any integer: capped"),
            ("-1", None, "a negative delay is malformed"),
            ("-9223372036854775808", None, "i64::MIN is malformed"),
            ("+5", None, "a sign is not delay-seconds"),
            ("1.5", None, "nor is a fraction"),
            ("soon", None, "words are ignored"),
            ("", None, "an empty header is ignored"),
            ("0x10", None, "hex is not delay-seconds"),
            ("Wed, 21 Oct 2015 07:28:00 GMT", Some(at(DATE_MS)), "the HTTP date form"),
            ("Wed, 21 Oct 2015 07:28:00 +0000", Some(at(DATE_MS)), "an RFC 2822 date with an offset"),
            ("Wed, 21 Oct 2015 25:28:00 GMT", None, "a date with hour 25 is malformed"),
        ];
        for (value, want, why) in cases {
            assert_eq!(RetryAfter::from_header(value), *want, "{value:?}: {why}");
        }
    }

    fn at(ms: i64) -> RetryAfter {
        RetryAfter::At(jiff::Timestamp::from_millisecond(ms).unwrap())
    }

    #[test]
    fn matrix_retry_after_ms_at_the_limits() {
        let ms = |n: u64| Some(RetryAfter::Delay(Duration::from_millis(n)));
        let cases = [
            (json!(1500), ms(1500), "plain milliseconds"),
            (json!(0), ms(0), "zero"),
            (json!(900_000), ms(900_000), "exactly the cap"),
            (json!(u64::MAX), ms(900_000), "u64::MAX ms is capped (it used to wrap to a negative due time)"),
            (json!(i64::MAX), ms(900_000), "i64::MAX ms is capped"),
            (json!(1e300), ms(900_000), "a huge float is capped"),
            (json!(250.4), ms(251), "a fraction rounds up"),
            (json!(-1), None, "negative is ignored"),
            (json!(i64::MIN), None, "i64::MIN is ignored"),
            (json!(-0.5), None, "a negative float is ignored"),
            (json!("1000"), None, "a string is not a number"),
            (json!(null), None, "null"),
            (json!({"ms": 5}), None, "an object"),
        ];
        for (value, want, why) in cases {
            assert_eq!(RetryAfter::from_matrix_ms(&value), want, "{value}: {why}");
        }
    }

    #[test]
    fn the_wait_is_never_negative_nor_over_the_cap() {
        let now = DATE_MS;
        let cases = [
            (RetryAfter::Delay(Duration::from_secs(30)), now, 30_000, "a delay is a delay"),
            (RetryAfter::Delay(Duration::MAX), now, CAP_MS, "a Duration::MAX built by hand is capped"),
            (at(DATE_MS + 60_000), now, 60_000, "a date a minute ahead"),
            (at(DATE_MS - 60_000), now, 0, "a date in the past: retry now"),
            (at(DATE_MS + 86_400_000), now, CAP_MS, "a date a day ahead is capped"),
            (at(DATE_MS), i64::MIN, CAP_MS, "a clock at i64::MIN cannot overflow"),
            (at(DATE_MS), i64::MAX, 0, "a clock at i64::MAX cannot overflow"),
            (RetryAfter::Delay(Duration::from_secs(1)), i64::MAX, 1_000, "the delay ignores the clock"),
        ];
        for (hint, now, want, why) in cases {
            assert_eq!(hint.wait_ms(now), want, "{why}");
        }
    }
}
