//! Expectations on an HTTP response and their pure evaluation: given what came back (status,
//! body, latency, certificate expiry), say in words which expectations failed. No I/O, no
//! clock reads: `probe::http` gathers the facts and passes `now`.

use crate::model::StatusMatcher;
use crate::units::HumanDuration;
use serde::Serialize;
use serde_json::Value;
use serde_json_path::JsonPath;
use std::time::Duration;

/// A JSONPath with the text it was parsed from (for messages).
#[derive(Debug, Clone)]
pub struct JsonQuery {
    /// The path as written, e.g. `$.status`.
    pub source: String,
    /// The parsed path.
    pub path: JsonPath,
}

impl JsonQuery {
    /// Parses an RFC 9535 JSONPath.
    pub(crate) fn parse(source: &str) -> Result<Self, String> {
        JsonPath::parse(source)
            .map(|path| Self { source: source.to_string(), path })
            .map_err(|e| format!("`{source}` is not a JSONPath (RFC 9535): {e}"))
    }
}

/// Everything a response must satisfy.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Accepted statuses; empty means any 2xx.
    pub status: Vec<StatusMatcher>,
    /// Paths and the value each must select.
    pub json: Vec<(JsonQuery, Value)>,
    /// Paths that must select something.
    pub json_exists: Vec<JsonQuery>,
    /// Text the body must contain.
    pub body_contains: Option<String>,
    /// Longest acceptable probe duration.
    pub max_latency: Option<Duration>,
    /// Shortest acceptable remaining certificate validity.
    pub cert_valid_for: Option<Duration>,
}

/// Replacements for some fields of an `Expect` (a user override of a preset).
#[derive(Debug, Clone, Default)]
pub(crate) struct ExpectPatch {
    /// Replaces `status`.
    pub status: Option<Vec<StatusMatcher>>,
    /// Replaces `json`.
    pub json: Option<Vec<(JsonQuery, Value)>>,
    /// Replaces `json_exists`.
    pub json_exists: Option<Vec<JsonQuery>>,
    /// Replaces `body_contains`.
    pub body_contains: Option<String>,
    /// Replaces `max_latency`.
    pub max_latency: Option<Duration>,
    /// Replaces `cert_valid_for`.
    pub cert_valid_for: Option<Duration>,
}

impl Expect {
    /// Applies the fields the patch sets.
    pub(crate) fn apply(&mut self, patch: ExpectPatch) {
        if let Some(v) = patch.status {
            self.status = v;
        }
        if let Some(v) = patch.json {
            self.json = v;
        }
        if let Some(v) = patch.json_exists {
            self.json_exists = v;
        }
        if let Some(v) = patch.body_contains {
            self.body_contains = Some(v);
        }
        if let Some(v) = patch.max_latency {
            self.max_latency = Some(v);
        }
        if let Some(v) = patch.cert_valid_for {
            self.cert_valid_for = Some(v);
        }
    }

    /// The accepted statuses as shown in messages: `[200, 204]`, `[2xx]`.
    fn status_list(&self) -> String {
        if self.status.is_empty() {
            return "[2xx]".into();
        }
        let items: Vec<String> = self.status.iter().map(ToString::to_string).collect();
        format!("[{}]", items.join(", "))
    }

    /// Whether `code` is accepted.
    pub(crate) fn status_ok(&self, code: u16) -> bool {
        if self.status.is_empty() { (200..300).contains(&code) } else { self.status.iter().any(|m| m.matches(code)) }
    }

    /// A printable view for `config show`.
    pub(crate) fn view(&self) -> ExpectView {
        ExpectView {
            status: if self.status.is_empty() { vec![StatusMatcher::Class(2)] } else { self.status.clone() },
            json: self.json.iter().map(|(q, v)| (q.source.clone(), v.clone())).collect(),
            json_exists: self.json_exists.iter().map(|q| q.source.clone()).collect(),
            body_contains: self.body_contains.clone(),
            max_latency: self.max_latency.map(|d| HumanDuration(d).to_string()),
            cert_valid_for: self.cert_valid_for.map(|d| HumanDuration(d).to_string()),
        }
    }
}

/// `Expect` as printed by `config show`.
#[derive(Debug, Serialize)]
pub(crate) struct ExpectView {
    /// Accepted statuses.
    pub status: Vec<StatusMatcher>,
    /// JSON equality expectations.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub json: std::collections::BTreeMap<String, Value>,
    /// JSON existence expectations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub json_exists: Vec<String>,
    /// Body text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Latency limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<String>,
    /// Certificate validity required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_valid_for: Option<String>,
}

