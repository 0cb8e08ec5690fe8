//! The marketing pipeline (`pipelines/marketing/`: its pipeline file and every model's SQL
//! file) against an independent oracle.
//!
//! The six generator sources of the pipeline file (scaled down) produce the six streams of
//! one marketing world; each stream is cut into epochs (growing prefixes). At every cut a
//! plain APPLY CHANGES reference ([`reference_apply`]: highest `__lsn` per key wins, deletes
//! leave tombstones; `_fivetran_deleted = true` deletes where the table's
//! `apply_as_deletes` says so) gives each input table's SCD1 state. The change from one cut
//! to the next is fed into differential, where every view of the pipeline is planned and
//! rendered in file order (a view reads the tables and the views before it) at 1, 2 and 4
//! workers; at every epoch each view must equal what SQLite computes with the same SQL
//! files (as `CREATE VIEW`s) over the same table states. Comparison as in `view_tests`.
//!
//! A scenario test checks by hand-made tables what issue 7 names: an account changing its
//! billing country moves its opens and clicks in `country_email_engagement`, and a deleted
//! lead's opens disappear from `int_email_open_clicks_joined`.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::types::Value;
use serde_json::Value as Json;
use tidewater_connectors::generator::{
    reference_apply, GeneratorConfig, MarketingGenConfig, MarketingStream,
};
use tidewater_connectors::types::{Column, ColumnType, Datum, Row};

use super::view_tests::{
    run_models, run_models_counted, sorted, sqlite_type, states, to_value, value_eq, Catalog, Epoch,
};
use crate::config::{ColumnsSpec, PipelineConfig};

/// The pipeline's directory.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/marketing");

/// Every table's rows at one cut.
pub(super) type TableStates = BTreeMap<String, Vec<Row>>;

/// A CDC table of the pipeline file, as the oracle needs it.
struct Table {
    name: String,
    stream: MarketingStream,
    keys: Vec<String>,
    sequence_by: String,
    /// `apply_as_deletes` also deletes on `_fivetran_deleted`.
    soft_deletes: bool,
    /// The generator of its source.
    generator: GeneratorConfig,
}

/// The pipeline file: its tables with their columns (the engine's table layout), and its
/// views (name, SQL) in order.
struct Pipeline {
    tables: Vec<Table>,
    catalog: Catalog,
    views: Vec<(String, String)>,
}

