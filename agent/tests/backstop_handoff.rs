//! The backstop's hand-off to its tail calls, run in the kernel with BPF_PROG_TEST_RUN: the
//! entry program claims the per-CPU record for its packet (a new ticket in the record and in the
//! packet's control block), and a tail call decides a packet only on the record it claimed. If
//! anything else claimed the record in between (a softirq sending a packet of a workload in the
//! middle of a process-context run, another task on a preemptible kernel), the packet is
//! dropped, never decided on another packet's details.
//!
//! The same way: a policy with budgets never lets a packet out past a missing budget program.
//!
//! Needs root (BPF and a bpf filesystem), like the privileged tests.
use aya::{
    maps::{Array, PerCpuArray, PerCpuValues, ProgramArray},
    programs::{CgroupSkb, TestRun, TestRunOptions},
    util::nr_cpus,
    Ebpf,
};
use ringfence_common::{
    table_id, BudgetConfig, PolicyConfig, SkbScratch, ACTION_ALLOW, BUDGET_CONFIG_MAP, CB_TICKET, CONFIG_MAP,
    DEFAULT_POLICY, DIR_EGRESS, SKB_EGRESS, SKB_TAILS_MAP, SKB_TAIL_VERDICT4, SKB_VERDICT4,
};
use ringfence_tests::Bpffs;

/// `struct __sk_buff` (the test-run context): its size and where `cb[0..5]` sits.
const SKB_CTX: usize = 192;
const CB_OFFSET: usize = 48;
const DEST: [u8; 4] = [198, 51, 100, 10];

/// Ethernet + IPv4 + TCP SYN from 192.0.2.1:40000 to DEST:443.
fn syn() -> Vec<u8> {
    let mut p = vec![0u8; 14 + 20 + 20];
    p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut p[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
    ip[16..20].copy_from_slice(&DEST);
    let tcp = &mut p[34..54];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    p
}

fn cb(ctx: &[u8], i: usize) -> u32 {
    let at = CB_OFFSET + 4 * i;
    u32::from_ne_bytes(ctx[at..at + 4].try_into().expect("4 bytes"))
}

/// Runs program `name` once on `packet` with the control block `ctx_in`; returns its verdict
/// and the control block after it.
fn run(ebpf: &mut Ebpf, name: &str, packet: &[u8], ctx_in: &[u8; SKB_CTX]) -> (u32, [u8; SKB_CTX]) {
    let prog: &mut CgroupSkb = ebpf
        .program_mut(name)
        .unwrap_or_else(|| panic!("{name} in the object"))
        .try_into()
        .expect("cgroup_skb");
    if prog.fd().is_err() {
        prog.load().unwrap_or_else(|e| panic!("load {name}: {e}"));
    }
    let mut ctx_out = [0u8; SKB_CTX];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(packet);
    opts.ctx_in = Some(ctx_in);
    opts.ctx_out = Some(&mut ctx_out);
    let r = prog.test_run(opts).unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN {name}: {e}"));
    (r.return_value, ctx_out)
}

/// The embedded object loaded on a private bpf filesystem, its node default policy allowing
/// everything (so a decided packet passes).
fn allow_all(bpffs: &Bpffs) -> Ebpf {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("needs root (BPF programs and a bpf filesystem): run with `cargo xtask test`");
    }
    let mut ebpf = ringfence_agent::bpf::load(bpffs.path()).expect("load the embedded object");
    let mut cfg: Array<_, PolicyConfig> =
        ebpf.map_mut(CONFIG_MAP).expect("policy configs").try_into().expect("array");
    let allow = PolicyConfig { default_action: ACTION_ALLOW, generation: 1, ..Default::default() };
    cfg.set(table_id(DEFAULT_POLICY, 0, DIR_EGRESS), allow, 0).expect("write the policy config");
    ebpf
}

fn records(ebpf: &mut Ebpf) -> PerCpuArray<&mut aya::maps::MapData, SkbScratch> {
    ebpf.map_mut("RF_SKB_SCRATCH").expect("RF_SKB_SCRATCH").try_into().expect("per-CPU array")
}

