//! Typed values of flattened records: column types, datums, rows and schemas.
//!
//! A record of any format is flattened to a [`Row`]: one [`Datum`] per column of the
//! table's [`Schema`], in schema order. The schema of a table is fixed once (from a
//! Debezium `schema` block, from declared `columns`, or inferred from the first records)
//! and travels with every block of input, so every worker types values identically.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// The type of a column. Names (as in `columns = { x = "int64" }`) are given by
/// [`ColumnType::name`] and parsed by [`ColumnType::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// `int8` — stored as Delta `byte`.
    Int8,
    /// `int16` — stored as Delta `short`.
    Int16,
    /// `int32` — stored as Delta `integer`.
    Int32,
    /// `int64` — stored as Delta `long`.
    Int64,
    /// `float` — stored as Delta `float`.
    Float32,
    /// `double` — stored as Delta `double`.
    Float64,
    /// `boolean`.
    Boolean,
    /// `string` (UTF-8).
    String,
    /// `bytes` — stored as Delta `binary`.
    Bytes,
    /// `timestamp` — microseconds since the Unix epoch, UTC.
    Timestamp,
    /// `decimal(p,s)` — an unscaled 128-bit integer with `scale` digits after the point.
    Decimal {
        /// Total number of digits (1..=38).
        precision: u8,
        /// Digits after the decimal point.
        scale: i8,
    },
}

impl ColumnType {
    /// Parses a type name: `int8`, `int16`, `int32`, `int64`, `float`, `double`, `boolean`,
    /// `string`, `bytes`, `timestamp`, `decimal(p,s)`. Aliases: `long`, `integer`, `int`,
    /// `short`, `byte`, `float32`, `float64`, `bool`, `binary`.
    pub fn parse(name: &str) -> Option<ColumnType> {
        let n = name.trim().to_ascii_lowercase();
        Some(match n.as_str() {
            "int8" | "byte" | "tinyint" => ColumnType::Int8,
            "int16" | "short" | "smallint" => ColumnType::Int16,
            "int32" | "int" | "integer" => ColumnType::Int32,
            "int64" | "long" | "bigint" => ColumnType::Int64,
            "float" | "float32" | "real" => ColumnType::Float32,
            "double" | "float64" => ColumnType::Float64,
            "boolean" | "bool" => ColumnType::Boolean,
            "string" | "text" | "varchar" => ColumnType::String,
            "bytes" | "binary" => ColumnType::Bytes,
            "timestamp" => ColumnType::Timestamp,
            _ => {
                let inner = n.strip_prefix("decimal(")?.strip_suffix(')')?;
                let (p, s) = inner.split_once(',')?;
                let precision: u8 = p.trim().parse().ok()?;
                let scale: i8 = s.trim().parse().ok()?;
                if precision == 0 || precision > 38 || scale < 0 || scale as u8 > precision {
                    return None;
                }
                ColumnType::Decimal { precision, scale }
            }
        })
    }

    /// The canonical name of the type (parseable by [`ColumnType::parse`]).
    pub fn name(&self) -> String {
        match self {
            ColumnType::Int8 => "int8".into(),
            ColumnType::Int16 => "int16".into(),
            ColumnType::Int32 => "int32".into(),
            ColumnType::Int64 => "int64".into(),
            ColumnType::Float32 => "float".into(),
            ColumnType::Float64 => "double".into(),
            ColumnType::Boolean => "boolean".into(),
            ColumnType::String => "string".into(),
            ColumnType::Bytes => "bytes".into(),
            ColumnType::Timestamp => "timestamp".into(),
            ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        }
    }

    /// Whether the type is one of the integer types.
    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            ColumnType::Int8 | ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64
        )
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One typed value. Which variant a column holds follows from its [`ColumnType`]:
/// integers → `Int`, float/double → `Float`, boolean → `Bool`, string → `Str`,
/// bytes → `Bytes`, timestamp → `Timestamp` (µs), decimal → `Decimal` (unscaled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Datum {
    /// SQL NULL (also: a column absent from the record).
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer column.
    Int(i64),
    /// A float or double column.
    Float(f64),
    /// A string column.
    Str(String),
    /// A bytes column.
    Bytes(Vec<u8>),
    /// A timestamp: microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// A decimal: the unscaled value (the scale is in the column type).
    Decimal(i128),
}

