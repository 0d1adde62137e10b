//! `db-disk` — the runbook's "High Database Disk Usage": every database's size and their sum
//! against the plan's `disk_limit`; the largest tables of Synapse's database, naming its usual
//! suspects (`state_groups_state`, `event_json`, `events`, `event_edges`, `device_lists_*`);
//! the remote media cache (`synapse_admin::media_stats`). The fix for a large cache is
//! `mxwarden synapse purge-media`. A PostgreSQL linked to Render (`render: dpg-…`) without a
//! `disk_limit` is measured against Render's real disk (`diskSizeGB`), read from its API.
//! Reads the postgres service's `dsn` (`pg_database_size`
//! needs CONNECT on each database or `pg_read_all_stats`) and, for local media, the synapse
//! service's `admin_token`.

use super::synapse_admin::{media_stats, synapse_database};
use super::web::Cx;
use super::{Finding, Notes, Severity, runbook};
use crate::model::ServiceKind;
use crate::units::human_bytes;
use sqlx::Row;

/// Use of `disk_limit` over which the disk is a warning (the runbook's 80 %) and critical (90 %).
const WARNING: f64 = 0.8;
const CRITICAL: f64 = 0.9;

/// Remote media cache over this many bytes is worth purging.
const REMOTE_MEDIA_NOTABLE: u64 = 100 << 20;

/// Synapse's tables that usually grow largest, and what to do about each.
const SUSPECTS: &[(&str, &str)] = &[
    (
        "state_groups_state",
        "room state history: purge old history of big rooms (`POST /_synapse/admin/v1/purge_history/<room_id>`) or run synapse_auto_compressor",
    ),
    (
        "event_json",
        "event bodies: purge history of rooms nobody reads, or delete abandoned rooms (`DELETE /_synapse/admin/v2/rooms/<room_id>`)",
    ),
    ("events", "events: as event_json"),
    ("event_edges", "the event graph: as event_json"),
    (
        "device_lists_",
        "device list changes: remove stale devices (`POST /_synapse/admin/v2/users/<user>/delete_devices`)",
    ),
];

/// A forecast under this many days is a finding (PostgresDiskFullSoon's default).
const FULL_SOON_DAYS: f64 = 14.0;

/// The running daemon's forecast for `service` (`pg_disk_days_until_full` on its `/metrics`),
/// if a daemon with this config's `listen` address answers.
async fn days_until_full(cx: &Cx<'_>, service: &str) -> Option<f64> {
    let addr = cx.config.listen?;
    let url = url::Url::parse(&format!("http://{addr}/metrics")).ok()?;
    let answer = cx.get(&url, &crate::probe::spec::TlsOptions::default(), None).await.ok()?;
    let text = String::from_utf8_lossy(&answer.body);
    let wanted = format!("service=\"{service}\"");
    text.lines()
        .filter(|l| l.starts_with("pg_disk_days_until_full{") && l.contains(&wanted))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .filter(|d| d.is_finite())
}

/// The disk the databases are measured against, and what it is called in the evidence.
struct DiskLimit {
    bytes: u64,
    name: &'static str,
    /// How to get a bigger one.
    grow: &'static str,
}

