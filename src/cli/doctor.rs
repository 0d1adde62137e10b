//! `mxwarden doctor [--json]`: every credential and permission the config relies on, proven
//! (see `crate::doctor`), one line each with its fix. Exit 0 all proven (warnings allowed),
//! 1 something failed, 2 the config itself is wrong.

use super::{Status, outln};
use crate::config::Config;
use crate::doctor::{Finding, Outcome};
use anyhow::Result;

/// The JSON document `doctor --json` prints.
#[derive(Debug, serde::Serialize)]
struct Printed<'a> {
    /// The config file.
    config: String,
    /// No finding failed.
    ok: bool,
    /// Counts per outcome.
    passed: usize,
    warnings: usize,
    failed: usize,
    /// Every finding.
    findings: &'a [Finding],
}

/// Runs the doctor and prints its findings.
pub(crate) fn doctor(config: &Config, json: bool) -> Result<Status> {
    // A spinner on a terminal: a silent server can take the doctor up to its 10 s deadline.
    use std::io::IsTerminal as _;
    let spinner = if std::io::stderr().is_terminal() && !json && !super::output::quiet() {
        let s = indicatif::ProgressBar::new_spinner().with_message("proving credentials and permissions…");
        s.enable_steady_tick(std::time::Duration::from_millis(100));
        s
    } else {
        indicatif::ProgressBar::hidden()
    };
    let findings = super::runtime()?.block_on(crate::doctor::run(config));
    spinner.finish_and_clear();
    let count = |o: Outcome| findings.iter().filter(|f| f.outcome == o).count();
    let ok = crate::doctor::healthy(&findings);
    if json {
        let printed = Printed {
            config: config.path.display().to_string(),
            ok,
            passed: count(Outcome::Pass),
            warnings: count(Outcome::Warn),
            failed: count(Outcome::Fail),
            findings: &findings,
        };
        outln!("{}", serde_json::to_string_pretty(&printed)?);
    } else {
        let mut table = super::output::table(["AREA", "SUBJECT", "CHECK", "RESULT", "DETAIL"]);
        for f in &findings {
            table.add_row(crate::text::cells([f.area.name(), &f.subject, f.check, f.outcome.word(), &f.detail]));
            if let Some(fix) = &f.fix {
                table.add_row(crate::text::cells(["", "", "", "", &format!("fix: {fix}")]));
            }
        }
        if findings.is_empty() {
            outln!("nothing to prove: the config has no tokens, receivers, databases, backups or servers");
        } else {
            outln!("{}", table.trim_fmt());
        }
        let warnings = count(Outcome::Warn);
        outln!(
            "{} findings: {} ok, {warnings} {}, {} failed",
            findings.len(),
            count(Outcome::Pass),
            if warnings == 1 { "warning" } else { "warnings" },
            count(Outcome::Fail)
        );
    }
    Ok(if ok { Status::Healthy } else { Status::Unhealthy })
}
