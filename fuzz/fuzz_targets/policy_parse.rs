//! Arbitrary bytes → UTF-8 → `parse_policy`: never panics (errors are diagnostics with
//! 1-based line and column).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(diagnostics) = ringfence_policy::parse_policy(text) {
        assert!(!diagnostics.is_empty(), "a refused policy names at least one problem");
        // Rendering them must not panic either.
        let _ = ringfence_policy::format_diagnostics(std::path::Path::new("fuzz.yaml"), &diagnostics);
    }
});
