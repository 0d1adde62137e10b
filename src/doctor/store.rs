//! The store, proven usable: a SQLite file's directory writable (`files::store`), or a
//! PostgreSQL store reachable with the configured URL and its user allowed to create the
//! store's tables (or the tables there already). Read-only: doctor never migrates.

use super::{Area, Finding, files};
use crate::store::Location;
use sqlx::Connection;
use std::time::Duration;

/// How long the connection may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The store's findings.
pub(crate) async fn check(location: &Location) -> Vec<Finding> {
    match location {
        Location::File(path) => files::store(path).await,
        Location::Postgres(url) => vec![postgres(url, &location.display()).await],
    }
}

async fn postgres(url: &str, shown: &str) -> Finding {
    let fail = |detail: String, fix: &str| Finding::fail(Area::Store, "store", "reachable", detail, fix);
    let connected = tokio::time::timeout(TIMEOUT, sqlx::PgConnection::connect(url)).await;
    let mut conn = match connected {
        Err(_) => {
            return fail(
                format!("no answer from {shown} within {}s", TIMEOUT.as_secs()),
                "check the host, port and firewall in `store:`",
            );
        }
        Ok(Err(e)) => {
            return fail(
                format!("cannot connect to {shown}: {e}"),
                "check `store:` (host, port, user, password, database) and that PostgreSQL accepts this host in pg_hba.conf",
            );
        }
        Ok(Ok(conn)) => conn,
    };
    let asked: Result<(bool, bool, Option<String>), sqlx::Error> = sqlx::query_as(
        "SELECT to_regclass('schema_version') IS NOT NULL,
                has_schema_privilege(current_schema(), 'CREATE'),
                current_schema()::text",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    match asked {
        Ok((true, _, _)) => {
            Finding::pass(Area::Store, "store", "reachable", format!("{shown} answers and holds the store"))
        }
        Ok((false, true, _)) => Finding::pass(
            Area::Store,
            "store",
            "reachable",
            format!("{shown} answers; mxwarden creates its tables on first start"),
        ),
        Ok((false, false, schema)) => fail(
            format!(
                "{shown} answers, but its user may not create tables in schema {}",
                schema.as_deref().unwrap_or("(none on the search_path)")
            ),
            "GRANT CREATE ON SCHEMA public TO the store's user (or give it a database of its own)",
        ),
        Err(e) => fail(format!("{shown} answers, but asking it failed: {e}"), "check the store's user and database"),
    }
}
