//! Model test of `apply_changes`: seeded random CDC streams (inserts, updates, deletes,
//! duplicates, permutations, very late events after deletes) through a plain sequential
//! reference and through the dataflow at 1, 2 and 4 workers; the table after every epoch is
//! compared whole.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{add_duplicates_and_shuffle, tables_by_epoch};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidewater_operators::{ApplyChanges, Change};
use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

type C = Change<u32, u64, u64>;
type Table = BTreeMap<u32, u64>;
type Captured = Arc<Mutex<Vec<(u64, u32, Option<u64>)>>>;

/// The reference: per key the change with the largest (seq, is_delete, fingerprint) wins.
fn reference(changes: &[C]) -> Table {
    let mut best: BTreeMap<u32, (u64, bool, u64, Option<u64>)> = BTreeMap::new();
    for c in changes {
        let cand = (c.seq, c.value.is_none(), c.fingerprint, c.value);
        let e = best.entry(c.key).or_insert(cand);
        if (cand.0, cand.1, cand.2) > (e.0, e.1, e.2) {
            *e = cand;
        }
    }
    best.into_iter()
        .filter_map(|(k, (_, _, _, v))| v.map(|v| (k, v)))
        .collect()
}

/// A random CDC history: true order with increasing sequence numbers, then delivered with
/// local shuffles, duplicates and very late events.
fn random_stream(seed: u64, events: usize, keys: u32) -> Vec<C> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seq = 0u64;
    let mut truth = Vec::with_capacity(events);
    for _ in 0..events {
        seq += rng.gen_range(1..4);
        let key = rng.gen_range(0..keys);
        let value = if rng.gen_bool(0.15) {
            None
        } else {
            Some(rng.gen::<u64>() % 1000)
        };
        let fingerprint = value.unwrap_or(0);
        truth.push(Change {
            key,
            seq,
            fingerprint,
            value,
        });
    }
    let mut delivered = Vec::with_capacity(events * 11 / 10);
    let mut late = Vec::new();
    for chunk in truth.chunks(16) {
        let mut chunk = chunk.to_vec();
        chunk.shuffle(&mut rng);
        for c in chunk {
            if rng.gen_bool(0.03) {
                late.push(c); // delivered at the very end, after newer changes and deletes
                continue;
            }
            if rng.gen_bool(0.05) {
                delivered.push(c.clone()); // duplicate
            }
            delivered.push(c);
        }
    }
    delivered.extend(late);
    delivered
}

/// Runs the stream through the dataflow on `workers` threads, `per_epoch` changes per epoch,
/// each worker feeding a round-robin share; returns the table after every epoch.
fn run_dataflow(stream: &[C], workers: usize, per_epoch: usize) -> Vec<Table> {
    let epochs: Vec<Vec<C>> = stream.chunks(per_epoch).map(|c| c.to_vec()).collect();
    let epochs = Arc::new(epochs);
    let out: Captured = Arc::new(Mutex::new(Vec::new()));
    let (e2, o2) = (epochs.clone(), out.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let mut input: InputHandleVec<u64, C> = InputHandleVec::new();
        let probe = ProbeHandle::new();
        let sink = o2.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .apply_changes(|k: &u32| *k as u64, u64::MAX)
                .inspect_core(move |event| {
                    if let Ok((stamp, data)) = event {
                        let t = *stamp.expect_singleton();
                        let mut sink = sink.lock().unwrap();
                        sink.extend(data.iter().map(|(k, v)| (t, *k, *v)));
                    }
                })
                .probe_with(&probe);
        });
        for (e, batch) in e2.iter().enumerate() {
            for c in batch.iter().skip(index).step_by(peers) {
                input.send(c.clone());
            }
            input.advance_to(e as u64 + 1);
            // Let some epochs be applied as they arrive (the open-epoch path) while others
            // queue up behind an open one (the coalescing path).
            if e % 3 == 0 {
                for _ in 0..3 {
                    worker.step();
                }
            }
        }
        input.close();
        while probe.less_than(&(e2.len() as u64 + 1)) && !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    let changes = out.lock().unwrap().clone();
    tables_by_epoch(changes, Table::new(), 0..epochs.len() as u64)
}

fn check(stream: &[C], workers: usize, per_epoch: usize) {
    let tables = run_dataflow(stream, workers, per_epoch);
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
fn matches_reference_at_1_2_and_4_workers() {
    for seed in 0..4 {
        let stream = random_stream(seed, 3_000, 200);
        assert!(!reference(&stream).is_empty());
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
fn documented_apply_changes_example() {
    // The DLT documentation example (SCD type 1): user 123 deleted at 6, its update at 5
    // arrives later and must not resurrect it; 125's update at 5 arrives after 6 and is stale.
    let fp = |s: &str| {
        s.bytes()
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64))
    };
    let rows = [
        (124, "Raul Oaxaca", 1, false),
        (123, "Isabel Monterrey", 1, false),
        (125, "Mercedes Tijuana", 2, false),
        (126, "Lily Cancun", 2, false),
        (123, "", 6, true),
        (125, "Mercedes Guadalajara", 6, false),
        (125, "Mercedes Mexicali", 5, false),
        (123, "Isabel Chihuahua", 5, false),
    ];
    let stream: Vec<C> = rows
        .iter()
        .map(|(k, v, s, d)| Change {
            key: *k,
            seq: *s,
            fingerprint: fp(v),
            value: if *d { None } else { Some(fp(v)) },
        })
        .collect();
    let expected: Table = [
        (124, fp("Raul Oaxaca")),
        (125, fp("Mercedes Guadalajara")),
        (126, fp("Lily Cancun")),
    ]
    .into_iter()
    .collect();
    for workers in [1, 2] {
        for per_epoch in [1, 3, 8] {
            let tables = run_dataflow(&stream, workers, per_epoch);
            assert_eq!(tables.last().unwrap(), &expected);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Any permutation of a history with duplicates gives the same final table, at any
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
        let tables = run_dataflow(&stream, workers, per_epoch);
        prop_assert_eq!(tables.last().unwrap(), &expected);
    }
}
