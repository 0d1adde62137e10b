//! `instance:` and `leader:`: this instance's name among instances sharing one store, and
//! how long its leadership lease lasts (`docs/ha.md`). Pure checks; the daemon's `leader`
//! task uses the result.

use super::build::Problems;
use super::schema::FileConfig;
use std::time::Duration;

/// The lease's time-to-live when `leader.lease` is not given.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// The shortest lease accepted: renewals come every third of it, and a database round trip
/// under load must fit well within that.
const MIN_LEASE: Duration = Duration::from_secs(3);
/// The longest lease accepted: failover takes up to about 4/3 of it.
const MAX_LEASE: Duration = Duration::from_secs(300);
/// The longest instance name: it is shown in logs, the status page and PostgreSQL's
/// `application_name` (63 bytes, with the `mxwarden/` before it).
const MAX_NAME: usize = 48;

/// Who this instance is, and its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSettings {
    /// This instance's name (`instance:`, default the host name).
    pub name: String,
    /// The lease's time-to-live (`leader.lease`).
    pub lease: Duration,
}

/// Whether `name` is a usable instance name: 1–48 of `A-Z a-z 0-9 . _ -`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The host name made into an instance name (other characters become `-`), or `mxwarden`.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .take(MAX_NAME)
        .collect();
    if name.is_empty() { "mxwarden".to_string() } else { name }
}

/// `instance:` and `leader:` checked.
pub(super) fn build(file: &FileConfig, problems: &mut Problems<'_>) -> InstanceSettings {
    let name = match &file.instance {
        None => host_name(),
        Some(n) if valid_name(&n.value) => n.value.clone(),
        Some(n) => {
            problems.add(
                &n.referenced,
                "instance",
                format!(
                    "expected 1 to {MAX_NAME} letters, digits, `.`, `_` or `-` (this instance's name among those sharing the store), got {:?}",
                    crate::text::escape_controls(&n.value)
                ),
            );
            host_name()
        }
    };
    let lease = match file.leader.as_ref().and_then(|l| l.value.lease.as_ref()) {
        None => DEFAULT_LEASE,
        Some(d) if (MIN_LEASE..=MAX_LEASE).contains(&d.value.0) => d.value.0,
        Some(d) => {
            problems.add(
                &d.referenced,
                "leader.lease",
                format!("expected a lease from 3s to 5m (default 15s), got {}", d.value),
            );
            DEFAULT_LEASE
        }
    };
    InstanceSettings { name, lease }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_plain_words() {
        let cases = [
            ("mon-1", true, "letters, digits and a dash"),
            ("a.b_c", true, "dots and underscores"),
            ("", false, "empty"),
            ("a b", false, "a space"),
            ("a/b", false, "a slash would read as part of mxwarden/<name>"),
            ("mon\n1", false, "a line break would forge a log line"),
            ("é", false, "non-ASCII"),
            (&"x".repeat(48), true, "48 characters fit application_name"),
            (&"x".repeat(49), false, "49 do not"),
        ];
        for (name, ok, why) in cases {
            assert_eq!(valid_name(name), ok, "{why}");
        }
    }

    #[test]
    fn the_host_name_is_a_valid_default() {
        assert!(valid_name(&host_name()));
    }
}
