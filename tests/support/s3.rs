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
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).map(|d| d.join("s3s-fs")).find(|c| c.is_file())
    });
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
