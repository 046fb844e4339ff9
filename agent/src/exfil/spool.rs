//! Durable local event spool: events survive control-plane outages and agent crashes.
//!
//! A directory (created 0700) of `spool-00000001.jsonl`, `spool-00000002.jsonl`, …: one JSON record
//! per line, fsynced before `append` returns. Files rotate at `max_file_bytes`; past
//! `max_total_bytes` the oldest whole files are deleted and their undelivered records counted as
//! dropped. Delivery is at-least-once: an uploader reads a [`Batch`] ([`Spool::read_batch`]),
//! sends it, then acknowledges it ([`Spool::ack_batch`]); records carry a string `"id"` for the
//! receiver to deduplicate a resend after a crash.
//!
//! Reading never re-parses what was delivered: the cursor (`dir/cursor`: file, line and byte
//! offset, replaced atomically) says where the next undelivered record starts, and a batch is read
//! from there, at most `limit` records. A line that is not a JSON object with a string `"id"` is
//! quarantined: copied to `dir/quarantine.jsonl`, counted, logged, and passed over, so delivery
//! continues. A corrupt or impossible cursor is moved aside and rebuilt (delivery restarts at the
//! oldest file still there; the receiver drops the repeats): never fatal.
use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use serde_json::Value;

mod cursor;
mod reader;
#[cfg(test)]
mod tests;

pub use cursor::Cursor;
pub use reader::{Batch, QUARANTINE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// A file is rotated before a record would take it past this size (default 8 MiB).
    pub max_file_bytes: u64,
    /// Oldest files are deleted before a record would take the spool past this (default 256 MiB).
    pub max_total_bytes: u64,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        SpoolLimits { max_file_bytes: 8 << 20, max_total_bytes: 256 << 20 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("event spool: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("event spool {path}: record has no string \"id\" field")]
    NoId { path: PathBuf },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io { what, path: path.to_path_buf(), source }
}

