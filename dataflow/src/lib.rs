//! tidewater: streaming CDC into epoch-consistent Delta Lake tables on timely dataflow.
//!
//! This crate wires the generic operators (`tidewater-operators`) and the connectors
//! (`tidewater-connectors`) into a dataflow per pipeline file, and holds the CLI.
//! See `ARCHITECTURE.md` at the repository root for the map.

pub mod checkpoint;
pub mod commit;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod event_log;
pub mod failpoint;
pub mod kafka_source;
pub mod key;
pub mod metrics;
pub mod run;
pub mod source;
pub mod sql;
pub mod table;
pub mod view;

use std::cmp::Ordering;

/// Turns transparent huge pages off for this process (Linux; elsewhere a no-op), to be called
/// first thing by a binary that runs the engine. With THP `always` (a common system default)
/// every 2-MiB-aligned range of the heap that is touched at all becomes a whole resident huge
/// page: the engine's peak RSS was ≈ 20–30 MiB higher with them at no measurable gain in CPU
/// time (bench/RESULTS.md, session 6). Errors are ignored (an old kernel: nothing changes).
pub fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

use serde::{Deserialize, Serialize};
use tidewater_connectors::types::Datum;

pub use config::PipelineConfig;
pub use error::TidewaterError;
pub use run::{run, RunOptions, RunSummary};

pub use key::Key;

/// A sequence value, totally ordered (see [`Datum::total_cmp`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Seq(pub Datum);

impl PartialEq for Seq {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Seq {}
impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Seq {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}
