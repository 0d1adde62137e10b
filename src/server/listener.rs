//! The server's accept loop and connections (hyper's HTTP/1 server under the axum router),
//! built so that no peer can take the descriptors the probes need, or the server itself:
//!
//! - **A cap on connections** (`listen_max_connections`, default 512 like Prometheus's
//!   `--web.max-connections`), never above the open-file soft limit minus a reserve of
//!   [`FD_RESERVE`] that the probes, the store and notifications keep ([`connection_cap`]).
//! - **At the cap, the idlest connection makes room**: a new connection closes the one that
//!   has been waiting longest for a request (a half-sent head, an idle keep-alive). When every
//!   connection is busy with a request, the new one waits, and those behind it wait in the
//!   kernel's accept queue (1,024 long, [`bind`]), costing no descriptor; a request's handler has at most
//!   [`REQUEST_TIMEOUT`]. So a flood of idle connections cannot lock out `/healthz` or a
//!   browser, and only one descriptor beyond the cap is ever held.
//! - **Timeouts**: a connection must deliver a complete request head within
//!   [`HEADER_READ_TIMEOUT`] of opening or of its previous response (hyper's header-read
//!   timer runs from the moment it waits for a head, so it is also the idle keep-alive
//!   timeout); a response that makes no write progress for [`WRITE_STALL_TIMEOUT`] (a client
//!   that does not read) ends its connection. Heads are limited to [`MAX_HEAD`] bytes.
//!
//! `serve` (in `mod.rs`) hands it the router; the daemon passes the configured cap.

use axum::Router;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower_service::Service;

/// Descriptors the server never takes: for probes, the store, notifications and backups.
pub(crate) const FD_RESERVE: u64 = 256;
/// How long a connection may take to send a complete request head, counted from when it
/// opened or its previous response ended (so also how long an idle keep-alive lasts).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response may make no write progress before its connection is closed.
pub(crate) const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a request's handler may run, reading its body included (a reload waits up to
/// 30 s for the daemon).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head (request line and headers) read; hyper answers `431` beyond it.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// How long requests in flight may finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often a full server looks again for a connection to close when none was idle.
const ROOM_RETRY: Duration = Duration::from_millis(50);

/// Connections the kernel queues for `accept` (the standard library's and tokio's 128 overflow
/// under a burst of connections, and a client whose SYN is dropped retries only after a second).
const LISTEN_BACKLOG: u32 = 1024;

/// Binds the server's socket: `SO_REUSEADDR` (a reload binds the same address again at once)
/// and an accept queue of 1,024.
pub(crate) fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How the server bounds its connections: [`Limits::new`] gives the cap and the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`WRITE_STALL_TIMEOUT`].
    pub write_stall_timeout: Duration,
    /// See [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
}

