//! Fast tests of the Kafka connector against librdkafka's in-process mock cluster (the real
//! broker tests are in `tests/e2e/kafka_reader.rs`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::*;

/// The delivery of message `.0`: its (partition, offset), or the error.
type Delivery = (usize, Result<(i32, i64), String>);

/// Records delivery results by message index.
#[derive(Default)]
struct Deliveries(Mutex<Vec<Delivery>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, i: usize) {
        let r = match r {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().unwrap().push((i, r));
    }
}

type Msg = (i32, Option<Vec<u8>>, Option<Vec<u8>>);

/// Produces `msgs` (partition, key, value) in order, waits for all, returns their offsets.
fn produce(brokers: &str, topic: &str, msgs: &[Msg]) -> Vec<i64> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(Deliveries::default())
        .expect("producer");
    for (i, (p, k, v)) in msgs.iter().enumerate() {
        let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, i).partition(*p);
        if let Some(k) = k {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = v {
            rec = rec.payload(v.as_slice());
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let mut results = std::mem::take(&mut *producer.context().0.lock().unwrap());
    assert_eq!(results.len(), msgs.len(), "every message delivered");
    results.sort_by_key(|(i, _)| *i);
    results
        .into_iter()
        .map(|(i, r)| {
            let (p, o) = r.unwrap_or_else(|e| panic!("message {i}: {e}"));
            assert_eq!(p, msgs[i].0);
            o
        })
        .collect()
}

/// A Debezium-like change event for key `k`.
fn event(k: u64, lsn: u64) -> Vec<u8> {
    format!(
        r#"{{"before":null,"after":{{"customer_id":{k},"name":"c{k}"}},"source":{{"lsn":{lsn}}},"op":"u"}}"#
    )
    .into_bytes()
}

/// `n` messages over `parts` partitions: keys, every 7th a tombstone, message `big` (if any)
/// with a value of `big_len` bytes.
fn messages(n: usize, parts: i32, big: Option<usize>, big_len: usize) -> Vec<Msg> {
    (0..n)
        .map(|i| {
            let k = (i % 50) as u64;
            let key = format!(r#"{{"customer_id":{k}}}"#).into_bytes();
            let value = if Some(i) == big {
                Some(vec![b'x'; big_len])
            } else if i % 7 == 3 {
                None
            } else {
                Some(event(k, i as u64))
            };
            ((k % parts as u64) as i32, Some(key), value)
        })
        .collect()
}

fn mock(topics: &[(&str, i32)]) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (t, p) in topics {
        cluster.create_topic(t, *p, 1).expect("create topic");
    }
    cluster
}

fn config(brokers: &str, topics: &[&str]) -> KafkaConfig {
    let mut cfg = KafkaConfig::new(brokers, topics);
    cfg.connect_timeout = Duration::from_secs(5);
    cfg
}

/// Reads until every partition reaches `ends` (or 30 s pass).
fn read_to(reader: &mut KafkaReader, ends: &BTreeMap<TopicPartition, i64>) -> Vec<KafkaRecord> {
    let start = Instant::now();
    let mut out = Vec::new();
    while reader
        .positions()
        .iter()
        .any(|(tp, p)| ends.get(tp).is_some_and(|e| p < e))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out at {:?}, ends {ends:?}",
            reader.positions()
        );
        out.extend(reader.poll(1000, Duration::from_millis(200)).unwrap());
    }
    out
}

/// What was produced, per partition: (offset, key, value), in offset order.
type Expected = BTreeMap<i32, Vec<(i64, Option<Vec<u8>>, Option<Vec<u8>>)>>;

fn expected(msgs: &[Msg], offsets: &[i64]) -> Expected {
    let mut out: Expected = BTreeMap::new();
    for ((p, k, v), o) in msgs.iter().zip(offsets) {
        out.entry(*p).or_default().push((*o, k.clone(), v.clone()));
    }
    for v in out.values_mut() {
        v.sort_by_key(|r| r.0);
    }
    out
}

fn by_partition(reader: &KafkaReader, recs: &[KafkaRecord]) -> Expected {
    let mut out: Expected = BTreeMap::new();
    for r in recs {
        let tp = &reader.partitions()[r.part];
        out.entry(tp.partition)
            .or_default()
            .push((r.offset, r.key.clone(), r.value.clone()));
    }
    out
}

