//! `mxwarden update`: the runbook's "Update Procedure" orchestrated — preflight, announce,
//! backup, deploy, verify, and on failure rollback, verify again and page — with every step's
//! start, end and outcome in the store (`store::updates`) before the next begins, so a crash
//! resumes to a correct end. `plan` is the pure decision after each outcome; `command` runs a
//! configured deploy or rollback command with a timeout and bounded output; `version` reads
//! the version a service reports; `verify` proves the service after a deploy and compares it with the one asked for; `run` executes the
//! steps. `config` builds a [`Target`] per service with `deploy:`; the CLI (`cli::update`) and
//! the API (`POST /api/v1/updates`) drive the same executor.

pub(crate) mod command;
pub(crate) mod plan;
pub(crate) mod render;
pub(crate) mod run;
mod verify;
pub(crate) mod version;

use crate::model::ServiceKind;
use crate::probe::spec::CheckSpec;
use crate::rule::AlertRule;
use secrecy::SecretString;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// A command to run (`deploy.command`, `deploy.rollback.command`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandSpec {
    /// Program and arguments; `{to}` and `{from}` in an argument become the version asked for
    /// and the version before.
    pub argv: Vec<String>,
    /// How long it may run before it is killed (with its process group) and counted failed.
    pub timeout: Duration,
}

/// How a service is deployed and rolled back.
#[derive(Debug, Clone)]
pub(crate) enum Deployer {
    /// A command on this host (any platform that is not Render).
    Command {
        /// Deploys the version asked for.
        deploy: CommandSpec,
        /// Puts the version before back; `None`: a failed deploy cannot be undone, which the
        /// preflight reports.
        rollback: Option<CommandSpec>,
    },
    /// Render: the API's deploy trigger, followed to `live` (or failure) through the deploy and
    /// event APIs; the rollback is Render's, to the deploy live before.
    Render {
        /// The API and its key.
        api: Arc<crate::probe::render::RenderApi>,
        /// The Render service id (`srv-…`).
        service_id: String,
        /// Longest a deploy (or rollback) may take to go live.
        timeout: Duration,
    },
}

/// What `verify` asks of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifySpec {
    /// Rounds of all the service's checks passing in a row. Default 3.
    pub rounds: u32,
    /// Between rounds. Default 10s.
    pub interval: Duration,
    /// Longest wait for those rounds. Default 5m.
    pub timeout: Duration,
}

impl Default for VerifySpec {
    fn default() -> Self {
        Self { rounds: 3, interval: Duration::from_secs(10), timeout: Duration::from_secs(300) }
    }
}

/// A service's `deploy:` section, built.
#[derive(Debug, Clone)]
pub(crate) struct DeploySpec {
    /// How.
    pub deployer: Deployer,
    /// The proof afterwards.
    pub verify: VerifySpec,
    /// The maintenance window's length (the announcement's "how long"). Default 15m.
    pub window: Duration,
    /// Longest backup before the update. Default 1h.
    pub backup_timeout: Duration,
}

/// Where the service says what it is: its base URL and what its kind needs.
#[derive(Debug, Clone)]
pub(crate) struct ServiceAccess {
    /// The service's kind.
    pub kind: ServiceKind,
    /// Its public base URL.
    pub url: Option<url::Url>,
    /// Synapse's federation listener, when not on `url`.
    pub federation_url: Option<url::Url>,
    /// A token for the version endpoint (authentik's API token), if configured.
    pub token: Option<SecretString>,
}

/// Everything an update of one service needs, taken from the config.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The service's name.
    pub service: String,
    /// How to reach it.
    pub access: ServiceAccess,
    /// Its `deploy:` section.
    pub deploy: DeploySpec,
    /// Its checks.
    pub checks: Vec<CheckSpec>,
    /// The checks of the services it needs.
    pub dependency_checks: Vec<CheckSpec>,
    /// The services it needs.
    pub upstream: BTreeSet<String>,
    /// The services that need it (covered by the window too).
    pub dependents: BTreeSet<String>,
    /// Every rule (those about this service are judged).
    pub rules: Vec<AlertRule>,
    /// Where the announcements and the page go.
    pub alerting: Option<Arc<crate::notify::Alerting>>,
    /// The backup plan.
    pub backup: Option<Arc<crate::backup::BackupPlan>>,
    /// How many checks run at once.
    pub concurrency: usize,
    /// The series limit for judging rules.
    pub series_limit: usize,
    /// The config's secrets, masked in command output and evidence.
    pub redactor: crate::redact::Redactor,
}

/// What the user asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Request {
    /// The service.
    pub service: String,
    /// The image (`ghcr.io/element-hq/synapse:v1.140.0`) or commit to deploy.
    pub to: String,
    /// The version the service must report afterwards; default: from the image tag.
    pub expect_version: Option<String>,
    /// Why (goes into the announcement).
    pub reason: String,
    /// Go on after a failed preflight.
    pub force: bool,
    /// Skip the backup, for this reason.
    pub no_backup: Option<String>,
}

impl Request {
    /// The planner's options.
    pub(crate) fn options(&self) -> plan::Options {
        plan::Options { force: self.force, no_backup: self.no_backup.is_some() }
    }

    /// The version to expect: `--expect-version`, else the tag of the image asked for.
    pub(crate) fn expected_version(&self) -> Option<String> {
        self.expect_version.clone().or_else(|| version::from_image(&self.to))
    }

