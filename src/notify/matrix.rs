//! The Matrix receiver: client-server API v3 with the access token in the `Authorization`
//! header only (never in a URL). Joins the room once (which also resolves an alias and
//! accepts an invite; a room with `m.room.encryption` set is refused, as mxwarden does not do
//! end-to-end encryption), sends `m.room.message` with a plain and an HTML body under a
//! transaction id derived from the outbox row — so a retry after a crash can never post
//! twice — and threads every later message of an incident under its first one (`m.thread`).
//! Answers are read up to `RESPONSE_BODY_LIMIT`; a server's rate limit is honoured up to
//! `retry_after::MAX_RETRY_AFTER`.

use super::{Notification, RetryAfter, SendError};
use crate::text::escape_controls_in_prose;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use url::Url;

/// A Matrix room to post into.
#[derive(Debug, Clone)]
pub struct MatrixReceiver {
    /// Client API base URL.
    pub homeserver: Url,
    /// Room id or alias.
    pub room: String,
    /// The bot's access token.
    pub token: SecretString,
    /// `m.notice` or `m.text`.
    pub msgtype: String,
    room_id: Arc<OnceCell<String>>,
    /// Whether the room is known not to be encrypted.
    unencrypted: Arc<std::sync::atomic::AtomicBool>,
}

impl MatrixReceiver {
    /// A receiver for `room` on `homeserver`.
    pub(crate) fn new(homeserver: Url, room: String, token: SecretString, msgtype: String) -> Self {
        Self {
            homeserver,
            room,
            token,
            msgtype,
            room_id: Arc::new(OnceCell::new()),
            unencrypted: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.homeserver.clone();
        {
            let mut path = url.path_segments_mut().unwrap_or_else(|_| unreachable!("http(s) URLs have paths"));
            path.pop_if_empty();
            path.extend(["_matrix", "client", "v3"]);
            path.extend(segments);
        }
        url
    }

    /// Joins the room (idempotent; resolves aliases; accepts invites) and returns its id.
    async fn room_id(&self, http: &reqwest::Client) -> Result<String, SendError> {
        self.room_id
            .get_or_try_init(|| async {
                let url = self.endpoint(&["join", &self.room]);
                let body = self.call(http.post(url).json(&json!({})), "join the room").await?;
                body.get("room_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| SendError::transient("join answered without a room_id"))
            })
            .await
            .cloned()
    }

    /// mxwarden does not do end-to-end encryption: an encrypted room is refused (a permanent
    /// error saying what to do). A room whose state cannot be read now is not held against the
    /// page: it is sent, and the state is asked again next time.
    async fn refuse_encrypted(&self, http: &reqwest::Client, room_id: &str) -> Result<(), SendError> {
        use std::sync::atomic::Ordering;
        if self.unencrypted.load(Ordering::Relaxed) {
            return Ok(());
        }
        let client = crate::probe::matrix::MatrixClient::new(self.homeserver.clone(), self.token.clone(), http.clone());
        match client.encrypted(room_id, Duration::from_secs(30)).await {
            Ok(false) => {
                self.unencrypted.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(true) => Err(SendError::Permanent(crate::probe::matrix::encrypted_refusal(
                "the receiver's",
                &escape_controls_in_prose(&self.room),
            ))),
            Err(e) => {
                tracing::debug!(room = %escape_controls_in_prose(&self.room), error = %e, "The room's encryption state could not be read; sending anyway.");
                Ok(())
            }
        }
    }

    /// Sends `n` under transaction `txn`, in the thread of `thread_root` if given; returns the
    /// event id.
    pub(crate) async fn send(
        &self,
        http: &reqwest::Client,
        txn: &str,
        n: &Notification,
        thread_root: Option<&str>,
    ) -> Result<String, SendError> {
        let room_id = self.room_id(http).await?;
        self.refuse_encrypted(http, &room_id).await?;
        let mut content = json!({
            "msgtype": self.msgtype,
            "body": escape_controls_in_prose(&n.text),
            "format": "org.matrix.custom.html",
            "formatted_body": escape_controls_in_prose(&n.html),
        });
        if let Some(root) = thread_root {
            content["m.relates_to"] = json!({
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": true,
                "m.in_reply_to": { "event_id": root },
            });
        }
        let url = self.endpoint(&["rooms", &room_id, "send", "m.room.message", txn]);
        let body = self.call(http.put(url).json(&content), "send the message").await?;
        body.get("event_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| SendError::transient("send answered without an event_id"))
    }

    /// Performs a request with the token and classifies the outcome.
    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value, SendError> {
        let response =
            request.bearer_auth(self.token.expose_secret()).timeout(Duration::from_secs(30)).send().await.map_err(
                |e| {
                    SendError::transient(format!(
                        "could not {what}: {}",
                        crate::probe::explain_transport(&e, &self.homeserver)
                    ))
                },
            )?;
        let status = response.status().as_u16();
        let retry_header = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(RetryAfter::from_header);
        let (text, unread) = match super::read_capped(response).await {
            Ok((bytes, cut)) => (
                String::from_utf8_lossy(&bytes).into_owned(),
                cut.then(|| format!("its answer is over {} KiB and was not read", super::RESPONSE_BODY_LIMIT / 1024)),
            ),
            Err(e) => (String::new(), Some(crate::probe::explain_transport(&e, &self.homeserver))),
        };
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return match unread {
                Some(why) => Err(SendError::transient(format!("could not {what}: {why}"))),
                None => Ok(body),
            };
        }
        let errcode = body.get("errcode").and_then(Value::as_str).map_or_else(String::new, super::snippet);
        let error = body.get("error").and_then(Value::as_str).map_or_else(String::new, super::snippet);
        let mut message =
            format!("could not {what} in {}: {status} {errcode} {error}", self.room).trim_end().to_string();
        if let Some(why) = unread {
            message.push_str(&format!(" ({why})"));
        }
        Err(match status {
            429 => SendError::Transient {
                message,
                retry_after: body.get("retry_after_ms").and_then(RetryAfter::from_matrix_ms).or(retry_header),
            },
            408 | 500..=599 => SendError::Transient { message, retry_after: retry_header },
            _ => SendError::Permanent(message),
        })
    }
}
