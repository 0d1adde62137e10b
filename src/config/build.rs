//! From a parsed `FileConfig` to runnable `CheckSpec`s: checks what serde cannot (URLs,
//! kind-specific keys, names in `disable`/`overrides`, JSONPaths, headers, duplicate names),
//! reads `*_file` secrets, expands presets and applies overrides. Every problem found is
//! reported, each with its line.

use super::error::Diagnostic;
use super::schema::{
    CheckConfig, ExpectConfig, FileConfig, HttpConfig, RuleConfig, ScrapeConfig, ServiceConfig, ServiceKind, TlsConfig,
};
use crate::model::CheckId;
use crate::preset::rules as preset_rules;
use crate::preset::{self, ServiceFacts};
use crate::probe::expect::{Expect, ExpectPatch, JsonQuery};
use crate::probe::spec::{CheckSpec, HttpSpec, ProbeSpec, ScrapeSpec, Target, TlsOptions};
use crate::rule::{AlertRule, RuleDef};
use crate::units::closest;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// Where the config came from, for messages and relative paths.
pub(crate) struct Origin<'a> {
    /// The file.
    pub path: &'a Path,
    /// Its text.
    pub source: &'a str,
    /// Directory that relative `*_file` paths are resolved against.
    pub base_dir: &'a Path,
    /// The secrets read from `*_file`s so far, to be hidden like those written inline.
    pub read_secrets: std::cell::RefCell<Vec<String>>,
}

impl Origin<'_> {
    pub(super) fn at(&self, location: &Location, key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.path, self.source, location.line(), location.column(), key, message)
    }

    pub(super) fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_relative() { self.base_dir.join(path) } else { path.to_path_buf() }
    }
}

/// Collects diagnostics while building, so one run reports every problem.
pub(super) struct Problems<'a> {
    pub(super) origin: &'a Origin<'a>,
    pub(super) found: Vec<Diagnostic>,
}

impl Problems<'_> {
    pub(super) fn add(&mut self, location: &Location, key: impl Into<String>, message: impl Into<String>) {
        let d = self.origin.at(location, key, message);
        self.found.push(d);
    }

    pub(super) fn add_with_hint(&mut self, location: &Location, key: String, message: String, hint: Option<String>) {
        let d = self.origin.at(location, key, message).with_hint(hint);
        self.found.push(d);
    }

    /// Keeps `Ok` values and records `Err` ones.
    pub(super) fn take<T>(&mut self, result: Result<T, Box<Diagnostic>>) -> Option<T> {
        result.map_err(|d| self.found.push(*d)).ok()
    }
}

/// What the config expands into.
pub(crate) struct Built {
    /// Every check.
    pub checks: Vec<CheckSpec>,
    /// Every rule: presets for services with metrics, then the config's.
    pub rules: Vec<AlertRule>,
    /// Runbook lines without a rule, per service.
    pub unavailable: Vec<(String, &'static preset_rules::Unavailable)>,
    /// Every preset threshold in use, per service, with the value given in config if any.
    pub thresholds: Vec<(String, &'static preset_rules::Threshold, Option<String>)>,
    /// Where alerts go, if configured.
    pub alerting: Option<crate::notify::Alerting>,
    /// The status page's address, `None` when `listen: off`.
    pub listen: Option<std::net::SocketAddr>,
    /// Most connections the server holds at once (`listen_max_connections`).
    pub listen_max_connections: usize,
    /// The API's write token.
    pub admin_token: Option<secrecy::SecretString>,
    /// Backups, if configured.
    pub backup: Option<crate::backup::BackupPlan>,
    /// Recurring maintenance windows.
    pub maintenance: Vec<crate::maintenance::RecurringWindow>,
    /// Which service needs which.
    pub topology: crate::topology::Topology,
    /// Each service's `deploy:` (for `mxwarden update`).
    pub deploys: super::deploy::Deploys,
    /// Render's API, if configured.
    pub render: Option<std::sync::Arc<crate::probe::render::RenderApi>>,
    /// The control room (`control:`), if configured.
    pub control: Option<super::control::ControlSettings>,
    /// The dead man's switch (`heartbeat:`), if configured.
    pub heartbeat: Option<super::control::HeartbeatSettings>,
    /// Where samples are copied to (`remote_write:`).
    pub remote_write: Vec<crate::remote_write::Endpoint>,
    /// This instance's name and lease (`instance:`, `leader:`).
    pub instance: super::instance::InstanceSettings,
    /// `store:` as given (`None`: the default file).
    pub store: Option<crate::store::Location>,
}

/// The default `listen`.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// `listen:` as an address (`None` for `off`).
fn listen(file: &FileConfig, problems: &mut Problems<'_>) -> Option<std::net::SocketAddr> {
    let (text, at) = match &file.listen {
        Some(l) => (l.value.trim(), l.referenced),
        None => (DEFAULT_LISTEN, Location::UNKNOWN),
    };
    if text == "off" {
        return None;
    }
    match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.add(
                &at,
                "listen",
                format!("expected host:port with an IP address (e.g. 127.0.0.1:8090) or `off`, got {text:?}"),
            );
            None
        }
    }
}

