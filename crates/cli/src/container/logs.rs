//! `logs`: the main process's output from the container log, or the VM console with --boot.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use runtime::logs::{tail, LogFollower, Stream};
use runtime::state::Status;

use crate::global::GlobalOptions;

/// `container logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Print only the last N lines.
    #[arg(short = 'n', long = "tail", value_name = "N")]
    pub tail: Option<usize>,
    /// Show the VM's serial console (kernel and init messages) instead.
    #[arg(long)]
    pub boot: bool,
    /// Container name or id.
    pub container: String,
}

/// `container logs`.
pub async fn logs(global: &GlobalOptions, a: LogsArgs) -> anyhow::Result<()> {
    let mut container = global.runtime()?.container(&a.container)?;
    if a.boot {
        let path = container.boot_log_path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("read {}", path.display()))),
        };
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let start = a.tail.map_or(0, |n| lines.len().saturating_sub(n));
        print!("{}", lines[start..].concat());
        return Ok(());
    }
    if !container.record().config.log.keeps_logs() {
        anyhow::bail!(runtime::logs::NOT_READABLE);
    }
    // The rotated files first, then the current one, followed across rotations.
    let mut log = LogFollower::new(&container.log_path());
    print_records(tail(log.read()?, a.tail));
    if !a.follow {
        return Ok(());
    }
    loop {
        let running = container.refresh().is_ok() && container.status() == Status::Running;
        print_records(log.read()?);
        if !running {
            // One last read: the monitor writes the final lines before it records the exit.
            print_records(log.read()?);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_records(records: Vec<runtime::logs::Record>) {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for r in records {
        let _ = match r.stream {
            Stream::Stdout => out.write_all(r.log.as_bytes()),
            Stream::Stderr => err.write_all(r.log.as_bytes()),
        };
    }
    let _ = out.flush();
}
