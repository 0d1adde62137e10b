//! The executor: asks `plan::decide` for the next step, writes the step's start to the store,
//! runs it under its timeout, writes its end (outcome, evidence, what it learnt, any page it
//! queues) in one transaction, and asks again — until the planner says the update is over.
//! After a crash, `resume` marks the step the process died in as `interrupted` and goes on
//! the same way. Each step reports to a [`Reporter`] (the CLI's spinner or timestamped
//! lines; nothing in the daemon).

use super::plan::{self, Ending, Next, Outcome, Step};
use super::verify::probe_all;
use super::{Request, Target, command, version};
use crate::backup::Storage as _;
use crate::clock::Clock;
use crate::notify::{AlertInfo, Kind, Notification, Receiver};
use crate::store::maintenance as mstore;
use crate::store::updates::{self, Begun, NewUpdate, StepEnd, UpdateRow};
use crate::store::{NewDelivery, Store, StoreError};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why an update could not be run (its steps' failures are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpdateError {
    /// The store refused a read or write: the record cannot be kept, so nothing goes on.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service already has an unfinished update.
    #[error(
        "{service} already has an unfinished update (#{id}, to {target}, run by {owner}); finish it with `mxwarden update --resume` or wait"
    )]
    Busy {
        /// The service.
        service: String,
        /// The other update.
        id: i64,
        /// What it deploys.
        target: String,
        /// Who runs it.
        owner: String,
    },
    /// The update to resume cannot be resumed (unknown, over, or run by a live process).
    #[error("{0}")]
    NotResumable(String),
}

/// Where progress goes.
pub(crate) trait Reporter: Send + Sync {
    /// A step starts.
    fn started(&self, step: Step);
    /// A step ended: its outcome, one line, and how long it took.
    fn ended(&self, step: Step, outcome: Outcome, line: &str, took: Duration);
}

/// Reports nothing (the daemon: the record and the status page say it all).
pub(crate) struct Quiet;

impl Reporter for Quiet {
    fn started(&self, _: Step) {}
    fn ended(&self, _: Step, _: Outcome, _: &str, _: Duration) {}
}

/// A step's result before it is written.
pub(crate) struct Done {
    outcome: Outcome,
    /// One line for the progress output.
    line: String,
    /// The evidence (may be long).
    detail: String,
    facts: Map<String, Value>,
    deliveries: Vec<NewDelivery>,
}

impl Done {
    pub(crate) fn new(outcome: Outcome, line: impl Into<String>) -> Self {
        let line = line.into();
        Self { outcome, detail: line.clone(), line, facts: Map::new(), deliveries: Vec::new() }
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    fn fact(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.facts.insert(key.to_string(), value.into());
        self
    }
}

/// Who runs an update: `pid@host`.
pub(crate) fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}@{}", std::process::id(), host.trim())
}

/// Whether the process named by `owner` (`pid@host`) is alive on this host.
pub(crate) fn owner_alive(owner: &str) -> bool {
    let Some((pid, host)) = owner.split_once('@') else { return false };
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if host != here.trim() {
        return true; // another host: cannot tell, so assume it runs
    }
    pid.parse::<u32>().is_ok_and(|p| p != std::process::id() && std::path::Path::new(&format!("/proc/{p}")).exists())
}

/// Logs each unfinished update whose process is gone (the daemon calls this at start): it
/// waits for `mxwarden update --resume`, which rolls back a deploy it left in flight.
pub(crate) async fn warn_interrupted(store: &Store) {
    match updates::list(store, true, 100).await {
        Ok(rows) => {
            for u in rows.iter().filter(|u| !owner_alive(&u.owner)) {
                let step = u.steps.last().map_or("start", |s| s.step.as_str());
                tracing::warn!(update = u.id, service = %u.service, step, "An update was interrupted; `mxwarden update --resume` continues it.");
            }
        }
        Err(e) => tracing::warn!(error = %e, "Unfinished updates could not be read."),
    }
}

