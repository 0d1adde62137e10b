//! Builds `remote_write:` into [`crate::remote_write::Endpoint`]s: the URL (http or https,
//! no credentials in it), authentication (basic or bearer, inline or from a file, never both
//! kinds), headers (valid, none of the protocol's own), the request deadline and the queue's
//! bounds. Every problem names its key and line; secrets are read like every other secret.

use super::build::{Problems, headers, parse_url, secret};
use super::schema::RemoteWriteConfig;
use crate::remote_write::{Auth, Endpoint, QueueSettings};
use crate::units::HumanDuration;
use serde_saphyr::Spanned;
use std::time::Duration;

/// Headers the protocol sets itself: replacing them would break the request.
const RESERVED: &[&str] = &["content-encoding", "content-type", "user-agent", "x-prometheus-remote-write-version"];

/// Builds every entry of `remote_write:`.
pub(super) fn endpoints(entries: &[Spanned<RemoteWriteConfig>], problems: &mut Problems<'_>) -> Vec<Endpoint> {
    entries.iter().enumerate().filter_map(|(i, e)| endpoint(e, &format!("remote_write[{i}]"), problems)).collect()
}

/// A duration in `range`, or the default; out of range is a problem naming `key`.
fn duration(
    given: Option<&Spanned<HumanDuration>>,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
    key: &str,
    problems: &mut Problems<'_>,
) -> Duration {
    let Some(d) = given else { return default };
    if !range.contains(&d.value.0) {
        problems.add(
            &d.referenced,
            key,
            format!(
                "{} is out of range; expected {} to {}",
                d.value,
                HumanDuration(*range.start()),
                HumanDuration(*range.end())
            ),
        );
    }
    d.value.0
}

/// A count in `range`, or the default.
fn count(
    given: Option<&Spanned<usize>>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    key: &str,
    problems: &mut Problems<'_>,
) -> usize {
    let Some(n) = given else { return default };
    if !range.contains(&n.value) {
        problems.add(
            &n.referenced,
            key,
            format!("{} is out of range; expected {} to {}", n.value, range.start(), range.end()),
        );
    }
    n.value
}

fn endpoint(spanned: &Spanned<RemoteWriteConfig>, key: &str, problems: &mut Problems<'_>) -> Option<Endpoint> {
    let c = &spanned.value;
    let here = spanned.referenced;
    let url = problems.take(parse_url(problems.origin, &c.url, &format!("{key}.url")));
    let bearer = problems.take(secret(
        problems.origin,
        c.bearer_token.as_ref(),
        c.bearer_token_file.as_ref(),
        &format!("{key}.bearer_token"),
        &here,
    ));
    let basic = c.basic_auth.as_ref().map(|b| {
        let at = b.referenced;
        let username = b.value.username.trim().to_string();
        if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
            problems.add(
                &at,
                format!("{key}.basic_auth.username"),
                "expected a user name without `:` or control characters",
            );
        }
        let password = problems.take(secret(
            problems.origin,
            b.value.password.as_ref(),
            b.value.password_file.as_ref(),
            &format!("{key}.basic_auth.password"),
            &at,
        ));
        if matches!(password, Some(None)) {
            problems.add(&at, format!("{key}.basic_auth.password"), "set `password` or `password_file`");
        }
        (username, password.flatten(), at)
    });
    let auth = match (basic, bearer) {
        (Some((_, _, at)), Some(Some(_))) => {
            problems.add(&at, format!("{key}.basic_auth"), "set either `basic_auth` or `bearer_token`, not both");
            None
        }
        (Some((username, Some(password), _)), _) => Some(Auth::Basic { username, password }),
        (Some(_), _) | (None, None) => None,
        (None, Some(Some(token))) => Some(Auth::Bearer(token)),
        (None, Some(None)) => Some(Auth::None),
    };
    let headers = headers(&c.headers, key, &here, problems);
    for (name, _) in &headers {
        if RESERVED.contains(&name.as_str()) {
            problems.add(
                &here,
                format!("{key}.headers.{name}"),
                "is set by the remote-write protocol itself and cannot be replaced",
            );
        }
        if name == reqwest::header::AUTHORIZATION && !matches!(auth, Some(Auth::None)) {
            problems.add(
                &here,
                format!("{key}.headers.{name}"),
                "conflicts with `basic_auth` / `bearer_token`: set one of them",
            );
        }
    }
    let timeout = duration(
        c.remote_timeout.as_ref(),
        Duration::from_secs(30),
        Duration::from_secs(1)..=Duration::from_secs(300),
        &format!("{key}.remote_timeout"),
        problems,
    );
    let d = QueueSettings::default();
    let queue = match &c.queue {
        None => d,
        Some(q) => {
            let q = &q.value;
            let k = |field: &str| format!("{key}.queue.{field}");
            let min_backoff = duration(
                q.min_backoff.as_ref(),
                d.min_backoff,
                Duration::from_millis(1)..=Duration::from_secs(60),
                &k("min_backoff"),
                problems,
            );
            let max_backoff = duration(
                q.max_backoff.as_ref(),
                d.max_backoff,
                Duration::from_millis(1)..=Duration::from_secs(300),
                &k("max_backoff"),
                problems,
            );
            if let Some(m) = &q.max_backoff
                && max_backoff < min_backoff
            {
                problems.add(
                    &m.referenced,
                    k("max_backoff"),
                    format!("is below min_backoff ({})", HumanDuration(min_backoff)),
                );
            }
            QueueSettings {
                max_samples: count(
                    q.max_samples.as_ref(),
                    d.max_samples,
                    100..=10_000_000,
                    &k("max_samples"),
                    problems,
                ),
                max_shards: count(q.max_shards.as_ref(), d.max_shards, 1..=64, &k("max_shards"), problems),
                max_samples_per_send: count(
                    q.max_samples_per_send.as_ref(),
                    d.max_samples_per_send,
                    1..=100_000,
                    &k("max_samples_per_send"),
                    problems,
                ),
                batch_send_deadline: duration(
                    q.batch_send_deadline.as_ref(),
                    d.batch_send_deadline,
                    Duration::from_millis(10)..=Duration::from_secs(60),
                    &k("batch_send_deadline"),
                    problems,
                ),
                min_backoff,
                max_backoff,
            }
        }
    };
    Some(Endpoint { url: url?, headers, auth: auth?, timeout, queue })
}
