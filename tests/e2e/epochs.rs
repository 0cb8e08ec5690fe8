//! Every Delta version is a whole epoch: with `commit_every_records`, version k of the table
//! equals the model state after the first k+1 epochs (epochs count from 0), at 1 and 3 workers.

use tidewater_connectors::generator::{reference_apply, write_file, BankGenConfig};
use tidewater_e2e::python_reader::{py_read_log, py_read_table};
use tidewater_e2e::{bank_pipeline, canonical, file_lines, reference_rows, tidewater_ok};

fn versions_are_epochs(workers: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    let cfg = BankGenConfig {
        seed: 3,
        events: 6_000,
        keys: 400,
        ..Default::default()
    };
    write_file(&cfg, &input).unwrap();
    let lakehouse = dir.path().join("lh");
    let pipeline = bank_pipeline(
        dir.path(),
        &input,
        &lakehouse,
        "commit_every_records = 1000\nbuckets = 4",
    );
    tidewater_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--workers",
        workers,
        "--exit-when-idle",
    ]);

    let lines = file_lines(&input);
    let table = lakehouse.join("customers");
    let log = py_read_log(&table).unwrap();
    assert_eq!(log.len(), 6, "one commit per epoch of 1000 records");
    for (k, commit) in log.iter().enumerate() {
        assert_eq!(commit.version, k as i64);
        assert_eq!(commit.txn, vec![("bank/customers".to_string(), k as i64)]);
        let positions =
            &commit.commit_info["tidewater"]["positions"][k.to_string()]["customers_cdc"];
        assert_eq!(
            positions["records"].as_u64(),
            Some(1000),
            "epoch {k} covers 1000 records"
        );
        let prefix = &lines[..(k + 1) * 1000];
        let expected = reference_apply(
            prefix.iter().map(|l| l.as_slice()),
            &["customer_id"],
            "__lsn",
        );
        let got = py_read_table(&table, Some(k as i64)).unwrap();
        assert_eq!(
            canonical(&got.rows),
            canonical(&reference_rows(&expected)),
            "version {k} is not the state after epoch {k}"
        );
    }
    // The manifest of every epoch maps the table to that epoch's version.
    let manifests = tidewater_connectors::delta::read_manifests(&lakehouse).unwrap();
    assert_eq!(manifests.len(), 6);
    for (e, m) in manifests {
        assert_eq!(m.tables["customers"], e as i64);
    }
}

#[test]
fn versions_are_whole_epochs_one_worker() {
    versions_are_epochs("1");
}

#[test]
fn versions_are_whole_epochs_three_workers() {
    versions_are_epochs("3");
}