/// Reads `pipelines/marketing/`, with the world of its sources scaled to `keys` snapshot
/// leads and `events` world lines.
fn load(keys: u64, events: u64) -> Pipeline {
    let text = std::fs::read_to_string(format!("{DIR}/marketing.toml")).unwrap();
    let mut cfg = PipelineConfig::parse(&text).unwrap();
    // The [[view]] sections are read below; the rest of the file must be valid as it is.
    cfg.view.clear();
    cfg.validate().unwrap();
    for s in &mut cfg.source {
        s.keys = Some(keys);
        s.events = Some(events);
    }
    let worlds: BTreeSet<String> = cfg
        .source
        .iter()
        .map(|s| match s.generator() {
            GeneratorConfig::Marketing(g) => {
                format!(
                    "{:?}",
                    MarketingGenConfig {
                        stream: MarketingStream::Account,
                        ..g
                    }
                )
            }
            other => panic!("source `{}` is a {} generator", s.name, other.workload()),
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
        let generator = cfg.source_of(t).generator();
        let GeneratorConfig::Marketing(g) = &generator else {
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
        if let ColumnsSpec::Types(declared) = &t.columns {
            assert!(declared.values().all(|ty| ty == "timestamp"));
        }
        let soft_deletes = match t.apply_as_deletes.as_deref() {
            None => false,
            Some("__op = 'd' OR _fivetran_deleted") => true,
            Some(other) => panic!("the oracle does not know apply_as_deletes = {other:?}"),
        };
        assert_eq!(t.scd, 1);
        catalog.insert(t.name.clone(), columns);
        tables.push(Table {
            name: t.name.clone(),
            stream: g.stream,
            keys: t.keys.clone(),
            sequence_by: t.sequence_by.clone(),
            soft_deletes,
            generator: generator.clone(),
        });
    }

    let raw: toml::Value = toml::from_str(&text).unwrap();
    let views = view_files(DIR, &raw);
    Pipeline {
        tables,
        catalog,
        views,
    }
}

// ---------------------------------------------------------------------------------------
// The reference: table states at each cut.

/// A soft delete (`_fivetran_deleted = true` in an upsert) rewritten as a Debezium delete.
fn soft_delete_as_delete(line: &[u8]) -> Vec<u8> {
    let mut v: Json = serde_json::from_slice(line).unwrap();
    let env = if v.get("payload").is_some() {
        &mut v["payload"]
    } else {
        &mut v
    };
    if env["op"] != "d" && env["after"]["_fivetran_deleted"] == true {
        env["before"] = env["after"].take();
        env["op"] = Json::from("d");
    }
    serde_json::to_vec(&v).unwrap()
}

/// A reference row (JSON) typed as the table's columns.
pub(super) fn typed(columns: &[Column], row: &serde_json::Map<String, Json>) -> Row {
    columns
        .iter()
        .map(|c| match row.get(&c.name) {
            None | Some(Json::Null) => Datum::Null,
            Some(v) => match c.ty {
                ColumnType::String => Datum::Str(v.as_str().unwrap().to_string()),
                ColumnType::Int64 => Datum::Int(v.as_i64().unwrap()),
                ColumnType::Float64 => Datum::Float(v.as_f64().unwrap()),
                ColumnType::Boolean => Datum::Bool(v.as_bool().unwrap()),
                ColumnType::Timestamp => Datum::Timestamp(v.as_i64().unwrap() * 1000),
                other => panic!("column {} of type {other}", c.name),
            },
        })
        .collect()
}

/// The SCD1 state of `table` after `lines`: key → row.
fn table_state(t: &Table, columns: &[Column], lines: &[Vec<u8>]) -> BTreeMap<String, Row> {
    let lines: Vec<Vec<u8>> = if t.soft_deletes {
        lines.iter().map(|l| soft_delete_as_delete(l)).collect()
    } else {
        lines.to_vec()
    };
    let keys: Vec<&str> = t.keys.iter().map(|k| k.as_str()).collect();
    let st = reference_apply(lines.iter().map(|l| l.as_slice()), &keys, &t.sequence_by);
    assert!(st.bad.is_empty(), "{}: {:?}", t.name, st.bad);
    st.rows
        .iter()
        .map(|(k, row)| (k.clone(), typed(columns, row)))
        .collect()
}

/// Every stream's lines, the table states at each cut (`cuts`: fractions of each stream),
/// and the changes from one cut to the next.
fn epochs_of(p: &Pipeline, cuts: &[f64]) -> (Vec<TableStates>, Vec<Epoch>) {
    let mut by_cut: Vec<TableStates> = vec![TableStates::new(); cuts.len()];
    let mut epochs: Vec<Epoch> = vec![Vec::new(); cuts.len()];
    for t in &p.tables {
        let mut gen = t.generator.build();
        let mut lines = Vec::new();
        let mut line = Vec::new();
        while gen.next_line(&mut line) {
            lines.push(std::mem::take(&mut line));
        }
        assert_eq!(lines.len() as u64, t.generator.total_lines());
        assert!(lines.len() > 20, "{}: {} lines", t.name, lines.len());
        let columns = &p.catalog[&t.name];
        let mut prev: BTreeMap<String, Row> = BTreeMap::new();
        for (e, f) in cuts.iter().enumerate() {
            let n = ((lines.len() as f64 * f).ceil() as usize).min(lines.len());
            let state = table_state(t, columns, &lines[..n]);
            let keys: BTreeSet<&String> = prev.keys().chain(state.keys()).collect();
            for k in keys {
                let (old, new) = (prev.get(k), state.get(k));
                if old != new {
                    if let Some(r) = old {
                        epochs[e].push((t.name.clone(), r.clone(), -1));
                    }
                    if let Some(r) = new {
                        epochs[e].push((t.name.clone(), r.clone(), 1));
                    }
                }
            }
            by_cut[e].insert(t.name.clone(), state.values().cloned().collect());
            prev = state;
        }
        assert_eq!(
            prev.len(),
            by_cut.last().unwrap()[&t.name].len(),
            "{}",
            t.name
        );
    }
    (by_cut, epochs)
}

// ---------------------------------------------------------------------------------------
// Differential and SQLite.

/// SQLite with the tables and the views (`CREATE VIEW`, the same SQL text).
pub(super) fn sqlite(tables: &Catalog, views: &[(String, String)]) -> rusqlite::Connection {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    for (name, cols) in tables {
        let defs: Vec<String> = cols
            .iter()
            .map(|c| format!("\"{}\" {}", c.name, sqlite_type(c.ty)))
            .collect();
        db.execute(
            &format!("CREATE TABLE \"{name}\" ({})", defs.join(", ")),
            [],
        )
        .unwrap();
    }
    for (name, sql) in views {
        db.execute(&format!("CREATE VIEW \"{name}\" AS\n{sql}"), [])
            .unwrap_or_else(|e| panic!("SQLite: view `{name}`: {e}"));
    }
    db
}

/// Replaces the tables' rows with `state`.
pub(super) fn load_tables(db: &rusqlite::Connection, tables: &Catalog, state: &TableStates) {
    for (name, cols) in tables {
        db.execute(&format!("DELETE FROM \"{name}\""), []).unwrap();
        let marks: Vec<&str> = cols.iter().map(|_| "?").collect();
        let mut ins = db
            .prepare(&format!(
                "INSERT INTO \"{name}\" VALUES ({})",
                marks.join(", ")
            ))
            .unwrap();
        for row in state.get(name).map(|v| v.as_slice()).unwrap_or(&[]) {
            let vals: Vec<Value> = row.iter().map(to_value).collect();
            ins.execute(rusqlite::params_from_iter(vals)).unwrap();
        }
    }
}

/// The rows of `sql` in SQLite, sorted.
pub(super) fn query(db: &rusqlite::Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut q = db.prepare(sql).unwrap();
    let n = q.column_count();
    let rows = q
        .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    sorted(rows)
}

/// Every view's rows at every cut, by SQLite: view → epoch → sorted rows.
pub(super) fn oracle(
    tables: &Catalog,
    views: &[(String, String)],
    by_cut: &[TableStates],
) -> BTreeMap<String, Vec<Vec<Vec<Value>>>> {
    let db = sqlite(tables, views);
    let mut out: BTreeMap<String, Vec<Vec<Vec<Value>>>> = BTreeMap::new();
    for state in by_cut {
        load_tables(&db, tables, state);
        for (name, _) in views {
            out.entry(name.clone())
                .or_default()
                .push(query(&db, &format!("SELECT * FROM \"{name}\"")));
        }
    }
    out
}

pub(super) fn same_rows(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| value_eq(p, q)))
}

