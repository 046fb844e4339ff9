//! Parsing the frames the packet path sees (Ethernet, up to two VLAN tags, IPv4 with options,
//! IPv6 with extension headers, TCP/UDP/ICMP) with bounded loads.
use aya_ebpf::programs::TcContext;

use crate::iphdr::{is_echo_reply, is_echo_request, is_v6_ext, transport, v6_ext, Flag, IPPROTO_ICMPV6};

const ETH_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
pub const TCP_FIN: u32 = 0x01;
pub const TCP_SYN: u32 = 0x02;
pub const TCP_RST: u32 = 0x04;
pub const TCP_ACK: u32 = 0x10;

/// What one IP packet is: addresses in network order (IPv4 in the first 4 bytes), ports in host
/// order (0 for protocols without ports and for non-first fragments; the echo identifier for
/// ICMP echo).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Packet {
    pub family: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u32,
    pub sport: u16,
    pub dport: u16,
    /// The port the policy decides on: `dport`, or 0 for ICMP (whose `dport` is the echo id).
    pub vport: u16,
    pub _pad: u16,
    /// L4 payload bytes (for GSO packets: of all segments).
    pub payload: u32,
    pub tcp_flags: u32,
    pub tcp_seq: u32,
    /// ICMP/ICMPv6 type (0 for other protocols).
    pub icmp_type: u32,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u32,
    /// 1: the packet may carry a source route: IPv4 with options (any: the packet path does not
    /// walk them), IPv6 with a routing header with segments left or unreadable extension headers.
    pub routed: u32,
}

/// A frame on the packet path.
pub enum Frame {
    Ip(Packet),
    Arp,
    /// Any other ethertype (after at most two VLAN tags).
    Other,
}

impl Packet {
    /// Link-scope control the node's kernel sends without a socket of the enforced cgroup, passed
    /// exactly (by protocol, type and hop limit, never by address range): IPv6 neighbour discovery
    /// (hop limit 255, which routers never forward), MLD and IGMP (hop limit 1, to link-local
    /// multicast).
    #[inline(always)]
    pub fn is_link_control(&self) -> bool {
        if self.family == 4 {
            // IGMP to 224.0.0.0/24.
            self.proto == 2
                && self.hop_limit == 1
                && self.dst[0] == 224
                && self.dst[1] == 0
                && self.dst[2] == 0
        } else if self.proto == IPPROTO_ICMPV6 {
            let t = self.icmp_type;
            let nd = (133..=137).contains(&t) && self.hop_limit == 255;
            let mld = matches!(t, 130 | 131 | 132 | 143)
                && self.hop_limit == 1
                && self.dst[0] == 0xff
                && self.dst[1] == 0x02;
            nd || mld
        } else {
            false
        }
    }

    /// An ICMP(v6) echo request (never a reply, whatever came in before).
    #[inline(always)]
    pub fn is_echo_request(&self) -> bool {
        is_echo_request(self.proto, self.icmp_type)
    }

    #[inline(always)]
    pub fn is_echo_reply(&self) -> bool {
        is_echo_reply(self.proto, self.icmp_type)
    }

    #[inline(always)]
    fn is_icmp(&self) -> bool {
        self.proto == 1 || self.proto == IPPROTO_ICMPV6
    }

    /// Whether an inbound flow's state may exempt this egress packet as a reply: ICMP only for
    /// echo replies (an arriving packet never opens the way for echo requests or other ICMP).
    #[inline(always)]
    pub fn may_reply(&self) -> bool {
        !self.is_icmp() || self.is_echo_reply()
    }

    /// Whether this ingress packet opens a flow the remote side started: a TCP SYN, an ICMP echo
    /// request, or the first packet of another protocol (`new`).
    #[inline(always)]
    pub fn opens_inbound(&self, new: bool) -> bool {
        if self.proto == 6 {
            self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        } else if self.is_icmp() {
            self.is_echo_request()
        } else {
            new
        }
    }
}

#[inline(always)]
fn fill_transport(ctx: &TcContext, l4: usize, p: &mut Packet) -> Option<()> {
    let (sport, dport, icmp_type, flags, seq, hdr) = transport(ctx, p.proto, l4)?;
    p.sport = sport;
    p.dport = dport;
    p.vport = crate::iphdr::verdict_port(p.proto, dport);
    p.icmp_type = icmp_type;
    p.tcp_flags = flags;
    p.tcp_seq = seq;
    p.payload = ctx.len().saturating_sub((l4 + hdr) as u32);
    Some(())
}

#[inline(always)]
fn v4(ctx: &TcContext, l3: usize) -> Option<Packet> {
    let h: [u8; 20] = ctx.load(l3).ok()?;
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let mut p = empty(4);
    p.src[..4].copy_from_slice(&h[12..16]);
    p.dst[..4].copy_from_slice(&h[16..20]);
    p.proto = h[9] as u32;
    p.hop_limit = h[8] as u32;
    p.routed = (ihl > 20) as u32;
    if frag & 0x1fff == 0 {
        fill_transport(ctx, l3 + ihl, &mut p)?;
    }
    Some(p)
}

#[inline(always)]
fn v6(ctx: &TcContext, l3: usize) -> Option<Packet> {
    let h: [u8; 40] = ctx.load(l3).ok()?;
    let mut p = empty(6);
    p.src.copy_from_slice(&h[8..24]);
    p.dst.copy_from_slice(&h[24..40]);
    p.hop_limit = h[7] as u32;
    let next = h[6] as u32;
    if !is_v6_ext(next) {
        p.proto = next;
        fill_transport(ctx, l3 + 40, &mut p)?;
        return Some(p);
    }
    let mut route = Flag(false);
    match v6_ext(ctx, next, l3 + 40, &mut route) {
        Some(l4) => {
            p.proto = l4.proto;
            p.routed = route.0 as u32;
            if !l4.fragment {
                fill_transport(ctx, l4.off, &mut p)?;
            }
        }
        None => {
            p.proto = next;
            p.routed = 1;
        }
    }
    Some(p)
}

#[inline(always)]
fn empty(family: u32) -> Packet {
    Packet {
        family,
        src: [0; 16],
        dst: [0; 16],
        proto: 0,
        sport: 0,
        dport: 0,
        vport: 0,
        _pad: 0,
        payload: 0,
        tcp_flags: 0,
        tcp_seq: 0,
        icmp_type: 0,
        hop_limit: 0,
        routed: 0,
    }
}

/// Parses an Ethernet frame; IP packets behind up to two VLAN tags are decided like untagged
/// ones. `None` if the frame is too short to tell.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Option<Frame> {
    let mut l3 = ETH_LEN;
    let mut ethertype = u16::from_be(ctx.load(12).ok()?);
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = u16::from_be(ctx.load(l3 + 2).ok()?);
        l3 += 4;
    }
    match ethertype {
        // An IP frame too short to parse is treated like a non-IP one.
        ETH_P_IP => Some(v4(ctx, l3).map_or(Frame::Other, Frame::Ip)),
        ETH_P_IPV6 => Some(v6(ctx, l3).map_or(Frame::Other, Frame::Ip)),
        ETH_P_ARP => Some(Frame::Arp),
        _ => Some(Frame::Other),
    }
}
