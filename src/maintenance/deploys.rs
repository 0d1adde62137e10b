//! Deploys are expected downtime: while a linked service's Render deploy is in progress, a
//! window covers it and the services that need it, so their pages are held (the gate,
//! `crate::mute`, treats it like any maintenance window). The window ends when the deploy is
//! `live` and every other check of the service has reported once since (one round: a check
//! still failing then pages, its page released from the hold), or at once when the deploy
//! failed or was canceled (the old version keeps running, and `RenderDeployFailed` pages).
//! A window never outlasts [`MAX_DEPLOY_WINDOW`] since the deploy was last seen in progress,
//! so an API that goes quiet mid-deploy cannot hold pages for good. Pure: fed observations
//! by the evaluator, read by the calendar.

use crate::model::{Millis, Observation};
use std::collections::{BTreeMap, BTreeSet};

/// The longest a deploy window stays open after the deploy was last seen in progress.
pub const MAX_DEPLOY_WINDOW: Millis = 60 * 60_000;

/// An open deploy window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployWindow {
    /// The deploying service.
    pub service: String,
    /// It and the services that need it.
    pub services: Vec<String>,
    /// The deploy (`dep-…`).
    pub deploy: String,
    /// Since when, ms.
    pub starts_at: Millis,
    /// The latest it ends, ms (the real end comes with the live deploy's round of checks).
    pub ends_at: Millis,
}

#[derive(Debug, Clone)]
enum Phase {
    /// The deploy is running.
    InProgress,
    /// Live since `live_at`; waiting for these checks to report.
    Settling { live_at: Millis, waiting: BTreeSet<String> },
}

#[derive(Debug, Clone)]
struct Open {
    deploy: String,
    since: Millis,
    last_seen: Millis,
    phase: Phase,
}

/// The deploy windows of every linked service.
#[derive(Debug, Default)]
pub struct DeployWindows {
    /// Service → what a window over it covers (it and its dependents).
    covers: BTreeMap<String, Vec<String>>,
    /// Service → its checks other than the render check.
    checks: BTreeMap<String, BTreeSet<String>>,
    open: BTreeMap<String, Open>,
}

impl DeployWindows {
    /// Windows over `covers` (service → it and the services that need it), ending after one
    /// round of `checks` (service → its other checks).
    pub fn new(covers: BTreeMap<String, Vec<String>>, checks: BTreeMap<String, BTreeSet<String>>) -> Self {
        Self { covers, checks, open: BTreeMap::new() }
    }

    /// Takes one result; returns whether a window opened or closed.
    pub fn observe(&mut self, o: &Observation) -> bool {
        let Some(service) = o.service.as_deref() else { return false };
        let t = o.at.as_millisecond();
        let before = self.open.len();
        let progress = o.samples.iter().find(|s| s.name == "render_deploy_in_progress");
        if let Some(p) = progress {
            let deploy = p.labels.get("deploy").cloned().unwrap_or_default();
            let status = o
                .samples
                .iter()
                .find(|s| s.name == "render_deploy_info")
                .and_then(|s| s.labels.get("status"))
                .map_or("", String::as_str);
            let phase = crate::render::model::DeployPhase::of(status);
            if p.value == 1.0 {
                let open = self.open.entry(service.to_string()).or_insert_with(|| Open {
                    deploy: deploy.clone(),
                    since: t,
                    last_seen: t,
                    phase: Phase::InProgress,
                });
                let opened_now = open.since == t && open.deploy == deploy;
                let another = open.deploy != deploy;
                open.deploy = deploy;
                open.last_seen = t;
                let was_settling = matches!(open.phase, Phase::Settling { .. });
                open.phase = Phase::InProgress;
                return opened_now || another || was_settling || before != self.open.len();
            }
            let Some(open) = self.open.get_mut(service) else { return false };
            if matches!(open.phase, Phase::Settling { .. }) {
                return false;
            }
            use crate::render::model::DeployPhase as D;
            if matches!(phase, D::Failed | D::Canceled) {
                tracing::info!(service, deploy = %open.deploy, status, "Deploy ended without going live; its window ends.");
                self.open.remove(service);
                return true;
            }
            let waiting = self.checks.get(service).cloned().unwrap_or_default();
            tracing::info!(service, deploy = %open.deploy, "Deploy is live; the window ends after one round of checks.");
            if waiting.is_empty() {
                self.open.remove(service);
                return true;
            }
            open.phase = Phase::Settling { live_at: t, waiting };
            return false;
        }
        let Some(open) = self.open.get_mut(service) else { return false };
        if let Phase::Settling { live_at, waiting } = &mut open.phase
            && t >= *live_at
            && waiting.remove(&o.check.0)
            && waiting.is_empty()
        {
            tracing::info!(service, deploy = %open.deploy, "A round of checks after the deploy; its window ends.");
            self.open.remove(service);
            return true;
        }
        false
    }

