//! A webhook receiver's URL is reachable: a `HEAD` request (no payload is delivered) that gets
//! any HTTP answer proves DNS, TCP and TLS; only a transport error or a 5xx fails. The URL may
//! carry a token, so it is shown without its path.

use super::{Area, Finding, STEP_TIMEOUT};
use crate::notify::webhook::WebhookReceiver;

const CHECK: &str = "reachable";

/// Sends the `HEAD` request.
pub(crate) async fn check(http: &reqwest::Client, name: &str, w: &WebhookReceiver) -> Finding {
    let answer = match http.head(w.url.clone()).timeout(STEP_TIMEOUT).send().await {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => Err(crate::probe::explain_transport(&e, &w.url)),
    };
    judge(name, w.shown_url().as_ref(), &answer)
}

/// The verdict (pure): `shown` is the URL without secrets.
pub(crate) fn judge(name: &str, shown: &str, answer: &Result<u16, String>) -> Finding {
    let shown = format!("{shown}{}", crate::redact::REDACTED);
    match answer {
        Ok(status) if *status < 500 => {
            Finding::pass(Area::Webhook, name, CHECK, format!("{shown} answered HTTP {status}; nothing was delivered"))
        }
        Ok(status) => Finding::fail(
            Area::Webhook,
            name,
            CHECK,
            format!("{shown} answered HTTP {status}"),
            "the receiving service is failing: check its logs; deliveries are retried, then dead-lettered",
        ),
        Err(why) => Finding::fail(
            Area::Webhook,
            name,
            CHECK,
            format!("{shown}: {why}"),
            "check the webhook URL and that this host may reach it (DNS, firewall, proxy)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_answer_below_500_is_reachable() {
        let cases = [
            (Ok(200), true, "accepts HEAD"),
            (Ok(405), true, "a POST-only endpoint still proves the route"),
            (Ok(404), true, "reachable; the path is the receiver's business"),
            (Ok(503), false, "the receiver is failing"),
            (Err("connection refused".to_string()), false, "nothing listens"),
        ];
        for (answer, ok, why) in cases {
            let f = judge("hook", "https://h.example/", &answer);
            assert_eq!(f.outcome == crate::doctor::Outcome::Pass, ok, "{why}");
        }
    }
}
