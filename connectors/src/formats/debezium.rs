//! Debezium JSON change records: schema resolution and the fast line parser.
//!
//! A line is one Debezium envelope, either wrapped by the Kafka Connect JSON converter
//! (`{"schema": {...}, "payload": {...}}`) or the payload object alone. [`DebeziumParser`]
//! flattens it into a [`Row`] of the source's fixed [`Schema`]: the `after` image (or `before`
//! for deletes) followed by the metadata columns (`__op`, `__lsn`, `__source_ts_ms`,
//! `__ts_ms`, `__tx_id`).
//!
//! The parser is the engine's hot loop, with two paths over the same envelope logic (`Run`)
//! and value typing (`convert`):
//!
//! - a fast path (`debezium_fast.rs`): a hand-written single-pass scanner over the line that
//!   types values straight into a preallocated row (column found by name, with a "next
//!   expected column" hint since fields usually arrive in schema order), borrows strings
//!   until the final `String`, skips what is not needed, keeps the image whose use is not yet
//!   known as a borrowed slice, and compares the schema block byte-wise against the last one
//!   seen. It gives up on anything unusual or wrong;
//! - the reference path: serde_json borrowed deserialization with `DeserializeSeed`s into the
//!   row, `&RawValue`/`IgnoredAny` for the rest, never a `serde_json::Value`. It handles every
//!   line the fast path gives up on and words the reasons of bad records.

use super::connect::{block_columns, BlockColumn};
use super::convert::{convert_raw, convert_scalar, describe, ColMode, Scalar};
use crate::error::ConnectorError;
use crate::types::{
    Column, ColumnType, Datum, NewColumns, Op, Row, Schema, META_COLUMNS, NEW_COLUMNS, RESCUED_DATA,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Outcome of parsing one line that is not bad.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// A change record: its op and its row (one Datum per schema column, schema order,
    /// meta columns filled).
    Record {
        /// The change the record makes.
        op: Op,
        /// The flattened row (`after`, or `before` for deletes, then the meta columns).
        row: Row,
    },
    /// Nothing to apply: an empty/whitespace-only line, the literal `null`, or an envelope
    /// whose payload is null (Kafka tombstone).
    Skip,
}

/// A line that cannot be applied; `reason` is a short human sentence naming the problem
/// (goes into the `_quarantine` table).
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// What is wrong with the line, e.g. ``column `customer_id`: expected int64, found string "abc"``.
    pub reason: String,
    /// The record is bad only because it has a column the fixed schema does not know (with
    /// [`UnknownColumns::Reject`]): its name. `schema_evolution = "fail"` stops on it.
    pub unknown_column: Option<String>,
}

impl BadRecord {
    fn new(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        BadRecord {
            unknown_column: unknown_column_of(&reason),
            reason,
        }
    }
}

/// The reason given for a field that is not a column of the fixed schema.
fn unknown_reason(name: &str) -> String {
    format!("column `{name}` is not in the schema")
}

/// The column named by [`unknown_reason`]'s text, if `reason` is one.
fn unknown_column_of(reason: &str) -> Option<String> {
    reason
        .strip_prefix("column `")?
        .strip_suffix("` is not in the schema")
        .map(str::to_string)
}

/// What the parser does with a field of a record's image that is not a data column of the
/// fixed schema (`schema_evolution` of the table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownColumns {
    /// The record is bad (`column `x` is not in the schema`), as is a record whose schema
    /// block names such a column.
    #[default]
    Reject,
    /// Typed (by the record's schema block, else from the JSON value: integer → int64,
    /// other number → double, string → string, boolean → boolean, object/array → string)
    /// and carried in the row's last data column, which must be [`NEW_COLUMNS`], as
    /// [`NewColumns`] bytes. Null values are left out.
    Collect,
    /// Kept as raw JSON in the row's last data column, which must be [`RESCUED_DATA`]: a JSON
    /// object text of the fields (null values left out), null when there are none.
    Rescue,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for BadRecord {}

/// Data columns of the fixed schema, laid out for fast lookup.
#[derive(Clone, Debug)]
struct Cols {
    names: Vec<Box<str>>,
    /// Each data column's name in quotes, as it appears unescaped in JSON (`None` if it
    /// would need escapes); lets the fast path recognise the expected next member cheaply.
    quoted: Vec<Option<Box<[u8]>>>,
    types: Vec<ColumnType>,
    by_name: HashMap<Box<[u8]>, usize>,
    /// Total row width (data + meta columns).
    width: usize,
    /// Positions of `__op`, `__lsn`, `__source_ts_ms`, `__ts_ms`, `__tx_id`.
    meta: [Option<usize>; 5],
    /// What happens to unknown fields, and the row position they are collected in.
    unknown: UnknownColumns,
    extras: Option<usize>,
}

