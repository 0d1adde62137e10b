//! `mxwarden update SERVICE --to VERSION` (and `--resume`, `--dry-run`) and `mxwarden
//! updates`: the update executor (`crate::update`) for people — the plan and a confirmation
//! on a terminal, a spinner per step with its elapsed time (timestamped lines when the output
//! is not a terminal) — and for programs (`--json`). Exit 0 updated; 1 refused by the
//! preflight, stopped, or rolled back; 2 a wrong config or command line, or a refused request
//! that changed nothing (another update of the service is unfinished).

use crate::backup::Storage as _;
use crate::cli::{Status, outln};
use crate::config::Config;
use crate::store::Store;
use crate::store::updates::{self, UpdateRow};
use crate::update::plan::{self, Outcome, Step};
use crate::update::run::{Reporter, UpdateError, Updater};
use crate::update::{Deployer, Request, Target};
use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `mxwarden update …`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    /// The service to update (a name under `services:` with a `deploy:` section).
    #[arg(required_unless_present = "resume")]
    pub service: Option<String>,
    /// The image (`ghcr.io/element-hq/synapse:v1.140.0`) or commit to deploy.
    #[arg(long, required_unless_present = "resume")]
    pub to: Option<String>,
    /// Why: goes into the ops room's announcement and the record.
    #[arg(long, default_value = "no reason given")]
    pub reason: String,
    /// The version the service must report afterwards (default: the image's tag).
    #[arg(long)]
    pub expect_version: Option<String>,
    /// Go on although the preflight found a problem (recorded).
    #[arg(long)]
    pub force: bool,
    /// Skip the backup, for this reason (recorded and announced).
    #[arg(long, value_name = "REASON")]
    pub no_backup: Option<String>,
    /// Print the plan with every call it would make; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation on a terminal.
    #[arg(long, short)]
    pub yes: bool,
    /// Continue the unfinished update (the newest, or this id) after a crash.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "0", conflicts_with_all = ["service", "to", "dry_run"])]
    pub resume: Option<i64>,
    /// An age identity file: the backup is decrypted and read back, not only checksummed.
    #[arg(long, env = "MXWARDEN_BACKUP_IDENTITY")]
    pub identity: Option<std::path::PathBuf>,
    /// Print the update's record as JSON at the end (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Runs `mxwarden update`.
pub(crate) fn update(config: &Config, args: UpdateArgs) -> Result<Status> {
    let rt = crate::cli::runtime()?;
    if let Some(id) = args.resume {
        return rt.block_on(resume(config, id, &args));
    }
    let (Some(service), Some(to)) = (args.service.clone(), args.to.clone()) else {
        bail!("name the service and --to VERSION, or --resume");
    };
    let request = Request {
        service: service.clone(),
        to,
        expect_version: args.expect_version.clone(),
        reason: args.reason.trim().to_string(),
        force: args.force,
        no_backup: args.no_backup.clone(),
    };
    request.check().map_err(anyhow::Error::msg)?;
    let target = config.update_target(&service).map_err(anyhow::Error::msg)?;
    if args.dry_run {
        outln!("{}", dry_run(config, &target, &request));
        return Ok(Status::Healthy);
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() && !args.yes {
        eprintln!("{}", dry_run(config, &target, &request));
        if !confirm(&format!("Update {service} to {}?", request.to))? {
            eprintln!("Nothing done.");
            return Ok(Status::Unhealthy);
        }
    }
    rt.block_on(async {
        let store = open_store(config).await?;
        let updater = updater(config, target, store.clone(), &args)?;
        let id = match updater.begin(&request).await {
            Ok(id) => id,
            Err(e @ UpdateError::Busy { .. }) => {
                eprintln!("refused: {e}");
                return Ok(Status::Error);
            }
            Err(e) => return Err(e.into()),
        };
        eprintln!("update #{id}: {service} to {}", request.to);
        finish(&store, &updater, id, args.json).await
    })
}

async fn resume(config: &Config, id: i64, args: &UpdateArgs) -> Result<Status> {
    let store = open_store(config).await?;
    let row =
        if id > 0 { updates::get(&store, id).await? } else { updates::list(&store, true, 1).await?.into_iter().next() };
    let Some(row) = row else {
        eprintln!("{}", if id > 0 { format!("no update #{id}") } else { "no unfinished update to resume".into() });
        return Ok(Status::Error);
    };
    let target = config.update_target(&row.service).map_err(anyhow::Error::msg)?;
    let updater = updater(config, target, store.clone(), args)?;
    if let Err(e) = updater.take_over(row.id).await {
        eprintln!("cannot resume: {e}");
        return Ok(Status::Error);
    }
    eprintln!("resuming update #{}: {} to {}", row.id, row.service, row.target);
    finish(&store, &updater, row.id, args.json).await
}

async fn finish(store: &Store, updater: &Updater, id: i64, json: bool) -> Result<Status> {
    let ending = updater.drive(id).await?;
    let row = updates::get(store, id).await?.context("the update's record vanished")?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        let took = row.ended_at.unwrap_or(row.started_at) - row.started_at;
        outln!(
            "update #{} of {} to {}: {} after {}",
            row.id,
            row.service,
            row.target,
            ending.name(),
            crate::units::HumanDuration(Duration::from_millis(took.max(0) as u64 / 1000 * 1000))
        );
    }
    Ok(if ending.is_success() { Status::Healthy } else { Status::Unhealthy })
}

