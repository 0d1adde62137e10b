//! The status page: one server-rendered HTML document, no external assets, no JavaScript
//! (it refreshes itself every 30 s): the overall state, open alerts, every service's checks
//! with their state, latest result, 90 daily uptime bars and a 24-hour response-time chart
//! (inline SVG), and recent incidents. Every value from outside is HTML-escaped. A large
//! config shows one page of checks, failing first, with links to the next (`listing`).

use super::{AppState, view};
use crate::history::Bucket;
use crate::notify::html_escape as esc;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::fmt::Write;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;color:#1b1f24;background:#fafbfc}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
.banner{padding:.7rem 1rem;border-radius:6px;font-weight:600;margin:.8rem 0}.banner.up{background:#dafbe1;color:#116329}.banner.down{background:#ffebe9;color:#a40e26}.banner.update{background:#ddf4ff;color:#0a3069}
table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{padding:.35rem .5rem;text-align:left;vertical-align:top;border-bottom:1px solid #eaeef2}
.state{font-weight:600;padding:.1rem .45rem;border-radius:4px;font-size:.8rem}.state.up{background:#dafbe1;color:#116329}.state.down{background:#ffebe9;color:#a40e26}
.state.unknown{background:#eaeef2;color:#57606a}.state.maintenance{background:#ddf4ff;color:#0550ae}.state.firing{background:#ffebe9;color:#a40e26}.state.pending{background:#fff8c5;color:#7d4e00}
.bars{display:flex;gap:1px;height:22px;align-items:stretch}.bar{flex:1;min-width:2px;border-radius:1px}
.b-up{background:#2da44e}.b-partial{background:#d4a72c}.b-down{background:#cf222e}.b-none{background:#d0d7de}.b-maintenance{background:#54aeff}
.muted{color:#57606a;font-size:.8rem}.detail{max-width:28rem;word-break:break-word}svg{display:block}";

/// `GET /[?offset=&limit=]`.
pub(crate) async fn status(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let selection = match super::listing::parse(q.as_deref()) {
        Ok(s) => s,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    match view::status(&state, selection).await {
        Ok(s) => ([(header::CACHE_CONTROL, "no-store")], Html(render(&s, &state.live.services))).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("status unavailable: {e}")).into_response(),
    }
}

fn when(ms: i64) -> String {
    crate::units::utc_second(ms)
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.2}%", v * 100.0))
}

/// One daily bar: green all up, amber some down, red mostly down, blue maintenance only,
/// grey no data (or mxwarden not running).
fn bar(day: &Bucket) -> String {
    let class = match day.uptime() {
        Some(u) if u >= 0.999 => "b-up",
        Some(u) if u >= 0.9 => "b-partial",
        Some(_) => "b-down",
        None if day.maintenance > 0 => "b-maintenance",
        None => "b-none",
    };
    let date =
        jiff::Timestamp::from_millisecond(day.start_ms).map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default();
    let mut title = format!("{date}: {}", percent(day.uptime()));
    if day.maintenance > 0 {
        let _ = write!(title, ", {} results in maintenance", day.maintenance);
    }
    if day.unknown > 0.0 {
        let _ = write!(title, ", mxwarden not running {:.0}% of the day", day.unknown * 100.0);
    }
    format!("<span class=\"bar {class}\" title=\"{}\"></span>", esc(&title))
}

/// The response-time chart: a polyline over 96 quarter-hours.
fn chart(points: &[Option<f64>]) -> String {
    let max = points.iter().flatten().copied().fold(0.0_f64, f64::max).max(1.0);
    let (w, h) = (288.0, 40.0);
    let step = w / (points.len().max(2) - 1) as f64;
    let mut path = String::new();
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p {
            let (x, y) = (i as f64 * step, h - (v / max) * (h - 2.0) - 1.0);
            let _ = write!(path, "{}{x:.1},{y:.1} ", if path.is_empty() { "M" } else { "L" });
        }
    }
    format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"response time, last 24 hours, max {max:.0} ms\"><title>response time, last 24 h (max {max:.0} ms)</title><rect width=\"{w}\" height=\"{h}\" fill=\"#f6f8fa\"/><path d=\"{path}\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"1.5\"/></svg>"
    )
}

/// The page.
/// The most failing checks the banner names.
const MAX_NAMED_DOWN: usize = 20;

/// The counts of every state and links to the neighbouring pages of a large config's checks.
fn pager(out: &mut String, l: &super::listing::Listing, listed: usize) {
    let _ = write!(
        out,
        "<p class=\"muted pager\">{} checks: {} down, {} unknown, {} in maintenance, {} up · showing {}–{}, failing first",
        l.total,
        l.down,
        l.unknown,
        l.maintenance,
        l.up,
        (l.offset + 1).min(l.total),
        l.offset + listed
    );
    if l.offset > 0 {
        let _ = write!(
            out,
            " · <a href=\"?offset={}&amp;limit={}\">previous</a>",
            l.offset.saturating_sub(l.limit),
            l.limit
        );
    }
    if l.offset + listed < l.total {
        let _ = write!(out, " · <a href=\"?offset={}&amp;limit={}\">next</a>", l.offset + listed, l.limit);
    }
    out.push_str("</p>");
}

pub(crate) fn render(s: &view::Status, services: &[String]) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Status — mxwarden</title><style>{STYLE}</style></head><body>"
    );
    let _ =
        write!(out, "<h1>Status</h1><p class=\"muted\">Updated {} · refreshes every 30 s</p>", when(s.generated_ms));
    if let Some(l) = s.leader.as_ref().filter(|l| !l.this_instance) {
        // A follower serves the same data; who decides and sends is the leader (docs/ha.md).
        let _ = write!(
            out,
            "<p class=\"muted\">This instance follows: {} leads (term {}) and sends the notifications.</p>",
            esc(&l.instance),
            l.term
        );
    }
    let down: Vec<&str> = s.checks.iter().filter(|c| c.state == "down").map(|c| c.name.as_str()).collect();
    if let Some(f) = &s.store_failure {
        let _ = write!(
            out,
            "<div class=\"banner down store\">mxwarden's store refuses writes since {}: {}. What this page shows is stale: every check is unknown until it takes writes again.</div>",
            when(f.since_ms),
            esc(&f.error)
        );
    } else if s.listing.down == 0 {
        out.push_str("<div class=\"banner up\">All checks are passing</div>");
    } else {
        // Named up to a screenful; a large config's count says how many more.
        let named = &down[..down.len().min(MAX_NAMED_DOWN)];
        let more = s.listing.down.saturating_sub(named.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        let _ = write!(
            out,
            "<div class=\"banner down\">{} failing: {}{more}</div>",
            s.listing.down,
            esc(&named.join(", "))
        );
    }
    for u in &s.updates {
        let step = u.steps.last().map_or_else(
            || "starting".to_string(),
            |st| match &st.outcome {
                None => format!("{} since {}", st.step, when(st.started_at)),
                Some(o) => format!("{} {o}", st.step),
            },
        );
        if u.state == "interrupted" {
            let _ = write!(
                out,
                "<div class=\"banner down\">Update #{} of {} to {} was interrupted at {} (started {}): <code>mxwarden update --resume {}</code> continues it</div>",
                u.id,
                esc(&u.service),
                esc(&u.target),
                esc(&step),
                when(u.started_at),
                u.id
            );
            continue;
        }
        let _ = write!(
            out,
            "<div class=\"banner update\">Update #{} in progress: {} to {} — {} (started {})</div>",
            u.id,
            esc(&u.service),
            esc(&u.target),
            esc(&step),
            when(u.started_at)
        );
    }
    if !s.maintenance.is_empty() || !s.upcoming_maintenance.is_empty() {
        out.push_str(
            "<h2>Maintenance</h2><table><tr><th>Window</th><th>Services</th><th>From</th><th>Until</th><th></th></tr>",
        );
        let open = s.maintenance.iter().map(|o| (o, "now"));
        for (o, when_) in open.chain(s.upcoming_maintenance.iter().take(5).map(|o| (o, "upcoming"))) {
            let name = match &o.source {
                crate::maintenance::calendar::Source::Config { name, cron } => format!("{name} ({cron})"),
                crate::maintenance::calendar::Source::AdHoc { id, reason } => format!("#{id}: {reason}"),
                crate::maintenance::calendar::Source::Deploy { service, deploy } => {
                    format!("Render deploy {deploy} of {service}")
                }
                crate::maintenance::calendar::Source::Render { id, kind, state } => {
                    format!("Render maintenance {id}: {kind} ({state})")
                }
            };
            let badge =
                if when_ == "now" { "<span class=\"state maintenance\">in maintenance</span>" } else { "upcoming" };
            let _ = write!(
                out,
                "<tr class=\"maintenance\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{badge}</td></tr>",
                esc(&name),
                esc(&o.services.join(", ")),
                when(o.starts_at),
                when(o.ends_at)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Open alerts</h2>");
    if s.alerts.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>");
    } else {
        out.push_str("<table><tr><th>Alert</th><th>State</th><th>Severity</th><th>Service</th><th>Since</th><th>Summary</th></tr>");
        for a in &s.alerts {
            let _ = write!(
                out,
                "<tr class=\"alert\"><td>{}</td><td><span class=\"state {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.alert),
                a.state,
                a.state,
                esc(&a.severity),
                esc(a.service.as_deref().unwrap_or("")),
                when(a.since_ms),
                esc(&a.summary)
            );
        }
        out.push_str("</table>");
    }
    if s.listing.failing_first {
        pager(&mut out, &s.listing, s.checks.len());
    }
    let groups = services.iter().map(|s| Some(s.as_str())).chain(std::iter::once(None));
    for service in groups {
        let checks: Vec<&view::CheckStatus> = s.checks.iter().filter(|c| c.service.as_deref() == service).collect();
        if checks.is_empty() {
            continue;
        }
        let _ = write!(out, "<h2 class=\"service\">{}</h2>", esc(service.unwrap_or("Other checks")));
        out.push_str("<table><tr><th>Check</th><th>State</th><th>Latest</th><th>Uptime 24 h / 30 d / 90 d</th><th>Last 90 days</th><th>Response time, 24 h</th></tr>");
        for c in checks {
            let latest = match (c.last_run_ms, c.latency_ms) {
                (Some(at), Some(ms)) => format!(
                    "{} ms · {}<div class=\"muted detail\">{}</div>",
                    ms,
                    when(at),
                    esc(c.detail.as_deref().unwrap_or(""))
                ),
                _ => "<span class=\"muted\">not run yet</span>".into(),
            };
            let latest = if c.stale { format!("<span class=\"muted\">stale:</span> {latest}") } else { latest };
            let bars: String = c.days.iter().map(bar).collect();
            let _ = write!(
                out,
                "<tr class=\"check\"><td>{}</td><td><span class=\"state {}\">{}</span></td><td>{latest}</td><td>{} / {} / {}</td><td><div class=\"bars\" title=\"daily uptime, oldest left\">{bars}</div></td><td>{}</td></tr>",
                esc(&c.name),
                c.state,
                c.state,
                percent(c.uptime_24h),
                percent(c.uptime_30d),
                percent(c.uptime_90d),
                chart(&c.latency_24h)
            );
        }
        out.push_str("</table>");
    }
    if s.listing.failing_first {
        pager(&mut out, &s.listing, s.checks.len());
    }
    out.push_str("<h2>Recent incidents</h2>");
    if s.incidents.is_empty() {
        out.push_str("<p class=\"muted\">No failures in the last 48 hours.</p>");
    } else {
        out.push_str("<table><tr><th>Check</th><th>From</th><th>To</th></tr>");
        for i in &s.incidents {
            let to = i.to_ms.map_or_else(|| "ongoing".to_string(), when);
            let _ = write!(out, "<tr><td>{}</td><td>{}</td><td>{to}</td></tr>", esc(&i.check), when(i.from_ms));
        }
        out.push_str("</table>");
    }
    out.push_str("<p class=\"muted\">Legend: <span class=\"state up\">up</span> <span class=\"state down\">down</span> <span class=\"state maintenance\">maintenance</span> <span class=\"state unknown\">unknown</span> (not run yet, or stale) · grey bars: no data or mxwarden not running · JSON: <a href=\"/api/v1/status\">/api/v1/status</a> · <a href=\"/metrics\">/metrics</a></p></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_that_refuses_writes_is_a_banner_and_its_checks_are_stale() {
        let check = view::CheckStatus {
            name: "web".into(),
            service: None,
            kind: "http",
            state: "unknown",
            stale: true,
            last_run_ms: Some(1_000),
            latency_ms: Some(3),
            detail: Some("status 200".into()),
            uptime_24h: Some(1.0),
            uptime_30d: None,
            uptime_90d: None,
            days: Vec::new(),
            latency_24h: Vec::new(),
        };
        let status = view::Status {
            generated_ms: 2_000,
            started_ms: 0,
            overall: "unknown",
            listing: Default::default(),
            store_failure: Some(crate::store::health::Failure {
                since_ms: 1_500,
                error: "cannot write <db>: the disk is full".into(),
                refused: 4,
            }),
            checks: vec![check],
            alerts: Vec::new(),
            incidents: Vec::new(),
            maintenance: Vec::new(),
            upcoming_maintenance: Vec::new(),
            updates: Vec::new(),
            leader: None,
        };
        let html = render(&status, &[]);
        assert!(
            html.contains("refuses writes since 1970-01-01 00:00:01 UTC: cannot write &lt;db&gt;: the disk is full"),
            "{html}"
        );
        assert!(!html.contains("All checks are passing"), "{html}");
        assert!(
            html.contains(
                "<span class=\"state unknown\">unknown</span></td><td><span class=\"muted\">stale:</span> 3 ms"
            ),
            "{html}"
        );
        assert!(!html.contains("This instance follows"), "a leader or a lone instance says nothing of it");
        let leader =
            |this_instance| Some(crate::live::LeaderView { instance: "mon<1>".into(), term: 4, this_instance });
        let led = view::Status { leader: leader(true), ..status };
        assert!(!render(&led, &[]).contains("This instance follows"));
        let follower = view::Status { leader: leader(false), ..led };
        let html = render(&follower, &[]);
        assert!(html.contains("This instance follows: mon&lt;1&gt; leads (term 4)"), "named, escaped: {html}");
    }

    #[test]
    fn an_update_in_progress_is_shown_with_its_step_and_nothing_it_names_is_markup() {
        let row = crate::store::updates::UpdateRow {
            id: 7,
            service: "synapse".into(),
            target: "img:<script>alert(1)</script>".into(),
            reason: "r".into(),
            options: serde_json::json!({}),
            state: "running".into(),
            owner: "1@h".into(),
            facts: Default::default(),
            started_at: 1_000,
            ended_at: None,
            steps: vec![crate::store::updates::StepRow {
                seq: 4,
                step: "deploy".into(),
                started_at: 2_000,
                ended_at: None,
                outcome: None,
                detail: String::new(),
            }],
        };
        let status = view::Status {
            generated_ms: 3_000,
            started_ms: 0,
            overall: "up",
            listing: Default::default(),
            store_failure: None,
            checks: Vec::new(),
            alerts: Vec::new(),
            incidents: Vec::new(),
            maintenance: Vec::new(),
            upcoming_maintenance: Vec::new(),
            updates: vec![row],
            leader: None,
        };
        let html = render(&status, &[]);
        assert!(html.contains("Update #7 in progress: synapse to img:&lt;script&gt;"), "{html}");
        assert!(html.contains("deploy since 1970-01-01 00:00:02 UTC"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        let mut gone = status.updates[0].clone();
        gone.state = "interrupted".into();
        let status = view::Status { updates: vec![gone], ..status };
        let html = render(&status, &[]);
        assert!(
            html.contains("was interrupted at deploy since") && html.contains("mxwarden update --resume 7"),
            "{html}"
        );
    }
}
