//! Leadership: which of the instances sharing one store judges, routes and delivers. Every
//! instance probes and records history; only the leader runs the evaluator's decisions, the
//! dispatcher, follow-ups, the control room and scheduled backups.
//!
//! The lease task takes the store's lease row (`store::leader`) when it is free, renews it
//! every third of its time-to-live, and believes in its term only until a monotonic instant a
//! fifth of the TTL before the database's expiry (`Fence`): a renewal refused steps down at
//! once; a renewal that fails (the database unreachable) is retried every second while the
//! belief lasts, and the belief running out steps down without the database. On SQLite a
//! failed renewal (a full disk, an I/O error) keeps the belief: every process shares that
//! file, so nobody else can take the lease either, and a single instance keeps deciding (its
//! decisions are kept and committed when the disk takes writes again) as it did before
//! leadership existed. Whatever the belief, the database's fence refuses a stale term. A process
//! stopped with SIGSTOP wakes up with its belief expired, before anything it runs can send:
//! every deciding write is also fenced by the term in the database.
//!
//! The pure part, `step` and `expire`, is table-tested; the task around it only does I/O.

use crate::live::{LeaderView, Live};
use crate::store::{Fence, Store};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Not leading: probing and recording only.
    Following,
    /// Leading under `term` until `until` unless renewed.
    Leading {
        /// The lease's term.
        term: i64,
        /// The end of this process's belief (before the database's expiry).
        until: Instant,
    },
}

/// What one attempt on the lease (take it, or renew it) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    /// The lease is ours under this term.
    Holds(i64),
    /// Someone else holds it (or took it from us), or our name is in use by another process.
    Refused,
    /// The database did not answer in time, or failed. `others_blocked`: the failure stops
    /// every other instance too (SQLite: one file), so the belief may be kept.
    Failed {
        /// Whether no other instance can take the lease while this lasts.
        others_blocked: bool,
    },
}

/// A change of role, to log and act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// Became leader under this term.
    Became(i64),
    /// No longer leads under `term`, for `why`.
    Lost {
        /// The term given up.
        term: i64,
        /// Why, in words.
        why: &'static str,
    },
}

/// The lease's timing, from its time-to-live.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// The lease's time-to-live.
    pub(super) ttl: Duration,
}

impl Timing {
    /// How often the leader renews and a follower tries to take the lease.
    pub(super) fn every(&self) -> Duration {
        self.ttl / 3
    }

    /// How long a renewal asked at some instant is believed: a fifth of the TTL short of the
    /// database's expiry, for the time the request took to arrive and for clock rates.
    fn belief(&self) -> Duration {
        self.ttl - self.ttl / 5
    }

