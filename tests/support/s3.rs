//! A real S3-compatible server on 127.0.0.1: `s3s-fs` (the `s3s` project's file-system
//! backed server, `cargo install s3s-fs --features binary`, installed by
//! `scripts/install-test-deps.sh`), under guard.py like the other services. Buckets are
//! directories of its root; objects are files under them, so a test can damage one; an
//! unfinished multipart upload is a `.upload-UUID.json` (and `.upload_id-UUID.part-N` files)
//! in the root.

use super::services::{Service, free_port, port_open, scratch_dir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A running `s3s-fs` with one access key.
pub struct S3Server {
    /// Its data directory: one sub-directory per bucket.
    pub root: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The access key id it accepts.
    pub access_key: String,
    /// The secret key it accepts.
    pub secret_key: String,
    /// The server under guard.py.
    pub service: Service,
}

/// The `s3s-fs` binary: on `PATH`, or in cargo's bin directory.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("s3s-fs")).find(|c| c.is_file()));
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin/s3s-fs"));
    on_path.or(home.filter(|p| p.is_file())).unwrap_or_else(|| {
        panic!("s3s-fs is not installed: run scripts/install-test-deps.sh (cargo install s3s-fs --features binary)")
    })
}

impl S3Server {
    /// Starts a server with bucket `bucket` (an empty directory), ready when its port answers.
    pub fn start(bucket: &str) -> Self {
        let dir = scratch_dir("s3");
        let root = dir.join("data");
        std::fs::create_dir_all(root.join(bucket)).expect("create the bucket directory");
        let port = free_port();
        let access_key = "MXWTESTACCESSKEY".to_string();
        let secret_key = format!("test-secret-{}-{port}", std::process::id());
        let mut cmd = Command::new(binary());
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(&root);
        let service = Service::spawn("s3s-fs", dir.join("s3s-fs.log"), "TERM", &cmd);
        service.wait_until(Duration::from_secs(30), || port_open(port));
        Self { root, port, access_key, secret_key, service }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The file holding `key` of `bucket`.
    pub fn object(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// Multipart uploads started and neither completed nor aborted (their files in the root).
    pub fn unfinished_uploads(&self) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".upload-") || n.starts_with(".upload_id-"))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }

    /// Parts uploaded so far, of any upload.
    pub fn parts(&self) -> usize {
        std::fs::read_dir(&self.root)
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".upload_id-")).count())
            .unwrap_or(0)
    }

    /// Every object file under `bucket/prefix`, relative to it.
    pub fn objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else if let Ok(rel) = p.strip_prefix(base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        let base = self.root.join(bucket).join(prefix);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}

/// What an [`S3Proxy`] does to the requests it sees.
#[derive(Debug, Clone, Default)]
pub struct ProxyFaults {
    /// Requests whose request line contains this are cut off mid-body (the connection is
    /// dropped after half the body reached the server), `cut` times.
    pub cut_target: Option<String>,
    /// How many more requests to cut.
    pub cut: usize,
    /// Answer every `PUT` and `POST` with this S3 error (status, code, message) instead of
    /// forwarding: a full or refusing bucket. Reads still reach the server.
    pub refuse_writes: Option<(u16, String, String)>,
}

/// A TCP proxy in front of an [`S3Server`] that reads each request's head and body, and
/// either forwards it (one upstream connection per request, `Connection: close`, so the
/// answer is piped back as it comes), cuts it off, or refuses it. Signatures stay valid: the
/// request's `Host` header is forwarded untouched and only the unsigned `Connection` header
/// is changed.
pub struct S3Proxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The faults still to inject.
    pub faults: std::sync::Arc<std::sync::Mutex<ProxyFaults>>,
    /// Requests cut off so far.
    pub cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Requests refused so far.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl S3Server {
    /// Starts an [`S3Proxy`] to this server.
    pub fn proxy(&self, faults: ProxyFaults) -> S3Proxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = format!("127.0.0.1:{}", self.port);
        let faults = std::sync::Arc::new(std::sync::Mutex::new(faults));
        let cuts = std::sync::Arc::new(AtomicUsize::new(0));
        let refused = std::sync::Arc::new(AtomicUsize::new(0));
        let rt = super::fakes::runtime();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (f, c, r) = (faults.clone(), cuts.clone(), refused.clone());
        rt.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstream, f, c, r) = (upstream.clone(), f.clone(), c.clone(), r.clone());
                tokio::spawn(async move {
                    loop {
                        // The request head.
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            match client.read(&mut byte).await {
                                Ok(1) => head.push(byte[0]),
                                _ => return,
                            }
                            if head.len() > 64 * 1024 {
                                return;
                            }
                        }
                        let text = String::from_utf8_lossy(&head).into_owned();
                        let line = text.lines().next().unwrap_or_default().to_string();
                        let length: usize = text
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        let mut body = vec![0u8; length];
                        if client.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let (cut, refuse) = {
                            let mut faults = f.lock().unwrap();
                            let cut = faults.cut > 0
                                && faults.cut_target.as_deref().is_some_and(|t| line.contains(t));
                            if cut {
                                faults.cut -= 1;
                            }
                            let write = line.starts_with("PUT ") || line.starts_with("POST ");
                            (cut, faults.refuse_writes.clone().filter(|_| write))
                        };
                        if let Some((status, code, message)) = refuse {
                            r.fetch_add(1, Ordering::SeqCst);
                            let xml = format!(
                                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
                            );
                            let answer = format!(
                                "HTTP/1.1 {status} Refused\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{xml}",
                                xml.len()
                            );
                            if client.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                        let mut rewritten: Vec<String> = text
                            .split("\r\n")
                            .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
                            .map(str::to_string)
                            .collect();
                        rewritten.push("connection: close".into());
                        let head = format!("{}\r\n\r\n", rewritten.join("\r\n"));
                        if server.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        if cut {
                            c.fetch_add(1, Ordering::SeqCst);
                            let _ = server.write_all(&body[..body.len() / 2]).await;
                            return; // both connections dropped mid-request
                        }
                        if server.write_all(&body).await.is_err() {
                            return;
                        }
                        // The answer's head, marked `connection: close` for the client too,
                        // then the rest until the server closes (it was told to).
                        let mut answer = Vec::new();
                        while !answer.ends_with(b"\r\n\r\n") {
                            match server.read(&mut byte).await {
                                Ok(1) => answer.push(byte[0]),
                                _ => return,
                            }
                        }
                        let answer = String::from_utf8_lossy(&answer).into_owned();
                        let mut lines: Vec<&str> = answer
                            .split("\r\n")
                            .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
                            .collect();
                        lines.push("connection: close");
                        if client.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes()).await.is_err() {
                            return;
                        }
                        let _ = tokio::io::copy(&mut server, &mut client).await;
                        let _ = client.shutdown().await;
                        return;
                    }
                });
            }
        });
        S3Proxy { endpoint: format!("http://{addr}"), faults, cuts, refused }
    }
}
