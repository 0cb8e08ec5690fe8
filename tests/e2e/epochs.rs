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

/// A files source that has its input there already (a backlog) cuts it into epochs by bytes:
/// each epoch but the last holds at least `max_epoch_bytes`, however short
/// `commit_interval_ms` is and however fast the workers parse (the cutter cuts ahead of the
/// parsing, `dataflow/src/source.rs`), and the table is still the model's.
#[test]
fn a_backlog_is_cut_into_epochs_of_max_epoch_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    let cfg = BankGenConfig {
        seed: 5,
        events: 6_000,
        keys: 400,
        ..Default::default()
    };
    write_file(&cfg, &input).unwrap();
    let size = std::fs::metadata(&input).unwrap().len();
    let max_epoch_bytes = 1 << 20;
    assert!(size > 2 * max_epoch_bytes, "the input spans several epochs");
    let lakehouse = dir.path().join("lh");
    let pipeline = bank_pipeline(
        dir.path(),
        &input,
        &lakehouse,
        &format!("max_epoch_bytes = {max_epoch_bytes}\nblock_bytes = 65536\nbuckets = 4"),
    );
    let text = std::fs::read_to_string(&pipeline).unwrap();
    assert!(text.contains("commit_interval_ms = 1000\n"));
    std::fs::write(
        &pipeline,
        text.replace("commit_interval_ms = 1000\n", "commit_interval_ms = 1\n"),
    )
    .unwrap();
    tidewater_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--workers",
        "2",
        "--exit-when-idle",
    ]);
    let table = lakehouse.join("customers");
    let log = py_read_log(&table).unwrap();
    let mut covered = 0;
    for (k, commit) in log.iter().enumerate() {
        let ranges = commit.commit_info["tidewater"]["positions"][k.to_string()]["customers_cdc"]
            ["ranges"]
            .as_array()
            .unwrap()
            .clone();
        let bytes: u64 = ranges
            .iter()
            .map(|r| r["end"].as_u64().unwrap() - r["start"].as_u64().unwrap())
            .sum();
        if k + 1 < log.len() {
            assert!(
                bytes >= max_epoch_bytes,
                "epoch {k} holds {bytes} bytes, less than max_epoch_bytes"
            );
        }
        covered += bytes;
    }
    assert_eq!(covered, size, "the epochs cover the input");
    assert!(log.len() >= 2);
    let expected = reference_apply(
        file_lines(&input).iter().map(|l| l.as_slice()),
        &["customer_id"],
        "__lsn",
    );
    let got = py_read_table(&table, None).unwrap();
    assert_eq!(canonical(&got.rows), canonical(&reference_rows(&expected)));
}
