//! A small Matrix client-server API v3 client, shared by the canary (`probe::canary`), the
//! control room (`crate::control`) and the Matrix receiver's encryption check: whoami, join,
//! room state, send, redact and `/sync`. The access token goes only into the `Authorization`
//! header, never into a URL or an error. Every answer is read up to a cap (`SMALL_BODY` for
//! ordinary calls, `SYNC_BODY` for `/sync`), every request has a deadline, and a server's
//! error is reported as its status, `errcode` and (shortened) `error`.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::time::Duration;
use url::Url;

/// Most bytes read of an ordinary answer (Matrix's JSON answers are a few hundred bytes).
const SMALL_BODY: usize = 64 * 1024;
/// Most bytes read of a `/sync` answer: a filtered sync of one room is a few KiB; more is a
/// broken or hostile server, and the round fails instead of buffering it.
pub(crate) const SYNC_BODY: usize = 4 * 1024 * 1024;

/// What went wrong talking to a homeserver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MatrixError {
    /// No answer: connection refused, DNS, TLS, timeout (in words).
    #[error("{0}")]
    Transport(String),
    /// The server answered with an error status.
    #[error("{}", describe_status(*status, errcode, error))]
    Status {
        /// HTTP status.
        status: u16,
        /// Matrix `errcode`, e.g. `M_FORBIDDEN` (control characters escaped).
        errcode: String,
        /// Matrix `error`, shortened and escaped.
        error: String,
    },
    /// A 2xx answer that is not what the API promises (not JSON, a field missing, too big).
    #[error("{0}")]
    Malformed(String),
}

