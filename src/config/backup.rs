//! `backup:` → [`BackupPlan`]: the destination, which databases of which postgres service
//! (their connections parsed like the service's own check does, secrets included), file
//! sets, the cron schedule, GFS retention, the zstd level and the age recipients (public keys
//! only; a private key given by mistake is refused without being echoed). Called by
//! `config::build`; every problem is reported with file, line and key.

use super::build::{Problems, secret};
use super::schema::{BackupConfig, DatabaseSelection, FileConfig, ServiceDatabases, ServiceKind};
use crate::backup::s3::{S3Config, S3Store};
use crate::backup::{BackupPlan, DbChoice, DbSource, FileSet, LocalDir, PgTools, Retention, Schedule, Store};
use crate::probe::postgres::dsn::PgTarget;
use secrecy::ExposeSecret;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Builds the plan, or records why not.
pub(super) fn build(
    spanned: &Spanned<BackupConfig>,
    file: &FileConfig,
    problems: &mut Problems<'_>,
) -> Option<BackupPlan> {
    let config = &spanned.value;
    let here = spanned.referenced;
    let before = problems.found.len();
    let storage = destination(config, problems, &here).map(|s| uploads_journal(s, file, problems.origin.base_dir));
    let sources = sources(config, file, problems, &here);
    let files = file_sets(config, problems);
    let drill = config.drill.as_ref().and_then(|s| schedule(s, file, problems, "backup.drill"));
    let schedule = config.schedule.as_ref().and_then(|s| schedule(s, file, problems, "backup.schedule"));
    let retention = retention(config, problems, &here);
    let zstd_level = match &config.zstd_level {
        None => 3,
        Some(level) if (1..=19).contains(&level.value) => level.value,
        Some(level) => {
            problems.add(
                &level.referenced,
                "backup.zstd_level",
                format!("{} is not a zstd level; expected 1 (fast) to 19 (small)", level.value),
            );
            3
        }
    };
    let recipients = recipients(config, problems, &here);
    if sources.is_empty() && files.is_empty() {
        problems.add(
            &here,
            "backup",
            "nothing to back up: add a service with kind postgres, or file sets under `backup.files`",
        );
    }
    let tools = PgTools::in_dir(config.pg_bin_dir.as_ref().map(|d| problems.origin.resolve(&d.value)).as_deref());
    if let Some(d) = &config.pg_bin_dir {
        let path = problems.origin.resolve(&d.value);
        if !path.join("pg_dump").is_file() {
            problems.add(&d.referenced, "backup.pg_bin_dir", format!("{} holds no pg_dump", path.display()));
        }
    }
    // The identity may also come from the environment, as for `backup drill --identity`.
    let from_env = std::env::var_os("MXWARDEN_BACKUP_IDENTITY").filter(|v| !v.is_empty()).map(PathBuf::from);
    let drill_identity = match (&drill, &config.drill_identity_file) {
        (Some(_), None) => match from_env {
            Some(path) => match crate::backup::pipeline::identities(&path) {
                Ok(_) => Some(path),
                Err(e) => {
                    let at = config.drill.as_ref().map_or(here, |d| d.referenced);
                    problems.add(&at, "backup.drill", format!("MXWARDEN_BACKUP_IDENTITY: {e}"));
                    None
                }
            },
            None => {
                let at = config.drill.as_ref().map_or(here, |d| d.referenced);
                problems.add(
                    &at,
                    "backup.drill",
                    "the drill decrypts backups to restore them: set `drill_identity_file` (an age identity \
                     file) or the environment variable MXWARDEN_BACKUP_IDENTITY",
                );
                None
            }
        },
        (_, Some(f)) => {
            let path = problems.origin.resolve(&f.value);
            if let Err(e) = crate::backup::pipeline::identities(&path) {
                problems.add(&f.referenced, "backup.drill_identity_file", e);
            }
            Some(path)
        }
        (None, None) => None,
    };
    let storage = storage?;
    (problems.found.len() == before).then(|| BackupPlan {
        storage,
        drill,
        drill_identity,
        sources,
        files,
        schedule,
        retention,
        zstd_level,
        recipients,
        tools,
    })
}

/// The connection of a postgres service, as its check builds it; `None` when invalid (the
/// service's own build has already reported why).
fn target(name: &str, spanned: &Spanned<super::schema::ServiceConfig>, problems: &Problems<'_>) -> Option<PgTarget> {
    let service = &spanned.value;
    let target = PgTarget::parse(service.dsn.as_ref()?.value.expose_secret()).ok()?;
    let key = format!("services.{name}.password");
    match secret(problems.origin, None, service.password_file.as_ref(), &key, &spanned.referenced).ok()? {
        Some(password) if target.password.is_none() => Some(target.with_password(password)),
        Some(_) => None,
        None => Some(target),
    }
}

