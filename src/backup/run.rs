//! One backup run: under the storage lock, ask each postgres service for its version, rights
//! and databases; refuse a `pg_dump` older than the server; then store each database
//! (`pg_dump -Fc -Z0`: uncompressed, so zstd compresses once), each server's roles
//! (`pg_dumpall --globals-only`) and each file set (tar), every one streamed through
//! [`pipeline::seal`] and committed on its own; last, the manifest. An item that fails is
//! recorded with its error and its file removed; the others stay restorable.

use super::manifest::{self, FORMAT, Item, ItemKind, Manifest, RunStatus};
use super::pipeline::{self, Sealed};
use super::storage::{Storage, StorageError};
use super::{BackupPlan, DbChoice, DbSource, pg};
use std::process::Stdio;
use std::time::Instant;

/// Why a run could not even start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// The destination failed (or is locked by another run).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The request makes no sense for this config (`--db` naming no configured database).
    #[error("{0}")]
    Usage(String),
}

/// Progress display: bars on a terminal, nothing otherwise.
pub(crate) struct Progress {
    bars: Option<indicatif::MultiProgress>,
}

impl Progress {
    /// No display (the daemon, or output that is not a terminal).
    pub(crate) fn hidden() -> Self {
        Self { bars: None }
    }

    /// Bars on stderr.
    pub(crate) fn terminal() -> Self {
        Self { bars: Some(indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr())) }
    }

    fn item(&self, label: &str) -> Option<indicatif::ProgressBar> {
        let bars = self.bars.as_ref()?;
        let bar = bars.add(indicatif::ProgressBar::new_spinner());
        let style = indicatif::ProgressStyle::with_template("{spinner} {msg:30} {bytes:>10} read, {bytes_per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(label.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Some(bar)
    }
}

/// A file name part: letters, digits, `-` and `_` kept, anything else `_`.
fn safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// What is to be stored for one source, decided before anything is written.
struct SourcePlan<'a> {
    source: &'a DbSource,
    facts: Option<pg::ServerFacts>,
    dump_version: Option<String>,
    dumpall_version: Option<String>,
    /// Databases to dump, or (name, why not).
    databases: Vec<(String, Option<String>)>,
    /// Why globals cannot be dumped, if so.
    globals_error: Option<String>,
    /// A problem with the whole source.
    error: Option<String>,
}

async fn prepare<'a>(plan: &BackupPlan, source: &'a DbSource) -> SourcePlan<'a> {
    let mut sp = SourcePlan {
        source,
        facts: None,
        dump_version: None,
        dumpall_version: None,
        databases: Vec::new(),
        globals_error: None,
        error: None,
    };
    let facts = match pg::connect(&source.target, &source.target.database).await {
        Ok(mut conn) => {
            let facts = pg::facts(&mut conn).await;
            pg::close(conn).await;
            facts
        }
        Err(e) => Err(e),
    };
    let wanted: Vec<String> = match (&source.databases, &facts) {
        (DbChoice::Only(list), _) => list.clone(),
        (DbChoice::All, Ok(f)) => f.databases.clone(),
        (DbChoice::All, Err(_)) => Vec::new(),
    };
    let facts = match facts {
        Ok(f) => f,
        Err(e) => {
            sp.databases = wanted.into_iter().map(|d| (d, Some(e.clone()))).collect();
            sp.error = Some(e);
            return sp;
        }
    };
    let dump = match pg::tool_version(&plan.tools.pg_dump).await {
        Ok(v) => pg::check_versions("pg_dump", &v, facts.version_num).map(|()| v),
        Err(e) => Err(e),
    };
    let dumpall = match pg::tool_version(&plan.tools.pg_dumpall).await {
        Ok(v) => pg::check_versions("pg_dumpall", &v, facts.version_num).map(|()| v),
        Err(e) => Err(e),
    };
    for db in wanted {
        let why = match &dump {
            Err(e) => Some(e.clone()),
            Ok(_) if !facts.databases.contains(&db) => {
                Some(format!("database {db} does not exist on {} (or does not accept connections)", source.service))
            }
            Ok(_) => None,
        };
        sp.databases.push((db, why));
    }
    sp.globals_error = dumpall.as_ref().err().cloned();
    sp.dump_version = dump.ok();
    sp.dumpall_version = dumpall.ok();
    sp.facts = Some(facts);
    sp
}

