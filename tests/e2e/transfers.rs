//! Bank transfers (issue 4, part 5): source transactions are never split across epochs. Every
//! transfer is one Debezium transaction of two updates (debit + credit), the snapshot is one
//! transaction, and `commit_every_records = 333` would often cut inside one; in EVERY Delta
//! version of `accounts` (time travel, read by pyarrow and by delta-rs) the sum of balances is
//! the initial total, the final table is the generator's ground truth, every epoch's recorded
//! ranges end at a transaction boundary, and each epoch is committed once — at 1 and 2 workers,
//! as a 2-process cluster, and across crashes (failpoints and a real `kill -9`) with restarts.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewater_connectors::delta::read_manifests;
use tidewater_connectors::formats::DebeziumParser;
use tidewater_connectors::generator::{
    write_transfers_file, TransfersGenConfig, TransfersGenerator,
};
use tidewater_e2e::python_reader::{py_read_all_versions, py_read_log, py_read_table};
use tidewater_e2e::{
    abort_at, accounts_pipeline, canonical, column_sum, deltalake_rows, ground_truth_rows,
    recorded_positions, tidewater_bin, tidewater_ok,
};

const SETTINGS: &str = "commit_every_records = 333\nbuckets = 4\nblock_bytes = 16384";
const ACCOUNTS: u64 = 400;

fn gen_cfg() -> TransfersGenConfig {
    TransfersGenConfig {
        seed: 11,
        events: 20_000,
        accounts: ACCOUNTS,
        ..TransfersGenConfig::default()
    }
}

/// The generator after its last line (ground truth) and the transaction id of every line.
fn generated(cfg: &TransfersGenConfig) -> (TransfersGenerator, Vec<String>) {
    let mut g = TransfersGenerator::new(cfg.clone());
    let (mut txs, mut line) = (Vec::new(), Vec::new());
    while g.next_line(&mut line) {
        txs.push(DebeziumParser::transaction_id(&line).expect("a transaction id"));
        line.clear();
    }
    (g, txs)
}

/// Where the recorded input ranges came from.
enum Input<'a> {
    /// A file: ranges are byte ranges of it.
    File(&'a Path),
    /// The generator source: ranges are line indices.
    Generator,
}

