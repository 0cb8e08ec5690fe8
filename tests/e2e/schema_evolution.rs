//! Schema evolution (issue 6, part 4): Debezium records whose schema block gains columns
//! while the pipeline runs. `add_new_columns` (default) adds each new column to the Delta
//! schema in the commit of the first epoch whose rows carry it, and every version equals the
//! reference model at its epoch, at 1, 2 and 4 workers and across a restart; `rescue` keeps
//! unknown fields in `_rescued_data`; `fail` stops with the column's name, leaving the tables
//! at a committed epoch; a type change of a known column, or of a column added during the
//! run, is quarantined with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use tidewater_e2e::python_reader::{py_read_all_versions, py_read_log, py_read_table};
use tidewater_e2e::{canonical, deltalake_rows, tidewater, tidewater_ok, JsonRow};

const KEYS: i64 = 20;
const RECORDS: usize = 120;
const EVERY: usize = 10;
/// Arrival positions where the source table gains `email` (string), then `tier` (int32).
const V2_AT: usize = 40;
const V3_AT: usize = 80;
/// The arrival position of the record whose block says `name` is int32.
const TYPE_CHANGE_AT: usize = 101;

/// One record as it arrives.
#[derive(Clone, Debug)]
struct Rec {
    id: i64,
    lsn: i64,
    delete: bool,
    name: String,
    email: Option<String>,
    tier: Option<i64>,
    /// The block types the record's schema says (name → Connect type), in order.
    fields: Vec<(&'static str, &'static str)>,
    /// Quarantined (its block changes the type of `name`).
    bad: bool,
}

fn field(name: &str, ty: &str) -> Value {
    json!({"type": ty, "optional": name != "id", "field": name})
}

/// A Debezium envelope with its Kafka Connect schema block.
fn envelope(r: &Rec) -> String {
    let fields: Vec<Value> = r.fields.iter().map(|(n, t)| field(n, t)).collect();
    let row_schema = |which: &str| json!({"type": "struct", "optional": true, "field": which, "fields": fields.clone()});
    let schema = json!({"type": "struct", "name": "bank.users.Envelope", "fields": [
        row_schema("before"), row_schema("after"),
        {"type": "struct", "field": "source", "fields": [{"type": "int64", "field": "lsn"}]},
        {"type": "string", "field": "op"}]});
    let mut image = Map::new();
    image.insert("id".into(), json!(r.id));
    if r.bad {
        image.insert("name".into(), json!(5));
    } else {
        image.insert("name".into(), json!(r.name));
    }
    if r.fields.iter().any(|(n, _)| *n == "email") {
        image.insert("email".into(), json!(r.email));
    }
    if r.fields.iter().any(|(n, _)| *n == "tier") {
        image.insert("tier".into(), json!(r.tier));
    }
    let (before, after, op) = if r.delete {
        (Value::Object(image), Value::Null, "d")
    } else {
        (Value::Null, Value::Object(image), "u")
    };
    json!({"schema": schema, "payload": {"before": before, "after": after,
           "source": {"lsn": r.lsn}, "op": op}})
    .to_string()
}

/// The input in arrival order: sequence numbers follow arrival except that pairs of
/// neighbours arrive swapped; every 9th record deletes its key.
fn records() -> Vec<Rec> {
    let mut out = Vec::new();
    for i in 0..RECORDS {
        // Swap each pair (4k, 4k+1): the later sequence arrives first.
        let seq = match i % 4 {
            0 => i + 1,
            1 => i - 1,
            _ => i,
        };
        let id = (seq as i64 * 7) % KEYS;
        let mut fields = vec![("id", "int64"), ("name", "string")];
        let (mut email, mut tier) = (None, None);
        if i >= V2_AT {
            fields.push(("email", "string"));
            // Some records of the new schema carry a null email.
            email = (seq % 5 != 0).then(|| format!("u{id}.{seq}@bank.example"));
        }
        if i >= V3_AT {
            fields.push(("tier", "int32"));
            tier = Some((seq % 3) as i64);
        }
        let bad = i == TYPE_CHANGE_AT;
        if bad {
            fields[1] = ("name", "int32");
        }
        out.push(Rec {
            id,
            lsn: seq as i64 + 1,
            delete: seq % 9 == 8,
            name: format!("user {id} v{seq}"),
            email,
            tier,
            fields,
            bad,
        });
    }
    out
}

