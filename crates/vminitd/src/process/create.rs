//! Creating a process: checking the request, placing it (a new container, or into a running
//! one's namespaces), turning the OCI process spec into the child's [`Plan`], forking, and
//! waiting for the child's report before the process enters the table.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent::{CreateProcess, ProcessHandle, ProcessSpec};

use super::{lock, Container, Phase, Processes, DEFAULT_PATH};
use crate::caps::{self, CapSets};
use crate::error::GuestError;
use crate::fdio::FdStream;
use crate::report::Report;
use crate::rootfs::RootfsPlan;
use crate::spawn::{self, ChildStdio, Placement, Plan};
use crate::sys;
use crate::user;

/// Where a new process goes, as [`Processes::placement`] decided it.
struct Placed {
    placement: Placement,
    rootfs: PathBuf,
    cgroup: Option<PathBuf>,
    hostname: String,
    /// The process is the first of a new container.
    new_container: bool,
    /// Mount points the container's setup will create, to remove at its deletion.
    stubs: Vec<PathBuf>,
}

/// The process's stdio: the child's ends, and ours.
struct Stdio {
    child: ChildStdio,
    /// With a terminal: where the child sends the pty master once it made one.
    pty_sock: Option<OwnedFd>,
    stdin: Option<FdStream>,
    stdout: Option<FdStream>,
    stderr: Option<FdStream>,
}

impl Processes {
    /// Creates a process (and its container when `req.container` is new).
    pub async fn create(self: &Arc<Self>, req: CreateProcess) -> Result<ProcessHandle, GuestError> {
        let spec = &req.process;
        check_request(&req)?;
        let id = &req.container;
        let placed = self.placement(&req)?;

        let u = user::resolve(&placed.rootfs, &spec.user, &spec.additional_groups)?;
        let env = environment(spec, &u.home, &placed.hostname);
        let path_var = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let args = c_strings(&spec.args, "argument")?;
        let envc = c_strings(&env, "environment entry")?;
        let caps_sets = cap_sets(spec, u.uid)?;
        let rlimits = rlimits(spec)?;
        let Stdio {
            child: child_stdio,
            pty_sock,
            mut stdin,
            mut stdout,
            stderr,
        } = Stdio::new(spec)?;
        let cwd = working_dir(spec)?;

        let plan = Plan {
            placement: placed.placement,
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
            cgroup: placed.cgroup.clone(),
            init: spec.init,
        };
        let forked = spawn::fork(plan).map_err(|e| GuestError::sys("fork", e))?;
        let status =
            FdStream::new(forked.status).map_err(|e| GuestError::sys("register status pipe", e))?;
        let created = Phase::Created {
            start: forked.start,
            status: status.clone(),
        };
        let (handle, stdin_rx) = self.register(id, forked.pid, created, spec.stdin);

        let mut report = read_report(&status).await;
        if let (Report::Ready, Some(sock)) = (&report, &pty_sock) {
            // The child sent the pty master before it reported ready: it is the process's
            // output, and its input when it has stdin.
            match self.receive_pty(handle, sock) {
                Ok(m) => {
                    if spec.stdin {
                        stdin = Some(m.clone());
                    }
                    stdout = Some(m);
                }
                Err(failed) => report = failed,
            }
        }
        if !matches!(report, Report::Ready) {
            let _ = sys::kill(forked.pid, libc::SIGKILL);
            self.forget(handle);
            return Err(GuestError::Spawn(report));
        }
        if placed.new_container {
            lock(&self.inner).containers.insert(
                id.clone(),
                Container {
                    init: handle,
                    init_pid: forked.pid,
                    rootfs: placed.rootfs,
                    cgroup: placed.cgroup,
                    hostname: placed.hostname,
                    stopped: false,
                    stubs: placed.stubs,
                },
            );
        }
        self.attach_stdio(handle, stdin.zip(stdin_rx), spec.terminal, stdout, stderr);
        if req.start {
            if let Err(e) = self.start(handle).await {
                self.discard(handle);
                return Err(e);
            }
        }
        Ok(handle)
    }

    /// Takes the pty master the child sent as the process's terminal. A failure becomes the
    /// child's report.
    fn receive_pty(&self, handle: ProcessHandle, sock: &OwnedFd) -> Result<FdStream, Report> {
        match sys::recv_fd(sock).and_then(FdStream::new) {
            Ok(m) => {
                if let Some(p) = lock(&self.inner).procs.get_mut(&handle) {
                    p.pty = Some(m.clone());
                }
                Ok(m)
            }
            Err(e) => Err(Report::Failed {
                errno: e.raw_os_error().unwrap_or(0),
                message: format!("receive the pty from the child: {e}"),
            }),
        }
    }

