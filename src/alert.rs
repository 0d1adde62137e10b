//! The alert state machine, pure: given an alert's previous state, whether its condition holds
//! now, its policy (`for`, `keep_firing_for`) and the time, return the new state and the
//! transition to announce, if any. No I/O, no clock: the rule engine calls it on every
//! evaluation, routing and the gate turn the transitions into notifications; `next_deadline`
//! tells the evaluator when time alone will change something. Semantics are Prometheus's:
//! pending until the condition has held for `for`, firing until it has been false for
//! `keep_firing_for`; a pending alert that stops holding is dropped without a word.

pub(crate) use crate::model::Millis;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertState {
    /// Condition false (or never seen).
    #[default]
    Inactive,
    /// Condition true since `active_at`, not yet for long enough.
    Pending {
        /// When the condition became true.
        active_at: Millis,
    },
    /// Announced as firing.
    Firing {
        /// When the condition became true.
        active_at: Millis,
        /// When it started firing.
        fired_at: Millis,
        /// When the condition last went false while firing (`keep_firing_for` runs from here).
        false_since: Option<Millis>,
        /// When the last notice (firing or reminder) was due; reminders count from here.
        notified_at: Millis,
    },
}

/// An alert's state by name, as Prometheus names it (`/api/v1/alerts`, the store, the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Condition false.
    Inactive,
    /// Condition true, not yet for long enough.
    Pending,
    /// Announced.
    Firing,
}

impl Phase {
    /// The name: `inactive`, `pending`, `firing`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Pending => "pending",
            Self::Firing => "firing",
        }
    }

    /// The phase of that name.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        [Self::Inactive, Self::Pending, Self::Firing].into_iter().find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AlertState {
    /// Its phase.
    pub(crate) fn phase(&self) -> Phase {
        match self {
            Self::Inactive => Phase::Inactive,
            Self::Pending { .. } => Phase::Pending,
            Self::Firing { .. } => Phase::Firing,
        }
    }

    /// Since when it has been in its phase that people care about: when it started firing,
    /// or when its condition started holding; 0 when inactive.
    pub(crate) fn since(&self) -> Millis {
        match *self {
            Self::Inactive => 0,
            Self::Pending { active_at } => active_at,
            Self::Firing { fired_at, .. } => fired_at,
        }
    }
}

/// How long a condition must hold, and how long firing outlasts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Policy {
    /// `for`: time the condition must hold before firing.
    pub hold_ms: Millis,
    /// `keep_firing_for`: time firing continues after the condition stops holding.
    pub keep_firing_ms: Millis,
    /// `repeat`: how often a still-firing alert is announced again; 0 never.
    pub repeat_ms: Millis,
}

/// What changed, for the notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The condition started holding (not announced; useful for logs and the status page).
    Pending,
    /// The alert fires.
    Fired,
    /// The alert is still firing after `repeat`: remind.
    Reminder,
    /// A firing alert is over.
    Resolved,
}

/// One evaluation step.
pub(crate) fn step(prev: AlertState, active: bool, policy: Policy, now: Millis) -> (AlertState, Option<Transition>) {
    let fire = |active_at| AlertState::Firing { active_at, fired_at: now, false_since: None, notified_at: now };
    match (prev, active) {
        (AlertState::Inactive, false) => (AlertState::Inactive, None),
        (AlertState::Inactive, true) if policy.hold_ms <= 0 => (fire(now), Some(Transition::Fired)),
        (AlertState::Inactive, true) => (AlertState::Pending { active_at: now }, Some(Transition::Pending)),
        (AlertState::Pending { .. }, false) => (AlertState::Inactive, None),
        (AlertState::Pending { active_at }, true) if now - active_at >= policy.hold_ms => {
            (fire(active_at), Some(Transition::Fired))
        }
        (AlertState::Pending { .. }, true) => (prev, None),
        (AlertState::Firing { active_at, fired_at, false_since, notified_at }, active) => {
            let false_since = if active { None } else { Some(false_since.unwrap_or(now)) };
            if let Some(since) = false_since
                && (policy.keep_firing_ms <= 0 || now - since >= policy.keep_firing_ms)
            {
                return (AlertState::Inactive, Some(Transition::Resolved));
            }
            if policy.repeat_ms > 0 && now - notified_at >= policy.repeat_ms {
                let state = AlertState::Firing { active_at, fired_at, false_since, notified_at: now };
                return (state, Some(Transition::Reminder));
            }
            (AlertState::Firing { active_at, fired_at, false_since, notified_at }, None)
        }
    }
}

