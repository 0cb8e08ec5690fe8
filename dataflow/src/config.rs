//! The pipeline file (TOML): `[pipeline]`, `[[source]]`, `[[table]]`.
//!
//! Every field is documented with its default. [`PipelineConfig::load`] parses and validates;
//! a problem is reported as [`TidewaterError::Config`] naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tidewater_connectors::generator::{
    BankGenConfig, GeneratorConfig, MarketingGenConfig, MarketingStream, OffersGenConfig,
    OffersStream, TelematicsGenConfig, TelematicsStream, TransfersGenConfig,
};
use tidewater_connectors::kafka::KafkaConfig;
use tidewater_connectors::types::ColumnType;

use crate::error::TidewaterError;

/// The whole pipeline file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// `[pipeline]`: name, lakehouse, epochs.
    pub pipeline: PipelineSection,
    /// `[[source]]`: where records come from.
    #[serde(default)]
    pub source: Vec<SourceConfig>,
    /// `[[table]]`: CDC tables (APPLY CHANGES by keys and sequence).
    #[serde(default)]
    pub table: Vec<TableConfig>,
    /// `[[view]]`: SQL views over tables and earlier views, maintained incrementally.
    #[serde(default)]
    pub view: Vec<ViewConfig>,
}

/// `[[view]]`: a SQL `SELECT` over tables and views declared before it, kept current
/// incrementally and written to the Delta table `<lakehouse>/<name>` in the same commit
/// round as the tables, so every epoch is one cut of tables and views.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// View name (required; unique among tables and views; the Delta table's directory).
    pub name: String,
    /// The `SELECT` (give `sql` or `sql_file`).
    #[serde(default)]
    pub sql: Option<String>,
    /// A file holding the `SELECT`, relative to the pipeline file's directory.
    #[serde(default)]
    pub sql_file: Option<PathBuf>,
    /// Output columns unique per row, the key of the stored rows (default: the `GROUP BY`
    /// columns when the select list outputs them; else rows are stored whole, repeated by
    /// multiplicity). Two rows with the same declared key stop the run with an error.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
    /// Hash buckets of the stored view (default: `pipeline.buckets`).
    #[serde(default)]
    pub buckets: Option<u32>,
    /// Windowed views (`TUMBLE` / `HOP` in the `GROUP BY`) only: `"on_update"` (default: a
    /// window's row appears at once and is rewritten as data arrives) or `"on_close"` (the row
    /// appears once, when the watermark passes the window's end). A windowed view has a
    /// `window_closed` column: whether the window can still change.
    #[serde(default)]
    pub emit: Option<String>,
    /// `"warn"` | `"fail"`: the view is a dbt-style test whose rows are violations (default:
    /// not a test). After each epoch its violations — the sum of its `violations` column if
    /// it has one, else its number of rows — are counted in the event log (`expectations`:
    /// `{name: <view>, on_violation, passed: 1 if none else 0, failed: violations}`); `warn`
    /// logs a warning while there are any, `fail` stops the run with an error naming the
    /// view before the epoch's manifest is written (readers of manifests never see that
    /// epoch).
    #[serde(default)]
    pub test: Option<OnViolation>,
}

impl ViewConfig {
    /// `emit`, parsed (`None`: not set).
    pub fn emit_mode(&self) -> Result<Option<tidewater_operators::Emit>, TidewaterError> {
        match self.emit.as_deref() {
            None => Ok(None),
            Some("on_update") => Ok(Some(tidewater_operators::Emit::OnUpdate)),
            Some("on_close") => Ok(Some(tidewater_operators::Emit::OnClose)),
            Some(other) => Err(err(
                format!("view `{}`.emit", self.name),
                format!("\"{other}\" is not one of: on_update, on_close"),
            )),
        }
    }

    /// The view's SQL: `sql`, or the contents of `sql_file`.
    pub fn query_text(&self) -> Result<String, TidewaterError> {
        match (&self.sql, &self.sql_file) {
            (Some(sql), None) => Ok(sql.clone()),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                err(
                    format!("view `{}`.sql_file", self.name),
                    format!("cannot read {}: {e}", path.display()),
                )
            }),
            _ => Err(err(
                format!("view `{}`", self.name),
                "give exactly one of `sql` and `sql_file`",
            )),
        }
    }
}

/// `[pipeline]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Pipeline name (required); the Delta `txn` app id of a table is `<name>/<table>`.
    pub name: String,
    /// Lakehouse directory (required); tables live at `<lakehouse>/<table>`. A relative path
    /// is relative to the directory of the pipeline file.
    pub lakehouse: PathBuf,
    /// Close an epoch every this many milliseconds (default 1000). (Input that is already
    /// there when the cutter looks — a backlog of a files source — is cut at once, up to
    /// `max_epoch_bytes` per epoch; see `source.rs`.)
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Also close an epoch every this many input records of a source (default: unset). With
    /// it, epochs are a pure function of the input (deterministic tests).
    #[serde(default)]
    pub commit_every_records: Option<u64>,
    /// Close an epoch at the latest after this many input bytes of a source (default 1 GiB),
    /// a bound for sources faster than `commit_interval_ms` expects (for a backlog of files,
    /// the size of its epochs). (The memory an epoch
    /// holds grows with the keys it changes, not with its bytes; each epoch rewrites the
    /// buckets it touched, so smaller epochs cost throughput.)
    #[serde(default = "default_max_epoch_bytes")]
    pub max_epoch_bytes: u64,
    /// Hash buckets of a keyed table: each bucket is one Parquet file, rewritten only when its
    /// content changes (default 16).
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Write a Delta checkpoint every this many commits of a table (default 10).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: u64,
    /// Save the operator state (the ApplyChanges keys and tombstones of every table) every
    /// this many epochs to `<lakehouse>/_tidewater/checkpoints/`, so that a restart replays
    /// only the epochs after the newest checkpoint (default 10; 0 turns checkpoints off: a
    /// restart then replays every committed epoch).
    #[serde(default = "default_state_checkpoint_every")]
    pub state_checkpoint_every: u64,
    /// How long a delete's tombstone is kept so that older upserts arriving later do not
    /// resurrect the row, as a duration (`"7d"`, `"1h"`; default `"7d"`). Counted in epochs:
    /// retention / commit_interval_ms.
    #[serde(default = "default_tombstone_retention")]
    pub tombstone_retention: String,
    /// Size of the blocks a file source is cut into for parallel parsing (default 1 MiB).
    #[serde(default = "default_block_bytes")]
    pub block_bytes: u64,
    /// Spill the upserted rows of SCD type 1 tables to temporary files while their epoch is
    /// open (default `true`), so that an epoch's changed rows do not wait in memory: memory
    /// then grows with the keys, not with the rows an epoch changes. Costs a write of every
    /// upsert's bytes to the page cache and a read of each epoch's winning rows (in the
    /// `cdc-apply` benchmark: 27 % less peak memory, 7–10 % less throughput; `bench/RESULTS.md`).
    /// Tables with IGNORE NULL UPDATES (which keep rows in their state) and tables that a view
    /// reads keep their rows in memory.
    #[serde(default = "default_spill_rows")]
    pub spill_rows: bool,
    /// Directory of the spill files (default: the system's temporary directory, `$TMPDIR`
    /// or `/tmp`). The files are unnamed: nothing is left behind, also after a crash.
    /// Relative to the pipeline file's directory.
    #[serde(default)]
    pub spill_dir: Option<PathBuf>,
}

