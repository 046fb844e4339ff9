//! A lab with the real agent enforcing a policy on the lab's cgroup: the starting point of most
//! enforcement tests.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use crate::{agent::agent_bin, AgentProc, Lab};

/// How long the agent may take to verify, load and attach its programs.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a reload may take.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// A lab, a policy file and (usually) a running agent.
pub struct Enforced {
    pub agent: Option<AgentProc>,
    /// Extra `run` arguments for every agent this scenario starts (e.g. `--geoip-db FILE`).
    pub agent_args: Vec<std::ffi::OsString>,
    /// Run the agent in the node namespace with the packet path on the node's uplink.
    pub packet_path: bool,
    pub policy: PathBuf,
    dir: PathBuf,
    // Dropped last: the agent must go before the lab removes its cgroup and bpffs.
    pub lab: Lab,
}

/// `run --cgroup-root ROOT --identity IDENTITY --bpffs BPFFS --state-dir STATE` with file
/// checks every 0.2 s and without the packet path (so `--allow-weaker-isolation`): the common
/// part of every per-workload agent a test starts; add `--policy`/`--control`, policies, etc.
pub fn workload_agent_args(
    root: &Path,
    identity: &Path,
    bpffs: &Path,
    state: &Path,
) -> Vec<std::ffi::OsString> {
    [
        "run".as_ref(),
        "--cgroup-root".as_ref(),
        root.as_os_str(),
        "--identity".as_ref(),
        identity.as_os_str(),
        "--bpffs".as_ref(),
        bpffs.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--watch-interval".as_ref(),
        "0.2".as_ref(),
        "--allow-weaker-isolation".as_ref(),
    ]
    .iter()
    .map(|s: &&std::ffi::OsStr| s.to_os_string())
    .collect()
}

/// The head of a v1 policy with the given name, mode and default action; append `egress` items.
pub fn policy_head(name: &str, mode: &str, default_action: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{ name: {name} }}\nspec:\n  mode: {mode}\n  defaultAction: {default_action}\n  egress:\n"
    )
}

/// Like [`policy_head`], with `spec_lines` (YAML lines indented by two spaces, each ending in a
/// newline) placed in `spec` before `egress`.
pub fn policy_head_with(name: &str, mode: &str, default_action: &str, spec_lines: &str) -> String {
    policy_head(name, mode, default_action).replace("  egress:\n", &format!("{spec_lines}  egress:\n"))
}

impl Enforced {
    /// Creates the lab with world servers on `ports`, writes `policy` and starts the agent.
    pub fn start(name: &str, ports: &[u16], policy: &str) -> Enforced {
        let mut e = Enforced::prepare(name, ports, policy);
        e.start_agent();
        e
    }

    /// Like [`Enforced::start`] but without an agent.
    pub fn prepare(name: &str, ports: &[u16], policy: &str) -> Enforced {
        Enforced::prepare_with_hosts(name, &[], ports, policy)
    }

    /// Like [`Enforced::prepare`], with extra world hosts (documentation addresses).
    pub fn prepare_with_hosts(name: &str, hosts: &[&str], ports: &[u16], policy: &str) -> Enforced {
        let mut lab = Lab::new(name);
        for host in hosts {
            lab.add_world_host(host);
        }
        if !ports.is_empty() {
            lab.start_world_servers(ports);
        }
        let dir = std::env::temp_dir().join(format!("ringfence-{}", lab.name()));
        // A run that was killed leaves its directory (and enrolled state) behind: start clean.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create policy temp dir");
        let path = dir.join("policy.yaml");
        std::fs::write(&path, policy).expect("write policy");
        Enforced { agent: None, agent_args: Vec::new(), packet_path: false, policy: path, dir, lab }
    }

    /// Starts an agent and waits until it enforces.
    pub fn start_agent(&mut self) -> &AgentProc {
        let agent = if self.packet_path {
            // The packet path attaches to the node's uplink: run the agent in its namespace.
            let mut args = self.run_args();
            args.extend([
                "--watch-interval".into(),
                "0.2".into(),
                "--interface".into(),
                self.lab.veth_names().0.into(),
            ]);
            args.extend(self.agent_args.iter().cloned());
            AgentProc::spawn_command(self.lab.node_ns().command(agent_bin()), &args, false)
        } else {
            // Without the packet path, a kernel that cannot run the packet-socket guard (BPF LSM)
            // makes the agent refuse to start; these scenarios test everything else, so they
            // accept that (tests/tests/isolation.rs covers packet sockets and the refusal).
            let mut args = self.agent_args.clone();
            args.push("--allow-weaker-isolation".into());
            AgentProc::spawn_with(
                &agent_bin(),
                &self.policy,
                self.lab.cgroup_path(),
                &self.bpffs(),
                &args,
                false,
            )
        };
        agent.wait_for_message("enforcing", START_TIMEOUT);
        self.agent.insert(agent)
    }

    /// `run --policy P --cgroup C --bpffs B` for this scenario.
    pub fn run_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "run".into(),
            "--policy".into(),
            self.policy.clone().into(),
            "--cgroup".into(),
            self.lab.cgroup_path().into(),
            "--bpffs".into(),
            self.bpffs().into(),
        ]
    }

    /// A scratch directory removed with the scenario (policies, databases).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn agent(&self) -> &AgentProc {
        self.agent.as_ref().expect("agent running")
    }

    /// Replaces the policy file and waits until the agent applied it (it watches the file).
    pub fn replace_policy(&self, policy: &str) {
        let agent = self.agent();
        let applied = agent.count("policy applied");
        write_atomically(&self.policy, policy);
        agent.wait_for_count("policy applied", applied + 1, RELOAD_TIMEOUT);
    }

    /// Runs `ringfence-agent ARGS --bpffs <lab bpffs>`.
    pub fn agent_cli(&self, args: &[&str]) -> Output {
        Command::new(agent_bin())
            .args(args)
            .arg("--bpffs")
            .arg(self.bpffs())
            .output()
            .expect("run ringfence-agent")
    }

    /// The agent's pin directory: `ringfence/` inside the lab's private bpffs, as in production
    /// (`/sys/fs/bpf/ringfence`).
    pub fn bpffs(&self) -> PathBuf {
        self.lab.bpffs_path().join("ringfence")
    }

    /// `ringfence-agent status --json` parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.agent_cli(&["status", "--json"]);
        assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }
}

/// Writes a file the way config managers do: a temporary file renamed over the old one.
pub fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write temp policy");
    std::fs::rename(&tmp, path).expect("rename policy into place");
}

impl Drop for Enforced {
    fn drop(&mut self) {
        self.agent.take();
        // Detach (links and maps live in the lab's private bpffs, which the lab unmounts anyway).
        let _ = Command::new(agent_bin()).arg("detach").arg("--bpffs").arg(self.bpffs()).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