/// The model: the table's columns and rows after the first `n` records (SCD type 1 by
/// `__lsn`). Columns are added when an upsert first carries a non-null value of them (an
/// epoch adds its new columns in name order), as `schema_evolution = "add_new_columns"`
/// does; with `rescue`, unknown fields go to `_rescued_data`.
fn model(recs: &[Rec], n: usize, rescue: bool) -> (Vec<String>, Vec<JsonRow>) {
    let mut latest: BTreeMap<i64, &Rec> = BTreeMap::new();
    let mut added: Vec<String> = Vec::new();
    for chunk in recs[..n].chunks(EVERY) {
        let mut fresh = Vec::new();
        for r in chunk.iter().filter(|r| !r.bad) {
            if latest.get(&r.id).is_none_or(|cur| cur.lsn < r.lsn) {
                latest.insert(r.id, r);
            }
            if !r.delete && !rescue {
                if r.email.is_some() {
                    fresh.push("email".to_string());
                }
                if r.tier.is_some() {
                    fresh.push("tier".to_string());
                }
            }
        }
        fresh.sort();
        for c in fresh {
            if !added.contains(&c) {
                added.push(c);
            }
        }
    }
    let mut columns: Vec<String> = vec!["id".into(), "name".into()];
    if rescue {
        columns.push("_rescued_data".into());
    }
    columns.push("__lsn".into());
    columns.extend(added.iter().cloned());
    let rows = latest
        .values()
        .filter(|r| !r.delete)
        .map(|r| {
            let mut m = Map::new();
            m.insert("id".into(), json!(r.id));
            m.insert("name".into(), json!(r.name));
            m.insert("__lsn".into(), json!(r.lsn));
            if rescue {
                let mut extra = Map::new();
                if let Some(e) = &r.email {
                    extra.insert("email".into(), json!(e));
                }
                if let Some(t) = r.tier {
                    extra.insert("tier".into(), json!(t));
                }
                m.insert(
                    "_rescued_data".into(),
                    if extra.is_empty() {
                        Value::Null
                    } else {
                        Value::String(Value::Object(extra).to_string())
                    },
                );
            }
            for c in &added {
                let v = match c.as_str() {
                    "email" => json!(r.email),
                    _ => json!(r.tier),
                };
                m.insert(c.clone(), v);
            }
            m
        })
        .collect();
    (columns, rows)
}

