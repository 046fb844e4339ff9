//! `cargo xtask setup`: installs what the build and the tests need on a fresh Debian machine.
//! Idempotent: every step checks first and only acts when something is missing.
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{output, run};

/// LLVM major of the nightly toolchain that builds the eBPF crate; bpf-linker must match it.
const LLVM_MAJOR: &str = "22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Userspace WireGuard for the mesh tests (no kernel module on the test machines).
const BORINGTUN_VERSION: &str = "0.7.1";
/// Debian packages: LLVM for building bpf-linker, and the tools the lab and benchmarks use.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libxml2-dev",
    "iproute2",
    "nftables",
    "util-linux",
    "procps",
    // `wg` for the WireGuard mesh tests (without recommends: it would pull a kernel image).
    "wireguard-tools",
    // initdb/pg_ctl: the control plane's storage tests start a throwaway PostgreSQL cluster.
    "postgresql",
    // Single-stream throughput in `cargo xtask bench-path`.
    "iperf3",
    // The Slurm test (tests/tests/slurm.rs) runs Debian's real slurmctld + slurmd (22.05, cgroup/v2
    // plugin) with munge authentication, and compiles a small LD_PRELOAD shim with the C compiler.
    "slurm-wlm",
    "munge",
    "gcc",
    "libc6-dev",
    // The console's browser tests and `cargo xtask bench-console` drive Debian's chromium with
    // playwright-core (Node.js and npm: see setup_console.rs).
    "chromium",
    // promtool: the deploy/ test checks the shipped Prometheus alert rules (`promtool check rules`).
    "prometheus",
    // The FQDN tests (tests/tests/dns.rs) run a real DNS server (dnsmasq, without its daemon
    // package) in the lab's world namespace.
    "dnsmasq-base",
];

/// Where Debian's PostgreSQL server binaries live (one directory per major version).
const POSTGRES_LIB: &str = "/usr/lib/postgresql";

/// Whether some /usr/lib/postgresql/*/bin/initdb exists (the package can be "installed" with its
/// versioned server package removed).
fn postgres_binaries_present() -> bool {
    std::fs::read_dir(POSTGRES_LIB)
        .map(|dir| dir.filter_map(|e| e.ok()).any(|e| e.path().join("bin/initdb").is_file()))
        .unwrap_or(false)
}

fn apt_missing() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
                || (*p == "postgresql" && !postgres_binaries_present())
        })
        .collect()
}

fn ensure_apt(check: bool, did: &mut Vec<String>) -> Result<()> {
    let missing = apt_missing();
    if missing.is_empty() {
        return Ok(());
    }
    if check {
        bail!("missing Debian packages: {} (run `cargo xtask setup`)", missing.join(" "));
    }
    if !crate::util::is_root() {
        bail!("missing Debian packages {}; installing them needs root", missing.join(" "));
    }
    println!("setup: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    did.push(format!("installed {}", missing.join(" ")));
    Ok(())
}

fn ensure_nightly(check: bool, did: &mut Vec<String>) -> Result<()> {
    let vv = output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))
        .context("no nightly toolchain: `rustup toolchain install nightly` (its LLVM must be 22)")?;
    let llvm = vv.lines().find_map(|l| l.strip_prefix("LLVM version: ")).unwrap_or("?").trim().to_string();
    if !llvm.starts_with(&format!("{LLVM_MAJOR}.")) {
        bail!("the nightly toolchain uses LLVM {llvm}, but bpf-linker is built against LLVM {LLVM_MAJOR}: install a nightly with LLVM {LLVM_MAJOR} (e.g. nightly-2026-05-19) as `nightly`");
    }
    let installed =
        output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))
            .unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        if check {
            bail!("rust-src missing for nightly (run `cargo xtask setup`)");
        }
        println!("setup: adding rust-src to nightly");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
        did.push("added rust-src to nightly".into());
    }
    Ok(())
}

/// `cargo xtask test` runs clippy first; a minimal rustup profile lacks it.
fn ensure_clippy(check: bool, did: &mut Vec<String>) -> Result<()> {
    if output(Command::new("cargo").args(["clippy", "--version"])).is_some() {
        return Ok(());
    }
    if check {
        bail!("clippy missing (run `cargo xtask setup`)");
    }
    println!("setup: adding clippy");
    run(Command::new("rustup").args(["component", "add", "clippy"]))?;
    did.push("added clippy".into());
    Ok(())
}

fn bpf_linker_ok() -> bool {
    let Some(v) = output(Command::new("bpf-linker").arg("--version")) else { return false };
    let Some(path) = output(Command::new("sh").args(["-c", "command -v bpf-linker"])) else { return false };
    let ldd = output(Command::new("ldd").arg(path.trim())).unwrap_or_default();
    v.contains(BPF_LINKER_VERSION) && ldd.contains(&format!("libLLVM.so.{LLVM_MAJOR}"))
}

