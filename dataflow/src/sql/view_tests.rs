//! Views against an independent oracle: seeded random tables (NULLs, duplicates, deletes,
//! updates) change over several epochs; the view rendered on differential (1, 2 and 4
//! workers) must equal, at every epoch, what SQLite computes with the same SQL over the
//! tables' state at that epoch. Plus exact semantics SQLite cannot check (decimals, -0,
//! NaN, overflow), incrementality (the updates out of every operator in an epoch follow the
//! change, not the table size: [`OpCounts`]) and the errors for unsupported SQL.
//!
//! Comparison: our datums map to SQLite values (booleans → 0/1, doubles → REAL). Doubles
//! in the random data are multiples of 0.25, so every sum is exact in any order and SQLite
//! (whose SUM compensates) and we give identical bits; the comparison still allows a
//! relative 1e-12 for doubles, which only an order-dependent rounding could need.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::types::Value;
use tidewater_connectors::types::{Column, ColumnType, Datum, PackedRow, Row};

use super::{plan_query, render_query_counted, OpCounts, SqlError};

pub(super) type Catalog = BTreeMap<String, Vec<Column>>;
/// One epoch's changes: (table, row, +1 insert / -1 delete).
pub(super) type Epoch = Vec<(String, Row, isize)>;
/// Captured output updates: (row, epoch, diff).
pub(super) type Updates = Vec<(PackedRow, u64, isize)>;

fn col(name: &str, ty: ColumnType) -> Column {
    Column {
        name: name.into(),
        ty,
    }
}

fn catalog(tables: &[(&str, &[(&str, ColumnType)])]) -> Catalog {
    tables
        .iter()
        .map(|(t, cols)| {
            (
                t.to_string(),
                cols.iter().map(|(n, ty)| col(n, *ty)).collect(),
            )
        })
        .collect()
}

/// Runs `sql` over `epochs` of input changes on `workers` timely workers; returns every
/// output update. Epoch `e`'s changes are fed at time `e`, spread over the workers.
fn run_view(sql: &str, cat: &Catalog, epochs: &[Epoch], workers: usize) -> Updates {
    let views = [("view".to_string(), sql.to_string())];
    run_models(cat, &views, epochs, workers)
        .remove("view")
        .expect("the view's updates")
}

/// Renders every view (in order, each over the tables and the views before it) on
/// `workers` timely workers; feeds epoch `e`'s changes at time `e`. Returns every view's
/// output updates.
pub(super) fn run_models(
    tables: &Catalog,
    views: &[(String, String)],
    epochs: &[Epoch],
    workers: usize,
) -> BTreeMap<String, Updates> {
    run_models_with(tables, views, epochs, workers, &[])
}

/// [`run_models`] with event-time windows: `watermarks[e]` is the watermark after epoch `e`
/// (the same on every worker); a windowed view's rows get `window_closed` from them
/// (`emit = on_update`).
pub(super) fn run_models_with(
    tables: &Catalog,
    views: &[(String, String)],
    epochs: &[Epoch],
    workers: usize,
    watermarks: &[i64],
) -> BTreeMap<String, Updates> {
    run_models_counted(tables, views, epochs, workers, watermarks, false).0
}

/// Per view, per epoch: the updates out of the operators of its plan (summed over the
/// workers; see [`OpCounts`]).
pub(super) type Work = BTreeMap<String, BTreeMap<u64, u64>>;

/// [`run_models_with`], also counting the updates out of every operator of every view's
/// plan when `count` is set.
pub(super) fn run_models_counted(
    tables: &Catalog,
    views: &[(String, String)],
    epochs: &[Epoch],
    workers: usize,
    watermarks: &[i64],
    count: bool,
) -> (BTreeMap<String, Updates>, Work) {
    let work: Arc<Mutex<Work>> = Arc::default();
    let work_out = work.clone();
    let watermarks = Arc::new(watermarks.to_vec());
    let sinks: BTreeMap<String, Arc<Mutex<Updates>>> = views
        .iter()
        .map(|(name, _)| (name.clone(), Arc::new(Mutex::new(Vec::new()))))
        .collect();
    let (tables, views, epochs, shared) = (
        Arc::new(tables.clone()),
        Arc::new(views.to_vec()),
        Arc::new(epochs.to_vec()),
        sinks.clone(),
    );
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let shared = shared.clone();
        let counts: Vec<(String, OpCounts)> = views
            .iter()
            .map(|(name, _)| (name.clone(), OpCounts::new()))
            .collect();
        let watermarks = watermarks.clone();
        let mut marks_in: timely::dataflow::InputHandleVec<u64, i64> =
            timely::dataflow::InputHandleVec::new();
        let (mut sessions, probes) = worker.dataflow::<u64, _, _>(|scope| {
            use timely::dataflow::operators::vec::Input as _;
            let marks = scope.input_from(&mut marks_in);
            let mut catalog = (*tables).clone();
            let mut sessions = HashMap::new();
            let mut colls = HashMap::new();
            for name in tables.keys() {
                let (s, c) = scope.new_collection::<PackedRow, isize>();
                sessions.insert(name.clone(), s);
                colls.insert(name.clone(), c);
            }
            let mut probes = Vec::new();
            for ((name, sql), (_, op_counts)) in views.iter().zip(&counts) {
                let plan = plan_query(sql, &catalog).unwrap_or_else(|e| panic!("{name}: {e}"));
                let mut out = render_query_counted(&plan, &colls, count.then_some(op_counts))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let mut columns = plan.columns().to_vec();
                if let Some(w) = plan.window() {
                    out = crate::view::close_window_rows(
                        out,
                        marks.clone(),
                        w.end_col,
                        tidewater_operators::Emit::OnUpdate,
                        i64::MIN,
                    );
                    columns.push(Column {
                        name: crate::view::WINDOW_CLOSED.into(),
                        ty: ColumnType::Boolean,
                    });
                }
                let sink = shared[name].clone();
                let (probe, _) = out
                    .clone()
                    .inspect(move |(row, t, d)| sink.lock().unwrap().push((row.clone(), *t, *d)))
                    .probe();
                probes.push(probe);
                catalog.insert(name.clone(), columns);
                colls.insert(name.clone(), out);
            }
            (sessions, probes)
        });
        for (e, changes) in epochs.iter().enumerate() {
            for (i, (table, row, diff)) in changes.iter().enumerate() {
                if i % peers == index {
                    sessions
                        .get_mut(table)
                        .expect("table")
                        .update(PackedRow::pack(row), *diff);
                }
            }
            let next = e as u64 + 1;
            if let Some(w) = watermarks.get(e) {
                if e == 0 || watermarks[e - 1] != *w {
                    marks_in.send(*w);
                }
            }
            marks_in.advance_to(next);
            for s in sessions.values_mut() {
                s.advance_to(next);
                s.flush();
            }
            worker.step_while(|| probes.iter().any(|p| p.less_than(&next)));
        }
        let mut work = work.lock().unwrap();
        for (name, c) in &counts {
            let view = work.entry(name.clone()).or_default();
            for (epoch, n) in c.by_epoch() {
                *view.entry(epoch).or_default() += n;
            }
        }
    })
    .expect("timely");
    let updates = sinks
        .into_iter()
        .map(|(name, s)| {
            let updates = std::mem::take(&mut *s.lock().unwrap());
            (name, updates)
        })
        .collect();
    let work = std::mem::take(&mut *work_out.lock().unwrap());
    (updates, work)
}

