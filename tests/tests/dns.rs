//! Domain names as egress targets against the real kernel and a real DNS server (dnsmasq in the
//! world namespace): the workload's answers are learned in `cgroup_skb/ingress` before its
//! socket gets them, so the connect right after a lookup is allowed, and nothing else is.
//! Run as root, serially (`cargo xtask test`).
use std::process::Stdio;
use std::time::{Duration, Instant};

use ringfence_tests::{dnsmasq_bin, policy_head_with, skip, DnsServer, Enforced, Lab};
use serde_json::Value;

const RESOLVER: &str = "198.51.100.53";
/// A DNS server the policy does not pin.
const ROGUE: &str = "198.51.100.99";
const HUB: &str = "203.0.113.10";
const HUB6: &str = "2001:db8:53::10";
const CDN_A: &str = "203.0.113.11";
const OTHER: &str = "203.0.113.12";
const CDN_BASE: &str = "203.0.113.13";
const CHAIN_END: &str = "203.0.113.14";
/// Never in any answer.
const NEVER: &str = "203.0.113.200";
/// A second pinned resolver address with no server: the malformed-answer sender uses it.
const RESOLVER2: &str = "198.51.100.54";

fn policy(name: &str, fqdns: &str, min_ttl: u32) -> String {
    let dns = format!("  dns:\n    resolvers: [{RESOLVER}]\n    minTTL: {min_ttl}\n");
    policy_head_with(name, "enforce", "deny", &dns)
        + &format!("    - name: hub\n      action: allow\n      to: {{ fqdns: [{fqdns}] }}\n      ports: [ {{ port: 443, protocol: tcp }} ]\n")
}

/// `lab-probe resolve` in the lab's cgroup, parsed.
fn resolve(lab: &Lab, args: &[&str]) -> Value {
    parse_resolve(args, spawn_resolve(lab, args).wait_with_output().expect("run lab-probe resolve"))
}

/// `lab-probe resolve` started in the lab's cgroup ([`parse_resolve`] its output).
fn spawn_resolve(lab: &Lab, args: &[&str]) -> std::process::Child {
    lab.node_command(lab.probe_path())
        .arg("resolve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lab-probe resolve")
}

