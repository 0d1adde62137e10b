//! From YAML text to the typed `FileConfig`: `${VAR}` interpolation from the environment
//! (an unset variable is an error naming it and its line), strict parsing with the key path
//! of every error, and "did you mean" for near-miss keys and values. Pure over its inputs:
//! the caller passes the text and the environment.

use super::error::{ConfigError, Diagnostic};
use super::keypath::key_path_at;
use super::schema::FileConfig;
use crate::units::closest;
use std::collections::HashMap;
use std::path::Path;

/// Parses `source` (the contents of `file`) with `${NAME}` taken from `env`.
///
/// Interpolation follows docker-compose for the braced form: `${NAME}` anywhere in a value,
/// `${NAME:-default}` and friends, `$$` for a literal `$`. A bare `$name` stays as written, so
/// alert templates (`{{ $value }}`, `{{ $labels.x }}`) need no escaping. Values are redacted
/// back to `${NAME}` in every error message.
pub(crate) fn parse(file: &Path, source: &str, env: &HashMap<String, String>) -> Result<FileConfig, ConfigError> {
    let unset = unset_references(source, env);
    if !unset.is_empty() {
        return Err(ConfigError::Invalid(
            unset
                .into_iter()
                .map(|r| {
                    Diagnostic::at(
                        file,
                        source,
                        r.line,
                        r.column,
                        "",
                        format!(
                            "environment variable {} is not set; set it, or write $${{{}}} for a literal `${{{}}}`",
                            r.name, r.name, r.name
                        ),
                    )
                })
                .collect(),
        ));
    }
    let options = serde_saphyr::options! {
        property_syntax: serde_saphyr::PropertySyntax::DockerCompose,
    }
    .with_properties(env.clone());
    let escaped = escape_bare_dollars(source);
    serde_saphyr::from_str_with_options(&escaped, options).map_err(|e| {
        let path = e.location().map_or_else(String::new, |l| key_path_at(&escaped, l.line(), l.column()));
        ConfigError::Invalid(vec![diagnose(file, source, &path, &e)])
    })
}

/// Turns a parser error into a diagnostic with a clean message and a suggestion.
fn diagnose(file: &Path, source: &str, path: &str, error: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
    let message = clean_message(&error.without_snippet().to_string());
    let mut key = path.to_string();
    let suggest =
        |word: &str, expected: &[&str]| closest(word, expected.iter().copied()).map(|k| format!("did you mean `{k}`?"));
    let (text, hint) = match error.without_snippet() {
        serde_saphyr::Error::SerdeUnknownField { field, expected, .. } => {
            // With interpolation on, the parser leaves field names out of its errors (a name
            // could come from the environment); the file has the key as the user wrote it.
            let written = written_key(source, line, column);
            let field = written.as_ref().unwrap_or(field);
            if !key.ends_with(field.as_str()) {
                key = join_key(&key, field);
            }
            (format!("unknown key `{field}`; expected one of: {}", expected.join(", ")), suggest(field, expected))
        }
        serde_saphyr::Error::SerdeUnknownVariant { variant, expected, .. } => {
            (format!("unknown value `{variant}`; expected one of: {}", expected.join(", ")), suggest(variant, expected))
        }
        _ => (message, None),
    };
    Diagnostic::at(file, source, line, column, key, text).with_hint(hint)
}

/// The mapping key written at `line`:`column` (1-based) of `source`, quotes removed.
fn written_key(source: &str, line: u64, column: u64) -> Option<String> {
    let text = source.lines().nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let rest = text.get(usize::try_from(column).ok()?.checked_sub(1)?..)?;
    let key = match rest.chars().next()? {
        quote @ ('"' | '\'') => rest[1..].split(quote).next()?,
        _ => rest.split(':').next()?.trim_end(),
    };
    (!key.is_empty() && !key.contains(['{', '}', ',', '[', ']'])).then(|| key.to_string())
}

fn join_key(parent: &str, child: &str) -> String {
    if parent.is_empty() { child.to_string() } else { format!("{parent}.{child}") }
}

/// Drops the parser's own "error: line N column M:" prefix; we print the location ourselves.
fn clean_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered).trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    match first.strip_prefix("line ") {
        Some(rest) => match rest.find(": ") {
            Some(i) => rest[i + 2..].to_string(),
            None => first.to_string(),
        },
        None => first.to_string(),
    }
}

/// Doubles every bare `$` that starts a name (`$value` → `$$value`), so the interpolator
/// leaves it alone; `${…}` and `$$` are kept as they are.
fn escape_bare_dollars(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len() + 16);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'$' {
            match bytes.get(i + 1) {
                Some(b'$') => {
                    out.push_str("$$");
                    i += 2;
                    continue;
                }
                Some(n) if n.is_ascii_alphabetic() || *n == b'_' => out.push('$'),
                _ => {}
            }
        }
        let len = source[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&source[i..i + len]);
        i += len;
    }
    out
}

/// A `${NAME}` reference with no default whose variable is not set.
#[derive(Debug, PartialEq, Eq)]
struct UnsetReference {
    name: String,
    line: u64,
    column: u64,
}