/// The first rows where two sorted row lists differ (for the failure message).
pub(super) fn first_difference(ours: &[Vec<Value>], want: &[Vec<Value>]) -> String {
    let only = |a: &[Vec<Value>], b: &[Vec<Value>]| -> Vec<Vec<Value>> {
        a.iter()
            .filter(|r| {
                !b.iter()
                    .any(|s| same_rows(std::slice::from_ref(*r), std::slice::from_ref(s)))
            })
            .take(5)
            .cloned()
            .collect()
    };
    format!(
        "ours {} rows, sqlite {} rows\nonly ours: {:?}\nonly sqlite: {:?}",
        ours.len(),
        want.len(),
        only(ours, want),
        only(want, ours)
    )
}

/// Runs every view on differential at 1, 2 and 4 workers and compares it with SQLite at
/// every epoch; returns the SQLite rows (view → epoch → rows).
fn check_all(
    p: &Pipeline,
    by_cut: &[TableStates],
    epochs: &[Epoch],
) -> BTreeMap<String, Vec<Vec<Vec<Value>>>> {
    let want = oracle(&p.catalog, &p.views, by_cut);
    for workers in [1, 2, 4] {
        let got = run_models(&p.catalog, &p.views, epochs, workers);
        for (name, _) in &p.views {
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
    want
}

/// The `[[view]]` sections of a shipped pipeline file (`raw`, in `dir`): name and the SQL of
/// its `sql_file`, in file order.
pub(super) fn view_files(dir: &str, raw: &toml::Value) -> Vec<(String, String)> {
    raw["view"]
        .as_array()
        .expect("[[view]] sections")
        .iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_string();
            let file = v["sql_file"].as_str().unwrap();
            let sql = std::fs::read_to_string(format!("{dir}/{file}"))
                .unwrap_or_else(|e| panic!("view `{name}`: {file}: {e}"));
            (name, sql)
        })
        .collect()
}