/// The request as the record keeps it (for `--resume`).
fn options_json(request: &Request) -> Value {
    json!({
        "force": request.force,
        "no_backup": request.no_backup,
        "expect_version": request.expect_version,
    })
}

/// The request back from the record.
pub(crate) fn request_of(row: &UpdateRow) -> Request {
    let s = |k: &str| row.options.get(k).and_then(Value::as_str).map(str::to_string);
    Request {
        service: row.service.clone(),
        to: row.target.clone(),
        expect_version: s("expect_version"),
        reason: row.reason.clone(),
        force: row.options.get("force").and_then(Value::as_bool).unwrap_or(false),
        no_backup: s("no_backup"),
    }
}

/// The steps run so far with their outcomes; a step without an end counts as interrupted.
pub(crate) fn history(row: &UpdateRow) -> Vec<(Step, Outcome)> {
    row.steps
        .iter()
        .filter_map(|s| {
            let step = Step::parse(&s.step)?;
            let outcome = s.outcome.as_deref().and_then(Outcome::parse).unwrap_or(Outcome::Interrupted);
            Some((step, outcome))
        })
        .collect()
}

/// Runs updates of one service.
pub(crate) struct Updater {
    /// The service and its config.
    pub target: Arc<Target>,
    /// The record.
    pub store: Store,
    /// Time for the record.
    pub clock: Arc<dyn Clock>,
    /// For version, login-path and Matrix calls.
    pub http: reqwest::Client,
    /// Progress.
    pub reporter: Arc<dyn Reporter>,
    /// An age identity file to read the backup back with (else checksums only).
    pub identity: Option<std::path::PathBuf>,
}

impl Updater {
    pub(super) fn now(&self) -> i64 {
        self.clock.now().as_millisecond()
    }

    /// Records a new update of the target's service; refused while one is unfinished.
    pub(crate) async fn begin(&self, request: &Request) -> Result<i64, UpdateError> {
        let new = NewUpdate {
            service: self.target.service.clone(),
            target: request.to.clone(),
            reason: request.reason.clone(),
            options: options_json(request),
            owner: owner(),
            started_at: self.now(),
        };
        match updates::begin(&self.store, &new).await? {
            Begun::Started(id) => Ok(id),
            Begun::Busy(other) => Err(UpdateError::Busy {
                service: other.service,
                id: other.id,
                target: other.target,
                owner: other.owner,
            }),
        }
    }

    /// Takes over unfinished update `id` after a crash: refused while its owner still runs.
    /// The step it died in is recorded as `interrupted`.
    pub(crate) async fn take_over(&self, id: i64) -> Result<(), UpdateError> {
        let Some(row) = updates::get(&self.store, id).await? else {
            return Err(UpdateError::NotResumable(format!("no update #{id}")));
        };
        if row.state != updates::RUNNING {
            return Err(UpdateError::NotResumable(format!("update #{id} is over ({})", row.state)));
        }
        if owner_alive(&row.owner) {
            return Err(UpdateError::NotResumable(format!("update #{id} is still being run by {}", row.owner)));
        }
        if !updates::take_over(&self.store, id, &row.owner, &owner()).await? {
            return Err(UpdateError::NotResumable(format!("update #{id} was taken over by another process")));
        }
        for s in row.steps.iter().filter(|s| s.ended_at.is_none()) {
            let end = StepEnd {
                outcome: Outcome::Interrupted.name().into(),
                detail: format!("the process running it ({}) stopped before the step ended", row.owner),
                ..StepEnd::default()
            };
            updates::step_ended(&self.store, id, s.seq, &end, self.now()).await?;
            if let Some(step) = Step::parse(&s.step) {
                self.reporter.ended(step, Outcome::Interrupted, "interrupted (the process died in it)", Duration::ZERO);
            }
        }
        Ok(())
    }

