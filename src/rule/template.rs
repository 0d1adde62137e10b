//! Alert label and annotation templates: the part of Prometheus's Go-template language that
//! alert rules use — `{{ $value }}`, `{{ $labels.name }}`, pipes into `humanize`,
//! `humanize1024`, `humanizePercentage`, `humanizeDuration`, `printf`, `toUpper`, `toLower`,
//! and numbers printed exactly as Go prints them, so a message reads the same here and in
//! Prometheus. Compiled at config load (errors name the template); rendered per alert.

use crate::model::Labels;
use std::fmt::Write;

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(Vec<Command>),
}

#[derive(Debug, Clone, PartialEq)]
struct Command {
    func: Option<String>,
    args: Vec<Operand>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Value,
    Label(String),
    Str(String),
    Num(f64),
    Int(i64),
}

/// A template value, typed as Go sees it (printf's verbs depend on the type).
#[derive(Debug, Clone, PartialEq)]
enum Data {
    Num(f64),
    Int(i64),
    Str(String),
}

const FUNCTIONS: &[&str] =
    &["humanize", "humanize1024", "humanizePercentage", "humanizeDuration", "printf", "toUpper", "toLower"];

impl Template {
    /// Compiles `source`, or says what is wrong with it.
    pub(crate) fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut trim_next = false;
        // Go's trim markers: `{{- ` eats the whitespace before the action, ` -}}` the
        // whitespace after it (the dash must be separated from the action by a space).
        let space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
        let push_text = |parts: &mut Vec<Part>, text: &str, trim_left: bool, trim_right: bool| {
            let text = if trim_left { text.trim_start_matches(space) } else { text };
            let text = if trim_right { text.trim_end_matches(space) } else { text };
            if !text.is_empty() {
                parts.push(Part::Text(text.to_string()));
            }
        };
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let trim_before = after.starts_with('-') && after[1..].starts_with(space);
            push_text(&mut parts, &rest[..open], trim_next, trim_before);
            let close = after.find("}}").ok_or_else(|| format!("`{{{{` without `}}}}` in template {source:?}"))?;
            let mut inner = &after[..close];
            if trim_before {
                inner = &inner[1..];
            }
            trim_next = inner.ends_with('-') && inner[..inner.len() - 1].ends_with(space);
            if trim_next {
                inner = &inner[..inner.len() - 1];
            }
            let inner = inner.trim_matches(space);
            parts.push(Part::Action(parse_pipeline(inner).map_err(|e| format!("{e} in template {source:?}"))?));
            rest = &after[close + 2..];
        }
        push_text(&mut parts, rest, trim_next, false);
        Ok(Self { source: source.to_string(), parts })
    }

    /// Renders with the alert's labels and value.
    pub(crate) fn render(&self, labels: &Labels, value: f64) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Action(pipeline) => {
                    let mut carried: Option<Data> = None;
                    for command in pipeline {
                        carried = Some(run(command, carried, labels, value));
                    }
                    if let Some(d) = carried {
                        out.push_str(&display(&d));
                    }
                }
            }
        }
        out
    }
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '`' {
            let quote = c;
            chars.next();
            let mut s = String::from('"');
            loop {
                match chars.next() {
                    None => return Err("unterminated string".into()),
                    Some('\\') if quote == '"' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(other) => s.push(other),
                        None => return Err("unterminated string".into()),
                    },
                    Some(ch) if ch == quote => break,
                    Some(ch) => s.push(ch),
                }
            }
            tokens.push(s);
        } else if c == '|' {
            chars.next();
            tokens.push("|".into());
        } else {
            let mut word = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || ch == '|' {
                    break;
                }
                word.push(ch);
                chars.next();
            }
            tokens.push(word);
        }
    }
    Ok(tokens)
}

