//! Synapse's preset. Facts from `stack-reference.md` §1.1: the health endpoint is `/health`
//! (plain-text `OK`), not the runbook's `/_synapse/health`, which does not exist;
//! `server_version` answers without a token, so a separate check proves an admin token works.
//! With an admin token and no `media_persistent` declaration, `media` reads how many users
//! have uploaded local media: the evidence behind `SynapseMediaEphemeral` (`preset::media`).

use super::{PresetCheck, ServiceFacts, get, join, json_has, json_sample};

/// The sample `media` reports: `total` of Synapse's admin media statistics, the number of
/// users with media in the local media store.
pub(crate) const LOCAL_MEDIA_USERS: &str = "synapse_admin_local_media_users";

/// Every check this preset can produce.
pub(crate) const NAMES: &[&str] =
    &["health", "client-versions", "admin-version", "admin-token", "media", "federation", "tls", "metrics"];

/// The checks for one Synapse.
pub(crate) fn checks(s: &ServiceFacts) -> Vec<PresetCheck> {
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
        if s.media_persistent.is_none() {
            // GET /_synapse/admin/v1/statistics/users/media (admin only): `total` counts the
            // users with local media, whatever the storage providers.
            checks.push(PresetCheck {
                bearer: Some(token.clone()),
                samples: vec![json_sample(LOCAL_MEDIA_USERS, "$.total")],
                ..json_has("media", join(&s.url, "/_synapse/admin/v1/statistics/users/media?limit=1"), &["$.total"])
            });
        }
    }
    if let Some(federation) = &s.federation_url {
        checks.push(json_has("federation", join(federation, "/_matrix/federation/v1/version"), &["$.server.version"]));
    }
    checks
}