    /// Into the namespaces of container `req.container` when it runs; else a new container
    /// over `req.rootfs`, for which this writes /etc/hostname, /etc/hosts and resolv.conf and
    /// makes the cgroup.
    fn placement(&self, req: &CreateProcess) -> Result<Placed, GuestError> {
        let id = &req.container;
        let inner = lock(&self.inner);
        if let Some(c) = inner.containers.get(id) {
            if req.rootfs.is_some() {
                return Err(GuestError::AlreadyExists(format!(
                    "container {id} already exists"
                )));
            }
            if c.stopped {
                return Err(GuestError::WrongState(format!(
                    "cannot exec in container {id}: it is stopped"
                )));
            }
            let ns = |n: &str| {
                let p = format!("/proc/{}/ns/{n}", c.init_pid);
                sys::open(Path::new(&p), libc::O_RDONLY, 0)
                    .map_err(|e| GuestError::sys(format!("open {p}"), e))
            };
            let others = vec![
                // The VM's own for most containers; a RUN --network=none step's its own.
                (ns("net")?, libc::CLONE_NEWNET),
                (ns("ipc")?, libc::CLONE_NEWIPC),
                (ns("uts")?, libc::CLONE_NEWUTS),
                (ns("cgroup")?, libc::CLONE_NEWCGROUP),
                (ns("mnt")?, libc::CLONE_NEWNS),
            ];
            let placement = Placement::Join {
                pid: ns("pid")?,
                others,
            };
            return Ok(Placed {
                placement,
                rootfs: c.rootfs.clone(),
                cgroup: c.cgroup.clone(),
                hostname: c.hostname.clone(),
                new_container: false,
                stubs: Vec::new(),
            });
        }
        drop(inner);
        let Some(rootfs) = &req.rootfs else {
            return Err(GuestError::NotFound(format!(
                "container {id} does not exist (the first process needs a rootfs)"
            )));
        };
        let rootfs = PathBuf::from(rootfs);
        if !rootfs.is_dir() {
            return Err(GuestError::NotFound(format!(
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
        let write = |name: &str, text: &str| -> Result<PathBuf, GuestError> {
            let p = dir.join(name);
            sys::mkdir_p(&dir)
                .and_then(|_| sys::write_file(&p, text.as_bytes()))
                .map_err(|e| GuestError::sys(format!("write {}", p.display()), e))?;
            Ok(p)
        };
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n{}",
            config.hosts
        );
        let mut files = vec![
            (
                "/etc/hostname".to_string(),
                write("hostname", &format!("{hostname}\n"))?,
            ),
            ("/etc/hosts".to_string(), write("hosts", &hosts)?),
        ];
        if !config.keep_resolv_conf {
            files.push((
                "/etc/resolv.conf".to_string(),
                write("resolv.conf", &config.resolv_conf)?,
            ));
        }
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
        let stubs = if req.remove_stubs {
            let targets = files
                .iter()
                .map(|(p, _)| p.as_str())
                .chain(req.mounts.iter().map(|m| m.target.as_str()));
            missing_mount_points(&rootfs, targets)
        } else {
            Vec::new()
        };
        let plan = RootfsPlan {
            rootfs: rootfs.clone(),
            hostname: Some(hostname.clone()),
            readonly: req.readonly_rootfs,
            files,
            mounts: req.mounts.clone(),
            privileged: req.privileged,
            own_network: req.own_network,
            sysctl: req.sysctl.clone().into_iter().collect(),
            shm_size: req
                .shm_size
                .filter(|&s| s > 0)
                .unwrap_or(crate::rootfs::DEFAULT_SHM_SIZE),
            cgroup_fs: cgroup.is_some(),
            cgroupns_host: req.cgroupns_host,
            devices: req.devices.clone(),
            masked_paths: req.masked_paths.clone(),
            readonly_paths: req.readonly_paths.clone(),
        };
        Ok(Placed {
            placement: Placement::NewContainer(plan),
            rootfs,
            cgroup,
            hostname,
            new_container: true,
            stubs,
        })
    }
}

/// The mount points [`crate::rootfs::setup`] will create in `rootfs` because they are
/// missing, parents before children: `/proc`, `/sys`, `/dev`, the files bound over and the
/// targets of the container's mounts (with their directories).
fn missing_mount_points<'a>(rootfs: &Path, targets: impl Iterator<Item = &'a str>) -> Vec<PathBuf> {
    let mut stubs = Vec::new();
    let mut add = |p: PathBuf| {
        if !stubs.contains(&p) && std::fs::symlink_metadata(&p).is_err() {
            stubs.push(p);
        }
    };
    for dir in ["proc", "sys", "dev"] {
        add(rootfs.join(dir));
    }
    for path in targets {
        let rel = Path::new(path.trim_start_matches('/'));
        // Never anything outside the rootfs (a target with `..` gets no removal).
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        let mut at = rootfs.to_path_buf();
        for part in rel.iter() {
            at.push(part);
            add(at.clone());
        }
    }
    stubs
}

/// Removes the mount points a container's setup made (children first), each only while it
/// is still an empty file or directory: what the process itself put there stays.
pub(super) fn remove_stubs(stubs: &[PathBuf]) {
    for p in stubs.iter().rev() {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(p);
            }
            _ => {}
        }
    }
}

