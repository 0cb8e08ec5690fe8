//! Model tests of the APPLY CHANGES options (`apply_changes_opts`): APPLY AS TRUNCATE WHEN and
//! IGNORE NULL UPDATES. Seeded random CDC streams with truncates and with rows with null columns
//! (duplicates, local shuffles, very late events) go through a plain sequential reference and
//! through the dataflow at 1, 2 and 4 workers; the table after every epoch is compared whole.
//! Proptests permute and duplicate; checkpoints are compared with the reference state (keys,
//! truncate sequence, merged rows) and restored into other worker counts.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use common::{add_duplicates_and_shuffle, tables_by_epoch};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidewater_operators::{
    ApplyChanges, ApplyOptions, ApplyState, Change, CheckpointSchedule, KeyState, MergedRow,
};
use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::{Exchange, Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

type Row = [Option<u32>; 3];
type C = Change<u32, u64, Row>;
type Table = BTreeMap<u32, Row>;
type Merge = (fn(&Row) -> Vec<bool>, fn(&[&Row]) -> Row);

/// One input event: a change, or a truncate at a sequence value.
#[derive(Clone, Debug)]
enum Ev {
    Change(C),
    Truncate(u64),
}

fn non_null(r: &Row) -> Vec<bool> {
    r.iter().map(Option::is_some).collect()
}

fn compose(rows: &[&Row]) -> Row {
    std::array::from_fn(|c| rows.iter().find_map(|r| r[c]))
}

fn fingerprint(r: &Row) -> u64 {
    r.iter().fold(17u64, |a, v| {
        a.wrapping_mul(1_000_003)
            .wrapping_add(v.map_or(1, |v| v as u64 + 2))
    })
}

fn up(key: u32, seq: u64, row: Row) -> Ev {
    let fingerprint = fingerprint(&row);
    Ev::Change(Change {
        key,
        seq,
        fingerprint,
        value: Some(row),
    })
}

fn del(key: u32, seq: u64) -> Ev {
    Ev::Change(Change {
        key,
        seq,
        fingerprint: 0,
        value: None,
    })
}

/// A live key's latest delete and the upserts `(seq, fingerprint, row)` that make its row.
type RefMerged = (Option<u64>, Vec<(u64, u64, Row)>);

/// What the operator state must hold after a set of events (union over workers).
#[derive(Debug, Default, PartialEq)]
struct RefState {
    table: Table,
    truncated: Option<u64>,
    /// Per key: (seq, deleted, fingerprint) of the winning change above the truncate.
    keys: BTreeMap<u32, (u64, bool, u64)>,
    /// Per live key (with IGNORE NULL UPDATES): its latest delete above the truncate and the
    /// upserts that give its row a column (the newest always), newest first.
    merged: BTreeMap<u32, RefMerged>,
}

/// The reference, straight from the definitions: a truncate at `t` is a delete at `t` of every
/// key; a key's row is its winning upsert (without the option), or per column the value of the
/// newest upsert after the latest delete that has one (with it).
fn reference(events: &[Ev], merge: bool) -> RefState {
    let truncated = events
        .iter()
        .filter_map(|e| match e {
            Ev::Truncate(t) => Some(*t),
            Ev::Change(_) => None,
        })
        .max();
    let mut by_key: BTreeMap<u32, Vec<&C>> = BTreeMap::new();
    for e in events {
        if let Ev::Change(c) = e {
            if truncated.is_none_or(|t| c.seq > t) {
                by_key.entry(c.key).or_default().push(c);
            }
        }
    }
    let mut out = RefState {
        truncated,
        ..RefState::default()
    };
    for (k, changes) in by_key {
        let w = changes
            .iter()
            .max_by_key(|c| (c.seq, c.value.is_none(), c.fingerprint))
            .expect("non-empty");
        out.keys
            .insert(k, (w.seq, w.value.is_none(), w.fingerprint));
        if w.value.is_none() {
            continue;
        }
        let reset = changes
            .iter()
            .filter(|c| c.value.is_none())
            .map(|c| c.seq)
            .max();
        let mut ups: Vec<(u64, u64, Row)> = changes
            .iter()
            .filter(|c| reset.is_none_or(|r| c.seq > r))
            .filter_map(|c| c.value.map(|v| (c.seq, c.fingerprint, v)))
            .collect();
        ups.sort_by_key(|u| std::cmp::Reverse((u.0, u.1)));
        ups.dedup();
        if !merge {
            out.table.insert(k, ups[0].2);
            continue;
        }
        let rows: Vec<&Row> = ups.iter().map(|(_, _, r)| r).collect();
        out.table.insert(k, compose(&rows));
        let mut covered = [false; 3];
        let mut givers = Vec::new();
        for (i, u) in ups.iter().enumerate() {
            let gives = (0..3).any(|c| u.2[c].is_some() && !covered[c]);
            if i == 0 || gives {
                givers.push(*u);
            }
            for (c, v) in covered.iter_mut().zip(&u.2) {
                *c |= v.is_some();
            }
        }
        out.merged.insert(k, (reset, givers));
    }
    out
}

/// A random CDC history: true order with non-decreasing sequence numbers (ties happen), rows
/// with null columns if `nulls`, truncates if `truncates`; then delivered with local shuffles,
/// duplicates and very late events.
fn random_stream(seed: u64, events: usize, keys: u32, truncates: bool, nulls: bool) -> Vec<Ev> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seq = 0u64;
    let mut truth = Vec::with_capacity(events);
    for _ in 0..events {
        seq += rng.gen_range(0..3);
        if truncates && rng.gen_bool(0.004) {
            truth.push(Ev::Truncate(seq));
            continue;
        }
        let key = rng.gen_range(0..keys);
        if rng.gen_bool(0.12) {
            truth.push(Ev::Change(Change {
                key,
                seq,
                fingerprint: rng.gen_range(0..4),
                value: None,
            }));
            continue;
        }
        let row: Row = std::array::from_fn(|_| {
            (!(nulls && rng.gen_bool(0.45))).then(|| rng.gen_range(0..1000))
        });
        truth.push(up(key, seq, row));
    }
    let mut delivered = Vec::with_capacity(events * 11 / 10);
    let mut late = Vec::new();
    for chunk in truth.chunks(16) {
        let mut chunk = chunk.to_vec();
        chunk.shuffle(&mut rng);
        for e in chunk {
            if rng.gen_bool(0.03) {
                late.push(e);
                continue;
            }
            if rng.gen_bool(0.05) {
                delivered.push(e.clone());
            }
            delivered.push(e);
        }
    }
    delivered.extend(late);
    delivered
}

