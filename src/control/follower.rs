//! The control room's follower: one task that long-polls `/sync` for the control room's
//! messages, from a `since` token kept in the store (so a restart resumes where it stopped:
//! nothing missed, nothing run twice — each command is claimed by its event id before it
//! runs). On its very first start it begins at "now": old messages are never run. When more
//! happened than one answer holds (a `limited` timeline, after a long downtime), the messages
//! in between are fetched back through `/messages` first (at most `GAP_PAGES` pages). Commands
//! from users not in `allowed_users` are ignored and logged; parse errors are answered; each
//! accepted command is audited with who and when and answered in a thread on it. Transient
//! failures back off from 1 s to 1 min; an encrypted room is refused.

use super::actions::{COMMANDS, Ctx, Reply, Thread, specs};
use super::command::{ParseError, Spec, parse};
use crate::clock::Clock;
use crate::config::ControlSettings;
use crate::live::Live;
use crate::maintenance::Calendar;
use crate::probe::matrix::{MatrixClient, encrypted_refusal, gap, next_batch, room_filter, timeline};
use crate::store::Store;
use crate::store::control as cstore;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long one `/sync` waits for news.
const POLL: Duration = Duration::from_secs(30);
/// Timeline events per `/sync` answer.
const TIMELINE_LIMIT: u32 = 100;
/// Ordinary calls' deadline.
const CALL: Duration = Duration::from_secs(30);
/// The most pages (of `TIMELINE_LIMIT` messages) fetched back to fill a `/sync` gap.
const GAP_PAGES: usize = 20;

/// What the follower needs from the daemon.
pub(crate) struct Parts {
    /// The control room and its bot.
    pub(crate) settings: ControlSettings,
    /// The store.
    pub(crate) store: Store,
    /// The daemon's view.
    pub(crate) live: Arc<Live>,
    /// Maintenance windows.
    pub(crate) calendar: Arc<Calendar>,
    /// Services a window may name.
    pub(crate) services: BTreeSet<String>,
    /// Time.
    pub(crate) clock: Arc<dyn Clock>,
    /// Backups, if configured.
    pub(crate) backup: Option<Arc<crate::backup::BackupPlan>>,
    /// Evaluation health.
    pub(crate) watchdog: Arc<crate::watchdog::Watchdog>,
    /// The running config (for `!diagnose`).
    pub(crate) config: Arc<crate::config::Config>,
    /// HTTP client.
    pub(crate) http: reqwest::Client,
}

/// A short hash of `text` for transaction ids.
fn short_hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12])
}

/// Posts `text` as an `m.notice` in the thread of `thread`'s event, under a transaction id
/// made from `key` and the event (a retry is the same message). Failures are logged.
pub(crate) async fn post_in_thread(thread: &Thread, key: &str, text: &str) {
    let content = json!({
        "msgtype": "m.notice",
        "body": crate::text::escape_controls_in_prose(text),
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": thread.event_id,
            "is_falling_back": true,
            "m.in_reply_to": { "event_id": thread.event_id },
        },
    });
    let txn = format!("mxwarden-reply-{}", short_hash(&format!("{key}:{}", thread.event_id)));
    if let Err(e) = thread.client.send(&thread.room_id, &txn, &content, CALL).await {
        tracing::warn!(error = %e, "Reply to a control-room command could not be sent.");
    }
}

