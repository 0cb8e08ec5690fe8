//! One consistent cut of a lakehouse for the dashboard: the newest epoch manifest and the rows
//! of the tables it names, each at the Delta version the manifest gives.
//!
//! Delta data files never change once written, so rows are cached per file: a new cut reads
//! only the files added since the previous one (a bucketed table rewrites only the buckets
//! whose content changed).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, AsArray, BooleanArray, Decimal128Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, Int8Array, LargeStringArray, StringArray,
};
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};
use tidewater_connectors::delta::{manifest_dir, table_files_at, EpochManifest};

use crate::event_log::EVENT_LOG;
use crate::sql::convert::format_timestamp;

/// A row as JSON (column → value; timestamps as `YYYY-MM-DD HH:MM:SS[.ffffff]` UTC).
pub type JsonRow = Map<String, Value>;

/// The rows of every table the dashboard reads, at one epoch.
#[derive(Clone, Debug, Default)]
pub struct Cut {
    /// The epoch of the manifest (none: no epoch committed yet).
    pub epoch: Option<u64>,
    /// The pipeline that wrote the manifest.
    pub pipeline: String,
    /// Every table of the manifest → its Delta version.
    pub versions: BTreeMap<String, i64>,
    /// The rows of the tables read (those of [`Reader::wanted`] that the manifest names).
    pub rows: BTreeMap<String, Arc<Vec<JsonRow>>>,
}

impl Cut {
    /// The rows of `table`, empty when the cut does not have it.
    pub fn table(&self, table: &str) -> &[JsonRow] {
        self.rows.get(table).map_or(&[], |r| r.as_slice())
    }

    /// Whether the cut has `table`.
    pub fn has(&self, table: &str) -> bool {
        self.rows.contains_key(table)
    }
}

/// The newest epoch with a manifest, from the file names only.
pub fn newest_epoch(lakehouse: &Path) -> Option<u64> {
    std::fs::read_dir(manifest_dir(lakehouse))
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            name.to_str()?.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
}

/// Reads cuts of one lakehouse, caching the rows of each data file.
pub struct Reader {
    lakehouse: PathBuf,
    wanted: Vec<String>,
    files: HashMap<PathBuf, Arc<Vec<JsonRow>>>,
    tables: HashMap<String, (i64, Arc<Vec<JsonRow>>)>,
}

impl Reader {
    /// A reader of `lakehouse` that loads the tables `wanted` (when a manifest names them).
    pub fn new(lakehouse: &Path, wanted: &[&str]) -> Reader {
        Reader {
            lakehouse: lakehouse.to_path_buf(),
            wanted: wanted.iter().map(|s| s.to_string()).collect(),
            files: HashMap::new(),
            tables: HashMap::new(),
        }
    }

