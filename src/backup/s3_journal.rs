//! The journal of multipart uploads in flight to one bucket and prefix: a small JSON file on
//! this host (0600, in a 0700 directory beside the state store) naming each upload's object
//! and upload id. An entry is written, and synced, before the first part is sent and removed
//! when the upload is completed or aborted, so an entry still there when the next run takes
//! the bucket's lock belongs to a process that died without cleaning up (`kill -9`, the OOM
//! killer, a power cut): S3 has no cheap way to find such uploads otherwise, and they are
//! billed until aborted. `s3` aborts them and clears their entries.
//!
//! The file is bounded ([`MAX_ENTRIES`], [`MAX_BYTES`]); one that cannot be read as a journal
//! (cut short, edited, too large) is reported and replaced, never trusted and never a panic.
//! Writes go to a temporary file renamed into place, so a crash mid-write leaves the previous
//! journal whole.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Uploads the journal holds at most; one more is refused (and its upload goes unrecorded).
pub(crate) const MAX_ENTRIES: usize = 256;

/// A journal file larger than this is not one we wrote.
pub(crate) const MAX_BYTES: u64 = 512 << 10;

/// Longest object path or upload id accepted in an entry.
const MAX_FIELD: usize = 1024;

/// A field of an entry as we write them: not empty, bounded, nothing a terminal would act on.
fn field_ok(f: &str) -> bool {
    !f.is_empty() && f.len() <= MAX_FIELD && !f.chars().any(crate::text::is_unsafe)
}

/// Why the journal cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    /// Reading, writing or renaming the file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The journal is at [`MAX_ENTRIES`].
    #[error("{path} already records {MAX_ENTRIES} unfinished uploads")]
    Full {
        /// The file.
        path: PathBuf,
    },
}

/// One upload in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Which bucket: the endpoint and `s3://bucket/prefix`.
    pub store: String,
    /// The object's full path in the bucket.
    pub path: String,
    /// The id S3 gave the multipart upload.
    pub upload_id: String,
}

/// The file's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    /// Format version, 1.
    version: u32,
    /// The uploads in flight.
    uploads: Vec<Entry>,
}

/// What reading the journal found.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Its entries (none when it is missing or unreadable).
    pub entries: Vec<Entry>,
    /// Why the file was not a journal, when it was not: its entries are lost.
    pub corrupt: Option<String>,
}

/// The journal file of one bucket and prefix.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    /// Serialises read-modify-write within the process (across processes, the bucket's
    /// lock does: only its holder uploads).
    guard: Mutex<()>,
}

impl Journal {
    /// The journal at `path` (nothing is read or created yet).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, guard: Mutex::new(()) }
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the entries; a missing file has none, an unreadable one is reported in
    /// [`Loaded::corrupt`] (the next write replaces it).
    pub(crate) fn load(&self) -> Result<Loaded, JournalError> {
        let _held = self.guard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.read()
    }

    /// Records `entry` (durably: the file is synced before this returns).
    pub(crate) fn add(&self, entry: Entry) -> Result<(), JournalError> {
        let _held = self.guard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut entries = self.read()?.entries;
        if entries.len() >= MAX_ENTRIES {
            return Err(JournalError::Full { path: self.path.clone() });
        }
        entries.retain(|e| e.upload_id != entry.upload_id);
        entries.push(entry);
        self.write(entries)
    }

    /// Forgets the upload `upload_id` (nothing to do when it is not recorded).
    pub(crate) fn remove(&self, upload_id: &str) -> Result<(), JournalError> {
        let _held = self.guard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let loaded = self.read()?;
        let before = loaded.entries.len();
        let entries: Vec<Entry> = loaded.entries.into_iter().filter(|e| e.upload_id != upload_id).collect();
        if entries.len() == before && loaded.corrupt.is_none() {
            return Ok(());
        }
        self.write(entries)
    }

    /// Replaces the entries with `keep` (after the others were aborted).
    pub(crate) fn replace(&self, keep: Vec<Entry>) -> Result<(), JournalError> {
        let _held = self.guard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.write(keep)
    }