/// Checks a lakehouse written by pipeline `pipeline` from the transfers stream of `cfg`:
/// every version (both readers) has the initial total; version 0 is the whole snapshot; the
/// final table is the ground truth (both readers); one commit per epoch with its `txn`, epochs
/// strictly increasing; manifests name the versions; the recorded cut covers the stream once,
/// in order, and every epoch (for the generator: every block) ends at a transaction boundary.
/// Returns the records of every epoch.
fn check_lakehouse(
    lakehouse: &Path,
    pipeline: &str,
    cfg: &TransfersGenConfig,
    input: Input,
) -> Vec<u64> {
    let (gen, txs) = generated(cfg);
    let total = gen.initial_total();
    assert_eq!(total, ACCOUNTS as i64 * cfg.initial_balance);
    let table = lakehouse.join("accounts");
    let expected = canonical(&ground_truth_rows(&gen.ground_truth()).unwrap());
    assert!(expected.len() > ACCOUNTS as usize, "accounts were opened");
    assert_eq!(
        canonical(&py_read_table(&table, None).unwrap().rows),
        expected,
        "pyarrow reader: the final table is not the ground truth"
    );
    assert_eq!(
        canonical(&deltalake_rows(&table, None).unwrap()),
        expected,
        "delta-rs reader: the final table is not the ground truth"
    );

    // The invariant in every version, read by both readers.
    let log = py_read_log(&table).unwrap();
    let versions = py_read_all_versions(&table).unwrap();
    assert_eq!(versions.len(), log.len());
    assert!(log.len() > 20, "{} versions", log.len());
    assert_eq!(
        versions[0].rows.len(),
        ACCOUNTS as usize,
        "version 0 is the whole snapshot"
    );
    for (v, t) in versions.iter().enumerate() {
        assert_eq!(t.version, v as i64);
        assert_eq!(
            column_sum(&t.rows, "balance"),
            total,
            "pyarrow: sum of balances at version {v}"
        );
        let rs = deltalake_rows(&table, Some(v as i64)).unwrap();
        assert_eq!(
            column_sum(&rs, "balance"),
            total,
            "delta-rs: sum of balances at version {v}"
        );
        assert_eq!(
            canonical(&rs),
            canonical(&t.rows),
            "the readers differ at version {v}"
        );
    }

    // One commit per epoch, strictly increasing epochs, manifests naming the versions.
    let app = format!("{pipeline}/accounts");
    let manifests = read_manifests(lakehouse).unwrap();
    let mut last = -1;
    for (k, c) in log.iter().enumerate() {
        assert_eq!(c.version, k as i64);
        let epoch = c.commit_info["tidewater"]["epoch"].as_i64().unwrap();
        assert_eq!(c.txn, vec![(app.clone(), epoch)], "version {k}");
        assert!(epoch > last, "epoch {epoch} committed after epoch {last}");
        last = epoch;
        let m = manifests
            .get(&(epoch as u64))
            .unwrap_or_else(|| panic!("no manifest of epoch {epoch}"));
        assert_eq!(m.tables["accounts"], k as i64, "manifest of epoch {epoch}");
    }

    // The recorded cut: the whole stream once, in order; transactions never split.
    let positions = recorded_positions(&table).unwrap();
    let max_epoch = *positions.keys().next_back().unwrap();
    assert_eq!(
        positions.keys().copied().collect::<Vec<_>>(),
        (0..=max_epoch).collect::<Vec<_>>(),
        "every epoch is recorded"
    );
    // For a file: the byte offset after each line.
    let line_ends: Vec<u64> = match input {
        Input::File(path) => {
            let bytes = std::fs::read(path).unwrap();
            let mut ends = vec![0];
            ends.extend(
                bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i as u64 + 1),
            );
            assert_eq!(ends.len() - 1, txs.len());
            ends
        }
        Input::Generator => Vec::new(),
    };
    let line_at = |offset: u64| -> usize {
        line_ends
            .binary_search(&offset)
            .unwrap_or_else(|_| panic!("offset {offset} is not at a line boundary"))
    };
    let boundary = |at: usize| at >= txs.len() || txs[at - 1] != txs[at];
    let mut next = 0usize;
    let mut records = Vec::new();
    for (e, sources) in &positions {
        let pos = &sources["accounts_cdc"];
        let first = next;
        for r in pos["ranges"].as_array().unwrap() {
            let (from, to) = match input {
                Input::File(_) => (
                    line_at(r["start"].as_u64().unwrap()),
                    line_at(r["end"].as_u64().unwrap()),
                ),
                Input::Generator => (
                    r["from"].as_u64().unwrap() as usize,
                    r["to"].as_u64().unwrap() as usize,
                ),
            };
            assert_eq!(from, next, "epoch {e}: a gap or an overlap at line {next}");
            next = to;
            if let Input::Generator = input {
                assert!(
                    boundary(next),
                    "epoch {e}: a generated block ends inside transaction {}",
                    txs[next - 1]
                );
            }
        }
        assert!(next > first, "epoch {e} is empty");
        assert_eq!(
            pos["records"].as_u64(),
            Some((next - first) as u64),
            "epoch {e}"
        );
        assert!(
            boundary(next),
            "epoch {e} ends inside transaction {} (line {next})",
            txs[next - 1]
        );
        records.push((next - first) as u64);
    }
    assert_eq!(next, txs.len(), "the whole stream is read");
    records
}

fn file_run(run_args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("accounts.json");
    let cfg = gen_cfg();
    write_transfers_file(&cfg, &input).unwrap();
    let lakehouse = dir.path().join("lh");
    let source = format!("kind = \"files\"\npath = \"{}\"", input.display());
    let pipeline = accounts_pipeline(dir.path(), "transfers", &lakehouse, &source, SETTINGS);
    let mut args = run_args.to_vec();
    let p = pipeline.to_str().unwrap();
    args.insert(1, p);
    tidewater_ok(&args);
    let records = check_lakehouse(&lakehouse, "transfers", &cfg, Input::File(&input));
    // The cut was moved to transaction boundaries: the snapshot (400 lines) is one epoch, and
    // other epochs were extended past 333 records to finish a transfer.
    assert_eq!(records[0], ACCOUNTS);
    assert!(
        records.iter().any(|r| *r == 334 || *r == 335),
        "{records:?}"
    );
}

