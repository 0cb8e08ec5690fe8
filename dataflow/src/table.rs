//! CDC tables: the plan of a table (which columns are keys, sequence and stored), and the
//! timely sinks that turn an epoch's changes into Parquet files — the bucketed table sink and
//! the append-only quarantine sink. Their file actions go to the committer (see `commit.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tidewater_connectors::delta::{table_files, write_parquet, FileAction};
use tidewater_connectors::types::{Column, ColumnType, Datum, Op, Row, Schema};
use tidewater_operators::{Change, EpochStash};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::{PipelineConfig, TableConfig};
use crate::metrics::Metrics;
use crate::{Key, Seq, TidewaterError};

/// Name of the quarantine table.
pub const QUARANTINE: &str = "_quarantine";

/// The columns of the `_quarantine` table.
pub fn quarantine_columns() -> Vec<Column> {
    ["table", "source", "position", "raw", "reason"]
        .iter()
        .map(|n| Column {
            name: n.to_string(),
            ty: ColumnType::String,
        })
        .chain(std::iter::once(Column {
            name: "epoch".into(),
            ty: ColumnType::Int64,
        }))
        .collect()
}

/// A record that could not be applied, with where it came from and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRow {
    /// The table the record was meant for.
    pub table: String,
    /// The source name.
    pub source: String,
    /// Where in the source: `<file>:<byte offset>` or `generator:<index>`.
    pub position: String,
    /// The raw record (lossy UTF-8, cut at 1 MiB).
    pub raw: String,
    /// Why it was quarantined.
    pub reason: String,
}

/// Raw records longer than this are cut in the quarantine table.
const MAX_RAW: usize = 1 << 20;

/// How a table's records are keyed, sequenced, stored and bucketed.
#[derive(Clone, Debug)]
pub struct TablePlan {
    /// Table name.
    pub name: String,
    /// Source name.
    pub source: String,
    /// Indices of the key columns in the source schema.
    pub key_idx: Vec<usize>,
    /// Names of the key columns.
    pub key_names: Vec<String>,
    /// Index of the sequence column in the source schema.
    pub seq_idx: usize,
    /// Name of the sequence column.
    pub seq_name: String,
    /// Indices of the stored columns in the source schema.
    pub stored_idx: Vec<usize>,
    /// The stored columns (the table's Delta schema): data columns, plus the sequence column
    /// when it is a metadata column.
    pub stored: Vec<Column>,
    /// Number of hash buckets.
    pub buckets: u32,
    /// Directory of the Delta table.
    pub dir: PathBuf,
}

