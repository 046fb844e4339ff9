//! What the IP header says beyond the destination address: IPv4 options and IPv6 extension
//! headers, walked the same way by the packet path (tcx, from the Ethernet header) and by the
//! cgroup backstop (from the IP header). A source route (IPv4 LSRR/SSRR, an IPv6 routing
//! header with segments left) sends the packet through addresses other than its destination:
//! the walkers report them so every one can be decided.
use aya_ebpf::{
    cty::c_long,
    programs::{SkBuffContext, TcContext},
};

/// Addresses a backstop packet is decided on: its destination and every hop of a source route.
pub use ringfence_common::MAX_ROUTE;

pub const IPPROTO_HOPOPTS: u32 = 0;
pub const IPPROTO_ICMP: u32 = 1;
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;
pub const IPPROTO_ROUTING: u32 = 43;
pub const IPPROTO_FRAGMENT: u32 = 44;
pub const IPPROTO_AH: u32 = 51;
pub const IPPROTO_ICMPV6: u32 = 58;
pub const IPPROTO_DSTOPTS: u32 = 60;

/// IPv4 option types that carry a source route.
const IPOPT_LSRR: u8 = 0x83;
const IPOPT_SSRR: u8 = 0x89;
/// Bytes of IPv4 options at most (IHL 15).
const MAX_OPTIONS: usize = 40;
/// IPv6 extension headers walked at most; more is treated as malformed.
const MAX_EXT_HEADERS: u32 = 6;

/// Packet bytes at an offset: the tc context counts from the Ethernet header, the cgroup_skb
/// context from the IP header.
pub trait Bytes {
    fn get<T>(&self, off: usize) -> Option<T>;
    /// Loads `len` (at most `N`) bytes into `buf`.
    fn get_into<const N: usize>(&self, off: usize, buf: &mut [u8; N], len: usize) -> Option<()>;
}

fn load_into<const N: usize>(
    skb: *mut aya_ebpf::bindings::__sk_buff,
    off: usize,
    buf: &mut [u8; N],
    len: usize,
) -> Option<()> {
    if len == 0 || len > N {
        return None;
    }
    // SAFETY: the helper writes at most `len <= N` bytes into `buf`.
    let rc: c_long = unsafe {
        aya_ebpf::helpers::bpf_skb_load_bytes(skb.cast(), off as u32, buf.as_mut_ptr().cast(), len as u32)
    };
    (rc == 0).then_some(())
}

/// Both contexts wrap a `__sk_buff` and load the same way.
macro_rules! skb_bytes {
    ($($ctx:ty),*) => {$(
        impl Bytes for $ctx {
            #[inline(always)]
            fn get<T>(&self, off: usize) -> Option<T> {
                self.load(off).ok()
            }
            #[inline(always)]
            fn get_into<const N: usize>(&self, off: usize, buf: &mut [u8; N], len: usize) -> Option<()> {
                load_into(self.skb.skb, off, buf, len)
            }
        }
    )*};
}

skb_bytes!(TcContext, SkBuffContext);

/// Sixteen address bytes from four network-order words as read from a header (IPv4: the first
/// word, the rest 0). No copy byte by byte: the words are the bytes, in memory order.
#[inline(always)]
pub fn addr_bytes(w: [u32; 4]) -> [u8; 16] {
    // SAFETY: four u32 words are sixteen bytes in memory order.
    unsafe { core::mem::transmute(w) }
}

/// `T` at `off` of a cgroup_skb packet (counted from the IP header), read in place when the
/// packet's linear data holds it, else loaded by `bpf_skb_load_bytes`. The hooks' fast paths
/// read their fixed headers this way: a helper call per header cost more than the rest of the
/// check (a locally built TCP/UDP packet always has its headers in the linear data).
#[inline(always)]
pub fn peek<T: Copy>(ctx: &SkBuffContext, off: usize) -> Option<T> {
    // SAFETY: the context's packet bounds (readable by cgroup_skb programs loaded with CAP_BPF).
    let (data, end) = unsafe { ((*ctx.skb.skb).data as usize, (*ctx.skb.skb).data_end as usize) };
    if data + off + core::mem::size_of::<T>() <= end {
        // SAFETY: inside [data, data_end), as checked (and proven to the verifier) above; the
        // BPF target loads at any alignment.
        return Some(unsafe { core::ptr::read((data + off) as *const T) });
    }
    ctx.load(off).ok()
}

