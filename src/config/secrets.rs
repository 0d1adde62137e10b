//! Which values of a config file are secrets, found before the file is known to be valid: a
//! broken file is exactly when its lines get printed. `config::from_source` calls [`collect`]
//! first, cleans every diagnostic with [`Secrets::clean`], and gives the valid config the
//! resulting [`Redactor`] for `config show`, the daemon's notices and its logs.
//!
//! Four passes, each covering what the others cannot:
//! - the YAML events (as far as the text parses): every value under a secret key
//!   ([`is_secret_key`]: the schema's secret fields by name, `url` of a webhook, header values
//!   unless harmless), at any depth and through aliases, collected and its position masked; a
//!   key that looks like a misspelt secret key ([`looks_secret`]) gets its value masked too;
//! - the text line by line, for lines the parser never reached (a syntax error): `key: value`
//!   of a secret key, in block and flow style;
//! - the environment: the value of every `${VAR}` the file uses (and its `:-` default);
//! - secrets embedded anywhere: a URL's password, a conninfo `password=`, an age private key.
//!
//! Secrets read from `*_file` keys are added by `build` once it has read them.

use super::error::Diagnostic;
use crate::redact::{self, Redactor};
use granit_parser::{Event, Parser};
use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// Keys whose value is a secret wherever they stand: the name of every `SecretString` field
/// of the schema (`schema.rs`; a test keeps the two in step).
pub(crate) const SECRET_KEYS: &[&str] = &[
    "access_token",
    "admin_token",
    "api_key",
    "api_token",
    "bearer_token",
    "dsn",
    "hmac_secret",
    "password",
    "secret_access_key",
];

/// Keys whose `url` is a secret: a webhook or heartbeat URL carries its credential in the path.
pub(crate) const SECRET_URL_PARENTS: &[&str] = &["webhook", "heartbeat"];

/// Keys holding request headers: every value is a secret unless the header is harmless
/// ([`redact::is_harmless_header`]).
pub(crate) const HEADER_MAPS: &[&str] = &["headers"];

/// Whether the value of `key`, in the mapping that is the value of `parent`, is a secret.
pub(crate) fn is_secret_key(parent: Option<&str>, key: &str) -> bool {
    SECRET_KEYS.contains(&key)
        || (key == "url" && parent.is_some_and(|p| SECRET_URL_PARENTS.contains(&p)))
        || (parent.is_some_and(|p| HEADER_MAPS.contains(&p)) && !redact::is_harmless_header(key))
}

/// Whether `key` is a secret key or probably a misspelt one (`access_tokn`, `pasword`,
/// `X-Auth` under `header:`); such values are masked in error snippets but not collected,
/// since a near miss is a guess.
pub(crate) fn looks_secret(parent: Option<&str>, key: &str) -> bool {
    const WORDS: &[&str] = &["token", "secret", "passw", "apikey", "api_key", "credential", "dsn"];
    // The edit distance is at least the difference in length: most keys are ruled out without
    // computing it (every key of a 10,000-check config is asked, twice).
    let close = |a: &str, b: &str, max: usize| {
        a.chars().count().abs_diff(b.chars().count()) <= max && strsim::levenshtein(a, b) <= max
    };
    let near = |word: &str, names: &[&str]| names.iter().any(|n| close(word, n, 2));
    let lower = key.to_ascii_lowercase();
    if is_secret_key(parent, key) {
        return true;
    }
    if lower.ends_with("_file") {
        return false; // a path to a secret, shown so that a wrong path can be fixed
    }
    WORDS.iter().any(|w| lower.contains(w))
        || SECRET_KEYS.iter().any(|k| k.len() >= 6 && close(&lower, k, 2))
        || (close(&lower, "url", 1) && parent.is_some_and(|p| near(p, SECRET_URL_PARENTS)))
        || (parent.is_some_and(|p| near(p, HEADER_MAPS)) && !redact::is_harmless_header(key))
}

/// What [`collect`] found in one config text.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    /// Secret values, to be replaced wherever they appear.
    values: Vec<String>,
    /// Byte ranges of the source that hold a secret (or what looks like one), whatever its
    /// length; sorted and merged.
    masks: Vec<Range<usize>>,
}

