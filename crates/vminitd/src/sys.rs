//! Thin wrappers over the syscalls that several modules share (open, pipes, fd passing,
//! mount, loop devices, kill, terminal sizes, clocks, module loading), so their callers handle
//! `io::Result`, not errno, and need no `unsafe` of their own. Unsafe code is not all here: a
//! syscall that one module alone needs stays beside its one caller, each block with its
//! `// SAFETY:` comment — `spawn.rs` and `rootfs.rs` (the forked child: clone, setns,
//! pivot_root, exec), `caps.rs` (capset, prctl), `netlink.rs` and `port.rs` (sockets),
//! `fdio.rs` (non-blocking fd I/O), `template.rs` (the entropy ioctls of `Resume`), `copy.rs`,
//! `system.rs`, `boot.rs`, `reaper.rs` and `lib.rs`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Turns a libc return value into `io::Result`, reading errno on -1.
pub fn cvt<T: PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A C string from a path or string; interior NULs are an `InvalidInput` error.
pub fn cstr(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains NUL"))
}

/// mount(2).
pub fn mount(
    src: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = cstr(src)?;
    let target = cstr(target)?;
    let fstype = cstr(fstype)?;
    let data = data.map(cstr).transpose()?;
    // SAFETY: all pointers are valid NUL-terminated strings (or null for data) that outlive
    // the call.
    cvt(unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    })?;
    Ok(())
}

/// umount2(2).
pub fn umount(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid C string.
    cvt(unsafe { libc::umount2(t.as_ptr(), flags) })?;
    Ok(())
}

/// A pipe with both ends close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, both fds are new and owned by us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets or clears O_NONBLOCK.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd we hold; F_GETFL/F_SETFL take no pointers.
    unsafe {
        let flags = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        cvt(libc::fcntl(fd, libc::F_SETFL, new))?;
    }
    Ok(())
}

/// open(2) with O_CLOEXEC added.
pub fn open(path: &Path, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: valid C string; the returned fd is new and owned by us.
    let fd = cvt(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })?;
    // SAFETY: fd was just returned by open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a pty pair: (master, slave), both close-on-exec, master non-blocking.
pub fn openpty(size: Option<(u16, u16)>) -> io::Result<(OwnedFd, OwnedFd)> {
    let master = open(
        Path::new("/dev/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK,
        0,
    )?;
    // SAFETY: ioctls on our master fd; TIOCSPTLCK takes a pointer to an int that lives
    // across the call, TIOCGPTPEER takes flags.
    let slave = unsafe {
        let unlock: libc::c_int = 0;
        cvt(libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock))?;
        let fd = cvt(libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        ))?;
        OwnedFd::from_raw_fd(fd)
    };
    if let Some((rows, cols)) = size {
        set_winsize(master.as_raw_fd(), rows, cols)?;
    }
    Ok((master, slave))
}

/// TIOCSWINSZ.
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ws is a valid winsize that outlives the call.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

/// kill(2).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// Creates a directory and its parents with mode 0755; existing directories are fine.
pub fn mkdir_p(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Writes a whole file (create/truncate).
pub fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    std::fs::write(path, data)
}

/// Uptime-independent monotonic milliseconds, for log timestamps.
pub fn monotonic_ms() -> u64 {
    monotonic_ns() / 1_000_000
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // CLOCK_MONOTONIC is never negative.
    ts.tv_sec.unsigned_abs() * 1_000_000_000 + ts.tv_nsec.unsigned_abs()
}

/// clock_settime(CLOCK_REALTIME) to `unix_ns` nanoseconds since the epoch.
pub fn set_realtime(unix_ns: u64) -> io::Result<()> {
    let secs = libc::time_t::try_from(unix_ns / 1_000_000_000)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let ts = libc::timespec {
        tv_sec: secs,
        // Below 10^9: fits any c_long.
        tv_nsec: (unix_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: ts is a valid timespec, read only during the call.
    cvt(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) })?;
    Ok(())
}

/// finit_module(2) of an open, uncompressed `.ko`, without parameters.
pub fn finit_module(fd: &OwnedFd) -> io::Result<()> {
    let params = c"";
    // SAFETY: finit_module with an fd we hold and an empty NUL-terminated parameter string.
    cvt(unsafe { libc::syscall(libc::SYS_finit_module, fd.as_raw_fd(), params.as_ptr(), 0) })?;
    Ok(())
}

/// Number of CPUs online.
pub fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A connected pair of unix stream sockets, close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, both fds are new and owned by us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one fd over a unix socket (SCM_RIGHTS) with a one-byte message.
pub fn send_fd(sock: &OwnedFd, fd: &OwnedFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg points at a control buffer large enough for one fd (CMSG_SPACE above), so
    // CMSG_FIRSTHDR is non-null and CMSG_DATA has room for an i32; all buffers outlive
    // sendmsg.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd.as_raw_fd());
        cvt(libc::sendmsg(sock.as_raw_fd(), &msg, 0))?;
    }
    Ok(())
}

