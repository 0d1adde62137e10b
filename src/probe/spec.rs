//! The check spec: what `config` builds from the user's checks and the presets, and what
//! the probes run. Plain data with secrets kept as `SecretString`; `config show` prints it
//! through `CheckView`, which redacts them.

use super::expect::Expect;
use crate::model::CheckId;
use crate::redact::REDACTED;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// One check, ready to run.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// Unique name, e.g. `synapse/health` or `homepage`.
    pub id: CheckId,
    /// The `service` label, if any.
    pub service: Option<String>,
    /// How often the daemon runs it.
    pub interval: Duration,
    /// Hard deadline for one run.
    pub timeout: Duration,
    /// What to do.
    pub probe: ProbeSpec,
}

/// The probe kinds.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// An HTTP request with expectations on the response.
    Http(HttpSpec),
    /// A Prometheus metrics scrape.
    Scrape(ScrapeSpec),
    /// A poll of a PostgreSQL server (`kind: postgres`).
    Postgres(crate::probe::postgres::PostgresSpec),
    /// A poll of Render's API for a linked service (`render: srv-…` / `dpg-…`).
    Render(crate::probe::render::RenderSpec),
    /// A Matrix round trip: a message sent is a message seen (`matrix_canary`).
    MatrixCanary(crate::probe::canary::CanarySpec),
}

/// A scrape: an HTTP GET of a metrics page (any 2xx) whose samples feed the rules.
#[derive(Debug, Clone)]
pub struct ScrapeSpec {
    /// The request (target, headers, bearer, cap, TLS); its `expect` is "any 2xx".
    pub http: HttpSpec,
    /// Metric families to keep (what the rules select); `None` keeps every family.
    pub families: Option<std::collections::BTreeSet<String>>,
    /// Most samples of those families one scrape keeps (`sample_limit`, at most
    /// `series_limit`): the first over it fails the scrape.
    pub sample_limit: usize,
}

/// An HTTP probe, fully resolved.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// Where to send the request.
    pub target: Target,
    /// The method.
    pub method: Method,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Bearer token for `Authorization`.
    pub bearer: Option<SecretString>,
    /// Request body.
    pub body: Option<String>,
    /// Largest body read, in bytes.
    pub body_limit: u64,
    /// Follow redirects.
    pub follow_redirects: bool,
    /// TLS settings.
    pub tls: TlsOptions,
    /// What the response must look like.
    pub expect: Expect,
    /// Numbers read from the JSON body and reported as samples for the rules.
    pub samples: Vec<JsonSample>,
}

/// A number in a JSON response reported as a sample, the way json_exporter turns a JSON API
/// into metrics: `name` gets the one number `path` selects (e.g. `$.total` of a Synapse admin
/// statistics answer).
#[derive(Debug, Clone)]
pub struct JsonSample {
    /// The sample's metric name.
    pub name: String,
    /// Where the number is.
    pub path: super::expect::JsonQuery,
}

/// The URL of a request: fixed, or read from a JSON document first (OIDC discovery's
/// `jwks_uri`). Both requests share the check's deadline and body cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This URL.
    Url(Url),
    /// The URL found in `field` of the JSON object at `document`.
    Discovered {
        /// Where the JSON document is.
        document: Url,
        /// The top-level string field holding the URL.
        field: String,
    },
}

impl Target {
    /// The URL shown to people: the fixed URL, or `<document> → field`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Url(url) => url.to_string(),
            Self::Discovered { document, field } => format!("{document} → {field}"),
        }
    }
}

/// TLS settings of one probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate.
    pub insecure_skip_verify: bool,
}

/// A printable, secret-free view of a check for `config show`.
#[derive(Debug, Serialize)]
pub(crate) struct CheckView {
    /// Name.
    pub name: String,
    /// Service label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Interval.
    pub interval: String,
    /// Timeout.
    pub timeout: String,
    /// The HTTP request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpView>,
    /// The scrape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeView>,
    /// The PostgreSQL poll (DSN redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<crate::probe::postgres::PostgresView>,
    /// The Render poll (API key redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub render: Option<crate::probe::render::RenderView>,
    /// The Matrix canary (tokens redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix_canary: Option<CanaryView>,
}

