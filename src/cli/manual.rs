//! `mxwarden completions bash|zsh|fish|…` and `mxwarden man`: generated from the command line's
//! own definition (clap_complete, clap_mangen), so they never drift from the real flags.

use super::{Status, outln};
use anyhow::{Context, Result};
use std::path::Path;

/// Prints the completion script for `shell` to stdout.
pub(crate) fn completions(mut command: clap::Command, shell: clap_complete::Shell) -> Result<Status> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "mxwarden", &mut script);
    super::output::emit(&String::from_utf8_lossy(&script));
    Ok(Status::Healthy)
}

/// Prints `mxwarden.1` to stdout, or with `dir` writes a page per command there
/// (`mxwarden.1`, `mxwarden-doctor.1`, …).
pub(crate) fn man(command: clap::Command, dir: Option<&Path>) -> Result<Status> {
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page).context("cannot render the man page")?;
            super::output::emit(&String::from_utf8_lossy(&page));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
            outln!("wrote man pages to {}", dir.display());
        }
    }
    Ok(Status::Healthy)
}
