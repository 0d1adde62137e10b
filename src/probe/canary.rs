//! The Matrix canary (`matrix_canary` checks): proves that a message sent is a message seen.
//! Each round one account sends a uniquely tagged `m.notice` into the canary room and a
//! second account (or the same one) waits for it through `/sync`, long-polling from the
//! `since` token kept since the last round — so the wait is the homeserver's real delivery
//! path, not a read-back of the send. Samples: `matrix_canary_success`,
//! `matrix_canary_latency_seconds` (send → visible), `matrix_canary_missed_rounds` (failed
//! rounds in a row; the preset `MatrixCanaryFailing` fires at two). Canary messages are
//! redacted once seen (and any older ones a failed round left behind), so the room does not
//! grow. With a reader on another homeserver, the round measures federation too; every
//! sample carries the reader's homeserver as `reader`.

use super::matrix::{MatrixClient, MatrixError, next_batch, room_filter, timeline};
use crate::model::{CheckId, Labels, Observation, Sample};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// The content key that marks a canary message (its value is the round's tag).
pub(crate) const TAG_KEY: &str = "org.mxwarden.canary";
/// Timeline events asked for per `/sync` answer.
const TIMELINE_LIMIT: u32 = 50;
/// The longest single long-poll; a round's wait is made of these.
const LONGEST_POLL: Duration = Duration::from_secs(30);

/// One Matrix account.
#[derive(Debug, Clone)]
pub struct CanaryAccount {
    /// Client API base URL.
    pub homeserver: Url,
    /// Its access token.
    pub token: SecretString,
}

/// A `matrix_canary` check, resolved.
#[derive(Debug, Clone)]
pub struct CanarySpec {
    /// The account that sends.
    pub sender: CanaryAccount,
    /// The account that must see it; `None`: the sender itself.
    pub reader: Option<CanaryAccount>,
    /// The canary room: id or alias.
    pub room: String,
    /// Latency over this is slow (`MatrixCanarySlow`).
    pub slow_after: Duration,
}

/// What one canary keeps between rounds.
#[derive(Debug, Default)]
struct State {
    sender_room: Option<String>,
    reader_room: Option<String>,
    sender_user: Option<String>,
    since: Option<String>,
    missed: u32,
    /// Canary events seen but not yet redacted (the redaction failed).
    to_redact: Vec<String>,
}

/// Per-check canary state, shared by the prober.
#[derive(Debug, Default)]
pub(crate) struct Canaries {
    states: std::sync::Mutex<HashMap<CheckId, Arc<tokio::sync::Mutex<State>>>>,
}

/// How a round went.
struct Round {
    latency: Option<Duration>,
    failure: Option<String>,
}

