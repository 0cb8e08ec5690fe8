//! Workload `marketing` (issue 7): the marketing engagement pipeline (`pipelines/marketing/`,
//! generator sources: dimension churn plus activity streams) run to the end with many small
//! epochs; reports input events/s, the p50/p99 epoch latency (epoch closed → committed, from the
//! event log) and, as the baseline measured in the same run, what recomputing every view from
//! scratch costs per epoch: the input tables at the epoch's cut (read from their Delta
//! versions) loaded into an in-memory SQLite database and every view materialized in order
//! (`CREATE TABLE v AS SELECT …`, as a batch tool such as dbt would), for a sample of epochs.
//!
//! The ratio compares tidewater's wall time per epoch (all of it: parsing, applying, the
//! views' incremental maintenance, writing and committing every table and view) with the
//! baseline's time per epoch (loading the cut and recomputing the views, nothing written).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use rusqlite::types::Value as Sql;
use serde::Serialize;
use tidewater::config::SourceKind;
use tidewater::run::plan_tables;
use tidewater::{PipelineConfig, RunOptions};
use tidewater_connectors::delta::{datum_at, read_manifests, read_parquet, table_files_at};
use tidewater_connectors::types::{Column, ColumnType, Datum};

use crate::common::{epoch_latency, print_report, thousands, Table};

/// `tidewater-bench marketing`.
#[derive(Args, Debug)]
pub struct MarketingArgs {
    /// The pipeline file (its lakehouse is replaced by a temporary directory).
    #[arg(long, default_value = "pipelines/marketing/marketing.toml")]
    pub pipeline: PathBuf,
    /// Events of every generator source (default: as in the pipeline file).
    #[arg(long)]
    pub events: Option<u64>,
    /// Close an epoch every N records of a source (many small epochs: steady streaming).
    #[arg(long, default_value_t = 2_000)]
    pub epoch_records: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Epochs recomputed by the SQLite baseline (evenly spread over the run).
    #[arg(long, default_value_t = 10)]
    pub baseline_epochs: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    workers: usize,
    epochs: u64,
    events: u64,
    seconds: f64,
    events_per_s: f64,
    ms_per_epoch: f64,
    epoch_latency_p50_ms: f64,
    epoch_latency_p99_ms: f64,
    baseline_epochs: usize,
    baseline_ms_per_epoch: f64,
    baseline_load_ms_per_epoch: f64,
    baseline_rows_per_epoch: f64,
    speedup_vs_recompute: f64,
    views: Vec<String>,
}

