//! The telematics pipeline (`pipelines/telematics/`: its pipeline file and every view's SQL
//! file) against an independent oracle.
//!
//! The three generator sources of the pipeline file (scaled down, with more claims) produce
//! the three streams of one telematics world; each stream is cut into epochs (growing
//! prefixes). At every cut a plain APPLY CHANGES reference ([`reference_apply`]: highest
//! `__lsn` per key wins, deletes leave tombstones) gives each input table's SCD1 state. The
//! change from one cut to the next is fed into differential, where the views are planned and
//! rendered in file order at 1 and 2 workers; at every epoch each view must equal what
//! SQLite computes with the same SQL files (as `CREATE VIEW`s) over the same table states.
//!
//! Two parts:
//!
//! - **Now**: `loss_ratio` and `incidents_by_severity`, which read only `policies` and
//!   `claims` (generated world, and a hand-made scenario with exact values: premiums are not
//!   multiplied by the number of claims, a coverage change moves a policy's claims).
//! - **Needs windows (issue 8)**, `#[ignore]`d until the engine has watermarks, `TUMBLE` in
//!   `GROUP BY` (with `window_start` / `window_end` and an appended `window_closed`) and the
//!   scalar `TUMBLE_START`: `vehicle_windows` and `claims_scored`, with the late readings
//!   excluded. The oracle's lateness rule is [`late_at_cut`]; SQLite gets hand-written
//!   equivalents of the window syntax ([`SQLITE_VEHICLE_WINDOWS`], [`sqlite_claims_scored`]).
//!
//! The pipeline file declares `watermark = { … }` on `readings`; until the pipeline config
//! knows that key, [`load`] parses the file without that line (and says so).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::types::Value;
use serde_json::Value as Json;
use tidewater_connectors::generator::{
    reference_apply, GeneratorConfig, TelematicsGenConfig, TelematicsStream,
};
use tidewater_connectors::types::{Column, ColumnType, Datum, Row};

use super::marketing_tests::{
    first_difference, int, load_tables, mk, oracle, query, s, same_rows, sqlite, text, typed,
    view_files, TableStates,
};
use super::view_tests::{run_models_with, sorted, states, to_value, Catalog, Epoch};
use crate::config::PipelineConfig;

/// The pipeline's directory.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/telematics");

/// The views that need nothing new.
const PLAIN_VIEWS: [&str; 2] = ["loss_ratio", "incidents_by_severity"];
/// The views that need windows (issue 8).
const WINDOWED_VIEWS: [&str; 2] = ["vehicle_windows", "claims_scored"];

/// A table of the pipeline file, as the oracle needs it.
struct Table {
    name: String,
    stream: TelematicsStream,
    keys: Vec<String>,
    sequence_by: String,
    /// The generator of its source.
    generator: GeneratorConfig,
}

/// The pipeline file: its tables with their columns (the engine's table layout), its views
/// (name, SQL) in order, and the watermark of `readings` (column, allowed lateness µs).
struct Pipeline {
    tables: Vec<Table>,
    catalog: Catalog,
    views: Vec<(String, String)>,
    watermark: (String, i64),
}

