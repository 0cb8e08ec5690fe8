//! The crash test of issue 4 through the binary: a generated CDC workload of 210k events over
//! two tables (bank customers with malformed lines, and bank transfers) is run while being
//! killed with SIGKILL at 24 random moments spread over the run (the k-th a random 0-150 ms
//! after the k-th of 26 equal steps of the committed versions; a kill that comes after a run
//! finished does not count) and aborted once at each named failpoint,
//! restarting after each with 1, 2 or 3 workers. At the end:
//!
//! - every table equals the model (and the transfers ground truth), read by two readers;
//! - the commit history of every table — epoch, rows upserted and deleted of every version —
//!   is exactly that of an uninterrupted run, and every version holds the same rows as the
//!   uninterrupted run's version: nothing was applied twice or lost;
//! - in every version of `accounts` the sum of balances is the initial total;
//! - `_quarantine` holds each malformed line once.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewater_connectors::generator::{
    reference_apply, write_transfers_file, BankGenConfig, BankGenerator, TransfersGenConfig,
};
use tidewater_e2e::python_reader::{py_read_log, py_read_table};
use tidewater_e2e::{
    abort_at, canonical, column_sum, deltalake_rows, file_lines, ground_truth_rows, reference_rows,
    tidewater_bin, tidewater_ok,
};

const CUSTOMER_EVENTS: u64 = 150_000;
const TRANSFER_EVENTS: u64 = 60_000;
const SETTINGS: &str =
    "commit_every_records = 5000\nbuckets = 4\nblock_bytes = 262144\nstate_checkpoint_every = 3";

struct Workload {
    dir: tempfile::TempDir,
    customers: PathBuf,
    accounts: PathBuf,
    bad: Vec<String>,
    transfers: tidewater_connectors::generator::TransfersGenerator,
}

fn workload() -> Workload {
    let dir = tempfile::tempdir().unwrap();
    let customers = dir.path().join("customers.json");
    let mut g = BankGenerator::new(BankGenConfig {
        seed: 21,
        events: CUSTOMER_EVENTS,
        keys: 20_000,
        ..Default::default()
    });
    let (mut text, mut bad, mut line) = (Vec::new(), Vec::new(), Vec::new());
    let mut i = 0u64;
    while g.next_line(&mut line) {
        text.extend_from_slice(&line);
        text.push(b'\n');
        line.clear();
        i += 1;
        if i.is_multiple_of(20_000) {
            let b = format!("{{\"payload\": {{\"op\": \"u\", \"broken at\": {i}");
            text.extend_from_slice(b.as_bytes());
            text.push(b'\n');
            bad.push(b);
        }
    }
    std::fs::write(&customers, text).unwrap();
    let accounts = dir.path().join("accounts.json");
    let transfers = write_transfers_file(
        &TransfersGenConfig {
            seed: 3,
            events: TRANSFER_EVENTS,
            accounts: 2_000,
            ..Default::default()
        },
        &accounts,
    )
    .unwrap();
    Workload {
        dir,
        customers,
        accounts,
        bad,
        transfers,
    }
}

fn pipeline(w: &Workload, name: &str) -> (PathBuf, PathBuf) {
    let lakehouse = w.dir.path().join(name);
    let text = format!(
        r#"[pipeline]
name = "bank"
lakehouse = "{}"
{SETTINGS}

[[source]]
name = "customers_cdc"
kind = "files"
path = "{}"

[[source]]
name = "accounts_cdc"
kind = "files"
path = "{}"

[[table]]
name = "customers"
from = "customers_cdc"
keys = ["customer_id"]
sequence_by = "__lsn"

[[table]]
name = "accounts"
from = "accounts_cdc"
keys = ["account_id"]
sequence_by = "__lsn"
"#,
        lakehouse.display(),
        w.customers.display(),
        w.accounts.display()
    );
    let path = w.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, lakehouse)
}

fn args(pipeline: &Path, workers: usize) -> Vec<String> {
    vec![
        "run".into(),
        pipeline.display().to_string(),
        "--workers".into(),
        workers.to_string(),
        "--exit-when-idle".into(),
    ]
}

