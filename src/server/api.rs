//! The JSON API (`docs/api.md`): status, a check's history, open alerts, and reload.

use super::ReloadRequest;
use super::query::{self, Plan};
use super::{AppState, authorize, error, view};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// `GET /api/v1/status[?offset=&limit=]`: a large config lists one page of checks
/// (`listing`); a bad `offset` or `limit` is a 400 naming it.
pub(crate) async fn status(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let selection = match super::listing::parse(q.as_deref()) {
        Ok(s) => s,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match view::status(&state, selection).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/alerts`.
pub(crate) async fn alerts(State(state): State<AppState>) -> Response {
    match view::open_alerts(&state).await {
        Ok(a) => Json(a).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/checks/{name}/history`: names contain `/` (`synapse/health`), so the route
/// takes the rest of the path. The query string is parsed by `query::parse` into a bounded
/// plan; anything else is a `400` with the reason.
pub(crate) async fn history(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let Some(name) = path.strip_suffix("/history") else {
        return error(StatusCode::NOT_FOUND, "expected /api/v1/checks/{name}/history");
    };
    if !state.live.has(name) {
        return error(StatusCode::NOT_FOUND, format!("no check `{name}`"));
    }
    let plan = match query::parse(q.as_deref(), state.clock.now().as_millisecond()) {
        Ok(plan) => plan,
        Err(why) => return error(StatusCode::BAD_REQUEST, why.to_string()),
    };
    match plan {
        Plan::Raw { range, limit } => {
            match state.history.raw_page(name, range.start_ms(), range.end_ms(), limit).await {
                Ok((results, more)) => {
                    // Where the next page starts: just after the last result returned.
                    let next_from = more.then(|| results.last().map(|r| r.at_ms.saturating_add(1))).flatten();
                    Json(serde_json::json!({
                        "check": name, "resolution": "raw", "results": results, "next_from": next_from
                    }))
                    .into_response()
                }
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        Plan::Rollup { resolution, range } => {
            match state.history.buckets(name, resolution, range.start_ms(), range.end_ms()).await {
                Ok(buckets) => {
                    let uptime = crate::history::uptime(&buckets);
                    Json(serde_json::json!({
                        "check": name, "resolution": resolution.name(), "uptime": uptime, "buckets": buckets
                    }))
                    .into_response()
                }
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
    }
}

/// `POST /api/v1/reload` (token): reloads the config file; 422 with the reasons when the new
/// one is invalid (the running one stays).
pub(crate) async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
