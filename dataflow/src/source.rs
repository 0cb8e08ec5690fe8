//! The timely source side: the *cutter* of each source (on worker 0) decides epochs and
//! cuts the input into blocks; every worker *parses* the blocks routed to it into changes
//! (and quarantine rows).
//!
//! The cutter is the only place where epochs are decided. It closes an epoch when
//! `commit_every_records` records were cut, when `max_epoch_bytes` were cut, or when
//! `commit_interval_ms` has passed and the epoch has data — and never inside a source
//! transaction: before closing, it extends the epoch to the end of the transaction of its last
//! line. The positions an epoch covers are handed to the committer (also on worker 0).
//!
//! How fast the cutter goes decides what `commit_interval_ms` means for input that is already
//! there (a backlog). A *files* source without `commit_every_records` cuts ahead of the
//! parsing: each activation cuts all the input it finds, up to the epoch's limits (a file
//! block is only a byte range, found with a read of a few KiB at its end; the parsing workers
//! read the bytes), so an epoch is the input that was there when the cutter looked within the
//! interval — a backlog fills epochs up to `max_epoch_bytes` — and not what worker 0 happened
//! to have parsed by then (which made the number of epochs of a given input depend on timing).
//! A source that is followed (new lines or files appearing) is cut as the input arrives, every
//! `commit_interval_ms`, as before. Generator blocks carry their lines and `commit_every_records`
//! counts lines by reading them, so those cutters keep cutting a few blocks per activation
//! (paced by the parsing of worker 0). None of this changes what an epoch records or how it is
//! replayed: the recorded ranges are replayed exactly, whatever cut them.
//!
//! An idle cutter (a watched directory with no new file, a paced generator with nothing due)
//! still lets time pass: after `commit_interval_ms` without input it moves to the next epoch
//! and records nothing for the one it leaves, so one quiet source does not hold back the epochs
//! of the others (an epoch completes only once every source has passed it).
//!
//! On restart, a cutter first replays the recorded cut of every committed epoch (the ranges
//! its source recorded in the Delta logs, with the same epoch numbers — see [`plan_replay`]),
//! then continues after the last recorded range, deciding epochs from `max_epoch + 1` on.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tidewater_connectors::delta::ResumeInfo;
use tidewater_connectors::files::{piece_end, BlockReader, FileBlock, FileCutter};
use tidewater_connectors::formats::{DebeziumParser, Parsed};
use tidewater_connectors::generator::{Generator, GeneratorConfig};
use tidewater_connectors::types::{Column, PackedRow, Schema};
use tidewater_operators::{Change, EpochStash};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use crate::config::{PipelineConfig, SchemaEvolution, SourceConfig, SourceKind};
use crate::metrics::Metrics;
use crate::table::{unknown_columns, Outcome, QuarantineRow, Rejected, TablePlan, TableStats};
use crate::{failpoint, Key, Seq, TidewaterError};

/// A block of input to parse.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BlockData {
    /// A byte range of a file (read by the parsing worker itself).
    File(FileBlock),
    /// Generated lines, newline-terminated; `first` is the index of the first line.
    Inline {
        /// Index of the first line in the generated stream.
        first: u64,
        /// The lines.
        bytes: Vec<u8>,
    },
    /// Kafka messages of one partition, in offset order (tombstones left out).
    Kafka {
        /// `topic/partition`.
        partition: String,
        /// The messages.
        records: Vec<KafkaMessage>,
    },
}

/// One Kafka message to parse.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KafkaMessage {
    /// Its offset.
    pub offset: i64,
    /// Its value, or the size of a value over `max_message_bytes` (quarantined).
    pub value: Result<Vec<u8>, usize>,
    /// Its key (Debezium key JSON), used when the value lacks the key columns.
    pub key: Option<Vec<u8>>,
}

/// The envelope `value` with the key fields of the Debezium key JSON `key` (with or without
/// its `schema` block) filled into the row image (`before` for a delete, else `after`) where
/// they are missing or null; `None` if either is not a JSON object.
pub fn with_message_key(value: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(value).ok()?;
    let mut k: Value = serde_json::from_slice(key).ok()?;
    if k.get("schema").is_some() && k.get("payload").is_some_and(Value::is_object) {
        k = k["payload"].take();
    }
    let k = k.as_object()?;
    let env = if v.get("payload").is_some_and(Value::is_object) {
        &mut v["payload"]
    } else {
        &mut v
    };
    let env = env.as_object_mut()?;
    let image = if env.get("op").and_then(Value::as_str) == Some("d") {
        "before"
    } else {
        "after"
    };
    let img = env.entry(image).or_insert(Value::Null);
    if img.is_null() {
        *img = json!({});
    }
    let img = img.as_object_mut()?;
    for (name, val) in k {
        let slot = img.entry(name.clone()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = val.clone();
        }
    }
    serde_json::to_vec(&v).ok()
}

/// A block with its sequence number within its source (used to spread blocks over workers).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Block {
    /// Sequence number of the block in its source.
    pub seq: u64,
    /// The input.
    pub data: BlockData,
}

/// Positions covered by each epoch, per source, filled by the cutters and read by the
/// committer. Both live on worker 0, so this is shared in-thread state, never across workers.
pub type SharedPositions = Rc<RefCell<BTreeMap<u64, BTreeMap<String, Value>>>>;

/// The input of one source as the cutter sees it (one per source: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Input {
    Files(Box<FileCutter>),
    Generator {
        gen: Generator,
        total: u64,
        rate: u64,
        started: Instant,
        /// Lines generated before `started` (replayed on restart), not paced by `rate`.
        base: u64,
    },
}