/// A small deterministic generator for the kill moments (seeded, so a failure reproduces).
pub(crate) struct XorShift(pub(crate) u64);
impl XorShift {
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The number of committed versions of a table (its `_delta_log/*.json` files).
pub(crate) fn versions(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

/// Starts a run and kills it with SIGKILL `delay` after `table` has at least `at_versions`
/// committed versions; true if it was killed while running (false: it finished first).
fn kill_after(
    args: &[String],
    table: &Path,
    at_versions: usize,
    delay: Duration,
    cwd: &Path,
) -> bool {
    let mut child = Command::new(tidewater_bin())
        .args(args)
        .env("TIDEWATER_LOG", "warn")
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reached: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "a run failed before its kill: {status}");
            return false;
        }
        match reached {
            None if versions(table) >= at_versions => reached = Some(Instant::now()),
            Some(t) if t.elapsed() >= delay => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    if status.signal() == Some(9) {
        return true;
    }
    assert!(status.success(), "a run failed: {status}");
    false
}

/// Per version of a table: (epoch, upserted, deleted) from its commit metadata.
fn history(table: &Path) -> Vec<(i64, i64, i64)> {
    py_read_log(table)
        .unwrap()
        .iter()
        .map(|c| {
            let t = &c.commit_info["tidewater"];
            let n = |k: &str| t[k].as_i64().unwrap_or_else(|| panic!("no {k} in {t}"));
            (t["epoch"].as_i64().unwrap(), n("upserted"), n("deleted"))
        })
        .collect()
}

#[test]
fn kill_9_at_random_moments_and_at_every_failpoint_changes_nothing() {
    let w = workload();
    // The uninterrupted run.
    let (clean_pipeline, clean) = pipeline(&w, "clean");
    let started = Instant::now();
    tidewater_ok(
        &args(&clean_pipeline, 2)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let full = started.elapsed();

    // The interrupted run: kills at random moments (a fraction of an uninterrupted run's
    // time, so that most land while there is work left), with each failpoint in between.
    let (crash_pipeline, crashed) = pipeline(&w, "crashed");
    let failpoints = [
        (2, "after_parquet_before_commit:2"),
        (5, "between_table_commits:2"),
        (8, "checkpoint_write:3"),
        (11, "after_commit_before_manifest:2"),
        (14, "mid_epoch:9"),
    ];
    // The k-th kill comes a random 0-150 ms after the k-th of 26 equal steps of the clean
    // run's versions is committed: spread over the whole run whatever the machine's speed.
    let total = versions(&clean.join("customers"));
    let table = crashed.join("customers");
    let mut rng = XorShift(0x5EED_1234_ABCD_0042);
    let (mut kills, mut step) = (0, 0);
    while kills < 24 && step < 40 {
        let workers = 1 + step % 3;
        let a = args(&crash_pipeline, workers);
        if let Some((_, spec)) = failpoints.iter().find(|(s, _)| *s == step) {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            abort_at(&a, spec, w.dir.path());
        } else {
            let at = kills * total / 26;
            let delay = Duration::from_millis((150.0 * rng.next_f64()) as u64);
            if kill_after(&a, &table, at, delay, w.dir.path()) {
                kills += 1;
            }
        }
        step += 1;
    }
    eprintln!(
        "uninterrupted run: {full:.2?}, {total} versions; {kills} kills hit a running process in {step} runs"
    );
    assert!(
        kills >= 24 && step > 14,
        "only {kills} runs were killed while running"
    );
    tidewater_ok(
        &args(&crash_pipeline, 2)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );

    // Final tables: the model, by two readers.
    let customers_model = reference_apply(
        file_lines(&w.customers).iter().map(|l| l.as_slice()),
        &["customer_id"],
        "__lsn",
    );
    assert_eq!(customers_model.bad.len(), w.bad.len());
    let expected = canonical(&reference_rows(&customers_model));
    let table = crashed.join("customers");
    assert_eq!(
        canonical(&py_read_table(&table, None).unwrap().rows),
        expected
    );
    assert_eq!(canonical(&deltalake_rows(&table, None).unwrap()), expected);
    let truth = canonical(&ground_truth_rows(&w.transfers.ground_truth()).unwrap());
    let accounts = crashed.join("accounts");
    assert_eq!(
        canonical(&py_read_table(&accounts, None).unwrap().rows),
        truth
    );
    assert_eq!(canonical(&deltalake_rows(&accounts, None).unwrap()), truth);

    // The same commit history as the uninterrupted run, version by version.
    for t in ["customers", "accounts", "_quarantine"] {
        let (a, b) = (history(&clean.join(t)), history(&crashed.join(t)));
        assert_eq!(
            a, b,
            "{t}: the commit history differs from the uninterrupted run"
        );
        assert!(
            a.windows(2).all(|p| p[0].0 < p[1].0),
            "{t}: epochs increase"
        );
        if t == "_quarantine" {
            continue;
        }
        for v in 0..a.len() as i64 {
            let rows = canonical(&deltalake_rows(&crashed.join(t), Some(v)).unwrap());
            assert_eq!(
                rows,
                canonical(&deltalake_rows(&clean.join(t), Some(v)).unwrap()),
                "{t} version {v} differs from the uninterrupted run"
            );
            if t == "accounts" {
                let rows = deltalake_rows(&crashed.join(t), Some(v)).unwrap();
                assert_eq!(
                    column_sum(&rows, "balance"),
                    w.transfers.initial_total(),
                    "accounts version {v}: the sum of balances"
                );
            }
        }
    }
    // Each malformed line quarantined once.
    let q = py_read_table(&crashed.join("_quarantine"), None).unwrap();
    let mut raws: Vec<String> = q
        .rows
        .iter()
        .map(|r| r["raw"].as_str().unwrap().to_string())
        .collect();
    raws.sort();
    let mut want = w.bad.clone();
    want.sort();
    assert_eq!(raws, want);
}
