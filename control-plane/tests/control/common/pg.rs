//! A throwaway PostgreSQL cluster for this test process: `initdb` into a temp directory as the
//! `postgres` user (initdb refuses root), listening only on a unix socket in that directory. A
//! watchdog stops it (`pg_ctl stop`) and removes the directory when the test process exits,
//! however it exits. Each test gets its own database.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

struct Cluster {
    dir: PathBuf,
    port: u16,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

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
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    cmd
}

fn start() -> Result<Cluster, String> {
    let bin = bin_dir().ok_or(
        "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb): run `cargo xtask setup`, \
         which installs Debian's `postgresql` package; the storage tests run on both SQLite and PostgreSQL",
    )?;
    let dir = std::env::temp_dir().join(format!(
        "ringfence-pg-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
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
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
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
    let options =
        format!("-c listen_addresses='' -k {} -p {port} -c fsync=off -c max_connections=200", dir.display());
    run(
        "pg_ctl start",
        as_postgres(&bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-o", &options, "start"]),
    )?;
    Ok(Cluster { dir, port })
}

fn url(cluster: &Cluster, db: &str) -> String {
    format!("postgres://postgres@localhost/{db}?host={}&port={}", cluster.dir.display(), cluster.port)
}

/// The URL of a new, empty database (the cluster starts on first use). Panics with what to do
/// when PostgreSQL is not installed.
pub async fn fresh_database() -> String {
    let cluster = match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
    };
    let name = format!("t{}_{}", NEXT_DB.fetch_add(1, Ordering::Relaxed), rand::random::<u16>());
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&url(cluster, "postgres"))
        .await
        .unwrap_or_else(|e| panic!("connecting to the test cluster in {}: {e}", cluster.dir.display()));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("CREATE DATABASE");
    url(cluster, &name)
}