/// The view's rows (with multiplicity) as of each epoch; panics on a negative count.
pub(super) fn states(updates: &Updates, epochs: usize) -> Vec<Vec<Row>> {
    (0..epochs as u64)
        .map(|e| {
            let mut acc: BTreeMap<PackedRow, isize> = BTreeMap::new();
            for (row, t, d) in updates {
                if *t <= e {
                    *acc.entry(row.clone()).or_default() += d;
                }
            }
            let mut rows = Vec::new();
            for (row, n) in acc {
                assert!(
                    n >= 0,
                    "negative multiplicity {n} of {:?} at epoch {e}",
                    row.unpack()
                );
                for _ in 0..n {
                    rows.push(row.unpack());
                }
            }
            rows
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The SQLite oracle.

pub(super) fn sqlite_type(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Float32 | ColumnType::Float64 | ColumnType::Decimal { .. } => "REAL",
        ColumnType::String => "TEXT",
        ColumnType::Bytes => "BLOB",
        _ => "INTEGER",
    }
}

pub(super) fn to_value(d: &Datum) -> Value {
    match d {
        Datum::Null => Value::Null,
        Datum::Bool(b) => Value::Integer(*b as i64),
        Datum::Int(i) | Datum::Timestamp(i) => Value::Integer(*i),
        Datum::Float(f) => Value::Real(*f),
        Datum::Str(s) => Value::Text(s.clone()),
        Datum::Bytes(b) => Value::Blob(b.clone()),
        Datum::Decimal(_) => panic!("no decimals in oracle tests"),
    }
}

/// The rows SQLite gives for `sql` over each epoch's table state.
fn oracle(sql: &str, cat: &Catalog, epochs: &[Epoch]) -> Vec<Vec<Vec<Value>>> {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    for (name, cols) in cat {
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
    let mut state: HashMap<String, Vec<Row>> = HashMap::new();
    let mut out = Vec::new();
    for changes in epochs {
        for (table, row, diff) in changes {
            let rows = state.entry(table.clone()).or_default();
            if *diff > 0 {
                rows.push(row.clone());
            } else {
                let i = rows
                    .iter()
                    .position(|r| r == row)
                    .expect("deleted row exists");
                rows.swap_remove(i);
            }
        }
        for (name, cols) in cat {
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
        let mut q = db.prepare(sql).unwrap();
        let n = q.column_count();
        let rows: Vec<Vec<Value>> = q
            .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        out.push(rows);
    }
    out
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Real(f) => Some(*f),
        _ => None,
    }
}

pub(super) fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x == y,
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => a == b,
        },
    }
}

/// NULL, then numbers (integers and reals by value), then text, then blobs.
fn value_cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    let rank = |v: &Value| match v {
        Value::Null => 0,
        Value::Integer(_) | Value::Real(_) => 1,
        Value::Text(_) => 2,
        Value::Blob(_) => 3,
    };
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => rank(a).cmp(&rank(b)),
        },
    }
}

pub(super) fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| value_cmp(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    rows
}

/// Runs `sql` on differential at 1, 2 and 4 workers and on SQLite; asserts equal views at
/// every epoch. Returns the number of rows compared (to check the test is not vacuous).
fn check(sql: &str, cat: &Catalog, epochs: &[Epoch]) -> usize {
    let want: Vec<Vec<Vec<Value>>> = oracle(sql, cat, epochs).into_iter().map(sorted).collect();
    let mut compared = 0;
    for workers in [1, 2, 4] {
        let got = states(&run_view(sql, cat, epochs, workers), epochs.len());
        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
            let g = sorted(g.iter().map(|r| r.iter().map(to_value).collect()).collect());
            let same = g.len() == w.len()
                && g.iter().zip(w).all(|(a, b)| {
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| value_eq(x, y))
                });
            assert!(
                same,
                "{sql}\nepoch {e}, {workers} worker(s):\nours   ({} rows): {g:?}\nsqlite ({} rows): {w:?}",
                g.len(),
                w.len()
            );
            compared += g.len();
        }
    }
    compared
}

// ---------------------------------------------------------------------------------------
// Random tables.

/// A random datum of type `ty` from a small domain (so joins match and groups repeat);
/// NULL with probability `nulls`.
fn random_datum(rng: &mut ChaCha8Rng, ty: ColumnType, domain: i64, nulls: f64) -> Datum {
    if rng.gen_bool(nulls) {
        return Datum::Null;
    }
    match ty {
        ColumnType::Float64 => Datum::Float(rng.gen_range(-4 * domain..=4 * domain) as f64 / 4.0),
        ColumnType::String => {
            let words = [
                "apple", "Berry", "cherry", "apricot", "date", "Fig", "a", "",
            ];
            Datum::Str(words[rng.gen_range(0..(domain as usize).min(words.len()))].to_string())
        }
        ColumnType::Boolean => Datum::Bool(rng.gen_bool(0.5)),
        _ => Datum::Int(rng.gen_range(0..domain)),
    }
}

/// How to generate one table: its columns, each with a domain size and a NULL rate.
struct Gen<'a> {
    name: &'a str,
    cols: &'a [(&'a str, ColumnType, i64, f64)],
    /// Rows inserted at epoch 1.
    initial: usize,
}

