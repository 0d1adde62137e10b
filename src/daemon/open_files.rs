//! How many idle connections the probes may keep, from the open-file limit. mxwarden keeps its
//! connections to what it probes (one `writev` and one read per probe instead of a handshake),
//! and the binary raises its soft open-file limit to the hard one at start (`src/main.rs`). A
//! config with thousands of distinct origins could still keep more idle connections than that
//! limit leaves room for — and a probe that cannot open a socket reports its target down. So
//! when every origin keeping `concurrency` idle connections would not fit under the soft limit
//! with a reserve (the store, the status page's connections, notifications), each origin keeps
//! fewer: as many as fit, down to none (a new connection per probe, as blackbox_exporter does).

use crate::probe::spec::{CheckSpec, ProbeSpec, Target};
use std::collections::HashSet;

/// Descriptors left for everything but idle probe connections.
const RESERVE: u64 = 512;

/// The idle connections each origin may keep: `None` for no limit of our own (every origin's
/// share fits), else how many fit under `soft_limit`.
pub(super) fn idle_per_origin(origins: usize, concurrency: usize, soft_limit: Option<u64>) -> Option<usize> {
    let soft = soft_limit?;
    let wanted = (origins as u64).saturating_mul(concurrency.max(1) as u64).saturating_add(RESERVE);
    if origins == 0 || wanted <= soft {
        return None;
    }
    let room = soft.saturating_sub(RESERVE) / origins as u64;
    Some(usize::try_from(room).unwrap_or(usize::MAX))
}

/// The distinct origins (scheme, host, port) the HTTP and scrape checks connect to.
pub(super) fn origins(checks: &[CheckSpec]) -> usize {
    let mut seen = HashSet::new();
    for c in checks {
        let http = match &c.probe {
            ProbeSpec::Http(h) => h,
            ProbeSpec::Scrape(s) => &s.http,
            _ => continue,
        };
        if let Target::Url(u) = &http.target {
            seen.insert((
                u.scheme().to_string(),
                u.host_str().unwrap_or_default().to_string(),
                u.port_or_known_default(),
            ));
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::idle_per_origin;

    #[test]
    fn idle_connections_fit_under_the_open_file_limit() {
        let cases = [
            (4, 16, Some(20_000), None, "the benchmark: 4 origins, plenty of room: as always"),
            (30, 16, Some(1_024), None, "a usual config under the usual soft limit: as always"),
            (300, 16, Some(4_096), Some(11), "300 origins: 11 idle each fit"),
            (10_000, 16, Some(20_000), Some(1), "10,000 origins: one idle connection each"),
            (10_000, 16, Some(4_096), Some(0), "no room: a new connection per probe"),
            (300, 16, Some(256), Some(0), "a limit below the reserve: none kept"),
            (10_000, 16, None, None, "the limit unknown: as always"),
            (0, 16, Some(10), None, "no HTTP checks"),
        ];
        for (origins, concurrency, soft, want, why) in cases {
            assert_eq!(idle_per_origin(origins, concurrency, soft), want, "{why}");
        }
    }
}
