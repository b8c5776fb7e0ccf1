//! `container top`: a container's processes as `ps` shows them. docker runs the host's `ps`
//! with the user's options and keeps the lines of the container's pids; the processes here
//! live in a VM, so the guest reads its `/proc` ([`agent::ProcessList`]) and this module
//! formats them as `ps` would for the options docker users pass most:
//!
//! ```text
//!  (none), -ef, -f, -e, -eF?   UID PID PPID C STIME TTY TIME CMD              (docker's default: -ef)
//!  aux, -aux, au, ax, -au ...  USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND
//!  -o LIST, -eo LIST, o LIST   the columns of LIST (`pid,comm`, `pid,user,args`, `rss=MEM`)
//! ```
//! Any other option is refused with one line naming what is supported. Pids are those of the
//! container's own PID namespace (its first process is 1), not the VM's. As with docker (which
//! keeps the lines of the container's pids), a column list must have `pid`.

use chrono::{DateTime, Local, TimeZone, Utc};

/// The `-o` keywords understood: procps names, aliases and headers.
const KEYWORDS: [(&[&str], Column, &str); 17] = [
    (&["pid"], Column::Pid, "PID"),
    (&["ppid"], Column::Ppid, "PPID"),
    (&["uid", "euid"], Column::Uid, "UID"),
    (&["user", "euser", "uname"], Column::User, "USER"),
    (&["tty", "tt", "tname"], Column::Tty, "TT"),
    (&["stat"], Column::Stat, "STAT"),
    (&["s", "state"], Column::State, "S"),
    (&["stime", "start_time"], Column::Stime, "STIME"),
    (&["start", "bsdstart"], Column::Stime, "STARTED"),
    (&["time", "cputime"], Column::Time, "TIME"),
    (&["etime"], Column::Etime, "ELAPSED"),
    (&["vsz", "vsize"], Column::Vsz, "VSZ"),
    (&["rss", "rssize", "rsz"], Column::Rss, "RSS"),
    (&["pcpu", "%cpu"], Column::Cpu, "%CPU"),
    (&["pmem", "%mem"], Column::Mem, "%MEM"),
    (&["comm", "ucomm", "ucmd"], Column::Comm, "COMMAND"),
    (&["args", "cmd", "command"], Column::Args, "COMMAND"),
];

/// `ps` options this module cannot format.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// Options other than those of the module's table.
    #[error(
        "unsupported ps options {0:?}: container top formats -ef (the default), aux and \
         -o COLUMNS"
    )]
    Options(String),
    /// A `-o` keyword this module does not know.
    #[error(
        "unsupported ps column {0:?}: container top knows pid, ppid, uid, user, tty, stat, s, \
         stime, start, time, etime, vsz, rss, pcpu, pmem, comm and args"
    )]
    Column(String),
    /// A column list without `pid` (docker's error: it finds the container's lines by pid).
    #[error("Couldn't find PID field in ps output")]
    NoPid,
}

/// One column of a `-o` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Pid in the container.
    Pid,
    /// Parent's pid.
    Ppid,
    /// Numeric uid.
    Uid,
    /// User name (else the uid).
    User,
    /// Terminal.
    Tty,
    /// State letters (`Ss`).
    Stat,
    /// The state letter alone.
    State,
    /// Start time, `ps`'s short form.
    Stime,
    /// Cumulative CPU time, `[DD-]HH:MM:SS`.
    Time,
    /// Time since it started, `[[DD-]HH:]MM:SS`.
    Etime,
    /// Virtual size, KiB.
    Vsz,
    /// Resident set, KiB.
    Rss,
    /// CPU use over its life, percent.
    Cpu,
    /// Resident set over the VM's memory, percent.
    Mem,
    /// Executable name.
    Comm,
    /// Command line.
    Args,
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsFormat {
    /// `ps -ef`: UID PID PPID C STIME TTY TIME CMD.
    Full,
    /// `ps aux`: USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND.
    User,
    /// `ps -o LIST`: these columns under these headers.
    Custom(Vec<(Column, String)>),
}

