//! The APPLY CHANGES cases documented for Delta Live Tables (`shared/cdc-semantics.md`) as
//! exact tables, through the binary: the classic `users` example (SCD type 1 and type 2, with
//! its delete and out-of-order sequences), IGNORE NULL UPDATES, APPLY AS TRUNCATE WHEN, and
//! TRACK HISTORY ON … EXCEPT. Every case runs in several arrival orders, one epoch per record
//! or one for all, at 1 and 2 workers; both readers (pyarrow, delta-rs) must agree.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tidewater_e2e::python_reader::py_read_table;
use tidewater_e2e::{canonical, deltalake_rows, tidewater_ok, JsonRow};

/// One record: `(userId, name, city, operation, sequenceNum)`.
type Rec = (
    i64,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
    i64,
);

/// The documented input in its arrival order.
const USERS: [Rec; 8] = [
    (124, Some("Raul"), Some("Oaxaca"), "INSERT", 1),
    (123, Some("Isabel"), Some("Monterrey"), "INSERT", 1),
    (125, Some("Mercedes"), Some("Tijuana"), "INSERT", 2),
    (126, Some("Lily"), Some("Cancun"), "INSERT", 2),
    (123, None, None, "DELETE", 6),
    (125, Some("Mercedes"), Some("Guadalajara"), "UPDATE", 6),
    (125, Some("Mercedes"), Some("Mexicali"), "UPDATE", 5),
    (123, Some("Isabel"), Some("Chihuahua"), "UPDATE", 5),
];

/// One Debezium envelope per record (the operation is a column, as in the documentation).
fn lines(records: &[Rec]) -> String {
    records
        .iter()
        .map(|(id, name, city, op, seq)| {
            json!({"before": null, "after": {"userId": id, "name": name, "city": city,
                   "operation": op, "sequenceNum": seq}, "source": {"lsn": seq}, "op": "c"})
            .to_string()
                + "\n"
        })
        .collect()
}

/// Writes `records` and a pipeline with a `users` table with `options` (one epoch per
/// `every` records; `extra` goes to `[pipeline]`); returns the pipeline file and the lakehouse.
fn write_pipeline(
    dir: &Path,
    records: &[Rec],
    options: &str,
    every: u64,
    extra: &str,
) -> (PathBuf, PathBuf) {
    let n = std::fs::read_dir(dir).unwrap().count();
    let input = dir.join(format!("in{n}.json"));
    std::fs::write(&input, lines(records)).unwrap();
    let lakehouse = dir.join(format!("lh{n}"));
    let text = format!(
        r#"[pipeline]
name = "users"
lakehouse = "{}"
commit_every_records = {every}
buckets = 4
{extra}

[[source]]
name = "users_cdc"
kind = "files"
path = "{}"

[[table]]
name = "users"
from = "users_cdc"
keys = ["userId"]
sequence_by = "sequenceNum"
columns = {{ userId = "int64", name = "string", city = "string", operation = "string", sequenceNum = "int64" }}
apply_as_deletes = "operation = 'DELETE'"
except_columns = ["operation", "sequenceNum"]
{options}
"#,
        lakehouse.display(),
        input.display()
    );
    let p: PathBuf = dir.join(format!("p{n}.toml"));
    std::fs::write(&p, text).unwrap();
    (p, lakehouse)
}

/// The `users` table read back by both readers (checked equal).
fn read_users(lakehouse: &Path) -> Vec<String> {
    let table = lakehouse.join("users");
    let a = canonical(&deltalake_rows(&table, None).unwrap());
    let b = canonical(&py_read_table(&table, None).unwrap().rows);
    assert_eq!(a, b, "the two readers disagree");
    a
}

/// Runs `records` through a `users` table with `options`, one epoch per record (`every = 1`)
/// or all in one, at `workers`; returns the final table.
fn run(dir: &Path, records: &[Rec], options: &str, every: u64, workers: &str) -> Vec<String> {
    let (p, lakehouse) = write_pipeline(dir, records, options, every, "");
    tidewater_ok(&[
        "run",
        p.to_str().unwrap(),
        "--workers",
        workers,
        "--exit-when-idle",
    ]);
    read_users(&lakehouse)
}

