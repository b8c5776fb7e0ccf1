//! Restart policies (`--restart no|always|unless-stopped|on-failure[:N]`): their syntax, and
//! the decisions docker's daemon makes with them, as pure functions the monitor and
//! `start --all-restartable` call.
//!
//! Everything here follows moby (docker 20.10, the Engine API v1.41 this project models):
//!
//! - Syntax and errors: docker/cli `opts.ParseRestartPolicy` (`NAME[:COUNT]`, the count an
//!   integer) and the daemon's `validateRestartPolicy` (`daemon/container.go`): a count only
//!   with `on-failure`, never negative, no other names.
//! - Whether to restart: `restartmanager.ShouldRestart` (`restartmanager/restartmanager.go`):
//!   `always` always; `unless-stopped` unless a user stopped or killed the container;
//!   `on-failure` on a non-zero exit while fewer than N restarts were made (no N: no limit).
//! - The delay before each restart, the same file: 100 ms, doubled at every restart up to one
//!   minute, and back to 100 ms after a run of at least 10 s.
//! - What comes back when nothing ran it for a while (the daemon's start after a host reboot,
//!   `daemon.restore` in `daemon/daemon.go`): every container started before whose policy says
//!   so for its recorded exit, with the restart count it had ([`restartable`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::ContainerRecord;

/// The delay before the first restart (moby `restartmanager.defaultTimeout`).
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay between two restarts (moby `maxRestartTimeout`).
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long starts the delays over from [`FIRST_DELAY`] (moby: "if the
/// container ran for more than 10s, regardless of status and policy reset the timeout").
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// When a container whose process ended (or whose VM died) is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PolicyDoc", into = "PolicyDoc")]
pub enum RestartPolicy {
    /// Never (`no`, the default).
    #[default]
    No,
    /// Always, whatever the exit; a user's `stop`/`kill` ends it until the next start.
    Always,
    /// As `always`, and not brought back by `start --all-restartable` once a user stopped it.
    UnlessStopped,
    /// On a non-zero exit only, at most `max_retries` times (0: without limit).
    OnFailure {
        /// docker's `MaximumRetryCount`; 0 means no limit.
        max_retries: u32,
    },
}

/// Errors of `--restart`, worded as docker's CLI and daemon word them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartPolicyError {
    /// `:N` with nothing before the colon.
    #[error("invalid restart policy format: no policy provided before colon")]
    NoName,
    /// The count after the colon is not an integer.
    #[error("invalid restart policy format: maximum retry count must be an integer")]
    CountNotInteger,
    /// A count with a policy other than `on-failure`.
    #[error("maximum retry count cannot be used with restart policy '{0}'")]
    CountNotAllowed(String),
    /// A negative count.
    #[error("maximum retry count cannot be negative")]
    NegativeCount,
    /// An unknown policy name.
    #[error("invalid restart policy '{0}'")]
    Unknown(String),
    /// `--restart` other than `no` on an `--rm` container (docker/cli `parse`; the daemon
    /// refuses it too).
    #[error("Conflicting options: --restart and --rm")]
    WithAutoRemove,
    /// `update --restart` of an `--rm` container (moby `container.UpdateContainer`).
    #[error("Restart policy cannot be updated because AutoRemove is enabled for the container")]
    UpdateAutoRemove,
}

impl FromStr for RestartPolicy {
    type Err = RestartPolicyError;

    /// docker's `NAME[:COUNT]`; the empty string is no policy.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, count) = match s.split_once(':') {
            Some(("", _)) => return Err(RestartPolicyError::NoName),
            Some((name, count)) => (name, count),
            None => (s, ""),
        };
        let count: i64 = if count.is_empty() {
            0
        } else {
            count
                .parse()
                .map_err(|_| RestartPolicyError::CountNotInteger)?
        };
        RestartPolicy::from_parts(name, count)
    }
}

