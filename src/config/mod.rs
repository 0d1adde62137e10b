//! Configuration: the `mxwarden.yaml` schema (`schema`), its units (`units`), loading with
//! environment interpolation and line-accurate errors (`load`), and the step that checks what
//! serde cannot and expands presets into runnable checks (`build`). The CLI calls [`load`];
//! everything downstream sees only [`Config`]. The file's secrets (`secrets`) are collected
//! first, so that no error, and nothing printed from the config, shows one.

mod alerting;
mod backup;
mod build;
mod control;
mod deploy;
mod instance;
pub(crate) mod error;
mod keypath;
pub(crate) mod load;
mod maintenance;
mod postgres;
mod render;
pub(crate) mod schema;
mod store;
pub(crate) mod secrets;
pub(crate) mod targets;

pub use control::{ControlSettings, HeartbeatSettings};
pub(crate) use error::{ConfigError, Diagnostic};
pub use instance::InstanceSettings;

use crate::probe::spec::CheckSpec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// The defaults section.
    pub defaults: schema::DefaultsConfig,
    /// Every check: presets expanded, user checks after them, scrapes last.
    pub checks: Vec<CheckSpec>,
    /// Every alerting rule: presets for services with `metrics_url`, then the config's.
    pub rules: Vec<crate::rule::AlertRule>,
    /// Runbook lines that have no rule, per service, with the reason.
    pub unavailable: Vec<(String, &'static crate::preset::rules::Unavailable)>,
    /// Preset thresholds per service, with the configured value if one was given.
    pub thresholds: Vec<(String, &'static crate::preset::rules::Threshold, Option<String>)>,
    /// Where alerts go (`alerting:`), if configured.
    pub alerting: Option<crate::notify::Alerting>,
    /// Where the store lives: a SQLite file, or a PostgreSQL database.
    pub store: crate::store::Location,
    /// Where the status page and API listen (`None`: `listen: off`).
    pub listen: Option<std::net::SocketAddr>,
    /// Most connections the server holds at once (`listen_max_connections`, default 512).
    pub listen_max_connections: usize,
    /// The API's write token.
    pub admin_token: Option<secrecy::SecretString>,
    /// Backups (`backup:`), if configured.
    pub backup: Option<std::sync::Arc<crate::backup::BackupPlan>>,
    /// Recurring maintenance windows (`maintenance:`).
    pub maintenance: Vec<crate::maintenance::RecurringWindow>,
    /// How long before an ad hoc window ends its reminder goes out, ms (0: none).
    pub maintenance_reminder_ms: i64,
    /// Which service needs which (`depends_on:` and the built-in topology).
    pub topology: crate::topology::Topology,
    /// Every secret of the file (and of the `*_file`s and `${VAR}`s it names), for whatever
    /// prints something that came from the config.
    pub redactor: crate::redact::Redactor,
    /// Each service's `deploy:` (how `mxwarden update` deploys it) and how to reach it.
    pub(crate) deploys: std::collections::BTreeMap<String, (crate::update::DeploySpec, crate::update::ServiceAccess)>,
    /// Render's API (`render:`), if configured.
    pub render: Option<std::sync::Arc<crate::probe::render::RenderApi>>,
    /// Each service's URLs, token, TLS and database, for the diagnosis playbooks.
    pub(crate) services: Vec<targets::ServiceTarget>,
    /// The control room (`control:`), if configured.
    pub control: Option<ControlSettings>,
    /// The dead man's switch (`heartbeat:`), if configured.
    pub heartbeat: Option<HeartbeatSettings>,
    /// This instance's name among those sharing the store, and its leadership lease.
    pub instance: InstanceSettings,
}

/// Reads and validates the config at `path`, interpolating from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let env: HashMap<String, String> = std::env::vars().collect();
    from_source(path, &source, &env)
}

/// The secrets of the config file at `path` as far as its text shows them, valid or not
/// (no `*_file` is read): for the log writer, before the config is loaded. Nothing when the
/// file cannot be read.
pub(crate) fn secrets_of(path: &Path) -> crate::redact::Redactor {
    let Ok(source) = std::fs::read_to_string(path) else { return crate::redact::Redactor::default() };
    let env: HashMap<String, String> = std::env::vars().collect();
    secrets::collect(&source, &env).redactor()
}

