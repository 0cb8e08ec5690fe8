//! [`RowSpill`]: the rows of an SCD type 1 table's open epochs, on disk instead of in memory.
//!
//! Between the parse and the table sink, an epoch's upserted rows would otherwise wait in
//! memory until the epoch closes: APPLY CHANGES keeps the winning row of every key the epoch
//! changed, and at a high rate an epoch changes most of the table. With the spill, the worker
//! that owns a key (the one APPLY CHANGES routes it to) appends each upserted row's packed
//! bytes to a file of the epoch as it arrives and passes on only a [`RowRef`] (16 bytes), which
//! APPLY CHANGES keeps and emits instead of the row. The table sink on the same worker reads a
//! bucket's winning rows back when it rewrites the bucket, so memory holds one bucket's rows
//! at a time, and deletes an epoch's file when the epoch is written.
//!
//! The files are unnamed temporary files (in the system's temporary directory unless
//! `spill_dir` says otherwise): the operating system removes them when the process ends,
//! also after a crash. Nothing in them is needed for recovery: a restart replays the epochs
//! from the sources.
//!
//! Writing every upsert costs one copy of its bytes into the page cache; the files of an
//! epoch are deleted soon after, usually before the kernel writes them to the disk.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::num::NonZeroU32;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tidewater_connectors::types::PackedRow;

use crate::key::Key;

/// Bytes buffered per epoch file before they are written.
const BUFFER: usize = 256 << 10;

/// Where one spilled row is: its epoch file's offset and length, and the low 32 bits of the
/// epoch (checked when it is read back). `len` is the length plus one, so that
/// `Option<RowRef>` takes no more room than `RowRef`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRef {
    offset: u64,
    len: NonZeroU32,
    tag: u32,
}

/// The spill of one table on one worker: a file per epoch that has spilled rows.
#[derive(Debug)]
pub struct RowSpill {
    table: String,
    dir: PathBuf,
    epochs: RefCell<BTreeMap<u64, EpochFile>>,
}

#[derive(Debug)]
struct EpochFile {
    file: File,
    /// Bytes appended after `flushed`, not yet written.
    buf: Vec<u8>,
    /// Bytes in the file.
    flushed: u64,
}

impl EpochFile {
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

impl RowSpill {
    /// The spill of `table`, with its files in `dir` (created when the first row comes).
    pub fn new(table: &str, dir: PathBuf) -> RowSpill {
        RowSpill {
            table: table.to_string(),
            dir,
            epochs: RefCell::new(BTreeMap::new()),
        }
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> String {
        format!(
            "table `{}`: {what} the row spill in {}: {e}",
            self.table,
            self.dir.display()
        )
    }

    /// Appends the packed bytes of a row of `epoch`; returns where they are.
    pub fn put(&self, epoch: u64, row: &PackedRow) -> Result<RowRef, String> {
        let bytes = row.as_bytes();
        let len = u32::try_from(bytes.len())
            .ok()
            .and_then(|l| NonZeroU32::new(l.wrapping_add(1)))
            .ok_or_else(|| self.err("a row too large (≥ 4 GiB) for", bytes.len()))?;
        let mut epochs = self.epochs.borrow_mut();
        let f = match epochs.entry(epoch) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                std::fs::create_dir_all(&self.dir).map_err(|e| self.err("creating", e))?;
                let file = tempfile::tempfile_in(&self.dir).map_err(|e| self.err("creating", e))?;
                v.insert(EpochFile {
                    file,
                    buf: Vec::with_capacity(BUFFER),
                    flushed: 0,
                })
            }
        };
        let offset = f.flushed + f.buf.len() as u64;
        f.buf.extend_from_slice(bytes);
        if f.buf.len() >= BUFFER {
            f.flush().map_err(|e| self.err("writing", e))?;
        }
        Ok(RowRef {
            offset,
            len,
            tag: epoch as u32,
        })
    }

