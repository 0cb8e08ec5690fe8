//! The committer operator: all file actions are routed to worker 0; when the frontier passes
//! epoch `e` it writes one Delta commit per changed table for `e` (with the `txn` action and
//! the source positions), then the epoch manifest. Its output — one record per committed
//! epoch — is what the cutters' pacing and `--exit-when-idle` watch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tidewater_connectors::delta::{CommitOutcome, Committer, CommitterConfig, ResumeInfo};
use tidewater_connectors::types::Column;
use tidewater_operators::{CheckpointSchedule, EpochStash};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;
use tracing::info;

use crate::checkpoint::{positions_at, ManifestWriter};
use crate::config::OnViolation;
use crate::event_log::{self, EpochEntry, ExpectationNames, EVENT_LOG};
use crate::failpoint;
use crate::kafka_source::PositionFragment;
use crate::metrics::Metrics;
use crate::source::SharedPositions;
use crate::table::CommitMsg;

/// Operator-state checkpoints as the committer sees them: when they are due, how to complete
/// them, and the checkpoint the run was restored from.
pub struct Checkpoints {
    /// The due epochs (as given to the ApplyChanges operators).
    pub schedule: CheckpointSchedule,
    /// Completes a checkpoint.
    pub writer: ManifestWriter,
    /// The epoch of the checkpoint the run restored, if any: epochs up to it are not replayed.
    pub restored: Option<u64>,
}

/// What the committer needs to write the event log.
pub struct EventLogSettings {
    /// The lakehouse.
    pub lakehouse: std::path::PathBuf,
    /// The pipeline name.
    pub pipeline: String,
    /// Every table of the pipeline with its expectations.
    pub expectations: BTreeMap<String, ExpectationNames>,
    /// The last epoch `_event_log` had committed at start.
    pub resume: Option<u64>,
    /// The views that are dbt-style tests (`[[view]] test`), whose violations are counted
    /// into their event-log line (their one expectation) after each epoch.
    pub tests: Vec<String>,
}

/// The violations of a test view (stored `columns`) at `version` of its Delta table: the sum
/// of its `violations` column if it has one, else its number of rows.
fn test_violations(dir: &std::path::Path, version: i64, columns: &[Column]) -> Result<u64, String> {
    use tidewater_connectors::delta::{datum_at, read_parquet, table_files_at};
    use tidewater_connectors::types::Datum;
    let err = |e: &dyn std::fmt::Display| format!("test view at {}: {e}", dir.display());
    let column = columns.iter().position(|c| c.name == "violations");
    let mut total = 0u64;
    for f in table_files_at(dir, version).map_err(|e| err(&e))? {
        let batch = read_parquet(dir, &f.path, columns).map_err(|e| err(&e))?;
        let Some(c) = column else {
            total += batch.num_rows() as u64;
            continue;
        };
        for i in 0..batch.num_rows() {
            match datum_at(batch.column(c).as_ref(), columns[c].ty, i) {
                Datum::Int(v) => total += v.max(0) as u64,
                Datum::Null => {}
                _ => return Err(err(&"its `violations` column is not an integer")),
            }
        }
    }
    Ok(total)
}

/// A Kafka source whose committed offsets are also reported to a consumer group (its
/// `group_id`), after each commit, so that ordinary Kafka lag tools work.
pub struct GroupCommit {
    /// The source.
    pub source: String,
    /// Its Kafka settings.
    pub config: tidewater_connectors::kafka::KafkaConfig,
    /// The consumer group.
    pub group: String,
    /// A reader without partitions, opened at the first commit.
    reader: Option<tidewater_connectors::kafka::KafkaReader>,
}

impl GroupCommit {
    /// A group commit of `source` to `group`.
    pub fn new(
        source: String,
        config: tidewater_connectors::kafka::KafkaConfig,
        group: String,
    ) -> Self {
        GroupCommit {
            source,
            config,
            group,
            reader: None,
        }
    }

