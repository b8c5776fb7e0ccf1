//! `start`: spawn the container's monitor, detached in its own session, and connect to it.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::net::UnixStream;

use super::{Container, ContainerError, Verb};
use crate::client;
use crate::protocol::Request;
use crate::state::Status;

/// How long a monitor may take to open its socket.
const MONITOR_START: Duration = Duration::from_secs(30);

/// How to re-execute the `container` binary as a monitor.
#[derive(Debug, Clone)]
pub struct MonitorCommand {
    /// The `container` executable.
    pub program: PathBuf,
    /// The state root to pass with `--root`.
    pub root: PathBuf,
}

/// Which monitor to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Launch {
    /// Run the process at once.
    Run,
    /// Hold the process until the first client attaches (bounded wait).
    WaitAttach,
    /// Hold mode: boot the VM for one copy on a stopped container (see
    /// `monitor::MonitorOptions::hold`); the process does not run, the state does not change.
    Hold,
}

impl Container {
    /// Starts the container and returns its monitor's socket once it answers. With
    /// `wait_attach`, the process waits for the first attach (so no output is missed).
    pub async fn start(&self, wait_attach: bool) -> Result<UnixStream, ContainerError> {
        let how = if wait_attach {
            Launch::WaitAttach
        } else {
            Launch::Run
        };
        self.launch_and_connect(how, MONITOR_START).await
    }

    /// Starts the container and returns once its process runs (`start`, `run -d`).
    pub async fn start_detached(&self) -> Result<(), ContainerError> {
        let stream = self.start(false).await?;
        client::request(stream, self.id(), Request::WaitStarted).await?;
        Ok(())
    }

    /// [`Container::start_detached`], except that a container that already runs is left as
    /// it is and is no error (docker's `start`); returns whether this call started it.
    pub async fn start_unless_running(&self) -> Result<bool, ContainerError> {
        match self.start_detached().await {
            Ok(()) => Ok(true),
            Err(ContainerError::WrongState {
                verb: Verb::Start,
                status: Status::Running | Status::Restarting,
                ..
            }) => Ok(false),
            Err(ContainerError::WrongState {
                verb: Verb::Start, ..
            }) => {
                self.join_start().await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Waits for a start already under way (a live monitor whose record is not running yet,
    /// e.g. of a `run -d` killed half-way) to bring the process up, as docker's `start`
    /// waits on the container's lock; starts it here if that monitor died meanwhile.
    async fn join_start(&self) -> Result<(), ContainerError> {
        let store = self.rt.store();
        let record = store.reconcile(store.load(self.id())?)?;
        let Some(pid) = record.monitor_pid else {
            return self.start_detached().await;
        };
        let stream = client::connect_starting(store, self.id(), pid, MONITOR_START).await?;
        client::request(stream, self.id(), Request::WaitStarted).await?;
        Ok(())
    }

    pub(crate) async fn launch_and_connect(
        &self,
        how: Launch,
        timeout: Duration,
    ) -> Result<UnixStream, ContainerError> {
        // A pod's member runs in its pod's VM: the pod starts first, as podman starts it.
        if let Some(infra) = crate::pod::infra_of(&self.record) {
            if how != Launch::Hold || self.rt.container(infra)?.status().is_up() {
                // Boxed: starting the infra container is this same function, one level down.
                let pod = self.rt.container(infra)?;
                Box::pin(pod.start_unless_running()).await?;
            } else {
                return Err(crate::pod::PodError::NotRunning {
                    pod: infra[..12.min(infra.len())].to_string(),
                    message: "a stopped pod's containers are reached through its VM: start the pod"
                        .into(),
                }
                .into());
            }
        }
        let pid = self.launch(how)?;
        let store = self.rt.store();
        Ok(client::connect_starting(store, self.id(), pid, timeout).await?)
    }

    /// Spawns the monitor and returns its pid.
    fn launch(&self, how: Launch) -> Result<u32, ContainerError> {
        let store = self.rt.store();
        let cmd = self.rt.monitor_command();
        let id = self.id();
        let _guard = store.lock(id)?;
        let mut record = store.reconcile_locked(store.load(id)?)?;
        Container::new(self.rt.clone(), record.clone()).check(Verb::Start)?;
        // A VM waiting in the pool becomes this container's monitor, when one fits.
        let opts = crate::monitor::MonitorOptions {
            wait_attach: how == Launch::WaitAttach,
            hold: how == Launch::Hold,
        };
        if let Some(pid) = crate::real::pool::claim(&cmd.root, &record, opts) {
            record.monitor_pid = Some(pid);
            store.save(&record)?;
            return Ok(pid);
        }
        let spawn_err = |source| ContainerError::SpawnMonitor {
            program: cmd.program.display().to_string(),
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(store.dir_of(id).join("monitor.log"))
            .map_err(spawn_err)?;
        let log2 = log.try_clone().map_err(spawn_err)?;
        let mut command = Command::new(&cmd.program);
        command
            .arg("--root")
            .arg(&cmd.root)
            .arg(crate::MONITOR_SUBCOMMAND)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        match how {
            Launch::Run => {}
            Launch::WaitAttach => {
                command.arg("--wait-attach");
            }
            Launch::Hold => {
                command.arg("--hold");
            }
        }
        let pid = spawn_detached(&mut command).map_err(spawn_err)?;
        // Record the pid now so a concurrent start sees it; the monitor rewrites it itself.
        record.monitor_pid = Some(pid);
        store.save(&record)?;
        Ok(pid)
    }
}

/// Starts `command` in a session of its own, so that it outlives its caller and the caller's
/// terminal (a monitor, a pool process), and returns its pid. It stays our child until it
/// ends: a long-lived caller (the Engine API server, a monitor) must reap it, or each one that
/// ends leaves a zombie behind. A thread that only waits costs nothing while it blocks; a
/// short-lived CLI exits before it matters.
pub(crate) fn spawn_detached(command: &mut Command) -> std::io::Result<u32> {
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(pid)
}