/// The TCP or UDP header at `off` of a cgroup_skb packet, read with [`peek`]: (sport, dport, TCP
/// flags, header length). A TCP header must hold its flags, as for [`transport`].
#[inline(always)]
pub fn tcp_udp(ctx: &SkBuffContext, proto: u32, off: usize) -> Option<(u16, u16, u32, usize)> {
    if proto == IPPROTO_TCP {
        let h: [u16; 7] = peek(ctx, off)?;
        let [offset, flags] = h[6].to_ne_bytes();
        Some((u16::from_be(h[0]), u16::from_be(h[1]), flags as u32, ((offset >> 4) as usize) * 4))
    } else {
        let h: [u16; 2] = peek(ctx, off)?;
        Some((u16::from_be(h[0]), u16::from_be(h[1]), 0, 8))
    }
}

/// Where source-route addresses go. `push` returns false when there is no room (the caller
/// then treats the packet as undecidable).
pub trait Hops {
    /// Whether the addresses are wanted (else only [`Hops::route`] is called, loading nothing).
    const COLLECT: bool;
    fn push(&mut self, addr: [u8; 16]) -> bool;
    /// A source route was found.
    fn route(&mut self) {}
}

/// Only notes that a source route exists (the packet path drops such packets when it polices
/// them; it does not decide their hops).
pub struct Flag(pub bool);

impl Hops for Flag {
    const COLLECT: bool = false;
    #[inline(always)]
    fn push(&mut self, _addr: [u8; 16]) -> bool {
        true
    }
    #[inline(always)]
    fn route(&mut self) {
        self.0 = true;
    }
}

/// Walks the IPv4 options in `[start, end)`; every address of an LSRR/SSRR option goes to
/// `hops`. `None` for malformed options or too many hops.
#[inline(always)]
pub fn v4_options<B: Bytes, H: Hops>(b: &B, start: usize, end: usize, hops: &mut H) -> Option<()> {
    let len = end.checked_sub(start)?;
    if len == 0 {
        return Some(());
    }
    let mut buf = [0u8; MAX_OPTIONS];
    b.get_into(start, &mut buf, len)?;
    let mut off = 0usize;
    for _ in 0..MAX_OPTIONS {
        if off >= len || off >= MAX_OPTIONS {
            break;
        }
        let kind = buf[off];
        if kind == 0 {
            break; // end of options
        }
        if kind == 1 {
            off += 1; // no-op
            continue;
        }
        let olen = *buf.get(off + 1)? as usize;
        if olen < 2 || off + olen > len {
            return None;
        }
        if kind == IPOPT_LSRR || kind == IPOPT_SSRR {
            // type, length, pointer, then the route's addresses.
            let n = olen.checked_sub(3)? / 4;
            for i in 0..(MAX_OPTIONS / 4) {
                if i >= n {
                    break;
                }
                let at = off + 3 + 4 * i;
                let mut a = [0u8; 16];
                a[0] = *buf.get(at)?;
                a[1] = *buf.get(at + 1)?;
                a[2] = *buf.get(at + 2)?;
                a[3] = *buf.get(at + 3)?;
                if !hops.push(a) {
                    return None;
                }
            }
        }
        off += olen;
    }
    Some(())
}

/// The transport header after IPv6 extension headers.
pub struct L4 {
    /// Protocol of the header at `off` (for a non-first fragment: the fragment's protocol, with
    /// no header present).
    pub proto: u32,
    pub off: usize,
    /// A non-first fragment: no transport header in this packet.
    pub fragment: bool,
}

