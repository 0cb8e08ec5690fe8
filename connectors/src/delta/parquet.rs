//! Rows → Arrow record batches → Parquet data files, with Delta file statistics.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, Int8Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
use deltalake::kernel::{DataType as DeltaType, StructField};
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::types::{Column, ColumnType, Datum, Row};
use crate::ConnectorError;

/// A data file written for a table, not yet committed: what the committer needs for its
/// Delta `add` action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddFile {
    /// Path relative to the table root.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Number of rows.
    pub num_records: i64,
    /// Delta statistics JSON (`numRecords`, `nullCount`, `minValues`/`maxValues` of integer columns).
    pub stats: String,
}

/// The Arrow type of a column.
pub fn arrow_type(ty: ColumnType) -> ArrowType {
    match ty {
        ColumnType::Int8 => ArrowType::Int8,
        ColumnType::Int16 => ArrowType::Int16,
        ColumnType::Int32 => ArrowType::Int32,
        ColumnType::Int64 => ArrowType::Int64,
        ColumnType::Float32 => ArrowType::Float32,
        ColumnType::Float64 => ArrowType::Float64,
        ColumnType::Boolean => ArrowType::Boolean,
        ColumnType::String => ArrowType::Utf8,
        ColumnType::Bytes => ArrowType::Binary,
        ColumnType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnType::Decimal { precision, scale } => ArrowType::Decimal128(precision, scale),
    }
}

/// The Delta type of a column.
pub fn delta_type(ty: ColumnType) -> DeltaType {
    match ty {
        ColumnType::Int8 => DeltaType::BYTE,
        ColumnType::Int16 => DeltaType::SHORT,
        ColumnType::Int32 => DeltaType::INTEGER,
        ColumnType::Int64 => DeltaType::LONG,
        ColumnType::Float32 => DeltaType::FLOAT,
        ColumnType::Float64 => DeltaType::DOUBLE,
        ColumnType::Boolean => DeltaType::BOOLEAN,
        ColumnType::String => DeltaType::STRING,
        ColumnType::Bytes => DeltaType::BINARY,
        ColumnType::Timestamp => DeltaType::TIMESTAMP,
        ColumnType::Decimal { precision, scale } => {
            DeltaType::decimal(precision, scale as u8).expect("decimal validated at parse")
        }
    }
}

/// The Delta schema fields of a list of columns (all nullable).
pub fn delta_fields(columns: &[Column]) -> Vec<StructField> {
    columns
        .iter()
        .map(|c| StructField::new(c.name.clone(), delta_type(c.ty), true))
        .collect()
}

/// The Arrow schema of a list of columns (all nullable).
pub fn arrow_schema(columns: &[Column]) -> Arc<ArrowSchema> {
    Arc::new(ArrowSchema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.ty), true))
            .collect::<Vec<_>>(),
    ))
}