    /// Runs update `id` to its end.
    pub(crate) async fn drive(&self, id: i64) -> Result<Ending, UpdateError> {
        loop {
            let Some(row) = updates::get(&self.store, id).await? else {
                return Err(UpdateError::NotResumable(format!("update #{id} vanished from the store")));
            };
            let request = request_of(&row);
            let history = history(&row);
            match plan::decide(&history, request.options()) {
                Next::Done(ending) => {
                    updates::finish(&self.store, id, ending.name(), self.now()).await?;
                    return Ok(ending);
                }
                Next::Run(step) => {
                    let seq = row.steps.last().map_or(1, |s| s.seq + 1);
                    updates::step_started(&self.store, id, seq, step.name(), self.now()).await?;
                    self.reporter.started(step);
                    crate::update::run::failpoint(step);
                    let began = Instant::now();
                    let limit = self.step_timeout(step);
                    let done = match tokio::time::timeout(limit, self.step(step, &row, &request, &history)).await {
                        Ok(done) => done,
                        Err(_) => Done::new(
                            Outcome::Failed,
                            format!("timed out after {}", crate::units::HumanDuration(limit)),
                        ),
                    };
                    // Whatever a step saw (command output, an error echoing a URL) is masked
                    // with the config's secrets before it is kept or shown.
                    let redactor = &self.target.redactor;
                    let done = Done {
                        line: redactor.redact(&done.line).into_owned(),
                        detail: redactor.redact(&done.detail).into_owned(),
                        ..done
                    };
                    let end = StepEnd {
                        outcome: done.outcome.name().into(),
                        detail: done.detail.clone(),
                        facts: done.facts.clone(),
                        deliveries: done.deliveries.clone(),
                    };
                    updates::step_ended(&self.store, id, seq, &end, self.now()).await?;
                    tracing::info!(update = id, step = %step, outcome = done.outcome.name(), "Update step ended.");
                    self.reporter.ended(step, done.outcome, &done.line, began.elapsed());
                    if step == Step::Page && !done.deliveries.is_empty() {
                        self.deliver_now().await;
                    }
                }
            }
        }
    }

    fn step_timeout(&self, step: Step) -> Duration {
        let d = &self.target.deploy;
        let command = |which: Step| match &d.deployer {
            super::Deployer::Command { deploy, rollback } => match which {
                Step::Rollback => rollback.as_ref().map_or(Duration::from_secs(60), |r| r.timeout),
                _ => deploy.timeout,
            },
            super::Deployer::Render { timeout, .. } => *timeout,
        };
        match step {
            Step::Preflight => Duration::from_secs(120),
            Step::Announce | Step::Page | Step::Finish => Duration::from_secs(60),
            Step::Backup => d.backup_timeout,
            Step::Deploy | Step::Rollback => command(step) + Duration::from_secs(30),
            Step::Verify | Step::VerifyRollback => d.verify.timeout + Duration::from_secs(120),
        }
    }

    async fn step(&self, step: Step, row: &UpdateRow, request: &Request, history: &[(Step, Outcome)]) -> Done {
        match step {
            Step::Preflight => self.preflight(row, request).await,
            Step::Announce => self.announce(row, request).await,
            Step::Backup => self.backup(request).await,
            Step::Deploy => self.deploy(row, Step::Deploy).await,
            Step::Verify => self.verify(request.expected_version().as_deref()).await,
            Step::Rollback => self.deploy(row, Step::Rollback).await,
            Step::VerifyRollback => {
                let before = row.facts.get("previous_version").and_then(Value::as_str).map(str::to_string);
                self.verify(before.as_deref()).await
            }
            Step::Page => self.page(row, history).await,
            Step::Finish => self.finish(row, history).await,
        }
    }

    // ---- preflight

