//! Durable local alert spool: alerts survive control-plane outages and agent crashes.
//!
//! A directory (created 0700) of `spool-00000001.jsonl`, `spool-00000002.jsonl`, …: one JSON record
//! per line, fsynced before `append` returns. Files rotate at `max_file_bytes`; past
//! `max_total_bytes` the oldest whole files are deleted and their undelivered records counted as
//! dropped. Delivery is at-least-once: an uploader reads `pending`, sends, then acknowledges; the
//! cursor (`dir/cursor`: file sequence + line) is replaced atomically and files wholly before it
//! are deleted. A crash between sending and acknowledging resends, so records carry a string `"id"`
//! for the receiver to deduplicate. A missing cursor file, or one naming a deleted file, means
//! "from the start of the next existing file".
use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use serde_json::Value;

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
    #[error("alert spool: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("alert spool: {path} line {line}: {message}")]
    Corrupt { path: PathBuf, line: u64, message: String },
    #[error("alert spool {path}: record has no string \"id\" field")]
    NoId { path: PathBuf },
    #[error("alert spool {path}: cannot acknowledge {requested} records, {pending} pending")]
    AckBeyondPending { path: PathBuf, requested: usize, pending: usize },
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

/// The next undelivered record: line `line` (0-based) of file `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Cursor {
    seq: u64,
    line: u64,
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
}

