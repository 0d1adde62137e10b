//! `mxwarden backup run|list|verify|prune|drill|keygen` and `mxwarden restore`: the backup core
//! (`backup::*`) for people (tables, progress bars on a terminal) and programs (`--json`).
//! Exit codes: 0 all good; 1 a backup item failed, a check did not hold, or a restore
//! failed or skipped unsafe archive entries (each named, with the reason); 2 a wrong config or
//! command line, or a request refused without changing anything.

use crate::backup::manifest::{self, Manifest, Run, RunStatus};
use crate::backup::restore::{self, RestoreError};
use crate::backup::retention::{self, RunFacts};
use crate::backup::run::{Progress, RunError};
use crate::backup::{BackupPlan, Storage, pipeline, verify};
use crate::cli::{Status, outln};
use crate::config::Config;
use crate::units::human_bytes;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// `mxwarden backup …`.
#[derive(Debug, Subcommand)]
pub(crate) enum BackupCommand {
    /// Take a backup now: every configured database, roles and file set (or one database).
    Run {
        /// Only this database (no roles, no file sets).
        #[arg(long)]
        db: Option<String>,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The finished runs, oldest first.
    List {
        /// Print the manifests as JSON.
        #[arg(long)]
        json: bool,
        /// Instead: Render's own backups of each PostgreSQL linked to Render (`render: dpg-…`):
        /// the point-in-time recovery window and the exports; warns when Render holds none.
        #[arg(long)]
        render: bool,
    },
    /// Check a run (default: the newest good one): checksums; with --identity, decrypt and read
    /// everything back (`pg_restore --list`); with --restore-test, restore into scratch databases
    /// and compare row counts with the source.
    Verify {
        /// The run id (see `backup list`).
        id: Option<String>,
        /// An age identity file (private key) to decrypt with.
        #[arg(long, env = "MXWARDEN_BACKUP_IDENTITY")]
        identity: Option<PathBuf>,
        /// Also restore each database into a scratch database and compare row counts.
        #[arg(long)]
        restore_test: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what the retention policy keeps and deletes; delete with --apply.
    Prune {
        /// Delete (default: only show).
        #[arg(long)]
        apply: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a restore drill now: restore the newest good backup of each database into a scratch
    /// database, compare every table's rows with the counts recorded at dump time, drop it.
    Drill {
        /// The age identity file (private key); default `backup.drill_identity_file`.
        #[arg(long, env = "MXWARDEN_BACKUP_IDENTITY")]
        identity: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an age key pair: the identity (private key) into a new file, the public key printed
    /// for `backup.encrypt_to`.
    Keygen {
        /// Where to write the identity (created with mode 0600; never overwritten).
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// `mxwarden restore ID (--db NAME | --files SET) --into TARGET`.
#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// The run id (see `backup list`), or `latest` for the newest good run.
    pub id: String,
    /// Restore this database's dump.
    #[arg(long, required_unless_present = "files", conflicts_with = "files")]
    pub db: Option<String>,
    /// The postgres service the dump came from (when several dumped a database of that name).
    #[arg(long, requires = "db")]
    pub service: Option<String>,
    /// Restore this file set.
    #[arg(long)]
    pub files: Option<String>,
    /// The new database (with --db) or directory (with --files).
    #[arg(long)]
    pub into: String,
    /// Replace an existing database, or unpack into a non-empty directory.
    #[arg(long)]
    pub force: bool,
    /// Restore without owners and privileges (when the roles do not exist on the target).
    #[arg(long, requires = "db")]
    pub no_owner: bool,
    /// The age identity file (private key) to decrypt with.
    #[arg(long, env = "MXWARDEN_BACKUP_IDENTITY")]
    pub identity: PathBuf,
}

fn plan(config: &Config) -> Result<&BackupPlan> {
    match &config.backup {
        Some(p) => Ok(p),
        None => bail!(
            "{} has no `backup:` section; add one, e.g. backup: {{ dir: /var/lib/mxwarden/backups, encrypt_to: [\"age1…\"] }}",
            config.path.display()
        ),
    }
}

/// Runs a `backup` subcommand (`keygen` needs no config).
pub(crate) fn run(path: &Path, command: BackupCommand) -> Result<Status> {
    if let BackupCommand::Keygen { output } = &command {
        return keygen(output);
    }
    let config = &crate::cli::load(path)?;
    match command {
        BackupCommand::Run { db, json } => run_now(plan(config)?, db.as_deref(), json),
        BackupCommand::List { json, render: true } => crate::cli::backup_render::list(config, json),
        BackupCommand::List { json, render: false } => list(plan(config)?, json),
        BackupCommand::Verify { id, identity, restore_test, json } => {
            verify_run(plan(config)?, id.as_deref(), identity.as_deref(), restore_test, json)
        }
        BackupCommand::Prune { apply, json } => prune(config, plan(config)?, apply, json),
        BackupCommand::Drill { identity, json } => drill(plan(config)?, identity.as_deref(), json),
        BackupCommand::Keygen { output } => keygen(&output),
    }
}

fn drill(plan: &BackupPlan, identity: Option<&Path>, json: bool) -> Result<Status> {
    let Some(path) = identity.or(plan.drill_identity.as_deref()) else {
        bail!(
            "the drill decrypts the backups: give the age identity with --identity FILE (or backup.drill_identity_file)"
        );
    };
    let identities = pipeline::identities(path).map_err(anyhow::Error::msg)?;
    let rt = crate::cli::runtime()?;
    let report = rt
        .block_on(crate::backup::drill::drill(plan, &plan.storage, &identities, jiff::Timestamp::now()))
        .map_err(anyhow::Error::msg)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut t = crate::cli::output::table(["DATABASE", "RUN", "TABLES", "ROWS", "TIME", "RESULT"]);
        for d in &report.databases {
            t.add_row(crate::text::cells([
                format!("{}/{}", d.service, d.database),
                d.run.clone(),
                d.tables.to_string(),
                d.rows.to_string(),
                format!("{:.1}s", d.duration_seconds),
                d.problem.clone().map_or_else(|| "ok: rows as at dump time".to_string(), |p| format!("FAILED: {p}")),
            ]));
        }
        outln!("{}", t.trim_fmt());
        outln!("restore drill {}", if report.ok { "passed" } else { "FAILED" });
    }
    Ok(if report.ok { Status::Healthy } else { Status::Unhealthy })
}

fn run_now(plan: &BackupPlan, db: Option<&str>, json: bool) -> Result<Status> {
    let progress = if std::io::stderr().is_terminal() && !json { Progress::terminal() } else { Progress::hidden() };
    let result = crate::cli::runtime()?.block_on(async {
        // SIGINT or SIGTERM stop the run: its unfinished uploads are aborted before exiting,
        // so a bucket keeps no orphaned parts (a directory, no `.partial` file is committed).
        let run = crate::backup::run::run(plan, &plan.storage, db, &progress, jiff::Timestamp::now());
        let outcome = tokio::select! {
            r = run => Some(r),
            () = interrupted() => None,
        };
        plan.storage.settle().await;
        outcome
    });
    let Some(result) = result else {
        eprintln!("backup interrupted: nothing of this run is listed as good; its unfinished uploads were aborted");
        return Ok(Status::Unhealthy);
    };
    let manifest = match result {
        Ok(m) => m,
        Err(RunError::Usage(e)) => bail!(e),
        Err(RunError::Storage(e)) => {
            eprintln!("backup failed: {e}");
            return Ok(Status::Unhealthy);
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        print_items(&manifest);
        outln!(
            "run {} {} in {:.1}s: {} stored in {}",
            manifest.id,
            if manifest.status == RunStatus::Ok { "ok" } else { "FAILED" },
            manifest.duration_seconds,
            human_bytes(manifest.stored_bytes()),
            plan.storage.describe()
        );
    }
    Ok(if manifest.status == RunStatus::Ok { Status::Healthy } else { Status::Unhealthy })
}

/// Resolves at the first SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

fn print_items(m: &Manifest) {
    let mut t = crate::cli::output::table(["ITEM", "FILE", "SIZE", "RAW", "TIME", "RESULT"]);
    for i in &m.items {
        t.add_row(crate::text::cells([
            i.label(),
            i.file.clone(),
            human_bytes(i.stored_bytes),
            human_bytes(i.raw_bytes),
            format!("{:.1}s", i.duration_seconds),
            i.error.clone().map_or_else(|| "ok".to_string(), |e| format!("FAILED: {e}")),
        ]));
    }
    outln!("{}", t.trim_fmt());
}

fn list(plan: &BackupPlan, json: bool) -> Result<Status> {
    let runs = crate::cli::runtime()?.block_on(manifest::runs(&plan.storage))?;
    let done: Vec<&Manifest> = runs
        .iter()
        .filter_map(|r| match r {
            Run::Done(m) => Some(m),
            _ => None,
        })
        .collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        let mut t = crate::cli::output::table(["ID", "STATUS", "SCOPE", "STARTED", "TIME", "SIZE", "ITEMS"]);
        for m in &done {
            t.add_row(crate::text::cells([
                m.id.clone(),
                if m.status == RunStatus::Ok { "ok".into() } else { "FAILED".into() },
                m.scope.clone(),
                m.started_at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
                format!("{:.1}s", m.duration_seconds),
                human_bytes(m.stored_bytes()),
                m.items.len().to_string(),
            ]));
        }
        outln!("{}", t.trim_fmt());
        outln!("{} runs in {}", done.len(), plan.storage.describe());
    }
    for r in &runs {
        match r {
            Run::Unfinished { id, .. } => {
                eprintln!("note: {id} has no manifest (still running, or killed); `backup prune --apply` removes it")
            }
            Run::Unreadable { id, error } => eprintln!("warning: {id}: {error}"),
            Run::Done(_) => {}
        }
    }
    Ok(Status::Healthy)
}

/// The run called `id` (`latest`/none: the newest good one).
fn pick(plan: &BackupPlan, rt: &tokio::runtime::Runtime, id: Option<&str>) -> Result<Manifest> {
    let all = rt.block_on(manifest::manifests(&plan.storage))?;
    match id.filter(|i| *i != "latest") {
        Some(id) => match all.into_iter().find(|m| m.id == id) {
            Some(m) => Ok(m),
            None => bail!("no finished run `{id}` in {}; `mxwarden backup list` shows them", plan.storage.describe()),
        },
        None => match all.into_iter().rev().find(|m| m.status == RunStatus::Ok) {
            Some(m) => Ok(m),
            None => bail!("no good run in {}; take one with `mxwarden backup run`", plan.storage.describe()),
        },
    }
}

fn verify_run(
    plan: &BackupPlan,
    id: Option<&str>,
    identity: Option<&Path>,
    restore_test: bool,
    json: bool,
) -> Result<Status> {
    if restore_test && identity.is_none() {
        bail!("--restore-test decrypts the dumps: give the age identity with --identity FILE");
    }
    let identities = identity.map(pipeline::identities).transpose().map_err(anyhow::Error::msg)?;
    let rt = crate::cli::runtime()?;
    let manifest = pick(plan, &rt, id)?;
    let report = rt.block_on(verify::verify(plan, &plan.storage, &manifest, identities.as_deref(), restore_test));
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut t = crate::cli::output::table(["ITEM", "RESULT", "CHECKED"]);
        for i in &report.items {
            t.add_row(crate::text::cells([
                i.item.clone(),
                i.problem.clone().map_or_else(|| "ok".to_string(), |p| format!("FAILED: {p}")),
                i.passed.join("; "),
            ]));
        }
        outln!("{}", t.trim_fmt());
        let depth = match (identity.is_some(), restore_test) {
            (false, _) => "checksums only; give --identity to decrypt and read back",
            (true, false) => "checksums, decrypted and read back",
            (true, true) => "checksums, read back, restored and counted",
        };
        outln!("run {}: {} ({depth})", report.id, if report.ok { "ok" } else { "FAILED" });
    }
    Ok(if report.ok { Status::Healthy } else { Status::Unhealthy })
}

/// One row of `prune`.
#[derive(Debug, Serialize)]
struct PruneRow {
    id: String,
    status: &'static str,
    keep: Vec<retention::Keep>,
    delete: bool,
}

/// What `prune --json` prints.
#[derive(Debug, Serialize)]
struct PruneView {
    applied: bool,
    runs: Vec<PruneRow>,
    deleted_bytes: u64,
}

fn prune(config: &Config, plan: &BackupPlan, apply: bool, json: bool) -> Result<Status> {
    let rt = crate::cli::runtime()?;
    let tz = config.alerting.as_ref().map_or(jiff::tz::TimeZone::UTC, |a| a.timezone.clone());
    let storage = &plan.storage;
    let rows = rt.block_on(async {
        let lock = if apply { Some(storage.lock().await?) } else { None };
        let runs = manifest::runs(storage).await?;
        let objects = storage.list().await?;
        let facts: Vec<RunFacts> = runs
            .iter()
            .filter_map(|r| match r {
                Run::Done(m) => Some(RunFacts { id: m.id.clone(), at: m.started_at, complete: m.complete() }),
                _ => None,
            })
            .collect();
        let decisions = retention::decide(&facts, plan.retention, &tz);
        let mut rows = Vec::new();
        let mut deleted_bytes = 0;
        for r in &runs {
            let (status, keep) = match r {
                Run::Done(m) => (
                    if m.status == RunStatus::Ok { "ok" } else { "failed" },
                    decisions.iter().find(|d| d.id == m.id).map(|d| d.keep.clone()).unwrap_or_default(),
                ),
                Run::Unfinished { .. } => ("unfinished", Vec::new()),
                // A manifest we cannot read is not ours to judge.
                Run::Unreadable { .. } => ("unreadable", vec![retention::Keep::Recent]),
            };
            let delete = keep.is_empty();
            if delete {
                let mine: Vec<&crate::backup::storage::Object> =
                    objects.iter().filter(|o| o.key.split('/').next() == Some(r.id())).collect();
                deleted_bytes += mine.iter().map(|o| o.size).sum::<u64>();
                if apply {
                    // The manifest first: a run half-deleted must not look complete.
                    let mut keys: Vec<&str> = mine.iter().map(|o| o.key.as_str()).collect();
                    keys.sort_by_key(|k| !k.ends_with(manifest::MANIFEST));
                    for key in keys {
                        storage.delete(key).await?;
                    }
                }
            }
            rows.push(PruneRow { id: r.id().to_string(), status, keep, delete });
        }
        drop(lock);
        Ok::<_, crate::backup::StorageError>(PruneView { applied: apply, runs: rows, deleted_bytes })
    });
    let view = match rows {
        Ok(v) => v,
        Err(e) => {
            eprintln!("prune failed: {e}");
            return Ok(Status::Unhealthy);
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        let mut t = crate::cli::output::table(["ID", "STATUS", "DECISION"]);
        for r in &view.runs {
            let why: Vec<String> = r.keep.iter().map(|k| format!("{k:?}").to_lowercase()).collect();
            let decision = if r.delete {
                if apply { "deleted".to_string() } else { "would delete".to_string() }
            } else {
                format!("keep ({})", why.join(", "))
            };
            t.add_row(crate::text::cells([r.id.clone(), r.status.to_string(), decision]));
        }
        outln!("{}", t.trim_fmt());
        let n = view.runs.iter().filter(|r| r.delete).count();
        let p = plan.retention;
        let policy = format!("daily {}, weekly {}, monthly {}", p.daily, p.weekly, p.monthly);
        if apply {
            outln!("deleted {n} runs ({}); policy: {policy}", human_bytes(view.deleted_bytes));
        } else {
            outln!(
                "would delete {n} runs ({}); policy: {policy}; run with --apply to delete",
                human_bytes(view.deleted_bytes)
            );
        }
    }
    Ok(Status::Healthy)
}

fn keygen(output: &Path) -> Result<Status> {
    use secrecy::ExposeSecret;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .with_context(|| format!("cannot create {} (it must not exist yet)", output.display()))?;
    writeln!(
        file,
        "# created: {}\n# public key: {public}\n{}",
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        identity.to_string().expose_secret()
    )
    .with_context(|| format!("cannot write {}", output.display()))?;
    outln!("{public}");
    eprintln!(
        "wrote the identity (private key) to {}: keep it offline, away from the backups;\n\
         put the public key above into backup.encrypt_to",
        output.display()
    );
    Ok(Status::Healthy)
}

/// `mxwarden restore`.
pub(crate) fn restore(config: &Config, args: RestoreArgs) -> Result<Status> {
    let plan = plan(config)?;
    let identities = pipeline::identities(&args.identity).map_err(anyhow::Error::msg)?;
    let rt = crate::cli::runtime()?;
    let manifest = pick(plan, &rt, Some(&args.id))?;
    let mut skipped = Vec::new();
    let outcome = match (&args.db, &args.files) {
        (Some(db), _) => rt.block_on(async {
            let item = restore::find_database(&manifest, db, args.service.as_deref())?;
            restore::database(
                plan,
                &plan.storage,
                &manifest.id,
                item,
                &identities,
                &args.into,
                args.force,
                args.no_owner,
            )
            .await
            .map(|()| format!("restored {} from run {} into database {}", item.label(), manifest.id, args.into))
        }),
        (None, Some(set)) => rt.block_on(async {
            let dir = PathBuf::from(&args.into);
            let unpacked = restore::files(&plan.storage, &manifest, set, &identities, &dir, args.force).await?;
            let done = format!(
                "restored {} files of set {set} from run {} into {}",
                unpacked.files,
                manifest.id,
                dir.display()
            );
            skipped = unpacked.skipped;
            Ok(done)
        }),
        (None, None) => bail!("say what to restore: --db NAME or --files SET"),
    };
    match outcome {
        Ok(done) if skipped.is_empty() => {
            outln!("{done}");
            Ok(Status::Healthy)
        }
        Ok(done) => {
            // Every unsafe entry is named, and the restore is not a success.
            outln!("{done}");
            for s in &skipped {
                eprintln!("skipped {}: {}", s.name, s.reason);
            }
            let (n, entries) = match skipped.len() {
                1 => (1, "entry of the archive was"),
                n => (n, "entries of the archive were"),
            };
            eprintln!("restore incomplete: {n} unsafe {entries} skipped (listed above)");
            Ok(Status::Unhealthy)
        }
        Err(RestoreError::Refused(why)) => bail!(why),
        Err(RestoreError::Failed(why)) => {
            eprintln!("restore failed: {why}");
            Ok(Status::Unhealthy)
        }
    }
}
