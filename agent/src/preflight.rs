//! Validation of everything the agent needs, before it touches the kernel. All problems are
//! collected and reported together.
use std::path::{Path, PathBuf};

use ringfence_policy::{geo::GeoDb, Compiled, Policy};

use crate::{
    config::RunConfig,
    error::AgentError,
    identity::IdentityConfig,
    policy_load::{BundleWorkloads, LoadedPolicy, PolicyErrors, PolicyLoader, PolicySource},
    sys::{self, fs_magic},
    workloads::WorkloadPolicies,
};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A validated configuration: the database loaded, the policy parsed and compiled, the paths
/// checked.
pub struct Checked {
    pub policy: Policy,
    pub compiled: Compiled,
    /// The ingress tables (`None`: the policy enforces no ingress).
    pub ingress: Option<Compiled>,
    /// Under `--cgroup-root`: the identity sources and the workload policies, checked.
    pub workloads: Option<(IdentityConfig, WorkloadPolicies)>,
    pub geo: Option<GeoDb>,
    pub cgroup: PathBuf,
    pub bpffs: PathBuf,
}

/// Checks that `dir` is a cgroup v2 directory.
pub fn check_cgroup(dir: &Path) -> Result<(), String> {
    match fs_magic(dir) {
        Err(e) => Err(format!("--cgroup {}: {e} (expected a cgroup v2 directory, e.g. /sys/fs/cgroup)", dir.display())),
        Ok(CGROUP2_SUPER_MAGIC) => Ok(()),
        Ok(_) => Err(format!(
            "--cgroup {}: not a cgroup v2 directory (no cgroup2 filesystem there; on hybrid systems cgroup v2 is usually at /sys/fs/cgroup/unified)",
            dir.display()
        )),
    }
}

/// Checks that `dir` is, or can be created inside, a mounted bpf filesystem.
pub fn check_bpffs(dir: &Path) -> Result<(), String> {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    match fs_magic(existing) {
        Ok(BPF_FS_MAGIC) => Ok(()),
        Ok(_) => Err(format!(
            "--bpffs {}: {} is not on a bpf filesystem; mount one first: mount -t bpf bpf /sys/fs/bpf",
            dir.display(),
            existing.display()
        )),
        Err(e) => Err(format!("--bpffs {}: {e}", dir.display())),
    }
}

/// Runs every check, loading the policy with `loader` and, under `--cgroup-root`, the
/// `--workload-policy` files with `bundle`'s workload policies (a control-plane bundle's;
/// ignored without `--cgroup-root`); returns all problems at once.
pub fn check(
    cfg: &RunConfig,
    loader: &PolicyLoader,
    bundle: &BundleWorkloads,
) -> Result<Checked, AgentError> {
    let mut errors = Vec::new();
    let geo = crate::geo::load(cfg).map_err(|e| errors.push(e));
    // Compiling needs the database; if it failed to load, that error says enough.
    let loaded = match &geo {
        Ok(geo) => loader.load(geo.as_ref()),
        Err(()) => loader.parse().and(Err(PolicyErrors(Vec::new()))),
    }
    .map_err(|e| errors.extend(e.0))
    .ok();
    if let Err(e) = check_cgroup(&cfg.cgroup) {
        errors.push(e);
    }
    let workloads = cfg.workloads.as_ref().and_then(|w| {
        let identity = IdentityConfig::load(&w.identity).map_err(|e| errors.push(e.to_string())).ok();
        let policies = match &geo {
            Ok(db) => {
                let mut sources: Vec<PolicySource> =
                    w.policies.iter().cloned().map(PolicySource::File).collect();
                sources.extend(bundle.sources.iter().cloned());
                WorkloadPolicies::load_sources(&sources, &bundle.remote, cfg, db.as_ref())
                    .map_err(|e| errors.extend(e))
                    .ok()
            }
            Err(()) => None,
        };
        identity.zip(policies)
    });
    if let Err(e) = check_bpffs(&cfg.bpffs) {
        errors.push(e);
    }
    for iface in &cfg.interfaces {
        if !sys::interface_exists(iface) {
            errors.push(format!("--interface {iface}: no such network interface in this network namespace"));
        }
    }
    let euid = sys::euid();
    if !errors.is_empty() {
        if euid != 0 {
            errors.push(AgentError::NotRoot(euid).to_string());
        }
        return Err(AgentError::Config(errors));
    }
    if euid != 0 {
        return Err(AgentError::NotRoot(euid));
    }
    let LoadedPolicy { policy, compiled, ingress } = loaded.expect("no errors means the policy loaded");
    let geo = geo.expect("no errors means the database loaded");
    Ok(Checked {
        policy,
        compiled,
        ingress,
        workloads,
        geo,
        cgroup: cfg.cgroup.clone(),
        bpffs: cfg.bpffs.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let policy = dir.join("p.yaml");
        std::fs::write(&policy, "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: x }\nspec: { defaultAction: deny, mode: loud }\n").unwrap();
        let cfg = RunConfig {
            policy: Some(policy.clone()),
            cgroup: dir.clone(),
            workloads: None,
            bpffs: dir.join("pins"),
            geoip_db: vec![dir.join("missing.mmdb")],
            geoip_field: None,
            interfaces: Vec::new(),
            flow_idle_timeout: std::time::Duration::from_secs(60),
            watch_interval: std::time::Duration::from_secs(1),
            grace: std::time::Duration::from_secs(1),
            state_dir: dir.join("state"),
            exfil_poll: std::time::Duration::from_millis(500),
            selftest_every: None,
            metrics_listen: None,
            control: false,
            allow_weaker_isolation: false,
        };
        let loader = PolicyLoader::new(PolicySource::File(policy), &cfg, Vec::new());
        let Err(err) = check(&cfg, &loader, &BundleWorkloads::default()) else { panic!("must fail") };
        assert_eq!(err.exit_code(), crate::error::EXIT_CONFIG);
        let text = err.to_string();
        for needle in
            ["loud", "not a cgroup v2 directory", "not on a bpf filesystem", "mount -t bpf", "missing.mmdb"]
        {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
        assert!(check_cgroup(&dir.join("missing")).unwrap_err().contains("No such file"));
    }
}
