//! `render:` and each service's `render: srv-…` / `dpg-…`: from the file to the API settings
//! (`probe::render::RenderApi`) and the check `<service>/render` of every linked service.
//! Called by `build` after the keys every kind shares were checked. The API key is a secret
//! like every other (`secrets::SECRET_KEYS` names `api_key`).

use super::build::{Problems, parse_url, secret};
use super::schema::{FileConfig, ServiceConfig, ServiceKind};
use crate::model::CheckId;
use crate::probe::render::{RenderApi, RenderSpec};
use crate::probe::spec::{CheckSpec, ProbeSpec};
use crate::render::ResourceKind;
use crate::render::client::DEFAULT_API_URL;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The default `render.interval`.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// The most `render.requests_per_minute` may be: the higher GET limit Render has documented.
const MAX_REQUESTS_PER_MINUTE: u32 = 400;

/// The shortest deadline of one poll (about eight calls, and a 429's wait).
const MIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `render:` built, or `None` when absent or invalid (the problems are recorded).
pub(super) fn api(file: &FileConfig, problems: &mut Problems<'_>) -> Option<Arc<RenderApi>> {
    let spanned = file.render.as_ref()?;
    let r = &spanned.value;
    let here = spanned.referenced;
    let key =
        problems.take(secret(problems.origin, r.api_key.as_ref(), r.api_key_file.as_ref(), "render.api_key", &here));
    let key = match key {
        Some(Some(k)) => Some(k),
        Some(None) => {
            problems.add(
                &here,
                "render.api_key",
                "`render:` needs an API key: api_key: \"${RENDER_API_KEY}\" or api_key_file (Account settings → API keys)",
            );
            None
        }
        None => None,
    };
    let default = Spanned { value: DEFAULT_API_URL.to_string(), referenced: here, defined: here };
    let url = problems.take(parse_url(problems.origin, r.api_url.as_ref().unwrap_or(&default), "render.api_url"));
    let owner_id = r.owner_id.as_ref().and_then(|o| {
        let v = o.value.trim();
        let ok = (v.starts_with("tea-") || v.starts_with("usr-"))
            && v.len() > 4
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if ok {
            Some(v.to_string())
        } else {
            problems.add(
                &o.referenced,
                "render.owner_id",
                format!(
                    "`{}` is not a workspace id; expected tea-… or usr-… (`mxwarden render discover` prints it)",
                    crate::text::escape_controls(v)
                ),
            );
            None
        }
    });
    let interval = match &r.interval {
        None => DEFAULT_INTERVAL,
        Some(i) if i.value.0.is_zero() => {
            problems.add(&i.referenced, "render.interval", "must be more than 0, e.g. 60s");
            DEFAULT_INTERVAL
        }
        Some(i) => i.value.0,
    };
    let requests_per_minute = match &r.requests_per_minute {
        None => crate::render::RenderClient::default_budget(),
        Some(n) if (1..=MAX_REQUESTS_PER_MINUTE).contains(&n.value) => n.value,
        Some(n) => {
            problems.add(
                &n.referenced,
                "render.requests_per_minute",
                format!(
                    "expected 1 to {MAX_REQUESTS_PER_MINUTE} (the higher GET limit Render has documented), got {}; the default is {}",
                    n.value,
                    crate::render::RenderClient::default_budget()
                ),
            );
            crate::render::RenderClient::default_budget()
        }
    };
    Some(Arc::new(RenderApi { url: url?, key: key?, owner_id, interval, requests_per_minute }))
}

/// Whether `file` has `render:` (even an invalid one, whose problems are reported there).
fn configured(file: &FileConfig) -> bool {
    file.render.is_some()
}

