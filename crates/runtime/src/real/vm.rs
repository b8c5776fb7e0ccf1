//! One QEMU process and its guest agent: started on a dedicated thread (which QEMU's
//! parent-death signal follows), watched until it exits, and connected to vminitd with
//! retried handshakes. Used by the backend for containers ([`super::qemu`]) and by template
//! builds ([`super::template`]).

use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch};
use vmm::VirtualMachine;

use crate::backend::{BootError, ControlError, Vm, VmControl, VmExit};

/// How long the guest agent may take to answer after QEMU starts (TCG on a busy host is slow).
const AGENT_TIMEOUT: Duration = Duration::from_secs(90);
/// First handshake attempt's timeout. QEMU's virtio-serial reads nothing from the agent
/// socket while the guest's port is closed, so a Hello sent early waits there and is answered
/// once vminitd opens the port (11–18 ms after it, traced), and one attempt covers a cold
/// boot's 1–1.5 s under TCG. (It was 250 ms, on the belief that such a Hello is lost: every
/// cold boot then reconnected two or three times, and a port that opened at an attempt's end
/// waited for the next connection.) An attempt that gets no answer (a guest agent that dropped
/// its session, a connection QEMU never took) is repeated on a new connection, the wait
/// doubling up to [`HANDSHAKE_MAX`].
const HANDSHAKE_FIRST: Duration = Duration::from_secs(2);
const HANDSHAKE_MAX: Duration = Duration::from_secs(8);

pub(crate) fn boot_err(message: impl Into<String>) -> BootError {
    BootError::Boot {
        message: message.into(),
        source: None,
    }
}

pub(crate) fn boot_src<E: std::error::Error + Send + Sync + 'static>(
    message: impl Into<String>,
) -> impl FnOnce(E) -> BootError {
    let message = message.into();
    move |e| BootError::Boot {
        message,
        source: Some(Box::new(e)),
    }
}

/// A QEMU process watched by its own thread.
pub(crate) struct QemuHandle {
    pub(crate) pid: Option<u32>,
    pub(crate) exit: watch::Receiver<Option<String>>,
    /// QEMU's QMP socket, for pause and resume.
    pub(crate) qmp: Option<std::path::PathBuf>,
    /// What must live as long as the VM (a pre-booted VM's socket directory).
    pub(crate) keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// Pause and resume through QMP `stop` and `cont`. QEMU's QMP socket serves one client at a
/// time, so each call connects, runs its command and hangs up, one call at a time.
struct QmpControl {
    socket: std::path::PathBuf,
    busy: tokio::sync::Mutex<()>,
}

impl QmpControl {
    async fn run(&self, op: &'static str, command: &'static str) -> Result<(), ControlError> {
        let _one = self.busy.lock().await;
        let socket = self.socket.clone();
        let err = move |source: Box<dyn std::error::Error + Send + Sync>| ControlError::Command {
            op,
            source,
        };
        tokio::task::spawn_blocking(move || {
            let mut q = vmm::qmp::Qmp::connect(&socket, Duration::from_secs(5))?;
            q.execute(command, None).map(|_| ())
        })
        .await
        .map_err(|e| err(Box::new(e)))?
        .map_err(|e| err(Box::new(e)))
    }
}

#[async_trait]
impl VmControl for QmpControl {
    async fn pause(&self) -> Result<(), ControlError> {
        self.run("pause", "stop").await
    }

    async fn resume(&self) -> Result<(), ControlError> {
        self.run("resume", "cont").await
    }
}

#[async_trait]
impl Vm for QemuHandle {
    fn pid(&self) -> Option<u32> {
        self.pid
    }

    async fn wait(&mut self) -> VmExit {
        match self.exit.wait_for(|e| e.is_some()).await {
            Ok(e) => VmExit(e.clone().unwrap_or_default()),
            Err(_) => VmExit("the VM thread ended".into()),
        }
    }

