//! Our own Prometheus exposition parser: text format 0.0.4 (Synapse, and MAS's OTel exporter)
//! and OpenMetrics text, zero-copy over the body. The scrape probe and `mxwarden scrape` feed it
//! a fetched page; rules read what it keeps.
//!
//! - [`parse`] / [`parse_with`] hand borrowed [`Event`]s to a callback: every sample, `# HELP`,
//!   `# TYPE` and `# UNIT`. Nothing is allocated per line (one reused label buffer per parse);
//!   label values arrive still escaped, and [`unescape`] costs only when a value is used.
//! - [`parse_samples`] builds owned [`ParsedSample`]s for the families a [`FamilyFilter`]
//!   allows (all without one) — the scrape probe keeps only what its rules select.
//! - [`parse_families`] returns every family's TYPE, HELP and UNIT.
//!
//! Malformed input gives an [`ExpoError`] naming the 1-based line and what was expected; the
//! whole page is rejected, as Prometheus rejects a whole scrape. Nothing panics, every loop
//! advances, and a line longer than [`MAX_LINE`] is an error.
//!
//! # Format
//!
//! [`Format::Auto`] (what [`parse_samples`] uses) reads a page as OpenMetrics when its last
//! non-blank line is `# EOF`, otherwise as text 0.0.4. The two differ only in:
//! - timestamps: 0.0.4 has integer milliseconds; OpenMetrics has seconds, possibly with a
//!   fraction, converted here to milliseconds rounded to the nearest one (Prometheus truncates
//!   `ts * 1000`, so `…0.123` can become `…122` there);
//! - `# EOF`: in OpenMetrics it must end the page, and only blank lines may follow; in 0.0.4 it
//!   is an ordinary comment.
//!
//! Both accept blank lines, `\r\n` line ends, `# UNIT`, exemplars (` # {trace_id="x"} 1.0 123`
//! after a sample — validated, then skipped), Prometheus 3 quoted names (`{"my.metric", a="b"}`,
//! `{a="b", "my.label"="c"}`, `# TYPE "my.metric" gauge`) and comments that are not HELP, TYPE
//! or UNIT. OpenMetrics' semantic rules (metadata before samples, bucket order, `_created`
//! pairing…) are not checked: a monitor should read what a real exporter sends.
//!
//! # Families
//!
//! A sample belongs to the family of the `# HELP`/`# TYPE` before it when its name is that
//! family's name, or that name plus a suffix the type allows: `_bucket`, `_sum`, `_count`,
//! `_created` (histogram), `_bucket`, `_gsum`, `_gcount` (gaugehistogram), `_sum`, `_count`,
//! `_created` (summary), `_total`, `_created` (counter), `_info` (info). Any other sample is its
//! own family and ends the current one, as in `prometheus_client`.
//!
//! # Strictness, against Python's `prometheus_client` 0.26 (`tests/expo_oracle.rs`)
//!
//! On every page both accept, the flattened samples are identical, except that
//! `prometheus_client` renames a counter sample without `_total` (`# TYPE c counter` / `c 1`
//! becomes `c_total`); we keep names as written. Everything `text_string_to_metric_families`
//! rejects is rejected here too, but for one page (below). The oracle test pins each point of
//! this list to Python's actual verdict. Deliberately stricter (as Prometheus's parser is):
//! - a name before `{` must be a valid metric name (Python checks it only without labels);
//! - unquoted label names are `[a-zA-Z_][a-zA-Z0-9_]*` (Python also allows `:`); empty quoted
//!   names are rejected; a `,` right after `{` is rejected (`{,a="b"}` and `{,}`);
//! - every label has a quoted value: Python silently drops `c=` in `{a="b",c=}`, a bare `=`,
//!   and an empty label between commas (`{a="b", ,c="d"}`, though it rejects `,,`);
//! - every `# TYPE` names a valid type (Python checks only the last TYPE of a family);
//! - at most one timestamp, an integer in 0.0.4 (Python takes the last of any number of
//!   fields, and accepts a float); a `#` after the value must start an exemplar;
//! - numbers are ASCII (Python's `float()` also reads other Unicode digits); a line is trimmed
//!   of spaces, tabs and carriage returns only (Python strips all Unicode whitespace);
//! - a line that is only `NaN` or `Inf` has no value (Python reads a sample `Na` or `In`).
//!
//! One deliberate difference in what is read: an exemplar after a 0.0.4 sample is skipped,
//! while Python's 0.0.4 parser takes the exemplar's last field as the sample's timestamp. And
//! one page only we read: a counter family named exactly `_total`, which `prometheus_client`
//! strips to an empty name and then refuses.

use memchr::memchr;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

/// Longest line accepted: a defence against garbage, far above any real exposition line.
pub const MAX_LINE: usize = 1 << 20;

/// A parse failure: the page is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ExpoError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong and what was expected.
    pub message: String,
}

/// Which text format a page is in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics when the last non-blank line is `# EOF`, otherwise text 0.0.4.
    #[default]
    Auto,
    /// Prometheus text format 0.0.4: integer millisecond timestamps.
    Text004,
    /// OpenMetrics text: timestamps in seconds, `# EOF` required at the end.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` announces: `application/openmetrics-text` is OpenMetrics;
    /// anything else (`text/plain; version=0.0.4`, MAS's `text/plain;version=1.0.0`, none) is
    /// left to [`Format::Auto`].
    pub fn from_content_type(content_type: &str) -> Self {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") { Self::OpenMetrics } else { Self::Auto }
    }

    /// Resolves [`Format::Auto`] for `text`.
    pub fn resolve(self, text: &str) -> Self {
        match self {
            Self::Auto => {
                let body = text.trim_end_matches([' ', '\t', '\r', '\n']);
                let last = body.rsplit('\n').next().unwrap_or("").trim_matches([' ', '\t', '\r']);
                if last == "# EOF" { Self::OpenMetrics } else { Self::Text004 }
            }
            other => other,
        }
    }
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
    /// `untyped` (0.0.4) or `unknown` (OpenMetrics); also a family with only `# HELP`.
    Untyped,
    /// `info` (OpenMetrics)
    Info,
    /// `stateset` (OpenMetrics)
    Stateset,
    /// `gaugehistogram` (OpenMetrics)
    GaugeHistogram,
}

impl MetricType {
    /// Reads a `# TYPE` word (case-sensitive, as Prometheus and `prometheus_client` are).
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
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

    /// The type's name as Prometheus writes it (`untyped` for [`MetricType::Untyped`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Untyped => "untyped",
            Self::Info => "info",
            Self::Stateset => "stateset",
            Self::GaugeHistogram => "gaugehistogram",
        }
    }

    /// Whether a sample named family + `suffix` belongs to a family of this type.
    fn allows_suffix(self, suffix: &str) -> bool {
        match self {
            Self::Counter => matches!(suffix, "_total" | "_created"),
            Self::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count" | "_created"),
            Self::GaugeHistogram => matches!(suffix, "_bucket" | "_gsum" | "_gcount"),
            Self::Summary => matches!(suffix, "_sum" | "_count" | "_created"),
            Self::Info => suffix == "_info",
            Self::Gauge | Self::Untyped | Self::Stateset => false,
        }
    }
}

/// One label of a sample, borrowed from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label<'a> {
    /// The label name; for a quoted name, the text between the quotes, still escaped.
    pub name: &'a str,
    /// The value between the quotes, still escaped: pass it to [`unescape`].
    pub value: &'a str,
}

/// One sample line, borrowed from the page (`'a`) and from the parser's label buffer (`'p`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRef<'p, 'a> {
    /// Sample name as written (e.g. `x_bucket`); for a quoted name, the text between the
    /// quotes, still escaped.
    pub name: &'a str,
    /// The family it belongs to (e.g. `x`); see the module docs.
    pub family: &'a str,
    /// Labels in input order, values still escaped. A `__name__` label is not among them: it
    /// is the name.
    pub labels: &'p [Label<'a>],
    /// Value: `NaN`, `±Inf` included.
    pub value: f64,
    /// Timestamp in milliseconds since the Unix epoch, if the line has one.
    pub timestamp_ms: Option<i64>,
}

/// What the parser reports, in page order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'p, 'a> {
    /// A sample line.
    Sample(SampleRef<'p, 'a>),
    /// `# HELP family text`.
    Help {
        /// Family name (quoted names: between the quotes, still escaped).
        family: &'a str,
        /// Help text as written (escaped); empty for `# HELP name` alone.
        text: &'a str,
    },
    /// `# TYPE family type`.
    Type {
        /// Family name (quoted names: between the quotes, still escaped).
        family: &'a str,
        /// The type.
        kind: MetricType,
    },
    /// `# UNIT family unit`.
    Unit {
        /// Family name (quoted names: between the quotes, still escaped).
        family: &'a str,
        /// The unit, as written.
        unit: &'a str,
    },
}

/// Counts from one parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Sample lines.
    pub samples: usize,
    /// Lines read.
    pub lines: usize,
    /// The format the page was read as ([`Format::Auto`] resolved).
    pub format: Format,
}

/// Parses `text` ([`Format::Auto`]), calling `on` for every sample, HELP, TYPE and UNIT.
/// Stops at the first error; events already delivered stay delivered.
pub fn parse<'a>(text: &'a str, on: impl FnMut(Event<'_, 'a>)) -> Result<ParseStats, ExpoError> {
    parse_with(text, Format::Auto, on)
}