/// Receives one fd sent with [`send_fd`]; waits for it.
pub fn recv_fd(sock: &OwnedFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg's buffers are valid for the sizes given and outlive recvmsg; the control
    // header is only read after checking it is an SCM_RIGHTS message carrying one fd.
    unsafe {
        let n = cvt(libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_CMSG_CLOEXEC,
        ))?;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0
            || cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no file descriptor received",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// mknod(2) of a device, FIFO or socket node; `mode` carries the file type bits.
pub fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: valid C string; mknod does not keep the pointer.
    cvt(unsafe { libc::mknod(p.as_ptr(), mode, dev) }).map(|_| ())
}

/// Sets access and modification times of `path` itself (not a symlink's target).
pub fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array, both read only during the call.
    cvt(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(|_| ())
}

// Loop devices (linux/loop.h). The libc crate (0.2.191) has neither the ioctls nor the
// structs, so they are spelled out here; the values and layouts are kernel ABI.

/// `LOOP_CTL_GET_FREE` on `/dev/loop-control`: the number of a free loop device (made if none).
pub const LOOP_CTL_GET_FREE: libc::Ioctl = 0x4C82;
/// `LOOP_CONFIGURE` (Linux 5.8): attach a file and set flags in one call, so no one sees the
/// device bound with the wrong flags in between (`LOOP_SET_FD` + `LOOP_SET_STATUS64` would).
pub const LOOP_CONFIGURE: libc::Ioctl = 0x4C0A;
/// `LOOP_GET_STATUS64`: ENXIO when no file is attached.
pub const LOOP_GET_STATUS64: libc::Ioctl = 0x4C05;
/// The device rejects writes.
pub const LO_FLAGS_READ_ONLY: u32 = 1;
/// The kernel detaches the file when the device's last opener (here: the mount) goes away.
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// The device reads and writes the file with direct I/O (no second copy in the page cache).
pub const LO_FLAGS_DIRECT_IO: u32 = 16;
/// The block major number of loop devices.
pub const LOOP_MAJOR: u32 = 7;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LoopInfo64 {
    /// `lo_device`.
    pub device: u64,
    /// `lo_inode`.
    pub inode: u64,
    /// `lo_rdevice`.
    pub rdevice: u64,
    /// `lo_offset`.
    pub offset: u64,
    /// `lo_sizelimit` (0: the whole file).
    pub sizelimit: u64,
    /// `lo_number`.
    pub number: u32,
    /// `lo_encrypt_type` (obsolete).
    pub encrypt_type: u32,
    /// `lo_encrypt_key_size` (obsolete).
    pub encrypt_key_size: u32,
    /// `lo_flags` (`LO_FLAGS_*`).
    pub flags: u32,
    /// `lo_file_name`: the backing file's name, truncated, for tools such as losetup.
    pub file_name: [u8; 64],
    /// `lo_crypt_name` (obsolete).
    pub crypt_name: [u8; 64],
    /// `lo_encrypt_key` (obsolete).
    pub encrypt_key: [u8; 32],
    /// `lo_init`.
    pub init: [u64; 2],
}

impl Default for LoopInfo64 {
    fn default() -> Self {
        LoopInfo64 {
            device: 0,
            inode: 0,
            rdevice: 0,
            offset: 0,
            sizelimit: 0,
            number: 0,
            encrypt_type: 0,
            encrypt_key_size: 0,
            flags: 0,
            file_name: [0; 64],
            crypt_name: [0; 64],
            encrypt_key: [0; 32],
            init: [0; 2],
        }
    }
}

/// `struct loop_config`, the argument of [`LOOP_CONFIGURE`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopConfig {
    /// The backing file's descriptor.
    pub fd: u32,
    /// Logical block size; 0 keeps the default (512).
    pub block_size: u32,
    /// Offset, size limit, flags and name.
    pub info: LoopInfo64,
    /// Must be zero.
    pub reserved: [u64; 8],
}

// The kernel's sizes (linux/loop.h); a wrong layout would hand the ioctl garbage.
const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// `LOOP_CTL_GET_FREE`: the number of a free loop device.
pub fn loop_ctl_get_free(control: &OwnedFd) -> io::Result<u32> {
    // SAFETY: an ioctl without argument on an fd we hold.
    let n = cvt(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) })?;
    u32::try_from(n).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `LOOP_CONFIGURE` of the loop device open as `dev`.
pub fn loop_configure(dev: &OwnedFd, config: &LoopConfig) -> io::Result<()> {
    // SAFETY: config is a valid, fully initialised loop_config that the kernel only reads
    // during the call.
    cvt(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, config as *const LoopConfig) })?;
    Ok(())
}

/// `LOOP_GET_STATUS64` of the loop device open as `dev`: ENXIO when no file is attached.
pub fn loop_get_status(dev: &OwnedFd) -> io::Result<LoopInfo64> {
    let mut info = LoopInfo64::default();
    // SAFETY: info is a valid loop_info64 that the kernel fills during the call.
    cvt(unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_GET_STATUS64,
            &mut info as *mut LoopInfo64,
        )
    })?;
    Ok(info)
}
