//! The packet path (tcx on the node's uplink): raw sockets cannot bypass the policy, and every
//! flow's bytes are counted and attributed to the sending cgroup. Run as root, serially.
use std::time::Duration;

use ringfence_tests::{policy_head_with, Enforced, NetNs};

/// Raw sockets are allowed here (`rawSockets: policy`): this file tests that their packets are
/// decided; tests/tests/isolation.rs that they are refused by default.
fn policy() -> String {
    policy_head_with("packet-path", "enforce", "deny", "  rawSockets: policy\n")
        + "    - name: store\n      action: allow\n      to: { cidrs: [198.51.100.10/32, \"2001:db8:10::/48\"] }\n"
}

fn packet_path(name: &str) -> Enforced {
    let mut e = Enforced::prepare(name, &[443, 53], &policy());
    e.packet_path = true;
    e.start_agent();
    e
}

/// UDP datagrams (IPv4 or IPv6) that reached the namespace's UDP layer, whatever became of them
/// (delivered, no port, checksum or other errors): other traffic (neighbour discovery, MLD) is
/// left out, so the count is exact.
fn udp_received(ns: &NetNs, v6: bool) -> u64 {
    const IN: [&str; 4] = ["InDatagrams", "NoPorts", "InErrors", "InCsumErrors"];
    if v6 {
        let text = String::from_utf8_lossy(&ns.exec(&["cat", "/proc/net/snmp6"]).stdout).into_owned();
        return IN
            .iter()
            .map(|c| {
                let key = format!("Udp6{c}");
                text.lines()
                    .find_map(|l| {
                        l.strip_prefix(key.as_str()).map(|v| v.trim().parse::<u64>().expect("counter"))
                    })
                    .unwrap_or_else(|| panic!("{key} in /proc/net/snmp6"))
            })
            .sum();
    }
    // "Udp: InDatagrams NoPorts ..." then "Udp: 1 2 ...".
    let text = String::from_utf8_lossy(&ns.exec(&["cat", "/proc/net/snmp"]).stdout).into_owned();
    let mut rows = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (rows.next().expect("Udp header"), rows.next().expect("Udp values"));
    let names: Vec<&str> = names.split_whitespace().collect();
    let values: Vec<u64> = values.split_whitespace().skip(1).map(|v| v.parse().expect("number")).collect();
    IN.iter().map(|c| values[names.iter().position(|n| n == c).expect("column") - 1]).sum()
}

#[test]
fn raw_sockets_cannot_bypass_the_policy() {
    let e = packet_path("rawsock");
    for (denied, allowed, v6) in
        [("203.0.113.5", "198.51.100.10", false), ("2001:db8:20::10", "2001:db8:10::10", true)]
    {
        let before = udp_received(e.lab.world_ns(), v6);
        // The drop may surface to the sender as ENOBUFS; what matters is that nothing arrives.
        e.lab.probe(&["raw", denied, "53", "--count", "20"]).assert_ok("raw probe ran");
        let sent = e.lab.probe(&["raw", allowed, "53", "--count", "20"]);
        assert_eq!(
            sent.reply.as_deref(),
            Some("sent 20, failed []"),
            "raw sends to an allowed host: {sent:?}"
        );
        // Packets on the veth arrive in order: once the 20 allowed ones are in, any denied one
        // sent before them would be too. (An IPv6 datagram with checksum 0 counts twice:
        // InErrors and InCsumErrors.)
        let expected = before + if v6 { 40 } else { 20 };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while udp_received(e.lab.world_ns(), v6) < expected {
            assert!(std::time::Instant::now() < deadline, "raw packets to allowed {allowed} must arrive");
            std::thread::sleep(Duration::from_millis(20));
        }
        let after = udp_received(e.lab.world_ns(), v6);
        assert_eq!(after, expected, "raw packets to denied {denied} reached the world namespace");
    }
    // The cgroup's backstop stops them before they reach the uplink's packet path.
    let status = e.status();
    let dropped = ["backstop_dropped", "packets_dropped"]
        .iter()
        .map(|c| status["counters"][c].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert!(dropped >= 40, "{status}");
    // The connect hooks still answer first for normal sockets.
    e.lab.tcp("203.0.113.5", 443).assert_eperm("connect to a denied host");
    e.lab.tcp("198.51.100.10", 443).assert_ok("connect to an allowed host");
}

#[test]
fn flow_counters_match_a_50_mb_transfer_and_name_the_cgroup() {
    let e = packet_path("flows");
    const BYTES: u64 = 50_000_000;
    let r = e.lab.probe(&["tcp", "198.51.100.10", "443", "--bytes", &BYTES.to_string()]);
    r.assert_ok("50 MB upload");
    e.lab.udp("2001:db8:10::10", 53).assert_ok("a small IPv6 UDP flow");
    let out = e.agent_cli(&["flows", "--json"]);
    assert!(out.status.success(), "flows: {}", String::from_utf8_lossy(&out.stderr));
    let flows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("flows JSON");
    let tcp = flows
        .iter()
        .find(|f| f["remote"] == "198.51.100.10" && f["remote_port"] == 443 && f["protocol"] == "tcp")
        .unwrap_or_else(|| panic!("no flow to 198.51.100.10:443 in {flows:#?}"));
    let tx = tcp["tx_bytes"].as_u64().expect("tx_bytes");
    let err = (tx as f64 - BYTES as f64).abs() / BYTES as f64;
    println!("50 MB flow: counted {tx} bytes sent ({:.4}% off), {} packets", err * 100.0, tcp["tx_packets"]);
    assert!(err < 0.01, "counted {tx} bytes for {BYTES} sent: {tcp}");
    assert_eq!(tcp["local"], "192.0.2.1", "{tcp}");
    assert!(tcp["rx_bytes"].as_u64().unwrap_or(0) > 0, "the reply was counted: {tcp}");
    let cgroup_id =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(e.lab.cgroup_path()).expect("cgroup"));
    assert_eq!(tcp["cgroup_id"], cgroup_id, "attributed to the sending cgroup: {tcp}");
    let udp = flows
        .iter()
        .find(|f| f["remote"] == "2001:db8:10::10" && f["protocol"] == "udp")
        .unwrap_or_else(|| panic!("no IPv6 UDP flow in {flows:#?}"));
    assert_eq!((udp["tx_packets"].as_u64(), udp["rx_packets"].as_u64()), (Some(1), Some(1)), "{udp}");
}

#[test]
fn idle_flows_expire() {
    let mut e = Enforced::prepare("expire", &[443], &policy());
    e.packet_path = true;
    e.agent_args = vec!["--flow-idle-timeout".into(), "1".into()];
    e.start_agent();
    e.lab.tcp("198.51.100.10", 443).assert_ok("make a flow");
    let flows = |e: &Enforced| -> Vec<serde_json::Value> {
        let out = e.agent_cli(&["flows", "--json"]);
        assert!(out.status.success(), "flows: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("flows JSON")
    };
    let to_store = |f: &serde_json::Value| f["remote"] == "198.51.100.10" && f["remote_port"] == 443;
    assert!(flows(&e).iter().any(to_store), "the flow is listed while fresh");
    // The agent sweeps every quarter of the timeout: the idle flow goes within a few sweeps.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = flows(&e);
        if !left.iter().any(to_store) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "an idle flow must expire: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
