//! Secrets out of everything mxwarden prints. The config loader collects every secret value
//! of a file (tokens, passwords, HMAC keys, DSNs and their passwords, webhook URLs, header
//! values, every `${VAR}` value) into a [`Redactor`]; config errors, `config show`, the
//! refused-reload notice and every log line pass through it, so a secret that slipped into a
//! message anyway comes out as [`REDACTED`].
//!
//! Short secrets: values shorter than [`MIN_SECRET_LEN`] characters are not searched for in
//! free text. Replacing every `ab` or `on` in every message would make the messages
//! unreadable and hide nothing worth hiding (a two-letter password is not a secret from
//! anyone). The config loader still masks a short secret where it stands in an error's
//! source line, since it knows its position there.
//!
//! A leaf: it imports nothing else of the crate.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};

/// The placeholder printed instead of a secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// Secrets shorter than this many characters are not searched for in free text (see the
/// module documentation).
pub(crate) const MIN_SECRET_LEN: usize = 4;

/// A set of secret strings, and the one operation on text it exists for: [`Redactor::redact`].
/// Cheap to clone. Its `Debug` shows how many secrets it holds, never one of them.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a whole DSN is replaced before its password; no duplicates.
    secrets: Arc<[String]>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Whether there is nothing to hide.
    pub(crate) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// A redactor for `secrets`. Each one is also searched for trimmed and as Rust's `{:?}`
    /// (and JSON) would escape it; values shorter than [`MIN_SECRET_LEN`] are left out.
    pub(crate) fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let mut all: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            for plain in [secret, secret.trim()] {
                let escaped = format!("{plain:?}");
                for variant in [plain, &escaped[1..escaped.len() - 1]] {
                    if variant.chars().count() >= MIN_SECRET_LEN {
                        all.push(variant.to_string());
                    }
                }
            }
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Self { secrets: all.into() }
    }

    /// Both sets in one.
    pub(crate) fn union(&self, other: &Redactor) -> Redactor {
        Redactor::new(self.secrets.iter().chain(other.secrets.iter()))
    }

    /// Where secrets occur in `text`: sorted byte ranges, overlapping ones merged.
    pub(crate) fn find(&self, text: &str) -> Vec<Range<usize>> {
        let mut found: Vec<Range<usize>> = Vec::new();
        for secret in self.secrets.iter() {
            found.extend(text.match_indices(secret.as_str()).map(|(at, s)| at..at + s.len()));
        }
        merge(found)
    }

    /// `text` with every secret replaced by [`REDACTED`]; borrowed when there was none.
    pub(crate) fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let found = self.find(text);
        if found.is_empty() { Cow::Borrowed(text) } else { Cow::Owned(mask(text, &found)) }
    }
}

/// Sorts `ranges` and merges those that overlap or touch.
pub(crate) fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// `text` with each of `ranges` (sorted, disjoint byte ranges, as [`merge`] returns them)
/// replaced by [`REDACTED`]. A range that does not fall on character boundaries is widened
/// to them.
pub(crate) fn mask(text: &str, ranges: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        let start = floor_boundary(text, r.start.max(at));
        let end = ceil_boundary(text, r.end.max(start));
        out.push_str(&text[at..start.max(at)]);
        out.push_str(REDACTED);
        at = end.max(at);
    }
    out.push_str(&text[at.min(text.len())..]);
    out
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Request headers whose values are shown: standard content-negotiation and caching headers
/// that carry no credentials. Every other header's value is a secret (`X-Auth`, `X-Api-Key`,
/// `Cookie`, anything a vendor invents), so a new credential header is hidden by default.
pub(crate) const HARMLESS_HEADERS: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "content-encoding",
    "content-language",
    "content-type",
    "host",
    "if-modified-since",
    "if-none-match",
    "pragma",
    "user-agent",
];

/// Whether the value of the header `name` may be shown (see [`HARMLESS_HEADERS`]).
pub(crate) fn is_harmless_header(name: &str) -> bool {
    HARMLESS_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name.trim()))
}

/// A redactor that grows as configs are loaded, shared by everything that writes for the
/// whole life of the process (the log writer). Secrets are only added, never dropped: a
/// token rotated out by a reload is still not printed.
#[derive(Clone, Default, Debug)]
pub struct Shared(Arc<RwLock<Redactor>>);

