//! `cargo xtask fuzz`: the policy parser and compiler, the bundle verifier and the kernel's DNS
//! answer parser (`dns_answer`, the `no_std` code the eBPF program runs) under cargo-fuzz
//! (libFuzzer, nightly, AddressSanitizer), then the control-plane API under schemathesis, driven
//! by its own OpenAPI document against a real `ringfence-control serve` (temporary state
//! directory, SQLite, TLS 1.3) with the admin credential and an enrolled agent's client
//! certificate. Fails on any crash (printing the reproducer) and on any schemathesis failure
//! (printing its report). Not part of `cargo xtask test`.
//!
//! Installs what it needs first (idempotent, pinned): cargo-fuzz with `cargo install --locked`,
//! schemathesis with pip into `target/fuzz-venv` (python3-venv from apt if `venv` is missing).
//! Corpora grow under `target/fuzz-corpus/TARGET` (seeded from `policies/examples/*.yaml` and
//! `fuzz/seeds/TARGET`); logs, the server's state and schemathesis' reports under
//! `target/fuzz-api` and `target/fuzz-logs`.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, is_root, output, run, workspace_root};

const CARGO_FUZZ_VERSION: &str = "0.13.2";
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// For the fuzz agent's key and CSR (the enrollment helper runs in the same virtualenv).
const CRYPTOGRAPHY_VERSION: &str = "50.0.2";
/// The cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`).
pub const TARGETS: &[&str] = &["policy_parse", "policy_compile", "bundle_verify", "dns_answer"];
/// Schemathesis checks: no 5xx, documented status codes, content types and bodies, and requests
/// that violate the schema refused.
const CHECKS: &str =
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection";

/// `cargo xtask fuzz` options.
#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Seconds of fuzzing per cargo-fuzz target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Schemathesis test cases per API operation (its --max-examples).
    #[arg(long, default_value_t = 50)]
    pub examples: u64,
    /// Run only these parts (repeatable): policy_parse, policy_compile, bundle_verify, dns_answer, api.
    #[arg(long, value_name = "PART")]
    pub only: Vec<String>,
    /// Schemathesis seed (default: random; the run prints the one it used).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// What one cargo-fuzz run did.
struct TargetRun {
    name: &'static str,
    executions: Option<u64>,
    elapsed: Duration,
    crash: Option<String>,
}

