//! Verdict events from the kernel ring buffer: decoding, naming rules, logging.
use std::{
    collections::VecDeque,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    sync::Arc,
};

use aya::maps::{Map, MapData, RingBuf};
use ringfence_common::{
    country_letters, Event, EVENTS_MAP, HOOKS, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, VERDICT_ALLOW,
    VERDICT_DENY, VERDICT_PLAINTEXT_DROP,
};
use ringfence_policy::Policy;
use serde::Serialize;
use tokio::io::unix::AsyncFd;

use crate::{error::AgentError, maps::maps_dir};

/// Decodes one ring buffer record; `None` if it is too short.
pub fn decode(bytes: &[u8]) -> Option<Event> {
    if bytes.len() < std::mem::size_of::<Event>() {
        return None;
    }
    // SAFETY: length checked; Event is plain old data valid for every bit pattern.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
}

/// An event as the agent reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VerdictRecord {
    pub verdict: &'static str,
    pub rule: String,
    pub rule_id: u32,
    /// The process (0 and "" when the kernel could not tell: a packet sent outside any process
    /// context by a cgroup no connect hook saw).
    pub pid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    /// The destination; `None` for a refused socket (it had none yet).
    pub dst: Option<IpAddr>,
    pub port: u16,
    pub protocol: String,
    /// A refused socket: its family and type, e.g. `packet/raw`, `inet6/raw`.
    pub socket: Option<String>,
    pub hook: &'static str,
    pub generation: u32,
    /// The destination's country when the geo database knows it and a country rule was consulted.
    pub country: Option<String>,
    /// The policy that decided (its metadata.name), when the agent still knows the generation.
    pub policy: Option<String>,
    /// Under `--cgroup-root`: the workload (cgroup path under the root) and its labels.
    pub workload: Option<String>,
    pub labels: Option<String>,
    /// An allow decided by a name rule (`to.fqdns`): the pattern that let the address in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// Remembers the policies of recent generations, so an event decided by the previous policy
/// (just before a reload) still gets the right rule name.
#[derive(Default)]
pub struct RuleNames {
    recent: VecDeque<(u32, Arc<Policy>)>,
}

impl RuleNames {
    pub fn insert(&mut self, generation: u32, policy: Arc<Policy>) {
        self.recent.push_front((generation, policy));
        // Each policy's current and previous generation (events already in the ring buffer
        // may name the one before a reload).
        self.recent.truncate(2 * ringfence_common::MAX_POLICIES as usize);
    }

    /// The `metadata.name` of the policy of `generation`, if still known.
    pub fn policy_name(&self, generation: u32) -> Option<&str> {
        self.recent.iter().find(|(g, _)| *g == generation).map(|(_, p)| p.name.as_str())
    }

    fn name(&self, generation: u32, rule_id: u32) -> String {
        if rule_id == ringfence_common::RULE_DEFAULT {
            return "default".to_string();
        }
        if rule_id == ringfence_common::RULE_UNKNOWN_COUNTRY {
            return "unknownCountry".to_string();
        }
        if rule_id == ringfence_common::RULE_EXFIL_BLOCK {
            return "exfiltration-block".to_string();
        }
        if rule_id == ringfence_common::RULE_RAW_SOCKETS {
            return "rawSockets".to_string();
        }
        if rule_id == ringfence_common::RULE_SOURCE_ROUTE {
            return "source-route".to_string();
        }
        if rule_id == ringfence_common::RULE_DNS_RESOLVER {
            return "dns-resolver".to_string();
        }
        if rule_id == ringfence_common::RULE_DNS_PINNED {
            return "dns-pinned".to_string();
        }
        self.recent
            .iter()
            .find(|(g, _)| *g == generation)
            .and_then(|(_, p)| p.rule(rule_id))
            .map(|r| r.name.clone())
            .unwrap_or_else(|| format!("rule#{rule_id} (generation {generation})"))
    }

