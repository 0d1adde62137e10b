//! The store's hot write path: `History::record` flushing the results of 10,000 checks at
//! once (what 10,000 checks at a 60 s interval hand the recorder each minute: one raw row
//! and three rollup upserts per result, one transaction), into a SQLite store that already
//! holds the previous flushes. Timed per flush; the first flush (new check ids) is left out.
//!
//! Run: `cargo bench --bench store_write`. It measures; it never fails on a figure.

use mxwarden::history::{Result as CheckResult, State};
use mxwarden::store::{History, Store};
use std::time::{Duration, Instant};

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    // `cargo test --benches` runs this once without `--bench`: keep that cheap.
    let (checks, flushes): (usize, usize) = if benching { (10_000, 21) } else { (50, 2) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("write.db")).await.expect("store");
        let history = History::new(store);
        let names: Vec<String> = (0..checks).map(|i| format!("check-{i}")).collect();
        let start = 1_795_000_000_000_i64;
        let mut times = Vec::new();
        for flush in 0..flushes {
            let at = start + flush as i64 * 60_000;
            let results: Vec<(String, CheckResult)> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let state = if (i + flush) % 97 == 0 { State::Down } else { State::Up };
                    (
                        name.clone(),
                        CheckResult { at_ms: at + (i as i64 % 60_000), state, latency_ms: 20 + (i as i64 % 50) },
                    )
                })
                .collect();
            let t = Instant::now();
            history.record(&results, at + 60_000).await.expect("record");
            if flush > 0 {
                times.push(t.elapsed());
            }
        }
        let ms = |mut v: Vec<Duration>, q: f64| {
            v.sort();
            v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0
        };
        let total: Duration = times.iter().sum();
        println!("Store writes: History::record of {checks} results per flush, SQLite, {} flushes", times.len());
        println!(
            "| flush of {checks} results | p50 {:.1} ms | p95 {:.1} ms | mean {:.1} ms |",
            ms(times.clone(), 0.5),
            ms(times.clone(), 0.95),
            total.as_secs_f64() * 1000.0 / times.len() as f64
        );
    });
}
