//! `tidewater run --metrics ADDR`: `/metrics` parses as Prometheus text (with the independent
//! `prometheus_client` parser from PyPI) and its per-table counters equal the sums of the
//! event log (`_event_log`, read back by the independent pyarrow reader); `/health` says ok.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tidewater_connectors::generator::{write_file, BankGenConfig};
use tidewater_e2e::kafka::free_port;
use tidewater_e2e::python_reader::{py_read_table, python};
use tidewater_e2e::{bank_pipeline, http_get, tidewater_bin};

/// Parses Prometheus text with `prometheus_client.parser`: sample name → labels → value.
fn parse_prometheus(text: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out.setdefault(s.name, {})[labels] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "/metrics does not parse as Prometheus text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_parse_as_prometheus_text_and_equal_the_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let cfg = BankGenConfig {
        seed: 11,
        events: 6_000,
        keys: 500,
        ..BankGenConfig::default()
    };
    write_file(&cfg, &input.join("part-0001.json")).unwrap();
    let lh = dir.path().join("lakehouse");
    let pipeline = bank_pipeline(dir.path(), &input, &lh, "commit_every_records = 1000");
    let addr = format!("127.0.0.1:{}", free_port());
    // No --exit-when-idle: the run keeps serving while the test scrapes it.
    let mut child = Command::new(tidewater_bin())
        .args(["run", pipeline.to_str().unwrap(), "--workers", "2"])
        .args(["--metrics", &addr])
        .env("TIDEWATER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read_total = |m: &BTreeMap<String, BTreeMap<String, f64>>| -> f64 {
        m.get("tidewater_records_read_total")
            .map_or(0.0, |t| t.values().sum())
    };
    let started = Instant::now();
    let metrics = loop {
        if let Some((200, text)) = http_get(&addr, "/metrics") {
            let m = parse_prometheus(&text);
            if read_total(&m) >= cfg.events as f64 {
                break m;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tidewater run exited early ({status})");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run did not read its {} records in time",
            cfg.events
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (code, health) = http_get(&addr, "/health").unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(code, 200, "{health}");
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");

    // The event log, read back independently.
    let log = py_read_table(&lh.join("_event_log"), None).unwrap().rows;
    assert!(!log.is_empty());
    let mut sums: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in &log {
        let table = r["table"].as_str().unwrap().to_string();
        for (metric, column) in [
            ("tidewater_records_read_total", "rows_read"),
            ("tidewater_rows_upserted_total", "upserted"),
            ("tidewater_rows_deleted_total", "deleted"),
            ("tidewater_stale_ignored_total", "stale_ignored"),
            ("tidewater_quarantined_total", "quarantined"),
            ("tidewater_dropped_total", "dropped"),
            ("tidewater_late_total", "late"),
        ] {
            *sums
                .entry((metric.to_string(), format!("table={table}")))
                .or_default() += r[column].as_i64().unwrap() as f64;
        }
    }
    for ((metric, labels), want) in &sums {
        let got = metrics
            .get(metric)
            .and_then(|m| m.get(labels))
            .copied()
            .unwrap_or_else(|| panic!("{metric}{{{labels}}} missing: {metrics:?}"));
        assert_eq!(got, *want, "{metric}{{{labels}}}");
    }
    assert_eq!(
        sums[&(
            "tidewater_records_read_total".to_string(),
            "table=customers".to_string()
        )],
        cfg.events as f64,
        "every record read once"
    );
    // The epochs and the epoch latency histogram.
    let epochs: std::collections::BTreeSet<i64> =
        log.iter().map(|r| r["epoch"].as_i64().unwrap()).collect();
    assert_eq!(
        metrics["tidewater_last_epoch"][""],
        *epochs.iter().max().unwrap() as f64
    );
    assert_eq!(
        metrics["tidewater_epoch_commit_seconds_count"][""],
        metrics["tidewater_epochs_committed_total"][""]
    );
    assert!(metrics["tidewater_epochs_committed_total"][""] >= 6.0);
    assert!(metrics["tidewater_freshness_seconds"][""] >= 0.0);
    assert_eq!(metrics["tidewater_failed"][""], 0.0);
}
