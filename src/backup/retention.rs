//! Grandfather-father-son retention, pure: given the runs and the policy, which runs stay and
//! why. Only complete runs (full, every item stored) count. Like restic's `--keep-daily`,
//! `daily: 7` keeps the newest run of each of the last 7 *days that have a run* (a week
//! without backups does not empty the set), and the same for ISO weeks and months; the
//! newest complete run always stays. Failed and `--db` runs stay while they are newer than
//! the newest complete run (they are the latest evidence), and go after. Calendar days are
//! those of the given time zone.

use super::Retention;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::collections::BTreeSet;

/// A run as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunFacts {
    /// The run id.
    pub id: String,
    /// When it started.
    pub at: Timestamp,
    /// Full and every item stored.
    pub complete: bool,
}

/// Why a run stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Keep {
    /// The newest complete run.
    Newest,
    /// Newest of its day.
    Daily,
    /// Newest of its ISO week.
    Weekly,
    /// Newest of its month.
    Monthly,
    /// A failed or partial run newer than the newest complete one.
    Recent,
}

/// The decision for one run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Decision {
    /// The run id.
    pub id: String,
    /// Why it stays; empty: it goes.
    pub keep: Vec<Keep>,
}

impl Decision {
    /// It stays.
    #[cfg(test)]
    fn kept(&self) -> bool {
        !self.keep.is_empty()
    }
}

