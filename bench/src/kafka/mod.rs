//! Workload `kafka`: the Kafka source against a real broker (tansu, see
//! `shared/kafka-broker.md`), started by this workload on a free port and stopped by its pid.
//!
//! 1. **Throughput from a pre-filled topic.** A topic of `--partitions` partitions is filled
//!    with `--events` bank-customers Debezium events (keyed by `customer_id`, partition =
//!    `customer_id % partitions`). Then, `--repeat` rounds of: a plain rdkafka consume loop
//!    ([`plain`]), and tidewater (`kind = "kafka"`, one `customers` table, exit when idle) at
//!    each `--workers` count, each in its own process. Reported: events/s (median wall time),
//!    the ratio against the plain loop of the same run (the broker's cost cancels out: it is
//!    the bottleneck on a small machine), CPU seconds per million events of the measured
//!    process and of the broker during that run, peak RSS. Every tidewater table is read back
//!    and compared with the reference model over the produced values; a mismatch fails.
//! 2. **Freshness** ([`freshness`]): a topic is pre-filled with `--warmup-events`; tidewater
//!    follows it in a child process with `commit_interval_ms = --commit-interval-ms`; once
//!    the warm-up is committed, `--rate` events/s are produced for `--duration-s` seconds and
//!    every one's produce → visible-in-a-committed-Delta-version latency goes into an
//!    HDR histogram. Target: p99 ≤ 2 × `commit_interval_ms`. The table is checked too.
//!
//! The output is a table per part and one JSON summary line.

pub mod broker;
pub mod freshness;
pub mod plain;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use tidewater_connectors::generator::{reference_apply, BankGenConfig};

use crate::cdc_apply::engine::{run_engine, EngineReport, TABLE};
use crate::cdc_apply::verify::{self, Expected, SEQUENCE};
use crate::common::{cpu_seconds, median, mib, run_child, thousands, Table};
use broker::{bank_messages, Broker, Message, Producer};
pub use plain::PlainArgs;
use plain::PlainReport;

/// The source name in the pipeline (and in the recorded positions).
const SOURCE: &str = "cdc";

/// Flags of `tidewater-bench kafka`.
#[derive(Args, Clone, Debug)]
pub struct KafkaArgs {
    /// Events in the pre-filled topic of the throughput measurement.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Distinct customers of the generated events.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Worker counts of tidewater in the throughput measurement, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Rounds of the throughput measurement (each: the plain loop, then tidewater at every
    /// worker count); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// `fetch.wait.max.ms` of every consumer (tansu always waits this long on a fetch).
    #[arg(long, default_value_t = 50)]
    pub fetch_wait_ms: u64,
    /// Freshness: events per second produced.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Freshness: seconds of production at `--rate`.
    #[arg(long, default_value_t = 20)]
    pub duration_s: u64,
    /// Freshness: events in the topic before tidewater starts (it samples them for the
    /// schema); their latency is not measured.
    #[arg(long, default_value_t = 2_000)]
    pub warmup_events: u64,
    /// Freshness: tidewater's `commit_interval_ms`.
    #[arg(long, default_value_t = 1_000)]
    pub commit_interval_ms: u64,
    /// Freshness: tidewater's worker threads.
    #[arg(long, default_value_t = 2)]
    pub freshness_workers: usize,
    /// Freshness: the producer's `linger.ms`.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Freshness: how often the watcher looks for a new Delta version, ms.
    #[arg(long, default_value_t = 5)]
    pub watch_ms: u64,
    /// Skip the throughput measurement.
    #[arg(long)]
    pub no_throughput: bool,
    /// Skip the freshness measurement.
    #[arg(long)]
    pub no_freshness: bool,
    /// The tansu binary (default: `$TIDEWATER_TANSU`, else
    /// `$HOME/.cache/tidewater/tansu/bin/tansu`).
    #[arg(long)]
    pub tansu: Option<PathBuf>,
    /// Directory for the lakehouses of the runs (under `runs/`).
    #[arg(long, default_value = "target/bench-data")]
    pub dir: PathBuf,
    /// Keep the lakehouse of every run (default: delete it once checked).
    #[arg(long)]
    pub keep: bool,
}

