//! Which controls each file of the pack evidences, and the pack's README.

/// NIST SP 800-53 SC-7, SC-7(10), SC-8, AC-17, AU-9; SOC 2 CC6.6, CC6.7, CC7.2; EU AI Act
/// Art. 55(1)(d): the ids of [`ringfence_proto::evidence::CONTROLS`].
const EU: &str = "EU-AI-Act-55(1)(d)";

/// (description, control ids) of a file of the pack, by its path.
pub fn describe(path: &str) -> (String, Vec<String>) {
    let (what, ids): (&str, &[&str]) = match path {
        "policies/history.json" => (
            "Every policy version stored up to the end of the period: who applied it, when, why, its selector, hash and rollbacks",
            &["SC-7", "SC-7(10)", "SC-8", "CC6.6", "CC6.7", EU],
        ),
        p if p.starts_with("policies/diffs/") => (
            "Unified diff of a policy version against the previous version with the same name and selector",
            &["SC-7", "CC6.6", "CC6.7"],
        ),
        p if p.starts_with("policies/") => (
            "A stored policy document (egress and ingress rules, encryption requirements, exfiltration detection)",
            &["SC-7", "SC-7(10)", "SC-8", "CC6.6", "CC6.7", EU],
        ),
        "nodes/inventory.json" => (
            "Nodes enrolled during the period (mTLS identity, region, labels, certificate expiry, WireGuard identity, applied policy) and their lifecycle records",
            &["SC-7", "SC-8", "AC-17", "CC6.6", EU],
        ),
        "nodes/geoip-versions.json" => (
            "Geo-IP database versions in force on each node at the end of the period, and every change reported during it",
            &["SC-7", "CC6.7"],
        ),
        "nodes/enforcement-gaps.json" => (
            "Enforcement gaps: spans in which a node did not report, nodes not reporting at the end of the period, revocations and agent-reported detaches",
            &["SC-7", "CC7.2", EU],
        ),
        "alerts/alerts.json" => (
            "Alerts raised during the period (exfiltration, plaintext drops, refused claims...) and the audit records of their handling",
            &["SC-7(10)", "SC-8", "CC6.7", "CC7.2", EU],
        ),
        "alerts/denials.json" => (
            "Denied and audit-denied connections during the period, counted per node, kind, policy and rule",
            &["SC-7", "CC6.6", "CC6.7"],
        ),
        "selftest/results.json" => (
            "Exfiltration self-test results recorded during the period, each signed by the node that ran it (signed bytes, signature and node certificate; empty, with a note, when none were run)",
            &["SC-7(10)", "CC7.2", EU],
        ),
        "audit/records.jsonl" => (
            "The hash-chained audit log segment covering the period (every change, enrollment, policy apply and alert)",
            &["AU-9", "AC-17", "CC7.2"],
        ),
        "audit/checkpoints.jsonl" | "audit/checkpoint-sources.json" => (
            "Signed external checkpoints of the audit chain's head anchoring the segment (file, S3 Object Lock)",
            &["AU-9"],
        ),
        "keys/node-ca.pem" => (
            "The CA that issued the node certificates: checks the nodes' signatures on self-test results",
            &["SC-7(10)", "AU-9"],
        ),
        "keys/evidence-signing.pub" => ("The public key that signs manifest.json", &["AU-9"]),
        "keys/audit-checkpoint.pub" => ("The public key that signs audit checkpoints", &["AU-9"]),
        _ => ("How the pack is organised and verified", &[]),
    };
    (what.to_owned(), ids.iter().map(|s| (*s).to_owned()).collect())
}

/// `README.txt` of every pack.
pub const README: &str = "Ringfence evidence pack

manifest.json lists every other file with its SHA-256 and size, the controls it evidences
(NIST SP 800-53 SC-7, SC-7(10), SC-8, AC-17, AU-9; SOC 2 CC6.6, CC6.7, CC7.2; EU AI Act
Art. 55(1)(d)) and notes on what the pack cannot show. manifest.sig is the Ed25519 signature
(base64) of manifest.json by the control plane's evidence key (keys/evidence-signing.pub; pin
the key you obtained separately with --key).

Verify offline:  ringfence evidence verify pack.tar.zst --key evidence-signing.pub \\
                     --checkpoint-key audit-checkpoint.pub --node-ca ca.pem

Verification checks the signature, every file's hash, that no file was added or removed, the
audit chain segment's hashes and links, that the segment matches the signed external
checkpoints it includes, and each self-test result's signature by the node that ran it (ECDSA
P-256, by the node's certificate, issued by keys/node-ca.pem): a result altered after it left
its node fails even in a pack re-signed with the evidence key.
";