    async fn preflight(&self, _row: &UpdateRow, request: &Request) -> Done {
        let t = &self.target;
        let mut findings: Vec<String> = Vec::new();
        let mut passed: Vec<String> = Vec::new();
        let mut live_deploy: Option<String> = None;
        let prober = crate::probe::Prober::new(self.clock.clone());
        let mut checks = t.checks.clone();
        checks.extend(t.dependency_checks.iter().cloned());
        for o in probe_all(&prober, &checks, t.concurrency).await {
            if o.ok {
                passed.push(format!("{} ok", o.check.0));
            } else {
                findings.push(format!("{} fails: {}", o.check.0, o.detail()));
            }
        }
        let watched: std::collections::BTreeSet<&str> =
            std::iter::once(t.service.as_str()).chain(t.upstream.iter().map(String::as_str)).collect();
        match self.store.alerts().await {
            Ok(alerts) => {
                for a in alerts {
                    let firing = matches!(a.state, crate::alert::AlertState::Firing { .. });
                    let critical = a.labels.get("severity").is_some_and(|s| s == "critical");
                    let about = a.labels.get("service").is_some_and(|s| watched.contains(s.as_str()));
                    if firing && critical && about {
                        findings.push(format!(
                            "critical alert {} is firing for {}",
                            a.alert,
                            a.labels.get("service").map_or("", String::as_str)
                        ));
                    }
                }
            }
            Err(e) => findings.push(format!("cannot read the open alerts: {e}")),
        }
        if request.no_backup.is_none() {
            match &t.backup {
                None => {
                    findings.push("no `backup:` section: nothing to back up to (or pass --no-backup REASON)".into())
                }
                Some(plan) => match writable(&plan.storage).await {
                    Ok(()) => passed.push(format!("backup destination {} writable", plan.storage.describe())),
                    Err(e) => findings.push(e),
                },
            }
        }
        match &t.deploy.deployer {
            super::Deployer::Command { deploy, rollback } => {
                match command::runnable(&deploy.argv) {
                    Ok(()) => passed.push("deploy command runnable".into()),
                    Err(e) => findings.push(format!("deploy.command: {e}")),
                }
                match rollback {
                    None => findings.push("no deploy.rollback.command: a failed deploy could not be undone".into()),
                    Some(r) => {
                        if let Err(e) = command::runnable(&r.argv) {
                            findings.push(format!("deploy.rollback.command: {e}"));
                        }
                    }
                }
            }
            super::Deployer::Render { api, service_id, .. } => {
                let client = super::render::client(api, self.http.clone());
                match super::render::live_deploy(&client, service_id).await {
                    Ok((deploy, source)) => {
                        passed.push(format!("Render: {service_id} answers, live deploy {deploy} ({source})"));
                        live_deploy = Some(deploy);
                    }
                    Err(e) => findings.push(format!("Render: {e}")),
                }
            }
        }
        let mut done_facts = Map::new();
        if let Some(deploy) = live_deploy {
            done_facts.insert("previous_deploy".into(), deploy.into());
        }
        match version::fetch(&self.http, &t.access).await {
            Ok(Some(v)) => {
                passed.push(format!("reports version {v}"));
                done_facts.insert("previous_version".into(), v.into());
            }
            Ok(None) => passed.push("reports no version".into()),
            Err(e) => passed.push(format!("version unknown: {e}")),
        }
        let mut done = if findings.is_empty() {
            Done::new(Outcome::Ok, format!("{} and what it needs are healthy", t.service)).detail(passed.join("\n"))
        } else {
            let forced = if request.force { " (going on: --force)" } else { "" };
            Done::new(Outcome::Failed, format!("{}{forced}", findings.join("; "))).detail(format!(
                "{}{forced}\npassed: {}",
                findings.join("\n"),
                passed.join("; ")
            ))
        };
        done.facts = done_facts;
        done
    }

    // ---- announce

    fn matrix_receivers(&self) -> Vec<(String, Receiver)> {
        let Some(alerting) = &self.target.alerting else { return Vec::new() };
        let Some(tier) = alerting.tier("critical") else { return Vec::new() };
        tier.receivers
            .iter()
            .filter_map(|name| match alerting.receivers.get(name) {
                Some(r @ Receiver::Matrix(_)) => Some((name.clone(), r.clone())),
                _ => None,
            })
            .collect()
    }

