//! No secret of a config ever shows: a config with a literal secret in every secret field
//! (tokens, passwords, the DSN's password, HMAC key, webhook and heartbeat URLs, header values) and
//! `${VAR}` values, each line broken in turn (a misspelt key, a wrong type, two YAML syntax
//! errors), run through `config check`, `config show` and `check` with `-vv`; and a real
//! daemon whose config is broken and reloaded (API and SIGHUP): the refusal it logs, answers,
//! queues in the outbox and delivers to a webhook shows none of them.

use crate::alerting::wait_for;
use crate::cli::{Run, config, run};
use crate::support::{fakes, services};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One line of the test config holding a secret: (indentation, key, value, the secret).
struct SecretLine {
    indent: &'static str,
    key: &'static str,
    value: String,
    secret: &'static str,
    /// Under `headers:`: any key is valid there, so "misspelt" means an invalid header name.
    header: bool,
}

fn line(indent: &'static str, key: &'static str, secret: &'static str) -> SecretLine {
    SecretLine { indent, key, value: secret.to_string(), secret, header: false }
}

fn header(indent: &'static str, key: &'static str, secret: &'static str) -> SecretLine {
    SecretLine { header: true, ..line(indent, key, secret) }
}

/// Every secret field of the schema, block style, one line each, in config order; `{}`
/// stands for the line of each.
fn secret_lines() -> Vec<SecretLine> {
    vec![
        line("", "admin_token", "LEAKadmin-top-1f2e"),
        line("    ", "admin_token", "LEAKsynapse-admin-3d4c"),
        line("    ", "api_token", "LEAKauthentik-5b6a"),
        SecretLine {
            value: "postgresql://monitor:LEAKpgpass-7988@127.0.0.1:1/matrix".into(),
            ..line("    ", "dsn", "LEAKpgpass-7988")
        },
        line("      ", "bearer_token", "LEAKhttp-bearer-a1b2"),
        header("        ", "X-Auth", "LEAKhttp-xauth-c3d4"),
        line("      ", "bearer_token", "LEAKscrape-bearer-e5f6"),
        header("        ", "X-Api-Key", "LEAKscrape-key-0a1b"),
        line("      ", "access_token", "LEAKcanary-sender-9a8b"),
        line("        ", "access_token", "LEAKcanary-reader-7c6d"),
        line("        ", "access_token", "LEAKmatrix-token-2c3d"),
        line("        ", "password", "LEAKsmtp-pass-4e5f"),
        SecretLine {
            value: "https://hooks.example.org/services/LEAKhook-path-6a7b".into(),
            ..line("        ", "url", "LEAKhook-path-6a7b")
        },
        line("        ", "hmac_secret", "LEAKhmac-8c9d"),
        header("          ", "X-Hook-Auth", "LEAKhook-header-0e1f"),
        line("  ", "access_token", "LEAKcontrol-token-5e4f"),
        SecretLine {
            value: "https://hc-ping.com/LEAKheartbeat-uuid-3a2b".into(),
            ..line("  ", "url", "LEAKheartbeat-uuid-3a2b")
        },
    ]
}

