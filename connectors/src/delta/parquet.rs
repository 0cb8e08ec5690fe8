//! Rows → Arrow record batches → Parquet data files, with Delta file statistics.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{
    new_null_array, Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder,
    Decimal128Array, Decimal128Builder, Float32Array, Float32Builder, Float64Array, Float64Builder,
    Int16Array, Int16Builder, Int32Array, Int32Builder, Int64Array, Int64Builder, Int8Array,
    Int8Builder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::concat_batches;
use deltalake::arrow::compute::kernels::aggregate::{max, min};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
use deltalake::kernel::{DataType as DeltaType, StructField};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::types::{Column, ColumnType, Datum, DatumRef, NewColumns, PackedRow, Row};
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

/// One column being built from datums.
enum ColBuilder {
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Decimal(Decimal128Builder),
}

impl ColBuilder {
    fn new(col: &Column, n: usize) -> Result<ColBuilder, ConnectorError> {
        Ok(match col.ty {
            ColumnType::Int8 => ColBuilder::Int8(Int8Builder::with_capacity(n)),
            ColumnType::Int16 => ColBuilder::Int16(Int16Builder::with_capacity(n)),
            ColumnType::Int32 => ColBuilder::Int32(Int32Builder::with_capacity(n)),
            ColumnType::Int64 => ColBuilder::Int64(Int64Builder::with_capacity(n)),
            ColumnType::Float32 => ColBuilder::Float32(Float32Builder::with_capacity(n)),
            ColumnType::Float64 => ColBuilder::Float64(Float64Builder::with_capacity(n)),
            ColumnType::Boolean => ColBuilder::Boolean(BooleanBuilder::with_capacity(n)),
            ColumnType::String => ColBuilder::Utf8(StringBuilder::with_capacity(n, n * 16)),
            ColumnType::Bytes => ColBuilder::Binary(BinaryBuilder::with_capacity(n, n * 16)),
            ColumnType::Timestamp => ColBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            ),
            ColumnType::Decimal { precision, scale } => ColBuilder::Decimal(
                Decimal128Builder::with_capacity(n)
                    .with_precision_and_scale(precision, scale)
                    .map_err(|e| ConnectorError::Parquet {
                        path: col.name.clone(),
                        message: e.to_string(),
                    })?,
            ),
        })
    }

    /// Appends a datum; a variant that does not fit the column type is written as NULL (the
    /// parsers guarantee this never happens for accepted records).
    fn append(&mut self, d: DatumRef<'_>) {
        use DatumRef as D;
        match (self, d) {
            (ColBuilder::Int8(b), D::Int(v)) => b.append_value(v as i8),
            (ColBuilder::Int16(b), D::Int(v)) => b.append_value(v as i16),
            (ColBuilder::Int32(b), D::Int(v)) => b.append_value(v as i32),
            (ColBuilder::Int64(b), D::Int(v)) => b.append_value(v),
            (ColBuilder::Float32(b), D::Float(v)) => b.append_value(v as f32),
            (ColBuilder::Float64(b), D::Float(v)) => b.append_value(v),
            (ColBuilder::Boolean(b), D::Bool(v)) => b.append_value(v),
            (ColBuilder::Utf8(b), D::Str(v)) => b.append_value(v),
            (ColBuilder::Binary(b), D::Bytes(v)) => b.append_value(v),
            (ColBuilder::Timestamp(b), D::Timestamp(v)) => b.append_value(v),
            (ColBuilder::Decimal(b), D::Decimal(v)) => b.append_value(v),
            (ColBuilder::Int8(b), _) => b.append_null(),
            (ColBuilder::Int16(b), _) => b.append_null(),
            (ColBuilder::Int32(b), _) => b.append_null(),
            (ColBuilder::Int64(b), _) => b.append_null(),
            (ColBuilder::Float32(b), _) => b.append_null(),
            (ColBuilder::Float64(b), _) => b.append_null(),
            (ColBuilder::Boolean(b), _) => b.append_null(),
            (ColBuilder::Utf8(b), _) => b.append_null(),
            (ColBuilder::Binary(b), _) => b.append_null(),
            (ColBuilder::Timestamp(b), _) => b.append_null(),
            (ColBuilder::Decimal(b), _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColBuilder::Int8(mut b) => Arc::new(b.finish()),
            ColBuilder::Int16(mut b) => Arc::new(b.finish()),
            ColBuilder::Int32(mut b) => Arc::new(b.finish()),
            ColBuilder::Int64(mut b) => Arc::new(b.finish()),
            ColBuilder::Float32(mut b) => Arc::new(b.finish()),
            ColBuilder::Float64(mut b) => Arc::new(b.finish()),
            ColBuilder::Boolean(mut b) => Arc::new(b.finish()),
            ColBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ColBuilder::Binary(mut b) => Arc::new(b.finish()),
            ColBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            ColBuilder::Decimal(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Builds a record batch from rows given as datum iterators (one datum per column, in order;
/// missing trailing datums are NULL).
fn build_batch<'a, I>(
    columns: &[Column],
    n: usize,
    rows: impl Iterator<Item = I>,
) -> Result<RecordBatch, ConnectorError>
where
    I: Iterator<Item = DatumRef<'a>>,
{
    let mut builders = columns
        .iter()
        .map(|c| ColBuilder::new(c, n))
        .collect::<Result<Vec<_>, _>>()?;
    for row in rows {
        let mut row = row;
        for b in builders.iter_mut() {
            b.append(row.next().unwrap_or(DatumRef::Null));
        }
    }
    let arrays = builders.into_iter().map(ColBuilder::finish).collect();
    RecordBatch::try_new(arrow_schema(columns), arrays).map_err(|e| ConnectorError::Parquet {
        path: "<batch>".into(),
        message: e.to_string(),
    })
}

/// Builds a record batch from rows (each row holds one datum per column, in order).
pub fn to_record_batch(columns: &[Column], rows: &[&Row]) -> Result<RecordBatch, ConnectorError> {
    build_batch(
        columns,
        rows.len(),
        rows.iter().map(|r| r.iter().map(Datum::as_ref)),
    )
}

/// Builds a record batch from packed rows (each packs one datum per column, in order).
pub fn packed_record_batch(
    columns: &[Column],
    rows: &[&PackedRow],
) -> Result<RecordBatch, ConnectorError> {
    build_batch(columns, rows.len(), rows.iter().map(|r| r.iter()))
}

/// Spreads the [`NewColumns`](crate::types::NewColumns) slot of a batch (the binary column at
/// `slot`) into real columns: the slot column is removed and one column per entry of
/// `added` is appended, holding each row's value of that name (null where a row has none).
/// `columns` describe `batch`. A row's value whose type differs from the column's is an
/// error naming both (the caller checks types before).
pub fn spread_new_columns(
    batch: &RecordBatch,
    columns: &[Column],
    slot: usize,
    added: &[Column],
) -> Result<RecordBatch, ConnectorError> {
    let err = |message: String| ConnectorError::Parquet {
        path: "<batch>".into(),
        message,
    };
    // Row-major: each row's values of the added columns.
    let mut values: Vec<Vec<Datum>> = vec![vec![Datum::Null; added.len()]; batch.num_rows()];
    if !added.is_empty() {
        let slot_col = batch.column(slot);
        for (i, row) in values.iter_mut().enumerate() {
            let Datum::Bytes(b) = datum_at(slot_col.as_ref(), ColumnType::Bytes, i) else {
                continue;
            };
            for (name, ty, v) in NewColumns::decode(&b) {
                if let Some(c) = added.iter().position(|c| c.name == name) {
                    if added[c].ty != ty {
                        return Err(err(format!(
                            "column `{name}` is {} in the table but {ty} in a row",
                            added[c].ty
                        )));
                    }
                    row[c] = v;
                }
            }
        }
    }
    let mut fields: Vec<Column> = columns.to_vec();
    fields.remove(slot);
    fields.extend(added.iter().cloned());
    let mut arrays = batch.columns().to_vec();
    arrays.remove(slot);
    if !added.is_empty() {
        let extra = build_batch(
            added,
            batch.num_rows(),
            values.iter().map(|row| row.iter().map(Datum::as_ref)),
        )?;
        arrays.extend(extra.columns().iter().cloned());
    }
    RecordBatch::try_new(arrow_schema(&fields), arrays).map_err(|e| err(e.to_string()))
}

/// The datum at row `i` of an Arrow column of type `ty` (as the parsers would have produced
/// it, so that keys read back from a file encode exactly like keys of parsed records).
pub fn datum_at(array: &dyn Array, ty: ColumnType, i: usize) -> Datum {
    if array.is_null(i) {
        return Datum::Null;
    }
    macro_rules! get {
        ($t:ty) => {
            array.as_any().downcast_ref::<$t>().map(|a| a.value(i))
        };
    }
    let d = match ty {
        ColumnType::Int8 => get!(Int8Array).map(|v| Datum::Int(v as i64)),
        ColumnType::Int16 => get!(Int16Array).map(|v| Datum::Int(v as i64)),
        ColumnType::Int32 => get!(Int32Array).map(|v| Datum::Int(v as i64)),
        ColumnType::Int64 => get!(Int64Array).map(Datum::Int),
        ColumnType::Float32 => get!(Float32Array).map(|v| Datum::Float(v as f64)),
        ColumnType::Float64 => get!(Float64Array).map(Datum::Float),
        ColumnType::Boolean => get!(BooleanArray).map(Datum::Bool),
        ColumnType::String => get!(StringArray).map(|v| Datum::Str(v.to_string())),
        ColumnType::Bytes => get!(BinaryArray).map(|v| Datum::Bytes(v.to_vec())),
        ColumnType::Timestamp => get!(TimestampMicrosecondArray).map(Datum::Timestamp),
        ColumnType::Decimal { .. } => get!(Decimal128Array).map(Datum::Decimal),
    };
    d.unwrap_or(Datum::Null)
}

/// Delta statistics of a batch: `numRecords`, `nullCount` per column, and `minValues` /
/// `maxValues` for integer columns.
pub fn batch_stats(columns: &[Column], batch: &RecordBatch) -> String {
    let mut nulls = Map::new();
    let mut mins = Map::new();
    let mut maxs = Map::new();
    for (i, col) in columns.iter().enumerate() {
        let array = batch.column(i);
        nulls.insert(col.name.clone(), json!(array.null_count()));
        macro_rules! min_max {
            ($t:ty) => {
                array
                    .as_any()
                    .downcast_ref::<$t>()
                    .and_then(|a| Some((min(a)? as i64, max(a)? as i64)))
            };
        }
        let range = match col.ty {
            ColumnType::Int8 => min_max!(Int8Array),
            ColumnType::Int16 => min_max!(Int16Array),
            ColumnType::Int32 => min_max!(Int32Array),
            ColumnType::Int64 => min_max!(Int64Array),
            _ => None,
        };
        if let Some((lo, hi)) = range {
            mins.insert(col.name.clone(), json!(lo));
            maxs.insert(col.name.clone(), json!(hi));
        }
    }
    let mut stats = Map::new();
    stats.insert("numRecords".into(), json!(batch.num_rows()));
    stats.insert("minValues".into(), Value::Object(mins));
    stats.insert("maxValues".into(), Value::Object(maxs));
    stats.insert("nullCount".into(), Value::Object(nulls));
    Value::Object(stats).to_string()
}

/// Writes `rows` as one Parquet file `table_dir/name` and describes it for the committer.
pub fn write_parquet(
    table_dir: &Path,
    name: &str,
    columns: &[Column],
    rows: &[&Row],
) -> Result<AddFile, ConnectorError> {
    write_batch(table_dir, name, columns, &to_record_batch(columns, rows)?)
}

/// Writes a batch as one Parquet file `table_dir/name` and describes it for the committer.
/// The file is written under a temporary name and renamed, so a crash never leaves a
/// half-written file under a name the log could reference.
pub fn write_batch(
    table_dir: &Path,
    name: &str,
    columns: &[Column],
    batch: &RecordBatch,
) -> Result<AddFile, ConnectorError> {
    let path = table_dir.join(name);
    let tmp = table_dir.join(format!(".{name}.tmp"));
    let perr = |e: &dyn std::fmt::Display| ConnectorError::Parquet {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(table_dir).map_err(|e| ConnectorError::io(table_dir.display(), e))?;
    let file = File::create(&tmp).map_err(|e| ConnectorError::io(tmp.display(), e))?;
    // Plain encoding + snappy, statistics per column chunk: dictionary encoding (interning
    // every string) and page-level statistics more than doubled the cost of writing a file
    // for little gain on files that are rewritten every few epochs (bench/RESULTS.md).
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build();
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| perr(&e))?;
    writer.write(batch).map_err(|e| perr(&e))?;
    writer.close().map_err(|e| perr(&e))?;
    std::fs::rename(&tmp, &path).map_err(|e| ConnectorError::io(path.display(), e))?;
    let size = std::fs::metadata(&path)
        .map_err(|e| ConnectorError::io(path.display(), e))?
        .len() as i64;
    Ok(AddFile {
        path: name.to_string(),
        size,
        num_records: batch.num_rows() as i64,
        stats: batch_stats(columns, batch),
    })
}

/// The number of rows of a Parquet data file of a table (from its footer).
pub fn parquet_num_rows(table_dir: &Path, name: &str) -> Result<i64, ConnectorError> {
    Ok(open_parquet(table_dir, name)?
        .metadata()
        .file_metadata()
        .num_rows())
}

/// The error of reading the Parquet file at `path`.
fn parquet_read_err(path: &Path, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Parquet {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Opens a data file of a table and reads its footer.
fn open_parquet(
    table_dir: &Path,
    name: &str,
) -> Result<ParquetRecordBatchReaderBuilder<File>, ConnectorError> {
    let path = table_dir.join(name);
    let file = File::open(&path).map_err(|e| ConnectorError::io(path.display(), e))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_read_err(&path, e))
}

/// Reads a Parquet data file of a table back as one batch with the table's columns, matched
/// by name (as Delta does): columns the file lacks (written before they were added to the
/// table) are read as nulls.
pub fn read_parquet(
    table_dir: &Path,
    name: &str,
    columns: &[Column],
) -> Result<RecordBatch, ConnectorError> {
    let path = table_dir.join(name);
    let perr = |e: &dyn std::fmt::Display| parquet_read_err(&path, e);
    let reader = open_parquet(table_dir, name)?
        .with_batch_size(1 << 20)
        .build()
        .map_err(|e| perr(&e))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| perr(&e))?;
    let schema = arrow_schema(columns);
    let batches = batches
        .into_iter()
        .map(|b| {
            // By name: a file written before columns were added lacks them (nulls).
            let file = b.schema();
            let arrays = schema
                .fields()
                .iter()
                .map(|f| match file.index_of(f.name()) {
                    Ok(i) => b.column(i).clone(),
                    Err(_) => new_null_array(f.data_type(), b.num_rows()),
                })
                .collect();
            RecordBatch::try_new(schema.clone(), arrays)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| perr(&e))?;
    concat_batches(&schema, &batches).map_err(|e| perr(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn packed_rows_write_and_read_back_with_the_same_datums() {
        let dir = tempfile::tempdir().unwrap();
        let columns = vec![
            Column {
                name: "k".into(),
                ty: ColumnType::Int32,
            },
            Column {
                name: "s".into(),
                ty: ColumnType::String,
            },
            Column {
                name: "f".into(),
                ty: ColumnType::Float32,
            },
            Column {
                name: "d".into(),
                ty: ColumnType::Decimal {
                    precision: 12,
                    scale: 3,
                },
            },
            Column {
                name: "t".into(),
                ty: ColumnType::Timestamp,
            },
            Column {
                name: "b".into(),
                ty: ColumnType::Bytes,
            },
            Column {
                name: "x".into(),
                ty: ColumnType::Boolean,
            },
        ];
        let rows = [
            vec![
                Datum::Int(7),
                Datum::Str("ä".into()),
                Datum::Float(0.5),
                Datum::Decimal(-5),
                Datum::Timestamp(3),
                Datum::Bytes(vec![1]),
                Datum::Bool(false),
            ],
            vec![
                Datum::Int(-1),
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
            ],
        ];
        let packed: Vec<PackedRow> = rows.iter().map(PackedRow::pack).collect();
        let refs: Vec<&PackedRow> = packed.iter().collect();
        let batch = packed_record_batch(&columns, &refs).unwrap();
        let add = write_batch(dir.path(), "p.parquet", &columns, &batch).unwrap();
        assert_eq!(add.num_records, 2);
        let stats: Value = serde_json::from_str(&add.stats).unwrap();
        assert_eq!(stats["minValues"]["k"], json!(-1));
        assert_eq!(stats["maxValues"]["k"], json!(7));
        assert_eq!(stats["nullCount"]["s"], json!(1));
        let back = read_parquet(dir.path(), "p.parquet", &columns).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (c, col) in columns.iter().enumerate() {
                assert_eq!(
                    datum_at(back.column(c).as_ref(), col.ty, r),
                    row[c],
                    "row {r} col {c}"
                );
            }
        }
    }
}
