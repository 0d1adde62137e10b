//! Files and directories that only mxwarden's user may read: the store (alert history, the
//! outbox with message texts), backups and restored file sets. New files are created 0600 and
//! new directories 0700, whatever the umask allows; what exists already keeps the mode its
//! owner chose. A leaf: it imports nothing of the crate (the store and `backup` use it).

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of the files mxwarden creates.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of the directories mxwarden creates.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parent, each 0700; existing ones are left as they are.
pub(crate) fn create_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Async [`create_dir_all`].
pub(crate) async fn create_dir_all_async(dir: &Path) -> io::Result<()> {
    tokio::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).await
}

/// Options that create a file 0600 (or open an existing one, keeping its mode).
pub(crate) fn open_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Async [`open_options`].
pub(crate) fn open_options_async() -> tokio::fs::OpenOptions {
    let mut options = tokio::fs::OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Makes sure the file `path` exists, creating it 0600 (and its directory 0700) when it does
/// not; an existing file is left untouched. For files another library opens afterwards
/// (SQLite takes the mode of its WAL and shared-memory files from the database file).
pub(crate) fn ensure_file(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir_all(dir)?;
    }
    match open_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_are_0600_new_directories_0700_and_existing_ones_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a/b/store.db");
        ensure_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600, "a new file");
        assert_eq!(mode(&tmp.path().join("a")), 0o700, "a new parent");
        assert_eq!(mode(&tmp.path().join("a/b")), 0o700, "a new directory");
        let existing = tmp.path().join("shared.db");
        std::fs::write(&existing, b"").unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).unwrap();
        ensure_file(&existing).unwrap();
        assert_eq!(mode(&existing), 0o640, "an existing file keeps its owner's choice");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir_all(tmp.path()).unwrap();
        assert_eq!(mode(tmp.path()), 0o755, "an existing directory too");
    }
}
