//! The evaluator: the one task that owns alert state. A result is judged as it arrives — the
//! rules that read its samples are evaluated at once, and a page they decide is committed and
//! handed to the dispatcher before the next result is looked at. What time alone changes
//! (`for:`, `keep_firing_for:`, reminders, digests, a maintenance window's end or reminder, a
//! dependency's settle time) happens at its own deadline, from one next-deadline timer; a full
//! sweep at least every evaluation period catches the rest (series going stale, range windows
//! moving, ad hoc windows opened by another process). Every decision — alert states, outbox
//! rows, held and released pages, reminders marked, digest bookkeeping — is one store
//! transaction; one the store refused is kept and retried, so nothing decided is lost.
//!
//! Only the leader of the instances sharing the store judges (`leader`); a follower keeps
//! its series windows, the status page and the history like the leader, so that it can take
//! over warm. On becoming leader it reads alert state, held pages and digest bookkeeping from
//! the store afresh (as at a start) and judges everything at once. What it decided but could
//! not commit when it lost leadership is kept: if it leads again with the very next term,
//! nobody decided in between and it is committed; otherwise it is dropped — the store refused
//! it (fenced), and the leader in between decided from the same observations.

use super::digests::Digests;
use super::failpoint::{self, Point};
use super::recorder::Recorder;
use crate::clock::Clock;
use crate::live::Live;
use crate::maintenance::Calendar;
use crate::model::Observation;
use crate::mute::Gate;
use crate::notify::Alerting;
use crate::rule::{Evaluation, RuleEngine};
use crate::series::SeriesStore;
use crate::store::{Decision, Store, StoreError};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// How soon a decision the store refused is tried again, ms.
const RETRY_MS: i64 = 1_000;

/// Waiting for every check's first result after a start: evaluating before that would resolve
/// restored alerts for lack of data.
pub(super) struct WarmUp {
    /// Checks that have not reported since start.
    pub(super) unseen: HashSet<String>,
    /// Until when to wait for them, ms.
    pub(super) until: i64,
}

impl WarmUp {
    fn warming(&self, now: i64) -> bool {
        !self.unseen.is_empty() && now < self.until
    }
}

/// What the evaluator is built from.
pub(super) struct Parts {
    pub(super) store: Store,
    pub(super) engine: RuleEngine,
    pub(super) series: SeriesStore,
    pub(super) alerting: Option<Arc<Alerting>>,
    pub(super) clock: Arc<dyn Clock>,
    /// Wakes the dispatcher.
    pub(super) wake: Arc<Notify>,
    pub(super) warm: WarmUp,
    pub(super) recorder: Recorder,
    pub(super) live: Arc<Live>,
    pub(super) gate: Gate,
    pub(super) calendar: Arc<Calendar>,
    pub(super) backup: Option<Arc<crate::backup::BackupPlan>>,
    /// The longest wait between full sweeps.
    pub(super) sweep_every: Duration,
    /// Render deploys in progress: expected downtime.
    pub(super) deploys: crate::maintenance::deploys::DeployWindows,
    /// Woken after a commit with critical pages: their diagnoses follow (`followup`).
    pub(super) diagnosis: Arc<Notify>,
    /// The host of each HTTPS check, for the daily digest's certificates.
    pub(super) certificates: std::collections::BTreeMap<String, String>,
    /// Beaten on every turn of the loop (`/healthz`, the heartbeat).
    pub(super) watchdog: Arc<crate::watchdog::Watchdog>,
    /// Copies samples and `ALERTS` to `remote_write:` queues (never waits).
    pub(super) remote_write: crate::remote_write::Tap,
    /// A config with many checks: new results are judged by the checks that reported
    /// (`RuleEngine::evaluate_arrivals`) rather than every series of the metrics they brought.
    pub(super) targeted: bool,
    /// The term while this process leads (`leader`).
    pub(super) leading: watch::Receiver<Option<i64>>,
    /// A rule engine with no alert state, for each new leadership.
    pub(super) fresh_engine: Box<dyn Fn() -> RuleEngine + Send + Sync>,
}

