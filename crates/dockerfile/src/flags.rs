//! Instruction flags (`--from=builder`, `--link`) checked against what each instruction takes,
//! with Docker's rules and messages.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Bool,
    String,
    /// May be repeated; each occurrence adds a value.
    Strings,
}

pub(crate) struct Flags {
    values: HashMap<&'static str, Vec<String>>,
}

impl Flags {
    /// Checks `raw` (each `--name[=value]`, quotes already removed) against `spec`.
    pub(crate) fn parse(raw: &[String], spec: &[(&'static str, Kind)]) -> Result<Flags, String> {
        let mut values: HashMap<&'static str, Vec<String>> = HashMap::new();
        for arg in raw {
            if arg == "--" {
                break;
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {arg}"));
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let flag = format!("--{name}");
            let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(format!("unknown flag: {flag}"));
            };
            if values.contains_key(key) && kind != Kind::Strings {
                return Err(format!("duplicate flag specified: {flag}"));
            }
            let value = match (kind, value) {
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Bool, Some("")) | (_, None) => {
                    return Err(format!("missing a value on flag: {flag}"))
                }
                (Kind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => "true".into(),
                    "false" => "false".into(),
                    _ => return Err(format!("expecting boolean value for flag {flag}, not: {v}")),
                },
                (_, Some(v)) => v.to_string(),
            };
            values.entry(key).or_default().push(value);
        }
        Ok(Flags { values })
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    /// Docker treats an empty value (`--chown=`) as not given.
    pub(crate) fn non_empty(&self, name: &str) -> Option<String> {
        self.string(name).filter(|v| !v.is_empty())
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    /// A HEALTHCHECK interval: `None` when absent or zero; under a millisecond is refused.
    pub(crate) fn interval(&self, name: &str) -> Result<Option<Duration>, String> {
        let Some(text) = self.string(name).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let (negative, nanos) = parse_go_duration(&text)?;
        if nanos == 0 {
            return Ok(None);
        }
        if negative || nanos < 1_000_000 {
            return Err(format!("Interval {name:?} cannot be less than 1ms"));
        }
        let nanos = u64::try_from(nanos).map_err(|_| format!("invalid duration {text:?}"))?;
        Ok(Some(Duration::from_nanos(nanos)))
    }
}

/// Go's `time.ParseDuration`, which is what Docker accepts: a sequence of decimal numbers with
/// units (`1h30m`, `1.5s`, `300ms`; units ns, us, µs, ms, s, m, h), optionally signed, or
/// `0`. Returns the sign and the magnitude in nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<(bool, u128), String> {
    let invalid = || format!("invalid duration {text:?}");
    let mut s = text;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok((negative, 0));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    // Go's limit: the magnitude must fit an int64 of nanoseconds.
    const MAX: u128 = i64::MAX as u128;
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit = match &s[..unit_len] {
            "ns" => 1u128,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {text:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {text:?}")),
        };
        s = &s[unit_len..];
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = int.checked_mul(unit).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // Digits past what u128 can scale add nothing measurable at nanosecond precision.
            let digits = &frac_part[..frac_part.len().min(30)];
            let frac: u128 = digits.parse().map_err(|_| invalid())?;
            let scale = 10u128.pow(u32::try_from(digits.len()).map_err(|_| invalid())?);
            value = value
                .checked_add(frac.checked_mul(unit).ok_or_else(invalid)? / scale)
                .ok_or_else(invalid)?;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > MAX {
            return Err(invalid());
        }
    }
    Ok((negative, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(raw: &[&str], spec: &[(&'static str, Kind)]) -> Result<Flags, String> {
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        Flags::parse(&raw, spec)
    }

    #[test]
    fn docker_flag_rules() {
        let spec = [
            ("from", Kind::String),
            ("link", Kind::Bool),
            ("exclude", Kind::Strings),
        ];
        let f = flags(&["--from=a", "--link", "--exclude=x", "--exclude=y"], &spec).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.strings("exclude"), ["x", "y"]);
        assert_eq!(
            flags(&["--link=FALSE"], &spec).unwrap().bool("link"),
            Some(false)
        );
        assert_eq!(
            flags(&["--nope"], &spec).err().unwrap(),
            "unknown flag: --nope"
        );
        assert_eq!(
            flags(&["--from=a", "--from=b"], &spec).err().unwrap(),
            "duplicate flag specified: --from"
        );
        assert_eq!(
            flags(&["--from"], &spec).err().unwrap(),
            "missing a value on flag: --from"
        );
        assert_eq!(
            flags(&["--link="], &spec).err().unwrap(),
            "missing a value on flag: --link"
        );
        assert_eq!(
            flags(&["--link=yes"], &spec).err().unwrap(),
            "expecting boolean value for flag --link, not: yes"
        );
        // `--` ends the flags; what follows is not checked.
        assert!(flags(&["--", "--nope"], &spec).is_ok());
    }

    #[test]
    fn go_durations() {
        let ns = |s: &str| parse_go_duration(s).unwrap().1;
        assert_eq!(ns("0"), 0);
        assert_eq!(ns("30s"), 30_000_000_000);
        assert_eq!(ns("1h30m"), 5_400_000_000_000);
        assert_eq!(ns("1.5s"), 1_500_000_000);
        assert_eq!(ns(".5ms"), 500_000);
        assert_eq!(ns("300ms"), 300_000_000);
        assert_eq!(ns("2us"), 2_000);
        assert_eq!(ns("2µs"), 2_000);
        assert_eq!(ns("1m0.5s"), 60_500_000_000);
        assert!(parse_go_duration("-1s").unwrap().0);
        for bad in ["", "s", "1", "1x", "1.s.", ".s", "-", "9999999999h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
