//! Synapse's admin API and database as `synapse media-stats`, `synapse purge-media` and the
//! `db-disk` playbook use them: local media per user (`GET /_synapse/admin/v1/statistics/
//! users/media`), the remote media cache (the `remote_media_cache` table: the admin API has
//! no total for it), and purging that cache (`POST /_synapse/admin/v1/purge_media_cache?
//! before_ts=<ms>`, body `{}`, answering `{"deleted": n}`). The admin token travels only in
//! the `Authorization` header.

use super::web::{Cx, join};
use crate::config::targets::ServiceTarget;
use crate::model::ServiceKind;
use serde::Serialize;
use sqlx::Row;
use std::time::Duration;

/// Pages of the per-user media statistics read at most (500 users each).
const MAX_PAGES: usize = 40;

/// Synapse's media, as far as mxwarden can see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct MediaStats {
    /// The synapse service.
    pub service: String,
    /// Users with local media (admin API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_users: Option<u64>,
    /// Local media files (admin API, summed over users).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_files: Option<u64>,
    /// Local media bytes (admin API, summed over users).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_bytes: Option<u64>,
    /// Remote media cached (database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_files: Option<u64>,
    /// Remote media bytes cached (database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_bytes: Option<u64>,
    /// The Synapse database's size, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_bytes: Option<u64>,
    /// The database read, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// What could not be read, and why.
    pub unavailable: Vec<String>,
}

/// The synapse service (the named one, or the only one).
pub(crate) fn synapse<'a>(cx: &Cx<'a>, name: Option<&str>) -> Result<&'a ServiceTarget, String> {
    let all: Vec<&ServiceTarget> = cx.config.services.iter().filter(|s| s.kind == ServiceKind::Synapse).collect();
    match name {
        Some(n) => all.into_iter().find(|s| s.name == n).ok_or_else(|| format!("no synapse service `{n}`")),
        None if all.len() == 1 => Ok(all[0]),
        None if all.is_empty() => Err("the config has no synapse service".into()),
        None => Err("the config has several synapse services; name one with --service".into()),
    }
}

/// Reads the media statistics.
pub(crate) async fn media_stats(cx: &Cx<'_>, synapse: &ServiceTarget) -> MediaStats {
    let mut stats = MediaStats { service: synapse.name.clone(), ..MediaStats::default() };
    match (&synapse.url, &synapse.admin_token) {
        (Some(url), Some(token)) => {
            let (mut users, mut files, mut bytes, mut from) = (0u64, 0u64, 0u64, 0u64);
            let mut complete = false;
            for _ in 0..MAX_PAGES {
                let page = join(url, &format!("/_synapse/admin/v1/statistics/users/media?limit=500&from={from}"));
                match cx.get(&page, &synapse.tls, Some(token)).await {
                    Ok(a) if a.status == 200 => {
                        let j = a.json().unwrap_or_default();
                        stats.local_users = j["total"].as_u64();
                        for u in j["users"].as_array().map(Vec::as_slice).unwrap_or_default() {
                            users += 1;
                            files = files.saturating_add(u["media_count"].as_u64().unwrap_or(0));
                            bytes = bytes.saturating_add(u["media_length"].as_u64().unwrap_or(0));
                        }
                        match j["next_token"].as_u64().or_else(|| j["next_token"].as_str().and_then(|s| s.parse().ok()))
                        {
                            Some(next) if next > from => from = next,
                            _ => {
                                complete = true;
                                break;
                            }
                        }
                    }
                    Ok(a) => {
                        stats.unavailable.push(format!(
                            "local media: the admin API answered {} {}",
                            a.status,
                            a.snippet()
                        ));
                        break;
                    }
                    Err(e) => {
                        stats.unavailable.push(format!("local media: {e}"));
                        break;
                    }
                }
            }
            if complete || users > 0 {
                stats.local_files = Some(files);
                stats.local_bytes = Some(bytes);
                if !complete {
                    stats.unavailable.push(format!("local media: only the first {users} users were counted"));
                }
            }
        }
        _ => stats.unavailable.push(format!("local media: services.{} needs url and admin_token", synapse.name)),
    }
    match synapse_database(cx).await {
        Ok((database, mut conn)) => {
            stats.database = Some(database);
            let q = sqlx::query(
                "SELECT pg_database_size(current_database())::bigint AS db,
                        to_regclass('remote_media_cache') IS NOT NULL AS has_remote",
            )
            .fetch_one(&mut conn)
            .await;
            match q {
                Ok(r) => {
                    stats.database_bytes = u64::try_from(r.get::<i64, _>("db")).ok();
                    if r.get::<bool, _>("has_remote") {
                        match sqlx::query(
                            "SELECT count(*)::bigint AS n, coalesce(sum(media_length), 0)::bigint AS b FROM remote_media_cache",
                        )
                        .fetch_one(&mut conn)
                        .await
                        {
                            Ok(r) => {
                                stats.remote_files = u64::try_from(r.get::<i64, _>("n")).ok();
                                stats.remote_bytes = u64::try_from(r.get::<i64, _>("b")).ok();
                            }
                            Err(e) => stats.unavailable.push(format!("remote media: {}", crate::probe::postgres::explain_query(&e))),
                        }
                    } else {
                        stats.unavailable.push(
                            "remote media: the database has no remote_media_cache table (is it Synapse's?)".into(),
                        );
                    }
                }
                Err(e) => stats.unavailable.push(format!("database: {}", crate::probe::postgres::explain_query(&e))),
            }
            let _ = sqlx::Connection::close(conn).await;
        }
        Err(why) => stats.unavailable.push(format!("remote media and database size: {why}")),
    }
    stats
}

