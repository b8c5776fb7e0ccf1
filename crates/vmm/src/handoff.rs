//! Handing QEMU its files already open, for a QEMU that runs as a user of its own
//! ([`crate::config::QemuUser::Own`]).
//!
//! Such a QEMU can open nothing of the state directory: a container's directory is private
//! to the invoking user, and that is the point (it must not reach other containers' disks).
//! So the caller opens what the VM needs and QEMU inherits the descriptors:
//!
//! | what | how QEMU names it |
//! |---|---|
//! | kernel, init filesystem | `/proc/self/fd/N` (reopened, so the file must be world-readable: they hold nothing secret) |
//! | disks (and a qcow2 overlay's backing file) | `/dev/fdset/S` from `-add-fd`, one read-only and one read-write descriptor per set (QEMU probes read-only, then reopens) |
//! | console log | `/dev/fdset/S` (write-only) |
//! | taps | `fd=N`, attached by the caller (`TUNSETIFF`) in the VM's network namespace |
//! | sockets QEMU listens on (agent, QMP) | `fd=N`, bound and listening |
//! | sockets QEMU connects to (virtiofsd, vsock) | `fd=N`, connected |
//!
//! Descriptors keep the numbers they have in the caller; the spawned child only clears their
//! close-on-exec flag (no `dup2`, which could land on a descriptor the standard library's
//! spawn uses in the child).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::config::{opt_path, ConfigError, DiskFormat, DiskSpec, Files};

/// Descriptors for one QEMU and the `-add-fd` options naming the sets among them.
#[derive(Default)]
pub(crate) struct Handoff {
    fds: Vec<OwnedFd>,
    add_fd: Vec<String>,
    next_set: u32,
}

impl Handoff {
    /// Keeps `fd` open for QEMU; returns its number.
    pub(crate) fn keep(&mut self, fd: OwnedFd) -> RawFd {
        let n = fd.as_raw_fd();
        self.fds.push(fd);
        n
    }

