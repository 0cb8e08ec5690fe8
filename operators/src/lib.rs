//! tidewater operators: generic timely operators that know nothing of IO.
//!
//! | operator | what it does |
//! |---|---|
//! | [`ApplyChanges`] | APPLY CHANGES by key and sequence, SCD type 1, with tombstones |

mod apply_changes;

pub use apply_changes::{ApplyChanges, ApplyState, Change, KeyState};
