//! The JSON API (`docs/api.md`): status, a check's history, open alerts, and reload.

use super::ReloadRequest;
use super::{AppState, authorize, error, view};
use crate::history::{DAY_MS, RAW_RETENTION_MS, Resolution};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::time::Duration;

/// `GET /api/v1/status`.
pub async fn status(State(state): State<AppState>) -> Response {
    match view::status(&state).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/alerts`.
pub async fn alerts(State(state): State<AppState>) -> Response {
    match view::open_alerts(&state).await {
        Ok(a) => Json(a).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The history query.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// `raw`, `minute`, `hour` or `day` (default `day`).
    resolution: Option<String>,
    /// From, ms since the epoch (default: 90 days, or 48 hours for raw, before `to`).
    from: Option<i64>,
    /// To, ms since the epoch (default now).
    to: Option<i64>,
}

/// Most buckets one request may ask for.
const MAX_BUCKETS: i64 = 20_160;

/// `GET /api/v1/checks/{name}/history`: names contain `/` (`synapse/health`), so the route
/// takes the rest of the path.
pub async fn history(
    State(state): State<AppState>,
    Path(path): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let Some(name) = path.strip_suffix("/history") else {
        return error(StatusCode::NOT_FOUND, "expected /api/v1/checks/{name}/history");
    };
    if !state.live.checks.iter().any(|c| c.name == name) {
        return error(StatusCode::NOT_FOUND, format!("no check `{name}`"));
    }
    let now = state.clock.now().as_millisecond();
    let to = q.to.unwrap_or(now + 1);
    let resolution = q.resolution.as_deref().unwrap_or("day");
    if resolution == "raw" {
        let from = q.from.unwrap_or(to - RAW_RETENTION_MS);
        return match state.history.raw(name, from, to).await {
            Ok(results) => {
                Json(serde_json::json!({ "check": name, "resolution": "raw", "results": results })).into_response()
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    let Some(res) = Resolution::parse(resolution) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("resolution must be raw, minute, hour or day, not {resolution:?}"),
        );
    };
    let from = q.from.unwrap_or(to - 90 * DAY_MS);
    if from >= to || (to - from) / res.width_ms() > MAX_BUCKETS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("from must be before to, and at most {MAX_BUCKETS} {resolution} buckets apart"),
        );
    }
    match state.history.buckets(name, res, from, to).await {
        Ok(buckets) => {
            let uptime = crate::history::uptime(&buckets);
            Json(serde_json::json!({ "check": name, "resolution": resolution, "uptime": uptime, "buckets": buckets }))
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/v1/reload` (token): reloads the config file; 422 with the reasons when the new
/// one is invalid (the running one stays).
pub async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&headers, state.admin_token.as_ref()) {
        return *refused;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if state.reload.send(ReloadRequest { reply: Some(tx) }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(Ok(()))) => Json(serde_json::json!({ "status": "reloaded" })).into_response(),
        Ok(Ok(Err(why))) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, format!("new config refused, the old one keeps running: {why}"))
        }
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon did not answer the reload request"),
    }
}