impl PipelineSection {
    /// Where the row spill's files go.
    pub fn spill_dir(&self) -> PathBuf {
        self.spill_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

fn default_commit_interval_ms() -> u64 {
    1000
}
fn default_max_epoch_bytes() -> u64 {
    1 << 30
}
fn default_buckets() -> u32 {
    16
}
fn default_checkpoint_interval() -> u64 {
    10
}
fn default_state_checkpoint_every() -> u64 {
    10
}
fn default_tombstone_retention() -> String {
    "7d".into()
}
fn default_block_bytes() -> u64 {
    1 << 20
}
fn default_spill_rows() -> bool {
    true
}

/// The kind of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A file, or a directory of files read in name order.
    Files,
    /// A built-in CDC generator (`workload`: bank customers, bank transfers, one stream of the
    /// marketing, the telematics or the offers world).
    Generator,
    /// Kafka topics — not implemented yet.
    Kafka,
}

/// `[[source]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Source name (required, unique).
    pub name: String,
    /// `files` | `generator` (`kafka` is not implemented yet).
    pub kind: SourceKind,
    /// `files`: a file or a directory (required). Relative to the pipeline file's directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Record format (default `debezium-json`, the only one so far).
    #[serde(default = "default_format")]
    pub format: String,
    /// `generator`: which generated stream (default `"bank"`): `"bank"` = bank customers
    /// (`customer_id`, out-of-order, duplicates, deletes; one event per source transaction),
    /// `"transfers"` = bank accounts (`account_id`, `owner`, `balance` in int64 cents,
    /// `updated_at`): a snapshot of `keys` accounts in one transaction, then transfers, each one
    /// source transaction of two updates (debit + credit), some also opening an account;
    /// `"marketing"` = one stream (`stream`) of the simulated marketing world (Salesforce
    /// accounts and users, Marketo leads and e-mail activities; see
    /// `tidewater_connectors::generator::marketing`); `"telematics"` = one stream (`stream`)
    /// of the simulated telematics world (vehicle readings about every second, out of order,
    /// late and duplicated; insurance policies and claims as CDC; see
    /// `tidewater_connectors::generator::telematics`); `"offers"` = one stream (`stream`) of
    /// the simulated card-offers world (card customers, their event-attendance counters per
    /// category sequenced by `datetime_updated`, card transactions with cash-back; see
    /// `tidewater_connectors::generator::offers`).
    #[serde(default)]
    pub workload: Option<String>,
    /// `generator`, `workload = "marketing"`, `"telematics"` or `"offers"` only (required
    /// there): which stream of the world this source emits — marketing: `account` | `user` |
    /// `lead` | `activity_send_email` | `activity_open_email` | `activity_click_email`;
    /// telematics: `reading` | `policy` | `claim`; offers: `customer` | `pattern` |
    /// `transaction`. The sources of one world share every other generator setting; `events`
    /// counts the lines of the whole world, and `keys` is, for marketing, its number of
    /// snapshot leads (default 2000; `keys / 2` users, `keys / 20` accounts), for telematics
    /// its number of vehicles (default 200; one policy each), for offers its number of
    /// customers (default 2000; about half in the snapshot).
    #[serde(default)]
    pub stream: Option<String>,
    /// `generator`: seed (default 42).
    #[serde(default)]
    pub seed: Option<u64>,
    /// `generator`: number of events (default 100000); for `workload = "transfers"` at least
    /// `keys` lines are generated (the snapshot is whole).
    #[serde(default)]
    pub events: Option<u64>,
    /// `generator`: number of distinct keys (default 10000); for `workload = "transfers"` the
    /// number of accounts of the snapshot (default 1000, at least 2); for `"marketing"`,
    /// `"telematics"` and `"offers"` see `stream`.
    #[serde(default)]
    pub keys: Option<u64>,
    /// `generator`: events per second, 0 = as fast as possible (default 0).
    #[serde(default)]
    pub rate: Option<u64>,
    /// `generator`: include the Debezium `schema` block in every record (default false).
    #[serde(default)]
    pub with_schema: Option<bool>,
    /// `kafka`: bootstrap brokers, `host:port[,host:port…]` (required).
    #[serde(default)]
    pub brokers: Option<String>,
    /// `kafka`: the topics read into the table fed by this source (required, non-empty; one
    /// table per source, so a table of several topics — e.g. shards — lists them all).
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// `kafka`: librdkafka consumer properties passed through (security settings such as
    /// `security.protocol`, `sasl.*`, `ssl.*`); the properties tidewater sets itself
    /// (`group.id`, offsets, auto commit) are refused (default: none).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// `kafka`: a message value over this many bytes goes to `_quarantine` (default 4 MiB).
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
    /// `kafka`: how long a broker fetch waits for data, ms (default 50).
    #[serde(default)]
    pub fetch_wait_ms: Option<u64>,
    /// `kafka`: how long to wait for the brokers at start before failing, ms (default 10000).
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// `kafka`: also commit each committed epoch's offsets to this consumer group, so that
    /// ordinary Kafka lag tools work (never read back: the Delta log is the truth; default:
    /// none).
    #[serde(default)]
    pub group_id: Option<String>,
    /// `kafka`: how long the events of a partition's last source transaction are held back
    /// waiting for its end (the first event of another transaction) before they are released
    /// into an epoch anyway, ms (default 2000). An epoch never ends inside a transaction that
    /// completes within this time.
    #[serde(default)]
    pub transaction_wait_ms: Option<u64>,
    /// An event-time watermark for every table fed by this source that declares none itself
    /// (`{ column = "event_time", allowed_lateness = "2m" }`; see `[[table]] watermark`,
    /// which wins where both are given). Each table still keeps a watermark of its own,
    /// computed from its own records (default: none).
    #[serde(default)]
    pub watermark: Option<WatermarkConfig>,
}

fn default_format() -> String {
    "debezium-json".into()
}

