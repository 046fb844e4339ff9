//! A throwaway PostgreSQL cluster (Debian's `postgresql` package): `initdb` into a temp
//! directory as the `postgres` user (initdb refuses root), listening only on a unix socket in
//! that directory. A watchdog stops it (`pg_ctl stop`) and removes the directory when the
//! process that started it exits, however it exits. Used by the control plane's storage tests
//! and by `cargo xtask bench-control`.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// A running cluster.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

/// The newest /usr/lib/postgresql/*/bin that has initdb.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    cmd
}

impl PgCluster {
    /// Starts a cluster; the error says what to do when PostgreSQL is not installed.
    pub fn start() -> Result<PgCluster, String> {
        let bin = bin_dir().ok_or(
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb): run `cargo xtask setup`, \
             which installs Debian's `postgresql` package",
        )?;
        // Kept past this process: the watchdog below removes it.
        let dir = tempfile::Builder::new()
            .prefix("ringfence-pg-")
            .tempdir()
            .map_err(|e| format!("cluster directory: {e}"))?
            .keep();
        run("chown", Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        // The watchdog first: whatever happens next, the cluster and directory go away with us.
        let data = dir.join("data");
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             runuser -u postgres -- {pg_ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = bin.join("pg_ctl").display(),
            data = data.display(),
            dir = dir.display(),
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the cluster watchdog: {e}"))?;
        run(
            "initdb",
            as_postgres(&bin, "initdb")
                .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync", "-D"])
                .arg(&data),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let options = format!(
            "-c listen_addresses='' -k {} -p {port} -c fsync=off -c max_connections=200",
            dir.display()
        );
        run(
            "pg_ctl start",
            as_postgres(&bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-w", "-o", &options, "start"]),
        )?;
        Ok(PgCluster { dir, bin, port })
    }

    /// The connection URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@localhost/{db}?host={}&port={}", self.dir.display(), self.port)
    }

    /// Creates an empty database; returns its URL.
    pub fn create_database(&self, db: &str) -> Result<String, String> {
        run(
            "createdb",
            as_postgres(&self.bin, "createdb").args(["-h"]).arg(&self.dir).args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                db,
            ]),
        )?;
        Ok(self.url(db))
    }

    /// Where the cluster lives (for messages).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
