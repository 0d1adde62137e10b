//! `mxwarden diagnose`: the runbook's "Common Issues & Troubleshooting" as code. Each playbook
//! (one file each) looks at the live stack the way the runbook's diagnosis steps would — the
//! metrics, the database, the discovery documents — and returns findings: what was seen (with
//! numbers), why it matters, the fix, and the runbook section it comes from. The findings
//! model here is pure (no I/O); `run` drives the playbooks under one deadline. Read by the
//! CLI (`cli::diagnose`) and by the daemon, which sends a diagnosis after every critical page
//! (`daemon::followup`); `render_text` is the plain-text form both use.

mod db_disk;
mod mas_db;
mod oidc;
pub(crate) mod synapse_admin;
mod synapse_oom;
mod vikunja_email;
pub(crate) mod web;

use crate::config::Config;
use crate::config::targets::ServiceTarget;
use crate::model::ServiceKind;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Why a playbook could not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DiagnoseError {
    /// A topic name that is not a playbook.
    #[error("no playbook `{given}`; expected one of: {}", Topic::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "))]
    UnknownTopic {
        /// What was asked for.
        given: String,
    },
    /// No HTTP client could be built.
    #[error("cannot build an HTTP client: {why}")]
    Client {
        /// Why.
        why: String,
    },
    /// A playbook the config gives nothing to look at.
    #[error("playbook `{topic}` needs {needs} in the config")]
    NotPossible {
        /// The playbook.
        topic: &'static str,
        /// What it needs.
        needs: &'static str,
    },
}

/// One playbook: a common issue of the runbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Topic {
    /// "Synapse Out of Memory".
    SynapseOom,
    /// "MAS Database Connection Errors".
    MasDb,
    /// "OIDC Flow Fails".
    Oidc,
    /// "Vikunja 'No Email Address Available'".
    VikunjaEmail,
    /// "High Database Disk Usage".
    DbDisk,
}

impl Topic {
    /// Every playbook, in the runbook's order.
    pub(crate) const ALL: [Topic; 5] =
        [Topic::SynapseOom, Topic::MasDb, Topic::Oidc, Topic::VikunjaEmail, Topic::DbDisk];

    /// Its name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Topic::SynapseOom => "synapse-oom",
            Topic::MasDb => "mas-db",
            Topic::Oidc => "oidc",
            Topic::VikunjaEmail => "vikunja-email",
            Topic::DbDisk => "db-disk",
        }
    }

    /// The topic named `text`.
    pub(crate) fn parse(text: &str) -> Result<Topic, DiagnoseError> {
        Topic::ALL
            .into_iter()
            .find(|t| t.name() == text.trim())
            .ok_or_else(|| DiagnoseError::UnknownTopic { given: crate::text::escape_controls(text).into_owned() })
    }

    /// What the config must have for the playbook to look at anything.
    fn needs(self) -> &'static str {
        match self {
            Topic::SynapseOom => "a synapse service with metrics_url",
            Topic::MasDb => "a postgres service, and a mas service or `mas` in its databases",
            Topic::Oidc => "a mas service",
            Topic::VikunjaEmail => "a vikunja service",
            Topic::DbDisk => "a postgres service",
        }
    }

    /// Whether `config` makes the playbook possible.
    pub(crate) fn possible(self, config: &Config) -> bool {
        let has = |kind| config.services.iter().any(|s: &ServiceTarget| s.kind == kind);
        match self {
            Topic::SynapseOom => {
                config.services.iter().any(|s| s.kind == ServiceKind::Synapse && s.metrics_url.is_some())
            }
            Topic::MasDb => {
                has(ServiceKind::Postgres)
                    && (has(ServiceKind::Mas)
                        || config
                            .services
                            .iter()
                            .filter_map(|s| s.postgres.as_ref())
                            .any(|pg| pg.databases.iter().any(|d| d == "mas")))
            }
            Topic::Oidc => has(ServiceKind::Mas),
            Topic::VikunjaEmail => has(ServiceKind::Vikunja),
            Topic::DbDisk => has(ServiceKind::Postgres),
        }
    }

    /// The playbooks that explain an alert, by its name (`SynapseDown` → `synapse-oom`).
    pub(crate) fn for_alert(alert: &str) -> Vec<Topic> {
        let a = alert.to_ascii_lowercase();
        if a.starts_with("synapse") {
            if a.contains("down") || a.contains("memory") || a.contains("cpu") || a.contains("error") {
                vec![Topic::SynapseOom]
            } else {
                vec![Topic::SynapseOom, Topic::DbDisk]
            }
        } else if a.starts_with("mas") {
            vec![Topic::MasDb, Topic::Oidc]
        } else if a.starts_with("vikunja") {
            vec![Topic::VikunjaEmail]
        } else if a.starts_with("postgres") {
            if a.contains("disk") { vec![Topic::DbDisk] } else { vec![Topic::MasDb, Topic::DbDisk] }
        } else {
            Vec::new()
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    /// Something is broken now.
    Critical,
    /// Something will break, or works only partly.
    Warning,
    /// Worth knowing.
    Info,
}

/// One thing a playbook found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Finding {
    /// How bad.
    pub severity: Severity,
    /// One line: what is wrong.
    pub title: String,
    /// What was seen: numbers, not adjectives.
    pub seen: Vec<String>,
    /// Why it matters.
    pub why: String,
    /// What to do: commands or config to change.
    pub fix: Vec<String>,
    /// The runbook section it comes from.
    pub runbook: &'static str,
}

