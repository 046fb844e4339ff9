//! Byte-size, duration and percentage parsers and formatters, and the glob matcher.

use crate::model::glob_match;
use crate::quantities::{
    format_bytes, format_duration, format_percent, parse_bytes, parse_duration, parse_percent,
};

#[test]
fn byte_sizes() {
    let ok = [
        ("1048576", 1 << 20),
        ("0", 0),
        ("1B", 1),
        ("2GiB", 2 << 30),
        ("500MB", 500_000_000),
        ("1.5GB", 1_500_000_000),
        ("1.5 KiB", 1_536),
        (" 3 TiB ", 3 << 40),
        ("2TB", 2_000_000_000_000),
        ("10KB", 10_000),
        ("7MiB", 7 << 20),
        ("1.0", 1),
        ("007KB", 7_000),
        ("18446744073709551615", u64::MAX),
        ("16777215TiB", 16_777_215 << 40),
    ];
    for (text, bytes) in ok {
        assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
    }
    let err = |text: &str| parse_bytes(text).expect_err(text);
    assert!(err("2gib").contains("unknown unit \"gib\"; did you mean \"GiB\"?"));
    assert!(err("2 kb").contains("did you mean \"KB\"?"));
    assert!(err("2 gigs").starts_with("unknown unit \"gigs\" (expected a whole number of bytes"));
    assert!(err("2 GiB/s").starts_with("unknown unit \"GiB/s\""));
    assert!(err("0.5B").starts_with("not a whole number of bytes"));
    assert!(err("0.3KiB").starts_with("not a whole number of bytes"));
    assert_eq!(err("18446744073709551616"), "too large (more than 2^64 - 1 bytes)");
    assert_eq!(err("16777216TiB"), "too large (more than 2^64 - 1 bytes)");
    for bad in ["", "GB", "-1GB", "1e9", "1.GB", ".5GB", "1,5GB", "1 000", "99999999999999999999999GB"] {
        assert!(err(bad).contains("B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB"), "{bad}");
    }
}

#[test]
fn durations() {
    let ok = [
        ("30s", 30),
        ("10m", 600),
        ("1h", 3_600),
        ("2h30m", 9_000),
        ("1h30m", 5_400),
        ("1d", 86_400),
        ("1d2h3m4s", 93_784),
        ("1d30s", 86_430),
        ("90m", 5_400),
        ("0s", 0),
        (" 10m ", 600),
    ];
    for (text, secs) in ok {
        assert_eq!(parse_duration(text), Ok(secs), "{text}");
    }
    let err = |text: &str| parse_duration(text).expect_err(text);
    assert!(err("600").starts_with("a duration needs a unit, e.g. 600s or 600m"));
    assert!(err("30m1h").starts_with("unit \"h\" is out of order or repeated"));
    assert!(err("1h1h").starts_with("unit \"h\" is out of order or repeated"));
    assert!(err("1w").starts_with("unknown unit \"w\""));
    assert!(err("1H").starts_with("unknown unit \"H\""));
    assert_eq!(err("99999999999999999999s"), "too large");
    assert_eq!(err("213503982334602d"), "too large");
    assert_eq!(err("213503982334601d86399s"), "too large");
    for bad in ["", "h", "1h30", "10ms", "-1h", "1.5h", "1h 30m", "m5"] {
        assert!(err(bad).contains("expected a duration such as 30s, 10m, 1h30m or 1d"), "{bad}");
    }
}

#[test]
fn percentages() {
    let ok = [
        ("2%", 200),
        ("0.5%", 50),
        ("0.25%", 25),
        ("2", 200),
        ("0.5", 50),
        ("2 %", 200),
        ("50%", 5_000),
        ("100", 10_000),
        ("0", 0),
        ("1.10%", 110),
    ];
    for (text, bp) in ok {
        assert_eq!(parse_percent(text), Ok(bp), "{text}");
    }
    let err = |text: &str| parse_percent(text).expect_err(text);
    assert!(err("0.125%").starts_with("more precise than 0.01%"));
    assert_eq!(err("99999999999%"), "too large");
    for bad in ["", "%", "abc", "2%%", "-1%", "1e2", ".5%", "2.%", "% 2", "2 percent"] {
        assert!(err(bad).starts_with("expected a percentage such as 2% or 0.5%"), "{bad}");
    }
}

#[test]
fn formatting_round_trips() {
    assert_eq!(format_bytes(2 << 30), "2GiB");
    assert_eq!(format_bytes(500_000_000), "500MB");
    assert_eq!(format_bytes(1_234), "1234B");
    assert_eq!(format_bytes(1_024_000), "1000KiB");
    assert_eq!(format_bytes(0), "0B");
    for bytes in [0, 1, 999, 1_000, 1_024, 1_536, 3 << 40, 7_000_000_000_000, u64::MAX, 1 << 63] {
        assert_eq!(parse_bytes(&format_bytes(bytes)), Ok(bytes), "{bytes}");
    }
    assert_eq!(format_duration(0), "0s");
    assert_eq!(format_duration(9_000), "2h30m");
    assert_eq!(format_duration(93_784), "1d2h3m4s");
    assert_eq!(format_duration(86_400), "1d");
    assert_eq!(format_duration(7 * 86_400), "7d");
    for secs in [0, 1, 59, 60, 61, 3_599, 3_600, 86_399, 86_401, 604_800, u64::MAX] {
        assert_eq!(parse_duration(&format_duration(secs)), Ok(secs), "{secs}");
    }
    assert_eq!(format_percent(200), "2%");
    assert_eq!(format_percent(50), "0.5%");
    assert_eq!(format_percent(25), "0.25%");
    assert_eq!(format_percent(5), "0.05%");
    assert_eq!(format_percent(110), "1.1%");
    for bp in 0..=10_000 {
        assert_eq!(parse_percent(&format_percent(bp)), Ok(bp), "{bp}");
    }
}

#[test]
fn globs() {
    let yes = [
        ("", ""),
        ("*", ""),
        ("*", "anything"),
        ("**", "x"),
        ("a*b*c", "abc"),
        ("a*b*c", "aXXbYYc"),
        ("*ab", "aab"),
        ("*a", "ba"),
        ("?", "é"),
        ("??", "é1"),
        ("*.pt", ".pt"),
        ("*.pt", "a.pt.pt"),
        ("model-*-of-*.safetensors", "model-00001-of-00004.safetensors"),
        ("[x]", "[x]"),
        ("a*a*a*a*b", "aaaaaaaaaaaaaaaab"),
    ];
    for (pattern, text) in yes {
        assert!(glob_match(pattern, text), "{pattern} {text}");
    }
    let no = [
        ("", "a"),
        ("a", ""),
        ("a*", ""),
        ("?", ""),
        ("?", "ab"),
        ("a*b*c", "acb"),
        ("*.pt", "a.ptx"),
        ("*.pt", "a.PT"),
        ("[x]", "x"),
        ("a*a*a*a*b", "aaaaaaaaaaaaaaaaa"),
    ];
    for (pattern, text) in no {
        assert!(!glob_match(pattern, text), "{pattern} {text}");
    }
}
