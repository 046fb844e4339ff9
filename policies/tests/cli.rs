//! Tests of the `ringfence` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ringfence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfence")).args(args).output().expect("run ringfence")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name).display().to_string()
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
            format!("{file}:8:7: error: unknown field \"acton\" in rule \"x\" (expected one of: name, action, to, ports)"),
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
    assert!(stdout.starts_with("verdict: deny\nrule: block-link-local-metadata (id 4)\nprefix: 169.254.0.0/16\ndestination: 169.254.169.254:80/tcp\nmode: enforce\nexplanation:\n"), "{stdout}");
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
