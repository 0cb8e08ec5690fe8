//! Workload `restart`: how long a restart takes with and without operator-state checkpoints,
//! and what checkpointing costs while running.
//!
//! For each history length (`--histories`, events of a generated bank-customers file, epochs of
//! `--epoch-records` records):
//!
//! 1. **Run** into a fresh lakehouse with checkpoints off, every `--interval` epochs and every
//!    epoch (`--repeat` times each): the ratios of the median times are the checkpoint
//!    overhead.
//! 2. **Restart** on each finished lakehouse (no new input): without a checkpoint the restart
//!    replays every committed epoch; with one it loads the state of the last epoch and replays
//!    nothing. With checkpoints every `--interval` epochs and the newest one removed, it
//!    replays the epochs after the older one: restart time follows the checkpoint interval,
//!    not the length of the history.
//!
//! After every run and restart the Delta table is read back and compared with the reference
//! model. Every measurement is its own process (`run-one tidewater`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use tidewater_connectors::generator::BankGenConfig;

use crate::cdc_apply::engine::{pipeline_toml_with, run_engine, EngineReport, TABLE};
use crate::cdc_apply::{ensure_input, verify};
use crate::common::{median, thousands, Table};

/// Flags of `tidewater-bench restart`.
#[derive(Args, Clone, Debug)]
pub struct RestartArgs {
    /// History lengths (events of the input), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,2000000")]
    pub histories: Vec<u64>,
    /// Distinct keys of the input.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Records per epoch (`commit_every_records`).
    #[arg(long, default_value_t = 100_000)]
    pub epoch_records: u64,
    /// Checkpoint interval (epochs) of the older-checkpoint restart.
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Measurements per configuration; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Directory for inputs and lakehouses.
    #[arg(long, default_value = "target/bench-data")]
    pub dir: PathBuf,
}

/// Writes the pipeline of one configuration into a fresh `dir`; returns (pipeline, lakehouse).
fn fresh(dir: &Path, input: &Path, extra: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let lakehouse = dir.join("lakehouse");
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(&pipeline, pipeline_toml_with(input, &lakehouse, extra))?;
    Ok((pipeline, lakehouse))
}

