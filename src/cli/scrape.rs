//! `mxwarden scrape URL`: fetch one metrics page with the probe's HTTP machinery (deadline,
//! cap, TLS naming, gzip) and print what our exposition parser reads from it — the samples
//! exactly as on the page, without the labels a scrape check adds.

use crate::cli::Status;
use crate::expo::{self, Label, SampleRef};
use crate::probe::expect::Expect;
use crate::probe::http::{self, Outcome};
use crate::probe::spec::{HttpSpec, Target, TlsOptions};
use crate::units::{ByteSize, HumanDuration};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use std::io::Write;

/// One sample of `--json`, borrowed from the page: serialised as it is read, never collected.
#[derive(Serialize)]
struct SampleRow<'p, 'a> {
    name: std::borrow::Cow<'a, str>,
    labels: LabelMap<'p, 'a>,
    /// A number, or the strings "NaN", "+Inf", "-Inf" (JSON has no such numbers).
    value: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp_ms: Option<i64>,
}

/// A sample's labels as a JSON object, unescaped on the way out.
struct LabelMap<'p, 'a>(&'p [Label<'a>]);

impl Serialize for LabelMap<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for l in self.0 {
            map.serialize_entry(&expo::unescape(l.name), &expo::unescape(l.value))?;
        }
        map.end()
    }
}

fn json_value(v: f64) -> serde_json::Value {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// A sample as a table line, `name{label="value",…} value`, with every control character
/// escaped (`crate::text`): what a page says can never move the cursor or recolour the
/// terminal.
fn table_line(s: &SampleRef<'_, '_>) -> String {
    use crate::text::escape_controls;
    let mut line = String::new();
    line.push_str(&escape_controls(&expo::unescape(s.name)));
    for (i, l) in s.labels.iter().enumerate() {
        line.push(if i == 0 { '{' } else { ',' });
        line.push_str(&escape_controls(&expo::unescape(l.name)));
        let value = expo::unescape(l.value).replace('\\', "\\\\").replace('"', "\\\"");
        line.push_str("=\"");
        line.push_str(&escape_controls(&value));
        line.push('"');
    }
    if !s.labels.is_empty() {
        line.push('}');
    }
    line.push(' ');
    line.push_str(&crate::rule::template::go_float(s.value));
    line.push('\n');
    line
}

/// Runs `mxwarden scrape`.
pub(crate) fn scrape(url: &str, families: &[String], json: bool, timeout: &str, body_limit: &str) -> Result<Status> {
    let url = url::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        bail!("`{url}` is not an http(s) URL");
    }
    let timeout = HumanDuration::parse(timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?.0;
    let body_limit = ByteSize::parse(body_limit).map_err(|e| anyhow::anyhow!("--body-limit: {e}"))?.0;
    let spec = HttpSpec {
        target: Target::Url(url.clone()),
        method: reqwest::Method::GET,
        headers: vec![(reqwest::header::ACCEPT, reqwest::header::HeaderValue::from_static("text/plain;version=0.0.4"))],
        bearer: None,
        body: None,
        body_limit,
        follow_redirects: true,
        tls: TlsOptions::default(),
        expect: Expect::default(),
        samples: Vec::new(),
    };
    let roots = crate::probe::tls::system_roots();
    let client = http::client(&roots, &spec.tls, spec.follow_redirects).map_err(anyhow::Error::msg)?;
    let (outcome, _) = crate::cli::runtime()?.block_on(http::run(&spec, &client, timeout, jiff::Timestamp::now));
    let body = match outcome {
        Outcome::Failed(why) => bail!("scrape of {url} failed: {why}"),
        Outcome::Judged { failures, .. } if !failures.is_empty() => {
            bail!("scrape of {url} failed: {}", failures.join("; "))
        }
        Outcome::Judged { response, .. } => response.body,
    };
    let text = std::str::from_utf8(&body)
        .map_err(|e| anyhow::anyhow!("{url} is not UTF-8 text (byte {})", e.valid_up_to()))?;
    let filter = (!families.is_empty()).then(|| expo::FamilyFilter::new(families.iter().cloned()));
    // Two passes over the page, neither owning its samples: the first only checks it, so a
    // malformed page prints nothing but the error; the second writes each sample as it is read.
    let stats =
        expo::scan_samples(text, filter.as_ref(), usize::MAX, |_| {}).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    // A closed stdout (`| head`) ends the output quietly, as `outln!` does.
    let mut written: std::io::Result<()> = Ok(());
    if json {
        let mut serializer = serde_json::Serializer::pretty(&mut out);
        let mut rows = serializer.serialize_seq(None)?;
        let mut failed = None;
        expo::scan_samples(text, filter.as_ref(), usize::MAX, |s| {
            if failed.is_none() {
                let row = SampleRow {
                    name: expo::unescape(s.name),
                    labels: LabelMap(s.labels),
                    value: json_value(s.value),
                    timestamp_ms: s.timestamp_ms,
                };
                failed = rows.serialize_element(&row).err();
            }
        })
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        written = match failed {
            Some(e) => Err(e.into()),
            None => SerializeSeq::end(rows).map_err(Into::into),
        };
        written = written.and_then(|()| out.write_all(b"\n"));
    } else {
        expo::scan_samples(text, filter.as_ref(), usize::MAX, |s| {
            if written.is_ok() {
                written = out.write_all(table_line(s).as_bytes());
            }
        })
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    }
    let written = written.and_then(|()| out.flush());
    drop(out);
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => bail!("cannot write the output: {e}"),
        _ => {}
    }
    if !json {
        eprintln!("{} samples on the page, {} shown", stats.samples, stats.kept);
    }
    Ok(Status::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lines_escape_every_control_character() {
        let page = "{\"na\\nme\u{1b}[31m\", \"k\u{7}\"=\"v\\\"\\n\u{1b}]0;title\u{7}\u{202e}\"} 1\n";
        let mut lines = Vec::new();
        expo::scan_samples(page, None, 10, |s| lines.push(table_line(s))).unwrap();
        assert_eq!(lines, ["na\\nme\\x1b[31m{k\\x07=\"v\\\"\\n\\x1b]0;title\\x07\\u{202e}\"} 1\n"]);
        assert!(!lines[0].trim_end_matches('\n').chars().any(char::is_control), "{:?}", lines[0]);
    }
}
