//! The `mxwarden.yaml` schema, field by field. These `///` comments are the user's reference:
//! `mxwarden init` and `docs/configuration.md` repeat them. The loader (`config::load`) fills
//! these types from YAML; `config::build` checks what serde cannot and, with `preset`,
//! turns them into runnable checks, rules and receivers. Keys are snake_case, durations `30s`,
//! sizes `1MiB`, secrets `${ENV_VAR}` or a `*_file` twin.

pub(crate) use crate::model::{ServiceKind, StatusMatcher};
use crate::units::{ByteSize, HumanDuration};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Values every check inherits unless it sets its own.
    #[serde(default)]
    pub defaults: DefaultsConfig,
    /// The services of the stack, by name. The name becomes the `service` label and the first
    /// part of every preset check's name (`synapse/health`).
    #[serde(default)]
    pub services: BTreeMap<String, Spanned<ServiceConfig>>,
    /// Checks the presets do not cover.
    #[serde(default)]
    pub checks: Vec<Spanned<CheckConfig>>,
    /// Extra Prometheus alerting rules, in Prometheus's own shape. The presets already ship
    /// the runbook's tables for every service with a `metrics_url`.
    #[serde(default)]
    pub rules: Vec<Spanned<RuleConfig>>,
    /// Where alerts go: receivers, and the runbook's three tiers.
    #[serde(default)]
    pub alerting: Option<AlertingConfig>,
    /// Where alert state, the notification outbox and uptime history live: a SQLite file
    /// (default `./mxwarden.db`, next to the config file), or a PostgreSQL database as
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (or `${VAR}`) for instances that share
    /// one store. The URL's password is a secret.
    #[serde(default)]
    pub store: Option<Spanned<String>>,
    /// Where `mxwarden run` serves the status page, the JSON API, `/metrics` and `/healthz`:
    /// `host:port`, default `127.0.0.1:8090`; `off` serves nothing.
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    /// Most connections the server holds open at once, like Prometheus's
    /// `--web.max-connections`. When all are taken, a new connection closes the one that has
    /// waited longest for a request; when every one is busy with a request, it waits. The
    /// server never takes more than the open-file limit minus 256 descriptors, which stay for
    /// probes, the store and notifications (mxwarden raises its soft limit to the hard one at
    /// start). Default `512`.
    #[serde(default)]
    pub listen_max_connections: Option<Spanned<usize>>,
    /// Bearer token every write to the API needs (`Authorization: Bearer …`). Without it the
    /// API is read-only. Usually `"${MXWARDEN_ADMIN_TOKEN}"`.
    #[serde(default)]
    pub admin_token: Option<SecretString>,
    /// Read `admin_token` from this file instead (trailing newline removed).
    #[serde(default)]
    pub admin_token_file: Option<Spanned<PathBuf>>,
    /// Backups of the PostgreSQL databases and key files: where, what, when, how long kept,
    /// encrypted to whom (see `docs/backups.md`).
    #[serde(default)]
    pub backup: Option<Spanned<BackupConfig>>,
    /// Recurring maintenance windows (the runbook's "Regular Maintenance" table): during a
    /// window the services' checks still run, but their notifications are held until it ends.
    #[serde(default)]
    pub maintenance: Vec<Spanned<MaintenanceWindowConfig>>,
    /// How long before an ad hoc maintenance window (`mxwarden maintenance start`) ends a
    /// reminder goes to the critical tier's receivers. Default `5m`; `0s` sends none.
    #[serde(default)]
    pub maintenance_reminder: Option<HumanDuration>,
    /// Render, the platform the stack runs on: deploys, restarts and OOM kills, suspensions,
    /// memory and CPU against the plan, the database's real disk, logs (`docs/render.md`).
    /// Each service names its Render id with `render: srv-…` (`dpg-…` for postgres).
    #[serde(default)]
    pub render: Option<Spanned<RenderConfig>>,
    /// The ops room as a control room: commands (`!status`, `!silence synapse 2h reason`, …)
    /// from the allowed users, answered in a thread (see `docs/control-room.md`).
    #[serde(default)]
    pub control: Option<Spanned<ControlConfig>>,
    /// A dead man's switch watching mxwarden itself: a URL pinged while evaluation is healthy
    /// (Healthchecks.io, Uptime Kuma push monitors, UptimeRobot heartbeats).
    #[serde(default)]
    pub heartbeat: Option<Spanned<HeartbeatConfig>>,
    /// Prometheus-compatible storage (Prometheus, Mimir, VictoriaMetrics, Thanos) to send the
    /// probes' samples, the scraped series and `ALERTS` to, with the remote-write 1.0
    /// protocol; Prometheus's key names (see `docs/remote-write.md`).
    #[serde(default)]
    pub remote_write: Vec<Spanned<RemoteWriteConfig>>,
    /// This instance's name among instances sharing one store (two `mxwarden run` on one
    /// PostgreSQL store, see `docs/ha.md`): shown in logs, the status page, `/metrics` and
    /// PostgreSQL's `application_name` (`mxwarden/<name>`). 1 to 48 letters, digits, `.`, `_`
    /// or `-`. Default: the host name. A second running process with the same name on the
    /// same store is refused at start.
    #[serde(default)]
    pub instance: Option<Spanned<String>>,
    /// Leadership among instances sharing the store: only the leader judges rules, routes
    /// and delivers; every instance probes and records history.
    #[serde(default)]
    pub leader: Option<Spanned<LeaderConfig>>,
}

