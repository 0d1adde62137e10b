//! Probes: run a `CheckSpec` and return an `Observation` of blackbox_exporter-style samples
//! and a human explanation per failure. `Prober` owns what probes share (the system's CA
//! roots, one HTTP client per distinct TLS/redirect setting), the clock, and the state the
//! PostgreSQL polls carry from one poll to the next (`postgres`).

pub mod canary;
pub(crate) mod expect;
mod explain;
pub(crate) mod http;
mod json_sample;
pub(crate) mod matrix;
pub mod postgres;
pub mod render;
pub mod scrape;
pub(crate) mod spec;
pub(crate) mod tls;

use crate::clock::Clock;
use crate::model::{Labels, Observation, Sample};
use crate::probe::spec::{CheckSpec, ProbeSpec, TlsOptions};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A transport failure in words (connection refused, DNS, TLS …), for other HTTP users.
pub(crate) fn explain_transport(error: &reqwest::Error, url: &url::Url) -> String {
    explain::transport(error, url)
}

/// The TLS failure somewhere in `error`'s source chain, in words, if there is one (for the
/// PostgreSQL and SMTP clients, whose errors wrap rustls's).
pub(crate) fn explain_tls(error: &(dyn std::error::Error + 'static), host: &str) -> Option<String> {
    explain::tls_in_chain(error, host)
}

/// Runs checks. Cheap to share; clients are built on first use and reused.
pub struct Prober {
    roots: rustls::RootCertStore,
    clients: Mutex<HashMap<(TlsOptions, bool), reqwest::Client>>,
    clock: Arc<dyn Clock>,
    /// Per-check state of the PostgreSQL polls (snapshots, size history, the running poll).
    postgres: postgres::PgChecks,
    /// Render clients (one request budget per API and key) and per-check state.
    render: render::RenderChecks,
    /// Per-check state of the Matrix canaries (the `/sync` token, messages left to redact).
    canaries: canary::Canaries,
    /// Idle connections kept per origin (`None`: no limit of our own).
    idle_per_origin: Option<usize>,
}

impl Prober {
    /// A prober with the system's CA roots and the given clock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            roots: tls::system_roots(),
            clients: Mutex::new(HashMap::new()),
            clock,
            postgres: postgres::PgChecks::default(),
            render: render::RenderChecks::default(),
            canaries: canary::Canaries::default(),
            idle_per_origin: None,
        }
    }

    /// Keeps at most `n` idle connections to each origin (`None`: no limit of our own), so a
    /// config with thousands of origins fits under the open-file limit.
    pub(crate) fn with_idle_per_origin(mut self, n: Option<usize>) -> Self {
        self.idle_per_origin = n;
        self
    }

    fn client(&self, tls: &TlsOptions, follow_redirects: bool) -> Result<reqwest::Client, String> {
        let key = (tls.clone(), follow_redirects);
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = http::client_keeping(&self.roots, tls, follow_redirects, self.idle_per_origin)?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Runs one check.
    pub async fn run(&self, spec: &CheckSpec) -> Observation {
        match &spec.probe {
            ProbeSpec::Http(http) => self.run_http(spec, http).await,
            ProbeSpec::Scrape(scrape) => self.run_scrape(spec, scrape).await,
            ProbeSpec::Postgres(pg) => {
                self.postgres.run(&spec.id, spec.service.as_deref(), pg, spec.timeout, self.clock.clone()).await
            }
            ProbeSpec::Render(r) => match self.render_client(&r.api, spec.timeout) {
                Ok(client) => {
                    self.render
                        .run(&spec.id, spec.service.as_deref(), r, client, spec.timeout, self.clock.clone())
                        .await
                }
                Err(why) => Observation::failed(spec.id.clone(), spec.service.clone(), self.clock.now(), why),
            },
            ProbeSpec::MatrixCanary(canary) => self.run_canary(spec, canary).await,
        }
    }

    /// The client of Render's API `api` (one per API and key, so every check shares one
    /// request budget); `deadline` bounds each call.
    pub(crate) fn render_client(
        &self,
        api: &render::RenderApi,
        deadline: std::time::Duration,
    ) -> Result<Arc<crate::render::RenderClient>, String> {
        self.render.client(api, || self.client(&TlsOptions::default(), false), deadline)
    }

    fn base_labels(spec: &CheckSpec) -> Labels {
        let mut labels = Labels::new();
        labels.insert("check".into(), spec.id.0.clone());
        if let Some(service) = &spec.service {
            labels.insert("service".into(), service.clone());
        }
        labels
    }

    async fn run_canary(&self, spec: &CheckSpec, canary: &canary::CanarySpec) -> Observation {
        let at = self.clock.now();
        match self.client(&TlsOptions::default(), false) {
            Ok(client) => self.canaries.run(&spec.id, spec.service.as_deref(), canary, spec.timeout, client, at).await,
            Err(why) => Observation::failed(spec.id.clone(), spec.service.clone(), at, why),
        }
    }

    async fn run_scrape(&self, spec: &CheckSpec, scrape: &crate::probe::spec::ScrapeSpec) -> Observation {
        let at = self.clock.now();
        let result = match self.client(&scrape.http.tls, scrape.http.follow_redirects) {
            Ok(client) => {
                scrape::run(scrape, &client, spec.timeout, spec.service.as_deref(), || self.clock.now()).await
            }
            Err(why) => scrape::Scraped::failed(why, std::time::Duration::ZERO),
        };
        let mut labels = Self::base_labels(spec);
        if let crate::probe::spec::Target::Url(url) = &scrape.http.target {
            labels.insert("instance".into(), scrape::instance_of(url));
        }
        let ok = result.failure.is_none();
        let sample = |name: &str, value: f64| Sample { name: name.into(), labels: labels.clone(), value };
        let samples = vec![
            sample("up", if ok { 1.0 } else { 0.0 }),
            sample("scrape_duration_seconds", result.latency.as_secs_f64()),
            sample("scrape_samples_scraped", result.total as f64),
        ];
        let kept = result.samples.len();
        Observation {
            check: spec.id.clone(),
            service: spec.service.clone(),
            at,
            ok,
            latency: result.latency,
            samples,
            scraped: result.samples,
            over_limit: result.over_limit,
            failures: result.failure.into_iter().collect(),
            summary: format!("{} samples, {kept} kept for rules", result.total),
        }
    }

    async fn run_http(&self, spec: &CheckSpec, http: &crate::probe::spec::HttpSpec) -> Observation {
        let at = self.clock.now();
        let (outcome, latency) = match self.client(&http.tls, http.follow_redirects) {
            Ok(client) => http::run(http, &client, spec.timeout, || self.clock.now()).await,
            Err(why) => (http::Outcome::Failed(why), std::time::Duration::ZERO),
        };
        let labels = Self::base_labels(spec);
        let sample = |name: &str, value: f64| Sample { name: name.into(), labels: labels.clone(), value };
        let (failures, status, cert, summary, read) = match outcome {
            http::Outcome::Judged { response, mut failures } => {
                let summary = format!("status {}", response.status);
                let mut read = Vec::new();
                if failures.is_empty() {
                    let problems;
                    (read, problems) = json_sample::read(&response.body, &http.samples);
                    failures.extend(problems);
                }
                (failures, response.status, response.cert_not_after, summary, read)
            }
            http::Outcome::Failed(why) => (vec![why], 0, None, String::new(), Vec::new()),
        };
        let ok = failures.is_empty();
        let mut samples = vec![
            sample("probe_success", if ok { 1.0 } else { 0.0 }),
            sample("probe_duration_seconds", latency.as_secs_f64()),
            sample("probe_http_status_code", f64::from(status)),
        ];
        if let Some(not_after) = cert {
            samples.push(sample("probe_ssl_earliest_cert_expiry", not_after.as_second() as f64));
        }
        samples.extend(read.iter().map(|(name, value)| sample(name, *value)));
        if !ok {
            tracing::debug!(check = %spec.id, failures = ?failures, "Check failed.");
        }
        Observation {
            check: spec.id.clone(),
            service: spec.service.clone(),
            at,
            ok,
            latency,
            samples,
            scraped: Vec::new(),
            over_limit: false,
            failures,
            summary,
        }
    }

    /// Runs all checks, at most `concurrency` at once, and returns their observations in order.
    pub async fn run_all(&self, specs: &[CheckSpec], concurrency: usize) -> Vec<Observation> {
        futures::stream::iter(specs).map(|spec| self.run(spec)).buffered(concurrency.max(1)).collect().await
    }
}
