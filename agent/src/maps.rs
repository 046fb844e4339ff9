//! The pinned kernel maps, opened by path, and the double-buffered policy swap.
//!
//! `apply` writes a compiled policy into the slot the kernel is *not* reading, then flips
//! `RF_ACTIVE` with one 4-byte write: every verdict sees either the old or the new policy whole.
use std::path::{Path, PathBuf};

use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, HashMap, Map, MapData, MapError, PerCpuArray,
};
use ringfence_common::{
    Endpoint, GeoEntry, GeoInfo, MatchList, PolicyConfig, PrefixEntry, ACTIVE_MAP, ALLOW_V4_MAPS,
    ALLOW_V6_MAPS, CONFIG_CROSS_BORDER, CONFIG_MAP, CONFIG_RAW_POLICY, DENY_V4_MAPS, DENY_V6_MAPS,
    ENCRYPT_V4_MAPS, ENCRYPT_V6_MAPS, GEO_INFO_MAP, GEO_V4_MAPS, GEO_V6_MAPS, HOME_V4_MAPS, HOME_V6_MAPS,
    LIST_MAPS, STATS_MAP, STAT_ALLOWED, STAT_AUDITED, STAT_BACKSTOP_DECIDED, STAT_BACKSTOP_DROPPED,
    STAT_DENIED, STAT_EVENTS_DROPPED, STAT_EXFIL_BLOCKED, STAT_NONIP_DROPPED, STAT_PACKETS_DROPPED,
    STAT_PLAINTEXT_DROPPED, STAT_SOCKETS_REFUSED, STAT_SOCKET_GUARD_SEEN, WG_ENDPOINTS_MAP,
};
use ringfence_policy::Compiled;
use serde::Serialize;

use crate::error::AgentError;

type Trie<const N: usize, V = PrefixEntry> = LpmTrie<MapData, [u8; N], V>;

/// Prefix lists (e.g. must-encrypt destinations) as trie entries with an unused value.
fn as_set<const N: usize>(prefixes: &[([u8; N], u32)]) -> Vec<([u8; N], u32, u32)> {
    prefixes.iter().map(|(a, l)| (*a, *l, 0)).collect()
}

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

fn pair<T>(dir: &Path, names: [&str; 2]) -> Result<[T; 2], AgentError>
where
    T: TryFrom<Map, Error = MapError>,
{
    Ok([open(dir, names[0])?, open(dir, names[1])?])
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
}

/// The policy the kernel is reading now.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ActivePolicy {
    pub slot: u32,
    pub generation: u32,
    pub default_action: &'static str,
    pub mode: &'static str,
    /// `spec.rawSockets`: `deny` or `policy`.
    pub raw_sockets: &'static str,
}

/// Handles on every pinned map.
pub struct PinnedMaps {
    deny4: [Trie<4>; 2],
    allow4: [Trie<4>; 2],
    deny6: [Trie<16>; 2],
    allow6: [Trie<16>; 2],
    geo4: [Trie<4, GeoEntry>; 2],
    geo6: [Trie<16, GeoEntry>; 2],
    geo_info: Array<MapData, GeoInfo>,
    enc4: [Trie<4, u32>; 2],
    enc6: [Trie<16, u32>; 2],
    home4: [Trie<4, u32>; 2],
    home6: [Trie<16, u32>; 2],
    wg_peers: HashMap<MapData, Endpoint, u32>,
    lists: [Array<MapData, MatchList>; 2],
    config: Array<MapData, PolicyConfig>,
    active: Array<MapData, u32>,
    stats: PerCpuArray<MapData, u64>,
}

impl PinnedMaps {
    /// Opens the maps pinned under `<bpffs>/maps`.
    pub fn open(bpffs: &Path) -> Result<Self, AgentError> {
        let dir = maps_dir(bpffs);
        Ok(Self {
            deny4: pair(&dir, DENY_V4_MAPS)?,
            allow4: pair(&dir, ALLOW_V4_MAPS)?,
            deny6: pair(&dir, DENY_V6_MAPS)?,
            allow6: pair(&dir, ALLOW_V6_MAPS)?,
            geo4: pair(&dir, GEO_V4_MAPS)?,
            geo6: pair(&dir, GEO_V6_MAPS)?,
            geo_info: open(&dir, GEO_INFO_MAP)?,
            enc4: pair(&dir, ENCRYPT_V4_MAPS)?,
            enc6: pair(&dir, ENCRYPT_V6_MAPS)?,
            home4: pair(&dir, HOME_V4_MAPS)?,
            home6: pair(&dir, HOME_V6_MAPS)?,
            wg_peers: open(&dir, WG_ENDPOINTS_MAP)?,
            lists: pair(&dir, LIST_MAPS)?,
            config: open(&dir, CONFIG_MAP)?,
            active: open(&dir, ACTIVE_MAP)?,
            stats: open(&dir, STATS_MAP)?,
        })
    }