/// The columns of one `-o` value: keywords separated by commas or blanks, each with an
/// optional `=HEADER`; as in procps, a header takes the rest of the value, commas and all.
fn columns(list: &str) -> Result<Vec<(Column, String)>, TopError> {
    let mut out = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let end = rest.find([',', ' ', '=']).unwrap_or(rest.len());
        let name = &rest[..end];
        let (column, default) = KEYWORDS
            .iter()
            .find(|(names, _, _)| names.contains(&name.to_ascii_lowercase().as_str()))
            .map(|(_, c, h)| (*c, h.to_string()))
            .ok_or_else(|| TopError::Column(name.to_string()))?;
        if rest[end..].starts_with('=') {
            out.push((column, rest[end + 1..].to_string()));
            break;
        }
        out.push((column, default));
        rest = rest[end..].trim_start_matches([',', ' ']);
    }
    Ok(out)
}

impl PsFormat {
    /// The format of `ps ARGS` (none: docker's default, `-ef`).
    pub fn parse(args: &[String]) -> Result<PsFormat, TopError> {
        let joined = args.join(" ");
        if let Some(custom) = PsFormat::custom(args)? {
            return Ok(custom);
        }
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
        Err(TopError::Options(joined))
    }

    /// `-o LIST` (also `o LIST`, `-eo LIST`, `-e -o LIST`, `-oLIST`, `--format LIST`, several
    /// of them adding up), None without one.
    fn custom(args: &[String]) -> Result<Option<PsFormat>, TopError> {
        if !args
            .iter()
            .any(|a| a == "--format" || a.trim_start_matches('-').contains('o'))
        {
            return Ok(None);
        }
        let bad = || TopError::Options(args.join(" "));
        let mut cols = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let list = if a == "--format" || a == "-o" || a == "o" {
                it.next().ok_or_else(bad)?.clone()
            } else if let Some(attached) = a.strip_prefix("-o") {
                attached.trim_start_matches('=').to_string()
            } else {
                // -e/-A before the o (every process: they are all the container's).
                let letters = a.trim_start_matches('-');
                match letters.strip_suffix('o') {
                    Some(sel) if sel.chars().all(|c| "eA".contains(c)) => {
                        it.next().ok_or_else(bad)?.clone()
                    }
                    _ if letters.chars().all(|c| "eA".contains(c)) && !letters.is_empty() => {
                        continue
                    }
                    _ => return Err(bad()),
                }
            };
            cols.extend(columns(&list)?);
        }
        if !cols.iter().any(|(c, _)| *c == Column::Pid) {
            return Err(TopError::NoPid);
        }
        Ok(Some(PsFormat::Custom(cols)))
    }

    /// The rows of `list`, read at `now`.
    pub fn table(&self, list: &agent::ProcessList, now: DateTime<Utc>) -> Table {
        let titles: Vec<String> = match self {
            PsFormat::Full => ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
                .map(String::from)
                .to_vec(),
            PsFormat::User => [
                "USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME",
                "COMMAND",
            ]
            .map(String::from)
            .to_vec(),
            PsFormat::Custom(cols) => cols.iter().map(|(_, h)| h.clone()).collect(),
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
                let mem = if list.mem_total_kb == 0 {
                    0.0
                } else {
                    p.rss_kb as f64 * 100.0 / list.mem_total_kb as f64
                };
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
                    PsFormat::Custom(cols) => cols
                        .iter()
                        .map(|(c, _)| match c {
                            Column::Pid => p.pid.to_string(),
                            Column::Ppid => p.ppid.to_string(),
                            Column::Uid => p.uid.to_string(),
                            Column::User => user.clone(),
                            Column::Tty => p.tty.clone(),
                            Column::Stat => p.stat.clone(),
                            Column::State => p.stat.chars().take(1).collect(),
                            Column::Stime => start.clone(),
                            Column::Time => cpu_time(p.cpu_ticks / hz, true),
                            Column::Etime => elapsed_time(elapsed / hz),
                            Column::Vsz => p.vsz_kb.to_string(),
                            Column::Rss => p.rss_kb.to_string(),
                            Column::Cpu => format!("{cpu:.1}"),
                            Column::Mem => format!("{mem:.1}"),
                            Column::Comm => comm(p),
                            Column::Args => cmd.clone(),
                        })
                        .collect(),
                    PsFormat::User => {
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
        Table { titles, processes }
    }
}

/// `comm`: the kernel's name, or (from a guest that does not send it) the command's file
/// name as the kernel would have taken it, 15 bytes at most.
fn comm(p: &agent::ProcessInfo) -> String {
    if !p.comm.is_empty() {
        return p.comm.clone();
    }
    let first = p.args.first().map_or("", String::as_str);
    if let Some(inner) = first.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return inner.to_string();
    }
    let name = first.rsplit('/').next().unwrap_or(first);
    name.char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= 15)
        .map(|(_, c)| c)
        .collect()
}