/// Reads `pipelines/telematics/`, with the world of its sources scaled to `vehicles`
/// vehicles, `events` world lines and `claim_pct` (claims per reading; the pipeline's
/// default is too rare for a small world).
fn load(vehicles: u64, events: u64, claim_pct: f64) -> Pipeline {
    let text = std::fs::read_to_string(format!("{DIR}/telematics.toml")).unwrap();
    let raw: toml::Value = toml::from_str(&text).unwrap();
    let mut cfg = PipelineConfig::parse(&text).unwrap();
    // The [[view]] sections are read below; the rest of the file must be valid as it is.
    cfg.view.clear();
    cfg.validate().unwrap();
    for s in &mut cfg.source {
        s.keys = Some(vehicles);
        s.events = Some(events);
    }
    let generator_of = |t: &crate::config::TableConfig| match cfg.source_of(t).generator() {
        GeneratorConfig::Telematics(g) => {
            GeneratorConfig::Telematics(TelematicsGenConfig { claim_pct, ..g })
        }
        other => panic!("table `{}` reads a {} generator", t.name, other.workload()),
    };
    let worlds: BTreeSet<String> = cfg
        .table
        .iter()
        .map(|t| match generator_of(t) {
            GeneratorConfig::Telematics(g) => format!(
                "{:?}",
                TelematicsGenConfig {
                    stream: TelematicsStream::Reading,
                    ..g
                }
            ),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        worlds.len(),
        1,
        "the sources describe different worlds: {worlds:?}"
    );

    let mut tables = Vec::new();
    let mut catalog = Catalog::new();
    for (t, (plan, schema)) in cfg.table.iter().zip(crate::run::plan_tables(&cfg).unwrap()) {
        let generator = generator_of(t);
        let GeneratorConfig::Telematics(g) = &generator else {
            unreachable!()
        };
        // The declared types make every timestamp a timestamp; the table stores the data
        // columns and the sequence column.
        let mut want: Vec<Column> = g
            .stream
            .columns()
            .iter()
            .map(|(n, ty)| Column {
                name: n.to_string(),
                ty: ColumnType::parse(ty).unwrap(),
            })
            .collect();
        want.push(Column {
            name: "__lsn".into(),
            ty: ColumnType::Int64,
        });
        let columns = plan.delta_columns(&plan.table_columns(&schema));
        assert_eq!(columns, want, "table `{}`", t.name);
        assert_eq!((t.scd, t.apply_as_deletes.as_deref()), (1, None));
        catalog.insert(t.name.clone(), columns);
        tables.push(Table {
            name: t.name.clone(),
            stream: g.stream,
            keys: t.keys.clone(),
            sequence_by: t.sequence_by.clone(),
            generator,
        });
    }

    let watermarks: Vec<(String, i64)> = raw["table"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            let w = t.get("watermark")?;
            assert_eq!(t["name"].as_str(), Some("readings"));
            let lateness = match w["allowed_lateness"].as_str() {
                Some("2m") => 120_000_000,
                other => panic!("the oracle does not know allowed_lateness = {other:?}"),
            };
            Some((w["column"].as_str().unwrap().to_string(), lateness))
        })
        .collect();
    assert_eq!(watermarks.len(), 1, "one watermark, on readings");

    let views = view_files(DIR, &raw);
    Pipeline {
        tables,
        catalog,
        views,
        watermark: watermarks.into_iter().next().unwrap(),
    }
}

impl Pipeline {
    /// The views named `names`, in file order.
    fn views(&self, names: &[&str]) -> Vec<(String, String)> {
        let out: Vec<(String, String)> = self
            .views
            .iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .cloned()
            .collect();
        assert_eq!(out.len(), names.len(), "{names:?}");
        out
    }

    /// The tables named `names`.
    fn catalog_of(&self, names: &[&str]) -> Catalog {
        names
            .iter()
            .map(|n| (n.to_string(), self.catalog[*n].clone()))
            .collect()
    }

