//! CDC tables: the plan of a table (which columns are keys, sequence and stored), and the
//! timely sinks that turn an epoch's changes into Parquet files — the bucketed table sink and
//! the append-only quarantine sink. Their file actions go to the committer (see `commit.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use deltalake::arrow::array::{BooleanArray, RecordBatch};
use deltalake::arrow::compute::{concat_batches, filter_record_batch};
use serde::{Deserialize, Serialize};
use tidewater_connectors::delta::{
    datum_at, packed_record_batch, parquet_num_rows, read_parquet, table_files, write_batch,
    write_parquet, FileAction,
};
use tidewater_connectors::types::{Column, ColumnType, Datum, Op, PackedRow, Row, Schema};
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
    /// Positions of the key columns among the stored columns.
    pub key_stored: Vec<usize>,
    /// The stored columns (the table's Delta schema): data columns, plus the key and sequence
    /// columns when they are metadata columns.
    pub stored: Vec<Column>,
    /// Number of hash buckets.
    pub buckets: u32,
    /// Directory of the Delta table.
    pub dir: PathBuf,
    /// `apply_as_deletes`: the records that delete their key (default: `__op = 'd'`).
    pub deletes: Option<Arc<crate::sql::Expr>>,
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
        for i in key_idx.iter().chain([&seq_idx]) {
            if !stored_idx.contains(i) {
                stored_idx.push(*i);
            }
        }
        let key_stored = key_idx
            .iter()
            .map(|k| {
                stored_idx
                    .iter()
                    .position(|i| i == k)
                    .expect("keys are stored")
            })
            .collect();
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
            key_stored,
            stored,
            buckets: cfg.pipeline.buckets,
            dir: cfg.pipeline.lakehouse.join(&t.name),
            deletes: t
                .apply_as_deletes
                .as_deref()
                .map(|text| {
                    crate::sql::compile_predicate(text, schema)
                        .map(Arc::new)
                        .map_err(|e| e.into_config(format!("table `{}`.apply_as_deletes", t.name)))
                })
                .transpose()?,
        })
    }

    /// The bucket of a key.
    pub fn bucket(&self, key: &Key) -> u32 {
        (xxh3_64(key.as_slice()) % self.buckets as u64) as u32
    }

    /// Turns a parsed record into a change, or names why it cannot be applied. The stored
    /// columns are packed into one buffer whose hash is the change's fingerprint; `buf` is
    /// scratch space reused across calls.
    pub fn change(
        &self,
        op: Op,
        row: &Row,
        buf: &mut Vec<u8>,
    ) -> Result<Change<Key, Seq, PackedRow>, String> {
        buf.clear();
        for (i, name) in self.key_idx.iter().zip(&self.key_names) {
            let d = &row[*i];
            if d.is_null() {
                return Err(format!("key column `{name}` is null or missing"));
            }
            d.encode_key(buf);
        }
        let key = Key::from_slice(buf);
        let seq = &row[self.seq_idx];
        if seq.is_null() {
            return Err(format!(
                "sequence column `{}` is null or missing",
                self.seq_name
            ));
        }
        let seq = Seq(seq.clone());
        let delete = match &self.deletes {
            Some(condition) => condition.eval_predicate(row),
            None => op == Op::Delete,
        };
        if delete {
            return Ok(Change {
                key,
                seq,
                fingerprint: 0,
                value: None,
            });
        }
        buf.clear();
        for i in &self.stored_idx {
            row[*i].encode_key(buf);
        }
        Ok(Change {
            key,
            seq,
            fingerprint: xxh3_64(buf),
            value: Some(PackedRow::from_encoded(buf)),
        })
    }

    /// The key of row `i` of a batch of this table's stored columns (encoded like
    /// [`TablePlan::change`] encodes keys of parsed records).
    pub fn key_of(&self, batch: &RecordBatch, i: usize) -> Key {
        let mut key = Vec::with_capacity(16);
        for c in &self.key_stored {
            datum_at(batch.column(*c).as_ref(), self.stored[*c].ty, i).encode_key(&mut key);
        }
        Key::from_slice(&key)
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

/// The current file of a bucket: path relative to the table root, size, rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketFile {
    /// Path relative to the table root.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Number of rows.
    pub rows: i64,
}

/// The bucket a data file of a keyed table belongs to, from its name
/// (`part-<epoch>-b<bucket>-<uuid>.parquet`).
pub fn bucket_of_file(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next()?;
    let rest = name.strip_prefix("part-")?;
    let (_, rest) = rest.split_once("-b")?;
    rest.split('-').next()?.parse().ok()
}