#[test]
fn config_defaults_serde_and_validation() {
    let cfg: KafkaConfig =
        serde_json::from_str(r#"{"brokers":"127.0.0.1:9092","topics":["a"]}"#).unwrap();
    assert_eq!(cfg.max_message_bytes, 4 << 20);
    assert_eq!(cfg.fetch_wait_ms, 50);
    assert_eq!(cfg.connect_timeout, Duration::from_secs(10));
    assert!(cfg.properties.is_empty());
    cfg.validate().unwrap();
    let back: KafkaConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);

    let t = |s: &str| -> Duration {
        let cfg: KafkaConfig = serde_json::from_str(&format!(
            r#"{{"brokers":"b:1","topics":["a"],"connect_timeout":{s}}}"#
        ))
        .unwrap();
        cfg.connect_timeout
    };
    assert_eq!(t("1500"), Duration::from_millis(1500));
    assert_eq!(t(r#""2s""#), Duration::from_secs(2));
    assert_eq!(t(r#""250ms""#), Duration::from_millis(250));
    assert!(serde_json::from_str::<KafkaConfig>(
        r#"{"brokers":"b:1","topics":["a"],"connect_timeout":"soon"}"#
    )
    .is_err());
    assert!(
        serde_json::from_str::<KafkaConfig>(r#"{"brokers":"b:1","topics":["a"],"topic":"x"}"#)
            .is_err(),
        "unknown keys are refused"
    );

    let key_of = |cfg: &KafkaConfig| match cfg.validate() {
        Err(ConnectorError::Config { key, .. }) => key,
        other => panic!("expected a config error, got {other:?}"),
    };
    let base = KafkaConfig::new("b:1", &["a"]);
    let mut c = base.clone();
    c.brokers = " ".into();
    assert_eq!(key_of(&c), "brokers");
    let mut c = base.clone();
    c.topics.clear();
    assert_eq!(key_of(&c), "topics");
    let mut c = base.clone();
    c.topics = vec!["a".into(), "a".into()];
    assert_eq!(key_of(&c), "topics");
    let mut c = base.clone();
    c.topics = vec!["no spaces".into()];
    assert_eq!(key_of(&c), "topics");
    let mut c = base.clone();
    c.max_message_bytes = 0;
    assert_eq!(key_of(&c), "max_message_bytes");
    let mut c = base.clone();
    c.fetch_wait_ms = 400_000;
    assert_eq!(key_of(&c), "fetch_wait_ms");
    let mut c = base.clone();
    c.connect_timeout = Duration::ZERO;
    assert_eq!(key_of(&c), "connect_timeout");
    let mut c = base.clone();
    c.properties.insert("group.id".into(), "g".into());
    assert_eq!(key_of(&c), "properties.group.id");
    let mut c = base.clone();
    c.properties.insert("no.such.property".into(), "1".into());
    assert_eq!(key_of(&c), "properties.no.such.property");
    let mut c = base.clone();
    c.properties
        .insert("security.protocol".into(), "carrier-pigeon".into());
    assert_eq!(key_of(&c), "properties.security.protocol");
    let mut c = base;
    c.properties
        .insert("security.protocol".into(), "plaintext".into());
    c.properties
        .insert("isolation.level".into(), "read_committed".into());
    c.validate().unwrap();
}

#[test]
fn assign_partitions_covers_each_partition_once() {
    let parts: Vec<TopicPartition> = [("b", 0), ("a", 2), ("a", 0), ("b", 1), ("a", 1)]
        .iter()
        .map(|(t, p)| TopicPartition::new(*t, *p))
        .collect();
    assert_eq!(
        assign_partitions(&parts, 2, 0),
        vec![
            TopicPartition::new("a", 0),
            TopicPartition::new("a", 2),
            TopicPartition::new("b", 1)
        ]
    );
    assert_eq!(
        assign_partitions(&parts, 2, 1),
        vec![TopicPartition::new("a", 1), TopicPartition::new("b", 0)]
    );
    for peers in 1..=7 {
        let mut all: Vec<TopicPartition> = (0..peers)
            .flat_map(|i| assign_partitions(&parts, peers, i))
            .collect();
        all.sort();
        let mut want = parts.clone();
        want.sort();
        assert_eq!(all, want, "{peers} peers");
    }
    assert!(assign_partitions(&parts, 2, 2).is_empty());
    assert_eq!(assign_partitions(&parts, 0, 0).len(), 5);
}

#[test]
fn discover_sorts_partitions_and_names_a_missing_topic() {
    let cluster = mock(&[("orders", 2), ("customers", 3)]);
    let brokers = cluster.bootstrap_servers();
    let parts = KafkaPartitions::discover(&config(&brokers, &["orders", "customers"])).unwrap();
    let want: Vec<TopicPartition> = [
        ("customers", 0),
        ("customers", 1),
        ("customers", 2),
        ("orders", 0),
        ("orders", 1),
    ]
    .iter()
    .map(|(t, p)| TopicPartition::new(*t, *p))
    .collect();
    assert_eq!(parts, want);

    match KafkaPartitions::discover(&config(&brokers, &["orders", "nope"])) {
        Err(e @ ConnectorError::KafkaTopic { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("nope") && text.contains("does not exist"),
                "{text}"
            );
        }
        other => panic!("expected a topic error, got {other:?}"),
    }
}

/// A 127.0.0.1 port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn unreachable_broker_is_an_error_naming_it_within_the_timeout() {
    let brokers = format!("127.0.0.1:{}", closed_port());
    let mut cfg = config(&brokers, &["t"]);
    cfg.connect_timeout = Duration::from_secs(1);
    let start = Instant::now();
    let err = KafkaPartitions::discover(&cfg).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, ConnectorError::Kafka { .. }), "{err:?}");
    assert!(err.to_string().contains(&brokers), "{err}");
    assert!(took < Duration::from_secs(4), "took {took:?}");

    let start = Instant::now();
    let err = KafkaReader::open(&cfg, &[(TopicPartition::new("t", 0), None)])
        .err()
        .expect("open fails");
    assert!(matches!(err, ConnectorError::Kafka { .. }), "{err:?}");
    assert!(err.to_string().contains(&brokers), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn reader_returns_each_partition_exactly_in_order() {
    let cluster = mock(&[("cdc", 3)]);
    let brokers = cluster.bootstrap_servers();
    let msgs = messages(400, 3, Some(123), 5000);
    let offsets = produce(&brokers, "cdc", &msgs);
    let mut cfg = config(&brokers, &["cdc"]);
    cfg.max_message_bytes = 4000;
    let parts = KafkaPartitions::discover(&cfg).unwrap();
    let starts: Vec<_> = parts.iter().map(|tp| (tp.clone(), None)).collect();
    let mut reader = KafkaReader::open(&cfg, &starts).unwrap();
    let ends = reader.end_offsets().unwrap();
    let want = expected(&msgs, &offsets);
    for (tp, e) in &ends {
        assert_eq!(*e, want[&tp.partition].len() as i64, "end of {tp}");
    }
    let recs = read_to(&mut reader, &ends);
    // Nothing more arrives.
    assert!(reader
        .poll(100, Duration::from_millis(300))
        .unwrap()
        .is_empty());

    // The oversized record comes flagged, without its value.
    let big: Vec<_> = recs.iter().filter(|r| r.oversized).collect();
    assert_eq!(big.len(), 1);
    assert_eq!(big[0].value_len, 5000);
    assert_eq!(big[0].value, None);
    let (bp, bo) = (msgs[123].0, offsets[123]);
    assert_eq!(
        (reader.partitions()[big[0].part].partition, big[0].offset),
        (bp, bo)
    );
    let mut want = want;
    want.get_mut(&bp)
        .unwrap()
        .iter_mut()
        .find(|r| r.0 == bo)
        .unwrap()
        .2 = None;
    assert_eq!(by_partition(&reader, &recs), want);
    for part in 0..3 {
        let offs: Vec<i64> = recs
            .iter()
            .filter(|r| r.part == part)
            .map(|r| r.offset)
            .collect();
        assert_eq!(
            offs,
            (0..offs.len() as i64).collect::<Vec<_>>(),
            "contiguous"
        );
    }
    // Tombstones are returned with no value.
    assert_eq!(
        recs.iter()
            .filter(|r| r.value.is_none() && !r.oversized)
            .count(),
        msgs.iter().filter(|m| m.2.is_none()).count()
    );
    assert!(recs.iter().all(|r| r.timestamp_ms.is_some()));
    let stats = reader.stats();
    assert_eq!(stats.records, 400);
    assert_eq!((stats.gaps, stats.redelivered, stats.oversized), (0, 0, 1));
    assert_eq!(reader.positions(), ends);
}

#[test]
fn start_offsets_seek_and_limit_replay_exact_ranges() {
    let cluster = mock(&[("cdc", 3)]);
    let brokers = cluster.bootstrap_servers();
    let msgs = messages(300, 3, None, 0);
    let offsets = produce(&brokers, "cdc", &msgs);
    let want = expected(&msgs, &offsets);
    let cfg = config(&brokers, &["cdc"]);
    let tp = |p| TopicPartition::new("cdc", p);

    // Resume partition 1 at 5 and partition 2 at its end; partition 0 from the start.
    let end2 = want[&2].len() as i64;
    let mut reader = KafkaReader::open(
        &cfg,
        &[(tp(1), Some(5)), (tp(2), Some(end2)), (tp(0), None)],
    )
    .unwrap();
    assert_eq!(reader.index_of(&tp(0)), Some(2));
    assert_eq!(reader.position(0), 5);
    let ends = reader.end_offsets().unwrap();
    let recs = read_to(&mut reader, &ends);
    let got = by_partition(&reader, &recs);
    assert_eq!(got[&1], want[&1][5..]);
    assert_eq!(got.get(&2), None);
    assert_eq!(got[&0], want[&0]);

    // Replay [10, 20) of partition 1 (index 0) and [0, 3) of partition 0 (index 2).
    reader.seek(0, 10).unwrap();
    reader.set_limit(0, Some(20));
    reader.seek(2, 0).unwrap();
    reader.set_limit(2, Some(3));
    let start = Instant::now();
    let mut recs = Vec::new();
    while reader.position(0) < 20 || reader.position(2) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            reader.positions()
        );
        recs.extend(reader.poll(1000, Duration::from_millis(200)).unwrap());
    }
    // Nothing past the limits, even when waiting.
    recs.extend(reader.poll(1000, Duration::from_millis(500)).unwrap());
    let got = by_partition(&reader, &recs);
    assert_eq!(got[&1], want[&1][10..20]);
    assert_eq!(got[&0], want[&0][..3]);
    assert_eq!(got.get(&2), None, "partition 2 was at its end");
    assert_eq!((reader.position(0), reader.position(2)), (20, 3));

    // Seeking back while held at a limit (the partition's fetching is paused) replays again.
    reader.seek(0, 12).unwrap();
    reader.set_limit(0, Some(15));
    let start = Instant::now();
    let mut recs = Vec::new();
    while reader.position(0) < 15 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            reader.positions()
        );
        recs.extend(reader.poll(1000, Duration::from_millis(200)).unwrap());
    }
    recs.extend(reader.poll(1000, Duration::from_millis(300)).unwrap());
    assert_eq!(by_partition(&reader, &recs)[&1], want[&1][12..15]);
    reader.set_limit(0, Some(20));
    let mut recs = Vec::new();
    while reader.position(0) < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            reader.positions()
        );
        recs.extend(reader.poll(1000, Duration::from_millis(200)).unwrap());
    }
    assert_eq!(by_partition(&reader, &recs)[&1], want[&1][15..20]);

    // Lifting the limits continues exactly where the ranges ended.
    reader.set_limit(0, None);
    reader.set_limit(2, None);
    let recs = read_to(&mut reader, &ends);
    let got = by_partition(&reader, &recs);
    assert_eq!(got[&1], want[&1][20..]);
    assert_eq!(got[&0], want[&0][3..]);
    assert_eq!(reader.stats().redelivered, 0);

    // A start past the end, or a seek before the start, is refused naming the topic.
    let err = KafkaReader::open(&cfg, &[(tp(0), Some(10_000))])
        .err()
        .expect("refused");
    assert!(
        matches!(err, ConnectorError::KafkaTopic { ref topic, .. } if topic == "cdc"),
        "{err}"
    );
    assert!(reader.seek(0, -5).is_err());
    // A partition that does not exist.
    let err = KafkaReader::open(&cfg, &[(tp(7), None)])
        .err()
        .expect("refused");
    assert!(matches!(err, ConnectorError::KafkaTopic { .. }), "{err}");
}

