//! The spool's files: limits, errors, naming, and the file operations (scan, create, append,
//! directory sync) the store, the cursor and the reader share. A leaf of [`super`].
use std::{
    fs::{File, OpenOptions},
    io,
    path::{Path, PathBuf},
};

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

pub(super) fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io { what, path: path.to_path_buf(), source }
}

/// One spool file; its records are its '\n'-terminated lines.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub seq: u64,
    pub bytes: u64,
    pub lines: u64,
}

/// Reads one file's size and line count (streaming), truncating a torn last line.
pub(super) fn scan_segment(dir: &Path, seq: u64) -> Result<Segment, SpoolError> {
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

pub(super) fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("spool-{seq:08}.jsonl"))
}

pub(super) fn open_append(dir: &Path, seq: u64) -> Result<File, SpoolError> {
    let path = seg_path(dir, seq);
    OpenOptions::new().append(true).open(&path).map_err(io_err("open", &path))
}

/// Creates file `seq` (0600) and makes its directory entry durable.
pub(super) fn create_segment(dir: &Path, seq: u64) -> Result<File, SpoolError> {
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

pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("sync directory", dir))
}