    /// Sends `title`/`text` to the critical tier's Matrix receivers; `key` makes the Matrix
    /// transaction id, so a repeated step (after a crash) is the same message.
    async fn tell(&self, key: &str, title: &str, text: &str) -> Result<usize, String> {
        let receivers = self.matrix_receivers();
        let n = Notification {
            kind: Kind::Notice,
            incident: key.to_string(),
            title: title.to_string(),
            text: format!("{title}\n{text}"),
            html: format!(
                "<b>{}</b><br/>{}",
                crate::notify::html_escape(title),
                crate::notify::html_escape(text).replace('\n', "<br/>")
            ),
            alerts: Vec::new(),
            created_at: self.now(),
        };
        let mut problems = Vec::new();
        for (name, receiver) in &receivers {
            if let Err(e) = crate::dispatch::send_once(&self.http, name, receiver, key, &n, None).await {
                problems.push(format!("{name}: {e}"));
            }
        }
        if problems.is_empty() { Ok(receivers.len()) } else { Err(problems.join("; ")) }
    }

    async fn announce(&self, row: &UpdateRow, request: &Request) -> Done {
        let t = &self.target;
        let now = self.now();
        let window_ms = t.deploy.window.as_millis() as i64;
        let mut services = vec![t.service.clone()];
        services.extend(t.dependents.iter().cloned());
        let reason = format!("update #{} of {} to {}", row.id, t.service, request.to);
        let window = match row.facts.get("window_id").and_then(Value::as_i64) {
            Some(id) => id,
            None => match mstore::start(&self.store, &services, now, now + window_ms, &reason, now).await {
                Ok(w) => w.id,
                Err(e) => return Done::new(Outcome::Failed, format!("cannot open the maintenance window: {e}")),
            },
        };
        let took = crate::units::HumanDuration(t.deploy.window);
        let title = format!("Updating {} to {}", t.service, request.to);
        let text = format!(
            "Why: {}\nExpected downtime: up to {took}. Maintenance window #{window} covers {} until {}.\nmxwarden update #{}",
            request.reason,
            services.join(", "),
            crate::units::utc_minute(now + window_ms),
            row.id
        );
        let done = match self.tell(&format!("update-{}-{}-announce", row.id, row.started_at), &title, &text).await {
            Ok(0) => Done::new(
                Outcome::Ok,
                format!("window #{window} open ({}); no Matrix receiver to tell", services.join(", ")),
            ),
            Ok(n) => {
                Done::new(Outcome::Ok, format!("told {n} room(s); window #{window} open for {}", services.join(", ")))
            }
            Err(e) => Done::new(Outcome::Failed, format!("the ops room was not told: {e}")),
        };
        done.fact("window_id", window)
    }

    // ---- backup

    async fn backup(&self, request: &Request) -> Done {
        if let Some(reason) = &request.no_backup {
            return Done::new(Outcome::Skipped, format!("--no-backup: {reason}"));
        }
        let Some(plan) = &self.target.backup else {
            return Done::new(Outcome::Failed, "no `backup:` section in the config");
        };
        let progress = crate::backup::run::Progress::hidden();
        let t = &self.target;
        let (scoped, what) = super::scoped_backup(plan, &t.service, t.access.kind);
        let plan = &scoped;
        let manifest = crate::backup::run::run(plan, &plan.storage, None, &progress, self.clock.now()).await;
        // A bucket finishes its background work (abandoned uploads aborted) before the check.
        plan.storage.settle().await;
        let manifest = match manifest {
            Ok(m) => m,
            Err(e) => return Done::new(Outcome::Failed, format!("backup did not run: {e}")),
        };
        let failed: Vec<String> =
            manifest.items.iter().filter_map(|i| i.error.as_ref().map(|e| format!("{}: {e}", i.label()))).collect();
        if !failed.is_empty() {
            return Done::new(Outcome::Failed, format!("backup {} failed: {}", manifest.id, failed.join("; ")))
                .fact("backup_id", manifest.id.clone());
        }
        // `--identity`, else the restore drill's identity (`backup.drill_identity_file`).
        let identity = self.identity.clone().or_else(|| plan.drill_identity.clone());
        let identities = match &identity {
            Some(path) => match crate::backup::pipeline::identities(path) {
                Ok(ids) => Some(ids),
                Err(e) => return Done::new(Outcome::Failed, format!("backup identity {}: {e}", path.display())),
            },
            None => None,
        };
        let report = crate::backup::verify::verify(plan, &plan.storage, &manifest, identities.as_deref(), false).await;
        let depth = if identities.is_some() { "checksums, decrypted and read back" } else { "checksums" };
        if report.ok {
            Done::new(
                Outcome::Ok,
                format!("backup {} of {what}: {} items verified ({depth})", manifest.id, manifest.items.len()),
            )
            .fact("backup_id", manifest.id.clone())
        } else {
            let problems: Vec<String> =
                report.items.iter().filter_map(|i| i.problem.as_ref().map(|p| format!("{}: {p}", i.item))).collect();
            Done::new(Outcome::Failed, format!("backup {} did not verify: {}", manifest.id, problems.join("; ")))
                .fact("backup_id", manifest.id.clone())
        }
    }

