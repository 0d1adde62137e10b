//! A `remote_write:` receiver accepts mxwarden's writes: one empty write (no series, so
//! nothing is stored) with the entry's headers and credentials proves the route, TLS and the
//! credentials. The receiver is shown by its origin only.

use super::{Area, Finding, STEP_TIMEOUT};
use crate::remote_write::{Endpoint, Refusal};

const CHECK: &str = "accepts writes";

/// Sends the empty write.
pub(crate) async fn check(http: &reqwest::Client, redactor: &crate::redact::Redactor, endpoint: &Endpoint) -> Finding {
    let answer = crate::remote_write::check(endpoint, http, redactor, STEP_TIMEOUT).await;
    judge(crate::redact::origin_only(&endpoint.url).as_ref(), &answer)
}

/// The verdict (pure).
pub(crate) fn judge(origin: &str, answer: &Result<(), Refusal>) -> Finding {
    let fail = |detail: &str, fix: &str| Finding::fail(Area::RemoteWrite, origin, CHECK, detail, fix);
    match answer {
        Ok(()) => Finding::pass(Area::RemoteWrite, origin, CHECK, "an empty write was accepted; nothing was stored"),
        Err(Refusal { status: Some(401 | 403), detail }) => fail(
            detail,
            "the receiver refuses the credentials: check basic_auth / bearer_token (and, for Mimir, the \
             X-Scope-OrgID header)",
        ),
        Err(Refusal { status: Some(404 | 405), detail }) => fail(
            detail,
            "nothing receives writes at that path: Prometheus needs --web.enable-remote-write-receiver and \
             /api/v1/write; Mimir /api/v1/push; VictoriaMetrics /api/v1/write",
        ),
        Err(Refusal { status: Some(429), detail }) => Finding::warn(
            Area::RemoteWrite,
            origin,
            CHECK,
            detail,
            "the receiver is limiting this sender: samples queue and are retried; raise its limits",
        ),
        Err(Refusal { status: Some(s), detail }) if *s >= 500 => fail(
            detail,
            "the receiver is failing: samples queue (up to queue.max_samples) and are retried; check its logs",
        ),
        Err(Refusal { status: Some(_), detail }) => Finding::warn(
            Area::RemoteWrite,
            origin,
            CHECK,
            detail,
            "the receiver refused an empty write; it may still take real ones: watch \
             mxwarden_remote_write_samples_failed_total",
        ),
        Err(Refusal { status: None, detail }) => {
            fail(detail, "check the URL and that this host may reach it (DNS, firewall, proxy)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Outcome;

    #[test]
    fn each_answer_has_its_verdict() {
        let refused = |status| Err(Refusal { status, detail: "x".into() });
        let cases = [
            (Ok(()), Outcome::Pass, "accepted"),
            (refused(Some(401)), Outcome::Fail, "credentials"),
            (refused(Some(403)), Outcome::Fail, "credentials"),
            (refused(Some(404)), Outcome::Fail, "no receiver at the path (Prometheus without the flag)"),
            (refused(Some(429)), Outcome::Warn, "limited, retried"),
            (refused(Some(503)), Outcome::Fail, "failing"),
            (refused(Some(400)), Outcome::Warn, "an empty write refused"),
            (refused(None), Outcome::Fail, "unreachable"),
        ];
        for (answer, outcome, why) in cases {
            assert_eq!(judge("https://m.example/", &answer).outcome, outcome, "{why}");
        }
    }
}
