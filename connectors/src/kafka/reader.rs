//! [`KafkaReader`]: reads a fixed set of partitions from given offsets (see the module docs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaConfig, LogContext, TopicPartition};
use crate::ConnectorError;

/// The `group.id` of the reader's consumer. librdkafka requires one for `assign`; the reader
/// never joins the group, never commits to it and never reads its offsets.
const READER_GROUP: &str = "tidewater-reader";

/// Backoff after a broker error while reading: starts here, doubles, up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// While errors repeat, at most one warning per this interval (with the count).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One record read from Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The partition: an index into [`KafkaReader::partitions`].
    pub part: usize,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The message key (`None` for a null key).
    pub key: Option<Vec<u8>>,
    /// The message value: `None` for a null value (a tombstone, to be skipped), and for an
    /// oversized record (see `oversized`).
    pub value: Option<Vec<u8>>,
    /// The size of the value in bytes as received (0 for a null value), also when it was
    /// dropped for being oversized.
    pub value_len: usize,
    /// The value was larger than `max_message_bytes` and is not returned: the caller
    /// quarantines the record (topic, partition, offset, size).
    pub oversized: bool,
    /// The record's timestamp (create or log-append time) in ms since the epoch, if any.
    pub timestamp_ms: Option<i64>,
}

/// Counters of a reader since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Records returned.
    pub records: u64,
    /// Offsets skipped inside partitions (compaction, transaction markers, aborted records):
    /// the sum of the gaps between consecutive returned records and positions.
    pub gaps: u64,
    /// Records received again below the position (re-deliveries), dropped.
    pub redelivered: u64,
    /// Records returned flagged `oversized`.
    pub oversized: u64,
    /// Broker or client errors that were retried.
    pub transient_errors: u64,
}

/// What one poll of the consumer gave.
enum Polled {
    Nothing,
    /// A record (`None`: of a partition not read).
    Record(Option<KafkaRecord>),
    Error(KafkaError),
}

/// An ongoing episode of broker errors (for rate-limited logging).
struct Trouble {
    since: Instant,
    last_warn: Instant,
    count: u64,
    unlogged: u64,
}

/// Reads a fixed set of partitions, each from a given offset, with `assign` (no consumer
/// group). Returns each partition's records in offset order with no repeat; see the module
/// docs for gaps, end offsets and broker trouble. Used by one thread.
pub struct KafkaReader {
    cfg: KafkaConfig,
    consumer: BaseConsumer<LogContext>,
    parts: Vec<TopicPartition>,
    /// topic → partition → index in `parts`.
    index: HashMap<String, HashMap<i32, usize>>,
    /// Per partition: the next offset to return.
    next: Vec<i64>,
    /// Per partition: records at or past this offset are held back.
    limit: Vec<Option<i64>>,
    /// Per partition: records received at or past the limit, in order.
    held: Vec<VecDeque<KafkaRecord>>,
    /// Per partition: fetching is paused (records are held).
    paused: Vec<bool>,
    stats: ReaderStats,
    backoff: Duration,
    trouble: Option<Trouble>,
    /// A client for commits to a consumer group (lag tools), created on first use.
    committer: Option<(String, BaseConsumer<LogContext>)>,
}

