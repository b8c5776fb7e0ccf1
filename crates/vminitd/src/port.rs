//! The virtio-serial agent port: found by name under /sys/class/virtio-ports, opened once,
//! and kept open across host reconnects. While no host is connected the port reads EOF and
//! polls POLLHUP, so vminitd polls it at a short interval until a host appears.
//!
//! Each session reads and writes the port through its own reactor registration ([`session`]):
//! tokio never clears a "read closed" readiness once it has seen POLLHUP (on a socket that is
//! final), but a port's hang-up ends when the next host connects. A registration that had seen
//! one would report the port readable forever, and every read that found no data would loop
//! straight back: a clone whose host connected after it resumed spun at 100 % of its vCPU.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fdio::FdStream;
use crate::sys;

/// Looks for the port's device node, e.g. `/dev/vport1p1`.
pub fn find(name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    for e in entries.flatten() {
        let n = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if n.trim() == name {
            return Some(Path::new("/dev").join(e.file_name()));
        }
    }
    None
}

/// Waits (up to `timeout`) for the port to appear, then opens it (non-blocking).
pub async fn open(name: &str, timeout: Duration) -> io::Result<OwnedFd> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(dev) = find(name) {
            // devtmpfs creates the node asynchronously; retry a missing node too.
            match sys::open(&dev, libc::O_RDWR | libc::O_NOCTTY, 0) {
                Ok(fd) => {
                    sys::set_nonblocking(fd.as_raw_fd(), true)?;
                    return Ok(fd);
                }
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                Err(_) => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("virtio port {name} did not appear"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until a host is connected to the port (POLLHUP clears). Polls every millisecond at
/// first (a booting VM's host connects within a few), backing off to every 10 ms.
pub async fn wait_for_host(port: &OwnedFd) {
    let mut pause = Duration::from_millis(1);
    loop {
        let mut pfd = libc::pollfd {
            fd: port.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n >= 0 && pfd.revents & libc::POLLHUP == 0 {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// The port for one host session: a duplicate of its fd with a registration of its own, so no
/// readiness of an earlier session (above all its hang-up) carries over. Dropping it closes
/// the duplicate only; the port stays open.
pub fn session(port: &OwnedFd) -> io::Result<FdStream> {
    FdStream::new(port.try_clone()?)
}
