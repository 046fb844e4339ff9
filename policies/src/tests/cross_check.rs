//! Randomized cross-check: the kernel model (`Compiled::evaluate`) must agree with the reference
//! (`Policy::evaluate`), and rendered YAML must parse back to the same policy.

use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;
use ringfence_common::{ACTION_ALLOW, ACTION_DENY, RULE_DEFAULT};

use crate::{
    compile, normalize_net, parse_policy, Action, CompileError, Destination, Mode, Policy, PortMatch,
    Protocol, Rule,
};

/// xorshift64* — deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const HOSTS4: [&str; 5] = ["10.0.0.5", "10.0.0.200", "10.0.1.5", "10.1.0.1", "192.0.2.9"];
const LENS4: [u8; 9] = [0, 8, 16, 23, 24, 25, 30, 31, 32];
const HOSTS6: [&str; 4] = ["2001:db8::5", "2001:db8::1:5", "2001:db8:1::5", "2001:db8::ff"];
const LENS6: [u8; 8] = [0, 32, 48, 64, 112, 120, 127, 128];

fn random_addr(rng: &mut Rng) -> IpAddr {
    let v6 = rng.below(4) == 0;
    let base: IpAddr =
        if v6 { rng.pick(&HOSTS6).parse().unwrap() } else { rng.pick(&HOSTS4).parse().unwrap() };
    // Flip a few low bits sometimes so that neighbours of the pool hosts are tested too.
    let flip = if rng.below(3) == 0 { rng.below(4) as u8 } else { 0 };
    match base {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) ^ u32::from(flip)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) ^ u128::from(flip)).into()),
    }
}

fn random_cidr(rng: &mut Rng) -> IpNet {
    match random_addr(rng) {
        IpAddr::V4(a) if rng.below(8) == 0 => {
            // An IPv4-mapped IPv6 CIDR, which must behave like its IPv4 form.
            let len = 96 + *rng.pick(&LENS4);
            normalize_net(IpNet::new(IpAddr::V6(a.to_ipv6_mapped()), len).unwrap().trunc())
        }
        a @ IpAddr::V4(_) => IpNet::new(a, *rng.pick(&LENS4)).unwrap().trunc(),
        a @ IpAddr::V6(_) => IpNet::new(a, *rng.pick(&LENS6)).unwrap().trunc(),
    }
}

fn random_policy(rng: &mut Rng) -> Policy {
    let action = |rng: &mut Rng| if rng.below(2) == 0 { Action::Allow } else { Action::Deny };
    let rules = (1..=1 + rng.below(8) as u32)
        .map(|id| Rule {
            id,
            name: format!("rule-{id}"),
            action: action(rng),
            cidrs: (0..1 + rng.below(3)).map(|_| random_cidr(rng)).collect(),
            ports: (0..rng.below(4))
                .map(|_| {
                    let lo = 1 + rng.below(10) as u16;
                    let hi = lo + rng.below(5) as u16;
                    PortMatch { lo, hi, protocol: *rng.pick(&[Protocol::Tcp, Protocol::Udp, Protocol::Any]) }
                })
                .collect(),
        })
        .collect();
    let mode = if rng.below(4) == 0 { Mode::Audit } else { Mode::Enforce };
    Policy { name: "random".into(), mode, default_action: action(rng), rules }
}

fn render_yaml(p: &Policy) -> String {
    let mut s = format!("apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata:\n  name: {}\nspec:\n  mode: {}\n  defaultAction: {}\n  egress:\n", p.name, p.mode, p.default_action);
    for r in &p.rules {
        let cidrs: Vec<String> = r.cidrs.iter().map(|c| format!("\"{c}\"")).collect();
        write!(
            s,
            "    - name: {}\n      action: {}\n      to:\n        cidrs: [{}]\n",
            r.name,
            r.action,
            cidrs.join(", ")
        )
        .unwrap();
        if !r.ports.is_empty() {
            s.push_str("      ports:\n");
            for p in &r.ports {
                let sel = if p.lo == p.hi {
                    format!("port: {}", p.lo)
                } else {
                    format!("range: \"{}-{}\"", p.lo, p.hi)
                };
                writeln!(s, "        - {{ {sel}, protocol: {} }}", p.protocol).unwrap();
            }
        }
    }
    s
}

#[test]
fn kernel_model_matches_reference_on_random_policies() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (mut compiled_ok, mut too_many_items, mut checks, mut decided_by_rule) = (0, 0, 0, 0);
    for round in 0..1500 {
        let policy = random_policy(&mut rng);
        if round % 10 == 0 {
            assert_eq!(parse_policy(&render_yaml(&policy)).as_ref(), Ok(&policy), "YAML round trip");
        }
        let compiled = match compile(&policy) {
            Ok(c) => c,
            Err(CompileError::TooManyItems { .. }) => {
                too_many_items += 1;
                continue;
            }
            Err(e) => panic!("unexpected compile error {e} for {policy:#?}"),
        };
        compiled_ok += 1;
        for _ in 0..40 {
            let dest = Destination {
                addr: match random_addr(&mut rng) {
                    IpAddr::V4(a) if rng.below(5) == 0 => IpAddr::V6(a.to_ipv6_mapped()),
                    a => a,
                },
                port: if rng.below(6) == 0 { None } else { Some(1 + rng.below(16) as u16) },
                protocol: if rng.below(2) == 0 { Protocol::Tcp } else { Protocol::Udp },
            };
            let reference = policy.evaluate(&dest);
            let verdict = if reference.audited || reference.action == Action::Deny {
                ACTION_DENY
            } else {
                ACTION_ALLOW
            };
            let expected = (verdict, reference.rule.unwrap_or(RULE_DEFAULT));
            let kernel = compiled.evaluate(dest.addr, dest.port.unwrap_or(0), dest.protocol.to_kernel());
            assert_eq!(
                kernel, expected,
                "destination {dest}\npolicy {policy:#?}\nexplanation {:#?}",
                reference.explanation
            );
            checks += 1;
            decided_by_rule += usize::from(reference.rule.is_some());
        }
    }
    assert!(compiled_ok > 1200, "compiled {compiled_ok}, too many items {too_many_items}");
    assert!(decided_by_rule > checks / 4, "rules decided only {decided_by_rule} of {checks}");
}