pub fn fuzz(args: FuzzArgs) -> Result<()> {
    for part in &args.only {
        if part != "api" && !TARGETS.contains(&part.as_str()) {
            bail!("--only {part:?}: expected one of {}, api", TARGETS.join(", "));
        }
    }
    let wanted = |p: &str| args.only.is_empty() || args.only.iter().any(|o| o == p);
    let started = Instant::now();
    let root = workspace_root();
    let targets: Vec<&'static str> = TARGETS.iter().copied().filter(|t| wanted(t)).collect();

    if !targets.is_empty() {
        ensure_cargo_fuzz()?;
    }
    let venv = if wanted("api") { Some(ensure_schemathesis(&root)?) } else { None };

    let mut build_time = None;
    if !targets.is_empty() {
        // All targets at once (sanitizer build, nightly), so each run below is all fuzzing.
        println!("fuzz: building the cargo-fuzz targets (nightly, AddressSanitizer)");
        let building = Instant::now();
        run(Command::new("rustup").args(["run", "nightly", "cargo", "fuzz", "build"]).current_dir(&root))?;
        build_time = Some(building.elapsed());
    }
    let mut runs = Vec::new();
    for target in targets {
        runs.push(run_target(&root, target, args.seconds)?);
    }
    let api = match &venv {
        Some(venv) => Some(run_api(&root, venv, args.examples, args.seed)?),
        None => None,
    };

    println!("\nfuzz summary ({:.0?} in all):", started.elapsed());
    if let Some(t) = build_time {
        println!("  {:<15} {:>5.0?}", "build targets", t);
    }
    for r in &runs {
        println!(
            "  {:<15} {:>5.0?}  {:>10} executions  {}",
            r.name,
            r.elapsed,
            r.executions.map_or("?".into(), |n| n.to_string()),
            r.crash.as_deref().map_or("ok".into(), |c| format!("CRASH: {c}")),
        );
    }
    if let Some(api) = &api {
        println!("  {:<15} {:>5.0?}  {}", "api", api.elapsed, api.summary);
    }
    let crashed: Vec<&str> = runs.iter().filter(|r| r.crash.is_some()).map(|r| r.name).collect();
    let api_failed = api.as_ref().is_some_and(|a| !a.ok);
    if !crashed.is_empty() || api_failed {
        let mut what = Vec::new();
        if !crashed.is_empty() {
            what.push(format!("crashes in {}", crashed.join(", ")));
        }
        if api_failed {
            what.push("schemathesis failures (report above)".into());
        }
        bail!("fuzzing found problems: {}", what.join("; "));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Installation

fn ensure_cargo_fuzz() -> Result<()> {
    if output(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])).is_none() {
        println!("fuzz: installing the nightly toolchain (cargo-fuzz needs it for sanitizers)");
        run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    if output(cargo().args(["fuzz", "--version"])).is_some() {
        return Ok(());
    }
    println!("fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    run(cargo().args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION]))
}

/// The project-local virtualenv with schemathesis; returns its directory.
fn ensure_schemathesis(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/fuzz-venv");
    let st = venv.join("bin/st");
    let installed = output(Command::new(&st).arg("--version"))
        .is_some_and(|v| v.split_whitespace().last() == Some(SCHEMATHESIS_VERSION))
        && output(Command::new(venv.join("bin/python")).args([
            "-c",
            &format!("import cryptography; assert cryptography.__version__ == {CRYPTOGRAPHY_VERSION:?}"),
        ]))
        .is_some();
    if installed {
        return Ok(venv);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if output(Command::new(&python).args(["-c", "import venv, ensurepip"])).is_none() {
        if !is_root() {
            bail!("{python} has no working venv module: install python3-venv (needs root)");
        }
        println!("fuzz: installing python3-venv");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "python3-venv"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if !venv.join("bin/pip").exists() {
        println!("fuzz: creating {}", venv.display());
        run(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    }
    println!("fuzz: installing schemathesis {SCHEMATHESIS_VERSION} into {}", venv.display());
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("schemathesis=={SCHEMATHESIS_VERSION}"),
        &format!("cryptography=={CRYPTOGRAPHY_VERSION}"),
    ]))?;
    Ok(venv)
}

// ---------------------------------------------------------------------------------------------
// cargo-fuzz targets

/// Copies the seeds of `target` into its corpus directory (existing entries stay).
fn seed_corpus(root: &Path, target: &str, corpus: &Path) -> Result<()> {
    std::fs::create_dir_all(corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut seeds: Vec<PathBuf> = Vec::new();
    if target.starts_with("policy_") {
        for entry in std::fs::read_dir(root.join("policies/examples")).context("policies/examples")? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                seeds.push(path);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(root.join("fuzz/seeds").join(target)) {
        for entry in dir {
            seeds.push(entry?.path());
        }
    }
    for seed in seeds {
        let name = format!("seed-{}", seed.file_name().unwrap_or_default().to_string_lossy());
        std::fs::copy(&seed, corpus.join(name)).with_context(|| format!("copying {}", seed.display()))?;
    }
    Ok(())
}

fn run_target(root: &Path, target: &'static str, seconds: u64) -> Result<TargetRun> {
    let corpus = root.join("target/fuzz-corpus").join(target);
    seed_corpus(root, target, &corpus)?;
    let logs = root.join("target/fuzz-logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{target}.log"));
    println!("fuzz: {target} for {seconds}s (corpus {}, log {})", corpus.display(), log_path.display());
    let started = Instant::now();
    let mut child = Command::new("rustup")
        .args(["run", "nightly", "cargo", "fuzz", "run", target])
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-timeout=20",
            "-max_len=16384",
            "-print_final_stats=1",
        ])
        .args(
            target
                .starts_with("policy_")
                .then(|| format!("-dict={}", root.join("fuzz/policy.dict").display())),
        )
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning cargo fuzz")?;
    // One log with both streams; on the terminal only what matters (a crash prints the log's tail).
    let mut log = std::fs::File::create(&log_path)?;
    let stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        BufReader::new(stdout).lines().map_while(|l| l.ok()).collect::<Vec<String>>()
    });
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
        let line = line.context("reading cargo fuzz output")?;
        writeln!(log, "{line}")?;
        let t = line.trim_start();
        let shown = t.starts_with("error")
            || t.starts_with("warning: unused")
            || t.starts_with("Done ")
            || t.starts_with("stat::number_of_executed_units")
            || t.starts_with("stat::new_units_added")
            || t.starts_with("Test unit written");
        if shown {
            println!("  {t}");
        }
        lines.push(line);
    }
    for line in out_thread.join().unwrap_or_default() {
        writeln!(log, "{line}")?;
        lines.push(line);
    }
    let status = child.wait()?;
    let elapsed = started.elapsed();
    let executions = lines.iter().rev().find_map(|l| {
        l.strip_prefix("stat::number_of_executed_units:").and_then(|n| n.trim().parse::<u64>().ok())
    });
    let crash = if status.success() {
        None
    } else {
        let artifact = lines
            .iter()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim().to_owned()));
        let tail: Vec<&String> = lines.iter().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
        eprintln!("--- {target}: last lines of {} ---", log_path.display());
        for line in tail {
            eprintln!("{line}");
        }
        Some(match artifact {
            Some(path) => {
                format!("{status}; reproducer {path} (rustup run nightly cargo fuzz run {target} {path})")
            }
            None => format!("{status}; no reproducer written (build failure?), see {}", log_path.display()),
        })
    };
    Ok(TargetRun { name: target, executions, elapsed, crash })
}