fn operand(token: &str) -> Result<Operand, String> {
    if let Some(s) = token.strip_prefix('"') {
        return Ok(Operand::Str(s.to_string()));
    }
    match token {
        "$value" | ".Value" => return Ok(Operand::Value),
        _ => {}
    }
    for prefix in ["$labels.", ".Labels."] {
        if let Some(name) = token.strip_prefix(prefix) {
            return Ok(Operand::Label(name.to_string()));
        }
    }
    if let Ok(i) = token.parse::<i64>() {
        return Ok(Operand::Int(i));
    }
    token.parse::<f64>().map(Operand::Num).map_err(|_| {
        format!("unsupported `{token}` (supported: $value, $labels.NAME, strings, numbers, {})", FUNCTIONS.join(", "))
    })
}

fn parse_pipeline(text: &str) -> Result<Vec<Command>, String> {
    let tokens = tokenize(text)?;
    let mut commands = Vec::new();
    for group in tokens.split(|t| t == "|") {
        let Some((first, rest)) = group.split_first() else {
            return Err("empty command".into());
        };
        let command = if FUNCTIONS.contains(&first.as_str()) {
            Command { func: Some(first.clone()), args: rest.iter().map(|t| operand(t)).collect::<Result<_, _>>()? }
        } else {
            if !rest.is_empty() {
                return Err(format!("unknown function `{first}`"));
            }
            Command { func: None, args: vec![operand(first)?] }
        };
        commands.push(command);
    }
    if commands.is_empty() {
        return Err("empty action".into());
    }
    Ok(commands)
}

fn resolve(o: &Operand, labels: &Labels, value: f64) -> Data {
    match o {
        Operand::Value => Data::Num(value),
        Operand::Label(name) => Data::Str(labels.get(name).cloned().unwrap_or_default()),
        Operand::Str(s) => Data::Str(s.clone()),
        Operand::Num(n) => Data::Num(*n),
        Operand::Int(i) => Data::Int(*i),
    }
}

fn number(d: &Data) -> f64 {
    match d {
        Data::Num(n) => *n,
        Data::Int(i) => *i as f64,
        Data::Str(s) => s.trim().parse().unwrap_or(f64::NAN),
    }
}

fn run(command: &Command, carried: Option<Data>, labels: &Labels, value: f64) -> Data {
    let mut args: Vec<Data> = command.args.iter().map(|a| resolve(a, labels, value)).collect();
    args.extend(carried);
    let first = || args.first().map(number).unwrap_or(f64::NAN);
    match command.func.as_deref() {
        None => args.into_iter().next().unwrap_or(Data::Str(String::new())),
        Some("humanize") => Data::Str(humanize(first())),
        Some("humanize1024") => Data::Str(humanize1024(first())),
        Some("humanizePercentage") => Data::Str(format!("{}%", go_g(first() * 100.0, 4))),
        Some("humanizeDuration") => Data::Str(humanize_duration(first())),
        Some("toUpper") => Data::Str(display(&args[0]).to_uppercase()),
        Some("toLower") => Data::Str(display(&args[0]).to_lowercase()),
        Some(_) => Data::Str(printf(&args)),
    }
}

fn display(d: &Data) -> String {
    match d {
        Data::Num(n) => go_float(*n),
        Data::Int(i) => i.to_string(),
        Data::Str(s) => s.clone(),
    }
}

/// Go's `%v` for a float64: shortest digits; exponent form when the decimal exponent is
/// below -4 or at least 6 (strconv's `'g'` with shortest precision), so `1e+06`.
pub(crate) fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let shortest = format!("{v:e}");
    let exp: i32 = shortest.split_once('e').and_then(|(_, e)| e.parse().ok()).unwrap_or(0);
    if (-4..6).contains(&exp) { format!("{v}") } else { go_exponent(&shortest) }
}