/// The config with line `i` of [`secret_lines`] replaced by `broken` (when given).
fn config_text(lines: &[SecretLine], broken: Option<(usize, &str)>) -> String {
    let l = |i: usize| match broken {
        Some((b, text)) if b == i => text.to_string(),
        _ => format!("{}{}: {}", lines[i].indent, lines[i].key, lines[i].value),
    };
    format!(
        "listen: \"off\"
{}
services:
  synapse:
    kind: synapse
    url: http://127.0.0.1:1
{}
  auth:
    kind: authentik
    url: http://127.0.0.1:1
{}
  db:
    kind: postgres
{}
checks:
  - name: web
    http:
      url: http://127.0.0.1:1/
{}
      headers:
{}
        Accept: text/plain
  - name: metrics
    scrape:
      url: http://127.0.0.1:1/metrics
{}
      headers:
{}
  - name: canary
    matrix_canary:
      homeserver: http://127.0.0.1:1
      room: \"#canary:example.org\"
{}
      reader:
{}
alerting:
  receivers:
    room:
      matrix:
        homeserver: http://127.0.0.1:1
        room: \"!ops:example.org\"
{}
    mail:
      email:
        smtp: smtp://127.0.0.1:1
        from: mxwarden@example.org
        to: [oncall@example.org]
        username: mxwarden
{}
    hook:
      webhook:
{}
{}
        headers:
{}
control:
  room: \"#ops:example.org\"
  allowed_users: [\"@admin:example.org\"]
{}
heartbeat:
{}
",
        l(0),
        l(1),
        l(2),
        l(3),
        l(4),
        l(5),
        l(6),
        l(7),
        l(8),
        l(9),
        l(10),
        l(11),
        l(12),
        l(13),
        l(14),
        l(15),
        l(16)
    )
}

/// The ways a secret's line is broken: a misspelt key (an invalid name for a header), a
/// wrong type, an unterminated quote, a value that is not allowed to be a mapping key.
fn breaks(l: &SecretLine) -> Vec<(&'static str, String)> {
    let misspelt = if l.header {
        format!("{}{} x: {}", l.indent, l.key, l.value)
    } else {
        format!("{}{}x: {}", l.indent, l.key, l.value)
    };
    vec![
        ("misspelt key", misspelt),
        ("wrong type", format!("{}{}: [{}]", l.indent, l.key, l.value)),
        ("unterminated quote", format!("{}{}: \"{}", l.indent, l.key, l.value)),
        ("mapping in a scalar", format!("{}{}: {}: x", l.indent, l.key, l.value)),
    ]
}

fn assert_hidden(out: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(!out.contains(secret), "{what}: the secret {secret} leaked:\n{out}");
    }
}

fn vv(file: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut full = vec!["-vv", "--config", file.to_str().unwrap()];
    full.extend_from_slice(args);
    run(&full, env)
}

#[test]
fn no_secret_shows_when_its_line_is_broken_in_any_way() {
    let lines = secret_lines();
    let secrets: Vec<&str> = lines.iter().map(|l| l.secret).collect();
    let valid = config(&config_text(&lines, None));
    let check = vv(&valid.path, &["config", "check"], &[]);
    assert_eq!(check.code, 0, "the unbroken config is valid: {}", check.all());
    // The doctor tries every secret against servers that refuse: none shows in what it says.
    let doctor = vv(&valid.path, &["doctor", "--json"], &[]);
    assert_eq!(doctor.code, 1, "nothing answers on port 1: {}", doctor.all());
    assert_hidden(&doctor.all(), &secrets, "doctor on the valid config");
    let mut broken_runs = 0;
    for (i, l) in lines.iter().enumerate() {
        for (how, text) in breaks(l) {
            let file = config(&config_text(&lines, Some((i, &text))));
            for args in [&["config", "check"][..], &["config", "show", "--json"], &["check"], &["doctor"]] {
                let r = vv(&file.path, args, &[]);
                let what = format!("{} ({how}) under {args:?}", l.key);
                assert_eq!(r.code, 2, "{what}: the broken config is refused: {}", r.all());
                assert!(r.stderr.contains("mxwarden.yaml:"), "{what}: the error names the file: {}", r.all());
                assert_hidden(&r.all(), &secrets, &what);
                broken_runs += 1;
            }
        }
    }
    assert_eq!(broken_runs, 17 * 4 * 4);
}