/// The canary part of `CheckView`.
#[derive(Debug, Serialize)]
pub(crate) struct CanaryView {
    /// The sender's homeserver.
    pub homeserver: String,
    /// The room.
    pub room: String,
    /// Always `<redacted>`.
    pub access_token: &'static str,
    /// The reader's homeserver, when another account reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
    /// The slow threshold.
    pub slow_after: String,
}

/// The scrape part of `CheckView`.
#[derive(Debug, Serialize)]
pub(crate) struct ScrapeView {
    /// URL.
    pub url: String,
    /// `<redacted>` when a bearer token is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<&'static str>,
    /// Body cap.
    pub body_limit: String,
    /// Most samples kept per scrape.
    pub sample_limit: usize,
    /// Families kept, or `all`.
    pub families: String,
}

/// The HTTP part of `CheckView`.
#[derive(Debug, Serialize)]
pub(crate) struct HttpView {
    /// URL (or discovery document and field).
    pub url: String,
    /// Method.
    pub method: String,
    /// Headers; values of all but known-harmless headers (Accept, User-Agent, …) are redacted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// `<redacted>` when a bearer token is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<&'static str>,
    /// Body cap.
    pub body_limit: String,
    /// Redirects followed.
    pub follow_redirects: bool,
    /// Extra CA file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Verification off.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Expectations.
    pub expect: super::expect::ExpectView,
}

impl HttpSpec {
    fn view(&self) -> HttpView {
        HttpView {
            url: self.target.describe(),
            method: self.method.to_string(),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| {
                    if is_sensitive_header(name) {
                        format!("{name}: {REDACTED}")
                    } else {
                        format!("{name}: {}", value.to_str().unwrap_or("<binary>"))
                    }
                })
                .collect(),
            bearer_token: self.bearer.as_ref().map(|_| REDACTED),
            body_limit: crate::units::ByteSize(self.body_limit).to_string(),
            follow_redirects: self.follow_redirects,
            ca_file: self.tls.ca_file.as_ref().map(|p| p.display().to_string()),
            insecure_skip_verify: self.tls.insecure_skip_verify,
            expect: self.expect.view(),
        }
    }
}

impl CheckSpec {
    /// The printable view, secrets redacted.
    pub(crate) fn view(&self) -> CheckView {
        let postgres = match &self.probe {
            ProbeSpec::Postgres(pg) => Some(pg.view()),
            _ => None,
        };
        let render = match &self.probe {
            ProbeSpec::Render(r) => Some(r.view()),
            _ => None,
        };
        let matrix_canary = match &self.probe {
            ProbeSpec::MatrixCanary(c) => Some(CanaryView {
                homeserver: c.sender.homeserver.to_string(),
                room: c.room.clone(),
                access_token: REDACTED,
                reader: c.reader.as_ref().map(|r| r.homeserver.to_string()),
                slow_after: crate::units::HumanDuration(c.slow_after).to_string(),
            }),
            _ => None,
        };
        let (http, scrape) = match &self.probe {
            ProbeSpec::Postgres(_) | ProbeSpec::Render(_) | ProbeSpec::MatrixCanary(_) => (None, None),
            ProbeSpec::Http(http) => (Some(http.view()), None),
            ProbeSpec::Scrape(scrape) => (
                None,
                Some(ScrapeView {
                    url: scrape.http.target.describe(),
                    bearer_token: scrape.http.bearer.as_ref().map(|_| REDACTED),
                    body_limit: crate::units::ByteSize(scrape.http.body_limit).to_string(),
                    sample_limit: scrape.sample_limit,
                    families: scrape
                        .families
                        .as_ref()
                        .map_or_else(|| "all".to_string(), |f| f.iter().cloned().collect::<Vec<_>>().join(", ")),
                }),
            ),
        };
        CheckView {
            name: self.id.to_string(),
            service: self.service.clone(),
            interval: crate::units::HumanDuration(self.interval).to_string(),
            timeout: crate::units::HumanDuration(self.timeout).to_string(),
            http,
            scrape,
            postgres,
            render,
            matrix_canary,
        }
    }
}

/// Headers whose values are never shown: all but the known-harmless ones
/// (`crate::redact::HARMLESS_HEADERS`), so a credential header with an unusual name
/// (`X-Auth`) is hidden too.
pub(crate) fn is_sensitive_header(name: &HeaderName) -> bool {
    !crate::redact::is_harmless_header(name.as_str())
}