/// What is wrong with a request before anything is touched: no command, or a container id
/// that could escape the run directory.
fn check_request(req: &CreateProcess) -> Result<(), GuestError> {
    // An init with no command is a pod's pause process (see `container_init::pause`).
    if req.process.args.is_empty() && !req.process.init {
        return Err(GuestError::InvalidArgument("process args are empty".into()));
    }
    let id = &req.container;
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        || id.starts_with('.')
    {
        return Err(GuestError::InvalidArgument(format!(
            "invalid container id {id:?}"
        )));
    }
    for key in req.sysctl.keys() {
        crate::system::sysctl_path(Path::new("/proc"), key)?;
    }
    Ok(())
}

/// The spec's environment with what a login would set and the spec left out: PATH, HOME,
/// HOSTNAME, and TERM with a terminal.
fn environment(spec: &ProcessSpec, home: &str, hostname: &str) -> Vec<String> {
    let mut env: Vec<String> = spec.env.clone();
    let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    if !has(&env, "HOSTNAME") && !hostname.is_empty() {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if spec.terminal && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    env
}

/// Strings for execve; `what` names them in the error for one with a NUL.
fn c_strings(v: &[String], what: &str) -> Result<Vec<CString>, GuestError> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| GuestError::InvalidArgument(format!("{what} contains NUL: {s:?}")))
        })
        .collect()
}

/// The capability sets: the spec's own when it gives all five, else its one set (or the
/// default) as bounding, effective and permitted for root only, as docker does.
fn cap_sets(spec: &ProcessSpec, uid: u32) -> Result<CapSets, GuestError> {
    let unknown = |n| GuestError::InvalidArgument(format!("unknown capability {n}"));
    if let Some(c) = &spec.capabilities {
        let m = |v: &Vec<String>| caps::mask(v).map_err(unknown);
        return Ok(CapSets {
            bounding: m(&c.bounding)?,
            effective: m(&c.effective)?,
            permitted: m(&c.permitted)?,
            inheritable: m(&c.inheritable)?,
            ambient: m(&c.ambient)?,
        });
    }
    let d = match &spec.capability_set {
        Some(set) => caps::mask(set).map_err(unknown)?,
        None => caps::mask(&agent::caps::DEFAULT).unwrap_or(0),
    };
    let own = if uid == 0 { d } else { 0 };
    Ok(CapSets {
        bounding: d,
        effective: own,
        permitted: own,
        inheritable: 0,
        ambient: 0,
    })
}

/// The spec's rlimits as (resource, soft, hard).
fn rlimits(spec: &ProcessSpec) -> Result<Vec<(libc::__rlimit_resource_t, u64, u64)>, GuestError> {
    spec.rlimits
        .iter()
        .map(|r| {
            let res = spawn::rlimit_resource(&r.kind)
                .ok_or_else(|| GuestError::InvalidArgument(format!("unknown rlimit {}", r.kind)))?;
            Ok((res, r.soft, r.hard))
        })
        .collect()
}

/// The working directory: the spec's, or `/`; it must be absolute.
fn working_dir(spec: &ProcessSpec) -> Result<PathBuf, GuestError> {
    let cwd = PathBuf::from(
        spec.cwd
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "/".into()),
    );
    if !cwd.is_absolute() {
        return Err(GuestError::InvalidArgument(format!(
            "working directory {} is not absolute",
            cwd.display()
        )));
    }
    Ok(cwd)
}

impl Stdio {
    /// Pipes (stdin from /dev/null unless the spec wants it), or for a terminal a socketpair
    /// over which the child sends the pty master it allocates inside the container.
    fn new(spec: &ProcessSpec) -> Result<Stdio, GuestError> {
        if spec.terminal {
            let (mine, theirs) = sys::socketpair().map_err(|e| GuestError::sys("socketpair", e))?;
            return Ok(Stdio {
                child: ChildStdio::Pty {
                    socket: theirs,
                    size: spec.console_size,
                },
                pty_sock: Some(mine),
                stdin: None,
                stdout: None,
                stderr: None,
            });
        }
        let pipe = || sys::pipe().map_err(|e| GuestError::sys("pipe", e));
        let reg = |fd| FdStream::new(fd).map_err(|e| GuestError::sys("register pipe", e));
        let (stdin_child, stdin) = if spec.stdin {
            let (r, w) = pipe()?;
            (r, Some(reg(w)?))
        } else {
            let null = sys::open(Path::new("/dev/null"), libc::O_RDWR, 0)
                .map_err(|e| GuestError::sys("open /dev/null", e))?;
            (null, None)
        };
        let (or, ow) = pipe()?;
        let (er, ew) = pipe()?;
        Ok(Stdio {
            child: ChildStdio::Pipes {
                stdin: stdin_child,
                stdout: ow,
                stderr: ew,
            },
            pty_sock: None,
            stdin,
            stdout: Some(reg(or)?),
            stderr: Some(reg(er)?),
        })
    }
}

/// The child's first report: ready, or why its setup failed.
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
