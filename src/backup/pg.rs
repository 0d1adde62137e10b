//! PostgreSQL for backups: the client tools' environment (the connection goes to `pg_dump` &
//! co. as `PG*` variables, so the password is never on a command line), their versions
//! against the server's, and the few SQL statements backups need: the list of databases,
//! whether one exists, create/drop for restores, and exact row counts for restore tests.

use crate::probe::postgres::dsn::{PgHost, PgTarget, SslMode};
use secrecy::ExposeSecret;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// libpq environment variables for `database` on `target`'s server.
pub(crate) fn env(target: &PgTarget, database: &str) -> Vec<(&'static str, OsString)> {
    let mut env: Vec<(&'static str, OsString)> = vec![
        ("PGPORT", target.port.to_string().into()),
        ("PGUSER", target.user.clone().into()),
        ("PGDATABASE", database.into()),
        ("PGAPPNAME", format!("{}-backup", target.application_name).into()),
    ];
    match &target.host {
        PgHost::Tcp(h) => {
            env.push(("PGHOST", h.into()));
            let mode = match target.sslmode {
                SslMode::Disable => "disable",
                SslMode::Prefer => "prefer",
                SslMode::Require => "require",
                SslMode::VerifyCa => "verify-ca",
                SslMode::VerifyFull => "verify-full",
            };
            env.push(("PGSSLMODE", mode.into()));
        }
        PgHost::Socket(dir) => env.push(("PGHOST", dir.into())),
    }
    if let Some(p) = &target.password {
        env.push(("PGPASSWORD", p.expose_secret().into()));
    }
    for (name, path) in
        [("PGSSLROOTCERT", &target.sslrootcert), ("PGSSLCERT", &target.sslcert), ("PGSSLKEY", &target.sslkey)]
    {
        if let Some(p) = path {
            env.push((name, p.into()));
        }
    }
    if let Some(t) = target.connect_timeout {
        env.push(("PGCONNECT_TIMEOUT", t.as_secs().to_string().into()));
    }
    env
}

/// Variables a caller's environment may hold that would redirect the tools elsewhere.
pub(crate) const CLEARED: &[&str] =
    &["PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", "PGOPTIONS", "PGHOSTADDR", "PGREQUIRESSL"];

/// A client tool set up for `database`: environment, no password prompt.
pub(crate) fn command(tool: &Path, target: &PgTarget, database: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(tool);
    for name in CLEARED {
        c.env_remove(name);
    }
    c.envs(env(target, database)).arg("--no-password").kill_on_drop(true);
    c
}

/// The major version in `pg_dump --version` output (`pg_dump (PostgreSQL) 15.8 (Debian …)`).
pub(crate) fn tool_major(version: &str) -> Option<u32> {
    let after = version.split(')').nth(1).unwrap_or(version);
    after.split(|c: char| !c.is_ascii_digit()).find(|p| !p.is_empty())?.parse().ok()
}

/// The server's major version from `server_version_num` (150008 → 15; 90624 → 9).
pub(crate) fn server_major(version_num: u32) -> u32 {
    version_num / 10_000
}

/// `Err` with what to do when the tool is older than the server (pg_dump refuses newer
/// servers, and an older one could not read what they have).
pub(crate) fn check_versions(tool: &str, tool_version: &str, server_version_num: u32) -> Result<(), String> {
    let Some(tool_major) = tool_major(tool_version) else {
        return Err(format!("cannot read {tool}'s version from `{}`", tool_version.trim()));
    };
    let server = server_major(server_version_num);
    if tool_major < server {
        return Err(format!(
            "{tool} is version {tool_major} but the server runs PostgreSQL {server}: {tool} must be at least the \
             server's major version; install the PostgreSQL {server} client tools and point `backup.pg_bin_dir` \
             at them (e.g. /usr/lib/postgresql/{server}/bin)"
        ));
    }
    Ok(())
}

/// `TOOL --version`, trimmed.
pub(crate) async fn tool_version(tool: &Path) -> Result<String, String> {
    let out = tokio::process::Command::new(tool)
        .arg("--version")
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    if !out.status.success() {
        return Err(format!("{} --version failed ({})", tool.display(), out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A connection to `database`.
pub(crate) async fn connect(target: &PgTarget, database: &str) -> Result<PgConnection, String> {
    let options = target.connect_options(database);
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(crate::probe::postgres::explain_connect(&e, target, database)),
        Err(_) => Err(format!(
            "cannot connect to {}: no answer within {}s",
            target.describe_db(database),
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// What the backup needs to know about a server.
#[derive(Debug, Clone)]
pub(crate) struct ServerFacts {
    /// `server_version`.
    pub version: String,
    /// `server_version_num`.
    pub version_num: u32,
    /// Whether the role is a superuser (else `pg_dumpall` leaves role passwords out).
    pub superuser: bool,
    /// Databases that accept connections, templates left out, by name.
    pub databases: Vec<String>,
}

/// Asks the server for its version, the role's rights and its databases.
pub(crate) async fn facts(conn: &mut PgConnection) -> Result<ServerFacts, String> {
    let row = sqlx::query(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
         (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| format!("cannot read the server version: {e}"))?;
    let databases = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| format!("cannot list the databases: {e}"))?;
    Ok(ServerFacts {
        version: row.try_get(0).map_err(|e| e.to_string())?,
        version_num: row.try_get::<i32, _>(1).map_err(|e| e.to_string())?.max(0) as u32,
        superuser: row.try_get::<Option<bool>, _>(2).map_err(|e| e.to_string())?.unwrap_or(false),
        databases,
    })
}

/// `"name"`, quoted as an SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether `database` exists.
pub(crate) async fn exists(conn: &mut PgConnection, database: &str) -> Result<bool, String> {
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(database)
        .fetch_one(conn)
        .await
        .map_err(|e| format!("cannot look for database {database}: {e}"))
}

/// `CREATE DATABASE` from `template0` (what a restore of `pg_dump -Fc` wants).
pub(crate) async fn create(conn: &mut PgConnection, database: &str) -> Result<(), String> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {} TEMPLATE template0", ident(database))))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot create database {database}: {e}"))
}

/// `DROP DATABASE … WITH (FORCE)`: also when sessions are connected.
pub(crate) async fn drop(conn: &mut PgConnection, database: &str) -> Result<(), String> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(database))))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot drop database {database}: {e}"))
}

