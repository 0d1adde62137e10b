//! When each tier's digest is due, and gathering what goes into it: the period's items and the
//! alerts still open from the store, the info counters from the series, the backups' summary.
//! The message is composed by `notify::digest`; the rows and the bookkeeping (`digest:<tier>:…`
//! settings) go into the evaluation's one transaction, so a digest is neither lost nor sent
//! twice.

use crate::alert::AlertState;
use crate::notify::digest::{compose, counter_totals, info_items, merge_items, next_due};
use crate::notify::{AlertInfo, Alerting, DigestSchedule};
use crate::series::SeriesStore;
use crate::store::{Decision, NewDelivery, Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The digest schedule of every tier that has one.
pub(super) struct Digests {
    alerting: Arc<Alerting>,
    backup: Option<Arc<crate::backup::BackupPlan>>,
    /// Each tier's last digest, ms, once read from the store (or decided since).
    last: HashMap<String, i64>,
    /// The host each HTTPS check connects to, for the certificates of the daily digest.
    certificates: BTreeMap<String, String>,
}

fn last_key(tier: &str) -> String {
    format!("digest:{tier}:last")
}

fn counters_key(tier: &str) -> String {
    format!("digest:{tier}:counters")
}

impl Digests {
    pub(super) fn new(
        alerting: Arc<Alerting>,
        backup: Option<Arc<crate::backup::BackupPlan>>,
        certificates: BTreeMap<String, String>,
    ) -> Self {
        Self { alerting, backup, last: HashMap::new(), certificates }
    }

    fn due_after(&self, schedule: DigestSchedule, last: i64) -> i64 {
        let from = jiff::Timestamp::from_millisecond(last).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        next_due(schedule, &self.alerting.timezone, from).as_millisecond()
    }

    /// Forgets when each digest was last sent (read again from the store): for an instance
    /// that becomes leader after another one sent some.
    pub(super) fn forget(&mut self) {
        self.last.clear();
    }

    /// When the next digest is due, ms (`None` before the store was read, or without digests).
    pub(super) fn next_deadline(&self) -> Option<i64> {
        self.alerting
            .tiers
            .iter()
            .filter_map(|(name, tier)| Some(self.due_after(tier.digest?, *self.last.get(name)?)))
            .min()
    }

    /// Adds to `decision` each digest due at `now`, with its bookkeeping.
    pub(super) async fn collect(
        &mut self,
        store: &Store,
        series: &SeriesStore,
        now: i64,
        decision: &mut Decision,
    ) -> Result<(), StoreError> {
        let alerting = self.alerting.clone();
        for (tier_name, tier) in &alerting.tiers {
            let Some(schedule) = tier.digest else { continue };
            let last = match self.last.get(tier_name) {
                Some(last) => *last,
                None => match store.meta(&last_key(tier_name)).await?.and_then(|v| v.parse::<i64>().ok()) {
                    Some(last) => *self.last.entry(tier_name.clone()).or_insert(last),
                    None => {
                        // The first start: the first period begins now.
                        decision.meta.push((last_key(tier_name), now.to_string()));
                        self.last.insert(tier_name.clone(), now);
                        continue;
                    }
                },
            };
            let due = self.due_after(schedule, last);
            if due > now {
                continue;
            }
            let fired = merge_items(store.digest_items(tier_name, last, due).await?);
            let open: Vec<AlertInfo> = store
                .alerts()
                .await?
                .into_iter()
                .filter(|a| a.labels.get("severity") == Some(tier_name))
                .filter_map(|a| match a.state {
                    AlertState::Firing { fired_at, .. } => Some(AlertInfo {
                        name: a.alert,
                        fired_at,
                        labels: a.labels,
                        annotations: a.annotations,
                        value: a.value,
                        resolved_at: None,
                    }),
                    _ => None,
                })
                .collect();
            let before: BTreeMap<String, f64> = store
                .meta(&counters_key(tier_name))
                .await?
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default();
            let totals = counter_totals(series);
            let info = info_items(&before, &totals);
            let mut message = compose(tier_name, last, due, &fired, &open, &info);
            if let (Some(plan), DigestSchedule::Daily { .. }) = (&self.backup, schedule) {
                crate::backup::digest::append(&mut message, plan, last, due).await;
            }
            if let (Some(plan), DigestSchedule::Weekly { .. }) = (&self.backup, schedule) {
                crate::backup::digest::append_drills(&mut message, plan, last, due).await;
            }
            if let DigestSchedule::Daily { .. } = schedule {
                let expiries = crate::notify::certs::expiries(series, &self.certificates, now);
                crate::notify::certs::append(&mut message, &expiries);
            }
            tracing::info!(tier = %tier_name, items = fired.len(), open = open.len(), "Digest due.");
            decision.deliveries.extend(NewDelivery::fan_out(&tier.receivers, tier_name, &message));
            let totals = serde_json::to_string(&totals).map_err(|e| store.fail(sqlx::Error::Encode(Box::new(e))))?;
            decision.meta.push((counters_key(tier_name), totals));
            decision.meta.push((last_key(tier_name), due.to_string()));
            self.last.insert(tier_name.clone(), due);
        }
        Ok(())
    }
}