#[test]
fn a_broken_flow_line_hides_every_secret_on_it() {
    let secrets = ["LEAKflow-hook-1a", "LEAKflow-hmac-2b", "LEAKflow-hdr-3c", "LEAKflow-mx-4d", "ab1"];
    let cases = [
        (
            "alerting:\n  receivers:\n    hook: { webhook: { url: \"https://h.example.org/LEAKflow-hook-1a\", hmac_secret: LEAKflow-hmac-2b, headers: { X-Auth: LEAKflow-hdr-3c }, bogus: 1 } }\n",
            "alerting.receivers.hook.webhook.bogus: unknown key `bogus`",
            "an unknown key beside the secrets",
        ),
        (
            "alerting:\n  receivers:\n    room: { matrix: { homeserver: 5, room: \"!r:x\", access_token: LEAKflow-mx-4d } }\n",
            "alerting.receivers.room.matrix.homeserver",
            "a type error before the secret",
        ),
        (
            "alerting:\n  receivers:\n    room: { matrix: { homeserver: \"http://x\", room: \"!r:x\", access_token: ab1, msgtype: 7 } }\n",
            "",
            "a secret shorter than four characters, masked where it stands",
        ),
        (
            "alerting:\n  receivers:\n    hook: { webhok: { url: \"https://h.example.org/LEAKflow-hook-1a\", hmac_secret: LEAKflow-hmac-2b } }\n",
            "did you mean `webhook`?",
            "a misspelt parent",
        ),
        (
            "alerting:\n  receivers:\n    hook: { webhook: { url: \"https://h.example.org/LEAKflow-hook-1a, hmac_secret: LEAKflow-hmac-2b } }\n",
            "mxwarden.yaml:3:",
            "an unterminated quote",
        ),
    ];
    for (text, want, why) in cases {
        let file = config(text);
        let r = vv(&file.path, &["config", "check"], &[]);
        assert_eq!(r.code, 2, "{why}: {}", r.all());
        assert!(r.stderr.contains(want), "{why}: {want:?} not in {}", r.all());
        assert!(r.stderr.contains("<redacted>"), "{why}: the snippet shows where the secret was: {}", r.all());
        assert_hidden(&r.all(), &secrets, why);
    }
}

#[test]
fn interpolated_values_never_show_in_errors_show_or_logs() {
    let env = [
        ("MXW_LEAK_URL", "not a url LEAKenv-url-5e"),
        ("MXW_LEAK_INTERVAL", "LEAKenv-interval-6f"),
        ("MXW_LEAK_NAME", "LEAKenv-name-7a"),
        ("MXW_LEAK_TOKEN", "LEAKenv-token-8b"),
    ];
    let secrets: Vec<&str> = env.iter().map(|(_, v)| *v).collect();
    let bad_url = config(
        "checks:\n  - name: a\n    http: { url: \"${MXW_LEAK_URL}\", bearer_token: \"${MXW_LEAK_TOKEN}\", bogus: 1 }\n",
    );
    let bad_interval = config("defaults:\n  interval: \"${MXW_LEAK_INTERVAL}\"\n");
    for (file, want) in [(&bad_url, "checks[0].http.bogus: unknown key `bogus`"), (&bad_interval, "mxwarden.yaml:2:")] {
        let r = vv(&file.path, &["config", "check"], &env);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains(want), "{want:?} not in {}", r.all());
        assert_hidden(&r.all(), &secrets, "config check");
    }
    let url_echoed = config("checks:\n  - name: a\n    http: { url: \"${MXW_LEAK_URL}\" }\n");
    let r = vv(&url_echoed.path, &["config", "check"], &env);
    assert!(r.stderr.contains("`<redacted>` is not a URL"), "the value is echoed, redacted: {}", r.all());
    assert_hidden(&r.all(), &secrets, "a value the error quotes");

    // A valid config: a check named from the environment fails; its debug log line and
    // `config show` say <redacted> instead.
    let valid = config(
        "checks:\n  - name: \"${MXW_LEAK_NAME}\"\n    http: { url: \"http://127.0.0.1:1/\", bearer_token: \"${MXW_LEAK_TOKEN}\" }\n",
    );
    let r = vv(&valid.path, &["check"], &env);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("Check failed.") && r.stderr.contains("<redacted>"), "-vv logs: {}", r.all());
    assert_hidden(&r.stderr, &secrets, "-vv check logs");
    let shown = vv(&valid.path, &["config", "show"], &env);
    assert_eq!(shown.code, 0, "{}", shown.all());
    assert_hidden(&shown.all(), &secrets, "config show");
}

