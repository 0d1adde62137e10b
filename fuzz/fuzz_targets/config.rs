//! Fuzzes the config loader: arbitrary text (lossy UTF-8) through `config::from_source`, the
//! whole path from YAML to runnable checks, rules and receivers. It must never panic or hang,
//! every error must name the file, and no error may show a secret: the text is appended to
//! one of a few starts that put a literal secret in a secret field (a token, a webhook URL, a
//! header value), and the environment holds a secret that `${TOKEN}` brings in.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::path::Path;

const LITERAL: &str = "LEAK-fuzz-literal-secret";
const FROM_ENV: &str = "LEAK-fuzz-environment-secret";

/// Starts that put `LITERAL` in a secret field; the fuzzed text follows.
const STARTS: [&str; 4] = [
    "",
    "admin_token: LEAK-fuzz-literal-secret\n",
    "alerting:\n  receivers:\n    hook: { webhook: { url: \"https://h.example.org/LEAK-fuzz-literal-secret\" } }\n",
    "checks:\n  - name: c\n    http:\n      url: http://127.0.0.1:1/\n      headers:\n        X-Auth: LEAK-fuzz-literal-secret\n",
];

fuzz_target!(|data: &[u8]| {
    let (start, rest) = match data.split_first() {
        Some((first, rest)) => (STARTS[usize::from(*first) % STARTS.len()], rest),
        None => ("", data),
    };
    let text = format!("{start}{}", String::from_utf8_lossy(rest));
    let env = HashMap::from([("TOKEN".to_string(), FROM_ENV.to_string())]);
    let path = Path::new("/nonexistent/fuzz/mxwarden.yaml");
    let Err(error) = mxwarden::config::from_source(path, &text, &env) else { return };
    let shown = error.to_string();
    assert!(shown.contains("/nonexistent/fuzz/mxwarden.yaml"), "an error names the file: {shown}");
    // A secret the fuzzer wrote again itself (maybe in no secret field) is no leak of ours.
    let planted = [
        (LITERAL, text.matches(LITERAL).count() == usize::from(start.contains(LITERAL))),
        (FROM_ENV, !text.contains(FROM_ENV)),
    ];
    for (secret, only_planted) in planted {
        if only_planted {
            assert!(!shown.contains(secret), "the secret {secret} leaked:\n{shown}\n--- config:\n{text}");
        }
    }
});
