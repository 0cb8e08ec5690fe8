//! Restart from the last committed epoch (issue 4, parts 1 and 3): a run aborted at each named
//! crash point and restarted gives exactly the tables of the model, with every Delta version a
//! whole epoch and nothing committed twice; a restart after a clean finish reads only new input
//! (a grown file, a new file in a directory); `tidewater vacuum` removes orphan files only.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tidewater_connectors::delta::{orphan_files, read_manifests};
use tidewater_connectors::generator::{reference_apply, BankGenConfig, BankGenerator};
use tidewater_e2e::python_reader::{py_read_log, py_read_table};
use tidewater_e2e::{
    abort_at, bank_pipeline, canonical, deltalake_rows, file_lines, lines_read_up_to,
    recorded_positions, reference_rows, tidewater, tidewater_env, tidewater_ok,
};

/// Generated CDC lines with a distinct malformed line after every 450th.
pub(crate) fn input_lines(events: u64) -> (Vec<String>, Vec<String>) {
    let mut g = BankGenerator::new(BankGenConfig {
        seed: 5,
        events,
        keys: 300,
        ..Default::default()
    });
    let (mut lines, mut bad) = (Vec::new(), Vec::new());
    let mut line = Vec::new();
    let mut i = 0;
    while g.next_line(&mut line) {
        lines.push(String::from_utf8(std::mem::take(&mut line)).unwrap());
        i += 1;
        if i % 450 == 0 {
            let b = format!("{{\"broken\": {i}");
            bad.push(b.clone());
            lines.push(b);
        }
    }
    (lines, bad)
}

pub(crate) fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

pub(crate) fn append_lines(path: &Path, lines: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
}

pub(crate) const SETTINGS: &str = "commit_every_records = 500\nbuckets = 4\nblock_bytes = 65536";

pub(crate) fn run_args(pipeline: &Path) -> Vec<String> {
    vec![
        "run".into(),
        pipeline.display().to_string(),
        "--workers".into(),
        "2".into(),
        "--exit-when-idle".into(),
    ]
}

/// A bank input of `events` lines (with bad lines) and its pipeline in a fresh directory.
pub(crate) struct Prepared {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) input: std::path::PathBuf,
    pub(crate) lines: Vec<String>,
    pub(crate) bad: Vec<String>,
    pub(crate) lakehouse: std::path::PathBuf,
    pub(crate) pipeline: std::path::PathBuf,
    pub(crate) args: Vec<String>,
}

pub(crate) fn prepared(events: u64) -> Prepared {
    prepared_with(events, SETTINGS)
}

/// [`prepared`] with other `[pipeline]` settings.
pub(crate) fn prepared_with(events: u64, settings: &str) -> Prepared {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    let (lines, bad) = input_lines(events);
    write_lines(&input, &lines);
    let lakehouse = dir.path().join("lh");
    let pipeline = bank_pipeline(dir.path(), &input, &lakehouse, settings);
    let args = run_args(&pipeline);
    Prepared {
        dir,
        input,
        lines,
        bad,
        lakehouse,
        pipeline,
        args,
    }
}

/// [`prepared`], run once to completion.
pub(crate) fn committed_run(events: u64) -> Prepared {
    let p = prepared(events);
    tidewater_ok(&p.args.iter().map(String::as_str).collect::<Vec<_>>());
    p
}