    /// The wait before retrying a renewal that failed.
    fn retry(&self) -> Duration {
        Duration::from_secs(1).min(self.every())
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The role after an attempt asked at `asked`, and the wait before the next one. Pure.
pub(super) fn step(role: Role, attempt: Attempt, asked: Instant, timing: Timing) -> (Role, Option<Change>, Duration) {
    match (role, attempt) {
        (Role::Following, Attempt::Holds(term)) => {
            (Role::Leading { term, until: asked + timing.belief() }, Some(Change::Became(term)), timing.every())
        }
        (Role::Leading { term: old, .. }, Attempt::Holds(term)) if old == term => {
            (Role::Leading { term, until: asked + timing.belief() }, None, timing.every())
        }
        // Cannot happen (a renewal keeps the term); a new term is a new leadership all the same.
        (Role::Leading { term: old, .. }, Attempt::Holds(term)) => (
            Role::Leading { term, until: asked + timing.belief() },
            Some(Change::Lost { term: old, why: "the lease's term changed" }),
            timing.every(),
        ),
        (Role::Leading { term, .. }, Attempt::Refused) => {
            (Role::Following, Some(Change::Lost { term, why: "the lease is no longer ours" }), timing.every())
        }
        // Nobody can take the lease while this failure lasts: keep believing, retry soon.
        (Role::Leading { term, .. }, Attempt::Failed { others_blocked: true }) => {
            (Role::Leading { term, until: asked + timing.belief() }, None, timing.retry())
        }
        // The term is still ours in the database until it expires: retry soon, and let the
        // belief's end step down if the database stays away.
        (leading @ Role::Leading { .. }, Attempt::Failed { others_blocked: false }) => (leading, None, timing.retry()),
        (Role::Following, Attempt::Refused | Attempt::Failed { .. }) => (Role::Following, None, timing.every()),
    }
}

/// The role at `now`: a belief past its end steps down, without the database. Pure.
pub(super) fn expire(role: Role, now: Instant) -> (Role, Option<Change>) {
    match role {
        Role::Leading { term, until } if now >= until => {
            (Role::Following, Some(Change::Lost { term, why: "the lease could not be renewed before it ran out" }))
        }
        other => (other, None),
    }
}

/// Waits until `leading` says this process leads; `None` when `stop` turns true first.
async fn until_leading(leading: &mut watch::Receiver<Option<i64>>, stop: &mut watch::Receiver<bool>) -> Option<i64> {
    loop {
        if *stop.borrow() {
            return None;
        }
        if let Some(term) = *leading.borrow_and_update() {
            return Some(term);
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { return None },
            _ = stop.changed() => {}
        }
    }
}

/// Runs a task only while this process leads: `start(stop)` is spawned on becoming leader,
/// aborted at once when leadership is lost (it must not go on sending), and stopped
/// gracefully (its `stop` turns true, then it is awaited) when `stop` does.
pub(super) fn leader_only<F, Fut>(
    mut leading: watch::Receiver<Option<i64>>,
    mut stop: watch::Receiver<bool>,
    start: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(term) = until_leading(&mut leading, &mut stop).await {
            let (task_stop_tx, task_stop) = watch::channel(false);
            let mut task = tokio::spawn(start(task_stop));
            loop {
                tokio::select! {
                    _ = &mut task => break,
                    changed = leading.changed() => {
                        if changed.is_err() {
                            // The lease task ended: the daemon is stopping.
                            let _ = task_stop_tx.send(true);
                            let _ = (&mut task).await;
                            return;
                        }
                        if *leading.borrow_and_update() != Some(term) {
                            task.abort();
                            let _ = (&mut task).await;
                            break;
                        }
                    }
                    _ = stop.changed() => {
                        let _ = task_stop_tx.send(true);
                        let _ = (&mut task).await;
                        return;
                    }
                }
            }
        }
    })
}

/// The lease task: see the module docs.
pub(super) struct LeaseTask {
    pub(super) store: Store,
    pub(super) fence: Arc<Fence>,
    pub(super) timing: Timing,
    pub(super) live: Arc<Live>,
    /// The term while this process leads, `None` while it follows.
    pub(super) leading: watch::Sender<Option<i64>>,
}

impl LeaseTask {
    /// The attempt of this round: keep our name, then take or renew the lease. Bounded by
    /// `within`, so a database that hangs counts as failed.
    async fn attempt(&self, role: Role, within: Duration) -> Attempt {
        let (name, ttl_ms) = (self.fence.instance(), self.timing.ttl_ms());
        let work = async {
            if !self.store.claim_instance(name, self.fence.token(), ttl_ms).await? {
                tracing::error!(instance = %name, "Another running mxwarden uses this instance name on this store; not leading. Give each instance its own `instance:`.");
                return Ok(Attempt::Refused);
            }
            Ok::<_, crate::store::StoreError>(match role {
                Role::Leading { term, .. } => {
                    if self.store.renew_lease(name, term, ttl_ms).await? {
                        Attempt::Holds(term)
                    } else {
                        Attempt::Refused
                    }
                }
                Role::Following => {
                    self.store.acquire_lease(name, ttl_ms).await?.map_or(Attempt::Refused, Attempt::Holds)
                }
            })
        };
        match tokio::time::timeout(within, work).await {
            Ok(Ok(attempt)) => attempt,
            Ok(Err(e)) => {
                tracing::warn!(instance = %name, error = %e, "The leadership lease could not be read or renewed.");
                Attempt::Failed { others_blocked: self.store.dialect() == crate::store::Dialect::Sqlite }
            }
            Err(_) => {
                tracing::warn!(instance = %name, "The database did not answer the leadership lease in time.");
                Attempt::Failed { others_blocked: false }
            }
        }
    }

    /// Acts on a change: the fence first (so nothing decides under a lost term any more),
    /// then the tasks that follow `leading`, then the log.
    fn apply(&self, role: Role, change: Option<Change>) {
        match role {
            Role::Leading { term, until } => self.fence.hold(term, until),
            Role::Following => self.fence.drop_term(),
        }
        let Some(change) = change else { return };
        let name = self.fence.instance();
        match change {
            Change::Became(term) => {
                self.leading.send_replace(Some(term));
                tracing::info!(instance = %name, term, "Became leader (term {term}).");
            }
            Change::Lost { term, why } => {
                self.leading.send_replace(match role {
                    Role::Leading { term, .. } => Some(term),
                    Role::Following => None,
                });
                tracing::warn!(instance = %name, term, why, "Lost leadership.");
            }
        }
    }

