//! The pinned kernel maps, opened by path: the policies' tables (`tables`: the per-policy
//! double-buffered swap), the workload cgroups (`workloads`), the DNS names, resolvers and
//! learned addresses (`dns`) and the counters.
//!
//! `apply` writes a compiled policy into the slot of that policy the kernel is *not* reading,
//! then flips the policy's entry of `RF_SLOTS` with one 4-byte write: every verdict sees either
//! the old or the new policy whole, and no other policy is touched.
mod dns;
mod mirror;
mod tables;
mod workloads;

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use ringfence_common::{
    table_id, BudgetConfig, CgPolicy, Endpoint, GeoEntry, GeoInfo, ListKey, MatchList, PolicyConfig,
    PrefixEntry, WorkloadState, ACTIVE_MAP, ALLOW_V4_MAP, ALLOW_V6_MAP, BUDGET_CONFIG_MAP, CGCACHE_MAP,
    CONFIG_MAP, CONFIG_RAW_POLICY, DENY_V4_MAP, DENY_V6_MAP, DIR_EGRESS, DNS_SERVERS_MAP, ENCRYPT_V4_MAP,
    ENCRYPT_V6_MAP, GEO_INFO_MAP, GEO_V4_MAP, GEO_V6_MAP, HOME_V4_MAP, HOME_V6_MAP, LEARNED_MAP, LIST_MAP,
    MAX_TABLES, NAMES_MAP, SINK_V4_MAP, SINK_V6_MAP, STATS_MAP, STAT_ALLOWED, STAT_AUDITED,
    STAT_BACKSTOP_DECIDED, STAT_BACKSTOP_DROPPED, STAT_DENIED, STAT_EVENTS_DROPPED, STAT_EXFIL_BLOCKED,
    STAT_NONIP_DROPPED, STAT_PACKETS_DROPPED, STAT_PLAINTEXT_DROPPED, STAT_SOCKETS_REFUSED,
    STAT_SOCKET_GUARD_SEEN, WG_ENDPOINTS_MAP, WORKLOADS_MAP, WORKLOAD_STATE_MAP,
};
use serde::Serialize;

pub use dns::{narrow, wide, DnsMaps};
use mirror::Mirrored;

use crate::error::AgentError;

/// Where the maps are pinned inside the agent's bpffs directory.
pub fn maps_dir(bpffs: &Path) -> PathBuf {
    bpffs.join("maps")
}

/// Opens the map pinned as `name` in the maps directory `dir` ([`maps_dir`]).
pub(crate) fn open<T>(dir: &Path, name: &str) -> Result<T, AgentError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let path = dir.join(name);
    let data = MapData::from_pin(&path).map_err(|e| {
        AgentError::map(
            name,
            format!("open pin {}: {e} (is the agent's enforcement loaded?)", path.display()),
        )
    })?;
    let map = Map::from_map_data(data).map_err(|e| AgentError::map(name, e))?;
    T::try_from(map).map_err(|e| AgentError::map(name, e))
}

/// Counters kept by the kernel programs, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// connect()/sendmsg() calls allowed, denied, and allowed only because of audit mode.
    pub allowed: u64,
    pub denied: u64,
    pub audited: u64,
    /// Events lost to a full ring buffer.
    pub events_dropped: u64,
    /// Packets dropped by the policy on the packet path (tcx on the uplinks).
    pub packets_dropped: u64,
    /// Packets of the enforced cgroup dropped by the policy in its backstop (cgroup_skb).
    pub backstop_dropped: u64,
    /// Packets the backstop decided in full (no cached verdict on their socket).
    pub backstop_decided: u64,
    /// Plaintext packets to must-encrypt destinations dropped on the packet path.
    pub plaintext_dropped: u64,
    /// Connections refused and packets dropped because of exfiltration blocks.
    pub exfil_blocked: u64,
    /// Raw, packet and XDP sockets the enforced cgroup was refused.
    pub sockets_refused: u64,
    /// Non-IP frames of the enforced cgroup dropped on the packet path.
    pub nonip_dropped: u64,
    /// Socket creations the socket guard looked at (the start-up self-check adds one).
    pub socket_guard_seen: u64,
    /// Inbound connections and datagrams refused by workloads' ingress rules.
    pub ingress_dropped: u64,
    /// DNS answers from a pinned resolver to a question naming an allowed domain.
    pub dns_matched: u64,
    /// Addresses learned (or refreshed) from DNS answers.
    pub dns_learned: u64,
    /// DNS answers not learned: not from a pinned resolver, or unreadable.
    pub dns_ignored: u64,
    /// Addresses that entered the learned set as new entries (see [`Stats::dns_evicted`]).
    pub dns_new: u64,
    /// Packets dropped because an exfiltration budget was spent, or over the rate cap.
    pub budget_dropped: u64,
    pub rate_dropped: u64,
    /// Packets refused because a workload's budget state could not be created (fail closed).
    pub budget_untracked: u64,
    /// Per-destination budget entries created (against `MAX_BUDGET_DESTS`: LRU evictions).
    pub budget_destinations: u64,
}

