//! `ringfence-agent run`: validate, load, apply, attach, then serve events and reloads until
//! SIGINT or SIGTERM. Stopping leaves the pinned enforcement in place.
use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::{
    bpf,
    error::AgentError,
    events::{log_record, EventReader, RuleNames},
    maps::PinnedMaps,
    preflight,
    watch::FileWatch,
};

/// Arguments of `run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub policy: PathBuf,
    pub cgroup: PathBuf,
    pub bpffs: PathBuf,
    /// How often the policy file is checked for changes.
    pub watch_interval: Duration,
    /// How long to keep draining events after a shutdown signal.
    pub grace: Duration,
}

/// Everything the loop needs to apply a new policy.
struct Enforcer {
    cfg: RunConfig,
    maps: PinnedMaps,
    names: RuleNames,
    watch: FileWatch,
    generation: u32,
}

impl Enforcer {
    /// Logs and empties a batch of events.
    fn report(&self, batch: &mut Vec<ringfence_common::Event>) {
        for ev in batch.drain(..) {
            log_record(&self.names.record(&ev));
        }
    }

    /// Re-reads the policy file; applies it if valid, otherwise keeps the one in force.
    fn reload(&mut self, trigger: &str) {
        self.watch.mark_seen();
        let (policy, compiled) = match preflight::check_policy(&self.cfg.policy) {
            Ok(ok) => ok,
            Err(errors) => {
                error!(trigger, generation = self.generation, errors = %errors.join("; "),
                    "policy rejected; the policy in force stays");
                return;
            }
        };
        match self.maps.apply(&compiled) {
            Ok(generation) => {
                self.generation = generation;
                self.names.insert(generation, Arc::new(policy.clone()));
                info!(trigger, generation, policy = %policy.name, rules = policy.rules.len(), "policy applied");
            }
            Err(e) => {
                error!(trigger, error = %e, "policy could not be written to the kernel; previous slot stays active")
            }
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

pub async fn run(cfg: RunConfig) -> Result<(), AgentError> {
    // Signals first, so a SIGHUP sent as soon as we report "enforcing" cannot kill us.
    let mut hup = signal(SignalKind::hangup()).map_err(|e| AgentError::io("signal", "SIGHUP", e))?;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    let checked = preflight::check(&cfg.policy, &cfg.cgroup, &cfg.bpffs)?;
    let adopted = bpf::has_pinned_links(&cfg.bpffs);
    let mut ebpf = bpf::load(&cfg.bpffs)?;
    let mut maps = PinnedMaps::open(&cfg.bpffs)?;
    let generation = maps.apply(&checked.compiled)?;
    bpf::attach_all(&mut ebpf, &checked.cgroup, &cfg.bpffs)?;
    drop(ebpf); // the pinned links and maps keep everything alive

    let mut names = RuleNames::default();
    names.insert(generation, Arc::new(checked.policy.clone()));
    info!(
        generation, adopted, policy = %checked.policy.name, mode = ?checked.policy.mode,
        default_action = ?checked.policy.default_action, rules = checked.policy.rules.len(),
        cgroup = %cfg.cgroup.display(), bpffs = %cfg.bpffs.display(), "enforcing"
    );

    let mut events = EventReader::open(&cfg.bpffs)?;
    let mut enforcer = Enforcer { watch: FileWatch::new(&cfg.policy), cfg, maps, names, generation };
    let mut tick = tokio::time::interval(enforcer.cfg.watch_interval);
    // Programs wake us only for a large backlog; drain small batches on this timer.
    let mut drain = tokio::time::interval(Duration::from_millis(ringfence_common::EVENTS_POLL_MS));
    let mut batch = Vec::new();
    let why = loop {
        tokio::select! {
            why = &mut shutdown => break why,
            _ = hup.recv() => enforcer.reload("SIGHUP"),
            _ = tick.tick() => if enforcer.watch.changed() { enforcer.reload("file change") },
            r = events.read(&mut batch) => {
                if let Err(e) = r { warn!(error = %e, "reading events"); }
                enforcer.report(&mut batch);
            }
            _ = drain.tick() => {
                events.drain(&mut batch);
                enforcer.report(&mut batch);
            }
        }
    };
    // Drain what the kernel already queued, bounded by the grace period.
    let deadline = tokio::time::Instant::now() + enforcer.cfg.grace;
    loop {
        events.drain(&mut batch);
        if batch.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        enforcer.report(&mut batch);
    }
    if let Ok(stats) = enforcer.maps.stats() {
        info!(
            allowed = stats.allowed,
            denied = stats.denied,
            audited = stats.audited,
            events_dropped = stats.events_dropped,
            "counters"
        );
    }
    info!(signal = why, bpffs = %enforcer.cfg.bpffs.display(),
        "stopping; enforcement stays pinned (run `ringfence-agent detach` to remove it)");
    Ok(())
}