/// The default `listen_max_connections` (Prometheus's `--web.max-connections`).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// `listen_max_connections:`, at least 1.
fn listen_max_connections(file: &FileConfig, problems: &mut Problems<'_>) -> usize {
    match &file.listen_max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(n) if n.value == 0 => {
            problems.add(
                &n.referenced,
                "listen_max_connections",
                format!("expected at least 1 connection (the default is {DEFAULT_MAX_CONNECTIONS}), got 0"),
            );
            DEFAULT_MAX_CONNECTIONS
        }
        Some(n) => n.value,
    }
}

/// Validates `file` and expands it into checks and rules, or returns every problem found.
pub(crate) fn build(file: &FileConfig, origin: &Origin<'_>) -> Result<Built, Vec<Diagnostic>> {
    let mut problems = Problems { origin, found: Vec::new() };
    let mut rules = Vec::new();
    let mut unavailable = Vec::new();
    let mut thresholds = Vec::new();
    for (name, service) in &file.services {
        if let Some(defs) = service_rules(name, service, &mut problems) {
            let kind = service.value.kind;
            // A service linked to Render has its memory judged from Render's metrics.
            let on_render = service.value.render.is_some();
            unavailable.extend(
                preset_rules::unavailable(kind)
                    .iter()
                    .filter(|u| !(on_render && u.alert.ends_with("MemoryHigh")))
                    .map(|u| (name.clone(), u)),
            );
            thresholds.extend(
                preset_rules::thresholds(kind)
                    .iter()
                    .map(|t| (name.clone(), t, service.value.thresholds.get(t.name).map(|v| v.value.clone()))),
            );
            for def in defs {
                // Rules over other services' metrics (PostgresQueriesSlowP95) come once.
                if !rules.iter().any(|r: &AlertRule| r.def.alert == def.def.alert && r.def.expr == def.def.expr) {
                    rules.push(def);
                }
            }
        }
    }
    for (index, rule) in file.rules.iter().enumerate() {
        if let Some(compiled) = config_rule(index, rule, &mut problems) {
            rules.push(compiled);
        }
    }
    let mut seen_rules = BTreeSet::new();
    for (index, rule) in file.rules.iter().enumerate() {
        if !seen_rules.insert(&rule.value.alert) {
            problems.add(
                &rule.referenced,
                format!("rules[{index}].alert"),
                format!("two rules are named `{}`", rule.value.alert),
            );
        }
    }
    for (name, service) in &file.services {
        let after = service.value.down_after.map_or(60_000, |d| d.0.as_millis() as i64);
        match AlertRule::compile(crate::preset::down::rule(service.value.kind, name, after)) {
            Ok(rule) => rules.push(rule),
            Err(e) => problems.add(&service.referenced, format!("services.{name}"), e.to_string()),
        }
    }
    rules.extend(semantic_rules(file, &rules, &mut problems));
    for def in crate::preset::media::rules(
        file.services.iter().filter(|(_, s)| s.value.kind == crate::model::ServiceKind::Synapse).map(|(name, s)| {
            crate::preset::media::MediaFacts {
                service: name.as_str(),
                has_admin_token: s.value.admin_token.is_some() || s.value.admin_token_file.is_some(),
                media_persistent: s.value.media_persistent,
            }
        }),
    ) {
        match AlertRule::compile(def) {
            Ok(rule) => rules.push(rule),
            Err(e) => problems.add(&Location::UNKNOWN, "services", e.to_string()),
        }
    }
    let alerting = file.alerting.as_ref().and_then(|a| super::alerting::build(a, &mut problems));
    let listen = listen(file, &mut problems);
    let listen_max_connections = listen_max_connections(file, &mut problems);
    let admin_token = problems
        .take(secret(
            problems.origin,
            file.admin_token.as_ref(),
            file.admin_token_file.as_ref(),
            "admin_token",
            &Location::UNKNOWN,
        ))
        .flatten();
    let backup = file.backup.as_ref().and_then(|b| super::backup::build(b, file, &mut problems));
    if backup.is_some() {
        for def in crate::preset::backup::rules() {
            match AlertRule::compile(def) {
                Ok(rule) => rules.push(rule),
                Err(e) => problems.add(&Location::UNKNOWN, "backup", e.to_string()),
            }
        }
    }
    let maintenance = super::maintenance::windows(file, &mut problems);
    let topology = super::maintenance::topology(file, &mut problems);
    let render = super::render::api(file, &mut problems);
    let deploys = super::deploy::build(file, render.as_ref(), &mut problems);
    let render_checks = super::render::checks(file, render.as_ref(), &mut problems);
    if !render_checks.is_empty() {
        for def in crate::preset::render::rules() {
            match AlertRule::compile(def) {
                Ok(rule) => rules.push(rule),
                Err(e) => problems.add(&Location::UNKNOWN, "render", e.to_string()),
            }
        }
    }
    let families = families_needed(&rules);
    let mut checks = checks(file, &mut problems, families.as_ref());
    checks.extend(render_checks);
    checks.sort_by_key(|c| matches!(c.probe, ProbeSpec::Scrape(_)));
    for c in &checks {
        // Only canaries are looked up: a scan of every check for each of 10,000 was most of
        // `config check`'s time (BENCHMARKS.md, "10,000 endpoints").
        let ProbeSpec::MatrixCanary(canary) = &c.probe else { continue };
        let silent = file.checks.iter().any(|u| u.value.name == c.id.0 && u.value.alert == Some(false));
        if !silent {
            let interval = i64::try_from(c.interval.as_millis()).unwrap_or(i64::MAX);
            for def in crate::preset::canary::rules(&c.id.0, canary.slow_after.as_secs_f64(), interval) {
                match AlertRule::compile(def) {
                    Ok(rule) => rules.push(rule),
                    Err(e) => problems.add(&Location::UNKNOWN, "checks", e.to_string()),
                }
            }
        }
    }
    let control = file.control.as_ref().and_then(|c| super::control::control(c, alerting.as_ref(), &mut problems));
    let heartbeat = file.heartbeat.as_ref().and_then(|h| super::control::heartbeat(h, &mut problems));
    let remote_write = super::remote_write::endpoints(&file.remote_write, &mut problems);
    let instance = super::instance::build(file, &mut problems);
    let store = super::store::store(file, &mut problems);
    if problems.found.is_empty() {
        Ok(Built {
            checks,
            rules,
            unavailable,
            thresholds,
            alerting,
            listen,
            listen_max_connections,
            admin_token,
            backup,
            maintenance,
            topology,
            deploys,
            render,
            control,
            heartbeat,
            remote_write,
            instance,
            store,
        })
    } else {
        Err(problems.found)
    }
}

