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
//! [`S3Store::settle`] waits for those aborts before the process exits. A process that cannot
//! clean up (`kill -9`, the OOM killer, a power cut) leaves its upload behind, and S3 lists
//! no uploads cheaply: so each upload is recorded in a journal on this host (`s3_journal`,
//! beside the state store) before its first part is sent and forgotten when it is completed
//! or aborted, and whoever takes the bucket's lock next (a run, `prune --apply`, the drill,
//! the daemon at start) aborts every upload the journal still records. A failed part is
//! retried by `object_store` with backoff; a bucket that refuses (full, no rights, wrong key)
//! fails the item with the server's reason. Nothing here ever prints the secret key: errors
//! are passed through [`S3Store::scrub`].
//!
//! The lock is a file lock on this host (`flock`, released when the process dies), named
//! after the bucket and prefix: it keeps the daemon and the CLI of one host from writing to
//! the same place at once; two hosts sharing a prefix are not guarded.

use super::s3_journal::{Entry, Journal, JournalError};
use super::storage::{DirLock, Object, Storage, StorageError};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{MultipartId, ObjectStore, ObjectStoreExt, PutPayload};
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
    Multipart {
        /// The object.
        path: ObjectPath,
        /// The upload.
        id: MultipartId,
        /// Its parts, in order.
        parts: Vec<PartId>,
    },
}

/// A bucket (and prefix) holding backups.
#[derive(Clone)]
pub struct S3Store {
    config: Arc<S3Config>,
    store: Arc<AmazonS3>,
    journal: Arc<Journal>,
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
        let journal = Journal::new(lock_dir().join(format!("s3-{}.uploads.json", hash(&config))));
        Ok(Self {
            config,
            store: Arc::new(store),
            journal: Arc::new(journal),
            pending: Default::default(),
            tasks: TaskTracker::new(),
        })
    }

    /// Keeps the journal of uploads in flight in `dir` (the config puts it beside the state
    /// store, which outlives a reboot; the default is beside the lock, in the temp dir).
    pub(crate) fn with_journal_dir(mut self, dir: &std::path::Path) -> Self {
        self.journal = Arc::new(Journal::new(dir.join(format!("s3-{}.json", hash(&self.config)))));
        self
    }

    /// What a journal entry names this bucket by: the endpoint and `s3://bucket/prefix`.
    fn identity(&self) -> String {
        identity(&self.config)
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
        for (_, pending) in left {
            if let Pending::Multipart { path, id, .. } = pending {
                abort(&self.store, &self.config, &self.journal, &path, &id).await;
            }
        }
    }

    /// Aborts and forgets every upload not committed yet.
    async fn abort_pending(&self, key: &str) {
        let taken = self.pending.lock().ok().and_then(|mut p| p.remove(key));
        if let Some(Pending::Multipart { path, id, .. }) = taken {
            abort(&self.store, &self.config, &self.journal, &path, &id).await;
        }
    }

    /// Aborts the uploads the journal still records — left by a process that died
    /// mid-upload — and clears their entries. Call with the bucket's lock held, so that no
    /// live upload of another process is touched. An upload that cannot be aborted is a
    /// warning and stays recorded for the next time.
    pub(crate) async fn abort_orphans(&self) {
        let j = self.journal.clone();
        let loaded = match blocking(move || j.load()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the journal of unfinished uploads.");
                return;
            }
        };
        if let Some(why) = &loaded.corrupt {
            tracing::warn!(
                journal = %self.journal.path().display(), problem = %why,
                "The journal of unfinished uploads is unreadable and is replaced; uploads it recorded are left to the bucket's lifecycle rule."
            );
        }
        if loaded.entries.is_empty() && loaded.corrupt.is_none() {
            return;
        }
        let (me, mut keep) = (self.identity(), Vec::new());
        let under = if self.config.prefix.is_empty() { String::new() } else { format!("{}/", self.config.prefix) };
        for entry in loaded.entries {
            if entry.store != me {
                keep.push(entry); // another bucket's (the file name's hash collided)
                continue;
            }
            let Some(path) = ObjectPath::parse(&entry.path).ok().filter(|_| entry.path.starts_with(&under)) else {
                tracing::warn!(object = %entry.path, "A journal entry outside the prefix is dropped.");
                continue;
            };
            match self.store.abort_multipart(&path, &entry.upload_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => tracing::info!(
                    bucket = %self.url(), object = %entry.path, upload_id = %entry.upload_id,
                    "Aborted an upload an earlier run left unfinished."
                ),
                Err(e) => {
                    tracing::warn!(
                        bucket = %self.url(), object = %entry.path, upload_id = %entry.upload_id,
                        error = %scrub(&self.config, &e.to_string()),
                        "Cannot abort an upload an earlier run left unfinished; trying again next time."
                    );
                    keep.push(entry);
                }
            }
        }
        let j = self.journal.clone();
        if let Err(e) = blocking(move || j.replace(keep)).await {
            tracing::warn!(error = %e, "Cannot update the journal of unfinished uploads.");
        }
    }

    /// [`Self::abort_orphans`] unless another run holds the bucket's lock (then it is that
    /// run's to do): at the daemon's start and before a drill.
    pub(crate) async fn abort_orphans_if_idle(&self) {
        match Storage::lock(self).await {
            Ok(_held) => {}
            Err(StorageError::Busy(_)) => {
                tracing::debug!(bucket = %self.url(), "A run holds the bucket; its unfinished uploads are its own.")
            }
            Err(e) => tracing::warn!(error = %e, "Cannot take the bucket's lock to abort unfinished uploads."),
        }
    }
}

