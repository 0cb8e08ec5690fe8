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
//! the fingerprint — never the rows or the events (except with IGNORE NULL UPDATES, below) — so
//! its memory is proportional to the number of live keys plus tombstones. The rows themselves are the output: when the input frontier
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
//!
//! # Options
//!
//! [`ApplyChanges::apply_changes_opts`] adds two options of APPLY CHANGES (SCD type 1):
//!
//! - **APPLY AS TRUNCATE WHEN**: a second input carries truncate sequence values (broadcast to
//!   every worker inside the operator). A truncate at `t` is a delete at `t` of *every* key,
//!   including keys never seen: an upsert with sequence `≤ t` that arrives later is stale, one
//!   with sequence `> t` (re-)creates its key. Each worker keeps only the largest truncate
//!   sequence ([`ApplyState::truncated`], never expired); applying a larger one scans the state
//!   once, deletes (and forgets) every key whose winning sequence is `≤ t`, and emits
//!   `(key, None)` for those that were visible.
//! - **IGNORE NULL UPDATES** ([`NullMerge`]): a column that is null in an upsert keeps its
//!   value. Per key, a column's value comes from the upsert of highest precedence (sequence,
//!   then fingerprint) that has a value in it among the upserts after the key's latest delete or
//!   truncate; null if none. A delete still removes the row. This is a last-writer-wins register
//!   per column, so it is independent of order and duplication too. The cost: for tables with
//!   the option the operator keeps rows — per live key, the upserts that still give its row a
//!   column ([`MergedRow`]; at most one per column plus the newest, usually one or two) and
//!   the sequence of its latest delete — and a later epoch's waiting changes are coalesced per
//!   key to such a list rather than to one winner. Ties at equal sequence values are broken per
//!   column by the upserts' own fingerprints; the merged row has no fingerprint of its own (the
//!   key's [`KeyState`] holds its newest upsert's), so the result is deterministic.
//!
//! ```
//! use timely::dataflow::operators::{ToStream, Capture, capture::Extract};
//! use tidewater_operators::{ApplyChanges, ApplyOptions, ApplyState, Change};
//!
//! type Row = [Option<u32>; 2];
//! let captured = timely::example(|scope| {
//!     let up = |key: u64, seq: u64, row: Row| Change { key, seq, fingerprint: 0, value: Some(row) };
//!     let truncates = vec![4u64].to_stream(scope);
//!     vec![
//!         up(1, 6, [None, Some(3)]),     // keeps column 0 of seq 5
//!         up(1, 5, [Some(1), Some(2)]),
//!         up(2, 3, [Some(7), Some(7)]),  // truncated at 4
//!     ]
//!     .to_stream(scope)
//!     .apply_changes_opts(
//!         Some(truncates),
//!         |k: &u64| *k,
//!         ApplyOptions::new(u64::MAX).ignore_null_updates((
//!             |r: &Row| r.iter().map(Option::is_some).collect(),
//!             |rows: &[&Row]| std::array::from_fn(|c| rows.iter().find_map(|r| r[c])),
//!         )),
//!         ApplyState::default(),
//!         |_, _| {},
//!     )
//!     .capture()
//! });
//! let out: Vec<_> = captured.extract().into_iter().flat_map(|(_, d)| d).collect();
//! assert_eq!(out, vec![(1, Some([Some(1), Some(3)]))]);
//! ```

use std::collections::hash_map::Entry;
use std::collections::{btree_map, BTreeMap, HashMap, VecDeque};

use ahash::RandomState;
use std::hash::Hash;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::InputCapability;
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
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyState<S> {
    /// The winning sequence value.
    pub seq: S,
    /// Whether the winner is a delete (the key is a tombstone).
    pub deleted: bool,
    /// The winner's fingerprint (tie-break).
    pub fingerprint: u64,
    /// The epoch in which the key became a tombstone (for retention).
    pub deleted_at: u64,
    /// Where the key's entry in the operator's list of the epoch's changed keys is, so that a
    /// change costs one hash lookup (not part of the state: never saved, ignored by `==`).
    #[serde(skip)]
    mark: DirtyMark,
}

/// The index of a key in `Applier::dirty`, valid while `generation` is the applier's (which
/// changes at every epoch, so marks never need clearing). Generation 0 is never valid.
#[derive(Clone, Copy, Debug, Default)]
struct DirtyMark {
    generation: u32,
    index: u32,
}

/// A clone has no mark: it belongs to no operator's epoch (a saved state restored into a new
/// operator must not find entries of the old one).
impl<S: Clone> Clone for KeyState<S> {
    fn clone(&self) -> Self {
        KeyState::new(
            self.seq.clone(),
            self.deleted,
            self.fingerprint,
            self.deleted_at,
        )
    }
}

impl<S: PartialEq> PartialEq for KeyState<S> {
    fn eq(&self, other: &Self) -> bool {
        (&self.seq, self.deleted, self.fingerprint, self.deleted_at)
            == (
                &other.seq,
                other.deleted,
                other.fingerprint,
                other.deleted_at,
            )
    }
}
impl<S: Eq> Eq for KeyState<S> {}

impl<S> KeyState<S> {
    /// A key's state: its winning `seq` and `fingerprint`, whether the winner is a delete, and
    /// (for a tombstone) the epoch of the delete.
    pub fn new(seq: S, deleted: bool, fingerprint: u64, deleted_at: u64) -> Self {
        KeyState {
            seq,
            deleted,
            fingerprint,
            deleted_at,
            mark: DirtyMark::default(),
        }
    }
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

/// The column logic of IGNORE NULL UPDATES, given by the caller (the operator knows no
/// columns). Implemented for a pair of closures `(non_null, compose)`.
pub trait NullMerge<V> {
    /// Per column, whether `row` has a (non-null) value in it.
    fn non_null(&self, row: &V) -> Vec<bool>;
    /// The merged row of `newest_first` (never empty): each column from the first row that has
    /// a value in it, null where none has.
    fn compose(&self, newest_first: &[&V]) -> V;
}

impl<V, N, C> NullMerge<V> for (N, C)
where
    N: Fn(&V) -> Vec<bool>,
    C: Fn(&[&V]) -> V,
{
    fn non_null(&self, row: &V) -> Vec<bool> {
        (self.0)(row)
    }
    fn compose(&self, newest_first: &[&V]) -> V {
        (self.1)(newest_first)
    }
}

/// The [`NullMerge`] of a table without IGNORE NULL UPDATES (it has no values: the option is
/// `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoMerge {}

impl<V> NullMerge<V> for NoMerge {
    fn non_null(&self, _: &V) -> Vec<bool> {
        match *self {}
    }
    fn compose(&self, _: &[&V]) -> V {
        match *self {}
    }
}

/// How the operator keeps the rows of IGNORE NULL UPDATES in its state, as `R`: the rows
/// themselves ([`Nulls`]), or nothing for the entry points without the option ([`NoMerge`],
/// whose state is `ApplyState<K, S, ()>`).
trait KeepRows<V, R> {
    fn non_null(&self, row: &V) -> Vec<bool>;
    fn keep(&self, row: V) -> R;
    fn kept<'a>(&self, row: &'a R) -> &'a V;
    fn compose(&self, newest_first: &[&V]) -> V;
}

