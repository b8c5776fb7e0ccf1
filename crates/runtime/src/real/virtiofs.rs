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
    children: Vec<Child>,
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
            daemons.children.push(child);
            let deadline = Instant::now() + READY_TIMEOUT;
            while !s.socket.exists() {
                let exited = daemons
                    .children
                    .last_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
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
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop();
    }
}