/// Parses `text` in the given format, calling `on` for every sample, HELP, TYPE and UNIT.
pub fn parse_with<'a>(
    text: &'a str,
    format: Format,
    mut on: impl FnMut(Event<'_, 'a>),
) -> Result<ParseStats, ExpoError> {
    let format = format.resolve(text);
    let mut parser = LineParser { openmetrics: format == Format::OpenMetrics, ..LineParser::default() };
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut line_no = 0;
    let mut samples = 0;
    let mut eof = false;
    while pos < bytes.len() {
        let end = memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        line_no += 1;
        let err = |message: String| ExpoError { line: line_no, message };
        if end - pos > MAX_LINE {
            return Err(err(format!("the line is {} bytes long, over the {MAX_LINE}-byte limit", end - pos)));
        }
        let line = trim_line(&text[pos..end]);
        pos = end + 1;
        if line.is_empty() {
            continue;
        }
        if eof {
            return Err(err("only blank lines may follow `# EOF`".into()));
        }
        if line.as_bytes()[0] == b'#' {
            if parser.openmetrics && line == "# EOF" {
                eof = true;
            } else {
                parser.comment(line, &mut on).map_err(err)?;
            }
            continue;
        }
        let sample = parser.sample(line).map_err(err)?;
        samples += 1;
        on(Event::Sample(sample));
    }
    if parser.openmetrics && !eof {
        return Err(ExpoError { line: line_no, message: "an OpenMetrics page must end with `# EOF`".into() });
    }
    Ok(ParseStats { samples, lines: line_no, format })
}

/// Trims spaces, tabs and carriage returns from both ends of a line.
#[inline(always)]
fn trim_line(line: &str) -> &str {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let b = line.as_bytes();
    if b.first().is_none_or(|c| !blank(c)) && b.last().is_none_or(|c| !blank(c)) {
        return line;
    }
    let start = b.iter().position(|c| !blank(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !blank(c)).map_or(start, |i| i + 1);
    &line[start..end]
}

const NAME_START: u8 = 1;
const NAME_CHAR: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CHAR: u8 = 8;
const BLANK: u8 = 16;
/// What splits a `#` line (ASCII whitespace), and what quoting there involves.
const COMMENT_SPECIAL: u8 = 32;

/// Byte classes: metric names are `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`.
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let letter = b.is_ascii_alphabetic() || b == b'_';
        let digit = b.is_ascii_digit();
        let colon = b == b':';
        let mut class = 0;
        if letter || colon {
            class |= NAME_START;
        }
        if letter || colon || digit {
            class |= NAME_CHAR;
        }
        if letter {
            class |= LABEL_START;
        }
        if letter || digit {
            class |= LABEL_CHAR;
        }
        if b == b' ' || b == b'\t' {
            class |= BLANK;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'"' | b'\\') {
            class |= COMMENT_SPECIAL;
        }
        table[i] = class;
        i += 1;
    }
    table
};

fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

fn is_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && is(b[0], NAME_START) && b[1..].iter().all(|&c| is(c, NAME_CHAR))
}

/// The first index at or after `i` whose byte is not in `class`, or `b.len()`.
fn skip_class(b: &[u8], i: usize, class: u8) -> usize {
    match b.get(i..) {
        Some(rest) => rest.iter().position(|&c| !is(c, class)).map_or(b.len(), |n| i + n),
        None => b.len(),
    }
}

/// [`skip_class`] for `LABEL_CHAR` (`[A-Za-z0-9_]`), eight bytes at a time: label names are
/// short, and a byte loop pays a mispredicted exit per name. Exact per byte (no carries cross
/// bytes), so the lowest flagged byte is the first that is not a label character.
fn skip_label_chars(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOWS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // High bit of each byte of `x` (all below 0x80) that lies in lo..=hi.
    let within = |x: u64, lo: u8, hi: u8| {
        let at_least = x + ONES * u64::from(0x80 - lo);
        let above = x + ONES * u64::from(0x7f - hi);
        at_least & !above & HIGHS
    };
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        let x = v & LOWS;
        let underscore = {
            let y = x ^ (ONES * u64::from(b'_'));
            !(((y & LOWS) + LOWS) | y | LOWS)
        };
        let ok = (within(x, b'0', b'9') | within(x | (ONES * 0x20), b'a', b'z') | underscore) & !v & HIGHS;
        let stop = !ok & HIGHS;
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    skip_class(b, i, LABEL_CHAR)
}

#[inline(always)]
fn skip_blanks(b: &[u8], i: usize) -> usize {
    // Usually there is no blank at all: check one byte before setting up a scan.
    match b.get(i) {
        Some(&c) if is(c, BLANK) => skip_class(b, i + 1, BLANK),
        _ => i,
    }
}

fn find_blank(b: &[u8], i: usize) -> usize {
    match b.get(i..) {
        Some(rest) => rest.iter().position(|&c| is(c, BLANK)).map_or(b.len(), |n| i + n),
        None => b.len(),
    }
}

