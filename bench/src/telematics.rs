//! Workload `telematics` (issue 8): the telematics and smart-claims pipeline
//! (`pipelines/telematics/`: readings with a watermark, 5-minute tumbling windows per vehicle,
//! claims scored against them, the loss ratio) on its generator, accelerated (no rate limit),
//! with many vehicles — so many windows are open at once. Each `emit` mode of
//! `vehicle_windows` runs in its own child process (peak RSS per run); reports events/s, p50 /
//! p99 epoch latency (closed → committed, from the event log), peak RSS, CPU seconds, late
//! readings, and the ratio of each mode against `on_update` measured in the same run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use crate::cdc_apply::engine::EngineReport;
use crate::common::{epoch_latency, mib, print_report, run_child, thousands, Table};

/// `tidewater-bench telematics`.
#[derive(Args, Debug)]
pub struct TelematicsArgs {
    /// The pipeline file (copied with its SQL files into a temporary directory; its lakehouse
    /// is replaced).
    #[arg(long, default_value = "pipelines/telematics/telematics.toml")]
    pub pipeline: PathBuf,
    /// Vehicles (the generator's `keys`), each sending a reading per simulated second.
    #[arg(long, default_value_t = 10_000)]
    pub vehicles: u64,
    /// Lines of the generated world (readings, policies, claims). With 10,000 vehicles,
    /// 6,000,000 lines are about 10 simulated minutes: the first 5-minute windows close.
    #[arg(long, default_value_t = 6_000_000)]
    pub events: u64,
    /// Close an epoch every N records of a source.
    #[arg(long, default_value_t = 50_000)]
    pub epoch_records: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// The `emit` modes of `vehicle_windows` to run, in order (the first is the baseline).
    #[arg(long, value_delimiter = ',', default_value = "on_update,on_close")]
    pub emit: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct ModeReport {
    emit: String,
    events: u64,
    seconds: f64,
    events_per_s: f64,
    epochs: u64,
    epoch_latency_p50_ms: f64,
    epoch_latency_p99_ms: f64,
    peak_rss_bytes: u64,
    cpu_s: f64,
    late: u64,
    window_rows: u64,
    closed_windows: u64,
    /// This mode's events/s over the first mode's.
    throughput_vs_first: f64,
}

/// Runs the workload and prints the report.
pub fn run(args: &TelematicsArgs) -> anyhow::Result<()> {
    if args.emit.is_empty() {
        bail!("--emit names no mode");
    }
    let text = std::fs::read_to_string(&args.pipeline)
        .with_context(|| format!("pipeline {}", args.pipeline.display()))?;
    let src_dir = args
        .pipeline
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dir = tempfile::tempdir()?;
    for e in std::fs::read_dir(&src_dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "sql") {
            std::fs::copy(&p, dir.path().join(p.file_name().expect("file name")))?;
        }
    }
    eprintln!(
        "telematics: {} vehicles, {} world lines, epochs of {} records per source, {} workers",
        thousands(args.vehicles),
        thousands(args.events),
        thousands(args.epoch_records),
        args.workers
    );
    let mut reports: Vec<ModeReport> = Vec::new();
    for emit in &args.emit {
        let lakehouse = dir.path().join(format!("lakehouse-{emit}"));
        let toml = pipeline_text(&text, args, emit, &lakehouse)?;
        let path = dir.path().join(format!("telematics-{emit}.toml"));
        std::fs::write(&path, toml)?;
        eprintln!("  emit = {emit} …");
        let r: EngineReport = run_child(&[
            "run-one".into(),
            "tidewater".into(),
            "--pipeline".into(),
            path.display().to_string(),
            "--workers".into(),
            args.workers.to_string(),
        ])?;
        let log = tidewater::event_log::read(&lakehouse)?;
        let (p50, p99, epochs) = epoch_latency(&log)?;
        let late = log.iter().map(|r| r.late).sum();
        let (window_rows, closed_windows) = window_counts(&lakehouse)?;
        let events_per_s = r.events as f64 / r.elapsed_s;
        let first = reports.first().map_or(events_per_s, |f| f.events_per_s);
        reports.push(ModeReport {
            emit: emit.clone(),
            events: r.events,
            seconds: r.elapsed_s,
            events_per_s,
            epochs,
            epoch_latency_p50_ms: p50,
            epoch_latency_p99_ms: p99,
            peak_rss_bytes: r.peak_rss_bytes,
            cpu_s: r.cpu_s,
            late,
            window_rows,
            closed_windows,
            throughput_vs_first: events_per_s / first,
        });
    }
    if args.json {
        return print_report(&reports);
    }
    let mut t = Table::new(&[
        "emit",
        "events",
        "events/s",
        "vs first",
        "epochs",
        "p50 / p99 epoch ms",
        "peak RSS",
        "CPU s",
        "late",
        "window rows (closed)",
    ]);
    for r in &reports {
        t.row(vec![
            r.emit.clone(),
            thousands(r.events),
            thousands(r.events_per_s as u64),
            format!("{:.2}×", r.throughput_vs_first),
            r.epochs.to_string(),
            format!(
                "{:.0} / {:.0}",
                r.epoch_latency_p50_ms, r.epoch_latency_p99_ms
            ),
            mib(r.peak_rss_bytes),
            format!("{:.1}", r.cpu_s),
            thousands(r.late),
            format!(
                "{} ({})",
                thousands(r.window_rows),
                thousands(r.closed_windows)
            ),
        ]);
    }
    println!("{}", t.render());
    Ok(())
}