#[test]
fn broker_down_then_up_loses_and_repeats_nothing() {
    let cluster = mock(&[("cdc", 3)]);
    let brokers = cluster.bootstrap_servers();
    let first = messages(150, 3, None, 0);
    let mut offsets = produce(&brokers, "cdc", &first);
    let cfg = config(&brokers, &["cdc"]);
    let parts = KafkaPartitions::discover(&cfg).unwrap();
    let starts: Vec<_> = parts.iter().map(|tp| (tp.clone(), None)).collect();
    let mut reader = KafkaReader::open(&cfg, &starts).unwrap();
    let mut recs = reader.poll(40, Duration::from_secs(10)).unwrap();
    assert!(!recs.is_empty());

    cluster.broker_down(-1).unwrap();
    let down_since = Instant::now();
    while down_since.elapsed() < Duration::from_secs(2) {
        recs.extend(reader.poll(10, Duration::from_millis(100)).unwrap());
    }
    assert!(
        reader.stats().transient_errors > 0,
        "the outage was seen: {:?}",
        reader.stats()
    );
    cluster.broker_up(-1).unwrap();
    let second = messages(150, 3, None, 0);
    offsets.extend(produce(&brokers, "cdc", &second));
    let all: Vec<Msg> = first.into_iter().chain(second).collect();
    let want = expected(&all, &offsets);
    let ends: BTreeMap<_, _> = parts
        .iter()
        .map(|tp| (tp.clone(), want[&tp.partition].len() as i64))
        .collect();
    recs.extend(read_to(&mut reader, &ends));
    assert_eq!(by_partition(&reader, &recs), want);
    assert_eq!(reader.stats().redelivered, 0);
    assert_eq!(reader.stats().gaps, 0);
}