/// What came back, as far as expectations care.
#[derive(Debug, Clone)]
pub(crate) struct ResponseFacts<'a> {
    /// HTTP status.
    pub status: u16,
    /// `Location` header of a redirect that was not followed.
    pub location: Option<&'a str>,
    /// The body (complete: over-cap bodies never get here).
    pub body: &'a [u8],
    /// Time for the whole probe.
    pub latency: Duration,
    /// The server certificate's `notAfter`, for TLS connections.
    pub cert_not_after: Option<jiff::Timestamp>,
    /// Now, from the caller's clock.
    pub now: jiff::Timestamp,
}

/// Every failed expectation, in words. Empty means the response is good.
pub(crate) fn evaluate(expect: &Expect, facts: &ResponseFacts<'_>) -> Vec<String> {
    let mut failures = Vec::new();
    if !expect.status_ok(facts.status) {
        let mut text = format!("status {} not in {}", facts.status, expect.status_list());
        if let Some(location) = facts.location.filter(|_| (300..400).contains(&facts.status)) {
            text.push_str(&format!(" (redirect to {location} not followed)"));
        } else if let Some(excerpt) = excerpt(facts.body) {
            text.push_str(&format!(" (body: {excerpt})"));
        }
        failures.push(text);
    }
    if let Some(needle) = &expect.body_contains
        && !contains(facts.body, needle.as_bytes())
    {
        let shown = excerpt(facts.body).unwrap_or_else(|| "empty".into());
        failures.push(format!("body does not contain {needle:?} (body: {shown})"));
    }
    if !expect.json.is_empty() || !expect.json_exists.is_empty() {
        match parse_json(facts.body) {
            Ok(document) => failures.extend(json_failures(expect, &document)),
            Err(why) => failures.push(why),
        }
    }
    if let Some(limit) = expect.max_latency
        && facts.latency > limit
    {
        failures.push(format!(
            "took {}, over the {} limit (max_latency)",
            seconds(facts.latency),
            HumanDuration(limit)
        ));
    }
    if let Some(required) = expect.cert_valid_for {
        failures.extend(cert_failure(required, facts));
    }
    failures
}

fn cert_failure(required: Duration, facts: &ResponseFacts<'_>) -> Option<String> {
    let Some(not_after) = facts.cert_not_after else {
        return Some(format!("cert_valid_for {} is set but the connection did not use TLS", HumanDuration(required)));
    };
    let left = not_after.duration_since(facts.now);
    let date = not_after.strftime("%Y-%m-%d %H:%M UTC");
    if left.is_negative() {
        return Some(format!("certificate expired on {date}"));
    }
    let left = left.unsigned_abs();
    (left < required).then(|| {
        format!(
            "certificate expires in {} (on {date}), less than the required {}",
            HumanDuration(Duration::from_secs(left.as_secs() / 3600 * 3600)),
            HumanDuration(required)
        )
    })
}

fn json_failures(expect: &Expect, document: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    for query in &expect.json_exists {
        if query.path.query(document).is_empty() {
            failures.push(format!("{} is missing", query.source));
        }
    }
    for (query, wanted) in &expect.json {
        let nodes = query.path.query(document).all();
        match nodes.iter().find(|v| !json_equal(v, wanted)) {
            _ if nodes.is_empty() => failures.push(format!("{} is missing, expected {wanted}", query.source)),
            Some(got) => failures.push(format!("{} is {}, expected {wanted}", query.source, short_json(got))),
            None => {}
        }
    }
    failures
}

/// Equality that treats `1` and `1.0` as the same number.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn parse_json(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("body is empty, expected JSON".into());
    }
    serde_json::from_slice(body).map_err(|e| {
        let shown = excerpt(body).unwrap_or_default();
        format!("body is not JSON ({e}): {shown}")
    })
}

fn short_json(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 { format!("{}…", text.chars().take(80).collect::<String>()) } else { text }
}

/// The first 80 characters of a body, printable and quoted; None when empty.
fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(400)]);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if clean.is_empty() {
        return None;
    }
    let cut: String = clean.chars().take(80).collect();
    Some(if cut.len() < clean.len() { format!("{cut:?}…") } else { format!("{cut:?}") })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `1.234s` or `87ms`.
