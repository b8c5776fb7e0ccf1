//! The process table: creating, starting, waiting for, signalling and deleting processes.
//! Split by concern, one `impl Processes` per file: this file has the table and the lifecycle
//! after creation; `create.rs` turns a request into a forked child; `session.rs` wires each
//! process's stdio (pumps in `stdio.rs`) to the current host. The reaper is in `reaper.rs`.

mod create;
mod session;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent::server::Outbox;
use agent::{stream_id, ExitStatus, ProcessHandle, StdioStream};
use tokio::sync::{mpsc, watch};

use crate::error::GuestError;
use crate::fdio::FdStream;
use crate::report::Report;
use crate::stdio::{Credit, StdinMsg};
use crate::sys;

/// stdin credit granted to the host per process (and again after each reconnect).
pub const STDIN_WINDOW: u32 = 64 * 1024;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

enum Phase {
    Created { start: OwnedFd, status: FdStream },
    Running,
    Exited,
}

struct Proc {
    container: String,
    pid: i32,
    phase: Phase,
    exit: watch::Sender<Option<ExitStatus>>,
    pty: Option<FdStream>,
    stdin: Option<mpsc::UnboundedSender<StdinMsg>>,
}

/// A container: the namespaces of its first process.
pub struct Container {
    /// Handle of the init process.
    pub init: ProcessHandle,
    /// PID of the init process.
    pub init_pid: i32,
    /// Root filesystem path in the guest.
    pub rootfs: PathBuf,
    /// Its cgroup directory, when cgroup v2 is available.
    pub cgroup: Option<PathBuf>,
    /// Hostname.
    pub hostname: String,
    /// Whether its init has exited.
    pub stopped: bool,
    /// Mount points its setup created, removed with it (`CreateProcess::remove_stubs`).
    pub stubs: Vec<PathBuf>,
}

#[derive(Default)]
struct Inner {
    next_handle: ProcessHandle,
    procs: HashMap<ProcessHandle, Proc>,
    by_pid: HashMap<i32, ProcessHandle>,
    containers: HashMap<String, Container>,
    credits: HashMap<u32, Arc<Credit>>,
    gen: u64,
    outbox: Option<Outbox>,
}

/// Guest-wide settings used for new containers.
#[derive(Default, Clone)]
pub struct GuestConfig {
    /// Hostname.
    pub hostname: String,
    /// resolv.conf contents.
    pub resolv_conf: String,
    /// Leave each container's own resolv.conf (`--no-dns`) instead of `resolv_conf`.
    pub keep_resolv_conf: bool,
    /// Extra hosts lines.
    pub hosts: String,
}

