//! The event log: the Delta table `_event_log`, one row per epoch per table (what was read,
//! applied, ignored, quarantined, each expectation's pass/fail counts, the source positions,
//! when the epoch closed and how long its commit took). The committer writes it in the same
//! commit round as the epoch, after the tables and before the epoch manifest, so it is part of
//! the consistent cut. `tidewater status` summarises it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tidewater_connectors::delta::{datum_at, read_parquet, table_files, write_parquet, FileAction};
use tidewater_connectors::types::{Column, ColumnType, Datum, Row};

use crate::config::OnViolation;
use crate::metrics::LogCounts;
use crate::table::TableStats;
use crate::TidewaterError;

/// Name of the event log table.
pub const EVENT_LOG: &str = "_event_log";

/// The columns of `_event_log`.
pub fn event_log_columns() -> Vec<Column> {
    use ColumnType::*;
    [
        ("pipeline", String),
        ("table", String),
        ("epoch", Int64),
        ("delta_version", Int64),
        ("rows_read", Int64),
        ("upserted", Int64),
        ("deleted", Int64),
        ("stale_ignored", Int64),
        ("quarantined", Int64),
        ("dropped", Int64),
        ("expectations", String),
        ("positions", String),
        ("epoch_closed_at", Timestamp),
        ("committed_at", Timestamp),
        ("commit_ms", Int64),
        ("late", Int64),
        ("watermark", Timestamp),
    ]
    .into_iter()
    .map(|(n, ty)| Column {
        name: n.to_string(),
        ty,
    })
    .collect()
}

/// The declared expectations of a table: name and action, in declaration order.
pub type ExpectationNames = Vec<(String, OnViolation)>;

/// One table's line of the event log for one epoch, before it is written.
#[derive(Clone, Debug, Default)]
pub struct EpochEntry {
    /// The Delta version of the table's commit of this epoch (none: no commit).
    pub version: Option<i64>,
    /// Keys upserted.
    pub upserted: u64,
    /// Keys deleted.
    pub deleted: u64,
    /// The counts summed over the workers.
    pub stats: TableStats,
    /// How long the table's commit took, ms.
    pub commit_ms: u64,
}

