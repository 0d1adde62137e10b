//! mxwarden: the self-hosted Matrix operator's runbook, made executable.
//!
//! The modules are listed bottom-up: each imports only modules listed above it, so the list
//! reads as the data path — a probe's observation becomes samples, rules judge them, the
//! alert state machine turns verdicts into transitions, routing and the gate decide who is
//! told and when, the store commits the decision with its outbox rows in one transaction, and
//! the dispatcher delivers. `tests/it/layout.rs` fails on an import that points down this list
//! (and names the cycle it would make). See `docs/ARCHITECTURE.md` for the whole picture.

// No unsafe code: the binary's process tuning (glibc malloc) lives in `main.rs`, and its need
// is measured in BENCHMARKS.md, "Daemon".
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Vocabulary: leaves that import nothing of ours.
pub mod model; // labels, samples, observations, check ids, service kinds, HTTP status matchers
pub mod units; // durations, sizes, "did you mean"
pub mod clock; // where time comes from (a manual clock in tests)
pub mod redact; // the marker a secret becomes in output, and the Redactor that puts it there
pub mod text; // control characters made visible in tables and messages
pub mod private_fs; // files 0600, directories 0700: the store, backups, restores
pub use mxwarden_expo as expo; // the Prometheus text / OpenMetrics parser (its own crate)

// The data path, in order.
pub mod render; // Render's API: typed model and rate-limited client (the platform's view)
pub mod probe; // check specs, and the probes that turn them into observations
pub mod series; // sample windows with Prometheus staleness
pub mod alert; // the pure alert state machine
pub mod rule; // the PromQL subset, rules, templates: samples -> verdicts -> transitions
pub mod preset; // per service kind: its checks and the runbook's rules
pub mod notify; // the notification model, receivers (Matrix, email, webhook), digests, retry
pub mod history; // uptime arithmetic: results, buckets, gaps (pure)
pub mod maintenance; // the maintenance calendar (pure): recurring and ad hoc windows
pub mod topology; // which service needs which; the group page naming a root cause
pub mod store; // every SQL statement: alerts, outbox, held pages, history, meta
pub mod route; // transitions -> deliveries now, or digest items
pub mod mute; // the gate: maintenance and dependency outages -> hold, release, remind
pub mod dispatch; // outbox -> notifiers: backoff, dead letters, fallback

// Around the path.
pub mod backup; // encrypted pg_dump and file-set backups, verify, restore, retention
pub mod update; // mxwarden update: preflight, announce, backup, deploy, verify, roll back — resumable
pub mod remote_write; // samples, scraped series and ALERTS to Prometheus-compatible storage: bounded queue, backoff
pub mod config; // mxwarden.yaml: schema -> validate -> build into the runtime types above
pub mod live; // what the running daemon knows now, shared with its server
pub(crate) mod diagnose; // the runbook's common issues as playbooks: findings with evidence and fixes
pub mod discover; // init --discover: what a homeserver's URL reveals -> a starter config
pub mod doctor; // every credential and permission the config relies on, proven, with fixes
pub(crate) mod watchdog; // is mxwarden still judging? the evaluator's pulse and the store's health
pub(crate) mod control; // the ops room as a control room: commands, their audit, the /sync follower

// Drivers.
pub mod server; // status page, JSON API (incl. maintenance), /metrics, /healthz
pub mod daemon; // mxwarden run: supervisor, scheduler, evaluator — wiring, no business logic
pub mod cli; // one file per command family, a shared output leaf
