//! Randomized cross-check: the kernel model (`Compiled::evaluate`) must agree with the reference
//! (`Policy::evaluate_with_geo`) on random policies (CIDRs, countries, groups, unknownCountry,
//! peers, regions, crossBorder, `encryption: required`) and random geo databases, for the verdict
//! and for must-encrypt (`Compiled::must_encrypt`); rendered YAML must parse back to the same
//! policy.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ringfence_common::{ACTION_ALLOW, ACTION_DENY, RULE_DEFAULT, RULE_UNKNOWN_COUNTRY};

use crate::countries::{country_str, CountryCode};
use crate::geo::GeoDb;
use crate::groups::shipped_group;
use crate::{
    compile, normalize_net, parse_policy, Action, CompileError, DecidedBy, Destination, Mode, Policy,
    PortMatch, Protocol, Region, Rule,
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

/// Countries of the random databases and policies (DE, FR are in the shipped `eu` group).
const COUNTRIES: [CountryCode; 5] = [*b"DE", *b"FR", *b"US", *b"JP", *b"CN"];
/// The policy-defined group every rendered policy carries.
const MINE: [CountryCode; 2] = [*b"JP", *b"US"];

/// Splits `root` (address, length) recursively into leaves: a gap (no record) or a country,
/// often the same as the sibling's so that aggregation has work to do.
fn split(
    rng: &mut Rng,
    addr: u128,
    len: u32,
    width: u32,
    depth: u32,
    hint: CountryCode,
    out: &mut Vec<(u128, u32, CountryCode)>,
) {
    if len < width && depth > 0 && rng.below(5) < 3 {
        let hint = if rng.below(2) == 0 { hint } else { *rng.pick(&COUNTRIES) };
        let half = 1u128 << (width - len - 1);
        split(rng, addr, len + 1, width, depth - 1, hint, out);
        split(rng, addr | half, len + 1, width, depth - 1, hint, out);
    } else if rng.below(5) != 0 {
        let code = if rng.below(3) != 0 { hint } else { *rng.pick(&COUNTRIES) };
        out.push((addr, len, code));
    }
}

fn random_db(rng: &mut Rng) -> GeoDb {
    let mut v4 = Vec::new();
    for root in ["10.0.0.0/24", "10.0.1.0/24", "10.1.0.0/24", "192.0.2.0/24", "10.0.2.0/23"] {
        let net: Ipv4Net = root.parse().unwrap();
        let hint = *rng.pick(&COUNTRIES);
        split(rng, u128::from(u32::from(net.network())), 24, 32, 9, hint, &mut v4);
    }
    let mut v6 = Vec::new();
    for root in ["2001:db8::/112", "2001:db8::1:0/112", "2001:db8:1::/48"] {
        let net: Ipv6Net = root.parse().unwrap();
        let hint = *rng.pick(&COUNTRIES);
        split(rng, u128::from(net.network()), u32::from(net.prefix_len()), 128, 10, hint, &mut v6);
    }
    let v4 = v4.into_iter().map(|(a, l, c)| (Ipv4Net::new((a as u32).into(), l as u8).unwrap(), c)).collect();
    let v6 = v6.into_iter().map(|(a, l, c)| (Ipv6Net::new(a.into(), l as u8).unwrap(), c)).collect();
    GeoDb::from_networks(v4, v6)
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
            cidrs: match rng.below(10) {
                0..=4 => (0..1 + rng.below(3)).map(|_| random_cidr(rng)).collect(),
                5..=7 => Vec::new(),
                _ => vec![random_cidr(rng)],
            },
            countries: Vec::new(),
            country_groups: Vec::new(),
            fqdns: Vec::new(),
            ports: (0..rng.below(4))
                .map(|_| {
                    let lo = 1 + rng.below(10) as u16;
                    let hi = lo + rng.below(5) as u16;
                    match *rng.pick(&[Protocol::Tcp, Protocol::Udp, Protocol::Any, Protocol::Icmp]) {
                        Protocol::Icmp => PortMatch { lo: 0, hi: u16::MAX, protocol: Protocol::Icmp },
                        protocol => PortMatch { lo, hi, protocol },
                    }
                })
                .collect(),
            encryption_required: false,
            peers: false,
            workloads: None,
        })
        .collect::<Vec<Rule>>();
    let mut rules = rules;
    for rule in &mut rules {
        if rule.cidrs.is_empty() || rng.below(3) == 0 {
            add_countries(rng, rule);
        }
        rule.encryption_required = rule.action == Action::Allow && rng.below(3) == 0;
    }
    let mode = if rng.below(4) == 0 { Mode::Audit } else { Mode::Enforce };
    let unknown_country = *rng.pick(&[None, Some(Action::Allow), Some(Action::Deny)]);
    let mut peers: Vec<IpNet> = if rng.below(3) == 0 {
        (0..1 + rng.below(3)).map(|_| random_cidr(rng)).collect()
    } else {
        Vec::new()
    };
    peers.sort_unstable();
    peers.dedup();
    let mut regions = BTreeMap::new();
    for name in ["home", "away"] {
        if rng.below(3) != 0 {
            regions.insert(name.to_owned(), random_region(rng));
        }
    }
    let cross_border = (regions.contains_key("home") && rng.below(3) != 0).then(|| "home".to_owned());
    Policy {
        name: "random".into(),
        mode,
        default_action: action(rng),
        rules,
        unknown_country,
        peers,
        regions,
        cross_border,
        exfiltration: None,
        raw_sockets: Default::default(),
        workload_selector: None,
        ingress: Vec::new(),
        default_ingress: Action::Allow,
        dns: Default::default(),
    }
}

