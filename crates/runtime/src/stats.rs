//! Resource usage of a running container, as `container stats` shows it.
//!
//! The monitor asks the guest agent for one [`Sample`] of the container's cgroup (cpu.stat,
//! memory.*, io.stat, pids.*) plus the VM's network counters; the CLI takes two samples and
//! turns them into [`Usage`] with docker's semantics: CPU % is the cgroup's CPU time over wall
//! time (100% = one full CPU, so a 2-vCPU container can show up to 200%), memory usage leaves
//! out inactive page cache, and the memory limit is `memory.max` or, without one, the guest's
//! memory.

use serde::{Deserialize, Serialize};

/// One reading of a container's counters. Counters are cumulative since the container started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Guest CLOCK_MONOTONIC at the reading, nanoseconds.
    pub monotonic_ns: u64,
    /// CPU time of the container's processes, microseconds.
    pub cpu_usage_usec: u64,
    /// Of that, time in user mode, microseconds.
    #[serde(default)]
    pub cpu_user_usec: u64,
    /// Of that, time in kernel mode, microseconds.
    #[serde(default)]
    pub cpu_system_usec: u64,
    /// CPUs of the VM.
    pub online_cpus: u32,
    /// Memory charged to the container, bytes (`memory.current`).
    pub memory_current: u64,
    /// Inactive (reclaimable) page cache, bytes.
    pub memory_inactive_file: u64,
    /// Anonymous memory, bytes (`memory.stat` anon).
    #[serde(default)]
    pub memory_anon: u64,
    /// Page cache, bytes (`memory.stat` file).
    #[serde(default)]
    pub memory_file: u64,
    /// `memory.max`, or `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Memory of the guest, bytes (the effective limit without `memory.max`).
    pub guest_memory_total: u64,
    /// Processes killed by the OOM killer so far.
    pub oom_kills: u64,
    /// Bytes received on the VM's network interfaces.
    pub net_rx_bytes: u64,
    /// Bytes sent on the VM's network interfaces.
    pub net_tx_bytes: u64,
    /// Packets received on the VM's network interfaces.
    #[serde(default)]
    pub net_rx_packets: u64,
    /// Packets sent on the VM's network interfaces.
    #[serde(default)]
    pub net_tx_packets: u64,
    /// Bytes read from block devices.
    pub block_read_bytes: u64,
    /// Bytes written to block devices.
    pub block_write_bytes: u64,
    /// Processes in the container.
    pub pids: u64,
    /// `pids.max`, or `None` when unlimited.
    pub pids_limit: Option<u64>,
}

impl Sample {
    /// The sample of an agent `Stats` reply.
    pub fn from_agent(s: &agent::Stats) -> Sample {
        let sum = |f: fn(&agent::NetDevStats) -> u64| {
            s.networks
                .iter()
                .fold(0u64, |total, n| total.saturating_add(f(n)))
        };
        Sample {
            monotonic_ns: s.monotonic_ns,
            cpu_usage_usec: s.cpu_usage_usec,
            cpu_user_usec: s.cpu_user_usec,
            cpu_system_usec: s.cpu_system_usec,
            online_cpus: s.online_cpus,
            memory_current: s.memory_current,
            memory_inactive_file: s.memory_inactive_file,
            memory_anon: s.memory_anon,
            memory_file: s.memory_file,
            memory_limit: s.memory_limit,
            guest_memory_total: s.guest_memory_total,
            oom_kills: s.oom_kills,
            net_rx_bytes: sum(|n| n.rx_bytes),
            net_tx_bytes: sum(|n| n.tx_bytes),
            net_rx_packets: sum(|n| n.rx_packets),
            net_tx_packets: sum(|n| n.tx_packets),
            block_read_bytes: s.io_read_bytes,
            block_write_bytes: s.io_write_bytes,
            pids: s.pids,
            pids_limit: s.pids_limit,
        }
    }
}

/// What `container stats` reports for one container at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    /// CPU use since the previous sample; 100.0 = one CPU busy all the time.
    pub cpu_percent: f64,
    /// Memory in use, bytes (charged memory minus inactive page cache, as docker shows it).
    pub memory_usage: u64,
    /// The memory limit: `memory.max`, else the guest's memory.
    pub memory_limit: u64,
    /// `memory_usage` as a percentage of `memory_limit`.
    pub memory_percent: f64,
    /// Network bytes received.
    pub net_rx_bytes: u64,
    /// Network bytes sent.
    pub net_tx_bytes: u64,
    /// Block bytes read.
    pub block_read_bytes: u64,
    /// Block bytes written.
    pub block_write_bytes: u64,
    /// Processes.
    pub pids: u64,
}