impl<V> KeepRows<V, ()> for NoMerge {
    fn non_null(&self, _: &V) -> Vec<bool> {
        match *self {}
    }
    fn keep(&self, _: V) {
        match *self {}
    }
    fn kept<'a>(&self, _: &'a ()) -> &'a V {
        match *self {}
    }
    fn compose(&self, _: &[&V]) -> V {
        match *self {}
    }
}

/// A caller's [`NullMerge`], keeping rows as they are.
struct Nulls<M>(M);

impl<V, M: NullMerge<V>> KeepRows<V, V> for Nulls<M> {
    fn non_null(&self, row: &V) -> Vec<bool> {
        self.0.non_null(row)
    }
    fn keep(&self, row: V) -> V {
        row
    }
    fn kept<'a>(&self, row: &'a V) -> &'a V {
        row
    }
    fn compose(&self, newest_first: &[&V]) -> V {
        self.0.compose(newest_first)
    }
}

/// Whether a row with the values `non_null` gives a column that `covered` lacks.
fn gives(non_null: &[bool], covered: &[bool]) -> bool {
    non_null
        .iter()
        .enumerate()
        .any(|(i, v)| *v && !covered.get(i).copied().unwrap_or(false))
}

/// Adds the columns `non_null` to `covered`.
fn cover(covered: &mut Vec<bool>, non_null: &[bool]) {
    if covered.len() < non_null.len() {
        covered.resize(non_null.len(), false);
    }
    for (c, v) in covered.iter_mut().zip(non_null) {
        *c |= *v;
    }
}

/// Inserts the upsert `(seq, fingerprint, row)` into `upserts` (highest precedence first) and
/// drops the older ones that no longer give a column; the first one always stays. Returns
/// whether the list changed (not: a duplicate, or an upsert that gives nothing). The list only
/// ever loses an upsert that can never give a column again: newer upserts only cover more, and
/// a delete removes all upserts up to some sequence, so also every older one.
fn insert_upsert<S: Ord, T>(
    upserts: &mut Vec<(S, u64, T)>,
    seq: S,
    fingerprint: u64,
    row: T,
    non_null: impl Fn(&T) -> Vec<bool>,
) -> bool {
    let at = upserts.partition_point(|(s, f, _)| (s, *f) > (&seq, fingerprint));
    if upserts
        .get(at)
        .is_some_and(|(s, f, _)| (s, *f) == (&seq, fingerprint))
    {
        return false; // a duplicate
    }
    let mut covered = Vec::new();
    for (_, _, r) in &upserts[..at] {
        cover(&mut covered, &non_null(r));
    }
    let mine = non_null(&row);
    if at > 0 && !gives(&mine, &covered) {
        return false;
    }
    cover(&mut covered, &mine);
    upserts.insert(at, (seq, fingerprint, row));
    let mut i = at + 1;
    while i < upserts.len() {
        let theirs = non_null(&upserts[i].2);
        if gives(&theirs, &covered) {
            cover(&mut covered, &theirs);
            i += 1;
        } else {
            upserts.remove(i);
        }
    }
    true
}

/// What the operator keeps of a live key of a table with IGNORE NULL UPDATES: the upserts that
/// make its row. (`R` is the row type; `()` for the entry points without the option, whose
/// state never holds any.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedRow<S, R> {
    /// The sequence of the key's latest delete (older than all of `upserts`), while it is
    /// above [`ApplyState::truncated`]; an upsert at or below it is stale.
    pub reset: Option<S>,
    /// The upserts after the latest delete or truncate that still give the row a column,
    /// highest precedence (sequence, then fingerprint) first: `(seq, fingerprint, row)`. The
    /// first is the key's winning upsert (its [`KeyState`]) and stays even if it gives nothing;
    /// the list is never empty.
    pub upserts: Vec<(S, u64, R)>,
}

/// The state of the operator on one worker; public so that checkpoints can save and restore it.
/// `R` is the row type with IGNORE NULL UPDATES, `()` without.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyState<K: Eq + Hash, S, R = ()> {
    /// Per key: winning sequence, tombstone flag, fingerprint.
    pub keys: HashMap<K, KeyState<S>, RandomState>,
    /// Tombstones in the order they were created: `(epoch, key)`.
    pub tombstones: VecDeque<(u64, K)>,
    /// The largest truncate sequence applied (APPLY AS TRUNCATE WHEN): every key is deleted at
    /// it, so `keys` holds no key whose winner is at or below it. The same on every worker at
    /// the end of an epoch; never expires.
    pub truncated: Option<S>,
    /// With IGNORE NULL UPDATES, per live key: the upserts that make its row. Empty otherwise.
    pub merged: HashMap<K, MergedRow<S, R>, RandomState>,
}

impl<K: Eq + Hash, S, R> Default for ApplyState<K, S, R> {
    fn default() -> Self {
        ApplyState {
            keys: HashMap::default(),
            tombstones: VecDeque::new(),
            truncated: None,
            merged: HashMap::default(),
        }
    }
}

