//! Reading what tidewater committed back from the Delta logs: the commits of a table with their
//! `txn` and `commitInfo.tidewater`, the files of the current snapshot, and the Parquet files
//! that no commit ever referenced (orphans left by a crash).
//!
//! The JSON commit files are read directly (`_delta_log/<20-digit version>.json`,
//! newline-delimited actions). Checkpoints drop `commitInfo`, so the recorded source positions
//! are only available from the JSON commits. delta-rs deletes JSON commits older than
//! `delta.logRetentionDuration` (30 days by default) after a checkpoint unless
//! `delta.enableExpiredLogCleanup` is `false`; the committer sets that property on every table
//! it creates and also disables the cleanup per commit, so the JSON commits of a tidewater
//! table stay. A table whose early commits are gone anyway is reported (see
//! [`read_commits`]), never silently replayed from a partial history.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use url::Url;

use crate::ConnectorError;

/// One JSON commit of a table, as far as tidewater cares.
#[derive(Clone, Debug, PartialEq)]
pub struct LogCommit {
    /// The Delta version.
    pub version: i64,
    /// The `txn` actions: (appId, version).
    pub txn: Vec<(String, i64)>,
    /// `commitInfo.tidewater` (`Value::Null` if the commit was not written by tidewater).
    pub tidewater: Value,
    /// The whole `commitInfo` (`Value::Null` if the commit has none).
    pub commit_info: Value,
    /// Paths of the `add` actions (percent-decoded, relative to the table root).
    pub adds: Vec<String>,
}

fn log_err(table_dir: &Path, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Delta {
        table: table_dir.display().to_string(),
        message: message.into(),
    }
}

/// Decodes `%XX` escapes of a path written in the log.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The versions of the JSON commit files in `<table_dir>/_delta_log`, sorted.
fn json_versions(table_dir: &Path) -> Result<Vec<i64>, ConnectorError> {
    let log = table_dir.join("_delta_log");
    let entries = match std::fs::read_dir(&log) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConnectorError::io(log.display(), e)),
    };
    let mut versions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConnectorError::io(log.display(), e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(v) = name.strip_suffix(".json") {
            if v.len() == 20 && v.bytes().all(|c| c.is_ascii_digit()) {
                versions.push(v.parse::<i64>().expect("20 digits"));
            }
        }
    }
    versions.sort_unstable();
    Ok(versions)
}

/// Reads every JSON commit of the table at `table_dir` (none if it has no log). Fails, naming
/// the table, if the commits do not run contiguously from version 0 (expired log cleanup
/// removed some): the history needed to replay would be incomplete.
pub fn read_commits(table_dir: &Path) -> Result<Vec<LogCommit>, ConnectorError> {
    let versions = json_versions(table_dir)?;
    if let Some((i, v)) = versions.iter().enumerate().find(|(i, v)| **v != *i as i64) {
        return Err(log_err(
            table_dir,
            format!(
                "the JSON commit of version {} is missing from _delta_log (found version {v} at \
                 position {i}); the recorded history of this table is incomplete (expired log \
                 cleanup?), so it cannot be replayed",
                i
            ),
        ));
    }
    let mut out = Vec::with_capacity(versions.len());
    for v in versions {
        let commit = read_commit(table_dir, v)?
            .ok_or_else(|| log_err(table_dir, format!("commit {v} disappeared while reading")))?;
        out.push(commit);
    }
    Ok(out)
}

/// Reads the JSON commit `version` of the table at `table_dir`; `None` if it does not exist.
pub fn read_commit(table_dir: &Path, version: i64) -> Result<Option<LogCommit>, ConnectorError> {
    let v = version;
    let path = table_dir.join("_delta_log").join(format!("{v:020}.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConnectorError::io(path.display(), e)),
    };
    {
        let mut commit = LogCommit {
            version: v,
            txn: Vec::new(),
            tidewater: Value::Null,
            commit_info: Value::Null,
            adds: Vec::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).map_err(|e| {
                log_err(
                    table_dir,
                    format!("{} holds an invalid action: {e}", path.display()),
                )
            })?;
            if let Some(t) = action.get("txn") {
                if let (Some(app), Some(ver)) = (
                    t.get("appId").and_then(Value::as_str),
                    t.get("version").and_then(Value::as_i64),
                ) {
                    commit.txn.push((app.to_string(), ver));
                }
            } else if let Some(ci) = action.get("commitInfo") {
                if let Some(tw) = ci.get("tidewater") {
                    commit.tidewater = tw.clone();
                }
                commit.commit_info = ci.clone();
            } else if let Some(add) = action.get("add") {
                if let Some(p) = add.get("path").and_then(Value::as_str) {
                    commit.adds.push(percent_decode(p));
                }
            }
        }
        Ok(Some(commit))
    }
}

/// A data file of a table's snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Path relative to the table root, percent-decoded.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Rows, from the `add` action's `stats.numRecords` (tidewater always writes it).
    pub num_records: Option<i64>,
}

/// The data files of the newest snapshot of the table at `table_dir`, read with delta-rs;
/// empty if the table has no log.
pub fn table_files(table_dir: &Path) -> Result<Vec<SnapshotFile>, ConnectorError> {
    snapshot_files(table_dir, None)
}

