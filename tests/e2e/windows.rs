//! Event-time windows with a watermark (issue 8) through the binary, against a sequential
//! model: a stream of vehicle readings with out-of-order, late (within the allowed lateness)
//! and very late (beyond it) deliveries and duplicates feeds a table with a watermark and
//! three windowed views — tumbling (`on_update`, every aggregate, `WHERE` + `HAVING`),
//! hopping (`on_close`) — at 1, 2 and 4 workers. At **every epoch** (the epoch manifest's cut,
//! the lines of the recorded positions) each view's Delta rows, `window_closed` included, equal
//! the model's: the watermark after each epoch is the largest event time so far minus the
//! lateness, an upsert below the watermark of the epochs before its own is late. The `_late`
//! table holds exactly the model's late records with the watermark each was compared with,
//! and the event log's counts add up (every input record is applied, a duplicate, or late).
//! A `kill -9`-style abort in the middle, then a restart from an operator-state checkpoint,
//! reproduces the same watermark decisions and the same tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use tidewater_e2e::{
    abort_at, deltalake_rows, lines_read_up_to, recorded_positions, tidewater_ok, JsonRow,
};

use crate::views::manifests;

/// Allowed lateness, ms.
const LATENESS_MS: i64 = 120_000;
/// First event time, ms.
const T0: i64 = 1_700_000_000_000;

/// One reading as the generator wrote it.
#[derive(Clone, Debug)]
struct Reading {
    id: i64,
    vehicle: i64,
    /// ms
    time: i64,
    /// a multiple of 0.25 (sums are exact in any order)
    speed: f64,
    lsn: i64,
}

/// Writes `n` reading lines: 6 vehicles, one reading each about every 2 s of event time,
/// delivered with a few seconds of jitter; about 4 % 30–100 s late (inside the lateness), 2 %
/// 5–15 minutes late (beyond it), 2 % delivered twice (the same line again a little later).
fn write_readings(path: &Path, n: usize, seed: u64) -> Vec<Reading> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // (delivery time, reading)
    let mut out: Vec<(i64, Reading)> = Vec::new();
    let mut clock = T0;
    let mut id = 0;
    while out.len() < n {
        clock += rng.gen_range(200..500);
        id += 1;
        let r = Reading {
            id,
            vehicle: rng.gen_range(1..=6),
            time: clock,
            speed: rng.gen_range(0..520) as f64 * 0.25,
            lsn: 0,
        };
        let roll = rng.gen_range(0..100);
        let delay = if roll < 2 {
            rng.gen_range(300_000..900_000)
        } else if roll < 6 {
            rng.gen_range(30_000..100_000)
        } else {
            rng.gen_range(0..5_000)
        };
        out.push((clock + delay, r.clone()));
        if rng.gen_range(0..50) == 0 {
            out.push((clock + delay + rng.gen_range(1_000..200_000), r));
        }
    }
    out.sort_by_key(|(at, r)| (*at, r.id));
    out.truncate(n);
    let mut lines = Vec::new();
    let mut readings = Vec::new();
    let mut lsn_of: BTreeMap<i64, i64> = BTreeMap::new();
    for (i, (_, mut r)) in out.into_iter().enumerate() {
        // A duplicate delivery is the same event: the same lsn.
        r.lsn = *lsn_of.entry(r.id).or_insert(10_000 + i as i64);
        lines.push(format!(
            r#"{{"before":null,"after":{{"reading_id":{},"vehicle_id":{},"event_time":{},"speed":{:.2}}},"source":{{"lsn":{},"txId":{},"ts_ms":{}}},"op":"c","ts_ms":{}}}"#,
            r.id, r.vehicle, r.time, r.speed, r.lsn, r.lsn, r.time, r.time
        ));
        readings.push(r);
    }
    std::fs::write(path, lines.join("\n") + "\n").expect("write readings");
    readings
}

