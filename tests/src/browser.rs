//! The console in a real browser: Debian's chromium driven by `console/e2e/console.mjs`
//! (playwright-core from the console's npm packages). Used by tests/tests/console.rs and the
//! control plane's console benchmark.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::netns::NetNs;

/// Debian's chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The workspace's `console/` directory.
pub fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console")
}

/// Where a run's screenshots go: `target/console-screenshots/NAME`.
pub fn screenshot_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots").join(name)
}

/// Why the browser tests cannot run here, if they cannot.
pub fn browser_missing() -> Option<String> {
    if !Path::new(CHROMIUM).is_file() {
        return Some(format!("{CHROMIUM} is missing (cargo xtask setup installs Debian's chromium)"));
    }
    if !console_dir().join("node_modules/playwright-core").is_dir() {
        return Some(
            "console/node_modules/playwright-core is missing (cargo xtask setup runs npm ci)".into(),
        );
    }
    if Command::new("node").arg("--version").stdout(Stdio::null()).status().is_err() {
        return Some("node is not installed".into());
    }
    None
}

/// What a console script run needs.
pub struct ConsoleRun<'a> {
    /// `https://host:port` of the control plane.
    pub url: &'a str,
    /// `{"username","password"}` or `{"token"}`.
    pub login: Value,
    /// What the command checks (see the script).
    pub expect: Value,
    /// Screenshot directory.
    pub shots: &'a Path,
    /// The network namespace the browser runs in (`None`: this one).
    pub netns: Option<&'a NetNs>,
}

/// Runs `node console/e2e/console.mjs COMMAND`; its JSON result, or what failed.
pub fn run_console(command: &str, run: &ConsoleRun) -> Result<Value, String> {
    let script = console_dir().join("e2e/console.mjs");
    let mut cmd = match run.netns {
        Some(ns) => ns.command("node"),
        None => Command::new("node"),
    };
    let out = cmd
        .arg(&script)
        .arg(command)
        .env("RF_URL", run.url)
        .env("RF_LOGIN", run.login.to_string())
        .env("RF_EXPECT", run.expect.to_string())
        .env("RF_SHOTS", run.shots)
        .env("RF_CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("node {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("console {command} failed ({}): {stderr}{stdout}", out.status));
    }
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).map_err(|e| format!("console {command}: output {last:?}: {e}; {stderr}"))
}