    /// Turns a raw event into a record with names.
    pub fn record(&self, ev: &Event) -> VerdictRecord {
        let dst = match ev.family {
            4 => Some(IpAddr::V4(Ipv4Addr::new(ev.daddr[0], ev.daddr[1], ev.daddr[2], ev.daddr[3]))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(ev.daddr))),
            _ => None,
        };
        let comm_len = ev.comm.iter().position(|&b| b == 0).unwrap_or(ev.comm.len());
        VerdictRecord {
            verdict: match ev.verdict {
                VERDICT_ALLOW => "allow",
                VERDICT_DENY => "deny",
                VERDICT_PLAINTEXT_DROP => "plaintext-drop",
                _ => "audit-deny",
            },
            // Plaintext drops are decided by the encryption requirement, not by one rule.
            rule: if ev.verdict == VERDICT_PLAINTEXT_DROP {
                "encryption-required".to_string()
            } else {
                self.name(ev.generation, ev.rule_id)
            },
            rule_id: ev.rule_id,
            pid: ev.pid,
            comm: String::from_utf8_lossy(&ev.comm[..comm_len]).into_owned(),
            cgroup_id: ev.cgroup_id,
            dst,
            port: ev.dport as u16,
            protocol: protocol_name(ev.protocol),
            socket: matches!(
                ev.hook,
                ringfence_common::HOOK_SOCKET_CREATE
                    | ringfence_common::HOOK_SOCK_CREATE
                    | ringfence_common::HOOK_SETSOCKOPT
            )
            .then(|| socket_description(ev)),
            hook: HOOKS.get(ev.hook as usize).copied().unwrap_or("unknown"),
            generation: ev.generation,
            country: country_letters(ev.country).map(|c| String::from_utf8_lossy(&c).into_owned()),
            policy: self.policy(ev.generation).map(|p| p.name.clone()),
            workload: None,
            labels: None,
            domain: None,
        }
    }

    /// The policy of `generation`, if it is recent enough to be remembered.
    pub fn policy(&self, generation: u32) -> Option<&Arc<Policy>> {
        self.recent.iter().find(|(g, _)| *g == generation).map(|(_, p)| p)
    }
}

/// `tcp`, `udp`, `icmp`, `icmpv6`, else the protocol number.
pub fn protocol_name(proto: u32) -> String {
    match proto {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_ICMP => "icmp".into(),
        PROTO_ICMPV6 => "icmpv6".into(),
        p => p.to_string(),
    }
}

/// `family/type` of a socket, e.g. `packet/raw`, `inet/raw`, `xdp/raw`.
pub fn socket_name(family: u32, ty: u32) -> String {
    let family = match family {
        2 => "inet".to_string(),
        10 => "inet6".to_string(),
        17 => "packet".to_string(),
        44 => "xdp".to_string(),
        f => format!("family{f}"),
    };
    let ty = match ty {
        1 => "stream".to_string(),
        2 => "dgram".to_string(),
        3 => "raw".to_string(),
        5 => "seqpacket".to_string(),
        10 => "packet".to_string(),
        t => format!("type{t}"),
    };
    format!("{family}/{ty}")
}

/// A refused socket (`packet/raw`) or socket option (`packet/raw option PACKET_QDISC_BYPASS`).
fn socket_description(ev: &Event) -> String {
    let socket = socket_name(ev.sock_family, ev.sock_type);
    if ev.hook != ringfence_common::HOOK_SETSOCKOPT {
        return socket;
    }
    let option = match (ev.sock_level, ev.sock_opt) {
        (263, 20) => "PACKET_QDISC_BYPASS".to_string(),
        (283, n) => format!("SOL_XDP/{n}"),
        (level, n) => format!("{level}/{n}"),
    };
    format!("{socket} option {option}")
}

