//! Creating a process: the fork, and everything the child does between fork and exec —
//! namespaces, the container's root filesystem (see `rootfs.rs`), stdio, limits, identity,
//! capabilities, the executable lookup — reported to the parent over a close-on-exec pipe
//! (`report.rs`).
//!
//! The child waits for a byte on the start pipe before it execs, so `create` can report
//! setup errors ("executable not found") and `start` is just the release. vminitd runs a
//! single-threaded runtime, so the child may allocate between fork and exec.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::caps::{self, CapSets};
use crate::report::{ctx, report, ChildErr};
use crate::rootfs::RootfsPlan;
use crate::sys::{self, cvt};
use crate::user::ExecUser;

/// Where the process runs.
pub enum Placement {
    /// A new container: fresh mount, PID, UTS and IPC namespaces over this root filesystem.
    NewContainer(RootfsPlan),
    /// Into an existing container: its namespace files (pid, mnt, uts, ipc).
    Join {
        /// `/proc/<init>/ns/pid`.
        pid: OwnedFd,
        /// mnt, uts, ipc namespace fds to setns into in the child.
        others: Vec<(OwnedFd, libc::c_int)>,
    },
}

/// The process's stdio as the child should set it up.
pub enum ChildStdio {
    /// These fds become 0, 1 and 2.
    Pipes {
        /// fd 0.
        stdin: OwnedFd,
        /// fd 1.
        stdout: OwnedFd,
        /// fd 2.
        stderr: OwnedFd,
    },
    /// A pty allocated by the child from the container's own devpts (so `tty` and ttyname
    /// work inside), its slave as 0/1/2 and controlling terminal; the master is sent back
    /// over `socket`.
    Pty {
        /// The child's end of a socketpair.
        socket: OwnedFd,
        /// Initial (rows, cols).
        size: Option<(u16, u16)>,
    },
}

/// Everything the child needs, prepared by the parent.
pub struct Plan {
    /// Namespaces and root.
    pub placement: Placement,
    /// argv.
    pub args: Vec<CString>,
    /// envp.
    pub env: Vec<CString>,
    /// PATH directories for the lookup of `args[0]`.
    pub path: Vec<PathBuf>,
    /// Working directory inside the container.
    pub cwd: PathBuf,
    /// Identity.
    pub user: ExecUser,
    /// (resource, soft, hard).
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    /// Capabilities.
    pub caps: CapSets,
    /// Set no_new_privs.
    pub no_new_privs: bool,
    /// stdio.
    pub stdio: ChildStdio,
    /// cgroup directory to join (its `cgroup.procs`), if any.
    pub cgroup: Option<PathBuf>,
    /// Exec vminitd's container init (see `container_init.rs`) with `args`, instead of
    /// `args` themselves.
    pub init: bool,
}

/// A forked child waiting to be started.
pub struct Forked {
    /// PID in vminitd's PID namespace.
    pub pid: i32,
    /// Reports from the child; EOF after a successful exec.
    pub status: OwnedFd,
    /// Write a byte to let the child exec; close to make it exit.
    pub start: OwnedFd,
}

