//! Flow counters from the packet path: reading the per-CPU flow map, summing CPUs, joining the
//! TCP sequence accounting (bytes without retransmissions, finished or not), expiring idle flows.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use aya::maps::{HashMap, MapData, PerCpuHashMap};
use ringfence_common::{FlowKey, FlowStats, TcpSeq, FLOWS_MAP, INBOUND_MAP, TCPSEQ_FINISHED, TCPSEQ_MAP};
use rustc_hash::FxHashMap;
use serde::Serialize;

pub mod sample;

pub use sample::{FlowId, FlowSample};

use crate::{
    clock::monotonic_ns,
    error::AgentError,
    maps::{maps_dir, open},
};

/// One flow, summed over CPUs: one element of `ringfence-agent flows --json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Flow {
    /// `tcp`, `udp`, `icmp` (ICMP and ICMPv6), or the IP protocol number.
    pub protocol: String,
    /// This node's address and port (the echo identifier for ICMP echo, else 0 without ports).
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    /// Transport payload bytes and packets sent (retransmissions included).
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// TCP only: payload bytes that advanced the sequence number (retransmissions not counted
    /// again); `null` for other protocols.
    pub tx_data_bytes: Option<u64>,
    /// TCP only: this side sent FIN or RST.
    pub finished: bool,
    /// Transport payload bytes and packets received.
    pub rx_bytes: u64,
    pub rx_packets: u64,
    /// cgroup v2 id of the sending socket; 0 when no local socket sent (forwarded traffic).
    pub cgroup_id: u64,
    /// Egress packets dropped by the policy, the encryption requirement or a block.
    pub dropped_packets: u64,
    /// Seconds since the first and the last packet.
    pub first_seen_secs_ago: f64,
    pub last_seen_secs_ago: f64,
}

fn addr(bytes: &[u8; 16], family: u32) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

/// Sums the per-CPU values of one flow; `seq` is its TCP sequence accounting, if any.
pub fn sum(
    key: &FlowKey,
    per_cpu: impl IntoIterator<Item = FlowStats>,
    seq: Option<&TcpSeq>,
    now_ns: u64,
) -> Flow {
    let mut f = FlowStats::default();
    let mut first = u64::MAX;
    for v in per_cpu {
        f.tx_bytes += v.tx_bytes;
        f.tx_packets += v.tx_packets;
        f.rx_bytes += v.rx_bytes;
        f.rx_packets += v.rx_packets;
        f.dropped_packets += v.dropped_packets;
        f.last_seen_ns = f.last_seen_ns.max(v.last_seen_ns);
        if v.first_seen_ns != 0 {
            first = first.min(v.first_seen_ns);
        }
        if v.cgroup_id != 0 {
            f.cgroup_id = v.cgroup_id;
        }
    }
    let ago = |t: u64| now_ns.saturating_sub(t) as f64 / 1e9;
    Flow {
        protocol: match key.proto {
            6 => "tcp".into(),
            17 => "udp".into(),
            1 | 58 => "icmp".into(),
            p => p.to_string(),
        },
        local: addr(&key.local, key.family),
        local_port: key.local_port,
        remote: addr(&key.remote, key.family),
        remote_port: key.remote_port,
        tx_bytes: f.tx_bytes,
        tx_packets: f.tx_packets,
        tx_data_bytes: seq.map(|s| s.data_bytes),
        finished: seq.is_some_and(|s| s.flags & TCPSEQ_FINISHED != 0),
        rx_bytes: f.rx_bytes,
        rx_packets: f.rx_packets,
        cgroup_id: f.cgroup_id,
        dropped_packets: f.dropped_packets,
        first_seen_secs_ago: if first == u64::MAX { 0.0 } else { ago(first) },
        last_seen_secs_ago: ago(f.last_seen_ns),
    }
}

/// The pinned flow maps.
pub struct FlowTable {
    flows: PerCpuHashMap<MapData, FlowKey, FlowStats>,
    inbound: HashMap<MapData, FlowKey, u32>,
    tcpseq: HashMap<MapData, FlowKey, TcpSeq>,
    /// Second handles on the flow and sequence maps for batch reads (aya's map types hide their fd).
    flows_fd: MapData,
    tcpseq_fd: MapData,
    cpus: usize,
    /// The kernel refused batch reads once: iterate from then on.
    no_batch: std::cell::Cell<bool>,
}

impl FlowTable {
    pub fn open(bpffs: &Path) -> Result<Self, AgentError> {
        let dir = maps_dir(bpffs);
        let fd = |name: &str| MapData::from_pin(dir.join(name)).map_err(|e| AgentError::map(name, e));
        Ok(Self {
            flows: open(&dir, FLOWS_MAP)?,
            inbound: open(&dir, INBOUND_MAP)?,
            tcpseq: open(&dir, TCPSEQ_MAP)?,
            flows_fd: fd(FLOWS_MAP)?,
            tcpseq_fd: fd(TCPSEQ_MAP)?,
            cpus: aya::util::nr_cpus()
                .map_err(|(what, e)| AgentError::map(FLOWS_MAP, format!("{what}: {e}")))?,
            no_batch: std::cell::Cell::new(false),
        })
    }

    /// Calls `f` for every flow with its per-CPU counters: batched where the kernel can.
    fn for_each(&self, mut f: impl FnMut(&FlowKey, &[FlowStats])) -> Result<(), AgentError> {
        if !self.no_batch.get() {
            let fd = std::os::fd::AsFd::as_fd(self.flows_fd.fd());
            let mut seen = 0usize;
            match crate::map_batch::for_each_per_cpu(fd, self.cpus, |k, v| {
                seen += 1;
                f(k, v)
            }) {
                Ok(()) => return Ok(()),
                Err(e) if seen == 0 => {
                    tracing::warn!(error = %e, "batch reads of the flow table refused; iterating instead");
                    self.no_batch.set(true);
                }
                Err(e) => return Err(AgentError::map(FLOWS_MAP, e)),
            }
        }
        for item in self.flows.iter() {
            let (k, v) = item.map_err(|e| AgentError::map(FLOWS_MAP, e))?;
            f(&k, &v);
        }
        Ok(())
    }