/// The rules that make alerts mean what the runbook means (`preset::alerts`): certificates
/// close to expiry, refused tokens, Synapse's error rate, and `CheckFailing` for each check
/// under `checks:` that has neither `alert: false` nor a rule of the user's reading it.
fn semantic_rules(file: &FileConfig, rules: &[AlertRule], problems: &mut Problems<'_>) -> Vec<AlertRule> {
    use crate::preset::alerts;
    let mut defs = Vec::new();
    for (name, service) in &file.services {
        let s = &service.value;
        let after = s.down_after.map_or(60_000, |d| d.0.as_millis() as i64);
        let url = s.url.as_ref().and_then(|u| Url::parse(u.value.trim()).ok());
        if let Some(url) = url.filter(|u| u.scheme() == "https") {
            let days = s.cert_valid_for.map_or(14.0, |d| d.0.as_secs_f64() / 86_400.0);
            defs.extend(alerts::certificate(name, url.host_str().unwrap_or_default(), days));
        }
        let has_token = match s.kind {
            ServiceKind::Synapse => s.admin_token.is_some() || s.admin_token_file.is_some(),
            ServiceKind::Authentik => s.api_token.is_some() || s.api_token_file.is_some(),
            _ => false,
        };
        if let (true, Some(short)) = (has_token, preset::token_check(s.kind)) {
            defs.push(alerts::admin_token(name, &format!("{name}/{short}"), after));
        }
        if s.kind == ServiceKind::Synapse && s.metrics_url.is_some() {
            defs.push(alerts::synapse_error_rate(name));
        }
    }
    let own: Vec<&AlertRule> = rules.iter().filter(|r| r.def.origin == "config").collect();
    for check in &file.checks {
        let c = &check.value;
        // A canary has its own rules (`preset::canary`).
        if c.alert == Some(false) || c.matrix_canary.is_some() {
            continue;
        }
        let scrape = c.scrape.is_some();
        let mut labels = crate::model::Labels::new();
        labels.insert("__name__".into(), if scrape { "up" } else { "probe_success" }.into());
        labels.insert("check".into(), c.name.clone());
        if let Some(service) = &c.service {
            labels.insert("service".into(), service.clone());
        }
        if own.iter().any(|r| r.reads_series(&labels)) {
            continue;
        }
        defs.push(alerts::check_failing(&c.name, scrape, c.down_after.map_or(60_000, |d| d.0.as_millis() as i64)));
    }
    defs.into_iter()
        .filter_map(|def| match AlertRule::compile(def) {
            Ok(rule) => Some(rule),
            Err(e) => {
                problems.add(&Location::UNKNOWN, "services", e.to_string());
                None
            }
        })
        .collect()
}

/// Families the scrapes must keep: every name a rule selects, also as the family it may be a
/// sample of (`x_bucket` → `x`). `None` when a rule selects by regex on the name.
fn families_needed(rules: &[AlertRule]) -> Option<BTreeSet<String>> {
    let mut families: BTreeSet<String> =
        crate::notify::digest::INFO_COUNTERS.iter().map(|(_, name, _)| name.to_string()).collect();
    for rule in rules {
        for name in rule.metric_names()? {
            for suffix in ["_bucket", "_sum", "_count", "_total", "_created", "_info"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    families.insert(base.to_string());
                }
            }
            families.insert(name);
        }
    }
    Some(families)
}