/// Forks the child for `plan`. The parent returns at once; the child runs [`child_main`].
pub fn fork(plan: Plan) -> io::Result<Forked> {
    let (status_rd, status_wr) = sys::pipe()?;
    let (start_rd, start_wr) = sys::pipe()?;
    // The child is born in its cgroup where the kernel can (clone3's CLONE_INTO_CGROUP):
    // moving it there after the fork cost about 12 ms of each start under TCG.
    let cgroup_dir = plan.cgroup.as_ref().and_then(|cg| {
        sys::open(cg, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| crate::log!("cannot open cgroup {}: {e}", cg.display()))
            .ok()
    });
    let (pid, in_cgroup) = match &plan.placement {
        Placement::NewContainer(rootfs) => {
            let mut flags =
                libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
            if rootfs.own_network {
                flags |= libc::CLONE_NEWNET;
            }
            fork_into(flags, cgroup_dir.as_ref())?
        }
        Placement::Join { pid, .. } => {
            // pid namespaces are entered by the children of the caller: switch vminitd's
            // pid_for_children, fork, and switch back.
            let own = sys::open(std::path::Path::new("/proc/self/ns/pid"), libc::O_RDONLY, 0)?;
            // SAFETY: setns on fds we own.
            cvt(unsafe { libc::setns(pid.as_raw_fd(), libc::CLONE_NEWPID) })?;
            let r = fork_into(0, cgroup_dir.as_ref());
            // SAFETY: as above; returning to our own active namespace is always allowed.
            unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) };
            r?
        }
    };
    if pid == 0 {
        drop(status_rd);
        drop(start_wr);
        child_main(plan, in_cgroup, status_wr, start_rd)
    }
    drop(status_wr);
    drop(start_rd);
    if let (Some(cg), false) = (&plan.cgroup, in_cgroup) {
        // Join the cgroup from the parent, before the child can exec.
        if let Err(e) = std::fs::write(cg.join("cgroup.procs"), pid.to_string()) {
            crate::log!("cannot move pid {pid} to {}: {e}", cg.display());
        }
    }
    // vminitd shields itself from the OOM killer (see boot.rs); the child inherited that and
    // must be an ordinary candidate again, or a container that exhausts the guest's memory
    // could never be killed.
    let adj = format!("/proc/{pid}/oom_score_adj");
    if let Err(e) = std::fs::write(&adj, b"0") {
        crate::log!("cannot reset {adj}: {e}");
    }
    Ok(Forked {
        pid,
        status: status_rd,
        start: start_wr,
    })
}

/// `struct clone_args` of clone3(2), up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (include/uapi/linux/sched.h, Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks with `ns_flags`, into the cgroup open as `cgroup` when there is one and the kernel
/// can; returns the pid (0 in the child) and whether the child was born in that cgroup.
fn fork_into(ns_flags: libc::c_int, cgroup: Option<&OwnedFd>) -> io::Result<(i32, bool)> {
    let Some(cg) = cgroup else {
        return raw_fork(ns_flags).map(|p| (p, false));
    };
    // clone(2) takes the flag bits as an unsigned long: the cast reinterprets bits.
    #[allow(clippy::cast_sign_loss)]
    let mut args = CloneArgs {
        flags: ns_flags as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cg.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: clone3 with a zero stack behaves like fork(2): the child continues on a copy of
    // our stack. `args` outlives the call; vminitd is single-threaded, so no lock can be held
    // by another thread.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_mut(&mut args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match cvt(pid) {
        Ok(p) => Ok((p as i32, true)),
        // A kernel before 5.7 (or one whose cgroup refuses): fork, then move the child.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)
            ) =>
        {
            raw_fork(ns_flags).map(|p| (p, false))
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn raw_fork(ns_flags: libc::c_int) -> io::Result<i32> {
    // clone(2) takes the flag bits as an unsigned long: the cast reinterprets bits.
    #[allow(clippy::cast_sign_loss)]
    // SAFETY: clone with a null stack behaves like fork(2); the child continues on a copy of
    // our stack. vminitd is single-threaded, so no lock can be held by another thread.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (ns_flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    cvt(pid).map(|p| p as i32)
}

/// Child side: never returns.
fn child_main(plan: Plan, in_cgroup: bool, status: OwnedFd, start: OwnedFd) -> ! {
    let mut status = std::fs::File::from(status);
    // A panic must not unwind into the copy of vminitd's runtime this child carries.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child_setup(&plan, in_cgroup, &mut status, start)
    }));
    let code = match result {
        Ok(Ok(never)) => match never {},
        Ok(Err((kind, e, msg))) => {
            let errno = e.raw_os_error().unwrap_or(0);
            report(&mut status, kind, errno, &format!("{msg}: {e}"));
            1
        }
        Err(_) => {
            report(
                &mut status,
                b'E',
                0,
                "internal error while setting up the process",
            );
            1
        }
    };
    // SAFETY: _exit never returns and skips atexit handlers/destructors of the parent's
    // state that this forked copy must not run.
    unsafe { libc::_exit(code) }
}