/// Checks a lakehouse after (restarted) runs over `inputs` (all input files, read in order):
/// the final table equals the model (both readers), version k equals the model over the input
/// of the epochs up to its own, every table commits each epoch once in increasing order, the
/// recorded cut covers every input byte exactly once, `_quarantine` holds each bad line once,
/// manifests match the versions, and no orphan file is left.
pub(crate) fn check_lakehouse(lakehouse: &Path, inputs: &[PathBuf], bad: &[String]) {
    let all: Vec<Vec<u8>> = inputs.iter().flat_map(|p| file_lines(p)).collect();
    let model = reference_apply(all.iter().map(|l| l.as_slice()), &["customer_id"], "__lsn");
    assert_eq!(model.bad.len(), bad.len());
    let expected = canonical(&reference_rows(&model));
    let table = lakehouse.join("customers");
    let quarantine = lakehouse.join("_quarantine");
    assert_eq!(
        canonical(&py_read_table(&table, None).unwrap().rows),
        expected,
        "pyarrow reader: final table differs from the model"
    );
    assert_eq!(
        canonical(&deltalake_rows(&table, None).unwrap()),
        expected,
        "delta-rs reader: final table differs from the model"
    );

    // The recorded cut: the union over the tables' commits (the event log's included: an
    // epoch that changed no table is recorded there) covers every byte of the input exactly
    // once, in order.
    let mut positions = recorded_positions(&table).unwrap();
    let log = lakehouse.join("_event_log");
    let mut others = recorded_positions(&quarantine).unwrap();
    if log.exists() {
        others.extend(recorded_positions(&log).unwrap());
    }
    for (e, p) in others {
        if let Some(old) = positions.insert(e, p.clone()) {
            assert_eq!(old, p, "epoch {e} recorded differently by the two tables");
        }
    }
    let mut next: std::collections::BTreeMap<String, u64> = Default::default();
    let mut order = Vec::new();
    for (e, sources) in &positions {
        for r in sources["customers_cdc"]["ranges"].as_array().unwrap() {
            let path = r["path"].as_str().unwrap().to_string();
            let at = next.entry(path.clone()).or_insert(0);
            assert_eq!(
                r["start"].as_u64(),
                Some(*at),
                "epoch {e}: a gap or overlap in {path}"
            );
            *at = r["end"].as_u64().unwrap();
            if order.last() != Some(&path) {
                order.push(path);
            }
        }
    }
    for p in inputs {
        let key = p.display().to_string();
        assert_eq!(
            next.get(&key).copied(),
            Some(std::fs::metadata(p).unwrap().len()),
            "{key} is not read completely"
        );
    }
    let max_epoch = *positions.keys().next_back().unwrap();
    assert_eq!(
        positions.keys().copied().collect::<Vec<_>>(),
        (0..=max_epoch).collect::<Vec<_>>(),
        "every epoch is recorded"
    );

    // Every table: one commit per epoch, epochs strictly increasing, versions contiguous.
    let manifests = read_manifests(lakehouse).unwrap();
    for (dir, name) in [(&table, "customers"), (&quarantine, "_quarantine")] {
        let log = py_read_log(dir).unwrap();
        let mut last = -1;
        for (k, c) in log.iter().enumerate() {
            assert_eq!(c.version, k as i64);
            let epoch = c.commit_info["tidewater"]["epoch"].as_i64().unwrap();
            assert_eq!(c.txn, vec![(format!("bank/{name}"), epoch)], "{name} v{k}");
            assert!(epoch > last, "{name}: epoch {epoch} committed after {last}");
            last = epoch;
            let m = manifests
                .get(&(epoch as u64))
                .unwrap_or_else(|| panic!("no manifest for epoch {epoch}"));
            assert_eq!(m.tables[name], k as i64, "manifest of epoch {epoch}");
            if name == "customers" {
                // Version k is the state after its epoch.
                let lines = lines_read_up_to(&positions, epoch as u64);
                let model = reference_apply(
                    lines.iter().map(|l| l.as_slice()),
                    &["customer_id"],
                    "__lsn",
                );
                assert_eq!(
                    canonical(&py_read_table(dir, Some(k as i64)).unwrap().rows),
                    canonical(&reference_rows(&model)),
                    "version {k} is not the state after epoch {epoch}"
                );
            }
        }
        assert!(
            orphan_files(dir, true).unwrap().is_empty(),
            "orphan files left in {name}"
        );
    }
    // Manifests name the version of each table as of their epoch.
    for (e, m) in &manifests {
        assert!(*e <= max_epoch as u64);
        assert_eq!(m.pipeline, "bank");
    }

    // Each bad line exactly once.
    let q = py_read_table(&quarantine, None).unwrap();
    let mut raws: Vec<String> = q
        .rows
        .iter()
        .map(|r| r["raw"].as_str().unwrap().to_string())
        .collect();
    raws.sort();
    let mut want = bad.to_vec();
    want.sort();
    assert_eq!(raws, want, "quarantine rows");
}

fn crash_and_restart(failpoint: &str, n: u64) {
    let p = prepared(4_000);
    let (dir, input, bad, lakehouse) = (&p.dir, &p.input, &p.bad, &p.lakehouse);
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    let spec = format!("{failpoint}:{n}");
    abort_at(&args, &spec, dir.path());
    // The crash left the state the point is named after.
    let last_epoch = |t: &str| -> Option<i64> {
        let dir = lakehouse.join(t);
        dir.join("_delta_log")
            .exists()
            .then(|| py_read_table(&dir, None).unwrap().txn[&format!("bank/{t}")])
    };
    let (q, c) = (last_epoch("_quarantine"), last_epoch("customers"));
    match failpoint {
        "after_parquet_before_commit" => {
            assert!(!orphan_files(&lakehouse.join("customers"), true)
                .unwrap()
                .is_empty())
        }
        // `_quarantine` sorts first, so it is the table that committed.
        "between_table_commits" => assert!(q > c, "{q:?} {c:?}"),
        "after_commit_before_manifest" => {
            let last = q.max(c).unwrap() as u64;
            assert!(!read_manifests(lakehouse).unwrap().contains_key(&last));
        }
        _ => {}
    }
    // The restart may use another worker count: the replay rebuilds the state either way.
    let mut args = args.clone();
    if failpoint == "mid_epoch" {
        args[3] = "3";
    }
    let had_commits = ["customers", "_quarantine"]
        .iter()
        .any(|t| lakehouse.join(t).join("_delta_log").exists());
    let out = tidewater_env(
        &args,
        &[("TIDEWATER_LOG", "warn,tidewater=info")],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "restart after {spec} failed: {stderr}"
    );
    assert_eq!(
        stderr.contains("resuming at epoch"),
        had_commits,
        "{stderr}"
    );
    check_lakehouse(lakehouse, std::slice::from_ref(input), bad);
}