/// Epoch 0 is empty; epoch 1 inserts the initial rows (with duplicates); epochs 2.. insert,
/// delete and update (delete + insert of a changed copy) random rows.
fn random_epochs(seed: u64, gens: &[Gen<'_>], epochs: usize) -> (Catalog, Vec<Epoch>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cat: Catalog = gens
        .iter()
        .map(|g| {
            (
                g.name.to_string(),
                g.cols.iter().map(|(n, ty, _, _)| col(n, *ty)).collect(),
            )
        })
        .collect();
    let mut state: HashMap<&str, Vec<Row>> = HashMap::new();
    let mut out: Vec<Epoch> = vec![Vec::new()];
    for e in 1..epochs {
        let mut changes = Vec::new();
        for g in gens {
            let rows = state.entry(g.name).or_default();
            let new_row = |rng: &mut ChaCha8Rng| -> Row {
                g.cols
                    .iter()
                    .map(|(_, ty, dom, nulls)| random_datum(rng, *ty, *dom, *nulls))
                    .collect()
            };
            let inserts = if e == 1 { g.initial } else { g.initial / 8 + 1 };
            for _ in 0..inserts {
                let row = if !rows.is_empty() && rng.gen_bool(0.1) {
                    rows[rng.gen_range(0..rows.len())].clone() // a duplicate
                } else {
                    new_row(&mut rng)
                };
                rows.push(row.clone());
                changes.push((g.name.to_string(), row, 1));
            }
            if e > 1 {
                for _ in 0..(g.initial / 10 + 1) {
                    if rows.is_empty() {
                        break;
                    }
                    let row = rows.swap_remove(rng.gen_range(0..rows.len()));
                    if rng.gen_bool(0.5) {
                        // An update: the same row with one column changed.
                        let mut new = row.clone();
                        let c = rng.gen_range(0..g.cols.len());
                        let (_, ty, dom, nulls) = g.cols[c];
                        new[c] = random_datum(&mut rng, ty, dom, nulls);
                        rows.push(new.clone());
                        changes.push((g.name.to_string(), new, 1));
                    }
                    changes.push((g.name.to_string(), row, -1));
                }
            }
        }
        out.push(changes);
    }
    (cat, out)
}

const T_COLS: &[(&str, ColumnType, i64, f64)] = &[
    ("a", ColumnType::Int64, 8, 0.1),
    ("b", ColumnType::Int64, 6, 0.2),
    ("s", ColumnType::String, 6, 0.15),
    ("x", ColumnType::Float64, 5, 0.2),
];
const U_COLS: &[(&str, ColumnType, i64, f64)] = &[
    ("a", ColumnType::Int64, 10, 0.1),
    ("c", ColumnType::Int64, 6, 0.2),
    ("y", ColumnType::Float64, 8, 0.2),
    ("s", ColumnType::String, 7, 0.15),
];

/// Tables `t(a, b, s, x)` and `u(a, c, y, s)`, 60 and 40 rows at epoch 1, 6 epochs.
fn tu(seed: u64) -> (Catalog, Vec<Epoch>) {
    random_epochs(
        seed,
        &[
            Gen {
                name: "t",
                cols: T_COLS,
                initial: 60,
            },
            Gen {
                name: "u",
                cols: U_COLS,
                initial: 40,
            },
        ],
        6,
    )
}

fn check_tu(seed: u64, sql: &str) {
    let (cat, epochs) = tu(seed);
    let n = check(sql, &cat, &epochs);
    assert!(n > 0, "no rows compared for {sql}");
}

// ---------------------------------------------------------------------------------------
// One test per construct, against SQLite.

#[test]
fn oracle_projection_expressions() {
    check_tu(
        1,
        "SELECT a, b + 1 AS b1, a * b - 2 AS ab, -a AS neg, a % 3 AS m, \
         CASE WHEN b > 3 THEN 'hi' WHEN b IS NULL THEN 'null' ELSE 'lo' END AS k, \
         COALESCE(s, 'none') AS s2, lower(s) AS ls, upper(s) AS us, s || '!' AS bang, \
         concat(s, '-', a) AS cc, CAST(a AS DOUBLE) / 4 AS q, x * 2 + 0.5e0 AS x2, \
         x IS NULL AS xn, NOT (a > b) AS nab, a = b OR x > 1 AS o, length(s) AS len, \
         a BETWEEN 2 AND 5 AS btw, a IN (1, 3, NULL) AS inl, s LIKE 'a%' AS lk, \
         NULLIF(a, 2) AS ni \
         FROM t",
    );
}

#[test]
fn oracle_star_and_qualified_star() {
    check_tu(2, "SELECT * FROM t");
    check_tu(3, "SELECT t2.*, t2.a + 1 AS a1 FROM t AS t2");
    check_tu(4, "SELECT u.*, t.b FROM t JOIN u ON t.a = u.a");
}

#[test]
fn oracle_where() {
    check_tu(
        5,
        "SELECT a, s, x FROM t WHERE b > 2 AND (s LIKE 'a%' OR x < 0) OR a IS NULL",
    );
}

#[test]
fn oracle_qualified_names_and_aliases() {
    check_tu(
        6,
        "SELECT l.a AS left_a, r.c, l.s AS ls, r.s AS rs FROM t l JOIN u AS r ON l.a = r.a WHERE r.c <> l.b",
    );
}

#[test]
fn oracle_inner_join() {
    check_tu(7, "SELECT t.a, t.s, u.c, u.y FROM t JOIN u ON t.a = u.a");
}

#[test]
fn oracle_inner_join_several_keys_and_non_equi_condition() {
    check_tu(
        8,
        "SELECT t.a, t.b, u.c, u.y FROM t INNER JOIN u ON t.a = u.a AND t.b = u.c AND t.x < u.y",
    );
}

#[test]
fn oracle_join_keys_of_different_types_and_expressions() {
    // An int64 key against a double key (t.a = u.y), and expression keys.
    check_tu(
        9,
        "SELECT t.a, u.y, t.s FROM t JOIN u ON t.a = u.y AND lower(t.s) = lower(u.s)",
    );
}

#[test]
fn oracle_left_join() {
    check_tu(
        10,
        "SELECT t.a, t.s, u.c, u.y FROM t LEFT JOIN u ON t.a = u.a",
    );
}

#[test]
fn oracle_left_join_several_keys_and_right_condition() {
    check_tu(
        11,
        "SELECT t.a, t.s, u.c FROM t LEFT OUTER JOIN u ON t.a = u.a AND t.s = u.s AND u.c > 2",
    );
}

#[test]
fn oracle_chained_joins() {
    check_tu(
        12,
        "SELECT t.a, u.c, t2.s FROM t JOIN u ON t.a = u.a LEFT JOIN t AS t2 ON u.c = t2.b",
    );
}

#[test]
fn oracle_group_by_all_aggregates() {
    check_tu(
        13,
        "SELECT s, COUNT(*) AS n, COUNT(b) AS nb, COUNT(DISTINCT b) AS db, SUM(b) AS sb, \
         AVG(b) AS ab, MIN(b) AS mnb, MAX(b) AS mxb, SUM(x) AS sx, AVG(x) AS ax, \
         MIN(x) AS mnx, MAX(x) AS mxx, MIN(s) AS mns, COUNT(DISTINCT x) AS dx \
         FROM t GROUP BY s",
    );
}

#[test]
fn oracle_group_by_expressions_positions_and_aliases() {
    check_tu(
        14,
        "SELECT a % 3 AS m, b, SUM(a) * 2 AS s2, COALESCE(SUM(x), 0) AS sx FROM t GROUP BY a % 3, b",
    );
    check_tu(15, "SELECT s AS word, COUNT(*) AS n FROM t GROUP BY word");
    check_tu(16, "SELECT b, s, MAX(a) AS mx FROM t GROUP BY 2, 1");
}

#[test]
fn oracle_having() {
    check_tu(
        17,
        "SELECT a, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY a HAVING COUNT(*) > 1 AND SUM(b) IS NOT NULL",
    );
}

#[test]
fn oracle_aggregates_without_group_by() {
    check_tu(
        18,
        "SELECT COUNT(*) AS n, COUNT(b) AS nb, SUM(b) AS sb, AVG(x) AS ax, MIN(s) AS mn, MAX(b) AS mx FROM t WHERE a > 5",
    );
    // Over an input that is empty at some epochs: a row of COUNT = 0 and NULLs.
    check_tu(
        19,
        "SELECT COUNT(*) AS n, SUM(b) AS sb, MAX(x) AS mx FROM t WHERE a = 7 AND b = 5 AND s = 'apple'",
    );
    check_tu(20, "SELECT COUNT(*) AS n FROM t HAVING COUNT(*) > 40");
}

#[test]
fn oracle_select_distinct() {
    check_tu(21, "SELECT DISTINCT a, s FROM t");
    check_tu(22, "SELECT DISTINCT x FROM t");
}

#[test]
fn oracle_with_ctes() {
    check_tu(
        23,
        "WITH big AS (SELECT a, b FROM t WHERE b > 1), \
              agg AS (SELECT a, COUNT(*) AS n FROM big GROUP BY a) \
         SELECT big.a, big.b, agg.n FROM big JOIN agg ON big.a = agg.a",
    );
    // A CTE used twice, and one referring to another.
    check_tu(
        24,
        "WITH k AS (SELECT a, c FROM u WHERE c IS NOT NULL), k2 AS (SELECT a, c + 1 AS c FROM k) \
         SELECT k.a, k.c, k2.c AS c2 FROM k JOIN k2 ON k.a = k2.a",
    );
}

#[test]
fn oracle_union_all_and_union() {
    check_tu(25, "SELECT a, s FROM t UNION ALL SELECT c, s FROM u");
    check_tu(26, "SELECT a, s FROM t UNION SELECT a, s FROM u");
    // Types unified across the branches (int64 and double → double).
    check_tu(
        27,
        "SELECT a, x FROM t UNION ALL SELECT a, c FROM u UNION ALL SELECT c, y FROM u",
    );
}

#[test]
fn oracle_subqueries_in_from() {
    check_tu(
        28,
        "SELECT q.a, q.total FROM (SELECT a, SUM(b) AS total FROM t GROUP BY a) AS q WHERE q.total > 3",
    );
    check_tu(
        29,
        "SELECT t.a, q.n FROM t LEFT JOIN (SELECT a, COUNT(*) AS n FROM u GROUP BY a) q ON t.a = q.a",
    );
}

/// The marketing star schema of issue 7: `dim_user` (users LEFT JOIN leads on email),
/// opens LEFT JOIN clicks on (email_send_id, lead_id), engagement per billing country.
#[test]
fn oracle_marketing_star_schema() {
    let (cat, epochs) = random_epochs(
        99,
        &[
            Gen {
                name: "accounts",
                cols: &[
                    ("account_id", ColumnType::Int64, 12, 0.0),
                    ("billing_country", ColumnType::String, 5, 0.1),
                ],
                initial: 12,
            },
            Gen {
                name: "users",
                cols: &[
                    ("id", ColumnType::Int64, 40, 0.0),
                    ("email", ColumnType::String, 7, 0.1),
                    ("account_id", ColumnType::Int64, 14, 0.1),
                ],
                initial: 30,
            },
            Gen {
                name: "leads",
                cols: &[
                    ("lead_id", ColumnType::Int64, 20, 0.0),
                    ("email", ColumnType::String, 7, 0.1),
                ],
                initial: 20,
            },
            Gen {
                name: "opens",
                cols: &[
                    ("email_send_id", ColumnType::Int64, 10, 0.05),
                    ("lead_id", ColumnType::Int64, 20, 0.05),
                    ("campaign", ColumnType::String, 4, 0.1),
                ],
                initial: 150,
            },
            Gen {
                name: "clicks",
                cols: &[
                    ("email_send_id", ColumnType::Int64, 10, 0.05),
                    ("lead_id", ColumnType::Int64, 20, 0.05),
                    ("url", ColumnType::String, 5, 0.1),
                ],
                initial: 60,
            },
        ],
        7,
    );
    let sql = "
WITH dim_user AS (
    SELECT u.id AS user_id, u.email, u.account_id, l.lead_id
    FROM users u LEFT JOIN leads l ON u.email = l.email
    WHERE u.email IS NOT NULL AND u.account_id IS NOT NULL
),
open_clicks AS (
    SELECT o.email_send_id, o.lead_id, o.campaign, c.url
    FROM opens o LEFT JOIN clicks c
      ON o.email_send_id = c.email_send_id AND o.lead_id = c.lead_id
),
engagement AS (
    SELECT a.billing_country AS country, COUNT(*) AS opens, COUNT(oc.url) AS clicks,
           COUNT(DISTINCT oc.lead_id) AS leads
    FROM open_clicks oc
    JOIN dim_user du ON oc.lead_id = du.lead_id
    JOIN accounts a ON du.account_id = a.account_id
    GROUP BY a.billing_country
)
SELECT country, opens, clicks, leads, CAST(clicks AS DOUBLE) / opens AS click_ratio
FROM engagement";
    let n = check(sql, &cat, &epochs);
    assert!(n > 20, "only {n} rows compared");
    // Per campaign, with HAVING.
    let sql2 = "
SELECT o.campaign, COUNT(*) AS opens, COUNT(c.url) AS clicks, MAX(c.url) AS last_url
FROM opens o LEFT JOIN clicks c ON o.email_send_id = c.email_send_id AND o.lead_id = c.lead_id
GROUP BY o.campaign HAVING COUNT(*) > 2";
    assert!(check(sql2, &cat, &epochs) > 0);
}

// ---------------------------------------------------------------------------------------
// Exact semantics beyond the oracle.

/// The view's rows after one epoch inserting `rows` (table → rows), sorted.
fn view_once(sql: &str, cat: &Catalog, rows: &[(&str, Vec<Row>)]) -> Vec<Row> {
    let epoch: Epoch = rows
        .iter()
        .flat_map(|(t, rs)| rs.iter().map(move |r| (t.to_string(), r.clone(), 1)))
        .collect();
    let mut out = states(&run_view(sql, cat, &[epoch], 2), 1).remove(0);
    out.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out
}

fn dec(p: u8, s: i8) -> ColumnType {
    ColumnType::Decimal {
        precision: p,
        scale: s,
    }
}

#[test]
fn decimal_sum_and_avg_are_exact() {
    let cat = catalog(&[("d", &[("g", ColumnType::Int64), ("v", dec(10, 2))])]);
    let plan = plan_query("SELECT g, SUM(v) AS s, AVG(v) AS a FROM d GROUP BY g", &cat).unwrap();
    assert_eq!(plan.columns()[1].ty, dec(20, 2));
    assert_eq!(plan.columns()[2].ty, dec(14, 6));
    let rows = vec![
        vec![Datum::Int(1), Datum::Decimal(10)], // 0.10
        vec![Datum::Int(1), Datum::Decimal(20)], // 0.20
        vec![Datum::Int(1), Datum::Decimal(-5)], // -0.05
        vec![Datum::Int(1), Datum::Null],
        vec![Datum::Int(2), Datum::Null],
    ];
    let got = view_once(plan.sql(), &cat, &[("d", rows)]);
    assert_eq!(
        got,
        vec![
            // 0.25, avg 0.083333 (rounded half away from zero at scale 6)
            vec![Datum::Int(1), Datum::Decimal(25), Datum::Decimal(83_333)],
            vec![Datum::Int(2), Datum::Null, Datum::Null],
        ]
    );
}

#[test]
fn int_sum_overflow_is_null_and_avg_of_ints_is_double() {
    let cat = catalog(&[("d", &[("g", ColumnType::Int64), ("v", ColumnType::Int64)])]);
    let rows = vec![
        vec![Datum::Int(1), Datum::Int(i64::MAX)],
        vec![Datum::Int(1), Datum::Int(1)],
        vec![Datum::Int(2), Datum::Int(i64::MAX)],
        vec![Datum::Int(2), Datum::Int(-1)],
        vec![Datum::Int(3), Datum::Int(1)],
        vec![Datum::Int(3), Datum::Int(2)],
    ];
    let got = view_once(
        "SELECT g, SUM(v) AS s, AVG(v) AS a FROM d GROUP BY g",
        &cat,
        &[("d", rows)],
    );
    assert_eq!(got[0][1], Datum::Null, "i64::MAX + 1 overflows");
    assert_eq!(got[1][1], Datum::Int(i64::MAX - 1));
    assert_eq!(
        got[2],
        vec![Datum::Int(3), Datum::Int(3), Datum::Float(1.5)]
    );
}

#[test]
fn doubles_group_and_join_as_sql_values() {
    // -0 = 0 (one group, one join key); NaN = NaN; NULL keys never match but form a group.
    let cat = catalog(&[
        ("f", &[("x", ColumnType::Float64), ("n", ColumnType::Int64)]),
        (
            "g",
            &[("x", ColumnType::Float64), ("tag", ColumnType::String)],
        ),
    ]);
    let f = vec![
        vec![Datum::Float(-0.0), Datum::Int(1)],
        vec![Datum::Float(0.0), Datum::Int(2)],
        vec![Datum::Float(f64::NAN), Datum::Int(3)],
        vec![Datum::Float(-f64::NAN), Datum::Int(4)],
        vec![Datum::Null, Datum::Int(5)],
        vec![Datum::Null, Datum::Int(6)],
    ];
    let g = vec![
        vec![Datum::Float(0.0), Datum::Str("zero".into())],
        vec![Datum::Float(f64::NAN), Datum::Str("nan".into())],
        vec![Datum::Null, Datum::Str("null".into())],
    ];
    let tables = [("f", f), ("g", g)];
    let grouped = view_once("SELECT x, SUM(n) AS s FROM f GROUP BY x", &cat, &tables);
    assert_eq!(grouped.len(), 3, "{grouped:?}");
    assert_eq!(grouped[0], vec![Datum::Null, Datum::Int(11)]);
    assert_eq!(grouped[1], vec![Datum::Float(0.0), Datum::Int(3)]);
    assert!(matches!(grouped[2][0], Datum::Float(x) if x.is_nan()));
    assert_eq!(grouped[2][1], Datum::Int(7));
    let joined = view_once(
        "SELECT f.n, g.tag FROM f LEFT JOIN g ON f.x = g.x",
        &cat,
        &tables,
    );
    let pairs: Vec<(i64, Option<String>)> = joined
        .iter()
        .map(|r| match (&r[0], &r[1]) {
            (Datum::Int(n), Datum::Str(s)) => (*n, Some(s.clone())),
            (Datum::Int(n), Datum::Null) => (*n, None),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut pairs = pairs;
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            (1, Some("zero".into())),
            (2, Some("zero".into())),
            (3, Some("nan".into())),
            (4, Some("nan".into())),
            (5, None),
            (6, None),
        ]
    );
    let distinct = view_once("SELECT DISTINCT x FROM f", &cat, &tables);
    assert_eq!(distinct.len(), 3, "{distinct:?}");
}

#[test]
fn join_keys_of_int_and_decimal_compare_exactly() {
    let cat = catalog(&[
        ("a", &[("k", ColumnType::Int32), ("v", ColumnType::String)]),
        ("b", &[("k", dec(5, 2)), ("w", ColumnType::String)]),
    ]);
    let a = vec![
        vec![Datum::Int(3), Datum::Str("three".into())],
        vec![Datum::Int(4), Datum::Str("four".into())],
    ];
    let b = vec![
        vec![Datum::Decimal(300), Datum::Str("3.00".into())],
        vec![Datum::Decimal(301), Datum::Str("3.01".into())],
        vec![Datum::Decimal(400), Datum::Str("4.00".into())],
    ];
    let got = view_once(
        "SELECT a.v, b.w FROM a JOIN b ON a.k = b.k",
        &cat,
        &[("a", a), ("b", b)],
    );
    assert_eq!(
        got,
        vec![
            vec![Datum::Str("four".into()), Datum::Str("4.00".into())],
            vec![Datum::Str("three".into()), Datum::Str("3.00".into())],
        ]
    );
}

#[test]
fn plan_reports_output_columns_and_inputs() {
    let cat = catalog(&[
        (
            "t",
            &[
                ("a", ColumnType::Int32),
                ("s", ColumnType::String),
                ("x", ColumnType::Float32),
            ],
        ),
        ("u", &[("a", ColumnType::Int64)]),
    ]);
    let plan = plan_query(
        "WITH w AS (SELECT a FROM u) SELECT t.a, s AS name, COUNT(*), SUM(t.a) AS total, AVG(x) AS ax, MIN(s) AS first \
         FROM t JOIN w ON t.a = w.a GROUP BY t.a, s",
        &cat,
    )
    .unwrap();
    let cols: Vec<(String, ColumnType)> = plan
        .columns()
        .iter()
        .map(|c| (c.name.clone(), c.ty))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("a".to_string(), ColumnType::Int32),
            ("name".to_string(), ColumnType::String),
            ("COUNT(*)".to_string(), ColumnType::Int64),
            ("total".to_string(), ColumnType::Int64),
            ("ax".to_string(), ColumnType::Float64),
            ("first".to_string(), ColumnType::String),
        ]
    );
    assert_eq!(plan.inputs().collect::<Vec<_>>(), vec!["t", "u"]);
}

