//! Fuzzes the history API's query parsing (`mxwarden::server::query::parse`, what
//! `GET /api/v1/checks/{name}/history?…` runs before it touches the store): the input up to
//! its first NUL byte is the raw query string (lossy UTF-8, percent-encoding and all), and 8
//! bytes after that NUL, if there are, the clock (any i64; otherwise a fixed 2026 time). It must never panic (overflow checks are on in fuzz builds), and a plan must be
//! bounded: times within 1970..=9999, `from < to`, at most 20,160 buckets or results, bucket
//! starts representable. A plan written back as a query string parses to the same plan.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mxwarden::server::query::{self, MAX_BUCKETS, MAX_MS, MAX_RESULTS, MIN_MS, Plan};

fuzz_target!(|data: &[u8]| {
    let (raw, clock) = match data.iter().position(|b| *b == 0) {
        Some(nul) => (&data[..nul], data[nul + 1..].first_chunk::<8>()),
        None => (data, None),
    };
    let now = clock.map_or(1_795_914_932_200, |c| i64::from_le_bytes(*c));
    let text = String::from_utf8_lossy(raw);
    let plan = match query::parse(Some(&text), now) {
        Ok(plan) => plan,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let canonical = match plan {
        Plan::Raw { range, limit } => {
            assert!((1..=MAX_RESULTS).contains(&limit));
            assert!(MIN_MS <= range.start_ms() && range.start_ms() < range.end_ms() && range.end_ms() <= MAX_MS);
            format!("resolution=raw&from={}&to={}&limit={limit}", range.start_ms(), range.end_ms())
        }
        Plan::Rollup { resolution, range } => {
            assert!(MIN_MS <= range.start_ms() && range.start_ms() < range.end_ms() && range.end_ms() <= MAX_MS);
            let (first, last) = plan.buckets().expect("a rollup has buckets");
            assert!(first <= last && last - first < MAX_BUCKETS);
            assert!(first.checked_mul(resolution.width_ms()).is_some());
            assert!((last + 1).checked_mul(resolution.width_ms()).is_some());
            format!("resolution={}&from={}&to={}", resolution.name(), range.start_ms(), range.end_ms())
        }
    };
    assert_eq!(query::parse(Some(&canonical), now), Ok(plan), "{canonical}");
});
