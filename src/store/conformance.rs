//! The store's behaviour, one set of checks for every dialect: each check takes a freshly
//! migrated, empty [`Store`] and panics on the first difference from what the store promises.
//! The unit tests run them on SQLite; `tests/it/store_dialects.rs` runs every one of them on
//! SQLite and on a real PostgreSQL, so the two dialects cannot drift apart.
//!
//! Always compiled (hidden from the docs), so that a plain `cargo test` builds the
//! integration tests too; nothing in the binary calls it, so the linker leaves it out.

use super::control;
use super::maintenance::{self, Ended, Held, HoldReason};
use super::updates::{self, Begun, NewUpdate, StepEnd};
use super::{Decision, History, NewDelivery, Store, StoredAlert};
use crate::alert::AlertState;
use crate::history::{Resolution, Result as CheckResult, State};
use crate::notify::{Kind, Notification};
use std::future::Future;
use std::pin::Pin;

/// A check: a name and its body, which takes an empty store.
pub type Check = (&'static str, fn(Store) -> Pin<Box<dyn Future<Output = ()> + Send>>);

/// Every check.
pub const ALL: &[Check] = &[
    ("alerts_round_trip_with_exact_values", |s| Box::pin(alerts_round_trip_with_exact_values(s))),
    ("the_outbox_sends_in_order_and_counts", |s| Box::pin(the_outbox_sends_in_order_and_counts(s))),
    ("threads_meta_and_digests", |s| Box::pin(threads_meta_and_digests(s))),
    ("held_pages_are_kept_and_released", |s| Box::pin(held_pages_are_kept_and_released(s))),
    ("history_records_sums_and_prunes", |s| Box::pin(history_records_sums_and_prunes(s))),
    ("a_command_is_claimed_once_finished_and_audited_newest_first", |s| {
        Box::pin(a_command_is_claimed_once_finished_and_audited_newest_first(s))
    }),
    ("acks_match_one_firing_only", |s| Box::pin(acks_match_one_firing_only(s))),
    ("windows_start_end_and_remind_once", |s| Box::pin(windows_start_end_and_remind_once(s))),
    ("a_follow_up_is_pending_with_its_page_and_queued_in_one_step", |s| {
        Box::pin(a_follow_up_is_pending_with_its_page_and_queued_in_one_step(s))
    }),
    ("one_running_update_per_service_and_steps_in_order", |s| {
        Box::pin(one_running_update_per_service_and_steps_in_order(s))
    }),
    ("the_lease_changes_hands_with_a_new_term", |s| {
        Box::pin(super::leader::checks::the_lease_changes_hands_with_a_new_term(s))
    }),
    ("a_stale_term_can_neither_decide_nor_claim", |s| {
        Box::pin(super::leader::checks::a_stale_term_can_neither_decide_nor_claim(s))
    }),
    ("an_instance_name_is_one_running_process", |s| {
        Box::pin(super::leader::checks::an_instance_name_is_one_running_process(s))
    }),
];

fn note(receiver: &str, incident: &str, kind: Kind, fallback_of: Option<i64>) -> NewDelivery {
    NewDelivery {
        receiver: receiver.into(),
        tier: "critical".into(),
        notification: Notification {
            kind,
            incident: incident.into(),
            title: format!("[{kind:?}] {incident} — «ünïcode» 'quotes'"),
            text: String::new(),
            html: String::new(),
            alerts: Vec::new(),
            created_at: 1_000,
        },
        fallback_of,
    }
}

/// Alert state survives a restart exactly: timestamps past 2^31, floats bit for bit
/// (PostgreSQL's `REAL` would be float4), labels and annotations as written.
pub async fn alerts_round_trip_with_exact_values(store: Store) {
    let now = 1_795_000_000_123_i64;
    let labels = |service: &str| [("service".to_string(), service.to_string())].into_iter().collect();
    let firing = StoredAlert {
        alert: "SynapseDown".into(),
        labels: labels("synapse"),
        state: AlertState::Firing { active_at: now - 60_000, fired_at: now, false_since: None, notified_at: now },
        value: 0.1 + 0.2,
        annotations: [("summary".to_string(), "down «now»".to_string())].into_iter().collect(),
    };
    let pending = StoredAlert {
        alert: "DiskFilling".into(),
        labels: labels("postgres"),
        state: AlertState::Pending { active_at: now },
        value: 1e300,
        annotations: Default::default(),
    };
    let gone = StoredAlert { state: AlertState::Inactive, ..pending.clone() };
    store
        .commit(&[Decision { alerts: vec![firing.clone(), pending.clone()], ..Decision::default() }], now)
        .await
        .unwrap();
    let mut got = store.alerts().await.unwrap();
    got.sort_by(|a, b| a.alert.cmp(&b.alert));
    assert_eq!(got, vec![pending.clone(), firing.clone()]);
    assert_eq!(got[1].value.to_bits(), (0.1f64 + 0.2).to_bits(), "a double, not a float4");
    // An upsert: the same alert and labels, now inactive, is gone from the restore.
    store.commit(&[Decision { alerts: vec![gone], ..Decision::default() }], now + 1).await.unwrap();
    assert_eq!(store.alerts().await.unwrap(), vec![firing]);
}

/// Oldest first, one per (receiver, incident) so a resolve never overtakes its firing; a
/// failed attempt counts, a dead row is a dead letter; the figures per receiver add up.
pub async fn the_outbox_sends_in_order_and_counts(store: Store) {
    let t = 1_795_000_000_000_i64;
    store.enqueue(&[note("room", "a", Kind::Firing, None), note("room", "a", Kind::Resolved, None)], t).await.unwrap();
    store.enqueue(&[note("mail", "b", Kind::Firing, None)], t + 1).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(t));
    let due = store.due(t + 1).await.unwrap();
    assert_eq!(
        due.iter().map(|d| (d.receiver.as_str(), d.notification.kind)).collect::<Vec<_>>(),
        [("room", Kind::Firing), ("mail", Kind::Firing)]
    );
    assert!(due[0].id < due[1].id && due[0].notification.title.contains("«ünïcode» 'quotes'"));
    let (firing, mail) = (due[0].id, due[1].id);
    store.mark_failed(firing, "HTTP 502", t + 10_000, false).await.unwrap();
    assert!(store.due(t + 5_000).await.unwrap().iter().all(|d| d.receiver != "room"), "retry not due yet");
    store.mark_sent(firing, t + 10_000).await.unwrap();
    let due = store.due(t + 10_000).await.unwrap();
    assert_eq!(due.iter().find(|d| d.receiver == "room").map(|d| d.notification.kind), Some(Kind::Resolved));
    store.mark_failed(mail, "550 no such user", t, true).await.unwrap();
    let dead = store.outbox(true, 10).await.unwrap();
    assert_eq!((dead.len(), dead[0].id, dead[0].last_error.as_deref()), (1, mail, Some("550 no such user")));
    let stats = store.delivery_stats().await.unwrap();
    assert_eq!(
        stats.iter().map(|s| (s.receiver.as_str(), s.pending, s.dead, s.failed_attempts)).collect::<Vec<_>>(),
        [("mail", 0, 1, 1), ("room", 1, 0, 1)],
        "sorted bytewise; room: one failed attempt before it was sent, its resolve pending"
    );
    let sent = store.outbox(false, 10).await.unwrap().into_iter().find(|d| d.id == firing).unwrap();
    assert_eq!((sent.status.as_str(), sent.attempts, sent.sent_at), ("sent", 2, Some(t + 10_000)));
    // Fallback rows are queued once, however often it is asked.
    store.queue_fallback(mail, &[note("room", "b", Kind::Firing, Some(mail))], t).await.unwrap();
    store.queue_fallback(mail, &[note("room", "b", Kind::Firing, Some(mail))], t).await.unwrap();
    let copies = store.outbox(false, 10).await.unwrap().into_iter().filter(|d| d.fallback_of == Some(mail)).count();
    assert_eq!(copies, 1);
}

