//! Where the store lives (`store:` in the config): a SQLite file, or a PostgreSQL database
//! named by a `postgres://` / `postgresql://` URL. The URL's password is a secret: the
//! location's `Debug` and [`Location::display`] show the URL without it (and without its
//! query, which may carry `password=` too), so neither logs nor errors nor `config show`
//! can print it.

use std::path::{Path, PathBuf};

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database: its URL, password included. Never print it; use
    /// [`Location::display`].
    Postgres(String),
}

impl Location {
    /// `text` as a location: a `postgres://` or `postgresql://` URL (any case) is a
    /// PostgreSQL database, anything else a file path.
    pub fn parse(text: &str) -> Self {
        if Self::is_postgres_url(text) { Self::Postgres(text.to_string()) } else { Self::File(PathBuf::from(text)) }
    }

    /// Whether `text` names a PostgreSQL database.
    pub fn is_postgres_url(text: &str) -> bool {
        let lower = text.trim_start().to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }

    /// The file, for a SQLite store.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }

    /// Whether this is a PostgreSQL store.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Whether the store may hold something already: its file exists, or it is a database
    /// (whether it is reachable only connecting tells).
    pub fn exists(&self) -> bool {
        match self {
            Self::File(path) => path.exists(),
            Self::Postgres(_) => true,
        }
    }

    /// Whether it is a SQLite file that exists (a PostgreSQL store is no file).
    pub fn is_file(&self) -> bool {
        self.path().is_some_and(Path::is_file)
    }

    /// How to show it: the file's path, or the URL without password and query
    /// (`postgres://mxwarden@db.internal:5432/mxwarden`).
    pub fn display(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Postgres(url) => shown_url(url),
        }
    }

    /// The URL's password, if any (for the config's redactor).
    pub(crate) fn password(&self) -> Option<String> {
        let Self::Postgres(url) = self else { return None };
        let parsed = url::Url::parse(url.trim()).ok()?;
        let mut secrets = Vec::new();
        if let Some(password) = parsed.password() {
            secrets.push(password.to_string());
        }
        secrets.extend(parsed.query_pairs().filter(|(k, _)| k == "password").map(|(_, v)| v.into_owned()));
        secrets.into_iter().find(|s| !s.is_empty())
    }

    /// A relative file path taken from `base_dir`; a URL or an absolute path as it is.
    pub(crate) fn relative_to(self, base_dir: &Path) -> Self {
        match self {
            Self::File(path) if path.is_relative() => Self::File(base_dir.join(path)),
            other => other,
        }
    }
}

/// `url` without password and query; an unparseable URL is shown as what it is, not echoed.
fn shown_url(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(e) => format!("postgres://… (not a valid URL: {e})"),
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&shown_url(url)).finish(),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Self::File(path.to_path_buf())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Self {
        Self::File(path.clone())
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl From<&Location> for Location {
    fn from(location: &Location) -> Self {
        location.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_databases_and_never_show_their_password() {
        let at =
            Location::parse("postgresql://mx:s3cret-pw@db.internal:5433/mxwarden?sslmode=require&password=other-pw");
        assert!(at.is_postgres());
        assert_eq!(at.display(), "postgresql://mx@db.internal:5433/mxwarden");
        for shown in [at.display(), format!("{at:?}"), at.to_string()] {
            assert!(!shown.contains("s3cret-pw") && !shown.contains("other-pw"), "{shown}");
        }
        assert_eq!(at.password().as_deref(), Some("s3cret-pw"));
        assert!(Location::parse("POSTGRES://db/x").is_postgres(), "the scheme in any case");
        let broken = Location::parse("postgres://mx:pw-in-a-broken@url:notaport/db");
        assert!(!broken.display().contains("pw-in-a-broken"), "{}", broken.display());
    }

    #[test]
    fn anything_else_is_a_file_taken_from_the_config_directory() {
        let at = Location::parse("data/mxwarden.db").relative_to(Path::new("/etc/mxwarden"));
        assert_eq!(at.path(), Some(Path::new("/etc/mxwarden/data/mxwarden.db")));
        assert!(!at.is_postgres());
        let url = Location::parse("postgres://db/x").relative_to(Path::new("/etc"));
        assert_eq!(url, Location::Postgres("postgres://db/x".into()));
    }
}