// ---------------------------------------------------------------------------------------
// Incrementality: output updates per epoch follow the change, not the table size.

/// Feeds `rows` at epoch 0 and `change` at epoch 1; returns the number of (consolidated)
/// output updates at epoch 1 and the number of output rows at epoch 0.
fn updates_for_change(sql: &str, cat: &Catalog, rows: Epoch, change: Epoch) -> (usize, usize) {
    let updates = run_view(sql, cat, &[rows, change], 2);
    let mut at: [BTreeMap<PackedRow, isize>; 2] = [BTreeMap::new(), BTreeMap::new()];
    for (row, t, d) in updates {
        *at[t as usize].entry(row).or_default() += d;
    }
    let count = |m: &BTreeMap<PackedRow, isize>| m.values().filter(|d| **d != 0).count();
    (count(&at[1]), count(&at[0]))
}

#[test]
fn one_changed_row_changes_one_group() {
    let cat = catalog(&[
        (
            "big",
            &[
                ("k", ColumnType::Int64),
                ("g", ColumnType::Int64),
                ("v", ColumnType::Int64),
            ],
        ),
        (
            "dim",
            &[("g", ColumnType::Int64), ("name", ColumnType::String)],
        ),
    ]);
    let n = 20_000i64;
    let row = |k: i64, g: i64, v: i64| vec![Datum::Int(k), Datum::Int(g), Datum::Int(v)];
    let big: Epoch = (0..n)
        .map(|k| ("big".to_string(), row(k, k % 100, k), 1))
        .chain((0..100).map(|g| {
            (
                "dim".to_string(),
                vec![Datum::Int(g), Datum::Str(format!("g{g}"))],
                1,
            )
        }))
        .collect();
    let update_v = vec![
        ("big".to_string(), row(42, 42, 42), -1),
        ("big".to_string(), row(42, 42, 1_000), 1),
    ];
    let move_group = vec![
        ("big".to_string(), row(42, 42, 42), -1),
        ("big".to_string(), row(42, 7, 42), 1),
    ];
    let agg = "SELECT g, COUNT(*) AS n, SUM(v) AS s, AVG(v) AS a FROM big GROUP BY g";
    // One group's old row retracted, its new row inserted.
    assert_eq!(
        updates_for_change(agg, &cat, big.clone(), update_v.clone()),
        (2, 100)
    );
    // A row moving between groups: two groups change.
    assert_eq!(
        updates_for_change(agg, &cat, big.clone(), move_group),
        (4, 100)
    );
    // A join + aggregate: still one group.
    let joined = "SELECT d.name, COUNT(*) AS n, SUM(b.v) AS sv, MAX(b.v) AS mx FROM big b JOIN dim d ON b.g = d.g GROUP BY d.name";
    assert_eq!(
        updates_for_change(joined, &cat, big.clone(), update_v.clone()),
        (2, 100)
    );
    // A plain join: the changed row's one output row.
    let plain = "SELECT b.k, b.v, d.name FROM big b JOIN dim d ON b.g = d.g";
    assert_eq!(
        updates_for_change(plain, &cat, big.clone(), update_v),
        (2, n as usize)
    );
    // A dimension row changing: exactly its 200 joined rows are replaced.
    let dim_change = vec![
        (
            "dim".to_string(),
            vec![Datum::Int(5), Datum::Str("g5".into())],
            -1,
        ),
        (
            "dim".to_string(),
            vec![Datum::Int(5), Datum::Str("five".into())],
            1,
        ),
    ];
    assert_eq!(
        updates_for_change(plain, &cat, big, dim_change),
        (2 * (n as usize / 100), n as usize)
    );
}