/// Finds the secrets of `source`, with `${VAR}` taken from `env`.
pub(crate) fn collect(source: &str, env: &HashMap<String, String>) -> Secrets {
    let mut found = Secrets::default();
    events(source, &mut found);
    let lines = Lines::new(source);
    for (number, text) in lines.iter() {
        for key in textual_keys(text, lines.parent(number)) {
            if key.secret {
                found.add_written(&text[key.value.clone()]);
            }
        }
    }
    environment(source, env, &mut found);
    embedded(source, &mut found);
    found.masks = redact::merge(std::mem::take(&mut found.masks));
    found
}

impl Secrets {
    /// Adds secrets found elsewhere (files named by `*_file` keys).
    pub(crate) fn add(&mut self, more: impl IntoIterator<Item = String>) {
        self.values.extend(more);
    }

    /// Everything to hide in free text.
    pub(crate) fn redactor(&self) -> Redactor {
        Redactor::new(&self.values)
    }

    /// `d` with its secrets hidden: the message, hint and key redacted, and the snippet's
    /// source line re-rendered with every secret (and every value of a key that looks like a
    /// secret one) masked, the caret still under the same character.
    pub(crate) fn clean(&self, source: &str, redactor: &Redactor, d: Diagnostic) -> Diagnostic {
        let snippet = match (&d.snippet, d.line) {
            (Some(_), Some(line)) => self.snippet(source, redactor, line, d.column.unwrap_or(0)),
            (Some(s), None) => Some(redactor.redact(s).into_owned()),
            (None, _) => None,
        };
        Diagnostic {
            key: redactor.redact(&d.key).into_owned(),
            message: redactor.redact(&d.message).into_owned(),
            hint: d.hint.as_deref().map(|h| redactor.redact(h).into_owned()),
            snippet,
            ..d
        }
    }

    fn snippet(&self, source: &str, redactor: &Redactor, line: u64, column: u64) -> Option<String> {
        let lines = Lines::new(source);
        let number = usize::try_from(line).ok()?;
        let (start, text) = lines.line(number)?;
        let mut ranges: Vec<Range<usize>> = self
            .masks
            .iter()
            .filter(|m| m.start < start + text.len() && m.end > start)
            .map(|m| m.start.saturating_sub(start)..(m.end - start).min(text.len()))
            .collect();
        let parent = lines.parent(number);
        ranges.extend(textual_keys(text, parent.clone()).into_iter().filter(|k| k.masked).map(|k| k.value));
        if let Some(p) = &parent
            && p.secret_block
        {
            ranges.push(content_start(text)..text.len());
        }
        ranges.extend(redactor.find(text));
        let ranges = redact::merge(ranges);
        let masked = redact::mask(text, &ranges);
        let caret = caret_after_masking(text, &ranges, column);
        Some(super::error::render_snippet(&masked, line, caret))
    }

    /// A secret as written in the file: the literal parts around `${…}` references (their
    /// values come from the environment pass), quotes removed.
    fn add_written(&mut self, written: &str) {
        let text = unquote(written.trim());
        if !text.contains("${") {
            if !text.trim().is_empty() {
                self.values.push(text.to_string());
            }
            return;
        }
        for piece in literal_pieces(text) {
            self.values.push(piece.to_string());
        }
    }

    /// A secret scalar of the event pass: its value, its text as written, and its position.
    fn add_scalar(&mut self, source: &str, value: &str, span: Option<Range<usize>>, collect: bool) {
        if only_references(value) {
            return; // `"${TOKEN}"` shows the variable's name, not its value
        }
        if collect {
            self.add_written(value);
            self.add_derived(value);
            if let Some(raw) = span.clone().and_then(|r| source.get(r)) {
                self.add_written(raw);
                for line in raw.lines() {
                    self.add_written(line);
                }
            }
        }
        if let Some(span) = span {
            self.masks.push(span);
        }
    }

