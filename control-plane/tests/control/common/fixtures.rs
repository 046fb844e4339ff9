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