pub(super) fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// The whole model set over the generated world, cut into 7 epochs.
#[test]
fn marketing_models_match_sqlite_at_every_epoch() {
    let p = load(300, 9_000);
    assert_eq!(p.tables.len(), 6);
    let streams: BTreeSet<MarketingStream> = p.tables.iter().map(|t| t.stream).collect();
    assert_eq!(streams.len(), 6, "one table per stream");
    let cuts = [0.04, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0];
    let (by_cut, epochs) = epochs_of(&p, &cuts);
    let want = check_all(&p, &by_cut, &epochs);

    // Not vacuous: every model has rows at the end, every test view is one row, and the
    // tests that can fail on this data do at some epoch.
    let last = cuts.len() - 1;
    for (name, _) in &p.views {
        let rows = &want[name][last];
        if name.starts_with("test_") {
            assert_eq!(rows.len(), 1, "{name}");
        } else {
            assert!(rows.len() > 5, "{name}: {} rows", rows.len());
        }
    }
    let violations =
        |name: &str| -> Vec<i64> { want[name].iter().map(|r| int(&r[0][0])).collect() };
    for always_zero in [
        "test_dim_account_unique_account_id",
        "test_dim_account_not_null_account_id",
        "test_dim_user_not_null",
        "test_fct_email_opens_not_null",
        "test_fct_email_opens_unique_activity_id",
        "test_fct_email_clicks_not_null",
        "test_int_email_open_clicks_joined_unique_open_id",
    ] {
        assert!(
            violations(always_zero).iter().all(|v| *v == 0),
            "{always_zero}"
        );
    }
    for failing in [
        "test_dim_user_unique_user_id",
        "test_dim_user_account_in_dim_account",
        "test_fct_email_opens_lead_in_dim_user",
        "test_fct_email_clicks_lead_in_dim_user",
    ] {
        assert!(
            violations(failing).iter().any(|v| *v > 0),
            "{failing}: {:?}",
            violations(failing)
        );
    }

    // The run exercises what issue 7 names. Accounts with opens that move to another
    // billing country from one epoch to the next:
    let db = sqlite(&p.catalog, &p.views);
    let per_account = "SELECT a.account_id, a.billing_country FROM int_email_open_clicks_joined j \
         JOIN dim_user u ON j.lead_id = u.lead_id JOIN dim_account a ON u.account_id = a.account_id \
         GROUP BY a.account_id, a.billing_country";
    let mut moved = 0;
    let mut leads_gone = 0;
    let mut before: Option<(BTreeMap<String, String>, BTreeSet<i64>)> = None;
    for state in &by_cut {
        load_tables(&db, &p.catalog, state);
        let countries: BTreeMap<String, String> = query(&db, per_account)
            .into_iter()
            .map(|r| (format!("{:?}", r[0]), format!("{:?}", r[1])))
            .collect();
        let open_leads: BTreeSet<i64> = query(
            &db,
            "SELECT DISTINCT lead_id FROM int_email_open_clicks_joined",
        )
        .iter()
        .map(|r| int(&r[0]))
        .collect();
        let leads: BTreeSet<i64> = query(&db, "SELECT id FROM marketo_lead")
            .iter()
            .map(|r| int(&r[0]))
            .collect();
        if let Some((old_countries, old_leads)) = &before {
            moved += countries
                .iter()
                .filter(|(a, c)| old_countries.get(*a).is_some_and(|o| o != *c))
                .count();
            leads_gone += old_leads.iter().filter(|l| !leads.contains(l)).count();
        }
        before = Some((countries, open_leads));
    }
    assert!(
        moved > 0,
        "no account with opens changed its billing country"
    );
    assert!(leads_gone > 0, "no lead with opens was deleted");
}