impl RestartPolicy {
    /// The policy of docker's `{Name, MaximumRetryCount}`, checked as its daemon checks it.
    pub fn from_parts(name: &str, count: i64) -> Result<RestartPolicy, RestartPolicyError> {
        match name {
            "" | "no" | "always" | "unless-stopped" if count != 0 => {
                Err(RestartPolicyError::CountNotAllowed(name.to_string()))
            }
            // docker's empty name is its default: no policy.
            "" | "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => match u32::try_from(count) {
                Ok(max_retries) => Ok(RestartPolicy::OnFailure { max_retries }),
                Err(_) if count < 0 => Err(RestartPolicyError::NegativeCount),
                Err(_) => Err(RestartPolicyError::CountNotInteger),
            },
            other => Err(RestartPolicyError::Unknown(other.to_string())),
        }
    }

    /// docker's `RestartPolicy.Name`.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure { .. } => "on-failure",
        }
    }

    /// docker's `RestartPolicy.MaximumRetryCount`.
    pub fn maximum_retry_count(self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max_retries } => max_retries,
            _ => 0,
        }
    }

    /// Whether this is no policy at all.
    pub fn is_no(&self) -> bool {
        *self == RestartPolicy::No
    }

    /// Checks the policy against `--rm` (docker refuses the two together).
    pub fn check_auto_remove(self, auto_remove: bool) -> Result<(), RestartPolicyError> {
        if auto_remove && !self.is_no() {
            return Err(RestartPolicyError::WithAutoRemove);
        }
        Ok(())
    }

    /// moby `ShouldRestart`'s decision for a run that ended with `exit_code`, after
    /// `restart_count` restarts since the container was last started by a user;
    /// `stopped_by_user` is docker's `HasBeenManuallyStopped` (a `stop` or `kill`).
    pub fn should_restart(self, exit_code: i32, stopped_by_user: bool, restart_count: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !stopped_by_user,
            RestartPolicy::OnFailure { max_retries } => {
                (max_retries == 0 || restart_count < max_retries) && exit_code != 0
            }
        }
    }
}

impl fmt::Display for RestartPolicy {
    /// As `--restart` takes it: `on-failure:3`, `always`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::OnFailure { max_retries } if *max_retries > 0 => {
                write!(f, "on-failure:{max_retries}")
            }
            other => f.write_str(other.name()),
        }
    }
}

/// The policy as state.json and docker's `HostConfig.RestartPolicy` hold it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyDoc {
    name: String,
    #[serde(default)]
    maximum_retry_count: i64,
}

impl TryFrom<PolicyDoc> for RestartPolicy {
    type Error = RestartPolicyError;

    fn try_from(d: PolicyDoc) -> Result<Self, Self::Error> {
        RestartPolicy::from_parts(&d.name, d.maximum_retry_count)
    }
}

impl From<RestartPolicy> for PolicyDoc {
    fn from(p: RestartPolicy) -> Self {
        PolicyDoc {
            name: p.name().to_string(),
            maximum_retry_count: i64::from(p.maximum_retry_count()),
        }
    }
}

/// The delays between restarts of one monitor's container, as moby's restart manager keeps
/// them: it lives as long as the container was last started by a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    last: Duration,
}

impl Backoff {
    /// The delay before the restart that follows a run of `ran_for`: [`FIRST_DELAY`] at first
    /// and after a run of at least [`RESET_AFTER`], else twice the last one, at most
    /// [`MAX_DELAY`].
    pub fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= RESET_AFTER {
            self.last = Duration::ZERO;
        }
        self.last = if self.last.is_zero() {
            FIRST_DELAY
        } else {
            (self.last * 2).min(MAX_DELAY)
        };
        self.last
    }
}

