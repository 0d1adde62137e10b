//! `mxwarden run`, `notify test`, `alerts` and `outbox`: the daemon, a real test message
//! through a configured receiver, and what the store holds — open alerts and deliveries.

use crate::cli::{Status, outln};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::notify::{Kind, Notification};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::sync::Arc;

/// `mxwarden run`; `log_secrets` is the log writer's, which each reloaded config adds to.
pub(crate) fn run(config: Config, log_secrets: crate::redact::Shared) -> Result<Status> {
    crate::cli::runtime()?.block_on(crate::daemon::run(config, Arc::new(SystemClock), log_secrets))?;
    Ok(Status::Healthy)
}

/// `mxwarden notify test RECEIVER`: one real message through the receiver, now.
pub(crate) fn notify_test(config: &Config, name: &str) -> Result<Status> {
    let Some(alerting) = &config.alerting else {
        bail!("{} has no `alerting:` section, so there is no receiver `{name}`", config.path.display());
    };
    let Some(receiver) = alerting.receivers.get(name) else {
        let known: Vec<&str> = alerting.receivers.keys().map(String::as_str).collect();
        let hint = crate::units::closest(name, known.iter().copied())
            .map(|k| format!(" Did you mean `{k}`?"))
            .unwrap_or_default();
        bail!("no receiver `{name}`.{hint} Receivers: {}", known.join(", "));
    };
    let now = jiff::Timestamp::now();
    let title = format!("[TEST] mxwarden can reach {name}");
    let text = format!("{title}\nSent by `mxwarden notify test` at {}.", now.strftime("%Y-%m-%d %H:%M:%S UTC"));
    let n = Notification {
        kind: Kind::Test,
        incident: format!("test:{}", now.as_millisecond()),
        title: title.clone(),
        html: format!("<b>{}</b><br/>Sent by <code>mxwarden notify test</code>.", crate::notify::html_escape(&title)),
        text,
        alerts: Vec::new(),
        created_at: now.as_millisecond(),
    };
    let http = crate::dispatch::http_client().map_err(anyhow::Error::msg)?;
    let delivery = format!("test-{}", now.as_nanosecond());
    let result =
        crate::cli::runtime()?.block_on(crate::dispatch::send_once(&http, name, receiver, &delivery, &n, None));
    match result {
        Ok(event) => {
            let extra = event.map(|e| format!(" (event {e})")).unwrap_or_default();
            outln!("delivered to {name} ({}){extra}", receiver.kind());
            Ok(Status::Healthy)
        }
        Err(e) => {
            let class = match e {
                crate::notify::SendError::Permanent(_) => "permanent error",
                crate::notify::SendError::Transient { .. } => "transient error",
            };
            eprintln!("not delivered to {name} ({}): {class}: {e}", receiver.kind());
            Ok(Status::Unhealthy)
        }
    }
}

#[derive(Serialize)]
struct AlertRow {
    alert: String,
    state: &'static str,
    labels: crate::model::Labels,
    summary: String,
    since: String,
}

async fn open_store(config: &Config) -> Result<Store> {
    if !config.store.exists() {
        bail!("no store at {} yet: `mxwarden run` creates it", config.store.display());
    }
    Store::open(&config.store).await.with_context(|| format!("cannot open {}", config.store.display()))
}

fn time(ms: i64) -> String {
    crate::units::utc_second(ms)
}

/// `mxwarden alerts`: pending and firing alerts from the store.
pub(crate) fn alerts(config: &Config, json: bool) -> Result<Status> {
    let rows: Vec<AlertRow> = crate::cli::runtime()?
        .block_on(async {
            let store = open_store(config).await?;
            Ok::<_, anyhow::Error>(store.alerts().await?)
        })?
        .into_iter()
        .map(|a| {
            let (state, since) = (a.state.phase().as_str(), a.state.since());
            AlertRow {
                alert: a.alert,
                state,
                labels: a.labels,
                summary: a.annotations.get("summary").cloned().unwrap_or_default(),
                since: time(since),
            }
        })
        .collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        outln!("No open alerts.");
    } else {
        let mut t = crate::cli::output::table(["ALERT", "STATE", "SINCE", "SUMMARY"]);
        for r in &rows {
            t.add_row(crate::text::cells([
                r.alert.clone(),
                r.state.to_uppercase(),
                r.since.clone(),
                r.summary.clone(),
            ]));
        }
        outln!("{}", t.trim_fmt());
    }
    Ok(if rows.iter().any(|r| r.state == "firing") { Status::Unhealthy } else { Status::Healthy })
}

#[derive(Serialize)]
struct OutboxRow {
    id: i64,
    receiver: String,
    tier: String,
    status: String,
    attempts: i64,
    title: String,
    created_at: String,
    sent_at: Option<String>,
    last_error: Option<String>,
    fallback_of: Option<i64>,
}

/// `mxwarden outbox`: recent deliveries (or only dead ones).
pub(crate) fn outbox(config: &Config, dead: bool, json: bool) -> Result<Status> {
    let rows: Vec<OutboxRow> = crate::cli::runtime()?
        .block_on(async {
            let store = open_store(config).await?;
            Ok::<_, anyhow::Error>(store.outbox(dead, 200).await?)
        })?
        .into_iter()
        .map(|d| OutboxRow {
            id: d.id,
            receiver: d.receiver,
            tier: d.tier,
            status: d.status,
            attempts: d.attempts,
            title: d.notification.title,
            created_at: time(d.notification.created_at),
            sent_at: d.sent_at.map(time),
            last_error: d.last_error,
            fallback_of: d.fallback_of,
        })
        .collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        outln!("{}", if dead { "No dead deliveries." } else { "The outbox is empty." });
    } else {
        let mut t = crate::cli::output::table(["ID", "RECEIVER", "STATUS", "TRIES", "TITLE", "LAST ERROR"]);
        for r in &rows {
            t.add_row(crate::text::cells([
                r.id.to_string(),
                r.receiver.clone(),
                r.status.clone(),
                r.attempts.to_string(),
                r.title.clone(),
                r.last_error.clone().unwrap_or_default(),
            ]));
        }
        outln!("{}", t.trim_fmt());
    }
    Ok(if rows.iter().any(|r| r.status == "dead") { Status::Unhealthy } else { Status::Healthy })
}