// ---------------------------------------------------------------------------------------
// The scenario of issue 7, by hand.

/// A row of `table` with the given columns set (the others NULL).
pub(super) fn mk(cat: &Catalog, table: &str, values: &[(&str, Datum)]) -> Row {
    let cols = &cat[table];
    for (n, _) in values {
        assert!(cols.iter().any(|c| c.name == *n), "{table}.{n}");
    }
    cols.iter()
        .map(|c| {
            values
                .iter()
                .find(|(n, _)| *n == c.name)
                .map(|(_, d)| d.clone())
                .unwrap_or(Datum::Null)
        })
        .collect()
}

pub(super) fn s(x: &str) -> Datum {
    Datum::Str(x.into())
}

pub(super) fn text(x: &str) -> Value {
    Value::Text(x.into())
}

#[test]
fn marketing_country_move_and_lead_delete_flow_through() {
    let p = load(40, 1_500);
    let cat = &p.catalog;
    let account = |id: &str, country: &str| {
        mk(
            cat,
            "salesforce_account",
            &[
                ("id", s(id)),
                ("billing_country", s(country)),
                ("__lsn", Datum::Int(1)),
            ],
        )
    };
    let user = |id: &str, email: &str, account: &str| {
        mk(
            cat,
            "salesforce_user",
            &[
                ("id", s(id)),
                ("email", s(email)),
                ("account_id", s(account)),
                ("__lsn", Datum::Int(1)),
            ],
        )
    };
    let lead = |id: i64, email: &str| {
        mk(
            cat,
            "marketo_lead",
            &[
                ("id", Datum::Int(id)),
                ("email", s(email)),
                ("__lsn", Datum::Int(1)),
            ],
        )
    };
    let activity = |table: &str, id: i64, lead: i64, send: &str, campaign: i64| {
        mk(
            cat,
            table,
            &[
                ("id", Datum::Int(id)),
                ("lead_id", Datum::Int(lead)),
                ("email_send_id", s(send)),
                ("campaign_id", Datum::Int(campaign)),
                ("activity_date", Datum::Timestamp(id * 1_000_000)),
                ("__lsn", Datum::Int(1)),
            ],
        )
    };
    let (sends, opens, clicks) = (
        "marketo_activity_send_email",
        "marketo_activity_open_email",
        "marketo_activity_click_email",
    );
    let ins = |t: &str, r: Row| (t.to_string(), r, 1);
    let del = |t: &str, r: Row| (t.to_string(), r, -1);
    // Epoch 0: Ann (lead 1) works at A1 in Germany, Bob (lead 2, e-mail in other case) at A2
    // in France; Cy (lead 3) is a prospect. Ann opened two e-mails and clicked the first
    // twice; Bob and Cy opened one each.
    let epoch0: Epoch = vec![
        ins("salesforce_account", account("A1", "Germany")),
        ins("salesforce_account", account("A2", "France")),
        ins("salesforce_user", user("U1", "ann@a.example", "A1")),
        ins("salesforce_user", user("U2", "bob@b.example", "A2")),
        ins("marketo_lead", lead(1, "ann@a.example")),
        ins("marketo_lead", lead(2, "Bob@b.example")),
        ins("marketo_lead", lead(3, "cy@p.example")),
        ins(sends, activity(sends, 301, 1, "s1", 1001)),
        ins(sends, activity(sends, 302, 1, "s2", 1001)),
        ins(sends, activity(sends, 303, 2, "s3", 1001)),
        ins(sends, activity(sends, 304, 3, "s4", 1002)),
        ins(opens, activity(opens, 101, 1, "s1", 1001)),
        ins(opens, activity(opens, 102, 1, "s2", 1001)),
        ins(opens, activity(opens, 103, 2, "s3", 1001)),
        ins(opens, activity(opens, 104, 3, "s4", 1002)),
        ins(clicks, activity(clicks, 201, 1, "s1", 1001)),
        ins(clicks, activity(clicks, 202, 1, "s1", 1001)),
    ];
    // Epoch 1: A1 moves to France.
    let epoch1: Epoch = vec![
        del("salesforce_account", account("A1", "Germany")),
        ins("salesforce_account", account("A1", "France")),
    ];
    // Epoch 2: lead 1 is deleted (merged away).
    let epoch2: Epoch = vec![del("marketo_lead", lead(1, "ann@a.example"))];
    let epochs = vec![epoch0, epoch1, epoch2];
    let mut by_cut = Vec::new();
    let mut state: TableStates = TableStates::new();
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
    let got = check_all(&p, &by_cut, &epochs);

    let country = |e: usize| got["country_email_engagement"][e].clone();
    let row = |c: &str, opens: i64, clicks: i64, ratio: f64, leads: i64| {
        vec![
            text(c),
            Value::Integer(opens),
            Value::Integer(clicks),
            Value::Real(ratio),
            Value::Integer(leads),
        ]
    };
    // billing_country, opens, clicks (clicked opens), click_ratio, engaged_leads.
    let want0 = vec![row("France", 1, 0, 0.0, 1), row("Germany", 2, 1, 0.5, 1)];
    let want1 = vec![row("France", 3, 1, 1.0 / 3.0, 2)];
    let want2 = vec![row("France", 1, 0, 0.0, 1)];
    assert!(same_rows(&country(0), &want0), "{:?}", country(0));
    assert!(same_rows(&country(1), &want1), "{:?}", country(1));
    assert!(same_rows(&country(2), &want2), "{:?}", country(2));

    let open_ids = |e: usize| -> Vec<i64> {
        got["int_email_open_clicks_joined"][e]
            .iter()
            .map(|r| int(&r[0]))
            .collect()
    };
    assert_eq!(open_ids(1), vec![101, 102, 103, 104]);
    assert_eq!(open_ids(2), vec![103, 104], "lead 1's opens are gone");
    // Open 101 had two clicks on its send.
    let j = &got["int_email_open_clicks_joined"][0];
    assert_eq!((int(&j[0][0]), int(&j[0][6])), (101, 2));
    // Cy's open is no Salesforce user's: one relationship violation throughout.
    for rows in &got["test_fct_email_opens_lead_in_dim_user"] {
        assert_eq!(int(&rows[0][0]), 1);
    }
}

