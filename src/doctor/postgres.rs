//! PostgreSQL: for each `kind: postgres` service, its role can read the statistics views
//! (superuser, or a member of `pg_monitor` or `pg_read_all_stats`: without them
//! `pg_stat_activity` hides other roles' sessions and queries), and `pg_stat_statements` is
//! installed and loaded in the DSN's database (the slow-query rule reads it). For each
//! database the backup dumps: `pg_dump` runs and its major version is at least the server's.

use super::{Area, Finding};
use crate::config::Config;
use crate::probe::postgres::dsn::PgTarget;
use crate::probe::spec::ProbeSpec;
use sqlx::Row;

/// What the role and the database said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleFacts {
    /// The role's name.
    pub role: String,
    /// The connected database.
    pub database: String,
    /// Superuser.
    pub superuser: bool,
    /// Member of `pg_monitor`.
    pub pg_monitor: bool,
    /// Member of `pg_read_all_stats` (part of `pg_monitor`).
    pub read_all_stats: bool,
    /// `pg_stat_statements`' version, if the extension is created in this database.
    pub statements: Option<String>,
    /// When it is created: `Ok` if reading it works, else the server's error (not loaded).
    pub statements_read: Result<(), String>,
}

/// Every postgres service and every backup source.
pub(crate) async fn check_all(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    for spec in &config.checks {
        let (Some(service), ProbeSpec::Postgres(pg)) = (&spec.service, &spec.probe) else { continue };
        match facts(&pg.target).await {
            Ok(facts) => findings.extend(judge_role(service, &facts)),
            Err(why) => findings.push(Finding::fail(
                Area::Postgres,
                service,
                "connect",
                why,
                "check `dsn` (host, port, role, password) and that this host may connect (pg_hba.conf, firewall)",
            )),
        }
    }
    if let Some(plan) = &config.backup {
        let tool = crate::backup::pg::tool_version(&plan.tools.pg_dump).await;
        for source in &plan.sources {
            let server = server_version(&source.target).await;
            findings.push(judge_pg_dump(&source.service, &plan.tools.pg_dump.display().to_string(), &tool, &server));
        }
    }
    findings
}