fn check_names(names: &[String], key: &str, at: &Location, problems: &mut Problems<'_>) {
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            problems.add(at, format!("{key}[{i}]"), "a database name cannot be empty");
        } else if names[..i].contains(name) {
            problems.add(at, format!("{key}[{i}]"), format!("`{name}` is listed twice"));
        }
    }
}

fn sources(config: &BackupConfig, file: &FileConfig, problems: &mut Problems<'_>, here: &Location) -> Vec<DbSource> {
    let postgres: Vec<(&String, &Spanned<super::schema::ServiceConfig>)> =
        file.services.iter().filter(|(_, s)| s.value.kind == ServiceKind::Postgres).collect();
    let names: Vec<&str> = postgres.iter().map(|(n, _)| n.as_str()).collect();
    let own = |s: &super::schema::ServiceConfig| {
        if s.databases.is_empty() {
            DbChoice::All
        } else {
            DbChoice::Only(s.databases.iter().map(|d| d.value.clone()).collect())
        }
    };
    let mut chosen: BTreeMap<&str, DbChoice> = BTreeMap::new();
    match &config.databases {
        None => {
            for (name, s) in &postgres {
                chosen.insert(name, own(&s.value));
            }
        }
        Some(sel) => match &sel.value {
            DatabaseSelection::All => {
                for (name, _) in &postgres {
                    chosen.insert(name, DbChoice::All);
                }
            }
            DatabaseSelection::List(list) => {
                check_names(list, "backup.databases", &sel.referenced, problems);
                match names.as_slice() {
                    [one] => {
                        chosen.insert(one, DbChoice::Only(list.clone()));
                    }
                    [] => problems.add(
                        &sel.referenced,
                        "backup.databases",
                        "there is no service with kind postgres to take these databases from",
                    ),
                    _ => problems.add(
                        &sel.referenced,
                        "backup.databases",
                        format!(
                            "there are several postgres services ({}); name the service: `databases: {{ {}: [{}] }}`",
                            names.join(", "),
                            names[0],
                            list.join(", ")
                        ),
                    ),
                }
            }
            DatabaseSelection::PerService(map) => {
                for (service, dbs) in map {
                    if !names.contains(&service.as_str()) {
                        let hint = crate::units::closest(service, names.iter().copied())
                            .map(|n| format!("did you mean `{n}`?"));
                        problems.add_with_hint(
                            &sel.referenced,
                            format!("backup.databases.{service}"),
                            format!(
                                "no postgres service `{service}`; the postgres services are: {}",
                                if names.is_empty() { "none".to_string() } else { names.join(", ") }
                            ),
                            hint,
                        );
                        continue;
                    }
                    let choice = match dbs {
                        ServiceDatabases::All => DbChoice::All,
                        ServiceDatabases::List(list) => {
                            check_names(list, &format!("backup.databases.{service}"), &sel.referenced, problems);
                            DbChoice::Only(list.clone())
                        }
                    };
                    let key = names.iter().find(|n| **n == service.as_str()).copied().unwrap_or_default();
                    chosen.insert(key, choice);
                }
            }
        },
    }
    let _ = here;
    let globals = config.globals.unwrap_or(true);
    postgres
        .iter()
        .filter_map(|(name, spanned)| {
            let databases = chosen.remove(name.as_str())?;
            Some(DbSource { service: name.to_string(), target: target(name, spanned, problems)?, databases, globals })
        })
        .collect()
}

fn file_sets(config: &BackupConfig, problems: &mut Problems<'_>) -> Vec<FileSet> {
    let mut sets = Vec::new();
    for (name, patterns) in &config.files {
        let key = format!("backup.files.{name}");
        let at = patterns.first().map_or(Location::UNKNOWN, |p| p.referenced);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            problems.add(&at, &key, "file set names may hold only letters, digits, `-` and `_`");
        }
        if patterns.is_empty() {
            problems.add(&at, &key, "an empty file set; expected paths or patterns like \"/data/mas/*.pem\"");
        }
        for (i, p) in patterns.iter().enumerate() {
            if let Err(why) = crate::backup::files::check_pattern(&p.value) {
                problems.add(&p.referenced, format!("{key}[{i}]"), why);
            }
        }
        sets.push(FileSet { name: name.clone(), patterns: patterns.iter().map(|p| p.value.clone()).collect() });
    }
    sets
}