// ---------------------------------------------------------------------------------------
// Incrementality: the work of an epoch (updates out of every operator of the plan) follows
// the change, not the size of the tables.

/// The shop: `orders` (n rows) of `n / 50` customers (50 orders each: many groups, a change
/// touches one), and `customers` (a tenth more, without orders).
fn shop_catalog() -> Catalog {
    catalog(&[
        (
            "orders",
            &[
                ("id", ColumnType::Int64),
                ("customer", ColumnType::Int64),
                ("amount", ColumnType::Int64),
                ("product", ColumnType::Int64),
            ],
        ),
        (
            "customers",
            &[
                ("id", ColumnType::Int64),
                ("region", ColumnType::String),
                ("name", ColumnType::String),
            ],
        ),
    ])
}

fn order(id: i64, customer: i64, amount: i64, product: i64) -> (String, Row, isize) {
    let row = vec![
        Datum::Int(id),
        Datum::Int(customer),
        Datum::Int(amount),
        Datum::Int(product),
    ];
    ("orders".to_string(), row, 1)
}

/// Epoch 0: the shop with `n` orders. Epoch 1: three rows change — order 42's amount is
/// updated, order 99 is deleted, and a customer without orders gets its first one.
fn shop_epochs(n: i64) -> Vec<Epoch> {
    let groups = n / 50;
    let amount = |id: i64| (id * 7919) % 1000;
    let product = |id: i64| (id * 31) % 97;
    let mut e0: Epoch = (0..n)
        .map(|id| order(id, id % groups, amount(id), product(id)))
        .collect();
    e0.extend((0..groups + groups / 10).map(|id| {
        let row = vec![
            Datum::Int(id),
            Datum::Str(format!("r{}", id % 8)),
            Datum::Str(format!("c{id}")),
        ];
        ("customers".to_string(), row, 1)
    }));
    let neg = |(t, r, _): (String, Row, isize)| (t, r, -1);
    let e1: Epoch = vec![
        neg(order(42, 42, amount(42), product(42))),
        order(42, 42, amount(42) + 1, product(42)),
        neg(order(99, 99 % groups, amount(99), product(99))),
        order(n, groups + 1, 5, 3),
    ];
    vec![e0, e1]
}

