//! The one way a policy is loaded: parse its source, add the peer nodes' addresses, compile it
//! against the geo database, check what it needs from the agent (`spec.exfiltration`). Every
//! path that puts a policy in force goes through [`PolicyLoader::load`]: the startup checks,
//! a reload (SIGHUP, file change), a control-plane bundle and a geo database change.
use std::path::PathBuf;

use ipnet::IpNet;
use ringfence_policy::{
    compile, compile_ingress, geo::GeoDb, load_policy_file, parse_policy, Compiled, Policy, PolicyFileError,
};
use ringfence_proto::bundle::Bundle;

use crate::config::RunConfig;

/// Everything wrong with a policy, one message per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct PolicyErrors(pub Vec<String>);

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A policy file (`--policy`), read again at each load.
    File(PathBuf),
    /// A verified control-plane bundle's policy document, held in memory.
    Bundle {
        /// The bundle's version.
        version: u64,
        /// The policy (YAML).
        yaml: String,
    },
}

impl PolicySource {
    /// The policy of `bundle`.
    pub fn bundle(bundle: &Bundle) -> PolicySource {
        PolicySource::Bundle { version: bundle.version, yaml: bundle.policy_yaml.clone() }
    }

    /// How messages name the source.
    pub fn label(&self) -> String {
        match self {
            PolicySource::File(path) => path.display().to_string(),
            PolicySource::Bundle { version, .. } => format!("bundle {version} policy"),
        }
    }
}

/// A policy that passed every check, with its compiled form.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub policy: Policy,
    /// The egress tables.
    pub compiled: Compiled,
    /// The ingress tables; `None` when the policy enforces no ingress (everything inbound
    /// passes, as before ingress rules existed).
    pub ingress: Option<Compiled>,
}

/// A workload on another node, as the control plane knows it: its labels and its node's
/// addresses (what an ingress rule's `from.workloads` selector resolves to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWorkload {
    pub labels: std::collections::BTreeMap<String, String>,
    pub addresses: Vec<IpNet>,
}

/// What a control-plane bundle says about workloads: its workload policies (each a
/// [`PolicySource::Bundle`]) and the workloads on other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleWorkloads {
    pub sources: Vec<PolicySource>,
    pub remote: Vec<RemoteWorkload>,
}