    /// The TCP sequence accounting of every flow (batched where the kernel can).
    fn sequences(&self) -> Result<FxHashMap<FlowKey, TcpSeq>, AgentError> {
        let mut out = FxHashMap::default();
        if !self.no_batch.get() {
            // A shared (not per-CPU) map reads like a per-CPU one with a single CPU: the values
            // are 16 bytes, already 8-byte aligned.
            let fd = std::os::fd::AsFd::as_fd(self.tcpseq_fd.fd());
            if crate::map_batch::for_each_per_cpu(fd, 1, |k: &FlowKey, v: &[TcpSeq]| {
                out.insert(*k, v[0]);
            })
            .is_ok()
            {
                return Ok(out);
            }
            out.clear();
        }
        for item in self.tcpseq.iter() {
            let (k, v) = item.map_err(|e| AgentError::map(TCPSEQ_MAP, e))?;
            out.insert(k, v);
        }
        Ok(out)
    }

    /// Every flow, busiest first.
    pub fn flows(&self) -> Result<Vec<Flow>, AgentError> {
        let now = monotonic_ns();
        let seqs = self.sequences()?;
        let mut out = Vec::new();
        self.for_each(|k, v| out.push(sum(k, v.iter().copied(), seqs.get(k), now)))?;
        out.sort_by_key(|f| std::cmp::Reverse(f.tx_bytes + f.rx_bytes));
        Ok(out)
    }

    /// Every flow's cumulative bytes sent, for the exfiltration detector (no sorting, no names):
    /// for TCP the bytes that advanced the sequence, so retransmissions do not inflate a transfer.
    pub fn samples(&self) -> Result<Vec<FlowSample>, AgentError> {
        let seqs = self.sequences()?;
        let mut out = Vec::new();
        self.for_each(|k, v| {
            let (mut tx_bytes, mut cgroup_id, mut first) = (0u64, 0u64, u64::MAX);
            for s in v {
                tx_bytes += s.tx_bytes;
                if s.cgroup_id != 0 {
                    cgroup_id = s.cgroup_id;
                }
                if s.first_seen_ns != 0 {
                    first = first.min(s.first_seen_ns);
                }
            }
            let seq = seqs.get(k);
            if let Some(s) = seq {
                tx_bytes = s.data_bytes;
            }
            if tx_bytes == 0 {
                return;
            }
            out.push(FlowSample {
                id: FlowId {
                    cgroup_id,
                    local: addr(&k.local, k.family),
                    local_port: k.local_port,
                    remote: addr(&k.remote, k.family),
                    remote_port: k.remote_port,
                    protocol: k.proto as u8,
                    first_seen_ns: if first == u64::MAX { 0 } else { first },
                },
                tx_bytes,
                finished: seq.is_some_and(|s| s.flags & TCPSEQ_FINISHED != 0),
            });
        })?;
        Ok(out)
    }

    /// Deletes flows with no packet for `idle`; returns how many.
    pub fn expire(&mut self, idle: Duration) -> Result<usize, AgentError> {
        let cutoff = monotonic_ns().saturating_sub(idle.as_nanos() as u64);
        let mut stale = Vec::new();
        self.for_each(|k, v| {
            if v.iter().map(|s| s.last_seen_ns).max().unwrap_or(0) < cutoff {
                stale.push(*k);
            }
        })?;
        for k in &stale {
            // Gone already (LRU eviction) is fine.
            let _ = self.flows.remove(k);
            let _ = self.inbound.remove(k);
            let _ = self.tcpseq.remove(k);
        }
        Ok(stale.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cpus_and_orients_the_flow() {
        let mut key =
            FlowKey { proto: 6, family: 4, local_port: 40000, remote_port: 443, ..FlowKey::default() };
        key.local[..4].copy_from_slice(&[192, 0, 2, 1]);
        key.remote[..4].copy_from_slice(&[198, 51, 100, 10]);
        let cpu0 = FlowStats {
            tx_bytes: 100,
            tx_packets: 2,
            first_seen_ns: 5_000,
            last_seen_ns: 6_000,
            cgroup_id: 77,
            ..Default::default()
        };
        let cpu1 = FlowStats {
            tx_bytes: 50,
            rx_bytes: 9,
            rx_packets: 1,
            first_seen_ns: 4_000,
            last_seen_ns: 9_000,
            ..Default::default()
        };
        let seq = TcpSeq { data_bytes: 140, next_seq: 7, flags: TCPSEQ_FINISHED };
        let f = sum(&key, [cpu0, FlowStats::default(), cpu1], Some(&seq), 1_000_009_000);
        assert_eq!((f.tx_data_bytes, f.finished), (Some(140), true));
        assert_eq!((f.tx_bytes, f.tx_packets, f.rx_bytes, f.rx_packets, f.cgroup_id), (150, 2, 9, 1, 77));
        assert_eq!((f.local, f.remote), ("192.0.2.1".parse().unwrap(), "198.51.100.10".parse().unwrap()));
        assert_eq!(f.protocol, "tcp");
        assert!((f.last_seen_secs_ago - 1.0).abs() < 1e-9, "{f:?}");
        assert!((f.first_seen_secs_ago - 1.000005).abs() < 1e-9, "{f:?}");
    }
}