/// Owns alert state; see the module docs.
pub(super) struct Evaluator {
    store: Store,
    engine: RuleEngine,
    series: SeriesStore,
    alerting: Option<Arc<Alerting>>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    warm: WarmUp,
    recorder: Recorder,
    live: Arc<Live>,
    gate: Gate,
    calendar: Arc<Calendar>,
    digests: Option<Digests>,
    sweep_every_ms: i64,
    /// When the next full sweep is due, ms.
    sweep_at: i64,
    /// Decisions the store refused, oldest first, to be committed before anything newer.
    unsaved: Vec<Decision>,
    /// Render deploys in progress, and whether a window opened or closed since the last sweep.
    deploys: crate::maintenance::deploys::DeployWindows,
    deploys_changed: bool,
    diagnosis: Arc<Notify>,
    watchdog: Arc<crate::watchdog::Watchdog>,
    remote_write: crate::remote_write::Tap,
    targeted: bool,
    leading: watch::Receiver<Option<i64>>,
    /// The term this evaluator judges under, once alert state was read for it.
    term: Option<i64>,
    /// The term it judged under last, while it does not lead.
    last_term: Option<i64>,
    fresh_engine: Box<dyn Fn() -> RuleEngine + Send + Sync>,
}

impl Evaluator {
    pub(super) fn new(p: Parts) -> Self {
        let now = p.clock.now().as_millisecond();
        let digests = p.alerting.clone().map(|a| Digests::new(a, p.backup, p.certificates));
        let sweep_every_ms = i64::try_from(p.sweep_every.as_millis()).unwrap_or(i64::MAX).max(1);
        Self {
            store: p.store,
            engine: p.engine,
            series: p.series,
            alerting: p.alerting,
            clock: p.clock,
            wake: p.wake,
            warm: p.warm,
            recorder: p.recorder,
            live: p.live,
            gate: p.gate,
            calendar: p.calendar,
            digests,
            sweep_every_ms,
            sweep_at: now,
            unsaved: Vec::new(),
            deploys: p.deploys,
            deploys_changed: false,
            diagnosis: p.diagnosis,
            watchdog: p.watchdog,
            remote_write: p.remote_write,
            targeted: p.targeted,
            leading: p.leading,
            term: None,
            last_term: None,
            fresh_engine: p.fresh_engine,
        }
    }

    /// Follows this process's leadership: on becoming leader, alert state, held pages and
    /// digest bookkeeping are read from the store afresh and everything is judged at the next
    /// turn; on losing it, decisions not committed are dropped (the store would refuse them).
    async fn follow_leadership(&mut self) {
        let now_leading = *self.leading.borrow_and_update();
        if now_leading == self.term {
            return;
        }
        let Some(term) = now_leading else {
            // Its state and the decisions not committed are kept: if it leads again with the
            // very next term, nobody decided in between and they still stand.
            self.last_term = self.term.take().or(self.last_term);
            return;
        };
        if self.last_term.is_some_and(|last| last.checked_add(1) == Some(term)) {
            self.term = Some(term);
            self.sweep_at = self.clock.now().as_millisecond();
            let decisions = self.unsaved.len();
            tracing::info!(
                term,
                decisions,
                "Leading again, and nobody led in between: alert state and decisions kept."
            );
            return;
        }
        if !self.unsaved.is_empty() {
            let decisions = self.unsaved.len();
            tracing::warn!(
                decisions,
                "Another instance led meanwhile: decisions not committed are dropped; it decided."
            );
        }
        match self.store.alerts().await {
            Ok(restored) => {
                let mut engine = (self.fresh_engine)();
                let alerts = restored.len();
                for a in restored {
                    engine.restore(&a.alert, a.labels, a.state, a.value, a.annotations);
                }
                self.engine = engine;
                self.gate.forget();
                if let Some(d) = &mut self.digests {
                    d.forget();
                }
                self.unsaved.clear();
                self.term = Some(term);
                self.sweep_at = self.clock.now().as_millisecond();
                tracing::info!(term, alerts, "Restored alert state: leading.");
            }
            Err(e) => {
                tracing::error!(term, error = %e, "Alert state could not be read; judging waits for it.");
            }
        }
    }