/// One recorded input range of a replayed epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayRange {
    /// Bytes `start..end` of a file (line-aligned).
    File {
        /// The file.
        path: PathBuf,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// Generated lines `from..to`.
    Generator {
        /// Index of the first line.
        from: u64,
        /// One past the index of the last line.
        to: u64,
    },
    /// Offsets `from..to` of a Kafka partition.
    Kafka {
        /// `topic/partition`.
        partition: String,
        /// First offset.
        from: i64,
        /// The next offset after the range.
        to: i64,
    },
}

/// One recorded epoch of a source, to replay exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayEpoch {
    /// The epoch number.
    pub epoch: u64,
    /// The recorded positions value (`{kind, ranges, records}`), handed to the committer as is.
    pub positions: Value,
    /// Its ranges, in order.
    pub ranges: Vec<ReplayRange>,
    /// Records of the epoch (as recorded).
    pub records: u64,
}

/// What a source replays on restart, and where it continues.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceReplay {
    /// The recorded epochs of this source to replay, in order.
    pub epochs: Vec<ReplayEpoch>,
    /// The first epoch the cutter decides itself (the largest committed epoch + 1; 0 on a
    /// fresh lakehouse).
    pub next_epoch: u64,
    /// Recorded epochs not replayed because a checkpoint holds their effect (see
    /// [`SourceReplay::skip_through`]).
    pub skipped: Vec<ReplayEpoch>,
}

impl SourceReplay {
    /// Leaves out the epochs `≤ epoch` (restored from a checkpoint of that epoch): they are
    /// not replayed, but still count for where the input continues.
    pub fn skip_through(&mut self, epoch: u64) {
        let (skipped, kept) = std::mem::take(&mut self.epochs)
            .into_iter()
            .partition(|e| e.epoch <= epoch);
        self.skipped = skipped;
        self.epochs = kept;
    }

    /// Where each recorded Kafka partition starts reading: the first replayed range's
    /// `from`, else the end of its last skipped range. Partitions never recorded start at
    /// their earliest offset.
    pub fn kafka_starts(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for r in self.skipped.iter().flat_map(|e| &e.ranges) {
            if let ReplayRange::Kafka { partition, to, .. } = r {
                out.insert(partition.clone(), *to);
            }
        }
        let mut first = BTreeSet::new();
        for r in self.epochs.iter().flat_map(|e| &e.ranges) {
            if let ReplayRange::Kafka {
                partition, from, ..
            } = r
            {
                if first.insert(partition.clone()) {
                    out.insert(partition.clone(), *from);
                }
            }
        }
        out
    }

    /// The generator line the replay starts at: the end of the last skipped range.
    fn generator_start(&self) -> u64 {
        self.skipped
            .iter()
            .flat_map(|e| &e.ranges)
            .filter_map(|r| match r {
                ReplayRange::Generator { to, .. } => Some(*to),
                ReplayRange::File { .. } | ReplayRange::Kafka { .. } => None,
            })
            .next_back()
            .unwrap_or(0)
    }

    /// Files read completely by the recorded epochs (skipped or replayed), and the file and
    /// offset to continue at (the end of the last recorded range).
    fn file_resume_point(&self) -> Option<(BTreeSet<PathBuf>, PathBuf, u64)> {
        let mut files = BTreeSet::new();
        let mut last = None;
        for r in self
            .skipped
            .iter()
            .chain(&self.epochs)
            .flat_map(|e| &e.ranges)
        {
            if let ReplayRange::File { path, end, .. } = r {
                files.insert(path.clone());
                last = Some((path.clone(), *end));
            }
        }
        let (path, end) = last?;
        files.remove(&path);
        Some((files, path, end))
    }
}

fn replay_err(source: &str, message: String) -> TidewaterError {
    TidewaterError::Runtime(format!("cannot resume source `{source}`: {message}"))
}

