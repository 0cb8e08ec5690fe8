//! SQL views (issue 7) through the binary, against an independent SQL oracle: two CDC tables
//! (`customers` from the bank generator, `orders` from a seeded generator here, both with
//! updates, deletes, duplicates and out-of-order events) feed views covering every construct
//! group — joins (inner, left), GROUP BY with every aggregate and HAVING, a global aggregate,
//! CTE + UNION ALL + subquery in FROM + DISTINCT, projections with CASE / COALESCE / string
//! functions / IS NULL, a view over a view, declared keys, and a view stored by whole row with
//! multiplicity. At **every epoch** (the epoch manifest's cut) each view's Delta version must
//! equal what SQLite computes with the same SQL over the tables' Delta versions of that cut,
//! at 1, 2 and 4 workers, and the final versions agree across worker counts and with the
//! independent Python reader. Restart: a crash between table commits and a restart from an
//! operator-state checkpoint keep every epoch exact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::types::Value as Sql;
use serde_json::Value;
use tidewater_connectors::generator::{write_file, BankGenConfig};
use tidewater_e2e::python_reader::py_read_table;
use tidewater_e2e::{abort_at, bank_pipeline, deltalake_rows, tidewater, tidewater_ok, JsonRow};

/// The views under test: (name, SQL, extra keys of the `[[view]]`).
const VIEWS: &[(&str, &str, &str)] = &[
    (
        "spend_by_country",
        "SELECT c.country AS country, COUNT(*) AS orders, COUNT(DISTINCT o.customer_id) AS buyers,
                SUM(o.amount) AS revenue, AVG(o.amount) AS avg_amount,
                MIN(o.amount) AS min_amount, MAX(o.amount) AS max_amount,
                MAX(c.total_spend) AS top_spend
         FROM orders o JOIN customers c ON o.customer_id = c.customer_id
         WHERE o.status <> 'cancelled'
         GROUP BY c.country
         HAVING COUNT(*) >= 2",
        "",
    ),
    (
        "order_lines",
        "SELECT o.status AS status, COALESCE(c.segment, 'unknown') AS segment,
                CASE WHEN o.amount >= 100 THEN 'large' WHEN o.amount >= 20 THEN 'medium'
                     ELSE 'small' END AS size,
                c.customer_id IS NULL AS orphan,
                upper(COALESCE(o.status, 'none')) || '/' || lower(COALESCE(c.country, 'none')) AS tag
         FROM orders o LEFT JOIN customers c ON o.customer_id = c.customer_id",
        "",
    ),
    (
        "big_countries",
        "SELECT country, revenue, orders * 2 AS doubled FROM spend_by_country WHERE revenue > 400",
        "keys = [\"country\"]",
    ),
    (
        "totals",
        "SELECT COUNT(*) AS n, SUM(amount) AS total, COUNT(DISTINCT status) AS statuses,
                COUNT(status) AS with_status
         FROM orders",
        "",
    ),
    (
        "segments",
        "WITH active AS (SELECT customer_id, segment FROM customers WHERE is_active)
         SELECT DISTINCT kind, segment FROM (
             SELECT 'active' AS kind, segment FROM active
             UNION ALL
             SELECT 'buyer' AS kind, c.segment AS segment
             FROM orders o JOIN customers c ON o.customer_id = c.customer_id
         ) AS s",
        "",
    ),
    (
        "customer_orders",
        "SELECT customer_id, status, COUNT(*) AS n, SUM(amount) AS amount,
                CAST(COUNT(*) AS DOUBLE) / 2 AS half
         FROM orders GROUP BY customer_id, status",
        "",
    ),
];

