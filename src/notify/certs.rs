//! Certificates in the daily digest: one line per host whose certificate mxwarden sees
//! (`probe_ssl_earliest_cert_expiry` of the HTTPS checks), soonest first —
//! "matrix.example.org: certificate expires in 23 days" — so renewal that silently stopped is
//! seen weeks before `CertificateExpiringSoon` fires.

use super::{Notification, html_escape};
use crate::series::SeriesStore;
use std::collections::BTreeMap;

/// Each host's earliest certificate expiry, days from `now_ms`, soonest first. `hosts` maps a
/// check's name to the host it connects to.
pub(crate) fn expiries(series: &SeriesStore, hosts: &BTreeMap<String, String>, now_ms: i64) -> Vec<(String, f64)> {
    let mut by_host: BTreeMap<&str, f64> = BTreeMap::new();
    for s in series.named("probe_ssl_earliest_cert_expiry") {
        let Some(host) = s.labels.get("check").and_then(|c| hosts.get(c)) else { continue };
        let Some(at) = s.points.back().map(|p| p.v).filter(|v| !crate::series::is_stale(*v)) else { continue };
        let days = (at - now_ms as f64 / 1000.0) / 86_400.0;
        let e = by_host.entry(host.as_str()).or_insert(days);
        *e = e.min(days);
    }
    let mut out: Vec<(String, f64)> = by_host.into_iter().map(|(h, d)| (h.to_string(), d)).collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

/// One line per host.
pub(crate) fn line(host: &str, days: f64) -> String {
    let host = crate::text::escape_controls(host);
    if days < 0.0 {
        format!("{host}: certificate expired {:.0} days ago", -days)
    } else {
        format!("{host}: certificate expires in {:.0} days", days.floor())
    }
}

/// Appends the certificates section to a digest.
pub(crate) fn append(message: &mut Notification, expiries: &[(String, f64)]) {
    if expiries.is_empty() {
        return;
    }
    message.text.push_str("Certificates:\n");
    message.html.push_str("<p><b>Certificates</b></p><ul>");
    for (host, days) in expiries {
        let l = line(host, *days);
        message.text.push_str(&format!("- {l}\n"));
        message.html.push_str(&format!("<li>{}</li>", html_escape(&l)));
    }
    message.html.push_str("</ul>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_days_left_or_ago() {
        assert_eq!(line("matrix.example.org", 23.7), "matrix.example.org: certificate expires in 23 days");
        assert_eq!(line("old.example.org", -2.0), "old.example.org: certificate expired 2 days ago");
        assert_eq!(line("bad\u{1b}[31m", 1.0), "bad\\x1b[31m: certificate expires in 1 days");
    }
}
