//! The value parsers of the command line (`clap` `value_parser`s): each
//! refuses bad input with what was wrong and what is allowed.

use std::time::Duration;

/// A segment name (`/` and 1 to 255 characters).
pub fn parse_name(s: &str) -> Result<String, String> {
    shmpipe::validate_name(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// A zenoh key expression.
pub fn parse_key(s: &str) -> Result<String, String> {
    zenoh::key_expr::KeyExpr::try_from(s.to_string())
        .map(|k| k.to_string())
        .map_err(|e| format!("{s:?} is not a zenoh key expression (e.g. demo/ring): {e}"))
}

/// Sizes: bytes with an optional binary unit (K, KiB, M, MiB, G, GiB).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4096, 64K, 1MiB)"))?;
    let mul: u64 = match unit {
        "" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?}; use K, KiB, M, MiB, G or GiB"
            ))
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A ring capacity: a size that is a power of two in the library's range.
pub fn parse_capacity(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !n.is_power_of_two() || !(shmpipe::MIN_CAPACITY..=shmpipe::MAX_CAPACITY).contains(&n) {
        return Err(format!(
            "capacity {n} is not allowed: a power of two from {} to {} bytes",
            shmpipe::MIN_CAPACITY,
            shmpipe::MAX_CAPACITY
        ));
    }
    Ok(n)
}

/// Seconds, fractions allowed, from 0 to 1e9.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let f: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (e.g. 10 or 0.5)"))?;
    if !f.is_finite() || !(0.0..=1e9).contains(&f) {
        return Err(format!("{s:?}: seconds must be from 0 to 1e9"));
    }
    Ok(Duration::from_secs_f64(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_refuse_bad_input_with_a_reason() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert!(parse_size("64KB").unwrap_err().contains("unknown unit"));
        assert!(parse_capacity("100").unwrap_err().contains("power of two"));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_key("a/b").is_ok());
        assert!(parse_key("a//b").is_err());
        assert!(parse_name("noslash").is_err());
    }
}
