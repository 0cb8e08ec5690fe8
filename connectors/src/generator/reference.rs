//! A deliberately plain, sequential reference model of `APPLY CHANGES` (SCD type 1).
//!
//! Tests and benchmarks use [`reference_apply`] to compute the expected final table of a
//! Debezium JSON stream. It is written independently of the engine, for obviousness rather
//! than speed: every line is parsed into a [`serde_json::Value`], and the state is a
//! [`BTreeMap`] from canonical key text to the winning record.
//!
//! Semantics, per key:
//! - the record with the highest sequence value wins; a record with a lower sequence than the
//!   key's current one is ignored (stale);
//! - at an equal sequence a delete beats an upsert, and between two upserts the row whose
//!   canonical JSON text (keys sorted, no whitespace) is larger wins — so the result does not
//!   depend on the order of the lines;
//! - a delete removes the row but remembers its sequence (a tombstone), so an older upsert
//!   arriving later does not resurrect the row, while a newer upsert re-creates it.

use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;

/// The result of [`reference_apply`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReferenceState {
    /// Live rows by canonical key (the JSON text of the key values array, e.g. `"[42]"`):
    /// the flattened columns of the winning record — every field of `after` plus the
    /// sequence column under its own name (e.g. `"__lsn"`). Other metadata columns are not
    /// included.
    pub rows: BTreeMap<String, Map<String, Value>>,
    /// 1-based line numbers and reasons of lines that are not applicable (malformed JSON,
    /// unknown op, null/missing key or sequence, missing after/before).
    pub bad: Vec<(u64, String)>,
    /// Lines skipped as tombstones (empty line, `null`, payload null).
    pub skipped: u64,
}

/// A sequence value. Numbers compare numerically, strings lexically; numbers sort before
/// strings.
#[derive(Clone, Debug)]
enum Seq {
    Int(i64),
    Float(f64),
    Str(String),
}

impl Seq {
    fn from_value(v: &Value) -> Option<Seq> {
        match v {
            Value::Number(n) => Some(match n.as_i64() {
                Some(i) => Seq::Int(i),
                None => Seq::Float(n.as_f64()?),
            }),
            Value::String(s) => Some(Seq::Str(s.clone())),
            _ => None,
        }
    }

    fn compare(&self, other: &Seq) -> Ordering {
        match (self, other) {
            (Seq::Int(a), Seq::Int(b)) => a.cmp(b),
            (Seq::Str(a), Seq::Str(b)) => a.cmp(b),
            (Seq::Str(_), _) => Ordering::Greater,
            (_, Seq::Str(_)) => Ordering::Less,
            (a, b) => a.as_f64().total_cmp(&b.as_f64()),
        }
    }

    fn as_f64(&self) -> f64 {
        match self {
            Seq::Int(i) => *i as f64,
            Seq::Float(f) => *f,
            Seq::Str(_) => f64::NAN,
        }
    }
}

/// The state of one key.
enum Entry {
    Live {
        seq: Seq,
        /// Canonical JSON text of `row`, for the tie-break.
        canonical: String,
        row: Map<String, Value>,
    },
    Tombstone {
        seq: Seq,
    },
}

impl Entry {
    fn seq(&self) -> &Seq {
        match self {
            Entry::Live { seq, .. } | Entry::Tombstone { seq } => seq,
        }
    }
}

/// A flattened, applicable record.
struct Record {
    key: String,
    seq: Seq,
    delete: bool,
    row: Map<String, Value>,
}

/// What one line turned out to be.
enum Parsed {
    Record(Record),
    Skipped,
    Bad(String),
}

/// Applies `lines` in the given order with `APPLY CHANGES` / SCD type 1 semantics (see the
/// [module docs](self)) and returns the final table.
///
/// `keys` are column names of the flattened record; `sequence_by` may be a data column or
/// one of `__lsn` (`source.lsn`), `__source_ts_ms` (`source.ts_ms`), `__ts_ms` (`ts_ms`),
/// which must be integers. A data-column sequence may be a number or a string. Envelopes
/// may come with or without the Kafka Connect `schema` block; ops are `c`, `u`, `r`, `d`.
pub fn reference_apply<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    keys: &[&str],
    sequence_by: &str,
) -> ReferenceState {
    let mut state = ReferenceState::default();
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for (i, line) in lines.into_iter().enumerate() {
        let line_no = i as u64 + 1;
        let rec = match parse_line(line, keys, sequence_by) {
            Parsed::Record(rec) => rec,
            Parsed::Skipped => {
                state.skipped += 1;
                continue;
            }
            Parsed::Bad(reason) => {
                state.bad.push((line_no, reason));
                continue;
            }
        };
        let new_entry = if rec.delete {
            Entry::Tombstone { seq: rec.seq }
        } else {
            Entry::Live {
                seq: rec.seq,
                canonical: canonical_object(&rec.row),
                row: rec.row,
            }
        };
        let replace = match entries.get(&rec.key) {
            None => true,
            Some(old) => match new_entry.seq().compare(old.seq()) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => match (old, &new_entry) {
                    // A delete beats an upsert; deletes at one sequence are all alike.
                    (Entry::Tombstone { .. }, _) => false,
                    (Entry::Live { .. }, Entry::Tombstone { .. }) => true,
                    (Entry::Live { canonical: a, .. }, Entry::Live { canonical: b, .. }) => b > a,
                },
            },
        };
        if replace {
            entries.insert(rec.key, new_entry);
        }
    }
    for (key, entry) in entries {
        if let Entry::Live { row, .. } = entry {
            state.rows.insert(key, row);
        }
    }
    state
}