#[test]
fn commit_offsets_to_group_shows_in_the_group() {
    let cluster = mock(&[("cdc", 2)]);
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, "cdc", &messages(20, 2, None, 0));
    let cfg = config(&brokers, &["cdc"]);
    let parts = KafkaPartitions::discover(&cfg).unwrap();
    let starts: Vec<_> = parts.iter().map(|tp| (tp.clone(), None)).collect();
    let mut reader = KafkaReader::open(&cfg, &starts).unwrap();
    let offsets: BTreeMap<_, _> = [
        (TopicPartition::new("cdc", 0), 4),
        (TopicPartition::new("cdc", 1), 7),
    ]
    .into_iter()
    .collect();
    reader
        .commit_offsets_to_group("lag-tools", &offsets)
        .unwrap();

    let viewer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "lag-tools")
        .create()
        .unwrap();
    let start = Instant::now();
    loop {
        let _ = reader.poll(1, Duration::from_millis(100));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("cdc", 0);
        tpl.add_partition("cdc", 1);
        let got: Vec<Offset> = viewer
            .committed_offsets(tpl, Duration::from_secs(5))
            .map(|t| t.elements().iter().map(|e| e.offset()).collect())
            .unwrap_or_default();
        if got == vec![Offset::Offset(4), Offset::Offset(7)] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "committed: {got:?}"
        );
    }
}

#[test]
fn a_reader_without_partitions_just_waits() {
    fn send<T: Send>() {}
    send::<KafkaReader>();
    send::<KafkaRecord>();
    let cluster = mock(&[("cdc", 1)]);
    let cfg = config(&cluster.bootstrap_servers(), &["cdc"]);
    let mut reader = KafkaReader::open(&cfg, &[]).unwrap();
    let start = Instant::now();
    assert!(reader
        .poll(10, Duration::from_millis(200))
        .unwrap()
        .is_empty());
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert!(reader.end_offsets().unwrap().is_empty());
    assert!(reader.positions().is_empty());
}