impl Stats {
    /// Learned addresses the LRU map evicted to make room (nothing else removes entries): the
    /// new entries beyond its capacity. Non-zero means the learned set is full and the least
    /// recently used addresses are being forgotten (their next connect needs a fresh lookup).
    pub fn dns_evicted(&self) -> u64 {
        self.dns_new.saturating_sub(u64::from(ringfence_common::MAX_LEARNED))
    }
}

/// A policy the kernel is reading now.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ActivePolicy {
    /// Policy index (0: the node default).
    pub policy: u32,
    pub slot: u32,
    pub generation: u32,
    pub default_action: &'static str,
    pub mode: &'static str,
    /// `spec.rawSockets`: `deny` or `policy`.
    pub raw_sockets: &'static str,
}

/// Handles on every pinned map.
pub struct PinnedMaps {
    deny4: Mirrored<8, PrefixEntry>,
    allow4: Mirrored<8, PrefixEntry>,
    deny6: Mirrored<20, PrefixEntry>,
    allow6: Mirrored<20, PrefixEntry>,
    geo4: Mirrored<8, GeoEntry>,
    geo6: Mirrored<20, GeoEntry>,
    geo_info: Array<MapData, GeoInfo>,
    enc4: Mirrored<8, u32>,
    enc6: Mirrored<20, u32>,
    home4: Mirrored<8, u32>,
    home6: Mirrored<20, u32>,
    sink4: Mirrored<8, u32>,
    sink6: Mirrored<20, u32>,
    budget_cfg: Array<MapData, BudgetConfig>,
    wg_peers: HashMap<MapData, Endpoint, u32>,
    lists: HashMap<MapData, ListKey, MatchList>,
    config: Array<MapData, PolicyConfig>,
    active: Array<MapData, u32>,
    workloads: HashMap<MapData, u64, u32>,
    wl_state: Array<MapData, WorkloadState>,
    cg_cache: HashMap<MapData, u64, CgPolicy>,
    stats: PerCpuArray<MapData, u64>,
    /// Names, resolvers, learned addresses.
    pub dns: DnsMaps,
    /// The last generation handed out (unique across policies and agent restarts).
    generation: u32,
    /// How many match lists each table holds (read on first use, then kept in step).
    list_counts: Option<std::collections::HashMap<u32, u32>>,
    /// What `RF_WORKLOADS` holds (read once at open, then kept in step by `set_workloads`).
    workload_entries: std::collections::BTreeMap<u64, u32>,
}

