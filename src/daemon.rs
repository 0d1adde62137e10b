//! `mxwarden run`: the long-running process. One timer per check (first run jittered, at most
//! `defaults.concurrency` probes at once, each under its hard deadline) feeds observations to
//! the evaluator, which keeps the series windows, evaluates the rules, routes their changes
//! and commits alert state with the outbox rows in one transaction; the dispatcher delivers;
//! digests go out on schedule. Alert state is restored from the store at start, so an alert
//! that fired before a restart still gets its resolve. SIGTERM/SIGINT stop it gracefully.

use crate::clock::Clock;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::history::History;
use crate::live::Live;
use crate::model::{Labels, Observation};
use crate::notify::{AlertInfo, Alerting, Kind};
use crate::probe::Prober;
use crate::rule::RuleEngine;
use crate::series::SeriesStore;
use crate::store::{NewDelivery, Store};
use anyhow::{Context, Result};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

/// How often mxwarden records that it is running; silence longer than two beats is a gap,
/// shown as unknown.
pub const HEARTBEAT_MS: i64 = 15_000;

/// A request to reload the config (SIGHUP, or `POST /api/v1/reload` with a reply channel).
#[derive(Debug)]
pub struct ReloadRequest {
    /// Where the API waits for the outcome: `Err` holds why the new config was refused.
    pub reply: Option<tokio::sync::oneshot::Sender<std::result::Result<(), String>>>,
}

/// Runs until SIGTERM or SIGINT; SIGHUP reloads the config.
pub async fn run(config: Config, clock: Arc<dyn Clock>) -> Result<()> {
    let (stop_tx, stop) = watch::channel(false);
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let hup = reload_tx.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            loop {
                tokio::select! {
                    _ = shutdown_signal() => break,
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP: reloading the config.");
                        let _ = hup.send(ReloadRequest { reply: None }).await;
                    }
                }
            }
        } else {
            shutdown_signal().await;
        }
        #[cfg(not(unix))]
        shutdown_signal().await;
        tracing::info!("Stopping: in-flight deliveries finish, the rest stay queued.");
        let _ = stop_tx.send(true);
    });
    supervise(config, clock, stop, reload_tx, reload_rx).await
}

/// Runs the daemon on `config` until `stop`, restarting it on a new config when a reload
/// request brings a valid one. An invalid one is refused: the running config stays, and a
/// critical notification says why (resolved by the next successful reload). Alert state, the
/// outbox and history live in the store, so a reload loses none of them.
pub async fn supervise(
    mut config: Config,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    reload_tx: mpsc::Sender<ReloadRequest>,
    mut reload_rx: mpsc::Receiver<ReloadRequest>,
) -> Result<()> {
    let mut refused = false;
    loop {
        let (inner_stop_tx, inner_stop) = watch::channel(false);
        let path = config.path.clone();
        let store_path = config.store.clone();
        let alerting = config.alerting.clone();
        let wake = Arc::new(Notify::new());
        let mut inner = tokio::spawn(run_config(config, clock.clone(), inner_stop, reload_tx.clone(), wake.clone()));
        let next = loop {
            tokio::select! {
                ended = &mut inner => return ended.context("the daemon task failed")?,
                _ = stop.changed() => {
                    let _ = inner_stop_tx.send(true);
                    return (&mut inner).await.context("the daemon task failed")?;
                }
                Some(request) = reload_rx.recv() => match crate::config::load(&path) {
                    Ok(new) => {
                        if let Some(reply) = request.reply {
                            let _ = reply.send(Ok(()));
                        }
                        break new;
                    }
                    Err(e) => {
                        let why = e.to_string();
                        tracing::error!(config = %path.display(), error = %why, "New config refused; the running one stays.");
                        let now = clock.now().as_millisecond();
                        if let Err(e) = reload_notice(&store_path, alerting.as_ref(), Kind::Firing, &path, &why, now).await {
                            tracing::error!(error = %e, "Could not queue the refused-config notification.");
                        }
                        refused = true;
                        wake.notify_one();
                        if let Some(reply) = request.reply {
                            let _ = reply.send(Err(why));
                        }
                    }
                },
            }
        };
        let _ = inner_stop_tx.send(true);
        (&mut inner).await.context("the daemon task failed")??;
        tracing::info!(config = %path.display(), "Config reloaded.");
        if refused {
            let now = clock.now().as_millisecond();
            if let Err(e) = reload_notice(&next.store, next.alerting.as_ref(), Kind::Resolved, &path, "", now).await {
                tracing::error!(error = %e, "Could not queue the config-accepted notification.");
            }
            refused = false;
        }
        config = next;
    }
}