    // ---- deploy and rollback

    async fn deploy(&self, row: &UpdateRow, step: Step) -> Done {
        let t = &self.target;
        let facts = command::Facts {
            service: t.service.clone(),
            to: row.target.clone(),
            from: row.facts.get("previous_version").and_then(Value::as_str).unwrap_or_default().to_string(),
            id: row.id,
        };
        match &t.deploy.deployer {
            super::Deployer::Command { deploy, rollback } => {
                let spec = match step {
                    Step::Rollback => match rollback {
                        Some(r) => r,
                        None => return Done::new(Outcome::Failed, "no deploy.rollback.command is configured"),
                    },
                    _ => deploy,
                };
                let argv0 = spec.argv.first().cloned().unwrap_or_default();
                match command::run(spec, &facts, &t.redactor).await {
                    Err(e) => Done::new(Outcome::Failed, e),
                    Ok(f) => {
                        let detail = f.describe(&argv0, spec.timeout);
                        let line = detail.lines().next().unwrap_or_default().to_string();
                        let outcome = if f.ok() { Outcome::Ok } else { Outcome::Failed };
                        Done::new(outcome, line).detail(detail)
                    }
                }
            }
            super::Deployer::Render { api, service_id, timeout } => {
                let client = super::render::client(api, self.http.clone());
                let poll = t.deploy.verify.interval.min(Duration::from_secs(2));
                let mut before = String::new();
                let followed = match step {
                    Step::Rollback => {
                        let Some(back) = row.facts.get("previous_deploy").and_then(Value::as_str) else {
                            return Done::new(Outcome::Failed, "no deploy live before the update is recorded");
                        };
                        // A deploy still under way (a crash, a timeout) would undo the rollback
                        // when it goes live.
                        if let Some(ours) = row.facts.get("deploy_id").and_then(Value::as_str) {
                            before = super::render::cancel_if_running(&client, service_id, ours).await + "\n";
                        }
                        super::render::rollback(&client, service_id, back, *timeout, poll).await
                    }
                    _ => {
                        let started = jiff::Timestamp::now();
                        match super::render::trigger(&client, service_id, &row.target).await {
                            Err(e) => return Done::new(Outcome::Failed, e),
                            Ok(d) => {
                                // Recorded now, not at the step's end: after a crash the
                                // rollback must know which deploy may still be under way.
                                if let Err(e) = updates::set_fact(&self.store, row.id, "deploy_id", &d.id).await {
                                    tracing::warn!(error = %e, "The Render deploy's id was not recorded.");
                                }
                                super::render::follow(&client, service_id, d, started, *timeout, poll, "deploy").await
                            }
                        }
                    }
                };
                let outcome = if followed.ok { Outcome::Ok } else { Outcome::Failed };
                let key = if step == Step::Rollback { "rollback_deploy" } else { "deploy_id" };
                let mut done = Done::new(outcome, followed.line).detail(format!("{before}{}", followed.detail));
                if let Some(id) = followed.deploy_id {
                    done = done.fact(key, id);
                }
                done
            }
        }
    }

