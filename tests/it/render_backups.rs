//! `mxwarden backup list --render`, against the fake of Render's API (the documented shapes):
//! a paid database with PITR and exports lists its window and exports; a free one warns that
//! mxwarden's backups are the only ones (exit 1); an export's signed URL never appears in any
//! output; a bad key, an unknown id, a huge or malformed answer are errors in words; a config
//! without `render:` or without a linked database is a usage error (exit 2).

use crate::cli::{config, run};
use crate::support::fakes;
use mxwarden_render_fake::FakeRender;

const KEY: &str = "rnd_BACKUPSkeyNeverShown42";
const SIGNATURE: &str = "5f3a9c0e7b21d4SIGNATUREdoNotPrint";

fn fake() -> FakeRender {
    fakes::runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        FakeRender::spawn(listener, KEY)
    })
}

fn ago(hours: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(hours)).to_string()
}

fn signed_url(n: u32) -> String {
    format!(
        "https://render-exports.s3.amazonaws.com/dpg-x/export-{n}.dir.tar.gz?X-Amz-Credential=AKIAFAKE%2F20261205&X-Amz-Signature={SIGNATURE}{n}"
    )
}

fn two_databases(api_url: &str, key_ref: &str) -> crate::cli::ConfigFile {
    config(&format!(
        "render: {{ api_key: \"{key_ref}\", api_url: \"{api_url}\" }}\nservices:\n  \
         main-db: {{ kind: postgres, dsn: \"postgresql://u@127.0.0.1:9/d\", render: dpg-paid00000000000000 }}\n  \
         side-db: {{ kind: postgres, dsn: \"postgresql://u@127.0.0.1:9/e\", render: dpg-free00000000000000 }}\n  \
         mas: {{ kind: mas, url: \"http://127.0.0.1:9\", disable: [discovery, jwks], render: srv-mas00000000000000 }}\n"
    ))
}

