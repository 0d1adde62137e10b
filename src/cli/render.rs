//! `mxwarden render discover|status|deploys|events|logs|restart`: Render's view of the stack
//! on the command line, through the same client the render probe uses (`crate::render`).
//! Every read has `--json`. Exit 0 all well, 1 a finding (a suspended service, a failed
//! deploy, an API error), 2 a wrong call (no `render:` in the config, an unknown service).

use crate::cli::{Status, outln};
use crate::config::Config;
use crate::probe::render::RenderApi;
use crate::render::client::{LogQuery, RenderClient};
use crate::render::model::{Deploy, DeployPhase, LogLine, MetricSeries};
use crate::render::{RenderError, ResourceKind};
use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// The `render` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RenderCommand {
    /// List the workspace's services and databases with their ids, and the config lines to paste.
    Discover {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every linked service: plan, suspension, newest deploy, instances' memory and CPU
    /// against their limits, last failure; a database's status and real disk.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A service's deploys, newest first.
    Deploys {
        /// The service (its name under `services:`) or a Render id.
        service: String,
        /// How many.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A service's events (deploys, failures, restarts, …), newest first.
    Events {
        /// The service (its name under `services:`) or a Render id.
        service: String,
        /// How far back, e.g. `24h`.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Only this event type, e.g. `server_failed`.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A service's log lines, oldest first (`--grep memory --limit 100` replaces the runbook's
    /// `render logs synapse --tail 100 | grep -i memory`).
    Logs {
        /// The service (its name under `services:`) or a Render id.
        service: String,
        /// How far back, e.g. `1h`.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Only lines containing this text (Render matches it; case is ignored).
        #[arg(long)]
        grep: Option<String>,
        /// Only this level, e.g. `error`.
        #[arg(long)]
        level: Option<String>,
        /// At most this many lines (1–100, Render's page).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Keep printing new lines (Render's log stream) until interrupted.
        #[arg(long)]
        follow: bool,
        /// Print JSON (one object per line with --follow).
        #[arg(long)]
        json: bool,
    },
    /// Restart a service on Render (asks first on a terminal).
    Restart {
        /// The service (its name under `services:`) or a Render id.
        service: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Deadline of one command's calls.
const DEADLINE: Duration = Duration::from_secs(30);

fn api(config: &Config) -> Result<Arc<RenderApi>> {
    config.render.clone().ok_or_else(|| {
        anyhow!(
            "{} has no `render:`; add render: {{ api_key: \"${{RENDER_API_KEY}}\" }} (docs/render.md)",
            config.path.display()
        )
    })
}

fn client(api: &RenderApi) -> Result<Arc<RenderClient>> {
    let prober = crate::probe::Prober::new(Arc::new(crate::clock::SystemClock));
    prober.render_client(api, DEADLINE).map_err(anyhow::Error::msg)
}

/// A linked service: (name, id, kind).
#[derive(Debug, Clone)]
struct Link {
    name: String,
    id: String,
    kind: ResourceKind,
    disk_limit: Option<u64>,
}

fn links(config: &Config) -> Vec<Link> {
    config
        .checks
        .iter()
        .filter_map(|c| match &c.probe {
            crate::probe::spec::ProbeSpec::Render(r) => Some(Link {
                name: c.service.clone().unwrap_or_default(),
                id: r.resource.clone(),
                kind: r.kind,
                disk_limit: r.disk_limit,
            }),
            _ => None,
        })
        .collect()
}

/// `SERVICE` as a service name or a Render id.
fn resolve(config: &Config, service: &str) -> Result<Link> {
    let all = links(config);
    if let Some(l) = all.iter().find(|l| l.name == service || l.id == service) {
        return Ok(l.clone());
    }
    if let Some(kind) = ResourceKind::of(service) {
        return Ok(Link { name: service.to_string(), id: service.to_string(), kind, disk_limit: None });
    }
    let names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
    let hint = crate::units::closest(service, names.iter().copied())
        .map(|k| format!(" Did you mean `{k}`?"))
        .unwrap_or_default();
    bail!(
        "no service `{}` is linked to Render in {} (linked: {}).{hint}",
        crate::text::escape_controls(service),
        config.path.display(),
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    )
}

fn since(text: &str) -> Result<jiff::Timestamp> {
    let d = crate::units::HumanDuration::parse(text).map_err(|e| anyhow!("--since: {e}"))?;
    let d = jiff::SignedDuration::try_from(d.0).map_err(|e| anyhow!("--since: {e}"))?;
    Ok(jiff::Timestamp::now() - d)
}

/// Runs a `render` subcommand.
pub(crate) fn run(config: &Config, command: RenderCommand) -> Result<Status> {
    let api = api(config)?;
    let client = client(&api)?;
    let rt = crate::cli::runtime()?;
    match command {
        RenderCommand::Discover { json } => rt.block_on(discover(&client, &api, json)),
        RenderCommand::Status { json } => rt.block_on(status(config, &client, json)),
        RenderCommand::Deploys { service, limit, json } => {
            let link = resolve(config, &service)?;
            rt.block_on(deploys(&client, &link, limit, json))
        }
        RenderCommand::Events { service, since: s, kind, json } => {
            let link = resolve(config, &service)?;
            let start = since(&s)?;
            rt.block_on(events(&client, &link, start, kind.as_deref(), json))
        }
        RenderCommand::Logs { service, since: s, grep, level, limit, follow, json } => {
            let link = resolve(config, &service)?;
            let start = since(&s)?;
            let filters = Filters { grep, level, limit };
            rt.block_on(logs(&client, &api, &link, start, &filters, follow, json))
        }
        RenderCommand::Restart { service, yes, json } => {
            let link = resolve(config, &service)?;
            if link.kind != ResourceKind::Service {
                bail!("`{}` is a database; `render restart` restarts services", link.name);
            }
            if !yes {
                if !std::io::stdin().is_terminal() {
                    bail!("not asking without a terminal: pass --yes to restart {} ({})", link.name, link.id);
                }
                eprint!("Restart {} ({}) on Render? Its instances restart one by one. [y/N] ", link.name, link.id);
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    eprintln!("not restarted");
                    return Ok(Status::Unhealthy);
                }
            }
            rt.block_on(async {
                match client.restart(&link.id).await {
                    Ok(()) => {
                        if json {
                            outln!("{}", serde_json::json!({"service": link.name, "id": link.id, "restarted": true}));
                        } else {
                            outln!(
                                "restart of {} ({}) asked; `mxwarden render events {}` follows it",
                                link.name,
                                link.id,
                                link.name
                            );
                        }
                        Ok(Status::Healthy)
                    }
                    Err(e) => fail(json, &link.name, &e),
                }
            })
        }
    }
}

fn fail(json: bool, service: &str, e: &RenderError) -> Result<Status> {
    if json {
        outln!("{}", serde_json::json!({"service": service, "error": e.to_string()}));
    } else {
        eprintln!("{service}: {e}");
    }
    Ok(Status::Unhealthy)
}

#[derive(Debug, Serialize)]
struct Discovered {
    owner_id: String,
    name: String,
    id: String,
    /// `web_service`, `postgres`, …
    kind: String,
    plan: String,
    suspended: bool,
}

async fn discover(client: &RenderClient, api: &RenderApi, json: bool) -> Result<Status> {
    let owner = api.owner_id.as_deref();
    let spinner = (!json && std::io::stderr().is_terminal()).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message("reading the workspace's services and databases");
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let found = async {
        let mut out = Vec::new();
        for s in client.services(owner).await? {
            out.push(Discovered {
                owner_id: s.owner_id.clone(),
                suspended: s.is_suspended(),
                name: s.name,
                id: s.id,
                kind: s.kind,
                plan: s.service_details.plan.unwrap_or_default(),
            });
        }
        for p in client.postgres_list(owner).await? {
            out.push(Discovered {
                owner_id: p.owner.map(|o| o.id).unwrap_or_default(),
                suspended: p.suspended == "suspended",
                name: p.name,
                id: p.id,
                kind: "postgres".into(),
                plan: p.plan,
            });
        }
        Ok::<_, RenderError>(out)
    }
    .await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let found = match found {
        Ok(f) => f,
        Err(e) => return fail(json, "discover", &e),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(Status::Healthy);
    }
    let mut t = crate::cli::output::table(["NAME", "ID", "TYPE", "PLAN", "WORKSPACE"]);
    for d in &found {
        t.add_row(crate::text::cells([
            d.name.clone(),
            d.id.clone(),
            d.kind.clone(),
            d.plan.clone(),
            d.owner_id.clone(),
        ]));
    }
    outln!("{}", t.trim_fmt());
    outln!("\n# Paste under each service in mxwarden.yaml:");
    for d in &found {
        outln!("#   {}:  render: {}", crate::text::escape_controls(&d.name), d.id);
    }
    Ok(Status::Healthy)
}

/// One instance in `render status`.
#[derive(Debug, Serialize)]
struct InstanceRow {
    instance: String,
    memory_bytes: Option<f64>,
    memory_limit_bytes: Option<f64>,
    /// Memory as a share of its limit.
    memory_ratio: Option<f64>,
    cpu_cores: Option<f64>,
    cpu_limit_cores: Option<f64>,
}

/// One linked service in `render status`.
#[derive(Debug, Default, Serialize)]
struct StatusRow {
    service: String,
    id: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<String>,
    suspended: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    suspenders: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy: Option<DeployRow>,
    instances: Vec<InstanceRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_failure: Option<FailureRow>,
    /// PostgreSQL: `available`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_used_bytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_autoscaling: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pitr_available: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct DeployRow {
    id: String,
    status: String,
    trigger: String,
    /// Commit (short) or image.
    source: String,
    created_at: Option<String>,
    finished_at: Option<String>,
}

impl From<&Deploy> for DeployRow {
    fn from(d: &Deploy) -> Self {
        Self {
            id: d.id.clone(),
            status: d.status.clone(),
            trigger: d.trigger.clone(),
            source: d.source(),
            created_at: d.created_at.clone(),
            finished_at: d.finished_at.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct FailureRow {
    at: String,
    reason: &'static str,
    instance: Option<String>,
    detail: String,
}

async fn instances(client: &RenderClient, id: &str) -> Result<Vec<InstanceRow>, RenderError> {
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_mins(5);
    let mut by: BTreeMap<String, [Option<f64>; 4]> = BTreeMap::new();
    for (i, path) in ["memory", "memory-limit", "cpu", "cpu-limit"].iter().enumerate() {
        let series: Vec<MetricSeries> = client.metric(path, id, start, now).await?;
        for s in series {
            let instance = s.label("instance").unwrap_or(id).to_string();
            by.entry(instance).or_default()[i] = s.last();
        }
    }
    Ok(by
        .into_iter()
        .map(|(instance, [m, ml, c, cl])| InstanceRow {
            instance,
            memory_ratio: m.zip(ml).filter(|(_, l)| *l > 0.0).map(|(m, l)| m / l),
            memory_bytes: m,
            memory_limit_bytes: ml,
            cpu_cores: c,
            cpu_limit_cores: cl,
        })
        .collect())
}

async fn status_of(client: &RenderClient, link: &Link) -> StatusRow {
    let mut row = StatusRow { service: link.name.clone(), id: link.id.clone(), ..Default::default() };
    let r = async {
        match link.kind {
            ResourceKind::Service => {
                row.kind = "service";
                let s = client.service(&link.id).await?;
                row.plan = s.service_details.plan.clone();
                row.suspended = Some(s.is_suspended());
                row.suspenders = s.suspenders.clone();
                row.deploy = client.deploys(&link.id, 1).await?.first().map(DeployRow::from);
                row.instances = instances(client, &link.id).await?;
                let now = jiff::Timestamp::now();
                let failures = client
                    .events(&link.id, now - jiff::SignedDuration::from_hours(24), now, Some("server_failed"), 1)
                    .await?;
                row.last_failure = failures.first().and_then(|e| {
                    e.failure().map(|f| FailureRow {
                        at: e.timestamp.clone(),
                        reason: f.reason.as_str(),
                        instance: f.instance,
                        detail: f.detail,
                    })
                });
            }
            ResourceKind::Postgres => {
                row.kind = "postgres";
                let p = client.postgres(&link.id).await?;
                row.plan = Some(p.plan.clone());
                row.suspended = Some(p.suspended == "suspended");
                row.status = Some(p.status.clone());
                row.disk_size_bytes = p.disk_bytes();
                row.disk_autoscaling = Some(p.disk_autoscaling_enabled);
                let now = jiff::Timestamp::now();
                row.disk_used_bytes = client
                    .metric("disk-usage", &link.id, now - jiff::SignedDuration::from_mins(10), now)
                    .await?
                    .iter()
                    .find_map(MetricSeries::last);
                row.pitr_available = Some(client.recovery(&link.id).await?.recovery_status == "AVAILABLE");
                row.instances = instances(client, &link.id).await?;
                if let (Some(limit), Some(size)) = (link.disk_limit, row.disk_size_bytes)
                    && (limit as f64 - size as f64).abs() / size as f64 > 0.02
                {
                    row.error = Some(format!(
                        "disk_limit {} contradicts Render's disk of {} GB; remove disk_limit",
                        crate::units::ByteSize(limit),
                        size as f64 / 1e9
                    ));
                }
            }
        }
        Ok::<(), RenderError>(())
    }
    .await;
    if let Err(e) = r {
        row.error = Some(e.to_string());
    }
    row
}

fn finding(row: &StatusRow) -> bool {
    row.error.is_some()
        || row.suspended == Some(true)
        || row.deploy.as_ref().is_some_and(|d| DeployPhase::of(&d.status) == DeployPhase::Failed)
        || row.status.as_deref().is_some_and(|s| s != "available")
}

fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |r| format!("{:.0}%", r * 100.0))
}

async fn status(config: &Config, client: &RenderClient, json: bool) -> Result<Status> {
    let all = links(config);
    if all.is_empty() {
        bail!(
            "no service in {} is linked to Render; add `render: srv-…` to a service (`mxwarden render discover` lists the ids)",
            config.path.display()
        );
    }
    let bar = (!json && std::io::stderr().is_terminal()).then(|| indicatif::ProgressBar::new(all.len() as u64));
    let mut rows = Vec::new();
    for link in &all {
        if let Some(b) = &bar {
            b.set_message(link.name.clone());
        }
        rows.push(status_of(client, link).await);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let ids: Vec<String> = all.iter().map(|l| l.id.clone()).collect();
    let maintenance = client.maintenance(&ids).await.unwrap_or_default();
    let bad = rows.iter().any(finding);
    if json {
        outln!("{}", serde_json::to_string_pretty(&serde_json::json!({"services": rows, "maintenance": maintenance}))?);
    } else {
        let mut t =
            crate::cli::output::table(["SERVICE", "ID", "PLAN", "STATE", "DEPLOY", "MEMORY", "CPU", "LAST FAILURE"]);
        for r in &rows {
            let state = match (&r.error, r.suspended, &r.status) {
                (Some(e), _, _) => format!("ERROR: {e}"),
                (None, Some(true), _) => format!("SUSPENDED by {}", r.suspenders.join(",")),
                (None, _, Some(s)) => s.clone(),
                _ => "running".into(),
            };
            let deploy =
                r.deploy.as_ref().map_or_else(|| "-".into(), |d| format!("{} {} ({})", d.id, d.status, d.source));
            let memory = r
                .instances
                .iter()
                .map(|i| {
                    format!(
                        "{} / {} ({})",
                        i.memory_bytes.map_or_else(|| "-".into(), |b| crate::units::human_bytes(b as u64)),
                        i.memory_limit_bytes.map_or_else(|| "-".into(), |b| crate::units::human_bytes(b as u64)),
                        ratio(i.memory_ratio)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let cpu = r
                .instances
                .iter()
                .map(|i| {
                    format!("{:.2} / {:.2}", i.cpu_cores.unwrap_or(f64::NAN), i.cpu_limit_cores.unwrap_or(f64::NAN))
                })
                .collect::<Vec<_>>()
                .join("; ");
            let mut memory = memory;
            if let (Some(size), used) = (r.disk_size_bytes, r.disk_used_bytes) {
                memory.push_str(&format!(
                    "; disk {} / {} GB",
                    used.map_or_else(|| "-".into(), |u| crate::units::human_bytes(u as u64)),
                    size as f64 / 1e9
                ));
            }
            let failure =
                r.last_failure.as_ref().map_or_else(|| "-".into(), |f| format!("{} {} {}", f.at, f.reason, f.detail));
            t.add_row(crate::text::cells([
                r.service.clone(),
                r.id.clone(),
                r.plan.clone().unwrap_or_else(|| "-".into()),
                state,
                deploy,
                memory,
                cpu,
                failure,
            ]));
        }
        outln!("{}", t.trim_fmt());
        for m in &maintenance {
            outln!(
                "Render maintenance {} of {}: {} {} ({})",
                m.id,
                m.resource_id,
                m.kind,
                m.scheduled_at.as_deref().unwrap_or("unscheduled"),
                m.state
            );
        }
    }
    Ok(if bad { Status::Unhealthy } else { Status::Healthy })
}

async fn deploys(client: &RenderClient, link: &Link, limit: usize, json: bool) -> Result<Status> {
    if link.kind != ResourceKind::Service {
        bail!("`{}` is a database; databases have no deploys", link.name);
    }
    let list = match client.deploys(&link.id, limit.clamp(1, 1000)).await {
        Ok(l) => l,
        Err(e) => return fail(json, &link.name, &e),
    };
    let rows: Vec<DeployRow> = list.iter().map(DeployRow::from).collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut t = crate::cli::output::table(["DEPLOY", "STATUS", "TRIGGER", "SOURCE", "CREATED", "FINISHED"]);
        for d in rows {
            t.add_row(crate::text::cells([
                d.id,
                d.status,
                d.trigger,
                d.source,
                d.created_at.unwrap_or_default(),
                d.finished_at.unwrap_or_default(),
            ]));
        }
        outln!("{}", t.trim_fmt());
    }
    Ok(Status::Healthy)
}

async fn events(
    client: &RenderClient,
    link: &Link,
    start: jiff::Timestamp,
    kind: Option<&str>,
    json: bool,
) -> Result<Status> {
    let list = match client.events(&link.id, start, jiff::Timestamp::now(), kind, 1000).await {
        Ok(l) => l,
        Err(e) => return fail(json, &link.name, &e),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let mut t = crate::cli::output::table(["TIME", "TYPE", "DETAIL"]);
        for e in &list {
            let detail = match (e.failure(), e.deploy_ended()) {
                (Some(f), _) => format!(
                    "{} {}{}",
                    f.reason.as_str(),
                    f.detail,
                    f.instance.map(|i| format!(" on {i}")).unwrap_or_default()
                ),
                (None, Some((deploy, status))) => format!("{deploy} {status}"),
                _ => e.details.to_string().chars().take(120).collect(),
            };
            t.add_row(crate::text::cells([e.timestamp.clone(), e.kind.clone(), detail]));
        }
        outln!("{}", t.trim_fmt());
    }
    Ok(Status::Healthy)
}

struct Filters {
    grep: Option<String>,
    level: Option<String>,
    limit: usize,
}

fn print_line(l: &LogLine, json: bool) {
    if json {
        outln!("{}", serde_json::to_string(l).unwrap_or_default());
    } else {
        let level = l.label("level").unwrap_or("-");
        let instance = l.label("instance").unwrap_or("-");
        outln!("{} {level} {instance} {}", l.timestamp, crate::text::escape_controls(&l.message));
    }
}

async fn logs(
    client: &RenderClient,
    api: &RenderApi,
    link: &Link,
    start: jiff::Timestamp,
    f: &Filters,
    follow: bool,
    json: bool,
) -> Result<Status> {
    let owner = match (&api.owner_id, link.kind) {
        (Some(o), _) => o.clone(),
        (None, ResourceKind::Service) => match client.service(&link.id).await {
            Ok(s) => s.owner_id,
            Err(e) => return fail(json, &link.name, &e),
        },
        (None, ResourceKind::Postgres) => match client.postgres(&link.id).await {
            Ok(p) => p.owner.map(|o| o.id).unwrap_or_default(),
            Err(e) => return fail(json, &link.name, &e),
        },
    };
    let query = LogQuery {
        owner_id: owner,
        resources: vec![link.id.clone()],
        levels: f.level.iter().cloned().collect(),
        text: f.grep.iter().cloned().collect(),
        start: Some(start),
        end: Some(jiff::Timestamp::now()),
        limit: f.limit.clamp(1, 100),
        ..LogQuery::default()
    };
    let page = match client.logs(&query).await {
        Ok(p) => p,
        Err(e) => return fail(json, &link.name, &e),
    };
    let mut seen: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    if json && !follow {
        let lines: Vec<&LogLine> = page.logs.iter().rev().collect();
        outln!("{}", serde_json::to_string_pretty(&lines)?);
    } else {
        for l in page.logs.iter().rev() {
            print_line(l, json);
            seen.push_back(l.id.clone());
        }
    }
    if !follow {
        return Ok(Status::Healthy);
    }
    // Follows Render's log stream (`/logs/subscribe`, a WebSocket), opened again after two
    // seconds when it breaks or Render closes it.
    let roots = crate::probe::tls::system_roots();
    let tls = Arc::new(
        crate::probe::tls::client_config(&roots, &crate::probe::spec::TlsOptions::default())
            .map_err(anyhow::Error::msg)?,
    );
    loop {
        let opened = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(Status::Healthy),
            s = client.subscribe_logs(&query, tls.clone()) => s,
        };
        match opened {
            Ok(mut stream) => loop {
                let next = tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(Status::Healthy),
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(l)) => {
                        if seen.contains(&l.id) {
                            continue;
                        }
                        print_line(&l, json);
                        seen.push_back(l.id.clone());
                        if seen.len() > 1_000 {
                            seen.pop_front();
                        }
                    }
                    Some(Err(e)) => {
                        eprintln!("{}: {e}; opening the stream again", link.name);
                        break;
                    }
                    None => break,
                }
            },
            Err(e) if e.is_transient() => eprintln!("{}: {e}; trying again", link.name),
            Err(e) => return fail(json, &link.name, &e),
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(Status::Healthy),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Render's own maintenance of the linked services, as calendar occurrences for `maintenance
/// list` (nothing when Render is not configured or cannot be reached; the reason goes to
/// stderr).
pub(crate) async fn maintenance_occurrences(
    config: &Config,
) -> (Vec<crate::maintenance::Occurrence>, Vec<crate::maintenance::Occurrence>) {
    let (mut active, mut upcoming) = (Vec::new(), Vec::new());
    let Some(api) = config.render.clone() else { return (active, upcoming) };
    let all = links(config);
    if all.is_empty() {
        return (active, upcoming);
    }
    let client = match client(&api) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Render maintenance not shown: {e}");
            return (active, upcoming);
        }
    };
    let ids: Vec<String> = all.iter().map(|l| l.id.clone()).collect();
    let names = all.iter().map(|l| (l.id.clone(), l.name.clone())).collect();
    match client.maintenance(&ids).await {
        Ok(list) => (active, upcoming) = crate::maintenance::deploys::render_maintenance(list, &names),
        Err(e) => eprintln!("Render maintenance not shown: {e}"),
    }
    (active, upcoming)
}
