//! Files: the backup destination is writable and its recipients are valid age public keys;
//! the store's file and directory are writable (SQLite writes its journal beside the file).
//! Writability is proven by creating and removing a small file — the only write the doctor
//! makes — in the directory, or in its nearest existing parent when it does not exist yet.

use super::{Area, Finding};
use crate::config::Config;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The backup plan's directory and recipients.
pub(crate) async fn backup(config: &Config) -> Vec<Finding> {
    let Some(plan) = &config.backup else { return Vec::new() };
    let mut out = match &plan.storage {
        crate::backup::Store::Dir(local) => {
            let dir = local.root().to_path_buf();
            let probed = probe_dir(dir.clone()).await;
            vec![judge_writable(Area::Backup, "backup.dir", &dir, &probed)]
        }
        crate::backup::Store::S3(bucket) => vec![probe_bucket(bucket).await],
    };
    out.push(judge_recipients(&plan.recipients));
    out
}

/// Writes, commits and deletes a small object under the bucket's prefix: the credentials, the
/// endpoint and the bucket's policy all allow what a backup run does. The errors are the
/// storage's, already free of the secret key.
async fn probe_bucket(bucket: &crate::backup::s3::S3Store) -> Finding {
    use crate::backup::Storage as _;
    use tokio::io::AsyncWriteExt as _;
    let shown = bucket.url();
    let key = format!("mxwarden-doctor/probe-{}", std::process::id());
    let attempt = async {
        let mut writer = bucket.create(&key).await?;
        writer.write_all(b"mxwarden doctor: a write probe, deleted at once\n").await.map_err(|source| {
            crate::backup::StorageError::Io { what: format!("{shown}: cannot write {key}"), source }
        })?;
        writer.shutdown().await.map_err(|source| crate::backup::StorageError::Io {
            what: format!("{shown}: cannot write {key}"),
            source,
        })?;
        bucket.commit(&key).await?;
        bucket.delete(&key).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(60), attempt).await {
        Ok(Ok(())) => {
            Finding::pass(Area::Backup, "backup.to", "writable", format!("{shown} takes a write and a delete"))
        }
        Ok(Err(e)) => Finding::fail(
            Area::Backup,
            "backup.to",
            "writable",
            format!("{e}"),
            "check backup.endpoint, region, the bucket's name and that the key may PutObject, multipart upload and \
             DeleteObject on the prefix"
                .to_string(),
        ),
        Err(_) => Finding::fail(
            Area::Backup,
            "backup.to",
            "writable",
            format!("{shown} did not answer a write within 60 s"),
            "check backup.endpoint and that this host can reach it".to_string(),
        ),
    }
}

/// The store's directory and, if it exists, the file itself.
pub(crate) async fn store(path: &Path) -> Vec<Finding> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut probed = probe_dir(dir).await;
    if probed.is_ok() && path.exists() {
        let file = path.to_path_buf();
        probed = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new().write(true).open(&file).map(|_| Probed { created: false }).map_err(|e| e.kind())
        })
        .await
        .unwrap_or(Err(ErrorKind::Other));
    }
    vec![judge_writable(Area::Store, "store", path, &probed)]
}

/// A successful write probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probed {
    /// Whether the directory does not exist yet (mxwarden creates it on first use).
    pub created: bool,
}

/// Creates and removes `.mxwarden-doctor-<pid>-<random>` in `dir` (or its nearest existing parent).
async fn probe_dir(dir: PathBuf) -> Result<Probed, ErrorKind> {
    tokio::task::spawn_blocking(move || {
        let mut at = dir.as_path();
        let mut missing = false;
        while !at.exists() {
            missing = true;
            match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => return Err(ErrorKind::NotFound),
            }
        }
        if !at.is_dir() {
            return Err(ErrorKind::NotADirectory);
        }
        // Unique per call: the store and the backup may share a directory, probed at once.
        let probe = at.join(format!(".mxwarden-doctor-{}-{:016x}", std::process::id(), rand::random::<u64>()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"mxwarden doctor\n"));
        let _ = std::fs::remove_file(&probe);
        written.map(|()| Probed { created: missing }).map_err(|e| e.kind())
    })
    .await
    .unwrap_or(Err(ErrorKind::Other))
}