/// Runs the workload and prints the report.
pub fn run(args: &MarketingArgs) -> anyhow::Result<()> {
    let mut cfg = PipelineConfig::load(&args.pipeline)
        .with_context(|| format!("pipeline {}", args.pipeline.display()))?;
    if cfg.view.is_empty() {
        bail!("{} declares no [[view]]", args.pipeline.display());
    }
    let dir = tempfile::tempdir()?;
    cfg.pipeline.lakehouse = dir.path().join("lakehouse");
    cfg.pipeline.commit_every_records = Some(args.epoch_records);
    cfg.pipeline.commit_interval_ms = 3_600_000;
    for s in cfg.source.iter_mut() {
        if s.kind == SourceKind::Generator {
            if let Some(n) = args.events {
                s.events = Some(n);
            }
            s.rate = Some(0);
        }
    }
    let lakehouse = cfg.pipeline.lakehouse.clone();
    eprintln!(
        "marketing: {} sources, {} tables, {} views; {} workers, epochs of {} records per source",
        cfg.source.len(),
        cfg.table.len(),
        cfg.view.len(),
        args.workers,
        args.epoch_records
    );
    let plans = plan_tables(&cfg)?;
    let table_columns: BTreeMap<String, Vec<Column>> = plans
        .iter()
        .map(|(p, s)| (p.name.clone(), p.delta_columns(&p.table_columns(s))))
        .collect();
    let views: Vec<(String, String)> = cfg
        .view
        .iter()
        .map(|v| Ok((v.name.clone(), v.query_text()?)))
        .collect::<Result<_, tidewater::TidewaterError>>()?;
    let started = Instant::now();
    let summary = tidewater::run(
        cfg,
        RunOptions {
            workers: args.workers,
            exit_when_idle: true,
            ..RunOptions::default()
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let (p50, p99, epochs) = epoch_latency(&tidewater::event_log::read(&lakehouse)?)?;
    // The baseline: recompute every view from the cut of sampled epochs.
    let manifests = read_manifests(&lakehouse)?;
    let sampled: Vec<&BTreeMap<String, i64>> = {
        let all: Vec<_> = manifests.values().map(|m| &m.tables).collect();
        let n = args.baseline_epochs.clamp(1, all.len().max(1));
        (0..n)
            .filter_map(|i| all.get((i + 1) * all.len() / n - 1).copied())
            .collect()
    };
    let (mut total_ms, mut load_ms, mut rows) = (0.0, 0.0, 0u64);
    for versions in &sampled {
        let (t, l, r) = recompute(&lakehouse, &table_columns, versions, &views)?;
        total_ms += t;
        load_ms += l;
        rows += r;
    }
    let k = sampled.len().max(1) as f64;
    let ms_per_epoch = seconds * 1000.0 / epochs.max(1) as f64;
    let report = Report {
        workers: args.workers,
        epochs,
        events: summary.records,
        seconds,
        events_per_s: summary.records as f64 / seconds,
        ms_per_epoch,
        epoch_latency_p50_ms: p50,
        epoch_latency_p99_ms: p99,
        baseline_epochs: sampled.len(),
        baseline_ms_per_epoch: total_ms / k,
        baseline_load_ms_per_epoch: load_ms / k,
        baseline_rows_per_epoch: rows as f64 / k,
        speedup_vs_recompute: (total_ms / k) / ms_per_epoch,
        views: views.iter().map(|(n, _)| n.clone()).collect(),
    };
    if args.json {
        return print_report(&report);
    }
    let mut t = Table::new(&["measure", "value"]);
    t.row(vec!["workers".into(), report.workers.to_string()]);
    t.row(vec!["input events".into(), thousands(report.events)]);
    t.row(vec!["epochs".into(), report.epochs.to_string()]);
    t.row(vec![
        "tidewater events/s".into(),
        thousands(report.events_per_s as u64),
    ]);
    t.row(vec![
        "tidewater ms per epoch (wall / epochs)".into(),
        format!("{:.1}", report.ms_per_epoch),
    ]);
    t.row(vec![
        "epoch latency p50 / p99 (closed → committed)".into(),
        format!(
            "{:.1} / {:.1} ms",
            report.epoch_latency_p50_ms, report.epoch_latency_p99_ms
        ),
    ]);
    t.row(vec![
        format!(
            "baseline: SQLite recompute per epoch ({} epochs sampled)",
            report.baseline_epochs
        ),
        format!(
            "{:.1} ms (of which loading the cut {:.1} ms; {:.0} input rows)",
            report.baseline_ms_per_epoch,
            report.baseline_load_ms_per_epoch,
            report.baseline_rows_per_epoch
        ),
    ]);
    t.row(vec![
        "ratio: recompute / tidewater per epoch".into(),
        format!("{:.2}×", report.speedup_vs_recompute),
    ]);
    println!("{}", t.render());
    Ok(())
}

/// Loads the input tables at one cut into SQLite and materializes every view in order;
/// returns (total ms, loading ms, input rows).
fn recompute(
    lakehouse: &Path,
    tables: &BTreeMap<String, Vec<Column>>,
    versions: &BTreeMap<String, i64>,
    views: &[(String, String)],
) -> anyhow::Result<(f64, f64, u64)> {
    let started = Instant::now();
    let db = rusqlite::Connection::open_in_memory()?;
    let mut rows = 0u64;
    for (name, columns) in tables {
        let cols: Vec<String> = columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
        db.execute(
            &format!("CREATE TABLE \"{name}\" ({})", cols.join(", ")),
            [],
        )?;
        let Some(version) = versions.get(name) else {
            continue;
        };
        let dir = lakehouse.join(name);
        let marks = vec!["?"; columns.len()].join(", ");
        let tx = db.unchecked_transaction()?;
        {
            let mut insert = tx.prepare(&format!("INSERT INTO \"{name}\" VALUES ({marks})"))?;
            for f in table_files_at(&dir, *version)? {
                let batch = read_parquet(&dir, &f.path, columns)?;
                for i in 0..batch.num_rows() {
                    let values: Vec<Sql> = columns
                        .iter()
                        .enumerate()
                        .map(|(c, col)| {
                            sql_value(datum_at(batch.column(c).as_ref(), col.ty, i), col.ty)
                        })
                        .collect();
                    insert.execute(rusqlite::params_from_iter(values))?;
                    rows += 1;
                }
            }
        }
        tx.commit()?;
    }
    let loaded = started.elapsed().as_secs_f64() * 1000.0;
    for (name, sql) in views {
        db.execute(&format!("CREATE TABLE \"{name}\" AS {sql}"), [])
            .with_context(|| format!("view `{name}` in SQLite"))?;
    }
    Ok((started.elapsed().as_secs_f64() * 1000.0, loaded, rows))
}

fn sql_value(d: Datum, ty: ColumnType) -> Sql {
    match d {
        Datum::Null => Sql::Null,
        Datum::Bool(b) => Sql::Integer(b as i64),
        Datum::Int(i) | Datum::Timestamp(i) => Sql::Integer(i),
        Datum::Float(f) => Sql::Real(f),
        Datum::Decimal(d) => match ty {
            ColumnType::Decimal { scale, .. } => Sql::Real(d as f64 / 10f64.powi(scale as i32)),
            _ => Sql::Real(d as f64),
        },
        Datum::Str(s) => Sql::Text(s),
        Datum::Bytes(b) => Sql::Blob(b),
    }
}