impl<K: Eq + Hash + Clone, S: Ord + Clone, R> ApplyState<K, S, R> {
    /// Whether a change at `seq` is covered by the truncate sequence (a delete of every key).
    fn is_truncated(&self, seq: &S) -> bool {
        self.truncated.as_ref().is_some_and(|t| seq <= t)
    }

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
        self.advance(epoch, key, seq, fingerprint, delete).flatten()
    }

    /// Like [`ApplyState::apply`], also telling whether the change advanced the key's state
    /// at all: `None` if it did not (stale, duplicate, truncated), `Some(None)` if it did
    /// without a visible change (a delete of a tombstone or of an unknown key), else
    /// `Some(Some(was_visible))`.
    pub fn advance(
        &mut self,
        epoch: u64,
        key: &K,
        seq: &S,
        fingerprint: u64,
        delete: bool,
    ) -> Option<Option<bool>> {
        if self.is_truncated(seq) {
            return None;
        }
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
            return Some((!(was_deleted && delete)).then_some(!was_deleted));
        }
        self.keys.insert(
            key.clone(),
            KeyState::new(seq.clone(), delete, fingerprint, epoch),
        );
        if delete {
            self.tombstones.push_back((epoch, key.clone()));
        }
        // A delete of an unknown key only leaves a tombstone.
        Some((!delete).then_some(false))
    }

    /// Applies a truncate at `seq` (a delete of every key at `seq`), if it is beyond the
    /// current one: forgets every key whose winner is at or below `seq` (tombstones included:
    /// the truncate sequence covers them) and the merged upserts at or below it. Calls
    /// `changed(key)` for every key whose visible row changed (it had one). Returns whether
    /// the truncate was applied.
    pub fn truncate(&mut self, seq: &S, mut changed: impl FnMut(&K)) -> bool {
        self.truncate_with(seq, |k, _, _, visible| {
            if visible {
                changed(k)
            }
        })
    }

    /// [`ApplyState::truncate`], calling `each(key, state, removed, visible)` for every key
    /// it forgets (`removed`; its state then goes, tombstones included) or whose visible row
    /// it changes (`visible`).
    fn truncate_with(
        &mut self,
        seq: &S,
        mut each: impl FnMut(&K, &mut KeyState<S>, bool, bool),
    ) -> bool {
        if self.is_truncated(seq) {
            return false;
        }
        self.truncated = Some(seq.clone());
        let merged = &mut self.merged;
        self.keys.retain(|k, st| {
            if st.seq <= *seq {
                each(k, st, true, !st.deleted);
                if !st.deleted {
                    merged.remove(k);
                }
                return false;
            }
            if let Some(m) = merged.get_mut(k) {
                if m.reset.as_ref().is_some_and(|r| r <= seq) {
                    m.reset = None;
                }
                let n = m.upserts.len();
                m.upserts.retain(|(s, _, _)| s > seq);
                if m.upserts.len() != n {
                    each(k, st, false, true);
                }
            }
            true
        });
        let keys = &self.keys;
        self.tombstones.retain(|(at, k)| {
            keys.get(k)
                .is_some_and(|s| s.deleted && s.deleted_at == *at)
        });
        true
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

    /// Applies an upsert with IGNORE NULL UPDATES; returns like [`ApplyState::apply`] (the
    /// row is then [`ApplyState::merged_row`]).
    fn upsert_merged<V, M: KeepRows<V, R>>(
        &mut self,
        merge: &M,
        epoch: u64,
        key: &K,
        seq: &S,
        fingerprint: u64,
        row: V,
    ) -> Option<bool> {
        if self.is_truncated(seq) {
            return None;
        }
        let Some(st) = self.keys.get_mut(key) else {
            self.apply(epoch, key, seq, fingerprint, false);
            let upserts = vec![(seq.clone(), fingerprint, merge.keep(row))];
            let reset = None;
            self.merged
                .insert(key.clone(), MergedRow { reset, upserts });
            return Some(false);
        };
        if st.deleted {
            if !st.is_beaten_by(seq, false, fingerprint) {
                return None;
            }
            // Re-created after its delete, which older upserts arriving later must not pass.
            let reset = Some(st.seq.clone());
            st.seq = seq.clone();
            st.fingerprint = fingerprint;
            st.deleted = false;
            let upserts = vec![(seq.clone(), fingerprint, merge.keep(row))];
            self.merged
                .insert(key.clone(), MergedRow { reset, upserts });
            return Some(false);
        }
        // (A live key has its upserts unless the state was saved without the option: then
        // they start with this one.)
        let m = self.merged.entry(key.clone()).or_insert_with(|| MergedRow {
            reset: None,
            upserts: Vec::new(),
        });
        if m.reset.as_ref().is_some_and(|r| seq <= r) {
            return None;
        }
        let row = merge.keep(row);
        if !insert_upsert(&mut m.upserts, seq.clone(), fingerprint, row, |r| {
            merge.non_null(merge.kept(r))
        }) {
            return None;
        }
        let (s, f, _) = &m.upserts[0];
        if st.is_beaten_by(s, false, *f) {
            st.seq = s.clone();
            st.fingerprint = *f;
        }
        Some(true)
    }

    /// Applies a delete with IGNORE NULL UPDATES; returns like [`ApplyState::apply`]. A delete
    /// older than a live key's winning upsert still removes the upserts at or below it.
    fn delete_merged(&mut self, epoch: u64, key: &K, seq: &S, fingerprint: u64) -> Option<bool> {
        match self.keys.get(key) {
            Some(st) if !st.deleted && !st.is_beaten_by(seq, true, fingerprint) => {
                if self.is_truncated(seq) {
                    return None;
                }
                let m = self.merged.get_mut(key)?;
                if m.reset.as_ref().is_some_and(|r| r >= seq) {
                    return None;
                }
                m.reset = Some(seq.clone());
                let n = m.upserts.len();
                m.upserts.retain(|(s, _, _)| s > seq);
                (m.upserts.len() != n).then_some(true)
            }
            _ => {
                let changed = self.apply(epoch, key, seq, fingerprint, true);
                if changed.is_some() {
                    self.merged.remove(key);
                }
                changed
            }
        }
    }

    /// The visible row of `key` with IGNORE NULL UPDATES.
    fn merged_row<V, M: KeepRows<V, R>>(&self, merge: &M, key: &K) -> Option<V> {
        if self.keys.get(key).is_none_or(|st| st.deleted) {
            return None;
        }
        let rows: Vec<&V> = self
            .merged
            .get(key)?
            .upserts
            .iter()
            .map(|(_, _, r)| merge.kept(r))
            .collect();
        (!rows.is_empty()).then(|| merge.compose(&rows))
    }
}

/// The changes to one key of a waiting epoch, coalesced so that applying them gives the same
/// state and output as applying all of them: the winning delete, and the upserts that beat it
/// and still matter — with IGNORE NULL UPDATES those that give a column (see
/// [`insert_upsert`]), else only the winner (and then no delete).
struct Pending<S, V> {
    delete: Option<(S, u64)>,
    upserts: Vec<(S, u64, V)>,
}

impl<S, V> Default for Pending<S, V> {
    fn default() -> Self {
        Pending {
            delete: None,
            upserts: Vec::new(),
        }
    }
}

