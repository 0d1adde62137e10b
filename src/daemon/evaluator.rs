//! The evaluator: the one task that owns alert state. It ingests observations into the series
//! windows and the uptime history, evaluates the rules, routes their changes through the
//! notification gate and commits them with the outbox rows; digests go out on schedule.

use super::HEARTBEAT_MS;
use crate::clock::Clock;
use crate::live::Live;
use crate::model::{Labels, Observation};
use crate::notify::{AlertInfo, Alerting, Kind};
use crate::rule::RuleEngine;
use crate::series::SeriesStore;
use crate::store::{History, NewDelivery, Store};
use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

pub(super) struct Evaluator {
    pub(super) store: Store,
    pub(super) engine: RuleEngine,
    pub(super) series: SeriesStore,
    pub(super) alerting: Option<Arc<Alerting>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) wake: Arc<Notify>,
    /// Checks that have not reported since start.
    pub(super) unseen: std::collections::HashSet<String>,
    /// Until when to wait for them, ms.
    pub(super) warm_until: i64,
    /// Uptime history.
    pub(super) history: Arc<History>,
    /// What the status page shows.
    pub(super) live: Arc<Live>,
    /// Results not yet written to the history.
    pub(super) recorded: Vec<(String, crate::history::Result)>,
    /// The last heartbeat, ms.
    pub(super) beat_at: i64,
    /// The last retention run, ms.
    pub(super) pruned_at: i64,
    /// When freed memory was last handed back to the system, ms.
    pub(super) trimmed_at: i64,
    /// Backups, summarised in the daily digests.
    pub(super) backup: Option<Arc<crate::backup::BackupPlan>>,
    /// Holds pages during maintenance and dependency outages.
    pub(super) gate: crate::mute::Gate,
    /// Maintenance windows: results inside one are recorded as maintenance. Shared with the
    /// gate, which re-reads the ad hoc windows from the store every evaluation.
    pub(super) calendar: Arc<crate::maintenance::Calendar>,
}