impl BundleWorkloads {
    /// The workload part of a verified bundle; an address that is no CIDR fails it.
    pub fn of(bundle: &Bundle) -> Result<BundleWorkloads, String> {
        let sources = bundle
            .workload_policies
            .iter()
            .map(|w| PolicySource::Bundle { version: bundle.version, yaml: w.yaml.clone() })
            .collect();
        let mut remote = Vec::new();
        for w in &bundle.remote_workloads {
            let addresses = w
                .addresses
                .iter()
                .map(|a| {
                    a.parse::<IpNet>().map_err(|e| {
                        format!(
                            "bundle {} remote workload on node {}: address {a:?}: {e}",
                            bundle.version, w.node_id
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            remote.push(RemoteWorkload { labels: w.labels.clone(), addresses });
        }
        Ok(BundleWorkloads { sources, remote })
    }
}

/// The policy's source and what the checks need to know about the agent.
#[derive(Debug, Clone)]
pub struct PolicyLoader {
    pub source: PolicySource,
    /// The uplinks get the packet path (its flow counters feed `spec.exfiltration`).
    pub packet_path: bool,
    /// Peer node addresses added to the policy's `spec.peers` (see [`merged_peers`]).
    pub extra_peers: Vec<IpNet>,
    /// Workloads on other nodes (from the control plane): `from.workloads` selectors resolve to
    /// the addresses of those they match; none known, such a rule matches no address.
    pub remote_workloads: Vec<RemoteWorkload>,
}

impl PolicyLoader {
    /// Loads `source` for the agent `cfg` describes; `extra_peers` join `spec.peers`.
    pub fn new(source: PolicySource, cfg: &RunConfig, extra_peers: Vec<IpNet>) -> PolicyLoader {
        PolicyLoader {
            source,
            packet_path: !cfg.interfaces.is_empty(),
            extra_peers,
            remote_workloads: Vec::new(),
        }
    }

    /// Parses the source and adds the extra peers; no compiling (for when the geo database the
    /// policy must be compiled against did not load).
    pub fn parse(&self) -> Result<Policy, PolicyErrors> {
        let mut policy = match &self.source {
            PolicySource::File(path) => load_policy_file(path).map_err(|e| lines(&e))?,
            PolicySource::Bundle { yaml, .. } => parse_policy(yaml).map_err(|diagnostics| {
                lines(&PolicyFileError::Invalid { path: self.source.label().into(), diagnostics })
            })?,
        };
        policy.peers = merged_peers(&policy, &self.extra_peers);
        Ok(policy)
    }

    /// Parses, compiles against `geo` and runs every check.
    pub fn load(&self, geo: Option<&GeoDb>) -> Result<LoadedPolicy, PolicyErrors> {
        let policy = self.parse()?;
        let label = self.source.label();
        let compiled = compile(&policy, geo).map_err(|e| PolicyErrors(vec![format!("{label}: {e}")]))?;
        let remote = |sel: &ringfence_policy::Selector| -> Vec<IpNet> {
            let matching = self.remote_workloads.iter().filter(|w| sel.matches(&w.labels));
            matching.flat_map(|w| w.addresses.iter().copied()).collect()
        };
        let ingress = match policy.enforces_ingress() {
            true => Some(
                compile_ingress(&policy, geo, &remote)
                    .map_err(|e| PolicyErrors(vec![format!("{label}: spec.ingress: {e}")]))?,
            ),
            false => None,
        };
        let errors = self.exfil_errors(&policy, geo);
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        Ok(LoadedPolicy { policy, compiled, ingress })
    }

    /// What `spec.exfiltration` needs from the agent's configuration: the packet path's flow
    /// counters for detection (`bulk`, `checkpoints`; budgets and rate caps are counted by the
    /// cgroup backstop and need none), and the geo database when approved sinks name countries.
    fn exfil_errors(&self, policy: &Policy, geo: Option<&GeoDb>) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(x) = policy.exfiltration.as_ref() else { return errors };
        let label = self.source.label();
        if !self.packet_path && (x.bulk.is_some() || x.checkpoints.is_some()) {
            errors.push(format!(
                "{label}: spec.exfiltration needs the packet path's flow counters: run with --interface <uplink>"
            ));
        }
        if policy.exfiltration_needs_geo() && geo.is_none() {
            errors.push(format!(
                "{label}: spec.exfiltration.approvedSinks names countries: give a geo-IP database with --geoip-db"
            ));
        }
        errors
    }
}

#[cfg(test)]
impl PolicyLoader {
    /// A loader of `source` with no extra peers and no remote workloads (tests).
    pub(crate) fn plain(source: PolicySource, packet_path: bool) -> PolicyLoader {
        PolicyLoader { source, packet_path, extra_peers: Vec::new(), remote_workloads: Vec::new() }
    }
}

fn lines(e: &impl std::fmt::Display) -> PolicyErrors {
    PolicyErrors(e.to_string().lines().map(str::to_string).collect())
}

/// The policy's `spec.peers` with the addresses of peer nodes the control plane resolved (the
/// WireGuard peers of this node's region, [`crate::wg::peers::addresses`]): traffic to them must
/// be encrypted, and they are approved sinks for exfiltration rules with `peers: true`.
pub fn merged_peers(policy: &Policy, extra: &[IpNet]) -> Vec<IpNet> {
    let mut peers = policy.peers.clone();
    if extra.is_empty() {
        return peers;
    }
    peers.extend(extra.iter().map(|n| ringfence_policy::normalize_net(n.trunc())));
    peers.sort_unstable();
    peers.dedup();
    peers
}

#[cfg(test)]
mod tests;
