//! Sanity test of the lab itself (no eBPF): namespaces, veth, servers and
//! probes work, and everything is gone after drop.
//!
//! Run as root: `cargo test -p ringfence-tests --test lab_smoke -- --test-threads=1`

use std::path::PathBuf;

use ringfence_tests::{Lab, LoopReport, WORLD_V4, WORLD_V6};

#[test]
fn lab_connects_and_cleans_up() {
    let (ns_paths, cgroup, bpffs): (Vec<PathBuf>, PathBuf, PathBuf);
    {
        let mut lab = Lab::new("smoke");
        lab.start_world_servers(&[443, 5353]);
        ns_paths = vec![lab.node_ns().path().to_owned(), lab.world_ns().path().to_owned()];
        cgroup = lab.cgroup_path().to_owned();
        bpffs = lab.bpffs_path().to_owned();
        assert!(cgroup.is_dir() && bpffs.is_dir());

        for addr in [WORLD_V4[0], WORLD_V4[2], WORLD_V6[0], WORLD_V6[1]] {
            let r = lab.tcp(addr, 443);
            r.assert_ok(&format!("tcp {addr}"));
            assert_eq!(r.reply.as_deref(), Some("pong 4"), "tcp {addr}: {r:?}");
            lab.udp(addr, 5353).assert_ok(&format!("udp sendto {addr}"));
            lab.udp_connected(addr, 5353).assert_ok(&format!("udp connect {addr}"));
        }
        let r = lab.probe(&["tcp", WORLD_V4[1], "443", "--bytes", "10000"]);
        assert_eq!(r.reply.as_deref(), Some("pong 10000"), "tcp --bytes: {r:?}");
        // IPv4-mapped destination through an AF_INET6 socket.
        lab.tcp(&format!("::ffff:{}", WORLD_V4[0]), 443).assert_ok("tcp v4-mapped");
        lab.udp(&format!("::ffff:{}", WORLD_V4[0]), 5353).assert_ok("udp v4-mapped");

        // No server on this port: a clean, non-EPERM failure with exit code 2.
        let r = lab.tcp(WORLD_V4[0], 9);
        assert!(!r.ok && !r.is_eperm(), "closed port: {r:?}");
        assert_eq!(r.error.as_deref(), Some("ECONNREFUSED"), "{r:?}");
        assert_eq!(r.exit_code, Some(2));

        // Probes run inside the test cgroup.
        let child = lab.spawn_probe(&[
            "loop",
            "--duration-ms",
            "500",
            "--target",
            &format!("tcp:{}:443:allow", WORLD_V4[0]),
            "--target",
            &format!("udp:[{}]:5353:allow", WORLD_V6[0]),
            "--target",
            &format!("udpc:{}:5353:allow", WORLD_V4[2]),
        ]);
        assert!(lab.cgroup().pids().contains(&(child.id() as i32)), "loop probe not in cgroup");
        let report = LoopReport::from_output(&child.wait_with_output().expect("wait loop probe"));
        assert_eq!(report.total_wrong(), 0, "{report:?}");
        assert!(report.targets.iter().all(|t| t.ok > 0), "{report:?}");

        // A leftover long-running probe is killed by the lab's teardown.
        #[allow(clippy::zombie_processes)]
        let _orphan = lab.spawn_probe(&[
            "loop",
            "--duration-ms",
            "60000",
            "--target",
            &format!("tcp:{}:443:allow", WORLD_V4[0]),
        ]);
    }
    for p in &ns_paths {
        assert!(!p.exists(), "netns {} left behind", p.display());
    }
    assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
    assert!(!bpffs.exists(), "bpffs {} left behind", bpffs.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(bpffs.to_str().unwrap()), "bpffs still mounted");
}

#[test]
fn lab_drop_on_panic_cleans_up() {
    let paths = std::sync::Mutex::new(None);
    let res = std::panic::catch_unwind(|| {
        let mut lab = Lab::new("panic");
        lab.start_world_servers(&[8080]);
        *paths.lock().unwrap() = Some((
            lab.node_ns().path().to_owned(),
            lab.cgroup_path().to_owned(),
            lab.bpffs_path().to_owned(),
        ));
        #[allow(clippy::zombie_processes)]
        let _probe =
            lab.spawn_probe(&["loop", "--duration-ms", "60000", "--target", "tcp:198.51.100.10:8080:allow"]);
        panic!("deliberate");
    });
    assert!(res.is_err());
    let (ns, cg, fs) = paths.lock().unwrap().take().expect("lab was built");
    assert!(!ns.exists() && !cg.exists() && !fs.exists(), "left behind after panic");
}
