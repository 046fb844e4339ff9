//! [`Spool`]: opening the spool directory, appending records (rotation, the total size cap),
//! and keeping the delivery cursor on an existing record.
use std::{
    collections::VecDeque,
    fs::{self, File},
    io::Write,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use serde_json::Value;

use super::cursor::{self, Cursor};
use super::segments::{
    create_segment, io_err, open_append, scan_segment, seg_path, sync_dir, Segment, SpoolError, SpoolLimits,
};

#[derive(Debug)]
pub struct Spool {
    pub(super) dir: PathBuf,
    limits: SpoolLimits,
    /// Oldest first; never empty, the last one is open for appending.
    pub(super) segments: VecDeque<Segment>,
    file: File,
    pub(super) cursor: Cursor,
    dropped: u64,
    pub(super) quarantined: u64,
    /// Corrupt lines before this position were quarantined already (a batch read again after a
    /// failed upload does not copy them twice).
    pub(super) quarantine_mark: Option<Cursor>,
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
        spool.cursor = cursor::load(&spool.dir, &spool.segments)?;
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
    pub(super) fn normalize_cursor(&mut self) {
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
    pub(super) fn remove_delivered(&mut self) -> Result<(), SpoolError> {
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