/// The first thread root wins; settings are upserted; digest items come back by tier and time.
pub async fn threads_meta_and_digests(store: Store) {
    assert_eq!(store.thread_root("room", "a").await.unwrap(), None);
    store.set_thread_root("room", "a", "$first").await.unwrap();
    store.set_thread_root("room", "a", "$second").await.unwrap();
    assert_eq!(store.thread_root("room", "a").await.unwrap().as_deref(), Some("$first"));
    store.set_meta("k", "1").await.unwrap();
    store.set_meta("k", "2").await.unwrap();
    assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("2"));
    assert_eq!(store.meta("missing").await.unwrap(), None);
    let item = |incident: &str| ("warning".to_string(), note("room", incident, Kind::Digest, None).notification);
    let decision =
        Decision { digest: vec![item("x"), item("y")], meta: vec![("k".into(), "3".into())], ..Decision::default() };
    store.commit(&[decision], 5_000).await.unwrap();
    store.commit(&[Decision { digest: vec![item("z")], ..Decision::default() }], 6_000).await.unwrap();
    let got = store.digest_items("warning", 4_999, 5_000).await.unwrap();
    assert_eq!(got.iter().map(|n| n.incident.as_str()).collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(store.digest_items("warning", 5_000, 6_000).await.unwrap().len(), 1);
    assert!(store.digest_items("critical", 0, 10_000).await.unwrap().is_empty());
    assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("3"), "written with the decision");
}

