//! A service's `deploy:` section (how `mxwarden update` deploys it, rolls it back and proves
//! it healthy) from config to runtime ([`crate::update::DeploySpec`]), with the service's
//! URLs and token for the version and login-path checks. Called by `config::build`; every
//! problem names file, line and key.

use super::build::{Problems, secret};
use super::schema::FileConfig;
use crate::units::HumanDuration;
use crate::update::{CommandSpec, DeploySpec, Deployer, ServiceAccess, VerifySpec};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::time::Duration;

/// `deploy:` under a service: how `mxwarden update SERVICE --to VERSION` deploys it.
/// Example (a host that is not Render):
/// `deploy: { command: ["/usr/local/bin/deploy-synapse", "{to}"], timeout: 15m,
///            rollback: { command: ["/usr/local/bin/deploy-synapse", "{from}"] } }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployConfig {
    /// The deploy command: program and arguments, run without a shell. `{to}` in an argument
    /// becomes the version asked for (`--to`), `{from}` the version the service reported
    /// before; the environment also carries `MXWARDEN_UPDATE_SERVICE`, `MXWARDEN_UPDATE_TO`,
    /// `MXWARDEN_UPDATE_FROM`, `MXWARDEN_UPDATE_ID`. Exit 0 means deployed.
    #[serde(default)]
    pub command: Option<Spanned<Vec<String>>>,
    /// `true`: deploy through Render's API — the service's `render: srv-…` and the top-level
    /// `render:` key. `--to` is an image (`ghcr.io/…:v1.2.3`) or a commit; the rollback is
    /// Render's rollback to the deploy that was live before.
    #[serde(default)]
    pub render: Option<Spanned<bool>>,
    /// Longest the deploy command may run (killed with its children after), or the Render
    /// deploy may take to go live. Default `15m`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// How to put the version before back: `{ command: [...], timeout: 15m }`. Without it a
    /// failed deploy cannot be undone, and the preflight refuses (unless `--force`).
    #[serde(default)]
    pub rollback: Option<Spanned<RollbackConfig>>,
    /// The proof after a deploy: `{ rounds: 3, interval: 10s, timeout: 5m }` — every check of
    /// the service passing `rounds` times in a row, within `timeout`.
    #[serde(default)]
    pub verify: Option<Spanned<VerifyConfig>>,
    /// The maintenance window opened for the update (the service and its dependents), and the
    /// downtime announced. Default `15m`.
    #[serde(default)]
    pub window: Option<Spanned<HumanDuration>>,
    /// Longest the backup before the deploy may take. Default `1h`.
    #[serde(default)]
    pub backup_timeout: Option<Spanned<HumanDuration>>,
}

/// `deploy.rollback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackConfig {
    /// Program and arguments, as `deploy.command` (`{from}` is the version to go back to).
    pub command: Spanned<Vec<String>>,
    /// Longest it may run. Default: `deploy.timeout`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
}

/// `deploy.verify`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyConfig {
    /// Rounds of all checks passing in a row. Default `3` (1 to 100).
    #[serde(default)]
    pub rounds: Option<Spanned<u32>>,
    /// Time between rounds. Default `10s`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// Longest wait for those rounds. Default `5m`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
}

/// What `build` gives per service with `deploy:`.
pub(crate) type Deploys = BTreeMap<String, (DeploySpec, ServiceAccess)>;

fn duration(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<HumanDuration>>,
    key: String,
    default: Duration,
    range: (Duration, Duration),
) -> Duration {
    let Some(v) = value else { return default };
    if v.value.0 < range.0 || v.value.0 > range.1 {
        problems.add(
            &v.referenced,
            key,
            format!("{} is out of range; expected {} to {}", v.value, HumanDuration(range.0), HumanDuration(range.1)),
        );
        return default;
    }
    v.value.0
}

fn command(
    problems: &mut Problems<'_>,
    argv: &Spanned<Vec<String>>,
    key: String,
    timeout: Duration,
) -> Option<CommandSpec> {
    match argv.value.first() {
        None => {
            problems.add(&argv.referenced, key, "the command is empty; expected [program, arguments…]");
            None
        }
        Some(p) if p.trim().is_empty() => {
            problems.add(&argv.referenced, key, "the program name is empty");
            None
        }
        Some(_) => Some(CommandSpec { argv: argv.value.clone(), timeout }),
    }
}

