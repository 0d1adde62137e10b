//! The webhook receiver: POSTs Alertmanager's webhook payload (version 4) so anything that
//! consumes Alertmanager (bridges, chat bots, incident tools) consumes mxwarden too. The body
//! can be signed with HMAC-SHA256 (`X-Mxwarden-Signature: sha256=<hex>`), and every delivery
//! carries `X-Mxwarden-Delivery: <outbox id>` so a receiver can drop a retried duplicate.
//! An error answer is read up to `RESPONSE_BODY_LIMIT` (its start goes into the error); a
//! success's body is not read at all.

use super::{AlertInfo, Kind, Notification, RetryAfter, SendError};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;
use url::Url;

/// A webhook endpoint.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    /// Where to POST.
    pub url: Url,
    /// HMAC key, if the body is signed.
    pub hmac_secret: Option<SecretString>,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

use crate::units::rfc3339;

fn alert_json(a: &AlertInfo, resolved: bool) -> Value {
    let fingerprint = format!("{:016x}", fnv1a(super::incident_key(&a.labels).as_bytes()));
    json!({
        "status": if resolved { "resolved" } else { "firing" },
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.fired_at),
        "endsAt": a.resolved_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
        "generatorURL": "",
        "fingerprint": fingerprint,
    })
}

/// A stable 64-bit FNV-1a hash (Alertmanager's fingerprints are label hashes too).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Alertmanager's webhook payload, version 4.
pub(crate) fn payload(receiver: &str, n: &Notification) -> Value {
    let resolved = n.kind == Kind::Resolved;
    let alerts: Vec<Value> = n.alerts.iter().map(|a| alert_json(a, a.resolved_at.is_some() || resolved)).collect();
    let common = |pick: fn(&AlertInfo) -> &std::collections::BTreeMap<String, String>| {
        let mut common = n.alerts.first().map(|a| pick(a).clone()).unwrap_or_default();
        for a in &n.alerts[1.min(n.alerts.len())..] {
            common.retain(|k, v| pick(a).get(k) == Some(v));
        }
        common
    };
    let group_labels: std::collections::BTreeMap<String, String> = n
        .alerts
        .first()
        .and_then(|a| a.labels.get("alertname"))
        .map(|name| [("alertname".to_string(), name.clone())].into_iter().collect())
        .unwrap_or_default();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{incident=\"{}\"}}", n.incident),
        "truncatedAlerts": 0,
        "status": if resolved { "resolved" } else { "firing" },
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common(|a| &a.labels),
        "commonAnnotations": common(|a| &a.annotations),
        "externalURL": "",
        "alerts": alerts,
    })
}

impl WebhookReceiver {
    /// POSTs the payload for `n`.
    pub(crate) async fn send(
        &self,
        http: &reqwest::Client,
        receiver: &str,
        delivery: &str,
        n: &Notification,
    ) -> Result<(), SendError> {
        let body = serde_json::to_vec(&payload(receiver, n)).map_err(|e| SendError::Permanent(e.to_string()))?;
        let mut request = http
            .post(self.url.clone())
            .timeout(Duration::from_secs(30))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Mxwarden-Delivery", delivery);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(secret) = &self.hmac_secret {
            request = request.header("X-Mxwarden-Signature", format!("sha256={}", sign(secret, &body)));
        }
        // The URL's path and query are its credential: errors (logged, stored in the outbox,
        // shown by `mxwarden outbox`) name the scheme, host and port only.
        let shown = self.shown_url();
        let response = request.body(body).send().await.map_err(|e| {
            SendError::transient(format!(
                "webhook {shown}: {}",
                crate::probe::explain_transport(&e.without_url(), &shown)
            ))
        })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(RetryAfter::from_header);
        let said = match super::read_capped(response).await {
            Ok((bytes, _)) => super::snippet(&String::from_utf8_lossy(&bytes)),
            Err(_) => String::new(),
        };
        let mut message = format!("webhook {shown} answered {status}");
        if !said.is_empty() {
            message.push_str(&format!(": {said}"));
        }
        Err(match status {
            408 | 429 | 500..=599 => SendError::Transient { message, retry_after },
            _ => SendError::Permanent(message),
        })
    }
}

impl WebhookReceiver {
    /// The URL as messages show it: scheme, host and port, the path left out.
    pub(crate) fn shown_url(&self) -> Url {
        crate::redact::origin_only(&self.url)
    }
}

/// Hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        let got = sign(&SecretString::from("Jefe"), b"what do ya want for nothing?");
        assert_eq!(got, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn messages_show_the_url_without_its_credential() {
        let receiver =
            |url: &str| WebhookReceiver { url: url.parse().unwrap(), hmac_secret: None, headers: Vec::new() };
        let cases = [
            ("https://hooks.example.org/services/T0/B0/XyZ", "https://hooks.example.org/", "a token in the path"),
            ("http://127.0.0.1:9000/hook?token=abc#x", "http://127.0.0.1:9000/", "in the query, with a port"),
        ];
        for (url, shown, why) in cases {
            assert_eq!(receiver(url).shown_url().as_str(), shown, "{why}");
        }
    }

    #[test]
    fn the_payload_has_alertmanagers_shape() {
        let labels: crate::model::Labels = [("alertname", "SynapseDown"), ("severity", "critical")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let alert = AlertInfo {
            name: "SynapseDown".into(),
            labels,
            annotations: Default::default(),
            value: 0.0,
            fired_at: 0,
            resolved_at: None,
        };
        let n = super::super::alert_message(Kind::Firing, alert, 0);
        let p = payload("hook", &n);
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["alerts"][0]["startsAt"], "1970-01-01T00:00:00Z");
        assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(p["commonLabels"]["severity"], "critical");
        assert_eq!(p["groupLabels"]["alertname"], "SynapseDown");
    }
}
