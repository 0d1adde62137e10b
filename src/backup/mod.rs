//! Backups: `pg_dump` of every configured database, `pg_dumpall --globals-only` per server
//! and tar archives of key files, each streamed through zstd and age into a [`Storage`]
//! (`storage`), with a manifest per run written last (`manifest`). `config::backup` builds the
//! [`BackupPlan`]; `run` takes a backup, `verify` reads one back, `restore` puts one back,
//! `retention` decides what `prune` deletes, `schedule` runs them in the daemon and turns the
//! manifests into samples, `digest` summarises them for the daily digest. The CLI
//! (`cli::backup`) and the daemon drive the same functions.

pub(crate) mod digest;
pub(crate) mod drill;
pub(crate) mod files;
pub(crate) mod manifest;
pub(crate) mod pg;
pub mod pipeline;
pub mod restore;
pub(crate) mod retention;
pub(crate) mod run;
pub(crate) mod s3;
pub(crate) mod s3_journal;
pub(crate) mod schedule;
pub(crate) mod storage;
pub(crate) mod store;
pub(crate) mod verify;

use crate::probe::postgres::dsn::PgTarget;
use std::path::PathBuf;

pub(crate) use storage::{LocalDir, Storage, StorageError};
pub use store::Store;

/// Everything a backup run needs, validated.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    /// Where the runs are stored: a directory or a bucket.
    pub storage: Store,
    /// The databases, per postgres service.
    pub sources: Vec<DbSource>,
    /// File sets to archive.
    pub files: Vec<FileSet>,
    /// When the daemon runs a backup, if at all.
    pub schedule: Option<Schedule>,
    /// When the daemon runs a restore drill, if at all.
    pub drill: Option<Schedule>,
    /// The age identity file the drill decrypts with (`backup.drill_identity_file`).
    pub drill_identity: Option<PathBuf>,
    /// How many runs `prune` keeps.
    pub retention: Retention,
    /// zstd level.
    pub zstd_level: i32,
    /// age recipients (`age1…` public keys), validated.
    pub recipients: Vec<String>,
    /// The PostgreSQL client tools.
    pub tools: PgTools,
}

/// One postgres service's part of a backup.
#[derive(Debug, Clone)]
pub struct DbSource {
    /// The service's name (the `service` label).
    pub service: String,
    /// Its connection (secrets inside; never printed).
    pub target: PgTarget,
    /// Which databases.
    pub databases: DbChoice,
    /// Whether to dump roles and tablespaces too.
    pub globals: bool,
}

/// Which databases of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbChoice {
    /// Every database that accepts connections, templates left out (asked at run time).
    All,
    /// These.
    Only(Vec<String>),
}

/// A named set of paths and patterns, archived as one tar.
#[derive(Debug, Clone)]
pub struct FileSet {
    /// The set's name, e.g. `mas-keys`.
    pub name: String,
    /// Paths or patterns (`*`, `?` in the last part).
    pub patterns: Vec<String>,
}

/// A cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The expression as written.
    pub expression: String,
    /// Parsed.
    pub cron: croner::Cron,
    /// The zone it is read in.
    pub timezone: jiff::tz::TimeZone,
}

impl Schedule {
    /// The first run time strictly after `after`.
    pub(crate) fn next_after(&self, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let zoned = after.to_zoned(self.timezone.clone());
        self.cron.find_next_occurrence(&zoned, false).ok().map(|z| z.timestamp())
    }
}

/// Grandfather-father-son retention counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days with a run to keep the newest run of.
    pub daily: u32,
    /// ISO weeks with a run to keep the newest run of.
    pub weekly: u32,
    /// Months with a run to keep the newest run of.
    pub monthly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self { daily: 7, weekly: 4, monthly: 6 }
    }
}

/// Paths of `pg_dump`, `pg_dumpall` and `pg_restore`.
#[derive(Debug, Clone)]
pub struct PgTools {
    /// `pg_dump`.
    pub pg_dump: PathBuf,
    /// `pg_dumpall`.
    pub pg_dumpall: PathBuf,
    /// `pg_restore`.
    pub pg_restore: PathBuf,
}

impl PgTools {
    /// The tools in `dir`, or by bare name (found on `PATH`).
    pub(crate) fn in_dir(dir: Option<&std::path::Path>) -> Self {
        let at = |name: &str| dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
        Self { pg_dump: at("pg_dump"), pg_dumpall: at("pg_dumpall"), pg_restore: at("pg_restore") }
    }
}
