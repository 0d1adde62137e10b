//! Builds the Matrix-facing extras: `control:` (the room commands come from and who may give
//! them), `heartbeat:` (the dead man's switch mxwarden pings) and `matrix_canary:` checks.
//! Every problem names its key and line; tokens are read like every other secret.

use super::build::{Problems, parse_url, secret};
use super::schema::{ControlConfig, HeartbeatConfig, MatrixCanaryConfig};
use crate::notify::{Alerting, Receiver};
use crate::probe::canary::{CanaryAccount, CanarySpec};
use secrecy::{ExposeSecret, SecretString};
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeSet;
use std::time::Duration;
use url::Url;

/// The control room, ready to follow.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// The bot's homeserver.
    pub homeserver: Url,
    /// The bot's access token.
    pub token: SecretString,
    /// Room id or alias.
    pub room: String,
    /// Whose commands are obeyed.
    pub allowed_users: BTreeSet<String>,
}

/// The heartbeat, ready to ping.
#[derive(Debug, Clone)]
pub struct HeartbeatSettings {
    /// The ping URL (a secret: shown as scheme and host only).
    pub url: SecretString,
    /// How often.
    pub every: Duration,
    /// `POST` instead of `GET`.
    pub post: bool,
}

/// Whether `text` looks like a Matrix user id: `@localpart:server`, no blanks or controls,
/// at most 255 bytes (the spec's limit).
pub(crate) fn is_user_id(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('@') else { return false };
    let Some((local, server)) = rest.split_once(':') else { return false };
    text.len() <= 255
        && !local.is_empty()
        && !server.is_empty()
        && text.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// Whether `text` looks like a room id (`!opaque`, with `:server` before room version 12) or
/// an alias (`#name:server`): no blanks or controls, at most 255 bytes.
pub(crate) fn is_room(text: &str) -> bool {
    let clean = text.len() <= 255 && text.len() > 1 && text.chars().all(|c| !c.is_whitespace() && !c.is_control());
    clean && (text.starts_with('!') || (text.starts_with('#') && text.contains(':')))
}

/// The first Matrix receiver's homeserver and token (receivers in name order).
fn first_matrix(alerting: Option<&Alerting>) -> Option<(Url, SecretString)> {
    alerting?.receivers.values().find_map(|r| match r {
        Receiver::Matrix(m) => Some((m.homeserver.clone(), m.token.clone())),
        _ => None,
    })
}

/// Builds `control:`.
pub(super) fn control(
    spanned: &Spanned<ControlConfig>,
    alerting: Option<&Alerting>,
    problems: &mut Problems<'_>,
) -> Option<ControlSettings> {
    let c = &spanned.value;
    let here = spanned.referenced;
    let room = c.room.value.trim();
    if !is_room(room) {
        problems.add(
            &c.room.referenced,
            "control.room",
            format!("`{room}` is not a room id (`!abc`) or alias (`#ops:example.org`)"),
        );
    }
    if c.allowed_users.is_empty() {
        problems.add(&here, "control.allowed_users", "list at least one user id, e.g. [\"@admin:example.org\"]");
    }
    let mut allowed = BTreeSet::new();
    for (i, user) in c.allowed_users.iter().enumerate() {
        let u = user.value.trim();
        if is_user_id(u) {
            allowed.insert(u.to_string());
        } else {
            problems.add(
                &user.referenced,
                format!("control.allowed_users[{i}]"),
                format!(
                    "`{}` is not a Matrix user id; expected e.g. @admin:example.org",
                    crate::text::escape_controls(u)
                ),
            );
        }
    }
    let token = problems.take(secret(
        problems.origin,
        c.access_token.as_ref(),
        c.access_token_file.as_ref(),
        "control.access_token",
        &here,
    ));
    let homeserver = match &c.homeserver {
        Some(h) => problems.take(parse_url(problems.origin, h, "control.homeserver")),
        None => None,
    };
    let fallback = first_matrix(alerting);
    let homeserver = homeserver.or_else(|| fallback.as_ref().map(|f| f.0.clone()));
    let token = token.flatten().or_else(|| fallback.as_ref().map(|f| f.1.clone()));
    let (Some(homeserver), Some(token)) = (homeserver, token) else {
        problems.add(
            &here,
            "control",
            "needs a bot: set `homeserver` and `access_token` here, or configure a Matrix receiver under \
             `alerting.receivers` (the first one's bot is used)",
        );
        return None;
    };
    Some(ControlSettings { homeserver, token, room: room.to_string(), allowed_users: allowed })
}

/// Builds `heartbeat:`.
pub(super) fn heartbeat(spanned: &Spanned<HeartbeatConfig>, problems: &mut Problems<'_>) -> Option<HeartbeatSettings> {
    let h = &spanned.value;
    let text = h.url.value.expose_secret().trim().to_string();
    let url_ok = match Url::parse(&text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => true,
        Ok(u) => {
            problems.add(
                &h.url.referenced,
                "heartbeat.url",
                format!("uses scheme `{}`; expected http or https", u.scheme()),
            );
            false
        }
        // The URL is a secret: its text is not repeated.
        Err(e) => {
            problems.add(&h.url.referenced, "heartbeat.url", format!("is not a URL ({e})"));
            false
        }
    };
    let every = h.every.as_ref().map_or(Duration::from_secs(60), |e| e.value.0);
    if let Some(e) = &h.every
        && !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&e.value.0)
    {
        problems.add(&e.referenced, "heartbeat.every", format!("{} is out of range; expected 1s to 1d", e.value));
    }
    let post = match h.method.as_ref().map(|m| (m.value.trim().to_ascii_uppercase(), m.referenced)) {
        None => false,
        Some((m, _)) if m == "GET" => false,
        Some((m, _)) if m == "POST" => true,
        Some((m, at)) => {
            problems.add(&at, "heartbeat.method", format!("`{m}`; expected GET or POST"));
            false
        }
    };
    url_ok.then(|| HeartbeatSettings { url: SecretString::from(text), every, post })
}

