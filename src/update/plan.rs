//! The update procedure as a pure function: the runbook's "Update Procedure" (announce, back
//! up, deploy, watch, verify, roll back) as steps, and [`decide`], which reads what has
//! happened so far and says what comes next. No I/O and no clock: the executor (`run`) runs
//! the step this names, writes its outcome to the store, and asks again — so a crash at any
//! point resumes with the same answer (`resume`).
//!
//! ```text
//! preflight ─ok/forced─► announce ─ok─► backup ─ok/skipped─► deploy ─ok─► verify ─ok─► finish (succeeded)
//!     │ failed              │ failed      │ failed             │ failed      │ failed
//!     ▼                     ▼             ▼                    ▼             ▼
//!   finish (refused)      finish (aborted: nothing changed)   rollback ─ok─► verify-rollback ─► page ─► finish (rolled back)
//!                                                                │ failed
//!                                                                ▼
//!                                                              page (at once) ─► finish (rollback failed)
//! ```

use serde::{Deserialize, Serialize};

/// One step of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Step {
    /// The service and its dependencies are healthy, no critical alert is open for them, the
    /// backup destination is writable, the deploy target answers.
    Preflight,
    /// The ops room is told; a maintenance window covers the service and its dependents.
    Announce,
    /// A backup of the service's databases and key files, then verified.
    Backup,
    /// The new version is deployed (Render, or the configured command) and followed to its end.
    Deploy,
    /// The service's checks pass for N rounds in a row, its rules are quiet, it reports the
    /// version asked for, and (Synapse, MAS) the login path answers.
    Verify,
    /// The previous version is put back (Render's rollback, or the configured command).
    Rollback,
    /// The same proof as `verify`, for the version rolled back to (the version is not compared).
    VerifyRollback,
    /// A critical `UpdateFailed` page naming the step and the evidence.
    Page,
    /// The room is told how it ended; the maintenance window ends.
    Finish,
}

impl Step {
    /// Every step, in the order of a successful update and then the failure path.
    pub(crate) const ALL: [Step; 9] = [
        Step::Preflight,
        Step::Announce,
        Step::Backup,
        Step::Deploy,
        Step::Verify,
        Step::Rollback,
        Step::VerifyRollback,
        Step::Page,
        Step::Finish,
    ];

    /// The name used in output and in the store (`verify-rollback`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::Announce => "announce",
            Step::Backup => "backup",
            Step::Deploy => "deploy",
            Step::Verify => "verify",
            Step::Rollback => "rollback",
            Step::VerifyRollback => "verify-rollback",
            Step::Page => "page",
            Step::Finish => "finish",
        }
    }

    /// The step called `name`, if any.
    pub(crate) fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Outcome {
    /// It did what it is for.
    Ok,
    /// It did not (the evidence is kept beside the outcome).
    Failed,
    /// It was not run, on purpose: `--no-backup` with a reason; `--force` over a failed
    /// preflight (the preflight's findings are kept).
    Skipped,
    /// The process died while it ran (found by `--resume`).
    Interrupted,
}

impl Outcome {
    /// As stored and printed.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// The outcome called `name`, if any.
    pub(crate) fn parse(name: &str) -> Option<Outcome> {
        [Outcome::Ok, Outcome::Failed, Outcome::Skipped, Outcome::Interrupted].into_iter().find(|o| o.name() == name)
    }
}

/// How an update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Ending {
    /// Deployed and verified.
    Succeeded,
    /// The preflight found a reason not to start, and `--force` was not given.
    Refused,
    /// Stopped before the deploy (announce or backup failed): nothing was changed.
    Aborted,
    /// The deploy or its verification failed; the previous version is back and verified.
    RolledBack,
    /// The deploy or its verification failed and the rollback failed or did not verify: the
    /// service needs a person now.
    RollbackFailed,
}