    /// Reads who leads for the status page and `/metrics`.
    async fn show(&self) {
        let view = match self.store.lease().await {
            Ok(lease) if lease.valid && !lease.holder.is_empty() => Some(LeaderView {
                this_instance: lease.holder == self.fence.instance() && self.fence.term() == Some(lease.term),
                instance: lease.holder,
                term: lease.term,
            }),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "The leadership lease could not be read.");
                None
            }
        };
        let before = self.live.leader();
        if let Some(v) = view.as_ref().filter(|v| !v.this_instance)
            && before.as_ref().is_none_or(|b| (b.instance.as_str(), b.term) != (v.instance.as_str(), v.term))
        {
            tracing::info!(instance = %self.fence.instance(), leader = %v.instance, term = v.term, "Following: {} leads (term {}).", v.instance, v.term);
        }
        self.live.set_leader(view);
    }

    /// Runs until `stop` turns true. Does not release the lease: a reload keeps it, and the
    /// supervisor releases it when the process stops.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        // A reload carries the belief over.
        let mut role = match self.fence.held() {
            Some((term, until)) if Instant::now() < until => Role::Leading { term, until },
            _ => Role::Following,
        };
        self.leading.send_replace(match role {
            Role::Leading { term, .. } => Some(term),
            Role::Following => None,
        });
        loop {
            if super::failpoint::deaf() {
                // Test-only: deaf to the database, and sure it still leads.
                if let Role::Leading { term, .. } = role {
                    self.fence.hold(term, Instant::now() + Duration::from_secs(3600));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = stop.changed() => return,
                }
            }
            let asked = Instant::now();
            let within = match role {
                Role::Leading { until, .. } => until.saturating_duration_since(asked),
                Role::Following => self.timing.every(),
            };
            let attempt = self.attempt(role, within).await;
            let (next, change, wait) = step(role, attempt, asked, self.timing);
            role = next;
            self.apply(role, change);
            self.show().await;
            let mut wake = asked + wait;
            if let Role::Leading { until, .. } = role {
                wake = wake.min(until);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = stop.changed() => return,
            }
            if super::failpoint::deaf() {
                continue;
            }
            let (next, change) = expire(role, Instant::now());
            role = next;
            self.apply(role, change);
        }
    }
}

