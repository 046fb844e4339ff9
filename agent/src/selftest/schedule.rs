//! The self-test on a schedule inside `run` (`--selftest-every SECONDS`, off by default): each
//! run is `ringfence-agent selftest exfil` as a child process (its throwaway cgroup and sink stay
//! out of the agent), on a blocking thread; its result is logged (`exfiltration self-test`, with
//! every field of the result), counted in `ringfence_selftest_runs_total{result}`, and appended
//! to the alert spool as a `selftest` event, signed with the node's enrolled key
//! ([`ringfence_proto::selftest`]), which the uploader delivers to the control plane (over the
//! node's mutual-TLS identity; the signature verified, stored, chained into the audit log and
//! exported with the node's certificate in the evidence pack's `selftest/results.json`, where
//! `ringfence evidence verify` checks it offline).
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tracing::{error, info, warn};

use crate::control::Identity;
use crate::metrics::Metrics;
use crate::spool::EventQueue;

/// The spool record of one run: kind `selftest`, critical when it failed; `signed` by the node's
/// enrolled key (`(key PEM, certificate PEM)`) when there is one (an agent that is not enrolled
/// uploads nothing).
pub fn record(result: &Value, passed: bool, unix_ms: u64, node_key: Option<(&str, &str)>) -> Value {
    let id = format!("selftest-exfil-{unix_ms}");
    let explanation = if passed {
        "exfiltration self-test passed".to_owned()
    } else {
        format!("exfiltration self-test FAILED: {}", result["reason"].as_str().unwrap_or("no result"))
    };
    let signed = node_key.and_then(|(key_pem, cert_pem)| {
        let payload = ringfence_proto::selftest::payload(&id, unix_ms, result);
        ringfence_proto::selftest::sign(payload, key_pem, cert_pem)
            .map_err(|e| error!(error = %e, "self-test result not signed"))
            .ok()
    });
    let mut record = json!({
        "id": id,
        "kind": "selftest",
        "severity": if passed { "info" } else { "critical" },
        "explanation": explanation,
        "unix_ms": unix_ms,
        "result": result,
    });
    if let Some(signed) = signed {
        record["signed"] = serde_json::to_value(signed).expect("a signature serializes");
    }
    record
}

/// Starts one self-test run in the background.
pub fn spawn(bpffs: PathBuf, cgroup: PathBuf, state_dir: PathBuf, metrics: Arc<Metrics>, queue: EventQueue) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("/proc/self/exe")
            .args(["selftest", "exfil", "--bpffs"])
            .arg(&bpffs)
            .arg("--cgroup")
            .arg(&cgroup)
            .output();
        let parsed =
            out.as_ref().ok().and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
        let passed = parsed.as_ref().is_some_and(|v| v["passed"] == true);
        match (&parsed, passed) {
            (Some(v), true) => info!(result = %v, "exfiltration self-test passed"),
            (Some(v), false) => error!(result = %v, reason = %v["reason"], "exfiltration self-test FAILED"),
            (None, _) => error!(output = ?out, "exfiltration self-test FAILED: no result"),
        }
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let result = parsed.clone().unwrap_or_else(|| json!({ "passed": false, "reason": "no result" }));
        // Loaded now, so a renewed certificate signs.
        let identity = Identity::load(&state_dir)
            .map_err(|e| warn!(error = %e, "self-test result not signed: no node identity"))
            .ok();
        let node_key = identity.as_ref().map(|i| (i.key_pem.as_str(), i.cert_pem.as_str()));
        let record = record(&result, passed, unix_ms, node_key);
        let appended = queue.spool.lock().expect("spool lock").append(&record);
        match appended {
            Ok(()) => queue.notify.notify_one(),
            Err(e) => warn!(error = %e, "self-test result not spooled"),
        }
        let label = if passed { "pass" } else { "fail" };
        metrics.inc_counter(
            "ringfence_selftest_runs_total",
            "Exfiltration self-test runs, by result.",
            &[("result", label)],
            1,
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enrolled_node_signs_its_record_and_the_signature_verifies() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "n-1");
        // Self-signed: the certificate is its own CA here.
        let cert = params.self_signed(&key).unwrap().pem();
        let now = ringfence_proto::now_ms() as u64;
        let result = json!({"passed": true, "received": 1_040_000, "latency_ms": 1.5});
        let r = record(&result, true, now, Some((&key.serialize_pem(), &cert)));
        assert_eq!((r["kind"].as_str(), r["severity"].as_str()), (Some("selftest"), Some("info")));
        let id = r["id"].as_str().unwrap();
        let verified = ringfence_proto::selftest::verify("n-1", id, now as i64, &r, &cert).unwrap();
        assert!(verified.passed);
        // Not enrolled: no signature (nothing is uploaded either).
        assert!(record(&result, true, now, None).get("signed").is_none());
    }
}