    fn table(&self, stream: TelematicsStream) -> &Table {
        self.tables.iter().find(|t| t.stream == stream).unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// The reference: table states at each cut.

/// Every line of the stream of generator `generator` (of table `name`).
pub(super) fn lines_of(name: &str, generator: &GeneratorConfig) -> Vec<Vec<u8>> {
    let mut gen = generator.build();
    let mut lines = Vec::new();
    let mut line = Vec::new();
    while gen.next_line(&mut line) {
        lines.push(std::mem::take(&mut line));
    }
    assert_eq!(lines.len() as u64, generator.total_lines());
    assert!(lines.len() > 20, "{name}: {} lines", lines.len());
    lines
}

/// The number of lines of a stream of `len` lines in each cut (`cuts`: fractions).
pub(super) fn cut_sizes(len: usize, cuts: &[f64]) -> Vec<usize> {
    cuts.iter()
        .map(|f| ((len as f64 * f).ceil() as usize).min(len))
        .collect()
}

/// A CDC table as the reference applies it: name, key columns, sequence column.
pub(super) struct Applied<'a> {
    pub name: &'a str,
    pub keys: &'a [String],
    pub sequence_by: &'a str,
}

/// The SCD1 state of `t` after `lines`: key → row.
fn table_state(t: &Applied, columns: &[Column], lines: &[&[u8]]) -> BTreeMap<String, Row> {
    let keys: Vec<&str> = t.keys.iter().map(|k| k.as_str()).collect();
    let st = reference_apply(lines.iter().copied(), &keys, t.sequence_by);
    assert!(st.bad.is_empty(), "{}: {:?}", t.name, st.bad);
    st.rows
        .iter()
        .map(|(k, row)| (k.clone(), typed(columns, row)))
        .collect()
}

/// Adds table `t`'s states at every cut to `by_cut`, and the changes from one cut to the
/// next to `epochs`; `lines_at[e]` are the lines applied by cut `e`.
pub(super) fn add_table(
    t: &Applied,
    columns: &[Column],
    lines_at: &[Vec<&[u8]>],
    by_cut: &mut [TableStates],
    epochs: &mut [Epoch],
) {
    let mut prev: BTreeMap<String, Row> = BTreeMap::new();
    for (e, lines) in lines_at.iter().enumerate() {
        let state = table_state(t, columns, lines);
        let keys: BTreeSet<&String> = prev.keys().chain(state.keys()).collect();
        for k in keys {
            let (old, new) = (prev.get(k), state.get(k));
            if old != new {
                if let Some(r) = old {
                    epochs[e].push((t.name.to_string(), r.clone(), -1));
                }
                if let Some(r) = new {
                    epochs[e].push((t.name.to_string(), r.clone(), 1));
                }
            }
        }
        by_cut[e].insert(t.name.to_string(), state.values().cloned().collect());
        prev = state;
    }
}

impl Table {
    fn applied(&self) -> Applied<'_> {
        Applied {
            name: &self.name,
            keys: &self.keys,
            sequence_by: &self.sequence_by,
        }
    }
}

/// The states and epochs of the CDC tables `policies` and `claims` (no watermark).
fn cdc_epochs(p: &Pipeline, cuts: &[f64]) -> (Vec<TableStates>, Vec<Epoch>) {
    let mut by_cut: Vec<TableStates> = vec![TableStates::new(); cuts.len()];
    let mut epochs: Vec<Epoch> = vec![Vec::new(); cuts.len()];
    for stream in [TelematicsStream::Policy, TelematicsStream::Claim] {
        let t = p.table(stream);
        let lines = lines_of(&t.name, &t.generator);
        let lines_at: Vec<Vec<&[u8]>> = cut_sizes(lines.len(), cuts)
            .into_iter()
            .map(|n| lines[..n].iter().map(|l| l.as_slice()).collect())
            .collect();
        add_table(
            &t.applied(),
            &p.catalog[&t.name],
            &lines_at,
            &mut by_cut,
            &mut epochs,
        );
    }
    (by_cut, epochs)
}

// ---------------------------------------------------------------------------------------
// Differential against SQLite.

/// Runs `views` on differential at 1 and 2 workers and compares each with SQLite (`want`:
/// view → epoch → sorted rows) at every epoch.
pub(super) fn compare(
    tables: &Catalog,
    views: &[(String, String)],
    epochs: &[Epoch],
    watermarks: &[i64],
    want: &BTreeMap<String, Vec<Vec<Vec<Value>>>>,
) {
    for workers in [1, 2] {
        let got = run_models_with(tables, views, epochs, workers, watermarks);
        for (name, _) in views {
            let ours = states(&got[name], epochs.len());
            for (e, rows) in ours.iter().enumerate() {
                let ours = sorted(
                    rows.iter()
                        .map(|r| r.iter().map(to_value).collect())
                        .collect(),
                );
                let w = &want[name][e];
                assert!(
                    same_rows(&ours, w),
                    "view `{name}`, epoch {e}, {workers} worker(s): {}",
                    first_difference(&ours, w)
                );
            }
        }
    }
}

