//! The files source: a single file, or a directory whose files are read exactly once each, in
//! name order, including files that appear while running.
//!
//! The input is cut into *blocks*: byte ranges that start and end at line boundaries. Blocks
//! are cut by one reader (it reads only a small window at each block end, or the whole block
//! when records must be counted) and parsed by any worker, which reads the bytes itself with
//! positioned reads. A block is identified by `(path, start, end)`, which is also what an
//! epoch records as its input position, so an epoch can be replayed exactly.
//!
//! Conventions for directories: files must appear complete (write elsewhere, then rename in);
//! names starting with `.` or `_` and names ending in `.tmp` are ignored.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ConnectorError;

/// A byte range of one input file, starting and ending at line boundaries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBlock {
    /// The file.
    pub path: String,
    /// First byte.
    pub start: u64,
    /// One past the last byte (just after a newline, or the end of the file).
    pub end: u64,
}

impl FileBlock {
    /// Reads the block's bytes into `buf` (replacing its contents).
    pub fn read_into(&self, buf: &mut Vec<u8>) -> Result<(), ConnectorError> {
        let mut file = File::open(&self.path).map_err(|e| ConnectorError::io(&self.path, e))?;
        let len = self.end - self.start;
        buf.clear();
        if buf.capacity() < len as usize {
            // A fresh buffer: growing the old one would copy its (stale) bytes over.
            *buf = Vec::with_capacity(len as usize);
        }
        // `read_to_end` reads into the spare capacity without zeroing it first.
        file.seek(SeekFrom::Start(self.start))
            .and_then(|_| (&mut file).take(len).read_to_end(buf))
            .map_err(|e| ConnectorError::io(&self.path, e))?;
        if buf.len() as u64 != len {
            return Err(ConnectorError::io(
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "expected bytes {}..{}, the file ends at {}",
                        self.start,
                        self.end,
                        self.start + buf.len() as u64
                    ),
                ),
            ));
        }
        Ok(())
    }
}

/// Reads a [`FileBlock`] in pieces of whole lines, about `chunk` bytes each (a line longer
/// than that makes a longer piece; the last piece may end without a newline, at the end of
/// the file), into one buffer that stays about `chunk` plus a line long whatever the size of
/// the block.
pub struct BlockReader {
    file: File,
    path: String,
    /// The file offset of the buffer's first byte.
    base: u64,
    /// The next file offset to read.
    at: u64,
    end: u64,
    /// Bytes at the start of the buffer already handed out (dropped by the next call).
    handed: usize,
}

impl BlockReader {
    /// Opens the block's file at its start.
    pub fn open(block: &FileBlock) -> Result<Self, ConnectorError> {
        let io = |e| ConnectorError::io(&block.path, e);
        let mut file = File::open(&block.path).map_err(io)?;
        file.seek(SeekFrom::Start(block.start)).map_err(io)?;
        Ok(BlockReader {
            file,
            path: block.path.clone(),
            base: block.start,
            at: block.start,
            end: block.end,
            handed: 0,
        })
    }

    /// The next piece: `Some((file offset of the piece, its length))`, the piece being
    /// `buf[..length]` (`buf` is the reader's buffer, the same at every call; its contents
    /// belong to the reader); `None` when the block is done.
    pub fn next_piece(
        &mut self,
        buf: &mut Vec<u8>,
        chunk: usize,
    ) -> Result<Option<(u64, usize)>, ConnectorError> {
        if self.handed > 0 {
            buf.drain(..self.handed);
            self.base += self.handed as u64;
            self.handed = 0;
        } else if self.at == self.base {
            buf.clear();
        }
        loop {
            if self.at == self.end {
                if buf.is_empty() {
                    return Ok(None);
                }
                self.handed = buf.len();
                return Ok(Some((self.base, buf.len())));
            }
            let want = chunk.max(1).min((self.end - self.at) as usize);
            let old = buf.len();
            if buf.capacity() - old < want {
                buf.reserve(want);
            }
            // `read_to_end` reads into the spare capacity without zeroing it first.
            let got = (&mut self.file)
                .take(want as u64)
                .read_to_end(buf)
                .map_err(|e| ConnectorError::io(&self.path, e))?;
            if got != want {
                return Err(ConnectorError::io(
                    &self.path,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "expected bytes up to {}, the file ends at {}",
                            self.end,
                            self.at + got as u64
                        ),
                    ),
                ));
            }
            self.at += want as u64;
            if self.at == self.end {
                continue;
            }
            // Hand out the whole lines; the partial last one waits for the next read.
            if let Some(p) = memchr::memrchr(b'\n', &buf[old..]) {
                self.handed = old + p + 1;
                return Ok(Some((self.base, self.handed)));
            }
        }
    }
}

fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_') || name.ends_with(".tmp")
}

/// Lists the input files under `path` (itself if it is a file), sorted by name.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>, ConnectorError> {
    let meta = std::fs::metadata(path).map_err(|e| ConnectorError::io(path.display(), e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| ConnectorError::io(path.display(), e))? {
        let entry = entry.map_err(|e| ConnectorError::io(path.display(), e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if is_ignored(&name) {
            continue;
        }
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Where the reader stands in one file.
struct Current {
    path: PathBuf,
    file: File,
    len: u64,
    offset: u64,
}

/// Cuts a file or directory into blocks, in order. Not thread-safe; used by one reader.
pub struct FileCutter {
    root: PathBuf,
    is_dir: bool,
    /// Files already fully read (or skipped as already consumed by an earlier run).
    done: BTreeSet<PathBuf>,
    current: Option<Current>,
    scratch: Vec<u8>,
}

impl FileCutter {
    /// A cutter over `path` (a file or a directory). Fails if the path does not exist.
    pub fn new(path: &Path) -> Result<Self, ConnectorError> {
        let meta = std::fs::metadata(path).map_err(|e| ConnectorError::io(path.display(), e))?;
        Ok(FileCutter {
            root: path.to_path_buf(),
            is_dir: meta.is_dir(),
            done: BTreeSet::new(),
            current: None,
            scratch: Vec::new(),
        })
    }

    /// Whether the source is a directory (unbounded: new files may appear).
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }

    /// Resumes a restarted source: the files in `done` were read completely by earlier epochs
    /// (they are not read again, even if they grew), and `path` was read up to byte `offset`
    /// (reading continues there; later files in name order follow as usual).
    pub fn resume_after(
        &mut self,
        done: impl IntoIterator<Item = PathBuf>,
        path: &Path,
        offset: u64,
    ) -> Result<(), ConnectorError> {
        self.done.extend(done);
        self.done.remove(path);
        let file = File::open(path).map_err(|e| ConnectorError::io(path.display(), e))?;
        let len = file
            .metadata()
            .map_err(|e| ConnectorError::io(path.display(), e))?
            .len();
        self.current = Some(Current {
            path: path.to_path_buf(),
            file,
            len,
            offset,
        });
        Ok(())
    }

    /// Opens the next unread file in name order, if any.
    fn open_next(&mut self) -> Result<bool, ConnectorError> {
        let next = list_files(&self.root)?
            .into_iter()
            .find(|f| !self.done.contains(f));
        let Some(path) = next else { return Ok(false) };
        let file = File::open(&path).map_err(|e| ConnectorError::io(path.display(), e))?;
        let len = file
            .metadata()
            .map_err(|e| ConnectorError::io(path.display(), e))?
            .len();
        self.current = Some(Current {
            path,
            file,
            len,
            offset: 0,
        });
        Ok(true)
    }

    /// The next block: at most about `max_bytes` (always at least one whole line), or — when
    /// `max_lines` is given — at most that many lines. Returns the block and, when `max_lines`
    /// was given, the number of lines in it. `None` when no unread input is available now.
    pub fn next_block(
        &mut self,
        max_bytes: u64,
        max_lines: Option<u64>,
    ) -> Result<Option<(FileBlock, Option<u64>)>, ConnectorError> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let cur = self.current.as_mut().expect("opened");
            if cur.offset >= cur.len {
                let done = self.current.take().expect("current");
                self.done.insert(done.path);
                continue;
            }
            let start = cur.offset;
            let (end, lines) = match max_lines {
                None => (
                    find_line_end(
                        &cur.file,
                        cur.len,
                        start + max_bytes.max(1) - 1,
                        &mut self.scratch,
                        &cur.path,
                    )?,
                    None,
                ),
                Some(n) => {
                    let max = (cur.len - start).min(max_bytes.max(1)) as usize;
                    // Read in doubling windows, so that `n` short lines do not cost a read of
                    // `max_bytes` (every byte is read once, as with one window of `max`).
                    let mut count = 0u64;
                    let mut end = None;
                    let mut have = 0;
                    let mut limit = max.min(64 << 10);
                    loop {
                        self.scratch.resize(limit, 0);
                        cur.file
                            .read_exact_at(&mut self.scratch[have..limit], start + have as u64)
                            .map_err(|e| ConnectorError::io(cur.path.display(), e))?;
                        for pos in memchr::memchr_iter(b'\n', &self.scratch[have..limit]) {
                            count += 1;
                            if count == n {
                                end = Some(start + (have + pos) as u64 + 1);
                                break;
                            }
                        }
                        if end.is_some() || limit == max {
                            break;
                        }
                        have = limit;
                        limit = (limit * 2).min(max);
                    }
                    match end {
                        Some(e) => (e, Some(count)),
                        None if start + limit as u64 == cur.len => {
                            // The file ends within the window: the rest is the block (a last
                            // line without a newline counts as a line).
                            let tail = if self.scratch[..limit].last() == Some(&b'\n') {
                                0
                            } else {
                                1
                            };
                            (cur.len, Some(count + tail))
                        }
                        None => {
                            // Fewer than n lines in the window: cut at the last newline.
                            match memchr::memrchr(b'\n', &self.scratch[..limit]) {
                                Some(p) => (start + p as u64 + 1, Some(count)),
                                None => {
                                    let e = find_line_end(
                                        &cur.file,
                                        cur.len,
                                        start,
                                        &mut self.scratch,
                                        &cur.path,
                                    )?;
                                    (e, Some(1))
                                }
                            }
                        }
                    }
                }
            };
            cur.offset = end;
            return Ok(Some((
                FileBlock {
                    path: cur.path.display().to_string(),
                    start,
                    end,
                },
                lines,
            )));
        }
    }

    /// If the line just before the current position and the line at it carry the same
    /// transaction id (as told by `tx_of`), returns the block of following lines that belong
    /// to that transaction (so that a cut placed here would not split it), and advances past
    /// it. `None` when the current position is already a transaction boundary.
    pub fn finish_transaction(
        &mut self,
        tx_of: impl Fn(&[u8]) -> Option<String>,
    ) -> Result<Option<(FileBlock, u64)>, ConnectorError> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(None);
        };
        if cur.offset == 0 || cur.offset >= cur.len {
            return Ok(None);
        }
        let prev = read_line_before(&cur.file, cur.offset, &cur.path)?;
        let Some(tx) = tx_of(&prev) else {
            return Ok(None);
        };
        let start = cur.offset;
        let mut lines = 0u64;
        while cur.offset < cur.len {
            let end = find_line_end(&cur.file, cur.len, cur.offset, &mut self.scratch, &cur.path)?;
            let mut line = vec![0u8; (end - cur.offset) as usize];
            cur.file
                .read_exact_at(&mut line, cur.offset)
                .map_err(|e| ConnectorError::io(cur.path.display(), e))?;
            if tx_of(&line).as_deref() != Some(tx.as_str()) {
                break;
            }
            cur.offset = end;
            lines += 1;
        }
        if lines == 0 {
            return Ok(None);
        }
        Ok(Some((
            FileBlock {
                path: cur.path.display().to_string(),
                start,
                end: cur.offset,
            },
            lines,
        )))
    }

    /// Whether there is nothing left to read now (for a single file: it is fully read).
    pub fn is_exhausted(&mut self) -> Result<bool, ConnectorError> {
        if let Some(cur) = &self.current {
            if cur.offset < cur.len {
                return Ok(false);
            }
        }
        Ok(list_files(&self.root)?
            .into_iter()
            .filter(|f| Some(f) != self.current.as_ref().map(|c| &c.path))
            .all(|f| self.done.contains(&f)))
    }
}

