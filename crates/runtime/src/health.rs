//! Health checks as docker runs them: the configuration (flags over the image's
//! `Healthcheck`), the schedule of the probes and the state they leave, as pure functions. The
//! container's monitor runs the probes (`monitor/health.rs`); this module decides what their
//! results mean, so the rules are tested without a VM.
//!
//! What comes from where:
//! - [`HealthOptions::to_config`]: docker/cli's `--health-*` and `--no-healthcheck`
//!   (`cli/command/container/opts.go`, `parse`): any `--health-*` gives a config, whose test is
//!   `["CMD-SHELL", CMD]` with `--health-cmd`; `--no-healthcheck` is `["NONE"]` and conflicts
//!   with the others; negative values are refused.
//! - [`validate`]: moby's `validateHealthCheck` (`daemon/container.go`): durations of 0 (the
//!   default) or at least 1 ms, no negative retries.
//! - [`merge`]: moby's `merge` (`daemon/commit.go`): the container's config, each field left
//!   at zero taken from the image's.
//! - [`Schedule`]: moby's `daemon/health.go` defaults (interval 30 s, timeout 30 s, start
//!   period 0, start interval 5 s, 3 retries) and its `monitor`'s `getInterval`: the first
//!   probe one interval after the start; during the start period, while the status is still
//!   `starting`, every start interval, and never past the end of the start period.
//! - [`Health::record`]: moby's `handleProbeResult`: the last 5 results kept; exit 0 is
//!   healthy and resets the failing streak; a failure while `starting` and inside the start
//!   period counts for nothing, any other adds to the streak, and `retries` of them in a row
//!   make the container unhealthy.
//! - [`Health::at_start`] and [`Health::stopped`]: moby's `initHealthMonitor` (every start,
//!   restarts included: `starting`, streak 0, the log kept) and `CloseMonitorChannel` (the
//!   checks stop when the container stops or is paused: `unhealthy`).
//! - [`limit_output`]: moby's `limitedBuffer`: 4096 bytes, then `...`.
//!
//! An unhealthy container is not restarted or stopped: docker's restart policies look at
//! exits only, and so do ours.

use std::time::Duration;

use chrono::{DateTime, Utc};
use oci::spec::HealthConfig;
use serde::{Deserialize, Serialize};

/// docker's `defaultProbeInterval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// docker's `defaultProbeTimeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// docker's `defaultStartInterval`.
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
/// docker's `defaultProbeRetries`.
pub const DEFAULT_RETRIES: u32 = 3;
/// docker's `maxLogEntries`: the results a container keeps.
pub const MAX_LOG_ENTRIES: usize = 5;
/// docker's `maxOutputLen`: the bytes of a probe's output kept.
pub const MAX_OUTPUT_LEN: usize = 4096;
/// docker's `MinimumDuration` for every non-zero duration of a health check.
const MINIMUM_DURATION_NS: i64 = 1_000_000;

/// Errors of health-check flags and configurations, in docker's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HealthError {
    /// `--no-healthcheck` with a `--health-*` flag.
    #[error("--no-healthcheck conflicts with --health-* options")]
    Conflict,
    /// A negative `--health-*` value.
    #[error("--health-{0} cannot be negative")]
    Negative(&'static str),
    /// A non-zero duration under 1 ms.
    #[error("{0} in Healthcheck cannot be less than 1ms")]
    TooShort(&'static str),
    /// Negative retries in a configuration (from an API client).
    #[error("Retries in Healthcheck cannot be negative")]
    NegativeRetries,
}

/// The health-check flags of `run`/`create` (and the Engine API's fields, read the same way).
/// Durations are in nanoseconds, 0 meaning "not given"; they are signed so that a negative
/// flag reaches [`HealthOptions::to_config`]'s check, as in docker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthOptions {
    /// `--health-cmd`: run with `/bin/sh -c`.
    pub cmd: Option<String>,
    /// `--health-interval`.
    pub interval: i64,
    /// `--health-timeout`.
    pub timeout: i64,
    /// `--health-start-period`.
    pub start_period: i64,
    /// `--health-start-interval`.
    pub start_interval: i64,
    /// `--health-retries`.
    pub retries: i64,
    /// `--no-healthcheck`.
    pub disabled: bool,
}