    /// Reports the end offset of every partition in `epoch_positions` (epoch → source →
    /// positions) to the group. Best effort: a failure is logged, never fatal.
    fn report(&mut self, epoch_positions: &Value) {
        let mut offsets = BTreeMap::new();
        for sources in epoch_positions
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            let parts = sources[&self.source]["partitions"].as_object();
            for (p, r) in parts.into_iter().flatten() {
                let (Some((topic, part)), Some(to)) = (p.rsplit_once('/'), r["to"].as_i64()) else {
                    continue;
                };
                let Ok(part) = part.parse::<i32>() else {
                    continue;
                };
                let tp = tidewater_connectors::kafka::TopicPartition::new(topic, part);
                let e = offsets.entry(tp).or_insert(to);
                *e = (*e).max(to);
            }
        }
        if offsets.is_empty() {
            return;
        }
        if self.reader.is_none() {
            match tidewater_connectors::kafka::KafkaReader::open(&self.config, &[]) {
                Ok(r) => self.reader = Some(r),
                Err(e) => {
                    tracing::warn!(source = %self.source, group = %self.group, error = %e, "cannot report offsets to the consumer group");
                    return;
                }
            }
        }
        if let Some(r) = self.reader.as_mut() {
            if let Err(e) = r.commit_offsets_to_group(&self.group, &offsets) {
                tracing::warn!(source = %self.source, group = %self.group, error = %e, "cannot report offsets to the consumer group");
            }
        }
    }
}

/// Per source, its positions at the end of the epochs consumed so far, and the epochs whose
/// positions are not folded in yet (for checkpoint manifests).
#[derive(Default)]
struct PositionHistory {
    base: BTreeMap<String, Value>,
    recent: BTreeMap<u64, BTreeMap<String, Value>>,
}

impl PositionHistory {
    fn push(&mut self, epoch_positions: &Value) {
        if let Some(map) = epoch_positions.as_object() {
            for (e, sources) in map {
                let (Ok(e), Some(sources)) = (e.parse::<u64>(), sources.as_object()) else {
                    continue;
                };
                let entry = self.recent.entry(e).or_default();
                for (name, pos) in sources {
                    entry.insert(name.clone(), pos.clone());
                }
            }
        }
    }

    /// The positions of every source at the end of `epoch`; forgets the epochs `≤ epoch`.
    fn take_through(&mut self, epoch: u64) -> BTreeMap<String, Value> {
        let later = self.recent.split_off(&(epoch + 1));
        for (_, sources) in std::mem::replace(&mut self.recent, later) {
            self.base.extend(sources);
        }
        self.base.clone()
    }
}