fn schedule(text: &Spanned<String>, file: &FileConfig, problems: &mut Problems<'_>, key: &str) -> Option<Schedule> {
    let cron = match text.value.trim().parse::<croner::Cron>() {
        Ok(cron) => cron,
        Err(e) => {
            problems.add(
                &text.referenced,
                key,
                format!("`{}` is not a cron expression ({e}); expected e.g. \"0 2 * * *\" (02:00 daily)", text.value),
            );
            return None;
        }
    };
    let zone_name = file.alerting.as_ref().and_then(|a| a.timezone.as_ref()).map(|t| t.value.clone());
    // An invalid zone is reported by the alerting section; fall back to UTC here.
    let timezone = zone_name.and_then(|z| jiff::tz::TimeZone::get(&z).ok()).unwrap_or(jiff::tz::TimeZone::UTC);
    let schedule = Schedule { expression: text.value.trim().to_string(), cron, timezone };
    if schedule.next_after(jiff::Timestamp::UNIX_EPOCH).is_none() {
        problems.add(&text.referenced, key, format!("`{}` never matches a time", text.value));
        return None;
    }
    Some(schedule)
}

fn retention(config: &BackupConfig, problems: &mut Problems<'_>, here: &Location) -> Retention {
    let defaults = Retention::default();
    let Some(r) = &config.retention else { return defaults };
    let retention = Retention {
        daily: r.daily.unwrap_or(defaults.daily),
        weekly: r.weekly.unwrap_or(defaults.weekly),
        monthly: r.monthly.unwrap_or(defaults.monthly),
    };
    if retention.daily + retention.weekly + retention.monthly == 0 {
        problems.add(
            here,
            "backup.retention",
            "keeps nothing: `prune --apply` would delete every backup; expected e.g. { daily: 7, weekly: 4, monthly: 6 }",
        );
    }
    retention
}

/// Checks one recipient; the message never repeats a private key.
pub(crate) fn parse_recipient(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err("this is an age private key (identity), not a recipient: give its public key (`age1…`, \
                    `age-keygen -y FILE` prints it) and keep the identity offline"
            .into());
    }
    text.parse::<age::x25519::Recipient>()
        .map(|r| r.to_string())
        .map_err(|e| format!("`{text}` is not an age public key ({e}); expected `age1…`"))
}

fn recipients(config: &BackupConfig, problems: &mut Problems<'_>, here: &Location) -> Vec<String> {
    let mut recipients = Vec::new();
    for (i, r) in config.encrypt_to.iter().enumerate() {
        match parse_recipient(&r.value) {
            Ok(key) => recipients.push(key),
            Err(why) => {
                let d = super::error::Diagnostic {
                    snippet: None, // the line may hold a private key pasted by mistake
                    ..problems.origin.at(&r.referenced, format!("backup.encrypt_to[{i}]"), why)
                };
                problems.found.push(d);
            }
        }
    }
    if let Some(f) = &config.encrypt_to_file {
        let path = problems.origin.resolve(&f.value);
        match std::fs::read_to_string(&path) {
            Err(e) => {
                problems.add(&f.referenced, "backup.encrypt_to_file", format!("cannot read {}: {e}", path.display()))
            }
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    match parse_recipient(line) {
                        Ok(key) => recipients.push(key),
                        Err(why) => problems.add(
                            &f.referenced,
                            "backup.encrypt_to_file",
                            format!("{} line {}: {}", path.display(), n + 1, why.replace(line, "…")),
                        ),
                    }
                }
            }
        }
    }
    recipients.dedup();
    if recipients.is_empty() && problems.found.iter().all(|d| !d.key.starts_with("backup.encrypt_to")) {
        problems.add(
            here,
            "backup.encrypt_to",
            "backups are always encrypted: give at least one age public key (`age1…`); \
             `mxwarden backup keygen --output FILE` makes a key pair",
        );
    }
    recipients
}