/// Where the locks (and the default journal) live.
fn lock_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("mxwarden-locks")
}

/// A short hash naming the bucket and prefix in file names.
fn hash(config: &S3Config) -> String {
    use sha2::Digest;
    let id = format!("{:?}\n{}\n{}", config.endpoint, config.bucket, config.prefix);
    hex::encode(&sha2::Sha256::digest(id.as_bytes())[..8])
}

/// See [`S3Store::identity`].
fn identity(config: &S3Config) -> String {
    let at = config.endpoint.clone().unwrap_or_else(|| format!("aws:{}", config.region));
    if config.prefix.is_empty() {
        format!("{at} s3://{}", config.bucket)
    } else {
        format!("{at} s3://{}/{}", config.bucket, config.prefix)
    }
}

/// Runs a journal operation on a blocking thread (it syncs the file).
async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, JournalError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(op).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the journal task failed: {e}")),
    }
}

/// Aborts the upload `id` of `path` and forgets it in the journal; a failure is a warning
/// and the entry stays for the next run to abort.
async fn abort(
    store: &AmazonS3,
    config: &S3Config,
    journal: &Arc<Journal>,
    path: &ObjectPath,
    id: &MultipartId,
) -> bool {
    match store.abort_multipart(path, id).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {
            forget(journal, id).await;
            true
        }
        Err(e) => {
            tracing::warn!(object = %path, error = %scrub(config, &e.to_string()), "Cannot abort an upload; the next run will try again.");
            false
        }
    }
}