/// Builds the committer. Only worker 0 receives messages and commits. `resume` is where the
/// lakehouse stood at start (empty on a fresh one).
#[allow(clippy::too_many_arguments)]
pub fn committer<'scope>(
    msgs: StreamVec<'scope, u64, CommitMsg>,
    fragments: StreamVec<'scope, u64, PositionFragment>,
    config: CommitterConfig,
    mut tables: BTreeMap<String, Vec<Column>>,
    positions: SharedPositions,
    metrics: Arc<Metrics>,
    resume: Arc<ResumeInfo>,
    checkpoints: Option<Checkpoints>,
    mut groups: Vec<GroupCommit>,
    log: EventLogSettings,
) -> StreamVec<'scope, u64, u64> {
    let active = msgs.scope().index() == 0;
    let restored = checkpoints.as_ref().and_then(|c| c.restored);
    // Positions at the end of the restored checkpoint's epoch (the epochs up to it are not
    // replayed, so they do not come through `positions`).
    let mut history = PositionHistory {
        base: restored.map_or_else(BTreeMap::new, |c| positions_at(&resume.recorded, c)),
        recent: BTreeMap::new(),
    };
    let mut next_checkpoint = checkpoints
        .as_ref()
        .map(|c| c.schedule.next_due(c.schedule.first));
    msgs.binary_frontier(
        fragments,
        Exchange::new(|_: &CommitMsg| 0),
        Exchange::new(|_: &PositionFragment| 0),
        "Committer",
        move |cap, _info| {
        let mut committer = if active {
            match Committer::new(config) {
                Ok(c) => Some(c),
                Err(e) => {
                    metrics.fail(e.to_string());
                    None
                }
            }
        } else {
            None
        };
        let names: Vec<String> = tables.keys().cloned().collect();
        let mut pending: EpochStash<CommitMsg> = EpochStash::new();
        // Replayed epochs that some table committed before the restart: each is passed even if
        // no message comes for it.
        let mut replay: BTreeSet<u64> = if active {
            resume
                .commit_positions
                .keys()
                .copied()
                .filter(|e| restored.is_none_or(|c| *e > c))
                .collect()
        } else {
            BTreeSet::new()
        };
        // Held at the input frontier until the input ends, so that the run does not finish
        // before the positions of trailing epochs that changed no table are recorded.
        let mut at_end = active.then(|| cap.clone());
        let mut hold = replay.first().map(|e| {
            let mut cap = cap;
            cap.downgrade(e);
            cap
        });
        move |(input, frontier1), (fragments, frontier2), output| {
            pending.stash(input, output.output_index());
            // Position fragments of per-worker sources (Kafka): merged into the epoch's
            // positions of their source.
            fragments.for_each_stamp(|cap, data| {
                let Some(&epoch) = cap.least() else { return };
                let mut all = positions.borrow_mut();
                for batch in data {
                    for fragment in batch.drain(..) {
                        merge_fragment(all.entry(epoch).or_default(), &fragment);
                    }
                }
            });
            // The least epoch either input may still deliver (None: both ended).
            let frontier = Frontier2(frontier1, frontier2);
            let Some(committer) = committer.as_mut() else {
                pending.clear();
                hold = None;
                at_end = None;
                return;
            };
            loop {
                // After a fatal error nothing more is committed.
                if metrics.failed() {
                    return;
                }
                let complete = |e: &u64| !frontier.less_equal(e);
                let next_msgs = pending.first_epoch().filter(complete);
                let next_replay = replay.first().copied().filter(complete);
                let (cap, msgs) = match (next_msgs, next_replay) {
                    (None, None) => break,
                    (Some(m), r) if r.is_none_or(|r| m <= r) => {
                        pending.pop_first().expect("first epoch")
                    }
                    (_, Some(r)) => {
                        let mut cap = hold.clone().expect("held for replayed epochs");
                        cap.downgrade(&r);
                        (cap, Vec::new())
                    }
                    (Some(_), None) => unreachable!("covered above"),
                };
                let epoch = *cap.time();
                replay.remove(&epoch);
                let started = Instant::now();
                // The positions of this epoch, and of earlier epochs that changed no table
                // (they made no commit of their own), keyed by epoch.
                let epoch_positions: Value = {
                    let mut all = positions.borrow_mut();
                    let later = all.split_off(&(epoch + 1));
                    let covered = std::mem::replace(&mut *all, later);
                    json!(covered
                        .into_iter()
                        .map(|(e, p)| (e.to_string(), p))
                        .collect::<BTreeMap<_, _>>())
                };
                history.push(&epoch_positions);
                // Completes the checkpoints due up to `epoch`: their positions are in a Delta
                // commit now (this epoch's or an earlier one's).
                let mut complete_checkpoints = |history: &mut PositionHistory| -> Result<(), String> {
                    while let (Some(c), Some(cp)) = (next_checkpoint, checkpoints.as_ref()) {
                        if c > epoch {
                            break;
                        }
                        let at = history.take_through(c);
                        cp.writer.complete(c, at).map_err(|e| e.to_string())?;
                        metrics.log.checkpointed(event_log::now_micros());
                        next_checkpoint = Some(cp.schedule.next_due(c + 1));
                    }
                    Ok(())
                };
                if msgs.is_empty() {
                    // A replayed epoch every table already holds: only its manifest may be
                    // missing (a crash after the commits), rewritten with the logged versions.
                    if !committer.has_manifest(epoch) {
                        let versions = names
                            .iter()
                            .filter_map(|t| resume.version_at(t, epoch).map(|v| (t.clone(), v)))
                            .collect();
                        if let Err(e) = committer.write_manifest_with(epoch, versions, epoch_positions) {
                            metrics.fail(e.to_string());
                            pending.clear();
                            hold = None;
                            return;
                        }
                        info!(epoch, "manifest of a replayed epoch rewritten");
                    }
                    if let Err(e) = complete_checkpoints(&mut history) {
                        metrics.fail(e);
                        pending.clear();
                        hold = None;
                        return;
                    }
                    metrics.last_epoch.store(epoch, Ordering::Relaxed);
                    output.session(&cap).give(epoch);
                    continue;
                }
                let closed_at = event_log::now_micros();
                let mut by_table: BTreeMap<String, (Vec<_>, u64, u64)> = BTreeMap::new();
                // The event log's lines of this epoch, one per table of the pipeline.
                let mut entries: BTreeMap<String, EpochEntry> = BTreeMap::new();
                for m in msgs {
                    // Schema evolution: the table's columns as of this epoch (the same from
                    // every sink of the table; only ever longer).
                    if m.columns.len() > tables.get(&m.table).map_or(0, Vec::len) {
                        tables.insert(m.table.clone(), m.columns.clone());
                    }
                    if log.expectations.contains_key(&m.table) {
                        let e = entries.entry(m.table.clone()).or_default();
                        e.upserted += m.upserted;
                        e.deleted += m.deleted;
                        e.stats.add(&m.stats);
                    }
                    if m.actions.is_empty() {
                        continue;
                    }
                    let e = by_table.entry(m.table).or_default();
                    e.0.extend(m.actions);
                    e.1 += m.upserted;
                    e.2 += m.deleted;
                }
                // Crash point: the sinks' Parquet files exist, no table has committed `epoch`.
                failpoint::hit("after_parquet_before_commit");
                for (i, (table, (mut actions, upserted, deleted))) in by_table.into_iter().enumerate() {
                    if i > 0 {
                        // Crash point: some tables hold `epoch`, others do not yet.
                        failpoint::hit("between_table_commits");
                    }
                    // Deterministic order of actions within the commit.
                    actions.sort_by_key(|a| format!("{a:?}"));
                    let columns = tables.get(&table).cloned().unwrap_or_default();
                    let meta = committer.metadata(
                        epoch,
                        &table,
                        &epoch_positions,
                        json!({"upserted": upserted, "deleted": deleted}),
                    );
                    let commit_started = Instant::now();
                    match committer.commit(epoch, &table, &columns, actions, meta) {
                        Ok(CommitOutcome::Committed(v)) => {
                            let ms = commit_started.elapsed().as_millis() as u64;
                            info!(epoch, table = %table, version = v, upserted, deleted, ms, "committed");
                            if let Some(e) = entries.get_mut(&table) {
                                e.version = Some(v);
                                e.commit_ms = ms;
                            }
                        }
                        Ok(CommitOutcome::AlreadyCommitted(v)) => {
                            info!(epoch, table = %table, version = v, "already committed; skipped");
                            if let Some(e) = entries.get_mut(&table) {
                                e.version = Some(v);
                            }
                        }
                        Err(e) => {
                            metrics.fail(e.to_string());
                            pending.clear();
                            hold = None;
                            return;
                        }
                    }
                }
                // The event log of the epoch, in the same commit round (before the manifest).
                if !entries.is_empty() && log.resume.is_none_or(|r| epoch > r) {
                    for (table, e) in entries.iter_mut() {
                        if e.version.is_none() {
                            e.version = resume.version_at(table, epoch);
                        }
                    }
                    // dbt-style test views: their violations at this cut, as their one
                    // expectation's count.
                    for view in &log.tests {
                        // Every epoch, also one in which the view did not change.
                        let e = entries.entry(view.clone()).or_default();
                        if e.version.is_none() {
                            match committer.version(view) {
                                Ok(v) => e.version = v,
                                Err(err) => {
                                    metrics.fail(err.to_string());
                                    pending.clear();
                                    hold = None;
                                    return;
                                }
                            }
                        }
                        let violations = match e.version {
                            Some(v) => match test_violations(
                                &log.lakehouse.join(view),
                                v,
                                tables.get(view).map_or(&[][..], Vec::as_slice),
                            ) {
                                Ok(n) => n,
                                Err(err) => {
                                    metrics.fail(err);
                                    pending.clear();
                                    hold = None;
                                    return;
                                }
                            },
                            None => 0,
                        };
                        e.stats.expectations = vec![((violations == 0) as u64, violations)];
                        if violations > 0 {
                            let action = log.expectations[view][0].1;
                            if action == OnViolation::Fail {
                                metrics.fail(format!(
                                    "test view `{view}` (test = \"fail\"): {violations} violation(s) at epoch {epoch}"
                                ));
                                pending.clear();
                                hold = None;
                                return;
                            }
                            tracing::warn!(epoch, view = %view, violations, "test view has violations");
                        }
                    }
                    let rows = event_log::rows(
                        &log.pipeline,
                        epoch,
                        &entries,
                        &log.expectations,
                        &epoch_positions,
                        closed_at,
                        event_log::now_micros(),
                    );
                    let log_started = Instant::now();
                    let written = event_log::write(&log.lakehouse, epoch, &rows).and_then(|add| {
                        let columns = event_log::event_log_columns();
                        let meta = committer.metadata(
                            epoch,
                            EVENT_LOG,
                            &epoch_positions,
                            json!({"upserted": rows.len(), "deleted": 0}),
                        );
                        Ok(committer.commit(epoch, EVENT_LOG, &columns, vec![add], meta)?)
                    });
                    if let Err(e) = written {
                        metrics.fail(e.to_string());
                        pending.clear();
                        hold = None;
                        return;
                    }
                    // `/metrics` counts exactly what the event log holds.
                    for (table, e) in &entries {
                        metrics.log.add(table, e.counts());
                    }
                    tracing::debug!(epoch, ms = log_started.elapsed().as_millis() as u64, "event log committed");
                }
                // Crash point: every table holds `epoch`, its manifest is not written.
                failpoint::hit("after_commit_before_manifest");
                for g in groups.iter_mut() {
                    g.report(&epoch_positions);
                }
                if let Err(e) =
                    committer.write_manifest_resumed(epoch, &names, epoch_positions, &resume)
                {
                    metrics.fail(e.to_string());
                    pending.clear();
                    hold = None;
                    return;
                }
                // Crash point inside: a checkpoint file or manifest not renamed into place.
                if let Err(e) = complete_checkpoints(&mut history) {
                    metrics.fail(e);
                    pending.clear();
                    hold = None;
                    return;
                }
                tracing::debug!(epoch, ms = started.elapsed().as_millis() as u64, "epoch committed (tables, event log, manifest)");
                metrics.epochs_committed.fetch_add(1, Ordering::Relaxed);
                metrics.last_epoch.store(epoch, Ordering::Relaxed);
                metrics.log.committed(epoch, started.elapsed(), event_log::now_micros());
                metrics.commit_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                output.session(&cap).give(epoch);
            }
            // Keep a capability at the next replayed epoch only.
            match (replay.first(), hold.as_mut()) {
                (Some(e), Some(h)) => h.downgrade(e),
                _ => hold = None,
            }
            match (frontier.first(), at_end.as_mut()) {
                (Some(t), Some(c)) if *c.time() < t => c.downgrade(&t),
                (None, Some(_)) => {
                    // The input ended. Epochs after the last commit that changed no table have
                    // positions no commit recorded yet: record them in a commit without file
                    // actions (of `_quarantine`), so that a restart does not read them again.
                    let left: BTreeMap<u64, BTreeMap<String, Value>> =
                        std::mem::take(&mut *positions.borrow_mut());
                    if let Some(&epoch) = left.keys().next_back() {
                        let epoch_positions = json!(left
                            .into_iter()
                            .map(|(e, p)| (e.to_string(), p))
                            .collect::<BTreeMap<_, _>>());
                        let table = crate::table::QUARANTINE;
                        let columns = tables.get(table).cloned().unwrap_or_default();
                        let meta = committer.metadata(
                            epoch,
                            table,
                            &epoch_positions,
                            json!({"upserted": 0, "deleted": 0}),
                        );
                        let recorded = committer
                            .commit(epoch, table, &columns, Vec::new(), meta)
                            .map_err(|e| e.to_string())
                            .and_then(|_| {
                                committer
                                    .write_manifest(epoch, &names, epoch_positions)
                                    .map_err(|e| e.to_string())
                            });
                        match recorded {
                            Ok(_) => {
                                info!(epoch, "positions of trailing epochs without changes recorded");
                                metrics.last_epoch.store(epoch, Ordering::Relaxed);
                            }
                            Err(e) => metrics.fail(e),
                        }
                    }
                    at_end = None;
                }
                _ => {}
            }
        }
    },
    )
}

