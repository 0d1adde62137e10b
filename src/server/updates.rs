//! `/api/v1/updates` over HTTP: `POST` starts an update of a service with `deploy:` (only with
//! `Authorization: Bearer <admin_token>`, checked before the body is read; the body capped at
//! 16 KiB) and answers `202` with its id at once — the daemon runs the steps in the
//! background, writing each to the store as the CLI does; `409` while the service has an
//! unfinished update. `GET /api/v1/updates` lists the newest updates with their steps and
//! `GET /api/v1/updates/{id}` shows one (public, read-only, as every read of this server).

use crate::clock::Clock;
use crate::store::Store;
use crate::store::updates;
use crate::update::run::{Quiet, UpdateError, Updater};
use crate::update::{Request as UpdateRequest, Target};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest request body accepted.
const BODY_LIMIT: usize = 16 * 1024;

#[derive(Clone)]
struct Api {
    store: Store,
    admin_token: Option<Arc<SecretString>>,
    targets: Arc<BTreeMap<String, Target>>,
    clock: Arc<dyn Clock>,
}

/// The update routes, state applied. `targets`: the services with `deploy:`.
pub(crate) fn router(
    store: Store,
    admin_token: Option<SecretString>,
    targets: Arc<BTreeMap<String, Target>>,
    clock: Arc<dyn Clock>,
) -> Router {
    let api = Api { store, admin_token: admin_token.map(Arc::new), targets, clock };
    Router::new()
        .route("/api/v1/updates", get(list).post(start))
        .route("/api/v1/updates/{id}", get(one))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    crate::server::error(status, message)
}

async fn list(State(api): State<Api>) -> Response {
    match updates::list(&api.store, false, 50).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Update listing failed.");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the store could not be read")
        }
    }
}

async fn one(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else { return error(StatusCode::BAD_REQUEST, "an update id is a number") };
    match updates::get(&api.store, id).await {
        Ok(Some(row)) => axum::Json(row).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no update #{id}")),
        Err(e) => {
            tracing::error!(error = %e, "Update read failed.");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the store could not be read")
        }
    }
}

/// `POST` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    service: String,
    to: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    expect_version: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    no_backup: Option<String>,
}

async fn start(State(api): State<Api>, request: Request) -> Response {
    if let Err(denied) = crate::server::authorize(request.headers(), api.admin_token.as_deref()) {
        return *denied;
    }
    let body = match Bytes::from_request(request, &api).await {
        Ok(b) => b,
        Err(e) => return error(e.status(), format!("cannot read the body: {}", e.body_text())),
    };
    let body: StartBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "body: {e}; expected {{\"service\": \"synapse\", \"to\": \"ghcr.io/element-hq/synapse:v1.140.0\", \"reason\": \"…\"}}"
                ),
            );
        }
    };
    let Some(target) = api.targets.get(&body.service) else {
        let known: Vec<&str> = api.targets.keys().map(String::as_str).collect();
        let shown = crate::text::escape_controls(&body.service).chars().take(100).collect::<String>();
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("no service `{shown}` with `deploy:`; services that can be updated: {}", known.join(", ")),
        );
    };
    let request = UpdateRequest {
        service: body.service.clone(),
        to: body.to.trim().to_string(),
        expect_version: body.expect_version,
        reason: body.reason.map(|r| r.trim().to_string()).unwrap_or_else(|| "started through the API".into()),
        force: body.force,
        no_backup: body.no_backup,
    };
    if let Err(why) = request.check() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, why);
    }
    let http = match crate::dispatch::http_client() {
        Ok(h) => h,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let updater = Updater {
        target: Arc::new(target.clone()),
        store: api.store.clone(),
        clock: api.clock.clone(),
        http,
        reporter: Arc::new(Quiet),
        identity: std::env::var_os("MXWARDEN_BACKUP_IDENTITY").map(Into::into),
    };
    let id = match updater.begin(&request).await {
        Ok(id) => id,
        Err(e @ UpdateError::Busy { .. }) => return error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "Update not recorded.");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "the store refused the update's record");
        }
    };
    tracing::info!(update = id, service = %request.service, to = %request.to, "Update started through the API.");
    tokio::spawn(async move {
        match updater.drive(id).await {
            Ok(ending) => tracing::info!(update = id, ending = ending.name(), "Update ended."),
            Err(e) => {
                tracing::error!(update = id, error = %e, "Update stopped; `mxwarden update --resume` continues it.")
            }
        }
    });
    (StatusCode::ACCEPTED, axum::Json(json!({ "id": id, "url": format!("/api/v1/updates/{id}") }))).into_response()
}