impl Cols {
    fn new(schema: &Schema, unknown: UnknownColumns) -> Cols {
        let mut data = schema.data();
        let slot = match unknown {
            UnknownColumns::Reject => None,
            UnknownColumns::Collect => Some(NEW_COLUMNS),
            UnknownColumns::Rescue => Some(RESCUED_DATA),
        };
        // The collecting column is the last data column and not a field name of records.
        let extras = match (slot, data.last()) {
            (Some(name), Some(last)) if last.name == name => {
                data = &data[..data.len() - 1];
                Some(data.len())
            }
            _ => None,
        };
        let unknown = if extras.is_some() {
            unknown
        } else {
            UnknownColumns::Reject
        };
        let names: Vec<Box<str>> = data.iter().map(|c| c.name.as_str().into()).collect();
        let mut by_name = HashMap::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            by_name.entry(n.as_bytes().into()).or_insert(i);
        }
        let meta = META_COLUMNS.map(|(name, _)| {
            schema.columns[schema.data_columns..]
                .iter()
                .position(|c| c.name == name)
                .map(|p| p + schema.data_columns)
        });
        let quoted = names
            .iter()
            .map(|n| {
                // A name that JSON would have to escape never matches its raw bytes.
                let plain = n.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
                plain.then(|| format!("\"{n}\"").into_bytes().into_boxed_slice())
            })
            .collect();
        Cols {
            types: data.iter().map(|c| c.ty).collect(),
            quoted,
            names,
            by_name,
            width: schema.columns.len(),
            meta,
            unknown,
            extras,
        }
    }

    /// The data column called `key`; `hint` is the column expected next.
    #[inline]
    fn find(&self, key: &[u8], hint: usize) -> Option<usize> {
        match self.names.get(hint) {
            Some(n) if n.as_bytes() == key => Some(hint),
            _ => self.by_name.get(key).copied(),
        }
    }
}

/// Member names of a Debezium `source` block in the order last seen, each quoted as it appears
/// in JSON, with what the fast path reads from it (0 nothing, 1 `lsn`, 2 `ts_ms`, 3 `txId`).
type SourceKeys = Vec<(Box<[u8]>, u8)>;

/// The last schema block seen, and what it means for the fixed schema.
#[derive(Clone, Debug)]
struct BlockCache {
    raw: Box<[u8]>,
    /// Per-data-column encodings and the block's columns unknown to the fixed schema (`None`:
    /// the block names no row struct), or why the block does not fit the fixed schema.
    result: Result<Option<BlockInfo>, String>,
}

/// What a schema block says about the fixed schema's columns and the others.
#[derive(Clone, Debug)]
struct BlockInfo {
    modes: Arc<[ColMode]>,
    /// Columns the fixed schema does not have (only kept when unknown fields are collected).
    extra: Arc<[BlockColumn]>,
}

/// Checks a schema block against the fixed schema and extracts per-column encodings.
fn block_modes(raw: &str, cols: &Cols) -> Result<Option<BlockInfo>, String> {
    let Some(block) = block_columns(raw) else {
        return Ok(None);
    };
    let mut modes = vec![ColMode::default(); cols.names.len()];
    let mut extra = Vec::new();
    for c in block {
        let Some(i) = cols.find(c.name.as_bytes(), 0) else {
            if cols.unknown == UnknownColumns::Reject {
                return Err(unknown_reason(&c.name));
            }
            extra.push(c);
            continue;
        };
        if cols.types[i] != c.ty {
            return Err(format!(
                "column `{}` changed type from {} to {}",
                c.name,
                cols.types[i].name(),
                c.ty.name()
            ));
        }
        modes[i] = c.mode;
    }
    Ok(Some(BlockInfo {
        modes: modes.into(),
        extra: extra.into(),
    }))
}

/// Parser of Debezium JSON lines into rows of a fixed schema.
///
/// Keeps a one-entry cache of the last schema block seen; clone it (or build one per
/// worker with [`DebeziumParser::new`]) to parse on several threads.
#[derive(Clone, Debug)]
pub struct DebeziumParser {
    schema: Arc<Schema>,
    cols: Cols,
    block_cache: Option<BlockCache>,
    /// A row to parse the next record into (see [`DebeziumParser::recycle`]).
    spare: Option<Row>,
    /// The member order of the last source block (the fast path predicts the next one's).
    source_keys: SourceKeys,
}

