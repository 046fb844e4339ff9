//! `cargo xtask setup`, the console's part: its npm packages (Vite, Preact, uPlot, and
//! playwright-core for the browser tests, which drive Debian's chromium) from the committed
//! package-lock.json.
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::util::run;

/// Whether `npm ci` is needed: no node_modules, or the lock file changed since.
fn stale(console: &Path) -> bool {
    let installed = console.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&installed), modified(&console.join("package-lock.json"))) {
        (Some(installed), Some(lock)) => installed < lock,
        _ => true,
    }
}

/// Installs Debian's nodejs and npm unless an `npm` is on PATH already (a newer Node.js from
/// elsewhere is kept: Debian's npm package would conflict with it).
fn ensure_npm(check: bool, did: &mut Vec<String>) -> Result<()> {
    if crate::util::output(Command::new("npm").arg("--version")).is_some() {
        return Ok(());
    }
    if check || !crate::util::is_root() {
        bail!("npm not found: the console is built with it (run `cargo xtask setup` as root)");
    }
    println!("setup: installing nodejs npm (builds the console)");
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "nodejs", "npm"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    did.push("installed nodejs npm".into());
    Ok(())
}

/// Runs `npm ci` in console/ when needed.
pub fn ensure_console_packages(check: bool, did: &mut Vec<String>) -> Result<()> {
    ensure_npm(check, did)?;
    let console = crate::util::workspace_root().join("console");
    if !stale(&console) {
        return Ok(());
    }
    if check {
        bail!("console npm packages missing or out of date (run `cargo xtask setup`: npm ci in console/)");
    }
    println!("setup: npm ci in console/ (Vite, Preact, uPlot, playwright-core)");
    run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&console))?;
    did.push("installed the console's npm packages".into());
    Ok(())
}
