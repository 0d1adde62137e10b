//! A fake of Render's REST API v1, following the shapes of `../shared/reference/render-api.md`
//! (Render's OpenAPI-generated client): bare arrays with the cursor beside each item, errors
//! as `{"id","message"}`, `Ratelimit-*` headers on every answer, 429 with `Retry-After` when
//! told to, 401 for a wrong key, 202 without a body for a deploy trigger. Render is a SaaS
//! that cannot run here; this stands in for it in mxwarden's tests and demo. Tests change the
//! world through [`FakeRender`]'s methods; the demo binary through `POST /_fake/…`.
//!
//! The log stream (`/logs/subscribe`, a WebSocket) sends lines pushed after the subscription.
//! What it does not model: metrics time ranges (the newest point is always "now"), and any
//! write other than deploys, rollbacks, cancels and restarts.

use axum::Router;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a deploy trigger answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployAnswer {
    /// 202 with an empty body, the deploy queued (what Render often does).
    Queued,
    /// 201 with the deploy.
    Created,
}

/// The fake's world.
#[derive(Debug)]
pub struct World {
    /// The one API key accepted.
    pub key: String,
    /// The workspace.
    pub owner_id: String,
    /// Services, in listing order.
    pub services: Vec<Value>,
    /// PostgreSQL databases.
    pub postgres: Vec<Value>,
    /// Deploys per service, newest first.
    pub deploys: BTreeMap<String, Vec<Value>>,
    /// Events per service.
    pub events: BTreeMap<String, Vec<Value>>,
    /// `(metric, resource)` → series.
    pub metrics: BTreeMap<(String, String), Vec<Value>>,
    /// Log lines, any order.
    pub logs: Vec<Value>,
    /// Render's maintenance runs.
    pub maintenance: Vec<Value>,
    /// PITR state per database.
    pub recovery: BTreeMap<String, Value>,
    /// Logical exports per database (`[{"id","createdAt","url"}]`).
    pub exports: BTreeMap<String, Vec<Value>>,
    /// This many requests still get 429.
    pub rate_limited: u32,
    /// Their `Retry-After`, seconds.
    pub retry_after: u64,
    /// What a deploy trigger answers.
    pub deploy_answer: DeployAnswer,
    /// Every request: `METHOD /path?query`.
    pub requests: Vec<String>,
    /// Restarts asked for, by service.
    pub restarts: Vec<String>,
    next: u64,
}

impl World {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-fake{:06}", self.next)
    }
}

