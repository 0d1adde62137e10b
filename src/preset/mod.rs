//! Presets: what the runbook checks for each kind of service, with the endpoints and answers
//! of today's software (`docs/presets.md` lists each check and every correction to the
//! runbook). `config::build` asks a preset for its checks and applies the user's `disable`
//! and `overrides`; the probes run them like any other check.

pub mod alerts;
mod authentik;
pub(crate) mod backup;
pub(crate) mod canary;
pub mod down;
mod mas;
pub mod media;
pub mod render;
pub mod rules;
mod synapse;
mod vikunja;

use crate::model::{ServiceKind, StatusMatcher};
use crate::probe::expect::{Expect, JsonQuery};
use crate::probe::spec::{JsonSample, Target};
use secrecy::SecretString;
use std::time::Duration;
use url::Url;

/// A service as the presets need it: URLs parsed, secrets resolved.
#[derive(Debug, Clone)]
pub(crate) struct ServiceFacts {
    /// The kind.
    pub kind: ServiceKind,
    /// Public base URL.
    pub url: Url,
    /// synapse: admin access token.
    pub admin_token: Option<SecretString>,
    /// synapse: federation base URL.
    pub federation_url: Option<Url>,
    /// mas: internal health URL.
    pub health_url: Option<Url>,
    /// mas: expected issuer.
    pub issuer: Option<String>,
    /// authentik: API token.
    pub api_token: Option<SecretString>,
    /// How long certificates must stay valid.
    pub cert_valid_for: Duration,
    /// synapse: `media_persistent` as declared (`None`: not declared).
    pub media_persistent: Option<bool>,
}

/// One check a preset contributes.
#[derive(Debug, Clone)]
pub(crate) struct PresetCheck {
    /// Short name; the full name is `<service>/<short>`.
    pub short: &'static str,
    /// What it requests.
    pub target: Target,
    /// Bearer token to send.
    pub bearer: Option<SecretString>,
    /// What the answer must be.
    pub expect: Expect,
    /// Numbers of the JSON answer reported as samples.
    pub samples: Vec<JsonSample>,
}

/// Every short name a kind can produce (also those that need an optional setting), so
/// `disable` and `overrides` can be checked even when the check is not generated.
pub(crate) fn check_names(kind: ServiceKind) -> &'static [&'static str] {
    match kind {
        ServiceKind::Synapse => synapse::NAMES,
        ServiceKind::Mas => mas::NAMES,
        ServiceKind::Vikunja => vikunja::NAMES,
        ServiceKind::Authentik => authentik::NAMES,
        // One check, `<service>/postgres`, built by `config::build` from the DSN (no URL).
        ServiceKind::Postgres => &["postgres"],
    }
}

/// The checks a service of this kind gets.
pub(crate) fn checks(service: &ServiceFacts) -> Vec<PresetCheck> {
    let mut checks = match service.kind {
        ServiceKind::Synapse => synapse::checks(service),
        ServiceKind::Mas => mas::checks(service),
        ServiceKind::Vikunja => vikunja::checks(service),
        ServiceKind::Authentik => authentik::checks(service),
        ServiceKind::Postgres => Vec::new(),
    };
    if service.url.scheme() == "https" {
        checks.push(tls_check(service));
    }
    checks
}

/// The checks of a kind that say whether the service is up: the ones `<Kind>Down` judges.
/// Left out: `tls` (an expiring certificate is `CertificateExpiringSoon`), the token checks
/// (`AdminTokenInvalid`) and `media` (evidence for `SynapseMediaEphemeral`).
pub(crate) fn availability_checks(kind: ServiceKind) -> &'static [&'static str] {
    match kind {
        ServiceKind::Synapse => &["health", "client-versions", "admin-version", "federation"],
        ServiceKind::Mas => &["discovery", "jwks", "health"],
        ServiceKind::Vikunja => &["health", "info"],
        ServiceKind::Authentik => &["live", "ready"],
        ServiceKind::Postgres => &["postgres"],
    }
}

/// The check of a kind that proves its token works, if it has one.
pub(crate) fn token_check(kind: ServiceKind) -> Option<&'static str> {
    match kind {
        ServiceKind::Synapse => Some("admin-token"),
        ServiceKind::Authentik => Some("version"),
        _ => None,
    }
}

/// `tls`: the certificate of the public URL stays valid long enough, whatever the status.
fn tls_check(service: &ServiceFacts) -> PresetCheck {
    PresetCheck {
        short: "tls",
        target: Target::Url(service.url.clone()),
        bearer: None,
        expect: Expect {
            status: (1..=5).map(StatusMatcher::Class).collect(),
            cert_valid_for: Some(service.cert_valid_for),
            ..Expect::default()
        },
        samples: Vec::new(),
    }
}

