//! `--ulimit NAME=SOFT[:HARD]`: resource limits (setrlimit) of a container's processes, parsed
//! as docker parses them (go-units `ParseUlimit`): docker's names (`nofile`, `nproc`, `core`,
//! …), a hard limit that defaults to the soft one, `-1` or `unlimited` for no limit, and a soft
//! limit no higher than the hard one.
//!
//! The guest applies them before exec to the container's first process and to every `exec`,
//! as runc applies the spec's `process.rlimits` to both.

use serde::{Deserialize, Serialize};

/// docker's names and the rlimits they stand for (`RLIMIT_AS` has no docker name).
const NAMES: [(&str, &str); 15] = [
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// A `--ulimit` value that does not parse; the messages are go-units'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UlimitError {
    /// No `=`.
    #[error("invalid ulimit argument: {0}")]
    Argument(String),
    /// A name docker does not know.
    #[error("invalid ulimit type: {0}")]
    Type(String),
    /// A limit that is not a number (or `unlimited`).
    #[error("invalid ulimit value {0:?} (use a number, -1 or unlimited)")]
    Value(String),
    /// More than `soft:hard`.
    #[error("too many limit value arguments - {0}, can only have up to two, `soft[:hard]`")]
    TooMany(String),
    /// soft > hard.
    #[error("ulimit soft limit must be less than or equal to hard limit: {0} > {1}")]
    SoftAboveHard(i64, i64),
}

/// One limit as docker keeps it (`HostConfig.Ulimits[]`): -1 is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ulimit {
    /// docker's name (`nofile`).
    pub name: String,
    /// Soft limit; -1: unlimited.
    pub soft: i64,
    /// Hard limit; -1: unlimited.
    pub hard: i64,
}

impl Ulimit {
    /// Parses `NAME=SOFT[:HARD]`.
    pub fn parse(s: &str) -> Result<Ulimit, UlimitError> {
        let (name, values) = s
            .split_once('=')
            .ok_or_else(|| UlimitError::Argument(s.to_string()))?;
        let limit = Ulimit::new(name, 0, 0)?;
        let value = |v: &str| match v {
            "unlimited" => Ok(-1),
            _ => v
                .parse::<i64>()
                .ok()
                .filter(|&n| n >= -1)
                .ok_or_else(|| UlimitError::Value(v.to_string())),
        };
        let (soft, hard) = match values.split(':').collect::<Vec<_>>()[..] {
            [soft] => (value(soft)?, value(soft)?),
            [soft, hard] => (value(soft)?, value(hard)?),
            _ => return Err(UlimitError::TooMany(values.to_string())),
        };
        Ulimit::new(&limit.name, soft, hard)
    }

    /// A limit by docker's name, checked as [`Ulimit::parse`] checks it (the Engine API's
    /// `HostConfig.Ulimits` entries).
    pub fn new(name: &str, soft: i64, hard: i64) -> Result<Ulimit, UlimitError> {
        if !NAMES.iter().any(|(n, _)| *n == name) {
            return Err(UlimitError::Type(name.to_string()));
        }
        if soft < -1 || hard < -1 {
            return Err(UlimitError::Value(format!("{soft}:{hard}")));
        }
        // -1 is the largest limit there is; docker compares the numbers as they are only
        // when the hard one is finite.
        if hard != -1 && (soft == -1 || soft > hard) {
            return Err(UlimitError::SoftAboveHard(soft, hard));
        }
        Ok(Ulimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }

    /// An OCI runtime spec's `process.rlimits` entry (`RLIMIT_NOFILE`, setrlimit values,
    /// `u64::MAX` for infinity), checked as [`Ulimit::new`] checks docker's.
    pub fn from_oci(kind: &str, soft: u64, hard: u64) -> Result<Ulimit, UlimitError> {
        let name = NAMES
            .iter()
            .find(|(_, k)| *k == kind)
            .map(|(n, _)| *n)
            .ok_or_else(|| UlimitError::Type(kind.to_string()))?;
        let value = |v: u64| i64::try_from(v).unwrap_or(-1);
        Ulimit::new(name, value(soft), value(hard))
    }

    /// The guest's form: the OCI name and setrlimit values (-1 is `RLIM_INFINITY`).
    pub fn to_rlimit(&self) -> agent::Rlimit {
        let kind = NAMES
            .iter()
            .find(|(n, _)| *n == self.name)
            .map_or("", |(_, k)| k);
        let value = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
        agent::Rlimit {
            kind: kind.to_string(),
            soft: value(self.soft),
            hard: value(self.hard),
        }
    }
}

/// `limits` with a later limit of a name replacing an earlier one (docker keeps one per name,
/// the last given), in the order of first mention.
pub fn dedup(limits: Vec<Ulimit>) -> Vec<Ulimit> {
    let mut out: Vec<Ulimit> = Vec::new();
    for l in limits {
        match out.iter_mut().find(|o| o.name == l.name) {
            Some(slot) => *slot = l,
            None => out.push(l),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, i64, i64) {
        let u = Ulimit::parse(s).unwrap();
        (u.name, u.soft, u.hard)
    }

    #[test]
    fn parses_docker_forms() {
        assert_eq!(ok("nofile=1024"), ("nofile".into(), 1024, 1024));
        assert_eq!(ok("nofile=512:1024"), ("nofile".into(), 512, 1024));
        assert_eq!(ok("core=-1"), ("core".into(), -1, -1));
        assert_eq!(ok("memlock=unlimited"), ("memlock".into(), -1, -1));
        assert_eq!(ok("stack=8192:unlimited"), ("stack".into(), 8192, -1));
        assert_eq!(ok("nproc=0:0"), ("nproc".into(), 0, 0));
    }

    #[test]
    fn refuses_what_docker_refuses() {
        let err = |s: &str| Ulimit::parse(s).unwrap_err().to_string();
        assert_eq!(err("nofile"), "invalid ulimit argument: nofile");
        assert_eq!(err("as=1"), "invalid ulimit type: as");
        assert_eq!(err("NOFILE=1"), "invalid ulimit type: NOFILE");
        assert!(err("nofile=x").contains("invalid ulimit value \"x\""));
        assert!(err("nofile=-2").contains("invalid ulimit value"));
        assert!(err("nofile=1:2:3").starts_with("too many limit value arguments - 1:2:3"));
        assert_eq!(
            err("nofile=2048:1024"),
            "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"
        );
        assert!(Ulimit::parse("nofile=unlimited:1024").is_err());
    }

    #[test]
    fn maps_to_oci_rlimits_with_infinity() {
        let r = Ulimit::parse("nofile=100:unlimited").unwrap().to_rlimit();
        assert_eq!(
            (r.kind.as_str(), r.soft, r.hard),
            ("RLIMIT_NOFILE", 100, u64::MAX)
        );
    }

    #[test]
    fn the_last_limit_of_a_name_wins() {
        let v: Vec<_> = ["nofile=1", "core=0", "nofile=2:3"]
            .iter()
            .map(|s| Ulimit::parse(s).unwrap())
            .collect();
        let d = dedup(v);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].name.as_str(), d[0].soft, d[0].hard), ("nofile", 2, 3));
    }
}
