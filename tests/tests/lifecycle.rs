//! The agent's life: hot reloads with no glitch, rejected reloads, SIGKILL and restart with the
//! enforcement pinned, detach, a full event ring buffer, and refusal of bad configuration.
//! Run as root, serially (`cargo xtask test`).
use std::{os::unix::process::CommandExt, process::Command, time::Duration};

use ringfence_tests::{agent_bin, policy_head, AgentProc, Enforced, LoopReport, NODE_V4};

const WAIT: Duration = Duration::from_secs(10);

/// Allow the store on 443 (TCP) and 53 (UDP) in both families; the `extra` rule toggles port
/// 8080 between 198.51.100.20 (even generations) and 198.51.100.10 (odd ones).
fn reload_policy(generation: usize) -> String {
    let extra = if generation.is_multiple_of(2) { "198.51.100.20/32" } else { "198.51.100.10/32" };
    policy_head("reload", "enforce", "deny")
        + "    - name: store\n      action: allow\n      to: { cidrs: [198.51.100.10/32, \"2001:db8:10::/48\"] }\n"
        + "      ports: [ { port: 443, protocol: tcp }, { port: 53, protocol: udp } ]\n"
        + "    - name: blocked\n      action: deny\n      to: { cidrs: [203.0.113.0/24] }\n"
        + &format!("    - name: extra-{generation}\n      action: allow\n      to: {{ cidrs: [{extra}] }}\n      ports: [ {{ port: 8080, protocol: tcp }} ]\n")
}

const LOOP_TARGETS: [&str; 6] = [
    "tcp:198.51.100.10:443:allow",
    "udp:198.51.100.10:53:allow",
    "tcp:[2001:db8:10::10]:443:allow",
    "tcp:203.0.113.5:443:deny",
    "udp:203.0.113.5:53:deny",
    "tcp:[2001:db8:20::10]:443:deny",
];

fn loop_args(stop_file: &str) -> Vec<String> {
    let mut args = vec![
        "loop".to_string(),
        "--duration-ms".into(),
        "120000".into(),
        "--stop-file".into(),
        stop_file.into(),
        "--interval-ms".into(),
        "1".into(),
    ];
    for t in LOOP_TARGETS {
        args.push("--target".into());
        args.push(t.into());
    }
    args
}

fn finish_loop(child: std::process::Child, stop_file: &std::path::Path) -> LoopReport {
    std::fs::write(stop_file, b"stop").expect("write stop file");
    let report = LoopReport::from_output(&child.wait_with_output().expect("loop probe output"));
    let _ = std::fs::remove_file(stop_file);
    report
}

#[test]
fn fifty_reloads_without_a_wrong_verdict() {
    let e = Enforced::start("reload", &[443, 53, 8080], &reload_policy(0));
    let tmp = tempfile::tempdir().expect("temp dir");
    let stop = tmp.path().join("stop");
    let args = loop_args(stop.to_str().expect("utf-8"));
    let child = e.lab.spawn_probe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for generation in 1..=50 {
        e.replace_policy(&reload_policy(generation));
    }
    let report = finish_loop(child, &stop);
    let attempts: u64 = report.targets.iter().map(|t| t.attempts).sum();
    println!("50 reloads: {attempts} probes over {} ms, {} wrong", report.duration_ms, report.total_wrong());
    assert_eq!(report.total_wrong(), 0, "a connect saw a wrong verdict during reloads: {report:#?}");
    for t in &report.targets {
        assert!(t.attempts >= 50, "too few attempts to mean anything: {t:?}");
        assert_eq!(t.other_err, 0, "{t:?}");
    }
    // The last policy (generation 50: extra allows .20) is the one in force.
    e.lab.tcp("198.51.100.20", 8080).assert_ok("rule added by the last reload");
    e.lab.tcp("198.51.100.10", 8080).assert_eperm("rule removed by the last reload");
    assert_eq!(e.status()["policy"]["generation"], 51, "one generation per reload");
}

