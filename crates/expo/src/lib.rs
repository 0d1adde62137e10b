//! Our own Prometheus exposition parser: text format 0.0.4 (Synapse, and MAS's OTel exporter)
//! and OpenMetrics text, zero-copy over the body. The scrape probe and `mxwarden scrape` feed it
//! a fetched page; rules read what it keeps.
//!
//! - [`parse`] / [`parse_with`] hand borrowed [`Event`]s to a callback: every sample, `# HELP`,
//!   `# TYPE` and `# UNIT`. Nothing is allocated per line (one reused label buffer per parse);
//!   label values arrive still escaped, and [`unescape`] costs only when a value is used.
//! - [`parse_until`] is the same, but the callback may stop the parse early.
//! - [`scan_samples`] hands over only the samples a [`FamilyFilter`] allows, and stops with
//!   [`ScanError::OverLimit`] at the first one over a limit: a caller that owns what it is
//!   handed owns at most `limit` samples, however long the page. The scrape probe builds its
//!   samples this way, and `mxwarden scrape` streams its output from it.
//! - [`parse_samples`] builds owned [`ParsedSample`]s for the families a [`FamilyFilter`]
//!   allows (all without one); [`parse_samples_limited`] the same with a limit.
//! - [`parse_families`] returns every family's TYPE, HELP and UNIT.
//!
//! Malformed input gives an [`ExpoError`] naming the 1-based line and what was expected; the
//! whole page is rejected, as Prometheus rejects a whole scrape. Nothing panics, every loop
//! advances, and a line longer than [`MAX_LINE`] is an error. An error's message quotes the
//! page only in printable form: control characters are escaped (`\n`, `\x1b`) and a
//! message is at most [`MAX_MESSAGE`] characters, so it is safe on a terminal or in a page.
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
//! # Strictness, against Python's `prometheus_client` 0.26 (`tests/it/expo_oracle.rs`)
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
use std::ops::ControlFlow;

/// Longest line accepted: a defence against garbage, far above any real exposition line.
pub const MAX_LINE: usize = 1 << 20;

/// Longest error message, in characters: what the page contributes to one is cut to fit.
pub const MAX_MESSAGE: usize = 300;

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
    /// Sample lines (up to where the parse stopped, when it was stopped).
    pub samples: usize,
    /// Lines read; when the parse was stopped, the line it stopped at.
    pub lines: usize,
    /// The format the page was read as ([`Format::Auto`] resolved).
    pub format: Format,
    /// Whether the callback stopped the parse before the end of the page ([`parse_until`]).
    pub stopped: bool,
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
    parse_until(text, format, |event| {
        on(event);
        ControlFlow::Continue(())
    })
}

/// Parses `text` in the given format, calling `on` for every sample, HELP, TYPE and UNIT,
/// until `on` returns [`ControlFlow::Break`]: then the rest of the page is not read (nor
/// checked) and [`ParseStats::stopped`] is set.
pub fn parse_until<'a>(
    text: &'a str,
    format: Format,
    mut on: impl FnMut(Event<'_, 'a>) -> ControlFlow<()>,
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
        let err = |message: String| ExpoError { line: line_no, message: printable_message(&message) };
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
            } else if parser.comment(line, &mut on).map_err(err)?.is_break() {
                return Ok(ParseStats { samples, lines: line_no, format, stopped: true });
            }
            continue;
        }
        let sample = parser.sample(line).map_err(err)?;
        samples += 1;
        if on(Event::Sample(sample)).is_break() {
            return Ok(ParseStats { samples, lines: line_no, format, stopped: true });
        }
    }
    if parser.openmetrics && !eof {
        return Err(ExpoError { line: line_no, message: "an OpenMetrics page must end with `# EOF`".into() });
    }
    Ok(ParseStats { samples, lines: line_no, format, stopped: false })
}