/// A running fake.
#[derive(Clone)]
pub struct FakeRender {
    /// `http://127.0.0.1:PORT/v1`: what `render.api_url` points at.
    pub api_url: String,
    world: Arc<Mutex<World>>,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl FakeRender {
    /// An empty world accepting `key`, served on `listener` by the current tokio runtime.
    pub fn spawn(listener: tokio::net::TcpListener, key: &str) -> Self {
        let addr = listener.local_addr().expect("local address");
        let world = Arc::new(Mutex::new(World {
            key: key.to_string(),
            owner_id: "tea-fake000001".into(),
            services: Vec::new(),
            postgres: Vec::new(),
            deploys: BTreeMap::new(),
            events: BTreeMap::new(),
            metrics: BTreeMap::new(),
            logs: Vec::new(),
            maintenance: Vec::new(),
            recovery: BTreeMap::new(),
            exports: BTreeMap::new(),
            rate_limited: 0,
            retry_after: 1,
            deploy_answer: DeployAnswer::Queued,
            requests: Vec::new(),
            restarts: Vec::new(),
            next: 0,
        }));
        let router = router(world.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { api_url: format!("http://{addr}/v1"), world }
    }

    /// Runs `f` on the world.
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Adds a web service with one instance (`<id>-inst1`), a live deploy, and memory and CPU
    /// metrics of `memory_bytes` / `memory_limit` and 0.1 / 0.5 cores.
    pub fn add_service(&self, id: &str, name: &str, plan: &str, memory_bytes: f64, memory_limit: f64) {
        self.with(|w| {
            let owner = w.owner_id.clone();
            w.services.push(json!({
                "id": id, "name": name, "slug": name, "type": "web_service", "ownerId": owner,
                "suspended": "not_suspended", "suspenders": [], "autoDeploy": "yes", "branch": "main",
                "dashboardUrl": format!("https://dashboard.render.com/web/{id}"), "createdAt": "2026-01-01T00:00:00Z",
                "updatedAt": "2026-01-01T00:00:00Z",
                "serviceDetails": {"plan": plan, "region": "frankfurt", "runtime": "image", "env": "image",
                    "numInstances": 1, "url": format!("https://{name}.onrender.com"), "healthCheckPath": "/health"}
            }));
            let dep = w.id("dep");
            w.deploys.entry(id.to_string()).or_default().push(deploy_json(
                &dep,
                "live",
                "new_commit",
                "a1b2c3d4e5f6a7b8",
            ));
        });
        self.set_memory(id, &format!("{id}-inst1"), memory_bytes, memory_limit);
        self.set_cpu(id, &format!("{id}-inst1"), 0.1, 0.5);
    }

    /// Adds a PostgreSQL database with its real disk, `used_bytes` of it used, PITR available.
    pub fn add_postgres(&self, id: &str, name: &str, plan: &str, disk_gb: u64, used_bytes: f64) {
        self.with(|w| {
            let owner = w.owner_id.clone();
            w.postgres.push(json!({
                "id": id, "name": name, "plan": plan, "diskSizeGB": disk_gb, "diskAutoscalingEnabled": false,
                "status": "available", "version": "16", "highAvailabilityEnabled": false, "role": "primary",
                "region": "frankfurt", "suspended": "not_suspended", "readReplicas": [], "databaseName": "app",
                "owner": {"id": owner, "name": "Fake team", "email": "ops@example.org", "type": "team"},
                "createdAt": "2026-01-01T00:00:00Z"
            }));
            w.recovery.insert(id.into(), json!({"recoveryStatus": "AVAILABLE", "startsAt": "2026-01-01T00:00:00Z"}));
            w.metrics.insert(("disk-usage".into(), id.into()), vec![series(id, None, "bytes", used_bytes)]);
            w.metrics
                .insert(("disk-capacity".into(), id.into()), vec![series(id, None, "bytes", disk_gb as f64 * 1e9)]);
        });
        self.set_memory(id, &format!("{id}-inst1"), 100e6, 256e6);
        self.set_cpu(id, &format!("{id}-inst1"), 0.05, 0.1);
    }

    /// Sets a database's PITR state: `AVAILABLE`, `BACKUP_NOT_READY` or `NOT_AVAILABLE`.
    pub fn set_recovery(&self, id: &str, status: &str, starts_at: Option<&str>) {
        self.with(|w| {
            w.recovery.insert(id.into(), json!({"recoveryStatus": status, "startsAt": starts_at}));
        });
    }

    /// Adds a logical export of database `id` made at `created_at`, downloadable at `url`;
    /// returns its id.
    pub fn add_export(&self, id: &str, created_at: &str, url: &str) -> String {
        self.with(|w| {
            let exp = w.id("exp");
            w.exports.entry(id.to_string()).or_default().push(json!({"id": exp, "createdAt": created_at, "url": url}));
            exp
        })
    }

    /// Sets one instance's memory and its limit (other instances of `resource` are dropped).
    pub fn set_memory(&self, resource: &str, instance: &str, bytes: f64, limit: f64) {
        self.with(|w| {
            w.metrics
                .insert(("memory".into(), resource.into()), vec![series(resource, Some(instance), "bytes", bytes)]);
            w.metrics.insert(
                ("memory-limit".into(), resource.into()),
                vec![series(resource, Some(instance), "bytes", limit)],
            );
            w.metrics
                .insert(("instance-count".into(), resource.into()), vec![series(resource, None, "instances", 1.0)]);
        });
    }

    /// Sets one instance's CPU and its limit, cores.
    pub fn set_cpu(&self, resource: &str, instance: &str, cores: f64, limit: f64) {
        self.with(|w| {
            w.metrics.insert(("cpu".into(), resource.into()), vec![series(resource, Some(instance), "cpu", cores)]);
            w.metrics
                .insert(("cpu-limit".into(), resource.into()), vec![series(resource, Some(instance), "cpu", limit)]);
        });
    }

    /// Adds a deploy of `service` as its newest; returns its id.
    pub fn push_deploy(&self, service: &str, status: &str, trigger: &str, commit: &str) -> String {
        self.with(|w| {
            let id = w.id("dep");
            w.deploys.entry(service.into()).or_default().insert(0, deploy_json(&id, status, trigger, commit));
            id
        })
    }

    /// Changes a deploy's status (and its `finishedAt` when it is done).
    pub fn set_deploy_status(&self, service: &str, deploy: &str, status: &str) {
        self.with(|w| {
            for d in w.deploys.entry(service.into()).or_default().iter_mut() {
                if d["id"] == deploy {
                    d["status"] = json!(status);
                    d["updatedAt"] = json!(now());
                    if !status.contains("progress") && status != "queued" && status != "created" {
                        d["finishedAt"] = json!(now());
                    }
                }
            }
        });
    }

    /// Adds an event of `service` at `timestamp` (RFC 3339); returns its id.
    pub fn push_event(&self, service: &str, kind: &str, details: Value, timestamp: &str) -> String {
        self.with(|w| {
            let id = w.id("evt");
            w.events.entry(service.into()).or_default().push(json!({
                "id": id, "timestamp": timestamp, "serviceId": service, "type": kind, "details": details
            }));
            id
        })
    }

    /// Adds a log line of `resource`/`instance` at `timestamp`.
    pub fn push_log(&self, resource: &str, instance: &str, level: &str, message: &str, timestamp: &str) {
        self.with(|w| {
            let id = w.id("log");
            w.logs.push(json!({
                "id": id, "timestamp": timestamp, "message": message,
                "labels": [{"name":"resource","value":resource},{"name":"instance","value":instance},
                           {"name":"level","value":level},{"name":"type","value":"app"}]
            }));
        });
    }

    /// Suspends a service, by `suspenders` (`user`, `billing`, …).
    pub fn suspend(&self, service: &str, suspenders: &[&str]) {
        self.with(|w| {
            for s in w.services.iter_mut().filter(|s| s["id"] == service) {
                s["suspended"] = json!("suspended");
                s["suspenders"] = json!(suspenders);
            }
        });
    }

    /// The next `count` requests get 429 with `Retry-After: retry_after`.
    pub fn rate_limit(&self, count: u32, retry_after: u64) {
        self.with(|w| {
            w.rate_limited = count;
            w.retry_after = retry_after;
        });
    }

    /// Every request so far: `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.with(|w| w.requests.clone())
    }

    /// The demo's stack: synapse, mas, vikunja, authentik and a PostgreSQL database.
    pub fn demo_stack(&self) {
        self.add_service("srv-synapse0000000000", "synapse", "starter", 301e6, 512e6);
        self.add_service("srv-mas00000000000000", "mas", "starter", 88e6, 512e6);
        self.add_service("srv-vikunja0000000000", "vikunja", "starter", 120e6, 512e6);
        self.add_service("srv-authentik00000000", "authentik", "standard", 1.2e9, 2e9);
        self.add_postgres("dpg-postgres0000000000", "postgres", "basic_256mb", 15, 1.4e9);
    }
}

fn deploy_json(id: &str, status: &str, trigger: &str, commit: &str) -> Value {
    let t = now();
    json!({
        "id": id, "status": status, "trigger": trigger, "createdAt": t, "startedAt": t, "updatedAt": t,
        "finishedAt": if status == "live" { Value::String(t.clone()) } else { Value::Null },
        "commit": {"id": commit, "message": "fake commit", "createdAt": t},
    })
}

fn series(resource: &str, instance: Option<&str>, unit: &str, value: f64) -> Value {
    let mut labels = vec![json!({"field":"resource","value":resource})];
    if let Some(i) = instance {
        labels.push(json!({"field":"instance","value":i}));
    }
    json!({"labels": labels, "unit": unit, "values": [{"timestamp": now(), "value": value}]})
}

type Shared = Arc<Mutex<World>>;

fn query(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn first<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn error(status: StatusCode, id: &str, message: &str) -> Response {
    (status, axum::Json(json!({"id": id, "message": message}))).into_response()
}

fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from_static("100"));
    h.insert("ratelimit-remaining", HeaderValue::from_static("99"));
    h.insert("ratelimit-reset", HeaderValue::from_static("45"));
    r
}

