//! In-process servers for what cannot run here, following the documented shapes in
//! `../shared/reference/stack-reference.md` (Vikunja §3, authentik §4, MAS /health §2.1), and
//! hostile servers that misbehave on purpose (huge bodies, silence, trickling bodies).
//! They run on one background tokio runtime shared by the whole test binary.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

/// The runtime that hosts every fake.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the fakes' runtime starts")
    })
}

/// Serves `router` on a free loopback port; returns `http://127.0.0.1:PORT`.
pub fn serve(router: Router) -> String {
    let listener = runtime().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    runtime().spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// Vikunja as documented (v2.5.0): `/health` → 200 `OK` text; `/api/v1/info` → BuildInfo JSON.
pub fn vikunja() -> String {
    let info = serde_json::json!({
        "version": "v2.5.0",
        "frontend_url": "https://tasks.example.com/",
        "motd": "",
        "link_sharing_enabled": true,
        "max_file_size": "20MB",
        "max_items_per_page": 50,
        "available_migrators": ["vikunja-file", "ticktick", "wekan", "csv", "planka"],
        "task_attachments_enabled": true,
        "enabled_background_providers": ["upload"],
        "totp_enabled": true,
        "legal": {"imprint_url": "", "privacy_policy_url": ""},
        "caldav_enabled": true,
        "auth": {"local": {"enabled": true, "registration_enabled": true}, "ldap": {"enabled": false},
                 "openid_connect": {"enabled": false, "providers": []}},
        "email_reminders_enabled": true,
        "user_deletion_enabled": true,
        "task_comments_enabled": true,
        "demo_mode_enabled": false,
        "webhooks_enabled": true,
        "public_teams_enabled": false,
        "allow_icon_changes": true,
        "enabled_pro_features": [],
        "concurrent_writes": true
    });
    serve(
        Router::new()
            .route("/health", get(|| async { ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], "OK") }))
            .route("/api/v1/info", get(move || async move { axum::Json(info) })),
    )
}

/// Vikunja as documented, whose `/health` answers 503 while `healthy` is false.
pub fn switchable_vikunja(healthy: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    serve(
        Router::new()
            .route(
                "/health",
                get(move || {
                    let up = healthy.load(std::sync::atomic::Ordering::SeqCst);
                    async move { if up { (StatusCode::OK, "OK") } else { (StatusCode::SERVICE_UNAVAILABLE, "down") } }
                }),
            )
            .route(
                "/api/v1/info",
                get(|| async {
                    axum::Json(serde_json::json!({"version": "v2.5.0", "frontend_url": "https://tasks.example.com/"}))
                }),
            ),
    )
}

/// authentik as documented: liveness 200 (older releases 204), readiness 200, and the version
/// API that needs `Authorization: Bearer <token>` (403 with DRF's body otherwise).
pub fn authentik(token: &str, live_status: u16) -> String {
    let expected = format!("Bearer {token}");
    let live = StatusCode::from_u16(live_status).expect("valid status");
    serve(
        Router::new()
            .route("/-/health/live/", get(move || async move { live }))
            .route("/-/health/ready/", get(|| async { StatusCode::OK }))
            .route(
                "/api/v3/admin/version/",
                get(move |headers: HeaderMap| async move {
                    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                    if given == Some(expected.as_str()) {
                        axum::Json(serde_json::json!({
                            "version_current": "2026.11.0",
                            "version_latest": "2026.11.0",
                            "version_latest_valid": true,
                            "build_hash": "0123abc",
                            "outdated": false,
                            "outpost_outdated": false
                        }))
                        .into_response()
                    } else {
                        (
                            StatusCode::FORBIDDEN,
                            axum::Json(serde_json::json!({"detail": "Authentication credentials were not provided."})),
                        )
                            .into_response()
                    }
                }),
            ),
    )
}

/// MAS's internal `/health`: 200 `ok` while its database answers, 500 when `healthy` is false.
pub fn mas_health(healthy: bool) -> String {
    serve(Router::new().route(
        "/health",
        get(move || async move {
            if healthy {
                (StatusCode::OK, "ok").into_response()
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
            }
        }),
    ))
}

/// Servers that misbehave.
pub struct Hostile {
    /// Base URL of an HTTP server with the routes below.
    pub base: String,
    /// `host:port` of a listener that accepts connections and never says a word.
    pub silent: SocketAddr,
}