/// The pipeline file of the benchmark: one `kafka` source, one SCD type 1 table keyed by
/// `customer_id` and sequenced by `__lsn`.
pub fn pipeline_toml(
    lakehouse: &Path,
    brokers: &str,
    topic: &str,
    commit_interval_ms: u64,
    fetch_wait_ms: u64,
) -> String {
    let lakehouse = lakehouse
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"# Written by tidewater-bench kafka.
[pipeline]
name = "bench-kafka"
lakehouse = "{lakehouse}"
commit_interval_ms = {commit_interval_ms}

[[source]]
name = "{SOURCE}"
kind = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
fetch_wait_ms = {fetch_wait_ms}

[[table]]
name = "{TABLE}"
from = "{SOURCE}"
keys = ["customer_id"]
sequence_by = "__lsn"
"#
    )
}

/// The expected final table of `messages` (reference model).
fn expected_of(messages: &[Message]) -> anyhow::Result<Expected> {
    let state = reference_apply(
        messages.iter().map(|m| m.value.as_slice()),
        &[verify::KEY],
        SEQUENCE,
    );
    if !state.bad.is_empty() {
        bail!(
            "the reference model rejected {} values, e.g. {:?}",
            state.bad.len(),
            state.bad[0]
        );
    }
    verify::expected_of(state)
}

/// A fresh run directory; returns (pipeline path, lakehouse).
fn fresh_run(
    dir: &Path,
    name: &str,
    pipeline: impl FnOnce(&Path) -> String,
) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let run_dir = dir.join("runs").join(name);
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    std::fs::create_dir_all(&run_dir)?;
    let lakehouse = run_dir.join("lakehouse");
    let path = run_dir.join("pipeline.toml");
    std::fs::write(&path, pipeline(&lakehouse))?;
    Ok((run_dir, path, lakehouse))
}

/// Produces `messages` as fast as the broker takes them; returns their offsets and
/// acknowledgement times.
fn produce_all(
    brokers: &str,
    topic: &str,
    messages: &[Message],
    linger_ms: u64,
) -> anyhow::Result<Vec<(i64, Instant)>> {
    let mut p = Producer::new(brokers, topic, linger_ms)?;
    for (i, m) in messages.iter().enumerate() {
        p.send(i, m.partition, &m.key, &m.value)?;
    }
    p.flush()
}

/// One measured run.
struct Run {
    elapsed_s: f64,
    cpu_s: f64,
    broker_cpu_s: f64,
    peak_rss_bytes: u64,
}

/// One row of the throughput result.
#[derive(Debug, Serialize)]
pub struct ThroughputRow {
    /// Display name.
    pub name: String,
    /// Worker threads (tidewater rows).
    pub workers: Option<usize>,
    /// Wall time of every run, seconds.
    pub runs_s: Vec<f64>,
    /// Median wall time.
    pub median_s: f64,
    /// Events / median wall time.
    pub events_per_s: f64,
    /// events_per_s / the plain loop's.
    pub ratio_vs_plain: f64,
    /// Median CPU seconds of the measured process per million events.
    pub cpu_s_per_m_events: f64,
    /// Median CPU seconds of the broker during the run per million events.
    pub broker_cpu_s_per_m_events: f64,
    /// Highest peak RSS of the measured process.
    pub peak_rss_bytes: u64,
}

fn throughput_row(
    name: String,
    workers: Option<usize>,
    events: u64,
    runs: &[Run],
) -> ThroughputRow {
    let runs_s: Vec<f64> = runs.iter().map(|r| r.elapsed_s).collect();
    let median_s = median(&runs_s);
    let per_m = |x: f64| x / events as f64 * 1e6;
    ThroughputRow {
        name,
        workers,
        events_per_s: events as f64 / median_s,
        median_s,
        runs_s,
        ratio_vs_plain: f64::NAN,
        cpu_s_per_m_events: per_m(median(&runs.iter().map(|r| r.cpu_s).collect::<Vec<_>>())),
        broker_cpu_s_per_m_events: per_m(median(
            &runs.iter().map(|r| r.broker_cpu_s).collect::<Vec<_>>(),
        )),
        peak_rss_bytes: runs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
    }
}

