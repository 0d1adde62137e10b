//! The control room's command language, parsed without I/O: `!name args…`, where each
//! command's argument shape (`Shape`) is declared in its table entry (`control::actions::
//! COMMANDS`), so adding a command is one entry there. Parsing is defensive: a message is a
//! command only if it starts with `!`; bodies over `MAX_BODY` bytes, unknown names (with a
//! suggestion), control characters, ids and service names of the wrong shape, and durations
//! outside 1 minute to 7 days are refused with a sentence saying what was expected. A Matrix
//! reply's quoted fallback (`> <@user> …`) is skipped.

use crate::units::HumanDuration;
use std::time::Duration;

/// The longest message body read as a command, in bytes.
pub(crate) const MAX_BODY: usize = 4_096;
/// The longest reason, in bytes (as for windows opened from the CLI or the API).
pub(crate) const MAX_REASON: usize = 500;
/// The shortest and longest window a command can open.
pub(crate) const WINDOW_RANGE: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(7 * 86_400));

/// What a command takes after its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Nothing.
    Nothing,
    /// One id: an alert id from `!alerts` or a window number.
    Id,
    /// `SERVICE DURATION [reason…]`.
    Window,
    /// An optional word (`!help silence`).
    OptionalWord,
}

/// A command's declaration: its name, what it takes, and how `!help` shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    /// The name after `!`, lower case.
    pub name: &'static str,
    /// Its arguments.
    pub shape: Shape,
    /// `!silence SERVICE DURATION [reason]`.
    pub usage: &'static str,
    /// One sentence.
    pub help: &'static str,
}

/// Parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Args {
    /// None.
    Nothing,
    /// One id.
    Id(String),
    /// A window: service, duration (as written, and its value), optional reason.
    Window {
        /// The service name.
        service: String,
        /// The duration as written (`2h`).
        written: String,
        /// Its value.
        duration: Duration,
        /// The reason, if given.
        reason: Option<String>,
    },
    /// An optional word.
    Word(Option<String>),
}

/// A parsed command: which table entry, and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The index of its entry in the table.
    pub index: usize,
    /// Its name.
    pub name: &'static str,
    /// Its arguments.
    pub args: Args,
}

impl Parsed {
    /// The command as the audit shows it: normalised, one line.
    pub(crate) fn shown(&self) -> String {
        let mut out = format!("!{}", self.name);
        match &self.args {
            Args::Nothing | Args::Word(None) => {}
            Args::Id(id) | Args::Word(Some(id)) => out.push_str(&format!(" {id}")),
            Args::Window { service, written, reason, .. } => {
                out.push_str(&format!(" {service} {written}"));
                if let Some(r) = reason {
                    out.push_str(&format!(" {r}"));
                }
            }
        }
        out
    }
}

/// Why a message that looks like a command is refused (said back in the thread).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// Over [`MAX_BODY`].
    #[error("that message is {0} bytes; a command is at most {MAX_BODY} bytes")]
    TooLong(usize),
    /// No such command.
    #[error("no command `!{name}`.{hint} `!help` lists the commands")]
    Unknown {
        /// The name given (shortened, controls escaped).
        name: String,
        /// ` Did you mean `!x`?` or nothing.
        hint: String,
    },
    /// Wrong arguments.
    #[error("{why}; usage: {usage}")]
    Usage {
        /// What is wrong.
        why: String,
        /// The command's usage line.
        usage: &'static str,
    },
}

/// A token for messages: at most 40 characters, control characters escaped.
fn shown_token(token: &str) -> String {
    let cut: String = token.chars().take(40).collect();
    let ellipsis = if cut.len() < token.len() { "…" } else { "" };
    format!("{}{ellipsis}", crate::text::escape_controls(&cut))
}

/// The text of a message after a reply's quoted fallback (`> …` lines and the blank line after).
fn without_reply_fallback(body: &str) -> &str {
    let mut rest = body;
    if !rest.starts_with("> ") {
        return rest;
    }
    while let Some(line_end) = rest.find('\n') {
        if rest.starts_with("> ") || rest.starts_with(">\n") {
            rest = &rest[line_end + 1..];
        } else {
            break;
        }
    }
    if rest.starts_with("> ") {
        return "";
    }
    rest.trim_start_matches('\n')
}

