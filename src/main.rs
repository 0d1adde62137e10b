//! The `mxwarden` binary: tune the process, parse the command line, set up logging, run, and
//! map the result to an exit code (0 all good, 1 something is unhealthy, 2 the config or the
//! call is wrong).
//!
//! Process tuning lives here, at the start, before any thread exists — not in a loop of the
//! library, which has no `unsafe` at all. What is tuned, and why, is in [`allocator`] and
//! [`open_files`].

#![deny(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    allocator::tune();
    open_files::raise();
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

/// The open-file limit. Every probe, connection and store file is a descriptor, and the usual
/// soft limit (1,024) is far below what the kernel allows the process (the hard limit, often
/// 524,288 under systemd); a monitor that runs out of descriptors cannot probe. So the soft
/// limit is raised to the hard one, as the Go runtime does for every Go program. The web server
/// reads the result (`/proc/self/limits`) to size its connection cap, keeping a reserve of 256
/// for probes, the store and notifications (`server::connection_cap`).
mod open_files {
    /// Raises the soft open-file limit to the hard one; call it before other threads exist. A
    /// refusal leaves the limits as they were.
    pub fn raise() {
        #[cfg(unix)]
        {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `lim`.
            #[allow(unsafe_code)]
            let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
            if read && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                // SAFETY: setrlimit only reads the valid `lim`; soft = hard needs no privilege,
                // and a refusal (non-zero) leaves the old limits in place.
                #[allow(unsafe_code)]
                let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_soft_limit_ends_at_the_hard_one() {
            super::raise();
            let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
            let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
            let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
            assert_eq!(fields[0], fields[1], "soft raised to hard: {line}");
        }
    }
}