/// What the throughput part found besides the rows.
#[derive(Debug, Serialize)]
struct ThroughputInfo {
    events: u64,
    value_bytes: u64,
    produce_s: f64,
    table_rows: u64,
    table_files: usize,
}

/// Part 1 (see the [module docs](self)).
fn throughput(
    args: &KafkaArgs,
    broker: &Broker,
    dir: &Path,
) -> anyhow::Result<(Vec<ThroughputRow>, ThroughputInfo)> {
    let brokers = broker.brokers();
    let topic = "bank-throughput";
    broker.create_topic(topic, args.partitions)?;
    let cfg = BankGenConfig {
        seed: 42,
        events: args.events,
        keys: args.keys,
        ..BankGenConfig::default()
    };
    let messages = bank_messages(&cfg, args.partitions)?;
    let value_bytes: u64 = messages.iter().map(|m| m.value.len() as u64).sum();
    eprintln!(
        "throughput: producing {} events ({} MiB) into {topic} ({} partitions) ...",
        thousands(args.events),
        mib(value_bytes),
        args.partitions
    );
    let started = Instant::now();
    produce_all(&brokers, topic, &messages, 20)?;
    let produce_s = started.elapsed().as_secs_f64();
    eprintln!(
        "throughput: produced in {produce_s:.1} s ({} events/s)",
        thousands((args.events as f64 / produce_s) as u64)
    );
    let expected = expected_of(&messages)?;
    drop(messages);

    let broker_cpu = || cpu_seconds(broker.pid());
    let mut plain_runs = Vec::new();
    let mut tw_runs: BTreeMap<usize, Vec<Run>> = BTreeMap::new();
    let mut read_back = None;
    for round in 1..=args.repeat {
        let b0 = broker_cpu();
        let r: PlainReport = run_child(&[
            "run-one".into(),
            "kafka-plain".into(),
            "--brokers".into(),
            brokers.clone(),
            "--topic".into(),
            topic.into(),
            "--partitions".into(),
            args.partitions.to_string(),
            "--events".into(),
            args.events.to_string(),
            "--fetch-wait-ms".into(),
            args.fetch_wait_ms.to_string(),
        ])?;
        let broker_cpu_s = broker_cpu() - b0;
        if r.events != args.events || r.bytes != value_bytes {
            bail!(
                "the plain loop read {} events / {} bytes, the topic holds {} / {value_bytes}",
                r.events,
                r.bytes,
                args.events
            );
        }
        eprintln!(
            "plain loop round {round}/{}: {:.2} s, {} events/s, {:.2} CPU-s, broker {broker_cpu_s:.2} CPU-s",
            args.repeat,
            r.elapsed_s,
            thousands((r.events as f64 / r.elapsed_s) as u64),
            r.cpu_s
        );
        plain_runs.push(Run {
            elapsed_s: r.elapsed_s,
            cpu_s: r.cpu_s,
            broker_cpu_s,
            peak_rss_bytes: r.peak_rss_bytes,
        });

        for &workers in &args.workers {
            let (run_dir, pipeline, lakehouse) = fresh_run(
                dir,
                &format!("kafka-throughput-w{workers}-r{round}"),
                |lh| pipeline_toml(lh, &brokers, topic, 1000, args.fetch_wait_ms),
            )?;
            let b0 = broker_cpu();
            let r: EngineReport = run_engine(&pipeline, workers)?;
            let broker_cpu_s = broker_cpu() - b0;
            if r.events != args.events || r.quarantined != 0 {
                bail!(
                    "tidewater read {} events ({} quarantined), the topic holds {}",
                    r.events,
                    r.quarantined,
                    args.events
                );
            }
            let rb = verify::check_table(&lakehouse.join(TABLE), &expected)
                .with_context(|| format!("checking the table of {}", run_dir.display()))?;
            eprintln!(
                "tidewater {workers}w round {round}/{}: {:.2} s, {} events/s, {} epochs, {:.2} CPU-s, \
                 broker {broker_cpu_s:.2} CPU-s; table OK ({} rows)",
                args.repeat,
                r.elapsed_s,
                thousands((r.events as f64 / r.elapsed_s) as u64),
                r.epochs,
                r.cpu_s,
                rb.rows
            );
            read_back.get_or_insert(rb);
            if !args.keep {
                std::fs::remove_dir_all(&run_dir)?;
            }
            tw_runs.entry(workers).or_default().push(Run {
                elapsed_s: r.elapsed_s,
                cpu_s: r.cpu_s,
                broker_cpu_s,
                peak_rss_bytes: r.peak_rss_bytes,
            });
        }
    }
    let mut rows = vec![throughput_row(
        "plain rdkafka consume loop (1 BaseConsumer)".into(),
        None,
        args.events,
        &plain_runs,
    )];
    for &workers in &args.workers {
        if let Some(runs) = tw_runs.get(&workers) {
            rows.push(throughput_row(
                format!("tidewater, {workers} worker(s)"),
                Some(workers),
                args.events,
                runs,
            ));
        }
    }
    let base = rows[0].events_per_s;
    for r in &mut rows {
        r.ratio_vs_plain = r.events_per_s / base;
    }
    let rb = read_back.context("no tidewater run")?;
    Ok((
        rows,
        ThroughputInfo {
            events: args.events,
            value_bytes,
            produce_s,
            table_rows: rb.rows,
            table_files: rb.files,
        },
    ))
}

