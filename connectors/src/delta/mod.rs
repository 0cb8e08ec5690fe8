//! The Delta Lake sink: Parquet files per worker, one committer, one Delta commit per table
//! per epoch, and the epoch manifest. The protocol is written down in `DESIGN.md` beside this
//! file.

mod committer;
mod parquet;

pub use committer::{
    manifest_dir, read_manifests, CommitOutcome, Committer, CommitterConfig, EpochManifest,
    FileAction,
};
pub use parquet::{
    arrow_schema, batch_stats, datum_at, delta_fields, packed_record_batch, read_parquet,
    to_record_batch, write_batch, write_parquet, AddFile,
};