/// The state of one worker as saved: keys, truncate sequence, merged rows.
type SavedState = (
    Vec<(u32, KeyState<u64>)>,
    Option<u64>,
    Vec<(u32, MergedRow<u64, Row>)>,
);
/// Saved states: epoch → per worker.
type Saved = BTreeMap<u64, BTreeMap<usize, SavedState>>;

/// One run of the dataflow.
struct Run<'a> {
    epochs: &'a [Vec<Ev>],
    workers: usize,
    merge: bool,
    /// Checkpoint every this many epochs.
    every: Option<u64>,
    /// Steps the workers after every `stepping`-th epoch (and at some others).
    stepping: usize,
    /// The input is exchanged by the route before the operator, which is told so
    /// ([`ApplyOptions::routed`]) and takes it where it is.
    routed: bool,
}

impl Run<'_> {
    /// Runs epochs `start..` from `initial` (the state of all workers, redistributed by key);
    /// returns the table after every epoch from `start` on (starting from `before`) and the
    /// saved states.
    fn go(&self, start: usize, before: Table, initial: SavedState) -> (Vec<Table>, Saved) {
        let epochs = Arc::new(self.epochs.to_vec());
        let initial = Arc::new(initial);
        let out = Arc::new(Mutex::new(Vec::new()));
        let saved: Arc<Mutex<Saved>> = Arc::default();
        let (e2, o2, s2) = (epochs.clone(), out.clone(), saved.clone());
        let (merge, every, stepping, routed) = (self.merge, self.every, self.stepping, self.routed);
        timely::execute(timely::Config::process(self.workers), move |worker| {
            let index = worker.index();
            let peers = worker.peers();
            let mine = |k: &u32| (*k as usize) % peers == index;
            let (keys, truncated, merged) = &*initial;
            let mut state: ApplyState<u32, u64, Row> = ApplyState::default();
            let mut tombstones = Vec::new();
            for (k, st) in keys.iter().filter(|(k, _)| mine(k)) {
                if st.deleted {
                    tombstones.push((st.deleted_at, *k));
                }
                state.keys.insert(*k, st.clone());
            }
            tombstones.sort();
            state.tombstones = VecDeque::from(tombstones);
            state.truncated = *truncated;
            for (k, m) in merged.iter().filter(|(k, _)| mine(k)) {
                state.merged.insert(*k, m.clone());
            }
            let mut input: InputHandleVec<u64, C> = InputHandleVec::new();
            let mut truncs: InputHandleVec<u64, u64> = InputHandleVec::new();
            let probe = ProbeHandle::new();
            let (sink, saved) = (o2.clone(), s2.clone());
            let options = ApplyOptions::<Merge> {
                retention_epochs: u64::MAX,
                ignore_null_updates: merge.then_some((non_null as _, compose as _)),
                checkpoints: every.map(|every| CheckpointSchedule {
                    every,
                    first: start as u64,
                }),
                on_epoch: None,
                routed,
            };
            worker.dataflow::<u64, _, _>(|scope| {
                let truncates = scope.input_from(&mut truncs);
                let changes = scope.input_from(&mut input);
                let changes = if routed {
                    changes.exchange(|c: &Change<u32, u64, Row>| c.key as u64)
                } else {
                    changes
                };
                changes
                    .apply_changes_opts(
                        Some(truncates),
                        |k: &u32| *k as u64,
                        options,
                        state,
                        move |epoch, st: &ApplyState<u32, u64, Row>| {
                            let keys = st.keys.iter().map(|(k, s)| (*k, s.clone())).collect();
                            let merged = st.merged.iter().map(|(k, m)| (*k, m.clone())).collect();
                            let mut saved = saved.lock().unwrap();
                            let prev = saved
                                .entry(epoch)
                                .or_default()
                                .insert(index, (keys, st.truncated, merged));
                            assert!(prev.is_none(), "epoch {epoch} saved twice by {index}");
                        },
                    )
                    .inspect_core(move |event| {
                        if let Ok((stamp, data)) = event {
                            let t = *stamp.expect_singleton();
                            sink.lock()
                                .unwrap()
                                .extend(data.iter().map(|(k, v)| (t, *k, *v)));
                        }
                    })
                    .probe_with(&probe);
            });
            input.advance_to(start as u64);
            truncs.advance_to(start as u64);
            for (e, batch) in e2.iter().enumerate().skip(start) {
                let mine: Vec<&Ev> = batch.iter().skip(index).step_by(peers).collect();
                // Half of some epochs arrives while the epoch is still open (applied as it
                // arrives), the rest of the time epochs queue up (coalesced).
                let split = if e % 5 == 3 || e % 7 == 0 {
                    mine.len() / 2
                } else {
                    0
                };
                for ev in &mine[..split] {
                    send(&mut input, &mut truncs, ev);
                }
                if split > 0 {
                    input.flush();
                    truncs.flush();
                    for _ in 0..3 {
                        worker.step();
                    }
                }
                for ev in &mine[split..] {
                    send(&mut input, &mut truncs, ev);
                }
                input.advance_to(e as u64 + 1);
                truncs.advance_to(e as u64 + 1);
                if e % 5 == 1 || (e % stepping == 0 && e % 5 != 2) {
                    for _ in 0..3 {
                        worker.step();
                    }
                }
            }
            input.close();
            truncs.close();
            while !probe.done() {
                worker.step();
            }
        })
        .unwrap();
        let changes = out.lock().unwrap().clone();
        let tables = tables_by_epoch(changes, before, start as u64..epochs.len() as u64);
        let saved = saved.lock().unwrap().clone();
        (tables, saved)
    }
}