    /// Runs until `stop` turns true or every check's timer is gone.
    pub(super) async fn run(&mut self, mut rx: mpsc::Receiver<Observation>, mut stop: watch::Receiver<bool>) {
        let mut leading = self.leading.clone();
        loop {
            failpoint::stall().await;
            self.watchdog.beat();
            self.follow_leadership().await;
            let now = self.clock.now().as_millisecond();
            let wait = Duration::from_millis(u64::try_from(self.next_deadline(now) - now).unwrap_or(0));
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = leading.changed() => {}
                observation = rx.recv() => {
                    let Some(first) = observation else { break };
                    let (mut names, mut checks) = (BTreeSet::new(), BTreeSet::new());
                    self.ingest(first, &mut names, &mut checks);
                    // Results that arrived together are judged together.
                    while let Ok(more) = rx.try_recv() {
                        self.ingest(more, &mut names, &mut checks);
                    }
                    self.on_arrival(&names, &checks).await;
                }
                _ = tokio::time::sleep(wait) => self.on_deadline().await,
            }
        }
        let now = self.clock.now().as_millisecond();
        if let Err(e) = self.recorder.flush_all(now).await {
            tracing::error!(error = %e, "The last results could not be stored.");
        }
        if !self.unsaved.is_empty() && self.term.is_some() {
            self.commit(Decision::default(), now).await;
        }
    }

    /// The next moment something is due: a full sweep, an alert's or the gate's deadline, a
    /// digest, a history write, the end of the warm-up, a retry.
    fn next_deadline(&self, now: i64) -> i64 {
        let mut at = self.sweep_at.min(self.recorder.next_deadline());
        if *self.leading.borrow() != self.term {
            // Alert state to read again for a new leadership.
            return at.min(now + RETRY_MS);
        }
        if self.term.is_none() {
            return at;
        }
        if self.warm.warming(now) {
            return at.min(self.warm.until);
        }
        let deadlines = [
            self.engine.next_deadline(),
            self.gate.next_deadline(now),
            self.digests.as_ref().and_then(Digests::next_deadline),
            (!self.unsaved.is_empty()).then_some(now + RETRY_MS),
        ];
        for d in deadlines.into_iter().flatten() {
            at = at.min(d);
        }
        at
    }

    /// Takes one result into the series, the status page and the history.
    fn ingest(&mut self, o: Observation, names: &mut BTreeSet<String>, checks: &mut BTreeSet<String>) {
        self.warm.unseen.remove(&o.check.0);
        if self.targeted && !checks.contains(&o.check.0) {
            checks.insert(o.check.0.clone());
        }
        let t = o.at.as_millisecond();
        if self.deploys.observe(&o) | self.deploys.expire(t) {
            self.calendar.set_deploys(self.deploys.windows());
            self.deploys_changed = true;
        }
        let in_maintenance = o.service.as_deref().is_some_and(|s| self.calendar.in_maintenance(s, t));
        if self.live.has(&o.check.0) {
            self.recorder.record(&o, in_maintenance);
            self.live.observe(&o);
        }
        if !o.ok {
            tracing::debug!(check = %o.check, detail = %o.detail(), "Check failed.");
        }
        // The rules that read any of these names are judged at once: a scrape's samples too.
        for s in o.samples.iter().chain(&o.scraped) {
            if !names.contains(&s.name) {
                names.insert(s.name.clone());
            }
        }
        // Only the leader copies samples out: instances sharing a store probe the same checks,
        // and a receiver refuses one series' samples interleaved from two writers.
        if self.leading.borrow().is_some() {
            self.remote_write.observation(&o);
        }
        self.series.ingest_result(&o.check.0, t, o.samples, o.scraped);
    }

    /// Judges new results at once: the rules that read them.
    async fn on_arrival(&mut self, names: &BTreeSet<String>, checks: &BTreeSet<String>) {
        let now = self.clock.now().as_millisecond();
        if self.warm.warming(now) || self.term.is_none() {
            return;
        }
        if !self.warm.unseen.is_empty() || self.warm.until > now {
            // The warm-up just ended: everything is judged once.
            self.warm = WarmUp { unseen: HashSet::new(), until: now };
            return self.sweep(now).await;
        }
        if std::mem::take(&mut self.deploys_changed) {
            // A deploy window opened or closed: the gate decides again (held pages released).
            return self.sweep(now).await;
        }
        let names = names.iter().map(String::as_str);
        let evaluation = if self.targeted {
            self.engine.evaluate_arrivals(&self.series, now, names, checks)
        } else {
            self.engine.evaluate_reading(&self.series, now, names)
        };
        if evaluation.changes.is_empty() && self.unsaved.is_empty() {
            return;
        }
        self.decide(evaluation, now, false).await;
    }

    /// Does what is due now: a full sweep (every rule, the gate with fresh windows and
    /// reminders, digests), and the history's writes.
    async fn on_deadline(&mut self) {
        let now = self.clock.now().as_millisecond();
        if self.term.is_none() {
            // Following: the windows are kept (to take over warm) and pruned, nothing judged.
            self.sweep_at = now.saturating_add(self.sweep_every_ms);
            self.series.prune(now);
        } else if !self.warm.warming(now) {
            self.sweep(now).await;
        }
        if let Err(e) = self.recorder.flush(now).await {
            tracing::error!(error = %e, "History could not be stored; retrying.");
        }
    }

    async fn sweep(&mut self, now: i64) {
        self.sweep_at = now.saturating_add(self.sweep_every_ms);
        if let Err(e) = self.gate.refresh(now).await {
            tracing::error!(error = %e, "Maintenance windows could not be read; using the last known.");
        }
        self.series.prune(now);
        let evaluation = self.engine.evaluate(&self.series, now);
        self.remote_write.alerts(&evaluation.alerts, now);
        self.decide(evaluation, now, true).await;
    }

    /// Routes an evaluation's changes through the gate into one decision and commits it.
    /// `full`: also maintenance reminders and digests.
    async fn decide(&mut self, evaluation: Evaluation, now: i64, full: bool) {
        for (alert, error) in &evaluation.errors {
            tracing::warn!(%alert, %error, "Rule could not be evaluated.");
        }
        let mut routed = crate::route::route(self.alerting.as_deref(), &evaluation.changes, now);
        self.drop_acknowledged(&mut routed.deliveries).await;
        let outcome = match self.gate.pass(routed.deliveries.clone(), &evaluation.alerts, now, full).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // The gate could not read what is held: page rather than lose a page.
                tracing::error!(error = %e, "The notification gate could not read the store; sending unfiltered.");
                crate::mute::Outcome { send: routed.deliveries, ..Default::default() }
            }
        };
        self.gate.decided(&outcome.hold, &outcome.release);
        let mut decision = Decision {
            alerts: routed.alerts,
            deliveries: outcome.send,
            digest: routed.digest,
            hold: outcome.hold,
            release: outcome.release,
            reminded: outcome.reminded,
            meta: Vec::new(),
        };
        if full
            && let Some(digests) = &mut self.digests
            && let Err(e) = digests.collect(&self.store, &self.series, now, &mut decision).await
        {
            tracing::error!(error = %e, "Digest could not be prepared; retrying.");
        }
        self.commit(decision, now).await;
    }

    /// Drops the reminders of firings acknowledged from the control room (`!ack`).
    async fn drop_acknowledged(&self, deliveries: &mut Vec<crate::store::NewDelivery>) {
        let firing_of = |d: &crate::store::NewDelivery| {
            let n = &d.notification;
            (n.kind == crate::notify::Kind::Reminder)
                .then(|| n.alerts.first().map(|a| (n.incident.clone(), a.fired_at)))
                .flatten()
        };
        let reminders: Vec<(String, i64)> = deliveries.iter().filter_map(firing_of).collect();
        if reminders.is_empty() {
            return;
        }
        match crate::store::control::acked(&self.store, &reminders).await {
            Ok(acked) if !acked.is_empty() => {
                deliveries.retain(|d| firing_of(d).is_none_or(|f| !acked.contains(&f)));
            }
            Ok(_) => {}
            // Unknown: remind rather than stay silent.
            Err(e) => tracing::error!(error = %e, "Acknowledgements could not be read; reminding."),
        }
    }

    /// Commits `decision` after every earlier one the store refused, in one transaction.
    async fn commit(&mut self, mut decision: Decision, now: i64) {
        if let Some(alerting) = &self.alerting {
            // A critical page's diagnosis is decided with it, in the same transaction.
            let marks = super::followup::marks(&decision, alerting);
            decision.meta.extend(marks);
        }
        if !decision.is_empty() {
            self.unsaved.push(decision);
        }
        if self.unsaved.is_empty() {
            return;
        }
        for d in &self.unsaved {
            failpoint::check(Point::BeforeCommit, d);
        }
        match self.store.commit(&self.unsaved, now).await {
            Ok(()) => {
                for d in &self.unsaved {
                    failpoint::check(Point::AfterCommit, d);
                }
                self.unsaved.clear();
                self.wake.notify_one();
                self.diagnosis.notify_one();
            }
            Err(e) if e.is_fenced() => {
                // Kept: whether they still stand is known when this process leads again.
                let decisions = self.unsaved.len();
                tracing::warn!(decisions, error = %e, "Not leading: the store refused this term's decision.");
            }
            Err(e) => self.refused(e),
        }
    }

    fn refused(&mut self, e: StoreError) {
        let pages: usize = self.unsaved.iter().map(|d| d.deliveries.len()).sum();
        tracing::error!(error = %e, decisions = self.unsaved.len(), pages, "The store refused a decision; retrying.");
    }
}