pub(crate) fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{}ms", d.as_millis()) } else { format!("{:.2}s", d.as_secs_f64()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(status: u16, body: &str) -> ResponseFacts<'_> {
        ResponseFacts {
            status,
            location: None,
            body: body.as_bytes(),
            latency: Duration::from_millis(120),
            cert_not_after: None,
            now: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        }
    }

    fn q(path: &str) -> JsonQuery {
        JsonQuery::parse(path).unwrap()
    }

    #[test]
    fn each_expectation_explains_itself() {
        let status_200 = Expect { status: vec![StatusMatcher::Code(200)], ..Default::default() };
        let json_ok = Expect { json: vec![(q("$.status"), json!("OK"))], ..Default::default() };
        let exists = Expect { json_exists: vec![q("$.version")], ..Default::default() };
        let contains = Expect { body_contains: Some("OK".into()), ..Default::default() };
        let fast = Expect { max_latency: Some(Duration::from_millis(100)), ..Default::default() };
        let any_2xx = Expect::default();
        let cases: Vec<(&str, &Expect, ResponseFacts<'_>, Vec<&str>)> = vec![
            ("status matches", &status_200, facts(200, ""), vec![]),
            (
                "status mismatch shows the body",
                &status_200,
                facts(503, "down"),
                vec![r#"status 503 not in [200] (body: "down")"#],
            ),
            ("default is any 2xx", &any_2xx, facts(204, ""), vec![]),
            ("default rejects 404", &any_2xx, facts(404, ""), vec!["status 404 not in [2xx]"]),
            ("json value matches", &json_ok, facts(200, r#"{"status":"OK"}"#), vec![]),
            (
                "json value differs",
                &json_ok,
                facts(200, r#"{"status":"DOWN"}"#),
                vec![r#"$.status is "DOWN", expected "OK""#],
            ),
            ("json value missing", &json_ok, facts(200, r#"{}"#), vec![r#"$.status is missing, expected "OK""#]),
            ("json exists", &exists, facts(200, r#"{"version":"1"}"#), vec![]),
            ("json absent", &exists, facts(200, r#"{"v":1}"#), vec!["$.version is missing"]),
            (
                "not json",
                &exists,
                facts(200, "<html>"),
                vec![r#"body is not JSON (expected value at line 1 column 1): "<html>""#],
            ),
            ("empty body", &exists, facts(200, ""), vec!["body is empty, expected JSON"]),
            ("body contains", &contains, facts(200, "OK"), vec![]),
            ("body lacks", &contains, facts(200, "nope"), vec![r#"body does not contain "OK" (body: "nope")"#]),
            ("too slow", &fast, facts(200, ""), vec!["took 120ms, over the 100ms limit (max_latency)"]),
        ];
        for (why, expect, facts, want) in cases {
            assert_eq!(evaluate(expect, &facts), want, "{why}");
        }
    }

    #[test]
    fn numbers_compare_by_value() {
        let e = Expect { json: vec![(q("$.n"), json!(1))], ..Default::default() };
        assert!(evaluate(&e, &facts(200, r#"{"n":1.0}"#)).is_empty());
    }

    #[test]
    fn certificate_validity_is_measured_against_now() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let e = Expect { cert_valid_for: Some(Duration::from_secs(14 * 86_400)), ..Default::default() };
        let mut f = facts(200, "");
        f.cert_not_after = Some(now + jiff::SignedDuration::from_hours(5 * 24));
        let got = evaluate(&e, &f);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("certificate expires in 5d (on "), "{got:?}");
        f.cert_not_after = Some(now + jiff::SignedDuration::from_hours(30 * 24));
        assert!(evaluate(&e, &f).is_empty());
        f.cert_not_after = Some(now - jiff::SignedDuration::from_hours(1));
        assert!(evaluate(&e, &f)[0].starts_with("certificate expired on"));
        f.cert_not_after = None;
        assert!(evaluate(&e, &f)[0].contains("did not use TLS"));
    }

    #[test]
    fn unfollowed_redirects_name_their_target() {
        let mut f = facts(302, "");
        f.location = Some("https://example.org/login");
        assert_eq!(
            evaluate(&Expect::default(), &f),
            ["status 302 not in [2xx] (redirect to https://example.org/login not followed)"]
        );
    }
}
