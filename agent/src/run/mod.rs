//! `ringfence-agent run`: validate, load, apply, attach, then serve events and reloads until
//! SIGINT or SIGTERM. Stopping leaves the pinned enforcement in place.
//!
//! The steps, in order: [`prepare`] (the control plane, every check before the kernel is
//! touched), [`attach`] (policy into the maps, programs attached), [`start`] (mesh, metrics,
//! exfiltration shell, event reader, enforcer), [`serve`] (the event loop) and [`stop`].
mod attach;
mod prepare;
mod serve;
mod start;
mod stop;

use tokio::signal::unix::{signal, SignalKind};

pub use crate::config::{RunConfig, WgConfig};
use crate::error::AgentError;

pub async fn run(cfg: RunConfig) -> Result<(), AgentError> {
    run_with_wg(cfg, None).await
}

/// `run`, also owning a WireGuard interface when `wg_cfg` is given.
pub async fn run_with_wg(cfg: RunConfig, wg_cfg: Option<WgConfig>) -> Result<(), AgentError> {
    // Signals first, so a SIGHUP sent as soon as we report "enforcing" cannot kill us.
    let mut hup = signal(SignalKind::hangup()).map_err(|e| AgentError::io("signal", "SIGHUP", e))?;
    let shutdown = serve::shutdown_signal();
    tokio::pin!(shutdown);

    let prepared = prepare::prepare(cfg, wg_cfg).await?;
    let attached = attach::attach(&prepared).await?;
    let mut running = start::start(prepared, attached).await?;
    let why = serve::serve(&mut running, &mut hup, shutdown).await;
    stop::stop(running, why).await;
    Ok(())
}
