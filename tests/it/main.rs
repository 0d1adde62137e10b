//! The integration tests: one binary, a module per capability, real services from
//! `tests/support` started once per run.

#[path = "../support/mod.rs"]
mod support;

mod alerting;
mod backup;
mod backup_s3;
mod cli;
mod config_cli;
mod crash_gaps;
mod conformance;
mod control_room;
mod daemon;
mod dependencies;
mod diagnose;
mod expo_oracle;
mod failures;
mod ha;
mod harness_selftest;
mod hostile_api;
mod hostile_scrape;
mod hostile_small;
mod hostile_store;
mod layout;
mod maintenance;
mod matrix;
mod postgres;
mod presets;
mod remote_write;
mod render;
mod render_backups;
mod scale;
mod secrets;
mod ship;
mod store_dialects;
mod update;