impl HealthOptions {
    /// The container's own health config, as docker/cli makes it from the flags: None when
    /// no flag was given (the image's applies), `["NONE"]` for `--no-healthcheck`.
    pub fn to_config(&self) -> Result<Option<HealthConfig>, HealthError> {
        let cmd = self.cmd.as_deref().filter(|c| !c.is_empty());
        let any = cmd.is_some()
            || self.interval != 0
            || self.timeout != 0
            || self.start_period != 0
            || self.retries != 0
            || self.start_interval != 0;
        if self.disabled {
            if any {
                return Err(HealthError::Conflict);
            }
            return Ok(Some(HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        if !any {
            return Ok(None);
        }
        for (name, value) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("retries", self.retries),
            ("start-period", self.start_period),
            ("start-interval", self.start_interval),
        ] {
            if value < 0 {
                return Err(HealthError::Negative(name));
            }
        }
        let config = HealthConfig {
            test: cmd
                .map(|c| vec!["CMD-SHELL".into(), c.to_string()])
                .unwrap_or_default(),
            interval: self.interval,
            timeout: self.timeout,
            start_period: self.start_period,
            start_interval: self.start_interval,
            retries: self.retries,
        };
        validate(&config)?;
        Ok(Some(config))
    }
}

/// Parses a `--health-*` duration (Go's `time.ParseDuration`, as docker) into signed
/// nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let (negative, nanos) = dockerfile::parse_go_duration(text)?;
    let nanos = i64::try_from(nanos).map_err(|_| format!("invalid duration {text:?}"))?;
    Ok(if negative { -nanos } else { nanos })
}

/// moby's `validateHealthCheck`: what the daemon refuses in a container's own config.
pub fn validate(c: &HealthConfig) -> Result<(), HealthError> {
    for (name, value) in [
        ("Interval", c.interval),
        ("Timeout", c.timeout),
        ("StartPeriod", c.start_period),
        ("StartInterval", c.start_interval),
    ] {
        if value != 0 && value < MINIMUM_DURATION_NS {
            return Err(HealthError::TooShort(name));
        }
    }
    if c.retries < 0 {
        return Err(HealthError::NegativeRetries);
    }
    Ok(())
}

/// moby's `merge` of a container's health config over its image's: with no config of its
/// own the container takes the image's; otherwise each field it left empty or zero.
pub fn merge(own: Option<HealthConfig>, image: Option<&HealthConfig>) -> Option<HealthConfig> {
    let Some(image) = image else { return own };
    let Some(mut c) = own else {
        return Some(image.clone());
    };
    if c.test.is_empty() {
        c.test = image.test.clone();
    }
    for (mine, theirs) in [
        (&mut c.interval, image.interval),
        (&mut c.timeout, image.timeout),
        (&mut c.start_period, image.start_period),
        (&mut c.start_interval, image.start_interval),
        (&mut c.retries, image.retries),
    ] {
        if *mine == 0 {
            *mine = theirs;
        }
    }
    Some(c)
}

/// The argv of the probe a config runs, or None when it runs none (no test, `NONE`, or a
/// type docker does not know, which it logs and ignores): `CMD` runs its arguments,
/// `CMD-SHELL` its command with `/bin/sh -c` (moby's `getProbe`, `getShell`).
pub fn probe_command(c: &HealthConfig) -> Option<Vec<String>> {
    let (kind, rest) = c.test.split_first()?;
    match kind.as_str() {
        "CMD" if !rest.is_empty() => Some(rest.to_vec()),
        "CMD-SHELL" if !rest.is_empty() => {
            let mut argv = vec!["/bin/sh".to_string(), "-c".to_string()];
            argv.extend(rest.iter().cloned());
            Some(argv)
        }
        _ => None,
    }
}

/// When the probes run and when failures count, from a config with docker's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Between two probes (from the end of one to the start of the next) once started.
    pub interval: Duration,
    /// How long a probe may run before it is killed and counted as failed.
    pub timeout: Duration,
    /// From the container's start, a time in which failures do not count while `starting`.
    pub start_period: Duration,
    /// Between two probes during the start period while `starting`.
    pub start_interval: Duration,
    /// Failures in a row that make the container unhealthy.
    pub retries: u32,
}

fn nanos_or(ns: i64, default: Duration) -> Duration {
    match u64::try_from(ns) {
        Ok(n) if n > 0 => Duration::from_nanos(n),
        _ => default,
    }
}