/// What a record was about, in text: `198.51.100.7:443/tcp`, or `packet/raw socket (768)`.
pub fn target_text(r: &VerdictRecord) -> String {
    match (&r.socket, r.dst) {
        (Some(s), _) => format!("{s} socket ({})", r.protocol),
        (None, Some(dst)) => format!("{dst}:{}/{}", r.port, r.protocol),
        (None, None) => format!("-:{}/{}", r.port, r.protocol),
    }
}

/// A verdict record as a spooled event for the control plane (denials, audit denials and
/// plaintext drops): the record's fields plus an id, a type, a time, a severity and a summary.
pub fn verdict_record_json(r: &VerdictRecord, id: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("record serializes");
    let severity = if r.verdict == "audit-deny" { "low" } else { "high" };
    let target = target_text(r);
    let explanation = format!(
        "{} by {}: pid {} ({}) in cgroup {} -> {target}",
        r.verdict, r.rule, r.pid, r.comm, r.cgroup_id
    );
    let extra = [
        ("id", serde_json::json!(id)),
        ("type", serde_json::json!("verdict")),
        ("unix_ms", serde_json::json!(crate::clock::unix_ms())),
        ("severity", serde_json::json!(severity)),
        ("explanation", serde_json::json!(explanation)),
    ];
    let obj = v.as_object_mut().expect("a record is an object");
    for (k, x) in extra {
        obj.insert(k.to_string(), x);
    }
    v
}

/// Logs one verdict record (target `ringfence::event`).
pub fn log_record(r: &VerdictRecord) {
    tracing::info!(
        target: "ringfence::event",
        verdict = r.verdict, rule = %r.rule, rule_id = r.rule_id, pid = r.pid, comm = %r.comm,
        cgroup_id = r.cgroup_id, dst = r.dst.map(tracing::field::display), port = r.port,
        protocol = %r.protocol, socket = r.socket.as_deref(), hook = r.hook, generation = r.generation,
        country = r.country.as_deref(), policy = r.policy.as_deref(), workload = r.workload.as_deref(),
        labels = r.labels.as_deref(), domain = r.domain.as_deref(),
        "verdict"
    );
}

/// Async reader of the pinned ring buffer.
pub struct EventReader {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl EventReader {
    pub fn open(bpffs: &Path) -> Result<Self, AgentError> {
        let path = maps_dir(bpffs).join(EVENTS_MAP);
        let data = MapData::from_pin(&path).map_err(|e| AgentError::map(EVENTS_MAP, e))?;
        let map = Map::from_map_data(data).map_err(|e| AgentError::map(EVENTS_MAP, e))?;
        let rb = RingBuf::try_from(map).map_err(|e| AgentError::map(EVENTS_MAP, e))?;
        // SAFETY: the RingBuf owns its map fd for its whole life and always returns that fd.
        let fd = unsafe { AsyncFd::register_with_interest(rb, tokio::io::Interest::READABLE) }
            .map_err(|e| AgentError::io("poll", &path, e.into_parts().1))?;
        Ok(Self { fd })
    }

    /// Waits until events are available, then drains them into `out`.
    pub async fn read(&mut self, out: &mut Vec<Event>) -> Result<(), AgentError> {
        let mut guard = self.fd.readable_mut().await.map_err(|e| AgentError::io("poll", EVENTS_MAP, e))?;
        Self::drain_into(guard.get_inner_mut(), out);
        guard.clear_ready();
        Ok(())
    }

    /// Takes whatever is buffered now, without waiting.
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        Self::drain_into(self.fd.get_mut(), out);
    }

