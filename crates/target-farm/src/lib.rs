//! Many cheap HTTP targets on loopback: `GET /<side>/<n>` answers `200 ok` for every `n` below
//! the farm's target count, and counts the request for that side (the prober that asked: one
//! path prefix per prober, so two probers measured side by side are counted apart). `GET
//! /count?within=S` reports, per side, the requests served since start and how many distinct
//! targets were asked at least once in the last `S` seconds — a prober that falls behind shows
//! as fewer targets than it has.
//!
//! Used by `scripts/bench-scale.sh` (the binary) and `tests/it/scale.rs` (in-process).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// One prober's counts.
#[derive(Debug)]
struct Side {
    /// Requests served since start.
    requests: AtomicU64,
    /// Per target: when it was last asked, seconds since start plus one (0: never).
    last: Vec<AtomicU32>,
}

/// The farm's counters, shared by every port it serves.
#[derive(Debug)]
pub struct Counts {
    started: Instant,
    targets: usize,
    sides: HashMap<String, Side>,
}

impl Counts {
    /// Counters for `targets` targets per side, for the named sides (path prefixes).
    pub fn new(targets: usize, sides: &[&str]) -> Arc<Self> {
        let sides = sides
            .iter()
            .map(|s| {
                let last = (0..targets).map(|_| AtomicU32::new(0)).collect();
                (s.to_string(), Side { requests: AtomicU64::new(0), last })
            })
            .collect();
        Arc::new(Self { started: Instant::now(), targets, sides })
    }

    fn now(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX - 1) + 1
    }

    /// Requests `side` got since start (0 for an unknown side).
    pub fn requests(&self, side: &str) -> u64 {
        self.sides.get(side).map_or(0, |s| s.requests.load(Ordering::Relaxed))
    }

    /// How many of `side`'s targets were asked at least once in the last `within_secs` seconds.
    pub fn targets_seen(&self, side: &str, within_secs: u32) -> usize {
        let Some(s) = self.sides.get(side) else { return 0 };
        let since = self.now().saturating_sub(within_secs);
        s.last.iter().filter(|t| t.load(Ordering::Relaxed) > since).count()
    }

    /// How many of `side`'s targets were ever asked.
    pub fn targets_ever(&self, side: &str) -> usize {
        let Some(s) = self.sides.get(side) else { return 0 };
        s.last.iter().filter(|t| t.load(Ordering::Relaxed) > 0).count()
    }

    /// The number of targets per side.
    pub fn targets(&self) -> usize {
        self.targets
    }
}

async fn target(State(c): State<Arc<Counts>>, Path((side, n)): Path<(String, usize)>) -> (StatusCode, &'static str) {
    let Some(s) = c.sides.get(&side) else { return (StatusCode::NOT_FOUND, "no such side\n") };
    let Some(slot) = s.last.get(n) else { return (StatusCode::NOT_FOUND, "no such target\n") };
    s.requests.fetch_add(1, Ordering::Relaxed);
    slot.store(c.now(), Ordering::Relaxed);
    (StatusCode::OK, "ok\n")
}

async fn count(
    State(c): State<Arc<Counts>>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<serde_json::Value> {
    let within = q.get("within").and_then(|w| w.parse().ok()).unwrap_or(60);
    let mut out = serde_json::Map::new();
    for side in c.sides.keys() {
        out.insert(
            side.clone(),
            serde_json::json!({
                "requests": c.requests(side),
                "targets_seen": c.targets_seen(side, within),
                "targets_ever": c.targets_ever(side),
                "targets": c.targets,
            }),
        );
    }
    axum::Json(serde_json::Value::Object(out))
}

/// The farm's routes over `counts`.
pub fn router(counts: Arc<Counts>) -> Router {
    Router::new().route("/count", get(count)).route("/{side}/{n}", get(target)).with_state(counts)
}

/// Serves the farm on `listener` until the task is dropped or the runtime ends.
pub fn spawn(listener: tokio::net::TcpListener, counts: Arc<Counts>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(counts)).await;
    })
}
