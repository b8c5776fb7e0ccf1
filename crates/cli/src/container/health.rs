//! `--health-*` and `--no-healthcheck` of `run` and `create`: docker's flags, read into
//! `runtime::health::HealthOptions` (the rules, the merge with the image's `HEALTHCHECK` and
//! the checks themselves are the runtime's).

use clap::Args;

/// Health-check flags (docker's names, defaults and duration syntax: `1s`, `1m30s`, `500ms`).
#[derive(Debug, Args)]
pub struct HealthFlags {
    /// Command to run to check health, with /bin/sh -c in the container (exit 0: healthy).
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub health_interval: Option<i64>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub health_timeout: Option<i64>,
    /// Start period for the container to initialize before failures count (ms|s|m|h)
    /// (default 0s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub health_start_period: Option<i64>,
    /// Time between running the check during the start period (ms|s|m|h) (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub health_start_interval: Option<i64>,
    /// Consecutive failures needed to report unhealthy (default 3).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK (the image's too).
    #[arg(long)]
    pub no_healthcheck: bool,
}

impl HealthFlags {
    /// The runtime's form of these flags.
    pub fn options(&self) -> runtime::health::HealthOptions {
        runtime::health::HealthOptions {
            cmd: self.health_cmd.clone(),
            interval: self.health_interval.unwrap_or(0),
            timeout: self.health_timeout.unwrap_or(0),
            start_period: self.health_start_period.unwrap_or(0),
            start_interval: self.health_start_interval.unwrap_or(0),
            retries: self.health_retries.unwrap_or(0),
            disabled: self.no_healthcheck,
        }
    }
}

/// A Go duration (`time.ParseDuration`, as docker's flags), in signed nanoseconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    runtime::health::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::super::ContainerCommand;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        c: ContainerCommand,
    }

    fn parse(args: &[&str]) -> runtime::health::HealthOptions {
        let t = T::try_parse_from(args).unwrap();
        let ContainerCommand::Run(r) = t.c else {
            panic!()
        };
        r.flags.health.options()
    }

    #[test]
    fn health_flags() {
        let o = parse(&[
            "c",
            "run",
            "--health-cmd",
            "test -f /ok",
            "--health-interval",
            "1.5s",
            "--health-retries",
            "2",
            "--health-start-period=-1s",
            "img",
            "--health-cmd",
        ]);
        assert_eq!(o.cmd.as_deref(), Some("test -f /ok"));
        assert_eq!((o.interval, o.retries), (1_500_000_000, 2));
        // Negative values reach the runtime, which refuses them in docker's words.
        assert_eq!(
            o.to_config().unwrap_err().to_string(),
            "--health-start-period cannot be negative"
        );
        let o = parse(&["c", "run", "--no-healthcheck", "img"]);
        assert!(o.disabled && o.cmd.is_none());
        assert!(T::try_parse_from(["c", "run", "--health-timeout", "5", "img"]).is_err());
    }
}
