//! The committer operator: all file actions are routed to worker 0; when the frontier passes
//! epoch `e` it writes one Delta commit per changed table for `e` (with the `txn` action and
//! the source positions), then the epoch manifest. Its output — one record per committed
//! epoch — is what the cutters' pacing and `--exit-when-idle` watch.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tidewater_connectors::delta::{CommitOutcome, Committer, CommitterConfig};
use tidewater_connectors::types::Column;
use tidewater_operators::EpochStash;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use tracing::info;

use crate::metrics::Metrics;
use crate::source::SharedPositions;
use crate::table::CommitMsg;

/// Builds the committer. Only worker 0 receives messages and commits.
pub fn committer<'scope>(
    msgs: StreamVec<'scope, u64, CommitMsg>,
    config: CommitterConfig,
    tables: BTreeMap<String, Vec<Column>>,
    positions: SharedPositions,
    metrics: Arc<Metrics>,
) -> StreamVec<'scope, u64, u64> {
    let active = msgs.scope().index() == 0;
    msgs.unary_frontier(Exchange::new(|_: &CommitMsg| 0), "Committer", move |_cap, _info| {
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
        move |(input, frontier), output| {
            pending.stash(input, output.output_index());
            let Some(committer) = committer.as_mut() else {
                pending.clear();
                return;
            };
            while let Some((cap, msgs)) = pending.pop_complete(frontier) {
                let epoch = *cap.time();
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
                let mut by_table: BTreeMap<String, (Vec<_>, u64, u64)> = BTreeMap::new();
                for m in msgs {
                    let e = by_table.entry(m.table).or_default();
                    e.0.extend(m.actions);
                    e.1 += m.upserted;
                    e.2 += m.deleted;
                }
                for (table, (mut actions, upserted, deleted)) in by_table {
                    // Deterministic order of actions within the commit.
                    actions.sort_by_key(|a| format!("{a:?}"));
                    let columns = tables.get(&table).cloned().unwrap_or_default();
                    let meta = committer.metadata(
                        epoch,
                        &table,
                        &epoch_positions,
                        json!({"upserted": upserted, "deleted": deleted}),
                    );
                    match committer.commit(epoch, &table, &columns, actions, meta) {
                        Ok(CommitOutcome::Committed(v)) => {
                            info!(epoch, table = %table, version = v, upserted, deleted, "committed");
                        }
                        Ok(CommitOutcome::AlreadyCommitted(v)) => {
                            info!(epoch, table = %table, version = v, "already committed; skipped");
                        }
                        Err(e) => {
                            metrics.fail(e.to_string());
                            pending.clear();
                            return;
                        }
                    }
                }
                if let Err(e) = committer.write_manifest(epoch, &names, epoch_positions) {
                    metrics.fail(e.to_string());
                    pending.clear();
                    return;
                }
                metrics.epochs_committed.fetch_add(1, Ordering::Relaxed);
                metrics.last_epoch.store(epoch, Ordering::Relaxed);
                metrics.commit_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                output.session(&cap).give(epoch);
            }
        }
    })
}
