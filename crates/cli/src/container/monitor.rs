//! The hidden `__monitor ID` subcommand: the per-container monitor process (see
//! `runtime::monitor`). `start`/`run` spawn it detached; users never call it.

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

/// Runs the monitor; its exit code is the container's.
pub fn run(global: &GlobalOptions, a: MonitorArgs) -> anyhow::Result<()> {
    let root = global.root_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = runtime::state::Store::open(&root)?;
        let backend = runtime::real::QemuBackend::new(&root, runtime::vminitd::find())?;
        let opts = MonitorOptions {
            wait_attach: a.wait_attach,
            hold: a.hold,
        };
        match runtime::monitor::run(&store, &a.id, &backend, opts).await {
            Ok(code) => {
                tracing::info!("container {} exited with {code}", a.id);
                Ok(())
            }
            // Another monitor owns the container: leave its record alone.
            Err(e @ runtime::monitor::MonitorError::AlreadyRunning(_)) => Err(e.into()),
            Err(e) => {
                // Leave the reason where `start`/`run` look for it.
                let reason = runtime::error_line(&e);
                let _ = store.update(&a.id, |r| {
                    r.exit_code = Some(runtime::EXIT_RUNTIME_FAULT);
                    r.exit_reason = Some(reason.clone());
                    r.monitor_pid = None;
                });
                Err(e.into())
            }
        }
    })
}
