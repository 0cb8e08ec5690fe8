//! Running a pipeline on a timely cluster: resolve schemas, build the dataflow on every
//! worker, step it until done (or until a fatal error), and report.
//!
//! Dataflow of a pipeline with one table `t` fed by source `s`:
//!
//! ```text
//! Cutter(s) ──blocks──▶ Parse(t) ──changes──▶ ApplyChanges ──▶ TableSink(t) ──┐
//!   (worker 0)          (all workers)  └─bad──▶ QuarantineSink ────────────────┼─▶ Committer ─▶ probe
//!                                                                               (worker 0)
//! ```
//!
//! A view `v` over `t` (`view.rs`) branches off the applied changes:
//!
//! ```text
//! ApplyChanges(t) ──▶ TableRows(t) ──▶ render_query(v) ──▶ ViewChanges(v) ──▶ TableSink(v) ──▶ Committer
//!   (arrange_from_upsert)     (differential operators)   (per epoch, by bucket)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_connectors::delta::{remove_orphan_files, Committer, CommitterConfig, ResumeInfo};
use tidewater_connectors::formats::DebeziumParser;
use tidewater_connectors::types::{Column, Datum, DatumRef, PackedRow, Schema};
use tidewater_operators::{
    ApplyChanges, ApplyHistory, ApplyOptions, ApplyState, Change, CheckpointSchedule, HistoryState,
    Step, Version, WatermarkGate,
};
use timely::communication::initialize::Config as CommConfig;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::core::Map;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Broadcast, ToStream};
use timely::dataflow::operators::{Concat, Concatenate, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};
use timely::WorkerConfig;
use tracing::info;

use crate::checkpoint::{self, ManifestWriter, TableState};
use crate::commit::{committer, Checkpoints, EventLogSettings, GroupCommit};
use crate::config::{PipelineConfig, SourceKind};
use crate::event_log::{event_log_columns, EVENT_LOG};
use crate::kafka_source::kafka_source;
use crate::metrics::{spawn_progress, Metrics};
use crate::source::{
    cutter, parse, plan_replay, sample_lines, settings_of, SharedPositions, SharedStats,
    TableRecord,
};
use crate::spill::{RowRef, RowSpill};
use crate::table::{
    committed_bucket_files, gate_new_columns, late_columns, late_sink, parse_schema,
    quarantine_columns, quarantine_sink, table_sink, timestamp_at, BucketFile, LateRow,
    LocatedChange, Origin, QuarantineRow, TablePlan, LATE, QUARANTINE,
};
use crate::view::{load_table_rows, plan_views, render_views, table_rows, view_changes};
use crate::{Key, Seq, TidewaterError};

/// How to run: workers, processes, and when to stop.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Worker threads per process.
    pub workers: usize,
    /// Number of processes in the cluster (1: no networking).
    pub processes: usize,
    /// This process's index (0-based).
    pub process_id: usize,
    /// Addresses (`host:port`) of all processes, one per process, when `processes > 1`.
    pub addresses: Vec<String>,
    /// Stop once every bounded source is exhausted and committed (directories: once no
    /// unread file is left).
    pub exit_when_idle: bool,
    /// Show the progress line / periodic progress logs.
    pub progress: bool,
    /// The counters to update (shared with a `/metrics` server); none: the run's own.
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 1,
            processes: 1,
            process_id: 0,
            addresses: Vec::new(),
            exit_when_idle: true,
            progress: false,
            metrics: None,
        }
    }
}

/// What a finished run reports (numbers of this process).
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Records parsed by this process.
    pub records: u64,
    /// Records quarantined by this process.
    pub quarantined: u64,
    /// Epochs committed (non-zero only on process 0).
    pub epochs_committed: u64,
    /// The last committed epoch.
    pub last_epoch: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The lakehouse directory.
    pub lakehouse: PathBuf,
    /// The epoch of the checkpoint the operator state was restored from.
    pub restored_from: Option<u64>,
    /// Recorded epochs replayed at start (after the restored checkpoint, if any).
    pub replayed_epochs: u64,
}

/// Each table's plan with the schema of its source.
pub type PlannedTables = Vec<(Arc<TablePlan>, Arc<Schema>)>;

/// Fixes the schema of every table's source from its first records (every process does the
/// same, so all agree), and plans the tables.
pub fn plan_tables(cfg: &PipelineConfig) -> Result<PlannedTables, TidewaterError> {
    let mut out = Vec::new();
    for t in &cfg.table {
        let src = cfg.source_of(t);
        let sample = if src.kind == SourceKind::Kafka {
            crate::kafka_source::sample_values(src, &cfg.topics_of(t), 1000)?
        } else {
            sample_lines(src, 1000)?
        };
        let refs: Vec<&[u8]> = sample.iter().map(|l| l.as_slice()).collect();
        let schema = DebeziumParser::resolve_schema(&src.name, &t.declared_columns(), &refs)?;
        let schema = parse_schema(&schema, t.schema_evolution);
        let plan = TablePlan::new(cfg, t, &schema)?;
        out.push((Arc::new(plan), Arc::new(schema)));
    }
    Ok(out)
}

