//! The history API's query string (`GET /api/v1/checks/{name}/history?resolution=…&from=…&to=…&limit=…`),
//! parsed into a bounded [`Plan`] before anything touches the store. Pure: the caller gives the
//! raw query and the time; nothing here reads a clock or allocates in proportion to a number
//! from the network.
//!
//! Every number is checked: `from` and `to` must lie between 1970 and the end of year 9999
//! ([`MIN_MS`]..=[`MAX_MS`]), a rolled-up range may span at most [`MAX_BUCKETS`] buckets and a
//! raw page at most [`MAX_RESULTS`] results, and every sum and difference is a checked one. So a
//! plan's bucket range can be materialised whatever the request said (the API once multiplied
//! `to - from` at the ends of the i64 range and tried to build quintillions of buckets).
//! Anything else is a [`QueryError`], which the API answers with `400` and the error's text.
//!
//! The server's handler (`api::history`) calls [`parse`]; so do the property test below and the
//! fuzz target `fuzz/fuzz_targets/api_query.rs`.

use crate::history::{DAY_MS, RAW_RETENTION_MS, Resolution};

/// Earliest time a query may name: 1970-01-01T00:00:00Z, ms. Nothing is recorded before it.
pub(crate) const MIN_MS: i64 = 0;
/// Latest time a query may name: 9999-12-31T23:59:59.999Z, ms (the end of four-digit years).
pub(crate) const MAX_MS: i64 = 253_402_300_799_999;
/// Most buckets one request may ask for: 14 days of minutes.
pub(crate) const MAX_BUCKETS: i64 = 20_160;
/// Most raw results one request returns (`limit`'s default and ceiling).
pub(crate) const MAX_RESULTS: u32 = 20_160;
/// How far back `from` defaults for `hour` and `day`.
const DEFAULT_SPAN_MS: i64 = 90 * DAY_MS;
/// The parameters there are.
const KEYS: [&str; 4] = ["resolution", "from", "to", "limit"];
/// How much of a bad value an error repeats.
const ECHO: usize = 40;

/// A time range `[from, to)` in ms since the epoch, with `MIN_MS <= from < to <= MAX_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    from: i64,
    to: i64,
}

impl Range {
    /// The range, if it is non-empty and within `MIN_MS..=MAX_MS`.
    pub(crate) fn new(from: i64, to: i64) -> Option<Self> {
        (MIN_MS <= from && from < to && to <= MAX_MS).then_some(Self { from, to })
    }

    /// Start, inclusive, ms.
    pub(crate) fn start_ms(self) -> i64 {
        self.from
    }

    /// End, exclusive, ms.
    pub(crate) fn end_ms(self) -> i64 {
        self.to
    }
}

/// What a valid history request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Raw results in `range`, oldest first, at most `limit` of them.
    Raw {
        /// The times.
        range: Range,
        /// Most results returned, `1..=MAX_RESULTS`.
        limit: u32,
    },
    /// Every bucket of `resolution` that overlaps `range` (at most [`MAX_BUCKETS`]).
    Rollup {
        /// Bucket width.
        resolution: Resolution,
        /// The times.
        range: Range,
    },
}

impl Plan {
    /// The first and last bucket numbers of a rollup plan (`None` for raw); their distance is
    /// below [`MAX_BUCKETS`].
    #[cfg(test)]
    fn buckets(&self) -> Option<(i64, i64)> {
        match *self {
            Plan::Raw { .. } => None,
            Plan::Rollup { resolution, range } => {
                Some((resolution.bucket(range.from), resolution.bucket(range.to - 1)))
            }
        }
    }
}

