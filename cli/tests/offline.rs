//! Tests of the `ringfence` binary's offline commands: policy check/explain, geo lookup.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ringfence_policy::geo::fixture;

fn ringfence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfence")).args(args).output().expect("run ringfence")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples").join(name).display().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file under the target directory, unique per test.
fn temp_policy(name: &str, contents: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_valid_example() {
    let file = example("training-node-default-deny.yaml");
    let out = ringfence(&["policy", "check", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{file}: ok (policy training-node-default-deny, 4 rules, 8 prefixes)\n")
    );
}

#[test]
fn check_invalid_reports_every_error() {
    let path = temp_policy(
        "invalid.yaml",
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {name: x}\nspec:\n  defaultAction: deny\n  egress:\n    - name: x\n      acton: allow\n      to: {cidrs: [10.0.0.1/8]}\n      ports: [{port: 0}]\n",
    );
    let file = path.display().to_string();
    let out = ringfence(&["policy", "check", &file]);
    assert_eq!(out.status.code(), Some(64));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("{file}:7:7: error: missing required field \"action\" in rule \"x\""),
            format!("{file}:8:7: error: unknown field \"acton\" in rule \"x\" (expected one of: name, action, to, ports, encryption)"),
            format!("{file}:9:20: error: CIDR \"10.0.0.1/8\" in rule \"x\" has host bits set; did you mean \"10.0.0.0/8\"?"),
            format!("{file}:10:22: error: invalid port \"0\" in port entry 1 of rule \"x\" (expected an integer from 1 to 65535)"),
            format!("{file}: 4 errors"),
        ]
    );
}

