//! Operator-state checkpoints (`<lakehouse>/_tidewater/checkpoints/<epoch>/`): the
//! ApplyChanges state of every table as of the end of a committed epoch, so that a restart
//! replays only the epochs after it.
//!
//! Layout of one checkpoint `c` (directory name: the epoch, zero-padded to 20 digits):
//!
//! ```text
//! <table>/b<bucket>.bin    the keys (and tombstones) of one hash bucket of the table
//! MANIFEST.json            written last, by the committer: the checkpoint is complete
//! ```
//!
//! - **Who writes what.** Each worker saves the buckets it owns (bucket `b` lives on worker
//!   `b % workers`) when its ApplyChanges operator reaches the end of `c` (a barrier in the
//!   dataflow: the operator's output does not pass `c` before that, see
//!   [`CheckpointSchedule`](tidewater_operators::CheckpointSchedule)); every file is written
//!   under a temporary name and renamed (not fsynced: see [`write_atomic`]). The committer
//!   writes the manifest once `c`'s positions are in a Delta commit (after the first commit of an epoch `≥ c`) and every bucket file of
//!   every table is present; it names the epoch, the tables (buckets, key columns, file
//!   sizes), the number of workers and processes that wrote it, and the position of every
//!   source at the end of `c`. A checkpoint without a manifest is incomplete and is deleted at
//!   start. The newest [`KEEP`] complete checkpoints are kept.
//! - **Restart.** [`find`] takes the newest complete checkpoint that matches the pipeline
//!   (tables, buckets, key columns), whose recorded source positions equal the Delta logs'
//!   recorded cut at its epoch, and whose files all pass their size and checksum check; it
//!   falls back to an older one, and to a full replay, with a log line naming the reason —
//!   never loading a checkpoint wrongly. The state is stored per bucket, so a run with another
//!   number of workers or processes loads it by bucket (each worker reads the buckets it owns
//!   now): that is the redistribution by key.
//! - **Codec.** A file is `TWCK`, a format version (u32), the payload length (u64) and the
//!   xxh3 of the payload (u64), then the payload: bincode of [`BucketState`]
//!   (docs/decisions/0005 has the measurements behind the choice).

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidewater_connectors::delta::ResumeInfo;
use tidewater_connectors::types::PackedRow;
use tidewater_operators::{
    ApplyState, CheckpointSchedule, HistoryState, KeyHistory, KeyState, MergedRow,
};
use tracing::{info, warn};
use xxhash_rust::xxh3::xxh3_64;

use crate::spill::RowRef;
use crate::table::TablePlan;
use crate::{Key, Seq, TidewaterError};

/// Directory of the checkpoints, relative to the lakehouse.
pub const DIR: &str = "_tidewater/checkpoints";
/// Name of the manifest file of a checkpoint.
pub const MANIFEST: &str = "MANIFEST.json";
/// Complete checkpoints kept (older ones are deleted when a new one is complete).
pub const KEEP: usize = 2;
/// Version of the file format (and of the manifest).
const FORMAT: u32 = 2;
const MAGIC: &[u8; 4] = b"TWCK";
const HEADER: usize = 4 + 4 + 8 + 8;

/// The saved state of one bucket of a table.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BucketState {
    /// SCD type 1, per key: winning sequence, tombstone flag, fingerprint, deletion epoch.
    pub keys: Vec<(Key, KeyState<Seq>)>,
    /// SCD type 1: the bucket's tombstones in creation order: `(epoch, key)`.
    pub tombstones: Vec<(u64, Key)>,
    /// SCD type 1: the largest truncate applied (the same in every bucket).
    pub truncated: Option<Seq>,
    /// SCD type 1 with `ignore_null_updates`: per live key, the upserts its row is merged from.
    pub merged: Vec<(Key, MergedRow<Seq, PackedRow>)>,
    /// SCD type 2: per key, its events.
    pub history: Vec<(Key, KeyHistory<Seq, PackedRow>)>,
}

/// [`BucketState`] borrowing from the live state (the same bincode encoding).
#[derive(Serialize, Default)]
struct BucketStateRef<'a> {
    keys: Vec<(&'a Key, &'a KeyState<Seq>)>,
    tombstones: Vec<(u64, &'a Key)>,
    truncated: Option<&'a Seq>,
    merged: Vec<(&'a Key, &'a MergedRow<Seq, PackedRow>)>,
    history: Vec<(&'a Key, &'a KeyHistory<Seq, PackedRow>)>,
}

