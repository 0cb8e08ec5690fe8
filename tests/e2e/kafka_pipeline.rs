//! The Kafka source end to end against a real broker (tansu): Debezium topics into Delta,
//! exactly once — the final table and every version equal the model over the recorded offset
//! ranges, tombstones skipped, malformed and oversized messages quarantined with
//! topic/partition/offset, a restart continuing at the recorded offsets (also after a crash,
//! with another worker count), source transactions never split (bank transfers: every version
//! balances), a broker that goes away mid-stream, and clear errors for an unreachable broker
//! and a missing topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tidewater_connectors::formats::DebeziumParser;
use tidewater_connectors::generator::{
    reference_apply, BankGenConfig, BankGenerator, TransfersGenConfig, TransfersGenerator,
};
use tidewater_e2e::kafka::{self, free_port, tansu_or_skip, unique_topic, Broker};
use tidewater_e2e::python_reader::{py_read_log, py_read_table};
use tidewater_e2e::{
    abort_at, canonical, column_sum, deltalake_rows, ground_truth_rows, recorded_positions,
    reference_rows, tidewater, tidewater_bin, tidewater_ok,
};

pub(crate) const MAX_MESSAGE_BYTES: usize = 65_536;

/// Messages to produce: (partition, value; `None`: tombstone).
pub(crate) type Values = Vec<(i32, Option<Vec<u8>>)>;

/// The messages produced to a topic: per partition, offset → value (`None`: tombstone).
pub(crate) type Produced = BTreeMap<i32, BTreeMap<i64, Option<Vec<u8>>>>;

/// Produces `values` (partition, value) and records them by offset.
pub(crate) fn produce(
    broker: &Broker,
    topic: &str,
    values: &[(i32, Option<Vec<u8>>)],
    into: &mut Produced,
) {
    let msgs: Vec<kafka::Message<'_>> = values
        .iter()
        .map(|(p, v)| (*p, None, v.as_deref()))
        .collect();
    let offsets = broker.produce(topic, &msgs).unwrap();
    for ((p, v), o) in values.iter().zip(offsets) {
        into.entry(*p).or_default().insert(o, v.clone());
    }
}

/// Bank CDC lines (seed, events, keys) as messages over 3 partitions, with a tombstone after
/// every 100th, a malformed value every 500th and one value over [`MAX_MESSAGE_BYTES`].
pub(crate) fn bank_messages(seed: u64, events: u64, bad_tag: &str) -> Values {
    let mut g = BankGenerator::new(BankGenConfig {
        seed,
        events,
        keys: 300,
        ..Default::default()
    });
    let (mut out, mut line, mut i) = (Vec::new(), Vec::new(), 0usize);
    while g.next_line(&mut line) {
        let p = (i % 3) as i32;
        out.push((p, Some(std::mem::take(&mut line))));
        i += 1;
        if i % 100 == 0 {
            out.push((p, None));
        }
        if i % 500 == 0 {
            out.push((
                p,
                Some(format!("{{\"broken\": \"{bad_tag}{i}\"").into_bytes()),
            ));
        }
        if i == 777 {
            out.push((
                p,
                Some(format!("{{\"pad\": \"{}\"}}", "x".repeat(100_000)).into_bytes()),
            ));
        }
    }
    out
}

pub(crate) fn pipeline(
    dir: &Path,
    name: &str,
    brokers: &str,
    topic: &str,
    table: &str,
    key: &str,
    extra: &str,
) -> (PathBuf, PathBuf) {
    let lakehouse = dir.join(format!("{name}-lh"));
    let text = format!(
        r#"[pipeline]
name = "{name}"
lakehouse = "{}"
commit_interval_ms = 300
buckets = 4
{extra}

[[source]]
name = "cdc"
kind = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
max_message_bytes = {MAX_MESSAGE_BYTES}
connect_timeout_ms = 3000
transaction_wait_ms = 500

[[table]]
name = "{table}"
from = "cdc"
keys = ["{key}"]
sequence_by = "__lsn"
"#,
        lakehouse.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, lakehouse)
}

