//! The `mxwarden` binary: parse the command line, set up logging, run, and map the result to
//! an exit code (0 all good, 1 something is unhealthy, 2 the config or the call is wrong).

use std::process::ExitCode;

fn main() -> ExitCode {
    // One crypto provider for every TLS user in the process (probes pass theirs explicitly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Every probe and connection is a descriptor: use all the kernel allows us (the web
    // server keeps a reserve of them free for the probes).
    let _ = mxwarden::process::raise_fd_limit();
    match mxwarden::cli::main() {
        Ok(status) => ExitCode::from(status as u8),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(mxwarden::cli::Status::Error as u8)
        }
    }
}