/// The result of part 2.
#[derive(Debug, Serialize)]
struct FreshnessResult {
    rate: u64,
    duration_s: u64,
    workers: usize,
    commit_interval_ms: u64,
    fetch_wait_ms: u64,
    linger_ms: u64,
    watch_ms: u64,
    warmup_events: u64,
    /// Events produced at the fixed rate (latency measured for each).
    events: u64,
    /// Events / (last send − first send).
    achieved_rate: f64,
    /// How far the producer fell behind its schedule at worst, ms.
    producer_behind_max_ms: f64,
    /// Produce (send) → visible in a committed Delta version.
    latency: freshness::Percentiles,
    /// Produce (send) → the broker's acknowledgement (producer batching + broker write).
    produce_to_ack: freshness::Percentiles,
    /// The broker's acknowledgement → visible (fetch wait, epoch, commit).
    ack_to_visible: freshness::Percentiles,
    /// Delta versions that appeared while the measured events were produced and drained.
    versions: usize,
    /// Mean time between those versions, ms.
    mean_version_gap_ms: f64,
    /// CPU seconds of tidewater / of the broker per second of the measured phase.
    tidewater_cpu_per_s: f64,
    broker_cpu_per_s: f64,
    /// Rows of the final table (checked against the reference).
    table_rows: u64,
    target_p99_ms: f64,
    target_met: bool,
}