/// Takes a backup now. `only_db` limits it to one database (no globals, no files).
pub(crate) async fn run<S: Storage>(
    plan: &BackupPlan,
    storage: &S,
    only_db: Option<&str>,
    progress: &Progress,
    now: jiff::Timestamp,
) -> Result<Manifest, RunError> {
    let _lock = storage.lock().await?;
    let started = Instant::now();
    let mut prepared = Vec::new();
    for source in &plan.sources {
        prepared.push(prepare(plan, source).await);
    }
    if let Some(only) = only_db {
        for sp in &mut prepared {
            sp.databases.retain(|(d, _)| d == only);
        }
        if prepared.iter().all(|sp| sp.databases.is_empty()) {
            let known: Vec<String> =
                prepared.iter().flat_map(|sp| sp.databases.iter().map(|(d, _)| d.clone())).collect();
            return Err(RunError::Usage(format!(
                "no configured database is named `{only}`{}",
                if known.is_empty() { String::new() } else { format!("; the databases are: {}", known.join(", ")) }
            )));
        }
    }
    let id = new_id(storage, now).await?;
    let recipients =
        pipeline::recipients(&plan.recipients).map_err(|e| RunError::Usage(format!("backup.encrypt_to: {e}")))?;
    let mut items = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    let mut file_name = |base: String| {
        let mut name = base.clone();
        let mut n = 1;
        while !used.insert(name.clone()) {
            n += 1;
            name = format!("{base}-{n}");
        }
        name
    };
    for sp in &prepared {
        let service = &sp.source.service;
        if only_db.is_none() && sp.source.globals {
            let file = file_name(format!("{}.globals.sql.zst.age", safe(service)));
            let mut item = blank(ItemKind::Globals, service, "(globals)", &file);
            item.server_version = sp.facts.as_ref().map(|f| f.version.clone());
            item.tool_version = sp.dumpall_version.clone();
            match sp.error.as_ref().or(sp.globals_error.as_ref()) {
                Some(e) => item.error = Some(e.clone()),
                None => {
                    let mut cmd = pg::command(&plan.tools.pg_dumpall, &sp.source.target, &sp.source.target.database);
                    cmd.args(["--globals-only", "-l", &sp.source.target.database]);
                    if !sp.facts.as_ref().is_some_and(|f| f.superuser) {
                        // pg_authid is for superusers; without it roles come without passwords.
                        cmd.arg("--no-role-passwords");
                    }
                    store_command(plan, storage, &id, &mut item, cmd, &recipients, progress).await;
                }
            }
            items.push(item);
        }
        for (db, why) in &sp.databases {
            let file = file_name(format!("{}.{}.dump.zst.age", safe(service), safe(db)));
            let mut item = blank(ItemKind::Database, service, db, &file);
            item.server_version = sp.facts.as_ref().map(|f| f.version.clone());
            item.tool_version = sp.dump_version.clone();
            match why {
                Some(e) => item.error = Some(e.clone()),
                None => {
                    let mut cmd = pg::command(&plan.tools.pg_dump, &sp.source.target, db);
                    cmd.args(["--format=custom", "--compress=0"]);
                    // The rows are counted in the very snapshot pg_dump dumps, while it dumps.
                    let mut snapshot = match pg::Snapshot::export(&sp.source.target, db).await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::warn!(database = %db, error = %e, "Dumping without row counts.");
                            None
                        }
                    };
                    if let Some(s) = &snapshot {
                        cmd.arg(format!("--snapshot={}", s.id));
                    }
                    let counting = async {
                        match snapshot.as_mut() {
                            Some(s) => s.row_counts().await.map(Some),
                            None => Ok(None),
                        }
                    };
                    let (counts, ()) = tokio::join!(
                        counting,
                        store_command(plan, storage, &id, &mut item, cmd, &recipients, progress)
                    );
                    if let Some(s) = snapshot {
                        s.finish().await;
                    }
                    match counts {
                        Ok(c) => item.row_counts = c,
                        Err(e) => tracing::warn!(database = %db, error = %e, "Rows not counted for the manifest."),
                    }
                }
            }
            items.push(item);
        }
    }
    if only_db.is_none() {
        for set in &plan.files {
            let file = file_name(format!("files.{}.tar.zst.age", safe(&set.name)));
            let mut item = blank(ItemKind::Files, "files", &set.name, &file);
            store_files(plan, storage, &id, &mut item, &set.patterns, &recipients, progress).await;
            items.push(item);
        }
    }
    let elapsed = started.elapsed();
    let status = if items.iter().all(Item::ok) { RunStatus::Ok } else { RunStatus::Failed };
    let manifest = Manifest {
        format: FORMAT,
        id,
        status,
        scope: only_db.map_or_else(|| "full".to_string(), |d| format!("database {d}")),
        started_at: now,
        finished_at: now + jiff::SignedDuration::try_from(elapsed).unwrap_or_default(),
        duration_seconds: elapsed.as_secs_f64(),
        mxwarden_version: env!("CARGO_PKG_VERSION").to_string(),
        zstd_level: plan.zstd_level,
        recipients: plan.recipients.clone(),
        items,
    };
    manifest::write(storage, &manifest).await?;
    for item in manifest.items.iter().filter(|i| !i.ok()) {
        tracing::warn!(item = %item.label(), error = item.error.as_deref().unwrap_or_default(), "Backup item failed.");
    }
    tracing::info!(run = %manifest.id, status = ?manifest.status, bytes = manifest.stored_bytes(), "Backup run finished.");
    Ok(manifest)
}

