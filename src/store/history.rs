//! The uptime history's SQL over the store's pool: recording (raw row + three rollups per result, one
//! transaction per flush), the heartbeat and gaps, retention, and the reads the status page
//! and the API make.

use super::{Store, StoreError, values_placeholders};
use crate::history::{Bucket, DAY_MS, RAW_RETENTION_MS, Resolution, Result as CheckResult, State, covered};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Mutex;

type Result<T> = std::result::Result<T, StoreError>;

/// Rows per multi-row statement: 8 parameters each stays far below SQLite's limit of 32,766
/// and PostgreSQL's of 65,535.
const ROWS_PER_STATEMENT: usize = 500;

/// One rollup bucket's share of a flush.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sums {
    up: i64,
    down: i64,
    maintenance: i64,
    latency_sum: i64,
    latency_max: i64,
}

/// The flush's results summed per (check id, resolution, bucket), as the upsert adds them.
fn rollup_sums(rows: &[(i64, &CheckResult)]) -> std::collections::BTreeMap<(i64, i64, i64), Sums> {
    let mut sums = std::collections::BTreeMap::<_, Sums>::new();
    for (id, r) in rows {
        for res in Resolution::ALL {
            let s = sums.entry((*id, res.code(), res.bucket(r.at_ms))).or_default();
            match r.state {
                State::Up => s.up += 1,
                State::Down => s.down += 1,
                State::Maintenance => s.maintenance += 1,
            }
            s.latency_sum += r.latency_ms;
            s.latency_max = s.latency_max.max(r.latency_ms);
        }
    }
    sums
}

/// The meta key of mxwarden's own heartbeat, ms.
const HEARTBEAT: &str = "history:heartbeat";

/// Uptime history in the store.
#[derive(Debug)]
pub struct History {
    store: Store,
    ids: Mutex<HashMap<String, i64>>,
}

