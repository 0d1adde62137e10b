//! `mxwarden run`: the long-running process. One timer per check (first run jittered, at most
//! `defaults.concurrency` probes at once, each under its hard deadline) feeds observations to
//! the evaluator, which keeps the series windows, evaluates the rules, routes their changes
//! and commits alert state with the outbox rows in one transaction; the dispatcher delivers;
//! digests go out on schedule. Alert state is restored from the store at start, so an alert
//! that fired before a restart still gets its resolve. A store that refuses writes is paged
//! about without it (`store_alarm`). SIGTERM/SIGINT stop it gracefully.
//!
//! Instances sharing one store elect a leader (`leader`): all of them probe, record history
//! and serve the status page; only the leader judges, routes and delivers (the evaluator's
//! decisions, the dispatcher, follow-ups, the control room, scheduled backups). A single
//! instance simply always leads.

mod digests;
mod evaluator;
mod failpoint;
mod followup;
mod heartbeat;
mod leader;
mod open_files;
mod recorder;
mod rooms;
mod scheduler;
mod store_alarm;
mod supervisor;

pub use supervisor::{run, run_until, supervise};

use crate::clock::Clock;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::live::Live;
use crate::model::Observation;
use crate::store::History;

use crate::probe::Prober;
use crate::rule::RuleEngine;
use crate::series::SeriesStore;
use crate::server::ReloadRequest;
use crate::store::Store;
use anyhow::{Context, Result};

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

/// How often mxwarden records that it is running; silence longer than two beats is a gap,
/// shown as unknown.
pub(crate) const HEARTBEAT_MS: i64 = 15_000;

/// Above this many checks, a new result is judged by the rules of the checks that reported
/// (`RuleEngine::evaluate_arrivals`); at or below it, every rule reading its metrics is
/// evaluated over all their series, as always. BENCHMARKS.md ("10,000 endpoints") measures why.
const TARGETED_ABOVE: usize = 500;