fn send(input: &mut InputHandleVec<u64, C>, truncs: &mut InputHandleVec<u64, u64>, ev: &Ev) {
    match ev {
        Ev::Change(c) => input.send(c.clone()),
        Ev::Truncate(t) => truncs.send(*t),
    }
}

/// Runs `stream` in epochs of `per_epoch` events and compares the table after every epoch
/// with the reference.
fn check(stream: &[Ev], workers: usize, per_epoch: usize, merge: bool) {
    check_routed(stream, workers, per_epoch, merge, false)
}

/// [`check`], with the input exchanged before the operator if `routed`.
fn check_routed(stream: &[Ev], workers: usize, per_epoch: usize, merge: bool, routed: bool) {
    let epochs: Vec<Vec<Ev>> = stream.chunks(per_epoch).map(|c| c.to_vec()).collect();
    let run = Run {
        epochs: &epochs,
        workers,
        merge,
        every: None,
        stepping: 3,
        routed,
    };
    let (tables, _) = run.go(0, Table::new(), SavedState::default());
    for (e, table) in tables.iter().enumerate() {
        let prefix = &stream[..((e + 1) * per_epoch).min(stream.len())];
        assert_eq!(
            table,
            &reference(prefix, merge).table,
            "table after epoch {e} differs (workers = {workers}, merge = {merge})"
        );
    }
}