/// Waits until this process may use its instance name on the store: at once, unless another
/// process used it within the lease's TTL (a previous run killed a moment ago, or a second
/// instance configured with the same name). Gives up after the TTL and a round: the name is
/// then in use by a running process.
pub(super) async fn claim_name(store: &Store, fence: &Fence, timing: Timing) -> Result<(), String> {
    let give_up = Instant::now() + timing.ttl + timing.every();
    let mut told = false;
    loop {
        match store.claim_instance(fence.instance(), fence.token(), timing.ttl_ms()).await {
            Ok(true) => return Ok(()),
            Ok(false) if Instant::now() >= give_up => {
                return Err(format!(
                    "another mxwarden process named `{}` is running on this store; give each instance its own name with `instance:`",
                    fence.instance()
                ));
            }
            Ok(false) if previous_is_dead(store, fence).await => {
                store.take_instance(fence.instance(), fence.token()).await.map_err(|e| e.in_words())?;
                tracing::info!(instance = %fence.instance(), "The previous process of this instance is gone; taking over its name.");
                return Ok(());
            }
            Ok(false) => {
                if !told {
                    tracing::warn!(instance = %fence.instance(), "Another process used this instance name a moment ago; waiting for it to go quiet.");
                    told = true;
                }
            }
            // A store that refuses writes (a full disk) is no reason not to monitor: the lease
            // task keeps trying, and the store's failure is paged.
            Err(e) => {
                tracing::error!(instance = %fence.instance(), error = %e.in_words(), "The instance name could not be registered; going on, the lease task retries.");
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether the process that last used this instance name ran on this host and is gone (a
/// restart after `kill -9`): its name can be taken at once.
async fn previous_is_dead(store: &Store, fence: &Fence) -> bool {
    match store.instance_token(fence.instance()).await {
        Ok(Some(token)) => {
            let owner = token.split('#').next().unwrap_or_default();
            token != fence.token() && !crate::update::run::owner_alive(owner)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_state_machine() {
        let timing = Timing { ttl: Duration::from_secs(15) };
        let t0 = Instant::now();
        let lead = |term| Role::Leading { term, until: t0 + Duration::from_secs(12) };
        let cases = [
            (
                Role::Following,
                Attempt::Holds(4),
                lead(4),
                Some(Change::Became(4)),
                5,
                "a follower that takes the lease leads",
            ),
            (lead(4), Attempt::Holds(4), lead(4), None, 5, "a renewal extends the belief, nothing to tell"),
            (
                lead(4),
                Attempt::Refused,
                Role::Following,
                Some(Change::Lost { term: 4, why: "the lease is no longer ours" }),
                5,
                "a refused renewal steps down at once",
            ),
            (
                lead(4),
                Attempt::Failed { others_blocked: false },
                lead(4),
                None,
                1,
                "a failed renewal is retried within a second, the belief not extended",
            ),
            (
                Role::Leading { term: 4, until: t0 },
                Attempt::Failed { others_blocked: true },
                lead(4),
                None,
                1,
                "a shared SQLite file that fails for all: the belief is kept",
            ),
            (Role::Following, Attempt::Refused, Role::Following, None, 5, "someone else leads: try again in a third"),
            (
                Role::Following,
                Attempt::Failed { others_blocked: false },
                Role::Following,
                None,
                5,
                "no database: keep following",
            ),
            (Role::Following, Attempt::Failed { others_blocked: true }, Role::Following, None, 5, "nor a full disk"),
            (
                lead(4),
                Attempt::Holds(5),
                lead(5),
                Some(Change::Lost { term: 4, why: "the lease's term changed" }),
                5,
                "a new term is never carried over silently",
            ),
        ];
        for (role, attempt, want, change, wait_s, why) in cases {
            let (got, got_change, wait) = step(role, attempt, t0, timing);
            assert_eq!((got, got_change, wait), (want, change, Duration::from_secs(wait_s)), "{why}");
        }
    }

    #[test]
    fn a_belief_ends_before_the_database_lets_anyone_else_take_the_lease() {
        let timing = Timing { ttl: Duration::from_secs(15) };
        let asked = Instant::now();
        let (role, _, _) = step(Role::Following, Attempt::Holds(1), asked, timing);
        let Role::Leading { until, .. } = role else { panic!("leads") };
        // The database's expiry is at least `ttl` after `asked` (the statement ran later).
        assert!(until + Duration::from_secs(3) <= asked + timing.ttl, "three seconds of margin");
        assert_eq!(expire(role, until - Duration::from_millis(1)), (role, None), "still believed");
        let (after, change) = expire(role, until);
        assert_eq!(after, Role::Following);
        assert!(matches!(change, Some(Change::Lost { term: 1, .. })), "stepping down is told");
        assert_eq!(expire(Role::Following, until), (Role::Following, None));
    }

    #[tokio::test]
    async fn a_leader_only_task_runs_while_leading_is_aborted_on_loss_and_stopped_gracefully() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (leading_tx, leading) = watch::channel(None);
        let (stop_tx, stop) = watch::channel(false);
        let started = Arc::new(AtomicUsize::new(0));
        let graceful = Arc::new(AtomicUsize::new(0));
        let (s, g) = (started.clone(), graceful.clone());
        let runner = leader_only(leading, stop, move |mut stop| {
            let (s, g) = (s.clone(), g.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                let _ = stop.changed().await;
                g.fetch_add(1, Ordering::SeqCst);
            }
        });
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), 0, "not started while following");
        leading_tx.send_replace(Some(1));
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), 1, "started on becoming leader");
        leading_tx.send_replace(None);
        settle().await;
        assert_eq!(graceful.load(Ordering::SeqCst), 0, "aborted on losing leadership, not asked to finish");
        leading_tx.send_replace(Some(2));
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), 2, "started again for the new term");
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), runner).await.unwrap().unwrap();
        assert_eq!(graceful.load(Ordering::SeqCst), 1, "a stop lets the task finish");
    }

    #[test]
    fn renewals_come_three_times_per_lease_and_retries_are_quick() {
        let t = Timing { ttl: Duration::from_secs(15) };
        assert_eq!(t.every(), Duration::from_secs(5));
        assert_eq!(t.retry(), Duration::from_secs(1));
        let short = Timing { ttl: Duration::from_secs(3) };
        assert_eq!(short.every(), Duration::from_secs(1));
        assert!(short.retry() <= short.every());
    }
}
