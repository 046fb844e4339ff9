//! Test data: a policy, WireGuard identities.

use ringfence_proto::api::WireGuardInfo;

/// A minimal valid policy allowing one network.
pub fn policy_yaml(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{name: {name}}}\nspec:\n  defaultAction: deny\n  egress:\n    - {{name: web, action: allow, to: {{cidrs: [{cidr}]}}}}\n"
    )
}

/// A WireGuard public key named `name` (base64 of 32 bytes derived from it).
pub fn wg_key(name: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(name.as_bytes()))
}

/// The WireGuard identity a well-behaved node named `name` reports: its key and an endpoint in
/// the test servers' endpoint network (its tunnel address comes from the pool).
pub fn wg(name: &str) -> WireGuardInfo {
    WireGuardInfo {
        public_key: wg_key(name),
        endpoint: Some(format!("192.0.2.{}:51820", name.len())),
        allowed_ips: vec![],
    }
}

/// An agent's verdict or alert event as the agent's spool sends it: `kind` (`deny`,
/// `plaintext-drop`, `exfiltration`...) from workload `labels` (`k=v,...`) to `dst`:443.
pub fn agent_event(id: &str, kind: &str, dst: &str, labels: &str) -> ringfence_proto::api::Event {
    let severity = if kind == "deny" { "warning" } else { "critical" };
    ringfence_proto::api::Event {
        id: id.into(),
        kind: kind.into(),
        time_ms: ringfence_proto::now_ms(),
        severity: severity.into(),
        summary: format!("{kind} to {dst}:443"),
        details: serde_json::json!({
            "verdict": kind, "rule": "no-exfil", "policy": "job-eu", "pid": 4242, "comm": "python",
            "cgroup_id": 77, "dst": dst, "port": 443, "protocol": "tcp", "hook": "rf_connect4",
            "workload": "job_1", "labels": labels, "count": 1,
        }),
    }
}