impl Schedule {
    /// The schedule of `c`, each zero field at docker's default.
    pub fn of(c: &HealthConfig) -> Schedule {
        Schedule {
            interval: nanos_or(c.interval, DEFAULT_INTERVAL),
            timeout: nanos_or(c.timeout, DEFAULT_TIMEOUT),
            start_period: nanos_or(c.start_period, Duration::ZERO),
            start_interval: nanos_or(c.start_interval, DEFAULT_START_INTERVAL),
            retries: u32::try_from(c.retries)
                .ok()
                .filter(|r| *r > 0)
                .unwrap_or(DEFAULT_RETRIES),
        }
    }

    /// The wait before the next probe, `elapsed` after the container started, in `status`
    /// (moby's `getInterval`; also the wait before the first probe).
    pub fn next_delay(&self, elapsed: Duration, status: HealthStatus) -> Duration {
        if elapsed >= self.start_period {
            return self.interval;
        }
        let remaining = self.start_period - elapsed;
        if remaining < self.interval {
            return remaining;
        }
        if status == HealthStatus::Starting {
            self.start_interval
        } else {
            self.interval
        }
    }
}

/// docker's health statuses (`none` is what a container without a check has, in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Started, no probe passed yet.
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes failed in a row, or the checks stopped (the container stopped or
    /// was paused).
    Unhealthy,
}

