//! Render, the platform the runbook's stack runs on: what breaks there is invisible from HTTP
//! probes (an OOM kill between two probes, a failed deploy leaving the old version running, a
//! suspension, memory creeping toward the plan's limit, the database's real disk). `model` has
//! the API's JSON shapes and enums; `client` is the typed, rate-limited client; `stream` the log stream (a WebSocket). The render
//! probe (`probe::render`) turns its answers into samples; `mxwarden render …` shows them.
//! Listed below the probes: it needs only the vocabulary.

pub mod backups;
pub mod client;
pub mod model;
pub mod stream;

pub use client::{RenderClient, RenderError};

/// What kind of Render resource an id names, from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// `srv-…`: a web service, private service or worker.
    Service,
    /// `dpg-…`: a PostgreSQL database.
    Postgres,
}

impl ResourceKind {
    /// The kind of `id`, if it looks like a Render id: the prefix, then letters and digits
    /// (and `-`), nothing that could change a URL path.
    pub fn of(id: &str) -> Option<Self> {
        let valid = |rest: &str| {
            !rest.is_empty() && rest.len() <= 64 && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if let Some(rest) = id.strip_prefix("srv-") {
            return valid(rest).then_some(Self::Service);
        }
        if let Some(rest) = id.strip_prefix("dpg-") {
            return valid(rest).then_some(Self::Postgres);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_known_by_their_prefix_and_nothing_else_passes() {
        assert_eq!(ResourceKind::of("srv-d0abc123"), Some(ResourceKind::Service));
        assert_eq!(ResourceKind::of("dpg-d0abc123-a"), Some(ResourceKind::Postgres));
        for bad in ["srv-", "crn-abc", "srv-a/b", "srv-a?x", "dpg-a b", "synapse", ""] {
            assert_eq!(ResourceKind::of(bad), None, "{bad:?}");
        }
    }
}
