//! `mxwarden scrape URL`: fetch one metrics page with the probe's HTTP machinery (deadline,
//! cap, TLS naming, gzip) and print what our exposition parser reads from it — the samples
//! exactly as on the page, without the labels a scrape check adds.

use crate::cli::{Status, outln};
use crate::probe::expect::Expect;
use crate::probe::http::{self, Outcome};
use crate::probe::spec::{HttpSpec, Target, TlsOptions};
use crate::units::{ByteSize, HumanDuration};
use anyhow::{Context, Result, bail};
use serde::Serialize;

#[derive(Serialize)]
struct SampleRow {
    name: String,
    labels: serde_json::Map<String, serde_json::Value>,
    /// A number, or the strings "NaN", "+Inf", "-Inf" (JSON has no such numbers).
    value: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp_ms: Option<i64>,
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

/// Runs `mxwarden scrape`.
pub fn scrape(url: &str, families: &[String], json: bool, timeout: &str, body_limit: &str) -> Result<Status> {
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
    let filter = (!families.is_empty()).then(|| crate::expo::FamilyFilter::new(families.iter().cloned()));
    let parsed = crate::expo::parse_samples(text, filter.as_ref()).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    if json {
        let rows: Vec<SampleRow> = parsed
            .samples
            .into_iter()
            .map(|s| SampleRow {
                name: s.name,
                labels: s.labels.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect(),
                value: json_value(s.value),
                timestamp_ms: s.timestamp_ms,
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for s in &parsed.samples {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            outln!("{}{labels} {}", s.name, crate::rule::template::go_float(s.value));
        }
        eprintln!("{} samples on the page, {} shown", parsed.total, parsed.samples.len());
    }
    Ok(Status::Healthy)
}