/// The views under test: (name, SQL, emit, window size ms, slide ms).
const VIEWS: &[(&str, &str, &str)] = &[
    (
        "tumble",
        "SELECT vehicle_id, window_start, window_end, COUNT(*) AS n, SUM(speed) AS total,
                MIN(speed) AS lo, MAX(speed) AS hi, AVG(speed) AS mean
         FROM readings GROUP BY vehicle_id, TUMBLE(event_time, INTERVAL '1' MINUTE)",
        "on_update",
    ),
    (
        "fast",
        "SELECT window_start, window_end, vehicle_id, COUNT(*) AS n
         FROM readings WHERE speed >= 60
         GROUP BY TUMBLE(event_time, INTERVAL '2' MINUTE), vehicle_id
         HAVING COUNT(*) >= 3",
        "on_update",
    ),
    (
        "hop",
        "SELECT vehicle_id, window_start, window_end, COUNT(*) AS n, MAX(speed) AS hi
         FROM readings GROUP BY vehicle_id, HOP(event_time, INTERVAL '2' MINUTE, INTERVAL '30' SECOND)",
        "on_close",
    ),
];

fn pipeline(dir: &Path, input: &Path, lakehouse: &Path, extra: &str) -> PathBuf {
    let mut text = format!(
        r#"[pipeline]
name = "windows"
lakehouse = "{}"
commit_interval_ms = 1000
commit_every_records = 200
buckets = 4
{extra}

[[source]]
name = "readings_cdc"
kind = "files"
path = "{}"

[[table]]
name = "readings"
from = "readings_cdc"
keys = ["reading_id"]
sequence_by = "__lsn"
columns = {{ reading_id = "int64", vehicle_id = "int64", event_time = "timestamp", speed = "double" }}
watermark = {{ column = "event_time", allowed_lateness = "2m" }}
"#,
        lakehouse.display(),
        input.display()
    );
    for (name, sql, emit) in VIEWS {
        text.push_str(&format!(
            "\n[[view]]\nname = \"{name}\"\nsql = \"\"\"{sql}\"\"\"\nemit = \"{emit}\"\nbuckets = 3\n"
        ));
    }
    let path = dir.join(format!(
        "windows-{}.toml",
        lakehouse.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, text).expect("pipeline");
    path
}

/// The model's state after an epoch.
#[derive(Clone, Default)]
struct Model {
    /// Watermark, ms (None: no record yet).
    watermark: Option<i64>,
    /// On-time readings by id (the table).
    table: BTreeMap<i64, Reading>,
    /// Late records: (reading id, lsn, event time ms, watermark ms).
    late: Vec<(i64, i64, i64, i64)>,
}

impl Model {
    /// Applies one epoch's records (in reading order).
    fn epoch(&mut self, records: &[Reading]) {
        let before = self.watermark;
        let mut max = None;
        for r in records {
            max = max.max(Some(r.time));
            match before {
                Some(w) if r.time < w => self.late.push((r.id, r.lsn, r.time, w)),
                _ => {
                    self.table.insert(r.id, r.clone());
                }
            }
        }
        if let Some(m) = max {
            let w = m - LATENESS_MS;
            self.watermark = Some(self.watermark.map_or(w, |x| x.max(w)));
        }
    }

    fn closed(&self, end: i64) -> bool {
        self.watermark.is_some_and(|w| end <= w)
    }

    /// The rows of view `name`, as canonical lines.
    fn view(&self, name: &str) -> Vec<String> {
        // (vehicle, window start) → speeds
        let windows = |size: i64, slide: i64, filter: &dyn Fn(&Reading) -> bool| {
            let mut w: BTreeMap<(i64, i64), Vec<f64>> = BTreeMap::new();
            for r in self.table.values().filter(|r| filter(r)) {
                let mut s = r.time.div_euclid(slide) * slide;
                while s > r.time - size {
                    w.entry((r.vehicle, s)).or_default().push(r.speed);
                    s -= slide;
                }
            }
            w
        };
        let mut rows = Vec::new();
        match name {
            "tumble" => {
                for ((v, s), speeds) in windows(60_000, 60_000, &|_| true) {
                    let e = s + 60_000;
                    let total: f64 = speeds.iter().sum();
                    let lo = speeds.iter().cloned().fold(f64::MAX, f64::min);
                    let hi = speeds.iter().cloned().fold(f64::MIN, f64::max);
                    rows.push(format!(
                        "{v} {s} {e} n={} total={total} lo={lo} hi={hi} mean={:.9} closed={}",
                        speeds.len(),
                        total / speeds.len() as f64,
                        self.closed(e)
                    ));
                }
            }
            "fast" => {
                for ((v, s), speeds) in windows(120_000, 120_000, &|r| r.speed >= 60.0) {
                    let e = s + 120_000;
                    if speeds.len() >= 3 {
                        rows.push(format!(
                            "{v} {s} {e} n={} closed={}",
                            speeds.len(),
                            self.closed(e)
                        ));
                    }
                }
            }
            "hop" => {
                for ((v, s), speeds) in windows(120_000, 30_000, &|_| true) {
                    let e = s + 120_000;
                    if self.closed(e) {
                        let hi = speeds.iter().cloned().fold(f64::MIN, f64::max);
                        rows.push(format!(
                            "{v} {s} {e} n={} hi={hi} closed=true",
                            speeds.len()
                        ));
                    }
                }
            }
            _ => unreachable!(),
        }
        rows.sort();
        rows
    }
}

/// A timestamp cell of the Delta reader (`"2023-11-14T22:13:20"` text, UTC) in ms.
fn ms(v: &Value) -> i64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp text, got {v}"));
    let s = s.trim_end_matches('Z');
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{s}: {e}"));
    t.and_utc().timestamp_millis()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("number, got {v}"))
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("integer, got {v}"))
}