/// Starts the hostile servers:
/// `/big` 5 MB with Content-Length, `/big-chunked` 5 MB with no length, `/slow-body` headers
/// at once then one byte a second, `/status/503`, `/json-broken`, `/redirect` → `/elsewhere`.
pub fn hostile() -> Hostile {
    let five_mb = || "x".repeat(5 * 1000 * 1000);
    let base = serve(
        Router::new()
            .route("/big", get(move || async move { five_mb() }))
            .route(
                "/big-chunked",
                get(|| async {
                    let chunks =
                        (0..80).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'y'; 64 * 1024])));
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .route(
                "/slow-body",
                get(|| async {
                    let ticks = futures::stream::unfold(0u32, |n| async move {
                        if n > 0 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        (n < 60).then(|| (Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b".")), n + 1))
                    });
                    axum::body::Body::from_stream(ticks)
                }),
            )
            .route("/status/503", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "upstream down") }))
            .route(
                "/json-broken",
                get(|| async { ([(header::CONTENT_TYPE, "application/json")], "{\"status\": \"OK\"") }),
            )
            .route("/json-status-down", get(|| async { axum::Json(serde_json::json!({"status": "DOWN"})) }))
            .route("/redirect", get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]) }))
            .route("/elsewhere", get(|| async { "arrived" })),
    );
    let silent = runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket); // accepted, never read, never answered
            }
        });
        addr
    });
    Hostile { base, silent }
}

/// A TCP proxy in front of `upstream` whose answers can be held back: while `delay_ms` is
/// non-zero, every chunk from upstream waits that long before it reaches the client. Used to
/// freeze a delivery after the server has acted on it, so a test can kill the sender then.
pub struct DelayingProxy {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Current delay for upstream → client data, ms.
    pub delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Starts a [`DelayingProxy`] to `upstream` (`host:port`).
pub fn delaying_proxy(upstream: String) -> DelayingProxy {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let delay = delay_ms.clone();
    let listener = runtime().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime().spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, delay) = (upstream.clone(), delay.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let wait = delay.load(Ordering::SeqCst);
                    if wait > 0 {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = cw.shutdown().await;
                up.abort();
            });
        }
    });
    DelayingProxy { base: format!("http://{addr}"), delay_ms }
}

/// A webhook receiver recording every POST: (headers, body).
pub struct WebhookSink {
    /// The URL to post to.
    pub url: String,
    /// What arrived.
    pub received: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>,
}

/// Starts a [`WebhookSink`].
pub fn webhook_sink() -> WebhookSink {
    let received: std::sync::Arc<std::sync::Mutex<Vec<(HeaderMap, Vec<u8>)>>> = Default::default();
    let store = received.clone();
    let base = serve(Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push((headers, body.to_vec()));
                StatusCode::OK
            }
        }),
    ));
    WebhookSink { url: format!("{base}/hook"), received }
}

/// A fault to inject into one request.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer with this status (and a Matrix-style error body) instead of forwarding.
    Status(u16),
    /// Answer 429 with `Retry-After` and `retry_after_ms`.
    RateLimited(u64),
    /// Forward, let the server act, then drop the connection without an answer.
    ResetAfterForward,
}

/// An HTTP proxy that injects `faults`, one per request whose path contains `target`, then
/// forwards everything else to `upstream` unchanged.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Faults still to inject.
    pub faults: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Fault>>>,
    /// Requests matching `target` seen so far.
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Starts a [`FaultProxy`].
pub fn fault_proxy(upstream: String, target: &'static str, faults: Vec<Fault>) -> FaultProxy {
    use axum::extract::Request;
    use std::sync::atomic::Ordering;
    let queue =
        std::sync::Arc::new(std::sync::Mutex::new(faults.into_iter().collect::<std::collections::VecDeque<_>>()));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (q, h) = (queue.clone(), hits.clone());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = serve(Router::new().fallback(move |request: Request| {
        let (q, h, client, upstream) = (q.clone(), h.clone(), client.clone(), upstream.clone());
        async move {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            let fault = if path.contains(target) {
                h.fetch_add(1, Ordering::SeqCst);
                q.lock().unwrap().pop_front()
            } else {
                None
            };
            match fault {
                Some(Fault::Status(code)) => {
                    let status = StatusCode::from_u16(code).unwrap();
                    return (status, axum::Json(serde_json::json!({"errcode": "M_UNKNOWN", "error": "injected fault"}))).into_response();
                }
                Some(Fault::RateLimited(ms)) => {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, (ms / 1000).max(1).to_string())],
                        axum::Json(serde_json::json!({"errcode": "M_LIMIT_EXCEEDED", "error": "injected", "retry_after_ms": ms})),
                    )
                        .into_response();
                }
                _ => {}
            }
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let mut forward = client.request(parts.method.clone(), format!("{upstream}{path}")).body(bytes.to_vec());
            for (name, value) in &parts.headers {
                if name != header::HOST && name != header::CONTENT_LENGTH {
                    forward = forward.header(name, value);
                }
            }
            let Ok(response) = forward.send().await else {
                return StatusCode::BAD_GATEWAY.into_response();
            };
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            if matches!(fault, Some(Fault::ResetAfterForward)) {
                // The server acted; the client never hears of it (a 502 from a broken link).
                return StatusCode::BAD_GATEWAY.into_response();
            }
            (StatusCode::from_u16(status).unwrap(), [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    }));
    FaultProxy { base, faults: queue, hits }
}