#[test]
fn transfers_one_worker() {
    file_run(&["run", "--workers", "1", "--exit-when-idle"]);
}

#[test]
fn transfers_two_workers() {
    file_run(&["run", "--workers", "2", "--exit-when-idle"]);
}

#[test]
fn transfers_two_process_cluster() {
    file_run(&[
        "cluster",
        "--processes",
        "2",
        "--workers",
        "1",
        "--exit-when-idle",
    ]);
}

/// The generator source: a block (so an epoch) never ends inside a transaction either.
#[test]
fn transfers_generator_source() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = dir.path().join("lh");
    let cfg = gen_cfg();
    let pipeline = accounts_pipeline(
        dir.path(),
        "gen",
        &lakehouse,
        &generator_source(&cfg),
        SETTINGS,
    );
    tidewater_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--workers",
        "2",
        "--exit-when-idle",
    ]);
    let records = check_lakehouse(&lakehouse, "gen", &cfg, Input::Generator);
    assert_eq!(records[0], ACCOUNTS);
}

fn generator_source(cfg: &TransfersGenConfig) -> String {
    format!(
        "kind = \"generator\"\nworkload = \"transfers\"\nseed = {}\nevents = {}\nkeys = {}",
        cfg.seed, cfg.events, cfg.accounts
    )
}

/// The largest epoch with a manifest.
fn newest_manifest(lakehouse: &Path) -> Option<u64> {
    read_manifests(lakehouse).ok()?.keys().next_back().copied()
}

/// Crashes at several failpoints and a real `kill -9` of a running (rate-limited) run, each
/// followed by a restart with another worker/process layout; the final lakehouse holds the
/// invariant in every version, the exact ground truth, and each epoch once.
#[test]
fn transfers_survive_crashes_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = dir.path().join("lh");
    let cfg = gen_cfg();
    let source = generator_source(&cfg);
    let pipeline = accounts_pipeline(dir.path(), "crashy", &lakehouse, &source, SETTINGS);
    let p = pipeline.to_str().unwrap();

    abort_at(
        &["run", p, "--workers", "2", "--exit-when-idle"],
        "after_parquet_before_commit:3",
        dir.path(),
    );
    abort_at(
        &["run", p, "--workers", "1", "--exit-when-idle"],
        "after_commit_before_manifest:4",
        dir.path(),
    );
    abort_at(
        &["run", p, "--workers", "2", "--exit-when-idle"],
        "mid_epoch:40",
        dir.path(),
    );

    // A real kill -9 in the middle of a run: the same pipeline paced by `rate` (not part of
    // the generator's identity: the lines are the same), killed by its pid once it committed a
    // new epoch.
    let before = newest_manifest(&lakehouse);
    let paced_dir = dir.path().join("paced");
    std::fs::create_dir(&paced_dir).unwrap();
    let paced = accounts_pipeline(
        &paced_dir,
        "crashy",
        &lakehouse,
        &format!("{source}\nrate = 1000"),
        SETTINGS,
    );
    let mut child = Command::new(tidewater_bin())
        .args([
            "run",
            paced.to_str().unwrap(),
            "--workers",
            "2",
            "--exit-when-idle",
        ])
        .env("TIDEWATER_LOG", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while newest_manifest(&lakehouse) <= before {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the paced run ended before a new epoch"
        );
        assert!(Instant::now() < deadline, "no new epoch within 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the paced run must still be running"
    );
    let killed = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    let after_kill = newest_manifest(&lakehouse).unwrap();
    assert!(
        after_kill < cfg.events / 333,
        "the run was killed before the end (epoch {after_kill})"
    );

    // The last restart, as a 2-process cluster, runs to the end.
    tidewater_ok(&[
        "cluster",
        p,
        "--processes",
        "2",
        "--workers",
        "1",
        "--exit-when-idle",
    ]);
    check_lakehouse(&lakehouse, "crashy", &cfg, Input::Generator);
    // A further run finds everything committed.
    let out = tidewater_ok(&["run", p, "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0 epochs committed"), "{stderr}");
}
