//! The `ringfence` operator binary, run as operators do: against a [`TestServer`] (flags for
//! server, CA and admin credential) or with any arguments and environment.
//!
//! It is built by its own package (`ringfence-cli`), and cargo only builds the binaries of the
//! package under test, so the first caller runs `cargo build -p ringfence-cli --bin ringfence`
//! (a no-op when it is up to date) into the target directory of this test executable, with the
//! same profile.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::server::TestServer;

impl TestServer {
    /// Runs `ringfence ARGS` against this server.
    pub async fn cli(&self, args: &[&str]) -> Output {
        let mut full: Vec<String> = vec![
            "--server".into(),
            self.base.clone(),
            "--ca".into(),
            self.ca_path.display().to_string(),
            "--admin-token-file".into(),
            self.admin_token_path.display().to_string(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        run(full, &[]).await
    }
}

/// Runs `ringfence ARGS` with `env` added (and RINGFENCE_SERVER removed), off the async runtime.
pub async fn run(args: Vec<String>, env: &[(&str, String)]) -> Output {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(ringfence_bin())
            .args(&args)
            .envs(env)
            .env_remove("RINGFENCE_SERVER")
            .output()
            .expect("run ringfence")
    })
    .await
    .unwrap()
}

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
