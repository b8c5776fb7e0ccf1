//! The QEMU `microvm` backend of [`VirtualMachine`]: spawns, watches and stops one QEMU.
//!
//! QEMU runs in its own process group (a Ctrl-C meant for an attached client never reaches it
//! directly). Its stderr is drained by a thread that keeps the last few KiB, so a QEMU that
//! fails can be reported with its own words. `start` returns once QEMU's main loop runs (it
//! answers QMP on one end of a private socket pair): options checked, kernel loaded, agent
//! socket listening.

use std::io::Read;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, VmConfig};
use crate::handoff::Handoff;

/// How much of QEMU's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;
/// How long QEMU may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of running a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The config cannot be turned into a command line.
    #[error("invalid VM configuration")]
    Config(#[source] ConfigError),
    /// The QEMU binary is not installed.
    #[error("{0} not found: install QEMU (Debian package qemu-system-x86)")]
    QemuNotFound(PathBuf),
    /// Spawning QEMU failed for another reason.
    #[error("cannot start {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited while starting.
    #[error("QEMU exited during startup ({status}): {stderr}")]
    EarlyExit { status: String, stderr: String },
    /// QEMU did not come up in time.
    #[error("QEMU did not answer within 10 s")]
    StartTimeout,
    /// A lifecycle call in the wrong state.
    #[error("cannot {op}: the VM {state}")]
    State {
        op: &'static str,
        state: &'static str,
    },
    /// Waiting for or signalling the process failed.
    #[error("cannot {op} the QEMU process")]
    Process {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Preparing host files for the VM failed.
    #[error("cannot prepare {path} for the VM")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A virtual machine backend. Optional operations default to "unsupported".
pub trait VirtualMachine {
    /// Boots the VM; returns when the hypervisor is up (its agent socket listening, if any).
    fn start(&mut self) -> Result<(), VmError>;
    /// The hypervisor's process id, once started.
    fn pid(&self) -> Option<u32>;
    /// Blocks until the VM ends and returns the hypervisor's exit status.
    fn wait(&mut self) -> Result<ExitStatus, VmError>;
    /// The exit status if the VM has ended, without blocking.
    fn try_wait(&mut self) -> Result<Option<ExitStatus>, VmError>;
    /// Ends the VM at once (SIGKILL) and reaps it.
    fn kill(&mut self) -> Result<(), VmError>;
    /// Sends a signal to the hypervisor process (e.g. SIGTERM for an orderly QEMU exit).
    fn signal(&mut self, _signal: i32) -> Result<(), VmError> {
        Err(VmError::State {
            op: "signal",
            state: "backend does not support signals",
        })
    }
}

/// A VM run by `qemu-system-x86_64 -M microvm`.
pub struct QemuVm {
    config: VmConfig,
    child: Option<Child>,
    status: Option<ExitStatus>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
    kill_on_drop: bool,
    parent_death_kill: bool,
    /// The uid QEMU runs as, held until this value is dropped (after QEMU is killed).
    lease: Option<crate::uid::Lease>,
}

impl QemuVm {
    /// A VM for `config`, not started yet.
    pub fn new(config: VmConfig) -> Self {
        QemuVm {
            config,
            child: None,
            status: None,
            stderr: Arc::new(Mutex::new(Vec::new())),
            stderr_thread: None,
            kill_on_drop: true,
            parent_death_kill: false,
            lease: None,
        }
    }

    /// The config this VM runs with.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// Kill QEMU (SIGKILL) when the thread that started it exits (`PR_SET_PDEATHSIG`). Use it
    /// from a long-lived thread only: the signal follows the thread, not the process.
    pub fn kill_on_parent_death(&mut self, on: bool) {
        self.parent_death_kill = on;
    }

    /// Leave QEMU running when this value is dropped (default: it is killed).
    pub fn detach_on_drop(&mut self) {
        self.kill_on_drop = false;
    }

    /// The command line `start` runs (binary first).
    pub fn command_line(&self) -> Result<Vec<String>, VmError> {
        let mut v = vec![self.config.qemu.to_string_lossy().into_owned()];
        v.extend(self.config.args().map_err(VmError::Config)?);
        Ok(v)
    }

    /// The last few KiB QEMU wrote to stderr (complete once it has exited).
    pub fn stderr_tail(&mut self) -> String {
        if self.status.is_some() {
            if let Some(t) = self.stderr_thread.take() {
                let _ = t.join();
            }
        }
        let buf = self.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&buf).trim().to_string()
    }

    fn prepare_files(&self) -> Result<(), VmError> {
        let prep = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| VmError::Prepare { path, source }
        };
        if let Some(dir) = self.config.console_log.parent() {
            std::fs::create_dir_all(dir).map_err(prep(dir))?;
        }
        // QEMU cannot listen where a stale socket file remains.
        for sock in [&self.config.agent_socket, &self.config.qmp_socket]
            .into_iter()
            .flatten()
        {
            match std::fs::remove_file(sock) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(prep(sock)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Spawns QEMU with `args`, inheriting `fds`, as `uid` (and its group, and `groups`) or as
    /// the invoking user.
    fn spawn(
        &mut self,
        args: &[String],
        fds: Vec<RawFd>,
        uid: Option<u32>,
        groups: &[u32],
    ) -> Result<Child, VmError> {
        let mut cmd = Command::new(&self.config.qemu);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let parent_death_kill = self.parent_death_kill;
        let drop_caps = !crate::config::keep_caps();
        let groups: Vec<libc::gid_t> = groups.to_vec();
        // SAFETY: the closure runs in the child between fork and exec and only makes system
        // calls (fcntl, prctl, setgroups, setgid, setuid), which are async-signal-safe;
        // it allocates nothing (`fds` and `groups` were made before the fork).
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // The bounding set needs CAP_SETPCAP, which a change of uid takes away.
                if drop_caps {
                    drop_bounding_set()?;
                }
                if let Some(uid) = uid {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(uid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // After the uid change, which clears it; it survives the exec.
                if parent_death_kill && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if drop_caps {
                    no_new_privileges()
                } else {
                    Ok(())
                }
            });
        }
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                VmError::QemuNotFound(self.config.qemu.clone())
            } else {
                VmError::Spawn {
                    path: self.config.qemu.clone(),
                    source,
                }
            }
        })?;
        if let Some(mut err) = child.stderr.take() {
            let tail = Arc::clone(&self.stderr);
            self.stderr_thread = Some(std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut t) = tail.lock() {
                        t.extend_from_slice(&buf[..n]);
                        let excess = t.len().saturating_sub(STDERR_TAIL);
                        t.drain(..excess);
                    }
                }
            }));
        }
        Ok(child)
    }

    /// Waits until QEMU's main loop answers a QMP command on `ready`, i.e. every option was
    /// checked and the kernel loaded. The greeting alone proves little (QMP's own thread sends
    /// it before the machine exists); an ordinary command is answered by the main loop, which
    /// starts after machine setup. An early exit is reported with QEMU's stderr.
    fn wait_ready(&mut self, ready: UnixStream) -> Result<(), VmError> {
        use std::io::{BufRead, BufReader, Write};
        let begun = Instant::now();
        let fail = |e| VmError::Process {
            op: "talk to",
            source: e,
        };
        let mut conn = ready;
        // A QEMU that already exited makes this fail (EPIPE); the loop reports how it ended.
        let _ = conn.write_all(
            b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-status\",\"id\":\"ready\"}\n",
        );
        conn.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(fail)?;
        let mut lines = BufReader::new(conn);
        let mut line = String::new();
        loop {
            if let Some(status) = self.try_wait()? {
                return Err(VmError::EarlyExit {
                    status: Self::describe(&status),
                    stderr: self.stderr_tail(),
                });
            }
            if begun.elapsed() > START_TIMEOUT {
                let _ = self.kill();
                return Err(VmError::StartTimeout);
            }
            match lines.read_line(&mut line) {
                // QEMU closed its end (EOF, or a reset when it left our commands unread): it
                // is exiting; the next round reports how.
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(_) if line.ends_with('\n') => {
                    if line.contains("\"ready\"") && line.contains("\"return\"") {
                        return Ok(());
                    }
                    line.clear();
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    fn describe(status: &ExitStatus) -> String {
        match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => status.to_string(),
        }
    }

    fn record(&mut self, status: ExitStatus) -> ExitStatus {
        self.status = Some(status);
        self.child = None;
        status
    }
}

impl VirtualMachine for QemuVm {
    fn start(&mut self) -> Result<(), VmError> {
        if self.child.is_some() || self.status.is_some() {
            return Err(VmError::State {
                op: "start",
                state: "was already started",
            });
        }
        let range = self.config.user.range().map_err(VmError::Config)?;
        if range.is_some() && self.config.memory_file.is_some() {
            return Err(VmError::Config(ConfigError::MemoryFileAsOwnUser));
        }
        self.prepare_files()?;
        let mut handoff = Handoff::default();
        let mut args = match range {
            Some(_) => {
                let args = self
                    .config
                    .args_with(&mut handoff)
                    .map_err(VmError::Config)?;
                let mut all = handoff.take_add_fd();
                all.extend(args);
                all
            }
            None => self.config.args().map_err(VmError::Config)?,
        };
        // A private QMP connection, only to learn when QEMU is up: one end of a socket pair
        // (no file to create anywhere, nothing QEMU must be allowed to reach).
        let (ready, theirs) = UnixStream::pair().map_err(|source| VmError::Prepare {
            path: "a socket pair".into(),
            source,
        })?;
        let theirs = handoff.keep(theirs.into());
        args.extend([
            "-chardev".to_string(),
            format!("socket,id=ready,fd={theirs}"),
            "-mon".to_string(),
            "chardev=ready,mode=control".to_string(),
        ]);
        let groups = match (range, self.config.accel) {
            // QEMU opens /dev/kvm by path: its group is the only one a QEMU of its own needs.
            (Some(_), crate::Accel::Kvm) => {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata("/dev/kvm")
                    .map(|m| vec![m.gid()])
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        tracing::debug!("starting {:?} {}", self.config.qemu, args.join(" "));
        let mut lease =
            match range {
                Some((first, count)) => Some(crate::uid::lease(first, count).map_err(
                    |source| VmError::Prepare {
                        path: crate::accel::host_cache_dir().join("qemu-uids"),
                        source,
                    },
                )?),
                None => None,
            };
        let child = self.spawn(
            &args,
            handoff.raw_fds(),
            lease.as_ref().map(|l| l.uid()),
            &groups,
        )?;
        if let Some(l) = lease.as_mut() {
            l.record(child.id());
        }
        self.lease = lease;
        // QEMU holds its copies now.
        drop(handoff);
        self.child = Some(child);
        self.wait_ready(ready)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn wait(&mut self) -> Result<ExitStatus, VmError> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let child = self.child.as_mut().ok_or(VmError::State {
            op: "wait",
            state: "was never started",
        })?;
        let status = child.wait().map_err(|source| VmError::Process {
            op: "wait for",
            source,
        })?;
        Ok(self.record(status))
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, VmError> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        match child.try_wait() {
            Ok(Some(status)) => Ok(Some(self.record(status))),
            Ok(None) => Ok(None),
            Err(source) => Err(VmError::Process { op: "poll", source }),
        }
    }

    fn kill(&mut self) -> Result<(), VmError> {
        if let Some(child) = self.child.as_mut() {
            // An already-exited child makes kill fail with InvalidInput; wait settles it.
            let _ = child.kill();
            self.wait()?;
        }
        Ok(())
    }

    fn signal(&mut self, signal: i32) -> Result<(), VmError> {
        let Some(pid) = self.pid() else {
            return Err(VmError::State {
                op: "signal",
                state: "is not running",
            });
        };
        // SAFETY: kill(2) with a pid we spawned and have not reaped (still in `child`), so the
        // pid cannot have been reused.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            return Err(VmError::Process {
                op: "signal",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        if self.kill_on_drop {
            let _ = self.kill();
        }
    }
}

/// QEMU runs with no capability at all, whether it keeps the invoking uid or takes one of its
/// own: its bounding set is emptied before the exec (while the child still has CAP_SETPCAP,
/// so before any uid change), so the exec grants none, and [`no_new_privileges`] keeps a
/// setuid program from giving any back. A guest that takes over QEMU cannot mount, load
/// modules, trace other processes, change the network or pass file permissions. Called between
/// fork and exec: prctl only.
fn drop_bounding_set() -> std::io::Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                // Past the kernel's last capability.
                Some(libc::EINVAL) => break,
                // Without CAP_SETPCAP (not root) there is nothing to drop.
                Some(libc::EPERM) => break,
                _ => return Err(std::io::Error::last_os_error()),
            }
        }
    }
    Ok(())
}