/// Held pages: one per (receiver, incident), the newest reason wins, a release forgets it.
pub async fn held_pages_are_kept_and_released(store: Store) {
    let held = |incident: &str, reason: HoldReason, at: i64| Held {
        delivery: note("room", incident, Kind::Firing, None),
        service: "synapse".into(),
        reason,
        held_at: at,
    };
    let first = Decision {
        hold: vec![held("a", HoldReason::Maintenance, 1), held("b", HoldReason::Maintenance, 2)],
        ..Decision::default()
    };
    store.commit(&[first], 10).await.unwrap();
    let again = Decision { hold: vec![held("a", HoldReason::Dependency("postgres".into()), 3)], ..Decision::default() };
    store.commit(&[again], 11).await.unwrap();
    let got = maintenance::held(&store).await.unwrap();
    assert_eq!(
        got.iter().map(|h| (h.delivery.notification.incident.as_str(), h.reason.clone())).collect::<Vec<_>>(),
        [("b", HoldReason::Maintenance), ("a", HoldReason::Dependency("postgres".into()))]
    );
    let release = Decision { release: vec![("room".into(), "b".into())], ..Decision::default() };
    store.commit(&[release], 12).await.unwrap();
    assert_eq!(maintenance::held(&store).await.unwrap().len(), 1);
}

/// A flush larger than one statement, a duplicate (check, time) in it (the last wins),
/// rollups summed across flushes with their maximum latency, gaps, raw pages, and retention.
pub async fn history_records_sums_and_prunes(store: Store) {
    let history = History::new(store.clone());
    let minute = 60_000;
    let t0 = 1_795_000_000_000_i64 - 1_795_000_000_000_i64 % (24 * 60 * minute);
    let r = |at_ms, state, latency_ms| CheckResult { at_ms, state, latency_ms };
    // 1,200 results of 3 checks (more than two statements' worth), one result per second.
    let mut flush: Vec<(String, CheckResult)> =
        (0..1_200).map(|i| (format!("check-{}", i % 3), r(t0 + i * 1_000, State::Up, 10 + i % 7))).collect();
    flush.push(("check-0".into(), r(t0, State::Down, 99))); // the same (check, time) again: it wins
    history.record(&flush, t0 + 1_200_000).await.unwrap();
    let raw = history.raw("check-0", t0, t0 + 3_000).await.unwrap();
    assert_eq!(raw, vec![r(t0, State::Down, 99)]);
    // A second flush into the same minute adds up, and raises the maximum.
    history.record(&[("check-0".into(), r(t0 + 1_500, State::Down, 5_000))], t0 + 1_300_000).await.unwrap();
    let minutes = history.buckets("check-0", Resolution::Minute, t0, t0 + minute).await.unwrap();
    assert_eq!(minutes.len(), 1);
    // Minute 0 of check-0: results at seconds 0, 3, …, 57 (20), the first now down, plus one.
    assert_eq!((minutes[0].up, minutes[0].down, minutes[0].latency_max_ms), (19, 2, 5_000), "{:?}", minutes[0]);
    let hours = history.buckets("check-0", Resolution::Hour, t0, t0 + 60 * minute).await.unwrap();
    assert_eq!(hours[0].up + hours[0].down, 401);
    let (page, more) = history.raw_page("check-1", t0, t0 + 3_600_000, 100).await.unwrap();
    assert_eq!((page.len(), more, page[0].at_ms), (100, true, t0 + 1_000));
    assert!(history.raw("no-such-check", t0, t0 + minute).await.unwrap().is_empty());
    // A gap: the heartbeat stopped for ten minutes.
    history.heartbeat(t0 + 1_300_000).await.unwrap();
    let gap = history.start(t0 + 1_900_000, 30_000).await.unwrap();
    assert_eq!(gap, Some((t0 + 1_300_000, t0 + 1_900_000)));
    assert_eq!(history.gaps(t0, t0 + 3_600_000).await.unwrap(), vec![(t0 + 1_300_000, t0 + 1_900_000)]);
    assert_eq!(history.start(t0 + 1_900_000, 30_000).await.unwrap(), None, "no second gap");
    // Retention: raw results older than theirs go, rollups stay.
    history.prune(t0 + crate::history::RAW_RETENTION_MS + 3_600_000).await.unwrap();
    assert!(history.raw("check-0", t0, t0 + 3_600_000).await.unwrap().is_empty());
    let days = history.buckets("check-0", Resolution::Day, t0, t0 + 1).await.unwrap();
    assert_eq!(days[0].up + days[0].down, 401, "the day's rollup outlives the raw rows");
}