impl Ending {
    /// As stored and printed.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ending::Succeeded => "succeeded",
            Ending::Refused => "refused",
            Ending::Aborted => "aborted",
            Ending::RolledBack => "rolled-back",
            Ending::RollbackFailed => "rollback-failed",
        }
    }

    /// The result called `name`, if any (the store keeps the name; only the tests read it back).
    #[cfg(test)]
    pub(crate) fn parse(name: &str) -> Option<Ending> {
        [Ending::Succeeded, Ending::Refused, Ending::Aborted, Ending::RolledBack, Ending::RollbackFailed]
            .into_iter()
            .find(|r| r.name() == name)
    }

    /// Whether the update did what was asked.
    pub(crate) fn is_success(self) -> bool {
        self == Ending::Succeeded
    }
}

/// What the user asked for that changes the path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Options {
    /// `--force`: go on after a failed preflight (recorded).
    pub force: bool,
    /// `--no-backup REASON`: the backup step is skipped (recorded with the reason).
    pub no_backup: bool,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Run this step (with `Skipped` already decided for `Backup` under `--no-backup`, and
    /// for `Preflight`'s failure under `--force`: the executor records that).
    Run(Step),
    /// Nothing is left: the update ended so.
    Done(Ending),
}

/// The result the path taken so far leads to, as `finish` reports it.
pub(crate) fn result_of(history: &[(Step, Outcome)]) -> Ending {
    let outcome = |step: Step| history.iter().rev().find(|(s, _)| *s == step).map(|(_, o)| *o);
    let ok = |o: Option<Outcome>| matches!(o, Some(Outcome::Ok | Outcome::Skipped));
    if outcome(Step::Rollback).is_some() {
        if outcome(Step::Rollback) == Some(Outcome::Ok) && outcome(Step::VerifyRollback) == Some(Outcome::Ok) {
            return Ending::RolledBack;
        }
        return Ending::RollbackFailed;
    }
    // A failed preflight followed by an announcement was overridden (`--force`).
    if !ok(outcome(Step::Preflight)) && outcome(Step::Announce).is_none() {
        return Ending::Refused;
    }
    if !ok(outcome(Step::Announce)) || !ok(outcome(Step::Backup)) {
        return Ending::Aborted;
    }
    if outcome(Step::Deploy) == Some(Outcome::Ok) && outcome(Step::Verify) == Some(Outcome::Ok) {
        Ending::Succeeded
    } else {
        Ending::Aborted
    }
}

/// The next step after `history` (each step run so far with how it ended, in order). Pure:
/// the same history always gives the same answer, which is what makes `--resume` correct.
///
/// An `Interrupted` step is one the process died in: a step that cannot have changed the
/// service is run again; a deploy in flight is unverified and is rolled back; a rollback in
/// flight is run again (putting the previous version back twice is harmless); verify is run
/// again (the deploy before it finished).
pub(crate) fn decide(history: &[(Step, Outcome)], options: Options) -> Next {
    let Some(&(last, outcome)) = history.last() else { return Next::Run(Step::Preflight) };
    use Outcome::*;
    use Step::*;
    match (last, outcome) {
        (Finish, Interrupted) => Next::Run(Finish),
        (Finish, _) => Next::Done(result_of(history)),
        (Deploy, Interrupted) => Next::Run(Rollback),
        (step, Interrupted) => Next::Run(step),
        (Preflight, Ok | Skipped) => Next::Run(Announce),
        (Preflight, Failed) if options.force => Next::Run(Announce),
        (Preflight, Failed) => Next::Run(Finish),
        (Announce, Ok | Skipped) => Next::Run(Backup),
        (Announce, Failed) => Next::Run(Finish),
        (Backup, Ok | Skipped) => Next::Run(Deploy),
        (Backup, Failed) => Next::Run(Finish),
        (Deploy, Ok | Skipped) => Next::Run(Verify),
        (Deploy, Failed) => Next::Run(Rollback),
        (Verify, Ok | Skipped) => Next::Run(Finish),
        (Verify, Failed) => Next::Run(Rollback),
        (Rollback, Ok | Skipped) => Next::Run(VerifyRollback),
        // A failed rollback pages at once: nothing else comes first.
        (Rollback, Failed) => Next::Run(Page),
        (VerifyRollback, _) => Next::Run(Page),
        (Page, _) => Next::Run(Finish),
    }
}

