//! What the playbooks share: the config's services, one HTTP client per TLS setting, and
//! requests with a timeout and a body cap (a hostile or broken server's answer costs at most
//! `BODY_LIMIT`); tokens go only into the `Authorization` header, never into URLs or errors.

use crate::config::Config;
use crate::config::targets::ServiceTarget;
use crate::model::ServiceKind;
use crate::probe::spec::TlsOptions;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use url::Url;

/// The most of one answer a playbook reads.
pub(crate) const BODY_LIMIT: usize = 1 << 20;

/// How long one request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `Date` header, as a timestamp.
    pub date: Option<jiff::Timestamp>,
    /// The body (at most `BODY_LIMIT`).
    pub body: Vec<u8>,
    /// When the answer's headers arrived, halfway through the request (for clock skew).
    pub midpoint: jiff::Timestamp,
}

impl Answer {
    /// The body as JSON, if it is.
    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A short, printable piece of the body.
    pub(crate) fn snippet(&self) -> String {
        crate::notify::snippet(&String::from_utf8_lossy(&self.body[..self.body.len().min(400)]))
    }
}

/// The playbooks' context.
pub(crate) struct Cx<'a> {
    /// The config.
    pub config: &'a Config,
    roots: rustls::RootCertStore,
    clients: Mutex<HashMap<TlsOptions, reqwest::Client>>,
}

impl<'a> Cx<'a> {
    /// A context over `config`.
    pub(crate) fn new(config: &'a Config) -> Result<Self, String> {
        Ok(Self { config, roots: crate::probe::tls::system_roots(), clients: Mutex::new(HashMap::new()) })
    }

    /// The first service of `kind`.
    pub(crate) fn service(&self, kind: ServiceKind) -> Option<&'a ServiceTarget> {
        self.config.services.iter().find(|s| s.kind == kind)
    }

    fn client(&self, tls: &TlsOptions) -> Result<reqwest::Client, String> {
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(tls) {
            return Ok(c.clone());
        }
        let client = crate::probe::http::client(&self.roots, tls, true)?;
        clients.insert(tls.clone(), client.clone());
        Ok(client)
    }

    /// `GET url` with the service's TLS settings and an optional bearer token.
    pub(crate) async fn get(
        &self,
        url: &Url,
        tls: &TlsOptions,
        bearer: Option<&SecretString>,
    ) -> Result<Answer, String> {
        self.request(reqwest::Method::GET, url, tls, bearer, None).await
    }

    /// One request, bounded by [`REQUEST_TIMEOUT`] and [`BODY_LIMIT`].
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        url: &Url,
        tls: &TlsOptions,
        bearer: Option<&SecretString>,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, String> {
        let client = self.client(tls)?;
        request(&client, method, url, bearer, body).await
    }
}

/// One request with `client`, bounded by [`REQUEST_TIMEOUT`] and [`BODY_LIMIT`]; errors in
/// words, without the token.
pub(crate) async fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &Url,
    bearer: Option<&SecretString>,
    body: Option<&serde_json::Value>,
) -> Result<Answer, String> {
    let shown = crate::text::escape_controls(url.as_str()).into_owned();
    let mut req = client.request(method, url.clone()).timeout(REQUEST_TIMEOUT);
    if let Some(token) = bearer {
        req = req.bearer_auth(token.expose_secret());
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let sent = jiff::Timestamp::now();
    let mut response =
        req.send().await.map_err(|e| format!("{shown}: {}", crate::probe::explain_transport(&e, url)))?;
    let arrived = jiff::Timestamp::now();
    let half = arrived.duration_since(sent) / 2;
    let midpoint = sent.checked_add(half).unwrap_or(arrived);
    let status = response.status().as_u16();
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| jiff::fmt::rfc2822::parse(v).ok())
        .map(|z| z.timestamp());
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = BODY_LIMIT - bytes.len();
                if chunk.len() > room {
                    return Err(format!("{shown}: the answer is over {} KiB; not read", BODY_LIMIT / 1024));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(format!("{shown}: {}", crate::probe::explain_transport(&e, url))),
        }
    }
    Ok(Answer { status, date, body: bytes, midpoint })
}

/// `base` with `path` appended to its own path.
pub(crate) fn join(base: &Url, path: &str) -> Url {
    crate::preset::join(base, path)
}
