//! Tests of the marketing generator: determinism, exact line counts, the six streams as
//! views of one world, cross-stream consistency, the perturbations, and parsing by the
//! engine's Debezium parser.

use super::*;
use crate::formats::{DebeziumParser, Parsed};
use crate::types::{ColumnType, Datum, Op, Schema};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use MarketingStream as S;

fn cfg(events: u64) -> MarketingGenConfig {
    MarketingGenConfig {
        events,
        accounts: 20,
        users: 100,
        leads: 200,
        campaigns: 5,
        late_distance: 150,
        ..MarketingGenConfig::default()
    }
}

fn stream_lines(c: &MarketingGenConfig, stream: MarketingStream) -> Vec<Vec<u8>> {
    let mut gen = MarketingGenerator::new(MarketingGenConfig {
        stream,
        ..c.clone()
    });
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        if !gen.next_line(&mut line) {
            break;
        }
        assert!(!line.is_empty() && !line.contains(&b'\n'));
        out.push(line);
        assert_eq!(gen.position(), out.len() as u64);
    }
    // Exhausted stays exhausted.
    let mut line = Vec::new();
    assert!(!gen.next_line(&mut line) && line.is_empty());
    out
}

fn json(line: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(line).expect("valid JSON");
    match v.get("payload") {
        Some(p) => p.clone(),
        None => v,
    }
}

/// The row of a line (`after`, or `before` of a delete).
fn row(v: &Value) -> &Value {
    if v["op"] == "d" {
        &v["before"]
    } else {
        &v["after"]
    }
}

#[test]
fn deterministic_per_seed() {
    let c = cfg(3_000);
    for s in S::ALL {
        assert_eq!(stream_lines(&c, s), stream_lines(&c, s), "{s}");
    }
    let other = MarketingGenConfig {
        seed: 7,
        ..c.clone()
    };
    assert_ne!(
        stream_lines(&c, S::ActivityOpenEmail),
        stream_lines(&other, S::ActivityOpenEmail)
    );
}

#[test]
fn exact_line_counts() {
    let small = |events, accounts, users, leads| MarketingGenConfig {
        events,
        accounts,
        users,
        leads,
        late_distance: 7,
        late_pct: 0.2,
        duplicate_pct: 0.2,
        ..MarketingGenConfig::default()
    };
    for c in [
        small(0, 3, 5, 5),
        small(1, 3, 5, 5),
        small(7, 3, 5, 5),
        small(50, 0, 0, 0),
        small(200, 1, 0, 3),
        small(500, 2, 10, 4),
        cfg(4_000),
    ] {
        let totals = c.stream_lines();
        assert_eq!(totals.iter().sum::<u64>(), c.events, "{c:?}");
        for s in S::ALL {
            let lines = stream_lines(&c, s);
            assert_eq!(lines.len() as u64, totals[s.index()], "{s} {c:?}");
            let with = MarketingGenConfig {
                stream: s,
                ..c.clone()
            };
            assert_eq!(with.total_lines(), totals[s.index()]);
            for l in &lines {
                json(l);
            }
        }
    }
}

/// Each stream is exactly the world's lines of that stream, in world order.
#[test]
fn streams_are_views_of_one_world() {
    for with_schema in [false, true] {
        let c = MarketingGenConfig {
            with_schema,
            ..cfg(3_000)
        };
        let world = world_lines(&c);
        assert_eq!(world.len() as u64, c.events);
        for s in S::ALL {
            let from_world: Vec<Vec<u8>> = world
                .iter()
                .filter(|(t, _)| *t == s)
                .map(|(_, l)| l.clone())
                .collect();
            assert!(!from_world.is_empty(), "{s}");
            assert_eq!(stream_lines(&c, s), from_world, "{s}");
            for l in &from_world {
                let v = json(l);
                assert_eq!(v["source"]["table"], s.name());
                assert_eq!(v["source"]["schema"], s.system());
            }
        }
    }
}

/// What the world shows, replayed from its lines in delivery order.
#[derive(Default, Debug)]
struct Facts {
    /// Lead ids with a line, and the world position of their first line.
    lead_first_seen: HashMap<i64, usize>,
    /// Lead ids deleted, with the world position of the delete.
    lead_deleted: HashMap<i64, usize>,
    account_ids: HashSet<String>,
    send_ids: HashSet<String>,
    /// (world position, stream, lead_id, email_send_id) of every activity line.
    activities: Vec<(usize, MarketingStream, i64, String)>,
    exact_duplicates: BTreeMap<MarketingStream, u64>,
    /// Activity lines whose LSN is below one delivered before in their stream.
    lsn_inversions: BTreeMap<MarketingStream, u64>,
    /// Activity ids delivered again with another line (a re-sync).
    resyncs: u64,
    country_changes: u64,
    account_soft_deletes: u64,
    user_soft_deletes: u64,
    user_account_moves: u64,
    ops: BTreeMap<(MarketingStream, String), u64>,
    capitalized_emails: u64,
}