/// The run id for `now` (`20261128T020000Z`), with `-2`, `-3`, … when taken.
async fn new_id<S: Storage>(storage: &S, now: jiff::Timestamp) -> Result<String, StorageError> {
    let base = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let taken: std::collections::BTreeSet<String> =
        storage.list().await?.into_iter().filter_map(|o| o.key.split('/').next().map(str::to_string)).collect();
    let mut id = base.clone();
    let mut n = 1;
    while taken.contains(&id) {
        n += 1;
        id = format!("{base}-{n}");
    }
    Ok(id)
}

fn blank(kind: ItemKind, service: &str, name: &str, file: &str) -> Item {
    Item {
        kind,
        service: service.to_string(),
        name: name.to_string(),
        file: file.to_string(),
        stored_bytes: 0,
        sha256: String::new(),
        raw_bytes: 0,
        duration_seconds: 0.0,
        server_version: None,
        tool_version: None,
        entries: None,
        row_counts: None,
        error: None,
    }
}

fn record(item: &mut Item, sealed: Sealed, started: Instant) {
    item.stored_bytes = sealed.stored_bytes;
    item.raw_bytes = sealed.raw_bytes;
    item.sha256 = sealed.sha256;
    item.duration_seconds = started.elapsed().as_secs_f64();
}

