//! A real Prometheus (Debian's `/usr/bin/prometheus`, installed by
//! `scripts/install-test-deps.sh`) started as a remote-write receiver
//! (`--web.enable-remote-write-receiver`) on a free loopback port with a throw-away TSDB, read
//! back through its HTTP API; and [`WriteProxy`], a switchable front for it that answers 503,
//! 400, 429, never, or with an endless body, or passes requests through and records their
//! headers and decoded bodies.

use super::fakes;
use super::services::{Service, free_port, http_get, scratch_dir};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Prometheus binary.
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A Prometheus accepting remote writes; stopped when dropped.
pub struct Prometheus {
    /// The process.
    pub service: Service,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Prometheus {
    /// Starts one and waits until `/-/ready` answers; panics with its log otherwise.
    pub fn start() -> Self {
        assert!(Path::new(PROMETHEUS).is_file(), "{PROMETHEUS} is missing: run scripts/install-test-deps.sh");
        let dir = scratch_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n").unwrap();
        let port = free_port();
        let mut cmd = std::process::Command::new(PROMETHEUS);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .current_dir(&dir);
        let service = Service::spawn("prometheus", dir.join("prometheus.log"), "TERM", &cmd);
        let base = format!("http://127.0.0.1:{port}");
        let ready = format!("{base}/-/ready");
        service.wait_until(Duration::from_secs(60), || http_get(&ready).is_some_and(|(s, _)| s == 200));
        Self { service, base }
    }

    /// The remote-write endpoint.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base)
    }

    /// `GET /api/v1/query?query=EXPR`: `data.result`, or a panic with the answer and the log.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let (status, body) = http_get(&format!("{}/api/v1/query?query={q}", self.base))
            .unwrap_or_else(|| panic!("prometheus did not answer\n{}", self.service.log_tail()));
        assert_eq!(status, 200, "query {expr}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {expr}: {e}: {body}"));
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The samples of a range selector `SELECTOR[RANGE]` as (ms, value), one series expected.
    pub fn samples(&self, selector: &str, range: &str) -> Vec<(i64, f64)> {
        let result = self.query(&format!("{selector}[{range}]"));
        assert!(result.len() <= 1, "{selector}: one series expected, got {result:?}");
        let Some(series) = result.first() else { return Vec::new() };
        series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect()
    }

    /// The instant value of `expr` when it has exactly one series.
    pub fn value(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr);
        (result.len() == 1).then(|| result[0]["value"][1].as_str()?.parse().ok()).flatten()
    }
}

/// What [`WriteProxy`] does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forward to the upstream and return its answer.
    Pass = 0,
    /// 503 Service Unavailable.
    Unavailable = 1,
    /// 400 with an endless body (a receiver that explains forever).
    BadRequestEndless = 2,
    /// 429 with `Retry-After: 1`.
    TooMany = 3,
    /// Accept the request, never answer.
    Hang = 4,
    /// 500 whose body never ends.
    ServerErrorEndless = 5,
}

/// A switchable front for a remote-write receiver.
pub struct WriteProxy {
    /// `http://127.0.0.1:PORT/api/v1/write`.
    pub url: String,
    mode: Arc<AtomicU8>,
    /// Requests per mode they met (index: `Mode as usize`).
    pub hits: Arc<[AtomicUsize; 6]>,
    /// The headers and decoded body of the last request passed through.
    pub last: Arc<Mutex<Option<(HeaderMap, mxwarden::remote_write::proto::WriteRequest)>>>,
}

impl WriteProxy {
    /// Fronts `upstream` (a write URL), starting in `mode`.
    pub fn start(upstream: String, mode: Mode) -> Self {
        let mode_cell = Arc::new(AtomicU8::new(mode as u8));
        let hits: Arc<[AtomicUsize; 6]> = Arc::new(Default::default());
        let last = Arc::new(Mutex::new(None));
        let (m, h, l) = (mode_cell.clone(), hits.clone(), last.clone());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let base = fakes::serve(Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (m, h, l, client, upstream) = (m.clone(), h.clone(), l.clone(), client.clone(), upstream.clone());
            async move {
                let mode = m.load(Ordering::SeqCst);
                h[mode as usize].fetch_add(1, Ordering::SeqCst);
                let endless = || {
                    let chunks = futures::stream::unfold((), |()| async {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 64 * 1024])), ()))
                    });
                    axum::body::Body::from_stream(chunks)
                };
                match mode {
                    1 => return (StatusCode::SERVICE_UNAVAILABLE, "receiver down").into_response(),
                    2 => return (StatusCode::BAD_REQUEST, endless()).into_response(),
                    3 => {
                        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "slow down")
                            .into_response();
                    }
                    4 => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return StatusCode::OK.into_response();
                    }
                    5 => return (StatusCode::INTERNAL_SERVER_ERROR, endless()).into_response(),
                    _ => {}
                }
                if let Ok(request) = mxwarden::remote_write::proto::decode(&body, 64 << 20) {
                    *l.lock().unwrap() = Some((headers.clone(), request));
                }
                let mut forward = client.post(&upstream).body(body);
                for (name, value) in &headers {
                    if name != header::HOST && name != header::CONTENT_LENGTH {
                        forward = forward.header(name, value);
                    }
                }
                let Ok(response) = forward.send().await else { return StatusCode::BAD_GATEWAY.into_response() };
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
                (status, response.bytes().await.unwrap_or_default()).into_response()
            }
        }));
        Self { url: format!("{base}/api/v1/write"), mode: mode_cell, hits, last }
    }

    /// Switches what the next requests meet.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Requests that met `mode` so far.
    pub fn hits(&self, mode: Mode) -> usize {
        self.hits[mode as usize].load(Ordering::SeqCst)
    }
}