/// Index of the closing quote of a string whose content starts at `from`; a backslash escapes
/// the byte after it. Eight bytes at a time (SWAR): label values are mostly plain text.
fn quoted_end(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has = |v: u64, byte: u8| {
        let x = v ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut i = from;
    loop {
        // The lowest flagged byte of `has` is always a real match; that is the one used.
        while let Some(chunk) = b.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let found = has(v, b'"') | has(v, b'\\');
            if found != 0 {
                i += (found.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match b.get(i)? {
            b'"' => return Some(i),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The token starting at `i`, for error messages: up to a blank or a label delimiter, or at
/// least one character.
fn token_at(line: &str, i: usize) -> &str {
    let b = line.as_bytes();
    if !line.is_char_boundary(i) {
        return "";
    }
    let mut end = (i..b.len()).find(|&j| matches!(b[j], b' ' | b'\t' | b'{' | b'}' | b',' | b'=')).unwrap_or(b.len());
    if end == i {
        end = (i + 1).min(b.len());
    }
    while !line.is_char_boundary(end) {
        end += 1;
    }
    &line[i..end]
}

/// The family samples currently belong to.
#[derive(Clone, Copy)]
struct Current<'a> {
    name: &'a str,
    kind: MetricType,
    /// Written unquoted, so already a valid metric name: a sample name starting with it needs
    /// only its suffix checked.
    plain: bool,
}

/// The per-parse state: the current family and reused buffers.
#[derive(Default)]
struct LineParser<'a> {
    openmetrics: bool,
    /// The family of the last HELP/TYPE, while samples keep belonging to it.
    current: Option<Current<'a>>,
    labels: Vec<Label<'a>>,
    exemplar_labels: Vec<Label<'a>>,
    scratch: Vec<&'a str>,
}

impl<'a> LineParser<'a> {
    /// A `#` line: HELP, TYPE and UNIT are read; anything else is a comment.
    fn comment(&mut self, line: &'a str, on: &mut impl FnMut(Event<'_, 'a>)) -> Result<(), String> {
        let (parts, n) = split_comment(line);
        if n < 2 {
            return Ok(());
        }
        let keyword = parts[1];
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            return Ok(());
        }
        if n == 2 {
            return match keyword {
                "TYPE" => Err("`# TYPE` needs a metric name and a type".into()),
                // `prometheus_client` accepts a bare `# HELP` and ends the current family.
                "HELP" => {
                    self.current = None;
                    Ok(())
                }
                _ => Ok(()),
            };
        }
        if keyword == "UNIT" {
            // A comment to 0.0.4 parsers; reported only when well-formed, never an error.
            if n == 4
                && let Ok(family) = metric_name_token(parts[2])
            {
                on(Event::Unit { family, unit: parts[3] });
            }
            return Ok(());
        }
        let family = metric_name_token(parts[2]).map_err(|m| format!("`# {keyword}`: {m}"))?;
        let plain = !parts[2].starts_with('"');
        if keyword == "HELP" {
            if self.current.is_none_or(|c| c.name != family) {
                self.current = Some(Current { name: family, kind: MetricType::Untyped, plain });
            }
            on(Event::Help { family, text: if n == 4 { parts[3] } else { "" } });
            return Ok(());
        }
        if n < 4 {
            return Err(format!(
                "`# TYPE {}` needs a type: counter, gauge, histogram, summary, untyped, unknown, info, stateset or gaugehistogram",
                parts[2]
            ));
        }
        let kind = MetricType::parse(parts[3]).ok_or_else(|| {
            format!(
                "`{}` is not a metric type; expected counter, gauge, histogram, summary, untyped, unknown, info, stateset or gaugehistogram",
                parts[3]
            )
        })?;
        self.current = Some(Current { name: family, kind, plain });
        on(Event::Type { family, kind });
        Ok(())
    }

    /// A sample line (trimmed, not empty, not a comment).
    fn sample(&mut self, line: &'a str) -> Result<SampleRef<'_, 'a>, String> {
        let b = line.as_bytes();
        self.labels.clear();
        let mut name = "";
        let mut i = 0;
        // Samples follow their family's TYPE: when the line starts with its (valid) name, only
        // the suffix is left to check, and the family is known.
        let mut prefixed = false;
        if b[0] != b'{' {
            i = match self.current {
                Some(c) if c.plain && b.starts_with(c.name.as_bytes()) => {
                    prefixed = true;
                    c.name.len()
                }
                _ if is(b[0], NAME_START) => 1,
                _ => return Err(format!("`{}` is not a metric name", token_at(line, 0))),
            };
            i = skip_class(b, i, NAME_CHAR);
            if i < b.len() && !matches!(b[i], b' ' | b'\t' | b'{') {
                return Err(format!("`{}` is not a metric name", token_at(line, 0)));
            }
            name = &line[..i];
        }
        let mut j = skip_blanks(b, i);
        if j < b.len() && b[j] == b'{' {
            j = scan_labels(line, j + 1, &mut self.labels, Some(&mut name), &mut self.scratch)?;
        }
        if name.is_empty() {
            return Err("a sample needs a metric name, before `{` or quoted inside it".into());
        }
        let start = skip_blanks(b, j);
        if start >= b.len() {
            return Err(format!("sample `{name}` has no value"));
        }
        let end = find_blank(b, start);
        let text = &line[start..end];
        let value = parse_value(text).ok_or_else(|| format!("`{text}` is not a number (the value of `{name}`)"))?;
        let mut k = skip_blanks(b, end);
        let mut timestamp_ms = None;
        if k < b.len() && b[k] != b'#' {
            let end = find_blank(b, k);
            let text = &line[k..end];
            timestamp_ms = Some(if self.openmetrics {
                parse_seconds(text).ok_or_else(|| {
                    format!("`{text}` is not a timestamp in seconds (sample `{name}`); OpenMetrics writes e.g. 1700000000.123")
                })?
            } else {
                text.parse::<i64>().map_err(|_| {
                    format!("`{text}` is not a timestamp (sample `{name}`); text 0.0.4 has integer milliseconds")
                })?
            });
            k = skip_blanks(b, end);
        }
        if k < b.len() {
            if b[k] != b'#' {
                return Err(format!("unexpected `{}` after the timestamp of `{name}`", token_at(line, k)));
            }
            self.exemplar(line, k + 1).map_err(|m| format!("sample `{name}`: {m}"))?;
        }
        let family = match self.current {
            Some(c) if prefixed || (name.len() >= c.name.len() && name.starts_with(c.name)) => {
                let suffix = &name[c.name.len()..];
                if suffix.is_empty() || c.kind.allows_suffix(suffix) {
                    c.name
                } else {
                    self.current = None;
                    name
                }
            }
            Some(_) => {
                self.current = None;
                name
            }
            None => name,
        };
        Ok(SampleRef { name, family, labels: &self.labels, value, timestamp_ms })
    }

    /// Validates an exemplar ` # {labels} value [timestamp]`; `i` is just after the `#`.
    fn exemplar(&mut self, line: &'a str, i: usize) -> Result<(), String> {
        const WANT: &str = "expected an exemplar `# {labels} value [timestamp]` after the value";
        let b = line.as_bytes();
        let j = skip_blanks(b, i);
        if j == i || j >= b.len() || b[j] != b'{' {
            return Err(WANT.into());
        }
        let i = j;
        self.exemplar_labels.clear();
        let after = scan_labels(line, i + 1, &mut self.exemplar_labels, None, &mut self.scratch)?;
        let start = skip_blanks(b, after);
        if start == after || start >= b.len() {
            return Err(WANT.into());
        }
        let end = find_blank(b, start);
        let text = &line[start..end];
        parse_value(text).ok_or_else(|| format!("`{text}` is not a number (an exemplar value)"))?;
        let k = skip_blanks(b, end);
        if k < b.len() {
            let end = find_blank(b, k);
            let text = &line[k..end];
            parse_seconds(text).ok_or_else(|| format!("`{text}` is not an exemplar timestamp in seconds"))?;
            if end < b.len() {
                return Err(format!("unexpected `{}` after the exemplar", token_at(line, skip_blanks(b, end))));
            }
        }
        Ok(())
    }
}

/// A HELP/TYPE/UNIT name token: a metric name, or a quoted name (the text between the quotes).
fn metric_name_token(token: &str) -> Result<&str, String> {
    if let Some(rest) = token.strip_prefix('"') {
        return match rest.strip_suffix('"') {
            Some("") => Err("a metric name cannot be empty".into()),
            Some(inner) => Ok(inner),
            None => Err(format!("`{token}` is not closed with `\"`")),
        };
    }
    if is_metric_name(token) { Ok(token) } else { Err(format!("`{token}` is not a metric name")) }
}

/// Splits a `#` line into at most four whitespace-separated tokens, the last taking the rest of
/// the line; a double-quoted stretch does not split. This is `prometheus_client`'s
/// `_split_quoted(line, None, 3)`, so `#`-lines are read exactly as it reads them.
fn split_comment(line: &str) -> ([&str; 4], usize) {
    let b = line.as_bytes();
    let mut parts = [""; 4];
    let mut n = 1;
    let mut x = 0;
    while x < b.len() {
        match next_unquoted_space(b, x) {
            None => {
                parts[n - 1] = &line[x..];
                break;
            }
            Some(p) if p == x => x += 1,
            Some(p) => {
                if n == 4 {
                    parts[3] = &line[x..];
                    break;
                }
                parts[n - 1] = &line[x..p];
                x = p + 1;
                n += 1;
            }
        }
    }
    (parts, n)
}

/// The next ASCII whitespace at or after `from` that is outside double quotes. A quote preceded
/// by an odd number of backslashes does not count. `b[from - 1]` is whitespace (or `from` is 0),
/// so counting backslashes from `from` is the same as counting from the line's start.
fn next_unquoted_space(b: &[u8], from: usize) -> Option<usize> {
    let mut quoted = false;
    let mut backslashes = 0usize;
    let mut i = from;
    loop {
        // Ordinary bytes neither split, quote nor escape: skip them in one go.
        if backslashes == 0 && !quoted {
            i += b.get(i..)?.iter().position(|&c| is(c, COMMENT_SPECIAL))?;
        }
        let c = *b.get(i)?;
        if c == b'"' && backslashes.is_multiple_of(2) {
            quoted = !quoted;
        }
        if !quoted && !matches!(c, b'"' | b'\\') && is(c, COMMENT_SPECIAL) {
            return Some(i);
        }
        backslashes = if c == b'\\' { backslashes + 1 } else { 0 };
        i += 1;
    }
}

/// Reads a label set after its `{`; returns the index after the closing `}`. `name` is where a
/// quoted metric name or `__name__` goes (None for an exemplar, where neither is allowed).
fn scan_labels<'a>(
    line: &'a str,
    mut i: usize,
    out: &mut Vec<Label<'a>>,
    mut name: Option<&mut &'a str>,
    scratch: &mut Vec<&'a str>,
) -> Result<usize, String> {
    let b = line.as_bytes();
    let mut first = true;
    loop {
        i = skip_blanks(b, i);
        let Some(&c) = b.get(i) else {
            return Err("the labels are not closed with `}`".into());
        };
        if c == b'}' {
            break;
        }
        if c == b',' {
            return Err(if first {
                "expected a label name after `{`, found `,`".into()
            } else {
                "expected a label name after `,`, found another `,`".into()
            });
        }
        first = false;
        let (label, quoted) = if c == b'"' {
            let end = quoted_end(b, i + 1).ok_or("a quoted name is not closed with `\"`")?;
            let inner = &line[i + 1..end];
            i = end + 1;
            (inner, true)
        } else if is(c, LABEL_START) {
            let start = i;
            i = skip_label_chars(b, i + 1);
            (&line[start..i], false)
        } else {
            return Err(format!("expected a label name, found `{}`", token_at(line, i)));
        };
        i = skip_blanks(b, i);
        match b.get(i) {
            Some(b'=') => {
                if label.is_empty() {
                    return Err("a label name cannot be empty".into());
                }
                i = skip_blanks(b, i + 1);
                if b.get(i) != Some(&b'"') {
                    return Err(format!("the value of label `{label}` must be in double quotes"));
                }
                let end = quoted_end(b, i + 1)
                    .ok_or_else(|| format!("the value of label `{label}` is not closed with `\"`"))?;
                let value = &line[i + 1..end];
                i = end + 1;
                if label.starts_with("__") {
                    if label != "__name__" {
                        return Err(format!("label name `{label}` is reserved (names starting with `__` are)"));
                    }
                    set_name(name.as_deref_mut(), value)?;
                } else {
                    out.push(Label { name: label, value });
                }
            }
            Some(b',' | b'}') if quoted => set_name(name.as_deref_mut(), label)?,
            _ if quoted => return Err(format!("expected `=`, `,` or `}}` after `\"{label}\"`")),
            _ => return Err(format!("expected `=` after label name `{label}`")),
        }
        i = skip_blanks(b, i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => break,
            Some(_) => return Err("expected `,` or `}` after a label".into()),
            None => return Err("the labels are not closed with `}`".into()),
        }
    }
    check_duplicates(out, scratch)?;
    Ok(i + 1)
}

/// Records a metric name found inside the braces.
fn set_name<'a>(name: Option<&mut &'a str>, value: &'a str) -> Result<(), String> {
    let Some(name) = name else {
        return Err("an exemplar's labels cannot carry a metric name".into());
    };
    if !name.is_empty() {
        return Err("the metric name is given twice".into());
    }
    if value.is_empty() {
        return Err("a metric name cannot be empty".into());
    }
    *name = value;
    Ok(())
}

fn check_duplicates<'a>(labels: &[Label<'a>], scratch: &mut Vec<&'a str>) -> Result<(), String> {
    // A 64-bit signature of (length, first byte, last byte) per name: distinct names rarely
    // share a bit, so the exact comparison runs only when two do.
    let mut seen = 0u64;
    let mut clash = false;
    for label in labels {
        let b = label.name.as_bytes();
        let (first, last) = (b.first().copied().unwrap_or(0), b.last().copied().unwrap_or(0));
        let bit = 1u64 << ((b.len() * 7 + usize::from(first) * 3 + usize::from(last)) & 63);
        clash |= seen & bit != 0;
        seen |= bit;
    }
    if !clash {
        return Ok(());
    }
    let twice = |name: &str| Err(format!("label `{name}` appears twice"));
    if labels.len() <= 8 {
        for (i, label) in labels.iter().enumerate().skip(1) {
            if labels[..i].iter().any(|l| l.name == label.name) {
                return twice(label.name);
            }
        }
        return Ok(());
    }
    scratch.clear();
    scratch.extend(labels.iter().map(|l| l.name));
    scratch.sort_unstable();
    match scratch.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => twice(w[0]),
        None => Ok(()),
    }
}