/// The two input frontiers of the committer, as one.
struct Frontier2<'a>(&'a MutableAntichain<u64>, &'a MutableAntichain<u64>);

impl Frontier2<'_> {
    fn less_equal(&self, e: &u64) -> bool {
        self.0.frontier().less_equal(e) || self.1.frontier().less_equal(e)
    }

    fn first(&self) -> Option<u64> {
        let a = self.0.frontier().first().copied();
        let b = self.1.frontier().first().copied();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Adds one worker's fragment of an epoch's positions of `source` to the epoch's positions:
/// the partitions maps are united, the record counts added.
fn merge_fragment(epoch: &mut BTreeMap<String, Value>, fragment: &PositionFragment) {
    let source = fragment.source.clone();
    let fragment = fragment.to_json();
    match epoch.get_mut(&source) {
        None => {
            epoch.insert(source, fragment);
        }
        Some(have) => {
            if let (Some(parts), Some(more)) = (
                have.get_mut("partitions").and_then(Value::as_object_mut),
                fragment.get("partitions").and_then(Value::as_object),
            ) {
                for (k, v) in more {
                    parts.insert(k.clone(), v.clone());
                }
            }
            let records = have.get("records").and_then(Value::as_u64).unwrap_or(0)
                + fragment.get("records").and_then(Value::as_u64).unwrap_or(0);
            have["records"] = json!(records);
        }
    }
}
