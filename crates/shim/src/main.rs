//! `containerd-shim-container-v2`: the containerd shim v2 (runtime type
//! `io.containerd.container.v2`) that runs each task in its own VM through the runtime.
//!
//! The binary has two roles: containerd's shim (`start`, `delete`, and the daemon serving the
//! task service over ttrpc), and the per-container monitor the runtime re-executes
//! (`--root R __monitor ID`), as the `container` CLI is both.

#![warn(clippy::unwrap_used)]

mod bundle;
mod process;
mod service;
mod shim;
mod snapshot;
mod spec;
mod stdio;

/// The runtime type containerd knows this shim by.
const RUNTIME_ID: &str = "io.containerd.container.v2";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = run_monitor(&args) {
        std::process::exit(code);
    }
    // The daemon (neither the `start` nor the `delete` action) owns the monitors it starts:
    // each ends its container when this process dies (runtime::monitor::owner), so a VM
    // never outlives both its shim and containerd's cleanup of it. Set before any thread.
    let action = args.iter().skip(1).rfind(|a| !a.is_empty());
    if !matches!(action.map(String::as_str), Some("start" | "delete")) {
        if let Some(v) = runtime::monitor::owner::owner_value() {
            std::env::set_var(runtime::monitor::owner::OWNER_ENV, v);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let config = containerd_shim::Config {
        // The only children are the monitors, each waited for by a thread of the runtime: the
        // crate's reaper would race those waits; and VMs die with their monitors, so
        // nothing is orphaned for a subreaper to collect.
        no_reaper: true,
        no_sub_reaper: true,
        ..Default::default()
    };
    rt.block_on(containerd_shim::asynchronous::run::<shim::ContainerShim>(
        RUNTIME_ID,
        Some(config),
    ));
    // A stdin FIFO whose writer never came keeps a blocking open on the pool: the task is
    // gone, so is the reason to wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
}

/// The monitor role: `PROGRAM --root ROOT __monitor ID [--wait-attach] [--hold]`, as
/// [`runtime::container::MonitorCommand`] spawns it. None when the arguments are not that.
fn run_monitor(args: &[String]) -> Option<i32> {
    let [_, root_flag, root, sub, id, flags @ ..] = args else {
        return None;
    };
    if root_flag != "--root" || sub != runtime::MONITOR_SUBCOMMAND {
        return None;
    }
    let level = std::env::var("CONTAINER_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    // stderr is the container's monitor.log: on a full disk the subscriber's eprintln! of
    // the failed write would panic (see the CLI's init_logging).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_target(false)
        .log_internal_errors(false)
        .try_init();
    let opts = runtime::monitor::MonitorOptions {
        wait_attach: flags.iter().any(|f| f == "--wait-attach"),
        hold: flags.iter().any(|f| f == "--hold"),
    };
    match runtime::monitor::main(std::path::Path::new(root), id, opts) {
        Ok(code) => Some(code),
        Err(e) => {
            eprintln!("monitor: {}", runtime::error_line(&e));
            Some(runtime::EXIT_RUNTIME_FAULT)
        }
    }
}