/// `leader:`: the leadership lease.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaderConfig {
    /// How long the lease lasts without a renewal, from `3s` to `5m`. Default `15s`. The
    /// leader renews it every third of this; a standby tries to take it as often, so a
    /// leader that dies is replaced within about 4/3 of it (20 s by default).
    #[serde(default)]
    pub lease: Option<Spanned<HumanDuration>>,
}

/// `render:`: how to reach Render's API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenderConfig {
    /// An API key (Account settings → API keys), usually `"${RENDER_API_KEY}"`. Sent only as
    /// a bearer token; never logged or shown.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Read `api_key` from this file instead (trailing newline removed).
    #[serde(default)]
    pub api_key_file: Option<Spanned<PathBuf>>,
    /// The API's base URL. Default `https://api.render.com/v1`.
    #[serde(default)]
    pub api_url: Option<Spanned<String>>,
    /// The workspace (`tea-…` or `usr-…`) `mxwarden render discover` lists. Default: every
    /// workspace the key reaches. Logs are read with each service's own workspace.
    #[serde(default)]
    pub owner_id: Option<Spanned<String>>,
    /// How often each linked service is polled. Default `60s` (Render's metrics have one
    /// point a minute, and the API has a rate limit: `docs/render.md`).
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// Most requests a minute mxwarden sends to Render, all checks and commands of one
    /// process together. Default `60`: 60 % of the lower GET limit Render has documented
    /// (100/min; another snapshot says 400), leaving the rest to the dashboard, Render's CLI
    /// and deploy scripts that share the key. At most `400`. One poll costs 8 requests for a
    /// service or a database (`docs/render.md`).
    #[serde(default)]
    pub requests_per_minute: Option<Spanned<u32>>,
}

/// `control:`: the room mxwarden takes commands from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControlConfig {
    /// Room id (`!abc:example.org`) or alias (`#ops:example.org`); must not be encrypted.
    pub room: Spanned<String>,
    /// Matrix user ids whose commands are obeyed, e.g. `["@admin:example.org"]`. Commands
    /// from anyone else are ignored and logged.
    pub allowed_users: Vec<Spanned<String>>,
    /// The bot's homeserver. Default: the first Matrix receiver's (by name).
    #[serde(default)]
    pub homeserver: Option<Spanned<String>>,
    /// The bot's access token. Default: the first Matrix receiver's (by name).
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// Read `access_token` from this file instead.
    #[serde(default)]
    pub access_token_file: Option<Spanned<PathBuf>>,
}

/// `heartbeat:`: the outside watcher's ping URL and how often to ping it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatConfig {
    /// The ping URL, e.g. `"https://hc-ping.com/${HC_UUID}"`. A secret: such URLs carry
    /// their credential in the path, so only the scheme and host are ever shown.
    pub url: Spanned<SecretString>,
    /// How often to ping while evaluation is healthy, e.g. `1m` (default). Set the watcher's
    /// period to this and its grace to a few periods.
    #[serde(default)]
    pub every: Option<Spanned<HumanDuration>>,
    /// `GET` (default) or `POST`.
    #[serde(default)]
    pub method: Option<Spanned<String>>,
}

/// One recurring maintenance window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MaintenanceWindowConfig {
    /// A unique name, e.g. `synapse-monthly-update`.
    pub name: Spanned<String>,
    /// The services it covers, by their names under `services:` (or a check's `service`).
    pub services: Vec<Spanned<String>>,
    /// When each occurrence starts: a 5-field cron expression (`minute hour day month weekday`),
    /// e.g. `"0 3 1 * *"` for 03:00 on the first of every month, or `@monthly`.
    pub cron: Spanned<String>,
    /// How long each occurrence lasts, e.g. `15m`.
    pub duration: Spanned<HumanDuration>,
    /// The time zone the cron expression is read in, e.g. `Europe/Berlin`. Default: UTC.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
}

/// Receivers and tiers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertingConfig {
    /// Named receivers, each one of `matrix`, `email` or `webhook`.
    #[serde(default)]
    pub receivers: BTreeMap<String, Spanned<ReceiverConfig>>,
    /// What each severity does: `critical` pages at once, `warning` goes into a daily digest,
    /// `info` into a weekly one.
    #[serde(default)]
    pub tiers: TiersConfig,
    /// Time zone for digest times, e.g. `Europe/Berlin`. Default `UTC`.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// How failed deliveries are retried.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
}

