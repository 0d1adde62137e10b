//! Our own Prometheus exposition parser: text format 0.0.4 (Synapse) and OpenMetrics text
//! (MAS), zero-copy over the body. The core, [`parse`], hands borrowed [`Event`]s to a
//! callback and allocates nothing per sample; label values arrive still escaped, and
//! [`unescape`] costs only when a value is used. [`parse_samples`] builds owned samples for
//! the families a [`FamilyFilter`] allows — the scrape probe keeps only what rules select.
//! Malformed input gives an [`ExpoError`] naming the line; nothing panics.
//!
//! Deliberate choices, checked against Python's `prometheus_client` parser in
//! `tests/expo_oracle.rs`:
//! - timestamps are milliseconds in text 0.0.4; in OpenMetrics (a page ending in `# EOF`)
//!   they are seconds and are converted to milliseconds;
//! - exemplars (` # {…} v [t]` after a sample) and unknown `#` comments are skipped;
//! - a label value's `\\`, `\"` and `\n` are unescaped; any other backslash stays as written;
//! - a sample's family is the name of the `# TYPE` before it when the name is that family plus
//!   a suffix its type allows (`_bucket`, `_sum`, `_count`, `_total`, `_created`, `_info`);
//!   otherwise the sample is its own family.

use memchr::{memchr, memchr2};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

/// Longest line accepted (a defence against garbage, far above any real exposition line).
pub const MAX_LINE: usize = 1 << 20;

/// A parse failure at a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ExpoError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong and what was expected.
    pub message: String,
}

/// A metric family's type, from `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`
    Counter,
    /// `gauge`
    Gauge,
    /// `histogram`
    Histogram,
    /// `summary`
    Summary,
    /// `untyped` / `unknown`
    Untyped,
    /// `info` (OpenMetrics)
    Info,
    /// `stateset` (OpenMetrics)
    Stateset,
    /// `gaugehistogram` (OpenMetrics)
    GaugeHistogram,
}

impl MetricType {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" | "unknown" => Self::Untyped,
            "info" => Self::Info,
            "stateset" => Self::Stateset,
            "gaugehistogram" => Self::GaugeHistogram,
            _ => return None,
        })
    }

    /// The name suffixes a sample of this type may carry after the family name.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Self::Counter => &["_total", "_created"],
            Self::Histogram | Self::GaugeHistogram => &["_bucket", "_sum", "_count", "_created", "_gsum", "_gcount"],
            Self::Summary => &["_sum", "_count", "_created"],
            Self::Info => &["_info"],
            _ => &[],
        }
    }
}

/// One sample line, borrowed from the body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRef<'a> {
    /// Sample name (e.g. `x_bucket`).
    pub name: &'a str,
    /// The family it belongs to (e.g. `x`).
    pub family: &'a str,
    /// The text between `{` and `}` (already validated), or empty.
    labels: &'a str,
    /// Value.
    pub value: f64,
    /// Timestamp in ms, if the line has one.
    pub timestamp_ms: Option<i64>,
}

impl<'a> SampleRef<'a> {
    /// The labels as (name, escaped value) pairs, in input order.
    pub fn labels(&self) -> Labels<'a> {
        Labels { rest: self.labels }
    }
}

/// Iterator over a sample's labels: `(name, escaped value)`.
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        // The text was validated by `scan_labels`, so this walk cannot fail.
        loop {
            let rest = self.rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                self.rest = rest;
                return None;
            }
            if rest.starts_with('"') {
                // A quoted metric name inside the braces: skip it.
                let end = quoted_end(rest.as_bytes(), 1)?;
                self.rest = &rest[end + 1..];
                continue;
            }
            let eq = rest.find('=')?;
            let name = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start();
            let end = quoted_end(after.as_bytes(), 1)?;
            let value = &after[1..end];
            self.rest = &after[end + 1..];
            return Some((name, value));
        }
    }
}

