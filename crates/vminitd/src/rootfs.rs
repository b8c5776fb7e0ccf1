//! The container's filesystem view, built in the child inside its new mount namespace:
//! the root filesystem as `/` (pivot_root), /proc, /sys (read-only), a tmpfs /dev with the
//! standard nodes, /dev/pts (new instance), /dev/shm, /dev/mqueue, the /etc files vminitd
//! wrote for it, extra mounts, then the OCI default masked and read-only paths.

use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::copyup;
use crate::mounts;
use crate::report::{ctx, ChildErr};
use crate::sys::{self, cvt};

/// OCI/docker default masked paths.
pub const MASKED: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// OCI/docker default read-only paths.
pub const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    /// The mounted root filesystem (guest path).
    pub rootfs: PathBuf,
    /// Hostname inside the container.
    pub hostname: Option<String>,
    /// Remount `/` read-only at the end.
    pub readonly: bool,
    /// (path inside the container, e.g. `/etc/hosts`; file in the guest to bind there).
    pub files: Vec<(String, PathBuf)>,
    /// Extra mounts; targets inside the container.
    pub mounts: Vec<agent::Mount>,
    /// docker's `--privileged`: `/sys` writable, nothing under `/proc` or `/sys` masked or
    /// read-only.
    pub privileged: bool,
    /// In a network namespace of its own (made by the clone), whose loopback this brings up.
    pub own_network: bool,
    /// sysctls to write once the container's `/proc` is mounted (keys checked).
    pub sysctl: Vec<(String, String)>,
    /// Size of `/dev/shm` in bytes.
    pub shm_size: u64,
    /// Mount cgroup2 at `/sys/fs/cgroup` (the container has a cgroup): its own tree in a
    /// cgroup namespace of its own, the guest's with `cgroupns_host`.
    pub cgroup_fs: bool,
    /// `--cgroupns host`: no cgroup namespace of its own.
    pub cgroupns_host: bool,
    /// Extra character device nodes (`--device`), paths under `/dev/`.
    pub devices: Vec<agent::DeviceNode>,
    /// More paths to mask (`--masked-path`), after the defaults; with `privileged` too.
    pub masked_paths: Vec<String>,
    /// More paths to make read-only (`--read-only-path`), after the defaults.
    pub readonly_paths: Vec<String>,
}