/// Finds plain references to unset variables, outside comments. References with an
/// operator (`${A:-x}`, `${A?msg}`) are left to the interpolator, which knows their rules.
fn unset_references(source: &str, env: &HashMap<String, String>) -> Vec<UnsetReference> {
    let mut found = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let code = &line[..comment_start(line)];
        let bytes = code.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            match bytes.get(i + 1) {
                Some(b'$') => i += 2,
                Some(b'{') => {
                    let name_len = name_length(&code[i + 2..]);
                    let after = bytes.get(i + 2 + name_len);
                    if name_len > 0 && after == Some(&b'}') {
                        push_if_unset(&mut found, env, &code[i + 2..i + 2 + name_len], index, i);
                    }
                    i += 2 + name_len;
                }
                _ => i += 1,
            }
        }
    }
    found
}

fn push_if_unset(
    found: &mut Vec<UnsetReference>,
    env: &HashMap<String, String>,
    name: &str,
    line_index: usize,
    byte_column: usize,
) {
    if !env.contains_key(name) {
        found.push(UnsetReference {
            name: name.to_string(),
            line: line_index as u64 + 1,
            column: byte_column as u64 + 1,
        });
    }
}

/// Length of the variable name at the start of `text`: `[A-Za-z_][A-Za-z0-9_]*`.
fn name_length(text: &str) -> usize {
    let bytes = text.as_bytes();
    if !bytes.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
        return 0;
    }
    bytes.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count()
}

/// Byte offset where a YAML comment starts on this line (or its length): a `#` at the start
/// or after a blank, outside quotes.
pub(super) fn comment_start(line: &str) -> usize {
    let mut quote: Option<u8> = None;
    let mut previous = b' ';
    for (i, &b) in line.as_bytes().iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'#' && (previous == b' ' || previous == b'\t' || i == 0) => return i,
            None => {}
        }
        previous = b;
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn unset_references_are_found_with_their_position() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("a: ${SET}\n", &[], "a set variable is fine"),
            ("a: \"${NOPE}\"\n", &["NOPE"], "quoted values interpolate too"),
            ("a: $NOPE\n", &[], "the bare form is literal (alert templates use $value)"),
            ("a: $${NOPE}\n", &[], "$$ escapes"),
            ("a: ${NOPE:-x}\n", &[], "a default makes it optional"),
            ("a: x # ${NOPE}\n", &[], "comments are not interpolated"),
            ("a: \"x # ${NOPE}\"\n", &["NOPE"], "a # inside quotes is not a comment"),
            ("a: 5$\n", &[], "a lone dollar is literal"),
        ];
        for (source, want, why) in cases {
            let got: Vec<String> =
                unset_references(source, &env(&[("SET", "1")])).into_iter().map(|r| r.name).collect();
            assert_eq!(&got, want, "{source:?}: {why}");
        }
        let r = &unset_references("x: 1\ny: \"${NOPE}\"\n", &env(&[]))[0];
        assert_eq!((r.line, r.column), (2, 5));
    }

    #[test]
    fn an_unknown_key_is_named_as_written_when_the_file_interpolates() {
        let source = "services:\n  synapse:\n    kind: synapse\n    url: http://x\n    admin_token: \"${TOK}\"\n    admin_tokn: 1\n";
        let Err(ConfigError::Invalid(diagnostics)) = parse(Path::new("m.yaml"), source, &env(&[("TOK", "sekrit")]))
        else {
            panic!("an unknown key is an error");
        };
        let shown = diagnostics[0].to_string();
        assert!(shown.contains("m.yaml:6:5: services.synapse.admin_tokn: unknown key `admin_tokn`"), "{shown}");
        assert!(shown.contains("did you mean `admin_token`?"), "{shown}");
        assert!(!shown.contains("sekrit"), "{shown}");
    }

    #[test]
    fn written_keys_are_read_back_from_the_source() {
        let source = "a:\n  plain_key: 1\n  \"quoted key\": 2\n  { flow: 1 }\n";
        assert_eq!(written_key(source, 2, 3).as_deref(), Some("plain_key"));
        assert_eq!(written_key(source, 3, 3).as_deref(), Some("quoted key"));
        assert_eq!(written_key(source, 4, 3), None, "not a key: the parser's own name is kept");
        assert_eq!(written_key(source, 9, 1), None, "past the end");
    }

    #[test]
    fn bare_dollars_survive_interpolation() {
        let source = "a: \"{{ $value }} and ${SET} and $$literal and $5\"\n";
        assert_eq!(escape_bare_dollars(source), "a: \"{{ $$value }} and ${SET} and $$literal and $5\"\n");
        #[derive(serde::Deserialize)]
        struct A {
            a: String,
        }
        let options = serde_saphyr::options! { property_syntax: serde_saphyr::PropertySyntax::DockerCompose }
            .with_properties(env(&[("SET", "x")]));
        let parsed: A = serde_saphyr::from_str_with_options(&escape_bare_dollars(source), options).unwrap();
        assert_eq!(parsed.a, "{{ $value }} and x and $literal and $5");
    }

    #[test]
    fn parser_prefixes_are_dropped() {
        assert_eq!(clean_message("error: line 7 column 7: unknown field `x`"), "unknown field `x`");
    }
}