fn service_rules(name: &str, spanned: &Spanned<ServiceConfig>, problems: &mut Problems<'_>) -> Option<Vec<AlertRule>> {
    let service = &spanned.value;
    let known = preset_rules::thresholds(service.kind);
    let mut given = std::collections::BTreeMap::new();
    for (key, value) in &service.thresholds {
        let at = format!("services.{name}.thresholds.{key}");
        let Some(threshold) = known.iter().find(|t| t.name == key) else {
            let names: Vec<&str> = known.iter().map(|t| t.name).collect();
            let hint = closest(key, names.iter().copied()).map(|k| format!("did you mean `{k}`?"));
            let expected = if names.is_empty() { "none".to_string() } else { names.join(", ") };
            problems.add_with_hint(
                &value.referenced,
                at,
                format!("no threshold `{key}` for kind {}; expected one of: {expected}", service.kind.as_str()),
                hint,
            );
            continue;
        };
        match preset_rules::parse_threshold(threshold.unit, &value.value) {
            Ok(v) => {
                given.insert(key.clone(), v);
            }
            Err(why) => problems.add(&value.referenced, at, why),
        }
    }
    // A postgres service's rules judge the samples of its own poll: no metrics_url needed.
    if service.metrics_url.is_none() && service.kind != ServiceKind::Postgres {
        if !service.thresholds.is_empty() {
            problems.add(
                &spanned.referenced,
                format!("services.{name}.thresholds"),
                "thresholds apply to the preset rules, which need `metrics_url` to have data",
            );
        }
        return None;
    }
    let mut compiled = Vec::new();
    for def in preset_rules::for_service(service.kind, name, &given) {
        match AlertRule::compile(def) {
            Ok(rule) => compiled.push(rule),
            Err(e) => problems.add(&spanned.referenced, format!("services.{name}"), e.to_string()),
        }
    }
    Some(compiled)
}

fn config_rule(index: usize, spanned: &Spanned<RuleConfig>, problems: &mut Problems<'_>) -> Option<AlertRule> {
    let r = &spanned.value;
    let def = RuleDef {
        alert: r.alert.clone(),
        expr: r.expr.clone(),
        for_ms: r.for_.map_or(0, |d| d.0.as_millis() as i64),
        keep_firing_for_ms: r.keep_firing_for.map_or(0, |d| d.0.as_millis() as i64),
        labels: r.labels.clone(),
        annotations: r.annotations.clone(),
        origin: "config".into(),
    };
    AlertRule::compile(def).map_err(|e| problems.add(&spanned.referenced, format!("rules[{index}]"), e.message)).ok()
}

fn checks(file: &FileConfig, problems: &mut Problems<'_>, families: Option<&BTreeSet<String>>) -> Vec<CheckSpec> {
    let mut checks = Vec::new();
    if file.defaults.concurrency == 0 {
        problems.found.push(Diagnostic {
            file: problems.origin.path.to_path_buf(),
            line: None,
            column: None,
            key: "defaults.concurrency".into(),
            message: "must be at least 1".into(),
            hint: None,
            snippet: None,
        });
    }
    for (name, service) in &file.services {
        checks.extend(service_checks(name, service, file, problems, families));
    }
    for (index, check) in file.checks.iter().enumerate() {
        if let Some(spec) = user_check(index, check, file, problems, families) {
            checks.push(spec);
        }
    }
    reject_duplicates(&checks, file, problems);
    checks
}

fn reject_duplicates(checks: &[CheckSpec], file: &FileConfig, problems: &mut Problems<'_>) {
    let mut seen = BTreeSet::new();
    for check in checks {
        if !seen.insert(&check.id) {
            let location = file
                .checks
                .iter()
                .rev()
                .find(|c| c.value.name == check.id.0)
                .map_or(Location::UNKNOWN, |c| c.referenced);
            problems.add(&location, "checks", format!("two checks are named `{}`; names must be unique", check.id));
        }
    }
}

/// Keys that only some kinds accept, and which kinds.
const KIND_KEYS: &[(&str, &[ServiceKind])] = &[
    ("admin_token", &[ServiceKind::Synapse]),
    ("admin_token_file", &[ServiceKind::Synapse]),
    ("federation_url", &[ServiceKind::Synapse]),
    ("media_persistent", &[ServiceKind::Synapse]),
    ("health_url", &[ServiceKind::Mas]),
    ("issuer", &[ServiceKind::Mas]),
    ("api_token", &[ServiceKind::Authentik]),
    ("api_token_file", &[ServiceKind::Authentik]),
    ("url", &[ServiceKind::Synapse, ServiceKind::Mas, ServiceKind::Vikunja, ServiceKind::Authentik]),
    ("metrics_url", &[ServiceKind::Synapse, ServiceKind::Mas, ServiceKind::Vikunja, ServiceKind::Authentik]),
    ("cert_valid_for", &[ServiceKind::Synapse, ServiceKind::Mas, ServiceKind::Vikunja, ServiceKind::Authentik]),
    ("tls", &[ServiceKind::Synapse, ServiceKind::Mas, ServiceKind::Vikunja, ServiceKind::Authentik]),
    ("dsn", &[ServiceKind::Postgres]),
    ("password_file", &[ServiceKind::Postgres]),
    ("disk_limit", &[ServiceKind::Postgres]),
    ("databases", &[ServiceKind::Postgres]),
    ("statement_timeout", &[ServiceKind::Postgres]),
    ("top_tables", &[ServiceKind::Postgres]),
];