    // ---- page and finish

    fn failure_of(row: &UpdateRow) -> (String, String) {
        let failed = row.steps.iter().find(|s| {
            matches!(s.step.as_str(), "deploy" | "verify")
                && matches!(s.outcome.as_deref(), Some("failed" | "interrupted"))
        });
        match failed {
            Some(s) => (s.step.clone(), s.detail.clone()),
            None => ("update".into(), "no failed step recorded".into()),
        }
    }

    async fn page(&self, row: &UpdateRow, history: &[(Step, Outcome)]) -> Done {
        let t = &self.target;
        let (step, evidence) = Self::failure_of(row);
        let rollback = match plan::result_of(history) {
            Ending::RolledBack => "rolled back and verified".to_string(),
            _ => {
                let detail = row
                    .steps
                    .iter()
                    .rev()
                    .find(|s| {
                        matches!(s.step.as_str(), "rollback" | "verify-rollback") && s.outcome.as_deref() != Some("ok")
                    })
                    .map(|s| format!("{} {}: {}", s.step, s.outcome.as_deref().unwrap_or("?"), first_line(&s.detail)))
                    .unwrap_or_default();
                format!("ROLLBACK FAILED ({detail}): act now")
            }
        };
        let now = self.now();
        let mut labels = crate::model::Labels::new();
        labels.insert("alertname".into(), "UpdateFailed".into());
        labels.insert("severity".into(), "critical".into());
        labels.insert("service".into(), t.service.clone());
        labels.insert("update".into(), row.id.to_string());
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert(
            "summary".into(),
            format!(
                "Update #{} of {} to {} failed at {step} ({}); {rollback}",
                row.id,
                t.service,
                row.target,
                bounded(first_line(&evidence), 300)
            ),
        );
        annotations.insert("description".into(), format!("Evidence ({step}): {}", bounded(&evidence, 2_000)));
        let alert = AlertInfo {
            name: "UpdateFailed".into(),
            labels,
            annotations,
            value: 1.0,
            fired_at: now,
            resolved_at: None,
        };
        let mut n = crate::notify::alert_message(Kind::Firing, alert, now);
        let evidence = bounded(&evidence, 2_000);
        n.text.push_str(&format!("\nEvidence ({step}): {evidence}"));
        n.html.push_str(&format!(
            "<br/>Evidence ({step}):<pre>{}</pre>",
            crate::notify::html_escape(&crate::text::escape_controls_in_prose(&evidence))
        ));
        let receivers: Vec<String> =
            t.alerting.as_ref().and_then(|a| a.tier("critical")).map(|tier| tier.receivers.clone()).unwrap_or_default();
        if receivers.is_empty() {
            return Done::new(Outcome::Failed, "no critical tier with receivers: the page has nowhere to go");
        }
        let mut done = Done::new(Outcome::Ok, format!("UpdateFailed queued for {}: {}", receivers.join(", "), n.title));
        done.deliveries = NewDelivery::fan_out(&receivers, "critical", &n);
        done
    }

    /// Delivers what is due now (the page just queued) instead of waiting for a daemon. A
    /// daemon that also picks the row up sends the same Matrix transaction id.
    async fn deliver_now(&self) {
        let Some(alerting) = &self.target.alerting else { return };
        let d = crate::dispatch::Dispatcher::new(
            self.store.clone(),
            alerting.clone(),
            self.http.clone(),
            alerting.retry,
            self.clock.clone(),
        );
        if let Err(e) = d.run_once().await {
            tracing::warn!(error = %e, "The UpdateFailed page is queued but was not delivered now.");
        }
    }