/// Whether `start --all-restartable` starts this container: one that was started before and
/// is not up, whose policy restarts its recorded exit. As moby's `restore`, this takes a
/// manual stop into account only for `unless-stopped` (`always` comes back after a stop, and
/// so does `on-failure` after a stop that ended it with a non-zero code), and counts the
/// restarts made before ([`RestartPolicy::should_restart`]).
pub fn restartable(record: &ContainerRecord) -> bool {
    record.started.is_some()
        && !record.status.is_up()
        && record.config.restart.should_restart(
            record.exit_code.unwrap_or(0),
            record.stopped_by_user,
            record.restart_count,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax_and_errors() {
        let ok = |s: &str| s.parse::<RestartPolicy>().unwrap();
        let err = |s: &str| s.parse::<RestartPolicy>().unwrap_err().to_string();
        assert_eq!(ok("no"), RestartPolicy::No);
        assert_eq!(ok(""), RestartPolicy::No);
        assert_eq!(ok("always"), RestartPolicy::Always);
        assert_eq!(ok("always:0"), RestartPolicy::Always);
        assert_eq!(ok("unless-stopped"), RestartPolicy::UnlessStopped);
        assert_eq!(
            ok("on-failure"),
            RestartPolicy::OnFailure { max_retries: 0 }
        );
        assert_eq!(
            ok("on-failure:3"),
            RestartPolicy::OnFailure { max_retries: 3 }
        );
        assert_eq!(
            err("always:3"),
            "maximum retry count cannot be used with restart policy 'always'"
        );
        assert_eq!(
            err("no:1"),
            "maximum retry count cannot be used with restart policy 'no'"
        );
        assert_eq!(
            err("on-failure:-1"),
            "maximum retry count cannot be negative"
        );
        assert_eq!(
            err("on-failure:x"),
            "invalid restart policy format: maximum retry count must be an integer"
        );
        assert_eq!(
            err("always:2:3"),
            "invalid restart policy format: maximum retry count must be an integer"
        );
        assert_eq!(
            err(":3"),
            "invalid restart policy format: no policy provided before colon"
        );
        assert_eq!(err("sometimes"), "invalid restart policy 'sometimes'");
        assert_eq!(err("Always"), "invalid restart policy 'Always'");
        for s in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:7",
        ] {
            assert_eq!(ok(s).to_string(), s);
        }
    }

    #[test]
    fn stored_as_docker_shows_it_and_old_records_have_none() {
        let p = RestartPolicy::OnFailure { max_retries: 2 };
        let v = serde_json::to_value(p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2})
        );
        assert_eq!(serde_json::from_value::<RestartPolicy>(v).unwrap(), p);
        let bad = serde_json::json!({"Name": "always", "MaximumRetryCount": 1});
        assert!(serde_json::from_value::<RestartPolicy>(bad).is_err());
        assert_eq!(
            serde_json::from_value::<RestartPolicy>(serde_json::json!({"Name": ""})).unwrap(),
            RestartPolicy::No
        );
    }

    #[test]
    fn decisions_follow_moby_should_restart() {
        use RestartPolicy::*;
        assert!(!No.should_restart(1, false, 0));
        assert!(Always.should_restart(0, false, 100));
        assert!(Always.should_restart(0, true, 0));
        assert!(UnlessStopped.should_restart(0, false, 5));
        assert!(!UnlessStopped.should_restart(1, true, 0));
        let two = OnFailure { max_retries: 2 };
        assert!(
            !two.should_restart(0, false, 0),
            "a clean exit is no failure"
        );
        assert!(two.should_restart(3, false, 0));
        assert!(two.should_restart(3, false, 1));
        assert!(!two.should_restart(3, false, 2), "two restarts made");
        assert!(
            two.should_restart(137, true, 0),
            "moby ignores manual stops here"
        );
        let unlimited = OnFailure { max_retries: 0 };
        assert!(unlimited.should_restart(1, false, 1_000));
    }

    #[test]
    fn delays_double_to_a_minute_and_start_over_after_ten_seconds() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(50);
        let got: Vec<u64> = (0..13).map(|_| b.next(short).as_millis() as u64).collect();
        assert_eq!(
            got,
            [
                100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200, 60_000, 60_000,
                60_000
            ]
        );
        assert_eq!(b.next(Duration::from_secs(10)), FIRST_DELAY);
        assert_eq!(b.next(Duration::from_secs(9)), Duration::from_millis(200));
        assert_eq!(b.next(Duration::from_secs(30)), FIRST_DELAY);
    }

    #[test]
    fn auto_remove_conflicts_with_any_policy_but_no() {
        assert!(RestartPolicy::No.check_auto_remove(true).is_ok());
        assert!(RestartPolicy::Always.check_auto_remove(false).is_ok());
        assert_eq!(
            RestartPolicy::Always
                .check_auto_remove(true)
                .unwrap_err()
                .to_string(),
            "Conflicting options: --restart and --rm"
        );
    }
}
