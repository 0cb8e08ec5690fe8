//! Tests of the Debezium JSON parser and schema resolution.

use super::*;
use crate::types::Column;

const EX: &str = r#"{"before":null,"after":{"customer_id":42,"name":"Customer 42","email":"c42@example.com","country":"DE","segment":"gold","total_spend":1234.5,"is_active":true,"updated_at":1700000000000},"source":{"version":"2.7.0.Final","connector":"postgresql","name":"bank","ts_ms":1700000000000,"snapshot":"false","db":"bank","sequence":"[\"24023128\",\"24023128\"]","schema":"public","table":"customers","txId":555,"lsn":24023128,"xmin":null},"op":"u","ts_ms":1700000000123,"transaction":null}"#;

fn col(name: &str, ty: ColumnType) -> Column {
    Column {
        name: name.into(),
        ty,
    }
}

fn s(v: &str) -> Datum {
    Datum::Str(v.into())
}

fn customers_schema() -> Schema {
    Schema::with_meta(vec![
        col("customer_id", ColumnType::Int64),
        col("name", ColumnType::String),
        col("email", ColumnType::String),
        col("country", ColumnType::String),
        col("segment", ColumnType::String),
        col("total_spend", ColumnType::Float64),
        col("is_active", ColumnType::Boolean),
        col("updated_at", ColumnType::Int64),
    ])
}

fn parser(schema: Schema) -> DebeziumParser {
    DebeziumParser::new(Arc::new(schema))
}

fn schema_of(declared: &[(&str, ColumnType)], lines: &[&str]) -> Schema {
    let declared: Vec<(String, ColumnType)> =
        declared.iter().map(|(n, t)| (n.to_string(), *t)).collect();
    let sample: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    DebeziumParser::resolve_schema("test", &declared, &sample).unwrap()
}

fn record(p: &mut DebeziumParser, line: &str) -> (Op, Row) {
    match p.parse(line.as_bytes()) {
        Ok(Parsed::Record { op, row }) => (op, row),
        other => panic!("expected a record for {line}, got {other:?}"),
    }
}

fn bad(p: &mut DebeziumParser, line: &str) -> String {
    match p.parse(line.as_bytes()) {
        Err(BadRecord { reason, .. }) => reason,
        other => panic!("expected a bad record for {line}, got {other:?}"),
    }
}

/// A one-column-per-type schema plus a line carrying `after`.
fn line_with_after(after: &str, op: &str) -> String {
    format!(
        r#"{{"before":null,"after":{after},"source":{{"lsn":7,"ts_ms":5}},"op":"{op}","ts_ms":6}}"#
    )
}

// --------------------------------------------------------------------------------------
// Envelope forms, ops, meta columns

#[test]
fn infers_the_example_schema() {
    let schema = schema_of(&[], &[EX]);
    assert_eq!(schema, customers_schema());
    assert_eq!(schema.data_columns, 8);
    assert_eq!(schema.columns[8].name, "__op");
}

#[test]
fn parses_the_example_line_without_schema() {
    let mut p = parser(customers_schema());
    let (op, row) = record(&mut p, EX);
    assert_eq!(op, Op::Update);
    assert_eq!(
        row,
        vec![
            Datum::Int(42),
            s("Customer 42"),
            s("c42@example.com"),
            s("DE"),
            s("gold"),
            Datum::Float(1234.5),
            Datum::Bool(true),
            Datum::Int(1700000000000),
            s("u"),
            Datum::Int(24023128),
            Datum::Int(1700000000000),
            Datum::Int(1700000000123),
            s("555"),
        ]
    );
}

