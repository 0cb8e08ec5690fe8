//! A generated CDC file through `tidewater run --exit-when-idle` at 1 and 4 workers and as a
//! 2-process cluster (1 and 2 workers each): the Delta table equals the reference model, read by pyarrow and delta-rs.

use tidewater_connectors::generator::{reference_apply_file, write_file, BankGenConfig};
use tidewater_e2e::python_reader::{py_read_log, py_read_table};
use tidewater_e2e::{
    bank_pipeline, canonical, deltalake_rows, reference_rows, tidewater, tidewater_ok,
};

fn generated_input(dir: &std::path::Path) -> std::path::PathBuf {
    let input = dir.join("customers.json");
    let cfg = BankGenConfig {
        seed: 7,
        events: 30_000,
        keys: 3_000,
        ..Default::default()
    };
    write_file(&cfg, &input).unwrap();
    input
}

/// A fresh directory with the generated input and a bank pipeline writing to `lakehouse/`,
/// whose `[pipeline]` gets the lines `extra(directory)`.
struct Setup {
    dir: tempfile::TempDir,
    input: std::path::PathBuf,
    lakehouse: std::path::PathBuf,
    pipeline: std::path::PathBuf,
}

fn setup(extra: impl FnOnce(&std::path::Path) -> String) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let input = generated_input(dir.path());
    let lakehouse = dir.path().join("lakehouse");
    let pipeline = bank_pipeline(dir.path(), &input, &lakehouse, &extra(dir.path()));
    Setup {
        dir,
        input,
        lakehouse,
        pipeline,
    }
}

fn check_run(run_args: &[&str]) {
    check_run_with(run_args, "buckets = 8");
}

/// [`check_run`] with `extra` lines in `[pipeline]`.
fn check_run_with(run_args: &[&str], extra: &str) {
    let Setup {
        dir: _dir,
        input,
        lakehouse,
        pipeline,
    } = setup(|_| extra.to_string());
    let mut args = run_args.to_vec();
    let p = pipeline.to_str().unwrap();
    args.insert(1, p);
    tidewater_ok(&args);

    let expected = reference_apply_file(&input, &["customer_id"], "__lsn").unwrap();
    assert!(expected.bad.is_empty());
    let expected = canonical(&reference_rows(&expected));
    assert!(
        expected.len() > 2_000,
        "the reference keeps most keys alive"
    );

    let table = lakehouse.join("customers");
    let py = py_read_table(&table, None).unwrap();
    assert_eq!(
        canonical(&py.rows),
        expected,
        "pyarrow reader: table differs from the model"
    );
    assert!(
        py.num_files <= 8,
        "one file per bucket at most, got {}",
        py.num_files
    );
    assert_eq!(
        py.txn.get("bank/customers").copied(),
        Some(py.txn["bank/customers"])
    );
    let rs = deltalake_rows(&table, None).unwrap();
    assert_eq!(
        canonical(&rs),
        expected,
        "delta-rs reader: table differs from the model"
    );

    // Every commit carries the txn action of its epoch and its source positions; the last
    // manifest maps the table to the newest version.
    let log = py_read_log(&table).unwrap();
    for c in &log {
        let epoch = c.commit_info["tidewater"]["epoch"].as_i64().unwrap();
        assert_eq!(c.txn, vec![("bank/customers".to_string(), epoch)]);
        assert!(c.commit_info["tidewater"]["positions"].is_object());
    }
    let snap = tidewater_ok(&["snapshot", "--lakehouse", lakehouse.to_str().unwrap()]);
    let snap: serde_json::Value = serde_json::from_slice(&snap.stdout).unwrap();
    assert_eq!(snap["tables"]["customers"].as_i64(), Some(py.version));
    // No quarantine table: the input has no bad lines.
    assert!(!lakehouse.join("_quarantine").join("_delta_log").exists());
}

