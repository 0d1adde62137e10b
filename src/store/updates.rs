//! The update record: one row per `mxwarden update` (service, target, who runs it, how it
//! ended) and one row per step it ran (start, end, outcome, evidence). The executor writes a
//! step's start before it runs it and its end before the next one starts, so after a crash
//! the record says exactly where the update stood (`crate::update::plan::decide` reads it).
//! At most one unfinished update per service: a partial unique index refuses a second one in
//! the same statement that would insert it, so two processes racing cannot both start.
//! Step names and outcomes are stored as text; `crate::update` owns their meaning.

use super::{NewDelivery, Store, StoreError, from_json, to_json};
use serde::Serialize;
use sqlx::Row;

/// This module's migration, appended to the store's list.
pub(crate) const MIGRATION: &str = "CREATE TABLE updates (
        id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, target TEXT NOT NULL,
        reason TEXT NOT NULL, options TEXT NOT NULL, state TEXT NOT NULL, owner TEXT NOT NULL,
        facts TEXT NOT NULL DEFAULT '{}', started_at INTEGER NOT NULL, ended_at INTEGER);
     CREATE UNIQUE INDEX updates_one_running ON updates (service) WHERE state = 'running';
     CREATE TABLE update_steps (update_id INTEGER NOT NULL, seq INTEGER NOT NULL, step TEXT NOT NULL,
        started_at INTEGER NOT NULL, ended_at INTEGER, outcome TEXT, detail TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (update_id, seq)) WITHOUT ROWID;";

type Result<T> = std::result::Result<T, StoreError>;

/// The state of an update that has not ended.
pub const RUNNING: &str = "running";

/// A new update, as asked for.
#[derive(Debug, Clone)]
pub struct NewUpdate {
    /// The service.
    pub service: String,
    /// The image or commit asked for.
    pub target: String,
    /// Why (shown in the announcement).
    pub reason: String,
    /// The options that change the path (`--force`, `--no-backup` and its reason), as JSON.
    pub options: serde_json::Value,
    /// Who runs it: `pid@host`.
    pub owner: String,
    /// When, ms.
    pub started_at: i64,
}

/// One step as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRow {
    /// Its place in the update, from 1.
    pub seq: i64,
    /// The step's name (`deploy`).
    pub step: String,
    /// When it started, ms.
    pub started_at: i64,
    /// When it ended, ms; `None` while it runs (or if the process died in it).
    pub ended_at: Option<i64>,
    /// `ok`, `failed`, `skipped`, `interrupted`; `None` while it runs.
    pub outcome: Option<String>,
    /// What it saw: the evidence of a failure, the facts of a success.
    pub detail: String,
}

/// An update with its steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateRow {
    /// Its id.
    pub id: i64,
    /// The service.
    pub service: String,
    /// The image or commit asked for.
    pub target: String,
    /// Why.
    pub reason: String,
    /// The options, as given.
    pub options: serde_json::Value,
    /// `running` or how it ended (`succeeded`, `refused`, `aborted`, `rolled-back`,
    /// `rollback-failed`).
    pub state: String,
    /// Who runs (or ran) it: `pid@host`.
    pub owner: String,
    /// What the steps learnt that later steps need (the window's id, the version before, the
    /// deploy's id, the backup run), as JSON.
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// Start, ms.
    pub started_at: i64,
    /// End, ms.
    pub ended_at: Option<i64>,
    /// Its steps, in order.
    pub steps: Vec<StepRow>,
}

/// What `begin` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Begun {
    /// A new update with this id.
    Started(i64),
    /// The service already has an unfinished update (this one).
    Busy(Box<UpdateRow>),
}

fn update_of(r: &sqlx::sqlite::SqliteRow) -> std::result::Result<UpdateRow, sqlx::Error> {
    Ok(UpdateRow {
        id: r.get("id"),
        service: r.get("service"),
        target: r.get("target"),
        reason: r.get("reason"),
        options: from_json(r.get("options"))?,
        state: r.get("state"),
        owner: r.get("owner"),
        facts: from_json(r.get("facts"))?,
        started_at: r.get("started_at"),
        ended_at: r.get("ended_at"),
        steps: Vec::new(),
    })
}