/// The complete checkpoints of a lakehouse, by epoch.
fn complete_checkpoints(lakehouse: &Path) -> Vec<(u64, PathBuf)> {
    let root = lakehouse.join(tidewater::checkpoint::DIR);
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| {
                let p = e.ok()?.path();
                let epoch = p.file_name()?.to_str()?.parse().ok()?;
                p.join(tidewater::checkpoint::MANIFEST)
                    .exists()
                    .then_some((epoch, p))
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Median seconds of the reports, and the last report.
fn summarize(reports: &[EngineReport]) -> (f64, &EngineReport) {
    let times: Vec<f64> = reports.iter().map(|r| r.elapsed_s).collect();
    (median(&times), reports.last().expect("at least one run"))
}

/// Adds the row and the JSON entry of one restart configuration: the median time of
/// `reports`, the epochs replayed and the checkpoint restored by the last one, and the ratio
/// against the restart without a checkpoint (`restart_off` s).
#[allow(clippy::too_many_arguments)]
fn report_restart(
    table: &mut Table,
    summary: &mut Vec<serde_json::Value>,
    name: String,
    label: String,
    history: &str,
    events: u64,
    reports: &[EngineReport],
    restart_off: f64,
) {
    let (m, last) = summarize(reports);
    table.row(vec![
        name,
        history.to_string(),
        last.replayed_epochs.to_string(),
        last.restored_from
            .map_or("-".into(), |c| format!("epoch {c}")),
        format!("{m:.3}"),
        format!("{:.3}", m / restart_off),
    ]);
    summary.push(serde_json::json!({
        "events": events,
        "restart": label,
        "median_s": m,
        "replayed_epochs": last.replayed_epochs,
        "restored_from": last.restored_from,
    }));
}

/// Runs the workload (see the [module docs](self)).
pub fn run(args: &RestartArgs) -> anyhow::Result<()> {
    if args.repeat == 0 || args.workers == 0 || args.epoch_records == 0 || args.interval == 0 {
        bail!("--repeat, --workers, --epoch-records and --interval must be at least 1");
    }
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let mut table = Table::new(&[
        "configuration",
        "history",
        "epochs replayed",
        "restored from",
        "median s",
        "ratio",
    ]);
    let mut summary = Vec::new();
    for &events in &args.histories {
        let cfg = BankGenConfig {
            seed: 42,
            events,
            keys: args.keys,
            ..BankGenConfig::default()
        };
        let input = ensure_input(&cfg, &dir)?;
        eprintln!("reference: computing the expected final table of {events} events ...");
        let expected = verify::expected(&input)?;
        let epochs = events.div_ceil(args.epoch_records);
        let base = format!("commit_every_records = {}", args.epoch_records);
        let history = format!("{} ev / {epochs} epochs", thousands(events));
        let mut lakehouses = Vec::new();
        let mut run_median = Vec::new();
        let every_n = format!("every {} epochs", args.interval);
        for (label, every) in [
            ("off", 0u64),
            (every_n.as_str(), args.interval),
            ("every epoch", 1),
        ] {
            let extra = format!("{base}\nstate_checkpoint_every = {every}");
            let mut reports = Vec::new();
            let mut kept = None;
            for i in 1..=args.repeat {
                let run_dir = dir
                    .join("runs")
                    .join(format!("restart-e{events}-c{every}-r{i}"));
                let (pipeline, lakehouse) = fresh(&run_dir, &input, &extra)?;
                let r = run_engine(&pipeline, args.workers)?;
                if r.events != events {
                    bail!("the run parsed {} events of {events}", r.events);
                }
                verify::check_table(&lakehouse.join(TABLE), &expected)
                    .with_context(|| format!("checking {}", lakehouse.display()))?;
                eprintln!(
                    "run ({label}, {events} events) {i}/{}: {:.3} s",
                    args.repeat, r.elapsed_s
                );
                reports.push(r);
                if let Some(old) = kept.replace((pipeline, lakehouse, run_dir.clone())) {
                    std::fs::remove_dir_all(&old.2)?;
                }
            }
            let (m, _) = summarize(&reports);
            run_median.push(m);
            table.row(vec![
                format!("run, checkpoints {label}"),
                history.clone(),
                "-".into(),
                "-".into(),
                format!("{m:.3}"),
                format!("{:.3}", m / run_median[0]),
            ]);
            lakehouses.push((label, kept.expect("one run")));
        }
        summary.push(serde_json::json!({
            "events": events,
            "run_s_checkpoints_off": run_median[0],
            "run_s_checkpoint_every_interval": run_median[1],
            "run_s_checkpoint_every_epoch": run_median[2],
            "checkpoint_overhead_ratio_interval": run_median[1] / run_median[0],
            "checkpoint_overhead_ratio_every_epoch": run_median[2] / run_median[0],
        }));
        // The lakehouse with checkpoints every `interval` epochs serves the older-checkpoint
        // restart below.
        let (_, (pipeline, lakehouse, run_dir)) = lakehouses.remove(1);

        // Restarts on the finished lakehouses.
        let mut restart_off = f64::NAN;
        for (label, (pipeline, lakehouse, _)) in &lakehouses {
            let mut reports = Vec::new();
            for i in 1..=args.repeat {
                let r = run_engine(pipeline, args.workers)?;
                verify::check_table(&lakehouse.join(TABLE), &expected)?;
                eprintln!(
                    "restart ({label}, {events} events) {i}/{}: {:.3} s, {} epochs replayed, restored from {:?}",
                    args.repeat, r.elapsed_s, r.replayed_epochs, r.restored_from
                );
                reports.push(r);
            }
            let (m, _) = summarize(&reports);
            if *label == "off" {
                restart_off = m;
            }
            report_restart(
                &mut table,
                &mut summary,
                format!("restart, checkpoints {label}"),
                label.to_string(),
                &history,
                events,
                &reports,
                restart_off,
            );
        }

        // An older checkpoint: every `interval` epochs, the newest one removed before each
        // restart (the restart writes it again).
        let mut reports = Vec::new();
        for i in 1..=args.repeat {
            let cps = complete_checkpoints(&lakehouse);
            if cps.len() < 2 {
                bail!("expected two complete checkpoints, found {cps:?}");
            }
            std::fs::remove_dir_all(&cps[cps.len() - 1].1)?;
            let r = run_engine(&pipeline, args.workers)?;
            verify::check_table(&lakehouse.join(TABLE), &expected)?;
            eprintln!(
                "restart (older checkpoint, {events} events) {i}/{}: {:.3} s, {} epochs replayed, restored from {:?}",
                args.repeat, r.elapsed_s, r.replayed_epochs, r.restored_from
            );
            reports.push(r);
        }
        let back = summarize(&reports).1.replayed_epochs;
        report_restart(
            &mut table,
            &mut summary,
            format!("restart, checkpoint {back} epochs back"),
            format!("checkpoint every {} epochs, newest removed", args.interval),
            &history,
            events,
            &reports,
            restart_off,
        );
        for (_, (_, _, d)) in lakehouses {
            std::fs::remove_dir_all(d)?;
        }
        std::fs::remove_dir_all(run_dir)?;
    }
    println!(
        "\nrestart: {} workers, epochs of {} records; ratio = time / (run without checkpoints | restart without checkpoint) of the same history\n",
        args.workers,
        thousands(args.epoch_records)
    );
    print!("{}", table.render());
    println!(
        "\n{}",
        serde_json::json!({"workload": "restart", "results": summary})
    );
    Ok(())
}