impl<S: Ord, V> Pending<S, V> {
    fn add<R, M: KeepRows<V, R>>(
        &mut self,
        seq: S,
        fingerprint: u64,
        value: Option<V>,
        merge: Option<&M>,
    ) {
        let Some(row) = value else {
            if self
                .delete
                .as_ref()
                .is_some_and(|(d, f)| (d, *f) >= (&seq, fingerprint))
            {
                return;
            }
            // Without the option a delete beaten by an upsert changes nothing; with it, the
            // delete still resets the key's older upserts in the state.
            if merge.is_none() && self.upserts.first().is_some_and(|(s, _, _)| *s > seq) {
                return;
            }
            self.upserts.retain(|(s, _, _)| *s > seq);
            self.delete = Some((seq, fingerprint));
            return;
        };
        if self.delete.as_ref().is_some_and(|(d, _)| *d >= seq) {
            return;
        }
        match merge {
            Some(m) => {
                insert_upsert(&mut self.upserts, seq, fingerprint, row, |r| m.non_null(r));
            }
            None => {
                match self.upserts.first_mut() {
                    Some(top) if (&top.0, top.1) >= (&seq, fingerprint) => {}
                    Some(top) => *top = (seq, fingerprint, row),
                    None => self.upserts.push((seq, fingerprint, row)),
                }
                self.delete = None;
            }
        }
    }
}

/// A later epoch waiting behind the open one: its capability, its largest truncate, and per
/// key its coalesced changes.
struct Waiting<K, S, V> {
    cap: Capability<u64>,
    truncate: Option<S>,
    keys: HashMap<K, Pending<S, V>, RandomState>,
}

/// The state of one worker's operator and what changed in the epoch being applied.
struct Applier<K: Eq + Hash, S, V, R, M> {
    state: ApplyState<K, S, R>,
    /// Per key whose state advanced in the epoch (once each): the key, whether it was visible
    /// before the epoch, and its new value (with IGNORE NULL UPDATES: `None`, the row is
    /// composed at the end of the epoch). A key's entry is found through its state's
    /// [`DirtyMark`] (one lookup per change, in the state's map).
    dirty: Dirty<K, V>,
    /// The generation of the marks of this epoch's entries (never 0).
    generation: u32,
    /// Keys of `dirty` whose state a truncate forgot (their marks went with it): their index.
    orphans: HashMap<K, u32, RandomState>,
    merge: Option<M>,
    /// Keys in `dirty` only because a truncate deleted them (not counted as advanced).
    by_truncate: usize,
}

impl<K, S, V, R, M> Applier<K, S, V, R, M>
where
    K: Eq + Hash + Clone,
    S: Ord + Clone,
    M: KeepRows<V, R>,
{
    fn change(&mut self, epoch: u64, key: K, seq: &S, fingerprint: u64, value: Option<V>) {
        if self.merge.is_none() {
            return self.change_plain(epoch, key, seq, fingerprint, value);
        }
        let st = &mut self.state;
        let changed = match (&self.merge, value) {
            (None, _) => None,
            (Some(_), None) => st
                .delete_merged(epoch, &key, seq, fingerprint)
                .map(|was| (was, None)),
            (Some(m), Some(row)) => st
                .upsert_merged(m, epoch, &key, seq, fingerprint, row)
                .map(|was| (was, None)),
        };
        if let Some((was_visible, value)) = changed {
            // (The key has a state: a change that advanced it leaves one.)
            if let Some(ks) = self.state.keys.get_mut(&key) {
                Self::record(
                    &mut self.dirty,
                    &mut self.orphans,
                    self.generation,
                    ks,
                    key,
                    was_visible,
                    Some(value),
                );
            }
        }
    }

    /// Notes in `dirty` that the key of state `ks` advanced: `visible` is `Some(new value)`
    /// for a visible change, whose `was_visible` tells whether the key had a row before it
    /// (only the first note of a key in an epoch keeps it), `None` for an advance without a
    /// visible change.
    fn record(
        dirty: &mut Dirty<K, V>,
        orphans: &mut HashMap<K, u32, RandomState>,
        generation: u32,
        ks: &mut KeyState<S>,
        key: K,
        was_visible: bool,
        visible: Option<Option<V>>,
    ) {
        if ks.mark.generation == generation {
            if let Some(v) = visible {
                dirty.set(ks.mark.index, v);
            }
            return;
        }
        if !orphans.is_empty() {
            if let Some(index) = orphans.remove(&key) {
                // Forgotten by a truncate earlier in the epoch, and back.
                ks.mark = DirtyMark { generation, index };
                if let Some(v) = visible {
                    dirty.set(index, v);
                }
                return;
            }
        }
        ks.mark = DirtyMark {
            generation,
            index: dirty.len() as u32,
        };
        match visible {
            Some(v) => dirty.push(key, was_visible, v),
            // Advanced without a visible change: counted, never emitted.
            None => dirty.push(key, false, None),
        }
    }

    /// [`Applier::change`] without IGNORE NULL UPDATES: [`ApplyState::advance`] and the note
    /// in `dirty` with one lookup of the key.
    fn change_plain(&mut self, epoch: u64, key: K, seq: &S, fingerprint: u64, value: Option<V>) {
        let st = &mut self.state;
        if st.is_truncated(seq) {
            return;
        }
        let delete = value.is_none();
        let (dirty, orphans, generation) = (&mut self.dirty, &mut self.orphans, self.generation);
        match st.keys.entry(key) {
            Entry::Occupied(mut e) => {
                let ks = e.get_mut();
                if !ks.is_beaten_by(seq, delete, fingerprint) {
                    return;
                }
                let was_deleted = ks.deleted;
                ks.seq = seq.clone();
                ks.fingerprint = fingerprint;
                ks.deleted = delete;
                if delete {
                    ks.deleted_at = epoch;
                    st.tombstones.push_back((epoch, e.key().clone()));
                }
                let key = e.key().clone();
                let ks = e.get_mut();
                // A delete of a tombstone changes nothing visible.
                let visible = (!(was_deleted && delete)).then_some(value);
                Self::record(dirty, orphans, generation, ks, key, !was_deleted, visible);
            }
            Entry::Vacant(e) => {
                let key = e.key().clone();
                if delete {
                    st.tombstones.push_back((epoch, key.clone()));
                }
                let ks = e.insert(KeyState::new(seq.clone(), delete, fingerprint, epoch));
                // A delete of an unknown key only leaves a tombstone.
                let visible = (!delete).then_some(value);
                Self::record(dirty, orphans, generation, ks, key, false, visible);
            }
        }
    }

    fn truncate(&mut self, seq: &S) {
        let (dirty, orphans, generation) = (&mut self.dirty, &mut self.orphans, self.generation);
        let by_truncate = &mut self.by_truncate;
        self.state.truncate_with(seq, |k, ks, removed, visible| {
            if !visible {
                // A tombstone forgotten: its entry of this epoch, if any, must be found again
                // should the key come back.
                if ks.mark.generation == generation {
                    orphans.insert(k.clone(), ks.mark.index);
                }
                return;
            }
            if ks.mark.generation == generation {
                dirty.set(ks.mark.index, None);
            } else {
                *by_truncate += 1;
                ks.mark = DirtyMark {
                    generation,
                    index: dirty.len() as u32,
                };
                dirty.push(k.clone(), true, None);
            }
            if removed {
                orphans.insert(k.clone(), ks.mark.index);
            }
        });
    }

    fn pending(&mut self, epoch: u64, key: K, p: Pending<S, V>) {
        let Pending {
            delete,
            mut upserts,
        } = p;
        if let Some((s, f)) = delete {
            if upserts.is_empty() {
                return self.change(epoch, key, &s, f, None);
            }
            self.change(epoch, key.clone(), &s, f, None);
        }
        // Newest first (older ones that give nothing are then dropped on arrival).
        let Some((s, f, v)) = upserts.pop() else {
            return;
        };
        for (s, f, v) in upserts {
            self.change(epoch, key.clone(), &s, f, Some(v));
        }
        self.change(epoch, key, &s, f, Some(v));
    }

    /// The keys whose visible state changed in the epoch, with their rows: the epoch's list
    /// itself, filtered in place, so that it can go downstream as one container without a
    /// copy (an epoch's changed keys can be most of the state, and the end of an epoch is when
    /// the rows are written out, the peak of the memory use).
    fn drain_changed(&mut self) -> Vec<(K, Option<V>)> {
        let Applier {
            state,
            dirty,
            generation,
            orphans,
            merge,
            by_truncate,
        } = self;
        *by_truncate = 0;
        // The marks of this epoch expire.
        *generation = generation.checked_add(1).unwrap_or(1);
        if *generation == 1 {
            // (Wrapped around: old marks could look current again.)
            for ks in state.keys.values_mut() {
                ks.mark = DirtyMark::default();
            }
        }
        orphans.clear();
        let Dirty {
            mut entries,
            was_visible,
        } = std::mem::take(dirty);
        if let Some(m) = merge {
            for (k, v) in &mut entries {
                *v = state.merged_row(m, k);
            }
        }
        let mut was_visible = was_visible.into_iter();
        entries.retain(|(_, v)| was_visible.next().unwrap_or(false) || v.is_some());
        entries
    }
}