/// Delivery retries: exponential backoff with ±20 % jitter (or the server's Retry-After).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryConfig {
    /// First wait; doubled after every failure. Default `2s`.
    #[serde(default)]
    pub initial: Option<HumanDuration>,
    /// Longest wait. Default `5m`.
    #[serde(default)]
    pub max: Option<HumanDuration>,
    /// Give up (dead-letter) a delivery this long after it was decided. Default `1d`.
    #[serde(default)]
    pub give_up_after: Option<HumanDuration>,
}

/// The three tiers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TiersConfig {
    /// `severity: critical`: sent at once, reminders every `repeat`, `fallback` when the
    /// receivers keep failing.
    #[serde(default)]
    pub critical: Option<Spanned<TierConfig>>,
    /// `severity: warning`: collected into a daily digest by default.
    #[serde(default)]
    pub warning: Option<Spanned<TierConfig>>,
    /// `severity: info`: collected into a weekly digest by default.
    #[serde(default)]
    pub info: Option<Spanned<TierConfig>>,
}

/// One tier.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TierConfig {
    /// Receivers by name.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Receivers used when every primary receiver has failed `fallback_after` times.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Failed attempts before the fallback is used. Default `3`.
    #[serde(default)]
    pub fallback_after: Option<u32>,
    /// Announce a still-firing alert again after this long (critical only), e.g. `1h`.
    #[serde(default)]
    pub repeat: Option<HumanDuration>,
    /// Collect instead of sending at once: `{ daily: "09:00" }` or `{ weekly: "mon 09:00" }`.
    #[serde(default)]
    pub digest: Option<DigestConfig>,
}

/// When a digest goes out (local time in `alerting.timezone`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DigestConfig {
    /// Every day at `HH:MM`.
    #[serde(default)]
    pub daily: Option<String>,
    /// Every week at `ddd HH:MM` (`mon 09:00`).
    #[serde(default)]
    pub weekly: Option<String>,
}

/// A receiver: exactly one of the kinds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReceiverConfig {
    /// A Matrix room.
    #[serde(default)]
    pub matrix: Option<MatrixReceiverConfig>,
    /// Email over SMTP.
    #[serde(default)]
    pub email: Option<EmailReceiverConfig>,
    /// A webhook receiving Alertmanager's payload.
    #[serde(default)]
    pub webhook: Option<WebhookReceiverConfig>,
}

/// Posts into a Matrix room as a bot user (the room should be unencrypted).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatrixReceiverConfig {
    /// The homeserver's client API base URL, e.g. `https://matrix.example.org`.
    pub homeserver: Spanned<String>,
    /// Room id (`!abc:example.org`) or alias (`#ops:example.org`).
    pub room: String,
    /// The bot's access token (sent only in the `Authorization` header).
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// Read `access_token` from this file instead.
    #[serde(default)]
    pub access_token_file: Option<Spanned<PathBuf>>,
    /// `m.notice` (default, what bots should send) or `m.text`.
    #[serde(default)]
    pub msgtype: Option<String>,
}

/// Sends mail through an SMTP server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmailReceiverConfig {
    /// `smtp://host:587` (STARTTLS), `smtps://host:465` (TLS), or `smtp://localhost:25` with
    /// `tls: none` for a local relay.
    pub smtp: Spanned<String>,
    /// `starttls`, `tls` or `none`. Default: `tls` for `smtps://`, `starttls` otherwise.
    #[serde(default)]
    pub tls: Option<String>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// SMTP user name.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Read `password` from this file instead.
    #[serde(default)]
    pub password_file: Option<Spanned<PathBuf>>,
}

