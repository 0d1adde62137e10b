//! What the diagnosis playbooks (`diagnose`) and the `synapse` commands need to know of each
//! service beyond its checks: its URLs, its admin token, its TLS settings, its PostgreSQL
//! target and thresholds. Read from the same file after `build` has validated it, so every
//! value here is one that passed its checks; a secret read from a `*_file` is added to the
//! config's redactor like every other.

use super::build::{Origin, secret};
use super::schema::{FileConfig, ServiceKind};
use crate::probe::postgres::PostgresSpec;
use crate::probe::spec::{CheckSpec, ProbeSpec, TlsOptions};
use secrecy::SecretString;
use std::collections::BTreeMap;
use url::Url;

/// One service as the playbooks see it.
#[derive(Debug, Clone)]
pub(crate) struct ServiceTarget {
    /// Its name under `services:`.
    pub name: String,
    /// Its kind.
    pub kind: ServiceKind,
    /// `url`.
    pub url: Option<Url>,
    /// `metrics_url`.
    pub metrics_url: Option<Url>,
    /// mas: `health_url`.
    pub health_url: Option<Url>,
    /// mas: `issuer`.
    pub issuer: Option<String>,
    /// synapse: `admin_token`.
    pub admin_token: Option<SecretString>,
    /// The TLS settings its checks use.
    pub tls: TlsOptions,
    /// postgres: the server and databases, as its check has them.
    pub postgres: Option<PostgresSpec>,
    /// `thresholds` as written.
    pub thresholds: BTreeMap<String, String>,
}

/// Every service of `file`, with what `build` made of its check specs.
pub(super) fn targets(file: &FileConfig, origin: &Origin<'_>, checks: &[CheckSpec]) -> Vec<ServiceTarget> {
    let parse = |u: &Option<serde_saphyr::Spanned<String>>| u.as_ref().and_then(|u| Url::parse(u.value.trim()).ok());
    file.services
        .iter()
        .map(|(name, spanned)| {
            let s = &spanned.value;
            let mine = || checks.iter().filter(|c| c.service.as_deref() == Some(name.as_str()));
            let tls = mine()
                .find_map(|c| match &c.probe {
                    ProbeSpec::Http(h) => Some(h.tls.clone()),
                    ProbeSpec::Scrape(sc) => Some(sc.http.tls.clone()),
                    ProbeSpec::Postgres(_) | ProbeSpec::Render(_) | ProbeSpec::MatrixCanary(_) => None,
                })
                .unwrap_or_default();
            let postgres = mine().find_map(|c| match &c.probe {
                ProbeSpec::Postgres(pg) => Some(pg.clone()),
                _ => None,
            });
            let admin_token = secret(
                origin,
                s.admin_token.as_ref(),
                s.admin_token_file.as_ref(),
                &format!("services.{name}.admin_token"),
                &spanned.referenced,
            )
            .ok()
            .flatten();
            ServiceTarget {
                name: name.clone(),
                kind: s.kind,
                url: parse(&s.url),
                metrics_url: parse(&s.metrics_url),
                health_url: parse(&s.health_url),
                issuer: s.issuer.clone(),
                admin_token,
                tls,
                postgres,
                thresholds: s.thresholds.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect(),
            }
        })
        .collect()
}
