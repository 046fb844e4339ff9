//! The Slurm identity source against the real thing: Debian's slurmctld + slurmd (22.05, the
//! cgroup/v2 plugin with `IgnoreSystemd=yes`) with munge, the Ringfence prolog and epilog
//! (`deploy/slurm`), and the agent run with `--cgroup-root` at the slurmstepd scope slurmd
//! created. A job asking for the eu-resident profile is labelled from the prolog's job file and
//! governed by the eu policy (its probes, inside the lab's node namespace, reach DE and not US);
//! when the job ends its workloads go.
//!
//! How slurmd runs here (nothing outside the test's own cgroup, namespaces and temp dir changes):
//!
//! * every daemon runs in the lab's node network namespace (so job steps can reach the lab's
//!   world) and in a UTS namespace whose hostname is `localhost` (the node's and controller's
//!   name in slurm.conf);
//! * slurmd starts in a fresh test cgroup `<cgroup2>/ringfence-test-<pid>-<n>` (munged and
//!   slurmctld in children of it) and unshares a
//!   cgroup namespace there, and a private mount namespace with cgroup2 mounted on
//!   /sys/fs/cgroup: the plugin sees that cgroup as the root and makes
//!   `<it>/system.slice/<node>_slurmstepd.scope/job_<id>/step_<step>/{slurm,user/task_*}`;
//! * on a hybrid host (cgroup v1 controllers, cgroup2 at /sys/fs/cgroup/unified) slurmd gets
//!   `tests/slurm/hide-cgroup-v1.c` preloaded: the plugin refuses hybrid hosts ("Hybrid mode is
//!   not supported") from the v1 lines of /proc/self/cgroup, which no namespace can hide.
//!
//! Run as root, serially (`cargo xtask test`). Skipped when Slurm or munge is not installed
//! (`cargo xtask setup` installs slurm-wlm and munge).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use std::os::unix::process::CommandExt;

use ipnet::IpNet;
use ringfence_policy::geo::fixture::{write_mmdb, Layout};
use ringfence_tests::{agent_bin, skip, workload_agent_args, AgentProc, Enforced, TestCgroup};

const START: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(30);
/// A world host inside the EU (DE) and one in the US.
const EU_HOST: &str = "198.51.100.10";
const US_HOST: &str = "203.0.113.5";
/// The node's and the controller's name (the daemons' UTS namespace hostname).
const NODE_NAME: &str = "localhost";