fn keys_set(s: &ServiceConfig) -> Vec<&'static str> {
    let set = [
        ("admin_token", s.admin_token.is_some()),
        ("admin_token_file", s.admin_token_file.is_some()),
        ("federation_url", s.federation_url.is_some()),
        ("media_persistent", s.media_persistent.is_some()),
        ("health_url", s.health_url.is_some()),
        ("issuer", s.issuer.is_some()),
        ("api_token", s.api_token.is_some()),
        ("api_token_file", s.api_token_file.is_some()),
        ("url", s.url.is_some()),
        ("metrics_url", s.metrics_url.is_some()),
        ("cert_valid_for", s.cert_valid_for.is_some()),
        ("tls", s.tls.is_some()),
        ("dsn", s.dsn.is_some()),
        ("password_file", s.password_file.is_some()),
        ("disk_limit", s.disk_limit.is_some()),
        ("databases", !s.databases.is_empty()),
        ("statement_timeout", s.statement_timeout.is_some()),
        ("top_tables", s.top_tables.is_some()),
    ];
    set.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
}

fn service_checks(
    name: &str,
    spanned: &Spanned<ServiceConfig>,
    file: &FileConfig,
    problems: &mut Problems<'_>,
    families: Option<&BTreeSet<String>>,
) -> Vec<CheckSpec> {
    let service = &spanned.value;
    let here = spanned.referenced;
    let key = format!("services.{name}");
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        problems.add(&here, &key, "service names may hold only letters, digits, `-` and `_`");
    }
    for set in keys_set(service) {
        let kinds = KIND_KEYS.iter().find(|(k, _)| *k == set).map_or(&[][..], |(_, kinds)| *kinds);
        if !kinds.contains(&service.kind) {
            let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            problems.add(
                &here,
                format!("{key}.{set}"),
                format!("`{set}` does not apply to kind {}; it is for: {}", service.kind.as_str(), names.join(", ")),
            );
        }
    }
    let url = match &service.url {
        Some(url) => problems.take(parse_url(problems.origin, url, &format!("{key}.url"))),
        None if service.kind == ServiceKind::Postgres => None,
        None => {
            problems.add(&here, format!("{key}.url"), format!("kind {} needs `url`", service.kind.as_str()));
            None
        }
    };
    let federation_url = service
        .federation_url
        .as_ref()
        .and_then(|u| problems.take(parse_url(problems.origin, u, &format!("{key}.federation_url"))));
    let health_url = service
        .health_url
        .as_ref()
        .and_then(|u| problems.take(parse_url(problems.origin, u, &format!("{key}.health_url"))));
    let admin_token = problems.take(secret(
        problems.origin,
        service.admin_token.as_ref(),
        service.admin_token_file.as_ref(),
        &format!("{key}.admin_token"),
        &here,
    ));
    let api_token = problems.take(secret(
        problems.origin,
        service.api_token.as_ref(),
        service.api_token_file.as_ref(),
        &format!("{key}.api_token"),
        &here,
    ));
    let known = preset::check_names(service.kind);
    let full = |short: &str| format!("{name}/{short}");
    let short_of = |given: &str| -> Option<&'static str> {
        let given = given.strip_prefix(&format!("{name}/")).unwrap_or(given);
        known.iter().copied().find(|k| *k == given)
    };
    let unknown_check = |problems: &mut Problems<'_>, location: &Location, k: String, given: &str| {
        let listed: Vec<String> = known.iter().map(|k| full(k)).collect();
        let hint = closest(given, listed.iter().map(String::as_str))
            .or_else(|| closest(given, known.iter().copied()))
            .map(|k| format!("did you mean `{k}`?"));
        problems.add_with_hint(
            location,
            k,
            format!(
                "no preset check `{given}` for kind {}; expected one of: {}",
                service.kind.as_str(),
                listed.join(", ")
            ),
            hint,
        );
    };
    let mut disabled = BTreeSet::new();
    for (i, d) in service.disable.iter().enumerate() {
        match short_of(&d.value) {
            Some(short) => {
                disabled.insert(short);
            }
            None => unknown_check(problems, &d.referenced, format!("{key}.disable[{i}]"), &d.value),
        }
    }
    let mut overrides = Vec::new();
    for (given, o) in &service.overrides {
        match short_of(given) {
            Some(short) => {
                let patch = o.value.expect.as_ref().and_then(|e| {
                    compile_patch(e, &format!("{key}.overrides.{given}.expect"), &o.referenced, problems)
                });
                overrides.push((short, o.value.clone(), patch));
            }
            None => unknown_check(problems, &o.referenced, format!("{key}.overrides.{given}"), given),
        }
    }
    let tls = tls_options(service.tls.as_ref(), problems);
    let metrics_url = service
        .metrics_url
        .as_ref()
        .and_then(|u| problems.take(parse_url(problems.origin, u, &format!("{key}.metrics_url"))));
    if service.kind == ServiceKind::Postgres {
        return super::postgres::check(name, spanned, file, problems, &disabled, &overrides).into_iter().collect();
    }
    let (Some(url), Some(admin_token), Some(api_token)) = (url, admin_token, api_token) else {
        return Vec::new();
    };
    let facts = ServiceFacts {
        kind: service.kind,
        url,
        admin_token,
        federation_url,
        health_url,
        issuer: service.issuer.clone(),
        api_token,
        cert_valid_for: service.cert_valid_for.map_or(Duration::from_secs(14 * 86_400), |d| d.0),
        media_persistent: service.media_persistent,
    };
    let interval = service.interval.unwrap_or(file.defaults.interval).0;
    let timeout = service.timeout.unwrap_or(file.defaults.timeout).0;
    let metrics = metrics_url.filter(|_| !disabled.contains("metrics")).map(|url| {
        let mut spec = CheckSpec {
            id: CheckId(full("metrics")),
            service: Some(name.to_string()),
            interval,
            timeout,
            probe: ProbeSpec::Scrape(ScrapeSpec {
                http: scrape_request(url, Vec::new(), None, file.defaults.scrape_body_limit.0, tls.clone()),
                families: families.cloned(),
                sample_limit: sample_limit(None, &file.defaults),
            }),
        };
        for (short, o, _) in &overrides {
            if *short == "metrics" {
                apply_override(&mut spec, o.interval, o.timeout, None);
            }
        }
        spec
    });
    let mut specs: Vec<CheckSpec> = preset::checks(&facts)
        .into_iter()
        .filter(|c| !disabled.contains(c.short))
        .map(|c| {
            let mut spec = CheckSpec {
                id: CheckId(full(c.short)),
                service: Some(name.to_string()),
                interval,
                timeout,
                probe: ProbeSpec::Http(HttpSpec {
                    target: c.target,
                    method: Method::GET,
                    headers: Vec::new(),
                    bearer: c.bearer,
                    body: None,
                    body_limit: file.defaults.body_limit.0,
                    follow_redirects: file.defaults.follow_redirects,
                    tls: tls.clone(),
                    expect: c.expect,
                    samples: c.samples,
                }),
            };
            for (short, o, patch) in &overrides {
                if *short == c.short {
                    apply_override(&mut spec, o.interval, o.timeout, patch.clone());
                }
            }
            spec
        })
        .collect();
    specs.extend(metrics);
    specs
}