impl HealthStatus {
    /// The word docker uses (`State.Health.Status`, `--filter health=`).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    /// How `ps` shows it after `Up …` (moby's `Health.String`): `health: starting`,
    /// `healthy`, `unhealthy`.
    pub fn ps_text(self) -> &'static str {
        match self {
            HealthStatus::Starting => "health: starting",
            other => other.as_str(),
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One probe's result, as docker's `HealthcheckResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    /// When it started.
    pub start: DateTime<Utc>,
    /// When it ended.
    pub end: DateTime<Utc>,
    /// Its exit code: 0 healthy, anything else a failure; -1 when it could not run or ran
    /// past its timeout.
    pub exit_code: i32,
    /// Its stdout and stderr together, at most [`MAX_OUTPUT_LEN`] bytes (then `...`).
    pub output: String,
}

/// A container's health: docker's `State.Health`, kept in the container's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// The status.
    pub status: HealthStatus,
    /// Failures in a row that counted.
    pub failing_streak: u32,
    /// The last [`MAX_LOG_ENTRIES`] results, oldest first.
    pub log: Vec<HealthResult>,
}

impl Health {
    /// The health of a container whose process just started with health config `config`:
    /// `starting` with the log of `previous` kept, or None when it runs no probe.
    pub fn at_start(config: Option<&HealthConfig>, previous: Option<Health>) -> Option<Health> {
        config.and_then(probe_command)?;
        Some(Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: previous.map(|h| h.log).unwrap_or_default(),
        })
    }

    /// The checks stopped (the container ended or was paused): docker then says unhealthy.
    pub fn stopped(&mut self) {
        self.status = HealthStatus::Unhealthy;
    }

    /// Adds a probe's result that started `since_start` after the container, and moves the
    /// status as docker's `handleProbeResult` does.
    pub fn record(&mut self, result: HealthResult, since_start: Duration, schedule: &Schedule) {
        let passed = result.exit_code == 0;
        if self.log.len() >= MAX_LOG_ENTRIES {
            self.log.drain(..=self.log.len() - MAX_LOG_ENTRIES);
        }
        self.log.push(result);
        if passed {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
            return;
        }
        let in_grace = self.status == HealthStatus::Starting && since_start < schedule.start_period;
        if !in_grace {
            self.failing_streak += 1;
            if self.failing_streak >= schedule.retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
    }
}

/// A probe's output as docker keeps it: the first [`MAX_OUTPUT_LEN`] bytes, `...` after them
/// when there was more; invalid UTF-8 replaced.
pub fn limit_output(bytes: &[u8]) -> String {
    let kept = &bytes[..bytes.len().min(MAX_OUTPUT_LEN)];
    let mut out = String::from_utf8_lossy(kept).into_owned();
    if bytes.len() > MAX_OUTPUT_LEN {
        out.push_str("...");
    }
    out
}

/// A duration as Go's `time.Duration.String` writes it (`1s`, `1.5s`, `500ms`, `1m30s`), for
/// docker's "Health check exceeded timeout (…)".
pub fn go_duration_string(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    // Sub-second values are shown in the largest unit that keeps an integer part.
    let fraction = |value: u128, unit: u128, suffix: &str| {
        let whole = value / unit;
        let rest = value % unit;
        let mut s = whole.to_string();
        if rest > 0 {
            let width = unit.ilog10() as usize;
            let digits = format!("{rest:0width$}");
            s.push('.');
            s.push_str(digits.trim_end_matches('0'));
        }
        s.push_str(suffix);
        s
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return fraction(ns, 1_000, "µs");
    }
    if ns < 1_000_000_000 {
        return fraction(ns, 1_000_000, "ms");
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let s = fraction(ns % 60_000_000_000, 1_000_000_000, "s");
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const S: i64 = 1_000 * MS;

    fn config(test: &[&str]) -> HealthConfig {
        HealthConfig {
            test: test.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn flags_become_docker_s_config() {
        assert_eq!(HealthOptions::default().to_config(), Ok(None));
        let o = HealthOptions {
            cmd: Some("test -f /ok".into()),
            interval: S,
            retries: 2,
            ..Default::default()
        };
        let c = o.to_config().unwrap().unwrap();
        assert_eq!(c.test, ["CMD-SHELL", "test -f /ok"]);
        assert_eq!((c.interval, c.retries, c.timeout), (S, 2, 0));
        // Durations alone keep the image's test.
        let o = HealthOptions {
            timeout: 2 * S,
            ..Default::default()
        };
        assert!(o.to_config().unwrap().unwrap().test.is_empty());
        let none = HealthOptions {
            disabled: true,
            ..Default::default()
        };
        assert_eq!(none.to_config().unwrap().unwrap().test, ["NONE"]);
        let conflict = HealthOptions {
            interval: S,
            ..none
        };
        assert_eq!(conflict.to_config(), Err(HealthError::Conflict));
        assert_eq!(
            conflict.to_config().unwrap_err().to_string(),
            "--no-healthcheck conflicts with --health-* options"
        );
        let negative = HealthOptions {
            start_period: -S,
            ..Default::default()
        };
        assert_eq!(
            negative.to_config().unwrap_err().to_string(),
            "--health-start-period cannot be negative"
        );
        let short = HealthOptions {
            interval: 10,
            ..Default::default()
        };
        assert_eq!(
            short.to_config().unwrap_err().to_string(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        assert_eq!(parse_duration("4.5s"), Ok(4_500 * MS));
        assert_eq!(parse_duration("-1s"), Ok(-S));
        assert_eq!(parse_duration("1m30s"), Ok(90 * S));
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn the_container_s_fields_win_and_the_image_fills_the_rest() {
        let image = HealthConfig {
            test: vec!["CMD".into(), "check".into()],
            interval: 10 * S,
            timeout: 3 * S,
            retries: 5,
            ..Default::default()
        };
        assert_eq!(merge(None, Some(&image)), Some(image.clone()));
        assert_eq!(merge(None, None), None);
        let own = HealthConfig {
            interval: S,
            ..Default::default()
        };
        let m = merge(Some(own.clone()), Some(&image)).unwrap();
        assert_eq!(m.test, image.test);
        assert_eq!((m.interval, m.timeout, m.retries), (S, 3 * S, 5));
        assert_eq!(merge(Some(own.clone()), None), Some(own));
        // --no-healthcheck turns the image's check off.
        let none = merge(Some(config(&["NONE"])), Some(&image)).unwrap();
        assert_eq!(probe_command(&none), None);
    }

    #[test]
    fn probes_run_cmd_directly_and_cmd_shell_with_sh() {
        assert_eq!(
            probe_command(&config(&["CMD", "curl", "-f", "x"])).unwrap(),
            ["curl", "-f", "x"]
        );
        assert_eq!(
            probe_command(&config(&["CMD-SHELL", "test -f /ok"])).unwrap(),
            ["/bin/sh", "-c", "test -f /ok"]
        );
        for t in [&[][..], &["NONE"], &["CMD"], &["WHAT", "x"]] {
            assert_eq!(probe_command(&config(t)), None, "{t:?}");
        }
    }

    #[test]
    fn the_schedule_is_docker_s() {
        let d = Schedule::of(&HealthConfig::default());
        assert_eq!(
            d,
            Schedule {
                interval: DEFAULT_INTERVAL,
                timeout: DEFAULT_TIMEOUT,
                start_period: Duration::ZERO,
                start_interval: DEFAULT_START_INTERVAL,
                retries: 3,
            }
        );
        // No start period: every interval.
        assert_eq!(
            d.next_delay(Duration::ZERO, HealthStatus::Starting),
            DEFAULT_INTERVAL
        );
        let s = Schedule {
            interval: Duration::from_secs(30),
            start_period: Duration::from_secs(60),
            start_interval: Duration::from_secs(2),
            ..d
        };
        let secs = Duration::from_secs;
        // Inside the start period, while starting: the start interval.
        assert_eq!(s.next_delay(secs(0), HealthStatus::Starting), secs(2));
        // Healthy already: the interval.
        assert_eq!(s.next_delay(secs(0), HealthStatus::Healthy), secs(30));
        // Less than an interval of it left: the probe runs when it ends.
        assert_eq!(s.next_delay(secs(45), HealthStatus::Healthy), secs(15));
        assert_eq!(s.next_delay(secs(45), HealthStatus::Starting), secs(15));
        // After it: the interval.
        assert_eq!(s.next_delay(secs(60), HealthStatus::Starting), secs(30));
    }

    fn result(code: i32) -> HealthResult {
        let now = Utc::now();
        HealthResult {
            start: now,
            end: now,
            exit_code: code,
            output: code.to_string(),
        }
    }

    #[test]
    fn results_move_the_status_as_docker_s() {
        let c = config(&["CMD", "x"]);
        let sched = Schedule {
            retries: 2,
            start_period: Duration::from_secs(10),
            ..Schedule::of(&c)
        };
        let mut h = Health::at_start(Some(&c), None).unwrap();
        assert_eq!(h.status, HealthStatus::Starting);
        // Failures inside the start period while starting do not count.
        h.record(result(1), Duration::from_secs(1), &sched);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        // After it they do; `retries` in a row make it unhealthy.
        h.record(result(1), Duration::from_secs(11), &sched);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
        h.record(result(-1), Duration::from_secs(12), &sched);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
        // One pass: healthy, streak over.
        h.record(result(0), Duration::from_secs(13), &sched);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        // Once healthy, a failure in the start period counts.
        h.record(result(1), Duration::from_secs(1), &sched);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 1));
        // The last five are kept, oldest first.
        h.record(result(7), Duration::from_secs(20), &sched);
        let codes: Vec<i32> = h.log.iter().map(|r| r.exit_code).collect();
        assert_eq!(codes, [1, -1, 0, 1, 7]);
        assert_eq!(h.status, HealthStatus::Unhealthy);
        // A new start (a restart) keeps the log, starts over; a stop makes it unhealthy.
        let mut again = Health::at_start(Some(&c), Some(h)).unwrap();
        assert_eq!(
            (again.status, again.failing_streak),
            (HealthStatus::Starting, 0)
        );
        assert_eq!(again.log.len(), 5);
        again.stopped();
        assert_eq!(again.status, HealthStatus::Unhealthy);
        assert_eq!(Health::at_start(Some(&config(&["NONE"])), None), None);
        assert_eq!(Health::at_start(None, None), None);
    }

    #[test]
    fn state_is_docker_shaped() {
        let h = Health {
            status: HealthStatus::Healthy,
            failing_streak: 0,
            log: vec![result(0)],
        };
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["Status"], "healthy");
        assert_eq!(v["FailingStreak"], 0);
        assert_eq!(v["Log"][0]["ExitCode"], 0);
        assert!(v["Log"][0]["Start"].is_string() && v["Log"][0]["End"].is_string());
        assert_eq!(serde_json::from_value::<Health>(v).unwrap(), h);
        assert_eq!(HealthStatus::Starting.ps_text(), "health: starting");
    }

    #[test]
    fn output_is_cut_at_4_kib_and_durations_read_as_go_s() {
        assert_eq!(limit_output(b"ok\n"), "ok\n");
        let long = vec![b'a'; MAX_OUTPUT_LEN + 10];
        let cut = limit_output(&long);
        assert_eq!(cut.len(), MAX_OUTPUT_LEN + 3);
        assert!(cut.ends_with("a..."));
        for (d, s) in [
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1), "1ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_micros(1500), "1.5ms"),
        ] {
            assert_eq!(go_duration_string(d), s);
        }
    }
}