/// Runs one config until `stop` turns true.
async fn run_config(
    config: Config,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
    reload: mpsc::Sender<ReloadRequest>,
    wake: Arc<Notify>,
    fence: Arc<crate::store::Fence>,
) -> Result<()> {
    let config = Arc::new(config);
    let store = Store::open_as(&config.store, &format!("mxwarden/{}", config.instance.name))
        .await
        .context("cannot open the store")?
        .with_clock(clock.clone())
        .with_fence(fence.clone());
    let timing = leader::Timing { ttl: config.instance.lease };
    leader::claim_name(&store, &fence, timing).await.map_err(anyhow::Error::msg)?;
    let history = Arc::new(History::new(store.clone()));
    let started = clock.now().as_millisecond();
    match history.start(started, HEARTBEAT_MS).await {
        Ok(Some((from, to))) => {
            tracing::info!(from, to, "mxwarden was not running for {} s: recorded as unknown.", (to - from) / 1000)
        }
        Ok(None) => {}
        // A store that refuses writes (a full disk) is no reason not to monitor: it is paged.
        Err(e) => tracing::error!(error = %e, "The time mxwarden was not running could not be recorded."),
    }
    let http = crate::dispatch::http_client().map_err(anyhow::Error::msg)?;
    rooms::refuse_encrypted(&config, &http).await.map_err(anyhow::Error::msg)?;
    let watchdog = Arc::new(crate::watchdog::Watchdog::new(sweep_every(&config)));
    crate::update::run::warn_interrupted(&store).await;
    let live = Arc::new(Live::new(&config, started));
    let mut tasks = Vec::new();
    // The term while this process leads; the lease task keeps it.
    let (leading_tx, leading) = watch::channel(None);
    let lease = leader::LeaseTask { store: store.clone(), fence, timing, live: live.clone(), leading: leading_tx };
    tasks.push(tokio::spawn(lease.run(stop.clone())));
    // Copies of the samples and ALERTS for Prometheus-compatible storage (`remote_write:`).
    let (remote_write, remote_write_status, remote_write_tasks) =
        crate::remote_write::start(&config.remote_write, &http, &config.redactor, &stop);
    tasks.extend(remote_write_tasks);
    let calendar = Arc::new(crate::maintenance::Calendar::new(config.maintenance.clone()));
    calendar.set_ad_hoc(crate::store::maintenance::current(&store, started).await?);
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
            services: config.known_services(),
            watchdog: watchdog.clone(),
            updates: Arc::new(config.update_targets()),
            remote_write: remote_write_status,
        };
        match crate::server::bind(addr) {
            Ok(listener) => {
                tracing::info!("Status page on http://{addr}/");
                let cap = config.listen_max_connections;
                server = Some(tokio::spawn(crate::server::serve(listener, state, cap, stop.clone())));
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "Cannot serve the status page; monitoring goes on without it.")
            }
        }
    }
    let alerting = config.alerting.clone().map(Arc::new);
    // Alert state is read from the store when this process becomes leader (at once, for a
    // single instance), so an alert that fired before a restart or a failover gets its resolve.
    let fresh_engine = {
        let (rules, alerting) = (config.rules.clone(), alerting.clone());
        move || {
            let mut engine = RuleEngine::new(rules.clone());
            if let Some(a) = &alerting {
                for (severity, tier) in &a.tiers {
                    engine.set_repeat(severity, tier.repeat_ms);
                }
            }
            engine
        }
    };
    let engine = fresh_engine();
    // Woken after a commit that decided critical pages: their diagnoses follow.
    let diagnosis = Arc::new(Notify::new());
    if let Some(a) = &alerting {
        let http = crate::dispatch::http_client().map_err(anyhow::Error::msg)?;
        let alarm = store_alarm::StoreAlarm {
            store: store.clone(),
            alerting: a.clone(),
            http: http.clone(),
            clock: clock.clone(),
        };
        tasks.push(tokio::spawn(alarm.run(stop.clone())));
        let parts = (store.clone(), config.clone(), clock.clone(), wake.clone(), diagnosis.clone());
        tasks.push(leader::leader_only(leading.clone(), stop.clone(), move |stop| {
            let (store, config, clock, wake, signal) = parts.clone();
            followup::FollowUps { store, config, clock, wake, signal }.run(stop)
        }));
        let dispatcher = Arc::new(Dispatcher::new(store.clone(), a.clone(), http, a.retry, clock.clone()));
        let wake = wake.clone();
        tasks.push(leader::leader_only(leading.clone(), stop.clone(), move |stop| {
            let (dispatcher, wake) = (dispatcher.clone(), wake.clone());
            async move { dispatcher.run(wake, stop).await }
        }));
    }
    if let Some(settings) = config.control.clone() {
        let parts = (store.clone(), live.clone(), calendar.clone(), clock.clone(), watchdog.clone(), config.clone());
        let http = http.clone();
        tasks.push(leader::leader_only(leading.clone(), stop.clone(), move |stop| {
            let (store, live, calendar, clock, watchdog, config) = parts.clone();
            let follower = crate::control::Follower::new(crate::control::Parts {
                settings: settings.clone(),
                store,
                live,
                calendar,
                services: config.known_services(),
                clock,
                backup: config.backup.clone(),
                watchdog,
                config,
                http: http.clone(),
            });
            follower.run(stop)
        }));
    }
    if let Some(settings) = config.heartbeat.clone() {
        tasks.push(heartbeat::spawn(settings, watchdog.clone(), store.clone(), http.clone(), stop.clone()));
    }
    let (tx, rx) = mpsc::channel::<Observation>(1024);
    let origins = open_files::origins(&config.checks);
    let soft_limit = crate::server::open_file_soft_limit();
    let idle = open_files::idle_per_origin(origins, config.defaults.concurrency, soft_limit);
    if let Some(idle) = idle {
        tracing::warn!(
            origins,
            soft_limit,
            idle,
            "More origins than the open-file limit leaves room for: fewer idle connections are kept to each."
        );
    }
    let prober = Arc::new(Prober::new(clock.clone()).with_idle_per_origin(idle));
    let permits = Arc::new(Semaphore::new(config.defaults.concurrency.max(1)));
    if let Some(task) = render_maintenance(&config, &prober, calendar.clone(), stop.clone()) {
        tasks.push(task);
    }
    tasks.extend(scheduler::spawn(&config.checks, prober, permits, tx.clone(), stop.clone()));
    if let Some(plan) = config.backup.clone() {
        let every = config.defaults.interval.0;
        let (tx, clock) = (tx.clone(), clock.clone());
        tasks.push(leader::leader_only(leading.clone(), stop.clone(), move |stop| {
            let task = crate::backup::schedule::spawn(plan.clone(), tx.clone(), clock.clone(), stop, every);
            // Aborted with this future when leadership ends.
            let task = tokio_util::task::AbortOnDropHandle::new(task);
            async move {
                let _ = task.await;
            }
        }));
    }
    drop(tx);
    // A full sweep at least this often; results are judged as they arrive.
    let sweep_every = sweep_every(&config);
    let series = SeriesStore::new(engine.retention_ms(), config.defaults.series_limit);
    // Rules wait for every check's first result (or the slowest check's interval plus
    // timeout): evaluating before that would resolve restored alerts for lack of data.
    let grace = config.checks.iter().map(|c| c.interval + c.timeout).max().unwrap_or_default() + Duration::from_secs(5);
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let warm = evaluator::WarmUp {
        unseen: config.checks.iter().map(|c| c.id.0.clone()).collect(),
        until: started.saturating_add(grace_ms),
    };
    // Pages held for a dependency wait until it has been up for one round of every check.
    let critical = alerting.as_ref().and_then(|a| a.tiers.get("critical")).map(|t| t.receivers.clone());
    let gate = crate::mute::Gate::new(
        store.clone(),
        calendar.clone(),
        config.topology.clone(),
        config.maintenance_reminder_ms,
        grace_ms,
        critical.unwrap_or_default(),
    );
    let recorder = recorder::Recorder::new(history, i64::try_from(sweep_every.as_millis()).unwrap_or(15_000), started);
    let mut evaluator = evaluator::Evaluator::new(evaluator::Parts {
        store,
        engine,
        series,
        alerting,
        clock,
        wake,
        warm,
        recorder,
        live,
        gate,
        calendar,
        backup: config.backup.clone(),
        sweep_every,
        deploys: deploy_windows(&config),
        diagnosis,
        certificates: certificate_hosts(&config.checks),
        watchdog,
        targeted: config.checks.len() > TARGETED_ABOVE,
        leading,
        fresh_engine: Box::new(fresh_engine),
        remote_write,
    });
    evaluator.run(rx, stop).await;
    for t in tasks.into_iter().chain(server) {
        let _ = t.await;
    }
    Ok(())
}

