//! `GET /containers/{id}/stats` in docker's shape (`types.StatsJSON`), from the runtime's
//! samples of the container's cgroup in its VM (`Container::stats`, what `container stats`
//! reads), and `POST /containers/prune`.
//!
//! docker's clients compute CPU % as `Δtotal_usage / Δsystem_cpu_usage × online_cpus`, with
//! `system_cpu_usage` the host's CPU time over all CPUs. Ours is the guest's monotonic clock
//! times its CPUs, so the quotient is the container's CPU time over wall time, the runtime's
//! own `cpu_percent` (100% = one CPU busy). Counters are those of cgroup v2, as dockerd
//! reports them on a cgroup v2 host: no `percpu_usage`, `memory_stats.stats` with v2 keys
//! (`inactive_file` is what clients subtract from `usage`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use hyper::StatusCode;
use runtime::stats::{usage, Sample};
use runtime::Container;
use serde_json::{json, Value};

use crate::error::{line, ApiError};
use crate::http::{self, Answer, Req};
use crate::Engine;

/// Time between two samples of a stream, and between the two readings of a one-off answer
/// (docker's collector samples once a second too).
const INTERVAL: Duration = Duration::from_secs(1);

/// A sample and when the host took it.
type Reading = (Sample, DateTime<Utc>);

/// `GET /containers/{id}/stats?stream=&one-shot=`. A stream sends a document a second until
/// the client leaves or the container stops; `stream=false` answers one document whose
/// `precpu_stats` come from a reading a second earlier (so a CPU % can be computed), unless
/// `one-shot` asks for a single reading. A container that is not running has all zeros, as
/// with dockerd.
pub async fn stats(engine: &Engine, id: &str, req: &Req) -> Answer {
    let mut c = engine.runtime().container(id)?;
    // docker's default is a stream.
    let stream = req.q("stream").is_none() || req.flag("stream");
    if !stream {
        let first = read(&mut c).await?;
        let (pre, cur) = if req.flag("one-shot") || first.is_none() {
            (None, first)
        } else {
            tokio::time::sleep(INTERVAL).await;
            (first, read(&mut c).await?)
        };
        return Ok(http::json(
            StatusCode::OK,
            &document(&c, cur.as_ref(), pre.as_ref()),
        ));
    }
    let (response, tx) = http::channel(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let mut pre: Option<Reading> = None;
        loop {
            let cur = match read(&mut c).await {
                Ok(cur) => cur,
                Err(e) => {
                    tracing::debug!("stats of {}: {}", c.id(), e.message);
                    None
                }
            };
            let mut text = document(&c, cur.as_ref(), pre.as_ref()).to_string();
            text.push('\n');
            if tx.send(text.into()).await.is_err() {
                return;
            }
            // A container that has stopped gets its zeros once, then the stream ends.
            if cur.is_none() {
                return;
            }
            pre = cur;
            tokio::select! {
                () = tokio::time::sleep(INTERVAL) => {}
                () = tx.closed() => return,
            }
        }
    });
    Ok(response)
}

/// One reading, or `None` when the container is not running.
async fn read(c: &mut Container) -> Result<Option<Reading>, ApiError> {
    c.refresh().map_err(ApiError::from)?;
    if !c.status().is_up() || c.record().paused {
        return Ok(None);
    }
    match c.stats().await {
        Ok(s) => Ok(Some((s, Utc::now()))),
        // It stopped between the look and the reading.
        Err(_) if c.refresh().is_ok() && !c.status().is_up() => Ok(None),
        Err(e) => Err(ApiError::internal(line(&e))),
    }
}

/// Go's zero time, which dockerd's `read` is for a container that is not running.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(r: Option<&Reading>) -> String {
    r.map_or(GO_ZERO_TIME.to_string(), |(_, t)| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    })
}

