//! tidewater operators: generic timely operators that know nothing of IO.
//!
//! | operator | what it does |
//! |---|---|
//! | [`ApplyChanges`] | APPLY CHANGES by key and sequence, SCD type 1, with tombstones |
//! | [`EpochStash`] | holds input by epoch under capabilities until the frontier passes |

mod apply_changes;
mod epoch_stash;

pub use apply_changes::{ApplyChanges, ApplyState, Change, CheckpointSchedule, KeyState};
pub use apply_changes::{ApplyOptions, MergedRow, NoMerge, NullMerge};
pub use epoch_stash::EpochStash;