/// Turns the recorded cut of a lakehouse into a replay plan per source of `cfg`, checking it
/// against the pipeline and the input: a recorded source that is no longer in the pipeline
/// file (or changed kind), a recorded file that is gone or shorter than recorded, or a gap in
/// a source's recorded ranges is an error naming it — never skipped.
pub fn plan_replay(
    cfg: &PipelineConfig,
    resume: &ResumeInfo,
) -> Result<BTreeMap<String, SourceReplay>, TidewaterError> {
    let next_epoch = resume.max_epoch.map_or(0, |e| e + 1);
    let mut out: BTreeMap<String, SourceReplay> = cfg
        .source
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                SourceReplay {
                    epochs: Vec::new(),
                    next_epoch,
                    skipped: Vec::new(),
                },
            )
        })
        .collect();
    // Where each file / the generator of a source was left by the previous recorded range.
    let mut file_next: BTreeMap<(String, PathBuf), u64> = BTreeMap::new();
    let mut gen_next: BTreeMap<String, u64> = BTreeMap::new();
    let mut kafka_next: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (epoch, sources) in &resume.recorded {
        for (name, pos) in sources {
            let Some(src) = cfg.source.iter().find(|s| &s.name == name) else {
                return Err(TidewaterError::Config {
                    key: format!("source `{name}`"),
                    message: format!(
                        "the lakehouse {} holds committed epochs read from source `{name}` \
                         (epoch {epoch}), which is not in the pipeline file; restore it or use \
                         a fresh lakehouse",
                        cfg.pipeline.lakehouse.display()
                    ),
                });
            };
            let kind = pos.get("kind").and_then(Value::as_str).unwrap_or("");
            let expected = match src.kind {
                SourceKind::Files => "files",
                SourceKind::Generator => "generator",
                SourceKind::Kafka => "kafka",
            };
            if kind != expected {
                return Err(TidewaterError::Config {
                    key: format!("source `{name}`.kind"),
                    message: format!(
                        "epoch {epoch} of source `{name}` was read as kind `{kind}`, the \
                         pipeline file now says `{expected}`"
                    ),
                });
            }
            let bad = |what: &str| {
                replay_err(
                    name,
                    format!("the recorded positions of epoch {epoch} are invalid ({what}): {pos}"),
                )
            };
            let mut ranges = Vec::new();
            if kind == "kafka" {
                let parts = pos
                    .get("partitions")
                    .and_then(Value::as_object)
                    .ok_or_else(|| bad("no partitions"))?;
                for (partition, r) in parts {
                    let num = |k: &str| r.get(k).and_then(Value::as_i64).ok_or_else(|| bad(k));
                    let (from, to) = (num("from")?, num("to")?);
                    if to < from {
                        return Err(bad("to < from"));
                    }
                    let key = (name.clone(), partition.clone());
                    if let Some(at) = kafka_next.get(&key) {
                        if *at != from {
                            return Err(replay_err(
                                name,
                                format!(
                                    "epoch {epoch} records offsets {from}..{to} of {partition}, \
                                     but the previous epochs end at offset {at} of it (a gap in \
                                     the recorded cut)"
                                ),
                            ));
                        }
                    }
                    kafka_next.insert(key, to);
                    ranges.push(ReplayRange::Kafka {
                        partition: partition.clone(),
                        from,
                        to,
                    });
                }
                out.get_mut(name)
                    .expect("source listed")
                    .epochs
                    .push(ReplayEpoch {
                        epoch: *epoch,
                        positions: pos.clone(),
                        ranges,
                        records: pos.get("records").and_then(Value::as_u64).unwrap_or(0),
                    });
                continue;
            }
            for r in pos
                .get("ranges")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("no ranges"))?
            {
                let num = |k: &str| r.get(k).and_then(Value::as_u64).ok_or_else(|| bad(k));
                if kind == "files" {
                    let path = PathBuf::from(
                        r.get("path")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad("path"))?,
                    );
                    let (start, end) = (num("start")?, num("end")?);
                    check_file_range(name, *epoch, &path, start, end)?;
                    let at = file_next.entry((name.clone(), path.clone())).or_insert(0);
                    if *at != start {
                        return Err(replay_err(
                            name,
                            format!(
                                "epoch {epoch} records bytes {start}..{end} of {}, but the \
                                 previous epochs end at byte {at} of it (a gap in the recorded cut)",
                                path.display()
                            ),
                        ));
                    }
                    *at = end;
                    ranges.push(ReplayRange::File { path, start, end });
                } else {
                    let (from, to) = (num("from")?, num("to")?);
                    let at = gen_next.entry(name.clone()).or_insert(0);
                    if *at != from || to < from {
                        return Err(replay_err(
                            name,
                            format!(
                                "epoch {epoch} records generated lines {from}..{to}, but the \
                                 previous epochs end at line {at} (a gap in the recorded cut)"
                            ),
                        ));
                    }
                    *at = to;
                    ranges.push(ReplayRange::Generator { from, to });
                }
            }
            if kind == "generator" {
                let now = generator_identity(src);
                // Positions recorded before `workload` existed were generated by the bank
                // generator.
                let recorded = pos.get("generator").map(|g| {
                    let mut g = g.clone();
                    if let Some(obj) = g.as_object_mut() {
                        obj.entry("workload").or_insert_with(|| json!("bank"));
                    }
                    g
                });
                if let Some(recorded) = recorded.filter(|g| *g != now) {
                    return Err(TidewaterError::Config {
                        key: format!("source `{name}`"),
                        message: format!(
                            "committed epoch {epoch} was generated with {recorded}, the pipeline \
                             file now says {now}; the replay would produce other lines"
                        ),
                    });
                }
                let total = src.generator().total_lines();
                if gen_next[name] > total {
                    return Err(replay_err(
                        name,
                        format!(
                            "epoch {epoch} records generated lines up to {}, but the generator \
                             now produces only {total} events",
                            gen_next[name]
                        ),
                    ));
                }
            }
            out.get_mut(name)
                .expect("source listed")
                .epochs
                .push(ReplayEpoch {
                    epoch: *epoch,
                    positions: pos.clone(),
                    ranges,
                    records: pos.get("records").and_then(Value::as_u64).unwrap_or(0),
                });
        }
    }
    Ok(out)
}

/// What determines the lines of a generator source (recorded with its positions, so that a
/// restart with different settings is refused instead of replaying other lines).
fn generator_identity(src: &SourceConfig) -> Value {
    match src.generator() {
        GeneratorConfig::Bank(g) => json!({
            "workload": "bank", "seed": g.seed, "events": g.events, "keys": g.keys,
            "with_schema": g.with_schema
        }),
        GeneratorConfig::Transfers(g) => json!({
            "workload": "transfers", "seed": g.seed, "events": g.events, "keys": g.accounts,
            "with_schema": g.with_schema
        }),
        // Every setting of the world and the stream decide the lines.
        GeneratorConfig::Marketing(g) => json!({
            "workload": "marketing", "stream": g.stream.name(), "seed": g.seed,
            "events": g.events, "accounts": g.accounts, "users": g.users, "leads": g.leads,
            "campaigns": g.campaigns, "duplicate_pct": g.duplicate_pct, "late_pct": g.late_pct,
            "late_distance": g.late_distance, "with_schema": g.with_schema
        }),
        GeneratorConfig::Telematics(g) => json!({
            "workload": "telematics", "stream": g.stream.name(), "seed": g.seed,
            "events": g.events, "vehicles": g.vehicles, "late_pct": g.late_pct,
            "very_late_pct": g.very_late_pct, "duplicate_pct": g.duplicate_pct,
            "claim_pct": g.claim_pct, "out_of_order_pct": g.out_of_order_pct,
            "with_schema": g.with_schema
        }),
        GeneratorConfig::Offers(g) => json!({
            "workload": "offers", "stream": g.stream.name(), "seed": g.seed,
            "events": g.events, "customers": g.customers, "late_pct": g.late_pct,
            "stale_pct": g.stale_pct, "duplicate_pct": g.duplicate_pct,
            "reversal_pct": g.reversal_pct, "with_schema": g.with_schema
        }),
    }
}

