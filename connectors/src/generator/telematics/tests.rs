//! Tests of the telematics generator: determinism, exact line counts and the prefix property,
//! the three streams as views of one world, cross-stream consistency, the delivery
//! perturbations (late, very late, duplicates, out-of-order changes) and their shares, and
//! parsing by the engine's Debezium parser.

use super::*;
use crate::formats::{DebeziumParser, Parsed};
use crate::types::{ColumnType, Datum, Op, Schema};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use TelematicsStream as S;

fn cfg(vehicles: u64, events: u64) -> TelematicsGenConfig {
    TelematicsGenConfig {
        vehicles,
        events,
        ..TelematicsGenConfig::default()
    }
}

fn stream_lines(c: &TelematicsGenConfig, stream: TelematicsStream) -> Vec<Vec<u8>> {
    let mut gen = TelematicsGenerator::new(TelematicsGenConfig {
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

fn int(v: &Value, field: &str) -> i64 {
    v[field].as_i64().unwrap_or_else(|| panic!("{field}: {v}"))
}

fn float(v: &Value, field: &str) -> f64 {
    v[field].as_f64().unwrap_or_else(|| panic!("{field}: {v}"))
}

#[test]
fn deterministic_per_seed() {
    let c = cfg(20, 8_000);
    for s in S::ALL {
        assert_eq!(stream_lines(&c, s), stream_lines(&c, s), "{s}");
    }
    let other = TelematicsGenConfig {
        seed: 7,
        ..c.clone()
    };
    assert_ne!(
        stream_lines(&c, S::Reading),
        stream_lines(&other, S::Reading)
    );
}

#[test]
fn exact_line_counts_and_prefixes() {
    for c in [
        cfg(0, 100),
        cfg(1, 0),
        cfg(1, 1),
        cfg(3, 7),
        cfg(1, 500),
        cfg(5, 2_000),
        cfg(30, 9_000),
    ] {
        let totals = c.stream_lines();
        let want = if c.vehicles == 0 { 0 } else { c.events };
        assert_eq!(totals.iter().sum::<u64>(), want, "{c:?}");
        for s in S::ALL {
            let lines = stream_lines(&c, s);
            assert_eq!(lines.len() as u64, totals[s.index()], "{s} {c:?}");
            let with = TelematicsGenConfig {
                stream: s,
                ..c.clone()
            };
            assert_eq!(with.total_lines(), totals[s.index()]);
            for l in &lines {
                json(l);
            }
        }
    }
    // A smaller world is a prefix of a larger one.
    let big = world_lines(&cfg(10, 6_000));
    let small = world_lines(&cfg(10, 2_500));
    assert_eq!(&big[..2_500], &small[..]);
}

/// Each stream is exactly the world's lines of that stream, in world order.
#[test]
fn streams_are_views_of_one_world() {
    for with_schema in [false, true] {
        let c = TelematicsGenConfig {
            with_schema,
            claim_pct: 0.01,
            ..cfg(10, 6_000)
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
#[derive(Default)]
struct Facts {
    readings: u64,
    /// Readings delivered again (same row).
    duplicates: u64,
    /// Readings whose event time is older than the maximum event time delivered before
    /// them minus 2 minutes (beyond the allowed lateness), and their delays.
    beyond_lateness: u64,
    /// Readings by delay (`ts_ms - event_time`): 30–90 s, 5–15 min.
    late: u64,
    very_late: u64,
    /// Readings delivered before a reading of the same vehicle with an earlier event time.
    out_of_order_per_vehicle: u64,
    harsh_brakes: u64,
    /// Change lines whose LSN is below one delivered before in their stream.
    lsn_inversions: BTreeMap<TelematicsStream, u64>,
    ops: BTreeMap<(TelematicsStream, String), u64>,
    /// (vehicle, event time) → speed km/h of every reading.
    speed_at: HashMap<(i64, i64), f64>,
    max_event_time: i64,
    statuses: BTreeSet<String>,
}

fn facts(world: &[(TelematicsStream, Vec<u8>)]) -> Facts {
    let mut f = Facts::default();
    let mut rows: HashMap<i64, Value> = HashMap::new();
    let mut max_lsn: HashMap<TelematicsStream, i64> = HashMap::new();
    let mut max_seen = i64::MIN;
    let mut last_per_vehicle: HashMap<i64, i64> = HashMap::new();
    let mut last_ts_ms = i64::MIN;
    for (s, l) in world {
        let v = json(l);
        let r = row(&v);
        let op = v["op"].as_str().unwrap().to_string();
        *f.ops.entry((*s, op.clone())).or_default() += 1;
        // Arrival order.
        let ts_ms = int(&v, "ts_ms");
        assert!(ts_ms >= last_ts_ms, "ts_ms goes back: {v}");
        last_ts_ms = ts_ms;
        let lsn = int(&v["source"], "lsn");
        let m = max_lsn.entry(*s).or_insert(i64::MIN);
        if lsn <= *m {
            assert_ne!(*s, S::Reading, "reading LSNs strictly increase: {v}");
            *f.lsn_inversions.entry(*s).or_default() += 1;
        }
        *m = (*m).max(lsn);
        if *s != S::Reading {
            if *s == S::Claim {
                f.statuses.insert(r["status"].as_str().unwrap().to_string());
            }
            continue;
        }
        assert_eq!(op, "c");
        f.readings += 1;
        let id = int(r, "reading_id");
        if let Some(prev) = rows.insert(id, r.clone()) {
            assert_eq!(&prev, r, "a duplicate is the same row");
            f.duplicates += 1;
            continue;
        }
        let (vehicle, t) = (int(r, "vehicle_id"), int(r, "event_time"));
        assert_eq!(int(&v["source"], "ts_ms"), t);
        let delay = ts_ms - t;
        assert!((100..=900_000).contains(&delay), "{delay}");
        if (30_000..=90_000).contains(&delay) {
            f.late += 1;
        }
        if delay >= 300_000 {
            f.very_late += 1;
        }
        if t < max_seen.saturating_sub(120_000) {
            f.beyond_lateness += 1;
            assert!(delay >= 300_000, "only very late readings are beyond: {v}");
        } else {
            assert!(
                delay <= 90_000,
                "a very late reading within the lateness: {v}"
            );
        }
        max_seen = max_seen.max(t);
        let last = last_per_vehicle.entry(vehicle).or_insert(i64::MIN);
        if t < *last {
            f.out_of_order_per_vehicle += 1;
        }
        *last = (*last).max(t);
        if float(r, "accel_ms2") < -4.0 {
            f.harsh_brakes += 1;
        }
        let speed = float(r, "speed_kmh");
        assert!((0.0..=160.0).contains(&speed), "{speed}");
        assert!(float(r, "distance_m") >= 0.0);
        f.speed_at.insert((vehicle, t), speed);
        f.max_event_time = f.max_event_time.max(t);
    }
    f
}

/// The delivery perturbations have their configured shares.
#[test]
fn late_very_late_and_duplicate_shares() {
    let c = cfg(50, 120_000);
    let world = world_lines(&c);
    let f = facts(&world);
    let share = |n: u64| n as f64 / f.readings as f64;
    let summary = format!(
        "readings {}, late {}, very late {}, beyond {}, duplicates {}, out of order per vehicle \
         {}, harsh {}",
        f.readings,
        f.late,
        f.very_late,
        f.beyond_lateness,
        f.duplicates,
        f.out_of_order_per_vehicle,
        f.harsh_brakes
    );
    assert!(f.readings > 110_000, "{summary}");
    // 2 %: 30–90 s late.
    assert!((0.016..0.024).contains(&share(f.late)), "{summary}");
    // 0.5 %: 5–15 minutes late, all of them beyond the allowed lateness (but the very last
    // minutes of the world, whose very late readings are not delivered yet).
    assert!((0.0035..0.0065).contains(&share(f.very_late)), "{summary}");
    assert_eq!(f.very_late, f.beyond_lateness, "{summary}");
    // 0.5 % delivered twice.
    assert!((0.0035..0.0065).contains(&share(f.duplicates)), "{summary}");
    // Jitter reorders readings of a vehicle too; harsh brakes now and then.
    assert!(share(f.out_of_order_per_vehicle) > 0.02, "{summary}");
    assert!((0.001..0.01).contains(&share(f.harsh_brakes)), "{summary}");
    // Now and then a claim-free policy is replaced: deleted, and a new one created.
    let count = |s: S, op: &str| f.ops.get(&(s, op.to_string())).copied().unwrap_or(0);
    assert!(count(S::Policy, "d") > 0, "{:?}", f.ops);
    assert_eq!(count(S::Policy, "c"), count(S::Policy, "d"), "{:?}", f.ops);
    // About one reading per vehicle and second.
    let seconds = (f.max_event_time - START_TS_MS) / 1000;
    let per_second = f.readings as f64 / seconds as f64 / c.vehicles as f64;
    assert!((0.95..1.05).contains(&per_second), "{per_second}");
}

/// Policies and claims: snapshot, updates, deletes, out-of-order updates; claims reference
/// policies seen before them, of the same vehicle, at a time the vehicle had readings; the
/// rule cases (over the limit, soon after the start, speed far off, severity mismatch)
/// occur.
#[test]
fn streams_are_consistent() {
    let c = TelematicsGenConfig {
        claim_pct: 0.003,
        ..cfg(40, 150_000)
    };
    let world = world_lines(&c);
    let f = facts(&world);
    // policy_id → (vehicle, limit, start, start + 30 d) as last delivered, and deleted ids.
    let mut policies: HashMap<i64, (i64, i64, i64, i64)> = HashMap::new();
    let mut policy_deleted: HashSet<i64> = HashSet::new();
    let mut coverage_changes = 0;
    let mut coverage_of: HashMap<i64, String> = HashMap::new();
    let mut earned_growth = 0;
    let mut earned_of: HashMap<i64, i64> = HashMap::new();
    // claim_id → statuses in LSN order.
    let mut claim_lines: BTreeMap<i64, Vec<(i64, Value)>> = BTreeMap::new();
    let (mut over_limit, mut early, mut speed_off, mut severity_off) = (0, 0, 0, 0);
    let mut claim_lsn_inversions = 0;
    for (s, l) in &world {
        let v = json(l);
        let r = row(&v);
        let lsn = int(&v["source"], "lsn");
        match s {
            S::Reading => {}
            S::Policy => {
                let id = int(r, "policy_id");
                let start = int(r, "start_time");
                assert!(r.get("start_time_plus_30d").is_none(), "{r}");
                assert!(start <= int(&v["source"], "ts_ms"));
                let earned = int(r, "earned_premium_cents");
                let annual = int(r, "annual_premium_cents");
                assert!((0..=annual).contains(&earned), "{r}");
                let region = r["region"].as_str().unwrap();
                assert!(REGIONS.iter().any(|(n, _, _)| *n == region), "{region}");
                let coverage = r["coverage"].as_str().unwrap().to_string();
                assert!(COVERAGES.contains(&coverage.as_str()), "{coverage}");
                if v["op"] == "d" {
                    policy_deleted.insert(id);
                    continue;
                }
                if let Some(old) = coverage_of.insert(id, coverage.clone()) {
                    if old != coverage {
                        coverage_changes += 1;
                    }
                }
                if earned_of.insert(id, earned).is_some_and(|old| old < earned) {
                    earned_growth += 1;
                }
                let vehicle = int(r, "vehicle_id");
                policies.insert(
                    id,
                    (
                        vehicle,
                        int(r, "coverage_limit_cents"),
                        start,
                        start + 30 * DAY_MS,
                    ),
                );
            }
            S::Claim => {
                let id = int(r, "claim_id");
                let policy = int(r, "policy_id");
                let &(vehicle, limit, start, plus_30d) = policies
                    .get(&policy)
                    .unwrap_or_else(|| panic!("claim {id} of policy {policy}, not seen yet"));
                assert!(!policy_deleted.contains(&policy), "claim {id}");
                assert_eq!(int(r, "vehicle_id"), vehicle);
                let incident = int(r, "incident_time");
                assert!(incident >= start);
                // Filed 1–10 minutes after the incident.
                let filed_after = int(&v["source"], "ts_ms") - incident;
                assert!(filed_after >= 60_000, "{filed_after}");
                let amount = int(r, "claim_amount_cents");
                let paid = int(r, "paid_cents");
                assert!((0..=amount).contains(&paid));
                assert!(INCIDENT_TYPES.contains(&r["incident_type"].as_str().unwrap()));
                let severity = r["damage_severity"].as_str().unwrap();
                assert!(SEVERITIES.contains(&severity));
                if !claim_lines.contains_key(&id) {
                    over_limit += (amount > limit) as u32;
                    early += (incident < plus_30d) as u32;
                    severity_off += (severity == "minor" && amount > 500_000) as u32;
                    // The vehicle had a reading at the incident (the readings up to a
                    // quarter of an hour before the world's end are all delivered).
                    if incident < f.max_event_time - 16 * 60_000 {
                        let speed = f.speed_at.get(&(vehicle, incident)).unwrap_or_else(|| {
                            panic!("claim {id}: no reading of vehicle {vehicle} at {incident}")
                        });
                        let reported = float(r, "reported_speed_kmh");
                        // The reading shows the speed after the impact: a collision brakes
                        // by at most 9 m/s² for about a second (32.4 km/h).
                        if (reported - speed).abs() > 45.0 {
                            speed_off += 1;
                        }
                    }
                }
                let lines = claim_lines.entry(id).or_default();
                if lines.last().is_some_and(|(last, _)| *last > lsn) {
                    claim_lsn_inversions += 1;
                }
                lines.push((lsn, v.clone()));
            }
        }
    }
    let count = |s: S, op: &str| f.ops.get(&(s, op.to_string())).copied().unwrap_or(0);
    let summary = format!(
        "ops {:?}, inversions {:?}, claims {}, over limit {over_limit}, early {early}, speed \
         off {speed_off}, severity off {severity_off}, coverage changes {coverage_changes}, \
         earned growth {earned_growth}, statuses {:?}, updates of a claim delivered after a \
         later one {claim_lsn_inversions}",
        f.ops,
        f.lsn_inversions,
        claim_lines.len(),
        f.statuses
    );
    assert_eq!(count(S::Policy, "r"), c.vehicles, "{summary}");
    assert!(count(S::Policy, "u") > 300, "{summary}");
    // (Policies with claims are never replaced: see the shares test for replacements.)
    assert_eq!(count(S::Policy, "c"), count(S::Policy, "d"), "{summary}");
    assert!(count(S::Claim, "c") > 100, "{summary}");
    assert!(count(S::Claim, "u") > count(S::Claim, "c"), "{summary}");
    assert!(count(S::Claim, "d") > 0, "{summary}");
    assert!(f.lsn_inversions[&S::Policy] > 5, "{summary}");
    assert!(f.lsn_inversions[&S::Claim] > 0, "{summary}");
    assert!(
        over_limit > 0 && early > 0 && speed_off > 0 && severity_off > 0,
        "{summary}"
    );
    assert!(coverage_changes > 0 && earned_growth > 100, "{summary}");
    let want: BTreeSet<String> = STATUSES.iter().map(|s| s.to_string()).collect();
    assert_eq!(f.statuses, want, "{summary}");

    // Every vehicle has one policy at the end (APPLY CHANGES by LSN).
    let policy_lines: Vec<&[u8]> = world
        .iter()
        .filter(|(s, _)| *s == S::Policy)
        .map(|(_, l)| l.as_slice())
        .collect();
    let st = crate::generator::reference_apply(policy_lines, &["policy_id"], "__lsn");
    assert!(st.bad.is_empty());
    let vehicles: Vec<i64> = st
        .rows
        .values()
        .map(|r| r["vehicle_id"].as_i64().unwrap())
        .collect();
    let distinct: BTreeSet<i64> = vehicles.iter().copied().collect();
    assert_eq!(vehicles.len(), distinct.len());
    assert_eq!(distinct.len() as u64, c.vehicles);

    // Claim life cycles, in LSN order: open…, then approved → paid or denied.
    for (id, lines) in &mut claim_lines {
        lines.sort_by_key(|(lsn, _)| *lsn);
        let statuses: Vec<&str> = lines
            .iter()
            .filter(|(_, v)| v["op"] != "d")
            .map(|(_, v)| v["after"]["status"].as_str().unwrap())
            .collect();
        assert_eq!(lines[0].1["op"], "c", "claim {id}");
        let mut rest = statuses.iter().skip_while(|s| **s == "open");
        match rest.next() {
            None => {}
            Some(&"denied") => assert!(rest.next().is_none(), "claim {id}: {statuses:?}"),
            Some(&"approved") => {
                assert!(matches!(rest.next(), None | Some(&"paid")) && rest.next().is_none())
            }
            other => panic!("claim {id}: {other:?} in {statuses:?}"),
        }
        let mut expense = 0;
        for (_, v) in lines.iter() {
            let r = row(v);
            let e = int(r, "adjustment_expense_cents");
            assert!(e >= expense, "claim {id}: expenses only grow");
            expense = e;
            assert_eq!(
                int(r, "paid_cents") > 0,
                r["status"] == "paid",
                "claim {id}"
            );
        }
    }
}

/// The declared types of a stream's columns (timestamps as `timestamp`).
fn declared(s: TelematicsStream) -> Vec<(String, ColumnType)> {
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
            let c = TelematicsGenConfig {
                with_schema,
                claim_pct: 0.01,
                ..cfg(10, 8_000)
            };
            let lines = stream_lines(&c, s);
            assert!(lines.len() > 20, "{s}: {}", lines.len());
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
                assert_eq!(op == Op::Delete, v["op"] == "d");
                assert!(!row[0].is_null(), "{s}: null key");
                for (d, col) in row.iter().zip(schema.data()) {
                    let ok = match (d, col.ty) {
                        (Datum::Str(_), ColumnType::String) => true,
                        (Datum::Int(_), ColumnType::Int64) => true,
                        (Datum::Float(_), ColumnType::Float64) => true,
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
            format!("telematics.{}.{}.Envelope", s.system(), s.name())
        );
    }
}

/// Rows carry exactly their stream's columns, and string values need no escaping.
#[test]
fn rows_have_the_stream_columns() {
    let c = TelematicsGenConfig {
        claim_pct: 0.01,
        ..cfg(10, 8_000)
    };
    let mut seen = BTreeSet::new();
    for (s, l) in &world_lines(&c) {
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

#[test]
fn fixed_point_rendering() {
    let text = |v: i64, d: u32| {
        let mut out = Vec::new();
        push_fixed(&mut out, v, d);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(text(6340, 2), "63.40");
    assert_eq!(text(-450, 2), "-4.50");
    assert_eq!(text(-7, 2), "-0.07");
    assert_eq!(text(0, 2), "0.00");
    assert_eq!(text(48_137_154, 6), "48.137154");
    assert_eq!(text(9_000_001, 6), "9.000001");
}

#[test]
fn config_deserializes_partially_and_names_streams() {
    let c: TelematicsGenConfig = serde_json::from_str(r#"{"seed":7,"stream":"claim"}"#).unwrap();
    assert_eq!(c.seed, 7);
    assert_eq!(c.stream, S::Claim);
    assert_eq!(c.events, TelematicsGenConfig::default().events);
    for s in S::ALL {
        assert_eq!(S::parse(s.name()), Some(s));
        assert_eq!(S::ALL[s.index()], s);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text, format!("\"{}\"", s.name()));
    }
    assert_eq!(S::parse("readings"), None);
    assert_eq!(S::names(), "reading, policy, claim");
    assert_eq!(TelematicsGenConfig::scaled(40).vehicles, 40);
}

#[test]
fn generator_config_variant() {
    let c = TelematicsGenConfig {
        stream: S::Policy,
        ..cfg(10, 3_000)
    };
    let g = crate::generator::GeneratorConfig::Telematics(c.clone());
    assert_eq!(g.workload(), "telematics");
    assert_eq!(g.total_lines(), c.total_lines());
    let mut gen = g.build();
    let mut lines = Vec::new();
    let mut line = Vec::new();
    while gen.next_line(&mut line) {
        assert!(!gen.in_transaction());
        lines.push(std::mem::take(&mut line));
    }
    assert_eq!(gen.position(), c.total_lines());
    assert_eq!(lines, stream_lines(&c, S::Policy));
}

#[test]
fn write_file_writes_the_stream() {
    let c = TelematicsGenConfig {
        stream: S::Reading,
        ..cfg(5, 2_000)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.jsonl");
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
