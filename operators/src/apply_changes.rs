//! `apply_changes`: APPLY CHANGES by key and sequence (SCD type 1) on a stream of change records.
//!
//! Per key, the change with the highest sequence value wins: an upsert sets the row, a delete
//! removes it and leaves a tombstone, so that an older upsert that arrives later cannot
//! resurrect the row. Changes with a lower sequence than the key's current one are stale and
//! ignored; so are exact duplicates. At equal sequence values a delete beats an upsert, and
//! between two upserts the one with the larger `fingerprint` wins, so the result never
//! depends on arrival order, duplication or the number of workers.
//!
//! The operator keeps per key only the winning sequence value, whether it is a tombstone, and
//! the fingerprint — never the rows or the events — so its memory is proportional to the number
//! of live keys plus tombstones. The rows themselves are the output: when the input frontier
//! passes epoch `e`, the operator emits for every key whose visible state changed in `e` one
//! record `(key, Some(row))` (upserted) or `(key, None)` (deleted; only for keys that had a
//! row before the epoch). Events of the open epoch are applied as they arrive; events of later
//! epochs wait until it closes, coalesced per key to the one that wins among them (applying
//! only an epoch's winner per key gives the same state and output as applying all its events),
//! so what waits is bounded by the keys an epoch touches, not by its events.
//!
//! # Example
//! ```
//! use timely::dataflow::operators::{ToStream, Capture, capture::Extract};
//! use tidewater_operators::{ApplyChanges, Change};
//!
//! let captured = timely::example(|scope| {
//!     vec![
//!         Change { key: 1u64, seq: 2u64, fingerprint: 0, value: Some(20u64) },
//!         Change { key: 1u64, seq: 1u64, fingerprint: 0, value: Some(10u64) }, // stale
//!         Change { key: 2u64, seq: 5u64, fingerprint: 0, value: None },        // delete of nothing
//!     ]
//!     .to_stream(scope)
//!     .apply_changes(|k: &u64| *k, u64::MAX)
//!     .capture()
//! });
//! let out: Vec<_> = captured.extract().into_iter().flat_map(|(_, d)| d).collect();
//! assert_eq!(out, vec![(1, Some(20))]);
//! ```

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};

use ahash::RandomState;
use std::hash::Hash;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{Stream, StreamVec};
use timely::ExchangeData;

use timely::dataflow::operators::Capability;

/// One change to apply: `value = Some(row)` upserts, `None` deletes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<K, S, V> {
    /// The key of the target row.
    pub key: K,
    /// The sequence value (`SEQUENCE BY`); higher wins.
    pub seq: S,
    /// A deterministic fingerprint of `value`, used only to break ties between different
    /// upserts with the same sequence value.
    pub fingerprint: u64,
    /// The new row, or `None` for a delete.
    pub value: Option<V>,
}

/// What the operator remembers about one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState<S> {
    /// The winning sequence value.
    pub seq: S,
    /// Whether the winner is a delete (the key is a tombstone).
    pub deleted: bool,
    /// The winner's fingerprint (tie-break).
    pub fingerprint: u64,
    /// The epoch in which the key became a tombstone (for retention).
    pub deleted_at: u64,
}

impl<S: Ord> KeyState<S> {
    /// Whether a change with `(seq, deleted, fingerprint)` beats this state.
    fn is_beaten_by(&self, seq: &S, deleted: bool, fingerprint: u64) -> bool {
        precedence(seq, deleted, fingerprint)
            > precedence(&self.seq, self.deleted, self.fingerprint)
    }
}

/// The order in which changes to one key win: higher sequence, then a delete over an upsert,
/// then the larger fingerprint. The one definition for the state and for coalescing.
fn precedence<S>(seq: &S, deleted: bool, fingerprint: u64) -> (&S, bool, u64) {
    (seq, deleted, fingerprint)
}

impl<K, S: Ord, V> Change<K, S, V> {
    /// Whether this change wins over `other` for the same key (see [`precedence`]).
    fn beats(&self, other: &Self) -> bool {
        precedence(&self.seq, self.value.is_none(), self.fingerprint)
            > precedence(&other.seq, other.value.is_none(), other.fingerprint)
    }
}

/// The state of the operator on one worker; public so that checkpoints can save and restore it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyState<K: Eq + Hash, S> {
    /// Per key: winning sequence, tombstone flag, fingerprint.
    pub keys: HashMap<K, KeyState<S>, RandomState>,
    /// Tombstones in the order they were created: `(epoch, key)`.
    pub tombstones: VecDeque<(u64, K)>,
}