/// `dir:` or `to:` (exactly one) and the bucket's settings; `None` after reporting why not.
fn destination(config: &BackupConfig, problems: &mut Problems<'_>, here: &Location) -> Option<Store> {
    let s3_keys: [(&str, Option<&Location>); 5] = [
        ("endpoint", config.endpoint.as_ref().map(|e| &e.referenced)),
        ("region", config.region.as_ref().map(|e| &e.referenced)),
        ("access_key_id", config.access_key_id.as_ref().map(|e| &e.referenced)),
        ("secret_access_key_file", config.secret_access_key_file.as_ref().map(|e| &e.referenced)),
        ("secret_access_key", config.secret_access_key.as_ref().map(|_| here)),
    ];
    let (dir, to) = match (&config.dir, &config.to) {
        (Some(d), Some(t)) => {
            problems.add(
                &t.referenced,
                "backup.to",
                format!(
                    "set either `backup.dir` (a directory on this host, line {}) or `backup.to` (a bucket), not both",
                    d.referenced.line()
                ),
            );
            return None;
        }
        (None, None) => {
            problems.add(
                here,
                "backup",
                "no destination: set `dir: /var/backups/mxwarden` (a directory) or `to: s3://BUCKET/PREFIX` (a bucket)",
            );
            return None;
        }
        (Some(d), None) => (Some(d), None),
        (None, Some(t)) => (None, Some(t)),
    };
    if let Some(d) = dir {
        for (key, at) in s3_keys {
            if let Some(at) = at {
                problems.add(
                    at,
                    format!("backup.{key}"),
                    "only used with `backup.to` (a bucket); `backup.dir` is a directory",
                );
            }
        }
        let path = problems.origin.resolve(&d.value);
        if path.exists() && !path.is_dir() {
            problems.add(&d.referenced, "backup.dir", format!("{} exists and is not a directory", path.display()));
            return None;
        }
        return Some(Store::Dir(LocalDir::new(path)));
    }
    let to = to?;
    let (bucket, prefix) = match parse_bucket_url(&to.value) {
        Ok(p) => p,
        Err(why) => {
            problems.add(&to.referenced, "backup.to", why);
            return None;
        }
    };
    let endpoint = match &config.endpoint {
        None => None,
        Some(e) => match url::Url::parse(e.value.trim()) {
            Ok(u)
                if matches!(u.scheme(), "https" | "http")
                    && u.host_str().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none() =>
            {
                Some(e.value.trim().trim_end_matches('/').to_string())
            }
            _ => {
                problems.add(
                    &e.referenced,
                    "backup.endpoint",
                    format!("`{}` is not an http(s) base URL without credentials; expected e.g. https://s3.eu-central-003.backblazeb2.com", e.value),
                );
                return None;
            }
        },
    };
    let region = config.region.as_ref().map_or_else(|| "us-east-1".to_string(), |r| r.value.trim().to_string());
    if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        let at = config.region.as_ref().map_or(*here, |r| r.referenced);
        problems.add(
            &at,
            "backup.region",
            format!("`{region}` is not a region; expected e.g. us-east-1, eu-central-003 or auto"),
        );
        return None;
    }
    let Some(key_id) = config.access_key_id.as_ref().map(|k| k.value.trim().to_string()).filter(|k| !k.is_empty())
    else {
        let at = config.access_key_id.as_ref().map_or(to.referenced, |k| k.referenced);
        problems.add(
            &at,
            "backup.access_key_id",
            "a bucket needs an access key: set `access_key_id` and `secret_access_key` (or `secret_access_key_file`)",
        );
        return None;
    };
    let secret = match secret(
        problems.origin,
        config.secret_access_key.as_ref(),
        config.secret_access_key_file.as_ref(),
        "backup.secret_access_key",
        here,
    ) {
        Ok(Some(s)) => s,
        Ok(None) => {
            problems.add(
                here,
                "backup.secret_access_key",
                "a bucket needs the secret key: set `secret_access_key` or `secret_access_key_file`",
            );
            return None;
        }
        Err(d) => {
            problems.found.push(*d);
            return None;
        }
    };
    let s3 = S3Config {
        bucket,
        prefix,
        endpoint,
        region,
        access_key_id: key_id,
        secret_access_key: secret,
        path_style: config.path_style.unwrap_or(false),
    };
    match S3Store::new(s3) {
        Ok(s) => Some(Store::S3(s)),
        Err(why) => {
            problems.add(&to.referenced, "backup.to", why);
            None
        }
    }
}

/// A bucket keeps the journal of its uploads in flight beside the state store (`store:`,
/// `mxwarden.db` beside the config by default), which outlives a reboot, unlike the temp dir.
fn uploads_journal(storage: Store, file: &FileConfig, base_dir: &std::path::Path) -> Store {
    let Store::S3(s3) = storage else { return storage };
    // A PostgreSQL store has no file: the journal stays beside the config.
    let db = match file.store.as_ref().map(|s| crate::store::Location::parse(s.value.trim())) {
        Some(crate::store::Location::File(p)) => base_dir.join(p),
        _ => base_dir.join("mxwarden.db"),
    };
    let dir = db.parent().unwrap_or(base_dir).join("mxwarden-uploads");
    Store::S3(s3.with_journal_dir(&dir))
}

/// `s3://bucket/prefix` → (bucket, prefix without slashes at either end).
pub(crate) fn parse_bucket_url(text: &str) -> Result<(String, String), String> {
    let expected = "expected s3://BUCKET or s3://BUCKET/PREFIX";
    let Some(rest) = text.trim().strip_prefix("s3://") else {
        return Err(format!("`{text}` is not a bucket URL; {expected}"));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !bucket_ok {
        return Err(format!(
            "`{bucket}` is not a bucket name (3 to 63 lowercase letters, digits, `-` and `.`); {expected}"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p.is_empty() || p == "." || p == ".." || p.starts_with('.')) && !prefix.is_empty()
        || prefix.chars().any(|c| c.is_control() || matches!(c, '?' | '#' | '\\' | '*'))
    {
        return Err(format!(
            "`{prefix}` is not a usable key prefix (empty, `.` or `..` parts, or `?#*\\`); {expected}"
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}