/// POSTs Alertmanager's webhook payload (version 4).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookReceiverConfig {
    /// Where to POST. A secret, like the tokens: webhook URLs usually carry their
    /// credential in the path, so only the scheme and host are ever shown.
    pub url: Spanned<SecretString>,
    /// Signs the body: `X-Mxwarden-Signature: sha256=<hex HMAC-SHA256>`.
    #[serde(default)]
    pub hmac_secret: Option<SecretString>,
    /// Read `hmac_secret` from this file instead.
    #[serde(default)]
    pub hmac_secret_file: Option<Spanned<PathBuf>>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// One alerting rule, exactly as in a Prometheus rule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleConfig {
    /// Alert name, e.g. `SynapseFederationQueueBacklog`.
    pub alert: String,
    /// PromQL expression over scraped metrics and probe samples (see `docs/rules.md` for
    /// the supported subset).
    pub expr: String,
    /// How long the condition must hold before the alert fires. Default `0s`.
    #[serde(default, rename = "for")]
    pub for_: Option<HumanDuration>,
    /// How long the alert keeps firing after the condition stops holding. Default `0s`.
    #[serde(default)]
    pub keep_firing_for: Option<HumanDuration>,
    /// Labels; `severity` (critical, warning or info) is required and picks the tier.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations, with `{{ $value }}`, `{{ $labels.x }}`, `humanize` and friends.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Defaults for every check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsConfig {
    /// How often a check runs in the daemon. Default `30s`.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Hard deadline for one probe: DNS, connect, TLS, headers and body together. Default `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Largest response body read; over it the read stops and the check fails. Default `1MiB`.
    #[serde(default = "default_body_limit")]
    pub body_limit: ByteSize,
    /// Follow HTTP redirects (up to 10). Default `true`.
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// How many probes `mxwarden check` runs at once. Default `16`.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Largest metrics page read by a scrape. Default `32MiB`.
    #[serde(default = "default_scrape_body_limit")]
    pub scrape_body_limit: ByteSize,
    /// Most series kept in memory for rules; new series beyond it are dropped with a
    /// warning. A scrape never keeps more samples than this either: a page with more samples
    /// of the families the rules read fails, like one over `sample_limit`. A check's own
    /// samples (`probe_success`, `probe_duration_seconds`, `up`, …: a few per check, bounded by
    /// the config) do not count against it. Default `20000`.
    #[serde(default = "default_series_limit")]
    pub series_limit: usize,
    /// Most samples one scrape keeps (of the families the rules read), as Prometheus's
    /// `sample_limit`: counted while the page is parsed, and the first sample over it stops
    /// the parse and fails the scrape (`up` 0, the reason in its detail, counted in
    /// `mxwarden_scrape_limit_exceeded_total`); nothing of that page is kept. `0` for no
    /// limit of its own (`series_limit` still applies). Default `10000`.
    #[serde(default = "default_sample_limit")]
    pub sample_limit: usize,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_timeout(),
            body_limit: default_body_limit(),
            follow_redirects: true,
            concurrency: default_concurrency(),
            scrape_body_limit: default_scrape_body_limit(),
            series_limit: default_series_limit(),
            sample_limit: default_sample_limit(),
        }
    }
}

fn default_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}
fn default_body_limit() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_true() -> bool {
    true
}
fn default_concurrency() -> usize {
    16
}
fn default_scrape_body_limit() -> ByteSize {
    ByteSize(32 << 20)
}
fn default_series_limit() -> usize {
    20_000
}
fn default_sample_limit() -> usize {
    10_000
}

