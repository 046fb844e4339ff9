//! `spec.exfiltration` validation errors: every problem reported at once, at its position.

use super::{assert_diag, doc, parse_err, parse_ok};
use crate::{Bulk, Diagnostic};

#[test]
fn every_error_is_reported_at_its_position() {
    let src = doc("  defaultAction: deny
  exfiltration:
    approvedSinks:
      cidrs: [198.51.100.1/24]
      countries: [de]
      countryGroups: [nowhere]
      peers: yes
      hosts: [a]
    bulk:
      bytes: 2 gigs
      window: 2d
    checkpoints:
      paths: [data/ckpt]
      patterns: [\"\", \"ckpt/*.pt\"]
      tolerance: 60%
    action: alert
    blockFor: 1h
    mode: strict
");
    let diags = parse_err(&src);
    let ctx = "in spec.exfiltration.approvedSinks";
    assert_diag(&diags, 9, 15, &format!("CIDR \"198.51.100.1/24\" {ctx} has host bits set"));
    assert_diag(
        &diags,
        10,
        19,
        &format!("invalid country code \"de\" {ctx}: country codes must be uppercase"),
    );
    assert_diag(&diags, 11, 23, &format!("unknown country group \"nowhere\" {ctx} (known groups: "));
    assert_diag(&diags, 12, 14, &format!("invalid peers \"yes\" {ctx} (expected true or false)"));
    assert_diag(
        &diags,
        13,
        7,
        &format!(
            "unknown field \"hosts\" {ctx} (expected one of: cidrs, countries, countryGroups, peers, fqdns)"
        ),
    );
    assert_diag(
        &diags,
        15,
        14,
        "invalid bytes \"2 gigs\" in spec.exfiltration.bulk: unknown unit \"gigs\" (expected a whole number of bytes, optionally with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)",
    );
    assert_diag(&diags, 16, 15, "window \"2d\" in spec.exfiltration.bulk is longer than the maximum of 1d");
    let ctx = "in spec.exfiltration.checkpoints";
    assert_diag(
        &diags,
        18,
        15,
        &format!("checkpoint path \"data/ckpt\" {ctx} is not absolute; use an absolute directory, starting with '/' (e.g. /data/checkpoints)"),
    );
    assert_diag(
        &diags,
        19,
        18,
        &format!("empty checkpoint pattern {ctx}; use a file-name glob such as \"*.safetensors\""),
    );
    assert_diag(
        &diags,
        19,
        22,
        &format!("checkpoint pattern \"ckpt/*.pt\" {ctx} contains '/': patterns match file names only; put directories in \"paths\""),
    );
    assert_diag(&diags, 20, 18, &format!("tolerance \"60%\" {ctx} is above the maximum of 50%"));
    assert_diag(&diags, 22, 15, "\"blockFor\" in spec.exfiltration only applies to \"action: block\", and the action is alert; remove \"blockFor\" or set \"action: block\"");
    assert_diag(
        &diags,
        23,
        5,
        "unknown field \"mode\" in spec.exfiltration (expected one of: approvedSinks, bulk, checkpoints, action, blockFor, budgets, rateLimit)",
    );
    assert_eq!(diags.len(), 13, "{diags:#?}");
}

/// Parses `  exfiltration: SECTION` (line 7) and returns the diagnostics.
fn errors(section: &str) -> (Vec<Diagnostic>, impl Fn(&str) -> usize) {
    let line = format!("  exfiltration: {section}");
    let diags = parse_err(&doc(&format!("  defaultAction: deny\n{line}\n")));
    (diags, move |needle: &str| line.find(needle).unwrap_or_else(|| panic!("{needle:?}")) + 1)
}

/// Asserts one diagnostic, on line 7 at the first occurrence of `at` in the section.
fn single(section: &str, at: &str, needle: &str) {
    let (diags, col) = errors(section);
    assert_diag(&diags, 7, col(at), needle);
    assert_eq!(diags.len(), 1, "{section}: {diags:#?}");
}

#[test]
fn section_shape_errors() {
    single("5", "5", "expected a mapping for \"exfiltration\" in spec, found a scalar");
    single(
        "{}",
        "{",
        "spec.exfiltration detects nothing: add \"bulk\" (e.g. {bytes: 2GiB, window: 10m}), \"checkpoints\"",
    );
    // Everything is reported at once: nothing to detect and a bad blockFor.
    let (diags, col) = errors("{ approvedSinks: { peers: true }, action: block, blockFor: 0s }");
    assert_diag(&diags, 7, col("{"), "spec.exfiltration detects nothing");
    assert_diag(&diags, 7, col("0s"), "blockFor \"0s\" in spec.exfiltration must be greater than 0");
    assert_eq!(diags.len(), 2, "{diags:#?}");
    single(
        "{ bulk: {bytes: 1GB, window: 1m}, action: kill }",
        "kill",
        "invalid action \"kill\" in spec.exfiltration (expected one of: alert, block)",
    );
    single(
        "{ bulk: {bytes: 1GB, window: 1m}, blockFor: 1h }",
        "1h",
        "\"blockFor\" in spec.exfiltration only applies to \"action: block\", and the action is alert (the default); remove \"blockFor\" or set \"action: block\"",
    );
    single(
        "{ bulk: {bytes: 1GB, window: 1m}, action: block, blockFor: 8d }",
        "8d",
        "blockFor \"8d\" in spec.exfiltration is longer than the maximum of 7d",
    );
    single(
        "{ bulk: {bytes: 1GB, window: 1m}, action: block, blockFor: 7 }",
        "7 }",
        "invalid blockFor \"7\" in spec.exfiltration: a duration needs a unit, e.g. 7s or 7m",
    );
    parse_ok(&doc("  defaultAction: deny\n  exfiltration: { bulk: {bytes: 1GB, window: 1m}, action: block, blockFor: 7d }\n"));
}

#[test]
fn bulk_errors() {
    let (diags, col) = errors("{ bulk: {} }");
    assert_diag(&diags, 7, col("{}"), "missing required field \"bytes\" in spec.exfiltration.bulk");
    assert_diag(&diags, 7, col("{}"), "missing required field \"window\" in spec.exfiltration.bulk");
    assert_eq!(diags.len(), 2, "{diags:#?}");
    let bulk = |bytes: &str, window: &str| format!("{{ bulk: {{ bytes: {bytes}, window: {window} }} }}");
    let ctx = "in spec.exfiltration.bulk";
    single(&bulk("0", "1m"), "0", &format!("bytes \"0\" {ctx} must be greater than 0"));
    single(&bulk("0GiB", "1m"), "0GiB", "must be greater than 0");
    single(
        &bulk("2gib", "1m"),
        "2gib",
        &format!("invalid bytes \"2gib\" {ctx}: unknown unit \"gib\"; did you mean \"GiB\"?"),
    );
    single(&bulk("0.5B", "1m"), "0.5B", "not a whole number of bytes; use a smaller unit");
    single(
        &bulk("lots", "1m"),
        "lots",
        "invalid bytes \"lots\" in spec.exfiltration.bulk: expected a whole number of bytes",
    );
    single(
        &bulk("[1]", "1m"),
        "[1]",
        "expected a string for \"bytes\" in spec.exfiltration.bulk, found a sequence",
    );
    single(&bulk("1GB", "0s"), "0s", &format!("window \"0s\" {ctx} must be greater than 0"));
    single(
        &bulk("1GB", "600"),
        "600",
        "invalid window \"600\" in spec.exfiltration.bulk: a duration needs a unit, e.g. 600s or 600m",
    );
    single(
        &bulk("1GB", "1h30"),
        "1h30",
        "invalid window \"1h30\" in spec.exfiltration.bulk: expected a duration such as 30s",
    );
    single(&bulk("1GB", "30m1h"), "30m1h", "unit \"h\" is out of order or repeated");
    single(&bulk("1GB", "1d1s"), "1d1s", "is longer than the maximum of 1d");
    let p = parse_ok(&doc(&format!("  defaultAction: deny\n  exfiltration: {}\n", bulk("1.5 GB", "24h"))));
    assert_eq!(p.exfiltration.unwrap().bulk, Some(Bulk { bytes: 1_500_000_000, window_secs: 86_400 }));
}

#[test]
fn checkpoint_errors() {
    let ctx = "in spec.exfiltration.checkpoints";
    single("{ checkpoints: { tolerance: 2 } }", "{ tol", &format!("missing required field \"paths\" {ctx}"));
    single("{ checkpoints: { paths: [] } }", "[]", &format!("\"paths\" {ctx} must not be empty"));
    single(
        "{ checkpoints: { paths: /ckpt } }",
        "/ckpt",
        &format!("expected a sequence for \"paths\" {ctx}, found a scalar"),
    );
    single(
        "{ checkpoints: { paths: [~] } }",
        "~",
        &format!("expected a string for an entry of \"paths\" {ctx}, found null"),
    );
    single(
        "{ checkpoints: { paths: [./ckpt] } }",
        "./ckpt",
        "checkpoint path \"./ckpt\" in spec.exfiltration.checkpoints is not absolute",
    );
    single(
        "{ checkpoints: { paths: [/c], patterns: [] } }",
        "[]",
        &format!("\"patterns\" {ctx} must not be empty; omit \"patterns\" to use the defaults (*.safetensors, *.pt, *.pth, *.ckpt, *.bin, *.gguf)"),
    );
    single(
        "{ checkpoints: { paths: [/c], tolerance: 0 } }",
        "0 }",
        &format!("tolerance \"0\" {ctx} must be greater than 0%"),
    );
    single("{ checkpoints: { paths: [/c], tolerance: 0% } }", "0%", "must be greater than 0%");
    single("{ checkpoints: { paths: [/c], tolerance: 50.01% } }", "50.01%", "is above the maximum of 50%");
    single(
        "{ checkpoints: { paths: [/c], tolerance: 0.125% } }",
        "0.125%",
        &format!("invalid tolerance \"0.125%\" {ctx}: more precise than 0.01%"),
    );
    single(
        "{ checkpoints: { paths: [/c], tolerance: two } }",
        "two",
        "expected a percentage such as 2% or 0.5%",
    );
    single(
        "{ checkpoints: { paths: [/c], glob: [a] } }",
        "glob",
        &format!("unknown field \"glob\" {ctx} (expected one of: paths, patterns, tolerance)"),
    );
    let p = parse_ok(&doc("  defaultAction: deny\n  exfiltration: { checkpoints: { paths: [/c], tolerance: 50, patterns: [a, a, b] } }\n"));
    let c = p.exfiltration.unwrap().checkpoints.unwrap();
    assert_eq!((c.tolerance_bp, c.patterns), (5_000, vec!["a".to_owned(), "b".to_owned()]));
}

#[test]
fn approved_sink_errors() {
    let ctx = "in spec.exfiltration.approvedSinks";
    let with = |sinks: &str| format!("{{ bulk: {{bytes: 1GB, window: 1m}}, approvedSinks: {sinks} }}");
    single(&with("{ cidrs: [] }"), "[]", &format!("\"cidrs\" {ctx} must not be empty"));
    single(&with("{ cidrs: [bad] }"), "bad", &format!("invalid CIDR \"bad\" {ctx}"));
    single(&with("{ countries: [UK] }"), "UK", "did you mean \"GB\"?");
    single(&with("{ countryGroups: [] }"), "[]", &format!("\"countryGroups\" {ctx} must not be empty"));
    single(&with("{ peers: 1 }"), "1 }", &format!("invalid peers \"1\" {ctx} (expected true or false)"));
    single(
        &with("[a]"),
        "[a]",
        "expected a mapping for \"approvedSinks\" in spec.exfiltration, found a sequence",
    );
    // A group whose definition has errors is reported once, at the definition.
    let diags = parse_err(&doc(
        "  defaultAction: deny\n  countryGroups: { mine: [XX] }\n  exfiltration: { bulk: {bytes: 1GB, window: 1m}, approvedSinks: { countryGroups: [mine] } }\n",
    ));
    assert_diag(&diags, 7, 27, "unknown country code \"XX\"");
    assert_eq!(diags.len(), 1, "{diags:#?}");
}
