//! Validation of everything the agent needs, before it touches the kernel. All problems are
//! collected and reported together.
use std::path::{Path, PathBuf};

use ringfence_policy::{compile, geo::GeoDb, load_policy_file, Compiled, Policy};

use crate::{
    config::RunConfig,
    error::AgentError,
    sys::{self, fs_magic},
};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A validated configuration: the database loaded, the policy parsed and compiled, the paths
/// checked.
pub struct Checked {
    pub policy: Policy,
    pub compiled: Compiled,
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

fn policy_errors(e: impl std::fmt::Display) -> Vec<String> {
    e.to_string().lines().map(str::to_string).collect()
}

fn compile_error(path: &Path, e: impl std::fmt::Display) -> Vec<String> {
    vec![format!("{}: {e}", path.display())]
}

/// Adds peer node addresses the control plane resolved (the WireGuard peers of this node's
/// region) to the policy's `spec.peers`: traffic to them must be encrypted, and they are
/// approved sinks for exfiltration rules with `peers: true`.
pub fn merge_peers(policy: &mut Policy, extra: &[ipnet::IpNet]) {
    if extra.is_empty() {
        return;
    }
    policy.peers.extend(extra.iter().map(|n| ringfence_policy::normalize_net(n.trunc())));
    policy.peers.sort_unstable();
    policy.peers.dedup();
}

/// Parses a policy file, adds `extra_peers` ([`merge_peers`]) and compiles it against the
/// database, one message per problem.
pub fn check_policy(
    path: &Path,
    geo: Option<&GeoDb>,
    extra_peers: &[ipnet::IpNet],
) -> Result<(Policy, Compiled), Vec<String>> {
    let mut policy = load_policy_file(path).map_err(policy_errors)?;
    merge_peers(&mut policy, extra_peers);
    let compiled = compile(&policy, geo).map_err(|e| compile_error(path, e))?;
    Ok((policy, compiled))
}

/// What `spec.exfiltration` needs from the agent's configuration: the packet path's flow
/// counters, and the geo database when approved sinks name countries.
pub fn exfil_errors(policy: &Policy, cfg: &RunConfig, geo: Option<&GeoDb>) -> Vec<String> {
    let mut errors = Vec::new();
    if policy.exfiltration.is_none() {
        return errors;
    }
    if cfg.interfaces.is_empty() {
        errors.push(format!(
            "{}: spec.exfiltration needs the packet path's flow counters: run with --interface <uplink>",
            cfg.policy.display()
        ));
    }
    if policy.exfiltration_needs_geo() && geo.is_none() {
        errors.push(format!(
            "{}: spec.exfiltration.approvedSinks names countries: give a geo-IP database with --geoip-db",
            cfg.policy.display()
        ));
    }
    errors
}

/// Runs every check; returns all problems at once.
pub fn check(cfg: &RunConfig) -> Result<Checked, AgentError> {
    let mut errors = Vec::new();
    let geo = crate::geo::load(cfg).map_err(|e| errors.push(e));
    let policy = load_policy_file(&cfg.policy)
        .map(|mut p| {
            merge_peers(&mut p, &cfg.extra_peers);
            p
        })
        .map_err(|e| errors.extend(policy_errors(e)))
        .ok();
    // Compiling needs the database; if it failed to load, that error says enough.
    let compiled = match (policy, &geo) {
        (Some(policy), Ok(geo)) => match compile(&policy, geo.as_ref()) {
            Ok(compiled) => {
                errors.extend(exfil_errors(&policy, cfg, geo.as_ref()));
                Some((policy, compiled))
            }
            Err(e) => {
                errors.extend(compile_error(&cfg.policy, e));
                None
            }
        },
        _ => None,
    };
    if let Err(e) = check_cgroup(&cfg.cgroup) {
        errors.push(e);
    }
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
    let (policy, compiled) = compiled.expect("no errors means the policy compiled");
    let geo = geo.expect("no errors means the database loaded");
    Ok(Checked { policy, compiled, geo, cgroup: cfg.cgroup.clone(), bpffs: cfg.bpffs.clone() })
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
            policy,
            cgroup: dir.clone(),
            bpffs: dir.join("pins"),
            geoip_db: vec![dir.join("missing.mmdb")],
            geoip_field: None,
            interfaces: Vec::new(),
            flow_idle_timeout: std::time::Duration::from_secs(60),
            watch_interval: std::time::Duration::from_secs(1),
            grace: std::time::Duration::from_secs(1),
            state_dir: dir.join("state"),
            exfil_poll: std::time::Duration::from_millis(500),
            metrics_listen: None,
            control: false,
            extra_peers: Vec::new(),
            allow_weaker_isolation: false,
        };
        let Err(err) = check(&cfg) else { panic!("must fail") };
        assert_eq!(err.exit_code(), crate::error::EXIT_CONFIG);
        let text = err.to_string();
        for needle in
            ["loud", "not a cgroup v2 directory", "not on a bpf filesystem", "mount -t bpf", "missing.mmdb"]
        {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
        assert!(check_cgroup(&dir.join("missing")).unwrap_err().contains("No such file"));
    }

    #[test]
    fn unreadable_policy_names_the_file() {
        let Err(errors) = check_policy(Path::new("/nonexistent/ringfence.yaml"), None, &[]) else {
            panic!("must fail")
        };
        assert!(errors.iter().any(|e| e.contains("/nonexistent/ringfence.yaml")), "{errors:?}");
    }

    #[test]
    fn control_plane_peers_join_the_policy_peers() {
        let mut p = ringfence_policy::parse_policy(
            "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: x }\nspec:\n  defaultAction: allow\n  peers: { cidrs: [192.0.2.9/32] }\n",
        )
        .expect("policy");
        let extra: Vec<ipnet::IpNet> =
            ["192.0.2.2/32", "198.51.100.2/32", "192.0.2.9/32", "::ffff:192.0.2.7/128"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
        merge_peers(&mut p, &extra);
        let got: Vec<String> = p.peers.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["192.0.2.2/32", "192.0.2.7/32", "192.0.2.9/32", "198.51.100.2/32"]);
        let compiled = compile(&p, None).expect("compiles");
        assert_eq!(compiled.encrypt4.len(), 4, "every peer is a must-encrypt destination");
    }
}