impl Datum {
    /// Whether this is [`Datum::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    fn rank(&self) -> u8 {
        match self {
            Datum::Null => 0,
            Datum::Bool(_) => 1,
            Datum::Int(_) => 2,
            Datum::Float(_) => 3,
            Datum::Decimal(_) => 4,
            Datum::Timestamp(_) => 5,
            Datum::Str(_) => 6,
            Datum::Bytes(_) => 7,
        }
    }

    /// A total order over datums (NULL first, floats by `total_cmp`), used to order
    /// sequence values and to break ties deterministically.
    pub fn total_cmp(&self, other: &Datum) -> Ordering {
        match (self, other) {
            (Datum::Null, Datum::Null) => Ordering::Equal,
            (Datum::Bool(a), Datum::Bool(b)) => a.cmp(b),
            (Datum::Int(a), Datum::Int(b)) => a.cmp(b),
            (Datum::Float(a), Datum::Float(b)) => a.total_cmp(b),
            (Datum::Decimal(a), Datum::Decimal(b)) => a.cmp(b),
            (Datum::Timestamp(a), Datum::Timestamp(b)) => a.cmp(b),
            (Datum::Str(a), Datum::Str(b)) => a.cmp(b),
            (Datum::Bytes(a), Datum::Bytes(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    /// Appends a canonical byte encoding of the datum (type tag + value) to `out`;
    /// equal datums give equal bytes on every machine. Used for key hashing.
    pub fn encode_key(&self, out: &mut Vec<u8>) {
        out.push(self.rank());
        match self {
            Datum::Null => {}
            Datum::Bool(b) => out.push(*b as u8),
            Datum::Int(i) | Datum::Timestamp(i) => out.extend_from_slice(&i.to_be_bytes()),
            Datum::Float(f) => out.extend_from_slice(&f.to_bits().to_be_bytes()),
            Datum::Decimal(d) => out.extend_from_slice(&d.to_be_bytes()),
            Datum::Str(s) => {
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Datum::Bytes(b) => {
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }

    /// Approximate heap + inline size in bytes, for memory accounting.
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<Datum>()
            + match self {
                Datum::Str(s) => s.len(),
                Datum::Bytes(b) => b.len(),
                _ => 0,
            }
    }
}

/// A flattened record: one datum per column of the schema, in schema order.
pub type Row = Vec<Datum>;

/// A borrowed view of one datum (what [`PackedRow::iter`] yields).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DatumRef<'a> {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer column.
    Int(i64),
    /// A float or double column.
    Float(f64),
    /// A string column.
    Str(&'a str),
    /// A bytes column.
    Bytes(&'a [u8]),
    /// A timestamp: microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// A decimal: the unscaled value.
    Decimal(i128),
}

impl Datum {
    /// A borrowed view of the datum.
    pub fn as_ref(&self) -> DatumRef<'_> {
        match self {
            Datum::Null => DatumRef::Null,
            Datum::Bool(b) => DatumRef::Bool(*b),
            Datum::Int(i) => DatumRef::Int(*i),
            Datum::Float(f) => DatumRef::Float(*f),
            Datum::Str(s) => DatumRef::Str(s),
            Datum::Bytes(b) => DatumRef::Bytes(b),
            Datum::Timestamp(t) => DatumRef::Timestamp(*t),
            Datum::Decimal(d) => DatumRef::Decimal(*d),
        }
    }
}

impl DatumRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Datum {
        match *self {
            DatumRef::Null => Datum::Null,
            DatumRef::Bool(b) => Datum::Bool(b),
            DatumRef::Int(i) => Datum::Int(i),
            DatumRef::Float(f) => Datum::Float(f),
            DatumRef::Str(s) => Datum::Str(s.to_string()),
            DatumRef::Bytes(b) => Datum::Bytes(b.to_vec()),
            DatumRef::Timestamp(t) => Datum::Timestamp(t),
            DatumRef::Decimal(d) => Datum::Decimal(d),
        }
    }
}

/// A row packed into one heap buffer: the [`Datum::encode_key`] encodings of its datums, one
/// after the other. About as large as the row's Arrow bytes, one allocation per row (a
/// [`Row`] costs a `Vec` plus a `String` per string cell), and the bytes are canonical, so
/// equal rows have equal packings (their hash is the row's fingerprint).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PackedRow(Box<[u8]>);

impl PackedRow {
    /// Packs datums.
    pub fn pack<'a>(datums: impl IntoIterator<Item = &'a Datum>) -> PackedRow {
        let mut buf = Vec::with_capacity(128);
        for d in datums {
            d.encode_key(&mut buf);
        }
        PackedRow(buf.into_boxed_slice())
    }

    /// Wraps bytes produced by [`Datum::encode_key`] calls (one per column).
    pub fn from_encoded(bytes: &[u8]) -> PackedRow {
        PackedRow(bytes.into())
    }

    /// The packed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The datums, in column order. A packing that is cut short or carries an unknown tag
    /// (which [`PackedRow::pack`] never produces) ends the iteration early.
    pub fn iter(&self) -> PackedIter<'_> {
        PackedIter { rest: &self.0 }
    }

    /// The datums as an owned row.
    pub fn unpack(&self) -> Row {
        self.iter().map(|d| d.to_owned()).collect()
    }

    /// The packed bytes of each datum, in column order (each one [`Datum::encode_key`]'s
    /// output, so the concatenation of some of them is the key of those columns).
    pub fn fields(&self) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut it = self.iter();
        let mut start = 0;
        while it.next().is_some() {
            let end = self.0.len() - it.rest.len();
            out.push(&self.0[start..end]);
            start = end;
        }
        out
    }
}

/// Iterator over the datums of a [`PackedRow`].
pub struct PackedIter<'a> {
    rest: &'a [u8],
}