/// The data files of version `version` of the table at `table_dir` (time travel: tidewater
/// keeps the files of older versions until `vacuum`), read with delta-rs.
pub fn table_files_at(table_dir: &Path, version: i64) -> Result<Vec<SnapshotFile>, ConnectorError> {
    snapshot_files(table_dir, Some(version))
}

fn snapshot_files(
    table_dir: &Path,
    version: Option<i64>,
) -> Result<Vec<SnapshotFile>, ConnectorError> {
    if json_versions(table_dir)?.is_empty() {
        return Ok(Vec::new());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ConnectorError::io("tokio runtime", e))?;
    let abs = table_dir
        .canonicalize()
        .map_err(|e| ConnectorError::io(table_dir.display(), e))?;
    let url = Url::from_directory_path(&abs)
        .map_err(|_| log_err(table_dir, "cannot make a URL of the table path"))?;
    let table = match version {
        None => rt.block_on(deltalake::open_table(url)),
        Some(v) => rt.block_on(deltalake::open_table_with_version(url, v.max(0) as u64)),
    }
    .map_err(|e| log_err(table_dir, e.to_string()))?;
    let snapshot = table
        .snapshot()
        .map_err(|e| log_err(table_dir, e.to_string()))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| SnapshotFile {
            path: f.path().into_owned(),
            size: f.size(),
            num_records: f.num_records().map(|n| n as i64),
        })
        .collect())
}

/// Whether a file name is one tidewater writes (a data file or its temporary name).
fn is_tidewater_data_file(name: &str) -> bool {
    (name.starts_with("part-") && name.ends_with(".parquet"))
        || (name.starts_with(".part-") && name.ends_with(".parquet.tmp"))
}

/// The files in `table_dir` (top level, not `_delta_log`) that no commit ever referenced:
/// `*.parquet` files that are neither in the newest snapshot nor named by any `add` action of
/// the JSON commits, and temporary `.part-*.parquet.tmp` files of interrupted writes. Files
/// that were committed and later removed stay (readers may time-travel to them).
///
/// A directory without a Delta log (a crash before the table's first commit) is handled only
/// when `owned` is true (the caller knows it is a tidewater table directory); then its
/// tidewater data files are all orphans.
pub fn orphan_files(table_dir: &Path, owned: bool) -> Result<Vec<PathBuf>, ConnectorError> {
    let entries = match std::fs::read_dir(table_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConnectorError::io(table_dir.display(), e)),
    };
    let has_log = !json_versions(table_dir)?.is_empty();
    if !has_log && !owned {
        return Ok(Vec::new());
    }
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    if has_log {
        referenced.extend(table_files(table_dir)?.into_iter().map(|f| f.path));
        // Tolerate a history with gaps here: the snapshot covers what is live.
        for v in json_versions(table_dir)? {
            let path = table_dir.join("_delta_log").join(format!("{v:020}.json"));
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConnectorError::io(path.display(), e))?;
            for line in text.lines().filter(|l| l.contains("\"add\"")) {
                if let Ok(action) = serde_json::from_str::<Value>(line) {
                    if let Some(p) = action
                        .get("add")
                        .and_then(|a| a.get("path"))
                        .and_then(Value::as_str)
                    {
                        referenced.insert(percent_decode(p));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConnectorError::io(table_dir.display(), e))?;
        if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let temp = name.starts_with(".part-") && name.ends_with(".parquet.tmp");
        let candidate = if has_log {
            name.ends_with(".parquet") || temp
        } else {
            is_tidewater_data_file(&name)
        };
        if candidate && (temp || !referenced.contains(&name)) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes the [`orphan_files`] of a table directory; returns the removed paths.
pub fn remove_orphan_files(table_dir: &Path, owned: bool) -> Result<Vec<PathBuf>, ConnectorError> {
    let orphans = orphan_files(table_dir, owned)?;
    for f in &orphans {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ConnectorError::io(f.display(), e)),
        }
    }
    Ok(orphans)
}

/// The orphan files of every table directory of a lakehouse (each subdirectory except
/// `_tidewater`); removes them unless `dry_run`. A subdirectory without a Delta log is treated as
/// a table whose first commit never happened only if it holds nothing but tidewater data files.
pub fn vacuum_lakehouse(lakehouse: &Path, dry_run: bool) -> Result<Vec<PathBuf>, ConnectorError> {
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    for entry in
        std::fs::read_dir(lakehouse).map_err(|e| ConnectorError::io(lakehouse.display(), e))?
    {
        let entry = entry.map_err(|e| ConnectorError::io(lakehouse.display(), e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
            && entry.file_name() != "_tidewater"
        {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    for dir in dirs {
        let owned = !dir.join("_delta_log").exists()
            && std::fs::read_dir(&dir)
                .map_err(|e| ConnectorError::io(dir.display(), e))?
                .filter_map(Result::ok)
                .all(|e| is_tidewater_data_file(&e.file_name().to_string_lossy()));
        out.extend(if dry_run {
            orphan_files(&dir, owned)?
        } else {
            remove_orphan_files(&dir, owned)?
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_log_paths() {
        assert_eq!(percent_decode("a%20b.parquet"), "a b.parquet");
        assert_eq!(percent_decode("plain.parquet"), "plain.parquet");
        assert_eq!(percent_decode("bad%2"), "bad%2");
        assert_eq!(percent_decode("x%"), "x%");
    }
}