impl PinnedMaps {
    /// Opens the maps pinned under `<bpffs>/maps`.
    pub fn open(bpffs: &Path) -> Result<Self, AgentError> {
        let dir = maps_dir(bpffs);
        let mut maps = Self {
            deny4: Mirrored::new(open(&dir, DENY_V4_MAP)?, DENY_V4_MAP),
            allow4: Mirrored::new(open(&dir, ALLOW_V4_MAP)?, ALLOW_V4_MAP),
            deny6: Mirrored::new(open(&dir, DENY_V6_MAP)?, DENY_V6_MAP),
            allow6: Mirrored::new(open(&dir, ALLOW_V6_MAP)?, ALLOW_V6_MAP),
            geo4: Mirrored::new(open(&dir, GEO_V4_MAP)?, GEO_V4_MAP),
            geo6: Mirrored::new(open(&dir, GEO_V6_MAP)?, GEO_V6_MAP),
            geo_info: open(&dir, GEO_INFO_MAP)?,
            enc4: Mirrored::new(open(&dir, ENCRYPT_V4_MAP)?, ENCRYPT_V4_MAP),
            enc6: Mirrored::new(open(&dir, ENCRYPT_V6_MAP)?, ENCRYPT_V6_MAP),
            home4: Mirrored::new(open(&dir, HOME_V4_MAP)?, HOME_V4_MAP),
            home6: Mirrored::new(open(&dir, HOME_V6_MAP)?, HOME_V6_MAP),
            sink4: Mirrored::new(open(&dir, SINK_V4_MAP)?, SINK_V4_MAP),
            sink6: Mirrored::new(open(&dir, SINK_V6_MAP)?, SINK_V6_MAP),
            budget_cfg: open(&dir, BUDGET_CONFIG_MAP)?,
            wg_peers: open(&dir, WG_ENDPOINTS_MAP)?,
            lists: open(&dir, LIST_MAP)?,
            config: open(&dir, CONFIG_MAP)?,
            active: open(&dir, ACTIVE_MAP)?,
            workloads: open(&dir, WORKLOADS_MAP)?,
            wl_state: open(&dir, WORKLOAD_STATE_MAP)?,
            cg_cache: open(&dir, CGCACHE_MAP)?,
            stats: open(&dir, STATS_MAP)?,
            dns: DnsMaps {
                names: open(&dir, NAMES_MAP)?,
                servers: open(&dir, DNS_SERVERS_MAP)?,
                learned: open(&dir, LEARNED_MAP)?,
            },
            generation: 0,
            list_counts: None,
            workload_entries: Default::default(),
        };
        maps.generation = maps.max_generation()?;
        maps.workload_entries = maps.workloads()?;
        Ok(maps)
    }