fn real(v: &Value) -> f64 {
    match v {
        Value::Real(f) => *f,
        other => panic!("not a real: {other:?}"),
    }
}

/// `loss_ratio` and `incidents_by_severity` over the generated world, cut into 7 epochs.
#[test]
fn telematics_loss_ratio_and_incidents_match_sqlite_at_every_epoch() {
    let p = load(60, 60_000, 0.004);
    assert_eq!(p.tables.len(), 3);
    let streams: BTreeSet<TelematicsStream> = p.tables.iter().map(|t| t.stream).collect();
    assert_eq!(streams.len(), 3, "one table per stream");
    assert_eq!(p.watermark, ("event_time".to_string(), 120_000_000));
    let cuts = [0.05, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0];
    let (by_cut, epochs) = cdc_epochs(&p, &cuts);
    let tables = p.catalog_of(&["policies", "claims"]);
    let views = p.views(&PLAIN_VIEWS);
    let want = oracle(&tables, &views, &by_cut);
    compare(&tables, &views, &epochs, &[], &want);

    // Not vacuous: every region × coverage has policies, claims are paid, and the views
    // change from epoch to epoch.
    let last = cuts.len() - 1;
    let ratio = &want["loss_ratio"];
    assert_eq!(ratio[last].len(), 15, "{:?}", ratio[last]);
    let with_claims = ratio[last].iter().filter(|r| int(&r[3]) > 0).count();
    assert!(with_claims >= 10, "{with_claims} groups with claims");
    let paid: i64 = ratio[last].iter().map(|r| int(&r[5])).sum();
    assert!(paid > 0);
    let changed = (1..cuts.len())
        .filter(|e| ratio[*e] != ratio[e - 1])
        .count();
    assert_eq!(changed, cuts.len() - 1, "loss_ratio changes every epoch");
    let incidents = &want["incidents_by_severity"];
    assert!(incidents[last].len() >= 8, "{:?}", incidents[last]);
    let claims: i64 = incidents[last].iter().map(|r| int(&r[2])).sum();
    assert!(claims > 100, "{claims} claims");
    assert_eq!(
        claims,
        by_cut[last]["claims"].len() as i64,
        "every claim is counted once"
    );
}

/// A row of `policies`.
fn policy(cat: &Catalog, id: i64, region: &str, coverage: &str, earned: i64) -> Row {
    mk(
        cat,
        "policies",
        &[
            ("policy_id", Datum::Int(id)),
            ("vehicle_id", Datum::Int(id)),
            ("region", s(region)),
            ("coverage", s(coverage)),
            ("coverage_limit_cents", Datum::Int(1_000_000)),
            ("earned_premium_cents", Datum::Int(earned)),
            ("__lsn", Datum::Int(1)),
        ],
    )
}

/// A row of `claims`.
fn claim(cat: &Catalog, id: i64, policy: i64, kind: &str, severity: &str, paid: i64) -> Row {
    mk(
        cat,
        "claims",
        &[
            ("claim_id", Datum::Int(id)),
            ("policy_id", Datum::Int(policy)),
            ("vehicle_id", Datum::Int(policy)),
            ("claim_amount_cents", Datum::Int(500)),
            ("incident_type", s(kind)),
            ("damage_severity", s(severity)),
            ("paid_cents", Datum::Int(paid)),
            ("adjustment_expense_cents", Datum::Int(10)),
            ("__lsn", Datum::Int(1)),
        ],
    )
}