/// Removes the upload `id` from the journal (completed or aborted).
async fn forget(journal: &Arc<Journal>, id: &MultipartId) {
    let (j, id) = (journal.clone(), id.clone());
    if let Err(e) = blocking(move || j.remove(&id)).await {
        tracing::warn!(error = %e, "Cannot update the journal of unfinished uploads.");
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
/// upload is parked in `pending` for commit. The upload is recorded in the journal before its
/// first part is sent. Aborts on any failure or when the writer goes away without finishing.
async fn upload(
    store: Arc<AmazonS3>,
    config: Arc<S3Config>,
    journal: Arc<Journal>,
    path: ObjectPath,
    key: String,
    mut rx: mpsc::Receiver<Msg>,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
) -> Result<(), String> {
    let mut first: Option<Bytes> = None;
    let mut id: Option<MultipartId> = None;
    let mut parts: Vec<Option<PartId>> = Vec::new();
    let mut flying = FuturesUnordered::new();
    let part_done = |r: (usize, object_store::Result<PartId>), parts: &mut Vec<Option<PartId>>| {
        let (idx, r) = r;
        let part = r.map_err(|e| format!("cannot upload a part of {key}: {e}"))?;
        if let Some(slot) = parts.get_mut(idx) {
            *slot = Some(part);
        }
        Ok::<(), String>(())
    };
    let outcome: Result<Option<Pending>, String> = async {
        loop {
            let msg = tokio::select! {
                m = rx.recv() => m,
                Some(r) = flying.next(), if !flying.is_empty() => {
                    part_done(r, &mut parts)?;
                    continue;
                }
            };
            match msg {
                None => return Ok(None), // the writer was dropped: interrupted
                Some(Msg::Part(bytes)) => {
                    if id.is_none() && first.is_none() {
                        first = Some(bytes);
                        continue;
                    }
                    if id.is_none() {
                        let started =
                            store.create_multipart(&path).await.map_err(|e| format!("cannot start uploading {key}: {e}"))?;
                        // Recorded before the first part is sent, so a process killed from
                        // now on leaves an entry for the next run to abort.
                        let entry =
                            Entry { store: identity(&config), path: path.to_string(), upload_id: started.clone() };
                        let j = journal.clone();
                        if let Err(e) = blocking(move || j.add(entry)).await {
                            tracing::warn!(
                                key = %key, error = %e,
                                "Cannot record the upload in the journal: if this process is killed, the bucket's lifecycle rule must remove it."
                            );
                        }
                        id = Some(started);
                    }
                    let Some(upload_id) = id.clone() else { return Err("internal: no upload".into()) };
                    for b in first.take().into_iter().chain([bytes]) {
                        while flying.len() >= IN_FLIGHT {
                            if let Some(r) = flying.next().await {
                                part_done(r, &mut parts)?;
                            }
                        }
                        let idx = parts.len();
                        if idx >= MAX_PARTS {
                            return Err(format!(
                                "{key} is larger than {MAX_PARTS} parts of {} MiB, the most S3 takes",
                                PART >> 20
                            ));
                        }
                        parts.push(None);
                        let (store, path, upload_id) = (store.clone(), path.clone(), upload_id.clone());
                        flying.push(async move {
                            (idx, store.put_part(&path, &upload_id, idx, PutPayload::from(b)).await)
                        });
                    }
                }
                Some(Msg::Finish) => {
                    while let Some(r) = flying.next().await {
                        part_done(r, &mut parts)?;
                    }
                    return Ok(Some(match id.take() {
                        Some(upload_id) => Pending::Multipart {
                            path: path.clone(),
                            id: upload_id,
                            parts: parts.drain(..).collect::<Option<Vec<_>>>().ok_or("internal: a part is missing")?,
                        },
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
            if let Some(upload_id) = id {
                let aborted = abort(&store, &config, &journal, &path, &upload_id).await;
                tracing::info!(key = %key, aborted, "Interrupted upload aborted.");
            }
            Err(format!("the upload of {key} was interrupted"))
        }
        Err(e) => {
            if let Some(upload_id) = id {
                abort(&store, &config, &journal, &path, &upload_id).await;
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

    /// Takes the host's lock on the bucket and prefix, then aborts the uploads an earlier
    /// process left unfinished (see [`S3Store::abort_orphans`]).
    async fn lock(&self) -> Result<DirLock, StorageError> {
        let dir = lock_dir();
        let held =
            super::storage::flock(&dir, &dir.join(format!("s3-{}.lock", hash(&self.config))), &self.url()).await?;
        self.abort_orphans().await;
        Ok(held)
    }

    async fn create(&self, key: &str) -> Result<S3Writer, StorageError> {
        let path = self.path(key)?;
        self.abort_pending(key).await;
        let (tx, rx) = mpsc::channel(1);
        let failed = Arc::new(Mutex::new(None));
        let (store, config, journal, pending, key2, failed2) = (
            self.store.clone(),
            self.config.clone(),
            self.journal.clone(),
            self.pending.clone(),
            key.to_string(),
            failed.clone(),
        );
        let done = self.tasks.spawn(async move {
            let r = upload(store, config, journal, path, key2, rx, pending).await;
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
            Some(Pending::Multipart { path, id, parts }) => {
                match self.store.complete_multipart(&path, &id, parts).await {
                    Ok(_) => {
                        forget(&self.journal, &id).await;
                        Ok(())
                    }
                    Err(e) => {
                        abort(&self.store, &self.config, &self.journal, &path, &id).await;
                        Err(self.error(format!("cannot complete {key}"), e))
                    }
                }
            }
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