/// The keyed-table sink, merge-on-write: it keeps no rows, only the current file of each of
/// its buckets. When epoch `e` closes, every bucket with changes in `e` is rewritten: the
/// rows of its current file whose keys did not change, plus the new rows of the epoch, go to
/// a new file (the epoch's new rows sorted by key); `Add(new)` + `Remove(old)` go to the
/// committer. A bucket that becomes empty only gets its `Remove`. Memory is one bucket's
/// rows at a time plus the epoch's changes, never the table.
///
/// `files` are the buckets' current files (from the table's Delta snapshot when resuming, see
/// [`committed_bucket_files`]); buckets of other workers are ignored by construction, since no
/// changes arrive for them. `resume` is the last epoch the table has committed: epochs up to
/// it (replayed to rebuild the state of the operators upstream) write no file and send no
/// commit message.
pub fn table_sink<'scope>(
    changes: StreamVec<'scope, u64, (Key, Option<PackedRow>)>,
    plan: Arc<TablePlan>,
    files: HashMap<u32, BucketFile>,
    metrics: Arc<Metrics>,
    resume: Option<u64>,
) -> StreamVec<'scope, u64, CommitMsg> {
    changes.unary_frontier(
        Pipeline,
        &format!("TableSink({})", plan.name),
        move |_cap, _info| {
            let mut pending: EpochStash<(Key, Option<PackedRow>)> = EpochStash::new();
            let mut files = files;
            move |(input, frontier), output| {
                pending.stash(input, output.output_index());
                while let Some((cap, changes)) = pending.pop_complete(frontier) {
                    let epoch = *cap.time();
                    let (mut upserted, mut deleted) = (0u64, 0u64);
                    let mut by_bucket: BTreeMap<u32, Vec<(Key, Option<PackedRow>)>> =
                        BTreeMap::new();
                    for (key, value) in changes {
                        match value {
                            Some(_) => upserted += 1,
                            None => deleted += 1,
                        }
                        by_bucket
                            .entry(plan.bucket(&key))
                            .or_default()
                            .push((key, value));
                    }
                    // Restart: this epoch is already in the Delta table (its changes were
                    // replayed only to rebuild the state of the operators upstream).
                    if resume.is_some_and(|r| epoch <= r) {
                        continue;
                    }
                    let started = std::time::Instant::now();
                    let rewritten = by_bucket.len();
                    let mut actions = Vec::new();
                    for (b, changes) in by_bucket {
                        match rewrite_bucket(&plan, epoch, b, files.remove(&b), changes) {
                            Ok((file, acts, delta)) => {
                                if let Some(f) = file {
                                    files.insert(b, f);
                                }
                                actions.extend(acts);
                                metrics.table_rows.fetch_add(delta, Ordering::Relaxed);
                            }
                            Err(e) => {
                                metrics.fail(format!("table `{}`: {e}", plan.name));
                                return;
                            }
                        }
                    }
                    tracing::debug!(
                        table = %plan.name,
                        epoch,
                        buckets = rewritten,
                        upserted,
                        deleted,
                        ms = started.elapsed().as_millis() as u64,
                        "rewrote bucket files"
                    );
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

/// Rewrites one bucket for an epoch: returns its new file (if not empty), the file actions
/// and the change in its row count.
fn rewrite_bucket(
    plan: &TablePlan,
    epoch: u64,
    bucket: u32,
    old: Option<BucketFile>,
    mut changes: Vec<(Key, Option<PackedRow>)>,
) -> Result<(Option<BucketFile>, Vec<FileAction>, i64), tidewater_connectors::ConnectorError> {
    changes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut actions = Vec::new();
    let mut parts: Vec<RecordBatch> = Vec::new();
    let old_rows = old.as_ref().map_or(0, |f| f.rows);
    if let Some(old) = old {
        let batch = read_parquet(&plan.dir, &old.path, &plan.stored)?;
        let changed: HashSet<&Key> = changes.iter().map(|(k, _)| k).collect();
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| Some(!changed.contains(&plan.key_of(&batch, i))))
            .collect();
        let kept = filter_record_batch(&batch, &keep).map_err(|e| parquet_err(plan, e))?;
        if kept.num_rows() > 0 {
            parts.push(kept);
        }
        actions.push(FileAction::Remove {
            path: old.path,
            size: old.size,
        });
    }
    let new_rows: Vec<&PackedRow> = changes.iter().filter_map(|(_, v)| v.as_ref()).collect();
    if !new_rows.is_empty() {
        parts.push(packed_record_batch(&plan.stored, &new_rows)?);
    }
    let rows: usize = parts.iter().map(|p| p.num_rows()).sum();
    if rows == 0 {
        return Ok((None, actions, -old_rows));
    }
    let batch = if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        concat_batches(&parts[0].schema(), &parts).map_err(|e| parquet_err(plan, e))?
    };
    let name = format!(
        "part-{epoch:08}-b{bucket:05}-{}.parquet",
        uuid::Uuid::new_v4()
    );
    let add = write_batch(&plan.dir, &name, &plan.stored, &batch)?;
    let file = BucketFile {
        path: add.path.clone(),
        size: add.size,
        rows: add.num_records,
    };
    actions.push(FileAction::Add(add));
    Ok((Some(file), actions, rows as i64 - old_rows))
}

fn parquet_err(
    plan: &TablePlan,
    e: impl std::fmt::Display,
) -> tidewater_connectors::ConnectorError {
    tidewater_connectors::ConnectorError::Parquet {
        path: plan.dir.display().to_string(),
        message: e.to_string(),
    }
}

/// The bucket files of a keyed table's newest snapshot (restart), by bucket number (from the
/// file names the sink writes), with their row counts (from the `add` statistics, else from
/// the Parquet footer).
pub fn committed_bucket_files(plan: &TablePlan) -> Result<HashMap<u32, BucketFile>, String> {
    let err = |e: &dyn std::fmt::Display| format!("table `{}`: {e}", plan.name);
    let files = table_files(&plan.dir).map_err(|e| err(&e))?;
    let mut out = HashMap::new();
    for f in files {
        let Some(b) = bucket_of_file(&f.path).filter(|b| *b < plan.buckets) else {
            return Err(format!(
                "table `{}`: cannot resume: file `{}` is not a bucket file of {} buckets",
                plan.name, f.path, plan.buckets
            ));
        };
        let rows = match f.num_records {
            Some(n) => n,
            None => parquet_num_rows(&plan.dir, &f.path).map_err(|e| err(&e))?,
        };
        let file = BucketFile {
            path: f.path.clone(),
            size: f.size,
            rows,
        };
        if let Some(other) = out.insert(b, file) {
            return Err(format!(
                "table `{}`: cannot resume: bucket {b} has two files (`{}`, `{}`)",
                plan.name, other.path, f.path
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
