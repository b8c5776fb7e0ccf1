//! `stats`: live resource usage of containers, as `docker stats` shows it.
//!
//! Each refresh asks every container's monitor for one reading of its cgroup in the guest and
//! computes CPU % against the previous reading (the first refresh comes after one interval, so
//! even `--no-stream` shows a measured CPU %). A table is redrawn in place on a terminal and
//! printed as repeated blocks otherwise; `--format json` prints one JSON array per refresh.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use runtime::state::Status;
use runtime::stats::{usage, Sample, Usage};
use runtime::{Container, ContainerError, Runtime, Verb};
use serde::Serialize;

use super::is_json;
use crate::global::{Format, GlobalOptions};

/// Time between two readings.
const INTERVAL: Duration = Duration::from_secs(1);
/// Longest a monitor may take to answer (a guest under TCG on a busy host is slow).
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);

/// `container stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default: running only); stopped ones show zeros.
    #[arg(short, long)]
    pub all: bool,
    /// Print one reading and exit instead of refreshing every second.
    #[arg(long)]
    pub no_stream: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Containers (name or id); default: every running container.
    pub containers: Vec<String>,
}

/// One row of the output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Full container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// The numbers (zeros for a container that is not running).
    #[serde(flatten)]
    pub usage: Usage,
}

/// Which containers a refresh shows: the named ones (resolved once), or every (running)
/// container at the time of the refresh.
enum Selection {
    Named(Vec<Container>),
    All { include_stopped: bool },
}

impl Selection {
    fn containers(&self, rt: &Runtime) -> anyhow::Result<Vec<Container>> {
        match self {
            Selection::Named(v) => Ok(v.clone()),
            Selection::All { include_stopped } => {
                let mut out: Vec<Container> = rt
                    .containers()?
                    .into_iter()
                    .filter(|c| *include_stopped || c.status() == Status::Running)
                    .collect();
                out.sort_by(|a, b| a.name().cmp(b.name()));
                Ok(out)
            }
        }
    }
}

/// `container stats`.
pub async fn stats(global: &GlobalOptions, a: StatsArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let selection = if a.containers.is_empty() {
        Selection::All {
            include_stopped: a.all,
        }
    } else {
        let mut named = Vec::new();
        for name in &a.containers {
            let c = rt.container(name)?;
            if !a.all && !Verb::Stats.accepts(c.status(), false) {
                return Err(ContainerError::WrongState {
                    verb: Verb::Stats,
                    name: name.clone(),
                    status: c.status(),
                }
                .into());
            }
            named.push(c);
        }
        Selection::Named(named)
    };
    let named = matches!(selection, Selection::Named(_));
    let tty = std::io::stdout().is_terminal();
    let mut prev: HashMap<String, Sample> = HashMap::new();
    // The first reading only sets the base for CPU %.
    let records = selection.containers(&rt)?;
    for (r, (id, s)) in records.iter().zip(sample_all(&records).await) {
        match s {
            Ok(s) => {
                prev.insert(id, s);
            }
            Err(e) if named && !a.all => {
                bail!("cannot get statistics of container {}: {e}", r.name())
            }
            Err(_) => {}
        }
    }
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = &mut ctrl_c => return Ok(()),
        }
        let records = selection.containers(&rt)?;
        let mut rows = Vec::new();
        let mut next = HashMap::new();
        for (r, (_, s)) in records.iter().zip(sample_all(&records).await) {
            let usage = match s {
                Ok(s) => {
                    let u = usage(prev.get(r.id()), &s);
                    next.insert(r.id().to_string(), s);
                    u
                }
                Err(e) if a.no_stream && named && !a.all => {
                    bail!("cannot get statistics of container {}: {e}", r.name())
                }
                // Stopped since (or never running with --all): zeros.
                Err(_) => usage(None, &Sample::default()),
            };
            rows.push(Row {
                id: r.id().to_string(),
                name: r.name().to_string(),
                usage,
            });
        }
        prev = next;
        let mut out = std::io::stdout().lock();
        if is_json(a.format) {
            let text = if a.no_stream {
                serde_json::to_string_pretty(&rows)?
            } else {
                serde_json::to_string(&rows)?
            };
            writeln!(out, "{text}")?;
        } else {
            if tty && !a.no_stream {
                // Clear the screen and home the cursor, as docker does.
                write!(out, "\x1b[2J\x1b[H")?;
            } else if !a.no_stream {
                writeln!(out)?;
            }
            write!(out, "{}", table(&rows))?;
        }
        out.flush()?;
        if a.no_stream {
            return Ok(());
        }
    }
}