/// Writes `orders` CDC lines: creates, status updates, deletes and re-creates, duplicates and
/// out-of-order deliveries; amounts are multiples of 0.25 (every sum exact in any order);
/// statuses include NULL; some orders name customers that do not exist.
fn write_orders(path: &Path, events: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let statuses = ["new", "paid", "shipped", "cancelled"];
    let mut lines: Vec<String> = Vec::new();
    let mut live: BTreeMap<i64, (i64, f64, Option<&str>)> = BTreeMap::new();
    let mut lsn = 1_000i64;
    let mut next_id = 1i64;
    while lines.len() < events {
        lsn += 1;
        let roll = rng.gen_range(0..100);
        let (op, id, row) = if roll < 45 || live.is_empty() {
            let id = if roll < 5 && next_id > 10 {
                rng.gen_range(1..next_id) // re-create (or upsert) an older id
            } else {
                next_id += 1;
                next_id - 1
            };
            let row = (
                rng.gen_range(1..420),
                rng.gen_range(1..2_000) as f64 * 0.25,
                (rng.gen_range(0..10) > 0).then(|| statuses[rng.gen_range(0..2)]),
            );
            ("c", id, row)
        } else if roll < 85 {
            let ids: Vec<i64> = live.keys().copied().collect();
            let id = ids[rng.gen_range(0..ids.len())];
            let mut row = live[&id];
            row.2 = Some(statuses[rng.gen_range(0..4)]);
            if rng.gen_range(0..4) == 0 {
                row.1 = rng.gen_range(1..2_000) as f64 * 0.25;
            }
            ("u", id, row)
        } else {
            let ids: Vec<i64> = live.keys().copied().collect();
            let id = ids[rng.gen_range(0..ids.len())];
            ("d", id, live[&id])
        };
        if op == "d" {
            live.remove(&id);
        } else {
            live.insert(id, row);
        }
        let image = format!(
            r#"{{"order_id":{id},"customer_id":{},"amount":{:.2},"status":{}}}"#,
            row.0,
            row.1,
            row.2.map_or("null".to_string(), |s| format!("\"{s}\""))
        );
        let (before, after) = if op == "d" {
            (image.as_str(), "null")
        } else {
            ("null", image.as_str())
        };
        let line = format!(
            r#"{{"before":{before},"after":{after},"source":{{"lsn":{lsn},"txId":{lsn},"ts_ms":{}}},"op":"{op}","ts_ms":{}}}"#,
            1_700_000_000_000 + lsn,
            1_700_000_000_100 + lsn
        );
        lines.push(line.clone());
        // Duplicates and late deliveries: a copy of this event, now or a few events later.
        if rng.gen_range(0..20) == 0 {
            let at = lines.len().saturating_sub(rng.gen_range(0..6));
            lines.insert(at, line);
        }
    }
    lines.truncate(events);
    std::fs::write(path, lines.join("\n") + "\n").expect("write orders");
}

struct Setup {
    dir: tempfile::TempDir,
    customers: PathBuf,
    orders: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let customers = dir.path().join("customers.json");
    let orders = dir.path().join("orders.json");
    write_file(
        &BankGenConfig {
            seed: 7,
            events: 2_400,
            keys: 400,
            very_late_distance: 300,
            ..BankGenConfig::default()
        },
        &customers,
    )
    .expect("customers");
    write_orders(&orders, 2_400, 11);
    Setup {
        dir,
        customers,
        orders,
    }
}

fn pipeline(s: &Setup, lakehouse: &Path, extra: &str) -> PathBuf {
    let mut text = format!(
        r#"[pipeline]
name = "views"
lakehouse = "{}"
commit_interval_ms = 1000
commit_every_records = 300
buckets = 4
{extra}

[[source]]
name = "customers_cdc"
kind = "files"
path = "{}"

[[source]]
name = "orders_cdc"
kind = "files"
path = "{}"

[[table]]
name = "customers"
from = "customers_cdc"
keys = ["customer_id"]
sequence_by = "__lsn"

[[table]]
name = "orders"
from = "orders_cdc"
keys = ["order_id"]
sequence_by = "__lsn"
columns = {{ order_id = "int64", customer_id = "int64", amount = "double", status = "string" }}
"#,
        lakehouse.display(),
        s.customers.display(),
        s.orders.display()
    );
    for (name, sql, extra) in VIEWS {
        let file = s.dir.path().join(format!("{name}.sql"));
        std::fs::write(&file, sql).expect("sql file");
        text.push_str(&format!(
            "\n[[view]]\nname = \"{name}\"\nsql_file = \"{name}.sql\"\nbuckets = 3\n{extra}\n"
        ));
    }
    let path = s.dir.path().join(format!(
        "views-{}.toml",
        lakehouse.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, text).expect("pipeline");
    path
}

/// A number as text with 12 significant digits: every sum here is exact, but the JSON
/// round trip of the Delta reader (serde_json's default float parsing) may be one ulp off.
fn num(x: f64) -> String {
    format!("{x:.11e}")
}

/// A comparable cell: numbers as [`num`] text, booleans as 0/1.
fn cell_of_json(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => num(*b as i64 as f64),
        Value::Number(n) => num(n.as_f64().expect("number")),
        Value::String(s) => format!("'{s}'"),
        other => panic!("unexpected value {other}"),
    }
}

