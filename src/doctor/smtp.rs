//! An email receiver's SMTP server: connects, negotiates TLS as configured and logs in with
//! the configured credentials — lettre's `test_connection`, which sends no mail.

use super::{Area, Finding, STEP_TIMEOUT};
use crate::notify::email::{EmailReceiver, SmtpTls};

const CHECK: &str = "smtp login";

/// Where an SMTP attempt stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Connected, TLS as configured, logged in (if credentials are set).
    Ready,
    /// No TCP connection or no SMTP greeting in time.
    Connect(String),
    /// The TLS handshake (STARTTLS or implicit) failed.
    Tls(String),
    /// STARTTLS is required (the default) and the server does not offer it.
    NoStartTls(String),
    /// The server refused the credentials (a 5xx answer to AUTH).
    Auth(String),
    /// Anything else the server answered.
    Other(String),
}

/// Connects, and classifies the outcome.
pub(crate) async fn check(name: &str, e: &EmailReceiver) -> Finding {
    let stop = match e.transport() {
        Err(err) => Stop::Other(err.to_string()),
        Ok(transport) => match tokio::time::timeout(STEP_TIMEOUT, transport.test_connection()).await {
            Err(_) => Stop::Connect(format!("no answer within {}s", STEP_TIMEOUT.as_secs())),
            Ok(Ok(true)) => Stop::Ready,
            Ok(Ok(false)) => Stop::Connect("the server closed the connection".into()),
            Ok(Err(err)) => {
                let why = crate::probe::explain_tls(&err, &e.host).unwrap_or_else(|| err.to_string());
                if err.is_tls() {
                    Stop::Tls(why)
                } else if err.is_client() && why.contains("STARTTLS") {
                    Stop::NoStartTls(why)
                } else if err.is_permanent() && e.username.is_some() {
                    Stop::Auth(why)
                } else if err.is_timeout() || err.is_client() || !err.is_response() {
                    Stop::Connect(why)
                } else {
                    Stop::Other(why)
                }
            }
        },
    };
    judge(name, e, &stop)
}

/// The verdict for one receiver (pure).
pub(crate) fn judge(name: &str, e: &EmailReceiver, stop: &Stop) -> Finding {
    let server = format!("{}:{}", e.host, e.port);
    let tls = match e.tls {
        SmtpTls::StartTls => "STARTTLS",
        SmtpTls::Implicit => "implicit TLS",
        SmtpTls::None => "no TLS",
    };
    let fail = |detail: String, fix: &str| Finding::fail(Area::Smtp, name, CHECK, detail, fix);
    match stop {
        Stop::Ready => {
            let login = if e.username.is_some() { ", logged in" } else { ", no login configured" };
            Finding::pass(Area::Smtp, name, CHECK, format!("{server}: connected, {tls}{login}; no mail sent"))
        }
        Stop::Connect(why) => fail(
            format!("{server}: cannot connect: {why}"),
            "check `smtp:` host and port (587 STARTTLS, 465 smtps://) and that outbound SMTP is allowed from here \
             (many hosts block port 25)",
        ),
        Stop::Tls(why) => fail(
            format!("{server}: TLS ({tls}) failed: {why}"),
            "use smtps:// for port 465 and smtp:// (STARTTLS) for 587; check the server's certificate name",
        ),
        Stop::NoStartTls(why) => fail(
            format!("{server}: {why}"),
            "the server offers no STARTTLS on this port: use its implicit-TLS port (smtps://host:465), or \
             `tls: none` only for a relay on the same host or a private network",
        ),
        Stop::Auth(why) => fail(
            format!("{server}: the server refused the login: {why}"),
            "check `username` and the password variable; providers often need an app password for SMTP",
        ),
        Stop::Other(why) => fail(format!("{server}: {why}"), "check the receiver's `smtp:` URL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let receiver = EmailReceiver {
            host: "mail.example.org".into(),
            port: 587,
            tls: SmtpTls::StartTls,
            from: "m@example.org".parse().unwrap(),
            to: vec!["o@example.org".parse().unwrap()],
            username: Some("m".into()),
            password: Some("pw".into()),
        };
        let cases = [
            (Stop::Ready, true, "logged in", "connected, TLS, login"),
            (Stop::Connect("refused".into()), false, "port", "nothing listens"),
            (Stop::Tls("certificate for other.example".into()), false, "certificate name", "TLS"),
            (Stop::Auth("535 bad credentials".into()), false, "app password", "a wrong password"),
            (Stop::NoStartTls("STARTTLS is not supported".into()), false, "offers no STARTTLS", "a plain server"),
        ];
        for (stop, ok, needle, why) in cases {
            let f = judge("mail", &receiver, &stop);
            assert_eq!(f.outcome == crate::doctor::Outcome::Pass, ok, "{why}");
            let text = format!("{} {}", f.detail, f.fix.unwrap_or_default());
            assert!(text.contains(needle), "{why}: {text}");
            assert!(!text.contains("pw"), "{why}: the password never shows");
        }
    }
}
