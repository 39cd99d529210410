//! Parsers for command-line values: sizes, capacities, ranges, durations,
//! segment names, and the ring variant. Each returns a message that says
//! what is allowed, which clap prints as a usage error (exit status 2).

use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::ValueEnum;
use shmpipe::VariantKind;

/// Units accepted after a number of bytes. Binary only: `K` and `KiB` both
/// mean 1024; decimal `KB`/`MB`/`GB` are refused as ambiguous.
pub const SIZE_HELP: &str =
    "a byte count such as 4096, 64KiB, 1.5MiB or 1GiB (K = KiB = 1024, M = MiB, G = GiB; a fraction only if it makes whole bytes; no decimal units such as KB)";

/// Parse a byte count with an optional binary suffix. A decimal fraction is
/// accepted when it makes a whole number of bytes (`1.5M`, `0.5KiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "{s:?}: a size cannot be negative; expected {SIZE_HELP}"
        ));
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || (num.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(format!("{s:?} is not a size: expected {SIZE_HELP}"));
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" | "mb" | "gb" => {
            return Err(format!(
                "{s:?}: decimal units are not accepted, use KiB, MiB or GiB (powers of 1024)"
            ))
        }
        u => return Err(format!("{s:?}: unknown unit {u:?}; expected {SIZE_HELP}")),
    };
    let too_large = || format!("{s:?} is too large");
    let n: u64 = int.parse().map_err(|_| too_large())?;
    let whole = n.checked_mul(mult).ok_or_else(too_large)?;
    if frac.is_empty() {
        return Ok(whole);
    }
    // The fraction in bytes, exactly: frac / 10^digits * mult.
    let digits = u32::try_from(frac.len())
        .ok()
        .filter(|&d| d <= 18)
        .ok_or_else(too_large)?;
    let scale = 10u128.pow(digits);
    let part = frac.parse::<u128>().map_err(|_| too_large())? * u128::from(mult);
    if part % scale != 0 {
        return Err(format!(
            "{s:?} is not a whole number of bytes; give a byte count such as {} or a whole unit",
            (whole as u128 + part / scale)
        ));
    }
    whole
        .checked_add(u64::try_from(part / scale).map_err(|_| too_large())?)
        .ok_or_else(too_large)
}

/// Parse a count that must be at least 1 (`--messages`).
pub fn parse_count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err(format!("{s:?}: the count must be at least 1")),
        Ok(n) => Ok(n),
        Err(_) if s.trim().starts_with('-') => Err(format!(
            "{s:?}: the count cannot be negative; give a whole number of at least 1"
        )),
        Err(_) => Err(format!("{s:?} is not a whole number (e.g. 100000)")),
    }
}

/// Parse a ring capacity: a size that is a power of two within the
/// library's limits.
pub fn parse_capacity(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !n.is_power_of_two() || !(shmpipe::MIN_CAPACITY..=shmpipe::MAX_CAPACITY).contains(&n) {
        return Err(format!(
            "capacity {n} bytes is not allowed: it must be a power of two from {} bytes to {} bytes (4GiB)",
            shmpipe::MIN_CAPACITY,
            shmpipe::MAX_CAPACITY
        ));
    }
    Ok(n)
}

/// Parse a size that must be at least 1 byte.
pub fn parse_nonzero_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("the size must be at least 1 byte".to_string()),
        n => Ok(n),
    }
}

/// An inclusive range of message sizes, `A..B` (or a single size `N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    /// Smallest size, inclusive.
    pub min: u64,
    /// Largest size, inclusive.
    pub max: u64,
}

/// Parse `A..B`, `A..=B` (both inclusive) or `N`.
pub fn parse_size_range(s: &str) -> Result<SizeRange, String> {
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a, b.strip_prefix('=').unwrap_or(b)),
        None => (s, s),
    };
    let min = parse_size(a)?;
    let max = parse_size(b)?;
    if min > max {
        return Err(format!(
            "{s:?}: the smallest size {min} is above the largest {max}"
        ));
    }
    Ok(SizeRange { min, max })
}

/// Parse a positive number of seconds (decimals allowed, e.g. `0.5`).
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (e.g. 10 or 0.5)"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("{s:?}: the number of seconds must be above 0"));
    }
    Duration::try_from_secs_f64(v).map_err(|_| format!("{s:?} seconds is too long"))
}

