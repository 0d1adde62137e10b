//! `mxwarden pg report [--service NAME] [--json]`: the runbook's PostgreSQL diagnosis for a
//! `kind: postgres` service in one report (facts from `probe::postgres::report`), with the
//! service's preset rules judged over the same facts. Exit 0 when nothing would fire, 1 when
//! the server cannot be reached, a configured database is missing or a rule would fire, 2 on
//! a wrong config or command line.

use crate::cli::rules::Verdict;
use crate::cli::{Status, outln};
use crate::config::Config;
use crate::model::{Labels, Observation, Sample};
use crate::probe::postgres::PostgresSpec;
use crate::probe::postgres::report::{self, Count, Report};
use crate::probe::spec::ProbeSpec;
use crate::units::human_bytes;
use anyhow::{Result, bail};
use clap::Subcommand;
use serde::Serialize;
use std::time::Instant;

/// `mxwarden pg …`.
#[derive(Debug, Subcommand)]
pub(crate) enum PgCommand {
    /// Connections by state against the limit, database sizes against disk_limit, the ten
    /// largest tables of each database, the longest and blocked queries, replication, the
    /// costliest statements, and the service's rules judged now.
    Report {
        /// The postgres service (needed when the config has several).
        #[arg(long)]
        service: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `pg` subcommand.
pub(crate) fn run(config: &Config, command: PgCommand) -> Result<Status> {
    match command {
        PgCommand::Report { service, json } => report_command(config, service.as_deref(), json),
    }
}

/// The report and the rules' verdicts, as `--json` prints them.
#[derive(Serialize)]
struct Printed<'a> {
    #[serde(flatten)]
    report: &'a Report,
    alerts: Vec<Verdict>,
}

/// `--json` when the server cannot be reached.
#[derive(Serialize)]
struct Unreachable<'a> {
    service: &'a str,
    dsn: String,
    error: &'a str,
}

fn pick<'a>(
    config: &'a Config,
    wanted: Option<&str>,
) -> Result<(&'a str, &'a crate::probe::spec::CheckSpec, &'a PostgresSpec)> {
    let all: Vec<(&str, &crate::probe::spec::CheckSpec, &PostgresSpec)> = config
        .checks
        .iter()
        .filter_map(|c| match (&c.probe, c.service.as_deref()) {
            (ProbeSpec::Postgres(pg), Some(service)) => Some((service, c, pg)),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = all.iter().map(|(s, _, _)| *s).collect();
    match wanted {
        Some(name) => match all.into_iter().find(|(s, _, _)| *s == name) {
            Some(found) => Ok(found),
            None if names.is_empty() => {
                bail!(
                    "no service named `{name}` with kind postgres (and its postgres check enabled) in {}",
                    config.path.display()
                )
            }
            None => bail!("no postgres service named `{name}`; the postgres services are: {}", names.join(", ")),
        },
        None => match all.len() {
            0 => bail!(
                "{} has no service with kind postgres; add one: services: {{ postgres: {{ kind: postgres, dsn: \"${{DATABASE_URL}}\" }} }}",
                config.path.display()
            ),
            1 => Ok(all[0]),
            _ => bail!("several postgres services ({}): name one with --service", names.join(", ")),
        },
    }
}

fn report_command(config: &Config, wanted: Option<&str>, json: bool) -> Result<Status> {
    let (service, check, spec) = pick(config, wanted)?;
    let mut labels = Labels::new();
    labels.insert("check".into(), check.id.0.clone());
    labels.insert("service".into(), service.to_string());
    labels.insert("instance".into(), spec.target.instance());
    let started = Instant::now();
    let at = jiff::Timestamp::now();
    let gathered =
        crate::cli::runtime()?.block_on(report::gather(service, spec, &labels, check.timeout, at.as_millisecond()));
    let report = match gathered {
        Ok(r) => r,
        Err(e) => {
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&Unreachable { service, dsn: spec.target.describe(), error: &e.0 })?
                );
            } else {
                outln!("{service}: {}", e.0);
            }
            return Ok(Status::Unhealthy);
        }
    };
    let ok = report.problems.is_empty();
    let sample = |name: &str, value: f64| Sample { name: name.into(), labels: labels.clone(), value };
    let mut samples = vec![sample("pg_up", 1.0), sample("probe_success", if ok { 1.0 } else { 0.0 })];
    samples.extend(report.judged.samples.iter().cloned());
    let observation = Observation {
        check: check.id.clone(),
        service: Some(service.to_string()),
        at,
        ok,
        latency: started.elapsed(),
        samples,
        scraped: Vec::new(),
        over_limit: false,
        failures: report.problems.clone(),
        summary: report.judged.summary.clone(),
    };
    let alerts: Vec<Verdict> = crate::cli::rules::judge_now(config, std::slice::from_ref(&observation))
        .into_iter()
        .filter(|v| v.service.as_deref() == Some(service))
        .collect();
    let healthy = ok && alerts.iter().all(Verdict::ok);
    if json {
        outln!("{}", serde_json::to_string_pretty(&Printed { report: &report, alerts })?);
    } else {
        print(&report);
        crate::cli::rules::print_verdicts(&alerts);
    }
    Ok(if healthy { Status::Healthy } else { Status::Unhealthy })
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = crate::cli::output::table(header.to_vec());
    for r in rows {
        t.add_row(crate::text::cells(r));
    }
    t.trim_fmt().lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

