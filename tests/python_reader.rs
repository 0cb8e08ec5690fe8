//! The independent Delta reader (`tests/reader/delta_read.py`, pyarrow only)
//! seen from Rust: the end-to-end tests check the tables tidewater writes with
//! it, so that a table is judged by a second implementation of the Delta
//! protocol rather than by delta-rs, which tidewater writes with.
//!
//! Values come back as the reader prints them: integers as JSON integers,
//! floats as numbers (NaN and infinities as the strings "NaN", "Infinity",
//! "-Infinity"), timestamps as integer microseconds since the Unix epoch,
//! dates as "YYYY-MM-DD", decimals as plain strings with exactly `scale`
//! fractional digits, binary as base64.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

const PYARROW_MISSING: &str =
    "pyarrow is missing: run scripts/test (it creates $HOME/.cache/tidewater/venv)";

/// The Python interpreter that has pyarrow: $TIDEWATER_PYTHON, else
/// $HOME/.cache/tidewater/venv/bin/python if it exists, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TIDEWATER_PYTHON") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = PathBuf::from(home).join(".cache/tidewater/venv/bin/python");
        if venv.exists() {
            return venv;
        }
    }
    PathBuf::from("python3")
}

/// The reader script: `reader/delta_read.py` in this crate's directory.
pub fn reader_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("reader")
        .join("delta_read.py")
}

/// Result of reading a table at a version with the independent reader.
#[derive(Debug, Clone, PartialEq)]
pub struct PyTable {
    /// The version read.
    pub version: i64,
    /// How many data files are active at that version.
    pub num_files: usize,
    /// (column name, Delta type string) in schema order; nested types are
    /// given as the compact JSON of the type.
    pub schema: Vec<(String, String)>,
    /// The latest `txn` version per appId as of `version`.
    pub txn: BTreeMap<String, i64>,
    /// All rows, sorted by their JSON text with sorted keys.
    pub rows: Vec<Map<String, Value>>,
}

/// One JSON commit of the log, as the independent reader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PyCommit {
    pub version: i64,
    /// The commit's `txn` actions: (appId, version).
    pub txn: Vec<(String, i64)>,
    /// The whole `commitInfo` object (`Value::Null` when the commit has none).
    pub commit_info: Value,
    /// Paths of the `add` actions, as written in the log (URL-encoded).
    pub add: Vec<String>,
    /// Paths of the `remove` actions, as written in the log (URL-encoded).
    pub remove: Vec<String>,
    /// Sum of `stats.numRecords` over the adds; None when an add lacks stats.
    pub num_records_added: Option<i64>,
}

/// Reads the table at `dir` (at `version`, or the newest one) with the
/// independent reader.
pub fn py_read_table(dir: &Path, version: Option<i64>) -> Result<PyTable> {
    let mut args = Vec::new();
    if let Some(v) = version {
        args.push("--version".to_string());
        args.push(v.to_string());
    }
    let out = run_reader(dir, &args)?;
    parse_table(&out).with_context(|| {
        format!(
            "unexpected output of the Delta reader for {}",
            dir.display()
        )
    })
}

/// Reads every version `0..=newest` of the table at `dir` with the independent reader (time
/// travel; one reader process for all versions).
pub fn py_read_all_versions(dir: &Path) -> Result<Vec<PyTable>> {
    let out = run_reader(dir, &["--all-versions".to_string()])?;
    out.as_array()
        .context("--all-versions did not print a list")?
        .iter()
        .map(parse_table)
        .collect::<Result<Vec<_>>>()
        .with_context(|| {
            format!(
                "unexpected --all-versions output of the Delta reader for {}",
                dir.display()
            )
        })
}

/// Lists the JSON commits of the table at `dir` with the independent reader.
pub fn py_read_log(dir: &Path) -> Result<Vec<PyCommit>> {
    let out = run_reader(dir, &["--log".to_string()])?;
    parse_log(&out).with_context(|| {
        format!(
            "unexpected --log output of the Delta reader for {}",
            dir.display()
        )
    })
}

fn run_reader(dir: &Path, args: &[String]) -> Result<Value> {
    let py = python();
    let script = reader_script();
    let mut cmd = Command::new(&py);
    cmd.arg(&script).arg(dir).args(args);
    let mut described = format!("{} {} {}", py.display(), script.display(), dir.display());
    for a in args {
        described.push(' ');
        described.push_str(a);
    }
    let output = cmd.output().map_err(|e| {
        anyhow!("cannot run the Delta reader ({described}): {e}; {PYARROW_MISSING}")
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains("pyarrow is missing") || stderr.contains("No module named 'pyarrow'") {
            bail!("{PYARROW_MISSING} (interpreter: {})", py.display());
        }
        bail!(
            "the Delta reader failed ({}): {described}\n{}",
            output.status,
            stderr.trim_end()
        );
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "the Delta reader printed invalid JSON ({described}); stderr: {}",
            stderr.trim_end()
        )
    })
}

fn parse_table(v: &Value) -> Result<PyTable> {
    let obj = v.as_object().context("not a JSON object")?;
    let version = get_i64(obj, "version")?;
    let num_files = usize::try_from(get_i64(obj, "num_files")?).context("num_files")?;
    let schema = obj
        .get("schema")
        .and_then(Value::as_array)
        .context("no schema list")?
        .iter()
        .map(|f| {
            let f = f.as_object().context("schema entry is not an object")?;
            Ok((
                get_str(f, "name")?.to_string(),
                get_str(f, "type")?.to_string(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let txn = obj
        .get("txn")
        .and_then(Value::as_object)
        .context("no txn object")?
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                v.as_i64()
                    .with_context(|| format!("txn {k} is not an integer"))?,
            ))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let rows = obj
        .get("rows")
        .and_then(Value::as_array)
        .context("no rows list")?
        .iter()
        .map(|r| r.as_object().cloned().context("a row is not an object"))
        .collect::<Result<Vec<_>>>()?;
    Ok(PyTable {
        version,
        num_files,
        schema,
        txn,
        rows,
    })
}

fn parse_log(v: &Value) -> Result<Vec<PyCommit>> {
    v.as_array()
        .context("not a JSON list")?
        .iter()
        .map(|c| {
            let c = c.as_object().context("a commit is not an object")?;
            let txn = c
                .get("txn")
                .and_then(Value::as_array)
                .context("no txn list")?
                .iter()
                .map(|t| {
                    let t = t.as_object().context("a txn is not an object")?;
                    Ok((get_str(t, "appId")?.to_string(), get_i64(t, "version")?))
                })
                .collect::<Result<Vec<_>>>()?;
            let num_records_added = match c.get("num_records_added") {
                None | Some(Value::Null) => None,
                Some(n) => Some(n.as_i64().context("num_records_added is not an integer")?),
            };
            Ok(PyCommit {
                version: get_i64(c, "version")?,
                txn,
                commit_info: c.get("commitInfo").cloned().unwrap_or(Value::Null),
                add: get_strings(c, "add")?,
                remove: get_strings(c, "remove")?,
                num_records_added,
            })
        })
        .collect()
}

fn get_i64(obj: &Map<String, Value>, key: &str) -> Result<i64> {
    obj.get(key)
        .and_then(Value::as_i64)
        .with_context(|| format!("no integer {key:?}"))
}

fn get_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("no string {key:?}"))
}

fn get_strings(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>> {
    obj.get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("no list {key:?}"))?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .with_context(|| format!("{key:?} holds a non-string"))
        })
        .collect()
}
