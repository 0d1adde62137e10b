//! Synapse's preset. Facts from `stack-reference.md` §1.1: the health endpoint is `/health`
//! (plain-text `OK`), not the runbook's `/_synapse/health`, which does not exist;
//! `server_version` answers without a token, so a separate check proves an admin token works.

use super::{PresetCheck, ServiceFacts, get, join, json_has};

/// Every check this preset can produce.
pub const NAMES: &[&str] =
    &["health", "client-versions", "admin-version", "admin-token", "federation", "tls", "metrics"];

/// The checks for one Synapse.
pub fn checks(s: &ServiceFacts) -> Vec<PresetCheck> {
    let mut checks = vec![
        get("health", join(&s.url, "/health"), 200, Some("OK")),
        json_has("client-versions", join(&s.url, "/_matrix/client/versions"), &["$.versions[0]"]),
        PresetCheck {
            bearer: s.admin_token.clone(),
            ..json_has("admin-version", join(&s.url, "/_synapse/admin/v1/server_version"), &["$.server_version"])
        },
    ];
    if let Some(token) = &s.admin_token {
        checks.push(PresetCheck {
            bearer: Some(token.clone()),
            ..json_has("admin-token", join(&s.url, "/_synapse/admin/v2/users?limit=1"), &["$.total"])
        });
    }
    if let Some(federation) = &s.federation_url {
        checks.push(json_has("federation", join(federation, "/_matrix/federation/v1/version"), &["$.server.version"]));
    }
    checks
}
