//! Vikunja's preset. Facts from `stack-reference.md` §3.1–3.2: `/health` answers plain-text
//! `OK` (the runbook expected JSON `{"status":"ok"}`) after pinging the database;
//! `/api/v1/info` is public and carries `version` and `frontend_url`.

use super::{PresetCheck, ServiceFacts, get, join, json_has};

/// Every check this preset can produce.
pub(crate) const NAMES: &[&str] = &["health", "info", "tls", "metrics"];

/// The checks for one Vikunja.
pub(crate) fn checks(s: &ServiceFacts) -> Vec<PresetCheck> {
    vec![
        get("health", join(&s.url, "/health"), 200, Some("OK")),
        json_has("info", join(&s.url, "/api/v1/info"), &["$.version", "$.frontend_url"]),
    ]
}