fn truncates_in(stream: &[Ev]) -> usize {
    stream
        .iter()
        .filter(|e| matches!(e, Ev::Truncate(_)))
        .count()
}

#[test]
fn truncates_match_the_reference_at_1_2_and_4_workers() {
    for seed in 0..3 {
        let stream = random_stream(seed, 2_000, 150, true, false);
        assert!(truncates_in(&stream) >= 3);
        assert!(!reference(&stream, false).table.is_empty());
        for workers in [1, 2, 4] {
            check(&stream, workers, 200, false);
        }
    }
}

#[test]
fn null_merge_matches_the_reference_at_1_2_and_4_workers() {
    for (seed, truncates) in [(10, true), (11, true), (12, false)] {
        let stream = random_stream(seed, 2_000, 150, truncates, true);
        assert_eq!(truncates_in(&stream) > 0, truncates);
        let r = reference(&stream, true);
        // The merge matters: some rows differ from their newest upsert.
        assert_ne!(r.table, reference(&stream, false).table);
        for workers in [1, 2, 4] {
            check(&stream, workers, 200, true);
        }
    }
}

#[test]
fn input_routed_upstream_matches_the_reference_at_1_2_and_4_workers() {
    for (seed, merge) in [(20, false), (21, true)] {
        let stream = random_stream(seed, 2_000, 150, true, merge);
        for workers in [1, 2, 4] {
            check_routed(&stream, workers, 200, merge, true);
        }
    }
}

#[test]
fn one_epoch_for_everything_and_one_event_per_epoch() {
    let stream = random_stream(99, 400, 30, true, true);
    for merge in [false, true] {
        check(&stream, 2, stream.len(), merge);
        check(&stream, 3, 1, merge);
    }
}

/// Runs explicit epochs and returns the table after each.
fn tables(epochs: Vec<Vec<Ev>>, workers: usize, merge: bool) -> Vec<Table> {
    let run = Run {
        epochs: &epochs,
        workers,
        merge,
        every: None,
        stepping: 1,
        routed: false,
    };
    run.go(0, Table::new(), SavedState::default()).0
}

fn table<const N: usize>(rows: [(u32, Row); N]) -> Table {
    rows.into_iter().collect()
}

#[test]
fn truncate_reaches_keys_on_every_worker_and_late_older_upserts_stay_gone() {
    let all = |v| [Some(v), Some(v), Some(v)];
    let epochs = vec![
        (0..8).map(|k| up(k, k as u64 + 1, all(k))).collect(),
        // With 2 workers the truncate is fed by worker 1 only; keys live on both.
        vec![up(7, 20, all(20)), Ev::Truncate(5)],
        // Late: older than the truncate (stale), at it (the delete wins), after it (re-creates).
        vec![up(1, 3, all(3)), up(2, 5, all(5)), up(3, 6, all(6))],
        // A truncate older than the current one changes nothing; a key never seen before
        // the truncate is covered too.
        vec![Ev::Truncate(4), up(9, 2, all(2))],
    ];
    let expected = vec![
        (0..8).map(|k| (k, all(k))).collect(),
        table([(5, all(5)), (6, all(6)), (7, all(20))]),
        table([(3, all(6)), (5, all(5)), (6, all(6)), (7, all(20))]),
        table([(3, all(6)), (5, all(5)), (6, all(6)), (7, all(20))]),
    ];
    for workers in [1, 2, 3] {
        for merge in [false, true] {
            assert_eq!(tables(epochs.clone(), workers, merge), expected);
        }
    }
}