/// `message` safe to print: control characters (and the Unicode controls that reorder text)
/// escaped, at most [`MAX_MESSAGE`] characters.
fn printable_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE + 8));
    for (n, c) in message.chars().enumerate() {
        if n == MAX_MESSAGE {
            out.push('…');
            break;
        }
        push_printable(&mut out, c);
    }
    out
}

/// Whether `c` must not reach a terminal or a page raw: the C0 and C1 controls, DEL, the
/// Unicode line and paragraph separators and the bidirectional formatting characters (the same
/// set as mxwarden's `text::is_unsafe`; this crate stands alone, so it has its own copy).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}')
        || matches!(c, '\u{2066}'..='\u{2069}')
}

/// Appends `c`, written out as an escape when it is unsafe ([`is_unsafe`]): `\n`, `\r`, `\t`,
/// `\0`, `\x1b` for the other C0 controls and DEL, `\u{…}` for the rest.
fn push_printable(out: &mut String, c: char) {
    use std::fmt::Write;
    match c {
        c if !is_unsafe(c) => out.push(c),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
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
    /// Returns what `on` answered to the event it was given (Continue when none).
    fn comment(
        &mut self,
        line: &'a str,
        on: &mut impl FnMut(Event<'_, 'a>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, String> {
        const GO_ON: Result<ControlFlow<()>, String> = Ok(ControlFlow::Continue(()));
        let (parts, n) = split_comment(line);
        if n < 2 {
            return GO_ON;
        }
        let keyword = parts[1];
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            return GO_ON;
        }
        if n == 2 {
            return match keyword {
                "TYPE" => Err("`# TYPE` needs a metric name and a type".into()),
                // `prometheus_client` accepts a bare `# HELP` and ends the current family.
                "HELP" => {
                    self.current = None;
                    GO_ON
                }
                _ => GO_ON,
            };
        }
        if keyword == "UNIT" {
            // A comment to 0.0.4 parsers; reported only when well-formed, never an error.
            if n == 4
                && let Ok(family) = metric_name_token(parts[2])
            {
                return Ok(on(Event::Unit { family, unit: parts[3] }));
            }
            return GO_ON;
        }
        let family = metric_name_token(parts[2]).map_err(|m| format!("`# {keyword}`: {m}"))?;
        let plain = !parts[2].starts_with('"');
        if keyword == "HELP" {
            if self.current.is_none_or(|c| c.name != family) {
                self.current = Some(Current { name: family, kind: MetricType::Untyped, plain });
            }
            return Ok(on(Event::Help { family, text: if n == 4 { parts[3] } else { "" } }));
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
        Ok(on(Event::Type { family, kind }))
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

/// Why [`scan_samples`] or [`parse_samples_limited`] did not read a page to the end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The page is malformed.
    #[error(transparent)]
    Malformed(#[from] ExpoError),
    /// The page has more samples to keep than the limit: the parse stopped at the first
    /// sample over it, and what was kept so far should be dropped.
    #[error("line {line}: more than {limit} samples to keep; the page was not read further")]
    OverLimit {
        /// The limit.
        limit: usize,
        /// The line of the first sample over it.
        line: usize,
    },
}

/// Counts from a [`scan_samples`] that read the whole page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Sample lines on the page, kept or not.
    pub samples: usize,
    /// Samples handed to the callback.
    pub kept: usize,
    /// The format the page was read as ([`Format::Auto`] resolved).
    pub format: Format,
}

/// Parses a page ([`Format::Auto`]) and calls `keep` with every sample `filter` allows (all
/// without one), at most `limit` times: the first allowed sample over `limit` stops the parse
/// with [`ScanError::OverLimit`]. Nothing is allocated per sample, so a caller that owns only
/// what it is handed owns at most `limit` samples. A sample's labels and name are still
/// escaped: see [`unescape`].
pub fn scan_samples<'a>(
    text: &'a str,
    filter: Option<&FamilyFilter>,
    limit: usize,
    mut keep: impl FnMut(&SampleRef<'_, 'a>),
) -> Result<ScanStats, ScanError> {
    let format = Format::Auto.resolve(text);
    let mut kept = 0;
    let mut choose = Chooser::new(filter);
    let stats = parse_until(text, format, |event| {
        if let Event::Sample(s) = event
            && choose.keeps(&s)
        {
            if kept == limit {
                return ControlFlow::Break(());
            }
            kept += 1;
            keep(&s);
        }
        ControlFlow::Continue(())
    })?;
    if stats.stopped {
        return Err(ScanError::OverLimit { limit, line: stats.lines });
    }
    Ok(ScanStats { samples: stats.samples, kept, format })
}

/// Decides which samples a filter keeps. A family's samples share its name's slice (from the
/// TYPE line): decide once per family, then per sample name only when the family is not
/// listed (mostly refused by length alone).
struct Chooser<'f, 'a> {
    filter: Option<&'f FamilyFilter>,
    family: (&'a str, bool),
}

impl<'f, 'a> Chooser<'f, 'a> {
    fn new(filter: Option<&'f FamilyFilter>) -> Self {
        Self { filter, family: ("", false) }
    }

    #[inline]
    fn keeps(&mut self, s: &SampleRef<'_, 'a>) -> bool {
        match self.filter {
            None => true,
            Some(f) => {
                if !std::ptr::eq(s.family, self.family.0) {
                    self.family = (s.family, f.allows_name(s.family));
                }
                self.family.1 || f.allows_name(s.name)
            }
        }
    }
}

/// Parses a page ([`Format::Auto`]) and keeps the samples `filter` allows (all without one).
/// The only allocations are the kept samples' own strings and the kept families' metadata.
pub fn parse_samples(text: &str, filter: Option<&FamilyFilter>) -> Result<Parsed, ExpoError> {
    parse_samples_limited(text, filter, usize::MAX).map_err(|e| match e {
        ScanError::Malformed(e) => e,
        // Unreachable: a page has fewer than usize::MAX lines. Said in words all the same.
        ScanError::OverLimit { limit, line } => {
            ExpoError { line, message: format!("more than {limit} samples to keep") }
        }
    })
}

/// [`parse_samples`] keeping at most `limit` samples: the first allowed sample over it stops
/// the parse with [`ScanError::OverLimit`], so at most `limit` samples are ever owned.
pub fn parse_samples_limited(text: &str, filter: Option<&FamilyFilter>, limit: usize) -> Result<Parsed, ScanError> {
    let mut out = Parsed::default();
    let mut choose = Chooser::new(filter);
    let format = Format::Auto.resolve(text);
    let stats = parse_until(text, format, |event| {
        match event {
            Event::Sample(s) => {
                if choose.keeps(&s) {
                    if out.samples.len() == limit {
                        return ControlFlow::Break(());
                    }
                    out.samples.push(ParsedSample::from(&s));
                }
            }
            meta => {
                let family = match meta {
                    Event::Help { family, .. } | Event::Type { family, .. } | Event::Unit { family, .. } => family,
                    Event::Sample(_) => return ControlFlow::Continue(()),
                };
                if filter.is_none_or(|f| f.allows_name(family)) {
                    record_meta(&mut out.families, meta, format);
                }
            }
        }
        ControlFlow::Continue(())
    })?;
    if stats.stopped {
        return Err(ScanError::OverLimit { limit, line: stats.lines });
    }
    out.total = stats.samples;
    Ok(out)
}

impl From<&SampleRef<'_, '_>> for ParsedSample {
    /// Owns and unescapes a borrowed sample.
    fn from(s: &SampleRef<'_, '_>) -> Self {
        ParsedSample {
            name: unescape(s.name).into_owned(),
            labels: s.labels.iter().map(|l| (unescape(l.name).into_owned(), unescape(l.value).into_owned())).collect(),
            value: s.value,
            timestamp_ms: s.timestamp_ms,
        }
    }
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
mod tests;
