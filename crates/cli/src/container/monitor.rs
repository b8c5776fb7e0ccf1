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
        let backend = runtime::real::QemuBackend::new(&root, super::image::vminitd_path())?;
        let code = runtime::monitor::run(
            &store,
            &a.id,
            &backend,
            MonitorOptions {
                wait_attach: a.wait_attach,
            },
        )
        .await?;
        tracing::info!("container {} exited with {code}", a.id);
        Ok(())
    })
}
