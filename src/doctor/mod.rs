//! `mxwarden doctor`: proves each credential and permission the config relies on, before the
//! first page at 3 a.m. depends on it. One file per area (Synapse's admin token, the Matrix
//! receivers, SMTP, webhooks, PostgreSQL, backups and the store, the clock); each asks the
//! real server the least it can — nothing is posted, mailed, dumped or changed — and hands
//! what it saw to a pure verdict function that says, when something is wrong, what to do.
//!
//! Fed by `cli::doctor` with a loaded `Config`; read by the CLI (a table or `--json`) and by
//! its exit status: 0 every finding passed (warnings allowed), 1 at least one failed.

pub(crate) mod clock;
pub(crate) mod files;
pub(crate) mod matrix;
pub(crate) mod postgres;
pub(crate) mod smtp;
pub(crate) mod store;
pub(crate) mod synapse;
pub(crate) mod webhook;

use crate::config::Config;
use serde::Serialize;
use std::time::Duration;

/// How long any one request or connection of the doctor may take.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a finding concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// Proven to work.
    Pass,
    /// Works, but something the config implies is missing (the exit status stays 0).
    Warn,
    /// Does not work: the fix says what to do.
    Fail,
}

impl Outcome {
    /// The word the table prints.
    pub fn word(self) -> &'static str {
        match self {
            Self::Pass => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// Which part of the config a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Area {
    /// A Synapse service's `admin_token`.
    Synapse,
    /// A Matrix receiver.
    Matrix,
    /// An email receiver's SMTP server.
    Smtp,
    /// A webhook receiver.
    Webhook,
    /// A `kind: postgres` service's role and extensions.
    Postgres,
    /// The backup destination, recipients and `pg_dump`.
    Backup,
    /// The store.
    Store,
    /// The local clock against the servers'.
    Clock,
}

impl Area {
    /// The name the table and the JSON use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Synapse => "synapse",
            Self::Matrix => "matrix",
            Self::Smtp => "smtp",
            Self::Webhook => "webhook",
            Self::Postgres => "postgres",
            Self::Backup => "backup",
            Self::Store => "store",
            Self::Clock => "clock",
        }
    }
}

/// One proven (or disproven) fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    /// The area.
    pub area: Area,
    /// What was checked: a service, a receiver, a path (never a secret).
    pub subject: String,
    /// What the check is, in a few words (`admin token`, `room not encrypted`).
    pub check: &'static str,
    /// The verdict.
    pub outcome: Outcome,
    /// What was seen.
    pub detail: String,
    /// What to do, when the outcome is not a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A pass.
    pub(crate) fn pass(area: Area, subject: &str, check: &'static str, detail: impl Into<String>) -> Self {
        Self { area, subject: subject.to_string(), check, outcome: Outcome::Pass, detail: detail.into(), fix: None }
    }

    /// A failure with its fix.
    pub(crate) fn fail(
        area: Area,
        subject: &str,
        check: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            area,
            subject: subject.to_string(),
            check,
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A warning with its fix.
    pub(crate) fn warn(
        area: Area,
        subject: &str,
        check: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self { outcome: Outcome::Warn, ..Self::fail(area, subject, check, detail, fix) }
    }
}

/// Whether a list of findings is healthy: no failure (warnings allowed).
pub(crate) fn healthy(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.outcome != Outcome::Fail)
}

/// Runs every check the config calls for, areas side by side, and returns the findings in a
/// fixed order (the config's order within each area). The config's redactor hides any secret a
/// server might echo back into a detail or fix.
pub(crate) async fn run(config: &Config) -> Vec<Finding> {
    let http = match crate::dispatch::http_client() {
        Ok(http) => http,
        Err(e) => {
            return vec![Finding::fail(
                Area::Clock,
                "mxwarden",
                "HTTP client",
                e,
                "check the system's CA certificates (/etc/ssl/certs)",
            )];
        }
    };
    let mut receivers: Vec<(String, crate::notify::Receiver)> = config
        .alerting
        .as_ref()
        .map(|a| a.receivers.iter().map(|(n, r)| (n.clone(), r.clone())).collect())
        .unwrap_or_default();
    receivers.extend(matrix_accounts(config));
    let (synapse, receivers, postgres, backup, store, clock) = tokio::join!(
        synapse::check_all(&http, config),
        futures::future::join_all(receivers.iter().map(|(name, r)| receiver(&http, name, r))),
        postgres::check_all(config),
        files::backup(config),
        store::check(&config.store),
        clock::check_all(&http, config),
    );
    let mut findings = Vec::new();
    findings.extend(synapse);
    findings.extend(receivers.into_iter().flatten());
    findings.extend(postgres);
    findings.extend(backup);
    findings.extend(store);
    findings.extend(clock);
    for f in &mut findings {
        f.detail = config.redactor.redact(&f.detail).into_owned();
        f.fix = f.fix.as_deref().map(|x| config.redactor.redact(x).into_owned());
    }
    findings
}

