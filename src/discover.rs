//! `mxwarden init --discover URL`: what a homeserver's URL alone reveals, turned into a starter
//! config. It reads `/.well-known/matrix/client` and `/server`, `/_matrix/client/versions`,
//! Synapse's `server_version`, `auth_metadata` (MAS's issuer, then the issuer's own OIDC
//! discovery) and finds the federation endpoint; every request is recorded with its outcome,
//! so the operator sees exactly what was asked. Answers are read up to the notifiers' 64 KiB
//! cap, each request has its own deadline, and every value a server supplies is quoted (or,
//! in comments, escaped) before it reaches the YAML.
//!
//! Fed by `cli`; [`render`] is pure and table-tested, the requests are in [`discover`].

use serde_json::Value;
use std::time::Duration;
use url::Url;

/// Deadline per request.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One request made, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Request {
    /// `GET <url>`.
    pub url: String,
    /// `200`, `404 M_UNRECOGNIZED`, `connection refused`, …
    pub outcome: String,
}

/// What discovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Found {
    /// The URL given.
    pub input: String,
    /// The client API's base URL (`m.homeserver.base_url`, or the URL given).
    pub base_url: String,
    /// Spec versions from `/_matrix/client/versions`.
    pub versions: Vec<String>,
    /// Synapse's `server_version`, when its admin API answers.
    pub synapse_version: Option<String>,
    /// A federation base URL that answered `/_matrix/federation/v1/version`.
    pub federation_url: Option<String>,
    /// MAS's issuer (from `auth_metadata` or the well-known's MSC2965 entry).
    pub issuer: Option<String>,
    /// Whether the issuer's own discovery document answered with the same issuer.
    pub issuer_confirmed: bool,
    /// Every request, in order.
    pub requests: Vec<Request>,
}

/// Why discovery could not produce a config.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoverError {
    /// The URL is not an http(s) URL.
    #[error("`{0}` is not an http(s) URL (e.g. https://matrix.example.org)")]
    BadUrl(String),
    /// No homeserver answered `/_matrix/client/versions`.
    #[error("no Matrix homeserver at {base}: /_matrix/client/versions answered {outcome}")]
    NotAHomeserver {
        /// Where it was asked.
        base: String,
        /// What it said.
        outcome: String,
    },
    /// The HTTP client could not be built.
    #[error("{0}")]
    Client(String),
}

