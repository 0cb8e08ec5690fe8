//! Expectations and bad input (issue 6, part 3) and the event log (part 5): eleven kinds of
//! malformed or violating records, 1,000 of each, mixed into a good stream. Every bad record
//! lands in `_quarantine` with its reason (or is dropped / kept and counted, as its
//! expectation says), every good record is applied exactly, the pipeline never stops, and the
//! event log's counts equal what was fed in. A `fail` expectation stops the pipeline and
//! leaves every table at its last committed epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tidewater_e2e::python_reader::py_read_table;
use tidewater_e2e::{canonical, deltalake_rows, tidewater, tidewater_ok, JsonRow};

const KEYS: u64 = 400;
const COUNTRIES: [&str; 3] = ["CH", "DE", "FR"];

/// A tiny deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the pipeline must do with a line.
#[derive(Clone, Debug, PartialEq)]
enum Fate {
    /// Applied (`delete`: deletes its key); `warn`: violates the warn expectation.
    Good {
        id: i64,
        lsn: i64,
        delete: bool,
        row: JsonRow,
        warn: bool,
    },
    /// A skipped Debezium tombstone (`null`).
    Skipped,
    /// Quarantined with a reason containing this text.
    Quarantined(String),
    /// Dropped by the `drop` expectation.
    Dropped,
}

fn envelope(op: &str, lsn: Value, after: Value) -> String {
    let (before, after) = if op == "d" {
        (after, Value::Null)
    } else {
        (Value::Null, after)
    };
    json!({"before": before, "after": after, "source": {"lsn": lsn}, "op": op, "ts_ms": 1})
        .to_string()
}

fn record(id: Value, name: Value, email: &str, country: &str, amount: Value) -> Value {
    json!({"id": id, "name": name, "email": email, "country": country, "amount": amount})
}

