//! tidewater itself on the `cdc-apply` input: the pipeline file, and `run-one tidewater`,
//! which runs the engine in this process and reports time, events and peak RSS.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tidewater::{PipelineConfig, RunOptions};

use crate::common::{cpu_seconds, peak_rss_bytes, print_report};

/// The name of the table the pipeline writes.
pub const TABLE: &str = "customers";

/// The pipeline file of the benchmark: one `files` source, one SCD type 1 table keyed by
/// `customer_id` and sequenced by `__lsn`, epochs every second, and `extra` lines in
/// `[pipeline]` (other epoch, checkpoint or spill settings; defaults otherwise).
pub fn pipeline_toml_with(input: &Path, lakehouse: &Path, extra: &str) -> String {
    // TOML basic strings: escape backslashes and quotes of the paths.
    let q = |p: &Path| {
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    format!(
        r#"# Written by tidewater-bench cdc-apply.
[pipeline]
name = "bench"
lakehouse = "{lakehouse}"
commit_interval_ms = 1000
{extra}

[[source]]
name = "customers_cdc"
kind = "files"
path = "{input}"

[[table]]
name = "{TABLE}"
from = "customers_cdc"
keys = ["customer_id"]
sequence_by = "__lsn"
"#,
        lakehouse = q(lakehouse),
        input = q(input),
    )
}

/// What an engine run reports (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
pub struct EngineReport {
    /// Worker threads.
    pub workers: usize,
    /// Wall time of `tidewater::run` (planning, parsing, applying, writing, committing).
    pub elapsed_s: f64,
    /// Records parsed.
    pub events: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Epochs committed.
    pub epochs: u64,
    /// Peak RSS of the process (`VmHWM`).
    pub peak_rss_bytes: u64,
    /// CPU seconds (user + system) of the whole process, start-up included.
    #[serde(default)]
    pub cpu_s: f64,
    /// The checkpoint the operator state was restored from (restarts).
    #[serde(default)]
    pub restored_from: Option<u64>,
    /// Recorded epochs replayed at start (restarts).
    #[serde(default)]
    pub replayed_epochs: u64,
}

/// One tidewater run of `pipeline` at `workers` in a child process (`run-one tidewater`).
pub fn run_engine(pipeline: &Path, workers: usize) -> anyhow::Result<EngineReport> {
    crate::common::run_child(&[
        "run-one".into(),
        "tidewater".into(),
        "--pipeline".into(),
        pipeline.display().to_string(),
        "--workers".into(),
        workers.to_string(),
    ])
}

/// `run-one tidewater`: runs the pipeline until the input is consumed and committed (with
/// `follow`: until the process is stopped, `exit_when_idle = false`), then prints an
/// [`EngineReport`].
pub fn run_one(pipeline: &Path, workers: usize, follow: bool) -> anyhow::Result<()> {
    // As the `tidewater` binary does.
    tidewater::disable_huge_pages();
    let started = Instant::now();
    let cfg = PipelineConfig::load(pipeline)
        .with_context(|| format!("pipeline {}", pipeline.display()))?;
    let summary = tidewater::run(
        cfg,
        RunOptions {
            workers,
            exit_when_idle: !follow,
            progress: false,
            ..RunOptions::default()
        },
    )?;
    let elapsed_s = started.elapsed().as_secs_f64();
    print_report(&EngineReport {
        workers,
        elapsed_s,
        events: summary.records,
        quarantined: summary.quarantined,
        epochs: summary.epochs_committed,
        peak_rss_bytes: peak_rss_bytes(),
        cpu_s: cpu_seconds(None),
        restored_from: summary.restored_from,
        replayed_epochs: summary.replayed_epochs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_file_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, b"").unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            pipeline_toml_with(&input, &dir.path().join("lh"), ""),
        )
        .unwrap();
        let cfg = PipelineConfig::load(&path).unwrap();
        assert_eq!(cfg.table[0].name, TABLE);
        assert_eq!(cfg.pipeline.commit_interval_ms, 1000);
    }
}
