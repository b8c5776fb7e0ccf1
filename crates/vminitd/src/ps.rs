//! `container top`: the processes of a container, read from the guest's `/proc` (the host has
//! no view of them: they live in the VM). Which processes: every pid in the container's
//! cgroup and its sub-cgroups, so that a process that left the container's PID namespace
//! tree (a daemon double-forking) is still listed, as docker's `top` lists its cgroup.
//!
//! Fields are those of proc(5): `/proc/PID/stat` (state, ppid, session, tty_nr, utime,
//! stime, starttime, vsize, rss), `/proc/PID/status` (`Uid:`, `NSpid:`) and
//! `/proc/PID/cmdline`. Times stay in clock ticks; the host formats them as `ps` does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use agent::{ProcessInfo, ProcessList};

use crate::error::GuestError;
use crate::process::Processes;

/// The processes of container `id`.
pub fn list(procs: &Processes, id: &str) -> Result<ProcessList, GuestError> {
    let (cgroup, init_pid) = procs.container_view(id)?;
    let cgroup = cgroup.ok_or_else(|| {
        GuestError::Unsupported(format!(
            "container {id} has no cgroup (cgroup v2 unavailable): its processes cannot be told apart"
        ))
    })?;
    let mut pids = Vec::new();
    cgroup_pids(&cgroup, &mut pids);
    pids.sort_unstable();
    pids.dedup();
    let mut raw: Vec<Raw> = pids.into_iter().filter_map(read).collect();
    // The container's PID namespace numbers its processes; parents outside it show as 0.
    let ns_of: HashMap<i32, i32> = raw.iter().map(|r| (r.pid, r.info.pid)).collect();
    let users = passwd(&PathBuf::from(format!("/proc/{init_pid}/root/etc/passwd")));
    for r in &mut raw {
        r.info.ppid = ns_of.get(&r.ppid).copied().unwrap_or(0);
        if let Some(name) = users.get(&r.info.uid) {
            r.info.user.clone_from(name);
        }
    }
    // SAFETY: sysconf has no preconditions.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let uptime_secs: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let boot_time = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(ProcessList {
        processes: raw.into_iter().map(|r| r.info).collect(),
        clock_ticks: ticks,
        // Seconds with two decimals: whole ticks at 100 Hz.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        uptime_ticks: (uptime_secs * ticks as f64) as u64,
        boot_time,
        mem_total_kb,
    })
}

/// Pids of `dir`'s `cgroup.procs` and of every cgroup below it.
fn cgroup_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            cgroup_pids(&e.path(), out);
        }
    }
}

/// One process as read, with its guest pids (for the parent mapping).
struct Raw {
    pid: i32,
    ppid: i32,
    info: ProcessInfo,
}

/// Reads process `pid`; None when it is gone (it exited between the listing and the read).
fn read(pid: i32) -> Option<Raw> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    parse(pid, &stat, &status, &cmdline)
}

/// The process from its `stat`, `status` and `cmdline` files.
fn parse(pid: i32, stat: &str, status: &str, cmdline: &[u8]) -> Option<Raw> {
    // `comm` is in parentheses and may itself hold spaces and parentheses: split at the last.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // proc(5) numbers fields from 1 with pid and comm first: field n is f[n - 3].
    let field = |n: usize| f.get(n - 3).copied().unwrap_or("0");
    let num = |n: usize| field(n).parse::<u64>().unwrap_or(0);
    let ppid = field(4).parse::<i32>().unwrap_or(0);
    let session = field(6).parse::<i32>().unwrap_or(0);
    let tty_nr = field(7).parse::<u64>().unwrap_or(0);
    let line = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::split_whitespace)
    };
    let uid = line("Uid:")
        .and_then(|mut v| v.next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // NSpid lists the pid in each namespace, outermost first: the last is the container's.
    let ns_pid = line("NSpid:")
        .and_then(Iterator::last)
        .and_then(|v| v.parse().ok())
        .unwrap_or(pid);
    let mut stat_letters = field(3).to_string();
    if session == pid {
        stat_letters.push('s');
    }
    let mut args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    while args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    if args.is_empty() {
        args.push(format!("[{comm}]"));
    }
    // SAFETY: sysconf has no preconditions.
    let page_kb =
        u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096) / 1024;
    Some(Raw {
        pid,
        ppid,
        info: ProcessInfo {
            pid: ns_pid,
            ppid: 0,
            uid,
            user: String::new(),
            tty: tty_name(tty_nr),
            stat: stat_letters,
            start_ticks: num(22),
            cpu_ticks: num(14) + num(15),
            vsz_kb: num(23) / 1024,
            rss_kb: num(24) * page_kb,
            args,
            comm: comm.to_string(),
        },
    })
}

/// A terminal's name from `tty_nr` (major in bits 8–15, minor in bits 0–7 and 20–31), as
/// `ps` names the common ones; `?` for none.
fn tty_name(tty_nr: u64) -> String {
    if tty_nr == 0 {
        return "?".into();
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        5 if minor == 1 => "console".into(),
        _ => format!("{major}:{minor}"),
    }
}

/// uid → name from a passwd file (empty when it cannot be read).
fn passwd(path: &Path) -> HashMap<u32, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_read_from_its_proc_files() {
        let stat = "812 (my (odd) cmd) S 700 812 812 34816 812 4194560 100 0 0 0 \
                    250 50 0 0 20 0 1 0 1234 10485760 300 18446744073709551615";
        let status = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nNSpid:\t812\t7\n";
        let r = parse(812, stat, status, b"sh\0-c\0sleep 9\0").unwrap();
        assert_eq!((r.pid, r.ppid), (812, 700));
        let i = r.info;
        assert_eq!((i.pid, i.uid), (7, 1000));
        assert_eq!(i.stat, "Ss");
        assert_eq!(i.tty, "pts/0");
        assert_eq!((i.cpu_ticks, i.start_ticks), (300, 1234));
        assert_eq!(i.vsz_kb, 10240);
        assert_eq!(i.args, ["sh", "-c", "sleep 9"]);
        assert_eq!(i.comm, "my (odd) cmd");
        let r = parse(2, "2 (kthreadd) S 0 0 0 0 -1 0", "Uid:\t0\n", b"").unwrap();
        assert_eq!(r.info.args, ["[kthreadd]"]);
        assert_eq!((r.info.pid, r.info.tty.as_str()), (2, "?"));
    }

    #[test]
    fn users_come_from_passwd() {
        let dir = std::env::temp_dir().join(format!("ps-passwd-{}", std::process::id()));
        std::fs::write(
            &dir,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:\n",
        )
        .unwrap();
        let users = passwd(&dir);
        let _ = std::fs::remove_file(&dir);
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&65534).map(String::as_str), Some("nobody"));
    }
}