/// One service of the stack. Which keys apply depends on `kind`; a key that does not apply to
/// the kind is an error, not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceConfig {
    /// What the service is: `synapse`, `mas`, `vikunja`, `authentik` or `postgres`.
    pub kind: ServiceKind,
    /// Public base URL, e.g. `https://matrix.example.org`. Preset paths are joined to it.
    /// Required for every kind but `postgres`, which has `dsn` instead.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// The service's Prometheus metrics, e.g. `http://synapse.internal:9000/_synapse/metrics`.
    /// Scraped as the check `<service>/metrics`; enables the kind's preset rules.
    #[serde(default)]
    pub metrics_url: Option<Spanned<String>>,
    /// Preset rule thresholds to change, e.g. `{ memory_warning: 2GiB, cpu_warning: 90% }`.
    /// `mxwarden rules list` shows every threshold and its default.
    #[serde(default)]
    pub thresholds: BTreeMap<String, Spanned<String>>,
    /// synapse: an admin's access token, sent as a bearer token to the admin API.
    /// With it, the preset also checks that the token really is an admin's.
    #[serde(default)]
    pub admin_token: Option<SecretString>,
    /// synapse: read `admin_token` from this file instead (trailing newline removed).
    #[serde(default)]
    pub admin_token_file: Option<Spanned<PathBuf>>,
    /// synapse: where the media store lives. `false` declares it is in the container (the
    /// runbook's Render setup), so uploaded media is lost on every redeploy: the warning
    /// `SynapseMediaEphemeral` says so until media is moved and this is set to `true`. Left
    /// out, with an `admin_token`, the `media` check asks Synapse whether there is local media
    /// and the same warning fires while there is (`docs/presets.md`).
    #[serde(default)]
    pub media_persistent: Option<bool>,
    /// synapse: base URL of the federation listener; setting it enables `federation`.
    /// Use `url` here when federation is served on the same port.
    #[serde(default)]
    pub federation_url: Option<Spanned<String>>,
    /// mas: MAS's internal health URL (the `health` resource, usually `http://…:8081/health`).
    #[serde(default)]
    pub health_url: Option<Spanned<String>>,
    /// mas: the issuer discovery must announce. Default: not compared, only required.
    #[serde(default)]
    pub issuer: Option<String>,
    /// authentik: an API token (Directory → Tokens, intent "API") for the version endpoint.
    #[serde(default)]
    pub api_token: Option<SecretString>,
    /// authentik: read `api_token` from this file instead.
    #[serde(default)]
    pub api_token_file: Option<Spanned<PathBuf>>,
    /// For `https` URLs: how long the certificate must still be valid. Default `14d`.
    #[serde(default)]
    pub cert_valid_for: Option<HumanDuration>,
    /// Interval for this service's checks (overrides `defaults.interval`).
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// Timeout for this service's checks (overrides `defaults.timeout`).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// How long the service's checks must keep failing before `<Kind>Down` (critical) fires.
    /// Default `1m`.
    #[serde(default)]
    pub down_after: Option<HumanDuration>,
    /// TLS settings for this service's checks.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Preset checks to leave out, by short name (`federation`) or full name (`synapse/federation`).
    #[serde(default)]
    pub disable: Vec<Spanned<String>>,
    /// Changes to single preset checks, by short or full name:
    /// `overrides: { health: { timeout: 3s, expect: { max_latency: 1s } } }`.
    #[serde(default)]
    pub overrides: BTreeMap<String, Spanned<OverrideConfig>>,
    /// postgres: the libpq connection string, usually `"${DATABASE_URL}"`: a URI
    /// (`postgresql://user:password@host:5432/matrix?sslmode=require`) or `key=value` pairs
    /// (`host=db user=monitor dbname=matrix`). `sslmode` is libpq's: `disable`, `prefer` (the
    /// default), `require`, `verify-ca`, `verify-full` (with `sslrootcert=FILE` for a private
    /// CA). A secret: shown with the password redacted, never logged.
    #[serde(default)]
    pub dsn: Option<Spanned<SecretString>>,
    /// postgres: read the password from this file (trailing newline removed) instead of
    /// writing it into `dsn`.
    #[serde(default)]
    pub password_file: Option<Spanned<PathBuf>>,
    /// postgres: the database's disk, e.g. `1GiB` (Render sizes it apart from the plan:
    /// `basic_256mb` names 256 MB of RAM, not the disk). Disk usage (database sizes, plus WAL
    /// when the role has `pg_monitor`) and the days-until-full forecast are measured against
    /// it. Without it there is no such disk rule. Optional for a database linked to Render
    /// (`render: dpg-…`), which takes its real disk from Render's API and is refused when
    /// this contradicts it.
    #[serde(default)]
    pub disk_limit: Option<ByteSize>,
    /// postgres: the stack's databases, e.g. `[matrix, mas, vikunja, authentik]`. Each must
    /// exist (the check fails naming the one that does not), and the largest tables of each
    /// are tracked.
    #[serde(default)]
    pub databases: Vec<Spanned<String>>,
    /// postgres: the server-side limit on every statement of a poll (`statement_timeout`);
    /// must be shorter than the check's timeout. Default `5s`, or half the timeout if that is
    /// shorter.
    #[serde(default)]
    pub statement_timeout: Option<HumanDuration>,
    /// postgres: how many of each database's largest tables become samples. Default `10`.
    #[serde(default)]
    pub top_tables: Option<usize>,
    /// The services this one needs, by name. While one of them is down (its `<Kind>Down`
    /// fires), this service's critical alerts are folded into that one page instead of paging
    /// on their own; resolves are always sent. Default: the built-in topology — synapse, mas,
    /// vikunja and authentik need the `postgres` service, and synapse needs `mas` for logins
    /// (each when exactly one service of that kind is configured). `[]` means none.
    #[serde(default)]
    pub depends_on: Option<Vec<Spanned<String>>>,
    /// How `mxwarden update` deploys this service, rolls it back and proves it healthy:
    /// `{ command: [...], rollback: { command: [...] }, verify: { rounds: 3 } }` (docs/update.md).
    #[serde(default)]
    pub deploy: Option<Spanned<super::deploy::DeployConfig>>,
    /// The service's Render id: `srv-…` (`dpg-…` for a `postgres` service), as `mxwarden
    /// render discover` prints it. Adds the check `<service>/render` (deploys, OOM kills,
    /// suspension, memory and CPU against the plan; a database's real disk) and the Render
    /// preset rules. Needs the top-level `render:`.
    #[serde(default)]
    pub render: Option<Spanned<String>>,
}

/// Changes to one preset check. Every field is optional; `expect` fields replace the preset's
/// one by one, the others stay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideConfig {
    /// Interval for this check.
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// Timeout for this check.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Expectations to replace.
    #[serde(default)]
    pub expect: Option<ExpectConfig>,
}

/// A check written by hand.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckConfig {
    /// Unique name, shown in output and used as the `check` label.
    pub name: String,
    /// Optional grouping label (`service`), e.g. `web`.
    #[serde(default)]
    pub service: Option<String>,
    /// How often it runs in the daemon (overrides `defaults.interval`).
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// Hard deadline for one run (overrides `defaults.timeout`).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// An HTTP(S) request and what its response must look like.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// A Prometheus metrics endpoint to scrape; its samples feed the rules.
    #[serde(default)]
    pub scrape: Option<ScrapeConfig>,
    /// Whether the check pages when it fails: `CheckFailing` (critical) once it has failed
    /// for `down_after`. Default `true`; a rule under `rules:` that reads the check's
    /// `probe_success` (or `up`) replaces it. `false` records the check without paging.
    #[serde(default)]
    pub alert: Option<bool>,
    /// How long the check must keep failing before `CheckFailing` fires. Default `1m`.
    #[serde(default)]
    pub down_after: Option<HumanDuration>,
    /// A Matrix round trip: a tagged `m.notice` sent into a room must be seen through `/sync`.
    #[serde(default)]
    pub matrix_canary: Option<MatrixCanaryConfig>,
}

