//! The Kafka connector against a real broker (tansu): discovery, the spread of partitions over
//! workers, exact reading (tombstones, an oversized record), end offsets, replaying a recorded
//! range, a broker restart mid-stream, and the errors for a missing topic and an unreachable
//! broker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tidewater_connectors::kafka::{
    assign_partitions, KafkaConfig, KafkaPartitions, KafkaReader, KafkaRecord, TopicPartition,
};
use tidewater_connectors::ConnectorError;
use tidewater_e2e::kafka::{self, free_port, tansu_or_skip, unique_topic, Broker};

/// (partition, key, value) of a produced message.
type Msg = (i32, Option<Vec<u8>>, Option<Vec<u8>>);
/// Per partition: (offset, key, value) in offset order.
type ByPartition = BTreeMap<i32, Vec<(i64, Option<Vec<u8>>, Option<Vec<u8>>)>>;

const OVERSIZED: usize = 100_000;
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// `n` Debezium-like change events of 60 customers over 3 partitions (by key); every 9th is a
/// tombstone (null value) after a delete; message `n / 2` has a value of [`OVERSIZED`] bytes.
fn debezium_messages(n: usize, seed: usize) -> Vec<Msg> {
    (0..n)
        .map(|i| {
            let id = (i * 7 + seed) % 60;
            let key = format!(r#"{{"customer_id":{id}}}"#).into_bytes();
            let lsn = 1000 + seed * 10_000 + i;
            let value = if i == n / 2 {
                Some(format!(r#"{{"pad":"{}"}}"#, "x".repeat(OVERSIZED)).into_bytes())
            } else if i % 9 == 8 {
                None
            } else if i % 9 == 7 {
                Some(
                    format!(
                        r#"{{"before":{{"customer_id":{id}}},"after":null,"source":{{"lsn":{lsn},"txId":{i}}},"op":"d","ts_ms":1700000000000}}"#
                    )
                    .into_bytes(),
                )
            } else {
                Some(
                    format!(
                        r#"{{"before":null,"after":{{"customer_id":{id},"name":"customer {id}","balance":{}}},"source":{{"lsn":{lsn},"txId":{i}}},"op":"{}","ts_ms":1700000000000}}"#,
                        i * 13 % 1000,
                        if i < 60 { "c" } else { "u" }
                    )
                    .into_bytes(),
                )
            };
            ((id % 3) as i32, Some(key), value)
        })
        .collect()
}

fn produce(broker: &Broker, topic: &str, msgs: &[Msg]) -> Vec<i64> {
    let refs: Vec<kafka::Message<'_>> = msgs
        .iter()
        .map(|(p, k, v)| (*p, k.as_deref(), v.as_deref()))
        .collect();
    broker
        .produce(topic, &refs)
        .unwrap_or_else(|e| panic!("produce: {e:#}\n{}", broker.stderr()))
}

/// What the reader must return: the produced messages by partition in offset order, the
/// oversized value replaced by `None`.
fn expected(msgs: &[Msg], offsets: &[i64]) -> ByPartition {
    let mut out = ByPartition::new();
    for ((p, k, v), o) in msgs.iter().zip(offsets) {
        let v = v.clone().filter(|v| v.len() <= MAX_MESSAGE_BYTES);
        out.entry(*p).or_default().push((*o, k.clone(), v));
    }
    for v in out.values_mut() {
        v.sort_by_key(|r| r.0);
    }
    out
}

fn by_partition(reader: &KafkaReader, recs: &[KafkaRecord]) -> ByPartition {
    let mut out = ByPartition::new();
    for r in recs {
        out.entry(reader.partitions()[r.part].partition)
            .or_default()
            .push((r.offset, r.key.clone(), r.value.clone()));
    }
    out
}

fn config(broker: &Broker, topic: &str) -> KafkaConfig {
    let mut cfg = KafkaConfig::new(broker.brokers(), &[topic]);
    cfg.max_message_bytes = MAX_MESSAGE_BYTES;
    cfg.connect_timeout = Duration::from_secs(5);
    cfg
}

/// Polls until every partition of `reader` is at `ends` (at most 60 s).
fn read_to(reader: &mut KafkaReader, ends: &BTreeMap<TopicPartition, i64>) -> Vec<KafkaRecord> {
    let start = Instant::now();
    let mut out = Vec::new();
    while reader
        .positions()
        .iter()
        .any(|(tp, p)| ends.get(tp).is_some_and(|e| p < e))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not at {ends:?} after 60 s: {:?}",
            reader.positions()
        );
        out.extend(reader.poll(500, Duration::from_millis(200)).expect("poll"));
    }
    out
}

#[test]
fn kafka_reader_reads_a_real_broker_exactly() {
    let Some(tansu) = tansu_or_skip("kafka_reader_reads_a_real_broker_exactly") else {
        return;
    };
    let broker = Broker::start(&tansu).expect("start tansu");
    let topic = unique_topic("kafka-reader");
    broker.create_topic(&topic, 3).expect("create topic");
    let msgs = debezium_messages(600, 0);
    let offsets = produce(&broker, &topic, &msgs);
    let want = expected(&msgs, &offsets);
    assert_eq!(want.len(), 3, "every partition has records");
    let cfg = config(&broker, &topic);

    // Discovery and the spread over 2 workers: each partition exactly once.
    let parts = KafkaPartitions::discover(&cfg).expect("discover");
    assert_eq!(
        parts,
        (0..3)
            .map(|p| TopicPartition::new(&topic, p))
            .collect::<Vec<_>>()
    );
    let spread: Vec<Vec<TopicPartition>> =
        (0..2).map(|i| assign_partitions(&parts, 2, i)).collect();
    assert_eq!(spread[0], vec![parts[0].clone(), parts[2].clone()]);
    assert_eq!(spread[1], vec![parts[1].clone()]);

    // Each worker's reader returns exactly its partitions' records, in order.
    let mut got = ByPartition::new();
    let mut oversized = Vec::new();
    for mine in &spread {
        let starts: Vec<_> = mine.iter().map(|tp| (tp.clone(), None)).collect();
        let mut reader = KafkaReader::open(&cfg, &starts).expect("open");
        let ends = reader.end_offsets().expect("end offsets");
        for (tp, e) in &ends {
            assert_eq!(*e, want[&tp.partition].len() as i64, "end offset of {tp}");
        }
        let recs = read_to(&mut reader, &ends);
        assert!(
            reader
                .poll(100, Duration::from_millis(500))
                .unwrap()
                .is_empty(),
            "nothing past the end"
        );
        for part in 0..mine.len() {
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
        for r in recs.iter().filter(|r| r.oversized) {
            oversized.push((reader.partitions()[r.part].clone(), r.offset, r.value_len));
        }
        let stats = reader.stats();
        assert_eq!((stats.gaps, stats.redelivered), (0, 0));
        assert_eq!(reader.positions(), ends);
        got.extend(by_partition(&reader, &recs));
    }
    assert_eq!(got, want);
    let big = msgs.len() / 2;
    assert_eq!(
        oversized,
        vec![(
            TopicPartition::new(&topic, msgs[big].0),
            offsets[big],
            msgs[big].2.as_ref().unwrap().len()
        )],
        "the oversized record is returned flagged, with its position"
    );
    let tombstones = got
        .values()
        .flatten()
        .filter(|(_, _, v)| v.is_none())
        .count();
    assert_eq!(
        tombstones,
        msgs.iter().filter(|m| m.2.is_none()).count() + 1
    );

    // Replaying a recorded range [from, to) of one partition, and resuming after it.
    let p = 1;
    let (from, to) = (17, 45);
    let tp = TopicPartition::new(&topic, p);
    let mut reader = KafkaReader::open(&cfg, &[(tp.clone(), Some(from))]).expect("open at from");
    reader.set_limit(0, Some(to));
    let ends = BTreeMap::from([(tp.clone(), to)]);
    let recs = read_to(&mut reader, &ends);
    assert!(reader
        .poll(100, Duration::from_millis(500))
        .unwrap()
        .is_empty());
    assert_eq!(
        by_partition(&reader, &recs)[&p],
        want[&p][from as usize..to as usize]
    );
    // Seek back inside what was read, replay again.
    reader.seek(0, 20).expect("seek");
    reader.set_limit(0, Some(30));
    let recs = read_to(&mut reader, &BTreeMap::from([(tp.clone(), 30)]));
    assert!(reader
        .poll(100, Duration::from_millis(500))
        .unwrap()
        .is_empty());
    assert_eq!(by_partition(&reader, &recs)[&p], want[&p][20..30]);
    reader.set_limit(0, None);
    let end = want[&p].len() as i64;
    let recs = read_to(&mut reader, &BTreeMap::from([(tp.clone(), end)]));
    assert_eq!(by_partition(&reader, &recs)[&p], want[&p][30..]);

    // A topic that does not exist: an error naming it, within the timeout.
    let missing = unique_topic("never-created");
    let mut bad = config(&broker, &missing);
    bad.connect_timeout = Duration::from_secs(2);
    let start = Instant::now();
    let err = KafkaPartitions::discover(&bad).expect_err("missing topic");
    assert!(
        matches!(&err, ConnectorError::KafkaTopic { topic, .. } if *topic == missing),
        "{err}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn kafka_reader_unreachable_broker_is_a_bounded_error() {
    // No broker needed: a closed port.
    let brokers = format!("127.0.0.1:{}", free_port());
    let mut cfg = KafkaConfig::new(&brokers, &["anything"]);
    cfg.connect_timeout = Duration::from_secs(2);
    let start = Instant::now();
    let err = KafkaPartitions::discover(&cfg).expect_err("unreachable");
    let took = start.elapsed();
    assert!(matches!(err, ConnectorError::Kafka { .. }), "{err:?}");
    assert!(err.to_string().contains(&brokers), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let start = Instant::now();
    let err = KafkaReader::open(&cfg, &[(TopicPartition::new("anything", 0), Some(0))])
        .err()
        .expect("unreachable");
    assert!(matches!(err, ConnectorError::Kafka { .. }), "{err:?}");
    assert!(err.to_string().contains(&brokers), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn kafka_reader_survives_a_broker_restart_mid_stream() {
    let Some(tansu) = tansu_or_skip("kafka_reader_survives_a_broker_restart_mid_stream") else {
        return;
    };
    let mut broker = Broker::start(&tansu).expect("start tansu");
    let topic = unique_topic("kafka-restart");
    broker.create_topic(&topic, 3).expect("create topic");
    let first = debezium_messages(300, 1);
    let mut offsets = produce(&broker, &topic, &first);
    let cfg = config(&broker, &topic);
    let parts = KafkaPartitions::discover(&cfg).expect("discover");
    let starts: Vec<_> = parts.iter().map(|tp| (tp.clone(), None)).collect();
    let mut reader = KafkaReader::open(&cfg, &starts).expect("open");
    let mut recs = reader.poll(50, Duration::from_secs(10)).expect("poll");
    assert!(!recs.is_empty());

    // The broker goes away (SIGKILL): polling goes on, retried and logged, no error.
    broker.stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(2) {
        recs.extend(
            reader
                .poll(20, Duration::from_millis(200))
                .expect("poll while down"),
        );
    }
    assert!(
        reader.stats().transient_errors > 0,
        "the outage was seen: {:?}",
        reader.stats()
    );
    broker.restart().expect("restart tansu");
    let second = debezium_messages(300, 2);
    offsets.extend(produce(&broker, &topic, &second));
    let all: Vec<Msg> = first.into_iter().chain(second).collect();
    let want = expected(&all, &offsets);
    let ends: BTreeMap<_, _> = parts
        .iter()
        .map(|tp| (tp.clone(), want[&tp.partition].len() as i64))
        .collect();
    assert_eq!(reader.end_offsets().expect("end offsets"), ends);
    recs.extend(read_to(&mut reader, &ends));
    assert_eq!(by_partition(&reader, &recs), want);
    let stats = reader.stats();
    assert_eq!((stats.gaps, stats.redelivered), (0, 0));
}

#[test]
fn kafka_reader_commits_positions_to_a_group_for_lag_tools() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let Some(tansu) = tansu_or_skip("kafka_reader_commits_positions_to_a_group_for_lag_tools")
    else {
        return;
    };
    let broker = Broker::start(&tansu).expect("start tansu");
    let topic = unique_topic("kafka-lag");
    broker.create_topic(&topic, 2).expect("create topic");
    let msgs: Vec<Msg> = debezium_messages(60, 3)
        .into_iter()
        .map(|(p, k, v)| (p % 2, k, v))
        .collect();
    produce(&broker, &topic, &msgs);
    let cfg = config(&broker, &topic);
    let parts = KafkaPartitions::discover(&cfg).expect("discover");
    let starts: Vec<_> = parts.iter().map(|tp| (tp.clone(), None)).collect();
    let mut reader = KafkaReader::open(&cfg, &starts).expect("open");
    let ends = reader.end_offsets().expect("end offsets");
    read_to(&mut reader, &ends);
    let group = unique_topic("lag-group");
    reader
        .commit_offsets_to_group(&group, &reader.positions())
        .expect("commit queued");

    // What a lag tool sees: the group's committed offsets are the reader's positions.
    let viewer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", &group)
        .create()
        .expect("viewer");
    let want: Vec<Offset> = ends.values().map(|e| Offset::Offset(*e)).collect();
    let start = Instant::now();
    loop {
        let _ = reader.poll(1, Duration::from_millis(100));
        let mut tpl = TopicPartitionList::new();
        for tp in &parts {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        let got: Vec<Offset> = viewer
            .committed_offsets(tpl, Duration::from_secs(5))
            .map(|t| t.elements().iter().map(|e| e.offset()).collect())
            .unwrap_or_default();
        if got == want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "committed {got:?}, want {want:?}\n{}",
            broker.stderr()
        );
    }
}
