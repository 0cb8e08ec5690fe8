//! CDC tables: the plan of a table (which columns are keys, sequence and stored), and the
//! timely sinks that turn an epoch's changes into Parquet files — the bucketed table sink and
//! the append-only quarantine sink. Their file actions go to the committer (see `commit.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use deltalake::arrow::array::{BooleanArray, RecordBatch};
use deltalake::arrow::compute::{concat_batches, filter_record_batch};
use serde::{Deserialize, Serialize};
use tidewater_connectors::delta::{
    datum_at, packed_record_batch, parquet_num_rows, read_parquet, spread_new_columns, table_files,
    write_batch, write_parquet, FileAction,
};
use tidewater_connectors::formats::UnknownColumns;
use tidewater_connectors::types::{
    Column, ColumnType, Datum, NewColumns, Op, PackedRow, Row, Schema, NEW_COLUMNS, RESCUED_DATA,
};
use tidewater_operators::{Change, EpochStash};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::{OnViolation, PipelineConfig, SchemaEvolution, TableConfig};
use crate::metrics::Metrics;
use crate::source::SharedStats;
use crate::spill::{RowRef, RowSpill};
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

/// Raw records longer than this are cut in the quarantine and late tables.
const MAX_RAW: usize = 1 << 20;

/// Where a record came from, kept with the upserts of a table with a watermark until the
/// watermark gate has decided on them, so that a late one's `_late` row names its input
/// position and raw text like a `_quarantine` row does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Where in the source: `<file>:<byte offset>`, `generator:<index>` or
    /// `<partition>@<offset>` (Kafka).
    pub position: String,
    /// The raw record (lossy UTF-8, cut at 1 MiB).
    pub raw: String,
}

impl Origin {
    /// The origin of the record `line` found at `position`.
    pub fn new(position: String, line: &[u8]) -> Origin {
        let raw = &line[..line.len().min(MAX_RAW)];
        Origin {
            position,
            raw: String::from_utf8_lossy(raw).into_owned(),
        }
    }
}

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
    /// `apply_as_truncates`: the records that clear the table (SCD type 1).
    pub truncates: Option<Arc<crate::sql::Expr>>,
    /// The expectations on incoming upserts, in declaration order.
    pub expectations: Vec<Expectation>,
    /// SCD type (1 or 2).
    pub scd: u8,
    /// `ignore_null_updates`.
    pub ignore_null_updates: bool,
    /// SCD type 2: positions among the stored columns of the tracked columns.
    pub tracked: Vec<usize>,
    /// `schema_evolution`.
    pub evolution: SchemaEvolution,
    /// With `add_new_columns`: the position of the hidden [`NEW_COLUMNS`] slot among the
    /// stored columns and in the source row (none when a `columns` list leaves it out).
    pub new_columns_slot: Option<(usize, usize)>,
    /// `watermark`: the position of the event-time column (a timestamp) among the stored
    /// columns, and the allowed lateness in µs.
    pub watermark: Option<(usize, i64)>,
}

/// The source schema a table's records are parsed into: the source's columns, plus for
/// `schema_evolution = "add_new_columns"` the hidden [`NEW_COLUMNS`] slot and for
/// `"rescue"` the `_rescued_data` column, as the last data column (see
/// [`tidewater_connectors::formats::UnknownColumns`]).
pub fn parse_schema(source: &Schema, evolution: SchemaEvolution) -> Schema {
    let extra = match evolution {
        SchemaEvolution::AddNewColumns => Some((NEW_COLUMNS, ColumnType::Bytes)),
        SchemaEvolution::Rescue => Some((RESCUED_DATA, ColumnType::String)),
        SchemaEvolution::Fail => None,
    };
    let mut data = source.data().to_vec();
    if let Some((name, ty)) = extra {
        if !data.iter().any(|c| c.name == name) {
            data.push(Column {
                name: name.into(),
                ty,
            });
        }
    }
    Schema::with_meta(data)
}

/// How the parser of a table treats fields its schema does not know.
pub fn unknown_columns(evolution: SchemaEvolution) -> UnknownColumns {
    match evolution {
        SchemaEvolution::AddNewColumns => UnknownColumns::Collect,
        SchemaEvolution::Rescue => UnknownColumns::Rescue,
        SchemaEvolution::Fail => UnknownColumns::Reject,
    }
}

/// Name of the SCD type 2 column with the start of a version.
pub const START_AT: &str = "__start_at";
/// Name of the SCD type 2 column with the end of a version (null: the current version).
pub const END_AT: &str = "__end_at";

/// One `[[table.expect]]`, compiled.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// Its name.
    pub name: String,
    /// The condition as written.
    pub text: String,
    /// The compiled condition.
    pub condition: Arc<crate::sql::Expr>,
    /// What a violation does.
    pub on_violation: OnViolation,
}

/// What becomes of a parsed record of a table.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A change to apply (an upsert or a delete).
    Change(Change<Key, Seq, PackedRow>),
    /// `apply_as_truncates`: clears the table as of this sequence value.
    Truncate(Seq),
    /// Dropped by an expectation (`on_violation = "drop"`).
    Dropped,
    /// An upsert that carries columns the source schema does not have
    /// (`schema_evolution = "add_new_columns"`): applied once its epoch's new columns are
    /// agreed on (see [`gate_new_columns`]).
    Evolving(Change<Key, Seq, PackedRow>),
}

