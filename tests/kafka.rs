//! A real Kafka-protocol broker for tests: tansu (see `shared/kafka-broker.md`), one process per
//! [`Broker`], on a free 127.0.0.1 port with its sqlite storage in a temp dir, stopped by its pid
//! when dropped. Topics are created with the CreateTopics admin API and never deleted (deleting
//! one topic deletes all in tansu): use [`unique_topic`].
//!
//! The broker binary is `$TIDEWATER_TANSU`, else `$HOME/.cache/tidewater/tansu/bin/tansu`
//! (`scripts/test` installs it there). Without it, [`tansu_or_skip`] makes a test skip with a
//! message, except under `CI=true`, where it fails.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Where the tansu binary is expected: `$TIDEWATER_TANSU`, else
/// `$HOME/.cache/tidewater/tansu/bin/tansu`.
pub fn tansu_location() -> PathBuf {
    if let Some(p) = std::env::var_os("TIDEWATER_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/tidewater/tansu/bin/tansu")
}

/// The tansu binary, if it is installed.
pub fn tansu() -> Option<PathBuf> {
    let p = tansu_location();
    p.is_file().then_some(p)
}

/// The tansu binary; when it is missing, `None` after printing why `test` is skipped — or a
/// failure when `CI=true` (CI must run the Kafka tests).
pub fn tansu_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(p) = tansu() {
        return Some(p);
    }
    let where_ = tansu_location();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test}: the tansu broker is missing at {} and CI=true: the Kafka tests must run \
             (scripts/test installs tansu, or set TIDEWATER_TANSU)",
            where_.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: no tansu broker at {} (run scripts/test to install it, or set \
         TIDEWATER_TANSU)",
        where_.display()
    );
    None
}

/// A topic name no other test uses (process id, counter, time).
pub fn unique_topic(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{t}", std::process::id())
}

/// A 127.0.0.1 port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A message to produce: (partition, key, value); a `None` value is a tombstone.
pub type Message<'a> = (i32, Option<&'a [u8]>, Option<&'a [u8]>);

/// A running tansu broker.
pub struct Broker {
    tansu: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker with the given tansu binary on a free port with an empty storage.
    pub fn start(tansu: &Path) -> anyhow::Result<Broker> {
        let mut last = None;
        // The port is picked free but could be taken before tansu binds it: try a few.
        for _ in 0..3 {
            let mut b = Broker {
                tansu: tansu.to_path_buf(),
                port: free_port(),
                dir: tempfile::Builder::new().prefix("tansu-").tempdir()?,
                child: None,
            };
            match b.spawn() {
                Ok(()) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried"))
    }

    /// `127.0.0.1:<port>`, the bootstrap servers.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's working directory (sqlite storage, `tansu.stderr`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the broker wrote to stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.stderr")).unwrap_or_default()
    }

    /// Starts the process and waits (at most 20 s) until it accepts connections.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.stderr"))?;
        let child = Command::new(&self.tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.tansu.display()))?;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().expect("child").try_wait()? {
                self.child = None;
                bail!(
                    "tansu exited ({status}) before accepting connections on port {}:\n{}",
                    self.port,
                    self.stderr()
                );
            }
            if start.elapsed() > Duration::from_secs(20) {
                self.stop();
                bail!(
                    "tansu did not accept connections on port {} within 20 s:\n{}",
                    self.port,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker by its pid (SIGKILL) and waits for it; storage is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port with the same storage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Creates `name` with `partitions` partitions and waits until its metadata shows them
    /// all.
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
        let start = Instant::now();
        loop {
            let md = consumer.fetch_metadata(Some(name), Duration::from_secs(5))?;
            if md.topics().iter().any(|t| {
                t.name() == name && t.error().is_none() && t.partitions().len() as i32 == partitions
            }) {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("topic {name} not visible with {partitions} partitions after 10 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Produces `messages` (partition, key, value; `None` value = tombstone) in order with an
    /// idempotent producer, waits until every one is acknowledged, and returns their offsets.
    pub fn produce(&self, topic: &str, messages: &[Message<'_>]) -> anyhow::Result<Vec<i64>> {
        let producer: BaseProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create_with_context(Deliveries::default())?;
        for (i, (p, k, v)) in messages.iter().enumerate() {
            let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, i).partition(*p);
            if let Some(k) = k {
                rec = rec.key(k);
            }
            if let Some(v) = v {
                rec = rec.payload(v);
            }
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        rec = r;
                        producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => bail!("produce message {i} to {topic}: {e}"),
                }
            }
        }
        producer.flush(Duration::from_secs(60))?;
        let mut results = std::mem::take(&mut *producer.context().0.lock().expect("lock"));
        if results.len() != messages.len() {
            bail!(
                "{} of {} messages acknowledged",
                results.len(),
                messages.len()
            );
        }
        results.sort_by_key(|(i, _)| *i);
        results
            .into_iter()
            .map(|(i, r)| match r {
                Ok((p, o)) if p == messages[i].0 => Ok(o),
                Ok((p, _)) => bail!("message {i} went to partition {p}"),
                Err(e) => bail!("message {i} to {topic}: {e}"),
            })
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The delivery of message `.0`: its (partition, offset), or the error.
type Delivery = (usize, Result<(i32, i64), String>);

/// Delivery results by message index.
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
        self.0.lock().expect("lock").push((i, r));
    }
}
