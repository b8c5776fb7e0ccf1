//! One `virtiofsd` per shared host directory, run for exactly as long as the VM: started on the
//! VM's own thread before QEMU (which connects to its socket), killed and reaped there once QEMU
//! has ended. virtiofsd is sandboxed to the shared directory (a mount namespace with only that
//! directory, seccomp) and `--readonly` makes the host refuse writes for `:ro` shares.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::backend::HostShare;

/// How long virtiofsd may take to create its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// One share to serve: the directory, its socket and virtiofsd's log.
#[derive(Debug, Clone)]
pub struct ShareLaunch {
    /// What to share.
    pub share: HostShare,
    /// vhost-user socket QEMU connects to.
    pub socket: PathBuf,
    /// virtiofsd's stderr.
    pub log: PathBuf,
}

/// The virtiofsd binary: `$CONTAINER_VIRTIOFSD`, else `virtiofsd` on `PATH`, in cargo's bin
/// directory (`cargo install virtiofsd`), or where Debian's qemu puts it.
pub fn find_virtiofsd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINER_VIRTIOFSD") {
        return Some(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("virtiofsd"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&home).join("bin/virtiofsd"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/virtiofsd"));
    }
    candidates.push("/usr/libexec/virtiofsd".into());
    candidates.into_iter().find(|p| p.is_file())
}

/// Running virtiofsd processes.
#[derive(Debug, Default)]
pub struct Daemons {
    children: Vec<Daemon>,
}

/// One running virtiofsd and the directory it serves (named when it dies).
#[derive(Debug)]
struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemons {
    /// Starts one virtiofsd per share and waits for each socket; on error the ones already
    /// started are stopped.
    pub fn start(bin: &Path, shares: &[ShareLaunch]) -> Result<Daemons, String> {
        let mut daemons = Daemons::default();
        for s in shares {
            let _ = std::fs::remove_file(&s.socket);
            let log = std::fs::File::create(&s.log)
                .map_err(|e| format!("create {}: {e}", s.log.display()))?;
            let mut cmd = Command::new(bin);
            cmd.arg("--socket-path")
                .arg(&s.socket)
                .arg("--shared-dir")
                .arg(&s.share.dir)
                .args(["--sandbox", "namespace", "--cache", "auto"]);
            if s.share.readonly {
                cmd.arg("--readonly");
            }
            if !s.share.device_nodes {
                // Without CAP_MKNOD virtiofsd cannot make block or character devices; fifos
                // and sockets need no capability and still work.
                cmd.arg("--modcaps=-mknod");
            }
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
            // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal
            // (the VM thread is the parent thread), so it dies with the monitor.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd
                .spawn()
                .map_err(|e| format!("start {}: {e}", bin.display()))?;
            daemons.children.push(Daemon {
                child,
                dir: s.share.dir.clone(),
            });
            let deadline = Instant::now() + READY_TIMEOUT;
            while !s.socket.exists() {
                let exited = daemons
                    .children
                    .last_mut()
                    .and_then(|d| d.child.try_wait().ok().flatten());
                if exited.is_some() || Instant::now() > deadline {
                    let text = std::fs::read_to_string(&s.log).unwrap_or_default();
                    let last = text.lines().last().unwrap_or("no output").to_string();
                    daemons.stop();
                    return Err(format!(
                        "virtiofsd for {} did not start: {last}",
                        s.share.dir.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(daemons)
    }

    /// Kills and reaps every daemon.
    pub fn stop(&mut self) {
        for d in &mut self.children {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
        self.children.clear();
    }

    /// Blocks until QEMU (`qemu`) or one of the daemons ends. Returns what to tell of a
    /// daemon that ended first; `None` once QEMU has ended (or when there is nothing to watch,
    /// or the kernel has no pidfds: then only QEMU's end is seen).
    ///
    /// A file server that dies leaves every guest request on its share unanswered for good
    /// (QEMU's vhost-user-fs does not reconnect): the guest's processes hang in the kernel
    /// and so would `start`, `exec` and `stop`. The caller ends the VM instead.
    pub fn watch(&mut self, qemu: u32) -> Option<String> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        if self.children.is_empty() {
            return None;
        }
        let open = |pid: u32| {
            // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
            // SAFETY: a descriptor pidfd_open just returned, owned by nobody else.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
        };
        // A daemon is our child: its pidfd can be opened until it is reaped, even as a zombie.
        let mut fds = vec![open(qemu)?];
        for d in &self.children {
            fds.push(open(d.child.id())?);
        }
        let mut polled: Vec<libc::pollfd> = fds
            .iter()
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        loop {
            // SAFETY: `polled` is a valid array of `polled.len()` pollfds for the call.
            let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return None;
            }
            if polled[0].revents != 0 {
                return None;
            }
            if let Some(i) = polled[1..].iter().position(|p| p.revents != 0) {
                let d = &mut self.children[i];
                let how = match d.child.wait() {
                    Ok(status) => super::vm::how_it_ended(&status),
                    Err(e) => e.to_string(),
                };
                return Some(format!("virtiofsd for {} {how}", d.dir.display()));
            }
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop();
    }
}