/// One playbook's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Outcome {
    /// The playbook.
    pub topic: Topic,
    /// What was looked at and found in order (healthy evidence included).
    pub checked: Vec<String>,
    /// What is wrong, most severe first.
    pub findings: Vec<Finding>,
    /// Why the playbook could not finish, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// How long it took, ms.
    pub took_ms: u64,
}

/// Everything one diagnosis found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    /// Each playbook run, in the runbook's order.
    pub playbooks: Vec<Outcome>,
}

impl Report {
    /// Whether anything was found, or a playbook failed: exit status 1.
    pub(crate) fn has_findings(&self) -> bool {
        self.playbooks.iter().any(|p| !p.findings.is_empty() || p.failed.is_some())
    }
}

/// What a playbook collects while it runs.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    checked: Vec<String>,
    findings: Vec<Finding>,
}

impl Notes {
    /// Records something looked at.
    pub(crate) fn saw(&mut self, line: impl Into<String>) {
        self.checked.push(line.into());
    }

    /// Records a finding.
    pub(crate) fn found(&mut self, finding: Finding) {
        self.findings.push(finding);
    }
}

/// The topics to run: those asked for (each must be possible), or every possible one.
pub(crate) fn select(config: &Config, asked: &[String]) -> Result<Vec<Topic>, DiagnoseError> {
    if asked.is_empty() {
        return Ok(Topic::ALL.into_iter().filter(|t| t.possible(config)).collect());
    }
    let mut topics = Vec::new();
    for a in asked {
        let t = Topic::parse(a)?;
        if !t.possible(config) {
            return Err(DiagnoseError::NotPossible { topic: t.name(), needs: t.needs() });
        }
        if !topics.contains(&t) {
            topics.push(t);
        }
    }
    topics.sort();
    Ok(topics)
}

/// The playbooks' context over `config`, for the `synapse` commands.
pub(crate) fn web_cx(config: &Config) -> Result<web::Cx<'_>, DiagnoseError> {
    web::Cx::new(config).map_err(|why| DiagnoseError::Client { why })
}

/// Runs `topics` at once, each bounded by `deadline`; a playbook that does not finish in time
/// is reported as failed, in one line. Never panics, whatever the services answer.
pub(crate) async fn run(config: &Config, topics: &[Topic], deadline: Duration) -> Report {
    let cx = match web::Cx::new(config) {
        Ok(cx) => cx,
        Err(why) => {
            return Report {
                playbooks: topics
                    .iter()
                    .map(|t| Outcome {
                        topic: *t,
                        checked: Vec::new(),
                        findings: Vec::new(),
                        failed: Some(why.clone()),
                        took_ms: 0,
                    })
                    .collect(),
            };
        }
    };
    let runs = topics.iter().map(|t| run_one(&cx, *t, deadline));
    Report { playbooks: futures::future::join_all(runs).await }
}

