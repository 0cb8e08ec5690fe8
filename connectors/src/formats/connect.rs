//! Kafka Connect JSON schema blocks (`{"schema": {...}, "payload": ...}`): mapping of the
//! row struct's fields to column types and per-column encodings.

use super::convert::{ColMode, TsUnit};
use crate::types::ColumnType;
use serde::Deserialize;
use std::collections::HashMap;

/// One node of a Kafka Connect schema (only the parts we use; the rest is ignored).
#[derive(Debug, Deserialize)]
struct ConnectSchema {
    #[serde(rename = "type", default)]
    ty: Option<String>,
    #[serde(default)]
    fields: Option<Vec<ConnectSchema>>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parameters: Option<HashMap<String, serde_json::Value>>,
}

/// A data column named by a schema block: its name, type and value encoding.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BlockColumn {
    pub name: String,
    pub ty: ColumnType,
    pub mode: ColMode,
}

fn param_int(params: Option<&HashMap<String, serde_json::Value>>, key: &str) -> Option<i64> {
    match params?.get(key)? {
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Maps one field of the row struct to a column type and encoding.
fn map_field(f: &ConnectSchema) -> (ColumnType, ColMode) {
    let name = f.name.as_deref().unwrap_or("");
    let plain = ColMode::default();
    let ts = |ts| ColMode { ts, dec_b64: false };
    match f.ty.as_deref().unwrap_or("") {
        "int8" => (ColumnType::Int8, plain),
        "int16" => (ColumnType::Int16, plain),
        "int32" => (ColumnType::Int32, plain),
        "int64" => match name {
            "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
                (ColumnType::Timestamp, ts(TsUnit::Millis))
            }
            "io.debezium.time.MicroTimestamp" => (ColumnType::Timestamp, ts(TsUnit::Micros)),
            "io.debezium.time.NanoTimestamp" => (ColumnType::Timestamp, ts(TsUnit::Nanos)),
            _ => (ColumnType::Int64, plain),
        },
        "float32" => (ColumnType::Float32, plain),
        "float64" => (ColumnType::Float64, plain),
        "boolean" => (ColumnType::Boolean, plain),
        "string" if name == "io.debezium.time.ZonedTimestamp" => (ColumnType::Timestamp, plain),
        "bytes" if name == "org.apache.kafka.connect.data.Decimal" => {
            let params = f.parameters.as_ref();
            let scale = param_int(params, "scale").unwrap_or(0);
            let precision = param_int(params, "connect.decimal.precision").unwrap_or(38);
            if !(0..=38).contains(&scale) {
                // Not representable as decimal(p,s); keep the base64 text.
                return (ColumnType::String, plain);
            }
            // Precision is only a bound: clamp it to what an i128 holds, and never below
            // the scale (values over the bound are rejected one by one).
            let precision = precision.clamp(1, 38).max(scale.max(1));
            (
                ColumnType::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                },
                ColMode {
                    ts: TsUnit::Millis,
                    dec_b64: true,
                },
            )
        }
        "bytes" => (ColumnType::Bytes, plain),
        // string, struct, array, map and anything unknown: text (JSON text when nested).
        _ => (ColumnType::String, plain),
    }
}

/// The data columns named by a schema block: the fields of its `after` struct, else of its
/// `before` struct. `None` when the text is not such a block.
pub(crate) fn block_columns(raw: &str) -> Option<Vec<BlockColumn>> {
    let root: ConnectSchema = serde_json::from_str(raw).ok()?;
    let fields = root.fields.as_deref()?;
    let row = ["after", "before"].iter().find_map(|which| {
        fields.iter().find(|f| {
            f.field.as_deref() == Some(which)
                && f.ty.as_deref() == Some("struct")
                && f.fields.is_some()
        })
    })?;
    let cols = row
        .fields
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|f| {
            let name = f.field.clone()?;
            let (ty, mode) = map_field(f);
            Some(BlockColumn { name, ty, mode })
        })
        .collect();
    Some(cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_connect_types() {
        let raw = r#"{"type":"struct","fields":[
            {"type":"struct","field":"before","fields":[{"type":"int32","field":"x"}]},
            {"type":"struct","field":"after","fields":[
                {"type":"int8","field":"a"},
                {"type":"int16","field":"b"},
                {"type":"int32","name":"io.debezium.time.Date","field":"c"},
                {"type":"int64","field":"d"},
                {"type":"int64","name":"io.debezium.time.Timestamp","field":"e"},
                {"type":"int64","name":"io.debezium.time.MicroTimestamp","field":"f"},
                {"type":"int64","name":"io.debezium.time.NanoTimestamp","field":"g"},
                {"type":"float32","field":"h"},
                {"type":"float64","field":"i"},
                {"type":"boolean","field":"j"},
                {"type":"string","field":"k"},
                {"type":"string","name":"io.debezium.time.ZonedTimestamp","field":"l"},
                {"type":"bytes","field":"m"},
                {"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"12"},"field":"n"},
                {"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"3"},"field":"o"},
                {"type":"struct","fields":[],"field":"p"},
                {"type":"array","items":{"type":"int32"},"field":"q"},
                {"type":"map","keys":{"type":"string"},"values":{"type":"string"},"field":"r"}
            ]}]}"#;
        let cols = block_columns(raw).unwrap();
        let tys: Vec<String> = cols.iter().map(|c| c.ty.name()).collect();
        assert_eq!(
            tys,
            [
                "int8",
                "int16",
                "int32",
                "int64",
                "timestamp",
                "timestamp",
                "timestamp",
                "float",
                "double",
                "boolean",
                "string",
                "timestamp",
                "bytes",
                "decimal(12,2)",
                "decimal(38,3)",
                "string",
                "string",
                "string"
            ]
        );
        assert_eq!(cols[5].mode.ts, TsUnit::Micros);
        assert_eq!(cols[6].mode.ts, TsUnit::Nanos);
        assert!(cols[13].mode.dec_b64);
        assert_eq!(cols[0].name, "a");
    }

    #[test]
    fn falls_back_to_before_and_rejects_non_blocks() {
        let raw = r#"{"type":"struct","fields":[{"type":"struct","field":"before","fields":[{"type":"int32","field":"x"}]}]}"#;
        let cols = block_columns(raw).unwrap();
        assert_eq!(cols[0].name, "x");
        assert!(block_columns("null").is_none());
        assert!(block_columns("[1]").is_none());
        assert!(block_columns(r#"{"type":"struct","fields":[]}"#).is_none());
    }
}