/// Everything the node does not grant a job: denied, except Slurm's own control traffic on
/// loopback (slurmd <-> slurmctld, srun <-> slurmd/slurmstepd), which runs under this root too.
const NODE_DEFAULT: &str = "apiVersion: ringfence.dev/v1
kind: EgressPolicy
metadata: { name: node-default }
spec:
  defaultAction: deny
  egress:
    - name: slurm-control
      action: allow
      to: { cidrs: [127.0.0.0/8, \"::1/128\"] }
";

/// The eu-resident profile: HTTPS to DE/FR, and loopback (a job's slurmstepd and srun live in the
/// job's cgroups and talk to slurmd and each other over it).
const EU_POLICY: &str = "apiVersion: ringfence.dev/v1
kind: EgressPolicy
metadata: { name: eu }
spec:
  workloadSelector:
    matchLabels: { ringfence.dev/profile: eu-resident }
  defaultAction: deny
  egress:
    - name: slurm-control
      action: allow
      to: { cidrs: [127.0.0.0/8, \"::1/128\"] }
    - name: eu
      action: allow
      to: { countries: [DE, FR] }
      ports: [{ port: 443, protocol: tcp }]
";

/// The binaries the test runs; missing ones make it skip.
const TOOLS: &[&str] = &["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "munged", "mungekey", "unshare"];

/// `name` on $PATH (or in /usr/sbin, /sbin: daemons live there and a test's PATH may lack them).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether /proc/self/cgroup lists cgroup v1 hierarchies (a hybrid host).
fn hybrid_host() -> bool {
    fs::read_to_string("/proc/self/cgroup").map(|s| s.lines().any(|l| !l.starts_with("0::"))).unwrap_or(false)
}

/// Polls `check` every 50 ms until it returns something or `timeout` passes (then panics).
fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon is SIGKILLed when the test's thread goes, even if the test process is killed (then
/// slurmstepds and job tasks stay until the next lab's `cleanup_stale` removes the cgroup tree).
fn dies_with_test(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod script");
}

/// munged, slurmctld and slurmd for one node, in the lab's node namespace. Drop kills the
/// daemons, then everything left in the delegated cgroup (slurmstepds, job tasks), removes its
/// tree deepest first; the scenario (`Enforced`) removes the files.
struct Slurm {
    daemons: Vec<(&'static str, Child)>,
    /// Where slurmctld and munged run (children of `cgroup`).
    _side: Vec<TestCgroup>,
    /// The cgroup slurmd treats as the root (its cgroup namespace).
    cgroup: TestCgroup,
    dir: PathBuf,
    conf: PathBuf,
    /// The prolog writes `<jobs>/<jobid>` here (`RINGFENCE_JOB_INFO_DIR`).
    jobs: PathBuf,
}

impl Slurm {
    /// Starts the daemons; returns when the node is idle (slurmd registered with slurmctld).
    fn start(e: &Enforced, tools: &Tools) -> Slurm {
        // In the scenario's directory: removed with it, and by the next run if this one is killed.
        let d = e.dir().join("slurm");
        let dir = d.clone();
        for sub in ["munge", "state", "spool", "log", "jobs", "out"] {
            fs::create_dir_all(d.join(sub)).expect("create slurm dir");
        }
        let cgroup = TestCgroup::new();
        let mut slurm = Slurm {
            daemons: Vec::new(),
            _side: vec![cgroup.child("munged"), cgroup.child("slurmctld")],
            cgroup,
            conf: d.join("slurm.conf"),
            jobs: d.join("jobs"),
            dir,
        };
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf();

        // munge: a fresh key and a private socket.
        let (key, sock) = (d.join("munge/munge.key"), d.join("munge/munge.sock"));
        run_ok(Command::new(&tools.mungekey).arg("--create").arg("--keyfile").arg(&key), "mungekey");
        let mut munged = e.lab.node_command_in(&slurm._side[0], &tools.munged);
        let munged = dies_with_test(&mut munged)
            .args(["--foreground", "--force", "--num-threads=2"])
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", d.join("munge/munged.pid").display()))
            .arg(format!("--seed-file={}", d.join("munge/munged.seed").display()))
            .arg(format!("--log-file={}", d.join("log/munged.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("log/munged.out")).expect("munged output file"))
            .spawn()
            .expect("spawn munged");
        slurm.daemons.push(("munged", munged));
        wait_until("the munge socket", START, || sock.exists().then_some(()));

        // The prolog and epilog under test, told where to write and how to reach slurmctld.
        for (hook, script) in [("prolog", "prolog.sh"), ("epilog", "epilog.sh")] {
            write_exec(
                &d.join(format!("{hook}.sh")),
                &format!(
                    "#!/bin/sh\nexport SLURM_CONF={} RINGFENCE_JOB_INFO_DIR={}\nexec {}\n",
                    slurm.conf.display(),
                    slurm.jobs.display(),
                    repo.join("deploy/slurm").join(script).display()
                ),
            );
        }
        let p = |s: &str| d.join(s).display().to_string();
        let conf = format!(
            "ClusterName=ringfence
SlurmctldHost={NODE_NAME}
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={ctldpid}
SlurmdPidFile={dpid}
SlurmctldLogFile={ctldlog}
SlurmdLogFile={dlog}
SlurmdDebug=debug
MailProg=/bin/true
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
MpiDefault=none
ReturnToService=2
Prolog={prolog}
Epilog={epilog}
PrologFlags=Alloc
NodeName={NODE_NAME} CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
",
            sock = sock.display(),
            state = p("state"),
            spool = p("spool"),
            ctldpid = p("slurmctld.pid"),
            dpid = p("slurmd.pid"),
            ctldlog = p("log/slurmctld.log"),
            dlog = p("log/slurmd.log"),
            prolog = p("prolog.sh"),
            epilog = p("epilog.sh"),
        );
        fs::write(&slurm.conf, conf).expect("write slurm.conf");
        fs::write(
            d.join("cgroup.conf"),
            "CgroupPlugin=cgroup/v2\nIgnoreSystemd=yes\nConstrainCores=no\nConstrainRAMSpace=no\nConstrainSwapSpace=no\nConstrainDevices=no\n",
        )
        .expect("write cgroup.conf");

        // slurmctld: node namespace, its own hostname.
        let mut ctld = e.lab.node_command_in(&slurm._side[1], &tools.unshare);
        let ctld = dies_with_test(&mut ctld)
            .args(["--uts", "sh", "-c", &format!("hostname {NODE_NAME} && exec \"$0\" -D -i")])
            .arg(&tools.slurmctld)
            .env("SLURM_CONF", &slurm.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("log/slurmctld.out")).expect("slurmctld output file"))
            .spawn()
            .expect("spawn slurmctld");
        slurm.daemons.push(("slurmctld", ctld));

        // slurmd: the test cgroup becomes the root of a cgroup namespace; cgroup2 is mounted on
        // /sys/fs/cgroup in a private mount namespace (the plugin's only place); slurmd itself
        // goes into a leaf (it moves itself into the scope it creates).
        fs::create_dir(slurm.cgroup.path().join("system.slice")).expect("create system.slice");
        let mut slurmd = e.lab.node_command_in(&slurm.cgroup, &tools.unshare);
        dies_with_test(&mut slurmd)
            .args(["--uts", "--cgroup", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "hostname {NODE_NAME} && mount -t cgroup2 none /sys/fs/cgroup && mkdir /sys/fs/cgroup/slurmd \
                 && echo $$ > /sys/fs/cgroup/slurmd/cgroup.procs && exec \"$0\" -D"
            ))
            .arg(&tools.slurmd)
            .env("SLURM_CONF", &slurm.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("log/slurmd.out")).expect("slurmd output file"));
        if let Some(shim) = tools.shim(&d) {
            slurmd.env("LD_PRELOAD", shim);
        }
        let slurmd = slurmd.spawn().expect("spawn slurmd");
        slurm.daemons.push(("slurmd", slurmd));

        wait_until("the node to be idle (slurmd registered with slurmctld)", START, || {
            slurm.check_daemons();
            let out = slurm.client(e, "sinfo", &["-h", "-N", "-o", "%T"]);
            String::from_utf8_lossy(&out.stdout).trim().starts_with("idle").then_some(())
        });
        slurm
    }

    /// Panics with the logs if a daemon exited.
    fn check_daemons(&mut self) {
        for (name, child) in &mut self.daemons {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited ({status}):\n{}", self_logs(&self.dir));
            }
        }
    }

    /// A Slurm client command in the node namespace.
    fn client(&self, e: &Enforced, program: &str, args: &[&str]) -> Output {
        e.lab
            .node_ns()
            .command(find_tool(program).unwrap_or_else(|| PathBuf::from(program)))
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// The slurmstepd scope slurmd made (`<node>_slurmstepd.scope` on Debian, built with multiple
    /// slurmd support; `slurmstepd.scope` otherwise), as the agent sees it.
    fn scope(&self) -> PathBuf {
        let slice = self.cgroup.path().join("system.slice");
        wait_until("slurmd's slurmstepd scope", START, || {
            fs::read_dir(&slice).ok()?.flatten().map(|e| e.path()).find(|p| {
                p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().ends_with("slurmstepd.scope"))
            })
        })
    }
}

/// The daemons' logs, for failure messages.
fn self_logs(dir: &Path) -> String {
    let mut s = String::new();
    for f in ["slurmd.out", "slurmd.log", "slurmctld.out", "slurmctld.log", "munged.out", "munged.log"] {
        let text = fs::read_to_string(dir.join("log").join(f)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        s += &format!("--- {f} (last lines)\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    s
}

impl Drop for Slurm {
    fn drop(&mut self) {
        for (_, child) in self.daemons.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `_side` and `cgroup` follow: their drop kills what is left and removes the tree.
    }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The binaries, and the C compiler when the host is hybrid.
struct Tools {
    slurmctld: PathBuf,
    slurmd: PathBuf,
    munged: PathBuf,
    mungekey: PathBuf,
    unshare: PathBuf,
    /// Set on a hybrid host: builds the shim.
    cc: Option<PathBuf>,
}

impl Tools {
    /// `tests/slurm/hide-cgroup-v1.c` built into `dir`, on a hybrid host.
    fn shim(&self, dir: &Path) -> Option<PathBuf> {
        let cc = self.cc.as_ref()?;
        let so = dir.join("hide-cgroup-v1.so");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/hide-cgroup-v1.c");
        let out = Command::new(cc)
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-ldl")
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", cc.display()));
        assert!(
            out.status.success(),
            "compiling {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(so)
    }
}

impl Tools {
    /// The tools, or why the test cannot run.
    fn find() -> Result<Tools, String> {
        let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| find_tool(t).is_none()).collect();
        if !missing.is_empty() {
            return Err(format!(
                "{} not installed (Debian: slurm-wlm, munge; `cargo xtask setup`)",
                missing.join(", ")
            ));
        }
        let tool = |t: &str| find_tool(t).expect("checked above");
        let cc = if hybrid_host() {
            Some(find_tool("cc").ok_or("a hybrid cgroup host needs the C compiler (cc) for the shim")?)
        } else {
            None
        };
        Ok(Tools {
            slurmctld: tool("slurmctld"),
            slurmd: tool("slurmd"),
            munged: tool("munged"),
            mungekey: tool("mungekey"),
            unshare: tool("unshare"),
            cc,
        })
    }
}

/// 198.51.100.0/25 is DE, 203.0.113.0/24 US.
fn write_db(path: &Path) {
    let nets: Vec<(IpNet, &str)> = [("198.51.100.0/25", "DE"), ("203.0.113.0/24", "US")]
        .iter()
        .map(|(n, c)| (n.parse().expect("network"), *c))
        .collect();
    write_mmdb(path, &nets, Layout::GeoIp2Country, 6).expect("write test database");
}

/// `ringfence-agent workloads --json --state-dir <state>`.
fn workloads(state: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(agent_bin())
        .args(["workloads", "--json", "--state-dir"])
        .arg(state)
        .output()
        .expect("run ringfence-agent workloads");
    assert!(out.status.success(), "workloads: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("workloads JSON")
}

/// The lab-probe JSON line in `file` (written by the job).
fn probe_result(file: &Path) -> serde_json::Value {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{}: not a probe result ({e}): {text}", file.display()))
}

fn assert_probe(file: &Path, ok: bool, what: &str) {
    let r = probe_result(file);
    if ok {
        assert_eq!(r["ok"], true, "{what}: expected success, got {r}");
    } else {
        assert!(r["ok"] == false && r["errno"] == libc::EPERM, "{what}: expected EPERM, got {r}");
    }
}

#[test]
fn a_real_slurm_job_gets_its_profile_policy_from_the_prolog_and_leaves_with_its_cgroups() {
    const TEST: &str =
        "slurm::a_real_slurm_job_gets_its_profile_policy_from_the_prolog_and_leaves_with_its_cgroups";
    let tools = match Tools::find() {
        Ok(t) => t,
        Err(why) => return skip(TEST, &why),
    };
    let mut e = Enforced::prepare_with_hosts("slurm", &[], &[443], NODE_DEFAULT);
    let mut slurm = Slurm::start(&e, &tools);
    let scope = slurm.scope();
    eprintln!("slurmd runs; its slurmstepd scope: {}", scope.display());

    // The agent, rooted at the scope, from the root mount namespace.
    let dir = e.dir().to_path_buf();
    let write = |file: &str, text: &str| {
        let p = dir.join(file);
        fs::write(&p, text).expect("write test file");
        p
    };
    let db = dir.join("country.mmdb");
    write_db(&db);
    let identity = write(
        "identity.yaml",
        &format!(
            "apiVersion: ringfence.dev/v1\nkind: IdentitySources\nsources:\n  slurm:\n    jobInfoDir: {}\n",
            slurm.jobs.display()
        ),
    );
    let state = dir.join("state");
    fs::create_dir_all(&state).expect("state dir");
    let mut args = workload_agent_args(&scope, &identity, &e.bpffs(), &state);
    args.extend([
        "--policy".into(),
        e.policy.clone().into(),
        "--workload-policy".into(),
        write("eu.yaml", EU_POLICY).into(),
        "--geoip-db".into(),
        db.into(),
    ]);
    let agent = AgentProc::spawn_args(&agent_bin(), &args, false);
    agent.wait_for_message("enforcing", START);
    e.agent = Some(agent);

    // The job: probes from the batch step and from an srun step, then it waits to be told to end.
    let out = slurm.dir.join("out");
    let probe = e.lab.probe_path().display().to_string();
    let script = slurm.dir.join("job.sh");
    let o = out.display();
    write_exec(
        &script,
        &format!(
            "#!/bin/sh
{probe} tcp {EU_HOST} 443 > {o}/batch-eu.json
{probe} tcp {US_HOST} 443 > {o}/batch-us.json
srun {probe} tcp {EU_HOST} 443 > {o}/step-eu.json
srun {probe} tcp {US_HOST} 443 > {o}/step-us.json
touch {o}/probed
while [ ! -e {o}/stop ]; do sleep 0.1; done
"
        ),
    );
    let submitted = slurm.client(
        &e,
        "sbatch",
        &[
            "--parsable",
            "--comment",
            "ringfence:profile=eu-resident",
            "--output",
            &format!("{o}/slurm-%j.out"),
            &script.display().to_string(),
        ],
    );
    assert!(submitted.status.success(), "sbatch: {}", String::from_utf8_lossy(&submitted.stderr));
    let job: u32 = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .split(';')
        .next()
        .and_then(|j| j.parse().ok())
        .unwrap_or_else(|| panic!("sbatch --parsable said {:?}", String::from_utf8_lossy(&submitted.stdout)));
    let job_dir = format!("job_{job}");
    wait_until("the job's probes", START, || {
        slurm.check_daemons();
        out.join("probed").exists().then_some(())
    });

    // The real layout.
    let job_cg = scope.join(&job_dir);
    for sub in ["step_batch/slurm", "step_batch/user"] {
        assert!(
            job_cg.join(sub).is_dir(),
            "{} missing; scope: {:?}",
            job_cg.join(sub).display(),
            tree(&scope)
        );
    }
    eprintln!("layout while the job runs:\n{}", tree(&scope).join("\n"));

    // The prolog's file.
    let info = fs::read_to_string(slurm.jobs.join(job.to_string())).expect("the prolog's job file");
    assert!(info.lines().any(|l| l == "profile=eu-resident"), "{info}");
    assert!(info.lines().any(|l| l == "partition=debug"), "{info}");

    // The agent: the job cgroup, labelled from the file and the path, under the eu policy.
    let found = e
        .agent()
        .wait_for("the job's cgroup", WAIT, |v| v["message"] == "workload found" && v["workload"] == job_dir);
    assert_eq!(found["policy"], "eu", "{found}");
    let rows = workloads(&state);
    let row =
        rows.iter().find(|w| w["path"] == job_dir.as_str()).unwrap_or_else(|| panic!("{job_dir}: {rows:?}"));
    let labels = &row["labels"];
    assert_eq!(labels["slurm.job"], job.to_string(), "{row}");
    assert_eq!(labels["ringfence.dev/profile"], "eu-resident", "{row}");
    assert_eq!(labels["slurm.partition"], "debug", "{row}");
    assert_eq!(labels["slurm.user"], "root", "{row}");
    assert_eq!(row["policy"], "eu", "{row}");
    assert_eq!(row["source"], "slurm", "{row}");
    let batch = rows
        .iter()
        .find(|w| w["path"] == format!("{job_dir}/step_batch").as_str())
        .unwrap_or_else(|| panic!("step_batch: {rows:?}"));
    assert_eq!(
        (batch["labels"]["slurm.step"].as_str(), batch["policy"].as_str()),
        (Some("batch"), Some("eu")),
        "{batch}"
    );
    // The srun step has come and gone by now: the agent saw it come (under the eu policy) and go.
    let step0 = format!("{job_dir}/step_0");
    let seen = e.agent().wait_for("the srun step", WAIT, |v| {
        v["message"] == "workload found" && v["workload"] == step0.as_str()
    });
    assert_eq!(seen["policy"], "eu", "{seen}");
    assert!(seen["labels"].as_str().is_some_and(|l| l.split(',').any(|kv| kv == "slurm.step=0")), "{seen}");
    e.agent().wait_for("the srun step's end", WAIT, |v| {
        v["message"] == "workload ended" && v["workload"] == step0.as_str()
    });
    // slurmd's own cgroups in the scope are no workloads.
    assert!(
        rows.iter().all(|w| w["path"].as_str().is_some_and(|p| p.starts_with(&job_dir))),
        "only the job's cgroups are workloads: {rows:?}"
    );

    // Enforcement inside the job, in both steps.
    assert_probe(&out.join("batch-eu.json"), true, "batch step -> DE");
    assert_probe(&out.join("batch-us.json"), false, "batch step -> US");
    assert_probe(&out.join("step-eu.json"), true, "srun step -> DE");
    assert_probe(&out.join("step-us.json"), false, "srun step -> US");
    let ev = e.agent().wait_for_event("the job's denial", WAIT, |v| v["dst"] == US_HOST);
    assert_eq!(ev["policy"], "eu", "{ev}");
    assert!(ev["workload"].as_str().is_some_and(|w| w.starts_with(&format!("{job_dir}/"))), "{ev}");

    // The job ends: Slurm removes its cgroups (and the epilog its file); the agent its workloads.
    fs::write(out.join("stop"), "").expect("stop the job");
    e.agent()
        .wait_for("the job's end", WAIT, |v| v["message"] == "workload ended" && v["workload"] == job_dir);
    wait_until("the job's cgroup to go", WAIT, || (!job_cg.exists()).then_some(()));
    wait_until("the agent to forget the job", WAIT, || {
        workloads(&state)
            .iter()
            .all(|w| !w["path"].as_str().unwrap_or("").starts_with(&job_dir))
            .then_some(())
    });
    wait_until("the epilog to remove the job file", WAIT, || {
        (!slurm.jobs.join(job.to_string()).exists()).then_some(())
    });
    slurm.check_daemons();
}

/// The cgroup directories below `root`, relative, for messages.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        for d in dirs {
            out.push(d.strip_prefix(root).unwrap_or(&d).display().to_string());
            walk(root, &d, out);
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}
