//! The scrape probe: fetch a Prometheus metrics page through the HTTP probe (same deadline,
//! cap, TLS naming; gzip accepted), parse it with our own `expo` parser keeping only the
//! families the rules need, and label every sample with `service` and `instance` the way
//! Prometheus adds `job` and `instance` (a scraped label of the same name becomes
//! `exported_<name>`). Adds `up`, `scrape_duration_seconds` and `scrape_samples_scraped`.

use super::http::{self, Outcome};
use crate::model::{Labels, Sample};
use crate::probe::spec::ScrapeSpec;
use std::time::Duration;

/// What a scrape produced.
pub struct Scraped {
    /// The page's samples (kept families only), labelled.
    pub samples: Vec<Sample>,
    /// Samples on the page, kept or not.
    pub total: usize,
    /// Why the scrape failed, if it did.
    pub failure: Option<String>,
    /// HTTP status, 0 when none arrived.
    pub status: u16,
    /// Wall time.
    pub latency: Duration,
}

/// Scrapes once.
pub async fn run(
    spec: &ScrapeSpec,
    client: &reqwest::Client,
    timeout: Duration,
    service: Option<&str>,
    now: impl Fn() -> jiff::Timestamp,
) -> Scraped {
    let (outcome, latency) = http::run(&spec.http, client, timeout, now).await;
    let (response, failures) = match outcome {
        Outcome::Failed(why) => {
            return Scraped { samples: Vec::new(), total: 0, failure: Some(why), status: 0, latency };
        }
        Outcome::Judged { response, failures } => (response, failures),
    };
    let fail =
        |why: String| Scraped { samples: Vec::new(), total: 0, failure: Some(why), status: response.status, latency };
    if let Some(first) = failures.into_iter().next() {
        return fail(first);
    }
    let text = match std::str::from_utf8(&response.body) {
        Ok(t) => t,
        Err(e) => return fail(format!("metrics page is not UTF-8 (byte {})", e.valid_up_to())),
    };
    let filter = spec.families.as_ref().map(|f| crate::expo::FamilyFilter::new(f.iter().cloned()));
    let parsed = match crate::expo::parse_samples(text, filter.as_ref()) {
        Ok(p) => p,
        Err(e) => return fail(format!("metrics page {}: {e}", response.url)),
    };
    let total = parsed.total;
    let instance = instance_of(&response.url);
    let samples = parsed
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Labels = Labels::new();
            for (k, v) in s.labels {
                let k = if k == "service" || k == "instance" { format!("exported_{k}") } else { k };
                labels.insert(k, v);
            }
            if let Some(service) = service {
                labels.insert("service".into(), service.to_string());
            }
            labels.insert("instance".into(), instance.clone());
            Sample { name: s.name, labels, value: s.value }
        })
        .collect();
    Scraped { samples, total, failure: None, status: response.status, latency }
}

/// `host:port` of a URL, as Prometheus's `instance` label.
pub fn instance_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}
