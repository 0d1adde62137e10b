//! An S3-compatible bucket as backup [`Storage`] (AWS S3, Backblaze B2, Cloudflare R2, MinIO,
//! Wasabi), through the `object_store` crate (SigV4 signing, multipart uploads, retries with
//! exponential backoff). Keys live under `s3://BUCKET/PREFIX/RUN/FILE`.
//!
//! A writer streams into a multipart upload in fixed-size parts (the same size for every part
//! but the last, as R2 requires), at most [`IN_FLIGHT`] parts at a time, so memory stays at a
//! few parts whatever the dump's size. Shutting the writer down uploads the last part but does
//! not complete the upload: [`Storage::commit`] does, so an object becomes visible only when
//! the run decides it is good, exactly as a directory's `KEY.partial` is renamed into place.
//! A writer dropped before its shutdown (a run interrupted by a signal, or a failure) aborts
//! its upload, as does [`Storage::delete`] of a key not committed, so no parts are left billed.
//! [`S3Store::settle`] waits for those aborts before the process exits. A failed part is
//! retried by `object_store` with backoff; a bucket that refuses (full, no rights, wrong key)
//! fails the item with the server's reason. Nothing here ever prints the secret key: errors
//! are passed through [`S3Store::scrub`].
//!
//! The lock is a file lock on this host (`flock`, released when the process dies), named
//! after the bucket and prefix: it keeps the daemon and the CLI of one host from writing to
//! the same place at once; two hosts sharing a prefix are not guarded.

use super::storage::{DirLock, Object, Storage, StorageError};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;
use tokio_util::task::TaskTracker;

/// Bytes per part: 8 MiB (S3 needs at least 5 MiB for every part but the last; 10,000
/// parts of 8 MiB hold 78 GiB, far more than a compressed dump of these stacks).
pub(crate) const PART: usize = 8 << 20;

/// Parts uploaded at once per object.
pub(crate) const IN_FLIGHT: usize = 2;

/// S3's limit on the parts of one upload.
const MAX_PARTS: usize = 10_000;

/// More objects than this under the prefix is not a backup store we wrote.
const MAX_LISTED: usize = 1_000_000;

/// Where the bucket is and how to sign for it, validated by the config.
#[derive(Clone)]
pub(crate) struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `https://…` of an S3-compatible service; `None` for AWS.
    pub endpoint: Option<String>,
    /// The region (`auto` for R2, `us-east-1` when unset).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key: never printed.
    pub secret_access_key: SecretString,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// An upload written and waiting for [`Storage::commit`].
#[derive(Debug)]
enum Pending {
    /// Smaller than one part: one `PutObject` at commit.
    Small(Bytes),
    /// Parts uploaded; `CompleteMultipartUpload` at commit.
    Multipart(Box<dyn MultipartUpload>),
}

/// A bucket (and prefix) holding backups.
#[derive(Clone)]
pub struct S3Store {
    config: Arc<S3Config>,
    store: Arc<dyn ObjectStore>,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("config", &self.config).finish_non_exhaustive()
    }
}

