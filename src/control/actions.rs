//! What each control-room command does: the command table (`COMMANDS`: name, argument shape,
//! usage, help and handler, one entry per command — `!help` lists exactly these) and the
//! handlers, which act through the same store functions as the CLI and the API (ad hoc
//! windows, acknowledgements) and answer with a `Reply` for the command's thread.

use super::command::{Args, Shape, Spec};
use crate::clock::Clock;
use crate::live::Live;
use crate::maintenance::Calendar;
use crate::probe::matrix::MatrixClient;
use crate::store::Store;
use crate::store::control as cstore;
use crate::store::maintenance as mstore;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a handler answers: the text posted in the command's thread (also the audit's
/// outcome), and whether the command did what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The answer.
    pub text: String,
    /// Whether it succeeded.
    pub ok: bool,
}

impl Reply {
    fn ok(text: impl Into<String>) -> Self {
        Self { text: text.into(), ok: true }
    }

    fn no(text: impl Into<String>) -> Self {
        Self { text: text.into(), ok: false }
    }
}

/// Where a reply goes later (a backup's result): the command's thread.
#[derive(Debug, Clone)]
pub(crate) struct Thread {
    /// The bot.
    pub client: MatrixClient,
    /// The control room.
    pub room_id: String,
    /// The command's event.
    pub event_id: String,
}

/// What handlers work with.
pub(crate) struct Ctx {
    /// The store.
    pub store: Store,
    /// The checks and their latest results.
    pub live: Arc<Live>,
    /// Maintenance windows (updated at once when a command opens or ends one).
    pub calendar: Arc<Calendar>,
    /// The services a window may name.
    pub services: BTreeSet<String>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Backups, if configured.
    pub backup: Option<Arc<crate::backup::BackupPlan>>,
    /// Whether evaluation is healthy.
    pub watchdog: Arc<crate::watchdog::Watchdog>,
    /// The running config (for the diagnosis playbooks).
    pub config: Arc<crate::config::Config>,
    /// Who gave the command.
    pub sender: String,
    /// The command's thread.
    pub thread: Thread,
}

/// A handler's future.
pub(crate) type Pending<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// One command: its declaration and what runs it.
pub(crate) struct Command {
    /// Name, shape, usage, help.
    pub spec: Spec,
    /// The handler.
    pub run: for<'a> fn(&'a Ctx, &'a Args) -> Pending<'a>,
}

/// Every command, in `!help` order. Adding one is one entry here (and its handler).
pub(crate) const COMMANDS: &[Command] = &[
    Command {
        spec: Spec {
            name: "status",
            shape: Shape::Nothing,
            usage: "!status",
            help: "checks, firing alerts, open windows, evaluation health",
        },
        run: |cx, _| Box::pin(handlers::status(cx)),
    },
    Command {
        spec: Spec {
            name: "alerts",
            shape: Shape::Nothing,
            usage: "!alerts",
            help: "open alerts with their ids (for !ack)",
        },
        run: |cx, _| Box::pin(handlers::alerts(cx)),
    },
    Command {
        spec: Spec {
            name: "ack",
            shape: Shape::Id,
            usage: "!ack ID",
            help: "acknowledge a firing alert: its reminders stop (the resolve is still sent)",
        },
        run: |cx, args| Box::pin(handlers::ack(cx, args)),
    },
    Command {
        spec: Spec {
            name: "silence",
            shape: Shape::Window,
            usage: "!silence SERVICE DURATION [reason]",
            help: "hold a service's pages for a while (1m to 7d); still firing at the end, they are sent",
        },
        run: |cx, args| Box::pin(handlers::open_window(cx, args, handlers::WindowKind::Silence)),
    },
    Command {
        spec: Spec {
            name: "maintenance",
            shape: Shape::Window,
            usage: "!maintenance SERVICE DURATION [reason]",
            help: "open a maintenance window now (1m to 7d): pages held, a reminder before it ends",
        },
        run: |cx, args| Box::pin(handlers::open_window(cx, args, handlers::WindowKind::Maintenance)),
    },
    Command {
        spec: Spec { name: "end", shape: Shape::Id, usage: "!end ID", help: "end a silence or maintenance window now" },
        run: |cx, args| Box::pin(handlers::end(cx, args)),
    },
    Command {
        spec: Spec {
            name: "backup",
            shape: Shape::Nothing,
            usage: "!backup",
            help: "take a backup now; the result follows in this thread",
        },
        run: |cx, _| Box::pin(handlers::backup(cx)),
    },
    Command {
        spec: Spec {
            name: "diagnose",
            shape: Shape::OptionalWord,
            usage: "!diagnose [topic]",
            help: "run the runbook's playbooks (synapse-oom, mas-db, oidc, vikunja-email, db-disk); findings follow in this thread",
        },
        run: |cx, args| Box::pin(handlers::diagnose(cx, args)),
    },
    Command {
        spec: Spec {
            name: "help",
            shape: Shape::OptionalWord,
            usage: "!help [command]",
            help: "this list, or one command's usage",
        },
        run: |_, args| Box::pin(std::future::ready(handlers::help(args))),
    },
];

