//! The Kafka connector: partition discovery, the deterministic spread of partitions over
//! workers, and [`KafkaReader`], a reader of a fixed set of partitions from given offsets.
//! It knows nothing of timely or of pipelines; `tidewater` (the `dataflow` crate) decides
//! epochs and records positions.
//!
//! # Assignment
//!
//! Partitions are assigned by tidewater, never by a Kafka consumer group: the reader uses
//! librdkafka's `assign` (no `subscribe`, no group membership, no rebalances, no auto-commit,
//! no offset store). [`KafkaPartitions::discover`] lists the partitions of the configured
//! topics in `(topic, partition)` order, and [`assign_partitions`] spreads that sorted list
//! round-robin over the workers of all processes: worker `index` of `peers` reads the
//! partitions at positions `index, index + peers, index + 2·peers, …`. Every process computes
//! the same spread from the same metadata, so each partition is read by exactly one worker.
//! Partitions added to a topic while running are not picked up (they are on the next start).
//!
//! # Offsets
//!
//! Positions are Kafka offsets: for each partition, the *next offset to read*. The Delta log
//! is the truth: an epoch records, per partition, the range `[from, to)` of offsets it read,
//! and a restart opens the reader at the `to` of the last committed epoch
//! ([`KafkaReader::open`] with `Some(to)`) — never at Kafka's committed offsets, which the
//! reader neither reads nor needs. [`KafkaReader::commit_offsets_to_group`] can report
//! positions to a consumer group after a Delta commit, only so that ordinary Kafka lag tools
//! work; it is best effort and never read back.
//!
//! The reader returns each partition's records in offset order, with no repeat and no gap it
//! could have avoided: it keeps its own next offset per partition, drops a record below it
//! (a re-delivery) and counts it. In a plain (non-compacted, non-transactional) topic the
//! offsets of a partition are contiguous, and the reader's records are too. Offsets may
//! legitimately skip in a compacted topic (removed records) and in a topic written with
//! transactions (commit/abort markers, aborted records; the reader reads committed data only,
//! librdkafka's default `isolation.level = read_committed`). The reader never invents the
//! missing records: it reports the next offset to read ([`KafkaReader::position`]), which moves
//! past skipped offsets, so a recorded range `[from, to)` still replays exactly the same
//! records. Skipped offsets are counted in [`ReaderStats::gaps`].
//!
//! A start offset outside a partition's current `[earliest, end]` is an error at
//! [`KafkaReader::open`] (retention deleted records the Delta tables never saw, or the topic was
//! recreated): silently resetting would lose or repeat data. For the same reason the reader
//! runs with `auto.offset.reset = error`.
//!
//! # End of a partition (for `--exit-when-idle` and backfills)
//!
//! [`KafkaReader::end_offsets`] returns the high watermark of each partition (the offset the
//! next produced record will get). A partition is consumed up to an end `e` when
//! [`KafkaReader::position`] `>= e`. The reader emits no end-of-partition event.
//!
//! # Latency
//!
//! A fetch returns as soon as data is there, or after `fetch_wait_ms` (default 50 ms) when
//! there is none; [`KafkaReader::poll`] returns as soon as it has some records and nothing more
//! is immediately available, or when its timeout passes.
//!
//! # Broker trouble
//!
//! - At start: [`KafkaPartitions::discover`], [`KafkaReader::open`] and
//!   [`KafkaReader::end_offsets`] wait at most `connect_timeout` per request; an unreachable
//!   broker is [`ConnectorError::Kafka`] naming the brokers, a missing topic or partition is
//!   [`ConnectorError::KafkaTopic`] naming it.
//! - While reading: librdkafka reconnects by itself (backoff 100 ms doubling to 5 s) and
//!   resumes each partition's fetch at its position; [`KafkaReader::poll`] logs the errors it
//!   sees (`tracing` warn with the brokers and the error, repeats summarised), backs off
//!   (100 ms doubling to 2 s, within the poll's timeout) and keeps going, returning fewer or no
//!   records meanwhile. Because the reader checks every offset against its own position, a
//!   reconnect cannot turn into lost or repeated records. Only fatal client errors, an offset
//!   that became out of range, and a record larger than librdkafka can fetch at all
//!   (`receive.message.max.bytes`, default 100 MB) are returned as errors. A topic deleted
//!   while being read is not told apart from a broker outage: it shows as repeated warnings.
//!
//! # Messages
//!
//! A record's key and value are returned as bytes; a null value (a tombstone) is `value:
//! None` and the caller skips it. A value over `max_message_bytes` is returned with
//! `oversized: true` and no value, so that the caller can quarantine it with its topic,
//! partition and offset: a record is never dropped silently.

mod reader;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use serde::{Deserialize, Serialize};

use crate::ConnectorError;