impl S3Store {
    /// The client for `config` (no request is made yet).
    pub(crate) fn new(config: S3Config) -> Result<Self, String> {
        // reqwest is built without a bundled TLS provider: the binary installs ring at start;
        // make sure of it here too (a no-op when one is installed), as building panics without.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: 6,
            retry_timeout: Duration::from_secs(180),
        };
        // No total timeout: a part or a download may take long on a slow link; a peer that
        // goes silent is cut by the read timeout instead.
        let client = object_store::ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(15))
            .with_read_timeout(Duration::from_secs(60))
            .with_pool_idle_timeout(Duration::from_secs(30))
            .with_allow_http(config.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose_secret())
            .with_virtual_hosted_style_request(!config.path_style)
            .with_retry(retry)
            .with_client_options(client);
        if let Some(e) = bucket_endpoint(&config)? {
            builder = builder.with_endpoint(e);
        }
        let config = Arc::new(config);
        let store = builder.build().map_err(|e| scrub(&config, &e.to_string()))?;
        Ok(Self { config, store: Arc::new(store), pending: Default::default(), tasks: TaskTracker::new() })
    }

    /// `s3://bucket/prefix`.
    pub(crate) fn url(&self) -> String {
        if self.config.prefix.is_empty() {
            format!("s3://{}", self.config.bucket)
        } else {
            format!("s3://{}/{}", self.config.bucket, self.config.prefix)
        }
    }

    fn path(&self, key: &str) -> Result<ObjectPath, StorageError> {
        let ok = key.split('/').count() == 2
            && key.split('/').all(|p| !p.is_empty() && p != "." && p != ".." && !p.starts_with('.'));
        if !ok {
            return Err(StorageError::BadKey(key.to_string()));
        }
        let full =
            if self.config.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.config.prefix) };
        ObjectPath::parse(&full).map_err(|_| StorageError::BadKey(key.to_string()))
    }

    fn error(&self, what: String, e: impl std::fmt::Display) -> StorageError {
        StorageError::Io {
            what: format!("{}: {what}", self.url()),
            source: io::Error::other(scrub(&self.config, &e.to_string())),
        }
    }

    /// Waits until every upload that was abandoned has been aborted (call before exiting).
    pub(crate) async fn settle(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
        let left: Vec<(String, Pending)> = match self.pending.lock() {
            Ok(mut p) => p.drain().collect(),
            Err(_) => Vec::new(),
        };
        for (key, pending) in left {
            if let Pending::Multipart(mut up) = pending
                && let Err(e) = up.abort().await
            {
                tracing::warn!(key = %key, error = %scrub(&self.config, &e.to_string()), "Cannot abort an upload.");
            }
        }
    }

    /// Aborts and forgets every upload not committed yet.
    async fn abort_pending(&self, key: &str) {
        let taken = self.pending.lock().ok().and_then(|mut p| p.remove(key));
        if let Some(Pending::Multipart(mut up)) = taken
            && let Err(e) = up.abort().await
        {
            tracing::warn!(key = %key, error = %scrub(&self.config, &e.to_string()), "Cannot abort an upload.");
        }
    }
}

/// The base URL `object_store` is given for a service other than AWS: the endpoint itself
/// for path-style requests (it appends the bucket), or the bucket's own host name
/// (`https://BUCKET.ENDPOINT-HOST`) for virtual-hosted ones, which it takes as is.
fn bucket_endpoint(config: &S3Config) -> Result<Option<String>, String> {
    let Some(endpoint) = &config.endpoint else { return Ok(None) };
    if config.path_style {
        return Ok(Some(endpoint.clone()));
    }
    let mut url = url::Url::parse(endpoint).map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
    if !matches!(url.host(), Some(url::Host::Domain(_))) {
        return Err(format!(
            "endpoint `{endpoint}` is an IP address, which cannot carry the bucket's name: set `path_style: true`"
        ));
    }
    let host = url.host_str().ok_or_else(|| format!("endpoint `{endpoint}` has no host"))?.to_string();
    url.set_host(Some(&format!("{}.{host}", config.bucket))).map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
    Ok(Some(url.as_str().trim_end_matches('/').to_string()))
}

/// Removes the secret key (and anything after `Signature=`/`Credential=`) from a message.
pub(crate) fn scrub(config: &S3Config, text: &str) -> String {
    let secret = config.secret_access_key.expose_secret();
    let mut out = if secret.len() >= 4 { text.replace(secret, "[secret]") } else { text.to_string() };
    for marker in ["X-Amz-Signature=", "Signature="] {
        while let Some(at) = out.find(marker) {
            let start = at + marker.len();
            let end =
                out[start..].find(|c: char| c == ',' || c == '&' || c.is_whitespace()).map_or(out.len(), |e| start + e);
            out.replace_range(at..end, "[signature]");
        }
    }
    out
}

