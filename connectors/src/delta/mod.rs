//! The Delta Lake sink: Parquet files per worker, one committer, one Delta commit per table
//! per epoch, and the epoch manifest. The protocol is written down in `DESIGN.md` beside this
//! file.

mod committer;
mod log;
mod parquet;

pub use committer::{
    manifest_dir, read_manifests, CommitOutcome, Committer, CommitterConfig, EpochManifest,
    FileAction, ResumeInfo,
};
pub use log::{
    orphan_files, read_commit, read_commits, remove_orphan_files, table_files, table_files_at,
    vacuum_lakehouse, LogCommit, SnapshotFile,
};
pub use parquet::{
    arrow_schema, batch_stats, datum_at, delta_fields, packed_record_batch, parquet_num_rows,
    read_parquet, spread_new_columns, to_record_batch, write_batch, write_parquet, AddFile,
};