/// `etime`: `[[DD-]HH:]MM:SS`.
fn elapsed_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h) {
        (0, 0) => format!("{m:02}:{s:02}"),
        (0, _) => format!("{h:02}:{m:02}:{s:02}"),
        _ => format!("{d}-{h:02}:{m:02}:{s:02}"),
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
                    comm: "sh".into(),
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
        let e = p(&["-x", "pid"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported ps options \"-x pid\": container top formats -ef (the default), aux \
             and -o COLUMNS"
        );
    }

    #[test]
    fn column_lists_follow_procps() {
        let p = |a: &[&str]| PsFormat::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let cols = |f: PsFormat| match f {
            PsFormat::Custom(c) => c,
            other => panic!("{other:?}"),
        };
        let c = cols(p(&["-o", "pid,comm"]).unwrap());
        assert_eq!(
            c,
            [
                (Column::Pid, "PID".to_string()),
                (Column::Comm, "COMMAND".to_string())
            ]
        );
        for args in [
            &["-eo", "pid,comm"][..],
            &["o", "pid,comm"],
            &["-e", "-o", "pid", "-o", "comm"],
            &["-opid,comm"],
            &["--format", "pid comm"],
        ] {
            assert_eq!(cols(p(args).unwrap()), c, "{args:?}");
        }
        let h = cols(p(&["-o", "pid,rss=RESIDENT, KB"]).unwrap());
        assert_eq!(h[1], (Column::Rss, "RESIDENT, KB".to_string()));
        assert_eq!(
            p(&["-o", "comm"]).unwrap_err().to_string(),
            "Couldn't find PID field in ps output"
        );
        assert!(p(&["-o", "pid,wchan"])
            .unwrap_err()
            .to_string()
            .starts_with("unsupported ps column \"wchan\""));
        assert!(p(&["-o"]).is_err());
        assert!(p(&["-xo", "pid"]).is_err());
    }

    #[test]
    fn custom_rows_have_the_columns_asked_for() {
        let f =
            PsFormat::parse(&["-o".to_string(), "pid,ppid,user,comm,etime,args".into()]).unwrap();
        let t = f.table(&list(), Utc::now());
        assert_eq!(
            t.titles,
            ["PID", "PPID", "USER", "COMMAND", "ELAPSED", "COMMAND"]
        );
        assert_eq!(t.processes[0], ["1", "0", "root", "sh", "02:02", "sh"]);
        assert_eq!(
            t.processes[1],
            ["7", "1", "1000", "sleep", "02:01", "sleep 60"]
        );
        assert_eq!(elapsed_time(90_061), "1-01:01:01");
        assert_eq!(elapsed_time(3_661), "01:01:01");
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