/// Premiums per policy, losses per claim: a policy with three claims counts its premium
/// once; a coverage change moves the policy with its claims; a deleted claim leaves.
#[test]
fn telematics_loss_ratio_counts_premiums_once() {
    let p = load(60, 60_000, 0.004);
    let cat = p.catalog_of(&["policies", "claims"]);
    let ins = |t: &str, r: Row| (t.to_string(), r, 1);
    let del = |t: &str, r: Row| (t.to_string(), r, -1);
    // Epoch 0: policies 1 and 2 in north/collision (earned 1000 each), policy 3 in
    // south/liability (earned 500). Policy 1 has three claims paid 100 each (+ 10 expenses
    // each); policy 3 one claim, open.
    let epoch0: Epoch = vec![
        ins("policies", policy(&cat, 1, "north", "collision", 1000)),
        ins("policies", policy(&cat, 2, "north", "collision", 1000)),
        ins("policies", policy(&cat, 3, "south", "liability", 500)),
        ins("claims", claim(&cat, 11, 1, "collision", "minor", 100)),
        ins("claims", claim(&cat, 12, 1, "glass", "minor", 100)),
        ins("claims", claim(&cat, 13, 1, "collision", "minor", 100)),
        ins("claims", claim(&cat, 31, 3, "theft", "total_loss", 0)),
    ];
    // Epoch 1: policy 1 moves to comprehensive, with its earned premium grown to 1200.
    let epoch1: Epoch = vec![
        del("policies", policy(&cat, 1, "north", "collision", 1000)),
        ins("policies", policy(&cat, 1, "north", "comprehensive", 1200)),
    ];
    // Epoch 2: claim 13 is withdrawn; claim 31 is paid 400.
    let epoch2: Epoch = vec![
        del("claims", claim(&cat, 13, 1, "collision", "minor", 100)),
        del("claims", claim(&cat, 31, 3, "theft", "total_loss", 0)),
        ins("claims", claim(&cat, 31, 3, "theft", "total_loss", 400)),
    ];
    let epochs = vec![epoch0, epoch1, epoch2];
    let mut by_cut = Vec::new();
    let mut state = TableStates::new();
    for e in &epochs {
        for (t, r, d) in e {
            let rows = state.entry(t.clone()).or_default();
            if *d > 0 {
                rows.push(r.clone());
            } else {
                let i = rows.iter().position(|x| x == r).unwrap();
                rows.remove(i);
            }
        }
        by_cut.push(state.clone());
    }
    let views = p.views(&PLAIN_VIEWS);
    let want = oracle(&cat, &views, &by_cut);
    compare(&cat, &views, &epochs, &[], &want);

    // region, coverage, policies, claims, earned, paid, expenses, loss_ratio.
    let row = |region: &str, coverage: &str, n: [i64; 5], ratio: f64| {
        let mut r = vec![text(region), text(coverage)];
        r.extend(n.iter().map(|i| Value::Integer(*i)));
        r.push(Value::Real(ratio));
        r
    };
    let want0 = vec![
        row("north", "collision", [2, 3, 2000, 300, 30], 330.0 / 2000.0),
        row("south", "liability", [1, 1, 500, 0, 10], 10.0 / 500.0),
    ];
    let want1 = vec![
        row("north", "collision", [1, 0, 1000, 0, 0], 0.0),
        row(
            "north",
            "comprehensive",
            [1, 3, 1200, 300, 30],
            330.0 / 1200.0,
        ),
        row("south", "liability", [1, 1, 500, 0, 10], 10.0 / 500.0),
    ];
    let want2 = vec![
        row("north", "collision", [1, 0, 1000, 0, 0], 0.0),
        row(
            "north",
            "comprehensive",
            [1, 2, 1200, 200, 20],
            220.0 / 1200.0,
        ),
        row("south", "liability", [1, 1, 500, 400, 10], 410.0 / 500.0),
    ];
    for (e, w) in [want0, want1, want2].iter().enumerate() {
        let got = &want["loss_ratio"][e];
        assert!(same_rows(got, w), "epoch {e}: {got:?}");
    }
    // incident_type, damage_severity, claims, claim_amount_cents.
    let incidents = |e: usize| -> Vec<(String, String, i64)> {
        want["incidents_by_severity"][e]
            .iter()
            .map(|r| {
                let t = |v: &Value| match v {
                    Value::Text(s) => s.clone(),
                    other => panic!("{other:?}"),
                };
                (t(&r[0]), t(&r[1]), int(&r[2]))
            })
            .collect()
    };
    let owned = |v: &[(&str, &str, i64)]| -> Vec<(String, String, i64)> {
        v.iter()
            .map(|(a, b, n)| (a.to_string(), b.to_string(), *n))
            .collect()
    };
    assert_eq!(
        incidents(0),
        owned(&[
            ("collision", "minor", 2),
            ("glass", "minor", 1),
            ("theft", "total_loss", 1)
        ])
    );
    assert_eq!(
        incidents(2),
        owned(&[
            ("collision", "minor", 1),
            ("glass", "minor", 1),
            ("theft", "total_loss", 1)
        ])
    );
    assert_eq!(real(&want["loss_ratio"][2][2][7]), 410.0 / 500.0);
}