/// Builds every service's `deploy:`.
pub(super) fn build(
    file: &FileConfig,
    render: Option<&std::sync::Arc<crate::probe::render::RenderApi>>,
    problems: &mut Problems<'_>,
) -> Deploys {
    let mut out = Deploys::new();
    for (name, service) in &file.services {
        let Some(spanned) = &service.value.deploy else { continue };
        let d = &spanned.value;
        let key = |k: &str| format!("services.{name}.deploy.{k}");
        let before = problems.found.len();
        let long = (Duration::from_secs(1), Duration::from_secs(24 * 3600));
        let timeout = duration(problems, d.timeout.as_ref(), key("timeout"), Duration::from_secs(900), long);
        let deployer = match (&d.command, &d.render) {
            (Some(argv), None) => {
                let deploy = command(problems, argv, key("command"), timeout);
                let rollback = d.rollback.as_ref().and_then(|r| {
                    let t = duration(problems, r.value.timeout.as_ref(), key("rollback.timeout"), timeout, long);
                    command(problems, &r.value.command, key("rollback.command"), t)
                });
                deploy.map(|deploy| Deployer::Command { deploy, rollback })
            }
            (None, Some(flag)) if !flag.value => {
                problems.add(
                    &flag.referenced,
                    key("render"),
                    "`render: false` deploys nothing; give `command: [...]` or leave `deploy:` out",
                );
                None
            }
            (None, Some(flag)) => match (render, service.value.render.as_ref()) {
                (Some(api), Some(id))
                    if crate::render::ResourceKind::of(id.value.trim())
                        == Some(crate::render::ResourceKind::Service) =>
                {
                    Some(Deployer::Render { api: api.clone(), service_id: id.value.trim().to_string(), timeout })
                }
                (None, _) => {
                    problems.add(
                        &flag.referenced,
                        key("render"),
                        "deploys through Render need the top-level `render: { api_key: … }`",
                    );
                    None
                }
                (Some(_), _) => {
                    problems.add(
                        &flag.referenced,
                        key("render"),
                        format!("deploys through Render need the service's Render id: services.{name}.render: srv-… (`mxwarden render discover` prints it)"),
                    );
                    None
                }
            },
            (Some(_), Some(render)) => {
                problems.add(&render.referenced, key("render"), "give either `command` or `render`, not both");
                None
            }
            (None, None) => {
                problems.add(
                    &spanned.referenced,
                    format!("services.{name}.deploy"),
                    "say how to deploy: `command: [program, args…]`",
                );
                None
            }
        };
        let v = d.verify.as_ref().map(|v| &v.value);
        let rounds = match v.and_then(|v| v.rounds.as_ref()) {
            None => 3,
            Some(r) if (1..=100).contains(&r.value) => r.value,
            Some(r) => {
                problems.add(&r.referenced, key("verify.rounds"), format!("{} rounds; expected 1 to 100", r.value));
                3
            }
        };
        let verify = VerifySpec {
            rounds,
            interval: duration(
                problems,
                v.and_then(|v| v.interval.as_ref()),
                key("verify.interval"),
                Duration::from_secs(10),
                (Duration::from_millis(100), Duration::from_secs(3600)),
            ),
            timeout: duration(
                problems,
                v.and_then(|v| v.timeout.as_ref()),
                key("verify.timeout"),
                Duration::from_secs(300),
                long,
            ),
        };
        let window = duration(
            problems,
            d.window.as_ref(),
            key("window"),
            Duration::from_secs(900),
            (Duration::from_secs(60), Duration::from_secs(7 * 86_400)),
        );
        let backup_timeout =
            duration(problems, d.backup_timeout.as_ref(), key("backup_timeout"), Duration::from_secs(3600), long);
        let url = |u: &Option<Spanned<String>>| u.as_ref().and_then(|u| url::Url::parse(u.value.trim()).ok());
        // The preset already reports a wrong token setting; here it is only read.
        let token = secret(
            problems.origin,
            service.value.api_token.as_ref(),
            service.value.api_token_file.as_ref(),
            &format!("services.{name}.api_token"),
            &service.referenced,
        )
        .ok()
        .flatten();
        let access = ServiceAccess {
            kind: service.value.kind,
            url: url(&service.value.url),
            federation_url: url(&service.value.federation_url),
            token,
        };
        if let (Some(deployer), true) = (deployer, problems.found.len() == before) {
            out.insert(name.clone(), (DeploySpec { deployer, verify, window, backup_timeout }, access));
        }
    }
    out
}