    /// The slot the kernel reads and its settings.
    pub fn active(&self) -> Result<(u32, PolicyConfig), AgentError> {
        let slot = self.active.get(&0, 0).map_err(|e| AgentError::map(ACTIVE_MAP, e))? & 1;
        let cfg = self.config.get(&slot, 0).map_err(|e| AgentError::map(CONFIG_MAP, e))?;
        Ok((slot, cfg))
    }

    /// A printable summary of [`PinnedMaps::active`].
    pub fn active_policy(&self) -> Result<ActivePolicy, AgentError> {
        let (slot, cfg) = self.active()?;
        Ok(ActivePolicy {
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

    /// The geo database information of the active slot.
    pub fn geo_info(&self) -> Result<GeoInfo, AgentError> {
        let (slot, _) = self.active()?;
        self.geo_info.get(&slot, 0).map_err(|e| AgentError::map(GEO_INFO_MAP, e))
    }

    /// Writes `compiled` (built with the database described by `geo`) into the inactive slot and
    /// makes it active. Returns the new generation.
    pub fn apply(&mut self, compiled: &Compiled, geo: &GeoInfo) -> Result<u32, AgentError> {
        let (cur, cur_cfg) = self.active()?;
        let next = (cur ^ 1) as usize;
        fill(&mut self.deny4[next], &compiled.v4.deny, DENY_V4_MAPS[next])?;
        fill(&mut self.allow4[next], &compiled.v4.allow, ALLOW_V4_MAPS[next])?;
        fill(&mut self.deny6[next], &compiled.v6.deny, DENY_V6_MAPS[next])?;
        fill(&mut self.allow6[next], &compiled.v6.allow, ALLOW_V6_MAPS[next])?;
        fill(&mut self.geo4[next], &compiled.geo4, GEO_V4_MAPS[next])?;
        fill(&mut self.geo6[next], &compiled.geo6, GEO_V6_MAPS[next])?;
        self.geo_info.set(next as u32, geo, 0).map_err(|e| AgentError::map(GEO_INFO_MAP, e))?;
        fill(&mut self.enc4[next], &as_set(&compiled.encrypt4), ENCRYPT_V4_MAPS[next])?;
        fill(&mut self.enc6[next], &as_set(&compiled.encrypt6), ENCRYPT_V6_MAPS[next])?;
        fill(&mut self.home4[next], &as_set(&compiled.home4), HOME_V4_MAPS[next])?;
        fill(&mut self.home6[next], &as_set(&compiled.home6), HOME_V6_MAPS[next])?;
        for (i, list) in compiled.lists.iter().enumerate() {
            self.lists[next].set(i as u32, list, 0).map_err(|e| AgentError::map(LIST_MAPS[next], e))?;
        }
        let generation = cur_cfg.generation.wrapping_add(1).max(1);
        let cfg = PolicyConfig {
            default_action: compiled.default_action,
            mode: compiled.mode,
            generation,
            unknown_action: compiled.unknown_action,
            flags: if compiled.cross_border { CONFIG_CROSS_BORDER } else { 0 }
                | if compiled.raw_policy { CONFIG_RAW_POLICY } else { 0 },
            _reserved: 0,
        };
        self.config.set(next as u32, cfg, 0).map_err(|e| AgentError::map(CONFIG_MAP, e))?;
        // The switch: one array write, atomic for the programs.
        self.active.set(0, next as u32, 0).map_err(|e| AgentError::map(ACTIVE_MAP, e))?;
        Ok(generation)
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
        })
    }
}

/// Replaces the contents of one trie with `entries`: stale keys removed, the rest upserted.
fn fill<const N: usize, V: aya::Pod>(
    trie: &mut Trie<N, V>,
    entries: &[([u8; N], u32, V)],
    name: &str,
) -> Result<(), AgentError>
where
    [u8; N]: aya::Pod,
{
    let wanted: std::collections::HashSet<(u32, [u8; N])> =
        entries.iter().map(|(a, l, _)| (*l, *a)).collect();
    let stale: Vec<Key<[u8; N]>> = trie
        .keys()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::map(name, e))?
        .into_iter()
        .filter(|k| !wanted.contains(&(k.prefix_len(), k.data())))
        .collect();
    for key in stale {
        trie.remove(&key).map_err(|e| AgentError::map(name, e))?;
    }
    for (addr, len, entry) in entries {
        trie.insert(&Key::new(*len, *addr), entry, 0).map_err(|e| AgentError::map(name, e))?;
    }
    Ok(())
}
