//! `apply_history`: APPLY CHANGES by key and sequence as SCD type 2 (every version of a row with
//! the sequence interval in which it was current) on a stream of change records.
//!
//! Per key, the operator keeps the set of distinct events by sequence value: at most one event
//! per `seq`; between two events with the same `seq` a delete beats an upsert, then the larger
//! `fingerprint` wins (the precedence of [`ApplyChanges`](crate::ApplyChanges)). The key's
//! history is a pure function of that set, a fold over its events in ascending `seq`:
//!
//! - an upsert of `v` asks the caller's `step(current, v)`, where `current` is the value of the
//!   open version (the one whose `end` is `None`), if any. [`Step::InPlace(w)`](Step::InPlace)
//!   replaces the open version's value by `w` and keeps its `start`; with no open version it
//!   acts as `NewVersion`. [`Step::NewVersion(w)`](Step::NewVersion) closes the open version at
//!   this `seq` and opens `[seq, None)` with value `w`. This is where the caller implements
//!   `TRACK HISTORY ON` (in place when the tracked columns are equal) and `IGNORE NULL UPDATES`
//!   (`w` = `v` with its nulls filled from `current`);
//! - a delete closes the open version at its `seq`; with no open version it changes nothing,
//!   but is remembered: an older upsert that arrives later is placed before it and closed by it.
//!
//! So the history never depends on arrival order, duplication, how the input is split into
//! epochs or the number of workers. When the input frontier passes epoch `e`, the operator
//! emits at `e`, for every key whose history changed in `e`, one record `(key, versions)`: the
//! key's complete history in ascending `start` (empty if the key had versions and has none
//! left). A sink replaces all rows of the key by these versions. Keys whose events changed but
//! whose history did not (a duplicate, a delete without an open version, an in-place update to
//! the same value) emit nothing.
//!
//! **Memory** is proportional to the distinct events kept: all of them, forever (including
//! deletes of keys that never had a row; there is no retention as in SCD type 1). History needs
//! them: a late event can land anywhere in a key's sequence, splitting an interval and changing
//! the fold after it (whether a later upsert is in place depends on the version before it).
//! Only the events are stored, not the versions: an epoch folds each key whose events it
//! changes twice (before and after) to see whether its history changed. Input of epochs not yet
//! complete waits, as it arrived, in an [`EpochStash`](crate::EpochStash).
//!
//! # Example
//! ```
//! use timely::dataflow::operators::{ToStream, Capture, capture::Extract};
//! use tidewater_operators::{ApplyHistory, Change, HistoryState, Step, Version};
//!
//! let captured = timely::example(|scope| {
//!     vec![
//!         Change { key: 1u64, seq: 1u64, fingerprint: 10, value: Some(10u64) },
//!         Change { key: 1u64, seq: 3u64, fingerprint: 0, value: None },         // delete
//!         Change { key: 1u64, seq: 2u64, fingerprint: 20, value: Some(20u64) }, // late
//!         Change { key: 2u64, seq: 5u64, fingerprint: 0, value: None },         // delete of nothing
//!     ]
//!     .to_stream(scope)
//!     .apply_history(
//!         |k: &u64| *k,
//!         |cur: Option<&u64>, v: &u64| {
//!             if cur == Some(v) { Step::InPlace(*v) } else { Step::NewVersion(*v) }
//!         },
//!         HistoryState::default(),
//!         None,
//!         |_, _| {},
//!     )
//!     .capture()
//! });
//! let out: Vec<_> = captured.extract().into_iter().flat_map(|(_, d)| d).collect();
//! // The late upsert at 2 splits the interval [1, 3) that the delete at 3 closed.
//! let history = vec![
//!     Version { start: 1, end: Some(2), value: 10 },
//!     Version { start: 2, end: Some(3), value: 20 },
//! ];
//! assert_eq!(out, vec![(1, history)]);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use ahash::RandomState;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Stream, StreamVec};
use timely::ExchangeData;