/// Exact row counts of every table (`schema.table` → rows), system schemas left out.
pub(crate) async fn row_counts(conn: &mut PgConnection) -> Result<BTreeMap<String, i64>, String> {
    let tables = sqlx::query(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| format!("cannot list tables: {e}"))?;
    let mut counts = BTreeMap::new();
    for t in tables {
        let (schema, table): (String, String) =
            (t.try_get(0).map_err(|e| e.to_string())?, t.try_get(1).map_err(|e| e.to_string())?);
        let sql = format!("SELECT count(*) FROM ONLY {}.{}", ident(&schema), ident(&table));
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| format!("cannot count {schema}.{table}: {e}"))?;
        counts.insert(format!("{schema}.{table}"), n);
    }
    Ok(counts)
}

/// At most this many tables are counted for a manifest: more is not a Matrix stack's database.
pub(crate) const MAX_COUNTED_TABLES: i64 = 20_000;

/// How long counting the rows of one database for its manifest may take, in all.
const COUNT_TIMEOUT: &str = "15min";

/// A transaction holding an exported snapshot: `pg_dump --snapshot=ID` dumps exactly what it
/// sees, so the row counts taken in it are the dump's own.
pub(crate) struct Snapshot {
    conn: PgConnection,
    /// The id for `pg_dump --snapshot`.
    pub id: String,
}

impl Snapshot {
    /// Opens a repeatable-read transaction on `database` and exports its snapshot.
    pub(crate) async fn export(target: &PgTarget, database: &str) -> Result<Self, String> {
        let mut conn = connect(target, database).await?;
        let begun = async {
            sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut conn).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL statement_timeout = '{COUNT_TIMEOUT}'")))
                .execute(&mut conn)
                .await?;
            // One process counts, beside the one pg_dump reads with: parallel workers would
            // take the cores the dump and its compression need (BENCHMARKS.md, "Backups to S3").
            sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0").execute(&mut conn).await?;
            sqlx::query_scalar::<_, String>("SELECT pg_export_snapshot()").fetch_one(&mut conn).await
        }
        .await;
        match begun {
            Ok(id) => Ok(Self { conn, id }),
            Err(e) => {
                close(conn).await;
                Err(format!("cannot export a snapshot of {database}: {e}"))
            }
        }
    }

    /// Exact row counts of every table, as the snapshot sees them (bounded: at most
    /// [`MAX_COUNTED_TABLES`] tables, within the transaction's statement timeout).
    pub(crate) async fn row_counts(&mut self) -> Result<BTreeMap<String, i64>, String> {
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'",
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(|e| format!("cannot list tables: {e}"))?;
        if tables > MAX_COUNTED_TABLES {
            return Err(format!("{tables} tables, more than the {MAX_COUNTED_TABLES} counted"));
        }
        row_counts(&mut self.conn).await
    }

    /// Ends the transaction (after `pg_dump` has finished with the snapshot).
    pub(crate) async fn finish(mut self) {
        let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
        close(self.conn).await;
    }
}

/// Closes a connection politely.
pub(crate) async fn close(conn: PgConnection) {
    let _ = conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compared_by_major() {
        let cases: &[(&str, u32, bool, &str)] = &[
            ("pg_dump (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)", 150_008, true, "same major"),
            ("pg_dump (PostgreSQL) 16.2", 150_008, true, "a newer pg_dump reads older servers"),
            ("pg_dump (PostgreSQL) 15.8", 160_002, false, "pg_dump 15 against PostgreSQL 16"),
            ("pg_dump (PostgreSQL) 9.6.24", 100_023, false, "9.6 against 10"),
        ];
        for (tool, server, ok, why) in cases {
            let got = check_versions("pg_dump", tool, *server);
            assert_eq!(got.is_ok(), *ok, "{why}: {got:?}");
        }
        let e = check_versions("pg_dump", "pg_dump (PostgreSQL) 15.8", 160_002).unwrap_err();
        assert!(e.contains("pg_dump is version 15 but the server runs PostgreSQL 16"), "{e}");
        assert!(e.contains("/usr/lib/postgresql/16/bin"), "says what to do: {e}");
    }

    #[test]
    fn the_password_travels_in_the_environment() {
        let t = PgTarget::parse("postgresql://u:pw@db:6543/matrix?sslmode=require").unwrap();
        let env = env(&t, "mas");
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string_lossy().into_owned());
        assert_eq!(get("PGPASSWORD").as_deref(), Some("pw"));
        assert_eq!(get("PGDATABASE").as_deref(), Some("mas"));
        assert_eq!(get("PGHOST").as_deref(), Some("db"));
        assert_eq!(get("PGPORT").as_deref(), Some("6543"));
        assert_eq!(get("PGSSLMODE").as_deref(), Some("require"));
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
    }
}
