//! The running agent's state between events: the policy and geo database in force, the kernel
//! maps, rule names for events, and what to do on a reload, an event batch or a peer change.
use std::sync::Arc;

use ringfence_common::{Event, DEFAULT_POLICY};
use ringfence_policy::{geo::GeoDb, Compiled, Policy};
use tracing::{error, info};

use crate::{
    config::RunConfig,
    control::VerdictLane,
    events::{log_record, RuleNames},
    exfil::ExfilShell,
    geo,
    maps::PinnedMaps,
    metrics::Metrics,
    policy_load::{LoadedPolicy, PolicyErrors, PolicyLoader, PolicySource, RemoteWorkload},
    watch::FileWatch,
    wg,
    workloads::{Tracker, WorkloadPolicies},
};

/// Everything the loop needs to apply a new policy or database.
pub struct Enforcer {
    pub cfg: RunConfig,
    /// Loads the policy for every reload: SIGHUP, file change, bundle, geo database change.
    pub loader: PolicyLoader,
    pub maps: PinnedMaps,
    pub names: RuleNames,
    /// The policy file, when the policy comes from one.
    pub policy_watch: Option<FileWatch>,
    pub geo_watch: Vec<FileWatch>,
    /// The workload policy files (`--workload-policy`).
    pub workload_policy_watch: Vec<FileWatch>,
    pub geo: Option<GeoDb>,
    pub generation: u32,
    pub exfil: ExfilShell,
    /// Under a control plane: denials and plaintext drops, aggregated, are spooled for delivery.
    pub verdicts: Option<VerdictLane>,
    /// Under `--cgroup-root`: the workloads and their policies.
    pub workloads: Option<Tracker>,
}

pub fn log_geo(db: &GeoDb, compiled: &Compiled, what: &str) {
    let i = db.info();
    info!(
        database_type = %i.database_type, build_date = %i.build_date(), networks_v4 = i.networks_v4,
        networks_v6 = i.networks_v6, field = %i.field, geo_entries_v4 = compiled.geo4.len(),
        geo_entries_v6 = compiled.geo6.len(), countries = compiled.countries.len(), "{what}"
    );
}

impl Enforcer {
    /// Tells the packet path about changed WireGuard peer endpoints.
    pub fn sync_endpoints(&mut self, mesh: &mut wg::Mesh) {
        if let Some(endpoints) = mesh.take_changed_endpoints() {
            match self.maps.set_wg_endpoints(&endpoints) {
                Ok(()) => info!(endpoints = ?endpoints, "packet path: wireguard peer endpoints updated"),
                Err(e) => error!(error = %e, "packet path: updating wireguard peer endpoints failed"),
            }
            // The peers are approved sinks for exfiltration rules that say `peers: true`.
            self.exfil.set_peers(endpoints.iter().map(|e| ipnet::IpNet::from(e.ip())).collect());
        }
    }

    /// Logs and empties a batch of events (under a control plane also aggregating them for delivery).
    pub fn report(&mut self, batch: &mut Vec<Event>) {
        let now = std::time::Instant::now();
        // Budget crossings first: a batch may hold thousands of refusals to log.
        for ev in batch.iter().filter(|ev| ev.verdict == ringfence_common::VERDICT_BUDGET) {
            let policy = self.names.policy(ev.generation).cloned();
            self.exfil.on_budget(ev, policy.as_deref());
        }
        for ev in batch.drain(..) {
            if ev.verdict == ringfence_common::VERDICT_BUDGET {
                continue;
            }
            let mut record = self.names.record(&ev);
            let mut policy = DEFAULT_POLICY;
            if let Some((path, w)) = self.workloads.as_ref().and_then(|t| t.workload(ev.cgroup_id)) {
                record.workload = Some(path.display().to_string());
                record.labels = Some(w.label_string());
                policy = w.policy.as_ref().map_or(DEFAULT_POLICY, |(index, _)| *index);
            }
            if ev.verdict == ringfence_common::VERDICT_ALLOW {
                if let Some(dst) = record.dst {
                    record.domain = self.maps.learned_name(policy, dst).ok().flatten();
                }
            }
            log_record(&record);
            if let Some(v) = self.verdicts.as_mut() {
                v.observe(&record, now);
            }
        }
        if let Some(v) = self.verdicts.as_mut() {
            v.flush(now);
        }
    }