#[test]
fn sighup_reloads_and_a_bad_policy_keeps_the_old_one() {
    let e = Enforced::start("badreload", &[443, 8080], &reload_policy(0));
    e.lab.tcp("198.51.100.20", 8080).assert_ok("extra rule of the first policy");
    // An invalid policy is rejected; the one in force stays.
    std::fs::write(
        &e.policy,
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nspec: { defaultAction: maybe }\n",
    )
    .expect("write");
    let rejected = e.agent().wait_for_message("policy rejected; the policy in force stays", WAIT);
    assert!(
        rejected["errors"].as_str().unwrap_or("").contains("maybe"),
        "the error names the bad value: {rejected}"
    );
    e.lab.tcp("198.51.100.10", 443).assert_ok("old policy still allows");
    e.lab.tcp("203.0.113.5", 443).assert_eperm("old policy still denies");
    // SIGHUP applies a fixed file (written without the watcher noticing first is fine too).
    std::fs::write(&e.policy, reload_policy(1)).expect("write");
    e.agent().hup_and_wait(WAIT);
    e.lab.tcp("198.51.100.10", 8080).assert_ok("rule of the new policy");
    e.lab.tcp("198.51.100.20", 8080).assert_eperm("rule gone with the old policy");
}

/// An open connection the old policy allowed (its packets passed from the backstop's verdict
/// cache) is cut by a reload that no longer allows its destination: the cache is keyed by the
/// policy generation, so the first packet after the reload gets the full verdict.
#[test]
fn a_reload_that_revokes_a_destination_cuts_its_open_connection() {
    let e = Enforced::start("revoke", &[8080], &reload_policy(0));
    revoked_upload_stalls(&e, &[]);
    e.lab.tcp("198.51.100.20", 8080).assert_eperm("new connections are refused as well");
}

/// A socket that first took a connection in (a listener shut back down to CLOSE, or the
/// accepted connection disconnected) and then connects out is the workload's own connection,
/// not a reply: a reload that revokes its destination cuts it like any other. (Where the kernel
/// refuses connect() on a former listener, as 6.x does, that case ends at the refusal.)
#[test]
fn a_socket_that_took_a_connection_in_cannot_pass_its_own_upload_off_as_a_reply() {
    for (kind, port) in [("listener", "7001"), ("accepted", "7002")] {
        let e = Enforced::start(&format!("reuse{kind}"), &[8080], &reload_policy(0));
        revoked_upload_stalls(&e, &["--reuse", kind, port]);
    }
}