// ---------------------------------------------------------------------------------------
// Windowed: vehicle_windows and claims_scored.

/// Five minutes in µs (timestamps are µs in rows and in SQLite).
const WINDOW_US: i64 = 300_000_000;

/// `vehicle_windows.sql` for SQLite, by hand: the window of a reading is its event time
/// floored to 5 minutes since the Unix epoch; `window_closed` (appended by the engine) is
/// true once the watermark (the one row of `_watermark`) has reached `window_end`.
const SQLITE_VEHICLE_WINDOWS: &str = "
SELECT
    vehicle_id,
    (event_time / 300000000) * 300000000 AS window_start,
    (event_time / 300000000) * 300000000 + 300000000 AS window_end,
    COUNT(*) AS readings,
    AVG(speed_kmh) AS avg_speed_kmh,
    MAX(speed_kmh) AS max_speed_kmh,
    SUM(CASE WHEN accel_ms2 < -4.0 THEN 1 ELSE 0 END) AS harsh_brakes,
    SUM(distance_m) AS distance_m,
    (event_time / 300000000) * 300000000 + 300000000 <= (SELECT us FROM _watermark)
        AS window_closed
FROM readings
GROUP BY vehicle_id, event_time / 300000000";

/// `claims_scored.sql` for SQLite: `TUMBLE_START(ts, INTERVAL '5' MINUTE)` and
/// `ts + INTERVAL '30' DAY` as integer arithmetic on µs.
fn sqlite_claims_scored(sql: &str) -> String {
    let tumble = "TUMBLE_START(c.incident_time, INTERVAL '5' MINUTE)";
    let plus_30d = "p.start_time + INTERVAL '30' DAY";
    assert_eq!(sql.matches(tumble).count(), 1, "claims_scored.sql changed");
    assert_eq!(
        sql.matches(plus_30d).count(),
        1,
        "claims_scored.sql changed"
    );
    sql.replace(tumble, "((c.incident_time / 300000000) * 300000000)")
        .replace(plus_30d, "(p.start_time + 2592000000000)")
}

/// The oracle's reading of issue 8's lateness rule: the watermark after epoch `e` is the
/// maximum event time of the readings delivered in epochs `..= e` minus the allowed
/// lateness; a reading delivered in epoch `e` is late (goes to `_late`, not to `readings`)
/// when its event time is below the watermark after epoch `e - 1` (its watermark at
/// arrival; no watermark before the first epoch). Returns, per reading line, whether it is
/// late, and the watermark after each cut.
fn late_at_cut(event_times: &[i64], sizes: &[usize], lateness: i64) -> (Vec<bool>, Vec<i64>) {
    let mut late = vec![false; event_times.len()];
    let mut watermarks = Vec::new();
    let (mut from, mut max_seen) = (0, i64::MIN);
    for &to in sizes {
        let watermark = max_seen.saturating_sub(lateness);
        for i in from..to {
            late[i] = event_times[i] < watermark;
        }
        max_seen = event_times[from..to]
            .iter()
            .copied()
            .fold(max_seen, i64::max);
        watermarks.push(max_seen.saturating_sub(lateness));
        from = to;
    }
    (late, watermarks)
}