    /// The numbers QEMU inherits.
    pub(crate) fn raw_fds(&self) -> Vec<RawFd> {
        self.fds.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// The `-add-fd` options; they go first on the command line.
    pub(crate) fn take_add_fd(&mut self) -> Vec<String> {
        std::mem::take(&mut self.add_fd)
    }

    /// Puts `fds` (the same file opened in different modes) in a new fd set; returns the path
    /// QEMU opens it by.
    fn fdset(&mut self, fds: Vec<OwnedFd>) -> String {
        self.next_set += 1;
        let set = self.next_set;
        for fd in fds {
            let n = self.keep(fd);
            self.add_fd
                .extend(["-add-fd".to_string(), format!("fd={n},set={set}")]);
        }
        format!("/dev/fdset/{set}")
    }
}

fn open_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError {
    let path = path.to_path_buf();
    move |source| ConfigError::Open { what, path, source }
}

fn open(what: &'static str, path: &Path, write: bool) -> Result<OwnedFd, ConfigError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map(OwnedFd::from)
        .map_err(open_err(what, path))
}

impl Files for Handoff {
    fn boot_file(&mut self, what: &'static str, path: &Path) -> Result<String, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let file = std::fs::File::open(path).map_err(open_err(what, path))?;
        let mode = file
            .metadata()
            .map_err(open_err(what, path))?
            .permissions()
            .mode();
        // QEMU reopens it through /proc as its own user; say so rather than let QEMU report
        // that it cannot read /proc/self/fd/N.
        if mode & 0o004 == 0 {
            return Err(ConfigError::NotWorldReadable {
                what,
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        Ok(format!("/proc/self/fd/{}", self.keep(file.into())))
    }

    fn log_file(&mut self, path: &Path) -> Result<String, ConfigError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(open_err("console log", path))?;
        Ok(self.fdset(vec![file.into()]))
    }

    fn drive(&mut self, disk: &DiskSpec) -> Result<String, ConfigError> {
        let read_only = std::fs::File::open(&disk.path).map_err(open_err("disk", &disk.path))?;
        let backing = match disk.format {
            DiskFormat::Raw => None,
            DiskFormat::Qcow2 => {
                let dir = disk.path.parent().unwrap_or(Path::new("/"));
                crate::disk::qcow2_backing(&read_only, dir).map_err(open_err("disk", &disk.path))?
            }
        };
        let mut fds = vec![OwnedFd::from(read_only)];
        if !disk.readonly {
            fds.push(open("disk", &disk.path, true)?);
        }
        let mut opts = format!("file={}", self.fdset(fds));
        if let Some((base, format)) = backing {
            let base_fd = open("backing file", &base, false)?;
            let set = self.fdset(vec![base_fd]);
            opts.push_str(&format!(",backing.file.filename={set}"));
            if let Some(f) = format {
                crate::config::no_comma("backing format", &f)?;
                opts.push_str(&format!(",backing.driver={f}"));
            }
        }
        Ok(opts)
    }

    fn tap(&mut self, name: &str) -> Result<String, ConfigError> {
        let fd = open_tap(name).map_err(open_err("tap", Path::new(name)))?;
        Ok(format!("fd={}", self.keep(fd)))
    }

    fn client_socket(&mut self, what: &'static str, path: &Path) -> Result<String, ConfigError> {
        let s = std::os::unix::net::UnixStream::connect(path).map_err(open_err(what, path))?;
        Ok(format!("fd={}", self.keep(s.into())))
    }

    fn server_socket(&mut self, what: &'static str, path: &Path) -> Result<String, ConfigError> {
        // A stale socket file is gone: `QemuVm::prepare_files` removed it, for both modes.
        let l = std::os::unix::net::UnixListener::bind(path).map_err(open_err(what, path))?;
        Ok(format!("fd={},server=on,wait=off", self.keep(l.into())))
    }
}

/// Attaches to the existing tap `name` (in this thread's network namespace) as QEMU would:
/// no packet information, with virtio-net headers.
fn open_tap(name: &str) -> std::io::Result<OwnedFd> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // struct ifreq: a 16-byte name, then the flags (a short) in a 24-byte union.
    let mut ifr = [0u8; 40];
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= 16 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a tap name has 1 to 15 bytes",
        ));
    }
    ifr[..bytes.len()].copy_from_slice(bytes);
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifr` is laid out as and sized
    // for; the descriptor is ours.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tun.into())
}

/// The names QEMU opens files by itself, for a QEMU that runs as the invoking user.
pub(crate) struct Paths;

impl Files for Paths {
    fn boot_file(&mut self, what: &'static str, path: &Path) -> Result<String, ConfigError> {
        opt_path(what, path)
    }

    fn log_file(&mut self, path: &Path) -> Result<String, ConfigError> {
        opt_path("console log", path)
    }

    fn drive(&mut self, disk: &DiskSpec) -> Result<String, ConfigError> {
        Ok(format!("file={}", opt_path("disk", &disk.path)?))
    }

    fn tap(&mut self, name: &str) -> Result<String, ConfigError> {
        crate::config::no_comma("tap name", name)?;
        Ok(format!("ifname={name},script=no,downscript=no"))
    }

    fn client_socket(&mut self, what: &'static str, path: &Path) -> Result<String, ConfigError> {
        Ok(format!("path={}", opt_path(what, path)?))
    }

    fn server_socket(&mut self, what: &'static str, path: &Path) -> Result<String, ConfigError> {
        Ok(format!("path={},server=on,wait=off", opt_path(what, path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VmConfig;
    use std::path::PathBuf;

    #[test]
    fn every_file_and_socket_is_handed_over_open() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (kernel, initfs) = (d.join("vmlinux"), d.join("initfs.cpio"));
        std::fs::write(&kernel, b"k").unwrap();
        std::fs::write(&initfs, b"i").unwrap();
        let base = d.join("base.ext4");
        std::fs::File::create(&base)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let overlay = d.join("root.qcow2");
        crate::qcow2_overlay(&base, &overlay).unwrap();
        let volume = d.join("vol.img");
        std::fs::File::create(&volume)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let share = std::os::unix::net::UnixListener::bind(d.join("fs.sock")).unwrap();
        let mut c = VmConfig::new(kernel.clone(), initfs.clone(), d.join("boot.log"));
        c.disks.push(DiskSpec {
            path: overlay.clone(),
            format: DiskFormat::Qcow2,
            readonly: false,
        });
        c.disks.push(DiskSpec {
            path: volume.clone(),
            format: DiskFormat::Raw,
            readonly: true,
        });
        c.shares.push(crate::ShareSpec {
            socket: d.join("fs.sock"),
            tag: "s0".into(),
        });
        c.agent_socket = Some(d.join("agent.sock"));
        c.qmp_socket = Some(d.join("qmp.sock"));
        let mut h = Handoff::default();
        let args = c.args_with(&mut h).unwrap();
        let add_fd = h.take_add_fd().join(" ");
        let s = args.join(" ");
        let d_s = d.to_string_lossy().into_owned();
        // No path of the VM's files reaches QEMU's command line.
        assert!(!s.contains(&d_s), "{s}");
        let fds = h.raw_fds();
        let link = |fd: RawFd| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let kernel_fd: RawFd = s
            .split("-kernel /proc/self/fd/")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(link(kernel_fd), kernel);
        // The overlay in one set (read-only and read-write), its base in another; the
        // read-only volume has a read-only descriptor only; the console log a write-only one.
        assert!(
            s.contains("file=/dev/fdset/2,backing.file.filename=/dev/fdset/3,backing.driver=raw,format=qcow2"),
            "{s}"
        );
        assert!(s.contains("file=/dev/fdset/4,format=raw"), "{s}");
        assert!(s.contains("file,id=con,path=/dev/fdset/1"), "{s}");
        let sets: Vec<(RawFd, u32)> = add_fd
            .split("-add-fd fd=")
            .filter(|x| !x.is_empty())
            .map(|x| {
                let (fd, set) = x.trim().split_once(",set=").unwrap();
                (fd.parse().unwrap(), set.parse().unwrap())
            })
            .collect();
        let in_set = |set: u32| -> Vec<PathBuf> {
            sets.iter()
                .filter(|(_, s)| *s == set)
                .map(|(fd, _)| link(*fd))
                .collect()
        };
        assert_eq!(in_set(1), vec![d.join("boot.log")]);
        assert_eq!(in_set(2), vec![overlay.clone(), overlay.clone()]);
        assert_eq!(in_set(3), vec![base.clone()]);
        assert_eq!(in_set(4), vec![volume.clone()]);
        // Sockets: QEMU's listeners are bound and listening, the share is connected.
        assert!(s.contains("-chardev socket,id=qmp,fd="), "{s}");
        assert!(s.contains("-mon chardev=qmp,mode=control"), "{s}");
        std::os::unix::net::UnixStream::connect(d.join("agent.sock")).unwrap();
        std::os::unix::net::UnixStream::connect(d.join("qmp.sock")).unwrap();
        share.accept().unwrap();
        // Every descriptor QEMU is to inherit is one of these.
        assert_eq!(fds.len(), 2 + 1 + 2 + 1 + 1 + 1 + 2);
    }

    #[test]
    fn a_kernel_not_everyone_may_read_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"k").unwrap();
        std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = VmConfig::new(kernel.clone(), kernel.clone(), dir.path().join("boot.log"));
        let err = c
            .args_with(&mut Handoff::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vmlinux is not readable by QEMU's own user (mode 0600)")
                && err.contains("CONTAINER_QEMU_USER=invoker"),
            "{err}"
        );
        let missing = VmConfig::new(dir.path().join("nope"), kernel, dir.path().join("boot.log"));
        let err = missing.args_with(&mut Handoff::default()).unwrap_err();
        assert!(err.to_string().contains("cannot open kernel"), "{err}");
    }
}
