//! The config contract from the user's side: mistakes exit 2 naming file, line and key with a
//! suggestion; secrets come from the environment or files and never show; `init` writes a
//! config that validates; `config show` expands presets.

use crate::cli::{check_json, config, run};

fn config_check(text: &str, env: &[(&str, &str)]) -> crate::cli::Run {
    let file = config(text);
    let r = run(&["config", "check", file.path.to_str().unwrap()], env);
    drop(file);
    r
}

#[test]
fn a_mistyped_key_names_line_key_and_the_right_key() {
    let r = config_check(
        "services:\n  synapse:\n    kind: synapse\n    url: http://127.0.0.1:8008\n    admin_tokn: x\n",
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("mxwarden.yaml:5:5: services.synapse.admin_tokn: unknown key `admin_tokn`"),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("hint: did you mean `admin_token`?"), "{}", r.all());
    assert!(
        r.stderr.contains("5 |     admin_tokn: <redacted>"),
        "the snippet shows the line, the value of a near miss of a secret key masked: {}",
        r.all()
    );
}

#[test]
fn a_mistyped_key_deep_in_a_check_is_found_too() {
    let r =
        config_check("checks:\n  - name: a\n    http:\n      url: http://x\n      expect:\n        staus: 200\n", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains(":6:9: checks[0].http.expect.staus: unknown key `staus`"), "{}", r.all());
    assert!(r.stderr.contains("did you mean `status`?"), "{}", r.all());
}

#[test]
fn an_unknown_kind_lists_the_kinds_and_suggests_one() {
    let r = config_check("services:\n  s:\n    kind: synpase\n    url: http://x\n", &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains(":3:11:"), "{}", r.all());
    assert!(
        r.stderr.contains("unknown value `synpase`; expected one of: synapse, mas, vikunja, authentik"),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("did you mean `synapse`?"), "{}", r.all());
}

#[test]
fn an_unset_variable_is_named_with_its_line() {
    let r = config_check(
        "services:\n  synapse:\n    kind: synapse\n    url: http://x\n    admin_token: \"${MXW_TEST_UNSET_TOKEN}\"\n",
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains(":5:19: environment variable MXW_TEST_UNSET_TOKEN is not set"), "{}", r.all());
}

#[test]
fn wrong_values_say_what_was_expected() {
    let cases = [
        ("defaults: { timeout: 10 }\n", ":1:22:", "`10` is not a duration; expected a number with a unit"),
        (
            "checks:\n  - name: a\n    http: { url: \"ftp://x\" }\n",
            ":3:18:",
            "uses scheme `ftp`; expected http or https",
        ),
        (
            "checks:\n  - name: a\n    http: { url: \"http://x\", expect: { status: 700 } }\n",
            ":3:",
            "`700` is not a status",
        ),
        (
            "checks:\n  - name: a\n    http: { url: \"http://x\", expect: { json_exists: [\"status\"] } }\n",
            ":3:",
            "is not a JSONPath",
        ),
        (
            "services:\n  s: { kind: vikunja, url: \"http://x\", health_url: \"http://y\" }\n",
            ":2:",
            "`health_url` does not apply to kind vikunja; it is for: mas",
        ),
        (
            "services:\n  s: { kind: synapse, url: \"http://x\", disable: [federaton] }\n",
            ":2:",
            "no preset check `federaton` for kind synapse",
        ),
        ("checks:\n  - name: a\n  - name: a\n    http: { url: \"http://x\" }\n", ":2:", "a check needs a probe"),
        ("checks:\n  - name: a\n    http: { url: \"http://u:p@x\" }\n", ":3:", "credentials in URLs"),
    ];
    for (text, at, message) in cases {
        let r = config_check(text, &[]);
        assert_eq!(r.code, 2, "{text}\n{}", r.all());
        assert!(r.stderr.contains(at) && r.stderr.contains(message), "{text}\nwanted {at} … {message}\n{}", r.all());
    }
}

#[test]
fn a_misspelt_disable_entry_gets_a_suggestion() {
    let r =
        config_check("services:\n  synapse: { kind: synapse, url: \"http://x\", disable: [synapse/federaton] }\n", &[]);
    assert!(r.stderr.contains("did you mean `synapse/federation`?"), "{}", r.all());
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let r = config_check(
        "services:\n  a: { kind: vikunja, url: \"nope\" }\n  b: { kind: mas, url: \"http://x\", api_token: t }\n",
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("services.a.url") && r.stderr.contains("services.b.api_token"), "{}", r.all());
    assert!(r.stderr.contains("2 problems found."), "{}", r.all());
}

#[test]
fn secrets_never_show_in_config_show_or_check_output() {
    let secret_dir = tempfile::tempdir().unwrap();
    let token_file = secret_dir.path().join("token");
    std::fs::write(&token_file, "file-secret-9f8e7d\n").unwrap();
    let text = format!(
        "services:\n  synapse: {{ kind: synapse, url: \"http://127.0.0.1:1\", admin_token: \"${{MXW_TEST_TOKEN}}\" }}\n  authentik: {{ kind: authentik, url: \"http://127.0.0.1:1\", api_token_file: {} }}\nchecks:\n  - name: hook\n    http: {{ url: \"http://127.0.0.1:1\", headers: {{ X-Api-Key: \"${{MXW_TEST_TOKEN}}\" }}, bearer_token: \"${{MXW_TEST_TOKEN}}\" }}\n",
        token_file.display()
    );
    let file = config(&text);
    let env = [("MXW_TEST_TOKEN", "env-secret-1a2b3c")];
    for args in [vec!["config", "show"], vec!["config", "show", "--json"]] {
        let mut full = vec!["--config", file.path.to_str().unwrap()];
        full.extend(args);
        let r = run(&full, &env);
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(!r.all().contains("env-secret") && !r.all().contains("file-secret"), "{}", r.all());
        assert!(r.stdout.contains("<redacted>"), "{}", r.all());
        assert!(r.stdout.contains("synapse/admin-token"), "the token enables the admin-token check: {}", r.all());
    }
    let r = check_json(&file, &[], &env);
    assert_eq!(r.code, 1);
    assert!(!r.all().contains("env-secret") && !r.all().contains("file-secret"), "{}", r.all());
}

#[test]
fn init_writes_a_config_that_validates_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mxwarden.yaml");
    let p = path.to_str().unwrap();
    let r = run(&["--config", p, "init"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = run(&["config", "check", p], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("valid"), "{}", r.all());
    let again = run(&["--config", p, "init"], &[]);
    assert_eq!(again.code, 2, "{}", again.all());
    assert!(again.stderr.contains("exists; pass --force"), "{}", again.all());
}

#[test]
fn the_config_path_comes_from_the_environment_when_not_given() {
    let file = config("checks:\n  - name: a\n    http: { url: \"http://127.0.0.1:1\" }\n");
    let r = run(&["config", "check"], &[("MXWARDEN_CONFIG", file.path.to_str().unwrap())]);
    assert_eq!(r.code, 0, "{}", r.all());
    let missing = run(&["config", "check", "/nonexistent/mxwarden.yaml"], &[]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("cannot read config file /nonexistent/mxwarden.yaml"), "{}", missing.all());
}

#[test]
fn unknown_check_names_on_the_command_line_are_usage_errors() {
    let file = config("checks:\n  - name: homepage\n    http: { url: \"http://127.0.0.1:1\" }\n");
    let r = check_json(&file, &["homepag"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("Did you mean `homepage`?"), "{}", r.all());
    let usage = run(&["check", "--no-such-flag"], &[]);
    assert_eq!(usage.code, 2, "{}", usage.all());
}
