//! The clock: within 2 s of each server's `Date` header. Alert times, digests at 09:00,
//! maintenance windows and TLS expiry all read the local clock; a host whose NTP stopped
//! drifts quietly. `Date` has one-second resolution, so the verdict allows for that and for
//! the request's round trip: it fails only when the skew is certainly over 2 s.

use super::{Area, Finding, STEP_TIMEOUT};
use crate::config::Config;
use crate::probe::spec::{ProbeSpec, Target};

/// Most servers asked.
const MOST: usize = 8;
/// The allowed skew, ms.
pub(crate) const ALLOWED_MS: i64 = 2_000;

/// Asks each distinct origin of the config's HTTP checks and receivers (up to [`MOST`]).
pub(crate) async fn check_all(http: &reqwest::Client, config: &Config) -> Vec<Finding> {
    let mut urls: Vec<url::Url> = Vec::new();
    let mut origins = std::collections::BTreeSet::new();
    let mut add = |url: &url::Url| {
        if origins.len() < MOST && origins.insert(url.origin().ascii_serialization()) {
            urls.push(url.clone());
        }
    };
    for spec in &config.checks {
        let http = match &spec.probe {
            ProbeSpec::Http(h) => h,
            ProbeSpec::Scrape(s) => &s.http,
            ProbeSpec::MatrixCanary(c) => {
                add(&c.sender.homeserver);
                continue;
            }
            ProbeSpec::Postgres(_) => continue,
            ProbeSpec::Render(r) => {
                add(&r.api.url);
                continue;
            }
        };
        match &http.target {
            Target::Url(u) => add(u),
            Target::Discovered { document, .. } => add(document),
        }
    }
    if let Some(alerting) = &config.alerting {
        for r in alerting.receivers.values() {
            if let crate::notify::Receiver::Matrix(m) = r {
                add(&m.homeserver);
            }
        }
    }
    let asks = urls.into_iter().map(|url| async move {
        let sent = jiff::Timestamp::now();
        let answer = http.head(url.clone()).timeout(STEP_TIMEOUT).send().await;
        let received = jiff::Timestamp::now();
        let origin = url.origin().ascii_serialization();
        match answer {
            Err(_) => None, // unreachable: `mxwarden check` reports that
            Ok(r) => {
                let date = r.headers().get(reqwest::header::DATE).and_then(|v| v.to_str().ok()).map(str::to_string);
                Some(judge(&origin, date.as_deref(), sent.as_millisecond(), received.as_millisecond()))
            }
        }
    });
    futures::future::join_all(asks).await.into_iter().flatten().collect()
}

/// The verdict for one server (pure): `date` is its `Date` header; `sent_ms` and
/// `received_ms` the local clock around the request.
pub(crate) fn judge(origin: &str, date: Option<&str>, sent_ms: i64, received_ms: i64) -> Finding {
    let Some(date) = date else {
        return Finding::warn(
            Area::Clock,
            origin,
            "clock skew",
            "no Date header to compare with",
            "nothing to do; other servers are compared",
        );
    };
    let Ok(server) = jiff::fmt::rfc2822::parse(date.trim()) else {
        return Finding::warn(
            Area::Clock,
            origin,
            "clock skew",
            format!("an unreadable Date header: {}", crate::text::escape_controls(date)),
            "nothing to do; other servers are compared",
        );
    };
    // The server's time lies in [date, date + 1 s) at some moment in [sent, received].
    let server_mid = server.timestamp().as_millisecond() + 500;
    let local_mid = (sent_ms + received_ms) / 2;
    let skew = server_mid - local_mid;
    let slack = 500 + (received_ms - sent_ms).max(0) / 2;
    let shown = format!("{:+.1} s", skew as f64 / 1000.0);
    if skew.abs() <= ALLOWED_MS + slack {
        Finding::pass(Area::Clock, origin, "clock skew", format!("{shown} (within 2 s)"))
    } else {
        let direction = if skew > 0 { "behind" } else { "ahead of" };
        Finding::fail(
            Area::Clock,
            origin,
            "clock skew",
            format!("this host's clock is {:.1} s {direction} the server's", skew.abs() as f64 / 1000.0),
            "turn on time sync: `timedatectl set-ntp true` (systemd-timesyncd) or install chrony; in a container, fix \
             the host's clock",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Outcome;

    #[test]
    fn verdicts() {
        // 2026-12-05 07:18:52 UTC = 1796455132 s.
        let at = 1_796_455_132_000;
        let date = Some("Sat, 05 Dec 2026 07:18:52 GMT");
        let cases = [
            (date, at + 300, at + 310, Outcome::Pass, "in step"),
            (
                date,
                at + 2_900,
                at + 2_950,
                Outcome::Pass,
                "2.4 s behind the truncated Date is within 2 s of its midpoint",
            ),
            (date, at - 1_900, at - 1_850, Outcome::Pass, "1.9 s ahead of the truncated Date, within the slack"),
            (date, at + 10_000, at + 10_010, Outcome::Fail, "10 s ahead"),
            (date, at - 4_000, at - 3_990, Outcome::Fail, "4 s behind"),
            (date, at + 1_000, at + 9_000, Outcome::Pass, "a slow answer widens the slack"),
            (None, at, at, Outcome::Warn, "no header"),
            (Some("yesterday"), at, at, Outcome::Warn, "garbage"),
        ];
        for (date, sent, received, want, why) in cases {
            let f = judge("https://hs", date, sent, received);
            assert_eq!(f.outcome, want, "{why}: {f:?}");
        }
        let f = judge("https://hs", date, at + 10_000, at + 10_000);
        assert!(f.detail.contains("ahead of"), "{}", f.detail);
        assert!(f.fix.unwrap().contains("timedatectl set-ntp true"));
    }
}