/// Queues the `MxwardenConfigRefused` notification (or its resolve) for the critical tier.
async fn reload_notice(
    store: &std::path::Path,
    alerting: Option<&crate::notify::Alerting>,
    kind: Kind,
    path: &std::path::Path,
    why: &str,
    now: i64,
) -> Result<()> {
    let Some(alerting) = alerting else { return Ok(()) };
    let Some(tier) = alerting.tier("critical") else { return Ok(()) };
    let labels: Labels = [("alertname", "MxwardenConfigRefused"), ("severity", "critical")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let summary = match kind {
        Kind::Resolved => format!("mxwarden accepted the new config {}", path.display()),
        _ => format!("mxwarden refused the new config {} and keeps running the old one: {why}", path.display()),
    };
    let alert = AlertInfo {
        name: "MxwardenConfigRefused".into(),
        labels,
        annotations: [("summary".to_string(), summary)].into_iter().collect(),
        value: 1.0,
        fired_at: now,
        resolved_at: (kind == Kind::Resolved).then_some(now),
    };
    let notification = crate::notify::alert_message(kind, alert, now);
    let deliveries: Vec<NewDelivery> = tier
        .receivers
        .iter()
        .map(|r| NewDelivery {
            receiver: r.clone(),
            tier: "critical".into(),
            notification: notification.clone(),
            fallback_of: None,
        })
        .collect();
    Store::open(store).await?.enqueue(&deliveries, now).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

/// Runs `config` until `stop` turns true, with time from `clock` (tests drive it with a
/// `ManualClock`); reloads come only through the API.
pub async fn run_until(config: Config, clock: Arc<dyn Clock>, stop: watch::Receiver<bool>) -> Result<()> {
    let (reload_tx, reload_rx) = mpsc::channel(4);
    supervise(config, clock, stop, reload_tx, reload_rx).await
}

/// Runs one config until `stop` turns true.
async fn run_config(
    config: Config,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
    reload: mpsc::Sender<ReloadRequest>,
    wake: Arc<Notify>,
) -> Result<()> {
    let store = Store::open(&config.store).await.context("cannot open the store")?;
    let history = Arc::new(History::new(store.clone()));
    let started = clock.now().as_millisecond();
    if let Some((from, to)) = history.start(started, HEARTBEAT_MS).await? {
        tracing::info!(from, to, "mxwarden was not running for {} s: recorded as unknown.", (to - from) / 1000);
    }
    let live = Arc::new(Live::new(&config, started));
    let calendar = Arc::new(crate::maintenance::Calendar::new(config.maintenance.clone()));
    calendar.set_ad_hoc(crate::maintenance::store::current(&store, started).await?);
    let mut server = None;
    if let Some(addr) = config.listen {
        let state = crate::server::AppState {
            live: live.clone(),
            history: history.clone(),
            store: store.clone(),
            admin_token: config.admin_token.clone(),
            reload: reload.clone(),
            clock: clock.clone(),
            calendar: calendar.clone(),
            services: crate::maintenance::known_services(&config),
        };
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!("Status page on http://{addr}/");
                server = Some(tokio::spawn(crate::server::serve(listener, state, stop.clone())));
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "Cannot serve the status page; monitoring goes on without it.")
            }
        }
    }
    let alerting = config.alerting.clone().map(Arc::new);
    let mut engine = RuleEngine::new(config.rules.clone());
    if let Some(a) = &alerting {
        for (severity, tier) in &a.tiers {
            engine.set_repeat(severity, tier.repeat_ms);
        }
    }
    let restored = store.alerts().await?;
    tracing::info!(alerts = restored.len(), store = %config.store.display(), "Restored alert state.");
    for a in restored {
        engine.restore(&a.alert, a.labels, a.state, a.value, a.annotations);
    }
    let mut tasks = Vec::new();
    if let Some(a) = &alerting {
        let http = crate::dispatch::http_client().map_err(anyhow::Error::msg)?;
        let dispatcher = Dispatcher::new(store.clone(), a.clone(), http, a.retry, clock.clone());
        let (wake, stop) = (wake.clone(), stop.clone());
        tasks.push(tokio::spawn(async move { dispatcher.run(wake, stop).await }));
    }
    let (tx, rx) = mpsc::channel::<Observation>(1024);
    let prober = Arc::new(Prober::new(clock.clone()));
    let permits = Arc::new(Semaphore::new(config.defaults.concurrency.max(1)));
    for spec in config.checks.clone() {
        let (tx, prober, permits, mut stop) = (tx.clone(), prober.clone(), permits.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            // First run at a random 100 ms slot within the interval (at most 5 s): checks spread
            // out, yet those sharing a slot wake the process once.
            let slots = (spec.interval.as_millis().min(5_000) / 100).max(1) as u64;
            let jitter = rand::rng().random_range(0..slots) * 100;
            tokio::select! { _ = tokio::time::sleep(Duration::from_millis(jitter)) => {}, _ = stop.changed() => return }
            let mut ticker = tokio::time::interval(spec.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! { _ = ticker.tick() => {}, _ = stop.changed() => return }
                let Ok(_permit) = permits.acquire().await else { return };
                let observation = prober.run(&spec).await;
                if tx.send(observation).await.is_err() {
                    return;
                }
            }
        }));
    }
    if let Some(plan) = config.backup.clone() {
        let every = config.defaults.interval.0;
        tasks.push(crate::backup::schedule::spawn(plan, tx.clone(), clock.clone(), stop.clone(), every));
    }
    drop(tx);
    let evaluation_every = config
        .checks
        .iter()
        .map(|c| c.interval)
        .min()
        .unwrap_or(Duration::from_secs(15))
        .clamp(Duration::from_secs(1), Duration::from_secs(15));
    let series = SeriesStore::new(engine.retention_ms(), config.defaults.series_limit);
    // Rules wait for every check's first result (or the slowest check's interval plus
    // timeout): evaluating before that would resolve restored alerts for lack of data.
    let unseen = config.checks.iter().map(|c| c.id.0.clone()).collect();
    let grace = config.checks.iter().map(|c| c.interval + c.timeout).max().unwrap_or_default() + Duration::from_secs(5);
    let warm_until = clock.now().as_millisecond() + grace.as_millis() as i64;
    let backup = config.backup.clone();
    // Pages held for a dependency wait until it has been up for one round of every check.
    let critical = alerting.as_ref().and_then(|a| a.tiers.get("critical")).map(|t| t.receivers.clone());
    let gate = crate::mute::Gate::new(
        store.clone(),
        calendar.clone(),
        config.topology.clone(),
        config.maintenance_reminder_ms,
        grace.as_millis() as i64,
        critical.unwrap_or_default(),
    );
    let mut evaluator = Evaluator {
        store,
        engine,
        series,
        alerting,
        clock,
        wake,
        unseen,
        warm_until,
        history,
        live,
        recorded: Vec::new(),
        beat_at: started,
        pruned_at: 0,
        backup,
        gate,
        calendar,
    };
    evaluator.run(rx, evaluation_every, stop).await;
    for t in tasks.into_iter().chain(server) {
        let _ = t.await;
    }
    Ok(())
}

struct Evaluator {
    store: Store,
    engine: RuleEngine,
    series: SeriesStore,
    alerting: Option<Arc<Alerting>>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    /// Checks that have not reported since start.
    unseen: std::collections::HashSet<String>,
    /// Until when to wait for them, ms.
    warm_until: i64,
    /// Uptime history.
    history: Arc<History>,
    /// What the status page shows.
    live: Arc<Live>,
    /// Results not yet written to the history.
    recorded: Vec<(String, crate::history::Result)>,
    /// The last heartbeat, ms.
    beat_at: i64,
    /// The last retention run, ms.
    pruned_at: i64,
    /// Backups, summarised in the daily digests.
    backup: Option<Arc<crate::backup::BackupPlan>>,
    /// Holds pages during maintenance and dependency outages.
    gate: crate::mute::Gate,
    /// Maintenance windows: results inside one are recorded as maintenance. Shared with the
    /// gate, which re-reads the ad hoc windows from the store every evaluation.
    calendar: Arc<crate::maintenance::Calendar>,
}

impl Evaluator {
    async fn run(&mut self, mut rx: mpsc::Receiver<Observation>, every: Duration, mut stop: watch::Receiver<bool>) {
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
