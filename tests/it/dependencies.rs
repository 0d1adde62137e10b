//! Dependency-aware paging against a real PostgreSQL: MAS, Vikunja and authentik (local fakes
//! that answer healthy only while they can reach that PostgreSQL, as the real ones do) all
//! fail when it stops. The webhook gets exactly one page, naming them, and every resolve once
//! PostgreSQL is back.

use crate::cli::{config, run};
use crate::support::{PgCluster, fakes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether PostgreSQL on `port` accepts a connection within half a second.
async fn db_up(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    matches!(tokio::time::timeout(Duration::from_millis(500), connect).await, Ok(Ok(_)))
}

/// 200 with `body` while the database answers, 503 otherwise.
async fn gated(port: u16, body: &'static str) -> axum::response::Response {
    if db_up(port).await {
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
    }
}

fn mas(port: u16) -> String {
    fakes::serve(
        axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|headers: HeaderMap| async move {
                    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
                    let base = format!("http://{host}");
                    axum::Json(serde_json::json!({
                        "issuer": format!("{base}/"),
                        "authorization_endpoint": format!("{base}/authorize"),
                        "token_endpoint": format!("{base}/oauth2/token"),
                        "jwks_uri": format!("{base}/oauth2/keys.json"),
                        "userinfo_endpoint": format!("{base}/oauth2/userinfo"),
                    }))
                }),
            )
            .route(
                "/oauth2/keys.json",
                get(|| async {
                    axum::Json(serde_json::json!({"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}))
                }),
            )
            .route("/health", get(move || gated(port, "ok"))),
    )
}

fn vikunja(port: u16) -> String {
    fakes::serve(axum::Router::new().route("/health", get(move || gated(port, "OK"))).route(
        "/api/v1/info",
        get(|| async {
            axum::Json(serde_json::json!({"version": "v2.5.0", "frontend_url": "https://tasks.example.com/"}))
        }),
    ))
}

fn authentik(port: u16) -> String {
    fakes::serve(
        axum::Router::new()
            .route("/-/health/live/", get(|| async { StatusCode::OK }))
            .route("/-/health/ready/", get(move || gated(port, ""))),
    )
}

/// `mxwarden run` as a child process, killed on drop.
struct Daemon(Child, std::path::PathBuf);

impl Daemon {
    fn start(config: &std::path::Path) -> Self {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_mxwarden"))
            .args(["--config", config.to_str().unwrap(), "-v", "run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start mxwarden run");
        Self(child, log)
    }

    fn wait_for<T>(&self, what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.1).unwrap_or_default();
                panic!("timed out waiting for {what}; mxwarden log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every webhook payload received.
fn payloads(sink: &fakes::WebhookSink) -> Vec<serde_json::Value> {
    sink.received.lock().unwrap().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect()
}

fn with_status(sink: &fakes::WebhookSink, status: &str) -> Vec<serde_json::Value> {
    payloads(sink).into_iter().filter(|p| p["status"] == status).collect()
}

#[test]
fn postgres_down_pages_once_naming_its_dependents_and_every_resolve_arrives() {
    let mut pg = PgCluster::start();
    let port = pg.port;
    let sink = fakes::webhook_sink();
    let file = config(&format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
services:
  postgres: {{ kind: postgres, dsn: "{dsn}", down_after: 3s }}
  mas: {{ kind: mas, url: "{mas}", health_url: "{mas}/health", down_after: 3s }}
  vikunja: {{ kind: vikunja, url: "{vikunja}", down_after: 3s }}
  authentik: {{ kind: authentik, url: "{authentik}", down_after: 3s }}
alerting:
  retry: {{ initial: 300ms }}
  receivers:
    hook: {{ webhook: {{ url: "{hook}" }} }}
  tiers:
    critical: {{ receivers: [hook] }}
"#,
        dsn = pg.dsn("postgres"),
        mas = mas(port),
        vikunja = vikunja(port),
        authentik = authentik(port),
        hook = sink.url,
    ));
    let path = file.path.to_str().unwrap().to_string();
    let daemon = Daemon::start(&file.path);
    std::thread::sleep(Duration::from_secs(5));
    assert!(payloads(&sink).is_empty(), "healthy: nothing is sent: {:?}", payloads(&sink));

    pg.service.stop();
    let page = daemon.wait_for("the page", Duration::from_secs(30), || with_status(&sink, "firing").first().cloned());
    assert_eq!(page["alerts"][0]["labels"]["alertname"], "PostgresDown", "{page}");
    assert_eq!(page["alerts"][0]["annotations"]["summary"], "PostgreSQL down — affects authentik, mas, vikunja");
    assert_eq!(page["alerts"][0]["annotations"]["affects"], "authentik, mas, vikunja");

    // Every dependent fails and fires too, and is held: still one page.
    let dependents = ["AuthentikDown", "MasDown", "VikunjaDown"];
    daemon.wait_for("the dependents' alerts to fire", Duration::from_secs(30), || {
        let alerts = run(&["--config", &path, "alerts", "--json"], &[]).json();
        let firing: Vec<String> = alerts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| a["alert"].as_str().unwrap().to_string())
            .collect();
        dependents.iter().all(|d| firing.iter().any(|f| f == d)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let firing = with_status(&sink, "firing");
    assert_eq!(firing.len(), 1, "exactly one page: {firing:?}");
    let outbox = run(&["--config", &path, "outbox", "--json"], &[]).json();
    let titles: Vec<&str> = outbox.as_array().unwrap().iter().map(|r| r["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["[FIRING] PostgreSQL down — affects authentik, mas, vikunja"]);

    pg.restart();
    let want = ["AuthentikDown", "MasDown", "PostgresDown", "VikunjaDown"];
    let resolved = daemon.wait_for("every resolve", Duration::from_secs(40), || {
        let mut names: Vec<String> = with_status(&sink, "resolved")
            .iter()
            .map(|p| p["alerts"][0]["labels"]["alertname"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        (names.len() >= want.len()).then_some(names)
    });
    assert_eq!(resolved, want, "resolves always flow, also for the held dependents");
    // Past the settle time (one round of every check plus 5 s): nothing held is released.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(with_status(&sink, "firing").len(), 1, "{:?}", payloads(&sink));
    assert_eq!(payloads(&sink).len(), 5, "one page and four resolves: {:?}", payloads(&sink));
}
