//! The offers pipeline (`pipelines/offers/`: its pipeline file and every view's SQL file)
//! against an independent oracle.
//!
//! The three generator sources of the pipeline file (scaled down) produce the three streams
//! of one bank world; each stream is cut into epochs (growing prefixes). At every cut the
//! plain APPLY CHANGES reference gives each input table's SCD1 state (`customer_patterns` by
//! `datetime_updated`, so stale late changes are ignored). The changes from cut to cut are fed
//! into differential, where the views are planned and rendered in file order at 1 and 2
//! workers; at every epoch each view must equal what SQLite computes with the same SQL files
//! over the same table states. SQLite has no `DATE_TRUNC` / `DATE_DIFF`: the oracle gets
//! hand-written equivalents with SQLite's own date functions ([`sqlite_sql`]).

use std::collections::BTreeSet;

use rusqlite::types::Value;
use tidewater_connectors::generator::GeneratorConfig;
use tidewater_connectors::types::{Column, Datum, Row};

use super::marketing_tests::{int, mk, oracle, s, same_rows, view_files, TableStates};
use super::telematics_tests::{add_table, compare, cut_sizes, lines_of, Applied};
use super::view_tests::{Catalog, Epoch};
use crate::config::PipelineConfig;

/// The pipeline's directory.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/offers");

/// A table of the pipeline file.
struct Table {
    name: String,
    keys: Vec<String>,
    sequence_by: String,
    generator: GeneratorConfig,
}

struct Pipeline {
    tables: Vec<Table>,
    catalog: Catalog,
    views: Vec<(String, String)>,
}

/// Reads `pipelines/offers/` with its world scaled to `customers` and `events` lines.
fn load(customers: u64, events: u64) -> Pipeline {
    let text = std::fs::read_to_string(format!("{DIR}/offers.toml")).unwrap();
    let raw: toml::Value = toml::from_str(&text).unwrap();
    let mut cfg = PipelineConfig::parse(&text).unwrap();
    cfg.view.clear();
    cfg.validate().unwrap();
    for s in &mut cfg.source {
        s.keys = Some(customers);
        s.events = Some(events);
    }
    let mut tables = Vec::new();
    let mut catalog = Catalog::new();
    for (t, (plan, schema)) in cfg.table.iter().zip(crate::run::plan_tables(&cfg).unwrap()) {
        let generator = cfg.source_of(t).generator();
        let GeneratorConfig::Offers(g) = &generator else {
            panic!(
                "table `{}` reads a {} generator",
                t.name,
                generator.workload()
            );
        };
        // Every column is declared: the table stores them, then the sequence column (when
        // it is not one of them).
        let mut want: Vec<Column> = g
            .stream
            .columns()
            .iter()
            .map(|(n, ty)| Column {
                name: n.to_string(),
                ty: tidewater_connectors::types::ColumnType::parse(ty).unwrap(),
            })
            .collect();
        if t.sequence_by == "__lsn" {
            want.push(Column {
                name: "__lsn".into(),
                ty: tidewater_connectors::types::ColumnType::Int64,
            });
        }
        let columns = plan.delta_columns(&plan.table_columns(&schema));
        assert_eq!(columns, want, "table `{}`", t.name);
        assert_eq!(t.scd, 1);
        catalog.insert(t.name.clone(), columns);
        tables.push(Table {
            name: t.name.clone(),
            keys: t.keys.clone(),
            sequence_by: t.sequence_by.clone(),
            generator,
        });
    }
    let views = view_files(DIR, &raw);
    Pipeline {
        tables,
        catalog,
        views,
    }
}