    /// Checks what the CLI and the API both accept: a target without control characters or
    /// spaces, a reason, `--no-backup` with a reason.
    pub(crate) fn check(&self) -> Result<(), String> {
        let to = self.to.trim();
        if to.is_empty() || to.len() > 300 || to.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("--to needs an image reference or commit (no spaces, at most 300 bytes)".into());
        }
        for (what, text) in [("--reason", Some(&self.reason)), ("--no-backup", self.no_backup.as_ref())] {
            if let Some(text) = text {
                if text.trim().is_empty() {
                    return Err(format!("{what} needs a reason (it is announced and recorded)"));
                }
                if text.len() > 500 {
                    return Err(format!("{what}: the reason is longer than 500 bytes"));
                }
            }
        }
        if let Some(v) = &self.expect_version
            && (v.is_empty() || v.len() > 100 || v.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err("--expect-version needs a version such as 1.140.0".into());
        }
        Ok(())
    }
}

/// The databases a service of `kind` usually keeps its data in, by name.
fn database_names(kind: ServiceKind) -> &'static [&'static str] {
    match kind {
        ServiceKind::Synapse => &["synapse", "matrix"],
        ServiceKind::Mas => &["mas"],
        ServiceKind::Vikunja => &["vikunja"],
        ServiceKind::Authentik => &["authentik"],
        ServiceKind::Postgres => &[],
    }
}

/// The part of the backup plan that is about `service`: the listed databases its kind uses
/// (Synapse → `synapse`/`matrix`, MAS → `mas`, …) with their servers' roles, and the file sets
/// named after it (`mas-keys`, `synapse-signing-key`). The whole plan when that selects
/// nothing (a `postgres` service, databases chosen as `all`, other names), so an update is
/// never preceded by an empty backup. Returns the plan and what it covers, in words.
pub(crate) fn scoped_backup(
    plan: &crate::backup::BackupPlan,
    service: &str,
    kind: ServiceKind,
) -> (crate::backup::BackupPlan, String) {
    use crate::backup::DbChoice;
    let names = database_names(kind);
    let mut scoped = plan.clone();
    scoped.sources.retain_mut(|source| match &source.databases {
        DbChoice::Only(list) => {
            let kept: Vec<String> = list.iter().filter(|d| names.contains(&d.as_str())).cloned().collect();
            source.databases = DbChoice::Only(kept.clone());
            !kept.is_empty()
        }
        DbChoice::All => false,
    });
    let kind_name = kind.as_str();
    scoped.files.retain(|set| {
        let n = set.name.to_ascii_lowercase();
        n.contains(&service.to_ascii_lowercase()) || n.contains(kind_name)
    });
    if scoped.sources.is_empty() && scoped.files.is_empty() {
        return (plan.clone(), "everything configured (nothing is named for this service)".into());
    }
    let mut what: Vec<String> = scoped
        .sources
        .iter()
        .flat_map(|s| match &s.databases {
            DbChoice::Only(list) => list.iter().map(|d| format!("{}/{d}", s.service)).collect::<Vec<_>>(),
            DbChoice::All => Vec::new(),
        })
        .collect();
    what.extend(scoped.files.iter().map(|f| format!("files {}", f.name)));
    (scoped, what.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{BackupPlan, DbChoice, DbSource, FileSet, LocalDir, PgTools, Retention};

    fn plan(databases: DbChoice) -> BackupPlan {
        let target = crate::probe::postgres::dsn::PgTarget::parse("postgresql://u@127.0.0.1:5432/postgres").unwrap();
        BackupPlan {
            storage: crate::backup::Store::Dir(LocalDir::new("/tmp/x".into())),
            sources: vec![DbSource { service: "postgres".into(), target, databases, globals: true }],
            files: vec![
                FileSet { name: "mas-keys".into(), patterns: vec!["/data/mas/*.pem".into()] },
                FileSet { name: "synapse-signing-key".into(), patterns: vec!["/data/s.key".into()] },
            ],
            schedule: None,
            drill: None,
            drill_identity: None,
            retention: Retention::default(),
            zstd_level: 3,
            recipients: Vec::new(),
            tools: PgTools::in_dir(None),
        }
    }

    #[test]
    fn an_update_backs_up_what_the_service_uses() {
        let stack = DbChoice::Only(["matrix", "mas", "vikunja", "authentik"].map(String::from).to_vec());
        #[rustfmt::skip]
        let table: &[(&str, ServiceKind, DbChoice, &str)] = &[
            ("synapse", ServiceKind::Synapse, stack.clone(), "postgres/matrix, files synapse-signing-key"),
            ("mas", ServiceKind::Mas, stack.clone(), "postgres/mas, files mas-keys"),
            ("tasks", ServiceKind::Vikunja, stack.clone(), "postgres/vikunja"),
            ("postgres", ServiceKind::Postgres, stack.clone(), "everything configured (nothing is named for this service)"),
            ("vikunja", ServiceKind::Vikunja, DbChoice::All, "everything configured (nothing is named for this service)"),
        ];
        for (service, kind, dbs, want) in table {
            let (scoped, what) = scoped_backup(&plan(dbs.clone()), service, *kind);
            assert_eq!(&what, want, "{service}");
            assert!(scoped.sources.iter().all(|s| s.globals), "the roles come along");
        }
    }
}