impl History {
    /// History in `store` (its tables come with the store's migrations).
    pub fn new(store: Store) -> Self {
        Self { store, ids: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, check: &str) -> Option<i64> {
        self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(check).copied()
    }

    async fn id(&self, tx: &mut sqlx::AnyConnection, check: &str) -> std::result::Result<i64, sqlx::Error> {
        if let Some(id) = self.cached(check) {
            return Ok(id);
        }
        sqlx::query("INSERT INTO checks (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(check)
            .execute(&mut *tx)
            .await?;
        let id: i64 =
            sqlx::query_scalar("SELECT id FROM checks WHERE name = $1").bind(check).fetch_one(&mut *tx).await?;
        self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(check.to_string(), id);
        Ok(id)
    }

    async fn known_id(&self, check: &str) -> Result<Option<i64>> {
        if let Some(id) = self.cached(check) {
            return Ok(Some(id));
        }
        sqlx::query_scalar("SELECT id FROM checks WHERE name = $1")
            .bind(check)
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| self.store.fail(e))
    }

    /// Records results (check name, result) and beats the heartbeat, in one transaction of a
    /// few statements whatever the number of results: the raw rows in multi-row inserts, the
    /// rollups summed here first and upserted likewise. (Each statement is a round trip to
    /// SQLite's worker thread; one per result and rollup cost the daemon more CPU per probe
    /// than the probe itself.)
    pub async fn record(&self, results: &[(String, CheckResult)], now: i64) -> Result<()> {
        let dialect = self.store.dialect();
        let run = async |tx: &mut sqlx::AnyConnection| {
            let mut rows = Vec::with_capacity(results.len());
            for (check, r) in results {
                rows.push((self.id(tx, check).await?, r));
            }
            // One row per (check, time), the last one winning, in the raw rows and the rollups
            // alike (PostgreSQL refuses a statement that updates a row twice).
            let mut raw: Vec<(i64, &CheckResult)> = Vec::with_capacity(rows.len());
            let mut seen = std::collections::HashMap::with_capacity(rows.len());
            for (id, r) in &rows {
                match seen.entry((*id, r.at_ms)) {
                    std::collections::hash_map::Entry::Occupied(at) => raw[*at.get()] = (*id, *r),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(raw.len());
                        raw.push((*id, *r));
                    }
                }
            }
            for chunk in raw.chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "INSERT INTO results (check_id, at, state, latency_ms) VALUES {}
                     ON CONFLICT (check_id, at) DO UPDATE SET state = excluded.state, latency_ms = excluded.latency_ms",
                    values_placeholders(dialect, chunk.len(), 4)
                );
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                for (id, r) in chunk {
                    insert = insert.bind(*id).bind(r.at_ms).bind(r.state.code()).bind(r.latency_ms);
                }
                insert.execute(&mut *tx).await?;
            }
            let sums: Vec<((i64, i64, i64), Sums)> = rollup_sums(&raw).into_iter().collect();
            for chunk in sums.chunks(ROWS_PER_STATEMENT) {
                // CASE, not max(a, b): PostgreSQL's max is only the aggregate (its scalar one
                // is GREATEST, which SQLite lacks).
                let sql = format!(
                    "INSERT INTO rollups (check_id, res, bucket, up, down, maintenance, latency_sum, latency_max)
                     VALUES {}
                     ON CONFLICT (check_id, res, bucket) DO UPDATE SET
                       up = rollups.up + excluded.up, down = rollups.down + excluded.down,
                       maintenance = rollups.maintenance + excluded.maintenance,
                       latency_sum = rollups.latency_sum + excluded.latency_sum,
                       latency_max = CASE WHEN rollups.latency_max > excluded.latency_max
                                          THEN rollups.latency_max ELSE excluded.latency_max END",
                    values_placeholders(dialect, chunk.len(), 8)
                );
                let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                for ((id, res, bucket), s) in chunk {
                    upsert = upsert
                        .bind(*id)
                        .bind(*res)
                        .bind(*bucket)
                        .bind(s.up)
                        .bind(s.down)
                        .bind(s.maintenance)
                        .bind(s.latency_sum)
                        .bind(s.latency_max);
                }
                upsert.execute(&mut *tx).await?;
            }
            beat(tx, now).await
        };
        self.store.write(run).await
    }

    /// Beats the heartbeat.
    pub(crate) async fn heartbeat(&self, now: i64) -> Result<()> {
        self.store.write(async |conn| beat(conn, now).await).await
    }

    /// At start: records the time since the last heartbeat as a gap when it is longer than
    /// two beats (`every_ms`), and beats. Returns the gap recorded.
    pub(crate) async fn start(&self, now: i64, every_ms: i64) -> Result<Option<(i64, i64)>> {
        let last = self.store.meta(HEARTBEAT).await?.and_then(|v| v.parse::<i64>().ok());
        let gap = crate::history::gap_at_start(last, now, every_ms);
        if let Some((start, end)) = gap {
            self.store
                .write(async |conn| {
                    sqlx::query(
                        r#"INSERT INTO gaps (start, "end") VALUES ($1, $2) ON CONFLICT (start) DO UPDATE SET "end" = excluded."end""#,
                    )
                        .bind(start)
                        .bind(end)
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
                .await?;
        }
        self.heartbeat(now).await?;
        Ok(gap)
    }

    /// Deletes what is past its retention.
    pub(crate) async fn prune(&self, now: i64) -> Result<()> {
        let run = async |tx: &mut sqlx::AnyConnection| {
            sqlx::query("DELETE FROM results WHERE at < $1").bind(now - RAW_RETENTION_MS).execute(&mut *tx).await?;
            for res in Resolution::ALL {
                sqlx::query("DELETE FROM rollups WHERE res = $1 AND bucket < $2")
                    .bind(res.code())
                    .bind(res.bucket(now - res.retention_ms()))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(r#"DELETE FROM gaps WHERE "end" < $1"#)
                .bind(now - Resolution::Day.retention_ms())
                .execute(&mut *tx)
                .await
                .map(|_| ())
        };
        self.store.write(run).await
    }

    /// Times mxwarden was not running that overlap `[from, to)`.
    pub(crate) async fn gaps(&self, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query(r#"SELECT start, "end" FROM gaps WHERE "end" > $1 AND start < $2 ORDER BY start"#)
            .bind(from)
            .bind(to)
            .fetch_all(self.store.pool())
            .await
            .map_err(|e| self.store.fail(e))?;
        Ok(rows.iter().map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1))).collect())
    }

    /// Raw results of `check` in `[from, to)`, oldest first.
    pub async fn raw(&self, check: &str, from: i64, to: i64) -> Result<Vec<CheckResult>> {
        let Some(id) = self.known_id(check).await? else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT at, state, latency_ms FROM results WHERE check_id = $1 AND at >= $2 AND at < $3 ORDER BY at",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(self.store.pool())
        .await
        .map_err(|e| self.store.fail(e))?;
        Ok(rows
            .iter()
            .map(|r| CheckResult { at_ms: r.get(0), state: State::from_code(r.get(1)), latency_ms: r.get(2) })
            .collect())
    }

    /// At most `limit` raw results of `check` in `[from, to)`, oldest first, and whether more
    /// follow (the API's paged `resolution=raw`).
    pub(crate) async fn raw_page(
        &self,
        check: &str,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<(Vec<CheckResult>, bool)> {
        let Some(id) = self.known_id(check).await? else { return Ok((Vec::new(), false)) };
        let rows = sqlx::query(
            "SELECT at, state, latency_ms FROM results WHERE check_id = $1 AND at >= $2 AND at < $3 ORDER BY at LIMIT $4",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.store.pool())
        .await
        .map_err(|e| self.store.fail(e))?;
        let more = rows.len() > limit as usize;
        let results = rows
            .iter()
            .take(limit as usize)
            .map(|r| CheckResult { at_ms: r.get(0), state: State::from_code(r.get(1)), latency_ms: r.get(2) })
            .collect();
        Ok((results, more))
    }

    /// Every bucket of `res` in `[from, to)`, empty ones included, each with the share of it
    /// mxwarden was not running.
    pub async fn buckets(&self, check: &str, res: Resolution, from: i64, to: i64) -> Result<Vec<Bucket>> {
        let (first, last) = (res.bucket(from), res.bucket(to - 1));
        let mut stored: HashMap<i64, Bucket> = HashMap::new();
        if let Some(id) = self.known_id(check).await? {
            let rows = sqlx::query(
                "SELECT bucket, up, down, maintenance, latency_sum, latency_max FROM rollups
                 WHERE check_id = $1 AND res = $2 AND bucket >= $3 AND bucket <= $4",
            )
            .bind(id)
            .bind(res.code())
            .bind(first)
            .bind(last)
            .fetch_all(self.store.pool())
            .await
            .map_err(|e| self.store.fail(e))?;
            for r in rows {
                let (bucket, up, down, maintenance): (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
                let n = (up + down + maintenance).max(1);
                stored.insert(
                    bucket,
                    Bucket {
                        start_ms: bucket * res.width_ms(),
                        up,
                        down,
                        maintenance,
                        latency_avg_ms: r.get::<i64, _>(4) as f64 / n as f64,
                        latency_max_ms: r.get(5),
                        unknown: 0.0,
                    },
                );
            }
        }
        let gaps = self.gaps(first * res.width_ms(), (last + 1) * res.width_ms()).await?;
        Ok((first..=last)
            .map(|b| {
                let mut bucket =
                    stored.remove(&b).unwrap_or(Bucket { start_ms: b * res.width_ms(), ..Bucket::default() });
                bucket.unknown = covered(bucket.start_ms, bucket.start_ms + res.width_ms(), &gaps);
                bucket
            })
            .collect())
    }

    /// The last `days` UTC days up to `now`, oldest first.
    pub async fn daily(&self, check: &str, days: i64, now: i64) -> Result<Vec<Bucket>> {
        let today = Resolution::Day.bucket(now);
        self.buckets(check, Resolution::Day, (today - days + 1) * DAY_MS, (today + 1) * DAY_MS).await
    }
}

async fn beat(conn: &mut sqlx::AnyConnection, now: i64) -> std::result::Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(HEARTBEAT)
        .bind(now.to_string())
        .execute(conn)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_is_summed_per_bucket_before_it_is_upserted() {
        let minute = 60_000;
        let r = |at_ms, state, latency_ms| CheckResult { at_ms, state, latency_ms };
        let (a, b, c) =
            (r(10 * minute, State::Up, 5), r(10 * minute + 30_000, State::Down, 9), r(11 * minute, State::Up, 2));
        let rows = vec![(1, &a), (1, &b), (1, &c), (2, &a)];
        let sums = rollup_sums(&rows);
        let minute_code = Resolution::Minute.code();
        // Two results of check 1 in minute 10: one up, one down, latencies 5 and 9.
        let m10 = sums[&(1, minute_code, Resolution::Minute.bucket(10 * minute))];
        assert_eq!(m10, Sums { up: 1, down: 1, maintenance: 0, latency_sum: 14, latency_max: 9 });
        // All three in the same hour and day; check 2 apart.
        let hour = sums[&(1, Resolution::Hour.code(), Resolution::Hour.bucket(10 * minute))];
        assert_eq!((hour.up, hour.down, hour.latency_sum, hour.latency_max), (2, 1, 16, 9));
        assert_eq!(sums.len(), 2 + 1 + 1 + 3, "check 1: two minutes, one hour, one day; check 2: one of each");
    }
}