fn facts(world: &[(MarketingStream, Vec<u8>)]) -> Facts {
    let mut f = Facts::default();
    let mut seen_lines: HashSet<&[u8]> = HashSet::new();
    let mut max_lsn: HashMap<MarketingStream, i64> = HashMap::new();
    let mut activity_lines: HashMap<i64, &[u8]> = HashMap::new();
    let mut account_country: HashMap<String, Value> = HashMap::new();
    let mut user_account: HashMap<String, Value> = HashMap::new();
    for (pos, (s, l)) in world.iter().enumerate() {
        let v = json(l);
        let r = row(&v);
        let op = v["op"].as_str().unwrap().to_string();
        *f.ops.entry((*s, op.clone())).or_default() += 1;
        if !seen_lines.insert(l) {
            *f.exact_duplicates.entry(*s).or_default() += 1;
            continue;
        }
        let lsn = v["source"]["lsn"].as_i64().unwrap();
        let m = max_lsn.entry(*s).or_insert(0);
        if lsn < *m && s.is_activity() {
            *f.lsn_inversions.entry(*s).or_default() += 1;
        }
        *m = (*m).max(lsn);
        match s {
            S::Account => {
                let id = r["id"].as_str().unwrap().to_string();
                if r["_fivetran_deleted"] == true {
                    f.account_soft_deletes += 1;
                }
                let country = r["billing_country"].clone();
                if let Some(old) = account_country.insert(id.clone(), country.clone()) {
                    if old != country {
                        f.country_changes += 1;
                    }
                }
                f.account_ids.insert(id);
            }
            S::User => {
                let id = r["id"].as_str().unwrap().to_string();
                if r["_fivetran_deleted"] == true {
                    f.user_soft_deletes += 1;
                }
                if let Some(a) = r["account_id"].as_str() {
                    assert!(
                        f.account_ids.contains(a),
                        "user {id} of unknown account {a}"
                    );
                }
                let account = r["account_id"].clone();
                if let Some(old) = user_account.insert(id, account.clone()) {
                    if old != account {
                        f.user_account_moves += 1;
                    }
                }
            }
            S::Lead => {
                let id = r["id"].as_i64().unwrap();
                f.lead_first_seen.entry(id).or_insert(pos);
                if op == "d" {
                    assert!(v["after"].is_null());
                    f.lead_deleted.insert(id, pos);
                }
                if let Some(e) = r["email"].as_str() {
                    if e.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                        f.capitalized_emails += 1;
                    }
                }
            }
            _ => {
                let id = r["id"].as_i64().unwrap();
                let lead = r["lead_id"].as_i64().unwrap();
                let send = r["email_send_id"].as_str().unwrap().to_string();
                let parts: Vec<i64> = send.split('-').map(|p| p.parse().unwrap()).collect();
                assert_eq!(
                    parts,
                    [
                        r["email_template_id"].as_i64().unwrap(),
                        r["campaign_id"].as_i64().unwrap(),
                        r["campaign_run_id"].as_i64().unwrap(),
                        lead
                    ]
                );
                if let Some(prev) = activity_lines.insert(id, l) {
                    assert_ne!(prev, &l[..]);
                    f.resyncs += 1;
                    let pv = json(prev);
                    let mut a = row(&pv).clone();
                    let mut b = r.clone();
                    a["_fivetran_synced"] = Value::Null;
                    b["_fivetran_synced"] = Value::Null;
                    assert_eq!(a, b, "a re-sync changes only _fivetran_synced");
                }
                if *s == S::ActivitySendEmail {
                    f.send_ids.insert(send.clone());
                }
                f.activities.push((pos, *s, lead, send));
            }
        }
    }
    f
}