// ---------------------------------------------------------------------------------------
// Incrementality of the chain that ends in `country_email_engagement`.

/// The views of the pipeline file from the dimensions to `country_email_engagement`.
const CHAIN: [&str; 6] = [
    "dim_account",
    "dim_user",
    "fct_email_opens",
    "fct_email_clicks",
    "int_email_open_clicks_joined",
    "country_email_engagement",
];

/// A marketing world of `n` opens: `n / 100` accounts in 10 countries, `n / 20` users and
/// as many leads (one per user's e-mail), 20 opens per lead (each of its own send) and a
/// click on every fourth open's send. Epoch 1 changes three rows: a new open, a click on
/// open 5's send (which had none), and open 7 deleted.
fn chain_epochs(cat: &Catalog, n: i64) -> Vec<Epoch> {
    let (accounts, people) = (n / 100, n / 20);
    let ins = |t: &str, values: &[(&str, Datum)]| (t.to_string(), mk(cat, t, values), 1);
    let (opens, clicks) = (
        "marketo_activity_open_email",
        "marketo_activity_click_email",
    );
    let activity = |table: &str, id: i64, lead: i64, send: String| {
        ins(
            table,
            &[
                ("id", Datum::Int(id)),
                ("lead_id", Datum::Int(lead)),
                ("email_send_id", Datum::Str(send)),
                ("campaign_id", Datum::Int(id % 7)),
                ("activity_date", Datum::Timestamp(id * 1_000_000)),
            ],
        )
    };
    let mut e0: Epoch = Vec::new();
    for a in 0..accounts {
        e0.push(ins(
            "salesforce_account",
            &[
                ("id", s(&format!("A{a}"))),
                ("billing_country", s(&format!("country {}", a % 10))),
            ],
        ));
    }
    for u in 0..people {
        let email = format!("u{u}@x.example");
        e0.push(ins(
            "salesforce_user",
            &[
                ("id", s(&format!("U{u}"))),
                ("email", s(&email)),
                ("account_id", s(&format!("A{}", u % accounts))),
            ],
        ));
        e0.push(ins(
            "marketo_lead",
            &[("id", Datum::Int(u)), ("email", s(&email))],
        ));
    }
    for o in 0..n {
        e0.push(activity(opens, o, o % people, format!("s{o}")));
        if o % 4 == 0 {
            e0.push(activity(clicks, n + o, o % people, format!("s{o}")));
        }
    }
    let mut delete = activity(opens, 7, 7 % people, "s7".into());
    delete.2 = -1;
    let e1: Epoch = vec![
        activity(opens, 3 * n, 3, "s-new".into()),
        activity(clicks, 3 * n + 1, 5 % people, "s5".into()),
        delete,
    ];
    vec![e0, e1]
}

