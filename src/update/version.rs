//! The version a service reports, and whether it is the one asked for: Synapse's
//! `server_version` (`/_synapse/admin/v1/server_version`, else the federation
//! `/_matrix/federation/v1/version`), Vikunja's `/api/v1/info`, authentik's
//! `/api/v3/admin/version/`; MAS reports none. Parsing and comparing are pure; `fetch` does
//! the HTTP with a deadline and a body cap.

use super::ServiceAccess;
use crate::model::ServiceKind;
use secrecy::ExposeSecret;
use std::time::Duration;

/// Largest answer read from a version endpoint (the notifiers' cap: 64 KiB).
const BODY_LIMIT: usize = crate::notify::RESPONSE_BODY_LIMIT;

/// The version in an image reference's tag (`…/synapse:v1.140.0` → `1.140.0`), or `None` for
/// a digest, a commit, `latest` or no tag.
pub fn from_image(image: &str) -> Option<String> {
    let last = image.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    let tag = tag.split('@').next()?.trim();
    let bare = tag.strip_prefix('v').unwrap_or(tag);
    (bare.chars().next()?.is_ascii_digit() && bare.chars().all(|c| c.is_ascii_alphanumeric() || ".-+_".contains(c)))
        .then(|| bare.to_string())
}

/// Whether `reported` (as the service says it, e.g. `1.140.0 (b=matrix-org-hotfixes)` or
/// `v0.24.1`) is version `wanted`: the same dotted numbers and suffix, ignoring a leading `v`
/// and anything after a space.
pub fn matches(reported: &str, wanted: &str) -> bool {
    let norm = |s: &str| {
        let first = s.split_whitespace().next().unwrap_or("");
        first.strip_prefix('v').unwrap_or(first).to_ascii_lowercase()
    };
    let (r, w) = (norm(reported), norm(wanted));
    !w.is_empty() && r == w
}

/// Reads the reported version out of a version endpoint's JSON.
pub fn parse(kind: ServiceKind, path: &str, body: &serde_json::Value) -> Option<String> {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    match kind {
        ServiceKind::Synapse if path.contains("federation") => s(&body["server"]["version"]),
        ServiceKind::Synapse => s(&body["server_version"]),
        ServiceKind::Vikunja => s(&body["version"]),
        ServiceKind::Authentik => s(&body["version_current"]),
        ServiceKind::Mas | ServiceKind::Postgres => None,
    }
}