fn random_region(rng: &mut Rng) -> Region {
    let mut countries: Vec<CountryCode> = (0..rng.below(3)).map(|_| *rng.pick(&COUNTRIES)).collect();
    countries.sort_unstable();
    countries.dedup();
    let n = if countries.is_empty() { 1 + rng.below(2) } else { rng.below(3) };
    let mut cidrs: Vec<IpNet> = (0..n)
        .map(|_| match random_cidr(rng) {
            // Long home prefixes make "outside" likely; /0 would make everything home.
            n if n.prefix_len() == 0 => n.trunc(),
            n => n,
        })
        .collect();
    cidrs.sort_unstable();
    cidrs.dedup();
    Region { countries, cidrs }
}

fn add_countries(rng: &mut Rng, rule: &mut Rule) {
    let mut codes: Vec<CountryCode> = (0..rng.below(3)).map(|_| *rng.pick(&COUNTRIES)).collect();
    if codes.is_empty() || rng.below(3) == 0 {
        let group = *rng.pick(&["eu", "mine", "export-control-example"]);
        rule.country_groups.push(group.to_owned());
        match group {
            "mine" => codes.extend(MINE),
            shipped => codes.extend(&shipped_group(shipped).unwrap().countries),
        }
    }
    codes.sort_unstable();
    codes.dedup();
    rule.countries = codes;
}

fn codes(codes: &[CountryCode]) -> String {
    codes.iter().map(country_str).collect::<Vec<_>>().join(", ")
}

fn render_yaml(p: &Policy) -> String {
    let mut s = format!("apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata:\n  name: {}\nspec:\n  mode: {}\n  defaultAction: {}\n", p.name, p.mode, p.default_action);
    if let Some(unknown) = p.unknown_country {
        writeln!(s, "  unknownCountry: {unknown}").unwrap();
    }
    writeln!(s, "  countryGroups:\n    mine: [{}]", codes(&MINE)).unwrap();
    if !p.peers.is_empty() {
        let cidrs: Vec<String> = p.peers.iter().map(|c| format!("\"{c}\"")).collect();
        writeln!(s, "  peers: {{ cidrs: [{}] }}", cidrs.join(", ")).unwrap();
    }
    if !p.regions.is_empty() {
        s.push_str("  regions:\n");
        for (name, r) in &p.regions {
            let mut keys = Vec::new();
            if !r.countries.is_empty() {
                keys.push(format!("countries: [{}]", codes(&r.countries)));
            }
            if !r.cidrs.is_empty() {
                let cidrs: Vec<String> = r.cidrs.iter().map(|c| format!("\"{c}\"")).collect();
                keys.push(format!("cidrs: [{}]", cidrs.join(", ")));
            }
            writeln!(s, "    {name}: {{ {} }}", keys.join(", ")).unwrap();
        }
    }
    if let Some(home) = &p.cross_border {
        writeln!(s, "  crossBorder: {{ require: wireguard, homeRegion: {home} }}").unwrap();
    }
    s.push_str("  egress:\n");
    for r in &p.rules {
        let cidrs: Vec<String> = r.cidrs.iter().map(|c| format!("\"{c}\"")).collect();
        write!(s, "    - name: {}\n      action: {}\n", r.name, r.action).unwrap();
        if r.encryption_required {
            s.push_str("      encryption: required\n");
        } else if r.id % 2 == 0 {
            s.push_str("      encryption: none\n");
        }
        s.push_str("      to:\n");
        if !cidrs.is_empty() {
            writeln!(s, "        cidrs: [{}]", cidrs.join(", ")).unwrap();
        }
        if !r.countries.is_empty() {
            writeln!(s, "        countries: [{}]", codes(&r.countries)).unwrap();
        }
        if !r.country_groups.is_empty() {
            writeln!(s, "        countryGroups: [{}]", r.country_groups.join(", ")).unwrap();
        }
        if !r.ports.is_empty() {
            s.push_str("      ports:\n");
            for p in &r.ports {
                let sel = if p.protocol == Protocol::Icmp {
                    String::new()
                } else if p.lo == p.hi {
                    format!("port: {}, ", p.lo)
                } else {
                    format!("range: \"{}-{}\", ", p.lo, p.hi)
                };
                writeln!(s, "        - {{ {sel}protocol: {} }}", p.protocol).unwrap();
            }
        }
    }
    s
}

