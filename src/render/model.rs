//! Render's REST API v1 as typed data: the JSON shapes of services, deploys, events, metrics,
//! logs, PostgreSQL databases and maintenance runs, with their enums, as the OpenAPI-generated
//! client of Render's own CLI has them (`../shared/reference/render-api.md`). Unknown enum
//! values and missing optional fields are tolerated — Render adds values without notice — so
//! every enum keeps what it did not know as text. Read by `client` (which parses) and by the
//! render probe and CLI (which judge and show).

use serde::{Deserialize, Deserializer, Serialize};

/// A field Render may send as `null` (a Go nil slice marshals so) or leave out: its default.
fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// A service (`srv-…`). A Service has no status field: health comes from deploys, events and
/// instances.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `srv-…`.
    pub id: String,
    /// The name in the dashboard.
    pub name: String,
    /// `web_service`, `private_service`, `background_worker`, `static_site`, `cron_job`.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    /// The workspace (`tea-…` or `usr-…`); logs need it.
    #[serde(default, deserialize_with = "null_default")]
    pub owner_id: String,
    /// `not_suspended` or `suspended` (a string, not a boolean).
    #[serde(default, deserialize_with = "null_default")]
    pub suspended: String,
    /// Who suspended it: `admin`, `billing`, `hipaa_enablement`, `parent_service`,
    /// `stuck_crashlooping`, `unknown`, `user`.
    #[serde(default, deserialize_with = "null_default")]
    pub suspenders: Vec<String>,
    /// Type-specific details; absent fields stay `None`.
    #[serde(default, deserialize_with = "null_default")]
    pub service_details: ServiceDetails,
}

impl Service {
    /// Whether Render says it is suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspended == "suspended"
    }
}

/// `serviceDetails`: what the type has (a static site has no plan, a cron job no instances).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDetails {
    /// `free`, `starter`, `standard`, `pro`, …
    #[serde(default)]
    pub plan: Option<String>,
    /// `oregon`, `frankfurt`, …
    #[serde(default)]
    pub region: Option<String>,
    /// Configured instances; not the running count when autoscaling (the metrics say that).
    #[serde(default)]
    pub num_instances: Option<u32>,
    /// The service's public URL.
    #[serde(default)]
    pub url: Option<String>,
}

/// A deploy (`dep-…`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deploy {
    /// `dep-…`.
    pub id: String,
    /// See [`DeployStatus`].
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// `api`, `new_commit`, `manual`, `rollback`, …
    #[serde(default, deserialize_with = "null_default")]
    pub trigger: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The commit it builds, for repository services.
    #[serde(default)]
    pub commit: Option<Commit>,
    /// The image it runs, for image services.
    #[serde(default)]
    pub image: Option<Image>,
}

/// What a deploy's status means to mxwarden, following Render's CLI (`pkg/deploy/util.go`):
/// done is `live`, `deactivated`, any `*_failed` or `canceled`; success is `live` or
/// `deactivated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployPhase {
    /// `created`, `queued`, `*_in_progress`: the service is being replaced.
    InProgress,
    /// `live` or `deactivated`.
    Succeeded,
    /// `build_failed`, `update_failed`, `pre_deploy_failed`: the old version keeps running.
    Failed,
    /// `canceled`.
    Canceled,
    /// A value this version does not know.
    Unknown,
}

impl DeployPhase {
    /// The phase of a deploy `status`.
    pub fn of(status: &str) -> Self {
        match status {
            "created" | "queued" | "build_in_progress" | "update_in_progress" | "pre_deploy_in_progress" => {
                Self::InProgress
            }
            "live" | "deactivated" => Self::Succeeded,
            "build_failed" | "update_failed" | "pre_deploy_failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => Self::Unknown,
        }
    }
}

impl Deploy {
    /// Its phase.
    pub fn phase(&self) -> DeployPhase {
        DeployPhase::of(&self.status)
    }

    /// What it runs: the commit id (short) or the image reference, or `-`.
    pub fn source(&self) -> String {
        if let Some(c) = self.commit.as_ref().filter(|c| !c.id.is_empty()) {
            return c.id.chars().take(12).collect();
        }
        if let Some(i) = self.image.as_ref().filter(|i| !i.reference.is_empty()) {
            return i.reference.clone();
        }
        "-".into()
    }
}