/// The views of the incrementality tests: a join, a GROUP BY with every aggregate, COUNT
/// (DISTINCT), a LEFT JOIN (with padded rows), WITH queries and UNION ALL.
fn shop_views() -> Vec<(String, String)> {
    [
        (
            "join",
            "SELECT o.id, o.amount, c.region FROM orders o JOIN customers c ON o.customer = c.id",
        ),
        (
            "group_by",
            "SELECT customer, COUNT(*) AS n, SUM(amount) AS s, AVG(amount) AS a, \
             MIN(amount) AS lo, MAX(amount) AS hi FROM orders GROUP BY customer",
        ),
        (
            "count_distinct",
            "SELECT customer, COUNT(DISTINCT product) AS products FROM orders GROUP BY customer",
        ),
        (
            "left_join",
            "SELECT c.id, c.name, o.id AS order_id, o.amount \
             FROM customers c LEFT JOIN orders o ON o.customer = c.id",
        ),
        (
            "cte_union",
            "WITH big AS (SELECT id, customer FROM orders WHERE amount >= 500), \
             small AS (SELECT id, customer FROM orders WHERE amount < 500) \
             SELECT id, 'big' AS kind FROM big UNION ALL SELECT id, 'small' AS kind FROM small",
        ),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s.to_string()))
    .collect()
}

/// Per view: the operator updates of epoch 0 and epoch 1.
fn shop_work(n: i64, workers: usize, epochs: &[Epoch]) -> BTreeMap<String, (u64, u64)> {
    let (_, work) = run_models_counted(&shop_catalog(), &shop_views(), epochs, workers, &[], true);
    work.into_iter()
        .map(|(view, by_epoch)| {
            let at = |e: u64| by_epoch.get(&e).copied().unwrap_or(0);
            eprintln!(
                "{n} orders, {workers} worker(s), `{view}`: epoch 0: {}, epoch 1: {}",
                at(0),
                at(1)
            );
            (view, (at(0), at(1)))
        })
        .collect()
}

