//! Runs a configured deploy or rollback command: in a process group of its own (so a timeout
//! kills its children too), stdin closed, stdout and stderr read together and kept up to a
//! bound (the last [`KEEP`] bytes: a deploy's tail says why it failed), the update's facts in
//! the environment (`MXWARDEN_UPDATE_SERVICE`, `_TO`, `_FROM`, `_ID`) and `{to}` / `{from}`
//! replaced in its arguments. The output is masked with the config's secrets before it is
//! kept or shown.

use super::CommandSpec;
use std::process::Stdio;
use tokio::io::AsyncReadExt;

/// How much of a command's output is kept (its end).
pub(crate) const KEEP: usize = 16 * 1024;

/// The facts a command is told.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// The service.
    pub service: String,
    /// The version (image, commit) asked for.
    pub to: String,
    /// The version before, if known.
    pub from: String,
    /// The update's id.
    pub id: i64,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finished {
    /// Exit code (`None`: killed by a signal, or by the timeout).
    pub code: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// The end of its output (stdout and stderr in the order read), masked.
    pub output: String,
    /// Bytes of output left out before `output`.
    pub dropped: u64,
}

impl Finished {
    /// Whether it exited 0 in time.
    pub(crate) fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// One line for the step's outcome, then the output's end.
    pub(crate) fn describe(&self, argv0: &str, timeout: std::time::Duration) -> String {
        let how = match (self.timed_out, self.code) {
            (true, _) => format!("`{argv0}` was killed after the timeout of {}", crate::units::HumanDuration(timeout)),
            (false, Some(0)) => format!("`{argv0}` exited 0"),
            (false, Some(c)) => format!("`{argv0}` exited {c}"),
            (false, None) => format!("`{argv0}` was killed by a signal"),
        };
        let cut = if self.dropped > 0 { format!(" ({} earlier bytes left out)", self.dropped) } else { String::new() };
        if self.output.trim().is_empty() {
            format!("{how}; no output")
        } else {
            format!("{how}; output{cut}:\n{}", self.output.trim_end())
        }
    }
}

/// Keeps the last [`KEEP`] bytes of what it is given.
struct Tail {
    buf: Vec<u8>,
    dropped: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > KEEP {
            let cut = self.buf.len() - KEEP;
            self.buf.drain(..cut);
            self.dropped += cut as u64;
        }
    }
}

/// Replaces `{to}` and `{from}` in one argument.
fn fill(arg: &str, facts: &Facts) -> String {
    arg.replace("{to}", &facts.to).replace("{from}", &facts.from)
}

/// Runs `spec`; `Err` only when it cannot be started at all.
pub(crate) async fn run(
    spec: &CommandSpec,
    facts: &Facts,
    redactor: &crate::redact::Redactor,
) -> Result<Finished, String> {
    let Some((program, args)) = spec.argv.split_first() else { return Err("the command is empty".into()) };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args.iter().map(|a| fill(a, facts)))
        .env("MXWARDEN_UPDATE_SERVICE", &facts.service)
        .env("MXWARDEN_UPDATE_TO", &facts.to)
        .env("MXWARDEN_UPDATE_FROM", &facts.from)
        .env("MXWARDEN_UPDATE_ID", facts.id.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let pid = child.id();
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let tail = std::sync::Mutex::new(Tail { buf: Vec::new(), dropped: 0 });
    let read = async {
        let (mut a, mut b) = ([0u8; 8192], [0u8; 8192]);
        loop {
            tokio::select! {
                n = async { match out.as_mut() { Some(o) => o.read(&mut a).await, None => std::future::pending().await } } => {
                    match n { Ok(0) | Err(_) => out = None, Ok(n) => lock(&tail).push(&a[..n]) }
                }
                n = async { match err.as_mut() { Some(e) => e.read(&mut b).await, None => std::future::pending().await } } => {
                    match n { Ok(0) | Err(_) => err = None, Ok(n) => lock(&tail).push(&b[..n]) }
                }
            }
            if out.is_none() && err.is_none() {
                break;
            }
        }
        child.wait().await
    };
    let (code, timed_out) = match tokio::time::timeout(spec.timeout, read).await {
        Ok(Ok(status)) => (status.code(), false),
        Ok(Err(e)) => return Err(format!("`{program}`: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid).await;
            }
            (None, true)
        }
    };
    let tail = tail.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let text = String::from_utf8_lossy(&tail.buf);
    let masked = redactor.redact(&text);
    let output = crate::text::escape_controls_in_prose(&masked).into_owned();
    Ok(Finished { code, timed_out, output, dropped: tail.dropped })
}

fn lock(tail: &std::sync::Mutex<Tail>) -> std::sync::MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// SIGKILL to the whole process group (the command and whatever it started).
async fn kill_group(pid: u32) {
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Whether the program of `argv` can be run: an existing executable file (a bare name is
/// looked up on `PATH`).
pub(crate) fn runnable(argv: &[String]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Some(program) = argv.first() else { return Err("the command is empty".into()) };
    let candidates: Vec<std::path::PathBuf> = if program.contains('/') {
        vec![program.into()]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    };
    for c in &candidates {
        if let Ok(meta) = std::fs::metadata(c)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(());
        }
    }
    Err(format!("`{program}` is not an executable file{}", if program.contains('/') { "" } else { " on PATH" }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(script: &str, timeout_ms: u64) -> CommandSpec {
        CommandSpec {
            argv: vec!["sh".into(), "-c".into(), script.into(), "sh".into(), "{to}".into()],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn facts() -> Facts {
        Facts { service: "synapse".into(), to: "img:v2".into(), from: "1.0".into(), id: 7 }
    }

    #[tokio::test]
    async fn facts_reach_the_command_and_its_output_is_kept() {
        let r = crate::redact::Redactor::new(["hunter2"]);
        let s = spec(
            r#"echo "to=$1 env=$MXWARDEN_UPDATE_TO from=$MXWARDEN_UPDATE_FROM id=$MXWARDEN_UPDATE_ID"; echo hunter2 >&2; exit 3"#,
            10_000,
        );
        let f = run(&s, &facts(), &r).await.unwrap();
        assert_eq!(f.code, Some(3));
        assert!(!f.ok());
        assert!(f.output.contains("to=img:v2 env=img:v2 from=1.0 id=7"), "{}", f.output);
        assert!(!f.output.contains("hunter2"), "a secret in the output is masked: {}", f.output);
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_with_its_children_at_the_timeout() {
        let started = std::time::Instant::now();
        let f = run(&spec("sleep 30 & sleep 30; echo never", 300), &facts(), &Default::default()).await.unwrap();
        assert!(f.timed_out && !f.ok());
        assert!(started.elapsed() < Duration::from_secs(10), "killed, not waited for");
        assert!(f.describe("sh", Duration::from_millis(300)).contains("killed after the timeout"));
    }

    #[tokio::test]
    async fn a_flood_of_output_is_bounded_to_its_end() {
        let f = run(
            &spec("head -c 5000000 /dev/zero | tr '\\0' x; echo; echo the-end", 20_000),
            &facts(),
            &Default::default(),
        )
        .await
        .unwrap();
        assert!(f.ok());
        assert!(f.output.len() <= KEEP + 64, "kept {} bytes", f.output.len());
        assert!(f.output.trim_end().ends_with("the-end"));
        assert!(f.dropped >= 4_900_000);
    }

    #[test]
    fn programs_are_checked_before_use() {
        assert!(runnable(&["sh".into()]).is_ok());
        assert!(runnable(&["/nonexistent/deploy".into()]).unwrap_err().contains("not an executable"));
        assert!(runnable(&[]).is_err());
    }
}