use crate::apply_changes::{Change, CheckpointSchedule};
use crate::epoch_stash::EpochStash;

/// What an upsert does to the open version (the answer of the caller's `step` function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<V> {
    /// Replace the open version's value, keeping its start (a change of untracked columns).
    /// Acts as [`Step::NewVersion`] when there is no open version.
    InPlace(V),
    /// Close the open version at the upsert's sequence value and open a new one.
    NewVersion(V),
}

/// One version of a row: current from `start` (inclusive) to `end` (exclusive; `None`: still
/// current).
///
/// Ordered by `start`, then `end`, then `value` (so that outputs can be sorted).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version<S, V> {
    /// The sequence value at which the version became current (`__START_AT`).
    pub start: S,
    /// The sequence value at which it stopped being current (`__END_AT`), `None` if open.
    pub end: Option<S>,
    /// The row.
    pub value: V,
}

/// One event of a key, stored under its sequence value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event<V> {
    /// The fingerprint of the change (tie-break between upserts with the same sequence value).
    pub fingerprint: u64,
    /// The upserted row, or `None` for a delete.
    pub value: Option<V>,
}

impl<V> Event<V> {
    /// The precedence between two events at the same sequence value: a delete over an upsert,
    /// then the larger fingerprint.
    fn precedence(&self) -> (bool, u64) {
        (self.value.is_none(), self.fingerprint)
    }
}

/// What the operator remembers about one key: its distinct events by sequence value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize, V: Serialize",
    deserialize = "S: Ord + Deserialize<'de>, V: Deserialize<'de>"
))]
pub struct KeyHistory<S, V> {
    /// At most one event per sequence value: the one with the highest precedence seen.
    pub events: BTreeMap<S, Event<V>>,
}

impl<S, V> Default for KeyHistory<S, V> {
    fn default() -> Self {
        KeyHistory {
            events: BTreeMap::new(),
        }
    }
}

impl<S: Ord + Clone, V: Clone> KeyHistory<S, V> {
    /// Adds an event; returns whether the event set changed (false for a duplicate or an event
    /// beaten by the one already stored at `seq`).
    pub fn insert(&mut self, seq: S, event: Event<V>) -> bool {
        if !self.is_changed_by(&seq, &event) {
            return false;
        }
        self.events.insert(seq, event);
        true
    }

    /// Whether [`insert`](KeyHistory::insert)ing `event` at `seq` would change the event set.
    pub fn is_changed_by(&self, seq: &S, event: &Event<V>) -> bool {
        self.events
            .get(seq)
            .is_none_or(|e| event.precedence() > e.precedence())
    }

    /// Adds every event of `other` (the union under the same precedence as [`insert`]).
    ///
    /// [`insert`]: KeyHistory::insert
    pub fn merge(&mut self, other: KeyHistory<S, V>) {
        for (seq, event) in other.events {
            self.insert(seq, event);
        }
    }

    /// The key's history: the fold of its events in ascending sequence (see the module doc).
    pub fn versions<T>(&self, step: &T) -> Vec<Version<S, V>>
    where
        T: Fn(Option<&V>, &V) -> Step<V>,
    {
        let mut out: Vec<Version<S, V>> = Vec::new();
        // Whether the last version in `out` is open.
        let mut open = false;
        for (seq, event) in &self.events {
            let Some(v) = &event.value else {
                if open {
                    out.last_mut().expect("open version").end = Some(seq.clone());
                    open = false;
                }
                continue;
            };
            let current = if open { out.last_mut() } else { None };
            match (step(current.as_ref().map(|c| &c.value), v), current) {
                (Step::InPlace(w), Some(current)) => current.value = w,
                (Step::InPlace(w) | Step::NewVersion(w), current) => {
                    if let Some(current) = current {
                        current.end = Some(seq.clone());
                    }
                    out.push(Version {
                        start: seq.clone(),
                        end: None,
                        value: w,
                    });
                    open = true;
                }
            }
        }
        out
    }
}