/// One reading of each running container, concurrently, in `records` order.
async fn sample_all(records: &[Container]) -> Vec<(String, anyhow::Result<Sample>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, r) in records.iter().enumerate() {
        let (mut c, id) = (r.clone(), r.id().to_string());
        let running = c.status() == Status::Running;
        tasks.spawn(async move {
            let s = if running {
                match tokio::time::timeout(SAMPLE_TIMEOUT, c.stats()).await {
                    Ok(r) => r.map_err(anyhow::Error::from),
                    Err(_) => Err(anyhow::anyhow!("its monitor did not answer in time")),
                }
            } else {
                Err(anyhow::anyhow!("it is not running"))
            };
            (i, id, s)
        });
    }
    let mut out: Vec<Option<(String, anyhow::Result<Sample>)>> =
        (0..records.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, id, s)) = joined {
            out[i] = Some((id, s));
        }
    }
    out.into_iter()
        .zip(records)
        .map(|(o, r)| {
            o.unwrap_or_else(|| (r.id().to_string(), Err(anyhow::anyhow!("reading failed"))))
        })
        .collect()
}

/// `x` with `digits` significant digits, trailing zeros trimmed (C's `%.<digits>g` without
/// the exponent form).
fn significant(x: f64, digits: i32) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = usize::try_from(digits - 1 - magnitude).unwrap_or(0);
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Bytes in binary units, as docker shows memory: `1.172MiB`, `128MiB`, `0B`.
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{}{}", significant(v, 4), UNITS[unit])
}

/// Bytes in decimal units, as docker shows I/O: `1.1kB`, `866B`, `12.3MB`.
pub fn decimal_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(v, 3), UNITS[unit])
}

/// The table of `rows`, docker's columns, each as wide as its widest cell.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let u = &r.usage;
        cells.push(vec![
            r.id.chars().take(12).collect(),
            r.name.clone(),
            format!("{:.2}%", u.cpu_percent),
            format!(
                "{} / {}",
                binary_size(u.memory_usage),
                binary_size(u.memory_limit)
            ),
            format!("{:.2}%", u.memory_percent),
            format!(
                "{} / {}",
                decimal_size(u.net_rx_bytes),
                decimal_size(u.net_tx_bytes)
            ),
            format!(
                "{} / {}",
                decimal_size(u.block_read_bytes),
                decimal_size(u.block_write_bytes)
            ),
            u.pids.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| cells.iter().map(|row| row[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, cpu: f64, mem: u64, limit: u64) -> Row {
        Row {
            id: "0123456789abcdef0123".into(),
            name: name.into(),
            usage: Usage {
                cpu_percent: cpu,
                memory_usage: mem,
                memory_limit: limit,
                memory_percent: mem as f64 / limit as f64 * 100.0,
                net_rx_bytes: 1100,
                net_tx_bytes: 866,
                block_read_bytes: 0,
                block_write_bytes: 12_345_678,
                pids: 3,
            },
        }
    }

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1023), "1023B");
        assert_eq!(binary_size(1229), "1.2KiB");
        assert_eq!(binary_size(1_228_800), "1.172MiB");
        assert_eq!(binary_size(128 << 20), "128MiB");
        assert_eq!(binary_size(3 << 30), "3GiB");
        assert_eq!(decimal_size(0), "0B");
        assert_eq!(decimal_size(866), "866B");
        assert_eq!(decimal_size(1100), "1.1kB");
        assert_eq!(decimal_size(12_345_678), "12.3MB");
        assert_eq!(decimal_size(999_999), "1000kB");
    }

    #[test]
    fn table_has_dockers_columns_aligned() {
        let t = table(&[
            row("busy", 99.456, 1_228_800, 128 << 20),
            row("a-much-longer-name", 0.0, 0, 512 << 20),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("CONTAINER ID   NAME"));
        assert!(lines[0].ends_with("   PIDS"), "{}", lines[0]);
        assert!(lines[1].starts_with("0123456789ab   busy    "));
        assert!(lines[1].contains("99.46%"));
        assert!(lines[1].contains("1.172MiB / 128MiB"));
        assert!(lines[1].contains("0.92%"));
        assert!(lines[1].contains("1.1kB / 866B"));
        assert!(lines[1].contains("0B / 12.3MB"));
        assert!(lines[1].ends_with(" 3"));
        // Every column starts at the same offset on every line.
        for h in ["NAME", "CPU %", "MEM USAGE", "NET I/O", "PIDS"] {
            let col = lines[0].find(h).unwrap();
            for l in &lines[1..] {
                assert_eq!(&l[col - 3..col], "   ", "{h} misaligned in {l:?}");
                assert_ne!(&l[col..col + 1], " ", "{h} misaligned in {l:?}");
            }
        }
        assert_eq!(table(&[]).lines().count(), 1);
    }

    #[test]
    fn json_rows_are_flat_numbers() {
        let v = serde_json::to_value(vec![row("busy", 50.0, 10, 100)]).unwrap();
        let o = &v[0];
        assert_eq!(o["name"], "busy");
        assert_eq!(o["id"], "0123456789abcdef0123");
        assert_eq!(o["cpu_percent"], 50.0);
        assert_eq!(o["memory_usage"], 10);
        assert_eq!(o["memory_limit"], 100);
        assert_eq!(o["memory_percent"], 10.0);
        assert_eq!(o["net_rx_bytes"], 1100);
        assert_eq!(o["net_tx_bytes"], 866);
        assert_eq!(o["block_read_bytes"], 0);
        assert_eq!(o["block_write_bytes"], 12_345_678);
        assert_eq!(o["pids"], 3);
    }
}