fn ensure_bpf_linker(check: bool, did: &mut Vec<String>) -> Result<()> {
    if bpf_linker_ok() {
        return Ok(());
    }
    if check {
        bail!("bpf-linker {BPF_LINKER_VERSION} built against LLVM {LLVM_MAJOR} not found (run `cargo xtask setup`)");
    }
    println!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM {LLVM_MAJOR} (about 2 minutes)");
    let prefix = format!("/usr/lib/llvm-{LLVM_MAJOR}");
    let path = format!("{prefix}/bin:{}", std::env::var("PATH").unwrap_or_default());
    run(crate::util::cargo()
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--locked",
            "--force",
        ])
        .args(["--features", &format!("llvm-{LLVM_MAJOR}")])
        .env("LLVM_PREFIX", &prefix)
        .env("PATH", path))?;
    if !bpf_linker_ok() {
        bail!("bpf-linker was installed but `bpf-linker --version` or its LLVM {LLVM_MAJOR} link check still fails; is ~/.cargo/bin on PATH?");
    }
    did.push(format!("installed bpf-linker {BPF_LINKER_VERSION}"));
    Ok(())
}

fn boringtun_ok() -> bool {
    output(Command::new("boringtun-cli").arg("--version")).is_some_and(|v| v.contains(BORINGTUN_VERSION))
}

fn ensure_boringtun(check: bool, did: &mut Vec<String>) -> Result<()> {
    if boringtun_ok() {
        return Ok(());
    }
    if check {
        bail!("boringtun-cli {BORINGTUN_VERSION} not found (run `cargo xtask setup`)");
    }
    println!("setup: building boringtun-cli {BORINGTUN_VERSION} (userspace WireGuard, about 1.5 minutes)");
    run(crate::util::cargo().args([
        "install",
        "boringtun-cli",
        "--version",
        BORINGTUN_VERSION,
        "--locked",
        "--force",
    ]))?;
    if !boringtun_ok() {
        bail!(
            "boringtun-cli was installed but `boringtun-cli --version` still fails; is ~/.cargo/bin on PATH?"
        );
    }
    did.push(format!("installed boringtun-cli {BORINGTUN_VERSION}"));
    Ok(())
}

/// A Python package some tests need: the pip requirement, how to tell it is there, what for.
struct PipPackage {
    spec: &'static str,
    present: fn() -> bool,
    /// How `present` checks, for the error message.
    check: &'static str,
    what: &'static str,
}

const PIP_PACKAGES: &[PipPackage] = &[
    // The S3 API server the audit checkpoint tests start (moto implements Object Lock).
    PipPackage {
        spec: "moto[server]",
        present: || python_imports("moto.server"),
        check: "python3 -c 'import moto.server'",
        what: "S3 Object Lock server for the audit checkpoint tests",
    },
    // Schema validation of deploy/kubernetes (agent/tests/deploy_manifests.rs).
    PipPackage {
        spec: "kubernetes-validate",
        present: || output(Command::new("kubernetes-validate").arg("--version")).is_some(),
        check: "kubernetes-validate --version",
        what: "validates the Kubernetes manifests in deploy/kubernetes",
    },
];

fn python_imports(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ensure_pip(package: &PipPackage, check: bool, did: &mut Vec<String>) -> Result<()> {
    let spec = package.spec;
    if (package.present)() {
        return Ok(());
    }
    if check {
        bail!("python package {spec} missing (run `cargo xtask setup`: pip install '{spec}')");
    }
    println!("setup: pip install '{spec}' ({})", package.what);
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(extra)
            .arg(spec)
            .status()
            .is_ok_and(|s| s.success())
    };
    // Debian's own python3 refuses pip without --break-system-packages (PEP 668).
    if !pip(&[]) && !pip(&["--break-system-packages"]) {
        bail!("pip install '{spec}' failed (is python3 with pip installed?)");
    }
    if !(package.present)() {
        bail!(
            "'{spec}' was installed but `{}` still fails (is pip's script directory on PATH?)",
            package.check
        );
    }
    did.push(format!("installed {spec}"));
    Ok(())
}

fn check_kernel() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    if !mounts.lines().any(|l| l.contains(" - cgroup2 ")) {
        bail!("no cgroup v2 filesystem is mounted; the agent enforces per cgroup v2 directory");
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        println!("setup: warning: /sys/kernel/btf/vmlinux is missing (kernel without BTF)");
    }
    Ok(())
}

/// Installs what is missing (or with `check`, only reports it).
pub fn setup(check: bool) -> Result<()> {
    let mut did = Vec::new();
    ensure_apt(check, &mut did)?;
    ensure_nightly(check, &mut did)?;
    ensure_clippy(check, &mut did)?;
    ensure_bpf_linker(check, &mut did)?;
    ensure_boringtun(check, &mut did)?;
    for package in PIP_PACKAGES {
        ensure_pip(package, check, &mut did)?;
    }
    crate::setup_console::ensure_console_packages(check, &mut did)?;
    check_kernel()?;
    if did.is_empty() {
        println!("setup: everything present (apt packages, nightly LLVM {LLVM_MAJOR} + rust-src, bpf-linker {BPF_LINKER_VERSION}, boringtun-cli {BORINGTUN_VERSION}, {}, console npm packages, cgroup v2)", PIP_PACKAGES.iter().map(|p| p.spec).collect::<Vec<_>>().join(", "));
    } else {
        println!("setup: done: {}", did.join("; "));
    }
    Ok(())
}
