//! The `mxwarden` binary: parse the command line, set up logging, run, and map the result to
//! an exit code (0 all good, 1 something is unhealthy, 2 the config or the call is wrong).

use std::process::ExitCode;

fn main() -> ExitCode {
    // One crypto provider for every TLS user in the process (probes pass theirs explicitly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match mxwarden::cli::main() {
        Ok(status) => ExitCode::from(status as u8),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(mxwarden::cli::Status::Error as u8)
        }
    }
}
