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
use tidewater_operators::EpochStash;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use tracing::info;

use crate::failpoint;
use crate::metrics::Metrics;
use crate::source::SharedPositions;
use crate::table::CommitMsg;

/// Builds the committer. Only worker 0 receives messages and commits. `resume` is where the
/// lakehouse stood at start (empty on a fresh one).
pub fn committer<'scope>(
    msgs: StreamVec<'scope, u64, CommitMsg>,
    config: CommitterConfig,
    tables: BTreeMap<String, Vec<Column>>,
    positions: SharedPositions,
    metrics: Arc<Metrics>,
    resume: Arc<ResumeInfo>,
) -> StreamVec<'scope, u64, u64> {
    let active = msgs.scope().index() == 0;
    msgs.unary_frontier(Exchange::new(|_: &CommitMsg| 0), "Committer", move |cap, _info| {
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
            resume.commit_positions.keys().copied().collect()
        } else {
            BTreeSet::new()
        };
        let mut hold = replay.first().map(|e| {
            let mut cap = cap;
            cap.downgrade(e);
            cap
        });
        move |(input, frontier), output| {
            pending.stash(input, output.output_index());
            let Some(committer) = committer.as_mut() else {
                pending.clear();
                hold = None;
                return;
            };
            loop {
                let complete = |e: &u64| !frontier.frontier().less_equal(e);
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
                    metrics.last_epoch.store(epoch, Ordering::Relaxed);
                    output.session(&cap).give(epoch);
                    continue;
                }
                let mut by_table: BTreeMap<String, (Vec<_>, u64, u64)> = BTreeMap::new();
                for m in msgs {
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
                        }
                        Ok(CommitOutcome::AlreadyCommitted(v)) => {
                            info!(epoch, table = %table, version = v, "already committed; skipped");
                        }
                        Err(e) => {
                            metrics.fail(e.to_string());
                            pending.clear();
                            hold = None;
                            return;
                        }
                    }
                }
                // Crash point: every table holds `epoch`, its manifest is not written.
                failpoint::hit("after_commit_before_manifest");
                if let Err(e) = committer.write_manifest(epoch, &names, epoch_positions) {
                    metrics.fail(e.to_string());
                    pending.clear();
                    hold = None;
                    return;
                }
                metrics.epochs_committed.fetch_add(1, Ordering::Relaxed);
                metrics.last_epoch.store(epoch, Ordering::Relaxed);
                metrics.commit_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                output.session(&cap).give(epoch);
            }
            // Keep a capability at the next replayed epoch only.
            match (replay.first(), hold.as_mut()) {
                (Some(e), Some(h)) => h.downgrade(e),
                _ => hold = None,
            }
        }
    })
}
