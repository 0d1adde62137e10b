//! Process-wide tuning done once at start (`main`): the open-file limit. Every socket is a
//! file descriptor, and the usual soft limit (1,024) is far below what the kernel allows the
//! process (the hard limit, often 524,288 under systemd); a monitor that runs out of
//! descriptors cannot probe, so mxwarden raises the soft limit to the hard one, as the Go
//! runtime does for every Go program. The web server reads the result to size its connection
//! cap (`server`), keeping a reserve for probes, the store and notifications.
//!
//! The only unsafe code outside `memory`: two libc calls, each on a value it owns.

/// The open-file limits of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// What the process may open now.
    pub soft: u64,
    /// How far the soft limit may be raised without privileges.
    pub hard: u64,
}

/// The current open-file limits, `None` where they cannot be read.
#[cfg(unix)]
pub fn fd_limit() -> Option<FdLimit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `lim`.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    // rlim_t is u64 on 64-bit Linux, narrower on some other targets.
    #[allow(clippy::unnecessary_cast)]
    let (soft, hard) = (lim.rlim_cur as u64, lim.rlim_max as u64);
    ok.then_some(FdLimit { soft, hard })
}

/// Raises the soft open-file limit to the hard one; returns the limits in force afterwards
/// (unchanged when the raise is refused). Call it before threads start.
#[cfg(unix)]
pub fn raise_fd_limit() -> Option<FdLimit> {
    let before = fd_limit()?;
    if before.soft >= before.hard {
        return Some(before);
    }
    let lim = libc::rlimit { rlim_cur: before.hard as libc::rlim_t, rlim_max: before.hard as libc::rlim_t };
    // SAFETY: setrlimit only reads the valid `lim`; asking for soft = hard needs no privilege,
    // and a refusal (non-zero) leaves the old limits in place.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0;
    if ok { fd_limit() } else { Some(before) }
}

/// Elsewhere the limits are unknown.
#[cfg(not(unix))]
pub fn fd_limit() -> Option<FdLimit> {
    None
}

/// Elsewhere nothing is raised.
#[cfg(not(unix))]
pub fn raise_fd_limit() -> Option<FdLimit> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let before = fd_limit().expect("Linux reports its limits");
        assert!(before.soft <= before.hard);
        let after = raise_fd_limit().expect("limits after the raise");
        assert_eq!(after.soft, after.hard, "soft raised to hard");
        assert_eq!(after.hard, before.hard, "the hard limit is never touched");
    }
}