    /// Writes a compiled policy into the kernel; the previous one stays if that fails.
    pub fn apply(
        &mut self,
        policy: Policy,
        compiled: &Compiled,
        ingress: Option<&Compiled>,
        trigger: &str,
    ) -> bool {
        match self.maps.apply(DEFAULT_POLICY, compiled, ingress, &geo::info(self.geo.as_ref(), compiled)) {
            Ok(generation) => {
                self.generation = generation;
                info!(trigger, generation, policy = %policy.name, rules = policy.rules.len(), "policy applied");
                self.exfil.on_policy(&policy);
                self.names.insert(generation, Arc::new(policy));
                true
            }
            Err(e) => {
                error!(trigger, error = %e, "policy could not be written to the kernel; previous slot stays active");
                false
            }
        }
    }

    /// Copies the kernel counters into the metrics registry.
    pub fn export_counters(&self, m: &Metrics) {
        let Ok(s) = self.maps.stats() else { return };
        let verdicts = [("allowed", s.allowed), ("denied", s.denied), ("audited", s.audited)];
        for (verdict, n) in verdicts {
            m.set_counter(
                "ringfence_connections_total",
                "Connection verdicts, by verdict.",
                &[("verdict", verdict)],
                n,
            );
        }
        let drops = [
            ("policy", s.packets_dropped),
            ("plaintext", s.plaintext_dropped),
            ("exfil_block", s.exfil_blocked),
            ("ingress", s.ingress_dropped),
            ("exfil_budget", s.budget_dropped),
            ("exfil_rate", s.rate_dropped),
            ("exfil_untracked", s.budget_untracked),
        ];
        for (reason, n) in drops {
            m.set_counter(
                "ringfence_packets_dropped_total",
                "Packets dropped on the packet path, by reason.",
                &[("reason", reason)],
                n,
            );
        }
        for (result, n) in [("matched", s.dns_matched), ("ignored", s.dns_ignored)] {
            m.set_counter(
                "ringfence_dns_answers_total",
                "DNS answers to workloads: matched (from a pinned resolver, naming an allowed domain) or ignored (another source, or unreadable).",
                &[("result", result)],
                n,
            );
        }
        m.set_counter(
            "ringfence_dns_learned_total",
            "Addresses learned or refreshed from DNS answers.",
            &[],
            s.dns_learned,
        );
        if let Some(v) = self.verdicts.as_ref() {
            m.set_counter(
                "ringfence_live_flows_dropped_total",
                "Allow verdicts not delivered to the control plane's live flow view (queue full or upload failed; best effort, never audited).",
                &[],
                v.live_dropped(),
            );
        }
        m.set_counter(
            "ringfence_dns_learned_evicted_total",
            "Learned addresses evicted because the learned set (an LRU map) was full.",
            &[],
            s.dns_evicted(),
        );
        m.set_counter(
            "ringfence_events_dropped_total",
            "Events lost to a full ring buffer.",
            &[],
            s.events_dropped,
        );
        m.set_gauge(
            "ringfence_hooks_attached",
            "Enforcement hooks attached now (pinned links); 0: enforcement detached.",
            &[],
            crate::bpf::pinned_links(&self.cfg.bpffs).len() as f64,
        );
        m.set_gauge(
            "ringfence_policy_generation",
            "Generation of the policy in force.",
            &[],
            f64::from(self.generation),
        );
    }

    /// Loads the policy again (the file is re-read); applies it if valid, otherwise keeps the
    /// one in force.
    pub fn reload(&mut self, trigger: &str) -> Result<(), String> {
        if let Some(w) = self.policy_watch.as_mut() {
            w.mark_seen();
        }
        let loaded = self.loader.load(self.geo.as_ref());
        self.put_in_force(loaded, trigger)
    }

    /// Loads a policy from another source (a control-plane bundle); if it is applied, `loader`
    /// is the one reloads use from now on.
    pub fn switch(&mut self, loader: PolicyLoader, trigger: &str) -> Result<(), String> {
        let loaded = loader.load(self.geo.as_ref());
        self.put_in_force(loaded, trigger)?;
        self.loader = loader;
        Ok(())
    }

    fn put_in_force(
        &mut self,
        loaded: Result<LoadedPolicy, PolicyErrors>,
        trigger: &str,
    ) -> Result<(), String> {
        match loaded {
            Ok(LoadedPolicy { policy, compiled, ingress }) => {
                match self.apply(policy, &compiled, ingress.as_ref(), trigger) {
                    true => Ok(()),
                    false => Err("the policy could not be written to the kernel".into()),
                }
            }
            Err(errors) => {
                error!(trigger, generation = self.generation, %errors,
                    "policy rejected; the policy in force stays");
                Err(errors.to_string())
            }
        }
    }