/// docker's `/dev/shm` size when none is given: 64 MiB.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn inside(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// Builds the filesystem view; called in the child after clone(CLONE_NEWNS...).
pub fn setup(plan: &RootfsPlan) -> Result<(), ChildErr> {
    let root = &plan.rootfs;
    if plan.own_network {
        crate::netlink::loopback_up().map_err(|e| {
            (
                b'E',
                std::io::Error::other(e.to_string()),
                "bring up lo".to_string(),
            )
        })?;
    }
    let m = |src: &str, dst: &Path, fs: &str, flags: libc::c_ulong, data: Option<&str>| {
        ctx(
            sys::mkdir_p(dst).and_then(|_| sys::mount(src, dst, fs, flags, data)),
            || format!("mount {fs} on {}", dst.display()),
        )
    };
    // Nothing we mount may propagate back to the guest.
    ctx(
        sys::mount(
            "none",
            Path::new("/"),
            "none",
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        ),
        || "make / private".into(),
    )?;
    // pivot_root needs the new root to be a mount point.
    m(
        &root.to_string_lossy(),
        root,
        "none",
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;

    let nse = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    m("proc", &root.join("proc"), "proc", nse, None)?;
    // Through the container's own /proc, from inside its namespaces: the IPC settings reach
    // its IPC namespace, the net ones the network it uses. Before /proc/sys turns read-only.
    for (key, value) in &plan.sysctl {
        let written = crate::system::sysctl_path(&root.join("proc"), key)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            .and_then(|path| sys::write_file(&path, value.as_bytes()));
        ctx(written, || format!("set sysctl {key}={value}"))?;
    }
    let sys_ro = if plan.privileged { 0 } else { libc::MS_RDONLY };
    m("sysfs", &root.join("sys"), "sysfs", nse | sys_ro, None)?;
    if plan.cgroup_fs {
        // In the container's cgroup namespace (see spawn.rs) this shows its own cgroup as the
        // root: its limits (memory.max, …) and counters, read-only unless privileged.
        m(
            "cgroup2",
            &root.join("sys/fs/cgroup"),
            "cgroup2",
            nse | sys_ro,
            None,
        )?;
    }
    let dev = root.join("dev");
    m(
        "tmpfs",
        &dev,
        "tmpfs",
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in DEVICES {
        ctx(char_node(&dev.join(name), major, minor, 0o666), || {
            format!("create /dev/{name}")
        })?;
    }
    for d in &plan.devices {
        let rel = d.path.strip_prefix("/dev/").filter(|r| {
            !r.is_empty() && r.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        });
        let Some(rel) = rel else {
            return Err((
                b'E',
                io::Error::from_raw_os_error(libc::EINVAL),
                format!("device {}: not a path under /dev", d.path),
            ));
        };
        let node = dev.join(rel);
        let made = node
            .parent()
            .map_or(Ok(()), sys::mkdir_p)
            .and_then(|_| char_node(&node, d.major, d.minor, d.mode & 0o777));
        ctx(made, || format!("create device {}", d.path))?;
    }
    m(
        "devpts",
        &dev.join("pts"),
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    m(
        "shm",
        &dev.join("shm"),
        "tmpfs",
        nse,
        Some(&format!("mode=1777,size={}", plan.shm_size)),
    )?;
    m("mqueue", &dev.join("mqueue"), "mqueue", nse, None)?;
    let links = [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/kcore", "core"),
    ];
    for (target, name) in links {
        ctx(symlink(target, dev.join(name)), || {
            format!("create /dev/{name}")
        })?;
    }

    for mnt in &plan.mounts {
        let target = inside(root, &mnt.target);
        let mut options = mnt.options.clone();
        if let Some(i) = options
            .iter()
            .position(|o| o == agent::contract::MOUNT_OPTION_COPYUP)
        {
            options.remove(i);
            ctx(
                copyup::populate(root, &target, Path::new(&mnt.source)),
                || format!("copy {} into the volume mounted there", mnt.target),
            )?;
        }
        ctx(
            mounts::mount(&mnt.source, &target, &mnt.fstype, &options),
            || format!("mount {} on {}", mnt.source, mnt.target),
        )?;
    }

    // After the mounts, as docker does: a volume over /etc still gets the container's
    // hosts, hostname and resolv.conf.
    for (path, source) in &plan.files {
        let target = inside(root, path);
        if !target.exists() {
            // A mount point for the file (also with `readonly`, which is applied at the end);
            // a filesystem that is itself read-only just goes without.
            let made = target
                .parent()
                .map_or(Ok(()), sys::mkdir_p)
                .and_then(|_| std::fs::File::create(&target).map(drop));
            match made {
                Err(e) if e.raw_os_error() == Some(libc::EROFS) => continue,
                other => ctx(other, || format!("create {path}"))?,
            }
        }
        ctx(
            sys::mount(
                &source.to_string_lossy(),
                &target,
                "none",
                libc::MS_BIND,
                None,
            ),
            || format!("bind {path}"),
        )?;
    }
    pivot(root)?;

    for p in plan.masked_paths.iter().chain(&plan.readonly_paths) {
        // Guarded here as well as by the host: after the pivot a path can only name something
        // of the container's, but one with `..` or a relative one was never meant.
        let plain = p.starts_with('/') && p.split('/').all(|c| c != "." && c != "..");
        if !plain {
            return Err((
                b'E',
                io::Error::from_raw_os_error(libc::EINVAL),
                format!("path {p}: not a plain absolute path"),
            ));
        }
    }
    let defaults: (&[&str], &[&str]) = if plan.privileged {
        (&[], &[])
    } else {
        (&MASKED, &READONLY)
    };
    let masked = defaults
        .0
        .iter()
        .copied()
        .chain(plan.masked_paths.iter().map(String::as_str));
    for p in masked {
        mask(Path::new(p))?;
    }
    // The defaults are under /proc, where nothing is to be executed; the user's paths keep
    // what they allow.
    let readonly = (defaults.1.iter().map(|p| (*p, nse)))
        .chain(plan.readonly_paths.iter().map(|p| (p.as_str(), 0)));
    for (p, flags) in readonly {
        let path = Path::new(p);
        if !path.exists() {
            continue;
        }
        ctx(
            sys::mount(p, path, "none", libc::MS_BIND | libc::MS_REC, None).and_then(|_| {
                sys::mount(
                    "none",
                    path,
                    "none",
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC | flags,
                    None,
                )
            }),
            || format!("make {p} read-only"),
        )?;
    }
    finish(plan)
}

/// The last steps, after `/proc` and `/sys` are shaped: read-only `/`, hostname.
fn finish(plan: &RootfsPlan) -> Result<(), ChildErr> {
    if plan.readonly {
        ctx(
            sys::mount(
                "none",
                Path::new("/"),
                "none",
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                None,
            ),
            || "remount / read-only".into(),
        )?;
    }
    if let Some(h) = &plan.hostname {
        // SAFETY: pointer and length of a valid byte slice.
        let r = unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) };
        ctx(cvt(r), || format!("sethostname {h}"))?;
    }
    Ok(())
}

/// Makes the character device `path` with exactly `mode` (mknod applies the umask, so the
/// mode is set again after).
fn char_node(path: &Path, major: u32, minor: u32, mode: u32) -> io::Result<()> {
    let p = sys::cstr(path)?;
    // SAFETY: valid C string; mknod and chmod take plain integers otherwise.
    cvt(unsafe {
        libc::mknod(
            p.as_ptr(),
            libc::S_IFCHR | mode,
            libc::makedev(major, minor),
        )
    })?;
    // SAFETY: as above.
    cvt(unsafe { libc::chmod(p.as_ptr(), mode) }).map(drop)
}

/// pivot_root(".", ".") then detach the old root, as runc does: no put_old directory needed.
fn pivot(root: &Path) -> Result<(), ChildErr> {
    ctx(std::env::set_current_dir(root), || {
        format!("chdir {}", root.display())
    })?;
    let dot = c".";
    // SAFETY: valid C strings; raw syscall as libc has no wrapper.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    ctx(cvt(r), || "pivot_root".into())?;
    ctx(sys::umount(Path::new("."), libc::MNT_DETACH), || {
        "detach old root".into()
    })?;
    ctx(std::env::set_current_dir("/"), || "chdir /".into())?;
    Ok(())
}

fn mask(path: &Path) -> Result<(), ChildErr> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((b'E', e, format!("mask {}", path.display()))),
    };
    let r = if meta.is_dir() {
        sys::mount("tmpfs", path, "tmpfs", libc::MS_RDONLY, None)
    } else {
        sys::mount("/dev/null", path, "none", libc::MS_BIND, None)
    };
    ctx(r, || format!("mask {}", path.display()))
}