/// Why a parsed record is not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Bad input or an expectation with `on_violation = "quarantine"`: a `_quarantine` row
    /// with this reason.
    Quarantine(String),
    /// An expectation with `on_violation = "fail"` (its index): the pipeline stops.
    Fail(usize),
    /// `schema_evolution = "fail"` and the record has a field the schema does not know
    /// (the reason names it): the pipeline stops.
    SchemaFail(String),
}

/// Per-epoch counts of one table on one worker (summed over workers by the committer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    /// Records read for the table (every line or message, bad ones included).
    pub read: u64,
    /// Records that went to `_quarantine` (bad input, or a quarantining expectation).
    pub quarantined: u64,
    /// Records dropped by an expectation.
    pub dropped: u64,
    /// Records that became a change (an upsert or delete of a key) for the apply operator.
    pub changes: u64,
    /// Keys whose state the apply operator advanced (one per key and epoch, however many of
    /// the epoch's changes it had). `changes - advanced` records were stale (older than the
    /// key's state), duplicates, or superseded by a newer record of the same epoch.
    pub advanced: u64,
    /// Per expectation (declaration order): records that passed, records that violated it.
    pub expectations: Vec<(u64, u64)>,
    /// Upserts later than the watermark, sent to `_late` (tables with a watermark).
    pub late: u64,
    /// The watermark after the epoch, µs (tables with a watermark; the same on every
    /// worker that saw records of the epoch).
    pub watermark: Option<i64>,
}