async fn steps_of(conn: &mut sqlx::SqliteConnection, id: i64) -> std::result::Result<Vec<StepRow>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM update_steps WHERE update_id = ? ORDER BY seq")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| StepRow {
            seq: r.get("seq"),
            step: r.get("step"),
            started_at: r.get("started_at"),
            ended_at: r.get("ended_at"),
            outcome: r.get("outcome"),
            detail: r.get("detail"),
        })
        .collect())
}

/// Records a new update, unless the service has one that has not ended.
pub async fn begin(store: &Store, new: &NewUpdate) -> Result<Begun> {
    let options = to_json(&new.options).map_err(|e| store.fail(e))?;
    store
        .write(async |conn| {
            if let Some(row) = sqlx::query("SELECT * FROM updates WHERE service = ? AND state = ?")
                .bind(&new.service)
                .bind(RUNNING)
                .fetch_optional(&mut *conn)
                .await?
            {
                let mut busy = update_of(&row)?;
                busy.steps = steps_of(conn, busy.id).await?;
                return Ok(Begun::Busy(Box::new(busy)));
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO updates (service, target, reason, options, state, owner, started_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(&new.service)
            .bind(&new.target)
            .bind(&new.reason)
            .bind(&options)
            .bind(RUNNING)
            .bind(&new.owner)
            .bind(new.started_at)
            .fetch_one(&mut *conn)
            .await?;
            Ok(Begun::Started(id))
        })
        .await
}

/// Records that step `step` (number `seq`) of update `id` starts at `at`.
pub async fn step_started(store: &Store, id: i64, seq: i64, step: &str, at: i64) -> Result<()> {
    store
        .write(async |conn| {
            sqlx::query("INSERT INTO update_steps (update_id, seq, step, started_at) VALUES (?, ?, ?, ?)")
                .bind(id)
                .bind(seq)
                .bind(step)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
        .await
}

/// How a step ended, with what it learnt and any pages it queues — all in one transaction, so
/// a page is queued exactly when its step is recorded as done.
#[derive(Debug, Clone, Default)]
pub struct StepEnd {
    /// `ok`, `failed`, `skipped`, `interrupted`.
    pub outcome: String,
    /// The evidence.
    pub detail: String,
    /// Facts to merge into the update's (`window_id`, `previous_version`, …).
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// Outbox rows to queue (the `UpdateFailed` page).
    pub deliveries: Vec<NewDelivery>,
}

/// Records the end of step `seq` of update `id`.
pub async fn step_ended(store: &Store, id: i64, seq: i64, end: &StepEnd, at: i64) -> Result<()> {
    store
        .write(async |conn| {
            sqlx::query(
                "UPDATE update_steps SET ended_at = ?, outcome = ?, detail = ? WHERE update_id = ? AND seq = ?",
            )
            .bind(at)
            .bind(&end.outcome)
            .bind(&end.detail)
            .bind(id)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            if !end.facts.is_empty() {
                let text: String =
                    sqlx::query_scalar("SELECT facts FROM updates WHERE id = ?").bind(id).fetch_one(&mut *conn).await?;
                let mut facts: serde_json::Map<String, serde_json::Value> = from_json(&text)?;
                facts.extend(end.facts.clone());
                sqlx::query("UPDATE updates SET facts = ? WHERE id = ?")
                    .bind(to_json(&facts)?)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            for d in &end.deliveries {
                super::insert_delivery(conn, d, at).await?;
            }
            Ok(())
        })
        .await
}

/// Records one fact of update `id` while a step runs (a Render deploy's id, as soon as it
/// exists).
pub async fn set_fact(store: &Store, id: i64, key: &str, value: &str) -> Result<()> {
    store
        .write(async |conn| {
            sqlx::query("UPDATE updates SET facts = json_set(facts, '$.' || ?, ?) WHERE id = ?")
                .bind(key)
                .bind(value)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
        .await
}

/// Records how update `id` ended.
pub async fn finish(store: &Store, id: i64, state: &str, at: i64) -> Result<()> {
    store
        .write(async |conn| {
            sqlx::query("UPDATE updates SET state = ?, ended_at = ? WHERE id = ?")
                .bind(state)
                .bind(at)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
        .await
}

/// Hands update `id` to `owner` if it is still `previous`'s: `false` when someone else took it
/// first (two `--resume` at once).
pub async fn take_over(store: &Store, id: i64, previous: &str, owner: &str) -> Result<bool> {
    store
        .write(async |conn| {
            let changed = sqlx::query("UPDATE updates SET owner = ? WHERE id = ? AND owner = ? AND state = ?")
                .bind(owner)
                .bind(id)
                .bind(previous)
                .bind(RUNNING)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            Ok(changed == 1)
        })
        .await
}

/// Update `id` with its steps.
pub async fn get(store: &Store, id: i64) -> Result<Option<UpdateRow>> {
    let mut conn = store.pool().acquire().await.map_err(|e| store.fail(e))?;
    let Some(row) = sqlx::query("SELECT * FROM updates WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| store.fail(e))?
    else {
        return Ok(None);
    };
    let mut update = update_of(&row).map_err(|e| store.fail(e))?;
    update.steps = steps_of(&mut conn, id).await.map_err(|e| store.fail(e))?;
    Ok(Some(update))
}

/// The newest `limit` updates (all when `running_only` is false, else only unfinished ones),
/// newest first, each with its steps.
pub async fn list(store: &Store, running_only: bool, limit: i64) -> Result<Vec<UpdateRow>> {
    let mut conn = store.pool().acquire().await.map_err(|e| store.fail(e))?;
    let rows = sqlx::query("SELECT * FROM updates WHERE (? = 0 OR state = ?) ORDER BY id DESC LIMIT ?")
        .bind(running_only)
        .bind(RUNNING)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| store.fail(e))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut update = update_of(r).map_err(|e| store.fail(e))?;
        update.steps = steps_of(&mut conn, update.id).await.map_err(|e| store.fail(e))?;
        out.push(update);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(service: &str) -> NewUpdate {
        NewUpdate {
            service: service.into(),
            target: "img:v2".into(),
            reason: "monthly".into(),
            options: serde_json::json!({"force": false}),
            owner: "1@host".into(),
            started_at: 1_000,
        }
    }

    #[tokio::test]
    async fn one_running_update_per_service_and_steps_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        let Begun::Started(id) = begin(&store, &new("synapse")).await.unwrap() else { panic!("first begins") };
        let Begun::Busy(busy) = begin(&store, &new("synapse")).await.unwrap() else { panic!("second is refused") };
        assert_eq!(busy.id, id);
        assert!(matches!(begin(&store, &new("mas")).await.unwrap(), Begun::Started(_)), "another service may");
        step_started(&store, id, 1, "preflight", 1_100).await.unwrap();
        let mut facts = serde_json::Map::new();
        facts.insert("previous_version".into(), "1.0".into());
        let end = StepEnd { outcome: "ok".into(), detail: "healthy".into(), facts, deliveries: Vec::new() };
        step_ended(&store, id, 1, &end, 1_200).await.unwrap();
        step_started(&store, id, 2, "announce", 1_300).await.unwrap();
        let got = get(&store, id).await.unwrap().unwrap();
        assert_eq!(got.steps.len(), 2);
        assert_eq!(got.steps[0].outcome.as_deref(), Some("ok"));
        assert_eq!(got.steps[1].ended_at, None, "a step still running has no end");
        assert_eq!(got.facts["previous_version"], "1.0");
        set_fact(&store, id, "deploy_id", "dep-1").await.unwrap();
        let got = get(&store, id).await.unwrap().unwrap();
        assert_eq!(
            (got.facts["deploy_id"].as_str(), got.facts["previous_version"].as_str()),
            (Some("dep-1"), Some("1.0"))
        );
        assert!(take_over(&store, id, "1@host", "2@host").await.unwrap());
        assert!(!take_over(&store, id, "1@host", "3@host").await.unwrap(), "only the current owner hands over");
        finish(&store, id, "succeeded", 2_000).await.unwrap();
        assert!(matches!(begin(&store, &new("synapse")).await.unwrap(), Begun::Started(_)), "ended: a new one may");
        assert_eq!(list(&store, false, 10).await.unwrap().len(), 3);
        assert_eq!(list(&store, true, 10).await.unwrap().len(), 2);
    }
}