/// The `<service>/render` check of each linked service. Ids are checked (prefix by kind, no
/// two services with one id) whether or not `render:` is valid.
pub(super) fn checks(file: &FileConfig, api: Option<&Arc<RenderApi>>, problems: &mut Problems<'_>) -> Vec<CheckSpec> {
    let mut specs = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, spanned) in &file.services {
        let service: &ServiceConfig = &spanned.value;
        let Some(id) = &service.render else { continue };
        let key = format!("services.{name}.render");
        let text = id.value.trim();
        let expected =
            if service.kind == ServiceKind::Postgres { ResourceKind::Postgres } else { ResourceKind::Service };
        let example = if expected == ResourceKind::Postgres { "dpg-…" } else { "srv-…" };
        match ResourceKind::of(text) {
            None => {
                problems.add(
                    &id.referenced,
                    &key,
                    format!(
                        "`{}` is not a Render id; expected {example} (`mxwarden render discover` prints them)",
                        crate::text::escape_controls(text)
                    ),
                );
                continue;
            }
            Some(k) if k != expected => {
                problems.add(
                    &id.referenced,
                    &key,
                    format!(
                        "`{text}` is a {}, but kind {} links {example}",
                        if k == ResourceKind::Postgres { "PostgreSQL database" } else { "service" },
                        service.kind.as_str()
                    ),
                );
                continue;
            }
            Some(_) => {}
        }
        if let Some(other) = seen.insert(text.to_string(), name.clone()) {
            problems.add(&id.referenced, &key, format!("`{text}` is already linked to service `{other}`"));
            continue;
        }
        if !configured(file) {
            problems.add(
                &id.referenced,
                &key,
                "linking a service to Render needs the top-level `render:` with an API key, e.g. render: { api_key: \"${RENDER_API_KEY}\" }",
            );
            continue;
        }
        let Some(api) = api else { continue };
        let timeout = service.timeout.unwrap_or(file.defaults.timeout).0.max(MIN_TIMEOUT);
        specs.push(CheckSpec {
            id: CheckId(format!("{name}/render")),
            service: Some(name.clone()),
            interval: api.interval,
            timeout,
            probe: ProbeSpec::Render(RenderSpec {
                api: api.clone(),
                resource: text.to_string(),
                kind: expected,
                disk_limit: service.disk_limit.map(|d| d.0),
            }),
        });
    }
    specs
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    fn load(text: &str) -> Result<super::super::Config, String> {
        let env: HashMap<String, String> = [("RENDER_API_KEY".to_string(), "rnd_TOPSECRET99".to_string())].into();
        super::super::from_source(Path::new("/etc/mxwarden/mxwarden.yaml"), text, &env).map_err(|e| e.to_string())
    }

    const BASE: &str = "render: { api_key: \"${RENDER_API_KEY}\", api_url: \"http://127.0.0.1:9/v1\" }\nservices:\n";

    #[test]
    fn linked_services_get_a_render_check_with_the_key_hidden() {
        let c = load(&format!(
            "{BASE}  synapse: {{ kind: synapse, url: \"https://m.example.org\", render: srv-abc123 }}\n  db: {{ kind: postgres, dsn: \"postgresql://u@h/d\", render: dpg-xyz789-a }}\n"
        ))
        .unwrap();
        let names: Vec<&str> = c.checks.iter().map(|c| c.id.0.as_str()).filter(|n| n.ends_with("/render")).collect();
        assert_eq!(names, ["db/render", "synapse/render"]);
        let shown = serde_json::to_string(&c.checks.iter().map(|c| c.view()).collect::<Vec<_>>()).unwrap();
        assert!(!shown.contains("TOPSECRET") && shown.contains("srv-abc123"), "{shown}");
        assert!(c.rules.iter().any(|r| r.def.alert == "RenderServiceOOMKilled"), "the Render rules come with a link");
    }

    #[test]
    fn a_mas_on_render_has_its_memory_line_covered() {
        let mas = |link: &str| {
            format!(
                "{BASE}  mas: {{ kind: mas, url: \"https://m.example.org\", metrics_url: \"http://m:8081/metrics\"{link} }}\n"
            )
        };
        let missing = |c: &super::super::Config| c.unavailable.iter().any(|(_, u)| u.alert == "MasMemoryHigh");
        assert!(missing(&load(&mas("")).unwrap()), "without Render, MAS has no memory metric");
        assert!(!missing(&load(&mas(", render: srv-mas1")).unwrap()), "RenderMemoryHigh covers it");
    }

    #[test]
    fn bad_links_name_file_line_and_key() {
        let cases = [
            (
                "  s: { kind: synapse, url: \"https://m.example.org\", render: dpg-abc }\n",
                "services.s.render",
                "kind synapse links srv-",
            ),
            (
                "  db: { kind: postgres, dsn: \"postgresql://u@h/d\", render: srv-abc }\n",
                "services.db.render",
                "kind postgres links dpg-",
            ),
            (
                "  s: { kind: synapse, url: \"https://m.example.org\", render: \"srv-a/../b\" }\n",
                "services.s.render",
                "not a Render id",
            ),
        ];
        for (line, key, words) in cases {
            let e = load(&format!("{BASE}{line}")).unwrap_err();
            assert!(e.contains("mxwarden.yaml:3:") && e.contains(key) && e.contains(words), "{e}");
        }
        let e =
            load("services:\n  s: { kind: synapse, url: \"https://m.example.org\", render: srv-abc }\n").unwrap_err();
        assert!(e.contains("mxwarden.yaml:2:") && e.contains("top-level `render:`"), "{e}");
        let e = load("render: { api_key: k, requests_per_minute: 1000 }\n").unwrap_err();
        assert!(e.contains("mxwarden.yaml:1:") && e.contains("render.requests_per_minute: expected 1 to 400"), "{e}");
        let e = load("render: { api_url: \"http://127.0.0.1:9/v1\" }\n").unwrap_err();
        assert!(e.contains("mxwarden.yaml:1:") && e.contains("render.api_key"), "{e}");
        let e = load(&format!(
            "{BASE}  a: {{ kind: mas, url: \"https://m.example.org\", render: srv-same }}\n  b: {{ kind: vikunja, url: \"https://v.example.org\", render: srv-same }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("mxwarden.yaml:4:") && e.contains("already linked to service `a`"), "{e}");
    }

    #[test]
    fn a_key_given_inline_never_appears_in_an_error() {
        let e = load("render: { api_key: rnd_INLINESECRET, api_url: \"ftp://x\" }\n").unwrap_err();
        assert!(e.contains("render.api_url") && !e.contains("rnd_INLINESECRET"), "{e}");
    }
}