/// Asks the homeserver at `input` what it is, recording each request.
pub(crate) async fn discover(input: &str) -> Result<Found, DiscoverError> {
    // `matrix.example.org` means https://matrix.example.org, as clients read it.
    let input = input.trim();
    let with_scheme = if input.contains("://") { input.to_string() } else { format!("https://{input}") };
    let input_url = Url::parse(&with_scheme)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| DiscoverError::BadUrl(crate::text::escape_controls(input).into_owned()))?;
    let http = crate::dispatch::http_client().map_err(DiscoverError::Client)?;
    let mut found = Found { input: input_url.to_string(), ..Found::default() };
    let mut log = Vec::new();

    let client_wk = get(&http, &join(&origin(&input_url), "/.well-known/matrix/client"), &mut log).await;
    let base = client_wk
        .as_ref()
        .and_then(|v| v.pointer("/m.homeserver/base_url"))
        .and_then(Value::as_str)
        .and_then(|s| Url::parse(s).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .unwrap_or_else(|| input_url.clone());
    let legacy_issuer = client_wk
        .as_ref()
        .and_then(|v| v.pointer("/org.matrix.msc2965.authentication/issuer"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let server_wk = get(&http, &join(&origin(&input_url), "/.well-known/matrix/server"), &mut log).await;
    let delegated = server_wk.as_ref().and_then(|v| v.get("m.server")).and_then(Value::as_str).map(str::to_string);

    let versions = get(&http, &join(&base, "/_matrix/client/versions"), &mut log).await;
    let Some(list) = versions.as_ref().and_then(|v| v.get("versions")).and_then(Value::as_array) else {
        let outcome = log.last().map(|r: &Request| r.outcome.clone()).unwrap_or_default();
        return Err(DiscoverError::NotAHomeserver { base: base.to_string(), outcome });
    };
    found.versions = list.iter().filter_map(Value::as_str).take(64).map(str::to_string).collect();
    found.base_url = base.to_string();
    found.synapse_version = get(&http, &join(&base, "/_synapse/admin/v1/server_version"), &mut log)
        .await
        .and_then(|v| v.get("server_version").and_then(Value::as_str).map(str::to_string));

    let mut issuer = None;
    for path in ["/_matrix/client/v1/auth_metadata", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"] {
        if let Some(meta) = get(&http, &join(&base, path), &mut log).await {
            issuer = meta.get("issuer").and_then(Value::as_str).map(str::to_string);
            if issuer.is_some() {
                break;
            }
        }
    }
    let issuer = issuer.or(legacy_issuer);
    if let Some(iss) = issuer.as_deref().and_then(|i| Url::parse(i).ok()) {
        let doc = get(&http, &join(&iss, "/.well-known/openid-configuration"), &mut log).await;
        found.issuer_confirmed =
            doc.as_ref().and_then(|d| d.get("issuer")).and_then(Value::as_str) == issuer.as_deref();
    }
    found.issuer = issuer;

    for candidate in federation_candidates(&input_url, &base, delegated.as_deref()) {
        let answer = get(&http, &join(&candidate, "/_matrix/federation/v1/version"), &mut log).await;
        if answer.as_ref().and_then(|v| v.pointer("/server/version")).is_some() {
            found.federation_url = Some(candidate.as_str().trim_end_matches('/').to_string());
            break;
        }
    }
    found.requests = log;
    Ok(found)
}

/// Where federation may be served, most likely first: the server well-known's `m.server`
/// (port 8448 when none is given), the client API's own origin, and the host on port 8448.
pub(crate) fn federation_candidates(input: &Url, base: &Url, delegated: Option<&str>) -> Vec<Url> {
    let mut out: Vec<Url> = Vec::new();
    let mut push = |u: Option<Url>| {
        if let Some(u) = u
            && !out.contains(&u)
        {
            out.push(u);
        }
    };
    if let Some(server) = delegated {
        let server = server.trim();
        let with_port =
            if server.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !server.ends_with(']') {
                server.to_string()
            } else {
                format!("{server}:8448")
            };
        push(Url::parse(&format!("https://{with_port}/")).ok().filter(|u| u.path() == "/" && u.query().is_none()));
    }
    push(Some(origin(base)));
    if let Some(host) = input.host_str() {
        push(Url::parse(&format!("https://{host}:8448/")).ok());
    }
    out
}

fn origin(url: &Url) -> Url {
    let mut u = url.clone();
    u.set_path("/");
    u.set_query(None);
    u.set_fragment(None);
    u
}

fn join(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let prefix = base.path().trim_end_matches('/');
    u.set_path(&format!("{prefix}{path}"));
    u.set_query(None);
    u
}

/// GET `url`; the JSON object on a 200, else `None`. Records the request either way.
async fn get(http: &reqwest::Client, url: &Url, log: &mut Vec<Request>) -> Option<Value> {
    let (outcome, value) = match http.get(url.clone()).timeout(TIMEOUT).send().await {
        Err(e) => (crate::probe::explain_transport(&e, url), None),
        Ok(response) => {
            let status = response.status().as_u16();
            match crate::notify::read_capped(response).await {
                Err(e) => (crate::probe::explain_transport(&e, url), None),
                Ok((_, true)) => (format!("{status}, answer over 64 KiB: not read"), None),
                Ok((bytes, false)) => {
                    let value: Option<Value> = serde_json::from_slice(&bytes).ok().filter(Value::is_object);
                    let code = value.as_ref().and_then(|v| v.get("errcode")).and_then(Value::as_str);
                    let outcome = match (status, code, &value) {
                        (200, _, Some(_)) => "200".to_string(),
                        (200, _, None) => "200, not a JSON object".to_string(),
                        (_, Some(code), _) => format!("{status} {}", crate::text::escape_controls(code)),
                        _ => status.to_string(),
                    };
                    (outcome, if status == 200 { value } else { None })
                }
            }
        }
    };
    log.push(Request { url: url.to_string(), outcome });
    value
}

/// A string as a YAML double-quoted scalar (JSON's quoting is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Server-supplied text fit for a YAML comment: one line, control characters escaped.
fn comment(s: &str) -> String {
    crate::text::escape_controls(s).replace(['\n', '\r'], " ")
}

/// The starter config for what was found (pure).
pub(crate) fn render(found: &Found, today: &str) -> String {
    let mut y = String::new();
    let line = |y: &mut String, s: &str| {
        y.push_str(s);
        y.push('\n');
    };
    line(&mut y, "# mxwarden.yaml — written by `mxwarden init --discover`");
    line(&mut y, &format!("#   for {} on {today}.", comment(&found.input)));
    line(&mut y, "# Check it with `mxwarden config check`, prove its credentials with `mxwarden doctor`, and run");
    line(&mut y, "# every check once with `mxwarden check`.");
    line(&mut y, "#");
    line(&mut y, "# Requests made to find this out:");
    for r in &found.requests {
        line(&mut y, &format!("#   GET {} -> {}", comment(&r.url), comment(&r.outcome)));
    }
    line(&mut y, "#");
    line(&mut y, "# Secrets: write \"${ENV_VAR}\" (an unset variable is an error) or use the *_file twin of a key.");
    line(&mut y, "# The commented lines are what discovery could not know.");
    line(&mut y, "");
    line(&mut y, "# listen: 127.0.0.1:8090               # the status page, JSON API, /metrics and /healthz");
    line(&mut y, "# store: /var/lib/mxwarden/mxwarden.db  # alert state, outbox, uptime history");
    line(&mut y, "");
    line(&mut y, "services:");
    let synapse = match &found.synapse_version {
        Some(v) => format!("Synapse {}", comment(v)),
        None => "a homeserver (Synapse's admin API did not answer: a proxy may hide it)".to_string(),
    };
    line(
        &mut y,
        &format!("  # {synapse}; client API versions up to {}.", comment(found.versions.last().map_or("?", |v| v))),
    );
    line(&mut y, "  synapse:");
    line(&mut y, "    kind: synapse");
    line(&mut y, &format!("    url: {}", quoted(found.base_url.trim_end_matches('/'))));
    match &found.federation_url {
        Some(f) => line(
            &mut y,
            &format!("    federation_url: {}          # answered /_matrix/federation/v1/version", quoted(f)),
        ),
        None => {
            line(&mut y, "    # federation_url: https://matrix.example.org:8448  # no federation endpoint answered")
        }
    }
    line(
        &mut y,
        "    # admin_token: \"${SYNAPSE_ADMIN_TOKEN}\"  # a server admin's token: proves it, reads media statistics",
    );
    line(&mut y, "    # metrics_url: http://127.0.0.1:9000/_synapse/metrics  # enables the runbook's metric rules");
    line(&mut y, "");
    match &found.issuer {
        Some(issuer) if found.issuer_confirmed => {
            line(&mut y, "  # MAS, the homeserver's OAuth 2.0 issuer (its discovery document names the same issuer).");
            line(&mut y, "  mas:");
            line(&mut y, "    kind: mas");
            line(&mut y, &format!("    url: {}", quoted(issuer)));
            line(&mut y, &format!("    issuer: {}", quoted(issuer)));
            line(&mut y, "    # health_url: http://mas.internal:8081/health  # MAS's internal listener");
        }
        Some(issuer) => {
            // Named by the homeserver but not confirmed by the issuer itself: left for the
            // operator to check rather than written as a check that may never pass.
            line(&mut y, "  # The homeserver names this OAuth 2.0 issuer (MAS), but its discovery document did not");
            line(&mut y, "  # answer with the same issuer: check it, then uncomment.");
            line(&mut y, "  # mas:");
            line(&mut y, "  #   kind: mas");
            line(&mut y, &format!("  #   url: {}", quoted(issuer)));
            line(&mut y, &format!("  #   issuer: {}", quoted(issuer)));
        }
        None => {
            line(&mut y, "  # No MAS: the homeserver has no auth_metadata (it handles logins itself).");
            line(&mut y, "  # mas:");
            line(&mut y, "  #   kind: mas");
            line(&mut y, "  #   url: https://auth.example.org");
        }
    }
    line(&mut y, "");
    line(&mut y, "  # postgres:");
    line(&mut y, "  #   kind: postgres");
    line(&mut y, "  #   dsn: \"${DATABASE_URL}\"            # a role with pg_monitor sees everything");
    line(&mut y, "");
    line(&mut y, "# Where alerts go (`mxwarden doctor` proves each receiver without sending).");
    line(&mut y, "# alerting:");
    line(&mut y, "#   receivers:");
    line(
        &mut y,
        &format!(
            "#     ops-room: {{ matrix: {{ homeserver: {}, room: \"#ops:example.org\", access_token: \"${{MXWARDEN_MATRIX_TOKEN}}\" }} }}",
            quoted(found.base_url.trim_end_matches('/'))
        ),
    );
    line(&mut y, "#   tiers:");
    line(&mut y, "#     critical: { receivers: [ops-room] }");
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found() -> Found {
        Found {
            input: "https://example.org/".into(),
            base_url: "https://matrix.example.org/".into(),
            versions: vec!["v1.11".into(), "v1.12".into()],
            synapse_version: Some("1.157.1".into()),
            federation_url: Some("https://matrix.example.org:8448".into()),
            issuer: Some("https://auth.example.org/".into()),
            issuer_confirmed: true,
            requests: vec![Request {
                url: "https://example.org/.well-known/matrix/client".into(),
                outcome: "200".into(),
            }],
        }
    }

    #[test]
    fn federation_candidates_in_order() {
        let input = Url::parse("https://example.org/").unwrap();
        let base = Url::parse("https://matrix.example.org/").unwrap();
        let urls = |d| federation_candidates(&input, &base, d).iter().map(Url::to_string).collect::<Vec<_>>();
        assert_eq!(
            urls(Some("fed.example.org:443")),
            ["https://fed.example.org/", "https://matrix.example.org/", "https://example.org:8448/"],
            "a delegated server with a port (443 is https's default, so the URL drops it)"
        );
        assert_eq!(urls(Some("fed.example.org"))[0], "https://fed.example.org:8448/", "no port: 8448");
        assert_eq!(urls(None), ["https://matrix.example.org/", "https://example.org:8448/"], "no delegation");
        assert_eq!(urls(Some("evil/path?x")).len(), 2, "a delegated name that is not a host is ignored");
    }

    #[test]
    fn the_config_names_every_request_and_quotes_what_servers_said() {
        let mut f = found();
        f.synapse_version = Some("1.0\n  admin_token: leaked".into());
        f.issuer = Some("https://a.example/\"\n  evil: 1".into());
        f.requests.push(Request { url: "https://x/\nservices: {}".into(), outcome: "404".into() });
        let yaml = render(&f, "2026-12-05");
        assert!(yaml.contains("#   GET https://example.org/.well-known/matrix/client -> 200"), "{yaml}");
        for l in yaml.lines() {
            assert!(
                !l.starts_with("  admin_token") && !l.starts_with("  evil") && !l.starts_with("services: {}"),
                "injected: {l}"
            );
        }
        let doc: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(doc["services"]["mas"]["url"], "https://a.example/\"\n  evil: 1", "quoted, not interpreted");
    }

    #[test]
    fn tokens_are_placeholders_and_missing_parts_are_commented() {
        let mut f = found();
        f.issuer = None;
        f.federation_url = None;
        let yaml = render(&f, "2026-12-05");
        assert!(yaml.contains("# admin_token: \"${SYNAPSE_ADMIN_TOKEN}\""), "{yaml}");
        assert!(yaml.contains("# federation_url:"), "{yaml}");
        assert!(yaml.contains("# No MAS"), "{yaml}");
        assert!(!yaml.lines().any(|l| l.trim_start().starts_with("admin_token")), "no live token line");
        let mut unconfirmed = found();
        unconfirmed.issuer_confirmed = false;
        let yaml = render(&unconfirmed, "2026-12-05");
        assert!(
            yaml.contains("  #   url: \"https://auth.example.org/\""),
            "an unconfirmed issuer stays commented:\n{yaml}"
        );
        assert!(!yaml.contains("\n  mas:"), "{yaml}");
        let with = render(&found(), "2026-12-05");
        assert!(with.contains("    issuer: \"https://auth.example.org/\""), "{with}");
        assert!(with.contains("    federation_url: \"https://matrix.example.org:8448\""), "{with}");
    }
}