#[test]
fn config_show_hides_every_secret_and_shows_what_is_harmless() {
    let lines = secret_lines();
    let secrets: Vec<&str> = lines.iter().map(|l| l.secret).collect();
    let file = config(&config_text(&lines, None));
    for args in [&["config", "show"][..], &["config", "show", "--json"]] {
        let r = vv(&file.path, args, &[]);
        assert_eq!(r.code, 0, "{}", r.all());
        assert_hidden(&r.all(), &secrets, "config show");
        assert!(r.stdout.contains("x-auth: <redacted>"), "a header whose name gives nothing away: {}", r.stdout);
        assert!(r.stdout.contains("accept: text/plain"), "harmless headers stay readable: {}", r.stdout);
        assert!(
            r.stdout.contains("webhook https://hooks.example.org/<redacted> (URL redacted), signed"),
            "the webhook's host only: {}",
            r.stdout
        );
        assert!(r.stdout.contains("postgresql://monitor:<redacted>@127.0.0.1:1/matrix"), "{}", r.stdout);
    }
}

/// `mxwarden -vv run` with `env`, stderr into `log` (killed on drop).
struct LoudDaemon(Child);

impl LoudDaemon {
    fn start(config: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mxwarden"))
            .args(["--config", config.to_str().unwrap(), "-vv", "run"])
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start mxwarden run");
        Self(child)
    }
}