/// `404 M_NOT_FOUND Room not found`, without blanks for what the server left out.
fn describe_status(status: u16, errcode: &str, error: &str) -> String {
    [status.to_string(), errcode.to_string(), error.to_string()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl MatrixError {
    /// Whether this is the server's 404 (`M_NOT_FOUND`).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
    }
}

/// The message a Matrix room with `m.room.encryption` set is refused with: mxwarden does not
/// do end-to-end encryption.
pub(crate) fn encrypted_refusal(what: &str, room: &str) -> String {
    format!(
        "{what} room {room} is end-to-end encrypted (its m.room.encryption state is set): mxwarden does not do \
         end-to-end encryption, so its messages would not be readable there and it could not read commands. \
         Encryption cannot be turned off in a room: create a new room with encryption off, invite the bot and \
         put that room in the config"
    )
}

/// Shortens a server's text for an error: control characters escaped, at most 200 characters.
fn snippet(text: &str) -> String {
    let text = text.trim();
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    crate::text::escape_controls(&cut).into_owned()
}

/// One account on one homeserver.
#[derive(Debug, Clone)]
pub(crate) struct MatrixClient {
    homeserver: Url,
    token: SecretString,
    http: reqwest::Client,
}

impl MatrixClient {
    /// A client for the account whose access token is `token` on `homeserver`.
    pub(crate) fn new(homeserver: Url, token: SecretString, http: reqwest::Client) -> Self {
        Self { homeserver, token, http }
    }

    /// A transport failure in words, naming the homeserver but never the request's URL (a
    /// `/sync` URL carries a long filter).
    fn transport(&self, e: reqwest::Error, timeout: Duration) -> MatrixError {
        let host = self.homeserver.host_str().unwrap_or("?");
        if e.is_timeout() {
            return MatrixError::Transport(format!(
                "{host} did not answer within {}",
                crate::units::HumanDuration(Duration::from_millis(timeout.as_millis().try_into().unwrap_or(u64::MAX)))
            ));
        }
        MatrixError::Transport(super::explain_transport(&e.without_url(), &self.homeserver))
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.homeserver.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(["_matrix", "client", "v3"]);
            path.extend(segments);
        }
        url
    }

    /// One request: `body` as JSON when given, the answer's JSON read up to `cap` bytes, all
    /// within `timeout`.
    async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        timeout: Duration,
        cap: usize,
    ) -> Result<Value, MatrixError> {
        let mut url = self.endpoint(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose_secret())
            .timeout(timeout.max(Duration::from_millis(1)));
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(|e| self.transport(e, timeout))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        let mut cut = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > cap {
                        cut = true;
                        break;
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport(e, timeout)),
            }
        }
        if cut {
            return Err(MatrixError::Malformed(format!(
                "the answer (status {status}) is over {} KiB and was not read",
                cap / 1024
            )));
        }
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            return json.ok_or_else(|| MatrixError::Malformed(format!("status {status} with a body that is not JSON")));
        }
        let field = |name: &str| {
            json.as_ref().and_then(|j| j.get(name)).and_then(Value::as_str).map_or_else(String::new, snippet)
        };
        Err(MatrixError::Status { status, errcode: field("errcode"), error: field("error") })
    }

    /// The account's user id (`GET /account/whoami`).
    pub(crate) async fn whoami(&self, timeout: Duration) -> Result<String, MatrixError> {
        let body = self.call(reqwest::Method::GET, &["account", "whoami"], &[], None, timeout, SMALL_BODY).await?;
        string_field(&body, "user_id", "whoami")
    }

    /// Joins `room` (an id or an alias; idempotent; accepts an invite) and returns its id.
    pub(crate) async fn join(&self, room: &str, timeout: Duration) -> Result<String, MatrixError> {
        let body =
            self.call(reqwest::Method::POST, &["join", room], &[], Some(&json!({})), timeout, SMALL_BODY).await?;
        string_field(&body, "room_id", "join")
    }

    /// Whether the room has `m.room.encryption` state (the account must be in the room).
    pub(crate) async fn encrypted(&self, room_id: &str, timeout: Duration) -> Result<bool, MatrixError> {
        match self
            .call(
                reqwest::Method::GET,
                &["rooms", room_id, "state", "m.room.encryption", ""],
                &[],
                None,
                timeout,
                SMALL_BODY,
            )
            .await
        {
            Ok(content) => Ok(content.get("algorithm").is_some() || content.as_object().is_some_and(|o| !o.is_empty())),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends an `m.room.message` with `content` under transaction `txn`; returns the event id.
    pub(crate) async fn send(
        &self,
        room_id: &str,
        txn: &str,
        content: &Value,
        timeout: Duration,
    ) -> Result<String, MatrixError> {
        let segments = ["rooms", room_id, "send", "m.room.message", txn];
        let body = self.call(reqwest::Method::PUT, &segments, &[], Some(content), timeout, SMALL_BODY).await?;
        string_field(&body, "event_id", "send")
    }

    /// Redacts `event_id` under transaction `txn`.
    pub(crate) async fn redact(
        &self,
        room_id: &str,
        event_id: &str,
        txn: &str,
        reason: &str,
        timeout: Duration,
    ) -> Result<(), MatrixError> {
        let segments = ["rooms", room_id, "redact", event_id, txn];
        self.call(reqwest::Method::PUT, &segments, &[], Some(&json!({ "reason": reason })), timeout, SMALL_BODY)
            .await
            .map(|_| ())
    }

    /// One page of a room's messages, newest first, from `from` back to `to` (`GET
    /// /rooms/{id}/messages?dir=b`): the events and the token of the next page, if any.
    pub(crate) async fn messages_back(
        &self,
        room_id: &str,
        from: &str,
        to: &str,
        limit: u32,
        timeout: Duration,
    ) -> Result<(Vec<Value>, Option<String>), MatrixError> {
        let limit = limit.to_string();
        let filter = json!({ "types": ["m.room.message"] }).to_string();
        let query = [("dir", "b"), ("from", from), ("to", to), ("limit", limit.as_str()), ("filter", filter.as_str())];
        let body =
            self.call(reqwest::Method::GET, &["rooms", room_id, "messages"], &query, None, timeout, SYNC_BODY).await?;
        let chunk = body.get("chunk").and_then(Value::as_array).cloned().unwrap_or_default();
        let end = body.get("end").and_then(Value::as_str).filter(|e| !e.is_empty() && e.len() <= 4096 && *e != from);
        Ok((chunk, end.map(str::to_string)))
    }

    /// One `/sync`: from `since` (none: the first), with the inline `filter`, waiting up to
    /// `wait` for news; the whole request within `wait` plus `slack`.
    pub(crate) async fn sync(
        &self,
        since: Option<&str>,
        filter: &str,
        wait: Duration,
        slack: Duration,
    ) -> Result<Value, MatrixError> {
        let wait_ms = wait.as_millis().to_string();
        let mut query = vec![("filter", filter), ("timeout", wait_ms.as_str())];
        if let Some(since) = since {
            query.push(("since", since));
        }
        self.call(reqwest::Method::GET, &["sync"], &query, None, wait + slack, SYNC_BODY).await
    }
}

fn string_field(body: &Value, field: &str, what: &str) -> Result<String, MatrixError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .map(str::to_string)
        .ok_or_else(|| MatrixError::Malformed(format!("{what} answered without a usable `{field}`")))
}