/// The gate of every API call: records it, checks the key, plays a 429 when told to.
fn gate(world: &Shared, headers: &HeaderMap, what: String) -> Result<(), Box<Response>> {
    let mut w = world.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    w.requests.push(what);
    let expected = format!("Bearer {}", w.key);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(Box::new(with_headers(error(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"))));
    }
    if w.rate_limited > 0 {
        w.rate_limited -= 1;
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too Many Requests");
        let h = r.headers_mut();
        h.insert("retry-after", HeaderValue::from(w.retry_after));
        h.insert("ratelimit-limit", HeaderValue::from_static("100"));
        h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("ratelimit-reset", HeaderValue::from(w.retry_after));
        return Err(Box::new(r));
    }
    Ok(())
}

/// Cursor pagination: `limit` (default 20, max 100), `cursor` of the last item seen.
fn page(items: Vec<Value>, wrapper: &str, q: &[(String, String)]) -> Response {
    let limit = first(q, "limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(20).clamp(1, 100);
    let start = match first(q, "cursor") {
        None => 0,
        Some(c) => match c.strip_prefix("cur-").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n + 1,
            None => return error(StatusCode::BAD_REQUEST, "invalid_cursor", "cursor is not valid"),
        },
    };
    let out: Vec<Value> = items
        .into_iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(i, v)| json!({"cursor": format!("cur-{i}"), wrapper: v}))
        .collect();
    axum::Json(Value::Array(out)).into_response()
}

fn in_range(ts: &str, q: &[(String, String)]) -> bool {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else { return false };
    let start = first(q, "startTime").and_then(|s| s.parse::<jiff::Timestamp>().ok());
    let end = first(q, "endTime").and_then(|s| s.parse::<jiff::Timestamp>().ok());
    start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e)
}

async fn api(
    AxState(world): AxState<Shared>,
    method: axum::http::Method,
    Path(path): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let what = match &raw {
        Some(q) => format!("{method} /v1/{path}?{q}"),
        None => format!("{method} /v1/{path}"),
    };
    if let Err(r) = gate(&world, &headers, what) {
        return *r;
    }
    let q = query(&raw);
    let parts: Vec<&str> = path.split('/').collect();
    let mut w = world.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let not_found = |id: &str| error(StatusCode::NOT_FOUND, "not_found", &format!("{id} not found"));
    let service_known = |w: &World, id: &str| w.services.iter().any(|s| s["id"] == id);
    let r = match (method.as_str(), parts.as_slice()) {
        ("GET", ["owners"]) => {
            let owner = json!({"id": w.owner_id, "name": "Fake team", "email": "ops@example.org", "type": "team"});
            page(vec![owner], "owner", &q)
        }
        ("GET", ["services"]) => page(w.services.clone(), "service", &q),
        ("GET", ["services", id]) => match w.services.iter().find(|s| s["id"] == *id) {
            Some(s) => axum::Json(s.clone()).into_response(),
            None => not_found(id),
        },
        ("GET", ["services", id, "instances"]) if service_known(&w, id) => {
            let n = w.metrics.get(&("memory".to_string(), id.to_string())).map_or(0, Vec::len);
            let list: Vec<Value> =
                (1..=n).map(|i| json!({"id": format!("{id}-inst{i}"), "createdAt": "2026-01-01T00:00:00Z"})).collect();
            axum::Json(Value::Array(list)).into_response()
        }
        ("GET", ["services", id, "deploys"]) if service_known(&w, id) => {
            let statuses: Vec<&str> = q.iter().filter(|(k, _)| k == "status").map(|(_, v)| v.as_str()).collect();
            let list: Vec<Value> = w
                .deploys
                .get(*id)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|d| statuses.is_empty() || statuses.iter().any(|s| d["status"] == *s))
                .collect();
            page(list, "deploy", &q)
        }
        ("POST", ["services", id, "deploys"]) if service_known(&w, id) => {
            let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            let dep = w.id("dep");
            let mut d = deploy_json(&dep, "queued", "api", request["commitId"].as_str().unwrap_or("f00dfeedcafe0000"));
            if let Some(image) = request["imageUrl"].as_str() {
                d["image"] = json!({"ref": image, "sha": "sha256:fake"});
                d["commit"] = Value::Null;
            }
            w.deploys.entry(id.to_string()).or_default().insert(0, d.clone());
            match w.deploy_answer {
                DeployAnswer::Queued => StatusCode::ACCEPTED.into_response(),
                DeployAnswer::Created => (StatusCode::CREATED, axum::Json(d)).into_response(),
            }
        }
        ("GET", ["services", id, "deploys", dep]) => {
            match w.deploys.get(*id).and_then(|l| l.iter().find(|d| d["id"] == *dep)) {
                Some(d) => axum::Json(d.clone()).into_response(),
                None => not_found(dep),
            }
        }
        ("POST", ["services", id, "deploys", dep, "cancel"]) => {
            match w.deploys.get_mut(*id).and_then(|l| l.iter_mut().find(|d| d["id"] == *dep)) {
                Some(d) => {
                    d["status"] = json!("canceled");
                    axum::Json(d.clone()).into_response()
                }
                None => not_found(dep),
            }
        }
        ("POST", ["services", id, "rollback"]) if service_known(&w, id) => {
            let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            let target = request["deployId"].as_str().unwrap_or_default().to_string();
            let old = w.deploys.get(*id).and_then(|l| l.iter().find(|d| d["id"] == target.as_str())).cloned();
            match old {
                None => not_found(&target),
                Some(old) => {
                    let dep = w.id("dep");
                    let mut d =
                        deploy_json(&dep, "update_in_progress", "rollback", old["commit"]["id"].as_str().unwrap_or(""));
                    d["image"] = old["image"].clone();
                    w.deploys.entry(id.to_string()).or_default().insert(0, d.clone());
                    (StatusCode::CREATED, axum::Json(d)).into_response()
                }
            }
        }
        ("POST", ["services", id, "restart"]) if service_known(&w, id) => {
            w.restarts.push(id.to_string());
            StatusCode::OK.into_response()
        }
        ("GET", ["services", id, "events"]) if service_known(&w, id) => {
            let kind = first(&q, "type");
            let mut list: Vec<Value> = w
                .events
                .get(*id)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| kind.is_none_or(|k| e["type"] == k))
                .filter(|e| in_range(e["timestamp"].as_str().unwrap_or(""), &q))
                .collect();
            list.sort_by(|a, b| b["timestamp"].as_str().cmp(&a["timestamp"].as_str()));
            page(list, "event", &q)
        }
        ("GET", ["metrics", name]) => {
            let resource = first(&q, "resource").unwrap_or_default().to_string();
            let list = w.metrics.get(&(name.to_string(), resource)).cloned().unwrap_or_default();
            axum::Json(Value::Array(list)).into_response()
        }
        ("GET", ["logs"]) => logs(&w, &q),
        ("GET", ["postgres"]) => page(w.postgres.clone(), "postgres", &q),
        ("GET", ["postgres", id]) => match w.postgres.iter().find(|p| p["id"] == *id) {
            Some(p) => {
                let mut p = p.clone();
                p["maintenance"] = Value::Null;
                p["parameterOverrides"] = json!({});
                axum::Json(p).into_response()
            }
            None => not_found(id),
        },
        ("GET", ["postgres", id, "recovery"]) => match w.recovery.get(*id) {
            Some(r) => axum::Json(r.clone()).into_response(),
            None => not_found(id),
        },
        ("GET", ["postgres", id, "export"]) => match w.postgres.iter().any(|p| p["id"] == *id) {
            true => axum::Json(Value::Array(w.exports.get(*id).cloned().unwrap_or_default())).into_response(),
            false => not_found(id),
        },
        ("GET", ["maintenance"]) => {
            let ids: Vec<&str> = first(&q, "resourceId").map(|v| v.split(',').collect()).unwrap_or_default();
            let list: Vec<Value> = w
                .maintenance
                .iter()
                .filter(|m| ids.is_empty() || ids.iter().any(|i| m["resourceId"] == *i))
                .cloned()
                .collect();
            axum::Json(Value::Array(list)).into_response()
        }
        (_, [_, id, ..]) if id.starts_with("srv-") => not_found(id),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    };
    with_headers(r)
}