pub fn cell_of_sql(v: &Sql) -> String {
    match v {
        Sql::Null => "NULL".into(),
        Sql::Integer(i) => num(*i as f64),
        Sql::Real(f) => num(*f),
        Sql::Text(s) => format!("'{s}'"),
        Sql::Blob(_) => panic!("blob"),
    }
}

pub fn sql_of_json(v: &Value) -> Sql {
    match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().expect("number")),
        },
        Value::String(s) => Sql::Text(s.clone()),
        other => panic!("unexpected value {other}"),
    }
}

/// Rows as sorted lines of cells in the given column order.
pub fn canonical_rows(rows: &[JsonRow], columns: &[String]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| cell_of_json(r.get(c).unwrap_or(&Value::Null)))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    out.sort();
    out
}

/// Loads `tables` (name → rows) into an in-memory SQLite database, with the views before
/// `upto` as SQLite views, and runs view `upto`'s SQL: its rows and column names.
pub fn sqlite_view(
    tables: &BTreeMap<String, (Vec<String>, Vec<JsonRow>)>,
    views: &[(String, String)],
    upto: usize,
) -> (Vec<String>, Vec<String>) {
    let db = rusqlite::Connection::open_in_memory().expect("sqlite");
    for (name, (columns, rows)) in tables {
        let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        db.execute(&format!("CREATE TABLE {name} ({})", cols.join(", ")), [])
            .expect("create");
        let marks: Vec<&str> = columns.iter().map(|_| "?").collect();
        let mut insert = db
            .prepare(&format!("INSERT INTO {name} VALUES ({})", marks.join(", ")))
            .expect("insert");
        for r in rows {
            let values: Vec<Sql> = columns
                .iter()
                .map(|c| sql_of_json(r.get(c).unwrap_or(&Value::Null)))
                .collect();
            insert
                .execute(rusqlite::params_from_iter(values))
                .expect("row");
        }
    }
    for (name, sql) in &views[..upto] {
        db.execute(&format!("CREATE VIEW {name} AS {sql}"), [])
            .expect("create view");
    }
    let mut stmt = db.prepare(&views[upto].1).expect("view sql in sqlite");
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let n = names.len();
    let mut rows: Vec<String> = stmt
        .query_map([], |row| {
            Ok((0..n)
                .map(|i| cell_of_sql(&row.get::<_, Sql>(i).expect("cell")))
                .collect::<Vec<_>>()
                .join(" | "))
        })
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    rows.sort();
    (names, rows)
}

/// The column names of a Delta table's current schema, in order.
pub fn delta_columns(table: &Path) -> Vec<String> {
    let log = table.join("_delta_log");
    let mut names = Vec::new();
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&log)
        .expect("log")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    versions.sort();
    for v in versions {
        for line in std::fs::read_to_string(v).expect("commit").lines() {
            let a: Value = serde_json::from_str(line).expect("action");
            if let Some(schema) = a
                .get("metaData")
                .and_then(|m| m.get("schemaString"))
                .and_then(Value::as_str)
            {
                let s: Value = serde_json::from_str(schema).expect("schema");
                names = s["fields"]
                    .as_array()
                    .expect("fields")
                    .iter()
                    .map(|f| f["name"].as_str().expect("name").to_string())
                    .collect();
            }
        }
    }
    names
}