impl EpochEntry {
    /// The counts of this table's line of the event log (what `/metrics` adds up).
    pub fn counts(&self) -> LogCounts {
        LogCounts {
            rows_read: self.stats.read,
            upserted: self.upserted,
            deleted: self.deleted,
            stale: self.stats.changes.saturating_sub(self.stats.advanced),
            quarantined: self.stats.quarantined,
            dropped: self.stats.dropped,
            late: self.stats.late,
        }
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The rows of the event log for one epoch (one per table with an entry, in table order).
pub fn rows(
    pipeline: &str,
    epoch: u64,
    entries: &BTreeMap<String, EpochEntry>,
    expectations: &BTreeMap<String, ExpectationNames>,
    positions: &Value,
    closed_at: i64,
    committed_at: i64,
) -> Vec<Row> {
    entries
        .iter()
        .map(|(table, e)| {
            let names = expectations.get(table).map(Vec::as_slice).unwrap_or(&[]);
            let expect: Vec<Value> = names
                .iter()
                .enumerate()
                .map(|(i, (name, action))| {
                    let (passed, failed) = e.stats.expectations.get(i).copied().unwrap_or((0, 0));
                    json!({"name": name, "on_violation": action, "passed": passed, "failed": failed})
                })
                .collect();
            let int = |v: u64| Datum::Int(v as i64);
            let c = e.counts();
            vec![
                Datum::Str(pipeline.to_string()),
                Datum::Str(table.clone()),
                int(epoch),
                e.version.map_or(Datum::Null, Datum::Int),
                int(c.rows_read),
                int(c.upserted),
                int(c.deleted),
                int(c.stale),
                int(c.quarantined),
                int(c.dropped),
                Datum::Str(Value::Array(expect).to_string()),
                Datum::Str(positions.to_string()),
                Datum::Timestamp(closed_at),
                Datum::Timestamp(committed_at),
                int(e.commit_ms),
                int(c.late),
                e.stats.watermark.map_or(Datum::Null, Datum::Timestamp),
            ]
        })
        .collect()
}

/// Writes the event log rows of an epoch as one Parquet file; returns its add action.
pub fn write(lakehouse: &Path, epoch: u64, rows: &[Row]) -> Result<FileAction, TidewaterError> {
    let refs: Vec<&Row> = rows.iter().collect();
    let name = format!("part-{epoch:08}-{}.parquet", uuid::Uuid::new_v4());
    let add = write_parquet(
        &lakehouse.join(EVENT_LOG),
        &name,
        &event_log_columns(),
        &refs,
    )?;
    Ok(FileAction::Add(add))
}

/// One row of the event log, read back.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    /// The table.
    pub table: String,
    /// The epoch.
    pub epoch: u64,
    /// The table's Delta version of the epoch, if it committed.
    pub delta_version: Option<i64>,
    /// Records read.
    pub rows_read: u64,
    /// Keys upserted.
    pub upserted: u64,
    /// Keys deleted.
    pub deleted: u64,
    /// Stale, duplicate or superseded records.
    pub stale_ignored: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Records dropped by expectations.
    pub dropped: u64,
    /// The expectations' counts (JSON array of `{name, on_violation, passed, failed}`).
    pub expectations: Value,
    /// The epoch's source positions (JSON).
    pub positions: Value,
    /// When the committer saw the epoch complete, µs since the Unix epoch.
    pub epoch_closed_at: i64,
    /// When the epoch's commits were done, µs since the Unix epoch.
    pub committed_at: i64,
    /// How long the table's commit took, ms.
    pub commit_ms: u64,
    /// Records that went to `_late` (tables with a watermark).
    pub late: u64,
    /// The table's watermark after the epoch (µs; tables with a watermark).
    pub watermark: Option<i64>,
}

impl LogRow {
    /// The counts of this line (what `/metrics` adds up).
    pub fn counts(&self) -> LogCounts {
        LogCounts {
            rows_read: self.rows_read,
            upserted: self.upserted,
            deleted: self.deleted,
            stale: self.stale_ignored,
            quarantined: self.quarantined,
            dropped: self.dropped,
            late: self.late,
        }
    }
}

/// Reads the event log of a lakehouse (its newest snapshot), ordered by epoch and table.
pub fn read(lakehouse: &Path) -> Result<Vec<LogRow>, TidewaterError> {
    let dir = lakehouse.join(EVENT_LOG);
    let columns = event_log_columns();
    let mut out = Vec::new();
    for f in table_files(&dir)? {
        let batch = read_parquet(&dir, &f.path, &columns)?;
        for i in 0..batch.num_rows() {
            let d = |c: usize| datum_at(batch.column(c).as_ref(), columns[c].ty, i);
            let int = |c: usize| match d(c) {
                Datum::Int(v) | Datum::Timestamp(v) => v,
                _ => 0,
            };
            let text = |c: usize| match d(c) {
                Datum::Str(s) => s,
                _ => String::new(),
            };
            let json = |c: usize| serde_json::from_str(&text(c)).unwrap_or(Value::Null);
            out.push(LogRow {
                table: text(1),
                epoch: int(2) as u64,
                delta_version: match d(3) {
                    Datum::Int(v) => Some(v),
                    _ => None,
                },
                rows_read: int(4) as u64,
                upserted: int(5) as u64,
                deleted: int(6) as u64,
                stale_ignored: int(7) as u64,
                quarantined: int(8) as u64,
                dropped: int(9) as u64,
                expectations: json(10),
                positions: json(11),
                epoch_closed_at: int(12),
                committed_at: int(13),
                commit_ms: int(14) as u64,
                late: int(15) as u64,
                watermark: match d(16) {
                    Datum::Timestamp(v) => Some(v),
                    _ => None,
                },
            });
        }
    }
    out.sort_by(|a, b| (a.epoch, &a.table).cmp(&(b.epoch, &b.table)));
    Ok(out)
}

/// A short human summary of the event log: per table, the last epoch and its Delta version,
/// totals, the rate over the logged time, quarantine and expectation counts.
pub fn status(lakehouse: &Path) -> Result<String, TidewaterError> {
    let rows = read(lakehouse)?;
    if rows.is_empty() {
        return Ok(format!(
            "no event log in {} (no epoch committed yet)\n",
            lakehouse.display()
        ));
    }
    #[derive(Default)]
    struct Sum {
        epochs: u64,
        last_epoch: u64,
        version: Option<i64>,
        read: u64,
        upserted: u64,
        deleted: u64,
        stale: u64,
        quarantined: u64,
        dropped: u64,
        late: u64,
        first_at: Option<i64>,
        last_at: i64,
        expect: BTreeMap<String, (String, u64, u64)>,
    }
    let mut by_table: BTreeMap<String, Sum> = BTreeMap::new();
    for r in &rows {
        let s = by_table.entry(r.table.clone()).or_default();
        s.epochs += 1;
        s.last_epoch = s.last_epoch.max(r.epoch);
        if r.delta_version.is_some() {
            s.version = s.version.max(r.delta_version);
        }
        s.read += r.rows_read;
        s.upserted += r.upserted;
        s.deleted += r.deleted;
        s.stale += r.stale_ignored;
        s.quarantined += r.quarantined;
        s.dropped += r.dropped;
        s.late += r.late;
        s.first_at = Some(
            s.first_at
                .map_or(r.epoch_closed_at, |f| f.min(r.epoch_closed_at)),
        );
        s.last_at = s.last_at.max(r.committed_at);
        for x in r.expectations.as_array().into_iter().flatten() {
            let name = x["name"].as_str().unwrap_or("?").to_string();
            let e = s
                .expect
                .entry(name)
                .or_insert_with(|| (x["on_violation"].as_str().unwrap_or("?").to_string(), 0, 0));
            let (passed, failed) = (
                x["passed"].as_u64().unwrap_or(0),
                x["failed"].as_u64().unwrap_or(0),
            );
            if x["name"] == r.table.as_str() {
                // A test view's count is its violations at that cut: keep the newest.
                if r.epoch == s.last_epoch {
                    (e.1, e.2) = (passed, failed);
                }
            } else {
                e.1 += passed;
                e.2 += failed;
            }
        }
    }
    let mut out = format!("event log of {}\n", lakehouse.display());
    out.push_str(&format!(
        "{:<24} {:>10} {:>8} {:>12} {:>10} {:>10} {:>10} {:>11} {:>8} {:>8} {:>12}\n",
        "table",
        "last epoch",
        "version",
        "rows read",
        "upserted",
        "deleted",
        "stale",
        "quarantined",
        "dropped",
        "late",
        "rows/s"
    ));
    for (table, s) in &by_table {
        let secs = (s.last_at - s.first_at.unwrap_or(s.last_at)) as f64 / 1e6;
        let rate = if secs > 0.0 {
            format!("{:.0}", s.read as f64 / secs)
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{:<24} {:>10} {:>8} {:>12} {:>10} {:>10} {:>10} {:>11} {:>8} {:>8} {:>12}\n",
            table,
            s.last_epoch,
            s.version.map_or("-".into(), |v| v.to_string()),
            s.read,
            s.upserted,
            s.deleted,
            s.stale,
            s.quarantined,
            s.dropped,
            s.late,
            rate
        ));
        for (name, (action, passed, failed)) in &s.expect {
            if name == table {
                out.push_str(&format!(
                    "    test ({action}): {failed} violation(s) at epoch {}\n",
                    s.last_epoch
                ));
            } else {
                out.push_str(&format!(
                    "    expectation {name} ({action}): {passed} passed, {failed} failed\n"
                ));
            }
        }
    }
    Ok(out)
}
