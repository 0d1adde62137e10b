//! The configured destination: a local directory ([`LocalDir`], the default) or an
//! S3-compatible bucket ([`S3Store`]), as one [`Storage`] so that `run`, `list`, `verify`,
//! `prune`, `restore` and the drill work the same against either.

use super::s3::{S3Reader, S3Store, S3Writer};
use super::storage::{DirLock, LocalDir, Object, Storage, StorageError};
use tokio_util::either::Either;

/// Where backups go.
#[derive(Debug, Clone)]
pub enum Store {
    /// A directory on this host.
    Dir(LocalDir),
    /// A bucket (and prefix).
    S3(S3Store),
}

impl Store {
    /// Aborts the uploads a killed process left unfinished in a bucket, unless a run holds
    /// it (nothing to do for a directory): at the daemon's start and before a drill.
    pub(crate) async fn abort_orphans(&self) {
        if let Self::S3(s) = self {
            s.abort_orphans_if_idle().await;
        }
    }

    /// Waits for abandoned uploads to be aborted (nothing to do for a directory).
    pub(crate) async fn settle(&self) {
        if let Self::S3(s) = self {
            s.settle().await;
        }
    }
}

impl Storage for Store {
    type Writer = Either<tokio::fs::File, S3Writer>;
    type Reader = Either<tokio::fs::File, S3Reader>;
    type Lock = DirLock;

    fn describe(&self) -> String {
        match self {
            Self::Dir(d) => d.describe(),
            Self::S3(s) => s.describe(),
        }
    }

    async fn lock(&self) -> Result<DirLock, StorageError> {
        match self {
            Self::Dir(d) => d.lock().await,
            Self::S3(s) => s.lock().await,
        }
    }

    async fn create(&self, key: &str) -> Result<Self::Writer, StorageError> {
        match self {
            Self::Dir(d) => d.create(key).await.map(Either::Left),
            Self::S3(s) => s.create(key).await.map(Either::Right),
        }
    }

    async fn commit(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Self::Dir(d) => d.commit(key).await,
            Self::S3(s) => s.commit(key).await,
        }
    }

    async fn open(&self, key: &str) -> Result<Self::Reader, StorageError> {
        match self {
            Self::Dir(d) => d.open(key).await.map(Either::Left),
            Self::S3(s) => s.open(key).await.map(Either::Right),
        }
    }

    async fn list(&self) -> Result<Vec<Object>, StorageError> {
        match self {
            Self::Dir(d) => d.list().await,
            Self::S3(s) => s.list().await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Self::Dir(d) => d.delete(key).await,
            Self::S3(s) => s.delete(key).await,
        }
    }
}