/// The epoch manifests of a lakehouse: epoch → table → Delta version.
pub fn manifests(lakehouse: &Path) -> BTreeMap<u64, BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(lakehouse.join("_tidewater/epochs")).expect("manifests") {
        let path = e.expect("entry").path();
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json");
        let tables = m["tables"]
            .as_object()
            .expect("tables")
            .iter()
            .map(|(t, v)| (t.clone(), v.as_i64().expect("version")))
            .collect();
        out.insert(m["epoch"].as_u64().expect("epoch"), tables);
    }
    out
}

/// The views under test as (name, SQL).
fn views() -> Vec<(String, String)> {
    VIEWS
        .iter()
        .map(|(n, sql, _)| (n.to_string(), sql.to_string()))
        .collect()
}

/// Every view at every epoch of the lakehouse equals SQLite over the tables at that cut;
/// returns the number of epochs checked and each view's final rows.
fn check_every_epoch(lakehouse: &Path) -> (usize, BTreeMap<String, Vec<String>>) {
    let (epochs, last) = check_views_at_every_epoch(lakehouse, &["customers", "orders"], &views());
    assert!(epochs >= 8, "epochs: {epochs}");
    (epochs, last)
}

/// Every view (in order; a view may read earlier ones) at every epoch manifest of the
/// lakehouse equals SQLite running its SQL over `tables` at that cut (their Delta versions in
/// the manifest), with the view's Delta columns; returns the number of epochs checked and
/// each view's rows at the last one.
pub fn check_views_at_every_epoch(
    lakehouse: &Path,
    tables: &[&str],
    views: &[(String, String)],
) -> (usize, BTreeMap<String, Vec<String>>) {
    let manifests = manifests(lakehouse);
    let table_columns: BTreeMap<String, Vec<String>> = tables
        .iter()
        .map(|t| (t.to_string(), delta_columns(&lakehouse.join(t))))
        .collect();
    let mut last = BTreeMap::new();
    for (epoch, versions) in &manifests {
        let mut inputs = BTreeMap::new();
        for (t, cols) in &table_columns {
            let rows = match versions.get(t) {
                Some(v) => deltalake_rows(&lakehouse.join(t), Some(*v)).expect("table rows"),
                None => Vec::new(),
            };
            inputs.insert(t.clone(), (cols.clone(), rows));
        }
        for (i, (name, _)) in views.iter().enumerate() {
            let (columns, expected) = sqlite_view(&inputs, views, i);
            let actual = match versions.get(name) {
                Some(v) => canonical_rows(
                    &deltalake_rows(&lakehouse.join(name), Some(*v)).expect("view"),
                    &columns,
                ),
                None => Vec::new(),
            };
            assert_eq!(
                actual,
                expected,
                "view `{name}` at epoch {epoch} (version {:?}) differs from SQLite",
                versions.get(name)
            );
            if versions.contains_key(name) {
                assert_eq!(
                    delta_columns(&lakehouse.join(name)),
                    columns,
                    "view `{name}`: columns"
                );
            }
            last.insert(name.clone(), actual);
        }
    }
    (manifests.len(), last)
}

#[test]
fn views_equal_sqlite_at_every_epoch_at_1_2_and_4_workers() {
    let s = setup();
    let mut finals = Vec::new();
    for workers in [1, 2, 4] {
        let lakehouse = s.dir.path().join(format!("lh{workers}"));
        let p = pipeline(&s, &lakehouse, "");
        tidewater_ok(&[
            "run",
            p.to_str().unwrap(),
            "--workers",
            &workers.to_string(),
            "--exit-when-idle",
        ]);
        let (epochs, last) = check_every_epoch(&lakehouse);
        // Views with rows in them: the test is not vacuous.
        for (name, rows) in &last {
            assert!(!rows.is_empty(), "view `{name}` is empty at the end");
        }
        assert!(last["order_lines"].len() > last["segments"].len());
        // The independent reader agrees on the final version of every view.
        for (name, _, _) in VIEWS {
            let dir = lakehouse.join(name);
            let py = py_read_table(&dir, None).expect("python reader");
            let columns = delta_columns(&dir);
            assert_eq!(
                canonical_rows(&py.rows, &columns),
                last[*name],
                "view `{name}`: python reader"
            );
        }
        finals.push((workers, epochs, last));
    }
    for (workers, epochs, last) in &finals[1..] {
        assert_eq!(*epochs, finals[0].1, "{workers} workers: epochs");
        assert_eq!(*last, finals[0].2, "{workers} workers: final views");
    }
}

