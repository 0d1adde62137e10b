//! The runbook's TODO "Synapse media store: stored in container (ephemeral!)": a synapse
//! service declared `media_persistent: false` gets the warning `SynapseMediaEphemeral`,
//! firing for as long as the declaration stands, so the daily digest keeps saying that
//! uploaded media will be lost on the next redeploy. (Evidence from Synapse's admin API —
//! local media present without a declared persistent store — is not gathered yet; see
//! `docs/presets.md`.)

use super::super::config::schema::{FileConfig, ServiceKind};
use crate::rule::RuleDef;

/// `SynapseMediaEphemeral` for every synapse service with `media_persistent: false`.
pub fn rules(file: &FileConfig) -> Vec<RuleDef> {
    file.services
        .iter()
        .filter(|(_, s)| s.value.kind == ServiceKind::Synapse && s.value.media_persistent == Some(false))
        .map(|(name, _)| RuleDef {
            alert: "SynapseMediaEphemeral".into(),
            expr: "vector(1)".into(),
            for_ms: 0,
            keep_firing_for_ms: 0,
            labels: [("severity".to_string(), "warning".to_string()), ("service".to_string(), name.clone())]
                .into_iter()
                .collect(),
            annotations: [
                (
                    "summary".to_string(),
                    format!(
                        "{name}: the media store is not persistent (media_persistent: false): uploaded media \
                         will be lost on the next redeploy; put media_store_path on a persistent disk or use a \
                         storage provider (S3)"
                    ),
                ),
                ("runbook".to_string(), "Backup & Recovery: Synapse Media Store (ephemeral!)".to_string()),
            ]
            .into_iter()
            .collect(),
            origin: format!("preset synapse for {name}"),
        })
        .collect()
}