/// Every view over the generated world, readings included, late readings excluded.
#[test]
fn telematics_windowed_views_match_sqlite_at_every_epoch() {
    let p = load(30, 60_000, 0.004);
    let cuts = [0.05, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0];
    let (mut by_cut, mut epochs) = cdc_epochs(&p, &cuts);

    // Readings: the lines of each cut that are not late.
    let t = p.table(TelematicsStream::Reading);
    let lines = lines_of(&t.name, &t.generator);
    let (column, lateness) = &p.watermark;
    let event_times: Vec<i64> = lines
        .iter()
        .map(|l| {
            let v: Json = serde_json::from_slice(l).unwrap();
            v["after"][column.as_str()].as_i64().unwrap() * 1000
        })
        .collect();
    let sizes = cut_sizes(lines.len(), &cuts);
    let (late, watermarks) = late_at_cut(&event_times, &sizes, *lateness);
    let lines_at: Vec<Vec<&[u8]>> = sizes
        .iter()
        .map(|&n| {
            (0..n)
                .filter(|i| !late[*i])
                .map(|i| lines[i].as_slice())
                .collect()
        })
        .collect();
    add_table(
        &t.applied(),
        &p.catalog[&t.name],
        &lines_at,
        &mut by_cut,
        &mut epochs,
    );
    let late_count = late.iter().filter(|l| **l).count();
    // The generator's very late readings (~0.5 %) are late at any cut; within-lateness
    // readings are not, with epochs this long.
    assert!(
        late_count > lines.len() / 400 && late_count < lines.len() / 100,
        "{late_count} late readings of {}",
        lines.len()
    );

    // SQLite: the tables, a one-row `_watermark`, hand-written window SQL.
    let tables = p.catalog_of(&["readings", "policies", "claims"]);
    let mut oracle_views: Vec<(String, String)> = Vec::new();
    for (name, sql) in &p.views {
        let sql = match name.as_str() {
            "vehicle_windows" => SQLITE_VEHICLE_WINDOWS.to_string(),
            "claims_scored" => sqlite_claims_scored(sql),
            _ => sql.clone(),
        };
        oracle_views.push((name.clone(), sql));
    }
    let db = sqlite(&tables, &oracle_views);
    db.execute("CREATE TABLE _watermark (us INTEGER)", [])
        .unwrap();
    db.execute("INSERT INTO _watermark VALUES (NULL)", [])
        .unwrap();
    let mut want: BTreeMap<String, Vec<Vec<Vec<Value>>>> = BTreeMap::new();
    for (state, watermark) in by_cut.iter().zip(&watermarks) {
        load_tables(&db, &tables, state);
        db.execute("UPDATE _watermark SET us = ?", [watermark])
            .unwrap();
        for (name, _) in &oracle_views {
            want.entry(name.clone())
                .or_default()
                .push(query(&db, &format!("SELECT * FROM \"{name}\"")));
        }
    }

    // Not vacuous: windows of every vehicle, open and closed ones, claims with and without
    // telematics, every next best action.
    let last = cuts.len() - 1;
    let windows = &want["vehicle_windows"][last];
    assert!(windows.len() > 30 * 3, "{} windows", windows.len());
    let closed = windows.iter().filter(|r| int(&r[8]) == 1).count();
    assert!(closed > 0 && closed < windows.len(), "{closed} closed");
    let scored = &want["claims_scored"][last];
    assert!(scored.len() > 50, "{} claims", scored.len());
    let actions: BTreeSet<String> = scored
        .iter()
        .map(|r| match &r[21] {
            Value::Text(s) => s.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(actions.len(), 3, "{actions:?}");

    // Differential, with the oracle's watermarks (µs, one per epoch) closing the windows.
    let mut all = PLAIN_VIEWS.to_vec();
    all.extend(WINDOWED_VIEWS);
    compare(&tables, &p.views(&all), &epochs, &watermarks, &want);
}

#[test]
fn lateness_rule_of_the_oracle() {
    // Cut 0: max 100 → watermark 90; cut 1: 85 is late (< 90), 95 is not; max 120.
    let times = [50, 100, 85, 95, 120, 111, 109];
    let (late, watermarks) = late_at_cut(&times, &[2, 5, 7], 10);
    assert_eq!(late, [false, false, true, false, false, false, true]);
    assert_eq!(watermarks, [90, 110, 110]);
    assert_eq!(WINDOW_US, 5 * 60 * 1_000_000);
}