/// A deploy's commit.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    /// The commit hash.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Its message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A deploy's image.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Image {
    /// `registry/name:tag`.
    #[serde(rename = "ref", default, deserialize_with = "null_default")]
    pub reference: String,
    /// Its digest.
    #[serde(default)]
    pub sha: Option<String>,
}

/// One running instance (`GET /services/{id}/instances`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// `srv-…-x7k2p`.
    pub id: String,
    /// When it started.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// An event (`evt-…`): `details` depends on `type`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `evt-…`.
    pub id: String,
    /// When (RFC 3339).
    pub timestamp: String,
    /// The service.
    #[serde(default)]
    pub service_id: Option<String>,
    /// `server_failed`, `deploy_ended`, `server_restarted`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Type-specific details, kept as JSON and read by the accessors below.
    #[serde(default, deserialize_with = "null_default")]
    pub details: serde_json::Value,
}

/// Why a server failed (`server_failed.details.reason`), as the samples' `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Killed for using more memory than its plan has.
    OomKilled,
    /// The process exited with a non-zero status.
    NonZeroExit,
    /// Its health check failed.
    Unhealthy,
    /// It did not start in time.
    TimedOut,
    /// Evicted from its host.
    Evicted,
}

impl FailureReason {
    /// Every reason, for counters that start at 0.
    pub const ALL: [Self; 5] = [Self::OomKilled, Self::NonZeroExit, Self::Unhealthy, Self::TimedOut, Self::Evicted];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OomKilled => "oom_killed",
            Self::NonZeroExit => "non_zero_exit",
            Self::Unhealthy => "unhealthy",
            Self::TimedOut => "timed_out",
            Self::Evicted => "evicted",
        }
    }
}

impl Event {
    /// For `server_failed`: why, and the instance, the memory limit of an OOM kill and a
    /// sentence of detail.
    pub fn failure(&self) -> Option<Failure> {
        if self.kind != "server_failed" {
            return None;
        }
        let reason = &self.details["reason"];
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let (why, detail) = if !reason["oomKilled"].is_null() {
            let limit = text(&reason["oomKilled"]["memoryLimit"]);
            (FailureReason::OomKilled, limit.clone().map(|l| format!("memory limit {l}")).unwrap_or_default())
        } else if !reason["nonZeroExit"].is_null() {
            (
                FailureReason::NonZeroExit,
                text(&reason["nonZeroExit"]).map(|c| format!("exit status {c}")).unwrap_or_default(),
            )
        } else if !reason["unhealthy"].is_null() {
            (FailureReason::Unhealthy, text(&reason["unhealthy"]).unwrap_or_default())
        } else if !reason["timedOutSeconds"].is_null() || !reason["timedOutReason"].is_null() {
            let secs = text(&reason["timedOutSeconds"]).map(|s| format!("after {s}s")).unwrap_or_default();
            (FailureReason::TimedOut, secs)
        } else if reason["evicted"].as_bool() == Some(true) {
            (FailureReason::Evicted, text(&reason["evictionReason"]).unwrap_or_default())
        } else {
            (FailureReason::NonZeroExit, "no reason given".to_string())
        };
        Some(Failure {
            reason: why,
            instance: text(&self.details["instanceID"]),
            memory_limit: text(&reason["oomKilled"]["memoryLimit"]),
            detail,
        })
    }

    /// For `deploy_ended`: the deploy and `succeeded`, `failed` or `canceled` (a different
    /// enum from a deploy's `status`).
    pub fn deploy_ended(&self) -> Option<(String, String)> {
        (self.kind == "deploy_ended").then(|| {
            (
                self.details["deployId"].as_str().unwrap_or_default().to_string(),
                self.details["deployStatus"].as_str().unwrap_or("unknown").to_string(),
            )
        })
    }
}

