//! Tests of the offers generator: determinism, exact line counts and the prefix property, the
//! three streams as views of one world, parsing by the engine's Debezium parser, the
//! reference APPLY CHANGES over each stream, and the simulated properties on a mid-size
//! world (customers reaching 5 attendances, reversals 5 → 4, stale pattern deliveries,
//! duplicates, late transactions, several calendar months, cross-stream consistency,
//! segment-months that lose and earn money).

use super::*;
use crate::formats::{DebeziumParser, Parsed};
use crate::generator::{reference_apply, ReferenceState};
use crate::types::{ColumnType, Datum, Op, Schema};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use OffersStream as S;

fn cfg(customers: u64, events: u64) -> OffersGenConfig {
    OffersGenConfig {
        customers,
        events,
        ..OffersGenConfig::default()
    }
}

fn stream_lines(c: &OffersGenConfig, stream: OffersStream) -> Vec<Vec<u8>> {
    let mut gen = OffersGenerator::new(OffersGenConfig {
        stream,
        ..c.clone()
    });
    assert_eq!(gen.stream(), stream);
    assert_eq!(gen.config().stream, stream);
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

fn int(v: &Value, field: &str) -> i64 {
    v[field].as_i64().unwrap_or_else(|| panic!("{field}: {v}"))
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("{field}: {v}"))
}

fn lines_of(world: &[(OffersStream, Vec<u8>)], s: OffersStream) -> Vec<&[u8]> {
    world
        .iter()
        .filter(|(t, _)| *t == s)
        .map(|(_, l)| l.as_slice())
        .collect()
}

fn apply(world: &[(OffersStream, Vec<u8>)], s: OffersStream) -> ReferenceState {
    let st = reference_apply(lines_of(world, s), s.keys(), s.sequence_by());
    assert!(st.bad.is_empty(), "{s}: {:?}", st.bad);
    assert_eq!(st.skipped, 0, "{s}");
    st
}

#[test]
fn deterministic_per_seed() {
    let c = cfg(30, 6_000);
    for s in S::ALL {
        assert_eq!(stream_lines(&c, s), stream_lines(&c, s), "{s}");
    }
    let other = OffersGenConfig {
        seed: 7,
        ..c.clone()
    };
    assert_ne!(
        stream_lines(&c, S::Transaction),
        stream_lines(&other, S::Transaction)
    );
}

#[test]
fn exact_line_counts_and_prefixes() {
    for c in [
        cfg(0, 100),
        cfg(1, 0),
        cfg(1, 1),
        cfg(3, 7),
        cfg(2, 500),
        cfg(5, 2_000),
        cfg(40, 9_000),
    ] {
        let totals = c.stream_lines();
        let want = if c.customers == 0 { 0 } else { c.events };
        assert_eq!(totals.iter().sum::<u64>(), want, "{c:?}");
        for s in S::ALL {
            let lines = stream_lines(&c, s);
            assert_eq!(lines.len() as u64, totals[s.index()], "{s} {c:?}");
            let with = OffersGenConfig {
                stream: s,
                ..c.clone()
            };
            assert_eq!(with.total_lines(), totals[s.index()]);
            for l in &lines {
                json(l);
            }
        }
    }
    // A smaller world is a prefix of a larger one (the time span is not scaled by events).
    let big = world_lines(&cfg(20, 8_000));
    let small = world_lines(&cfg(20, 3_000));
    assert_eq!(&big[..3_000], &small[..]);
    for s in S::ALL {
        let big = stream_lines(&cfg(20, 8_000), s);
        let small = stream_lines(&cfg(20, 3_000), s);
        assert_eq!(&big[..small.len()], &small[..], "{s}");
    }
}