/// Walks IPv6 extension headers starting with header type `next` at `off`; the addresses of a
/// routing header with segments left go to `hops`. `None` for malformed or unknown routing
/// headers, more than [`MAX_EXT_HEADERS`] headers, or too many hops.
#[inline(always)]
pub fn v6_ext<B: Bytes, H: Hops>(b: &B, mut next: u32, mut off: usize, hops: &mut H) -> Option<L4> {
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_DSTOPTS => {
                let h: [u8; 2] = b.get(off)?;
                next = h[0] as u32;
                off += (h[1] as usize + 1) * 8;
            }
            IPPROTO_ROUTING => {
                // next, length (8-octet units after the first 8), type, segments left, then for
                // segment routing (type 4) the index of the last segment.
                let h: [u8; 5] = b.get(off)?;
                let (hdr_len, kind, left) = (h[1] as usize, h[2], h[3]);
                if left > 0 && !H::COLLECT {
                    hops.route();
                } else if left > 0 {
                    let n = match kind {
                        0 | 2 => hdr_len / 2,
                        4 => h[4] as usize + 1,
                        _ => return None,
                    };
                    if n * 2 > hdr_len {
                        return None;
                    }
                    for i in 0..MAX_ROUTE {
                        if i >= n {
                            break;
                        }
                        let a: [u8; 16] = b.get(off + 8 + 16 * i)?;
                        if !hops.push(a) {
                            return None;
                        }
                    }
                    if n > MAX_ROUTE {
                        return None;
                    }
                }
                next = h[0] as u32;
                off += (hdr_len + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let h: [u8; 4] = b.get(off)?;
                let frag_offset = u16::from_be_bytes([h[2], h[3]]) >> 3;
                next = h[0] as u32;
                off += 8;
                if frag_offset != 0 {
                    return Some(L4 { proto: next, off, fragment: true });
                }
            }
            IPPROTO_AH => {
                let h: [u8; 2] = b.get(off)?;
                next = h[0] as u32;
                off += (h[1] as usize + 2) * 4;
            }
            _ => return Some(L4 { proto: next, off, fragment: false }),
        }
    }
    None
}

/// True for the IPv6 next-header values [`v6_ext`] walks (or must refuse).
#[inline(always)]
pub fn is_v6_ext(next: u32) -> bool {
    matches!(next, IPPROTO_HOPOPTS | IPPROTO_DSTOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_AH)
        || matches!(next, 135 | 139 | 140 | 253 | 254)
}

/// Ports (TCP/UDP), or the echo identifier in both (ICMP echo), and the ICMP type, of the
/// transport header at `off`. Returns (sport, dport, icmp_type, tcp_flags, tcp_seq, header length).
/// A verdict takes [`verdict_port`], not an echo identifier.
#[inline(always)]
pub fn transport<B: Bytes>(b: &B, proto: u32, off: usize) -> Option<(u16, u16, u32, u32, u32, usize)> {
    match proto {
        IPPROTO_TCP => {
            let h: [u8; 14] = b.get(off)?;
            let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            Some((
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
                0,
                h[13] as u32,
                seq,
                ((h[12] >> 4) as usize) * 4,
            ))
        }
        IPPROTO_UDP => {
            let h: [u8; 4] = b.get(off)?;
            Some((u16::from_be_bytes([h[0], h[1]]), u16::from_be_bytes([h[2], h[3]]), 0, 0, 0, 8))
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let h: [u8; 6] = b.get(off)?;
            let kind = h[0] as u32;
            let id = if is_echo(proto, kind) { u16::from_be_bytes([h[4], h[5]]) } else { 0 };
            Some((id, id, kind, 0, 0, 8))
        }
        _ => Some((0, 0, 0, 0, 0, 0)),
    }
}

/// The port a verdict is computed for: none for ICMP (an echo identifier is not a port, and port
/// entries never match ICMP), the destination port otherwise.
#[inline(always)]
pub fn verdict_port(proto: u32, dport: u16) -> u16 {
    if proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 {
        0
    } else {
        dport
    }
}

/// ICMP(v6) echo request.
#[inline(always)]
pub fn is_echo_request(proto: u32, kind: u32) -> bool {
    (proto == IPPROTO_ICMP && kind == 8) || (proto == IPPROTO_ICMPV6 && kind == 128)
}

/// ICMP(v6) echo reply.
#[inline(always)]
pub fn is_echo_reply(proto: u32, kind: u32) -> bool {
    (proto == IPPROTO_ICMP && kind == 0) || (proto == IPPROTO_ICMPV6 && kind == 129)
}

#[inline(always)]
fn is_echo(proto: u32, kind: u32) -> bool {
    is_echo_request(proto, kind) || is_echo_reply(proto, kind)
}