/// A `server_failed` event, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why.
    pub reason: FailureReason,
    /// Which instance, when Render says.
    pub instance: Option<String>,
    /// The plan's memory limit an OOM kill names, as Render writes it.
    pub memory_limit: Option<String>,
    /// A few words (exit status, health check answer, …).
    pub detail: String,
}

/// One metrics series: labels, unit, points.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MetricSeries {
    /// `[{"field":"resource","value":"srv-abc"},{"field":"instance","value":"…"}]`.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Vec<MetricLabel>,
    /// A free string (`bytes`, `cpu`, `GB`, …).
    #[serde(default, deserialize_with = "null_default")]
    pub unit: String,
    /// Points, oldest first.
    #[serde(default, deserialize_with = "null_default")]
    pub values: Vec<MetricPoint>,
}

impl MetricSeries {
    /// The value of label `field`.
    pub fn label(&self, field: &str) -> Option<&str> {
        self.labels.iter().find(|l| l.field == field).map(|l| l.value.as_str())
    }

    /// The newest point's value.
    pub fn last(&self) -> Option<f64> {
        self.values.iter().filter(|p| p.value.is_finite()).max_by(|a, b| a.timestamp.cmp(&b.timestamp)).map(|p| p.value)
    }
}

/// A metrics label.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MetricLabel {
    /// `resource`, `instance`, …
    pub field: String,
    /// Its value.
    pub value: String,
}

/// A metrics point.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MetricPoint {
    /// RFC 3339.
    pub timestamp: String,
    /// The value.
    pub value: f64,
}

/// One page of `GET /logs`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    /// More lines in the range.
    #[serde(default, deserialize_with = "null_default")]
    pub has_more: bool,
    /// The next page's `startTime`.
    #[serde(default)]
    pub next_start_time: Option<String>,
    /// The next page's `endTime`.
    #[serde(default)]
    pub next_end_time: Option<String>,
    /// The lines, newest first unless asked forward.
    #[serde(default, deserialize_with = "null_default")]
    pub logs: Vec<LogLine>,
}

/// One log line.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogLine {
    /// Its id.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// RFC 3339.
    pub timestamp: String,
    /// The text.
    pub message: String,
    /// `[{"name":"level","value":"error"}, …]`.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Vec<LogLabel>,
}

impl LogLine {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }
}

/// A log label.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogLabel {
    /// `level`, `instance`, `resource`, …
    pub name: String,
    /// Its value.
    pub value: String,
}

/// A PostgreSQL database (`dpg-…`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Postgres {
    /// `dpg-…`.
    pub id: String,
    /// The name in the dashboard.
    pub name: String,
    /// `basic_256mb`, `pro_4gb`, …: names the memory, not the disk.
    #[serde(default, deserialize_with = "null_default")]
    pub plan: String,
    /// The real disk, GB.
    #[serde(rename = "diskSizeGB", default)]
    pub disk_size_gb: Option<f64>,
    /// Whether the disk grows by itself (at about 90 % use, never shrinking).
    #[serde(default, deserialize_with = "null_default")]
    pub disk_autoscaling_enabled: bool,
    /// `available`, `unavailable`, `suspended`, `recovery_in_progress`, …
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// `"16"`.
    #[serde(default)]
    pub version: Option<String>,
    /// `not_suspended` or `suspended`.
    #[serde(default, deserialize_with = "null_default")]
    pub suspended: String,
    /// Its owner.
    #[serde(default)]
    pub owner: Option<Owner>,
}

impl Postgres {
    /// The disk in bytes (Render's GB are 10^9 bytes).
    pub fn disk_bytes(&self) -> Option<u64> {
        self.disk_size_gb.filter(|g| g.is_finite() && *g > 0.0).map(|g| (g * 1e9) as u64)
    }
}

/// `GET /postgres/{id}/recovery`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// `AVAILABLE`, `BACKUP_NOT_READY` or `NOT_AVAILABLE`.
    pub recovery_status: String,
    /// The earliest point it can restore to.
    #[serde(default)]
    pub starts_at: Option<String>,
}

