//! The workload policies (`--workload-policy`): each loaded through the one load path, checked
//! to have a `spec.workloadSelector` and not to overlap another, numbered (policy indices are
//! kept by name in the state directory so a restarted agent gives a policy the index the kernel
//! already maps its workloads to) and written into the kernel.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use ringfence_common::SELFTEST_POLICY;
use ringfence_policy::{geo::GeoDb, selector_conflicts};
use tracing::info;

use crate::{
    config::RunConfig,
    error::AgentError,
    events::RuleNames,
    files, geo,
    identity::Labels,
    maps::PinnedMaps,
    policy_load::{LoadedPolicy, PolicyLoader, PolicySource, RemoteWorkload},
};

/// Where the policy indices are kept.
const INDEX_FILE: &str = "workload-policies.json";

/// One workload policy.
#[derive(Debug, Clone)]
pub struct WorkloadPolicy {
    /// Its index in the kernel (1..SELFTEST_POLICY; 0 is the node default).
    pub index: u32,
    pub loader: PolicyLoader,
    pub loaded: LoadedPolicy,
}

/// Every workload policy, in `--workload-policy` order.
#[derive(Debug, Clone, Default)]
pub struct WorkloadPolicies {
    pub list: Vec<WorkloadPolicy>,
    /// The workloads on other nodes their `from.workloads` selectors resolved against.
    pub remote: Vec<RemoteWorkload>,
    state_dir: PathBuf,
}

impl WorkloadPolicies {
    /// Loads and checks the policy files `files`; every problem at once.
    pub fn load(files: &[PathBuf], cfg: &RunConfig, geo: Option<&GeoDb>) -> Result<Self, Vec<String>> {
        let sources: Vec<PolicySource> = files.iter().cloned().map(PolicySource::File).collect();
        Self::load_sources(&sources, &[], cfg, geo)
    }

    /// Loads and checks policies from any source (files, or a control-plane bundle's workload
    /// policies), their `from.workloads` selectors resolved against `remote`; every problem at
    /// once.
    pub fn load_sources(
        sources: &[PolicySource],
        remote: &[RemoteWorkload],
        cfg: &RunConfig,
        geo: Option<&GeoDb>,
    ) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut loaded = Vec::new();
        for source in sources {
            let mut loader = PolicyLoader::new(source.clone(), cfg, Vec::new());
            loader.remote_workloads = remote.to_vec();
            match loader.load(geo) {
                Ok(l) if l.policy.workload_selector.is_none() => errors.push(format!(
                    "workload policy {}: policy \"{}\" has no spec.workloadSelector (only the node default governs unselected workloads)",
                    source.label(),
                    l.policy.name
                )),
                Ok(l) => loaded.push((loader, l)),
                Err(e) => errors.extend(e.0),
            }
        }
        let named: Vec<(String, &ringfence_policy::Policy)> =
            loaded.iter().map(|(l, p)| (l.source.label(), &p.policy)).collect();
        let refs: Vec<(&str, &ringfence_policy::Policy)> =
            named.iter().map(|(s, p)| (s.as_str(), *p)).collect();
        errors.extend(selector_conflicts(&refs).iter().map(ToString::to_string));
        let mut seen = BTreeMap::new();
        for (loader, l) in &loaded {
            if let Some(first) = seen.insert(l.policy.name.clone(), loader.source.label()) {
                errors.push(format!(
                    "policy name \"{}\" is used by {} and {}: workload policies need distinct metadata.name",
                    l.policy.name,
                    first,
                    loader.source.label()
                ));
            }
        }
        if loaded.len() >= SELFTEST_POLICY as usize {
            errors.push(format!(
                "{} workload policies: at most {} per node",
                loaded.len(),
                SELFTEST_POLICY - 1
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let indices =
            assign(&loaded.iter().map(|(_, l)| l.policy.name.clone()).collect::<Vec<_>>(), &cfg.state_dir);
        let list = loaded
            .into_iter()
            .zip(indices)
            .map(|((loader, loaded), index)| WorkloadPolicy { index, loader, loaded })
            .collect();
        Ok(Self { list, remote: remote.to_vec(), state_dir: cfg.state_dir.clone() })
    }

    /// The policy whose selector matches `labels` (index, name); an error naming both when two
    /// do (the load check makes that impossible for the policies it accepted).
    pub fn choose(&self, labels: &Labels) -> Result<Option<(u32, String)>, String> {
        let mut matching = self
            .list
            .iter()
            .filter(|p| p.loaded.policy.workload_selector.as_ref().is_some_and(|s| s.matches(labels)));
        match (matching.next(), matching.next()) {
            (Some(a), Some(b)) => Err(format!(
                "policies \"{}\" and \"{}\" both select this workload",
                a.loaded.policy.name, b.loaded.policy.name
            )),
            (first, _) => Ok(first.map(|p| (p.index, p.loaded.policy.name.clone()))),
        }
    }

    /// Writes every policy into the kernel (each its own atomic switch) and records the
    /// generations for naming events; keeps the indices on disk.
    pub fn apply_all(
        &self,
        maps: &mut PinnedMaps,
        geo_db: Option<&GeoDb>,
        names: &mut RuleNames,
        trigger: &str,
    ) -> Result<(), AgentError> {
        for p in &self.list {
            let l = &p.loaded;
            let generation =
                maps.apply(p.index, &l.compiled, l.ingress.as_ref(), &geo::info(geo_db, &l.compiled))?;
            names.insert(generation, std::sync::Arc::new(l.policy.clone()));
            info!(trigger, policy = %l.policy.name, index = p.index, generation,
                selector = ?l.policy.workload_selector.as_ref().map(|s| &s.match_labels),
                ingress = l.ingress.is_some(), "workload policy applied");
        }
        save(&self.list, &self.state_dir);
        Ok(())
    }

    /// The indices `self` uses.
    pub fn indices(&self) -> Vec<u32> {
        self.list.iter().map(|p| p.index).collect()
    }
}

/// Indices for `names`: the one kept on disk for a known name, else the lowest free one.
fn assign(names: &[String], state_dir: &Path) -> Vec<u32> {
    let kept: BTreeMap<String, u32> = files::read_optional(&state_dir.join(INDEX_FILE))
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut used: Vec<u32> = names.iter().filter_map(|n| kept.get(n).copied()).collect();
    names
        .iter()
        .map(|n| match kept.get(n) {
            Some(i) if (1..SELFTEST_POLICY).contains(i) => *i,
            _ => {
                let free =
                    (1..SELFTEST_POLICY).find(|i| !used.contains(i)).expect("fewer policies than indices");
                used.push(free);
                free
            }
        })
        .collect()
}

fn save(list: &[WorkloadPolicy], state_dir: &Path) {
    let map: BTreeMap<&str, u32> = list.iter().map(|p| (p.loaded.policy.name.as_str(), p.index)).collect();
    let text = serde_json::to_string_pretty(&map).expect("serialize indices");
    if let Err(e) = files::write_atomic(&state_dir.join(INDEX_FILE), text.as_bytes(), 0o644) {
        tracing::warn!(error = %e, "could not keep the workload policy indices");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_kept_by_name_and_new_names_take_the_lowest_free_one() {
        let dir = std::env::temp_dir().join(format!("rf-wl-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(INDEX_FILE), r#"{"us": 1, "eu": 4}"#).expect("write");
        let names = ["eu", "new", "us", "other"].map(String::from);
        assert_eq!(assign(&names, &dir), [4, 2, 1, 3]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