async fn run_one(cx: &web::Cx<'_>, topic: Topic, deadline: Duration) -> Outcome {
    let started = Instant::now();
    let mut notes = Notes::default();
    let work = async {
        match topic {
            Topic::SynapseOom => synapse_oom::run(cx, &mut notes).await,
            Topic::MasDb => mas_db::run(cx, &mut notes).await,
            Topic::Oidc => oidc::run(cx, &mut notes).await,
            Topic::VikunjaEmail => vikunja_email::run(cx, &mut notes).await,
            Topic::DbDisk => db_disk::run(cx, &mut notes).await,
        }
    };
    let failed = match tokio::time::timeout(deadline, work).await {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(why),
        Err(_) => Some(format!("did not finish within {}", crate::units::HumanDuration(deadline))),
    };
    let mut findings = notes.findings;
    findings.sort_by_key(|f| f.severity);
    Outcome {
        topic,
        checked: notes.checked,
        findings,
        failed,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// The report as plain text: for a terminal, and for a Matrix follow-up.
pub(crate) fn render_text(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let count: usize = report.playbooks.iter().map(|p| p.findings.len()).sum();
    if report.playbooks.is_empty() {
        out.push_str("No playbook applies to this config.\n");
        return out;
    }
    for p in &report.playbooks {
        let _ = writeln!(out, "== {} ({} ms)", p.topic.name(), p.took_ms);
        if let Some(why) = &p.failed {
            let _ = writeln!(out, "  playbook failed: {}", crate::text::escape_controls(why));
        }
        if p.findings.is_empty() && p.failed.is_none() {
            let _ = writeln!(out, "  nothing found");
        }
        for f in &p.findings {
            let sev = match f.severity {
                Severity::Critical => "CRITICAL",
                Severity::Warning => "WARNING",
                Severity::Info => "INFO",
            };
            let _ = writeln!(out, "  [{sev}] {}", crate::text::escape_controls(&f.title));
            for s in &f.seen {
                let _ = writeln!(out, "    seen: {}", crate::text::escape_controls(s));
            }
            let _ = writeln!(out, "    why: {}", crate::text::escape_controls(&f.why));
            for x in &f.fix {
                let _ = writeln!(out, "    fix: {}", crate::text::escape_controls(x));
            }
            let _ = writeln!(out, "    runbook: {}", f.runbook);
        }
        for c in &p.checked {
            let _ = writeln!(out, "  checked: {}", crate::text::escape_controls(c));
        }
    }
    let failed = report.playbooks.iter().filter(|p| p.failed.is_some()).count();
    let _ = writeln!(out, "{count} finding(s), {failed} playbook(s) failed");
    out
}

/// The runbook's section titles, as findings cite them.
pub(crate) mod runbook {
    /// "Issue: Synapse Out of Memory".
    pub(crate) const SYNAPSE_OOM: &str = "Common Issues: Synapse Out of Memory";
    /// "Issue: MAS Database Connection Errors".
    pub(crate) const MAS_DB: &str = "Common Issues: MAS Database Connection Errors";
    /// "Issue: OIDC Flow Fails".
    pub(crate) const OIDC: &str = "Common Issues: OIDC Flow Fails";
    /// "Issue: Vikunja 'No Email Address Available'".
    pub(crate) const VIKUNJA_EMAIL: &str = "Common Issues: Vikunja \"No Email Address Available\"";
    /// "Issue: High Database Disk Usage".
    pub(crate) const DB_DISK: &str = "Common Issues: High Database Disk Usage";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_by_name_and_unknown_ones_are_named() {
        for t in Topic::ALL {
            assert_eq!(Topic::parse(t.name()), Ok(t), "round trip");
        }
        let e = Topic::parse("oom\u{1b}[31m").unwrap_err().to_string();
        assert!(e.contains("no playbook `oom\\x1b[31m`"), "escaped: {e}");
        assert!(e.contains("synapse-oom, mas-db, oidc, vikunja-email, db-disk"), "{e}");
    }

    #[test]
    fn alerts_map_to_their_playbooks() {
        let cases: &[(&str, &[Topic], &str)] = &[
            ("SynapseDown", &[Topic::SynapseOom], "a dead Synapse: memory first"),
            ("SynapseMemoryCritical", &[Topic::SynapseOom], "memory"),
            ("MasDown", &[Topic::MasDb, Topic::Oidc], "MAS: its database and its routes"),
            ("VikunjaDown", &[Topic::VikunjaEmail], "vikunja"),
            ("PostgresDiskUsageCritical", &[Topic::DbDisk], "disk"),
            ("PostgresDown", &[Topic::MasDb, Topic::DbDisk], "postgres"),
            ("CheckFailing", &[], "a hand-written check has no playbook"),
        ];
        for (alert, want, why) in cases {
            assert_eq!(Topic::for_alert(alert), *want, "{alert}: {why}");
        }
    }

    #[test]
    fn findings_and_failures_decide_the_exit_status() {
        let outcome = |findings: Vec<Finding>, failed: Option<String>| Outcome {
            topic: Topic::DbDisk,
            checked: vec!["db: 10 MiB".into()],
            findings,
            failed,
            took_ms: 1,
        };
        let f = Finding {
            severity: Severity::Warning,
            title: "t".into(),
            seen: vec!["1".into()],
            why: "w".into(),
            fix: vec!["x".into()],
            runbook: runbook::DB_DISK,
        };
        assert!(!Report { playbooks: vec![outcome(vec![], None)] }.has_findings(), "healthy");
        assert!(Report { playbooks: vec![outcome(vec![f.clone()], None)] }.has_findings(), "a finding");
        assert!(Report { playbooks: vec![outcome(vec![], Some("timeout".into()))] }.has_findings(), "a failure");
        let text = render_text(&Report { playbooks: vec![outcome(vec![f], Some("late".into()))] });
        assert!(
            text.contains("playbook failed: late") && text.contains("[WARNING] t") && text.contains("fix: x"),
            "{text}"
        );
    }
}
