//! tidewater operators: generic timely operators that know nothing of IO.
//!
//! | operator | what it does |
//! |---|---|
//! | [`ApplyChanges`] | APPLY CHANGES by key and sequence, SCD type 1, with tombstones |
//! | [`ApplyHistory`] | APPLY CHANGES by key and sequence, SCD type 2: every version with its interval |
//! | [`EpochStash`] | holds input by epoch under capabilities until the frontier passes |
//! | [`WatermarkGate`] | splits an event-time stream into on-time and late records by a data-driven watermark |
//! | [`CloseWindows`] | marks event-time windows closed once the watermark passes their end (`on_update` / `on_close`) |

mod apply_changes;
mod apply_history;
mod epoch_stash;
mod watermark;
mod windows;

pub use apply_changes::{ApplyChanges, ApplyState, Change, CheckpointSchedule, KeyState};
pub use apply_changes::{ApplyOptions, EpochCounter, MergedRow, NoMerge, NullMerge};
pub use apply_history::{ApplyHistory, Event, HistoryState, KeyHistory, Step, Version};
pub use epoch_stash::EpochStash;
pub use watermark::WatermarkGate;
pub use windows::{CloseWindows, Emit};