    /// Forms of a secret that output may show instead of the text as written: an HTTP URL as
    /// the `url` crate prints it and its path with the query (a webhook's token; a DSN's path
    /// is only its database name), a DSN's password,
    /// a header's credential after its scheme (`Bearer …`).
    fn add_derived(&mut self, value: &str) {
        let value = value.trim();
        if let Ok(url) = url::Url::parse(value)
            && (url.scheme() == "http" || url.scheme() == "https")
        {
            self.values.push(url.to_string());
            let tail = &url[url::Position::BeforePath..];
            if tail != "/" {
                self.values.push(tail.to_string());
            }
        }
        if let Ok(target) = crate::probe::postgres::dsn::PgTarget::parse(value) {
            use secrecy::ExposeSecret;
            self.values.extend(target.password.map(|p| p.expose_secret().to_string()));
        }
        if let Some((scheme, credential)) = value.split_once(' ')
            && ["bearer", "basic", "token", "digest"].contains(&scheme.to_ascii_lowercase().as_str())
        {
            self.values.push(credential.to_string());
        }
    }
}

/// Where the caret (1-based character `column` of `text`) stands once `ranges` (sorted,
/// disjoint byte ranges) are replaced by the placeholder: at the placeholder when it was
/// inside one, shifted by the length differences before it otherwise.
fn caret_after_masking(text: &str, ranges: &[Range<usize>], column: u64) -> u64 {
    if column == 0 {
        return 0;
    }
    let chars = usize::try_from(column - 1).unwrap_or(usize::MAX);
    let byte = text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i);
    let mut shift: isize = 0;
    let mut target = byte;
    for r in ranges {
        if byte >= r.end {
            shift += redact::REDACTED.len() as isize - (r.end - r.start) as isize;
        } else if byte >= r.start {
            target = r.start;
            break;
        }
    }
    let masked = redact::mask(text, ranges);
    let at = usize::try_from(target as isize + shift).unwrap_or(0).min(masked.len());
    let at = (0..=at).rev().find(|i| masked.is_char_boundary(*i)).unwrap_or(0);
    masked[..at].chars().count() as u64 + 1
}

/// One scalar recorded inside an anchored node: value and byte range.
type Recorded = (String, Option<Range<usize>>);

/// An open collection of the event pass.
struct Frame {
    map: bool,
    /// The key whose value is being read (mappings).
    key: Option<String>,
    /// The key this collection is the value of.
    parent: Option<String>,
    /// Everything inside is a secret.
    secret: bool,
    /// Everything inside is masked in snippets.
    masked: bool,
    /// The anchor defined on this collection (0: none).
    anchor: usize,
}

/// The event pass: values under secret keys, positions of values under keys that look secret,
/// and the same for anchored nodes an alias brings under a secret key. Stops where the text
/// stops parsing.
fn events(source: &str, found: &mut Secrets) {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchored: HashMap<usize, Vec<Recorded>> = HashMap::new();
    let mut nested: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut secret_anchors: Vec<(usize, bool)> = Vec::new();
    for item in Parser::new_from_str(source) {
        let Ok((event, span)) = item else { break };
        let range = span.byte_range();
        // What the next node is: its key's parent, and whether it is secret or masked.
        let (is_key, secret, masked, parent) = match stack.last() {
            Some(f) if f.map && f.key.is_none() => (true, f.secret, f.masked, f.parent.clone()),
            Some(f) if f.map => {
                let key = f.key.as_deref().unwrap_or_default();
                let parent = f.parent.as_deref();
                (false, f.secret || is_secret_key(parent, key), f.masked || looks_secret(parent, key), f.key.clone())
            }
            Some(f) => (false, f.secret, f.masked, f.parent.clone()),
            None => (false, false, false, None),
        };
        let open_anchor = stack.iter().rev().find(|f| f.anchor != 0).map(|f| f.anchor);
        match event {
            Event::Scalar(value, _, anchor, _) => {
                let record = (value.to_string(), range.clone());
                if let Some(a) = open_anchor {
                    anchored.entry(a).or_default().push(record.clone());
                }
                if anchor != 0 {
                    anchored.entry(anchor).or_default().push(record);
                    if let Some(a) = open_anchor {
                        nested.entry(a).or_default().push(anchor);
                    }
                }
                if secret || masked {
                    found.add_scalar(source, &value, range, secret);
                }
                match stack.last_mut() {
                    Some(f) if is_key => f.key = Some(value.into_owned()),
                    _ => value_done(&mut stack),
                }
            }
            Event::MappingStart(_, anchor, _) | Event::SequenceStart(_, anchor, _) => {
                if anchor != 0
                    && let Some(a) = open_anchor
                {
                    nested.entry(a).or_default().push(anchor);
                }
                let map = matches!(event, Event::MappingStart(..));
                stack.push(Frame { map, key: None, parent, secret, masked, anchor });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                value_done(&mut stack);
            }
            Event::Alias(anchor) => {
                if let Some(a) = open_anchor {
                    nested.entry(a).or_default().push(anchor);
                }
                if secret || masked {
                    secret_anchors.push((anchor, secret));
                }
                value_done(&mut stack);
            }
            _ => {}
        }
    }
    // Each anchor's scalars once, however many aliases name it (aliases of aliases cannot
    // multiply the work).
    let mut done: HashSet<(usize, bool)> = HashSet::new();
    while let Some((anchor, secret)) = secret_anchors.pop() {
        if !done.insert((anchor, secret)) {
            continue;
        }
        for (value, range) in anchored.get(&anchor).into_iter().flatten() {
            found.add_scalar(source, value, range.clone(), secret);
        }
        secret_anchors.extend(nested.get(&anchor).into_iter().flatten().map(|a| (*a, secret)));
    }
}