impl Shared {
    /// Adds `more` to the set.
    pub(crate) fn add(&self, more: &Redactor) {
        if more.is_empty() {
            return;
        }
        let mut current = self.0.write().unwrap_or_else(PoisonError::into_inner);
        *current = current.union(more);
    }

    /// The set as it is now.
    pub(crate) fn get(&self) -> Redactor {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A `tracing` writer to stderr that passes each log line through a [`Shared`] redactor.
/// One writer is made per event and writes the whole line when dropped, so a secret is
/// never split between two writes.
#[derive(Clone, Debug)]
pub(crate) struct LogWriter(pub Shared);

/// One log line being written (see [`LogWriter`]).
pub(crate) struct LogLine {
    redactor: Redactor,
    buffer: Vec<u8>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine { redactor: self.0.get(), buffer: Vec::new() }
    }
}

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let clean = self.redactor.redact(&text);
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), clean.as_bytes());
    }
}

/// `url` as output may show it: scheme, host and port only — the path, query, fragment and
/// credentials (where a webhook or heartbeat URL carries its secret) left out.
pub(crate) fn origin_only(url: &url::Url) -> url::Url {
    let mut shown = url.clone();
    shown.set_path("/");
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_wherever_they_stand() {
        let r = Redactor::new(["s3cr3t-token", "postgresql://u:pw-1234@db/x", "pw-1234", "ab"]);
        let cases = [
            ("token s3cr3t-token here", "token <redacted> here", "in the middle of a sentence"),
            ("xs3cr3t-tokenx", "x<redacted>x", "inside a longer word"),
            ("postgresql://u:pw-1234@db/x", "<redacted>", "a whole DSN before its password"),
            ("password pw-1234", "password <redacted>", "the password alone"),
            ("s3cr3t-tokens3cr3t-token", "<redacted>", "adjacent occurrences merge"),
            ("ab cd about", "ab cd about", "a secret under four characters is left alone"),
            ("nothing here", "nothing here", "no secret, no change"),
        ];
        for (text, want, why) in cases {
            assert_eq!(r.redact(text), want, "{why}");
        }
        assert!(matches!(r.redact("nothing"), Cow::Borrowed(_)), "no copy when nothing is hidden");
    }

    #[test]
    fn escaped_and_padded_forms_are_secrets_too() {
        let r = Redactor::new([" quo\"te\\d "]);
        assert_eq!(r.redact(r#"a "quo\"te\\d" b"#), r#"a "<redacted>" b"#, "as {{:?}} and JSON write it");
        assert_eq!(r.redact("x quo\"te\\d y"), "x<redacted>y", "with its padding");
        assert_eq!(r.redact("(quo\"te\\d)"), "(<redacted>)", "trimmed");
    }

    #[test]
    fn masks_respect_character_boundaries_and_overlaps() {
        let inside_e = vec![1..2, 9..9];
        assert_eq!(mask("aé b", &merge(inside_e)), "a<redacted> b", "widened to the whole é; empty ranges dropped");
        assert_eq!(merge(vec![5..7, 0..2, 1..3, 3..4]), vec![0..4, 5..7]);
        assert_eq!(mask("abc", &[]), "abc");
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let r = Redactor::new(["hunter22"]);
        assert_eq!(format!("{r:?}"), "Redactor(1 secrets)");
        assert!(!format!("{:?}", Shared::default()).contains("hunter22"));
    }

    #[test]
    fn only_known_harmless_headers_are_shown() {
        let cases = [
            ("Accept", true, "content negotiation"),
            ("user-agent", true, "case does not matter"),
            ("Content-Type", true, "a body's type"),
            ("X-Auth", false, "a credential whose name has no telltale word"),
            ("Authorization", false, "the obvious one"),
            ("X-Team", false, "unknown headers are hidden by default"),
            ("Cookie", false, "sessions"),
        ];
        for (name, want, why) in cases {
            assert_eq!(is_harmless_header(name), want, "{name}: {why}");
        }
    }

    #[test]
    fn the_shared_set_only_grows() {
        let shared = Shared::default();
        shared.add(&Redactor::new(["first-secret"]));
        shared.add(&Redactor::new(["second-secret"]));
        assert_eq!(shared.get().redact("first-secret second-secret"), "<redacted> <redacted>");
    }
}
