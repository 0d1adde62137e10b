//! What every command shares for its output: writing to a stdout that may have gone away, the
//! exit status, and one table style for people (`--json` is for programs).

/// Whether `--quiet` was given: the one process-wide output setting, like stdout itself.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--quiet`: nothing is written to stdout from now on (the exit status still tells).
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `--quiet` was given (progress on stderr stays hidden too).
pub(crate) fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes to stdout (unless `--quiet`); a reader that went away (`| head`) is not an error.
pub(crate) fn emit(text: &str) {
    use std::io::Write;
    if quiet() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `println!` that tolerates a closed stdout.
macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::output::emit(&format!("{}\n", format_args!($($t)*))) };
}
/// `print!` that tolerates a closed stdout.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::output::emit(&format!($($t)*)) };
}
pub(crate) use {out, outln};

/// How a command ended; the numbers are the exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Everything checked is fine.
    Healthy = 0,
    /// Something checked is not.
    Unhealthy = 1,
    /// The config or the command line is wrong, or mxwarden itself failed.
    Error = 2,
}

/// The one table style: no borders, columns fitted to the terminal.
pub(crate) fn table(header: impl Into<comfy_table::Row>) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_header(header);
    t
}
