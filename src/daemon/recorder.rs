//! The uptime history's writer: results are batched in memory and written every evaluation
//! period in one transaction, a heartbeat is written when there is nothing else (so a silent
//! mxwarden shows as a gap, not as up), and retention runs hourly. Not latency-critical: pages
//! never wait for it. A write the store refused keeps its results and is tried again a second
//! later (not at once: a full disk refuses in microseconds).

use super::HEARTBEAT_MS;
use crate::history::{Result as CheckResult, State};
use crate::model::Observation;
use crate::store::History;
use std::sync::Arc;

/// How often retention runs, ms.
const PRUNE_EVERY_MS: i64 = 3_600_000;

/// How soon a write the store refused is tried again, ms.
const RETRY_MS: i64 = 1_000;

/// Batches results into the history.
pub(super) struct Recorder {
    history: Arc<History>,
    /// Results not yet written.
    pending: Vec<(String, CheckResult)>,
    /// How long results may wait, ms.
    flush_every_ms: i64,
    /// The last write (results or heartbeat), ms.
    written_at: i64,
    /// The last retention run, ms.
    pruned_at: i64,
    /// No write before this (after a refused one), ms.
    retry_at: i64,
}

impl Recorder {
    /// A recorder that writes at least every `flush_every_ms`, starting at `now`.
    pub(super) fn new(history: Arc<History>, flush_every_ms: i64, now: i64) -> Self {
        Self {
            history,
            pending: Vec::new(),
            flush_every_ms: flush_every_ms.max(1),
            written_at: now,
            pruned_at: 0,
            retry_at: 0,
        }
    }

    /// Keeps `o`'s result for the next write; `in_maintenance` marks it as maintenance time.
    pub(super) fn record(&mut self, o: &Observation, in_maintenance: bool) {
        let state = match (in_maintenance, o.ok) {
            (true, _) => State::Maintenance,
            (false, true) => State::Up,
            (false, false) => State::Down,
        };
        let result = CheckResult {
            at_ms: o.at.as_millisecond(),
            state,
            latency_ms: i64::try_from(o.latency.as_millis()).unwrap_or(i64::MAX),
        };
        self.pending.push((o.check.0.clone(), result));
    }

    /// When the next write is due, ms.
    pub(super) fn next_deadline(&self) -> i64 {
        let every = if self.pending.is_empty() { HEARTBEAT_MS } else { self.flush_every_ms };
        let due = self.written_at.saturating_add(every).min(self.pruned_at.saturating_add(PRUNE_EVERY_MS));
        due.max(self.retry_at)
    }

    /// Writes what is due at `now`: results (or a heartbeat), and retention hourly. On an
    /// error the results stay for the next attempt, a second later.
    pub(super) async fn flush(&mut self, now: i64) -> Result<(), crate::store::StoreError> {
        if now < self.retry_at {
            return Ok(());
        }
        let written = self.write_due(now).await;
        if written.is_err() {
            self.retry_at = now.saturating_add(RETRY_MS);
        }
        written
    }

    async fn write_due(&mut self, now: i64) -> Result<(), crate::store::StoreError> {
        if !self.pending.is_empty() && now - self.written_at >= self.flush_every_ms {
            self.history.record(&self.pending, now).await?;
            self.pending.clear();
            self.written_at = now;
        } else if self.pending.is_empty() && now - self.written_at >= HEARTBEAT_MS {
            self.history.heartbeat(now).await?;
            self.written_at = now;
        }
        if now - self.pruned_at >= PRUNE_EVERY_MS {
            self.history.prune(now).await?;
            self.pruned_at = now;
        }
        Ok(())
    }

    /// Writes every pending result now (at shutdown).
    pub(super) async fn flush_all(&mut self, now: i64) -> Result<(), crate::store::StoreError> {
        if !self.pending.is_empty() {
            self.history.record(&self.pending, now).await?;
            self.pending.clear();
            self.written_at = now;
        }
        Ok(())
    }
}
