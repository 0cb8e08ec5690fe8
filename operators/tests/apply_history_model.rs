//! Model test of `apply_history` (SCD type 2): seeded random CDC streams (inserts, updates of
//! only the untracked part, nulls, deletes, same-sequence conflicts, duplicates, permutations
//! across epochs, very late events) through a plain sequential reference and through the
//! dataflow at 1, 2 and 4 workers; the table of histories after every epoch is compared whole.
//! Checkpoints: the states saved at due epochs equal the reference events, and a restore into
//! another worker count continues exactly.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::add_duplicates_and_shuffle;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidewater_operators::{
    ApplyHistory, Change, CheckpointSchedule, Event, HistoryState, Step, Version,
};
use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

/// A row: a tracked part and an untracked part (`None` is a null, filled from the open version).
type Row = (u32, Option<u32>);
type C = Change<u32, u64, Row>;
type History = Vec<Version<u64, Row>>;
/// Per key, its history (keys without versions are absent).
type Table = BTreeMap<u32, History>;
/// Per key, per sequence value: the winning event as (fingerprint, value).
type Events = BTreeMap<u32, BTreeMap<u64, (u64, Option<Row>)>>;
/// Saved states: epoch → per worker, its state.
type Saved = BTreeMap<u64, BTreeMap<usize, HistoryState<u32, u64, Row>>>;

/// `TRACK HISTORY ON` the first part, `IGNORE NULL UPDATES` on the second.
fn step(cur: Option<&Row>, v: &Row) -> Step<Row> {
    let w = (v.0, v.1.or(cur.and_then(|c| c.1)));
    match cur {
        Some(c) if c.0 == w.0 => Step::InPlace(w),
        _ => Step::NewVersion(w),
    }
}

fn fingerprint(value: &Option<Row>) -> u64 {
    value.map_or(0, |(t, u)| (t as u64) << 32 | u.map_or(0, |u| u as u64 + 1))
}

/// The reference events: per key and sequence value the largest (is_delete, fingerprint).
fn reference_events(changes: &[C]) -> Events {
    let mut sorted: Vec<&C> = changes.iter().collect();
    sorted.sort_by_key(|c| (c.key, c.seq, c.value.is_none(), c.fingerprint));
    let mut events = Events::new();
    for c in sorted {
        // Later in the sort wins: the last one per (key, seq) stays.
        events
            .entry(c.key)
            .or_default()
            .insert(c.seq, (c.fingerprint, c.value));
    }
    events
}

/// The reference: per key, the fold of its winning events in ascending sequence.
fn reference(changes: &[C]) -> Table {
    let mut table = Table::new();
    for (key, events) in reference_events(changes) {
        let mut history: History = Vec::new();
        for (seq, (_, value)) in events {
            let open = history.last_mut().filter(|v| v.end.is_none());
            match (value, open) {
                (None, Some(open)) => open.end = Some(seq),
                (None, None) => {}
                (Some(v), open) => {
                    let filled = (v.0, v.1.or(open.as_ref().and_then(|o| o.value.1)));
                    match open {
                        Some(open) if open.value.0 == filled.0 => open.value = filled,
                        open => {
                            if let Some(open) = open {
                                open.end = Some(seq);
                            }
                            history.push(Version {
                                start: seq,
                                end: None,
                                value: filled,
                            });
                        }
                    }
                }
            }
        }
        if !history.is_empty() {
            table.insert(key, history);
        }
    }
    table
}

