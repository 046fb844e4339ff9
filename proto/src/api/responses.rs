//! Error bodies and the audit verification verdict.

use serde::{Deserialize, Serialize};

use super::policies::PolicyDiagnostic;

/// Every error response: `{"error": "...", "diagnostics": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
    /// For a refused policy: every problem, by position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<PolicyDiagnostic>,
}

/// `GET /v1/audit/verify` (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditVerification {
    /// True when the whole chain recomputes.
    pub ok: bool,
    /// Records checked (up to the first break).
    pub records: u64,
    /// The first edited or deleted record.
    pub first_bad_seq: Option<u64>,
    /// What is wrong there.
    pub error: Option<String>,
}