/// Decides every run, in the order given.
pub(crate) fn decide(runs: &[RunFacts], policy: Retention, tz: &TimeZone) -> Vec<Decision> {
    let mut complete: Vec<&RunFacts> = runs.iter().filter(|r| r.complete).collect();
    complete.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id))); // newest first
    let mut keep: std::collections::BTreeMap<&str, BTreeSet<Keep>> = Default::default();
    if let Some(newest) = complete.first() {
        keep.entry(newest.id.as_str()).or_default().insert(Keep::Newest);
    }
    let buckets: [(Keep, u32, fn(&jiff::Zoned) -> (i16, i16)); 3] = [
        (Keep::Daily, policy.daily, |z| (z.year(), z.day_of_year())),
        (Keep::Weekly, policy.weekly, |z| {
            let w = z.date().iso_week_date();
            (w.year(), i16::from(w.week()))
        }),
        (Keep::Monthly, policy.monthly, |z| (z.year(), i16::from(z.month()))),
    ];
    for (why, count, bucket_of) in buckets {
        let mut seen = BTreeSet::new();
        for run in &complete {
            if seen.len() as u32 >= count {
                break;
            }
            if seen.insert(bucket_of(&run.at.to_zoned(tz.clone()))) {
                keep.entry(run.id.as_str()).or_default().insert(why);
            }
        }
    }
    let newest_complete = complete.first().map(|r| r.at);
    runs.iter()
        .map(|r| {
            let mut reasons: Vec<Keep> =
                keep.get(r.id.as_str()).map(|s| s.iter().copied().collect()).unwrap_or_default();
            if !r.complete && newest_complete.is_none_or(|n| r.at > n) {
                reasons.push(Keep::Recent);
            }
            Decision { id: r.id.clone(), keep: reasons }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(at: &str, complete: bool) -> RunFacts {
        let at: Timestamp = at.parse().unwrap();
        RunFacts { id: at.strftime("%Y%m%dT%H%M%SZ").to_string(), at, complete }
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        decisions.iter().filter(|d| d.kept()).map(|d| d.id.clone()).collect()
    }

    /// A nightly run at 02:00 UTC for a year, plus an extra run at 14:00 on some days.
    fn year() -> Vec<RunFacts> {
        let start: Timestamp = "2026-01-01T02:00:00Z".parse().unwrap();
        let mut runs = Vec::new();
        for day in 0..365 {
            let at = start + jiff::SignedDuration::from_hours(24 * day);
            runs.push(RunFacts { id: at.strftime("%Y%m%dT%H%M%SZ").to_string(), at, complete: true });
            if day % 10 == 0 {
                let extra = at + jiff::SignedDuration::from_hours(12);
                runs.push(RunFacts { id: extra.strftime("%Y%m%dT%H%M%SZ").to_string(), at: extra, complete: true });
            }
        }
        runs
    }

    #[test]
    fn a_year_of_nightly_runs_keeps_exactly_the_gfs_set() {
        let runs = year();
        let d = decide(&runs, Retention { daily: 7, weekly: 4, monthly: 6 }, &TimeZone::UTC);
        let mut want: Vec<&str> = vec![
            // daily: the newest run of the last 7 days (Dec 25–31; the 27th also had a 14:00 run)
            "20261231T020000Z",
            "20261230T020000Z",
            "20261229T020000Z",
            "20261228T020000Z",
            "20261227T140000Z",
            "20261226T020000Z",
            "20261225T020000Z",
            // weekly: newest of ISO weeks 53 (Dec 28–31 → the 31st, already daily), 52 (Sun Dec 27,
            // 14:00), 51 (Sun Dec 20), 50 (Sun Dec 13)
            "20261220T020000Z",
            "20261213T020000Z",
            // monthly: newest of Dec (31st), Nov, Oct, Sep, Aug, Jul
            "20261130T020000Z",
            "20261031T020000Z",
            "20260930T020000Z",
            "20260831T020000Z",
            "20260731T020000Z",
        ];
        want.sort();
        assert_eq!(kept(&d), want);
        let newest = d.iter().find(|x| x.id == "20261231T020000Z").unwrap();
        assert_eq!(newest.keep, vec![Keep::Newest, Keep::Daily, Keep::Weekly, Keep::Monthly]);
    }

    #[test]
    fn gaps_failures_and_time_zones() {
        let cases: &[(&[(&str, bool)], Retention, &[&str], &str)] = &[
            (
                &[("2026-03-01T02:00:00Z", true), ("2026-03-10T02:00:00Z", true), ("2026-03-20T02:00:00Z", true)],
                Retention { daily: 2, weekly: 0, monthly: 0 },
                &["20260310T020000Z", "20260320T020000Z"],
                "days with a run count, not calendar days: a gap does not empty the set",
            ),
            (
                &[("2026-03-01T02:00:00Z", true), ("2026-03-02T02:00:00Z", false), ("2026-03-03T02:00:00Z", false)],
                Retention { daily: 1, weekly: 0, monthly: 0 },
                &["20260301T020000Z", "20260302T020000Z", "20260303T020000Z"],
                "failed runs after the newest good one stay; the good one stays whatever the policy",
            ),
            (
                &[("2026-03-01T02:00:00Z", false), ("2026-03-02T02:00:00Z", true)],
                Retention { daily: 7, weekly: 0, monthly: 0 },
                &["20260302T020000Z"],
                "a failed run older than a good one goes",
            ),
            (&[], Retention { daily: 7, weekly: 4, monthly: 6 }, &[], "nothing to decide"),
        ];
        for (runs, policy, want, why) in cases {
            let runs: Vec<RunFacts> = runs.iter().map(|(at, ok)| run(at, *ok)).collect();
            assert_eq!(kept(&decide(&runs, *policy, &TimeZone::UTC)), *want, "{why}");
        }
        // 23:30 UTC on the 1st is the 2nd in Berlin: two runs, one Berlin day.
        let runs = vec![run("2026-03-01T23:30:00Z", true), run("2026-03-02T10:00:00Z", true)];
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let policy = Retention { daily: 2, weekly: 0, monthly: 0 };
        assert_eq!(kept(&decide(&runs, policy, &berlin)), ["20260302T100000Z"], "one Berlin day");
        assert_eq!(kept(&decide(&runs, policy, &TimeZone::UTC)).len(), 2, "two UTC days");
    }
}