/// A view's Delta rows as the model's canonical lines.
fn view_lines(name: &str, rows: &[JsonRow]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            let (v, s, e) = (
                i(&r["vehicle_id"]),
                ms(&r["window_start"]),
                ms(&r["window_end"]),
            );
            let closed = r["window_closed"].as_bool().expect("window_closed");
            match name {
                "tumble" => format!(
                    "{v} {s} {e} n={} total={} lo={} hi={} mean={:.9} closed={closed}",
                    i(&r["n"]),
                    f(&r["total"]),
                    f(&r["lo"]),
                    f(&r["hi"]),
                    f(&r["mean"])
                ),
                "fast" => format!("{v} {s} {e} n={} closed={closed}", i(&r["n"])),
                "hop" => format!(
                    "{v} {s} {e} n={} hi={} closed={closed}",
                    i(&r["n"]),
                    f(&r["hi"])
                ),
                _ => unreachable!(),
            }
        })
        .collect();
    out.sort();
    out
}

/// Parses the readings of lines (the input file's lines as the source read them).
fn parse_lines(lines: &[Vec<u8>]) -> Vec<Reading> {
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_slice(l).expect("line");
            let a = &v["after"];
            Reading {
                id: i(&a["reading_id"]),
                vehicle: i(&a["vehicle_id"]),
                time: i(&a["event_time"]),
                speed: f(&a["speed"]),
                lsn: i(&v["source"]["lsn"]),
            }
        })
        .collect()
}

/// Checks every epoch of the lakehouse against the model; returns the final model and the
/// number of epochs checked.
fn check(lakehouse: &Path) -> (Model, usize) {
    let positions = recorded_positions(&lakehouse.join("readings")).expect("positions");
    let manifests = manifests(lakehouse);
    let mut model = Model::default();
    let mut done = 0usize;
    let mut checked = 0;
    for (epoch, versions) in &manifests {
        let lines = lines_read_up_to(&positions, *epoch);
        let records = parse_lines(&lines[done..]);
        done = lines.len();
        model.epoch(&records);
        for (name, _, _) in VIEWS {
            let rows = match versions.get(*name) {
                Some(v) => deltalake_rows(&lakehouse.join(name), Some(*v)).expect("view rows"),
                None => Vec::new(),
            };
            assert_eq!(
                view_lines(name, &rows),
                model.view(name),
                "view `{name}` at epoch {epoch} ({})",
                lakehouse.display()
            );
        }
        checked += 1;
    }
    (model, checked)
}

/// `_late` as (reading id, lsn, event time ms, watermark ms), sorted; checks the other columns:
/// `raw` is the input line found at `position` (`<file>:<byte offset>`).
fn late_rows(lakehouse: &Path) -> Vec<(i64, i64, i64, i64)> {
    let dir = lakehouse.join("_late");
    if !dir.exists() {
        return Vec::new();
    }
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut out: Vec<_> = deltalake_rows(&dir, None)
        .expect("_late")
        .iter()
        .map(|r| {
            assert_eq!(r["table"], "readings");
            assert_eq!(r["source"], "readings_cdc");
            let raw = r["raw"].as_str().expect("raw");
            let pos = r["position"].as_str().expect("position");
            let (file, offset) = pos
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("position {pos}"));
            let offset: usize = offset.parse().expect("byte offset");
            let bytes = files
                .entry(file.to_string())
                .or_insert_with(|| std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}")));
            let line = bytes[offset..].split(|b| *b == b'\n').next().expect("line");
            assert_eq!(std::str::from_utf8(line).expect("utf-8"), raw, "{pos}");
            let v: Value = serde_json::from_str(raw).expect("json");
            (
                i(&v["after"]["reading_id"]),
                i(&v["source"]["lsn"]),
                ms(&r["event_time"]),
                ms(&r["watermark"]),
            )
        })
        .collect();
    out.sort();
    out
}

