//! The `mxwarden` binary: tune the process, parse the command line, set up logging, run, and
//! map the result to an exit code (0 all good, 1 something is unhealthy, 2 the config or the
//! call is wrong).
//!
//! Process tuning lives here, at the start, before any thread exists — not in a loop of the
//! library, which has no `unsafe` at all. What is tuned, and why, is in [`allocator`].

#![deny(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    allocator::tune();
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

/// glibc's malloc, tuned for a small process that runs for months: glibc gives each thread
/// that allocates its own arena, and each time a large block is freed it raises its mmap
/// threshold, after which the next large, short-lived buffers (a 300 KB metrics page, a
/// rendered status page) come from the heap and leave it fragmented. One arena and a fixed
/// threshold instead: large buffers get their own mappings and go back to the system when
/// freed. Measured side by side on the full runbook config (BENCHMARKS.md, "Daemon"): 0.3 to
/// 0.45 MiB less anonymous memory in four runs; a `malloc_trim` once a minute gave at most
/// 0.1 MiB and is not done.
///
/// The setting is the cargo feature `mallopt`, on by default, so that
/// `scripts/bench-daemon.sh malloc` can build the binary without it and measure again. Elsewhere
/// than on glibc, nothing is tuned.
mod allocator {
    /// Applies the setting if the build has it; call it first, before other threads exist.
    pub fn tune() {
        #[cfg(all(feature = "mallopt", target_os = "linux", target_env = "gnu"))]
        {
            const LARGE: libc::c_int = 128 * 1024;
            // SAFETY: mallopt only sets allocator parameters; it runs before any other thread
            // exists, and a refused setting (return 0) leaves glibc's default in place.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 1);
                libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE);
                libc::mallopt(libc::M_TRIM_THRESHOLD, LARGE);
            }
        }
    }
}
