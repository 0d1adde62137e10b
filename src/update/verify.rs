//! The `verify` and `verify-rollback` steps: every check of the service passing
//! `deploy.verify.rounds` rounds in a row within its timeout, the rules about the service quiet
//! over the samples of those rounds, the version it reports compared with the one asked for, and
//! for Synapse and MAS the login path (auth metadata, the issuer's discovery, JWKS; or the login
//! flows of a Synapse without MAS). Evidence in words for the record and the page.

use super::plan::Outcome;
use super::run::{Done, Updater};
use super::version;
use crate::model::ServiceKind;
use serde_json::Value;
use std::time::{Duration, Instant};

impl Updater {
    /// The proof after a deploy or a rollback: the service's checks pass `verify.rounds`
    /// rounds in a row, its rules are quiet over those samples, it reports `expect` (when
    /// given), and (Synapse, MAS) its login path answers.
    pub(super) async fn verify(&self, expect: Option<&str>) -> Done {
        let t = &self.target;
        let spec = &t.deploy.verify;
        let deadline = Instant::now() + spec.timeout;
        let prober = crate::probe::Prober::new(self.clock.clone());
        let mut series = crate::series::SeriesStore::new(i64::MAX / 4, t.series_limit);
        let (mut streak, mut rounds, mut last_failure) = (0u32, 0u32, String::new());
        let mut evidence = Vec::new();
        loop {
            let observations = probe_all(&prober, &t.checks, t.concurrency).await;
            rounds += 1;
            let at = self.now();
            for o in &observations {
                series.ingest_samples(&o.check.0, at, o.samples.iter().chain(&o.scraped));
            }
            let failing: Vec<String> =
                observations.iter().filter(|o| !o.ok).map(|o| format!("{}: {}", o.check.0, o.detail())).collect();
            if failing.is_empty() {
                streak += 1;
            } else {
                streak = 0;
                last_failure = failing.join("; ");
            }
            if streak >= spec.rounds {
                evidence
                    .push(format!("{} check(s) passed {streak} rounds in a row ({rounds} rounds run)", t.checks.len()));
                break;
            }
            if Instant::now() + spec.interval > deadline {
                let line = format!(
                    "checks did not pass {} rounds in a row within {} ({rounds} rounds); last failure: {last_failure}",
                    spec.rounds,
                    crate::units::HumanDuration(spec.timeout)
                );
                return Done::new(Outcome::Failed, line);
            }
            tokio::time::sleep(spec.interval).await;
        }
        let mut problems = Vec::new();
        let at = self.now();
        for rule in &t.rules {
            let origin_service = rule.def.origin.split_once(" for ").map(|(_, s)| s);
            match rule.instances(&series, at) {
                Ok(active) => {
                    for i in active {
                        let about = i.labels.get("service").map(String::as_str).or(origin_service);
                        if about == Some(t.service.as_str()) {
                            problems.push(format!("rule {} would fire (value {})", rule.def.alert, i.value));
                        }
                    }
                }
                Err(e) => {
                    if origin_service == Some(t.service.as_str()) {
                        problems.push(format!("rule {}: {e}", rule.def.alert));
                    }
                }
            }
        }
        if problems.is_empty() {
            evidence.push("its rules are quiet".into());
        }
        match (version::fetch(&self.http, &t.access).await, expect) {
            (Ok(Some(v)), Some(want)) if version::matches(&v, want) => evidence.push(format!("reports version {v}")),
            (Ok(Some(v)), Some(want)) => problems.push(format!("reports version {v}, not {want}")),
            (Ok(Some(v)), None) => evidence.push(format!("reports version {v} (no version to compare with)")),
            (Ok(None), _) => evidence.push("reports no version (its kind has no version endpoint)".into()),
            (Err(e), Some(want)) => problems.push(format!("cannot confirm version {want}: {e}")),
            (Err(e), None) => evidence.push(format!("version unknown: {e}")),
        }
        match self.login_path().await {
            Ok(Some(how)) => evidence.push(how),
            Ok(None) => {}
            Err(e) => problems.push(format!("login path: {e}")),
        }
        if problems.is_empty() {
            Done::new(Outcome::Ok, evidence.join("; "))
        } else {
            Done::new(Outcome::Failed, problems.join("; ")).detail(format!(
                "{}\nalso: {}",
                problems.join("\n"),
                evidence.join("; ")
            ))
        }
    }