/// A random CDC history in true order, then delivered with local shuffles, duplicates, events
/// delayed by up to a few hundred positions (across epochs) and very late events.
fn random_stream(seed: u64, events: usize, keys: u32) -> Vec<C> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seq = 0u64;
    let mut tracked: BTreeMap<u32, u32> = BTreeMap::new();
    let mut truth: Vec<C> = Vec::with_capacity(events);
    for _ in 0..events {
        seq += rng.gen_range(1..4);
        let key = rng.gen_range(0..keys);
        let value = if rng.gen_bool(0.12) {
            None
        } else {
            // Half the updates change only the untracked part.
            let t = match tracked.get(&key) {
                Some(t) if rng.gen_bool(0.5) => *t,
                _ => rng.gen_range(0..4),
            };
            tracked.insert(key, t);
            let u = (!rng.gen_bool(0.15)).then(|| rng.gen_range(0..50));
            Some((t, u))
        };
        truth.push(Change {
            key,
            seq,
            fingerprint: fingerprint(&value),
            value,
        });
        if rng.gen_bool(0.04) {
            // A conflicting event at the same key and sequence value.
            let value =
                (!rng.gen_bool(0.3)).then(|| (rng.gen_range(0..4), Some(rng.gen_range(0..50))));
            truth.push(Change {
                key,
                seq,
                fingerprint: fingerprint(&value),
                value,
            });
        }
    }
    let mut positioned: Vec<(usize, C)> = Vec::with_capacity(truth.len() * 11 / 10);
    for (i, c) in truth.into_iter().enumerate() {
        let pos = if rng.gen_bool(0.03) {
            usize::MAX // very late: after newer changes and deletes
        } else if rng.gen_bool(0.05) {
            i + rng.gen_range(0..400)
        } else {
            i
        };
        if rng.gen_bool(0.05) {
            positioned.push((i + rng.gen_range(0..100), c.clone())); // duplicate
        }
        positioned.push((pos, c));
    }
    positioned.sort_by_key(|(p, _)| *p);
    let mut delivered: Vec<C> = positioned.into_iter().map(|(_, c)| c).collect();
    for chunk in delivered.chunks_mut(16) {
        chunk.shuffle(&mut rng);
    }
    delivered
}

/// One run of the dataflow over `epochs[start..]`.
struct Run<'a> {
    epochs: &'a [Vec<C>],
    /// The first epoch fed (the epoch a restart resumes at).
    start: usize,
    /// The restored state of all workers (each worker keeps the keys routed to it).
    initial: HistoryState<u32, u64, Row>,
    workers: usize,
    /// Checkpoint every this many epochs, if set.
    every: Option<u64>,
    /// Step the worker after epochs that are multiples of this (varies what is queued).
    stepping: usize,
}

impl Run<'_> {
    /// Runs and returns the output `(epoch, key, history)`, sorted, and the saved states.
    fn go(&self) -> (Vec<(u64, u32, History)>, Saved) {
        let epochs = Arc::new(self.epochs.to_vec());
        let initial = Arc::new(self.initial.clone());
        let out: Arc<Mutex<Vec<(u64, u32, History)>>> = Arc::default();
        let saved: Arc<Mutex<Saved>> = Arc::default();
        let (start, every, stepping) = (self.start, self.every, self.stepping);
        let (o2, s2) = (out.clone(), saved.clone());
        timely::execute(timely::Config::process(self.workers), move |worker| {
            let index = worker.index();
            let peers = worker.peers();
            let mut state = (*initial).clone();
            state.retain(|k| *k as usize % peers == index);
            let mut input: InputHandleVec<u64, C> = InputHandleVec::new();
            let probe = ProbeHandle::new();
            let (sink, saved) = (o2.clone(), s2.clone());
            let schedule = every.map(|every| CheckpointSchedule {
                every,
                first: start as u64,
            });
            worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut input)
                    .apply_history(
                        |k: &u32| *k as u64,
                        step,
                        state,
                        schedule,
                        move |epoch, st: &HistoryState<u32, u64, Row>| {
                            assert!(st.keys.keys().all(|k| *k as usize % peers == index));
                            let mut saved = saved.lock().unwrap();
                            let prev = saved.entry(epoch).or_default().insert(index, st.clone());
                            assert!(prev.is_none(), "epoch {epoch} saved twice by {index}");
                        },
                    )
                    .inspect_core(move |event| {
                        if let Ok((stamp, data)) = event {
                            let t = *stamp.expect_singleton();
                            let mut sink = sink.lock().unwrap();
                            sink.extend(data.iter().map(|(k, h)| (t, *k, h.clone())));
                        }
                    })
                    .probe_with(&probe);
            });
            input.advance_to(start as u64);
            for (e, batch) in epochs.iter().enumerate().skip(start) {
                let mine: Vec<&C> = batch.iter().skip(index).step_by(peers).collect();
                // Half of some epochs arrives while the epoch is still open.
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
                // Let some epochs be applied as they complete while others queue up.
                if e % stepping == 0 && e % 5 != 2 {
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
        let mut out = out.lock().unwrap().clone();
        out.sort();
        let saved = saved.lock().unwrap().clone();
        (out, saved)
    }
}