impl KafkaReader {
    /// Opens a reader of `starts`: each partition with the next offset to read, or `None` for
    /// the partition's earliest offset. Every start is checked against the partition's
    /// current offsets (a missing topic or partition, or an offset outside `[earliest, end]`,
    /// is [`ConnectorError::KafkaTopic`]; an unreachable broker [`ConnectorError::Kafka`],
    /// within about `connect_timeout` per partition).
    pub fn open(
        cfg: &KafkaConfig,
        starts: &[(TopicPartition, Option<i64>)],
    ) -> Result<Self, ConnectorError> {
        cfg.validate()?;
        let mut c = cfg.client_config();
        c.set("group.id", READER_GROUP)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", cfg.fetch_wait_ms.to_string());
        let consumer: BaseConsumer<LogContext> = c
            .create_with_context(LogContext::new(&cfg.brokers))
            .map_err(|e| cfg.broker_error(format!("cannot create a Kafka consumer: {e}")))?;
        let mut index: HashMap<String, HashMap<i32, usize>> = HashMap::new();
        let mut parts = Vec::with_capacity(starts.len());
        let mut next = Vec::with_capacity(starts.len());
        for (i, (tp, start)) in starts.iter().enumerate() {
            let slot = index.entry(tp.topic.clone()).or_default();
            if slot.insert(tp.partition, i).is_some() {
                return Err(cfg.topic_error(
                    &tp.topic,
                    format!("partition {} is given twice", tp.partition),
                ));
            }
            let (low, high) = watermarks(cfg, &consumer, tp)?;
            let from = match *start {
                None => low,
                Some(o) if o < low || o > high => {
                    return Err(cfg.topic_error(
                        &tp.topic,
                        format!(
                            "partition {}: the offset to resume from, {o}, is outside the \
                             partition's offsets [{low}, {high}] (records deleted by retention, \
                             or the topic was recreated)",
                            tp.partition
                        ),
                    ))
                }
                Some(o) => o,
            };
            parts.push(tp.clone());
            next.push(from);
        }
        let n = parts.len();
        let mut reader = KafkaReader {
            cfg: cfg.clone(),
            consumer,
            parts,
            index,
            next,
            limit: vec![None; n],
            held: vec![VecDeque::new(); n],
            paused: vec![false; n],
            stats: ReaderStats::default(),
            backoff: MIN_BACKOFF,
            trouble: None,
            committer: None,
        };
        reader.assign()?;
        tracing::debug!(brokers = %cfg.brokers, partitions = n, "Kafka reader opened");
        Ok(reader)
    }