pub use reader::{KafkaReader, KafkaRecord, ReaderStats};

/// The settings of a Kafka source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]` (required).
    pub brokers: String,
    /// Topics to read (required, at least one).
    pub topics: Vec<String>,
    /// librdkafka client properties passed through as they are, e.g. `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, `isolation.level` (default: none).
    /// The keys the reader sets itself are refused (see [`RESERVED_PROPERTIES`]).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A record whose value is larger than this many bytes is returned flagged `oversized`,
    /// without its value (default 4 MiB).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long a fetch waits at the broker for data when there is none, in milliseconds
    /// (librdkafka `fetch.wait.max.ms`, default 50): the latency of an idle partition.
    #[serde(default = "default_fetch_wait_ms")]
    pub fetch_wait_ms: u64,
    /// The longest a metadata or offsets request may take before it is an error, e.g. an
    /// unreachable broker at start (default `"10s"`; a duration like `"500ms"`, `"2s"`, or a
    /// number of milliseconds).
    #[serde(default = "default_connect_timeout", with = "duration_text")]
    pub connect_timeout: Duration,
}

fn default_max_message_bytes() -> usize {
    4 << 20
}
fn default_fetch_wait_ms() -> u64 {
    50
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// librdkafka properties that the reader sets itself and that `properties` may not override.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "fetch.wait.max.ms",
];

impl KafkaConfig {
    /// A configuration with the defaults for everything but the brokers and topics.
    pub fn new(brokers: impl Into<String>, topics: &[&str]) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            properties: BTreeMap::new(),
            max_message_bytes: default_max_message_bytes(),
            fetch_wait_ms: default_fetch_wait_ms(),
            connect_timeout: default_connect_timeout(),
        }
    }

    /// Checks the settings; the error ([`ConnectorError::Config`]) names the bad key
    /// (`brokers`, `topics`, `max_message_bytes`, `fetch_wait_ms`, `connect_timeout`,
    /// `properties.<name>`).
    pub fn validate(&self) -> Result<(), ConnectorError> {
        let bad = |key: &str, message: String| ConnectorError::Config {
            key: key.to_string(),
            message,
        };
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(bad("brokers", "must list at least one host:port".into()));
        }
        if self.topics.is_empty() {
            return Err(bad("topics", "must name at least one topic".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.topics {
            if !valid_topic_name(t) {
                return Err(bad(
                    "topics",
                    format!("`{t}` is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"),
                ));
            }
            if !seen.insert(t) {
                return Err(bad("topics", format!("`{t}` is listed twice")));
            }
        }
        if self.max_message_bytes == 0 {
            return Err(bad("max_message_bytes", "must be at least 1".into()));
        }
        if self.fetch_wait_ms > 300_000 {
            return Err(bad(
                "fetch_wait_ms",
                format!("{} is over the maximum of 300000", self.fetch_wait_ms),
            ));
        }
        if self.connect_timeout < Duration::from_millis(1) {
            return Err(bad("connect_timeout", "must be at least 1ms".into()));
        }
        for key in self.properties.keys() {
            if RESERVED_PROPERTIES.contains(&key.as_str()) {
                return Err(bad(
                    &format!("properties.{key}"),
                    "is set by tidewater and cannot be overridden".into(),
                ));
            }
        }
        // librdkafka checks every name and value; report the first it refuses.
        for (key, value) in &self.properties {
            let mut one = ClientConfig::new();
            one.set(key, value);
            if let Err(e) = one.create_native_config() {
                let message = match e {
                    KafkaError::ClientConfig(_, desc, _, _) => desc,
                    e => e.to_string(),
                };
                return Err(bad(&format!("properties.{key}"), message));
            }
        }
        Ok(())
    }

    /// The client configuration of every client of this source (properties, then ours).
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        let connect_ms = self.connect_timeout.as_millis().clamp(1000, 2_147_483_647);
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "tidewater")
            .set("socket.connection.setup.timeout.ms", connect_ms.to_string())
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "5000");
        c
    }

    /// A consumer used for metadata and offset look-ups only.
    pub(crate) fn metadata_consumer(&self) -> Result<BaseConsumer<LogContext>, ConnectorError> {
        let mut c = self.client_config();
        c.set("enable.auto.commit", "false");
        c.create_with_context(LogContext::new(&self.brokers))
            .map_err(|e| self.broker_error(format!("cannot create a Kafka client: {e}")))
    }

    pub(crate) fn broker_error(&self, message: String) -> ConnectorError {
        ConnectorError::Kafka {
            brokers: self.brokers.clone(),
            message,
        }
    }

    pub(crate) fn topic_error(&self, topic: &str, message: String) -> ConnectorError {
        ConnectorError::KafkaTopic {
            brokers: self.brokers.clone(),
            topic: topic.to_string(),
            message,
        }
    }
}