/// The HTTP request of a scrape: GET, asking for the 0.0.4 text format, any 2xx accepted.
fn scrape_request(
    url: Url,
    mut headers: Vec<(HeaderName, HeaderValue)>,
    bearer: Option<SecretString>,
    body_limit: u64,
    tls: TlsOptions,
) -> HttpSpec {
    headers.push((
        reqwest::header::ACCEPT,
        HeaderValue::from_static(
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1",
        ),
    ));
    HttpSpec {
        target: Target::Url(url),
        method: Method::GET,
        headers,
        bearer,
        body: None,
        body_limit,
        follow_redirects: true,
        tls,
        expect: Expect::default(),
        samples: Vec::new(),
    }
}

fn apply_override(
    spec: &mut CheckSpec,
    interval: Option<crate::units::HumanDuration>,
    timeout: Option<crate::units::HumanDuration>,
    patch: Option<ExpectPatch>,
) {
    if let Some(i) = interval {
        spec.interval = i.0;
    }
    if let Some(t) = timeout {
        spec.timeout = t.0;
    }
    if let (ProbeSpec::Http(http), Some(p)) = (&mut spec.probe, patch) {
        http.expect.apply(p);
    }
}

fn user_check(
    index: usize,
    spanned: &Spanned<CheckConfig>,
    file: &FileConfig,
    problems: &mut Problems<'_>,
    families: Option<&BTreeSet<String>>,
) -> Option<CheckSpec> {
    let check = &spanned.value;
    let here = spanned.referenced;
    let key = format!("checks[{index}]");
    if check.name.trim().is_empty() {
        problems.add(&here, format!("{key}.name"), "a check needs a non-empty name");
    }
    if let Some(canary) = &check.matrix_canary {
        if check.http.is_some() || check.scrape.is_some() {
            problems.add(&here, &key, "a check has one probe; expected one of `http:`, `scrape:` or `matrix_canary:`");
            return None;
        }
        let spec = super::control::canary(canary, &format!("{key}.matrix_canary"), &here, problems)?;
        // A canary measures Matrix: with one Synapse, it is that service's.
        let mut synapses = file.services.iter().filter(|(_, s)| s.value.kind == ServiceKind::Synapse);
        let only_synapse = match (synapses.next(), synapses.next()) {
            (Some((name, _)), None) => Some(name.clone()),
            _ => None,
        };
        return Some(CheckSpec {
            id: CheckId(check.name.clone()),
            service: check.service.clone().or(only_synapse),
            interval: check.interval.unwrap_or(file.defaults.interval).0,
            timeout: check.timeout.unwrap_or(file.defaults.timeout).0,
            probe: ProbeSpec::MatrixCanary(spec),
        });
    }
    let probe = match (&check.http, &check.scrape) {
        (Some(http), None) => ProbeSpec::Http(http_spec(http, &format!("{key}.http"), &here, file, problems)?),
        (None, Some(scrape)) => {
            ProbeSpec::Scrape(scrape_spec(scrape, &format!("{key}.scrape"), &here, file, problems, families)?)
        }
        (Some(_), Some(_)) => {
            problems.add(&here, &key, "a check has one probe; expected either `http:` or `scrape:`, not both");
            return None;
        }
        (None, None) => {
            problems.add(&here, &key, "a check needs a probe; expected `http:` or `scrape:`");
            return None;
        }
    };
    Some(CheckSpec {
        id: CheckId(check.name.clone()),
        service: check.service.clone(),
        interval: check.interval.unwrap_or(file.defaults.interval).0,
        timeout: check.timeout.unwrap_or(file.defaults.timeout).0,
        probe,
    })
}