    /// (Re)assigns every partition at its position; drops held records (they are fetched
    /// again).
    fn assign(&mut self) -> Result<(), ConnectorError> {
        // librdkafka keeps a partition paused by the application across a new assignment.
        let mut paused = TopicPartitionList::new();
        for (tp, _) in self.parts.iter().zip(&self.paused).filter(|(_, p)| **p) {
            paused.add_partition(&tp.topic, tp.partition);
        }
        if paused.count() > 0 {
            self.consumer
                .resume(&paused)
                .map_err(|e| self.cfg.broker_error(format!("resume partitions: {e}")))?;
        }
        let mut tpl = TopicPartitionList::with_capacity(self.parts.len());
        for (tp, &next) in self.parts.iter().zip(&self.next) {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(next))
                .map_err(|e| self.cfg.topic_error(&tp.topic, format!("assign: {e}")))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| self.cfg.broker_error(format!("assign partitions: {e}")))?;
        for h in &mut self.held {
            h.clear();
        }
        self.paused.iter_mut().for_each(|p| *p = false);
        Ok(())
    }

    /// The partitions read, in the order given to [`KafkaReader::open`]
    /// ([`KafkaRecord::part`] indexes this).
    pub fn partitions(&self) -> &[TopicPartition] {
        &self.parts
    }

    /// The index of a partition in [`KafkaReader::partitions`].
    pub fn index_of(&self, tp: &TopicPartition) -> Option<usize> {
        self.index.get(&tp.topic)?.get(&tp.partition).copied()
    }

    /// The next offset to read in partition `part`: one past the last record returned, or
    /// past offsets known to hold no record (see the module docs); the `to` of a recorded
    /// range.
    pub fn position(&self, part: usize) -> i64 {
        self.next[part]
    }

    /// Every partition's position.
    pub fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.parts
            .iter()
            .cloned()
            .zip(self.next.iter().copied())
            .collect()
    }

    /// Counters since the reader was opened.
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// Reads partition `part` from `offset` on: the next records returned for it start there
    /// (used to replay a recorded range `[from, to)`: seek to `from`, limit to `to`). Records
    /// of the other partitions are neither lost nor repeated. The offset must lie within the
    /// partition's current offsets.
    pub fn seek(&mut self, part: usize, offset: i64) -> Result<(), ConnectorError> {
        let tp = &self.parts[part];
        let (low, high) = watermarks(&self.cfg, &self.consumer, tp)?;
        if offset < low || offset > high {
            return Err(self.cfg.topic_error(
                &tp.topic,
                format!(
                    "partition {}: cannot seek to {offset}, outside the partition's offsets \
                     [{low}, {high}]",
                    tp.partition
                ),
            ));
        }
        self.next[part] = offset;
        self.assign()
    }

    /// Returns no record of partition `part` at or past `limit` (exclusive end of a range)
    /// until the limit is raised or removed (`None`); such records are kept (fetching of the
    /// partition pauses) and returned once allowed. The partition's position then stops at
    /// the limit (or at the first record past it).
    pub fn set_limit(&mut self, part: usize, limit: Option<i64>) {
        self.limit[part] = limit;
    }

    /// Whether partition `part` may return a record at `offset`.
    fn allowed(&self, part: usize, offset: i64) -> bool {
        self.limit[part].is_none_or(|l| offset < l)
    }

    /// The high watermark of every partition (the offset the next produced record will get):
    /// a partition is read to its end `e` once [`KafkaReader::position`] `>= e`. Each
    /// look-up waits at most `connect_timeout`.
    pub fn end_offsets(&self) -> Result<BTreeMap<TopicPartition, i64>, ConnectorError> {
        let mut out = BTreeMap::new();
        for tp in &self.parts {
            let (_, high) = watermarks(&self.cfg, &self.consumer, tp)?;
            out.insert(tp.clone(), high);
        }
        Ok(out)
    }

    /// Returns up to `max_records` records, waiting at most `timeout` for the first one and
    /// returning as soon as no more is immediately available. An empty result means none
    /// arrived within `timeout` (or the broker is in trouble: that is retried and logged).
    /// Errors only for what retrying cannot fix (a fatal client error, a position out of
    /// range).
    pub fn poll(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<KafkaRecord>, ConnectorError> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        self.release_held(&mut out, max_records)?;
        self.serve_committer();
        while out.len() < max_records {
            let wait = if out.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let polled = match self.consumer.poll(wait) {
                None => Polled::Nothing,
                Some(Ok(msg)) => Polled::Record(self.convert(&msg)),
                Some(Err(e)) => Polled::Error(e),
            };
            match polled {
                Polled::Nothing => {
                    self.sync_positions();
                    break;
                }
                Polled::Record(None) => {}
                Polled::Record(Some(rec)) => self.accept(rec, &mut out)?,
                Polled::Error(e) => {
                    self.on_error(e, deadline)?;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Turns a message into a record (without bookkeeping); `None` for a partition not read.
    fn convert(&self, msg: &rdkafka::message::BorrowedMessage<'_>) -> Option<KafkaRecord> {
        let part = self.index.get(msg.topic())?.get(&msg.partition()).copied();
        let Some(part) = part else {
            tracing::warn!(
                brokers = %self.cfg.brokers,
                topic = msg.topic(),
                partition = msg.partition(),
                "record of a partition this reader does not read, ignored"
            );
            return None;
        };
        let payload = msg.payload();
        let value_len = payload.map_or(0, <[u8]>::len);
        let oversized = value_len > self.cfg.max_message_bytes;
        Some(KafkaRecord {
            part,
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            value: if oversized {
                None
            } else {
                payload.map(<[u8]>::to_vec)
            },
            value_len,
            oversized,
            timestamp_ms: msg.timestamp().to_millis(),
        })
    }

    /// Checks a received record against its partition's position and limit, and returns or
    /// holds it.
    fn accept(
        &mut self,
        rec: KafkaRecord,
        out: &mut Vec<KafkaRecord>,
    ) -> Result<(), ConnectorError> {
        if let Some(t) = self.trouble.take() {
            tracing::info!(
                brokers = %self.cfg.brokers,
                errors = t.count,
                "Kafka reading resumed after {:.1}s of broker trouble",
                t.since.elapsed().as_secs_f64()
            );
        }
        self.backoff = MIN_BACKOFF;
        let part = rec.part;
        if rec.offset < self.next[part] {
            self.redelivered(&rec);
            return Ok(());
        }
        if !self.held[part].is_empty() || !self.allowed(part, rec.offset) {
            if self.held[part]
                .back()
                .is_some_and(|h| h.offset >= rec.offset)
            {
                self.redelivered(&rec);
                return Ok(());
            }
            self.held[part].push_back(rec);
            if !self.paused[part] {
                let tpl = self.tpl_of(part)?;
                self.consumer.pause(&tpl).map_err(|e| {
                    self.cfg
                        .topic_error(&self.parts[part].topic, format!("pause: {e}"))
                })?;
                self.paused[part] = true;
            }
            return Ok(());
        }
        self.deliver(rec, out);
        Ok(())
    }

    fn redelivered(&mut self, rec: &KafkaRecord) {
        self.stats.redelivered += 1;
        tracing::debug!(
            partition = %self.parts[rec.part],
            offset = rec.offset,
            position = self.next[rec.part],
            "record below the position received again, dropped"
        );
    }

    /// Returns a record that passed the checks and moves the position past it.
    fn deliver(&mut self, rec: KafkaRecord, out: &mut Vec<KafkaRecord>) {
        let part = rec.part;
        let skipped = rec.offset - self.next[part];
        if skipped > 0 {
            self.stats.gaps += skipped as u64;
            tracing::debug!(
                partition = %self.parts[part],
                from = self.next[part],
                to = rec.offset,
                "offsets without records skipped (compaction or transaction markers)"
            );
        }
        self.next[part] = rec.offset + 1;
        self.stats.records += 1;
        if rec.oversized {
            self.stats.oversized += 1;
        }
        out.push(rec);
    }

    /// Returns the held records that their limit now allows; resumes fetching of partitions
    /// whose held records are all returned.
    fn release_held(
        &mut self,
        out: &mut Vec<KafkaRecord>,
        max_records: usize,
    ) -> Result<(), ConnectorError> {
        for part in 0..self.parts.len() {
            while out.len() < max_records {
                let Some(front) = self.held[part].front() else {
                    break;
                };
                if !self.allowed(part, front.offset) {
                    break;
                }
                let rec = self.held[part].pop_front().expect("front");
                if rec.offset < self.next[part] {
                    self.redelivered(&rec);
                } else {
                    self.deliver(rec, out);
                }
            }
            if self.paused[part] && self.held[part].is_empty() {
                let tpl = self.tpl_of(part)?;
                self.consumer.resume(&tpl).map_err(|e| {
                    self.cfg
                        .topic_error(&self.parts[part].topic, format!("resume: {e}"))
                })?;
                self.paused[part] = false;
            }
        }
        Ok(())
    }

    fn tpl_of(&self, part: usize) -> Result<TopicPartitionList, ConnectorError> {
        let tp = &self.parts[part];
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition(&tp.topic, tp.partition);
        Ok(tpl)
    }

    /// When idle: librdkafka's own position of a partition can be past the reader's when the
    /// partition ends with offsets that hold no record for the application (transaction
    /// markers); take it, so that an end offset can be reached.
    fn sync_positions(&mut self) {
        let Ok(tpl) = self.consumer.position() else {
            return;
        };
        for e in tpl.elements() {
            let Offset::Offset(pos) = e.offset() else {
                continue;
            };
            let Some(part) = self
                .index
                .get(e.topic())
                .and_then(|m| m.get(&e.partition()))
                .copied()
            else {
                continue;
            };
            let pos = self.limit[part].map_or(pos, |l| pos.min(l));
            if self.held[part].is_empty() && !self.paused[part] && pos > self.next[part] {
                self.stats.gaps += (pos - self.next[part]) as u64;
                self.next[part] = pos;
            }
        }
    }

    /// A consumer error: fatal ones are returned, the others logged (rate-limited) and
    /// followed by a backoff within the poll's deadline.
    fn on_error(&mut self, e: KafkaError, deadline: Instant) -> Result<(), ConnectorError> {
        match &e {
            KafkaError::PartitionEOF(_) => return Ok(()),
            KafkaError::MessageConsumptionFatal(code) => {
                return Err(self
                    .cfg
                    .broker_error(format!("fatal Kafka client error: {code}")))
            }
            KafkaError::MessageConsumption(RDKafkaErrorCode::MessageSizeTooLarge) => {
                return Err(self.cfg.broker_error(format!(
                    "a record is larger than the client can fetch (raise \
                     `properties.receive.message.max.bytes`, default 100000000): {e}"
                )))
            }
            KafkaError::MessageConsumption(
                RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
            ) => {
                let parts: Vec<String> = self
                    .parts
                    .iter()
                    .zip(&self.next)
                    .map(|(tp, n)| format!("{tp}@{n}"))
                    .collect();
                return Err(self.cfg.broker_error(format!(
                    "a partition's position is out of range (records deleted by retention, or \
                     a topic recreated); positions: {}: {e}",
                    parts.join(", ")
                )));
            }
            _ => {}
        }
        self.stats.transient_errors += 1;
        let now = Instant::now();
        let brokers = self.cfg.brokers.as_str();
        match &mut self.trouble {
            None => {
                tracing::warn!(brokers, error = %e, "Kafka broker trouble; retrying");
                self.trouble = Some(Trouble {
                    since: now,
                    last_warn: now,
                    count: 1,
                    unlogged: 0,
                });
            }
            Some(t) => {
                t.count += 1;
                t.unlogged += 1;
                if now.duration_since(t.last_warn) >= WARN_EVERY {
                    tracing::warn!(
                        brokers,
                        error = %e,
                        "Kafka broker trouble for {:.0}s ({} more errors); still retrying",
                        now.duration_since(t.since).as_secs_f64(),
                        t.unlogged
                    );
                    t.last_warn = now;
                    t.unlogged = 0;
                }
            }
        }
        let sleep = self.backoff.min(deadline.saturating_duration_since(now));
        if !sleep.is_zero() {
            std::thread::sleep(sleep);
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(())
    }

    /// Reports positions to the consumer group `group_id` so that ordinary Kafka lag tools
    /// show this source's progress (call it after the Delta commit that recorded them). Best
    /// effort and asynchronous: the outcome is logged (warn on failure); an error is returned
    /// only when the commit could not even be queued. The reader never reads these offsets.
    pub fn commit_offsets_to_group(
        &mut self,
        group_id: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ConnectorError> {
        if offsets.is_empty() {
            return Ok(());
        }
        if self.committer.as_ref().is_none_or(|(g, _)| g != group_id) {
            let mut c = self.cfg.client_config();
            // Its requests give up after 10 s, so that closing the reader while the broker
            // is away waits at most that long for an outstanding commit.
            c.set("group.id", group_id)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("socket.timeout.ms", "10000");
            let mut ctx = LogContext::new(&self.cfg.brokers);
            ctx.group = Some(group_id.to_string());
            let committer: BaseConsumer<LogContext> = c.create_with_context(ctx).map_err(|e| {
                self.cfg
                    .broker_error(format!("cannot create a client for group {group_id}: {e}"))
            })?;
            self.committer = Some((group_id.to_string(), committer));
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (tp, &o) in offsets {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(o))
                .map_err(|e| self.cfg.topic_error(&tp.topic, format!("commit: {e}")))?;
        }
        let (_, committer) = self.committer.as_ref().expect("created above");
        if let Err(e) = committer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(
                brokers = %self.cfg.brokers,
                group = group_id,
                "could not commit offsets to the consumer group (lag tools only): {e}"
            );
            return Err(self
                .cfg
                .broker_error(format!("commit offsets to group {group_id}: {e}")));
        }
        self.serve_committer();
        Ok(())
    }

    /// Serves the committer's callbacks (commit results are logged there).
    fn serve_committer(&self) {
        if let Some((_, c)) = &self.committer {
            while let Some(r) = c.poll(Duration::ZERO) {
                if let Err(e) = r {
                    tracing::debug!(brokers = %self.cfg.brokers, "consumer group client: {e}");
                }
            }
        }
    }
}

/// The (earliest, end) offsets of a partition; errors name the topic when the partition does
/// not exist, the brokers otherwise.
fn watermarks(
    cfg: &KafkaConfig,
    consumer: &BaseConsumer<LogContext>,
    tp: &TopicPartition,
) -> Result<(i64, i64), ConnectorError> {
    consumer
        .fetch_watermarks(&tp.topic, tp.partition, cfg.connect_timeout)
        .map_err(|e| match e {
            KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::UnknownTopic,
            ) => cfg.topic_error(
                &tp.topic,
                format!("partition {} does not exist: {e}", tp.partition),
            ),
            e => cfg.broker_error(format!(
                "no offsets of {tp} within {:?} (are the brokers reachable?): {e}",
                cfg.connect_timeout
            )),
        })
}