    async fn finish(&self, row: &UpdateRow, history: &[(Step, Outcome)]) -> Done {
        let t = &self.target;
        let ending = plan::result_of(history);
        let mut notes = Vec::new();
        if let Some(id) = row.facts.get("window_id").and_then(Value::as_i64) {
            match mstore::end(&self.store, id, self.now()).await {
                Ok(_) => notes.push(format!("window #{id} ended")),
                Err(e) => return Done::new(Outcome::Failed, format!("window #{id} not ended: {e}")),
            }
        }
        let took =
            crate::units::HumanDuration(Duration::from_secs(((self.now() - row.started_at).max(0) / 1000) as u64));
        let announced = history.iter().any(|(s, o)| *s == Step::Announce && *o == Outcome::Ok);
        if announced {
            let (title, text) = match ending {
                Ending::Succeeded => {
                    (format!("Updated {} to {} in {took}", t.service, row.target), "Verified.".to_string())
                }
                Ending::RolledBack => {
                    let (step, evidence) = Self::failure_of(row);
                    (
                        format!("Update of {} to {} failed at {step}: rolled back ({took})", t.service, row.target),
                        format!("Evidence: {}", bounded(&evidence, 1_000)),
                    )
                }
                Ending::RollbackFailed => (
                    format!("Update of {} to {} failed and the rollback failed ({took})", t.service, row.target),
                    "The service needs a person now; see the UpdateFailed page.".into(),
                ),
                Ending::Aborted | Ending::Refused => {
                    let why = row
                        .steps
                        .iter()
                        .rev()
                        .find(|s| s.outcome.as_deref() == Some("failed"))
                        .map(|s| format!("{}: {}", s.step, first_line(&s.detail)))
                        .unwrap_or_default();
                    (format!("Update of {} to {} stopped before any change", t.service, row.target), why)
                }
            };
            let text = format!("{text}\nmxwarden update #{}", row.id);
            match self.tell(&format!("update-{}-{}-finish", row.id, row.started_at), &title, &text).await {
                Ok(_) => notes.push("room told".into()),
                Err(e) => notes.push(format!("the room was not told: {e}")),
            }
        }
        Done::new(Outcome::Ok, format!("{} after {took}; {}", ending.name(), notes.join(", ")))
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// At most `max` bytes of `text` (cut at a character boundary), marked when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &text[..end], text.len() - end)
}

/// Whether the backup destination takes a file: a directory gets a probe file written and
/// removed; a bucket a probe object written, committed and deleted (as `mxwarden doctor` does).
async fn writable(storage: &crate::backup::Store) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let refused = |e: &dyn std::fmt::Display| format!("backup destination {} is not writable: {e}", storage.describe());
    match storage {
        crate::backup::Store::Dir(local) => {
            let dir = local.root();
            crate::private_fs::create_dir_all(dir).map_err(|e| refused(&e))?;
            let probe = dir.join(format!(".mxwarden-update-probe-{}", std::process::id()));
            std::fs::write(&probe, b"").map_err(|e| refused(&e))?;
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        crate::backup::Store::S3(bucket) => {
            let key = format!("mxwarden-update/probe-{}", std::process::id());
            let attempt = async {
                let mut w = bucket.create(&key).await.map_err(|e| refused(&e))?;
                w.write_all(b"mxwarden update: a write probe, deleted at once\n").await.map_err(|e| refused(&e))?;
                w.shutdown().await.map_err(|e| refused(&e))?;
                drop(w);
                bucket.commit(&key).await.map_err(|e| refused(&e))?;
                bucket.delete(&key).await.map_err(|e| refused(&e))
            };
            tokio::time::timeout(Duration::from_secs(60), attempt).await.unwrap_or_else(|_| {
                Err(format!("backup destination {} did not answer a write within 60 s", storage.describe()))
            })
        }
    }
}

/// Test-only crash points: with the `failpoints` feature, `MXWARDEN_FAILPOINT=update:<step>`
/// aborts the process as `kill -9` would, right after the step's start is recorded.
pub(crate) fn failpoint(step: Step) {
    #[cfg(feature = "failpoints")]
    if std::env::var("MXWARDEN_FAILPOINT").is_ok_and(|v| v == format!("update:{}", step.name())) {
        std::process::abort();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = step;
}