/// What the writer hands the upload task.
enum Msg {
    /// One full part (or the short last one).
    Part(Bytes),
    /// The end: upload what is left and wait for commit.
    Finish,
}

/// A stream into a multipart upload (see the module's documentation).
pub struct S3Writer {
    buf: Vec<u8>,
    tx: PollSender<Msg>,
    finish_sent: bool,
    done: Option<tokio::task::JoinHandle<Result<(), String>>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl S3Writer {
    fn broken(&self) -> io::Error {
        let why = self.failed.lock().ok().and_then(|f| f.clone());
        io::Error::other(why.unwrap_or_else(|| "the upload stopped".into()))
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, msg: impl FnOnce(&mut Self) -> Msg) -> Poll<io::Result<()>> {
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(self.broken()));
        }
        let m = msg(self);
        if self.tx.send_item(m).is_err() {
            return Poll::Ready(Err(self.broken()));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for S3Writer {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.buf.len() >= PART {
            ready!(
                this.poll_send(cx, |w| Msg::Part(Bytes::from(std::mem::replace(&mut w.buf, Vec::with_capacity(PART)))))
            )?;
        }
        let n = data.len().min(PART - this.buf.len());
        this.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.buf.is_empty() {
            ready!(this.poll_send(cx, |w| Msg::Part(Bytes::from(std::mem::take(&mut w.buf)))))?;
        }
        if !this.finish_sent {
            ready!(this.poll_send(cx, |_| Msg::Finish))?;
            this.finish_sent = true;
        }
        let Some(done) = this.done.as_mut() else { return Poll::Ready(Ok(())) };
        let result = ready!(Pin::new(done).poll(cx));
        this.done = None;
        match result {
            Ok(Ok(())) => Poll::Ready(Ok(())),
            Ok(Err(e)) => Poll::Ready(Err(io::Error::other(e))),
            Err(e) => Poll::Ready(Err(io::Error::other(format!("the upload task failed: {e}")))),
        }
    }
}

use std::future::Future;

/// The upload of one object: parts in, at most [`IN_FLIGHT`] at a time; at the end the
/// upload is parked in `pending` for commit. Aborts on any failure or when the writer goes
/// away without finishing.
async fn upload(
    store: Arc<dyn ObjectStore>,
    config: Arc<S3Config>,
    path: ObjectPath,
    key: String,
    mut rx: mpsc::Receiver<Msg>,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
) -> Result<(), String> {
    let mut first: Option<Bytes> = None;
    let mut up: Option<Box<dyn MultipartUpload>> = None;
    let mut parts = 0usize;
    let mut flying = FuturesUnordered::new();
    let outcome: Result<Option<Pending>, String> = async {
        loop {
            let msg = tokio::select! {
                m = rx.recv() => m,
                Some(r) = flying.next(), if !flying.is_empty() => {
                    let r: object_store::Result<()> = r;
                    r.map_err(|e| format!("cannot upload a part of {key}: {e}"))?;
                    continue;
                }
            };
            match msg {
                None => return Ok(None), // the writer was dropped: interrupted
                Some(Msg::Part(bytes)) => {
                    if up.is_none() && first.is_none() {
                        first = Some(bytes);
                        continue;
                    }
                    if up.is_none() {
                        up = Some(
                            store
                                .put_multipart(&path)
                                .await
                                .map_err(|e| format!("cannot start uploading {key}: {e}"))?,
                        );
                    }
                    let Some(u) = up.as_mut() else { return Err("internal: no upload".into()) };
                    for b in first.take().into_iter().chain([bytes]) {
                        while flying.len() >= IN_FLIGHT {
                            if let Some(r) = flying.next().await {
                                let r: object_store::Result<()> = r;
                                r.map_err(|e| format!("cannot upload a part of {key}: {e}"))?;
                            }
                        }
                        parts += 1;
                        if parts > MAX_PARTS {
                            return Err(format!(
                                "{key} is larger than {MAX_PARTS} parts of {} MiB, the most S3 takes",
                                PART >> 20
                            ));
                        }
                        flying.push(u.put_part(PutPayload::from(b)));
                    }
                }
                Some(Msg::Finish) => {
                    while let Some(r) = flying.next().await {
                        let r: object_store::Result<()> = r;
                        r.map_err(|e| format!("cannot upload a part of {key}: {e}"))?;
                    }
                    return Ok(Some(match up.take() {
                        Some(u) => Pending::Multipart(u),
                        None => Pending::Small(first.take().unwrap_or_default()),
                    }));
                }
            }
        }
    }
    .await;
    drop(flying);
    match outcome {
        Ok(Some(p)) => {
            if let Ok(mut map) = pending.lock() {
                map.insert(key, p);
            }
            Ok(())
        }
        Ok(None) => {
            if let Some(mut u) = up {
                let aborted = u.abort().await;
                tracing::info!(key = %key, aborted = aborted.is_ok(), "Interrupted upload aborted.");
            }
            Err(format!("the upload of {key} was interrupted"))
        }
        Err(e) => {
            if let Some(mut u) = up {
                let _ = u.abort().await;
            }
            Err(scrub(&config, &e))
        }
    }
}

/// A stored object, streamed.
pub type S3Reader = tokio_util::io::StreamReader<futures::stream::BoxStream<'static, io::Result<Bytes>>, Bytes>;

impl Storage for S3Store {
    type Writer = S3Writer;
    type Reader = S3Reader;
    type Lock = DirLock;