impl<'a> PackedIter<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            self.rest = &[];
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|b| b.try_into().expect("length checked"))
    }

    fn var(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.fixed::<4>()?) as usize;
        self.take(len)
    }
}

impl<'a> Iterator for PackedIter<'a> {
    type Item = DatumRef<'a>;

    fn next(&mut self) -> Option<DatumRef<'a>> {
        let tag = *self.take(1)?.first()?;
        Some(match tag {
            0 => DatumRef::Null,
            1 => DatumRef::Bool(self.take(1)?[0] != 0),
            2 => DatumRef::Int(i64::from_be_bytes(self.fixed()?)),
            3 => DatumRef::Float(f64::from_bits(u64::from_be_bytes(self.fixed()?))),
            4 => DatumRef::Decimal(i128::from_be_bytes(self.fixed()?)),
            5 => DatumRef::Timestamp(i64::from_be_bytes(self.fixed()?)),
            6 => DatumRef::Str(std::str::from_utf8(self.var()?).ok()?),
            7 => DatumRef::Bytes(self.var()?),
            _ => {
                self.rest = &[];
                return None;
            }
        })
    }
}

/// One column of a schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Column {
    /// Column name (as in the source record).
    pub name: String,
    /// Column type.
    pub ty: ColumnType,
}

/// Names of the metadata columns every Debezium record is flattened with, in order,
/// after the data columns: `__op`, `__lsn`, `__source_ts_ms`, `__ts_ms`, `__tx_id`.
pub const META_COLUMNS: [(&str, ColumnType); 5] = [
    ("__op", ColumnType::String),
    ("__lsn", ColumnType::Int64),
    ("__source_ts_ms", ColumnType::Int64),
    ("__ts_ms", ColumnType::Int64),
    ("__tx_id", ColumnType::String),
];

/// The column a table with `schema_evolution = "rescue"` keeps unknown fields in: a JSON
/// object of their raw values (`{"email": "a@b", "age": 41}`), null when a record has none.
pub const RESCUED_DATA: &str = "_rescued_data";

/// The hidden column in which a record carries the fields of columns added to its table
/// after the start (`schema_evolution = "add_new_columns"`): see [`NewColumns`]. Never part
/// of a Delta schema; the table sink spreads it into real columns.
pub const NEW_COLUMNS: &str = "__new_columns";

/// The values of columns unknown to a source's fixed schema, carried in a row's
/// [`NEW_COLUMNS`] slot as `Datum::Bytes`: sorted by name, each as the packings of
/// `Str(name)`, `Str(type name)` and the typed value (see [`Datum::encode_key`]).
pub struct NewColumns;

impl NewColumns {
    /// Encodes `(name, type, value)` triples (sorted here by name; a name once).
    pub fn encode(mut fields: Vec<(String, ColumnType, Datum)>) -> Datum {
        if fields.is_empty() {
            return Datum::Null;
        }
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        fields.dedup_by(|a, b| a.0 == b.0);
        let mut buf = Vec::with_capacity(64);
        for (name, ty, value) in fields {
            Datum::Str(name).encode_key(&mut buf);
            Datum::Str(ty.name()).encode_key(&mut buf);
            value.encode_key(&mut buf);
        }
        Datum::Bytes(buf)
    }

