//! Guest-wide calls: configure (hostname, DNS, hosts, sysctl, clock), guest mounts, statistics
//! from cgroup v2 and /proc, and shutdown (sync, unmount, power off).

use std::path::Path;

use agent::{Configure, NetDevStats, Resources, Stats};

use crate::error::GuestError;
use crate::process::Processes;
use crate::sys::{self, cvt};

/// The file of sysctl `key` (`net.core.somaxconn`) under the procfs at `proc`; a key that
/// would leave `sys` is refused.
pub fn sysctl_path(proc: &Path, key: &str) -> Result<std::path::PathBuf, GuestError> {
    if key.is_empty() || key.split(['.', '/']).any(|p| p.is_empty() || p == "..") {
        return Err(GuestError::InvalidArgument(format!(
            "invalid sysctl name {key:?}"
        )));
    }
    Ok(proc.join("sys").join(key.replace('.', "/")))
}

/// Applies a `Configure` request.
pub fn configure(procs: &Processes, c: &Configure) -> Result<(), GuestError> {
    if let Some(t) = c.time_unix_ns {
        set_clock(t)?;
    }
    for (key, value) in &c.sysctl {
        let path = sysctl_path(Path::new("/proc"), key)?;
        sys::write_file(&path, value.as_bytes())
            .map_err(|e| GuestError::sys(format!("set sysctl {key}={value}"), e))?;
    }
    let mut config = procs.config.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = &c.hostname {
        if h.is_empty() || h.len() > 64 {
            return Err(GuestError::InvalidArgument(format!(
                "invalid hostname {h:?}"
            )));
        }
        // SAFETY: pointer and length of a valid byte slice.
        cvt(unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) })
            .map_err(|e| GuestError::sys(format!("sethostname {h}"), e))?;
        config.hostname = h.clone();
    }
    if let Some(dns) = &c.dns {
        let mut text = String::new();
        for n in &dns.nameservers {
            if n.parse::<std::net::IpAddr>().is_err() {
                return Err(GuestError::InvalidArgument(format!(
                    "invalid nameserver address {n:?}"
                )));
            }
            text.push_str(&format!("nameserver {n}\n"));
        }
        if !dns.search.is_empty() {
            text.push_str(&format!("search {}\n", dns.search.join(" ")));
        }
        if !dns.options.is_empty() {
            text.push_str(&format!("options {}\n", dns.options.join(" ")));
        }
        config.resolv_conf = text;
        // `--no-dns`: the image's resolv.conf stays.
        config.keep_resolv_conf = dns.keep_image;
    }
    if !c.hosts.is_empty() {
        let mut text = String::new();
        for h in &c.hosts {
            if h.ip.parse::<std::net::IpAddr>().is_err() || h.names.is_empty() {
                return Err(GuestError::InvalidArgument(format!(
                    "invalid hosts entry {} {:?}",
                    h.ip, h.names
                )));
            }
            text.push_str(&format!("{}\t{}\n", h.ip, h.names.join(" ")));
        }
        config.hosts = text;
    }
    Ok(())
}

/// Sets the wall clock (`Configure.time_unix_ns`, `Resume.time_unix_ns`).
pub fn set_clock(unix_ns: u64) -> Result<(), GuestError> {
    sys::set_realtime(unix_ns).map_err(|e| GuestError::sys("set the clock", e))
}

/// Unmounts a guest path.
pub fn umount(target: &str, lazy: bool) -> Result<(), GuestError> {
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    sys::umount(Path::new(target), flags)
        .map_err(|e| GuestError::sys(format!("umount {target}"), e))
}

/// The OOM kills the cgroup `cg` has counted (`memory.events` `oom_kill`); `None` when the
/// file cannot be read (no memory controller).
pub fn oom_kills(cg: &Path) -> Option<u64> {
    let events = std::fs::read_to_string(cg.join("memory.events")).ok()?;
    Some(
        parse_kv(&events)
            .into_iter()
            .find(|(k, _)| k == "oom_kill")
            .map_or(0, |(_, v)| v),
    )
}

