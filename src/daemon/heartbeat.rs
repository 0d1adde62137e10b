//! The heartbeat: a dead man's switch watching mxwarden itself. Every `heartbeat.every` the
//! configured URL is pinged (a plain GET or POST, as Healthchecks.io, Uptime Kuma push
//! monitors and UptimeRobot heartbeats take it) — but only while the watchdog says evaluation
//! is healthy. When the evaluation loop stalls or the store refuses writes, the pings stop
//! and the outside service pages: the one alarm that does not depend on mxwarden working.
//! The URL is a secret (its path is the credential): logs name its scheme and host only.

use crate::config::HeartbeatSettings;
use crate::store::Store;
use crate::watchdog::Watchdog;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use url::Url;

/// Pings until `stop`.
pub(super) fn spawn(
    settings: HeartbeatSettings,
    watchdog: Arc<Watchdog>,
    store: Store,
    http: reqwest::Client,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(url) = Url::parse(settings.url.expose_secret()) else { return };
        let shown = crate::redact::origin_only(&url);
        let mut ticker = tokio::time::interval(settings.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut withheld = false;
        loop {
            tokio::select! { _ = ticker.tick() => {}, _ = stop.changed() => return }
            match watchdog.verdict(store.health()) {
                Err(why) => {
                    if !withheld {
                        tracing::error!(url = %shown, reason = %why, "Heartbeat withheld: the outside watcher will page.");
                    }
                    withheld = true;
                }
                Ok(()) => {
                    if withheld {
                        tracing::info!(url = %shown, "Evaluation is healthy again; heartbeat resumed.");
                    }
                    withheld = false;
                    ping(&http, &url, &shown, settings.post, settings.every).await;
                }
            }
        }
    })
}

async fn ping(http: &reqwest::Client, url: &Url, shown: &Url, post: bool, every: Duration) {
    let request = if post { http.post(url.clone()) } else { http.get(url.clone()) };
    let timeout = every.min(Duration::from_secs(10));
    match request.timeout(timeout).send().await {
        Ok(response) if response.status().is_success() => {
            tracing::debug!(url = %shown, "Heartbeat sent.");
        }
        Ok(response) => {
            tracing::warn!(url = %shown, status = response.status().as_u16(), "Heartbeat ping was refused.");
        }
        Err(e) => {
            let why = crate::probe::explain_transport(&e.without_url(), shown);
            tracing::warn!(url = %shown, error = %why, "Heartbeat ping failed.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_url_keeps_no_credential() {
        let url = Url::parse("https://user:pw@hc-ping.com/1f2e3d4c-uuid?create=1#x").unwrap();
        assert_eq!(crate::redact::origin_only(&url).as_str(), "https://hc-ping.com/");
    }
}