/// Starts an upload to 198.51.100.20:8080 (allowed by `reload_policy(0)`, with `extra`
/// arguments for the probe), reloads `reload_policy(1)` (which revokes it) and waits for the
/// upload to stall.
fn revoked_upload_stalls(e: &Enforced, extra: &[&str]) {
    use std::io::{BufRead, BufReader};
    let mut args = vec![
        "stream",
        "198.51.100.20",
        "8080",
        "--bytes",
        "4000000000",
        "--rate",
        "4000000",
        "--mark",
        "1000000",
        "--stall-ms",
        "1500",
        "--timeout-ms",
        "5000",
    ];
    args.extend_from_slice(extra);
    let mut child = e.lab.spawn_probe(&args);
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut next = || lines.next().expect("a line from the stream").expect("read stream");
    if let Some(at) = extra.iter().position(|a| *a == "--reuse") {
        let port = extra[at + 2];
        let listening = next();
        assert!(listening.contains("listening"), "the probe listens first: {listening}");
        // A connection in from the world: the listener's ingress rules (none: open) let it in.
        let _ = e.lab.world_probe(&["tcp", NODE_V4, port, "--timeout-ms", "1000"]);
        let accepted = next();
        assert!(accepted.contains("accepted"), "the probe took a connection in: {accepted}");
    }
    let first = next();
    if extra.contains(&"listener") && first.contains("\"EINVAL\"") && first.contains("\"connect\"") {
        // Linux 6.x refuses connect() on a former listener (EINVAL): nothing leaves it at all.
        eprintln!("this kernel refuses connect() on a former listener: {first}");
        let status = child.wait().expect("wait for the probe");
        assert_eq!(status.code(), Some(2), "the refused connect ends the probe: {first}");
        return;
    }
    assert!(first.contains("\"mark\""), "the upload is under way before the reload: {first}");
    e.replace_policy(&reload_policy(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the stream") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the revoked upload ({extra:?}) still runs 30 s after the reload");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let last = rest.last().cloned().unwrap_or_default();
    assert_eq!(status.code(), Some(3), "the upload ({extra:?}) stalls once the reload revokes it: {rest:?}");
    assert!(last.contains("\"stalled\":true"), "{last}");
}

#[test]
fn sigkill_leaves_enforcement_and_a_restart_adopts_it_without_a_gap() {
    let mut e = Enforced::start("restart", &[443, 53], &reload_policy(0));
    let tmp = tempfile::tempdir().expect("temp dir");
    let stop = tmp.path().join("stop");
    let args = loop_args(stop.to_str().expect("utf-8"));
    let child = e.lab.spawn_probe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // The loop is running under the first agent before it dies.
    e.agent().wait_for_count("verdict", 50, WAIT);
    e.agent.as_mut().expect("agent").kill9();
    e.lab.tcp("203.0.113.5", 443).assert_eperm("enforcement outlives the agent");
    e.lab.tcp("198.51.100.10", 443).assert_ok("allowed traffic still flows");
    let before = e.status()["policy"]["generation"].as_u64().expect("generation");
    // A new agent adopts the pinned programs and maps, replacing them with no gap.
    let started = e.start_agent().wait_for_message("enforcing", WAIT);
    assert_eq!(started["adopted"], true, "{started}");
    assert_eq!(started["generation"].as_u64(), Some(before + 1), "{started}");
    // ... and keeps running under the new one.
    e.agent().wait_for_count("verdict", 50, WAIT);
    let report = finish_loop(child, &stop);
    assert_eq!(report.total_wrong(), 0, "a verdict was wrong across kill -9 and restart: {report:#?}");
    // Exactly one set of programs stays attached after the restart: one pin per hook in force,
    // no staging pins left behind.
    let links: Vec<String> = std::fs::read_dir(e.bpffs().join("links"))
        .expect("links dir")
        .map(|d| d.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let hooks = e.status()["hooks"].as_array().expect("hooks").len();
    assert!(hooks >= 8, "backstop, socket guards and connect hooks: {links:?}");
    assert_eq!(links.len(), hooks, "{links:?}");
    assert!(links.iter().all(|l| !l.ends_with("_next") && !l.ends_with("_raw")), "{links:?}");
}

#[test]
fn detach_removes_enforcement_and_pins() {
    let mut e = Enforced::start("detach", &[443], &reload_policy(0));
    e.agent.as_mut().expect("agent").terminate();
    e.lab.tcp("203.0.113.5", 443).assert_eperm("a stopped agent leaves enforcement in place");
    let out = e.agent_cli(&["detach"]);
    assert!(out.status.success(), "detach: {}", String::from_utf8_lossy(&out.stderr));
    e.lab.tcp("203.0.113.5", 443).assert_ok("nothing enforced after detach");
    assert!(!e.bpffs().exists(), "pins left behind under {}", e.bpffs().display());
    let status = e.agent_cli(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("not enforcing"), "{status:?}");
}

/// Maps pinned by another Ringfence version with another layout are not reused: the agent
/// stops with what differs (exit 69) and the programs in force stay attached; after `detach`
/// the agent starts.
#[test]
fn a_pinned_map_of_another_layout_stops_the_agent_with_what_differs() {
    let mut e = Enforced::start("layout", &[443], &reload_policy(0));
    e.agent.as_mut().expect("agent").terminate();
    // The statistics array as a version with three counters would have pinned it.
    let pin = e.bpffs().join("maps/RF_STATS");
    std::fs::remove_file(&pin).expect("unpin RF_STATS");
    let old = aya::maps::PerCpuArray::<_, u64>::create(3, 0).expect("create a 3-entry per-CPU array");
    old.pin(&pin).expect("pin it as RF_STATS");
    let mut run = Command::new(agent_bin())
        .args(e.run_args())
        .arg("--allow-weaker-isolation")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the agent");
    let deadline = std::time::Instant::now() + WAIT;
    while run.try_wait().expect("wait for the agent").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = run.kill();
            panic!("the agent started on a map of another layout");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run.wait_with_output().expect("agent output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("another Ringfence version")
            && stderr.contains("RF_STATS")
            && stderr.contains("3 entries"),
        "{stderr}"
    );
    assert!(stderr.contains("detach"), "says what to do: {stderr}");
    e.lab.tcp("203.0.113.5", 443).assert_eperm("the old programs still enforce");
    let detached = e.agent_cli(&["detach"]);
    assert!(detached.status.success(), "detach: {}", String::from_utf8_lossy(&detached.stderr));
    e.start_agent();
    e.lab.tcp("203.0.113.5", 443).assert_eperm("enforced again by the new agent");
    e.lab.tcp("198.51.100.10", 443).assert_ok("allowed traffic flows");
}

/// An agent upgraded from a version that attached `rf_sockops` removes that version's pinned
/// link once its own programs are attached. (Stand-in: the sock_create link pinned a second time
/// under the retired name, so the test needs no program of the old version.)
#[test]
fn an_upgrade_removes_the_links_of_retired_programs() {
    use aya::programs::links::{FdLink, PinnedLink};
    let mut e = Enforced::start("retired", &[443], &reload_policy(0));
    e.agent.as_mut().expect("agent").terminate();
    let links = e.bpffs().join("links");
    let retired = links.join("rf_sockops");
    let link: FdLink =
        PinnedLink::from_pin(links.join("rf_sock_create")).expect("the pinned sock_create link").into();
    drop(link.pin(&retired).expect("pin it under the retired name"));
    let started = e.start_agent().wait_for_message("detached a link an earlier version attached", WAIT);
    assert_eq!(started["link"], "rf_sockops", "{started}");
    assert!(!retired.exists(), "the retired link is unpinned: {}", retired.display());
    e.agent().wait_for_message("enforcing", WAIT);
    e.lab.tcp("203.0.113.5", 443).assert_eperm("enforced by the upgraded agent");
    e.lab.tcp("198.51.100.10", 443).assert_ok("allowed traffic flows");
}

#[test]
fn full_ring_buffer_never_changes_a_verdict() {
    let mut e = Enforced::start("ringfull", &[443], &reload_policy(0));
    // Nobody reads events while the agent is dead: the ring buffer (1 MiB) fills up.
    e.agent.as_mut().expect("agent").kill9();
    let out = e
        .lab
        .spawn_probe(&[
            "loop",
            "--duration-ms",
            "4000",
            "--interval-ms",
            "0",
            "--target",
            "tcp:203.0.113.5:443:deny",
            "--target",
            "udp:203.0.113.5:53:deny",
        ])
        .wait_with_output()
        .expect("loop output");
    let report = LoopReport::from_output(&out);
    let attempts: u64 = report.targets.iter().map(|t| t.attempts).sum();
    assert_eq!(report.total_wrong(), 0, "{report:#?}");
    let counters = &e.status()["counters"];
    assert!(attempts > 12_000, "not enough attempts to fill the ring buffer: {attempts}");
    assert!(counters["events_dropped"].as_u64().unwrap_or(0) > 0, "no drops counted: {counters}");
    assert!(counters["denied"].as_u64().unwrap_or(0) >= attempts, "every attempt was denied: {counters}");
    e.lab.tcp("198.51.100.10", 443).assert_ok("allowed traffic unaffected by a full ring buffer");
}

#[test]
fn bad_configuration_is_reported_all_at_once_with_exit_64() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: ringfence.dev/v2\nkind: EgressPolicy\nmetadata: { name: x }\nspec: { defaultAction: deny, colour: red }\n").expect("write");
    let mut agent = AgentProc::spawn_args(
        &agent_bin(),
        &[
            "run".as_ref(),
            "--policy".as_ref(),
            bad.as_os_str(),
            "--cgroup".as_ref(),
            dir.as_os_str(),
            "--bpffs".as_ref(),
            dir.as_os_str(),
        ],
        false,
    );
    let status = agent.wait_exit(WAIT);
    assert_eq!(status.code(), Some(64), "{:?}", agent.lines());
    let log = serde_json::to_string(&agent.lines()).expect("json");
    for needle in ["apiVersion", "colour", "not a cgroup v2 directory", "not on a bpf filesystem"] {
        assert!(log.contains(needle), "missing {needle:?} in {log}");
    }
}

#[test]
fn not_root_is_refused_with_exit_77() {
    let e = Enforced::prepare("nonroot", &[], &reload_policy(0));
    let out = Command::new(agent_bin())
        .args(e.run_args())
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run agent as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The policy lives in a root-owned temp dir; either way the agent must refuse clearly.
    assert!(matches!(out.status.code(), Some(77) | Some(64)), "{:?} {stderr}", out.status);
    assert!(stderr.contains("not running as root"), "{stderr}");
}

#[test]
fn refused_bpf_is_reported_with_exit_69() {
    let e = Enforced::prepare("nobpf", &[], &reload_policy(0));
    // Root in a new user namespace passes every check but the kernel refuses bpf().
    for dir in ["maps", "links"] {
        std::fs::create_dir_all(e.bpffs().join(dir)).expect("pin directories");
    }
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user"])
        .arg(agent_bin())
        .args(e.run_args())
        .output()
        .expect("run agent in a user namespace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("BPF is unavailable") && stderr.contains("kernel refused"), "{stderr}");
}
