//! The cgroup tree under the root: every directory (relative path) with its cgroup id (on
//! cgroup v2 the id the kernel reports for a cgroup is its directory's inode number).
use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Every cgroup below `root` (not `root` itself), depth first, with its id. Directories that
/// vanish while the walk runs (a job ending) are skipped.
pub fn scan(root: &Path) -> Vec<(PathBuf, u64)> {
    scan_below(root, Path::new(""))
}

/// Every cgroup below `rel` (relative to `root`; not `rel` itself), with its id.
pub fn scan_below(root: &Path, rel: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![rel.to_owned()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(root.join(&rel)) else { continue };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let child = rel.join(entry.file_name());
            found.push((child.clone(), meta.ino()));
            stack.push(child);
        }
    }
    found
}

/// The id of the cgroup `rel` under `root`, if it exists.
pub fn cgroup_id(root: &Path, rel: &Path) -> Option<u64> {
    fs::metadata(root.join(rel)).ok().filter(|m| m.is_dir()).map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_directories_with_their_inode_numbers() {
        let root = std::env::temp_dir().join(format!("rf-scan-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("a/b/c")).expect("mkdir");
        fs::create_dir_all(root.join("d")).expect("mkdir");
        fs::write(root.join("a/cgroup.procs"), "").expect("file");
        let mut found = scan(&root);
        found.sort();
        let paths: Vec<_> = found.iter().map(|(p, _)| p.to_string_lossy().into_owned()).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c", "d"]);
        let ino = fs::metadata(root.join("a/b")).expect("stat").ino();
        assert_eq!(found[1].1, ino);
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