/// Commands are claimed once, finished, and audited newest first; `/sync` tokens per bot.
pub async fn a_command_is_claimed_once_finished_and_audited_newest_first(store: Store) {
    assert!(control::claim(&store, "$a", 1_000, "@admin:x", "!r:x", "!status").await.unwrap());
    assert!(!control::claim(&store, "$a", 2_000, "@admin:x", "!r:x", "!status").await.unwrap(), "never twice");
    assert!(control::claim(&store, "$b", 3_000, "@admin:x", "!r:x", "!silence synapse 1h").await.unwrap());
    // Same millisecond: insertion order breaks the tie.
    assert!(control::claim(&store, "$c", 3_000, "@admin:x", "!r:x", "!ack").await.unwrap());
    control::finish(&store, "$b", "window 1 opened").await.unwrap();
    let rows = control::audit(&store, 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["$c", "$b", "$a"]);
    assert_eq!((rows[1].done, rows[1].outcome.as_str()), (true, "window 1 opened"));
    assert_eq!((rows[2].done, rows[2].outcome.as_str()), (false, ""));
    assert_eq!(control::since(&store, "@bot:x").await.unwrap(), None);
    control::set_since(&store, "@bot:x", "s72_1").await.unwrap();
    assert_eq!(control::since(&store, "@bot:x").await.unwrap().as_deref(), Some("s72_1"));
    assert_eq!(control::since(&store, "@other:x").await.unwrap(), None, "per bot account");
}

/// An acknowledgement is for one firing of an incident, and recorded once.
pub async fn acks_match_one_firing_only(store: Store) {
    control::ack(&store, "alertname=X", 5, "@admin:x", 10).await.unwrap();
    control::ack(&store, "alertname=X", 5, "@admin:x", 11).await.unwrap();
    let asked = vec![("alertname=X".to_string(), 5), ("alertname=X".to_string(), 6), ("alertname=Y".to_string(), 5)];
    let hit = control::acked(&store, &asked).await.unwrap();
    assert_eq!(hit.len(), 1, "the same incident firing again later is not acknowledged");
    assert!(hit.contains(&("alertname=X".to_string(), 5)));
}

/// Ad hoc windows open, end (once) and remind once.
pub async fn windows_start_end_and_remind_once(store: Store) {
    let w = maintenance::start(&store, &["synapse".into()], 1_000, 61_000, "upgrade", 1_000).await.unwrap();
    let other = maintenance::start(&store, &["mas".into()], 1_000, 61_000, "other", 1_000).await.unwrap();
    assert!(other.id > w.id, "ids grow");
    assert_eq!(maintenance::current(&store, 2_000).await.unwrap(), vec![w.clone(), other.clone()]);
    assert!(maintenance::due_reminders(&store, 2_000, 10_000).await.unwrap().is_empty(), "not yet within the lead");
    assert_eq!(maintenance::due_reminders(&store, 51_000, 10_000).await.unwrap(), vec![w.clone(), other.clone()]);
    let decision = Decision { reminded: vec![w.id, other.id], ..Default::default() };
    store.commit(&[decision], 51_000).await.unwrap();
    assert!(maintenance::due_reminders(&store, 52_000, 10_000).await.unwrap().is_empty(), "once marked, never again");
    assert!(matches!(maintenance::end(&store, w.id, 30_000).await.unwrap(), Ended::Now(x) if x.ends_at == 30_000));
    assert!(
        matches!(maintenance::end(&store, w.id, 40_000).await.unwrap(), Ended::AlreadyOver(x) if x.ends_at == 30_000)
    );
    assert_eq!(maintenance::end(&store, 9_999, 40_000).await.unwrap(), Ended::Unknown);
    assert_eq!(maintenance::current(&store, 30_000).await.unwrap(), vec![other]);
}