    /// The cut of epoch `epoch` (its manifest must exist).
    pub fn read(&mut self, epoch: u64) -> Result<Cut, String> {
        let path = manifest_dir(&self.lakehouse).join(format!("{epoch}.json"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let m: EpochManifest =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut cut = Cut {
            epoch: Some(epoch),
            pipeline: m.pipeline.clone(),
            versions: m.tables.clone(),
            rows: BTreeMap::new(),
        };
        let mut live_files = Vec::new();
        for table in self.wanted.clone() {
            let dir = self.lakehouse.join(&table);
            // The event log is read at its newest version and cut at the epoch when the
            // manifest does not name it.
            let version = match m.tables.get(&table) {
                Some(v) => *v,
                None if table == EVENT_LOG && dir.join("_delta_log").is_dir() => -1,
                None => continue,
            };
            if let Some((v, rows)) = self.tables.get(&table) {
                if *v == version && version >= 0 {
                    cut.rows.insert(table.clone(), rows.clone());
                    live_files.extend(self.files_of(&table, version)?);
                    continue;
                }
            }
            let files = self.files_of(&table, version)?;
            let mut rows = Vec::new();
            for f in &files {
                let r = match self.files.get(f) {
                    Some(r) => r.clone(),
                    None => {
                        let r = Arc::new(read_file(f)?);
                        self.files.insert(f.clone(), r.clone());
                        r
                    }
                };
                rows.extend(r.iter().cloned());
            }
            live_files.extend(files);
            if version < 0 {
                rows.retain(|r| {
                    r.get("epoch")
                        .and_then(Value::as_u64)
                        .is_some_and(|e| e <= epoch)
                });
            }
            let rows = Arc::new(rows);
            self.tables.insert(table.clone(), (version, rows.clone()));
            cut.rows.insert(table, rows);
        }
        // Forget the files no table of this cut holds.
        let live: std::collections::HashSet<PathBuf> = live_files.into_iter().collect();
        self.files.retain(|f, _| live.contains(f));
        Ok(cut)
    }

    /// The data files of `table` at `version` (negative: the newest).
    fn files_of(&self, table: &str, version: i64) -> Result<Vec<PathBuf>, String> {
        let dir = self.lakehouse.join(table);
        let files = if version < 0 {
            tidewater_connectors::delta::table_files(&dir)
        } else {
            table_files_at(&dir, version)
        }
        .map_err(|e| format!("table `{table}`: {e}"))?;
        let mut out: Vec<PathBuf> = files.into_iter().map(|f| dir.join(f.path)).collect();
        out.sort();
        Ok(out)
    }
}

/// Every row of one Parquet file, as JSON.
fn read_file(path: &Path) -> Result<Vec<JsonRow>, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| err(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| err(&e))?
        .build()
        .map_err(|e| err(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(&e))?;
        let schema = batch.schema();
        let start = out.len();
        out.extend((0..batch.num_rows()).map(|_| Map::new()));
        for (c, field) in schema.fields().iter().enumerate() {
            let col = batch.column(c);
            for (i, row) in out[start..].iter_mut().enumerate() {
                row.insert(field.name().clone(), json_at(col.as_ref(), i));
            }
        }
    }
    Ok(out)
}

/// The value at row `i` of an Arrow array, as JSON (unknown types: null).
pub fn json_at(a: &dyn Array, i: usize) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    let any = a.as_any();
    macro_rules! num {
        ($t:ty) => {
            any.downcast_ref::<$t>().map(|x| Value::from(x.value(i)))
        };
    }
    let v = match a.data_type() {
        DataType::Int64 => num!(Int64Array),
        DataType::Int32 => num!(Int32Array),
        DataType::Int16 => num!(Int16Array),
        DataType::Int8 => num!(Int8Array),
        DataType::Float64 => num!(Float64Array),
        DataType::Float32 => any
            .downcast_ref::<Float32Array>()
            .map(|x| Value::from(x.value(i) as f64)),
        DataType::Boolean => any
            .downcast_ref::<BooleanArray>()
            .map(|x| Value::Bool(x.value(i))),
        DataType::Utf8 => any
            .downcast_ref::<StringArray>()
            .map(|x| Value::String(x.value(i).to_string())),
        DataType::LargeUtf8 => any
            .downcast_ref::<LargeStringArray>()
            .map(|x| Value::String(x.value(i).to_string())),
        DataType::Decimal128(_, scale) => any
            .downcast_ref::<Decimal128Array>()
            .map(|x| Value::from(x.value(i) as f64 / 10f64.powi(*scale as i32))),
        DataType::Timestamp(unit, _) => {
            let raw = match unit {
                TimeUnit::Second => a
                    .as_primitive::<deltalake::arrow::datatypes::TimestampSecondType>()
                    .value(i)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => a
                    .as_primitive::<deltalake::arrow::datatypes::TimestampMillisecondType>()
                    .value(i)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => a
                    .as_primitive::<deltalake::arrow::datatypes::TimestampMicrosecondType>()
                    .value(i),
                TimeUnit::Nanosecond => {
                    a.as_primitive::<deltalake::arrow::datatypes::TimestampNanosecondType>()
                        .value(i)
                        / 1_000
                }
            };
            Some(Value::String(format_timestamp(raw)))
        }
        _ => None,
    };
    match v {
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| !f.is_finite()) => Some(Value::Null),
        other => other,
    }
    .unwrap_or(Value::Null)
}
