//! Reading undelivered records in batches from the cursor (never the delivered part), passing
//! over corrupt lines into quarantine, and acknowledging what was delivered.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};

use serde_json::Value;

use super::cursor::{self, Cursor};
use super::segments::{io_err, seg_path, SpoolError};
use super::store::Spool;

/// Up to `limit` undelivered records and where the next batch starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The records, oldest first (each an object with a string `"id"`).
    pub records: Vec<Value>,
    /// The position after the last line read (corrupt lines included): acknowledging the batch
    /// moves the cursor here.
    pub end: Cursor,
    /// Corrupt lines passed over (and quarantined) in this batch.
    pub quarantined: usize,
}

/// Where quarantined lines go, inside the spool directory.
pub const QUARANTINE: &str = "quarantine.jsonl";

fn before(a: &Cursor, b: &Cursor) -> bool {
    (a.seq, a.line) < (b.seq, b.line)
}

impl Spool {
    /// Up to `limit` undelivered records from the cursor on. A corrupt line (not a JSON object
    /// with a string `"id"`) is copied to `quarantine.jsonl` (once), counted, logged and passed
    /// over.
    pub fn read_batch(&mut self, limit: usize) -> Result<Batch, SpoolError> {
        let mut batch = Batch { end: self.cursor, ..Batch::default() };
        let segments: Vec<_> = self.segments.iter().filter(|s| s.seq >= self.cursor.seq).copied().collect();
        let mut line = Vec::new();
        for seg in segments {
            let (mut pos, mut n) =
                if seg.seq == self.cursor.seq { (self.cursor.offset, self.cursor.line) } else { (0, 0) };
            if pos >= seg.bytes {
                continue;
            }
            let path = seg_path(&self.dir, seg.seq);
            let mut file = File::open(&path).map_err(io_err("read", &path))?;
            file.seek(SeekFrom::Start(pos)).map_err(io_err("seek", &path))?;
            // Only the lines known to be complete.
            let mut reader = io::BufReader::with_capacity(64 << 10, file.take(seg.bytes - pos));
            while pos < seg.bytes {
                if batch.records.len() >= limit {
                    return Ok(batch);
                }
                line.clear();
                let read = reader.read_until(b'\n', &mut line).map_err(io_err("read", &path))? as u64;
                if read == 0 {
                    break;
                }
                let here = Cursor { seq: seg.seq, line: n, offset: pos };
                (pos, n) = (pos + read, n + 1);
                batch.end = Cursor { seq: seg.seq, line: n, offset: pos };
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                match serde_json::from_slice::<Value>(text) {
                    Ok(v) if v.get("id").is_some_and(Value::is_string) => batch.records.push(v),
                    parsed => {
                        let why = parsed.err().map_or("no string \"id\" field".to_owned(), |e| e.to_string());
                        self.quarantine(&here, text, &why)?;
                        batch.quarantined += 1;
                    }
                }
            }
        }
        Ok(batch)
    }

    /// Copies a corrupt line aside (unless it was already, in an earlier read of the same batch).
    fn quarantine(&mut self, at: &Cursor, text: &[u8], why: &str) -> Result<(), SpoolError> {
        if self.quarantine_mark.is_some_and(|mark| before(at, &mark)) {
            return Ok(());
        }
        let path = self.dir.join(QUARANTINE);
        let mut f =
            OpenOptions::new().create(true).append(true).open(&path).map_err(io_err("open", &path))?;
        f.write_all(text)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_data())
            .map_err(io_err("write", &path))?;
        self.quarantined += 1;
        self.quarantine_mark = Some(Cursor { seq: at.seq, line: at.line + 1, offset: 0 });
        tracing::warn!(file = %seg_path(&self.dir, at.seq).display(), line = at.line + 1, why,
            quarantine = %path.display(), total_quarantined = self.quarantined,
            "event spool: corrupt record quarantined; delivery continues");
        Ok(())
    }

    /// Marks every record of `batch` delivered: moves the cursor to its end (never back), deletes
    /// files wholly delivered.
    pub fn ack_batch(&mut self, batch: &Batch) -> Result<(), SpoolError> {
        if !before(&self.cursor, &batch.end) {
            return Ok(());
        }
        self.cursor = batch.end;
        self.normalize_cursor();
        cursor::persist(&self.dir, &self.cursor)?;
        self.remove_delivered()
    }

    /// Up to `limit` undelivered records (see [`Spool::read_batch`]).
    pub fn pending(&mut self, limit: usize) -> Result<Vec<Value>, SpoolError> {
        Ok(self.read_batch(limit)?.records)
    }
}