// ---------------------------------------------------------------------------------------------
// The API under schemathesis

struct ApiRun {
    ok: bool,
    summary: String,
    elapsed: Duration,
}

/// A `ringfence-control serve` child: stopped with SIGTERM (then killed) when dropped.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds `ringfence-control` (debug: overflow checks and debug assertions on) and returns the
/// executable's path as cargo reports it.
fn build_control_plane() -> Result<PathBuf> {
    println!("fuzz: building ringfence-control");
    let out = cargo()
        .args(["build", "-p", "ringfence-control", "--bin", "ringfence-control"])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("spawning cargo build")?;
    if !out.status.success() {
        bail!("building ringfence-control failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == "ringfence-control")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo did not report the ringfence-control executable")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Token, enrollment (a fresh ECDSA P-256 key and CSR, as agents make), a policy for every node,
/// one event and a report: so the agent endpoints have a client certificate and the list
/// endpoints return documents to check against the schema.
const ENROLL_PY: &str = r#"
import os, sys, requests
os.umask(0o077)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
base, ca, token_file, key_out, crt_out, policy_file = sys.argv[1:7]
s = requests.Session()
s.trust_env = False  # REQUESTS_CA_BUNDLE would override the control plane's CA
s.verify = ca
admin = {"Authorization": "Bearer " + open(token_file).read().strip()}
def ok(r):
    if r.status_code >= 300:
        sys.exit(f"{r.request.method} {r.url}: {r.status_code} {r.text}")
    return r
def enroll(hostname, wg_key):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])).sign(key, hashes.SHA256())
    tok = ok(s.post(base + "/v1/tokens", headers=admin, json={"region": "fuzz", "labels": {"role": hostname}})).json()
    enrolled = ok(s.post(base + "/v1/enroll", json={
        "token": tok["token"], "csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode(),
        "agent_version": "fuzz", "hostname": hostname,
        "wireguard": {"public_key": wg_key, "endpoint": "192.0.2.1:51820", "allowed_ips": ["10.99.0.1/32"]},
    })).json()
    return key, enrolled