#[test]
fn streams_are_consistent_and_perturbed() {
    let c = cfg(30_000);
    let world = world_lines(&c);
    let f = facts(&world);
    let mut not_yet_seen = 0;
    let mut deleted_later = 0;
    let mut after_delete = 0;
    for (pos, s, lead, send) in &f.activities {
        let first = *f
            .lead_first_seen
            .get(lead)
            .unwrap_or_else(|| panic!("{s} of lead {lead}, which has no line"));
        if first > *pos {
            not_yet_seen += 1;
        }
        match f.lead_deleted.get(lead) {
            Some(d) if d > pos => deleted_later += 1,
            Some(_) => after_delete += 1,
            None => {}
        }
        if *s != S::ActivitySendEmail {
            assert!(f.send_ids.contains(send), "{s} of unknown send {send}");
        }
    }
    let count = |s: S, op: &str| f.ops.get(&(s, op.to_string())).copied().unwrap_or(0);
    let summary = format!(
        "not yet seen {not_yet_seen}, deleted later {deleted_later}, after delete \
         {after_delete}, {f:?}"
    )
    .chars()
    .take(3_000)
    .collect::<String>();
    assert!(not_yet_seen > 0, "{summary}");
    assert!(deleted_later > 0, "{summary}");
    assert!(after_delete > 0, "{summary}");
    for s in [
        S::ActivitySendEmail,
        S::ActivityOpenEmail,
        S::ActivityClickEmail,
    ] {
        assert!(
            f.exact_duplicates.get(&s).copied().unwrap_or(0) > 5,
            "{summary}"
        );
        assert!(
            f.lsn_inversions.get(&s).copied().unwrap_or(0) > 5,
            "{summary}"
        );
        assert!(count(s, "c") > 100, "{summary}");
    }
    for s in [S::Account, S::User, S::Lead] {
        assert_eq!(f.exact_duplicates.get(&s), None, "{summary}");
        assert!(
            count(s, "r") > 0 && count(s, "u") > 0 && count(s, "c") > 0,
            "{summary}"
        );
    }
    assert!(count(S::Lead, "d") > 5, "{summary}");
    assert_eq!(count(S::Account, "d") + count(S::User, "d"), 0);
    assert!(f.resyncs > 10, "{summary}");
    assert!(f.country_changes > 10, "{summary}");
    assert!(
        f.account_soft_deletes > 0 && f.user_soft_deletes > 0,
        "{summary}"
    );
    assert!(f.user_account_moves > 5, "{summary}");
    assert!(f.capitalized_emails > 5, "{summary}");
    // Opens and clicks follow sends.
    let (sends, opens, clicks) = (
        count(S::ActivitySendEmail, "c"),
        count(S::ActivityOpenEmail, "c"),
        count(S::ActivityClickEmail, "c"),
    );
    assert!(sends > opens && opens > clicks, "{sends} {opens} {clicks}");
}

/// The declared types of a stream's columns (timestamps as `timestamp`).
fn declared(s: MarketingStream) -> Vec<(String, ColumnType)> {
    s.columns()
        .iter()
        .map(|(n, t)| (n.to_string(), ColumnType::parse(t).unwrap()))
        .collect()
}

/// Every line parses with the engine's parser, with and without the schema block, into
/// rows of the declared types; the two forms give the same rows.
#[test]
fn every_line_parses_with_the_debezium_parser() {
    for s in S::ALL {
        let mut rows_by_form = Vec::new();
        for with_schema in [true, false] {
            let c = MarketingGenConfig {
                with_schema,
                ..cfg(6_000)
            };
            let lines = stream_lines(&c, s);
            let sample: Vec<&[u8]> = lines.iter().take(1000).map(|l| l.as_slice()).collect();
            let decl = if with_schema { Vec::new() } else { declared(s) };
            let schema: Schema = DebeziumParser::resolve_schema(s.name(), &decl, &sample).unwrap();
            let types: Vec<(String, ColumnType)> = schema
                .data()
                .iter()
                .map(|c| (c.name.clone(), c.ty))
                .collect();
            assert_eq!(types, declared(s), "{s} with_schema={with_schema}");
            let mut parser = DebeziumParser::new(Arc::new(schema.clone()));
            let mut rows = Vec::new();
            for l in &lines {
                let parsed = parser.parse(l).unwrap_or_else(|e| panic!("{s}: {e}"));
                let Parsed::Record { op, row } = parsed else {
                    panic!("{s}: a line was skipped");
                };
                let v = json(l);
                assert_eq!(op.letter(), v["op"].as_str().unwrap());
                assert_eq!(op == Op::Delete, s == S::Lead && v["op"] == "d");
                assert!(!row[0].is_null(), "{s}: null key");
                for (d, col) in row.iter().zip(schema.data()) {
                    let ok = match (d, col.ty) {
                        (Datum::Null, _) => true,
                        (Datum::Str(_), ColumnType::String) => true,
                        (Datum::Int(_), ColumnType::Int64) => true,
                        (Datum::Float(_), ColumnType::Float64) => true,
                        (Datum::Bool(_), ColumnType::Boolean) => true,
                        (Datum::Timestamp(us), ColumnType::Timestamp) => {
                            us % 1000 == 0 && *us > 1_600_000_000_000_000
                        }
                        _ => false,
                    };
                    assert!(ok, "{s}: {}: {d:?}", col.name);
                }
                let lsn = schema.index_of("__lsn").unwrap();
                assert_eq!(row[lsn], Datum::Int(v["source"]["lsn"].as_i64().unwrap()));
                rows.push(row);
            }
            rows_by_form.push(rows);
        }
        assert_eq!(rows_by_form[0], rows_by_form[1], "{s}");
    }
}