/// Why a query was refused (each is a `400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    /// A parameter the API does not have.
    #[error("unknown parameter `{0}`; the parameters are resolution, from, to and limit")]
    Unknown(String),
    /// A parameter given twice.
    #[error("`{0}` is given more than once")]
    Repeated(&'static str),
    /// Not one of the resolutions.
    #[error("resolution must be raw, minute, hour or day, not {0:?}")]
    Resolution(String),
    /// Not a whole number.
    #[error("{key}: {value:?} is not a whole number of ms since 1970-01-01T00:00:00Z (at most {MAX_MS})")]
    NotANumber {
        /// The parameter.
        key: &'static str,
        /// What was given (cut to 40 characters).
        value: String,
    },
    /// A time outside 1970..=9999.
    #[error("{key}: {value} is outside {MIN_MS}..={MAX_MS} (ms since 1970-01-01T00:00:00Z, up to the end of 9999)")]
    TimeOutOfRange {
        /// The parameter.
        key: &'static str,
        /// What was given.
        value: i64,
    },
    /// `from` not before `to`.
    #[error("from ({from}) must be before to ({to})")]
    Empty {
        /// Start.
        from: i64,
        /// End.
        to: i64,
    },
    /// More buckets than one request may have.
    #[error("from..to spans {buckets} {resolution} buckets; at most {MAX_BUCKETS} per request")]
    TooManyBuckets {
        /// The resolution's name.
        resolution: &'static str,
        /// How many the range spans (saturated).
        buckets: i64,
    },
    /// A `limit` outside `1..=MAX_RESULTS`.
    #[error("limit must be between 1 and {MAX_RESULTS}, not {0:?}")]
    Limit(String),
    /// `limit` with a rolled-up resolution.
    #[error("limit applies to resolution=raw only (a rolled-up range is bounded by its buckets)")]
    LimitWithoutRaw,
}

/// The parameters as given, each at most once.
#[derive(Debug, Default)]
struct Given {
    resolution: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

/// Parses the raw (still percent-encoded) query string of a history request, `None` when the
/// URL has none. `now_ms` is the current time; `to` defaults to just after it.
pub(crate) fn parse(query: Option<&str>, now_ms: i64) -> Result<Plan, QueryError> {
    let mut given = Given::default();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match key.as_ref() {
            "resolution" => &mut given.resolution,
            "from" => &mut given.from,
            "to" => &mut given.to,
            "limit" => &mut given.limit,
            other => return Err(QueryError::Unknown(cut(other))),
        };
        if slot.is_some() {
            let key = KEYS.iter().find(|k| **k == key.as_ref()).copied().unwrap_or("parameter");
            return Err(QueryError::Repeated(key));
        }
        *slot = Some(value.into_owned());
    }
    plan(&given, now_ms)
}

fn plan(given: &Given, now_ms: i64) -> Result<Plan, QueryError> {
    let resolution = match given.resolution.as_deref().unwrap_or("day") {
        "raw" => None,
        name => Some(Resolution::parse(name).ok_or_else(|| QueryError::Resolution(cut(name)))?),
    };
    let to = match &given.to {
        Some(text) => time("to", text)?,
        // Just after now (so a result of this very millisecond is included), within bounds.
        None => now_ms.clamp(MIN_MS, MAX_MS - 1) + 1,
    };
    let from = match &given.from {
        Some(text) => time("from", text)?,
        None => default_from(resolution, to),
    };
    let range = Range::new(from, to).ok_or(QueryError::Empty { from, to })?;
    match resolution {
        None => {
            let limit = match &given.limit {
                None => MAX_RESULTS,
                Some(text) => text
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=MAX_RESULTS).contains(l))
                    .ok_or_else(|| QueryError::Limit(cut(text)))?,
            };
            Ok(Plan::Raw { range, limit })
        }
        Some(resolution) => {
            if given.limit.is_some() {
                return Err(QueryError::LimitWithoutRaw);
            }
            let (first, last) = (resolution.bucket(range.from), resolution.bucket(range.to - 1));
            let buckets = last.checked_sub(first).and_then(|d| d.checked_add(1)).unwrap_or(i64::MAX);
            if buckets > MAX_BUCKETS {
                return Err(QueryError::TooManyBuckets { resolution: resolution.name(), buckets });
            }
            Ok(Plan::Rollup { resolution, range })
        }
    }
}

