//! The delivery cursor: where the next undelivered record starts (file, line, byte offset),
//! kept in `dir/cursor`, replaced atomically. Loading never fails on its contents: a cursor that
//! does not parse or does not point at the start of a line is moved aside and rebuilt.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::segments::{io_err, seg_path, Segment, SpoolError};
use crate::clock::unix_ms;

/// A position in the spool: line `line` (0-based) of file `seq`, `offset` bytes into it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub seq: u64,
    pub line: u64,
    /// Absent in cursors written before offsets were kept: computed once at open.
    #[serde(default = "unknown_offset")]
    pub offset: u64,
}

fn unknown_offset() -> u64 {
    u64::MAX
}

const FILE: &str = "cursor";

/// Reads the cursor of the spool in `dir`, whose files are `segments` (missing: from the start).
pub(super) fn load(dir: &Path, segments: &VecDeque<Segment>) -> Result<Cursor, SpoolError> {
    let path = dir.join(FILE);
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Cursor::default()),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let parsed = serde_json::from_slice::<Cursor>(&data).map_err(|e| e.to_string());
    match parsed.and_then(|c| resolve(dir, segments, c)) {
        Ok(c) => Ok(c),
        Err(why) => {
            let aside = dir.join(format!("cursor.corrupt-{}", unix_ms()));
            fs::rename(&path, &aside).map_err(io_err("move aside", &path))?;
            let start = segments.front().map_or(0, |s| s.seq);
            tracing::warn!(cursor = %path.display(), moved_to = %aside.display(), why,
                "event spool: corrupt cursor rebuilt; delivery restarts at the oldest spooled record (the control plane drops repeats)");
            Ok(Cursor { seq: start, line: 0, offset: 0 })
        }
    }
}

/// Checks a cursor against the files (computing a missing offset); `Err` says why it is wrong.
fn resolve(dir: &Path, segments: &VecDeque<Segment>, c: Cursor) -> Result<Cursor, String> {
    let Some(seg) = segments.iter().find(|s| s.seq == c.seq) else {
        // In a deleted file (or before any): the next existing file's start.
        return Ok(Cursor { offset: 0, ..c });
    };
    if c.line > seg.lines {
        return Err(format!("line {} of a file of {} lines", c.line, seg.lines));
    }
    let path = seg_path(dir, c.seq);
    if c.offset == u64::MAX {
        let mut reader = io::BufReader::new(File::open(&path).map_err(|e| e.to_string())?);
        let mut offset = 0u64;
        let mut line = Vec::new();
        for _ in 0..c.line {
            line.clear();
            offset += reader.read_until(b'\n', &mut line).map_err(|e| e.to_string())? as u64;
        }
        return Ok(Cursor { offset, ..c });
    }
    if c.offset > seg.bytes || (c.line == 0) != (c.offset == 0) {
        return Err(format!("offset {} with line {} in a file of {} bytes", c.offset, c.line, seg.bytes));
    }
    if c.offset > 0 {
        let mut f = File::open(&path).map_err(|e| e.to_string())?;
        let mut byte = [0u8];
        f.seek(SeekFrom::Start(c.offset - 1))
            .and_then(|_| f.read_exact(&mut byte))
            .map_err(|e| e.to_string())?;
        if byte[0] != b'\n' {
            return Err(format!("offset {} is not the start of a line", c.offset));
        }
    }
    Ok(c)
}

/// Writes `cursor` into `dir` atomically (private, like the spool files).
pub(super) fn persist(dir: &Path, cursor: &Cursor) -> Result<(), SpoolError> {
    let data = serde_json::to_vec(cursor).expect("cursor serializes");
    crate::files::write_atomic(&dir.join(FILE), &data, 0o600).map_err(|e| SpoolError::Io {
        what: e.what,
        path: e.path,
        source: e.source,
    })
}