impl<K: Eq + Hash, S> Default for ApplyState<K, S> {
    fn default() -> Self {
        ApplyState {
            keys: HashMap::default(),
            tombstones: VecDeque::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, S: Ord + Clone> ApplyState<K, S> {
    /// Applies one change at epoch `epoch`. Returns `None` if it changed nothing visible,
    /// else `Some(was_visible)`: whether the key had a live row before the change (the caller
    /// then records the change's value as the key's new value).
    pub fn apply(
        &mut self,
        epoch: u64,
        key: &K,
        seq: &S,
        fingerprint: u64,
        delete: bool,
    ) -> Option<bool> {
        // Look up first and clone the key only for a new key (most changes hit known keys).
        if let Some(st) = self.keys.get_mut(key) {
            if !st.is_beaten_by(seq, delete, fingerprint) {
                return None;
            }
            let was_deleted = st.deleted;
            st.seq = seq.clone();
            st.fingerprint = fingerprint;
            st.deleted = delete;
            if delete {
                st.deleted_at = epoch;
                self.tombstones.push_back((epoch, key.clone()));
            }
            // A delete of a tombstone changes nothing visible.
            return (!(was_deleted && delete)).then_some(!was_deleted);
        }
        self.keys.insert(
            key.clone(),
            KeyState {
                seq: seq.clone(),
                deleted: delete,
                fingerprint,
                deleted_at: epoch,
            },
        );
        if delete {
            self.tombstones.push_back((epoch, key.clone()));
        }
        // A delete of an unknown key only leaves a tombstone.
        (!delete).then_some(false)
    }

    /// Forgets tombstones created at or before `epoch - retention`.
    pub fn expire_tombstones(&mut self, epoch: u64, retention: u64) {
        while let Some((at, _)) = self.tombstones.front() {
            if at.saturating_add(retention) >= epoch {
                break;
            }
            let (at, key) = self.tombstones.pop_front().expect("front exists");
            if let Entry::Occupied(e) = self.keys.entry(key) {
                if e.get().deleted && e.get().deleted_at == at {
                    e.remove();
                }
            }
        }
    }

    /// Number of live keys (not tombstones).
    pub fn live_keys(&self) -> usize {
        self.keys.values().filter(|s| !s.deleted).count()
    }
}

/// The changes of a later epoch waiting behind the open one: its capability and, per key, the
/// change that wins among the epoch's changes so far.
type Waiting<K, S, V> = (Capability<u64>, HashMap<K, Change<K, S, V>, RandomState>);

/// When the operator saves its state: at every epoch `e ≥ first` with `(e + 1) % every == 0`.
///
/// A checkpoint is a barrier: the operator holds a capability at the next due epoch `c` until
/// it has handed the state *as of the end of `c`* (every change of epochs `≤ c` applied, none
/// of a later epoch) to the save function, so a downstream operator whose frontier passes `c`
/// knows that every worker has saved its state for `c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointSchedule {
    /// Save every this many epochs (at least 1).
    pub every: u64,
    /// No checkpoint before this epoch (the epoch a restart resumes at).
    pub first: u64,
}

impl CheckpointSchedule {
    /// Whether a checkpoint is due at the end of `epoch`.
    pub fn is_due(&self, epoch: u64) -> bool {
        epoch >= self.first && (epoch + 1).is_multiple_of(self.every)
    }

    /// The first due epoch `≥ epoch` (and `≥ first`).
    pub fn next_due(&self, epoch: u64) -> u64 {
        let e = epoch.max(self.first);
        (e + 1).div_ceil(self.every) * self.every - 1
    }
}

/// Extension trait: APPLY CHANGES (SCD type 1) on a stream of [`Change`]s.
pub trait ApplyChanges<'scope, K, S, V> {
    /// Applies changes by key and sequence. `route` maps a key to a number that decides the
    /// worker owning it (the same number must be used by downstream operators that want the
    /// key's rows on the same worker). Tombstones are forgotten `retention_epochs` epochs after
    /// the delete. The output, at each epoch, holds one `(key, Some(row) | None)` per key whose
    /// visible state changed in that epoch.
    fn apply_changes<R>(
        self,
        route: R,
        retention_epochs: u64,
    ) -> StreamVec<'scope, u64, (K, Option<V>)>
    where
        R: Fn(&K) -> u64 + 'static;

    /// Like [`apply_changes`](ApplyChanges::apply_changes), starting from `initial` state (a
    /// restored checkpoint of this worker's keys) and, if `schedule` is set, handing the state
    /// as of the end of every due epoch to `save(epoch, &state)` (see [`CheckpointSchedule`]:
    /// the output frontier does not pass a due epoch before its state was saved). When the
    /// input ends, due epochs are saved up to the largest epoch this worker knows to exist
    /// (it had data of it or saw the frontier pass it), so the checkpoint of a due epoch at
    /// the very end of the input may be saved by some workers only: the caller ignores a
    /// checkpoint that not every worker saved.
    fn apply_changes_with<R, F>(
        self,
        route: R,
        retention_epochs: u64,
        initial: ApplyState<K, S>,
        schedule: Option<CheckpointSchedule>,
        save: F,
    ) -> StreamVec<'scope, u64, (K, Option<V>)>
    where
        K: Eq + Hash,
        R: Fn(&K) -> u64 + 'static,
        F: FnMut(u64, &ApplyState<K, S>) + 'static;
}

impl<'scope, K, S, V> ApplyChanges<'scope, K, S, V> for Stream<'scope, u64, Vec<Change<K, S, V>>>
where
    K: ExchangeData + Eq + Hash + Clone,
    S: ExchangeData + Ord + Clone,
    V: ExchangeData,
{
    fn apply_changes<R>(
        self,
        route: R,
        retention_epochs: u64,
    ) -> StreamVec<'scope, u64, (K, Option<V>)>
    where
        R: Fn(&K) -> u64 + 'static,
    {
        self.apply_changes_with(
            route,
            retention_epochs,
            ApplyState::default(),
            None,
            |_, _| {},
        )
    }

    fn apply_changes_with<R, F>(
        self,
        route: R,
        retention_epochs: u64,
        initial: ApplyState<K, S>,
        schedule: Option<CheckpointSchedule>,
        mut save: F,
    ) -> StreamVec<'scope, u64, (K, Option<V>)>
    where
        R: Fn(&K) -> u64 + 'static,
        F: FnMut(u64, &ApplyState<K, S>) + 'static,
    {
        let pact = Exchange::new(move |c: &Change<K, S, V>| route(&c.key));
        self.unary_frontier(pact, "ApplyChanges", move |cap, _info| {
            let mut state = initial;
            // The checkpoint barrier: a capability at the next due epoch, held until its state
            // is saved.
            let mut barrier: Option<Capability<u64>> = schedule.map(|s| {
                let mut cap = cap;
                cap.downgrade(&s.next_due(0));
                cap
            });
            // The epoch being applied (the least open one, or a complete one being closed):
            // its capability, and per key whose visible state changed in it, whether the key
            // was visible before the epoch and its new value.
            let mut current: Option<Capability<u64>> = None;
            let mut dirty: HashMap<K, (bool, Option<V>), RandomState> = HashMap::default();
            // Changes of later epochs, coalesced per key to the one that wins among them, so
            // that what waits is bounded by the keys an epoch touches, not by its events.
            let mut later: BTreeMap<u64, Waiting<K, S, V>> = BTreeMap::new();
            // The largest epoch this worker knows to exist: it received data of it, or saw the
            // frontier pass it. When the input ends, checkpoints beyond it are not saved.
            let mut known: Option<u64> = None;

            let apply = |state: &mut ApplyState<K, S>,
                         dirty: &mut HashMap<K, (bool, Option<V>), RandomState>,
                         epoch: u64,
                         c: Change<K, S, V>| {
                let delete = c.value.is_none();
                if let Some(was_visible) = state.apply(epoch, &c.key, &c.seq, c.fingerprint, delete)
                {
                    match dirty.entry(c.key) {
                        Entry::Occupied(mut e) => e.get_mut().1 = c.value,
                        Entry::Vacant(e) => {
                            e.insert((was_visible, c.value));
                        }
                    }
                }
            };

            move |(input, frontier), output| {
                // The least epoch that may still receive data (None: input finished).
                let open = frontier.frontier().first().copied();
                if let Some(o) = open.filter(|o| *o > 0) {
                    known = known.max(Some(o - 1));
                }
                let port = output.output_index();
                // Changes of an epoch past the pending checkpoint wait until it is saved.
                let due = barrier.as_ref().map(|b| *b.time());
                input.for_each_stamp(|cap, data| {
                    let Some(&epoch) = cap.least() else { return };
                    known = known.max(Some(epoch));
                    if current.is_none()
                        && later.is_empty()
                        && Some(epoch) == open
                        && due.is_none_or(|d| epoch <= d)
                    {
                        current = cap.retain_least(port);
                    }
                    if current.as_ref().is_some_and(|c| *c.time() == epoch) {
                        for batch in data {
                            for c in batch.drain(..) {
                                apply(&mut state, &mut dirty, epoch, c);
                            }
                        }
                        return;
                    }
                    let Some(cap) = cap.retain_least(port) else {
                        return;
                    };
                    let (_, waiting) = later
                        .entry(epoch)
                        .or_insert_with(|| (cap, HashMap::default()));
                    for batch in data {
                        for c in batch.drain(..) {
                            match waiting.entry(c.key.clone()) {
                                Entry::Occupied(mut e) => {
                                    if c.beats(e.get()) {
                                        e.insert(c);
                                    }
                                }
                                Entry::Vacant(e) => {
                                    e.insert(c);
                                }
                            }
                        }
                    }
                });

                loop {
                    if let Some(cap) = current.as_ref() {
                        let epoch = *cap.time();
                        if matches!(open, Some(o) if o <= epoch) {
                            break; // still open: more may come
                        }
                        // Complete: emit the keys that changed, then close the epoch.
                        let cap = current.take().expect("present");
                        let changed = dirty
                            .drain()
                            .filter(|(_, (was_visible, v))| *was_visible || v.is_some())
                            .map(|(k, (_, v))| (k, v));
                        output.session(&cap).give_iterator(changed);
                        state.expire_tombstones(epoch, retention_epochs);
                    }
                    let next = later.first_key_value().map(|(e, _)| *e);
                    // The pending checkpoint: due once every epoch up to it is complete and
                    // applied, and before any later epoch is applied.
                    if let (Some(b), Some(s)) = (barrier.as_mut(), schedule) {
                        let c = *b.time();
                        if open.is_none_or(|o| o > c) && next.is_none_or(|n| n > c) {
                            if open.is_none() && known.is_none_or(|k| c > k) {
                                // The input ended before `c` (as far as this worker knows).
                                barrier = None;
                            } else {
                                save(c, &state);
                                b.downgrade(&s.next_due(c + 1));
                            }
                            continue;
                        }
                    }
                    // Promote the next waiting epoch once nothing earlier can arrive.
                    let Some(epoch) = next else {
                        break;
                    };
                    if matches!(open, Some(o) if o < epoch) {
                        break;
                    }
                    // (A pending checkpoint before `epoch` was saved above: `open ≥ epoch`.)
                    let (cap, waiting) = later.remove(&epoch).expect("first");
                    for (_, c) in waiting {
                        apply(&mut state, &mut dirty, epoch, c);
                    }
                    current = Some(cap);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<K: Eq + Hash + Clone, S: Ord + Clone> ApplyState<K, S> {
        fn apply_changed(&mut self, epoch: u64, key: &K, seq: &S, fp: u64, delete: bool) -> bool {
            self.apply(epoch, key, seq, fp, delete).is_some()
        }
    }

    #[test]
    fn state_applies_highest_sequence_and_keeps_tombstones() {
        let mut st: ApplyState<u32, u32> = ApplyState::default();
        assert!(st.apply_changed(1, &7, &5, 0, false)); // insert
        assert!(!st.apply_changed(1, &7, &4, 0, false)); // stale
        assert!(!st.apply_changed(1, &7, &5, 0, false)); // duplicate
        assert!(st.apply_changed(2, &7, &6, 0, true)); // delete
        assert!(!st.apply_changed(2, &7, &5, 9, false)); // late upsert: no resurrection
        assert!(!st.apply_changed(2, &7, &6, 0, true)); // duplicate delete
        assert_eq!(st.live_keys(), 0);
        assert!(st.apply_changed(3, &7, &8, 0, false)); // newer upsert re-creates
        assert_eq!(st.live_keys(), 1);
    }

    #[test]
    fn equal_sequence_ties_are_deterministic() {
        let mut a: ApplyState<u32, u32> = ApplyState::default();
        let mut b: ApplyState<u32, u32> = ApplyState::default();
        a.apply(1, &1, &3, 10, false);
        assert!(a.apply_changed(1, &1, &3, 20, false));
        b.apply(1, &1, &3, 20, false);
        assert!(!b.apply_changed(1, &1, &3, 10, false));
        assert_eq!(a.keys, b.keys);
        // A delete beats an upsert at the same sequence, whatever the order.
        assert!(a.apply_changed(1, &1, &3, 0, true));
        assert!(!a.apply_changed(1, &1, &3, 99, false));
    }

    #[test]
    fn tombstones_expire_after_retention() {
        let mut st: ApplyState<u32, u32> = ApplyState::default();
        st.apply(1, &1, &1, 0, true);
        st.apply(3, &2, &1, 0, true);
        st.expire_tombstones(5, 3); // tombstone of epoch 1 is older than 5 - 3
        assert!(!st.keys.contains_key(&1));
        assert!(st.keys.contains_key(&2));
        // After expiry an old upsert is accepted again (the documented cost of retention).
        assert!(st.apply_changed(6, &1, &0, 0, false));
    }
}
