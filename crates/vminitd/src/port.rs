//! The virtio-serial agent port: found by name under /sys/class/virtio-ports, opened once,
//! and kept open across host reconnects. While no host is connected the port reads EOF and
//! polls POLLHUP, so vminitd polls it at a short interval until a host appears.

use std::io;
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

/// Waits (up to `timeout`) for the port to appear, then opens it.
pub async fn open(name: &str, timeout: Duration) -> io::Result<FdStream> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(dev) = find(name) {
            // devtmpfs creates the node asynchronously; retry a missing node too.
            match sys::open(&dev, libc::O_RDWR | libc::O_NOCTTY, 0) {
                Ok(fd) => return FdStream::new(fd),
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

/// Waits until a host is connected to the port (POLLHUP clears).
pub async fn wait_for_host(port: &FdStream) {
    loop {
        let mut pfd = libc::pollfd {
            fd: port.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n >= 0 && pfd.revents & libc::POLLHUP == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