/// A view's SQL for SQLite: `DATE_DIFF('day', a, b)` and `DATE_TRUNC('month', t)` (timestamps
/// are µs integers in SQLite) written with SQLite's `julianday` / `strftime`.
fn sqlite_sql(name: &str, sql: &str) -> String {
    let replace = |sql: &str, from: &str, to: &str| {
        assert!(
            sql.contains(from),
            "{name}: `{from}` not found (the SQL changed)"
        );
        sql.replace(from, to)
    };
    match name {
        "customer_360" => replace(
            sql,
            "DATE_DIFF('day', c.first_seen, s.last_txn_time)",
            "CAST(julianday(date(s.last_txn_time / 1000000, 'unixepoch')) \
             - julianday(date(c.first_seen / 1000000, 'unixepoch')) AS INTEGER)",
        ),
        "cashback_economics" => replace(
            sql,
            "DATE_TRUNC('month', t.txn_time)",
            "(CAST(strftime('%s', t.txn_time / 1000000, 'unixepoch', 'start of month') \
             AS INTEGER) * 1000000)",
        ),
        _ => sql.to_string(),
    }
}

fn oracle_views(p: &Pipeline) -> Vec<(String, String)> {
    p.views
        .iter()
        .map(|(n, sql)| (n.clone(), sqlite_sql(n, sql)))
        .collect()
}

/// The states and epochs of the three tables at `cuts`.
fn epochs_of(p: &Pipeline, cuts: &[f64]) -> (Vec<TableStates>, Vec<Epoch>) {
    let mut by_cut: Vec<TableStates> = vec![TableStates::new(); cuts.len()];
    let mut epochs: Vec<Epoch> = vec![Vec::new(); cuts.len()];
    for t in &p.tables {
        let lines = lines_of(&t.name, &t.generator);
        let lines_at: Vec<Vec<&[u8]>> = cut_sizes(lines.len(), cuts)
            .into_iter()
            .map(|n| lines[..n].iter().map(|l| l.as_slice()).collect())
            .collect();
        let applied = Applied {
            name: &t.name,
            keys: &t.keys,
            sequence_by: &t.sequence_by,
        };
        add_table(
            &applied,
            &p.catalog[&t.name],
            &lines_at,
            &mut by_cut,
            &mut epochs,
        );
    }
    (by_cut, epochs)
}