    /// The rows of `changes` (all of `epoch`), read back in file order.
    pub fn load(
        &self,
        epoch: u64,
        changes: Vec<(Key, Option<RowRef>)>,
    ) -> Result<Vec<(Key, Option<PackedRow>)>, String> {
        let mut epochs = self.epochs.borrow_mut();
        let mut file = epochs.get_mut(&epoch);
        if let Some(f) = file.as_deref_mut() {
            f.flush().map_err(|e| self.err("writing", e))?;
        }
        let mut order: Vec<usize> = (0..changes.len()).collect();
        order.sort_unstable_by_key(|&i| changes[i].1.map_or(0, |r| r.offset));
        let mut rows: Vec<Option<PackedRow>> = vec![None; changes.len()];
        let mut buf = Vec::new();
        for i in order {
            let Some(r) = changes[i].1 else { continue };
            let f = match file.as_deref_mut() {
                Some(f)
                    if r.tag == epoch as u32
                        && r.offset + u64::from(r.len.get() - 1) <= f.flushed =>
                {
                    f
                }
                _ => {
                    return Err(self.err(
                        &format!("epoch {epoch}: a row reference of another epoch in"),
                        format_args!("{r:?}"),
                    ))
                }
            };
            buf.resize(r.len.get() as usize - 1, 0);
            f.file
                .read_exact_at(&mut buf, r.offset)
                .map_err(|e| self.err("reading", e))?;
            rows[i] = Some(PackedRow::from_encoded(&buf));
        }
        Ok(changes
            .into_iter()
            .zip(rows)
            .map(|((k, _), row)| (k, row))
            .collect())
    }

    /// Deletes the files of epochs up to `epoch` (written, or skipped on a restart).
    pub fn release(&self, epoch: u64) {
        self.epochs.borrow_mut().retain(|e, _| *e > epoch);
    }

    /// Bytes in the files of open epochs.
    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.epochs
            .borrow()
            .values()
            .map(|f| f.flushed + f.buf.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_connectors::types::Datum;

    fn row(i: i64, s: &str) -> PackedRow {
        PackedRow::pack(&[Datum::Int(i), Datum::Str(s.into()), Datum::Null])
    }

    #[test]
    fn rows_come_back_by_epoch_and_release_drops_files() {
        let dir = tempfile::tempdir().unwrap();
        let spill = RowSpill::new("t", dir.path().join("spill"));
        let mut refs = Vec::new();
        // Enough rows to cross the write buffer several times, in two epochs.
        for i in 0..40_000i64 {
            let epoch = (i % 2) as u64 + 7;
            let r = spill
                .put(epoch, &row(i, &"x".repeat(i as usize % 50)))
                .unwrap();
            refs.push((epoch, Key::from_slice(&i.to_le_bytes()), r));
        }
        let empty = PackedRow::pack(&[]);
        let e = spill.put(8, &empty).unwrap();
        for epoch in [7u64, 8] {
            let mut changes: Vec<(Key, Option<RowRef>)> = refs
                .iter()
                .filter(|(e, _, _)| *e == epoch)
                .rev() // not in file order
                .map(|(_, k, r)| (k.clone(), Some(*r)))
                .collect();
            changes.push((Key::from_slice(b"gone"), None));
            if epoch == 8 {
                changes.push((Key::from_slice(b"empty"), Some(e)));
            }
            let rows = spill.load(epoch, changes.clone()).unwrap();
            assert_eq!(rows.len(), changes.len());
            for ((k, r), (k2, row_back)) in changes.iter().zip(&rows) {
                assert_eq!(k.as_slice(), k2.as_slice());
                match r {
                    None => assert!(row_back.is_none()),
                    Some(_) if k.as_slice() == b"empty" => {
                        assert_eq!(row_back.as_ref().unwrap().as_bytes(), b"")
                    }
                    Some(_) => {
                        let i = i64::from_le_bytes(k.as_slice().try_into().unwrap());
                        assert_eq!(
                            row_back.as_ref().unwrap().as_bytes(),
                            row(i, &"x".repeat(i as usize % 50)).as_bytes()
                        );
                    }
                }
            }
        }
        // A reference read back in another epoch is an error, not another row.
        let wrong = spill.load(8, vec![(Key::from_slice(b"k"), Some(refs[0].2))]);
        assert!(
            wrong.unwrap_err().contains("another epoch"),
            "epoch 7's row in 8"
        );
        assert!(spill.bytes() > 0);
        spill.release(7);
        assert!(spill
            .load(7, vec![(Key::from_slice(b"k"), Some(refs[0].2))])
            .is_err());
        assert!(spill.bytes() > 0, "epoch 8 stays");
        spill.release(8);
        assert_eq!(spill.bytes(), 0);
        // The files are unnamed: nothing is left in the directory.
        assert_eq!(
            std::fs::read_dir(dir.path().join("spill")).unwrap().count(),
            0
        );
    }
}
