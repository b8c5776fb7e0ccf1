//! `container top`: a container's processes as `ps` shows them. docker runs the host's `ps`
//! with the user's options and keeps the lines of the container's pids; the processes here
//! live in a VM, so the guest reads its `/proc` ([`agent::ProcessList`]) and this module
//! formats them as `ps` would for the options docker users pass most:
//!
//! ```text
//!  (none), -ef, -f, -e, -eF?   UID PID PPID C STIME TTY TIME CMD              (docker's default: -ef)
//!  aux, -aux, au, ax, -au ...  USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND
//! ```
//! Any other option is refused with one line naming what is supported. Pids are those of the
//! container's own PID namespace (its first process is 1), not the VM's.

use chrono::{DateTime, Local, TimeZone, Utc};

/// `ps` options this module cannot format.
#[derive(Debug, thiserror::Error)]
#[error("unsupported ps options {0:?}: container top formats -ef (the default) and aux")]
pub struct TopError(pub String);

/// The table `top` prints: docker's Engine API answer (`Titles`, `Processes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Table {
    /// Column titles.
    pub titles: Vec<String>,
    /// One row per process, in pid order.
    pub processes: Vec<Vec<String>>,
}

/// The columns asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsFormat {
    /// `ps -ef`: UID PID PPID C STIME TTY TIME CMD.
    Full,
    /// `ps aux`: USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND.
    User,
}

impl PsFormat {
    /// The format of `ps ARGS` (none: docker's default, `-ef`).
    pub fn parse(args: &[String]) -> Result<PsFormat, TopError> {
        let joined = args.join(" ");
        let letters: String = args.iter().map(|a| a.trim_start_matches('-')).collect();
        if letters.is_empty() {
            return Ok(PsFormat::Full);
        }
        let only = |set: &str| letters.chars().all(|c| set.contains(c));
        if letters.contains('u') && only("aux") {
            return Ok(PsFormat::User);
        }
        // -e/-A (every process: they are the container's anyway) with -f for full lines.
        if args.iter().all(|a| a.starts_with('-')) && only("efA") {
            return Ok(PsFormat::Full);
        }
        Err(TopError(joined))
    }

