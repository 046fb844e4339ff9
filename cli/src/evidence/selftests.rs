//! The self-test results of a pack, each checked offline against the signature of the node that
//! ran it ([`ringfence_proto::selftest::verify`]) with the pack's node CA: a result altered after
//! it left its node fails, even in a pack whose manifest was re-signed.

use std::collections::BTreeMap;

use ringfence_proto::evidence::{NODE_CA, SELFTEST_RESULTS};
use serde_json::Value;

use crate::client::CliError;

fn broken(text: String) -> CliError {
    CliError::EvidenceBroken(text)
}

/// Checks every stored self-test result (the events; audit records are checked by the chain)
/// against the pinned node CA (PEM) or else the pack's; returns a one-line summary.
pub fn check(files: &BTreeMap<String, Vec<u8>>, pinned_ca: Option<&str>) -> Result<String, CliError> {
    let Some(bytes) = files.get(SELFTEST_RESULTS) else {
        return Ok(format!("self-test results: none ({SELFTEST_RESULTS} not in the pack)"));
    };
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| broken(format!("{SELFTEST_RESULTS}: not JSON: {e}")))?;
    let results: Vec<&Value> =
        doc["results"].as_array().into_iter().flatten().filter(|r| r.get("details").is_some()).collect();
    if results.is_empty() {
        return Ok("self-test results: none in the period".into());
    }
    let ca = match pinned_ca {
        Some(pem) => pem.to_owned(),
        None => String::from_utf8_lossy(files.get(NODE_CA).ok_or_else(|| {
            broken(format!(
                "{NODE_CA}: missing from the pack, so the self-tests' node signatures cannot be checked"
            ))
        })?)
        .into_owned(),
    };
    let from = if pinned_ca.is_some() { "the pinned node CA" } else { NODE_CA };
    let (mut passed, mut nodes) = (0, std::collections::BTreeSet::new());
    for r in &results {
        let (node, id) = (r["node_id"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default());
        let time_ms = r["time_ms"].as_i64().unwrap_or_default();
        let verified = ringfence_proto::selftest::verify(node, id, time_ms, &r["details"], &ca)
            .map_err(|e| broken(format!("{SELFTEST_RESULTS}: result {id} of node {node}: {e}")))?;
        passed += usize::from(verified.passed);
        nodes.insert(verified.node_id);
    }
    Ok(format!(
        "self-test results: {} signed by their nodes ({} nodes; {passed} passed, {} failed), each signature verified against {from}",
        results.len(),
        nodes.len(),
        results.len() - passed
    ))
}