/// A Matrix canary: one account sends, another (or the same) must see the message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatrixCanaryConfig {
    /// The sender's homeserver, e.g. `https://matrix.example.org`.
    pub homeserver: Spanned<String>,
    /// The canary room: id or alias; both accounts join it (an invite is accepted). Must
    /// not be encrypted.
    pub room: String,
    /// The sending account's access token.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// Read `access_token` from this file instead.
    #[serde(default)]
    pub access_token_file: Option<Spanned<PathBuf>>,
    /// The account that must see the message. Default: the sender itself. On another
    /// homeserver, the round measures federation too.
    #[serde(default)]
    pub reader: Option<CanaryReaderConfig>,
    /// A round slower than this is slow (`MatrixCanarySlow`, a warning). Default `10s`.
    #[serde(default)]
    pub slow_after: Option<HumanDuration>,
}

/// The canary's reading account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CanaryReaderConfig {
    /// Its homeserver. Default: the sender's.
    #[serde(default)]
    pub homeserver: Option<Spanned<String>>,
    /// Its access token.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// Read `access_token` from this file instead.
    #[serde(default)]
    pub access_token_file: Option<Spanned<PathBuf>>,
}

/// A Prometheus scrape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScrapeConfig {
    /// The metrics URL.
    pub url: Spanned<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<SecretString>,
    /// Read `bearer_token` from this file instead.
    #[serde(default)]
    pub bearer_token_file: Option<Spanned<PathBuf>>,
    /// Largest page read (overrides `defaults.scrape_body_limit`).
    #[serde(default)]
    pub body_limit: Option<ByteSize>,
    /// Most samples this scrape keeps (overrides `defaults.sample_limit`; `0` for none of its
    /// own, `defaults.series_limit` still applies).
    #[serde(default)]
    pub sample_limit: Option<usize>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// An HTTP probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpConfig {
    /// The URL to request (`http` or `https`).
    pub url: Spanned<String>,
    /// HTTP method. Default `GET`.
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer …`; never logged or shown.
    #[serde(default)]
    pub bearer_token: Option<SecretString>,
    /// Read `bearer_token` from this file instead.
    #[serde(default)]
    pub bearer_token_file: Option<Spanned<PathBuf>>,
    /// Request body (for POST/PUT).
    #[serde(default)]
    pub body: Option<String>,
    /// Largest response body read (overrides `defaults.body_limit`).
    #[serde(default)]
    pub body_limit: Option<ByteSize>,
    /// Follow redirects (overrides `defaults.follow_redirects`).
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// What the response must look like. Default: a 2xx status.
    #[serde(default)]
    pub expect: ExpectConfig,
}

/// Expectations on a response. Every one that is set must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectConfig {
    /// Accepted status codes: one (`200`), a list (`[200, 204]`), or classes (`2xx`). Default `2xx`.
    #[serde(default)]
    pub status: Option<OneOrMany<StatusMatcher>>,
    /// RFC 9535 JSONPath → the value it must select: `{ "$.status": "OK" }`.
    #[serde(default)]
    pub json: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    /// JSONPaths that must select at least one value: `["$.version"]`.
    #[serde(default)]
    pub json_exists: Option<Vec<Spanned<String>>>,
    /// Text the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The whole probe must finish within this (e.g. `2s`).
    #[serde(default)]
    pub max_latency: Option<HumanDuration>,
    /// For `https`: the server certificate must stay valid at least this long (e.g. `14d`).
    #[serde(default)]
    pub cert_valid_for: Option<HumanDuration>,
}

/// TLS settings of a probe.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// PEM file with extra CA certificates to trust (a private CA), added to the system roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// Accept any certificate. Expiry is still measured. Only for testing.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One value or a list of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IntoDeserializer, SeqAccess, Visitor};
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("one value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![T::deserialize(v.into_deserializer())?]))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![T::deserialize(v.into_deserializer())?]))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![T::deserialize(v.into_deserializer())?]))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `backup:`: what is backed up, where, when, for how long, and to whom it is encrypted.
/// Every stored file is zstd-compressed and then encrypted with age to `encrypt_to`; mxwarden
/// holds only public keys and can never read its own backups.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupConfig {
    /// The directory the backups go to, one sub-directory per run (created when missing).
    /// Either `dir` or `to`, not both.
    #[serde(default)]
    pub dir: Option<Spanned<PathBuf>>,
    /// When the daemon takes a backup: a cron expression (`0 2 * * *` is 02:00 every day),
    /// in `alerting.timezone` (UTC when unset). Without it the daemon takes none;
    /// `mxwarden backup run` always works.
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// Which databases to dump: `all` (every database of every postgres service), a list
    /// (`[matrix, mas]`, when there is one postgres service), or per service
    /// (`{ postgres: all, replica: [matrix] }`). Default: each postgres service's own
    /// `databases`, or all of its databases when it lists none.
    #[serde(default)]
    pub databases: Option<Spanned<DatabaseSelection>>,
    /// Also dump each postgres service's roles and tablespaces (`pg_dumpall --globals-only`;
    /// without superuser rights, role passwords are left out). Default `true`.
    #[serde(default)]
    pub globals: Option<bool>,
    /// File sets, by name: paths or patterns (`*` and `?` in the last part of a path) archived
    /// as one tar per set, e.g. `{ mas-keys: ["/data/mas/*.pem"], synapse-signing-key:
    /// ["/data/matrix.signing.key"] }`. A directory is archived with everything in it. A
    /// pattern that matches nothing fails the set: a key file that vanished is a problem.
    #[serde(default)]
    pub files: BTreeMap<String, Vec<Spanned<String>>>,
    /// How many runs are kept: the newest run of each of the last `daily` days, `weekly`
    /// ISO weeks and `monthly` months that have a run (grandfather-father-son). Default
    /// `{ daily: 7, weekly: 4, monthly: 6 }`. `mxwarden backup prune` applies it.
    #[serde(default)]
    pub retention: Option<RetentionConfig>,
    /// zstd compression level, 1 (fast) to 19 (small). Default `3`.
    #[serde(default)]
    pub zstd_level: Option<Spanned<i32>>,
    /// age recipients: public keys (`age1…`, from `age-keygen` or `mxwarden backup keygen`).
    /// Never a private key: the identity stays offline and is only needed to verify content
    /// and to restore.
    #[serde(default)]
    pub encrypt_to: Vec<Spanned<String>>,
    /// A recipients file (one `age1…` key per line, `#` comments), as `age -R` reads it; used
    /// together with `encrypt_to`.
    #[serde(default)]
    pub encrypt_to_file: Option<Spanned<PathBuf>>,
    /// Directory holding `pg_dump`, `pg_dumpall` and `pg_restore`, e.g.
    /// `/usr/lib/postgresql/16/bin`: their major version must be at least the server's.
    /// Default: found on `PATH`.
    #[serde(default)]
    pub pg_bin_dir: Option<Spanned<PathBuf>>,
    /// An S3-compatible bucket instead of `dir`: `s3://BUCKET/PREFIX` (AWS S3, Backblaze B2,
    /// Cloudflare R2, MinIO, Wasabi). Runs stream straight to the bucket in multipart
    /// uploads; the manifest is written last. See `docs/backups.md` for each service's keys.
    #[serde(default)]
    pub to: Option<Spanned<String>>,
    /// The S3 API's base URL for a service other than AWS, e.g.
    /// `https://s3.eu-central-003.backblazeb2.com` (B2) or
    /// `https://ACCOUNT_ID.r2.cloudflarestorage.com` (R2). Default: AWS S3 of `region`.
    #[serde(default)]
    pub endpoint: Option<Spanned<String>>,
    /// The bucket's region: `us-east-1` when unset; `auto` for R2; B2's is in its endpoint
    /// (`eu-central-003`).
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    /// The access key id (B2: the application key's `keyID`). Needed with `to`.
    #[serde(default)]
    pub access_key_id: Option<Spanned<String>>,
    /// The secret access key (B2: the `applicationKey`). A secret: never shown or logged.
    #[serde(default)]
    pub secret_access_key: Option<SecretString>,
    /// Read `secret_access_key` from this file instead.
    #[serde(default)]
    pub secret_access_key_file: Option<Spanned<PathBuf>>,
    /// Address the bucket in the path (`https://endpoint/bucket/key`) instead of the host name
    /// (`https://bucket.endpoint/key`): MinIO and most self-hosted servers need `true`.
    /// Default `false`.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// The restore drill: a cron expression (`0 4 1 * *` is 04:00 on the 1st of each month)
    /// at which the daemon restores the newest good backup of each database into a scratch
    /// database, compares every table's row count with the count recorded at dump time, and
    /// drops the scratch database. `mxwarden backup drill` runs one now.
    #[serde(default)]
    pub drill: Option<Spanned<String>>,
    /// The age identity file (private key) the daemon's drill decrypts with; needed with
    /// `drill` unless the environment variable `MXWARDEN_BACKUP_IDENTITY` names one. A host holding it can read its backups: keep it readable by mxwarden only,
    /// or leave `drill` unset and run `mxwarden backup drill --identity FILE` elsewhere.
    #[serde(default)]
    pub drill_identity_file: Option<Spanned<PathBuf>>,
}