/// Checks that a recorded file range can be read again.
fn check_file_range(
    source: &str,
    epoch: u64,
    path: &Path,
    start: u64,
    end: u64,
) -> Result<(), TidewaterError> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => {
            return Err(replay_err(
                source,
                format!(
                    "file {} of committed epoch {epoch} cannot be read again ({e}); the input \
                     of committed epochs must stay in place to resume",
                    path.display()
                ),
            ))
        }
    };
    if len < end || start > end {
        return Err(replay_err(
            source,
            format!(
                "file {} is {len} bytes long, but committed epoch {epoch} read bytes \
                 {start}..{end} of it; the input of committed epochs must not shrink",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Reads the first lines of a source (up to `n` lines or 4 MiB) to fix its schema.
pub fn sample_lines(src: &SourceConfig, n: usize) -> Result<Vec<Vec<u8>>, crate::TidewaterError> {
    let mut out = Vec::new();
    match src.kind {
        SourceKind::Files => {
            let path = src.path.as_ref().expect("validated");
            let mut cutter = FileCutter::new(path)?;
            let mut buf = Vec::new();
            if let Some((block, _)) = cutter.next_block(4 << 20, Some(n as u64))? {
                block.read_into(&mut buf)?;
                out.extend(
                    buf.split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| l.to_vec()),
                );
            }
        }
        SourceKind::Generator => {
            let mut gen = src.generator().build();
            let mut line = Vec::new();
            while out.len() < n && gen.next_line(&mut line) {
                out.push(std::mem::take(&mut line));
            }
        }
        SourceKind::Kafka => {
            out = crate::kafka_source::sample_values(src, src.topics.as_deref().unwrap_or(&[]), n)?
        }
    }
    Ok(out)
}

/// Settings of a cutter.
pub struct CutterSettings {
    /// Source name.
    pub name: String,
    /// Epoch closing rules.
    pub interval: Duration,
    /// Records per epoch (deterministic epochs), if set.
    pub every_records: Option<u64>,
    /// Bytes per epoch at most.
    pub max_epoch_bytes: u64,
    /// Block size.
    pub block_bytes: u64,
    /// Stop when the input is exhausted (also for directories).
    pub exit_when_idle: bool,
}

/// Builds the cutter of a source: on worker 0 it emits blocks; elsewhere it emits nothing.
/// `committed` probes the committer, so the cutter never runs more than two epochs ahead of
/// the last committed epoch.
pub fn cutter<'scope>(
    scope: Scope<'scope, u64>,
    src: &SourceConfig,
    settings: CutterSettings,
    committed: ProbeHandle<u64>,
    positions: SharedPositions,
    metrics: Arc<Metrics>,
    replay: SourceReplay,
) -> Result<StreamVec<'scope, u64, Block>, crate::TidewaterError> {
    let active = scope.index() == 0;
    let peers = scope.peers() as u64;
    let mut input = if !active {
        None
    } else {
        Some(match src.kind {
            SourceKind::Files => {
                let mut cutter = FileCutter::new(src.path.as_ref().expect("validated"))?;
                // After the replay, continue where the last recorded range ended.
                if let Some((done, path, offset)) = replay.file_resume_point() {
                    cutter.resume_after(done, &path, offset)?;
                }
                Input::Files(Box::new(cutter))
            }
            SourceKind::Generator => {
                let cfg = src.generator();
                let mut gen = cfg.build();
                // After a checkpoint: regenerate (without parsing) the lines it covers.
                let start = replay.generator_start();
                let mut line = Vec::new();
                while gen.position() < start && gen.next_line(&mut line) {
                    line.clear();
                }
                Input::Generator {
                    total: cfg.total_lines(),
                    gen,
                    rate: src.rate.unwrap_or(0),
                    started: Instant::now(),
                    base: start,
                }
            }
            SourceKind::Kafka => unreachable!("a kafka source is read by `kafka_source`"),
        })
    };
    let kind = match src.kind {
        SourceKind::Files => "files",
        SourceKind::Generator => "generator",
        SourceKind::Kafka => "kafka",
    };
    // A generator's lines depend on its whole configuration: it is recorded with the ranges.
    let generator = (src.kind == SourceKind::Generator).then(|| generator_identity(src));
    let next_epoch = replay.next_epoch;
    let mut replay: VecDeque<ReplayEpoch> = if active {
        replay.epochs.into()
    } else {
        VecDeque::new()
    };
    let stream = source(
        scope,
        &format!("Cutter({})", settings.name),
        move |cap, info| {
            let activator = scope.activator_for(info.address);
            let mut cap: Option<Capability<u64>> = if active { Some(cap) } else { None };
            let mut seq = 0u64;
            let mut opened = Instant::now();
            let mut epoch_records = 0u64;
            let mut epoch_bytes = 0u64;
            let mut ranges: Vec<Value> = Vec::new();
            let mut line = Vec::new();

            move |output| {
                let Some(c) = cap.as_mut() else { return };
                let input = input.as_mut().expect("active");
                // Restart: replay the recorded epochs exactly, then decide epochs from
                // `next_epoch` on.
                let target = replay.front().map_or(next_epoch, |r| r.epoch);
                if *c.time() < target {
                    c.downgrade(&target);
                }
                let epoch = *c.time();
                // Pacing: at most two epochs ahead of the committed frontier.
                if epoch >= 2 && committed.less_equal(&(epoch - 2)) {
                    activator.activate_after(Duration::from_millis(5));
                    return;
                }
                if let Some(r) = replay.front_mut() {
                    let mut emitted = 0;
                    while emitted < 2 * peers.max(2) {
                        let Some(range) = r.ranges.first_mut() else {
                            break;
                        };
                        let data = match replay_block(range, input, settings.block_bytes, &mut line)
                        {
                            Ok(Some(data)) => data,
                            Ok(None) => {
                                r.ranges.remove(0);
                                continue;
                            }
                            Err(e) => {
                                metrics.fail(format!(
                                    "source `{}`: replaying epoch {}: {e}",
                                    settings.name, r.epoch
                                ));
                                cap = None;
                                return;
                            }
                        };
                        output.session(&*c).give(Block { seq, data });
                        seq += 1;
                        emitted += 1;
                    }
                    if r.ranges.is_empty() {
                        let r = replay.pop_front().expect("front");
                        metrics.records_cut.fetch_add(r.records, Ordering::Relaxed);
                        positions
                            .borrow_mut()
                            .entry(r.epoch)
                            .or_default()
                            .insert(settings.name.clone(), r.positions);
                        opened = Instant::now();
                        if let Input::Generator {
                            gen, started, base, ..
                        } = input
                        {
                            *started = Instant::now();
                            *base = gen.position();
                        }
                    }
                    activator.activate();
                    return;
                }
                let mut close = false;
                let mut exhausted = false;
                let mut emitted = 0;
                // A file source without `commit_every_records` cuts ahead of the parsing: all
                // the input there is now, up to the epoch's limits (blocks are only byte
                // ranges, read by the parsing workers), so that what an epoch holds is what
                // the cutter found within the interval, not what worker 0 happened to have
                // parsed by then (see the module docs). Otherwise a few blocks per activation.
                let cut_ahead =
                    matches!(input, Input::Files(_)) && settings.every_records.is_none();
                let per_activation = if cut_ahead {
                    u64::MAX
                } else {
                    2 * peers.max(2)
                };
                while emitted < per_activation {
                    let want = settings
                        .every_records
                        .map(|n| n.saturating_sub(epoch_records));
                    let block = match input {
                        Input::Files(cutter) => match cutter.next_block(settings.block_bytes, want)
                        {
                            Ok(Some((b, lines))) => {
                                let bytes = b.end - b.start;
                                epoch_bytes += bytes;
                                epoch_records += lines.unwrap_or(0);
                                push_range(&mut ranges, &b);
                                Some(BlockData::File(b))
                            }
                            Ok(None) => None,
                            Err(e) => {
                                metrics.fail(format!("source `{}`: {e}", settings.name));
                                cap = None;
                                return;
                            }
                        },
                        Input::Generator {
                            gen,
                            total,
                            rate,
                            started,
                            base,
                        } => {
                            let first = gen.position();
                            let mut allowed = want.unwrap_or(u64::MAX).min(*total - first);
                            if *rate > 0 {
                                let due =
                                    *base + (started.elapsed().as_secs_f64() * *rate as f64) as u64;
                                allowed = allowed.min(due.saturating_sub(first));
                            }
                            let mut bytes =
                                Vec::with_capacity(settings.block_bytes as usize + 1024);
                            let mut n = 0;
                            // A block never ends inside a source transaction (so neither does
                            // an epoch): past the limits, the transaction is finished.
                            while (n < allowed && (bytes.len() as u64) < settings.block_bytes
                                || gen.in_transaction())
                                && gen.next_line(&mut line)
                            {
                                bytes.extend_from_slice(&line);
                                bytes.push(b'\n');
                                line.clear();
                                n += 1;
                            }
                            if n == 0 {
                                None
                            } else {
                                epoch_records += n;
                                epoch_bytes += bytes.len() as u64;
                                ranges.push(json!({"from": first, "to": first + n}));
                                Some(BlockData::Inline { first, bytes })
                            }
                        }
                    };
                    let Some(data) = block else {
                        exhausted = true;
                        break;
                    };
                    output.session(&*c).give(Block { seq, data });
                    seq += 1;
                    emitted += 1;
                    if settings.every_records.is_some_and(|n| epoch_records >= n)
                        || epoch_bytes >= settings.max_epoch_bytes
                    {
                        close = true;
                        break;
                    }
                }
                let has_data = !ranges.is_empty();
                if has_data && opened.elapsed() >= settings.interval {
                    close = true;
                }
                let finished = exhausted
                    && match input {
                        Input::Files(cutter) => {
                            (!cutter.is_dir() || settings.exit_when_idle)
                                && cutter.is_exhausted().unwrap_or(false)
                        }
                        Input::Generator { gen, total, .. } => gen.position() >= *total,
                    };
                if !has_data && exhausted && !finished && opened.elapsed() >= settings.interval {
                    // Idle (a watched directory without new files, a paced generator): time
                    // still passes. The source moves to the next epoch without recording any
                    // input for this one, so that it does not hold back the epochs of the
                    // other sources (an epoch completes only when every source has passed it).
                    opened = Instant::now();
                    c.downgrade(&(epoch + 1));
                }
                if (close || finished) && has_data {
                    // Never split a source transaction: finish the last line's transaction here.
                    if let Input::Files(cutter) = input {
                        match cutter.finish_transaction(DebeziumParser::transaction_id) {
                            Ok(Some((b, lines))) => {
                                epoch_records += lines;
                                push_range(&mut ranges, &b);
                                output.session(&*c).give(Block {
                                    seq,
                                    data: BlockData::File(b),
                                });
                                seq += 1;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                metrics.fail(format!("source `{}`: {e}", settings.name));
                                cap = None;
                                return;
                            }
                        }
                    }
                    metrics
                        .records_cut
                        .fetch_add(epoch_records, Ordering::Relaxed);
                    positions.borrow_mut().entry(epoch).or_default().insert(
                    settings.name.clone(),
                    {
                        let mut p = json!({"kind": kind, "ranges": std::mem::take(&mut ranges), "records": epoch_records});
                        if let Some(g) = &generator {
                            p["generator"] = g.clone();
                        }
                        p
                    },
                );
                    epoch_records = 0;
                    epoch_bytes = 0;
                    opened = Instant::now();
                    c.downgrade(&(epoch + 1));
                }
                if finished && ranges.is_empty() {
                    cap = None; // the source is done: its frontier closes
                    return;
                }
                if exhausted && !close {
                    activator.activate_after(Duration::from_millis(20));
                } else {
                    activator.activate();
                }
            }
        },
    );
    Ok(stream)
}

/// The next block of a recorded range being replayed (advancing the range), or `None` when the
/// range is done.
fn replay_block(
    range: &mut ReplayRange,
    input: &mut Input,
    block_bytes: u64,
    line: &mut Vec<u8>,
) -> Result<Option<BlockData>, String> {
    match range {
        ReplayRange::File { path, start, end } => {
            if *start >= *end {
                return Ok(None);
            }
            let piece = piece_end(path, *start, *end, block_bytes).map_err(|e| e.to_string())?;
            let block = FileBlock {
                path: path.display().to_string(),
                start: *start,
                end: piece,
            };
            *start = piece;
            Ok(Some(BlockData::File(block)))
        }
        ReplayRange::Kafka { .. } => {
            Err("a kafka range recorded for a files or generator source".into())
        }
        ReplayRange::Generator { from, to } => {
            if *from >= *to {
                return Ok(None);
            }
            let Input::Generator { gen, .. } = input else {
                return Err("a generator range recorded for a files source".into());
            };
            if gen.position() != *from {
                return Err(format!(
                    "the generator is at line {}, the recorded range starts at {from}",
                    gen.position()
                ));
            }
            let first = *from;
            let mut bytes = Vec::with_capacity(block_bytes as usize + 1024);
            while *from < *to && (bytes.len() as u64) < block_bytes {
                if !gen.next_line(line) {
                    return Err(format!("the generator ended at line {from}, before {to}"));
                }
                bytes.extend_from_slice(line);
                bytes.push(b'\n');
                line.clear();
                *from += 1;
            }
            Ok(Some(BlockData::Inline { first, bytes }))
        }
    }
}

/// Appends a file block to an epoch's ranges, merging it with the previous range of the same
/// file when contiguous.
fn push_range(ranges: &mut Vec<Value>, b: &FileBlock) {
    if let Some(last) = ranges.last_mut() {
        if last["path"] == b.path && last["end"] == b.start {
            last["end"] = json!(b.end);
            return;
        }
    }
    ranges.push(json!({"path": b.path, "start": b.start, "end": b.end}));
}

/// Parses one record (a line or a message value) into the table's change: `Ok(None)` for a
/// tombstone line, `Err(reason)` for a record that cannot be applied. The parser's row is
/// recycled.
#[inline]
fn parse_record(
    parser: &mut DebeziumParser,
    plan: &TablePlan,
    scratch: &mut Vec<u8>,
    line: &[u8],
    stats: &mut TableStats,
    new_columns: &mut Vec<Column>,
) -> Result<Option<Outcome>, Rejected> {
    match parser.parse(line) {
        Ok(Parsed::Record { op, row }) => {
            let mut r = plan.change(op, &row, scratch, stats);
            if plan.new_columns_slot.is_some()
                && matches!(&r, Ok(Outcome::Change(c)) if c.value.is_some())
            {
                let found = plan.new_columns_of(&row);
                if !found.is_empty() {
                    new_columns.extend(found);
                    if let Ok(Outcome::Change(c)) = r {
                        r = Ok(Outcome::Evolving(c));
                    }
                }
            }
            parser.recycle(row);
            r.map(Some)
        }
        Ok(Parsed::Skip) => Ok(None),
        Err(bad) if bad.unknown_column.is_some() && plan.evolution == SchemaEvolution::Fail => {
            Err(Rejected::SchemaFail(bad.reason))
        }
        Err(bad) => Err(Rejected::Quarantine(bad.reason)),
    }
}

/// Announces the new columns of records parsed in `epoch` (each name and type once per
/// epoch and worker).
fn announce_new_columns(
    found: &mut Vec<Column>,
    announced: &mut (u64, HashSet<Column>),
    epoch: u64,
    mut give: impl FnMut(Column),
) {
    if announced.0 != epoch {
        *announced = (epoch, HashSet::new());
    }
    for c in found.drain(..) {
        if !announced.1.contains(&c) {
            announced.1.insert(c.clone());
            give(c);
        }
    }
}

/// A record of a table that is applied: a change by key, or a truncate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TableRecord {
    /// An upsert or delete of one key.
    Change(Change<Key, Seq, PackedRow>),
    /// `apply_as_truncates`: clears the table as of this sequence value.
    Truncate(Seq),
    /// `schema_evolution = "add_new_columns"`: records of this epoch carry a column that the
    /// source schema does not have (announced once per epoch and worker).
    NewColumn(Column),
    /// An upsert carrying new columns, with its quarantine row (reason to be filled) in case
    /// one of them has another type than the table gives the column.
    Evolving(crate::table::EvolvingRecord),
    /// An upsert of a table with a watermark, with where it came from (for its `_late` row,
    /// should the watermark gate find it late).
    Located(Box<crate::table::LocatedChange>),
}

