//! A second writer on the same table (issue 4, part 6): a pipeline with another name run on a
//! lakehouse whose `accounts` table a first pipeline writes refuses to start, naming the table
//! and the first writer's app id, exits non-zero, and leaves the table exactly as it was.

use std::collections::BTreeMap;
use std::path::Path;

use tidewater_connectors::generator::{write_transfers_file, TransfersGenConfig};
use tidewater_e2e::python_reader::py_read_table;
use tidewater_e2e::{accounts_pipeline, canonical, tidewater, tidewater_ok};

/// Every file under `dir` with its content.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_second_pipeline_on_the_same_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("accounts.json");
    let cfg = TransfersGenConfig {
        events: 3_000,
        accounts: 100,
        ..TransfersGenConfig::default()
    };
    write_transfers_file(&cfg, &input).unwrap();
    let lakehouse = dir.path().join("lh");
    let source = format!("kind = \"files\"\npath = \"{}\"", input.display());
    let settings = "commit_every_records = 500\nbuckets = 4";
    let first = accounts_pipeline(dir.path(), "first", &lakehouse, &source, settings);
    let second = accounts_pipeline(dir.path(), "second", &lakehouse, &source, settings);
    tidewater_ok(&["run", first.to_str().unwrap(), "--exit-when-idle"]);
    let table = lakehouse.join("accounts");
    let before_rows = canonical(&py_read_table(&table, None).unwrap().rows);
    let before = tree(&lakehouse);

    let out = tidewater(&["run", second.to_str().unwrap(), "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the second writer must be refused: {stderr}"
    );
    assert!(
        stderr.contains("Delta table accounts"),
        "names the table: {stderr}"
    );
    assert!(
        stderr.contains("app id `first/accounts`"),
        "names the first writer's app id: {stderr}"
    );
    assert!(stderr.contains("`second/accounts`"), "{stderr}");
    assert_eq!(tree(&lakehouse), before, "the lakehouse is unchanged");
    assert_eq!(
        canonical(&py_read_table(&table, None).unwrap().rows),
        before_rows
    );

    // The first pipeline still owns a valid table: a restart finds everything committed.
    let out = tidewater_ok(&["run", first.to_str().unwrap(), "--exit-when-idle"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 epochs committed"));
}
