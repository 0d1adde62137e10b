//! `mas-db` — the runbook's "MAS Database Connection Errors": PostgreSQL reachable with the
//! postgres service's DSN; the `mas` database exists; connections by database and application
//! against what normal roles may open (`max_connections` minus the reserved slots); MAS's
//! `/health` (it does a database round trip). Reads the postgres service's `dsn` (any role
//! that can log in; `pg_read_all_stats` or `pg_monitor` to see other roles' sessions) and the
//! mas service's `health_url`.

use super::web::Cx;
use super::{Finding, Notes, Severity, runbook};
use crate::model::ServiceKind;
use crate::probe::postgres::connect;
use sqlx::Row;
use std::time::Duration;

/// The database MAS uses in the runbook's setup.
const MAS_DATABASE: &str = "mas";

/// Connections in use over this share of the usable ones is a finding.
const CONNECTIONS_WARNING: f64 = 0.8;

pub(super) async fn run(cx: &Cx<'_>, notes: &mut Notes) -> Result<(), String> {
    let pg_service = cx.service(ServiceKind::Postgres).ok_or("no postgres service")?;
    let pg =
        pg_service.postgres.as_ref().ok_or_else(|| format!("{}: its postgres check is disabled", pg_service.name))?;
    let timeout = Duration::from_secs(10);
    let server = pg.target.instance();
    match connect(&pg.target, MAS_DATABASE, timeout).await {
        Ok(conn) => {
            notes.saw(format!("{server}: database `{MAS_DATABASE}` accepts connections as {}", pg.target.user));
            let _ = sqlx::Connection::close(conn).await;
        }
        Err(e) if e.0.contains("3D000") => {
            notes.found(Finding {
                severity: Severity::Critical,
                title: format!("the `{MAS_DATABASE}` database does not exist on {server}"),
                seen: vec![crate::text::escape_controls(&e.0).into_owned()],
                why: "MAS keeps its users, sessions and clients there: without it every login fails with a 500".into(),
                fix: vec![
                    format!("create it: `psql \"$DATABASE_URL\" -c 'CREATE DATABASE {MAS_DATABASE}'` (as a role with CREATEDB)"),
                    "point MAS's `database.uri` in mas.yaml at it, then run `mas-cli database migrate` (or restart MAS, which migrates on start)".into(),
                ],
                runbook: runbook::MAS_DB,
            });
        }
        Err(e) => {
            let refused = e.0.contains("53300");
            notes.found(Finding {
                severity: Severity::Critical,
                title: if refused {
                    format!("{server} has no connection slot left")
                } else {
                    format!("PostgreSQL at {server} cannot be reached with the configured DSN")
                },
                seen: vec![crate::text::escape_controls(&e.0).into_owned()],
                why: "MAS answers logins with a 500 while it cannot reach its database".into(),
                fix: vec![
                    "check `DATABASE_URL` (host, port, user, password, sslmode) against the database's connection info"
                        .into(),
                    "check that the database server is running (Render: the database's status page)".into(),
                ],
                runbook: runbook::MAS_DB,
            });
            return Ok(());
        }
    }
    let database = pg.databases.first().cloned().unwrap_or_else(|| pg.target.database.clone());
    let mut conn = connect(&pg.target, &database, timeout).await.map_err(|e| e.0)?;
    let limits = sqlx::query(
        "SELECT current_setting('max_connections')::int AS max,
                current_setting('superuser_reserved_connections')::int
                  + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
                (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS clients,
                pg_has_role(current_user, 'pg_read_all_stats', 'member') AS all_stats",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| crate::probe::postgres::explain_query(&e))?;
    let (max, reserved, clients): (i32, i32, i32) = (limits.get("max"), limits.get("reserved"), limits.get("clients"));
    let all_stats: bool = limits.get("all_stats");
    let usable = (max - reserved).max(1);
    let rows = sqlx::query(
        "SELECT coalesce(datname, '(none)') AS db, coalesce(nullif(application_name, ''), '(unnamed)') AS app, count(*)::int AS n
           FROM pg_stat_activity WHERE backend_type = 'client backend'
          GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| crate::probe::postgres::explain_query(&e))?;
    let _ = sqlx::Connection::close(conn).await;
    let by: Vec<String> = rows
        .iter()
        .map(|r| format!("{}/{}: {}", r.get::<String, _>("db"), r.get::<String, _>("app"), r.get::<i32, _>("n")))
        .collect();
    let ratio = f64::from(clients) / f64::from(usable);
    notes.saw(format!(
        "{server}: {clients} client connections of {usable} usable (max_connections {max} − {reserved} reserved), {:.0} %",
        ratio * 100.0
    ));
    if !by.is_empty() {
        notes.saw(format!("connections by database/application: {}", by.join(", ")));
    }
    if !all_stats {
        notes.saw(format!("role {} lacks pg_read_all_stats: other roles' sessions may be hidden", pg.target.user));
    }
    if ratio >= CONNECTIONS_WARNING {
        notes.found(Finding {
            severity: if clients >= usable { Severity::Critical } else { Severity::Warning },
            title: format!("{server}: {clients} of {usable} usable connections in use"),
            seen: vec![
                format!("max_connections {max}, reserved {reserved}"),
                format!("by database/application: {}", by.join(", ")),
            ],
            why: "when they are all taken MAS gets \"too many connections\" and logins fail".into(),
            fix: vec![
                "lower the pools: Synapse `database.args.cp_max`, MAS `database.max_connections`".into(),
                "or a database plan with more connections".into(),
            ],
            runbook: runbook::MAS_DB,
        });
    }
    if let Some(mas) = cx.service(ServiceKind::Mas) {
        match &mas.health_url {
            Some(url) => match cx.get(url, &mas.tls, None).await {
                Ok(a) if a.status == 200 => {
                    notes.saw(format!("{}: MAS /health answered 200 (its database round trip works)", mas.name))
                }
                Ok(a) => notes.found(Finding {
                    severity: Severity::Critical,
                    title: format!("{}: MAS /health answers {}", mas.name, a.status),
                    seen: vec![format!("GET {url}: {} {}", a.status, a.snippet())],
                    why: "MAS's health check does a database round trip: MAS cannot use its database".into(),
                    fix: vec![
                        "read MAS's log for the database error (`render logs <service> | grep -i database`)".into(),
                        "check `database.uri` in mas.yaml; restart MAS".into(),
                    ],
                    runbook: runbook::MAS_DB,
                }),
                Err(e) => notes.found(Finding {
                    severity: Severity::Critical,
                    title: format!("{}: MAS /health does not answer", mas.name),
                    seen: vec![e],
                    why: "MAS is not running, or its internal listener is not reachable".into(),
                    fix: vec!["check that MAS runs (supervisord status); restart it".into()],
                    runbook: runbook::MAS_DB,
                }),
            },
            None => notes.saw(format!("{}: no health_url, MAS's own /health not asked", mas.name)),
        }
    }
    Ok(())
}
