//! The pack's container: a tar (regular files only, sorted paths, fixed owner, mode and time, so
//! the same pack is the same bytes) compressed with zstd.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::client::CliError;

/// Writes `files` (path → bytes) as a `.tar.zst` at `path`.
pub fn write(path: &Path, files: &BTreeMap<String, String>, mtime_secs: u64) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Input { path: path.into(), reason: format!("cannot write: {e}") };
    let file = std::fs::File::create(path).map_err(io)?;
    let encoder = zstd::Encoder::new(file, 19).map_err(io)?;
    let mut tar = tar::Builder::new(encoder);
    for (name, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime_secs);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, content.as_bytes()).map_err(io)?;
    }
    let encoder = tar.into_inner().map_err(io)?;
    encoder.finish().map_err(io)?.sync_all().map_err(io)
}

/// Reads a `.tar.zst` into path → bytes; anything but unique regular files with relative paths
/// is refused, naming the entry.
pub fn read(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, CliError> {
    let input = |reason: String| CliError::Input { path: path.into(), reason };
    let file = std::fs::File::open(path).map_err(|e| input(e.to_string()))?;
    let decoder = zstd::Decoder::new(file).map_err(|e| input(format!("not a zstd stream: {e}")))?;
    let mut archive = tar::Archive::new(decoder);
    let mut out = BTreeMap::new();
    let entries = archive.entries().map_err(|e| input(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| input(format!("corrupt tar archive: {e}")))?;
        let name = entry.path().map_err(|e| input(e.to_string()))?.to_string_lossy().into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(CliError::EvidenceBroken(format!("{name}: added (not a regular file)")));
        }
        if name.starts_with('/') || name.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(CliError::EvidenceBroken(format!("{name}: added (not a plain relative path)")));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| input(format!("{name}: {e}")))?;
        if out.insert(name.clone(), bytes).is_some() {
            return Err(CliError::EvidenceBroken(format!("{name}: added (a second copy)")));
        }
    }
    Ok(out)
}
