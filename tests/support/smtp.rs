//! A real SMTP server for the tests: aiosmtpd (PyPI) writing every message it receives to a
//! directory, one file each, so a test can count and read what mxwarden sent.

use super::services::{Service, cache, free_port};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The sink.
pub struct SmtpSink {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where messages land (`*.eml`).
    pub dir: PathBuf,
    _dir: tempfile::TempDir,
    _service: Service,
}

const SINK: &str = r#"
import pathlib, signal, sys, time
from aiosmtpd.controller import Controller
out = pathlib.Path(sys.argv[2])
class Handler:
    async def handle_DATA(self, server, session, envelope):
        n = time.time_ns()
        (out / f"{n}.eml.tmp").write_bytes(envelope.original_content or envelope.content)
        (out / f"{n}.eml.tmp").rename(out / f"{n}.eml")
        return "250 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
c.stop()
"#;

impl SmtpSink {
    /// Starts the sink; ready when it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mail = dir.path().join("mail");
        std::fs::create_dir_all(&mail).unwrap();
        let script = dir.path().join("sink.py");
        std::fs::write(&script, SINK).unwrap();
        let port = free_port();
        let python = cache().join("venv-tools/bin/python");
        assert!(python.exists(), "{} is missing: run scripts/install-test-deps.sh", python.display());
        let mut cmd = Command::new(&python);
        cmd.arg(&script).arg(port.to_string()).arg(&mail);
        let service = Service::spawn("smtp-sink", dir.path().join("smtp.log"), "TERM", &cmd);
        service.wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        Self { port, dir: mail, _dir: dir, _service: service }
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
    }
}
