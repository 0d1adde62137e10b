//! The HTTP probe: one request (two when the URL must be discovered first) under one hard
//! deadline that covers DNS, connect, TLS, headers and body; the body read in chunks and
//! abandoned at the cap; the certificate's expiry taken from the handshake. Produces the
//! facts that `expect::evaluate` judges, or a transport failure in words.

use super::expect::{ResponseFacts, evaluate, seconds};
use super::explain;
use crate::probe::spec::{HttpSpec, Target};
use crate::units::{HumanDuration, human_bytes};
use reqwest::Client;
use secrecy::ExposeSecret;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use url::Url;

/// The one way mxwarden builds an HTTP client (probes, notifiers, `mxwarden scrape`): rustls
/// over `roots` with `tls`'s options, our user agent, the certificate kept for expiry checks,
/// and up to 10 redirects when `follow_redirects`.
pub(crate) fn client(
    roots: &rustls::RootCertStore,
    tls: &crate::probe::spec::TlsOptions,
    follow_redirects: bool,
) -> Result<Client, String> {
    client_keeping(roots, tls, follow_redirects, None)
}

/// [`client`] keeping at most `idle_per_origin` idle connections to each origin (`None`: no
/// limit of our own), so that thousands of origins fit under the open-file limit.
pub(crate) fn client_keeping(
    roots: &rustls::RootCertStore,
    tls: &crate::probe::spec::TlsOptions,
    follow_redirects: bool,
    idle_per_origin: Option<usize>,
) -> Result<Client, String> {
    let config = super::tls::client_config(roots, tls)?;
    let redirects =
        if follow_redirects { reqwest::redirect::Policy::limited(10) } else { reqwest::redirect::Policy::none() };
    let builder = Client::builder();
    let builder = match idle_per_origin {
        Some(n) => builder.pool_max_idle_per_host(n),
        None => builder,
    };
    builder
        .tls_backend_preconfigured(config)
        .tls_info(true)
        .redirect(redirects)
        .user_agent(concat!("mxwarden/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A complete response, as far as a probe keeps it.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Status code.
    pub status: u16,
    /// `Location` header, if any.
    pub location: Option<String>,
    /// The whole body (within the cap).
    pub body: Vec<u8>,
    /// Certificate `notAfter` of a TLS connection.
    pub cert_not_after: Option<jiff::Timestamp>,
    /// The URL finally requested (after discovery).
    pub url: Url,
}

/// How a probe run ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A response arrived and was judged: the failures, empty when good.
    Judged {
        /// The response.
        response: Fetched,
        /// Failed expectations.
        failures: Vec<String>,
    },
    /// No usable response: why.
    Failed(String),
}

/// Where a request was when the deadline hit.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Phase {
    Headers = 0,
    Body = 1,
    Discovery = 2,
}

/// Runs `spec` with `client` within `timeout`; `now` is read after the response for expiry.
pub(crate) async fn run(
    spec: &HttpSpec,
    client: &Client,
    timeout: Duration,
    now: impl Fn() -> jiff::Timestamp,
) -> (Outcome, Duration) {
    let started = Instant::now();
    let phase = AtomicU8::new(Phase::Headers as u8);
    let result = tokio::time::timeout(timeout, exchange(spec, client, &phase)).await;
    let latency = started.elapsed();
    let outcome = match result {
        Err(_) => {
            let waiting = match phase.load(Ordering::Relaxed) {
                1 => "while reading the response body",
                2 => "while fetching the discovery document",
                _ => "waiting for the response headers",
            };
            Outcome::Failed(format!(
                "timed out after {} {waiting} from {} (timeout {})",
                seconds(latency),
                spec.target.describe(),
                HumanDuration(timeout)
            ))
        }
        Ok(Err(why)) => Outcome::Failed(why),
        Ok(Ok(response)) => {
            let failures = evaluate(
                &spec.expect,
                &ResponseFacts {
                    status: response.status,
                    location: response.location.as_deref(),
                    body: &response.body,
                    latency,
                    cert_not_after: response.cert_not_after,
                    now: now(),
                },
            );
            Outcome::Judged { response, failures }
        }
    };
    (outcome, latency)
}

async fn exchange(spec: &HttpSpec, client: &Client, phase: &AtomicU8) -> Result<Fetched, String> {
    let url = match &spec.target {
        Target::Url(url) => url.clone(),
        Target::Discovered { document, field } => {
            phase.store(Phase::Discovery as u8, Ordering::Relaxed);
            discover(spec, client, document, field).await?
        }
    };
    phase.store(Phase::Headers as u8, Ordering::Relaxed);
    fetch(spec, client, &url, phase, true).await
}

/// Reads the URL in `field` of the JSON document at `document`.
async fn discover(spec: &HttpSpec, client: &Client, document: &Url, field: &str) -> Result<Url, String> {
    let unused = AtomicU8::new(0);
    let doc = fetch(spec, client, document, &unused, false).await?;
    if !(200..300).contains(&doc.status) {
        return Err(format!("discovery document {document} answered status {}", doc.status));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&doc.body).map_err(|e| format!("discovery document {document} is not JSON ({e})"))?;
    let text = json
        .get(field)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("discovery document {document} has no `{field}`"))?;
    let url = Url::parse(text).map_err(|e| format!("`{field}` in {document} is not a URL: {text:?} ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("`{field}` in {document} is not an http(s) URL: {text}"));
    }
    Ok(url)
}

async fn fetch(
    spec: &HttpSpec,
    client: &Client,
    url: &Url,
    phase: &AtomicU8,
    send_body: bool,
) -> Result<Fetched, String> {
    let mut request = client.request(spec.method.clone(), url.clone());
    for (name, value) in &spec.headers {
        request = request.header(name, value);
    }
    if let Some(token) = &spec.bearer {
        request = request.bearer_auth(token.expose_secret());
    }
    if send_body && let Some(body) = &spec.body {
        request = request.body(body.clone());
    }
    let mut response = request.send().await.map_err(|e| explain::transport(&e, url))?;
    phase.store(Phase::Body as u8, Ordering::Relaxed);
    let status = response.status().as_u16();
    let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let cert_not_after = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .and_then(not_after);
    let limit = spec.body_limit;
    if let Some(length) = response.content_length()
        && length > limit
    {
        return Err(over_cap(url, Some(length), limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| explain::transport(&e, url))? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(over_cap(url, None, limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { status, location, body, cert_not_after, url: response.url().clone() })
}

fn over_cap(url: &Url, announced: Option<u64>, limit: u64) -> String {
    match announced {
        Some(length) => format!(
            "response body from {url} is {}, over the {} cap (body_limit); not read",
            human_bytes(length),
            human_bytes(limit)
        ),
        None => format!(
            "response body from {url} is larger than the {} cap (body_limit); stopped reading",
            human_bytes(limit)
        ),
    }
}

fn not_after(der: &[u8]) -> Option<jiff::Timestamp> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}