/// Index of the closing quote of a string whose content starts at `from`.
fn quoted_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let j = memchr2(b'"', b'\\', bytes.get(i..)?)? + i;
        if bytes[j] == b'\\' {
            i = j + 2;
        } else {
            return Some(j);
        }
    }
}

/// What the parser reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// A sample.
    Sample(SampleRef<'a>),
    /// `# HELP family text` (text still escaped).
    Help {
        /// Family.
        family: &'a str,
        /// Help text, escaped.
        text: &'a str,
    },
    /// `# TYPE family type`.
    Type {
        /// Family.
        family: &'a str,
        /// Type.
        kind: MetricType,
    },
}

/// Counts from one parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sample lines.
    pub samples: usize,
    /// Lines read.
    pub lines: usize,
}

/// Parses `text`, calling `on` for every sample, HELP and TYPE. Stops at the first error.
pub fn parse<'a>(text: &'a str, mut on: impl FnMut(Event<'a>)) -> Result<Summary, ExpoError> {
    let openmetrics = text.trim_end().ends_with("# EOF");
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut line_no = 0;
    let mut summary = Summary::default();
    let mut current: Option<(&'a str, MetricType)> = None;
    let mut seen_eof = false;
    while pos < bytes.len() {
        let end = memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        let mut line = &text[pos..end];
        pos = end + 1;
        line_no += 1;
        if line.ends_with('\r') {
            line = &line[..line.len() - 1];
        }
        let err = |message: String| ExpoError { line: line_no, message };
        if line.len() > MAX_LINE {
            return Err(err(format!("line is {} bytes, over the {MAX_LINE}-byte limit", line.len())));
        }
        if seen_eof && !line.trim().is_empty() {
            return Err(err("text after `# EOF`".into()));
        }
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            let comment = comment.trim_start_matches([' ', '\t']);
            if comment == "EOF" {
                seen_eof = true;
                continue;
            }
            let mut words = comment.splitn(3, [' ', '\t']);
            match words.next() {
                Some("HELP") => {
                    let family = words.next().unwrap_or("");
                    check_name(family).map_err(|m| err(format!("HELP: {m}")))?;
                    on(Event::Help { family, text: words.next().unwrap_or("") });
                }
                Some("TYPE") => {
                    let family = words.next().unwrap_or("");
                    check_name(family).map_err(|m| err(format!("TYPE: {m}")))?;
                    let kind_text = words.next().unwrap_or("").trim();
                    let kind = MetricType::parse(kind_text).ok_or_else(|| {
                        err(format!(
                            "TYPE `{kind_text}` is not a metric type; expected counter, gauge, histogram, summary or untyped"
                        ))
                    })?;
                    current = Some((family, kind));
                    on(Event::Type { family, kind });
                }
                _ => {}
            }
            continue;
        }
        let sample = sample(trimmed, openmetrics, current).map_err(err)?;
        summary.samples += 1;
        on(Event::Sample(sample));
    }
    summary.lines = line_no;
    Ok(summary)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok { Ok(()) } else { Err(format!("`{name}` is not a metric name")) }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err(format!("`{name}` is not a label name")) }
}