/// The end of the first piece of the line-aligned range `start..end` of file `path` that holds
/// about `max_bytes` (at least one whole line, at most `end`): used to cut a recorded range
/// into blocks when it is replayed.
pub fn piece_end(path: &Path, start: u64, end: u64, max_bytes: u64) -> Result<u64, ConnectorError> {
    let file = File::open(path).map_err(|e| ConnectorError::io(path.display(), e))?;
    let mut scratch = Vec::new();
    find_line_end(&file, end, start + max_bytes.max(1) - 1, &mut scratch, path)
}

/// The end (exclusive) of the line containing byte `from`: just past the next newline at or
/// after `from`, or the end of the file.
fn find_line_end(
    file: &File,
    len: u64,
    from: u64,
    scratch: &mut Vec<u8>,
    path: &Path,
) -> Result<u64, ConnectorError> {
    // Lines are usually short: a small window first, larger ones for long lines.
    let mut window: usize = 4 * 1024;
    let mut pos = from;
    while pos < len {
        let n = ((len - pos) as usize).min(window);
        window = (window * 2).min(64 * 1024);
        scratch.resize(n, 0);
        file.read_exact_at(&mut scratch[..n], pos)
            .map_err(|e| ConnectorError::io(path.display(), e))?;
        if let Some(i) = memchr::memchr(b'\n', &scratch[..n]) {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
    Ok(len)
}

/// The line that ends just before `offset` (which is a line start > 0), without its newline.
fn read_line_before(file: &File, offset: u64, path: &Path) -> Result<Vec<u8>, ConnectorError> {
    const WINDOW: u64 = 64 * 1024;
    let end = offset - 1; // the newline ending the previous line
    let mut start = end;
    let mut buf = Vec::new();
    loop {
        let from = start.saturating_sub(WINDOW);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.read_exact_at(&mut chunk, from)
            .map_err(|e| ConnectorError::io(path.display(), e))?;
        if let Some(i) = memchr::memrchr(b'\n', &chunk) {
            start = from + i as u64 + 1;
            break;
        }
        start = from;
        if from == 0 {
            break;
        }
    }
    buf.resize((end - start) as usize, 0);
    file.read_exact_at(&mut buf, start)
        .map_err(|e| ConnectorError::io(path.display(), e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(cutter: &mut FileCutter, max_bytes: u64, max_lines: Option<u64>) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some((b, _)) = cutter.next_block(max_bytes, max_lines).unwrap() {
            b.read_into(&mut buf).unwrap();
            out.push(String::from_utf8(buf.clone()).unwrap());
        }
        out
    }

    #[test]
    fn blocks_end_at_line_boundaries_and_cover_everything() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.path().join("a.json"), &text).unwrap();
        let mut c = FileCutter::new(&dir.path().join("a.json")).unwrap();
        let blocks = lines_of(&mut c, 50, None);
        assert!(blocks.len() > 5);
        assert!(blocks.iter().all(|b| b.ends_with('\n')));
        assert_eq!(blocks.concat(), text);
        assert!(c.is_exhausted().unwrap());
    }

    #[test]
    fn a_block_is_read_in_pieces_of_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        // Short lines, a line longer than the pieces, and a last line without a newline.
        let long = "x".repeat(300);
        let mut text: String = (0..40).map(|i| format!("line {i}\n")).collect();
        text.push_str(&format!("{long}\n"));
        text.extend((40..60).map(|i| format!("line {i}\n")));
        text.push_str("last");
        let path = dir.path().join("a.json");
        std::fs::write(&path, &text).unwrap();
        let start = "line 0\n".len() as u64;
        for chunk in [1, 7, 64, 100_000] {
            let block = FileBlock {
                path: path.display().to_string(),
                start,
                end: text.len() as u64,
            };
            let mut reader = BlockReader::open(&block).unwrap();
            let mut buf = vec![b'?'; 3]; // left over from an earlier block
            let mut got = String::new();
            let mut next_offset = start;
            while let Some((offset, len)) = reader.next_piece(&mut buf, chunk).unwrap() {
                assert_eq!(offset, next_offset, "chunk {chunk}");
                let piece = std::str::from_utf8(&buf[..len]).unwrap();
                assert!(piece.ends_with('\n') || offset + len as u64 == block.end);
                assert!(
                    len <= chunk.max(long.len() + 1) + chunk,
                    "chunk {chunk}: {len}"
                );
                got.push_str(piece);
                next_offset = offset + len as u64;
            }
            assert_eq!(got, text[start as usize..], "chunk {chunk}");
            assert!(reader.next_piece(&mut buf, chunk).unwrap().is_none());
        }
    }

    #[test]
    fn counted_blocks_hold_exactly_n_lines() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..10).map(|i| format!("{i}\n")).collect::<String>() + "last";
        std::fs::write(dir.path().join("a.json"), &text).unwrap();
        let mut c = FileCutter::new(&dir.path().join("a.json")).unwrap();
        let mut counts = Vec::new();
        while let Some((_, n)) = c.next_block(1 << 20, Some(4)).unwrap() {
            counts.push(n.unwrap());
        }
        assert_eq!(counts, vec![4, 4, 3]);
    }

    #[test]
    fn directory_files_in_name_order_and_new_files_picked_up_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.json"), "b1\n").unwrap();
        std::fs::write(dir.path().join("a.json"), "a1\na2\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "x\n").unwrap();
        let mut c = FileCutter::new(dir.path()).unwrap();
        assert_eq!(lines_of(&mut c, 1 << 20, None), vec!["a1\na2\n", "b1\n"]);
        assert!(c.is_exhausted().unwrap());
        std::fs::write(dir.path().join("c.json"), "c1\n").unwrap();
        assert!(!c.is_exhausted().unwrap());
        assert_eq!(lines_of(&mut c, 1 << 20, None), vec!["c1\n"]);
        assert_eq!(lines_of(&mut c, 1 << 20, None), Vec::<String>::new());
    }

    #[test]
    fn a_cut_is_moved_to_the_end_of_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "t1 a\nt2 a\nt2 b\nt2 c\nt3 a\n").unwrap();
        let mut c = FileCutter::new(&dir.path().join("a")).unwrap();
        let tx = |l: &[u8]| Some(String::from_utf8_lossy(&l[..2]).to_string());
        let (b, _) = c.next_block(1 << 20, Some(2)).unwrap().unwrap();
        assert_eq!(b.end, 10);
        let (tail, n) = c.finish_transaction(tx).unwrap().unwrap();
        assert_eq!((tail.start, tail.end, n), (10, 20, 2));
        assert!(c.finish_transaction(tx).unwrap().is_none());
        let (b, _) = c.next_block(1 << 20, Some(2)).unwrap().unwrap();
        assert_eq!((b.start, b.end), (20, 25));
    }

    #[test]
    fn resume_after_skips_done_files_and_continues_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), "a1\na2\n").unwrap();
        std::fs::write(dir.path().join("b.json"), "b1\nb2\n").unwrap();
        std::fs::write(dir.path().join("0.json"), "new\n").unwrap();
        let mut c = FileCutter::new(dir.path()).unwrap();
        c.resume_after([dir.path().join("a.json")], &dir.path().join("b.json"), 3)
            .unwrap();
        // The rest of b, then the file that appeared (never read), a is not read again.
        assert_eq!(lines_of(&mut c, 1 << 20, None), vec!["b2\n", "new\n"]);
        assert!(c.is_exhausted().unwrap());
        let a = dir.path().join("a.json");
        assert_eq!(piece_end(&a, 0, 6, 2).unwrap(), 3);
        assert_eq!(piece_end(&a, 3, 6, 100).unwrap(), 6);
    }
}