enum Never {}

fn child_setup(
    plan: &Plan,
    in_cgroup: bool,
    status: &mut std::fs::File,
    start: OwnedFd,
) -> Result<Never, ChildErr> {
    // SAFETY: plain syscalls on our own process; the sigset is initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Rust's runtime ignores SIGPIPE; exec keeps ignored signals ignored.
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        libc::setsid();
    }
    match &plan.placement {
        Placement::NewContainer(rootfs) => {
            if let Some(cg) = &plan.cgroup {
                // Into its cgroup first (unless born there), so that the cgroup namespace made
                // now is rooted there (the parent's move of it afterwards changes nothing).
                if !in_cgroup {
                    ctx(sys::write_file(&cg.join("cgroup.procs"), b"0"), || {
                        format!("join cgroup {}", cg.display())
                    })?;
                }
                if !rootfs.cgroupns_host {
                    // SAFETY: unshare with a flag; affects only this process.
                    ctx(cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }), || {
                        "make a cgroup namespace".into()
                    })?;
                }
            }
            crate::rootfs::setup(rootfs)?
        }
        Placement::Join { others, .. } => {
            for (fd, kind) in others {
                // SAFETY: setns on an fd we own; we are single-threaded after fork.
                ctx(cvt(unsafe { libc::setns(fd.as_raw_fd(), *kind) }), || {
                    "join container namespace".into()
                })?;
            }
        }
    }
    stdio(&plan.stdio)?;

    let u = &plan.user;
    // As root still: working directory (created as docker does), limits.
    if std::fs::metadata(&plan.cwd).is_err() {
        let _ = std::fs::create_dir_all(&plan.cwd);
        let c = sys::cstr(&plan.cwd).map_err(|e| (b'E', e, "cwd".into()))?;
        // SAFETY: valid C string.
        unsafe { libc::chown(c.as_ptr(), u.uid, u.gid) };
    }
    ctx(std::env::set_current_dir(&plan.cwd), || {
        format!("chdir to {}", plan.cwd.display())
    })?;
    for (res, soft, hard) in &plan.rlimits {
        let lim = libc::rlimit {
            rlim_cur: *soft,
            rlim_max: *hard,
        };
        // SAFETY: lim is a valid rlimit.
        ctx(cvt(unsafe { libc::setrlimit(*res, &lim) }), || {
            format!("setrlimit {res}")
        })?;
    }
    if plan.no_new_privs {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        ctx(cvt(r), || "set no_new_privs".into())?;
    }

    // Identity: keep capabilities across setuid, then set exactly the sets asked for.
    ctx(caps::drop_bounding(plan.caps.bounding), || {
        "drop bounding capabilities".into()
    })?;
    // SAFETY: prctl/setgroups/setgid/setuid with valid arguments; groups outlives the call.
    unsafe {
        ctx(cvt(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0)), || {
            "keep capabilities".into()
        })?;
        ctx(
            cvt(libc::setgroups(u.groups.len(), u.groups.as_ptr())),
            || "setgroups".into(),
        )?;
        ctx(cvt(libc::setgid(u.gid)), || format!("setgid {}", u.gid))?;
        ctx(cvt(libc::setuid(u.uid)), || format!("setuid {}", u.uid))?;
    }
    ctx(caps::apply(&plan.caps), || "set capabilities".into())?;

    // With an init, the command is still looked up here: a missing or non-executable one is
    // reported as such (127, 126) before the container starts, not by the init after.
    // An init without a command is a pod's pause process: nothing to look up.
    let mut exe = match plan.args.first() {
        Some(cmd) => lookup(cmd, &plan.path)?,
        None => CString::default(),
    };
    let mut args = plan.args.clone();
    if plan.init {
        exe = lookup(&crate::container_init::exe(), &[])
            .map_err(|(_, e, msg)| (b'E', e, format!("the container init {msg}")))?;
        args = crate::container_init::argv(&plan.args);
    }
    report(status, b'R', 0, "");

    // Wait for start (or for the parent to give up, which closes the pipe).
    let mut b = [0u8; 1];
    let mut start = std::fs::File::from(start);
    match start.read(&mut b) {
        Ok(1) => {}
        _ => {
            // SAFETY: exiting the child without running the parent's destructors.
            unsafe { libc::_exit(1) }
        }
    }
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: exe, argv and envp are NUL-terminated arrays of valid C strings that live
    // until execve replaces the process image.
    unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let e = io::Error::last_os_error();
    let name = exe.to_string_lossy().into_owned();
    Err(match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => (b'N', e, format!("exec {name}")),
        _ => (b'X', e, format!("exec {name}")),
    })
}

