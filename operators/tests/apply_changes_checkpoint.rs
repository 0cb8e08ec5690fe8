//! Model test of the checkpoints of `apply_changes`: the state saved at every due epoch `c` (the
//! union over workers) equals the reference state after the changes of epochs `≤ c`; and a
//! dataflow started from that state — redistributed by key to another number of workers — fed
//! only the epochs after `c` gives, after every epoch, the table of an uninterrupted run.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use common::tables_by_epoch;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidewater_operators::{ApplyChanges, ApplyState, Change, CheckpointSchedule, KeyState};
use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

type C = Change<u32, u64, u64>;
type Table = BTreeMap<u32, u64>;
/// Per key: (seq, deleted, fingerprint) of the winning change.
type KeyTable = BTreeMap<u32, (u64, bool, u64)>;
/// Saved states: epoch → per worker, its keys.
type Saved = Arc<Mutex<BTreeMap<u64, BTreeMap<usize, Vec<(u32, KeyState<u64>)>>>>>;

fn winners(changes: &[C]) -> BTreeMap<u32, (u64, bool, u64, Option<u64>)> {
    let mut best: BTreeMap<u32, (u64, bool, u64, Option<u64>)> = BTreeMap::new();
    for c in changes {
        let cand = (c.seq, c.value.is_none(), c.fingerprint, c.value);
        let e = best.entry(c.key).or_insert(cand);
        if (cand.0, cand.1, cand.2) > (e.0, e.1, e.2) {
            *e = cand;
        }
    }
    best
}

fn reference_table(changes: &[C]) -> Table {
    winners(changes)
        .into_iter()
        .filter_map(|(k, (_, _, _, v))| v.map(|v| (k, v)))
        .collect()
}

fn reference_keys(changes: &[C]) -> KeyTable {
    winners(changes)
        .into_iter()
        .map(|(k, (s, d, f, _))| (k, (s, d, f)))
        .collect()
}

fn random_stream(seed: u64, events: usize, keys: u32) -> Vec<C> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(events);
    for _ in 0..events {
        seq += rng.gen_range(1..4);
        let value = (!rng.gen_bool(0.2)).then(|| rng.gen::<u64>() % 1000);
        out.push(Change {
            key: rng.gen_range(0..keys),
            seq,
            fingerprint: value.unwrap_or(0),
            value,
        });
    }
    for chunk in out.chunks_mut(24) {
        chunk.shuffle(&mut rng);
    }
    out
}

