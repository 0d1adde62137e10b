//! The typed client of Render's REST API v1 over reqwest: bearer auth, cursor pagination (bare
//! arrays with the cursor beside each item), a request budget kept well under Render's
//! documented limit, the `Ratelimit-*` and `Retry-After` headers honoured, one hard deadline
//! per call (waits and retries included), bodies read up to a cap, and every failure in words
//! (401 a bad key, 404 naming the unknown id, 5xx transient). The API key only ever travels in
//! the `Authorization` header and is masked in anything Render echoes back. Built by the
//! render probe and the `mxwarden render` commands; the HTTP client (TLS roots) and the words
//! for transport errors come from the caller, so this module needs nothing of the probes.

use super::model::{
    ApiError, Deploy, DeployRequest, Event, Export, Instance, LogPage, Maintenance, MetricSeries, Owner, Postgres,
    Recovery, Service,
};
use crate::redact::REDACTED;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// Render's documented default API base.
pub const DEFAULT_API_URL: &str = "https://api.render.com/v1";

/// The lower of the two GET limits Render's documentation has shown (400/min and 100/min).
pub const DOCUMENTED_GET_LIMIT_PER_MINUTE: u32 = 100;

/// The share of the documented limit mxwarden allows itself: the dashboard, Render's CLI and
/// deploy scripts share the same key's limit.
pub const BUDGET_SHARE_PERCENT: u32 = 60;

/// Items per page (Render's maximum).
pub const PAGE_LIMIT: usize = 100;

/// Most pages one listing follows (10 000 items): a cursor that never ends is refused.
pub const MAX_PAGES: usize = 100;

/// Largest answer read, bytes.
pub const BODY_LIMIT: usize = 4 << 20;

/// Longest single wait a `Retry-After` or `Ratelimit-Reset` may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Most attempts of one request rate-limited with 429.
pub const MAX_ATTEMPTS: u32 = 6;

/// A failure of one call, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// 401.
    #[error("Render refused the API key (401 unauthorized): check `render.api_key` (Account settings → API keys)")]
    Unauthorized,
    /// 403.
    #[error("Render forbids {path} for this API key (403): {message}")]
    Forbidden {
        /// The path asked for.
        path: String,
        /// Render's words.
        message: String,
    },
    /// 404.
    #[error("Render knows no {what} `{id}` (404): check the id (`mxwarden render discover` lists them)")]
    NotFound {
        /// `service`, `deploy`, `postgres`, …
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// 429 after every retry the deadline allowed.
    #[error("Render kept rate-limiting {path} (429) for {waited:?}; mxwarden waited as its headers asked")]
    RateLimited {
        /// The path asked for.
        path: String,
        /// How long was waited.
        waited: Duration,
    },
    /// 5xx: Render's side, usually transient.
    #[error("Render answered {status} for {path} (transient, tried again next poll): {message}")]
    Server {
        /// The status.
        status: u16,
        /// The path asked for.
        path: String,
        /// Render's words.
        message: String,
    },
    /// Any other refusal (400, 409, …).
    #[error("Render refused {path} with {status}: {message}")]
    Refused {
        /// The status.
        status: u16,
        /// The path asked for.
        path: String,
        /// Render's words.
        message: String,
    },
    /// The call did not finish within its deadline.
    #[error("Render did not answer {path} within {deadline:?}")]
    Timeout {
        /// The path asked for.
        path: String,
        /// The deadline.
        deadline: Duration,
    },
    /// The request budget is spent for longer than the deadline allows.
    #[error("the Render request budget ({per_minute}/min) is spent; {path} would wait past its deadline")]
    Budget {
        /// The path asked for.
        path: String,
        /// The budget.
        per_minute: u32,
    },
    /// The body was over [`BODY_LIMIT`].
    #[error("Render's answer to {path} is over {limit} bytes; refused")]
    TooLarge {
        /// The path asked for.
        path: String,
        /// The cap.
        limit: usize,
    },
    /// Not the documented JSON.
    #[error("Render's answer to {path} is not the documented JSON: {why}")]
    Malformed {
        /// The path asked for.
        path: String,
        /// What was wrong.
        why: String,
    },
    /// A listing that does not end.
    #[error("Render's listing {path} has more than {pages} pages; stopped")]
    Endless {
        /// The path asked for.
        path: String,
        /// Pages read.
        pages: usize,
    },
    /// Connection, DNS, TLS, … in words.
    #[error("Render API unreachable: {0}")]
    Transport(String),
}