/// The shipped pipeline with the bench's settings: a lakehouse of its own, epochs of
/// `epoch_records`, no rate limit, `vehicles` and `events` in every generator source, and
/// `emit` on `vehicle_windows`.
fn pipeline_text(
    text: &str,
    args: &TelematicsArgs,
    emit: &str,
    lakehouse: &Path,
) -> anyhow::Result<String> {
    let mut doc: toml::Value = toml::from_str(text)?;
    let p = doc
        .get_mut("pipeline")
        .and_then(toml::Value::as_table_mut)
        .context("[pipeline]")?;
    p.insert("lakehouse".into(), lakehouse.display().to_string().into());
    p.insert(
        "commit_every_records".into(),
        (args.epoch_records as i64).into(),
    );
    p.insert("commit_interval_ms".into(), 3_600_000i64.into());
    for s in doc
        .get_mut("source")
        .and_then(toml::Value::as_array_mut)
        .context("[[source]]")?
    {
        let s = s.as_table_mut().context("[[source]]")?;
        s.insert("keys".into(), (args.vehicles as i64).into());
        s.insert("events".into(), (args.events as i64).into());
        s.insert("rate".into(), 0i64.into());
    }
    let mut found = false;
    for v in doc
        .get_mut("view")
        .and_then(toml::Value::as_array_mut)
        .context("[[view]]")?
    {
        let v = v.as_table_mut().context("[[view]]")?;
        if v.get("name").and_then(toml::Value::as_str) == Some("vehicle_windows") {
            v.insert("emit".into(), emit.into());
            found = true;
        }
    }
    if !found {
        bail!("the pipeline has no view `vehicle_windows`");
    }
    Ok(toml::to_string(&doc)?)
}

/// Rows of `vehicle_windows` at its newest version, and how many are closed.
fn window_counts(lakehouse: &Path) -> anyhow::Result<(u64, u64)> {
    use tidewater_connectors::delta::{datum_at, read_parquet, table_files_at};
    use tidewater_connectors::types::{Column, ColumnType, Datum};
    let dir = lakehouse.join("vehicle_windows");
    let Some(version) = tidewater_connectors::delta::read_manifests(lakehouse)?
        .values()
        .last()
        .and_then(|m| m.tables.get("vehicle_windows").copied())
    else {
        return Ok((0, 0));
    };
    let closed_col = [Column {
        name: "window_closed".into(),
        ty: ColumnType::Boolean,
    }];
    let (mut rows, mut closed) = (0, 0);
    for f in table_files_at(&dir, version)? {
        let batch = read_parquet(&dir, &f.path, &closed_col)?;
        for i in 0..batch.num_rows() {
            rows += 1;
            if datum_at(batch.column(0).as_ref(), ColumnType::Boolean, i) == Datum::Bool(true) {
                closed += 1;
            }
        }
    }
    Ok((rows, closed))
}