/// A sample value as `prometheus_client` reads it (Python `int()`/`float()`, ASCII only):
/// decimal or exponent notation, `NaN`, `Inf`, `Infinity`, any case, optional sign.
fn parse_value(text: &str) -> Option<f64> {
    fast_decimal(text.as_bytes()).or_else(|| text.parse().ok())
}

/// Powers of ten exactly representable as f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Clinger's fast path: a decimal with at most 2^53 as its digits and a power of ten up to
/// 10^22 converts with one correctly rounded operation, so the result equals `str::parse`'s.
/// Anything else (long mantissas, big exponents, words) returns None for the full parser.
fn fast_decimal(b: &[u8]) -> Option<f64> {
    let mut i = 0;
    let negative = match b.first()? {
        b'-' => {
            i = 1;
            true
        }
        b'+' => {
            i = 1;
            false
        }
        _ => false,
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0;
    let mut exponent: i32 = 0;
    let mut any = false;
    while i < b.len() && b[i].is_ascii_digit() {
        any = true;
        let d = u64::from(b[i] - b'0');
        if mantissa != 0 || d != 0 {
            if digits == 19 {
                return None;
            }
            mantissa = mantissa * 10 + d;
            digits += 1;
        }
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            any = true;
            let d = u64::from(b[i] - b'0');
            if mantissa != 0 || d != 0 {
                if digits == 19 {
                    return None;
                }
                mantissa = mantissa * 10 + d;
                digits += 1;
            }
            exponent -= 1;
            i += 1;
        }
    }
    if !any {
        return None;
    }
    if i < b.len() && (b[i] | 0x20) == b'e' {
        i += 1;
        let negative_exp = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        let mut e: i32 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start == 4 {
                return None;
            }
            e = e * 10 + i32::from(b[i] - b'0');
            i += 1;
        }
        if i == start {
            return None;
        }
        exponent += if negative_exp { -e } else { e };
    }
    if i != b.len() || mantissa > 1 << 53 {
        return None;
    }
    let m = mantissa as f64;
    let v = match exponent {
        _ if mantissa == 0 => 0.0,
        0 => m,
        1..=22 => m * POW10[exponent as usize],
        -22..=-1 => m / POW10[(-exponent) as usize],
        _ => return None,
    };
    Some(if negative { -v } else { v })
}

/// OpenMetrics seconds (possibly fractional) to milliseconds, rounded to the nearest one.
fn parse_seconds(text: &str) -> Option<i64> {
    let seconds = parse_value(text)?;
    let ms = (seconds * 1000.0).round();
    (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
}

/// Undoes label-value escaping (`\\`, `\"`, `\n`); any other backslash stays as written, as in
/// Prometheus and `prometheus_client`. Borrows when there is nothing to undo.
pub fn unescape(raw: &str) -> Cow<'_, str> {
    unescape_with(raw, true)
}

/// Undoes HELP-text escaping: `\\` and `\n` in text 0.0.4; OpenMetrics also has `\"`.
pub fn unescape_help(raw: &str, format: Format) -> Cow<'_, str> {
    unescape_with(raw, format == Format::OpenMetrics)
}

fn unescape_with(raw: &str, quote: bool) -> Cow<'_, str> {
    // A plain scan: values are short, and memchr's call costs more than it saves here.
    let Some(first) = raw.bytes().position(|c| c == b'\\') else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut chars = raw[first..].chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    Cow::Owned(out)
}

/// An allow-list of metric families: a sample is kept when its family or its own name is listed
/// (so `x_bucket` keeps only a histogram's buckets, `x` all of its samples).
#[derive(Debug, Clone, Default)]
pub struct FamilyFilter {
    names: HashSet<String>,
    /// Bit n set when a listed name is n bytes long (n < 256): most names on a page are
    /// refused by their length alone, without hashing.
    lengths: [u64; 4],
    /// A listed name is 256 bytes or longer.
    long_names: bool,
}

impl FamilyFilter {
    /// A filter allowing these family or sample names (e.g. the metric names a rule set reads).
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        let names: HashSet<String> = names.into_iter().map(Into::into).collect();
        let mut lengths = [0u64; 4];
        let mut long_names = false;
        for name in &names {
            match name.len() {
                n @ 0..256 => lengths[n / 64] |= 1 << (n % 64),
                _ => long_names = true,
            }
        }
        Self { names, lengths, long_names }
    }

    /// Whether this family or sample name is listed.
    #[inline]
    pub fn allows_name(&self, name: &str) -> bool {
        let n = name.len();
        let possible = if n < 256 { self.lengths[n / 64] & (1 << (n % 64)) != 0 } else { self.long_names };
        possible && self.listed(name)
    }

    #[inline(never)]
    fn listed(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Whether a sample is kept.
    pub fn allows(&self, sample: &SampleRef<'_, '_>) -> bool {
        self.allows_name(sample.family) || self.allows_name(sample.name)
    }
}

/// A sample with owned, unescaped strings.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    /// Sample name (quoted names unescaped).
    pub name: String,
    /// Labels, unescaped, in input order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
    /// Timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

/// What a family declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyMeta {
    /// From `# TYPE`.
    pub kind: Option<MetricType>,
    /// From `# HELP`, unescaped (the last one, if repeated).
    pub help: Option<String>,
    /// From `# UNIT`.
    pub unit: Option<String>,
}

/// Owned result of [`parse_samples`].
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The kept samples, in page order.
    pub samples: Vec<ParsedSample>,
    /// Sample lines on the page, kept or not.
    pub total: usize,
    /// TYPE, HELP and UNIT of the kept families (all families without a filter); families
    /// with metadata but no samples included.
    pub families: BTreeMap<String, FamilyMeta>,
}

/// Parses a page ([`Format::Auto`]) and keeps the samples `filter` allows (all without one).
/// The only allocations are the kept samples' own strings and the kept families' metadata.
pub fn parse_samples(text: &str, filter: Option<&FamilyFilter>) -> Result<Parsed, ExpoError> {
    let mut out = Parsed::default();
    // A family's samples share its name's slice (from the TYPE line): decide once per family,
    // then per sample name only when the family is not listed (mostly refused by length alone).
    let mut family: (&str, bool) = ("", false);
    let format = Format::Auto.resolve(text);
    let stats = parse_with(text, format, |event| match event {
        Event::Sample(s) => {
            let keep = match filter {
                None => true,
                Some(f) => {
                    if !std::ptr::eq(s.family, family.0) {
                        family = (s.family, f.allows_name(s.family));
                    }
                    family.1 || f.allows_name(s.name)
                }
            };
            if keep {
                out.samples.push(ParsedSample {
                    name: unescape(s.name).into_owned(),
                    labels: s
                        .labels
                        .iter()
                        .map(|l| (unescape(l.name).into_owned(), unescape(l.value).into_owned()))
                        .collect(),
                    value: s.value,
                    timestamp_ms: s.timestamp_ms,
                });
            }
        }
        meta => {
            let family = match meta {
                Event::Help { family, .. } | Event::Type { family, .. } | Event::Unit { family, .. } => family,
                Event::Sample(_) => return,
            };
            if filter.is_none_or(|f| f.allows_name(family)) {
                record_meta(&mut out.families, meta, format);
            }
        }
    })?;
    out.total = stats.samples;
    Ok(out)
}

/// Every family's TYPE, HELP and UNIT on a page ([`Format::Auto`]), keyed by unescaped name.
pub fn parse_families(text: &str) -> Result<BTreeMap<String, FamilyMeta>, ExpoError> {
    let mut families = BTreeMap::new();
    let format = Format::Auto.resolve(text);
    parse_with(text, format, |event| record_meta(&mut families, event, format))?;
    Ok(families)
}

fn record_meta(families: &mut BTreeMap<String, FamilyMeta>, event: Event<'_, '_>, format: Format) {
    match event {
        Event::Help { family, text } => {
            update_meta(families, family, |m| m.help = Some(unescape_help(text, format).into_owned()));
        }
        Event::Type { family, kind } => update_meta(families, family, |m| m.kind = Some(kind)),
        Event::Unit { family, unit } => update_meta(families, family, |m| m.unit = Some(unit.to_string())),
        Event::Sample(_) => {}
    }
}