/// The operator state of one table on one worker.
pub enum TableState<'a> {
    /// SCD type 1 (`ApplyChanges`).
    Scd1(&'a ApplyState<Key, Seq, PackedRow>),
    /// SCD type 1 whose rows are spilled ([`RowRef`]s; no IGNORE NULL UPDATES, so the state
    /// holds no rows and is saved exactly like [`TableState::Scd1`]).
    Scd1Spilled(&'a ApplyState<Key, Seq, RowRef>),
    /// SCD type 2 (`ApplyHistory`).
    Scd2(&'a HistoryState<Key, Seq, PackedRow>),
}

/// One table in a checkpoint manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableCheckpoint {
    /// Hash buckets of the table.
    pub buckets: u32,
    /// The key columns.
    pub keys: Vec<String>,
    /// Bucket → size of its file in bytes.
    pub files: BTreeMap<u32, u64>,
}

/// The manifest of a complete checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointManifest {
    /// Format version.
    pub format: u32,
    /// The pipeline name.
    pub pipeline: String,
    /// The epoch whose end the state is as of.
    pub epoch: u64,
    /// Workers (over all processes) of the run that wrote it.
    pub workers: usize,
    /// Processes of the run that wrote it.
    pub processes: usize,
    /// The tables.
    pub tables: BTreeMap<String, TableCheckpoint>,
    /// Per source: the recorded positions of its last epoch `≤ epoch` (as in the Delta
    /// commit metadata).
    pub positions: BTreeMap<String, Value>,
}

/// A checkpoint chosen for a restart.
#[derive(Clone, Debug)]
pub struct Restore {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: CheckpointManifest,
}

impl Restore {
    /// The epoch of the checkpoint.
    pub fn epoch(&self) -> u64 {
        self.manifest.epoch
    }
}

fn io_err(path: &Path, e: std::io::Error) -> TidewaterError {
    tidewater_connectors::ConnectorError::io(path.display(), e).into()
}

/// The checkpoints directory of a lakehouse.
pub fn root(lakehouse: &Path) -> PathBuf {
    lakehouse.join(DIR)
}

/// The directory of the checkpoint of `epoch`.
pub fn epoch_dir(lakehouse: &Path, epoch: u64) -> PathBuf {
    root(lakehouse).join(format!("{epoch:020}"))
}

/// The directory of the final states of this run: a worker whose input ended before a due
/// epoch saves its buckets there once ([`CheckpointSchedule::FINAL`]); they are the state of
/// every later checkpoint, which takes them when it finds its own file missing. Removed at
/// start ([`remove_incomplete`]), so it only ever holds files of the current run.
pub fn final_dir(lakehouse: &Path) -> PathBuf {
    root(lakehouse).join("final")
}

fn bucket_path(dir: &Path, table: &str, bucket: u32) -> PathBuf {
    dir.join(table).join(format!("b{bucket:05}.bin"))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, then renamed.
///
/// Not fsynced: a process crash cannot lose written pages, and what a power loss could damage
/// (a file or the manifest not on disk, or only partly) is caught at restart by the size and
/// checksum checks, which then fall back to an older checkpoint or a full replay. An fsync per
/// bucket file cost up to 0.1 s per checkpoint here (bench/RESULTS.md).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TidewaterError> {
    let tmp = temp_beside(path)?;
    let mut f = fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    drop(f);
    crate::failpoint::hit("checkpoint_write");
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// A unique temporary name in `path`'s directory (created if missing), to be renamed to
/// `path` once its content is complete.
fn temp_beside(path: &Path) -> Result<PathBuf, TidewaterError> {
    let dir = path.parent().expect("a file in a directory");
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    Ok(dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().expect("file name").to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    )))
}