pub(crate) fn run_args(pipeline: &Path, workers: usize) -> Vec<String> {
    vec![
        "run".into(),
        pipeline.display().to_string(),
        "--workers".into(),
        workers.to_string(),
        "--exit-when-idle".into(),
    ]
}

pub(crate) fn run_ok(pipeline: &Path, workers: usize) -> String {
    let args = run_args(pipeline, workers);
    let out = tidewater_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The values of the recorded ranges of epochs `≤ epoch` (`None`: all), in partition and
/// offset order; checks that every partition's ranges chain from offset 0.
pub(crate) fn values_up_to(
    positions: &BTreeMap<u64, serde_json::Map<String, Value>>,
    produced: &Produced,
    topic: &str,
    source: &str,
    epoch: Option<u64>,
) -> Vec<Vec<u8>> {
    let mut next: BTreeMap<String, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for (e, sources) in positions {
        if epoch.is_some_and(|x| *e > x) {
            break;
        }
        let Some(parts) = sources
            .get(source)
            .and_then(|s| s["partitions"].as_object())
        else {
            continue;
        };
        for (p, r) in parts {
            let (from, to) = (r["from"].as_i64().unwrap(), r["to"].as_i64().unwrap());
            let at = next.entry(p.clone()).or_insert(0);
            assert_eq!(from, *at, "epoch {e}: a gap or overlap in {p}");
            *at = to;
            let (t, part) = p.rsplit_once('/').unwrap();
            if t != topic {
                continue; // another topic of the same source
            }
            let msgs = &produced[&part.parse::<i32>().unwrap()];
            for o in from..to {
                // Oversized values are quarantined unread: not part of the model's input.
                if let Some(Some(v)) = msgs
                    .get(&o)
                    .filter(|v| v.as_ref().is_none_or(|v| v.len() <= MAX_MESSAGE_BYTES))
                {
                    out.push(v.clone());
                }
            }
        }
    }
    out
}

/// Every partition's recorded ranges end at its last produced offset + 1.
pub(crate) fn assert_fully_recorded(
    positions: &BTreeMap<u64, serde_json::Map<String, Value>>,
    produced: &Produced,
    topic: &str,
) {
    let mut end: BTreeMap<String, i64> = BTreeMap::new();
    for sources in positions.values() {
        for src in sources.values() {
            for (p, r) in src["partitions"].as_object().into_iter().flatten() {
                end.insert(p.clone(), r["to"].as_i64().unwrap());
            }
        }
    }
    for (p, msgs) in produced {
        assert_eq!(
            end.get(&format!("{topic}/{p}")).copied(),
            Some(msgs.keys().next_back().unwrap() + 1),
            "partition {p} is not recorded up to its end"
        );
    }
}

pub(crate) fn all_positions(lakehouse: &Path) -> BTreeMap<u64, serde_json::Map<String, Value>> {
    let mut positions = recorded_positions(&lakehouse.join("customers")).unwrap();
    // An epoch that changed no table (all its records stale, say) has its positions in the
    // commits of `_event_log` only (every epoch has one), as restart reads them too.
    for table in ["_quarantine", "_event_log"] {
        if lakehouse.join(table).join("_delta_log").exists() {
            for (e, p) in recorded_positions(&lakehouse.join(table)).unwrap() {
                if let Some(old) = positions.insert(e, p.clone()) {
                    assert_eq!(old, p, "epoch {e} recorded differently by {table}");
                }
            }
        }
    }
    positions
}

/// The bank lakehouse equals the model over everything produced, every version equals the
/// model over its epochs' ranges, and the quarantine holds each bad message once.
pub(crate) fn check_bank(
    lakehouse: &Path,
    produced: &Produced,
    topic: &str,
    bad_values: usize,
    oversized_values: usize,
) {
    let positions = all_positions(lakehouse);
    assert_fully_recorded(&positions, produced, topic);
    let values = values_up_to(&positions, produced, topic, "cdc", None);
    let model = reference_apply(
        values.iter().map(|v| v.as_slice()),
        &["customer_id"],
        "__lsn",
    );
    let expected = canonical(&reference_rows(&model));
    let table = lakehouse.join("customers");
    assert_eq!(
        canonical(&py_read_table(&table, None).unwrap().rows),
        expected,
        "pyarrow reader"
    );
    assert_eq!(
        canonical(&deltalake_rows(&table, None).unwrap()),
        expected,
        "delta-rs reader"
    );
    let log = py_read_log(&table).unwrap();
    let mut last = -1;
    for (k, c) in log.iter().enumerate() {
        let epoch = c.commit_info["tidewater"]["epoch"].as_i64().unwrap();
        assert!(epoch > last, "epoch {epoch} committed after {last}");
        last = epoch;
        let vals = values_up_to(&positions, produced, topic, "cdc", Some(epoch as u64));
        let m = reference_apply(vals.iter().map(|v| v.as_slice()), &["customer_id"], "__lsn");
        assert_eq!(
            canonical(&deltalake_rows(&table, Some(k as i64)).unwrap()),
            canonical(&reference_rows(&m)),
            "version {k} is not the state after epoch {epoch}"
        );
    }
    // Quarantine: the malformed values and the oversized one, each once, with its position.
    let q = py_read_table(&lakehouse.join("_quarantine"), None).unwrap();
    assert_eq!(model.bad.len(), bad_values, "malformed values in the model");
    assert_eq!(
        q.rows.len(),
        bad_values + oversized_values,
        "quarantine rows"
    );
    let oversized: Vec<_> = q
        .rows
        .iter()
        .filter(|r| r["reason"].as_str().unwrap().contains("max_message_bytes"))
        .collect();
    assert_eq!(oversized.len(), oversized_values);
    for r in oversized {
        let pos = r["position"].as_str().unwrap();
        let (p, o) = pos.rsplit_once('@').unwrap();
        let (t, part) = p.rsplit_once('/').unwrap();
        assert_eq!(t, topic);
        let v = produced[&part.parse::<i32>().unwrap()][&o.parse::<i64>().unwrap()]
            .as_ref()
            .unwrap();
        assert!(v.len() > MAX_MESSAGE_BYTES, "{pos}");
    }
    let mut raws: Vec<&str> = q
        .rows
        .iter()
        .filter(|r| !r["reason"].as_str().unwrap().contains("max_message_bytes"))
        .map(|r| r["raw"].as_str().unwrap())
        .collect();
    raws.sort();
    let mut want: Vec<String> = values
        .iter()
        .map(|v| String::from_utf8_lossy(v).to_string())
        .filter(|v| v.starts_with("{\"broken\""))
        .collect();
    want.sort();
    assert_eq!(raws, want);
    assert_eq!(want.len(), bad_values);
}

#[test]
fn debezium_topic_into_delta_exactly_once_with_restart_and_crash() {
    let Some(tansu) = tansu_or_skip("kafka_pipeline") else {
        return;
    };
    let broker = Broker::start(&tansu).unwrap();
    let topic = unique_topic("bank");
    broker.create_topic(&topic, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut produced = Produced::new();
    produce(&broker, &topic, &bank_messages(5, 3000, "a"), &mut produced);
    let (p, lakehouse) = pipeline(
        dir.path(),
        "bank",
        &broker.brokers(),
        &topic,
        "customers",
        "customer_id",
        "commit_every_records = 400\nstate_checkpoint_every = 3",
    );
    run_ok(&p, 2);
    check_bank(&lakehouse, &produced, &topic, 6, 1);

    // More messages; a crash before a commit; a restart with 3 workers continues exactly.
    produce(&broker, &topic, &bank_messages(6, 2000, "b"), &mut produced);
    let args = run_args(&p, 2);
    abort_at(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "after_parquet_before_commit:2",
        dir.path(),
    );
    let stderr = run_ok(&p, 3);
    assert!(stderr.contains("restart:"), "{stderr}");
    check_bank(&lakehouse, &produced, &topic, 10, 2);
    // Nothing new: a run reads nothing and changes nothing.
    let versions = py_read_log(&lakehouse.join("customers")).unwrap().len();
    run_ok(&p, 1);
    assert_eq!(
        py_read_log(&lakehouse.join("customers")).unwrap().len(),
        versions
    );
}

/// The transfers stream as messages: with `partitions > 1` every message of a transaction
/// goes to the partition of its transaction id.
pub(crate) fn transfer_messages(partitions: u64) -> (TransfersGenerator, Values) {
    let mut g = TransfersGenerator::new(TransfersGenConfig {
        seed: 4,
        events: 6_000,
        accounts: 200,
        ..Default::default()
    });
    let (mut values, mut line) = (Vec::new(), Vec::new());
    while g.next_line(&mut line) {
        let tx = DebeziumParser::transaction_id(&line).unwrap();
        let p = (tx.bytes().map(u64::from).sum::<u64>() % partitions) as i32;
        values.push((p, Some(std::mem::take(&mut line))));
    }
    (g, values)
}

fn tx_of(produced: &Produced, partition: i32, offset: i64) -> Option<String> {
    produced[&partition]
        .get(&offset)
        .map(|v| DebeziumParser::transaction_id(v.as_ref().unwrap()).unwrap())
}

#[test]
fn transactions_are_never_split_and_every_version_balances() {
    let Some(tansu) = tansu_or_skip("kafka_pipeline") else {
        return;
    };
    let broker = Broker::start(&tansu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One partition: its order is the database's commit order, so every epoch is a prefix of
    // whole transactions and every version has the initial total. Three partitions (each
    // transaction in one): every epoch's range of every partition ends at a transaction
    // boundary. Epochs of 40 records per worker would cut many transactions if allowed to.
    for partitions in [1u64, 3] {
        let topic = unique_topic("accounts");
        broker.create_topic(&topic, partitions as i32).unwrap();
        let (g, values) = transfer_messages(partitions);
        let mut produced = Produced::new();
        produce(&broker, &topic, &values, &mut produced);
        let (p, lakehouse) = pipeline(
            dir.path(),
            &format!("transfers{partitions}"),
            &broker.brokers(),
            &topic,
            "accounts",
            "account_id",
            "commit_every_records = 40",
        );
        run_ok(&p, 2);
        let table = lakehouse.join("accounts");
        let truth = canonical(&ground_truth_rows(&g.ground_truth()).unwrap());
        assert_eq!(canonical(&deltalake_rows(&table, None).unwrap()), truth);
        let log = py_read_log(&table).unwrap();
        assert!(log.len() > 20, "{} versions", log.len());
        let positions = recorded_positions(&table).unwrap();
        let mut cuts = 0;
        for (e, src) in &positions {
            for (name, r) in src["cdc"]["partitions"].as_object().unwrap() {
                let part: i32 = name.rsplit_once('/').unwrap().1.parse().unwrap();
                let to = r["to"].as_i64().unwrap();
                if let (Some(before), Some(after)) =
                    (tx_of(&produced, part, to - 1), tx_of(&produced, part, to))
                {
                    assert_ne!(
                        before, after,
                        "epoch {e} ends inside transaction {before} in {name}"
                    );
                    cuts += 1;
                }
            }
        }
        assert!(cuts > 20, "{cuts} cuts inside the stream");
        if partitions == 1 {
            for v in 0..log.len() as i64 {
                let rows = deltalake_rows(&table, Some(v)).unwrap();
                assert_eq!(
                    column_sum(&rows, "balance"),
                    g.initial_total(),
                    "version {v}"
                );
            }
        }
    }
}

#[test]
fn a_broker_that_goes_away_mid_stream_loses_nothing() {
    let Some(tansu) = tansu_or_skip("kafka_pipeline") else {
        return;
    };
    let mut broker = Broker::start(&tansu).unwrap();
    let topic = unique_topic("outage");
    broker.create_topic(&topic, 3).unwrap();
    let mut produced = Produced::new();
    produce(
        &broker,
        &topic,
        &bank_messages(8, 12_000, "c"),
        &mut produced,
    );
    let dir = tempfile::tempdir().unwrap();
    let (p, lakehouse) = pipeline(
        dir.path(),
        "bank",
        &broker.brokers(),
        &topic,
        "customers",
        "customer_id",
        "commit_every_records = 500",
    );
    let child = Command::new(tidewater_bin())
        .args(run_args(&p, 2))
        .env("TIDEWATER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first epoch is committed, the broker goes away for 2 s.
    let first = lakehouse.join("customers/_delta_log/00000000000000000000.json");
    let started = Instant::now();
    while !first.exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(first.exists(), "no first commit");
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    check_bank(&lakehouse, &produced, &topic, 24, 1);
}

#[test]
fn an_unreachable_broker_and_a_missing_topic_are_clear_errors() {
    let Some(tansu) = tansu_or_skip("kafka_pipeline") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("127.0.0.1:{}", free_port());
    let (p, _) = pipeline(
        dir.path(),
        "bank",
        &closed,
        "t",
        "customers",
        "customer_id",
        "",
    );
    let started = Instant::now();
    let out = tidewater(
        &run_args(&p, 1)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&closed),
        "the error names the brokers: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let broker = Broker::start(&tansu).unwrap();
    let (p, _) = pipeline(
        dir.path(),
        "bank2",
        &broker.brokers(),
        "no-such-topic",
        "customers",
        "customer_id",
        "",
    );
    let out = tidewater(
        &run_args(&p, 1)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no-such-topic"),
        "the error names the topic: {stderr}"
    );
}

#[test]
fn committed_offsets_are_reported_to_a_consumer_group_for_lag_tools() {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let Some(tansu) = tansu_or_skip("kafka_pipeline") else {
        return;
    };
    let broker = Broker::start(&tansu).unwrap();
    let topic = unique_topic("lag");
    broker.create_topic(&topic, 3).unwrap();
    let mut produced = Produced::new();
    produce(&broker, &topic, &bank_messages(9, 900, "g"), &mut produced);
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = pipeline(
        dir.path(),
        "bank",
        &broker.brokers(),
        &topic,
        "customers",
        "customer_id",
        "",
    );
    let group = unique_topic("tidewater-lag");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "transaction_wait_ms = 500\n",
        &format!("transaction_wait_ms = 500\ngroup_id = \"{group}\"\n"),
    );
    std::fs::write(&p, text).unwrap();
    run_ok(&p, 2);
    // What a lag tool sees: the group's offsets are the end of every partition.
    let viewer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", &group)
        .create()
        .unwrap();
    let want: Vec<Offset> = produced
        .values()
        .map(|m| Offset::Offset(m.keys().next_back().unwrap() + 1))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in produced.keys() {
        tpl.add_partition(&topic, *p);
    }
    let got: Vec<Offset> = viewer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.offset())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_delete_without_its_key_in_the_value_takes_it_from_the_message_key() {
    let Some(tansu) = tansu_or_skip("kafka_pipeline") else {
        return;
    };
    let broker = Broker::start(&tansu).unwrap();
    let topic = unique_topic("keys");
    broker.create_topic(&topic, 1).unwrap();
    let create = |id: i64, lsn: i64| {
        format!(
            r#"{{"before":null,"after":{{"customer_id":{id},"name":"c{id}"}},"source":{{"lsn":{lsn}}},"op":"c","ts_ms":1}}"#
        )
    };
    let delete = |lsn: i64| {
        format!(r#"{{"before":null,"after":null,"source":{{"lsn":{lsn}}},"op":"d","ts_ms":2}}"#)
    };
    let (c1, c2, d1, d3) = (create(1, 10), create(2, 11), delete(12), delete(13));
    // The key with its schema block (as Debezium's JsonConverter writes it) and without.
    let k1 = r#"{"schema":{"type":"struct","fields":[{"type":"int64","field":"customer_id"}]},"payload":{"customer_id":1}}"#;
    let k2 = r#"{"customer_id":2}"#;
    let msgs: Vec<tidewater_e2e::kafka::Message<'_>> = vec![
        (
            0,
            Some(br#"{"customer_id":1}"#.as_slice()),
            Some(c1.as_bytes()),
        ),
        (0, Some(k2.as_bytes()), Some(c2.as_bytes())),
        (0, Some(k1.as_bytes()), Some(d1.as_bytes())),
        (0, None, Some(d3.as_bytes())),
    ];
    broker.produce(&topic, &msgs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (p, lakehouse) = pipeline(
        dir.path(),
        "bank",
        &broker.brokers(),
        &topic,
        "customers",
        "customer_id",
        "",
    );
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "sequence_by = \"__lsn\"\n",
        "sequence_by = \"__lsn\"\ncolumns = { customer_id = \"int64\", name = \"string\" }\n",
    );
    std::fs::write(&p, text).unwrap();
    run_ok(&p, 1);
    let rows = deltalake_rows(&lakehouse.join("customers"), None).unwrap();
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r["customer_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![2], "customer 1 deleted through its message key");
    let q = py_read_table(&lakehouse.join("_quarantine"), None).unwrap();
    assert_eq!(q.rows.len(), 1, "the delete without any key is quarantined");
    assert!(
        q.rows[0]["position"].as_str().unwrap().ends_with("/0@3"),
        "{:?}",
        q.rows[0]
    );
}

/// Produces `values` to `topic` with the independent Python client (confluent-kafka, its own
/// librdkafka), or returns false if it is not installed (and not in CI).
fn produce_with_python(
    brokers: &str,
    topic: &str,
    values: &[(i32, Option<Vec<u8>>)],
    dir: &Path,
) -> bool {
    let python = tidewater_e2e::python_reader::python();
    let has = Command::new(&python)
        .args(["-c", "import confluent_kafka"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "confluent-kafka is missing from {} (scripts/test installs it)",
            python.display()
        );
        eprintln!(
            "SKIPPED: confluent-kafka is not installed for {}",
            python.display()
        );
        return false;
    }
    // One message per line: partition, then the value as hex ("-" for a tombstone).
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let lines: String = values
        .iter()
        .map(|(p, v)| format!("{p} {}\n", v.as_deref().map_or("-".to_string(), hex)))
        .collect();
    let file = dir.join("messages.txt");
    std::fs::write(&file, lines).unwrap();
    let script = r#"
import sys
from confluent_kafka import Producer
brokers, topic, path = sys.argv[1:4]
p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True})
errors = []
def done(err, msg):
    if err is not None:
        errors.append(str(err))
with open(path) as f:
    for line in f:
        part, value = line.split()
        p.produce(topic, value=None if value == "-" else bytes.fromhex(value), partition=int(part), on_delivery=done)
        p.poll(0)
left = p.flush(30)
if left or errors:
    sys.exit(f"not delivered: {left}, errors: {errors[:3]}")
"#;
    let out = Command::new(&python)
        .args(["-c", script, brokers, topic, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python producer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn messages_from_an_independent_producer_give_the_model() {
    let Some(tansu) = tansu_or_skip("kafka_pipeline") else {
        return;
    };
    let broker = Broker::start(&tansu).unwrap();
    let topic = unique_topic("independent");
    broker.create_topic(&topic, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let values = bank_messages(31, 4000, "p");
    if !produce_with_python(&broker.brokers(), &topic, &values, dir.path()) {
        return;
    }
    // The offsets the broker gave: in order per partition, from 0.
    let mut produced = Produced::new();
    for (p, v) in &values {
        let m = produced.entry(*p).or_default();
        let next = m.len() as i64;
        m.insert(next, v.clone());
    }
    let (p, lakehouse) = pipeline(
        dir.path(),
        "bank",
        &broker.brokers(),
        &topic,
        "customers",
        "customer_id",
        "commit_every_records = 700",
    );
    run_ok(&p, 2);
    check_bank(&lakehouse, &produced, &topic, 8, 1);
}