impl TablePlan {
    /// Plans a table over its source's schema; names a missing key or sequence column.
    pub fn new(
        cfg: &PipelineConfig,
        t: &TableConfig,
        schema: &Schema,
    ) -> Result<Self, TidewaterError> {
        let col = |name: &str, key: &str| {
            schema.index_of(name).ok_or_else(|| TidewaterError::Config {
                key: format!("table `{}`.{key}", t.name),
                message: format!(
                    "column `{name}` is not in the records of source `{}` (columns: {})",
                    t.from,
                    schema
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        };
        let key_idx = t
            .keys
            .iter()
            .map(|k| col(k, "keys"))
            .collect::<Result<Vec<_>, _>>()?;
        let seq_idx = col(&t.sequence_by, "sequence_by")?;
        let mut stored_idx: Vec<usize> = (0..schema.data_columns).collect();
        if seq_idx >= schema.data_columns {
            stored_idx.push(seq_idx);
        }
        let stored = stored_idx
            .iter()
            .map(|i| schema.columns[*i].clone())
            .collect();
        Ok(TablePlan {
            name: t.name.clone(),
            source: t.from.clone(),
            key_idx,
            key_names: t.keys.clone(),
            seq_idx,
            seq_name: t.sequence_by.clone(),
            stored_idx,
            stored,
            buckets: cfg.pipeline.buckets,
            dir: cfg.pipeline.lakehouse.join(&t.name),
        })
    }

    /// The bucket of a key.
    pub fn bucket(&self, key: &Key) -> u32 {
        (xxh3_64(key) % self.buckets as u64) as u32
    }

    /// Turns a parsed record into a change, or names why it cannot be applied.
    pub fn change(&self, op: Op, row: Row) -> Result<Change<Key, Seq, Row>, String> {
        let mut key = Vec::with_capacity(16);
        for (i, name) in self.key_idx.iter().zip(&self.key_names) {
            let d = &row[*i];
            if d.is_null() {
                return Err(format!("key column `{name}` is null or missing"));
            }
            d.encode_key(&mut key);
        }
        let seq = &row[self.seq_idx];
        if seq.is_null() {
            return Err(format!(
                "sequence column `{}` is null or missing",
                self.seq_name
            ));
        }
        let seq = Seq(seq.clone());
        if op == Op::Delete {
            return Ok(Change {
                key,
                seq,
                fingerprint: 0,
                value: None,
            });
        }
        let mut row = row;
        let stored: Row = if self.stored_idx.len() == row.len() {
            row
        } else {
            self.stored_idx
                .iter()
                .map(|i| std::mem::replace(&mut row[*i], Datum::Null))
                .collect()
        };
        let mut enc = Vec::with_capacity(256);
        for d in &stored {
            d.encode_key(&mut enc);
        }
        Ok(Change {
            key,
            seq,
            fingerprint: xxh3_64(&enc),
            value: Some(stored),
        })
    }

    /// A quarantine row for a bad record of this table.
    pub fn quarantine(&self, position: String, line: &[u8], reason: String) -> QuarantineRow {
        let raw = &line[..line.len().min(MAX_RAW)];
        QuarantineRow {
            table: self.name.clone(),
            source: self.source.clone(),
            position,
            raw: String::from_utf8_lossy(raw).into_owned(),
            reason,
        }
    }
}

/// A message to the committer: the file actions of one table for one epoch from one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMsg {
    /// The table.
    pub table: String,
    /// Files added and removed.
    pub actions: Vec<FileAction>,
    /// Keys upserted in this epoch.
    pub upserted: u64,
    /// Keys deleted in this epoch.
    pub deleted: u64,
}

/// One bucket of a keyed table on its owning worker.
#[derive(Default)]
struct Bucket {
    rows: BTreeMap<Key, Row>,
    file: Option<(String, i64)>,
}

/// The keyed-table sink: keeps each bucket's rows, rewrites the Parquet file of every bucket
/// that changed in an epoch, and sends the add/remove actions to the committer.
///
/// `resume` is the last epoch the table has committed (restart): epochs up to it are replayed
/// into the rows only — no file, no commit message.
pub fn table_sink<'scope>(
    changes: StreamVec<'scope, u64, (Key, Option<Row>)>,
    plan: Arc<TablePlan>,
    metrics: Arc<Metrics>,
    resume: Option<u64>,
) -> StreamVec<'scope, u64, CommitMsg> {
    changes.unary_frontier(
        Pipeline,
        &format!("TableSink({})", plan.name),
        move |_cap, _info| {
            let mut pending: EpochStash<(Key, Option<Row>)> = EpochStash::new();
            let mut buckets: HashMap<u32, Bucket> = HashMap::new();
            // Restart: the bucket files of the table as committed, so that the first new
            // epoch removes the file it replaces.
            if resume.is_some() {
                match committed_bucket_files(&plan) {
                    Ok(files) => {
                        for (b, file) in files {
                            buckets.entry(b).or_default().file = Some(file);
                        }
                    }
                    Err(e) => metrics.fail(e),
                }
            }
            move |(input, frontier), output| {
                pending.stash(input, output.output_index());
                while let Some((cap, changes)) = pending.pop_complete(frontier) {
                    let epoch = *cap.time();
                    let mut dirty = std::collections::BTreeSet::new();
                    let (mut upserted, mut deleted) = (0u64, 0u64);
                    for (key, value) in changes {
                        let b = plan.bucket(&key);
                        let bucket = buckets.entry(b).or_default();
                        match value {
                            Some(row) => {
                                upserted += 1;
                                if bucket.rows.insert(key, row).is_none() {
                                    metrics.table_rows.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            None => {
                                deleted += 1;
                                if bucket.rows.remove(&key).is_some() {
                                    metrics.table_rows.fetch_sub(1, Ordering::Relaxed);
                                }
                            }
                        }
                        dirty.insert(b);
                    }
                    // Restart: this epoch is already in the Delta table; its changes only
                    // rebuilt the rows above.
                    if resume.is_some_and(|r| epoch <= r) {
                        continue;
                    }
                    let mut actions = Vec::new();
                    for b in dirty {
                        let bucket = buckets.get_mut(&b).expect("dirty bucket exists");
                        if let Some((path, size)) = bucket.file.take() {
                            actions.push(FileAction::Remove { path, size });
                        }
                        if !bucket.rows.is_empty() {
                            let name =
                                format!("part-{epoch:08}-b{b:05}-{}.parquet", uuid::Uuid::new_v4());
                            let rows: Vec<&Row> = bucket.rows.values().collect();
                            match write_parquet(&plan.dir, &name, &plan.stored, &rows) {
                                Ok(add) => {
                                    bucket.file = Some((add.path.clone(), add.size));
                                    actions.push(FileAction::Add(add));
                                }
                                Err(e) => {
                                    metrics.fail(format!("table `{}`: {e}", plan.name));
                                    return;
                                }
                            }
                        }
                    }
                    if !actions.is_empty() {
                        output.session(&cap).give(CommitMsg {
                            table: plan.name.clone(),
                            actions,
                            upserted,
                            deleted,
                        });
                    }
                }
            }
        },
    )
}

/// The bucket files of a keyed table's newest snapshot (restart), by bucket number, read from
/// the file names the sink writes (`part-<epoch>-b<bucket>-<uuid>.parquet`).
fn committed_bucket_files(plan: &TablePlan) -> Result<HashMap<u32, (String, i64)>, String> {
    let files = table_files(&plan.dir).map_err(|e| format!("table `{}`: {e}", plan.name))?;
    let mut out = HashMap::new();
    for (path, size) in files {
        let bucket = path
            .strip_prefix("part-")
            .and_then(|rest| rest.split('-').nth(1))
            .and_then(|b| b.strip_prefix('b'))
            .and_then(|b| b.parse::<u32>().ok())
            .filter(|b| *b < plan.buckets);
        let Some(b) = bucket else {
            return Err(format!(
                "table `{}`: cannot resume: file `{path}` is not a bucket file of {} buckets",
                plan.name, plan.buckets
            ));
        };
        if let Some((other, _)) = out.insert(b, (path.clone(), size)) {
            return Err(format!(
                "table `{}`: cannot resume: bucket {b} has two files (`{other}`, `{path}`)",
                plan.name
            ));
        }
    }
    Ok(out)
}

/// The quarantine sink: one Parquet file per worker per epoch with that epoch's bad records.
/// `resume` is the last epoch `_quarantine` has committed: bad records of epochs up to it are
/// already in the table and are not written again (restart).
pub fn quarantine_sink<'scope>(
    bad: StreamVec<'scope, u64, QuarantineRow>,
    lakehouse: PathBuf,
    worker: usize,
    metrics: Arc<Metrics>,
    resume: Option<u64>,
) -> StreamVec<'scope, u64, CommitMsg> {
    let dir = lakehouse.join(QUARANTINE);
    let columns = quarantine_columns();
    bad.unary_frontier(Pipeline, "QuarantineSink", move |_cap, _info| {
        let mut pending: EpochStash<QuarantineRow> = EpochStash::new();
        move |(input, frontier), output| {
            pending.stash(input, output.output_index());
            while let Some((cap, mut rows)) = pending.pop_complete(frontier) {
                let epoch = *cap.time();
                if rows.is_empty() || resume.is_some_and(|r| epoch <= r) {
                    continue;
                }
                rows.sort_by(|a, b| (&a.source, &a.position).cmp(&(&b.source, &b.position)));
                metrics
                    .quarantined
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                let rows: Vec<Row> = rows
                    .into_iter()
                    .map(|q| {
                        vec![
                            Datum::Str(q.table),
                            Datum::Str(q.source),
                            Datum::Str(q.position),
                            Datum::Str(q.raw),
                            Datum::Str(q.reason),
                            Datum::Int(epoch as i64),
                        ]
                    })
                    .collect();
                let refs: Vec<&Row> = rows.iter().collect();
                let name = format!(
                    "part-{epoch:08}-w{worker:04}-{}.parquet",
                    uuid::Uuid::new_v4()
                );
                match write_parquet(&dir, &name, &columns, &refs) {
                    Ok(add) => output.session(&cap).give(CommitMsg {
                        table: QUARANTINE.into(),
                        actions: vec![FileAction::Add(add)],
                        upserted: rows.len() as u64,
                        deleted: 0,
                    }),
                    Err(e) => metrics.fail(format!("table `{QUARANTINE}`: {e}")),
                }
            }
        }
    })
}
