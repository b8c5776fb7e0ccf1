//! `container prune`: deletes every stopped container (created or exited), as docker's
//! `POST /containers/prune` does, with its filters `until=` (created before a time) and
//! `label=`/`label!=`, and reports what was deleted and the disk space it held.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::{Container, ContainerError};
use crate::state::Status;
use crate::Runtime;

/// What `prune` deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Ids of the deleted containers, oldest first.
    pub deleted: Vec<String>,
    /// Bytes of disk they held (their copy-on-write disks, logs and records).
    pub reclaimed: u64,
}

/// `until=`: containers created before this time (docker's `until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneUntil(pub DateTime<Utc>);

impl PruneUntil {
    /// Parses docker's `until` value relative to `now`: a Go duration (`10m`, `1h30m`,
    /// `24h`: that long ago), Unix seconds (`1700000000`, fractions allowed), an RFC 3339
    /// time (`2024-01-02T15:04:05Z`) or a date (`2024-01-02`, midnight UTC).
    pub fn parse(value: &str, now: DateTime<Utc>) -> Result<PruneUntil, String> {
        let bad = || format!("invalid filter 'until={value}': not a timestamp or a duration");
        if let Some(d) = go_duration(value) {
            return Ok(PruneUntil(now - d));
        }
        if let Ok(secs) = value.parse::<f64>() {
            #[allow(clippy::cast_possible_truncation)]
            let t = DateTime::from_timestamp(secs.trunc() as i64, 0).ok_or_else(bad)?;
            return Ok(PruneUntil(t));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(value) {
            return Ok(PruneUntil(t.with_timezone(&Utc)));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            let t = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
            return Ok(PruneUntil(t));
        }
        Err(bad())
    }
}

/// A Go `time.ParseDuration` value made of `h`, `m`, `s` and `ms` parts (`1h30m`, `90s`).
fn go_duration(s: &str) -> Option<chrono::Duration> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let (unit, scale) = [("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0)]
            .into_iter()
            .find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        total += value * scale;
    }
    #[allow(clippy::cast_possible_truncation)]
    Some(chrono::Duration::milliseconds((total * 1000.0) as i64))
}

/// The filters `prune` takes.
#[derive(Debug, Clone, Default)]
struct PruneFilters {
    until: Option<PruneUntil>,
    /// `label=` terms (key, optional value), all of which must hold.
    with: Vec<(String, Option<String>)>,
    /// `label!=` terms, none of which may hold.
    without: Vec<(String, Option<String>)>,
}

impl PruneFilters {
    fn parse(filters: &[String], now: DateTime<Utc>) -> Result<PruneFilters, String> {
        let mut f = PruneFilters::default();
        let term = |v: &str| match v.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (v.to_string(), None),
        };
        for raw in filters {
            if let Some(v) = raw.strip_prefix("label!=") {
                f.without.push(term(v));
            } else if let Some(v) = raw.strip_prefix("label=") {
                f.with.push(term(v));
            } else if let Some(v) = raw.strip_prefix("until=") {
                f.until = Some(PruneUntil::parse(v, now)?);
            } else {
                return Err(format!(
                    "invalid filter '{raw}': containers are pruned by until=, label= or label!="
                ));
            }
        }
        Ok(f)
    }

    fn keeps(&self, created: DateTime<Utc>, labels: &BTreeMap<String, String>) -> bool {
        let has = |(k, v): &(String, Option<String>)| match v {
            Some(v) => labels.get(k) == Some(v),
            None => labels.contains_key(k),
        };
        self.until.is_some_and(|u| created >= u.0)
            || !self.with.iter().all(has)
            || self.without.iter().any(has)
    }
}

impl Runtime {
    /// Deletes every container that is not running and passes `filters` (`until=`,
    /// `label=`, `label!=`, as `docker container prune --filter`).
    pub async fn prune_containers(
        &self,
        filters: &[String],
    ) -> Result<PruneReport, ContainerError> {
        let f = PruneFilters::parse(filters, Utc::now()).map_err(ContainerError::PruneFilter)?;
        let mut report = PruneReport::default();
        for c in self.containers()? {
            let r = c.record();
            let stopped = r.status != Status::Running && r.monitor_pid.is_none();
            if !stopped || f.keeps(r.created, &r.config.labels) {
                continue;
            }
            let size = disk_use(&self.store().dir_of(c.id()));
            let id = c.id().to_string();
            // docker's `container prune` leaves anonymous volumes to `volume prune`.
            match Container::delete_with(c, false, false).await {
                Ok(()) => {
                    report.deleted.push(id);
                    report.reclaimed += size;
                }
                // Started or deleted by someone else meanwhile: not ours to prune any more.
                Err(e) => tracing::debug!("prune {id}: {}", crate::error_line(&e)),
            }
        }
        Ok(report)
    }
}

/// Bytes allocated on disk under `dir` (sparse disks count what they hold, not their size).
fn disk_use(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some(if m.is_dir() {
                disk_use(&e.path())
            } else {
                m.blocks() * 512
            })
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_durations_times_and_dates() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| PruneUntil::parse(s, now).unwrap().0.to_rfc3339();
        assert_eq!(at("1h30m"), "2024-05-01T10:30:00+00:00");
        assert_eq!(at("90s"), "2024-05-01T11:58:30+00:00");
        assert_eq!(at("1700000000"), "2023-11-14T22:13:20+00:00");
        assert_eq!(at("2024-01-02T03:04:05Z"), "2024-01-02T03:04:05+00:00");
        assert_eq!(at("2024-01-02"), "2024-01-02T00:00:00+00:00");
        assert!(PruneUntil::parse("soon", now).is_err());
        assert!(PruneUntil::parse("5x", now).is_err());
    }

    #[test]
    fn filters_keep_what_they_do_not_select() {
        let now = Utc::now();
        let labels: BTreeMap<String, String> = [("tier".to_string(), "web".to_string())].into();
        let f = |v: &[&str]| {
            PruneFilters::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), now).unwrap()
        };
        let old = now - chrono::Duration::hours(2);
        assert!(!f(&[]).keeps(now, &labels));
        assert!(!f(&["label=tier"]).keeps(now, &labels));
        assert!(!f(&["label=tier=web"]).keeps(now, &labels));
        assert!(f(&["label=tier=db"]).keeps(now, &labels));
        assert!(f(&["label!=tier"]).keeps(now, &labels));
        assert!(!f(&["label!=team"]).keeps(now, &labels));
        assert!(f(&["until=1h"]).keeps(now, &labels));
        assert!(!f(&["until=1h"]).keeps(old, &labels));
        assert!(PruneFilters::parse(&["status=exited".to_string()], now).is_err());
    }
}