/// Every step a run would take if each one succeeded, with `--no-backup` shown as a skipped
/// backup: what `--dry-run` prints.
pub(crate) fn happy_path(options: Options) -> Vec<(Step, Outcome)> {
    let mut history: Vec<(Step, Outcome)> = Vec::new();
    while let Next::Run(step) = decide(&history, options) {
        let outcome = if step == Step::Backup && options.no_backup { Outcome::Skipped } else { Outcome::Ok };
        history.push((step, outcome));
        if history.len() > Step::ALL.len() * 2 {
            break; // cannot happen (the table test proves each path ends); never loop.
        }
    }
    history
}

#[cfg(test)]
mod tests {
    use super::Outcome::*;
    use super::Step::*;
    use super::*;

    fn run(outcomes: &[(Step, Outcome)], options: Options) -> (Vec<Step>, Ending) {
        // Plays a path: each step the planner names gets the outcome the table gives it
        // (the first unused one for that step), Ok when the table has none.
        let mut history = Vec::new();
        let mut given: Vec<(Step, Outcome)> = outcomes.to_vec();
        loop {
            match decide(&history, options) {
                Next::Done(result) => return (history.iter().map(|(s, _)| *s).collect(), result),
                Next::Run(step) => {
                    let outcome = match given.iter().position(|(s, _)| *s == step) {
                        Some(i) => given.remove(i).1,
                        None => Ok,
                    };
                    history.push((step, outcome));
                    assert!(history.len() < 30, "the path never ends: {history:?}");
                }
            }
        }
    }

    #[test]
    fn every_failure_point_leads_to_the_right_next_step_and_end() {
        let plain = Options::default();
        let force = Options { force: true, ..Options::default() };
        let no_backup = Options { no_backup: true, ..Options::default() };
        #[rustfmt::skip]
        let table: &[(&str, &[(Step, Outcome)], Options, &[Step], Ending)] = &[
            ("all goes well", &[], plain,
             &[Preflight, Announce, Backup, Deploy, Verify, Finish], Ending::Succeeded),
            ("an unhealthy stack is refused before anything is said or changed", &[(Preflight, Failed)], plain,
             &[Preflight, Finish], Ending::Refused),
            ("--force goes on over a failed preflight", &[(Preflight, Failed)], force,
             &[Preflight, Announce, Backup, Deploy, Verify, Finish], Ending::Succeeded),
            ("the room cannot be told: stop, nothing changed", &[(Announce, Failed)], plain,
             &[Preflight, Announce, Finish], Ending::Aborted),
            ("no verified backup, no deploy", &[(Backup, Failed)], plain,
             &[Preflight, Announce, Backup, Finish], Ending::Aborted),
            ("--no-backup skips the backup and deploys", &[(Backup, Skipped)], no_backup,
             &[Preflight, Announce, Backup, Deploy, Verify, Finish], Ending::Succeeded),
            ("a failed deploy is rolled back, verified and paged", &[(Deploy, Failed)], plain,
             &[Preflight, Announce, Backup, Deploy, Rollback, VerifyRollback, Page, Finish], Ending::RolledBack),
            ("a deploy that does not verify is rolled back", &[(Verify, Failed)], plain,
             &[Preflight, Announce, Backup, Deploy, Verify, Rollback, VerifyRollback, Page, Finish], Ending::RolledBack),
            ("a failed rollback pages at once", &[(Deploy, Failed), (Rollback, Failed)], plain,
             &[Preflight, Announce, Backup, Deploy, Rollback, Page, Finish], Ending::RollbackFailed),
            ("a rollback that does not verify pages as failed", &[(Verify, Failed), (VerifyRollback, Failed)], plain,
             &[Preflight, Announce, Backup, Deploy, Verify, Rollback, VerifyRollback, Page, Finish], Ending::RollbackFailed),
            ("a page that cannot be queued still ends the window", &[(Deploy, Failed), (Page, Failed)], plain,
             &[Preflight, Announce, Backup, Deploy, Rollback, VerifyRollback, Page, Finish], Ending::RolledBack),
            ("a finish that fails to tell the room still ends", &[(Finish, Failed)], plain,
             &[Preflight, Announce, Backup, Deploy, Verify, Finish], Ending::Succeeded),
        ];
        for (why, outcomes, options, steps, result) in table {
            let (taken, ended) = run(outcomes, *options);
            assert_eq!(&taken, steps, "{why}");
            assert_eq!(ended, *result, "{why}");
        }
    }