fn cpu_stats(s: Option<&Sample>) -> Value {
    let Some(s) = s else {
        return json!({
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": 0,
            "online_cpus": 0,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        });
    };
    json!({
        "cpu_usage": {
            "total_usage": s.cpu_usage_usec.saturating_mul(1000),
            "usage_in_kernelmode": s.cpu_system_usec.saturating_mul(1000),
            "usage_in_usermode": s.cpu_user_usec.saturating_mul(1000),
        },
        "system_cpu_usage": s.monotonic_ns.saturating_mul(u64::from(s.online_cpus.max(1))),
        "online_cpus": s.online_cpus,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

/// docker's `StatsJSON` for the reading `cur`, with `pre` as the previous one.
fn document(c: &Container, cur: Option<&Reading>, pre: Option<&Reading>) -> Value {
    let s = cur.map(|(s, _)| s);
    let memory = match s {
        Some(s) => {
            let u = usage(None, s);
            json!({
                "usage": s.memory_current,
                "limit": u.memory_limit,
                "stats": {
                    "anon": s.memory_anon,
                    "file": s.memory_file,
                    "inactive_file": s.memory_inactive_file,
                    "oom_kill": s.oom_kills,
                },
            })
        }
        None => json!({}),
    };
    let networks = s.map(|s| {
        // The VM's interfaces, summed: a container has the one its network gives it.
        json!({"eth0": {
            "rx_bytes": s.net_rx_bytes, "rx_packets": s.net_rx_packets,
            "rx_errors": 0, "rx_dropped": 0,
            "tx_bytes": s.net_tx_bytes, "tx_packets": s.net_tx_packets,
            "tx_errors": 0, "tx_dropped": 0,
        }})
    });
    // Totals over the VM's disks: no single device to name, so major:minor are 0:0.
    let blkio = s.map_or(Value::Null, |s| {
        json!([
            {"major": 0, "minor": 0, "op": "read", "value": s.block_read_bytes},
            {"major": 0, "minor": 0, "op": "write", "value": s.block_write_bytes},
        ])
    });
    let pids = match s {
        Some(s) => match s.pids_limit {
            Some(limit) => json!({"current": s.pids, "limit": limit}),
            None => json!({"current": s.pids}),
        },
        None => json!({}),
    };
    let mut doc = json!({
        "read": time(cur),
        "preread": time(pre),
        "pids_stats": pids,
        "blkio_stats": {
            "io_service_bytes_recursive": blkio,
            "io_serviced_recursive": null,
            "io_queue_recursive": null,
            "io_service_time_recursive": null,
            "io_wait_time_recursive": null,
            "io_merged_recursive": null,
            "io_time_recursive": null,
            "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_stats(s),
        "precpu_stats": cpu_stats(pre.map(|(s, _)| s)),
        "memory_stats": memory,
        "name": format!("/{}", c.name()),
        "id": c.id(),
    });
    if let (Some(n), Some(map)) = (networks, doc.as_object_mut()) {
        map.insert("networks".into(), n);
    }
    doc
}

/// `POST /containers/prune?filters=`: every container that is not running (and passes
/// `until`, `label`, `label!`), as `container prune` deletes them.
pub async fn prune(engine: &Engine, req: &Req) -> Answer {
    let terms = match req.q("filters").filter(|f| !f.is_empty()) {
        Some(json) => runtime::filter::json_pairs(json)?
            .into_iter()
            .map(|(k, v)| match k.as_str() {
                // docker's JSON key for "label!=" terms is `label!`.
                "label!" => format!("label!={v}"),
                _ => format!("{k}={v}"),
            })
            .collect(),
        None => Vec::new(),
    };
    let report = engine.runtime().prune_containers(&terms).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"ContainersDeleted": report.deleted, "SpaceReclaimed": report.reclaimed}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_counters_give_dockers_percentage() {
        let at = |secs: u64, cpu_usec: u64| Sample {
            monotonic_ns: secs * 1_000_000_000,
            cpu_usage_usec: cpu_usec,
            online_cpus: 2,
            ..Default::default()
        };
        let (pre, cur) = (
            cpu_stats(Some(&at(10, 0))),
            cpu_stats(Some(&at(11, 500_000))),
        );
        // docker CLI's calculateCPUPercentUnix.
        let n = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_u64).unwrap() as f64;
        let cpu = n(&cur, "/cpu_usage/total_usage") - n(&pre, "/cpu_usage/total_usage");
        let system = n(&cur, "/system_cpu_usage") - n(&pre, "/system_cpu_usage");
        let percent = cpu / system * n(&cur, "/online_cpus") * 100.0;
        assert!((percent - 50.0).abs() < 1e-9, "{percent}");
        let cur = at(11, 500_000);
        assert!((runtime::stats::cpu_percent(&at(10, 0), &cur) - percent).abs() < 1e-9);
    }
}