/// The keys whose state advanced in the epoch being applied, once each: the key and its new
/// value (`None`: deleted, or not visible), and apart, whether the key was visible before
/// the epoch (so that the list itself is what goes downstream).
struct Dirty<K, V> {
    entries: Vec<(K, Option<V>)>,
    was_visible: Vec<bool>,
}

impl<K, V> Default for Dirty<K, V> {
    fn default() -> Self {
        Dirty {
            entries: Vec::new(),
            was_visible: Vec::new(),
        }
    }
}

impl<K, V> Dirty<K, V> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn push(&mut self, key: K, was_visible: bool, value: Option<V>) {
        self.entries.push((key, value));
        self.was_visible.push(was_visible);
    }

    /// Sets the value of the entry at `index`.
    fn set(&mut self, index: u32, value: Option<V>) {
        self.entries[index as usize].1 = value;
    }
}

/// When the operator saves its state: at every epoch `e ≥ first` with `(e + 1) % every == 0`.
///
/// A checkpoint is a barrier: the operator holds a capability at the next due epoch `c` until
/// it has handed the state *as of the end of `c`* (every change of epochs `≤ c` applied, none
/// of a later epoch) to the save function, so a downstream operator whose frontier passes `c`
/// knows that every worker has saved its state for `c`. When the input ends first, the state
/// is handed once more under [`CheckpointSchedule::FINAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointSchedule {
    /// Save every this many epochs (at least 1).
    pub every: u64,
    /// No checkpoint before this epoch (the epoch a restart resumes at).
    pub first: u64,
}

impl CheckpointSchedule {
    /// The epoch under which the state is saved when the input ends before a due epoch (no
    /// data after the last epoch saved or known): the state is then final, the state at the
    /// end of that due epoch and of every later one. Saved once, after the due epochs that
    /// came before the end of the input.
    pub const FINAL: u64 = u64::MAX;

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

/// Options of [`ApplyChanges::apply_changes_opts`]. `M` is the column logic of IGNORE NULL
/// UPDATES ([`NoMerge`] when the option is off).
#[derive(Clone, Debug)]
pub struct ApplyOptions<M = NoMerge> {
    /// Tombstones are forgotten this many epochs after their delete (`u64::MAX`: never).
    pub retention_epochs: u64,
    /// IGNORE NULL UPDATES: columns that are null in an upsert keep their values. Default
    /// `None`: the winning upsert is the row.
    pub ignore_null_updates: Option<M>,
    /// When to save the state (see [`CheckpointSchedule`]). Default `None`: never.
    pub checkpoints: Option<CheckpointSchedule>,
    /// Called when an epoch is complete with the number of keys whose state the epoch's
    /// changes advanced (one per key, however many of its changes the epoch had; changes that
    /// did not advance a key were stale, duplicates or superseded). Default `None`.
    pub on_epoch: Option<EpochCounter>,
    /// The input is already where `route` sends it (an upstream operator exchanged it by the
    /// same route): the operator takes it on the worker it is on instead of exchanging it
    /// again. Default `false`.
    pub routed: bool,
}

/// A callback `(epoch, keys advanced)` (see [`ApplyOptions::on_epoch`]).
#[derive(Clone)]
pub struct EpochCounter(pub std::rc::Rc<dyn Fn(u64, u64)>);

impl std::fmt::Debug for EpochCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EpochCounter")
    }
}

impl ApplyOptions {
    /// Tombstone retention `retention_epochs`, no other option.
    pub fn new(retention_epochs: u64) -> Self {
        ApplyOptions {
            retention_epochs,
            ignore_null_updates: None,
            checkpoints: None,
            on_epoch: None,
            routed: false,
        }
    }
}

impl<M> ApplyOptions<M> {
    /// With IGNORE NULL UPDATES, merging columns with `merge`.
    pub fn ignore_null_updates<N>(self, merge: N) -> ApplyOptions<N> {
        ApplyOptions {
            retention_epochs: self.retention_epochs,
            ignore_null_updates: Some(merge),
            checkpoints: self.checkpoints,
            on_epoch: self.on_epoch,
            routed: self.routed,
        }
    }

    /// Reporting the keys advanced per epoch to `f` (see [`ApplyOptions::on_epoch`]).
    pub fn on_epoch(self, f: impl Fn(u64, u64) + 'static) -> Self {
        ApplyOptions {
            on_epoch: Some(EpochCounter(std::rc::Rc::new(f))),
            ..self
        }
    }

    /// With checkpoints on `schedule`.
    pub fn checkpoints(self, schedule: CheckpointSchedule) -> Self {
        ApplyOptions {
            checkpoints: Some(schedule),
            ..self
        }
    }