/// Which databases to dump (see `backup.databases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DatabaseSelection {
    /// `all`.
    All,
    /// `[matrix, mas]`: for the only postgres service.
    List(Vec<String>),
    /// `{ postgres: all, replica: [matrix] }`.
    PerService(BTreeMap<String, ServiceDatabases>),
}

/// One service's databases: `all` or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceDatabases {
    /// Every database that accepts connections (templates left out).
    All,
    /// These.
    List(Vec<String>),
}

fn all_word<E: serde::de::Error>(v: &str) -> Result<(), E> {
    if v == "all" { Ok(()) } else { Err(E::custom(format!("`{v}`: expected `all` or a list of database names"))) }
}

impl<'de> Deserialize<'de> for ServiceDatabases {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ServiceDatabases;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all` or a list of database names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                all_word(v).map(|()| ServiceDatabases::All)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(ServiceDatabases::List(names))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for DatabaseSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DatabaseSelection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all`, a list of database names, or a map from postgres service to `all` or a list")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                all_word(v).map(|()| DatabaseSelection::All)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(DatabaseSelection::List(names))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut services = BTreeMap::new();
                while let Some((service, dbs)) = map.next_entry::<String, ServiceDatabases>()? {
                    services.insert(service, dbs);
                }
                Ok(DatabaseSelection::PerService(services))
            }
        }
        d.deserialize_any(V)
    }
}