/// Updates a family's entry, allocating its key only when it is new (HELP and TYPE come together).
fn update_meta(families: &mut BTreeMap<String, FamilyMeta>, family: &str, update: impl FnOnce(&mut FamilyMeta)) {
    let key = unescape(family);
    if let Some(meta) = families.get_mut(key.as_ref()) {
        update(meta);
        return;
    }
    let mut meta = FamilyMeta::default();
    update(&mut meta);
    families.insert(key.into_owned(), meta);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(line: &str) -> Result<ParsedSample, ExpoError> {
        let mut p = parse_samples(line, None)?;
        assert_eq!(p.samples.len(), 1, "{line}");
        Ok(p.samples.remove(0))
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn same_value(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn samples_parse_with_every_construct() {
        let cases: &[(&str, &str, Vec<(String, String)>, f64, Option<i64>, &str)] = &[
            ("up 1", "up", l(&[]), 1.0, None, "bare sample"),
            ("x{a=\"b\",c=\"d\"} 2.5", "x", l(&[("a", "b"), ("c", "d")]), 2.5, None, "labels in input order"),
            ("x{c=\"d\",a=\"b\"} 2.5", "x", l(&[("c", "d"), ("a", "b")]), 2.5, None, "order is kept, not sorted"),
            ("x{a=\"b\",} 3", "x", l(&[("a", "b")]), 3.0, None, "a trailing comma is allowed"),
            ("x{a=\"b\" , } 3", "x", l(&[("a", "b")]), 3.0, None, "blanks around a trailing comma"),
            ("x{} 3", "x", l(&[]), 3.0, None, "empty braces"),
            ("x{a=\"\"} 3", "x", l(&[("a", "")]), 3.0, None, "an empty value is a value"),
            ("x{a=\"q\\\"uo\\\\te\\nnl\"} 1", "x", l(&[("a", "q\"uo\\te\nnl")]), 1.0, None, "escapes are undone"),
            ("x{a=\"\\t\\u\"} 1", "x", l(&[("a", "\\t\\u")]), 1.0, None, "unknown escapes stay as written"),
            ("x{a=\"b}c,d=\\\"e\"} 1", "x", l(&[("a", "b}c,d=\"e")]), 1.0, None, "braces and commas inside values"),
            (
                "x{a=\"# {b=\\\"c\\\"} 1\"} 2",
                "x",
                l(&[("a", "# {b=\"c\"} 1")]),
                2.0,
                None,
                "an exemplar lookalike inside a value",
            ),
            ("x{a=\"ünï ✓\"} 1", "x", l(&[("a", "ünï ✓")]), 1.0, None, "unicode values"),
            ("x{a=\"tab\there\"} 1", "x", l(&[("a", "tab\there")]), 1.0, None, "a raw tab inside a value"),
            ("x 1.5e+08", "x", l(&[]), 1.5e8, None, "exponent"),
            ("x 7 1700000000000", "x", l(&[]), 7.0, Some(1_700_000_000_000), "0.0.4 timestamps are ms"),
            ("x 7 -1", "x", l(&[]), 7.0, Some(-1), "negative timestamps"),
            ("x\t7", "x", l(&[]), 7.0, None, "tab separator"),
            ("x \t 7 \t 8", "x", l(&[]), 7.0, Some(8), "runs of blanks"),
            ("  x 7  ", "x", l(&[]), 7.0, None, "leading and trailing blanks"),
            ("x 7\r", "x", l(&[]), 7.0, None, "a CR before the newline"),
            ("x { a = \"b\" } 1", "x", l(&[("a", "b")]), 1.0, None, "blanks around labels"),
            ("x{a=\"b\"}1", "x", l(&[("a", "b")]), 1.0, None, "no blank after `}` (prometheus_client accepts)"),
            ("job:rate5m:sum 1", "job:rate5m:sum", l(&[]), 1.0, None, "colons in metric names"),
            ("_x 1", "_x", l(&[]), 1.0, None, "leading underscore"),
            ("{\"my.metric\", a=\"b\"} 4", "my.metric", l(&[("a", "b")]), 4.0, None, "Prometheus 3 quoted name"),
            ("{\"my.metric\"} 4", "my.metric", l(&[]), 4.0, None, "quoted name alone"),
            ("{a=\"b\", \"my.metric\"} 4", "my.metric", l(&[("a", "b")]), 4.0, None, "quoted name after a label"),
            ("{\"quo\\\"te\"} 4", "quo\"te", l(&[]), 4.0, None, "quoted names are unescaped"),
            ("x{\"my.label\"=\"v\"} 4", "x", l(&[("my.label", "v")]), 4.0, None, "quoted label name"),
            ("{__name__=\"x\", a=\"b\"} 4", "x", l(&[("a", "b")]), 4.0, None, "__name__ names the sample"),
            ("x 1 # {trace_id=\"abc\"} 0.5 123", "x", l(&[]), 1.0, None, "exemplar skipped"),
            ("x{a=\"b\"} 1 # {trace_id=\"abc\"} 0.5", "x", l(&[("a", "b")]), 1.0, None, "exemplar without timestamp"),
            ("x 1 5 # {} 0.5", "x", l(&[]), 1.0, Some(5), "timestamp then exemplar"),
        ];
        for (line, name, labels, value, ts, why) in cases {
            let s = one(line).unwrap_or_else(|e| panic!("{why}: {e}"));
            assert_eq!(&s.name, name, "{why}");
            assert_eq!(&s.labels, labels, "{why}");
            assert!(same_value(s.value, *value), "{why}: {}", s.value);
            assert_eq!(s.timestamp_ms, *ts, "{why}");
        }
    }

    #[test]
    fn values_read_like_prometheus_client() {
        let cases: &[(&str, Option<f64>, &str)] = &[
            ("NaN", Some(f64::NAN), "NaN"),
            ("nan", Some(f64::NAN), "any case"),
            ("+Inf", Some(f64::INFINITY), "+Inf as Prometheus writes it"),
            ("Inf", Some(f64::INFINITY), "unsigned Inf"),
            ("+inf", Some(f64::INFINITY), "lower case"),
            ("-Inf", Some(f64::NEG_INFINITY), "-Inf"),
            ("-inf", Some(f64::NEG_INFINITY), "lower case -inf"),
            ("Infinity", Some(f64::INFINITY), "Python's float() reads Infinity"),
            ("0", Some(0.0), "zero"),
            ("-0.0", Some(-0.0), "negative zero keeps its sign"),
            ("11741.0", Some(11741.0), "Synapse writes floats with .0"),
            ("1.30228224e+08", Some(1.30228224e8), "Synapse's exponent form"),
            ("3.0639026165008545", Some(3.0639026165008545), "17 digits go to the full parser"),
            (".5", Some(0.5), "no integer part"),
            ("5.", Some(5.0), "no fraction digits"),
            ("+7", Some(7.0), "explicit plus"),
            ("1E3", Some(1000.0), "capital E"),
            ("1e-400", Some(0.0), "underflow is zero"),
            ("1e400", Some(f64::INFINITY), "overflow is infinity"),
            ("123456789012345678901234567890", Some(1.2345678901234568e29), "long integers round correctly"),
            ("0.1", Some(0.1), "one tenth rounds like std"),
            ("1_000", None, "underscores are refused (as prometheus_client)"),
            ("0x10", None, "no hex"),
            ("1e", None, "exponent without digits"),
            (".", None, "a dot alone"),
            ("", None, "nothing"),
            ("Infinit", None, "a misspelt word"),
            ("١", None, "ASCII digits only (Python would read this Arabic-Indic one)"),
        ];
        for (text, want, why) in cases {
            match (parse_value(text), want) {
                (Some(v), Some(w)) => assert!(same_value(v, *w), "{why}: {text} -> {v}"),
                (None, None) => {}
                (got, _) => panic!("{why}: {text} -> {got:?}"),
            }
        }
    }

    #[test]
    fn malformed_lines_name_the_line_and_what_was_expected() {
        let cases: &[(&str, usize, &str, &str)] = &[
            ("ok 1\nx{a=\"b\" 1", 2, "expected `,` or `}`", "unclosed braces"),
            ("x{a=\"b\"", 1, "not closed with `}`", "labels run to the end of the line"),
            ("x{a=b} 1", 1, "must be in double quotes", "unquoted value"),
            ("x{a=\"b} 1", 1, "is not closed", "unterminated value"),
            ("x{a=\"b\\\"} 1", 1, "is not closed", "the closing quote is escaped"),
            ("x{a} 1", 1, "expected `=` after label name `a`", "label without value"),
            ("x{,a=\"b\"} 1", 1, "after `{`, found `,`", "leading comma (Python accepts, Prometheus does not)"),
            ("x{a=\"b\",,c=\"d\"} 1", 1, "another `,`", "double comma"),
            ("x{a=\"b\" c=\"d\"} 1", 1, "expected `,` or `}`", "missing comma"),
            ("x", 1, "has no value", "no value"),
            ("x{a=\"b\"}", 1, "has no value", "no value after labels"),
            ("x abc", 1, "`abc` is not a number", "word for a value"),
            ("x 1 2 3", 1, "unexpected `3`", "a third field (Python takes the last as timestamp)"),
            ("x 1 soon", 1, "`soon` is not a timestamp", "bad timestamp"),
            ("x 1 1.5", 1, "integer milliseconds", "0.0.4 timestamps are integers (Python accepts floats)"),
            ("x 1 99999999999999999999", 1, "is not a timestamp", "timestamp beyond i64"),
            ("1x 1", 1, "`1x` is not a metric name", "bad metric name"),
            ("x-y 1", 1, "`x-y` is not a metric name", "dash in a name"),
            ("1x{a=\"b\"} 1", 1, "`1x` is not a metric name", "bad name before labels (Python does not check)"),
            ("x{1a=\"b\"} 1", 1, "expected a label name, found `1a`", "bad label name"),
            ("x{a:b=\"c\"} 1", 1, "expected `=` after label name `a`", "colon in a label name (Python accepts)"),
            ("x{__x=\"c\"} 1", 1, "is reserved", "reserved label names (as prometheus_client)"),
            ("x{\"\"=\"c\"} 1", 1, "cannot be empty", "empty quoted label name"),
            ("x{a=\"1\",a=\"2\"} 1", 1, "appears twice", "duplicate label"),
            ("x{__name__=\"y\"} 1", 1, "given twice", "a name before braces and __name__"),
            ("x{\"y\"} 1", 1, "given twice", "a name before braces and a quoted one"),
            ("{\"x\", \"y\"} 1", 1, "given twice", "two quoted names"),
            ("{a=\"b\"} 1", 1, "needs a metric name", "no name at all"),
            ("{\"\"} 1", 1, "cannot be empty", "empty quoted name"),
            ("{\"x} 1", 1, "not closed", "unterminated quoted name"),
            ("{\"x\" y} 1", 1, "expected `=`, `,` or `}`", "junk after a quoted name"),
            ("x 1 #", 1, "expected an exemplar", "a bare hash after the value"),
            ("x 1 # note", 1, "expected an exemplar", "a comment after a sample is not allowed"),
            ("x 1 #{a=\"b\"} 1", 1, "expected an exemplar", "no blank between # and {"),
            ("x 1 # {a=\"b\"}", 1, "expected an exemplar", "exemplar without value"),
            ("x 1 # {a=\"b\"} z", 1, "is not a number (an exemplar value)", "exemplar value"),
            ("x 1 # {a=\"b\"} 1 2 3", 1, "after the exemplar", "exemplar with extra fields"),
            ("x 1 # {\"n\"} 1", 1, "cannot carry a metric name", "a name inside exemplar labels"),
            ("# TYPE x wat\nx 1", 1, "`wat` is not a metric type", "bad type"),
            ("# TYPE x Counter", 1, "is not a metric type", "types are case-sensitive"),
            ("# TYPE x counter extra", 1, "`counter extra` is not a metric type", "extra words after the type"),
            ("# TYPE x", 1, "needs a type", "TYPE without a type"),
            ("# TYPE", 1, "needs a metric name and a type", "TYPE alone"),
            ("# HELP 1x text", 1, "`1x` is not a metric name", "bad HELP name"),
            ("# TYPE \"x gauge", 1, "not closed", "unterminated quoted TYPE name"),
        ];
        for (text, line, needle, why) in cases {
            let e = match parse_samples(text, None) {
                Err(e) => e,
                Ok(p) => panic!("{why}: accepted {text:?} as {:?}", p.samples),
            };
            assert_eq!(e.line, *line, "{why}: {e}");
            assert!(e.message.contains(needle), "{why}: {e}");
        }
    }

    #[test]
    fn eof_in_0_0_4_is_a_comment_and_in_openmetrics_a_terminator() {
        let cases: &[(&str, Format, Result<usize, (usize, &str)>, &str)] = &[
            ("x 1\n# EOF\ny 2\n", Format::Auto, Ok(2), "not last: a 0.0.4 comment (as prometheus_client)"),
            (
                "x 1\n# EOF\ny 2\n",
                Format::OpenMetrics,
                Err((3, "only blank lines")),
                "explicit OpenMetrics: text after EOF",
            ),
            ("x 1\n# EOF\n\n  \n", Format::Auto, Ok(1), "blank lines after EOF are fine"),
            ("x 1\n", Format::OpenMetrics, Err((1, "must end with `# EOF`")), "OpenMetrics needs its EOF"),
            ("", Format::OpenMetrics, Err((0, "must end with `# EOF`")), "even when empty"),
            ("x 1\n# EOF", Format::Text004, Ok(1), "explicit 0.0.4: EOF is a comment"),
        ];
        for (text, format, want, why) in cases {
            let got = parse_with(text, *format, |_| {}).map(|s| s.samples).map_err(|e| (e.line, e.message));
            match (got, want) {
                (Ok(n), Ok(w)) => assert_eq!(n, *w, "{why}"),
                (Err((line, msg)), Err((wl, wm))) => {
                    assert_eq!(line, *wl, "{why}");
                    assert!(msg.contains(wm), "{why}: {msg}");
                }
                (got, _) => panic!("{why}: {got:?}"),
            }
        }
    }

    #[test]
    fn timestamps_follow_the_format() {
        let cases: &[(&str, Option<i64>, &str)] = &[
            ("x 1 1700000000123\n", Some(1_700_000_000_123), "0.0.4: integer milliseconds"),
            ("x 1 +5\n", Some(5), "0.0.4: explicit plus"),
            ("x 1 1700000000.5\n# EOF\n", Some(1_700_000_000_500), "OpenMetrics: seconds with a fraction"),
            ("x 1 1700000000\n# EOF\n", Some(1_700_000_000_000), "OpenMetrics: whole seconds"),
            ("x 1 1700000000.123\n# EOF\n", Some(1_700_000_000_123), "rounded to the nearest ms, not truncated"),
            ("x 1 -1.5\n# EOF\n", Some(-1500), "negative seconds"),
            ("x 1 1.7e9\n# EOF\n", Some(1_700_000_000_000), "exponent seconds"),
            ("x 1 1700000000.5\r\n# EOF\r\n", Some(1_700_000_000_500), "CRLF OpenMetrics"),
        ];
        for (text, want, why) in cases {
            let s = parse_samples(text, None).unwrap_or_else(|e| panic!("{why}: {e}")).samples.remove(0);
            assert_eq!(s.timestamp_ms, *want, "{why}");
        }
        for (text, why) in [
            ("x 1 NaN\n# EOF\n", "NaN is no timestamp"),
            ("x 1 +Inf\n# EOF\n", "nor is infinity"),
            ("x 1 1e300\n# EOF\n", "nor one beyond i64 milliseconds"),
        ] {
            assert!(parse_samples(text, None).is_err(), "{why}");
        }
    }

    #[test]
    fn format_is_detected_from_the_end_and_the_content_type() {
        let cases: &[(&str, Format, &str)] = &[
            ("x 1\n", Format::Text004, "no EOF"),
            ("x 1\n# EOF\n", Format::OpenMetrics, "EOF last"),
            ("x 1\n# EOF", Format::OpenMetrics, "EOF without a final newline"),
            ("x 1\r\n# EOF\r\n\r\n", Format::OpenMetrics, "CRLF and trailing blank lines"),
            ("# EOF\n", Format::OpenMetrics, "EOF alone"),
            ("x 1\n# EOFX\n", Format::Text004, "not exactly EOF"),
            ("x 1 # EOF\n", Format::Text004, "EOF must be its own line"),
        ];
        for (text, want, why) in cases {
            assert_eq!(Format::Auto.resolve(text), *want, "{why}");
        }
        let types: &[(&str, Format, &str)] = &[
            ("application/openmetrics-text; version=1.0.0; charset=utf-8", Format::OpenMetrics, "OpenMetrics"),
            ("Application/OpenMetrics-Text", Format::OpenMetrics, "case-insensitive"),
            ("text/plain; version=0.0.4; charset=utf-8", Format::Auto, "Synapse"),
            ("text/plain;version=1.0.0", Format::Auto, "MAS's OTel exporter"),
            ("", Format::Auto, "none"),
        ];
        for (ct, want, why) in types {
            assert_eq!(Format::from_content_type(ct), *want, "{why}");
        }
    }

    #[test]
    fn comments_and_metadata_are_read_like_prometheus_client() {
        type Meta<'t> = (&'t str, Option<MetricType>, Option<&'t str>, Option<&'t str>);
        let cases: &[(&str, &[Meta<'_>], &str)] = &[
            (
                "# HELP x Some help.\n# TYPE x gauge\n",
                &[("x", Some(MetricType::Gauge), Some("Some help."), None)],
                "HELP and TYPE",
            ),
            ("# HELP x \n", &[("x", None, Some(""), None)], "Synapse's empty HELP with a trailing blank"),
            ("# HELP x\n", &[("x", None, Some(""), None)], "HELP without text"),
            (
                "# HELP x  two  spaces \n",
                &[("x", None, Some("two  spaces"), None)],
                "leading blanks dropped, inner kept",
            ),
            (
                "# HELP x a\\\\b\\nc\\\"d\n",
                &[("x", None, Some("a\\b\nc\\\"d"), None)],
                "0.0.4 HELP escapes: \\\\ and \\n only",
            ),
            ("# HELP x a\\\"b\n# EOF\n", &[("x", None, Some("a\"b"), None)], "OpenMetrics HELP also unescapes \\\""),
            ("#\tTYPE\tx\tcounter\n", &[("x", Some(MetricType::Counter), None, None)], "tabs separate too"),
            (
                "# TYPE x untyped\n# TYPE y unknown\n",
                &[("x", Some(MetricType::Untyped), None, None), ("y", Some(MetricType::Untyped), None, None)],
                "untyped and unknown",
            ),
            (
                "# TYPE x info\n# TYPE y stateset\n# TYPE z gaugehistogram\n",
                &[
                    ("x", Some(MetricType::Info), None, None),
                    ("y", Some(MetricType::Stateset), None, None),
                    ("z", Some(MetricType::GaugeHistogram), None, None),
                ],
                "OpenMetrics types",
            ),
            (
                "# TYPE x_seconds histogram\n# UNIT x_seconds seconds\n",
                &[("x_seconds", Some(MetricType::Histogram), None, Some("seconds"))],
                "UNIT",
            ),
            ("# UNIT 1x seconds\n# UNIT x\n", &[], "malformed UNIT lines are plain comments"),
            (
                "# TYPE \"my.metric\" gauge\n",
                &[("my.metric", Some(MetricType::Gauge), None, None)],
                "quoted name in TYPE",
            ),
            ("# HELP \"a b\" text\n", &[("a b", None, Some("text"), None)], "quoted name with a blank"),
            (
                "#HELP x y\n# some comment\n#\n# HELP\n",
                &[],
                "no blank after #, other words, a bare # and a bare HELP are comments",
            ),
            (
                "#! HELP x y\n",
                &[("x", None, Some("y"), None)],
                "any first word starting with # (prometheus_client's tokenizer)",
            ),
            (
                "# TYPE x counter\n# TYPE x gauge\n",
                &[("x", Some(MetricType::Gauge), None, None)],
                "a repeated TYPE wins (as prometheus_client)",
            ),
        ];
        for (text, want, why) in cases {
            let families = parse_families(text).unwrap_or_else(|e| panic!("{why}: {e}"));
            let got: Vec<Meta<'_>> =
                families.iter().map(|(k, m)| (k.as_str(), m.kind, m.help.as_deref(), m.unit.as_deref())).collect();
            assert_eq!(got, *want, "{why}");
        }
    }

    #[test]
    fn families_come_from_type_and_suffixes() {
        let cases: &[(&str, &[(&str, &str)], &str)] = &[
            (
                "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 2\nh_count 1\nh_created 1\n",
                &[("h_bucket", "h"), ("h_sum", "h"), ("h_count", "h"), ("h_created", "h")],
                "histogram suffixes",
            ),
            (
                "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 1\n",
                &[("s", "s"), ("s_sum", "s"), ("s_count", "s")],
                "summary: bare name and suffixes",
            ),
            (
                "# TYPE c counter\nc_total 3\nc_created 1\n",
                &[("c_total", "c"), ("c_created", "c")],
                "OpenMetrics-style counter",
            ),
            (
                "# TYPE c_total counter\nc_total 3\n",
                &[("c_total", "c_total")],
                "0.0.4-style counter: the TYPE names the sample",
            ),
            ("# TYPE i info\ni_info 1\n", &[("i_info", "i")], "info"),
            (
                "# TYPE g gaugehistogram\ng_bucket{le=\"1\"} 1\ng_gsum 1\ng_gcount 1\n",
                &[("g_bucket", "g"), ("g_gsum", "g"), ("g_gcount", "g")],
                "gaugehistogram",
            ),
            ("# TYPE g gauge\ng_total 4\n", &[("g_total", "g_total")], "a gauge has no _total suffix"),
            ("# TYPE h histogram\nh_bucketx 1\n", &[("h_bucketx", "h_bucketx")], "a suffix must match exactly"),
            ("loose 5\n", &[("loose", "loose")], "no TYPE: its own family"),
            ("# HELP x help\nx 1\n", &[("x", "x")], "HELP alone opens a family"),
            (
                "# TYPE h histogram\nh_sum 1\nother 2\nh_count 3\n",
                &[("h_sum", "h"), ("other", "other"), ("h_count", "h_count")],
                "another sample ends the family",
            ),
            ("# TYPE h histogram\n# HELP k k\nh_sum 1\n", &[("h_sum", "h_sum")], "so does a HELP for another name"),
            ("# TYPE \"my.h\" histogram\n{\"my.h_sum\"} 1\n", &[("my.h_sum", "my.h")], "quoted names too"),
        ];
        for (text, want, why) in cases {
            let mut got = Vec::new();
            parse(text, |e| {
                if let Event::Sample(s) = e {
                    got.push((s.name, s.family));
                }
            })
            .unwrap_or_else(|e| panic!("{why}: {e}"));
            assert_eq!(got, *want, "{why}");
        }
    }

    #[test]
    fn unescape_undoes_only_the_three_escapes() {
        let cases: &[(&str, &str, bool, &str)] = &[
            ("plain", "plain", true, "nothing to do borrows"),
            ("a\\\\b", "a\\b", false, "backslash"),
            ("a\\\"b", "a\"b", false, "quote"),
            ("a\\nb", "a\nb", false, "newline"),
            ("a\\tb", "a\\tb", false, "unknown escapes stay"),
            ("a\\", "a\\", false, "a trailing backslash stays"),
            ("\\\\n", "\\n", false, "an escaped backslash before n"),
            ("ü\\\"ü", "ü\"ü", false, "multi-byte text around escapes"),
        ];
        for (raw, want, borrowed, why) in cases {
            let got = unescape(raw);
            assert_eq!(got, *want, "{why}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), *borrowed, "{why}");
        }
    }

    #[test]
    fn the_filter_keeps_allowed_families_and_counts_all() {
        let text = "# HELP a A.\n# TYPE a counter\na_total 1\nb 2\n# TYPE c histogram\nc_bucket{le=\"+Inf\"} 3\nc_sum 4\n\
                    # TYPE d histogram\nd_bucket{le=\"+Inf\"} 3\nd_count 3\n# TYPE e gauge\n";
        let filter = FamilyFilter::new(["a", "c_bucket", "d", "e"]);
        let parsed = parse_samples(text, Some(&filter)).unwrap();
        let names: Vec<&str> = parsed.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a_total", "c_bucket", "d_bucket", "d_count"], "a family or an exact sample name");
        assert_eq!(parsed.total, 6, "every sample line is counted");
        let families: Vec<&str> = parsed.families.keys().map(String::as_str).collect();
        assert_eq!(families, ["a", "d", "e"], "metadata only for allowed families, sample-less ones included");
        assert_eq!(parsed.families["a"].help.as_deref(), Some("A."));
        let all = parse_samples(text, None).unwrap();
        assert_eq!((all.samples.len(), all.families.len()), (6, 4), "no filter keeps everything");
        let long = "l".repeat(300);
        let filter = FamilyFilter::new([long.clone(), "b".into()]);
        let text = format!("{long} 1\n{}x 2\nb 3\n", "l".repeat(299));
        let kept: Vec<f64> = parse_samples(&text, Some(&filter)).unwrap().samples.iter().map(|s| s.value).collect();
        assert_eq!(kept, [1.0, 3.0], "names of 256 bytes and more bypass the length prefilter");
    }

    #[test]
    fn duplicate_labels_are_found_in_long_label_sets() {
        let many: Vec<String> = (0..40).map(|i| format!("l{i}=\"v\"")).collect();
        let ok = format!("x{{{}}} 1", many.join(","));
        assert_eq!(one(&ok).unwrap().labels.len(), 40, "40 distinct labels");
        let dup = format!("x{{{},l7=\"w\"}} 1", many.join(","));
        assert!(parse_samples(&dup, None).unwrap_err().message.contains("`l7` appears twice"), "the sorted check");
    }

    #[test]
    fn over_long_lines_are_refused() {
        let text = format!("ok 1\nx{{a=\"{}\"}} 1\n", "v".repeat(MAX_LINE));
        let e = parse_samples(&text, None).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("limit"), "{e}");
    }

    #[test]
    fn the_real_synapse_page_parses_completely() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/synapse-metrics-sample.txt");
        let text = std::fs::read_to_string(path).expect("tests/data holds the real Synapse sample");
        let parsed = parse_samples(&text, None).unwrap();
        assert_eq!(parsed.total, 2439, "the sample has 2,439 sample lines");
        assert_eq!(parsed.families.len(), 207, "207 families, 94 of them without samples");
        let kinds = |k| parsed.families.values().filter(|m| m.kind == Some(k)).count();
        assert_eq!((kinds(MetricType::Counter), kinds(MetricType::Gauge), kinds(MetricType::Histogram)), (105, 81, 21));
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(parse_samples(&crlf, None).unwrap().samples, parsed.samples, "CRLF reads the same");
    }

    // ---- property tests ----

    /// A generated family, rendered to text and parsed back.
    #[derive(Debug, Clone)]
    struct GenFamily {
        name: String,
        quoted: bool,
        kind: MetricType,
        help: Option<String>,
        samples: Vec<GenSample>,
    }

    #[derive(Debug, Clone)]
    struct GenSample {
        suffix: &'static str,
        labels: Vec<(String, String)>,
        value: f64,
        timestamp_ms: Option<i64>,
        value_style: u8,
        blanks: u8,
    }

    fn escape(s: &str) -> String {
        s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
    }

    fn render_value(v: f64, style: u8) -> String {
        if v.is_nan() {
            return ["NaN", "nan"][usize::from(style % 2)].into();
        }
        if v.is_infinite() {
            let pos = ["+Inf", "Inf", "+inf", "inf"];
            let neg = ["-Inf", "-inf"];
            return if v > 0.0 { pos[usize::from(style % 4)] } else { neg[usize::from(style % 2)] }.into();
        }
        if style.is_multiple_of(3) && v.fract() == 0.0 && v.abs() < 1e15 && v.is_sign_positive() {
            return format!("{}", v as i64);
        }
        format!("{v:?}")
    }

    fn kinds() -> impl Strategy<Value = MetricType> {
        prop_oneof![
            Just(MetricType::Counter),
            Just(MetricType::Gauge),
            Just(MetricType::Histogram),
            Just(MetricType::Summary),
            Just(MetricType::Untyped),
            Just(MetricType::Info),
            Just(MetricType::GaugeHistogram),
        ]
    }

    fn label_name() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "[a-zA-Z][a-zA-Z0-9_]{0,6}",
            1 => "_[a-zA-Z0-9][a-zA-Z0-9_]{0,4}",
            1 => "[a-z]{1,3}[.\\-/ ][a-z]{1,3}",
        ]
    }

    fn nasty_value() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-z0-9._:/-]{0,12}",
            3 => "[\"\\\\\n{},=# \t}a-zé✓]{0,10}",
            1 => any::<String>(),
        ]
    }

    fn gen_sample() -> impl Strategy<Value = GenSample> {
        (
            proptest::collection::vec((label_name(), nasty_value()), 0..4),
            prop_oneof![4 => any::<f64>(), 1 => Just(f64::NAN), 1 => Just(f64::INFINITY), 1 => Just(f64::NEG_INFINITY), 2 => (-1000i32..1000).prop_map(f64::from)],
            proptest::option::of(any::<i64>()),
            any::<u8>(),
            any::<u8>(),
        )
            .prop_map(|(mut labels, value, timestamp_ms, value_style, blanks)| {
                let mut seen = HashSet::new();
                labels.retain(|(k, _)| seen.insert(k.clone()));
                GenSample { suffix: "", labels, value, timestamp_ms, value_style, blanks }
            })
    }

    fn gen_family() -> impl Strategy<Value = GenFamily> {
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            prop_oneof![9 => Just(false), 1 => Just(true)],
            kinds(),
            proptest::option::of(nasty_value()),
            proptest::collection::vec((gen_sample(), any::<prop::sample::Index>()), 0..5),
        )
            .prop_map(|(name, quoted, kind, help, samples)| {
                let name = if quoted { format!("{name}.dotted \"q\"") } else { name };
                let all = ["", "_total", "_created", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_info"];
                let suffixes: Vec<&'static str> =
                    all.into_iter().filter(|s| s.is_empty() || kind.allows_suffix(s)).collect();
                let samples = samples
                    .into_iter()
                    .map(|(mut s, pick)| {
                        s.suffix = suffixes[pick.index(suffixes.len())];
                        s
                    })
                    .collect();
                GenFamily { name, quoted, kind, help, samples }
            })
    }

    fn blank(style: u8) -> &'static str {
        [" ", "\t", "  ", " \t"][usize::from(style % 4)]
    }

    fn render(families: &[GenFamily], crlf: bool, openmetrics: bool) -> String {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        for f in families {
            let name = if f.quoted { format!("\"{}\"", escape(&f.name)) } else { f.name.clone() };
            if let Some(help) = &f.help {
                out += &format!("# HELP {name} {}{nl}", help.replace('\\', "\\\\").replace('\n', "\\n"));
            }
            out += &format!("# TYPE {name} {}{nl}", f.kind.as_str());
            out += &format!("# just a comment{nl}{nl}");
            for s in &f.samples {
                let b = blank(s.blanks);
                let mut labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| {
                        let k = if k.contains(['.', '-', '/', ' ']) { format!("\"{k}\"") } else { k.clone() };
                        format!("{k}=\"{}\"", escape(v))
                    })
                    .collect();
                let sample_name = format!("{}{}", f.name, s.suffix);
                let head = if f.quoted {
                    labels.insert(0, format!("\"{}\"", escape(&sample_name)));
                    String::new()
                } else {
                    sample_name
                };
                let trailing = if s.blanks & 0x10 != 0 && !labels.is_empty() { "," } else { "" };
                let braces = if labels.is_empty() && !f.quoted && s.blanks & 0x20 == 0 {
                    String::new()
                } else {
                    format!("{{{}{trailing}}}", labels.join(if s.blanks & 0x40 != 0 { ", " } else { "," }))
                };
                out += &format!("{head}{braces}{b}{}", render_value(s.value, s.value_style));
                if let Some(ts) = s.timestamp_ms {
                    if openmetrics {
                        let ts = ts / 1000 % 100_000_000_000;
                        out += &format!("{b}{}.{:03}", ts / 1000, (ts % 1000).abs());
                    } else {
                        out += &format!("{b}{ts}");
                    }
                }
                out += nl;
            }
        }
        if openmetrics {
            out += &format!("# EOF{nl}");
        }
        out
    }

    fn expected_ts(ts: Option<i64>, openmetrics: bool) -> Option<i64> {
        ts.map(|ts| if openmetrics { ts / 1000 % 100_000_000_000 } else { ts })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn rendered_families_parse_back(
            families in proptest::collection::vec(gen_family(), 0..6),
            crlf in any::<bool>(),
            openmetrics in any::<bool>(),
        ) {
            let text = render(&families, crlf, openmetrics);
            let parsed = parse_samples(&text, None).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            let want: Vec<(String, &GenSample)> =
                families.iter().flat_map(|f| f.samples.iter().map(move |s| (format!("{}{}", f.name, s.suffix), s))).collect();
            prop_assert_eq!(parsed.samples.len(), want.len());
            for (got, (name, s)) in parsed.samples.iter().zip(&want) {
                prop_assert_eq!(&got.name, name);
                prop_assert_eq!(&got.labels, &s.labels);
                prop_assert!(same_value(got.value, s.value), "{} vs {}", got.value, s.value);
                prop_assert_eq!(got.timestamp_ms, expected_ts(s.timestamp_ms, openmetrics));
            }
            // Families: every sample belongs to the family whose TYPE precedes it.
            let mut fams = Vec::new();
            parse(&text, |e| if let Event::Sample(s) = e { fams.push(unescape(s.family).into_owned()) }).unwrap();
            let want_fams: Vec<&String> = families.iter().flat_map(|f| f.samples.iter().map(move |_| &f.name)).collect();
            prop_assert_eq!(fams.iter().collect::<Vec<_>>(), want_fams);
            // Metadata.
            let meta = parse_families(&text).unwrap();
            for f in &families {
                prop_assert!(meta.contains_key(&f.name), "{} missing", f.name);
            }
        }

        #[test]
        fn fast_decimal_matches_std(
            int in "[0-9]{0,20}", frac in proptest::option::of("[0-9]{0,20}"),
            exp in proptest::option::of(-30i32..30), sign in "[-+]?",
        ) {
            let mut s = format!("{sign}{int}");
            if let Some(f) = frac { s += "."; s += &f; }
            if let Some(e) = exp { s += &format!("e{e}"); }
            let std: Option<f64> = s.parse().ok();
            let ours = parse_value(&s);
            prop_assert_eq!(ours.map(f64::to_bits), std.map(f64::to_bits), "{}", s);
        }

        #[test]
        fn swar_scans_match_byte_loops(
            bytes in proptest::collection::vec(prop_oneof![
                4 => prop::sample::select(b"aZz09_\"\\=,{} \x7f\x80\xff`@[".to_vec()),
                1 => any::<u8>(),
            ], 0..48),
            from in 0usize..48,
        ) {
            let from = from.min(bytes.len());
            let label_end = (from..bytes.len()).find(|&j| !is(bytes[j], LABEL_CHAR)).unwrap_or(bytes.len());
            prop_assert_eq!(skip_label_chars(&bytes, from), label_end);
            let mut j = from;
            let quote = loop {
                match bytes.get(j) {
                    None => break None,
                    Some(b'"') => break Some(j),
                    Some(b'\\') => j += 2,
                    Some(_) => j += 1,
                }
            };
            prop_assert_eq!(quoted_end(&bytes, from), quote);
        }

        #[test]
        fn every_f64_round_trips(v in any::<f64>()) {
            let s = format!("{v:?}");
            let back = parse_value(&s).unwrap();
            prop_assert!(same_value(back, v), "{} -> {}", s, back);
        }

        #[test]
        fn garbage_never_panics(text in "[a-z_{}\"=,#\\\\ \t\r\n0-9.+\\-EOFHELPTYPE]{0,200}") {
            match parse(&text, |_| {}) {
                Ok(stats) => prop_assert!(stats.lines <= text.len() + 1),
                Err(e) => prop_assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{e}"),
            }
        }

        #[test]
        fn arbitrary_unicode_never_panics(text in any::<String>()) {
            let _ = parse(&text, |_| {});
            let _ = parse_with(&text, Format::OpenMetrics, |_| {});
        }
    }
}
