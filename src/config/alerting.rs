//! Builds `alerting:` into runnable receivers and tiers: URLs and addresses parsed, secrets
//! read, every receiver a tier names checked (with a suggestion for a typo), the time zone
//! looked up, digest times parsed. Defaults follow the runbook: critical at once, warning in
//! a daily digest at 09:00, info in a weekly digest on Monday 09:00.

use super::build::{Problems, parse_url, secret};
use super::schema::{AlertingConfig, ReceiverConfig, TierConfig};
use crate::notify::email::{EmailReceiver, SmtpTls};
use crate::notify::matrix::MatrixReceiver;
use crate::notify::webhook::WebhookReceiver;
use crate::notify::{Alerting, DigestSchedule, Receiver, Tier, parse_schedule};
use crate::units::closest;
use secrecy::ExposeSecret;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;

/// Builds the alerting section, recording problems.
pub(super) fn build(config: &AlertingConfig, problems: &mut Problems<'_>) -> Option<Alerting> {
    let mut receivers = BTreeMap::new();
    for (name, spanned) in &config.receivers {
        if let Some(r) = receiver(name, spanned, problems) {
            receivers.insert(name.clone(), r);
        }
    }
    let timezone = match &config.timezone {
        None => jiff::tz::TimeZone::UTC,
        Some(tz) => match jiff::tz::TimeZone::get(tz.value.trim()) {
            Ok(zone) => zone,
            Err(_) => {
                problems.add(
                    &tz.referenced,
                    "alerting.timezone",
                    format!("`{}` is not a known time zone; expected e.g. Europe/Berlin or UTC", tz.value),
                );
                jiff::tz::TimeZone::UTC
            }
        },
    };
    let defaults: [(&str, Option<DigestSchedule>); 3] = [
        ("critical", None),
        ("warning", Some(DigestSchedule::Daily { hour: 9, minute: 0 })),
        ("info", Some(DigestSchedule::Weekly { weekday: jiff::civil::Weekday::Monday, hour: 9, minute: 0 })),
    ];
    let mut tiers = BTreeMap::new();
    for (name, default_digest) in defaults {
        let given = match name {
            "critical" => config.tiers.critical.as_ref(),
            "warning" => config.tiers.warning.as_ref(),
            _ => config.tiers.info.as_ref(),
        };
        let tier = match given {
            Some(t) => tier(name, t, default_digest, &config.receivers, problems),
            None => Tier { digest: default_digest, fallback_after: 3, ..Tier::default() },
        };
        tiers.insert(name.to_string(), tier);
    }
    let defaults = crate::notify::RetryPolicy::default();
    let ms = |d: Option<crate::units::HumanDuration>, default: i64| d.map_or(default, |d| d.0.as_millis() as i64);
    let retry = config.retry.as_ref().map_or(defaults, |r| crate::notify::RetryPolicy {
        initial_ms: ms(r.initial, defaults.initial_ms).max(1),
        max_ms: ms(r.max, defaults.max_ms).max(1),
        give_up_ms: ms(r.give_up_after, defaults.give_up_ms),
    });
    Some(Alerting { receivers, tiers, timezone, retry })
}

fn tier(
    name: &str,
    spanned: &Spanned<TierConfig>,
    default_digest: Option<DigestSchedule>,
    known: &BTreeMap<String, Spanned<ReceiverConfig>>,
    problems: &mut Problems<'_>,
) -> Tier {
    let t = &spanned.value;
    let here = spanned.referenced;
    let key = format!("alerting.tiers.{name}");
    for (field, list) in [("receivers", &t.receivers), ("fallback", &t.fallback)] {
        for (i, r) in list.iter().enumerate() {
            if !known.contains_key(r) {
                let names: Vec<&str> = known.keys().map(String::as_str).collect();
                let hint = closest(r, names.iter().copied()).map(|k| format!("did you mean `{k}`?"));
                let expected = if names.is_empty() {
                    "none are defined under alerting.receivers".to_string()
                } else {
                    names.join(", ")
                };
                problems.add_with_hint(
                    &here,
                    format!("{key}.{field}[{i}]"),
                    format!("no receiver `{r}`; expected one of: {expected}"),
                    hint,
                );
            }
        }
    }
    let digest = match &t.digest {
        None => default_digest.filter(|_| name != "critical"),
        Some(d) => match parse_schedule(d.daily.as_deref(), d.weekly.as_deref()) {
            Ok(s) => Some(s),
            Err(why) => {
                problems.add(&here, format!("{key}.digest"), why);
                None
            }
        },
    };
    if name == "critical" && digest.is_some() {
        problems.add(
            &here,
            format!("{key}.digest"),
            "critical alerts page at once; a digest applies to warning and info",
        );
    }
    Tier {
        receivers: t.receivers.clone(),
        fallback: t.fallback.clone(),
        fallback_after: t.fallback_after.unwrap_or(3).max(1),
        repeat_ms: t.repeat.map_or(0, |d| d.0.as_millis() as i64),
        digest,
    }
}