#[test]
fn schema_blocks_name_the_columns_in_order() {
    for s in S::ALL {
        let schema: Value = serde_json::from_str(s.schema_json()).unwrap();
        for (i, image) in ["before", "after"].iter().enumerate() {
            assert_eq!(schema["fields"][i]["field"], *image);
            let names: Vec<&str> = schema["fields"][i]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["field"].as_str().unwrap())
                .collect();
            let cols: Vec<&str> = s.columns().iter().map(|c| c.0).collect();
            assert_eq!(names, cols, "{s}");
        }
        let name = schema["name"].as_str().unwrap();
        assert_eq!(
            name,
            format!("marketing.{}.{}.Envelope", s.system(), s.name())
        );
    }
    // The bank schema keeps its names.
    assert!(crate::generator::BANK_SCHEMA_JSON.contains("\"bank.public.customers.Envelope\""));
}

/// Rows carry exactly their stream's columns, and string values need no escaping.
#[test]
fn rows_have_the_stream_columns() {
    let world = world_lines(&cfg(5_000));
    let mut seen = BTreeSet::new();
    for (s, l) in &world {
        let v = json(l);
        let names: Vec<&str> = row(&v)
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut want: Vec<&str> = s.columns().iter().map(|c| c.0).collect();
        want.sort_unstable();
        assert_eq!(names, want, "{s}");
        let text = std::str::from_utf8(l).unwrap();
        assert!(text.is_ascii() && !text.contains('\\'), "{text}");
        seen.insert(*s);
    }
    assert_eq!(seen.len(), 6);
}

#[test]
fn config_deserializes_partially_and_names_streams() {
    let c: MarketingGenConfig =
        serde_json::from_str(r#"{"seed":7,"stream":"activity_open_email"}"#).unwrap();
    assert_eq!(c.seed, 7);
    assert_eq!(c.stream, S::ActivityOpenEmail);
    assert_eq!(c.events, MarketingGenConfig::default().events);
    for s in S::ALL {
        assert_eq!(S::parse(s.name()), Some(s));
        assert_eq!(S::ALL[s.index()], s);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text, format!("\"{}\"", s.name()));
    }
    assert_eq!(S::parse("users"), None);
    let scaled = MarketingGenConfig::scaled(400);
    assert_eq!(
        (scaled.leads, scaled.users, scaled.accounts),
        (400, 200, 20)
    );
}

#[test]
fn generator_config_variant() {
    let c = MarketingGenConfig {
        stream: S::Lead,
        ..cfg(2_000)
    };
    let g = crate::generator::GeneratorConfig::Marketing(c.clone());
    assert_eq!(g.workload(), "marketing");
    assert_eq!(g.total_lines(), c.total_lines());
    let mut gen = g.build();
    let mut lines = Vec::new();
    let mut line = Vec::new();
    while gen.next_line(&mut line) {
        assert!(!gen.in_transaction());
        lines.push(std::mem::take(&mut line));
    }
    assert_eq!(gen.position(), c.total_lines());
    assert_eq!(lines, stream_lines(&c, S::Lead));
}

#[test]
fn write_file_writes_the_stream() {
    let c = MarketingGenConfig {
        stream: S::ActivityClickEmail,
        ..cfg(2_000)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clicks.jsonl");
    let bytes = write_file(&c, &path).unwrap();
    let mut expected = Vec::new();
    for l in stream_lines(&c, c.stream) {
        expected.extend_from_slice(&l);
        expected.push(b'\n');
    }
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data, expected);
    assert_eq!(bytes, data.len() as u64);
}