/// `[[table]]`: APPLY CHANGES INTO `name` FROM `from` KEYS (`keys`) SEQUENCE BY `sequence_by`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Table name (required, unique); the Delta table is `<lakehouse>/<name>`.
    pub name: String,
    /// The source feeding the table (required).
    pub from: String,
    /// Key columns (required, non-empty).
    pub keys: Vec<String>,
    /// The sequence column of the flattened record (required), e.g. `__lsn`.
    pub sequence_by: String,
    /// SCD type (default 1): 1 keeps the latest row per key; 2 keeps the history, one row per
    /// version with `__start_at` / `__end_at` (typed like the sequence column; the current
    /// version has `__end_at` null).
    #[serde(default = "default_scd")]
    pub scd: u8,
    /// Either the declared column types (a table: `{ customer_id = "int64", … }`, used when
    /// records carry no Debezium schema block; default: none, types are inferred from the
    /// first records), or the columns the table stores (a list: `["customer_id", "name"]`,
    /// APPLY CHANGES `COLUMNS`; the keys are always stored; default: every data column).
    #[serde(default)]
    pub columns: ColumnsSpec,
    /// Declared column types, like `columns = { … }` (for a table that also lists the
    /// columns it stores; default: none).
    #[serde(default)]
    pub column_types: BTreeMap<String, String>,
    /// Columns not stored (APPLY CHANGES `COLUMNS * EXCEPT (…)`), e.g. the sequence column;
    /// not with a `columns` list, and never a key (default: none).
    #[serde(default)]
    pub except_columns: Vec<String>,
    /// APPLY CHANGES `IGNORE NULL UPDATES`: a column that is null in an upsert keeps its
    /// previous value (default false).
    #[serde(default)]
    pub ignore_null_updates: bool,
    /// What happens to a record field that is not a column of the table's source schema
    /// (fixed at start from the first records): `add_new_columns` (default) adds it to the
    /// table as a nullable column, in the same commit as the first rows that carry it;
    /// `rescue` keeps such fields as a JSON object in a `_rescued_data` string column;
    /// `fail` stops the pipeline, naming the column and the record. A value whose type
    /// disagrees with its column's type is quarantined in every mode.
    #[serde(default)]
    pub schema_evolution: SchemaEvolution,
    /// APPLY CHANGES `APPLY AS TRUNCATE WHEN`: a SQL condition on the flattened record under
    /// which the record clears the table — every row whose sequence is lower than the
    /// record's is deleted (SCD type 1 only; default: none).
    #[serde(default)]
    pub apply_as_truncates: Option<String>,
    /// SCD type 2 `TRACK HISTORY ON`: only changes to these columns open a new version;
    /// changes to other columns update the current version in place (default: every stored
    /// column except the keys and the sequence column).
    #[serde(default)]
    pub track_history_columns: Option<Vec<String>>,
    /// SCD type 2 `TRACK HISTORY ON * EXCEPT (…)`: changes to these columns update the current
    /// version in place (default: none).
    #[serde(default)]
    pub track_history_except: Option<Vec<String>>,
    /// This table's tombstone retention, overriding `pipeline.tombstone_retention` (a
    /// duration; default: the pipeline's).
    #[serde(default)]
    pub tombstone_retention: Option<String>,
    /// `[[table.expect]]`: data quality expectations on the incoming records (default: none).
    #[serde(default)]
    pub expect: Vec<ExpectConfig>,
    /// APPLY CHANGES `APPLY AS DELETE WHEN`: a SQL condition on the flattened record (any of
    /// its columns, `__op` included) under which a record deletes its key (default:
    /// `__op = 'd'`), e.g. `"__op = 'd' OR is_deleted"` for soft deletes. A condition that does
    /// not parse or names an unknown column is a config error naming the table and the text.
    #[serde(default)]
    pub apply_as_deletes: Option<String>,
    /// An event-time watermark (`{ column = "event_time", allowed_lateness = "2m" }`): after
    /// each epoch the watermark is the largest `column` value of the table's records so far
    /// (over all workers) minus `allowed_lateness`; an upsert whose event time is below the
    /// watermark of the epochs before its own is late: it goes to the `_late` table (never
    /// applied, never dropped silently), and an upsert without an event time to
    /// `_quarantine`. Windowed views (`TUMBLE` / `HOP`) read tables with a watermark
    /// (default: none).
    #[serde(default)]
    pub watermark: Option<WatermarkConfig>,
    /// `kafka` sources feeding several tables: the topics of the source this table reads
    /// (default: the topics named like the table — `<table>` or `….<table>`, as Debezium
    /// names them — or, if the source feeds only this table, all its topics).
    #[serde(default)]
    pub topics: Option<Vec<String>>,
}

/// `[[table]] watermark = { … }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkConfig {
    /// The event-time column (required; a `timestamp` column of the table).
    pub column: String,
    /// How far behind the largest event time seen a record may be and still count (a
    /// duration, e.g. `"2m"`; default `"0s"`).
    #[serde(default = "default_lateness")]
    pub allowed_lateness: String,
}

fn default_lateness() -> String {
    "0s".into()
}

impl WatermarkConfig {
    /// The allowed lateness in microseconds; `key` names it in the error.
    pub fn lateness_micros(&self, key: &str) -> Result<i64, TidewaterError> {
        let d: Duration = humantime::parse_duration(&self.allowed_lateness)
            .map_err(|e| err(key.to_string(), format!("not a duration: {e}")))?;
        Ok(d.as_micros().min(i64::MAX as u128) as i64)
    }
}

fn default_scd() -> u8 {
    1
}

/// `columns` of a `[[table]]`: declared types (a TOML table) or the stored columns (a list).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ColumnsSpec {
    /// `columns = { name = "type", … }`: declared column types.
    Types(BTreeMap<String, String>),
    /// `columns = ["a", "b"]`: the columns the table stores.
    Select(Vec<String>),
}

impl Default for ColumnsSpec {
    fn default() -> Self {
        ColumnsSpec::Types(BTreeMap::new())
    }
}

/// `schema_evolution` of a table: what happens to fields the source schema does not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaEvolution {
    /// Add them as new nullable columns of the table (in the Delta commit of the epoch that
    /// first carries them; columns added in one epoch are ordered by name).
    #[default]
    AddNewColumns,
    /// Keep them in the `_rescued_data` column as a JSON object.
    Rescue,
    /// Stop the pipeline.
    Fail,
}

/// What an expectation does with a record that violates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    /// Keep the record and count the violation.
    Warn,
    /// Drop the record and count it.
    Drop,
    /// Move the record to `_quarantine` with the expectation's name, and count it.
    Quarantine,
    /// Stop the pipeline with an error naming the expectation and showing the record; every
    /// table stays at its last committed epoch.
    Fail,
}

