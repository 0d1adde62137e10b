//! `oidc` — the runbook's "OIDC Flow Fails": MAS's discovery answers and its `issuer` is the
//! one configured (and the one Synapse hands to clients); Synapse serves
//! `/_matrix/client/v1/auth_metadata` (404 `M_UNRECOGNIZED`: MAS is not enabled in Synapse);
//! `GET /_matrix/client/v3/login` through the public URL reaches MAS's compatibility layer (a
//! 404 there, or Synapse's own password flow, is the runbook's routing cause); the JWKS
//! answers with keys; the clock of each server against mxwarden's (`Date` headers). Reads
//! only public endpoints.

use super::web::{Answer, Cx, join};
use super::{Finding, Notes, Severity, runbook};
use crate::model::ServiceKind;
use serde_json::Value;

/// Clock skew over this many seconds is a finding (tokens are checked against `iat`/`exp`).
const SKEW_WARNING_S: i64 = 30;

pub(super) async fn run(cx: &Cx<'_>, notes: &mut Notes) -> Result<(), String> {
    let mas = cx.service(ServiceKind::Mas).ok_or("no mas service")?;
    let base = mas.url.as_ref().ok_or_else(|| format!("{}: no url", mas.name))?;
    let mut dates: Vec<(String, Answer)> = Vec::new();
    let discovery_url = join(base, "/.well-known/openid-configuration");
    let discovery = match cx.get(&discovery_url, &mas.tls, None).await {
        Ok(a) if a.status == 200 && a.json().is_some() => {
            let doc = a.json().unwrap_or(Value::Null);
            dates.push((format!("{} (MAS)", host(&discovery_url)), a));
            Some(doc)
        }
        Ok(a) => {
            notes.found(Finding {
                severity: Severity::Critical,
                title: format!("MAS discovery answers {} at {discovery_url}", a.status),
                seen: vec![format!("GET {discovery_url}: {} {}", a.status, a.snippet())],
                why: "clients and Vikunja find MAS's endpoints there; without it no OIDC login starts".into(),
                fix: vec![
                    "route `/.well-known/openid-configuration`, `/oauth2/*`, `/authorize`, `/login`, `/assets` to MAS in the reverse proxy".into(),
                    "check that MAS runs (supervisord status) and that its listener has the `discovery` resource".into(),
                ],
                runbook: runbook::OIDC,
            });
            None
        }
        Err(e) => {
            notes.found(Finding {
                severity: Severity::Critical,
                title: "MAS discovery does not answer".into(),
                seen: vec![e],
                why: "no OIDC login can start".into(),
                fix: vec!["check that MAS runs (supervisord status) and the proxy forwards to it".into()],
                runbook: runbook::OIDC,
            });
            None
        }
    };
    let issuer = discovery.as_ref().and_then(|d| d["issuer"].as_str()).map(str::to_string);
    if let Some(doc) = &discovery {
        notes.saw(format!("MAS discovery answers; issuer {}", issuer.as_deref().unwrap_or("(missing)")));
        if let (Some(want), Some(got)) = (&mas.issuer, &issuer)
            && want.trim_end_matches('/') != got.trim_end_matches('/')
        {
            notes.found(Finding {
                severity: Severity::Critical,
                title: "MAS announces another issuer than the one configured".into(),
                seen: vec![format!("discovery issuer `{got}`"), format!("services.{}.issuer `{want}`", mas.name)],
                why: "tokens carry the issuer; clients and Synapse reject tokens whose issuer they do not expect".into(),
                fix: vec![format!("set `http.issuer` (or `http.public_base`) in mas.yaml to `{want}`, or correct `issuer` in mxwarden.yaml")],
                runbook: runbook::OIDC,
            });
        }
        match doc["jwks_uri"].as_str().and_then(|u| url::Url::parse(u).ok()) {
            Some(jwks) => match cx.get(&jwks, &mas.tls, None).await {
                Ok(a) if a.status == 200 && a.json().and_then(|j| j["keys"].as_array().map(Vec::len)).unwrap_or(0) > 0 => {
                    let n = a.json().and_then(|j| j["keys"].as_array().map(Vec::len)).unwrap_or(0);
                    notes.saw(format!("JWKS {jwks} holds {n} key(s)"));
                }
                Ok(a) => notes.found(Finding {
                    severity: Severity::Critical,
                    title: "MAS's JWKS holds no keys".into(),
                    seen: vec![format!("GET {jwks}: {} {}", a.status, a.snippet())],
                    why: "clients cannot verify the ID tokens MAS signs".into(),
                    fix: vec!["check `secrets.keys` in mas.yaml (the key files under /data/mas/*.pem) and that /oauth2/keys.json is routed to MAS".into()],
                    runbook: runbook::OIDC,
                }),
                Err(e) => notes.found(Finding {
                    severity: Severity::Critical,
                    title: "MAS's JWKS does not answer".into(),
                    seen: vec![e],
                    why: "clients cannot verify the ID tokens MAS signs".into(),
                    fix: vec!["route `/oauth2/keys.json` to MAS".into()],
                    runbook: runbook::OIDC,
                }),
            },
            None => notes.found(Finding {
                severity: Severity::Critical,
                title: "MAS discovery names no jwks_uri".into(),
                seen: vec![format!("discovery keys: {}", doc.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default())],
                why: "clients cannot verify ID tokens".into(),
                fix: vec!["check that the discovery document is MAS's (the proxy may serve another one)".into()],
                runbook: runbook::OIDC,
            }),
        }
    }
    if let Some(synapse) = cx.service(ServiceKind::Synapse)
        && let Some(hs) = &synapse.url
    {
        let meta_url = join(hs, "/_matrix/client/v1/auth_metadata");
        let mas_on = match cx.get(&meta_url, &synapse.tls, None).await {
            Ok(a) if a.status == 200 => {
                let told = a.json().and_then(|j| j["issuer"].as_str().map(str::to_string));
                notes.saw(format!("Synapse serves auth_metadata; issuer {}", told.as_deref().unwrap_or("(missing)")));
                if let (Some(told), Some(issuer)) = (&told, &issuer)
                    && told.trim_end_matches('/') != issuer.trim_end_matches('/')
                {
                    notes.found(Finding {
                        severity: Severity::Critical,
                        title: "Synapse tells clients another issuer than MAS announces".into(),
                        seen: vec![format!("auth_metadata issuer `{told}`"), format!("MAS discovery issuer `{issuer}`")],
                        why: "clients follow Synapse's answer to the wrong authorization server".into(),
                        fix: vec!["set `matrix_authentication_service.endpoint` in homeserver.yaml to MAS's base URL and restart Synapse".into()],
                        runbook: runbook::OIDC,
                    });
                }
                dates.push((format!("{} (Synapse)", host(&meta_url)), a));
                true
            }
            Ok(a) if a.status == 404 => {
                let code = a.json().and_then(|j| j["errcode"].as_str().map(str::to_string)).unwrap_or_default();
                notes.found(Finding {
                    severity: Severity::Critical,
                    title: "MAS is not enabled in Synapse: auth_metadata answers 404".into(),
                    seen: vec![format!("GET {meta_url}: 404 {code}")],
                    why: "without the MAS integration Synapse does its own logins; tokens issued by MAS are refused".into(),
                    fix: vec![
                        "homeserver.yaml: `matrix_authentication_service: { enabled: true, endpoint: \"http://localhost:8080/\", secret: \"<matrix.secret of mas.yaml>\" }`, then restart Synapse".into(),
                    ],
                    runbook: runbook::OIDC,
                });
                dates.push((format!("{} (Synapse)", host(&meta_url)), a));
                false
            }
            Ok(a) => {
                notes.found(Finding {
                    severity: Severity::Warning,
                    title: format!("Synapse's auth_metadata answers {}", a.status),
                    seen: vec![format!("GET {meta_url}: {} {}", a.status, a.snippet())],
                    why: "Synapse may not reach MAS to fetch its metadata".into(),
                    fix: vec!["check `matrix_authentication_service.endpoint` in homeserver.yaml and that Synapse can reach it".into()],
                    runbook: runbook::OIDC,
                });
                false
            }
            Err(e) => return Err(format!("Synapse does not answer: {e}")),
        };
        let login_url = join(hs, "/_matrix/client/v3/login");
        match cx.get(&login_url, &synapse.tls, None).await {
            Ok(a) if a.status == 200 => {
                let flows = a.json().and_then(|j| j["flows"].as_array().cloned()).unwrap_or_default();
                let by_mas = flows.iter().any(|f| {
                    f["type"] == "m.login.sso"
                        && (f["oauth_aware_preferred"] == true || f["org.matrix.msc3824.delegated_oidc_compatibility"] == true)
                });
                let types: Vec<&str> = flows.iter().filter_map(|f| f["type"].as_str()).collect();
                if by_mas {
                    notes.saw("GET /_matrix/client/v3/login reaches MAS's compatibility layer".to_string());
                } else if mas_on {
                    notes.found(Finding {
                        severity: Severity::Critical,
                        title: "/_matrix/client/v3/login is answered by Synapse, not MAS".into(),
                        seen: vec![format!("GET {login_url}: flows {}", types.join(", "))],
                        why: "with MAS enabled, logins must go to MAS's compatibility layer; the proxy sends them to Synapse".into(),
                        fix: vec!["reverse proxy: send `/_matrix/client/*/login`, `/logout` and `/refresh` to MAS (see 03-DEPLOYMENT_LESSONS.md)".into()],
                        runbook: runbook::OIDC,
                    });
                } else {
                    notes.saw(format!("GET /_matrix/client/v3/login: Synapse's own flows {}", types.join(", ")));
                }
            }
            Ok(a) if a.status == 404 => notes.found(Finding {
                severity: Severity::Critical,
                title: "/_matrix/client/v3/login answers 404 through the public URL".into(),
                seen: vec![format!("GET {login_url}: 404 {}", a.snippet())],
                why: "the runbook's routing cause: the proxy does not send `/_matrix/client/*/login|logout|refresh` to MAS, so no client can log in".into(),
                fix: vec!["reverse proxy: route `/_matrix/client/*/login`, `/logout` and `/refresh` to MAS (see 03-DEPLOYMENT_LESSONS.md)".into()],
                runbook: runbook::OIDC,
            }),
            Ok(a) => notes.found(Finding {
                severity: Severity::Warning,
                title: format!("/_matrix/client/v3/login answers {}", a.status),
                seen: vec![format!("GET {login_url}: {} {}", a.status, a.snippet())],
                why: "clients cannot learn how to log in".into(),
                fix: vec!["check the proxy's route for `/_matrix/client/*/login` and MAS's log".into()],
                runbook: runbook::OIDC,
            }),
            Err(e) => notes.saw(format!("GET /_matrix/client/v3/login failed: {e}")),
        }
    }
    for (who, a) in &dates {
        let Some(date) = a.date else { continue };
        let skew = date.as_second() - a.midpoint.as_second();
        notes.saw(format!("{who}: clock {skew:+} s against mxwarden's"));
        if skew.abs() > SKEW_WARNING_S {
            notes.found(Finding {
                severity: Severity::Warning,
                title: format!("{who}'s clock is {skew:+} s off"),
                seen: vec![format!("Date header {date} while mxwarden's clock read {}", a.midpoint)],
                why: "tokens carry issue and expiry times: a skewed clock makes fresh tokens look expired or not yet valid".into(),
                fix: vec!["run NTP (chrony, systemd-timesyncd) on the host whose clock is off".into()],
                runbook: runbook::OIDC,
            });
        }
    }
    Ok(())
}

fn host(url: &url::Url) -> String {
    url.host_str().unwrap_or_default().to_string()
}
