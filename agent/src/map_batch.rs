//! Reading a whole per-CPU hash map with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+): thousands of
//! entries per system call instead of two calls per entry (`get_next_key` + `lookup`), which is
//! what makes polling a full flow table every second cheap. aya 0.14 has no batch API, so this
//! issues the `bpf(2)` command itself.
use std::{
    io,
    mem::{size_of, MaybeUninit},
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;

use crate::sys::bpf;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call.
const CHUNK: usize = 4096;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Calls `f(key, per_cpu_values)` for every entry of the per-CPU hash map behind `fd`, whose
/// values are `V` on each of `cpus` possible CPUs. Fails with `EINVAL`/`ENOTSUP` on kernels
/// without batch operations for the map type (the caller falls back to iteration).
pub fn for_each_per_cpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    cpus: usize,
    mut f: impl FnMut(&K, &[V]),
) -> io::Result<()> {
    // The kernel copies per-CPU values 8-byte aligned; V must already be a multiple of 8.
    assert_eq!(size_of::<V>() % 8, 0, "per-CPU value size must be a multiple of 8");
    let mut keys: Vec<MaybeUninit<K>> = Vec::with_capacity(CHUNK);
    let mut values: Vec<MaybeUninit<V>> = Vec::with_capacity(CHUNK * cpus);
    // Hash maps use a 4-byte bucket cursor; 8 bytes leave room.
    let (mut cursor_in, mut cursor_out) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &mut cursor_in as *mut u64 as u64 },
            out_batch: &mut cursor_out as *mut u64 as u64,
            map_fd: fd.as_raw_fd() as u32,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the attr points at buffers sized for `count` keys and `count * cpus` values, and
        // at two 8-byte cursors, all alive for the call.
        let err = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) }.err();
        let done = match &err {
            None => false,
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Some(e) => return Err(io::Error::new(e.kind(), format!("BPF_MAP_LOOKUP_BATCH: {e}"))),
        };
        let n = attr.count as usize;
        for i in 0..n {
            // SAFETY: the kernel filled the first `n` keys and `n * cpus` values; K and V are Pod.
            let key = unsafe { keys.as_ptr().add(i).cast::<K>().read() };
            // SAFETY: as above: values `i * cpus ..` up to `(i + 1) * cpus` were filled.
            let vals = unsafe { std::slice::from_raw_parts(values.as_ptr().add(i * cpus).cast::<V>(), cpus) };
            f(&key, vals);
        }
        if done {
            return Ok(());
        }
        cursor_in = cursor_out;
        first = false;
    }
}
