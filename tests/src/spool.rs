//! Reading the agent's alert spool (JSON lines under `<state-dir>/spool`).
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Every record in the agent's alert spool.
pub fn spooled(state: &Path) -> Vec<Value> {
    let dir = state.join("spool");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read spool file")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|l| serde_json::from_str(&l).expect("spool line is JSON"))
        .collect()
}