fn valid_topic_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// Partition discovery.
pub struct KafkaPartitions;

impl KafkaPartitions {
    /// All partitions of the configured topics, sorted by `(topic, partition)`. An unreachable
    /// broker is [`ConnectorError::Kafka`] naming the brokers, returned within about
    /// `connect_timeout` per topic; a topic that does not exist (or has no partition) is
    /// [`ConnectorError::KafkaTopic`] naming it.
    pub fn discover(cfg: &KafkaConfig) -> Result<Vec<TopicPartition>, ConnectorError> {
        cfg.validate()?;
        let consumer = cfg.metadata_consumer()?;
        let mut out = Vec::new();
        let mut topics = cfg.topics.clone();
        topics.sort();
        for topic in &topics {
            let md = consumer
                .fetch_metadata(Some(topic), cfg.connect_timeout)
                .map_err(|e| {
                    cfg.broker_error(format!(
                        "no metadata within {:?} (are the brokers reachable?): {e}",
                        cfg.connect_timeout
                    ))
                })?;
            let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
                return Err(cfg.topic_error(topic, "the topic does not exist".into()));
            };
            if let Some(err) = t.error() {
                let code = rdkafka::types::RDKafkaErrorCode::from(err);
                return Err(cfg.topic_error(
                    topic,
                    match code {
                        rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                        | rdkafka::types::RDKafkaErrorCode::UnknownTopic => {
                            "the topic does not exist".to_string()
                        }
                        other => format!("metadata error: {other}"),
                    },
                ));
            }
            if t.partitions().is_empty() {
                return Err(cfg.topic_error(topic, "the topic does not exist".into()));
            }
            let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            parts.sort_unstable();
            out.extend(parts.into_iter().map(|p| TopicPartition::new(topic, p)));
        }
        Ok(out)
    }
}

/// The partitions worker `index` of `peers` reads: the sorted list of `parts`, dealt
/// round-robin (positions `index`, `index + peers`, …). Every partition goes to exactly one
/// worker; the same inputs give the same spread in every process. `peers` is taken as at
/// least 1; an `index` of `peers` or more gets nothing.
pub fn assign_partitions(
    parts: &[TopicPartition],
    peers: usize,
    index: usize,
) -> Vec<TopicPartition> {
    let peers = peers.max(1);
    let mut sorted = parts.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % peers == index)
        .map(|(_, tp)| tp)
        .collect()
}

/// The client context of the connector's clients: librdkafka's log lines and global errors go
/// to `tracing` (target `librdkafka`) with the brokers.
pub struct LogContext {
    brokers: String,
    /// The consumer group whose offset commits this client reports, if any.
    group: Option<String>,
}

impl LogContext {
    pub(crate) fn new(brokers: &str) -> Self {
        LogContext {
            brokers: brokers.to_string(),
            group: None,
        }
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let brokers = self.brokers.as_str();
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", brokers, "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", brokers, "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", brokers, "{fac}: {log_message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let brokers = self.brokers.as_str();
        tracing::warn!(target: "librdkafka", brokers, "{error}: {reason}");
    }
}

impl ConsumerContext for LogContext {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &rdkafka::TopicPartitionList,
    ) {
        let brokers = self.brokers.as_str();
        let group = self.group.as_deref().unwrap_or("");
        match result {
            Ok(()) => tracing::debug!(
                brokers,
                group,
                partitions = offsets.count(),
                "offsets committed to the consumer group"
            ),
            Err(e) => tracing::warn!(
                brokers,
                group,
                "committing offsets to the consumer group failed (lag tools only; the Delta log \
                 keeps the positions): {e}"
            ),
        }
    }
}

/// Serde of a duration as text (`"10s"`, `"500ms"`, `"1m"`) or a number of milliseconds.
mod duration_text {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Millis(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Text::deserialize(d)? {
            Text::Millis(ms) => Ok(Duration::from_millis(ms)),
            Text::Text(t) => parse(&t).ok_or_else(|| {
                de::Error::custom(format!(
                    "`{t}` is not a duration (like \"500ms\", \"10s\", \"2m\")"
                ))
            }),
        }
    }

    /// `<number><unit>` with unit `ms`, `s`, `m` or `h`.
    pub fn parse(t: &str) -> Option<Duration> {
        let t = t.trim();
        let split = t.find(|c: char| !c.is_ascii_digit())?;
        let (n, unit) = t.split_at(split);
        let n: u64 = n.parse().ok()?;
        let ms = match unit.trim() {
            "ms" => n,
            "s" => n.checked_mul(1000)?,
            "m" => n.checked_mul(60_000)?,
            "h" => n.checked_mul(3_600_000)?,
            _ => return None,
        };
        Some(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests;
