//! A monitor that ends its container when the process that owns it dies: a containerd shim
//! sets [`OWNER_ENV`] for the monitors it starts.
//!
//! containerd runs a dead shim's `delete` action to end the task's VM, but gives it 5 s and
//! kills it after; with that `delete` gone too (or containerd itself down when the shim
//! died), nothing would ever stop the VM, and containerd has forgotten the task. The monitor
//! watches its shim instead (a pidfd, no polling) and stops the container the moment the
//! shim is gone, as containerd already considers it: no restart, killed at once.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;

use super::{Shared, StopOrder};

/// `PID:START` of the process whose death ends the container (START: its start time in
/// clock ticks, field 22 of `/proc/PID/stat`, so a reused pid is not mistaken for it).
pub const OWNER_ENV: &str = "CONTAINER_MONITOR_OWNER";

/// The [`OWNER_ENV`] value naming the calling process.
pub fn owner_value() -> Option<String> {
    let pid = std::process::id();
    Some(format!("{pid}:{}", start_time(pid)?))
}

/// Start time of `pid` in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: count fields after it.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Watches the owner for as long as the monitor runs (ended on drop).
pub(super) struct OwnerWatch(Option<tokio::task::JoinHandle<()>>);

impl OwnerWatch {
    /// Starts watching the owner [`OWNER_ENV`] names, if any.
    pub(super) fn start(shared: Arc<Shared>) -> OwnerWatch {
        let Some(value) = std::env::var(OWNER_ENV).ok().filter(|v| !v.is_empty()) else {
            return OwnerWatch(None);
        };
        let Some((pid, start)) = value
            .split_once(':')
            .and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?)))
        else {
            tracing::warn!("{OWNER_ENV}={value:?} is not PID:START: not watched");
            return OwnerWatch(None);
        };
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: a descriptor pidfd_open just returned, owned by nobody else.
        let pidfd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) });
        // The pidfd is of the process the pid names now: if its start time is not the
        // owner's, the owner is already gone (and its pid reused).
        let alive = pidfd.filter(|_| start_time(pid) == Some(start));
        OwnerWatch(Some(tokio::spawn(async move {
            if let Some(fd) = alive {
                // SAFETY: an OwnedFd stays open and keeps its number until the AsyncFd drops it.
                match unsafe { tokio::io::unix::AsyncFd::register(fd) }
                    .map_err(|e| e.into_parts().1)
                {
                    Ok(afd) => {
                        let _ = afd.readable().await;
                    }
                    Err(e) => {
                        tracing::warn!("cannot watch owner pid {pid}: {e}");
                        return;
                    }
                }
            }
            tracing::warn!("the process that owns this container (pid {pid}) is gone: stopping it");
            shared.control.shut_down();
            let _ = shared.stop.send(StopOrder {
                signal: libc::SIGKILL,
                grace: std::time::Duration::ZERO,
            });
        })))
    }
}

impl Drop for OwnerWatch {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_names_this_process_as_it_started() {
        let v = owner_value().unwrap();
        let (pid, start) = v.split_once(':').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        assert!(start.parse::<u64>().unwrap() > 0);
        assert_eq!(start_time(std::process::id()), start.parse().ok());
    }
}
