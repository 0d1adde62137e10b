//! `mxwarden rules list|export` and the rule part of `mxwarden check`: which rules exist, with
//! what thresholds, which runbook lines have none (and why), and — from one round of probes
//! and scrapes — which rules would fire right now.

use crate::cli::{Status, out, outln};
use crate::config::Config;
use crate::model::Observation;
use crate::series::SeriesStore;
use crate::units::HumanDuration;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What one rule says about the current samples.
#[derive(Debug, Serialize)]
pub(crate) struct Verdict {
    /// The service, from the alert's labels or the rule's origin.
    pub service: Option<String>,
    /// Alert name.
    pub alert: String,
    /// Its severity.
    pub severity: String,
    /// What the rule says now.
    pub state: Judgement,
    /// Why, in words.
    pub detail: String,
}

/// What a rule says about the current samples, as `check` and `rules list` print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum Judgement {
    /// Its condition holds now (`for` ignored).
    #[serde(rename = "would fire")]
    WouldFire,
    /// Its condition does not hold.
    #[serde(rename = "quiet")]
    Quiet,
    /// Nothing it reads was reported.
    #[serde(rename = "no data")]
    NoData,
    /// It could not be evaluated.
    #[serde(rename = "error")]
    Error,
}

impl Judgement {
    /// As printed: `would fire`, `quiet`, `no data`, `error`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::WouldFire => "would fire",
            Self::Quiet => "quiet",
            Self::NoData => "no data",
            Self::Error => "error",
        }
    }
}

impl Verdict {
    /// Whether this verdict leaves the stack healthy: only firing critical or warning rules,
    /// and rules that cannot be evaluated, do not.
    pub(crate) fn ok(&self) -> bool {
        match self.state {
            Judgement::WouldFire => self.severity == "info",
            Judgement::Error => false,
            Judgement::Quiet | Judgement::NoData => true,
        }
    }
}

fn human_ms(ms: i64) -> String {
    HumanDuration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// Evaluates every rule once over the samples of `observations` (all taken "now"), ignoring
/// `for`: what would fire if the condition held long enough.
pub(crate) fn judge_now(config: &Config, observations: &[Observation]) -> Vec<Verdict> {
    if config.rules.is_empty() {
        return Vec::new();
    }
    let t = observations.iter().map(|o| o.at.as_millisecond()).max().unwrap_or(0);
    let mut store = SeriesStore::new(i64::MAX / 4, config.defaults.series_limit);
    for o in observations {
        store.ingest_samples(&o.check.0, t, o.samples.iter().chain(&o.scraped));
    }
    config
        .rules
        .iter()
        .map(|rule| {
            let def = &rule.def;
            let severity = def.labels.get("severity").cloned().unwrap_or_default();
            let base = Verdict {
                service: service_of(&def.origin),
                alert: def.alert.clone(),
                severity,
                state: Judgement::Quiet,
                detail: String::new(),
            };
            match rule.instances(&store, t) {
                Err(e) => Verdict { state: Judgement::Error, detail: format!("evaluation failed: {e}"), ..base },
                Ok(active) if !active.is_empty() => {
                    let (labels, value) = (&active[0].labels, &active[0].value);
                    let annotations = rule.annotate(&active[0].sample, *value);
                    let summary = annotations.get("summary").cloned().unwrap_or_else(|| format!("value {value}"));
                    let more = if active.len() > 1 { format!(" (+{} more)", active.len() - 1) } else { String::new() };
                    let hold = if def.for_ms > 0 {
                        format!(" — fires once this holds for {}", human_ms(def.for_ms))
                    } else {
                        String::new()
                    };
                    Verdict {
                        service: labels.get("service").cloned().or(base.service.clone()),
                        state: Judgement::WouldFire,
                        detail: format!("{summary}{more}{hold}"),
                        ..base
                    }
                }
                Ok(_) => {
                    let missing: Vec<String> = rule
                        .metric_names()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|name| store.named(name).next().is_none())
                        .collect();
                    if missing.is_empty() {
                        let history = if def.expr.contains('[') {
                            " (rates need a history of scrapes: `mxwarden run` keeps one)"
                        } else {
                            ""
                        };
                        Verdict { detail: format!("condition does not hold{history}"), ..base }
                    } else {
                        // A preset rule may say why its samples can be absent (`no_data`).
                        let why = def.annotations.get("no_data").map(|w| format!(": {w}")).unwrap_or_default();
                        Verdict {
                            state: Judgement::NoData,
                            detail: format!("no samples of {}{why}", missing.join(", ")),
                            ..base
                        }
                    }
                }
            }
        })
        .collect()
}

/// The service named in a preset rule's origin (`preset synapse for synapse`).
fn service_of(origin: &str) -> Option<String> {
    origin.split_once(" for ").map(|(_, s)| s.to_string())
}

/// Prints the rule verdicts under the check table.
pub(crate) fn print_verdicts(verdicts: &[Verdict]) {
    if verdicts.is_empty() {
        return;
    }
    let mut table = crate::cli::output::table(["SERVICE", "RULE", "SEVERITY", "NOW", "DETAIL"]);
    for v in verdicts {
        table.add_row(crate::text::cells([
            v.service.clone().unwrap_or_else(|| "-".into()),
            v.alert.clone(),
            v.severity.clone(),
            v.state.as_str().to_uppercase(),
            v.detail.clone(),
        ]));
    }
    outln!("\n{}", table.trim_fmt());
    let firing = verdicts.iter().filter(|v| v.state == Judgement::WouldFire).count();
    outln!("{} rules: {firing} would fire", verdicts.len());
}