/// Encodes a bucket's state as a checkpoint file.
fn encode(state: &BucketStateRef<'_>) -> Vec<u8> {
    let payload = bincode::serialize(state).expect("in-memory serialization");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Checks a checkpoint file's header and checksum; returns its payload.
fn verify(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err("not a tidewater checkpoint file".into());
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    if u32_at(4) != FORMAT {
        return Err(format!("format version {} (expected {FORMAT})", u32_at(4)));
    }
    let len = u64_at(8);
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(format!(
            "payload of {} bytes, the header says {len}",
            payload.len()
        ));
    }
    if xxh3_64(payload) != u64_at(16) {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// Saves the state of one table's ApplyChanges on one worker as of the end of `epoch`: one
/// file per bucket the worker owns (`bucket % peers == index`), empty buckets included (so
/// that completeness can be checked). Does nothing if the checkpoint of `epoch` is already
/// complete (a replayed epoch). Returns the bytes written.
pub fn save_worker_state(
    lakehouse: &Path,
    epoch: u64,
    plan: &TablePlan,
    peers: usize,
    index: usize,
    state: TableState<'_>,
) -> Result<u64, TidewaterError> {
    let dir = if epoch == CheckpointSchedule::FINAL {
        final_dir(lakehouse)
    } else {
        epoch_dir(lakehouse, epoch)
    };
    if dir.join(MANIFEST).exists() {
        return Ok(0);
    }
    let owned = |b: u32| b as usize % peers == index;
    // SCD type 1 (with rows in its state or spilled): keys, tombstones, merged rows, truncate.
    let (scd1, truncated) = match &state {
        TableState::Scd1(st) => (
            Some((&st.keys, &st.tombstones, Some(&st.merged))),
            st.truncated.as_ref(),
        ),
        TableState::Scd1Spilled(st) => {
            debug_assert!(st.merged.is_empty(), "spilled tables keep no rows");
            (
                Some((&st.keys, &st.tombstones, None)),
                st.truncated.as_ref(),
            )
        }
        TableState::Scd2(_) => (None, None),
    };
    let mut buckets: BTreeMap<u32, BucketStateRef<'_>> = (0..plan.buckets)
        .filter(|b| owned(*b))
        .map(|b| {
            (
                b,
                BucketStateRef {
                    truncated,
                    ..Default::default()
                },
            )
        })
        .collect();
    let bucket = |k: &Key| -> Result<u32, TidewaterError> {
        let b = plan.bucket(k);
        if !owned(b) {
            return Err(TidewaterError::Runtime(format!(
                "checkpoint of table `{}`: worker {index} of {peers} holds a key of bucket {b}",
                plan.name
            )));
        }
        Ok(b)
    };
    macro_rules! at {
        ($k:expr) => {
            buckets.get_mut(&bucket($k)?).expect("owned")
        };
    }
    if let Some((keys, tombstones, merged)) = scd1 {
        for (k, s) in keys {
            at!(k).keys.push((k, s));
        }
        for (e, k) in tombstones {
            at!(k).tombstones.push((*e, k));
        }
        for (k, m) in merged.into_iter().flatten() {
            at!(k).merged.push((k, m));
        }
    }
    if let TableState::Scd2(st) = state {
        for (k, h) in &st.keys {
            at!(k).history.push((k, h));
        }
    }
    let mut bytes = 0;
    for (b, s) in &buckets {
        let data = encode(s);
        bytes += data.len() as u64;
        write_atomic(&bucket_path(&dir, &plan.name, *b), &data)?;
    }
    Ok(bytes)
}

/// What the committer needs to complete checkpoints.
#[derive(Clone, Debug)]
pub struct ManifestWriter {
    /// The lakehouse.
    pub lakehouse: PathBuf,
    /// The pipeline name.
    pub pipeline: String,
    /// Per table: buckets and key columns.
    pub tables: BTreeMap<String, (u32, Vec<String>)>,
    /// Workers over all processes.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
}

impl ManifestWriter {
    /// Completes the checkpoint of `epoch` with `positions` (per source, its positions at the
    /// end of `epoch`) if every bucket file of every table is present, then deletes complete
    /// checkpoints older than the newest [`KEEP`] and incomplete ones older than `epoch`.
    /// Returns whether the checkpoint was completed (or already was); an incomplete one (a
    /// worker did not save it: the input ended before) is left to the cleanup at start.
    pub fn complete(
        &self,
        epoch: u64,
        positions: BTreeMap<String, Value>,
    ) -> Result<bool, TidewaterError> {
        let dir = epoch_dir(&self.lakehouse, epoch);
        if dir.join(MANIFEST).exists() {
            return Ok(true);
        }
        let mut tables = BTreeMap::new();
        for (name, (buckets, keys)) in &self.tables {
            let mut files = BTreeMap::new();
            for b in 0..*buckets {
                let path = bucket_path(&dir, name, b);
                if !path.exists() {
                    // The worker that owns the bucket saves each due epoch in order, and its
                    // final state once its input ended; so a final file here means that the
                    // input ended before `epoch` and the final state is the state at `epoch`.
                    let last = bucket_path(&final_dir(&self.lakehouse), name, b);
                    if last.exists() {
                        link_or_copy(&last, &path)?;
                    }
                }
                match fs::metadata(&path) {
                    Ok(m) => {
                        files.insert(b, m.len());
                    }
                    Err(_) => {
                        info!(epoch, table = %name, bucket = b, "checkpoint not completed: a worker has not saved this bucket yet");
                        return Ok(false);
                    }
                }
            }
            tables.insert(
                name.clone(),
                TableCheckpoint {
                    buckets: *buckets,
                    keys: keys.clone(),
                    files,
                },
            );
        }
        let manifest = CheckpointManifest {
            format: FORMAT,
            pipeline: self.pipeline.clone(),
            epoch,
            workers: self.workers,
            processes: self.processes,
            tables,
            positions,
        };
        let text = serde_json::to_vec_pretty(&manifest).expect("serializable");
        write_atomic(&dir.join(MANIFEST), &text)?;
        let bytes: u64 = manifest
            .tables
            .values()
            .flat_map(|t| t.files.values())
            .sum();
        info!(epoch, bytes, "checkpoint complete");
        self.prune(epoch)?;
        Ok(true)
    }

    fn prune(&self, newest: u64) -> Result<(), TidewaterError> {
        let mut complete = Vec::new();
        for (e, dir) in list(&self.lakehouse)? {
            if dir.join(MANIFEST).exists() {
                complete.push((e, dir));
            } else if e < newest {
                remove_dir(&dir)?;
            }
        }
        complete.sort();
        let n = complete.len();
        for (_, dir) in complete.into_iter().take(n.saturating_sub(KEEP)) {
            remove_dir(&dir)?;
        }
        Ok(())
    }
}

/// Puts the file `from` at `to` (a hard link, else a copy), atomically.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), TidewaterError> {
    let tmp = temp_beside(to)?;
    if fs::hard_link(from, &tmp).is_err() {
        fs::copy(from, &tmp).map_err(|e| io_err(from, e))?;
    }
    fs::rename(&tmp, to).map_err(|e| io_err(to, e))
}

fn remove_dir(dir: &Path) -> Result<(), TidewaterError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir, e)),
    }
}