#[test]
fn an_epoch_changing_three_rows_does_work_independent_of_the_table_size() {
    // Exact updates out of the plan's operators in epoch 1, per view. The change is 4
    // updates of `orders` (order 42: -old +new; order 99: -; the new order: +).
    let want: BTreeMap<&str, u64> = BTreeMap::from([
        // Left keys 4, matchable left rows 4, join matches 4, projection 4.
        ("join", 16),
        // Group keys 4; reduce 5 (customers 42 and 99: -old +new; the new customer: +);
        // aggregate rows 5; projection 5.
        ("group_by", 19),
        // As `group_by`, but customer 42's distinct products do not change: reduce 3,
        // aggregate rows 3, projection 3.
        ("count_distinct", 13),
        // Right keys 4, join matches 4; the new customer's key: distinct right keys 1,
        // matched left rows 1, its padded row retracted 1; left join output 4 + 1;
        // projection 5.
        ("left_join", 21),
        // The two WHERE filters 3 + 1 (orders 42 and 99 are `big`, the new one `small`),
        // the WITH queries' projections 4, the outer projections 4, UNION ALL 4.
        ("cte_union", 16),
    ]);
    let small = shop_work(5_000, 2, &shop_epochs(5_000));
    let big = shop_work(20_000, 2, &shop_epochs(20_000));
    assert_eq!(
        small.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (view, n) in &want {
        let ((s0, s1), (b0, b1)) = (small[*view], big[*view]);
        // Epoch 0 loads the tables: at least one update per order.
        assert!(s0 >= 5_000 && b0 >= 20_000, "`{view}`: epoch 0: {s0}, {b0}");
        // Epoch 1: the same small amount of work at both sizes.
        assert_eq!((s1, b1), (*n, *n), "`{view}`: epoch 1 at 5k and 20k orders");
        assert!(*n <= 40, "`{view}`");
    }
    // The same at one worker (the counts do not depend on the partitioning).
    let one = shop_work(5_000, 1, &shop_epochs(5_000));
    for (view, n) in &want {
        assert_eq!(one[*view].1, *n, "`{view}` at 1 worker");
    }
}

#[test]
fn the_counter_sees_a_plan_that_recomputes_everything() {
    // What a recompute-and-diff plan pushes through its operators each epoch: every row
    // retracted and inserted again (with the change). The same measure then grows with the
    // table, so the bounds above fail for such a plan.
    for n in [5_000i64, 20_000] {
        let epochs = shop_epochs(n);
        let mut state: BTreeMap<(String, PackedRow), isize> = BTreeMap::new();
        for (t, r, d) in epochs[0].iter() {
            *state.entry((t.clone(), PackedRow::pack(r))).or_default() += d;
        }
        let mut recompute: Epoch = state
            .iter()
            .map(|((t, r), d)| (t.clone(), r.unpack(), -d))
            .collect();
        for (t, r, d) in epochs[1].iter() {
            *state.entry((t.clone(), PackedRow::pack(r))).or_default() += d;
        }
        recompute.extend(
            state
                .iter()
                .filter(|(_, d)| **d != 0)
                .map(|((t, r), d)| (t.clone(), r.unpack(), *d)),
        );
        let work = shop_work(n, 2, &[epochs[0].clone(), recompute]);
        for (view, (_, e1)) in work {
            assert!(
                e1 >= 2 * n as u64,
                "`{view}`: {e1} updates in epoch 1 at {n} orders"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors.

fn err(sql: &str) -> String {
    let cat = catalog(&[
        (
            "t",
            &[
                ("a", ColumnType::Int64),
                ("b", ColumnType::Int64),
                ("s", ColumnType::String),
            ],
        ),
        ("u", &[("a", ColumnType::Int64), ("c", ColumnType::Int64)]),
    ]);
    match plan_query(sql, &cat) {
        Ok(_) => panic!("`{sql}` was accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_unsupported(sql: &str, construct: &str, at: &str) {
    let e = err(sql);
    let want = format!("unsupported construct `{construct}` at {at}");
    assert!(e.starts_with(&want), "`{sql}`:\n got  {e}\n want {want}");
}

#[test]
fn unsupported_order_by_and_limit() {
    assert_unsupported(
        "SELECT a FROM t ORDER BY a",
        "ORDER BY (a view is an unordered set of rows)",
        "1:17",
    );
    assert_unsupported("SELECT a FROM t\nLIMIT 10", "LIMIT / OFFSET", "2:1");
    assert_unsupported("SELECT a FROM t OFFSET 10", "LIMIT / OFFSET", "1:17");
    assert_unsupported("SELECT a FROM t FETCH FIRST 1 ROWS ONLY", "FETCH", "1:17");
}

#[test]
fn unsupported_window_function() {
    assert_unsupported(
        "SELECT a, ROW_NUMBER() OVER (PARTITION BY a) FROM t",
        "window function row_number(...) OVER",
        "1:11",
    );
    assert_unsupported(
        "SELECT a, SUM(b) OVER (PARTITION BY a) AS s FROM t",
        "window function sum(...) OVER",
        "1:11",
    );
}

#[test]
fn unsupported_joins() {
    assert_unsupported(
        "SELECT t.a FROM t RIGHT JOIN u ON t.a = u.a",
        "RIGHT JOIN (swap the sides and use LEFT JOIN)",
        "1:19",
    );
    assert_unsupported(
        "SELECT t.a FROM t FULL OUTER JOIN u ON t.a = u.a",
        "FULL OUTER JOIN",
        "1:19",
    );
    assert_unsupported("SELECT t.a FROM t CROSS JOIN u", "CROSS JOIN", "1:19");
    assert_unsupported("SELECT t.a FROM t NATURAL JOIN u", "NATURAL JOIN", "1:19");
    assert_unsupported(
        "SELECT t.a FROM t LEFT SEMI JOIN u ON t.a = u.a",
        "SEMI JOIN",
        "1:19",
    );
    assert_unsupported(
        "SELECT t.a FROM t JOIN u",
        "JOIN without ON (a cross join)",
        "1:19",
    );
    // The second of two joins.
    assert_unsupported(
        "SELECT t.a FROM t JOIN u ON t.a = u.a\n  RIGHT OUTER JOIN u v ON v.a = t.a",
        "RIGHT JOIN (swap the sides and use LEFT JOIN)",
        "2:3",
    );
    assert_unsupported(
        "SELECT t.a FROM (t JOIN u ON t.a = u.a) AS x",
        "alias of a parenthesized join",
        "1:44",
    );
    assert_unsupported(
        "SELECT t.a FROM t, u WHERE t.a = u.a",
        "comma join (FROM a, b); write a JOIN ... ON",
        "1:20",
    );
    assert_unsupported(
        "SELECT t.a FROM t JOIN u USING (a)",
        "JOIN ... USING (write ON a.x = b.x)",
        "1:26",
    );
    assert_unsupported(
        "SELECT t.a FROM t JOIN u ON t.a < u.a",
        "JOIN without an equality between the two sides in ON (a cross join)",
        "1:29",
    );
    assert_unsupported(
        "SELECT t.a FROM t LEFT JOIN u ON t.a = u.a AND t.b > 1",
        "condition `t.b > 1` in LEFT JOIN ... ON (only equalities between the two sides and conditions on the right side alone)",
        "1:48",
    );
}

#[test]
fn unsupported_subqueries_in_expressions() {
    assert_unsupported(
        "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a)",
        "EXISTS (subquery)",
        "1:23",
    );
    assert_unsupported(
        "SELECT a FROM t WHERE b > 1 AND NOT EXISTS (SELECT 1 FROM u WHERE u.a = t.a)",
        "NOT EXISTS (subquery)",
        "1:33",
    );
    assert_unsupported(
        "SELECT a FROM t WHERE a IN (SELECT a FROM u)",
        "IN (subquery)",
        "1:23",
    );
    assert_unsupported(
        "SELECT a, (SELECT MAX(c) FROM u WHERE u.a = t.a) AS m FROM t",
        "scalar subquery",
        "1:12",
    );
    assert_unsupported(
        "SELECT t.a FROM t JOIN LATERAL (SELECT c FROM u WHERE u.a = t.a) x ON x.c = t.a",
        "LATERAL subquery",
        "1:24",
    );
}

#[test]
fn unsupported_recursive_cte_and_set_operations() {
    assert_unsupported(
        "WITH RECURSIVE r AS (SELECT a FROM t UNION ALL SELECT a + 1 FROM r) SELECT a FROM r",
        "WITH RECURSIVE",
        "1:1",
    );
    assert_unsupported("SELECT a FROM t EXCEPT SELECT a FROM u", "EXCEPT", "1:17");
    assert_unsupported(
        "SELECT a FROM t INTERSECT SELECT a FROM u",
        "INTERSECT",
        "1:17",
    );
    assert_unsupported(
        "SELECT a FROM t UNION ALL SELECT a FROM u EXCEPT SELECT a FROM u",
        "EXCEPT",
        "1:43",
    );
    assert_unsupported(
        "SELECT a FROM t UNION BY NAME SELECT a FROM u",
        "UNION BY NAME",
        "1:17",
    );
}

#[test]
fn unsupported_misc() {
    assert_unsupported("SELECT 1", "SELECT without FROM", "1:1");
    assert_unsupported("SELECT DISTINCT ON (a) a, b FROM t", "DISTINCT ON", "1:8");
    assert_unsupported("SELECT a FROM t GROUP BY ROLLUP (a)", "ROLLUP (a)", "1:26");
    assert_unsupported(
        "SELECT a FROM t GROUP BY a WITH ROLLUP",
        "GROUP BY modifier WITH ROLLUP",
        "1:28",
    );
    assert_unsupported(
        "INSERT INTO t VALUES (1, 2, 'x')",
        "statement INSERT (a view is one SELECT)",
        "1:1",
    );
    assert_unsupported(
        "SELECT a FROM t; SELECT a FROM u",
        "more than one statement (a view is one SELECT)",
        "1:18",
    );
    assert_unsupported(
        "SELECT COUNT(b) FILTER (WHERE b > 1) FROM t",
        "count(...) FILTER (WHERE ...)",
        "1:8",
    );
    assert_unsupported(
        "SELECT a FROM t WHERE SUM(b) > 1",
        "aggregate sum(...) in a scalar expression",
        "1:23",
    );
}

#[test]
fn name_and_type_errors() {
    let e = err("SELECT a FROM nope");
    assert!(
        e.starts_with("unknown table or view `nope` at 1:15 (known: t, u)"),
        "{e}"
    );
    let e = err("SELECT a FROM t JOIN u ON t.a = u.a");
    assert!(
        e.starts_with("column name `a` is ambiguous (in t and u); qualify it at 1:8"),
        "{e}"
    );
    let e = err("SELECT t.c FROM t");
    assert!(
        e.starts_with("unknown column `t.c` at 1:8 (columns: t.a, t.b, t.s)"),
        "{e}"
    );
    let e = err("SELECT a, b, COUNT(*) FROM t GROUP BY a");
    assert!(
        e.starts_with(
            "column `b` must appear in GROUP BY or be used in an aggregate function at 1:11"
        ),
        "{e}"
    );
    let e = err("SELECT b, COUNT(*) FROM t");
    assert!(
        e.starts_with(
            "column `b` must appear in GROUP BY or be used in an aggregate function at 1:8"
        ),
        "{e}"
    );
    let e = err("SELECT SUM(s) FROM t");
    assert!(
        e.starts_with("sum needs a number, but `s` is string at 1:8"),
        "{e}"
    );
    let e = err("SELECT a, s FROM t UNION ALL SELECT a FROM u");
    assert!(
        e.starts_with("the sides of UNION have 2 and 1 columns"),
        "{e}"
    );
    let e = err("SELECT t.a, u.a FROM t JOIN u ON t.a = u.a");
    assert!(e.starts_with("the view has two columns named `a`"), "{e}");
    let e = err("SELECT a FROM t WHERE s");
    assert!(
        e.starts_with("WHERE needs a boolean, but `s` is string at 1:23"),
        "{e}"
    );
    assert!(matches!(
        plan_query("SELEC a FROM t", &BTreeMap::new()),
        Err(SqlError::Parse { .. })
    ));
}

// Event-time windows (issue 8).

fn window_catalog() -> Catalog {
    catalog(&[
        (
            "r",
            &[
                ("v", ColumnType::Int64),
                ("t", ColumnType::Timestamp),
                ("x", ColumnType::Float64),
            ],
        ),
        (
            "d",
            &[("v", ColumnType::Int64), ("name", ColumnType::String)],
        ),
    ])
}

fn window_err(sql: &str) -> String {
    match plan_query(sql, &window_catalog()) {
        Ok(_) => panic!("`{sql}` was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn windows_are_planned_with_their_size_slide_and_output_columns() {
    let p = plan_query(
        "SELECT window_end, v, window_start, COUNT(*) AS n FROM r WHERE x > 0 \
         GROUP BY v, HOP(t, INTERVAL '10' MINUTE, INTERVAL '5' MINUTE) HAVING COUNT(*) > 1",
        &window_catalog(),
    )
    .unwrap();
    let w = p.window().expect("windowed");
    assert_eq!((w.relation.as_str(), w.time_column.as_str()), ("r", "t"));
    assert_eq!((w.size, w.slide), (600_000_000, 300_000_000));
    assert_eq!((w.start_col, w.end_col), (2, 0));
    let names: Vec<&str> = p.columns().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["window_end", "v", "window_start", "n"]);
    assert_eq!(p.columns()[0].ty, ColumnType::Timestamp);
    // The storage key: the group columns (window and v).
    let mut key = p.unique_key().expect("grouped");
    key.sort();
    assert_eq!(key, [0, 1, 2]);
    let t = plan_query(
        "SELECT v, window_start, window_end FROM r GROUP BY TUMBLE(t, INTERVAL '90 seconds'), v",
        &window_catalog(),
    )
    .unwrap();
    let w = t.window().unwrap();
    assert_eq!((w.size, w.slide), (90_000_000, 90_000_000));
    assert!(plan_query("SELECT v FROM r GROUP BY v", &window_catalog())
        .unwrap()
        .window()
        .is_none());
}

#[test]
fn window_starts_cover_every_window_containing_a_time() {
    let s: Vec<i64> = super::query::window_starts(17, 10, 5).collect();
    assert_eq!(s, [15, 10]);
    let s: Vec<i64> = super::query::window_starts(-3, 10, 10).collect();
    assert_eq!(s, [-10]);
    let s: Vec<i64> = super::query::window_starts(20, 10, 5).collect();
    assert_eq!(s, [20, 15]);
}

#[test]
fn window_errors_name_the_problem_and_its_position() {
    let cases = [
        (
            "SELECT v, window_start, window_end FROM r JOIN d ON r.v = d.v GROUP BY r.v, TUMBLE(t, INTERVAL '5' MINUTE)",
            "unsupported construct `a window over a join",
        ),
        (
            "SELECT v, window_start, window_end FROM r GROUP BY v, TUMBLE(x, INTERVAL '5' MINUTE)",
            "the first argument of TUMBLE is the table's event-time column (a timestamp), got `x`",
        ),
        (
            "SELECT v, window_start FROM r GROUP BY v, TUMBLE(t, INTERVAL '5' MINUTE)",
            "a windowed SELECT outputs window_start and window_end",
        ),
        (
            "SELECT v, window_start, window_end FROM r GROUP BY v, HOP(t, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)",
            "HOP(time, size, slide): the slide (INTERVAL '5' MINUTE) is longer than the window size",
        ),
        (
            "SELECT v, window_start, window_end FROM r GROUP BY v, TUMBLE(t, INTERVAL '5' WEEK)",
            "is not a supported interval",
        ),
        (
            "SELECT v, window_start, window_end FROM r GROUP BY v, TUMBLE(t)",
            "TUMBLE takes 2 arguments",
        ),
        (
            "SELECT v, TUMBLE(t, INTERVAL '5' MINUTE) AS w FROM r",
            "unsupported construct `TUMBLE outside GROUP BY",
        ),
        (
            "WITH w AS (SELECT v, window_start, window_end, COUNT(*) AS n FROM r GROUP BY v, TUMBLE(t, INTERVAL '5' MINUTE)) SELECT * FROM w",
            "unsupported construct `a window (TUMBLE / HOP) outside the GROUP BY of the view's outermost SELECT",
        ),
    ];
    for (sql, want) in cases {
        let e = window_err(sql);
        assert!(e.contains(want), "`{sql}`:\n got  {e}\n want {want}");
        assert!(e.contains(" at 1:"), "`{sql}`: no position in {e}");
    }
}

/// Constructs whose AST node has no span, or a span that starts after the construct's
/// keyword: the error names the keyword's own position, found in the text (not in string
/// literals, quoted names, comments, or nested parentheses).
#[test]
fn unsupported_constructs_are_reported_where_they_are_written() {
    let cases = [
        ("SELECT a FROM t GROUP BY a WITH CUBE", "GROUP BY modifier WITH CUBE", "1:28"),
        (
            "SELECT a, 'WITH ROLLUP' AS w /* WITH ROLLUP */ -- WITH ROLLUP\nFROM t GROUP BY a\n  with rollup",
            "GROUP BY modifier WITH ROLLUP",
            "3:3",
        ),
        ("SELECT a FROM t GROUP BY ALL", "GROUP BY ALL", "1:17"),
        ("SELECT a FROM t GROUP BY GROUPING SETS ((a), ())", "GROUPING SETS ((a), ())", "1:26"),
        ("SELECT a FROM t GROUP BY CUBE (a, b)", "CUBE (a, b)", "1:26"),
        ("SELECT TOP 5 a FROM t", "TOP 5", "1:8"),
        ("SELECT /*+ INDEX(t) */ a FROM t", "optimizer hint /*+ ... */", "1:8"),
        ("SELECT a FROM t FOR UPDATE", "FOR UPDATE", "1:17"),
        ("SELECT a\nFROM t\n    FOR SHARE", "FOR SHARE", "3:5"),
        ("SELECT a FROM t FOR XML AUTO", "FOR XML AUTO", "1:17"),
        ("SELECT x.a FROM (SELECT a FROM t FOR UPDATE) x", "FOR UPDATE", "1:34"),
        ("SELECT a INTO x FROM t", "SELECT INTO", "1:10"),
        ("SELECT a FROM t LATERAL VIEW explode(b) x AS y", "LATERAL VIEW", "1:17"),
        ("SELECT a FROM t START WITH a = 1 CONNECT BY PRIOR a = b", "CONNECT BY", "1:17"),
        ("SELECT a FROM t SORT BY a", "SORT BY", "1:17"),
        ("SELECT a FROM t CLUSTER BY a", "CLUSTER BY", "1:17"),
        (
            "SELECT a, COUNT(*) FROM t GROUP BY a HAVING COUNT(*) > 1 WINDOW w AS ()",
            "WINDOW clause",
            "1:58",
        ),
        ("SELECT a FROM t QUALIFY a > 1", "QUALIFY", "1:17"),
        ("SELECT a FROM t PREWHERE a > 1", "PREWHERE", "1:17"),
        ("SELECT a FROM t SETTINGS x = 1", "SETTINGS", "1:17"),
        ("SELECT a FROM t FORMAT JSON", "FORMAT", "1:17"),
        ("SELECT a FROM t |> WHERE a > 1", "pipe operator |>", "1:17"),
        ("FROM t SELECT a", "FROM-first SELECT", "1:1"),
        ("VALUES (1, 2)", "VALUES", "1:1"),
        ("SELECT a FROM t UNION SELECT a FROM (VALUES (1)) v(a)", "VALUES", "1:38"),
        ("SELECT a FROM t WHERE a > INTERVAL '1' MONTH", "INTERVAL", "1:27"),
        ("SELECT EXTRACT(YEAR FROM a) FROM t", "EXTRACT", "1:8"),
        ("SELECT a, CEIL(a) FROM t", "CEIL", "1:11"),
        ("SELECT POSITION('a' IN s) FROM t", "POSITION", "1:8"),
        ("SELECT ARRAY[1, 2] FROM t", "array", "1:8"),
        ("SELECT CONVERT(a, CHAR) FROM t", "CONVERT", "1:8"),
        ("SELECT s RLIKE 'x' FROM t", "RLIKE / REGEXP", "1:10"),
        ("SELECT CAST(a AS DATE) FROM t", "type DATE", "1:18"),
        ("SELECT DATE '2024-01-01' FROM t", "DATE literal", "1:8"),
    ];
    for (sql, construct, at) in cases {
        assert_unsupported(sql, construct, at);
    }
}