    /// Synapse and MAS: the login path answers. `Ok(None)` for other kinds.
    async fn login_path(&self) -> Result<Option<String>, String> {
        let a = &self.target.access;
        let Some(base) = &a.url else { return Ok(None) };
        let deadline = Duration::from_secs(10);
        let get = |url: url::Url| {
            let http = self.http.clone();
            async move { version::get_json(&http, &url, None, deadline).await.map(|(s, j)| (s, j, url)) }
        };
        let join = |path: &str| base.join(path).map_err(|e| format!("{path}: {e}"));
        let jwks = |discovery: &Value| -> Result<url::Url, String> {
            discovery["jwks_uri"]
                .as_str()
                .and_then(|u| url::Url::parse(u).ok())
                .ok_or_else(|| "the discovery document has no jwks_uri".to_string())
        };
        let keys_ok = |(status, body, url): (u16, Value, url::Url)| -> Result<usize, String> {
            let n = body["keys"].as_array().map_or(0, Vec::len);
            if status == 200 && n > 0 { Ok(n) } else { Err(format!("{url}: HTTP {status}, {n} keys")) }
        };
        match a.kind {
            ServiceKind::Synapse => {
                let (status, meta, url) = get(join("/_matrix/client/v1/auth_metadata")?).await?;
                if status == 200 {
                    // MAS behind Synapse: the issuer's discovery must answer as the same issuer.
                    let issuer = meta["issuer"].as_str().unwrap_or_default().trim_end_matches('/').to_string();
                    let discovery_url = url::Url::parse(&format!("{issuer}/.well-known/openid-configuration"))
                        .map_err(|e| format!("auth metadata names issuer `{issuer}`: {e}"))?;
                    let (status, discovery, durl) = get(discovery_url).await?;
                    let announced = discovery["issuer"].as_str().unwrap_or_default().trim_end_matches('/');
                    if status != 200 || announced != issuer {
                        return Err(format!("{durl}: HTTP {status}, issuer `{announced}` (Synapse says `{issuer}`)"));
                    }
                    let keys = keys_ok(get(jwks(&meta)?).await?)?;
                    Ok(Some(format!("login path: auth metadata, discovery of issuer {issuer}, JWKS with {keys} keys")))
                } else if status == 404 {
                    let (status, login, url) = get(join("/_matrix/client/v3/login")?).await?;
                    let flows = login["flows"].as_array().map_or(0, Vec::len);
                    if status == 200 && flows > 0 {
                        Ok(Some(format!("login path: {flows} login flow(s) (no MAS: auth metadata 404)")))
                    } else {
                        Err(format!("{url}: HTTP {status}, {flows} login flows"))
                    }
                } else {
                    Err(format!("{url}: HTTP {status}"))
                }
            }
            ServiceKind::Mas => {
                let (status, discovery, url) = get(join("/.well-known/openid-configuration")?).await?;
                if status != 200 {
                    return Err(format!("{url}: HTTP {status}"));
                }
                let keys = keys_ok(get(jwks(&discovery)?).await?)?;
                Ok(Some(format!("login path: discovery and JWKS with {keys} keys")))
            }
            _ => Ok(None),
        }
    }
}

/// Runs `specs`, `concurrency` at a time, in order. (`Prober::run_all`'s stream cannot be
/// proven `Send` for every lifetime, and the daemon runs updates on a spawned task.)
pub(crate) async fn probe_all(
    prober: &crate::probe::Prober,
    specs: &[crate::probe::spec::CheckSpec],
    concurrency: usize,
) -> Vec<crate::model::Observation> {
    let mut out = Vec::with_capacity(specs.len());
    for chunk in specs.chunks(concurrency.max(1)) {
        let running: Vec<_> = chunk.iter().map(|s| prober.run(s)).collect();
        out.extend(futures::future::join_all(running).await);
    }
    out
}