fn random_dest(rng: &mut Rng) -> Destination {
    let mut d = Destination {
        addr: match random_addr(rng) {
            IpAddr::V4(a) if rng.below(5) == 0 => IpAddr::V6(a.to_ipv6_mapped()),
            a => a,
        },
        port: if rng.below(6) == 0 { None } else { Some(1 + rng.below(16) as u16) },
        protocol: match rng.below(5) {
            0 | 1 => Protocol::Tcp,
            2 | 3 => Protocol::Udp,
            _ => Protocol::Icmp,
        },
    };
    // ICMP has no port.
    if d.protocol == Protocol::Icmp {
        d.port = None;
    }
    d
}

#[test]
fn kernel_model_matches_reference_on_random_policies() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (mut compiled_ok, mut too_many_items, mut checks) = (0, 0, 0);
    let mut by = std::collections::HashMap::new();
    let mut reasons = std::collections::HashMap::new();
    let mut db = random_db(&mut rng);
    for round in 0..2000 {
        if round % 5 == 0 {
            db = random_db(&mut rng);
        }
        let policy = random_policy(&mut rng);
        if round % 10 == 0 {
            assert_eq!(parse_policy(&render_yaml(&policy)).as_ref(), Ok(&policy), "YAML round trip");
        }
        // Policies without countries compile without a database too (and must then agree with
        // the reference evaluated without one).
        let geo = if policy.references_countries() || rng.below(2) == 0 { Some(&db) } else { None };
        let compiled = match compile(&policy, geo) {
            Ok(c) => c,
            Err(CompileError::TooManyItems { .. } | CompileError::TooManyCountryItems { .. }) => {
                too_many_items += 1;
                continue;
            }
            Err(e) => panic!("unexpected compile error {e} for {policy:#?}"),
        };
        compiled_ok += 1;
        for _ in 0..40 {
            let dest = random_dest(&mut rng);
            let reference = policy.evaluate_with_geo(&dest, geo);
            let verdict = if reference.audited || reference.action == Action::Deny {
                ACTION_DENY
            } else {
                ACTION_ALLOW
            };
            let rule = match reference.decided_by {
                DecidedBy::UnknownCountry => RULE_UNKNOWN_COUNTRY,
                _ => reference.rule.unwrap_or(RULE_DEFAULT),
            };
            let kernel = compiled.evaluate(dest.addr, dest.port.unwrap_or(0), dest.protocol.to_kernel());
            assert_eq!(
                kernel,
                (verdict, rule),
                "destination {dest}\npolicy {policy:#?}\ngeo4 {:?}\nexplanation {:#?}",
                compiled.geo4,
                reference.explanation
            );
            let must = compiled.must_encrypt(dest.addr, dest.port.unwrap_or(0), dest.protocol.to_kernel());
            assert_eq!(
                must,
                reference.encryption_required,
                "must-encrypt for destination {dest} (reference reason {:?})\npolicy {policy:#?}\nhome4 {:?}\nencrypt4 {:?}",
                reference.encryption_reason,
                compiled.home4,
                compiled.encrypt4
            );
            if let Some(reason) = &reference.encryption_reason {
                let kind = reason.split(' ').next().unwrap_or_default().to_owned();
                *reasons.entry(kind).or_insert(0usize) += 1;
            } else {
                *reasons.entry("none".to_owned()).or_insert(0usize) += 1;
            }
            checks += 1;
            *by.entry(reference.decided_by).or_insert(0usize) += 1;
        }
    }
    assert!(compiled_ok > 1500, "compiled {compiled_ok}, too many items {too_many_items}");
    for step in [DecidedBy::CidrRule, DecidedBy::CountryRule, DecidedBy::UnknownCountry, DecidedBy::Default] {
        assert!(by.get(&step).copied().unwrap_or(0) > checks / 20, "{step:?} decided too rarely: {by:?}");
    }
    // "peer node ...", "rule \"x\" requires ...", "outside home region ...", or none.
    for kind in ["peer", "rule", "outside", "none"] {
        assert!(
            reasons.get(kind).copied().unwrap_or(0) > checks / 50,
            "encryption reason {kind:?} too rare: {reasons:?}"
        );
    }
}