/// `disk_limit`, or else Render's disk of a PostgreSQL linked to Render (one API call); a
/// Render answer that fails is said in the evidence and leaves no limit.
async fn disk_limit(cx: &Cx<'_>, service: &str, configured: Option<u64>, notes: &mut Notes) -> Option<DiskLimit> {
    if let Some(bytes) = configured {
        return Some(DiskLimit {
            bytes,
            name: "disk_limit",
            grow: "a database plan with a bigger disk, then raise `disk_limit`",
        });
    }
    let api = cx.config.render.as_ref()?;
    let id = cx.config.checks.iter().find_map(|c| match &c.probe {
        crate::probe::spec::ProbeSpec::Render(r) if c.service.as_deref() == Some(service) => Some(r.resource.clone()),
        _ => None,
    })?;
    let prober = crate::probe::Prober::new(std::sync::Arc::new(crate::clock::SystemClock));
    let answer = match prober.render_client(api, std::time::Duration::from_secs(20)) {
        Ok(client) => client.postgres(&id).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match answer.map(|pg| pg.disk_bytes()) {
        Ok(Some(bytes)) => Some(DiskLimit {
            bytes,
            name: "Render's disk",
            grow: "a bigger disk on Render (the database's Disk setting, or disk autoscaling)",
        }),
        Ok(None) => {
            notes.saw(format!("disk: Render reports no disk size for {id}"));
            None
        }
        Err(e) => {
            notes.saw(format!("disk: Render's disk of {id} is not known: {e}"));
            None
        }
    }
}

pub(super) async fn run(cx: &Cx<'_>, notes: &mut Notes) -> Result<(), String> {
    let pg_service = cx.service(ServiceKind::Postgres).ok_or("no postgres service")?;
    let pg =
        pg_service.postgres.as_ref().ok_or_else(|| format!("{}: its postgres check is disabled", pg_service.name))?;
    let (database, mut conn) = synapse_database(cx).await?;
    let sizes = sqlx::query(
        "SELECT datname, pg_database_size(datname)::bigint AS bytes FROM pg_database
          WHERE datallowconn AND has_database_privilege(datname, 'CONNECT') ORDER BY 2 DESC LIMIT 50",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| crate::probe::postgres::explain_query(&e))?;
    let sizes: Vec<(String, u64)> = sizes
        .iter()
        .map(|r| (r.get::<String, _>("datname"), u64::try_from(r.get::<i64, _>("bytes")).unwrap_or(0)))
        .collect();
    let total: u64 = sizes.iter().map(|(_, b)| *b).sum();
    let listed: Vec<String> = sizes.iter().take(6).map(|(d, b)| format!("{d} {}", human_bytes(*b))).collect();
    notes.saw(format!("databases: {} (total {})", listed.join(", "), human_bytes(total)));
    let tables = sqlx::query(
        "SELECT c.relname AS name, pg_total_relation_size(c.oid)::bigint AS bytes
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r','m','p') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname !~ '^pg_toast'
          ORDER BY 2 DESC LIMIT 10",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| crate::probe::postgres::explain_query(&e))?;
    let _ = sqlx::Connection::close(conn).await;
    let tables: Vec<(String, u64)> = tables
        .iter()
        .map(|r| (r.get::<String, _>("name"), u64::try_from(r.get::<i64, _>("bytes")).unwrap_or(0)))
        .collect();
    let shown: Vec<String> = tables.iter().take(5).map(|(t, b)| format!("{t} {}", human_bytes(*b))).collect();
    notes.saw(format!("largest tables of `{database}`: {}", shown.join(", ")));
    let media = match cx.service(ServiceKind::Synapse) {
        Some(s) => Some(media_stats(cx, s).await),
        None => None,
    };
    if let Some(m) = &media {
        if let (Some(n), Some(b)) = (m.remote_files, m.remote_bytes) {
            notes.saw(format!("remote media cache: {n} files, {}", human_bytes(b)));
        }
        if let Some(b) = m.local_bytes {
            notes.saw(format!("local media: {} over {} users", human_bytes(b), m.local_users.unwrap_or(0)));
        }
    }
    let remote = media.as_ref().and_then(|m| m.remote_bytes).unwrap_or(0);
    let purge = format!(
        "`mxwarden synapse purge-media --before 30d --dry-run`, then without --dry-run: deletes remote media not accessed for 30 days ({} cached now)",
        human_bytes(remote)
    );
    let suspects: Vec<String> = tables
        .iter()
        .filter_map(|(t, b)| {
            SUSPECTS
                .iter()
                .find(|(s, _)| t == s || (s.ends_with('_') && t.starts_with(s)))
                .map(|(_, fix)| format!("{t} ({}): {fix}", human_bytes(*b)))
        })
        .take(3)
        .collect();
    match disk_limit(cx, &pg_service.name, pg.disk_limit, notes).await {
        Some(DiskLimit { bytes: limit, name, grow }) => {
            let ratio = total as f64 / limit.max(1) as f64;
            // The same fixes whether the disk is nearly full or filling fast.
            let fix = || {
                let purge = (remote > 0).then(|| purge.clone());
                purge.into_iter().chain(suspects.iter().cloned()).chain([format!("or {grow}")]).collect::<Vec<_>>()
            };
            notes.saw(format!("disk: {} of {name} {} ({:.0} %)", human_bytes(total), human_bytes(limit), ratio * 100.0));
            match days_until_full(cx, &pg_service.name).await {
                Some(days) => {
                    notes.saw(format!("days until full at the current growth: {days:.1} (the daemon's forecast)"));
                    if days < FULL_SOON_DAYS {
                        notes.found(Finding {
                            severity: Severity::Warning,
                            title: format!("{}: the disk is full in {days:.1} days at the current growth", pg_service.name),
                            seen: vec![
                                format!("{} of {name} {} ({:.0} %)", human_bytes(total), human_bytes(limit), ratio * 100.0),
                                format!("largest tables of `{database}`: {}", shown.join(", ")),
                            ],
                            why: "a full disk stops PostgreSQL from writing: Synapse, MAS and Vikunja all stop".into(),
                            fix: fix(),
                            runbook: runbook::DB_DISK,
                        });
                    }
                }
                None => notes.saw("days until full: not known (needs `mxwarden run` with its status page, polling for an hour)"),
            }
            if ratio >= WARNING {
                notes.found(Finding {
                    severity: if ratio >= CRITICAL { Severity::Critical } else { Severity::Warning },
                    title: format!("{}: databases use {:.0} % of the disk", pg_service.name, ratio * 100.0),
                    seen: vec![
                        format!("{} of {name} {}", human_bytes(total), human_bytes(limit)),
                        format!("databases: {}", listed.join(", ")),
                        format!("largest tables of `{database}`: {}", shown.join(", ")),
                    ],
                    why: "a full disk stops PostgreSQL from writing: Synapse, MAS and Vikunja all stop".into(),
                    fix: fix(),
                    runbook: runbook::DB_DISK,
                });
            }
        }
        None => notes.saw(format!(
            "disk: no disk_limit on services.{} (nor Render's disk), so no share of the disk (days until full: PostgresDiskFullSoon, from the daemon's history)",
            pg_service.name
        )),
    }
    if remote >= REMOTE_MEDIA_NOTABLE {
        notes.found(Finding {
            severity: Severity::Info,
            title: format!("Synapse caches {} of remote media", human_bytes(remote)),
            seen: vec![format!(
                "remote_media_cache: {} files, {}",
                media.as_ref().and_then(|m| m.remote_files).unwrap_or(0),
                human_bytes(remote)
            )],
            why: "remote media is a copy of other servers' files: it can be fetched again when someone asks".into(),
            fix: vec![purge],
            runbook: runbook::DB_DISK,
        });
    }
    Ok(())
}