/// The innermost collection has read one value: a mapping waits for its next key.
fn value_done(stack: &mut [Frame]) {
    if let Some(f) = stack.last_mut()
        && f.map
    {
        f.key = None;
    }
}

/// The value of every `${VAR}` the file uses, outside comments, and the text a `:-`/`-`
/// default or a `:+`/`+` alternative puts in its place.
fn environment(source: &str, env: &HashMap<String, String>, found: &mut Secrets) {
    for line in source.lines() {
        let code = &line[..super::load::comment_start(line)];
        let mut rest = code;
        while let Some(at) = rest.find('$') {
            let after = &rest[at + 1..];
            if let Some(escaped) = after.strip_prefix('$') {
                rest = escaped;
                continue;
            }
            let Some(inner) = after.strip_prefix('{') else {
                rest = after;
                continue;
            };
            let end = inner.find('}').unwrap_or(inner.len());
            let reference = &inner[..end];
            let name_len =
                reference.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(reference.len());
            let (name, operator) = reference.split_at(name_len);
            if let Some(value) = env.get(name) {
                found.values.push(value.clone());
            }
            let argument = ["-", ":-", "+", ":+"].iter().find_map(|op| operator.strip_prefix(op)).map(str::trim);
            if let Some(text) = argument.filter(|t| !t.is_empty()) {
                found.values.push(text.to_string());
            }
            rest = inner.get(end + 1..).unwrap_or("");
        }
    }
}

/// Secrets that are one wherever they are written: the password of a URL
/// (`scheme://user:password@host`), a conninfo `password=…`, an age private key.
fn embedded(source: &str, found: &mut Secrets) {
    for (at, _) in source.match_indices("://") {
        let rest = &source[at + 3..];
        let authority = &rest[..rest.find(['/', '?', '#', ' ', '"', '\'', '\n', ',', '}']).unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
            && !password.is_empty()
        {
            found.values.push(password.to_string());
            if let Ok(decoded) = percent_decode(password) {
                found.values.push(decoded);
            }
        }
    }
    let lower = source.to_ascii_lowercase();
    for (at, _) in lower.match_indices("password=") {
        let rest = &source[at + "password=".len()..];
        let value = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => rest[1..].split(q).next().unwrap_or(""),
            _ => rest.split([' ', '\n', '"', '\'', '&', ',', '}']).next().unwrap_or(""),
        };
        if !value.is_empty() {
            found.values.push(value.to_string());
        }
    }
    for (at, _) in lower.match_indices("age-secret-key-") {
        let rest = &source[at..];
        let key = &rest[..rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '-').unwrap_or(rest.len())];
        found.values.push(key.to_string());
    }
}

fn percent_decode(text: &str) -> Result<String, ()> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// Whether `text` is nothing but `${…}` references and blanks.
fn only_references(text: &str) -> bool {
    text.contains("${") && literal_pieces(text).is_empty()
}

