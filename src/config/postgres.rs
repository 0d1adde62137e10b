//! `kind: postgres` services: from `dsn`, `password_file`, `disk_limit`, `databases`,
//! `statement_timeout` and `top_tables` to the one check `<service>/postgres`. Called by
//! `build` after the keys every kind shares were checked. The DSN is parsed here, so a bad one
//! is a config error with its line; its diagnostics carry no source snippet, since the line
//! may hold a password written inline.

use super::build::{Problems, secret};
use super::error::Diagnostic;
use super::schema::{FileConfig, OverrideConfig, ServiceConfig};
use crate::model::CheckId;
use crate::probe::expect::ExpectPatch;
use crate::probe::postgres::PostgresSpec;
use crate::probe::postgres::dsn::PgTarget;
use crate::probe::spec::{CheckSpec, ProbeSpec};
use secrecy::ExposeSecret;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeSet;
use std::time::Duration;

/// The default `statement_timeout`, unless half the check's timeout is shorter.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A diagnostic at `location` without the source line (it may hold a secret).
fn secret_diagnostic(problems: &mut Problems<'_>, location: &Location, key: String, message: String) {
    let d = Diagnostic { snippet: None, ..problems.origin.at(location, key, message) };
    problems.found.push(d);
}

/// The check of one postgres service, or `None` when it is disabled or invalid (the problems
/// are recorded).
pub(super) fn check(
    name: &str,
    spanned: &Spanned<ServiceConfig>,
    file: &FileConfig,
    problems: &mut Problems<'_>,
    disabled: &BTreeSet<&'static str>,
    overrides: &[(&'static str, OverrideConfig, Option<ExpectPatch>)],
) -> Option<CheckSpec> {
    let service = &spanned.value;
    let here = spanned.referenced;
    let key = format!("services.{name}");
    let target = match &service.dsn {
        None => {
            problems.add(
                &here,
                format!("{key}.dsn"),
                "kind postgres needs `dsn`, e.g. dsn: \"${DATABASE_URL}\" (postgresql://user:password@host:5432/database)",
            );
            None
        }
        Some(dsn) => match PgTarget::parse(dsn.value.expose_secret()) {
            Ok(target) => Some(target),
            Err(why) => {
                secret_diagnostic(problems, &dsn.referenced, format!("{key}.dsn"), why);
                None
            }
        },
    };
    let password =
        problems.take(secret(problems.origin, None, service.password_file.as_ref(), &format!("{key}.password"), &here));
    let mut target = target?;
    if let Some(password) = password.flatten() {
        if target.password.is_some() {
            let at = service.password_file.as_ref().map_or(here, |f| f.referenced);
            problems.add(
                &at,
                format!("{key}.password_file"),
                "the dsn already holds a password; set it in one place, the dsn or password_file",
            );
            return None;
        }
        target = target.with_password(password);
    }
    let mut databases = Vec::new();
    for (i, db) in service.databases.iter().enumerate() {
        if db.value.trim().is_empty() {
            problems.add(&db.referenced, format!("{key}.databases[{i}]"), "a database name cannot be empty");
        } else if databases.contains(&db.value) {
            problems.add(&db.referenced, format!("{key}.databases[{i}]"), format!("`{}` is listed twice", db.value));
        } else {
            databases.push(db.value.clone());
        }
    }
    if service.disk_limit.is_some_and(|d| d.0 == 0) {
        problems.add(&here, format!("{key}.disk_limit"), "must be more than 0 bytes, e.g. 1GiB");
    }
    if service.top_tables == Some(0) {
        problems.add(&here, format!("{key}.top_tables"), "must be at least 1");
    }
    let mut spec = CheckSpec {
        id: CheckId(format!("{name}/postgres")),
        service: Some(name.to_string()),
        interval: service.interval.unwrap_or(file.defaults.interval).0,
        timeout: service.timeout.unwrap_or(file.defaults.timeout).0,
        probe: ProbeSpec::Postgres(PostgresSpec {
            target,
            databases,
            disk_limit: service.disk_limit.map(|d| d.0),
            statement_timeout: Duration::ZERO,
            top_tables: service.top_tables.unwrap_or(10),
        }),
    };
    for (short, o, _) in overrides {
        if *short != "postgres" {
            continue;
        }
        if o.expect.is_some() {
            problems.add(
                &here,
                format!("{key}.overrides.postgres.expect"),
                "`expect` applies to HTTP checks; the postgres check has thresholds instead",
            );
        }
        if let Some(i) = o.interval {
            spec.interval = i.0;
        }
        if let Some(t) = o.timeout {
            spec.timeout = t.0;
        }
    }
    let statement_timeout = service.statement_timeout.map_or((spec.timeout / 2).min(STATEMENT_TIMEOUT), |d| d.0);
    if statement_timeout.is_zero() || statement_timeout >= spec.timeout {
        problems.add(
            &here,
            format!("{key}.statement_timeout"),
            format!(
                "must be more than 0 and shorter than the check's timeout ({}), so the server gives up before mxwarden does",
                crate::units::HumanDuration(spec.timeout)
            ),
        );
    }
    if let ProbeSpec::Postgres(pg) = &mut spec.probe {
        pg.statement_timeout = statement_timeout;
    }
    (!disabled.contains("postgres")).then_some(spec)
}