    fn drain_into(rb: &mut RingBuf<MapData>, out: &mut Vec<Event>) {
        while let Some(item) = rb.next() {
            if let Some(ev) = decode(&item) {
                out.push(ev);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_common::{HOOK_CONNECT6, HOOK_SENDMSG4, VERDICT_AUDIT};

    fn policy(rule: &str) -> Arc<Policy> {
        let src = format!(
            "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{ name: t }}\nspec:\n  defaultAction: deny\n  egress:\n    - {{ name: {rule}, action: allow, to: {{ cidrs: [198.51.100.0/24] }} }}\n"
        );
        Arc::new(ringfence_policy::parse_policy(&src).expect("valid policy"))
    }

    fn event(family: u32, daddr: [u8; 16], generation: u32, rule_id: u32) -> Event {
        let mut comm = [0u8; 16];
        comm[..6].copy_from_slice(b"python");
        Event {
            ts_ns: 1,
            cgroup_id: 42,
            pid: 7,
            tid: 8,
            comm,
            daddr,
            family,
            dport: 443,
            protocol: PROTO_UDP,
            verdict: VERDICT_AUDIT,
            rule_id,
            hook: HOOK_SENDMSG4,
            generation,
            country: ringfence_common::country_code(*b"DE"),
            sock_family: 0,
            sock_type: 0,
            sock_level: 0,
            sock_opt: 0,
        }
    }

    #[test]
    fn decode_round_trips_and_rejects_short_records() {
        let ev = event(4, [198, 51, 100, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1, 1);
        // SAFETY: Event is repr(C) plain data without padding.
        let bytes =
            unsafe { std::slice::from_raw_parts((&ev as *const Event).cast::<u8>(), size_of::<Event>()) };
        assert_eq!(decode(bytes), Some(ev));
        assert_eq!(decode(&bytes[..40]), None);
    }

    #[test]
    fn records_name_rules_of_the_generation_that_decided() {
        let mut names = RuleNames::default();
        names.insert(1, policy("old-name"));
        names.insert(2, policy("new-name"));
        let v4 = event(4, [198, 51, 100, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1, 1);
        let r = names.record(&v4);
        assert_eq!(r.rule, "old-name");
        assert_eq!(r.country.as_deref(), Some("DE"));
        assert_eq!(r.dst, Some("198.51.100.7".parse::<IpAddr>().unwrap()));
        assert_eq!(
            (r.verdict, r.protocol.as_str(), r.hook, r.comm.as_str()),
            ("audit-deny", "udp", "rf_sendmsg4", "python")
        );
        assert_eq!(names.record(&event(4, v4.daddr, 2, 1)).rule, "new-name");
        assert_eq!(names.record(&event(4, v4.daddr, 2, 0)).rule, "default");
        assert_eq!(names.record(&event(4, v4.daddr, 9, 3)).rule, "rule#3 (generation 9)");
        let mut v6 = event(6, "2001:db8::5".parse::<Ipv6Addr>().unwrap().octets(), 2, 1);
        v6.hook = HOOK_CONNECT6;
        v6.verdict = VERDICT_DENY;
        let r = names.record(&v6);
        assert_eq!((r.dst, r.verdict, r.hook), (Some("2001:db8::5".parse().unwrap()), "deny", "rf_connect6"));
    }

    #[test]
    fn socket_refusals_have_a_socket_and_no_destination() {
        let mut names = RuleNames::default();
        names.insert(1, policy("r"));
        let mut ev = event(0, [0; 16], 1, ringfence_common::RULE_RAW_SOCKETS);
        (ev.hook, ev.verdict, ev.sock_family, ev.sock_type, ev.protocol) =
            (ringfence_common::HOOK_SOCKET_CREATE, VERDICT_DENY, 17, 3, 768);
        let r = names.record(&ev);
        assert_eq!((r.dst, r.socket.as_deref(), r.rule.as_str()), (None, Some("packet/raw"), "rawSockets"));
        assert_eq!(r.hook, "rf_socket_create");
        let json = verdict_record_json(&r, "x-1");
        assert_eq!(json["dst"], serde_json::Value::Null);
        assert!(json["explanation"].as_str().unwrap().contains("packet/raw socket"), "{json}");
        assert_eq!(protocol_name(58), "icmpv6");
        assert_eq!(socket_name(2, 3), "inet/raw");
    }
}
