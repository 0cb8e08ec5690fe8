//! A tansu broker for the benchmark (the approach of `tests/kafka.rs`, see
//! `shared/kafka-broker.md`): one process on a free 127.0.0.1 port with its sqlite storage in
//! a temp dir, stopped by its pid when dropped (also on an error or a panic); topics created
//! with the CreateTopics admin API; an idempotent producer that reports every message's offset.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Where the tansu binary is expected: `$TIDEWATER_TANSU`, else
/// `$HOME/.cache/tidewater/tansu/bin/tansu`.
pub fn default_tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("TIDEWATER_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/tidewater/tansu/bin/tansu")
}

/// A running tansu broker.
pub struct Broker {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// Starts `tansu` on a free port with an empty storage in a temp dir and waits (at most
    /// 20 s) until it accepts connections. The port is picked free but could be taken before
    /// tansu binds it: tries three ports.
    pub fn start(tansu: &Path) -> anyhow::Result<Broker> {
        if !tansu.is_file() {
            bail!(
                "no tansu broker at {} (see shared/kafka-broker.md to install it, or set \
                 TIDEWATER_TANSU / --tansu)",
                tansu.display()
            );
        }
        let mut last = None;
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut b = Broker {
                port,
                dir: tempfile::Builder::new().prefix("bench-tansu-").tempdir()?,
                child: None,
            };
            match b.spawn(tansu) {
                Ok(()) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried"))
    }

    fn spawn(&mut self, tansu: &Path) -> anyhow::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.path().join("tansu.log"))?;
        let child = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            // The sqlite path is relative to the working directory.
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", tansu.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().expect("child").try_wait()? {
                self.child = None;
                bail!(
                    "tansu exited ({status}) before accepting connections on port {}:\n{}",
                    self.port,
                    self.log()
                );
            }
            if started.elapsed() > Duration::from_secs(20) {
                self.stop();
                bail!(
                    "tansu did not accept connections on port {} within 20 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// Stops the broker by its pid (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Creates `name` with `partitions` partitions and waits until its metadata shows them
    /// all (tansu does not auto-create topics).
    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .create()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        for r in rt.block_on(admin.create_topics([&topic], &opts))? {
            if let Err((t, code)) = r {
                bail!("create topic {t}: {code}");
            }
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .create()?;
        let started = Instant::now();
        loop {
            let md = consumer.fetch_metadata(Some(name), Duration::from_secs(5))?;
            if md.topics().iter().any(|t| {
                t.name() == name && t.error().is_none() && t.partitions().len() as i32 == partitions
            }) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("topic {name} not visible with {partitions} partitions after 10 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The delivery of message `.0`: its offset and when the report was served, or the error.
type Delivery = (usize, Result<(i64, Instant), String>);

/// Delivery reports by message index.
#[derive(Default)]
struct Deliveries(Mutex<Vec<Delivery>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, i: usize) {
        let r = match r {
            Ok(m) => Ok((m.offset(), Instant::now())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().expect("lock").push((i, r));
    }
}

/// An idempotent producer to one topic (so each partition holds the messages sent to it, in
/// send order, once) that collects every message's offset.
pub struct Producer {
    inner: BaseProducer<Deliveries>,
    topic: String,
    sent: usize,
}

impl Producer {
    /// A producer to `topic`, batching for at most `linger_ms`.
    pub fn new(brokers: &str, topic: &str, linger_ms: u64) -> anyhow::Result<Producer> {
        let inner = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", linger_ms.to_string())
            .set("message.timeout.ms", "60000")
            .create_with_context(Deliveries::default())
            .context("cannot create a Kafka producer")?;
        Ok(Producer {
            inner,
            topic: topic.to_string(),
            sent: 0,
        })
    }

    /// Sends message number `i` (0, 1, 2, … in order) to `partition`; waits while the local
    /// queue is full.
    pub fn send(
        &mut self,
        i: usize,
        partition: i32,
        key: &[u8],
        value: &[u8],
    ) -> anyhow::Result<()> {
        let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, i)
            .partition(partition)
            .key(key)
            .payload(value);
        loop {
            match self.inner.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    self.inner.poll(Duration::from_millis(10));
                }
                Err((e, _)) => bail!("produce message {i} to {}: {e}", self.topic),
            }
        }
        self.sent += 1;
        // Serve delivery reports (non-blocking).
        self.inner.poll(Duration::ZERO);
        Ok(())
    }

    /// Waits until every message sent since the last flush is acknowledged; returns, by index,
    /// their offsets and when their acknowledgement was served (delivery reports are served
    /// by `send` and `flush`: while sending at a steady rate, within one send interval of the
    /// broker's answer). The next batch is numbered from 0 again; the producer stays
    /// connected.
    pub fn flush(&mut self) -> anyhow::Result<Vec<(i64, Instant)>> {
        self.inner
            .flush(Duration::from_secs(120))
            .context("flushing the producer")?;
        let mut results = std::mem::take(&mut *self.inner.context().0.lock().expect("lock"));
        let sent = std::mem::take(&mut self.sent);
        if results.len() != sent {
            bail!("{} of {sent} messages acknowledged", results.len());
        }
        results.sort_by_key(|(i, _)| *i);
        results
            .into_iter()
            .enumerate()
            .map(|(n, (i, r))| match r {
                Ok(o) if i == n => Ok(o),
                Ok(_) => bail!("delivery reports do not cover messages 0..{sent}"),
                Err(e) => bail!("message {i} to {}: {e}", self.topic),
            })
            .collect()
    }
}

/// The `customer_id` of a bank-generator line (of `after`, or of `before` for a delete: the
/// first occurrence either way, the other row being null).
pub fn customer_id(line: &[u8]) -> Option<u64> {
    const FIELD: &[u8] = b"\"customer_id\":";
    let at = line.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let digits: &[u8] = &line[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// One message of the benchmark: the partition (by key), the Debezium key JSON, the value.
pub struct Message {
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Generates `cfg.events` bank-customers lines as messages keyed by `customer_id`, each in
/// partition `customer_id % partitions` (Debezium's per-key partitioning: a key's events stay
/// in order within one partition).
pub fn bank_messages(
    cfg: &tidewater_connectors::generator::BankGenConfig,
    partitions: i32,
) -> anyhow::Result<Vec<Message>> {
    let mut generator = tidewater_connectors::generator::BankGenerator::new(cfg.clone());
    let mut out = Vec::with_capacity(cfg.events as usize);
    let mut line = Vec::new();
    while generator.next_line(&mut line) {
        let id = customer_id(&line)
            .with_context(|| format!("no customer_id in {}", String::from_utf8_lossy(&line)))?;
        out.push(Message {
            partition: (id % partitions as u64) as i32,
            key: format!("{{\"customer_id\":{id}}}").into_bytes(),
            value: std::mem::take(&mut line),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids_are_found() {
        assert_eq!(
            customer_id(br#"{"before":null,"after":{"customer_id":1234,"name":"x"}}"#),
            Some(1234)
        );
        assert_eq!(
            customer_id(br#"{"before":{"customer_id":7},"after":null}"#),
            Some(7)
        );
        assert_eq!(customer_id(b"{}"), None);
        let cfg = tidewater_connectors::generator::BankGenConfig {
            events: 500,
            keys: 50,
            ..Default::default()
        };
        let msgs = bank_messages(&cfg, 3).unwrap();
        assert_eq!(msgs.len(), 500);
        assert!(msgs.iter().all(|m| (0..3).contains(&m.partition)));
    }
}