fn write_input(dir: &Path, name: &str, recs: &[Rec]) -> PathBuf {
    let text: String = recs.iter().map(|r| envelope(r) + "\n").collect();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn pipeline(dir: &Path, input: &Path, lakehouse: &Path, evolution: Option<&str>) -> PathBuf {
    let evolution = evolution
        .map(|e| format!("schema_evolution = \"{e}\""))
        .unwrap_or_default();
    let text = format!(
        r#"[pipeline]
name = "evolve"
lakehouse = "{}"
commit_every_records = {EVERY}
buckets = 4

[[source]]
name = "users_cdc"
kind = "files"
path = "{}"

[[table]]
name = "users"
from = "users_cdc"
keys = ["id"]
sequence_by = "__lsn"
{evolution}
"#,
        lakehouse.display(),
        input.display()
    );
    let n = std::fs::read_dir(dir).unwrap().count();
    let path = dir.join(format!("p{n}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Rows with every schema column present (a file written before a column was added lacks it).
fn complete(rows: Vec<JsonRow>, columns: &[String]) -> Vec<String> {
    let rows: Vec<JsonRow> = rows
        .into_iter()
        .map(|mut r| {
            for c in columns {
                r.entry(c.clone()).or_insert(Value::Null);
            }
            r
        })
        .collect();
    canonical(&rows)
}

/// Every version of `users`: (epoch, schema column names, rows), read by the independent reader.
fn versions(table: &Path) -> Vec<(u64, Vec<String>, Vec<String>)> {
    let epochs: BTreeMap<i64, u64> = py_read_log(table)
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                c.version,
                c.commit_info["tidewater"]["epoch"].as_u64().unwrap(),
            )
        })
        .collect();
    py_read_all_versions(table)
        .unwrap()
        .into_iter()
        .map(|t| {
            let cols: Vec<String> = t.schema.iter().map(|(n, _)| n.clone()).collect();
            let rows = complete(t.rows, &cols);
            (epochs[&t.version], cols, rows)
        })
        .collect()
}

fn quarantine_reasons(lakehouse: &Path) -> Vec<String> {
    py_read_table(&lakehouse.join("_quarantine"), None)
        .unwrap()
        .rows
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn new_columns_are_added_in_the_commit_of_their_first_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records();
    let input = write_input(dir.path(), "users.json", &recs);
    let mut runs = Vec::new();
    for workers in ["1", "2", "4"] {
        let lh = dir.path().join(format!("lh{workers}"));
        let p = pipeline(dir.path(), &input, &lh, None);
        tidewater_ok(&[
            "run",
            p.to_str().unwrap(),
            "--workers",
            workers,
            "--exit-when-idle",
        ]);
        let table = lh.join("users");
        let all = versions(&table);
        assert_eq!(
            all.len(),
            RECORDS / EVERY,
            "{workers} workers: one version per epoch; quarantined: {:?}",
            quarantine_reasons(&lh)
        );
        for (i, (epoch, cols, rows)) in all.iter().enumerate() {
            let (want_cols, want_rows) = model(&recs, (i + 1) * EVERY, false);
            let ctx = format!("{workers} workers, version {i} (epoch {epoch})");
            assert_eq!(cols, &want_cols, "{ctx}: schema");
            assert_eq!(rows, &canonical(&want_rows), "{ctx}: rows");
        }
        // The column arrives exactly with the epoch of its first records.
        let first_email = all.iter().position(|(_, c, _)| c.contains(&"email".into()));
        assert_eq!(first_email, Some(V2_AT / EVERY), "{workers} workers");
        let first_tier = all.iter().position(|(_, c, _)| c.contains(&"tier".into()));
        assert_eq!(first_tier, Some(V3_AT / EVERY), "{workers} workers");
        // The schema's types, as any Delta reader sees them.
        let last = py_read_table(&table, None).unwrap();
        let types: Vec<(String, String)> = last.schema.clone();
        assert_eq!(
            types,
            [
                ("id", "long"),
                ("name", "string"),
                ("__lsn", "long"),
                ("email", "string"),
                ("tier", "integer")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .to_vec()
        );
        // delta-rs reads the same final table.
        let (cols, want) = model(&recs, RECORDS, false);
        assert_eq!(
            complete(deltalake_rows(&table, None).unwrap(), &cols),
            canonical(&want),
            "{workers} workers: delta-rs"
        );
        // The record that changes the type of a known column is quarantined, with the reason.
        let reasons = quarantine_reasons(&lh);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].contains("column `name` changed type from string to int32"),
            "{reasons:?}"
        );
        runs.push(all);
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
}

#[test]
fn added_columns_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let lh = dir.path().join("lh");
    let p = pipeline(dir.path(), &input, &lh, None);
    // First run: up to the middle of the `email` era; the second run starts the `tier` era
    // with the added `email` column known only from the Delta table.
    write_input(&input, "a.json", &recs[..60]);
    tidewater_ok(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
    let (cols, want) = model(&recs, 60, false);
    let t = py_read_table(&lh.join("users"), None).unwrap();
    let names: Vec<String> = t.schema.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, cols);
    assert_eq!(complete(t.rows, &cols), canonical(&want));

    write_input(&input, "b.json", &recs[60..]);
    tidewater_ok(&[
        "run",
        p.to_str().unwrap(),
        "--workers",
        "2",
        "--exit-when-idle",
    ]);
    let (cols, want) = model(&recs, RECORDS, false);
    let t = py_read_table(&lh.join("users"), None).unwrap();
    let names: Vec<String> = t.schema.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, cols);
    assert_eq!(complete(t.rows, &cols), canonical(&want));
}

#[test]
fn rescue_keeps_unknown_fields_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records();
    let input = write_input(dir.path(), "users.json", &recs);
    for workers in ["1", "2"] {
        let lh = dir.path().join(format!("lh{workers}"));
        let p = pipeline(dir.path(), &input, &lh, Some("rescue"));
        tidewater_ok(&[
            "run",
            p.to_str().unwrap(),
            "--workers",
            workers,
            "--exit-when-idle",
        ]);
        let (cols, want) = model(&recs, RECORDS, true);
        let t = py_read_table(&lh.join("users"), None).unwrap();
        let names: Vec<String> = t.schema.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, cols, "{workers} workers");
        assert_eq!(
            complete(t.rows, &cols),
            canonical(&want),
            "{workers} workers"
        );
        assert_eq!(quarantine_reasons(&lh).len(), 1);
    }
}

