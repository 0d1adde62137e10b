//! The uptime history's read cost and size: a store holding what 400 days of 30-second results
//! for 50 checks leave after retention (raw results of the last 48 hours, minute rollups of 14
//! days, hourly of 90, daily of 400: the steady state of a store that has run for a year and
//! more), then the status page's per-check queries timed through `History`:
//!
//! - the 90-day uptime (90 daily buckets, the bars),
//! - the whole status-page read of one check: 90 days, 24 hourly buckets, 1,440 minute buckets
//!   (the response-time chart) and 48 hours of raw results (incidents).
//!
//! Run: `cargo bench --bench history`. Figures: `BENCHMARKS.md`, "Uptime history". It measures;
//! it never fails on a figure.

use mxwarden::history::{DAY_MS, Resolution};
use mxwarden::store::History;
use mxwarden::store::Store;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::time::{Duration, Instant};

const EVERY_MS: i64 = 30_000;

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    // `cargo test --benches` runs this once without `--bench`: keep that cheap.
    let (checks, rounds): (i64, usize) = if benching { (50, 200) } else { (2, 3) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("history.db");
        let store = Store::open(&path).await.expect("store");
        let now = 1_795_000_000_000_i64 - 1_795_000_000_000_i64 % DAY_MS + 12 * 3_600_000;
        let t = Instant::now();
        fill(&path, now, checks).await;
        let filled = t.elapsed();
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let history = History::new(store);
        let mut uptime = Vec::new();
        let mut page = Vec::new();
        for round in 0..rounds {
            let check = format!("check-{}", round as i64 % checks);
            let t = Instant::now();
            let days = history.daily(&check, 90, now).await.expect("daily");
            let u = mxwarden::history::uptime(&days);
            uptime.push(t.elapsed());
            assert!(u.is_some_and(|u| u > 0.99 && u < 1.0), "{u:?}");
            let t = Instant::now();
            let _ = history.daily(&check, 90, now).await.expect("daily");
            let _ = history.buckets(&check, Resolution::Hour, now - DAY_MS, now).await.expect("hours");
            let minutes = history.buckets(&check, Resolution::Minute, now - DAY_MS, now).await.expect("minutes");
            let raw = history.raw(&check, now - 2 * DAY_MS, now + 1).await.expect("raw");
            page.push(t.elapsed());
            assert_eq!(minutes.len(), 1440);
            assert!(raw.len() >= 5759, "{}", raw.len());
        }
        let ms = |mut v: Vec<Duration>, q: f64| {
            v.sort();
            v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0
        };
        println!("Uptime history: {checks} checks, a result every 30 s for 400 days, after retention ({rounds} reads)");
        println!(
            "filled in {:.1} s; store file {:.1} MiB = {:.0} KiB per check",
            filled.as_secs_f64(),
            bytes as f64 / 1_048_576.0,
            bytes as f64 / 1024.0 / checks as f64
        );
        println!();
        println!("| query (one check) | p50 | p95 |");
        println!("|---|---:|---:|");
        println!(
            "| 90-day uptime (90 daily buckets) | {:.3} ms | {:.3} ms |",
            ms(uptime.clone(), 0.5),
            ms(uptime, 0.95)
        );
        println!(
            "| whole status-page read (90 d + 24 h + 1,440 min + 48 h raw) | {:.3} ms | {:.3} ms |",
            ms(page.clone(), 0.5),
            ms(page, 0.95)
        );
    });
}

/// Writes the rows 400 days of results leave after retention: one result every 30 s, up but
/// for one failed result an hour; latency 40–60 ms.
async fn fill(path: &std::path::Path, now: i64, checks: i64) {
    let mut conn = SqliteConnectOptions::new().filename(path).connect().await.expect("connect");
    let mut tx = conn.begin().await.expect("begin");
    for check in 0..checks {
        sqlx::query("INSERT INTO checks (id, name) VALUES (?, ?)")
            .bind(check + 1)
            .bind(format!("check-{check}"))
            .execute(&mut *tx)
            .await
            .expect("check");
    }
    let down = |at: i64| at % 3_600_000 == 0;
    let latency = |at: i64| 40 + (at / EVERY_MS) % 21;
    for check in 1..=checks {
        let mut at = now - 2 * DAY_MS;
        while at < now {
            sqlx::query("INSERT INTO results (check_id, at, state, latency_ms) VALUES (?, ?, ?, ?)")
                .bind(check)
                .bind(at)
                .bind(if down(at) { 0 } else { 1 })
                .bind(latency(at))
                .execute(&mut *tx)
                .await
                .expect("raw");
            at += EVERY_MS;
        }
        for (res, code, keep) in [(Resolution::Minute, 1, 14), (Resolution::Hour, 2, 90), (Resolution::Day, 3, 400)] {
            let width = res.width_ms();
            let mut bucket = res.bucket(now - keep * DAY_MS);
            while bucket <= res.bucket(now) {
                let (start, end) = (bucket * width, (bucket + 1) * width);
                let n = (end - start) / EVERY_MS;
                let downs = (start..end).step_by(3_600_000).filter(|t| down(*t)).count() as i64;
                sqlx::query("INSERT INTO rollups (check_id, res, bucket, up, down, maintenance, latency_sum, latency_max) VALUES (?, ?, ?, ?, ?, 0, ?, 60)")
                    .bind(check)
                    .bind(code)
                    .bind(bucket)
                    .bind(n - downs)
                    .bind(downs)
                    .bind(n * 50)
                    .execute(&mut *tx)
                    .await
                    .expect("rollup");
                bucket += 1;
            }
        }
    }
    tx.commit().await.expect("commit");
    sqlx::query("VACUUM").execute(&mut conn).await.expect("vacuum");
}
