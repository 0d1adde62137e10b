//! `store:`: a SQLite file path (relative ones are taken from the config's directory) or a
//! PostgreSQL database by `postgres://` / `postgresql://` URL, after `${VAR}` expansion. A
//! URL is checked here — host, database, options sqlx understands — so a typo is a config
//! error naming the line, not a daemon that fails to start. The URL's password is a secret
//! (the loader's redactor finds a URL's password wherever it is written), and no message
//! here repeats the URL.

use super::build::Problems;
use super::schema::FileConfig;
use crate::store::Location;
use std::str::FromStr;

/// `store:` as a location (`None`: the default file), or a problem.
pub(super) fn store(file: &FileConfig, problems: &mut Problems<'_>) -> Option<Location> {
    let spanned = file.store.as_ref()?;
    let text = spanned.value.trim();
    if text.is_empty() {
        problems.add(&spanned.referenced, "store", "expected a file path or a postgres:// URL, got an empty value");
        return None;
    }
    let location = Location::parse(text);
    if let Location::Postgres(url) = &location
        && let Err(why) = check_url(url)
    {
        problems.add(&spanned.referenced, "store", why);
        return None;
    }
    Some(location)
}

const EXPECTED: &str = "expected postgres://USER:PASSWORD@HOST:PORT/DATABASE";

fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a valid PostgreSQL URL: {e}; {EXPECTED}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("the PostgreSQL URL names no host; {EXPECTED}"));
    }
    if parsed.path().trim_start_matches('/').is_empty() {
        return Err(format!("the PostgreSQL URL names no database; {EXPECTED}"));
    }
    sqlx::postgres::PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|e| format!("the PostgreSQL URL is not usable: {e}; {EXPECTED}"))
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls_need_a_host_and_a_database_and_errors_never_repeat_them() {
        assert_eq!(check_url("postgres://mx:pw@db.internal:5432/mxwarden?sslmode=require"), Ok(()));
        for (bad, why) in [
            ("postgres://mx:Pa55-word@db.internal:notaport/mxwarden", "not a valid PostgreSQL URL"),
            ("postgres://mx:Pa55-word@db.internal:5432", "names no database"),
            ("postgres://mx:Pa55-word@db.internal:5432/x?sslmode=sometimes", "not usable"),
        ] {
            let e = check_url(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("Pa55-word"), "{e}");
        }
    }
}
