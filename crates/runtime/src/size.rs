//! Byte counts as users write them (`512M`, `4g`, `128mb`): one reader for every flag and
//! option that takes a size, so `--size`, `--memory` and `--opt journal=MODE:SIZE` agree.

/// Parses a byte count: a number with an optional K/M/G/T suffix (powers of 1024, any case,
/// optionally followed by B as in `128mb`); a plain number is bytes (docker's rule).
pub fn parse(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = match t.strip_suffix('b') {
        Some(rest) if rest.ends_with(|c: char| c.is_ascii_digit() || "kmgt".contains(c)) => rest,
        _ => t.as_str(),
    };
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some(c) if c.is_ascii_alphabetic() => {
            return Err(format!(
                "unknown size suffix {c:?} in {s:?} (use K, M, G or T)"
            ))
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512M, 4G)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sizes_read() {
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("512M"), Ok(512 << 20));
        assert_eq!(parse("2g"), Ok(2 << 30));
        assert_eq!(parse("128mb"), Ok(128 << 20));
        assert_eq!(parse("262144k"), Ok(256 << 20));
        assert_eq!(parse("1T"), Ok(1 << 40));
        assert_eq!(parse("100b"), Ok(100));
        assert!(parse("12Q").is_err());
        assert!(parse("abc").is_err());
        assert!(parse("").is_err());
        assert!(parse("-5m").is_err());
        assert!(parse("99999999999t").is_err());
    }
}
