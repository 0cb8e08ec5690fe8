//! The correctness check of `cdc-apply`: the expected final table comes from the reference
//! model ([`reference_apply_file`]); an engine's Delta table is read back (the Parquet files
//! of the newest snapshot) and compared with it row by row, column by column.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context};
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};
use tidewater_connectors::generator::{reference_apply_file, ReferenceState};

use super::baseline::Fingerprint;

/// The key column of the bank table.
pub const KEY: &str = "customer_id";
/// The sequence column (`source.lsn`).
pub const SEQUENCE: &str = "__lsn";

/// The expected final table.
pub struct Expected {
    /// Live rows by `customer_id`: every column of `after` plus `__lsn`.
    pub rows: BTreeMap<i64, Map<String, Value>>,
    /// Summary of `rows`.
    pub fingerprint: Fingerprint,
}

/// The key and LSN of a reference row.
fn key_and_lsn(row: &Map<String, Value>) -> anyhow::Result<(i64, i64)> {
    let key = row
        .get(KEY)
        .and_then(Value::as_i64)
        .context("reference row without customer_id")?;
    let lsn = row
        .get(SEQUENCE)
        .and_then(Value::as_i64)
        .context("reference row without __lsn")?;
    Ok((key, lsn))
}

/// The fingerprint of the reference model's final table.
pub fn reference_fingerprint(state: &ReferenceState) -> anyhow::Result<Fingerprint> {
    let pairs = state
        .rows
        .values()
        .map(key_and_lsn)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Fingerprint::of(pairs.into_iter()))
}

/// Computes the expected final table of a Debezium file with the reference model. Fails if
/// the reference finds lines it cannot apply (the generated input has none).
pub fn expected(input: &Path) -> anyhow::Result<Expected> {
    let state = reference_apply_file(input, &[KEY], SEQUENCE)
        .with_context(|| format!("reference model on {}", input.display()))?;
    if !state.bad.is_empty() {
        bail!(
            "the reference model rejected {} lines, e.g. {:?}",
            state.bad.len(),
            state.bad[0]
        );
    }
    expected_of(state)
}

/// The expected final table of a reference model's result (e.g. of
/// [`reference_apply`](tidewater_connectors::generator::reference_apply) over produced
/// messages).
pub fn expected_of(state: ReferenceState) -> anyhow::Result<Expected> {
    let fingerprint = reference_fingerprint(&state)?;
    let mut rows = BTreeMap::new();
    for row in state.rows.into_values() {
        let (key, _) = key_and_lsn(&row)?;
        rows.insert(key, row);
    }
    Ok(Expected { rows, fingerprint })
}

/// What reading a table back found.
#[derive(Clone, Debug)]
pub struct ReadBack {
    /// Rows in the newest snapshot.
    pub rows: u64,
    /// Data files in the newest snapshot.
    pub files: usize,
    /// Arrow in-memory size of the table: Σ `RecordBatch::get_array_memory_size()` — the
    /// "raw bytes of the final table state".
    pub arrow_bytes: u64,
    /// Size of those Parquet files on disk.
    pub parquet_bytes: u64,
}

/// A cell of an Arrow array as JSON (integers, floats, booleans, strings; anything else is
/// rendered as a string with its type, which will not match the reference).
fn cell(array: &dyn Array, i: usize) -> Value {
    if array.is_null(i) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Int8 => Value::from(array.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => Value::from(array.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(i)),
        DataType::Float32 => Value::from(array.as_primitive::<Float32Type>().value(i)),
        DataType::Float64 => Value::from(array.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => Value::from(array.as_boolean().value(i)),
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Value::from(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Value::from(array.as_string_view().value(i)),
        other => Value::String(format!("<unsupported type {other}>")),
    }
}

/// Equality of a reference value and a table value; numbers compare by value (`5000.0` in
/// the table equals `5000` in JSON).
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => a.as_f64() == b.as_f64(),
        },
        (a, b) => a == b,
    }
}

/// Reads the newest snapshot of the Delta table at `table_dir` and compares it with
/// `expected`: the same set of `customer_id`s (no duplicates), and every column of every
/// row equal. Fails with the first differences on a mismatch.
pub fn check_table(table_dir: &Path, expected: &Expected) -> anyhow::Result<ReadBack> {
    let abs = table_dir
        .canonicalize()
        .with_context(|| format!("no table at {}", table_dir.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = deltalake::ensure_table_uri(abs.to_string_lossy())?;
    let table = rt
        .block_on(deltalake::open_table(url))
        .with_context(|| format!("cannot open the Delta table {}", abs.display()))?;
    let files: Vec<String> = table
        .snapshot()?
        .log_data()
        .into_iter()
        .map(|f| f.path().into_owned())
        .collect();

    let mut read = ReadBack {
        rows: 0,
        files: files.len(),
        arrow_bytes: 0,
        parquet_bytes: 0,
    };
    let mut seen: BTreeMap<i64, ()> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let mut problem_count = 0u64;
    let mut problem = |p: String| {
        problem_count += 1;
        if problems.len() < 10 {
            problems.push(p);
        }
    };
    for f in &files {
        let path = abs.join(f);
        read.parquet_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(64 * 1024)
            .build()?;
        for batch in reader {
            let batch = batch?;
            read.rows += batch.num_rows() as u64;
            read.arrow_bytes += batch.get_array_memory_size() as u64;
            let schema = batch.schema();
            let key_col = batch
                .column_by_name(KEY)
                .with_context(|| format!("{f} has no column {KEY}"))?;
            for i in 0..batch.num_rows() {
                let Some(key) = cell(key_col.as_ref(), i).as_i64() else {
                    problem(format!("{f}: a row with a null or non-integer {KEY}"));
                    continue;
                };
                if seen.insert(key, ()).is_some() {
                    problem(format!("{KEY} {key} appears more than once"));
                    continue;
                }
                let Some(exp) = expected.rows.get(&key) else {
                    problem(format!(
                        "{KEY} {key} is in the table but not in the reference"
                    ));
                    continue;
                };
                for (field, col) in schema.fields().iter().zip(batch.columns()) {
                    let actual = cell(col.as_ref(), i);
                    let want = exp.get(field.name()).unwrap_or(&Value::Null);
                    if !same(want, &actual) {
                        problem(format!(
                            "{KEY} {key}: column {} is {actual}, the reference says {want}",
                            field.name()
                        ));
                    }
                }
                if let Some(missing) = exp.keys().find(|c| schema.column_with_name(c).is_none()) {
                    problem(format!("the table has no column {missing}"));
                }
            }
        }
    }
    let missing: Vec<&i64> = expected
        .rows
        .keys()
        .filter(|k| !seen.contains_key(k))
        .collect();
    if !missing.is_empty() {
        problem(format!(
            "{} {KEY}s of the reference are missing from the table, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    if problem_count > 0 || read.rows != expected.rows.len() as u64 {
        bail!(
            "MISMATCH: the table at {} has {} rows, the reference {}; {problem_count} problems:\n  {}",
            abs.display(),
            read.rows,
            expected.rows.len(),
            problems.join("\n  ")
        );
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(same(&json!(5000.0), &json!(5000.0)));
        assert!(same(&json!(5000), &json!(5000.0)));
        assert!(same(&json!(12.34), &json!(12.34)));
        assert!(!same(&json!(12.34), &json!(12.35)));
        assert!(same(&json!("a"), &json!("a")));
        assert!(same(&Value::Null, &Value::Null));
        assert!(!same(&json!(1), &Value::Null));
    }
}