/// The state of the operator on one worker; public so that checkpoints can save and restore it
/// (split by bucket with [`retain`](HistoryState::retain), put back together with
/// [`merge`](HistoryState::merge)).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Eq + Hash, S: Serialize, V: Serialize",
    deserialize = "K: Deserialize<'de> + Eq + Hash, S: Ord + Deserialize<'de>, V: Deserialize<'de>"
))]
pub struct HistoryState<K, S, V> {
    /// Per key, its events.
    pub keys: HashMap<K, KeyHistory<S, V>, RandomState>,
}

impl<K, S, V> Default for HistoryState<K, S, V> {
    fn default() -> Self {
        HistoryState {
            keys: HashMap::default(),
        }
    }
}

impl<K: Eq + Hash + Clone, S: Ord + Clone, V: Clone + PartialEq> HistoryState<K, S, V> {
    /// Applies the changes of one epoch (in any order) and returns, for every key whose
    /// history changed, its new complete history.
    pub fn apply<I, T>(&mut self, changes: I, step: &T) -> Vec<(K, Vec<Version<S, V>>)>
    where
        I: IntoIterator<Item = Change<K, S, V>>,
        T: Fn(Option<&V>, &V) -> Step<V>,
    {
        // The history before the epoch of every key whose events changed in it.
        let mut before: HashMap<K, Vec<Version<S, V>>, RandomState> = HashMap::default();
        for c in changes {
            if !self.keys.contains_key(&c.key) {
                self.keys.insert(c.key.clone(), KeyHistory::default());
            }
            let history = self.keys.get_mut(&c.key).expect("inserted");
            let event = Event {
                fingerprint: c.fingerprint,
                value: c.value,
            };
            if !history.is_changed_by(&c.seq, &event) {
                continue; // a duplicate, or beaten at its sequence value
            }
            if !before.contains_key(&c.key) {
                before.insert(c.key.clone(), history.versions(step));
            }
            history.insert(c.seq, event);
        }
        before
            .into_iter()
            .filter_map(|(key, old)| {
                let new = self.keys[&key].versions(step);
                (new != old).then_some((key, new))
            })
            .collect()
    }
}

impl<K: Eq + Hash, S: Ord + Clone, V: Clone> HistoryState<K, S, V> {
    /// Keeps only the keys for which `f` is true (e.g. the keys of one bucket).
    pub fn retain<F: FnMut(&K) -> bool>(&mut self, mut f: F) {
        self.keys.retain(|k, _| f(k));
    }

    /// Adds the keys and events of `other`; a key present in both gets the union of its events
    /// (so merging overlapping states is harmless).
    pub fn merge(&mut self, other: HistoryState<K, S, V>) {
        for (key, history) in other.keys {
            self.keys.entry(key).or_default().merge(history);
        }
    }

    /// The number of events kept (what the memory is proportional to).
    pub fn event_count(&self) -> usize {
        self.keys.values().map(|h| h.events.len()).sum()
    }
}

/// Extension trait: APPLY CHANGES as SCD type 2 on a stream of [`Change`]s.
pub trait ApplyHistory<'scope, K, S, V> {
    /// Applies changes by key and sequence, keeping every version. `route` maps a key to a
    /// number that decides the worker owning it; `step` decides whether an upsert updates the
    /// open version in place or opens a new one (see [`Step`]). The operator starts from
    /// `initial` (a restored checkpoint of this worker's keys, as routed by `route`) and, if
    /// `schedule` is set, hands the state as of the end of every due epoch to
    /// `save(epoch, &state)` before its output frontier passes that epoch (a worker without
    /// data in the epoch saves too). When the input ends, due epochs are saved up to the
    /// largest epoch this worker knows to exist, so a checkpoint at the very end of the input
    /// may be saved by some workers only: the caller ignores a checkpoint that not every worker
    /// saved (the contract of [`ApplyChanges::apply_changes_with`](crate::ApplyChanges::apply_changes_with)).
    ///
    /// The output, at each epoch, holds one `(key, history)` per key whose history changed in
    /// that epoch: its complete list of versions in ascending `start`.
    fn apply_history<R, T, F>(
        self,
        route: R,
        step: T,
        initial: HistoryState<K, S, V>,
        schedule: Option<CheckpointSchedule>,
        save: F,
    ) -> StreamVec<'scope, u64, (K, Vec<Version<S, V>>)>
    where
        R: Fn(&K) -> u64 + 'static,
        T: Fn(Option<&V>, &V) -> Step<V> + 'static,
        F: FnMut(u64, &HistoryState<K, S, V>) + 'static;
}