impl RenderError {
    /// Whether trying again later may help (5xx, 429, timeouts, transport).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Server { .. }
                | Self::RateLimited { .. }
                | Self::Timeout { .. }
                | Self::Transport(_)
                | Self::Budget { .. }
        )
    }
}

/// What a deploy trigger got back: a deploy (201), or "queued" with no body (202), followed by
/// the newest deploy (the one just queued) when Render lists it.
#[derive(Debug, Clone)]
pub enum Triggered {
    /// 201 with the deploy.
    Created(Deploy),
    /// 202 without a body; the newest deploy if one is listed.
    Queued(Option<Deploy>),
}

/// Filters of `GET /logs`.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// The workspace (required by Render).
    pub owner_id: String,
    /// `srv-…`, `dpg-…`.
    pub resources: Vec<String>,
    /// Only these instances.
    pub instances: Vec<String>,
    /// `error`, `warning`, `info`, …
    pub levels: Vec<String>,
    /// Text (Render allows wildcards and regex).
    pub text: Vec<String>,
    /// From (RFC 3339).
    pub start: Option<jiff::Timestamp>,
    /// Until (RFC 3339).
    pub end: Option<jiff::Timestamp>,
    /// `backward` (newest first, Render's default) or `forward`.
    pub forward: bool,
    /// At most this many (1–100).
    pub limit: usize,
}

/// Sliding one-minute window of request start times, and what the headers said.
#[derive(Debug, Default)]
struct Budget {
    sent: VecDeque<Instant>,
    /// No request before this (a 429's `Retry-After`, or `Ratelimit-Remaining: 0` until reset).
    hold_until: Option<Instant>,
}

/// The client. Cheap to share behind an `Arc`; the budget is shared by every call.
pub struct RenderClient {
    http: reqwest::Client,
    base: Url,
    key: SecretString,
    per_minute: u32,
    deadline: Duration,
    budget: Mutex<Budget>,
    explain: fn(&reqwest::Error, &Url) -> String,
    calls: AtomicU64,
    waited_ms: AtomicU64,
}

impl std::fmt::Debug for RenderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderClient").field("base", &self.base.as_str()).field("key", &REDACTED).finish()
    }
}

fn body_message(body: &[u8], key: &str) -> String {
    let parsed: Option<ApiError> = serde_json::from_slice(body).ok();
    let text = match parsed {
        Some(e) if !e.message.is_empty() => e.message,
        Some(e) if !e.id.is_empty() => e.id,
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    let text = if key.len() >= 4 { text.replace(key, REDACTED) } else { text };
    let text: String = crate::text::escape_controls(&text).chars().take(200).collect();
    if text.trim().is_empty() { "no message".into() } else { text }
}

fn header_u64(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v as u64)
}

/// How long `Ratelimit-Reset` asks to wait: Render documents "UTC epoch seconds" but shows
/// `45`, so a value that is a plausible epoch is read as one, anything else as seconds.
fn reset_wait(value: u64, now_epoch: u64) -> Duration {
    let secs = if value > 1_000_000_000 { value.saturating_sub(now_epoch) } else { value };
    Duration::from_secs(secs).min(MAX_WAIT)
}

impl RenderClient {
    /// A client of the API at `base` (e.g. [`DEFAULT_API_URL`]) with `key`, at most
    /// `per_minute` requests a minute, each call finished within `deadline`. `explain` puts a
    /// transport error in words (the probes' function).
    pub fn new(
        http: reqwest::Client,
        base: Url,
        key: SecretString,
        per_minute: u32,
        deadline: Duration,
        explain: fn(&reqwest::Error, &Url) -> String,
    ) -> Self {
        let mut base = base;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Self {
            http,
            base,
            key,
            per_minute: per_minute.max(1),
            deadline,
            budget: Mutex::new(Budget::default()),
            explain,
            calls: AtomicU64::new(0),
            waited_ms: AtomicU64::new(0),
        }
    }