    /// Decodes the slot's bytes back into `(name, type, value)` triples (name order).
    pub fn decode(bytes: &[u8]) -> Vec<(String, ColumnType, Datum)> {
        let packed = PackedRow::from_encoded(bytes);
        let mut it = packed.iter();
        let mut out = Vec::new();
        while let (Some(DatumRef::Str(n)), Some(DatumRef::Str(t)), Some(v)) =
            (it.next(), it.next(), it.next())
        {
            if let Some(ty) = ColumnType::parse(t) {
                out.push((n.to_string(), ty, v.to_owned()));
            }
        }
        out
    }
}

/// The fixed schema of a flattened source: data columns (from `after`/`before`) followed by
/// the [`META_COLUMNS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// All columns: data columns first, then the metadata columns.
    pub columns: Vec<Column>,
    /// How many of `columns` are data columns (the rest are metadata columns).
    pub data_columns: usize,
}

impl Schema {
    /// Builds a schema from data columns, appending the metadata columns.
    pub fn with_meta(data: Vec<Column>) -> Schema {
        let data_columns = data.len();
        let mut columns = data;
        columns.extend(META_COLUMNS.iter().map(|(n, t)| Column {
            name: (*n).to_string(),
            ty: *t,
        }));
        Schema {
            columns,
            data_columns,
        }
    }

    /// The index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The data columns (without metadata columns).
    pub fn data(&self) -> &[Column] {
        &self.columns[..self.data_columns]
    }
}

/// The change a flattened record makes to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// `c` — insert.
    Create,
    /// `u` — update.
    Update,
    /// `d` — delete.
    Delete,
    /// `r` — snapshot read.
    Read,
}

impl Op {
    /// The Debezium letter of the op.
    pub fn letter(&self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for t in [
            ColumnType::Int8,
            ColumnType::Int16,
            ColumnType::Int32,
            ColumnType::Int64,
            ColumnType::Float32,
            ColumnType::Float64,
            ColumnType::Boolean,
            ColumnType::String,
            ColumnType::Bytes,
            ColumnType::Timestamp,
            ColumnType::Decimal {
                precision: 12,
                scale: 2,
            },
        ] {
            assert_eq!(ColumnType::parse(&t.name()), Some(t));
        }
        assert_eq!(ColumnType::parse("decimal(2,5)"), None);
        assert_eq!(ColumnType::parse("uuid"), None);
    }

    #[test]
    fn total_order_puts_null_first_and_orders_values() {
        assert_eq!(Datum::Null.total_cmp(&Datum::Int(-5)), Ordering::Less);
        assert_eq!(Datum::Int(3).total_cmp(&Datum::Int(10)), Ordering::Less);
        assert_eq!(
            Datum::Str("b".into()).total_cmp(&Datum::Str("a".into())),
            Ordering::Greater
        );
    }

    #[test]
    fn key_encoding_distinguishes_types_and_values() {
        let enc = |d: &Datum| {
            let mut v = Vec::new();
            d.encode_key(&mut v);
            v
        };
        assert_ne!(enc(&Datum::Int(1)), enc(&Datum::Timestamp(1)));
        assert_ne!(enc(&Datum::Str("ab".into())), enc(&Datum::Str("a".into())));
        assert_eq!(enc(&Datum::Int(7)), enc(&Datum::Int(7)));
    }

    #[test]
    fn packed_rows_round_trip() {
        let row = vec![
            Datum::Null,
            Datum::Bool(true),
            Datum::Int(-42),
            Datum::Float(1.5),
            Datum::Str("héllo".into()),
            Datum::Bytes(vec![0, 1, 255]),
            Datum::Timestamp(1_700_000_000_000_000),
            Datum::Decimal(-123_456_789_012_345_678_901),
            Datum::Str(String::new()),
        ];
        let packed = PackedRow::pack(&row);
        assert_eq!(packed.unpack(), row);
        assert_eq!(packed.iter().count(), row.len());
        assert_eq!(PackedRow::pack(&row), packed);
        assert_ne!(PackedRow::pack(&row[1..]), packed);
    }
}
