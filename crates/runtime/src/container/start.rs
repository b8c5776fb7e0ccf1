//! `start`: spawn the container's monitor, detached in its own session.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::ContainerError;
use crate::state::{Status, Store};

/// How to re-execute the `container` binary as a monitor.
#[derive(Debug, Clone)]
pub struct MonitorCommand {
    /// The `container` executable.
    pub program: PathBuf,
    /// The state root to pass with `--root`.
    pub root: PathBuf,
}

/// Starts container `id`: spawns its monitor and returns the monitor's pid. With
/// `wait_attach`, the monitor holds the process until a client attaches (bounded wait).
pub fn start(
    store: &Store,
    id: &str,
    cmd: &MonitorCommand,
    wait_attach: bool,
) -> Result<u32, ContainerError> {
    launch(store, id, cmd, wait_attach.then_some("--wait-attach"))
}

/// Starts a monitor in hold mode for a copy on stopped container `id` (see
/// `monitor::MonitorOptions::hold`): the VM runs, the container's process does not, and its
/// recorded state is left as it is. Refused, like `start`, while a monitor runs.
pub fn start_for_copy(
    store: &Store,
    id: &str,
    cmd: &MonitorCommand,
) -> Result<u32, ContainerError> {
    launch(store, id, cmd, Some("--hold"))
}

fn launch(
    store: &Store,
    id: &str,
    cmd: &MonitorCommand,
    flag: Option<&str>,
) -> Result<u32, ContainerError> {
    let _guard = store.lock(id)?;
    let record = store.reconcile_locked(store.load(id)?)?;
    if record.status == Status::Running || record.monitor_pid.is_some() {
        return Err(ContainerError::WrongState {
            op: "start",
            name: record.name,
            status: Status::Running,
            hint: "",
        });
    }
    let dir = store.dir_of(id);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("monitor.log"))
        .map_err(|source| ContainerError::SpawnMonitor {
            program: cmd.program.display().to_string(),
            source,
        })?;
    let log2 = log
        .try_clone()
        .map_err(|source| ContainerError::SpawnMonitor {
            program: cmd.program.display().to_string(),
            source,
        })?;
    let mut command = Command::new(&cmd.program);
    command
        .arg("--root")
        .arg(&cmd.root)
        .arg(crate::MONITOR_SUBCOMMAND)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if let Some(flag) = flag {
        command.arg(flag);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it detaches the
    // monitor from the caller's session and terminal so it outlives the CLI.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|source| ContainerError::SpawnMonitor {
            program: cmd.program.display().to_string(),
            source,
        })?;
    let pid = child.id();
    // Record the pid now so a concurrent start sees it; the monitor rewrites it itself.
    let mut record = record;
    record.monitor_pid = Some(pid);
    store.save(&record)?;
    Ok(pid)
}