impl DebeziumParser {
    /// Fixes the schema of a source from the first lines of its stream (`sample`, up to ~1000
    /// lines, may include bad lines which are ignored).
    ///
    /// Order of precedence: (1) the Debezium `schema` block of the first envelope that has
    /// one (field types of the `after` struct, or `before`); (2) else the declared columns:
    /// declared types override inferred ones, declared columns missing from the sample are
    /// appended in the given order; (3) else inference from the sample. Data column order is
    /// the order of first appearance in the sample's `before`/`after` objects.
    ///
    /// Inference: the first non-null JSON value decides: integer → `int64`, number with
    /// fraction/exponent → `double` (a column seen as both → `double`), string → `string`,
    /// bool → `boolean`, object/array → `string` (JSON text); always-null → `string`.
    ///
    /// Fails only if no line of the sample is a usable envelope and nothing is declared.
    pub fn resolve_schema(
        source_name: &str,
        declared: &[(String, ColumnType)],
        sample: &[&[u8]],
    ) -> Result<Schema, ConnectorError> {
        let mut inferred = Inference::default();
        let mut usable = 0usize;
        for line in sample {
            let Some(env) = loose_envelope(trim_line(line)) else {
                continue;
            };
            if let Some(block) = env.schema.and_then(|b| block_columns(b.get())) {
                let data = block
                    .into_iter()
                    .map(|c| Column {
                        name: c.name,
                        ty: c.ty,
                    })
                    .collect();
                return Ok(Schema::with_meta(data));
            }
            if env.usable() {
                usable += 1;
                for image in [env.before, env.after].into_iter().flatten() {
                    if let Ok(fields) = serde_json::from_str::<Ordered>(image.get()) {
                        for (name, raw) in fields.0 {
                            inferred.observe(name, raw.get());
                        }
                    }
                }
            }
        }
        if usable == 0 && declared.is_empty() {
            return Err(ConnectorError::Schema {
                source_name: source_name.to_string(),
                message: format!(
                    "no usable Debezium record among the first {} lines and no declared columns",
                    sample.len()
                ),
            });
        }
        for (name, ty) in declared {
            inferred.declare(name, *ty);
        }
        Ok(Schema::with_meta(inferred.into_columns()))
    }

    /// A parser of lines into rows of `schema` (data columns followed by the meta columns,
    /// as built by [`Schema::with_meta`]).
    pub fn new(schema: Arc<Schema>) -> Self {
        Self::with_unknown_columns(schema, UnknownColumns::Reject)
    }

    /// Like [`DebeziumParser::new`], with a choice of what happens to fields that are not
    /// columns of `schema` (see [`UnknownColumns`]; `Collect` and `Rescue` need the schema's
    /// last data column to be [`NEW_COLUMNS`] or [`RESCUED_DATA`], else they reject).
    pub fn with_unknown_columns(schema: Arc<Schema>, unknown: UnknownColumns) -> Self {
        DebeziumParser {
            cols: Cols::new(&schema, unknown),
            schema,
            block_cache: None,
            spare: None,
            source_keys: Vec::new(),
        }
    }

    /// Hands back the row of a parsed record once it has been used: the next record is
    /// parsed into it, reusing its string buffers (saves an allocation per string cell).
    pub fn recycle(&mut self, row: Row) {
        if row.len() == self.cols.width {
            self.spare = Some(row);
        }
    }