#[test]
fn null_merge_out_of_order_across_epochs_and_delete_resets_columns() {
    let epochs = vec![
        vec![
            up(1, 5, [None, Some(5), None]),
            up(2, 1, [Some(1), None, None]),
        ],
        vec![up(1, 3, [Some(3), Some(3), None])],
        // A late delete older than the winner removes the upserts before it.
        vec![del(1, 4)],
        // Stale (before the delete), and a newer one that fills a column.
        vec![
            up(1, 2, [Some(2), Some(2), Some(2)]),
            up(1, 6, [None, None, Some(6)]),
        ],
        vec![del(1, 7), up(2, 2, [None, Some(2), None])],
        // After the delete no column of before it survives.
        vec![
            up(1, 8, [None, Some(8), None]),
            up(1, 6, [Some(6), None, None]),
        ],
    ];
    let expected = vec![
        table([(1, [None, Some(5), None]), (2, [Some(1), None, None])]),
        table([(1, [Some(3), Some(5), None]), (2, [Some(1), None, None])]),
        table([(1, [None, Some(5), None]), (2, [Some(1), None, None])]),
        table([(1, [None, Some(5), Some(6)]), (2, [Some(1), None, None])]),
        table([(2, [Some(1), Some(2), None])]),
        table([(1, [None, Some(8), None]), (2, [Some(1), Some(2), None])]),
    ];
    for workers in [1, 2] {
        assert_eq!(tables(epochs.clone(), workers, true), expected);
    }
    // The same events in one epoch, in reverse, give the last table.
    let mut all: Vec<Ev> = epochs.into_iter().flatten().collect();
    all.reverse();
    assert_eq!(tables(vec![all], 2, true), vec![expected[5].clone()]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    /// Any permutation of a history with truncates and duplicates gives the same final table,
    /// at any epoch size and worker count.
    #[test]
    fn truncates_permutations_and_duplicates_do_not_matter(
        seed in 0u64..1_000,
        perm_seed in 0u64..1_000,
        dup in 0usize..40,
        per_epoch in 1usize..60,
        workers in 1usize..4,
    ) {
        permuted(seed, perm_seed, dup, per_epoch, workers, false)?;
    }

    /// The same with IGNORE NULL UPDATES (no truncates).
    #[test]
    fn null_merge_permutations_and_duplicates_do_not_matter(
        seed in 0u64..1_000,
        perm_seed in 0u64..1_000,
        dup in 0usize..40,
        per_epoch in 1usize..60,
        workers in 1usize..4,
    ) {
        permuted(seed, perm_seed, dup, per_epoch, workers, true)?;
    }
}

fn permuted(
    seed: u64,
    perm_seed: u64,
    dup: usize,
    per_epoch: usize,
    workers: usize,
    merge: bool,
) -> Result<(), TestCaseError> {
    // Truncates are frequent here, so that a short history has some.
    let mut rng = ChaCha8Rng::seed_from_u64(perm_seed);
    let mut stream = random_stream(seed, 200, 25, false, merge);
    if !merge {
        for _ in 0..3 {
            let i = rng.gen_range(0..stream.len());
            let t = match &stream[i] {
                Ev::Change(c) => c.seq,
                Ev::Truncate(t) => *t,
            };
            stream.push(Ev::Truncate(t));
        }
    }
    let expected = reference(&stream, merge).table;
    add_duplicates_and_shuffle(&mut stream, &mut rng, dup);
    let epochs: Vec<Vec<Ev>> = stream.chunks(per_epoch).map(|c| c.to_vec()).collect();
    let run = Run {
        epochs: &epochs,
        workers,
        merge,
        every: None,
        stepping: 2,
        routed: false,
    };
    let (tables, _) = run.go(0, Table::new(), SavedState::default());
    prop_assert_eq!(tables.last().unwrap(), &expected);
    Ok(())
}

/// The union over workers of saved states, as the reference describes it.
fn as_reference(per_worker: &BTreeMap<usize, SavedState>, workers: usize) -> RefState {
    assert_eq!(per_worker.len(), workers, "workers that saved");
    let truncated: Vec<Option<u64>> = per_worker.values().map(|s| s.1).collect();
    assert!(
        truncated.windows(2).all(|w| w[0] == w[1]),
        "every worker has the same truncate sequence: {truncated:?}"
    );
    let mut out = RefState {
        truncated: truncated[0],
        ..RefState::default()
    };
    for (keys, _, merged) in per_worker.values() {
        for (k, s) in keys {
            out.keys.insert(*k, (s.seq, s.deleted, s.fingerprint));
        }
        for (k, m) in merged {
            out.merged.insert(*k, (m.reset, m.upserts.clone()));
        }
    }
    out
}

fn union(per_worker: &BTreeMap<usize, SavedState>) -> SavedState {
    let mut all = SavedState::default();
    for (keys, truncated, merged) in per_worker.values() {
        all.0.extend(keys.iter().cloned());
        all.1 = all.1.max(*truncated);
        all.2.extend(merged.iter().cloned());
    }
    all
}

#[test]
fn checkpoints_hold_the_truncate_and_merged_rows_and_restore_at_any_worker_count() {
    for (seed, merge) in [(20, true), (21, false), (22, true)] {
        let stream = random_stream(seed, 1_600, 100, true, merge);
        // Every fifth epoch (from epoch 2) has no data.
        let epochs: Vec<Vec<Ev>> = stream
            .chunks(100)
            .enumerate()
            .map(|(e, c)| if e % 5 == 2 { Vec::new() } else { c.to_vec() })
            .collect();
        let flat: Vec<Ev> = epochs.iter().flatten().cloned().collect();
        let ends: Vec<usize> = epochs
            .iter()
            .scan(0, |n, e| {
                *n += e.len();
                Some(*n)
            })
            .collect();
        let n = epochs.len() as u64;
        let prefix = |e: u64| &flat[..ends[e as usize]];
        let mut truncated_checkpoints = 0;
        for (workers, every, stepping) in [(1, 3, 1), (2, 4, 3), (3, 2, 2)] {
            let run = Run {
                epochs: &epochs,
                workers,
                merge,
                every: Some(every),
                stepping,
                // (Checkpoints and restores with input routed upstream too.)
                routed: workers == 2,
            };
            let (tables, saved) = run.go(0, Table::new(), SavedState::default());
            for (e, t) in tables.iter().enumerate() {
                assert_eq!(t, &reference(prefix(e as u64), merge).table, "epoch {e}");
            }
            let due: Vec<u64> = (0..n).filter(|e| (e + 1) % every == 0).collect();
            for c in &due {
                let got = saved
                    .get(c)
                    .unwrap_or_else(|| panic!("epoch {c} not saved"));
                let want = RefState {
                    table: Table::new(),
                    ..reference(prefix(*c), merge)
                };
                assert_eq!(as_reference(got, workers), want, "state saved at epoch {c}");
                truncated_checkpoints += usize::from(want.truncated.is_some());
            }
            // The final state, saved when the input ended, is the whole stream's.
            let last = saved
                .get(&CheckpointSchedule::FINAL)
                .expect("the final state is saved");
            let want = RefState {
                table: Table::new(),
                ..reference(prefix(n - 1), merge)
            };
            assert_eq!(as_reference(last, workers), want, "the final state");
            assert!(saved
                .keys()
                .all(|e| *e == CheckpointSchedule::FINAL || ((e + 1) % every == 0 && *e < n)));
            // Restore from every checkpoint into another worker count, replay the rest.
            for c in due.iter().filter(|c| **c + 1 < n) {
                let again = Run {
                    workers: workers % 3 + 1,
                    ..run
                };
                let start = *c as usize + 1;
                let before = reference(prefix(*c), merge).table;
                let (tables, _) = again.go(start, before, union(&saved[c]));
                for (i, t) in tables.iter().enumerate() {
                    let e = (start + i) as u64;
                    assert_eq!(
                        t,
                        &reference(prefix(e), merge).table,
                        "epoch {e} after a restore of epoch {c} into {} workers",
                        again.workers
                    );
                }
            }
        }
        assert!(truncated_checkpoints > 0, "no checkpoint after a truncate");
    }
}
