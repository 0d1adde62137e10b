//! The supervisor: runs the daemon on one config until a stop signal, and on SIGHUP or an API
//! reload request swaps in a new config when it is valid. An invalid one is refused: the
//! running config stays and a critical `MxwardenConfigRefused` notification says why.

use super::run_config;
use crate::clock::Clock;
use crate::config::Config;
use crate::model::Labels;
use crate::notify::{AlertInfo, Kind};
use crate::server::ReloadRequest;
use crate::store::{NewDelivery, Store};
use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, watch};

/// Runs until SIGTERM or SIGINT; SIGHUP reloads the config. The secrets of every config
/// loaded are added to `log_secrets` (the log writer's).
pub async fn run(config: Config, clock: Arc<dyn Clock>, log_secrets: crate::redact::Shared) -> Result<()> {
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
    supervise(config, clock, stop, reload_tx, reload_rx, log_secrets).await
}

/// Runs the daemon on `config` until `stop`, restarting it on a new config when a reload
/// request brings a valid one. An invalid one is refused: the running config stays, and a
/// critical notification says why (resolved by the next successful reload). Alert state, the
/// outbox and history live in the store, so a reload loses none of them. The reason for a
/// refusal (logged, answered, paged) shows no secret of either config.
pub async fn supervise(
    mut config: Config,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    reload_tx: mpsc::Sender<ReloadRequest>,
    mut reload_rx: mpsc::Receiver<ReloadRequest>,
    log_secrets: crate::redact::Shared,
) -> Result<()> {
    let mut refused = false;
    // This process's leadership, kept across reloads (a reload keeps the lease) while the
    // instance name stays; released when the process stops.
    let mut fence = Arc::new(crate::store::Fence::new(&config.instance.name));
    loop {
        log_secrets.add(&config.redactor);
        if fence.instance() != config.instance.name {
            release(&config.store, &fence).await;
            fence = Arc::new(crate::store::Fence::new(&config.instance.name));
        }
        let (inner_stop_tx, inner_stop) = watch::channel(false);
        let path = config.path.clone();
        let store_path = config.store.clone();
        let alerting = config.alerting.clone();
        let redactor = config.redactor.clone();
        let wake = Arc::new(Notify::new());
        let mut inner =
            tokio::spawn(run_config(config, clock.clone(), inner_stop, reload_tx.clone(), wake.clone(), fence.clone()));
        let next = loop {
            tokio::select! {
                ended = &mut inner => {
                    release(&store_path, &fence).await;
                    return ended.context("the daemon task failed")?;
                }
                _ = stop.changed() => {
                    let _ = inner_stop_tx.send(true);
                    let ended = (&mut inner).await.context("the daemon task failed")?;
                    release(&store_path, &fence).await;
                    return ended;
                }
                Some(request) = reload_rx.recv() => match super::rooms::load_for_reload(&path).await {
                    Ok(new) => {
                        if let Some(reply) = request.reply {
                            let _ = reply.send(Ok(()));
                        }
                        break new;
                    }
                    Err(e) => {
                        // The loader hid the new file's secrets; the running config's go too
                        // (the same token, pasted where the new file's parser cannot see it).
                        let why = redactor.redact(&e).into_owned();
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

/// Gives up the leadership lease `fence` holds, if any, so another instance takes over at
/// once instead of after the lease's time-to-live.
async fn release(store: &crate::store::Location, fence: &crate::store::Fence) {
    let Some((term, _)) = fence.held() else { return };
    fence.drop_term();
    let name = format!("mxwarden/{}", fence.instance());
    let released = async { Store::open_as(store, &name).await?.release_lease(fence.instance(), term).await };
    match released.await {
        Ok(()) => tracing::info!(instance = %fence.instance(), term, "Leadership released."),
        Err(e) => {
            tracing::warn!(instance = %fence.instance(), term, error = %e, "Leadership could not be released; it runs out on its own.")
        }
    }
}

/// Queues the `MxwardenConfigRefused` notification (or its resolve) for the critical tier.
async fn reload_notice(
    store: &crate::store::Location,
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
    let deliveries = NewDelivery::fan_out(&tier.receivers, "critical", &notification);
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
    supervise(config, clock, stop, reload_tx, reload_rx, crate::redact::Shared::default()).await
}
