//! The committer: one Delta commit per table per epoch, carrying a `txn` action, then the
//! epoch manifest. Exactly one committer runs per pipeline (on worker 0 of process 0).

use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;
use std::path::{Path, PathBuf};

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, MetadataExt, Remove, StructField, StructType, Transaction};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, TableProperty};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::Url;

use super::log::{read_commit, read_commits, LogCommit};
use super::parquet::{delta_fields, AddFile};
use crate::types::{Column, ColumnType};
use crate::ConnectorError;

/// One file action of a table for an epoch, produced by a worker and sent to the committer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileAction {
    /// A new data file.
    Add(AddFile),
    /// A data file that no longer belongs to the table (its bucket was rewritten or emptied).
    Remove {
        /// Path relative to the table root.
        path: String,
        /// Size in bytes.
        size: i64,
    },
}

/// What the committer reports about a table commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A new Delta version was written.
    Committed(i64),
    /// The table's log already holds a `txn` version ≥ this epoch (a replay after a crash).
    AlreadyCommitted(i64),
}

/// The epoch manifest: `<lakehouse>/_tidewater/epochs/<epoch>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochManifest {
    /// The pipeline name.
    pub pipeline: String,
    /// The epoch.
    pub epoch: u64,
    /// The Delta version of every table of the pipeline that exists, as of this epoch.
    pub tables: BTreeMap<String, i64>,
    /// Source positions covered up to and including this epoch, per source.
    pub positions: Value,
}

/// Path of the manifest directory of a lakehouse.
pub fn manifest_dir(lakehouse: &Path) -> PathBuf {
    lakehouse.join("_tidewater").join("epochs")
}

/// Reads all epoch manifests of a lakehouse, by epoch.
pub fn read_manifests(lakehouse: &Path) -> Result<BTreeMap<u64, EpochManifest>, ConnectorError> {
    let dir = manifest_dir(lakehouse);
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ConnectorError::io(dir.display(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ConnectorError::io(dir.display(), e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(epoch) = name
            .strip_suffix(".json")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path())
            .map_err(|e| ConnectorError::io(entry.path().display(), e))?;
        let m: EpochManifest = serde_json::from_str(&text).map_err(|e| ConnectorError::Delta {
            table: "_tidewater/epochs".into(),
            message: format!("manifest {name} is not valid: {e}"),
        })?;
        out.insert(epoch, m);
    }
    Ok(out)
}

/// Where a pipeline stands in a lakehouse, read from the Delta logs of its tables (the log is
/// the truth; the epoch manifests are only a hint and are not read).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResumeInfo {
    /// Per table: the last epoch committed (the `txn` version of `<pipeline>/<table>`).
    pub per_table_committed: BTreeMap<String, Option<u64>>,
    /// The recorded cut: epoch → source → `{kind, ranges, records}`, the union of the
    /// `commitInfo.tidewater.positions` of all commits of all tables, for every epoch up to
    /// `max_epoch` (an epoch that changed no table is recorded in the next commit's map).
    pub recorded: BTreeMap<u64, BTreeMap<String, Value>>,
    /// The largest committed epoch over all tables.
    pub max_epoch: Option<u64>,
    /// Per table: epoch → the Delta version that committed it.
    pub versions: BTreeMap<String, BTreeMap<u64, i64>>,
    /// Per epoch that some table committed: the `positions` map of that commit (this epoch and
    /// the epochs folded into it), as written.
    pub commit_positions: BTreeMap<u64, Value>,
    /// Per existing table: the columns of its current schema (with the columns schema
    /// evolution added in earlier runs).
    pub columns: BTreeMap<String, Vec<Column>>,
}

impl ResumeInfo {
    /// The Delta version of `table` as of `epoch`: its commit of the largest epoch ≤ `epoch`.
    pub fn version_at(&self, table: &str, epoch: u64) -> Option<i64> {
        self.versions
            .get(table)?
            .range(..=epoch)
            .next_back()
            .map(|(_, v)| *v)
    }
}