#[test]
fn views_survive_a_crash_and_a_restart_from_a_checkpoint() {
    let s = setup();
    // A crash between table commits (some tables and views of the epoch committed, others
    // not), then a restart; then a crash after a later epoch and a restart from the operator
    // state checkpoint (every 3 epochs), which loads the tables views read at the checkpoint's
    // cut.
    let lakehouse = s.dir.path().join("lh");
    let p = pipeline(&s, &lakehouse, "state_checkpoint_every = 3");
    let args = [
        "run",
        p.to_str().unwrap(),
        "--workers",
        "2",
        "--exit-when-idle",
    ];
    abort_at(&args, "between_table_commits:9", s.dir.path());
    abort_at(&args, "after_commit_before_manifest:5", s.dir.path());
    let out = tidewater_ok(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("operator state restored from the checkpoint"),
        "{stderr}"
    );
    let (_, last) = check_every_epoch(&lakehouse);
    // The same final views as an uninterrupted run.
    let clean = s.dir.path().join("clean");
    let q = pipeline(&s, &clean, "state_checkpoint_every = 3");
    tidewater_ok(&[
        "run",
        q.to_str().unwrap(),
        "--workers",
        "2",
        "--exit-when-idle",
    ]);
    let (_, expected) = check_every_epoch(&clean);
    assert_eq!(last, expected);
}

#[test]
fn a_declared_key_that_is_not_unique_stops_the_run() {
    let s = setup();
    let lakehouse = s.dir.path().join("lh");
    let p = pipeline(&s, &lakehouse, "");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(
        "\n[[view]]\nname = \"by_segment\"\nsql = \"SELECT segment, country FROM customers\"\nkeys = [\"segment\"]\n",
    );
    std::fs::write(&p, text).unwrap();
    let out = tidewater(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("view `by_segment`: ") && stderr.contains("have the same key (segment)"),
        "{stderr}"
    );
}

#[test]
fn unsupported_sql_in_a_view_is_a_config_error_naming_it() {
    let s = setup();
    let lakehouse = s.dir.path().join("lh");
    let p = pipeline(&s, &lakehouse, "");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(
        "\n[[view]]\nname = \"ranked\"\nsql = \"SELECT customer_id, RANK() OVER (ORDER BY total_spend) AS r FROM customers\"\n",
    );
    std::fs::write(&p, text).unwrap();
    let out = tidewater(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("view `ranked`.sql"), "{stderr}");
    assert!(!lakehouse.join("customers").exists(), "nothing runs");
}