fn is_id(token: &str) -> bool {
    (1..=64).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_service(token: &str) -> bool {
    (1..=64).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses `body` against `table`. `Ok(None)`: not a command (no `!`), to be ignored.
pub(crate) fn parse(body: &str, table: &[Spec]) -> Result<Option<Parsed>, ParseError> {
    if body.len() > MAX_BODY {
        // Only a message that claims to be a command is answered.
        return if without_reply_fallback(&body[..body.floor_char_boundary(MAX_BODY)]).trim_start().starts_with('!') {
            Err(ParseError::TooLong(body.len()))
        } else {
            Ok(None)
        };
    }
    let text = without_reply_fallback(body).trim();
    let Some(rest) = text.strip_prefix('!') else { return Ok(None) };
    let mut tokens = rest.split_whitespace();
    let Some(name) = tokens.next() else { return Ok(None) };
    let lower = name.to_ascii_lowercase();
    let Some(index) = table.iter().position(|s| s.name == lower) else {
        let hint = crate::units::closest(&lower, table.iter().map(|s| s.name))
            .map(|k| format!(" Did you mean `!{k}`?"))
            .unwrap_or_default();
        return Err(ParseError::Unknown { name: shown_token(name), hint });
    };
    let spec = table[index];
    let usage = |why: String| ParseError::Usage { why, usage: spec.usage };
    let args: Vec<&str> = tokens.collect();
    if let Some(bad) = args.iter().find(|t| t.chars().any(char::is_control)) {
        return Err(usage(format!("`{}` holds a control character", shown_token(bad))));
    }
    let args = match spec.shape {
        Shape::Nothing => {
            if let Some(extra) = args.first() {
                return Err(usage(format!("`!{}` takes nothing, got `{}`", spec.name, shown_token(extra))));
            }
            Args::Nothing
        }
        Shape::Id => match args.as_slice() {
            [id] if is_id(id) => Args::Id((*id).to_string()),
            [id] => return Err(usage(format!("`{}` is not an id (letters, digits, - and _)", shown_token(id)))),
            [] => return Err(usage("give an id (`!alerts` lists alert ids; `!status` lists windows)".into())),
            [_, extra, ..] => return Err(usage(format!("one id only, got `{}` too", shown_token(extra)))),
        },
        Shape::OptionalWord => match args.as_slice() {
            [] => Args::Word(None),
            [word] if is_service(word) => Args::Word(Some(word.to_ascii_lowercase())),
            [word] => return Err(usage(format!("`{}` is not a command name", shown_token(word)))),
            [_, extra, ..] => return Err(usage(format!("one word only, got `{}` too", shown_token(extra)))),
        },
        Shape::Window => {
            let (Some(service), Some(written)) = (args.first(), args.get(1)) else {
                return Err(usage("give a service and a duration".into()));
            };
            if !is_service(service) {
                return Err(usage(format!(
                    "`{}` is not a service name (letters, digits, -, _ and .)",
                    shown_token(service)
                )));
            }
            let duration = HumanDuration::parse(written)
                .map_err(|_| usage(format!("`{}` is not a duration like 30m, 2h or 1d", shown_token(written))))?
                .0;
            if !(WINDOW_RANGE.0..=WINDOW_RANGE.1).contains(&duration) {
                return Err(usage(format!("{} is out of range; a window lasts from 1m to 7d", shown_token(written))));
            }
            let reason = args[2..].join(" ");
            if reason.len() > MAX_REASON {
                return Err(usage(format!("the reason is {} bytes; at most {MAX_REASON}", reason.len())));
            }
            Args::Window {
                service: (*service).to_string(),
                written: (*written).to_string(),
                duration,
                reason: (!reason.is_empty()).then_some(reason),
            }
        }
    };
    Ok(Some(Parsed { index, name: spec.name, args }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Spec] = &[
        Spec { name: "status", shape: Shape::Nothing, usage: "!status", help: "" },
        Spec { name: "ack", shape: Shape::Id, usage: "!ack ID", help: "" },
        Spec { name: "silence", shape: Shape::Window, usage: "!silence SERVICE DURATION [reason]", help: "" },
        Spec { name: "help", shape: Shape::OptionalWord, usage: "!help [command]", help: "" },
    ];

    fn ok(body: &str) -> Option<Parsed> {
        parse(body, TABLE).unwrap_or_else(|e| panic!("{body:?}: {e}"))
    }

    fn err(body: &str) -> String {
        parse(body, TABLE).map(|p| format!("{p:?}")).expect_err(body).to_string()
    }

    fn window(service: &str, written: &str, secs: u64, reason: Option<&str>) -> Args {
        Args::Window {
            service: service.into(),
            written: written.into(),
            duration: Duration::from_secs(secs),
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn commands_parse_by_shape() {
        let cases: &[(&str, &str, Args, &str)] = &[
            ("!status", "status", Args::Nothing, "the simplest"),
            ("  !STATUS  ", "status", Args::Nothing, "case and blanks"),
            ("!ack 3f9a2c", "ack", Args::Id("3f9a2c".into()), "an id"),
            ("!silence synapse 2h", "silence", window("synapse", "2h", 7_200, None), "no reason"),
            (
                "!silence synapse 2h disk   swap\tnow",
                "silence",
                window("synapse", "2h", 7_200, Some("disk swap now")),
                "reason words joined",
            ),
            ("!silence synapse 1m x", "silence", window("synapse", "1m", 60, Some("x")), "the shortest window"),
            ("!silence synapse 7d x", "silence", window("synapse", "7d", 604_800, Some("x")), "the longest window"),
            ("!silence synapse 1h30m", "silence", window("synapse", "1h30m", 5_400, None), "compound duration"),
            ("!help", "help", Args::Word(None), "no word"),
            ("!help Silence", "help", Args::Word(Some("silence".into())), "a word, lowered"),
            ("> <@a:x> earlier\n> more\n\n!status", "status", Args::Nothing, "a reply's fallback skipped"),
        ];
        for (body, name, args, why) in cases {
            let p = ok(body).unwrap_or_else(|| panic!("{why}: {body:?} is a command"));
            assert_eq!((p.name, &p.args), (*name, args), "{why}");
        }
    }

    #[test]
    fn plain_messages_are_not_commands() {
        for body in ["hello", "", "   ", "status!", "> <@a:x> !status", "!", "! ", "> quoted only"] {
            assert_eq!(parse(body, TABLE).unwrap(), None, "{body:?}");
        }
    }

    #[test]
    fn bad_commands_are_refused_with_a_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("!stauts", "Did you mean `!status`?", "a typo gets a suggestion"),
            ("!rm -rf", "no command `!rm`", "unknown"),
            ("!status now", "takes nothing", "extra words"),
            ("!ack", "give an id", "missing id"),
            ("!ack a b", "one id only", "two ids"),
            ("!ack ../../etc", "is not an id", "path in an id"),
            ("!ack <b>x</b>", "is not an id", "markup in an id"),
            ("!silence synapse", "give a service and a duration", "no duration"),
            ("!silence synapse soon", "is not a duration", "not a duration"),
            ("!silence synapse 59s", "out of range", "below a minute"),
            ("!silence synapse 0s", "out of range", "zero"),
            ("!silence synapse 8d", "out of range", "over a week"),
            ("!silence synapse 99999999999999999999h", "is not a duration", "overflowing number"),
            ("!silence syn;apse 1h", "is not a service name", "injected punctuation"),
            ("!silence ${HOME} 1h", "is not a service name", "interpolation"),
            ("!help a b", "one word only", "two words"),
        ];
        for (body, expected, why) in cases {
            let e = err(body);
            assert!(e.contains(expected), "{why}: {body:?} → {e}");
        }
    }

    #[test]
    fn hostile_bodies_are_bounded_and_escaped() {
        let huge = format!("!silence synapse 1h {}", "x".repeat(MAX_BODY));
        assert!(err(&huge).contains("at most 4096 bytes"));
        assert_eq!(parse(&"y".repeat(1 << 20), TABLE).unwrap(), None, "a huge chat message is no command");
        let long_reason = format!("!silence synapse 1h {}", "r".repeat(MAX_REASON + 1));
        assert!(err(&long_reason).contains("at most 500"));
        let at_limit = format!("!silence synapse 1h {}", "r".repeat(MAX_REASON));
        assert!(ok(&at_limit).is_some(), "a reason of exactly the limit");
        let e = err("!silence synapse 1h bad\u{1b}[31mred");
        assert!(e.contains("control character") && !e.contains('\u{1b}'), "{e}");
        let e = err(&format!("!{}", "z".repeat(500)));
        assert!(e.len() < 200 && e.contains('…'), "a long name is shortened: {e}");
        let e = err("!\u{7}bell");
        assert!(!e.contains('\u{7}'), "{e}");
        // A multi-byte character straddling the limit does not panic.
        let straddle = format!("!{}{}", "a".repeat(MAX_BODY - 2), "é".repeat(10));
        assert!(err(&straddle).contains("bytes"));
    }

    #[test]
    fn the_audit_line_is_normalised() {
        assert_eq!(ok("!silence  synapse 2h  db   swap").unwrap().shown(), "!silence synapse 2h db swap");
        assert_eq!(ok("!ACK x1").unwrap().shown(), "!ack x1");
        assert_eq!(ok("!help").unwrap().shown(), "!help");
    }
}
