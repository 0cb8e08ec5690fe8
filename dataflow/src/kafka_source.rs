//! The timely source of a `kafka` source: every worker reads the partitions assigned to it
//! (the deterministic spread of `assign_partitions` over all workers of all processes), cuts
//! them into epochs and hands the records to its own parse operator.
//!
//! - **Epochs.** Each worker closes its epoch every `commit_interval_ms` (also when it read
//!   nothing, so that an idle worker never holds the others back), every
//!   `commit_every_records` records it read, or at the end of the input with
//!   `--exit-when-idle` (every assigned partition read up to the end offset observed at
//!   start). An epoch is complete when every worker closed it; it covers, per partition, the
//!   offsets `[from, to)` its worker released into it. Each worker sends those ranges to the
//!   committer (on worker 0) as a fragment of the epoch's positions
//!   `{kind: "kafka", partitions: {"topic/partition": {from, to}}, records}`, and the
//!   committer records the union in the Delta commit metadata.
//! - **Source transactions.** Within a partition, the events of the last transaction read
//!   (same `payload.transaction.id`, else `source.txId`) are held back until the first event
//!   of another transaction arrives, the partition is read to its end (`--exit-when-idle`), or
//!   the reader found nothing more to read for `transaction_wait_ms`: so an epoch never ends
//!   inside a transaction whose events reach the broker within that time of each other.
//! - **Restart.** The reader of each partition starts at the `from` of its first replayed
//!   range, else at the `to` of its last recorded range (the Delta log is the truth, not
//!   Kafka's committed offsets), else at the earliest offset. Recorded epochs are replayed
//!   exactly (each partition up to its recorded `to`, with the same epoch numbers), whichever
//!   worker now owns the partition.
//! - **Messages.** A null value (tombstone) is skipped; a value over `max_message_bytes` goes
//!   to `_quarantine` with `topic/partition@offset`; every other value is parsed as one
//!   Debezium envelope.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tidewater_connectors::formats::DebeziumParser;
use tidewater_connectors::kafka::{
    assign_partitions, KafkaPartitions, KafkaReader, KafkaRecord, TopicPartition,
};
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use crate::config::SourceConfig;
use crate::metrics::Metrics;
use crate::source::{Block, BlockData, CutterSettings, KafkaMessage, ReplayRange, SourceReplay};
use crate::TidewaterError;

/// A worker's part of one epoch's positions of a Kafka source (typed, not JSON: it travels
/// between processes, and timely's bincode cannot decode a `serde_json::Value`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PositionFragment {
    /// The source.
    pub source: String,
    /// `topic/partition` → the offsets `(from, to)` released into the epoch.
    pub partitions: BTreeMap<String, (i64, i64)>,
    /// Messages in those ranges.
    pub records: u64,
}

impl PositionFragment {
    /// The positions value as recorded in the commit metadata.
    pub fn to_json(&self) -> Value {
        let parts: serde_json::Map<String, Value> = self
            .partitions
            .iter()
            .map(|(p, (from, to))| (p.clone(), json!({"from": from, "to": to})))
            .collect();
        json!({"kind": "kafka", "partitions": parts, "records": self.records})
    }
}

/// The name of a partition in positions and quarantine rows: `topic/partition`.
pub fn partition_name(tp: &TopicPartition) -> String {
    format!("{}/{}", tp.topic, tp.partition)
}

/// The partitions of a Kafka source (looked up once per process, before the workers start):
/// an unreachable broker or a missing topic is an error naming it, within the source's
/// `connect_timeout_ms`.
pub fn discover(src: &SourceConfig) -> Result<Vec<TopicPartition>, TidewaterError> {
    Ok(KafkaPartitions::discover(&src.kafka())?)
}