/// Builds one `matrix_canary:` check's spec (`key` is its path, e.g. `checks[2].matrix_canary`).
pub(super) fn canary(
    c: &MatrixCanaryConfig,
    key: &str,
    here: &Location,
    problems: &mut Problems<'_>,
) -> Option<CanarySpec> {
    let homeserver = problems.take(parse_url(problems.origin, &c.homeserver, &format!("{key}.homeserver")));
    let token = problems.take(secret(
        problems.origin,
        c.access_token.as_ref(),
        c.access_token_file.as_ref(),
        &format!("{key}.access_token"),
        here,
    ));
    let room = c.room.trim();
    if !is_room(room) {
        problems.add(
            here,
            format!("{key}.room"),
            format!("`{room}` is not a room id (`!abc`) or alias (`#canary:example.org`)"),
        );
    }
    let token = match token {
        Some(Some(t)) => Some(t),
        Some(None) => {
            problems.add(here, format!("{key}.access_token"), "the sending account's token is required");
            None
        }
        None => None,
    };
    let reader = match &c.reader {
        None => Some(None),
        Some(r) => {
            let hs = match &r.homeserver {
                Some(h) => problems.take(parse_url(problems.origin, h, &format!("{key}.reader.homeserver"))),
                None => homeserver.clone(),
            };
            let t = problems.take(secret(
                problems.origin,
                r.access_token.as_ref(),
                r.access_token_file.as_ref(),
                &format!("{key}.reader.access_token"),
                here,
            ));
            match (hs, t) {
                (Some(homeserver), Some(Some(token))) => Some(Some(CanaryAccount { homeserver, token })),
                (_, Some(None)) => {
                    problems.add(here, format!("{key}.reader.access_token"), "the reading account's token is required");
                    None
                }
                _ => None,
            }
        }
    };
    Some(CanarySpec {
        sender: CanaryAccount { homeserver: homeserver?, token: token? },
        reader: reader?,
        room: room.to_string(),
        slow_after: c.slow_after.map_or(Duration::from_secs(10), |d| d.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_checked_for_shape() {
        for ok in ["@admin:example.org", "@a:b", "@ops.bot:matrix.example.org:8448"] {
            assert!(is_user_id(ok), "{ok}");
        }
        for bad in ["admin", "@admin", "@:x", "@a:", "@a b:x", "@a\n:x", "#room:x", ""] {
            assert!(!is_user_id(bad), "{bad:?}");
        }
        assert!(!is_user_id(&format!("@{}:x", "a".repeat(300))), "over 255 bytes");
    }

    #[test]
    fn rooms_are_ids_of_any_version_or_aliases() {
        for ok in ["!abc:example.org", "!qdv0PN_ZVu9IW1WDXfIbeGHvz_H0N5qTIKHZWsSiu24", "#ops:example.org"] {
            assert!(is_room(ok), "{ok}");
        }
        for bad in ["ops", "#ops", "!", "! a", "#a b:x", "!a\n"] {
            assert!(!is_room(bad), "{bad:?}");
        }
    }
}