    /// With input that is already routed (see [`ApplyOptions::routed`]).
    pub fn routed(self) -> Self {
        ApplyOptions {
            routed: true,
            ..self
        }
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

    /// Like [`apply_changes_with`](ApplyChanges::apply_changes_with), with the options of
    /// [`ApplyOptions`] and, if `truncates` is set, APPLY AS TRUNCATE WHEN: each record of
    /// `truncates` (a sequence value, at an epoch like the changes; from any worker) deletes
    /// every key at that sequence, including keys never seen. The state holds rows `V`
    /// for IGNORE NULL UPDATES (none without it); with the option, `initial` must come from a
    /// state saved with it too.
    fn apply_changes_opts<R, M, F>(
        self,
        truncates: Option<StreamVec<'scope, u64, S>>,
        route: R,
        options: ApplyOptions<M>,
        initial: ApplyState<K, S, V>,
        save: F,
    ) -> StreamVec<'scope, u64, (K, Option<V>)>
    where
        K: Eq + Hash,
        R: Fn(&K) -> u64 + 'static,
        M: NullMerge<V> + 'static,
        F: FnMut(u64, &ApplyState<K, S, V>) + 'static;
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
        save: F,
    ) -> StreamVec<'scope, u64, (K, Option<V>)>
    where
        R: Fn(&K) -> u64 + 'static,
        F: FnMut(u64, &ApplyState<K, S>) + 'static,
    {
        let options = ApplyOptions {
            retention_epochs,
            ignore_null_updates: None::<NoMerge>,
            checkpoints: schedule,
            on_epoch: None,
            routed: false,
        };
        apply_core(self, None, route, options, initial, save)
    }

    fn apply_changes_opts<R, M, F>(
        self,
        truncates: Option<StreamVec<'scope, u64, S>>,
        route: R,
        options: ApplyOptions<M>,
        initial: ApplyState<K, S, V>,
        save: F,
    ) -> StreamVec<'scope, u64, (K, Option<V>)>
    where
        R: Fn(&K) -> u64 + 'static,
        M: NullMerge<V> + 'static,
        F: FnMut(u64, &ApplyState<K, S, V>) + 'static,
    {
        let options = ApplyOptions {
            retention_epochs: options.retention_epochs,
            ignore_null_updates: options.ignore_null_updates.map(Nulls),
            checkpoints: options.checkpoints,
            on_epoch: options.on_epoch,
            routed: options.routed,
        };
        apply_core(self, truncates, route, options, initial, save)
    }
}

/// The operator behind every entry point; `R` is the row type its state keeps for IGNORE NULL
/// UPDATES (`()` without the option).
fn apply_core<'scope, K, S, V, R, M, P, F>(
    changes: Stream<'scope, u64, Vec<Change<K, S, V>>>,
    truncates: Option<StreamVec<'scope, u64, S>>,
    route: P,
    options: ApplyOptions<M>,
    initial: ApplyState<K, S, R>,
    save: F,
) -> StreamVec<'scope, u64, (K, Option<V>)>
where
    K: ExchangeData + Eq + Hash + Clone,
    S: ExchangeData + Ord + Clone,
    V: ExchangeData,
    R: 'static,
    M: KeepRows<V, R> + 'static,
    P: Fn(&K) -> u64 + 'static,
    F: FnMut(u64, &ApplyState<K, S, R>) + 'static,
{
    // Every worker applies every truncate to the keys it owns.
    let truncates = match truncates {
        Some(t) => t.broadcast(),
        None => empty(changes.scope()),
    };
    if options.routed {
        apply_operator(changes, truncates, Pipeline, options, initial, save)
    } else {
        let pact = Exchange::new(move |c: &Change<K, S, V>| route(&c.key));
        apply_operator(changes, truncates, pact, options, initial, save)
    }
}