/// The parts of `text` outside `${…}` references, trimmed, empty ones left out.
fn literal_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        pieces.push(&rest[..at]);
        rest = rest[at..].find('}').map_or("", |end| &rest[at + end + 1..]);
    }
    pieces.push(rest);
    pieces.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn unquote(text: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(q) {
            return inner.strip_suffix(q).unwrap_or(inner);
        }
    }
    text
}

/// The block-style parent of a line: the nearest line above, less indented, whose key has
/// no value on its own line (`headers:`, `webhook:`, `access_token: |`).
#[derive(Debug, Clone)]
struct Parent {
    key: String,
    /// The parent's own value is a secret (a block scalar or list under `access_token:`),
    /// so this whole line is.
    secret_block: bool,
}

/// The source's lines with their byte offsets and block parents.
struct Lines<'a> {
    lines: Vec<(usize, &'a str)>,
    parents: Vec<Option<Parent>>,
}

impl<'a> Lines<'a> {
    fn new(source: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut at = 0;
        for raw in source.split_inclusive('\n') {
            let text = raw.strip_suffix('\n').unwrap_or(raw);
            let text = text.strip_suffix('\r').unwrap_or(text);
            lines.push((at, text));
            at += raw.len();
        }
        // Open keys: (column of the key, key, its parent's key, secret block).
        let mut open: Vec<(usize, String, bool)> = Vec::new();
        let mut parents = Vec::with_capacity(lines.len());
        for (_, text) in &lines {
            let trimmed = text.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                parents.push(open.last().map(|(_, key, secret)| Parent { key: key.clone(), secret_block: *secret }));
                continue;
            }
            let indent = text.len() - trimmed.len();
            while open.last().is_some_and(|(column, ..)| *column >= indent) {
                open.pop();
            }
            let parent = open.last().map(|(_, key, secret)| Parent { key: key.clone(), secret_block: *secret });
            let column = content_start(text);
            if let Some((key, value)) = block_key(&text[column..]) {
                let value = value.trim();
                let value = &value[..super::load::comment_start(value)].trim_end();
                let opens = value.is_empty() || value.starts_with('|') || value.starts_with('>');
                if opens {
                    let inherited = parent.as_ref().is_some_and(|p| p.secret_block);
                    let secret = inherited || looks_secret(parent.as_ref().map(|p| p.key.as_str()), &key);
                    open.push((column, key, secret));
                }
            }
            parents.push(parent);
        }
        Self { lines, parents }
    }

    fn iter(&self) -> impl Iterator<Item = (usize, &'a str)> + '_ {
        self.lines.iter().enumerate().map(|(i, (_, text))| (i + 1, *text))
    }

    /// Line `number` (1-based): its byte offset and text.
    fn line(&self, number: usize) -> Option<(usize, &'a str)> {
        self.lines.get(number.checked_sub(1)?).copied()
    }

    fn parent(&self, number: usize) -> Option<Parent> {
        self.parents.get(number.checked_sub(1)?).cloned().flatten()
    }
}

/// Where a line's content starts: after its indentation and any `- ` sequence markers.
fn content_start(text: &str) -> usize {
    let mut at = text.len() - text.trim_start().len();
    while text[at..].starts_with("- ") || &text[at..] == "-" {
        at += 1;
        at += text[at..].len() - text[at..].trim_start().len();
    }
    at
}

/// `key: value` at the start of `text`: the key (unquoted) and the rest after the colon.
fn block_key(text: &str) -> Option<(String, &str)> {
    let (key, after) = read_key(text)?;
    Some((key, &text[after..]))
}

/// A mapping key at the start of `text`, quoted or plain, and the byte offset just after its
/// colon. A plain key ends at the first `: ` (or a colon at the end).
fn read_key(text: &str) -> Option<(String, usize)> {
    let (key, rest_at) = match text.chars().next()? {
        q @ ('"' | '\'') => {
            let end = text[1..].find(q)? + 1;
            (text[1..end].to_string(), end + 1)
        }
        _ => {
            let bytes = text.as_bytes();
            let mut end = None;
            for (i, b) in bytes.iter().enumerate() {
                match b {
                    b':' if bytes.get(i + 1).is_none_or(|n| *n == b' ' || *n == b'\t') => {
                        end = Some(i);
                        break;
                    }
                    b',' | b'{' | b'}' | b'[' | b']' | b'#' => return None,
                    _ => {}
                }
            }
            let end = end?;
            (text[..end].trim_end().to_string(), end)
        }
    };
    let after = &text[rest_at..];
    let colon = after.len() - after.trim_start().len();
    after[colon..].starts_with(':').then(|| (key, rest_at + colon + 1)).filter(|(k, _)| !k.is_empty())
}

