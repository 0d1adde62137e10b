//! Runs the real `mxwarden` binary the way a user does: a config file on disk, an environment,
//! arguments; returns exit code, stdout, stderr and the parsed `--json` output.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// What one run of the binary produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    /// The `check --json` row for `check`.
    pub fn row(&self, check: &str) -> serde_json::Value {
        self.json()
            .as_array()
            .expect("an array")
            .iter()
            .find(|r| r["check"] == check)
            .unwrap_or_else(|| panic!("no row for {check} in {}", self.stdout))
            .clone()
    }

    /// Both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!("exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A config file in its own temporary directory (removed on drop).
pub struct ConfigFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Writes `text` as `mxwarden.yaml` in a fresh directory.
pub fn config(text: &str) -> ConfigFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mxwarden.yaml");
    std::fs::write(&path, text).expect("write config");
    ConfigFile { _dir: dir, path }
}

/// Runs `mxwarden ARGS` with `env` added to a clean-ish environment.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(args)
        .env_remove("MXWARDEN_CONFIG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run mxwarden");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// `mxwarden --config FILE check --json [NAMES]`.
pub fn check_json(file: &ConfigFile, names: &[&str], env: &[(&str, &str)]) -> Run {
    let path = file.path.to_str().expect("utf-8 path");
    let mut args = vec!["--config", path, "check", "--json"];
    args.extend_from_slice(names);
    run(&args, env)
}