impl Limits {
    /// `max_connections` with the default timeouts.
    pub(crate) fn new(max_connections: usize) -> Self {
        Self {
            max_connections: max_connections.max(1),
            header_read_timeout: HEADER_READ_TIMEOUT,
            write_stall_timeout: WRITE_STALL_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

/// The open-file soft limit of this process, from `/proc/self/limits`; `None` where that file
/// does not exist (not Linux) or says `unlimited`. (The binary raises it to the hard limit at
/// start; reading it needs no system call, so the library stays free of `unsafe`.)
pub(crate) fn open_file_soft_limit() -> Option<u64> {
    soft_limit_in(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft open-file limit in the text of a `/proc/PID/limits` file.
fn soft_limit_in(limits: &str) -> Option<u64> {
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The cap in force: the configured one, but never more than the open-file soft limit minus
/// the reserve (at most half the limit is reserved, so a tiny limit still serves). Without a
/// known limit, the configured cap.
pub(crate) fn connection_cap(configured: usize, soft_limit: Option<u64>) -> usize {
    let Some(soft) = soft_limit else { return configured.max(1) };
    let room = soft - FD_RESERVE.min(soft / 2);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX)).max(1)
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Slot {
    /// Requests being handled now.
    in_flight: AtomicUsize,
    /// Since when no request has been handled, ms since the registry's epoch.
    idle_since: AtomicU64,
    /// Chosen to make room; its task closes it.
    evicted: AtomicBool,
    /// Wakes its task to close it.
    close: Notify,
    epoch: Instant,
}

impl Slot {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Marks its slot busy while a request is handled.
struct Busy(Arc<Slot>);

impl Busy {
    fn new(slot: Arc<Slot>) -> Self {
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(slot)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
}

/// Removes its connection from the registry when the connection's task ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl Registry {
    fn new() -> Self {
        Self { epoch: Instant::now(), next: AtomicU64::new(0), open: Mutex::new(HashMap::new()) }
    }

    fn register(self: &Arc<Self>) -> (Arc<Slot>, Registered) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
            epoch: self.epoch,
        });
        slot.idle_since.store(slot.now(), Ordering::SeqCst);
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, slot.clone());
        (slot, Registered { registry: self.clone(), id })
    }

    /// Closes the connection that has waited longest for a request; `false` when every
    /// connection is handling one.
    fn evict_idlest(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let idlest = open
            .values()
            .filter(|s| s.in_flight.load(Ordering::SeqCst) == 0 && !s.evicted.load(Ordering::SeqCst))
            .min_by_key(|s| s.idle_since.load(Ordering::SeqCst));
        match idlest {
            Some(slot) => {
                slot.evicted.store(true, Ordering::SeqCst);
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Waits until `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Accepts connections on `listener` and serves `app` on them within `limits`, until `stop`
/// turns true; then lets requests in flight finish (for up to 10 s).
pub(crate) async fn run(listener: TcpListener, app: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let cap = limits.max_connections;
    let slots = Arc::new(Semaphore::new(cap));
    let registry = Arc::new(Registry::new());
    let mut tasks = JoinSet::new();
    let mut warned: Option<Instant> = None;
    let mut warn_once_a_minute = |message: &str, error: Option<&io::Error>| {
        if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            warned = Some(Instant::now());
            match error {
                Some(e) => tracing::warn!(cap, error = %e, "{message}"),
                None => tracing::warn!(cap, "{message}"),
            }
        }
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or buffers (or a connection reset before it was taken):
                // wait a little rather than spin on the error.
                warn_once_a_minute("Cannot accept a connection; retrying.", Some(&e));
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    () = stopped(&mut stop) => break,
                }
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                warn_once_a_minute("The server is at its connection cap; idle connections make room.", None);
                match room(&slots, &registry, &mut stop).await {
                    Some(permit) => permit,
                    None => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (slot, registered) = registry.register();
        tasks.spawn(connection(stream, app.clone(), limits, slot, (permit, registered), stop.clone()));
    }
    drop(listener);
    let finished = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, finished).await.is_err() {
        tracing::warn!(open = tasks.len(), "Requests still running when the server stopped were cut off.");
    }
}

/// Frees a slot for a new connection: closes the idlest connection, or waits for a busy one
/// to finish; `None` when the server stops meanwhile.
async fn room(
    slots: &Arc<Semaphore>,
    registry: &Registry,
    stop: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    loop {
        registry.evict_idlest();
        tokio::select! {
            permit = slots.clone().acquire_owned() => return permit.ok(),
            () = tokio::time::sleep(ROOM_RETRY) => {}
            () = stopped(stop) => return None,
        }
    }
}

/// Serves one connection until it ends, it is evicted, or the server stops (then it finishes
/// the request in flight). `held` frees its slot when the task ends.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    slot: Arc<Slot>,
    held: (OwnedSemaphorePermit, Registered),
    mut stop: watch::Receiver<bool>,
) {
    let _held = held;
    let busy_slot = slot.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = Busy::new(busy_slot.clone());
        let mut app = app.clone();
        async move {
            let _busy = busy;
            let handled =
                tokio::time::timeout(limits.request_timeout, app.call(request.map(axum::body::Body::new))).await;
            Ok::<_, Infallible>(match handled {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => super::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the request took longer than {} s", limits.request_timeout.as_secs()),
                ),
            })
        }
    });
    let io = TokioIo::new(StallGuard::new(stream, limits.write_stall_timeout));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "Connection ended.");
                }
                return;
            }
            () = slot.close.notified() => {
                tracing::debug!("Idle connection closed to make room for a new one.");
                return;
            }
            () = stopped(&mut stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A socket whose writes fail with `TimedOut` once they have made no progress for `limit`:
/// a client that sends a request and never reads the answer does not hold its connection (and
/// the response's buffers) for ever.
struct StallGuard {
    inner: TcpStream,
    limit: Duration,
    /// Armed while writes are pending.
    stall: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl StallGuard {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        Self { inner, limit, stall: None, armed: false }
    }

    /// After a write that made no progress: `Ready` with the error once the stall is too long.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = tokio::time::Instant::now() + self.limit;
        let timer = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.stalled(cx).map(Err),
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::io::{Read, Write};

    #[test]
    fn the_soft_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             127431               127431               processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(soft_limit_in(text), Some(1024));
        assert_eq!(soft_limit_in("Max open files            unlimited            unlimited            files\n"), None);
        assert_eq!(soft_limit_in(""), None);
        assert!(open_file_soft_limit().is_some_and(|l| l > 0), "this process's own, on Linux");
    }

    #[test]
    fn the_cap_leaves_the_reserve_free() {
        // (configured, soft limit, cap): a reason each.
        let cases = [
            (512, Some(1024), 512, "the usual soft limit: 768 left after the reserve"),
            (512, Some(20_000), 512, "plenty of descriptors: the configured cap"),
            (2000, Some(1024), 768, "a cap above what the limit leaves is lowered"),
            (512, Some(256), 128, "a tiny limit: half of it is reserved"),
            (512, Some(1), 1, "always at least one"),
            (512, None, 512, "unknown limit: the configured cap"),
            (0, None, 1, "never zero"),
            (usize::MAX, Some(u64::MAX), usize::MAX - 256, "no overflow at the ends"),
        ];
        for (configured, soft, cap, why) in cases {
            assert_eq!(connection_cap(configured, soft), cap, "{why}");
        }
    }

    /// Short timeouts, so the tests take a second rather than ten.
    const SHORT: Duration = Duration::from_secs(1);

    /// A server with `cap` (and short timeouts) on a loopback port, stopped when the sender drops.
    async fn server(cap: usize) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/slow", get(|| async { tokio::time::sleep(Duration::from_millis(1500)).await }))
            .route("/stuck", get(|| async { tokio::time::sleep(Duration::from_secs(3600)).await }))
            .route("/big", get(|| async { "x".repeat(32 << 20) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let limits = Limits {
            max_connections: cap,
            header_read_timeout: SHORT,
            write_stall_timeout: SHORT,
            request_timeout: Duration::from_secs(2),
        };
        tokio::spawn(run(listener, app, limits, rx));
        (addr, tx)
    }

    /// A blocking HTTP/1.0 GET: the whole response.
    fn get_blocking(addr: std::net::SocketAddr, path: &str) -> io::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// Whether the server closed `s` (EOF or reset) within `within`, and how long it took.
    fn closed(s: &mut std::net::TcpStream, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        s.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 4096];
        loop {
            match s.read(&mut b) {
                Ok(0) => return Some(started.elapsed()),
                // hyper may answer 408 before it closes: read on.
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Some(started.elapsed()),
                Err(_) => return None,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_cap_the_idlest_connection_makes_room() {
        let (addr, _stop) = server(2).await;
        tokio::task::spawn_blocking(move || {
            // Two half-sent requests fill the server.
            let mut first = std::net::TcpStream::connect(addr).unwrap();
            first.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let mut second = std::net::TcpStream::connect(addr).unwrap();
            second.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            // A third is served at once, and the one idle longest (the first) was closed for it.
            let started = Instant::now();
            let answer = get_blocking(addr, "/healthz").unwrap();
            assert!(answer.starts_with("HTTP/1.0 200") && answer.ends_with("ok\n"), "{answer}");
            let took = started.elapsed();
            assert!(took < SHORT / 2, "served without waiting for a timeout: {took:?}");
            assert!(closed(&mut first, Duration::from_secs(5)).is_some(), "the idlest connection is closed");
            // The second still stands and can finish its request.
            second.write_all(b"Host: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut answer = String::new();
            second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            second.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_connection_is_never_closed_to_make_room() {
        let (addr, _stop) = server(1).await;
        tokio::task::spawn_blocking(move || {
            let slow = std::thread::spawn(move || get_blocking(addr, "/slow"));
            std::thread::sleep(Duration::from_millis(300));
            // The only slot is busy: the newcomer waits for it instead of cutting it off.
            let started = Instant::now();
            let answer = get_blocking(addr, "/healthz").unwrap();
            assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
            assert!(started.elapsed() >= Duration::from_millis(900), "it waited for the slow request");
            let slow = slow.join().unwrap().unwrap();
            assert!(slow.starts_with("HTTP/1.0 200"), "the slow request finished: {slow}");
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handler_gets_the_request_timeout_and_no_more() {
        let (addr, _stop) = server(4).await;
        let answer = tokio::task::spawn_blocking(move || get_blocking(addr, "/stuck")).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.0 503"), "{answer}");
        assert!(answer.contains(r#"{"error":"the request took longer than 2 s"}"#), "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_and_idle_keep_alive_connections_are_closed_after_the_header_read_timeout() {
        let (addr, _stop) = server(8).await;
        tokio::task::spawn_blocking(move || {
            // Half a request head, then silence.
            let mut silent = std::net::TcpStream::connect(addr).unwrap();
            silent.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
            let took = closed(&mut silent, Duration::from_secs(5)).expect("closed");
            assert!(took >= SHORT * 3 / 4 && took < SHORT * 4, "{took:?}");
            // One whole request on a keep-alive connection, then nothing.
            let mut kept = std::net::TcpStream::connect(addr).unwrap();
            kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut b = [0u8; 4096];
            kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let n = kept.read(&mut b).unwrap();
            assert!(b[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&b[..n]));
            let took = closed(&mut kept, Duration::from_secs(5)).expect("closed");
            assert!(took >= SHORT * 3 / 4 && took < SHORT * 4, "{took:?}");
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_does_not_read_is_cut_off() {
        let (addr, _stop) = server(8).await;
        tokio::task::spawn_blocking(move || {
            let mut greedy = std::net::TcpStream::connect(addr).unwrap();
            greedy.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            // Read nothing for longer than the stall limit, then drain: 32 MiB never all arrive.
            std::thread::sleep(SHORT * 5);
            let mut total = 0usize;
            let mut b = vec![0u8; 256 * 1024];
            greedy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            loop {
                match greedy.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                    Err(e) => panic!("the connection stayed open: {e}"),
                }
            }
            assert!(total < 32 << 20, "only what the socket buffers held was sent: {total} bytes");
        })
        .await
        .unwrap();
    }
}
