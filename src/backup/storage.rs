//! Where backups are kept, behind a small object-store-shaped trait: keys (`RUN/FILE`) are
//! written as streams and become visible only when committed, read as streams, listed and
//! deleted. [`LocalDir`] is a directory: writes go to `KEY.partial`, a commit fsyncs the file,
//! renames it into place and fsyncs the directory, so a crash never leaves a file that looks
//! complete. An S3-compatible store maps the same calls onto multipart uploads (commit =
//! complete), `GetObject`, `ListObjectsV2` and `DeleteObject`. Local files are created 0600
//! and directories 0700 (`crate::private_fs`): a backup is nobody else's business, encrypted
//! or not.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncWrite};

/// A storage problem, with the key or path it concerns.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    /// An I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
    /// Another process holds the lock.
    #[error("another backup or prune is running on {0} (it holds the lock)")]
    Busy(String),
    /// A key that is not a plain `RUN/FILE` name.
    #[error("`{0}` is not a valid backup file name")]
    BadKey(String),
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    /// `RUN/FILE`.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Not committed (a run still writing, or one that was killed).
    pub partial: bool,
    /// Last modification, seconds since the epoch.
    pub modified: i64,
}

/// Parsed small objects (manifests, drill reports) by key, valid while the object's size and
/// modification time are unchanged: the daemon reads the runs every interval, and a bucket
/// bills every `GET`.
#[derive(Debug)]
pub(crate) struct ObjectCache<T> {
    entries: std::sync::Mutex<std::collections::HashMap<String, (u64, i64, T)>>,
}

impl<T> Default for ObjectCache<T> {
    fn default() -> Self {
        Self { entries: Default::default() }
    }
}

impl<T: Clone> ObjectCache<T> {
    /// The cached value of `o`, if it has not changed since.
    pub(crate) fn get(&self, o: &Object) -> Option<T> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&o.key)
            .filter(|(size, modified, _)| *size == o.size && *modified == o.modified)
            .map(|e| e.2.clone())
    }

    /// Remembers `value` for `o`.
    pub(crate) fn put(&self, o: &Object, value: T) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(o.key.clone(), (o.size, o.modified, value));
        }
    }

    /// Forgets every key not in `objects`.
    pub(crate) fn keep_only(&self, objects: &[Object]) {
        if let Ok(mut entries) = self.entries.lock() {
            let keys: std::collections::HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
            entries.retain(|k, _| keys.contains(k.as_str()));
        }
    }
}

/// A place to keep backup files.
pub(crate) trait Storage: Send + Sync {
    /// A stream being written; visible only after [`Storage::commit`].
    type Writer: AsyncWrite + Unpin + Send + 'static;
    /// A stream being read.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// Held while a run or a prune works; released on drop (also when the process dies).
    type Lock: Send;

    /// For messages: the directory or bucket.
    fn describe(&self) -> String;
    /// Takes the lock, or says who has it.
    fn lock(&self) -> impl Future<Output = Result<Self::Lock, StorageError>> + Send;
    /// Starts writing `key`.
    fn create(&self, key: &str) -> impl Future<Output = Result<Self::Writer, StorageError>> + Send;
    /// Makes `key` visible, durably; call after the writer was shut down.
    fn commit(&self, key: &str) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Opens `key` for reading.
    fn open(&self, key: &str) -> impl Future<Output = Result<Self::Reader, StorageError>> + Send;
    /// Every object, committed or not.
    fn list(&self) -> impl Future<Output = Result<Vec<Object>, StorageError>> + Send;
    /// Deletes `key` (committed or partial); a missing key is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// A local directory: `DIR/RUN/FILE`.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

/// The suffix of uncommitted files.
const PARTIAL: &str = ".partial";

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StorageError {
    let what = what.into();
    move |source| StorageError::Io { what, source }
}

impl LocalDir {
    /// Storage in `root` (created on first write).
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let ok = key.split('/').count() == 2
            && key.split('/').all(|p| !p.is_empty() && p != "." && p != ".." && !p.starts_with('.'));
        if ok { Ok(self.root.join(key)) } else { Err(StorageError::BadKey(key.to_string())) }
    }

    fn partial(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(PARTIAL);
        PathBuf::from(name)
    }
}