/// `key value` lines of a file; an unreadable file has none.
fn read_kv(path: &Path) -> Vec<(String, u64)> {
    parse_kv(&std::fs::read_to_string(path).unwrap_or_default())
}

fn parse_kv(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Parses `/proc/net/dev` text.
pub fn parse_net_dev(text: &str) -> Vec<NetDevStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if f.len() < 10 || name.trim() == "lo" {
                return None;
            }
            Some(NetDevStats {
                name: name.trim().to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                tx_bytes: f[8],
                tx_packets: f[9],
            })
        })
        .collect()
}

/// Sums `rbytes=` and `wbytes=` over every device line of `io.stat`.
pub fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for f in text.split_whitespace() {
        let field = |prefix: &str| f.strip_prefix(prefix).and_then(|v| v.parse::<u64>().ok());
        if let Some(v) = field("rbytes=") {
            read = read.saturating_add(v);
        }
        if let Some(v) = field("wbytes=") {
            write = write.saturating_add(v);
        }
    }
    (read, write)
}

/// Statistics of a container's cgroup (or of the whole guest).
pub fn stats(procs: &Processes, container: Option<&str>) -> Result<Stats, GuestError> {
    let cg = match container {
        Some(id) => procs.container_cgroup(id)?,
        None => procs.cgroup_root.clone(),
    };
    let mut s = Stats {
        online_cpus: sys::online_cpus(),
        ..Default::default()
    };
    if let Some(cg) = &cg {
        // CPU time and its timestamp first and back to back: the host divides usage deltas by
        // timestamp deltas, and the reads below can be preempted by the container's own
        // processes (one vCPU, a busy container).
        let before = sys::monotonic_ns();
        for (k, v) in read_kv(&cg.join("cpu.stat")) {
            match k.as_str() {
                "usage_usec" => s.cpu_usage_usec = v,
                "user_usec" => s.cpu_user_usec = v,
                "system_usec" => s.cpu_system_usec = v,
                _ => {}
            }
        }
        let after = sys::monotonic_ns();
        s.monotonic_ns = before + (after.saturating_sub(before)) / 2;
    } else {
        s.monotonic_ns = sys::monotonic_ns();
    }
    let meminfo = read_kv(Path::new("/proc/meminfo"));
    let kb = |k: &str| {
        meminfo
            .iter()
            .find(|(n, _)| n == k)
            .map_or(0, |(_, v)| v * 1024)
    };
    s.guest_memory_total = kb("MemTotal:");
    s.guest_memory_available = kb("MemAvailable:");
    if let Some(cg) = &cg {
        for (k, v) in read_kv(&cg.join("memory.stat")) {
            match k.as_str() {
                "anon" => s.memory_anon = v,
                "file" => s.memory_file = v,
                "inactive_file" => s.memory_inactive_file = v,
                _ => {}
            }
        }
        s.memory_current = read_u64(&cg.join("memory.current")).unwrap_or(
            s.guest_memory_total
                .saturating_sub(s.guest_memory_available),
        );
        // "max" (unlimited) does not parse: None.
        s.memory_limit = read_u64(&cg.join("memory.max"));
        s.oom_kills = oom_kills(cg).unwrap_or(0);
        let io = std::fs::read_to_string(cg.join("io.stat")).unwrap_or_default();
        (s.io_read_bytes, s.io_write_bytes) = parse_io_stat(&io);
        s.pids = read_u64(&cg.join("pids.current")).unwrap_or_else(|| {
            std::fs::read_to_string(cg.join("cgroup.procs"))
                .map(|t| t.lines().count() as u64)
                .unwrap_or(0)
        });
        s.pids_limit = read_u64(&cg.join("pids.max"));
    }
    s.networks = parse_net_dev(&std::fs::read_to_string("/proc/net/dev").unwrap_or_default());
    Ok(s)
}

