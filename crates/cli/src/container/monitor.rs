//! The hidden `__monitor ID` subcommand: the per-container monitor process (see
//! `runtime::monitor`). `start`/`run` spawn it detached; users never call it. And the hidden
//! `__monitor-pool SEED`: a pre-booted VM that becomes a container's monitor when claimed
//! (`runtime::real::pool`), started by monitors.

use clap::Args;
use runtime::monitor::MonitorOptions;

use crate::global::GlobalOptions;

/// Arguments of the monitor.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Full container id.
    pub id: String,
    /// Hold the process until the first client attaches.
    #[arg(long)]
    pub wait_attach: bool,
    /// Hold mode: create the container without starting it, serve one copy, stop.
    #[arg(long)]
    pub hold: bool,
}

/// Runs the monitor; the runtime records its outcome (and any failure) in the container's
/// state.
pub fn run(global: &GlobalOptions, a: MonitorArgs) -> anyhow::Result<()> {
    let opts = MonitorOptions {
        wait_attach: a.wait_attach,
        hold: a.hold,
    };
    runtime::monitor::main(&global.root_dir(), &a.id, opts)?;
    Ok(())
}

/// Arguments of a pool process.
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// The VM config to pre-boot (a file the starting monitor wrote; removed once read).
    pub seed: std::path::PathBuf,
}

/// Runs a pool process: waits with a pre-booted VM, then runs the monitor of the container
/// that claims it.
pub fn pool(global: &GlobalOptions, a: PoolArgs) -> anyhow::Result<()> {
    runtime::real::pool::main(&global.root_dir(), &a.seed)?;
    Ok(())
}
