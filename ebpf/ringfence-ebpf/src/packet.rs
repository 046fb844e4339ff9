//! Parsing the headers the packet path needs (Ethernet, IPv4/IPv6, TCP/UDP) with bounded loads.
use aya_ebpf::programs::TcContext;

const ETH_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// What one packet is: addresses in network order (IPv4 in the first 4 bytes), ports in host
/// order (0 for protocols without ports and for non-first fragments).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Packet {
    pub family: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u32,
    pub sport: u16,
    pub dport: u16,
    /// L4 payload bytes (for GSO packets: of all segments).
    pub payload: u32,
    pub tcp_flags: u32,
}

impl Packet {
    /// Link-local and multicast destinations (neighbour discovery, DHCP, mDNS) are not policed.
    #[inline(always)]
    pub fn is_link_control(&self) -> bool {
        if self.family == 4 {
            self.dst[0] >= 224 || (self.dst[0] == 169 && self.dst[1] == 254)
        } else {
            self.dst[0] == 0xff || (self.dst[0] == 0xfe && self.dst[1] & 0xc0 == 0x80)
        }
    }
}

#[inline(always)]
fn ports(ctx: &TcContext, l4: usize, proto: u8, p: &mut Packet) -> Option<()> {
    // One load per header: every load is a helper call on the hot path.
    let header = match proto {
        IPPROTO_TCP => {
            let h: [u8; 14] = ctx.load(l4).ok()?;
            p.sport = u16::from_be_bytes([h[0], h[1]]);
            p.dport = u16::from_be_bytes([h[2], h[3]]);
            p.tcp_flags = h[13] as u32;
            ((h[12] >> 4) as usize) * 4
        }
        IPPROTO_UDP => {
            let h: [u8; 4] = ctx.load(l4).ok()?;
            p.sport = u16::from_be_bytes([h[0], h[1]]);
            p.dport = u16::from_be_bytes([h[2], h[3]]);
            8
        }
        _ => 0,
    };
    p.payload = ctx.len().saturating_sub((l4 + header) as u32);
    Some(())
}

/// Parses an Ethernet frame carrying IPv4 or IPv6; `None` for anything else.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Option<Packet> {
    let ethertype = u16::from_be(ctx.load(12).ok()?);
    let mut p = Packet {
        family: 4,
        src: [0; 16],
        dst: [0; 16],
        proto: 0,
        sport: 0,
        dport: 0,
        payload: 0,
        tcp_flags: 0,
    };
    match ethertype {
        ETH_P_IP => {
            let h: [u8; 20] = ctx.load(ETH_LEN).ok()?;
            let ihl = ((h[0] & 0x0f) as usize) * 4;
            let frag = u16::from_be_bytes([h[6], h[7]]);
            let proto = h[9];
            p.src[..4].copy_from_slice(&h[12..16]);
            p.dst[..4].copy_from_slice(&h[16..20]);
            p.proto = proto as u32;
            if frag & 0x1fff == 0 {
                ports(ctx, ETH_LEN + ihl, proto, &mut p)?;
            }
        }
        ETH_P_IPV6 => {
            let h: [u8; 40] = ctx.load(ETH_LEN).ok()?;
            p.family = 6;
            p.src.copy_from_slice(&h[8..24]);
            p.dst.copy_from_slice(&h[24..40]);
            p.proto = h[6] as u32;
            ports(ctx, ETH_LEN + 40, h[6], &mut p)?;
        }
        _ => return None,
    }
    Some(p)
}