    /// The rows of `list`, read at `now`.
    pub fn table(self, list: &agent::ProcessList, now: DateTime<Utc>) -> Table {
        let titles: &[&str] = match self {
            PsFormat::Full => &["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
            PsFormat::User => &[
                "USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME",
                "COMMAND",
            ],
        };
        let hz = list.clock_ticks.max(1);
        let mut procs: Vec<&agent::ProcessInfo> = list.processes.iter().collect();
        procs.sort_by_key(|p| p.pid);
        let processes = procs
            .into_iter()
            .map(|p| {
                let user = if p.user.is_empty() {
                    p.uid.to_string()
                } else {
                    p.user.clone()
                };
                let started = list.boot_time + p.start_ticks / hz;
                let start = start_time(started, now);
                let elapsed = list.uptime_ticks.saturating_sub(p.start_ticks);
                // ps: CPU time over the time the process has been alive, in percent.
                let cpu = if elapsed == 0 {
                    0.0
                } else {
                    p.cpu_ticks as f64 * 100.0 / elapsed as f64
                };
                let cmd = p.args.join(" ");
                match self {
                    PsFormat::Full => vec![
                        user,
                        p.pid.to_string(),
                        p.ppid.to_string(),
                        format!("{}", cpu.floor()),
                        start,
                        p.tty.clone(),
                        cpu_time(p.cpu_ticks / hz, true),
                        cmd,
                    ],
                    PsFormat::User => {
                        let mem = if list.mem_total_kb == 0 {
                            0.0
                        } else {
                            p.rss_kb as f64 * 100.0 / list.mem_total_kb as f64
                        };
                        vec![
                            user,
                            p.pid.to_string(),
                            format!("{cpu:.1}"),
                            format!("{mem:.1}"),
                            p.vsz_kb.to_string(),
                            p.rss_kb.to_string(),
                            p.tty.clone(),
                            p.stat.clone(),
                            start,
                            cpu_time(p.cpu_ticks / hz, false),
                            cmd,
                        ]
                    }
                }
            })
            .collect();
        Table {
            titles: titles.iter().map(|t| t.to_string()).collect(),
            processes,
        }
    }
}

/// `STIME`/`START` as `ps` writes them: `HH:MM` today, `MonDD` this year, the year before.
fn start_time(unix: u64, now: DateTime<Utc>) -> String {
    let Some(t) = i64::try_from(unix)
        .ok()
        .and_then(|s| Local.timestamp_opt(s, 0).single())
    else {
        return "?".into();
    };
    let now = now.with_timezone(&Local);
    if now.signed_duration_since(t) < chrono::Duration::hours(24) {
        t.format("%H:%M").to_string()
    } else if t.format("%Y").to_string() == now.format("%Y").to_string() {
        t.format("%b%d").to_string()
    } else {
        t.format("%Y").to_string()
    }
}

/// Cumulative CPU time: `-ef`'s `[DD-]HH:MM:SS`, `aux`'s `M:SS`.
fn cpu_time(secs: u64, full: bool) -> String {
    if full {
        let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
        if d > 0 {
            format!("{d}-{h:02}:{m:02}:{s:02}")
        } else {
            format!("{h:02}:{m:02}:{s:02}")
        }
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> agent::ProcessList {
        agent::ProcessList {
            processes: vec![
                agent::ProcessInfo {
                    pid: 7,
                    ppid: 1,
                    uid: 1000,
                    tty: "?".into(),
                    stat: "S".into(),
                    start_ticks: 200,
                    cpu_ticks: 0,
                    vsz_kb: 1000,
                    rss_kb: 512,
                    args: vec!["sleep".into(), "60".into()],
                    ..Default::default()
                },
                agent::ProcessInfo {
                    pid: 1,
                    ppid: 0,
                    uid: 0,
                    user: "root".into(),
                    tty: "pts/0".into(),
                    stat: "Ss".into(),
                    start_ticks: 100,
                    cpu_ticks: 6100,
                    vsz_kb: 2000,
                    rss_kb: 1024,
                    args: vec!["sh".into()],
                },
            ],
            clock_ticks: 100,
            uptime_ticks: 12_300,
            boot_time: 1_700_000_000,
            mem_total_kb: 4096,
        }
    }

    #[test]
    fn ps_options_pick_the_columns() {
        let p = |a: &[&str]| PsFormat::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&[]).unwrap(), PsFormat::Full);
        assert_eq!(p(&["-ef"]).unwrap(), PsFormat::Full);
        assert_eq!(p(&["-e", "-f"]).unwrap(), PsFormat::Full);
        assert_eq!(p(&["aux"]).unwrap(), PsFormat::User);
        assert_eq!(p(&["-aux"]).unwrap(), PsFormat::User);
        let e = p(&["-o", "pid"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported ps options \"-o pid\": container top formats -ef (the default) and aux"
        );
    }

    #[test]
    fn rows_are_ps_lines_in_pid_order() {
        let now = Utc::now();
        let t = PsFormat::Full.table(&list(), now);
        assert_eq!(
            t.titles,
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        let r = &t.processes[0];
        assert_eq!(r[0], "root");
        assert_eq!(&r[1..4], ["1", "0", "50"]);
        assert_eq!(&r[5..], ["pts/0", "00:01:01", "sh"]);
        assert_eq!(t.processes[1][0], "1000");
        assert_eq!(t.processes[1][7], "sleep 60");
        let u = PsFormat::User.table(&list(), now);
        assert_eq!(u.titles.len(), 11);
        assert_eq!(
            &u.processes[0][1..8],
            ["1", "50.0", "25.0", "2000", "1024", "pts/0", "Ss"]
        );
        assert_eq!(u.processes[0][9], "1:01");
    }

    #[test]
    fn cpu_times() {
        assert_eq!(cpu_time(0, true), "00:00:00");
        assert_eq!(cpu_time(90_061, true), "1-01:01:01");
        assert_eq!(cpu_time(125, false), "2:05");
    }
}