/// A follow-up is pending with its page and queued (with fallback copies) in one step.
pub async fn a_follow_up_is_pending_with_its_page_and_queued_in_one_step(store: Store) {
    let key = format!("{}1000:inc", super::followup::PREFIX);
    let page = Decision {
        deliveries: vec![note("room", "inc", Kind::Firing, None)],
        meta: vec![
            (key.clone(), "{}".into()),
            ("digest:warning:last".into(), "5".into()),
            ("followup;x".into(), "no".into()),
        ],
        ..Decision::default()
    };
    store.commit(&[page], 1_000).await.unwrap();
    assert_eq!(store.pending_followups().await.unwrap(), [(key.clone(), "{}".to_string())]);
    let first = store.due(1_000).await.unwrap()[0].id;
    store.queue_fallback(first, &[note("mail", "inc", Kind::Firing, Some(first))], 1_100).await.unwrap();
    assert_eq!(store.fallback_receivers("inc", 1_000).await.unwrap(), ["mail"], "the page fell back");
    assert!(store.fallback_receivers("inc", 2_000).await.unwrap().is_empty(), "not an older incident's");
    store
        .finish_followup(
            &key,
            &[note("room", "inc", Kind::Diagnosis, None)],
            &[note("mail", "inc", Kind::Diagnosis, None)],
            1_200,
        )
        .await
        .unwrap();
    assert!(store.pending_followups().await.unwrap().is_empty(), "queued: no longer pending");
    let rows = store.outbox(false, 10).await.unwrap();
    let diagnosis: Vec<_> = rows.iter().filter(|d| d.notification.kind == Kind::Diagnosis).collect();
    assert_eq!(diagnosis.len(), 2, "{rows:?}");
    let primary = diagnosis.iter().find(|d| d.receiver == "room").unwrap();
    let copy = diagnosis.iter().find(|d| d.receiver == "mail").unwrap();
    assert!(primary.fallback_queued, "a failing room does not copy it to the fallback again");
    assert_eq!(copy.fallback_of, Some(primary.id), "the copy never falls back itself");
}

/// At most one running update per service; steps, facts and hand-overs as recorded.
pub async fn one_running_update_per_service_and_steps_in_order(store: Store) {
    let new = |service: &str| NewUpdate {
        service: service.into(),
        target: "img:v2".into(),
        reason: "monthly".into(),
        options: serde_json::json!({"force": false}),
        owner: "1@host".into(),
        started_at: 1_000,
    };
    let Begun::Started(id) = updates::begin(&store, &new("synapse")).await.unwrap() else { panic!("first begins") };
    let Begun::Busy(busy) = updates::begin(&store, &new("synapse")).await.unwrap() else { panic!("second is refused") };
    assert_eq!(busy.id, id);
    assert!(matches!(updates::begin(&store, &new("mas")).await.unwrap(), Begun::Started(_)), "another service may");
    updates::step_started(&store, id, 1, "preflight", 1_100).await.unwrap();
    let mut facts = serde_json::Map::new();
    facts.insert("previous_version".into(), "1.0".into());
    let end = StepEnd {
        outcome: "ok".into(),
        detail: "healthy".into(),
        facts,
        deliveries: vec![note("room", "u", Kind::Notice, None)],
    };
    updates::step_ended(&store, id, 1, &end, 1_200).await.unwrap();
    assert_eq!(store.outbox(false, 10).await.unwrap().len(), 1, "the step's page is queued with it");
    updates::step_started(&store, id, 2, "announce", 1_300).await.unwrap();
    let got = updates::get(&store, id).await.unwrap().unwrap();
    assert_eq!(got.steps.len(), 2);
    assert_eq!(got.steps[0].outcome.as_deref(), Some("ok"));
    assert_eq!(got.steps[1].ended_at, None, "a step still running has no end");
    assert_eq!(got.facts["previous_version"], "1.0");
    updates::set_fact(&store, id, "deploy_id", "dep-1").await.unwrap();
    let got = updates::get(&store, id).await.unwrap().unwrap();
    assert_eq!((got.facts["deploy_id"].as_str(), got.facts["previous_version"].as_str()), (Some("dep-1"), Some("1.0")));
    assert!(updates::take_over(&store, id, "1@host", "2@host").await.unwrap());
    assert!(!updates::take_over(&store, id, "1@host", "3@host").await.unwrap(), "only the current owner hands over");
    updates::finish(&store, id, "succeeded", 2_000).await.unwrap();
    assert!(
        matches!(updates::begin(&store, &new("synapse")).await.unwrap(), Begun::Started(_)),
        "ended: a new one may"
    );
    assert_eq!(updates::list(&store, false, 10).await.unwrap().len(), 3);
    assert_eq!(updates::list(&store, true, 10).await.unwrap().len(), 2);
    assert!(updates::get(&store, 9_999).await.unwrap().is_none());
}

#[cfg(test)]
mod tests {
    /// Every check on a fresh SQLite store of its own.
    #[tokio::test]
    async fn every_check_holds_on_sqlite() {
        for (name, check) in super::ALL {
            let dir = tempfile::tempdir().unwrap();
            let store = super::Store::open(&dir.path().join("s.db")).await.unwrap();
            eprintln!("{name}");
            check(store).await;
        }
    }
}