/// One spool file; its records are its '\n'-terminated lines.
#[derive(Debug, Clone, Copy)]
struct Segment {
    seq: u64,
    bytes: u64,
    lines: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    /// Oldest first; never empty, the last one is open for appending.
    segments: VecDeque<Segment>,
    file: File,
    cursor: Cursor,
    dropped: u64,
    quarantined: u64,
    /// Corrupt lines before this position were quarantined already (a batch read again after a
    /// failed upload does not copy them twice).
    quarantine_mark: Option<Cursor>,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, dropping a torn last line left by a crash and
    /// rebuilding a corrupt cursor.
    pub fn open(dir: &Path, limits: SpoolLimits) -> Result<Spool, SpoolError> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err("create", dir))?;
        let mut seqs = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
            let name = entry.map_err(io_err("read directory", dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name.strip_prefix("spool-").and_then(|n| n.strip_suffix(".jsonl")) {
                seqs.extend(seq.parse::<u64>().ok());
            }
        }
        seqs.sort_unstable();
        let mut segments = VecDeque::new();
        for seq in seqs {
            segments.push_back(scan_segment(dir, seq)?);
        }
        let next = segments.back().map_or(1, |s| s.seq + 1);
        let continue_last = segments.back().is_some_and(|s| s.bytes < limits.max_file_bytes);
        let file = if continue_last { open_append(dir, next - 1)? } else { create_segment(dir, next)? };
        if !continue_last {
            segments.push_back(Segment { seq: next, bytes: 0, lines: 0 });
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            limits,
            segments,
            file,
            cursor: Cursor::default(),
            dropped: 0,
            quarantined: 0,
            quarantine_mark: None,
        };
        spool.cursor = cursor::load(&spool)?;
        spool.normalize_cursor();
        spool.remove_delivered()?;
        Ok(spool)
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records dropped (undelivered) by the total size cap since `open`.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Corrupt lines moved to `quarantine.jsonl` since `open`.
    pub fn quarantined(&self) -> u64 {
        self.quarantined
    }

    /// Appends one record (an object with a string `"id"`) and fsyncs it.
    pub fn append(&mut self, record: &Value) -> Result<(), SpoolError> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Appends records in order with one fsync for all of them (a batch of events).
    pub fn append_all(&mut self, records: &[Value]) -> Result<(), SpoolError> {
        if records.iter().any(|r| !r.get("id").is_some_and(Value::is_string)) {
            return Err(SpoolError::NoId { path: self.dir.clone() });
        }
        for record in records {
            self.write_one(record)?;
        }
        let path = seg_path(&self.dir, self.segments.back().expect("current file").seq);
        self.file.sync_data().map_err(io_err("fsync", &path))
    }

    /// Writes one line (rotating first if needed: the full file is fsynced before the next).
    fn write_one(&mut self, record: &Value) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(record).expect("a JSON value serializes");
        line.push(b'\n');
        let len = line.len() as u64;
        let cur = *self.segments.back().expect("spool has a current file");
        if cur.bytes > 0 && cur.bytes + len > self.limits.max_file_bytes {
            let path = seg_path(&self.dir, cur.seq);
            self.file.sync_data().map_err(io_err("fsync", &path))?;
            self.file = create_segment(&self.dir, cur.seq + 1)?;
            self.segments.push_back(Segment { seq: cur.seq + 1, bytes: 0, lines: 0 });
            self.normalize_cursor();
            self.remove_delivered()?;
        }
        let mut total: u64 = self.segments.iter().map(|s| s.bytes).sum();
        while total + len > self.limits.max_total_bytes && self.segments.len() > 1 {
            let old = self.segments.pop_front().expect("more than one segment");
            let path = seg_path(&self.dir, old.seq);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            let delivered = if old.seq == self.cursor.seq { self.cursor.line } else { 0 };
            let lost = if old.seq < self.cursor.seq { 0 } else { old.lines.saturating_sub(delivered) };
            self.dropped += lost;
            total -= old.bytes;
            self.normalize_cursor();
            tracing::warn!(path = %path.display(), records = lost, total_dropped = self.dropped,
                "event spool over its size limit: dropped the oldest file");
        }
        let path = seg_path(&self.dir, self.segments.back().expect("current file").seq);
        if let Err(e) = self.file.write_all(&line) {
            // Never leave a partial line for the next record to be glued to.
            let _ = self.file.set_len(self.segments.back().expect("current file").bytes);
            return Err(io_err("write", &path)(e));
        }
        let cur = self.segments.back_mut().expect("current file");
        cur.bytes += len;
        cur.lines += 1;
        Ok(())
    }

    /// Number of undelivered records (corrupt ones included until they are passed over).
    pub fn pending_count(&self) -> u64 {
        self.segments.iter().filter(|s| s.seq >= self.cursor.seq).map(|s| s.lines).sum::<u64>()
            - self.cursor.line
    }

    /// Moves a cursor at the end of a finished file (or in a deleted one) to the next file's start.
    fn normalize_cursor(&mut self) {
        let c = self.cursor;
        let last = *self.segments.back().expect("spool has a current file");
        self.cursor =
            match self.segments.iter().find(|s| s.seq > c.seq || (s.seq == c.seq && c.line < s.lines)) {
                Some(s) if s.seq == c.seq => c,
                Some(s) => Cursor { seq: s.seq, line: 0, offset: 0 },
                None => Cursor { seq: last.seq, line: last.lines, offset: last.bytes },
            };
    }

    /// Deletes files wholly before the cursor.
    fn remove_delivered(&mut self) -> Result<(), SpoolError> {
        let mut removed = false;
        while self.segments.front().is_some_and(|s| s.seq < self.cursor.seq) {
            let path = seg_path(&self.dir, self.segments.pop_front().expect("checked").seq);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Reads one file's size and line count (streaming), truncating a torn last line.
fn scan_segment(dir: &Path, seq: u64) -> Result<Segment, SpoolError> {
    use io::BufRead;
    let path = seg_path(dir, seq);
    let file = File::open(&path).map_err(io_err("read", &path))?;
    let mut reader = io::BufReader::with_capacity(64 << 10, file);
    let (mut complete, mut lines, mut total) = (0u64, 0u64, 0u64);
    loop {
        let buf = reader.fill_buf().map_err(io_err("read", &path))?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        for (i, b) in buf.iter().enumerate() {
            if *b == b'\n' {
                lines += 1;
                complete = total + i as u64 + 1;
            }
        }
        total += n as u64;
        reader.consume(n);
    }
    if complete < total {
        tracing::warn!(path = %path.display(), bytes = total - complete, "event spool: dropping a torn last line");
        let f = OpenOptions::new().write(true).open(&path).map_err(io_err("open", &path))?;
        f.set_len(complete).and_then(|()| f.sync_all()).map_err(io_err("truncate", &path))?;
    }
    Ok(Segment { seq, bytes: complete, lines })
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("spool-{seq:08}.jsonl"))
}

fn open_append(dir: &Path, seq: u64) -> Result<File, SpoolError> {
    let path = seg_path(dir, seq);
    OpenOptions::new().append(true).open(&path).map_err(io_err("open", &path))
}

/// Creates file `seq` (0600) and makes its directory entry durable.
fn create_segment(dir: &Path, seq: u64) -> Result<File, SpoolError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = seg_path(dir, seq);
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("create", &path))?;
    sync_dir(dir)?;
    Ok(f)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("sync directory", dir))
}