    fn describe(&self) -> String {
        self.url()
    }

    async fn lock(&self) -> Result<DirLock, StorageError> {
        use sha2::Digest;
        let id = format!("{:?}\n{}\n{}", self.config.endpoint, self.config.bucket, self.config.prefix);
        let hash = hex::encode(&sha2::Sha256::digest(id.as_bytes())[..8]);
        let dir = std::env::temp_dir().join("mxwarden-locks");
        super::storage::flock(&dir, &dir.join(format!("s3-{hash}.lock")), &self.url()).await
    }

    async fn create(&self, key: &str) -> Result<S3Writer, StorageError> {
        let path = self.path(key)?;
        self.abort_pending(key).await;
        let (tx, rx) = mpsc::channel(1);
        let failed = Arc::new(Mutex::new(None));
        let (store, config, pending, key2, failed2) =
            (self.store.clone(), self.config.clone(), self.pending.clone(), key.to_string(), failed.clone());
        let done = self.tasks.spawn(async move {
            let r = upload(store, config, path, key2, rx, pending).await;
            if let Err(e) = &r
                && let Ok(mut f) = failed2.lock()
            {
                *f = Some(e.clone());
            }
            r
        });
        Ok(S3Writer {
            buf: Vec::with_capacity(PART),
            tx: PollSender::new(tx),
            finish_sent: false,
            done: Some(done),
            failed,
        })
    }