/// The lock of a [`LocalDir`]: an exclusive `flock` on `DIR/.lock`.
#[derive(Debug)]
pub(crate) struct DirLock(#[allow(dead_code)] std::fs::File);

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Takes an exclusive `flock` on `path` (creating `dir` first); `Busy(what)` when held.
pub(crate) async fn flock(dir: &Path, path: &Path, what: &str) -> Result<DirLock, StorageError> {
    let (root, path, what) = (dir.to_path_buf(), path.to_path_buf(), what.to_string());
    tokio::task::spawn_blocking(move || {
        crate::private_fs::create_dir_all(&root).map_err(io_err(format!("cannot create {}", root.display())))?;
        let file = crate::private_fs::open_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("cannot open {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Busy(what)),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(format!("cannot lock {}", path.display()))(e)),
        }
    })
    .await
    .map_err(|e| io_err("lock task")(io::Error::other(e)))?
}

impl Storage for LocalDir {
    type Writer = tokio::fs::File;
    type Reader = tokio::fs::File;
    type Lock = DirLock;

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn lock(&self) -> Result<DirLock, StorageError> {
        flock(&self.root, &self.root.join(".lock"), &self.root.display().to_string()).await
    }

    async fn create(&self, key: &str) -> Result<tokio::fs::File, StorageError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            crate::private_fs::create_dir_all_async(dir)
                .await
                .map_err(io_err(format!("cannot create {}", dir.display())))?;
        }
        let partial = Self::partial(&path);
        crate::private_fs::open_options_async()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .await
            .map_err(io_err(format!("cannot create {}", partial.display())))
    }

    async fn commit(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || {
            let partial = Self::partial(&path);
            // fsync through a fresh descriptor: it flushes the inode, whoever wrote it.
            std::fs::File::open(&partial)
                .and_then(|f| f.sync_all())
                .map_err(io_err(format!("cannot sync {}", partial.display())))?;
            std::fs::rename(&partial, &path).map_err(io_err(format!("cannot rename {}", partial.display())))?;
            let dir = path.parent().unwrap_or(Path::new("."));
            sync_dir(dir).map_err(io_err(format!("cannot sync {}", dir.display())))
        })
        .await
        .map_err(|e| io_err("commit task")(io::Error::other(e)))?
    }

    async fn open(&self, key: &str) -> Result<tokio::fs::File, StorageError> {
        let path = self.path(key)?;
        tokio::fs::File::open(&path).await.map_err(io_err(format!("cannot open {}", path.display())))
    }

    async fn list(&self) -> Result<Vec<Object>, StorageError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut objects = Vec::new();
            let runs = match std::fs::read_dir(&root) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(objects),
                Err(e) => return Err(io_err(format!("cannot list {}", root.display()))(e)),
            };
            for run in runs.flatten() {
                let run_name = run.file_name().to_string_lossy().into_owned();
                if run_name.starts_with('.') || !run.path().is_dir() {
                    continue;
                }
                let files =
                    std::fs::read_dir(run.path()).map_err(io_err(format!("cannot list {}", run.path().display())))?;
                for file in files.flatten() {
                    let name = file.file_name().to_string_lossy().into_owned();
                    let Ok(meta) = file.metadata() else { continue };
                    if !meta.is_file() {
                        continue;
                    }
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs() as i64);
                    let (name, partial) = name.strip_suffix(PARTIAL).map_or((name.as_str(), false), |n| (n, true));
                    objects.push(Object { key: format!("{run_name}/{name}"), size: meta.len(), partial, modified });
                }
            }
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(objects)
        })
        .await
        .map_err(|e| io_err("list task")(io::Error::other(e)))?
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        for p in [Self::partial(&path), path.clone()] {
            match tokio::fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("cannot delete {}", p.display()))(e)),
            }
        }
        // The run's directory goes with its last file.
        if let Some(dir) = path.parent() {
            let _ = tokio::fs::remove_dir(dir).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_file_is_listed_as_partial_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path().join("b"));
        let mut w = store.create("run1/a.bin").await.unwrap();
        w.write_all(b"hello").await.unwrap();
        w.shutdown().await.unwrap();
        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].partial, "not committed yet: {listed:?}");
        store.commit("run1/a.bin").await.unwrap();
        let listed = store.list().await.unwrap();
        assert_eq!((listed[0].key.as_str(), listed[0].size, listed[0].partial), ("run1/a.bin", 5, false));
        store.delete("run1/a.bin").await.unwrap();
        assert!(store.list().await.unwrap().is_empty());
        assert!(!dir.path().join("b/run1").exists(), "the empty run directory goes too");
    }

    #[test]
    fn the_cache_answers_only_for_an_unchanged_object() {
        let cache = ObjectCache::default();
        let o = Object { key: "r/manifest.json".into(), size: 10, partial: false, modified: 100 };
        cache.put(&o, 1);
        assert_eq!(cache.get(&o), Some(1), "unchanged");
        assert_eq!(cache.get(&Object { size: 11, ..o.clone() }), None, "another size");
        assert_eq!(cache.get(&Object { modified: 101, ..o.clone() }), None, "rewritten");
        cache.keep_only(&[]);
        assert_eq!(cache.get(&o), None, "the run was pruned");
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_directory_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path().to_path_buf());
        for bad in ["../x/y", "a/../b", "x", "a/b/c", ".lock/x", "a/.hidden"] {
            assert!(matches!(store.create(bad).await, Err(StorageError::BadKey(_))), "{bad}");
        }
        let held = store.lock().await.unwrap();
        assert!(matches!(store.lock().await, Err(StorageError::Busy(_))), "a second lock is refused");
        drop(held);
        assert!(store.lock().await.is_ok(), "released on drop");
    }
}