/// Up to `n` message values from the start of the partitions of `topics` of the source (for
/// the schema of a table whose records carry no schema block); waits at most
/// `connect_timeout_ms` for them.
pub fn sample_values(
    src: &SourceConfig,
    topics: &[String],
    n: usize,
) -> Result<Vec<Vec<u8>>, TidewaterError> {
    let mut cfg = src.kafka();
    cfg.topics = topics.to_vec();
    let parts = KafkaPartitions::discover(&cfg)?;
    let starts: Vec<(TopicPartition, Option<i64>)> =
        parts.iter().map(|p| (p.clone(), None)).collect();
    let mut reader = KafkaReader::open(&cfg, &starts)?;
    let ends = reader.end_offsets()?;
    let deadline = Instant::now() + cfg.connect_timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        let done = reader
            .partitions()
            .iter()
            .enumerate()
            .all(|(i, tp)| reader.position(i) >= ends.get(tp).copied().unwrap_or(0));
        if done {
            break;
        }
        for r in reader.poll(n - out.len(), Duration::from_millis(100))? {
            if let (Some(v), false) = (r.value, r.oversized) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// A recorded epoch as one worker replays it: the epoch and, per assigned partition in it,
/// (index among the worker's partitions, from, to).
type ReplayOfWorker = (u64, Vec<(usize, i64, i64)>);

/// What a partition's next message is, for the transaction hold-back.
enum Kind {
    /// A null value: skipped, but part of the range.
    Tombstone,
    /// A value (or the size of an oversized one), the message key, and the value's source
    /// transaction if it names one.
    Value(Result<Vec<u8>, usize>, Option<Vec<u8>>, Option<String>),
}

/// One assigned partition's state.
struct Part {
    name: String,
    /// First offset of the current epoch's range.
    epoch_from: i64,
    /// The offset after the last message released into the current epoch.
    released_to: i64,
    /// Messages released into the current epoch, not yet sent to the parser.
    ready: Vec<KafkaMessage>,
    /// The held-back messages of the last transaction read: (offset, kind).
    tail: Vec<(i64, Kind)>,
    /// The transaction of `tail`.
    tail_tx: Option<String>,
    /// When the last message joined `tail`.
    tail_at: Instant,
    /// End offset observed at start (`--exit-when-idle`).
    end: i64,
}

impl Part {
    /// Moves the held-back transaction into the current epoch; returns the messages moved.
    fn release_tail(&mut self) -> u64 {
        let n = self.tail.len() as u64;
        for (offset, kind) in self.tail.drain(..) {
            if let Kind::Value(value, key, _) = kind {
                self.ready.push(KafkaMessage { offset, value, key });
            }
            self.released_to = offset + 1;
        }
        self.tail_tx = None;
        n
    }

    /// Takes one message read live; returns how many messages were released into the epoch.
    fn push(&mut self, offset: i64, kind: Kind) -> u64 {
        let mut released = 0;
        let joins_tail = !self.tail.is_empty()
            && match &kind {
                Kind::Tombstone => true,
                Kind::Value(_, _, tx) => tx.is_some() && *tx == self.tail_tx,
            };
        if joins_tail {
            self.tail.push((offset, kind));
            self.tail_at = Instant::now();
            return 0;
        }
        released += self.release_tail();
        match kind {
            Kind::Value(v, k, Some(tx)) => {
                self.tail_tx = Some(tx.clone());
                self.tail.push((offset, Kind::Value(v, k, Some(tx))));
                self.tail_at = Instant::now();
            }
            Kind::Value(value, key, None) => {
                self.ready.push(KafkaMessage { offset, value, key });
                self.released_to = offset + 1;
                released += 1;
            }
            Kind::Tombstone => {
                self.released_to = offset + 1;
                released += 1;
            }
        }
        released
    }
}

/// One block per partition with released messages (taking them), numbered from `seq` in
/// steps of `peers` so that every block goes to this worker's own parse operator.
fn ready_blocks<'a>(
    parts: &'a mut [Part],
    seq: &'a mut u64,
    peers: usize,
) -> impl Iterator<Item = Block> + 'a {
    parts
        .iter_mut()
        .filter(|p| !p.ready.is_empty())
        .map(move |p| {
            let block = Block {
                seq: *seq,
                data: BlockData::Kafka {
                    partition: p.name.clone(),
                    records: std::mem::take(&mut p.ready),
                },
            };
            *seq += peers as u64;
            block
        })
}

fn kind_of(r: KafkaRecord) -> Kind {
    match (r.value, r.oversized) {
        (_, true) => Kind::Value(Err(r.value_len), r.key, None),
        (None, false) => Kind::Tombstone,
        (Some(v), false) => {
            let tx = DebeziumParser::transaction_id(&v);
            Kind::Value(Ok(v), r.key, tx)
        }
    }
}