impl TableStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &TableStats) {
        self.read += other.read;
        self.quarantined += other.quarantined;
        self.dropped += other.dropped;
        self.changes += other.changes;
        self.advanced += other.advanced;
        self.late += other.late;
        self.watermark = self.watermark.max(other.watermark);
        if self.expectations.len() < other.expectations.len() {
            self.expectations.resize(other.expectations.len(), (0, 0));
        }
        for (a, b) in self.expectations.iter_mut().zip(&other.expectations) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }

    /// Whether every count is zero.
    pub fn is_empty(&self) -> bool {
        *self
            == TableStats {
                expectations: self.expectations.iter().map(|_| (0, 0)).collect(),
                ..Default::default()
            }
    }
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
        let mut stored_idx: Vec<usize> = match t.selected_columns() {
            Some(list) => list
                .iter()
                .map(|c| col(c, "columns"))
                .collect::<Result<_, _>>()?,
            None => {
                let mut v: Vec<usize> = (0..schema.data_columns).collect();
                if !v.contains(&seq_idx) {
                    v.push(seq_idx);
                }
                for c in &t.except_columns {
                    let i = col(c, "except_columns")?;
                    if key_idx.contains(&i) {
                        return Err(TidewaterError::Config {
                            key: format!("table `{}`.except_columns", t.name),
                            message: format!("`{c}` is a key column; keys are always stored"),
                        });
                    }
                    v.retain(|x| *x != i);
                }
                v
            }
        };
        for (pos, i) in key_idx.iter().enumerate() {
            if !stored_idx.contains(i) {
                stored_idx.insert(pos.min(stored_idx.len()), *i);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        stored_idx.retain(|i| seen.insert(*i));
        let key_stored: Vec<usize> = key_idx
            .iter()
            .map(|k| {
                stored_idx
                    .iter()
                    .position(|i| i == k)
                    .expect("keys are stored")
            })
            .collect();
        let stored: Vec<Column> = stored_idx
            .iter()
            .map(|i| schema.columns[*i].clone())
            .collect();
        let condition = |text: &str, what: &str| {
            crate::sql::compile_predicate(text, schema)
                .map(Arc::new)
                .map_err(|e| e.into_config(format!("table `{}`.{what}", t.name)))
        };
        let expectations = t
            .expect
            .iter()
            .map(|x| {
                Ok(Expectation {
                    name: x.name.clone(),
                    text: x.condition.clone(),
                    condition: condition(&x.condition, &format!("expect `{}`", x.name))?,
                    on_violation: x.on_violation,
                })
            })
            .collect::<Result<Vec<_>, TidewaterError>>()?;
        let stored_pos = |c: &str, what: &str| {
            stored
                .iter()
                .position(|x| x.name == c)
                .ok_or_else(|| TidewaterError::Config {
                    key: format!("table `{}`.{what}", t.name),
                    message: format!("`{c}` is not a stored column of the table"),
                })
        };
        let seq_stored = stored_idx.iter().position(|i| *i == seq_idx);
        let tracked: Vec<usize> = if t.scd != 2 {
            Vec::new()
        } else if let Some(list) = &t.track_history_columns {
            list.iter()
                .map(|c| stored_pos(c, "track_history_columns"))
                .collect::<Result<_, _>>()?
        } else {
            let except = t
                .track_history_except
                .iter()
                .flatten()
                .map(|c| stored_pos(c, "track_history_except"))
                .collect::<Result<Vec<_>, _>>()?;
            (0..stored.len())
                .filter(|p| {
                    !key_stored.contains(p) && Some(*p) != seq_stored && !except.contains(p)
                })
                .collect()
        };
        if t.scd == 2 {
            for reserved in [START_AT, END_AT] {
                if stored.iter().any(|c| c.name == reserved) {
                    return Err(TidewaterError::Config {
                        key: format!("table `{}`.scd", t.name),
                        message: format!(
                            "an scd = 2 table adds the column `{reserved}`; the records already have one (leave it out with except_columns)"
                        ),
                    });
                }
            }
        }
        let watermark = match &t.watermark {
            Some(w) => {
                let pos = stored_pos(&w.column, "watermark.column")?;
                if stored[pos].ty != ColumnType::Timestamp {
                    return Err(TidewaterError::Config {
                        key: format!("table `{}`.watermark.column", t.name),
                        message: format!(
                            "`{}` is {}, not a timestamp (declare it: columns = {{ {} = \"timestamp\" }}, \
                             for epoch milliseconds)",
                            w.column, stored[pos].ty, w.column
                        ),
                    });
                }
                let lateness =
                    w.lateness_micros(&format!("table `{}`.watermark.allowed_lateness", t.name))?;
                Some((pos, lateness))
            }
            None => None,
        };
        let new_columns_slot = stored_idx
            .iter()
            .position(|i| schema.columns[*i].name == NEW_COLUMNS)
            .filter(|_| t.schema_evolution == SchemaEvolution::AddNewColumns)
            .map(|p| (p, stored_idx[p]));
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
                .map(|text| condition(text, "apply_as_deletes"))
                .transpose()?,
            truncates: t
                .apply_as_truncates
                .as_deref()
                .map(|text| condition(text, "apply_as_truncates"))
                .transpose()?,
            expectations,
            scd: t.scd,
            ignore_null_updates: t.ignore_null_updates,
            tracked,
            evolution: t.schema_evolution,
            new_columns_slot,
            watermark,
        })
    }

    /// The storage plan of a view (see `view.rs`): its output columns stored as they are,
    /// bucketed by the key columns at `keys` (positions among `columns`), without sequence,
    /// conditions or schema evolution.
    pub fn for_view(
        name: &str,
        dir: PathBuf,
        columns: Vec<Column>,
        keys: Vec<usize>,
        buckets: u32,
    ) -> TablePlan {
        TablePlan {
            name: name.to_string(),
            source: String::new(),
            key_names: keys.iter().map(|k| columns[*k].name.clone()).collect(),
            key_idx: keys.clone(),
            seq_idx: 0,
            seq_name: String::new(),
            stored_idx: (0..columns.len()).collect(),
            key_stored: keys,
            stored: columns,
            buckets,
            dir,
            deletes: None,
            truncates: None,
            expectations: Vec::new(),
            scd: 1,
            ignore_null_updates: false,
            tracked: Vec::new(),
            evolution: SchemaEvolution::Fail,
            new_columns_slot: None,
            watermark: None,
        }
    }

    /// The columns of the Delta table at start: the row layout of [`TablePlan::table_columns`]
    /// without the hidden [`NEW_COLUMNS`] slot (columns added during the run are appended).
    pub fn delta_columns(&self, layout: &[Column]) -> Vec<Column> {
        let mut cols = layout.to_vec();
        if let Some((p, _)) = self.new_columns_slot {
            cols.remove(p);
        }
        cols
    }

    /// The columns a record carries in its [`NEW_COLUMNS`] slot (names and types).
    pub fn new_columns_of(&self, row: &Row) -> Vec<Column> {
        match self.new_columns_slot.and_then(|(_, i)| row.get(i)) {
            Some(Datum::Bytes(b)) => NewColumns::decode(b)
                .into_iter()
                .map(|(name, ty, _)| Column { name, ty })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The columns of the Delta table: the stored columns, and for SCD type 2 `__start_at`
    /// and `__end_at` typed like the sequence column.
    pub fn table_columns(&self, schema: &Schema) -> Vec<Column> {
        let mut cols = self.stored.clone();
        if self.scd == 2 {
            let ty = schema.columns[self.seq_idx].ty;
            cols.push(Column {
                name: START_AT.into(),
                ty,
            });
            cols.push(Column {
                name: END_AT.into(),
                ty,
            });
        }
        cols
    }

    /// What a checkpoint of this table's operator state must match: the key columns, then a
    /// marker of the state's kind (`#scd2`, `#ignore_null_updates`) when not plain SCD type 1.
    pub fn state_signature(&self) -> Vec<String> {
        let mut v = self.key_names.clone();
        if self.scd == 2 {
            v.push("#scd2".into());
        } else if self.ignore_null_updates {
            v.push("#ignore_null_updates".into());
        }
        v
    }

    /// The bucket of a key.
    pub fn bucket(&self, key: &Key) -> u32 {
        (xxh3_64(key.as_slice()) % self.buckets as u64) as u32
    }

    /// Turns a parsed record into a change, or names why it cannot be applied. The stored
    /// columns are packed into one buffer whose hash is the change's fingerprint; `buf` is
    /// scratch space reused across calls.
    ///
    /// Truncates (`apply_as_truncates`) need no key. Expectations are checked on upserts only
    /// (a delete's record is often only its key), counted in `stats`.
    pub fn change(
        &self,
        op: Op,
        row: &Row,
        buf: &mut Vec<u8>,
        stats: &mut TableStats,
    ) -> Result<Outcome, Rejected> {
        let seq = &row[self.seq_idx];
        if seq.is_null() {
            return Err(Rejected::Quarantine(format!(
                "sequence column `{}` is null or missing",
                self.seq_name
            )));
        }
        if let Some(t) = &self.truncates {
            if t.eval_predicate(row) {
                return Ok(Outcome::Truncate(Seq::new(seq.clone())));
            }
        }
        buf.clear();
        for (i, name) in self.key_idx.iter().zip(&self.key_names) {
            let d = &row[*i];
            if d.is_null() {
                return Err(Rejected::Quarantine(format!(
                    "key column `{name}` is null or missing"
                )));
            }
            d.encode_key(buf);
        }
        let key = Key::from_slice(buf);
        let seq = Seq::new(seq.clone());
        let delete = match &self.deletes {
            Some(condition) => condition.eval_predicate(row),
            None => op == Op::Delete,
        };
        if delete {
            return Ok(Outcome::Change(Change {
                key,
                seq,
                fingerprint: 0,
                value: None,
            }));
        }
        if !self.expectations.is_empty() {
            if stats.expectations.len() < self.expectations.len() {
                stats.expectations.resize(self.expectations.len(), (0, 0));
            }
            let mut verdict = None;
            for (i, x) in self.expectations.iter().enumerate() {
                if x.condition.eval_predicate(row) {
                    stats.expectations[i].0 += 1;
                    continue;
                }
                stats.expectations[i].1 += 1;
                // The strongest action among the violated expectations wins: fail, then
                // quarantine, then drop (warn only counts).
                let rank = |a: OnViolation| match a {
                    OnViolation::Warn => 0,
                    OnViolation::Drop => 1,
                    OnViolation::Quarantine => 2,
                    OnViolation::Fail => 3,
                };
                if x.on_violation != OnViolation::Warn
                    && verdict.is_none_or(|(_, a)| rank(x.on_violation) > rank(a))
                {
                    verdict = Some((i, x.on_violation));
                }
            }
            match verdict {
                Some((i, OnViolation::Fail)) => return Err(Rejected::Fail(i)),
                Some((i, OnViolation::Quarantine)) => {
                    let x = &self.expectations[i];
                    return Err(Rejected::Quarantine(format!(
                        "expectation `{}` violated: {}",
                        x.name, x.text
                    )));
                }
                Some((_, _)) => return Ok(Outcome::Dropped),
                None => {}
            }
        }
        if let Some((pos, _)) = self.watermark {
            if row[self.stored_idx[pos]].is_null() {
                return Err(Rejected::Quarantine(format!(
                    "event-time column `{}` (the table's watermark column) is null or missing",
                    self.stored[pos].name
                )));
            }
        }
        buf.clear();
        for i in &self.stored_idx {
            row[*i].encode_key(buf);
        }
        Ok(Outcome::Change(Change {
            key,
            seq,
            fingerprint: xxh3_64(buf),
            value: Some(PackedRow::from_encoded(buf)),
        }))
    }

    /// The key of row `i` of a batch of this table's Delta columns (encoded like
    /// [`TablePlan::change`] encodes keys of parsed records).
    pub fn key_of(&self, batch: &RecordBatch, i: usize) -> Key {
        let mut key = Vec::with_capacity(16);
        for c in &self.key_stored {
            // Batches read from files have no hidden slot: later columns are one to the left.
            let at = match self.new_columns_slot {
                Some((slot, _)) if *c > slot => *c - 1,
                _ => *c,
            };
            datum_at(batch.column(at).as_ref(), self.stored[*c].ty, i).encode_key(&mut key);
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

/// A message to the committer: the file actions of one table for one epoch from one worker,
/// and the worker's counts of the epoch for the event log.
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
    /// The worker's counts of the epoch.
    pub stats: TableStats,
    /// The table's columns as of this epoch when columns were added during the run
    /// (`schema_evolution = "add_new_columns"`; empty otherwise): the committer evolves the
    /// Delta schema to them in the epoch's commit.
    pub columns: Vec<Column>,
}

/// The rows of one key that a keyed table's sink writes: SCD type 1 one row or none (deleted),
/// SCD type 2 the key's versions.
pub trait KeyRows: timely::ExchangeData {
    /// The key's rows (empty: the key has no rows).
    fn rows(&self) -> &[PackedRow];
}

impl KeyRows for Option<PackedRow> {
    fn rows(&self) -> &[PackedRow] {
        self.as_slice()
    }
}

impl KeyRows for Vec<PackedRow> {
    fn rows(&self) -> &[PackedRow] {
        self
    }
}

/// What a keyed table's sink receives per key: the rows ([`KeyRows`]) or, from a table whose
/// rows are spilled ([`RowSpill`]), where the row is; [`SinkRows::load`] turns one bucket's
/// changes into rows when the sink rewrites the bucket.
pub trait SinkRows: timely::ExchangeData {
    /// The rows it loads as.
    type Rows: KeyRows;
    /// Whether the key has no rows (deleted).
    fn is_gone(&self) -> bool;
    /// The rows of one bucket's changes of `epoch`.
    fn load(
        changes: Vec<(Key, Self)>,
        epoch: u64,
        spill: Option<&RowSpill>,
    ) -> Result<Vec<(Key, Self::Rows)>, String>;
}

macro_rules! rows_in_memory {
    ($t:ty) => {
        impl SinkRows for $t {
            type Rows = $t;
            fn is_gone(&self) -> bool {
                self.rows().is_empty()
            }
            fn load(
                changes: Vec<(Key, Self)>,
                _: u64,
                _: Option<&RowSpill>,
            ) -> Result<Vec<(Key, Self)>, String> {
                Ok(changes)
            }
        }
    };
}
rows_in_memory!(Option<PackedRow>);
rows_in_memory!(Vec<PackedRow>);

impl SinkRows for Option<RowRef> {
    type Rows = Option<PackedRow>;
    fn is_gone(&self) -> bool {
        self.is_none()
    }
    fn load(
        changes: Vec<(Key, Self)>,
        epoch: u64,
        spill: Option<&RowSpill>,
    ) -> Result<Vec<(Key, Option<PackedRow>)>, String> {
        spill
            .ok_or("spilled rows without a row spill")?
            .load(epoch, changes)
    }
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
/// file actions. The worker's counts of each epoch (`stats`, filled upstream on this worker)
/// go with the epoch's message, also for an epoch without changes here, unless the event log
/// already holds the epoch (`log_resume`).
#[allow(clippy::too_many_arguments)]
pub fn table_sink<'scope, R: SinkRows>(
    changes: StreamVec<'scope, u64, (Key, R)>,
    spill: Option<Rc<RowSpill>>,
    new_columns: StreamVec<'scope, u64, Column>,
    plan: Arc<TablePlan>,
    columns: Vec<Column>,
    files: HashMap<u32, BucketFile>,
    metrics: Arc<Metrics>,
    resume: Option<u64>,
    stats: SharedStats,
    log_resume: Option<u64>,
    added: Vec<Column>,
) -> StreamVec<'scope, u64, CommitMsg> {
    changes.binary_frontier(
        new_columns,
        Pipeline,
        Pipeline,
        &format!("TableSink({})", plan.name),
        move |cap, _info| {
            let mut pending: EpochStash<(Key, R)> = EpochStash::new();
            let mut files = files;
            // Held at the input frontier, to send the counts of epochs without changes here.
            let mut held = Some(cap);
            // Schema evolution: columns added so far (in order), and the new columns seen
            // by any worker in epochs not yet folded in (broadcast by the parse operators).
            let mut added = added;
            let mut seen: BTreeMap<u64, Vec<Column>> = BTreeMap::new();
            let delta_base = plan.delta_columns(&columns);
            move |(input, frontier), (new_input, new_frontier), output| {
                pending.stash(input, output.output_index());
                new_input.for_each_stamp(|cap, data| note_new_columns(&mut seen, cap.least(), data));
                let open = match (
                    frontier.frontier().first().copied(),
                    new_frontier.frontier().first().copied(),
                ) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                // Epochs complete here, in order: with changes (their capability) or with
                // counts only (the held capability, delayed to the epoch).
                loop {
                    let complete = |e: u64| open.is_none_or(|o| e < o);
                    let next_changes = pending.first_epoch().filter(|e| complete(*e));
                    let next_stats = stats
                        .borrow()
                        .keys()
                        .next()
                        .copied()
                        .filter(|e| complete(*e));
                    let (cap, changes) = match (next_changes, next_stats) {
                        (None, None) => break,
                        (Some(c), s) if s.is_none_or(|s| c <= s) => {
                            pending.pop_first().expect("first epoch")
                        }
                        (_, Some(s)) => match held.as_ref() {
                            Some(h) if *h.time() <= s => (h.delayed(&s), Vec::new()),
                            _ => {
                                // Cannot happen: counts arrive only while the epoch is open.
                                stats.borrow_mut().remove(&s);
                                continue;
                            }
                        },
                        (Some(_), None) => unreachable!("covered above"),
                    };
                    let epoch = *cap.time();
                    let before = added.len();
                    fold_new_columns(&delta_base, &mut added, &mut seen, epoch);
                    if added.len() > before {
                        tracing::info!(
                            table = %plan.name,
                            epoch,
                            columns = %added[before..].iter().map(|c| format!("{} {}", c.name, c.ty)).collect::<Vec<_>>().join(", "),
                            "adding columns"
                        );
                    }
                    let epoch_stats = stats.borrow_mut().remove(&epoch).unwrap_or_default();
                    crate::memory::release_free_memory();
                    let (mut upserted, mut deleted) = (0u64, 0u64);
                    let mut changes = changes;
                    for (_, value) in &changes {
                        if value.is_gone() {
                            deleted += 1;
                        } else {
                            upserted += 1;
                        }
                    }
                    let mut actions = Vec::new();
                    // Restart: an epoch already in the Delta table writes nothing (its changes
                    // were replayed only to rebuild the state of the operators upstream).
                    if resume.is_none_or(|r| epoch > r) {
                        let started = std::time::Instant::now();
                        // Grouped by bucket in place, highest bucket first, so that the buckets
                        // are split off the end in ascending order: one bucket's changes are
                        // copied at a time, not the whole epoch's.
                        changes.sort_by_cached_key(|(key, _)| std::cmp::Reverse(plan.bucket(key)));
                        let mut rewritten = 0;
                        while let Some((last, _)) = changes.last() {
                            let b = plan.bucket(last);
                            let start = changes.partition_point(|(k, _)| plan.bucket(k) > b);
                            let bucket_changes =
                                match R::load(changes.split_off(start), epoch, spill.as_deref()) {
                                    Ok(c) => c,
                                    Err(e) => {
                                        metrics.fail(e);
                                        return;
                                    }
                                };
                            rewritten += 1;
                            match rewrite_bucket(
                                &plan,
                                &columns,
                                &added,
                                epoch,
                                b,
                                files.remove(&b),
                                bucket_changes,
                            ) {
                                Ok((file, acts, delta)) => {
                                    if let Some(f) = file {
                                        files.insert(b, f);
                                    }
                                    // (The bucket's rows, Arrow arrays and Parquet buffers.)
                                    crate::memory::release_free_memory();
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
                    }
                    if let Some(s) = &spill {
                        s.release(epoch);
                    }
                    let log_stats = log_resume.is_none_or(|r| epoch > r);
                    if !actions.is_empty() || (log_stats && !epoch_stats.is_empty()) {
                        output.session(&cap).give(CommitMsg {
                            table: plan.name.clone(),
                            actions,
                            upserted,
                            deleted,
                            stats: if log_stats {
                                epoch_stats
                            } else {
                                TableStats::default()
                            },
                            columns: if added.is_empty() {
                                Vec::new()
                            } else {
                                delta_base.iter().chain(&added).cloned().collect()
                            },
                        });
                    }
                }
                match (open, held.as_mut()) {
                    (Some(o), Some(h)) if *h.time() < o => h.downgrade(&o),
                    (None, _) => {
                        held = None;
                        if let Some(s) = &spill {
                            s.release(u64::MAX);
                        }
                    }
                    _ => {}
                }
            }
        },
    )
}

/// Rewrites one bucket for an epoch: returns its new file (if not empty), the file actions
/// and the change in its row count.
fn rewrite_bucket<R: KeyRows>(
    plan: &TablePlan,
    columns: &[Column],
    added: &[Column],
    epoch: u64,
    bucket: u32,
    old: Option<BucketFile>,
    mut changes: Vec<(Key, R)>,
) -> Result<(Option<BucketFile>, Vec<FileAction>, i64), tidewater_connectors::ConnectorError> {
    changes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut actions = Vec::new();
    let mut parts: Vec<RecordBatch> = Vec::new();
    let old_rows = old.as_ref().map_or(0, |f| f.rows);
    // The file's columns: the row layout without the hidden slot, plus the added columns.
    let file_columns: Vec<Column> = plan
        .delta_columns(columns)
        .into_iter()
        .chain(added.iter().cloned())
        .collect();
    if let Some(old) = old {
        let batch = read_parquet(&plan.dir, &old.path, &file_columns)?;
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
    let new_rows: Vec<&PackedRow> = changes.iter().flat_map(|(_, v)| v.rows()).collect();
    if !new_rows.is_empty() {
        let batch = packed_record_batch(columns, &new_rows)?;
        parts.push(match plan.new_columns_slot {
            Some((slot, _)) => spread_new_columns(&batch, columns, slot, added)?,
            None => batch,
        });
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
    let add = write_batch(&plan.dir, &name, &file_columns, &batch)?;
    let file = BucketFile {
        path: add.path.clone(),
        size: add.size,
        rows: add.num_records,
    };
    actions.push(FileAction::Add(add));
    Ok((Some(file), actions, rows as i64 - old_rows))
}

/// Keeps the announced new columns of an input batch by epoch, for [`fold_new_columns`].
fn note_new_columns<'a>(
    seen: &mut BTreeMap<u64, Vec<Column>>,
    epoch: Option<&u64>,
    data: impl IntoIterator<Item = &'a mut Vec<Column>>,
) {
    if let Some(&epoch) = epoch {
        let cols = seen.entry(epoch).or_default();
        for batch in data {
            cols.append(batch);
        }
    }
}

/// Folds the new columns seen in epochs up to `epoch` into the table's added columns, in
/// epoch order: a name the table does not have is added (those of one epoch in name order);
/// seen with two types in its first epoch, it gets the type whose name sorts first. Rows whose
/// value has another type than the column's are quarantined by [`gate_new_columns`], which
/// folds the same announcements. Deterministic: every worker folds the same broadcast
/// announcements in epoch order.
pub fn fold_new_columns(
    base: &[Column],
    added: &mut Vec<Column>,
    seen: &mut BTreeMap<u64, Vec<Column>>,
    epoch: u64,
) {
    while let Some(entry) = seen.first_entry() {
        if *entry.key() > epoch {
            break;
        }
        let mut cols = entry.remove();
        cols.sort_by(|a, b| (&a.name, a.ty.name()).cmp(&(&b.name, b.ty.name())));
        for c in cols {
            if !base.iter().chain(added.iter()).any(|k| k.name == c.name) {
                added.push(c);
            }
        }
    }
}

/// An upsert carrying new columns, with its quarantine row (reason still empty) in case one
/// of them has another type than the table gives the column.
pub type EvolvingRecord = Box<(Change<Key, Seq, PackedRow>, QuarantineRow)>;

/// An upsert of a table with a watermark, with its [`Origin`].
pub type LocatedChange = (Change<Key, Seq, PackedRow>, Origin);

/// Holds the upserts that carry new columns ([`Outcome::Evolving`]) of each epoch until every
/// worker's announcements of that epoch are in, folds them like the sinks do
/// ([`fold_new_columns`]), and then passes an upsert on, or quarantines it (with its record)
/// when one of its new values has another type than the column's — a type change of a column
/// added during the run, which is never cast. Counts the quarantined ones in the epoch's
/// stats (they were counted as changes by the parser). An upsert passed on keeps its origin
/// (for the watermark gate of a table with a watermark).
pub fn gate_new_columns<'scope>(
    evolving: StreamVec<'scope, u64, EvolvingRecord>,
    announced: StreamVec<'scope, u64, Column>,
    plan: Arc<TablePlan>,
    base: Vec<Column>,
    added: Vec<Column>,
    stats: SharedStats,
) -> StreamVec<'scope, u64, Result<LocatedChange, QuarantineRow>> {
    evolving.binary_frontier(
        announced,
        Pipeline,
        Pipeline,
        &format!("NewColumnsGate({})", plan.name),
        move |_cap, _info| {
            let mut pending: EpochStash<EvolvingRecord> =
                EpochStash::new();
            let mut added = added;
            let mut seen: BTreeMap<u64, Vec<Column>> = BTreeMap::new();
            let slot = plan.new_columns_slot.map(|(p, _)| p);
            move |(input, frontier), (ann, ann_frontier), output| {
                pending.stash(input, output.output_index());
                ann.for_each_stamp(|cap, data| note_new_columns(&mut seen, cap.least(), data));
                let done = |e: u64| {
                    frontier.frontier().iter().all(|f| *f > e)
                        && ann_frontier.frontier().iter().all(|f| *f > e)
                };
                while pending.first_epoch().is_some_and(done) {
                    let (cap, changes) = pending.pop_first().expect("first epoch");
                    let epoch = *cap.time();
                    fold_new_columns(&base, &mut added, &mut seen, epoch);
                    let mut session = output.session(&cap);
                    for boxed in changes {
                        let (change, mut bad) = *boxed;
                        let carried = match (&change.value, slot) {
                            (Some(v), Some(p)) => match v.iter().nth(p) {
                                Some(tidewater_connectors::types::DatumRef::Bytes(b)) => {
                                    NewColumns::decode(b)
                                }
                                _ => Vec::new(),
                            },
                            _ => Vec::new(),
                        };
                        let clash = carried.iter().find_map(|(name, ty, _)| {
                            added
                                .iter()
                                .find(|c| &c.name == name && c.ty != *ty)
                                .map(|c| (name.clone(), *ty, c.ty))
                        });
                        match clash {
                            None => session.give(Ok((
                                change,
                                Origin {
                                    position: bad.position,
                                    raw: bad.raw,
                                },
                            ))),
                            Some((name, ty, table_ty)) => {
                                bad.reason = format!(
                                    "column `{name}` is {ty} here, but the table added it as {table_ty}; a column's type does not change"
                                );
                                let mut st = stats.borrow_mut();
                                let st = st.entry(epoch).or_default();
                                st.changes = st.changes.saturating_sub(1);
                                st.quarantined += 1;
                                session.give(Err(bad));
                            }
                        }
                    }
                }
            }
        },
    )
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

/// The quarantine sink: each epoch's bad records of this worker as one appended Parquet
/// file of `_quarantine` (rows sorted by source and position).
pub fn quarantine_sink<'scope>(
    bad: StreamVec<'scope, u64, QuarantineRow>,
    lakehouse: PathBuf,
    worker: usize,
    metrics: Arc<Metrics>,
    resume: Option<u64>,
) -> StreamVec<'scope, u64, CommitMsg> {
    let counter = metrics.clone();
    append_sink(
        bad,
        QUARANTINE,
        quarantine_columns(),
        lakehouse,
        worker,
        metrics,
        resume,
        move |mut rows: Vec<QuarantineRow>, epoch| {
            rows.sort_by(|a, b| (&a.source, &a.position).cmp(&(&b.source, &b.position)));
            counter
                .quarantined
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            rows.into_iter()
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
                .collect()
        },
    )
}

/// Name of the late-records table.
pub const LATE: &str = "_late";

/// The columns of the `_late` table.
pub fn late_columns() -> Vec<Column> {
    use ColumnType::*;
    [
        ("table", String),
        ("source", String),
        ("position", String),
        ("event_time", Timestamp),
        ("watermark", Timestamp),
        ("raw", String),
        ("epoch", Int64),
    ]
    .into_iter()
    .map(|(n, ty)| Column {
        name: n.to_string(),
        ty,
    })
    .collect()
}

impl TablePlan {
    /// A late upsert of this table as a `_late` row: where it came from (its input position
    /// and raw text, as in `_quarantine`), its event time and the watermark it was compared
    /// with.
    pub fn late_row(&self, origin: Origin, event_time: i64, watermark: i64) -> LateRow {
        LateRow {
            table: self.name.clone(),
            source: self.source.clone(),
            position: origin.position,
            event_time,
            watermark,
            raw: origin.raw,
        }
    }
}

/// The timestamp at position `pos` of a packed row (decoding only the fields up to it), if
/// that field is a timestamp.
pub fn timestamp_at(row: &PackedRow, pos: usize) -> Option<i64> {
    match row.iter().nth(pos) {
        Some(tidewater_connectors::types::DatumRef::Timestamp(t)) => Some(t),
        _ => None,
    }
}

/// A record later than its table's watermark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateRow {
    /// The table.
    pub table: String,
    /// The source.
    pub source: String,
    /// Where in the source: `<file>:<byte offset>`, `generator:<index>` or
    /// `<partition>@<offset>` (Kafka), as in `_quarantine`.
    pub position: String,
    /// The record's event time, µs.
    pub event_time: i64,
    /// The watermark it was compared with (after the epochs before its own), µs.
    pub watermark: i64,
    /// The raw record as read (lossy UTF-8, cut at 1 MiB).
    pub raw: String,
}

/// The late sink: each epoch's late records of this worker as one appended Parquet file of
/// `_late` (rows sorted by table, source and position).
pub fn late_sink<'scope>(
    late: StreamVec<'scope, u64, LateRow>,
    lakehouse: PathBuf,
    worker: usize,
    metrics: Arc<Metrics>,
    resume: Option<u64>,
) -> StreamVec<'scope, u64, CommitMsg> {
    append_sink(
        late,
        LATE,
        late_columns(),
        lakehouse,
        worker,
        metrics,
        resume,
        |mut rows: Vec<LateRow>, epoch| {
            rows.sort_by(|a, b| {
                (&a.table, &a.source, &a.position).cmp(&(&b.table, &b.source, &b.position))
            });
            rows.into_iter()
                .map(|l| {
                    vec![
                        Datum::Str(l.table),
                        Datum::Str(l.source),
                        Datum::Str(l.position),
                        Datum::Timestamp(l.event_time),
                        Datum::Timestamp(l.watermark),
                        Datum::Str(l.raw),
                        Datum::Int(epoch as i64),
                    ]
                })
                .collect()
        },
    )
}