impl Drop for LoudDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_refused_reload_shows_no_secret_in_its_answer_log_outbox_or_notification() {
    let vikunja = fakes::vikunja();
    let sink = fakes::webhook_sink();
    let port = services::free_port();
    let dead = services::free_port();
    let admin = "LEAKdaemon-admin-11";
    let env = [("MXW_LEAK_HEADER", "LEAKdaemon-env-header-22")];
    // Each version of the file carries its own secrets, so only the new file's own collection
    // can hide them when it is refused.
    let text = |v: &str| {
        format!(
            "listen: 127.0.0.1:{port}
admin_token: {admin}
store: ./state.db
defaults: {{ interval: 1s, timeout: 2s }}
services:
  vikunja: {{ kind: vikunja, url: \"{vikunja}\" }}
checks:
  - name: guarded
    http: {{ url: \"http://127.0.0.1:{dead}/\", bearer_token: LEAK{v}-bearer, headers: {{ X-Auth: LEAK{v}-xauth, X-Env: \"${{MXW_LEAK_HEADER}}\" }} }}
alerting:
  retry: {{ initial: 300ms, max: 1s }}
  receivers:
    hook: {{ webhook: {{ url: \"{}?token=LEAK{v}-hookquery\", hmac_secret: LEAK{v}-hmac, headers: {{ X-Hook: LEAK{v}-hookhdr }} }} }}
    gone: {{ webhook: {{ url: \"http://127.0.0.1:{dead}/hook/LEAK{v}-deadpath\" }} }}
    room: {{ matrix: {{ homeserver: \"http://127.0.0.1:{dead}\", room: \"!r:x\", access_token: LEAK{v}-matrix }} }}
    mail: {{ email: {{ smtp: \"smtp://127.0.0.1:{dead}\", from: a@example.org, to: [b@example.org], password: LEAK{v}-smtp }} }}
  tiers:
    critical: {{ receivers: [hook, gone] }}
",
            sink.url
        )
    };
    let secrets = |v: &str| -> Vec<String> {
        ["bearer", "xauth", "hookquery", "hmac", "hookhdr", "deadpath", "matrix", "smtp"]
            .iter()
            .map(|s| format!("LEAK{v}-{s}"))
            .chain([admin.to_string(), env[0].1.to_string()])
            .collect()
    };
    let file = config(&text("v1"));
    let log = file.path.with_extension("log");
    let daemon = LoudDaemon::start(&file.path, &log, &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the daemon to serve", Duration::from_secs(20), &log, || {
        services::http_get(&format!("{base}/api/v1/status")).filter(|(code, _)| *code == 200)
    });

    let refusals = |sink: &fakes::WebhookSink| -> Vec<String> {
        sink.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
            .filter(|b| b.contains("MxwardenConfigRefused") && b.contains("\"firing\""))
            .collect()
    };
    // Each break puts a new version's secrets on the broken line and around it.
    let breaks: [(&str, fn(String) -> String, bool); 4] = [
        ("v2", |t| t.replace("X-Hook: LEAKv2-hookhdr }", "X-Hook: LEAKv2-hookhdr }, bogus: 1"), true),
        ("v3", |t| t.replace("access_token: LEAKv3-matrix", "access_token: [LEAKv3-matrix]"), false),
        ("v4", |t| t.replace("password: LEAKv4-smtp", "pasword: LEAKv4-smtp"), true),
        ("v5", |t| t.replace("bearer_token: LEAKv5-bearer,", "bearer_token: \"LEAKv5-bearer,"), false),
    ];
    let mut all_secrets = secrets("v1");
    for (n, (version, breaking, by_api)) in breaks.iter().enumerate() {
        all_secrets.extend(secrets(version));
        std::fs::write(&file.path, breaking(text(version))).unwrap();
        if *by_api {
            let auth = format!("Bearer {admin}");
            let (code, body) =
                services::http_request("POST", &format!("{base}/api/v1/reload"), &[("Authorization", &auth)])
                    .expect("the daemon answers");
            assert_eq!(code, 422, "{version}: refused: {body}");
            assert!(body.contains("<redacted>"), "{version}: the answer shows the line, masked: {body}");
            assert_hidden(&body, &all_secrets.iter().map(String::as_str).collect::<Vec<_>>(), "the API's answer");
        } else {
            let pid = daemon.0.id().to_string();
            assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
        }
        wait_for("the refused-config notification", Duration::from_secs(20), &log, || {
            (refusals(&sink).len() > n).then_some(())
        });
    }
    // The failed deliveries to the dead webhook have been tried and logged.
    wait_for("a failed delivery to be logged", Duration::from_secs(20), &log, || {
        std::fs::read_to_string(&log).unwrap().contains("Notification not delivered.").then_some(())
    });
    let hidden: Vec<&str> = all_secrets.iter().map(String::as_str).collect();

    let delivered = refusals(&sink);
    assert_eq!(delivered.len(), 4, "one page per refusal");
    for body in &delivered {
        assert!(body.contains("refused the new config") && body.contains("<redacted>"), "{body}");
    }
    let everything: Vec<String> =
        sink.received.lock().unwrap().iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect();
    assert_hidden(&everything.join("\n"), &hidden, "what the receiver got");

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("New config refused"), "{logged}");
    assert!(logged.contains("Check failed."), "-vv is on: {logged}");
    assert!(logged.contains("webhook http://127.0.0.1:"), "the dead webhook is named by host: {logged}");
    assert_hidden(&logged, &hidden, "the daemon's log");

    std::fs::write(&file.path, text("v1")).unwrap();
    let outbox = run(&["--config", file.path.to_str().unwrap(), "outbox", "--json"], &env);
    assert_eq!(outbox.code, 0, "{}", outbox.all());
    assert!(outbox.stdout.contains("MxwardenConfigRefused"), "{}", outbox.stdout);
    assert_hidden(&outbox.all(), &hidden, "mxwarden outbox");
    drop(daemon);
    // The store's bytes, WAL included: no secret was ever written.
    let dir = file.path.parent().unwrap();
    let raw: String = ["state.db", "state.db-wal"]
        .iter()
        .filter_map(|name| std::fs::read(dir.join(name)).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .collect();
    assert!(raw.contains("MxwardenConfigRefused"), "the store holds the outbox rows");
    assert_hidden(&raw, &hidden, "the store's files");
}