/// The input: good upserts and deletes over `KEYS` keys, exact duplicates of earlier lines,
/// tombstones, and 1,000 records of each bad kind, shuffled together; lsn grows with the line.
fn input() -> Vec<(String, Fate)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let kinds = 11u64;
    let bad_each = 1000u64;
    let mut plan: Vec<u64> = (0..kinds)
        .flat_map(|k| std::iter::repeat_n(k + 1, bad_each as usize))
        .collect();
    plan.extend(std::iter::repeat_n(0, 9000));
    // Fisher–Yates.
    for i in (1..plan.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        plan.swap(i, j);
    }
    let mut out: Vec<(String, Fate)> = Vec::new();
    for (i, kind) in plan.into_iter().enumerate() {
        let lsn = i as i64 + 1;
        let id = rng.below(KEYS) as i64;
        let name = json!(format!("n{}", rng.below(1000)));
        let email = format!("u{id}@example.com");
        let country = COUNTRIES[rng.below(3) as usize];
        let amount = json!(rng.below(10_000) as i64);
        let good = |rec: Value, delete: bool, warn: bool| {
            let row = rec.as_object().unwrap().clone();
            Fate::Good {
                id,
                lsn,
                delete,
                row,
                warn,
            }
        };
        let line_fate = match kind {
            0 => {
                let roll = rng.below(100);
                if roll < 4 && !out.is_empty() {
                    // An exact duplicate of an earlier good line: stale.
                    let j = rng.below(out.len() as u64) as usize;
                    out[j].clone()
                } else if roll < 6 {
                    ("null".to_string(), Fate::Skipped)
                } else {
                    let delete = roll < 14;
                    let rec = record(json!(id), name, &email, country, amount);
                    let op = if delete { "d" } else { "u" };
                    (
                        envelope(op, json!(lsn), rec.clone()),
                        good(rec, delete, false),
                    )
                }
            }
            1 => (
                envelope(
                    "u",
                    json!(lsn),
                    record(json!(id), name, &email, country, amount),
                )[..40]
                    .to_string(),
                Fate::Quarantined("malformed JSON".into()),
            ),
            2 => (
                envelope(
                    "u",
                    json!(lsn),
                    record(Value::Null, name, &email, country, amount),
                ),
                Fate::Quarantined("key column `id` is null or missing".into()),
            ),
            3 => {
                let mut rec = record(json!(id), name, &email, country, amount);
                rec.as_object_mut().unwrap().remove("id");
                (
                    envelope("u", json!(lsn), rec),
                    Fate::Quarantined("key column `id` is null or missing".into()),
                )
            }
            4 => (
                envelope(
                    "u",
                    Value::Null,
                    record(json!(id), name, &email, country, amount),
                ),
                Fate::Quarantined("sequence column `__lsn` is null or missing".into()),
            ),
            5 => (
                envelope(
                    "x",
                    json!(lsn),
                    record(json!(id), name, &email, country, amount),
                ),
                Fate::Quarantined("unknown op".into()),
            ),
            6 => (
                envelope(
                    "u",
                    json!(lsn),
                    record(json!(id), name, &email, country, json!("lots")),
                ),
                Fate::Quarantined("amount".into()),
            ),
            7 => (
                format!("[{lsn}, {id}]"),
                Fate::Quarantined("expected a Debezium JSON object".into()),
            ),
            8 => (
                envelope(
                    "u",
                    json!(lsn),
                    record(json!(id), name, &email, country, json!(-5)),
                ),
                Fate::Quarantined("expectation `valid_amount` violated: amount >= 0".into()),
            ),
            9 => (
                envelope(
                    "u",
                    json!(lsn),
                    record(json!(id), name, "nobody", country, amount),
                ),
                Fate::Quarantined("expectation `valid_email` violated".into()),
            ),
            10 => (
                envelope(
                    "u",
                    json!(lsn),
                    record(json!(id), Value::Null, &email, country, amount),
                ),
                Fate::Dropped,
            ),
            11 => {
                let rec = record(json!(id), name, &email, "XX", amount);
                (
                    envelope("u", json!(lsn), rec.clone()),
                    good(rec, false, true),
                )
            }
            _ => unreachable!(),
        };
        out.push(line_fate);
    }
    out
}

const EXPECTATIONS: &str = r#"
[[table.expect]]
name = "valid_amount"
condition = "amount >= 0"
on_violation = "quarantine"

[[table.expect]]
name = "valid_email"
condition = "email LIKE '%@%'"
on_violation = "quarantine"

[[table.expect]]
name = "has_name"
condition = "name IS NOT NULL"
on_violation = "drop"

[[table.expect]]
name = "known_country"
condition = "country IN ('CH', 'DE', 'FR')"
on_violation = "warn"
"#;