    /// Re-reads the database; recompiles the policy with it; keeps the old one on any error.
    pub fn reload_geo(&mut self) {
        self.geo_watch.iter_mut().for_each(FileWatch::mark_seen);
        if let Some(w) = self.policy_watch.as_mut() {
            w.mark_seen();
        }
        let db = match geo::load(&self.cfg) {
            Ok(db) => db,
            Err(e) => return error!(error = %e, "geo database rejected; the database in force stays"),
        };
        match self.loader.load(db.as_ref()) {
            Ok(LoadedPolicy { policy, compiled, ingress }) => {
                let old = std::mem::replace(&mut self.geo, db);
                if self.apply(policy, &compiled, ingress.as_ref(), "geo database change") {
                    if let Some(db) = &self.geo {
                        log_geo(db, &compiled, "geo database applied");
                    }
                } else {
                    self.geo = old;
                }
            }
            Err(errors) => error!(%errors,
                "policy does not compile with the new geo database; the database in force stays"),
        }
    }

    /// The workloads for the node report (`None` without `--cgroup-root`).
    pub fn workload_report(&self) -> Option<Vec<ringfence_proto::api::WorkloadReport>> {
        let default = self.names.policy_name(self.generation);
        self.workloads.as_ref().map(|t| t.report(default))
    }

    /// Follows a change of the workload cgroups (or a rescan tick) into the kernel's entries;
    /// true if a workload came, went or changed.
    pub fn on_workloads(&mut self, wake: crate::workloads::Wake) -> bool {
        let Some(t) = self.workloads.as_mut() else { return false };
        match t.on_wake(wake, &mut self.maps) {
            Ok(changes) if !changes.is_empty() => {
                self.exfil.set_workloads(t.named());
                true
            }
            Ok(_) => false,
            Err(e) => {
                error!(error = %e, "workloads could not be written to the kernel; the entries in force stay");
                false
            }
        }
    }

    /// Loads the workload policies in force again from their sources (files re-read, the geo
    /// database in force); see [`Enforcer::put_workload_policies`]. True if they were applied.
    pub fn reload_workload_policies(&mut self, trigger: &str) -> bool {
        let Some(t) = self.workloads.as_ref() else { return false };
        let sources = t.policies.list.iter().map(|p| p.loader.source.clone()).collect();
        self.put_workload_policies(sources, trigger).is_ok()
    }

    /// Loads the workload policies from `sources` (e.g. a control-plane bundle's), with the
    /// remote workloads in force; applies them if every one is valid, else keeps those in force
    /// and says why. Indices no longer used are cleared after the workloads have moved off them.
    pub fn put_workload_policies(&mut self, sources: Vec<PolicySource>, trigger: &str) -> Result<(), String> {
        let remote = self.workloads.as_ref().map(|t| t.policies.remote.clone()).unwrap_or_default();
        let policies = self.load_workload_policies(&sources, &remote, trigger)?;
        self.install_workload_policies(policies, trigger)
    }

    /// Loads and checks workload policies without touching the kernel (so a bundle can be
    /// refused before any of it is in force).
    pub fn load_workload_policies(
        &self,
        sources: &[PolicySource],
        remote: &[RemoteWorkload],
        trigger: &str,
    ) -> Result<WorkloadPolicies, String> {
        if self.workloads.is_none() {
            return Err("workload policies need the agent to run with --cgroup-root".into());
        }
        WorkloadPolicies::load_sources(sources, remote, &self.cfg, self.geo.as_ref()).map_err(|errors| {
            let errors = errors.join("; ");
            error!(trigger, %errors, "workload policies rejected; the workload policies in force stay");
            errors
        })
    }

    /// Writes loaded workload policies into the kernel and moves the workloads onto them.
    pub fn install_workload_policies(
        &mut self,
        policies: WorkloadPolicies,
        trigger: &str,
    ) -> Result<(), String> {
        let Some(t) = self.workloads.as_mut() else {
            return Err("workload policies need the agent to run with --cgroup-root".into());
        };
        if let Err(e) = policies.apply_all(&mut self.maps, self.geo.as_ref(), &mut self.names, trigger) {
            error!(trigger, error = %e, "workload policies could not be written to the kernel");
            return Err(e.to_string());
        }
        let old = std::mem::replace(&mut t.policies, policies);
        // The tree is unchanged: every workload only chooses its policy again.
        if let Err(e) = t.refresh(&mut self.maps, true) {
            error!(error = %e, "workloads could not be written to the kernel");
        }
        let kept = t.policies.indices();
        for index in old.indices().into_iter().filter(|i| !kept.contains(i)) {
            if let Err(e) = self.maps.clear_policy(index) {
                error!(index, error = %e, "clearing a removed workload policy");
            }
        }
        Ok(())
    }
}
