//! Operator-state checkpoints (issue 4, part 2): a restart loads the newest complete checkpoint
//! and replays only the epochs after it — also into another number of workers, after a crash
//! while a checkpoint was being written, and (falling back to an older one) when the newest is
//! damaged — and always ends with exactly the tables of the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tidewater_e2e::{abort_at, recorded_positions, tidewater_env};

use crate::restart::{append_lines, check_lakehouse, input_lines, prepared_with, SETTINGS};

/// Checkpoints every 3 epochs of 500 records: epochs 2, 5, 8 are due.
fn settings() -> String {
    format!("{SETTINGS}\nstate_checkpoint_every = 3")
}

/// The checkpoints of a lakehouse: epoch → (directory, complete?).
fn checkpoints(lakehouse: &Path) -> BTreeMap<u64, (PathBuf, bool)> {
    let root = lakehouse.join("_tidewater/checkpoints");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let e: u64 = p.file_name()?.to_str()?.parse().ok()?;
            let complete = p.join("MANIFEST.json").exists();
            Some((e, (p, complete)))
        })
        .collect()
}

fn complete(lakehouse: &Path) -> Vec<u64> {
    checkpoints(lakehouse)
        .into_iter()
        .filter(|(_, (_, c))| *c)
        .map(|(e, _)| e)
        .collect()
}

/// The largest epoch committed to `customers` or `_quarantine`.
fn max_committed(lakehouse: &Path) -> u64 {
    let mut max = 0;
    for t in ["customers", "_quarantine"] {
        if let Ok(p) = recorded_positions(&lakehouse.join(t)) {
            max = max.max(*p.keys().next_back().unwrap_or(&0));
        }
    }
    max
}

/// Restarts with `workers` and returns stderr (asserting success).
fn restart(args: &[String], workers: &str, cwd: &Path) -> String {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args[3] = workers;
    let out = tidewater_env(&args, &[("TIDEWATER_LOG", "warn,tidewater=info")], cwd);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "restart failed: {stderr}");
    stderr
}

