//! The rate a container's main process may send output at (issue 16: a guest that floods its
//! stdout costs the host the monitor's CPU while it lasts). The host grants the guest output
//! credit as it takes chunks; pacing when it takes them holds a flooding process back the
//! way a slow terminal does (its writes block), and nothing is dropped.

use std::time::{Duration, Instant};

/// The environment variable that sets the rate: bytes per second as a size (`16M`), `0` or
/// `off` for none.
pub const OUTPUT_RATE_ENV: &str = "CONTAINER_OUTPUT_RATE";

/// The rate when the variable is unset: far above what a log reader can use, low enough that
/// one container's flood takes a bounded share of a core.
pub const DEFAULT_OUTPUT_RATE: u64 = 16 << 20;

/// The rate in force: bytes per second, None for unlimited. A value that does not parse is
/// the default, with a warning (a monitor has nobody to refuse it to).
pub fn output_rate() -> Option<u64> {
    match std::env::var(OUTPUT_RATE_ENV) {
        Err(_) => Some(DEFAULT_OUTPUT_RATE),
        Ok(v) => parse_rate(&v).unwrap_or_else(|e| {
            tracing::warn!("{OUTPUT_RATE_ENV}: {e}; using {DEFAULT_OUTPUT_RATE} bytes/s");
            Some(DEFAULT_OUTPUT_RATE)
        }),
    }
}

/// `16M` → 16 MiB/s; `0` or `off` → unlimited.
pub fn parse_rate(v: &str) -> Result<Option<u64>, String> {
    if v.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let n = crate::size::parse(v)?;
    Ok((n > 0).then_some(n))
}

/// A token bucket: `rate` bytes a second, up to a second's worth saved up.
#[derive(Debug)]
pub struct Pace {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Pace {
    /// A full bucket of `rate` bytes per second.
    pub fn new(rate: u64) -> Pace {
        let rate = rate as f64;
        Pace {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    /// Takes `n` bytes; returns how long to wait before taking more.
    pub fn take(&mut self, n: usize) -> Duration {
        self.take_at(n, Instant::now())
    }

    fn take_at(&mut self, n: usize, now: Instant) -> Duration {
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.rate);
        self.last = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read() {
        assert_eq!(parse_rate("16M"), Ok(Some(16 << 20)));
        assert_eq!(parse_rate("0"), Ok(None));
        assert_eq!(parse_rate("off"), Ok(None));
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut p = Pace::new(1000);
        p.last = t0;
        // A second's worth at once.
        assert_eq!(p.take_at(1000, at(0)), Duration::ZERO);
        // Then each byte waits for its share of time.
        assert_eq!(p.take_at(500, at(0)), Duration::from_millis(500));
        assert_eq!(p.take_at(0, at(500)), Duration::ZERO);
        // Idle time refills the bucket, up to a second's worth only.
        assert_eq!(p.take_at(1000, at(10_500)), Duration::ZERO);
        assert_eq!(p.take_at(100, at(10_500)), Duration::from_millis(100));
    }
}