/// The room's messages between `since` (the last answer's token) and `from` (a limited
/// timeline's `prev_batch`), oldest first, at most `GAP_PAGES` pages; what is older than that
/// is logged as skipped.
async fn fill_gap(client: &MatrixClient, room_id: &str, from: &str, since: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut token = from.to_string();
    for _ in 0..GAP_PAGES {
        match client.messages_back(room_id, &token, since, TIMELINE_LIMIT, CALL).await {
            Ok((chunk, next)) => {
                let empty = chunk.is_empty();
                events.extend(chunk);
                match next {
                    Some(next) if !empty => token = next,
                    _ => {
                        events.reverse();
                        return events;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Control-room messages missed in a gap could not be fetched; they are skipped.");
                events.reverse();
                return events;
            }
        }
    }
    tracing::warn!(
        pages = GAP_PAGES,
        "More control-room messages were missed than are fetched back; older ones are skipped."
    );
    events.reverse();
    events
}

/// A command message worth looking at: its event id, sender, body and thread root.
struct Message<'a> {
    event_id: &'a str,
    sender: &'a str,
    body: &'a str,
    root: &'a str,
}

/// The messages of `events` that may be commands: `m.room.message` with `m.text` (bots'
/// `m.notice` is never obeyed), not from `me`, not an edit, with sane ids.
fn messages<'a>(events: &'a [Value], me: &str) -> Vec<Message<'a>> {
    let mut out = Vec::new();
    for e in events {
        let str_of = |v: Option<&'a Value>| v.and_then(Value::as_str);
        if str_of(e.get("type")) != Some("m.room.message") {
            continue;
        }
        let (Some(event_id), Some(sender)) = (str_of(e.get("event_id")), str_of(e.get("sender"))) else { continue };
        if sender == me || event_id.len() > 255 || sender.len() > 255 {
            continue;
        }
        let Some(content) = e.get("content") else { continue };
        if str_of(content.get("msgtype")) != Some("m.text") {
            continue;
        }
        let relates = content.get("m.relates_to");
        let rel_type = str_of(relates.and_then(|r| r.get("rel_type")));
        if rel_type == Some("m.replace") {
            continue; // an edit: the command ran (or was refused) as first written
        }
        let Some(body) = str_of(content.get("body")) else { continue };
        // A command inside a thread is answered in that thread.
        let root = match (rel_type, str_of(relates.and_then(|r| r.get("event_id")))) {
            (Some("m.thread"), Some(root)) if root.len() <= 255 => root,
            _ => event_id,
        };
        out.push(Message { event_id, sender, body, root });
    }
    out
}

/// The follower.
pub(crate) struct Follower {
    parts: Parts,
    specs: Vec<Spec>,
}

impl Follower {
    /// A follower of `parts.settings.room`.
    pub(crate) fn new(parts: Parts) -> Self {
        Self { parts, specs: specs() }
    }

    fn client(&self) -> MatrixClient {
        let s = &self.parts.settings;
        MatrixClient::new(s.homeserver.clone(), s.token.clone(), self.parts.http.clone())
    }