/// Parses one sample line.
fn sample<'a>(
    line: &'a str,
    openmetrics: bool,
    current: Option<(&'a str, MetricType)>,
) -> Result<SampleRef<'a>, String> {
    let bytes = line.as_bytes();
    let name_end = bytes.iter().position(|&b| b == b'{' || b == b' ' || b == b'\t').unwrap_or(bytes.len());
    let mut name = &line[..name_end];
    let mut labels = "";
    let mut rest = &line[name_end..];
    let after_blanks = rest.trim_start_matches([' ', '\t']);
    if after_blanks.starts_with('{') {
        rest = after_blanks;
    }
    if rest.starts_with('{') {
        let close = scan_labels(rest, &mut name)?;
        labels = &rest[1..close];
        rest = &rest[close + 1..];
    }
    let quoted = name_end == 0;
    if !quoted {
        check_name(name)?;
    } else if name.is_empty() {
        return Err("a sample needs a metric name".into());
    }
    // Exemplar: everything from " # " on.
    if let Some(i) = rest.find(" # ") {
        rest = &rest[..i];
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields.next().ok_or_else(|| format!("sample `{name}` has no value"))?;
    let value = parse_value(value_text).ok_or_else(|| format!("`{value_text}` is not a number (sample `{name}`)"))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => {
            Some(parse_timestamp(t, openmetrics).ok_or_else(|| format!("`{t}` is not a timestamp (sample `{name}`)"))?)
        }
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected `{extra}` after the timestamp of `{name}`"));
    }
    let family = match current {
        Some((family, _)) if name == family => family,
        Some((family, kind)) => {
            name.strip_prefix(family).filter(|suffix| kind.suffixes().contains(suffix)).map_or(name, |_| family)
        }
        None => name,
    };
    Ok(SampleRef { name, family, labels, value, timestamp_ms })
}

/// Validates `{…}` at the start of `text`; returns the index of `}`. A quoted metric name
/// inside the braces (Prometheus 3) replaces `name`.
fn scan_labels<'a>(text: &'a str, name: &mut &'a str) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let mut i = 1;
    let mut seen: Vec<&str> = Vec::new();
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        match bytes.get(i) {
            None => return Err("labels are not closed with `}`".into()),
            Some(b'}') => return Ok(i),
            Some(b'"') if name.is_empty() => {
                let end = quoted_end(bytes, i + 1).ok_or("unterminated quoted metric name")?;
                *name = &text[i + 1..end];
                i = end + 1;
            }
            Some(_) => {
                let eq = text[i..].find('=').map(|e| e + i).ok_or("expected `name=\"value\"` in the labels")?;
                let label = text[i..eq].trim();
                check_label_name(label)?;
                if seen.contains(&label) {
                    return Err(format!("label `{label}` appears twice"));
                }
                seen.push(label);
                i = eq + 1;
                while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                    i += 1;
                }
                if bytes.get(i) != Some(&b'"') {
                    return Err(format!("the value of label `{label}` must be quoted"));
                }
                let end =
                    quoted_end(bytes, i + 1).ok_or_else(|| format!("the value of label `{label}` is not closed"))?;
                i = end + 1;
            }
        }
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i),
            _ => return Err("expected `,` or `}` after a label".into()),
        }
    }
}

/// A value as Prometheus writes them: decimal or exponent, `NaN`, `+Inf`, `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => {
            let first = text.as_bytes().first()?;
            if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
                return None;
            }
            text.parse().ok().filter(|v: &f64| !v.is_nan())
        }
    }
}

fn parse_timestamp(text: &str, openmetrics: bool) -> Option<i64> {
    if openmetrics {
        let seconds: f64 = text.parse().ok()?;
        seconds.is_finite().then(|| (seconds * 1000.0).round() as i64)
    } else {
        text.parse().ok()
    }
}

/// Undoes label-value escaping (`\\`, `\"`, `\n`); borrows when there is nothing to undo.
pub fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// An allow-list of metric families (or sample names).
#[derive(Debug, Clone, Default)]
pub struct FamilyFilter {
    names: HashSet<String>,
}

impl FamilyFilter {
    /// A filter allowing these family or sample names.
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Self { names: names.into_iter().collect() }
    }

    /// Whether a sample is kept.
    pub fn allows(&self, sample: &SampleRef<'_>) -> bool {
        self.names.contains(sample.family) || self.names.contains(sample.name)
    }
}

/// A sample with owned, unescaped strings.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    /// Sample name.
    pub name: String,
    /// Labels, unescaped, in input order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
    /// Timestamp, ms.
    pub timestamp_ms: Option<i64>,
}

/// What a family declared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FamilyMeta {
    /// From `# TYPE`.
    pub kind: Option<MetricType>,
    /// From `# HELP`, unescaped.
    pub help: Option<String>,
}