#[derive(Serialize)]
struct RuleRow<'a> {
    alert: &'a str,
    severity: &'a str,
    #[serde(rename = "for")]
    for_: String,
    keep_firing_for: String,
    source: &'a str,
    expr: &'a str,
}

#[derive(Serialize)]
struct ThresholdRow<'a> {
    service: &'a str,
    threshold: &'a str,
    value: &'a str,
    default: &'a str,
    meaning: &'a str,
}

#[derive(Serialize)]
struct UnavailableRow<'a> {
    service: &'a str,
    alert: &'a str,
    runbook: &'a str,
    why: &'a str,
}

#[derive(Serialize)]
struct RulesList<'a> {
    rules: Vec<RuleRow<'a>>,
    thresholds: Vec<ThresholdRow<'a>>,
    unavailable: Vec<UnavailableRow<'a>>,
}

/// `mxwarden rules list`.
pub(crate) fn list(config: &Config, json: bool) -> Result<Status> {
    let list = RulesList {
        rules: config
            .rules
            .iter()
            .map(|r| RuleRow {
                alert: &r.def.alert,
                severity: r.def.labels.get("severity").map_or("", String::as_str),
                for_: human_ms(r.def.for_ms),
                keep_firing_for: human_ms(r.def.keep_firing_for_ms),
                source: &r.def.origin,
                expr: &r.def.expr,
            })
            .collect(),
        thresholds: config
            .thresholds
            .iter()
            .map(|(service, t, given)| ThresholdRow {
                service,
                threshold: t.name,
                value: given.as_deref().unwrap_or(t.default),
                default: t.default,
                meaning: t.help,
            })
            .collect(),
        unavailable: config
            .unavailable
            .iter()
            .map(|(service, u)| UnavailableRow { service, alert: u.alert, runbook: u.runbook, why: u.why })
            .collect(),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(Status::Healthy);
    }
    let table = |header: &[&str], rows: Vec<Vec<String>>| {
        let mut t = crate::cli::output::table(header.to_vec());
        for r in rows {
            t.add_row(crate::text::cells(r));
        }
        t.trim_fmt()
    };
    if list.rules.is_empty() {
        outln!("No rules. Give a service a `metrics_url` to enable its preset rules, or add `rules:`.");
    } else {
        outln!(
            "{}",
            table(
                &["RULE", "SEVERITY", "FOR", "SOURCE", "EXPR"],
                list.rules
                    .iter()
                    .map(|r| vec![r.alert.into(), r.severity.into(), r.for_.clone(), r.source.into(), r.expr.into()])
                    .collect()
            )
        );
    }
    if !list.thresholds.is_empty() {
        outln!("\nThresholds (change with `thresholds:` on the service):");
        outln!(
            "{}",
            table(
                &["SERVICE", "THRESHOLD", "VALUE", "DEFAULT", "MEANING"],
                list.thresholds
                    .iter()
                    .map(|t| vec![
                        t.service.into(),
                        t.threshold.into(),
                        t.value.into(),
                        t.default.into(),
                        t.meaning.into()
                    ])
                    .collect()
            )
        );
    }
    if !list.unavailable.is_empty() {
        outln!("\nRunbook lines with no rule (the software exposes no metric for them):");
        outln!(
            "{}",
            table(
                &["SERVICE", "RULE", "RUNBOOK", "WHY"],
                list.unavailable
                    .iter()
                    .map(|u| vec![u.service.into(), u.alert.into(), u.runbook.into(), u.why.into()])
                    .collect()
            )
        );
    }
    Ok(Status::Healthy)
}

#[derive(Serialize)]
struct RuleFile<'a> {
    groups: Vec<RuleGroup<'a>>,
}

#[derive(Serialize)]
struct RuleGroup<'a> {
    name: String,
    rules: Vec<ExportedRule<'a>>,
}

#[derive(Serialize)]
struct ExportedRule<'a> {
    alert: &'a str,
    expr: &'a str,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_for: Option<String>,
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// `mxwarden rules export`: a Prometheus rule file, one group per source.
pub(crate) fn export(config: &Config) -> Result<Status> {
    let mut groups: Vec<RuleGroup<'_>> = Vec::new();
    for rule in &config.rules {
        let name = format!("mxwarden {}", rule.def.origin);
        let exported = ExportedRule {
            alert: &rule.def.alert,
            expr: &rule.def.expr,
            for_: (rule.def.for_ms > 0).then(|| human_ms(rule.def.for_ms)),
            keep_firing_for: (rule.def.keep_firing_for_ms > 0).then(|| human_ms(rule.def.keep_firing_for_ms)),
            labels: &rule.def.labels,
            annotations: &rule.def.annotations,
        };
        match groups.iter_mut().find(|g| g.name == name) {
            Some(g) => g.rules.push(exported),
            None => groups.push(RuleGroup { name, rules: vec![exported] }),
        }
    }
    outln!("# Prometheus alerting rules exported by mxwarden from {}.", config.path.display());
    outln!("# The preset rules select targets by a `service` label: add it to your scrape targets");
    outln!("# (e.g. `labels: {{ service: synapse }}` in static_configs) so they match.");
    out!("{}", serde_saphyr::to_string(&RuleFile { groups })?);
    Ok(Status::Healthy)
}