/// A key found on one line by [`textual_keys`]: where its value is, and what it is.
#[derive(Debug)]
struct TextKey {
    /// Byte range of the value on the line (to the end of the line when it does not close).
    value: Range<usize>,
    /// The key is a secret key: collect the value.
    secret: bool,
    /// The key is or looks like a secret key: mask the value.
    masked: bool,
}

/// The keys written on one line, block and flow style, with the parent each has (the block
/// parent, or the key whose `{ … }` it is in) and where its value is. Tolerates broken text:
/// an unclosed quote or bracket runs to the end of the line.
fn textual_keys(text: &str, parent: Option<Parent>) -> Vec<TextKey> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut parents: Vec<Option<String>> = vec![parent.map(|p| p.key)];
    let mut at = content_start(text);
    let mut expect_key = true;
    while at < bytes.len() {
        if expect_key {
            let Some((key, after)) = read_key(&text[at..]) else {
                expect_key = false;
                continue;
            };
            let after = at + after;
            let start = after + (text[after..].len() - text[after..].trim_start().len());
            let current = parents.last().cloned().flatten();
            let secret = is_secret_key(current.as_deref(), &key);
            let masked = looks_secret(current.as_deref(), &key);
            if text[start..].starts_with('{') && !masked {
                parents.push(Some(key));
                at = start + 1;
                at += text[at..].len() - text[at..].trim_start().len();
                continue;
            }
            let end = value_end(text, start, parents.len() > 1);
            let block_indicator = text[start..end].trim_start().starts_with(['|', '>']);
            if (secret || masked) && start < end && !block_indicator {
                let value = start..end;
                found.push(TextKey { value, secret, masked });
            }
            at = end;
            expect_key = false;
            continue;
        }
        match bytes[at] {
            b'{' => {
                parents.push(None);
                expect_key = true;
            }
            b'}' if parents.len() > 1 => {
                parents.pop();
            }
            b',' if parents.len() > 1 => expect_key = true,
            b'"' | b'\'' => {
                at = text[at + 1..].find(bytes[at] as char).map_or(bytes.len(), |i| at + 1 + i);
            }
            b'#' if at == 0 || bytes[at - 1] == b' ' => break,
            _ => {}
        }
        at += 1;
        if expect_key {
            at += text[at..].len() - text[at..].trim_start().len();
        }
    }
    found
}

