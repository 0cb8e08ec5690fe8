//! Workload `cdc-apply`: `APPLY CHANGES` (SCD type 1) of a generated bank-customers
//! Debezium JSON-lines file into a Delta table.
//!
//! 1. The input is generated once per configuration ([`BankGenConfig`] with seed 42) into
//!    `--dir` and reused while its recorded configuration and size match.
//! 2. The expected final table is computed with the reference model.
//! 3. The baseline ([`baseline`]: a single-threaded serde_json + `HashMap` loop) runs
//!    `--repeat` times; its result is checked against the reference (fingerprint).
//! 4. tidewater runs `--repeat` times at each `--workers` count into a fresh lakehouse; each
//!    resulting Delta table is read back and compared with the reference, row by row.
//! 5. Optionally DuckDB computes the same final state (checked by fingerprint).
//!
//! Every run is a separate process, so peak RSS is per run. Events/s is events / median
//! wall time. The output is a table on stdout, the targets, and one JSON summary line.

pub mod baseline;
pub mod duckdb;
pub mod engine;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use tidewater_connectors::generator::{write_file, BankGenConfig};

use crate::common::{file_size, median, mib, run_child, thousands, Table};
use baseline::BaselineReport;
use engine::EngineReport;

/// Throughput target of tidewater at 2 workers, events/s.
pub const TARGET_EVENTS_PER_S: f64 = 1_000_000.0;
/// Peak-RSS target: at most this many times the raw (Arrow) size of the final table.
pub const TARGET_RSS_OVER_RAW: f64 = 3.0;

/// Flags of `tidewater-bench cdc-apply`.
#[derive(Args, Clone, Debug)]
pub struct CdcApplyArgs {
    /// Number of change events (lines) in the generated input, duplicates included.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Number of distinct customers (keys `1..=keys`).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Worker counts to run tidewater with, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Directory for the generated input (reused across invocations) and the lakehouses of
    /// the runs (under `runs/`).
    #[arg(long, default_value = "target/bench-data")]
    pub dir: PathBuf,
    /// Measurements per configuration; the median time is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Also run DuckDB (via its Python package) on the same file as a second reference.
    #[arg(long)]
    pub duckdb: bool,
    /// Threads of DuckDB (with --duckdb).
    #[arg(long, default_value_t = 2)]
    pub duckdb_threads: usize,
    /// Keep the lakehouse of every tidewater run (default: delete it once checked).
    #[arg(long)]
    pub keep: bool,
    /// Worker counts to also run tidewater with `spill_rows = false` at (the epoch's rows
    /// wait in memory instead of on disk), comma-separated; empty: none.
    #[arg(long, value_delimiter = ',', default_value = "2")]
    pub in_memory_workers: Vec<usize>,
}

/// The generator settings of the benchmark input.
fn gen_config(args: &CdcApplyArgs) -> BankGenConfig {
    BankGenConfig {
        seed: 42,
        events: args.events,
        keys: args.keys,
        ..BankGenConfig::default()
    }
}

/// The sidecar of a generated input: the config it was generated with and its size.
#[derive(Debug, Serialize, Deserialize)]
struct InputMeta {
    config: BankGenConfig,
    bytes: u64,
}