/// Parsed output of one line: a record to apply, or a quarantine row.
pub type ParseResult = Result<TableRecord, QuarantineRow>;

/// Per-epoch counts of a table on this worker, filled by its operators (parse, apply) and
/// taken by its sink when the epoch is complete.
pub type SharedStats = Rc<RefCell<BTreeMap<u64, TableStats>>>;

/// Where one parsed line goes: to the output, to the counts, or (an expectation with
/// `on_violation = "fail"`) to a pipeline error naming the expectation and the record.
fn route_outcome(
    plan: &TablePlan,
    result: Result<Option<Outcome>, Rejected>,
    position: impl Fn() -> String,
    line: &[u8],
    stats: &mut TableStats,
) -> Result<Option<ParseResult>, String> {
    Ok(match result {
        Ok(None) => None,
        Ok(Some(Outcome::Change(c))) => {
            stats.changes += 1;
            if plan.watermark.is_some() && c.value.is_some() {
                let origin = crate::table::Origin::new(position(), line);
                Some(Ok(TableRecord::Located(Box::new((c, origin)))))
            } else {
                Some(Ok(TableRecord::Change(c)))
            }
        }
        Ok(Some(Outcome::Truncate(s))) => Some(Ok(TableRecord::Truncate(s))),
        Ok(Some(Outcome::Evolving(c))) => {
            stats.changes += 1;
            Some(Ok(TableRecord::Evolving(Box::new((
                c,
                plan.quarantine(position(), line, String::new()),
            )))))
        }
        Ok(Some(Outcome::Dropped)) => {
            stats.dropped += 1;
            None
        }
        Err(Rejected::Quarantine(reason)) => {
            stats.quarantined += 1;
            Some(Err(plan.quarantine(position(), line, reason)))
        }
        Err(Rejected::SchemaFail(reason)) => {
            let shown = String::from_utf8_lossy(&line[..line.len().min(4096)]).into_owned();
            return Err(format!(
                "table `{}`: {reason} (schema_evolution = \"fail\") in the record at {}: {shown}",
                plan.name,
                position()
            ));
        }
        Err(Rejected::Fail(i)) => {
            let x = &plan.expectations[i];
            let shown = String::from_utf8_lossy(&line[..line.len().min(4096)]).into_owned();
            return Err(format!(
                "expectation `{}` of table `{}` failed (on_violation = \"fail\"): `{}` is not true for the record at {}: {shown}",
                x.name,
                plan.name,
                x.text,
                position()
            ));
        }
    })
}