/// The last lines of a tool's stderr, for an error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Runs a dump tool and stores its stdout; fills `item` (sizes or the error).
async fn store_command<S: Storage>(
    plan: &BackupPlan,
    storage: &S,
    id: &str,
    item: &mut Item,
    mut cmd: tokio::process::Command,
    recipients: &[age::x25519::Recipient],
    progress: &Progress,
) {
    let started = Instant::now();
    let key = format!("{id}/{}", item.file);
    let tool = cmd.as_std().get_program().to_string_lossy().into_owned();
    let bar = progress.item(&item.label());
    // The tool runs with plain blocking pipes: the compression thread reads its output
    // directly, as `pg_dump | zstd` would, without a hop through the async runtime per read.
    let spawned = cmd.as_std_mut().stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match spawned {
        Ok(c) => KillOnDrop(Some(c)),
        Err(e) => {
            item.error = Some(format!("cannot run {tool}: {e}"));
            return;
        }
    };
    let (Some(stdout), Some(mut stderr)) = child.pipes() else {
        item.error = Some(format!("{tool} has no output pipes"));
        return;
    };
    let errors = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(&mut stderr, 64 * 1024), &mut buf);
        // Keep draining so the tool never blocks on a full stderr pipe.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        buf
    });
    let writer = match storage.create(&key).await {
        Ok(w) => w,
        Err(e) => {
            child.kill();
            item.error = Some(e.to_string());
            return;
        }
    };
    let report = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let sealed = pipeline::seal(stdout, writer, plan.zstd_level, recipients, &report).await;
    if sealed.is_err() {
        child.kill();
    }
    let status = child.wait().await;
    let stderr = errors.await.unwrap_or_default();
    let outcome = match (sealed, status) {
        (Err(e), _) => Err(format!("cannot store {key}: {e}")),
        (Ok(_), Err(e)) => Err(format!("{tool} did not finish: {e}")),
        (Ok(_), Ok(s)) if !s.success() => Err(format!("{tool} failed ({s}): {}", tail(&stderr))),
        (Ok(sealed), Ok(_)) => storage.commit(&key).await.map(|()| sealed).map_err(|e| e.to_string()),
    };
    match outcome {
        Ok(sealed) => record(item, sealed, started),
        Err(e) => {
            let _ = storage.delete(&key).await;
            item.error = Some(e);
        }
    }
    if let Some(b) = bar {
        b.finish_with_message(format!("{} {}", item.label(), if item.ok() { "done" } else { "FAILED" }));
    }
}

/// A tool's process, killed if it is dropped while still running (a failed or abandoned
/// backup), as tokio's `kill_on_drop` does for its own children.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn pipes(&mut self) -> (Option<std::process::ChildStdout>, Option<std::process::ChildStderr>) {
        self.0.as_mut().map_or((None, None), |c| (c.stdout.take(), c.stderr.take()))
    }

    fn kill(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
        }
    }

    /// Waits for the exit on a blocking thread.
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let mut child = self.0.take().ok_or_else(|| std::io::Error::other("the process was already waited for"))?;
        tokio::task::spawn_blocking(move || child.wait()).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Archives a file set and stores it; fills `item`.
async fn store_files<S: Storage>(
    plan: &BackupPlan,
    storage: &S,
    id: &str,
    item: &mut Item,
    patterns: &[String],
    recipients: &[age::x25519::Recipient],
    progress: &Progress,
) {
    let started = Instant::now();
    let key = format!("{id}/{}", item.file);
    let bar = progress.item(&item.label());
    let (tar_out, tar_in) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => {
            item.error = Some(format!("cannot make a pipe for the archive: {e}"));
            return;
        }
    };
    let patterns = patterns.to_vec();
    let tar = tokio::task::spawn_blocking(move || {
        let paths = super::files::expand(&patterns)?;
        super::files::write_tar(&paths, tar_in)
    });
    let writer = match storage.create(&key).await {
        Ok(w) => w,
        Err(e) => {
            item.error = Some(e.to_string());
            return;
        }
    };
    let report = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let sealed = pipeline::seal(tar_out, writer, plan.zstd_level, recipients, &report).await;
    let archived = tar.await.unwrap_or_else(|e| Err(format!("the archive task failed: {e}")));
    let outcome = match (sealed, archived) {
        (_, Err(e)) => Err(e),
        (Err(e), _) => Err(format!("cannot store {key}: {e}")),
        (Ok(sealed), Ok(entries)) => storage.commit(&key).await.map(|()| (sealed, entries)).map_err(|e| e.to_string()),
    };
    match outcome {
        Ok((sealed, entries)) => {
            record(item, sealed, started);
            item.entries = Some(entries);
        }
        Err(e) => {
            let _ = storage.delete(&key).await;
            item.error = Some(e);
        }
    }
    if let Some(b) = bar {
        b.finish_with_message(format!("{} {}", item.label(), if item.ok() { "done" } else { "FAILED" }));
    }
}