fn parse_resolve(args: &[&str], out: std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("lab-probe resolve {args:?}: {e}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    })
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// A lab with world hosts and HTTPS servers, dnsmasq on RESOLVER, and the agent; `None` (and a
/// recorded skip) without dnsmasq.
fn start(
    test: &str,
    name: &str,
    hosts: &[&str],
    records: &[(&str, &str)],
    cnames: &[(&str, &str)],
    policy: &str,
) -> Option<(DnsServer, Enforced)> {
    if dnsmasq_bin().is_none() {
        skip(test, "dnsmasq is not installed (cargo xtask setup installs dnsmasq-base)");
        return None;
    }
    let mut all: Vec<&str> = vec![RESOLVER, RESOLVER2, ROGUE, NEVER];
    all.extend_from_slice(hosts);
    let mut e = Enforced::prepare_with_hosts(name, &all, &[443, 853], policy);
    let dns = DnsServer::start(e.lab.world_ns(), RESOLVER, records, 1, cnames);
    e.start_agent();
    Some((dns, e))
}

#[test]
fn names_wildcards_cname_chains_and_aaaa_are_learned_and_nothing_else() {
    let records = [
        ("hub.example", HUB),
        ("hub.example", HUB6),
        ("a.cdn.example", CDN_A),
        ("cdn.example", CDN_BASE),
        ("other.example", OTHER),
        ("origin.elsewhere.example", CHAIN_END),
    ];
    let hosts = [HUB, HUB6, CDN_A, CDN_BASE, OTHER, CHAIN_END];
    let cnames = [("www.cdn.example", "origin.elsewhere.example")];
    let policy = policy("fqdn-basic", "hub.example, \"*.cdn.example\"", 60);
    let Some((_dns, e)) = start("names_wildcards", "fqdn-basic", &hosts, &records, &cnames, &policy) else {
        return;
    };
    // Nothing is allowed before an answer taught it.
    for addr in [HUB, HUB6, CDN_A, CHAIN_END] {
        e.lab.tcp(addr, 443).assert_eperm("not yet answered");
    }
    let hub = resolve(&e.lab, &[RESOLVER, "hub.example", "--connect", "443", "--expect-answers"]);
    assert_eq!((n(&hub, "answered"), n(&hub, "ok"), n(&hub, "eperm")), (1, 1, 0), "{hub}");
    let hub6 = resolve(&e.lab, &[RESOLVER, "HUB.example", "--aaaa", "--connect", "443", "--expect-answers"]);
    assert_eq!((n(&hub6, "answered"), n(&hub6, "ok")), (1, 1), "AAAA, any case: {hub6}");
    let cdn = resolve(&e.lab, &[RESOLVER, "a.cdn.example", "--connect", "443", "--expect-answers"]);
    assert_eq!((n(&cdn, "ok"), n(&cdn, "eperm")), (1, 0), "wildcard: {cdn}");
    let chain = resolve(&e.lab, &[RESOLVER, "www.cdn.example", "--connect", "443", "--expect-answers"]);
    assert_eq!((n(&chain, "ok"), n(&chain, "eperm")), (1, 0), "CNAME chain: {chain}");
    // The wildcard does not cover its base, other names teach nothing, the port is the rule's.
    let base = resolve(&e.lab, &[RESOLVER, "cdn.example", "--connect", "443", "--expect-answers"]);
    assert_eq!((n(&base, "ok"), n(&base, "eperm")), (0, 1), "*.cdn.example is not cdn.example: {base}");
    let other = resolve(&e.lab, &[RESOLVER, "other.example", "--connect", "443", "--expect-answers"]);
    assert_eq!((n(&other, "ok"), n(&other, "eperm")), (0, 1), "{other}");
    e.lab.tcp(HUB, 853).assert_eperm("learned address, port not in the rule (and DNS over TLS)");
    e.lab.tcp(NEVER, 443).assert_eperm("never answered");
    let deny = e.agent().wait_for_event("deny of other.example's address", Duration::from_secs(5), |v| {
        v["dst"] == OTHER && v["verdict"] == "deny"
    });
    assert_eq!(deny["rule"], "default", "{deny}");
    let allow = e.agent().wait_for_event("allow of hub.example's address", Duration::from_secs(5), |v| {
        v["dst"] == HUB && v["verdict"] == "allow"
    });
    assert_eq!(allow["rule"], "hub", "{allow}");
    assert_eq!(allow["domain"], "hub.example", "events name the domain: {allow}");
    let wildcard =
        e.agent().wait_for_event("allow of a.cdn.example's address", Duration::from_secs(5), |v| {
            v["dst"] == CDN_A && v["verdict"] == "allow"
        });
    assert_eq!(wildcard["domain"], "*.cdn.example", "{wildcard}");
}

#[test]
fn churn_ttl_1s_rotating_answers_never_refuse_a_just_answered_address() {
    // 32 addresses; dnsmasq answers s3.example with a window of 4 of them that a thread moves
    // on (rewrite + SIGHUP) while 10,000 lookups run, each followed by a connect to every
    // answered address and to an address no answer ever named.
    let pool: Vec<String> = (100..132).map(|i| format!("203.0.113.{i}")).collect();
    let hosts: Vec<&str> = pool.iter().map(String::as_str).collect();
    let window = |k: usize| -> Vec<(&str, &str)> {
        (0..4).map(|j| ("s3.example", hosts[(k + j) % hosts.len()])).collect()
    };
    let policy = policy("fqdn-churn", "s3.example", 1);
    let Some((dns, e)) = start("churn", "fqdn-churn", &hosts, &window(0), &[], &policy) else {
        return;
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        let rotator = s.spawn(|| {
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                k += 1;
                dns.set_hosts_and_wait(&window(k));
            }
            k
        });
        let r = resolve(
            &e.lab,
            &[RESOLVER, "s3.example", "--count", "10000", "--connect", "443", "--never", NEVER],
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rotations = rotator.join().expect("rotator");
        (r, rotations)
    });
    let (r, rotations) = report;
    eprintln!("churn: {r} after {rotations} rotations");
    assert_eq!(n(&r, "lookups"), 10_000, "{r}");
    // minTTL is 1 s: an address may only be refused once 1 s passed since its last answer (a
    // connect that waited for a SYN retransmission makes the next ones start that late).
    let late: Vec<&Value> = r["refused"].as_array().expect("refused").iter().collect();
    let fresh: Vec<&&Value> =
        late.iter().filter(|v| v["after_answer_ms"].as_u64().unwrap_or(0) < 1000).collect();
    assert!(fresh.is_empty(), "addresses refused within their TTL of an answer: {fresh:?}\n{r}");
    eprintln!("churn: {} connects refused after their 1 s TTL ran out (expected behaviour)", late.len());
    assert_eq!(n(&r, "other"), 0, "{r}");
    assert_eq!(n(&r, "ok") + n(&r, "eperm"), n(&r, "answered"), "{r}");
    assert!(n(&r, "answered") >= 9_000 * 4, "most lookups answered 4 addresses: {r}");
    assert_eq!(n(&r, "never_ok"), 0, "a never-answered address was allowed: {r}");
    assert_eq!(n(&r, "never_eperm"), 10_000, "{r}");
    assert!(n(&r, "distinct") > 8 && rotations > 10, "the answers rotated: {r}, {rotations} rotations");
    // Each address entered the learned set once (refreshes are not new entries); nothing was
    // evicted from a set of 262,144.
    let counters = &e.status()["counters"];
    let new = counters["dns_new"].as_u64().unwrap_or_else(|| panic!("dns_new in {counters}"));
    assert!((n(&r, "distinct")..=32).contains(&new), "{new} new learned entries for {r}");
    assert!(counters["dns_learned"].as_u64().unwrap_or(0) >= n(&r, "answered"), "{counters}");
    let listing = e.agent_cli(&["fqdn", "--json"]);
    let l: Value = serde_json::from_slice(&listing.stdout).expect("fqdn JSON");
    assert_eq!((l["capacity"].as_u64(), l["evicted"].as_u64()), (Some(262_144), Some(0)), "{l}");
}

#[test]
fn truncated_udp_answer_is_retried_over_tcp_and_learned() {
    // 40 A records do not fit a 512-byte UDP answer: dnsmasq truncates, the stub asks again
    // over TCP, and the kernel learns the TCP answer.
    let many: Vec<String> = (140..180).map(|i| format!("203.0.113.{i}")).collect();
    let hosts: Vec<&str> = many.iter().map(String::as_str).collect();
    let records: Vec<(&str, &str)> = hosts.iter().map(|a| ("big.example", *a)).collect();
    let policy = policy("fqdn-tc", "big.example", 60);
    let Some((_dns, e)) = start("truncated", "fqdn-tc", &hosts, &records, &[], &policy) else {
        return;
    };
    let r = resolve(&e.lab, &[RESOLVER, "big.example", "--connect", "443", "--expect-answers"]);
    assert_eq!(n(&r, "truncated"), 1, "{r}");
    assert_eq!((n(&r, "answered"), n(&r, "ok"), n(&r, "eperm")), (40, 40, 0), "{r}");
    let tcp = resolve(&e.lab, &[RESOLVER, "big.example", "--tcp", "--expect-answers"]);
    assert_eq!(n(&tcp, "answered"), 40, "DNS over TCP to the pinned resolver: {tcp}");
}

#[test]
fn only_pinned_resolvers_are_queried_and_learned_from_and_dot_is_refused() {
    let records = [("hub.example", HUB)];
    let policy = policy("fqdn-pin", "hub.example", 60);
    let Some((_dns, mut e)) = start("pinned", "fqdn-pin", &[HUB], &records, &[], &policy) else {
        return;
    };
    // An answer from an unpinned source (port 53, to a socket of the workload) is not learned.
    let listener = e.lab.cgroup().child("listener");
    e.lab.start_node_servers_in(&listener, &[5353]);
    let ignored = || e.status()["counters"]["dns_ignored"].as_u64().unwrap_or(0);
    let before = ignored();
    let forged = e
        .lab
        .world_ns()
        .command(e.lab.probe_path())
        .args(["dns-forge", ROGUE, ringfence_tests::NODE_V4, "hub.example", NEVER])
        .output()
        .expect("forge");
    assert!(forged.status.success(), "{}", String::from_utf8_lossy(&forged.stderr));
    let deadline = Instant::now() + Duration::from_secs(5);
    while ignored() <= before {
        assert!(Instant::now() < deadline, "the forged answer never reached the workload: {}", e.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    e.lab.tcp(NEVER, 443).assert_eperm("address of a forged answer");
    // A second, real server on an address the policy does not pin, answering the allowed name.
    let _rogue = DnsServer::start(e.lab.world_ns(), ROGUE, &[("hub.example", NEVER)], 1, &[]);
    let r = resolve(&e.lab, &[ROGUE, "hub.example", "--connect", "443"]);
    assert_eq!((n(&r, "refused_queries"), n(&r, "answered")), (1, 0), "query to an unpinned resolver: {r}");
    e.lab.udp(ROGUE, 53).assert_eperm("UDP 53 to an unpinned resolver");
    e.lab.tcp(RESOLVER, 853).assert_eperm("DNS over TLS to the pinned resolver");
    let ok = resolve(&e.lab, &[RESOLVER, "hub.example", "--connect", "443", "--expect-answers"]);
    assert_eq!((n(&ok, "ok"), n(&ok, "eperm")), (1, 0), "{ok}");
}

#[test]
fn learned_addresses_survive_agent_kill_and_reload_keeps_names_still_in_the_policy() {
    let records = [("hub.example", HUB), ("a.cdn.example", CDN_A)];
    let policy_both = policy("fqdn-restart", "hub.example, \"*.cdn.example\"", 60);
    let Some((_dns, mut e)) = start("restart", "fqdn-restart", &[HUB, CDN_A], &records, &[], &policy_both)
    else {
        return;
    };
    for name in ["hub.example", "a.cdn.example"] {
        let r = resolve(&e.lab, &[RESOLVER, name, "--connect", "443", "--expect-answers"]);
        assert_eq!((n(&r, "ok"), n(&r, "eperm")), (1, 0), "{name}: {r}");
    }
    // kill -9: the programs and the pinned maps stay; learned addresses stay allowed, nothing
    // else gets through, and new answers are still learned without an agent.
    e.agent.as_mut().expect("agent").kill9();
    e.lab.tcp(HUB, 443).assert_ok("learned address with the agent dead");
    e.lab.tcp(NEVER, 443).assert_eperm("never-answered address with the agent dead");
    e.start_agent();
    e.lab.tcp(HUB, 443).assert_ok("learned address after the restart");
    e.lab.tcp(CDN_A, 443).assert_ok("learned wildcard address after the restart");
    e.lab.tcp(NEVER, 443).assert_eperm("never-answered address after the restart");
    // A reload that keeps hub.example and drops *.cdn.example keeps one and drops the other.
    e.replace_policy(&policy("fqdn-restart", "hub.example", 60));
    e.lab.tcp(HUB, 443).assert_ok("learned address of a name still in the policy");
    e.lab.tcp(CDN_A, 443).assert_eperm("learned address of a name the reload removed");
    let listing = e.agent_cli(&["fqdn", "--json"]);
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    let v: Value = serde_json::from_slice(&listing.stdout).expect("fqdn JSON");
    let hub = v["learned"].as_array().expect("learned").iter().find(|l| l["address"] == HUB).cloned();
    let hub = hub.unwrap_or_else(|| panic!("{HUB} not listed: {v}"));
    assert_eq!(hub["name"], "hub.example", "{v}");
    assert!(hub["expires_in_secs"].as_u64().unwrap_or(0) > 0, "{v}");
}

#[test]
fn malformed_answers_from_a_pinned_resolver_never_stop_learning_or_allow_what_they_do_not_name() {
    let records = [("hub.example", HUB)];
    let dns = format!("  dns:\n    resolvers: [{RESOLVER}, {RESOLVER2}]\n");
    let policy = policy_head_with("fqdn-bad", "enforce", "deny", &dns)
        + "    - name: hub\n      action: allow\n      to: { fqdns: [hub.example] }\n      ports: [ { port: 443, protocol: tcp } ]\n";
    let Some((_dns, mut e)) = start("malformed", "fqdn-bad", &[HUB, CDN_A], &records, &[], &policy) else {
        return;
    };
    let listener = e.lab.cgroup().child("listener");
    e.lab.start_node_servers_in(&listener, &[5353]);
    let counter = |name: &str| e.status()["counters"][name].as_u64().unwrap_or(0);
    let matched_before = counter("dns_matched");
    // 20,000 mutations of an answer for the allowed name naming CDN_A, from a pinned resolver
    // address, to a socket of the workload: each goes through the kernel's parser.
    let out = e
        .lab
        .world_ns()
        .command(e.lab.probe_path())
        .args(["dns-forge", RESOLVER2, ringfence_tests::NODE_V4, "hub.example", CDN_A])
        .args(["--mutations", "20000", "--seed", "7"])
        .output()
        .expect("dns-forge");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter("dns_matched") <= matched_before {
        assert!(Instant::now() < deadline, "no answer reached the parser: {}", e.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("malformed: counters after the flood {}", e.status()["counters"]);
    // An address in none of the packets stays refused; the agent is alive; learning still works.
    e.lab.tcp(NEVER, 443).assert_eperm("never-answered address after malformed answers");
    let r = resolve(&e.lab, &[RESOLVER, "hub.example", "--connect", "443", "--expect-answers"]);
    assert_eq!((n(&r, "ok"), n(&r, "eperm")), (1, 0), "learning after malformed answers: {r}");
    assert!(e.agent.as_mut().expect("agent").is_running(), "the agent survived");
}

#[test]
fn agent_kill_and_restart_during_churn_refuses_no_live_learned_address() {
    let pool: Vec<String> = (100..116).map(|i| format!("203.0.113.{i}")).collect();
    let hosts: Vec<&str> = pool.iter().map(String::as_str).collect();
    let window = |k: usize| -> Vec<(&str, &str)> {
        (0..4).map(|j| ("s3.example", hosts[(k + j) % hosts.len()])).collect()
    };
    let policy = policy("fqdn-churn-kill", "s3.example", 60);
    let Some((dns, mut e)) = start("churn_kill", "fqdn-churn-kill", &hosts, &window(0), &[], &policy) else {
        return;
    };
    let args = [RESOLVER, "s3.example", "--count", "3000", "--connect", "443", "--never", NEVER];
    let child = spawn_resolve(&e.lab, &args);
    // Rotate the answers while the agent is killed (-9) and started again, the loop running.
    let rotate = |from: usize, to: usize| (from..to).for_each(|k| dns.set_hosts_and_wait(&window(k)));
    rotate(1, 10);
    e.agent.as_mut().expect("agent").kill9();
    rotate(10, 20);
    e.start_agent();
    rotate(20, 30);
    let r = parse_resolve(&args, child.wait_with_output().expect("lab-probe resolve"));
    eprintln!("churn with kill -9 and restart: {r}");
    assert_eq!(n(&r, "lookups"), 3000, "{r}");
    assert_eq!(n(&r, "eperm"), 0, "a live learned address was refused across the restart: {r}");
    assert_eq!(n(&r, "ok"), n(&r, "answered"), "{r}");
    assert_eq!((n(&r, "never_ok"), n(&r, "never_eperm")), (0, 3000), "{r}");
}

/// `approvedSinks.fqdns`: while an address answered for a sink name lives, transfers to it are
/// not charged to the budgets; an address answered for an allowed name that is not a sink is.
#[test]
fn an_approved_sink_named_by_domain_is_not_charged_to_the_budget() {
    const BUDGET: u64 = 4 << 20;
    const BUCKET: &str = "203.0.113.20";
    let dns = format!("  dns:\n    resolvers: [{RESOLVER}]\n");
    let exfil = "  exfiltration:\n    approvedSinks: { fqdns: [\"*.s3.example\"] }\n    budgets: { perDestination: 4MiB/1h }\n";
    let policy = policy_head_with("fqdn-sink", "enforce", "deny", &format!("{dns}{exfil}"))
        + "    - name: storage\n      action: allow\n      to: { fqdns: [hub.example, \"*.s3.example\"] }\n      ports: [ { port: 443, protocol: tcp } ]\n";
    let records = [("hub.example", HUB), ("bucket.s3.example", BUCKET)];
    let Some((_dns, e)) = start("sink_names", "fqdn-sink", &[HUB, BUCKET], &records, &[], &policy) else {
        return;
    };
    let upload = |addr: &str| e.lab.upload(addr, 443, 4 * BUDGET, None);
    for name in ["bucket.s3.example", "hub.example"] {
        let r = resolve(&e.lab, &[RESOLVER, name, "--connect", "443", "--expect-answers"]);
        assert_eq!(n(&r, "ok"), 1, "{name}: {r}");
    }
    let sink = upload(BUCKET);
    let whole = format!("pong {}", 4 * BUDGET);
    assert_eq!((sink["ok"].as_bool(), sink["reply"].as_str()), (Some(true), Some(&*whole)), "sink: {sink}");
    let hub = upload(HUB);
    assert_eq!(hub["stalled"], true, "an allowed name that is not a sink is charged: {hub}");
    let sent = hub["sent"].as_u64().expect("sent");
    assert!(sent < 2 * BUDGET, "{sent} bytes sent to a 4 MiB budget: {hub}");
    let alert = e.agent().wait_for("budget alert for the hub", Duration::from_secs(10), |v| {
        v["message"] == "exfiltration alert" && v["kind"] == "budget" && v["destination"] == HUB
    });
    assert_eq!(alert["budget"], "perDestination", "{alert}");
    assert!(
        !e.agent().lines().iter().any(|v| v["message"] == "exfiltration alert" && v["destination"] == BUCKET),
        "no alert for the sink"
    );
}

/// HTTPS to a shipped DNS-over-HTTPS endpoint is refused even where a rule allows port 443 to
/// everywhere. The connect hook refuses before a packet exists, so no server is needed at those
/// addresses (and nothing is sent towards them); a documentation address is the control.
#[test]
fn https_to_shipped_dns_over_https_endpoints_is_refused_where_443_is_allowed() {
    let dns = format!("  dns:\n    resolvers: [{RESOLVER}]\n");
    let policy = policy_head_with("fqdn-doh", "enforce", "deny", &dns)
        + "    - name: web\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n      ports: [ { port: 443, protocol: tcp } ]\n";
    let Some((_dns, e)) = start("doh", "fqdn-doh", &[HUB], &[], &[], &policy) else {
        return;
    };
    e.lab.tcp(HUB, 443).assert_ok("the rule allows 443");
    for doh in ["1.1.1.1", "8.8.8.8", "9.9.9.9", "2606:4700:4700::1111"] {
        e.lab.tcp(doh, 443).assert_eperm("a DNS-over-HTTPS endpoint");
        let ev =
            e.agent().wait_for_event(&format!("deny of {doh}"), Duration::from_secs(5), |v| v["dst"] == doh);
        assert_eq!((ev["verdict"].as_str(), ev["rule"].as_str()), (Some("deny"), Some("dns-pinned")), "{ev}");
    }
}

/// A flow to a learned address keeps that address alive past its TTL and floor (the backstop's
/// cached packets renew it), so a reload that keeps the name does not cut the flow and a new
/// connect while it runs is allowed; once the flow ends the address expires as usual.
#[test]
fn a_live_flow_keeps_its_learned_address_past_the_ttl_and_across_a_reload() {
    const FLOOR: u64 = 2;
    let records = [("hub.example", HUB)];
    let Some((_dns, e)) =
        start("live_flow", "fqdn-live", &[HUB], &records, &[], &policy("fqdn-live", "hub.example", 2))
    else {
        return;
    };
    let r = resolve(&e.lab, &[RESOLVER, "hub.example", "--expect-answers"]);
    assert_eq!(n(&r, "answered"), 1, "{r}");
    let answered = Instant::now();
    // 2.4 MB at 300 kB/s: about 8 s, four times the floor.
    let mut stream = e.lab.spawn_probe(&[
        "stream",
        HUB,
        "443",
        "--bytes",
        "2400000",
        "--rate",
        "300000",
        "--stall-ms",
        "1500",
        "--timeout-ms",
        "30000",
    ]);
    // The condition is time itself: the answer's TTL and the floor must be over.
    let past = answered + Duration::from_secs(FLOOR + 2);
    while Instant::now() < past {
        assert!(stream.try_wait().expect("stream").is_none(), "the flow ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    e.lab.tcp(HUB, 443).assert_ok("the address is kept alive by its running flow");
    // A reload (another floor, same name): every cached verdict is decided again.
    e.replace_policy(&policy("fqdn-live", "hub.example", 1));
    let out = stream.wait_with_output().expect("stream");
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_owned();
    let v: Value = serde_json::from_str(&last).unwrap_or_else(|_| panic!("stream said {last:?}"));
    assert!(
        v["ok"] == true && v["stalled"] != true && v["reply"] == "pong 2400000",
        "the flow ran to its end: {v}"
    );
    assert!(answered.elapsed() > Duration::from_secs(3 * FLOOR), "the flow outlived the floor: {v}");
    // With the flow gone nothing renews the address: it expires within the floor.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listing = e.agent_cli(&["fqdn", "--json"]);
        let l: Value = serde_json::from_slice(&listing.stdout).expect("fqdn JSON");
        let live = l["learned"].as_array().is_some_and(|a| {
            a.iter().any(|x| x["address"] == HUB && x["expires_in_secs"].as_u64().unwrap_or(0) > 0)
        });
        if !live {
            break;
        }
        assert!(Instant::now() < deadline, "the address never expired after its flow ended: {l}");
        std::thread::sleep(Duration::from_millis(100));
    }
    e.lab.tcp(HUB, 443).assert_eperm("expired once its flow ended");
}
