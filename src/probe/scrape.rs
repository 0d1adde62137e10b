//! The scrape probe: fetch a Prometheus metrics page through the HTTP probe (same deadline,
//! cap, TLS naming; gzip accepted), parse it with our own `expo` parser keeping only the
//! families the rules need, and label every sample with `service` and `instance` the way
//! Prometheus adds `job` and `instance` (a scraped label of the same name becomes
//! `exported_<name>`). Adds `up`, `scrape_duration_seconds` and `scrape_samples_scraped`.
//!
//! Memory is bounded while parsing: the parser hands over only the samples of kept families,
//! each is owned as it comes, and the first one over the check's `sample_limit` stops the
//! parse and fails the scrape, so one scrape owns at most its body and `sample_limit` samples
//! however many series the page has (`docs/configuration.md`, "Memory").

use super::http::{self, Outcome};
use crate::expo::{self, ScanError};
use crate::model::{Labels, Sample};
use crate::probe::spec::ScrapeSpec;
use std::time::Duration;

/// What a scrape produced.
pub(crate) struct Scraped {
    /// The page's samples (kept families only), labelled.
    pub samples: Vec<Sample>,
    /// Samples on the page, kept or not (up to where reading stopped, on a failure).
    pub total: usize,
    /// Why the scrape failed, if it did.
    pub failure: Option<String>,
    /// The page had more samples to keep than `sample_limit`.
    pub over_limit: bool,
    /// Wall time.
    pub latency: Duration,
}

impl Scraped {
    /// A scrape that failed for `why`.
    pub(crate) fn failed(why: String, latency: Duration) -> Self {
        Self { samples: Vec::new(), total: 0, failure: Some(why), over_limit: false, latency }
    }
}

/// Scrapes once.
pub(crate) async fn run(
    spec: &ScrapeSpec,
    client: &reqwest::Client,
    timeout: Duration,
    service: Option<&str>,
    now: impl Fn() -> jiff::Timestamp,
) -> Scraped {
    let (outcome, latency) = http::run(&spec.http, client, timeout, now).await;
    let (response, failures) = match outcome {
        Outcome::Failed(why) => return Scraped::failed(why, latency),
        Outcome::Judged { response, failures } => (response, failures),
    };
    if let Some(first) = failures.into_iter().next() {
        return Scraped::failed(first, latency);
    }
    let text = match std::str::from_utf8(&response.body) {
        Ok(t) => t,
        Err(e) => {
            return Scraped::failed(format!("metrics page is not UTF-8 (byte {})", e.valid_up_to()), latency);
        }
    };
    let instance = instance_of(&response.url);
    match read(text, spec, service, &instance) {
        Ok((samples, total)) => Scraped { samples, total, failure: None, over_limit: false, latency },
        Err(e @ ScanError::Malformed(_)) => Scraped::failed(format!("metrics page {}: {e}", response.url), latency),
        Err(ScanError::OverLimit { limit, line }) => {
            tracing::warn!(url = %response.url, limit, line, "Scrape over its sample limit; nothing kept.");
            Scraped { over_limit: true, ..Scraped::failed(over_limit(&response.url, limit, line), latency) }
        }
    }
}

/// The failure of a page over the limit, in words.
fn over_limit(url: &url::Url, limit: usize, line: usize) -> String {
    format!(
        "metrics page {url} has more than {limit} samples of the families the rules read (sample_limit, at most \
         series_limit); stopped reading at line {line} and kept nothing"
    )
}

/// Parses `text`, owning only the kept samples, labelled; the samples and the page's sample
/// count. Stops at the first kept sample over `spec.sample_limit`.
fn read(
    text: &str,
    spec: &ScrapeSpec,
    service: Option<&str>,
    instance: &str,
) -> Result<(Vec<Sample>, usize), ScanError> {
    let filter = spec.families.as_ref().map(|f| expo::FamilyFilter::new(f.iter().cloned()));
    let mut samples = Vec::new();
    let stats = expo::scan_samples(text, filter.as_ref(), spec.sample_limit, |s| {
        let mut labels = Labels::new();
        for l in s.labels {
            let name = expo::unescape(l.name);
            let name =
                if name == "service" || name == "instance" { format!("exported_{name}") } else { name.into_owned() };
            labels.insert(name, expo::unescape(l.value).into_owned());
        }
        if let Some(service) = service {
            labels.insert("service".into(), service.to_string());
        }
        labels.insert("instance".into(), instance.to_string());
        samples.push(Sample { name: expo::unescape(s.name).into_owned(), labels, value: s.value });
    })?;
    Ok((samples, stats.samples))
}

/// `host:port` of a URL, as Prometheus's `instance` label.
pub(crate) fn instance_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}