/// Sums of the event log's `rows_read`, `late` and `upserted` for `readings`.
fn log_counts(lakehouse: &Path) -> (i64, i64, i64) {
    let rows = deltalake_rows(&lakehouse.join("_event_log"), None).expect("event log");
    let mut sums = (0, 0, 0);
    for r in rows.iter().filter(|r| r["table"] == "readings") {
        sums.0 += i(&r["rows_read"]);
        sums.1 += i(&r["late"]);
        sums.2 += i(&r["upserted"]);
    }
    sums
}

fn run(pipeline: &Path, workers: usize) {
    tidewater_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--workers",
        &workers.to_string(),
        "--exit-when-idle",
    ]);
}

fn assert_final(lakehouse: &Path, model: &Model, readings: &[Reading]) {
    let mut late = model.late.clone();
    late.sort();
    assert_eq!(late_rows(lakehouse), late, "_late");
    let (read, late_n, upserted) = log_counts(lakehouse);
    assert_eq!(read as usize, readings.len(), "rows_read");
    assert_eq!(late_n as usize, model.late.len(), "late in the event log");
    // Every record is applied once (upserted), a duplicate of an applied one, or late.
    let dups = readings.len() - model.late.len() - model.table.len();
    assert_eq!(
        upserted as usize,
        model.table.len(),
        "upserted ({dups} duplicates)"
    );
}

#[test]
fn windows_match_the_model_at_every_epoch_at_1_2_and_4_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("readings.json");
    let readings = write_readings(&input, 3_000, 5);
    let mut finals = Vec::new();
    for workers in [1, 2, 4] {
        let lakehouse = dir.path().join(format!("lake{workers}"));
        let p = pipeline(dir.path(), &input, &lakehouse, "");
        run(&p, workers);
        let (model, epochs) = check(&lakehouse);
        assert!(epochs >= 14, "epochs: {epochs}");
        // The data is what the test is about: late, very late, duplicates, closed windows.
        assert!(model.late.len() >= 30, "late: {}", model.late.len());
        assert!(!model.view("hop").is_empty());
        assert_final(&lakehouse, &model, &readings);
        finals.push(
            VIEWS
                .iter()
                .map(|(n, _, _)| model.view(n))
                .collect::<Vec<_>>(),
        );
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn a_crash_and_a_restart_from_a_checkpoint_reproduce_the_watermark_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("readings.json");
    let readings = write_readings(&input, 3_000, 9);
    let lakehouse = dir.path().join("lake");
    let p = pipeline(dir.path(), &input, &lakehouse, "state_checkpoint_every = 3");
    let args = [
        "run",
        p.to_str().unwrap(),
        "--workers",
        "2",
        "--exit-when-idle",
    ];
    // Abort in the middle of an epoch, after some checkpoints, then between the table commits
    // of a later epoch; each restart resumes from the newest checkpoint and replays.
    abort_at(&args, "mid_epoch:8", dir.path());
    abort_at(&args, "between_table_commits:20", dir.path());
    run(&p, 2);
    let (model, epochs) = check(&lakehouse);
    assert!(epochs >= 14, "epochs: {epochs}");
    assert_final(&lakehouse, &model, &readings);
    // The same input without a crash gives the same tables.
    let clean = dir.path().join("clean");
    run(&pipeline(dir.path(), &input, &clean, ""), 1);
    for (name, _, _) in VIEWS {
        let a = view_lines(name, &deltalake_rows(&lakehouse.join(name), None).unwrap());
        let b = view_lines(name, &deltalake_rows(&clean.join(name), None).unwrap());
        assert_eq!(a, b, "view {name}");
    }
    assert_eq!(late_rows(&lakehouse), late_rows(&clean));
}