/// The checkpoint directories of a lakehouse: (epoch, dir), in epoch order.
fn list(lakehouse: &Path) -> Result<Vec<(u64, PathBuf)>, TidewaterError> {
    let root = root(lakehouse);
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&root, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(&root, e))?;
        let name = entry.file_name();
        if let Some(e) = name.to_str().and_then(|n| n.parse::<u64>().ok()) {
            out.push((e, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes incomplete checkpoints (no manifest: a crash while writing, or a worker that did
/// not save before the input ended) and the final states of the last run. Run before any
/// worker starts, so that a checkpoint directory only ever holds files of one run. Returns how
/// many checkpoints were deleted.
pub fn remove_incomplete(lakehouse: &Path) -> Result<usize, TidewaterError> {
    remove_dir(&final_dir(lakehouse))?;
    let mut n = 0;
    for (_, dir) in list(lakehouse)? {
        if !dir.join(MANIFEST).exists() {
            remove_dir(&dir)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Per source: the recorded positions of its last epoch `≤ epoch` in the recorded cut.
pub fn positions_at(
    recorded: &BTreeMap<u64, BTreeMap<String, Value>>,
    epoch: u64,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for sources in recorded.range(..=epoch).map(|(_, s)| s) {
        for (name, pos) in sources {
            out.insert(name.clone(), pos.clone());
        }
    }
    out
}

/// Why a complete checkpoint cannot be used for this restart, if it cannot.
fn check(
    dir: &Path,
    pipeline: &str,
    plans: &[&TablePlan],
    resume: &ResumeInfo,
) -> Result<CheckpointManifest, String> {
    let path = dir.join(MANIFEST);
    let text = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let m: CheckpointManifest =
        serde_json::from_slice(&text).map_err(|e| format!("unreadable manifest: {e}"))?;
    if m.format != FORMAT {
        return Err(format!("format version {} (expected {FORMAT})", m.format));
    }
    if m.pipeline != pipeline {
        return Err(format!("written by pipeline `{}`", m.pipeline));
    }
    match resume.max_epoch {
        Some(max) if m.epoch <= max => {}
        _ => {
            return Err(format!(
                "its epoch {} is not committed in the Delta logs (last committed: {:?})",
                m.epoch, resume.max_epoch
            ))
        }
    }
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    let held: Vec<&str> = m.tables.keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort();
    if sorted != held {
        return Err(format!(
            "it holds tables {held:?}, the pipeline has {sorted:?}"
        ));
    }
    for p in plans {
        let t = &m.tables[&p.name];
        if t.buckets != p.buckets || t.keys != p.state_signature() {
            return Err(format!(
                "table `{}` was checkpointed with {} buckets and keys {:?}, the pipeline now has {} buckets and keys {:?}",
                p.name, t.buckets, t.keys, p.buckets, p.state_signature()
            ));
        }
        if t.files.len() != t.buckets as usize {
            return Err(format!(
                "table `{}`: {} of {} bucket files",
                p.name,
                t.files.len(),
                t.buckets
            ));
        }
    }
    let recorded = positions_at(&resume.recorded, m.epoch);
    if recorded != m.positions {
        return Err(format!(
            "its source positions differ from the Delta logs' recorded cut at epoch {} (checkpoint: {}, logs: {})",
            m.epoch,
            serde_json::to_string(&m.positions).unwrap_or_default(),
            serde_json::to_string(&recorded).unwrap_or_default()
        ));
    }
    for (table, t) in &m.tables {
        for (b, size) in &t.files {
            let path = bucket_path(dir, table, *b);
            let bytes =
                fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if bytes.len() as u64 != *size {
                return Err(format!(
                    "{} has {} bytes, the manifest says {size}",
                    path.display(),
                    bytes.len()
                ));
            }
            verify(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(m)
}

/// Chooses the checkpoint to restart from: the newest complete one that is usable (see the
/// module docs); unusable ones are named in a warning, and deleted when `cleanup` (process 0)
/// so that they are written again. `None`: replay every recorded epoch.
pub fn find(
    lakehouse: &Path,
    pipeline: &str,
    plans: &[&TablePlan],
    resume: &ResumeInfo,
    cleanup: bool,
) -> Result<Option<Restore>, TidewaterError> {
    let mut found = None;
    for (epoch, dir) in list(lakehouse)?.into_iter().rev() {
        if !dir.join(MANIFEST).exists() {
            continue;
        }
        match check(&dir, pipeline, plans, resume) {
            Ok(manifest) => {
                found = Some(Restore { dir, manifest });
                break;
            }
            Err(reason) => {
                warn!(epoch, dir = %dir.display(), "checkpoint not used: {reason}");
                if cleanup {
                    remove_dir(&dir)?;
                }
            }
        }
    }
    Ok(found)
}

/// Reads the bucket states one worker owns now (`bucket % peers == index`) of one table from
/// a checkpoint (whatever number of workers wrote it), checking every key's bucket.
fn load_buckets(
    restore: &Restore,
    plan: &TablePlan,
    peers: usize,
    index: usize,
) -> Result<Vec<BucketState>, TidewaterError> {
    let mut out = Vec::new();
    for b in (0..plan.buckets).filter(|b| *b as usize % peers == index) {
        let path = bucket_path(&restore.dir, &plan.name, b);
        let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
        let bad = |m: String| {
            TidewaterError::Runtime(format!(
                "checkpoint file {} cannot be loaded: {m}",
                path.display()
            ))
        };
        let payload = verify(&bytes).map_err(bad)?;
        let s: BucketState = bincode::deserialize(payload).map_err(|e| bad(e.to_string()))?;
        let keys = s
            .keys
            .iter()
            .map(|(k, _)| k)
            .chain(s.merged.iter().map(|(k, _)| k))
            .chain(s.history.iter().map(|(k, _)| k));
        for k in keys {
            if plan.bucket(k) != b {
                return Err(bad(format!("it holds a key of bucket {}", plan.bucket(k))));
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// Loads the SCD type 1 state one worker owns now of one table from a checkpoint.
pub fn load_worker_state(
    restore: &Restore,
    plan: &TablePlan,
    peers: usize,
    index: usize,
) -> Result<ApplyState<Key, Seq, PackedRow>, TidewaterError> {
    let mut state: ApplyState<Key, Seq, PackedRow> = ApplyState::default();
    let mut tombstones: Vec<(u64, Key)> = Vec::new();
    for s in load_buckets(restore, plan, peers, index)? {
        state.keys.reserve(s.keys.len());
        state.keys.extend(s.keys);
        state.merged.extend(s.merged);
        tombstones.extend(s.tombstones);
        if s.truncated > state.truncated {
            state.truncated = s.truncated;
        }
    }
    // Tombstones of several buckets, back in creation order (stable: equal epochs keep their
    // bucket order, which expiry does not depend on).
    tombstones.sort_by_key(|(at, _)| *at);
    state.tombstones = VecDeque::from(tombstones);
    Ok(state)
}

/// Loads the SCD type 2 state one worker owns now of one table from a checkpoint.
pub fn load_worker_history(
    restore: &Restore,
    plan: &TablePlan,
    peers: usize,
    index: usize,
) -> Result<HistoryState<Key, Seq, PackedRow>, TidewaterError> {
    let mut state: HistoryState<Key, Seq, PackedRow> = HistoryState::default();
    for s in load_buckets(restore, plan, peers, index)? {
        state.keys.extend(s.history);
    }
    Ok(state)
}