/// Applies the output to `before`: the table after every epoch from `start` to the end. Checks
/// that each key appears at most once per epoch and only when its history changed.
fn tables(out: Vec<(u64, u32, History)>, start: usize, end: usize, before: Table) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut table = before;
    let mut it = out.into_iter().peekable();
    for e in start as u64..end as u64 {
        let mut seen = Vec::new();
        while let Some((_, k, h)) = it.next_if(|(t, _, _)| *t == e) {
            assert!(!seen.contains(&k), "key {k} emitted twice in epoch {e}");
            seen.push(k);
            let old = if h.is_empty() {
                table.remove(&k)
            } else {
                table.insert(k, h.clone())
            };
            assert_ne!(
                old.unwrap_or_default(),
                h,
                "unchanged history of {k} in {e}"
            );
        }
        tables.push(table.clone());
    }
    assert!(it.next().is_none(), "output at an unexpected epoch");
    tables
}

fn run_plain(stream: &[C], workers: usize, per_epoch: usize, stepping: usize) -> Vec<Table> {
    let epochs: Vec<Vec<C>> = stream.chunks(per_epoch).map(|c| c.to_vec()).collect();
    let (out, saved) = Run {
        epochs: &epochs,
        start: 0,
        initial: HistoryState::default(),
        workers,
        every: None,
        stepping,
    }
    .go();
    assert!(saved.is_empty());
    tables(out, 0, epochs.len(), Table::new())
}

fn check(stream: &[C], workers: usize, per_epoch: usize) {
    let tables = run_plain(stream, workers, per_epoch, 3);
    for (e, table) in tables.iter().enumerate() {
        let prefix = &stream[..((e + 1) * per_epoch).min(stream.len())];
        assert_eq!(
            table,
            &reference(prefix),
            "table after epoch {e} differs (workers = {workers})"
        );
    }
}

#[test]
fn matches_reference_after_every_epoch_at_1_2_and_4_workers() {
    for seed in 0..3 {
        let stream = random_stream(seed, 3_000, 200);
        let table = reference(&stream);
        // The stream exercises what it should: in-place updates (a version whose value is not
        // its first event's), closed and open versions.
        let versions: Vec<&Version<u64, Row>> = table.values().flatten().collect();
        assert!(versions.iter().any(|v| v.end.is_some()));
        assert!(versions.iter().any(|v| v.end.is_none()));
        assert!(table.values().any(|h| h.len() >= 3));
        for workers in [1, 2, 4] {
            check(&stream, workers, 250);
        }
    }
}

#[test]
fn one_epoch_for_everything_and_one_change_per_epoch() {
    let stream = random_stream(99, 400, 30);
    check(&stream, 2, stream.len());
    check(&stream, 3, 1);
}

#[test]
fn in_place_updates_are_exercised() {
    // Some key's history is shorter than the number of its distinct upserts: updates of the
    // untracked part went in place.
    let stream = random_stream(7, 2_000, 50);
    let events = reference_events(&stream);
    let table = reference(&stream);
    assert!(table.iter().any(|(k, h)| {
        let upserts = events[k].values().filter(|(_, v)| v.is_some()).count();
        h.len() < upserts
    }));
}

#[test]
fn documented_scd2_example_at_1_and_2_workers() {
    // The DLT example of cdc-semantics.md. Names do not change per key, so each row is its
    // city, as the tracked part: every change of city opens a version.
    let (monterrey, chihuahua, oaxaca, tijuana, mexicali, guadalajara, cancun) =
        (1, 2, 3, 4, 5, 6, 7);
    let row = |key, seq, city: u32| Change {
        key,
        seq,
        fingerprint: fingerprint(&Some((city, None))),
        value: Some((city, None)),
    };
    let stream = vec![
        row(124, 1, oaxaca),
        row(123, 1, monterrey),
        row(125, 2, tijuana),
        row(126, 2, cancun),
        Change {
            key: 123,
            seq: 6,
            fingerprint: 0,
            value: None,
        },
        row(125, 6, guadalajara),
        row(125, 5, mexicali),
        row(123, 5, chihuahua),
    ];
    let v = |start, end, city| Version {
        start,
        end,
        value: (city, None),
    };
    let expected: Table = [
        (
            123,
            vec![v(1, Some(5), monterrey), v(5, Some(6), chihuahua)],
        ),
        (124, vec![v(1, None, oaxaca)]),
        (
            125,
            vec![
                v(2, Some(5), tijuana),
                v(5, Some(6), mexicali),
                v(6, None, guadalajara),
            ],
        ),
        (126, vec![v(2, None, cancun)]),
    ]
    .into_iter()
    .collect();
    assert_eq!(reference(&stream), expected);
    for workers in [1, 2] {
        for per_epoch in [1, 3, 8] {
            let tables = run_plain(&stream, workers, per_epoch, 1);
            assert_eq!(tables.last().unwrap(), &expected);
        }
    }
}

