//! `EpochStash`: holds an operator's input by epoch, each epoch under a capability, until the
//! input frontier has passed it.
//!
//! # Example
//! ```
//! use timely::dataflow::operators::{ToStream, Inspect};
//! use timely::dataflow::operators::generic::Operator;
//! use timely::dataflow::channels::pact::Pipeline;
//! use tidewater_operators::EpochStash;
//!
//! timely::example(|scope| {
//!     (0u64..10)
//!         .to_stream(scope)
//!         .container::<Vec<_>>()
//!         .unary_frontier(Pipeline, "SumPerEpoch", |_cap, _info| {
//!             let mut stash = EpochStash::new();
//!             move |(input, frontier), output| {
//!                 stash.stash(input, output.output_index());
//!                 while let Some((cap, data)) = stash.pop_complete(frontier) {
//!                     output.session(&cap).give(data.iter().sum::<u64>());
//!                 }
//!             }
//!         })
//!         .container::<Vec<u64>>()
//!         .inspect(|sum: &u64| assert_eq!(*sum, 45));
//! });
//! ```

use std::collections::BTreeMap;

use timely::communication::Pull;
use timely::dataflow::channels::Message;
use timely::dataflow::operators::generic::InputHandleCore;
use timely::dataflow::operators::Capability;
use timely::progress::frontier::MutableAntichain;

/// Input data by epoch, each epoch with a capability for one output port.
pub struct EpochStash<D> {
    pending: BTreeMap<u64, (Capability<u64>, Vec<D>)>,
}

impl<D> Default for EpochStash<D> {
    fn default() -> Self {
        EpochStash {
            pending: BTreeMap::new(),
        }
    }
}

impl<D> EpochStash<D> {
    /// An empty stash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves everything available on `input` into the stash, under a capability for the
    /// output port `output_port` at the data's epoch.
    pub fn stash<P: Pull<Message<u64, Vec<D>>>>(
        &mut self,
        input: &mut InputHandleCore<u64, Vec<D>, P>,
        output_port: usize,
    ) {
        input.for_each_stamp(|cap, data| {
            if let Some(cap) = cap.retain_least(output_port) {
                let e = self
                    .pending
                    .entry(*cap.time())
                    .or_insert_with(|| (cap, Vec::new()));
                for batch in data {
                    if e.1.is_empty() {
                        // The epoch's first batch is taken as it is (an upstream operator may
                        // send a whole epoch as one container: no copy of it).
                        std::mem::swap(&mut e.1, batch);
                    } else {
                        e.1.append(batch);
                    }
                }
            }
        });
    }

    /// Adds one item under `cap` (kept for its epoch if the epoch has none yet).
    pub fn push(&mut self, cap: Capability<u64>, item: D) {
        self.pending
            .entry(*cap.time())
            .or_insert_with(|| (cap, Vec::new()))
            .1
            .push(item);
    }

    /// Removes and returns the oldest stashed epoch if `frontier` has passed it.
    pub fn pop_complete(
        &mut self,
        frontier: &MutableAntichain<u64>,
    ) -> Option<(Capability<u64>, Vec<D>)> {
        let entry = self.pending.first_entry()?;
        if frontier.frontier().less_equal(entry.key()) {
            return None;
        }
        Some(entry.remove())
    }

    /// The oldest stashed epoch, whether complete or not (its data can be taken piecemeal).
    pub fn first_mut(&mut self) -> Option<(&Capability<u64>, &mut Vec<D>)> {
        self.pending.values_mut().next().map(|(c, d)| (&*c, d))
    }

    /// The epoch of the oldest stashed data.
    pub fn first_epoch(&self) -> Option<u64> {
        self.pending.keys().next().copied()
    }

    /// Removes the oldest stashed epoch.
    pub fn pop_first(&mut self) -> Option<(Capability<u64>, Vec<D>)> {
        self.pending.pop_first().map(|(_, v)| v)
    }

    /// Whether nothing is stashed.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops everything stashed (and its capabilities).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}