#[test]
fn tolerates_trailing_carriage_return_and_whitespace() {
    let mut p = parser(customers_schema());
    let (_, a) = record(&mut p, EX);
    let (_, b) = record(&mut p, &format!("{EX}\r"));
    let (_, c) = record(&mut p, &format!("  {EX}  "));
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn parses_the_envelope_with_payload_form() {
    let mut p = parser(customers_schema());
    let (_, plain) = record(&mut p, EX);
    let wrapped = format!(r#"{{"schema":null,"payload":{EX}}}"#);
    let (op, row) = record(&mut p, &wrapped);
    assert_eq!(op, Op::Update);
    assert_eq!(row, plain);
    // payload without schema key, and payload before schema
    let (_, row) = record(&mut p, &format!(r#"{{"payload":{EX}}}"#));
    assert_eq!(row, plain);
    let (_, row) = record(&mut p, &format!(r#"{{"payload":{EX},"schema":null}}"#));
    assert_eq!(row, plain);
}

#[test]
fn each_op_uses_its_image() {
    let schema = Schema::with_meta(vec![
        col("id", ColumnType::Int64),
        col("v", ColumnType::String),
    ]);
    let mut p = parser(schema);
    for (letter, op) in [("c", Op::Create), ("r", Op::Read), ("u", Op::Update)] {
        let line = format!(
            r#"{{"before":{{"id":1,"v":"old"}},"after":{{"id":1,"v":"new"}},"op":"{letter}"}}"#
        );
        let (got, row) = record(&mut p, &line);
        assert_eq!(got, op);
        assert_eq!(
            row,
            vec![
                Datum::Int(1),
                s("new"),
                s(letter),
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null
            ]
        );
    }
    let (op, row) = record(
        &mut p,
        r#"{"before":{"id":1,"v":"old"},"after":null,"op":"d","ts_ms":9}"#,
    );
    assert_eq!(op, Op::Delete);
    assert_eq!(
        row,
        vec![
            Datum::Int(1),
            s("old"),
            s("d"),
            Datum::Null,
            Datum::Null,
            Datum::Int(9),
            Datum::Null
        ]
    );
    // op before the images (non-Debezium order) works too
    let (op, row) = record(&mut p, r#"{"op":"d","before":{"id":2},"after":{"id":3}}"#);
    assert_eq!(op, Op::Delete);
    assert_eq!(row[0], Datum::Int(2));
    let (op, row) = record(&mut p, r#"{"op":"c","before":{"id":2},"after":{"id":3}}"#);
    assert_eq!(op, Op::Create);
    assert_eq!(row[0], Datum::Int(3));
}

#[test]
fn unused_image_errors_do_not_matter() {
    let schema = Schema::with_meta(vec![col("id", ColumnType::Int64)]);
    let mut p = parser(schema);
    let (op, row) = record(
        &mut p,
        r#"{"before":{"id":1},"after":{"id":"junk","nope":1},"op":"d"}"#,
    );
    assert_eq!(op, Op::Delete);
    assert_eq!(row[0], Datum::Int(1));
    let (_, row) = record(
        &mut p,
        r#"{"before":{"id":"junk","nope":1},"after":{"id":5},"op":"u"}"#,
    );
    assert_eq!(row[0], Datum::Int(5));
}

#[test]
fn tombstones_and_empty_lines_skip() {
    let mut p = parser(customers_schema());
    for line in [
        "",
        "   ",
        "\r",
        "null",
        "null\r",
        " null ",
        r#"{"schema":null,"payload":null}"#,
        r#"{"payload":null}"#,
        r#"{"payload":null,"schema":{"type":"struct"}}"#,
    ] {
        assert_eq!(p.parse(line.as_bytes()), Ok(Parsed::Skip), "line {line:?}");
    }
}

#[test]
fn meta_columns_follow_their_sources() {
    let schema = Schema::with_meta(vec![col("id", ColumnType::Int64)]);
    let mut p = parser(schema);
    // transaction.id wins over source.txId
    let (_, row) = record(
        &mut p,
        r#"{"after":{"id":1},"source":{"txId":555,"lsn":10,"ts_ms":11},"op":"c","ts_ms":12,"transaction":{"id":"555:10","total_order":1,"data_collection_order":1}}"#,
    );
    assert_eq!(
        row,
        vec![
            Datum::Int(1),
            s("c"),
            Datum::Int(10),
            Datum::Int(11),
            Datum::Int(12),
            s("555:10")
        ]
    );
    // string txId, no lsn
    let (_, row) = record(
        &mut p,
        r#"{"after":{"id":1},"source":{"txId":"abc","ts_ms":11},"op":"r"}"#,
    );
    assert_eq!(
        row,
        vec![
            Datum::Int(1),
            s("r"),
            Datum::Null,
            Datum::Int(11),
            Datum::Null,
            s("abc")
        ]
    );
    // nothing at all
    let (_, row) = record(&mut p, r#"{"after":{"id":1},"op":"c"}"#);
    assert_eq!(
        row,
        vec![
            Datum::Int(1),
            s("c"),
            Datum::Null,
            Datum::Null,
            Datum::Null,
            Datum::Null
        ]
    );
    assert_eq!(
        bad(
            &mut p,
            r#"{"after":{"id":1},"source":{"lsn":"x"},"op":"c"}"#
        ),
        "`source.lsn`: expected int64, found string \"x\""
    );
}

#[test]
fn absent_columns_are_null() {
    let mut p = parser(customers_schema());
    let (_, row) = record(&mut p, r#"{"after":{"name":"x"},"op":"c"}"#);
    assert_eq!(row[0], Datum::Null);
    assert_eq!(row[1], s("x"));
    assert_eq!(row[2], Datum::Null);
    // fields in any order
    let (_, row) = record(
        &mut p,
        r#"{"after":{"is_active":false,"customer_id":7,"name":null},"op":"c"}"#,
    );
    assert_eq!(row[0], Datum::Int(7));
    assert_eq!(row[1], Datum::Null);
    assert_eq!(row[6], Datum::Bool(false));
}

#[test]
fn strings_with_escapes_are_unescaped() {
    let mut p = parser(customers_schema());
    let (_, row) = record(
        &mut p,
        r#"{"after":{"name":"a\"b\\c\u00e9\n","email":"ü"},"op":"c"}"#,
    );
    assert_eq!(row[1], s("a\"b\\cé\n"));
    assert_eq!(row[2], s("ü"));
}

// --------------------------------------------------------------------------------------
// Schema blocks

/// A Kafka Connect envelope schema whose row struct has `fields` (JSON field list).
fn block(fields: &str) -> String {
    format!(
        r#"{{"type":"struct","fields":[{{"type":"struct","fields":[{fields}],"optional":true,"name":"bank.public.t.Value","field":"before"}},{{"type":"struct","fields":[{fields}],"optional":true,"name":"bank.public.t.Value","field":"after"}},{{"type":"struct","fields":[{{"type":"int64","field":"lsn"}}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}},{{"type":"string","optional":false,"field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}}],"optional":false,"name":"bank.public.t.Envelope"}}"#
    )
}

const TYPED_FIELDS: &str = r#"{"type":"int64","optional":false,"field":"id"},{"type":"int64","optional":true,"name":"io.debezium.time.Timestamp","version":1,"field":"ts"},{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"ts_us"},{"type":"int64","optional":true,"name":"io.debezium.time.NanoTimestamp","version":1,"field":"ts_ns"},{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"zts"},{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"12"},"field":"credit_limit"},{"type":"int16","optional":true,"field":"small"},{"type":"string","optional":true,"field":"name"}"#;

fn typed_line(after: &str) -> String {
    format!(
        r#"{{"schema":{},"payload":{{"before":null,"after":{after},"source":{{"lsn":1}},"op":"c","ts_ms":2}}}}"#,
        block(TYPED_FIELDS)
    )
}

fn typed_schema() -> Schema {
    Schema::with_meta(vec![
        col("id", ColumnType::Int64),
        col("ts", ColumnType::Timestamp),
        col("ts_us", ColumnType::Timestamp),
        col("ts_ns", ColumnType::Timestamp),
        col("zts", ColumnType::Timestamp),
        col(
            "credit_limit",
            ColumnType::Decimal {
                precision: 12,
                scale: 2,
            },
        ),
        col("small", ColumnType::Int16),
        col("name", ColumnType::String),
    ])
}

#[test]
fn schema_block_fixes_the_schema() {
    let line = typed_line(r#"{"id":1}"#);
    // the block wins over declared columns and over inference
    let schema = schema_of(
        &[("id", ColumnType::String), ("extra", ColumnType::Int8)],
        &["garbage", r#"{"after":{"zzz":1},"op":"c"}"#, &line],
    );
    assert_eq!(schema, typed_schema());
}

#[test]
fn schema_block_types_values() {
    let schema = schema_of(&[], &[&typed_line(r#"{"id":1}"#)]);
    let mut p = parser(schema);
    let line = typed_line(
        r#"{"id":1,"ts":1700000000123,"ts_us":1700000000123456,"ts_ns":1700000000123456789,"zts":"2023-11-14T22:13:20.123456Z","credit_limit":"MDk=","small":-5,"name":"n"}"#,
    );
    let (op, row) = record(&mut p, &line);
    assert_eq!(op, Op::Create);
    assert_eq!(
        row,
        vec![
            Datum::Int(1),
            Datum::Timestamp(1_700_000_000_123_000),
            Datum::Timestamp(1_700_000_000_123_456),
            Datum::Timestamp(1_700_000_000_123_456),
            Datum::Timestamp(1_700_000_000_123_456),
            Datum::Decimal(12345),
            Datum::Int(-5),
            s("n"),
            s("c"),
            Datum::Int(1),
            Datum::Null,
            Datum::Int(2),
            Datum::Null,
        ]
    );
    // negative decimal: -12345 = 0xCFC7
    let (_, row) = record(&mut p, &typed_line(r#"{"id":2,"credit_limit":"z8c="}"#));
    assert_eq!(row[5], Datum::Decimal(-12345));
    // the same block again (cache hit) and a zoned timestamp with an offset
    let (_, row) = record(
        &mut p,
        &typed_line(r#"{"id":3,"zts":"2023-11-14T23:13:20+01:00","credit_limit":"AA=="}"#),
    );
    assert_eq!(row[4], Datum::Timestamp(1_700_000_000_000_000));
    assert_eq!(row[5], Datum::Decimal(0));
    // with a block, decimals must be base64
    assert_eq!(
        bad(&mut p, &typed_line(r#"{"id":3,"credit_limit":12.5}"#)),
        "column `credit_limit`: expected decimal(12,2) as base64 string, found number 12.5"
    );
}

#[test]
fn schema_block_type_changes_and_unknown_columns_are_bad() {
    let mut p = parser(typed_schema());
    let changed = TYPED_FIELDS.replace(
        r#"{"type":"int16","optional":true,"field":"small"}"#,
        r#"{"type":"string","optional":true,"field":"small"}"#,
    );
    let line = format!(
        r#"{{"schema":{},"payload":{{"after":{{"id":1}},"op":"c"}}}}"#,
        block(&changed)
    );
    assert_eq!(
        bad(&mut p, &line),
        "column `small` changed type from int16 to string"
    );
    assert_eq!(
        bad(&mut p, &line),
        "column `small` changed type from int16 to string"
    );
    let extra = format!(r#"{TYPED_FIELDS},{{"type":"int32","field":"added"}}"#);
    let line = format!(
        r#"{{"schema":{},"payload":{{"after":{{"id":1}},"op":"c"}}}}"#,
        block(&extra)
    );
    assert_eq!(bad(&mut p, &line), "column `added` is not in the schema");
    // back to the good block
    let (_, row) = record(&mut p, &typed_line(r#"{"id":1}"#));
    assert_eq!(row[0], Datum::Int(1));
    // a decimal whose scale changed
    let rescaled = TYPED_FIELDS.replace(r#""scale":"2""#, r#""scale":"3""#);
    let line = format!(
        r#"{{"schema":{},"payload":{{"after":{{"id":1}},"op":"c"}}}}"#,
        block(&rescaled)
    );
    assert_eq!(
        bad(&mut p, &line),
        "column `credit_limit` changed type from decimal(12,2) to decimal(12,3)"
    );
}

#[test]
fn without_block_timestamps_are_millis_or_rfc3339_and_decimals_plain() {
    let schema = Schema::with_meta(vec![
        col("ts", ColumnType::Timestamp),
        col(
            "d",
            ColumnType::Decimal {
                precision: 12,
                scale: 2,
            },
        ),
    ]);
    let mut p = parser(schema);
    let (_, row) = record(&mut p, &line_with_after(r#"{"ts":1000,"d":12.5}"#, "c"));
    assert_eq!(
        &row[..2],
        &[Datum::Timestamp(1_000_000), Datum::Decimal(1250)]
    );
    let (_, row) = record(
        &mut p,
        &line_with_after(r#"{"ts":"1970-01-01T00:00:01Z","d":"-0.07"}"#, "c"),
    );
    assert_eq!(
        &row[..2],
        &[Datum::Timestamp(1_000_000), Datum::Decimal(-7)]
    );
    let (_, row) = record(&mut p, &line_with_after(r#"{"d":-3}"#, "c"));
    assert_eq!(row[1], Datum::Decimal(-300));
    assert_eq!(
        bad(&mut p, &line_with_after(r#"{"d":1.234}"#, "c")),
        "column `d`: 1.234 has more fractional digits than the scale of decimal(12,2)"
    );
    assert_eq!(
        bad(&mut p, &line_with_after(r#"{"d":1e3}"#, "c")),
        "column `d`: expected decimal(12,2), found number 1e3 (not plain decimal notation)"
    );
    assert_eq!(
        bad(&mut p, &line_with_after(r#"{"d":"MDk="}"#, "c")),
        "column `d`: expected decimal(12,2) in plain decimal notation, found \"MDk=\""
    );
    assert_eq!(
        bad(&mut p, &line_with_after(r#"{"d":12345678901.5}"#, "c")),
        "column `d`: 12345678901.5 exceeds the precision of decimal(12,2)"
    );
    assert_eq!(
        bad(&mut p, &line_with_after(r#"{"ts":1.5}"#, "c")),
        "column `ts`: expected timestamp, found number 1.5"
    );
    assert!(bad(&mut p, &line_with_after(r#"{"ts":"yesterday"}"#, "c"))
        .starts_with("column `ts`: expected timestamp, found string \"yesterday\""));
    assert_eq!(
        bad(
            &mut p,
            &line_with_after(r#"{"ts":9223372036854775807}"#, "c")
        ),
        "column `ts`: timestamp 9223372036854775807 is out of range"
    );
}

// --------------------------------------------------------------------------------------
// Value typing

#[test]
fn values_are_typed_without_silent_casts() {
    let schema = Schema::with_meta(vec![
        col("i8", ColumnType::Int8),
        col("i32", ColumnType::Int32),
        col("i64", ColumnType::Int64),
        col("f32", ColumnType::Float32),
        col("f64", ColumnType::Float64),
        col("b", ColumnType::Boolean),
        col("s", ColumnType::String),
        col("bytes", ColumnType::Bytes),
    ]);
    let mut p = parser(schema);
    let (_, row) = record(
        &mut p,
        &line_with_after(
            r#"{"i8":-128,"i32":2147483647,"i64":-9223372036854775808,"f32":1,"f64":2,"b":false,"s":{"a": [1,2]},"bytes":"AQID"}"#,
            "c",
        ),
    );
    assert_eq!(
        &row[..8],
        &[
            Datum::Int(-128),
            Datum::Int(2147483647),
            Datum::Int(i64::MIN),
            Datum::Float(1.0),
            Datum::Float(2.0),
            Datum::Bool(false),
            s(r#"{"a": [1,2]}"#),
            Datum::Bytes(vec![1, 2, 3]),
        ]
    );
    let (_, row) = record(&mut p, &line_with_after(r#"{"f32":0.1,"s":[1,"x"]}"#, "c"));
    assert_eq!(row[3], Datum::Float(0.1f32 as f64));
    assert_eq!(row[6], s(r#"[1,"x"]"#));
    let cases = [
        (r#"{"i8":300}"#, "column `i8`: 300 is out of range for int8"),
        (
            r#"{"i8":-129}"#,
            "column `i8`: -129 is out of range for int8",
        ),
        (
            r#"{"i32":2147483648}"#,
            "column `i32`: 2147483648 is out of range for int32",
        ),
        (
            r#"{"i64":18446744073709551615}"#,
            "column `i64`: 18446744073709551615 is out of range for int64",
        ),
        (
            r#"{"i64":"abc"}"#,
            r#"column `i64`: expected int64, found string "abc""#,
        ),
        (
            r#"{"i64":1.0}"#,
            "column `i64`: expected int64, found number 1.0",
        ),
        (
            r#"{"i64":true}"#,
            "column `i64`: expected int64, found boolean true",
        ),
        (
            r#"{"i64":{"x":1}}"#,
            "column `i64`: expected int64, found object",
        ),
        (
            r#"{"i64":[1]}"#,
            "column `i64`: expected int64, found array",
        ),
        (
            r#"{"f64":"1.5"}"#,
            r#"column `f64`: expected double, found string "1.5""#,
        ),
        (r#"{"b":1}"#, "column `b`: expected boolean, found number 1"),
        (
            r#"{"i64":-0}"#,
            "column `i64`: expected int64, found number -0.0",
        ),
        (
            r#"{"f64":1e400}"#,
            "column `f64`: number 1e400 is out of range for double",
        ),
        (
            r#"{"f32":3.4e39}"#,
            "column `f32`: number 3.4e39 is out of range for float",
        ),
        (
            r#"{"f64":true}"#,
            "column `f64`: expected double, found boolean true",
        ),
        (
            r#"{"s":42}"#,
            "column `s`: expected string, found number 42",
        ),
        (
            r#"{"s":false}"#,
            "column `s`: expected string, found boolean false",
        ),
    ];
    for (after, reason) in cases {
        assert_eq!(bad(&mut p, &line_with_after(after, "c")), reason, "{after}");
    }
    assert!(bad(&mut p, &line_with_after(r#"{"bytes":"!!"}"#, "c"))
        .starts_with("column `bytes`: expected base64 bytes, found string \"!!\""));
    // nulls are null for every type
    let (_, row) = record(
        &mut p,
        &line_with_after(
            r#"{"i8":null,"i32":null,"i64":null,"f32":null,"f64":null,"b":null,"s":null,"bytes":null}"#,
            "c",
        ),
    );
    assert!(row[..8].iter().all(Datum::is_null));
}

// --------------------------------------------------------------------------------------
// Inference and declared columns

#[test]
fn inference_rules() {
    let schema = schema_of(
        &[],
        &[
            r#"{"before":null,"after":{"id":1,"amount":5,"nothing":null,"nested":{"a":1},"list":[1],"flag":true,"late":null},"op":"c"}"#,
            "not json",
            r#"{"after":{"id":2,"amount":5.5,"nothing":null,"late":"x"},"op":"c"}"#,
            r#"{"after":{"id":3,"amount":7},"op":"z"}"#,
            r#"{"before":{"id":4,"gone":1.5},"after":null,"op":"d"}"#,
        ],
    );
    assert_eq!(
        schema,
        Schema::with_meta(vec![
            col("id", ColumnType::Int64),
            col("amount", ColumnType::Float64),
            col("nothing", ColumnType::String),
            col("nested", ColumnType::String),
            col("list", ColumnType::String),
            col("flag", ColumnType::Boolean),
            col("late", ColumnType::String),
            col("gone", ColumnType::Float64),
        ])
    );
    let mut p = parser(schema);
    let (_, row) = record(
        &mut p,
        r#"{"after":{"id":1,"amount":5,"nested":{"a":1},"list":[1, 2]},"op":"c"}"#,
    );
    assert_eq!(row[1], Datum::Float(5.0));
    assert_eq!(row[3], s(r#"{"a":1}"#));
    assert_eq!(row[4], s("[1, 2]"));
}

#[test]
fn float_then_int_stays_float_and_order_is_first_appearance() {
    let schema = schema_of(
        &[],
        &[
            r#"{"before":{"b":1.5},"after":{"a":1,"b":2},"op":"u"}"#,
            r#"{"schema":null,"payload":{"after":{"c":"x","a":3},"op":"c"}}"#,
        ],
    );
    let names: Vec<&str> = schema.data().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["b", "a", "c"]);
    assert_eq!(schema.data()[0].ty, ColumnType::Float64);
    assert_eq!(schema.data()[1].ty, ColumnType::Int64);
}

#[test]
fn declared_columns_override_and_append() {
    let schema = schema_of(
        &[
            (
                "total_spend",
                ColumnType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            ("customer_id", ColumnType::Int32),
            ("credit_limit", ColumnType::Float64),
        ],
        &[EX],
    );
    let mut expected = customers_schema().data().to_vec();
    expected[0].ty = ColumnType::Int32;
    expected[5].ty = ColumnType::Decimal {
        precision: 12,
        scale: 2,
    };
    expected.push(col("credit_limit", ColumnType::Float64));
    assert_eq!(schema, Schema::with_meta(expected));
    let mut p = parser(schema);
    let (_, row) = record(&mut p, EX);
    assert_eq!(row[0], Datum::Int(42));
    assert_eq!(row[5], Datum::Decimal(123450));
    assert_eq!(row[8], Datum::Null);
    // declared only, no usable sample line
    let schema = schema_of(&[("x", ColumnType::Int8)], &["", "null", "{"]);
    assert_eq!(schema, Schema::with_meta(vec![col("x", ColumnType::Int8)]));
}

#[test]
fn resolve_schema_fails_without_anything_usable() {
    let err = DebeziumParser::resolve_schema(
        "orders",
        &[],
        &[
            b"".as_slice(),
            b"null",
            b"{\"op\":\"c\"}",
            b"{\"after\":{\"a\":1},\"op\":\"x\"}",
            b"[1",
        ],
    )
    .unwrap_err();
    match err {
        ConnectorError::Schema {
            source_name,
            message,
        } => {
            assert_eq!(source_name, "orders");
            assert_eq!(
                message,
                "no usable Debezium record among the first 5 lines and no declared columns"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(DebeziumParser::resolve_schema("x", &[], &[]).is_err());
}

// --------------------------------------------------------------------------------------
// Bad records

#[test]
fn bad_records_have_exact_reasons() {
    let mut p = parser(customers_schema());
    let cases = [
        (r#"{"after":{"customer_id":1}}"#, "missing `op`"),
        (r#"{"after":{"customer_id":1},"op":null}"#, "missing `op`"),
        (r#"{"after":{"customer_id":1},"op":"t"}"#, "unknown op `t`"),
        (r#"{"after":{"customer_id":1},"op":7}"#, "unknown op `7`"),
        (r#"{"before":null,"after":null,"op":"u"}"#, "op `u` without `after`"),
        (r#"{"before":{"customer_id":1},"op":"c"}"#, "op `c` without `after`"),
        (r#"{"before":null,"after":{"customer_id":1},"op":"d"}"#, "delete without `before`"),
        (r#"{"after":{"customer_id":1},"op":"d"}"#, "delete without `before`"),
        (r#"{"after":{"customer_id":1,"zip":"x"},"op":"c"}"#, "column `zip` is not in the schema"),
        (r#"{"after":{"__op":"x"},"op":"c"}"#, "column `__op` is not in the schema"),
        (
            r#"{"after":{"customer_id":"abc"},"op":"c"}"#,
            r#"column `customer_id`: expected int64, found string "abc""#,
        ),
        (r#"{"op":"c","op":"u","after":{}}"#, "duplicate `op`"),
        (r#"{}"#, "missing `op`"),
        (r#"{"op":"#, "malformed JSON: EOF while parsing a value at line 1 column 6"),
        (r#"{"op":"c"} x"#, "malformed JSON: trailing characters at line 1 column 12"),
        ("{\"op\":\"c\",\"after\":{\"name\":\"\u{1}\"}}", "malformed JSON: control character (\\u0000-\\u001F) found while parsing a string at line 1 column 27"),
        (
            r#"42"#,
            "invalid record: invalid type: integer `42`, expected a Debezium JSON object at line 1 column 2",
        ),
        (
            r#"{"after":[1],"op":"c"}"#,
            "invalid record: invalid type: sequence, expected `after` to be an object or null at line 1 column 10",
        ),
        (
            r#"{"payload":"x"}"#,
            "invalid record: invalid type: string \"x\", expected `payload` to be an object or null at line 1 column 3",
        ),
    ];
    for (line, reason) in cases {
        assert_eq!(bad(&mut p, line), reason, "{line}");
    }
    // the first column error is reported
    assert_eq!(
        bad(
            &mut p,
            r#"{"after":{"customer_id":"a","zip":1,"name":2},"op":"c"}"#
        ),
        r#"column `customer_id`: expected int64, found string "a""#
    );
    // invalid UTF-8
    let mut line = br#"{"after":{"name":"x"},"op":"c"}"#.to_vec();
    line[18] = 0xFF;
    assert!(p
        .parse(&line)
        .unwrap_err()
        .reason
        .starts_with("malformed JSON: invalid unicode"));
}

// --------------------------------------------------------------------------------------
// transaction_id

#[test]
fn transaction_ids() {
    let tx = |l: &str| DebeziumParser::transaction_id(l.as_bytes());
    assert_eq!(tx(EX), Some("555".into()));
    assert_eq!(
        tx(r#"{"source":{"txId":1},"op":"c","transaction":{"id":"t-9","total_order":3}}"#),
        Some("t-9".into())
    );
    assert_eq!(
        tx(r#"{"transaction":{"id":"t-9"},"source":{"txId":1}}"#),
        Some("t-9".into())
    );
    assert_eq!(
        tx(&format!(
            r#"{{"schema":{},"payload":{EX}}}"#,
            block(TYPED_FIELDS)
        )),
        Some("555".into())
    );
    assert_eq!(tx(r#"{"source":{"txId":"x1"}}"#), Some("x1".into()));
    assert_eq!(tx(r#"{"source":{"txId":null},"transaction":null}"#), None);
    assert_eq!(tx(r#"{"after":{"txId":5}}"#), None);
    assert_eq!(tx("null"), None);
    assert_eq!(tx(""), None);
    assert_eq!(tx(r#"{"source":{"txId":5}"#), None);
    assert_eq!(tx(&format!("{EX}\r")), Some("555".into()));
}

// --------------------------------------------------------------------------------------
// Robustness

/// xorshift64*, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn never_panics_on_garbage() {
    let typed = typed_line(
        r#"{"id":1,"ts":1700000000123,"ts_us":1,"ts_ns":1,"zts":"2023-11-14T22:13:20Z","credit_limit":"MDk=","small":-5,"name":"n"}"#,
    );
    let seeds: Vec<Vec<u8>> = vec![
        EX.as_bytes().to_vec(),
        typed.as_bytes().to_vec(),
        format!(r#"{{"payload":{EX},"schema":null}}"#).into_bytes(),
        br#"{"before":{"customer_id":1},"after":null,"op":"d","transaction":{"id":"x"}}"#.to_vec(),
    ];
    let mut parsers = [parser(customers_schema()), parser(typed_schema())];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for seed in &seeds {
        for cut in 0..=seed.len() {
            inputs.push(seed[..cut].to_vec());
        }
        for _ in 0..2000 {
            let mut l = seed.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(l.len());
                match rng.below(4) {
                    0 => l[i] = rng.next() as u8,
                    1 => l[i] = b"{}[]\",:0-9.eEnul\\tf"[rng.below(19)],
                    2 => {
                        l.remove(i);
                    }
                    _ => l.insert(i, b"{}[]\",:0\\"[rng.below(9)]),
                }
                if l.is_empty() {
                    break;
                }
            }
            inputs.push(l);
        }
    }
    for _ in 0..2000 {
        let n = rng.below(64);
        inputs.push((0..n).map(|_| rng.next() as u8).collect());
    }
    let nested = [
        "[".repeat(100_000),
        "{\"a\":".repeat(100_000),
        format!("{{\"after\":{}", "{\"x\":".repeat(10_000)),
        r#"{"after":{"customer_id":{"a":[1,{"b":2}]}},"op":"c"}"#.into(),
        r#"{"payload":{"payload":{"after":{}}},"op":"c"}"#.into(),
        r#"{"after":{"name":"\ud800"},"op":"c"}"#.into(),
        r#"{"after":{"credit_limit":"////////////////////////////////////////////w=="},"op":"c"}"#
            .into(),
        r#"{"after":{"credit_limit":"-99999999999999999999999999999999999999999999.9"},"op":"c"}"#
            .into(),
        r#"{"after":{"ts_ns":-9223372036854775808,"ts":-9223372036854775808},"op":"c"}"#.into(),
        r#"{"source":[],"op":"c"}"#.into(),
        r#"{"transaction":{"id":[1]},"op":"c"}"#.into(),
    ];
    inputs.extend(nested.iter().map(|s| s.as_bytes().to_vec()));
    let mut accepted = 0;
    for input in &inputs {
        for p in parsers.iter_mut() {
            let _ = p.parse(input);
        }
        let _ = DebeziumParser::transaction_id(input);
        for schema in [customers_schema(), typed_schema()] {
            accepted += assert_paths_agree(&schema, input) as usize;
        }
    }
    assert!(accepted > 300, "fast path accepted only {accepted} lines");
    let sample: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let _ = DebeziumParser::resolve_schema("fuzz", &[], &sample);
    for chunk in sample.chunks(50) {
        let _ = DebeziumParser::resolve_schema("fuzz", &[], chunk);
    }
    // and the parsers still work afterwards
    assert!(matches!(
        parsers[0].parse(EX.as_bytes()),
        Ok(Parsed::Record { .. })
    ));
    assert!(matches!(
        parsers[1].parse(typed.as_bytes()),
        Ok(Parsed::Record { .. })
    ));
}

// --------------------------------------------------------------------------------------
// Throughput

/// Builds `n` generator-like lines (ids, names, amounts and ops varied).
fn synthetic_lines(n: usize) -> Vec<u8> {
    const COUNTRIES: [&str; 6] = ["DE", "FR", "US", "GB", "NL", "ES"];
    const SEGMENTS: [&str; 4] = ["gold", "silver", "bronze", "platinum"];
    let mut out = Vec::with_capacity(n * 600);
    let mut rng = Rng(42);
    for i in 0..n {
        let id = rng.below(1_000_000);
        let lsn = 24_000_000 + i;
        let spend = rng.below(10_000_000) as f64 / 100.0;
        let line = format!(
            r#"{{"before":null,"after":{{"customer_id":{id},"name":"Customer {id}","email":"c{id}@example.com","country":"{}","segment":"{}","total_spend":{spend},"is_active":{},"updated_at":{}}},"source":{{"version":"2.7.0.Final","connector":"postgresql","name":"bank","ts_ms":{},"snapshot":"false","db":"bank","sequence":"[\"{lsn}\",\"{lsn}\"]","schema":"public","table":"customers","txId":{},"lsn":{lsn},"xmin":null}},"op":"{}","ts_ms":{},"transaction":null}}"#,
            COUNTRIES[rng.below(6)],
            SEGMENTS[rng.below(4)],
            rng.below(2) == 0,
            1_700_000_000_000u64 + i as u64,
            1_700_000_000_000u64 + i as u64,
            500 + i / 3,
            ["c", "u", "u", "u"][rng.below(4)],
            1_700_000_000_100u64 + i as u64,
        );
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

fn measure(label: &str, buf: &[u8], mut f: impl FnMut(&[u8])) {
    let lines: Vec<&[u8]> = buf
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    // warm up
    for l in lines.iter().take(10_000) {
        f(l);
    }
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = std::time::Instant::now();
        for l in &lines {
            f(l);
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "{label}: {} lines, {:.1} MB in {:.3} s: {:.0} MB/s, {:.0} lines/s (avg {} B/line)",
        lines.len(),
        buf.len() as f64 / 1e6,
        best,
        buf.len() as f64 / 1e6 / best,
        lines.len() as f64 / best,
        buf.len() / lines.len()
    );
}

#[test]
#[ignore = "release-mode throughput measurement"]
fn throughput() {
    let buf = synthetic_lines(200_000);
    let sample: Vec<&[u8]> = buf.split(|&b| b == b'\n').take(1000).collect();
    let schema = DebeziumParser::resolve_schema("bench", &[], &sample).unwrap();
    assert_eq!(schema, customers_schema());
    let mut p = parser(schema);
    for l in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(matches!(p.parse(l), Ok(Parsed::Record { .. })));
        assert!(DebeziumParser::transaction_id(l).is_some());
    }
    measure("serde_json IgnoredAny scan (reference)", &buf, |l| {
        std::hint::black_box(serde_json::from_slice::<IgnoredAny>(l).is_ok());
    });
    measure("parse (no schema block)", &buf, |l| {
        std::hint::black_box(p.parse(l).is_ok());
    });
    let mut reference = parser(customers_schema());
    measure(
        "parse, reference path only (lines the fast path gives up on)",
        &buf,
        |l| {
            std::hint::black_box(reference.parse_reference(l).is_ok());
        },
    );
    measure("transaction_id", &buf, |l| {
        std::hint::black_box(DebeziumParser::transaction_id(l));
    });

    // With the Kafka Connect schema block (~3.5x longer lines; block compared byte-wise).
    let fields = r#"{"type":"int64","optional":false,"field":"customer_id"},{"type":"string","optional":true,"field":"name"},{"type":"string","optional":true,"field":"email"},{"type":"string","optional":true,"field":"country"},{"type":"string","optional":true,"field":"segment"},{"type":"float64","optional":true,"field":"total_spend"},{"type":"boolean","optional":true,"field":"is_active"},{"type":"int64","optional":true,"field":"updated_at"}"#;
    let blk = block(fields);
    let mut wrapped = Vec::with_capacity(buf.len() * 4);
    for l in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        wrapped.extend_from_slice(br#"{"schema":"#);
        wrapped.extend_from_slice(blk.as_bytes());
        wrapped.extend_from_slice(br#","payload":"#);
        wrapped.extend_from_slice(l);
        wrapped.extend_from_slice(b"}\n");
    }
    let mut p = parser(customers_schema());
    for l in wrapped.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(matches!(p.parse(l), Ok(Parsed::Record { .. })));
    }
    measure("parse (with schema block)", &wrapped, |l| {
        std::hint::black_box(p.parse(l).is_ok());
    });
}

// --------------------------------------------------------------------------------------
// Fast path vs reference path

/// Checks that whatever the fast path accepts, the reference path parses identically (fresh
/// parsers, so block caches start equal). Returns whether the fast path accepted the line.
fn assert_paths_agree(schema: &Schema, line: &[u8]) -> bool {
    let line = trim_line(line);
    let mut fast_p = parser(schema.clone());
    let mut ref_p = parser(schema.clone());
    let show = || String::from_utf8_lossy(line).into_owned();
    if let Some(t) = fast::transaction_id(line) {
        assert_eq!(
            t,
            DebeziumParser::transaction_id_reference(line),
            "transaction_id of {}",
            show()
        );
    }
    // A recycled row full of stale strings must not leak into the result.
    let stale = vec![Datum::Str("stale".into()); fast_p.cols.width];
    let mut recycled_p = parser(schema.clone());
    // ... nor a predicted source-member order that does not fit this line.
    let mut keys: SourceKeys = vec![
        (b"\"txId\"".to_vec().into(), 3),
        (b"\"lsn\"".to_vec().into(), 1),
        (b"\"version\"".to_vec().into(), 0),
    ];
    let recycled = fast::parse(
        &recycled_p.cols,
        &mut recycled_p.block_cache,
        line,
        Some(stale),
        Some(&mut keys),
    );
    match fast::parse(&fast_p.cols, &mut fast_p.block_cache, line, None, None) {
        Some(fast) => {
            assert_eq!(
                recycled.as_ref(),
                Some(&fast),
                "recycled row, line {}",
                show()
            );
            assert_eq!(Ok(fast), ref_p.parse_reference(line), "line {}", show());
            true
        }
        None => {
            assert!(recycled.is_none(), "recycled row, line {}", show());
            false
        }
    }
}

fn all_types_schema() -> Schema {
    Schema::with_meta(vec![
        col("i8", ColumnType::Int8),
        col("i32", ColumnType::Int32),
        col("i64", ColumnType::Int64),
        col("f32", ColumnType::Float32),
        col("f64", ColumnType::Float64),
        col("b", ColumnType::Boolean),
        col("s", ColumnType::String),
        col("bytes", ColumnType::Bytes),
        col("ts", ColumnType::Timestamp),
        col(
            "d",
            ColumnType::Decimal {
                precision: 12,
                scale: 2,
            },
        ),
    ])
}

const VALUE_VARIANTS: &[&str] = &[
    "null",
    "0",
    "-0",
    "1",
    "-1",
    "01",
    "1.5",
    "-1.5e3",
    "1e400",
    "-1e400",
    "1E+2",
    "3.4e39",
    "0.1",
    "12.345",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "127",
    "128",
    "-129",
    "true",
    "false",
    r#""""#,
    r#""x""#,
    r#""\u00e9""#,
    r#""\ud83d\ude00""#,
    r#""\ud800""#,
    r#""\udc00x""#,
    r#""a\/b""#,
    r#""AQI\/""#,
    r#""MDk=""#,
    r#""z8c=""#,
    r#""2023-11-14T22:13:20Z""#,
    r#""2023-11-14T22:13:20.123456789+02:00""#,
    r#""12.34""#,
    r#""-0.5""#,
    "{}",
    "[]",
    r#"{"a":[1,{"b":null}],"c":"\"x\""}"#,
    r#"[1, 2 ,{ }]"#,
    "[1,2",
    r#""\x""#,
    "tru",
    "nul",
    "1.",
    ".5",
    "-",
    "+1",
    "\"\u{1}\"",
    "\"é\"",
    "NaN",
];

#[test]
fn fast_path_agrees_with_reference() {
    let schemas = [all_types_schema(), typed_schema(), customers_schema()];
    let mut lines: Vec<String> = vec![
        EX.to_string(),
        format!(r#"{{"payload":{EX},"schema":null}}"#),
        format!(r#"{{"schema":null,"payload":{EX}}}"#),
        format!(r#"{{"payload":{EX}}}"#),
        format!(r#"{{"schema":{},"payload":{EX}}}"#, block(TYPED_FIELDS)),
        EX.replace(',', " ,\n ").replace(':', "\t:\r "),
        format!(" \t{EX} \t"),
        EX.replace(r#""op":"u""#, r#""op":"d""#),
        EX.replace(r#""before":null"#, r#""before":{"customer_id":1}"#)
            .replace(r#""op":"u""#, r#""op":"d""#),
        EX.replace(r#""name":"Customer 42""#, r#""n\u0061me":"Customer 42""#),
        EX.replace(r#""op":"u""#, r#""\u006fp":"u""#),
        EX.replace(
            r#""transaction":null"#,
            r#""transaction":{"id":"7:9","total_order":1}"#,
        ),
        EX.replace(r#""txId":555"#, r#""txId":"555""#),
        r#"{"op":"d","before":{"customer_id":2},"after":{"customer_id":3}}"#.into(),
        r#"{"op":"c","after":{"customer_id":3},"op":"c"}"#.into(),
        r#"{"after":{"customer_id":3,"customer_id":4},"op":"c"}"#.into(),
        r#"{"after":{},"op":"r","schema":{"x":1},"payload":null}"#.into(),
        r#"{"payload":{"op":"c"},"payload":{"after":{"i64":1}}}"#.into(),
        r#"{"payload":{"op":"c","after":{"i64":1}},"after":{"i64":2}}"#.into(),
        r#"{"after":{"i64":2},"payload":{"op":"c","after":{"i64":1}}}"#.into(),
        r#"{"schema":null,"payload":{"op":"c","after":{"i64":1}},"after":{"i64":2}}"#.into(),
        r#"{"schema":{},"payload":{"after":{},"op":"c"},"schema":null}"#.into(),
        "null".into(),
        " null ".into(),
        "{}".into(),
        "[]".into(),
    ];
    for typed in [
        r#"{"id":1,"ts":1700000000123,"ts_us":1,"ts_ns":-1,"zts":"2023-11-14T22:13:20Z","credit_limit":"MDk=","small":-5,"name":"n"}"#,
        r#"{"id":1,"credit_limit":"z8c=","name":{"nested":true}}"#,
    ] {
        lines.push(typed_line(typed));
        lines.push(format!(
            r#"{{"payload":{{"after":{typed},"op":"c"}},"schema":{}}}"#,
            block(TYPED_FIELDS)
        ));
    }
    let names = [
        "i8",
        "i32",
        "i64",
        "f32",
        "f64",
        "b",
        "s",
        "bytes",
        "ts",
        "d",
        "ts_us",
        "ts_ns",
        "zts",
        "credit_limit",
        "small",
        "name",
        "customer_id",
        "total_spend",
    ];
    for name in names {
        for v in VALUE_VARIANTS {
            lines.push(format!(
                r#"{{"before":null,"after":{{"{name}":{v}}},"source":{{"lsn":1,"txId":2}},"op":"c","ts_ms":3}}"#
            ));
            lines.push(format!(
                r#"{{"before":{{"{name}":{v}}},"after":null,"op":"d"}}"#
            ));
            if ["ts_us", "ts_ns", "zts", "credit_limit", "small", "name"].contains(&name) {
                lines.push(typed_line(&format!(r#"{{"id":1,"{name}":{v}}}"#)));
            }
        }
    }
    for v in VALUE_VARIANTS {
        for meta in [
            format!(r#""source":{{"lsn":{v}}}"#),
            format!(r#""source":{{"ts_ms":{v}}}"#),
            format!(r#""source":{{"txId":{v}}}"#),
            format!(r#""source":{v}"#),
            format!(r#""ts_ms":{v}"#),
            format!(r#""transaction":{{"id":{v}}}"#),
            format!(r#""transaction":{v}"#),
            format!(r#""op":{v}"#),
            format!(r#""payload":{v}"#),
            format!(r#""schema":{v}"#),
        ] {
            lines.push(format!(r#"{{"after":{{"i64":1}},{meta},"op":"c"}}"#));
            lines.push(format!(r#"{{{meta},"after":{{"i64":1}}}}"#));
        }
    }
    let mut rng = Rng(7);
    let seeds = lines.clone();
    for seed in &seeds {
        for _ in 0..6 {
            let mut l = seed.clone().into_bytes();
            let i = rng.below(l.len());
            match rng.below(3) {
                0 => {
                    l.remove(i);
                }
                1 => {
                    const INS: &[u8] = b" {}[]\",:0-.e\\u";
                    l.insert(i, INS[rng.below(INS.len())]);
                }
                _ => l.truncate(i),
            }
            lines.push(String::from_utf8_lossy(&l).into_owned());
        }
    }
    let mut accepted = 0;
    for line in &lines {
        for schema in &schemas {
            accepted += assert_paths_agree(schema, line.as_bytes()) as usize;
        }
    }
    assert!(
        accepted > 1000,
        "fast path accepted only {accepted} of {}",
        lines.len() * 3
    );
}

#[test]
fn fast_path_takes_the_common_lines() {
    let mut p = parser(customers_schema());
    for line in [
        EX.to_string(),
        format!(r#"{{"payload":{EX}}}"#),
        EX.replace(r#""before":null"#, r#""before":{"customer_id":1}"#)
            .replace(r#""op":"u""#, r#""op":"d""#),
    ] {
        assert!(
            fast::parse(&p.cols, &mut p.block_cache, line.as_bytes(), None, None).is_some(),
            "{line}"
        );
        assert!(fast::transaction_id(line.as_bytes()).is_some());
    }
    let mut p = parser(typed_schema());
    let line = typed_line(r#"{"id":1,"credit_limit":"MDk=","name":"n"}"#);
    assert!(fast::parse(&p.cols, &mut p.block_cache, line.as_bytes(), None, None).is_some());
}

#[test]
fn recycled_rows_parse_exactly_like_fresh_ones() {
    // Lines that leave columns out, null them, change op and carry escapes, in an order where
    // a recycled row holds values the next line must not inherit.
    let after = |fields: &str| {
        format!(
            r#"{{"before":null,"after":{{{fields}}},"source":{{"lsn":7,"ts_ms":5,"txId":9}},"op":"u","ts_ms":6}}"#
        )
    };
    let lines = vec![
        EX.to_string(),
        after(r#""customer_id":1,"name":"Ann","email":"a@x","country":"DE""#),
        after(r#""customer_id":2"#),
        after(r#""customer_id":3,"name":null,"segment":"gold","total_spend":1.5"#),
        after(r#""customer_id":4,"name":"B\u00e9a \"q\"","is_active":false"#),
        r#"{"before":{"customer_id":5,"name":"Del"},"after":null,"source":{"lsn":8},"op":"d","ts_ms":7}"#.to_string(),
        after(r#""name":"no key""#),
        after(""),
        r#"{"before":null,"after":{"customer_id":"bad"},"source":{"lsn":9},"op":"c"}"#.to_string(),
        EX.to_string(),
        // Source members in another order, then a duplicate member, then back.
        r#"{"after":{"customer_id":6},"source":{"txId":"t1","ts_ms":3,"lsn":11},"op":"c"}"#.to_string(),
        r#"{"after":{"customer_id":6},"source":{"txId":"t1","lsn":12,"lsn":13},"op":"u"}"#.to_string(),
        r#"{"after":{"customer_id":6},"source":{"lsn":"x","txId":"t1"},"op":"u"}"#.to_string(),
        EX.to_string(),
        EX.to_string(),
    ];
    let mut recycling = parser(customers_schema());
    for line in &lines {
        let fresh = parser(customers_schema()).parse(line.as_bytes());
        let got = recycling.parse(line.as_bytes());
        assert_eq!(got, fresh, "{line}");
        if let Ok(Parsed::Record { row, .. }) = got {
            recycling.recycle(row);
        }
    }
}

// --------------------------------------------------------------------------------------
// Fields the fixed schema does not know (schema evolution)

fn evolving(slot: (&str, ColumnType), unknown: UnknownColumns) -> DebeziumParser {
    let schema = Schema::with_meta(vec![
        col("id", ColumnType::Int64),
        col("name", ColumnType::String),
        col(slot.0, slot.1),
    ]);
    DebeziumParser::with_unknown_columns(Arc::new(schema), unknown)
}

/// A line whose block and image have `id`, `name` and `extra` (with `extra_json` its value).
fn line_with_block(extra_ty: &str, extra_json: &str) -> String {
    let fields = format!(
        r#"[{{"type":"int64","field":"id"}},{{"type":"string","optional":true,"field":"name"}},{{"type":"{extra_ty}","optional":true,"field":"extra"}}]"#
    );
    format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"type":"struct","field":"before","fields":{fields}}},{{"type":"struct","field":"after","fields":{fields}}}]}},"payload":{{"before":null,"after":{{"id":1,"name":"a","extra":{extra_json}}},"source":{{"lsn":3}},"op":"c"}}}}"#
    )
}

#[test]
fn unknown_fields_are_rejected_by_default_and_named() {
    let mut p = evolving(("other", ColumnType::String), UnknownColumns::Reject);
    let reason = bad(
        &mut p,
        &line_with_after(r#"{"id":1,"name":"a","extra":5}"#, "c"),
    );
    assert_eq!(reason, "column `extra` is not in the schema");
    match p.parse(line_with_block("int32", "5").as_bytes()) {
        Err(b) => assert_eq!(b.unknown_column.as_deref(), Some("extra")),
        other => panic!("{other:?}"),
    }
    // A bad value of a known column is not an unknown column.
    match p.parse(line_with_after(r#"{"id":"x"}"#, "c").as_bytes()) {
        Err(b) => assert_eq!(b.unknown_column, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_fields_are_collected_typed_by_the_block_or_their_value() {
    let mut p = evolving((NEW_COLUMNS, ColumnType::Bytes), UnknownColumns::Collect);
    let new_cols = |row: &Row| match &row[2] {
        Datum::Bytes(b) => NewColumns::decode(b),
        Datum::Null => Vec::new(),
        other => panic!("{other:?}"),
    };
    // Typed by the schema block.
    let (_, row) = record(&mut p, &line_with_block("int32", "5"));
    assert_eq!(row[..2], [Datum::Int(1), s("a")]);
    assert_eq!(
        new_cols(&row),
        vec![("extra".into(), ColumnType::Int32, Datum::Int(5))]
    );
    // Without a block: from the JSON value; several, sorted by name; nulls left out.
    let (_, row) = record(
        &mut p,
        &line_with_after(
            r#"{"id":2,"zeta":1.5,"alpha":"x","flag":true,"n":7,"gone":null,"obj":{"a":1}}"#,
            "c",
        ),
    );
    assert_eq!(
        new_cols(&row),
        vec![
            ("alpha".into(), ColumnType::String, s("x")),
            ("flag".into(), ColumnType::Boolean, Datum::Bool(true)),
            ("n".into(), ColumnType::Int64, Datum::Int(7)),
            ("obj".into(), ColumnType::String, s(r#"{"a":1}"#)),
            ("zeta".into(), ColumnType::Float64, Datum::Float(1.5)),
        ]
    );
    // The next record (fast path, recycled row) has none.
    let (_, row) = record(&mut p, &line_with_after(r#"{"id":3,"name":"c"}"#, "c"));
    assert_eq!(row[2], Datum::Null);
    // A value that does not fit the block's type is bad.
    let reason = bad(&mut p, &line_with_block("int32", "\"five\""));
    assert!(reason.starts_with("column `extra`: "), "{reason}");
}

#[test]
fn unknown_fields_are_rescued_as_json() {
    let mut p = evolving((RESCUED_DATA, ColumnType::String), UnknownColumns::Rescue);
    let (_, row) = record(
        &mut p,
        &line_with_after(r#"{"id":2,"zeta":1.5,"alpha":"x","gone":null}"#, "c"),
    );
    assert_eq!(row[2], s(r#"{"alpha":"x","zeta":1.5}"#));
    let (_, row) = record(&mut p, &line_with_block("int32", "5"));
    assert_eq!(row[2], s(r#"{"extra":5}"#));
    let (_, row) = record(&mut p, &line_with_after(r#"{"id":3}"#, "c"));
    assert_eq!(row[2], Datum::Null);
    // A known column named like the slot is not a field: `_rescued_data` in a record is rescued.
    let (_, row) = record(
        &mut p,
        &line_with_after(r#"{"id":4,"_rescued_data":1}"#, "c"),
    );
    assert_eq!(row[2], s(r#"{"_rescued_data":1}"#));
}
