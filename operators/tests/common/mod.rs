//! Helpers shared by the operators' model tests.
//! Each test binary uses some of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::Range;

use rand::seq::SliceRandom;
use rand::Rng;

/// The table after each epoch of `epochs`, from the captured SCD1 output `(epoch, key,
/// Some(row) | None)` applied to `before`; fails on output at an epoch outside `epochs`.
pub fn tables_by_epoch<K: Ord + Clone, V: Ord + Clone>(
    mut changes: Vec<(u64, K, Option<V>)>,
    before: BTreeMap<K, V>,
    epochs: Range<u64>,
) -> Vec<BTreeMap<K, V>> {
    changes.sort();
    let mut tables = Vec::new();
    let mut table = before;
    let mut it = changes.into_iter().peekable();
    for e in epochs {
        while let Some((_, k, v)) = it.next_if(|(t, _, _)| *t == e) {
            match v {
                Some(v) => table.insert(k, v),
                None => table.remove(&k),
            };
        }
        tables.push(table.clone());
    }
    assert!(it.next().is_none(), "output at an unexpected epoch");
    tables
}

/// Appends `dup` copies of random elements of `stream`, then shuffles it.
pub fn add_duplicates_and_shuffle<T: Clone, R: Rng>(stream: &mut Vec<T>, rng: &mut R, dup: usize) {
    for _ in 0..dup {
        let i = rng.gen_range(0..stream.len());
        let c = stream[i].clone();
        stream.push(c);
    }
    stream.shuffle(rng);
}
