//! The runbook's TODO "Synapse media store: stored in container (ephemeral!)", as the warning
//! `SynapseMediaEphemeral`, from either of two facts:
//! - declared: a synapse service with `media_persistent: false` — the warning fires for as long
//!   as the declaration stands, so the daily digest keeps saying that uploaded media will be
//!   lost on the next redeploy;
//! - observed: a synapse service with an admin token and no declaration — the preset's `media`
//!   check reads Synapse's admin media statistics, and the warning fires while users have local
//!   media ("is it on a persistent disk? say so with `media_persistent: true`").

use super::synapse::LOCAL_MEDIA_USERS;
use crate::rule::RuleDef;

/// What the config says of one synapse service's media store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MediaFacts<'a> {
    /// The service's name.
    pub service: &'a str,
    /// Whether it has an admin token (so the `media` check can read the statistics).
    pub has_admin_token: bool,
    /// `media_persistent`, as declared.
    pub media_persistent: Option<bool>,
}

/// `SynapseMediaEphemeral` for every synapse service that declares `media_persistent: false`,
/// or has an admin token and declares nothing.
pub(crate) fn rules<'a>(synapses: impl IntoIterator<Item = MediaFacts<'a>>) -> Vec<RuleDef> {
    synapses
        .into_iter()
        .filter_map(|facts| {
            let (name, has_admin_token) = (facts.service, facts.has_admin_token);
            match facts.media_persistent {
                Some(false) => Some(rule(
                    name,
                    "vector(1)".into(),
                    format!(
                        "{name}: the media store is not persistent (media_persistent: false): uploaded media \
                         will be lost on the next redeploy; put media_store_path on a persistent disk or use a \
                         storage provider (S3)"
                    ),
                )),
                None if has_admin_token => Some(rule(
                    name,
                    format!("{LOCAL_MEDIA_USERS}{{service=\"{name}\"}} > 0"),
                    format!(
                        "{name}: {{{{ $value }}}} users have uploaded media to the local media store, and no \
                         persistent store is declared: if media_store_path is inside the container, that media \
                         will be lost on the next redeploy. Put it on a persistent disk or a storage provider \
                         (S3), then declare media_persistent: true"
                    ),
                )),
                _ => None,
            }
        })
        .collect()
}

fn rule(service: &str, expr: String, summary: String) -> RuleDef {
    RuleDef {
        alert: "SynapseMediaEphemeral".into(),
        expr,
        for_ms: 0,
        keep_firing_for_ms: 0,
        labels: [("severity".to_string(), "warning".to_string()), ("service".to_string(), service.to_string())]
            .into_iter()
            .collect(),
        annotations: [
            ("summary".to_string(), summary),
            ("runbook".to_string(), "Backup & Recovery: Synapse Media Store (ephemeral!)".to_string()),
        ]
        .into_iter()
        .collect(),
        origin: format!("preset synapse for {service}"),
    }
}