/// Reads the file at `path`, splits it on `'\n'` (ignoring a final empty piece) and applies
/// the lines with [`reference_apply`].
pub fn reference_apply_file(
    path: &Path,
    keys: &[&str],
    sequence_by: &str,
) -> std::io::Result<ReferenceState> {
    let data = std::fs::read(path)?;
    let mut pieces: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    Ok(reference_apply(pieces, keys, sequence_by))
}

/// Parses and flattens one line.
fn parse_line(line: &[u8], keys: &[&str], sequence_by: &str) -> Parsed {
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Parsed::Skipped;
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Parsed::Bad(format!("malformed JSON: {e}")),
    };
    let mut envelope = match value {
        Value::Null => return Parsed::Skipped,
        Value::Object(obj) => obj,
        _ => return Parsed::Bad("not a JSON object".into()),
    };
    // A Debezium envelope has no `payload`; with one, this is the schema-wrapped form.
    if let Some(payload) = envelope.remove("payload") {
        envelope = match payload {
            Value::Null => return Parsed::Skipped,
            Value::Object(obj) => obj,
            _ => return Parsed::Bad("payload is not an object".into()),
        };
    }
    let delete = match envelope.get("op").and_then(Value::as_str) {
        Some("c" | "u" | "r") => false,
        Some("d") => true,
        Some(op) => return Parsed::Bad(format!("unknown op {op:?}")),
        None => return Parsed::Bad("missing op".into()),
    };
    let image = if delete { "before" } else { "after" };
    let mut row = match envelope.remove(image) {
        Some(Value::Object(obj)) => obj,
        _ => return Parsed::Bad(format!("missing {image}")),
    };

    let mut key_values = Vec::with_capacity(keys.len());
    for k in keys {
        match row.get(*k) {
            Some(v) if !v.is_null() => key_values.push(v.clone()),
            _ => return Parsed::Bad(format!("null or missing key column {k}")),
        }
    }
    let key = canonical(&Value::Array(key_values));

    let meta = match sequence_by {
        "__lsn" => Some(envelope.get("source").and_then(|s| s.get("lsn"))),
        "__source_ts_ms" => Some(envelope.get("source").and_then(|s| s.get("ts_ms"))),
        "__ts_ms" => Some(envelope.get("ts_ms")),
        _ => None,
    };
    let seq = match meta {
        Some(v) => match v.and_then(Value::as_i64) {
            Some(i) => {
                row.insert(sequence_by.to_string(), Value::from(i));
                Seq::Int(i)
            }
            None => return Parsed::Bad(format!("null or missing sequence {sequence_by}")),
        },
        None => match row.get(sequence_by) {
            None | Some(Value::Null) => {
                return Parsed::Bad(format!("null or missing sequence {sequence_by}"))
            }
            Some(v) => match Seq::from_value(v) {
                Some(s) => s,
                None => return Parsed::Bad(format!("sequence {sequence_by} is not comparable")),
            },
        },
    };
    Parsed::Record(Record {
        key,
        seq,
        delete,
        row,
    })
}