/// A world whose customers are all deleted ends early: fewer lines than `events`, and
/// every generator of it ends too.
#[test]
fn a_world_without_live_customers_ends() {
    for seed in 0..40 {
        let c = OffersGenConfig {
            seed,
            ..cfg(1, 100_000)
        };
        let totals = c.stream_lines();
        let sum: u64 = totals.iter().sum();
        assert!(sum <= c.events);
        if sum < c.events {
            let world = world_lines(&c);
            assert_eq!(world.len() as u64, sum);
            let v = json(&world.iter().rfind(|(s, _)| *s == S::Customer).unwrap().1);
            assert_eq!(v["op"], "d", "the customer was deleted");
            return;
        }
    }
    panic!("no single-customer world of 40 seeds ended");
}

/// Each stream is exactly the world's lines of that stream, in world order.
#[test]
fn streams_are_views_of_one_world() {
    for with_schema in [false, true] {
        let c = OffersGenConfig {
            with_schema,
            ..cfg(20, 5_000)
        };
        let world = world_lines(&c);
        assert_eq!(world.len() as u64, c.events);
        for s in S::ALL {
            let from_world: Vec<Vec<u8>> = lines_of(&world, s)
                .into_iter()
                .map(|l| l.to_vec())
                .collect();
            assert!(!from_world.is_empty(), "{s}");
            assert_eq!(stream_lines(&c, s), from_world, "{s}");
            for l in &from_world {
                let v = json(l);
                assert_eq!(v["source"]["table"], s.table());
                assert_eq!(v["source"]["schema"], s.system());
                assert_eq!(v["source"]["db"], "offers");
                assert!(v["transaction"].is_null());
            }
        }
    }
}

/// The declared types of a stream's columns (timestamps as `timestamp`).
fn declared(s: OffersStream) -> Vec<(String, ColumnType)> {
    s.columns()
        .iter()
        .map(|(n, t)| (n.to_string(), ColumnType::parse(t).unwrap()))
        .collect()
}

#[test]
fn the_columns_of_each_stream() {
    let names = |s: S| -> Vec<(&str, &str)> { s.columns().to_vec() };
    assert_eq!(
        names(S::Customer),
        [
            ("customer_id", "int64"),
            ("name", "string"),
            ("segment", "string"),
            ("region", "string"),
            ("first_seen", "timestamp"),
        ]
    );
    assert_eq!(
        names(S::Pattern),
        [
            ("customer_id", "int64"),
            ("category", "string"),
            ("events_attended", "int64"),
            ("datetime_updated", "timestamp"),
        ]
    );
    assert_eq!(
        names(S::Transaction),
        [
            ("transaction_id", "int64"),
            ("customer_id", "int64"),
            ("txn_time", "timestamp"),
            ("amount_cents", "int64"),
            ("merchant_category", "string"),
            ("cashback_cents", "int64"),
        ]
    );
    for s in S::ALL {
        for k in s.keys() {
            assert!(s.columns().iter().any(|(n, _)| n == k), "{s}: {k}");
        }
    }
    assert_eq!(S::Pattern.sequence_by(), "datetime_updated");
    assert_eq!(S::Customer.sequence_by(), "__lsn");
    assert_eq!(S::Transaction.sequence_by(), "__lsn");
}