impl<'scope, K, S, V> ApplyHistory<'scope, K, S, V> for Stream<'scope, u64, Vec<Change<K, S, V>>>
where
    K: ExchangeData + Eq + Hash + Clone,
    S: ExchangeData + Ord + Clone,
    V: ExchangeData + Clone + PartialEq,
{
    fn apply_history<R, T, F>(
        self,
        route: R,
        step: T,
        initial: HistoryState<K, S, V>,
        schedule: Option<CheckpointSchedule>,
        mut save: F,
    ) -> StreamVec<'scope, u64, (K, Vec<Version<S, V>>)>
    where
        R: Fn(&K) -> u64 + 'static,
        T: Fn(Option<&V>, &V) -> Step<V> + 'static,
        F: FnMut(u64, &HistoryState<K, S, V>) + 'static,
    {
        let pact = Exchange::new(move |c: &Change<K, S, V>| route(&c.key));
        self.unary_frontier(pact, "ApplyHistory", move |cap, _info| {
            let mut state = initial;
            // The checkpoint barrier: a capability at the next due epoch, held until its state
            // is saved.
            let mut barrier: Option<Capability<u64>> = schedule.map(|s| {
                let mut cap = cap;
                cap.downgrade(&s.next_due(0));
                cap
            });
            let mut stash = EpochStash::new();
            // The largest epoch this worker knows to exist: it applied data of it, or saw the
            // frontier pass it. When the input ends before a due epoch, the state is saved as final.
            let mut known: Option<u64> = None;

            move |(input, frontier), output| {
                stash.stash(input, output.output_index());
                // The least epoch that may still receive data (None: input finished).
                let open = frontier.frontier().first().copied();
                if let Some(o) = open.filter(|o| *o > 0) {
                    known = known.max(Some(o - 1));
                }
                loop {
                    // The pending checkpoint `c` first: due once every epoch `≤ c` is complete
                    // and applied, and before any later epoch is applied.
                    if let (Some(b), Some(s)) = (barrier.as_mut(), schedule) {
                        let c = *b.time();
                        if open.is_none_or(|o| o > c) && stash.first_epoch().is_none_or(|n| n > c) {
                            // Stashed data (of an epoch > c) shows that the input went past c.
                            if open.is_none() && stash.is_empty() && known.is_none_or(|k| c > k) {
                                // The input ended before `c`: the state is final.
                                save(CheckpointSchedule::FINAL, &state);
                                barrier = None;
                            } else {
                                save(c, &state);
                                b.downgrade(&s.next_due(c + 1));
                            }
                            continue;
                        }
                    }
                    let Some((cap, changes)) = stash.pop_complete(frontier) else {
                        break;
                    };
                    known = known.max(Some(*cap.time()));
                    let changed = state.apply(changes, &step);
                    output.session(&cap).give_iterator(changed.into_iter());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with a tracked part and an untracked part (`None`: a null to fill from the open
    /// version, like `IGNORE NULL UPDATES`).
    type Row = (&'static str, Option<u32>);

    /// `TRACK HISTORY ON` the first part, `IGNORE NULL UPDATES` on the second.
    fn step(cur: Option<&Row>, v: &Row) -> Step<Row> {
        let w = (v.0, v.1.or(cur.and_then(|c| c.1)));
        match cur {
            Some(c) if c.0 == w.0 => Step::InPlace(w),
            _ => Step::NewVersion(w),
        }
    }

    fn up(key: u32, seq: u64, fingerprint: u64, value: Row) -> Change<u32, u64, Row> {
        Change {
            key,
            seq,
            fingerprint,
            value: Some(value),
        }
    }

    fn del(key: u32, seq: u64) -> Change<u32, u64, Row> {
        Change {
            key,
            seq,
            fingerprint: 0,
            value: None,
        }
    }

    fn ver(start: u64, end: Option<u64>, value: Row) -> Version<u64, Row> {
        Version { start, end, value }
    }

    /// One epoch's output.
    type Output = Vec<(u32, Vec<Version<u64, Row>>)>;

    /// Applies `epochs` one after the other; returns each epoch's output.
    fn run(epochs: Vec<Vec<Change<u32, u64, Row>>>) -> Vec<Output> {
        let mut st = HistoryState::default();
        epochs
            .into_iter()
            .map(|e| {
                let mut out = st.apply(e, &step);
                out.sort_by_key(|(k, _)| *k);
                out
            })
            .collect()
    }

    #[test]
    fn late_event_splits_an_interval() {
        let out = run(vec![
            vec![up(1, 1, 1, ("a", None)), up(1, 5, 2, ("c", None))],
            vec![up(1, 3, 3, ("b", None))],
        ]);
        assert_eq!(
            out[1],
            vec![(
                1,
                vec![
                    ver(1, Some(3), ("a", None)),
                    ver(3, Some(5), ("b", None)),
                    ver(5, None, ("c", None)),
                ]
            )]
        );
    }

    #[test]
    fn delete_closes_and_upsert_reopens() {
        let out = run(vec![
            vec![up(1, 1, 1, ("a", None))],
            vec![del(1, 4)],
            vec![del(1, 6)], // nothing open: no change
            vec![up(1, 8, 2, ("a", Some(1)))],
        ]);
        assert_eq!(out[0], vec![(1, vec![ver(1, None, ("a", None))])]);
        assert_eq!(out[1], vec![(1, vec![ver(1, Some(4), ("a", None))])]);
        assert!(out[2].is_empty());
        // A new version after a delete, even with equal tracked columns, fills no nulls.
        assert_eq!(
            out[3],
            vec![(
                1,
                vec![ver(1, Some(4), ("a", None)), ver(8, None, ("a", Some(1)))]
            )]
        );
    }

    #[test]
    fn late_upsert_before_a_delete_is_closed_by_it() {
        let out = run(vec![
            vec![del(1, 5)], // a delete of nothing: remembered, no output
            vec![up(1, 2, 1, ("a", None))],
            vec![up(1, 7, 2, ("b", None))],
        ]);
        assert!(out[0].is_empty());
        assert_eq!(out[1], vec![(1, vec![ver(2, Some(5), ("a", None))])]);
        assert_eq!(
            out[2],
            vec![(
                1,
                vec![ver(2, Some(5), ("a", None)), ver(7, None, ("b", None))]
            )]
        );
    }

    #[test]
    fn same_sequence_ties_are_deterministic() {
        let a = up(1, 3, 10, ("a", None));
        let b = up(1, 3, 20, ("b", None));
        let d = del(1, 3);
        let first = up(1, 1, 1, ("x", None));
        for order in [
            vec![a.clone(), b.clone()],
            vec![b.clone(), a.clone(), a.clone()],
        ] {
            let out = run(vec![vec![first.clone()], order]);
            assert_eq!(
                out[1],
                vec![(
                    1,
                    vec![ver(1, Some(3), ("x", None)), ver(3, None, ("b", None))]
                )]
            );
        }
        // A delete beats any upsert at the same sequence, in any order and epoch.
        let closed = vec![(1, vec![ver(1, Some(3), ("x", None))])];
        let out = run(vec![vec![first.clone(), d.clone()], vec![b.clone()]]);
        assert_eq!(out, vec![closed.clone(), vec![]]);
        let out = run(vec![vec![first.clone(), b.clone()], vec![d.clone()]]);
        assert_eq!(out[1], closed);
        // The smaller fingerprint arriving later changes nothing.
        let out = run(vec![vec![first, b], vec![a]]);
        assert!(out[1].is_empty());
    }

    #[test]
    fn untracked_changes_update_in_place() {
        let out = run(vec![
            vec![up(1, 1, 1, ("a", Some(1)))],
            vec![up(1, 2, 2, ("a", Some(2)))], // untracked change: in place
            vec![up(1, 3, 3, ("a", None))],    // null: keeps 2, same history
            vec![up(1, 4, 4, ("b", None))],    // tracked change: new version, null filled
        ]);
        assert_eq!(out[1], vec![(1, vec![ver(1, None, ("a", Some(2)))])]);
        assert!(out[2].is_empty());
        assert_eq!(
            out[3],
            vec![(
                1,
                vec![
                    ver(1, Some(4), ("a", Some(2))),
                    ver(4, None, ("b", Some(2)))
                ]
            )]
        );
        // A late tracked change between in-place updates splits the version and changes what
        // the later ones do.
        let mut st = HistoryState::default();
        st.apply(
            vec![
                up(1, 1, 1, ("a", Some(1))),
                up(1, 3, 3, ("a", Some(3))),
                up(1, 5, 5, ("a", None)),
            ],
            &step,
        );
        let out = st.apply(vec![up(1, 2, 2, ("b", None))], &step);
        assert_eq!(
            out,
            vec![(
                1,
                vec![
                    ver(1, Some(2), ("a", Some(1))),
                    ver(2, Some(3), ("b", Some(1))),
                    ver(3, None, ("a", Some(3))),
                ]
            )]
        );
    }

    #[test]
    fn in_place_without_an_open_version_opens_one() {
        let always_in_place = |_: Option<&u32>, v: &u32| Step::InPlace(*v);
        let mut h = KeyHistory::default();
        h.insert(
            1u64,
            Event {
                fingerprint: 0,
                value: Some(1u32),
            },
        );
        h.insert(
            2,
            Event {
                fingerprint: 0,
                value: Some(2),
            },
        );
        h.insert(
            3,
            Event {
                fingerprint: 0,
                value: None,
            },
        );
        h.insert(
            4,
            Event {
                fingerprint: 0,
                value: Some(4),
            },
        );
        assert_eq!(
            h.versions(&always_in_place),
            vec![
                Version {
                    start: 1,
                    end: Some(3),
                    value: 2
                },
                Version {
                    start: 4,
                    end: None,
                    value: 4
                },
            ]
        );
    }

    #[test]
    fn retain_and_merge_split_and_rebuild_the_state() {
        let mut st = HistoryState::default();
        st.apply((0..10).map(|k| up(k, k as u64, 0, ("a", None))), &step);
        st.apply((0..10).map(|k| del(k, 20)), &step);
        let mut even = st.clone();
        even.retain(|k| k % 2 == 0);
        let mut odd = st.clone();
        odd.retain(|k| k % 2 == 1);
        assert_eq!(even.event_count() + odd.event_count(), 20);
        let mut back = HistoryState::default();
        back.merge(odd);
        back.merge(even.clone());
        back.merge(even); // overlapping merges are harmless
        assert_eq!(back.keys, st.keys);
    }

    /// The DLT example rows: (name, city), both tracked.
    type Dlt = (&'static str, &'static str);
    type DltRow = (u32, &'static str, &'static str, u64, Option<u64>);

    /// The DLT documentation example (cdc-semantics.md): keys 123..126, out-of-order arrivals.
    fn dlt_changes() -> Vec<Change<u32, u64, Dlt>> {
        let row = |key, seq, name, city, fingerprint| Change {
            key,
            seq,
            fingerprint,
            value: Some((name, city)),
        };
        vec![
            row(124, 1, "Raul", "Oaxaca", 1),
            row(123, 1, "Isabel", "Monterrey", 2),
            row(125, 2, "Mercedes", "Tijuana", 3),
            row(126, 2, "Lily", "Cancun", 4),
            Change {
                key: 123,
                seq: 6,
                fingerprint: 0,
                value: None,
            },
            row(125, 6, "Mercedes", "Guadalajara", 5),
            row(125, 5, "Mercedes", "Mexicali", 6),
            row(123, 5, "Isabel", "Chihuahua", 7),
        ]
    }

    /// Every change of name or city opens a version.
    fn dlt_step(cur: Option<&Dlt>, v: &Dlt) -> Step<Dlt> {
        if cur == Some(v) {
            Step::InPlace(*v)
        } else {
            Step::NewVersion(*v)
        }
    }

    fn dlt_expected() -> Vec<DltRow> {
        vec![
            (123, "Isabel", "Monterrey", 1, Some(5)),
            (123, "Isabel", "Chihuahua", 5, Some(6)),
            (124, "Raul", "Oaxaca", 1, None),
            (125, "Mercedes", "Tijuana", 2, Some(5)),
            (125, "Mercedes", "Mexicali", 5, Some(6)),
            (125, "Mercedes", "Guadalajara", 6, None),
            (126, "Lily", "Cancun", 2, None),
        ]
    }

    /// Feeds `epochs` and applies every output to a table (replacing the key's rows); returns
    /// the table as SCD2 rows.
    fn dlt_table(epochs: &[Vec<Change<u32, u64, Dlt>>]) -> Vec<DltRow> {
        let mut st = HistoryState::default();
        let mut table: BTreeMap<u32, Vec<Version<u64, Dlt>>> = BTreeMap::new();
        for e in epochs {
            for (k, versions) in st.apply(e.iter().cloned(), &dlt_step) {
                assert_ne!(table.get(&k), Some(&versions), "unchanged history emitted");
                table.insert(k, versions);
            }
        }
        table
            .into_iter()
            .flat_map(|(k, vs)| {
                vs.into_iter()
                    .map(move |v| (k, v.value.0, v.value.1, v.start, v.end))
            })
            .collect()
    }

    #[test]
    fn documented_scd2_example() {
        assert_eq!(dlt_table(&[dlt_changes()]), dlt_expected());
    }

    /// Every arrival order of the 8 changes, each in one epoch, in two and in three epochs
    /// (the split points vary with the order).
    #[test]
    fn documented_scd2_example_in_every_order_and_epoch_split() {
        let changes = dlt_changes();
        let n = changes.len();
        let expected = dlt_expected();
        // Heap's algorithm over indices.
        let mut idx: Vec<usize> = (0..n).collect();
        let mut c = vec![0usize; n];
        let mut count = 0usize;
        let check = |idx: &[usize], count: usize| {
            let order: Vec<_> = idx.iter().map(|i| changes[*i].clone()).collect();
            let a = 1 + count % (n - 1);
            let b = 1 + (count / (n - 1)) % (n - 1);
            let (a, b) = (a.min(b), a.max(b));
            assert_eq!(
                dlt_table(std::slice::from_ref(&order)),
                expected,
                "order {idx:?}"
            );
            let two = [order[..a].to_vec(), order[a..].to_vec()];
            assert_eq!(dlt_table(&two), expected, "order {idx:?} split at {a}");
            let three = [
                order[..a].to_vec(),
                order[a..b].to_vec(),
                order[b..].to_vec(),
            ];
            assert_eq!(
                dlt_table(&three),
                expected,
                "order {idx:?} split at {a}, {b}"
            );
        };
        check(&idx, count);
        let mut i = 0;
        while i < n {
            if c[i] < i {
                if i % 2 == 0 {
                    idx.swap(0, i);
                } else {
                    idx.swap(c[i], i);
                }
                count += 1;
                check(&idx, count);
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
        assert_eq!(count + 1, 40_320);
    }
}