fn receiver(name: &str, spanned: &Spanned<ReceiverConfig>, problems: &mut Problems<'_>) -> Option<Receiver> {
    let r = &spanned.value;
    let here: Location = spanned.referenced;
    let key = format!("alerting.receivers.{name}");
    let kinds = usize::from(r.matrix.is_some()) + usize::from(r.email.is_some()) + usize::from(r.webhook.is_some());
    if kinds != 1 {
        problems.add(&here, &key, "a receiver is exactly one of `matrix:`, `email:` or `webhook:`");
        return None;
    }
    if let Some(m) = &r.matrix {
        let url = problems.take(parse_url(problems.origin, &m.homeserver, &format!("{key}.matrix.homeserver")));
        let token = problems.take(secret(
            problems.origin,
            m.access_token.as_ref(),
            m.access_token_file.as_ref(),
            &format!("{key}.matrix.access_token"),
            &here,
        ));
        let msgtype = m.msgtype.clone().unwrap_or_else(|| "m.notice".into());
        if msgtype != "m.notice" && msgtype != "m.text" {
            problems.add(&here, format!("{key}.matrix.msgtype"), format!("`{msgtype}`; expected m.notice or m.text"));
        }
        if !(m.room.starts_with('!') || m.room.starts_with('#')) {
            problems.add(
                &here,
                format!("{key}.matrix.room"),
                format!("`{}` is neither a room id (!…) nor an alias (#…)", m.room),
            );
        }
        let Some(Some(token)) = token else {
            if matches!(token, Some(None)) {
                problems.add(
                    &here,
                    format!("{key}.matrix.access_token"),
                    "a Matrix receiver needs `access_token` or `access_token_file`",
                );
            }
            return None;
        };
        return Some(Receiver::Matrix(MatrixReceiver::new(url?, m.room.clone(), token, msgtype)));
    }
    if let Some(e) = &r.email {
        let smtp = problems.take(parse_smtp(&e.smtp, &format!("{key}.email.smtp"), problems.origin));
        let tls = match (e.tls.as_deref(), smtp.as_ref().map(|s| s.0)) {
            (Some("starttls"), _) => SmtpTls::StartTls,
            (Some("tls"), _) => SmtpTls::Implicit,
            (Some("none"), _) => SmtpTls::None,
            (Some(other), _) => {
                problems.add(&here, format!("{key}.email.tls"), format!("`{other}`; expected starttls, tls or none"));
                SmtpTls::StartTls
            }
            (None, Some(true)) => SmtpTls::Implicit,
            (None, _) => SmtpTls::StartTls,
        };
        let password = problems.take(secret(
            problems.origin,
            e.password.as_ref(),
            e.password_file.as_ref(),
            &format!("{key}.email.password"),
            &here,
        ));
        let mailbox =
            |addr: &str, field: &str, problems: &mut Problems<'_>| match addr.parse::<lettre::message::Mailbox>() {
                Ok(m) => Some(m),
                Err(err) => {
                    problems.add(
                        &here,
                        format!("{key}.email.{field}"),
                        format!("`{addr}` is not an email address ({err})"),
                    );
                    None
                }
            };
        let from = mailbox(&e.from, "from", problems);
        let to: Vec<_> = e.to.iter().filter_map(|a| mailbox(a, "to", problems)).collect();
        if e.to.is_empty() {
            problems.add(&here, format!("{key}.email.to"), "needs at least one recipient");
        }
        let (_, host, port) = smtp?;
        return Some(Receiver::Email(EmailReceiver {
            host,
            port,
            tls,
            from: from?,
            to,
            username: e.username.clone(),
            password: password?,
        }));
    }
    let w = r.webhook.as_ref()?;
    let written = Spanned::new(w.url.value.expose_secret().to_string(), w.url.referenced, w.url.defined);
    let url = problems.take(parse_url(problems.origin, &written, &format!("{key}.webhook.url")));
    let secret = problems.take(secret(
        problems.origin,
        w.hmac_secret.as_ref(),
        w.hmac_secret_file.as_ref(),
        &format!("{key}.webhook.hmac_secret"),
        &here,
    ));
    let headers = super::build::headers(&w.headers, &format!("{key}.webhook"), &here, problems);
    Some(Receiver::Webhook(WebhookReceiver { url: url?, hmac_secret: secret?, headers }))
}

/// `smtp://host[:port]` or `smtps://host[:port]` → (implicit TLS?, host, port).
fn parse_smtp(
    text: &Spanned<String>,
    key: &str,
    origin: &super::build::Origin<'_>,
) -> Result<(bool, String, u16), Box<super::Diagnostic>> {
    let fail = |why: String| Box::new(origin.at(&text.referenced, key, why));
    let url = url::Url::parse(text.value.trim()).map_err(|e| {
        fail(format!("`{}` is not a URL ({e}); expected smtp://host:587 or smtps://host:465", text.value))
    })?;
    let implicit = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => return Err(fail(format!("scheme `{other}`; expected smtp or smtps"))),
    };
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| fail("no host".into()))?.to_string();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("credentials in URLs end up in logs; use username and password".into()));
    }
    Ok((implicit, host, url.port().unwrap_or(if implicit { 465 } else { 587 })))
}