/// Settings of the committer.
#[derive(Clone, Debug)]
pub struct CommitterConfig {
    /// The lakehouse directory (tables live at `<lakehouse>/<table>`).
    pub lakehouse: PathBuf,
    /// The pipeline name (the `txn` app id is `<pipeline>/<table>`).
    pub pipeline: String,
    /// Write a Delta checkpoint every this many commits of a table.
    pub checkpoint_interval: u64,
}

/// Commits epochs to Delta tables. Holds its own single-threaded tokio runtime.
pub struct Committer {
    config: CommitterConfig,
    rt: tokio::runtime::Runtime,
    tables: HashMap<String, DeltaTable>,
}

fn delta_err(table: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Delta {
        table: table.to_string(),
        message: e.to_string(),
    }
}

impl Committer {
    /// Creates a committer for a lakehouse (the directory is created if missing).
    pub fn new(config: CommitterConfig) -> Result<Self, ConnectorError> {
        std::fs::create_dir_all(&config.lakehouse)
            .map_err(|e| ConnectorError::io(config.lakehouse.display(), e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConnectorError::io("tokio runtime", e))?;
        Ok(Committer {
            config,
            rt,
            tables: HashMap::new(),
        })
    }

    /// The `txn` app id of a table.
    pub fn app_id(&self, table: &str) -> String {
        format!("{}/{}", self.config.pipeline, table)
    }

    fn table_dir(&self, table: &str) -> PathBuf {
        self.config.lakehouse.join(table)
    }

    fn table_url(&self, table: &str) -> Result<Url, ConnectorError> {
        let dir = self.table_dir(table);
        std::fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(dir.display(), e))?;
        let abs = dir
            .canonicalize()
            .map_err(|e| ConnectorError::io(dir.display(), e))?;
        Url::from_directory_path(&abs)
            .map_err(|_| delta_err(table, format!("cannot make a URL of {}", abs.display())))
    }