    #[test]
    fn a_crash_in_each_step_resumes_to_the_right_step() {
        #[rustfmt::skip]
        let table: &[(&str, &[(Step, Outcome)], Next)] = &[
            ("nothing written yet: start", &[], Next::Run(Preflight)),
            ("preflight again: it changes nothing", &[(Preflight, Interrupted)], Next::Run(Preflight)),
            ("announce again (the messages are idempotent)", &[(Preflight, Ok), (Announce, Interrupted)], Next::Run(Announce)),
            ("backup again: a killed run leaves nothing listed", &[(Preflight, Ok), (Announce, Ok), (Backup, Interrupted)], Next::Run(Backup)),
            ("a deploy in flight is unverified: roll back",
             &[(Preflight, Ok), (Announce, Ok), (Backup, Ok), (Deploy, Interrupted)], Next::Run(Rollback)),
            ("the deploy finished: verify again",
             &[(Preflight, Ok), (Announce, Ok), (Backup, Ok), (Deploy, Ok), (Verify, Interrupted)], Next::Run(Verify)),
            ("a rollback in flight is run again",
             &[(Deploy, Failed), (Rollback, Interrupted)], Next::Run(Rollback)),
            ("the page again (queued once per update)",
             &[(Deploy, Failed), (Rollback, Failed), (Page, Interrupted)], Next::Run(Page)),
            ("finish again", &[(Verify, Ok), (Finish, Interrupted)], Next::Run(Finish)),
            ("after the last finished step, the next one", &[(Preflight, Ok), (Announce, Ok)], Next::Run(Backup)),
        ];
        for (why, history, next) in table {
            assert_eq!(decide(history, Options::default()), *next, "{why}");
        }
    }

    #[test]
    fn a_deploy_killed_in_flight_ends_rolled_back_after_resume() {
        let history = [(Preflight, Ok), (Announce, Ok), (Backup, Ok), (Deploy, Interrupted)];
        let (steps, result) = run(&history, Options::default());
        assert_eq!(steps, vec![Preflight, Announce, Backup, Deploy, Rollback, VerifyRollback, Page, Finish]);
        assert_eq!(result, Ending::RolledBack);
    }

    #[test]
    fn the_dry_run_path_lists_each_step_once() {
        let path: Vec<Step> = happy_path(Options::default()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(path, vec![Preflight, Announce, Backup, Deploy, Verify, Finish]);
        let skipped = happy_path(Options { no_backup: true, force: false });
        assert!(skipped.contains(&(Backup, Skipped)), "--no-backup shows the backup skipped");
    }

    #[test]
    fn names_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.name()), Some(step));
        }
        for o in [Ok, Failed, Skipped, Interrupted] {
            assert_eq!(Outcome::parse(o.name()), Some(o));
        }
        for r in [Ending::Succeeded, Ending::Refused, Ending::Aborted, Ending::RolledBack, Ending::RollbackFailed] {
            assert_eq!(Ending::parse(r.name()), Some(r));
        }
        assert_eq!(Step::parse("deploy; DROP"), None);
    }
}
