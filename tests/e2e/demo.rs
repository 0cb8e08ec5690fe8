//! `tidewater demo` (the README's main command) on a small input: the SCD type 1 table equals
//! the reference model of the generated stream, the current versions of the SCD type 2 table
//! equal it too, the event log counts every generated record once per table, and a second run
//! in the same directory starts afresh.

use std::collections::BTreeMap;

use tidewater_connectors::generator::{reference_apply, BankGenConfig, BankGenerator};
use tidewater_e2e::python_reader::py_read_table;
use tidewater_e2e::{canonical, reference_rows, tidewater_ok, JsonRow};

#[test]
fn the_demo_writes_exact_scd1_and_scd2_tables_and_an_event_log_and_can_run_again() {
    let events = 12_000u64;
    let dir = tempfile::tempdir().unwrap();
    let lh = dir.path().join("lakehouse");
    // The demo's generator: seed 42, keys = events / 10, the generator's other defaults.
    let mut g = BankGenerator::new(BankGenConfig {
        seed: 42,
        events,
        keys: events / 10,
        ..BankGenConfig::default()
    });
    let mut lines = Vec::new();
    let mut line = Vec::new();
    while g.next_line(&mut line) {
        lines.push(std::mem::take(&mut line));
    }
    let model = reference_apply(
        lines.iter().map(|l| l.as_slice()),
        &["customer_id"],
        "__lsn",
    );
    let expected = canonical(&reference_rows(&model));

    for run in 0..2 {
        let out = tidewater_ok(&[
            "demo",
            "--lakehouse",
            lh.to_str().unwrap(),
            "--events",
            &events.to_string(),
            "--no-dashboard",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("customers_history"), "{stdout}");
        assert!(stdout.contains("event log of"), "{stdout}");

        let customers = py_read_table(&lh.join("customers"), None).unwrap().rows;
        assert_eq!(canonical(&customers), expected, "run {run}: customers");

        // The open versions of the history are the current rows.
        let history = py_read_table(&lh.join("customers_history"), None)
            .unwrap()
            .rows;
        let current: Vec<JsonRow> = history
            .iter()
            .filter(|r| r["__end_at"].is_null())
            .map(|r| {
                let mut r = r.clone();
                r.remove("__start_at");
                r.remove("__end_at");
                r
            })
            .collect();
        assert_eq!(canonical(&current), expected, "run {run}: current versions");
        // Versions of a key do not overlap and are ordered.
        let mut by_key: BTreeMap<i64, Vec<(i64, Option<i64>)>> = BTreeMap::new();
        for r in &history {
            by_key
                .entry(r["customer_id"].as_i64().unwrap())
                .or_default()
                .push((r["__start_at"].as_i64().unwrap(), r["__end_at"].as_i64()));
        }
        for (k, mut v) in by_key {
            v.sort();
            for w in v.windows(2) {
                let end = w[0].1.expect("only the last version is open");
                assert!(end <= w[1].0, "key {k}: overlapping versions {v:?}");
            }
        }
        assert!(
            history.len() > customers.len(),
            "the history has older versions"
        );

        // The event log: every generated record read once per table, in this run only.
        let log = py_read_table(&lh.join("_event_log"), None).unwrap().rows;
        for table in ["customers", "customers_history"] {
            let read: i64 = log
                .iter()
                .filter(|r| r["table"] == table)
                .map(|r| r["rows_read"].as_i64().unwrap())
                .sum();
            assert_eq!(read, events as i64, "run {run}: {table} rows read");
        }
        // The telematics pipeline: windows with their closed flag, and every late reading
        // in `_late` as the event log counts them.
        let windows = py_read_table(&lh.join("vehicle_windows"), None)
            .unwrap()
            .rows;
        assert!(!windows.is_empty(), "run {run}: vehicle_windows");
        assert!(windows.iter().all(|w| w["window_closed"].is_boolean()));
        assert!(windows.iter().any(|w| w["window_closed"] == true));
        let late: i64 = log
            .iter()
            .filter(|r| r["table"] == "readings")
            .map(|r| r["late"].as_i64().unwrap())
            .sum();
        let late_rows = if late > 0 {
            py_read_table(&lh.join("_late"), None).unwrap().rows.len()
        } else {
            0
        };
        assert_eq!(late_rows as i64, late, "run {run}: _late");
    }
}
