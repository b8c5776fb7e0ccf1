//! The process table: creating, starting, waiting for, signalling and deleting processes.
//! Their stdio pumps live in `stdio.rs`, the reaper in `reaper.rs`.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agent::server::Outbox;
use agent::{stream_id, CreateProcess, ExitStatus, ProcessHandle, StdioStream};
use tokio::sync::{mpsc, watch};

use crate::caps::{self, CapSets};
use crate::error::Error;
use crate::fdio::FdStream;
use crate::report::Report;
use crate::rootfs::RootfsPlan;
use crate::spawn::{self, ChildStdio, Placement, Plan};
use crate::stdio::{pump_output, pump_stdin, send_eof, Credit, HostSession, StdinMsg};
use crate::sys;
use crate::user;

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

    /// The host went away: credit is void (output pumps wait instead of trying to send into a
    /// closed session) until the next host attaches.
    pub fn end_session(&self) {
        let mut inner = lock(&self.inner);
        inner.gen += 1;
        let gen = inner.gen;
        for c in inner.credits.values() {
            c.reset(gen);
        }
        inner.outbox = None;
    }

    /// A host (re)connected: output credit resets (the host grants it again when it attaches)
    /// and the new host gets fresh stdin credit for every open stdin.
    pub fn new_session(&self, outbox: Outbox) {
        let mut inner = lock(&self.inner);
        inner.gen += 1;
        let gen = inner.gen;
        for c in inner.credits.values() {
            c.reset(gen);
        }
        for (h, p) in &inner.procs {
            if p.stdin.is_some() {
                outbox.window(stream_id(*h, StdioStream::Stdin), STDIN_WINDOW);
            }
        }
        inner.outbox = Some(outbox);
    }

    /// Handles of processes that have not been deleted.
    pub fn handles(&self) -> Vec<ProcessHandle> {
        let mut v: Vec<_> = lock(&self.inner).procs.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The host granted output credit.
    pub fn window(&self, stream: u32, credit: u32) {
        let inner = lock(&self.inner);
        let gen = inner.gen;
        if let Some(c) = inner.credits.get(&stream) {
            c.grant(gen, credit);
        }
    }

    /// stdin bytes from the host.
    pub fn stdin_data(&self, stream: u32, bytes: Vec<u8>, eof: bool) {
        let Some((handle, StdioStream::Stdin)) = agent::split_stream_id(stream) else {
            return;
        };
        let inner = lock(&self.inner);
        let Some(tx) = inner.procs.get(&handle).and_then(|p| p.stdin.as_ref()) else {
            return;
        };
        if !bytes.is_empty() {
            let _ = tx.send(StdinMsg::Data(bytes));
        }
        if eof {
            let _ = tx.send(StdinMsg::Eof);
        }
    }

    /// Creates a process (and its container when `req.container` is new).
    pub async fn create(self: &Arc<Self>, req: CreateProcess) -> Result<ProcessHandle, Error> {
        let spec = &req.process;
        if spec.args.is_empty() {
            return Err(Error::InvalidArgument("process args are empty".into()));
        }
        let id = &req.container;
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            || id.starts_with('.')
        {
            return Err(Error::InvalidArgument(format!(
                "invalid container id {id:?}"
            )));
        }
        let (placement, rootfs, cgroup, hostname, new_container) = self.placement(&req)?;

        let u = user::resolve(&rootfs, &spec.user, &spec.additional_groups)?;
        let mut env: Vec<String> = spec.env.clone();
        let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
        if !has(&env, "PATH") {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        if !has(&env, "HOME") {
            env.push(format!("HOME={}", u.home));
        }
        if !has(&env, "HOSTNAME") && !hostname.is_empty() {
            env.push(format!("HOSTNAME={hostname}"));
        }
        if spec.terminal && !has(&env, "TERM") {
            env.push("TERM=xterm".into());
        }
        let path_var = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let to_c = |v: &[String], what: &str| -> Result<Vec<CString>, Error> {
            v.iter()
                .map(|s| {
                    CString::new(s.as_bytes())
                        .map_err(|_| Error::InvalidArgument(format!("{what} contains NUL: {s:?}")))
                })
                .collect()
        };
        let args = to_c(&spec.args, "argument")?;
        let envc = to_c(&env, "environment entry")?;

        let caps_sets = match &spec.capabilities {
            Some(c) => {
                let m = |v: &Vec<String>| {
                    caps::mask(v)
                        .map_err(|n| Error::InvalidArgument(format!("unknown capability {n}")))
                };
                CapSets {
                    bounding: m(&c.bounding)?,
                    effective: m(&c.effective)?,
                    permitted: m(&c.permitted)?,
                    inheritable: m(&c.inheritable)?,
                    ambient: m(&c.ambient)?,
                }
            }
            None => {
                let d = match &spec.capability_set {
                    Some(set) => caps::mask(set)
                        .map_err(|n| Error::InvalidArgument(format!("unknown capability {n}")))?,
                    None => caps::mask(&agent::caps::DEFAULT).unwrap_or(0),
                };
                let own = if u.uid == 0 { d } else { 0 };
                CapSets {
                    bounding: d,
                    effective: own,
                    permitted: own,
                    inheritable: 0,
                    ambient: 0,
                }
            }
        };
        let mut rlimits = Vec::new();
        for r in &spec.rlimits {
            let res = spawn::rlimit_resource(&r.kind)
                .ok_or_else(|| Error::InvalidArgument(format!("unknown rlimit {}", r.kind)))?;
            rlimits.push((res, r.soft, r.hard));
        }

        // stdio
        let null = || {
            sys::open(Path::new("/dev/null"), libc::O_RDWR, 0)
                .map_err(|e| Error::sys("open /dev/null", e))
        };
        // A terminal is allocated by the child inside the container; its master comes back
        // over `pty_sock` once the child is ready.
        let (child_stdio, pty_sock, mut stdin_w, mut out_r, err_r) = if spec.terminal {
            let (mine, theirs) = sys::socketpair().map_err(|e| Error::sys("socketpair", e))?;
            let stdio = ChildStdio::Pty {
                socket: theirs,
                size: spec.console_size,
            };
            (stdio, Some(mine), None, None, None)
        } else {
            let pipe = || sys::pipe().map_err(|e| Error::sys("pipe", e));
            let reg = |fd| FdStream::new(fd).map_err(|e| Error::sys("register pipe", e));
            let (stdin_child, stdin_w) = if spec.stdin {
                let (r, w) = pipe()?;
                (r, Some(reg(w)?))
            } else {
                (null()?, None)
            };
            let (or, ow) = pipe()?;
            let (er, ew) = pipe()?;
            let stdio = ChildStdio::Pipes {
                stdin: stdin_child,
                stdout: ow,
                stderr: ew,
            };
            (stdio, None, stdin_w, Some(reg(or)?), Some(reg(er)?))
        };

        let cwd = PathBuf::from(
            spec.cwd
                .clone()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "/".into()),
        );
        if !cwd.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "working directory {} is not absolute",
                cwd.display()
            )));
        }
        let plan = Plan {
            placement,
            args,
            env: envc,
            path: path_var
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect(),
            cwd,
            user: u,
            rlimits,
            caps: caps_sets,
            no_new_privs: spec.no_new_privileges,
            stdio: child_stdio,
            cgroup: cgroup.clone(),
        };
        let forked = spawn::fork(plan).map_err(|e| Error::sys("fork", e))?;
        let status =
            FdStream::new(forked.status).map_err(|e| Error::sys("register status pipe", e))?;

        // Register synchronously after fork, before any await, so the reaper finds the pid.
        let handle = {
            let mut inner = lock(&self.inner);
            let h = inner.next_handle;
            inner.next_handle += 1;
            let (exit, _) = watch::channel(None);
            let (tx, rx) = match spec.stdin.then(mpsc::unbounded_channel) {
                Some((tx, rx)) => (Some(tx), Some(rx)),
                None => (None, None),
            };
            inner.procs.insert(
                h,
                Proc {
                    container: id.clone(),
                    pid: forked.pid,
                    phase: Phase::Created {
                        start: forked.start,
                        status: status.clone(),
                    },
                    exit,
                    pty: None,
                    stdin: tx,
                },
            );
            inner.by_pid.insert(forked.pid, h);
            (h, rx)
        };
        let (handle, stdin_rx) = handle;

        let mut report = read_report(&status).await;
        if let (Report::Ready, Some(sock)) = (&report, &pty_sock) {
            // The child sent the pty master before it reported ready.
            match sys::recv_fd(sock).and_then(FdStream::new) {
                Ok(m) => {
                    if let Some(p) = lock(&self.inner).procs.get_mut(&handle) {
                        p.pty = Some(m.clone());
                    }
                    if spec.stdin {
                        stdin_w = Some(m.clone());
                    }
                    out_r = Some(m);
                }
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(0);
                    let message = format!("receive the pty from the child: {e}");
                    report = Report::Failed { errno, message };
                }
            }
        }
        if !matches!(report, Report::Ready) {
            let _ = sys::kill(forked.pid, libc::SIGKILL);
            self.forget(handle);
            return Err(Error::Spawn(report));
        }
        if let (Some(w), Some(rx)) = (stdin_w, stdin_rx) {
            tokio::spawn(pump_stdin(Arc::clone(self), handle, w, rx, spec.terminal));
        }
        if new_container {
            let mut inner = lock(&self.inner);
            inner.containers.insert(
                id.clone(),
                Container {
                    init: handle,
                    init_pid: forked.pid,
                    rootfs,
                    cgroup,
                    hostname,
                    stopped: false,
                },
            );
        }
        if spec.stdin {
            self.grant_stdin(handle, STDIN_WINDOW as usize);
        }
        for (stream, fd) in [(StdioStream::Stdout, out_r), (StdioStream::Stderr, err_r)] {
            let sid = stream_id(handle, stream);
            let credit = self.new_credit(sid);
            match fd {
                Some(fd) => {
                    tokio::spawn(pump_output(Arc::clone(self), sid, fd, credit));
                }
                // A terminal has no separate stderr: end it at once (once attached).
                None => {
                    let me = Arc::clone(self);
                    tokio::spawn(async move { send_eof(&*me, sid, &credit).await });
                }
            }
        }
        Ok(handle)
    }

    /// The init pid of running container `id`, whose namespaces a helper joins.
    pub(crate) fn running_container(&self, id: &str) -> Result<i32, Error> {
        let inner = lock(&self.inner);
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("container {id} does not exist")))?;
        if c.stopped {
            return Err(Error::WrongState(format!("container {id} is not running")));
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
        let (handle, stdin_rx) = {
            let mut inner = lock(&self.inner);
            let h = inner.next_handle;
            inner.next_handle += 1;
            let (exit, _) = watch::channel(None);
            let (tx, rx) = match stdin.is_some().then(mpsc::unbounded_channel) {
                Some((tx, rx)) => (Some(tx), Some(rx)),
                None => (None, None),
            };
            inner.procs.insert(
                h,
                Proc {
                    container: container.to_string(),
                    pid,
                    phase: Phase::Running,
                    exit,
                    pty: None,
                    stdin: tx,
                },
            );
            inner.by_pid.insert(pid, h);
            (h, rx)
        };
        if let (Some(w), Some(rx)) = (stdin, stdin_rx) {
            tokio::spawn(pump_stdin(Arc::clone(self), handle, w, rx, false));
            self.grant_stdin(handle, STDIN_WINDOW as usize);
        }
        for (stream, fd) in [(StdioStream::Stdout, stdout), (StdioStream::Stderr, stderr)] {
            let sid = stream_id(handle, stream);
            let credit = self.new_credit(sid);
            tokio::spawn(pump_output(Arc::clone(self), sid, fd, credit));
        }
        handle
    }

    /// Drops a helper that failed before it was handed to the host (it is killed; the
    /// reaper collects it).
    pub(crate) fn discard(&self, handle: ProcessHandle) {
        if let Some(p) = lock(&self.inner).procs.get(&handle) {
            let _ = sys::kill(p.pid, libc::SIGKILL);
        }
        self.forget(handle);
    }

    #[allow(clippy::type_complexity)]
    fn placement(
        &self,
        req: &CreateProcess,
    ) -> Result<(Placement, PathBuf, Option<PathBuf>, String, bool), Error> {
        let id = &req.container;
        let inner = lock(&self.inner);
        if let Some(c) = inner.containers.get(id) {
            if req.rootfs.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "container {id} already exists"
                )));
            }
            if c.stopped {
                return Err(Error::WrongState(format!(
                    "cannot exec in container {id}: it is stopped"
                )));
            }
            let ns = |n: &str| {
                let p = format!("/proc/{}/ns/{n}", c.init_pid);
                sys::open(Path::new(&p), libc::O_RDONLY, 0)
                    .map_err(|e| Error::sys(format!("open {p}"), e))
            };
            let others = vec![
                (ns("ipc")?, libc::CLONE_NEWIPC),
                (ns("uts")?, libc::CLONE_NEWUTS),
                (ns("mnt")?, libc::CLONE_NEWNS),
            ];
            let placement = Placement::Join {
                pid: ns("pid")?,
                others,
            };
            return Ok((
                placement,
                c.rootfs.clone(),
                c.cgroup.clone(),
                c.hostname.clone(),
                false,
            ));
        }
        drop(inner);
        let Some(rootfs) = &req.rootfs else {
            return Err(Error::NotFound(format!(
                "container {id} does not exist (the first process needs a rootfs)"
            )));
        };
        let rootfs = PathBuf::from(rootfs);
        if !rootfs.is_dir() {
            return Err(Error::NotFound(format!(
                "rootfs {} is not a directory",
                rootfs.display()
            )));
        }
        let config = lock(&self.config).clone();
        let hostname = req
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| {
                if config.hostname.is_empty() {
                    id.chars().take(12).collect()
                } else {
                    config.hostname.clone()
                }
            });
        let dir = self.run_dir.join(id);
        let write = |name: &str, text: &str| -> Result<PathBuf, Error> {
            let p = dir.join(name);
            sys::mkdir_p(&dir)
                .and_then(|_| sys::write_file(&p, text.as_bytes()))
                .map_err(|e| Error::sys(format!("write {}", p.display()), e))?;
            Ok(p)
        };
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n{}",
            config.hosts
        );
        let files = vec![
            (
                "/etc/hostname".to_string(),
                write("hostname", &format!("{hostname}\n"))?,
            ),
            ("/etc/hosts".to_string(), write("hosts", &hosts)?),
            (
                "/etc/resolv.conf".to_string(),
                write("resolv.conf", &config.resolv_conf)?,
            ),
        ];
        let cgroup = match &self.cgroup_root {
            Some(root) => {
                let p = root.join(id);
                match std::fs::create_dir(&p) {
                    Ok(()) => Some(p),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Some(p),
                    Err(e) => {
                        crate::log!("cannot create cgroup {}: {e}", p.display());
                        None
                    }
                }
            }
            None => None,
        };
        let plan = RootfsPlan {
            rootfs: rootfs.clone(),
            hostname: Some(hostname.clone()),
            readonly: req.readonly_rootfs,
            files,
            mounts: req.mounts.clone(),
            privileged: req.privileged,
        };
        Ok((
            Placement::NewContainer(plan),
            rootfs,
            cgroup,
            hostname,
            true,
        ))
    }

    /// Lets a created process exec; returns its pid.
    pub async fn start(&self, handle: ProcessHandle) -> Result<i32, Error> {
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
                    return Err(Error::WrongState(format!(
                        "cannot start process {handle}: it is {state}"
                    )));
                }
            }
        };
        let mut f = std::fs::File::from(start);
        std::io::Write::write_all(&mut f, b"s").map_err(|e| Error::sys("release process", e))?;
        drop(f);
        // EOF on the status pipe: exec succeeded (close-on-exec closed the child's end).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            match status.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(Error::sys("read exec status", e)),
            }
        }
        if buf.is_empty() {
            Ok(pid)
        } else {
            Err(Error::Spawn(Report::decode(&buf)))
        }
    }

    /// Waits for the process to exit.
    pub async fn wait(&self, handle: ProcessHandle) -> Result<ExitStatus, Error> {
        let mut rx = {
            let inner = lock(&self.inner);
            let p = inner.procs.get(&handle).ok_or_else(|| no_process(handle))?;
            if matches!(p.phase, Phase::Created { .. }) {
                return Err(Error::WrongState(format!(
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
    pub fn kill(&self, handle: ProcessHandle, signal: i32, all: bool) -> Result<(), Error> {
        let inner = lock(&self.inner);
        let p = inner.procs.get(&handle).ok_or_else(|| no_process(handle))?;
        if let Phase::Exited = p.phase {
            return Err(Error::WrongState(format!(
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
            .map_err(|e| Error::sys(format!("kill {} with signal {signal}", p.pid), e))
    }

    /// Resizes the pty.
    pub fn resize(&self, handle: ProcessHandle, rows: u16, cols: u16) -> Result<(), Error> {
        let inner = lock(&self.inner);
        let p = inner.procs.get(&handle).ok_or_else(|| no_process(handle))?;
        let pty = p
            .pty
            .as_ref()
            .ok_or_else(|| Error::WrongState(format!("process {handle} has no terminal")))?;
        sys::set_winsize(pty.raw(), rows, cols).map_err(|e| Error::sys("resize pty", e))
    }

    /// Closes stdin after what was queued.
    pub fn close_stdin(&self, handle: ProcessHandle) -> Result<(), Error> {
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
    pub fn delete(&self, handle: ProcessHandle) -> Result<(), Error> {
        {
            let inner = lock(&self.inner);
            let p = inner.procs.get(&handle).ok_or_else(|| no_process(handle))?;
            if let Phase::Running = p.phase {
                return Err(Error::WrongState(format!(
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
            }
        }
    }

    /// Registers the output credit of stream `sid` for the current host connection.
    fn new_credit(&self, sid: u32) -> Arc<Credit> {
        let mut inner = lock(&self.inner);
        let c = Arc::new(Credit::default());
        c.reset(inner.gen);
        inner.credits.insert(sid, Arc::clone(&c));
        c
    }

    /// The container's cgroup, for statistics.
    pub fn container_cgroup(&self, id: &str) -> Result<Option<PathBuf>, Error> {
        let inner = lock(&self.inner);
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("container {id} does not exist")))?;
        Ok(c.cgroup.clone())
    }

    /// Records the exit of a reaped child. Unknown pids (orphans) are just dropped.
    pub fn reaped(&self, pid: i32, status: ExitStatus) {
        let mut inner = lock(&self.inner);
        let Some(handle) = inner.by_pid.remove(&pid) else {
            return;
        };
        let Some(p) = inner.procs.get_mut(&handle) else {
            return;
        };
        p.phase = Phase::Exited;
        p.stdin = None;
        // send_replace: stores the value even when nobody waits yet (send would drop it).
        p.exit.send_replace(Some(status));
        let container = p.container.clone();
        if let Some(c) = inner.containers.get_mut(&container) {
            if c.init == handle {
                c.stopped = true;
            }
        }
    }

    /// PIDs of every live process we started (for shutdown).
    pub fn live_pids(&self) -> Vec<i32> {
        lock(&self.inner).by_pid.keys().copied().collect()
    }
}

impl HostSession for Processes {
    fn send(&self, gen: Option<u64>, stream: u32, bytes: Vec<u8>, eof: bool) -> bool {
        let inner = lock(&self.inner);
        if gen.is_some_and(|g| g != inner.gen) {
            return false;
        }
        inner
            .outbox
            .as_ref()
            .is_some_and(|o| o.data(stream, bytes, eof))
    }

    fn grant_stdin(&self, handle: ProcessHandle, n: usize) {
        let inner = lock(&self.inner);
        if let Some(o) = &inner.outbox {
            o.window(stream_id(handle, StdioStream::Stdin), n as u32);
        }
    }
}

fn no_process(handle: ProcessHandle) -> Error {
    Error::NotFound(format!("no process with handle {handle}"))
}

async fn read_report(status: &FdStream) -> Report {
    let mut buf = vec![0u8; 4096];
    match status.read(&mut buf).await {
        Ok(n) => Report::decode(&buf[..n]),
        Err(e) => Report::Failed {
            errno: e.raw_os_error().unwrap_or(0),
            message: format!("read child status: {e}"),
        },
    }
}