async fn facts(target: &PgTarget) -> Result<RoleFacts, String> {
    let mut conn = crate::backup::pg::connect(target, &target.database).await?;
    let row = sqlx::query(
        "SELECT current_user::text, current_database()::text, \
         coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false), \
         pg_has_role(current_user, 'pg_monitor', 'MEMBER'), \
         pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER'), \
         (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| format!("cannot read the role's rights: {}", crate::probe::postgres::explain_query(&e)))?;
    let get = |e: sqlx::Error| e.to_string();
    let statements: Option<String> = row.try_get(5).map_err(get)?;
    let statements_read = if statements.is_some() {
        sqlx::query("SELECT 1 FROM pg_stat_statements(false) LIMIT 1")
            .fetch_optional(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| crate::probe::postgres::explain_query(&e))
    } else {
        Ok(())
    };
    Ok(RoleFacts {
        role: row.try_get(0).map_err(get)?,
        database: row.try_get(1).map_err(get)?,
        superuser: row.try_get(2).map_err(get)?,
        pg_monitor: row.try_get(3).map_err(get)?,
        read_all_stats: row.try_get(4).map_err(get)?,
        statements,
        statements_read,
    })
}

async fn server_version(target: &PgTarget) -> Result<u32, String> {
    let mut conn = crate::backup::pg::connect(target, &target.database).await?;
    let facts = crate::backup::pg::facts(&mut conn).await?;
    Ok(facts.version_num)
}

/// The role's findings (pure): statistics rights, then `pg_stat_statements`.
pub(crate) fn judge_role(service: &str, f: &RoleFacts) -> Vec<Finding> {
    let role = crate::backup::pg::ident(&f.role);
    let monitor = if f.superuser {
        Finding::pass(Area::Postgres, service, "pg_monitor", format!("{role} is a superuser"))
    } else if f.pg_monitor || f.read_all_stats {
        let which = if f.pg_monitor { "pg_monitor" } else { "pg_read_all_stats" };
        Finding::pass(Area::Postgres, service, "pg_monitor", format!("{role} is a member of {which}"))
    } else {
        Finding::fail(
            Area::Postgres,
            service,
            "pg_monitor",
            format!(
                "{role} is neither a superuser nor a member of pg_monitor: pg_stat_activity hides other roles' sessions"
            ),
            format!("as a superuser: GRANT pg_monitor TO {role};"),
        )
    };
    let db = crate::backup::pg::ident(&f.database);
    let statements = match (&f.statements, &f.statements_read) {
        (Some(v), Ok(())) => {
            Finding::pass(Area::Postgres, service, "pg_stat_statements", format!("version {v} in {db}, readable"))
        }
        (Some(v), Err(why)) => Finding::fail(
            Area::Postgres,
            service,
            "pg_stat_statements",
            format!("version {v} is installed in {db} but cannot be read: {why}"),
            "add pg_stat_statements to shared_preload_libraries in postgresql.conf and restart PostgreSQL",
        ),
        (None, _) => Finding::warn(
            Area::Postgres,
            service,
            "pg_stat_statements",
            format!("not installed in {db}: the slow-query rule (PostgresQueriesSlow) has no data"),
            format!(
                "with pg_stat_statements in shared_preload_libraries: CREATE EXTENSION pg_stat_statements; in {db}"
            ),
        ),
    };
    vec![monitor, statements]
}

/// `pg_dump`'s verdict (pure): `tool` is `pg_dump --version` or why it did not run; `server`
/// the server's `server_version_num` or why it is unknown.
pub(crate) fn judge_pg_dump(
    service: &str,
    tool_path: &str,
    tool: &Result<String, String>,
    server: &Result<u32, String>,
) -> Finding {
    let fail = |detail: String, fix: String| Finding::fail(Area::Backup, service, "pg_dump version", detail, fix);
    let version = match tool {
        Ok(v) => v,
        Err(why) => {
            return fail(
                why.clone(),
                format!(
                    "install the PostgreSQL client tools (Debian: postgresql-client-N for the server's major N) or \
                     point `backup.pg_bin_dir` at them; looked for {tool_path}"
                ),
            );
        }
    };
    let server = match server {
        Ok(n) => *n,
        Err(why) => {
            return fail(format!("cannot ask the server its version: {why}"), "check the service's `dsn`".into());
        }
    };
    match crate::backup::pg::check_versions("pg_dump", version, server) {
        Ok(()) => Finding::pass(
            Area::Backup,
            service,
            "pg_dump version",
            format!(
                "{} against server {}",
                crate::text::escape_controls(version),
                crate::backup::pg::server_major(server)
            ),
        ),
        Err(why) => {
            let major = crate::backup::pg::server_major(server);
            fail(
                format!("{}: {why}", crate::text::escape_controls(version)),
                format!(
                    "install postgresql-client-{major} and set `backup.pg_bin_dir: /usr/lib/postgresql/{major}/bin`"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Outcome;

    fn facts() -> RoleFacts {
        RoleFacts {
            role: "mxwarden".into(),
            database: "postgres".into(),
            superuser: false,
            pg_monitor: true,
            read_all_stats: true,
            statements: Some("1.10".into()),
            statements_read: Ok(()),
        }
    }

    #[test]
    fn role_verdicts() {
        let plain = RoleFacts { pg_monitor: false, read_all_stats: false, ..facts() };
        let stats_only = RoleFacts { pg_monitor: false, ..facts() };
        let superuser = RoleFacts { superuser: true, pg_monitor: false, read_all_stats: false, ..facts() };
        let not_loaded =
            RoleFacts { statements_read: Err("must be loaded via shared_preload_libraries".into()), ..facts() };
        let missing = RoleFacts { statements: None, ..facts() };
        let cases = [
            (facts(), [Outcome::Pass, Outcome::Pass], "", "pg_monitor and the extension"),
            (plain, [Outcome::Fail, Outcome::Pass], "GRANT pg_monitor TO \"mxwarden\";", "a plain role"),
            (stats_only, [Outcome::Pass, Outcome::Pass], "", "pg_read_all_stats is the part that matters"),
            (superuser, [Outcome::Pass, Outcome::Pass], "", "a superuser sees everything"),
            (not_loaded, [Outcome::Pass, Outcome::Fail], "shared_preload_libraries", "created, not loaded"),
            (missing, [Outcome::Pass, Outcome::Warn], "CREATE EXTENSION pg_stat_statements", "not created: a warning"),
        ];
        for (f, want, fix, why) in cases {
            let got = judge_role("postgres", &f);
            assert_eq!([got[0].outcome, got[1].outcome], want, "{why}: {got:?}");
            if !fix.is_empty() {
                assert!(got.iter().any(|g| g.fix.as_deref().is_some_and(|x| x.contains(fix))), "{why}: {got:?}");
            }
        }
    }

    #[test]
    fn a_quoted_role_name_cannot_break_the_grant() {
        let f = RoleFacts { role: "we\"ird; DROP".into(), pg_monitor: false, read_all_stats: false, ..facts() };
        let got = judge_role("postgres", &f);
        assert_eq!(got[0].fix.as_deref(), Some("as a superuser: GRANT pg_monitor TO \"we\"\"ird; DROP\";"));
    }

    #[test]
    fn pg_dump_verdicts() {
        let v15 = Ok("pg_dump (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)".to_string());
        let v96 = Ok("pg_dump (PostgreSQL) 9.6.24".to_string());
        let cases = [
            (v15.clone(), Ok(150008), true, "", "same major"),
            (v15.clone(), Ok(140010), true, "", "a newer pg_dump dumps older servers"),
            (v96, Ok(150008), false, "postgresql-client-15", "too old"),
            (Err("cannot run pg_dump: No such file".into()), Ok(150008), false, "pg_bin_dir", "missing"),
            (v15, Err("refused".into()), false, "dsn", "server unknown"),
        ];
        for (tool, server, ok, fix, why) in cases {
            let f = judge_pg_dump("postgres", "pg_dump", &tool, &server);
            assert_eq!(f.outcome == Outcome::Pass, ok, "{why}: {f:?}");
            assert!(f.fix.unwrap_or_default().contains(fix), "{why}");
        }
    }
}