impl Spool {
    /// Opens (creating) the spool in `dir`, dropping a torn last line left by a crash.
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
            let path = seg_path(dir, seq);
            let data = fs::read(&path).map_err(io_err("read", &path))?;
            let keep = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if keep < data.len() {
                let bytes = data.len() - keep;
                tracing::warn!(path = %path.display(), bytes, "alert spool: dropping a torn last line");
                let f = OpenOptions::new().write(true).open(&path).map_err(io_err("open", &path))?;
                f.set_len(keep as u64).and_then(|()| f.sync_all()).map_err(io_err("truncate", &path))?;
            }
            let lines = data[..keep].iter().filter(|b| **b == b'\n').count() as u64;
            segments.push_back(Segment { seq, bytes: keep as u64, lines });
        }
        let cursor_path = dir.join("cursor");
        let cursor = match fs::read(&cursor_path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| SpoolError::Corrupt {
                path: cursor_path.clone(),
                line: 1,
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Cursor { seq: 0, line: 0 },
            Err(e) => return Err(io_err("read", &cursor_path)(e)),
        };
        let next = segments.back().map_or(1, |s| s.seq + 1);
        let continue_last = segments.back().is_some_and(|s| s.bytes < limits.max_file_bytes);
        let file = if continue_last { open_append(dir, next - 1)? } else { create_segment(dir, next)? };
        if !continue_last {
            segments.push_back(Segment { seq: next, bytes: 0, lines: 0 });
        }
        let mut spool = Spool { dir: dir.to_path_buf(), limits, segments, file, cursor, dropped: 0 };
        spool.normalize_cursor();
        spool.remove_delivered()?;
        Ok(spool)
    }

    /// Records dropped (undelivered) by the total size cap since `open`.
    pub fn dropped(&self) -> u64 {
        self.dropped
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
            let lost = old.lines.saturating_sub(delivered);
            self.dropped += lost;
            total -= old.bytes;
            self.normalize_cursor();
            tracing::warn!(path = %path.display(), records = lost, total_dropped = self.dropped,
                "alert spool over its size limit: dropped the oldest file");
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

    /// Every record still on disk (including delivered ones not yet deleted), oldest first.
    pub fn records(&self) -> Result<Vec<Value>, SpoolError> {
        let start = Cursor { seq: self.segments.front().map_or(0, |s| s.seq), line: 0 };
        self.read_from(start, usize::MAX)
    }

    /// Up to `limit` undelivered records, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<Value>, SpoolError> {
        self.read_from(self.cursor, limit)
    }

    /// Number of undelivered records.
    pub fn pending_count(&self) -> u64 {
        self.segments.iter().filter(|s| s.seq >= self.cursor.seq).map(|s| s.lines).sum::<u64>()
            - self.cursor.line
    }

    /// Marks the first `n` pending records delivered. Only valid if no `append` ran since they
    /// were read by `pending` (one may have dropped some of them); else use `acknowledge_through`.
    pub fn ack(&mut self, n: usize) -> Result<(), SpoolError> {
        let pending = self.pending_count();
        if n == 0 {
            return Ok(());
        }
        if n as u64 > pending {
            return Err(SpoolError::AckBeyondPending {
                path: self.dir.clone(),
                requested: n,
                pending: pending as usize,
            });
        }
        let mut left = n as u64;
        let mut cursor = self.cursor;
        for seg in self.segments.iter().filter(|s| s.seq >= self.cursor.seq) {
            let start = if seg.seq == cursor.seq { cursor.line } else { 0 };
            let take = left.min(seg.lines - start);
            cursor = Cursor { seq: seg.seq, line: start + take };
            left -= take;
            if left == 0 {
                break;
            }
        }
        self.cursor = cursor;
        self.normalize_cursor();
        self.persist_cursor()?;
        self.remove_delivered()
    }

    /// Marks every pending record up to and including the first one with `"id": id` delivered;
    /// returns how many that was (0 if no pending record has that id, e.g. it was dropped).
    pub fn acknowledge_through(&mut self, id: &str) -> Result<usize, SpoolError> {
        let pending = self.read_from(self.cursor, usize::MAX)?;
        match pending.iter().position(|r| r.get("id").and_then(Value::as_str) == Some(id)) {
            Some(i) => self.ack(i + 1).map(|()| i + 1),
            None => Ok(0),
        }
    }

    /// Moves a cursor at the end of a finished file (or in a deleted one) to the next file's start.
    fn normalize_cursor(&mut self) {
        let c = self.cursor;
        let last = *self.segments.back().expect("spool has a current file");
        self.cursor =
            match self.segments.iter().find(|s| s.seq > c.seq || (s.seq == c.seq && c.line < s.lines)) {
                Some(s) if s.seq == c.seq => c,
                Some(s) => Cursor { seq: s.seq, line: 0 },
                None => Cursor { seq: last.seq, line: last.lines },
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

    fn persist_cursor(&self) -> Result<(), SpoolError> {
        let (tmp, path) = (self.dir.join("cursor.tmp"), self.dir.join("cursor"));
        let data = serde_json::to_vec(&self.cursor).expect("cursor serializes");
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(&data).and_then(|()| f.sync_all()).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("rename to", &path))?;
        sync_dir(&self.dir)
    }

    fn read_from(&self, start: Cursor, limit: usize) -> Result<Vec<Value>, SpoolError> {
        let mut out = Vec::new();
        for seg in self.segments.iter().filter(|s| s.seq >= start.seq && s.lines > 0) {
            let path = seg_path(&self.dir, seg.seq);
            let data = fs::read(&path).map_err(io_err("read", &path))?;
            let skip = if seg.seq == start.seq { start.line } else { 0 };
            // Only the lines known to be complete: the file may be longer than `seg` says only if
            // something else wrote to it, which we ignore.
            for (i, line) in data.split(|b| *b == b'\n').enumerate().take(seg.lines as usize) {
                if (i as u64) < skip {
                    continue;
                }
                if out.len() >= limit {
                    return Ok(out);
                }
                let v = serde_json::from_slice(line).map_err(|e| SpoolError::Corrupt {
                    path: path.clone(),
                    line: i as u64 + 1,
                    message: e.to_string(),
                })?;
                out.push(v);
            }
        }
        Ok(out)
    }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;

    /// A scratch directory removed on drop; the spool goes in its `spool` subdirectory.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("ringfence-spool-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            Scratch(p)
        }
        fn dir(&self) -> PathBuf {
            self.0.join("spool")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn rec(i: u32) -> Value {
        json!({ "id": format!("a-{i:04}"), "kind": "bulk" })
    }

    /// Bytes one `rec` line takes.
    fn line_len() -> u64 {
        serde_json::to_vec(&rec(1)).unwrap().len() as u64 + 1
    }

    fn ids(v: &[Value]) -> Vec<String> {
        v.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    }

    fn want(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
        range.map(|i| format!("a-{i:04}")).collect()
    }

    fn limits(files: u64, total: u64) -> SpoolLimits {
        SpoolLimits { max_file_bytes: files * line_len(), max_total_bytes: total * line_len() }
    }

    #[test]
    fn append_and_reopen_keep_records() {
        let t = Scratch::new("reopen");
        let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
        (1..=3).for_each(|i| s.append(&rec(i)).unwrap());
        assert!(matches!(s.append(&json!({ "id": 7 })), Err(SpoolError::NoId { .. })));
        drop(s);
        assert_eq!(fs::metadata(t.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
        s.append(&rec(4)).unwrap();
        assert_eq!(ids(&s.records().unwrap()), want(1..=4));
        assert_eq!(fs::read_dir(t.dir()).unwrap().count(), 1, "one file, continued");
        assert_eq!(fs::read_to_string(seg_path(&t.dir(), 1)).unwrap().lines().count(), 4);
    }

    #[test]
    fn a_batch_is_all_or_nothing_on_ids_and_rotates_inside() {
        let t = Scratch::new("batch");
        let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
        let bad = [rec(1), json!({ "kind": "no id" })];
        assert!(matches!(s.append_all(&bad), Err(SpoolError::NoId { .. })));
        assert!(s.records().unwrap().is_empty(), "nothing of a rejected batch is written");
        let batch: Vec<Value> = (1..=5).map(rec).collect();
        s.append_all(&batch).unwrap();
        drop(s);
        let s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
        assert_eq!(ids(&s.records().unwrap()), want(1..=5));
        assert_eq!(fs::read_dir(t.dir()).unwrap().count(), 3, "2 + 2 + 1 lines");
    }

    #[test]
    fn rotates_at_the_file_limit() {
        let t = Scratch::new("rotate");
        let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
        (1..=5).for_each(|i| s.append(&rec(i)).unwrap());
        for (seq, lines) in [(1, 2), (2, 2), (3, 1)] {
            let text = fs::read_to_string(seg_path(&t.dir(), seq)).unwrap();
            assert_eq!(text.lines().count(), lines, "file {seq}");
        }
        assert_eq!(ids(&s.records().unwrap()), want(1..=5));
        drop(s);
        let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
        s.append(&rec(6)).unwrap();
        assert!(!seg_path(&t.dir(), 4).exists(), "file 3 had room");
        s.append(&rec(7)).unwrap();
        assert!(seg_path(&t.dir(), 4).exists());
    }

    #[test]
    fn total_cap_drops_the_oldest_files_and_counts_them() {
        let t = Scratch::new("cap");
        let mut s = Spool::open(&t.dir(), limits(2, 5)).unwrap();
        (1..=5).for_each(|i| s.append(&rec(i)).unwrap());
        assert_eq!(s.dropped(), 0);
        s.append(&rec(6)).unwrap();
        assert_eq!(s.dropped(), 2);
        assert!(!seg_path(&t.dir(), 1).exists());
        (7..=8).for_each(|i| s.append(&rec(i)).unwrap());
        assert_eq!(s.dropped(), 4);
        assert_eq!(ids(&s.records().unwrap()), want(5..=8));
        assert_eq!(ids(&s.pending(10).unwrap()), want(5..=8));
    }

    #[test]
    fn torn_last_line_is_recovered() {
        let t = Scratch::new("torn");
        let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
        (1..=2).for_each(|i| s.append(&rec(i)).unwrap());
        drop(s);
        let path = seg_path(&t.dir(), 1);
        let full = fs::metadata(&path).unwrap().len();
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\":\"a-00").unwrap();
        let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), full);
        s.append(&rec(3)).unwrap();
        assert_eq!(ids(&s.records().unwrap()), want(1..=3));
    }

    #[test]
    fn pending_and_ack_survive_reopen_and_delete_delivered_files() {
        let t = Scratch::new("ack");
        let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
        (1..=5).for_each(|i| s.append(&rec(i)).unwrap());
        assert_eq!(ids(&s.pending(3).unwrap()), want(1..=3));
        s.ack(3).unwrap();
        assert!(!seg_path(&t.dir(), 1).exists(), "file 1 fully delivered");
        drop(s);
        let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
        assert_eq!(s.pending_count(), 2);
        assert_eq!(ids(&s.pending(10).unwrap()), want(4..=5));
        assert!(matches!(s.ack(3), Err(SpoolError::AckBeyondPending { requested: 3, pending: 2, .. })));
        assert_eq!(s.acknowledge_through("a-0009").unwrap(), 0);
        assert_eq!(s.acknowledge_through("a-0005").unwrap(), 2);
        assert!(!seg_path(&t.dir(), 2).exists(), "file 2 fully delivered");
        assert!(s.pending(10).unwrap().is_empty());
        drop(s);
        let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
        assert!(s.pending(10).unwrap().is_empty());
        (6..=7).for_each(|i| s.append(&rec(i)).unwrap());
        assert_eq!(ids(&s.pending(10).unwrap()), want(6..=7));
        s.ack(1).unwrap();
        assert!(!seg_path(&t.dir(), 3).exists(), "file 3 (5, 6) fully delivered");
        assert_eq!(ids(&s.pending(10).unwrap()), want(7..=7));
    }
}
