//! Arbitrary bytes as a DNS message to the kernel's answer parser (`ringfence_common::dns`, the
//! code the eBPF program runs): never panics, ends within `MAX_DNS_STEPS`, yields at most
//! `MAX_ANSWERS` addresses and only for a response to one question whose name matched, each an
//! A/AAAA record's data found in the message; with no name matching, nothing at all.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_common::{run, DnsParser, DNS_BUF, MAX_ANSWERS, MAX_DNS_STEPS};

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; DNS_BUF];
    let n = data.len().min(DNS_BUF);
    buf[..n].copy_from_slice(&data[..n]);
    let mut parser = DnsParser::new();
    let mut answers = Vec::new();
    let (steps, _) = run(&buf, data.len() as u32, &mut parser, |_, _| true, |f, a, _| answers.push((f, a)));
    assert!(steps <= MAX_DNS_STEPS);
    assert!(answers.len() <= MAX_ANSWERS as usize);
    if !answers.is_empty() {
        assert!(n >= 12 && data[2] & 0x80 != 0 && data[4..6] == [0, 1], "answers only from a response to one question");
    }
    for (family, addr) in &answers {
        let len = if *family == 4 { 4 } else { 16 };
        assert!(data[..n].windows(len).any(|w| w == &addr[..len]), "an answered address is in the message");
    }
    let mut none = 0;
    run(&buf, data.len() as u32, &mut parser, |_, _| false, |_, _, _| none += 1);
    assert_eq!(none, 0, "no matching name, nothing learned");
});