/// The saved events of a state, comparable with [`reference_events`].
fn events_of(state: &HistoryState<u32, u64, Row>) -> Events {
    state
        .keys
        .iter()
        .map(|(k, h)| {
            let evs = h
                .events
                .iter()
                .map(|(s, Event { fingerprint, value })| (*s, (*fingerprint, *value)))
                .collect();
            (*k, evs)
        })
        .collect()
}

#[test]
fn checkpoints_match_the_reference_and_restore_at_any_worker_count() {
    for seed in 0..2u64 {
        let stream = random_stream(seed, 2_000, 120);
        // Every fifth epoch (from epoch 2) has no data.
        let epochs: Vec<Vec<C>> = stream
            .chunks(100)
            .enumerate()
            .map(|(e, c)| if e % 5 == 2 { Vec::new() } else { c.to_vec() })
            .collect();
        let n = epochs.len();
        let prefix = |e: usize| -> Vec<C> { epochs[..=e].iter().flatten().cloned().collect() };
        for (workers, every, stepping) in [(1, 3, 1), (2, 4, 3), (4, 5, 2), (2, 1, 5)] {
            let (out, saved) = Run {
                epochs: &epochs,
                start: 0,
                initial: HistoryState::default(),
                workers,
                every: Some(every),
                stepping,
            }
            .go();
            for (e, t) in tables(out, 0, n, Table::new()).iter().enumerate() {
                assert_eq!(t, &reference(&prefix(e)), "epoch {e}");
            }
            // Every due epoch was saved by every worker, with exactly the reference events,
            // and the final state when the input ended; nothing else was saved.
            let due: Vec<usize> = (0..n).filter(|e| (e + 1) % every as usize == 0).collect();
            assert_eq!(
                saved
                    .keys()
                    .filter(|e| **e != CheckpointSchedule::FINAL)
                    .map(|e| *e as usize)
                    .collect::<Vec<_>>(),
                due,
                "saved epochs"
            );
            let last = &saved[&CheckpointSchedule::FINAL];
            assert_eq!(last.len(), workers, "workers that saved the final state");
            let mut final_union = HistoryState::default();
            for st in last.values() {
                final_union.merge(st.clone());
            }
            assert_eq!(
                events_of(&final_union),
                reference_events(&prefix(n - 1)),
                "the final state"
            );
            for c in &due {
                let per_worker = &saved[&(*c as u64)];
                assert_eq!(per_worker.len(), workers, "epoch {c}: workers that saved");
                let mut union = HistoryState::default();
                for st in per_worker.values() {
                    union.merge(st.clone());
                }
                let expected = reference_events(&prefix(*c));
                assert_eq!(events_of(&union), expected, "state saved at epoch {c}");
                // Restore into another worker count and replay the rest.
                if c + 1 == n {
                    continue;
                }
                let again = workers % 3 + 1;
                let start = c + 1;
                let (out, _) = Run {
                    epochs: &epochs,
                    start,
                    initial: union,
                    workers: again,
                    every: Some(every),
                    stepping,
                }
                .go();
                let before = reference(&prefix(*c));
                for (i, t) in tables(out, start, n, before).iter().enumerate() {
                    let e = start + i;
                    assert_eq!(
                        t,
                        &reference(&prefix(e)),
                        "epoch {e} after a restore of epoch {c} into {again} workers"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Any permutation of a history with duplicates gives the same final histories, at any
    /// epoch size and worker count.
    #[test]
    fn permutations_and_duplicates_do_not_matter(
        seed in 0u64..1_000,
        perm_seed in 0u64..1_000,
        dup in 0usize..40,
        per_epoch in 1usize..60,
        workers in 1usize..4,
    ) {
        let mut stream = random_stream(seed, 200, 25);
        let expected = reference(&stream);
        let mut rng = ChaCha8Rng::seed_from_u64(perm_seed);
        add_duplicates_and_shuffle(&mut stream, &mut rng, dup);
        let tables = run_plain(&stream, workers, per_epoch, 2);
        prop_assert_eq!(tables.last().unwrap(), &expected);
    }
}