/// Owned result of [`parse_samples`].
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The kept samples, in page order.
    pub samples: Vec<ParsedSample>,
    /// Samples on the page, kept or not.
    pub total: usize,
    /// TYPE and HELP of every family on the page.
    pub families: BTreeMap<String, FamilyMeta>,
}

/// Parses a page and keeps the samples `filter` allows (all without a filter).
pub fn parse_samples(text: &str, filter: Option<&FamilyFilter>) -> Result<Parsed, ExpoError> {
    let mut out = Parsed::default();
    let summary = parse(text, |event| match event {
        Event::Sample(s) => {
            if filter.is_none_or(|f| f.allows(&s)) {
                out.samples.push(ParsedSample {
                    name: s.name.to_string(),
                    labels: s.labels().map(|(k, v)| (k.to_string(), unescape(v).into_owned())).collect(),
                    value: s.value,
                    timestamp_ms: s.timestamp_ms,
                });
            }
        }
        Event::Help { family, text } => {
            let help = text.replace("\\n", "\n").replace("\\\\", "\\");
            out.families.entry(family.to_string()).or_default().help = Some(help);
        }
        Event::Type { family, kind } => {
            out.families.entry(family.to_string()).or_default().kind = Some(kind);
        }
    })?;
    out.total = summary.samples;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<ParsedSample, ExpoError> {
        let mut p = parse_samples(line, None)?;
        assert_eq!(p.samples.len(), 1, "{line}");
        Ok(p.samples.remove(0))
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn samples_parse_with_every_construct() {
        let cases: &[(&str, &str, Vec<(String, String)>, f64, Option<i64>, &str)] = &[
            ("up 1", "up", l(&[]), 1.0, None, "bare sample"),
            ("x{a=\"b\",c=\"d\"} 2.5", "x", l(&[("a", "b"), ("c", "d")]), 2.5, None, "labels in order"),
            ("x{a=\"b\",} 3", "x", l(&[("a", "b")]), 3.0, None, "a trailing comma is allowed"),
            ("x{} 3", "x", l(&[]), 3.0, None, "empty braces"),
            ("x{a=\"q\\\"uo\\\\te\\nnl\"} 1", "x", l(&[("a", "q\"uo\\te\nnl")]), 1.0, None, "escapes are undone"),
            ("x{a=\"\\t\"} 1", "x", l(&[("a", "\\t")]), 1.0, None, "unknown escapes stay as written"),
            ("x{a=\"b}c,d=\\\"e\"} 1", "x", l(&[("a", "b}c,d=\"e")]), 1.0, None, "braces and commas inside values"),
            ("x 1.5e+08", "x", l(&[]), 1.5e8, None, "exponent"),
            ("x +Inf", "x", l(&[]), f64::INFINITY, None, "+Inf"),
            ("x -Inf", "x", l(&[]), f64::NEG_INFINITY, None, "-Inf"),
            ("x 7 1700000000000", "x", l(&[]), 7.0, Some(1_700_000_000_000), "0.0.4 timestamps are ms"),
            ("x\t7", "x", l(&[]), 7.0, None, "tab separator"),
            ("x { a = \"b\" } 1", "x", l(&[("a", "b")]), 1.0, None, "blanks around labels"),
            ("{\"my.metric\", a=\"b\"} 4", "my.metric", l(&[("a", "b")]), 4.0, None, "Prometheus 3 quoted name"),
            ("x 1 # {trace_id=\"abc\"} 0.5 123", "x", l(&[]), 1.0, None, "exemplar skipped"),
        ];
        for (line, name, labels, value, ts, why) in cases {
            let s = one(line).unwrap_or_else(|e| panic!("{why}: {e}"));
            assert_eq!(&s.name, name, "{why}");
            assert_eq!(&s.labels, labels, "{why}");
            assert_eq!(s.value, *value, "{why}");
            assert_eq!(s.timestamp_ms, *ts, "{why}");
        }
        assert!(one("x NaN").unwrap().value.is_nan(), "NaN");
    }

    #[test]
    fn malformed_lines_name_the_line_and_what_was_expected() {
        let cases: &[(&str, usize, &str, &str)] = &[
            ("ok 1\nx{a=\"b\" 1", 2, "expected `,` or `}`", "unclosed braces"),
            ("x{a=b} 1", 1, "must be quoted", "unquoted value"),
            ("x{a=\"b} 1", 1, "is not closed", "unterminated value"),
            ("x", 1, "has no value", "no value"),
            ("x abc", 1, "`abc` is not a number", "word for a value"),
            ("x 1 2 3", 1, "unexpected `3`", "extra field"),
            ("x 1 soon", 1, "`soon` is not a timestamp", "bad timestamp"),
            ("1x 1", 1, "`1x` is not a metric name", "bad metric name"),
            ("x{1a=\"b\"} 1", 1, "`1a` is not a label name", "bad label name"),
            ("x{a=\"1\",a=\"2\"} 1", 1, "appears twice", "duplicate label"),
            ("# TYPE x wat\nx 1", 1, "`wat` is not a metric type", "bad type"),
            ("x 1\n# EOF\ny 2", 3, "text after `# EOF`", "EOF ends the page"),
        ];
        for (text, line, needle, why) in cases {
            let e = parse_samples(text, None).unwrap_err();
            assert_eq!(e.line, *line, "{why}: {e}");
            assert!(e.message.contains(needle), "{why}: {e}");
        }
    }

    #[test]
    fn families_come_from_type_and_suffixes() {
        let text = "# HELP h_seconds A histogram.\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"1\"} 1\nh_seconds_sum 2\nh_seconds_count 1\n\
                    # TYPE c counter\nc_total 3\nc_created 1\n# TYPE g gauge\ng_total 4\nloose 5\n# TYPE only_meta counter\n";
        let mut families = Vec::new();
        parse(text, |e| {
            if let Event::Sample(s) = e {
                families.push((s.name, s.family));
            }
        })
        .unwrap();
        assert_eq!(
            families,
            [
                ("h_seconds_bucket", "h_seconds"),
                ("h_seconds_sum", "h_seconds"),
                ("h_seconds_count", "h_seconds"),
                ("c_total", "c"),
                ("c_created", "c"),
                ("g_total", "g_total"),
                ("loose", "loose"),
            ],
            "a gauge has no _total suffix; an untyped sample is its own family"
        );
        let parsed = parse_samples(text, None).unwrap();
        assert_eq!(parsed.families["only_meta"].kind, Some(MetricType::Counter), "families with no samples are kept");
        assert_eq!(parsed.families["h_seconds"].help.as_deref(), Some("A histogram."));
    }

    #[test]
    fn the_filter_keeps_allowed_families_and_counts_all() {
        let text = "# TYPE a counter\na_total 1\nb 2\nc_bucket{le=\"+Inf\"} 3\n";
        let filter = FamilyFilter::new(["a".to_string(), "c_bucket".to_string()]);
        let parsed = parse_samples(text, Some(&filter)).unwrap();
        let names: Vec<&str> = parsed.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a_total", "c_bucket"]);
        assert_eq!(parsed.total, 3);
    }

    #[test]
    fn openmetrics_timestamps_are_seconds_and_crlf_is_fine() {
        let text = "# TYPE x gauge\r\nx 1 1700000000.5\r\n# EOF\r\n";
        let s = parse_samples(text, None).unwrap().samples.remove(0);
        assert_eq!(s.timestamp_ms, Some(1_700_000_000_500));
    }

    #[test]
    fn the_real_synapse_page_parses_completely() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/synapse-metrics-sample.txt");
        let text = std::fs::read_to_string(path).expect("tests/data holds the real Synapse sample");
        let parsed = parse_samples(&text, None).unwrap();
        assert_eq!(parsed.total, 2439, "the sample has 2,439 sample lines");
        assert_eq!(parsed.families.len(), 207, "and 207 families, 94 of them without samples");
    }
}