/// `base` with `path` appended to its own path (so a base under a sub-path keeps it).
pub(crate) fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path.trim_start_matches('/'));
    url.set_path(&joined);
    url.set_query(query);
    url
}

/// A check that `path` answers `status` and, if given, the body contains `text`.
fn get(short: &'static str, url: Url, status: u16, body_contains: Option<&str>) -> PresetCheck {
    PresetCheck {
        short,
        target: Target::Url(url),
        bearer: None,
        expect: Expect {
            status: vec![StatusMatcher::Code(status)],
            body_contains: body_contains.map(str::to_string),
            ..Expect::default()
        },
        samples: Vec::new(),
    }
}

/// Parses a JSONPath known at compile time.
fn path(text: &str) -> JsonQuery {
    JsonQuery::parse(text).unwrap_or_else(|e| unreachable!("preset JSONPath is valid: {e}"))
}

/// `name` = the number at `at` in the JSON answer.
fn json_sample(name: &str, at: &str) -> JsonSample {
    JsonSample { name: name.to_string(), path: path(at) }
}

/// A check that `url` answers 200 with JSON in which every path exists.
fn json_has(short: &'static str, url: Url, paths: &[&str]) -> PresetCheck {
    PresetCheck {
        short,
        target: Target::Url(url),
        bearer: None,
        expect: Expect {
            status: vec![StatusMatcher::Code(200)],
            json_exists: paths.iter().map(|p| path(p)).collect(),
            ..Expect::default()
        },
        samples: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: ServiceKind, url: &str) -> ServiceFacts {
        ServiceFacts {
            kind,
            url: Url::parse(url).unwrap(),
            admin_token: None,
            federation_url: None,
            health_url: None,
            issuer: None,
            api_token: None,
            cert_valid_for: Duration::from_secs(14 * 86_400),
            media_persistent: None,
        }
    }

    fn names(s: &ServiceFacts) -> Vec<&'static str> {
        checks(s).iter().map(|c| c.short).collect()
    }

    #[test]
    fn optional_checks_appear_only_with_their_setting() {
        let mut s = facts(ServiceKind::Synapse, "http://127.0.0.1:8008");
        assert_eq!(names(&s), ["health", "client-versions", "admin-version"], "plain http: no tls check");
        s.admin_token = Some("t".into());
        s.federation_url = Some(Url::parse("http://127.0.0.1:8448").unwrap());
        s.url = Url::parse("https://matrix.example.org").unwrap();
        assert_eq!(
            names(&s),
            ["health", "client-versions", "admin-version", "admin-token", "media", "federation", "tls"]
        );
        s.media_persistent = Some(true);
        assert_eq!(
            names(&s),
            ["health", "client-versions", "admin-version", "admin-token", "federation", "tls"],
            "a declared media store needs no evidence"
        );
        let mut m = facts(ServiceKind::Mas, "https://auth.example.org");
        assert_eq!(names(&m), ["discovery", "jwks", "tls"], "no health without health_url");
        m.health_url = Some(Url::parse("http://mas:8081/health").unwrap());
        assert_eq!(names(&m), ["discovery", "jwks", "health", "tls"]);
        let mut a = facts(ServiceKind::Authentik, "http://auth");
        assert_eq!(names(&a), ["live", "ready"], "the version API needs a token");
        a.api_token = Some("t".into());
        assert_eq!(names(&a), ["live", "ready", "version"]);
        assert_eq!(names(&facts(ServiceKind::Vikunja, "http://v")), ["health", "info"]);
    }

    #[test]
    fn every_generated_name_is_declared() {
        let mut s = facts(ServiceKind::Synapse, "https://m");
        s.admin_token = Some("t".into());
        s.federation_url = Some(s.url.clone());
        s.health_url = Some(s.url.clone());
        s.api_token = Some("t".into());
        for kind in [ServiceKind::Synapse, ServiceKind::Mas, ServiceKind::Vikunja, ServiceKind::Authentik] {
            s.kind = kind;
            for c in checks(&s) {
                assert!(check_names(kind).contains(&c.short), "{kind:?}/{} undeclared", c.short);
            }
        }
    }

    #[test]
    fn paths_join_under_the_base_path() {
        let base = Url::parse("https://example.org/vikunja/").unwrap();
        assert_eq!(join(&base, "/health").as_str(), "https://example.org/vikunja/health");
        let root = Url::parse("https://example.org").unwrap();
        assert_eq!(join(&root, "/health").as_str(), "https://example.org/health");
        assert_eq!(join(&root, "/u?limit=1").as_str(), "https://example.org/u?limit=1");
    }
}