fn row(pairs: &[(&str, Value)]) -> JsonRow {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn user(id: i64, name: Option<&str>, city: Option<&str>) -> JsonRow {
    row(&[
        ("userId", json!(id)),
        ("name", json!(name)),
        ("city", json!(city)),
    ])
}

fn version(id: i64, name: &str, city: &str, start: i64, end: Option<i64>) -> JsonRow {
    let mut r = user(id, Some(name), Some(city));
    r.insert("__start_at".into(), json!(start));
    r.insert("__end_at".into(), json!(end));
    r
}

/// The arrival orders each case is fed in: as listed, reversed, and a rotation.
fn orders(records: &[Rec]) -> Vec<Vec<Rec>> {
    let mut rev = records.to_vec();
    rev.reverse();
    let mut rot = records.to_vec();
    rot.rotate_left(records.len() / 2);
    vec![records.to_vec(), rev, rot]
}

/// Every order × (one epoch per record, one epoch) × (1, 2 workers) gives `expected`.
fn check_all(records: &[Rec], options: &str, expected: &[JsonRow]) {
    let dir = tempfile::tempdir().unwrap();
    let expected = canonical(expected);
    for (i, order) in orders(records).iter().enumerate() {
        for every in [1, 1000] {
            for workers in ["1", "2"] {
                let got = run(dir.path(), order, options, every, workers);
                assert_eq!(
                    got, expected,
                    "order {i}, {every} record(s) per epoch, {workers} worker(s), options {options:?}"
                );
            }
        }
    }
}

#[test]
fn users_example_scd1() {
    check_all(
        &USERS,
        "",
        &[
            user(124, Some("Raul"), Some("Oaxaca")),
            user(125, Some("Mercedes"), Some("Guadalajara")),
            user(126, Some("Lily"), Some("Cancun")),
        ],
    );
}

#[test]
fn users_example_scd2_splits_intervals_for_late_events() {
    check_all(
        &USERS,
        "scd = 2",
        &[
            version(123, "Isabel", "Monterrey", 1, Some(5)),
            version(123, "Isabel", "Chihuahua", 5, Some(6)),
            version(124, "Raul", "Oaxaca", 1, None),
            version(125, "Mercedes", "Tijuana", 2, Some(5)),
            version(125, "Mercedes", "Mexicali", 5, Some(6)),
            version(125, "Mercedes", "Guadalajara", 6, None),
            version(126, "Lily", "Cancun", 2, None),
        ],
    );
}

#[test]
fn scd2_track_history_except_updates_the_current_version_in_place() {
    // Only name changes open versions; a city change updates the version it falls in.
    let records: [Rec; 5] = [
        (1, Some("a"), Some("x"), "INSERT", 1),
        (1, Some("a"), Some("y"), "UPDATE", 2),
        (1, Some("b"), Some("y"), "UPDATE", 3),
        (1, Some("b"), Some("z"), "UPDATE", 5),
        (2, Some("c"), Some("x"), "INSERT", 1),
    ];
    check_all(
        &records,
        "scd = 2\ntrack_history_except = [\"city\"]",
        &[
            version(1, "a", "y", 1, Some(3)),
            version(1, "b", "z", 3, None),
            version(2, "c", "x", 1, None),
        ],
    );
    check_all(
        &records,
        "scd = 2\ntrack_history_columns = [\"city\"]",
        &[
            version(1, "a", "x", 1, Some(2)),
            version(1, "b", "y", 2, Some(5)),
            version(1, "b", "z", 5, None),
            version(2, "c", "x", 1, None),
        ],
    );
}

#[test]
fn ignore_null_updates_keeps_old_values_in_any_order() {
    let records: [Rec; 5] = [
        (1, Some("a"), Some("x"), "INSERT", 1),
        (1, None, Some("y"), "UPDATE", 3),
        (1, Some("b"), None, "UPDATE", 2),
        (2, Some("c"), Some("x"), "INSERT", 1),
        (2, None, None, "UPDATE", 2),
    ];
    // Without the option the newest record is the row, nulls included.
    check_all(
        &records,
        "",
        &[user(1, None, Some("y")), user(2, None, None)],
    );
    // With it, each column keeps its newest non-null value.
    check_all(
        &records,
        "ignore_null_updates = true",
        &[user(1, Some("b"), Some("y")), user(2, Some("c"), Some("x"))],
    );
    // SCD type 2: the merged value of each version.
    check_all(
        &records,
        "scd = 2\nignore_null_updates = true",
        &[
            version(1, "a", "x", 1, Some(2)),
            version(1, "b", "x", 2, Some(3)),
            version(1, "b", "y", 3, None),
            version(2, "c", "x", 1, None),
        ],
    );
}

#[test]
fn apply_as_truncates_clears_the_table_and_late_older_records_stay_gone() {
    let records: [Rec; 6] = [
        (1, Some("a"), Some("x"), "INSERT", 1),
        (2, Some("b"), Some("x"), "INSERT", 2),
        (3, Some("c"), Some("x"), "INSERT", 3),
        (0, None, None, "TRUNCATE", 5),
        (4, Some("d"), Some("y"), "INSERT", 6),
        (2, Some("b2"), Some("y"), "UPDATE", 4),
    ];
    check_all(
        &records,
        "apply_as_truncates = \"operation = 'TRUNCATE'\"",
        &[user(4, Some("d"), Some("y"))],
    );
}

/// A random stream over 30 keys with out-of-order sequences, null columns, deletes and a few
/// truncates (SCD1 only), for the restart test.
fn random_records(truncates: bool) -> Vec<Rec> {
    const NAMES: [&str; 4] = ["a", "b", "c", "d"];
    const CITIES: [&str; 3] = ["x", "y", "z"];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    (0..1500)
        .map(|i| {
            // Sequences mostly grow, with out-of-order windows of 40 and duplicates.
            let seq = i as i64 + next(40) as i64;
            let id = next(30) as i64;
            let name = (next(4) > 0).then(|| NAMES[next(4) as usize]);
            let city = (next(4) > 0).then(|| CITIES[next(3) as usize]);
            let op = match next(100) {
                0 if truncates => "TRUNCATE",
                1..=7 => "DELETE",
                _ => "UPDATE",
            };
            (id, name, city, op, seq)
        })
        .collect()
}

/// Crashes at a commit, restarts (restoring operator state from a checkpoint, at another
/// worker count), and must end with exactly the table of an uninterrupted run: for SCD2 with
/// tracked columns and null merging, and for SCD1 with null merging and truncates.
#[test]
fn scd2_and_scd1_options_restart_from_checkpoints_exactly() {
    use tidewater_e2e::abort_at;
    for (truncates, options) in [
        (
            false,
            "scd = 2\nignore_null_updates = true\ntrack_history_except = [\"city\"]",
        ),
        (
            true,
            "ignore_null_updates = true\napply_as_truncates = \"operation = 'TRUNCATE'\"",
        ),
    ] {
        let records = random_records(truncates);
        let dir = tempfile::tempdir().unwrap();
        let options = format!("{options}\n");
        // Uninterrupted.
        let want = run(dir.path(), &records, &options, 100, "2");
        assert!(want.len() > 10);
        // Crash after the Parquet files of the 9th commit, then restart at 1 worker.
        let (p, lakehouse) = write_pipeline(
            dir.path(),
            &records,
            &options,
            100,
            "state_checkpoint_every = 3",
        );
        let args = [
            "run",
            p.to_str().unwrap(),
            "--workers",
            "2",
            "--exit-when-idle",
        ];
        abort_at(&args, "after_parquet_before_commit:9", dir.path());
        let out = tidewater_ok(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("operator state restored from the checkpoint of epoch"),
            "{stderr}"
        );
        assert_eq!(read_users(&lakehouse), want, "{options}");
        // The event log holds every epoch exactly once.
        let log = py_read_table(&lakehouse.join("_event_log"), None)
            .unwrap()
            .rows;
        let mut epochs: Vec<i64> = log.iter().map(|r| r["epoch"].as_i64().unwrap()).collect();
        let read: i64 = log.iter().map(|r| r["rows_read"].as_i64().unwrap()).sum();
        epochs.sort();
        let mut dedup = epochs.clone();
        dedup.dedup();
        assert_eq!(epochs, dedup, "an epoch logged twice");
        assert_eq!(read, records.len() as i64, "rows read over all epochs");
    }
}