key, enrolled = enroll("fuzz-node", "A" * 43 + "=")
with open(key_out, "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
with open(crt_out, "w") as f:
    f.write(enrolled["certificate_pem"])
# A second node, for POST /v1/nodes/{id}/revoke to find.
_, victim = enroll("fuzz-victim", "B" * 43 + "=")
ok(s.post(base + "/v1/policies", headers=admin, json={"policy_yaml": open(policy_file).read(), "author": "fuzz"}))
cert = (crt_out, key_out)
ok(s.post(base + "/v1/report", cert=cert, json={"agent_version": "fuzz", "applied_policy_version": 1}))
ok(s.post(base + "/v1/events", cert=cert, json={"events": [
    {"id": "seed-1", "kind": "deny", "time_ms": 1700000000000, "severity": "warning", "summary": "seed", "details": {"port": 443}},
]}))
print(enrolled["node_id"], victim["node_id"])
"#;

fn run_api(root: &Path, venv: &Path, examples: u64, seed: Option<u64>) -> Result<ApiRun> {
    let exe = build_control_plane()?;
    let work = root.join("target/fuzz-api");
    let state = work.join("state");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let port = free_port()?;
    let base = format!("https://127.0.0.1:{port}");
    let server_log = work.join("server.log");
    println!(
        "fuzz: starting {} on {base} (state {}, log {})",
        exe.display(),
        state.display(),
        server_log.display()
    );
    let child = Command::new(&exe)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(&state)
        .arg("--db")
        .arg(format!("sqlite://{}", work.join("control.db").display()))
        // Long-polls answer within a second (schemathesis sends any `wait`).
        .args(["--long-poll-max", "1s", "--shutdown-grace", "1s", "--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&server_log)?)
        .spawn()
        .context("starting ringfence-control")?;
    let mut server = Server { child };
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("ringfence-control exited at start ({status}); log: {}", server_log.display());
        }
        if state.join("admin.token").exists() && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("ringfence-control did not come up in 30s; log: {}", server_log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The agent identity for the agent endpoints.
    let (key_path, crt_path) = (work.join("node.key"), work.join("node.crt"));
    let policy = work.join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {name: fuzz}\nspec:\n  defaultAction: deny\n  egress:\n    - {name: web, action: allow, to: {cidrs: [198.51.100.0/24]}, ports: [{port: 443, protocol: tcp}]}\n",
    )?;
    let enroll = Command::new(venv.join("bin/python"))
        .args(["-c", ENROLL_PY, &base])
        .arg(state.join("ca.pem"))
        .arg(state.join("admin.token"))
        .args([&key_path, &crt_path, &policy])
        .output()
        .context("running the enrollment helper")?;
    if !enroll.status.success() {
        bail!(
            "enrolling the fuzz agent failed: {}(server log {})",
            String::from_utf8_lossy(&enroll.stderr),
            server_log.display()
        );
    }
    let ids = String::from_utf8_lossy(&enroll.stdout).into_owned();
    let (node_id, victim) = ids.trim().split_once(' ').context("enrollment helper printed no node ids")?;
    println!(
        "fuzz: enrolled agent {node_id} (its certificate for the agent endpoints) and {victim} (to revoke)"
    );
    // Existing resources for the operations that take identifiers (else they only see 404s).
    let config = work.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[[operations]]\ninclude-path = \"/v1/nodes/{{id}}/revoke\"\nparameters = {{ \"path.id\" = \"{victim}\" }}\n\n\
             [[operations]]\ninclude-path = \"/v1/policies/diff\"\nparameters = {{ \"query.from\" = 1, \"query.to\" = 1 }}\n"
        ),
    )?;

    let admin_token = std::fs::read_to_string(state.join("admin.token"))?.trim().to_owned();
    let mut st = Command::new(venv.join("bin/st"));
    // requests prefers these over the CA given with --tls-verify.
    st.env_remove("REQUESTS_CA_BUNDLE").env_remove("CURL_CA_BUNDLE");
    st.arg("--config-file").arg(&config);
    st.args(["run", &format!("{base}/openapi.yaml"), "--url", &base])
        .arg("--tls-verify")
        .arg(state.join("ca.pem"))
        .args(["--header", &format!("Authorization: Bearer {admin_token}")])
        .arg("--request-cert")
        .arg(&crt_path)
        .arg("--request-cert-key")
        .arg(&key_path)
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--workers", "2", "--request-timeout", "10", "--no-shrink"])
        .args(["--generation-database", "none"])
        .args(["--report", "junit,ndjson", "--report-dir"])
        .arg(work.join("report"))
        .args(["--output-sanitize", "false"])
        .current_dir(&work);
    if let Some(seed) = seed {
        st.args(["--seed", &seed.to_string()]);
    }
    println!("fuzz: schemathesis {SCHEMATHESIS_VERSION}, {examples} examples per operation, checks {CHECKS}");
    let st_started = Instant::now();
    let mut child = st.stdout(Stdio::piped()).spawn().context("spawning schemathesis")?;
    // The summary's "Tested: N" (operations) and the line after "Test cases:".
    let mut summary = Vec::new();
    let mut after_cases = false;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.context("reading schemathesis output")?;
        println!("{line}");
        let t = line.trim();
        if let Some(n) = t.strip_prefix("Tested:") {
            summary.push(format!("{} operations", n.trim()));
        } else if after_cases && !t.is_empty() {
            summary.push(format!("test cases: {t}"));
            after_cases = false;
        }
        after_cases |= t == "Test cases:";
    }
    let status = child.wait()?;
    let elapsed = st_started.elapsed();
    let server_alive = server.child.try_wait()?.is_none();
    drop(server);
    let panics = std::fs::read_to_string(&server_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("panicked"))
        .count();
    if !server_alive {
        eprintln!("fuzz: ringfence-control died during the run; log {}", server_log.display());
    }
    if panics > 0 {
        eprintln!("fuzz: ringfence-control logged {panics} panic(s); log {}", server_log.display());
    }
    let ok = status.success() && server_alive && panics == 0;
    let mut summary = summary.join("; ");
    if !ok {
        summary = format!("FAILED ({status}) {summary}; reports in {}", work.join("report").display());
    }
    Ok(ApiRun { ok, summary, elapsed })
}