/// Rust's `1.5e-7` to Go's `1.5e-07`.
fn go_exponent(rust: &str) -> String {
    let (mantissa, exp) = rust.split_once('e').unwrap_or((rust, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Go's `%.{prec}g`.
pub(crate) fn go_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let m = trim_zeros(mantissa);
        go_exponent(&format!("{m}e{exp}"))
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { s }
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
pub(crate) fn humanize(v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return go_g(v, 4);
    }
    let mut v = v;
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", go_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

/// Prometheus's `humanize1024`: binary prefixes.
pub(crate) fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return go_g(v, 4);
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

/// Prometheus's `humanizeDuration` (seconds in, `1d 2h 3m 4s` out).
pub(crate) fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_g(v, 4);
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        // Go's int64(v) on amd64: out of range gives the minimum int64 (Rust saturates).
        let whole = if v >= i64::MAX as f64 { i64::MIN } else { v as i64 };
        let (days, hours, minutes, seconds) = (whole / 86_400, (whole / 3600) % 24, (whole / 60) % 60, whole % 60);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", go_g(v, 4))
        };
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 || v == 0.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, 4))
}

/// Go's `printf` for what alert templates use: flags `+ - 0 space`, width, precision, and
/// the verbs `v s q d f F e E g G x X %`, each typed as Go's `fmt` types them (`%d` of a
/// float is `%!d(float64=2.5)`, `%x` of a float is a hex float), NaN and infinities as Go
/// prints them, and `%!v(MISSING)` / `%!(EXTRA …)` for argument count mismatches.
fn printf(args: &[Data]) -> String {
    let Some((format, values)) = args.split_first() else { return String::new() };
    let format = display(format);
    let mut values = values.iter();
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '+' => spec.plus = true,
                '-' => spec.minus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        spec.width = digits(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(digits(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = values.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        out.push_str(&format_one(verb, &spec, arg));
    }
    let extra: Vec<String> = values.map(|v| format!("{}={}", go_type(v), display(v))).collect();
    if !extra.is_empty() {
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

#[derive(Debug, Default)]
struct Spec {
    plus: bool,
    minus: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

fn digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(n.unwrap_or(0) * 10 + d as usize);
        chars.next();
    }
    n
}

fn go_type(d: &Data) -> &'static str {
    match d {
        Data::Num(_) => "float64",
        Data::Int(_) => "int",
        Data::Str(_) => "string",
    }
}

fn format_one(verb: char, spec: &Spec, arg: &Data) -> String {
    let bad = || format!("%!{verb}({}={})", go_type(arg), display(arg));
    let (body, numeric) = match (arg, verb) {
        (Data::Num(v), _) => match float_verb(verb, spec.precision, *v) {
            Some(text) => (text, true),
            None => return bad(),
        },
        (Data::Int(i), 'd' | 'v') => (i.to_string(), true),
        (Data::Int(i), 'x') => (format!("{i:x}"), true),
        (Data::Int(i), 'X') => (format!("{i:X}"), true),
        (Data::Int(i), 'e' | 'E' | 'f' | 'F' | 'g' | 'G') => return bad_int(verb, *i),
        (Data::Str(s), 's' | 'v') => (spec.precision.map_or_else(|| s.clone(), |p| s.chars().take(p).collect()), false),
        (Data::Str(s), 'q') => (format!("{s:?}"), false),
        (Data::Str(s), 'x') => (s.bytes().map(|b| format!("{b:02x}")).collect(), false),
        _ => return bad(),
    };
    pad(body, spec, numeric)
}

fn bad_int(verb: char, i: i64) -> String {
    format!("%!{verb}(int={i})")
}

/// A float under a verb, or `None` when Go's `fmt` rejects the pair.
fn float_verb(verb: char, precision: Option<usize>, v: f64) -> Option<String> {
    if !v.is_finite() && matches!(verb, 'v' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 'x' | 'X') {
        return Some(go_float(v));
    }
    Some(match verb {
        'v' | 'g' => precision.map_or_else(|| go_float(v), |p| go_g(v, p)),
        'G' => precision.map_or_else(|| go_float(v), |p| go_g(v, p)).to_uppercase(),
        'f' | 'F' => format!("{:.*}", precision.unwrap_or(6), v),
        'e' => go_exponent(&format!("{:.*e}", precision.unwrap_or(6), v)),
        'E' => go_exponent(&format!("{:.*e}", precision.unwrap_or(6), v)).to_uppercase(),
        'x' | 'X' if precision.is_none() => {
            let text = hex_float(v);
            if verb == 'X' { text.to_uppercase() } else { text }
        }
        _ => return None,
    })
}

/// Go's `%x` of a float64: `0x1.4p+01` (shortest hex mantissa, two-digit exponent).
fn hex_float(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0x0p+00".into() } else { "0x0p+00".into() };
    }
    let bits = v.to_bits();
    let sign = if bits >> 63 == 1 { "-" } else { "" };
    let raw_exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mantissa = bits & ((1u64 << 52) - 1);
    let mut exp = raw_exp - 1023;
    if raw_exp == 0 {
        // Subnormal: normalise.
        let shift = mantissa.leading_zeros() as i64 - 11;
        mantissa = (mantissa << shift) & ((1u64 << 52) - 1);
        exp = -1022 - shift;
    }
    let mut digits = format!("{mantissa:013x}");
    while digits.ends_with('0') {
        digits.pop();
    }
    let frac = if digits.is_empty() { String::new() } else { format!(".{digits}") };
    format!("{sign}0x1{frac}p{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Applies `+`, space, width, `-` and `0` as Go does.
fn pad(mut body: String, spec: &Spec, numeric: bool) -> String {
    if numeric && !body.starts_with('-') && !body.starts_with('+') {
        if spec.plus {
            body.insert(0, '+');
        } else if spec.space {
            body.insert(0, ' ');
        }
    }
    let Some(width) = spec.width else { return body };
    let len = body.chars().count();
    if len >= width {
        return body;
    }
    let fill = width - len;
    if spec.minus {
        body + &" ".repeat(fill)
    } else if spec.zero
        && numeric
        && body.chars().any(|c| c.is_ascii_digit())
        && !body.contains("Inf")
        && !body.contains("NaN")
    {
        let sign_len = usize::from(body.starts_with(['-', '+', ' ']));
        let (sign, digits) = body.split_at(sign_len);
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        " ".repeat(fill) + &body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        [("instance".to_string(), "synapse:9000".to_string())].into_iter().collect()
    }

    #[test]
    fn templates_render_like_prometheus() {
        let cases: &[(&str, f64, &str, &str)] = &[
            ("{{ $value }}", 1e6, "1e+06", "Go's %v switches to exponent form at 1e6"),
            ("{{ $value }}", 471_859_200.0, "4.718592e+08", "as Prometheus alert messages show it"),
            ("memory {{ $value | humanize1024 }}B", 471_859_200.0, "memory 450MiB", "binary prefix"),
            ("{{ humanize $value }}", 471_859_200.0, "471.9M", "SI prefix, 4 digits"),
            ("{{ $value | humanizePercentage }}", 0.9132, "91.32%", "ratio as percent"),
            ("{{ $value | humanizeDuration }}", 3725.0, "1h 2m 5s", "duration"),
            ("{{ $labels.instance }} is down", 0.0, "synapse:9000 is down", "label"),
            ("{{ printf \"%.1f\" $value }}", 2.345, "2.3", "printf with precision"),
            ("{{ $labels.missing }}", 0.0, "", "a missing label is empty"),
            ("{{ $value }}", 0.25, "0.25", "plain decimals"),
            ("{{ $value }}", 0.00001, "1e-05", "small numbers use exponent form"),
            ("{{ humanize 0.012 }}", 0.0, "12m", "milli prefix"),
        ];
        for (source, value, want, why) in cases {
            let t = Template::parse(source).unwrap();
            let got = t.render(&labels(), *value);
            assert_eq!(got, *want, "{source}: {why}");
        }
    }

    #[test]
    fn unsupported_constructs_are_rejected_at_parse() {
        for bad in ["{{ range $x }}", "{{ $value ", "{{ query \"up\" }}", "{{ }}"] {
            assert!(Template::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn go_number_formats() {
        assert_eq!(go_g(0.0001234, 4), "0.0001234");
        assert_eq!(go_g(12345.0, 4), "1.234e+04");
        assert_eq!(go_g(999.96, 4), "1000");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }
}
