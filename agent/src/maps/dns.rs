//! The DNS maps: per table the name patterns of the allow rules (`RF_NAMES`) and the pinned
//! resolvers and DNS-over-HTTPS endpoints (`RF_DNSSRV`), written with the rest of a table;
//! and the addresses the kernel learned (`RF_LEARNED`), read for `ringfence-agent fqdn`.
use std::net::IpAddr;

use aya::maps::{HashMap, MapData, MapError};
use ringfence_common::{
    Learned, LearnedKey, NameKey, NameRule, ServerKey, DNS_SERVERS_MAP, LEARNED_MAP, NAMES_MAP, NAME_SINK,
    SERVER_DOH, SERVER_RESOLVER,
};
use ringfence_policy::Compiled;

use crate::error::AgentError;

/// (family, 16 bytes) of an address, the DNS maps' form.
pub fn wide(addr: IpAddr) -> (u32, [u8; 16]) {
    match addr.to_canonical() {
        IpAddr::V4(a) => {
            let mut w = [0u8; 16];
            w[..4].copy_from_slice(&a.octets());
            (4, w)
        }
        IpAddr::V6(a) => (6, a.octets()),
    }
}

/// The address of a (family, 16 bytes) key.
pub fn narrow(family: u32, addr: [u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::from([addr[0], addr[1], addr[2], addr[3]])
    } else {
        IpAddr::from(addr)
    }
}

/// Handles on the DNS maps.
pub struct DnsMaps {
    pub(super) names: HashMap<MapData, NameKey, NameRule>,
    pub(super) servers: HashMap<MapData, ServerKey, u32>,
    pub(super) learned: HashMap<MapData, LearnedKey, Learned>,
}

/// Removes `stale` keys (already gone is fine).
fn remove_all<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    stale: Vec<K>,
    name: &str,
) -> Result<(), AgentError> {
    for k in stale {
        match map.remove(&k) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(AgentError::map(name, e)),
        }
    }
    Ok(())
}

impl DnsMaps {
    /// Replaces `table`'s names and servers with those of `c`. Entries are added before stale
    /// ones are removed; the table is not active while it is filled anyway.
    pub fn fill(&mut self, table: u32, c: &Compiled) -> Result<(), AgentError> {
        let names: Vec<(NameKey, NameRule)> = c
            .names
            .iter()
            .map(|n| {
                let key = NameKey { table, kind: n.kind, hash: n.hash };
                let flags = if n.sink { NAME_SINK } else { 0 };
                let mut rule =
                    NameRule { list_id: n.list_id, rule_id: n.rule_id, flags, ..Default::default() };
                let text = n.pattern.0.as_bytes();
                rule.text[..text.len()].copy_from_slice(text);
                (key, rule)
            })
            .collect();
        for (k, v) in &names {
            self.names.insert(k, v, 0).map_err(|e| AgentError::map(NAMES_MAP, e))?;
        }
        let stale: Vec<NameKey> = self
            .names
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AgentError::map(NAMES_MAP, e))?
            .into_iter()
            .filter(|k| k.table == table && !names.iter().any(|(n, _)| n == k))
            .collect();
        remove_all(&mut self.names, stale, NAMES_MAP)?;

        let servers: Vec<(ServerKey, u32)> = c
            .doh
            .iter()
            .map(|a| (*a, SERVER_DOH))
            .chain(c.resolvers.iter().map(|a| (*a, SERVER_RESOLVER)))
            .map(|(a, kind)| {
                let (family, addr) = wide(a);
                (ServerKey { table, family, addr }, kind)
            })
            .collect();
        for (k, v) in &servers {
            self.servers.insert(k, v, 0).map_err(|e| AgentError::map(DNS_SERVERS_MAP, e))?;
        }
        let stale: Vec<ServerKey> = self
            .servers
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AgentError::map(DNS_SERVERS_MAP, e))?
            .into_iter()
            .filter(|k| k.table == table && !servers.iter().any(|(s, _)| s == k))
            .collect();
        remove_all(&mut self.servers, stale, DNS_SERVERS_MAP)
    }

    /// The name rule of `key`, if the table has it.
    pub fn name(&self, key: &NameKey) -> Result<Option<NameRule>, AgentError> {
        match self.names.get(key, 0) {
            Ok(r) => Ok(Some(r)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(AgentError::map(NAMES_MAP, e)),
        }
    }

    /// The learned entry of `key`, if any.
    pub fn learned_entry(&self, key: &LearnedKey) -> Result<Option<Learned>, AgentError> {
        match self.learned.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(AgentError::map(LEARNED_MAP, e)),
        }
    }

    /// Every learned entry (expired ones included; the kernel ignores those).
    pub fn learned(&self) -> Result<Vec<(LearnedKey, Learned)>, AgentError> {
        self.learned.iter().collect::<Result<Vec<_>, _>>().map_err(|e| AgentError::map(LEARNED_MAP, e))
    }
}