/// A connection to Synapse's database: `matrix` or `synapse` among the postgres service's
/// `databases`, else its first one.
pub(crate) async fn synapse_database(cx: &Cx<'_>) -> Result<(String, sqlx::PgConnection), String> {
    let pg = cx.config.services.iter().find_map(|s| s.postgres.as_ref()).ok_or("no postgres service in the config")?;
    let database = ["matrix", "synapse"]
        .into_iter()
        .find(|d| pg.databases.iter().any(|x| x == d))
        .map(str::to_string)
        .or_else(|| pg.databases.first().cloned())
        .unwrap_or_else(|| pg.target.database.clone());
    let conn =
        crate::probe::postgres::connect(&pg.target, &database, Duration::from_secs(10)).await.map_err(|e| e.0)?;
    Ok((database, conn))
}

/// `POST /_synapse/admin/v1/purge_media_cache?before_ts=<ms>` with body `{}`: how many files
/// Synapse deleted.
pub(crate) async fn purge_media_cache(cx: &Cx<'_>, synapse: &ServiceTarget, before_ms: i64) -> Result<u64, String> {
    let url = synapse.url.as_ref().ok_or_else(|| format!("services.{} has no url", synapse.name))?;
    let token = synapse
        .admin_token
        .as_ref()
        .ok_or_else(|| format!("services.{} needs admin_token to purge media", synapse.name))?;
    let endpoint = join(url, &format!("/_synapse/admin/v1/purge_media_cache?before_ts={before_ms}"));
    let a =
        cx.request(reqwest::Method::POST, &endpoint, &synapse.tls, Some(token), Some(&serde_json::json!({}))).await?;
    if a.status != 200 {
        return Err(format!("Synapse answered {} {}", a.status, a.snippet()));
    }
    a.json()
        .and_then(|j| j["deleted"].as_u64())
        .ok_or_else(|| format!("Synapse answered 200 without a `deleted` count: {}", a.snippet()))
}

/// Remote media last accessed before `before_ms`, per the database: (files, bytes). What a
/// purge with that `before_ts` would delete.
pub(crate) async fn remote_older_than(cx: &Cx<'_>, before_ms: i64) -> Result<(u64, u64), String> {
    let (_, mut conn) = synapse_database(cx).await?;
    let r = sqlx::query(
        "SELECT count(*)::bigint AS n, coalesce(sum(media_length), 0)::bigint AS b
           FROM remote_media_cache WHERE last_access_ts < $1",
    )
    .bind(before_ms)
    .fetch_one(&mut conn)
    .await
    .map_err(|e| crate::probe::postgres::explain_query(&e))?;
    let _ = sqlx::Connection::close(conn).await;
    Ok((u64::try_from(r.get::<i64, _>("n")).unwrap_or(0), u64::try_from(r.get::<i64, _>("b")).unwrap_or(0)))
}
