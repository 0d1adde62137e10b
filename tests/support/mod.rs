//! The test harness: real services (`services`), in-process fakes for what cannot run here
//! (`fakes`), and HTTPS servers with generated certificates (`tls_server`).
#![allow(dead_code)]

pub mod fakes;
pub mod services;
pub mod tls_server;

pub use services::free_port;
