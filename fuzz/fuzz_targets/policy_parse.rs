//! Arbitrary bytes → UTF-8 → `parse_policy`: never panics. A refusal keeps the documented
//! contract (also the API's `PolicyDiagnostic` schema): at least one diagnostic, 1-based line
//! and column within the text, ordered by position, each with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Err(diagnostics) = ringfence_policy::parse_policy(text) else { return };
    assert!(!diagnostics.is_empty(), "a refused policy names at least one problem");
    // YAML line breaks: LF, CR LF and a lone CR; an error at the end may be one line further.
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count() + 1;
    for d in &diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "positions are 1-based: {d:?}");
        assert!(d.line <= lines, "line {} beyond the text ({lines} lines): {d:?}", d.line);
        assert!(!d.message.is_empty(), "{d:?}");
    }
    assert!(
        diagnostics.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)),
        "ordered by position: {diagnostics:?}"
    );
    // Rendering them must not panic either.
    let _ = ringfence_policy::format_diagnostics(std::path::Path::new("fuzz.yaml"), &diagnostics);
});