/// All processes and containers of the guest.
pub struct Processes {
    inner: Mutex<Inner>,
    /// Guest-wide settings.
    pub config: Mutex<GuestConfig>,
    /// Where per-container files live (`/run/containers`).
    pub run_dir: PathBuf,
    /// cgroup v2 root, when mounted.
    pub cgroup_root: Option<PathBuf>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections are single map operations; a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Processes {
    /// An empty table.
    pub fn new(run_dir: PathBuf, cgroup_root: Option<PathBuf>) -> Arc<Processes> {
        let inner = Inner {
            next_handle: 1,
            ..Default::default()
        };
        Arc::new(Processes {
            inner: Mutex::new(inner),
            config: Mutex::new(GuestConfig::default()),
            run_dir,
            cgroup_root,
        })
    }

    /// Handles of processes that have not been deleted.
    pub fn handles(&self) -> Vec<ProcessHandle> {
        let mut v: Vec<_> = lock(&self.inner).procs.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The init pid of running container `id`, whose namespaces a helper joins.
    pub(crate) fn running_container(&self, id: &str) -> Result<i32, GuestError> {
        let inner = lock(&self.inner);
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| GuestError::NotFound(format!("container {id} does not exist")))?;
        if c.stopped {
            return Err(GuestError::WrongState(format!(
                "container {id} is not running"
            )));
        }
        Ok(c.init_pid)
    }

    /// Registers a helper vminitd forked itself (a copy) as a running process of `container`
    /// and starts its stdio pumps, exactly as for a created process: its streams, `wait`,
    /// `kill` and `delete` work the same. Call right after the fork, before any await, so the
    /// reaper finds the pid.
    pub(crate) fn adopt(
        self: &Arc<Self>,
        container: &str,
        pid: i32,
        stdin: Option<FdStream>,
        stdout: FdStream,
        stderr: FdStream,
    ) -> ProcessHandle {
        let (handle, stdin_rx) = self.register(container, pid, Phase::Running, stdin.is_some());
        let stdin = stdin.zip(stdin_rx);
        self.attach_stdio(handle, stdin, false, Some(stdout), Some(stderr));
        handle
    }

    /// Enters a forked process into the table, with the queue of its stdin when it has one.
    /// Synchronous on purpose: called right after the fork, before any await, so the reaper
    /// finds the pid.
    fn register(
        &self,
        container: &str,
        pid: i32,
        phase: Phase,
        stdin: bool,
    ) -> (ProcessHandle, Option<mpsc::UnboundedReceiver<StdinMsg>>) {
        let mut inner = lock(&self.inner);
        let h = inner.next_handle;
        inner.next_handle += 1;
        let (exit, _) = watch::channel(None);
        let (tx, rx) = match stdin.then(mpsc::unbounded_channel) {
            Some((tx, rx)) => (Some(tx), Some(rx)),
            None => (None, None),
        };
        inner.procs.insert(
            h,
            Proc {
                container: container.to_string(),
                pid,
                phase,
                exit,
                pty: None,
                stdin: tx,
            },
        );
        inner.by_pid.insert(pid, h);
        (h, rx)
    }

    /// Drops a helper that failed before it was handed to the host (it is killed; the
    /// reaper collects it).
    pub(crate) fn discard(&self, handle: ProcessHandle) {
        if let Some(p) = lock(&self.inner).procs.get(&handle) {
            let _ = sys::kill(p.pid, libc::SIGKILL);
        }
        self.forget(handle);
    }

    /// Lets a created process exec; returns its pid.
    pub async fn start(&self, handle: ProcessHandle) -> Result<i32, GuestError> {
        let (start, status, pid) = {
            let mut inner = lock(&self.inner);
            let p = inner
                .procs
                .get_mut(&handle)
                .ok_or_else(|| no_process(handle))?;
            match std::mem::replace(&mut p.phase, Phase::Running) {
                Phase::Created { start, status } => (start, status, p.pid),
                other => {
                    let state = if matches!(other, Phase::Running) {
                        "running"
                    } else {
                        "exited"
                    };
                    p.phase = other;
                    return Err(GuestError::WrongState(format!(
                        "cannot start process {handle}: it is {state}"
                    )));
                }
            }
        };
        let mut f = std::fs::File::from(start);
        std::io::Write::write_all(&mut f, b"s")
            .map_err(|e| GuestError::sys("release process", e))?;
        drop(f);
        // EOF on the status pipe: exec succeeded (close-on-exec closed the child's end).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            match status.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(GuestError::sys("read exec status", e)),
            }
        }
        if buf.is_empty() {
            Ok(pid)
        } else {
            Err(GuestError::Spawn(Report::decode(&buf)))
        }
    }

    /// Waits for the process to exit.
    pub async fn wait(&self, handle: ProcessHandle) -> Result<ExitStatus, GuestError> {
        let mut rx = {
            let inner = lock(&self.inner);
            let p = inner.procs.get(&handle).ok_or_else(|| no_process(handle))?;
            if matches!(p.phase, Phase::Created { .. }) {
                return Err(GuestError::WrongState(format!(
                    "cannot wait for process {handle}: it was not started"
                )));
            }
            p.exit.subscribe()
        };
        loop {
            if let Some(s) = *rx.borrow_and_update() {
                return Ok(s);
            }
            if rx.changed().await.is_err() {
                return Err(no_process(handle));
            }
        }
    }

    /// Signals a process, or with `all` every process of its container.
    pub fn kill(&self, handle: ProcessHandle, signal: i32, all: bool) -> Result<(), GuestError> {
        let inner = lock(&self.inner);
        let p = inner.procs.get(&handle).ok_or_else(|| no_process(handle))?;
        if let Phase::Exited = p.phase {
            return Err(GuestError::WrongState(format!(
                "cannot signal process {handle}: it has exited"
            )));
        }
        if all {
            if let Some(cg) = inner
                .containers
                .get(&p.container)
                .and_then(|c| c.cgroup.as_ref())
            {
                let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = sys::kill(pid, signal);
                }
                return Ok(());
            }
        }
        sys::kill(p.pid, signal)
            .map_err(|e| GuestError::sys(format!("kill {} with signal {signal}", p.pid), e))
    }

    /// Resizes the pty.
    pub fn resize(&self, handle: ProcessHandle, rows: u16, cols: u16) -> Result<(), GuestError> {
        let inner = lock(&self.inner);
        let p = inner.procs.get(&handle).ok_or_else(|| no_process(handle))?;
        let pty = p
            .pty
            .as_ref()
            .ok_or_else(|| GuestError::WrongState(format!("process {handle} has no terminal")))?;
        sys::set_winsize(pty.raw(), rows, cols).map_err(|e| GuestError::sys("resize pty", e))
    }

    /// Closes stdin after what was queued.
    pub fn close_stdin(&self, handle: ProcessHandle) -> Result<(), GuestError> {
        let mut inner = lock(&self.inner);
        let p = inner
            .procs
            .get_mut(&handle)
            .ok_or_else(|| no_process(handle))?;
        if let Some(tx) = p.stdin.take() {
            let _ = tx.send(StdinMsg::Eof);
        }
        Ok(())
    }

    /// Forgets an exited (or never started) process.
    pub fn delete(&self, handle: ProcessHandle) -> Result<(), GuestError> {
        {
            let inner = lock(&self.inner);
            let p = inner.procs.get(&handle).ok_or_else(|| no_process(handle))?;
            if let Phase::Running = p.phase {
                return Err(GuestError::WrongState(format!(
                    "cannot delete process {handle}: it is running"
                )));
            }
            if let Phase::Created { .. } = p.phase {
                let _ = sys::kill(p.pid, libc::SIGKILL);
            }
        }
        self.forget(handle);
        Ok(())
    }

    fn forget(&self, handle: ProcessHandle) {
        let mut inner = lock(&self.inner);
        let Some(p) = inner.procs.remove(&handle) else {
            return;
        };
        for s in [StdioStream::Stdout, StdioStream::Stderr] {
            inner.credits.remove(&stream_id(handle, s));
        }
        if let Some(h) = inner.by_pid.get(&p.pid) {
            if *h == handle && matches!(p.phase, Phase::Exited) {
                inner.by_pid.remove(&p.pid);
            }
        }
        let is_init = inner
            .containers
            .get(&p.container)
            .is_some_and(|c| c.init == handle);
        if is_init {
            if let Some(c) = inner.containers.remove(&p.container) {
                if let Some(cg) = c.cgroup {
                    let _ = std::fs::remove_dir(cg);
                }
                let _ = std::fs::remove_dir_all(self.run_dir.join(&p.container));
                create::remove_stubs(&c.stubs);
            }
        }
    }

    /// The container's cgroup and its first process's pid, for its process list.
    pub fn container_view(&self, id: &str) -> Result<(Option<PathBuf>, i32), GuestError> {
        let inner = lock(&self.inner);
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| GuestError::NotFound(format!("container {id} does not exist")))?;
        Ok((c.cgroup.clone(), c.init_pid))
    }

    /// The container's cgroup, for statistics.
    pub fn container_cgroup(&self, id: &str) -> Result<Option<PathBuf>, GuestError> {
        let inner = lock(&self.inner);
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| GuestError::NotFound(format!("container {id} does not exist")))?;
        Ok(c.cgroup.clone())
    }

    /// Records the exit of a reaped child. Unknown pids (orphans) are just dropped.
    pub fn reaped(&self, pid: i32, mut status: ExitStatus) {
        let mut guard = lock(&self.inner);
        // One borrow of the table's fields each: the process and its container.
        let inner = &mut *guard;
        let Some(handle) = inner.by_pid.remove(&pid) else {
            return;
        };
        let Some(p) = inner.procs.get_mut(&handle) else {
            return;
        };
        p.phase = Phase::Exited;
        p.stdin = None;
        if let Some(c) = inner.containers.get_mut(&p.container) {
            if c.init == handle {
                c.stopped = true;
                status.oom_kills = c.cgroup.as_deref().and_then(crate::system::oom_kills);
            }
        }
        // send_replace: stores the value even when nobody waits yet (send would drop it).
        p.exit.send_replace(Some(status));
    }

    /// PIDs of every live process we started (for shutdown).
    pub fn live_pids(&self) -> Vec<i32> {
        lock(&self.inner).by_pid.keys().copied().collect()
    }
}

fn no_process(handle: ProcessHandle) -> GuestError {
    GuestError::NotFound(format!("no process with handle {handle}"))
}