/// Returns the input file for `cfg` in `dir`, generating it unless a file generated with
/// the same configuration and of the recorded size is already there.
pub fn ensure_input(cfg: &BankGenConfig, dir: &Path) -> anyhow::Result<PathBuf> {
    let name = format!("bank-s{}-e{}-k{}.jsonl", cfg.seed, cfg.events, cfg.keys);
    let path = dir.join(&name);
    let meta_path = dir.join(format!("{name}.meta.json"));
    let reusable = std::fs::read_to_string(&meta_path)
        .ok()
        .and_then(|t| serde_json::from_str::<InputMeta>(&t).ok())
        .is_some_and(|m| m.config == *cfg && path.exists() && m.bytes == file_size(&path));
    if reusable {
        eprintln!("input: reusing {}", path.display());
        return Ok(path);
    }
    eprintln!(
        "input: generating {} events over {} keys into {} ...",
        cfg.events,
        cfg.keys,
        path.display()
    );
    let started = Instant::now();
    let tmp = dir.join(format!(".{name}.tmp"));
    let bytes = write_file(cfg, &tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)?;
    let meta = InputMeta {
        config: cfg.clone(),
        bytes,
    };
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)?)?;
    eprintln!(
        "input: {} MiB in {:.1} s",
        mib(bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(path)
}

/// One row of the result.
#[derive(Debug, Serialize)]
pub struct ResultRow {
    /// Display name.
    pub name: String,
    /// Wall time of every run, seconds.
    pub runs_s: Vec<f64>,
    /// Median wall time, seconds.
    pub median_s: f64,
    /// Events / median wall time.
    pub events_per_s: f64,
    /// events_per_s / the baseline's.
    pub ratio_vs_baseline: f64,
    /// Highest peak RSS over the runs, bytes.
    pub peak_rss_bytes: u64,
    /// peak_rss_bytes / raw bytes of the final table.
    pub rss_over_raw: Option<f64>,
    /// Worker threads (tidewater rows).
    pub workers: Option<usize>,
    /// Whether the run spilled its rows (`spill_rows = true`).
    pub spill_rows: bool,
}

/// Makes a result row from the runs of one configuration (time, peak RSS).
fn result_row(name: String, workers: Option<usize>, events: u64, runs: &[(f64, u64)]) -> ResultRow {
    let runs_s: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let median_s = median(&runs_s);
    ResultRow {
        name,
        events_per_s: events as f64 / median_s,
        runs_s,
        median_s,
        ratio_vs_baseline: f64::NAN,
        peak_rss_bytes: runs.iter().map(|r| r.1).max().unwrap_or(0),
        rss_over_raw: None,
        workers,
        spill_rows: false,
    }
}

/// Runs the workload (see the [module docs](self)).
pub fn run(args: &CdcApplyArgs) -> anyhow::Result<()> {
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    if args.events == 0 || args.keys == 0 {
        bail!("--events and --keys must be at least 1");
    }
    if args.workers.contains(&0) || args.in_memory_workers.contains(&0) {
        bail!("--workers: worker counts must be at least 1");
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let cfg = gen_config(args);
    let input = ensure_input(&cfg, &dir)?;
    let input_bytes = file_size(&input);

    eprintln!("reference: computing the expected final table ...");
    let started = Instant::now();
    let expected = verify::expected(&input)?;
    eprintln!(
        "reference: {} live rows ({:.1} s)",
        expected.rows.len(),
        started.elapsed().as_secs_f64()
    );

    let mut rows: Vec<ResultRow> = Vec::new();

    // Baseline.
    let mut runs = Vec::new();
    for i in 1..=args.repeat {
        let r: BaselineReport = run_child(&[
            "run-one".into(),
            "baseline".into(),
            "--input".into(),
            input.display().to_string(),
        ])?;
        if r.events != cfg.events {
            bail!(
                "baseline applied {} events, the input has {}",
                r.events,
                cfg.events
            );
        }
        if r.fingerprint != expected.fingerprint {
            bail!(
                "MISMATCH: the baseline's final table {:?} differs from the reference {:?}",
                r.fingerprint,
                expected.fingerprint
            );
        }
        eprintln!(
            "baseline run {i}/{}: {:.3} s, {} events/s, peak RSS {} MiB",
            args.repeat,
            r.elapsed_s,
            thousands((r.events as f64 / r.elapsed_s) as u64),
            mib(r.peak_rss_bytes)
        );
        runs.push((r.elapsed_s, r.peak_rss_bytes));
    }
    rows.push(result_row(
        "baseline (serde_json + HashMap, 1 thread)".into(),
        None,
        cfg.events,
        &runs,
    ));

    // tidewater.
    let mut read_back: Option<verify::ReadBack> = None;
    // The defaults (`spill_rows = true`), then with the rows in memory.
    let configs = args.workers.iter().map(|w| (*w, false));
    for (workers, in_memory) in configs.chain(args.in_memory_workers.iter().map(|w| (*w, true))) {
        let mut runs = Vec::new();
        let label = if in_memory {
            ", spill_rows = false"
        } else {
            ""
        };
        for i in 1..=args.repeat {
            let run_dir = dir.join("runs").join(format!(
                "cdc-apply-e{}-k{}-w{workers}{}-r{i}",
                cfg.events,
                cfg.keys,
                if in_memory { "-mem" } else { "" }
            ));
            if run_dir.exists() {
                std::fs::remove_dir_all(&run_dir)?;
            }
            std::fs::create_dir_all(&run_dir)?;
            let lakehouse = run_dir.join("lakehouse");
            let pipeline = run_dir.join("pipeline.toml");
            let extra = if in_memory { "spill_rows = false" } else { "" };
            std::fs::write(
                &pipeline,
                engine::pipeline_toml_with(&input, &lakehouse, extra),
            )?;
            let r: EngineReport = engine::run_engine(&pipeline, workers)?;
            if r.events != cfg.events || r.quarantined != 0 {
                bail!(
                    "tidewater parsed {} events ({} quarantined), the input has {}",
                    r.events,
                    r.quarantined,
                    cfg.events
                );
            }
            let rb = verify::check_table(&lakehouse.join(engine::TABLE), &expected)
                .with_context(|| format!("checking the table of {}", run_dir.display()))?;
            eprintln!(
                "tidewater {workers}w{label} run {i}/{}: {:.3} s, {} events/s, {} epochs, peak RSS {} MiB; \
                 table OK ({} rows in {} files)",
                args.repeat,
                r.elapsed_s,
                thousands((r.events as f64 / r.elapsed_s) as u64),
                r.epochs,
                mib(r.peak_rss_bytes),
                rb.rows,
                rb.files
            );
            read_back.get_or_insert(rb);
            if !args.keep {
                std::fs::remove_dir_all(&run_dir)?;
            }
            runs.push((r.elapsed_s, r.peak_rss_bytes));
        }
        let mut row = result_row(
            format!("tidewater, {workers} worker(s){label}"),
            Some(workers),
            cfg.events,
            &runs,
        );
        row.spill_rows = !in_memory;
        rows.push(row);
    }

    // DuckDB.
    let mut duckdb_note = None;
    if args.duckdb {
        match duckdb::find_python() {
            Ok(python) => {
                let mut runs = Vec::new();
                let mut version = String::new();
                for i in 1..=args.repeat {
                    let r = duckdb::run_once(&python, &input, args.duckdb_threads)?;
                    if r.fingerprint != expected.fingerprint {
                        bail!(
                            "MISMATCH: DuckDB's final table {:?} differs from the reference {:?}",
                            r.fingerprint,
                            expected.fingerprint
                        );
                    }
                    eprintln!(
                        "duckdb run {i}/{}: {:.3} s, {} events/s, peak RSS {} MiB",
                        args.repeat,
                        r.elapsed_s,
                        thousands((cfg.events as f64 / r.elapsed_s) as u64),
                        mib(r.peak_rss_bytes)
                    );
                    version = r.version;
                    runs.push((r.elapsed_s, r.peak_rss_bytes));
                }
                rows.push(result_row(
                    format!("DuckDB {version} (Python), {} threads", args.duckdb_threads),
                    None,
                    cfg.events,
                    &runs,
                ));
            }
            Err(why) => {
                eprintln!("duckdb: skipped: {why}");
                duckdb_note = Some(format!("DuckDB skipped: {why}"));
            }
        }
    }

    // Ratios.
    let base = rows[0].events_per_s;
    let raw = read_back.as_ref().map(|r| r.arrow_bytes);
    for r in &mut rows {
        r.ratio_vs_baseline = r.events_per_s / base;
        r.rss_over_raw = raw
            .filter(|b| *b > 0)
            .map(|b| r.peak_rss_bytes as f64 / b as f64);
    }

    // Report.
    let mut table = Table::new(&["name", "events/s", "vs baseline", "peak RSS MiB", "RSS/raw"]);
    for r in &rows {
        table.row(vec![
            r.name.clone(),
            thousands(r.events_per_s.round() as u64),
            format!("{:.2}×", r.ratio_vs_baseline),
            mib(r.peak_rss_bytes),
            r.rss_over_raw.map_or("-".into(), |x| format!("{x:.2}×")),
        ]);
    }
    println!();
    println!(
        "cdc-apply: {} events, {} keys, input {} MiB ({}), {} run(s) each, median shown",
        thousands(cfg.events),
        thousands(cfg.keys),
        mib(input_bytes),
        input.display(),
        args.repeat
    );
    if let Some(rb) = &read_back {
        println!(
            "final table: {} rows, raw (Arrow) {} MiB, Parquet {} MiB in {} files; checked against the reference: OK",
            thousands(rb.rows),
            mib(rb.arrow_bytes),
            mib(rb.parquet_bytes),
            rb.files
        );
    }
    if let Some(note) = &duckdb_note {
        println!("{note}");
    }
    println!();
    print!("{}", table.render());
    println!();

    let at2 = rows.iter().find(|r| r.workers == Some(2) && r.spill_rows);
    let target_met = at2.map(|r| r.events_per_s >= TARGET_EVENTS_PER_S);
    let rss_met = at2
        .and_then(|r| r.rss_over_raw)
        .map(|x| x <= TARGET_RSS_OVER_RAW);
    let verdict = |m: Option<bool>| match m {
        Some(true) => "MET",
        Some(false) => "NOT MET",
        None => "not measured (no run with --workers 2)",
    };
    println!(
        "target ≥ 1,000,000 events/s at 2 workers: {}",
        verdict(target_met)
    );
    println!(
        "target peak RSS ≤ 3× raw table bytes at 2 workers: {}",
        verdict(rss_met)
    );
    if let Some(r) = rows.iter().find(|r| r.workers == Some(2) && !r.spill_rows) {
        println!(
            "with spill_rows = false (rows in memory) at 2 workers: {} events/s ({}), peak RSS {}× raw ({})",
            thousands(r.events_per_s.round() as u64),
            verdict(Some(r.events_per_s >= TARGET_EVENTS_PER_S)),
            r.rss_over_raw.map_or("-".into(), |x| format!("{x:.2}")),
            verdict(r.rss_over_raw.map(|x| x <= TARGET_RSS_OVER_RAW)),
        );
    }

    let summary = serde_json::json!({
        "workload": "cdc-apply",
        "events": cfg.events,
        "keys": cfg.keys,
        "seed": cfg.seed,
        "repeat": args.repeat,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "input_bytes": input_bytes,
        "table_rows": read_back.as_ref().map(|r| r.rows),
        "raw_table_bytes": raw,
        "parquet_bytes": read_back.as_ref().map(|r| r.parquet_bytes),
        "results": rows,
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "target_met": target_met,
        "target_rss_over_raw": TARGET_RSS_OVER_RAW,
        "rss_target_met": rss_met,
        "duckdb": duckdb_note.unwrap_or_else(|| if args.duckdb { "ran".into() } else { "not requested".into() }),
    });
    println!("{summary}");
    Ok(())
}