fn logs(w: &World, q: &[(String, String)]) -> Response {
    if first(q, "ownerId").is_none() {
        return error(StatusCode::BAD_REQUEST, "invalid", "ownerId is required");
    }
    let all = |key: &str| -> Vec<&str> { q.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect() };
    let (resources, instances, levels, texts) = (all("resource"), all("instance"), all("level"), all("text"));
    let label = |l: &Value, name: &str| -> String {
        l["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"] == name)
            .and_then(|x| x["value"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut lines: Vec<Value> = w
        .logs
        .iter()
        .filter(|l| resources.iter().any(|r| label(l, "resource") == *r))
        .filter(|l| instances.is_empty() || instances.iter().any(|i| label(l, "instance") == *i))
        .filter(|l| levels.is_empty() || levels.iter().any(|v| label(l, "level") == *v))
        .filter(|l| {
            texts.is_empty()
                || texts.iter().any(|t| l["message"].as_str().unwrap_or("").to_lowercase().contains(&t.to_lowercase()))
        })
        .filter(|l| in_range(l["timestamp"].as_str().unwrap_or(""), q))
        .cloned()
        .collect();
    let forward = first(q, "direction") == Some("forward");
    lines.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
    if !forward {
        lines.reverse();
    }
    let limit = first(q, "limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(20).clamp(1, 100);
    let has_more = lines.len() > limit;
    lines.truncate(limit);
    axum::Json(json!({"hasMore": has_more, "nextStartTime": null, "nextEndTime": null, "logs": lines})).into_response()
}

/// The demo's controls (no key needed; the fake binds loopback only): `POST
/// /_fake/fail-deploy/{service}` plays a deploy that fails to build, `POST
/// /_fake/oom/{service}` an OOM kill with its last log lines.
async fn control(AxState(world): AxState<Shared>, Path((action, service)): Path<(String, String)>) -> Response {
    let fake = FakeRender { api_url: String::new(), world };
    let t = now();
    match action.as_str() {
        "fail-deploy" => {
            let dep = fake.push_deploy(&service, "build_failed", "new_commit", "badc0ffee0ddf00d");
            fake.push_event(
                &service,
                "deploy_ended",
                json!({"deployId": dep, "deployStatus": "failed", "reason": {"failure": {"id": dep}}}),
                &t,
            );
            fake.push_log(
                &service,
                &format!("{service}-inst1"),
                "error",
                "error: build failed: cargo exited with status 101",
                &t,
            );
            (StatusCode::OK, dep).into_response()
        }
        "oom" => {
            let instance = format!("{service}-inst1");
            fake.push_log(&service, &instance, "error", "MemoryError: cannot allocate 64 MiB", &t);
            let id = fake.push_event(
                &service,
                "server_failed",
                json!({"instanceID": instance, "reason": {"evicted": false, "oomKilled": {"memoryLimit": "512Mi"}}}),
                &t,
            );
            (StatusCode::OK, id).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such control"),
    }
}

/// `GET /v1/logs/subscribe`: a WebSocket sending each new log line of the asked resources as
/// one JSON text frame (no backlog: lines pushed after the subscription).
async fn subscribe(
    AxState(world): AxState<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let what = format!("GET /v1/logs/subscribe?{}", raw.clone().unwrap_or_default());
    if let Err(r) = gate(&world, &headers, what) {
        return *r;
    }
    let q = query(&raw);
    let resources: Vec<String> = q.iter().filter(|(k, _)| k == "resource").map(|(_, v)| v.clone()).collect();
    let seen = world.lock().unwrap_or_else(std::sync::PoisonError::into_inner).logs.len();
    ws.on_upgrade(move |mut socket| async move {
        let mut seen = seen;
        loop {
            let new: Vec<Value> = {
                let w = world.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let lines = w.logs[seen.min(w.logs.len())..].to_vec();
                seen = w.logs.len();
                lines
            };
            for line in new {
                let resource = line["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|l| l["name"] == "resource")
                    .and_then(|l| l["value"].as_str())
                    .unwrap_or_default()
                    .to_string();
                if resources.contains(&resource)
                    && socket.send(axum::extract::ws::Message::Text(line.to_string().into())).await.is_err()
                {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
}

fn router(world: Shared) -> Router {
    Router::new()
        .route("/v1/logs/subscribe", get(subscribe))
        .route("/v1/{*path}", get(api).post(api).put(api).patch(api).delete(api))
        .route("/_fake/{action}/{service}", post(control))
        .route("/_fake/health", get(|| async { "ok" }))
        .with_state(world)
}