fn txt(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

/// Every gold view over the generated world, cut into 7 epochs, at 1 and 2 workers.
#[test]
fn offers_gold_views_match_sqlite_at_every_epoch() {
    let p = load(150, 30_000);
    assert_eq!(p.tables.len(), 3);
    let cuts = [0.05, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0];
    let (by_cut, epochs) = epochs_of(&p, &cuts);
    let tables = p.catalog.clone();
    let want = oracle(&tables, &oracle_views(&p), &by_cut);

    // Not vacuous: offers of several types appear and disappear, customers have favourites
    // and lifetimes, the economics span months and segments with losses and gains.
    let last = cuts.len() - 1;
    let offers = &want["offers"];
    let key = |r: &Vec<Value>| (int(&r[0]), txt(&r[1]));
    let types: BTreeSet<String> = offers[last].iter().map(|r| txt(&r[1])).collect();
    assert_eq!(types.len(), 4, "{types:?}");
    let appeared = (1..cuts.len())
        .map(|e| {
            let before: BTreeSet<_> = offers[e - 1].iter().map(key).collect();
            offers[e]
                .iter()
                .filter(|r| !before.contains(&key(r)))
                .count()
        })
        .sum::<usize>();
    let disappeared = (1..cuts.len())
        .map(|e| {
            let now: BTreeSet<_> = offers[e].iter().map(key).collect();
            offers[e - 1]
                .iter()
                .filter(|r| !now.contains(&key(r)))
                .count()
        })
        .sum::<usize>();
    assert!(appeared > 20, "{appeared} offers appeared");
    assert!(disappeared > 0, "no offer ever disappeared");
    let c360 = &want["customer_360"][last];
    assert!(c360.len() > 100, "{} customers", c360.len());
    // lifetime_days is column 5, favourite_category the last.
    assert!(c360.iter().any(|r| int(&r[5]) > 30));
    assert!(c360.iter().filter(|r| r[18] != Value::Null).count() > c360.len() / 2);
    let econ = &want["cashback_economics"][last];
    let months: BTreeSet<i64> = econ.iter().map(|r| int(&r[1])).collect();
    assert!(months.len() >= 3, "{months:?}");
    let losing = econ
        .iter()
        .filter(|r| matches!(r[8], Value::Real(x) if x > 0.0))
        .count();
    assert!(
        losing > 0 && losing < econ.len(),
        "{losing} of {}",
        econ.len()
    );

    compare(&tables, &p.views, &epochs, &[], &want);
}

/// A row of `customers`.
fn customer(cat: &Catalog, id: i64, segment: &str) -> Row {
    mk(
        cat,
        "customer_profiles",
        &[
            ("customer_id", Datum::Int(id)),
            ("name", s(&format!("customer {id}"))),
            ("segment", s(segment)),
            ("region", s("north")),
            ("first_seen", Datum::Timestamp(1_767_225_600_000_000)),
            ("__lsn", Datum::Int(1)),
        ],
    )
}

/// A row of `customer_patterns`.
fn pattern(cat: &Catalog, id: i64, category: &str, attended: i64, at_s: i64) -> Row {
    mk(
        cat,
        "customer_patterns",
        &[
            ("customer_id", Datum::Int(id)),
            ("category", s(category)),
            ("events_attended", Datum::Int(attended)),
            (
                "datetime_updated",
                Datum::Timestamp(1_767_225_600_000_000 + at_s * 1_000_000),
            ),
        ],
    )
}

/// A threshold crossing (3 → 5 concerts) makes the concert offer appear in that epoch; a
/// reversal (5 → 4) removes it; a premier customer's travel offer starts at 2; a deleted
/// customer's offers leave.
#[test]
fn offers_appear_on_a_threshold_crossing_and_leave_on_its_reversal() {
    let p = load(150, 30_000);
    let cat = p.catalog.clone();
    let ins = |t: &str, r: Row| (t.to_string(), r, 1);
    let del = |t: &str, r: Row| (t.to_string(), r, -1);
    let epochs: Vec<Epoch> = vec![
        vec![
            ins("customer_profiles", customer(&cat, 1, "mass")),
            ins("customer_profiles", customer(&cat, 2, "premier")),
            ins("customer_patterns", pattern(&cat, 1, "concerts", 3, 10)),
            ins("customer_patterns", pattern(&cat, 2, "travel", 2, 10)),
        ],
        vec![
            del("customer_patterns", pattern(&cat, 1, "concerts", 3, 10)),
            ins("customer_patterns", pattern(&cat, 1, "concerts", 5, 20)),
        ],
        vec![
            del("customer_patterns", pattern(&cat, 1, "concerts", 5, 20)),
            ins("customer_patterns", pattern(&cat, 1, "concerts", 4, 30)),
            del("customer_profiles", customer(&cat, 2, "premier")),
        ],
    ];
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
    let want = oracle(&cat, &oracle_views(&p), &by_cut);
    let offers = |e: usize| -> Vec<(i64, String, i64)> {
        want["offers"][e]
            .iter()
            .map(|r| (int(&r[0]), txt(&r[1]), int(&r[6])))
            .collect()
    };
    assert_eq!(offers(0), vec![(2, "travel".to_string(), 2)]);
    assert_eq!(
        offers(1),
        vec![(1, "concerts".to_string(), 5), (2, "travel".to_string(), 2)]
    );
    assert_eq!(offers(2), vec![]);
    let views: Vec<(String, String)> = p.views.clone();
    compare(&cat, &views, &epochs, &[], &want);
    // And the favourite category follows the patterns.
    let fav = |e: usize, id: i64| {
        want["customer_360"][e]
            .iter()
            .find(|r| int(&r[0]) == id)
            .map(|r| r[18].clone())
    };
    assert_eq!(fav(1, 1), Some(Value::Text("concerts".into())));
    assert_eq!(fav(2, 2), None, "customer 2 was deleted");
    assert!(same_rows(&want["cashback_economics"][2], &[]));
}