#[test]
fn a_second_run_on_an_unchanged_input_resumes_and_commits_nothing() {
    let Setup {
        dir: _dir,
        lakehouse,
        pipeline,
        ..
    } = setup(|_| "buckets = 8".into());
    let p = pipeline.to_str().unwrap();
    tidewater_ok(&["run", p, "--exit-when-idle"]);
    let table = lakehouse.join("customers");
    let before = py_read_table(&table, None).unwrap();
    let out = tidewater_ok(&["run", p, "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0 epochs committed"), "{stderr}");
    let after = py_read_table(&table, None).unwrap();
    assert_eq!(
        (after.version, canonical(&after.rows)),
        (before.version, canonical(&before.rows))
    );
}

#[test]
fn one_worker() {
    check_run(&["run", "--exit-when-idle"]);
}

/// The arguments of a run at 4 workers.
const FOUR_WORKERS: &[&str] = &["run", "--workers", "4", "--exit-when-idle"];

/// The arguments of a local cluster of 2 processes of 2 workers.
const TWO_PROCESSES_OF_TWO_WORKERS: &[&str] = &[
    "cluster",
    "--processes",
    "2",
    "--workers",
    "2",
    "--exit-when-idle",
];

#[test]
fn four_workers() {
    check_run(FOUR_WORKERS);
}

#[test]
fn two_process_cluster() {
    check_run(&[
        "cluster",
        "--processes",
        "2",
        "--workers",
        "1",
        "--exit-when-idle",
    ]);
}

#[test]
fn two_processes_of_two_workers() {
    check_run(TWO_PROCESSES_OF_TWO_WORKERS);
}

/// The rows of an open epoch wait in memory instead of in the row spill (the default): the
/// same table, at 4 workers and as a 2-process cluster of 2 workers.
#[test]
fn rows_in_memory_four_workers() {
    check_run_with(FOUR_WORKERS, "buckets = 8\nspill_rows = false");
}

#[test]
fn rows_in_memory_two_processes_of_two_workers() {
    check_run_with(
        TWO_PROCESSES_OF_TWO_WORKERS,
        "buckets = 8\nspill_rows = false",
    );
}

/// The row spill in a directory given by `spill_dir`: the same table, and the spill's files
/// are gone when the run ends.
#[test]
fn rows_spilled_in_a_given_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    check_run_with(
        &["run", "--workers", "2", "--exit-when-idle"],
        &format!(
            "buckets = 8\nspill_rows = true\nspill_dir = {:?}",
            spill.to_str().unwrap()
        ),
    );
    // Unnamed files: the directory was made for them and is left empty.
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
}

/// A spill directory that cannot be made stops the run with an error that names the spill
/// and the table, and no table version is written.
#[test]
fn a_spill_directory_that_cannot_be_made_is_an_error_naming_it() {
    let Setup {
        dir,
        lakehouse,
        pipeline,
        ..
    } = setup(|dir| {
        format!(
            "buckets = 8\nspill_rows = true\nspill_dir = {:?}",
            dir.join("not-a-dir/spill").to_str().unwrap()
        )
    });
    std::fs::write(dir.path().join("not-a-dir"), b"a file").unwrap();
    let out = tidewater(&["run", pipeline.to_str().unwrap(), "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("table `customers`: creating the row spill in"),
        "{stderr}"
    );
    assert!(!lakehouse.join("customers").join("_delta_log").exists());
}

/// A cluster process whose hostfile address is taken stops before reading or writing anything,
/// with exit code 3 (which `tidewater cluster` answers by starting again on other ports).
#[test]
fn a_taken_cluster_port_is_exit_code_3_and_writes_nothing() {
    let Setup {
        dir,
        lakehouse,
        pipeline,
        ..
    } = setup(|_| "buckets = 8".into());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hostfile = dir.path().join("hosts.txt");
    std::fs::write(
        &hostfile,
        format!(
            "{}\n{}\n",
            taken.local_addr().unwrap(),
            free.local_addr().unwrap()
        ),
    )
    .unwrap();
    drop(free);
    let out = tidewater_e2e::tidewater(&[
        "run",
        pipeline.to_str().unwrap(),
        "--processes",
        "2",
        "--process-id",
        "0",
        "--hostfile",
        hostfile.to_str().unwrap(),
        "--exit-when-idle",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cluster address in use") && stderr.contains("Address already in use"),
        "{stderr}"
    );
    assert!(
        !lakehouse.join("customers").exists(),
        "no table is created before the cluster is up"
    );
}
