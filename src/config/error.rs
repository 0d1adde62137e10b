//! Config errors that say where and what: file, line, column, key path, what was expected,
//! and a "did you mean" when a key or value is a near miss. Built by `config::load` (what
//! serde and the YAML parser see) and `config::build` (what they cannot); printed by the CLI,
//! which exits 2.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in the configuration. `Invalid` carries every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file we tried.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", render_all(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render_all(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    if diagnostics.len() > 1 {
        out.push_str(&format!("\n{} problems found.", diagnostics.len()));
    }
    out
}

/// One problem at one place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// Dotted key path, e.g. `checks[0].http.method`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// A suggestion, e.g. "did you mean `method`?".
    pub hint: Option<String>,
    /// The source line with a caret under the column.
    pub snippet: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `line:column` of `source`, with a snippet of that line.
    pub(crate) fn at(
        file: &Path,
        source: &str,
        line: u64,
        column: u64,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            line: (line > 0).then_some(line),
            column: (column > 0).then_some(column),
            key: key.into(),
            message: message.into(),
            hint: None,
            snippet: snippet(source, line, column),
        }
    }

    /// Adds a hint.
    pub(crate) fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": {}: {}", self.key, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

/// The source line at `line` with a caret under `column`, indented like rustc's output.
fn snippet(source: &str, line: u64, column: u64) -> Option<String> {
    let text = source.lines().nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    Some(render_snippet(text, line, column))
}

/// `text`, shown as line `line`, with a caret under its 1-based character `column`.
pub(super) fn render_snippet(text: &str, line: u64, column: u64) -> String {
    let number = line.to_string();
    let pad = " ".repeat(number.len());
    let caret_at = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
    let indent: String = text.chars().take(caret_at).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    format!("{pad} |\n{number} | {text}\n{pad} | {indent}^")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_print_file_line_key_hint_and_caret() {
        let source = "a: 1\nchecks:\n  - nme: x\n";
        let d = Diagnostic::at(Path::new("m.yaml"), source, 3, 5, "checks[0].nme", "unknown key `nme`")
            .with_hint(Some("did you mean `name`?".into()));
        let text = d.to_string();
        assert!(text.starts_with("m.yaml:3:5: checks[0].nme: unknown key `nme`"), "{text}");
        assert!(text.contains("hint: did you mean `name`?"), "{text}");
        assert!(text.contains("3 |   - nme: x\n  |     ^"), "{text}");
    }
}
