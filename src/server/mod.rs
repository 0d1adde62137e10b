//! The daemon's HTTP server (`listen:`): the status page (`page`), the JSON API (`api`, its
//! query strings parsed by `query`), mxwarden's own `/metrics` (`metrics`) and `/healthz`.
//! Reading is public; every write needs `Authorization: Bearer <admin_token>`. Requests are
//! small and bounded; nothing a client sends can make a handler panic, and no number of
//! connections can take the descriptors the probes need (`listener`).

mod api;
mod listener;
mod listing;
pub mod maintenance;
mod metrics;
mod page;
pub(crate) mod query;
mod updates;
mod view;

pub(crate) use listener::{Limits, bind, connection_cap, open_file_soft_limit};

use crate::clock::Clock;
use crate::live::Live;
use crate::store::History;
use crate::store::Store;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// A request to reload the config (SIGHUP, or `POST /api/v1/reload` with a reply channel).
#[derive(Debug)]
pub struct ReloadRequest {
    /// Where the API waits for the outcome: `Err` holds why the new config was refused.
    pub reply: Option<tokio::sync::oneshot::Sender<std::result::Result<(), String>>>,
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The daemon's current view.
    pub live: Arc<Live>,
    /// Uptime history.
    pub history: Arc<History>,
    /// The store (alerts, outbox).
    pub store: Store,
    /// The write token.
    pub admin_token: Option<SecretString>,
    /// Where reload requests go.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Maintenance windows (config and ad hoc).
    pub calendar: Arc<crate::maintenance::Calendar>,
    /// The services a maintenance window may name.
    pub services: std::collections::BTreeSet<String>,
    /// Whether evaluation is healthy (`/healthz`).
    pub watchdog: Arc<crate::watchdog::Watchdog>,
    /// The services with `deploy:`, for `POST /api/v1/updates`.
    pub updates: Arc<std::collections::BTreeMap<String, crate::update::Target>>,
    /// The `remote_write:` queues' counters, for `/metrics`.
    pub remote_write: crate::remote_write::Status,
}

/// Largest request body accepted.
const BODY_LIMIT: usize = 64 * 1024;

/// The routes.
pub(crate) fn router(state: AppState) -> Router {
    let maintenance = crate::server::maintenance::router(
        state.store.clone(),
        state.admin_token.clone(),
        state.calendar.clone(),
        state.services.clone(),
        state.clock.clone(),
    );
    let updates = crate::server::updates::router(
        state.store.clone(),
        state.admin_token.clone(),
        state.updates.clone(),
        state.clock.clone(),
    );
    Router::new()
        .route("/", get(page::status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/checks/{*path}", get(api::history))
        .route("/api/v1/reload", post(api::reload))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
        .merge(maintenance)
        .merge(updates)
}

/// `GET /healthz`: `200 ok` while the daemon judges and its store takes writes; `503` with the
/// reason while the store refuses them or the evaluation loop has stalled — the same
/// conditions that stop the heartbeat.
async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.watchdog.verdict(state.store.health()) {
        Ok(()) => "ok\n".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

/// Serves until `stop` turns true; requests in flight finish. At most `max_connections`
/// connections at once (`listen_max_connections`), fewer when the open-file limit leaves less
/// room after [`FD_RESERVE`].
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    max_connections: usize,
    stop: watch::Receiver<bool>,
) {
    let soft = listener::open_file_soft_limit();
    let cap = connection_cap(max_connections, soft);
    if cap < max_connections {
        tracing::warn!(
            configured = max_connections,
            cap,
            open_file_limit = soft,
            "The open-file limit leaves room for fewer connections than listen_max_connections."
        );
    }
    tracing::debug!(cap, open_file_limit = soft, "Serving.");
    listener::run(listener, router(state), Limits::new(cap), stop).await;
}

/// A JSON error.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Checks the bearer token of a write: 401 without one, 403 with a wrong one (or when no
/// `admin_token` is configured, which makes the API read-only). Every write route of the
/// server (reload, maintenance) goes through here.
pub(crate) fn authorize(headers: &HeaderMap, token: Option<&SecretString>) -> Result<(), Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|g| !g.is_empty());
    let Some(given) = given else {
        let mut r = error(StatusCode::UNAUTHORIZED, "writes need `Authorization: Bearer <admin_token>`");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return Err(Box::new(r));
    };
    match token {
        Some(token) if same_secret(given.as_bytes(), token.expose_secret().as_bytes()) => Ok(()),
        Some(_) => Err(Box::new(error(StatusCode::FORBIDDEN, "wrong token"))),
        None => Err(Box::new(error(StatusCode::FORBIDDEN, "writes are disabled: no `admin_token` is configured"))),
    }
}

/// Compares two secrets in constant time, over their SHA-256 digests so the length does not
/// leak either.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    Sha256::digest(a).as_slice().ct_eq(Sha256::digest(b).as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"", b"x"));
    }

    #[test]
    fn writes_need_the_right_bearer_token() {
        let token = SecretString::from("t0ken");
        let mut h = HeaderMap::new();
        assert_eq!(authorize(&h, Some(&token)).unwrap_err().status(), StatusCode::UNAUTHORIZED);
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(authorize(&h, Some(&token)).unwrap_err().status(), StatusCode::FORBIDDEN);
        h.insert(header::AUTHORIZATION, "Bearer t0ken".parse().unwrap());
        assert!(authorize(&h, Some(&token)).is_ok());
        assert_eq!(authorize(&h, None).unwrap_err().status(), StatusCode::FORBIDDEN);
    }
}
