//! The timely source side: the *cutter* of each source (on worker 0) decides epochs and
//! cuts the input into blocks; every worker *parses* the blocks routed to it into changes
//! (and quarantine rows).
//!
//! The cutter is the only place where epochs are decided. It closes an epoch when
//! `commit_every_records` records were cut, when `max_epoch_bytes` were cut, or when
//! `commit_interval_ms` has passed and the epoch has data — and never inside a source
//! transaction: before closing, it extends the epoch to the end of the transaction of its last
//! line. The positions an epoch covers are handed to the committer (also on worker 0).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tidewater_connectors::files::{FileBlock, FileCutter};
use tidewater_connectors::formats::{DebeziumParser, Parsed};
use tidewater_connectors::generator::BankGenerator;
use tidewater_connectors::types::{PackedRow, Schema};
use tidewater_operators::{Change, EpochStash};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use crate::config::{PipelineConfig, SourceConfig, SourceKind};
use crate::metrics::Metrics;
use crate::table::{QuarantineRow, TablePlan};
use crate::{Key, Seq};

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
        gen: BankGenerator,
        total: u64,
        rate: u64,
        started: Instant,
    },
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
            let mut gen = BankGenerator::new(src.generator_config());
            let mut line = Vec::new();
            while out.len() < n && gen.next_line(&mut line) {
                out.push(std::mem::take(&mut line));
            }
        }
        SourceKind::Kafka => unreachable!("rejected by validate"),
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
) -> Result<StreamVec<'scope, u64, Block>, crate::TidewaterError> {
    let active = scope.index() == 0;
    let peers = scope.peers() as u64;
    let mut input = if !active {
        None
    } else {
        Some(match src.kind {
            SourceKind::Files => Input::Files(Box::new(FileCutter::new(
                src.path.as_ref().expect("validated"),
            )?)),
            SourceKind::Generator => {
                let cfg = src.generator_config();
                Input::Generator {
                    total: cfg.events,
                    gen: BankGenerator::new(cfg),
                    rate: src.rate.unwrap_or(0),
                    started: Instant::now(),
                }
            }
            SourceKind::Kafka => unreachable!("rejected by validate"),
        })
    };
    let kind = match src.kind {
        SourceKind::Files => "files",
        _ => "generator",
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
                let epoch = *c.time();
                // Pacing: at most two epochs ahead of the committed frontier.
                if epoch >= 2 && committed.less_equal(&(epoch - 2)) {
                    activator.activate_after(Duration::from_millis(5));
                    return;
                }
                let mut close = false;
                let mut exhausted = false;
                let mut emitted = 0;
                while emitted < 2 * peers.max(2) {
                    let want = settings.every_records.map(|n| n - epoch_records);
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
                        } => {
                            let first = gen.position();
                            let mut allowed = want.unwrap_or(u64::MAX).min(*total - first);
                            if *rate > 0 {
                                let due = (started.elapsed().as_secs_f64() * *rate as f64) as u64;
                                allowed = allowed.min(due.saturating_sub(first));
                            }
                            let mut bytes =
                                Vec::with_capacity(settings.block_bytes as usize + 1024);
                            let mut n = 0;
                            while n < allowed
                                && (bytes.len() as u64) < settings.block_bytes
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
                    json!({"kind": kind, "ranges": std::mem::take(&mut ranges), "records": epoch_records}),
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

/// Parsed output of one line: a change to apply, or a quarantine row.
pub type ParseResult = Result<Change<Key, Seq, PackedRow>, QuarantineRow>;

/// Parses the blocks of a source for one table, on every worker, a few blocks per activation.
pub fn parse<'scope>(
    blocks: StreamVec<'scope, u64, Block>,
    plan: Arc<TablePlan>,
    schema: Arc<Schema>,
    metrics: Arc<Metrics>,
) -> StreamVec<'scope, u64, ParseResult> {
    let scope = blocks.scope();
    let pact = Exchange::new(|b: &Block| b.seq);
    blocks.unary_frontier(pact, &format!("Parse({})", plan.name), move |_cap, info| {
        let activator = scope.activator_for(info.address);
        let mut parser = DebeziumParser::new(schema);
        let mut queue: EpochStash<Block> = EpochStash::new();
        let mut buf = Vec::new();
        let mut scratch = Vec::with_capacity(512);
        move |(input, _frontier), output| {
            queue.stash(input, output.output_index());
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
                let mut session = output.session(cap);
                let (bytes, base) = match &block.data {
                    BlockData::File(fb) => {
                        if let Err(e) = fb.read_into(&mut buf) {
                            metrics.fail(format!("table `{}`: {e}", plan.name));
                            return;
                        }
                        (&buf[..], fb.start)
                    }
                    BlockData::Inline { first, bytes } => (&bytes[..], *first),
                };
                let where_ = match &block.data {
                    BlockData::File(fb) => fb.path.as_str(),
                    BlockData::Inline { .. } => "generator",
                };
                let mut n = 0u64;
                let mut pos = 0usize;
                let mut line_index = 0u64;
                while pos < bytes.len() {
                    let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
                    let line = &bytes[pos..end];
                    let position = || match &block.data {
                        BlockData::File(_) => format!("{where_}:{}", base + pos as u64),
                        BlockData::Inline { .. } => format!("{where_}:{}", base + line_index),
                    };
                    n += 1;
                    match parser.parse(line) {
                        Ok(Parsed::Record { op, row }) => {
                            match plan.change(op, &row, &mut scratch) {
                                Ok(change) => session.give(Ok(change)),
                                Err(reason) => {
                                    session.give(Err(plan.quarantine(position(), line, reason)))
                                }
                            }
                            parser.recycle(row);
                        }
                        Ok(Parsed::Skip) => {}
                        Err(bad) => {
                            session.give(Err(plan.quarantine(position(), line, bad.reason)))
                        }
                    }
                    pos = end + 1;
                    line_index += 1;
                }
                metrics.records_parsed.fetch_add(n, Ordering::Relaxed);
            }
            if !queue.is_empty() {
                activator.activate();
            }
        }
    })
}

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
