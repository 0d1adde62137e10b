//! One shard's sender: takes batches from the queue, POSTs them (protobuf + snappy, the
//! remote-write 1.0 headers) and decides by the answer — delivered on 2xx; tried again with
//! exponential backoff and jitter on 5xx, 429 (after its `Retry-After`, up to a minute) and
//! network errors, the batch held (and counted in the queue's bound) meanwhile; dropped with
//! one log line on any other status. Every request has a deadline, body included, and at most
//! a few hundred bytes of an answer are read. On stop it keeps trying for
//! [`super::FLUSH_DEADLINE`], then counts what is left as dropped.

use super::queue::{Queue, Take, request};
use super::{Auth, Endpoint};
use crate::redact::Redactor;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The longest `Retry-After` honoured; a receiver asking for more is tried again after this.
pub(super) const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// Most bytes of a refusal's body read for the log line.
const SNIPPET_BYTES: usize = 512;

/// What one answer means for its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Delivered.
    Sent,
    /// Try again later.
    Retry,
    /// Refused for good: drop the batch.
    Refused,
}

/// The verdict on an HTTP status, as Prometheus's own sender decides.
pub(super) fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Sent,
        429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Refused,
    }
}

/// How long to wait before attempt `failures + 1`: `min · 2^(failures-1)` up to `max`,
/// jittered into its upper half by `jitter` (0 to 1) so shards and instances spread out;
/// a `Retry-After` replaces it, capped at [`RETRY_AFTER_CAP`].
pub(super) fn backoff(
    failures: u32,
    min: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(asked) = retry_after {
        return asked.min(RETRY_AFTER_CAP);
    }
    let exp = failures.saturating_sub(1).min(30);
    let base = min.saturating_mul(1u32 << exp).min(max).max(min.min(max));
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Why an attempt did not deliver.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No answer: connection, TLS, deadline.
    #[error("{0}")]
    Transport(String),
    /// An answer that means "later".
    #[error("HTTP {status}")]
    Later {
        /// The status.
        status: u16,
        /// What `Retry-After` asked for.
        retry_after: Option<Duration>,
    },
    /// An answer that means "never".
    #[error("HTTP {status}: {snippet}")]
    Refused {
        /// The status.
        status: u16,
        /// The start of the body, escaped and redacted.
        snippet: String,
    },
    /// The batch could not be encoded.
    #[error("{0}")]
    Encode(#[from] super::proto::EncodeError),
}

/// Sends one shard's batches; see the module docs.
pub(super) struct Sender {
    queue: Arc<Queue>,
    shard: usize,
    endpoint: Endpoint,
    http: reqwest::Client,
    redactor: Redactor,
    /// Set once stop is seen: until when to keep trying.
    flush_by: Option<Instant>,
    /// Whether the last attempt failed (one warning per outage, not per retry).
    failing: bool,
}

impl Sender {
    pub(super) fn new(
        queue: Arc<Queue>,
        shard: usize,
        endpoint: Endpoint,
        http: reqwest::Client,
        redactor: Redactor,
    ) -> Self {
        Self { queue, shard, endpoint, http, redactor, flush_by: None, failing: false }
    }

    fn stopping(&mut self, stop: &watch::Receiver<bool>) -> bool {
        stopping(&mut self.flush_by, stop)
    }

    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // Samples given up on at stop: counted as dropped, logged once.
        let mut left = 0;
        loop {
            let flushing = self.stopping(&stop);
            match self.queue.take(self.shard, flushing) {
                Take::Batch(batch) => {
                    let n = batch.len();
                    let gave_up = self.deliver(&batch, &mut stop).await;
                    self.queue.done(n);
                    if gave_up {
                        left += n;
                        break;
                    }
                }
                Take::Wait(_) if flushing => break,
                Take::Wait(wait) => {
                    let wait = wait.unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        () = self.queue.woken(self.shard) => {}
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            if self.flush_by.is_some_and(|by| Instant::now() >= by) {
                break;
            }
        }
        // Past the flush deadline: what is still queued is given up on.
        while let Take::Batch(b) = self.queue.take(self.shard, true) {
            left += b.len();
            self.queue.done(b.len());
        }
        if left > 0 {
            self.queue.count_dropped(left);
            tracing::warn!(url = %self.queue.origin(), samples = left, "Remote write stopped with samples undelivered.");
        }
    }

    /// Sends one batch until it is delivered, refused, or the flush deadline passes; true
    /// when it gave up at stop (the caller counts and logs those samples).
    async fn deliver(&mut self, batch: &[super::queue::Entry], stop: &mut watch::Receiver<bool>) -> bool {
        let body = match super::proto::encode(&request(batch)) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                self.queue.count_failed(batch.len());
                tracing::error!(url = %self.queue.origin(), error = %e, samples = batch.len(), "Remote write batch could not be encoded; dropped.");
                return false;
            }
        };
        let mut failures = 0u32;
        loop {
            let outcome = {
                // An attempt in progress at stop is given until the flush deadline, not its
                // whole `remote_timeout`.
                let attempt = attempt(&self.endpoint, &self.http, &self.redactor, body.clone());
                tokio::pin!(attempt);
                loop {
                    let by = self.flush_by;
                    tokio::select! {
                        r = &mut attempt => break Some(r),
                        _ = stop.changed(), if by.is_none() => {
                            stopping(&mut self.flush_by, stop);
                        }
                        () = tokio::time::sleep_until(by.unwrap_or_else(Instant::now).into()), if by.is_some() => break None,
                    }
                }
            };
            let Some(outcome) = outcome else { return true };
            let retry_after = match outcome {
                Ok(()) => {
                    self.queue.count_sent(batch.len());
                    if std::mem::take(&mut self.failing) {
                        tracing::info!(url = %self.queue.origin(), "Remote write delivering again.");
                    }
                    return false;
                }
                Err(SendError::Refused { status, snippet }) => {
                    self.queue.count_failed(batch.len());
                    tracing::error!(url = %self.queue.origin(), status, samples = batch.len(), response = %snippet,
                        "Remote write receiver refused a batch; dropped, not retried.");
                    return false;
                }
                Err(e) => {
                    self.queue.count_retried(batch.len());
                    failures = failures.saturating_add(1);
                    if !std::mem::replace(&mut self.failing, true) {
                        tracing::warn!(url = %self.queue.origin(), error = %e, "Remote write failing; retrying with backoff.");
                    } else {
                        tracing::debug!(url = %self.queue.origin(), error = %e, failures, "Remote write retry failed.");
                    }
                    match e {
                        SendError::Later { retry_after, .. } => retry_after,
                        _ => None,
                    }
                }
            };
            let q = &self.endpoint.queue;
            let wait = backoff(failures, q.min_backoff, q.max_backoff, retry_after, rand::random::<f64>());
            if self.stopping(stop) {
                let Some(by) = self.flush_by else { return true };
                if Instant::now() + wait >= by {
                    return true;
                }
                tokio::time::sleep(wait).await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

/// Sets `flush_by` once stop is seen (or its sender is gone); whether stopping.
fn stopping(flush_by: &mut Option<Instant>, stop: &watch::Receiver<bool>) -> bool {
    if flush_by.is_none() && (*stop.borrow() || stop.has_changed().is_err()) {
        *flush_by = Some(Instant::now() + super::FLUSH_DEADLINE);
    }
    flush_by.is_some()
}

/// One POST.
pub(super) async fn attempt(
    endpoint: &Endpoint,
    http: &reqwest::Client,
    redactor: &Redactor,
    body: bytes::Bytes,
) -> Result<(), SendError> {
    let mut req = http
        .post(endpoint.url.clone())
        .timeout(endpoint.timeout)
        .header(reqwest::header::CONTENT_ENCODING, "snappy")
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .header(reqwest::header::USER_AGENT, concat!("mxwarden/", env!("CARGO_PKG_VERSION")))
        .header("X-Prometheus-Remote-Write-Version", "0.1.0");
    for (name, value) in &endpoint.headers {
        req = req.header(name, value);
    }
    req = match &endpoint.auth {
        Auth::None => req,
        Auth::Basic { username, password } => {
            use secrecy::ExposeSecret;
            req.basic_auth(username, Some(password.expose_secret()))
        }
        Auth::Bearer(token) => {
            use secrecy::ExposeSecret;
            req.bearer_auth(token.expose_secret())
        }
    };
    let origin = crate::redact::origin_only(&endpoint.url);
    let mut response = req
        .body(body)
        .send()
        .await
        .map_err(|e| SendError::Transport(crate::probe::explain_transport(&e.without_url(), &origin)))?;
    let status = response.status().as_u16();
    match verdict(status) {
        Verdict::Sent => Ok(()),
        Verdict::Retry => {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::notify::retry_after::RetryAfter::from_header)
                .map(|r| Duration::from_millis(r.wait_ms(jiff::Timestamp::now().as_millisecond()).max(0) as u64));
            Err(SendError::Later { status, retry_after })
        }
        Verdict::Refused => {
            let mut read = Vec::new();
            while read.len() < SNIPPET_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => read.extend_from_slice(&chunk[..chunk.len().min(SNIPPET_BYTES - read.len())]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&read);
            let escaped = crate::text::escape_controls(text.trim());
            Err(SendError::Refused { status, snippet: redactor.redact(&escaped).into_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_retry_or_drop() {
        let cases: &[(u16, Verdict, &str)] = &[
            (200, Verdict::Sent, "ok"),
            (204, Verdict::Sent, "Prometheus answers 204"),
            (429, Verdict::Retry, "rate limited: later"),
            (500, Verdict::Retry, "server error"),
            (503, Verdict::Retry, "unavailable"),
            (400, Verdict::Refused, "bad request (out of order, invalid labels): retrying cannot help"),
            (401, Verdict::Refused, "credentials: retrying cannot help"),
            (404, Verdict::Refused, "wrong path"),
            (413, Verdict::Refused, "too large"),
            (302, Verdict::Refused, "a redirect left over"),
        ];
        for (status, want, why) in cases {
            assert_eq!(verdict(*status), *want, "{status}: {why}");
        }
    }

    #[test]
    fn backoff_doubles_jitters_and_honours_retry_after() {
        let (min, max) = (Duration::from_millis(30), Duration::from_secs(5));
        let ms = |d: Duration| d.as_millis();
        let cases: &[(u32, Option<Duration>, f64, u128, &str)] = &[
            (1, None, 1.0, 30, "first failure: min"),
            (1, None, 0.0, 15, "jitter takes at most half"),
            (2, None, 1.0, 60, "doubles"),
            (5, None, 1.0, 480, "2^4 · 30 ms"),
            (20, None, 1.0, 5_000, "capped at max"),
            (u32::MAX, None, 1.0, 5_000, "no overflow however many failures"),
            (3, Some(Duration::from_secs(10)), 0.0, 10_000, "Retry-After replaces the backoff, beyond max too"),
            (3, Some(Duration::from_secs(86_400)), 0.0, 60_000, "a day is capped at a minute"),
            (3, Some(Duration::ZERO), 1.0, 0, "Retry-After: 0 means now"),
        ];
        for (failures, after, jitter, want, why) in cases {
            assert_eq!(ms(backoff(*failures, min, max, *after, *jitter)), *want, "{why}");
        }
        let spread: std::collections::BTreeSet<u128> =
            (0..50).map(|i| ms(backoff(4, min, max, None, f64::from(i) / 50.0))).collect();
        assert!(spread.len() > 10 && spread.iter().all(|d| (120..=240).contains(d)), "{spread:?}");
    }
}