/// Grandfather-father-son retention: how many daily, weekly and monthly runs are kept.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionConfig {
    /// The newest run of each of the last this many days that have a run. Default `7`.
    #[serde(default)]
    pub daily: Option<u32>,
    /// The newest run of each of the last this many ISO weeks that have a run. Default `4`.
    #[serde(default)]
    pub weekly: Option<u32>,
    /// The newest run of each of the last this many months that have a run. Default `6`.
    #[serde(default)]
    pub monthly: Option<u32>,
}

/// One `remote_write:` entry: where to send, how to authenticate, how much to hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteWriteConfig {
    /// The receiver's write endpoint, e.g. `http://prometheus:9090/api/v1/write` (Prometheus
    /// started with `--web.enable-remote-write-receiver`), `…/api/v1/push` (Mimir),
    /// `…/api/v1/write` (VictoriaMetrics). http or https; credentials go in `basic_auth`,
    /// `bearer_token` or `headers`, never in the URL. Shown (logs, `/metrics`) as scheme,
    /// host and port only.
    pub url: Spanned<String>,
    /// Extra request headers, e.g. `X-Scope-OrgID: team-a` for Mimir's tenants. Their values
    /// are secrets unless the header is harmless. The protocol's own headers
    /// (`Content-Encoding`, `Content-Type`, `User-Agent`, `X-Prometheus-Remote-Write-Version`)
    /// cannot be replaced.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<Spanned<BasicAuthConfig>>,
    /// `Authorization: Bearer …`, usually `"${REMOTE_WRITE_TOKEN}"`. Not with `basic_auth`.
    #[serde(default)]
    pub bearer_token: Option<SecretString>,
    /// Read `bearer_token` from this file instead (trailing newline removed).
    #[serde(default)]
    pub bearer_token_file: Option<Spanned<PathBuf>>,
    /// Deadline of one request, answer included. Default `30s`, from `1s` to `5m`.
    #[serde(default)]
    pub remote_timeout: Option<Spanned<HumanDuration>>,
    /// The in-memory queue: its bound, senders, batches and backoff.
    #[serde(default)]
    pub queue: Option<Spanned<RemoteWriteQueueConfig>>,
}

/// `basic_auth:` of a `remote_write:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BasicAuthConfig {
    /// The user name.
    pub username: String,
    /// The password, usually `"${REMOTE_WRITE_PASSWORD}"`.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Read `password` from this file instead (trailing newline removed).
    #[serde(default)]
    pub password_file: Option<Spanned<PathBuf>>,
}

/// `queue:` of a `remote_write:` entry (Prometheus's `queue_config`, fewer knobs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteWriteQueueConfig {
    /// Most samples held in memory for this receiver, queued and in flight together. When
    /// it is reached the oldest queued samples are dropped (and counted in
    /// `mxwarden_remote_write_samples_dropped_total`). Default `50000`, from `100` to
    /// `10000000`. A held sample costs about 34 bytes, plus one copy of its series' labels
    /// (about 450 bytes with two labels) while any sample of the series is held: the default
    /// holds 2 MB for a few hundred series, 24 MB at worst (every sample its own series).
    #[serde(default)]
    pub max_samples: Option<Spanned<usize>>,
    /// Concurrent senders; each series always goes through the same one, so its samples
    /// arrive in order. Default `4`, from `1` to `64`.
    #[serde(default)]
    pub max_shards: Option<Spanned<usize>>,
    /// Most samples in one request. Default `2000`, from `1` to `100000`.
    #[serde(default)]
    pub max_samples_per_send: Option<Spanned<usize>>,
    /// Longest a sample waits for its batch to fill. Default `5s`, from `10ms` to `1m`.
    #[serde(default)]
    pub batch_send_deadline: Option<Spanned<HumanDuration>>,
    /// First retry delay after a 5xx, 429 or network error; doubled per failure. Default
    /// `30ms`.
    #[serde(default)]
    pub min_backoff: Option<Spanned<HumanDuration>>,
    /// Longest retry delay. Default `5s`, up to `5m`. A 429's `Retry-After` is honoured
    /// instead, up to a minute.
    #[serde(default)]
    pub max_backoff: Option<Spanned<HumanDuration>>,
}