/// The deploy windows of the services linked to Render: each covers the service and the
/// services that need it, and ends after one round of the service's other checks.
fn deploy_windows(config: &Config) -> crate::maintenance::deploys::DeployWindows {
    use std::collections::{BTreeMap, BTreeSet};
    let mut covers = BTreeMap::new();
    let mut checks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in &config.checks {
        let Some(service) = &c.service else { continue };
        if let crate::probe::spec::ProbeSpec::Render(r) = &c.probe {
            if r.kind == crate::render::ResourceKind::Service {
                let mut over = vec![service.clone()];
                over.extend(config.topology.downstream(service));
                covers.insert(service.clone(), over);
            }
        } else {
            checks.entry(service.clone()).or_default().insert(c.id.0.clone());
        }
    }
    crate::maintenance::deploys::DeployWindows::new(covers, checks)
}

/// How often Render's own maintenance list is read for the status page.
const RENDER_MAINTENANCE_EVERY: Duration = Duration::from_secs(15 * 60);

/// Reads Render's own maintenance of the linked resources into the calendar (shown on the
/// status page, never holding pages), every 15 minutes: one request each time.
fn render_maintenance(
    config: &Config,
    prober: &Arc<Prober>,
    calendar: Arc<crate::maintenance::Calendar>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let api = config.render.clone()?;
    let mut names = std::collections::BTreeMap::new();
    for c in &config.checks {
        if let (crate::probe::spec::ProbeSpec::Render(r), Some(service)) = (&c.probe, &c.service) {
            names.insert(r.resource.clone(), service.clone());
        }
    }
    if names.is_empty() {
        return None;
    }
    let client = match prober.render_client(&api, Duration::from_secs(30)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "Render's maintenance list cannot be read.");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let ids: Vec<String> = names.keys().cloned().collect();
        loop {
            match client.maintenance(&ids).await {
                Ok(runs) => {
                    let (active, upcoming) = crate::maintenance::deploys::render_maintenance(runs, &names);
                    calendar.set_render(active, upcoming);
                }
                Err(e) => tracing::warn!(error = %e, "Render's maintenance list could not be read; keeping the last."),
            }
            tokio::select! {
                _ = tokio::time::sleep(RENDER_MAINTENANCE_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }))
}

/// The host each HTTPS check connects to, by check name.
fn certificate_hosts(checks: &[crate::probe::spec::CheckSpec]) -> std::collections::BTreeMap<String, String> {
    use crate::probe::spec::{ProbeSpec, Target};
    checks
        .iter()
        .filter_map(|c| match &c.probe {
            ProbeSpec::Http(h) => match &h.target {
                Target::Url(u) if u.scheme() == "https" => Some((c.id.0.clone(), u.host_str()?.to_string())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The longest wait between the evaluator's full sweeps: the shortest check interval, from 1 s
/// to 15 s.
fn sweep_every(config: &Config) -> Duration {
    config
        .checks
        .iter()
        .map(|c| c.interval)
        .min()
        .unwrap_or(Duration::from_secs(15))
        .clamp(Duration::from_secs(1), Duration::from_secs(15))
}