/// [`apply_core`] with the input's parallelization contract `pact`.
fn apply_operator<'scope, K, S, V, R, M, F, Pact>(
    changes: Stream<'scope, u64, Vec<Change<K, S, V>>>,
    truncates: StreamVec<'scope, u64, S>,
    pact: Pact,
    options: ApplyOptions<M>,
    initial: ApplyState<K, S, R>,
    mut save: F,
) -> StreamVec<'scope, u64, (K, Option<V>)>
where
    K: ExchangeData + Eq + Hash + Clone,
    S: ExchangeData + Ord + Clone,
    V: ExchangeData,
    R: 'static,
    M: KeepRows<V, R> + 'static,
    F: FnMut(u64, &ApplyState<K, S, R>) + 'static,
    Pact: ParallelizationContract<u64, Vec<Change<K, S, V>>>,
{
    let ApplyOptions {
        retention_epochs,
        ignore_null_updates: merge,
        checkpoints: schedule,
        on_epoch,
        routed: _,
    } = options;
    changes.binary_frontier(
        truncates,
        pact,
        Pipeline,
        "ApplyChanges",
        move |cap, _info| {
            let mut applier = Applier {
                state: initial,
                dirty: Dirty::default(),
                generation: 1,
                orphans: HashMap::default(),
                merge,
                by_truncate: 0,
            };
            // The checkpoint barrier: a capability at the next due epoch, held until its state
            // is saved.
            let mut barrier: Option<Capability<u64>> = schedule.map(|s| {
                let mut cap = cap;
                cap.downgrade(&s.next_due(0));
                cap
            });
            // The epoch being applied (the least open one, or a complete one being closed): its
            // capability; what changed in it is in `applier.dirty`.
            let mut current: Option<Capability<u64>> = None;
            // Changes of later epochs, coalesced per key (see `Pending`), so that what waits is
            // bounded by the keys an epoch touches, not by its events.
            let mut later: BTreeMap<u64, Waiting<K, S, V>> = BTreeMap::new();
            // The largest epoch this worker knows to exist: it received data of it, or saw the
            // frontier pass it. When the input ends before a due epoch, the state is saved as final.
            let mut known: Option<u64> = None;

            move |(input, frontier), (truncs, tfrontier), output| {
                // The least epoch that may still receive data on either input (None: both
                // finished).
                let open = [frontier, tfrontier]
                    .into_iter()
                    .filter_map(|f| f.frontier().first().copied())
                    .min();
                if let Some(o) = open.filter(|o| *o > 0) {
                    known = known.max(Some(o - 1));
                }
                let port = output.output_index();
                // Changes of an epoch past the pending checkpoint wait until it is saved.
                let due = barrier.as_ref().map(|b| *b.time());
                // Whether data of `epoch` is applied now (to the current epoch, which it may
                // open); if not, it waits in `later`, which then has the epoch.
                let mut place = |cap: &InputCapability<u64>,
                                 epoch: u64,
                                 current: &mut Option<Capability<u64>>,
                                 later: &mut BTreeMap<u64, Waiting<K, S, V>>|
                 -> bool {
                    known = known.max(Some(epoch));
                    if current.is_none()
                        && later.is_empty()
                        && Some(epoch) == open
                        && due.is_none_or(|d| epoch <= d)
                    {
                        *current = cap.retain_least(port);
                    }
                    if current.as_ref().is_some_and(|c| *c.time() == epoch) {
                        return true;
                    }
                    if let (btree_map::Entry::Vacant(e), Some(cap)) =
                        (later.entry(epoch), cap.retain_least(port))
                    {
                        e.insert(Waiting {
                            cap,
                            truncate: None,
                            keys: HashMap::default(),
                        });
                    }
                    false
                };
                input.for_each_stamp(|cap, data| {
                    let Some(&epoch) = cap.least() else { return };
                    if place(&cap, epoch, &mut current, &mut later) {
                        for batch in data {
                            for c in batch.drain(..) {
                                applier.change(epoch, c.key, &c.seq, c.fingerprint, c.value);
                            }
                        }
                    } else if let Some(w) = later.get_mut(&epoch) {
                        let merge = applier.merge.as_ref();
                        for batch in data {
                            for c in batch.drain(..) {
                                let p = w.keys.entry(c.key).or_default();
                                p.add(c.seq, c.fingerprint, c.value, merge);
                            }
                        }
                    }
                });
                truncs.for_each_stamp(|cap, data| {
                    let Some(&epoch) = cap.least() else { return };
                    let Some(t) = data.flat_map(|b| b.drain(..)).max() else {
                        return;
                    };
                    if place(&cap, epoch, &mut current, &mut later) {
                        applier.truncate(&t);
                    } else if let Some(w) = later.get_mut(&epoch) {
                        if w.truncate.as_ref().is_none_or(|x| *x < t) {
                            w.truncate = Some(t);
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
                        if let Some(f) = &on_epoch {
                            (f.0)(epoch, (applier.dirty.len() - applier.by_truncate) as u64);
                        }
                        output
                            .session(&cap)
                            .give_container(&mut applier.drain_changed());
                        applier.state.expire_tombstones(epoch, retention_epochs);
                    }
                    let next = later.first_key_value().map(|(e, _)| *e);
                    // The pending checkpoint: due once every epoch up to it is complete and
                    // applied, and before any later epoch is applied.
                    if let (Some(b), Some(s)) = (barrier.as_mut(), schedule) {
                        let c = *b.time();
                        if open.is_none_or(|o| o > c) && next.is_none_or(|n| n > c) {
                            if open.is_none() && known.is_none_or(|k| c > k) {
                                // The input ended before `c` (as far as this worker knows):
                                // the state is final, the state of `c` and of every later
                                // due epoch.
                                save(CheckpointSchedule::FINAL, &applier.state);
                                barrier = None;
                            } else {
                                save(c, &applier.state);
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
                    let w = later.remove(&epoch).expect("first");
                    if let Some(t) = w.truncate {
                        applier.truncate(&t);
                    }
                    for (key, p) in w.keys {
                        applier.pending(epoch, key, p);
                    }
                    current = Some(w.cap);
                }
            }
        },
    )
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

#[cfg(test)]
mod option_tests {
    use super::*;
    use std::collections::BTreeSet;

    type Row = [Option<u32>; 3];
    type Merge = Nulls<(fn(&Row) -> Vec<bool>, fn(&[&Row]) -> Row)>;

    fn non_null(r: &Row) -> Vec<bool> {
        r.iter().map(Option::is_some).collect()
    }

    fn compose(rows: &[&Row]) -> Row {
        std::array::from_fn(|c| rows.iter().find_map(|r| r[c]))
    }

    fn merge() -> Merge {
        Nulls((non_null, compose))
    }

    fn up(st: &mut ApplyState<u32, u32, Row>, key: u32, seq: u32, row: Row) -> Option<bool> {
        let fp = row.iter().flatten().fold(7u64, |a, v| a * 31 + *v as u64);
        st.upsert_merged(&merge(), 0, &key, &seq, fp, row)
    }

    fn del(st: &mut ApplyState<u32, u32, Row>, key: u32, seq: u32) -> Option<bool> {
        st.delete_merged(0, &key, &seq, 0)
    }

    fn row(st: &ApplyState<u32, u32, Row>, key: u32) -> Option<Row> {
        st.merged_row(&merge(), &key)
    }

    fn seqs(st: &ApplyState<u32, u32, Row>, key: u32) -> Vec<u32> {
        st.merged[&key].upserts.iter().map(|(s, _, _)| *s).collect()
    }

    fn truncate<R>(st: &mut ApplyState<u32, u32, R>, seq: u32) -> Vec<u32> {
        let mut changed = Vec::new();
        st.truncate(&seq, |k| changed.push(*k));
        changed.sort();
        changed
    }

    #[test]
    fn truncate_deletes_every_key_at_its_sequence() {
        let mut st: ApplyState<u32, u32> = ApplyState::default();
        st.apply(0, &1, &2, 0, false);
        st.apply(0, &2, &6, 0, false);
        st.apply(0, &3, &3, 0, true); // a tombstone covered by the truncate
        st.apply(0, &4, &7, 0, true); // one that is not
        assert_eq!(truncate(&mut st, 5), vec![1]);
        assert_eq!(st.truncated, Some(5));
        assert_eq!(
            st.keys.keys().copied().collect::<BTreeSet<_>>(),
            [2, 4].into()
        );
        assert_eq!(st.tombstones, VecDeque::from([(0, 4)]));
        // An older truncate changes nothing; nor do late changes at or below the truncate.
        assert_eq!(truncate(&mut st, 4), Vec::<u32>::new());
        assert_eq!(st.truncated, Some(5));
        assert_eq!(st.apply(1, &1, &4, 0, false), None);
        assert_eq!(st.apply(1, &9, &5, 0, false), None); // a key never seen, at the truncate
        assert_eq!(st.apply(1, &9, &5, 0, true), None);
        assert!(!st.keys.contains_key(&9));
        // A newer upsert re-creates its key.
        assert_eq!(st.apply(1, &1, &6, 0, false), Some(false));
        assert_eq!(st.live_keys(), 2);
    }

    #[test]
    fn null_merge_is_order_independent() {
        let events = [
            (3, [Some(3), None, None]),
            (1, [Some(1), Some(1), Some(1)]),
            (2, [None, Some(2), None]),
            (0, [Some(0), Some(0), Some(0)]), // gives nothing once 1 is there
        ];
        let orders = [
            [0, 1, 2, 3],
            [3, 2, 1, 0],
            [1, 3, 0, 2],
            [2, 0, 3, 1],
            [3, 1, 2, 0],
        ];
        for order in orders {
            let mut st = ApplyState::default();
            for i in order.into_iter().chain(order) {
                let (s, r) = events[i];
                up(&mut st, 7, s, r);
            }
            assert_eq!(row(&st, 7), Some([Some(3), Some(2), Some(1)]), "{order:?}");
            assert_eq!(seqs(&st, 7), vec![3, 2, 1], "{order:?}");
            assert_eq!((st.keys[&7].seq, st.keys[&7].deleted), (3, false));
        }
    }

    #[test]
    fn null_merge_keeps_the_newest_upsert_even_if_all_null() {
        let mut st = ApplyState::default();
        assert_eq!(up(&mut st, 1, 1, [Some(1), None, None]), Some(false));
        assert_eq!(up(&mut st, 1, 2, [None, None, None]), Some(true));
        assert_eq!(seqs(&st, 1), vec![2, 1]);
        assert_eq!(up(&mut st, 1, 3, [Some(3), None, None]), Some(true));
        assert_eq!(seqs(&st, 1), vec![3]); // 2 and 1 give nothing any more
        assert_eq!(up(&mut st, 1, 1, [Some(1), None, None]), None);
        assert_eq!(row(&st, 1), Some([Some(3), None, None]));
    }

    #[test]
    fn delete_resets_merged_columns() {
        let mut st = ApplyState::default();
        up(&mut st, 1, 1, [Some(1), Some(1), Some(1)]);
        assert_eq!(del(&mut st, 1, 2), Some(true));
        assert_eq!(row(&st, 1), None);
        assert!(st.merged.is_empty());
        assert_eq!(up(&mut st, 1, 4, [None, Some(4), None]), Some(false));
        assert_eq!(row(&st, 1), Some([None, Some(4), None]));
        // A late upsert after the delete fills columns; one before it is stale.
        assert_eq!(up(&mut st, 1, 3, [Some(3), None, Some(3)]), Some(true));
        assert_eq!(row(&st, 1), Some([Some(3), Some(4), Some(3)]));
        assert_eq!(up(&mut st, 1, 2, [Some(2), Some(2), Some(2)]), None);
        // A late delete older than the winner removes the upserts before it.
        assert_eq!(del(&mut st, 1, 3), Some(true));
        assert_eq!(row(&st, 1), Some([None, Some(4), None]));
        assert_eq!(st.merged[&1].reset, Some(3));
        assert_eq!(del(&mut st, 1, 3), None);
        // At the winner's sequence the delete wins.
        assert_eq!(del(&mut st, 1, 4), Some(true));
        assert_eq!(row(&st, 1), None);
        assert_eq!(up(&mut st, 1, 4, [Some(9), Some(9), Some(9)]), None);
    }

    #[test]
    fn truncate_removes_merged_upserts_at_or_below_it() {
        let mut st = ApplyState::default();
        up(&mut st, 1, 2, [Some(2), None, None]);
        up(&mut st, 1, 5, [None, Some(5), None]);
        up(&mut st, 2, 1, [Some(1), None, None]);
        del(&mut st, 3, 2);
        up(&mut st, 3, 6, [Some(6), None, None]);
        assert_eq!(st.merged[&3].reset, Some(2));
        assert_eq!(truncate(&mut st, 3), vec![1, 2]);
        assert_eq!(row(&st, 1), Some([None, Some(5), None]));
        assert_eq!(row(&st, 2), None);
        assert_eq!(st.merged[&3].reset, None); // the truncate covers the delete
        assert_eq!(up(&mut st, 1, 3, [Some(3), None, None]), None);
        assert_eq!(up(&mut st, 1, 4, [Some(4), None, Some(4)]), Some(true));
        assert_eq!(row(&st, 1), Some([Some(4), Some(5), Some(4)]));
        assert_eq!(st.merged.len(), 2);
    }

    /// One entry per changed key, also for keys a truncate forgets and that come back in the
    /// same epoch (the mark went with the state; the entry is found again).
    #[test]
    fn an_epochs_changed_keys_are_listed_once_across_truncates() {
        let mut a: Applier<u32, u32, u32, (), NoMerge> = Applier {
            state: ApplyState::default(),
            dirty: Dirty::default(),
            generation: 1,
            orphans: HashMap::default(),
            merge: None,
            by_truncate: 0,
        };
        // Epoch 0: keys 1 and 2 live, 3 a tombstone.
        a.change(0, 1, &1, 0, Some(10));
        a.change(0, 2, &1, 0, Some(20));
        a.change(0, 3, &1, 0, None);
        let mut out = a.drain_changed();
        out.sort();
        assert_eq!(out, vec![(1, Some(10)), (2, Some(20))]);
        // Epoch 1: 1 changes, a truncate at 5 forgets every key, then 1, 3 and 4 come back
        // and 2 is deleted again (a tombstone of a forgotten key).
        a.change(1, 1, &2, 0, Some(11));
        a.change(1, 3, &2, 0, None); // a tombstone with an entry (no visible change)
        a.truncate(&5);
        assert!(a.state.keys.is_empty());
        a.change(1, 1, &6, 0, Some(12));
        a.change(1, 3, &6, 0, Some(30));
        a.change(1, 4, &6, 0, Some(40));
        a.change(1, 2, &6, 0, None);
        let keys: Vec<u32> = a.dirty.entries.iter().map(|d| d.0).collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(keys.len(), unique.len(), "a key listed twice: {keys:?}");
        let mut out = a.drain_changed();
        out.sort();
        assert_eq!(
            out,
            vec![(1, Some(12)), (2, None), (3, Some(30)), (4, Some(40))]
        );
        // Epoch 2: nothing is left over.
        assert!(a.orphans.is_empty());
        a.change(2, 4, &7, 0, Some(41));
        assert_eq!(a.drain_changed(), vec![(4, Some(41))]);
    }

    #[test]
    fn pending_coalesces_like_applying_every_change() {
        let m = merge();
        let changes = [
            (4, Some([None, Some(4), None])),
            (2, None),
            (1, Some([Some(1), Some(1), Some(1)])), // before the delete
            (3, Some([Some(3), None, None])),
            (5, Some([None, Some(5), None])),
        ];
        let mut p: Pending<u32, Row> = Pending::default();
        for (s, v) in changes.iter().cloned() {
            p.add(s, 0, v, Some(&m));
        }
        assert_eq!(p.delete, Some((2, 0)));
        let kept: Vec<u32> = p.upserts.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(kept, vec![5, 3]);
        // Without the option only the winner is kept.
        let mut p: Pending<u32, Row> = Pending::default();
        for (s, v) in changes.iter().cloned() {
            p.add(s, 0, v, None::<&NoMerge>);
        }
        assert_eq!(p.delete, None);
        let kept: Vec<u32> = p.upserts.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(kept, vec![5]);
    }
}
