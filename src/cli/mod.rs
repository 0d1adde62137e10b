//! The command line: `check`, `config check|show`, `init`. One small function per
//! subcommand; tables for people, `--json` for programs. Returns a `Status` that `main`
//! turns into the exit code.

use crate::clock::SystemClock;
use crate::config::{self, Config};
use crate::model::Observation;
use crate::probe::Prober;
use crate::probe::spec::CheckView;
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod alerting;
mod backup;
mod backup_render;
mod diagnose;
mod control;
mod doctor;
mod manual;
mod maintenance;
pub(crate) mod output;
mod pg;
mod render;
mod rules;
mod scrape;
mod update;

pub use output::Status;
pub(crate) use output::{out, outln};

/// mxwarden: the Matrix operator's runbook, made executable.
#[derive(Debug, Parser)]
#[command(name = "mxwarden", version, about, long_about = None)]
struct Cli {
    /// Config file.
    #[arg(long, short, global = true, env = "MXWARDEN_CONFIG", default_value = "mxwarden.yaml")]
    config: PathBuf,
    /// More log output on stderr (-v info, -vv debug). `RUST_LOG` (`debug`,
    /// `mxwarden=debug,warn`: target=level directives) takes precedence.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print nothing on stdout: for scripts that only read the exit status (0 ok, 1
    /// findings, 2 config or usage error). Errors still go to stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every check (or the named ones) once and print the results.
    Check {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Checks (`synapse/health`) or services (`synapse`) to run; default all.
        names: Vec<String>,
    },
    /// Validate or print a config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Fetch a Prometheus metrics page and print its samples, parsed by mxwarden's parser.
    Scrape {
        /// The metrics URL.
        url: String,
        /// Keep only these metric families (repeatable).
        #[arg(long = "family")]
        families: Vec<String>,
        /// Print JSON: one object per sample with name, labels, value and timestamp_ms.
        #[arg(long)]
        json: bool,
        /// Hard deadline for the whole fetch.
        #[arg(long, default_value = "10s")]
        timeout: String,
        /// Largest page read.
        #[arg(long, default_value = "32MiB")]
        body_limit: String,
    },
    /// List or export the alerting rules (presets and config).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// PostgreSQL diagnosis for `kind: postgres` services.
    #[command(subcommand)]
    Pg(crate::cli::pg::PgCommand),
    /// Run continuously: checks on their intervals, rules, notifications, digests.
    Run,
    /// Send notifications by hand.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Open (pending and firing) alerts from the store.
    Alerts {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recent deliveries from the outbox.
    Outbox {
        /// Only deliveries that were given up.
        #[arg(long)]
        dead: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Backups: take, list, verify and prune them (see docs/backups.md).
    #[command(subcommand)]
    Backup(crate::cli::backup::BackupCommand),
    /// Put a backup back: a database into a new database, or a file set into a directory.
    Restore(crate::cli::backup::RestoreArgs),
    /// Maintenance windows: open one now, list them, end one.
    #[command(subcommand)]
    Maintenance(crate::cli::maintenance::MaintenanceCommand),
    /// Update a service the runbook's way: preflight, announce, back up, deploy, verify; roll
    /// back and page on failure (see docs/update.md).
    Update(crate::cli::update::UpdateArgs),
    /// Every update with each step's times and outcome.
    Updates {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Show at most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Render, the platform: linked services' status, deploys, events, logs, restarts.
    #[command(subcommand)]
    Render(crate::cli::render::RenderCommand),
    /// The runbook's common issues, diagnosed: each finding with what was seen, why it
    /// matters, the fix and the runbook section. Topics: synapse-oom, mas-db, oidc,
    /// vikunja-email, db-disk; default every one the config makes possible.
    Diagnose {
        /// Playbooks to run (default: all the config allows).
        topics: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Synapse's media: statistics, and purging the remote media cache.
    #[command(subcommand)]
    Synapse(crate::cli::diagnose::SynapseCommand),
    /// Commands accepted from the control room (`control:`): who, when, what, and the outcome.
    Audit {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many, newest first.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Write a commented starter config for the runbook's stack.
    Init {
        /// Where to write it (default: the --config path).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
        /// Find out what runs at this homeserver URL (well-known, client versions, Synapse,
        /// MAS's issuer, federation) and write a config for it; every request is listed.
        #[arg(long, value_name = "URL")]
        discover: Option<String>,
        /// With --discover: print what was found as JSON (the config is still written).
        #[arg(long, requires = "discover")]
        json: bool,
    },
    /// Prove every credential and permission the config relies on, with a fix for each
    /// failure: exit 0 all proven, 1 something failed, 2 the config is wrong.
    Doctor {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (e.g. `mxwarden completions bash > /etc/bash_completion.d/mxwarden`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one per command into a directory.
    Man {
        /// Write `mxwarden.1`, `mxwarden-doctor.1`, … into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum NotifyCommand {
    /// Send a real test message through a receiver (or into the control room with
    /// `--control`): exit 0 delivered, 1 not (with the reason).
    Test {
        /// The receiver's name under `alerting.receivers`.
        #[arg(required_unless_present = "control")]
        receiver: Option<String>,
        /// Test the control room (`control:`) instead: joined, not encrypted, a message posted.
        #[arg(long, conflicts_with = "receiver")]
        control: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Every rule with its severity, `for` and expression; thresholds; runbook lines without a rule.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the rules as a Prometheus rule file (for `promtool check rules` and Prometheus).
    Export,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file: exit 0 when valid, 2 with every problem when not.
    Check {
        /// The file (default: the --config path).
        file: Option<PathBuf>,
        /// Print JSON: `{"file", "valid", "checks"}` or `{"file", "valid": false, "error"}`.
        #[arg(long)]
        json: bool,
    },
    /// Print the config as mxwarden understands it: presets expanded, secrets redacted.
    Show {
        /// The file (default: the --config path).
        file: Option<PathBuf>,
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> Result<Status> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(if e.use_stderr() { Status::Error } else { Status::Healthy });
        }
    };
    // The daemon reports what it does (alerts, deliveries) at info; one-shot commands stay quiet.
    let verbose = if matches!(cli.command, Command::Run) { cli.verbose.max(1) } else { cli.verbose };
    output::set_quiet(cli.quiet);
    let log_secrets = crate::redact::Shared::default();
    init_logging(verbose, log_secrets.clone());
    // The config's secrets reach the log writer before anything can log: as its text shows
    // them (valid or not), and once loaded with those read from `*_file`s.
    let config_path = match &cli.command {
        Command::Config(ConfigCommand::Check { file, .. } | ConfigCommand::Show { file, .. }) => file.as_ref(),
        _ => None,
    };
    log_secrets.add(&config::secrets_of(config_path.unwrap_or(&cli.config)));
    let load = |path: &Path| -> Result<Config> {
        let config = load(path)?;
        log_secrets.add(&config.redactor);
        Ok(config)
    };
    match cli.command {
        Command::Check { json, names } => check(&load(&cli.config)?, json, &names),
        Command::Config(ConfigCommand::Check { file, json }) => {
            config_check(file.as_deref().unwrap_or(&cli.config), json)
        }
        Command::Config(ConfigCommand::Show { file, json }) => {
            config_show(file.as_deref().unwrap_or(&cli.config), json)
        }
        Command::Init { output, force, discover: None, .. } => init(output.as_deref().unwrap_or(&cli.config), force),
        Command::Init { output, force, discover: Some(url), json } => {
            init_discover(output.as_deref().unwrap_or(&cli.config), force, &url, json)
        }
        Command::Doctor { json } => crate::cli::doctor::doctor(&load(&cli.config)?, json),
        Command::Completions { shell } => {
            crate::cli::manual::completions(<Cli as clap::CommandFactory>::command(), shell)
        }
        Command::Man { dir } => crate::cli::manual::man(<Cli as clap::CommandFactory>::command(), dir.as_deref()),
        Command::Scrape { url, families, json, timeout, body_limit } => {
            crate::cli::scrape::scrape(&url, &families, json, &timeout, &body_limit)
        }
        Command::Rules(RulesCommand::List { json }) => crate::cli::rules::list(&load(&cli.config)?, json),
        Command::Rules(RulesCommand::Export) => crate::cli::rules::export(&load(&cli.config)?),
        Command::Pg(command) => crate::cli::pg::run(&load(&cli.config)?, command),
        Command::Run => crate::cli::alerting::run(load(&cli.config)?, log_secrets.clone()),
        Command::Notify(NotifyCommand::Test { receiver: Some(receiver), .. }) => {
            crate::cli::alerting::notify_test(&load(&cli.config)?, &receiver)
        }
        Command::Notify(NotifyCommand::Test { receiver: None, .. }) => {
            crate::cli::control::control_test(&load(&cli.config)?)
        }
        Command::Audit { json, limit } => crate::cli::control::audit(&load(&cli.config)?, json, limit),
        Command::Alerts { json } => crate::cli::alerting::alerts(&load(&cli.config)?, json),
        Command::Outbox { dead, json } => crate::cli::alerting::outbox(&load(&cli.config)?, dead, json),
        Command::Backup(command) => crate::cli::backup::run(&cli.config, command),
        Command::Restore(args) => crate::cli::backup::restore(&load(&cli.config)?, args),
        Command::Maintenance(command) => crate::cli::maintenance::run(&load(&cli.config)?, command),
        Command::Update(args) => crate::cli::update::update(&load(&cli.config)?, args),
        Command::Updates { json, limit } => crate::cli::update::list(&load(&cli.config)?, json, limit),
        Command::Render(command) => crate::cli::render::run(&load(&cli.config)?, command),
        Command::Diagnose { topics, json } => crate::cli::diagnose::diagnose(&load(&cli.config)?, &topics, json),
        Command::Synapse(command) => crate::cli::diagnose::synapse(&load(&cli.config)?, command),
    }
}

/// Logs go to stderr through `secrets`, so no log line shows a secret of a loaded config.
fn init_logging(verbose: u8, secrets: crate::redact::Shared) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // `RUST_LOG` as target=level directives (`warn`, `mxwarden=debug,info`); the regex-based
    // EnvFilter would cost a DFA compiler in the binary for span and field filters nobody needs.
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| default.parse().unwrap_or_default());
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(crate::redact::LogWriter(secrets))
                .with_target(false)
                .with_ansi(colour_logs()),
        )
        .with(filter)
        .try_init();
}

/// Colours only for a person at a terminal: a log file, a journal or a pipe gets plain text,
/// and `NO_COLOR` (https://no-color.org) turns them off everywhere.
fn colour_logs() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub(crate) fn load(path: &Path) -> Result<Config> {
    Ok(config::load(path)?)
}

/// One thread does all the async work: probes are I/O-bound, and a single-threaded runtime
/// saves the cross-thread wake-ups a work-stealing one pays per probe (about a fifth of the
/// daemon's CPU per probe, `scripts/bench-daemon.sh`). SQLite work runs on sqlx's own thread.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

fn check(config: &Config, json: bool, names: &[String]) -> Result<Status> {
    let selected = select(config, names)?;
    let prober = Prober::new(Arc::new(SystemClock));
    let observations = runtime()?.block_on(prober.run_all(&selected, config.defaults.concurrency));
    let verdicts = crate::cli::rules::judge_now(config, &observations);
    if json {
        let mut rows: Vec<CheckResult> = observations.iter().map(CheckResult::from).collect();
        rows.extend(verdicts.iter().map(CheckResult::from));
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&observations);
        crate::cli::rules::print_verdicts(&verdicts);
    }
    let healthy = observations.iter().all(|o| o.ok) && verdicts.iter().all(|v| v.ok());
    Ok(if healthy { Status::Healthy } else { Status::Unhealthy })
}

/// The checks named on the command line (by check or service name), or all.
fn select(config: &Config, names: &[String]) -> Result<Vec<crate::probe::spec::CheckSpec>> {
    if names.is_empty() {
        return Ok(config.checks.clone());
    }
    let mut chosen = Vec::new();
    for name in names {
        let matching: Vec<_> = config
            .checks
            .iter()
            .filter(|c| &c.id.0 == name || c.service.as_deref() == Some(name.as_str()))
            .cloned()
            .collect();
        if matching.is_empty() {
            let known: Vec<&str> = config.checks.iter().map(|c| c.id.0.as_str()).collect();
            let hint = crate::units::closest(name, known.iter().copied())
                .map(|k| format!(" Did you mean `{k}`?"))
                .unwrap_or_default();
            bail!(
                "no check or service named `{name}` in {}.{hint} Known checks: {}",
                config.path.display(),
                known.join(", ")
            );
        }
        for spec in matching {
            if !chosen.iter().any(|c: &crate::probe::spec::CheckSpec| c.id == spec.id) {
                chosen.push(spec);
            }
        }
    }
    Ok(chosen)
}

/// One row of `check --json`.
#[derive(Debug, Serialize)]
struct CheckResult<'a> {
    service: Option<&'a str>,
    check: &'a str,
    /// `http`, `scrape`, `postgres`, `render` or `rule`.
    kind: &'static str,
    ok: bool,
    latency_ms: u64,
    detail: String,
    failures: &'a [String],
    status_code: Option<u16>,
    cert_expires_at: Option<String>,
}

impl<'a> From<&'a Observation> for CheckResult<'a> {
    fn from(o: &'a Observation) -> Self {
        Self {
            service: o.service.as_deref(),
            check: &o.check.0,
            kind: if o.sample("matrix_canary_success").is_some() {
                "matrix_canary"
            } else if o.sample("pg_up").is_some() {
                "postgres"
            } else if o.sample("up").is_some() {
                "scrape"
            } else if o.sample("render_up").is_some() {
                "render"
            } else {
                "http"
            },
            ok: o.ok,
            latency_ms: o.latency.as_millis() as u64,
            detail: o.detail(),
            failures: &o.failures,
            status_code: o.sample("probe_http_status_code").filter(|c| *c > 0.0).map(|c| c as u16),
            cert_expires_at: o
                .sample("probe_ssl_earliest_cert_expiry")
                .and_then(|s| jiff::Timestamp::from_second(s as i64).ok())
                .map(|t| t.to_string()),
        }
    }
}

impl<'a> From<&'a crate::cli::rules::Verdict> for CheckResult<'a> {
    fn from(v: &'a crate::cli::rules::Verdict) -> Self {
        Self {
            service: v.service.as_deref(),
            check: &v.alert,
            kind: "rule",
            ok: v.ok(),
            latency_ms: 0,
            detail: v.detail.clone(),
            failures: &[],
            status_code: None,
            cert_expires_at: None,
        }
    }
}

fn print_table(observations: &[Observation]) {
    let mut table = crate::cli::output::table(["SERVICE", "CHECK", "RESULT", "LATENCY", "DETAIL"]);
    for o in observations {
        table.add_row(crate::text::cells([
            o.service.clone().unwrap_or_else(|| "-".into()),
            o.check.0.clone(),
            if o.ok { "ok".into() } else { "FAIL".into() },
            crate::probe::expect::seconds(o.latency),
            o.detail(),
        ]));
    }
    outln!("{}", table.trim_fmt());
    let failed = observations.iter().filter(|o| !o.ok).count();
    outln!("{} checks: {} ok, {failed} failed", observations.len(), observations.len() - failed);
}

fn config_check(path: &Path, json: bool) -> Result<Status> {
    if !json {
        let config = load(path)?;
        outln!("{}: valid, {} checks", path.display(), config.checks.len());
        return Ok(Status::Healthy);
    }
    let file = path.display().to_string();
    match load(path) {
        Ok(config) => {
            let doc = serde_json::json!({ "file": file, "valid": true, "checks": config.checks.len() });
            outln!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(Status::Healthy)
        }
        Err(e) => {
            // The error text is the loader's, which never shows the file's secrets.
            let doc = serde_json::json!({ "file": file, "valid": false, "error": format!("{e:#}") });
            outln!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(Status::Error)
        }
    }
}

/// What `config show` prints.
#[derive(Debug, Serialize)]
struct ShowView {
    defaults: DefaultsView,
    store: String,
    /// `off` or the address.
    listen: String,
    /// Most connections the server holds at once.
    listen_max_connections: usize,
    /// Whether API writes are enabled (the token itself is never shown).
    admin_token: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    maintenance: Vec<MaintenanceView>,
    /// Which services each service needs (`depends_on:` and the built-in topology).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    depends_on: std::collections::BTreeMap<String, Vec<String>>,
    checks: Vec<CheckView>,
    rules: Vec<RuleView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alerting: Option<AlertingView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<BackupView>,
    /// Render's API (the key redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    render: Option<serde_json::Value>,
    /// The control room (token redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    control: Option<String>,
    /// The heartbeat (the URL's path, its credential, left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat: Option<String>,
    /// This instance's name among those sharing the store, and its leadership lease.
    instance: String,
    /// Per service with `deploy:`, how `mxwarden update` deploys, rolls back and verifies it.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    deploy: std::collections::BTreeMap<String, String>,
}

/// The backup plan as `config show` prints it: no connection strings or passwords (the
/// recipients are public keys).
#[derive(Debug, Serialize)]
struct BackupView {
    dir: String,
    /// Per postgres service: `all` or the listed databases, and whether roles are dumped.
    databases: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    files: std::collections::BTreeMap<String, Vec<String>>,
    schedule: String,
    retention: String,
    zstd_level: i32,
    encrypt_to: Vec<String>,
    pg_dump: String,
}

impl BackupView {
    fn of(plan: &crate::backup::BackupPlan) -> Self {
        use crate::backup::DbChoice;
        Self {
            dir: crate::backup::Storage::describe(&plan.storage),
            databases: plan
                .sources
                .iter()
                .map(|s| {
                    let which = match &s.databases {
                        DbChoice::All => "all".to_string(),
                        DbChoice::Only(list) => list.join(", "),
                    };
                    let globals = if s.globals { " + roles (pg_dumpall --globals-only)" } else { "" };
                    (s.service.clone(), format!("{which}{globals}"))
                })
                .collect(),
            files: plan.files.iter().map(|f| (f.name.clone(), f.patterns.clone())).collect(),
            schedule: plan.schedule.as_ref().map_or_else(
                || "none (backup run by hand)".to_string(),
                |s| format!("{} ({})", s.expression, s.timezone.iana_name().unwrap_or("UTC")),
            ),
            retention: format!(
                "daily {}, weekly {}, monthly {}",
                plan.retention.daily, plan.retention.weekly, plan.retention.monthly
            ),
            zstd_level: plan.zstd_level,
            encrypt_to: plan.recipients.clone(),
            pg_dump: plan.tools.pg_dump.display().to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
struct MaintenanceView {
    name: String,
    services: Vec<String>,
    cron: String,
    duration: String,
    timezone: String,
}

#[derive(Debug, Serialize)]
struct RuleView {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: String,
    labels: std::collections::BTreeMap<String, String>,
    source: String,
}

#[derive(Debug, Serialize)]
struct AlertingView {
    receivers: std::collections::BTreeMap<String, String>,
    tiers: std::collections::BTreeMap<String, String>,
    timezone: String,
}

#[derive(Debug, Serialize)]
struct DefaultsView {
    interval: String,
    timeout: String,
    body_limit: String,
    follow_redirects: bool,
    concurrency: usize,
    scrape_body_limit: String,
    series_limit: usize,
    sample_limit: usize,
}

fn config_show(path: &Path, json: bool) -> Result<Status> {
    let config = load(path)?;
    let d = &config.defaults;
    let view = ShowView {
        defaults: DefaultsView {
            interval: d.interval.to_string(),
            timeout: d.timeout.to_string(),
            body_limit: d.body_limit.to_string(),
            follow_redirects: d.follow_redirects,
            concurrency: d.concurrency,
            scrape_body_limit: d.scrape_body_limit.to_string(),
            series_limit: d.series_limit,
            sample_limit: d.sample_limit,
        },
        store: config.store.display().to_string(),
        listen: config.listen.map_or_else(|| "off".to_string(), |a| a.to_string()),
        listen_max_connections: config.listen_max_connections,
        admin_token: if config.admin_token.is_some() { "<redacted>" } else { "none (API read-only)" },
        maintenance: config
            .maintenance
            .iter()
            .map(|w| MaintenanceView {
                name: w.name.clone(),
                services: w.services.clone(),
                cron: w.cron_text.clone(),
                duration: crate::units::HumanDuration(std::time::Duration::from_millis(w.duration_ms.max(0) as u64))
                    .to_string(),
                timezone: w.timezone.iana_name().unwrap_or("UTC").to_string(),
            })
            .collect(),
        depends_on: config
            .checks
            .iter()
            .filter_map(|c| c.service.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|s| {
                let needs: Vec<String> = config.topology.needs(&s).map(str::to_string).collect();
                (!needs.is_empty()).then_some((s, needs))
            })
            .collect(),
        checks: config.checks.iter().map(|c| c.view()).collect(),
        render: config.render.as_ref().map(|r| {
            serde_json::json!({
                "api_url": r.url.as_str(),
                "api_key": crate::redact::REDACTED,
                "owner_id": r.owner_id,
                "interval": crate::units::HumanDuration(r.interval).to_string(),
                "requests_per_minute": r.requests_per_minute,
            })
        }),
        rules: config
            .rules
            .iter()
            .map(|r| RuleView {
                alert: r.def.alert.clone(),
                expr: r.def.expr.clone(),
                for_: crate::units::HumanDuration(std::time::Duration::from_millis(r.def.for_ms.max(0) as u64))
                    .to_string(),
                labels: r.def.labels.clone(),
                source: r.def.origin.clone(),
            })
            .collect(),
        alerting: config.alerting.as_ref().map(|a| AlertingView {
            receivers: a.receivers.iter().map(|(name, r)| (name.clone(), describe_receiver(r))).collect(),
            tiers: a.tiers.iter().map(|(name, t)| (name.clone(), describe_tier(t))).collect(),
            timezone: a.timezone.iana_name().unwrap_or("UTC").to_string(),
        }),
        backup: config.backup.as_deref().map(BackupView::of),
        control: config.control.as_ref().map(crate::cli::control::describe_control),
        heartbeat: config.heartbeat.as_ref().map(crate::cli::control::describe_heartbeat),
        instance: format!(
            "{} (leader lease {})",
            config.instance.name,
            crate::units::HumanDuration(config.instance.lease)
        ),
        deploy: config.deploys.iter().map(|(s, (d, _))| (s.clone(), crate::cli::update::describe(d))).collect(),
    };
    // Whatever the views missed (a `${VAR}` value in a URL, a secret pasted into a name) is
    // hidden here, string by string, before any quoting or line folding could disguise it.
    let view = Doc::redacted(&view, &config.redactor)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        let yaml = serde_saphyr::to_string(&view).context("cannot render the config as YAML")?;
        outln!("{}", yaml.trim_end());
    }
    Ok(Status::Healthy)
}

/// A JSON document that keeps its keys in order (serde_json's `Value` sorts them), so that
/// `config show` can redact every string of its view and still print it in the view's order.
#[derive(Debug)]
enum Doc {
    Scalar(serde_json::Value),
    Text(String),
    List(Vec<Doc>),
    Map(Vec<(String, Doc)>),
}

impl Doc {
    /// `view` as a document, every string (keys included) passed through `redactor`.
    fn redacted(view: &impl Serialize, redactor: &crate::redact::Redactor) -> Result<Doc> {
        let mut doc: Doc = serde_json::from_str(&serde_json::to_string(view)?)?;
        doc.redact(redactor);
        Ok(doc)
    }

    fn redact(&mut self, redactor: &crate::redact::Redactor) {
        match self {
            Doc::Scalar(_) => {}
            Doc::Text(s) => *s = redactor.redact(s).into_owned(),
            Doc::List(items) => items.iter_mut().for_each(|d| d.redact(redactor)),
            Doc::Map(entries) => {
                for (key, value) in entries {
                    *key = redactor.redact(key).into_owned();
                    value.redact(redactor);
                }
            }
        }
    }
}

impl Serialize for Doc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Doc::Scalar(v) => v.serialize(s),
            Doc::Text(t) => s.serialize_str(t),
            Doc::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                items.iter().try_for_each(|d| seq.serialize_element(d))?;
                seq.end()
            }
            Doc::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                entries.iter().try_for_each(|(k, v)| map.serialize_entry(k, v))?;
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Doc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Doc;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> std::result::Result<Doc, E> {
                Ok(Doc::Scalar(serde_json::Value::Null))
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<Doc, E> {
                Ok(Doc::Scalar(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Doc, E> {
                Ok(Doc::Scalar(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Doc, E> {
                Ok(Doc::Scalar(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Doc, E> {
                Ok(Doc::Scalar(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Doc, E> {
                Ok(Doc::Text(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Doc, E> {
                Ok(Doc::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Doc, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Doc::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Doc, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Doc::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A receiver in one line, secrets left out.
fn describe_receiver(r: &crate::notify::Receiver) -> String {
    use crate::notify::Receiver;
    match r {
        Receiver::Matrix(m) => format!("matrix {} in {} (token {})", m.room, m.homeserver, crate::redact::REDACTED),
        Receiver::Email(e) => {
            let to: Vec<String> = e.to.iter().map(ToString::to_string).collect();
            format!("email via {}:{} ({:?}) from {} to {}", e.host, e.port, e.tls, e.from, to.join(", "))
        }
        Receiver::Webhook(w) => {
            format!(
                "webhook {}{} (URL redacted){}",
                w.shown_url(),
                crate::redact::REDACTED,
                if w.hmac_secret.is_some() { ", signed" } else { "" }
            )
        }
    }
}

/// A tier in one line.
fn describe_tier(t: &crate::notify::Tier) -> String {
    let when = match t.digest {
        None => "at once".to_string(),
        Some(crate::notify::DigestSchedule::Daily { hour, minute }) => format!("daily digest at {hour:02}:{minute:02}"),
        Some(crate::notify::DigestSchedule::Weekly { weekday, hour, minute }) => {
            format!("weekly digest on {weekday:?} at {hour:02}:{minute:02}")
        }
    };
    let mut text = format!("{when} to [{}]", t.receivers.join(", "));
    if !t.fallback.is_empty() {
        text.push_str(&format!(", fallback [{}] after {} failures", t.fallback.join(", "), t.fallback_after));
    }
    if t.repeat_ms > 0 {
        let every = crate::units::HumanDuration(std::time::Duration::from_millis(t.repeat_ms as u64));
        text.push_str(&format!(", reminders every {every}"));
    }
    text
}

/// The starter config written by `init`.
pub(crate) const STARTER: &str = include_str!("starter.yaml");

/// `init --discover URL`: asks the homeserver, lists every request, writes the config.
fn init_discover(path: &Path, force: bool, url: &str, json: bool) -> Result<Status> {
    if path.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    let found = runtime()?.block_on(crate::discover::discover(url))?;
    let today = jiff::Zoned::now().date().to_string();
    let text = crate::discover::render(&found, &today);
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        outln!("requests made:");
        for r in &found.requests {
            outln!("  GET {} -> {}", crate::text::escape_controls(&r.url), r.outcome);
        }
        outln!("wrote {}", path.display());
        outln!("next: set the tokens it names, then `mxwarden config check`, `mxwarden doctor`, `mxwarden check`");
    }
    Ok(Status::Healthy)
}

fn init(path: &Path, force: bool) -> Result<Status> {
    if path.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    std::fs::write(path, STARTER).with_context(|| format!("cannot write {}", path.display()))?;
    let next = if std::io::stdout().is_terminal() { "\nEdit it, then run: mxwarden check" } else { "" };
    outln!("wrote {}{next}", path.display());
    Ok(Status::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_show_redacts_every_string_and_keeps_the_order() {
        #[derive(Serialize)]
        struct View {
            name: &'static str,
            url: &'static str,
            headers: Vec<&'static str>,
            limit: u64,
            off: Option<bool>,
        }
        let view = View {
            name: "zz-first",
            url: "https://x.example/LEAK-path-1",
            headers: vec!["x-auth: LEAK-hdr-2", "accept: text/plain"],
            limit: 5,
            off: None,
        };
        let redactor = crate::redact::Redactor::new(["/LEAK-path-1", "LEAK-hdr-2"]);
        let doc = Doc::redacted(&view, &redactor).unwrap();
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            json,
            r#"{"name":"zz-first","url":"https://x.example<redacted>","headers":["x-auth: <redacted>","accept: text/plain"],"limit":5,"off":null}"#,
            "the view's order, not sorted keys"
        );
        let yaml = serde_saphyr::to_string(&doc).unwrap();
        assert!(yaml.starts_with("name: zz-first\nurl:"), "{yaml}");
    }
}
