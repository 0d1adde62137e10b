//! `vikunja-email` — the runbook's Vikunja "No email address available": Vikunja's OpenID
//! providers from its public `/api/v1/info`; for each, its discovery document's
//! `claims_supported` and `scopes_supported`, and the scope Vikunja asks for. A provider that
//! cannot deliver `email` is a finding: Vikunja refuses the login with error 1019 (HTTP 412).
//! MAS is such a provider today (it removed the `email` claim in v0.13.0); the runbook's "MAS
//! patch" does not exist. Reads only public endpoints.

use super::web::{Cx, join};
use super::{Finding, Notes, Severity, runbook};
use crate::model::ServiceKind;
use serde_json::Value;

/// Most providers looked at (a hostile info document may list thousands).
const MAX_PROVIDERS: usize = 10;

pub(super) async fn run(cx: &Cx<'_>, notes: &mut Notes) -> Result<(), String> {
    let vikunja = cx.service(ServiceKind::Vikunja).ok_or("no vikunja service")?;
    let base = vikunja.url.as_ref().ok_or_else(|| format!("{}: no url", vikunja.name))?;
    let info_url = join(base, "/api/v1/info");
    let info = cx.get(&info_url, &vikunja.tls, None).await?;
    if info.status != 200 {
        return Err(format!("GET {info_url} answered {} {}", info.status, info.snippet()));
    }
    let info = info.json().ok_or_else(|| format!("GET {info_url} did not answer JSON"))?;
    let oidc = &info["auth"]["openid_connect"];
    let providers: Vec<Value> = oidc["providers"].as_array().cloned().unwrap_or_default();
    if oidc["enabled"] != true || providers.is_empty() {
        notes.saw(format!("{}: no OpenID provider configured (local login only)", vikunja.name));
        return Ok(());
    }
    let mas_hosts: Vec<String> = cx
        .config
        .services
        .iter()
        .filter(|s| s.kind == ServiceKind::Mas)
        .flat_map(|s| [s.url.clone(), s.issuer.as_deref().and_then(|i| url::Url::parse(i).ok())])
        .flatten()
        .map(|u| u.origin().ascii_serialization())
        .collect();
    for p in providers.iter().take(MAX_PROVIDERS) {
        let key = text(&p["key"]);
        let auth_url = text(&p["auth_url"]);
        let scope = text(&p["scope"]);
        let Ok(issuer) = url::Url::parse(&auth_url) else {
            notes.found(Finding {
                severity: Severity::Warning,
                title: format!("Vikunja provider `{key}` has no usable auth_url"),
                seen: vec![format!("auth_url `{auth_url}`")],
                why: "Vikunja cannot find the provider's discovery document".into(),
                fix: vec![format!("set `auth.openid.providers.{key}.authurl` to the provider's issuer URL")],
                runbook: runbook::VIKUNJA_EMAIL,
            });
            continue;
        };
        let discovery_url = join(&issuer, "/.well-known/openid-configuration");
        let doc = match cx.get(&discovery_url, &vikunja.tls, None).await {
            Ok(a) if a.status == 200 => a.json().unwrap_or(Value::Null),
            Ok(a) => {
                notes.found(Finding {
                    severity: Severity::Critical,
                    title: format!("Vikunja provider `{key}`: discovery answers {}", a.status),
                    seen: vec![format!("GET {discovery_url}: {} {}", a.status, a.snippet())],
                    why: "Vikunja cannot start a login with this provider".into(),
                    fix: vec![format!(
                        "check `auth.openid.providers.{key}.authurl` (the issuer; discovery lives under it)"
                    )],
                    runbook: runbook::VIKUNJA_EMAIL,
                });
                continue;
            }
            Err(e) => {
                notes.found(Finding {
                    severity: Severity::Critical,
                    title: format!("Vikunja provider `{key}`: discovery does not answer"),
                    seen: vec![e],
                    why: "Vikunja cannot start a login with this provider".into(),
                    fix: vec![format!("check `auth.openid.providers.{key}.authurl` and that the provider runs")],
                    runbook: runbook::VIKUNJA_EMAIL,
                });
                continue;
            }
        };
        let list = |field: &str| -> Vec<String> {
            doc[field]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).take(100).collect())
                .unwrap_or_default()
        };
        let claims = list("claims_supported");
        let scopes = list("scopes_supported");
        notes.saw(format!(
            "provider `{key}` ({issuer}): claims_supported [{}], scopes_supported [{}], Vikunja asks for scope `{scope}`",
            claims.join(", "),
            scopes.join(", ")
        ));
        let is_mas = mas_hosts.contains(&issuer.origin().ascii_serialization());
        if !claims.iter().any(|c| c == "email") {
            let mut fix = vec![
                "make authentik Vikunja's provider: in Vikunja's config, `auth.openid.providers.authentik: { name: authentik, authurl: \"https://auth.example.org/application/o/vikunja/\", clientid: …, clientsecret: …, scope: \"openid email profile\" }`; register the redirect URI `https://<vikunja>/auth/openid/authentik` in authentik".to_string(),
                "or put a provider in front that maps an upstream email claim into the ID token".to_string(),
            ];
            if is_mas {
                fix.push("the runbook's \"MAS patch\" (solutions-55jz) does not exist: MAS removed the email claim from userinfo in v0.13.0 and returns only `sub` and `username`".into());
            }
            // A provider that lists its claims without `email` cannot deliver one; one that
            // lists none (the field is optional) does not say it can. MAS lists them, and
            // `email` is not among them.
            let listed = doc.get("claims_supported").is_some();
            notes.found(Finding {
                severity: if listed || is_mas { Severity::Critical } else { Severity::Warning },
                title: format!(
                    "Vikunja provider `{key}` {} an email address{}",
                    if listed { "cannot deliver" } else { "does not announce" },
                    if is_mas { " (it is MAS)" } else { "" }
                ),
                seen: vec![
                    if listed {
                        format!("{discovery_url}: claims_supported [{}] has no `email`", claims.join(", "))
                    } else {
                        format!("{discovery_url}: no claims_supported at all")
                    },
                    format!("Vikunja asks for scope `{scope}`"),
                ],
                why: "Vikunja needs an email to create the account: without one it refuses the login with error 1019 (HTTP 412, \"No email address available\")".into(),
                fix,
                runbook: runbook::VIKUNJA_EMAIL,
            });
        } else if !scope.split_whitespace().any(|s| s == "email") {
            notes.found(Finding {
                severity: Severity::Warning,
                title: format!("Vikunja provider `{key}` does not ask for the `email` scope"),
                seen: vec![format!("scope `{scope}`"), format!("the provider supports: [{}]", scopes.join(", "))],
                why:
                    "without the scope the provider leaves the email out and Vikunja refuses the login with error 1019"
                        .into(),
                fix: vec![format!(
                    "set `auth.openid.providers.{key}.scope: \"openid email profile\"` in Vikunja's config"
                )],
                runbook: runbook::VIKUNJA_EMAIL,
            });
        }
    }
    Ok(())
}

fn text(v: &Value) -> String {
    crate::text::escape_controls(v.as_str().unwrap_or_default()).chars().take(300).collect()
}
