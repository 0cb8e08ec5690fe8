//! The baseline of the Kafka throughput measurement: a plain rdkafka consume loop. One
//! `BaseConsumer` is assigned every partition of the topic from the beginning and polls until
//! it has read `--events` messages (counting them and their value bytes; no parsing), with
//! the same `fetch.wait.max.ms` as tidewater's source.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::common::{cpu_seconds, peak_rss_bytes, print_report};

/// Flags of `run-one kafka-plain`.
#[derive(Args, Clone, Debug)]
pub struct PlainArgs {
    /// Bootstrap brokers.
    #[arg(long)]
    pub brokers: String,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// Partitions of the topic (all are read).
    #[arg(long)]
    pub partitions: i32,
    /// Messages to read before stopping.
    #[arg(long)]
    pub events: u64,
    /// `fetch.wait.max.ms` of the consumer.
    #[arg(long, default_value_t = 50)]
    pub fetch_wait_ms: u64,
}

/// What the plain loop reports (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
pub struct PlainReport {
    /// Wall time from creating the consumer to the last message.
    pub elapsed_s: f64,
    /// Messages read.
    pub events: u64,
    /// Value bytes read.
    pub bytes: u64,
    /// CPU seconds of the whole process.
    pub cpu_s: f64,
    /// Peak RSS of the process.
    pub peak_rss_bytes: u64,
}

/// How long the loop waits without receiving anything before it fails.
const STALL: Duration = Duration::from_secs(60);

/// `run-one kafka-plain`.
pub fn run_one(args: &PlainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", "tidewater-bench-plain")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", args.fetch_wait_ms.to_string())
        .create()
        .context("cannot create the consumer")?;
    let mut tpl = TopicPartitionList::with_capacity(args.partitions as usize);
    for p in 0..args.partitions {
        tpl.add_partition_offset(&args.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    while events < args.events {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                events += 1;
                bytes += m.payload().map_or(0, |p| p.len() as u64);
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("kafka-plain: consumer error (retried): {e}"),
            None => {
                if last_progress.elapsed() > STALL {
                    bail!(
                        "read {events} of {} messages, then nothing for {} s",
                        args.events,
                        STALL.as_secs()
                    );
                }
            }
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    print_report(&PlainReport {
        elapsed_s,
        events,
        bytes,
        cpu_s: cpu_seconds(None),
        peak_rss_bytes: peak_rss_bytes(),
    })
}