/// Clears the ambient set and sets `no_new_privs` (between fork and exec: prctl only).
fn no_new_privileges() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> VmConfig {
        let mut c = VmConfig::new(dir.join("k"), dir.join("i"), dir.join("log/boot.log"));
        c.agent_socket = Some(dir.join("agent.sock"));
        c
    }

    #[test]
    fn missing_qemu_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.qemu = "/nonexistent/qemu-system-x86_64".into();
        // As the invoking user: a QEMU of its own would first miss the kernel this config
        // does not have.
        c.user = crate::QemuUser::Invoker;
        let err = QemuVm::new(c).start().unwrap_err();
        assert!(matches!(err, VmError::QemuNotFound(_)));
        assert!(err.to_string().contains("qemu-system-x86"), "{err}");
    }

    #[test]
    fn early_exit_reports_stderr() {
        let dir = tempfile::tempdir().unwrap();
        // The kernel file does not exist: QEMU refuses to start and says why.
        let mut c = cfg(dir.path());
        c.user = crate::QemuUser::Invoker;
        let mut vm = QemuVm::new(c);
        let err = vm.start().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, VmError::EarlyExit { .. }), "{text}");
        assert!(text.contains("exit code 1"), "{text}");
        assert!(
            text.contains(&dir.path().join("k").display().to_string()),
            "{text}"
        );
        assert!(vm.pid().is_none());
    }

    #[test]
    fn a_qemu_of_its_own_user_is_told_of_a_missing_kernel_by_its_starter() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.user = crate::QemuUser::Own {
            first: 0x6fff_f000,
            count: 16,
        };
        let mut vm = QemuVm::new(c);
        let err = vm.start().unwrap_err();
        let source = std::error::Error::source(&err).map(|e| e.to_string());
        assert!(matches!(err, VmError::Config(_)), "{err}");
        assert_eq!(
            source,
            Some(format!(
                "cannot open kernel {}",
                dir.path().join("k").display()
            ))
        );
        assert!(vm.pid().is_none());
    }

    #[test]
    fn lifecycle_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut vm = QemuVm::new(cfg(dir.path()));
        assert!(matches!(vm.wait(), Err(VmError::State { .. })));
        assert!(vm.try_wait().unwrap().is_none());
        assert!(vm.kill().is_ok());
        assert!(vm.signal(libc::SIGTERM).is_err());
    }
}
