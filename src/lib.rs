//! mxwarden: the self-hosted Matrix operator's runbook, made executable.
//!
//! Everything that looks at the world produces samples in the Prometheus data model
//! (`probe`), from checks that the config and the presets describe (`config`, `preset`,
//! `check`). The CLI (`cli`) drives the same core that the daemon will.
//! See `docs/ARCHITECTURE.md` for the whole picture.

// No unsafe code: the binary's process tuning (glibc malloc) lives in `main.rs`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod alert;
pub mod backup;
pub mod check;
pub mod cli;
mod cli_alerting;
mod cli_backup;
mod cli_maintenance;
mod cli_pg;
mod cli_rules;
mod cli_scrape;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub use mxwarden_expo as expo;
pub mod history;
pub mod live;
pub mod maintenance;
pub mod model;
pub mod mute;
pub mod notify;
pub mod preset;
pub mod probe;
pub mod route;
pub mod rule;
pub mod series;
pub mod server;
pub mod store;
pub mod topology;
