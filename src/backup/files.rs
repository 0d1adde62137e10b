//! File sets: patterns (`/data/mas/*.pem`: `*` and `?` in the last part of an absolute path)
//! expanded to files, written as one tar (paths kept, minus the leading `/`, so a restore into
//! a directory shows where each file came from), and unpacked or listed on the way back. The
//! tar crate is synchronous: these run on a blocking thread, joined to the async pipeline by a
//! pipe (`tokio::io::duplex` + `SyncIoBridge`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Checks a pattern at config time.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
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
pub fn matches(pattern: &str, name: &str) -> bool {
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
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, String> {
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
pub fn write_tar<W: Write>(paths: &[PathBuf], out: W) -> Result<u64, String> {
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
pub fn list_tar<R: Read>(input: R) -> Result<Vec<String>, String> {
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

/// Unpacks a tar into `dir` (which the caller made sure is empty); entries cannot escape it.
pub fn unpack_tar<R: Read>(input: R, dir: &Path) -> Result<u64, String> {
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    let mut files = 0;
    for entry in archive.entries().map_err(|e| format!("not a tar archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("broken tar archive: {e}"))?;
        let is_file = entry.header().entry_type().is_file();
        let unpacked = entry.unpack_in(dir).map_err(|e| format!("cannot unpack into {}: {e}", dir.display()))?;
        if unpacked && is_file {
            files += 1;
        }
    }
    drain(archive.into_inner())?;
    Ok(files)
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
        assert_eq!(unpack_tar(&tar[..], out.path()).unwrap(), 2);
        let back = out.path().join(src.path().strip_prefix("/").unwrap()).join("a.pem");
        assert_eq!(std::fs::read_to_string(back).unwrap(), "A");
        let none = format!("{}/*.key", src.path().display());
        assert!(expand(&[none]).unwrap_err().contains("matches no file"));
    }
}