/// Whether a path can be written, and what to do if not (pure).
pub(crate) fn judge_writable(area: Area, subject: &str, path: &Path, probed: &Result<Probed, ErrorKind>) -> Finding {
    let shown = crate::text::escape_controls(&path.display().to_string()).into_owned();
    let fail = |detail: String, fix: String| Finding::fail(area, subject, "writable", detail, fix);
    match probed {
        Ok(Probed { created: false }) => Finding::pass(area, subject, "writable", format!("{shown} is writable")),
        Ok(Probed { created: true }) => {
            Finding::pass(area, subject, "writable", format!("{shown} does not exist yet; mxwarden can create it"))
        }
        Err(ErrorKind::ReadOnlyFilesystem) => fail(
            format!("{shown} is on a read-only filesystem"),
            format!(
                "under systemd's ProtectSystem=strict only StateDirectory= and ReadWritePaths= are writable: add \
                 `ReadWritePaths={shown}` to the unit (or move it under /var/lib/mxwarden); in a container, mount a \
                 volume there"
            ),
        ),
        Err(ErrorKind::PermissionDenied) => fail(
            format!("the user running mxwarden may not write to {shown}"),
            format!("give it the directory: `chown -R mxwarden: {shown}` (or the service's User=)"),
        ),
        Err(ErrorKind::NotADirectory) => {
            fail(format!("{shown} (or a parent) is a file, not a directory"), "point the setting at a directory".into())
        }
        Err(ErrorKind::StorageFull) => {
            fail(format!("the disk of {shown} is full"), "free space or grow the disk".into())
        }
        Err(kind) => fail(format!("cannot write to {shown}: {kind}"), "check the path and its permissions".into()),
    }
}

/// Whether every recipient parses as an age X25519 public key (pure).
pub(crate) fn judge_recipients(recipients: &[String]) -> Finding {
    // Entries are named by position: a pasted secret key must not be printed.
    let bad: Vec<String> = recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.parse::<age::x25519::Recipient>().is_err())
        .map(|(i, r)| {
            let secret = r.trim().to_ascii_uppercase().starts_with("AGE-SECRET-KEY-");
            format!("entry {}{}", i + 1, if secret { " (a SECRET key: remove it and rotate it)" } else { "" })
        })
        .collect();
    if recipients.is_empty() {
        Finding::fail(
            Area::Backup,
            "backup.encrypt_to",
            "age recipients",
            "no recipients: backups could not be encrypted",
            "make a key pair with `mxwarden backup keygen --output backup.key` and list its public key",
        )
    } else if bad.is_empty() {
        Finding::pass(
            Area::Backup,
            "backup.encrypt_to",
            "age recipients",
            format!("{} valid age public key(s)", recipients.len()),
        )
    } else {
        Finding::fail(
            Area::Backup,
            "backup.encrypt_to",
            "age recipients",
            format!("not age public keys: {}", bad.join(", ")),
            "list public keys (`age1…`, the line `# public key:` of the key file), never the secret key",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Outcome;

    #[test]
    fn writable_verdicts() {
        let p = Path::new("/var/backups/mx");
        let cases = [
            (Ok(Probed { created: false }), true, "", "writable"),
            (Ok(Probed { created: true }), true, "", "created on first use"),
            (Err(ErrorKind::ReadOnlyFilesystem), false, "ReadWritePaths=/var/backups/mx", "systemd's strict mode"),
            (Err(ErrorKind::PermissionDenied), false, "chown -R mxwarden: /var/backups/mx", "wrong owner"),
            (Err(ErrorKind::NotADirectory), false, "a directory", "a file in the way"),
            (Err(ErrorKind::StorageFull), false, "free space", "full"),
        ];
        for (probed, ok, fix, why) in cases {
            let f = judge_writable(Area::Backup, "backup.dir", p, &probed);
            assert_eq!(f.outcome == Outcome::Pass, ok, "{why}");
            assert!(f.fix.unwrap_or_default().contains(fix), "{why}");
        }
    }

    #[test]
    fn recipients() {
        let key = age::x25519::Identity::generate().to_public().to_string();
        let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ".to_string();
        assert_eq!(judge_recipients(std::slice::from_ref(&key)).outcome, Outcome::Pass, "a public key");
        assert_eq!(judge_recipients(&[]).outcome, Outcome::Fail, "none");
        let f = judge_recipients(&[key, "age1notakey".into(), secret]);
        assert_eq!(f.outcome, Outcome::Fail, "one bad key fails");
        assert!(f.detail.contains("entry 2, entry 3 (a SECRET key"), "{}", f.detail);
        assert!(!f.detail.contains("AGE-SECRET-KEY-1Q") && !f.detail.contains("age1notakey"), "{}", f.detail);
    }

    #[test]
    fn the_probe_writes_nothing_that_stays() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(probe_dir(dir.path().to_path_buf())), Ok(Probed { created: false }));
        assert_eq!(rt.block_on(probe_dir(dir.path().join("a/b"))), Ok(Probed { created: true }));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left behind");
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert_eq!(rt.block_on(probe_dir(file.join("x"))), Err(ErrorKind::NotADirectory));
    }
}
