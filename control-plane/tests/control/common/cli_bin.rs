//! The `ringfence` operator binary, built by its own package (`ringfence-cli`): cargo only
//! builds the binaries of the package under test, so the first caller runs
//! `cargo build -p ringfence-cli --bin ringfence` (a no-op when it is up to date) into the
//! target directory of this test executable, with the same profile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of an up-to-date `ringfence` binary.
pub fn ringfence_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build)
}

fn build() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe()");
    // target/<profile>/deps/control-<hash>
    let profile_dir =
        exe.parent().and_then(Path::parent).expect("the test executable is in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--quiet", "-p", "ringfence-cli", "--bin", "ringfence", "--target-dir"])
        .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(other) => {
            cargo.args(["--profile", other]);
        }
        None => panic!("no profile directory above {}", exe.display()),
    }
    let status = cargo.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("running cargo build");
    assert!(status.success(), "cargo build -p ringfence-cli --bin ringfence: {status}");
    let bin = profile_dir.join("ringfence");
    assert!(bin.is_file(), "{} missing after cargo build", bin.display());
    bin
}