/// Parse and check a segment name (`/` then 1..=255 bytes, no other `/`).
pub fn parse_name(s: &str) -> Result<String, String> {
    shmpipe::validate_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// How idle sides wait (recorded in the segment when it is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitArg {
    /// Busy-poll: lowest latency, burns a CPU while idle.
    Spin,
    /// Busy-poll with backoff, then sched_yield.
    SpinYield,
    /// Spin briefly, then sleep on a futex in the segment (the default).
    Futex,
    /// Spin briefly, then sleep on a process-shared POSIX semaphore.
    Semaphore,
}

impl From<WaitArg> for shmpipe::WaitStrategy {
    fn from(w: WaitArg) -> Self {
        match w {
            WaitArg::Spin => shmpipe::WaitStrategy::Spin,
            WaitArg::SpinYield => shmpipe::WaitStrategy::SpinYield,
            WaitArg::Futex => shmpipe::WaitStrategy::Futex,
            WaitArg::Semaphore => shmpipe::WaitStrategy::Semaphore,
        }
    }
}

/// `--variant`: the library's [`VariantKind`], parsed by its own `FromStr`,
/// with clap listing the possible values in `--help` and in usage errors.
pub fn variant_arg() -> impl TypedValueParser<Value = VariantKind> {
    PossibleValuesParser::new([
        PossibleValue::new("lockfree")
            .alias("lock-free")
            .help("The lock-free ring (the default)"),
        PossibleValue::new("locked").help("The mutex-protected ring"),
    ])
    .try_map(|s| s.parse::<VariantKind>())
}

/// `1048576` → `"1MiB"`; sizes that are not a whole unit stay in bytes.
pub fn human_size(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (u, name) in UNITS {
        if n >= u && n & (u - 1) == 0 {
            return format!("{}{name}", n / u);
        }
    }
    format!("{n} bytes")
}

/// `1536000` → `"1.46 MiB"` (approximate, for rates and fill levels).
pub fn approx_size(n: f64) -> String {
    const UNITS: [(f64, &str); 3] = [
        (1024.0 * 1024.0 * 1024.0, "GiB"),
        (1024.0 * 1024.0, "MiB"),
        (1024.0, "KiB"),
    ];
    for (u, name) in UNITS {
        if n >= u {
            return format!("{:.2} {name}", n / u);
        }
    }
    format!("{n:.0} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1 M"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("12b"), Ok(12));
        assert!(parse_size("1KB").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert!(parse_size("1.3K")
            .unwrap_err()
            .contains("whole number of bytes"));
        assert!(parse_size("1.").is_err());
        assert!(parse_size(".5K").is_err());
        assert!(parse_size("1.2.3K").is_err());
        assert!(parse_size("-5").unwrap_err().contains("negative"));
        assert!(parse_count("-5").unwrap_err().contains("negative"));
        assert!(parse_count("0").is_err());
        assert_eq!(parse_count("7"), Ok(7));
        assert!(parse_size("1XiB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    /// `parse` accepts each `(text, value)` of `good` and refuses each of `bad`.
    fn check<T: PartialEq + std::fmt::Debug>(
        parse: fn(&str) -> Result<T, String>,
        good: &[(&str, T)],
        bad: &[&str],
    ) {
        for (text, value) in good {
            assert_eq!(parse(text).as_ref(), Ok(value), "{text:?}");
        }
        for text in bad {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn capacities() {
        check(
            parse_capacity,
            &[("64", 64), ("4GiB", 1 << 32)],
            &["8GiB", "32", "1000", "0"],
        );
    }

    #[test]
    fn ranges() {
        let range = |min, max| SizeRange { min, max };
        check(
            parse_size_range,
            &[
                ("16..4KiB", range(16, 4096)),
                ("16..=32", range(16, 32)),
                ("100", range(100, 100)),
            ],
            &["32..16", "..16"],
        );
    }

    #[test]
    fn seconds() {
        check(
            parse_seconds,
            &[
                ("0.5", Duration::from_millis(500)),
                ("3", Duration::from_secs(3)),
            ],
            &["0", "-1", "nan", "inf", "1e300"],
        );
    }

    #[test]
    fn human() {
        assert_eq!(human_size(1 << 20), "1MiB");
        assert_eq!(human_size(65536), "64KiB");
        assert_eq!(human_size(1000), "1000 bytes");
        assert_eq!(human_size(1 << 32), "4GiB");
    }
}