impl Canaries {
    /// Runs one round of `spec` (check `id`) within `timeout`.
    pub(crate) async fn run(
        &self,
        id: &CheckId,
        service: Option<&str>,
        spec: &CanarySpec,
        timeout: Duration,
        http: reqwest::Client,
        at: jiff::Timestamp,
    ) -> Observation {
        let state = {
            let mut states = self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            states.entry(id.clone()).or_default().clone()
        };
        // A round still running (it cannot: the scheduler waits) would share the token.
        let mut state = state.lock().await;
        let started = Instant::now();
        let deadline = started + timeout;
        let round = round(&mut state, spec, deadline, http).await;
        state.missed = if round.failure.is_some() { state.missed.saturating_add(1) } else { 0 };
        let reader = spec.reader.as_ref().unwrap_or(&spec.sender);
        let mut labels = Labels::new();
        labels.insert("check".into(), id.0.clone());
        if let Some(service) = service {
            labels.insert("service".into(), service.to_string());
        }
        labels.insert("reader".into(), reader.homeserver.host_str().unwrap_or_default().to_string());
        let sample = |name: &str, value: f64| Sample { name: name.into(), labels: labels.clone(), value };
        let ok = round.failure.is_none();
        let mut samples = vec![
            sample("matrix_canary_success", if ok { 1.0 } else { 0.0 }),
            sample("matrix_canary_missed_rounds", f64::from(state.missed)),
        ];
        if let Some(latency) = round.latency {
            samples.push(sample("matrix_canary_latency_seconds", latency.as_secs_f64()));
        }
        if let Some(why) = &round.failure {
            tracing::debug!(check = %id, failure = %why, missed = state.missed, "Canary round failed.");
        }
        Observation {
            check: id.clone(),
            service: service.map(str::to_string),
            at,
            ok,
            latency: round.latency.unwrap_or_else(|| started.elapsed()),
            samples,
            scraped: Vec::new(),
            over_limit: false,
            failures: round.failure.into_iter().collect(),
            summary: match round.latency {
                Some(l) => format!("seen after {}", super::expect::seconds(l)),
                None => String::new(),
            },
        }
    }
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn failed(what: &str, e: &MatrixError) -> Round {
    Round { latency: None, failure: Some(format!("could not {what}: {e}")) }
}

/// Event ids of canary messages of `sender` in `events` that are not redacted yet, and
/// whether the one tagged `tag` is among them.
fn canaries_in(events: &[Value], sender: &str, tag: &str) -> (Vec<String>, bool) {
    let mut ids = Vec::new();
    let mut seen = false;
    for e in events {
        let content = e.get("content");
        let Some(t) = content.and_then(|c| c.get(TAG_KEY)).and_then(Value::as_str) else { continue };
        if t == tag {
            seen = true;
        }
        let redacted = e.get("unsigned").and_then(|u| u.get("redacted_because")).is_some();
        if e.get("sender").and_then(Value::as_str) == Some(sender)
            && !redacted
            && let Some(id) = e.get("event_id").and_then(Value::as_str).filter(|id| id.len() <= 255)
        {
            ids.push(id.to_string());
        }
    }
    (ids, seen)
}

/// A random tag: 16 hex digits.
fn new_tag() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

async fn round(state: &mut State, spec: &CanarySpec, deadline: Instant, http: reqwest::Client) -> Round {
    let sender = MatrixClient::new(spec.sender.homeserver.clone(), spec.sender.token.clone(), http.clone());
    let reader = spec.reader.as_ref().map(|r| MatrixClient::new(r.homeserver.clone(), r.token.clone(), http));
    let reader = reader.as_ref().unwrap_or(&sender);
    if state.sender_user.is_none() {
        match sender.whoami(left(deadline)).await {
            Ok(user) => state.sender_user = Some(user),
            Err(e) => return failed("identify the sending account", &e),
        }
    }
    if state.sender_room.is_none() {
        match sender.join(&spec.room, left(deadline)).await {
            Ok(id) => state.sender_room = Some(id),
            Err(e) => return failed(&format!("join {} as the sender", spec.room), &e),
        }
    }
    if state.reader_room.is_none() {
        match reader.join(&spec.room, left(deadline)).await {
            Ok(id) => state.reader_room = Some(id),
            Err(e) => return failed(&format!("join {} as the reader", spec.room), &e),
        }
    }
    let (Some(sender_room), Some(reader_room), Some(sender_user)) =
        (state.sender_room.clone(), state.reader_room.clone(), state.sender_user.clone())
    else {
        return Round { latency: None, failure: Some("the canary room is not known yet".into()) };
    };
    let filter = room_filter(&reader_room, TIMELINE_LIMIT);
    if state.since.is_none() {
        // The first sync: where "now" is. Old canaries it shows are redacted below.
        match reader.sync(None, &filter, Duration::ZERO, left(deadline)).await {
            Ok(sync) => {
                let (old, _) = canaries_in(timeline(&sync, &reader_room), &sender_user, "");
                state.to_redact.extend(old);
                match next_batch(&sync) {
                    Ok(next) => state.since = Some(next),
                    Err(e) => return failed("start following the room", &e),
                }
            }
            Err(e) => return failed("start following the room", &e),
        }
    }
    let tag = new_tag();
    let content = json!({
        "msgtype": "m.notice",
        "body": format!("mxwarden canary {tag} (removed once seen)"),
        TAG_KEY: tag,
    });
    let sent_at = Instant::now();
    let event_id = match sender.send(&sender_room, &format!("mxwarden-canary-{tag}"), &content, left(deadline)).await {
        Ok(id) => id,
        Err(e) => return failed("send the canary message", &e),
    };
    let mut seen_after = None;
    while seen_after.is_none() {
        let remaining = left(deadline);
        // Keep a little of the deadline for the answer to arrive.
        let wait = remaining.saturating_sub(Duration::from_millis(500)).min(LONGEST_POLL);
        if remaining.is_zero() {
            break;
        }
        let sync = match reader.sync(state.since.as_deref(), &filter, wait, remaining.saturating_sub(wait)).await {
            Ok(sync) => sync,
            Err(e) => return failed("read the room through /sync", &e),
        };
        let (ids, seen) = canaries_in(timeline(&sync, &reader_room), &sender_user, &tag);
        if seen {
            seen_after = Some(sent_at.elapsed());
        }
        state.to_redact.extend(ids);
        match next_batch(&sync) {
            Ok(next) => state.since = Some(next),
            Err(e) => return failed("read the room through /sync", &e),
        }
        if wait.is_zero() {
            break;
        }
    }
    if seen_after.is_some() && !state.to_redact.contains(&event_id) {
        // Seen as this event, or as the same tag: either way ours.
        state.to_redact.push(event_id.clone());
    }
    redact(state, &sender, &sender_room, deadline).await;
    match seen_after {
        Some(latency) => Round { latency: Some(latency), failure: None },
        None => Round {
            latency: None,
            failure: Some(format!(
                "the canary message {event_id} was sent but not seen through /sync within the check's timeout"
            )),
        },
    }
}

/// Redacts the canaries seen so far, oldest first, while the deadline allows; what fails
/// waits for the next round.
async fn redact(state: &mut State, sender: &MatrixClient, room_id: &str, deadline: Instant) {
    state.to_redact.dedup();
    let mut kept = Vec::new();
    for id in std::mem::take(&mut state.to_redact) {
        if left(deadline).is_zero() {
            kept.push(id);
            continue;
        }
        let txn = format!("mxwarden-canary-redact-{}", short_hash(&id));
        if let Err(e) = sender.redact(room_id, &id, &txn, "mxwarden canary seen", left(deadline)).await {
            tracing::debug!(event = %id, error = %e, "Canary message could not be redacted; trying next round.");
            kept.push(id);
        }
    }
    // A server that refuses every redaction must not grow this list without end.
    kept.truncate(1_000);
    state.to_redact = kept;
}

/// A short, stable hash of `text` (24 hex digits), for transaction ids.
fn short_hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_are_found_by_tag_and_only_the_senders_unredacted_ones_are_kept() {
        let events = vec![
            json!({"event_id": "$1", "sender": "@bot:x", "content": {TAG_KEY: "aaa", "body": "c"}}),
            json!({"event_id": "$2", "sender": "@bot:x", "content": {TAG_KEY: "bbb"}}),
            json!({"event_id": "$3", "sender": "@eve:x", "content": {TAG_KEY: "ccc"}}),
            json!({"event_id": "$4", "sender": "@bot:x", "content": {}, "unsigned": {"redacted_because": {}}}),
            json!({"event_id": "$5", "sender": "@bot:x", "content": {TAG_KEY: "ddd"}, "unsigned": {"redacted_because": {}}}),
            json!({"event_id": "$6", "sender": "@bot:x", "content": {"body": "hello"}}),
            json!("garbage"),
        ];
        let (ids, seen) = canaries_in(&events, "@bot:x", "bbb");
        assert!(seen);
        assert_eq!(ids, vec!["$1".to_string(), "$2".to_string()], "another's, redacted and plain messages left");
        let (_, seen) = canaries_in(&events, "@bot:x", "zzz");
        assert!(!seen);
        let (_, seen) = canaries_in(&events, "@bot:x", "ccc");
        assert!(seen, "the tag counts whoever sent it (a reader sees the sender's event)");
    }

    #[test]
    fn tags_are_sixteen_hex_digits_and_differ() {
        let (a, b) = (new_tag(), new_tag());
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