    /// Drops windows past their longest life; returns whether any was.
    pub fn expire(&mut self, now: Millis) -> bool {
        let before = self.open.len();
        self.open.retain(|_, o| now < o.last_seen.saturating_add(MAX_DEPLOY_WINDOW));
        before != self.open.len()
    }

    /// The windows open now.
    pub fn windows(&self) -> Vec<DeployWindow> {
        self.open
            .iter()
            .map(|(service, o)| DeployWindow {
                service: service.clone(),
                services: self.covers.get(service).cloned().unwrap_or_else(|| vec![service.clone()]),
                deploy: o.deploy.clone(),
                starts_at: o.since,
                ends_at: o.last_seen.saturating_add(MAX_DEPLOY_WINDOW),
            })
            .collect()
    }
}

/// Render's own maintenance runs of the linked resources (`names`: Render id → service) as
/// calendar occurrences: (in progress, scheduled or waiting for a fix). Render gives no end,
/// so an occurrence ends where it starts; finished ones are left out.
pub fn render_maintenance(
    runs: Vec<crate::render::model::Maintenance>,
    names: &BTreeMap<String, String>,
) -> (Vec<super::Occurrence>, Vec<super::Occurrence>) {
    let (mut active, mut upcoming) = (Vec::new(), Vec::new());
    for m in runs {
        let at =
            m.scheduled_at.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map_or(0, |t| t.as_millisecond());
        let service = names.get(&m.resource_id).cloned().unwrap_or_else(|| m.resource_id.clone());
        let state = m.state.clone();
        let o = super::Occurrence {
            source: super::Source::Render { id: m.id, kind: m.kind, state: m.state },
            services: vec![service],
            starts_at: at,
            ends_at: at,
        };
        match state.as_str() {
            "in_progress" => active.push(o),
            "scheduled" | "user_fix_required" => upcoming.push(o),
            _ => {}
        }
    }
    (active, upcoming)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CheckId, Sample};

    fn obs(check: &str, at_ms: i64, samples: Vec<Sample>) -> Observation {
        Observation {
            check: CheckId(check.into()),
            service: Some("synapse".into()),
            at: jiff::Timestamp::from_millisecond(at_ms).unwrap(),
            ok: true,
            latency: std::time::Duration::ZERO,
            samples,
            scraped: Vec::new(),
            over_limit: false,
            failures: Vec::new(),
            summary: String::new(),
        }
    }

    fn render(at: i64, status: &str) -> Observation {
        let in_progress =
            crate::render::model::DeployPhase::of(status) == crate::render::model::DeployPhase::InProgress;
        let s = |name: &str, labels: &[(&str, &str)], value: f64| Sample {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            value,
        };
        obs(
            "synapse/render",
            at,
            vec![
                s("render_deploy_info", &[("deploy", "dep-1"), ("status", status)], 1.0),
                s("render_deploy_in_progress", &[("deploy", "dep-1")], if in_progress { 1.0 } else { 0.0 }),
            ],
        )
    }

    fn windows() -> DeployWindows {
        DeployWindows::new(
            [("synapse".to_string(), vec!["synapse".to_string(), "bot".to_string()])].into(),
            [("synapse".to_string(), ["synapse/health".to_string(), "synapse/versions".to_string()].into())].into(),
        )
    }

    #[test]
    fn a_live_deploy_closes_its_window_after_one_round_of_the_other_checks() {
        let mut w = windows();
        assert!(!w.observe(&render(0, "live")), "a live deploy opens nothing");
        assert!(w.observe(&render(1_000, "update_in_progress")), "opens");
        assert_eq!(w.windows()[0].services, ["synapse", "bot"], "covers the dependents too");
        assert!(!w.observe(&obs("synapse/health", 2_000, vec![])), "a check during the deploy changes nothing");
        assert!(!w.observe(&render(2_500, "update_in_progress")), "the same deploy, still running");
        assert!(!w.observe(&render(3_000, "live")), "live: waiting for a round");
        assert!(!w.observe(&obs("synapse/health", 4_000, vec![])), "one of two checks");
        assert_eq!(w.windows().len(), 1);
        assert!(w.observe(&obs("synapse/versions", 5_000, vec![])), "the round is complete: closed");
        assert!(w.windows().is_empty());
    }

    #[test]
    fn a_failed_deploy_closes_at_once_and_a_silent_api_cannot_hold_for_good() {
        let mut w = windows();
        w.observe(&render(0, "build_in_progress"));
        assert!(w.observe(&render(1_000, "build_failed")), "failed: closed at once");
        assert!(w.windows().is_empty());
        w.observe(&render(2_000, "queued"));
        assert!(!w.expire(2_000 + MAX_DEPLOY_WINDOW - 1));
        assert!(w.expire(2_000 + MAX_DEPLOY_WINDOW), "expired");
        assert!(w.windows().is_empty());
    }
}