/// `[[table.expect]]`: a data quality expectation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfig {
    /// Name (required, unique within the table); counts in the event log are keyed by it.
    pub name: String,
    /// A SQL condition on the flattened record that every upsert must satisfy (required). A
    /// record for which it is false or NULL violates the expectation.
    pub condition: String,
    /// `warn` | `drop` | `quarantine` | `fail` (default `warn`).
    #[serde(default = "default_on_violation")]
    pub on_violation: OnViolation,
}

fn default_on_violation() -> OnViolation {
    OnViolation::Warn
}

fn err(key: impl Into<String>, message: impl Into<String>) -> TidewaterError {
    TidewaterError::Config {
        key: key.into(),
        message: message.into(),
    }
}

/// Names reserved for tidewater's own tables.
pub const RESERVED_TABLES: [&str; 3] = ["_quarantine", "_late", "_event_log"];

impl PipelineConfig {
    /// Reads, parses and validates a pipeline file; relative paths are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<PipelineConfig, TidewaterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("<file>", format!("cannot read {}: {e}", path.display())))?;
        let mut cfg = Self::parse(&text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text (no validation, no path resolution). A table without a watermark
    /// of its own takes its source's `watermark`.
    pub fn parse(text: &str) -> Result<PipelineConfig, TidewaterError> {
        let mut cfg: PipelineConfig = Self::parse_toml(text)?;
        for t in &mut cfg.table {
            if t.watermark.is_none() {
                t.watermark = cfg
                    .source
                    .iter()
                    .find(|s| s.name == t.from)
                    .and_then(|s| s.watermark.clone());
            }
        }
        Ok(cfg)
    }

    fn parse_toml(text: &str) -> Result<PipelineConfig, TidewaterError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let key = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "<file>".into());
            err(key, message)
        })
    }

    /// Makes relative paths absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.pipeline.lakehouse.is_relative() {
            self.pipeline.lakehouse = base.join(&self.pipeline.lakehouse);
        }
        if let Some(d) = self.pipeline.spill_dir.as_mut() {
            if d.is_relative() {
                *d = base.join(&*d);
            }
        }
        for s in &mut self.source {
            if let Some(p) = &s.path {
                if p.is_relative() {
                    s.path = Some(base.join(p));
                }
            }
        }
        for v in &mut self.view {
            if let Some(p) = &v.sql_file {
                if p.is_relative() {
                    v.sql_file = Some(base.join(p));
                }
            }
        }
    }

    /// Checks the configuration; the error names the offending key.
    pub fn validate(&self) -> Result<(), TidewaterError> {
        let p = &self.pipeline;
        if p.name.trim().is_empty() || p.name.contains('/') {
            return Err(err("pipeline.name", "must be a non-empty name without '/'"));
        }
        if p.commit_interval_ms == 0 {
            return Err(err("pipeline.commit_interval_ms", "must be at least 1"));
        }
        if p.commit_every_records == Some(0) {
            return Err(err("pipeline.commit_every_records", "must be at least 1"));
        }
        if p.buckets == 0 || p.buckets > 65_536 {
            return Err(err("pipeline.buckets", "must be between 1 and 65536"));
        }
        if p.checkpoint_interval == 0 {
            return Err(err("pipeline.checkpoint_interval", "must be at least 1"));
        }
        if p.block_bytes < 1024 {
            return Err(err("pipeline.block_bytes", "must be at least 1024"));
        }
        self.tombstone_retention()?;
        if self.table.is_empty() {
            return Err(err("table", "the pipeline declares no [[table]]"));
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.source {
            let key = format!("source `{}`", s.name);
            if !names.insert(s.name.clone()) {
                return Err(err(key, "duplicate source name"));
            }
            if let Some(w) = &s.watermark {
                w.lateness_micros(&format!("{key}.watermark.allowed_lateness"))?;
            }
            if s.format != "debezium-json" {
                return Err(err(
                    format!("{key}.format"),
                    format!("unknown format `{}` (supported: debezium-json)", s.format),
                ));
            }
            if s.stream.is_some() && s.kind != SourceKind::Generator {
                return Err(err(
                    format!("{key}.stream"),
                    "only for kind = \"generator\" with workload = \"marketing\", \
                     \"telematics\" or \"offers\"",
                ));
            }
            match s.kind {
                SourceKind::Files => {
                    let Some(path) = &s.path else {
                        return Err(err(format!("{key}.path"), "required for kind = \"files\""));
                    };
                    if !path.exists() {
                        return Err(err(
                            format!("{key}.path"),
                            format!("{} does not exist", path.display()),
                        ));
                    }
                }
                SourceKind::Generator => {
                    if s.keys == Some(0) {
                        return Err(err(format!("{key}.keys"), "must be at least 1"));
                    }
                    match s.workload.as_deref() {
                        None | Some("bank") | Some("transfers") => {}
                        Some(w @ ("marketing" | "telematics" | "offers")) => {
                            // Which streams the workload's world has.
                            let (known, names) = match w {
                                "marketing" => (
                                    s.stream
                                        .as_deref()
                                        .and_then(MarketingStream::parse)
                                        .is_some(),
                                    MarketingStream::names(),
                                ),
                                "telematics" => (
                                    s.stream
                                        .as_deref()
                                        .and_then(TelematicsStream::parse)
                                        .is_some(),
                                    TelematicsStream::names(),
                                ),
                                _ => (
                                    s.stream.as_deref().and_then(OffersStream::parse).is_some(),
                                    OffersStream::names(),
                                ),
                            };
                            match s.stream.as_deref() {
                                Some(_) if known => {}
                                Some(name) => {
                                    return Err(err(
                                        format!("{key}.stream"),
                                        format!("unknown stream `{name}` (supported: {names})"),
                                    ))
                                }
                                None => {
                                    return Err(err(
                                        format!("{key}.stream"),
                                        format!(
                                            "required for workload = \"{w}\" (one of: {names})"
                                        ),
                                    ))
                                }
                            }
                        }
                        Some(w) => {
                            return Err(err(
                                format!("{key}.workload"),
                                format!(
                                    "unknown workload `{w}` (supported: bank, transfers, \
                                     marketing, telematics, offers)"
                                ),
                            ))
                        }
                    }
                    if s.stream.is_some()
                        && !matches!(
                            s.workload.as_deref(),
                            Some("marketing" | "telematics" | "offers")
                        )
                    {
                        return Err(err(
                            format!("{key}.stream"),
                            "only for workload = \"marketing\", \"telematics\" or \"offers\"",
                        ));
                    }
                }
                SourceKind::Kafka => {
                    if s.brokers.as_deref().is_none_or(|b| b.trim().is_empty()) {
                        return Err(err(
                            format!("{key}.brokers"),
                            "required for kind = \"kafka\"",
                        ));
                    }
                    if s.topics.as_ref().is_none_or(|t| t.is_empty()) {
                        return Err(err(
                            format!("{key}.topics"),
                            "at least one topic is required for kind = \"kafka\"",
                        ));
                    }
                    if s.group_id.as_deref().is_some_and(|g| g.trim().is_empty()) {
                        return Err(err(format!("{key}.group_id"), "must not be empty"));
                    }
                    s.kafka().validate().map_err(|e| match e {
                        tidewater_connectors::ConnectorError::Config { key: k, message } => {
                            err(format!("{key}.{k}"), message)
                        }
                        other => err(key.clone(), other.to_string()),
                    })?;
                }
            }
        }
        let mut tables = std::collections::BTreeSet::new();
        let mut used_sources = std::collections::BTreeSet::new();
        for t in &self.table {
            let key = format!("table `{}`", t.name);
            if t.name.is_empty() || t.name.contains('/') || t.name.starts_with('.') {
                return Err(err(
                    key,
                    "table names must be non-empty, without '/' and not start with '.'",
                ));
            }
            if RESERVED_TABLES.contains(&t.name.as_str()) {
                return Err(err(key, "this table name is reserved by tidewater"));
            }
            if !tables.insert(t.name.clone()) {
                return Err(err(key, "duplicate table name"));
            }
            if !names.contains(&t.from) {
                return Err(err(
                    format!("{key}.from"),
                    format!("unknown source `{}`", t.from),
                ));
            }
            let from_kafka = self
                .source
                .iter()
                .any(|s| s.name == t.from && s.kind == SourceKind::Kafka);
            if t.topics.is_some() && !from_kafka {
                return Err(err(
                    format!("{key}.topics"),
                    "only a table fed by a kafka source names topics",
                ));
            }
            if !used_sources.insert(t.from.clone()) && !from_kafka {
                return Err(err(
                    format!("{key}.from"),
                    format!(
                        "source `{}` already feeds another table (one table per source)",
                        t.from
                    ),
                ));
            }
            if t.keys.is_empty() {
                return Err(err(
                    format!("{key}.keys"),
                    "at least one key column is required",
                ));
            }
            if t.sequence_by.is_empty() {
                return Err(err(format!("{key}.sequence_by"), "required"));
            }
            if t.scd != 1 && t.scd != 2 {
                return Err(err(
                    format!("{key}.scd"),
                    format!("scd = {} is not supported (1 or 2)", t.scd),
                ));
            }
            if t.scd == 2 && t.apply_as_truncates.is_some() {
                return Err(err(
                    format!("{key}.apply_as_truncates"),
                    "truncates apply to scd = 1 tables only",
                ));
            }
            if t.scd == 1 && (t.track_history_columns.is_some() || t.track_history_except.is_some())
            {
                return Err(err(
                    format!("{key}.track_history_columns"),
                    "track_history_columns / track_history_except need scd = 2",
                ));
            }
            if t.track_history_columns.is_some() && t.track_history_except.is_some() {
                return Err(err(
                    format!("{key}.track_history_except"),
                    "give track_history_columns or track_history_except, not both",
                ));
            }
            if matches!(t.columns, ColumnsSpec::Select(_)) && !t.except_columns.is_empty() {
                return Err(err(
                    format!("{key}.except_columns"),
                    "give a `columns` list or `except_columns`, not both",
                ));
            }
            self.table_tombstone_retention(t)?;
            if let Some(w) = &t.watermark {
                w.lateness_micros(&format!("{key}.watermark.allowed_lateness"))?;
            }
            let mut expectations = std::collections::BTreeSet::new();
            for x in &t.expect {
                if x.name.trim().is_empty() {
                    return Err(err(format!("{key}.expect"), "an expectation needs a name"));
                }
                if !expectations.insert(x.name.as_str()) {
                    return Err(err(
                        format!("{key}.expect `{}`", x.name),
                        "duplicate expectation name",
                    ));
                }
            }
            for (c, ty) in t.declared_types() {
                if ColumnType::parse(ty).is_none() {
                    return Err(err(
                        format!("{key}.columns.{c}"),
                        format!("unknown type `{ty}` (int8..int64, float, double, boolean, string, bytes, timestamp, decimal(p,s))"),
                    ));
                }
            }
        }
        for v in &self.view {
            let key = format!("view `{}`", v.name);
            if v.name.is_empty() || v.name.contains('/') || v.name.starts_with('.') {
                return Err(err(
                    key,
                    "view names must be non-empty, without '/' and not start with '.'",
                ));
            }
            if RESERVED_TABLES.contains(&v.name.as_str()) {
                return Err(err(key, "this name is reserved by tidewater"));
            }
            if !tables.insert(v.name.clone()) {
                return Err(err(key, "a table or view of this name is declared already"));
            }
            v.query_text()?;
            if v.buckets.is_some_and(|b| b == 0 || b > 65_536) {
                return Err(err(format!("{key}.buckets"), "must be between 1 and 65536"));
            }
            if v.keys.as_ref().is_some_and(|k| k.is_empty()) {
                return Err(err(
                    format!("{key}.keys"),
                    "an empty list: leave `keys` out to use the GROUP BY columns",
                ));
            }
            v.emit_mode()?;
            if matches!(v.test, Some(OnViolation::Drop | OnViolation::Quarantine)) {
                return Err(err(
                    format!("{key}.test"),
                    "a test view counts its violations: \"warn\" or \"fail\"",
                ));
            }
        }
        // Every topic of a kafka source feeds exactly one table, and every table one topic
        // at least.
        for src in self.source.iter().filter(|s| s.kind == SourceKind::Kafka) {
            let tables: Vec<&TableConfig> =
                self.table.iter().filter(|t| t.from == src.name).collect();
            let mut fed: BTreeMap<&str, &str> = BTreeMap::new();
            for t in &tables {
                let topics = self.topics_of(t);
                if topics.is_empty() {
                    return Err(err(
                        format!("table `{}`.topics", t.name),
                        format!(
                            "no topic of source `{}` ({}) feeds this table: name them in `topics`",
                            src.name,
                            src.topics
                                .iter()
                                .flatten()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                for topic in topics {
                    if !src.topics.iter().flatten().any(|x| *x == topic) {
                        return Err(err(
                            format!("table `{}`.topics", t.name),
                            format!("`{topic}` is not a topic of source `{}`", src.name),
                        ));
                    }
                    if let Some(other) = fed.insert(
                        src.topics
                            .iter()
                            .flatten()
                            .find(|x| **x == topic)
                            .expect("listed"),
                        &t.name,
                    ) {
                        return Err(err(
                            format!("table `{}`.topics", t.name),
                            format!("topic `{topic}` already feeds table `{other}`"),
                        ));
                    }
                }
            }
            if !tables.is_empty() {
                if let Some(t) = src
                    .topics
                    .iter()
                    .flatten()
                    .find(|t| !fed.contains_key(t.as_str()))
                {
                    return Err(err(
                        format!("source `{}`.topics", src.name),
                        format!("topic `{t}` feeds no table (name it in a table's `topics`)"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The topics of its kafka source that a table reads (see [`TableConfig::topics`]).
    pub fn topics_of(&self, table: &TableConfig) -> Vec<String> {
        let src = self.source_of(table);
        let all: Vec<String> = src.topics.clone().unwrap_or_default();
        if let Some(t) = &table.topics {
            return t.clone();
        }
        let fed = self.table.iter().filter(|t| t.from == src.name).count();
        if fed == 1 {
            return all;
        }
        all.into_iter()
            .filter(|t| *t == table.name || t.ends_with(&format!(".{}", table.name)))
            .collect()
    }

    /// The tombstone retention in epochs.
    pub fn tombstone_retention(&self) -> Result<u64, TidewaterError> {
        self.retention_epochs(
            &self.pipeline.tombstone_retention,
            "pipeline.tombstone_retention".into(),
        )
    }

    /// The tombstone retention of a table in epochs (its own, else the pipeline's).
    pub fn table_tombstone_retention(&self, t: &TableConfig) -> Result<u64, TidewaterError> {
        match &t.tombstone_retention {
            Some(text) => {
                self.retention_epochs(text, format!("table `{}`.tombstone_retention", t.name))
            }
            None => self.tombstone_retention(),
        }
    }

    /// A retention duration (`"7d"`) in epochs of `commit_interval_ms`; `key` names it in
    /// the error.
    fn retention_epochs(&self, text: &str, key: String) -> Result<u64, TidewaterError> {
        let d: Duration = humantime::parse_duration(text)
            .map_err(|e| err(key, format!("not a duration: {e}")))?;
        Ok((d.as_millis() as u64).div_ceil(self.pipeline.commit_interval_ms))
    }

    /// The source feeding a table.
    pub fn source_of(&self, table: &TableConfig) -> &SourceConfig {
        self.source
            .iter()
            .find(|s| s.name == table.from)
            .expect("validated")
    }
}

impl TableConfig {
    /// The declared columns with parsed types.
    pub fn declared_columns(&self) -> Vec<(String, ColumnType)> {
        self.declared_types()
            .map(|(n, t)| (n.clone(), ColumnType::parse(t).expect("validated")))
            .collect()
    }

    /// The declared types as written: `columns = { … }` and `column_types`.
    fn declared_types(&self) -> impl Iterator<Item = (&String, &String)> {
        let listed = match &self.columns {
            ColumnsSpec::Types(m) => Some(m),
            ColumnsSpec::Select(_) => None,
        };
        listed.into_iter().flatten().chain(&self.column_types)
    }

    /// The columns the table stores, if listed (`columns = [ … ]`).
    pub fn selected_columns(&self) -> Option<&[String]> {
        match &self.columns {
            ColumnsSpec::Select(v) => Some(v),
            ColumnsSpec::Types(_) => None,
        }
    }
}

impl SourceConfig {
    /// The Kafka settings of a `kafka` source.
    pub fn kafka(&self) -> KafkaConfig {
        let mut k = KafkaConfig::new(
            self.brokers.clone().unwrap_or_default(),
            &self
                .topics
                .iter()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        k.properties = self.properties.clone();
        if let Some(v) = self.max_message_bytes {
            k.max_message_bytes = v;
        }
        if let Some(v) = self.fetch_wait_ms {
            k.fetch_wait_ms = v;
        }
        if let Some(v) = self.connect_timeout_ms {
            k.connect_timeout = Duration::from_millis(v);
        }
        k
    }

    /// The generator of a `generator` source (by `workload`), with its settings.
    pub fn generator(&self) -> GeneratorConfig {
        // A generator of one stream of a simulated world: `keys` scales the world, `stream`
        // picks the stream (validated in `validate`), the common settings override.
        macro_rules! world {
            ($variant:ident, $config:ident, $stream:ident) => {{
                let mut g = match self.keys {
                    Some(keys) => $config::scaled(keys),
                    None => $config::default(),
                };
                if let Some(v) = self.seed {
                    g.seed = v;
                }
                if let Some(v) = self.events {
                    g.events = v;
                }
                if let Some(v) = self.with_schema {
                    g.with_schema = v;
                }
                if let Some(stream) = self.stream.as_deref().and_then($stream::parse) {
                    g.stream = stream;
                }
                GeneratorConfig::$variant(g)
            }};
        }
        match self.workload.as_deref() {
            Some("transfers") => {
                let mut g = TransfersGenConfig::default();
                if let Some(v) = self.seed {
                    g.seed = v;
                }
                if let Some(v) = self.events {
                    g.events = v;
                }
                if let Some(v) = self.keys {
                    g.accounts = v;
                }
                if let Some(v) = self.with_schema {
                    g.with_schema = v;
                }
                GeneratorConfig::Transfers(g)
            }
            Some("marketing") => world!(Marketing, MarketingGenConfig, MarketingStream),
            Some("telematics") => world!(Telematics, TelematicsGenConfig, TelematicsStream),
            Some("offers") => world!(Offers, OffersGenConfig, OffersStream),
            _ => GeneratorConfig::Bank(self.generator_config()),
        }
    }

    /// The settings of the bank generator of a `generator` source (`workload = "bank"`).
    pub fn generator_config(&self) -> BankGenConfig {
        let mut g = BankGenConfig::default();
        if let Some(v) = self.seed {
            g.seed = v;
        }
        if let Some(v) = self.events {
            g.events = v;
        }
        if let Some(v) = self.keys {
            g.keys = v;
        }
        if let Some(v) = self.with_schema {
            g.with_schema = v;
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[pipeline]
name = "bank"
lakehouse = "/tmp/lh"
commit_interval_ms = 1000

[[source]]
name = "customers_cdc"
kind = "generator"

[[table]]
name = "customers"
from = "customers_cdc"
keys = ["customer_id"]
sequence_by = "__lsn"
scd = 1
"#;

    #[test]
    fn a_table_takes_its_sources_watermark_unless_it_declares_one() {
        let on_source = MINIMAL.replace(
            "kind = \"generator\"",
            "kind = \"generator\"\nwatermark = { column = \"t\", allowed_lateness = \"2m\" }",
        );
        let on_both = on_source.replace(
            "scd = 1",
            "scd = 1\nwatermark = { column = \"u\", allowed_lateness = \"5s\" }",
        );
        let w = |text: &str| {
            let c = PipelineConfig::parse(text).unwrap();
            c.validate().unwrap();
            c.table[0]
                .watermark
                .as_ref()
                .map(|w| (w.column.clone(), w.lateness_micros("x").unwrap()))
        };
        assert_eq!(w(&on_source), Some(("t".to_string(), 120_000_000)));
        assert_eq!(w(&on_both), Some(("u".to_string(), 5_000_000)));
        assert_eq!(w(MINIMAL), None);
    }

    #[test]
    fn minimal_file_parses_with_defaults() {
        let c = PipelineConfig::parse(MINIMAL).unwrap();
        c.validate().unwrap();
        assert_eq!(c.pipeline.buckets, 16);
        assert_eq!(c.tombstone_retention().unwrap(), 7 * 24 * 3600);
    }

    fn error_of(text: &str) -> String {
        let r = PipelineConfig::parse(text).and_then(|c| c.validate());
        r.unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(
            error_of(&MINIMAL.replace("from = \"customers_cdc\"", "from = \"nope\""))
                .contains("table `customers`.from")
        );
        assert!(
            error_of(&MINIMAL.replace("scd = 1", "scd = 3")).contains("scd = 3 is not supported")
        );
        let with = |extra: &str| MINIMAL.replace("scd = 1", &format!("scd = 1\n{extra}"));
        assert!(error_of(&with("track_history_columns = [\"a\"]"))
            .contains("table `customers`.track_history_columns"));
        assert!(
            error_of(&with("columns = [\"a\"]\nexcept_columns = [\"b\"]"))
                .contains("table `customers`.except_columns")
        );
        assert!(error_of(&with("tombstone_retention = \"soon\""))
            .contains("table `customers`.tombstone_retention"));
        assert!(error_of(&with(
            "[[table.expect]]\nname = \"x\"\ncondition = \"true\"\n[[table.expect]]\nname = \"x\"\ncondition = \"true\""
        ))
        .contains("table `customers`.expect `x`"));
        assert!(
            error_of(&MINIMAL.replace("scd = 1", "scd = 2\napply_as_truncates = \"true\""))
                .contains("table `customers`.apply_as_truncates")
        );
        assert!(
            error_of(&MINIMAL.replace("kind = \"generator\"", "kind = \"kafka\""))
                .contains("source `customers_cdc`.brokers")
        );
        assert!(
            error_of(&MINIMAL.replace("keys = [\"customer_id\"]", "keys = []")).contains("keys")
        );
        assert!(
            error_of(&MINIMAL.replace("commit_interval_ms = 1000", "commit_intervall_ms = 5"))
                .contains("unknown field `commit_intervall_ms`")
        );
        assert_eq!(
            error_of(&format!("{MINIMAL}\n[[view]]\nname = \"v\"\n")),
            "config error at view `v`: give exactly one of `sql` and `sql_file`"
        );
        assert_eq!(
            error_of(&format!(
                "{MINIMAL}\n[[view]]\nname = \"customers\"\nsql = \"SELECT 1\"\n"
            )),
            "config error at view `customers`: a table or view of this name is declared already"
        );
        assert!(error_of(&format!(
            "{MINIMAL}\n[[view]]\nname = \"v\"\nsql = \"SELECT 1\"\nemit = \"at_noon\"\n"
        ))
        .contains("view `v`.emit: \"at_noon\" is not one of: on_update, on_close"));
        // A watermark's lateness must be a duration.
        assert!(error_of(&MINIMAL.replace(
            "scd = 1",
            "scd = 1\nwatermark = { column = \"t\", allowed_lateness = \"later\" }"
        ))
        .contains("table `customers`.watermark.allowed_lateness: not a duration"));
        assert!(error_of(&MINIMAL.replace(
            "kind = \"generator\"",
            "kind = \"generator\"\nwatermark = { column = \"t\", allowed_lateness = \"soon\" }"
        ))
        .contains("source `customers_cdc`.watermark.allowed_lateness: not a duration"));
        assert!(error_of(&format!(
            "{MINIMAL}\n[[view]]\nname = \"v\"\nsql_file = \"/nonexistent/v.sql\"\n"
        ))
        .contains("view `v`.sql_file: cannot read /nonexistent/v.sql"));
        assert!(error_of(&MINIMAL.replace(
            "kind = \"generator\"",
            "kind = \"generator\"\nworkload = \"transfer\""
        ))
        .contains("source `customers_cdc`.workload"));
    }

    #[test]
    fn kafka_topics_map_to_tables_by_name_or_explicitly() {
        let two = |t1: &str, t2: &str| {
            format!(
                r#"
[pipeline]
name = "bank"
lakehouse = "/tmp/lh"

[[source]]
name = "cdc"
kind = "kafka"
brokers = "127.0.0.1:9092"
topics = ["bank.public.customers", "bank.public.accounts"]

[[table]]
name = "customers"
from = "cdc"
keys = ["customer_id"]
sequence_by = "__lsn"
{t1}

[[table]]
name = "accounts"
from = "cdc"
keys = ["account_id"]
sequence_by = "__lsn"
{t2}
"#
            )
        };
        // By name.
        let c = PipelineConfig::parse(&two("", "")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.topics_of(&c.table[0]), vec!["bank.public.customers"]);
        assert_eq!(c.topics_of(&c.table[1]), vec!["bank.public.accounts"]);
        // Explicitly.
        let c = PipelineConfig::parse(&two(
            "topics = [\"bank.public.accounts\"]",
            "topics = [\"bank.public.customers\"]",
        ))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.topics_of(&c.table[0]), vec!["bank.public.accounts"]);
        // Errors name the table and the topic.
        let e = error_of(&two("topics = [\"bank.public.accounts\"]", ""));
        assert!(
            e.contains("table `accounts`.topics") && e.contains("already feeds table `customers`"),
            "{e}"
        );
        let e = error_of(&two("topics = [\"nope\"]", ""));
        assert!(e.contains("`nope` is not a topic of source `cdc`"), "{e}");
        let e = error_of(&two("", "").replace("name = \"accounts\"", "name = \"balances\""));
        assert!(e.contains("table `balances`.topics"), "{e}");
        let e = error_of(&two("", "").replace(
            "topics = [\"bank.public.customers\", \"bank.public.accounts\"]",
            "topics = [\"bank.public.customers\", \"bank.public.accounts\", \"x\"]",
        ));
        assert!(e.contains("topic `x` feeds no table"), "{e}");
    }

    #[test]
    fn workload_selects_the_generator() {
        let c = PipelineConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.source[0].generator().workload(), "bank");
        let c = PipelineConfig::parse(&MINIMAL.replace(
            "kind = \"generator\"",
            "kind = \"generator\"\nworkload = \"transfers\"\nkeys = 50\nevents = 10",
        ))
        .unwrap();
        c.validate().unwrap();
        let g = c.source[0].generator();
        assert_eq!(g.workload(), "transfers");
        assert_eq!(g.total_lines(), 50, "the snapshot of 50 accounts is whole");
    }

    #[test]
    fn marketing_workload_needs_a_stream() {
        let with = |extra: &str| {
            MINIMAL.replace(
                "kind = \"generator\"",
                &format!("kind = \"generator\"\n{extra}"),
            )
        };
        let c = PipelineConfig::parse(&with(
            "workload = \"marketing\"\nstream = \"activity_open_email\"\nkeys = 40\nevents = 500\nseed = 3",
        ))
        .unwrap();
        c.validate().unwrap();
        let GeneratorConfig::Marketing(g) = c.source[0].generator() else {
            panic!("not the marketing generator");
        };
        assert_eq!(g.stream, MarketingStream::ActivityOpenEmail);
        assert_eq!((g.seed, g.events), (3, 500));
        assert_eq!((g.leads, g.users, g.accounts), (40, 20, 2));
        assert_eq!(
            c.source[0].generator().total_lines(),
            g.stream_lines()[MarketingStream::ActivityOpenEmail.index()]
        );
        let e = error_of(&with("workload = \"marketing\""));
        assert!(
            e.contains("source `customers_cdc`.stream") && e.contains("required"),
            "{e}"
        );
        let e = error_of(&with("workload = \"marketing\"\nstream = \"users\""));
        assert!(
            e.contains("source `customers_cdc`.stream") && e.contains("unknown stream `users`"),
            "{e}"
        );
        let e = error_of(&with("workload = \"transfers\"\nstream = \"user\""));
        assert!(e.contains("source `customers_cdc`.stream"), "{e}");
        let e = error_of(&with("stream = \"user\""));
        assert!(e.contains("source `customers_cdc`.stream"), "{e}");
    }

    #[test]
    fn telematics_workload_needs_a_stream() {
        let with = |extra: &str| {
            MINIMAL.replace(
                "kind = \"generator\"",
                &format!("kind = \"generator\"\n{extra}"),
            )
        };
        let c = PipelineConfig::parse(&with(
            "workload = \"telematics\"\nstream = \"claim\"\nkeys = 12\nevents = 3000\nseed = 3",
        ))
        .unwrap();
        c.validate().unwrap();
        let GeneratorConfig::Telematics(g) = c.source[0].generator() else {
            panic!("not the telematics generator");
        };
        assert_eq!(g.stream, TelematicsStream::Claim);
        assert_eq!((g.seed, g.events, g.vehicles), (3, 3000, 12));
        assert_eq!(c.source[0].generator().workload(), "telematics");
        assert_eq!(
            c.source[0].generator().total_lines(),
            g.stream_lines()[TelematicsStream::Claim.index()]
        );
        // Defaults: 200 vehicles.
        let c = PipelineConfig::parse(&with("workload = \"telematics\"\nstream = \"reading\""))
            .unwrap();
        let GeneratorConfig::Telematics(g) = c.source[0].generator() else {
            panic!("not the telematics generator");
        };
        assert_eq!((g.vehicles, g.stream), (200, TelematicsStream::Reading));
        let e = error_of(&with("workload = \"telematics\""));
        assert!(
            e.contains("source `customers_cdc`.stream")
                && e.contains("required for workload = \"telematics\"")
                && e.contains("reading, policy, claim"),
            "{e}"
        );
        let e = error_of(&with("workload = \"telematics\"\nstream = \"readings\""));
        assert!(
            e.contains("source `customers_cdc`.stream")
                && e.contains("unknown stream `readings`")
                && e.contains("reading, policy, claim"),
            "{e}"
        );
        // A marketing stream is not a telematics stream, nor the other way round.
        let e = error_of(&with("workload = \"telematics\"\nstream = \"lead\""));
        assert!(e.contains("unknown stream `lead`"), "{e}");
        let e = error_of(&with("workload = \"marketing\"\nstream = \"claim\""));
        assert!(e.contains("unknown stream `claim`"), "{e}");
        let e = error_of(&with("workload = \"bank\"\nstream = \"claim\""));
        assert!(e.contains("source `customers_cdc`.stream"), "{e}");
        let e = error_of(&with("workload = \"telematic\"\nstream = \"claim\""));
        assert!(
            e.contains("source `customers_cdc`.workload") && e.contains("telematics"),
            "{e}"
        );
    }

    #[test]
    fn offers_workload_needs_a_stream() {
        let with = |extra: &str| {
            MINIMAL.replace(
                "kind = \"generator\"",
                &format!("kind = \"generator\"\n{extra}"),
            )
        };
        let c = PipelineConfig::parse(&with(
            "workload = \"offers\"\nstream = \"pattern\"\nkeys = 12\nevents = 3000\nseed = 3\nwith_schema = true",
        ))
        .unwrap();
        c.validate().unwrap();
        let GeneratorConfig::Offers(g) = c.source[0].generator() else {
            panic!("not the offers generator");
        };
        assert_eq!(g.stream, OffersStream::Pattern);
        assert_eq!((g.seed, g.events, g.customers), (3, 3000, 12));
        assert!(g.with_schema);
        assert_eq!(c.source[0].generator().workload(), "offers");
        assert_eq!(
            c.source[0].generator().total_lines(),
            g.stream_lines()[OffersStream::Pattern.index()]
        );
        // Defaults: 2000 customers, 200000 world lines.
        let c = PipelineConfig::parse(&with("workload = \"offers\"\nstream = \"transaction\""))
            .unwrap();
        c.validate().unwrap();
        let GeneratorConfig::Offers(g) = c.source[0].generator() else {
            panic!("not the offers generator");
        };
        assert_eq!(
            (g.customers, g.events, g.stream),
            (2000, 200_000, OffersStream::Transaction)
        );
        let e = error_of(&with("workload = \"offers\""));
        assert!(
            e.contains("source `customers_cdc`.stream")
                && e.contains("required for workload = \"offers\"")
                && e.contains("customer, pattern, transaction"),
            "{e}"
        );
        let e = error_of(&with("workload = \"offers\"\nstream = \"patterns\""));
        assert!(
            e.contains("source `customers_cdc`.stream")
                && e.contains("unknown stream `patterns`")
                && e.contains("customer, pattern, transaction"),
            "{e}"
        );
        // Another world's stream is not an offers stream, nor the other way round.
        let e = error_of(&with("workload = \"offers\"\nstream = \"claim\""));
        assert!(e.contains("unknown stream `claim`"), "{e}");
        let e = error_of(&with("workload = \"telematics\"\nstream = \"pattern\""));
        assert!(e.contains("unknown stream `pattern`"), "{e}");
        let e = error_of(&with("workload = \"bank\"\nstream = \"pattern\""));
        assert!(
            e.contains("source `customers_cdc`.stream") && e.contains("\"offers\""),
            "{e}"
        );
        let e = error_of(&with("workload = \"offer\"\nstream = \"pattern\""));
        assert!(
            e.contains("source `customers_cdc`.workload") && e.contains("offers"),
            "{e}"
        );
    }
}