/// Validates config text as if read from `path`, with `env` as the environment. An error
/// shows none of the file's secrets (see `secrets`).
pub fn from_source(path: &Path, source: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let mut secrets = secrets::collect(source, env);
    let clean = |secrets: &secrets::Secrets, e: ConfigError| match e {
        ConfigError::Invalid(found) => {
            let redactor = secrets.redactor();
            ConfigError::Invalid(found.into_iter().map(|d| secrets.clean(source, &redactor, d)).collect())
        }
        read @ ConfigError::Read { .. } => read,
    };
    let file = load::parse(path, source, env).map_err(|e| clean(&secrets, e))?;
    // The store URL's password as expanded (`store: ${STORE_URL}` hides it from the text pass).
    secrets.add(file.store.as_ref().and_then(|s| crate::store::Location::parse(&s.value).password()));
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let origin = build::Origin { path, source, base_dir, read_secrets: Default::default() };
    let built = build::build(&file, &origin);
    let services = built.as_ref().map(|b| targets::targets(&file, &origin, &b.checks)).unwrap_or_default();
    secrets.add(origin.read_secrets.take());
    let built = built.map_err(|found| clean(&secrets, ConfigError::Invalid(found)))?;
    Ok(Config {
        services,
        redactor: secrets.redactor(),
        path: path.to_path_buf(),
        defaults: file.defaults,
        checks: built.checks,
        rules: built.rules,
        unavailable: built.unavailable,
        thresholds: built.thresholds,
        alerting: built.alerting,
        listen: built.listen,
        listen_max_connections: built.listen_max_connections,
        admin_token: built.admin_token,
        backup: built.backup.map(std::sync::Arc::new),
        maintenance: built.maintenance,
        maintenance_reminder_ms: file.maintenance_reminder.map_or(300_000, |d| d.0.as_millis() as i64),
        topology: built.topology,
        deploys: built.deploys,
        render: built.render,
        control: built.control,
        heartbeat: built.heartbeat,
        instance: built.instance,
        store: built
            .store
            .map_or_else(|| crate::store::Location::File(base_dir.join("mxwarden.db")), |at| at.relative_to(base_dir)),
    })
}

impl Config {
    /// The services it knows: its `services:` and the `service` of its checks.
    pub(crate) fn known_services(&self) -> std::collections::BTreeSet<String> {
        self.topology
            .services()
            .map(str::to_string)
            .chain(self.checks.iter().filter_map(|c| c.service.clone()))
            .collect()
    }

    /// What `mxwarden update SERVICE` needs of this config: the service's `deploy:`, checks,
    /// dependencies, dependents, rules, receivers and backup plan.
    pub(crate) fn update_target(&self, service: &str) -> Result<crate::update::Target, String> {
        let Some((deploy, access)) = self.deploys.get(service) else {
            let known = self.known_services();
            if !known.contains(service) {
                let hint = crate::units::closest(service, known.iter().map(String::as_str))
                    .map(|k| format!(" Did you mean `{k}`?"))
                    .unwrap_or_default();
                return Err(format!("no service `{service}` in {}.{hint}", self.path.display()));
            }
            return Err(format!(
                "services.{service} has no `deploy:` in {}: say how to deploy it, e.g. deploy: {{ command: [\"/usr/local/bin/deploy-{service}\", \"{{to}}\"], rollback: {{ command: [\"/usr/local/bin/deploy-{service}\", \"{{from}}\"] }} }}",
                self.path.display()
            ));
        };
        let upstream = self.topology.upstream(service);
        let of = |s: &str| self.checks.iter().filter(|c| c.service.as_deref() == Some(s)).cloned().collect::<Vec<_>>();
        Ok(crate::update::Target {
            service: service.to_string(),
            access: access.clone(),
            deploy: deploy.clone(),
            checks: of(service),
            dependency_checks: upstream.iter().flat_map(|u| of(u)).collect(),
            dependents: self.topology.downstream(service),
            upstream,
            rules: self.rules.clone(),
            alerting: self.alerting.clone().map(std::sync::Arc::new),
            backup: self.backup.clone(),
            concurrency: self.defaults.concurrency,
            series_limit: self.defaults.series_limit,
            redactor: self.redactor.clone(),
        })
    }

    /// [`Config::update_target`] of every service with `deploy:` (the daemon's
    /// `POST /api/v1/updates`).
    pub(crate) fn update_targets(&self) -> std::collections::BTreeMap<String, crate::update::Target> {
        self.deploys.keys().filter_map(|s| self.update_target(s).ok().map(|t| (s.clone(), t))).collect()
    }
}
