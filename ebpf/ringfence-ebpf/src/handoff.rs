//! The backstop's hand-off to its tail calls. The packet's details are too big for its control
//! block, so the entry program writes them to a per-CPU record (`RF_SKB_SCRATCH`). That record
//! is shared with whatever else runs on the CPU before the tail calls finish: a softirq that
//! sends a packet of a workload (a TCP ACK, a retransmission) runs the backstop in the middle of
//! a process-context run, and a preemptible kernel may run another task's. A tail call must
//! never decide one packet on another's details, so:
//!
//! - the entry takes a ticket, the record's sequence number bumped before anything else is
//!   written, and keeps it in the packet's control block (`__sk_buff.cb`, the packet's own for
//!   this run);
//! - what the tail calls change per packet is kept in the control block too: the next address
//!   to decide, whether audit mode let one through, the transport protocol and ports (found past
//!   IPv6 extension headers);
//! - a tail call that finds another ticket in the record, at its start or before it lets the
//!   packet out, drops it (fail closed: TCP sends it again).
//!
//! What another run can still add to the record is source-route hops appended by its header
//! walk: more addresses to decide, never fewer.
use core::{
    ptr::{read_volatile, write_volatile},
    sync::atomic::{compiler_fence, Ordering},
};

use aya_ebpf::programs::SkBuffContext;

use ringfence_common::{
    SkbScratch, CB_AUDIT as AUDIT, CB_NEXT as NEXT, CB_PORTS as PORTS, CB_PROTO as PROTO, CB_TICKET as TICKET,
};

#[inline(always)]
fn set_cb(ctx: &SkBuffContext, i: usize, v: u32) {
    // SAFETY: the program's own context; cgroup_skb programs may write cb[0..5].
    unsafe { (*ctx.skb.skb).cb[i] = v }
}

/// Takes the record for this packet before the entry program writes it: bumps its sequence
/// number (first, and not reordered after the writes that follow) and starts the packet's
/// control block with the transport fields the entry found.
#[inline(always)]
pub fn claim(ctx: &SkBuffContext, s: &mut SkbScratch, proto: u32, sport: u16, dport: u16) {
    // SAFETY: a field of this CPU's record.
    let seq = unsafe { read_volatile(&s.seq) }.wrapping_add(1);
    // SAFETY: as above.
    unsafe { write_volatile(&mut s.seq, seq) };
    compiler_fence(Ordering::SeqCst);
    set_cb(ctx, TICKET, seq);
    set_cb(ctx, NEXT, 0);
    set_cb(ctx, AUDIT, 0);
    set_l4(ctx, proto, sport, dport);
}

/// The packet's control block, read once per program (the verifier refuses a context pointer
/// the compiler kept with an offset added, which repeated reads invite).
#[derive(Clone, Copy)]
pub struct Packet {
    ticket: u32,
    /// The index of the next address to decide.
    pub next: u32,
    /// An address was let through only because the policy is in audit mode.
    pub audited: bool,
    /// The transport protocol and ports (destination port as the verdict takes it).
    pub proto: u32,
    pub sport: u16,
    pub dport: u16,
}

impl Packet {
    #[inline(always)]
    pub fn read(ctx: &SkBuffContext) -> Packet {
        // SAFETY: the program's own context; cb[0..5] is readable.
        let cb = unsafe { (*ctx.skb.skb).cb };
        Packet {
            ticket: cb[TICKET],
            next: cb[NEXT],
            audited: cb[AUDIT] != 0,
            proto: cb[PROTO],
            sport: (cb[PORTS] >> 16) as u16,
            dport: cb[PORTS] as u16,
        }
    }

    /// Whether the record still holds this packet's details (nothing claimed it since).
    #[inline(always)]
    pub fn holds(&self, s: &SkbScratch) -> bool {
        compiler_fence(Ordering::SeqCst);
        // SAFETY: a field of this CPU's record.
        let seq = unsafe { read_volatile(&s.seq) };
        seq == self.ticket
    }
}

/// Keeps the verdict's progress for the next tail call.
#[inline(always)]
pub fn save_progress(ctx: &SkBuffContext, next: u32, audited: bool) {
    set_cb(ctx, NEXT, next);
    set_cb(ctx, AUDIT, audited as u32);
}

#[inline(always)]
pub fn set_l4(ctx: &SkBuffContext, proto: u32, sport: u16, dport: u16) {
    set_cb(ctx, PROTO, proto);
    set_cb(ctx, PORTS, ((sport as u32) << 16) | dport as u32);
}