/// A `/sync` filter for one room's messages only (no presence, account data, receipts or
/// typing), at most `limit` timeline events per answer.
pub(crate) fn room_filter(room_id: &str, limit: u32) -> String {
    json!({
        "presence": { "not_types": ["*"] },
        "account_data": { "not_types": ["*"] },
        "room": {
            "rooms": [room_id],
            "timeline": { "limit": limit, "types": ["m.room.message"] },
            "state": { "not_types": ["*"] },
            "ephemeral": { "not_types": ["*"] },
            "account_data": { "not_types": ["*"] },
        },
    })
    .to_string()
}

/// The `next_batch` of a `/sync` answer (an opaque token, at most 4 KiB).
pub(crate) fn next_batch(sync: &Value) -> Result<String, MatrixError> {
    sync.get("next_batch")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 4096)
        .map(str::to_string)
        .ok_or_else(|| MatrixError::Malformed("sync answered without a usable `next_batch`".into()))
}

/// When the `/sync` answer's timeline of `room_id` is `limited` (events between the last
/// answer and these were left out), the token to page back from.
pub(crate) fn gap(sync: &Value, room_id: &str) -> Option<String> {
    let t = sync.get("rooms")?.get("join")?.get(room_id)?.get("timeline")?;
    if t.get("limited").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    t.get("prev_batch").and_then(Value::as_str).filter(|p| !p.is_empty() && p.len() <= 4096).map(str::to_string)
}

/// The timeline events of `room_id` in a `/sync` answer (none when the room is not in it).
pub(crate) fn timeline<'a>(sync: &'a Value, room_id: &str) -> &'a [Value] {
    sync.get("rooms")
        .and_then(|r| r.get("join"))
        .and_then(|j| j.get(room_id))
        .and_then(|r| r.get("timeline"))
        .and_then(|t| t.get("events"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_reads_only_the_room_asked_for_and_tolerates_garbage() {
        let sync =
            json!({"next_batch": "s1", "rooms": {"join": {"!a:x": {"timeline": {"events": [{"event_id": "$1"}]}}}}});
        assert_eq!(timeline(&sync, "!a:x").len(), 1);
        assert!(timeline(&sync, "!b:x").is_empty(), "another room");
        assert!(timeline(&json!({"rooms": {"join": {"!a:x": {"timeline": {"events": 5}}}}}), "!a:x").is_empty());
        assert!(timeline(&json!([1, 2]), "!a:x").is_empty(), "not an object");
        assert_eq!(next_batch(&sync).unwrap(), "s1");
        assert!(next_batch(&json!({"next_batch": ""})).is_err(), "empty");
        assert!(next_batch(&json!({"next_batch": 5})).is_err(), "not a string");
    }

    #[test]
    fn a_gap_is_a_limited_timeline_with_a_token() {
        let limited =
            json!({"rooms": {"join": {"!a": {"timeline": {"limited": true, "prev_batch": "t1", "events": []}}}}});
        assert_eq!(gap(&limited, "!a").as_deref(), Some("t1"));
        assert_eq!(gap(&limited, "!b"), None, "another room");
        let whole = json!({"rooms": {"join": {"!a": {"timeline": {"limited": false, "prev_batch": "t1"}}}}});
        assert_eq!(gap(&whole, "!a"), None);
        let no_token = json!({"rooms": {"join": {"!a": {"timeline": {"limited": true}}}}});
        assert_eq!(gap(&no_token, "!a"), None);
    }

    #[test]
    fn the_room_filter_is_json_naming_the_room() {
        let f: Value = serde_json::from_str(&room_filter("!r:x", 20)).unwrap();
        assert_eq!(f["room"]["rooms"][0], "!r:x");
        assert_eq!(f["room"]["timeline"]["limit"], 20);
    }

    #[test]
    fn the_refusal_says_what_and_what_to_do() {
        let m = encrypted_refusal("receiver ops:", "#ops:x");
        assert!(m.contains("end-to-end encrypted") && m.contains("create a new room with encryption off"), "{m}");
    }
}