/// Part 2 (see the [module docs](self) and [`freshness`]).
fn freshness_run(args: &KafkaArgs, broker: &Broker, dir: &Path) -> anyhow::Result<FreshnessResult> {
    let brokers = broker.brokers();
    let topic = "bank-freshness";
    broker.create_topic(topic, args.partitions)?;
    let measured = args.rate * args.duration_s;
    let cfg = BankGenConfig {
        seed: 7,
        events: args.warmup_events + measured,
        keys: args.keys,
        ..BankGenConfig::default()
    };
    let messages = bank_messages(&cfg, args.partitions)?;
    let (warmup, live) = messages.split_at(args.warmup_events as usize);
    let end_offsets = |acks: &[(i64, Instant)], msgs: &[Message]| {
        let mut need: BTreeMap<i32, i64> = BTreeMap::new();
        for ((o, _), m) in acks.iter().zip(msgs) {
            let e = need.entry(m.partition).or_default();
            *e = (*e).max(o + 1);
        }
        need
    };
    eprintln!(
        "freshness: {} warm-up events into {topic}, then {} events/s for {} s ...",
        thousands(args.warmup_events),
        thousands(args.rate),
        args.duration_s
    );
    // The warm-up goes through the producer of the measured phase: that one is connected
    // (metadata, producer id) before the clock starts. (A new producer holds its first
    // messages for up to ~1 s while it connects, which would count as latency.)
    let mut producer = Producer::new(&brokers, topic, args.linger_ms)?;
    for (i, m) in warmup.iter().enumerate() {
        producer.send(i, m.partition, &m.key, &m.value)?;
    }
    let warm_offsets = producer.flush()?;

    let (run_dir, pipeline, lakehouse) = fresh_run(dir, "kafka-freshness", |lh| {
        pipeline_toml(
            lh,
            &brokers,
            topic,
            args.commit_interval_ms,
            args.fetch_wait_ms,
        )
    })?;
    let table_dir = lakehouse.join(TABLE);
    let watcher = freshness::Watcher::start(
        &table_dir,
        SOURCE,
        topic,
        Duration::from_millis(args.watch_ms),
    );
    let mut child = freshness::ChildGuard::follow(
        &pipeline,
        args.freshness_workers,
        &run_dir.join("tidewater.stderr"),
    )?;
    let drain = |need: &BTreeMap<i32, i64>,
                 child: &mut freshness::ChildGuard,
                 limit: Duration,
                 what: &str|
     -> anyhow::Result<()> {
        let started = Instant::now();
        while !watcher.all_visible(need)? {
            child.check_running()?;
            if started.elapsed() > limit {
                bail!(
                    "{what} not visible in the Delta table after {} s",
                    limit.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    };
    drain(
        &end_offsets(&warm_offsets, warmup),
        &mut child,
        Duration::from_secs(120),
        "the warm-up events",
    )?;
    eprintln!("freshness: warm-up committed; producing at the fixed rate ...");

    // The measured phase: event i is sent at t0 + i / rate (at once when behind schedule).
    let tw_cpu0 = cpu_seconds(child.pid());
    let b_cpu0 = cpu_seconds(broker.pid());
    let mut sent = Vec::with_capacity(live.len());
    let mut behind = Duration::ZERO;
    let t0 = Instant::now();
    for (i, m) in live.iter().enumerate() {
        let due = t0 + Duration::from_nanos((i as u128 * 1_000_000_000 / args.rate as u128) as u64);
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        } else {
            behind = behind.max(now - due);
        }
        sent.push(Instant::now());
        producer.send(i, m.partition, &m.key, &m.value)?;
        if i % 1000 == 0 {
            child.check_running()?;
        }
    }
    let produced_in = sent
        .last()
        .map_or(0.0, |l| l.duration_since(sent[0]).as_secs_f64());
    let live_offsets = producer.flush()?;
    drain(
        &end_offsets(&live_offsets, live),
        &mut child,
        Duration::from_secs(60) + 10 * Duration::from_millis(args.commit_interval_ms),
        "the measured events",
    )?;
    let phase_s = t0.elapsed().as_secs_f64();
    let tw_cpu = cpu_seconds(child.pid()) - tw_cpu0;
    let b_cpu = cpu_seconds(broker.pid()) - b_cpu0;
    child.stop();
    let vis = watcher.finish();

    // Per event: sent, acknowledged by the broker, visible in a committed version.
    let mut times = Vec::with_capacity(live.len());
    for ((m, (o, acked)), sent) in live.iter().zip(&live_offsets).zip(&sent) {
        let visible = vis.visible_at(m.partition, *o).with_context(|| {
            format!("partition {} offset {o} never became visible", m.partition)
        })?;
        times.push((m.partition, *o, *sent, *acked, visible));
    }
    let latency = freshness::percentiles(times.iter().map(|t| t.4.duration_since(t.2)))?;
    let produce_to_ack = freshness::percentiles(times.iter().map(|t| t.3.duration_since(t.2)))?;
    let ack_to_visible =
        freshness::percentiles(times.iter().map(|t| t.4.saturating_duration_since(t.3)))?;
    if args.keep {
        // Raw data for analysis: per event and per version, ms since the first send.
        let ms = |at: Instant| at.saturating_duration_since(t0).as_secs_f64() * 1000.0;
        let mut csv = String::from("partition,offset,sent_ms,acked_ms,visible_ms\n");
        for (p, o, s, a, v) in &times {
            csv.push_str(&format!(
                "{p},{o},{:.3},{:.3},{:.3}\n",
                ms(*s),
                ms(*a),
                ms(*v)
            ));
        }
        std::fs::write(run_dir.join("events.csv"), csv)?;
        let mut csv = String::from("version,seen_ms,epochs\n");
        for (v, at, epochs) in &vis.versions {
            let e: Vec<String> = epochs.iter().map(u64::to_string).collect();
            csv.push_str(&format!("{v},{:.3},{}\n", ms(*at), e.join(" ")));
        }
        std::fs::write(run_dir.join("versions.csv"), csv)?;
    }
    let during: Vec<Instant> = vis
        .versions
        .iter()
        .map(|(_, at, _)| *at)
        .filter(|at| *at >= t0)
        .collect();
    let mean_gap_ms = if during.len() > 1 {
        during[during.len() - 1]
            .duration_since(during[0])
            .as_secs_f64()
            * 1000.0
            / (during.len() - 1) as f64
    } else {
        f64::NAN
    };

    let expected = expected_of(&messages)?;
    let rb = verify::check_table(&table_dir, &expected)
        .with_context(|| format!("checking the table of {}", run_dir.display()))?;
    eprintln!("freshness: table OK ({} rows)", rb.rows);
    if !args.keep {
        std::fs::remove_dir_all(&run_dir)?;
    }
    let target_p99_ms = 2.0 * args.commit_interval_ms as f64;
    Ok(FreshnessResult {
        rate: args.rate,
        duration_s: args.duration_s,
        workers: args.freshness_workers,
        commit_interval_ms: args.commit_interval_ms,
        fetch_wait_ms: args.fetch_wait_ms,
        linger_ms: args.linger_ms,
        watch_ms: args.watch_ms,
        warmup_events: args.warmup_events,
        events: measured,
        achieved_rate: if produced_in > 0.0 {
            (measured.saturating_sub(1)) as f64 / produced_in
        } else {
            f64::NAN
        },
        producer_behind_max_ms: behind.as_secs_f64() * 1000.0,
        target_met: latency.p99_ms <= target_p99_ms,
        latency,
        produce_to_ack,
        ack_to_visible,
        versions: during.len(),
        mean_version_gap_ms: mean_gap_ms,
        tidewater_cpu_per_s: tw_cpu / phase_s,
        broker_cpu_per_s: b_cpu / phase_s,
        table_rows: rb.rows,
        target_p99_ms,
    })
}

/// Runs the workload (see the [module docs](self)).
pub fn run(args: &KafkaArgs) -> anyhow::Result<()> {
    if args.repeat == 0 || args.events == 0 || args.keys == 0 || args.partitions < 1 {
        bail!("--repeat, --events, --keys and --partitions must be at least 1");
    }
    if args.workers.contains(&0) || args.freshness_workers == 0 {
        bail!("worker counts must be at least 1");
    }
    if args.rate == 0
        || args.duration_s == 0
        || args.warmup_events == 0
        || args.commit_interval_ms == 0
    {
        bail!("--rate, --duration-s, --warmup-events and --commit-interval-ms must be at least 1");
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let tansu = args.tansu.clone().unwrap_or_else(broker::default_tansu);
    // Stopped by its pid when dropped: at the end, on an error, on a panic.
    let broker = Broker::start(&tansu)?;
    eprintln!(
        "broker: tansu at {} (pid {:?})",
        broker.brokers(),
        broker.pid()
    );

    let through = if args.no_throughput {
        None
    } else {
        Some(
            throughput(args, &broker, &dir)
                .map_err(|e| e.context(format!("broker log tail:\n{}", tail(&broker.log(), 20))))?,
        )
    };
    let fresh = if args.no_freshness {
        None
    } else {
        Some(
            freshness_run(args, &broker, &dir)
                .map_err(|e| e.context(format!("broker log tail:\n{}", tail(&broker.log(), 20))))?,
        )
    };
    drop(broker);

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    if let Some((rows, info)) = &through {
        println!(
            "kafka throughput: {} events ({} MiB of values, {} keys) pre-filled in {} partitions of a tansu \
             topic (produced in {:.1} s); fetch.wait.max.ms = {}; {} round(s), median shown; {cpus} CPUs",
            thousands(info.events),
            mib(info.value_bytes),
            thousands(args.keys),
            args.partitions,
            info.produce_s,
            args.fetch_wait_ms,
            args.repeat
        );
        println!(
            "final table: {} rows in {} files; every tidewater run checked against the reference model: OK",
            thousands(info.table_rows),
            info.table_files
        );
        println!();
        let mut t = Table::new(&[
            "name",
            "events/s",
            "vs plain loop",
            "CPU-s / 1M ev",
            "broker CPU-s / 1M ev",
            "peak RSS MiB",
        ]);
        for r in rows {
            t.row(vec![
                r.name.clone(),
                thousands(r.events_per_s.round() as u64),
                format!("{:.2}×", r.ratio_vs_plain),
                format!("{:.2}", r.cpu_s_per_m_events),
                format!("{:.2}", r.broker_cpu_s_per_m_events),
                mib(r.peak_rss_bytes),
            ]);
        }
        print!("{}", t.render());
        println!();
    }
    if let Some(f) = &fresh {
        println!(
            "kafka freshness: {} events/s for {} s ({} events; achieved {} events/s, producer at most {:.0} ms \
             behind schedule), tidewater {} worker(s), commit_interval_ms = {}, fetch.wait.max.ms = {}, \
             producer linger.ms = {}, Delta log polled every {} ms; {} versions, one per {:.0} ms; \
             CPU: tidewater {:.2}, broker {:.2} cores; final table {} rows, checked: OK",
            thousands(f.rate),
            f.duration_s,
            thousands(f.events),
            thousands(f.achieved_rate.round() as u64),
            f.producer_behind_max_ms,
            f.workers,
            f.commit_interval_ms,
            f.fetch_wait_ms,
            f.linger_ms,
            f.watch_ms,
            f.versions,
            f.mean_version_gap_ms,
            f.tidewater_cpu_per_s,
            f.broker_cpu_per_s,
            thousands(f.table_rows)
        );
        println!();
        let mut t = Table::new(&["latency, ms", "p50", "p90", "p99", "p99.9", "max", "mean"]);
        for (name, l) in [
            ("produce → visible in Delta", &f.latency),
            ("  of which produce → broker ack", &f.produce_to_ack),
            ("  of which broker ack → visible", &f.ack_to_visible),
        ] {
            t.row(
                std::iter::once(name.to_string())
                    .chain(
                        [l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms]
                            .iter()
                            .map(|x| format!("{x:.0}")),
                    )
                    .collect(),
            );
        }
        print!("{}", t.render());
        println!();
        println!(
            "target p99 ≤ 2 × commit_interval_ms = {:.0} ms at {} events/s: {}",
            f.target_p99_ms,
            thousands(f.rate),
            if f.target_met { "MET" } else { "NOT MET" }
        );
    }
    let summary = serde_json::json!({
        "workload": "kafka",
        "broker": "tansu (sqlite storage)",
        "cpus": cpus,
        "partitions": args.partitions,
        "keys": args.keys,
        "fetch_wait_ms": args.fetch_wait_ms,
        "throughput": through.as_ref().map(|(rows, info)| serde_json::json!({"info": info, "results": rows})),
        "freshness": fresh,
        "freshness_target_met": fresh.as_ref().map(|f| f.target_met),
    });
    println!("{summary}");
    Ok(())
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_file_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            pipeline_toml(&dir.path().join("lh"), "127.0.0.1:9092", "t", 1000, 50),
        )
        .unwrap();
        let cfg = tidewater::PipelineConfig::load(&path).unwrap();
        assert_eq!(cfg.table[0].name, TABLE);
        assert_eq!(cfg.source[0].fetch_wait_ms, Some(50));
    }
}
