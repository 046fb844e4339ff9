extern crate std;
use std::vec::Vec;
use std::{format, vec};

use super::*;

/// A name in wire form.
fn wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// A response to one IN question `qname` with `answers` (owner name bytes, type, data).
fn response(qname: &str, answers: &[(Vec<u8>, u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
    m.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend(wire(qname));
    m.extend_from_slice(&[0, 1, 0, 1]);
    for (owner, rtype, data) in answers {
        m.extend_from_slice(owner);
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(data);
    }
    m
}

fn parse(msg: &[u8], names: &[(u64, bool)]) -> (Vec<(u32, [u8; 16], u32)>, bool) {
    let mut buf = [0u8; DNS_BUF];
    let n = msg.len().min(DNS_BUF);
    buf[..n].copy_from_slice(&msg[..n]);
    let mut p = DnsParser::new();
    let mut out = Vec::new();
    let (steps, ok) = run(
        &buf,
        msg.len() as u32,
        &mut p,
        |h, exact| names.contains(&(h, exact)),
        |f, a, t| out.push((f, a, t)),
    );
    assert!(steps <= MAX_DNS_STEPS);
    (out, ok)
}

const PTR_QNAME: [u8; 2] = [0xc0, 12];

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut x = [0; 16];
    x[..4].copy_from_slice(&a);
    x
}

#[test]
fn learns_answers_of_a_matching_name_only() {
    let msg = response(
        "Files.HF.co",
        &[
            (PTR_QNAME.to_vec(), 5, wire("cdn.example")),
            (wire("cdn.example"), 1, vec![192, 0, 2, 7]),
            (wire("cdn.example"), 28, vec![0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            (wire("cdn.example"), 1, vec![192, 0, 2, 8]),
        ],
    );
    let wildcard = (name_hash(&wire("hf.co")), false);
    let (answers, ok) = parse(&msg, &[wildcard]);
    assert!(ok);
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0], (4, v4([192, 0, 2, 7]), 30));
    assert_eq!(answers[1].0, 6);
    assert_eq!(answers[2].1, v4([192, 0, 2, 8]));
    let exact = (name_hash(&wire("files.hf.co")), true);
    assert_eq!(parse(&msg, &[exact]).0.len(), 3);
    // The whole name is not a wildcard match of itself, and other names teach nothing.
    assert!(parse(&msg, &[(name_hash(&wire("files.hf.co")), false)]).0.is_empty());
    assert!(parse(&msg, &[(name_hash(&wire("other.co")), true)]).0.is_empty());
}

#[test]
fn queries_errors_and_malformed_messages_teach_nothing() {
    let h = (name_hash(&wire("a.example")), true);
    let good = response("a.example", &[(PTR_QNAME.to_vec(), 1, vec![192, 0, 2, 1])]);
    assert_eq!(parse(&good, &[h]).0.len(), 1);
    let mut query = good.clone();
    query[2] &= 0x7f;
    assert!(parse(&query, &[h]).0.is_empty());
    let mut nx = good.clone();
    nx[3] |= 3;
    assert!(parse(&nx, &[h]).0.is_empty());
    // Cut anywhere inside the record: nothing learned, and a bad message.
    for cut in 0..good.len() {
        let (answers, ok) = parse(&good[..cut], &[h]);
        assert!(answers.is_empty(), "cut at {cut}");
        assert!(!ok || cut < 12 || cut >= good.len(), "cut at {cut}");
    }
    // A compression pointer in the question.
    let mut ptr = good.clone();
    ptr[12] = 0xc0;
    assert!(!parse(&ptr, &[h]).1);
    // A record length past the end.
    let mut long = good.clone();
    let n = long.len();
    long[n - 5] = 200;
    assert_eq!(parse(&long, &[h]), (Vec::new(), false));
}

#[test]
fn long_names_and_many_records_stay_bounded() {
    let label = "a".repeat(63);
    let name = [label.as_str(); 3].join(".") + ".bcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwx";
    let w = wire(&name);
    assert!(w.len() <= 255, "{}", w.len());
    let answers: Vec<_> = (0..200u8).map(|i| (PTR_QNAME.to_vec(), 1, vec![198, 51, 100, i])).collect();
    let msg = response(&name, &answers);
    let (got, ok) = parse(&msg, &[(name_hash(&w), true)]);
    assert!(ok);
    assert_eq!(got.len(), MAX_ANSWERS as usize);
    // One byte more than 255 is refused.
    let too_long = format!("{}.{}", "b".repeat(63), [label.as_str(); 3].join("."));
    assert!(!parse(&response(&too_long, &[]), &[]).1);
}

/// Mutated answers (bit flips, cuts, byte runs; a fixed-seed xorshift so a failure
/// reproduces): the parser always ends within its step bound, yields at most `MAX_ANSWERS`
/// addresses, each found in the message, and nothing when no name matches. `cargo xtask fuzz
/// --only dns_answer` runs the same properties under libFuzzer.
#[test]
fn mutated_answers_stay_bounded_and_learn_only_what_they_hold() {
    let base = response(
        "www.cdn.example",
        &[
            (PTR_QNAME.to_vec(), 5, wire("origin.example")),
            (wire("origin.example"), 1, vec![203, 0, 113, 14]),
            (wire("origin.example"), 28, vec![0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ],
    );
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200_000 {
        let mut m = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % m.len();
            match next() % 3 {
                0 => m[i] ^= 1 << (next() % 8),
                1 => m[i] = next() as u8,
                _ => m.truncate(i.max(1)),
            }
        }
        let mut buf = [0u8; DNS_BUF];
        buf[..m.len()].copy_from_slice(&m);
        let mut p = DnsParser::new();
        let mut got = Vec::new();
        let (steps, _) = run(&buf, m.len() as u32, &mut p, |_, _| true, |f, a, _| got.push((f, a)));
        assert!(steps <= MAX_DNS_STEPS && got.len() <= MAX_ANSWERS as usize);
        for (f, a) in &got {
            let len = if *f == 4 { 4 } else { 16 };
            assert!(m.windows(len).any(|w| w == &a[..len]), "{m:?} taught {a:?}");
        }
        let mut none = 0;
        run(&buf, m.len() as u32, &mut p, |_, _| false, |_, _, _| none += 1);
        assert_eq!(none, 0);
    }
}