/// The endpoints to ask, in order, for a kind.
fn endpoints(access: &ServiceAccess) -> Vec<(url::Url, bool)> {
    let join = |base: &Option<url::Url>, path: &str| base.as_ref().and_then(|b| b.join(path).ok());
    let with_token = access.token.is_some();
    let federation = if access.federation_url.is_some() { &access.federation_url } else { &access.url };
    match access.kind {
        ServiceKind::Synapse => [
            join(&access.url, "/_synapse/admin/v1/server_version").map(|u| (u, false)),
            join(federation, "/_matrix/federation/v1/version").map(|u| (u, false)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        ServiceKind::Vikunja => join(&access.url, "/api/v1/info").map(|u| (u, false)).into_iter().collect(),
        ServiceKind::Authentik => {
            join(&access.url, "/api/v3/admin/version/").map(|u| (u, with_token)).into_iter().collect()
        }
        ServiceKind::Mas | ServiceKind::Postgres => Vec::new(),
    }
}

/// GETs `url` with a deadline, reading at most [`BODY_LIMIT`] bytes: (status, JSON).
pub(crate) async fn get_json(
    http: &reqwest::Client,
    url: &url::Url,
    token: Option<&secrecy::SecretString>,
    deadline: Duration,
) -> Result<(u16, serde_json::Value), String> {
    let work = async {
        let mut request = http.get(url.clone());
        if let Some(t) = token {
            request = request.bearer_auth(t.expose_secret());
        }
        let response = request.send().await.map_err(|e| crate::probe::explain_transport(&e, url))?;
        let status = response.status().as_u16();
        let (body, cut) = crate::notify::read_capped(response).await.map_err(|e| format!("{url}: {e}"))?;
        if cut {
            return Err(format!("{url}: the answer is larger than {} KiB", BODY_LIMIT / 1024));
        }
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Ok((status, json))
    };
    tokio::time::timeout(deadline, work).await.unwrap_or_else(|_| Err(format!("{url}: no answer within {deadline:?}")))
}

/// The version the service reports now: `Ok(None)` when its kind reports none (MAS).
pub(crate) async fn fetch(http: &reqwest::Client, access: &ServiceAccess) -> Result<Option<String>, String> {
    let endpoints = endpoints(access);
    if endpoints.is_empty() {
        return Ok(None);
    }
    let mut problems = Vec::new();
    for (url, auth) in endpoints {
        let token = if auth { access.token.as_ref() } else { None };
        match get_json(http, &url, token, Duration::from_secs(10)).await {
            Ok((200, body)) => match parse(access.kind, url.path(), &body) {
                Some(v) => return Ok(Some(crate::text::escape_controls(&v).into_owned())),
                None => problems.push(format!("{}: 200 without a version", url.path())),
            },
            Ok((status, _)) => problems.push(format!("{}: HTTP {status}", url.path())),
            Err(e) => problems.push(e),
        }
    }
    Err(format!("no version reported ({})", problems.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_give_versions() {
        #[rustfmt::skip]
        let table = [
            ("ghcr.io/element-hq/synapse:v1.140.0", Some("1.140.0"), "the runbook's image"),
            ("matrixdotorg/synapse:1.99.0rc1", Some("1.99.0rc1"), "no v, a release candidate"),
            ("localhost:5000/synapse:v1.2.3", Some("1.2.3"), "a registry port is not a tag"),
            ("localhost:5000/synapse", None, "no tag"),
            ("ghcr.io/element-hq/synapse:latest", None, "latest is no version"),
            ("ghcr.io/x/y:v1.2.3@sha256:abc", Some("1.2.3"), "tag with digest"),
            ("3f2a9c1", None, "a commit"),
            ("synapse:v1.2.3;rm", None, "odd characters are not a version"),
        ];
        for (image, want, why) in table {
            assert_eq!(from_image(image).as_deref(), want, "{why}");
        }
    }

    #[test]
    fn reported_versions_match_loosely_but_not_wrongly() {
        assert!(matches("1.140.0", "1.140.0"));
        assert!(matches("1.140.0 (b=develop, abc)", "v1.140.0"), "Synapse's build suffix after a space");
        assert!(matches("v0.24.1", "0.24.1"), "Vikunja's leading v");
        assert!(!matches("1.140.01", "1.140.0"));
        assert!(!matches("1.139.0", "1.140.0"));
        assert!(!matches("", ""), "nothing matches nothing");
    }

    #[test]
    fn versions_are_read_from_each_kinds_answer() {
        assert_eq!(
            parse(
                ServiceKind::Synapse,
                "/_synapse/admin/v1/server_version",
                &serde_json::json!({"server_version": "1.2.3"})
            )
            .as_deref(),
            Some("1.2.3")
        );
        assert_eq!(
            parse(
                ServiceKind::Synapse,
                "/_matrix/federation/v1/version",
                &serde_json::json!({"server": {"name": "Synapse", "version": "1.2.3"}})
            )
            .as_deref(),
            Some("1.2.3")
        );
        assert_eq!(
            parse(ServiceKind::Vikunja, "/api/v1/info", &serde_json::json!({"version": "v0.24.1"})).as_deref(),
            Some("v0.24.1")
        );
        assert_eq!(
            parse(ServiceKind::Authentik, "/x", &serde_json::json!({"version_current": "2025.2.1"})).as_deref(),
            Some("2025.2.1")
        );
        assert_eq!(
            parse(ServiceKind::Vikunja, "/api/v1/info", &serde_json::json!({"version": 3})),
            None,
            "a number is no version string"
        );
        assert_eq!(parse(ServiceKind::Mas, "/", &serde_json::json!({})), None);
    }

    /// Serves `answer` (a whole HTTP response, sent slowly if `pause` is set) to every
    /// connection; returns its URL.
    async fn hostile(answer: Vec<u8>, pause: Option<std::time::Duration>) -> url::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    if let Some(p) = pause {
                        tokio::time::sleep(p).await;
                    }
                    let _ = socket.write_all(&answer).await;
                });
            }
        });
        url::Url::parse(&format!("http://{addr}/")).unwrap()
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn a_huge_or_slow_or_broken_version_answer_is_an_error_not_a_hang() {
        let huge = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}", 1 << 20, "x".repeat(1 << 20));
        let url = hostile(huge.into_bytes(), None).await;
        let e = get_json(&client(), &url, None, Duration::from_secs(5)).await.unwrap_err();
        assert!(e.contains("larger than 64 KiB"), "{e}");

        let url =
            hostile(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec(), Some(Duration::from_secs(30))).await;
        let started = std::time::Instant::now();
        let e = get_json(&client(), &url, None, Duration::from_millis(300)).await.unwrap_err();
        assert!(e.contains("no answer within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));

        let garbage = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nnot json!".to_vec();
        let access = ServiceAccess {
            kind: ServiceKind::Vikunja,
            url: Some(hostile(garbage, None).await),
            federation_url: None,
            token: None,
        };
        let e = fetch(&client(), &access).await.unwrap_err();
        assert!(e.contains("200 without a version"), "{e}");
    }
}