#[test]
fn crash_after_parquet_before_commit() {
    crash_and_restart("after_parquet_before_commit", 1);
    crash_and_restart("after_parquet_before_commit", 4);
}

#[test]
fn crash_between_table_commits() {
    crash_and_restart("between_table_commits", 1);
    crash_and_restart("between_table_commits", 3);
}

#[test]
fn crash_after_commit_before_manifest() {
    crash_and_restart("after_commit_before_manifest", 1);
    crash_and_restart("after_commit_before_manifest", 5);
}

#[test]
fn crash_mid_epoch() {
    crash_and_restart("mid_epoch", 3);
    crash_and_restart("mid_epoch", 20);
}

#[test]
fn a_grown_file_is_read_from_where_the_last_run_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    let (lines, bad) = input_lines(4_000);
    let half = lines.len() / 2;
    write_lines(&input, &lines[..half]);
    let old_len = std::fs::metadata(&input).unwrap().len();
    let lakehouse = dir.path().join("lh");
    let pipeline = bank_pipeline(dir.path(), &input, &lakehouse, SETTINGS);
    let args = run_args(&pipeline);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tidewater_ok(&args);
    let table = lakehouse.join("customers");
    let first_versions = py_read_log(&table).unwrap().len();

    // Unchanged input: a restart replays and commits nothing.
    tidewater_ok(&args);
    assert_eq!(py_read_log(&table).unwrap().len(), first_versions);

    append_lines(&input, &lines[half..]);
    tidewater_ok(&args);
    // The commits of the last run read only the appended bytes.
    let log = py_read_log(&table).unwrap();
    assert!(log.len() > first_versions);
    for c in &log[first_versions..] {
        let positions = c.commit_info["tidewater"]["positions"].as_object().unwrap();
        for p in positions.values() {
            for r in p["customers_cdc"]["ranges"].as_array().unwrap() {
                assert!(r["start"].as_u64().unwrap() >= old_len, "re-read: {r}");
            }
        }
    }
    check_lakehouse(&lakehouse, &[input], &bad);
}

#[test]
fn a_new_file_in_a_directory_is_read_and_old_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    std::fs::create_dir(&input_dir).unwrap();
    let (lines, bad) = input_lines(3_000);
    let half = lines.len() / 2;
    let (a, b) = (input_dir.join("a.json"), input_dir.join("b.json"));
    write_lines(&a, &lines[..half]);
    let lakehouse = dir.path().join("lh");
    let pipeline = bank_pipeline(dir.path(), &input_dir, &lakehouse, SETTINGS);
    let args = run_args(&pipeline);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tidewater_ok(&args);
    let table = lakehouse.join("customers");
    let first_versions = py_read_log(&table).unwrap().len();

    write_lines(&b, &lines[half..]);
    tidewater_ok(&args);
    let log = py_read_log(&table).unwrap();
    assert!(log.len() > first_versions);
    for c in &log[first_versions..] {
        for p in c.commit_info["tidewater"]["positions"]
            .as_object()
            .unwrap()
            .values()
        {
            for r in p["customers_cdc"]["ranges"].as_array().unwrap() {
                assert_eq!(
                    r["path"],
                    Value::from(b.display().to_string()),
                    "re-read: {r}"
                );
            }
        }
    }
    check_lakehouse(&lakehouse, &[a, b], &bad);
}

#[test]
fn a_committed_input_that_shrank_is_an_error_naming_file_and_epoch() {
    let c = committed_run(2_000);
    let (input, lines, lakehouse) = (&c.input, &c.lines, &c.lakehouse);
    let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    let before = py_read_table(&lakehouse.join("customers"), None).unwrap();
    write_lines(input, &lines[..100]);
    let out = tidewater(&args);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&input.display().to_string())
            && stderr.contains("committed epoch")
            && stderr.contains("customers_cdc"),
        "{stderr}"
    );
    let after = py_read_table(&lakehouse.join("customers"), None).unwrap();
    assert_eq!(after.version, before.version);
}

#[test]
fn a_recorded_source_missing_from_the_pipeline_is_a_config_error() {
    let c = committed_run(1_000);
    let pipeline = &c.pipeline;
    let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    let text = std::fs::read_to_string(pipeline).unwrap();
    std::fs::write(pipeline, text.replace("customers_cdc", "renamed_cdc")).unwrap();
    let out = tidewater(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("source `customers_cdc`") && stderr.contains("not in the pipeline file"),
        "{stderr}"
    );
}

