//! Builds the console (`console/`, Vite) into `$OUT_DIR/console` and writes the list of its
//! files for `include_bytes!` (src/api/console/assets.rs), so the binary serves it with no
//! files beside it. Runs again only when the console's sources change. Without npm (or with
//! `npm ci` not yet run by `cargo xtask setup`) the console is a page saying so, and the
//! build warns.
use std::path::{Path, PathBuf};
use std::process::Command;

const INPUTS: &[&str] = &["src", "index.html", "package.json", "package-lock.json", "vite.config.js"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn build(console: &Path, dist: &Path) -> Result<(), String> {
    if !console.join("node_modules").is_dir() {
        let ci = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(console).status();
        if !ci.is_ok_and(|s| s.success()) {
            return Err("`npm ci` in console/ failed (run `cargo xtask setup`)".into());
        }
    }
    let status = Command::new("npm")
        .args(["run", "build", "--", "--outDir"])
        .arg(dist)
        .arg("--emptyOutDir")
        .current_dir(console)
        .status()
        .map_err(|e| format!("npm: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`npm run build` in console/ failed: {status}"))
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let console = manifest.join("../console");
    for input in INPUTS {
        println!("cargo:rerun-if-changed={}", console.join(input).display());
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dist = out.join("console");
    if let Err(e) = build(&console, &dist) {
        println!("cargo:warning=console not built: {e}");
        std::fs::create_dir_all(&dist).expect("create the console dir");
        std::fs::write(
            dist.join("index.html"),
            "<!doctype html><title>Ringfence console</title><p>The console was not built into this binary: install Node.js and npm, run <code>cargo xtask setup</code>, then build again.</p>\n",
        )
        .expect("write the placeholder");
    }
    let mut found = Vec::new();
    files(&dist, &mut found);
    found.sort();
    let mut list = String::from("/// The console's files: (path under /console/, contents).\npub static ASSETS: &[(&str, &[u8])] = &[\n");
    for f in &found {
        let rel = f.strip_prefix(&dist).expect("under dist").to_string_lossy().replace('\\', "/");
        list.push_str(&format!("    ({rel:?}, include_bytes!({:?})),\n", f.display().to_string()));
    }
    list.push_str("];\n");
    std::fs::write(out.join("console_assets.rs"), list).expect("write console_assets.rs");
}