#[test]
fn a_restart_replays_only_the_epochs_after_the_newest_checkpoint() {
    let p = prepared_with(4_300, &settings());
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    // The 8th commit round is epoch 7: checkpoints 2 and 5 are complete, 7 has no manifest.
    abort_at(&args, "after_commit_before_manifest:8", p.dir.path());
    assert_eq!(complete(&p.lakehouse), vec![2, 5]);
    let committed = max_committed(&p.lakehouse);
    assert_eq!(committed, 7);
    // The manifest names the epoch and the position of the source at its end.
    let m: Value = serde_json::from_slice(
        &std::fs::read(checkpoints(&p.lakehouse)[&5].0.join("MANIFEST.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["epoch"], 5);
    assert_eq!(m["workers"], 2);
    assert_eq!(m["tables"]["customers"]["buckets"], 4);
    let recorded = recorded_positions(&p.lakehouse.join("customers")).unwrap();
    assert_eq!(
        m["positions"]["customers_cdc"],
        Value::Object(recorded[&5].clone())["customers_cdc"]
    );

    let stderr = restart(&p.args, "2", p.dir.path());
    assert!(
        stderr.contains(
            "restart: 2 recorded epochs replayed, operator state restored from the checkpoint of epoch 5"
        ),
        "{stderr}"
    );
    check_lakehouse(&p.lakehouse, std::slice::from_ref(&p.input), &p.bad);
    // 4309 lines in epochs of 500: the last epoch is 8 (309 lines, so every worker has data
    // of it and saves its checkpoint), due and complete; two are kept.
    assert_eq!(complete(&p.lakehouse), vec![5, 8]);
    assert!(checkpoints(&p.lakehouse).values().all(|(_, c)| *c));
}

/// With the row spill, the state saved at a checkpoint holds no rows and restores like any
/// other: a restart with the spill, and one more without it (the checkpoint's format is the
/// same), end with exactly the tables of the model.
#[test]
fn checkpoints_of_a_spilling_table_restore_with_and_without_the_spill() {
    let p = prepared_with(4_300, &format!("{}\nspill_rows = true", settings()));
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    abort_at(&args, "after_commit_before_manifest:8", p.dir.path());
    assert_eq!(complete(&p.lakehouse), vec![2, 5]);
    let stderr = restart(&p.args, "2", p.dir.path());
    assert!(
        stderr.contains("operator state restored from the checkpoint of epoch 5"),
        "{stderr}"
    );
    check_lakehouse(&p.lakehouse, std::slice::from_ref(&p.input), &p.bad);
    assert_eq!(complete(&p.lakehouse), vec![5, 8]);
    // The spill turned off, more input: restored from checkpoint 8 that the spilling run saved.
    let text = std::fs::read_to_string(&p.pipeline).unwrap();
    std::fs::write(
        &p.pipeline,
        text.replace("spill_rows = true", "spill_rows = false"),
    )
    .unwrap();
    let (more, more_bad) = input_lines(1_500);
    let rename = |l: &String| l.replace("\"broken\"", "\"broken2\"");
    append_lines(&p.input, &more.iter().map(rename).collect::<Vec<_>>());
    let stderr = restart(&p.args, "3", p.dir.path());
    assert!(
        stderr.contains("operator state restored from the checkpoint of epoch 8"),
        "{stderr}"
    );
    let bad: Vec<String> = p
        .bad
        .iter()
        .cloned()
        .chain(more_bad.iter().map(rename))
        .collect();
    check_lakehouse(&p.lakehouse, std::slice::from_ref(&p.input), &bad);
}

/// A source that ends long before the others (here in epoch 0) does not stop checkpoints: when
/// its input ends, each worker saves its table's state once as final, and every later
/// checkpoint takes it; a restart loads it and the small table stays exact.
#[test]
fn a_source_that_ends_early_does_not_stop_checkpoints() {
    let p = prepared_with(4_300, &settings());
    let vips = p.dir.path().join("vips.json");
    let vip_lines: Vec<String> = p
        .lines
        .iter()
        .filter(|l| !p.bad.contains(l))
        .take(60)
        .cloned()
        .collect();
    crate::restart::write_lines(&vips, &vip_lines);
    let mut toml = std::fs::read_to_string(&p.pipeline).unwrap();
    toml.push_str(&format!(
        "\n[[source]]\nname = \"vips_cdc\"\nkind = \"files\"\npath = \"{}\"\n\n\
         [[table]]\nname = \"vips\"\nfrom = \"vips_cdc\"\nkeys = [\"customer_id\"]\nsequence_by = \"__lsn\"\n",
        vips.display()
    ));
    std::fs::write(&p.pipeline, toml).unwrap();
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    abort_at(&args, "after_commit_before_manifest:8", p.dir.path());
    assert_eq!(complete(&p.lakehouse), vec![2, 5]);
    let m: Value = serde_json::from_slice(
        &std::fs::read(checkpoints(&p.lakehouse)[&5].0.join("MANIFEST.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["tables"]["vips"]["buckets"], 4);

    let stderr = restart(&p.args, "3", p.dir.path());
    assert!(
        stderr.contains("operator state restored from the checkpoint of epoch 5"),
        "{stderr}"
    );
    check_lakehouse(&p.lakehouse, std::slice::from_ref(&p.input), &p.bad);
    let model = tidewater_connectors::generator::reference_apply(
        vip_lines.iter().map(|l| l.as_bytes()),
        &["customer_id"],
        "__lsn",
    );
    let expected = tidewater_e2e::canonical(&tidewater_e2e::reference_rows(&model));
    assert!(expected.len() > 20);
    assert_eq!(
        tidewater_e2e::canonical(
            &tidewater_e2e::deltalake_rows(&p.lakehouse.join("vips"), None).unwrap()
        ),
        expected
    );
    // The restarted run's checkpoint 8 is complete too (its vips buckets from the final
    // state of the restarted run, whose vips input was already read).
    assert_eq!(complete(&p.lakehouse), vec![5, 8]);
    assert!(checkpoints(&p.lakehouse).values().all(|(_, c)| *c));
}

#[test]
fn changing_the_worker_count_redistributes_the_checkpointed_state() {
    let p = prepared_with(4_300, &settings());
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    // Epoch 7's files are written, its commit is not: epochs 0..=6 are committed.
    abort_at(&args, "after_parquet_before_commit:8", p.dir.path());
    assert_eq!(complete(&p.lakehouse), vec![2, 5]);
    assert_eq!(max_committed(&p.lakehouse), 6);
    // Written by 2 workers, loaded by 3.
    let stderr = restart(&p.args, "3", p.dir.path());
    assert!(
        stderr.contains("written by 2 workers in 1 processes, now 3 in 1: its state is redistributed by key bucket"),
        "{stderr}"
    );
    assert!(
        stderr.contains("restart: 1 recorded epochs replayed, operator state restored from the checkpoint of epoch 5"),
        "{stderr}"
    );
    check_lakehouse(&p.lakehouse, std::slice::from_ref(&p.input), &p.bad);
    // More input, read by 1 worker from the checkpoint 3 workers completed.
    let (more, more_bad) = input_lines(1_500);
    let more: Vec<String> = more
        .into_iter()
        .map(|l| l.replace("\"broken\"", "\"broken2\""))
        .collect();
    append_lines(&p.input, &more);
    let stderr = restart(&p.args, "1", p.dir.path());
    assert!(
        stderr.contains("operator state restored from the checkpoint of epoch 8")
            && stderr.contains("written by 3 workers in 1 processes, now 1 in 1"),
        "{stderr}"
    );
    let bad: Vec<String> = p
        .bad
        .iter()
        .cloned()
        .chain(
            more_bad
                .iter()
                .map(|l| l.replace("\"broken\"", "\"broken2\"")),
        )
        .collect();
    check_lakehouse(&p.lakehouse, std::slice::from_ref(&p.input), &bad);
}

#[test]
fn a_crash_while_a_checkpoint_is_written_leaves_it_unused_and_removed() {
    // A checkpoint is 5 writes (4 bucket files, 2 per worker, then the manifest): write 2 is
    // a bucket file and write 5 the manifest of checkpoint 2, write 7 a bucket file of
    // checkpoint 5. The crash leaves that checkpoint without a manifest.
    for n in [2, 5, 7] {
        let p = prepared_with(4_300, &settings());
        let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
        abort_at(&args, &format!("checkpoint_write:{n}"), p.dir.path());
        let before = checkpoints(&p.lakehouse);
        let expected_incomplete = if n == 7 { 5 } else { 2 };
        assert_eq!(
            before.get(&expected_incomplete).map(|(_, c)| *c),
            Some(false),
            "n = {n}: {before:?}"
        );
        let stderr = restart(&p.args, "2", p.dir.path());
        check_lakehouse(&p.lakehouse, std::slice::from_ref(&p.input), &p.bad);
        assert!(
            checkpoints(&p.lakehouse).values().all(|(_, c)| *c),
            "n = {n}: an incomplete checkpoint is left: {:?}\n{stderr}",
            checkpoints(&p.lakehouse)
        );
        assert_eq!(complete(&p.lakehouse), vec![5, 8], "n = {n}");
    }
}

#[test]
fn a_damaged_checkpoint_is_not_loaded_and_an_older_one_is() {
    let p = prepared_with(4_300, &settings());
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    abort_at(&args, "after_commit_before_manifest:8", p.dir.path());
    assert_eq!(complete(&p.lakehouse), vec![2, 5]);
    // Flip one byte in the payload of a bucket file of checkpoint 5.
    let file = checkpoints(&p.lakehouse)[&5].0.join("customers/b00001.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    let i = bytes.len() - 3;
    bytes[i] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let stderr = restart(&p.args, "2", p.dir.path());
    assert!(
        stderr.contains("checkpoint not used") && stderr.contains("checksum mismatch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("restart: 5 recorded epochs replayed, operator state restored from the checkpoint of epoch 2"),
        "{stderr}"
    );
    check_lakehouse(&p.lakehouse, std::slice::from_ref(&p.input), &p.bad);
    // The damaged checkpoint was removed and written again by the replay.
    assert_eq!(complete(&p.lakehouse), vec![5, 8]);
}

#[test]
fn without_checkpoints_a_restart_replays_every_committed_epoch() {
    let p = prepared_with(4_300, &format!("{SETTINGS}\nstate_checkpoint_every = 0"));
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    abort_at(&args, "after_commit_before_manifest:8", p.dir.path());
    assert!(checkpoints(&p.lakehouse).is_empty());
    let stderr = restart(&p.args, "2", p.dir.path());
    assert!(
        stderr.contains("restart: 8 recorded epochs replayed\n"),
        "{stderr}"
    );
    check_lakehouse(&p.lakehouse, std::slice::from_ref(&p.input), &p.bad);
    assert!(checkpoints(&p.lakehouse).is_empty());
}