/// The declarations, for the parser.
pub(crate) fn specs() -> Vec<Spec> {
    COMMANDS.iter().map(|c| c.spec).collect()
}

/// An alert's short id: the first 6 hex digits of a hash of its incident key (stable across
/// restarts, short enough to type).
pub(crate) fn alert_id(incident: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(incident.as_bytes())[..3])
}

/// The handlers, in their own module: the table above only names them.
mod handlers {
    use super::*;

    fn now(cx: &Ctx) -> i64 {
        cx.clock.now().as_millisecond()
    }

    fn store_failed(e: &crate::store::StoreError) -> Reply {
        tracing::error!(error = %e, "A control-room command could not use the store.");
        Reply::no(format!("the store could not be used: {}", e.in_words()))
    }

    pub(super) async fn status(cx: &Ctx) -> Reply {
        let t = now(cx);
        let mut failing = Vec::new();
        let mut ok = 0;
        let mut unknown = 0;
        for check in &cx.live.checks {
            match cx.live.latest(&check.name) {
                Some(l) if Live::is_stale(check, &l, t) => unknown += 1,
                Some(l) if l.ok => ok += 1,
                Some(_) => failing.push(check.name.clone()),
                None => unknown += 1,
            }
        }
        let mut lines = vec![format!(
            "{} checks: {ok} ok, {} failing, {unknown} not run yet or stale",
            cx.live.checks.len(),
            failing.len()
        )];
        if !failing.is_empty() {
            let shown: Vec<String> =
                failing.iter().take(10).map(|f| crate::text::escape_controls(f).into_owned()).collect();
            let more = failing.len().saturating_sub(10);
            lines.push(format!(
                "failing: {}{}",
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ));
        }
        match cx.store.alerts().await {
            Ok(alerts) => {
                let firing = alerts.iter().filter(|a| a.state.phase() == crate::alert::Phase::Firing).count();
                lines.push(format!("alerts: {firing} firing, {} pending (!alerts lists them)", alerts.len() - firing));
            }
            Err(e) => return store_failed(&e),
        }
        match mstore::current(&cx.store, t).await {
            Ok(windows) if windows.is_empty() => lines.push("windows: none open".into()),
            Ok(windows) => {
                for w in windows.iter().take(10) {
                    lines.push(format!(
                        "window {}: {} until {} ({})",
                        w.id,
                        w.services.join(", "),
                        crate::units::utc_minute(w.ends_at),
                        crate::text::escape_controls(&w.reason)
                    ));
                }
            }
            Err(e) => return store_failed(&e),
        }
        match cx.watchdog.verdict(cx.store.health()) {
            Ok(()) => lines.push("evaluation: healthy".into()),
            Err(why) => lines.push(format!("evaluation: {why}")),
        }
        Reply::ok(lines.join("\n"))
    }

    pub(super) async fn alerts(cx: &Ctx) -> Reply {
        let alerts = match cx.store.alerts().await {
            Ok(a) => a,
            Err(e) => return store_failed(&e),
        };
        if alerts.is_empty() {
            return Reply::ok("No open alerts.");
        }
        let mut lines = Vec::new();
        for a in alerts.iter().take(30) {
            let id = alert_id(&crate::notify::incident_key(&a.labels));
            let service = a.labels.get("service").map(|s| format!(" {s}")).unwrap_or_default();
            lines.push(
                crate::text::escape_controls(&format!(
                    "{id} {} {}{service} since {}",
                    a.state.phase().as_str().to_uppercase(),
                    a.alert,
                    crate::units::utc_minute(a.state.since())
                ))
                .into_owned(),
            );
        }
        if alerts.len() > 30 {
            lines.push(format!("… and {} more (`mxwarden alerts` shows all)", alerts.len() - 30));
        }
        Reply::ok(lines.join("\n"))
    }