    /// The budget mxwarden keeps by default: [`BUDGET_SHARE_PERCENT`] of
    /// [`DOCUMENTED_GET_LIMIT_PER_MINUTE`].
    pub fn default_budget() -> u32 {
        DOCUMENTED_GET_LIMIT_PER_MINUTE * BUDGET_SHARE_PERCENT / 100
    }

    /// Requests sent so far (each attempt counts).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Time spent waiting for the budget or rate-limit headers so far.
    pub fn waited(&self) -> Duration {
        Duration::from_millis(self.waited_ms.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a slot in the budget (and any hold the headers asked for), unless that
    /// would pass `until`.
    async fn slot(&self, path: &str, until: Instant) -> Result<(), RenderError> {
        loop {
            let now = Instant::now();
            let wait_until = {
                let mut b = self.lock();
                while b.sent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
                    b.sent.pop_front();
                }
                let hold = b.hold_until.filter(|h| *h > now);
                let full = (b.sent.len() as u32 >= self.per_minute).then(|| b.sent[0] + Duration::from_secs(60));
                match hold.max(full) {
                    None => {
                        b.sent.push_back(now);
                        return Ok(());
                    }
                    Some(at) => at,
                }
            };
            if wait_until > until {
                return Err(RenderError::Budget { path: path.to_string(), per_minute: self.per_minute });
            }
            tracing::debug!(
                path,
                wait_ms = (wait_until - now).as_millis() as u64,
                "Waiting for the Render request budget."
            );
            self.waited_ms.fetch_add((wait_until - now).as_millis() as u64, Ordering::Relaxed);
            tokio::time::sleep_until(wait_until).await;
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, RenderError> {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| RenderError::Malformed { path: path.to_string(), why: e.to_string() })?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// One call: budget, request, 429 retries, all within the deadline. Returns the status
    /// and the body (capped). `what`/`id` name the resource for a 404.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
        what: &'static str,
        id: &str,
    ) -> Result<(u16, Vec<u8>), RenderError> {
        let started = Instant::now();
        let until = started + self.deadline;
        let url = self.url(path, query)?;
        let timeout = || RenderError::Timeout { path: path.to_string(), deadline: self.deadline };
        let mut backoff = Duration::from_secs(1);
        for attempt in 1..=MAX_ATTEMPTS {
            self.slot(path, until).await?;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(self.key.expose_secret())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(b) = &body {
                request = request.json(b);
            }
            let left = until.saturating_duration_since(Instant::now());
            let sent = tokio::time::timeout(left, async {
                let response = request.send().await.map_err(|e| RenderError::Transport((self.explain)(&e, &url)))?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = read_capped(response, path, &url, self.explain).await?;
                Ok::<_, RenderError>((status, headers, body))
            })
            .await;
            let (status, headers, bytes) = match sent {
                Err(_) => return Err(timeout()),
                Ok(r) => r?,
            };
            self.note_headers(&headers);
            if status == 429 {
                let wait = header_u64(&headers, "retry-after")
                    .map(Duration::from_secs)
                    .or_else(|| header_u64(&headers, "ratelimit-reset").map(|v| reset_wait(v, epoch_now())))
                    .unwrap_or(backoff)
                    .clamp(Duration::from_millis(100), MAX_WAIT);
                backoff = (backoff * 2).min(MAX_WAIT);
                let resume = Instant::now() + wait;
                if resume > until || attempt == MAX_ATTEMPTS {
                    return Err(RenderError::RateLimited { path: path.to_string(), waited: started.elapsed() });
                }
                tracing::info!(
                    path,
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "Render rate-limited a request; waiting."
                );
                self.lock().hold_until = Some(resume);
                continue;
            }
            let key = self.key.expose_secret();
            return match status {
                200..=299 => Ok((status, bytes)),
                401 => Err(RenderError::Unauthorized),
                403 => Err(RenderError::Forbidden { path: path.to_string(), message: body_message(&bytes, key) }),
                404 => Err(RenderError::NotFound { what, id: crate::text::escape_controls(id).into_owned() }),
                500..=599 => {
                    Err(RenderError::Server { status, path: path.to_string(), message: body_message(&bytes, key) })
                }
                _ => Err(RenderError::Refused { status, path: path.to_string(), message: body_message(&bytes, key) }),
            };
        }
        Err(RenderError::RateLimited { path: path.to_string(), waited: started.elapsed() })
    }

    /// `Ratelimit-Remaining: 0` holds every request until `Ratelimit-Reset`.
    fn note_headers(&self, headers: &reqwest::header::HeaderMap) {
        if header_u64(headers, "ratelimit-remaining") == Some(0) {
            let wait =
                header_u64(headers, "ratelimit-reset").map_or(Duration::from_secs(1), |v| reset_wait(v, epoch_now()));
            let mut b = self.lock();
            let at = Instant::now() + wait;
            b.hold_until = Some(b.hold_until.map_or(at, |h| h.max(at)));
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &'static str,
        id: &str,
    ) -> Result<T, RenderError> {
        let (_, body) = self.call(reqwest::Method::GET, path, query, None, what, id).await?;
        parse(path, &body)
    }

    /// Every item of a cursor-paginated listing (`[{"cursor":…, "<wrapper>":{…}}]`), at most
    /// `max` (`None`: all, up to [`MAX_PAGES`] pages). A short page is the last, as Render's
    /// CLI reads it.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        wrapper: &str,
        max: Option<usize>,
    ) -> Result<Vec<T>, RenderError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let want = max.map_or(PAGE_LIMIT, |m| (m - items.len()).min(PAGE_LIMIT));
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("limit", want.to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page: Vec<serde_json::Value> = self.get(path, &q, "listing", path).await?;
            let n = page.len();
            for entry in page {
                cursor = entry.get("cursor").and_then(|c| c.as_str()).map(str::to_string).or(cursor);
                let inner = entry.get(wrapper).cloned().ok_or_else(|| RenderError::Malformed {
                    path: path.to_string(),
                    why: format!("an item has no `{wrapper}`"),
                })?;
                items.push(serde_json::from_value(inner).map_err(|e| RenderError::Malformed {
                    path: path.to_string(),
                    why: format!("a `{wrapper}`: {e}"),
                })?);
            }
            if n < want || max.is_some_and(|m| items.len() >= m) || cursor.is_none() {
                return Ok(items);
            }
        }
        Err(RenderError::Endless { path: path.to_string(), pages: MAX_PAGES })
    }

    /// `GET /owners`: the workspaces the key reaches.
    pub async fn owners(&self) -> Result<Vec<Owner>, RenderError> {
        self.list("owners", &[], "owner", None).await
    }

    /// `GET /services` (previews left out), of `owner` if given.
    pub async fn services(&self, owner: Option<&str>) -> Result<Vec<Service>, RenderError> {
        let mut q = vec![("includePreviews", "false".to_string())];
        if let Some(o) = owner {
            q.push(("ownerId", o.to_string()));
        }
        self.list("services", &q, "service", None).await
    }

    /// `GET /services/{id}`.
    pub async fn service(&self, id: &str) -> Result<Service, RenderError> {
        self.get(&format!("services/{}", seg(id)), &[], "service", id).await
    }

    /// `GET /services/{id}/instances`.
    pub async fn instances(&self, id: &str) -> Result<Vec<Instance>, RenderError> {
        self.get(&format!("services/{}/instances", seg(id)), &[], "service", id).await
    }

    /// `GET /services/{id}/deploys`, newest first, at most `limit`.
    pub async fn deploys(&self, id: &str, limit: usize) -> Result<Vec<Deploy>, RenderError> {
        let path = format!("services/{}/deploys", seg(id));
        self.list(&path, &[], "deploy", Some(limit.max(1))).await.map_err(|e| not_found_as(e, "service", id))
    }

    /// `GET /services/{id}/deploys/{deployId}`.
    pub async fn deploy(&self, id: &str, deploy_id: &str) -> Result<Deploy, RenderError> {
        self.get(&format!("services/{}/deploys/{}", seg(id), seg(deploy_id)), &[], "deploy", deploy_id).await
    }

    /// `POST /services/{id}/deploys`: 201 with the deploy, or 202 without a body (then the
    /// newest deploy is looked up: the one just queued. Render's CLI asks for the newest
    /// *queued* one, which misses a deploy that started building before the look-up.)
    pub async fn trigger_deploy(&self, id: &str, request: &DeployRequest) -> Result<Triggered, RenderError> {
        let path = format!("services/{}/deploys", seg(id));
        let body = serde_json::to_value(request).unwrap_or_default();
        let (status, bytes) = self.call(reqwest::Method::POST, &path, &[], Some(body), "service", id).await?;
        if status == 202 || bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Triggered::Queued(self.deploys(id, 1).await?.into_iter().next()));
        }
        parse(&path, &bytes).map(Triggered::Created)
    }

    /// `POST /services/{id}/deploys/{deployId}/cancel`.
    pub async fn cancel_deploy(&self, id: &str, deploy_id: &str) -> Result<Deploy, RenderError> {
        let path = format!("services/{}/deploys/{}/cancel", seg(id), seg(deploy_id));
        let (_, bytes) = self.call(reqwest::Method::POST, &path, &[], None, "deploy", deploy_id).await?;
        parse(&path, &bytes)
    }

    /// `POST /services/{id}/rollback` to `deploy_id` (201 with the new deploy).
    pub async fn rollback(&self, id: &str, deploy_id: &str) -> Result<Deploy, RenderError> {
        let path = format!("services/{}/rollback", seg(id));
        let body = serde_json::json!({ "deployId": deploy_id });
        let (_, bytes) = self.call(reqwest::Method::POST, &path, &[], Some(body), "deploy", deploy_id).await?;
        parse(&path, &bytes)
    }

    /// `POST /services/{id}/restart` (200, no body).
    pub async fn restart(&self, id: &str) -> Result<(), RenderError> {
        let path = format!("services/{}/restart", seg(id));
        self.call(reqwest::Method::POST, &path, &[], None, "service", id).await.map(|_| ())
    }

    /// `GET /services/{id}/events` from `start` to `end`, of type `kind` if given, at most
    /// `max`, newest first.
    pub async fn events(
        &self,
        id: &str,
        start: jiff::Timestamp,
        end: jiff::Timestamp,
        kind: Option<&str>,
        max: usize,
    ) -> Result<Vec<Event>, RenderError> {
        let path = format!("services/{}/events", seg(id));
        let mut q = vec![("startTime", start.to_string()), ("endTime", end.to_string())];
        if let Some(k) = kind {
            q.push(("type", k.to_string()));
        }
        self.list(&path, &q, "event", Some(max.max(1))).await.map_err(|e| not_found_as(e, "service", id))
    }

    /// `GET /metrics/{name}` of `resource` from `start` to `end`.
    pub async fn metric(
        &self,
        name: &str,
        resource: &str,
        start: jiff::Timestamp,
        end: jiff::Timestamp,
    ) -> Result<Vec<MetricSeries>, RenderError> {
        let q = vec![
            ("resource", resource.to_string()),
            ("startTime", start.to_string()),
            ("endTime", end.to_string()),
            ("resolutionSeconds", "60".to_string()),
        ];
        self.get(&format!("metrics/{}", seg(name)), &q, "resource", resource).await
    }

    /// `GET /logs`: one page.
    pub async fn logs(&self, query: &LogQuery) -> Result<LogPage, RenderError> {
        let mut q = log_params(query);
        q.push(("direction", if query.forward { "forward" } else { "backward" }.to_string()));
        q.push(("limit", query.limit.clamp(1, 100).to_string()));
        let id = query.resources.join(",");
        self.get("logs", &q, "resource", &id).await
    }

    /// `GET /logs/subscribe`: the stream of new lines (a WebSocket) over `tls`. Counts as one
    /// request of the budget.
    pub async fn subscribe_logs(
        &self,
        query: &LogQuery,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<super::stream::LogStream, RenderError> {
        let path = "logs/subscribe";
        self.slot(path, Instant::now() + self.deadline).await?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut q = log_params(query);
        q.retain(|(k, _)| *k != "startTime" && *k != "endTime");
        let url = self.url(path, &q)?;
        super::stream::open(&url, self.key.expose_secret(), self.deadline, tls).await
    }

    /// `GET /postgres` (replicas included), of `owner` if given.
    pub async fn postgres_list(&self, owner: Option<&str>) -> Result<Vec<Postgres>, RenderError> {
        let q: Vec<(&str, String)> = owner.map(|o| ("ownerId", o.to_string())).into_iter().collect();
        self.list("postgres", &q, "postgres", None).await
    }

    /// `GET /postgres/{id}`.
    pub async fn postgres(&self, id: &str) -> Result<Postgres, RenderError> {
        self.get(&format!("postgres/{}", seg(id)), &[], "postgres database", id).await
    }

    /// `GET /postgres/{id}/recovery`: whether point-in-time recovery is available.
    pub async fn recovery(&self, id: &str) -> Result<Recovery, RenderError> {
        self.get(&format!("postgres/{}/recovery", seg(id)), &[], "postgres database", id).await
    }

    /// `GET /postgres/{id}/export`: the logical exports Render keeps (7 days).
    pub async fn exports(&self, id: &str) -> Result<Vec<Export>, RenderError> {
        self.get(&format!("postgres/{}/export", seg(id)), &[], "postgres database", id).await
    }

    /// `GET /maintenance` for `resources` (not paginated).
    pub async fn maintenance(&self, resources: &[String]) -> Result<Vec<Maintenance>, RenderError> {
        let q: Vec<(&str, String)> =
            if resources.is_empty() { Vec::new() } else { vec![("resourceId", resources.join(","))] };
        self.get("maintenance", &q, "resource", &resources.join(",")).await
    }
}