    /// Follows the room until `stop`.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let client = self.client();
        let room = self.parts.settings.room.clone();
        let mut backoff = Duration::from_secs(1);
        // Who am I, which room, is it encrypted: retried until known.
        let (me, room_id) = loop {
            let attempt = async {
                let me = client.whoami(CALL).await.map_err(|e| format!("cannot identify the bot: {e}"))?;
                let room_id = client.join(&room, CALL).await.map_err(|e| format!("cannot join {room}: {e}"))?;
                match client.encrypted(&room_id, CALL).await {
                    Ok(false) => Ok(Some((me, room_id))),
                    Ok(true) => Ok(None),
                    Err(e) => Err(format!("cannot read the encryption state of {room}: {e}")),
                }
            };
            match attempt.await {
                Ok(Some(found)) => break found,
                Ok(None) => {
                    tracing::error!("{}", encrypted_refusal("The control", &crate::text::escape_controls(&room)));
                    return;
                }
                Err(why) => {
                    tracing::warn!(error = %why, "Control room not followed yet; retrying.");
                    tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.changed() => return }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        };
        tracing::info!(room = %room, bot = %me, "Following the control room.");
        let room = crate::text::escape_controls(&room).into_owned();
        let filter = room_filter(&room_id, TIMELINE_LIMIT);
        let mut since = match cstore::since(&self.parts.store, &me).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "The control room's position could not be read; starting from now.");
                None
            }
        };
        backoff = Duration::from_secs(1);
        loop {
            // The first sync ever starts at "now": it only yields the token.
            let wait = if since.is_some() { POLL } else { Duration::ZERO };
            let sync = tokio::select! {
                r = client.sync(since.as_deref(), &filter, wait, CALL) => r,
                _ = stop.changed() => return,
            };
            let sync = match sync.and_then(|s| next_batch(&s).map(|n| (s, n))) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "Control room sync failed; retrying.");
                    tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.changed() => return }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            };
            backoff = Duration::from_secs(1);
            let (answer, next) = sync;
            if let Some(old) = &since {
                // More happened than one answer holds (mxwarden was down a while): the
                // messages in between are fetched back first, oldest first.
                if let Some(from) = gap(&answer, &room_id) {
                    let missed = fill_gap(&client, &room_id, &from, old).await;
                    for m in messages(&missed, &me) {
                        self.handle(&client, &room_id, &m).await;
                    }
                }
                let events = timeline(&answer, &room_id);
                for m in messages(events, &me) {
                    self.handle(&client, &room_id, &m).await;
                }
            }
            if let Err(e) = cstore::set_since(&self.parts.store, &me, &next).await {
                // Claimed commands are not run again, so resuming from the old token is safe.
                tracing::error!(error = %e, "The control room's position could not be stored.");
            }
            if since.is_none() {
                tracing::info!(room = %room, "First start in the control room: commands from now on are obeyed.");
            }
            since = Some(next);
        }
    }

    /// One message: ignored, refused with a reason, or run, audited and answered.
    async fn handle(&self, client: &MatrixClient, room_id: &str, m: &Message<'_>) {
        let thread = Thread { client: client.clone(), room_id: room_id.to_string(), event_id: m.root.to_string() };
        let parsed = parse(m.body, &self.specs);
        if matches!(parsed, Ok(None)) {
            return;
        }
        let sender = crate::text::escape_controls(m.sender);
        if !self.parts.settings.allowed_users.contains(m.sender) {
            let what = match &parsed {
                Ok(Some(p)) => format!("!{}", p.name),
                Ok(None) => String::new(),
                Err(ParseError::Unknown { name, .. }) => format!("!{name}"),
                Err(_) => "a command".into(),
            };
            tracing::warn!(sender = %sender, command = %what, event = %m.event_id, "Command from a user who is not allowed; ignored.");
            return;
        }
        let parsed = match parsed {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::info!(sender = %sender, error = %e, "Control-room command refused.");
                post_in_thread(&thread, m.event_id, &format!("Not done: {e}")).await;
                return;
            }
        };
        let shown = parsed.shown();
        let now = self.parts.clock.now().as_millisecond();
        match cstore::claim(&self.parts.store, m.event_id, now, m.sender, &self.parts.settings.room, &shown).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(event = %m.event_id, "Command already handled before a restart; not run again.");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "A control-room command could not be recorded; not run.");
                post_in_thread(
                    &thread,
                    m.event_id,
                    "Not done: the command could not be recorded (the store refuses writes).",
                )
                .await;
                return;
            }
        }
        tracing::info!(sender = %sender, command = %shown, "Control-room command accepted.");
        let cx = Ctx {
            store: self.parts.store.clone(),
            live: self.parts.live.clone(),
            calendar: self.parts.calendar.clone(),
            services: self.parts.services.clone(),
            clock: self.parts.clock.clone(),
            backup: self.parts.backup.clone(),
            watchdog: self.parts.watchdog.clone(),
            config: self.parts.config.clone(),
            sender: m.sender.to_string(),
            thread: thread.clone(),
        };
        // The parser's table is `COMMANDS`' declarations, in order.
        let reply: Reply = match COMMANDS.get(parsed.index) {
            Some(command) => (command.run)(&cx, &parsed.args).await,
            None => Reply { text: format!("`!{}` has no handler", parsed.name), ok: false },
        };
        let text = if reply.ok { reply.text.clone() } else { format!("Not done: {}", reply.text) };
        post_in_thread(&thread, m.event_id, &text).await;
        let outcome: String = text.chars().take(500).collect();
        if let Err(e) = cstore::finish(&self.parts.store, m.event_id, &outcome).await {
            tracing::error!(error = %e, "A control-room command's outcome could not be recorded.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_text_messages_of_others_are_read_and_threads_are_kept() {
        let events = vec![
            json!({"type": "m.room.message", "event_id": "$1", "sender": "@admin:x", "content": {"msgtype": "m.text", "body": "!status"}}),
            json!({"type": "m.room.message", "event_id": "$2", "sender": "@bot:x", "content": {"msgtype": "m.text", "body": "!status"}}),
            json!({"type": "m.room.message", "event_id": "$3", "sender": "@admin:x", "content": {"msgtype": "m.notice", "body": "!status"}}),
            json!({"type": "m.room.message", "event_id": "$4", "sender": "@admin:x", "content": {"msgtype": "m.text", "body": "!ack x", "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"}}}),
            json!({"type": "m.room.message", "event_id": "$5", "sender": "@admin:x", "content": {"msgtype": "m.text", "body": "!alerts", "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}}),
            json!({"type": "m.room.member", "event_id": "$6", "sender": "@admin:x", "content": {}}),
            json!({"type": "m.room.message", "event_id": "$7", "sender": "@admin:x", "content": {"msgtype": "m.text", "body": 5}}),
            json!({"type": "m.room.message", "event_id": "$8", "content": {"msgtype": "m.text", "body": "!status"}}),
            json!("garbage"),
        ];
        let found = messages(&events, "@bot:x");
        let ids: Vec<(&str, &str)> = found.iter().map(|m| (m.event_id, m.root)).collect();
        assert_eq!(ids, vec![("$1", "$1"), ("$5", "$root")], "own, notices, edits, non-messages and garbage skipped");
    }
}
