//! File sets: patterns (`/data/mas/*.pem`: `*` and `?` in the last part of an absolute path)
//! expanded to files, written as one tar (paths kept, minus the leading `/`, so a restore into
//! a directory shows where each file came from), and unpacked or listed on the way back. The
//! tar crate is synchronous: these run on a blocking thread, joined to the async pipeline by a
//! pipe (`tokio::io::duplex` + `SyncIoBridge`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Checks a pattern at config time.
pub(crate) fn check_pattern(pattern: &str) -> Result<(), String> {
    let path = Path::new(pattern);
    if !path.is_absolute() {
        return Err(format!("`{pattern}` is not an absolute path; expected e.g. /data/mas/*.pem"));
    }
    let parent = path.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    if parent.contains(['*', '?', '[']) {
        return Err(format!("`{pattern}`: wildcards are allowed only in the last part of the path"));
    }
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("`{pattern}`: `..` is not allowed"));
    }
    Ok(())
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The paths a set's patterns name, sorted; a pattern that matches nothing is an error.
pub(crate) fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    for pattern in patterns {
        let path = Path::new(pattern);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.contains(['*', '?']) {
            if !path.exists() {
                return Err(format!("{pattern} does not exist"));
            }
            found.push(path.to_path_buf());
            continue;
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let before = found.len();
        for entry in entries.flatten() {
            let entry_name = entry.file_name().to_string_lossy().into_owned();
            if matches(&name, &entry_name) {
                found.push(entry.path());
            }
        }
        if found.len() == before {
            return Err(format!("{pattern} matches no file"));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Writes a tar of `paths` (directories with their contents) to `out`; returns the number of
/// files written.
pub(crate) fn write_tar<W: Write>(paths: &[PathBuf], out: W) -> Result<u64, String> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(true);
    for path in paths {
        let name = path.strip_prefix("/").unwrap_or(path);
        let result = if path.is_dir() { tar.append_dir_all(name, path) } else { tar.append_path_with_name(path, name) };
        result.map_err(|e| format!("cannot archive {}: {e}", path.display()))?;
    }
    tar.finish().map_err(|e| format!("cannot finish the archive: {e}"))?;
    let mut out = tar.into_inner().map_err(|e| format!("cannot finish the archive: {e}"))?;
    out.flush().map_err(|e| format!("cannot finish the archive: {e}"))?;
    drop(out);
    Ok(count_files(paths))
}

fn count_files(paths: &[PathBuf]) -> u64 {
    fn walk(p: &Path) -> u64 {
        if p.is_dir() {
            std::fs::read_dir(p).map(|r| r.flatten().map(|e| walk(&e.path())).sum()).unwrap_or(0)
        } else {
            1
        }
    }
    paths.iter().map(|p| walk(p)).sum()
}

/// The files in a tar (directories left out).
pub(crate) fn list_tar<R: Read>(input: R) -> Result<Vec<String>, String> {
    let mut archive = tar::Archive::new(input);
    let mut names = Vec::new();
    for entry in archive.entries().map_err(|e| format!("not a tar archive: {e}"))? {
        let entry = entry.map_err(|e| format!("broken tar archive: {e}"))?;
        if entry.header().entry_type().is_file() {
            names.push(entry.path().map_err(|e| format!("broken tar path: {e}"))?.display().to_string());
        }
    }
    drain(archive.into_inner())?;
    Ok(names)
}

/// An archive entry that was not unpacked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// The entry's name as the archive gives it (control characters escaped).
    pub name: String,
    /// Why it was not unpacked: absolute path, `..`, a link leaving the directory, a device …
    pub reason: String,
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Unpacked {
    /// Regular files written.
    pub files: u64,
    /// Unsafe entries left out, in archive order.
    pub skipped: Vec<Skipped>,
}

/// Why `entry` must not be unpacked under the destination, if it must not. Our own archives
/// hold relative paths of regular files and directories only; anything else came from
/// elsewhere and is judged here before the tar crate sees it: absolute paths and `..` (which
/// the tar crate would quietly re-root or drop), links whose target leaves the directory,
/// device nodes, FIFOs and unknown entry kinds.
pub(crate) fn unsafe_reason(path: &Path, kind: tar::EntryType, link: Option<&Path>) -> Option<String> {
    use std::path::Component;
    if path.as_os_str().is_empty() {
        return Some("empty name".into());
    }
    if path.components().any(|c| matches!(c, Component::RootDir | Component::Prefix(_))) {
        return Some("absolute path".into());
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Some("`..` in the path".into());
    }
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => None,
        tar::EntryType::Symlink => match link {
            None => Some("symbolic link without a target".into()),
            Some(target) if target.is_absolute() => {
                Some(format!("symbolic link to an absolute path ({})", shown(target)))
            }
            Some(target) if !stays_inside(path.parent().unwrap_or(Path::new("")), target) => {
                Some(format!("symbolic link escaping the directory (to {})", shown(target)))
            }
            Some(_) => None,
        },
        tar::EntryType::Link => match link {
            None => Some("hard link without a target".into()),
            Some(target)
                if target.is_absolute()
                    || target.components().any(|c| matches!(c, Component::ParentDir | Component::RootDir)) =>
            {
                Some(format!("hard link to outside the directory ({})", shown(target)))
            }
            Some(_) => None,
        },
        tar::EntryType::Char | tar::EntryType::Block => Some("device node".into()),
        tar::EntryType::Fifo => Some("named pipe (FIFO)".into()),
        other => Some(format!("unsupported entry type {}", other.as_byte() as char)),
    }
}

fn shown(path: &Path) -> String {
    crate::text::escape_controls(&path.to_string_lossy()).into_owned()
}

/// Whether `target`, followed from directory `from` (both relative to the destination), stays
/// inside the destination, judged by the names alone.
fn stays_inside(from: &Path, target: &Path) -> bool {
    use std::path::Component;
    let mut depth: i64 = from.components().filter(|c| matches!(c, Component::Normal(_))).count() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Unpacks a tar into `dir` (which the caller made sure is empty). Entries cannot escape it:
/// unsafe ones are left out and reported (see [`unsafe_reason`]); a symbolic link that,
/// through the links before it, still resolves outside is removed again and reported. Modes
/// are kept without the setuid, setgid and sticky bits; owners are not restored.
pub(crate) fn unpack_tar<R: Read>(input: R, dir: &Path) -> Result<Unpacked, String> {
    let mut archive = tar::Archive::new(input);
    let mut done = Unpacked::default();
    let mut links = Vec::new();
    let root = dir.canonicalize().map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    for entry in archive.entries().map_err(|e| format!("not a tar archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("broken tar archive: {e}"))?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(|e| format!("broken tar path: {e}"))?.into_owned();
        let link = entry.link_name().map_err(|e| format!("broken tar link name: {e}"))?.map(|l| l.into_owned());
        if let Some(reason) = unsafe_reason(&path, kind, link.as_deref()) {
            done.skipped.push(Skipped { name: shown(&path), reason });
            continue;
        }
        // Only the permission bits: no setuid, setgid or sticky bit from an archive.
        entry.set_preserve_permissions(false);
        let unpacked = entry.unpack_in(dir).map_err(|e| format!("cannot unpack into {}: {e}", dir.display()))?;
        if unpacked && kind.is_file() {
            done.files += 1;
        }
        if kind.is_symlink() && unpacked {
            // At once, so no later entry is written through it; and again at the end, when
            // every link it may pass through exists.
            if drop_if_outside(dir, &root, &path, &mut done)? {
                links.push(path);
            }
        }
    }
    drain(archive.into_inner())?;
    for link in links {
        drop_if_outside(dir, &root, &link, &mut done)?;
    }
    Ok(done)
}

/// Removes the symbolic link `link` (relative to `dir`) when it resolves outside `root` and
/// reports it; says whether it was kept.
fn drop_if_outside(dir: &Path, root: &Path, link: &Path, done: &mut Unpacked) -> Result<bool, String> {
    let at = dir.join(link);
    if resolves_inside(&at, root) {
        return Ok(true);
    }
    std::fs::remove_file(&at).map_err(|e| format!("cannot remove {}: {e}", at.display()))?;
    done.skipped.push(Skipped {
        name: shown(link),
        reason: "symbolic link resolving outside the directory (through another link)".into(),
    });
    Ok(false)
}

/// Whether the symbolic link `link` points inside `root` (canonical), following every link on
/// the way. A dangling link counts as inside when its target has no `..` and the nearest
/// existing directory on its way is inside.
fn resolves_inside(link: &Path, root: &Path) -> bool {
    let Ok(target) = std::fs::read_link(link) else { return true };
    let climbs = target.components().any(|c| matches!(c, std::path::Component::ParentDir));
    let full = link.parent().unwrap_or(root).join(target);
    match full.canonicalize() {
        Ok(real) => real.starts_with(root),
        Err(_) if climbs => false,
        Err(_) => full.ancestors().find_map(|p| p.canonicalize().ok()).is_some_and(|p| p.starts_with(root)),
    }
}

/// Reads what follows the archive's end (its padding), so the stream is read to its end and
/// the decompressor's checksum is checked.
fn drain<R: Read>(mut input: R) -> Result<(), String> {
    std::io::copy(&mut input, &mut std::io::sink()).map(|_| ()).map_err(|e| format!("after the archive: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_the_shell() {
        let cases = [
            ("*.pem", "key.pem", true, "suffix"),
            ("*.pem", "key.pem.bak", false, "anchored at the end"),
            ("k?y*", "key.pem", true, "one character, then anything"),
            ("*", ".hidden", true, "a bare star matches any name"),
            ("a*b*c", "aXXbYYc", true, "several stars"),
            ("a*b*c", "aXXbYY", false, "missing tail"),
        ];
        for (p, n, want, why) in cases {
            assert_eq!(matches(p, n), want, "{p} vs {n}: {why}");
        }
        assert!(check_pattern("/data/mas/*.pem").is_ok());
        assert!(check_pattern("data/*.pem").unwrap_err().contains("absolute"));
        assert!(check_pattern("/data/*/key.pem").unwrap_err().contains("last part"));
    }

    #[test]
    fn a_set_round_trips_through_tar_and_a_missing_file_is_an_error() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.pem"), "A").unwrap();
        std::fs::write(src.path().join("b.pem"), "B").unwrap();
        std::fs::write(src.path().join("c.txt"), "C").unwrap();
        let pattern = format!("{}/*.pem", src.path().display());
        let paths = expand(std::slice::from_ref(&pattern)).unwrap();
        assert_eq!(paths.len(), 2);
        let mut tar = Vec::new();
        assert_eq!(write_tar(&paths, &mut tar).unwrap(), 2);
        assert_eq!(list_tar(&tar[..]).unwrap().len(), 2);
        let out = tempfile::tempdir().unwrap();
        assert_eq!(unpack_tar(&tar[..], out.path()).unwrap(), Unpacked { files: 2, skipped: vec![] });
        let back = out.path().join(src.path().strip_prefix("/").unwrap()).join("a.pem");
        assert_eq!(std::fs::read_to_string(back).unwrap(), "A");
        let none = format!("{}/*.key", src.path().display());
        assert!(expand(&[none]).unwrap_err().contains("matches no file"));
    }
}

#[cfg(test)]
mod unsafe_entries {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tar::EntryType;

    /// A tar entry written byte for byte, so names the tar crate's builder would refuse (absolute,
    /// `..`) can be crafted.
    pub(crate) fn raw_entry(out: &mut Vec<u8>, name: &str, kind: EntryType, link: &str, mode: u32, data: &[u8]) {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    #[test]
    fn each_kind_of_unsafe_entry_is_named() {
        let cases: &[(&str, EntryType, Option<&str>, Option<&str>, &str)] = &[
            ("data/key.pem", EntryType::Regular, None, None, "a plain file"),
            ("data", EntryType::Directory, None, None, "a directory"),
            ("/etc/cron.d/evil", EntryType::Regular, None, Some("absolute path"), "absolute"),
            ("../evil", EntryType::Regular, None, Some("`..` in the path"), "parent"),
            ("data/../../evil", EntryType::Regular, None, Some("`..` in the path"), "parent in the middle"),
            ("data/link", EntryType::Symlink, Some("key.pem"), None, "a link beside its target"),
            ("data/link", EntryType::Symlink, Some("../data/key.pem"), None, "a link up and down again"),
            ("data/link", EntryType::Symlink, Some("/etc/shadow"), Some("symbolic link to an absolute path"), "abs"),
            ("data/link", EntryType::Symlink, Some("../../etc"), Some("symbolic link escaping"), "escaping"),
            ("link", EntryType::Symlink, Some(".."), Some("symbolic link escaping"), "the parent of the root"),
            ("data/hard", EntryType::Link, Some("data/key.pem"), None, "a hard link inside"),
            ("data/hard", EntryType::Link, Some("/etc/shadow"), Some("hard link to outside"), "hard, absolute"),
            ("data/hard", EntryType::Link, Some("../x"), Some("hard link to outside"), "hard, parent"),
            ("data/null", EntryType::Char, None, Some("device node"), "character device"),
            ("data/sda", EntryType::Block, None, Some("device node"), "block device"),
            ("data/pipe", EntryType::Fifo, None, Some("named pipe (FIFO)"), "fifo"),
            ("data/x", EntryType::new(b'Z'), None, Some("unsupported entry type Z"), "unknown kind"),
        ];
        for (path, kind, link, want, why) in cases {
            let got = unsafe_reason(Path::new(path), *kind, link.map(Path::new));
            match want {
                None => assert_eq!(got, None, "{why}"),
                Some(w) => assert!(got.as_deref().is_some_and(|g| g.starts_with(w)), "{why}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_crafted_archive_unpacks_only_its_safe_entries_without_special_bits() {
        let mut tar = Vec::new();
        raw_entry(&mut tar, "data/", EntryType::Directory, "", 0o1777, b"");
        raw_entry(&mut tar, "data/suid", EntryType::Regular, "", 0o4755, b"#!/bin/sh\n");
        raw_entry(&mut tar, "data/sgid", EntryType::Regular, "", 0o2640, b"x");
        raw_entry(&mut tar, "/abs", EntryType::Regular, "", 0o644, b"x");
        raw_entry(&mut tar, "../up", EntryType::Regular, "", 0o644, b"x");
        raw_entry(&mut tar, "data/dot", EntryType::Symlink, ".", 0o777, b"");
        raw_entry(&mut tar, "data/up", EntryType::Symlink, "../../etc", 0o777, b"");
        // By the names alone `data/dot/..` is `data`, inside; through `dot` it is the root's parent.
        raw_entry(&mut tar, "data/dot/out", EntryType::Symlink, "../..", 0o777, b"");
        raw_entry(&mut tar, "data/null", EntryType::Char, "", 0o666, b"");
        tar.extend_from_slice(&[0; 1024]);
        let out = tempfile::tempdir().unwrap();
        let done = unpack_tar(&tar[..], out.path()).unwrap();
        assert_eq!(done.files, 2, "{done:?}");
        let reasons: Vec<(&str, &str)> = done.skipped.iter().map(|s| (s.name.as_str(), s.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                ("/abs", "absolute path"),
                ("../up", "`..` in the path"),
                ("data/up", "symbolic link escaping the directory (to ../../etc)"),
                ("data/dot/out", "symbolic link resolving outside the directory (through another link)"),
                ("data/null", "device node"),
            ]
        );
        let mode = |p: &str| std::fs::symlink_metadata(out.path().join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("data/suid"), 0o755, "setuid dropped");
        assert_eq!(mode("data/sgid"), 0o640, "setgid dropped");
        assert_eq!(mode("data"), 0o777, "sticky dropped");
        assert!(!out.path().join("abs").exists() && !out.path().parent().unwrap().join("up").exists());
    }

    #[test]
    fn a_link_leaving_through_another_link_is_removed_and_reported() {
        let mut tar = Vec::new();
        raw_entry(&mut tar, "b", EntryType::Symlink, ".", 0o777, b"");
        // By the names alone `b/..` is the root; through `b` it is the root's parent.
        raw_entry(&mut tar, "a", EntryType::Symlink, "b/..", 0o777, b"");
        raw_entry(&mut tar, "a/escaped", EntryType::Regular, "", 0o644, b"x");
        tar.extend_from_slice(&[0; 1024]);
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("restore");
        std::fs::create_dir(&out).unwrap();
        let done = unpack_tar(&tar[..], &out);
        assert!(!parent.path().join("escaped").exists(), "nothing was written outside: {done:?}");
        let done = done.unwrap();
        assert!(done.skipped.iter().any(|s| s.name == "a" && s.reason.contains("resolving outside")), "{done:?}");
        assert!(std::fs::symlink_metadata(out.join("a")).is_err() || out.join("a").join("escaped").exists());
    }
}