#[test]
fn vacuum_removes_orphans_and_keeps_committed_files() {
    let p = prepared(2_000);
    let (input, bad, lakehouse) = (&p.input, &p.bad, &p.lakehouse);
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    tidewater_ok(&args);
    let table = lakehouse.join("customers");
    let parquet = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    };
    let committed = parquet(&table);
    assert!(
        committed.len() > 4,
        "removed bucket files are kept for time travel"
    );
    let orphan = table.join("part-99999999-b00000-orphan.parquet");
    std::fs::copy(&committed[0], &orphan).unwrap();
    let tmp = table.join(".part-99999999-b00001-x.parquet.tmp");
    std::fs::write(&tmp, b"half").unwrap();
    let q_orphan = lakehouse
        .join("_quarantine")
        .join("part-99999999-w0000-orphan.parquet");
    std::fs::copy(&committed[0], &q_orphan).unwrap();
    let lh = lakehouse.to_str().unwrap();

    let out = tidewater_ok(&["vacuum", "--lakehouse", lh, "--dry-run"]);
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let mut want = vec![
        q_orphan.display().to_string(),
        tmp.display().to_string(),
        orphan.display().to_string(),
    ];
    want.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, want);
    assert!(orphan.exists() && tmp.exists() && q_orphan.exists());

    tidewater_ok(&["vacuum", "--lakehouse", lh]);
    assert!(!orphan.exists() && !tmp.exists() && !q_orphan.exists());
    assert_eq!(parquet(&table), committed);
    let out = tidewater_ok(&["vacuum", "--lakehouse", lh, "--dry-run"]);
    assert!(out.stdout.is_empty());
    // Time travel to the first version still works (its files were kept).
    py_read_table(&table, Some(0)).unwrap();
    check_lakehouse(lakehouse, std::slice::from_ref(input), bad);
}

#[test]
fn a_generator_source_is_regenerated_exactly_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = dir.path().join("lh");
    let pipeline = dir.path().join("gen.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[pipeline]\nname = \"bank\"\nlakehouse = \"{}\"\n{SETTINGS}\nstate_checkpoint_every = 2\n\n\
             [[source]]\nname = \"gen\"\nkind = \"generator\"\nseed = 9\nevents = 4000\nkeys = 300\n\n\
             [[table]]\nname = \"customers\"\nfrom = \"gen\"\nkeys = [\"customer_id\"]\nsequence_by = \"__lsn\"\n",
            lakehouse.display()
        ),
    )
    .unwrap();
    let args = run_args(&pipeline);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tidewater_env(
        &args,
        &[("TIDEWATER_FAILPOINT", "after_parquet_before_commit:5")],
        dir.path(),
    );
    assert_eq!(out.status.signal(), Some(6));
    // Epochs 0..=3 are committed, checkpoints 1 and 3 complete: the restart regenerates the
    // lines of epochs 0..=3 without applying them, and continues after them.
    let out = tidewater_ok(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "restart: 0 recorded epochs replayed, operator state restored from the checkpoint of epoch 3"
        ),
        "{stderr}"
    );

    let mut g = BankGenerator::new(BankGenConfig {
        seed: 9,
        events: 4000,
        keys: 300,
        ..Default::default()
    });
    let mut lines = Vec::new();
    let mut line = Vec::new();
    while g.next_line(&mut line) {
        lines.push(std::mem::take(&mut line));
    }
    let table = lakehouse.join("customers");
    let log = py_read_log(&table).unwrap();
    assert_eq!(log.len(), 8, "one commit per epoch of 500 records");
    let mut end = 0;
    for (k, c) in log.iter().enumerate() {
        assert_eq!(c.txn, vec![("bank/customers".to_string(), k as i64)]);
        let ranges = &c.commit_info["tidewater"]["positions"][k.to_string()]["gen"]["ranges"];
        for r in ranges.as_array().unwrap() {
            assert_eq!(r["from"].as_u64(), Some(end));
            end = r["to"].as_u64().unwrap();
        }
        let model = reference_apply(
            lines[..end as usize].iter().map(|l| l.as_slice()),
            &["customer_id"],
            "__lsn",
        );
        assert_eq!(
            canonical(&py_read_table(&table, Some(k as i64)).unwrap().rows),
            canonical(&reference_rows(&model)),
            "version {k}"
        );
    }
    assert_eq!(end, 4000);
    assert_eq!(
        canonical(&deltalake_rows(&table, None).unwrap()),
        canonical(&py_read_table(&table, None).unwrap().rows)
    );
    assert!(orphan_files(&table, true).unwrap().is_empty());
}
