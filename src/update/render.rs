//! Deploys and rollbacks through Render's API (`crate::render::RenderClient`): the preflight
//! finds the deploy live now (what a rollback returns to); a deploy is triggered with the image
//! or commit asked for and followed to `live` or failure by polling the deploy (Render's CLI
//! does the same); a failure's evidence comes from the service's events since the trigger
//! (`deploy_ended` with its reason, `server_failed` with OOM kill, exit status or failed health
//! check). A rollback is Render's rollback to the deploy live before, followed the same way.

use crate::probe::render::RenderApi;
use crate::render::RenderClient;
use crate::render::client::Triggered;
use crate::render::model::{Deploy, DeployPhase, DeployRequest};
use std::time::{Duration, Instant};

/// A client for one update: the configured API, its key, a share of Render's rate limit.
pub(crate) fn client(api: &RenderApi, http: reqwest::Client) -> RenderClient {
    RenderClient::new(
        http,
        api.url.clone(),
        api.key.clone(),
        RenderClient::default_budget(),
        Duration::from_secs(30),
        crate::probe::explain_transport,
    )
}

/// Whether `to` names an image (else it is a commit).
fn is_image(to: &str) -> bool {
    to.contains('/') || to.contains(':')
}

/// The preflight's part: the service answers, is not suspended, and has a live deploy (its
/// id, and what it runs).
pub(crate) async fn live_deploy(client: &RenderClient, id: &str) -> Result<(String, String), String> {
    let service = client.service(id).await.map_err(|e| e.to_string())?;
    if service.is_suspended() {
        return Err(format!("Render service {id} is suspended ({})", service.suspenders.join(", ")));
    }
    let deploys = client.deploys(id, 20).await.map_err(|e| e.to_string())?;
    deploys
        .iter()
        .find(|d| d.status == "live")
        .map(|d| (d.id.clone(), d.source()))
        .ok_or_else(|| format!("Render service {id} has no live deploy to roll back to"))
}

/// How a followed deploy ended.
pub(crate) struct Followed {
    /// The deploy's id, when one was created.
    pub deploy_id: Option<String>,
    /// Live.
    pub ok: bool,
    /// One line.
    pub line: String,
    /// The evidence (status, events).
    pub detail: String,
}

/// Triggers a deploy of `to` (an image, else a commit): the deploy to follow.
pub(crate) async fn trigger(client: &RenderClient, id: &str, to: &str) -> Result<Deploy, String> {
    let request = if is_image(to) {
        DeployRequest { image_url: Some(to.to_string()), ..DeployRequest::default() }
    } else {
        DeployRequest { commit_id: Some(to.to_string()), ..DeployRequest::default() }
    };
    match client.trigger_deploy(id, &request).await {
        Ok(Triggered::Created(d) | Triggered::Queued(Some(d))) => Ok(d),
        Ok(Triggered::Queued(None)) => {
            Err("Render accepted the deploy (202) but lists no queued deploy to follow".into())
        }
        Err(e) => Err(format!("the deploy was not triggered: {e}")),
    }
}

/// Cancels deploy `deploy_id` if it is still under way (before a rollback: a deploy that goes
/// live after the rollback would undo it). Says what it did.
pub(crate) async fn cancel_if_running(client: &RenderClient, id: &str, deploy_id: &str) -> String {
    match client.deploy(id, deploy_id).await {
        Ok(d) if d.phase() == DeployPhase::InProgress => match client.cancel_deploy(id, deploy_id).await {
            Ok(c) => format!("deploy {deploy_id} was {} and is now {}", d.status, c.status),
            Err(e) => format!("deploy {deploy_id} is {} and could not be canceled: {e}", d.status),
        },
        Ok(d) => format!("deploy {deploy_id} is {}", d.status),
        Err(e) => format!("deploy {deploy_id}: {e}"),
    }
}

/// Rolls back to `to_deploy` and follows the new deploy.
pub(crate) async fn rollback(
    client: &RenderClient,
    id: &str,
    to_deploy: &str,
    timeout: Duration,
    poll: Duration,
) -> Followed {
    let started = jiff::Timestamp::now();
    match client.rollback(id, to_deploy).await {
        Ok(d) => follow(client, id, d, started, timeout, poll, "rollback").await,
        Err(e) => failed(None, format!("Render's rollback to {to_deploy} was refused: {e}")),
    }
}

fn failed(deploy_id: Option<String>, line: String) -> Followed {
    Followed { deploy_id, ok: false, detail: line.clone(), line }
}

pub(crate) async fn follow(
    client: &RenderClient,
    id: &str,
    mut deploy: Deploy,
    started: jiff::Timestamp,
    timeout: Duration,
    poll: Duration,
    what: &str,
) -> Followed {
    let deadline = Instant::now() + timeout;
    let mut transient = 0;
    loop {
        match deploy.phase() {
            DeployPhase::Succeeded => {
                let line = format!("{what} {} is {} ({})", deploy.id, deploy.status, deploy.source());
                return Followed { deploy_id: Some(deploy.id), ok: true, detail: line.clone(), line };
            }
            DeployPhase::Failed | DeployPhase::Canceled => {
                let line = format!("{what} {} ended {} ({})", deploy.id, deploy.status, deploy.source());
                let events = evidence(client, id, &deploy.id, started).await;
                return Followed { deploy_id: Some(deploy.id), ok: false, detail: format!("{line}\n{events}"), line };
            }
            DeployPhase::InProgress | DeployPhase::Unknown => {}
        }
        if Instant::now() + poll > deadline {
            let mut line =
                format!("{what} {} still {} after {}", deploy.id, deploy.status, crate::units::HumanDuration(timeout));
            if what == "deploy" {
                line = format!("{line}; {}", cancel_if_running(client, id, &deploy.id).await);
            }
            return failed(Some(deploy.id), line);
        }
        tokio::time::sleep(poll).await;
        match client.deploy(id, &deploy.id).await {
            Ok(d) => {
                deploy = d;
                transient = 0;
            }
            Err(e) if e.is_transient() && transient < 5 => transient += 1,
            Err(e) => return failed(Some(deploy.id.clone()), format!("cannot follow {what} {}: {e}", deploy.id)),
        }
    }
}

/// What the service's events since `since` say about deploy `deploy_id`.
async fn evidence(client: &RenderClient, id: &str, deploy_id: &str, since: jiff::Timestamp) -> String {
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let start = since - jiff::SignedDuration::from_secs(60);
    match client.events(id, start, until, None, 50).await {
        Err(e) => format!("events: not read ({e})"),
        Ok(events) => {
            let mut lines = Vec::new();
            for e in &events {
                if let Some((dep, status)) = e.deploy_ended()
                    && dep == deploy_id
                {
                    let reason = e.details["reason"].to_string();
                    lines.push(format!(
                        "{} deploy_ended {status}: {}",
                        e.timestamp,
                        crate::text::escape_controls(&reason)
                    ));
                }
                if let Some(f) = e.failure() {
                    lines.push(format!(
                        "{} server_failed {}{}{}",
                        e.timestamp,
                        f.reason.as_str(),
                        if f.detail.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", crate::text::escape_controls(&f.detail))
                        },
                        f.instance.map(|i| format!(" ({i})")).unwrap_or_default()
                    ));
                }
            }
            if lines.is_empty() {
                "events: nothing about this deploy".into()
            } else {
                format!("events:\n{}", lines.join("\n"))
            }
        }
    }
}
