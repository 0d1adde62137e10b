//! MAS's preset. Facts from `stack-reference.md` §2.1–2.2: discovery lives at
//! `/.well-known/openid-configuration` on the public URL; the JWKS is wherever discovery's
//! `jwks_uri` points (followed, not guessed); `/health` is on the internal listener only and
//! answers `ok` after a database round trip.

use super::{PresetCheck, ServiceFacts, get, join, json_has, path};
use crate::probe::spec::Target;

/// Every check this preset can produce.
pub(crate) const NAMES: &[&str] = &["discovery", "jwks", "health", "tls", "metrics"];

/// The checks for one MAS.
pub(crate) fn checks(s: &ServiceFacts) -> Vec<PresetCheck> {
    let discovery_url = join(&s.url, "/.well-known/openid-configuration");
    let mut discovery = json_has(
        "discovery",
        discovery_url.clone(),
        &["$.issuer", "$.authorization_endpoint", "$.token_endpoint", "$.jwks_uri", "$.userinfo_endpoint"],
    );
    if let Some(issuer) = &s.issuer {
        discovery.expect.json.push((path("$.issuer"), serde_json::Value::String(issuer.clone())));
    }
    let mut checks = vec![
        discovery,
        PresetCheck {
            target: Target::Discovered { document: discovery_url, field: "jwks_uri".into() },
            ..json_has("jwks", s.url.clone(), &["$.keys[0].kty"])
        },
    ];
    if let Some(health) = &s.health_url {
        checks.push(get("health", health.clone(), 200, Some("ok")));
    }
    checks
}