/// Runs epochs `start..` of `epochs` on `workers` threads from `initial` (the keys of every
/// worker, redistributed by key), checkpointing every `every` epochs from `start`; returns the
/// output table after every epoch from `start` on (starting from `before`) and the saved states.
fn run(
    epochs: &[Vec<C>],
    start: usize,
    before: Table,
    initial: Vec<(u32, KeyState<u64>)>,
    workers: usize,
    every: u64,
    stepping: usize,
) -> (Vec<Table>, Saved) {
    let epochs = Arc::new(epochs.to_vec());
    let initial = Arc::new(initial);
    let out = Arc::new(Mutex::new(Vec::new()));
    let saved: Saved = Arc::default();
    let (e2, o2, s2) = (epochs.clone(), out.clone(), saved.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        // This worker's share of the restored state: the keys routed to it now.
        let mut state: ApplyState<u32, u64> = ApplyState::default();
        let mut tombstones: Vec<(u64, u32)> = Vec::new();
        for (k, st) in initial.iter() {
            if (*k as usize) % peers == index {
                if st.deleted {
                    tombstones.push((st.deleted_at, *k));
                }
                state.keys.insert(*k, st.clone());
            }
        }
        tombstones.sort();
        state.tombstones = VecDeque::from(tombstones);
        let mut input: InputHandleVec<u64, C> = InputHandleVec::new();
        let probe = ProbeHandle::new();
        let (sink, saved) = (o2.clone(), s2.clone());
        let schedule = CheckpointSchedule {
            every,
            first: start as u64,
        };
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .apply_changes_with(
                    |k: &u32| *k as u64,
                    u64::MAX,
                    state,
                    Some(schedule),
                    move |epoch, st: &ApplyState<u32, u64>| {
                        let keys = st.keys.iter().map(|(k, s)| (*k, s.clone())).collect();
                        let mut saved = saved.lock().unwrap();
                        let prev = saved.entry(epoch).or_default().insert(index, keys);
                        assert!(
                            prev.is_none(),
                            "epoch {epoch} saved twice by worker {index}"
                        );
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
        for (e, batch) in e2.iter().enumerate().skip(start) {
            let mine: Vec<&C> = batch.iter().skip(index).step_by(peers).collect();
            // Half of some epochs arrives while the epoch is still open (the path that
            // applies an open epoch's changes as they arrive), right after an epoch without
            // data (which may be due for a checkpoint).
            let split = if e % 5 == 3 || e % 7 == 0 {
                mine.len() / 2
            } else {
                0
            };
            for c in &mine[..split] {
                input.send((*c).clone());
            }
            if split > 0 {
                input.flush();
                for _ in 0..3 {
                    worker.step();
                }
            }
            for c in &mine[split..] {
                input.send((*c).clone());
            }
            input.advance_to(e as u64 + 1);
            if e % 5 == 1 || (e % stepping == 0 && e % 5 != 2) {
                for _ in 0..3 {
                    worker.step();
                }
            }
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    let changes = out.lock().unwrap().clone();
    let tables = tables_by_epoch(changes, before, start as u64..epochs.len() as u64);
    (tables, saved)
}

fn union(saved: &BTreeMap<usize, Vec<(u32, KeyState<u64>)>>) -> Vec<(u32, KeyState<u64>)> {
    let mut all: Vec<_> = saved.values().flatten().cloned().collect();
    all.sort_by_key(|(k, _)| *k);
    all
}

#[test]
fn saved_states_match_the_reference_and_restore_at_any_worker_count() {
    for seed in 0..3u64 {
        let stream = random_stream(seed, 2_400, 150);
        let per_epoch = 100;
        // Every fifth epoch (from epoch 2) has no data.
        let epochs: Vec<Vec<C>> = stream
            .chunks(per_epoch)
            .enumerate()
            .map(|(e, c)| if e % 5 == 2 { Vec::new() } else { c.to_vec() })
            .collect();
        let flat: Vec<C> = epochs.iter().flatten().cloned().collect();
        let ends: Vec<usize> = epochs
            .iter()
            .scan(0, |n, e| {
                *n += e.len();
                Some(*n)
            })
            .collect();
        let n = epochs.len() as u64;
        let prefix = |e: u64| &flat[..ends[e as usize]];
        for (workers, every, stepping) in [(1, 3, 1), (2, 4, 3), (3, 5, 2), (2, 1, 5)] {
            let (tables, saved) = run(
                &epochs,
                0,
                Table::new(),
                Vec::new(),
                workers,
                every,
                stepping,
            );
            for (e, t) in tables.iter().enumerate() {
                assert_eq!(t, &reference_table(prefix(e as u64)), "epoch {e}");
            }
            let saved = saved.lock().unwrap().clone();
            // Every due epoch up to the last one was saved by every worker, with exactly the
            // reference state.
            let due: Vec<u64> = (0..n).filter(|e| (e + 1) % every == 0).collect();
            for c in &due {
                let per_worker = saved
                    .get(c)
                    .unwrap_or_else(|| panic!("epoch {c} not saved"));
                assert_eq!(per_worker.len(), workers, "epoch {c}: workers that saved");
                let got: KeyTable = union(per_worker)
                    .into_iter()
                    .map(|(k, s)| (k, (s.seq, s.deleted, s.fingerprint)))
                    .collect();
                assert_eq!(got, reference_keys(prefix(*c)), "state saved at epoch {c}");
            }
            // When the input ends, every worker saves its final state once more: the state of
            // the whole stream (that of every later due epoch).
            let last = &saved[&CheckpointSchedule::FINAL];
            assert_eq!(last.len(), workers, "workers that saved the final state");
            let got: KeyTable = union(last)
                .into_iter()
                .map(|(k, s)| (k, (s.seq, s.deleted, s.fingerprint)))
                .collect();
            assert_eq!(got, reference_keys(&flat), "the final state");
            // Nothing else is saved for an epoch that is not due, or past the last epoch.
            assert!(saved
                .keys()
                .all(|e| *e == CheckpointSchedule::FINAL || ((e + 1) % every == 0 && *e < n)));
            // Restore from every checkpoint into another worker count, replay the rest.
            for c in due.iter().filter(|c| **c + 1 < n) {
                let restored = union(&saved[c]);
                let again = workers % 3 + 1;
                let start = *c as usize + 1;
                let (tables, _) = run(
                    &epochs,
                    start,
                    reference_table(prefix(*c)),
                    restored,
                    again,
                    every,
                    stepping,
                );
                for (i, t) in tables.iter().enumerate() {
                    let e = (start + i) as u64;
                    assert_eq!(
                        t,
                        &reference_table(prefix(e)),
                        "epoch {e} after a restore of epoch {c} into {again} workers"
                    );
                }
            }
        }
    }
}
