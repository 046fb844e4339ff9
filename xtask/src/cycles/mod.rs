//! `cargo xtask cycles [--all] [--graph] DIR...`: fails, listing every cycle, if the modules of a crate
//! import each other in a circle.
//!
//! DIR is a crate's `src` directory or the crate's directory; each of its roots (`lib.rs`,
//! `main.rs`, `bin/*.rs`, `bin/*/main.rs`) is checked as its own crate. The module tree comes
//! from the `mod` declarations; imports are `use` trees and paths in code (see [`tree`]);
//! items under `#[cfg(test)]` are left out. A module may use its children and its siblings,
//! but no chain of imports may lead back to where it started (see [`graph`] for the levels).

mod graph;
mod lex;
mod tree;

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::util::workspace_root;

/// What to print besides the cycles.
#[derive(Clone, Copy, Debug, Default)]
pub struct Show {
    /// Every elementary cycle, not only the shortest cycle through each import.
    pub all: bool,
    /// The imports between the members of each level.
    pub graph: bool,
}

/// Checks the crates in `dirs`.
pub fn cycles(dirs: &[PathBuf], show: Show) -> Result<()> {
    let mut total = 0;
    for dir in dirs {
        for root in roots(dir)? {
            let read = |p: &Path| std::fs::read_to_string(p).ok();
            let (text, found) = check(&root, &read, show).map_err(|errors| {
                anyhow::anyhow!("{}: cannot read the module tree:\n  {}", root.display(), errors.join("\n  "))
            })?;
            print!("{text}");
            total += found;
        }
    }
    if total > 0 {
        bail!("{}; make the imports between modules run in one direction", count(total, "import cycle"));
    }
    Ok(())
}

/// The crate roots in `dir` (a `src` directory or a crate directory; relative paths are tried
/// from the current directory, then from the workspace root).
fn roots(dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = if dir.is_relative() && !dir.exists() { workspace_root().join(dir) } else { dir.to_path_buf() };
    let src = if !dir.join("lib.rs").exists() && !dir.join("main.rs").exists() && dir.join("src").is_dir() {
        dir.join("src")
    } else {
        dir
    };
    let mut roots: Vec<PathBuf> =
        ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).filter(|p| p.is_file()).collect();
    if let Ok(entries) = std::fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .map(|p| if p.is_dir() { p.join("main.rs") } else { p })
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rs"))
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    if roots.is_empty() {
        bail!("{}: no lib.rs, main.rs or bin/ to start from", src.display());
    }
    Ok(roots)
}

/// The report for the crate rooted at `root` and the number of cycles listed.
fn check(root: &Path, read: tree::Read<'_>, show: Show) -> Result<(String, usize), Vec<String>> {
    let (modules, imports) = tree::load(root, read)?;
    let levels = graph::levels(&imports);
    let pairs: BTreeSet<(&tree::ModPath, &tree::ModPath)> =
        imports.iter().map(|i| (&i.from, &i.to)).collect();
    let (elementary, truncated) = graph::elementary_cycles(&levels, graph::MAX_CYCLES);
    let more = if truncated { " or more" } else { "" };
    let mut out =
        format!("{}: {} modules, {} imports between modules, ", root.display(), modules.len(), pairs.len());
    let cycles = if show.all {
        if !elementary.is_empty() {
            let n = count(elementary.len(), "elementary cycle");
            writeln!(out, "{n}{more}:").expect("write to a String");
        }
        elementary
    } else {
        let shortest = graph::shortest_cycles(&levels);
        if !shortest.is_empty() {
            writeln!(
                out,
                "{} (the shortest through each import in a cycle; {}{more} elementary in all, --all lists them):",
                count(shortest.len(), "cycle"),
                elementary.len()
            )
            .expect("write to a String");
        }
        shortest
    };
    if cycles.is_empty() {
        out.push_str("no cycles\n");
    }
    let relative =
        |p: &Path| p.strip_prefix(root.parent().unwrap_or(Path::new(""))).unwrap_or(p).display().to_string();
    for cycle in &cycles {
        let names: Vec<String> = cycle.members.iter().map(|m| graph::name(&cycle.module, m)).collect();
        writeln!(out, "  {} -> {}", names.join(" -> "), names[0]).expect("write to a String");
        for (k, import) in cycle.edges.iter().enumerate() {
            let (a, b) = (&names[k], &names[(k + 1) % names.len()]);
            let at = format!("{}:{}", relative(&import.file), import.line);
            writeln!(out, "      {a} -> {b}  ({at})").expect("write to a String");
        }
    }
    if show.graph {
        for (module, level) in &levels {
            writeln!(out, "  in {}:", graph::name(module, &None)).expect("write to a String");
            for (a, b) in level.keys() {
                writeln!(out, "    {} -> {}", graph::name(module, a), graph::name(module, b))
                    .expect("write to a String");
            }
        }
    }
    Ok((out, cycles.len()))
}

/// `1 cycle`, `2 cycles`.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Runs `check` for `root` with the files given, failing on unreadable trees.
#[cfg(test)]
fn check_files(files: &[(&str, &str)]) -> (String, usize) {
    let files: std::collections::HashMap<PathBuf, String> =
        files.iter().map(|(p, s)| (PathBuf::from(p), (*s).to_owned())).collect();
    check(Path::new("src/lib.rs"), &|p: &Path| files.get(p).cloned(), Show::default()).expect("module tree")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_cycle_with_where_its_imports_are() {
        let (text, found) = check_files(&[
            ("src/lib.rs", "mod compile;\nmod compile_geo;\nmod geo;\npub use compile::compile;"),
            ("src/compile.rs", "use crate::compile_geo::build;\nuse crate::geo::Db;"),
            ("src/compile_geo.rs", "use crate::geo::Db;\n\nuse crate::compile::items;"),
            ("src/geo/mod.rs", "mod reader;\npub struct Db;\nfn open() { reader::load() }"),
            ("src/geo/reader.rs", "use super::Db;"),
        ]);
        assert_eq!(found, 2, "{text}");
        let expected =
            "src/lib.rs: 5 modules, 7 imports between modules, 2 cycles (the shortest through each \
             import in a cycle; 2 elementary in all, --all lists them):\n  \
             compile -> compile_geo -> compile\n      \
             compile -> compile_geo  (compile.rs:1)\n      \
             compile_geo -> compile  (compile_geo.rs:3)\n  \
             geo -> geo::reader -> geo\n      \
             geo -> geo::reader  (geo/mod.rs:3)\n      \
             geo::reader -> geo  (geo/reader.rs:1)\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn one_way_imports_pass() {
        let (text, found) = check_files(&[
            ("src/lib.rs", "mod a;\nmod b;\npub use a::A;"),
            ("src/a.rs", "use crate::b::B;\n#[cfg(test)]\nmod tests { use crate::*; }"),
            ("src/b.rs", "pub struct B;"),
        ]);
        assert_eq!(
            (text.as_str(), found),
            ("src/lib.rs: 3 modules, 2 imports between modules, no cycles\n", 0)
        );
    }
}
