//! Text from outside made safe to show: scraped label values, server error bodies, reasons
//! typed into the API end up in terminal tables and in Matrix, HTML and email messages, where
//! a raw control character would act instead of being shown — an ANSI escape recolours or
//! clears the operator's terminal, `\r` overwrites a line, a newline forges a table row or a
//! line of a page, a bidirectional override reorders what is read. Here each such character
//! becomes visible text (`\x1b`, `\r`, `\n`, `\u{202e}`), so the reader sees what was sent.
//! A leaf: it imports nothing of the crate, and the CLI, `notify` and the server use it.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal or a message raw: the C0 controls (NUL … US,
/// including `\t`, `\n`, `\r`), DEL, the C1 controls (U+0080 … U+009F, among them the
/// one-character CSI U+009B), the Unicode line and paragraph separators, and the
/// bidirectional formatting characters (LRM, RLM, ALM, the embeddings, overrides and
/// isolates) that reorder the text around them.
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}')
        || matches!(c, '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character (see [`is_unsafe`]) written out as an escape:
/// `\n`, `\r`, `\t`, `\0`, `\x1b` for the other C0 controls and DEL, `\u{…}` for the rest.
/// Borrows when there is nothing to escape. For one-line values: labels, names, table cells.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    escape_where(text, is_unsafe)
}

/// Like [`escape_controls`], but keeps line breaks (`\n`) and tabs: for prose whose layout is
/// meant, such as a rule's description or a message body composed of escaped parts.
pub(crate) fn escape_controls_in_prose(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c != '\n' && c != '\t' && is_unsafe(c))
}

/// A table row with each cell passed through [`escape_controls`].
pub(crate) fn cells<I, S>(row: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    row.into_iter().map(|cell| escape_controls(cell.as_ref()).into_owned()).collect()
}

fn escape_where(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    let Some(first) = text.find(&escape) else { return Cow::Borrowed(text) };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if !escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        let cases = [
            ("synapse", "synapse", "plain text is left alone"),
            ("", "", "empty stays empty"),
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m", "ANSI colour escapes are shown, not obeyed"),
            ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07", "an OSC title sequence and its BEL"),
            ("a\nb", "a\\nb", "a newline cannot forge a second line or row"),
            ("ok\rFAIL", "ok\\rFAIL", "a carriage return cannot overwrite the line"),
            ("tab\there", "tab\\there", "tabs are shown in one-line values"),
            ("nul\0byte", "nul\\0byte", "NUL"),
            ("\x7f", "\\x7f", "DEL"),
            ("\u{9b}31m", "\\u{9b}31m", "the one-character C1 CSI"),
            ("\u{85}", "\\u{85}", "C1 next-line"),
            ("abc\u{202e}fdp.exe", "abc\\u{202e}fdp.exe", "a right-to-left override cannot reorder the text"),
            ("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}", "bidi isolates"),
            ("line\u{2028}sep", "line\\u{2028}sep", "the Unicode line separator"),
            ("grüße ✓ 日本", "grüße ✓ 日本", "printable non-ASCII text is kept"),
            ("back\\slash", "back\\slash", "a backslash is kept as it is"),
        ];
        for (input, want, why) in cases {
            assert_eq!(escape_controls(input), want, "{why}");
        }
    }

    #[test]
    fn prose_keeps_its_line_breaks_and_tabs_only() {
        let cases = [
            ("first\nsecond", "first\nsecond", "a meant line break stays"),
            ("a\tb", "a\tb", "a tab stays"),
            ("a\r\nb", "a\\r\nb", "the carriage return of CRLF is shown"),
            ("\x1b[2Jcleared", "\\x1b[2Jcleared", "escapes are shown in prose too"),
            ("\u{202e}", "\\u{202e}", "bidi overrides too"),
        ];
        for (input, want, why) in cases {
            assert_eq!(escape_controls_in_prose(input), want, "{why}");
        }
    }

    #[test]
    fn nothing_to_escape_borrows_and_cells_escape_each_cell() {
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)), "no allocation for clean text");
        assert_eq!(cells(["ok", "a\nb"]), ["ok", "a\\nb"]);
        assert_eq!(cells(vec![String::from("\x1b")]), ["\\x1b"]);
    }

    #[test]
    fn no_output_of_any_char_holds_an_unsafe_character() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let shown = escape_controls(c.encode_utf8(&mut [0; 4])).into_owned();
            assert!(!shown.chars().any(is_unsafe), "U+{:04X} came out as {shown:?}", c as u32);
        }
    }
}