/// Incrementality: after a large initial load, an epoch that moves one customer to another
/// country changes exactly the two group rows it touches — the view's event-log line of that
/// epoch counts 2 upserted rows, and its Delta commit rewrites at most the 2 buckets holding
/// them — while the view still equals SQLite over the table.
#[test]
fn a_small_change_touches_only_the_view_rows_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_file(
        &BankGenConfig {
            seed: 3,
            events: 3_000,
            keys: 1_000,
            ..BankGenConfig::default()
        },
        &input.join("00-initial.json"),
    )
    .unwrap();
    let lakehouse = dir.path().join("lh");
    let sql = "SELECT country, COUNT(*) AS customers, MAX(credit_limit) AS top FROM customers GROUP BY country";
    let p = bank_pipeline(
        dir.path(),
        &input,
        &lakehouse,
        "commit_every_records = 1000",
    );
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(&format!(
        "\n[[view]]\nname = \"by_country\"\nsql = \"{sql}\"\nbuckets = 8\n"
    ));
    std::fs::write(&p, text).unwrap();
    let run = || {
        tidewater_ok(&[
            "run",
            p.to_str().unwrap(),
            "--workers",
            "2",
            "--exit-when-idle",
        ])
    };
    run();
    let customers = deltalake_rows(&lakehouse.join("customers"), None).unwrap();
    let groups = deltalake_rows(&lakehouse.join("by_country"), None).unwrap();
    assert!(groups.len() >= 10, "countries: {}", groups.len());
    // A customer of a country with several customers moves to another country.
    let count = |c: &str| {
        groups
            .iter()
            .find(|g| g["country"] == c)
            .and_then(|g| g["customers"].as_i64())
            .unwrap_or(0)
    };
    let mover = customers
        .iter()
        .find(|r| r["country"].as_str().is_some_and(|c| count(c) >= 2))
        .expect("a customer to move");
    let from = mover["country"].as_str().unwrap().to_string();
    let to = groups
        .iter()
        .map(|g| g["country"].as_str().unwrap().to_string())
        .find(|c| *c != from)
        .unwrap();
    let lsn = customers
        .iter()
        .filter_map(|r| r["__lsn"].as_i64())
        .max()
        .unwrap()
        + 1;
    let mut after = mover.clone();
    after.retain(|k, _| !k.starts_with("__"));
    after.insert("country".into(), Value::String(to.clone()));
    std::fs::write(
        input.join("01-move.json"),
        format!(
            "{{\"before\":null,\"after\":{},\"source\":{{\"lsn\":{lsn},\"txId\":{lsn},\"ts_ms\":1}},\"op\":\"u\",\"ts_ms\":2}}\n",
            Value::Object(after)
        ),
    )
    .unwrap();
    let before_versions = manifests(&lakehouse);
    run();
    let after_versions = manifests(&lakehouse);
    let epoch = *after_versions.keys().next_back().unwrap();
    assert!(epoch > *before_versions.keys().next_back().unwrap());
    // The event log: the view's line of that epoch.
    let log = deltalake_rows(&lakehouse.join("_event_log"), None).unwrap();
    let line = log
        .iter()
        .find(|r| r["table"] == "by_country" && r["epoch"].as_u64() == Some(epoch))
        .expect("the view's event-log line");
    assert_eq!(line["upserted"].as_i64(), Some(2), "{line:?}");
    assert_eq!(line["deleted"].as_i64(), Some(0), "{line:?}");
    // Its commit rewrites only the buckets of the two changed rows.
    let version = after_versions[&epoch]["by_country"];
    let commit = std::fs::read_to_string(
        lakehouse
            .join("by_country/_delta_log")
            .join(format!("{version:020}.json")),
    )
    .unwrap();
    let adds = commit.lines().filter(|l| l.starts_with("{\"add\"")).count();
    let removes = commit
        .lines()
        .filter(|l| l.starts_with("{\"remove\""))
        .count();
    assert!((1..=2).contains(&adds) && adds == removes, "{commit}");
    // The moved counts, and the whole view against SQLite.
    let now = deltalake_rows(&lakehouse.join("by_country"), None).unwrap();
    let count_now = |c: &str| {
        now.iter()
            .find(|g| g["country"] == c)
            .and_then(|g| g["customers"].as_i64())
            .unwrap_or(0)
    };
    assert_eq!(count_now(&from), count(&from) - 1);
    assert_eq!(count_now(&to), count(&to) + 1);
    let table = deltalake_rows(&lakehouse.join("customers"), None).unwrap();
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute("CREATE TABLE customers (country, credit_limit)", [])
        .unwrap();
    for r in &table {
        db.execute(
            "INSERT INTO customers VALUES (?, ?)",
            [sql_of_json(&r["country"]), sql_of_json(&r["credit_limit"])],
        )
        .unwrap();
    }
    let mut stmt = db.prepare(sql).unwrap();
    let mut expected: Vec<String> = stmt
        .query_map([], |row| {
            Ok((0..3)
                .map(|i| cell_of_sql(&row.get::<_, Sql>(i).unwrap()))
                .collect::<Vec<_>>()
                .join(" | "))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    expected.sort();
    let columns: Vec<String> = ["country", "customers", "top"].map(String::from).into();
    assert_eq!(canonical_rows(&now, &columns), expected);
}

/// dbt-style test views (`test = "warn" | "fail"`): each epoch's event-log line of a test
/// view counts its violations at that cut (the sum of its `violations` column, else its
/// rows); `"fail"` stops the run before the violating epoch's manifest is written.
#[test]
fn test_views_count_violations_in_the_event_log_and_fail_stops_the_run() {
    let s = setup();
    let tests = "\n[[view]]\nname = \"t_rows\"\nsql = \"SELECT order_id FROM orders WHERE order_id > 500 AND amount > 400\"\ntest = \"warn\"\n\
                 \n[[view]]\nname = \"t_count\"\nsql = \"SELECT COUNT(*) AS violations FROM orders WHERE order_id > 500 AND amount > 400\"\ntest = \"warn\"\n";
    let lakehouse = s.dir.path().join("lh-warn");
    let p = pipeline(&s, &lakehouse, "");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(tests);
    std::fs::write(&p, text).unwrap();
    tidewater_ok(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
    let log = deltalake_rows(&lakehouse.join("_event_log"), None).expect("event log");
    let counted = |view: &str, epoch: u64| -> (u64, u64, String) {
        let row = log
            .iter()
            .find(|r| r["table"] == view && r["epoch"].as_u64() == Some(epoch))
            .unwrap_or_else(|| panic!("no event-log line of {view} at epoch {epoch}"));
        let x: Value = serde_json::from_str(row["expectations"].as_str().unwrap()).unwrap();
        let x = x.as_array().expect("array");
        assert_eq!(x.len(), 1, "{view}: {x:?}");
        assert_eq!(x[0]["name"], view);
        (
            x[0]["passed"].as_u64().unwrap(),
            x[0]["failed"].as_u64().unwrap(),
            x[0]["on_violation"].as_str().unwrap().to_string(),
        )
    };
    let (mut passing, mut failing) = (0, 0);
    for (epoch, versions) in manifests(&lakehouse) {
        let rows_of = |view: &str| match versions.get(view) {
            Some(v) => deltalake_rows(&lakehouse.join(view), Some(*v)).expect("view"),
            None => Vec::new(),
        };
        let rows = rows_of("t_rows").len() as u64;
        let count: u64 = rows_of("t_count")
            .iter()
            .map(|r| r["violations"].as_u64().unwrap())
            .sum();
        assert_eq!(rows, count, "the two tests agree at epoch {epoch}");
        for view in ["t_rows", "t_count"] {
            assert_eq!(
                counted(view, epoch),
                ((rows == 0) as u64, rows, "warn".to_string()),
                "{view} at epoch {epoch}"
            );
        }
        if rows == 0 {
            passing += 1;
        } else {
            failing += 1;
        }
    }
    assert!(
        passing > 0 && failing > 0,
        "passing {passing}, failing {failing}"
    );
    let status = tidewater_ok(&["status", "--lakehouse", lakehouse.to_str().unwrap()]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("test (warn): "), "{status}");

    // The same test with `fail`: the run stops at the first violating epoch, whose manifest
    // is never written.
    let lakehouse = s.dir.path().join("lh-fail");
    let p = pipeline(&s, &lakehouse, "");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(&tests.replace("\"warn\"", "\"fail\""));
    std::fs::write(&p, text).unwrap();
    let out = tidewater(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("(test = \"fail\"): ") && stderr.contains("violation(s) at epoch"),
        "{stderr}"
    );
    for (epoch, versions) in manifests(&lakehouse) {
        if let Some(v) = versions.get("t_rows") {
            let rows = deltalake_rows(&lakehouse.join("t_rows"), Some(*v)).expect("view");
            assert!(
                rows.is_empty(),
                "a manifest with a violation: epoch {epoch}"
            );
        }
    }
}