/// Where the value starting at `start` ends: its closing bracket for `{`/`[`, the closing
/// quote, the next `,` or `}` inside a flow mapping, the end of the line otherwise (without a
/// trailing comment).
fn value_end(text: &str, start: usize, in_flow: bool) -> usize {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'') if i == start || depth > 0 => match text[i + 1..].find(q as char) {
                Some(j) => i += j + 1,
                None => return bytes.len(),
            },
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b',' | b'}' | b']' if depth == 0 && in_flow => return text[..i].trim_end().len().max(start),
            b'#' if depth == 0 && i > start && bytes[i - 1] == b' ' => return text[..i].trim_end().len().max(start),
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn found(source: &str) -> (Secrets, Redactor) {
        let s = collect(source, &HashMap::from([("TOK".to_string(), "env-value-77".to_string())]));
        let r = s.redactor();
        (s, r)
    }

    #[test]
    fn secret_values_are_collected_by_key_at_any_depth() {
        let cases: &[(&str, &str, &str)] = &[
            ("admin_token: top-secret-1\n", "top-secret-1", "a top-level token"),
            ("services:\n  s: { kind: synapse, admin_token: \"quoted-sec\" }\n", "quoted-sec", "flow, quoted"),
            ("a:\n  matrix:\n    access_token: >-\n      folded-secret\n", "folded-secret", "a block scalar"),
            ("x:\n  password: [in-a-list]\n", "in-a-list", "a wrong type holds it all the same"),
            ("hook: { webhook: { url: \"https://h.example/T0/abcd\" } }\n", "https://h.example/T0/abcd", "webhook url"),
            ("hook: { webhook: { url: \"https://h.example/T0/abcd\" } }\n", "/T0/abcd", "and its path"),
            ("h: { headers: { X-Auth: xauth-val } }\n", "xauth-val", "any header not known harmless"),
            ("h: { headers: { Authorization: \"Bearer bear-cred\" } }\n", "bear-cred", "a credential after its scheme"),
            ("t: &t anchored-sec\nadmin_token: *t\n", "anchored-sec", "through an alias"),
            ("dsn: \"host=h password='pg pass'\"\n", "pg pass", "a conninfo password"),
            ("u: postgres://me:url-pass@h/db\n", "url-pass", "a URL's password, wherever it is"),
            ("k: AGE-SECRET-KEY-1QQQQ\n", "AGE-SECRET-KEY-1QQQQ", "an age identity, wherever it is"),
            ("admin_token: \"${TOK}\"\n", "env-value-77", "an interpolated value"),
            ("x: \"${NOT_SET:-fallback-val}\"\n", "fallback-val", "a default used instead"),
            ("admin_token: \"unterminated-sec\n", "unterminated-sec", "a line the parser never reached"),
            ("a: [\nbearer_token: after-break\n", "after-break", "after a syntax error"),
        ];
        for (source, secret, why) in cases {
            let (_, r) = found(source);
            assert_eq!(r.redact(&format!("x {secret} y")), "x <redacted> y", "{why}: {source:?}");
        }
    }

    #[test]
    fn other_values_are_not_secrets() {
        let (_, r) = found(
            "h: { headers: { Accept: text/plain, User-Agent: probe-agent } }\nurl: https://plain.example/path\nadmin_token_file: /run/secret-path\nadmin_token: \"${TOK}\"\n# bearer_token: commented-out\n",
        );
        for shown in ["text/plain", "probe-agent", "https://plain.example/path", "/run/secret-path", "${TOK}"] {
            assert_eq!(r.redact(shown), shown, "{shown} is not a secret");
        }
    }

    #[test]
    fn snippets_mask_secrets_short_or_misspelt_and_keep_the_caret() {
        let env = HashMap::new();
        let cases: &[(&str, u64, u64, &str, &str)] = &[
            (
                "m: { room: 5, access_token: abc }\n",
                1,
                12,
                "1 | m: { room: 5, access_token: <redacted> }\n  |            ^",
                "a short secret is masked where it stands",
            ),
            (
                "m: { access_token: long-secret-value, room: 5 }\n",
                1,
                45,
                "1 | m: { access_token: <redacted>, room: 5 }\n  |                                      ^",
                "the caret moves with the text",
            ),
            (
                "m:\n  access_tokn: misspelt-sec\n",
                2,
                3,
                "2 |   access_tokn: <redacted>\n  |   ^",
                "a near miss of a secret key",
            ),
            (
                "m:\n  headers:\n    X-Auth: \"unterminated\n",
                3,
                13,
                "3 |     X-Auth: <redacted>\n  |             ^",
                "a header value the parser never reached",
            ),
            (
                "m: { headrs: { X-Auth: hdr-value } }\n",
                1,
                6,
                "1 | m: { headrs: { X-Auth: <redacted> } }\n  |      ^",
                "a misspelt headers map",
            ),
            ("access_token:\n  - lst\n", 2, 5, "2 |   - <redacted>\n  |     ^", "a list under a secret key"),
            ("interval: soon\n", 1, 11, "1 | interval: soon\n  |           ^", "other values stay visible"),
        ];
        for (source, line, column, want, why) in cases {
            let s = collect(source, &env);
            let d = Diagnostic::at(Path::new("m.yaml"), source, *line, *column, "k", "bad");
            let clean = s.clean(source, &s.redactor(), d);
            let snippet = clean.snippet.unwrap();
            assert!(snippet.ends_with(want), "{why}:\n{snippet}\nwanted:\n{want}");
        }
    }

    #[test]
    fn aliases_cannot_multiply_the_work() {
        let mut source = String::from("a0: &a0 [s3cr3t-leaf]\n");
        for i in 1..40 {
            source.push_str(&format!("a{i}: &a{i} [*a{j}, *a{j}, *a{j}]\n", j = i - 1));
        }
        source.push_str("admin_token: *a39\n");
        let (_, r) = found(&source);
        assert_eq!(r.redact("s3cr3t-leaf"), "<redacted>");
    }

    /// The fields of every struct in `schema.rs`: struct → (YAML key, type as written).
    fn schema_fields() -> std::collections::BTreeMap<String, Vec<(String, String)>> {
        let mut structs = std::collections::BTreeMap::new();
        let mut current: Option<(String, Vec<(String, String)>)> = None;
        let mut rename: Option<String> = None;
        for line in include_str!("schema.rs").lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("pub struct ").or_else(|| line.strip_prefix("pub(crate) struct ")) {
                if let Some(name) = rest.strip_suffix(" {") {
                    current = Some((name.to_string(), Vec::new()));
                }
                continue;
            }
            let Some((_, fields)) = current.as_mut() else { continue };
            if line == "}" {
                let (name, fields) = current.take().unwrap();
                structs.insert(name, fields);
            } else if line.starts_with("#[serde(") && line.contains("rename = \"") {
                rename = line.split("rename = \"").nth(1).and_then(|r| r.split('"').next()).map(str::to_string);
            } else if let Some(field) = line.strip_prefix("pub ")
                && let Some((name, ty)) = field.split_once(": ")
            {
                let key = rename.take().unwrap_or_else(|| name.to_string());
                fields.push((key, ty.trim_end_matches(',').to_string()));
            }
        }
        structs
    }

    /// Every field reachable from `FileConfig`: (parent key, key, type). A map's entries
    /// have the parent key `<name>`.
    fn schema_paths() -> Vec<(String, String, String)> {
        let structs = schema_fields();
        let mut out = Vec::new();
        let mut todo = vec![("<top>".to_string(), "FileConfig".to_string())];
        let mut seen = HashSet::new();
        while let Some((parent, name)) = todo.pop() {
            if !seen.insert((parent.clone(), name.clone())) {
                continue;
            }
            for (key, ty) in &structs[&name] {
                out.push((parent.clone(), key.clone(), ty.clone()));
                let words: Vec<&str> = ty.split(|c: char| !c.is_alphanumeric() && c != '_').collect();
                for child in words.iter().filter(|w| structs.contains_key(**w)) {
                    let via = if ty.contains("BTreeMap<") { "<name>".to_string() } else { key.clone() };
                    todo.push((via, child.to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn every_secret_field_of_the_schema_is_a_secret_key_and_no_other() {
        let paths = schema_paths();
        assert!(paths.len() > 100, "the schema was read: {} fields", paths.len());
        let mut secret_names = std::collections::BTreeSet::new();
        for (parent, key, ty) in &paths {
            let typed_secret = ty.contains("SecretString");
            assert_eq!(
                is_secret_key(Some(parent), key),
                typed_secret,
                "{parent}.{key}: {ty}: a SecretString field must be in SECRET_KEYS (or SECRET_URL_PARENTS), \
                 and nothing else may be"
            );
            if typed_secret {
                secret_names.insert(key.as_str());
            }
            let lower = key.to_ascii_lowercase();
            let named_secret = ["token", "secret", "password", "dsn", "credential"].iter().any(|w| lower.contains(w));
            if named_secret && !lower.ends_with("_file") {
                assert!(typed_secret, "{parent}.{key} sounds secret: type it SecretString, not {ty}");
            }
            if ty.contains("BTreeMap<String, String>") && key == "headers" {
                assert!(is_secret_key(Some(key), "X-Auth") && !is_secret_key(Some(key), "Accept"), "{parent}.{key}");
            }
        }
        for key in SECRET_KEYS {
            assert!(secret_names.contains(key), "SECRET_KEYS names `{key}`, which is no SecretString field");
        }
        assert!(secret_names.contains("url"), "webhook URLs are typed SecretString");
        let headers = paths.iter().filter(|(_, k, t)| k == "headers" && t.contains("BTreeMap")).count();
        assert_eq!(headers, 4, "http, scrape, webhook and remote_write headers");
    }
}