    /// The fixed schema rows are parsed into.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Parses one line (without the trailing newline; a trailing `\r` is tolerated).
    pub fn parse(&mut self, line: &[u8]) -> Result<Parsed, BadRecord> {
        let line = trim_line(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Parsed::Skip);
        }
        match fast::parse(
            &self.cols,
            &mut self.block_cache,
            line,
            self.spare.take(),
            Some(&mut self.source_keys),
        ) {
            Some(parsed) => Ok(parsed),
            None => self.parse_reference(line),
        }
    }

    /// The reference (serde) path of [`DebeziumParser::parse`]: handles every line, and is
    /// the one that words the reasons of bad records.
    fn parse_reference(&mut self, line: &[u8]) -> Result<Parsed, BadRecord> {
        let mut run = Run::new(&self.cols, &mut self.block_cache);
        let mut de = serde_json::Deserializer::from_slice(line);
        let res = PayloadSeed {
            run: &mut run,
            top: true,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        if let Err(e) = res {
            return Err(run.error(e));
        }
        if let Some(raw) = run.pending_payload.take() {
            // `payload` came before `schema`: read it now that the block is known.
            let mut de = serde_json::Deserializer::from_str(raw.get());
            let res = PayloadSeed {
                run: &mut run,
                top: false,
            }
            .deserialize(&mut de);
            if let Err(e) = res {
                return Err(run.error(e));
            }
        }
        run.finish()
    }

    /// Cheaply extracts the source transaction id of a line: `payload.transaction.id`
    /// (string), else `payload.source.txId` (number → decimal string, or string). `None` if
    /// absent or the line is not well-formed JSON of the expected shape.
    pub fn transaction_id(line: &[u8]) -> Option<String> {
        let line = trim_line(line);
        match fast::transaction_id(line) {
            Some(found) => found,
            None => Self::transaction_id_reference(line),
        }
    }

    /// The reference (serde) path of [`DebeziumParser::transaction_id`].
    fn transaction_id_reference(line: &[u8]) -> Option<String> {
        let mut out = TxOnly::default();
        let mut de = serde_json::Deserializer::from_slice(line);
        TxOnlySeed {
            out: &mut out,
            top: true,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        out.tx.or(out.src)
    }
}

/// Strips one trailing `\r`.
fn trim_line(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

// ---------------------------------------------------------------------------------------
// Keys

/// The envelope keys we care about (any nesting level); everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Before,
    After,
    Source,
    Op,
    TsMs,
    Transaction,
    Schema,
    Payload,
    Lsn,
    TxId,
    Id,
    Other,
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Key, E> {
        Ok(match v {
            b"before" => Key::Before,
            b"after" => Key::After,
            b"source" => Key::Source,
            b"op" => Key::Op,
            b"ts_ms" => Key::TsMs,
            b"transaction" => Key::Transaction,
            b"schema" => Key::Schema,
            b"payload" => Key::Payload,
            b"lsn" => Key::Lsn,
            b"txId" => Key::TxId,
            b"id" => Key::Id,
            _ => Key::Other,
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        self.visit_bytes(v.as_bytes())
    }
}

impl<'de> Deserialize<'de> for Key {
    /// Keys are read as bytes: serde_json then unescapes them without a UTF-8 validation
    /// pass (it does not validate the strings it skips either).
    #[inline]
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

// ---------------------------------------------------------------------------------------
// Per-line state

#[derive(Debug, Default)]
enum OpState {
    #[default]
    Missing,
    Known(Op),
    Unknown(String),
}

/// What became of the `before` or `after` image while walking the payload.
#[derive(Clone, Copy, Debug, Default)]
enum Side<'de> {
    #[default]
    Missing,
    Null,
    /// Kept unparsed (the op was not known yet when it went by): its JSON text.
    Raw(&'de str),
    /// Parsed into `Run::row`.
    Parsed,
    /// Skipped (not needed by the op).
    Skipped,
}

/// Metadata read from `payload.source`.
#[derive(Debug, Default)]
struct SourceMeta {
    lsn: Option<i64>,
    ts_ms: Option<i64>,
    tx_id: Option<String>,
    err: Option<String>,
}

/// Everything learnt about one line while walking it.
struct Run<'c, 'de> {
    cols: &'c Cols,
    cache: &'c mut Option<BlockCache>,
    /// Encodings from this line's schema block (`None`: defaults).
    modes: Option<Arc<[ColMode]>>,
    /// The schema block's columns unknown to the fixed schema.
    extra: Option<Arc<[BlockColumn]>>,
    block_err: Option<String>,
    /// A reason to report instead of the deserializer's error.
    fatal: Option<String>,
    schema_seen: bool,
    top_null: bool,
    saw_payload: bool,
    /// (Fast path only) payload fields were seen at top level.
    top_fields: bool,
    payload_null: bool,
    pending_payload: Option<&'de RawValue>,
    op: OpState,
    before: Side<'de>,
    after: Side<'de>,
    row: Vec<Datum>,
    /// (Fast path only) a recycled row to parse the image into.
    spare: Option<Row>,
    /// (Fast path only) the member order of the previous record's source block.
    source_keys: Option<&'c mut SourceKeys>,
    row_err: Option<String>,
    source: SourceMeta,
    ts_ms: Option<i64>,
    tx_id: Option<String>,
    meta_err: Option<String>,
}

impl<'c, 'de> Run<'c, 'de> {
    fn new(cols: &'c Cols, cache: &'c mut Option<BlockCache>) -> Self {
        Run {
            cols,
            cache,
            modes: None,
            extra: None,
            block_err: None,
            fatal: None,
            schema_seen: false,
            top_null: false,
            saw_payload: false,
            top_fields: false,
            payload_null: false,
            pending_payload: None,
            op: OpState::Missing,
            before: Side::Missing,
            after: Side::Missing,
            row: Vec::new(),
            spare: None,
            source_keys: None,
            row_err: None,
            source: SourceMeta::default(),
            ts_ms: None,
            tx_id: None,
            meta_err: None,
        }
    }

    /// The bad-record reason for a deserialization error.
    fn error(&mut self, e: serde_json::Error) -> BadRecord {
        if let Some(f) = self.fatal.take() {
            return BadRecord::new(f);
        }
        match e.classify() {
            serde_json::error::Category::Data => BadRecord::new(format!("invalid record: {e}")),
            _ => BadRecord::new(format!("malformed JSON: {e}")),
        }
    }

    fn meta_error(&mut self, e: String) {
        self.meta_err.get_or_insert(e);
    }

    /// Takes note of the line's schema block (cached by its bytes).
    fn apply_block(&mut self, raw: &str) {
        self.schema_seen = true;
        if raw == "null" {
            return;
        }
        let hit = matches!(&*self.cache, Some(c) if *c.raw == *raw.as_bytes());
        if !hit {
            *self.cache = Some(BlockCache {
                raw: raw.as_bytes().into(),
                result: block_modes(raw, self.cols),
            });
        }
        if let Some(c) = &*self.cache {
            match &c.result {
                Ok(m) => {
                    self.modes = m.as_ref().map(|b| b.modes.clone());
                    self.extra = m.as_ref().map(|b| b.extra.clone());
                }
                Err(e) => self.block_err = Some(e.clone()),
            }
        }
    }

    fn row_seed(&self, side: &'static str) -> RowSeed<'_> {
        RowSeed {
            cols: self.cols,
            modes: self.modes.as_deref(),
            extra: self.extra.as_deref(),
            side,
        }
    }

    /// Stores a parsed image; returns the new state of its side.
    fn store_row(&mut self, parsed: Option<(Row, Option<String>)>) -> Side<'de> {
        match parsed {
            Some((row, err)) => {
                self.row = row;
                self.row_err = err;
                Side::Parsed
            }
            None => Side::Null,
        }
    }

    /// Builds the outcome once the whole line has been walked.
    fn finish(mut self) -> Result<Parsed, BadRecord> {
        if self.top_null || (self.saw_payload && self.payload_null) {
            return Ok(Parsed::Skip);
        }
        let op = match std::mem::take(&mut self.op) {
            OpState::Known(op) => op,
            OpState::Missing => return Err(BadRecord::new("missing `op`")),
            OpState::Unknown(s) => return Err(BadRecord::new(format!("unknown op `{s}`"))),
        };
        if let Some(e) = self.block_err.take() {
            return Err(BadRecord::new(e));
        }
        let (side, name) = match op {
            Op::Delete => (self.before, "before"),
            _ => (self.after, "after"),
        };
        let missing = || {
            BadRecord::new(match op {
                Op::Delete => "delete without `before`".to_string(),
                _ => format!("op `{}` without `after`", op.letter()),
            })
        };
        match side {
            Side::Parsed => {}
            Side::Raw(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw);
                let parsed = match self.row_seed(name).deserialize(&mut de) {
                    Ok(p) => p,
                    Err(e) => return Err(self.error(e)),
                };
                if let Side::Null = self.store_row(parsed) {
                    return Err(missing());
                }
            }
            Side::Missing | Side::Null | Side::Skipped => return Err(missing()),
        }
        if let Some(e) = self.row_err.take() {
            return Err(BadRecord::new(e));
        }
        if let Some(e) = self.meta_err.take() {
            return Err(BadRecord::new(e));
        }
        let mut row = std::mem::take(&mut self.row);
        let tx = self.tx_id.take().or_else(|| self.source.tx_id.take());
        // `__op`, reusing the string of a recycled row.
        if let Some(slot) = self.cols.meta[0].and_then(|p| row.get_mut(p)) {
            match slot {
                Datum::Str(s) => {
                    s.clear();
                    s.push_str(op.letter());
                }
                slot => *slot = Datum::Str(op.letter().to_string()),
            }
        }
        let meta = [
            self.source.lsn.map_or(Datum::Null, Datum::Int),
            self.source.ts_ms.map_or(Datum::Null, Datum::Int),
            self.ts_ms.map_or(Datum::Null, Datum::Int),
            tx.map_or(Datum::Null, Datum::Str),
        ];
        for (pos, value) in self.cols.meta[1..].iter().zip(meta) {
            if let Some(slot) = pos.and_then(|p| row.get_mut(p)) {
                *slot = value;
            }
        }
        Ok(Parsed::Record { op, row })
    }
}

// ---------------------------------------------------------------------------------------
// Envelope / payload

/// Walks the top-level object (`top`) or the `payload` object.
struct PayloadSeed<'r, 'c, 'de> {
    run: &'r mut Run<'c, 'de>,
    top: bool,
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.top {
            f.write_str("a Debezium JSON object")
        } else {
            f.write_str("`payload` to be an object or null")
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.top {
            self.run.top_null = true;
        } else {
            self.run.payload_null = true;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let run = self.run;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Schema if self.top => {
                    let raw: &'de RawValue = map.next_value()?;
                    run.apply_block(raw.get());
                }
                Key::Payload if self.top => {
                    run.saw_payload = true;
                    if run.schema_seen {
                        map.next_value_seed(PayloadSeed {
                            run: &mut *run,
                            top: false,
                        })?;
                    } else {
                        run.pending_payload = Some(map.next_value()?);
                    }
                }
                Key::Before => {
                    run.before = match run.op {
                        OpState::Known(Op::Delete) => {
                            let parsed = map.next_value_seed(run.row_seed("before"))?;
                            run.store_row(parsed)
                        }
                        OpState::Known(_) => {
                            map.next_value::<IgnoredAny>()?;
                            Side::Skipped
                        }
                        _ => {
                            let raw: &'de RawValue = map.next_value()?;
                            if raw.get() == "null" {
                                Side::Null
                            } else {
                                Side::Raw(raw.get())
                            }
                        }
                    };
                }
                Key::After => {
                    run.after = match run.op {
                        OpState::Known(Op::Delete) => {
                            map.next_value::<IgnoredAny>()?;
                            Side::Skipped
                        }
                        // Known c/u/r, or not known yet: c/u/r are the common case, so
                        // parse optimistically (errors are only reported if it is needed).
                        _ => {
                            // (`before` cannot be `Parsed` here: it only is when the op
                            // is a known delete, and then `after` is skipped.)
                            let parsed = map.next_value_seed(run.row_seed("after"))?;
                            run.store_row(parsed)
                        }
                    };
                }
                Key::Op => {
                    if !matches!(run.op, OpState::Missing) {
                        run.fatal = Some("duplicate `op`".into());
                        return Err(de::Error::custom("duplicate `op`"));
                    }
                    run.op = op_state(map.next_value()?);
                }
                Key::Source => {
                    run.source = map.next_value_seed(SourceSeed)?;
                    if let Some(e) = run.source.err.take() {
                        run.meta_error(e);
                    }
                }
                Key::TsMs => match meta_int(map.next_value()?, "ts_ms") {
                    Ok(v) => run.ts_ms = v,
                    Err(e) => run.meta_error(e),
                },
                Key::Transaction => match map.next_value_seed(TxSeed)? {
                    Ok(id) => run.tx_id = id,
                    Err(e) => run.meta_error(e),
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads the op letter.
fn op_state(v: Scalar<'_>) -> OpState {
    match v {
        Scalar::Null => OpState::Missing,
        Scalar::Str(s) => match &*s {
            "c" => OpState::Known(Op::Create),
            "u" => OpState::Known(Op::Update),
            "d" => OpState::Known(Op::Delete),
            "r" => OpState::Known(Op::Read),
            other => OpState::Unknown(other.to_string()),
        },
        Scalar::Bool(b) => OpState::Unknown(b.to_string()),
        Scalar::I64(i) => OpState::Unknown(i.to_string()),
        Scalar::U64(u) => OpState::Unknown(u.to_string()),
        Scalar::F64(f) => OpState::Unknown(format!("{f:?}")),
        Scalar::Object => OpState::Unknown("{…}".into()),
        Scalar::Array => OpState::Unknown("[…]".into()),
    }
}

/// An optional integer metadata field.
fn meta_int(v: Scalar<'_>, what: &str) -> Result<Option<i64>, String> {
    match v {
        Scalar::Null => Ok(None),
        Scalar::I64(i) => Ok(Some(i)),
        Scalar::U64(u) if u <= i64::MAX as u64 => Ok(Some(u as i64)),
        other => Err(format!(
            "`{what}`: expected int64, found {}",
            describe(&other)
        )),
    }
}

/// An optional transaction id: a string, or an integer rendered in decimal.
fn meta_tx(v: Scalar<'_>, what: &str) -> Result<Option<String>, String> {
    match v {
        Scalar::Null => Ok(None),
        Scalar::Str(s) => Ok(Some(s.into_owned())),
        Scalar::I64(i) => Ok(Some(i.to_string())),
        Scalar::U64(u) => Ok(Some(u.to_string())),
        other => Err(format!(
            "`{what}`: expected a string or an integer, found {}",
            describe(&other)
        )),
    }
}

/// Reads `lsn`, `ts_ms` and `txId` of `payload.source`, skipping the rest.
struct SourceSeed;

impl<'de> DeserializeSeed<'de> for SourceSeed {
    type Value = SourceMeta;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<SourceMeta, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SourceSeed {
    type Value = SourceMeta;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`source` to be an object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<SourceMeta, E> {
        Ok(SourceMeta::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SourceMeta, A::Error> {
        let mut m = SourceMeta::default();
        while let Some(key) = map.next_key::<Key>()? {
            let res = match key {
                Key::Lsn => meta_int(map.next_value()?, "source.lsn").map(|v| m.lsn = v),
                Key::TsMs => meta_int(map.next_value()?, "source.ts_ms").map(|v| m.ts_ms = v),
                Key::TxId => meta_tx(map.next_value()?, "source.txId").map(|v| m.tx_id = v),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    Ok(())
                }
            };
            if let Err(e) = res {
                m.err.get_or_insert(e);
            }
        }
        Ok(m)
    }
}

/// Reads `payload.transaction.id`.
struct TxSeed;

impl<'de> DeserializeSeed<'de> for TxSeed {
    type Value = Result<Option<String>, String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TxSeed {
    type Value = Result<Option<String>, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`transaction` to be an object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = Ok(None);
        while let Some(key) = map.next_key::<Key>()? {
            if key == Key::Id {
                id = meta_tx(map.next_value()?, "transaction.id");
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(id)
    }
}

// ---------------------------------------------------------------------------------------
// Row images

/// Types the fields of a `before`/`after` object into a fresh row. The value is `None` for
/// JSON null; type errors do not abort the walk (the image may turn out not to be needed)
/// but are returned beside the row (the first one only).
struct RowSeed<'a> {
    cols: &'a Cols,
    modes: Option<&'a [ColMode]>,
    extra: Option<&'a [BlockColumn]>,
    side: &'static str,
}

type RowResult = Option<(Row, Option<String>)>;

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = RowResult;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RowResult, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = RowResult;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "`{}` to be an object or null", self.side)
    }

    fn visit_unit<E: de::Error>(self) -> Result<RowResult, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RowResult, A::Error> {
        let cols = self.cols;
        let mut row = vec![Datum::Null; cols.width];
        let mut err: Option<String> = None;
        let mut rescued: Vec<(String, String)> = Vec::new();
        let mut collected: Vec<(String, ColumnType, Datum)> = Vec::new();
        let mut hint = 0;
        while let Some(key) = map.next_key_seed(ColKey { cols, hint })? {
            match key {
                Ok(i) => {
                    hint = i + 1;
                    let ty = cols.types[i];
                    let mode = self
                        .modes
                        .and_then(|m| m.get(i).copied())
                        .unwrap_or_default();
                    match map.next_value_seed(ValueSeed { ty, mode })? {
                        Ok(d) => row[i] = d,
                        Err(e) => {
                            err.get_or_insert_with(|| format!("column `{}`: {e}", cols.names[i]));
                        }
                    }
                }
                Err(name) => match cols.unknown {
                    UnknownColumns::Reject => {
                        map.next_value::<IgnoredAny>()?;
                        err.get_or_insert_with(|| unknown_reason(&name));
                    }
                    UnknownColumns::Rescue => {
                        let raw: &RawValue = map.next_value()?;
                        if raw.get() != "null" {
                            rescued.push((name, raw.get().to_string()));
                        }
                    }
                    UnknownColumns::Collect => {
                        let raw: &RawValue = map.next_value()?;
                        let block = self.extra.and_then(|e| e.iter().find(|c| c.name == name));
                        let typed = match block {
                            Some(c) => Some((c.ty, c.mode)),
                            None => infer_type(raw.get()).map(|t| (t, ColMode::default())),
                        };
                        if let Some((ty, mode)) = typed {
                            match convert_value(raw.get(), ty, mode) {
                                Ok(Datum::Null) => {}
                                Ok(d) => collected.push((name, ty, d)),
                                Err(e) => {
                                    err.get_or_insert_with(|| format!("column `{name}`: {e}"));
                                }
                            }
                        }
                    }
                },
            }
        }
        if let Some(slot) = cols.extras {
            row[slot] = match cols.unknown {
                UnknownColumns::Rescue if !rescued.is_empty() => {
                    rescued.sort();
                    let mut text = String::from("{");
                    for (i, (name, raw)) in rescued.iter().enumerate() {
                        if i > 0 {
                            text.push(',');
                        }
                        text.push_str(&serde_json::to_string(name).unwrap_or_default());
                        text.push(':');
                        text.push_str(raw);
                    }
                    text.push('}');
                    Datum::Str(text)
                }
                UnknownColumns::Collect => NewColumns::encode(collected),
                _ => Datum::Null,
            };
        }
        Ok(Some((row, err)))
    }
}

/// Types the raw JSON text of one value like [`ValueSeed`] does.
fn convert_value(raw: &str, ty: ColumnType, mode: ColMode) -> Result<Datum, String> {
    match ty {
        ColumnType::String
        | ColumnType::Decimal { .. }
        | ColumnType::Float32
        | ColumnType::Float64 => convert_raw(raw, ty, mode),
        _ => match serde_json::from_str::<Scalar>(raw) {
            Ok(v) => convert_scalar(v, ty, mode),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// The type of a field unknown to the schema, from its JSON value (`None` for null).
fn infer_type(raw: &str) -> Option<ColumnType> {
    Some(match raw.as_bytes().first()? {
        b'"' | b'{' | b'[' => ColumnType::String,
        b't' | b'f' => ColumnType::Boolean,
        b'n' => return None,
        _ if raw.contains(['.', 'e', 'E']) => ColumnType::Float64,
        _ => ColumnType::Int64,
    })
}

/// Looks a field name up among the data columns (`Err(name)` if it is not one).
struct ColKey<'a> {
    cols: &'a Cols,
    hint: usize,
}

impl<'de> DeserializeSeed<'de> for ColKey<'_> {
    type Value = Result<usize, String>;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for ColKey<'_> {
    type Value = Result<usize, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column name")
    }

    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        // Column names are valid UTF-8, so a byte match is a name match; an unknown name is
        // checked for UTF-8 here since it is reported.
        match self.cols.find(v, self.hint) {
            Some(i) => Ok(Ok(i)),
            None => match std::str::from_utf8(v) {
                Ok(name) => Ok(Err(name.to_string())),
                Err(_) => Err(de::Error::custom("invalid UTF-8 in a field name")),
            },
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.visit_bytes(v.as_bytes())
    }
}

/// Types one field value for its column.
struct ValueSeed {
    ty: ColumnType,
    mode: ColMode,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Result<Datum, String>;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.ty {
            // Raw text: nested JSON is kept verbatim, decimal numbers are read exactly, floats
            // are rounded correctly (and identically on the fast path).
            ColumnType::String
            | ColumnType::Decimal { .. }
            | ColumnType::Float32
            | ColumnType::Float64 => {
                let raw = <&'de RawValue>::deserialize(d)?;
                Ok(convert_raw(raw.get(), self.ty, self.mode))
            }
            _ => Ok(convert_scalar(Scalar::deserialize(d)?, self.ty, self.mode)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// transaction_id

#[derive(Default)]
struct TxOnly {
    tx: Option<String>,
    src: Option<String>,
}

/// Walks a line for `transaction.id` and `source.txId` only.
struct TxOnlySeed<'a> {
    out: &'a mut TxOnly,
    top: bool,
}

impl<'de> DeserializeSeed<'de> for TxOnlySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TxOnlySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Debezium JSON object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Payload if self.top => map.next_value_seed(TxOnlySeed {
                    out: &mut *self.out,
                    top: false,
                })?,
                Key::Source => self.out.src = map.next_value_seed(SourceSeed)?.tx_id,
                Key::Transaction => self.out.tx = map.next_value_seed(TxSeed)?.ok().flatten(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Schema resolution

/// The parts of an envelope schema resolution looks at.
#[derive(Deserialize)]
struct Loose<'a> {
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    before: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(borrow, default)]
    op: Option<&'a RawValue>,
}

impl Loose<'_> {
    /// Whether the envelope has a known op and the image it needs is an object.
    fn usable(&self) -> bool {
        let is_object = |v: Option<&RawValue>| v.is_some_and(|v| v.get().starts_with('{'));
        match self.op.map(RawValue::get) {
            Some(r#""c""# | r#""u""# | r#""r""#) => is_object(self.after),
            Some(r#""d""#) => is_object(self.before),
            _ => false,
        }
    }
}

/// Reads a sample line loosely: the schema block of the envelope, and the images and op of
/// its payload (nested or at top level). `None` if the line is not a JSON object.
fn loose_envelope(line: &[u8]) -> Option<Loose<'_>> {
    let top: Loose = serde_json::from_slice(line).ok()?;
    match top.payload {
        Some(p) => {
            let inner: Loose = serde_json::from_str(p.get()).ok()?;
            Some(Loose {
                schema: top.schema,
                ..inner
            })
        }
        None => Some(top),
    }
}

/// The fields of a JSON object, in order.
struct Ordered<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Ordered<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<'de>, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    v.push(entry);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Column types inferred from a sample, in order of first appearance.
#[derive(Default)]
struct Inference {
    cols: Vec<(String, Option<ColumnType>)>,
    index: HashMap<String, usize>,
}

impl Inference {
    fn slot(&mut self, name: &str) -> &mut Option<ColumnType> {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.cols.push((name.to_string(), None));
                self.index.insert(name.to_string(), self.cols.len() - 1);
                self.cols.len() - 1
            }
        };
        &mut self.cols[i].1
    }

    fn observe(&mut self, name: String, raw: &str) {
        let kind = match raw.as_bytes().first() {
            Some(b'n') | None => None,
            Some(b'"' | b'{' | b'[') => Some(ColumnType::String),
            Some(b't' | b'f') => Some(ColumnType::Boolean),
            _ if raw.contains(['.', 'e', 'E']) => Some(ColumnType::Float64),
            _ => Some(ColumnType::Int64),
        };
        let slot = self.slot(&name);
        match (*slot, kind) {
            (None, k) => *slot = k,
            (Some(ColumnType::Int64), Some(ColumnType::Float64)) => *slot = kind,
            _ => {}
        }
    }

    fn declare(&mut self, name: &str, ty: ColumnType) {
        *self.slot(name) = Some(ty);
    }

    fn into_columns(self) -> Vec<Column> {
        self.cols
            .into_iter()
            .map(|(name, ty)| Column {
                name,
                ty: ty.unwrap_or(ColumnType::String),
            })
            .collect()
    }
}

#[path = "debezium_fast.rs"]
mod fast;

#[cfg(test)]
#[path = "debezium_tests.rs"]
mod tests;