/// Prepares a restart on the lakehouse: refuses a table that another writer commits to (its
/// log holds a commit without this pipeline's `txn` app id), removes Parquet files no commit
/// references (left by a crash; process 0 only, before any worker runs), then reads from the
/// Delta logs, per table, the last committed epoch and the recorded cut of every epoch up to
/// the largest of them.
fn prepare_resume(cfg: &PipelineConfig, process_id: usize) -> Result<ResumeInfo, TidewaterError> {
    let mut tables: Vec<String> = cfg.table.iter().map(|t| t.name.clone()).collect();
    tables.extend(cfg.view.iter().map(|v| v.name.clone()));
    tables.push(QUARANTINE.into());
    tables.push(crate::table::LATE.into());
    tables.push(EVENT_LOG.into());
    let mut committer = Committer::new(CommitterConfig {
        lakehouse: cfg.pipeline.lakehouse.clone(),
        pipeline: cfg.pipeline.name.clone(),
        checkpoint_interval: cfg.pipeline.checkpoint_interval,
    })?;
    // Before the orphan cleanup, which must not touch another writer's files.
    for t in &tables {
        committer.check_sole_writer(t, 0)?;
    }
    if process_id == 0 {
        for t in &tables {
            let removed = remove_orphan_files(&cfg.pipeline.lakehouse.join(t), true)?;
            if !removed.is_empty() {
                info!(table = %t, files = removed.len(), "removed orphan files left by an interrupted run");
            }
        }
    }
    Ok(committer.resume_info(&tables)?)
}