    fn read(&self) -> Result<Loaded, JournalError> {
        let io = |source| JournalError::Io { what: "cannot read", path: self.path.clone(), source };
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) => return Err(io(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > MAX_BYTES {
            return Ok(Loaded { entries: Vec::new(), corrupt: Some(format!("larger than {MAX_BYTES} bytes")) });
        }
        let contents: Contents = match serde_json::from_slice(&bytes) {
            Ok(c) => c,
            Err(e) => return Ok(Loaded { entries: Vec::new(), corrupt: Some(format!("not a journal: {e}")) }),
        };
        let problem = if contents.version != 1 {
            Some(format!("version {} is not 1", contents.version))
        } else if contents.uploads.len() > MAX_ENTRIES {
            Some(format!("{} entries, more than {MAX_ENTRIES}", contents.uploads.len()))
        } else if contents.uploads.iter().any(|e| [&e.store, &e.path, &e.upload_id].iter().any(|f| !field_ok(f))) {
            Some(format!("an entry with a field empty, longer than {MAX_FIELD} bytes or with control characters"))
        } else {
            None
        };
        Ok(match problem {
            Some(p) => Loaded { entries: Vec::new(), corrupt: Some(p) },
            None => Loaded { entries: contents.uploads, corrupt: None },
        })
    }

    /// Writes `entries` to a temporary file, syncs it and renames it over the journal (the
    /// file is removed when there is nothing to record).
    fn write(&self, entries: Vec<Entry>) -> Result<(), JournalError> {
        let io = |what, source| JournalError::Io { what, path: self.path.clone(), source };
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("cannot remove", e)),
            };
        }
        crate::private_fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
        let text = serde_json::to_vec_pretty(&Contents { version: 1, uploads: entries })
            .map_err(|e| io("cannot encode", io::Error::other(e)))?;
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let mut file = crate::private_fs::open_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io("cannot write", e))?;
        file.write_all(&text).and_then(|()| file.sync_all()).map_err(|e| io("cannot write", e))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(|e| io("cannot rename into", e))?;
        // The rename is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(n: usize) -> Entry {
        Entry {
            store: "http://127.0.0.1:9 s3://b/p".into(),
            path: format!("p/run/{n}.bin"),
            upload_id: format!("id-{n}"),
        }
    }

    #[test]
    fn entries_round_trip_and_the_file_goes_when_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::new(tmp.path().join("uploads/s3-x.json"));
        assert!(j.load().unwrap().entries.is_empty(), "no file, no entries");
        j.add(entry(1)).unwrap();
        j.add(entry(2)).unwrap();
        j.add(entry(1)).unwrap();
        let again = Journal::new(j.path().to_path_buf()).load().unwrap();
        assert_eq!(again.entries, vec![entry(2), entry(1)], "read back by another instance, no duplicate");
        assert!(again.corrupt.is_none());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(j.path()), 0o600, "the file is private");
        assert_eq!(mode(&tmp.path().join("uploads")), 0o700, "its directory too");
        j.remove("id-2").unwrap();
        j.remove("id-unknown").unwrap();
        assert_eq!(j.load().unwrap().entries, vec![entry(1)]);
        j.remove("id-1").unwrap();
        assert!(!j.path().exists(), "an empty journal is no file");
        assert!(!tmp.path().join("uploads/s3-x.json.tmp").exists(), "no temporary file left");
    }

    #[test]
    fn a_corrupt_journal_is_reported_and_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::new(tmp.path().join("s3-x.json"));
        let long = "x".repeat(MAX_FIELD + 1);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{\"version\":1,\"uploads\":[{\"store\":\"s\",\"pa".to_vec(), "not a journal"),
            (vec![0xff, 0xfe, 0x00], "not a journal"),
            (b"[]".to_vec(), "not a journal"),
            (b"{\"version\":2,\"uploads\":[]}".to_vec(), "version 2"),
            (
                format!("{{\"version\":1,\"uploads\":[{{\"store\":\"s\",\"path\":\"p\",\"upload_id\":\"{long}\"}}]}}")
                    .into_bytes(),
                "longer than",
            ),
            (
                b"{\"version\":1,\"uploads\":[{\"store\":\"\",\"path\":\"p\",\"upload_id\":\"i\"}]}".to_vec(),
                "field empty",
            ),
            (
                b"{\"version\":1,\"uploads\":[{\"store\":\"s\",\"path\":\"p\\u001b[2J\",\"upload_id\":\"i\"}]}"
                    .to_vec(),
                "control characters",
            ),
            (vec![b' '; MAX_BYTES as usize + 1], "larger than"),
        ];
        for (bytes, why) in cases {
            std::fs::write(j.path(), &bytes).unwrap();
            let loaded = j.load().unwrap();
            assert!(loaded.entries.is_empty(), "{why}");
            assert!(loaded.corrupt.as_deref().is_some_and(|c| c.contains(why)), "{why}: {:?}", loaded.corrupt);
            j.add(entry(7)).unwrap();
            let fixed = j.load().unwrap();
            assert_eq!((fixed.entries, fixed.corrupt), (vec![entry(7)], None), "{why}: replaced by a good journal");
        }
        std::fs::write(j.path(), b"garbage").unwrap();
        j.remove("id-7").unwrap();
        assert!(!j.path().exists(), "removing from a corrupt journal clears it");
    }

    #[test]
    fn the_journal_is_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::new(tmp.path().join("s3-x.json"));
        for n in 0..MAX_ENTRIES {
            j.add(entry(n)).unwrap();
        }
        assert!(std::fs::metadata(j.path()).unwrap().len() < MAX_BYTES, "a full journal fits the size cap");
        assert!(matches!(j.add(entry(MAX_ENTRIES)), Err(JournalError::Full { .. })), "one more is refused");
        assert_eq!(j.load().unwrap().entries.len(), MAX_ENTRIES, "and the recorded ones are kept");
        j.replace(vec![entry(3)]).unwrap();
        assert_eq!(j.load().unwrap().entries, vec![entry(3)]);
        j.add(entry(MAX_ENTRIES)).unwrap();
    }
}