/// Canonical JSON text of a value: object keys sorted, no whitespace (independent of
/// whether serde_json preserves key order).
fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// Canonical JSON text of an object (see [`canonical`]).
fn canonical_object(m: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_object(m, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => write_object(m, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_object(m: &Map<String, Value>, out: &mut String) {
    let mut fields: Vec<(&String, &Value)> = m.iter().collect();
    fields.sort_unstable_by_key(|(k, _)| *k);
    out.push('{');
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(k.as_str()).to_string());
        out.push(':');
        write_canonical(v, out);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::bank::{BankGenConfig, BankGenerator};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    /// A Debezium line for the DLT users example.
    fn dlt_line(user: i64, name: Option<&str>, city: Option<&str>, op: &str, seq: i64) -> Vec<u8> {
        let row = json!({"userId": user, "name": name, "city": city, "sequenceNum": seq});
        let (before, after, op) = match op {
            "INSERT" => (Value::Null, row, "c"),
            "UPDATE" => (Value::Null, row, "u"),
            "DELETE" => (row, Value::Null, "d"),
            _ => unreachable!(),
        };
        serde_json::to_vec(&json!({
            "before": before, "after": after,
            "source": {"version": "2.7.0.Final", "connector": "postgresql", "name": "dlt",
                       "ts_ms": 1_700_000_000_000i64 + seq, "db": "dlt", "schema": "public",
                       "table": "users", "txId": 1, "lsn": 100 + seq, "xmin": null},
            "op": op, "ts_ms": 1_700_000_000_100i64 + seq, "transaction": null
        }))
        .unwrap()
    }

    fn row_of(state: &ReferenceState, key: &str) -> Value {
        Value::Object(state.rows[key].clone())
    }

    #[test]
    fn dlt_documentation_example() {
        let lines = [
            dlt_line(124, Some("Raul"), Some("Oaxaca"), "INSERT", 1),
            dlt_line(123, Some("Isabel"), Some("Monterrey"), "INSERT", 1),
            dlt_line(125, Some("Mercedes"), Some("Tijuana"), "INSERT", 2),
            dlt_line(126, Some("Lily"), Some("Cancun"), "INSERT", 2),
            dlt_line(123, None, None, "DELETE", 6),
            dlt_line(125, Some("Mercedes"), Some("Guadalajara"), "UPDATE", 6),
            dlt_line(125, Some("Mercedes"), Some("Mexicali"), "UPDATE", 5),
            dlt_line(123, Some("Isabel"), Some("Chihuahua"), "UPDATE", 5),
        ];
        let state = reference_apply(
            lines.iter().map(|l| l.as_slice()),
            &["userId"],
            "sequenceNum",
        );
        assert!(state.bad.is_empty(), "{:?}", state.bad);
        assert_eq!(state.skipped, 0);
        let keys: Vec<&str> = state.rows.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["[124]", "[125]", "[126]"]);
        assert_eq!(
            row_of(&state, "[124]"),
            json!({"userId": 124, "name": "Raul", "city": "Oaxaca", "sequenceNum": 1})
        );
        assert_eq!(
            row_of(&state, "[125]"),
            json!({"userId": 125, "name": "Mercedes", "city": "Guadalajara", "sequenceNum": 6})
        );
        assert_eq!(
            row_of(&state, "[126]"),
            json!({"userId": 126, "name": "Lily", "city": "Cancun", "sequenceNum": 2})
        );
        // Every permutation order of arrival gives the same table (spot-check reversals).
        let rev = reference_apply(
            lines.iter().rev().map(|l| l.as_slice()),
            &["userId"],
            "sequenceNum",
        );
        assert_eq!(rev.rows, state.rows);
    }

    #[test]
    fn meta_sequence_column_is_included() {
        let line = dlt_line(1, Some("A"), Some("B"), "INSERT", 3);
        for (seq, expected) in [
            ("__lsn", 103),
            ("__source_ts_ms", 1_700_000_000_003i64),
            ("__ts_ms", 1_700_000_000_103),
        ] {
            let state = reference_apply([line.as_slice()], &["userId"], seq);
            let row = &state.rows["[1]"];
            assert_eq!(row[seq], json!(expected));
            assert_eq!(row.len(), 5, "only the sequence meta column is added");
        }
    }

    #[test]
    fn tombstones_ties_and_stale_records() {
        let up = |seq: i64, city: &str| dlt_line(7, Some("X"), Some(city), "UPDATE", seq);
        let del = |seq: i64| dlt_line(7, Some("X"), Some("gone"), "DELETE", seq);
        let apply = |ls: &[Vec<u8>]| {
            reference_apply(ls.iter().map(|l| l.as_slice()), &["userId"], "sequenceNum")
        };

        // An older upsert after a newer delete does not resurrect the row.
        let s = apply(&[up(1, "a"), del(5), up(3, "b")]);
        assert!(s.rows.is_empty());
        // A newer upsert re-creates it.
        let s = apply(&[up(1, "a"), del(5), up(3, "b"), up(8, "c")]);
        assert_eq!(s.rows["[7]"]["city"], json!("c"));
        // Stale upserts are ignored.
        let s = apply(&[up(4, "new"), up(2, "old")]);
        assert_eq!(s.rows["[7]"]["city"], json!("new"));
        // At an equal sequence a delete beats an upsert, in either order.
        assert!(apply(&[up(4, "a"), del(4)]).rows.is_empty());
        assert!(apply(&[del(4), up(4, "a")]).rows.is_empty());
        // Between upserts at an equal sequence the larger canonical text wins, in either order.
        assert_eq!(
            apply(&[up(4, "a"), up(4, "b")]).rows["[7]"]["city"],
            json!("b")
        );
        assert_eq!(
            apply(&[up(4, "b"), up(4, "a")]).rows["[7]"]["city"],
            json!("b")
        );
        // String sequences compare lexically, numbers numerically.
        let sline = |seq: &str, city: &str| {
            serde_json::to_vec(
                &json!({"before": null, "after": {"k": 1, "s": seq, "city": city}, "op": "u"}),
            )
            .unwrap()
        };
        let s = reference_apply(
            [
                sline("b", "late").as_slice(),
                sline("a", "early").as_slice(),
            ],
            &["k"],
            "s",
        );
        assert_eq!(s.rows["[1]"]["city"], json!("late"));
        let s = apply(&[up(10, "ten"), up(9, "nine")]);
        assert_eq!(s.rows["[7]"]["city"], json!("ten"));
    }

    #[test]
    fn bad_and_skipped_lines() {
        let good = dlt_line(1, Some("A"), Some("B"), "INSERT", 1);
        let good_str = String::from_utf8(good.clone()).unwrap();
        let wrapped = format!(r#"{{"schema":{{"type":"struct"}},"payload":{good_str}}}"#);
        let lines: Vec<Vec<u8>> = vec![
            good.clone(),                                                // 1 ok
            b"{not json".to_vec(),                                       // 2 bad
            good_str.replace(r#""op":"c""#, r#""op":"x""#).into_bytes(), // 3 bad op
            good_str
                .replace(r#""userId":1"#, r#""userId":null"#)
                .into_bytes(), // 4 null key
            good_str
                .replace(r#""sequenceNum":1"#, r#""other":1"#)
                .into_bytes(), // 5 no sequence
            good_str
                .replace(r#""after":{"#, r#""after":null,"x":{"#)
                .into_bytes(), // 6 no after
            br#"{"before":null,"after":null,"op":"d"}"#.to_vec(),        // 7 no before
            Vec::new(),                                                  // 8 skipped
            b"null".to_vec(),                                            // 9 skipped
            br#"{"schema":null,"payload":null}"#.to_vec(),               // 10 skipped
            wrapped.into_bytes(),                                        // 11 ok
            b"[1,2]".to_vec(),                                           // 12 bad
        ];
        let s = reference_apply(
            lines.iter().map(|l| l.as_slice()),
            &["userId"],
            "sequenceNum",
        );
        let bad_lines: Vec<u64> = s.bad.iter().map(|(n, _)| *n).collect();
        assert_eq!(bad_lines, [2, 3, 4, 5, 6, 7, 12], "{:?}", s.bad);
        assert_eq!(s.skipped, 3);
        assert_eq!(s.rows.len(), 1);
    }

    fn generated(cfg: &BankGenConfig) -> Vec<Vec<u8>> {
        let mut gen = BankGenerator::new(cfg.clone());
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            if !gen.next_line(&mut line) {
                return out;
            }
            out.push(line);
        }
    }

    #[test]
    fn result_does_not_depend_on_line_order() {
        let cfg = BankGenConfig {
            events: 20_000,
            keys: 2_000,
            very_late_distance: 2_000,
            very_late_pct: 0.01,
            ..BankGenConfig::default()
        };
        let mut lines = generated(&cfg);
        for seq in ["__lsn", "__source_ts_ms", "updated_at"] {
            let a = reference_apply(lines.iter().map(|l| l.as_slice()), &["customer_id"], seq);
            assert!(a.bad.is_empty());
            assert!(a.rows.len() > 1_000);
            let mut rng = ChaCha8Rng::seed_from_u64(99);
            for i in (1..lines.len()).rev() {
                let j = rng.gen_range(0..=i);
                lines.swap(i, j);
            }
            let b = reference_apply(lines.iter().map(|l| l.as_slice()), &["customer_id"], seq);
            assert_eq!(a.rows, b.rows, "sequence_by {seq}");
        }
    }

    #[test]
    fn reference_matches_generator_ground_truth() {
        let cfg = BankGenConfig {
            events: 20_000,
            keys: 2_000,
            very_late_distance: 2_000,
            very_late_pct: 0.01,
            with_schema: true,
            ..BankGenConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.jsonl");
        crate::generator::bank::write_file(&cfg, &path).unwrap();
        let state = reference_apply_file(&path, &["customer_id"], "__lsn").unwrap();
        assert!(state.bad.is_empty());
        assert_eq!(state.skipped, 0);

        let mut gen = BankGenerator::new(cfg);
        let mut sink = Vec::new();
        while gen.next_line(&mut sink) {
            sink.clear();
        }
        let truth = gen.ground_truth();
        assert_eq!(state.rows.len(), truth.len());
        for (key, (lsn, json)) in truth {
            let mut expected: Map<String, Value> = serde_json::from_str(&json).unwrap();
            expected.insert("__lsn".into(), json!(lsn));
            assert_eq!(state.rows[&format!("[{key}]")], expected);
        }
    }
}