#[test]
fn the_engagement_chain_does_work_per_epoch_independent_of_the_table_size() {
    let p = load(40, 1_500);
    let views: Vec<(String, String)> = p
        .views
        .iter()
        .filter(|(name, _)| CHAIN.contains(&name.as_str()))
        .cloned()
        .collect();
    assert_eq!(views.len(), CHAIN.len());
    let mut epoch1: Vec<BTreeMap<String, u64>> = Vec::new();
    for n in [5_000i64, 20_000] {
        let epochs = chain_epochs(&p.catalog, n);
        let (updates, work) = run_models_counted(&p.catalog, &views, &epochs, 2, &[], true);
        let at = |view: &str, e: u64| work[view].get(&e).copied().unwrap_or(0);
        for (view, _) in &views {
            eprintln!(
                "{n} opens, `{view}`: epoch 0: {}, epoch 1: {}",
                at(view, 0),
                at(view, 1)
            );
        }
        // Epoch 0 loads the world: at least one update per open.
        let total0: u64 = CHAIN.iter().map(|v| at(v, 0)).sum();
        assert!(total0 >= n as u64, "{total0} at {n} opens");
        epoch1.push(CHAIN.iter().map(|v| (v.to_string(), at(v, 1))).collect());
        // Not vacuous: the change reaches the engagement of the three leads' countries.
        let states = states(&updates["country_email_engagement"], 2);
        assert_eq!(states[0].len(), 10);
        assert_ne!(states[0], states[1]);
    }
    // The same work at 5,000 and 20,000 opens; the dimensions do nothing.
    assert_eq!(epoch1[0], epoch1[1]);
    let want: BTreeMap<String, u64> = [
        ("dim_account", 0),
        ("dim_user", 0),
        // 2 changed opens: left keys, matchable rows, matches with their leads, projection.
        ("fct_email_opens", 8),
        // The same for 1 click.
        ("fct_email_clicks", 4),
        // clicks_per_send: 1 key, 1 new group, 1 row, 1 projection; the left join: left keys
        // 2 + matchable 2, right keys 1, 1 match (open 5 with its send's clicks), 1 new
        // distinct right key, 1 matched left row, 3 padded-row changes (open 5's retracted,
        // the new open's added, open 7's retracted), output 1 + 3, projection 4.
        ("int_email_open_clicks_joined", 23),
        // 4 changed joined opens through two joins (3 × 4 each), group keys 4, 3 countries'
        // groups (-old +new) through the reduce, the aggregate rows, the WITH query's and
        // the outer projection (4 × 6).
        ("country_email_engagement", 52),
    ]
    .into_iter()
    .map(|(v, n)| (v.to_string(), n))
    .collect();
    assert_eq!(epoch1[0], want);
}