/// The next moment at which time alone, with the condition unchanged, would make [`step`]
/// announce something: a pending alert's `for` running out, a firing alert's
/// `keep_firing_for` running out, or its next reminder. `None` when nothing is scheduled.
pub(crate) fn next_deadline(state: AlertState, policy: Policy) -> Option<Millis> {
    match state {
        AlertState::Inactive => None,
        AlertState::Pending { active_at } => Some(active_at.saturating_add(policy.hold_ms.max(0))),
        AlertState::Firing { false_since, notified_at, .. } => {
            let end = false_since.map(|since| since.saturating_add(policy.keep_firing_ms.max(0)));
            let remind = (policy.repeat_ms > 0).then(|| notified_at.saturating_add(policy.repeat_ms));
            [end, remind].into_iter().flatten().min()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Millis = 60_000;

    /// Runs a sequence of (minute, active) steps and returns the transitions per step.
    fn run(policy: Policy, steps: &[(i64, bool)]) -> Vec<Option<Transition>> {
        let mut state = AlertState::Inactive;
        steps
            .iter()
            .map(|&(minute, active)| {
                let (next, t) = step(state, active, policy, minute * M);
                state = next;
                t
            })
            .collect()
    }

    #[test]
    fn the_state_machine_follows_prometheus() {
        use Transition::*;
        let hold5 = Policy { hold_ms: 5 * M, ..Policy::default() };
        let instant = Policy::default();
        let keep3 = Policy { keep_firing_ms: 3 * M, ..Policy::default() };
        let repeat10 = Policy { hold_ms: 2 * M, repeat_ms: 10 * M, ..Policy::default() };
        let cases: Vec<(&str, Policy, Vec<(i64, bool)>, Vec<Option<Transition>>)> = vec![
            (
                "no `for`: fires at once and resolves at once",
                instant,
                vec![(0, true), (1, true), (2, false)],
                vec![Some(Fired), None, Some(Resolved)],
            ),
            (
                "pending until held for `for`, then fires",
                hold5,
                vec![(0, true), (4, true), (5, true), (6, true)],
                vec![Some(Pending), None, Some(Fired), None],
            ),
            (
                "a blip shorter than `for` never fires and is dropped silently",
                hold5,
                vec![(0, true), (2, false), (3, true), (7, true), (8, true)],
                vec![Some(Pending), None, Some(Pending), None, Some(Fired)],
            ),
            (
                "keep_firing_for outlasts a flap",
                keep3,
                vec![(0, true), (1, false), (2, true), (3, false), (5, false), (6, false)],
                vec![Some(Fired), None, None, None, None, Some(Resolved)],
            ),
            ("inactive stays quiet", instant, vec![(0, false), (1, false)], vec![None, None]),
            (
                "reminders every `repeat` from the last notice, none after resolving",
                repeat10,
                vec![(0, true), (2, true), (11, true), (12, true), (21, true), (22, true), (23, false), (40, false)],
                vec![Some(Pending), Some(Fired), None, Some(Reminder), None, Some(Reminder), Some(Resolved), None],
            ),
            (
                "keep_firing_for still reminds while it holds the alert up",
                Policy { keep_firing_ms: 30 * M, repeat_ms: 10 * M, ..Policy::default() },
                vec![(0, true), (1, false), (10, false), (31, false)],
                vec![Some(Fired), None, Some(Reminder), Some(Resolved)],
            ),
        ];
        for (why, policy, steps, want) in cases {
            assert_eq!(run(policy, &steps), want, "{why}");
        }
    }

    #[test]
    fn firing_keeps_its_start_time() {
        let p = Policy { hold_ms: 2 * M, ..Policy::default() };
        let (s, _) = step(AlertState::Inactive, true, p, 0);
        let (s, _) = step(s, true, p, 2 * M);
        let (s, _) = step(s, true, p, 9 * M);
        assert_eq!(s, AlertState::Firing { active_at: 0, fired_at: 2 * M, false_since: None, notified_at: 2 * M });
    }

    #[test]
    fn deadlines_are_when_time_alone_would_announce_something() {
        let firing =
            |false_since, notified_at| AlertState::Firing { active_at: 0, fired_at: 0, false_since, notified_at };
        let p = |hold_ms, keep_firing_ms, repeat_ms| Policy { hold_ms, keep_firing_ms, repeat_ms };
        let cases = [
            (AlertState::Inactive, p(5 * M, 0, 0), None, "inactive: nothing scheduled"),
            (AlertState::Pending { active_at: M }, p(5 * M, 0, 0), Some(6 * M), "pending: `for` runs out"),
            (firing(None, 0), p(0, 0, 0), None, "firing, condition holds, no repeat"),
            (firing(None, 2 * M), p(0, 0, 10 * M), Some(12 * M), "the next reminder, from the last notice"),
            (firing(Some(3 * M), 0), p(0, 5 * M, 0), Some(8 * M), "keep_firing_for runs out"),
            (firing(Some(3 * M), 0), p(0, 30 * M, 10 * M), Some(10 * M), "whichever comes first"),
            (AlertState::Pending { active_at: i64::MAX - 1 }, p(i64::MAX, 0, 0), Some(i64::MAX), "saturates"),
        ];
        for (state, policy, want, why) in cases {
            assert_eq!(next_deadline(state, policy), want, "{why}");
        }
    }

    #[test]
    fn phases_have_one_name_each() {
        for phase in [Phase::Inactive, Phase::Pending, Phase::Firing] {
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
        }
        assert_eq!(Phase::parse("FIRING"), None);
    }
}