impl Evaluator {
    pub(super) async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Observation>,
        every: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                observation = rx.recv() => match observation {
                    Some(o) => self.ingest(o),
                    None => return,
                },
                _ = ticker.tick() => {
                    if let Err(e) = self.flush_history().await {
                        tracing::error!(error = %e, "History could not be stored; retrying next tick.");
                    }
                    if let Err(e) = self.evaluate().await {
                        tracing::error!(error = %e, "Evaluation could not be stored; retrying next tick.");
                    }
                    if let Err(e) = self.digests().await {
                        tracing::error!(error = %e, "Digest failed; retrying next tick.");
                    }
                    let now = self.clock.now().as_millisecond();
                    if now - self.trimmed_at >= 60_000 {
                        crate::memory::release_free_pages();
                        self.trimmed_at = now;
                    }
                }
                _ = stop.changed() => {
                    if let Err(e) = self.flush_history().await {
                        tracing::error!(error = %e, "The last results could not be stored.");
                    }
                    return;
                }
            }
        }
    }

    fn ingest(&mut self, o: Observation) {
        self.unseen.remove(&o.check.0);
        let t = o.at.as_millisecond();
        let latency_ms = o.latency.as_millis() as i64;
        let in_maintenance = o.service.as_deref().is_some_and(|s| self.calendar.in_maintenance(s, t));
        let state = match (in_maintenance, o.ok) {
            (true, _) => crate::history::State::Maintenance,
            (false, true) => crate::history::State::Up,
            (false, false) => crate::history::State::Down,
        };
        if self.live.has(&o.check.0) {
            self.recorded.push((o.check.0.clone(), crate::history::Result { at_ms: t, state, latency_ms }));
            self.live.observe(&o);
        }
        if !o.ok {
            tracing::debug!(check = %o.check, detail = %o.detail(), "Check failed.");
        }
        let samples = o
            .samples
            .into_iter()
            .map(|s| {
                let mut labels: Labels = s.labels;
                labels.insert("__name__".into(), s.name);
                (labels, s.value)
            })
            .collect();
        self.series.ingest_scrape(&o.check.0, t, samples);
    }

    /// Writes the results since the last flush (and the heartbeat) in one transaction; beats
    /// at least every `HEARTBEAT_MS` when there is nothing to write; prunes hourly.
    async fn flush_history(&mut self) -> Result<()> {
        let now = self.clock.now().as_millisecond();
        if !self.recorded.is_empty() {
            self.history.record(&self.recorded, now).await?;
            self.recorded.clear();
            self.beat_at = now;
        } else if now - self.beat_at >= HEARTBEAT_MS {
            self.history.heartbeat(now).await?;
            self.beat_at = now;
        }
        if now - self.pruned_at >= 3_600_000 {
            self.history.prune(now).await?;
            self.pruned_at = now;
        }
        Ok(())
    }

    async fn evaluate(&mut self) -> Result<()> {
        let now = self.clock.now().as_millisecond();
        if !self.unseen.is_empty() && now < self.warm_until {
            return Ok(());
        }
        self.series.prune(now);
        let evaluation = self.engine.evaluate(&self.series, now);
        for (alert, error) in &evaluation.errors {
            tracing::warn!(%alert, %error, "Rule could not be evaluated.");
        }
        let mut routed = crate::route::route(self.alerting.as_deref(), &evaluation.changes, now);
        routed.deliveries = self.gate.pass(std::mem::take(&mut routed.deliveries), &evaluation.alerts, now).await?;
        if routed.alerts.is_empty() && routed.deliveries.is_empty() && routed.digest.is_empty() {
            return self.gate.committed().await.map_err(Into::into);
        }
        self.store.commit(&routed.alerts, &routed.deliveries, &routed.digest, now).await?;
        self.gate.committed().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Sends each digest whose time has come.
    async fn digests(&mut self) -> Result<()> {
        let Some(alerting) = self.alerting.clone() else { return Ok(()) };
        let now = self.clock.now();
        for (tier_name, tier) in &alerting.tiers {
            let Some(schedule) = tier.digest else { continue };
            let key = format!("digest:{tier_name}:last");
            let last = match self.store.meta(&key).await?.and_then(|v| v.parse::<i64>().ok()) {
                Some(v) => v,
                None => {
                    self.store.set_meta(&key, &now.as_millisecond().to_string()).await?;
                    continue;
                }
            };
            let from = jiff::Timestamp::from_millisecond(last).unwrap_or(now);
            let due = crate::notify::digest::next_due(schedule, &alerting.timezone, from);
            if due > now {
                continue;
            }
            let to = due.as_millisecond();
            let items = self.store.digest_items(tier_name, last, to).await?;
            let fired = merge_items(items);
            let open: Vec<AlertInfo> = self
                .store
                .alerts()
                .await?
                .into_iter()
                .filter(|a| {
                    matches!(a.state, crate::alert::AlertState::Firing { .. })
                        && a.labels.get("severity") == Some(tier_name)
                })
                .map(|a| AlertInfo {
                    name: a.alert,
                    fired_at: match a.state {
                        crate::alert::AlertState::Firing { fired_at, .. } => fired_at,
                        _ => 0,
                    },
                    labels: a.labels,
                    annotations: a.annotations,
                    value: a.value,
                    resolved_at: None,
                })
                .collect();
            let info = self.info_items(tier_name).await?;
            let mut message = crate::notify::digest::compose(tier_name, last, to, &fired, &open, &info);
            if let (Some(plan), Some(crate::notify::DigestSchedule::Daily { .. })) = (&self.backup, tier.digest) {
                crate::backup::digest::append(&mut message, plan, last, to).await;
            }
            let deliveries: Vec<NewDelivery> = tier
                .receivers
                .iter()
                .map(|r| NewDelivery {
                    receiver: r.clone(),
                    tier: tier_name.clone(),
                    notification: message.clone(),
                    fallback_of: None,
                })
                .collect();
            self.store.enqueue(&deliveries, to).await?;
            self.store.set_meta(&key, &to.to_string()).await?;
            self.wake.notify_one();
        }
        Ok(())
    }
}

impl Evaluator {
    /// The runbook's info counts since this tier's last digest: each counter's total now minus
    /// its total then (a reset counts from zero). Counters not scraped are left out.
    async fn info_items(&self, tier: &str) -> Result<Vec<crate::notify::digest::InfoItem>> {
        let key = format!("digest:{tier}:counters");
        let before: std::collections::BTreeMap<String, f64> =
            self.store.meta(&key).await?.and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default();
        let mut now = std::collections::BTreeMap::new();
        let mut items = Vec::new();
        for (what, name, matcher) in crate::notify::digest::INFO_COUNTERS {
            let series: Vec<f64> = self
                .series
                .named(name)
                .filter(|s| matcher.is_none_or(|(k, v)| s.labels.get(k).is_some_and(|x| x == v)))
                .filter_map(|s| s.points.back().map(|p| p.v).filter(|v| !crate::series::is_stale(*v)))
                .collect();
            if series.is_empty() {
                continue;
            }
            let total: f64 = series.iter().sum();
            now.insert(what.to_string(), total);
            let count = before.get(*what).map(|b| if total >= *b { total - b } else { total });
            items.push((what.to_string(), count));
        }
        self.store.set_meta(&key, &serde_json::to_string(&now).unwrap_or_default()).await?;
        Ok(items)
    }
}

/// Joins firing and resolved items of the same incident into one entry each.
fn merge_items(items: Vec<crate::notify::Notification>) -> Vec<AlertInfo> {
    let mut merged: Vec<AlertInfo> = Vec::new();
    for n in items {
        for a in n.alerts {
            match merged.iter_mut().find(|m| m.labels == a.labels && m.fired_at == a.fired_at) {
                Some(m) if n.kind == Kind::Resolved => m.resolved_at = a.resolved_at,
                Some(_) => {}
                None => merged.push(a),
            }
        }
    }
    merged
}