/// Runs a pipeline to completion (or forever, for unbounded sources without
/// `exit_when_idle`).
pub fn run(cfg: PipelineConfig, opts: RunOptions) -> Result<RunSummary, TidewaterError> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.pipeline.lakehouse).map_err(|e| {
        tidewater_connectors::ConnectorError::io(cfg.pipeline.lakehouse.display(), e)
    })?;
    crate::failpoint::init();
    let plans = plan_tables(&cfg)?;
    let views = plan_views(&cfg, &plans)?;
    let resume = prepare_resume(&cfg, opts.process_id)?;
    let mut replays = plan_replay(&cfg, &resume)?;
    let lakehouse = cfg.pipeline.lakehouse.clone();
    // Process 0 first removes incomplete checkpoints and the last run's final states, before
    // any worker can write one (also on a fresh start: a run may have stopped before its
    // first commit).
    if cfg.pipeline.state_checkpoint_every > 0 && opts.process_id == 0 {
        let n = checkpoint::remove_incomplete(&lakehouse)?;
        if n > 0 {
            info!(
                removed = n,
                "removed incomplete checkpoints left by an interrupted run"
            );
        }
    }
    // Operator state: the newest usable checkpoint, if any.
    let restore = if resume.max_epoch.is_some() && cfg.pipeline.state_checkpoint_every > 0 {
        let table_plans: Vec<&TablePlan> = plans.iter().map(|(p, _)| p.as_ref()).collect();
        checkpoint::find(
            &lakehouse,
            &cfg.pipeline.name,
            &table_plans,
            &resume,
            opts.process_id == 0,
        )?
    } else {
        None
    };
    if let Some(r) = &restore {
        for replay in replays.values_mut() {
            replay.skip_through(r.epoch());
        }
    }
    let replayed_epochs = resume
        .recorded
        .keys()
        .filter(|e| restore.as_ref().is_none_or(|r| **e > r.epoch()))
        .count() as u64;
    let workers_now = opts.workers * opts.processes.max(1);
    if let (Some(max), 0) = (resume.max_epoch, opts.process_id) {
        let committed: Vec<String> = resume
            .per_table_committed
            .iter()
            .map(|(t, e)| format!("{t}={}", e.map_or("none".to_string(), |e| e.to_string())))
            .collect();
        match &restore {
            Some(r) => {
                let m = &r.manifest;
                let layout = if m.workers == workers_now && m.processes == opts.processes.max(1) {
                    String::new()
                } else {
                    format!(
                        "; it was written by {} workers in {} processes, now {} in {}: its state is redistributed by key bucket",
                        m.workers,
                        m.processes,
                        workers_now,
                        opts.processes.max(1)
                    )
                };
                info!(
                    "resuming at epoch {}: operator state restored from the checkpoint of epoch {}{layout}; replaying {replayed_epochs} recorded epochs after it; committed epochs per table: {}",
                    max + 1,
                    r.epoch(),
                    committed.join(", ")
                );
            }
            None => info!(
                "resuming at epoch {} with no usable checkpoint: replaying all {replayed_epochs} recorded epochs; committed epochs per table: {}",
                max + 1,
                committed.join(", ")
            ),
        }
    }
    // The bucket files each resumed table starts from: read once per process, before the
    // workers start (each worker's sink uses the files of its own buckets).
    let mut bucket_files: BTreeMap<String, HashMap<u32, BucketFile>> = BTreeMap::new();
    // Columns added to a table by schema evolution in earlier runs (in the table's order):
    // the Delta schema's columns that the planned columns do not have.
    let mut added_columns: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for (plan, schema) in &plans {
        if let Some(existing) = resume.columns.get(&plan.name) {
            let base = plan.delta_columns(&plan.table_columns(schema));
            let added: Vec<Column> = existing
                .iter()
                .filter(|c| !base.iter().any(|b| b.name == c.name))
                .cloned()
                .collect();
            if !added.is_empty() {
                added_columns.insert(plan.name.clone(), added);
            }
        }
        if resume
            .per_table_committed
            .get(&plan.name)
            .copied()
            .flatten()
            .is_some()
        {
            let files = committed_bucket_files(plan).map_err(TidewaterError::Runtime)?;
            bucket_files.insert(plan.name.clone(), files);
        }
    }
    for view in &views.views {
        if resume
            .per_table_committed
            .get(&view.name)
            .copied()
            .flatten()
            .is_some()
        {
            let files = committed_bucket_files(&view.table).map_err(TidewaterError::Runtime)?;
            bucket_files.insert(view.name.clone(), files);
        }
    }
    // The partitions of every Kafka source, looked up once per process before the workers
    // start (an unreachable broker or a missing topic fails here, naming it).
    let mut kafka_partitions = BTreeMap::new();
    for src in cfg.source.iter().filter(|s| s.kind == SourceKind::Kafka) {
        let parts = crate::kafka_source::discover(src)?;
        info!(source = %src.name, partitions = parts.len(), "kafka partitions");
        kafka_partitions.insert(src.name.clone(), parts);
    }
    let kafka_partitions = Arc::new(kafka_partitions);
    let resume = Arc::new(resume);
    let replays = Arc::new(replays);
    let restore = Arc::new(restore);
    let restored_epoch = restore.as_ref().as_ref().map(|r| r.epoch());
    let schedule = (cfg.pipeline.state_checkpoint_every > 0).then(|| CheckpointSchedule {
        every: cfg.pipeline.state_checkpoint_every,
        first: restored_epoch.map_or(0, |c| c + 1),
    });
    let manifest_writer = ManifestWriter {
        lakehouse: lakehouse.clone(),
        pipeline: cfg.pipeline.name.clone(),
        tables: plans
            .iter()
            .map(|(p, _)| (p.name.clone(), (p.buckets, p.state_signature())))
            .collect(),
        workers: workers_now,
        processes: opts.processes.max(1),
    };
    // The watermark each table with one resumes from: with a restored checkpoint of epoch r,
    // the watermark after r as the event log recorded it (the replayed epochs after r then
    // reproduce every later decision); otherwise every epoch is replayed from the start.
    let mut initial_watermarks: BTreeMap<String, i64> = BTreeMap::new();
    if plans.iter().any(|(p, _)| p.watermark.is_some()) {
        let log = match restored_epoch {
            Some(_) => crate::event_log::read(&lakehouse)?,
            None => Vec::new(),
        };
        for (plan, _) in plans.iter().filter(|(p, _)| p.watermark.is_some()) {
            let w = log
                .iter()
                .filter(|r| r.table == plan.name && restored_epoch.is_some_and(|e| r.epoch <= e))
                .filter_map(|r| r.watermark)
                .max()
                .unwrap_or(i64::MIN);
            initial_watermarks.insert(plan.name.clone(), w);
        }
    }
    let initial_watermarks = Arc::new(initial_watermarks);
    let bucket_files = Arc::new(bucket_files);
    let added_columns = Arc::new(added_columns);
    let log_resume = resume.per_table_committed.get(EVENT_LOG).copied().flatten();
    let metrics = opts.metrics.clone().unwrap_or_default();
    if opts.process_id == 0 {
        // `/metrics` starts from the event log's totals, so that its counters equal the log.
        let log = crate::event_log::read(&lakehouse)?;
        for r in &log {
            metrics.log.add(&r.table, r.counts());
        }
        if let Some(last) = log.iter().max_by_key(|r| (r.epoch, r.committed_at)) {
            metrics.log.resumed(last.epoch, last.committed_at);
        }
        let rows: i64 = bucket_files
            .values()
            .flat_map(|f| f.values())
            .map(|f| f.rows)
            .sum();
        metrics.table_rows.fetch_add(rows, Ordering::Relaxed);
    }
    let started = Instant::now();

    let communication = if opts.processes > 1 {
        if opts.addresses.len() != opts.processes {
            return Err(TidewaterError::Config {
                key: "--hostfile".into(),
                message: format!(
                    "names {} addresses for {} processes",
                    opts.addresses.len(),
                    opts.processes
                ),
            });
        }
        CommConfig::Cluster {
            threads: opts.workers,
            process: opts.process_id,
            addresses: opts.addresses.clone(),
            report: false,
            zerocopy: false,
        }
    } else if opts.workers > 1 {
        CommConfig::Process(opts.workers)
    } else {
        CommConfig::Thread
    };
    let config = timely::Config {
        communication,
        worker: WorkerConfig::default(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let progress = opts
        .progress
        .then(|| spawn_progress(metrics.clone(), stop.clone()));

    let cfg = Arc::new(cfg);
    let plans = Arc::new(plans);
    let views = Arc::new(views);
    let m = metrics.clone();
    let exit_when_idle = opts.exit_when_idle;
    let guards = timely::execute(config, move |worker| {
        let cfg = cfg.clone();
        let metrics = m.clone();
        let committed: ProbeHandle<u64> = ProbeHandle::new();
        let positions: SharedPositions = Default::default();
        let index = worker.index();
        let built = worker.dataflow::<u64, _, _>(|scope| -> Result<(), TidewaterError> {
            let mut to_commit = Vec::new();
            let mut fragments = Vec::new();
            let mut bad_streams = Vec::new();
            let mut late_streams = Vec::new();
            // The watermarks of the tables with one, and the watermark each starts from.
            let mut watermarks_of = HashMap::new();
            let mut columns: BTreeMap<String, Vec<Column>> = BTreeMap::new();
            // The applied changes of the tables views read.
            let mut applied_of = HashMap::new();
            for (plan, schema) in plans.iter() {
                let table_cfg = cfg
                    .table
                    .iter()
                    .find(|t| t.name == plan.name)
                    .expect("planned");
                let src = cfg.source_of(table_cfg);
                let settings = settings_of(&cfg, src, exit_when_idle);
                let replay = replays.get(&src.name).cloned().unwrap_or_default();
                let blocks = if src.kind == SourceKind::Kafka {
                    // The partitions of the topics this table reads.
                    let topics = cfg.topics_of(table_cfg);
                    let parts: Vec<_> = kafka_partitions
                        .get(&src.name)
                        .into_iter()
                        .flatten()
                        .filter(|tp| topics.contains(&tp.topic))
                        .cloned()
                        .collect();
                    let (blocks, frags) = kafka_source(
                        scope,
                        src,
                        &parts,
                        settings,
                        committed.clone(),
                        metrics.clone(),
                        replay,
                    );
                    fragments.push(frags);
                    blocks
                } else {
                    cutter(
                        scope,
                        src,
                        settings,
                        committed.clone(),
                        positions.clone(),
                        metrics.clone(),
                        replay,
                    )?
                };
                let stats: SharedStats = Default::default();
                let parsed = parse(
                    blocks,
                    plan.clone(),
                    schema.clone(),
                    metrics.clone(),
                    stats.clone(),
                );
                // Changes in one pass over every record; the rare rest (truncates, new
                // columns, upserts carrying new columns, bad records) is split apart after it.
                // (The closure's result only passes from the input container to an output
                // container of its own variant: no need to box it.)
                #[allow(clippy::result_large_err)]
                let (changes, rest): (
                    _,
                    StreamVec<'_, u64, Result<TableRecord, QuarantineRow>>,
                ) = parsed.ok_err(|r| match r {
                    Ok(TableRecord::Change(c)) => Ok(c),
                    other => Err(other),
                });
                let (rest, bad): (StreamVec<'_, u64, TableRecord>, _) = rest.ok_err(|r| r);
                let (rare, others): (
                    StreamVec<'_, u64, Result<Seq, Column>>,
                    StreamVec<'_, u64, TableRecord>,
                ) = rest.ok_err(|r| match r {
                    TableRecord::Truncate(s) => Ok(Ok(s)),
                    TableRecord::NewColumn(c) => Ok(Err(c)),
                    other => Err(other),
                });
                // Upserts carrying new columns, and (tables with a watermark) upserts with
                // their origin.
                let (evolving, located): (
                    StreamVec<'_, u64, crate::table::EvolvingRecord>,
                    StreamVec<'_, u64, Box<LocatedChange>>,
                ) = others.ok_err(|r| match r {
                    TableRecord::Evolving(b) => Ok(b),
                    TableRecord::Located(b) => Err(b),
                    _ => unreachable!("changes, truncates and new columns are split off above"),
                });
                let (truncates, new_columns): (
                    StreamVec<'_, u64, Seq>,
                    StreamVec<'_, u64, Column>,
                ) = rare.ok_err(|r| r);
                // Every sink (and gate) of the table folds every worker's new columns.
                let new_columns = new_columns.broadcast();
                let (evolved, clashes): (StreamVec<'_, u64, LocatedChange>, _) = gate_new_columns(
                    evolving,
                    new_columns.clone(),
                    plan.clone(),
                    plan.delta_columns(&plan.table_columns(schema)),
                    added_columns.get(&plan.name).cloned().unwrap_or_default(),
                    stats.clone(),
                )
                .ok_err(|r| r);
                let bad = bad.concat(clashes);
                // A table with a watermark: late upserts go to `_late`, not to the table.
                let changes: StreamVec<'_, u64, Change<Key, Seq, PackedRow>> = match plan.watermark
                {
                    Some((pos, lateness)) => {
                        let initial = initial_watermarks
                            .get(&plan.name)
                            .copied()
                            .unwrap_or(i64::MIN);
                        // Deletes come without an origin (they are never late).
                        let gated = changes
                            .map(|c| (c, None))
                            .concat(evolved.map(|(c, o)| (c, Some(o))))
                            .concat(located.map(|b| {
                                let (c, o) = *b;
                                (c, Some(o))
                            }));
                        let (on_time, late, marks) = watermark_gate(
                            gated,
                            plan.clone(),
                            pos,
                            lateness,
                            initial,
                            stats.clone(),
                        );
                        late_streams.push(late);
                        watermarks_of.insert(plan.name.clone(), (marks, initial));
                        on_time
                    }
                    // (Only upserts of tables with a watermark are located.)
                    None => changes.concat(evolved.map(|(c, _)| c)),
                };
                let route_plan = plan.clone();
                let route = move |k: &Key| route_plan.bucket(k) as u64;
                let (peers, index) = (scope.peers(), scope.index());
                let save = saver(
                    &cfg.pipeline.lakehouse,
                    plan.clone(),
                    metrics.clone(),
                    peers,
                    index,
                );
                let table_resume = resume
                    .per_table_committed
                    .get(&plan.name)
                    .copied()
                    .flatten();
                let table_columns = plan.table_columns(schema);
                // The table sink, for SCD1 rows (`Option<PackedRow>`) or SCD2 versions
                // (`Vec<PackedRow>`).
                macro_rules! sink {
                    ($applied:expr, $spill:expr) => {
                        table_sink(
                            $applied,
                            $spill,
                            new_columns,
                            plan.clone(),
                            table_columns.clone(),
                            bucket_files.get(&plan.name).cloned().unwrap_or_default(),
                            metrics.clone(),
                            table_resume,
                            stats.clone(),
                            log_resume,
                            added_columns.get(&plan.name).cloned().unwrap_or_default(),
                        )
                    };
                }
                let committed_msgs = if plan.scd == 2 {
                    let initial = match restore.as_ref() {
                        Some(r) => checkpoint::load_worker_history(r, plan, peers, index)?,
                        None => HistoryState::default(),
                    };
                    let step_plan = plan.clone();
                    let step = move |cur: Option<&PackedRow>, v: &PackedRow| {
                        history_step(&step_plan, cur, v)
                    };
                    let counts = stats.clone();
                    let versions = changes
                        .apply_history(route, step, initial, schedule, move |epoch, state| {
                            save(epoch, TableState::Scd2(state))
                        })
                        .unary(Pipeline, "Versions", move |_, _| {
                            move |input, output| {
                                input.for_each_stamp(|cap, data| {
                                    let Some(&epoch) = cap.least() else { return };
                                    let Some(cap) = cap.retain_least(output.output_index()) else {
                                        return;
                                    };
                                    let mut keys = 0;
                                    let mut session = output.session(&cap);
                                    for batch in data {
                                        for (k, versions) in batch.drain(..) {
                                            keys += 1;
                                            session.give((
                                                k,
                                                versions
                                                    .into_iter()
                                                    .map(pack_version)
                                                    .collect::<Vec<_>>(),
                                            ));
                                        }
                                    }
                                    counts.borrow_mut().entry(epoch).or_default().advanced += keys;
                                });
                            }
                        });
                    sink!(versions, None)
                } else {
                    let initial = match restore.as_ref() {
                        Some(r) => checkpoint::load_worker_state(r, plan, peers, index)?,
                        None => ApplyState::default(),
                    };
                    let retention = cfg.table_tombstone_retention(table_cfg)?;
                    let counts = stats.clone();
                    let mut options = ApplyOptions::new(retention).on_epoch(move |epoch, n| {
                        counts.borrow_mut().entry(epoch).or_default().advanced += n;
                    });
                    if let Some(s) = schedule {
                        options = options.checkpoints(s);
                    }
                    let truncates = plan.truncates.is_some().then_some(truncates);
                    let read_by_view = views.tables.contains_key(&plan.name);
                    if cfg.pipeline.spill_rows && !plan.ignore_null_updates && !read_by_view {
                        // The rows wait on disk, APPLY CHANGES keeps where they are.
                        let spill = Rc::new(RowSpill::new(&plan.name, cfg.pipeline.spill_dir()));
                        let refs =
                            spill_rows(changes, route.clone(), spill.clone(), metrics.clone());
                        let ApplyState {
                            keys,
                            tombstones,
                            truncated,
                            merged: _,
                        } = initial;
                        let initial = ApplyState {
                            keys,
                            tombstones,
                            truncated,
                            merged: Default::default(),
                        };
                        let save = move |epoch, state: &ApplyState<Key, Seq, RowRef>| {
                            save(epoch, TableState::Scd1Spilled(state))
                        };
                        // (`SpillRows` moved each change to the worker of its key already.)
                        let options = options.routed();
                        let applied =
                            refs.apply_changes_opts(truncates, route, options, initial, save);
                        sink!(applied, Some(spill))
                    } else {
                        let save = move |epoch, state: &ApplyState<Key, Seq, PackedRow>| {
                            save(epoch, TableState::Scd1(state))
                        };
                        let applied = if plan.ignore_null_updates {
                            let merge = (
                                |row: &PackedRow| {
                                    row.iter()
                                        .map(|d| !matches!(d, DatumRef::Null))
                                        .collect::<Vec<bool>>()
                                },
                                compose_non_null,
                            );
                            changes.apply_changes_opts(
                                truncates,
                                route,
                                options.ignore_null_updates(merge),
                                initial,
                                save,
                            )
                        } else {
                            changes.apply_changes_opts(truncates, route, options, initial, save)
                        };
                        if read_by_view {
                            applied_of.insert(plan.name.clone(), applied.clone());
                        }
                        sink!(applied, None)
                    }
                };
                to_commit.push(committed_msgs);
                bad_streams.push(bad);
                let mut delta_columns = plan.delta_columns(&table_columns);
                delta_columns.extend(added_columns.get(&plan.name).into_iter().flatten().cloned());
                columns.insert(plan.name.clone(), delta_columns);
            }
            if !views.views.is_empty() {
                let restored = restore.as_ref().as_ref().map(|r| r.epoch());
                let mut relations = HashMap::new();
                for (name, slot) in &views.tables {
                    let (plan, schema) = plans
                        .iter()
                        .find(|(p, _)| &p.name == name)
                        .expect("views read planned tables");
                    let initial = match restored {
                        Some(r) => load_table_rows(
                            plan,
                            &plan.delta_columns(&plan.table_columns(schema)),
                            resume.version_at(name, r),
                            scope.peers(),
                            scope.index(),
                        )?,
                        None => Vec::new(),
                    };
                    let applied = applied_of.remove(name).expect("scd = 1 tables are kept");
                    relations.insert(
                        name.clone(),
                        table_rows(applied, *slot, initial, restored.unwrap_or(0), name),
                    );
                }
                let rendered = render_views(&views.views, relations, &watermarks_of)?;
                for (view, rows) in views.views.iter().zip(rendered) {
                    let changes =
                        view_changes(rows, view.clone(), restored.unwrap_or(0), metrics.clone());
                    to_commit.push(table_sink(
                        changes,
                        None,
                        Vec::<Column>::new().to_stream(scope),
                        view.table.clone(),
                        view.columns().to_vec(),
                        bucket_files.get(&view.name).cloned().unwrap_or_default(),
                        metrics.clone(),
                        // A view last committed before the restored epoch `r` did not change
                        // since: its stored rows are the view at `r`, so the restored contents
                        // fed at `r` are not written again (a commit of `r` would rewrite the
                        // epoch's manifest without its positions).
                        resume
                            .per_table_committed
                            .get(&view.name)
                            .copied()
                            .flatten()
                            .max(restored),
                        Default::default(),
                        log_resume,
                        Vec::new(),
                    ));
                    columns.insert(view.name.clone(), view.columns().to_vec());
                }
            }
            if !late_streams.is_empty() {
                columns.insert(LATE.into(), late_columns());
                let late = scope.concatenate(late_streams);
                to_commit.push(late_sink(
                    late,
                    cfg.pipeline.lakehouse.clone(),
                    index,
                    metrics.clone(),
                    resume.per_table_committed.get(LATE).copied().flatten(),
                ));
            }
            columns.insert(QUARANTINE.into(), quarantine_columns());
            columns.insert(EVENT_LOG.into(), event_log_columns());
            let bad = scope.concatenate(bad_streams);
            to_commit.push(quarantine_sink(
                bad,
                cfg.pipeline.lakehouse.clone(),
                index,
                metrics.clone(),
                resume
                    .per_table_committed
                    .get(QUARANTINE)
                    .copied()
                    .flatten(),
            ));
            let msgs = scope.concatenate(to_commit);
            let committer_config = CommitterConfig {
                lakehouse: cfg.pipeline.lakehouse.clone(),
                pipeline: cfg.pipeline.name.clone(),
                checkpoint_interval: cfg.pipeline.checkpoint_interval,
            };
            let fragments = scope.concatenate(fragments);
            committer(
                msgs,
                fragments,
                committer_config,
                columns,
                positions.clone(),
                metrics.clone(),
                resume.clone(),
                schedule.map(|schedule| Checkpoints {
                    schedule,
                    writer: manifest_writer.clone(),
                    restored: restored_epoch,
                }),
                cfg.source
                    .iter()
                    .filter_map(|s| {
                        let group = s.group_id.clone()?;
                        (s.kind == SourceKind::Kafka && index == 0)
                            .then(|| GroupCommit::new(s.name.clone(), s.kafka(), group))
                    })
                    .collect(),
                EventLogSettings {
                    lakehouse: cfg.pipeline.lakehouse.clone(),
                    pipeline: cfg.pipeline.name.clone(),
                    expectations: plans
                        .iter()
                        .map(|(p, _)| {
                            (
                                p.name.clone(),
                                p.expectations
                                    .iter()
                                    .map(|x| (x.name.clone(), x.on_violation))
                                    .collect(),
                            )
                        })
                        .chain(cfg.view.iter().map(|v| {
                            let test = v.test.map(|t| (v.name.clone(), t));
                            (v.name.clone(), test.into_iter().collect())
                        }))
                        .collect(),
                    tests: cfg
                        .view
                        .iter()
                        .filter(|v| v.test.is_some())
                        .map(|v| v.name.clone())
                        .collect(),
                    resume: log_resume,
                },
            )
            .probe_with(&committed);
            Ok(())
        });
        if let Err(e) = built {
            metrics.fail(e.to_string());
            return;
        }
        let mut released = std::time::Instant::now();
        while !committed.done() {
            if released.elapsed() >= crate::memory::RELEASE_EVERY {
                crate::memory::release_free_memory();
                released = std::time::Instant::now();
            }
            if metrics.failed() {
                // Operators keep the capabilities of epochs they did not finish (so nothing
                // after the error is committed); drop the dataflows so the worker can end.
                for id in worker.installed_dataflows() {
                    worker.drop_dataflow(id);
                }
                return;
            }
            worker.step_or_park(Some(Duration::from_millis(20)));
        }
    })
    .map_err(|e| {
        // timely reports a failed bind of this process's listening socket as text.
        if e.contains("Address already in use") {
            TidewaterError::AddressInUse(e)
        } else {
            TidewaterError::Runtime(e)
        }
    })?;
    let results = guards.join();
    stop.store(true, Ordering::SeqCst);
    if let Some(p) = progress {
        p.thread().unpark();
        let _ = p.join();
    }
    for r in results {
        if let Err(e) = r {
            metrics.fail(format!("a worker panicked: {e}"));
        }
    }
    if let Some(e) = metrics.error() {
        return Err(TidewaterError::Runtime(e));
    }
    Ok(RunSummary {
        records: metrics.records_parsed.load(Ordering::Relaxed),
        quarantined: metrics.quarantined.load(Ordering::Relaxed),
        epochs_committed: metrics.epochs_committed.load(Ordering::Relaxed),
        last_epoch: metrics.last_epoch.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        lakehouse,
        restored_from: restored_epoch,
        replayed_epochs,
    })
}

/// The save function of a table's operator state on one worker: writes its buckets'
/// checkpoint files; a failure stops the run.
fn saver(
    lakehouse: &std::path::Path,
    plan: Arc<TablePlan>,
    metrics: Arc<Metrics>,
    peers: usize,
    index: usize,
) -> impl Fn(u64, TableState<'_>) + 'static {
    let lakehouse = lakehouse.to_path_buf();
    move |epoch, state| {
        let started = Instant::now();
        match checkpoint::save_worker_state(&lakehouse, epoch, &plan, peers, index, state) {
            Ok(bytes) => {
                metrics
                    .checkpoint_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                tracing::debug!(epoch, table = %plan.name, worker = index, bytes, "state saved");
            }
            Err(e) => metrics.fail(format!(
                "saving the checkpoint of epoch {epoch} of table `{}`: {e}",
                plan.name
            )),
        }
    }
}

/// Moves each change to the worker that owns its key (as APPLY CHANGES routes it) and
/// appends an upsert's row to that worker's [`RowSpill`] of the change's epoch, passing on where
/// it is instead of the row.
fn spill_rows<'scope>(
    changes: StreamVec<'scope, u64, Change<Key, Seq, PackedRow>>,
    route: impl Fn(&Key) -> u64 + 'static,
    spill: Rc<RowSpill>,
    metrics: Arc<Metrics>,
) -> StreamVec<'scope, u64, Change<Key, Seq, RowRef>> {
    let pact = Exchange::new(move |c: &Change<Key, Seq, PackedRow>| route(&c.key));
    changes.unary(pact, "SpillRows", move |_, _| {
        move |input, output| {
            input.for_each_stamp(|cap, data| {
                let Some(&epoch) = cap.least() else { return };
                let Some(cap) = cap.retain_least(output.output_index()) else {
                    return;
                };
                let mut session = output.session(&cap);
                for batch in data {
                    for c in batch.drain(..) {
                        let value = match c.value {
                            None => None,
                            Some(row) => match spill.put(epoch, &row) {
                                Ok(r) => Some(r),
                                Err(e) => {
                                    metrics.fail(e);
                                    return;
                                }
                            },
                        };
                        session.give(Change {
                            key: c.key,
                            seq: c.seq,
                            fingerprint: c.fingerprint,
                            value,
                        });
                    }
                }
            });
        }
    })
}

/// SCD type 2: how an upsert `v` changes the current version `cur` — with
/// `ignore_null_updates` its nulls take `cur`'s values; if the tracked columns are unchanged
/// the current version is updated in place, else a new version opens.
fn history_step(plan: &TablePlan, cur: Option<&PackedRow>, v: &PackedRow) -> Step<PackedRow> {
    let Some(cur) = cur else {
        return Step::NewVersion(v.clone());
    };
    let old = cur.unpack();
    let mut new = v.unpack();
    if plan.ignore_null_updates {
        for (n, o) in new.iter_mut().zip(&old) {
            if n.is_null() {
                *n = o.clone();
            }
        }
    }
    let same = plan.tracked.iter().all(|i| old[*i] == new[*i]);
    let row = if plan.ignore_null_updates {
        PackedRow::pack(&new)
    } else {
        v.clone()
    };
    if same {
        Step::InPlace(row)
    } else {
        Step::NewVersion(row)
    }
}

/// A version of an SCD type 2 key as a row of the history table: the stored columns, then
/// `__start_at` and `__end_at`.
fn pack_version(v: Version<Seq, PackedRow>) -> PackedRow {
    let mut buf = v.value.as_bytes().to_vec();
    v.start.encode_key(&mut buf);
    match &v.end {
        Some(end) => end.encode_key(&mut buf),
        None => Datum::Null.encode_key(&mut buf),
    }
    PackedRow::from_encoded(&buf)
}

/// IGNORE NULL UPDATES: each column from the newest row where it is not null.
fn compose_non_null(newest_first: &[&PackedRow]) -> PackedRow {
    let rows: Vec<_> = newest_first.iter().map(|r| r.unpack()).collect();
    let width = rows.first().map_or(0, |r| r.len());
    let merged: Vec<Datum> = (0..width)
        .map(|i| {
            rows.iter()
                .map(|r| &r[i])
                .find(|d| !d.is_null())
                .cloned()
                .unwrap_or(Datum::Null)
        })
        .collect();
    PackedRow::pack(&merged)
}

/// The watermark gate of a table with a watermark (event time at `pos` of the stored row,
/// `lateness` µs): returns the on-time changes, the late upserts as `_late` rows (with their
/// origin), and the table's watermarks. Counts each epoch's late records and the watermark
/// after it in the table's stats, inside the gate (before the epoch can reach the table's
/// sink).
#[allow(clippy::type_complexity)]
fn watermark_gate<'scope>(
    changes: StreamVec<'scope, u64, (Change<Key, Seq, PackedRow>, Option<Origin>)>,
    plan: Arc<TablePlan>,
    pos: usize,
    lateness: i64,
    initial: i64,
    stats: SharedStats,
) -> (
    StreamVec<'scope, u64, Change<Key, Seq, PackedRow>>,
    StreamVec<'scope, u64, LateRow>,
    StreamVec<'scope, u64, i64>,
) {
    // Upserts without an event time are quarantined before the gate.
    let event_time = move |(c, _): &(Change<Key, Seq, PackedRow>, Option<Origin>)| {
        c.value
            .as_ref()
            .map(|row| timestamp_at(row, pos).unwrap_or(i64::MIN))
    };
    let on_epoch = move |epoch: u64, late: u64, before: i64, max: Option<i64>| {
        let mut all = stats.borrow_mut();
        let st = all.entry(epoch).or_default();
        st.late += late;
        let after = max.map_or(before, |m| before.max(m.saturating_sub(lateness)));
        if after > i64::MIN {
            st.watermark = st.watermark.max(Some(after));
        }
    };
    let (on_time, late, marks) = changes.watermark_gate(event_time, lateness, initial, on_epoch);
    let on_time = on_time.map(|(c, _)| c);
    let late = late.map(move |((c, origin), w)| {
        let row = c.value.expect("late records are upserts");
        let t = timestamp_at(&row, pos).unwrap_or(i64::MIN);
        let origin = origin.expect("the upserts of a table with a watermark are located");
        plan.late_row(origin, t, w)
    });
    (on_time, late, marks)
}