    /// Loads a table if it exists on disk (has a `_delta_log` with a commit).
    fn load(&mut self, table: &str) -> Result<Option<&mut DeltaTable>, ConnectorError> {
        if !self.tables.contains_key(table) {
            let log = self.table_dir(table).join("_delta_log");
            // A commit file (`<version>.json`) or a checkpoint makes a table; a crash while the
            // first commit was being written can leave the directory with only a temporary
            // file, which is no table yet (the first commit is then written again).
            let exists = std::fs::read_dir(&log)
                .map(|d| {
                    d.flatten().any(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        let version = name
                            .strip_suffix(".json")
                            .or_else(|| name.split_once(".checkpoint").map(|(v, _)| v));
                        version
                            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    })
                })
                .unwrap_or(false);
            if !exists {
                return Ok(None);
            }
            let url = self.table_url(table)?;
            let t = self
                .rt
                .block_on(deltalake::open_table(url))
                .map_err(|e| delta_err(table, e))?;
            // A table of this pipeline has no other writer (see DESIGN.md, "A second writer").
            self.check_sole_writer(table, 0)?;
            self.tables.insert(table.to_string(), t);
        }
        Ok(self.tables.get_mut(table))
    }

    /// The current Delta version of a table, if it exists.
    pub fn version(&mut self, table: &str) -> Result<Option<i64>, ConnectorError> {
        Ok(self
            .load(table)?
            .and_then(|t| t.version())
            .map(|v| v as i64))
    }

    /// The last epoch committed to a table by this pipeline (its `txn` version), if any.
    pub fn last_epoch(&mut self, table: &str) -> Result<Option<u64>, ConnectorError> {
        let app_id = self.app_id(table);
        if self.load(table)?.is_none() {
            return Ok(None);
        }
        let t = &self.tables[table];
        let log_store = t.log_store();
        let snapshot = t.snapshot().map_err(|e| delta_err(table, e))?;
        let v = self
            .rt
            .block_on(snapshot.transaction_version(log_store.as_ref(), app_id))
            .map_err(|e| delta_err(table, e))?;
        Ok(v.map(|v| v as u64))
    }

    /// Commits the file actions of one table for `epoch` as one Delta commit with a `txn`
    /// action `{appId: <pipeline>/<table>, version: epoch}` and `commitInfo.tidewater` =
    /// `metadata`. Creates the table with `columns` on its first commit. Skips the commit when
    /// the log already holds this epoch.
    pub fn commit(
        &mut self,
        epoch: u64,
        table: &str,
        columns: &[Column],
        actions: Vec<FileAction>,
        metadata: Value,
    ) -> Result<CommitOutcome, ConnectorError> {
        if let Some(done) = self.last_epoch(table)? {
            if done >= epoch {
                let v = self.version(table)?.unwrap_or(0);
                return Ok(CommitOutcome::AlreadyCommitted(v));
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        let delta_actions: Vec<Action> = actions
            .into_iter()
            .map(|a| match a {
                FileAction::Add(f) => Action::Add(Add {
                    path: f.path,
                    size: f.size,
                    modification_time: now,
                    data_change: true,
                    stats: Some(f.stats),
                    ..Default::default()
                }),
                FileAction::Remove { path, size } => Action::Remove(Remove {
                    path,
                    data_change: true,
                    deletion_timestamp: Some(now),
                    extended_file_metadata: Some(true),
                    partition_values: Some(HashMap::new()),
                    size: Some(size),
                    ..Default::default()
                }),
            })
            .collect();
        let app_id = self.app_id(table);
        // No retries: delta-rs would otherwise rebase this commit over a version another
        // writer committed meanwhile (appends do not conflict), hiding the second writer.
        let props = CommitProperties::default()
            .with_application_transaction(Transaction::new(&app_id, epoch as i64))
            .with_metadata([("tidewater".to_string(), metadata)])
            .with_cleanup_expired_logs(Some(false))
            .with_max_retries(0);

        let version = if self.load(table)?.is_none() {
            let url = self.table_url(table)?;
            let created = self.rt.block_on(
                CreateBuilder::new()
                    .with_location(url.to_string())
                    .with_table_name(table)
                    .with_columns(delta_fields(columns))
                    .with_save_mode(SaveMode::ErrorIfExists)
                    .with_configuration_property(
                        TableProperty::CheckpointInterval,
                        Some(self.config.checkpoint_interval.to_string()),
                    )
                    // Keep every JSON commit: restart reads the recorded source positions
                    // from their commitInfo (see `log.rs`).
                    .with_configuration_property(
                        TableProperty::EnableExpiredLogCleanup,
                        Some("false".to_string()),
                    )
                    .with_actions(delta_actions)
                    .with_commit_properties(props)
                    .into_future(),
            );
            let created = match created {
                Ok(t) => t,
                Err(e) => {
                    // Another writer created the table first: name it.
                    self.check_sole_writer(table, 0)?;
                    return Err(delta_err(table, e));
                }
            };
            let v = created.version().unwrap_or(0) as i64;
            self.tables.insert(table.to_string(), created);
            v
        } else {
            let base = self.tables[table].version().map_or(-1, |v| v as i64);
            // A version after the one we read was written by someone else (this committer is
            // the pipeline's only one and keeps its table state current).
            self.check_sole_writer(table, base + 1)?;
            let t = self.tables.get_mut(table).expect("loaded");
            let log_store = t.log_store();
            let snapshot = t.snapshot().map_err(|e| delta_err(table, e))?;
            // Schema evolution: columns the table does not have yet are appended to its
            // schema by a metaData action in this same commit.
            let schema = snapshot.schema();
            let added: Vec<StructField> = delta_fields(columns)
                .into_iter()
                .filter(|f| schema.field(f.name()).is_none())
                .collect();
            let mut delta_actions = delta_actions;
            if !added.is_empty() {
                let fields: Vec<StructField> = schema.fields().cloned().chain(added).collect();
                let evolved = StructType::try_new(fields).map_err(|e| delta_err(table, e))?;
                let metadata = snapshot
                    .metadata()
                    .clone()
                    .with_schema(&evolved)
                    .map_err(|e| delta_err(table, e))?;
                delta_actions.insert(0, Action::Metadata(metadata));
            }
            let op = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            };
            let finalized = self.rt.block_on(
                CommitBuilder::from(props)
                    .with_actions(delta_actions)
                    .build(Some(snapshot), log_store, op)
                    .into_future(),
            );
            let finalized = match finalized {
                Ok(f) => f,
                Err(e) => {
                    // Lost the race for version `base + 1` to another writer: name it.
                    self.check_sole_writer(table, base + 1)?;
                    return Err(delta_err(table, e));
                }
            };
            let t = self.tables.get_mut(table).expect("loaded");
            let v = finalized.version();
            self.rt
                .block_on(t.update_incremental(Some(v)))
                .map_err(|e| delta_err(table, e))?;
            v as i64
        };
        Ok(CommitOutcome::Committed(version))
    }

    /// The columns of a table's current schema (`None` if the table does not exist). Types
    /// that tidewater does not write are an error naming the column.
    fn table_columns(&mut self, table: &str) -> Result<Option<Vec<Column>>, ConnectorError> {
        let Some(t) = self.load(table)? else {
            return Ok(None);
        };
        let snapshot = t.snapshot().map_err(|e| delta_err(table, e))?;
        let schema = snapshot.schema();
        schema
            .fields()
            .map(|f| {
                let text = f.data_type().to_string();
                ColumnType::parse(&text)
                    .map(|ty| Column {
                        name: f.name().clone(),
                        ty,
                    })
                    .ok_or_else(|| {
                        delta_err(table, format!("column `{}` has type {text}", f.name()))
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Fails, naming the table and the other writer, if a JSON commit of `table` from version
    /// `from` on was not written by this pipeline: a commit is ours iff it carries a `txn`
    /// action with our app id `<pipeline>/<table>` (every tidewater commit does, the table's
    /// creation included).
    pub fn check_sole_writer(&self, table: &str, from: i64) -> Result<(), ConnectorError> {
        let dir = self.table_dir(table);
        let ours = self.app_id(table);
        let mut v = from.max(0);
        while let Some(c) = read_commit(&dir, v)? {
            if let Some(writer) = foreign_writer(&c, &ours) {
                return Err(delta_err(
                    table,
                    format!(
                        "a second writer commits to this table: version {v} was written by \
                         {writer}, not by this pipeline (app id `{ours}`). A tidewater table \
                         has exactly one writer; stopping without committing (the table is \
                         left as that writer left it). Give the pipeline its own lakehouse or \
                         table name."
                    ),
                ));
            }
            v += 1;
        }
        Ok(())
    }

    /// Writes the manifest of `epoch` (atomically: temporary file, then rename), mapping every
    /// table in `tables` that exists to its current Delta version.
    pub fn write_manifest(
        &mut self,
        epoch: u64,
        tables: &[String],
        positions: Value,
    ) -> Result<EpochManifest, ConnectorError> {
        let mut versions = BTreeMap::new();
        for t in tables {
            if let Some(v) = self.version(t)? {
                versions.insert(t.clone(), v);
            }
        }
        self.write_manifest_with(epoch, versions, positions)
    }

    /// Writes the manifest of `epoch` in a run that resumed from `resume`: a table that had
    /// already committed `epoch` or a later epoch before this run is at its version as of
    /// `epoch` (from its log, not its newest version: a replayed epoch may commit some tables,
    /// such as views recomputed at a restored checkpoint, while others are ahead); any other
    /// table at its current version.
    pub fn write_manifest_resumed(
        &mut self,
        epoch: u64,
        tables: &[String],
        positions: Value,
        resume: &ResumeInfo,
    ) -> Result<EpochManifest, ConnectorError> {
        let mut versions = BTreeMap::new();
        for t in tables {
            let ahead = resume
                .per_table_committed
                .get(t)
                .copied()
                .flatten()
                .is_some_and(|c| c >= epoch);
            let v = if ahead {
                resume.version_at(t, epoch)
            } else {
                self.version(t)?
            };
            if let Some(v) = v {
                versions.insert(t.clone(), v);
            }
        }
        self.write_manifest_with(epoch, versions, positions)
    }

    /// Whether the manifest of `epoch` exists.
    pub fn has_manifest(&self, epoch: u64) -> bool {
        manifest_dir(&self.config.lakehouse)
            .join(format!("{epoch}.json"))
            .exists()
    }

    /// Writes the manifest of `epoch` with the given table versions (a replayed epoch whose
    /// manifest was lost in a crash: the versions come from the logs).
    pub fn write_manifest_with(
        &mut self,
        epoch: u64,
        versions: BTreeMap<String, i64>,
        positions: Value,
    ) -> Result<EpochManifest, ConnectorError> {
        let manifest = EpochManifest {
            pipeline: self.config.pipeline.clone(),
            epoch,
            tables: versions,
            positions,
        };
        let dir = manifest_dir(&self.config.lakehouse);
        std::fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(dir.display(), e))?;
        let tmp = dir.join(format!(".{epoch}.json.tmp"));
        let path = dir.join(format!("{epoch}.json"));
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        std::fs::write(&tmp, text).map_err(|e| ConnectorError::io(tmp.display(), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ConnectorError::io(path.display(), e))?;
        Ok(manifest)
    }

    /// Reads where the pipeline stands from the logs of `tables` (which should include
    /// `_quarantine`): per table the last committed epoch, and the recorded cut of every epoch
    /// up to the largest of them. Fails if two tables recorded different positions for the same
    /// epoch and source, or if a table's JSON commits are incomplete.
    pub fn resume_info(&mut self, tables: &[String]) -> Result<ResumeInfo, ConnectorError> {
        let mut info = ResumeInfo::default();
        for table in tables {
            if let Some(columns) = self.table_columns(table)? {
                info.columns.insert(table.clone(), columns);
            }
            let committed = self.last_epoch(table)?;
            info.per_table_committed.insert(table.clone(), committed);
            let Some(committed) = committed else { continue };
            info.max_epoch = info.max_epoch.max(Some(committed));
            let mut versions = BTreeMap::new();
            for c in read_commits(&self.table_dir(table))? {
                let tw = &c.tidewater;
                if tw.get("pipeline").and_then(Value::as_str) != Some(&self.config.pipeline) {
                    continue;
                }
                let Some(epoch) = tw.get("epoch").and_then(Value::as_u64) else {
                    continue;
                };
                versions.insert(epoch, c.version);
                let Some(positions) = tw.get("positions").and_then(Value::as_object) else {
                    continue;
                };
                let conflict = |what: String| {
                    delta_err(
                        table,
                        format!(
                            "{what} differs between the logs of the pipeline's tables \
                             (version {} of this table); the lakehouse is inconsistent",
                            c.version
                        ),
                    )
                };
                match info.commit_positions.get(&epoch) {
                    Some(p) if p != &tw["positions"] => {
                        return Err(conflict(format!(
                            "the positions of the commit of epoch {epoch}"
                        )))
                    }
                    _ => {
                        info.commit_positions.insert(epoch, tw["positions"].clone());
                    }
                }
                for (e, sources) in positions {
                    let Ok(e) = e.parse::<u64>() else { continue };
                    let Some(sources) = sources.as_object() else {
                        continue;
                    };
                    let slot = info.recorded.entry(e).or_default();
                    for (source, pos) in sources {
                        match slot.get(source) {
                            Some(p) if p != pos => {
                                return Err(conflict(format!(
                                    "the recorded cut of source `{source}` in epoch {e}"
                                )))
                            }
                            _ => {
                                slot.insert(source.clone(), pos.clone());
                            }
                        }
                    }
                }
            }
            info.versions.insert(table.clone(), versions);
        }
        Ok(info)
    }

    /// Commit metadata for an epoch: `{"pipeline", "table", "epoch", "positions", ...extra}`.
    pub fn metadata(&self, epoch: u64, table: &str, positions: &Value, extra: Value) -> Value {
        let mut m = json!({
            "pipeline": self.config.pipeline,
            "table": table,
            "epoch": epoch,
            "positions": positions,
        });
        if let (Some(obj), Value::Object(extra)) = (m.as_object_mut(), extra) {
            obj.extend(extra);
        }
        m
    }
}

/// Who wrote a commit that is not ours (`None` if it carries our `txn` app id): the app id of
/// its `txn` action, else what its `commitInfo` says (a tidewater pipeline, the engine, the
/// operation).
fn foreign_writer(c: &LogCommit, ours: &str) -> Option<String> {
    if c.txn.iter().any(|(app, _)| app == ours) {
        return None;
    }
    if let Some((app, version)) = c.txn.first() {
        return Some(format!("app id `{app}` (txn version {version})"));
    }
    let ci = &c.commit_info;
    let mut parts = Vec::new();
    if let Some(p) = ci["tidewater"]["pipeline"].as_str() {
        parts.push(format!("tidewater pipeline `{p}`"));
    }
    for key in [
        "appId",
        "engineInfo",
        "clientVersion",
        "operation",
        "userName",
    ] {
        if let Some(v) = ci.get(key).filter(|v| !v.is_null()) {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            parts.push(format!("{key} `{v}`"));
        }
    }
    Some(if parts.is_empty() {
        "a writer without a txn action or commitInfo".to_string()
    } else {
        format!("a writer without a txn action ({})", parts.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::parquet::write_parquet;
    use crate::types::{ColumnType, Datum};

    /// A committer of pipeline `p` in `lakehouse`.
    fn test_committer(lakehouse: &Path, checkpoint_interval: u64) -> Committer {
        Committer::new(CommitterConfig {
            lakehouse: lakehouse.to_path_buf(),
            pipeline: "p".into(),
            checkpoint_interval,
        })
        .unwrap()
    }

    /// One `id int64` column.
    fn id_cols() -> Vec<Column> {
        vec![Column {
            name: "id".into(),
            ty: ColumnType::Int64,
        }]
    }

    #[test]
    fn commits_create_append_and_skip_replayed_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = test_committer(dir.path(), 2);
        let cols = id_cols();
        let tdir = dir.path().join("t");
        let r = vec![Datum::Int(1)];
        let f1 = write_parquet(&tdir, "a.parquet", &cols, &[&r]).unwrap();
        let out = c
            .commit(
                1,
                "t",
                &cols,
                vec![FileAction::Add(f1.clone())],
                json!({"epoch": 1}),
            )
            .unwrap();
        assert_eq!(out, CommitOutcome::Committed(0));
        let f2 = write_parquet(&tdir, "b.parquet", &cols, &[&r]).unwrap();
        let out = c
            .commit(
                2,
                "t",
                &cols,
                vec![
                    FileAction::Add(f2),
                    FileAction::Remove {
                        path: f1.path.clone(),
                        size: f1.size,
                    },
                ],
                json!({}),
            )
            .unwrap();
        assert_eq!(out, CommitOutcome::Committed(1));
        assert_eq!(c.last_epoch("t").unwrap(), Some(2));
        // A replay of epoch 2 is skipped.
        let out = c.commit(2, "t", &cols, vec![], json!({})).unwrap();
        assert_eq!(out, CommitOutcome::AlreadyCommitted(1));
        // A fresh committer (a restart) finds the txn version in the log.
        let mut c2 = test_committer(dir.path(), 2);
        assert_eq!(c2.last_epoch("t").unwrap(), Some(2));
        assert_eq!(c2.last_epoch("other").unwrap(), None);
        let m = c2
            .write_manifest(2, &["t".into(), "other".into()], json!({}))
            .unwrap();
        assert_eq!(m.tables.get("t"), Some(&1));
        assert_eq!(read_manifests(dir.path()).unwrap().len(), 1);
    }

    /// Commits one new file to the table at `dir` as another writer would: with a `txn` of
    /// `app_id` if given, from a snapshot read now, with delta-rs's default retries. Returns
    /// the version written.
    fn foreign_commit(dir: &Path, app_id: Option<&str>, max_retries: Option<usize>) -> i64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = Url::from_directory_path(dir.canonicalize().unwrap()).unwrap();
        let t = rt.block_on(deltalake::open_table(url)).unwrap();
        foreign_commit_on(&rt, &t, dir, app_id, max_retries).unwrap()
    }

    fn foreign_commit_on(
        rt: &tokio::runtime::Runtime,
        t: &DeltaTable,
        dir: &Path,
        app_id: Option<&str>,
        max_retries: Option<usize>,
    ) -> Result<i64, deltalake::DeltaTableError> {
        let cols = id_cols();
        let r = vec![Datum::Int(99)];
        let name = format!("foreign-{}.parquet", uuid_like());
        let f = write_parquet(dir, &name, &cols, &[&r]).unwrap();
        let mut props = CommitProperties::default();
        if let Some(app) = app_id {
            props = props.with_application_transaction(Transaction::new(app, 7));
        }
        if let Some(n) = max_retries {
            props = props.with_max_retries(n);
        }
        let add = Action::Add(Add {
            path: f.path,
            size: f.size,
            modification_time: 0,
            data_change: true,
            stats: Some(f.stats),
            ..Default::default()
        });
        let op = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: None,
        };
        let done = rt.block_on(
            CommitBuilder::from(props)
                .with_actions(vec![add])
                .build(Some(t.snapshot().unwrap()), t.log_store(), op)
                .into_future(),
        )?;
        Ok(done.version() as i64)
    }

    fn uuid_like() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn one_file(dir: &Path, name: &str) -> FileAction {
        let cols = id_cols();
        FileAction::Add(write_parquet(dir, name, &cols, &[&vec![Datum::Int(1)]]).unwrap())
    }

    /// Why the committer commits with `max_retries = 0`: delta-rs rebases an append read at an
    /// older version over a newer one without a conflict (the second writer stays hidden);
    /// with no retries the commit fails instead.
    #[test]
    fn delta_rs_rebases_a_stale_append_unless_retries_are_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = test_committer(dir.path(), 100);
        let tdir = dir.path().join("t");
        let cols = id_cols();
        c.commit(0, "t", &cols, vec![one_file(&tdir, "a.parquet")], json!({}))
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = Url::from_directory_path(tdir.canonicalize().unwrap()).unwrap();
        let stale = rt.block_on(deltalake::open_table(url)).unwrap();
        assert_eq!(foreign_commit(&tdir, Some("x"), None), 1);
        let err = foreign_commit_on(&rt, &stale, &tdir, Some("y"), Some(0)).unwrap_err();
        assert!(
            err.to_string().contains("Failed to commit transaction"),
            "{err}"
        );
        assert_eq!(
            foreign_commit_on(&rt, &stale, &tdir, Some("y"), None).unwrap(),
            2,
            "with retries, the stale append is silently rebased"
        );
    }

    /// A foreign commit lands between our snapshot read (the committer's table state after its
    /// last commit) and our next commit: the commit is refused naming the table and the other
    /// writer's app id, and the table is unchanged.
    #[test]
    fn a_foreign_commit_between_our_read_and_our_commit_stops_the_committer() {
        let dir = tempfile::tempdir().unwrap();
        let config = CommitterConfig {
            lakehouse: dir.path().to_path_buf(),
            pipeline: "p".into(),
            checkpoint_interval: 100,
        };
        let mut c = Committer::new(config.clone()).unwrap();
        let tdir = dir.path().join("t");
        let cols = id_cols();
        c.commit(0, "t", &cols, vec![one_file(&tdir, "a.parquet")], json!({}))
            .unwrap();
        c.commit(1, "t", &cols, vec![one_file(&tdir, "b.parquet")], json!({}))
            .unwrap();
        // Our own commits (the creation included) carry our txn.
        assert!(read_commits(&tdir)
            .unwrap()
            .iter()
            .all(|c| c.txn == vec![("p/t".to_string(), c.version)]));
        assert_eq!(foreign_commit(&tdir, Some("other/t"), None), 2);
        let err = c
            .commit(2, "t", &cols, vec![one_file(&tdir, "c.parquet")], json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Delta table t:"), "{err}");
        assert!(err.contains("app id `other/t`"), "{err}");
        assert!(err.contains("version 2"), "{err}");
        let log = read_commits(&tdir).unwrap();
        assert_eq!(log.len(), 3, "nothing of ours was committed");
        assert!(log
            .iter()
            .all(|c| !c.adds.contains(&"c.parquet".to_string())));
        // A restart (a fresh committer) refuses the table too.
        let mut c2 = Committer::new(config).unwrap();
        let err = c2.resume_info(&["t".into()]).unwrap_err().to_string();
        assert!(err.contains("app id `other/t`"), "{err}");

        // A writer without txn is named by its commitInfo.
        let dir = tempfile::tempdir().unwrap();
        let mut c = test_committer(dir.path(), 100);
        let tdir = dir.path().join("t");
        c.commit(0, "t", &cols, vec![one_file(&tdir, "a.parquet")], json!({}))
            .unwrap();
        foreign_commit(&tdir, None, None);
        let err = c
            .commit(1, "t", &cols, vec![one_file(&tdir, "b.parquet")], json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a txn action"), "{err}");
        assert!(err.contains("engineInfo `delta-rs"), "{err}");
        assert_eq!(read_commits(&tdir).unwrap().len(), 2);
    }

    #[test]
    fn resume_info_unions_the_recorded_positions_of_all_tables() {
        let dir = tempfile::tempdir().unwrap();
        let config = CommitterConfig {
            lakehouse: dir.path().to_path_buf(),
            pipeline: "p".into(),
            checkpoint_interval: 2,
        };
        let mut c = Committer::new(config.clone()).unwrap();
        let cols = id_cols();
        let r = vec![Datum::Int(1)];
        let pos = |e: u64| json!({"s": {"kind": "generator", "ranges": [{"from": e, "to": e + 1}], "records": 1}});
        // Epoch 0: both tables; epoch 1 changed nothing (folded into 2); epoch 2: only `a`;
        // epoch 3: `b` only (a crash before `a` would have been committed).
        let commit = |c: &mut Committer, e: u64, t: &str, positions: Value| {
            let f = write_parquet(
                &dir.path().join(t),
                &format!("{t}{e}.parquet"),
                &cols,
                &[&r],
            )
            .unwrap();
            let meta = c.metadata(e, t, &positions, json!({}));
            c.commit(e, t, &cols, vec![FileAction::Add(f)], meta)
                .unwrap()
        };
        let p0 = json!({"0": pos(0)});
        commit(&mut c, 0, "a", p0.clone());
        commit(&mut c, 0, "b", p0);
        let p2 = json!({"1": pos(1), "2": pos(2)});
        commit(&mut c, 2, "a", p2);
        commit(&mut c, 3, "b", json!({"3": pos(3)}));
        let mut c2 = Committer::new(config).unwrap();
        let info = c2
            .resume_info(&["a".into(), "b".into(), "_quarantine".into()])
            .unwrap();
        assert_eq!(info.max_epoch, Some(3));
        assert_eq!(info.per_table_committed["a"], Some(2));
        assert_eq!(info.per_table_committed["b"], Some(3));
        assert_eq!(info.per_table_committed["_quarantine"], None);
        assert_eq!(
            info.recorded.keys().copied().collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(json!(info.recorded[&1]), pos(1));
        assert_eq!(info.version_at("a", 1), Some(0));
        assert_eq!(info.version_at("a", 3), Some(1));
        assert_eq!(info.version_at("b", 2), Some(0));
        assert_eq!(
            info.commit_positions.keys().copied().collect::<Vec<_>>(),
            vec![0, 2, 3]
        );
        // Every add of the log is referenced: no orphans; a stray file is one.
        assert!(crate::delta::orphan_files(&dir.path().join("a"), true)
            .unwrap()
            .is_empty());
        std::fs::write(dir.path().join("a").join("part-x.parquet"), b"x").unwrap();
        std::fs::write(dir.path().join("a").join(".part-y.parquet.tmp"), b"x").unwrap();
        let orphans = crate::delta::remove_orphan_files(&dir.path().join("a"), false).unwrap();
        assert_eq!(orphans.len(), 2);
        assert!(dir.path().join("a").join("a0.parquet").exists());
        assert!(!dir.path().join("a").join("part-x.parquet").exists());
    }
}
