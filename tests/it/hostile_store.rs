//! The store on a disk that fills up, for real: a small tmpfs is mounted (these tests run as
//! root; a failed mount fails the test), the store is put on it, and a ballast file fills it
//! until SQLite's writes fail. The store must refuse writes at once and take them again as
//! soon as space is freed — without a restart; a page the dispatcher sent meanwhile must not be
//! sent again because its success could not be recorded; the daemon must keep running, say so on
//! `/healthz` and the status, page `MxwardenStoreFailing` once without the store and resolve
//! it once, and deliver a page it decided while the disk was full after recovery.

use crate::alerting::{Daemon, wait_for};
use crate::cli::config;
use crate::crash_gaps::{Target, count, payloads, web_down_to_hook};
use crate::support::{fakes, services};
use mxwarden::history::{Result as CheckResult, State};
use mxwarden::notify::{AlertInfo, Alerting, Kind, Receiver, Tier, webhook::WebhookReceiver};
use mxwarden::store::{History, NewDelivery, Store};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted on a temporary directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs on {} failed (these tests need root): {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with a ballast file until a write fails for lack of space;
    /// returns the ballast's path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("ballast");
        let mut file = std::fs::File::create(&path).expect("create the ballast");
        for chunk in [1 << 16, 1 << 12, 1 << 9] {
            let zeros = vec![0u8; chunk];
            loop {
                match file.write_all(&zeros) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => panic!("writing the ballast: {e}"),
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(self.dir.path()).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a process that outlived its test): detach it now, it goes when freed.
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

fn batch(at_ms: i64) -> Vec<(String, CheckResult)> {
    (0..50).map(|i| (format!("check{i}"), CheckResult { at_ms: at_ms + i, state: State::Up, latency_ms: 5 })).collect()
}

#[test]
fn a_write_refused_on_a_full_disk_is_refused_at_once_and_the_next_one_after_freeing_space_succeeds() {
    let disk = Tmpfs::mount("2m");
    fakes::runtime().block_on(async {
        let store = Store::open(&disk.path().join("state.db")).await.expect("open the store");
        let history = History::new(store.clone());
        let t0 = 1_800_000_000_000;
        history.record(&batch(t0), t0).await.expect("a disk with room takes writes");

        let ballast = disk.fill();
        for round in 1..=6 {
            let at = t0 + round * 1_000;
            let started = Instant::now();
            let refused = history.record(&batch(at), at).await.expect_err("the disk is full");
            let words = refused.in_words();
            // The old pool kept a connection whose transaction SQLite had ended; from the
            // second failure on, every write waited out the lock it held ("database is locked").
            assert!(words.contains("the disk is full"), "round {round}: {words}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "round {round} waited {:?}: {words}",
                started.elapsed()
            );
            let meta = store.set_meta("note", &"x".repeat(16_000)).await.expect_err("still full");
            assert!(meta.in_words().contains("the disk is full"), "round {round}: {}", meta.in_words());
        }
        let failure = store.health().failure().expect("the store knows it refuses writes");
        assert_eq!(failure.refused, 12, "{failure:?}");
        assert!(failure.error.contains("the disk is full"), "{failure:?}");

        std::fs::remove_file(&ballast).expect("delete the ballast");
        for round in 7..=9 {
            let at = t0 + round * 1_000;
            history.record(&batch(at), at).await.expect("a write after space is freed succeeds, no restart");
        }
        assert_eq!(store.health().failure(), None, "three writes in a row end the failure");
        let kept = history.raw("check0", t0, t0 + 60_000).await.unwrap();
        let times: Vec<i64> = kept.iter().map(|r| r.at_ms).collect();
        assert_eq!(times, [t0, t0 + 7_000, t0 + 8_000, t0 + 9_000], "what was written, and only that");
    });
}

#[test]
fn a_page_sent_while_the_store_refuses_writes_is_not_sent_again_and_is_recorded_afterwards() {
    let disk = Tmpfs::mount("2m");
    let sink = fakes::webhook_sink();
    fakes::runtime().block_on(async {
        let store = Store::open(&disk.path().join("state.db")).await.expect("open the store");
        let hook = WebhookReceiver { url: sink.url.parse().unwrap(), hmac_secret: None, headers: Vec::new() };
        let alerting = Alerting {
            receivers: [("hook".to_string(), Receiver::Webhook(hook))].into_iter().collect(),
            tiers: [("critical".to_string(), Tier { receivers: vec!["hook".into()], ..Tier::default() })]
                .into_iter()
                .collect(),
            timezone: jiff::tz::TimeZone::UTC,
            retry: Default::default(),
        };
        let clock: std::sync::Arc<dyn mxwarden::clock::Clock> = std::sync::Arc::new(mxwarden::clock::SystemClock);
        let http = mxwarden::dispatch::http_client().unwrap();
        let dispatcher = mxwarden::dispatch::Dispatcher::new(
            store.clone(),
            std::sync::Arc::new(alerting.clone()),
            http,
            alerting.retry,
            clock,
        );
        let labels = [("alertname", "WebDown"), ("severity", "critical")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let alert = AlertInfo {
            name: "WebDown".into(),
            labels,
            annotations: Default::default(),
            value: 0.0,
            fired_at: now_ms(),
            resolved_at: None,
        };
        let page = mxwarden::notify::alert_message(Kind::Firing, alert, now_ms());
        store.enqueue(&NewDelivery::fan_out(&["hook".to_string()], "critical", &page), now_ms()).await.unwrap();

        let ballast = disk.fill();
        for round in 1..=3 {
            let outcome = dispatcher.run_once().await;
            assert!(outcome.is_err(), "round {round}: the store cannot record the delivery");
        }
        assert_eq!(sink.received.lock().unwrap().len(), 1, "sent once, not once per round");

        std::fs::remove_file(&ballast).expect("delete the ballast");
        dispatcher.run_once().await.expect("the store takes writes again");
        let rows = store.outbox(false, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 1), "recorded as sent once: {:?}", rows[0]);
        dispatcher.run_once().await.unwrap();
        assert_eq!(sink.received.lock().unwrap().len(), 1, "and never sent again");
    });
}

fn get(url: &str) -> (u16, String) {
    services::http_get(url).unwrap_or((0, String::new()))
}

/// `/api/v1/status`, once the daemon answers.
fn status(base: &str) -> Option<Value> {
    let (code, body) = get(&format!("{base}/api/v1/status"));
    (code == 200).then(|| serde_json::from_str(&body).expect("status JSON"))
}

/// The raw results of `check` the API returns.
fn results(base: &str, check: &str) -> Vec<i64> {
    let (code, body) = get(&format!("{base}/api/v1/checks/{check}/history?resolution=raw"));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("history JSON");
    v["results"].as_array().expect("results").iter().filter_map(|r| r["at_ms"].as_i64()).collect()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[test]
fn a_full_disk_is_paged_without_the_store_and_the_daemon_heals_when_space_is_freed() {
    let disk = Tmpfs::mount("8m");
    let target = Target::start();
    let sink = fakes::webhook_sink();
    let port = services::free_port();
    let file = config(&format!(
        r#"listen: 127.0.0.1:{port}
defaults: {{ interval: 1s, timeout: 1s }}
store: {store}
{web}"#,
        store = disk.path().join("state.db").display(),
        web = web_down_to_hook(&target, &sink)
    ));
    let log = file.path.with_extension("log");
    let base = format!("http://127.0.0.1:{port}");
    let mut daemon = Daemon::start(&file.path);
    let all_up = |st: &Value| {
        st["overall"] == "up"
            && st["store_failure"].is_null()
            && st["checks"].as_array().is_some_and(|c| c.iter().all(|c| c["state"] == "up" && c["stale"] == false))
    };
    let st = wait_for("the check up", Duration::from_secs(20), &log, || status(&base).filter(all_up));
    let check = st["checks"][0]["name"].as_str().expect("the check's name").to_string();
    wait_for("history", Duration::from_secs(20), &log, || (results(&base, &check).len() >= 2).then_some(()));
    assert_eq!(get(&format!("{base}/healthz")), (200, "ok\n".to_string()));

    // The disk fills up.
    let ballast = disk.fill();
    let full_at = now_ms();
    let (_, why) = wait_for("/healthz to report the store", Duration::from_secs(20), &log, || {
        Some(get(&format!("{base}/healthz"))).filter(|(code, _)| *code == 503)
    });
    assert!(why.contains("store failing since") && why.contains("the disk is full"), "{why}");
    let st = status(&base).expect("the status while the store fails");
    assert_eq!(st["overall"], "unknown", "{st}");
    assert!(st["store_failure"]["error"].as_str().is_some_and(|e| e.contains("the disk is full")), "{st}");
    for c in st["checks"].as_array().unwrap() {
        assert_eq!((&c["state"], &c["stale"]), (&Value::from("unknown"), &Value::from(true)), "not up: {c}");
    }
    wait_for("the store-failing page", Duration::from_secs(20), &log, || {
        (count(&sink, "firing", "MxwardenStoreFailing") == 1).then_some(())
    });
    let page = payloads(&sink)
        .into_iter()
        .find(|p| p["alerts"][0]["labels"]["alertname"] == "MxwardenStoreFailing")
        .expect("the page");
    let summary = page["alerts"][0]["annotations"]["summary"].as_str().unwrap_or_default().to_string();
    assert!(summary.contains("the disk is full") && summary.contains("state.db"), "the error in words: {summary}");

    // The target fails while nothing can be stored: the page is decided, and kept.
    target.set(false);
    wait_for("the page decided and refused by the store", Duration::from_secs(20), &log, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("The store refused a decision").then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon keeps running");
    assert_eq!(get(&format!("{base}/healthz")).0, 503, "still failing");
    assert_eq!(
        count(&sink, "firing", "MxwardenStoreFailing"),
        1,
        "paged once, not every second: {:#?}",
        payloads(&sink)
    );
    assert_eq!(count(&sink, "resolved", "MxwardenStoreFailing"), 0, "{:#?}", payloads(&sink));
    assert_eq!(count(&sink, "firing", "WebDown"), 0, "nothing went through the full store: {:#?}", payloads(&sink));

    // Space is freed: no restart.
    std::fs::remove_file(&ballast).expect("delete the ballast");
    let freed_at = now_ms();
    wait_for("/healthz 200 again", Duration::from_secs(20), &log, || {
        (get(&format!("{base}/healthz")).0 == 200).then_some(())
    });
    wait_for("the resolve", Duration::from_secs(20), &log, || {
        (count(&sink, "resolved", "MxwardenStoreFailing") == 1).then_some(())
    });
    wait_for("the page decided during the outage", Duration::from_secs(20), &log, || {
        (count(&sink, "firing", "WebDown") == 1).then_some(())
    });
    let kept = results(&base, &check);
    let during = kept.iter().filter(|at| (full_at..freed_at).contains(at)).count();
    assert!(during >= 5, "results of the outage were kept and written after it: {during} of {kept:?}");
    let later = kept.len();
    wait_for("history to grow", Duration::from_secs(20), &log, || (results(&base, &check).len() > later).then_some(()));

    target.set(true);
    wait_for("the check up again", Duration::from_secs(20), &log, || status(&base).filter(all_up));
    std::thread::sleep(Duration::from_secs(4));
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon is still the one started");
    assert_eq!(count(&sink, "firing", "MxwardenStoreFailing"), 1, "{:#?}", payloads(&sink));
    assert_eq!(count(&sink, "resolved", "MxwardenStoreFailing"), 1, "resolved once: {:#?}", payloads(&sink));
    assert_eq!(count(&sink, "firing", "WebDown"), 1, "the kept page, once: {:#?}", payloads(&sink));
    drop(daemon);
}