/// `from` when the request names none: 48 hours before `to` for raw results, the last
/// [`MAX_BUCKETS`] minutes (14 days) for `minute`, 90 days for `hour` and `day`; never before
/// 1970.
fn default_from(resolution: Option<Resolution>, to: i64) -> i64 {
    let from = match resolution {
        None => to.saturating_sub(RAW_RETENTION_MS),
        Some(Resolution::Minute) => {
            let last = Resolution::Minute.bucket(to - 1);
            (last - (MAX_BUCKETS - 1)).saturating_mul(Resolution::Minute.width_ms())
        }
        Some(_) => to.saturating_sub(DEFAULT_SPAN_MS),
    };
    from.max(MIN_MS)
}

/// A time parameter: a whole number of ms within `MIN_MS..=MAX_MS`.
fn time(key: &'static str, text: &str) -> Result<i64, QueryError> {
    let value: i64 = text.trim().parse().map_err(|_| QueryError::NotANumber { key, value: cut(text) })?;
    if (MIN_MS..=MAX_MS).contains(&value) { Ok(value) } else { Err(QueryError::TimeOutOfRange { key, value }) }
}

/// At most [`ECHO`] characters of what a client sent, for an error message.
fn cut(text: &str) -> String {
    match text.char_indices().nth(ECHO) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_914_932_200;

    fn q(query: &str) -> Result<Plan, QueryError> {
        parse(Some(query), NOW)
    }

    #[test]
    fn the_attack_that_aborted_the_daemon_is_a_400() {
        // Both ends of the i64 range: `to - from` overflowed, and the bucket count wrapped.
        let e = q("from=-9223372036854775808&to=9223372036854775807").unwrap_err();
        assert_eq!(e, QueryError::TimeOutOfRange { key: "to", value: i64::MAX }, "to is checked first: {e}");
        assert!(matches!(q("from=-9223372036854775808"), Err(QueryError::TimeOutOfRange { key: "from", .. })));
        assert!(matches!(q("to=9223372036854775807&resolution=raw"), Err(QueryError::TimeOutOfRange { .. })));
        assert!(
            matches!(q("from=99999999999999999999"), Err(QueryError::NotANumber { key: "from", .. })),
            "i64 overflow"
        );
    }

    #[test]
    fn defaults_fit_their_bounds() {
        // day: 90 days before just after now.
        let Plan::Rollup { resolution, range } = q("").unwrap() else { panic!("day by default") };
        assert_eq!(resolution, Resolution::Day);
        assert_eq!((range.start_ms(), range.end_ms()), (NOW + 1 - 90 * DAY_MS, NOW + 1));
        // minute: exactly the last 20,160 buckets, so the default is never refused.
        let plan = q("resolution=minute").unwrap();
        let (first, last) = plan.buckets().unwrap();
        assert_eq!(last - first + 1, MAX_BUCKETS);
        assert_eq!(last, Resolution::Minute.bucket(NOW));
        // raw: 48 hours, up to MAX_RESULTS results.
        assert_eq!(
            q("resolution=raw").unwrap(),
            Plan::Raw { range: Range::new(NOW + 1 - RAW_RETENTION_MS, NOW + 1).unwrap(), limit: MAX_RESULTS }
        );
        // Near 1970 the default start is clipped, not negative.
        assert_eq!(
            parse(None, 5).unwrap(),
            Plan::Rollup { resolution: Resolution::Day, range: Range::new(0, 6).unwrap() }
        );
        // A clock at the end of time still gives a valid default.
        assert!(parse(None, i64::MAX).is_ok());
        assert_eq!(
            parse(None, i64::MIN).unwrap(),
            Plan::Rollup { resolution: Resolution::Day, range: Range::new(0, 1).unwrap() },
            "a clock before 1970: the first millisecond"
        );
    }

    #[test]
    fn each_refusal_names_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("resolution=week", "resolution must be raw, minute, hour or day, not \"week\""),
            ("fom=1", "unknown parameter `fom`"),
            ("from=1&from=2", "`from` is given more than once"),
            ("from=abc", "from: \"abc\" is not a whole number of ms"),
            ("from=1.5", "from: \"1.5\" is not a whole number of ms"),
            ("from=-1", "from: -1 is outside 0..=253402300799999"),
            ("from=10&to=10", "from (10) must be before to (10)"),
            ("from=20&to=10", "from (20) must be before to (10)"),
            ("resolution=minute&from=0", "at most 20160 per request"),
            ("resolution=raw&limit=0", "limit must be between 1 and 20160, not \"0\""),
            ("resolution=raw&limit=4294967296", "limit must be between 1 and 20160"),
            ("resolution=raw&limit=-3", "limit must be between 1 and 20160"),
            ("limit=5", "limit applies to resolution=raw only"),
        ];
        for (query, expected) in cases {
            let e = q(query).unwrap_err().to_string();
            assert!(e.contains(expected), "{query}: {e}");
        }
    }

    #[test]
    fn values_are_percent_decoded_and_long_ones_are_cut_in_errors() {
        assert_eq!(q("resolution=%72aw&from=%31000&to=2000").unwrap(), {
            Plan::Raw { range: Range::new(1000, 2000).unwrap(), limit: MAX_RESULTS }
        });
        let e = q(&format!("from={}", "9".repeat(5000))).unwrap_err().to_string();
        assert!(e.contains(&"9".repeat(40)) && !e.contains(&"9".repeat(41)), "40 digits of 5000 are repeated: {e}");
    }

    #[test]
    fn the_bucket_limit_counts_the_buckets_a_range_touches() {
        let width = Resolution::Hour.width_ms();
        // 20,160 whole hours: allowed; one ms more touches a 20,161st bucket.
        assert!(q(&format!("resolution=hour&from=0&to={}", MAX_BUCKETS * width)).is_ok());
        assert!(q(&format!("resolution=hour&from=0&to={}", MAX_BUCKETS * width + 1)).is_err());
        // The same span, unaligned, touches one more bucket.
        assert!(q(&format!("resolution=hour&from=1&to={}", MAX_BUCKETS * width + 1)).is_err());
    }

    fn resolution() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("raw".to_string()),
            Just("minute".to_string()),
            Just("hour".to_string()),
            Just("day".to_string()),
            ".{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Any i64 pair, any resolution, any limit, any clock: no panic (overflow checks are on
        /// in tests), and either a plan whose every number is bounded or a refusal.
        #[test]
        fn any_query_is_a_bounded_plan_or_a_refusal(
            from in prop_oneof![any::<i64>(), MIN_MS..=MAX_MS, Just(i64::MIN), Just(i64::MAX)],
            to in prop_oneof![any::<i64>(), MIN_MS..=MAX_MS, Just(i64::MIN), Just(i64::MAX)],
            res in resolution(),
            limit in prop::option::of(any::<i64>()),
            omit in 0u8..4,
            now in any::<i64>(),
        ) {
            let mut parts = vec![format!("resolution={}", url::form_urlencoded::byte_serialize(res.as_bytes()).collect::<String>())];
            if omit & 1 == 0 { parts.push(format!("from={from}")); }
            if omit & 2 == 0 { parts.push(format!("to={to}")); }
            if let Some(l) = limit { parts.push(format!("limit={l}")); }
            match parse(Some(&parts.join("&")), now) {
                Ok(Plan::Raw { range, limit }) => {
                    prop_assert!(MIN_MS <= range.start_ms() && range.start_ms() < range.end_ms() && range.end_ms() <= MAX_MS);
                    prop_assert!((1..=MAX_RESULTS).contains(&limit));
                    prop_assert_eq!(res.as_str(), "raw");
                }
                Ok(plan @ Plan::Rollup { resolution, range }) => {
                    prop_assert!(MIN_MS <= range.start_ms() && range.start_ms() < range.end_ms() && range.end_ms() <= MAX_MS);
                    let (first, last) = plan.buckets().unwrap();
                    prop_assert!(first <= last && last - first < MAX_BUCKETS);
                    // What the store does with it: bucket starts and ends, all representable.
                    prop_assert!(first.checked_mul(resolution.width_ms()).is_some());
                    prop_assert!((last + 1).checked_mul(resolution.width_ms()).is_some());
                    prop_assert_eq!(resolution.name(), res.as_str());
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        /// Arbitrary text as the query string never panics.
        #[test]
        fn any_query_string_parses_or_is_refused(query in ".{0,200}", now in any::<i64>()) {
            let _ = parse(Some(&query), now);
        }
    }
}