/// Sets up fds 0/1/2 (dup2 clears close-on-exec on the new fds).
fn stdio(s: &ChildStdio) -> Result<(), ChildErr> {
    let dup = |fd: i32, target: i32| {
        // SAFETY: dup2 on fds we own.
        ctx(cvt(unsafe { libc::dup2(fd, target) }), || {
            "set up stdio".into()
        })
    };
    match s {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            dup(stdin.as_raw_fd(), 0)?;
            dup(stdout.as_raw_fd(), 1)?;
            dup(stderr.as_raw_fd(), 2)?;
        }
        ChildStdio::Pty { socket, size } => {
            let (master, slave) = ctx(sys::openpty(*size), || "open /dev/ptmx".into())?;
            for target in 0..3 {
                dup(slave.as_raw_fd(), target)?;
            }
            // SAFETY: fd 0 is the pty slave now; we are a session leader (setsid above).
            let r = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
            ctx(cvt(r), || "set controlling terminal".into())?;
            ctx(sys::send_fd(socket, &master), || {
                "pass the pty to vminitd".into()
            })?;
        }
    }
    Ok(())
}

/// Finds `arg0` as execvp would: a name with a `/` is used as is, otherwise each PATH
/// directory is tried; the first executable regular file wins. Distinguishes "no such file"
/// (127) from "found but not executable" (126).
pub(crate) fn lookup(arg0: &CString, path: &[PathBuf]) -> Result<CString, ChildErr> {
    let name = std::ffi::OsStr::from_bytes(arg0.as_bytes());
    let candidates: Vec<PathBuf> = if name.as_bytes().contains(&b'/') {
        vec![PathBuf::from(name)]
    } else {
        path.iter().map(|d| d.join(name)).collect()
    };
    let display = name.to_string_lossy().into_owned();
    let mut denied = None;
    for c in &candidates {
        let Ok(meta) = std::fs::metadata(c) else {
            continue;
        };
        let cpath = sys::cstr(c).map_err(|e| (b'N', e, display.clone()))?;
        // SAFETY: valid C string.
        let ok = unsafe {
            libc::faccessat(libc::AT_FDCWD, cpath.as_ptr(), libc::X_OK, libc::AT_EACCESS)
        } == 0;
        if meta.is_file() && ok {
            return Ok(cpath);
        }
        denied.get_or_insert(c.clone());
    }
    match denied {
        Some(p) => Err((
            b'X',
            io::Error::from_raw_os_error(libc::EACCES),
            format!("{}", p.display()),
        )),
        None => Err((
            b'N',
            io::Error::from_raw_os_error(libc::ENOENT),
            format!("executable file {display:?} not found in $PATH"),
        )),
    }
}

/// Maps an OCI rlimit name to the resource number.
pub fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}