async fn open_store(config: &Config) -> Result<Store> {
    Store::open(&config.store).await.with_context(|| format!("cannot open {}", config.store.display()))
}

fn updater(config: &Config, target: Target, store: Store, args: &UpdateArgs) -> Result<Updater> {
    let _ = config;
    let reporter: Arc<dyn Reporter> =
        if std::io::stderr().is_terminal() { Arc::new(Spinners::default()) } else { Arc::new(Lines) };
    Ok(Updater {
        target: Arc::new(target),
        store,
        clock: Arc::new(crate::clock::SystemClock),
        http: crate::dispatch::http_client().map_err(anyhow::Error::msg)?,
        reporter,
        identity: args.identity.clone(),
    })
}

fn confirm(question: &str) -> Result<bool> {
    use std::io::Write;
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// The plan with every call each step would make.
pub(crate) fn dry_run(config: &Config, target: &Target, request: &Request) -> String {
    let mut out = Vec::new();
    let t = target;
    out.push(format!("Plan: update {} to {} (dry run: nothing is changed)", t.service, request.to));
    out.push(format!("why: {}", request.reason));
    let checks =
        |list: &[crate::probe::spec::CheckSpec]| list.iter().map(|c| c.id.0.clone()).collect::<Vec<_>>().join(", ");
    let receivers: Vec<String> = t
        .alerting
        .as_ref()
        .and_then(|a| a.tier("critical").map(|tier| (a, tier)))
        .map(|(a, tier)| {
            tier.receivers
                .iter()
                .map(|r| match a.receivers.get(r) {
                    Some(crate::notify::Receiver::Matrix(m)) => format!("{r} (Matrix {})", m.room),
                    Some(other) => format!("{r} ({})", other.kind()),
                    None => r.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let matrix: Vec<&String> = receivers.iter().filter(|r| r.contains("(Matrix ")).collect();
    let expected = request.expected_version();
    let mut window_services = vec![t.service.clone()];
    window_services.extend(t.dependents.iter().cloned());
    for (i, (step, outcome)) in plan::happy_path(request.options()).into_iter().enumerate() {
        let calls: Vec<String> = match step {
            Step::Preflight => vec![
                format!("run checks once: {}", checks(&[t.checks.clone(), t.dependency_checks.clone()].concat())),
                format!(
                    "read open critical alerts for {} from {}",
                    {
                        let mut s = vec![t.service.clone()];
                        s.extend(t.upstream.iter().cloned());
                        s.join(", ")
                    },
                    config.store.display()
                ),
                match (&t.backup, request.no_backup.is_some()) {
                    (_, true) => "backup destination: not needed (--no-backup)".into(),
                    (Some(p), false) => format!("write and remove a probe in {}", p.storage.describe()),
                    (None, false) => "no backup: section (the preflight will refuse)".into(),
                },
                deployer_line(t, "check that the deploy and rollback programs are executable"),
                format!("GET the version {} reports now", t.service),
            ],
            Step::Announce => vec![
                format!(
                    "open a maintenance window of {} for {}",
                    crate::units::HumanDuration(t.deploy.window),
                    window_services.join(", ")
                ),
                if matrix.is_empty() {
                    "no Matrix receiver in the critical tier: nobody is told".into()
                } else {
                    format!(
                        "send the announcement to {}",
                        matrix.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    )
                },
            ],
            Step::Backup if outcome == Outcome::Skipped => {
                vec![format!("skipped: --no-backup {}", request.no_backup.clone().unwrap_or_default())]
            }
            Step::Backup => match &t.backup {
                Some(p) => vec![
                    format!(
                        "backup run into {}: {} postgres service(s), {} file set(s)",
                        p.storage.describe(),
                        p.sources.len(),
                        p.files.len()
                    ),
                    "backup verify of that run (checksums; decrypted and read back with --identity)".into(),
                ],
                None => vec!["no backup: section".into()],
            },
            Step::Deploy => vec![deployer_line(t, "deploy")],
            Step::Verify => vec![
                format!(
                    "run checks {} until they pass {} rounds in a row, every {}, within {}",
                    checks(&t.checks),
                    t.deploy.verify.rounds,
                    crate::units::HumanDuration(t.deploy.verify.interval),
                    crate::units::HumanDuration(t.deploy.verify.timeout)
                ),
                format!("judge {} rules over those samples; those about {} must be quiet", t.rules.len(), t.service),
                match &expected {
                    Some(v) => format!("GET the reported version; it must be {v}"),
                    None => "GET the reported version (no version to compare: give --expect-version)".into(),
                },
                match t.access.kind {
                    crate::model::ServiceKind::Synapse => {
                        "GET /_matrix/client/v1/auth_metadata and its JWKS (or /_matrix/client/v3/login without MAS)"
                            .into()
                    }
                    crate::model::ServiceKind::Mas => "GET /.well-known/openid-configuration and its JWKS".into(),
                    _ => "no login path for this kind".into(),
                },
            ],
            Step::Finish => {
                vec!["end the maintenance window".into(), "tell the ops room how it ended and how long it took".into()]
            }
            _ => Vec::new(),
        };
        out.push(format!("{}. {step}", i + 1));
        out.extend(calls.into_iter().map(|c| format!("     {c}")));
    }
    out.push("if the deploy or verify fails:".into());
    out.push(format!("     rollback: {}", deployer_line(t, "rollback")));
    out.push("     verify-rollback: the same checks, rules and login path (version: the one before)".into());
    out.push(format!(
        "     page: critical UpdateFailed naming the step and its evidence, to {}",
        if receivers.is_empty() { "(no critical receivers!)".to_string() } else { receivers.join(", ") }
    ));
    out.push("     finish: end the window, tell the room".into());
    t.redactor.redact(&out.join("\n")).into_owned()
}

fn deployer_line(t: &Target, what: &str) -> String {
    match &t.deploy.deployer {
        Deployer::Command { deploy, rollback } => match what {
            "deploy" => format!(
                "run {:?} (timeout {}), env MXWARDEN_UPDATE_TO",
                deploy.argv,
                crate::units::HumanDuration(deploy.timeout)
            ),
            "rollback" => match rollback {
                Some(r) => format!("run {:?} (timeout {})", r.argv, crate::units::HumanDuration(r.timeout)),
                None => "no rollback command configured: a failed deploy cannot be undone".into(),
            },
            other => other.to_string(),
        },
        Deployer::Render { api, service_id, timeout } => match what {
            "deploy" => format!(
                "POST {}/services/{service_id}/deploys {{\"imageUrl\" or \"commitId\": --to}}, then GET …/deploys/ID until live (at most {})",
                api.url.as_str().trim_end_matches('/'),
                crate::units::HumanDuration(*timeout)
            ),
            "rollback" => format!(
                "POST {}/services/{service_id}/rollback {{\"deployId\": the deploy live before}}, then follow it to live",
                api.url.as_str().trim_end_matches('/')
            ),
            _ => format!(
                "GET {}/services/{service_id} and its deploys (a live deploy to return to)",
                api.url.as_str().trim_end_matches('/')
            ),
        },
    }
}

/// A service's `deploy:` in one line, for `config show`.
pub(crate) fn describe(d: &crate::update::DeploySpec) -> String {
    let how = match &d.deployer {
        Deployer::Command { deploy, rollback } => format!(
            "command {:?} (timeout {}); rollback {}",
            deploy.argv,
            crate::units::HumanDuration(deploy.timeout),
            rollback.as_ref().map_or_else(
                || "none".to_string(),
                |r| format!("{:?} (timeout {})", r.argv, crate::units::HumanDuration(r.timeout))
            )
        ),
        Deployer::Render { service_id, timeout, .. } => {
            format!(
                "Render {service_id} (timeout {}); rollback to the deploy live before",
                crate::units::HumanDuration(*timeout)
            )
        }
    };
    format!(
        "{how}; verify {} rounds every {} within {}; window {}; backup within {}",
        d.verify.rounds,
        crate::units::HumanDuration(d.verify.interval),
        crate::units::HumanDuration(d.verify.timeout),
        crate::units::HumanDuration(d.window),
        crate::units::HumanDuration(d.backup_timeout)
    )
}

/// Timestamped lines: for logs, pipes and CI.
struct Lines;

impl Reporter for Lines {
    fn started(&self, step: Step) {
        eprintln!("{} {step}: started", jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"));
    }

    fn ended(&self, step: Step, outcome: Outcome, line: &str, took: Duration) {
        eprintln!(
            "{} {step}: {} ({:.1}s): {}",
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            outcome.name(),
            took.as_secs_f64(),
            crate::text::escape_controls(line)
        );
    }
}

/// A spinner per step with its elapsed time, left in place with the outcome when it ends.
#[derive(Default)]
struct Spinners {
    current: Mutex<Option<indicatif::ProgressBar>>,
}

impl Reporter for Spinners {
    fn started(&self, step: Step) {
        let bar = indicatif::ProgressBar::new_spinner();
        let style = indicatif::ProgressStyle::with_template("{spinner} {msg:16} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(step.name());
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar);
    }

    fn ended(&self, step: Step, outcome: Outcome, line: &str, took: Duration) {
        let bar = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let mark = match outcome {
            Outcome::Ok => "✔",
            Outcome::Skipped => "–",
            Outcome::Failed | Outcome::Interrupted => "✘",
        };
        let text = format!(
            "{mark} {:16} {:>6.1}s  {}",
            step.name(),
            took.as_secs_f64(),
            crate::text::escape_controls(line.lines().next().unwrap_or_default())
        );
        match bar {
            Some(bar) => {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

/// `mxwarden updates [--json]`: every update with each step's times and outcome.
pub(crate) fn list(config: &Config, json: bool, limit: i64) -> Result<Status> {
    if !config.store.exists() {
        if json {
            outln!("[]");
        } else {
            outln!("No updates yet.");
        }
        return Ok(Status::Healthy);
    }
    let rows = crate::cli::runtime()?.block_on(async {
        let store = open_store(config).await?;
        anyhow::Ok(updates::list(&store, false, limit.clamp(1, 10_000)).await?)
    })?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Status::Healthy);
    }
    if rows.is_empty() {
        outln!("No updates yet.");
        return Ok(Status::Healthy);
    }
    for row in &rows {
        print_row(row);
    }
    Ok(Status::Healthy)
}

fn print_row(row: &UpdateRow) {
    let time = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
    };
    outln!(
        "#{} {} → {}  {}  started {} UTC by {}  ({})",
        row.id,
        row.service,
        crate::text::escape_controls(&row.target),
        if row.state == updates::RUNNING && !crate::update::run::owner_alive(&row.owner) {
            format!("INTERRUPTED (`mxwarden update --resume {}` continues it)", row.id)
        } else {
            row.state.to_uppercase()
        },
        time(row.started_at),
        row.owner,
        crate::text::escape_controls(&row.reason)
    );
    let mut t = crate::cli::output::table(["STEP", "STARTED", "TOOK", "OUTCOME", "DETAIL"]);
    for s in &row.steps {
        t.add_row(crate::text::cells([
            s.step.clone(),
            time(s.started_at),
            s.ended_at.map_or_else(|| "-".into(), |e| format!("{:.1}s", (e - s.started_at) as f64 / 1000.0)),
            s.outcome.clone().unwrap_or_else(|| "running".into()),
            s.detail.lines().next().unwrap_or_default().chars().take(160).collect(),
        ]));
    }
    outln!("{}\n", t.trim_fmt());
}
