//! Leases of the uids QEMU processes of their own run as ([`crate::config::QemuUser::Own`]).
//!
//! Two VMs must never share a uid (a QEMU could signal or trace the other), wherever their
//! state roots are, so the leases are host-wide: one lock file per uid under
//! [`crate::accel::host_cache_dir`], `flock`ed by the process that starts the QEMU for as long
//! as it holds the [`Lease`] (the QEMU is killed before it is dropped, and dies with its
//! starter's thread through its parent-death signal). The file also records the QEMU's pid,
//! so a uid whose QEMU outlived its starter anyway is seen as taken rather than reused. The
//! lowest free uid is taken, which keeps the number of lock files at the most VMs ever run at
//! once.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

/// A uid held for one QEMU; free again when dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    uid: u32,
    file: File,
}

impl Lease {
    /// The uid.
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// Records the QEMU running as the uid (best effort: without it, only the lock guards it).
    pub(crate) fn record(&mut self, pid: u32) {
        let _ = self.file.set_len(0);
        let _ = self.file.rewind();
        let _ = write!(self.file, "{pid}");
    }
}

fn dir() -> PathBuf {
    crate::accel::host_cache_dir().join("qemu-uids")
}

/// Takes the lowest uid of `first..first + count` that no live lease and no live process
/// recorded for it holds.
pub(crate) fn lease(first: u32, count: u32) -> std::io::Result<Lease> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    let dir = dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    for uid in (first..first.saturating_add(count)).take(count as usize) {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(uid.to_string()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            continue;
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let orphan = text
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(|pid| std::fs::metadata(format!("/proc/{pid}")).ok())
            .is_some_and(|m| m.uid() == uid);
        if orphan {
            // Its QEMU outlived whoever started it: leave the uid to it.
            continue;
        }
        return Ok(Lease { uid, file });
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("all {count} uids from {first} are in use by VMs"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_uids_and_live_recorded_processes_are_skipped() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (host-wide lock directory)");
            return;
        }
        // A range no default VM uses, so tests running VMs meanwhile do not interfere.
        let first = 0x6fff_0000 + (std::process::id() % 1000) * 16;
        let a = lease(first, 16).unwrap();
        let mut b = lease(first, 16).unwrap();
        assert_eq!((a.uid(), b.uid()), (first, first + 1));
        drop(a);
        let c = lease(first, 16).unwrap();
        assert_eq!(c.uid(), first, "a dropped lease frees its uid");
        // A process of b's uid outlives b's lease: the uid stays taken.
        let mut child = std::process::Command::new("sleep");
        child.arg("30");
        std::os::unix::process::CommandExt::uid(&mut child, b.uid());
        let mut child = child.spawn().unwrap();
        b.record(child.id());
        let b_uid = b.uid();
        drop(b);
        let d = lease(first, 16).unwrap();
        assert_eq!(d.uid(), first + 2, "uid {b_uid} has a live process");
        child.kill().unwrap();
        child.wait().unwrap();
        let e = lease(first, 16).unwrap();
        assert_eq!(e.uid(), b_uid, "free again once its process is gone");
        assert!(lease(first, 3).is_err(), "all three held");
        for u in first..first + 16 {
            let _ = std::fs::remove_file(dir().join(u.to_string()));
        }
    }
}