/// `GET /postgres/{id}/export`: one logical export (a `pg_dump` Render keeps 7 days).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    /// Its id.
    pub id: String,
    /// When it was made (RFC 3339).
    #[serde(default, deserialize_with = "null_default")]
    pub created_at: String,
    /// Where to download it: a signed URL, as good as a password while it lasts. Never printed,
    /// logged or serialized (`Debug` shows only whether there is one).
    #[serde(default)]
    pub url: Option<String>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("url", &self.url.as_ref().map(|_| "<signed url>"))
            .finish()
    }
}

/// A workspace.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Owner {
    /// `tea-…` or `usr-…`.
    pub id: String,
    /// Its name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `team` or `user`.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
}

/// A maintenance run Render schedules (`GET /maintenance`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Maintenance {
    /// `mrn-…`.
    pub id: String,
    /// The service or database.
    pub resource_id: String,
    /// What is done.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub scheduled_at: Option<String>,
    /// `scheduled`, `in_progress`, `user_fix_required`, `cancelled`, `succeeded`, `failed`.
    #[serde(default, deserialize_with = "null_default")]
    pub state: String,
}

/// The body of an error answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ApiError {
    /// `not_found`, `unauthorized`, …
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// A sentence.
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
}

/// What `POST /services/{id}/deploys` takes; every field optional.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployRequest {
    /// `clear` or `do_not_clear`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_cache: Option<String>,
    /// The commit to deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_id: Option<String>,
    /// The image to deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_where_lists_and_strings_belong_read_as_empty() {
        let s: Service = serde_json::from_str(
            r#"{"id":"srv-a","name":"a","type":null,"suspended":null,"suspenders":null,"serviceDetails":null}"#,
        )
        .unwrap();
        assert!(s.suspenders.is_empty() && !s.is_suspended() && s.service_details.plan.is_none());
        let m: Vec<MetricSeries> = serde_json::from_str(r#"[{"labels":null,"unit":null,"values":null}]"#).unwrap();
        assert_eq!(m[0].last(), None);
        let page: LogPage = serde_json::from_str(r#"{"hasMore":null,"logs":null}"#).unwrap();
        assert!(page.logs.is_empty());
    }

    #[test]
    fn deploy_phases_follow_render_s_cli() {
        for (status, phase) in [
            ("queued", DeployPhase::InProgress),
            ("build_in_progress", DeployPhase::InProgress),
            ("pre_deploy_in_progress", DeployPhase::InProgress),
            ("live", DeployPhase::Succeeded),
            ("deactivated", DeployPhase::Succeeded),
            ("update_failed", DeployPhase::Failed),
            ("canceled", DeployPhase::Canceled),
            ("something_new", DeployPhase::Unknown),
        ] {
            assert_eq!(DeployPhase::of(status), phase, "{status}");
        }
    }

    #[test]
    fn server_failed_reasons_are_read_from_details_reason() {
        let event = |details: serde_json::Value| Event {
            id: "evt-1".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            service_id: None,
            kind: "server_failed".into(),
            details,
        };
        let oom = event(
            serde_json::json!({"instanceID":"srv-a-1","reason":{"evicted":false,"oomKilled":{"memoryLimit":"512Mi"}}}),
        );
        let f = oom.failure().unwrap();
        assert_eq!(
            (f.reason, f.instance.as_deref(), f.memory_limit.as_deref()),
            (FailureReason::OomKilled, Some("srv-a-1"), Some("512Mi"))
        );
        let exit = event(serde_json::json!({"reason":{"evicted":false,"nonZeroExit":137}}));
        assert_eq!(exit.failure().unwrap().detail, "exit status 137");
        let unhealthy = event(serde_json::json!({"reason":{"evicted":false,"unhealthy":"GET /health 503"}}));
        assert_eq!(unhealthy.failure().unwrap().reason, FailureReason::Unhealthy);
        let evicted = event(serde_json::json!({"reason":{"evicted":true}}));
        assert_eq!(evicted.failure().unwrap().reason, FailureReason::Evicted);
        let timed = event(serde_json::json!({"reason":{"evicted":false,"timedOutSeconds":900}}));
        assert_eq!(timed.failure().unwrap().reason, FailureReason::TimedOut);
        let other = Event { kind: "server_available".into(), ..oom };
        assert!(other.failure().is_none());
    }
}