fn scrape_spec(
    scrape: &ScrapeConfig,
    key: &str,
    here: &Location,
    file: &FileConfig,
    problems: &mut Problems<'_>,
    families: Option<&BTreeSet<String>>,
) -> Option<ScrapeSpec> {
    let url = problems.take(parse_url(problems.origin, &scrape.url, &format!("{key}.url")));
    let headers = headers(&scrape.headers, key, here, problems);
    let bearer = problems.take(secret(
        problems.origin,
        scrape.bearer_token.as_ref(),
        scrape.bearer_token_file.as_ref(),
        &format!("{key}.bearer_token"),
        here,
    ));
    let tls = tls_options(scrape.tls.as_ref(), problems);
    let body_limit = scrape.body_limit.unwrap_or(file.defaults.scrape_body_limit).0;
    Some(ScrapeSpec {
        http: scrape_request(url?, headers, bearer?, body_limit, tls),
        families: families.cloned(),
        sample_limit: sample_limit(scrape.sample_limit, &file.defaults),
    })
}

/// The most samples a scrape keeps: its `sample_limit` (or the default's; `0` is none), and
/// never more than `series_limit`.
fn sample_limit(own: Option<usize>, defaults: &super::schema::DefaultsConfig) -> usize {
    match own.unwrap_or(defaults.sample_limit) {
        0 => defaults.series_limit,
        n => n.min(defaults.series_limit),
    }
}

pub(super) fn headers(
    given: &std::collections::BTreeMap<String, String>,
    key: &str,
    here: &Location,
    problems: &mut Problems<'_>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    for (name, value) in given {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(n), Ok(mut v)) => {
                v.set_sensitive(crate::probe::spec::is_sensitive_header(&n));
                headers.push((n, v));
            }
            (Err(_), _) => {
                problems.add(here, format!("{key}.headers.{name}"), format!("`{name}` is not a valid header name"))
            }
            (_, Err(_)) => problems.add(
                here,
                format!("{key}.headers.{name}"),
                "the value holds characters not allowed in a header",
            ),
        }
    }
    headers
}

fn http_spec(
    http: &HttpConfig,
    key: &str,
    here: &Location,
    file: &FileConfig,
    problems: &mut Problems<'_>,
) -> Option<HttpSpec> {
    let url = problems.take(parse_url(problems.origin, &http.url, &format!("{key}.url")));
    let method = match &http.method {
        None => Some(Method::GET),
        Some(m) => match Method::from_bytes(m.value.trim().to_ascii_uppercase().as_bytes()) {
            Ok(method) => Some(method),
            Err(_) => {
                problems.add(
                    &m.referenced,
                    format!("{key}.method"),
                    format!("`{}` is not an HTTP method; expected GET, HEAD, POST, …", m.value),
                );
                None
            }
        },
    };
    let headers = headers(&http.headers, key, here, problems);
    let bearer = problems.take(secret(
        problems.origin,
        http.bearer_token.as_ref(),
        http.bearer_token_file.as_ref(),
        &format!("{key}.bearer_token"),
        here,
    ));
    let patch = compile_patch(&http.expect, &format!("{key}.expect"), here, problems);
    let tls = tls_options(http.tls.as_ref(), problems);
    let mut expect = Expect::default();
    expect.apply(patch?);
    Some(HttpSpec {
        target: Target::Url(url?),
        method: method?,
        headers,
        bearer: bearer?,
        body: http.body.clone(),
        body_limit: http.body_limit.unwrap_or(file.defaults.body_limit).0,
        follow_redirects: http.follow_redirects.unwrap_or(file.defaults.follow_redirects),
        tls,
        expect,
        samples: Vec::new(),
    })
}

