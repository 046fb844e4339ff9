//! Byte sizes (`2GiB`, `500MB`), durations (`10m`, `1h30m`) and percentages (`2%`, `0.5`):
//! parsing from policy text and formatting back (the formatted text parses to the same value).
//! Errors are the reason only (`expected ...`); the caller adds the field and its position.

/// Byte-size units: decimal (powers of 1000) and binary (powers of 1024), largest first.
const BYTE_UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("TB", 1_000_000_000_000),
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
    ("B", 1),
];

/// Duration units, largest first: they must appear in this order, each at most once.
const DURATION_UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

const BYTES_EXPECTED: &str = "expected a whole number of bytes, optionally with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 2GiB or 500MB";
const DURATION_EXPECTED: &str =
    "expected a duration such as 30s, 10m, 1h30m or 1d (units d, h, m, s, largest first, each at most once)";

/// Splits `text` into the leading decimal number (`123` or `1.5`) and the rest. The number is
/// returned as (integer part and fraction digits as one integer, number of fraction digits).
fn leading_number(text: &str) -> Option<((u128, u32), &str)> {
    let int_len = text.bytes().take_while(u8::is_ascii_digit).count();
    if int_len == 0 {
        return None;
    }
    let (int, rest) = text.split_at(int_len);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(after) => {
            let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
            if frac_len == 0 {
                return None;
            }
            after.split_at(frac_len)
        }
        None => ("", rest),
    };
    // Leading zeros are harmless; cap the digits so the value fits comfortably in a u128.
    if int.trim_start_matches('0').len() > 20 || frac.len() > 18 {
        return None;
    }
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    Some(((digits, frac.len() as u32), rest))
}

/// Parses a byte size: a number of bytes (`1048576`) or a number with a unit (`2GiB`,
/// `1.5 GB`; a space before the unit is allowed). The result must be a whole number of bytes
/// that fits in 64 bits. Zero is returned as such (the caller decides whether it is allowed).
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let Some(((digits, scale), rest)) = leading_number(text) else {
        return Err(BYTES_EXPECTED.to_owned());
    };
    let unit = rest.trim_start();
    let multiplier = if unit.is_empty() {
        1
    } else if let Some((_, m)) = BYTE_UNITS.iter().find(|(u, _)| *u == unit) {
        *m
    } else if let Some((u, _)) = BYTE_UNITS.iter().find(|(u, _)| u.eq_ignore_ascii_case(unit)) {
        return Err(format!("unknown unit \"{unit}\"; did you mean \"{u}\"? ({BYTES_EXPECTED})"));
    } else {
        return Err(format!("unknown unit \"{unit}\" ({BYTES_EXPECTED})"));
    };
    let too_large = || "too large (more than 2^64 - 1 bytes)".to_owned();
    let divisor = 10u128.pow(scale);
    let scaled = digits.checked_mul(u128::from(multiplier)).ok_or_else(too_large)?;
    if scaled % divisor != 0 {
        return Err(format!("not a whole number of bytes; use a smaller unit ({BYTES_EXPECTED})"));
    }
    u64::try_from(scaled / divisor).map_err(|_| too_large())
}

/// Parses a duration: one or more `NUMBER UNIT` parts with units `d`, `h`, `m`, `s` in that
/// order, each at most once (`90s`, `10m`, `2h30m`, `1d12h`). A number without a unit is
/// rejected (seconds or minutes would be a guess). Returns seconds; zero is returned as such.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("a duration needs a unit, e.g. {text}s or {text}m ({DURATION_EXPECTED})"));
    }
    let mut rest = text;
    let mut total: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Some(unit) = rest[digits..].chars().next().filter(|_| digits > 0) else {
            return Err(DURATION_EXPECTED.to_owned());
        };
        let Some(index) = DURATION_UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit \"{unit}\" ({DURATION_EXPECTED})"));
        };
        if index < next_unit {
            return Err(format!("unit \"{unit}\" is out of order or repeated ({DURATION_EXPECTED})"));
        }
        let too_large = || "too large".to_owned();
        let count: u64 = rest[..digits].parse().map_err(|_| too_large())?;
        let seconds = count.checked_mul(DURATION_UNITS[index].1).ok_or_else(too_large)?;
        total = total.checked_add(seconds).ok_or_else(too_large)?;
        next_unit = index + 1;
        rest = &rest[digits + unit.len_utf8()..];
    }
    if next_unit == 0 {
        return Err(DURATION_EXPECTED.to_owned());
    }
    Ok(total)
}

/// Parses a percentage (`2%`, `0.5%`, or a plain number meaning percent: `2`, `0.5`) into basis
/// points (hundredths of a percent: `2%` = 200). At most two decimal places.
pub(crate) fn parse_percent(text: &str) -> Result<u32, String> {
    let expected = "expected a percentage such as 2% or 0.5% (at most two decimal places)";
    let text = text.trim();
    let number = text.strip_suffix('%').map_or(text, str::trim_end);
    match leading_number(number) {
        Some(((digits, scale), "")) if scale <= 2 => {
            let bp = digits.checked_mul(10u128.pow(2 - scale));
            bp.and_then(|bp| u32::try_from(bp).ok()).ok_or_else(|| "too large".to_owned())
        }
        Some((_, "")) => Err(format!("more precise than 0.01% ({expected})")),
        _ => Err(expected.to_owned()),
    }
}

/// Formats bytes with the unit giving the smallest whole number (`2GiB`, `500MB`, `1234B`).
pub(crate) fn format_bytes(bytes: u64) -> String {
    let best = BYTE_UNITS
        .iter()
        .filter(|(_, m)| bytes.is_multiple_of(*m))
        .min_by_key(|(_, m)| (bytes / m, *m))
        .expect("every size is a whole number of bytes");
    format!("{}{}", bytes / best.1, best.0)
}

/// Formats seconds as a duration (`1h30m`, `45s`, `0s`).
pub(crate) fn format_duration(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = seconds;
    for (unit, size) in DURATION_UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// Formats basis points as a percentage (`2%`, `0.5%`, `0.25%`).
pub(crate) fn format_percent(bp: u32) -> String {
    let (whole, frac) = (bp / 100, bp % 100);
    match frac {
        0 => format!("{whole}%"),
        f if f % 10 == 0 => format!("{whole}.{}%", f / 10),
        f => format!("{whole}.{f:02}%"),
    }
}