/// Builds the source of a Kafka source on every worker: its blocks (routed to the worker's own
/// parse operator) and its position fragments (for the committer).
#[allow(clippy::too_many_arguments)]
pub fn kafka_source<'scope>(
    scope: Scope<'scope, u64>,
    src: &SourceConfig,
    partitions: &[TopicPartition],
    settings: CutterSettings,
    committed: ProbeHandle<u64>,
    metrics: Arc<Metrics>,
    replay: SourceReplay,
) -> (
    StreamVec<'scope, u64, Block>,
    StreamVec<'scope, u64, PositionFragment>,
) {
    let (index, peers) = (scope.index(), scope.peers());
    let mine = assign_partitions(partitions, peers, index);
    let cfg = src.kafka();
    let tx_wait = Duration::from_millis(src.transaction_wait_ms.unwrap_or(2000));
    let poll_wait = Duration::from_millis(cfg.fetch_wait_ms.clamp(1, 50));
    let names: Vec<String> = mine.iter().map(partition_name).collect();
    let starts = replay.kafka_starts();
    // The recorded epochs, restricted to this worker's partitions (epochs without any of
    // them are passed over).
    let next_epoch = replay.next_epoch;
    let mut replay: VecDeque<ReplayOfWorker> = replay
        .epochs
        .iter()
        .filter_map(|e| {
            let ranges: Vec<(usize, i64, i64)> = e
                .ranges
                .iter()
                .filter_map(|r| match r {
                    ReplayRange::Kafka {
                        partition,
                        from,
                        to,
                    } => names
                        .iter()
                        .position(|n| n == partition)
                        .map(|i| (i, *from, *to)),
                    _ => None,
                })
                .collect();
            (!ranges.is_empty()).then_some((e.epoch, ranges))
        })
        .collect();
    let source_name = settings.name.clone();
    let out: StreamVec<'scope, u64, Result<Block, PositionFragment>> = source(
        scope,
        &format!("Kafka({})", settings.name),
        move |initial, info| {
            let activator = scope.activator_for(info.address);
            let mut cap: Option<Capability<u64>> = None;
            let mut reader: Option<KafkaReader> = None;
            let mut parts: Vec<Part> = Vec::new();
            if !mine.is_empty() {
                let opened = KafkaReader::open(
                    &cfg,
                    &mine
                        .iter()
                        .map(|tp| (tp.clone(), starts.get(&partition_name(tp)).copied()))
                        .collect::<Vec<_>>(),
                )
                .and_then(|r| {
                    let ends = if settings.exit_when_idle {
                        r.end_offsets()?
                    } else {
                        BTreeMap::new()
                    };
                    Ok((r, ends))
                });
                match opened {
                    Ok((r, ends)) => {
                        parts = mine
                            .iter()
                            .enumerate()
                            .map(|(i, tp)| Part {
                                name: names[i].clone(),
                                epoch_from: r.position(i),
                                released_to: r.position(i),
                                ready: Vec::new(),
                                tail: Vec::new(),
                                tail_tx: None,
                                tail_at: Instant::now(),
                                end: ends.get(tp).copied().unwrap_or(i64::MAX),
                            })
                            .collect();
                        reader = Some(r);
                        cap = Some(initial);
                    }
                    Err(e) => metrics.fail(format!("source `{}`: {e}", settings.name)),
                }
            }
            // Block numbers that route to this worker's own parse operator.
            let mut seq = index as u64;
            let mut opened = Instant::now();
            let mut epoch_records = 0u64;
            let mut limits_set = false;
            let mut idle_since: Option<Instant> = None;
            let mut pending = 0u64;

            move |output| {
                let (Some(c), Some(reader)) = (cap.as_mut(), reader.as_mut()) else {
                    cap = None;
                    return;
                };
                let target = replay.front().map_or(next_epoch, |r| r.0);
                if *c.time() < target {
                    c.downgrade(&target);
                    opened = Instant::now();
                }
                let epoch = *c.time();
                if epoch >= 2 && committed.less_equal(&(epoch - 2)) {
                    activator.activate_after(Duration::from_millis(5));
                    return;
                }
                // Replay of a recorded epoch: each partition exactly up to its recorded `to`.
                if let Some((e, ranges)) = replay.front() {
                    let e = *e;
                    if !limits_set {
                        // Partitions without a range in this epoch read nothing in it.
                        for i in 0..parts.len() {
                            let at = reader.position(i);
                            reader.set_limit(i, Some(at));
                        }
                        for &(i, from, to) in ranges {
                            if reader.position(i) != from {
                                metrics.fail(format!(
                                "source `{}`: replaying epoch {e}: partition {} is at offset {}, the recorded range starts at {from}",
                                settings.name,
                                parts[i].name,
                                reader.position(i)
                            ));
                                cap = None;
                                return;
                            }
                            reader.set_limit(i, Some(to));
                        }
                        limits_set = true;
                    }
                    match reader.poll(4096, Duration::ZERO) {
                        Ok(records) => {
                            for r in records {
                                let i = r.part;
                                let offset = r.offset;
                                if let Kind::Value(value, key, _) = kind_of(r) {
                                    parts[i].ready.push(KafkaMessage { offset, value, key });
                                }
                                pending += 1;
                            }
                        }
                        Err(e) => {
                            metrics.fail(format!("source `{}`: {e}", settings.name));
                            cap = None;
                            return;
                        }
                    }
                    let done = ranges.iter().all(|&(i, _, to)| reader.position(i) >= to);
                    let mut session = output.session(&*c);
                    session.give_iterator(ready_blocks(&mut parts, &mut seq, peers).map(Ok));
                    if done {
                        let mut fragment = BTreeMap::new();
                        for &(i, from, to) in ranges {
                            fragment.insert(parts[i].name.clone(), (from, to));
                            parts[i].epoch_from = to;
                            parts[i].released_to = to;
                        }
                        session.give(Err(PositionFragment {
                            source: source_name.clone(),
                            partitions: fragment,
                            records: pending,
                        }));
                        drop(session);
                        metrics.records_cut.fetch_add(pending, Ordering::Relaxed);
                        pending = 0;
                        limits_set = false;
                        replay.pop_front();
                        if replay.is_empty() {
                            for i in 0..parts.len() {
                                reader.set_limit(i, None);
                            }
                        }
                        activator.activate();
                    } else {
                        activator.activate_after(poll_wait);
                    }
                    return;
                }

                // Live: read, hold back open transactions, release.
                let want = settings.every_records.map_or(4096, |n| {
                    n.saturating_sub(epoch_records).clamp(1, 4096) as usize
                });
                let records = match reader.poll(want, Duration::ZERO) {
                    Ok(r) => r,
                    Err(e) => {
                        metrics.fail(format!("source `{}`: {e}", settings.name));
                        cap = None;
                        return;
                    }
                };
                let got = records.len();
                for r in records {
                    let i = r.part;
                    let offset = r.offset;
                    epoch_records += parts[i].push(offset, kind_of(r));
                }
                let finished = settings.exit_when_idle
                    && parts
                        .iter()
                        .enumerate()
                        .all(|(i, p)| reader.position(i) >= p.end);
                // Held transactions are released at the end of the input, or once the reader has
                // had nothing more to read for `transaction_wait_ms` (not merely because reading
                // paused: the rest of a transaction may be waiting in the broker).
                if got > 0 {
                    idle_since = None;
                } else if idle_since.is_none() {
                    idle_since = Some(Instant::now());
                }
                let idle = idle_since.is_some_and(|t| t.elapsed() >= tx_wait);
                for p in parts.iter_mut() {
                    if !p.tail.is_empty() && (finished || (idle && p.tail_at.elapsed() >= tx_wait))
                    {
                        epoch_records += p.release_tail();
                    }
                }
                let mut session = output.session(&*c);
                session.give_iterator(ready_blocks(&mut parts, &mut seq, peers).map(Ok));
                let close = finished
                    || opened.elapsed() >= settings.interval
                    || settings.every_records.is_some_and(|n| epoch_records >= n);
                if close {
                    let mut fragment = BTreeMap::new();
                    for p in parts.iter_mut() {
                        if p.released_to > p.epoch_from {
                            fragment.insert(p.name.clone(), (p.epoch_from, p.released_to));
                            p.epoch_from = p.released_to;
                        }
                    }
                    if !fragment.is_empty() {
                        session.give(Err(PositionFragment {
                            source: source_name.clone(),
                            partitions: fragment,
                            records: epoch_records,
                        }));
                        metrics
                            .records_cut
                            .fetch_add(epoch_records, Ordering::Relaxed);
                    }
                    drop(session);
                    epoch_records = 0;
                    opened = Instant::now();
                    if finished {
                        cap = None;
                        return;
                    }
                    c.downgrade(&(epoch + 1));
                } else {
                    drop(session);
                }
                if got > 0 {
                    activator.activate();
                } else {
                    activator.activate_after(poll_wait);
                }
            }
        },
    );
    let (blocks, fragments) = out.ok_err(|x: Result<Block, PositionFragment>| x);
    (blocks, fragments)
}