#[test]
fn a_paid_database_lists_its_window_and_exports_and_a_free_one_warns_without_showing_a_url() {
    let render = fake();
    render.add_postgres("dpg-paid00000000000000", "app-db", "pro_4gb", 50, 1e9);
    render.set_recovery("dpg-paid00000000000000", "AVAILABLE", Some(&ago(7 * 24)));
    let fresh = render.add_export("dpg-paid00000000000000", &ago(24), &signed_url(1));
    let expired = render.add_export("dpg-paid00000000000000", &ago(9 * 24), &signed_url(2));
    render.add_postgres("dpg-free00000000000000", "side", "free", 1, 1e6);
    render.set_recovery("dpg-free00000000000000", "NOT_AVAILABLE", None);
    let stale = render.add_export("dpg-free00000000000000", &ago(8 * 24), &signed_url(3));
    let file = two_databases(&render.api_url, KEY);
    let p = file.path.to_str().unwrap();

    let out = run(&["--config", p, "backup", "list", "--render", "--json"], &[]);
    assert_eq!(out.code, 1, "the free database is a warning: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["warnings"], 1);
    let dbs = v["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 2, "only the databases, not the MAS service: {v:#}");
    let paid = dbs.iter().find(|d| d["service"] == "main-db").unwrap();
    assert_eq!(
        (paid["id"].as_str(), paid["name"].as_str(), paid["plan"].as_str()),
        (Some("dpg-paid00000000000000"), Some("app-db"), Some("pro_4gb"))
    );
    assert_eq!((paid["pitr"]["status"].as_str(), paid["pitr"]["available"].as_bool()), (Some("AVAILABLE"), Some(true)));
    let window = paid["pitr"]["window_seconds"].as_u64().unwrap();
    assert!((7 * 86_400 - 600 - 120..=7 * 86_400 - 600).contains(&window), "7 days minus 10 minutes: {window}");
    let ends: jiff::Timestamp = paid["pitr"]["ends_at"].as_str().unwrap().parse().unwrap();
    let lag = jiff::Timestamp::now().duration_since(ends).as_secs();
    assert!((595..700).contains(&lag), "the window ends 10 minutes ago: {lag}");
    let exports: Vec<(String, bool, bool, String)> = paid["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["within_keep"].as_bool().unwrap(),
                e["has_url"].as_bool().unwrap(),
                e["url_host"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let host = "render-exports.s3.amazonaws.com".to_string();
    assert_eq!(exports, [(fresh.clone(), true, true, host.clone()), (expired.clone(), false, true, host)]);
    assert!(paid["warning"].is_null());
    let free = dbs.iter().find(|d| d["service"] == "side-db").unwrap();
    assert_eq!((free["plan"].as_str(), free["pitr"]["available"].as_bool()), (Some("free"), Some(false)));
    assert_eq!(
        (free["exports"][0]["id"].as_str(), free["exports"][0]["within_keep"].as_bool()),
        (Some(stale.as_str()), Some(false))
    );
    let warning = free["warning"].as_str().unwrap();
    assert!(
        warning.contains("free instance has no point-in-time recovery")
            && warning.contains("mxwarden's backups are the only ones for side-db"),
        "{warning}"
    );

    let text = run(&["-vv", "--config", p, "backup", "list", "--render"], &[]);
    assert_eq!(text.code, 1, "{}", text.stderr);
    for needle in [
        fresh.as_str(),
        expired.as_str(),
        "link on render-exports.s3.amazonaws.com",
        "expired ",
        "mxwarden's backups are the only ones for side-db",
        "point-in-time recovery: none (NOT_AVAILABLE)",
        "(7.0 days)",
    ] {
        assert!(text.stdout.contains(needle), "{needle:?} missing: {}", text.stdout);
    }
    for o in [&out, &text] {
        let all = format!("{}{}", o.stdout, o.stderr);
        assert!(
            !all.contains(SIGNATURE)
                && !all.contains("X-Amz")
                && !all.contains("AKIAFAKE")
                && !all.contains(".dir.tar.gz"),
            "a signed URL leaked: {all}"
        );
        assert!(!all.contains(KEY), "the key leaked: {all}");
    }

    // A recent export is a backup Render holds: no warning once the free database has one.
    render.add_export("dpg-free00000000000000", &ago(2), &signed_url(4));
    let out = run(&["--config", p, "backup", "list", "--render", "--json"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains(SIGNATURE), "{}", out.stdout);
    assert!(render.requests().iter().any(|r| r.starts_with("GET /v1/postgres/dpg-free00000000000000/export")));
}

#[test]
fn a_bad_key_and_an_unknown_id_are_errors_in_words_and_the_key_is_never_shown() {
    let render = fake();
    render.add_postgres("dpg-paid00000000000000", "app-db", "pro_4gb", 50, 1e9);
    render.add_export("dpg-paid00000000000000", &ago(1), &signed_url(1));
    let wrong = "rnd_WRONGbackupKey777";
    let file = two_databases(&render.api_url, "${RENDER_API_KEY}");
    let p = file.path.to_str().unwrap();
    for args in [
        vec!["--config", p, "backup", "list", "--render"],
        vec!["-vv", "--config", p, "backup", "list", "--render", "--json"],
    ] {
        let out = run(&args, &[("RENDER_API_KEY", wrong)]);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code, 1, "{args:?}: {all}");
        assert!(all.contains("Render refused the API key (401 unauthorized)"), "{args:?}: {all}");
        assert!(!all.contains(wrong) && !all.contains(SIGNATURE), "{args:?}: {all}");
    }
    assert!(render.requests().iter().all(|r| !r.contains(wrong)), "the key never travels in a URL");

    // The right key: the paid database is fine, the unknown one is named with a 404 in words.
    let out = run(&["--config", p, "backup", "list", "--render", "--json"], &[("RENDER_API_KEY", KEY)]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let side = v["databases"].as_array().unwrap().iter().find(|d| d["service"] == "side-db").unwrap();
    let error = side["error"].as_str().unwrap();
    assert!(error.contains("Render knows no postgres database `dpg-free00000000000000` (404)"), "{error}");
    let main = v["databases"].as_array().unwrap().iter().find(|d| d["service"] == "main-db").unwrap();
    assert!(main["error"].is_null() && main["warning"].is_null(), "{main:#}");
}

#[test]
fn without_render_or_a_linked_database_it_is_a_usage_error() {
    let none = config("services:\n  pg: { kind: postgres, dsn: \"postgresql://u@127.0.0.1:9/d\" }\n");
    let out = run(&["--config", none.path.to_str().unwrap(), "backup", "list", "--render"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("has no `render:`") && out.stderr.contains("backup list --render"), "{}", out.stderr);

    let render = fake();
    let unlinked = config(&format!(
        "render: {{ api_key: \"{KEY}\", api_url: \"{}\" }}\nservices:\n  pg: {{ kind: postgres, dsn: \"postgresql://u@127.0.0.1:9/d\" }}\n  mas: {{ kind: mas, url: \"http://127.0.0.1:9\", disable: [discovery, jwks], render: srv-mas00000000000000 }}\n",
        render.api_url
    ));
    let out = run(&["--config", unlinked.path.to_str().unwrap(), "backup", "list", "--render", "--json"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("links no PostgreSQL to Render") && out.stderr.contains("render: dpg-"),
        "{}",
        out.stderr
    );
    assert!(render.requests().is_empty(), "nothing asked of Render: {:?}", render.requests());
}

#[test]
fn hostile_answers_are_bounded_and_injected_names_are_escaped() {
    use axum::routing::get;
    // Exports over the body cap, and exports that are not the documented JSON.
    let huge = fakes::serve(
        axum::Router::new()
            .route(
                "/v1/postgres/{id}",
                get(|| async {
                    axum::Json(serde_json::json!({"id": "dpg-paid00000000000000", "name": "db", "plan": "pro_4gb"}))
                }),
            )
            .route(
                "/v1/postgres/{id}/recovery",
                get(|| async { axum::Json(serde_json::json!({"recoveryStatus": "NOT_AVAILABLE"})) }),
            )
            .route(
                "/v1/postgres/dpg-paid00000000000000/export",
                get(|| async {
                    format!(
                        "[{}]",
                        vec![format!("{{\"id\":\"exp\",\"createdAt\":\"x\",\"url\":\"{}\"}}", signed_url(1)); 60_000]
                            .join(",")
                    )
                }),
            )
            .route(
                "/v1/postgres/dpg-free00000000000000/export",
                get(|| async { format!("{{\"url\": \"{}\", \"oops\": ", signed_url(2)) }),
            ),
    );
    let file = two_databases(&format!("{huge}/v1"), KEY);
    let out = run(&["--config", file.path.to_str().unwrap(), "backup", "list", "--render", "--json"], &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let error = |s: &str| {
        v["databases"].as_array().unwrap().iter().find(|d| d["service"] == s).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(error("main-db").contains("is over 4194304 bytes; refused"), "{}", error("main-db"));
    assert!(error("side-db").contains("is not the documented JSON"), "{}", error("side-db"));
    assert!(!out.stdout.contains(SIGNATURE) && !out.stderr.contains(SIGNATURE));

    // An export id carrying terminal escapes is shown escaped.
    let render = fake();
    render.add_postgres("dpg-paid00000000000000", "app\u{1b}[2Jdb", "pro_4gb", 50, 1e9);
    render.with(|w| {
        w.exports.entry("dpg-paid00000000000000".into()).or_default().push(serde_json::json!({
            "id": "exp-\u{1b}]0;owned\u{7}", "createdAt": ago(1), "url": "javascript:alert(1)"
        }));
    });
    let file = config(&format!(
        "render: {{ api_key: \"{KEY}\", api_url: \"{}\" }}\nservices:\n  db: {{ kind: postgres, dsn: \"postgresql://u@127.0.0.1:9/d\", render: dpg-paid00000000000000 }}\n",
        render.api_url
    ));
    let out = run(&["--config", file.path.to_str().unwrap(), "backup", "list", "--render"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains('\u{1b}') && !out.stdout.contains('\u{7}'), "{:?}", out.stdout);
    assert!(!out.stdout.contains("javascript") && out.stdout.contains("link"), "{}", out.stdout);
}

#[test]
fn a_silent_export_listing_ends_at_the_deadline_with_an_error_in_words() {
    use axum::routing::get;
    use std::time::{Duration, Instant};
    let render = fake();
    render.add_postgres("dpg-paid00000000000000", "app-db", "pro_4gb", 50, 1e9);
    let silent = fakes::serve(
        axum::Router::new()
            .route(
                "/v1/postgres/{id}/export",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "[]"
                }),
            )
            .fallback(|| async { "{}" }),
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = mxwarden::render::RenderClient::new(
        reqwest::Client::new(),
        format!("{silent}/v1").parse().unwrap(),
        KEY.to_string().into(),
        mxwarden::render::RenderClient::default_budget(),
        Duration::from_secs(1),
        |e, _| e.to_string(),
    );
    let started = Instant::now();
    let e = fakes::runtime().block_on(client.exports("dpg-paid00000000000000")).unwrap_err().to_string();
    assert!(
        e.contains("did not answer postgres/dpg-paid00000000000000/export")
            && started.elapsed() < Duration::from_secs(3),
        "{e} after {:?}",
        started.elapsed()
    );
    // The same call against the fake: the documented shape, read whole.
    let good = mxwarden::render::RenderClient::new(
        reqwest::Client::new(),
        render.api_url.parse().unwrap(),
        KEY.to_string().into(),
        mxwarden::render::RenderClient::default_budget(),
        Duration::from_secs(5),
        |e, _| e.to_string(),
    );
    let made = render.add_export("dpg-paid00000000000000", &ago(3), &signed_url(9));
    let exports = fakes::runtime().block_on(good.exports("dpg-paid00000000000000")).unwrap();
    assert_eq!(exports.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), [made]);
    assert!(!format!("{exports:?}").contains(SIGNATURE), "Debug hides the signed URL: {exports:?}");
}