/// The filters of `GET /logs` and `/logs/subscribe` (repeated parameters).
fn log_params(query: &LogQuery) -> Vec<(&'static str, String)> {
    let mut q = vec![("ownerId", query.owner_id.clone())];
    q.extend(query.resources.iter().map(|r| ("resource", r.clone())));
    q.extend(query.instances.iter().map(|r| ("instance", r.clone())));
    q.extend(query.levels.iter().map(|r| ("level", r.clone())));
    q.extend(query.text.iter().map(|r| ("text", r.clone())));
    if let Some(s) = query.start {
        q.push(("startTime", s.to_string()));
    }
    if let Some(e) = query.end {
        q.push(("endTime", e.to_string()));
    }
    q
}

/// A 404 on a listing names the resource it lists.
fn not_found_as(e: RenderError, what: &'static str, id: &str) -> RenderError {
    match e {
        RenderError::NotFound { .. } => {
            RenderError::NotFound { what, id: crate::text::escape_controls(id).into_owned() }
        }
        other => other,
    }
}

/// One path segment, percent-encoded: an id from the config never changes the path.
fn seg(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

fn epoch_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn parse<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, RenderError> {
    serde_json::from_slice(body).map_err(|e| RenderError::Malformed { path: path.to_string(), why: e.to_string() })
}

async fn read_capped(
    mut response: reqwest::Response,
    path: &str,
    url: &Url,
    explain: fn(&reqwest::Error, &Url) -> String,
) -> Result<Vec<u8>, RenderError> {
    if response.content_length().is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(RenderError::TooLarge { path: path.to_string(), limit: BODY_LIMIT });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| RenderError::Transport(explain(&e, url)))? {
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(RenderError::TooLarge { path: path.to_string(), limit: BODY_LIMIT });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratelimit_reset_reads_epochs_and_offsets_and_is_capped() {
        assert_eq!(reset_wait(45, 1_800_000_000), Duration::from_secs(45), "the documented example is seconds");
        assert_eq!(reset_wait(1_800_000_010, 1_800_000_000), Duration::from_secs(10), "an epoch is read as one");
        assert_eq!(reset_wait(1_700_000_000, 1_800_000_000), Duration::ZERO, "a reset in the past waits nothing");
        assert_eq!(reset_wait(86_400, 0), MAX_WAIT, "never more than a minute");
    }

    #[test]
    fn error_bodies_are_short_escaped_and_never_show_the_key() {
        let key = "rnd_SECRETKEY123";
        let m = body_message(br#"{"id":"bad","message":"key rnd_SECRETKEY123 is wrong\nreally"}"#, key);
        assert!(!m.contains(key) && m.contains(REDACTED) && !m.contains('\n'), "{m}");
        assert_eq!(body_message(b"", key), "no message");
        assert!(body_message(&vec![b'x'; 10_000], key).len() <= 200);
    }

    #[test]
    fn ids_cannot_change_the_path() {
        assert_eq!(seg("srv-abc"), "srv-abc");
        assert_eq!(seg("../owners?x=1"), "..%2Fowners%3Fx%3D1");
    }

    #[test]
    fn the_default_budget_is_a_share_of_the_lower_documented_limit() {
        assert_eq!(RenderClient::default_budget(), 60);
    }
}