/// Writes a container's cgroup limits.
pub fn update_resources(procs: &Processes, r: &Resources) -> Result<(), GuestError> {
    let cg = procs.container_cgroup(&r.container)?.ok_or_else(|| {
        GuestError::Unsupported(format!(
            "container {} has no cgroup (cgroup v2 unavailable)",
            r.container
        ))
    })?;
    let value = |v: u64| {
        if v == agent::NO_LIMIT {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    let mut writes = Vec::new();
    if let Some(m) = r.memory_max {
        writes.push(("memory.max", value(m)));
    }
    if r.cpu_quota_us.is_some() || r.cpu_period_us.is_some() {
        let period = r.cpu_period_us.unwrap_or(100_000);
        if !(1000..=1_000_000).contains(&period) {
            return Err(GuestError::InvalidArgument(format!(
                "invalid CPU period {period} µs"
            )));
        }
        let quota = r.cpu_quota_us.map_or("max".to_string(), |q| q.to_string());
        writes.push(("cpu.max", format!("{quota} {period}")));
    }
    if let Some(p) = r.pids_max {
        writes.push(("pids.max", value(p)));
    }
    for (file, value) in writes {
        let path = cg.join(file);
        sys::write_file(&path, value.as_bytes())
            .map_err(|e| GuestError::sys(format!("set {file}={value} for {}", r.container), e))?;
    }
    Ok(())
}

/// Enables the cpu, memory, io and pids controllers for child cgroups.
pub fn enable_controllers(root: &Path) {
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = ["cpu", "memory", "io", "pids"]
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if let Err(e) = sys::write_file(
        &root.join("cgroup.subtree_control"),
        wanted.join(" ").as_bytes(),
    ) {
        crate::log!("cannot enable cgroup controllers {wanted:?}: {e}");
    }
}

/// Kills every process, syncs, unmounts everything, and powers off or reboots. Only returns
/// if reboot(2) failed.
pub fn shutdown(procs: &Processes, reboot: bool) -> GuestError {
    for pid in procs.live_pids() {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    // SAFETY: no arguments.
    unsafe { libc::sync() };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(String::from)
        .collect();
    for t in targets.iter().rev() {
        let kernel_fs =
            t == "/" || t.starts_with("/proc") || t.starts_with("/sys") || t.starts_with("/dev");
        if kernel_fs {
            continue;
        }
        if let Err(e) = sys::umount(Path::new(t), 0) {
            crate::log!("unmount {t}: {e}; detaching it");
            let _ = sys::umount(Path::new(t), libc::MNT_DETACH);
        }
    }
    // SAFETY: no arguments.
    unsafe { libc::sync() };
    let cmd = if reboot {
        libc::RB_AUTOBOOT
    } else {
        libc::RB_POWER_OFF
    };
    // SAFETY: reboot(2) with a valid command.
    let r = unsafe { libc::reboot(cmd) };
    GuestError::sys(
        "reboot",
        std::io::Error::from_raw_os_error(if r == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stat_sums_every_device() {
        let text = "254:0 rbytes=4096 wbytes=1048576 rios=1 wios=8 dbytes=0 dios=0\n\
                    254:16 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
        assert_eq!(parse_io_stat(text), (4196, 1048576));
        assert_eq!(parse_io_stat(""), (0, 0));
    }

    #[test]
    fn net_dev_parsing_skips_lo() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
 lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  \
eth0: 123456     789    0    0    0     0          0         0    65432     321    0    0    0     0       0          0\n";
        let v = parse_net_dev(text);
        assert_eq!(
            v,
            vec![NetDevStats {
                name: "eth0".into(),
                rx_bytes: 123456,
                rx_packets: 789,
                tx_bytes: 65432,
                tx_packets: 321
            }]
        );
    }
}