    /// A generation no table has held yet.
    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1).max(1);
        self.generation
    }

    /// The slot of `policy` the kernel reads and its egress settings.
    pub fn active(&self, policy: u32) -> Result<(u32, PolicyConfig), AgentError> {
        let slot = self.active.get(&policy, 0).map_err(|e| AgentError::map(ACTIVE_MAP, e))? & 1;
        let cfg = self
            .config
            .get(&table_id(policy, slot, DIR_EGRESS), 0)
            .map_err(|e| AgentError::map(CONFIG_MAP, e))?;
        Ok((slot, cfg))
    }

    /// The name rule under which `policy` learned `addr` (still in the active table and not
    /// expired), if any.
    fn learned_rule(
        &self,
        policy: u32,
        addr: std::net::IpAddr,
    ) -> Result<Option<ringfence_common::NameRule>, AgentError> {
        let (family, addr) = wide(addr);
        let Some(learned) = self.dns.learned_entry(&ringfence_common::LearnedKey { policy, family, addr })?
        else {
            return Ok(None);
        };
        if learned.expires_ns <= crate::clock::monotonic_ns() {
            return Ok(None);
        }
        let (slot, _) = self.active(policy)?;
        let key = ringfence_common::NameKey {
            table: table_id(policy, slot, DIR_EGRESS),
            kind: learned.kind,
            hash: learned.name_hash,
        };
        self.dns.name(&key)
    }

    /// The name pattern under which `policy` learned `addr` (still in the active table and not
    /// expired), if any.
    pub fn learned_name(&self, policy: u32, addr: std::net::IpAddr) -> Result<Option<String>, AgentError> {
        Ok(self.learned_rule(policy, addr)?.map(|r| String::from_utf8_lossy(r.text()).into_owned()))
    }

    /// Whether `addr` is a live address `policy` learned for an approved sink's name
    /// (`approvedSinks.fqdns`). A map that cannot be read counts as not approved.
    pub fn learned_sink(&self, policy: u32, addr: std::net::IpAddr) -> bool {
        match self.learned_rule(policy, addr) {
            Ok(rule) => rule.is_some_and(|r| r.flags & ringfence_common::NAME_SINK != 0),
            Err(e) => {
                tracing::warn!(error = %e, %addr, "approved sinks by name: the learned set could not be read");
                false
            }
        }
    }

    /// A printable summary of [`PinnedMaps::active`].
    pub fn active_policy(&self, policy: u32) -> Result<ActivePolicy, AgentError> {
        let (slot, cfg) = self.active(policy)?;
        Ok(ActivePolicy {
            policy,
            slot,
            generation: cfg.generation,
            default_action: if cfg.default_action == ringfence_common::ACTION_ALLOW {
                "allow"
            } else {
                "deny"
            },
            mode: if cfg.mode == ringfence_common::MODE_AUDIT { "audit" } else { "enforce" },
            raw_sockets: if cfg.flags & CONFIG_RAW_POLICY != 0 { "policy" } else { "deny" },
        })
    }

    /// The geo database information of `policy`'s active egress table.
    pub fn geo_info(&self, policy: u32) -> Result<GeoInfo, AgentError> {
        let (slot, _) = self.active(policy)?;
        self.geo_info
            .get(&table_id(policy, slot, DIR_EGRESS), 0)
            .map_err(|e| AgentError::map(GEO_INFO_MAP, e))
    }

    /// The highest generation any table holds (generations are unique across policies, so an
    /// event's generation names the policy that decided it).
    pub fn max_generation(&self) -> Result<u32, AgentError> {
        let mut max = 0;
        for t in 0..MAX_TABLES {
            max = max.max(self.config.get(&t, 0).map_err(|e| AgentError::map(CONFIG_MAP, e))?.generation);
        }
        Ok(max)
    }

    /// Replaces the set of WireGuard peer endpoints: UDP to these is the tunnel, the only way
    /// must-encrypt traffic may leave.
    pub fn set_wg_endpoints(&mut self, endpoints: &[std::net::SocketAddr]) -> Result<(), AgentError> {
        let wanted: Vec<Endpoint> = endpoints
            .iter()
            .map(|sa| {
                let mut addr = [0u8; 16];
                let family = match sa.ip() {
                    std::net::IpAddr::V4(a) => {
                        addr[..4].copy_from_slice(&a.octets());
                        4
                    }
                    std::net::IpAddr::V6(a) => {
                        addr = a.octets();
                        6
                    }
                };
                Endpoint { addr, port: u32::from(sa.port()), family }
            })
            .collect();
        let stale: Vec<Endpoint> = self
            .wg_peers
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AgentError::map(WG_ENDPOINTS_MAP, e))?
            .into_iter()
            .filter(|k| !wanted.contains(k))
            .collect();
        for k in stale {
            self.wg_peers.remove(&k).map_err(|e| AgentError::map(WG_ENDPOINTS_MAP, e))?;
        }
        for k in &wanted {
            self.wg_peers.insert(k, 0, 0).map_err(|e| AgentError::map(WG_ENDPOINTS_MAP, e))?;
        }
        Ok(())
    }

    /// Sums the per-CPU counters.
    pub fn stats(&self) -> Result<Stats, AgentError> {
        let sum = |i: u32| -> Result<u64, AgentError> {
            let v = self.stats.get(&i, 0).map_err(|e| AgentError::map(STATS_MAP, e))?;
            Ok(v.iter().sum())
        };
        Ok(Stats {
            allowed: sum(STAT_ALLOWED)?,
            denied: sum(STAT_DENIED)?,
            audited: sum(STAT_AUDITED)?,
            events_dropped: sum(STAT_EVENTS_DROPPED)?,
            packets_dropped: sum(STAT_PACKETS_DROPPED)?,
            backstop_dropped: sum(STAT_BACKSTOP_DROPPED)?,
            backstop_decided: sum(STAT_BACKSTOP_DECIDED)?,
            plaintext_dropped: sum(STAT_PLAINTEXT_DROPPED)?,
            exfil_blocked: sum(STAT_EXFIL_BLOCKED)?,
            sockets_refused: sum(STAT_SOCKETS_REFUSED)?,
            nonip_dropped: sum(STAT_NONIP_DROPPED)?,
            socket_guard_seen: sum(STAT_SOCKET_GUARD_SEEN)?,
            ingress_dropped: sum(ringfence_common::STAT_INGRESS_DROPPED)?,
            dns_matched: sum(ringfence_common::STAT_DNS_MATCHED)?,
            dns_learned: sum(ringfence_common::STAT_DNS_LEARNED)?,
            dns_ignored: sum(ringfence_common::STAT_DNS_IGNORED)?,
            dns_new: sum(ringfence_common::STAT_DNS_NEW)?,
            budget_dropped: sum(ringfence_common::STAT_BUDGET_DROPPED)?,
            rate_dropped: sum(ringfence_common::STAT_RATE_DROPPED)?,
            budget_untracked: sum(ringfence_common::STAT_BUDGET_UNTRACKED)?,
            budget_destinations: sum(ringfence_common::STAT_BUDGET_DEST_NEW)?,
        })
    }
}
