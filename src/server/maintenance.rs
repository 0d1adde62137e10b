//! `/api/v1/maintenance` over HTTP: `GET` lists open and upcoming windows (public, read-only);
//! `POST` opens an ad hoc window and `DELETE /api/v1/maintenance/{id}` ends one, both only
//! with `Authorization: Bearer <admin_token>` (401 without it, 403 with a wrong one), checked
//! before a body is read. Bodies are capped at 16 KiB; every error is JSON
//! (`{"error": "…"}`). The web server merges this router into its own.

use crate::clock::Clock;
use crate::maintenance::{Calendar, listing};
use crate::store::Store;
use crate::store::maintenance as mstore;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Largest request body accepted.
pub(crate) const BODY_LIMIT: usize = 16 * 1024;

#[derive(Clone)]
struct Api {
    store: Store,
    admin_token: Option<Arc<SecretString>>,
    calendar: Arc<Calendar>,
    services: Arc<BTreeSet<String>>,
    clock: Arc<dyn Clock>,
}

/// The maintenance routes, state applied. `services`: the names a window may cover.
pub fn router(
    store: Store,
    admin_token: Option<SecretString>,
    calendar: Arc<Calendar>,
    services: BTreeSet<String>,
    clock: Arc<dyn Clock>,
) -> Router {
    let api = Api { store, admin_token: admin_token.map(Arc::new), calendar, services: Arc::new(services), clock };
    Router::new()
        .route("/api/v1/maintenance", get(list).post(start))
        .route("/api/v1/maintenance/{id}", delete(end))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn authorize(api: &Api, headers: &HeaderMap) -> Option<Response> {
    crate::server::authorize(headers, api.admin_token.as_deref()).err().map(|r| *r)
}

async fn list(State(api): State<Api>) -> Response {
    let now = api.clock.now().as_millisecond();
    match mstore::current(&api.store, now).await.map(|ad_hoc| listing(&api.calendar, ad_hoc, now)) {
        Ok(l) => axum::Json(l).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Maintenance listing failed.");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the store could not be read")
        }
    }
}

/// `POST` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    services: Vec<String>,
    #[serde(rename = "for")]
    for_: String,
    reason: String,
}

/// The token is checked before the body is read: a client without it cannot keep a
/// connection busy by sending its body slowly.
async fn start(State(api): State<Api>, request: Request) -> Response {
    if let Some(denied) = authorize(&api, request.headers()) {
        return denied;
    }
    let body = match Bytes::from_request(request, &api).await {
        Ok(b) => b,
        Err(e) => return error(e.status(), format!("cannot read the body: {}", e.body_text())),
    };
    let request: StartBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body: {e}; expected {{\"services\": [\"synapse\"], \"for\": \"30m\", \"reason\": \"…\"}}"),
            );
        }
    };
    let now = api.clock.now().as_millisecond();
    let new = match crate::maintenance::check_request(
        &request.services,
        &request.for_,
        &request.reason,
        &api.services,
        now,
    ) {
        Ok(n) => n,
        Err(why) => return error(StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    match mstore::start(&api.store, &new.services, new.starts_at, new.ends_at, &new.reason, now).await {
        Ok(w) => {
            tracing::info!(window = w.id, services = ?w.services, "Maintenance window opened over the API.");
            (StatusCode::CREATED, axum::Json(w)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "Maintenance window could not be stored.");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the store could not be written")
        }
    }
}

async fn end(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(denied) = authorize(&api, &headers) {
        return denied;
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, format!("`{id}` is not a window id"));
    };
    let now = api.clock.now().as_millisecond();
    match mstore::end(&api.store, id, now).await {
        Ok(mstore::Ended::Now(w)) => {
            tracing::info!(window = w.id, "Maintenance window ended over the API.");
            axum::Json(w).into_response()
        }
        Ok(mstore::Ended::AlreadyOver(w)) => error(StatusCode::CONFLICT, format!("window {} is already over", w.id)),
        Ok(mstore::Ended::Unknown) => error(StatusCode::NOT_FOUND, format!("no window {id}")),
        Err(e) => {
            tracing::error!(error = %e, "Maintenance window could not be ended.");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the store could not be written")
        }
    }
}