    async fn kill(&mut self) {
        if let Some(pid) = self.pid {
            if self.exit.borrow().is_none() {
                // SAFETY: kill(2) of our own child, which its watcher thread has not reaped yet
                // (it publishes the exit only after reaping), so the pid is still ours.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.wait()).await;
    }

    fn control(&self) -> Option<std::sync::Arc<dyn VmControl>> {
        let socket = self.qmp.clone()?;
        Some(std::sync::Arc::new(QmpControl {
            socket,
            busy: tokio::sync::Mutex::new(()),
        }))
    }
}

/// Starts QEMU on a dedicated thread; returns once it runs (or failed to start).
pub(crate) async fn spawn_vm(
    cfg: vmm::VmConfig,
    shares: Vec<super::virtiofs::ShareLaunch>,
    netns: Option<std::path::PathBuf>,
) -> Result<QemuHandle, BootError> {
    let virtiofsd = if shares.is_empty() {
        None
    } else {
        Some(super::virtiofs::find_virtiofsd().ok_or_else(|| {
            boot_err("virtiofsd not found (needed for bind mounts): install it with scripts/setup.sh or set CONTAINER_VIRTIOFSD")
        })?)
    };
    let (started_tx, started_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = watch::channel(None);
    let qmp = cfg.qmp_socket.clone();
    std::thread::Builder::new()
        .name("qemu".into())
        .spawn(move || {
            // QEMU opens its taps by name in its own network namespace: this thread enters
            // the container's first, and the processes it starts inherit it.
            if let Some(ns) = &netns {
                let entered = std::fs::File::open(ns).and_then(|f| {
                    use std::os::fd::AsRawFd;
                    // SAFETY: setns(2) on an open namespace descriptor, for this thread only.
                    match unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
                if let Err(e) = entered {
                    let msg = format!("enter the network namespace {}", ns.display());
                    let _ = started_tx.send(Err(boot_src(msg)(e)));
                    return;
                }
            }
            // The file servers live on this thread, as long as QEMU does.
            let mut daemons = match &virtiofsd {
                Some(bin) => match super::virtiofs::Daemons::start(bin, &shares) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = started_tx.send(Err(boot_err(e)));
                        return;
                    }
                },
                None => super::virtiofs::Daemons::default(),
            };
            let mut vm = vmm::QemuVm::new(cfg);
            vm.kill_on_parent_death(true);
            if let Err(e) = vm.start() {
                let _ = started_tx.send(Err(boot_src("start QEMU")(e)));
                return;
            }
            let _ = started_tx.send(Ok(vm.pid()));
            let why = match vm.pid().and_then(|pid| daemons.watch(pid)) {
                Some(gone) => {
                    // Its share would hang the guest: the VM ends, for that reason.
                    tracing::error!("{gone}: stopping the VM");
                    let _ = vm.kill();
                    let _ = vm.wait();
                    gone
                }
                None => match vm.wait() {
                    Ok(status) => format!("qemu {}", how_it_ended(&status)),
                    Err(e) => crate::error_line(&e),
                },
            };
            daemons.stop();
            let _ = exit_tx.send(Some(why));
        })
        .map_err(boot_src("spawn VM thread"))?;
    match started_rx.await {
        Ok(Ok(pid)) => Ok(QemuHandle {
            pid,
            exit: exit_rx,
            qmp,
            keep: None,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(boot_err("start QEMU: the VM thread ended")),
    }
}

/// How a process ended, for reasons: "killed by signal N" or "exited with status N".
pub(crate) fn how_it_ended(status: &std::process::ExitStatus) -> String {
    match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(status),
    ) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(c), _) => format!("exited with status {c}"),
        _ => "exited".into(),
    }
}

/// The last lines of the console log, for error messages.
fn console_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Connects to the agent, retrying the handshake until the guest answers, QEMU exits, or the
/// deadline passes.
pub(crate) async fn connect_agent(
    sock: &Path,
    mut early: Option<UnixStream>,
    vm: &mut QemuHandle,
    console: &Path,
) -> Result<agent::Client, BootError> {
    let deadline = Instant::now() + AGENT_TIMEOUT;
    let mut attempt_timeout = HANDSHAKE_FIRST;
    loop {
        if let Some(why) = vm.exit.borrow().clone() {
            return Err(boot_err(format!(
                "the VM stopped during boot ({why}); console: {}",
                console_tail(console)
            )));
        }
        if Instant::now() > deadline {
            return Err(boot_err(format!(
                "the guest agent did not answer within {} s; console: {}",
                AGENT_TIMEOUT.as_secs(),
                console_tail(console)
            )));
        }
        let first = early.take();
        let attempt = async {
            let stream = match first {
                Some(s) => s,
                None => UnixStream::connect(sock).await.ok()?,
            };
            tokio::time::timeout(attempt_timeout, agent::Client::connect(stream))
                .await
                .ok()?
                .ok()
        };
        tokio::select! {
            c = attempt => match c {
                Some(c) => return Ok(c),
                None => {
                    tracing::debug!("no answer to the agent handshake within {attempt_timeout:?}: again");
                    attempt_timeout = (attempt_timeout * 2).min(HANDSHAKE_MAX);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = vm.exit.changed() => {}
        }
    }
}