macro_rules! build_column {
    ($builder:expr, $rows:expr, $i:expr, $pat:pat => $val:expr) => {{
        let mut b = $builder;
        for row in $rows {
            match &row[$i] {
                $pat => b.append_value($val),
                _ => b.append_null(),
            }
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

/// Builds a record batch from rows (each row holds one datum per column, in order).
/// A datum of a variant that does not fit its column type is written as NULL; the parsers
/// guarantee this never happens for accepted records.
pub fn to_record_batch(columns: &[Column], rows: &[&Row]) -> Result<RecordBatch, ConnectorError> {
    let n = rows.len();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (i, col) in columns.iter().enumerate() {
        let it = rows.iter();
        let array = match col.ty {
            ColumnType::Int8 => {
                build_column!(Int8Builder::with_capacity(n), it, i, Datum::Int(v) => *v as i8)
            }
            ColumnType::Int16 => {
                build_column!(Int16Builder::with_capacity(n), it, i, Datum::Int(v) => *v as i16)
            }
            ColumnType::Int32 => {
                build_column!(Int32Builder::with_capacity(n), it, i, Datum::Int(v) => *v as i32)
            }
            ColumnType::Int64 => {
                build_column!(Int64Builder::with_capacity(n), it, i, Datum::Int(v) => *v)
            }
            ColumnType::Float32 => {
                build_column!(Float32Builder::with_capacity(n), it, i, Datum::Float(v) => *v as f32)
            }
            ColumnType::Float64 => {
                build_column!(Float64Builder::with_capacity(n), it, i, Datum::Float(v) => *v)
            }
            ColumnType::Boolean => {
                build_column!(BooleanBuilder::with_capacity(n), it, i, Datum::Bool(v) => *v)
            }
            ColumnType::String => {
                build_column!(StringBuilder::with_capacity(n, n * 16), it, i, Datum::Str(v) => v.as_str())
            }
            ColumnType::Bytes => {
                build_column!(BinaryBuilder::with_capacity(n, n * 16), it, i, Datum::Bytes(v) => v.as_slice())
            }
            ColumnType::Timestamp => {
                let b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
                build_column!(b, it, i, Datum::Timestamp(v) => *v)
            }
            ColumnType::Decimal { precision, scale } => {
                let b = Decimal128Builder::with_capacity(n)
                    .with_precision_and_scale(precision, scale)
                    .map_err(|e| ConnectorError::Parquet {
                        path: col.name.clone(),
                        message: e.to_string(),
                    })?;
                build_column!(b, it, i, Datum::Decimal(v) => *v)
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(arrow_schema(columns), arrays).map_err(|e| ConnectorError::Parquet {
        path: "<batch>".into(),
        message: e.to_string(),
    })
}

/// Delta statistics for rows: `numRecords`, `nullCount` per column, and `minValues` /
/// `maxValues` for integer columns.
pub fn stats_json(columns: &[Column], rows: &[&Row]) -> String {
    let mut nulls = Map::new();
    let mut mins = Map::new();
    let mut maxs = Map::new();
    for (i, col) in columns.iter().enumerate() {
        let mut null_count = 0u64;
        let mut min: Option<i64> = None;
        let mut max: Option<i64> = None;
        for row in rows {
            match &row[i] {
                Datum::Null => null_count += 1,
                Datum::Int(v) if col.ty.is_integer() => {
                    min = Some(min.map_or(*v, |m| m.min(*v)));
                    max = Some(max.map_or(*v, |m| m.max(*v)));
                }
                _ => {}
            }
        }
        nulls.insert(col.name.clone(), json!(null_count));
        if let (Some(lo), Some(hi)) = (min, max) {
            mins.insert(col.name.clone(), json!(lo));
            maxs.insert(col.name.clone(), json!(hi));
        }
    }
    let mut stats = Map::new();
    stats.insert("numRecords".into(), json!(rows.len()));
    stats.insert("minValues".into(), Value::Object(mins));
    stats.insert("maxValues".into(), Value::Object(maxs));
    stats.insert("nullCount".into(), Value::Object(nulls));
    Value::Object(stats).to_string()
}

/// Writes `rows` as one Parquet file `table_dir/name` and describes it for the committer.
/// The file is written under a temporary name and renamed, so a crash never leaves a
/// half-written file under a name the log could reference.
pub fn write_parquet(
    table_dir: &Path,
    name: &str,
    columns: &[Column],
    rows: &[&Row],
) -> Result<AddFile, ConnectorError> {
    let path = table_dir.join(name);
    let tmp = table_dir.join(format!(".{name}.tmp"));
    let perr = |e: &dyn std::fmt::Display| ConnectorError::Parquet {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(table_dir).map_err(|e| ConnectorError::io(table_dir.display(), e))?;
    let batch = to_record_batch(columns, rows)?;
    let file = File::create(&tmp).map_err(|e| ConnectorError::io(tmp.display(), e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| perr(&e))?;
    writer.write(&batch).map_err(|e| perr(&e))?;
    writer.close().map_err(|e| perr(&e))?;
    std::fs::rename(&tmp, &path).map_err(|e| ConnectorError::io(path.display(), e))?;
    let size = std::fs::metadata(&path)
        .map_err(|e| ConnectorError::io(path.display(), e))?
        .len() as i64;
    Ok(AddFile {
        path: name.to_string(),
        size,
        num_records: rows.len() as i64,
        stats: stats_json(columns, rows),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn writes_a_readable_file_with_stats() {
        let dir = tempfile::tempdir().unwrap();
        let columns = vec![
            Column {
                name: "id".into(),
                ty: ColumnType::Int64,
            },
            Column {
                name: "name".into(),
                ty: ColumnType::String,
            },
            Column {
                name: "amount".into(),
                ty: ColumnType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            },
            Column {
                name: "at".into(),
                ty: ColumnType::Timestamp,
            },
        ];
        let r1 = vec![
            Datum::Int(5),
            Datum::Str("a".into()),
            Datum::Decimal(1234),
            Datum::Timestamp(7),
        ];
        let r2 = vec![Datum::Int(-3), Datum::Null, Datum::Null, Datum::Null];
        let add = write_parquet(dir.path(), "f.parquet", &columns, &[&r1, &r2]).unwrap();
        assert_eq!(add.num_records, 2);
        let stats: Value = serde_json::from_str(&add.stats).unwrap();
        assert_eq!(stats["minValues"]["id"], json!(-3));
        assert_eq!(stats["maxValues"]["id"], json!(5));
        assert_eq!(stats["nullCount"]["name"], json!(1));
        let file = File::open(dir.path().join("f.parquet")).unwrap();
        let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(batches[0].num_rows(), 2);
        assert_eq!(
            batches[0].schema().field(2).data_type(),
            &ArrowType::Decimal128(10, 2)
        );
        assert!(!dir.path().join(".f.parquet.tmp").exists());
    }
}
