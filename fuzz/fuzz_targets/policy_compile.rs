//! A policy that parses and validates compiles (without a geo database) without panicking:
//! either kernel tables or a `CompileError`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = ringfence_policy::parse_policy(text) else { return };
    let _ = ringfence_policy::compile(&policy, None);
});