fn pipeline(dir: &Path, input: &Path, name: &str, every: u64, extra: &str) -> PathBuf {
    let text = format!(
        r#"[pipeline]
name = "{name}"
lakehouse = "{}"
commit_every_records = {every}
buckets = 8

[[source]]
name = "accounts_cdc"
kind = "files"
path = "{}"

[[table]]
name = "accounts"
from = "accounts_cdc"
keys = ["id"]
sequence_by = "__lsn"
columns = {{ id = "int64", name = "string", email = "string", country = "string", amount = "int64" }}
{EXPECTATIONS}{extra}
"#,
        dir.join(format!("{name}-lh")).display(),
        input.display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// The model: the final table (SCD type 1 of the good lines by lsn; duplicates are stale).
fn model_table(lines: &[(String, Fate)]) -> Vec<JsonRow> {
    let mut state: BTreeMap<i64, (i64, Option<JsonRow>)> = BTreeMap::new();
    for (_, fate) in lines {
        if let Fate::Good {
            id,
            lsn,
            delete,
            row,
            ..
        } = fate
        {
            let e = state.entry(*id).or_insert((i64::MIN, None));
            if *lsn > e.0 {
                let mut row = row.clone();
                row.insert("__lsn".into(), json!(lsn));
                *e = (*lsn, (!delete).then_some(row));
            }
        }
    }
    state.into_values().filter_map(|(_, r)| r).collect()
}

#[test]
fn eleven_kinds_of_bad_records_are_quarantined_dropped_or_counted_and_the_event_log_adds_up() {
    let lines = input();
    let text: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("accounts.json");
    std::fs::write(&input_path, &text).unwrap();
    let expected = canonical(&model_table(&lines));
    assert!(expected.len() > 300, "the model keeps most keys");

    for workers in ["1", "2", "4"] {
        let name = format!("expect{workers}");
        let p = pipeline(dir.path(), &input_path, &name, 4000, "");
        tidewater_ok(&[
            "run",
            p.to_str().unwrap(),
            "--workers",
            workers,
            "--exit-when-idle",
        ]);
        let lh = dir.path().join(format!("{name}-lh"));

        // Good records: exact, read back by two independent readers.
        let table = lh.join("accounts");
        assert_eq!(canonical(&deltalake_rows(&table, None).unwrap()), expected);
        assert_eq!(
            canonical(&py_read_table(&table, None).unwrap().rows),
            expected
        );

        // Every quarantined record once, with its raw text, position and reason.
        let q = py_read_table(&lh.join("_quarantine"), None).unwrap();
        let want: Vec<(usize, &str)> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, (_, f))| match f {
                Fate::Quarantined(r) => Some((i, r.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(q.rows.len(), want.len(), "{workers} worker(s)");
        let mut offsets = Vec::with_capacity(lines.len());
        let mut at = 0usize;
        for (l, _) in &lines {
            offsets.push(at);
            at += l.len() + 1;
        }
        let by_position: BTreeMap<String, &JsonRow> = q
            .rows
            .iter()
            .map(|r| (r["position"].as_str().unwrap().to_string(), r))
            .collect();
        for (i, reason) in want {
            let pos = format!("{}:{}", input_path.display(), offsets[i]);
            let row = by_position
                .get(&pos)
                .unwrap_or_else(|| panic!("line {i} not quarantined: {}", lines[i].0));
            assert_eq!(row["raw"], json!(lines[i].0));
            assert_eq!(row["table"], "accounts");
            let got = row["reason"].as_str().unwrap();
            assert!(
                got.contains(reason),
                "line {i}: reason `{got}` should contain `{reason}`"
            );
        }

        // The event log: one row per epoch, counts equal to the model's per epoch.
        let log = py_read_table(&lh.join("_event_log"), None).unwrap().rows;
        check_event_log(&log, &lines, &offsets, &input_path);

        // `tidewater status` summarises it.
        let out = tidewater_ok(&["status", "--lakehouse", lh.to_str().unwrap()]);
        let status = String::from_utf8_lossy(&out.stdout);
        assert!(status.contains("accounts"), "{status}");
        let warned = lines
            .iter()
            .filter(|(_, f)| matches!(f, Fate::Good { warn: true, .. }))
            .count();
        assert!(
            status.contains(&format!(" {warned} failed"))
                && status.contains("expectation known_country (warn): "),
            "{status}"
        );
    }
}

/// Per epoch (its byte ranges from the event log's positions): lines read, quarantined,
/// dropped, stale, upserted/deleted keys and expectation counts equal the model's.
fn check_event_log(log: &[JsonRow], lines: &[(String, Fate)], offsets: &[usize], input: &Path) {
    let file = input.display().to_string();
    // Model state before each epoch: key → (lsn, deleted).
    let mut state: BTreeMap<i64, (i64, bool)> = BTreeMap::new();
    let mut epochs: Vec<&JsonRow> = log.iter().collect();
    epochs.sort_by_key(|r| r["epoch"].as_i64().unwrap());
    let mut covered = 0usize;
    for row in epochs {
        assert_eq!(row["table"], "accounts");
        let epoch = row["epoch"].as_i64().unwrap().to_string();
        let positions: Value = serde_json::from_str(row["positions"].as_str().unwrap()).unwrap();
        let mut in_epoch: BTreeSet<usize> = BTreeSet::new();
        for (e, sources) in positions.as_object().unwrap() {
            let src = &sources["accounts_cdc"];
            for r in src["ranges"].as_array().unwrap() {
                if r["path"].as_str() != Some(file.as_str()) {
                    continue;
                }
                let (from, to) = (
                    r["start"].as_u64().unwrap() as usize,
                    r["end"].as_u64().unwrap() as usize,
                );
                for (i, o) in offsets.iter().enumerate() {
                    if *o >= from && *o < to {
                        in_epoch.insert(i);
                    }
                }
            }
            assert!(
                *e <= epoch || e.len() < epoch.len(),
                "positions of a later epoch"
            );
        }
        covered += in_epoch.len();
        let mut quarantined = 0;
        let mut dropped = 0;
        let mut changes = 0;
        let mut evaluated = 0;
        let mut failed = [0u64; 4];
        let mut winners: BTreeMap<i64, (i64, bool)> = BTreeMap::new();
        for i in &in_epoch {
            match &lines[*i].1 {
                Fate::Quarantined(r) => {
                    quarantined += 1;
                    if r.contains("valid_amount") {
                        evaluated += 1;
                        failed[0] += 1;
                    } else if r.contains("valid_email") {
                        evaluated += 1;
                        failed[1] += 1;
                    }
                }
                Fate::Dropped => {
                    dropped += 1;
                    evaluated += 1;
                    failed[2] += 1;
                }
                Fate::Skipped => {}
                Fate::Good {
                    id,
                    lsn,
                    delete,
                    warn,
                    ..
                } => {
                    changes += 1;
                    if !delete {
                        evaluated += 1;
                    }
                    if *warn {
                        failed[3] += 1;
                    }
                    let w = winners.entry(*id).or_insert((*lsn, *delete));
                    if (*lsn, *delete) > *w {
                        *w = (*lsn, *delete);
                    }
                }
            }
        }
        let (mut advanced, mut upserted, mut deleted) = (0, 0, 0);
        for (id, (lsn, delete)) in winners {
            let before = state.get(&id).copied();
            if before.is_none_or(|b| (lsn, delete) > b) {
                advanced += 1;
                let was_visible = before.is_some_and(|(_, d)| !d);
                if !delete {
                    upserted += 1;
                } else if was_visible {
                    deleted += 1;
                }
                state.insert(id, (lsn, delete));
            }
        }
        let n = |c: &str| row[c].as_i64().unwrap();
        let ctx = format!("epoch {epoch}: {row:?}");
        assert_eq!(n("rows_read"), in_epoch.len() as i64, "{ctx}");
        assert_eq!(n("quarantined"), quarantined, "{ctx}");
        assert_eq!(n("dropped"), dropped, "{ctx}");
        assert_eq!(n("stale_ignored"), changes - advanced, "{ctx}");
        assert_eq!(n("upserted"), upserted, "{ctx}");
        assert_eq!(n("deleted"), deleted, "{ctx}");
        let x: Value = serde_json::from_str(row["expectations"].as_str().unwrap()).unwrap();
        let names = ["valid_amount", "valid_email", "has_name", "known_country"];
        for (k, name) in names.iter().enumerate() {
            let e = &x[k];
            assert_eq!(e["name"], *name, "{ctx}");
            assert_eq!(e["failed"].as_u64().unwrap(), failed[k], "{ctx}: {name}");
            assert_eq!(
                e["passed"].as_u64().unwrap(),
                evaluated - failed[k],
                "{ctx}: {name}"
            );
        }
        assert!(
            row["delta_version"].is_i64() || upserted + deleted == 0,
            "{ctx}"
        );
    }
    assert_eq!(covered, lines.len(), "every line is in exactly one epoch");
}

#[test]
fn a_fail_expectation_stops_the_pipeline_and_leaves_committed_epochs_intact() {
    let mut lines = Vec::new();
    for i in 0..3000i64 {
        let amount = if i == 2500 { -1 } else { i };
        let rec = record(json!(i % 100), json!("n"), "a@b", "CH", json!(amount));
        lines.push(envelope("u", json!(i + 1), rec));
    }
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("in.json");
    std::fs::write(&input_path, lines.join("\n") + "\n").unwrap();
    let p = pipeline(
        dir.path(),
        &input_path,
        "failing",
        1000,
        "\n[[table.expect]]\nname = \"no_refunds\"\ncondition = \"amount >= 0 OR amount IS NULL\"\non_violation = \"fail\"\n",
    );
    // (The quarantine expectation `valid_amount` also fails for this record: `fail` wins.)
    let out = tidewater(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(
        stderr.contains("expectation `no_refunds` of table `accounts` failed")
            && stderr.contains("\"amount\":-1"),
        "{stderr}"
    );
    // The committed epochs end before the failing record; the table is exactly the state
    // after them, and the event log holds exactly them.
    let lh = dir.path().join("failing-lh");
    let log = py_read_table(&lh.join("_event_log"), None).unwrap().rows;
    assert!(!log.is_empty(), "epochs before the failure are committed");
    let mut end = 0u64;
    for r in &log {
        let p: Value = serde_json::from_str(r["positions"].as_str().unwrap()).unwrap();
        for sources in p.as_object().unwrap().values() {
            for range in sources["accounts_cdc"]["ranges"].as_array().unwrap() {
                end = end.max(range["end"].as_u64().unwrap());
            }
        }
    }
    let failing_offset: usize = lines[..2500].iter().map(|l| l.len() + 1).sum();
    assert!(
        end as usize <= failing_offset,
        "the failing epoch is not committed"
    );
    let mut want: BTreeMap<i64, i64> = BTreeMap::new();
    let mut at = 0usize;
    for (i, l) in lines.iter().enumerate() {
        if at >= end as usize {
            break;
        }
        want.insert(i as i64 % 100, i as i64 + 1);
        at += l.len() + 1;
    }
    assert!(want.len() == 100, "several epochs committed");
    let rows = deltalake_rows(&lh.join("accounts"), None).unwrap();
    let got: BTreeMap<i64, i64> = rows
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["__lsn"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn bad_expectation_conditions_are_config_errors_naming_table_expectation_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("in.json");
    std::fs::write(
        &input_path,
        envelope(
            "u",
            json!(1),
            record(json!(1), json!("n"), "a@b", "CH", json!(1)),
        ) + "\n",
    )
    .unwrap();
    for (extra, what) in [
        (
            "[[table.expect]]\nname = \"x\"\ncondition = \"amout > 0\"\n",
            "unknown column `amout`",
        ),
        (
            "[[table.expect]]\nname = \"x\"\ncondition = \"amount >\"\n",
            "amount >",
        ),
        (
            "[[table.expect]]\nname = \"x\"\ncondition = \"amount > 0\"\non_violation = \"explode\"\n",
            "explode",
        ),
    ] {
        let text = std::fs::read_to_string(pipeline(dir.path(), &input_path, "bad", 10, "")).unwrap();
        let text = text.replace(EXPECTATIONS, &format!("\n{extra}"));
        let p = dir.path().join("bad2.toml");
        std::fs::write(&p, text).unwrap();
        let out = tidewater(&["run", p.to_str().unwrap(), "--exit-when-idle"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {stderr}");
        assert!(stderr.contains(what), "{extra}: {stderr}");
        if what != "explode" {
            assert!(stderr.contains("table `accounts`.expect `x`"), "{stderr}");
        }
    }
}