    pub(super) async fn ack(cx: &Ctx, args: &Args) -> Reply {
        let Args::Id(id) = args else { return Reply::no("give an alert id") };
        let alerts = match cx.store.alerts().await {
            Ok(a) => a,
            Err(e) => return store_failed(&e),
        };
        let id = id.to_ascii_lowercase();
        let found = alerts.iter().find_map(|a| {
            let incident = crate::notify::incident_key(&a.labels);
            (alert_id(&incident) == id).then_some((a, incident))
        });
        let Some((alert, incident)) = found else {
            return Reply::no(format!("no open alert has id {id}; `!alerts` lists them"));
        };
        let crate::alert::AlertState::Firing { fired_at, .. } = alert.state else {
            return Reply::no(format!("{} ({id}) is pending, not firing: nothing to acknowledge yet", alert.alert));
        };
        match cstore::ack(&cx.store, &incident, fired_at, &cx.sender, now(cx)).await {
            Ok(()) => {
                tracing::info!(alert = %alert.alert, by = %cx.sender, "Alert acknowledged from the control room.");
                Reply::ok(format!(
                    "Acknowledged {} ({id}): no more reminders for this firing; its resolve is still sent.",
                    crate::text::escape_controls(&alert.alert)
                ))
            }
            Err(e) => store_failed(&e),
        }
    }

