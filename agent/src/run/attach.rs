//! `run`, step 2: the checked policy into the kernel maps, then the programs attached (pinned,
//! so enforcement outlives the agent). From here on the cgroup is enforced.
use tracing::info;

use super::prepare::Prepared;
use crate::{
    bpf, enforcer::log_geo, error::AgentError, events::RuleNames, geo, maps::PinnedMaps, workloads::Tracker,
};

/// The kernel side, enforcing.
pub(super) struct Attached {
    pub maps: PinnedMaps,
    /// The generation of the node default policy in force.
    pub generation: u32,
    /// The policies in force by generation (the workload policies'; start adds the default).
    pub names: RuleNames,
    /// Under `--cgroup-root`: the workloads, already in the kernel.
    pub tracker: Option<Tracker>,
}

/// Loads the programs, writes the policy, attaches (adopting what a previous agent pinned).
pub(super) async fn attach(p: &Prepared) -> Result<Attached, AgentError> {
    let (cfg, checked) = (&p.cfg, &p.checked);
    let adopted = bpf::has_pinned_links(&cfg.bpffs);
    let mut ebpf = bpf::load(&cfg.bpffs)?;
    let mut maps = PinnedMaps::open(&cfg.bpffs)?;
    // The policy is in the maps before the first hook is attached.
    let generation = maps.apply(
        ringfence_common::DEFAULT_POLICY,
        &checked.compiled,
        checked.ingress.as_ref(),
        &geo::info(checked.geo.as_ref(), &checked.compiled),
    )?;
    // Under --cgroup-root, the workload policies and the workloads that exist now are in the
    // maps before the first hook is attached too: no workload ever sees the node default.
    let mut names = RuleNames::default();
    let tracker = match &checked.workloads {
        Some((identity, policies)) => {
            policies.apply_all(&mut maps, checked.geo.as_ref(), &mut names, "start")?;
            let mut t =
                Tracker::start(&cfg.cgroup, identity, policies.clone(), &cfg.state_dir, cfg.watch_interval)
                    .await?;
            t.sync(&mut maps)?;
            Some(t)
        }
        None => {
            // Workload entries a previous run with --cgroup-root left behind would keep
            // governing their cgroups by policies this run does not maintain.
            maps.set_workloads(&Default::default())?;
            None
        }
    };
    let isolation =
        bpf::Isolation { packet_path: !cfg.interfaces.is_empty(), allow_weaker: cfg.allow_weaker_isolation };
    let hooks = bpf::attach_all(&mut ebpf, &checked.cgroup, &cfg.bpffs, isolation)?;
    bpf::attach_packet_path(&mut ebpf, &cfg.interfaces, &cfg.bpffs)?;
    drop(ebpf); // the pinned links and maps keep everything alive

    if let Some(db) = &checked.geo {
        log_geo(db, &checked.compiled, "geo database loaded");
    }
    info!(
        generation, adopted, policy = %checked.policy.name, mode = ?checked.policy.mode,
        default_action = ?checked.policy.default_action, rules = checked.policy.rules.len(),
        cgroup = %cfg.cgroup.display(), bpffs = %cfg.bpffs.display(),
        interfaces = %cfg.interfaces.join(","), packet_sockets = hooks.packet_sockets.as_str(),
        backstop_attached_ns = hooks.backstop_attached_ns,
        raw_sockets = checked.policy.raw_sockets.as_str(), "enforcing"
    );
    crate::notify::notify(&format!("READY=1\nSTATUS=enforcing generation {generation}"));
    Ok(Attached { maps, generation, names, tracker })
}
