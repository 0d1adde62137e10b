//! `mxwarden audit` (the commands accepted from the control room, newest first) and
//! `mxwarden notify test --control` (the control room is joined, not encrypted, and takes a
//! message).

use crate::cli::{Status, outln};
use crate::config::Config;
use crate::probe::matrix::{MatrixClient, encrypted_refusal};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

/// One row of `audit --json`.
#[derive(Serialize)]
struct AuditRow {
    at: String,
    sender: String,
    command: String,
    outcome: String,
    done: bool,
    room: String,
    event_id: String,
}

/// `mxwarden audit`.
pub(crate) fn audit(config: &Config, json: bool, limit: u32) -> Result<Status> {
    if !config.store.exists() {
        bail!("no store at {} yet: `mxwarden run` creates it", config.store.display());
    }
    let entries = crate::cli::runtime()?.block_on(async {
        let store =
            Store::open(&config.store).await.with_context(|| format!("cannot open {}", config.store.display()))?;
        Ok::<_, anyhow::Error>(crate::store::control::audit(&store, i64::from(limit)).await?)
    })?;
    let rows: Vec<AuditRow> = entries
        .into_iter()
        .map(|e| AuditRow {
            at: crate::units::utc_second(e.at),
            sender: e.sender,
            command: e.command,
            outcome: e.outcome,
            done: e.done,
            room: e.room,
            event_id: e.event_id,
        })
        .collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        outln!("No commands from the control room yet.");
    } else {
        let mut t = crate::cli::output::table(["WHEN", "WHO", "COMMAND", "OUTCOME"]);
        for r in &rows {
            let outcome = if r.done { r.outcome.clone() } else { "(did not finish)".into() };
            t.add_row(crate::text::cells([r.at.clone(), r.sender.clone(), r.command.clone(), outcome]));
        }
        outln!("{}", t.trim_fmt());
    }
    Ok(Status::Healthy)
}

/// `control:` as `config show` prints it.
pub(crate) fn describe_control(c: &crate::config::ControlSettings) -> String {
    let users: Vec<&str> = c.allowed_users.iter().map(String::as_str).collect();
    format!("room {} on {}, commands from {}, token <redacted>", c.room, c.homeserver, users.join(", "))
}

/// `heartbeat:` as `config show` prints it: scheme and host only.
pub(crate) fn describe_heartbeat(h: &crate::config::HeartbeatSettings) -> String {
    use secrecy::ExposeSecret;
    let shown = url::Url::parse(h.url.expose_secret())
        .map(|u| format!("{}://{}/<redacted>", u.scheme(), u.host_str().unwrap_or_default()))
        .unwrap_or_else(|_| "<redacted>".into());
    let method = if h.post { "POST" } else { "GET" };
    format!("{method} {shown} every {}", crate::units::HumanDuration(h.every))
}

/// `mxwarden notify test --control`.
pub(crate) fn control_test(config: &Config) -> Result<Status> {
    let Some(control) = &config.control else {
        bail!("{} has no `control:` section", config.path.display());
    };
    let http = crate::dispatch::http_client().map_err(anyhow::Error::msg)?;
    let client = MatrixClient::new(control.homeserver.clone(), control.token.clone(), http);
    let room = crate::text::escape_controls(&control.room).into_owned();
    let ask = Duration::from_secs(30);
    let outcome: Result<String, String> = crate::cli::runtime()?.block_on(async {
        let id = client.join(&control.room, ask).await.map_err(|e| format!("cannot join {room}: {e}"))?;
        match client.encrypted(&id, ask).await {
            Ok(false) => {}
            Ok(true) => return Err(encrypted_refusal("the control", &room)),
            Err(e) => return Err(format!("cannot read the encryption state of {room}: {e}")),
        }
        let now = jiff::Timestamp::now();
        let body = format!(
            "[TEST] mxwarden takes commands here from: {}. `!help` lists them.",
            control.allowed_users.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        let content = json!({ "msgtype": "m.notice", "body": body });
        client
            .send(&id, &format!("mxwarden-control-test-{}", now.as_nanosecond()), &content, ask)
            .await
            .map_err(|e| format!("cannot post in {room}: {e}"))
    });
    match outcome {
        Ok(event) => {
            outln!("control room {room}: joined, not encrypted, test message posted (event {event})");
            Ok(Status::Healthy)
        }
        Err(why) => {
            eprintln!("control room not usable: {why}");
            Ok(Status::Unhealthy)
        }
    }
}
