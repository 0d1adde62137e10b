//! The test harness: real services (`services`: PostgreSQL, Synapse, an OIDC provider, each
//! under `scripts/lib/guard.py`; `smtp`: an SMTP sink), in-process fakes for what cannot run
//! here (`fakes`), and HTTPS servers with generated certificates (`tls_server`).
#![allow(dead_code)]

pub mod fakes;
pub mod prometheus;
pub mod s3;
pub mod services;
pub mod smtp;
pub mod tls_server;

#[allow(unused_imports)] // the API, whether or not this binary uses each name
pub use services::{
    OidcProvider, PgCluster, Service, SharedStack, Synapse, free_port, http_get, http_get_with, port_open, shared,
};
