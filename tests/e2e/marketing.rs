//! The shipped marketing engagement pipeline (`pipelines/marketing/`, issue 7) through the
//! binary: its six generated CDC inputs, the star-schema models and the dbt-style test views,
//! at every epoch equal to SQLite running the same SQL files over the input tables at that
//! cut; the same final views at 1 and 2 workers and by the independent Python reader; and the
//! dbt-style tests that must pass on the generated data.

use std::path::{Path, PathBuf};

use tidewater_e2e::python_reader::py_read_table;
use tidewater_e2e::{deltalake_rows, tidewater_ok};

use crate::views::{canonical_rows, check_views_at_every_epoch};

const TABLES: [&str; 6] = [
    "salesforce_account",
    "salesforce_user",
    "marketo_lead",
    "marketo_activity_send_email",
    "marketo_activity_open_email",
    "marketo_activity_click_email",
];

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/marketing")
}

/// The views of the shipped pipeline file, in order: (name, SQL of its `sql_file`).
fn shipped_views() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(shipped().join("marketing.toml")).expect("pipeline");
    let value = |line: &str| line.split('"').nth(1).expect("quoted value").to_string();
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("name = ") {
            name = Some(value(line));
        } else if line.starts_with("sql_file = ") {
            let sql = std::fs::read_to_string(shipped().join(value(line))).expect("sql file");
            out.push((name.take().expect("view name"), sql));
        }
    }
    out
}

/// A copy of the shipped pipeline (file and SQL) writing to `lakehouse`, with `events` world
/// lines and epochs of `epoch_records` records per source.
fn copy_pipeline(dir: &Path, lakehouse: &Path, events: u64, epoch_records: u64) -> PathBuf {
    for entry in std::fs::read_dir(shipped()).expect("pipelines/marketing") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "sql") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).expect("copy sql");
        }
    }
    let text = std::fs::read_to_string(shipped().join("marketing.toml")).expect("pipeline");
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("lakehouse = ") {
            out.push_str(&format!(
                "lakehouse = \"{}\"\ncommit_every_records = {epoch_records}\n",
                lakehouse.display()
            ));
        } else if line.starts_with("events = ") {
            out.push_str(&format!("events = {events}\n"));
        } else if line.starts_with("rate = ") {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = dir.join("marketing.toml");
    std::fs::write(&path, out).expect("write pipeline");
    path
}

#[test]
fn marketing_views_equal_sqlite_at_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let views = shipped_views();
    assert!(views.len() >= 8, "views: {}", views.len());
    let mut finals = Vec::new();
    for workers in [1, 2] {
        let lakehouse = dir.path().join(format!("lh{workers}"));
        let p = copy_pipeline(dir.path(), &lakehouse, 12_000, 300);
        tidewater_ok(&[
            "run",
            p.to_str().unwrap(),
            "--workers",
            &workers.to_string(),
            "--exit-when-idle",
        ]);
        let (epochs, last) = check_views_at_every_epoch(&lakehouse, &TABLES, &views);
        assert!(epochs >= 5, "epochs: {epochs}");
        for name in [
            "dim_account",
            "dim_user",
            "fct_email_opens",
            "fct_email_clicks",
            "int_email_open_clicks_joined",
            "country_email_engagement",
        ] {
            assert!(
                last.get(name).is_some_and(|rows| !rows.is_empty()),
                "view `{name}` is empty at the end"
            );
        }
        for (name, _) in &views {
            let table = lakehouse.join(name);
            if !table.exists() {
                continue;
            }
            // The independent reader gives timestamps as ISO text (delta-rs: microseconds):
            // compare the other columns, and the row count.
            let py = py_read_table(&table, None).expect("python reader");
            let columns: Vec<String> = py
                .schema
                .iter()
                .filter(|(_, ty)| !ty.starts_with("timestamp"))
                .map(|(n, _)| n.clone())
                .collect();
            assert_eq!(
                py.rows.len(),
                last[name].len(),
                "view `{name}`: python rows"
            );
            assert_eq!(
                canonical_rows(&py.rows, &columns),
                canonical_rows(&deltalake_rows(&table, None).expect("rows"), &columns),
                "view `{name}`: python reader"
            );
        }
        finals.push(last);
    }
    assert_eq!(finals[0], finals[1], "1 and 2 workers: final views");
}