    async fn commit(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let taken = self.pending.lock().ok().and_then(|mut p| p.remove(key));
        match taken {
            None => Err(self.error(format!("cannot commit {key}"), "nothing was written")),
            Some(Pending::Small(bytes)) => {
                self.store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(|e| self.error(format!("cannot store {key}"), e))?;
                Ok(())
            }
            Some(Pending::Multipart(mut up)) => match up.complete().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let _ = up.abort().await;
                    Err(self.error(format!("cannot complete {key}"), e))
                }
            },
        }
    }

    async fn open(&self, key: &str) -> Result<S3Reader, StorageError> {
        let path = self.path(key)?;
        let got = self.store.get(&path).await.map_err(|e| self.error(format!("cannot open {key}"), e))?;
        let config = self.config.clone();
        let stream =
            got.into_stream().map(move |r| r.map_err(|e| io::Error::other(scrub(&config, &e.to_string())))).boxed();
        Ok(tokio_util::io::StreamReader::new(stream))
    }

    async fn list(&self) -> Result<Vec<Object>, StorageError> {
        let prefix = (!self.config.prefix.is_empty()).then(|| ObjectPath::from(self.config.prefix.as_str()));
        let mut listing = self.store.list(prefix.as_ref());
        let mut objects = Vec::new();
        let skip = if self.config.prefix.is_empty() { 0 } else { self.config.prefix.len() + 1 };
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.error("cannot list".into(), e))?;
            let full = meta.location.as_ref();
            let Some(key) = full.get(skip..) else { continue };
            if key.split('/').count() != 2 || key.split('/').any(|p| p.is_empty() || p.starts_with('.')) {
                continue; // not ours
            }
            objects.push(Object {
                key: key.to_string(),
                size: meta.size,
                partial: false,
                modified: meta.last_modified.timestamp(),
            });
            if objects.len() > MAX_LISTED {
                return Err(
                    self.error("cannot list".into(), format!("more than {MAX_LISTED} objects under the prefix"))
                );
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        self.abort_pending(key).await;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(format!("cannot delete {key}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: &str) -> S3Config {
        S3Config {
            bucket: "b".into(),
            prefix: "p".into(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: "AKID".into(),
            secret_access_key: SecretString::from(secret.to_string()),
            path_style: true,
        }
    }

    #[test]
    fn messages_lose_the_secret_and_signatures() {
        let c = config("wJalrXUtnFEMI/K7MDENG");
        let cases = [
            ("bad key wJalrXUtnFEMI/K7MDENG here", "bad key [secret] here", "the secret itself"),
            (
                "Authorization: AWS4 Credential=AKID/x, Signature=abcdef0123 end",
                "Authorization: AWS4 Credential=AKID/x, [signature] end",
                "a header",
            ),
            ("https://h/k?X-Amz-Signature=ff00&x=1", "https://h/k?[signature]&x=1", "a presigned URL"),
        ];
        for (input, want, why) in cases {
            assert_eq!(scrub(&c, input), want, "{why}");
        }
        assert!(!format!("{c:?}").contains("wJalr"), "Debug hides the secret");
    }

    #[test]
    fn the_bucket_goes_into_the_host_name_unless_path_style() {
        let with = |endpoint: Option<&str>, path_style: bool| {
            bucket_endpoint(&S3Config { endpoint: endpoint.map(str::to_string), path_style, ..config("secret-1234") })
                .unwrap()
        };
        let b2 = "https://s3.eu-central-003.backblazeb2.com";
        assert_eq!(with(Some(b2), false).as_deref(), Some("https://b.s3.eu-central-003.backblazeb2.com"), "B2");
        assert_eq!(with(Some(b2), true).as_deref(), Some(b2), "path style: object_store appends the bucket");
        assert_eq!(with(Some("http://127.0.0.1:9000"), true).as_deref(), Some("http://127.0.0.1:9000"), "MinIO");
        assert_eq!(with(None, false), None, "AWS: object_store builds it from the region");
        let ip = bucket_endpoint(&S3Config {
            endpoint: Some("http://127.0.0.1:9000".into()),
            path_style: false,
            ..config("secret-1234")
        });
        assert!(ip.is_err_and(|e| e.contains("path_style: true")), "an IP cannot be virtual-hosted");
    }

    #[test]
    fn keys_stay_under_the_prefix() {
        let store = S3Store::new(config("secret-key-1234")).unwrap();
        assert_eq!(store.path("run1/a.bin").unwrap().as_ref(), "p/run1/a.bin");
        for bad in ["../x/y", "a/../b", "x", "a/b/c", ".lock/x", "a/.hidden"] {
            assert!(matches!(store.path(bad), Err(StorageError::BadKey(_))), "{bad}");
        }
        assert_eq!(store.url(), "s3://b/p");
    }
}
