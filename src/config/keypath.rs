//! The key path of a position in a YAML document (`services.synapse.interval`,
//! `checks[2].http.url`), for parser errors that carry a position only: one pass over the
//! document's events, keeping the keys and indices of the collections around the position.
//! Runs only when a config has an error, so the deserializer itself stays unwrapped.

use granit_parser::{Event, Parser};

/// One open collection: a mapping with the key whose value is being read, or a sequence
/// with the index of the item being read.
enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

/// The path of the node at `line`:`column` (1-indexed, as the parser reports them), or of
/// the collection holding it when the position is a key; empty at the top or when the text
/// cannot be parsed up to there.
pub(crate) fn key_path_at(source: &str, line: u64, column: u64) -> String {
    let target = (line, column);
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(source) {
        let Ok((event, span)) = item else { break };
        let at = (span.start.line() as u64, span.start.col() as u64 + 1);
        if at >= target && !matches!(event, Event::MappingEnd | Event::SequenceEnd) {
            break;
        }
        match event {
            Event::MappingStart(..) => stack.push(Frame::Map { key: None }),
            Event::SequenceStart(..) => stack.push(Frame::Seq { index: 0 }),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                value_done(&mut stack);
            }
            Event::Scalar(text, ..) => match stack.last_mut() {
                Some(Frame::Map { key }) if key.is_none() => *key = Some(text.into_owned()),
                _ => value_done(&mut stack),
            },
            Event::Alias(_) => value_done(&mut stack),
            _ => {}
        }
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Map { key: Some(key) } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Map { key: None } => {}
            Frame::Seq { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// The innermost collection has read one value: a mapping waits for its next key, a
/// sequence moves to its next item.
fn value_done(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { key }) => *key = None,
        Some(Frame::Seq { index }) => *index += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::key_path_at;

    const DOC: &str = "\
store: ./x.db
services:
  synapse:
    kind: synapse
    interval: soon
checks:
  - name: a
    http: { url: 'http://x', expect: { status: 200 } }
  - name: b
    http:
      url: nope
";

    #[test]
    fn paths_of_values_keys_and_items() {
        let cases = [
            ((1, 8), "store", "a top-level value"),
            ((1, 1), "", "a top-level key: its parent is the document"),
            ((5, 15), "services.synapse.interval", "a nested block value"),
            ((5, 5), "services.synapse", "a nested key names its mapping"),
            ((8, 18), "checks[0].http.url", "a value in a flow mapping inside a sequence"),
            ((8, 48), "checks[0].http.expect.status", "a flow mapping two levels down"),
            ((11, 12), "checks[1].http.url", "the second item"),
            ((7, 5), "checks[0]", "a key of a sequence item"),
        ];
        for ((line, column), want, why) in cases {
            assert_eq!(key_path_at(DOC, line, column), want, "{why} ({line}:{column})");
        }
    }

    #[test]
    fn broken_text_gives_what_was_read_before_the_break() {
        // The unterminated flow sequence breaks while its second item is being read.
        assert_eq!(key_path_at("a:\n  b: [1, 2\n", 9, 1), "a.b[1]");
        assert_eq!(key_path_at("", 1, 1), "");
    }
}
