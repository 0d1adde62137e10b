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

#[cfg(test)]
mod tests {
    use crate::config::ConfigError;
    use crate::remote_write::{Auth, QueueSettings};
    use std::collections::HashMap;
    use std::path::Path;
    use std::time::Duration;

    fn load(entry: &str) -> Result<crate::config::Config, Vec<(String, String)>> {
        let text = format!("remote_write:\n  - url: http://127.0.0.1:9090/api/v1/write\n{entry}");
        crate::config::from_source(Path::new("/etc/mxwarden/mxwarden.yaml"), &text, &HashMap::new()).map_err(
            |e| match e {
                ConfigError::Invalid(found) => found.into_iter().map(|d| (d.key, d.message)).collect(),
                other => vec![(String::new(), other.to_string())],
            },
        )
    }

    #[test]
    fn entries_build_with_prometheus_defaults_and_their_own_settings() {
        let c = load("").expect("a URL alone is enough");
        let e = &c.remote_write[0];
        assert!(matches!(e.auth, Auth::None));
        assert_eq!((e.timeout, e.queue), (Duration::from_secs(30), QueueSettings::default()));

        let c = load(
            "    basic_auth: { username: w, password: pw }\n    remote_timeout: 5s\n    \
             queue: { max_samples: 1000, max_shards: 2, max_samples_per_send: 50, batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 10s }\n",
        )
        .expect("valid");
        let e = &c.remote_write[0];
        assert!(matches!(&e.auth, Auth::Basic { username, .. } if username == "w"));
        assert_eq!(e.timeout, Duration::from_secs(5));
        assert_eq!(
            e.queue,
            QueueSettings {
                max_samples: 1000,
                max_shards: 2,
                max_samples_per_send: 50,
                batch_send_deadline: Duration::from_secs(1),
                min_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
            }
        );
        let c = load("    headers: { Authorization: \"Bearer t\" }\n").expect("Authorization alone is allowed");
        assert_eq!(c.remote_write[0].headers.len(), 1);
    }

    #[test]
    fn each_mistake_names_its_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "    bearer_token: t\n    headers: { Authorization: \"Bearer u\" }\n",
                "remote_write[0].headers.authorization",
                "two credentials",
            ),
            ("    headers: { User-Agent: x }\n", "remote_write[0].headers.user-agent", "the protocol's own header"),
            ("    headers: { \"bad header\": x }\n", "remote_write[0].headers.bad header", "not a header name"),
            ("    basic_auth: { username: w }\n", "remote_write[0].basic_auth.password", "no password"),
            (
                "    basic_auth: { username: \"a:b\", password: p }\n",
                "remote_write[0].basic_auth.username",
                "a colon ends the user name",
            ),
            ("    queue: { min_backoff: 2s, max_backoff: 1s }\n", "remote_write[0].queue.max_backoff", "max below min"),
            (
                "    queue: { max_samples_per_send: 0 }\n",
                "remote_write[0].queue.max_samples_per_send",
                "zero per request",
            ),
            ("    queue: { batch_send_deadline: 0s }\n", "remote_write[0].queue.batch_send_deadline", "no deadline"),
            ("    remote_timeout: 0s\n", "remote_write[0].remote_timeout", "no time at all"),
            ("    queue: { max_samples: 100, capacity: 5 }\n", "capacity", "an unknown key"),
        ];
        for (entry, key, why) in cases {
            let found = load(entry).err().unwrap_or_else(|| panic!("{why}: accepted"));
            assert!(found.iter().any(|(k, m)| k.contains(key) || m.contains(key)), "{why}: {found:?}");
        }
    }
}
