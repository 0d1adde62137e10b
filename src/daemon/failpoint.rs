//! Crash points for the tests that prove "one transaction per decision": with the cargo
//! feature `failpoints` (test builds only; release builds have none of this), setting
//! `MXWARDEN_FAILPOINT=<when>:<what>` makes the daemon abort — as `kill -9` would — right
//! before or right after it commits a decision that contains `<what>`:
//! `before-commit` / `after-commit`, and `page`, `resolve`, `hold`, `release`, `reminder`,
//! `digest`. `MXWARDEN_FAILPOINT=stall:<file>` instead makes the evaluation loop wait while
//! `<file>` exists, as a wedged evaluator would, with the rest of the process running on (the
//! heartbeat's tests). `MXWARDEN_FAILPOINT=deaf:<file>` makes the leadership lease task stop
//! talking to the database while `<file>` exists and, if it leads, believe in its term all the
//! while — a leader that cannot tell it was deposed, against which only the store's fence
//! stands (the HA tests). Without the feature, `check`, `stall` and `deaf` are empty and
//! compile away.

use crate::store::Decision;

/// Where in the commit the process may be made to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Point {
    /// The decision is made, nothing of it is written.
    BeforeCommit,
    /// All of it is written, nothing of it is delivered.
    AfterCommit,
}

/// What a decision contains, as the failpoint names it.
#[cfg(feature = "failpoints")]
fn contents(d: &Decision) -> Vec<&'static str> {
    use crate::notify::Kind;
    let mut found = Vec::new();
    let kinds: Vec<Kind> = d.deliveries.iter().map(|x| x.notification.kind).collect();
    if kinds.contains(&Kind::Firing) {
        found.push("page");
    }
    if kinds.contains(&Kind::Resolved) {
        found.push("resolve");
    }
    if !d.hold.is_empty() {
        found.push("hold");
    }
    if !d.release.is_empty() {
        found.push("release");
    }
    if !d.reminded.is_empty() {
        found.push("reminder");
    }
    if kinds.contains(&Kind::Digest) {
        found.push("digest");
    }
    found
}

/// Aborts the process if the armed failpoint matches `point` and `decision`.
#[cfg(feature = "failpoints")]
pub(super) fn check(point: Point, decision: &Decision) {
    let Ok(armed) = std::env::var("MXWARDEN_FAILPOINT") else { return };
    let Some((when, what)) = armed.split_once(':') else { return };
    let here = match point {
        Point::BeforeCommit => "before-commit",
        Point::AfterCommit => "after-commit",
    };
    if when == here && contents(decision).contains(&what) {
        eprintln!("failpoint {armed}: aborting");
        std::process::abort();
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(super) fn check(_point: Point, _decision: &Decision) {}

/// With `MXWARDEN_FAILPOINT=stall:<file>`: waits while `<file>` exists.
#[cfg(feature = "failpoints")]
pub(super) async fn stall() {
    let Ok(armed) = std::env::var("MXWARDEN_FAILPOINT") else { return };
    let Some(("stall", path)) = armed.split_once(':') else { return };
    let mut said = false;
    while std::path::Path::new(path).exists() {
        if !said {
            eprintln!("failpoint {armed}: the evaluation loop is stalled");
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(super) async fn stall() {}

/// With `MXWARDEN_FAILPOINT=deaf:<file>`: whether `<file>` exists.
#[cfg(feature = "failpoints")]
pub(super) fn deaf() -> bool {
    let Ok(armed) = std::env::var("MXWARDEN_FAILPOINT") else { return false };
    matches!(armed.split_once(':'), Some(("deaf", path)) if std::path::Path::new(path).exists())
}

/// Without the `failpoints` feature: never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(super) fn deaf() -> bool {
    false
}