/// The other Matrix accounts the config relies on, proven like a Matrix receiver: the control
/// room's bot, and each canary's sender and reader.
fn matrix_accounts(config: &Config) -> Vec<(String, crate::notify::Receiver)> {
    use crate::notify::Receiver;
    use crate::notify::matrix::MatrixReceiver;
    let account = |homeserver: &url::Url, room: &str, token: &secrecy::SecretString| {
        Receiver::Matrix(MatrixReceiver::new(homeserver.clone(), room.to_string(), token.clone(), "m.notice".into()))
    };
    let mut out = Vec::new();
    if let Some(c) = &config.control {
        out.push(("control room".to_string(), account(&c.homeserver, &c.room, &c.token)));
    }
    for check in &config.checks {
        if let crate::probe::spec::ProbeSpec::MatrixCanary(c) = &check.probe {
            out.push((format!("{} sender", check.id), account(&c.sender.homeserver, &c.room, &c.sender.token)));
            if let Some(r) = &c.reader {
                out.push((format!("{} reader", check.id), account(&r.homeserver, &c.room, &r.token)));
            }
        }
    }
    out
}

async fn receiver(http: &reqwest::Client, name: &str, r: &crate::notify::Receiver) -> Vec<Finding> {
    use crate::notify::Receiver;
    match r {
        Receiver::Matrix(m) => matrix::check(http, name, m).await,
        Receiver::Email(e) => vec![smtp::check(name, e).await],
        Receiver::Webhook(w) => vec![webhook::check(http, name, w).await],
    }
}

/// A JSON answer of a server, or why there was none: what the pure verdicts read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// A status and its body (`Null` when it was not JSON).
    Http(u16, serde_json::Value),
    /// No answer: the transport error in words.
    Unreachable(String),
}

impl Answer {
    /// The Matrix `errcode`, if the body has one.
    pub(crate) fn errcode(&self) -> Option<&str> {
        match self {
            Self::Http(_, body) => body.get("errcode").and_then(serde_json::Value::as_str),
            Self::Unreachable(_) => None,
        }
    }

    /// A one-line account of a non-success answer.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Unreachable(why) => why.clone(),
            Self::Http(status, body) => {
                let error = body.get("error").and_then(serde_json::Value::as_str).unwrap_or("");
                match self.errcode() {
                    Some(code) => format!("HTTP {status} {code}: {}", crate::text::escape_controls(error)),
                    None => format!("HTTP {status}"),
                }
            }
        }
    }
}

/// GET (or another method) with a bearer token; the body read up to the notifiers' cap.
pub(crate) async fn call(
    request: reqwest::RequestBuilder,
    token: Option<&secrecy::SecretString>,
    url: &url::Url,
) -> Answer {
    use secrecy::ExposeSecret as _;
    let request = match token {
        Some(t) => request.bearer_auth(t.expose_secret()),
        None => request,
    };
    match request.timeout(STEP_TIMEOUT).send().await {
        Err(e) => Answer::Unreachable(crate::probe::explain_transport(&e, url)),
        Ok(response) => {
            let status = response.status().as_u16();
            match crate::notify::read_capped(response).await {
                Ok((bytes, _)) => {
                    Answer::Http(status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
                }
                Err(e) => Answer::Unreachable(crate::probe::explain_transport(&e, url)),
            }
        }
    }
}

/// `base` with `path` (already escaped) appended to its path.
pub(crate) fn endpoint(base: &url::Url, segments: &[&str]) -> url::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_means_no_failure() {
        let pass = Finding::pass(Area::Store, "s", "writable", "");
        let warn = Finding::warn(Area::Postgres, "p", "x", "", "fix");
        let fail = Finding::fail(Area::Clock, "c", "skew", "", "fix");
        let cases: [(&[Finding], bool, &str); 4] = [
            (&[], true, "nothing configured is nothing broken"),
            (std::slice::from_ref(&pass), true, "a pass"),
            (&[pass.clone(), warn.clone()], true, "a warning does not fail the run"),
            (&[pass.clone(), warn, fail], false, "one failure fails the run"),
        ];
        for (findings, want, why) in cases {
            assert_eq!(healthy(findings), want, "{why}");
        }
    }

    #[test]
    fn json_leaves_out_a_missing_fix_and_uses_lowercase_names() {
        let f = Finding::pass(Area::Matrix, "ops-room", "token", "@bot:example.org");
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(
            json,
            r#"{"area":"matrix","subject":"ops-room","check":"token","outcome":"pass","detail":"@bot:example.org"}"#
        );
    }

    #[test]
    fn an_answer_describes_itself_without_control_characters() {
        let a = Answer::Http(403, serde_json::json!({"errcode": "M_FORBIDDEN", "error": "no\u{1b}[31m"}));
        assert_eq!(a.errcode(), Some("M_FORBIDDEN"));
        assert!(!a.describe().contains('\u{1b}'), "{}", a.describe());
        assert_eq!(Answer::Http(502, serde_json::Value::Null).describe(), "HTTP 502");
    }
}