#[test]
fn fail_stops_at_the_first_unknown_column() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records();
    let input = write_input(dir.path(), "users.json", &recs);
    let lh = dir.path().join("lh");
    let p = pipeline(dir.path(), &input, &lh, Some("fail"));
    let out = tidewater(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(
        stderr.contains("column `email` is not in the schema (schema_evolution = \"fail\")"),
        "{stderr}"
    );
    // Whatever was committed is a whole epoch from before the first unknown column.
    for (epoch, cols, rows) in versions(&lh.join("users")) {
        let records = rows_of_epoch(epoch);
        assert!(records <= V2_AT, "epoch {epoch} covers {records} records");
        let (want_cols, want) = model(&recs, records, false);
        assert_eq!(cols, want_cols);
        assert_eq!(rows, canonical(&want));
    }
}

/// How many records the epochs up to `epoch` cover (`commit_every_records` epochs, which are
/// numbered from 0 in a fresh lakehouse).
fn rows_of_epoch(epoch: u64) -> usize {
    (epoch as usize + 1) * EVERY
}

#[test]
fn a_new_column_whose_type_changes_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = records();
    recs.truncate(70);
    // `email` first arrives (epoch 4) as int64 from odd arrivals and as string from even ones:
    // the type whose name sorts first, int64, is the column's; from arrival 50 it is a string
    // again (quarantined), from 60 an int64 (applied).
    let int_email = |i: usize| (40..50).contains(&i) && i % 2 == 1 || i >= 60;
    let mut emails: Vec<Value> = Vec::new();
    let text: String = recs
        .iter_mut()
        .enumerate()
        .map(|(i, r)| {
            let mut value = json!(r.email);
            if int_email(i) {
                if let Some(f) = r.fields.iter_mut().find(|(n, _)| *n == "email") {
                    f.1 = "int64";
                }
                if r.email.is_some() {
                    value = json!(1000 + i);
                }
            }
            emails.push(value.clone());
            let mut line = envelope(r);
            if int_email(i) && !value.is_null() {
                let quoted = format!("\"email\":{}", json!(r.email));
                line = line.replace(&quoted, &format!("\"email\":{value}"));
            }
            line + "\n"
        })
        .collect();
    let input = dir.path().join("users.json");
    std::fs::write(&input, text).unwrap();
    // What is quarantined: upserts whose non-null email is a string after int64 won.
    let clash = |i: usize| {
        let r = &recs[i];
        i >= 40 && !int_email(i) && !r.delete && r.email.is_some()
    };
    let mut latest: BTreeMap<i64, usize> = BTreeMap::new();
    for i in 0..recs.len() {
        let r = &recs[i];
        if r.bad || clash(i) {
            continue;
        }
        if latest.get(&r.id).is_none_or(|j| recs[*j].lsn < r.lsn) {
            latest.insert(r.id, i);
        }
    }
    let want: Vec<JsonRow> = latest
        .values()
        .filter(|i| !recs[**i].delete)
        .map(|i| {
            let r = &recs[*i];
            let mut m = Map::new();
            m.insert("id".into(), json!(r.id));
            m.insert("name".into(), json!(r.name));
            m.insert("__lsn".into(), json!(r.lsn));
            m.insert("email".into(), emails[*i].clone());
            m
        })
        .collect();
    let clashes = (0..recs.len()).filter(|i| clash(*i)).count();
    assert!(clashes >= 8, "the input has clashes: {clashes}");
    for workers in ["1", "2"] {
        let lh = dir.path().join(format!("lh{workers}"));
        let p = pipeline(dir.path(), &input, &lh, None);
        tidewater_ok(&[
            "run",
            p.to_str().unwrap(),
            "--workers",
            workers,
            "--exit-when-idle",
        ]);
        let t = py_read_table(&lh.join("users"), None).unwrap();
        let schema: Vec<(String, String)> = t.schema.clone();
        assert_eq!(
            schema,
            [
                ("id", "long"),
                ("name", "string"),
                ("__lsn", "long"),
                ("email", "long")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .to_vec(),
            "{workers} workers"
        );
        let cols: Vec<String> = schema.into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            complete(t.rows, &cols),
            canonical(&want),
            "{workers} workers"
        );
        let reasons = quarantine_reasons(&lh);
        let typed = reasons
            .iter()
            .filter(|r| {
                r.as_str()
                    == "column `email` is string here, but the table added it as int64; a column's type does not change"
            })
            .count();
        assert_eq!(typed, clashes, "{workers} workers: {reasons:?}");
        assert_eq!(reasons.len(), clashes, "{workers} workers: {reasons:?}");
    }
}
