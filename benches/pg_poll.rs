//! What one PostgreSQL poll costs the server. Starts a throw-away PostgreSQL 15 cluster
//! (`scripts/lib/pg-init.sh`, as the `postgres` OS user when run as root) with the stack's four
//! databases and `pg_stat_statements`, then runs the probe's poll (`probe::postgres::poll`,
//! the real code: the cluster statement, WAL, `pg_stat_statements`) many times against the idle
//! server, in three series: over the connection the daemon keeps between polls (its steady
//! state), over a new connection each time (a one-shot `mxwarden check`, or the poll after one
//! that visited another database), and with the largest-tables statement that a poll adds
//! every ten minutes per database. Reports, per poll:
//!
//! - executor time: what PostgreSQL itself records for the poll's statements
//!   (`pg_stat_statements`, reset before each series; `SET LOCAL`s included). It leaves out
//!   parsing, planning and a new backend's catalog-cache loading;
//! - connect: the client's view of opening the connection (backend fork, startup,
//!   authentication) or, when kept, of checking that it still answers (one empty query);
//! - queries: the client's view of the statements, round trips included: on a loopback
//!   connection to an otherwise idle server, this is the server's time for the statements;
//! - total: connect + queries, the DB time one poll costs.
//!
//! Run: `cargo bench --bench pg_poll` (`PG_POLL_RUNS=N` to change the 300 polls per series).
//! Figures: `BENCHMARKS.md`, "PostgreSQL poll". Not a timed test: it measures, it never fails
//! on a figure.

use mxwarden::probe::postgres::dsn::PgTarget;
use mxwarden::probe::postgres::{PostgresSpec, Session};
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PGBIN: &str = "/usr/lib/postgresql/15/bin";

/// A cluster started with `pg_ctl`, stopped (and removed) on drop, even after a panic.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

impl Cluster {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = PathBuf::from(format!("/tmp/mxwarden-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let init = Command::new("bash")
            .arg(repo.join("scripts/lib/pg-init.sh"))
            .arg(&dir)
            .arg(port.to_string())
            .output()
            .expect("run scripts/lib/pg-init.sh");
        assert!(init.status.success(), "pg-init.sh failed: {}", String::from_utf8_lossy(&init.stderr));
        let cluster = Self { dir, port };
        let start = as_postgres(&format!("{PGBIN}/pg_ctl"))
            .arg("-D")
            .arg(cluster.dir.join("data"))
            .arg("-l")
            .arg(cluster.dir.join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl start");
        assert!(start.status.success(), "pg_ctl start failed: {}", String::from_utf8_lossy(&start.stderr));
        cluster
    }

    fn dsn(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&format!("{PGBIN}/pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Series {
    name: &'static str,
    server_ms: f64,
    statements: usize,
    connect: Vec<Duration>,
    queries: Vec<Duration>,
    total: Vec<Duration>,
}

async fn series(
    name: &'static str,
    c: &Cluster,
    spec: &PostgresSpec,
    keep: bool,
    with_tables: bool,
    runs: usize,
) -> Series {
    let mut admin = PgConnection::connect(&c.dsn("matrix")).await.expect("connect");
    let mut session = Session::default();
    let timeout = Duration::from_secs(10);
    for _ in 0..5 {
        session.poll(spec, "matrix", with_tables, timeout).await.expect("a warm-up poll");
        if !keep {
            session.close().await;
        }
    }
    sqlx::raw_sql("SELECT pg_stat_statements_reset()").execute(&mut admin).await.expect("reset");
    let (mut connect, mut queries, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut statements = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let polled = session.poll(spec, "matrix", with_tables, timeout).await.expect("a poll");
        total.push(started.elapsed());
        assert_eq!(polled.fresh, !keep, "kept connections are reused, others are not");
        if !keep {
            session.close().await; // outside the timing: the server's side is a clean exit
        }
        connect.push(polled.connect);
        queries.push(polled.queries);
        statements = polled.statements;
    }
    let server: f64 = sqlx::query_scalar(
        "SELECT coalesce(sum(total_exec_time + total_plan_time), 0)::float8 FROM pg_stat_statements
         WHERE query NOT LIKE '%pg_stat_statements_reset%' AND query NOT LIKE '%FROM pg_stat_statements\n%'",
    )
    .fetch_one(&mut admin)
    .await
    .expect("read pg_stat_statements");
    let _ = admin.close().await;
    session.close().await;
    for v in [&mut connect, &mut queries, &mut total] {
        v.sort();
    }
    Series { name, server_ms: server / runs as f64, statements, connect, queries, total }
}

fn main() {
    // `cargo test --benches` runs bench targets once with `--bench` absent: keep that cheap.
    let benching = std::env::args().any(|a| a == "--bench");
    let runs: usize =
        std::env::var("PG_POLL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(if benching { 300 } else { 5 });
    let cluster = Cluster::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let results = runtime.block_on(async {
        let mut admin = PgConnection::connect(&cluster.dsn("postgres")).await.expect("connect");
        for db in ["matrix", "mas", "vikunja", "authentik"] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&mut admin)
                .await
                .expect("create");
        }
        let _ = admin.close().await;
        let mut matrix = PgConnection::connect(&cluster.dsn("matrix")).await.expect("connect");
        sqlx::raw_sql("CREATE EXTENSION pg_stat_statements").execute(&mut matrix).await.expect("extension");
        let _ = matrix.close().await;
        let spec = PostgresSpec {
            target: PgTarget::parse(&cluster.dsn("matrix")).expect("dsn"),
            databases: ["matrix", "mas", "vikunja", "authentik"].map(String::from).to_vec(),
            disk_limit: Some(256 << 20),
            statement_timeout: Duration::from_secs(5),
            top_tables: 10,
        };
        vec![
            series("kept connection (the daemon)", &cluster, &spec, true, false, runs).await,
            series("kept connection + largest tables", &cluster, &spec, true, true, runs).await,
            series("new connection each poll (one-shot check)", &cluster, &spec, false, false, runs).await,
        ]
    });
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("PostgreSQL poll against an idle PostgreSQL 15 on 127.0.0.1 (TCP, trust auth), {runs} polls per series");
    println!("load average before: {}; after: {}", load.trim(), load_after.trim());
    println!();
    println!(
        "| poll | statements | executor time / poll (pg_stat_statements) | connect p50 / p95 | queries p50 / p95 | total p50 / p95 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for s in &results {
        println!(
            "| {} | {} | {:.3} ms | {} / {} | {} / {} | {} / {} |",
            s.name,
            s.statements,
            s.server_ms,
            ms(quantile(&s.connect, 0.5)),
            ms(quantile(&s.connect, 0.95)),
            ms(quantile(&s.queries, 0.5)),
            ms(quantile(&s.queries, 0.95)),
            ms(quantile(&s.total, 0.5)),
            ms(quantile(&s.total, 0.95)),
        );
    }
}