/// Every CPU's record set to `r`.
fn set_records(ebpf: &mut Ebpf, r: SkbScratch) {
    let cpus = nr_cpus().expect("CPU count");
    let values = PerCpuValues::try_from(vec![r; cpus]).expect("values");
    records(ebpf).set(0, values, 0).expect("set the records");
}

#[test]
fn a_tail_call_decides_only_the_record_its_packet_claimed() {
    let bpffs = Bpffs::new();
    let mut ebpf = allow_all(&bpffs);
    set_records(&mut ebpf, SkbScratch { seq: 41, ..Default::default() });

    // The entry program misses the verdict cache and hands the packet off: it claims the record
    // of the CPU it ran on (seq 41 -> 42) and puts the ticket in the packet's control block.
    let packet = syn();
    // Its tail-call slots are empty here, so the hand-off fails and the packet is dropped: the
    // backstop fails closed.
    let (verdict, after_entry) = run(&mut ebpf, SKB_EGRESS, &packet, &[0; SKB_CTX]);
    assert_eq!(verdict, 0, "a failed tail call drops the packet");
    let ticket = cb(&after_entry, CB_TICKET);
    assert_eq!(ticket, 42, "the entry took the next ticket");
    let all = records(&mut ebpf).get(&0, 0).expect("read the records");
    let claimed: Vec<SkbScratch> = all.iter().copied().filter(|r| r.seq == ticket).collect();
    assert_eq!(claimed.len(), 1, "exactly the CPU the entry ran on was claimed: {all:?}");
    let record = claimed[0];
    assert_eq!((record.count, record.family, &record.addrs[0][..4]), (1, 4, &DEST[..]), "{record:?}");

    // The tail call with that ticket decides the packet (allowed: let out).
    set_records(&mut ebpf, record);
    let (verdict, _) = run(&mut ebpf, SKB_VERDICT4, &packet, &after_entry);
    assert_eq!(verdict, 1, "the packet that claimed the record is decided on it and let out");

    // Another packet claimed the record since (the ticket moved on): this one is dropped.
    set_records(&mut ebpf, SkbScratch { seq: ticket + 1, ..record });
    let (verdict, _) = run(&mut ebpf, SKB_VERDICT4, &packet, &after_entry);
    assert_eq!(verdict, 0, "a tail call must not decide a packet on a record another packet claimed");
}

/// Under a policy with exfiltration budgets the backstop lets a packet out only through the
/// budget program (a tail call): with that slot empty the allowed packet is dropped, not let out
/// uncounted. Without budgets the same packet passes.
#[test]
fn a_missing_budget_program_drops_what_the_policy_allows() {
    let bpffs = Bpffs::new();
    let mut ebpf = allow_all(&bpffs);
    let verdict4 = {
        let prog: &mut CgroupSkb =
            ebpf.program_mut(SKB_VERDICT4).expect("verdict program").try_into().expect("skb");
        prog.load().expect("load the verdict program");
        prog.fd().expect("fd").try_clone().expect("dup")
    };
    let mut tails: ProgramArray<_> =
        ebpf.map_mut(SKB_TAILS_MAP).expect("tail calls").try_into().expect("array");
    tails.set(SKB_TAIL_VERDICT4, &verdict4, 0).expect("fill the verdict slot only");
    let packet = syn();
    let (verdict, _) = run(&mut ebpf, SKB_EGRESS, &packet, &[0; SKB_CTX]);
    assert_eq!(verdict, 1, "entry -> verdict: the allowed packet is let out");

    let table = table_id(DEFAULT_POLICY, 0, DIR_EGRESS);
    let mut budgets: Array<_, BudgetConfig> =
        ebpf.map_mut(BUDGET_CONFIG_MAP).expect("budget configs").try_into().expect("array");
    budgets.set(table, BudgetConfig { enabled: 1, ..Default::default() }, 0).expect("enable budgets");
    let (verdict, _) = run(&mut ebpf, SKB_EGRESS, &packet, &[0; SKB_CTX]);
    assert_eq!(verdict, 0, "with budgets and no budget program the backstop fails closed");
}