    /// Silence or maintenance: both are ad hoc windows (pages held, sent at the end if still
    /// firing); the reason says which and who opened it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum WindowKind {
        Silence,
        Maintenance,
    }

    pub(super) async fn open_window(cx: &Ctx, args: &Args, kind: WindowKind) -> Reply {
        let Args::Window { service, written, reason, .. } = args else {
            return Reply::no("give a service and a duration");
        };
        let word = match kind {
            WindowKind::Silence => "silence",
            WindowKind::Maintenance => "maintenance",
        };
        let why = reason.clone().unwrap_or_else(|| format!("{word} from the control room"));
        let stored = match kind {
            WindowKind::Silence => format!("silence: {why} (by {})", cx.sender),
            WindowKind::Maintenance => format!("{why} (by {})", cx.sender),
        };
        let t = now(cx);
        let new =
            match crate::maintenance::check_request(std::slice::from_ref(service), written, &stored, &cx.services, t) {
                Ok(n) => n,
                Err(why) => return Reply::no(why),
            };
        let window = match mstore::start(&cx.store, &new.services, new.starts_at, new.ends_at, &new.reason, t).await {
            Ok(w) => w,
            Err(e) => return store_failed(&e),
        };
        // The daemon's gate sees the window at once, not at its next sweep.
        if let Ok(current) = mstore::current(&cx.store, t).await {
            cx.calendar.set_ad_hoc(current);
        }
        tracing::info!(window = window.id, service = %service, by = %cx.sender, kind = word, "Window opened from the control room.");
        let verb = match kind {
            WindowKind::Silence => "Silenced",
            WindowKind::Maintenance => "Maintenance for",
        };
        Reply::ok(format!(
            "{verb} {service} until {} (window {}): its pages are held, and sent at the end if still firing. `!end {}` ends it.",
            crate::units::utc_minute(window.ends_at),
            window.id,
            window.id
        ))
    }

    pub(super) async fn end(cx: &Ctx, args: &Args) -> Reply {
        let Args::Id(id) = args else { return Reply::no("give a window number") };
        let Ok(number) = id.parse::<i64>() else {
            return Reply::no(format!("`{id}` is not a window number; `!status` lists the open windows"));
        };
        let t = now(cx);
        let outcome = match mstore::end(&cx.store, number, t).await {
            Ok(o) => o,
            Err(e) => return store_failed(&e),
        };
        if let Ok(current) = mstore::current(&cx.store, t).await {
            cx.calendar.set_ad_hoc(current);
        }
        match outcome {
            mstore::Ended::Now(w) => {
                tracing::info!(window = w.id, by = %cx.sender, "Window ended from the control room.");
                Reply::ok(format!(
                    "Window {} ({}) ended; pages still firing are sent now.",
                    w.id,
                    w.services.join(", ")
                ))
            }
            mstore::Ended::AlreadyOver(w) => Reply::no(format!("window {} is already over", w.id)),
            mstore::Ended::Unknown => Reply::no(format!("no window {number}")),
        }
    }

    pub(super) async fn backup(cx: &Ctx) -> Reply {
        let Some(plan) = cx.backup.clone() else {
            return Reply::no("no backups are configured (`backup:` in the config)");
        };
        let thread = cx.thread.clone();
        let at = cx.clock.now();
        let by = cx.sender.clone();
        tokio::spawn(async move {
            let progress = crate::backup::run::Progress::hidden();
            let text = match crate::backup::run::run(&plan, &plan.storage, None, &progress, at).await {
                Ok(m) => {
                    let bytes: u64 = m.items.iter().map(|i| i.stored_bytes).sum();
                    format!(
                        "Backup {} finished: {:?}, {} items, {} stored.",
                        m.id,
                        m.status,
                        m.items.len(),
                        crate::units::ByteSize(bytes)
                    )
                }
                Err(e) => format!("Backup could not run: {e}"),
            };
            tracing::info!(by = %by, outcome = %text, "Backup from the control room done.");
            super::super::follower::post_in_thread(&thread, &format!("backup-{}", at.as_millisecond()), &text).await;
        });
        Reply::ok("Backup started; the result follows in this thread.")
    }

    pub(super) async fn diagnose(cx: &Ctx, args: &Args) -> Reply {
        let asked: Vec<String> = match args {
            Args::Word(Some(topic)) => vec![topic.clone()],
            _ => Vec::new(),
        };
        let topics = match crate::diagnose::select(&cx.config, &asked) {
            Ok(t) if t.is_empty() => return Reply::no("no playbook can run with this config"),
            Ok(t) => t,
            Err(e) => return Reply::no(e.to_string()),
        };
        let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
        let (config, thread, by) = (cx.config.clone(), cx.thread.clone(), cx.sender.clone());
        let key = format!("diagnose-{}", cx.clock.now().as_millisecond());
        tokio::spawn(async move {
            let deadline = std::time::Duration::from_secs(30);
            let body = match tokio::time::timeout(
                deadline + std::time::Duration::from_secs(1),
                crate::diagnose::run(&config, &topics, deadline),
            )
            .await
            {
                Ok(report) => crate::diagnose::render_text(&report),
                Err(_) => format!("The diagnosis did not finish within {} s.", deadline.as_secs()),
            };
            let body = config.redactor.redact(&body).into_owned();
            tracing::info!(by = %by, "Diagnosis from the control room done.");
            super::super::follower::post_in_thread(&thread, &key, &body).await;
        });
        Reply::ok(format!("Diagnosing {}; the findings follow in this thread.", names.join(", ")))
    }

    pub(super) fn help(args: &Args) -> Reply {
        if let Args::Word(Some(name)) = args {
            return match COMMANDS.iter().find(|c| c.spec.name == name) {
                Some(c) => Reply::ok(format!("{}: {}", c.spec.usage, c.spec.help)),
                None => Reply::no(format!("no command `!{name}`")),
            };
        }
        let lines: Vec<String> = COMMANDS.iter().map(|c| format!("{} — {}", c.spec.usage, c.spec.help)).collect();
        Reply::ok(format!("Commands (from the allowed users only):\n{}", lines.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_unique_names_and_every_command_of_the_issue() {
        let specs = specs();
        let names: BTreeSet<&str> = specs.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), specs.len(), "unique names");
        for s in &specs {
            assert!(s.usage.starts_with(&format!("!{}", s.name)), "{}: usage names the command", s.name);
            assert!(!s.help.is_empty());
        }
        for name in ["status", "alerts", "ack", "silence", "maintenance", "end", "backup", "diagnose", "help"] {
            assert!(names.contains(name), "{name}");
        }
    }

    #[test]
    fn alert_ids_are_six_hex_digits_and_stable() {
        let id = alert_id("alertname=SynapseDown,service=synapse,severity=critical");
        assert_eq!(id.len(), 6);
        assert_eq!(id, alert_id("alertname=SynapseDown,service=synapse,severity=critical"));
        assert_ne!(id, alert_id("alertname=MasDown,service=mas,severity=critical"));
    }
}
