//! A Matrix receiver: its token is valid, its room exists, the bot has joined it, it is not
//! encrypted (mxwarden posts plain `m.room.message` events, which members of an encrypted
//! room may never see) and the bot's power level lets it post. Read-only: whoami, the room
//! directory, `joined_rooms` and two state events.

use super::{Answer, Area, Finding, call, endpoint};
use crate::notify::matrix::MatrixReceiver;
use serde_json::Value;

/// Everything the homeserver said about one receiver, in the order it was asked; a step is
/// `None` when an earlier one failed and it was not asked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// `GET /account/whoami`.
    pub whoami: Option<Answer>,
    /// `GET /directory/room/{alias}` (aliases only).
    pub alias: Option<Answer>,
    /// `GET /joined_rooms`.
    pub joined: Option<Answer>,
    /// `GET /rooms/{id}/state/m.room.encryption/`.
    pub encryption: Option<Answer>,
    /// `GET /rooms/{id}/state/m.room.power_levels/`.
    pub power_levels: Option<Answer>,
}

/// Asks the homeserver, step by step, stopping where a step fails.
pub(crate) async fn check(http: &reqwest::Client, name: &str, r: &MatrixReceiver) -> Vec<Finding> {
    let api = |segments: &[&str]| {
        let mut all = vec!["_matrix", "client", "v3"];
        all.extend_from_slice(segments);
        endpoint(&r.homeserver, &all)
    };
    let get = |url: url::Url| async move { call(http.get(url), Some(&r.token), &r.homeserver).await };
    let mut seen = Seen { whoami: Some(get(api(&["account", "whoami"])).await), ..Seen::default() };
    let mut findings = judge(name, &r.room, &seen);
    if findings.iter().any(|f| f.outcome == super::Outcome::Fail) {
        return findings;
    }
    if r.room.starts_with('#') {
        seen.alias = Some(get(api(&["directory", "room", &r.room])).await);
    }
    seen.joined = Some(get(api(&["joined_rooms"])).await);
    if let Some(room_id) = room_id(&r.room, &seen)
        && joined(&room_id, &seen)
    {
        seen.encryption = Some(get(api(&["rooms", &room_id, "state", "m.room.encryption", ""])).await);
        seen.power_levels = Some(get(api(&["rooms", &room_id, "state", "m.room.power_levels", ""])).await);
    }
    findings = judge(name, &r.room, &seen);
    findings
}