/// CPU percentage between two samples of the same container: CPU time used over guest time
/// passed, ×100. 0 when the clock did not advance (or went back: a different guest).
pub fn cpu_percent(prev: &Sample, cur: &Sample) -> f64 {
    let wall_ns = cur.monotonic_ns.saturating_sub(prev.monotonic_ns);
    if wall_ns == 0 || cur.cpu_usage_usec < prev.cpu_usage_usec {
        return 0.0;
    }
    let cpu_ns = (cur.cpu_usage_usec - prev.cpu_usage_usec) as f64 * 1000.0;
    cpu_ns / wall_ns as f64 * 100.0
}

/// Usage at `cur`, with CPU % measured since `prev` (`None`: 0%, as docker's first line).
pub fn usage(prev: Option<&Sample>, cur: &Sample) -> Usage {
    let memory_usage = cur.memory_current.saturating_sub(cur.memory_inactive_file);
    let memory_limit = match cur.memory_limit {
        Some(l) if l < cur.guest_memory_total || cur.guest_memory_total == 0 => l,
        _ => cur.guest_memory_total,
    };
    let memory_percent = if memory_limit == 0 {
        0.0
    } else {
        memory_usage as f64 / memory_limit as f64 * 100.0
    };
    Usage {
        cpu_percent: prev.map_or(0.0, |p| cpu_percent(p, cur)),
        memory_usage,
        memory_limit,
        memory_percent,
        net_rx_bytes: cur.net_rx_bytes,
        net_tx_bytes: cur.net_tx_bytes,
        block_read_bytes: cur.block_read_bytes,
        block_write_bytes: cur.block_write_bytes,
        pids: cur.pids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64, cpu_usec: u64) -> Sample {
        // Test times are small positive seconds.
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        let monotonic_ns = (secs * 1e9) as u64;
        Sample {
            monotonic_ns,
            cpu_usage_usec: cpu_usec,
            ..Default::default()
        }
    }

    #[test]
    fn one_busy_cpu_is_100_percent() {
        assert!((cpu_percent(&at(10.0, 5_000_000), &at(11.0, 6_000_000)) - 100.0).abs() < 1e-9);
        // Half a second of CPU over two seconds.
        assert!((cpu_percent(&at(10.0, 0), &at(12.0, 500_000)) - 25.0).abs() < 1e-9);
        // Two CPUs busy: 200%.
        assert!((cpu_percent(&at(0.0, 0), &at(0.5, 1_000_000)) - 200.0).abs() < 1e-9);
    }

    #[test]
    fn no_time_or_a_reset_counter_is_zero() {
        assert_eq!(cpu_percent(&at(1.0, 10), &at(1.0, 20)), 0.0);
        assert_eq!(cpu_percent(&at(2.0, 10), &at(1.0, 20)), 0.0);
        assert_eq!(cpu_percent(&at(1.0, 20), &at(2.0, 10)), 0.0);
    }

    #[test]
    fn memory_leaves_out_inactive_cache_and_uses_the_smaller_limit() {
        let s = Sample {
            memory_current: 100 << 20,
            memory_inactive_file: 20 << 20,
            memory_limit: Some(160 << 20),
            guest_memory_total: 400 << 20,
            ..Default::default()
        };
        let u = usage(None, &s);
        assert_eq!(u.memory_usage, 80 << 20);
        assert_eq!(u.memory_limit, 160 << 20);
        assert!((u.memory_percent - 50.0).abs() < 1e-9);
        assert_eq!(u.cpu_percent, 0.0);
        // Unlimited: the guest's memory is the limit.
        let s = Sample {
            memory_limit: None,
            ..s
        };
        assert_eq!(usage(None, &s).memory_limit, 400 << 20);
        // Nothing known: no division by zero.
        assert_eq!(usage(None, &Sample::default()).memory_percent, 0.0);
    }

    #[test]
    fn network_counters_sum_every_interface() {
        let stats = agent::Stats {
            networks: vec![
                agent::NetDevStats {
                    name: "eth0".into(),
                    rx_bytes: 100,
                    tx_bytes: 10,
                    ..Default::default()
                },
                agent::NetDevStats {
                    name: "eth1".into(),
                    rx_bytes: 5,
                    tx_bytes: 1,
                    ..Default::default()
                },
            ],
            io_write_bytes: 7,
            ..Default::default()
        };
        let s = Sample::from_agent(&stats);
        assert_eq!(
            (s.net_rx_bytes, s.net_tx_bytes, s.block_write_bytes),
            (105, 11, 7)
        );
    }
}