#[test]
fn check_reports_compile_errors_as_invalid() {
    let ports: Vec<String> = (1..=9).map(|p| format!("{{port: {p}}}")).collect();
    let ports = ports.join(", ");
    let path = temp_policy(
        "too-many-items.yaml",
        &format!("apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{name: x}}\nspec:\n  defaultAction: deny\n  egress:\n    - {{name: a, action: allow, to: {{cidrs: [10.0.0.0/8]}}, ports: [{ports}]}}\n    - {{name: b, action: allow, to: {{cidrs: [10.0.0.0/8]}}, ports: [{ports}]}}\n"),
    );
    let out = ringfence(&["policy", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: prefix 10.0.0.0/8 has 18 allow match items"), "{stderr}");
}

#[test]
fn check_unreadable_file() {
    let out = ringfence(&["policy", "check", "/nonexistent/ringfence/policy.yaml"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(text(&out.stderr).contains("cannot read policy"));
}

#[test]
fn explain_text() {
    let file = example("training-node-default-deny.yaml");
    let out = ringfence(&["policy", "explain", &file, "--to", "169.254.169.254:80/tcp"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("verdict: deny\nrule: block-link-local-metadata (id 4)\nprefix: 169.254.0.0/16\nencryption: not required\ndestination: 169.254.169.254:80/tcp\nmode: enforce\nexplanation:\n"), "{stdout}");
    let out = ringfence(&["policy", "explain", &file, "--to", "8.8.8.8:443"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("verdict: deny\nrule: default action (deny)\nprefix: none\n"), "{stdout}");
}

#[test]
fn explain_json_in_audit_mode() {
    let file = example("audit-rollout.yaml");
    let out = ringfence(&["policy", "explain", &file, "--to", "[::ffff:198.51.100.200]:443/tcp", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["audited"], true);
    assert_eq!(v["rule"], serde_json::json!({ "id": 4, "name": "registry-admin-subnet" }));
    assert_eq!(v["prefix"], "198.51.100.192/26");
    assert_eq!(
        v["destination"],
        serde_json::json!({ "addr": "::ffff:198.51.100.200", "port": 443, "protocol": "tcp" })
    );
    assert_eq!(v["mode"], "audit");
    assert!(v["explanation"].as_array().unwrap().len() >= 3);

    let out = ringfence(&["policy", "explain", &file, "--to", "192.0.2.99/udp", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rule"], serde_json::Value::Null);
    assert_eq!(v["prefix"], serde_json::Value::Null);
    assert_eq!(v["destination"]["port"], serde_json::Value::Null);
}

#[test]
fn explain_rejects_bad_destination_and_invalid_policy() {
    let file = example("audit-rollout.yaml");
    let out = ringfence(&["policy", "explain", &file, "--to", "not-an-address:443"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("invalid destination address"));
    let bad = temp_policy("bad-explain.yaml", "apiVersion: v0\n");
    let out = ringfence(&["policy", "explain", bad.to_str().unwrap(), "--to", "192.0.2.1:443"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("unsupported apiVersion \"v0\""));
}

#[test]
fn explain_incoming_connections() {
    let file = example("node-default.yaml");
    let out = ringfence(&["policy", "explain", &file, "--from", "203.0.113.5:22/tcp"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("verdict: allow\nrule: ssh-from-bastion (ingress id 1)\nprefix: 203.0.113.0/28\nconnection: from 203.0.113.5 to local port 22/tcp\nmode: enforce\nexplanation:\n"),
        "{stdout}"
    );
    let out = ringfence(&["policy", "explain", &file, "--from", "203.0.113.50:22/tcp", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((json["direction"].as_str(), json["verdict"].as_str()), (Some("ingress"), Some("deny")));
    assert!(json["rule"].is_null() && json["decided_by"] == "default");
    // from.workloads cannot be resolved offline: it matches nothing, and the output says so.
    let file = example("job-eu-resident.yaml");
    let out = ringfence(&["policy", "explain", &file, "--from", "192.0.2.10:29500/tcp"]);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("verdict: deny\nrule: defaultIngress (deny)\n"), "{stdout}");
    assert!(stdout.contains("note: from.workloads selectors are not resolved offline"), "{stdout}");
    let out = ringfence(&["policy", "explain", &file, "--from", "198.51.100.7:29500/tcp"]);
    assert!(
        text(&out.stdout).starts_with("verdict: allow\nrule: rendezvous-nccl-from-eu-jobs (ingress id 1)\n")
    );
    // A policy without ingress settings accepts everything; --to and --from exclude each other.
    let out = ringfence(&["policy", "explain", &example("audit-rollout.yaml"), "--from", "192.0.2.1:22"]);
    assert!(text(&out.stdout).starts_with("verdict: allow\nrule: defaultIngress (allow)\n"));
    let out = ringfence(&["policy", "explain", &file, "--from", "192.0.2.1:22", "--to", "192.0.2.1:22"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ringfence(&["policy", "explain", &file]);
    assert_eq!(out.status.code(), Some(2));
    let out = ringfence(&["policy", "explain", &file, "--from", "nope:22"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("--from: invalid destination address"));
}

/// A GeoIP2-layout database: 81.2.69.0/24 GB, 5.9.0.0/16 DE, 203.0.113.0/24 IR, 2a01:4f8::/32 DE.
fn geo_db(name: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let nets =
        [("81.2.69.0/24", "GB"), ("5.9.0.0/16", "DE"), ("203.0.113.0/24", "IR"), ("2a01:4f8::/32", "DE")];
    let nets: Vec<(ipnet::IpNet, &str)> = nets.iter().map(|(n, c)| (n.parse().unwrap(), *c)).collect();
    fixture::write_mmdb(&path, &nets, fixture::Layout::GeoIp2Country, 6).unwrap();
    path.display().to_string()
}

#[test]
fn check_with_countries_without_and_with_a_database() {
    let file = example("jurisdiction-eu-only.yaml");
    let out = ringfence(&["policy", "check", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{file}: ok (policy jurisdiction-eu-only, 2 rules, 3 prefixes)\nnote: the policy names 27 countries; countries are resolved when a database is given (--geoip-db FILE)\n")
    );
    let db = geo_db("check.mmdb");
    let out = ringfence(&["policy", "check", &file, "--geoip-db", &db]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&format!("{file}: ok (policy jurisdiction-eu-only, 2 rules, 3 prefixes, 4 geo entries)\ngeo-IP database: Ringfence-Test-Country built 2025-01-01, ")), "{stdout}");
    let out = ringfence(&["policy", "check", &file, "--geoip-db", "/nonexistent/geo.mmdb"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(text(&out.stderr).contains("/nonexistent/geo.mmdb"), "{}", text(&out.stderr));
}

#[test]
fn explain_with_countries() {
    let file = example("export-control-deny.yaml");
    let out = ringfence(&["policy", "explain", &file, "--to", "203.0.113.9:443/tcp"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "the policy names countries (BY, CU, IR, KP, RU, SY); pass a geo-IP database with --geoip-db"
        ),
        "{stderr}"
    );
    let db = geo_db("explain.mmdb");
    let out = ringfence(&["policy", "explain", &file, "--to", "203.0.113.9:443/tcp", "--geoip-db", &db]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("verdict: deny\nrule: deny-export-controlled (id 1)\nprefix: none\ncountry: IR (Iran), database network 203.0.113.0/24\ndecided by: country rule\n"), "{stdout}");
    let out =
        ringfence(&["policy", "explain", &file, "--to", "192.0.2.1:443/tcp", "--geoip-db", &db, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["country"], serde_json::Value::Null);
    assert_eq!(v["decided_by"], "unknown-country");
    let out =
        ringfence(&["policy", "explain", &file, "--to", "81.2.69.142:443/tcp", "--geoip-db", &db, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["country"].as_str(), v["decided_by"].as_str()), (Some("GB"), Some("default")));
    assert_eq!(v["geo_network"], "81.2.69.0/24");
}

#[test]
fn geo_lookup() {
    let db = geo_db("lookup.mmdb");
    let out = ringfence(&["geo", "lookup", "81.2.69.142", "--db", &db]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "address: 81.2.69.142\ncountry: GB (Britain (UK))\nnetwork: 81.2.69.0/24\ndatabase: Ringfence-Test-Country built 2025-01-01, 4 networks (3 IPv4, 1 IPv6)\n"
    );
    let out = ringfence(&["geo", "lookup", "::ffff:5.9.1.1", "--db", &db, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["country"].as_str(), v["network"].as_str()), (Some("DE"), Some("5.9.0.0/16")));
    assert_eq!(v["database"]["type"], "Ringfence-Test-Country");
    assert_eq!(v["database"]["build_date"], "2025-01-01");
    assert_eq!(v["database"]["networks"], 4);
    let out = ringfence(&["geo", "lookup", "8.8.8.8", "--db", &db]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("country: no record\nnetwork: none\n"));
    let out = ringfence(&["geo", "lookup", "8.8.8.8", "--db", &db, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&v["country"], &v["network"]), (&serde_json::Value::Null, &serde_json::Value::Null));
}

#[test]
fn geo_lookup_errors() {
    let db = geo_db("lookup-errors.mmdb");
    let out = ringfence(&["geo", "lookup", "not-an-ip", "--db", &db]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("invalid address \"not-an-ip\""));
    let out = ringfence(&["geo", "lookup", "8.8.8.8", "--db", "/nonexistent/geo.mmdb"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(text(&out.stderr).contains("/nonexistent/geo.mmdb"));
    let corrupt = temp_policy("corrupt.mmdb", "this is not a MaxMind database\n");
    let out = ringfence(&["geo", "lookup", "8.8.8.8", "--db", corrupt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(66));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("corrupt.mmdb") && stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn geo_lookup_with_maxmind_test_database() {
    // The shared geo data (`../shared/geo`), or RINGFENCE_GEO_DIR as for the policies' tests.
    let dir = std::env::var_os("RINGFENCE_GEO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/geo"));
    let db = dir.join("maxmind-test/GeoIP2-Country-Test.mmdb");
    if !db.exists() {
        // Counted as skipped by `cargo xtask test`, not as passed.
        ringfence_tests::skip(
            "geo_lookup_with_maxmind_test_database",
            &format!("{} is absent", db.display()),
        );
        return;
    }
    let db = db.display().to_string();
    let out = ringfence(&["geo", "lookup", "81.2.69.142", "--db", &db, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["country"], "GB");
    assert_eq!(v["database"]["type"], "GeoIP2-Country");
    let out = ringfence(&["geo", "lookup", "8.8.8.8", "--db", &db]);
    assert!(text(&out.stdout).contains("country: no record"));
}

#[test]
fn explain_encryption_requirements() {
    let file = example("encrypted-mesh.yaml");
    let db = geo_db("encryption.mmdb");
    let explain = |to: &str| {
        let out = ringfence(&["policy", "explain", &file, "--to", to, "--geoip-db", &db]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let stdout = explain("198.51.100.7:443/tcp");
    assert!(stdout.contains("\nencryption: required (peer node 198.51.100.0/26)\n"), "{stdout}");
    let stdout = explain("203.0.113.9:443/tcp");
    assert!(stdout.starts_with("verdict: allow\nrule: storage (id 2)\n"), "{stdout}");
    assert!(stdout.contains("\nencryption: required (rule \"storage\" requires encryption)\n"), "{stdout}");
    let stdout = explain("5.9.1.1:443/tcp");
    assert!(stdout.contains("\nencryption: not required\n"), "{stdout}");
    let stdout = explain("192.0.2.53:53/udp");
    assert!(stdout.contains("\nencryption: not required\n"), "{stdout}");
    let out =
        ringfence(&["policy", "explain", &file, "--to", "81.2.69.142:443/tcp", "--geoip-db", &db, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["encryption_required"], true);
    assert_eq!(v["encryption_reason"], "outside home region eu-west");
    let out =
        ringfence(&["policy", "explain", &file, "--to", "5.9.1.1:443/tcp", "--geoip-db", &db, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["encryption_required"].as_bool(), v["encryption_reason"].is_null()), (Some(false), true));
    // The home region names countries: explain needs the database.
    let out = ringfence(&["policy", "explain", &file, "--to", "192.0.2.53:53/udp"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("the policy names countries (AT, BE,"), "{}", text(&out.stderr));
}

#[test]
fn check_summarizes_the_exfiltration_section() {
    let out = ringfence(&["policy", "check", &example("exfiltration-guard.yaml")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("exfiltration: ")).unwrap_or_else(|| panic!("{stdout}"));
    for needle in ["more than 2GiB", "within 10m", "tolerance 2%", "198.51.100.0/24", "action: block for 1h"]
    {
        assert!(line.contains(needle), "{needle:?} missing in {line}");
    }
}

fn workload_policy(name: &str, selector: Option<&str>) -> String {
    let path = temp_policy(
        &format!("wl-{name}.yaml"),
        &format!(
            "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{name: {name}}}\nspec:\n{}  defaultAction: deny\n",
            selector.map(|s| format!("  workloadSelector: {{matchLabels: {{{s}}}}}\n")).unwrap_or_default()
        ),
    );
    path.display().to_string()
}

#[test]
fn explain_workload_names_the_governing_policy_and_why() {
    let default = workload_policy("node-default", None);
    let train = workload_policy("train", Some("job: train"));
    let serve = workload_policy("serve", Some("job: serve, tier: web"));
    let files = [default.as_str(), train.as_str(), serve.as_str()];
    let explain = |labels: &str, json: bool| {
        let mut args = vec!["policy", "explain", "--workload", labels];
        if json {
            args.push("--json");
        }
        args.extend(files);
        ringfence(&args)
    };
    // A workload policy matches.
    let out = explain("job=train,user=ana", false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("workload: {job=train, user=ana}\n"), "{stdout}");
    assert!(
        stdout.ends_with(&format!(
            "policy \"train\" ({train}) governs it: its workloadSelector {{job=train}} matches\n"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{serve}: policy \"serve\": workloadSelector {{job=serve, tier=web}} does not match (needs job=serve, the workload has job=train; needs tier=web, the workload has no label tier)")), "{stdout}");
    // None matches: the node default.
    let out = explain("job=eval", false);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).ends_with(&format!(
            "policy \"node-default\" ({default}) governs it: no workloadSelector matches, so the node default does\n"
        )),
        "{}",
        text(&out.stdout)
    );
    // JSON.
    let out = explain("job=train", true);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["governed_by"]["name"], "train");
    assert_eq!(v["governed_by"]["node_default"], false);
    assert_eq!(v["workload"]["job"], "train");
    assert_eq!(v["policies"].as_array().unwrap().len(), 3);
    assert_eq!(v["policies"][1]["matches"], true);
    assert_eq!(v["policies"][2]["matches"], false);
    // Two workload policies match: an error naming both (and the labels).
    let ml = workload_policy("ml", Some("team: ml"));
    let out = ringfence(&["policy", "explain", "--workload", "job=train,team=ml", &train, &ml, &default]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("policies \"train\" ({train}) and \"ml\" ({ml}) both select a workload labelled {{job=train, team=ml}}")),
        "{stderr}"
    );
    let out = ringfence(&["policy", "explain", "--workload", "job=train,team=ml", "--json", &train, &ml]);
    assert_eq!(out.status.code(), Some(64));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["governed_by"].is_null());
    assert!(v["error"].as_str().unwrap().contains("\"ml\""));
    // Bad labels, and --to with several files.
    assert_eq!(ringfence(&["policy", "explain", "--workload", "job", &train]).status.code(), Some(64));
    let out = ringfence(&["policy", "explain", "--to", "192.0.2.1:443", &train, &default]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("several only with --workload"));
}