fn room_id(room: &str, seen: &Seen) -> Option<String> {
    if !room.starts_with('#') {
        return Some(room.to_string());
    }
    match &seen.alias {
        Some(Answer::Http(200, body)) => body.get("room_id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn joined(room_id: &str, seen: &Seen) -> bool {
    match &seen.joined {
        Some(Answer::Http(200, body)) => body
            .get("joined_rooms")
            .and_then(Value::as_array)
            .is_some_and(|rooms| rooms.iter().any(|r| r.as_str() == Some(room_id))),
        _ => false,
    }
}

/// The findings for one receiver from what the homeserver said (pure).
pub(crate) fn judge(name: &str, room: &str, seen: &Seen) -> Vec<Finding> {
    let room_shown = crate::text::escape_controls(room).into_owned();
    let fail = |check, detail: String, fix: String| Finding::fail(Area::Matrix, name, check, detail, fix);
    let pass = |check, detail: String| Finding::pass(Area::Matrix, name, check, detail);
    let mut out = Vec::new();
    let Some(whoami) = &seen.whoami else { return out };
    let user = match whoami {
        Answer::Http(200, body) => match body.get("user_id").and_then(Value::as_str) {
            Some(user) => crate::text::escape_controls(user).into_owned(),
            None => {
                out.push(fail(
                    "token",
                    "whoami answered without a user_id".into(),
                    "check `homeserver`: it must be the client API's base URL".into(),
                ));
                return out;
            }
        },
        Answer::Http(401, _) => {
            out.push(fail(
                "token",
                format!("the homeserver does not know the bot's token ({})", whoami.describe()),
                "log the bot in again (`curl -XPOST .../_matrix/client/v3/login` or, with MAS, a compatibility token) \
                 and put the new token in the variable `access_token` names"
                    .into(),
            ));
            return out;
        }
        other => {
            out.push(fail(
                "token",
                format!("whoami: {}", other.describe()),
                "check `homeserver` and that it is up".into(),
            ));
            return out;
        }
    };
    out.push(pass("token", format!("valid, the bot is {user}")));
    if seen.joined.is_none() {
        return out;
    }
    if room.starts_with('#') {
        match &seen.alias {
            Some(Answer::Http(200, _)) if room_id(room, seen).is_some() => {}
            Some(a) if a.errcode() == Some("M_NOT_FOUND") => {
                out.push(fail(
                    "room exists",
                    format!("no room has the alias {room_shown}"),
                    format!("create the room (unencrypted), give it the alias {room_shown} and invite {user}, or correct `room`"),
                ));
                return out;
            }
            other => {
                let what = other.as_ref().map_or_else(|| "not asked".to_string(), Answer::describe);
                out.push(fail(
                    "room exists",
                    format!("resolving {room_shown}: {what}"),
                    "check `room` and `homeserver`".into(),
                ));
                return out;
            }
        }
    }
    let Some(id) = room_id(room, seen) else { return out };
    if !joined(&id, seen) {
        out.push(fail(
            "joined",
            format!("{user} has not joined {room_shown}"),
            format!(
                "invite {user} into {room_shown} (mxwarden joins when invited, on its first message: `mxwarden notify \
                 test {name}` sends one now)"
            ),
        ));
        return out;
    }
    out.push(pass("joined", format!("{user} is in {room_shown}")));
    match &seen.encryption {
        Some(Answer::Http(200, body)) => {
            let algorithm = body.get("algorithm").and_then(Value::as_str).unwrap_or("?");
            out.push(fail(
                "room not encrypted",
                format!("{room_shown} is encrypted ({})", crate::text::escape_controls(algorithm)),
                "mxwarden posts unencrypted messages, which clients in an encrypted room may hide or flag; encryption \
                 cannot be turned off, so create a new room without encryption for alerts and point `room` at it"
                    .into(),
            ));
        }
        Some(a) if a.errcode() == Some("M_NOT_FOUND") => {
            out.push(pass("room not encrypted", format!("{room_shown} is not encrypted")))
        }
        Some(other) => out.push(fail(
            "room not encrypted",
            format!("reading the room's encryption state: {}", other.describe()),
            "check that the bot can read the room's state".into(),
        )),
        None => {}
    }
    if let Some(Answer::Http(200, levels)) = &seen.power_levels {
        let (has, needs) = post_levels(levels, &user);
        if has >= needs {
            out.push(pass("may post", format!("power level {has}, messages need {needs}")));
        } else {
            out.push(fail(
                "may post",
                format!("{user} has power level {has}; messages in {room_shown} need {needs}"),
                format!("raise {user}'s power level in {room_shown} to {needs} (room settings → Roles & permissions)"),
            ));
        }
    }
    out
}

/// The user's power level and what `m.room.message` needs, per the spec's defaults.
pub(crate) fn post_levels(levels: &Value, user: &str) -> (i64, i64) {
    let int = |v: Option<&Value>| v.and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
    let has = int(levels.get("users").and_then(|u| u.get(user))).or(int(levels.get("users_default"))).unwrap_or(0);
    let needs = int(levels.get("events").and_then(|e| e.get("m.room.message")))
        .or(int(levels.get("events_default")))
        .unwrap_or(0);
    (has, needs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Outcome;
    use serde_json::json;

    fn healthy_seen() -> Seen {
        Seen {
            whoami: Some(Answer::Http(200, json!({"user_id": "@bot:hs"}))),
            alias: Some(Answer::Http(200, json!({"room_id": "!r:hs"}))),
            joined: Some(Answer::Http(200, json!({"joined_rooms": ["!x:hs", "!r:hs"]}))),
            encryption: Some(Answer::Http(404, json!({"errcode": "M_NOT_FOUND"}))),
            power_levels: Some(Answer::Http(200, json!({"users": {"@bot:hs": 0}, "events_default": 0}))),
        }
    }

    #[test]
    fn verdicts() {
        let ok = healthy_seen();
        let mut bad_token = ok.clone();
        bad_token.whoami = Some(Answer::Http(401, json!({"errcode": "M_UNKNOWN_TOKEN"})));
        let mut no_room = ok.clone();
        no_room.alias = Some(Answer::Http(404, json!({"errcode": "M_NOT_FOUND"})));
        let mut not_joined = ok.clone();
        not_joined.joined = Some(Answer::Http(200, json!({"joined_rooms": []})));
        let mut encrypted = ok.clone();
        encrypted.encryption = Some(Answer::Http(200, json!({"algorithm": "m.megolm.v1.aes-sha2"})));
        let mut muted = ok.clone();
        muted.power_levels = Some(Answer::Http(200, json!({"events": {"m.room.message": 50}, "users_default": 0})));
        let cases = [
            (ok, None, "a healthy receiver: every step passes"),
            (bad_token, Some(("token", "log the bot in again")), "a wrong token stops at the first step"),
            (no_room, Some(("room exists", "create the room")), "an alias nobody has"),
            (not_joined, Some(("joined", "invite @bot:hs")), "invited or not, not joined yet"),
            (encrypted, Some(("room not encrypted", "create a new room without encryption")), "an encrypted room"),
            (muted, Some(("may post", "raise @bot:hs's power level")), "the bot may not post"),
        ];
        for (seen, want, why) in cases {
            let findings = judge("ops-room", "#ops:hs", &seen);
            let failed: Vec<&Finding> = findings.iter().filter(|f| f.outcome == Outcome::Fail).collect();
            match want {
                None => {
                    assert!(failed.is_empty(), "{why}: {findings:?}");
                    assert_eq!(findings.len(), 4, "{why}: token, joined, not encrypted, may post");
                }
                Some((check, fix)) => {
                    assert_eq!(failed.len(), 1, "{why}: {findings:?}");
                    assert_eq!(failed[0].check, check, "{why}");
                    assert!(failed[0].fix.as_deref().unwrap().contains(fix), "{why}: {:?}", failed[0].fix);
                }
            }
        }
    }

    #[test]
    fn power_levels_follow_the_spec_defaults() {
        let cases = [
            (json!({}), (0, 0), "no power levels: everyone 0, messages 0"),
            (json!({"users_default": 10, "events_default": 20}), (10, 20), "defaults"),
            (json!({"users": {"@bot:hs": 100}, "events": {"m.room.message": 50}}), (100, 50), "explicit"),
            (json!({"users": {"@bot:hs": "75"}}), (75, 0), "old rooms keep levels as strings"),
        ];
        for (levels, want, why) in cases {
            assert_eq!(post_levels(&levels, "@bot:hs"), want, "{why}");
        }
    }
}