/// An append-only reserved table's sink: each complete epoch's records of this worker (after
/// `resume`, the table's last committed epoch) become rows (`to_rows`) in one new Parquet
/// file, sent to the committer as an add action.
#[allow(clippy::too_many_arguments)]
fn append_sink<'scope, T: timely::ExchangeData>(
    records: StreamVec<'scope, u64, T>,
    table: &'static str,
    columns: Vec<Column>,
    lakehouse: PathBuf,
    worker: usize,
    metrics: Arc<Metrics>,
    resume: Option<u64>,
    to_rows: impl Fn(Vec<T>, u64) -> Vec<Row> + 'static,
) -> StreamVec<'scope, u64, CommitMsg> {
    let dir = lakehouse.join(table);
    records.unary_frontier(
        Pipeline,
        &format!("AppendSink({table})"),
        move |_cap, _info| {
            let mut pending: EpochStash<T> = EpochStash::new();
            move |(input, frontier), output| {
                pending.stash(input, output.output_index());
                while let Some((cap, records)) = pending.pop_complete(frontier) {
                    let epoch = *cap.time();
                    if records.is_empty() || resume.is_some_and(|r| epoch <= r) {
                        continue;
                    }
                    let rows = to_rows(records, epoch);
                    let refs: Vec<&Row> = rows.iter().collect();
                    let name = format!(
                        "part-{epoch:08}-w{worker:04}-{}.parquet",
                        uuid::Uuid::new_v4()
                    );
                    match write_parquet(&dir, &name, &columns, &refs) {
                        Ok(add) => output.session(&cap).give(CommitMsg {
                            table: table.into(),
                            actions: vec![FileAction::Add(add)],
                            upserted: rows.len() as u64,
                            deleted: 0,
                            stats: TableStats::default(),
                            columns: Vec::new(),
                        }),
                        Err(e) => metrics.fail(format!("table `{table}`: {e}")),
                    }
                }
            }
        },
    )
}