/// Parses the blocks of a source for one table, on every worker, a few blocks per activation.
pub fn parse<'scope>(
    blocks: StreamVec<'scope, u64, Block>,
    plan: Arc<TablePlan>,
    schema: Arc<Schema>,
    metrics: Arc<Metrics>,
    stats: SharedStats,
) -> StreamVec<'scope, u64, ParseResult> {
    let scope = blocks.scope();
    let pact = Exchange::new(|b: &Block| b.seq);
    blocks.unary_frontier(pact, &format!("Parse({})", plan.name), move |_cap, info| {
        let activator = scope.activator_for(info.address);
        let mut parser =
            DebeziumParser::with_unknown_columns(schema, unknown_columns(plan.evolution));
        let mut found: Vec<Column> = Vec::new();
        let mut announced: (u64, HashSet<Column>) = (0, HashSet::new());
        let mut queue: EpochStash<Block> = EpochStash::new();
        let mut buf = Vec::new();
        let mut scratch = Vec::with_capacity(512);
        move |(input, _frontier), output| {
            queue.stash(input, output.output_index());
            // After a fatal error (a `fail` expectation) the operator keeps its capabilities,
            // so that no epoch it had not finished can be committed.
            if metrics.failed() {
                return;
            }
            // A few blocks per activation keeps the queues downstream short.
            let mut budget = 2;
            while budget > 0 {
                let Some((cap, blocks)) = queue.first_mut() else {
                    break;
                };
                let Some(block) = blocks.pop() else {
                    queue.pop_first();
                    continue;
                };
                budget -= 1;
                let epoch = *cap.time();
                let mut all_stats = stats.borrow_mut();
                let st = all_stats.entry(epoch).or_default();
                let mut session = output.session(cap);
                if let BlockData::Kafka { partition, records } = &block.data {
                    for m in records {
                        let offset = m.offset;
                        let position = || format!("{partition}@{offset}");
                        st.read += 1;
                        let line = match &m.value {
                            Ok(v) => v.as_slice(),
                            Err(size) => {
                                st.quarantined += 1;
                                session.give(Err(plan.quarantine(
                                    position(),
                                    b"",
                                    format!(
                                        "message value of {size} bytes is over the source's \
                                         max_message_bytes"
                                    ),
                                )));
                                continue;
                            }
                        };
                        // Expectation counts of a record retried with the message key are
                        // those of the retry.
                        let mut trial = TableStats::default();
                        let mut result = parse_record(
                            &mut parser,
                            &plan,
                            &mut scratch,
                            line,
                            &mut trial,
                            &mut found,
                        );
                        if matches!(result, Err(Rejected::Quarantine(_))) {
                            // The value lacks the key: take it from the message key.
                            if let Some(patched) =
                                m.key.as_deref().and_then(|k| with_message_key(line, k))
                            {
                                let mut retry = TableStats::default();
                                let r = parse_record(
                                    &mut parser,
                                    &plan,
                                    &mut scratch,
                                    &patched,
                                    &mut retry,
                                    &mut found,
                                );
                                if !matches!(r, Err(Rejected::Quarantine(_))) {
                                    result = r;
                                    trial = retry;
                                }
                            }
                        }
                        st.add(&trial);
                        match route_outcome(&plan, result, position, line, st) {
                            Ok(Some(out)) => session.give(out),
                            Ok(None) => {}
                            Err(e) => {
                                metrics.fail(e);
                                return;
                            }
                        }
                    }
                    announce_new_columns(&mut found, &mut announced, epoch, |c| {
                        session.give(Ok(TableRecord::NewColumn(c)))
                    });
                    metrics
                        .records_parsed
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    failpoint::hit("mid_epoch");
                    continue;
                }
                let where_ = match &block.data {
                    BlockData::File(fb) => fb.path.as_str(),
                    _ => "generator",
                };
                // A file block is read in pieces of whole lines, so that the buffer stays small
                // whatever the block size; generated lines come as one piece.
                let mut reader = match &block.data {
                    BlockData::File(fb) => match BlockReader::open(fb) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            metrics.fail(format!("table `{}`: {e}", plan.name));
                            return;
                        }
                    },
                    _ => None,
                };
                let mut n = 0u64;
                let mut line_index = 0u64;
                let mut inline_done = false;
                loop {
                    let (bytes, base) = match (&block.data, reader.as_mut()) {
                        (BlockData::File(_), Some(r)) => match r.next_piece(&mut buf, READ_PIECE) {
                            Ok(Some((offset, len))) => (&buf[..len], offset),
                            Ok(None) => break,
                            Err(e) => {
                                metrics.fail(format!("table `{}`: {e}", plan.name));
                                return;
                            }
                        },
                        (BlockData::Inline { first, bytes }, _) if !inline_done => {
                            inline_done = true;
                            (&bytes[..], *first)
                        }
                        _ => break,
                    };
                    let mut pos = 0usize;
                    while pos < bytes.len() {
                        let end =
                            memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
                        let line = &bytes[pos..end];
                        let position = || match &block.data {
                            BlockData::File(_) => format!("{where_}:{}", base + pos as u64),
                            _ => format!("{where_}:{}", base + line_index),
                        };
                        n += 1;
                        let result =
                            parse_record(&mut parser, &plan, &mut scratch, line, st, &mut found);
                        match route_outcome(&plan, result, position, line, st) {
                            Ok(Some(out)) => session.give(out),
                            Ok(None) => {}
                            Err(e) => {
                                metrics.fail(e);
                                return;
                            }
                        }
                        pos = end + 1;
                        line_index += 1;
                    }
                }
                announce_new_columns(&mut found, &mut announced, epoch, |c| {
                    session.give(Ok(TableRecord::NewColumn(c)))
                });
                st.read += n;
                metrics.records_parsed.fetch_add(n, Ordering::Relaxed);
                failpoint::hit("mid_epoch");
            }
            if !queue.is_empty() {
                activator.activate();
            }
        }
    })
}

