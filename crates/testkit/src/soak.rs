//! What the kill -9 soaks share (`crates/cli/tests/soak.rs`, the shim's `ctr.rs`): how many
//! kills, and random delays that a printed seed repeats.

use std::time::Duration;

/// Kills per target: `CONTAINER_SOAK_KILLS`, 10 by default.
pub fn kills() -> usize {
    std::env::var("CONTAINER_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// xorshift64: the delays only need to be spread and repeatable from a printed seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `CONTAINER_SOAK_SEED`, else the clock; the seed is printed for `target`.
    pub fn new(target: &str) -> Rng {
        let seed = std::env::var("CONTAINER_SOAK_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("soak {target}: CONTAINER_SOAK_SEED={seed}");
        Rng(seed)
    }

    /// A delay in `[0, d)`.
    pub fn within(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_micros(self.0 % (d.as_micros() as u64).max(1))
    }
}

/// One line per soaked target, the figure docs/benchmarks.md reports.
pub fn report(target: &str, killed: usize, total: usize) {
    eprintln!("soak {target}: killed {killed} of {total} times before it ended, no leak");
}