fn compile_patch(
    expect: &ExpectConfig,
    key: &str,
    here: &Location,
    problems: &mut Problems<'_>,
) -> Option<ExpectPatch> {
    let mut ok = true;
    let mut json = None;
    if let Some(map) = &expect.json {
        let mut items = Vec::new();
        for (path, value) in &map.value {
            match JsonQuery::parse(path) {
                Ok(q) => items.push((q, value.clone())),
                Err(why) => {
                    problems.add(&map.referenced, format!("{key}.json"), why);
                    ok = false;
                }
            }
        }
        json = Some(items);
    }
    let mut json_exists = None;
    if let Some(paths) = &expect.json_exists {
        let mut items = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            match JsonQuery::parse(&path.value) {
                Ok(q) => items.push(q),
                Err(why) => {
                    problems.add(&path.referenced, format!("{key}.json_exists[{i}]"), why);
                    ok = false;
                }
            }
        }
        json_exists = Some(items);
    }
    if let Some(status) = &expect.status
        && status.0.is_empty()
    {
        problems.add(here, format!("{key}.status"), "an empty list accepts nothing; expected at least one status");
        ok = false;
    }
    ok.then(|| ExpectPatch {
        status: expect.status.as_ref().map(|s| s.0.clone()),
        json,
        json_exists,
        body_contains: expect.body_contains.clone(),
        max_latency: expect.max_latency.map(|d| d.0),
        cert_valid_for: expect.cert_valid_for.map(|d| d.0),
    })
}

fn tls_options(tls: Option<&TlsConfig>, problems: &mut Problems<'_>) -> TlsOptions {
    let Some(tls) = tls else {
        return TlsOptions::default();
    };
    let ca_file = tls.ca_file.as_ref().and_then(|f| {
        let path = problems.origin.resolve(&f.value);
        if path.is_file() {
            Some(path)
        } else {
            problems.add(&f.referenced, "tls.ca_file", format!("{} is not a readable file", path.display()));
            None
        }
    });
    TlsOptions { ca_file, insecure_skip_verify: tls.insecure_skip_verify }
}

pub(super) fn parse_url(origin: &Origin<'_>, text: &Spanned<String>, key: &str) -> Result<Url, Box<Diagnostic>> {
    let fail = |why: String| Box::new(origin.at(&text.referenced, key, why));
    let url = Url::parse(text.value.trim())
        .map_err(|e| fail(format!("`{}` is not a URL ({e}); expected e.g. https://matrix.example.org", text.value)))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(fail(format!("`{}` uses scheme `{}`; expected http or https", text.value, url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(fail(format!("`{}` has no host", text.value)));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("credentials in URLs end up in logs; use bearer_token or headers instead".into()));
    }
    Ok(url)
}

/// An inline secret or one read from a file; both at once is an error.
pub(super) fn secret(
    origin: &Origin<'_>,
    inline: Option<&SecretString>,
    file: Option<&Spanned<PathBuf>>,
    key: &str,
    here: &Location,
) -> Result<Option<SecretString>, Box<Diagnostic>> {
    match (inline, file) {
        (Some(_), Some(f)) => Err(Box::new(origin.at(
            &f.referenced,
            format!("{key}_file"),
            format!("set either `{key}` or `{key}_file`, not both"),
        ))),
        (Some(s), None) => {
            use secrecy::ExposeSecret;
            if s.expose_secret().trim().is_empty() {
                Err(Box::new(origin.at(here, key, "is empty; expected a token (is its environment variable empty?)")))
            } else {
                Ok(Some(s.clone()))
            }
        }
        (None, Some(f)) => {
            let path = origin.resolve(&f.value);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Box::new(origin.at(
                    &f.referenced,
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                ))
            })?;
            let trimmed = text.trim_end_matches(['\n', '\r']);
            if trimmed.trim().is_empty() {
                return Err(Box::new(origin.at(
                    &f.referenced,
                    format!("{key}_file"),
                    format!("{} is empty", path.display()),
                )));
            }
            origin.read_secrets.borrow_mut().push(trimmed.to_string());
            Ok(Some(SecretString::from(trimmed.to_string())))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    fn load(text: &str) -> Result<super::super::Config, String> {
        super::super::from_source(Path::new("/etc/mxwarden/mxwarden.yaml"), text, &HashMap::new())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn listen_max_connections_defaults_to_512_and_refuses_zero_with_its_line() {
        assert_eq!(load("listen: 127.0.0.1:8090\n").unwrap().listen_max_connections, 512);
        assert_eq!(load("listen_max_connections: 64\n").unwrap().listen_max_connections, 64);
        let e = load("listen: 127.0.0.1:8090\nlisten_max_connections: 0\n").unwrap_err();
        assert!(e.contains("mxwarden.yaml:2:") && e.contains("listen_max_connections: expected at least 1"), "{e}");
        let e = load("listen_max_connections: -5\n").unwrap_err();
        assert!(e.contains("mxwarden.yaml:1:") && e.contains("listen_max_connections"), "{e}");
    }
}