/// The size of the pieces a file block is read in (see [`BlockReader`]): the parse buffer of
/// a worker stays this size plus a line, instead of a whole block (`block_bytes`, 1 MiB by
/// default); smaller pieces only add `read` calls.
const READ_PIECE: usize = 512 << 10;

/// The configured cutter settings of a source.
pub fn settings_of(
    cfg: &PipelineConfig,
    src: &SourceConfig,
    exit_when_idle: bool,
) -> CutterSettings {
    CutterSettings {
        name: src.name.clone(),
        interval: Duration::from_millis(cfg.pipeline.commit_interval_ms),
        every_records: cfg.pipeline.commit_every_records,
        max_epoch_bytes: cfg.pipeline.max_epoch_bytes,
        block_bytes: cfg.pipeline.block_bytes,
        exit_when_idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineConfig;

    fn source(extra: &str) -> SourceConfig {
        let text = format!(
            "[pipeline]\nname = \"p\"\nlakehouse = \"/tmp/lh\"\n\n[[source]]\nname = \"s\"\n\
             kind = \"generator\"\n{extra}\n\n[[table]]\nname = \"t\"\nfrom = \"s\"\n\
             keys = [\"id\"]\nsequence_by = \"__lsn\"\n"
        );
        PipelineConfig::parse(&text).unwrap().source.remove(0)
    }

    #[test]
    fn marketing_generator_identity_names_the_stream_and_the_world() {
        let open = source("workload = \"marketing\"\nstream = \"activity_open_email\"");
        let id = generator_identity(&open);
        assert_eq!(id["workload"], "marketing");
        assert_eq!(id["stream"], "activity_open_email");
        for k in [
            "seed",
            "events",
            "accounts",
            "users",
            "leads",
            "campaigns",
            "duplicate_pct",
            "late_pct",
            "late_distance",
            "with_schema",
        ] {
            assert!(!id[k].is_null(), "{k}");
        }
        let click = source("workload = \"marketing\"\nstream = \"activity_click_email\"");
        assert_ne!(generator_identity(&click), id);
        let more = source("workload = \"marketing\"\nstream = \"activity_open_email\"\nkeys = 9");
        assert_ne!(generator_identity(&more), id);
        assert_eq!(
            generator_identity(&source(
                "workload = \"marketing\"\nstream = \"activity_open_email\""
            )),
            id
        );
    }
}
