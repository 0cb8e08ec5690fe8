//! `tidewater-bench`: the benchmark harness of tidewater.
//!
//! One module per workload (like DataFusion's `benchmarks/`), plus shared code to run a
//! measurement in a child process and to report:
//!
//! - [`cdc_apply`]: `APPLY CHANGES` (SCD type 1) of a generated bank-customers Debezium file
//!   into a Delta table, against a plain single-threaded Rust baseline and, optionally, DuckDB.
//! - [`restart`]: restart time with and without operator-state checkpoints, and the
//!   overhead of checkpointing on throughput.
//! - [`codec`]: the checkpoint codec candidates (bincode, abomonation) on one worker's state.
//! - [`kafka`]: the Kafka source against a real broker (tansu): throughput vs. a plain
//!   rdkafka consume loop, and produce → visible-in-Delta freshness.
//! - [`common`]: peak RSS, medians, child processes, the result table and the JSON summary.
//!
//! Every measurement runs in its own process (the binary re-executes itself with the hidden
//! `run-one` subcommand), so each reported peak RSS belongs to exactly one run.

mod cdc_apply;
mod codec;
mod kafka;
mod marketing;
mod restart;
mod telematics;

/// mimalloc: the engine allocates many small, short-lived buffers per record; glibc malloc
/// spent about a third of the run time on them (bench/RESULTS.md, 2026-11-22 profile).
/// (Build with `--no-default-features` to profile heap use with the system allocator.)
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Parser)]
#[command(name = "tidewater-bench", version, about = "Benchmarks of tidewater")]
struct Cli {
    /// The workload to run.
    #[command(subcommand)]
    command: Command,
}

/// Workloads (and the hidden single-measurement command).
#[derive(Subcommand)]
enum Command {
    /// APPLY CHANGES (SCD type 1) of a generated Debezium CDC file into a Delta table:
    /// tidewater at each worker count vs. a plain single-threaded Rust loop (and DuckDB).
    CdcApply(cdc_apply::CdcApplyArgs),
    /// Restart time after a long history with and without operator-state checkpoints, and
    /// the throughput cost of checkpointing.
    Restart(restart::RestartArgs),
    /// Encode/decode speed of the checkpoint codec candidates (bincode vs abomonation).
    CheckpointCodec(codec::CodecArgs),
    /// Kafka source against a real broker (tansu): throughput from a pre-filled topic vs. a
    /// plain rdkafka consume loop, and freshness (produce → visible in a committed Delta
    /// version) at a fixed produce rate.
    Kafka(kafka::KafkaArgs),
    /// The marketing engagement pipeline (views over CDC dimensions and activity streams):
    /// events/s and p99 epoch latency vs. recomputing every view from scratch in SQLite per
    /// epoch, in the same run.
    Marketing(marketing::MarketingArgs),
    /// The telematics pipeline (readings with a watermark, 5-minute windows per vehicle,
    /// claims scored against them) with many vehicles: events/s, p99 epoch latency, peak RSS
    /// with many open windows, `emit = on_update` against `on_close` in the same run.
    Telematics(telematics::TelematicsArgs),
    /// Run one measurement in this process and print one JSON line (used by the workloads,
    /// which re-execute the binary so that peak RSS is per run; also handy under a profiler).
    #[command(hide = true)]
    RunOne {
        /// What to run.
        #[command(subcommand)]
        what: RunOne,
    },
}

/// A single measurement, run by `run-one`.
#[derive(Subcommand)]
enum RunOne {
    /// The tidewater engine on a pipeline file.
    Tidewater {
        /// The pipeline file (TOML).
        #[arg(long)]
        pipeline: PathBuf,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Keep running after the input is consumed, until the process is stopped (Kafka
        /// freshness); prints no report.
        #[arg(long)]
        follow: bool,
    },
    /// A plain rdkafka consume loop (the baseline of `kafka`): reads `--events` messages from
    /// every partition of a topic, from the beginning.
    KafkaPlain(kafka::PlainArgs),
    /// The plain single-threaded Rust baseline of `cdc-apply` on a Debezium JSON-lines file.
    Baseline {
        /// The input file.
        #[arg(long)]
        input: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CdcApply(args) => cdc_apply::run(&args),
        Command::Restart(args) => restart::run(&args),
        Command::CheckpointCodec(args) => codec::run(&args),
        Command::Kafka(args) => kafka::run(&args),
        Command::Marketing(args) => marketing::run(&args),
        Command::Telematics(args) => telematics::run(&args),
        Command::RunOne { what } => match what {
            RunOne::Tidewater {
                pipeline,
                workers,
                follow,
            } => cdc_apply::engine::run_one(&pipeline, workers, follow),
            RunOne::KafkaPlain(args) => kafka::plain::run_one(&args),
            RunOne::Baseline { input } => cdc_apply::baseline::run_one(&input),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidewater-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