/// Every line parses with the engine's parser, with and without the schema block, into
/// rows of the declared types; the two forms give the same rows.
#[test]
fn every_line_parses_with_the_debezium_parser() {
    for s in S::ALL {
        let mut rows_by_form = Vec::new();
        for with_schema in [true, false] {
            let c = OffersGenConfig {
                with_schema,
                ..cfg(30, 8_000)
            };
            let lines = stream_lines(&c, s);
            assert!(lines.len() > 20, "{s}: {}", lines.len());
            let sample: Vec<&[u8]> = lines.iter().take(1000).map(|l| l.as_slice()).collect();
            let decl = if with_schema { Vec::new() } else { declared(s) };
            let schema: Schema = DebeziumParser::resolve_schema(s.table(), &decl, &sample).unwrap();
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
                assert_eq!(op == Op::Delete, v["op"] == "d");
                assert!(!row[0].is_null(), "{s}: null key");
                for (d, col) in row.iter().zip(schema.data()) {
                    let ok = match (d, col.ty) {
                        (Datum::Str(_), ColumnType::String) => true,
                        (Datum::Int(_), ColumnType::Int64) => true,
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
            format!("offers.{}.{}.Envelope", s.system(), s.table())
        );
    }
}

/// Rows carry exactly their stream's columns, and string values need no escaping.
#[test]
fn rows_have_the_stream_columns() {
    let mut seen = BTreeSet::new();
    for (s, l) in &world_lines(&cfg(20, 6_000)) {
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
    assert_eq!(seen.len(), 3);
}

/// What a world shows, replayed from its lines in arrival order (and checked on the way).
#[derive(Debug, Default)]
struct Facts {
    ops: BTreeMap<(OffersStream, String), u64>,
    customers_created: u64,
    customers_deleted: u64,
    /// Snapshot segments (mass, affluent, premier).
    snapshot_segments: [u64; 3],
    segment_changes: u64,
    region_moves: u64,
    pattern_changes: u64,
    /// Pattern lines whose `datetime_updated` is below one delivered before for the key.
    stale_patterns: u64,
    /// Lines delivered a second time (same row).
    duplicate_patterns: u64,
    duplicate_transactions: u64,
    /// Pattern changes that decrease the count (in `datetime_updated` order per key), and
    /// those from 5 to 4.
    reversals: u64,
    reversals_5_to_4: u64,
    transactions: u64,
    /// Transactions delivered more than a minute after a later `txn_time`.
    late_transactions: u64,
    /// Transactions at an attendance (customer, category and time of a pattern change).
    attendance_transactions: u64,
    /// Calendar months (year, month) of the transactions.
    months: BTreeSet<(i64, u32)>,
    /// Customers (ever created) and how many reached >= 5 / sit at 3–4 at most in some
    /// category at the end (by the reference APPLY CHANGES by `datetime_updated`).
    customers: u64,
    reached_5: u64,
    at_3_or_4: u64,
    /// Segment-months (segment at the transaction's arrival, txn_time's month) whose
    /// interchange (1.5 % of the amount) is below / above their cash-back.
    losing_segment_months: Vec<(String, (i64, u32))>,
    earning_segment_months: Vec<(String, (i64, u32))>,
    /// Share of cash-back in the amount per segment over the world, basis points.
    cashback_bp: BTreeMap<String, i64>,
    lines: [u64; 3],
}

fn facts(c: &OffersGenConfig, world: &[(OffersStream, Vec<u8>)]) -> Facts {
    let mut f = Facts::default();
    let mut last_lsn: HashMap<S, i64> = HashMap::new();
    let mut tx_ids: HashMap<S, BTreeSet<i64>> = HashMap::new();
    let mut last_ts_ms = i64::MIN;
    // customer → (segment now, delete time).
    let mut segment: HashMap<i64, String> = HashMap::new();
    let mut region: HashMap<i64, String> = HashMap::new();
    let mut deleted_at: HashMap<i64, i64> = HashMap::new();
    // (customer, category) → max datetime_updated delivered; (key, datetime) → row.
    let mut max_updated: HashMap<(i64, String), i64> = HashMap::new();
    let mut changes: BTreeMap<(i64, String), BTreeMap<i64, i64>> = BTreeMap::new();
    let mut transactions: HashMap<i64, Value> = HashMap::new();
    let mut max_txn_time = i64::MIN;
    // (segment, month) → (amount, cashback).
    let mut money: BTreeMap<(String, (i64, u32)), (i64, i64)> = BTreeMap::new();
    let mut per_segment: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut txn_at: HashMap<(i64, String, i64), u32> = HashMap::new();
    let last_arrival = world.last().map_or(0, |(_, l)| int(&json(l), "ts_ms"));
    for (s, l) in world {
        f.lines[s.index()] += 1;
        let v = json(l);
        let r = row(&v);
        let op = text(&v, "op").to_string();
        *f.ops.entry((*s, op.clone())).or_default() += 1;
        // Arrival order; LSN and txId strictly increase per stream.
        let ts_ms = int(&v, "ts_ms");
        assert!(ts_ms >= last_ts_ms, "ts_ms goes back: {v}");
        last_ts_ms = ts_ms;
        let source = &v["source"];
        let lsn = int(source, "lsn");
        let last = last_lsn.entry(*s).or_insert(i64::MIN);
        assert!(lsn > *last, "{s}: LSN {lsn} after {last}");
        *last = lsn;
        assert!(tx_ids.entry(*s).or_default().insert(int(source, "txId")));
        assert_eq!(source["snapshot"] == "true", op == "r", "{v}");
        assert!(int(source, "ts_ms") <= ts_ms, "{v}");
        let customer = int(r, "customer_id");
        assert!((1..=c.customers as i64).contains(&customer), "{v}");
        match s {
            S::Customer => {
                let seg = text(r, "segment").to_string();
                assert!(SEGMENTS.contains(&seg.as_str()), "{v}");
                let reg = text(r, "region").to_string();
                assert!(REGIONS.contains(&reg.as_str()), "{v}");
                let name = text(r, "name");
                assert!(name.split(' ').count() == 2, "{name}");
                let first_seen = int(r, "first_seen");
                let at = int(source, "ts_ms");
                assert_eq!(ts_ms, at, "customer changes arrive when committed");
                match op.as_str() {
                    "r" => {
                        assert_eq!(at, START_TS_MS);
                        let days = (START_TS_MS - first_seen) / DAY_MS;
                        assert!((30..=720).contains(&days), "{v}");
                        f.snapshot_segments[SEGMENTS.iter().position(|x| *x == seg).unwrap()] += 1;
                    }
                    "c" => {
                        assert_eq!(first_seen, at);
                        assert!(at > START_TS_MS && at <= START_TS_MS + 90 * DAY_MS);
                    }
                    "u" => {
                        assert!(segment.contains_key(&customer), "update before create");
                        let was_seg = &segment[&customer];
                        let was_reg = &region[&customer];
                        assert!(*was_seg != seg || *was_reg != reg, "an empty update: {v}");
                        f.segment_changes += (*was_seg != seg) as u64;
                        f.region_moves += (*was_reg != reg) as u64;
                    }
                    "d" => {
                        assert!(v["after"].is_null());
                        assert!(deleted_at.insert(customer, at).is_none());
                        f.customers_deleted += 1;
                    }
                    _ => panic!("{v}"),
                }
                if op == "r" || op == "c" {
                    assert!(segment.insert(customer, seg.clone()).is_none(), "twice");
                    f.customers_created += 1;
                } else if op == "u" {
                    assert!(!deleted_at.contains_key(&customer), "update after delete");
                    segment.insert(customer, seg.clone());
                }
                region.insert(customer, reg);
            }
            S::Pattern => {
                assert!(
                    segment.contains_key(&customer),
                    "pattern before customer: {v}"
                );
                let category = text(r, "category").to_string();
                assert!(CATEGORIES[..EVENT_CATEGORIES].contains(&category.as_str()));
                let at = int(r, "datetime_updated");
                assert_eq!(int(source, "ts_ms"), at);
                assert!(at > START_TS_MS);
                if let Some(d) = deleted_at.get(&customer) {
                    assert!(at < *d, "a pattern change after the delete: {v}");
                }
                let n = int(r, "events_attended");
                assert!(n >= 0, "{v}");
                assert!(op == "c" || op == "u", "{v}");
                let key = (customer, category);
                let m = max_updated.entry(key.clone()).or_insert(i64::MIN);
                if at < *m {
                    f.stale_patterns += 1;
                }
                *m = (*m).max(at);
                let per_key = changes.entry(key).or_default();
                match per_key.insert(at, n) {
                    None => f.pattern_changes += 1,
                    Some(old) => {
                        // Never two changes of a key at one datetime_updated: a copy.
                        assert_eq!(old, n, "{v}");
                        f.duplicate_patterns += 1;
                    }
                }
            }
            S::Transaction => {
                assert!(segment.contains_key(&customer), "txn before customer: {v}");
                assert_eq!(op, "c");
                let id = int(r, "transaction_id");
                if let Some(old) = transactions.insert(id, r.clone()) {
                    assert_eq!(&old, r, "a duplicate is the same row");
                    f.duplicate_transactions += 1;
                    continue;
                }
                f.transactions += 1;
                let t = int(r, "txn_time");
                assert_eq!(int(source, "ts_ms"), t);
                if let Some(d) = deleted_at.get(&customer) {
                    assert!(t < *d, "a transaction after the delete: {v}");
                }
                if t < max_txn_time.saturating_sub(MINUTE_MS) {
                    f.late_transactions += 1;
                }
                max_txn_time = max_txn_time.max(t);
                let amount = int(r, "amount_cents");
                assert!(amount > 0);
                let category = text(r, "merchant_category").to_string();
                let ci = CATEGORIES.iter().position(|x| *x == category).unwrap();
                let seg = segment[&customer].clone();
                // The card's rate, plus the premier extra if the customer was premier at
                // the transaction (a review may change the segment before it arrives).
                let bp = CASHBACK_BP[ci];
                let cashback = int(r, "cashback_cents");
                assert!(
                    cashback == amount * bp / 10_000
                        || cashback == amount * (bp + PREMIER_EXTRA_BP) / 10_000,
                    "{v}"
                );
                let month = year_month(t);
                f.months.insert(month);
                let e = money.entry((seg.clone(), month)).or_default();
                e.0 += amount;
                e.1 += cashback;
                let e = per_segment.entry(seg).or_default();
                e.0 += amount;
                e.1 += cashback;
                *txn_at.entry((customer, category, t)).or_default() += 1;
            }
        }
    }
    // Every attendance (a count going up) pays a transaction there and then (if it has been
    // delivered: those near the end may be on their way).
    for ((customer, category), per_key) in &changes {
        let mut prev = 0;
        for (i, (at, n)) in per_key.iter().enumerate() {
            // (A late change may still be on its way near the end.)
            if *at < last_arrival - 3 * MINUTE_MS {
                if i == 0 {
                    assert_eq!(*n, 1, "the first change of a key is one attendance");
                } else {
                    assert_eq!((n - prev).abs(), 1, "{customer} {category}: {prev} → {n}");
                }
            }
            if *n < prev {
                f.reversals += 1;
                f.reversals_5_to_4 += (prev == 5) as u64;
            } else if *at < last_arrival - 31 * MINUTE_MS {
                let k = (*customer, category.clone(), *at);
                assert!(txn_at.contains_key(&k), "no transaction at {k:?}");
                f.attendance_transactions += 1;
            }
            prev = *n;
        }
    }
    // The end state by the reference APPLY CHANGES: each key's latest change.
    let patterns = apply(world, S::Pattern);
    let mut best: HashMap<i64, i64> = HashMap::new();
    for (key, per_key) in &changes {
        let (at, n) = per_key.last_key_value().unwrap();
        let k = format!("[{},\"{}\"]", key.0, key.1);
        let got = &patterns.rows[&k];
        assert_eq!(got["events_attended"], *n, "{k}");
        assert_eq!(got["datetime_updated"], *at, "{k}");
        let b = best.entry(key.0).or_default();
        *b = (*b).max(*n);
    }
    assert_eq!(patterns.rows.len(), changes.len());
    f.customers = f.customers_created;
    f.reached_5 = best.values().filter(|n| **n >= 5).count() as u64;
    f.at_3_or_4 = best.values().filter(|n| (3..=4).contains(*n)).count() as u64;
    for ((seg, month), (amount, cashback)) in money {
        let interchange = amount * 150 / 10_000;
        if interchange < cashback {
            f.losing_segment_months.push((seg, month));
        } else {
            f.earning_segment_months.push((seg, month));
        }
    }
    for (seg, (amount, cashback)) in per_segment {
        f.cashback_bp.insert(seg, cashback * 10_000 / amount.max(1));
    }
    // Customers by LSN: the live ones; transactions: every id once.
    let customers = apply(world, S::Customer);
    assert_eq!(
        customers.rows.len() as u64,
        f.customers_created - f.customers_deleted
    );
    for (id, seg) in &segment {
        let k = format!("[{id}]");
        match deleted_at.contains_key(id) {
            true => assert!(!customers.rows.contains_key(&k)),
            false => assert_eq!(customers.rows[&k]["segment"], seg.as_str()),
        }
    }
    let txns = apply(world, S::Transaction);
    assert_eq!(txns.rows.len() as u64, f.transactions);
    f
}

/// The properties of the offers world, measured on a mid-size world.
#[test]
fn a_mid_size_world_has_the_simulated_properties() {
    let c = cfg(200, 40_000);
    let world = world_lines(&c);
    assert_eq!(world.len(), 40_000);
    let f = facts(&c, &world);
    let summary = format!("{f:#?}");
    let ops = |s: S, op: &str| f.ops.get(&(s, op.to_string())).copied().unwrap_or(0);
    // Customers: half in the snapshot, the others created; updates and a few deletes.
    assert_eq!(ops(S::Customer, "r"), 100, "{summary}");
    assert_eq!(ops(S::Customer, "c"), 100, "{summary}");
    assert!(ops(S::Customer, "u") > 20, "{summary}");
    assert!(f.segment_changes > 10 && f.region_moves > 5, "{summary}");
    assert!((1..=12).contains(&f.customers_deleted), "{summary}");
    let [mass, affluent, premier] = f.snapshot_segments;
    assert!(
        mass > affluent && affluent > premier && premier > 0,
        "{summary}"
    );
    // Attendance: a sizeable fraction reaches 5 in some category, some sit just below (few
    // in this world of about eleven months: most regulars have passed 5 by then).
    assert!(f.reached_5 * 5 >= f.customers, "{summary}");
    assert!(f.at_3_or_4 * 50 >= f.customers, "{summary}");
    // Reversals (about 1 %), also from 5 to 4.
    assert!(f.reversals > 0 && f.reversals_5_to_4 > 0, "{summary}");
    assert!(f.reversals * 100 <= f.pattern_changes * 3, "{summary}");
    // Stale deliveries (about 4 %) and duplicates (about 1 %).
    let stale_pct = f.stale_patterns * 1000 / f.pattern_changes;
    assert!((20..=70).contains(&stale_pct), "{stale_pct}‰ {summary}");
    assert!(f.duplicate_patterns > 0, "{summary}");
    let dup_pct = f.duplicate_transactions * 1000 / f.transactions;
    assert!((5..=20).contains(&dup_pct), "{dup_pct}‰ {summary}");
    let late_pct = f.late_transactions * 1000 / f.transactions;
    assert!((15..=45).contains(&late_pct), "{late_pct}‰ {summary}");
    assert!(
        f.attendance_transactions * 2 > f.pattern_changes,
        "{summary}"
    );
    // Several calendar months; some segment-months lose money, others earn it.
    assert!(f.months.len() >= 4, "{summary}");
    assert!(!f.losing_segment_months.is_empty(), "{summary}");
    assert!(!f.earning_segment_months.is_empty(), "{summary}");
    assert!(f.cashback_bp["mass"] < 150, "{summary}");
    assert!(f.cashback_bp["premier"] > 150, "{summary}");
}

/// A stale pattern change is ignored by APPLY CHANGES by `datetime_updated` (checked in
/// [`facts`]) and would win by `__lsn`: the two disagree on keys whose last delivered change
/// is stale.
#[test]
fn stale_pattern_changes_lose_by_datetime_updated_and_win_by_lsn() {
    let c = OffersGenConfig {
        stale_pct: 0.3,
        ..cfg(50, 10_000)
    };
    let world = world_lines(&c);
    let by_time = apply(&world, S::Pattern);
    let by_lsn = reference_apply(lines_of(&world, S::Pattern), S::Pattern.keys(), "__lsn");
    assert!(by_lsn.bad.is_empty());
    let differ = by_time
        .rows
        .iter()
        .filter(|(k, r)| by_lsn.rows[*k]["datetime_updated"] != r["datetime_updated"])
        .count();
    assert!(differ > 0);
    for (k, r) in &by_lsn.rows {
        assert!(r["datetime_updated"].as_i64() <= by_time.rows[k]["datetime_updated"].as_i64());
    }
}

/// The figures of the default world (2,000 customers, 200,000 lines), for the docs:
/// `cargo test -p tidewater-connectors --lib generator::offers -- --ignored --nocapture`.
#[test]
#[ignore = "prints the figures of the default world"]
fn default_world_figures() {
    let c = OffersGenConfig::default();
    let world = world_lines(&c);
    let f = facts(&c, &world);
    let first = year_month(START_TS_MS);
    let last_time = int(&json(&world.last().unwrap().1), "ts_ms");
    println!("{f:#?}");
    println!(
        "months {:?} .. {:?}, simulated days {}",
        first,
        year_month(last_time),
        (last_time - START_TS_MS) / DAY_MS
    );
    // Customers per category reaching 5 at the end.
    let patterns = apply(&world, S::Pattern);
    let mut per_category: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in patterns.rows.values() {
        let e = per_category
            .entry(r["category"].as_str().unwrap().to_string())
            .or_default();
        let n = r["events_attended"].as_i64().unwrap();
        e.0 += (n >= 5) as u64;
        e.1 += (3..=4).contains(&n) as u64;
    }
    println!("per category (>= 5, 3–4): {per_category:?}");
}

#[test]
fn calendar_months() {
    assert_eq!(year_month(START_TS_MS), (2026, 1));
    assert_eq!(year_month(START_TS_MS + 31 * DAY_MS - 1), (2026, 1));
    assert_eq!(year_month(START_TS_MS + 31 * DAY_MS), (2026, 2));
    assert_eq!(year_month(START_TS_MS + 59 * DAY_MS), (2026, 3));
    assert_eq!(year_month(START_TS_MS + 365 * DAY_MS), (2027, 1));
    assert_eq!(year_month(START_TS_MS - 1), (2025, 12));
    assert_eq!(year_month(0), (1970, 1));
    // 2028 is a leap year: 2028-02-29 exists.
    let feb_29_2028 = START_TS_MS + (365 + 365 + 31 + 28) * DAY_MS;
    assert_eq!(year_month(feb_29_2028), (2028, 2));
    assert_eq!(year_month(feb_29_2028 + DAY_MS), (2028, 3));
    assert_eq!(month_of(START_TS_MS + 200 * DAY_MS), 7);
}

#[test]
fn config_deserializes_partially_and_names_streams() {
    let c: OffersGenConfig = serde_json::from_str(r#"{"seed":7,"stream":"pattern"}"#).unwrap();
    assert_eq!(c.seed, 7);
    assert_eq!(c.stream, S::Pattern);
    assert_eq!(c.events, OffersGenConfig::default().events);
    assert_eq!(c.customers, 2_000);
    for s in S::ALL {
        assert_eq!(S::parse(s.name()), Some(s));
        assert_eq!(S::ALL[s.index()], s);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text, format!("\"{}\"", s.name()));
        assert_eq!(s.to_string(), s.name());
    }
    assert_eq!(S::parse("customers"), None);
    assert_eq!(S::names(), "customer, pattern, transaction");
    assert_eq!(OffersGenConfig::scaled(40).customers, 40);
}

#[test]
fn generator_config_variant() {
    let c = OffersGenConfig {
        stream: S::Pattern,
        ..cfg(20, 3_000)
    };
    let g = crate::generator::GeneratorConfig::Offers(c.clone());
    assert_eq!(g.workload(), "offers");
    assert_eq!(g.total_lines(), c.total_lines());
    let mut gen = g.build();
    let mut lines = Vec::new();
    let mut line = Vec::new();
    while gen.next_line(&mut line) {
        assert!(!gen.in_transaction());
        lines.push(std::mem::take(&mut line));
    }
    assert_eq!(gen.position(), c.total_lines());
    assert_eq!(lines, stream_lines(&c, S::Pattern));
}

#[test]
fn write_file_writes_the_stream() {
    let c = OffersGenConfig {
        stream: S::Transaction,
        ..cfg(10, 2_000)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transactions.jsonl");
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