fn pct(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

fn secs(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 60.0 => format!("{s:.1}s"),
        Some(s) => crate::units::HumanDuration(std::time::Duration::from_secs(s as u64)).to_string(),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn counts(title: &str, rows: &[Count]) -> String {
    table(
        &[title, "COUNT"],
        rows.iter()
            .map(|c| vec![if c.name.is_empty() { "-".into() } else { c.name.clone() }, c.count.to_string()])
            .collect(),
    )
}

fn print(r: &Report) {
    let s = &r.server;
    outln!("{} — {}", r.service, r.dsn);
    outln!(
        "PostgreSQL {}, {}; connected as {} to {} (superuser: {}, pg_monitor: {})",
        s.version,
        s.role,
        s.user,
        s.database,
        if s.superuser { "yes" } else { "no" },
        if s.pg_monitor { "yes" } else { "no" }
    );
    for p in &r.problems {
        outln!("PROBLEM: {p}");
    }

    let c = &r.connections;
    outln!(
        "\nConnections: {} of {} usable ({}); max_connections {}, {} reserved for superusers",
        c.total,
        c.usable,
        pct(c.usage_ratio),
        c.max,
        c.reserved
    );
    outln!("{}", counts("STATE", &c.by_state));
    outln!("{}", counts("DATABASE", &c.by_database));
    outln!("{}", counts("APPLICATION", &c.by_application));

    let d = &r.disk;
    let wal = d
        .wal_bytes
        .map_or_else(|| " (WAL not visible without pg_monitor)".into(), |w| format!(" + {} WAL", human_bytes(w)));
    let against = match (d.limit_bytes, d.usage_ratio) {
        (Some(l), Some(ratio)) => {
            format!(" = {} of {} disk ({})", human_bytes(d.used_bytes), human_bytes(l), pct(ratio))
        }
        _ => " (set disk_limit to compare with the disk)".into(),
    };
    outln!("\nDatabases, largest first: {}{wal}{against}", human_bytes(d.databases_bytes));
    outln!(
        "{}",
        table(
            &["DATABASE", "SIZE", "OF DISK", "CONNECTIONS", "XID AGE", "CACHE HIT", "DEADLOCKS"],
            r.databases
                .iter()
                .map(|db| vec![
                    db.name.clone(),
                    db.size_bytes.map_or_else(|| "(no access)".into(), human_bytes),
                    db.share_of_disk.map_or_else(|| "-".into(), pct),
                    opt(db.connections),
                    opt(db.xid_age),
                    db.cache_hit_ratio.map_or_else(|| "-".into(), |h| format!("{:.1}%", h * 100.0)),
                    opt(db.deadlocks),
                ])
                .collect()
        )
    );

    for t in &r.tables {
        outln!("\nLargest tables in {}:", t.database);
        if let Some(e) = &t.error {
            outln!("  cannot read them: {e}");
            continue;
        }
        if t.tables.is_empty() {
            outln!("  (no tables)");
            continue;
        }
        outln!(
            "{}",
            table(
                &["TABLE", "TOTAL", "HEAP", "INDEXES", "LIVE ROWS", "DEAD ROWS"],
                t.tables
                    .iter()
                    .map(|x| vec![
                        format!("{}.{}", x.schema, x.name),
                        human_bytes(x.total_bytes as u64),
                        human_bytes(x.heap_bytes as u64),
                        human_bytes(x.index_bytes as u64),
                        opt(x.live_rows.map(|n| n as u64)),
                        opt(x.dead_rows.map(|n| n as u64)),
                    ])
                    .collect()
            )
        );
    }

    if r.longest_queries.is_empty() {
        outln!("\nLongest queries: none running, no open transactions");
    } else {
        outln!("\nLongest queries and open transactions, oldest first:");
        outln!(
            "{}",
            table(
                &["PID", "DATABASE", "USER", "APPLICATION", "STATE", "QUERY AGE", "XACT AGE", "WAITS FOR", "QUERY"],
                r.longest_queries
                    .iter()
                    .map(|q| vec![
                        q.pid.to_string(),
                        opt(q.datname.clone()),
                        opt(q.usename.clone()),
                        opt(q.application_name.clone()),
                        opt(q.state.clone()),
                        secs(q.query_seconds),
                        secs(q.xact_seconds),
                        opt(q.wait.clone()),
                        opt(q.query.as_ref().map(|q| q.chars().take(80).collect::<String>())),
                    ])
                    .collect()
            )
        );
    }
    if r.blocked.is_empty() {
        outln!("Blocked queries: none");
    } else {
        outln!("\nBlocked queries:");
        outln!(
            "{}",
            table(
                &["PID", "DATABASE", "USER", "BLOCKED BY", "WAITING", "QUERY"],
                r.blocked
                    .iter()
                    .map(|b| vec![
                        b.pid.to_string(),
                        opt(b.datname.clone()),
                        opt(b.usename.clone()),
                        b.blocked_by.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
                        secs(b.waiting_seconds),
                        opt(b.query.as_ref().map(|q| q.chars().take(80).collect::<String>())),
                    ])
                    .collect()
            )
        );
    }

    let rep = &r.replication;
    match &rep.replica {
        Some(x) => outln!(
            "\nReplication: replica; lag {} (caught up: {}, replay paused: {}, {} received but not replayed)",
            secs(rep.lag_seconds),
            opt(x.caught_up),
            opt(x.paused),
            x.backlog_bytes.map_or_else(|| "-".into(), |b| human_bytes(b.max(0.0) as u64))
        ),
        None if rep.standbys.is_empty() => outln!("\nReplication: primary, no standbys connected"),
        None => {
            outln!("\nReplication: primary with {} standby(s):", rep.standbys.len());
            outln!(
                "{}",
                table(
                    &["STANDBY", "ADDRESS", "STATE", "SYNC", "WRITE LAG", "FLUSH LAG", "REPLAY LAG", "NOT REPLAYED"],
                    rep.standbys
                        .iter()
                        .map(|s| vec![
                            opt(s.application_name.clone()),
                            opt(s.client_addr.clone()),
                            opt(s.state.clone()),
                            opt(s.sync_state.clone()),
                            secs(s.write_lag),
                            secs(s.flush_lag),
                            secs(s.replay_lag),
                            s.replay_bytes.map_or_else(|| "(hidden)".into(), |b| human_bytes(b.max(0.0) as u64)),
                        ])
                        .collect()
                )
            );
        }
    }

    let st = &r.statements;
    if !st.available {
        outln!("\nStatements: {}", st.note);
    } else {
        outln!(
            "\nStatements that took the most time{} ({}):",
            st.since.as_ref().map(|s| format!(" since {s}")).unwrap_or_default(),
            st.note
        );
        outln!(
            "{}",
            table(
                &["CALLS", "TOTAL", "MEAN", "MAX", "DATABASE", "QUERY"],
                st.top
                    .iter()
                    .map(|q| vec![
                        format!("{}", q.calls as u64),
                        format!("{:.0} ms", q.total_ms),
                        format!("{:.2} ms", q.mean_ms),
                        format!("{:.1} ms", q.max_ms),
                        opt(q.datname.clone()),
                        opt(q.query.as_ref().map(|q| q.chars().take(80).collect::<String>())),
                    ])
                    .collect()
            )
        );
    }
    if !r.missing.is_empty() {
        outln!("\nNot visible to {}:", s.user);
        for m in &r.missing {
            outln!("  - {m}");
        }
    }
}
